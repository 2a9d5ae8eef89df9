//! Building small ONNX models inside tests, and checking gradient graphs against central
//! finite differences through real ONNX Runtime.
#![allow(dead_code)]

use std::path::Path;

use camscope::engine::{Device, EngineError, SessionOptions, explainer::Explainer, probe_shapes};
use camscope::grad::{Analysis, MapLayout, ScoreKind};
use camscope::onnx::proto::OperatorSetIdProto;
use camscope::onnx::{AttributeProto, GraphProto, ModelProto, NodeProto, TensorProto, dtype, tensors, value_info};
use ndarray::{Array2, ArrayD, IxDyn};

/// A model under construction.
pub struct Tiny {
    opset: i64,
    graph: GraphProto,
}

impl Tiny {
    pub fn new(opset: i64) -> Self {
        Self { opset, graph: GraphProto { name: Some("tiny".into()), ..Default::default() } }
    }

    /// A float input; negative dims are symbolic (`N`).
    pub fn input(mut self, name: &str, dims: &[i64]) -> Self {
        let names: Vec<Option<&str>> = dims.iter().map(|&d| (d < 0).then_some("N")).collect();
        self.graph.input.push(value_info(name, dtype::FLOAT, dims, &names));
        self
    }

    pub fn output(mut self, name: &str, dims: &[i64]) -> Self {
        let names: Vec<Option<&str>> = dims.iter().map(|&d| (d < 0).then_some("N")).collect();
        self.graph.output.push(value_info(name, dtype::FLOAT, dims, &names));
        self
    }

    pub fn init(mut self, name: &str, dims: &[i64], data: &[f32]) -> Self {
        self.graph.initializer.push(tensors::f32(name, dims, data));
        self
    }

    pub fn init_i64(mut self, name: &str, dims: &[i64], data: &[i64]) -> Self {
        self.graph.initializer.push(tensors::i64(name, dims, data));
        self
    }

    pub fn node(mut self, op: &str, inputs: &[&str], outputs: &[&str], attrs: Vec<AttributeProto>) -> Self {
        let n = self.graph.node.len();
        self.graph.node.push(NodeProto {
            name: Some(format!("{op}_{n}")),
            op_type: Some(op.into()),
            input: inputs.iter().map(|s| s.to_string()).collect(),
            output: outputs.iter().map(|s| s.to_string()).collect(),
            attribute: attrs,
            ..Default::default()
        });
        self
    }

    pub fn build(self) -> ModelProto {
        ModelProto {
            ir_version: Some(if self.opset >= 21 { 10 } else { 8 }),
            opset_import: vec![OperatorSetIdProto { domain: Some(String::new()), version: Some(self.opset) }],
            producer_name: Some("camscope tests".into()),
            graph: Some(self.graph),
            ..Default::default()
        }
    }
}

/// Deterministic values in [-1, 1] kept at least `gap` away from 0 (no ReLU kinks).
pub fn values(n: usize, seed: u64, gap: f32) -> Vec<f32> {
    let mut s = seed.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
    (0..n)
        .map(|_| {
            s = s.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            let u = ((s >> 33) as f32) / ((1u64 << 31) as f32); // [0, 1)
            let v = u * 2.0 - 1.0;
            if v.abs() < gap { v.signum() * gap + v } else { v }
        })
        .collect()
}

/// Distinct values spread over [-1, 1] (spacing 2/n) in a seeded order: no two within a
/// finite-difference step of each other, so max-type ops never switch their argmax.
pub fn distinct(dims: &[usize], seed: u64) -> ArrayD<f32> {
    let n: usize = dims.iter().product();
    let mut keys: Vec<(f32, usize)> = values(n, seed, 0.0).into_iter().zip(0..n).collect();
    keys.sort_by(|a, b| a.0.total_cmp(&b.0));
    let mut v = vec![0f32; n];
    for (rank, (_, i)) in keys.into_iter().enumerate() {
        v[i] = -1.0 + 2.0 * (rank as f32 + 0.5) / n as f32;
    }
    ArrayD::from_shape_vec(IxDyn(dims), v).unwrap()
}

pub fn array(dims: &[usize], seed: u64, gap: f32) -> ArrayD<f32> {
    ArrayD::from_shape_vec(IxDyn(dims), values(dims.iter().product(), seed, gap)).unwrap()
}

pub fn cpu() -> SessionOptions {
    SessionOptions { device: Device::Cpu, threads: Some(1), ..SessionOptions::default() }
}

/// Analyse a model with shapes probed at batch 1 and 2 (input dims given at batch 1).
pub fn analyse(model: ModelProto, input: &str, output: &str, dims1: &[usize]) -> Result<Analysis, EngineError> {
    let mut a = Analysis::new(model, input, output, MapLayout::Nchw)
        .map_err(|source| EngineError::Grad { path: "tiny.onnx".into(), source })?;
    let dims = |n: usize| {
        let mut d = dims1.to_vec();
        d[0] = n;
        d
    };
    probe_shapes(&mut a, input, &dims, Path::new("tiny.onnx"), false, None, None)?;
    Ok(a)
}

/// Result of a finite-difference check.
#[derive(Debug)]
pub struct Check {
    pub max_abs_err: f32,
    pub max_grad: f32,
    pub checked: usize,
    /// Rounding noise of a float32 central difference: `ulp(|f|) / 2h` with `f = seed·score`.
    pub noise: f32,
}

impl Check {
    pub fn relative(&self) -> f32 {
        self.max_abs_err / self.max_grad.max(1e-12)
    }

    /// Within `rel` of the largest gradient, once float32 rounding of `f` is allowed for.
    pub fn agrees(&self, rel: f32) -> bool {
        self.max_grad > 1e-7 && self.max_abs_err <= rel * self.max_grad + self.noise
    }
}

/// Compare the head graph's gradient w.r.t. `target` with central finite differences of
/// `seed · score` at `x`, element by element (all elements up to `max_elems`, then a spread
/// sample). Step `h` in float32.
pub fn fd_check(
    analysis: &Analysis,
    target: &str,
    kind: ScoreKind,
    x: &ArrayD<f32>,
    seed_values: Option<Vec<f32>>,
    h: f32,
    max_elems: usize,
) -> Check {
    let cand = analysis
        .candidates()
        .into_iter()
        .chain(std::iter::once(analysis.input_target()))
        .find(|c| c.tensor == target)
        .unwrap_or_else(|| camscope::grad::Candidate { tensor: target.into(), ..analysis.input_target() });
    let mut ex = Explainer::new(analysis, Path::new("tiny.onnx"), &cand, kind, false, &cpu()).expect("explainer");
    let body = ex.body(x.view()).expect("body");
    let classes = ex.plan.classes;
    let seed = Array2::from_shape_vec(
        (x.shape()[0], classes),
        seed_values.unwrap_or_else(|| values(x.shape()[0] * classes, 99, 0.1)),
    )
    .unwrap();
    let side: Vec<_> = body.side.iter().map(|s| s.view()).collect();
    let head = ex.head(body.activation.view(), &side, seed.view()).expect("head");
    let f = |ex: &mut Explainer, a: &ArrayD<f32>| -> f64 {
        let out = ex.head(a.view(), &side, seed.view()).expect("head");
        out.scores.iter().zip(seed.iter()).map(|(s, w)| f64::from(*s) * f64::from(*w)).sum()
    };
    let a0 = body.activation.clone();
    let n = a0.len();
    let idx: Vec<usize> =
        if n <= max_elems { (0..n).collect() } else { (0..max_elems).map(|i| i * n / max_elems).collect() };
    let grad: Vec<f32> = head.gradient.iter().copied().collect();
    let max_grad = super::max_abs(&format!("gradient w.r.t. {target}"), &grad);
    let mut max_abs_err = 0f32;
    let mut max_f = 0f64;
    for &i in &idx {
        let mut plus = a0.clone();
        plus.as_slice_mut().unwrap()[i] += h;
        let mut minus = a0.clone();
        minus.as_slice_mut().unwrap()[i] -= h;
        let (fp, fm) = (f(&mut ex, &plus), f(&mut ex, &minus));
        max_f = max_f.max(fp.abs()).max(fm.abs());
        let fd = ((fp - fm) / (2.0 * f64::from(h))) as f32;
        assert!(fd.is_finite(), "element {i} of {target}: the finite difference is {fd} (scores {fp}, {fm})");
        if std::env::var_os("FD_DEBUG").is_some() && (fd - grad[i]).abs() > 1e-4 {
            eprintln!("element {i}: value {} fd {fd} graph {}", a0.as_slice().unwrap()[i], grad[i]);
        }
        max_abs_err = max_abs_err.max((fd - grad[i]).abs());
    }
    let noise = (max_f as f32 * f32::EPSILON) / (2.0 * h) * 2.0;
    Check { max_abs_err, max_grad, checked: idx.len(), noise }
}

pub fn tensor_f32(t: &TensorProto) -> Vec<f32> {
    tensors::read_f32(t).unwrap()
}
