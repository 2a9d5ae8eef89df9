//! Ops that move values around without changing them: reshapes, transposes, slicing,
//! padding, concatenation.

use super::{RuleCtx, norm_axis};
use crate::grad::GradError;
use crate::onnx::shapes::Dim;
use crate::onnx::{attr_int, attr_ints, attr_string, dtype};

type Grads = Result<Vec<Option<String>>, GradError>;

/// Flatten, Reshape, Squeeze, Unsqueeze: reshape the gradient back to the input's shape.
pub fn reshape_back(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let mut out = vec![None; c.node.input.len()];
    out[0] = Some(c.b.reshape_like(&g, &x));
    Ok(out)
}

pub fn expand(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x, y) = (c.grad(), c.input(0).to_owned(), c.output(0).to_owned());
    Ok(vec![Some(c.unbroadcast(&g, &y, &x)?), None])
}

pub fn identity(c: &mut RuleCtx<'_>) -> Grads {
    let mut out = vec![None; c.node.input.len()];
    out[0] = Some(c.grad());
    Ok(out)
}

/// Float-to-float casts pass the gradient; casts to integers carry none.
pub fn cast(c: &mut RuleCtx<'_>) -> Grads {
    let to = attr_int(c.node, "to").unwrap_or(0) as i32;
    let from_float = c.fact(c.input(0)).is_ok_and(|f| f.elem_type == dtype::FLOAT || f.elem_type == dtype::DOUBLE);
    if from_float && (to == dtype::FLOAT || to == dtype::DOUBLE) {
        let g = c.grad();
        let back = c.b.op("Cast", &[&g], vec![crate::onnx::attrs::int("to", i64::from(dtype::FLOAT))]);
        return Ok(vec![Some(back)]);
    }
    Ok(vec![None])
}

pub fn transpose(c: &mut RuleCtx<'_>) -> Grads {
    let g = c.grad();
    let r = c.rank(c.input(0))?;
    let perm = attr_ints(c.node, "perm").unwrap_or_else(|| (0..r as i64).rev().collect());
    if perm.len() != r {
        return Err(c.unsupported(&format!("perm {perm:?} for a rank-{r} tensor")));
    }
    let mut inv = vec![0i64; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[c.axis(p, r)?] = i as i64;
    }
    Ok(vec![Some(c.b.transpose(&g, &inv))])
}

/// Each input receives its slice of the gradient along the concatenation axis.
pub fn concat(c: &mut RuleCtx<'_>) -> Grads {
    let g = c.grad();
    let y = c.output(0).to_owned();
    let axis = c.axis(attr_int(c.node, "axis").unwrap_or(0), c.rank(&y)?)?;
    let mut out = vec![None; c.node.input.len()];
    let mut offset = 0i64;
    for (i, slot) in out.iter_mut().enumerate() {
        let x = c.input(i).to_owned();
        let size = match c.dims(&x)?.get(axis) {
            Some(&Dim::Fixed(s)) => s,
            _ => return Err(c.unsupported("Concat along the batch axis or an unknown size")),
        };
        if c.needs(i) {
            *slot = Some(c.b.slice(&g, &[offset], &[offset + size], &[axis as i64]));
        }
        offset += size;
    }
    Ok(out)
}

/// The input's gradient is the outputs' gradients concatenated (zeros where none flows).
pub fn split(c: &mut RuleCtx<'_>) -> Grads {
    let y0 = c.output(0).to_owned();
    let axis = c.axis(attr_int(c.node, "axis").unwrap_or(0), c.rank(&y0)?)?;
    let parts: Vec<String> = (0..c.node.output.len())
        .map(|i| {
            let yi = c.output(i).to_owned();
            match c.grads.get(i).cloned().flatten() {
                Some(g) => g,
                None => c.b.zeros_like(&yi),
            }
        })
        .collect();
    let refs: Vec<&str> = parts.iter().map(String::as_str).collect();
    let gx = c.b.op("Concat", &refs, vec![crate::onnx::attrs::int("axis", axis as i64)]);
    let mut out = vec![None; c.node.input.len()];
    out[0] = Some(gx);
    Ok(out)
}

/// Slice: the gradient is zero-padded back to the input's extent. A step `s` > 1 first
/// interleaves `s − 1` zeros after each gradient value (Unsqueeze, Pad the new axis to `s`,
/// Reshape), and a negative step first reverses the gradient along the axis, so every case
/// becomes "contiguous run from the first selected index", then one Pad (negative end pads
/// crop the tail of the last stride).
pub fn slice(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let dims = c.dims(&x)?;
    let r = dims.len();
    let runtime = |c: &RuleCtx<'_>, i: usize| c.has_input(i) && c.consts.ints(c.input(i)).is_none();
    if c.b.opset() >= 11 && (runtime(c, 1) || runtime(c, 2) || runtime(c, 4)) {
        return slice_at_run_time(c, &g, &x);
    }
    let (starts, ends, axes, steps) = if c.b.opset() >= 10 {
        let axes = if c.has_input(3) { c.const_ints(3)? } else { (0..c.const_ints(1)?.len() as i64).collect() };
        let steps = if c.has_input(4) { c.const_ints(4)? } else { vec![1; axes.len()] };
        (c.const_ints(1)?, c.const_ints(2)?, axes, steps)
    } else {
        let starts = attr_ints(c.node, "starts").unwrap_or_default();
        let axes = attr_ints(c.node, "axes").unwrap_or_else(|| (0..starts.len() as i64).collect());
        let steps = vec![1; axes.len()];
        (starts, attr_ints(c.node, "ends").unwrap_or_default(), axes, steps)
    };
    let n = axes.len();
    if starts.len() != n
        || ends.len() != n
        || steps.len() != n
        || axes.iter().any(|&a| !(-(r as i64)..r as i64).contains(&a))
    {
        return Err(c.unsupported(&format!(
            "Slice with {} starts, {} ends, {} steps and axes {axes:?} on a rank-{r} tensor",
            starts.len(),
            ends.len(),
            steps.len()
        )));
    }
    let (mut begin, mut end) = (vec![0i64; r], vec![0i64; r]);
    // Current extent of the gradient along each axis (0: the batch, copied by Reshape).
    let mut cur: Vec<i64> = c.dims(c.output(0))?.iter().map(|d| d.fixed().unwrap_or(0)).collect();
    let mut g = g;
    for (k, &a) in axes.iter().enumerate() {
        let a = norm_axis(a, r);
        let Dim::Fixed(d) = dims[a] else { return Err(c.unsupported("Slice along the batch axis")) };
        let step = steps[k];
        if step == 0 {
            return Err(c.unsupported("Slice with step 0"));
        }
        let (first, count) = slice_range(starts[k], ends[k], step, d);
        if count == 0 {
            let mut out = vec![None; c.node.input.len()];
            out[0] = Some(c.b.zeros_like(&x));
            return Ok(out);
        }
        if step < 0 {
            let (s, e, ax, m1) =
                (c.b.vec_i64(&[-1]), c.b.vec_i64(&[i64::MIN]), c.b.vec_i64(&[a as i64]), c.b.vec_i64(&[-1]));
            g = c.b.op("Slice", &[&g, &s, &e, &ax, &m1], vec![]);
        }
        let s = step.abs();
        if s > 1 {
            // [.., count, ..] -> [.., count, 1, ..] -> pad to [.., count, s, ..] -> [.., count·s, ..]
            let u = c.b.unsqueeze(&g, &[a as i64 + 1]);
            let mut pe = vec![0i64; r + 1];
            pe[a + 1] = s - 1;
            let p = c.b.pad(&u, &vec![0; r + 1], &pe);
            cur[a] = count * s;
            if cur[a + 1..].iter().filter(|&&v| v == 0).count() > 1 {
                return Err(c.unsupported("strided Slice with several unknown axes after the sliced one"));
            }
            let target: Vec<i64> = cur.iter().enumerate().map(|(i, &v)| if v == 0 && i > a { -1 } else { v }).collect();
            g = c.b.reshape_to(&p, &target);
        }
        // The run now starts at `first` and is s·count long (its last s−1 values are the
        // interleaved zeros); a negative end pad crops what overhangs the input.
        begin[a] = first;
        end[a] = d - first - s * count;
    }
    let mut out = vec![None; c.node.input.len()];
    out[0] = Some(c.b.pad(&g, &begin, &end));
    Ok(out)
}

/// Slice whose starts/ends/steps are computed in the graph (timm's Swin crops its padding
/// with `x[:, :H, :W]`, H and W read from the input's shape): the same Slice applied to a
/// constant ramp of per-sample flat positions yields the positions it selects, where
/// ScatterElements writes the gradient (positions are distinct, so no reduction is needed).
fn slice_at_run_time(c: &mut RuleCtx<'_>, g: &str, x: &str) -> Grads {
    let dims = c.dims(x)?;
    let r = dims.len();
    if !c.has_input(3) {
        return Err(c.unsupported("Slice with starts/ends computed at run time and no axes"));
    }
    let axes: Vec<usize> = c.const_ints(3)?.iter().map(|&a| c.axis(a, r)).collect::<Result<_, _>>()?;
    if r < 2 || axes.contains(&0) {
        return Err(c.unsupported("Slice with starts/ends computed at run time along axis 0"));
    }
    let rest: Vec<i64> = dims[1..]
        .iter()
        .map(|d| d.fixed())
        .collect::<Option<_>>()
        .ok_or_else(|| c.unsupported("Slice with starts/ends computed at run time on a tensor of unknown size"))?;
    let m = c.built_size(&rest)? as i64;
    let mut ramp_dims = vec![1];
    ramp_dims.extend(&rest);
    let ramp = c.b.const_i64("slice_ramp", &ramp_dims, &(0..m).collect::<Vec<_>>());
    let mut inputs: Vec<&str> = c.node.input.iter().map(String::as_str).collect();
    inputs[0] = &ramp;
    let picked = c.b.op("Slice", &inputs, vec![]);
    let idx = c.b.reshape_to(&picked, &[1, -1]);
    let gf = c.b.reshape_to(g, &[0, -1]);
    let shape = c.b.shape_of(&gf);
    let idx = c.b.op("Expand", &[&idx, &shape], vec![]);
    let z = c.b.zeros_like(x);
    let zf = c.b.reshape_to(&z, &[0, -1]);
    let scattered = c.b.op("ScatterElements", &[&zf, &idx, &gf], vec![crate::onnx::attrs::int("axis", 1)]);
    let mut out = vec![None; c.node.input.len()];
    out[0] = Some(c.b.reshape_like(&scattered, x));
    Ok(out)
}

/// ONNX Slice semantics along one axis of size `d`: the lowest selected index and how many
/// are selected (negative starts/ends count from the end; out-of-range values clamp).
fn slice_range(start: i64, end: i64, step: i64, d: i64) -> (i64, i64) {
    let wrap = |v: i64| if v < 0 { v.saturating_add(d) } else { v };
    let (s, e) = (wrap(start), wrap(end));
    if step > 0 {
        let (s, e) = (s.clamp(0, d), e.clamp(0, d));
        // (e - s - 1) / step + 1: no overflow whatever the step.
        let count = if e > s { (e - s - 1) / step + 1 } else { 0 };
        (s, count)
    } else {
        let (s, e) = (s.clamp(0, d - 1), e.clamp(-1, d - 1));
        let st = step.checked_neg().unwrap_or(i64::MAX);
        let count = if s > e { (s - e - 1) / st + 1 } else { 0 };
        (s - (count - 1).max(0) * st, count)
    }
}

/// Constant Pad: the gradient is cropped back (a Pad with the negated pads, which also
/// restores axes the forward Pad cropped with negative pads).
pub fn pad(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let mode = attr_string(c.node, "mode").unwrap_or_else(|| "constant".into());
    if mode != "constant" {
        return Err(c.unsupported(&format!("Pad mode {mode} (only constant padding is differentiable here)")));
    }
    let r = c.rank(&x)?;
    if c.b.opset() >= 11 && c.consts.ints(c.input(1)).is_none() {
        // Pads computed in the graph (torch's legacy exporter writes "same" padding as a
        // subgraph of constants): negate them at run time; the head keeps that subgraph.
        let (pads, axes) = (c.input(1).to_owned(), c.input(3).to_owned());
        let neg = c.b.neg(&pads);
        let mut inputs = vec![g.as_str(), neg.as_str()];
        if c.b.opset() >= 18 && !axes.is_empty() {
            inputs.extend(["", axes.as_str()]);
        }
        let mut out = vec![None; c.node.input.len()];
        out[0] = Some(c.b.op("Pad", &inputs, vec![crate::onnx::attrs::string("mode", "constant")]));
        return Ok(out);
    }
    let raw = if c.b.opset() >= 11 { c.const_ints(1)? } else { attr_ints(c.node, "pads").unwrap_or_default() };
    let axes: Vec<usize> = if c.b.opset() >= 18 && c.has_input(3) {
        c.const_ints(3)?.iter().map(|&a| c.axis(a, r)).collect::<Result<_, _>>()?
    } else {
        (0..r).collect()
    };
    let n = axes.len();
    if raw.len() != 2 * n {
        return Err(c.unsupported("pads of unexpected length"));
    }
    let (mut begin, mut end) = (vec![0i64; r], vec![0i64; r]);
    for (k, &a) in axes.iter().enumerate() {
        begin[a] = -raw[k];
        end[a] = -raw[n + k];
    }
    let mut out = vec![None; c.node.input.len()];
    out[0] = Some(c.b.pad(&g, &begin, &end));
    Ok(out)
}

/// CastLike (the dynamo exporter's cast): float-to-float passes the gradient to input 0;
/// the type-giving input 1 gets none.
pub fn cast_like(c: &mut RuleCtx<'_>) -> Grads {
    let is_float =
        |c: &RuleCtx<'_>, t: &str| c.fact(t).is_ok_and(|f| f.elem_type == dtype::FLOAT || f.elem_type == dtype::DOUBLE);
    if is_float(c, c.input(0)) && is_float(c, c.input(1)) {
        let g = c.grad();
        let back = c.b.op("Cast", &[&g], vec![crate::onnx::attrs::int("to", i64::from(dtype::FLOAT))]);
        return Ok(vec![Some(back), None]);
    }
    Ok(vec![None, None])
}

/// Tile with constant repeats: output axis `i` is `r_i` copies of the input's `d_i`, so the
/// gradient reshaped to `[r_0, d_0, r_1, d_1, ...]` and summed over the `r` axes is the
/// input's gradient.
pub fn tile(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let reps = c.const_ints(1)?;
    let dims = c.dims(&x)?;
    if reps.len() != dims.len() {
        return Err(c.unsupported("Tile repeats of a different length than the input's rank"));
    }
    if reps.iter().all(|&r| r == 1) {
        return Ok(vec![Some(g), None]);
    }
    let mut target = Vec::with_capacity(2 * dims.len());
    let mut unknown = 0;
    for (&r, d) in reps.iter().zip(&dims) {
        target.push(r);
        target.push(match d {
            Dim::Fixed(v) => *v,
            _ => {
                unknown += 1;
                -1
            }
        });
    }
    if unknown > 1 {
        return Err(c.unsupported("Tile of a tensor with several unknown axes"));
    }
    let split = c.b.reshape_to(&g, &target);
    let rep_axes: Vec<i64> = (0..dims.len() as i64).map(|i| 2 * i).collect();
    Ok(vec![Some(c.b.reduce_sum(&split, &rep_axes, false)), None])
}
