//! Linear maps and arithmetic: Gemm, MatMul, Conv (w.r.t. its input), and the broadcasting
//! element-wise ops.

use super::RuleCtx;
use crate::grad::GradError;
use crate::onnx::shapes::Dim;
use crate::onnx::{attr_float, attr_int, attr_ints, attr_string, attrs};

type Grads = Result<Vec<Option<String>>, GradError>;

/// `Y = alpha * A' B' + beta * C` with `A' = transA ? Aᵀ : A` (likewise B').
pub fn gemm(c: &mut RuleCtx<'_>) -> Grads {
    let g = c.grad();
    let alpha = attr_float(c.node, "alpha").unwrap_or(1.0);
    let beta = attr_float(c.node, "beta").unwrap_or(1.0);
    let ta = attr_int(c.node, "transA").unwrap_or(0) != 0;
    let tb = attr_int(c.node, "transB").unwrap_or(0) != 0;
    let (a, bm) = (c.input(0).to_owned(), c.input(1).to_owned());
    let gemm = |c: &mut RuleCtx<'_>, x: &str, y: &str, tx: bool, ty: bool| {
        c.b.op(
            "Gemm",
            &[x, y],
            vec![
                attrs::float("alpha", alpha),
                attrs::int("transA", i64::from(tx)),
                attrs::int("transB", i64::from(ty)),
            ],
        )
    };
    let mut out = vec![None; c.node.input.len()];
    if c.needs(0) {
        // dA' = alpha g B'ᵀ; dA = transA ? (dA')ᵀ = alpha B' gᵀ : dA'.
        out[0] = Some(if ta { gemm(c, &bm, &g, tb, true) } else { gemm(c, &g, &bm, false, !tb) });
    }
    if c.needs(1) {
        // dB' = alpha A'ᵀ g; dB = transB ? alpha gᵀ A' : dB'.
        out[1] = Some(if tb { gemm(c, &g, &a, true, ta) } else { gemm(c, &a, &g, !ta, false) });
    }
    if c.needs(2) {
        let y = c.output(0).to_owned();
        let scaled = if beta == 1.0 { g.clone() } else { c.b.mul_scalar(&g, beta) };
        let cin = c.input(2).to_owned();
        out[2] = Some(c.unbroadcast(&scaled, &y, &cin)?);
    }
    Ok(out)
}

/// `Y = A @ B` (numpy semantics, rank >= 2): dA = g @ Bᵀ, dB = Aᵀ @ g, un-broadcast.
pub fn matmul(c: &mut RuleCtx<'_>) -> Grads {
    let g = c.grad();
    let (a, bm, y) = (c.input(0).to_owned(), c.input(1).to_owned(), c.output(0).to_owned());
    let (ra, rb) = (c.rank(&a)?, c.rank(&bm)?);
    if ra < 2 || rb < 2 {
        return Err(c.unsupported("MatMul with a 1-D operand"));
    }
    let swap_last = |r: usize| {
        let mut p: Vec<i64> = (0..r as i64).collect();
        p.swap(r - 1, r - 2);
        p
    };
    let mut out = vec![None; 2];
    if c.needs(0) {
        let bt = c.b.transpose(&bm, &swap_last(rb));
        let ga = c.b.op("MatMul", &[&g, &bt], vec![]);
        out[0] = Some(unbroadcast_batch(c, &ga, &y, &a)?);
    }
    if c.needs(1) {
        let at = c.b.transpose(&a, &swap_last(ra));
        let gb = c.b.op("MatMul", &[&at, &g], vec![]);
        out[1] = Some(unbroadcast_batch(c, &gb, &y, &bm)?);
    }
    Ok(out)
}

/// Reduce the broadcast batch axes of a MatMul operand gradient (its last two axes are the
/// operand's own matrix axes already).
fn unbroadcast_batch(c: &mut RuleCtx<'_>, g: &str, y: &str, x: &str) -> Result<String, GradError> {
    let (yd, xd) = (c.dims(y)?, c.dims(x)?);
    if xd.len() < 2 || yd.len() < xd.len() {
        return Err(c.unsupported(&format!("MatMul output `{y}` has a lower rank than operand `{x}`")));
    }
    if yd.len() == xd.len() && yd[..yd.len() - 2] == xd[..xd.len() - 2] {
        return Ok(g.to_owned());
    }
    let lead = yd.len() - xd.len();
    let mut axes: Vec<i64> = (0..lead as i64).collect();
    for k in 0..xd.len() - 2 {
        if xd[k] == Dim::Fixed(1) && yd[lead + k] != Dim::Fixed(1) {
            axes.push((lead + k) as i64);
        }
    }
    let s = if axes.is_empty() { g.to_owned() } else { c.b.reduce_sum(g, &axes, true) };
    Ok(c.b.reshape_like(&s, x))
}

/// Conv w.r.t. its input: ConvTranspose with the same weights, group, strides, dilations and
/// explicit pads, plus `output_padding` so the result has the input's exact size (strided
/// convs drop trailing rows the transpose must restore).
pub fn conv(c: &mut RuleCtx<'_>) -> Grads {
    if c.needs(1) || c.needs(2) {
        return Err(c.unsupported("gradients w.r.t. Conv weights or bias (they depend on the target layer)"));
    }
    let g = c.grad();
    let (x, w, y) = (c.input(0).to_owned(), c.input(1).to_owned(), c.output(0).to_owned());
    let wd = c.dims(&w)?;
    let spatial = wd.len().saturating_sub(2);
    if spatial == 0 {
        return Err(c.unsupported("Conv weights of rank < 3"));
    }
    let k: Vec<i64> = match attr_ints(c.node, "kernel_shape") {
        Some(k) => k,
        None => (0..spatial).map(|i| c.fixed_dim(&w, 2 + i)).collect::<Result<_, _>>()?,
    };
    let strides = attr_ints(c.node, "strides").unwrap_or_else(|| vec![1; spatial]);
    let dil = attr_ints(c.node, "dilations").unwrap_or_else(|| vec![1; spatial]);
    let group = attr_int(c.node, "group").unwrap_or(1);
    let in_sz: Vec<i64> = (0..spatial).map(|i| c.fixed_dim(&x, 2 + i)).collect::<Result<_, _>>()?;
    let out_sz: Vec<i64> = (0..spatial).map(|i| c.fixed_dim(&y, 2 + i)).collect::<Result<_, _>>()?;
    let (pb, pe) = explicit_pads(c, &in_sz, &out_sz, &k, &strides, &dil)?;
    let gx = transpose_back(
        c,
        &g,
        &w,
        Window { k: &k, strides: &strides, dil: &dil, group, in_sz: &in_sz, out_sz: &out_sz },
        pb,
        pe,
    );
    Ok(vec![Some(gx), None, None])
}

/// The geometry of a sliding window (Conv, pools).
pub(super) struct Window<'w> {
    pub k: &'w [i64],
    pub strides: &'w [i64],
    pub dil: &'w [i64],
    pub group: i64,
    pub in_sz: &'w [i64],
    pub out_sz: &'w [i64],
}

/// `ConvTranspose(g, w)` with the window's geometry and explicit pads, sized back to the
/// forward input: a strided window drops up to stride−1 trailing rows, which
/// `output_padding` restores (0 <= extra < stride for any valid forward op; a negative
/// extra is cropped at the end instead).
pub(super) fn transpose_back(
    c: &mut RuleCtx<'_>,
    g: &str,
    w: &str,
    win: Window<'_>,
    pb: Vec<i64>,
    mut pe: Vec<i64>,
) -> String {
    let n = win.k.len();
    let mut output_padding = vec![0; n];
    for i in 0..n {
        let natural = win.strides[i] * (win.out_sz[i] - 1) + win.dil[i] * (win.k[i] - 1) + 1 - pb[i] - pe[i];
        let extra = win.in_sz[i] - natural;
        if extra >= 0 {
            output_padding[i] = extra;
        } else {
            pe[i] -= extra;
        }
    }
    let pads: Vec<i64> = pb.iter().chain(&pe).copied().collect();
    c.b.op(
        "ConvTranspose",
        &[g, w],
        vec![
            attrs::ints("kernel_shape", win.k),
            attrs::ints("strides", win.strides),
            attrs::ints("dilations", win.dil),
            attrs::ints("pads", &pads),
            attrs::ints("output_padding", &output_padding),
            attrs::int("group", win.group),
        ],
    )
}

/// Explicit (begin, end) pads of a Conv/pool, resolving `auto_pad`.
/// The largest size, stride, dilation or pad a window may have: products of a few of these
/// stay far from `i64` overflow.
const WINDOW_MAX: i64 = 1 << 31;

pub(super) fn explicit_pads(
    c: &RuleCtx<'_>,
    in_sz: &[i64],
    out_sz: &[i64],
    k: &[i64],
    strides: &[i64],
    dil: &[i64],
) -> Result<(Vec<i64>, Vec<i64>), GradError> {
    let n = in_sz.len();
    // A malformed node (attribute lists of the wrong length, sizes no tensor has) is an
    // error, not an index out of bounds or an overflow in the window arithmetic below.
    let sane = |v: &[i64], min: i64| v.len() == n && v.iter().all(|&x| (min..=WINDOW_MAX).contains(&x));
    if !(sane(in_sz, 0) && sane(out_sz, 0) && sane(k, 1) && sane(strides, 1) && sane(dil, 1)) {
        return Err(c.unsupported(&format!(
            "kernel_shape {k:?}, strides {strides:?} or dilations {dil:?} do not fit its {n} spatial axes of sizes {in_sz:?} -> {out_sz:?}"
        )));
    }
    let auto = attr_string(c.node, "auto_pad").unwrap_or_else(|| "NOTSET".into());
    match auto.as_str() {
        "NOTSET" | "" => {
            let p = attr_ints(c.node, "pads").unwrap_or_else(|| vec![0; 2 * n]);
            if p.len() != 2 * n || p.iter().any(|&x| !(0..=WINDOW_MAX).contains(&x)) {
                return Err(c.unsupported(&format!("pads {p:?} for {n} spatial axes")));
            }
            Ok((p[..n].to_vec(), p[n..].to_vec()))
        }
        "VALID" => Ok((vec![0; n], vec![0; n])),
        "SAME_UPPER" | "SAME_LOWER" => {
            let (mut b, mut e) = (vec![0; n], vec![0; n]);
            for i in 0..n {
                let total = ((out_sz[i] - 1) * strides[i] + dil[i] * (k[i] - 1) + 1 - in_sz[i]).max(0);
                let small = total / 2;
                if auto == "SAME_UPPER" {
                    (b[i], e[i]) = (small, total - small);
                } else {
                    (b[i], e[i]) = (total - small, small);
                }
            }
            Ok((b, e))
        }
        other => Err(c.unsupported(&format!("auto_pad {other}"))),
    }
}

fn binary(
    c: &mut RuleCtx<'_>,
    ga: impl FnOnce(&mut RuleCtx<'_>, &str) -> String,
    gb: impl FnOnce(&mut RuleCtx<'_>, &str) -> String,
) -> Grads {
    let g = c.grad();
    let (a, bn, y) = (c.input(0).to_owned(), c.input(1).to_owned(), c.output(0).to_owned());
    let mut out = vec![None; 2];
    if c.needs(0) {
        let d = ga(c, &g);
        out[0] = Some(c.unbroadcast(&d, &y, &a)?);
    }
    if c.needs(1) {
        let d = gb(c, &g);
        out[1] = Some(c.unbroadcast(&d, &y, &bn)?);
    }
    Ok(out)
}

pub fn add(c: &mut RuleCtx<'_>) -> Grads {
    binary(c, |_, g| g.to_owned(), |_, g| g.to_owned())
}

pub fn sub(c: &mut RuleCtx<'_>) -> Grads {
    binary(c, |_, g| g.to_owned(), |c, g| c.b.neg(g))
}

pub fn mul(c: &mut RuleCtx<'_>) -> Grads {
    let (a, bn) = (c.input(0).to_owned(), c.input(1).to_owned());
    binary(c, |c, g| c.b.mul(g, &bn), |c, g| c.b.mul(g, &a))
}

/// `Y = A / B`: dA = g / B, dB = -g · Y / B.
pub fn div(c: &mut RuleCtx<'_>) -> Grads {
    let (bn, y) = (c.input(1).to_owned(), c.output(0).to_owned());
    binary(
        c,
        |c, g| c.b.div(g, &bn),
        |c, g| {
            let gy = c.b.mul(g, &y);
            let q = c.b.div(&gy, &bn);
            c.b.neg(&q)
        },
    )
}

/// Variadic `Sum`: each input receives the (un-broadcast) gradient.
pub fn sum(c: &mut RuleCtx<'_>) -> Grads {
    let g = c.grad();
    let y = c.output(0).to_owned();
    let mut out = vec![None; c.node.input.len()];
    for (i, slot) in out.iter_mut().enumerate() {
        if c.needs(i) {
            let x = c.input(i).to_owned();
            *slot = Some(c.unbroadcast(&g, &y, &x)?);
        }
    }
    Ok(out)
}

pub fn neg(c: &mut RuleCtx<'_>) -> Grads {
    let g = c.grad();
    Ok(vec![Some(c.b.neg(&g))])
}

/// Variadic element-wise Max/Min: each input receives the gradient where it equals the
/// result, split evenly among tied inputs (PyTorch's `maximum`/`minimum` rule), then
/// un-broadcast to its own shape.
pub fn max_min(c: &mut RuleCtx<'_>) -> Grads {
    let (g, y) = (c.grad(), c.output(0).to_owned());
    let n = c.node.input.len();
    if n == 1 {
        return Ok(vec![Some(g)]);
    }
    let masks: Vec<String> = (0..n)
        .map(|i| {
            let x = c.input(i).to_owned();
            let eq = c.b.op("Equal", &[&x, &y], vec![]);
            c.b.op("Cast", &[&eq], vec![attrs::int("to", i64::from(crate::onnx::dtype::FLOAT))])
        })
        .collect();
    let count = c.b.sum(&masks);
    let share = c.b.div(&g, &count);
    let mut out = vec![None; n];
    for (i, slot) in out.iter_mut().enumerate() {
        if c.needs(i) {
            let x = c.input(i).to_owned();
            let gi = c.b.mul(&share, &masks[i]);
            *slot = Some(c.unbroadcast(&gi, &y, &x)?);
        }
    }
    Ok(out)
}

/// CumSum is a triangular linear map; its transpose is the cumulative sum in the other
/// direction with the same exclusivity: y_i = Σ_{j≤i} x_j gives dx_j = Σ_{i≥j} g_i.
pub fn cum_sum(c: &mut RuleCtx<'_>) -> Grads {
    let g = c.grad();
    let axis = match c.const_ints(1)?.as_slice() {
        [a] => *a,
        _ => return Err(c.unsupported("CumSum axis that is not a single value")),
    };
    let ax = c.b.const_i64("cumsum_axis", &[], &[axis]);
    let reverse = attr_int(c.node, "reverse").unwrap_or(0) != 0;
    let exclusive = attr_int(c.node, "exclusive").unwrap_or(0);
    let gx = c.b.op(
        "CumSum",
        &[&g, &ax],
        vec![attrs::int("exclusive", exclusive), attrs::int("reverse", i64::from(!reverse))],
    );
    Ok(vec![Some(gx), None])
}
