//! Shape facts: the element type and dimensions of each tensor, with the batch axis kept
//! symbolic.
//!
//! Static shapes come from the model's declarations; where exporters leave them out (torch
//! leaves "same" padding as small Shape/Slice/Pad subgraphs, so nothing downstream has a
//! static shape) they are measured by running the forward graph in ONNX Runtime with the
//! intermediates exposed, twice, at batch 1 and batch 2: the axes that change are the batch
//! axes. The engine does the runs; this module describes and merges them.

use std::collections::HashMap;

use super::{ModelProto, ValueInfoProto, dtype, value_info_dims};

/// One dimension.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Dim {
    Fixed(i64),
    /// Follows the batch size.
    Batch,
    /// Symbolic and not measured.
    Unknown,
}

impl Dim {
    pub fn fixed(self) -> Option<i64> {
        match self {
            Dim::Fixed(v) => Some(v),
            _ => None,
        }
    }
}

impl std::fmt::Display for Dim {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Dim::Fixed(v) => write!(f, "{v}"),
            Dim::Batch => f.write_str("N"),
            Dim::Unknown => f.write_str("?"),
        }
    }
}

/// What is known of one tensor.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TensorFact {
    pub elem_type: i32,
    pub dims: Vec<Dim>,
}

impl TensorFact {
    pub fn is_float(&self) -> bool {
        self.elem_type == dtype::FLOAT
    }

    pub fn rank(&self) -> usize {
        self.dims.len()
    }

    /// Dims with `Batch`/`Unknown` as -1.
    pub fn dims_i64(&self) -> Vec<i64> {
        self.dims.iter().map(|d| d.fixed().unwrap_or(-1)).collect()
    }

    /// Fixed dims only; `None` if any is not fixed.
    pub fn fixed_dims(&self) -> Option<Vec<i64>> {
        self.dims.iter().map(|d| d.fixed()).collect()
    }

    /// Whether every non-batch dim is known.
    pub fn is_complete(&self) -> bool {
        self.dims.iter().all(|d| *d != Dim::Unknown)
    }
}

/// Facts for many tensors.
#[derive(Debug, Clone, Default)]
pub struct ShapeFacts {
    facts: HashMap<String, TensorFact>,
}

impl ShapeFacts {
    /// Facts the model declares: inputs (symbolic first axis = batch), outputs,
    /// `value_info`, initializers and `Constant` nodes.
    pub fn from_model(model: &ModelProto) -> Self {
        let mut facts = HashMap::new();
        let Some(g) = model.graph.as_ref() else { return Self { facts } };
        let declared = |v: &ValueInfoProto| -> Option<(String, TensorFact)> {
            let (elem_type, dims) = value_info_dims(v)?;
            let dims = dims?
                .into_iter()
                .enumerate()
                .map(|(i, d)| match d {
                    d if d >= 0 => Dim::Fixed(d),
                    _ if i == 0 => Dim::Batch,
                    _ => Dim::Unknown,
                })
                .collect();
            Some((v.name.clone()?, TensorFact { elem_type, dims }))
        };
        for v in g.input.iter().chain(&g.output).chain(&g.value_info) {
            if let Some((n, f)) = declared(v) {
                facts.insert(n, f);
            }
        }
        for t in &g.initializer {
            if let Some(n) = &t.name {
                facts.insert(
                    n.clone(),
                    TensorFact {
                        elem_type: t.data_type.unwrap_or(0),
                        dims: t.dims.iter().map(|&d| Dim::Fixed(d)).collect(),
                    },
                );
            }
        }
        for n in &g.node {
            if n.op_type.as_deref() == Some("Constant") && !n.output.is_empty() {
                if let Some(t) = n.attribute.iter().find_map(|a| a.t.as_ref()) {
                    facts.insert(
                        n.output[0].clone(),
                        TensorFact {
                            elem_type: t.data_type.unwrap_or(0),
                            dims: t.dims.iter().map(|&d| Dim::Fixed(d)).collect(),
                        },
                    );
                }
            }
        }
        Self { facts }
    }

    /// Merge measured shapes: `at1`/`at2` are (element type, dims) at batch 1 and 2.
    /// Measurements override declarations (they are what actually runs).
    pub fn add_measured(&mut self, at1: &HashMap<String, (i32, Vec<i64>)>, at2: &HashMap<String, (i32, Vec<i64>)>) {
        for (name, (ty, d1)) in at1 {
            let Some((_, d2)) = at2.get(name) else { continue };
            if d1.len() != d2.len() {
                continue;
            }
            let dims = d1.iter().zip(d2).map(|(&a, &b)| if a == b { Dim::Fixed(a) } else { Dim::Batch }).collect();
            self.facts.insert(name.clone(), TensorFact { elem_type: *ty, dims });
        }
    }

    pub fn get(&self, name: &str) -> Option<&TensorFact> {
        self.facts.get(name)
    }

    pub fn insert(&mut self, name: &str, fact: TensorFact) {
        self.facts.insert(name.to_owned(), fact);
    }

    pub fn len(&self) -> usize {
        self.facts.len()
    }

    pub fn is_empty(&self) -> bool {
        self.facts.is_empty()
    }
}

/// Render dims like `[N, 1280, 7, 7]`.
pub fn fmt_dims(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims.iter().map(ToString::to_string).collect();
    format!("[{}]", parts.join(", "))
}

/// What the probe graph outputs for one tensor.
#[derive(Debug, Clone)]
pub struct ProbeOutputs {
    pub tensor: String,
    /// `Shape(tensor)`: its dims.
    pub shape: String,
    /// Its first element (`Slice(Reshape(tensor, [-1]), 0, 1)`): its element type, cheaply.
    pub sample: String,
    /// The tensor itself, for `constants` (values of graph-computed constants).
    pub value: Option<String>,
}

/// A copy of `model` that also outputs, for each of `tensors`, its shape and one element
/// (and the whole value for those in `constants`). Exposing only these keeps the probe's
/// memory at that of a plain inference: every intermediate tensor as an output would hold
/// them all at once (143 MB for EfficientNet-Lite0 at batch 2).
pub fn probe_model(model: &ModelProto, tensors: &[String], constants: &[String]) -> (ModelProto, Vec<ProbeOutputs>) {
    let mut m = model.clone();
    let mut outs = Vec::new();
    let Some(g) = m.graph.as_mut() else { return (m, outs) };
    let mut b = super::builder::Builder::new(g, super::default_opset(model).unwrap_or(13), "camscope_probe");
    let flat = b.const_i64("flat", &[1], &[-1]);
    let (zero, one) = (b.const_i64("zero", &[1], &[0]), b.const_i64("one", &[1], &[1]));
    let constants: std::collections::HashSet<&String> = constants.iter().collect();
    let existing: std::collections::HashSet<String> = g.output.iter().filter_map(|o| o.name.clone()).collect();
    for name in tensors {
        let shape = b.shape_of(name);
        let reshaped = b.op("Reshape", &[name, &flat], vec![]);
        let sample = b.op("Slice", &[&reshaped, &zero, &one], vec![]);
        let value = (constants.contains(name) && !existing.contains(name)).then(|| name.clone());
        outs.push(ProbeOutputs { tensor: name.clone(), shape, sample, value });
    }
    g.node.append(&mut b.nodes);
    g.initializer.append(&mut b.initializers);
    for o in &outs {
        for n in [Some(&o.shape), Some(&o.sample), o.value.as_ref()].into_iter().flatten() {
            g.output.push(ValueInfoProto { name: Some(n.clone()), ..Default::default() });
        }
    }
    (m, outs)
}
