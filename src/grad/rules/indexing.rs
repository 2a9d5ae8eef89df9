//! Indexing and selection: Gather, GatherElements, GatherND, ScatterND, ScatterElements,
//! Where. Indices and conditions never receive a gradient.

use super::RuleCtx;
use crate::grad::GradError;
use crate::onnx::shapes::Dim;
use crate::onnx::{attr_int, attr_string, attrs};

type Grads = Result<Vec<Option<String>>, GradError>;

/// Gather with constant indices (the class token `x[:, 0]`, token selections). The
/// gradient is the transpose of the selection: a constant one-hot matrix `M [k, d]` (row `j`
/// marks index `j`) applied along the gathered axis, `dX = g · M` with the axis moved last.
/// Unlike a scatter it needs no opset-16 `reduction`, and duplicate indices add up by
/// construction. Only the data gets a gradient; a Gather of an initializer (a
/// relative-position-bias table) never reaches a rule since nothing flows into its data.
/// Run-time indices and batch-sized axes go through [`gather_at_run_time`].
pub fn gather(c: &mut RuleCtx<'_>) -> Grads {
    let mut out = vec![None; c.node.input.len()];
    if !c.needs(0) {
        return Ok(out);
    }
    let (g, data) = (c.grad(), c.input(0).to_owned());
    let dims = c.dims(&data)?;
    let r = dims.len();
    let axis = c.axis(attr_int(c.node, "axis").unwrap_or(0), r)?;
    let (Dim::Fixed(d), Some(idx)) = (dims[axis], c.consts.ints(c.input(1))) else {
        out[0] = Some(gather_at_run_time(c, &g, &data, r, axis)?);
        return Ok(out);
    };
    let idx_rank = match c.consts.get(c.input(1)) {
        Some(t) => t.dims.len(),
        None => c.rank(c.input(1))?,
    };
    let k = idx.len();
    let mut wrapped = Vec::with_capacity(k);
    for &i in &idx {
        let i = if i < 0 { i + d } else { i };
        if !(0..d).contains(&i) {
            return Err(c.unsupported(&format!("Gather index {i} out of range for an axis of size {d}")));
        }
        wrapped.push(i);
    }
    if let (0, [i]) = (idx_rank, wrapped.as_slice()) {
        // One index, the axis dropped (the class token `x[:, 0]`, q/k/v by index): put the
        // gradient back in its place.
        out[0] = Some(c.b.slot(&g, r, axis, *i, d));
        return Ok(out);
    }
    let mut onehot = vec![0f32; k * d as usize];
    for (j, &i) in wrapped.iter().enumerate() {
        onehot[j * d as usize + i as usize] += 1.0;
    }
    let m = c.b.const_f32("gather_onehot", &[k as i64, d], &onehot);
    // g has the index dims in place of `axis`: bring them to one axis of size k.
    let gk = if idx_rank == 1 {
        g
    } else {
        let mut target = Vec::with_capacity(r);
        let mut unknown_after = 0;
        for (a, dim) in dims.iter().enumerate() {
            target.push(match (a.cmp(&axis), dim) {
                (std::cmp::Ordering::Equal, _) => k as i64,
                (_, Dim::Fixed(v)) => *v,
                // Before the axis the position is unchanged: 0 copies the dim.
                (std::cmp::Ordering::Less, _) => 0,
                (std::cmp::Ordering::Greater, _) => {
                    unknown_after += 1;
                    -1
                }
            });
        }
        if unknown_after > 1 {
            return Err(c.unsupported("Gather with several unknown axes after the gathered one"));
        }
        c.b.reshape_to(&g, &target)
    };
    let gx = if axis + 1 == r {
        c.b.op("MatMul", &[&gk, &m], vec![])
    } else {
        let mut perm: Vec<i64> = (0..r as i64).filter(|&a| a != axis as i64).collect();
        perm.push(axis as i64);
        let mut inv = vec![0i64; r];
        for (i, &p) in perm.iter().enumerate() {
            inv[p as usize] = i as i64;
        }
        let t = c.b.transpose(&gk, &perm);
        let mm = c.b.op("MatMul", &[&t, &m], vec![]);
        c.b.transpose(&mm, &inv)
    };
    out[0] = Some(gx);
    Ok(out)
}

/// Gather with indices computed in the graph, or along an axis whose size follows the
/// batch (the dynamo exporter writes `as_strided` as a Gather from a flattened tensor):
/// ScatterND with `reduction="add"` (opset 16+) writes the gradient back, the gathered axis
/// moved first in the data and the index block moved first in the gradient. Negative
/// indices are wrapped by the axis size read at run time.
fn gather_at_run_time(c: &mut RuleCtx<'_>, g: &str, data: &str, r: usize, axis: usize) -> Result<String, GradError> {
    if c.b.opset() < 16 {
        return Err(c.unsupported(
            "Gather with run-time indices or along a batch-sized axis before opset 16 (no ScatterND add)",
        ));
    }
    let idx = c.input(1).to_owned();
    let q = match c.consts.get(&idx) {
        Some(t) => t.dims.len(),
        None => c.rank(&idx)?,
    };
    let sh = c.b.shape_of(data);
    let ax = c.b.const_i64("gather_axis", &[], &[axis as i64]);
    let d = c.b.op("Gather", &[&sh, &ax], vec![attrs::int("axis", 0)]);
    let zero = c.b.const_i64("zero", &[], &[0]);
    let neg = c.b.op("Less", &[&idx, &zero], vec![]);
    let idx64 = c.b.op("Cast", &[&idx], vec![attrs::int("to", i64::from(crate::onnx::dtype::INT64))]);
    let wrapped = c.b.add(&idx64, &d);
    let idxn = c.b.op("Where", &[&neg, &wrapped, &idx64], vec![]);
    let idx1 = c.b.unsqueeze(&idxn, &[q as i64]);
    let z = c.b.zeros_like(data);
    let add = attrs::string("reduction", "add");
    if axis == 0 {
        return Ok(c.b.op("ScatterND", &[&z, &idx1, g], vec![add]));
    }
    // Data: [axis, 0..axis, axis+1..r]; gradient: [index block, 0..axis, the rest].
    let mut dperm = vec![axis as i64];
    dperm.extend((0..r as i64).filter(|&a| a != axis as i64));
    let mut gperm: Vec<i64> = (axis..axis + q).map(|a| a as i64).collect();
    gperm.extend(0..axis as i64);
    gperm.extend((axis + q) as i64..(r - 1 + q) as i64);
    let mut inv = vec![0i64; r];
    for (i, &p) in dperm.iter().enumerate() {
        inv[p as usize] = i as i64;
    }
    let zt = c.b.transpose(&z, &dperm);
    let gt = c.b.transpose(g, &gperm);
    let s = c.b.op("ScatterND", &[&zt, &idx1, &gt], vec![add]);
    Ok(c.b.transpose(&s, &inv))
}

/// The scatters with `reduction="add"` that transpose GatherElements/GatherND exist from
/// opset 16.
fn scatter_add(c: &mut RuleCtx<'_>, op: &str, extra: Vec<crate::onnx::AttributeProto>) -> Grads {
    if c.b.opset() < 16 {
        return Err(c.unsupported("needs ScatterElements/ScatterND with reduction=add (opset 16+)"));
    }
    let (g, data, idx) = (c.grad(), c.input(0).to_owned(), c.input(1).to_owned());
    let z = c.b.zeros_like(&data);
    let mut a = extra;
    a.push(attrs::string("reduction", "add"));
    let gx = c.b.op(op, &[&z, &idx, &g], a);
    Ok(vec![Some(gx), None])
}

/// GatherElements: scatter-add the gradient back to the gathered positions (repeated
/// indices add up). Indices may be computed at run time.
pub fn gather_elements(c: &mut RuleCtx<'_>) -> Grads {
    let axis = attr_int(c.node, "axis").unwrap_or(0);
    scatter_add(c, "ScatterElements", vec![attrs::int("axis", axis)])
}

/// GatherND (batch_dims = 0): ScatterND with reduction add.
pub fn gather_nd(c: &mut RuleCtx<'_>) -> Grads {
    if attr_int(c.node, "batch_dims").unwrap_or(0) != 0 {
        return Err(c.unsupported("GatherND with batch_dims (ScatterND has none)"));
    }
    scatter_add(c, "ScatterND", vec![])
}

/// ScatterND / ScatterElements (exporters' in-place index assignment). Without reduction
/// the overwritten positions of `data` get no gradient (the same scatter writes zeros there)
/// and `updates` gets the gradient gathered at its positions; with `add` the data passes
/// the gradient untouched.
fn scatter(c: &mut RuleCtx<'_>, gather_op: &str, extra: Vec<crate::onnx::AttributeProto>) -> Grads {
    let (g, idx, upd) = (c.grad(), c.input(1).to_owned(), c.input(2).to_owned());
    let reduction = attr_string(c.node, "reduction").unwrap_or_else(|| "none".into());
    if reduction != "none" && reduction != "add" {
        return Err(c.unsupported(&format!("scatter with reduction={reduction}")));
    }
    let mut out = vec![None; 3];
    if c.needs(0) {
        out[0] = Some(if reduction == "add" {
            g.clone()
        } else {
            let z = c.b.zeros_like(&upd);
            c.b.op(crate::onnx::op(c.node), &[&g, &idx, &z], extra.clone())
        });
    }
    if c.needs(2) {
        out[2] = Some(c.b.op(gather_op, &[&g, &idx], extra));
    }
    Ok(out)
}

pub fn scatter_nd(c: &mut RuleCtx<'_>) -> Grads {
    scatter(c, "GatherND", vec![])
}

pub fn scatter_elements(c: &mut RuleCtx<'_>) -> Grads {
    let axis = attr_int(c.node, "axis").unwrap_or(0);
    scatter(c, "GatherElements", vec![attrs::int("axis", axis)])
}

/// Where(cond, X, Y): the gradient goes to X where cond holds and to Y elsewhere, each
/// un-broadcast to its own shape (an attention mask broadcasts over heads and queries).
pub fn where_(c: &mut RuleCtx<'_>) -> Grads {
    let (g, cond, y) = (c.grad(), c.input(0).to_owned(), c.output(0).to_owned());
    let mut out = vec![None; 3];
    if c.needs(1) || c.needs(2) {
        let zero = c.b.scalar_f32(0.0);
        if c.needs(1) {
            let gx = c.b.op("Where", &[&cond, &g, &zero], vec![]);
            let x = c.input(1).to_owned();
            out[1] = Some(c.unbroadcast(&gx, &y, &x)?);
        }
        if c.needs(2) {
            let gy = c.b.op("Where", &[&cond, &zero, &g], vec![]);
            let yin = c.input(2).to_owned();
            out[2] = Some(c.unbroadcast(&gy, &y, &yin)?);
        }
    }
    Ok(out)
}
