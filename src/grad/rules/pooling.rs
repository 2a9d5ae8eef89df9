//! Pooling and reductions.

use super::RuleCtx;
use super::linear::{Window, explicit_pads, transpose_back};
use crate::grad::GradError;
use crate::onnx::{attr_int, attr_ints, attrs, dtype, tensors};

type Grads = Result<Vec<Option<String>>, GradError>;

/// dx = g ⊙ (1/(H·W)) broadcast over the spatial axes: one broadcasting Mul by a constant
/// `[1, 1, H, W]` (ONNX Runtime's Mul is vectorised; Expand then Mul took three times longer).
pub fn global_average_pool(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let r = c.rank(&x)?;
    let spatial: Vec<i64> = (2..r).map(|a| c.fixed_dim(&x, a)).collect::<Result<_, _>>()?;
    let n = c.built_size(&spatial)?;
    let mut dims = vec![1, 1];
    dims.extend(&spatial);
    let share = c.b.const_f32("mean_share", &dims, &vec![1.0 / n as f32; n]);
    Ok(vec![Some(c.b.mul(&g, &share))])
}

/// The gradient goes to the maximum, split evenly among ties (PyTorch's `amax` rule).
pub fn global_max_pool(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x, y) = (c.grad(), c.input(0).to_owned(), c.output(0).to_owned());
    let r = c.rank(&x)? as i64;
    let ye = c.b.expand_like(&y, &x);
    let eq = c.b.op("Equal", &[&x, &ye], vec![]);
    let m = c.b.op("Cast", &[&eq], vec![attrs::int("to", i64::from(dtype::FLOAT))]);
    let count = c.b.reduce_sum(&m, &(2..r).collect::<Vec<_>>(), true);
    let share = c.b.div(&m, &count);
    Ok(vec![Some(c.b.mul(&g, &share))])
}

/// Axes and keepdims of a Reduce* node (axes as attribute or input depending on op/opset).
fn reduce_axes(c: &RuleCtx<'_>, axes_input_since: i64) -> Result<Option<Vec<i64>>, GradError> {
    let rank = c.rank(c.input(0))?;
    let axes = if c.b.opset() >= axes_input_since {
        if c.has_input(1) { Some(c.const_ints(1)?) } else { None }
    } else {
        attr_ints(c.node, "axes")
    };
    let axes = match axes {
        Some(a) if !a.is_empty() => a,
        _ if attr_int(c.node, "noop_with_empty_axes").unwrap_or(0) != 0 => return Ok(None),
        _ => (0..rank as i64).collect(),
    };
    let mut a: Vec<i64> = axes.iter().map(|&v| c.axis(v, rank).map(|a| a as i64)).collect::<Result<_, _>>()?;
    a.sort_unstable();
    a.dedup();
    Ok(Some(a))
}

fn reduce_back(c: &mut RuleCtx<'_>, axes_input_since: i64, mean: bool) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let Some(axes) = reduce_axes(c, axes_input_since)? else {
        return Ok(vec![Some(g), None]);
    };
    let keep = attr_int(c.node, "keepdims").unwrap_or(1) != 0;
    let gk = if keep { g } else { c.b.unsqueeze(&g, &axes) };
    // Scale the reduced gradient, then expand: fewer values to multiply.
    let gs = if mean {
        let n: i64 = axes.iter().map(|&a| c.fixed_dim(&x, a as usize)).product::<Result<i64, _>>()?;
        c.b.mul_scalar(&gk, 1.0 / n as f32)
    } else {
        gk
    };
    Ok(vec![Some(c.b.expand_like(&gs, &x)), None])
}

pub fn reduce_mean(c: &mut RuleCtx<'_>) -> Grads {
    reduce_back(c, 18, true)
}

pub fn reduce_sum(c: &mut RuleCtx<'_>) -> Grads {
    reduce_back(c, 13, false)
}

/// Window attributes of a pool over input `x` with output `y`.
struct Pool {
    k: Vec<i64>,
    strides: Vec<i64>,
    dil: Vec<i64>,
    in_sz: Vec<i64>,
    out_sz: Vec<i64>,
    pb: Vec<i64>,
    pe: Vec<i64>,
    channels: i64,
}

fn pool_window(c: &RuleCtx<'_>) -> Result<Pool, GradError> {
    let (x, y) = (c.input(0), c.output(0));
    let r = c.rank(x)?;
    let n = r - 2;
    let k = attr_ints(c.node, "kernel_shape").ok_or_else(|| c.unsupported("no kernel_shape"))?;
    let strides = attr_ints(c.node, "strides").unwrap_or_else(|| vec![1; n]);
    let dil = attr_ints(c.node, "dilations").unwrap_or_else(|| vec![1; n]);
    let in_sz: Vec<i64> = (2..r).map(|a| c.fixed_dim(x, a)).collect::<Result<_, _>>()?;
    let out_sz: Vec<i64> = (2..r).map(|a| c.fixed_dim(y, a)).collect::<Result<_, _>>()?;
    let (pb, pe) = explicit_pads(c, &in_sz, &out_sz, &k, &strides, &dil)?;
    let channels = c.fixed_dim(x, 1)?;
    Ok(Pool { k, strides, dil, in_sz, out_sz, pb, pe, channels })
}

/// AveragePool is linear: its transpose spreads each output's gradient, divided by the
/// window's divisor, over the window (ConvTranspose with a depthwise ones kernel). Without
/// `count_include_pad` the divisor is the number of real (non-padding) elements, counted by
/// a depthwise Conv of ones.
pub fn average_pool(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let p = pool_window(c)?;
    if attr_int(c.node, "ceil_mode").unwrap_or(0) != 0 {
        // Ceil mode only matters when it adds a partial window at the end.
        let floor_sz: Vec<i64> = (0..p.k.len())
            .map(|i| (p.in_sz[i] + p.pb[i] + p.pe[i] - p.dil[i] * (p.k[i] - 1) - 1) / p.strides[i] + 1)
            .collect();
        if floor_sz != p.out_sz {
            return Err(c.unsupported("AveragePool with ceil_mode adding partial windows"));
        }
    }
    let mut wdims = vec![p.channels, 1];
    wdims.extend(&p.k);
    let ones = vec![1.0f32; c.built_size(&wdims)?];
    let kernel = c.built_size(&p.k)? as i64;
    let w = c.b.const_f32("pool_ones", &wdims, &ones);
    let padded = p.pb.iter().chain(&p.pe).any(|&v| v != 0);
    let gs = if attr_int(c.node, "count_include_pad").unwrap_or(0) != 0 || !padded {
        c.b.mul_scalar(&g, 1.0 / kernel as f32)
    } else {
        let s = c.b.shape_of(&x);
        let one = c.b.op("ConstantOfShape", &[&s], vec![attrs::tensor("value", tensors::f32("", &[1], &[1.0]))]);
        let pads: Vec<i64> = p.pb.iter().chain(&p.pe).copied().collect();
        let counts = c.b.op(
            "Conv",
            &[&one, &w],
            vec![
                attrs::ints("kernel_shape", &p.k),
                attrs::ints("strides", &p.strides),
                attrs::ints("dilations", &p.dil),
                attrs::ints("pads", &pads),
                attrs::int("group", p.channels),
            ],
        );
        c.b.div(&g, &counts)
    };
    let win =
        Window { k: &p.k, strides: &p.strides, dil: &p.dil, group: p.channels, in_sz: &p.in_sz, out_sz: &p.out_sz };
    let gx = transpose_back(c, &gs, &w, win, p.pb.clone(), p.pe.clone());
    Ok(vec![Some(gx)])
}

/// MaxPool routes each output's gradient to its argmax: a second MaxPool on the same input
/// yields the flat indices, and ScatterElements adds the gradients there (overlapping windows
/// may pick one element twice, hence `reduction="add"`, opset 16+; older opsets are handled
/// when windows cannot overlap).
pub fn max_pool(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    if attr_int(c.node, "storage_order").unwrap_or(0) != 0 {
        return Err(c.unsupported("MaxPool with column-major storage_order"));
    }
    let p = pool_window(c)?;
    let overlapping = (0..p.k.len()).any(|i| p.strides[i] < p.dil[i] * (p.k[i] - 1) + 1);
    let opset = c.b.opset();
    if opset < 11 || (opset < 16 && overlapping) {
        return Err(c.unsupported("MaxPool with overlapping windows before opset 16 (no ScatterElements add)"));
    }
    let mut node = c.node.clone();
    let outs: Vec<String> = (0..2).map(|i| c.b.fresh(if i == 0 { "maxpool_y" } else { "maxpool_idx" })).collect();
    node.name = Some(c.b.fresh("maxpool_indices"));
    node.output = outs.clone();
    c.b.push_node(node);
    let flat = c.b.vec_i64(&[-1]);
    let idx = c.b.op("Reshape", &[&outs[1], &flat], vec![]);
    let gf = c.b.op("Reshape", &[&g, &flat], vec![]);
    let z = c.b.zeros_like(&x);
    let zf = c.b.op("Reshape", &[&z, &flat], vec![]);
    let mut a = vec![attrs::int("axis", 0)];
    if opset >= 16 {
        a.push(attrs::string("reduction", "add"));
    }
    let scattered = c.b.op("ScatterElements", &[&zf, &idx, &gf], a);
    Ok(vec![Some(c.b.reshape_like(&scattered, &x))])
}

/// ReduceMax/ReduceMin: the gradient goes to the elements equal to the result, split
/// evenly among ties (PyTorch's `amax`/`amin` rule; `max(dim)` would pick one, but exporters
/// write `amax` as ReduceMax). Axes are an input from opset 18.
pub fn reduce_extreme(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x, y) = (c.grad(), c.input(0).to_owned(), c.output(0).to_owned());
    let Some(axes) = reduce_axes(c, 18)? else {
        return Ok(vec![Some(g), None]);
    };
    let keep = attr_int(c.node, "keepdims").unwrap_or(1) != 0;
    let (gk, yk) = if keep { (g, y) } else { (c.b.unsqueeze(&g, &axes), c.b.unsqueeze(&y, &axes)) };
    let eq = c.b.op("Equal", &[&x, &yk], vec![]);
    let m = c.b.op("Cast", &[&eq], vec![attrs::int("to", i64::from(dtype::FLOAT))]);
    let count = c.b.reduce_sum(&m, &axes, true);
    let share = c.b.div(&gk, &count);
    Ok(vec![Some(c.b.mul(&m, &share)), None])
}

/// The reduced gradient and a reduced tensor (the output) with the reduced axes restored
/// as size 1, ready to broadcast against the input; `None` when the node reduces nothing.
fn reduced_keepdims(c: &mut RuleCtx<'_>) -> Result<Option<(String, String)>, GradError> {
    let (g, y) = (c.grad(), c.output(0).to_owned());
    let Some(axes) = reduce_axes(c, 18)? else { return Ok(None) };
    if attr_int(c.node, "keepdims").unwrap_or(1) != 0 {
        return Ok(Some((g, y)));
    }
    Ok(Some((c.b.unsqueeze(&g, &axes), c.b.unsqueeze(&y, &axes))))
}

/// ReduceL2 (SwinV2's cosine attention normalises with it): dx = g·x/‖x‖, 0 where the norm
/// is 0 (PyTorch's subgradient of `norm` there).
pub fn reduce_l2(c: &mut RuleCtx<'_>) -> Grads {
    let x = c.input(0).to_owned();
    let Some((g, y)) = reduced_keepdims(c)? else {
        // No reduction: y = |x|.
        let g = c.grad();
        let s = c.b.op("Sign", &[&x], vec![]);
        return Ok(vec![Some(c.b.mul(&g, &s)), None]);
    };
    let zero = c.b.scalar_f32(0.0);
    let nz = c.b.op("Greater", &[&y, &zero], vec![]);
    let one = c.b.scalar_f32(1.0);
    let safe = c.b.op("Where", &[&nz, &y, &one], vec![]);
    let q = c.b.div(&g, &safe);
    let q = c.b.mask(&nz, &q);
    Ok(vec![Some(c.b.mul(&x, &q)), None])
}

/// ReduceSumSquare: dx = 2·g·x.
pub fn reduce_sum_square(c: &mut RuleCtx<'_>) -> Grads {
    let x = c.input(0).to_owned();
    let g = match reduced_keepdims(c)? {
        Some((g, _)) => g,
        None => c.grad(),
    };
    let g2 = c.b.mul_scalar(&g, 2.0);
    Ok(vec![Some(c.b.mul(&x, &g2)), None])
}

/// ReduceL1: dx = g·sign(x) (0 at 0, as PyTorch).
pub fn reduce_l1(c: &mut RuleCtx<'_>) -> Grads {
    let x = c.input(0).to_owned();
    let g = match reduced_keepdims(c)? {
        Some((g, _)) => g,
        None => c.grad(),
    };
    let s = c.b.op("Sign", &[&x], vec![]);
    Ok(vec![Some(c.b.mul(&s, &g)), None])
}
