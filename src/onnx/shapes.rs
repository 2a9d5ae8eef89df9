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
    /// Tensors whose batch axis holds a multiple of the batch (attention heads or windows
    /// folded into it: 12 at batch 1, 24 at batch 2), which are not per-image maps.
    folded: std::collections::HashSet<String>,
    /// The size at batch 1 of each folded tensor's axes (12 for `N·12`), where every axis
    /// that follows the batch grows in proportion to it: what a reshape that splits or
    /// merges folded axes needs to know which entries of one axis land where.
    at_one: HashMap<String, Vec<i64>>,
}

impl ShapeFacts {
    /// Facts the model declares: inputs (symbolic first axis = batch), outputs,
    /// `value_info`, initializers and `Constant` nodes.
    pub fn from_model(model: &ModelProto) -> Self {
        let mut facts = HashMap::new();
        let Some(g) = model.graph.as_ref() else { return Self { facts, ..Default::default() } };
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
        Self { facts, ..Default::default() }
    }

    /// Merge measured dims at batch 1 and 2 with element types (`types`). Measurements
    /// override declarations (they are what actually runs); the axes that differ between
    /// the two runs follow the batch.
    pub fn add_measured(
        &mut self,
        at1: &[(String, Vec<i64>)],
        at2: &[(String, Vec<i64>)],
        types: &HashMap<String, i32>,
    ) {
        let second: HashMap<&str, &Vec<i64>> = at2.iter().map(|(n, d)| (n.as_str(), d)).collect();
        for (name, d1) in at1 {
            let Some(d2) = second.get(name.as_str()) else { continue };
            if d1.len() != d2.len() {
                continue;
            }
            let elem_type = types.get(name).copied().or_else(|| self.facts.get(name).map(|f| f.elem_type)).unwrap_or(0);
            let dims =
                d1.iter().zip(d2.iter()).map(|(&a, &b)| if a == b { Dim::Fixed(a) } else { Dim::Batch }).collect();
            if d1.iter().zip(d2.iter()).any(|(&a, &b)| a != b && a != 1) {
                self.folded.insert(name.clone());
                if d1.iter().zip(d2.iter()).all(|(&a, &b)| a == b || b == 2 * a) {
                    self.at_one.insert(name.clone(), d1.clone());
                } else {
                    self.at_one.remove(name);
                }
            } else {
                self.folded.remove(name);
                self.at_one.remove(name);
            }
            self.facts.insert(name.clone(), TensorFact { elem_type, dims });
        }
    }

    /// Whether the tensor's batch axis holds exactly one entry per image (see `folded`).
    pub fn per_image(&self, name: &str) -> bool {
        !self.folded.contains(name)
    }

    /// Each axis's size as `k·N^p` (`(k, p)`: `(12, 1)` for heads folded into the batch,
    /// `(197, 0)` for a fixed axis); `None` where an axis is unknown or does not grow in
    /// proportion to the batch.
    pub fn monomials(&self, name: &str) -> Option<Vec<(i64, u32)>> {
        let f = self.facts.get(name)?;
        let one = self.at_one.get(name).filter(|d| d.len() == f.rank());
        if one.is_none() && self.folded.contains(name) {
            return None;
        }
        f.dims
            .iter()
            .enumerate()
            .map(|(i, d)| match d {
                Dim::Fixed(v) => Some((*v, 0)),
                Dim::Batch => Some((one.map_or(1, |o| o[i]), 1)),
                Dim::Unknown => None,
            })
            .collect()
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

/// Where the probe graph puts its measurements.
#[derive(Debug, Clone)]
pub struct ProbeLayout {
    /// Probed tensors, in the order their `[rank, dims...]` records appear in `shapes`.
    pub tensors: Vec<String>,
    /// One int64 output: every probed tensor's rank followed by its dims, concatenated.
    pub shapes: String,
    /// Integer constants the graph computes, output as they are (their values are needed).
    pub constants: Vec<String>,
}

/// A copy of `model` that also outputs the shape of each of `tensors`, as one chain of
/// `Concat(previous, Shape(Shape(t)), Shape(t))` placed right after each tensor's producer,
/// and the values of `constants`.
///
/// Why a chain: ONNX Runtime orders execution by a depth-first walk from the graph's leaves;
/// with one leaf per probed tensor it would compute everything first and read the shapes at
/// the end, holding every intermediate tensor at once (143 MB for EfficientNet-Lite0 at
/// batch 2). Chained, each tensor can be freed as soon as its shape is read, so the probe
/// costs what a plain inference costs.
pub fn probe_model(model: &ModelProto, tensors: &[String], constants: &[String]) -> (ModelProto, ProbeLayout) {
    let mut m = model.clone();
    let mut layout = ProbeLayout { tensors: Vec::new(), shapes: String::new(), constants: Vec::new() };
    let Some(g) = m.graph.as_mut() else { return (m, layout) };
    let mut b = super::builder::Builder::new(g, super::default_opset(model).unwrap_or(13), "camscope_probe");
    let existing: std::collections::HashSet<String> = g.output.iter().filter_map(|o| o.name.clone()).collect();
    let wanted: std::collections::HashSet<&String> = tensors.iter().collect();
    let mut chain: Option<String> = None;
    let original = std::mem::take(&mut g.node);
    for node in original {
        let produced: Vec<String> = node.output.iter().filter(|o| wanted.contains(o)).cloned().collect();
        g.node.push(node);
        for name in produced {
            let shape = b.shape_of(&name);
            let rank = b.shape_of(&shape);
            let mut parts: Vec<&str> = chain.iter().map(String::as_str).collect();
            parts.extend([rank.as_str(), shape.as_str()]);
            chain = Some(b.op("Concat", &parts, vec![super::attrs::int("axis", 0)]));
            layout.tensors.push(name);
            g.node.append(&mut b.nodes);
        }
    }
    g.initializer.append(&mut b.initializers);
    if let Some(c) = chain {
        g.output.push(ValueInfoProto { name: Some(c.clone()), ..Default::default() });
        layout.shapes = c;
    }
    for c in constants {
        if !existing.contains(c) {
            g.output.push(ValueInfoProto { name: Some(c.clone()), ..Default::default() });
            layout.constants.push(c.clone());
        }
    }
    (m, layout)
}

/// Split the probe's shape record back into `(tensor, dims)` pairs.
pub fn decode_probe(layout: &ProbeLayout, record: &[i64]) -> Vec<(String, Vec<i64>)> {
    let mut out = Vec::with_capacity(layout.tensors.len());
    let mut at = 0;
    for t in &layout.tensors {
        let Some(&rank) = record.get(at) else { break };
        let end = at + 1 + rank.max(0) as usize;
        let Some(dims) = record.get(at + 1..end) else { break };
        out.push((t.clone(), dims.to_vec()));
        at = end;
    }
    out
}
