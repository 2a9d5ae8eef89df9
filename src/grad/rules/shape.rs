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
    let mut inv = vec![0i64; perm.len()];
    for (i, &p) in perm.iter().enumerate() {
        inv[norm_axis(p, r)] = i as i64;
    }
    Ok(vec![Some(c.b.transpose(&g, &inv))])
}

/// Each input receives its slice of the gradient along the concatenation axis.
pub fn concat(c: &mut RuleCtx<'_>) -> Grads {
    let g = c.grad();
    let y = c.output(0).to_owned();
    let axis = norm_axis(attr_int(c.node, "axis").unwrap_or(0), c.rank(&y)?);
    let mut out = vec![None; c.node.input.len()];
    let mut offset = 0i64;
    for (i, slot) in out.iter_mut().enumerate() {
        let x = c.input(i).to_owned();
        let size = match c.dims(&x)?[axis] {
            Dim::Fixed(s) => s,
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
    let axis = norm_axis(attr_int(c.node, "axis").unwrap_or(0), c.rank(&y0)?);
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

/// Slice with unit steps: the gradient is zero-padded back to the input's extent.
pub fn slice(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let dims = c.dims(&x)?;
    let r = dims.len();
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
    if steps.iter().any(|&s| s != 1) {
        return Err(c.unsupported("Slice with steps other than 1"));
    }
    let (mut begin, mut end) = (vec![0i64; r], vec![0i64; r]);
    for (k, &a) in axes.iter().enumerate() {
        let a = norm_axis(a, r);
        let Dim::Fixed(d) = dims[a] else { return Err(c.unsupported("Slice along the batch axis")) };
        let clamp = |v: i64| if v < 0 { (v + d).max(0) } else { v.min(d) };
        let (s, e) = (clamp(starts[k]), clamp(ends[k]).max(clamp(starts[k])));
        begin[a] = s;
        end[a] = d - e;
    }
    let mut out = vec![None; c.node.input.len()];
    out[0] = Some(c.b.pad(&g, &begin, &end));
    Ok(out)
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
        c.const_ints(3)?.iter().map(|&a| norm_axis(a, r)).collect()
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
