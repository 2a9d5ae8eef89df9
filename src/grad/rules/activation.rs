//! Point-wise activations and Softmax. Masks follow PyTorch's subgradient choices at kinks
//! (ReLU: 0 at 0; Clip/ReLU6: 0 at the bounds; HardSwish: PyTorch's piecewise derivative).

use super::RuleCtx;
use crate::grad::GradError;
use crate::onnx::{attr_float, attr_int, attr_string, attrs, dtype};

type Grads = Result<Vec<Option<String>>, GradError>;

/// `Where(cond, g, 0)`, and with guided backpropagation also `g > 0`.
fn pass_where(c: &mut RuleCtx<'_>, cond: &str, g: &str) -> String {
    if c.guided {
        let zero = c.b.scalar_f32(0.0);
        let pos = c.b.op("Greater", &[g, &zero], vec![]);
        let both = c.b.op("And", &[cond, &pos], vec![]);
        c.b.mask(&both, g)
    } else {
        c.b.mask(cond, g)
    }
}

pub fn relu(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let zero = c.b.scalar_f32(0.0);
    let pos = c.b.op("Greater", &[&x, &zero], vec![]);
    Ok(vec![Some(pass_where(c, &pos, &g))])
}

pub fn leaky_relu(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let alpha = attr_float(c.node, "alpha").unwrap_or(0.01);
    let zero = c.b.scalar_f32(0.0);
    let pos = c.b.op("Greater", &[&x, &zero], vec![]);
    let neg = c.b.mul_scalar(&g, alpha);
    Ok(vec![Some(c.b.op("Where", &[&pos, &g, &neg], vec![]))])
}

/// Clip (ReLU6 and friends): the gradient passes where `min < x < max`. Bounds are inputs
/// from opset 11, attributes before.
pub fn clip(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let (min, max) = if c.b.opset() >= 11 {
        let m = |c: &RuleCtx<'_>, i| c.has_input(i).then(|| c.input(i).to_owned());
        (m(c, 1), m(c, 2))
    } else {
        let min = attr_float(c.node, "min").map(|v| c.b.scalar_f32(v));
        let max = attr_float(c.node, "max").map(|v| c.b.scalar_f32(v));
        (min, max)
    };
    let lo = min.map(|m| c.b.op("Greater", &[&x, &m], vec![]));
    let hi = max.map(|m| c.b.op("Less", &[&x, &m], vec![]));
    let cond = match (lo, hi) {
        (Some(l), Some(h)) => c.b.op("And", &[&l, &h], vec![]),
        (Some(l), None) => l,
        (None, Some(h)) => h,
        (None, None) => return Ok(vec![Some(g), None, None]),
    };
    Ok(vec![Some(pass_where(c, &cond, &g)), None, None])
}

/// dσ = g·y·(1−y).
pub fn sigmoid(c: &mut RuleCtx<'_>) -> Grads {
    let (g, y) = (c.grad(), c.output(0).to_owned());
    let one = c.b.scalar_f32(1.0);
    let om = c.b.sub(&one, &y);
    let yy = c.b.mul(&y, &om);
    Ok(vec![Some(c.b.mul(&g, &yy))])
}

/// `y = max(0, min(1, αx+β))`: α·g where 0 < αx+β < 1.
pub fn hard_sigmoid(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let alpha = attr_float(c.node, "alpha").unwrap_or(0.2);
    let beta = attr_float(c.node, "beta").unwrap_or(0.5);
    let ax = c.b.mul_scalar(&x, alpha);
    let b = c.b.scalar_f32(beta);
    let z = c.b.add(&ax, &b);
    let (zero, one) = (c.b.scalar_f32(0.0), c.b.scalar_f32(1.0));
    let lo = c.b.op("Greater", &[&z, &zero], vec![]);
    let hi = c.b.op("Less", &[&z, &one], vec![]);
    let inside = c.b.op("And", &[&lo, &hi], vec![]);
    let ag = c.b.mul_scalar(&g, alpha);
    Ok(vec![Some(c.b.mask(&inside, &ag))])
}

/// `y = x·hardsigmoid(x)` with α = 1/6, β = 1/2: 0 below −3, `g·(x/3 + 1/2)` up to 3, `g` above.
pub fn hard_swish(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let (m3, p3) = (c.b.scalar_f32(-3.0), c.b.scalar_f32(3.0));
    let below = c.b.op("Less", &[&x, &m3], vec![]);
    let above = c.b.op("Greater", &[&x, &p3], vec![]);
    let third = c.b.mul_scalar(&x, 1.0 / 3.0);
    let half = c.b.scalar_f32(0.5);
    let slope = c.b.add(&third, &half);
    let mid = c.b.mul(&g, &slope);
    let upper = c.b.op("Where", &[&above, &g, &mid], vec![]);
    let zero = c.b.scalar_f32(0.0);
    Ok(vec![Some(c.b.op("Where", &[&below, &zero, &upper], vec![]))])
}

/// d tanh = g·(1 − y²).
pub fn tanh(c: &mut RuleCtx<'_>) -> Grads {
    let (g, y) = (c.grad(), c.output(0).to_owned());
    let yy = c.b.mul(&y, &y);
    let one = c.b.scalar_f32(1.0);
    let d = c.b.sub(&one, &yy);
    Ok(vec![Some(c.b.mul(&g, &d))])
}

/// d erf = g·2/√π·exp(−x²).
pub fn erf(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let xx = c.b.mul(&x, &x);
    let nxx = c.b.neg(&xx);
    let e = c.b.op("Exp", &[&nxx], vec![]);
    let s = c.b.mul_scalar(&e, std::f32::consts::FRAC_2_SQRT_PI);
    Ok(vec![Some(c.b.mul(&g, &s))])
}

pub fn exp(c: &mut RuleCtx<'_>) -> Grads {
    let (g, y) = (c.grad(), c.output(0).to_owned());
    Ok(vec![Some(c.b.mul(&g, &y))])
}

pub fn log(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    Ok(vec![Some(c.b.div(&g, &x))])
}

/// d√x = g / (2y).
pub fn sqrt(c: &mut RuleCtx<'_>) -> Grads {
    let (g, y) = (c.grad(), c.output(0).to_owned());
    let two_y = c.b.mul_scalar(&y, 2.0);
    Ok(vec![Some(c.b.div(&g, &two_y))])
}

/// `Y = X^P`: dX = g·P·X^(P−1); dP = g·Y·ln X.
pub fn pow(c: &mut RuleCtx<'_>) -> Grads {
    let g = c.grad();
    let (x, p, y) = (c.input(0).to_owned(), c.input(1).to_owned(), c.output(0).to_owned());
    let mut out = vec![None, None];
    if c.needs(0) {
        let one = c.b.scalar_f32(1.0);
        let pf = c.b.op("Cast", &[&p], vec![attrs::int("to", i64::from(dtype::FLOAT))]);
        let pm1 = c.b.sub(&pf, &one);
        let xp = c.b.op("Pow", &[&x, &pm1], vec![]);
        let d = c.b.mul(&pf, &xp);
        let gd = c.b.mul(&g, &d);
        out[0] = Some(c.unbroadcast(&gd, &y, &x)?);
    }
    if c.needs(1) {
        let lx = c.b.op("Log", &[&x], vec![]);
        let gy = c.b.mul(&g, &y);
        let d = c.b.mul(&gy, &lx);
        out[1] = Some(c.unbroadcast(&d, &y, &p)?);
    }
    Ok(out)
}

/// Axes Softmax normalises over: `[axis]` from opset 13; before, every axis from `axis` on
/// (the input was coerced to 2-D there, default axis 1).
fn softmax_axes(c: &RuleCtx<'_>) -> Result<Vec<i64>, GradError> {
    let rank = c.rank(c.output(0))?;
    if c.b.opset() >= 13 {
        Ok(vec![c.axis(attr_int(c.node, "axis").unwrap_or(-1), rank)? as i64])
    } else {
        let a = c.axis(attr_int(c.node, "axis").unwrap_or(1), rank)?;
        Ok((a as i64..rank as i64).collect())
    }
}

/// dx = y ⊙ (g − Σ g⊙y).
pub fn softmax(c: &mut RuleCtx<'_>) -> Grads {
    let (g, y) = (c.grad(), c.output(0).to_owned());
    let axes = softmax_axes(c)?;
    let gy = c.b.mul(&g, &y);
    let s = c.b.reduce_sum(&gy, &axes, true);
    let d = c.b.sub(&g, &s);
    Ok(vec![Some(c.b.mul(&y, &d))])
}

/// dx = g − exp(y) ⊙ Σ g.
pub fn log_softmax(c: &mut RuleCtx<'_>) -> Grads {
    let (g, y) = (c.grad(), c.output(0).to_owned());
    let axes = softmax_axes(c)?;
    let s = c.b.reduce_sum(&g, &axes, true);
    let p = c.b.op("Exp", &[&y], vec![]);
    let ps = c.b.mul(&p, &s);
    Ok(vec![Some(c.b.sub(&g, &ps))])
}

/// Gelu (opset 20). Exact (`approximate="none"`): y = x·Φ(x), dy = Φ(x) + x·φ(x).
/// Tanh form: y = ½x(1 + tanh u), u = √(2/π)(x + 0.044715x³),
/// dy = ½(1 + t) + ½x(1 − t²)·√(2/π)(1 + 3·0.044715x²). Emitted with Erf/Tanh/Exp so the
/// backward graph needs no opset-20 op itself.
pub fn gelu(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let approx = attr_string(c.node, "approximate").unwrap_or_else(|| "none".into());
    let half = c.b.scalar_f32(0.5);
    let one = c.b.scalar_f32(1.0);
    let d = match approx.as_str() {
        "none" => {
            let xs = c.b.mul_scalar(&x, std::f32::consts::FRAC_1_SQRT_2);
            let e = c.b.op("Erf", &[&xs], vec![]);
            let e1 = c.b.add(&e, &one);
            let cdf = c.b.mul(&e1, &half);
            let xx = c.b.mul(&x, &x);
            let nxx = c.b.mul_scalar(&xx, -0.5);
            let ex = c.b.op("Exp", &[&nxx], vec![]);
            let pdf = c.b.mul_scalar(&ex, 1.0 / (2.0 * std::f32::consts::PI).sqrt());
            let xpdf = c.b.mul(&x, &pdf);
            c.b.add(&cdf, &xpdf)
        }
        "tanh" => {
            const K: f32 = 0.044_715;
            let s = (2.0 / std::f32::consts::PI).sqrt();
            let xx = c.b.mul(&x, &x);
            let kxx = c.b.mul_scalar(&xx, K);
            let inner = c.b.add(&kxx, &one); // 1 + k x²
            let xi = c.b.mul(&x, &inner); // x + k x³
            let u = c.b.mul_scalar(&xi, s);
            let t = c.b.op("Tanh", &[&u], vec![]);
            let t1 = c.b.add(&t, &one);
            let left = c.b.mul(&t1, &half);
            let tt = c.b.mul(&t, &t);
            let sech2 = c.b.sub(&one, &tt);
            let k3 = c.b.mul_scalar(&xx, 3.0 * K);
            let du = c.b.add(&k3, &one);
            let du = c.b.mul_scalar(&du, 0.5 * s);
            let xs = c.b.mul(&x, &sech2);
            let right = c.b.mul(&xs, &du);
            c.b.add(&left, &right)
        }
        other => return Err(c.unsupported(&format!("Gelu approximate={other}"))),
    };
    Ok(vec![Some(c.b.mul(&g, &d))])
}

/// d|x| = g·sign(x): 0 at 0, PyTorch's choice.
pub fn abs(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let s = c.b.op("Sign", &[&x], vec![]);
    Ok(vec![Some(c.b.mul(&g, &s))])
}

/// d(1/x) = −g·y².
pub fn reciprocal(c: &mut RuleCtx<'_>) -> Grads {
    let (g, y) = (c.grad(), c.output(0).to_owned());
    let yy = c.b.mul(&y, &y);
    let gy = c.b.mul(&g, &yy);
    Ok(vec![Some(c.b.neg(&gy))])
}

/// d softplus = g·σ(x).
pub fn softplus(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let s = c.b.op("Sigmoid", &[&x], vec![]);
    Ok(vec![Some(c.b.mul(&g, &s))])
}

/// Elu: g above 0; below, dy/dx = α·eˣ = y + α (reuses the forward output).
pub fn elu(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x, y) = (c.grad(), c.input(0).to_owned(), c.output(0).to_owned());
    let alpha = attr_float(c.node, "alpha").unwrap_or(1.0);
    let zero = c.b.scalar_f32(0.0);
    let pos = c.b.op("Greater", &[&x, &zero], vec![]);
    let a = c.b.scalar_f32(alpha);
    let ya = c.b.add(&y, &a);
    let neg = c.b.mul(&g, &ya);
    Ok(vec![Some(c.b.op("Where", &[&pos, &g, &neg], vec![]))])
}

/// Mish y = x·tanh(softplus x): dy = t + x·σ(x)·(1 − t²) with t = tanh(softplus x)
/// (softplus' = σ).
pub fn mish(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let sp = c.b.op("Softplus", &[&x], vec![]);
    let t = c.b.op("Tanh", &[&sp], vec![]);
    let tt = c.b.mul(&t, &t);
    let one = c.b.scalar_f32(1.0);
    let sech2 = c.b.sub(&one, &tt);
    let s = c.b.op("Sigmoid", &[&x], vec![]);
    let xs = c.b.mul(&x, &s);
    let r = c.b.mul(&xs, &sech2);
    let d = c.b.add(&t, &r);
    Ok(vec![Some(c.b.mul(&g, &d))])
}

pub fn sin(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let d = c.b.op("Cos", &[&x], vec![]);
    Ok(vec![Some(c.b.mul(&g, &d))])
}

pub fn cos(c: &mut RuleCtx<'_>) -> Grads {
    let (g, x) = (c.grad(), c.input(0).to_owned());
    let s = c.b.op("Sin", &[&x], vec![]);
    let gs = c.b.mul(&g, &s);
    Ok(vec![Some(c.b.neg(&gs))])
}
