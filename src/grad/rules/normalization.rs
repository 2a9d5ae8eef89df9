//! Normalisation layers in inference mode.

use super::RuleCtx;
use crate::grad::GradError;
use crate::onnx::{attr_float, attr_int};

type Grads = Result<Vec<Option<String>>, GradError>;

/// Inference BatchNormalization is affine per channel: dx = g · scale / √(var + ε).
pub fn batch_norm(c: &mut RuleCtx<'_>) -> Grads {
    if attr_int(c.node, "training_mode").unwrap_or(0) != 0 {
        return Err(c.unsupported("BatchNormalization in training mode"));
    }
    if (1..5).any(|i| c.needs(i)) {
        return Err(c.unsupported("gradients w.r.t. BatchNormalization parameters"));
    }
    let g = c.grad();
    let (x, scale, var) = (c.input(0).to_owned(), c.input(1).to_owned(), c.input(4).to_owned());
    let eps = attr_float(c.node, "epsilon").unwrap_or(1e-5);
    let r = c.rank(&x)?;
    let e = c.b.scalar_f32(eps);
    let ve = c.b.add(&var, &e);
    let sd = c.b.op("Sqrt", &[&ve], vec![]);
    let f = c.b.div(&scale, &sd);
    let trailing: Vec<i64> = (1..r as i64 - 1).collect();
    let fb = if trailing.is_empty() { f } else { c.b.unsqueeze(&f, &trailing) };
    let mut out = vec![None; c.node.input.len()];
    out[0] = Some(c.b.mul(&g, &fb));
    Ok(out)
}

/// LayerNormalization over axes `axis..`: with x̂ = (x−μ)/σ and h = g·γ,
/// dx = (h − mean(h) − x̂·mean(h·x̂)) / σ.
pub fn layer_norm(c: &mut RuleCtx<'_>) -> Grads {
    if c.needs(1) || c.needs(2) {
        return Err(c.unsupported("gradients w.r.t. LayerNormalization parameters"));
    }
    let g = c.grad();
    let (x, gamma) = (c.input(0).to_owned(), c.input(1).to_owned());
    let r = c.rank(&x)?;
    let axis = c.axis(attr_int(c.node, "axis").unwrap_or(-1), r)?;
    let axes: Vec<i64> = (axis as i64..r as i64).collect();
    let eps = attr_float(c.node, "epsilon").unwrap_or(1e-5);
    let mu = c.b.reduce_mean(&x, &axes, true);
    let xc = c.b.sub(&x, &mu);
    let sq = c.b.mul(&xc, &xc);
    let var = c.b.reduce_mean(&sq, &axes, true);
    let e = c.b.scalar_f32(eps);
    let ve = c.b.add(&var, &e);
    let sd = c.b.op("Sqrt", &[&ve], vec![]);
    let xhat = c.b.div(&xc, &sd);
    let h = c.b.mul(&g, &gamma);
    let mh = c.b.reduce_mean(&h, &axes, true);
    let hx = c.b.mul(&h, &xhat);
    let mhx = c.b.reduce_mean(&hx, &axes, true);
    let t = c.b.mul(&xhat, &mhx);
    let d1 = c.b.sub(&h, &mh);
    let d2 = c.b.sub(&d1, &t);
    let mut out = vec![None; c.node.input.len()];
    out[0] = Some(c.b.div(&d2, &sd));
    Ok(out)
}
