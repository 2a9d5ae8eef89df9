//! Target layers: which tensors can be explained (4-D spatial feature maps), which one is
//! the default (the last map before global pooling: the tutorial's `conv_7b`), and how a
//! user names one (tensor name, node name, a Keras layer name inside a tf2onnx node path, or
//! a unique substring).

use std::collections::HashMap;

use serde::Serialize;

use super::GradError;
use crate::onnx::graph::{Constants, GraphIndex};
use crate::onnx::shapes::{Dim, ShapeFacts, fmt_dims};
use crate::onnx::{GraphProto, NodeProto, attr_int, attr_ints, op};

/// Axis order of a 4-D feature map.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub enum MapLayout {
    #[serde(rename = "NCHW")]
    Nchw,
    #[serde(rename = "NHWC")]
    Nhwc,
}

impl MapLayout {
    /// (channels, height, width) axes.
    pub fn axes(self) -> (usize, usize, usize) {
        match self {
            MapLayout::Nchw => (1, 2, 3),
            MapLayout::Nhwc => (3, 1, 2),
        }
    }
}

impl std::fmt::Display for MapLayout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            MapLayout::Nchw => "NCHW",
            MapLayout::Nhwc => "NHWC",
        })
    }
}

/// A tensor Grad-CAM can target.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Candidate {
    pub tensor: String,
    /// Name of the producing node (empty for a graph input).
    pub node: String,
    /// Operator of the producing node (`Input` for a graph input).
    pub op: String,
    #[serde(serialize_with = "ser_dims")]
    pub dims: Vec<Dim>,
    pub layout: MapLayout,
    /// Whether this is the automatic choice.
    pub is_default: bool,
}

fn ser_dims<S: serde::Serializer>(dims: &[Dim], s: S) -> Result<S::Ok, S::Error> {
    s.collect_seq(dims.iter().map(|d| d.fixed().unwrap_or(-1)))
}

impl Candidate {
    /// (channels, height, width).
    pub fn chw(&self) -> (i64, i64, i64) {
        let (c, h, w) = self.layout.axes();
        let d = |i: usize| self.dims[i].fixed().unwrap_or(-1);
        (d(c), d(h), d(w))
    }

    pub fn shape_string(&self) -> String {
        fmt_dims(&self.dims)
    }
}

/// Layouts of 4-D tensors, propagated from the image input through the graph.
fn layouts(
    graph: &GraphProto,
    index: &GraphIndex,
    facts: &ShapeFacts,
    input: &str,
    input_layout: MapLayout,
) -> HashMap<String, MapLayout> {
    let mut out = HashMap::new();
    out.insert(input.to_owned(), input_layout);
    let rank4 = |t: &str| facts.get(t).is_some_and(|f| f.rank() == 4 && f.is_float());
    for &i in &index.order {
        let n = &graph.node[i];
        let Some(y) = n.output.first() else { continue };
        if !rank4(y) {
            continue;
        }
        let first_in = n.input.iter().find(|t| out.contains_key(*t)).and_then(|t| out.get(t)).copied();
        let layout = match op(n) {
            "Conv"
            | "ConvTranspose"
            | "MaxPool"
            | "AveragePool"
            | "LpPool"
            | "BatchNormalization"
            | "InstanceNormalization"
            | "LRN"
            | "GlobalAveragePool"
            | "GlobalMaxPool"
            | "Resize"
            | "Upsample"
            | "DepthToSpace"
            | "SpaceToDepth"
            | "QLinearConv" => Some(MapLayout::Nchw),
            "Transpose" => match (attr_ints(n, "perm").as_deref(), first_in) {
                (Some([0, 2, 3, 1]), Some(MapLayout::Nchw)) => Some(MapLayout::Nhwc),
                (Some([0, 3, 1, 2]), Some(MapLayout::Nhwc)) => Some(MapLayout::Nchw),
                (Some([0, 1, 2, 3]), l) => l,
                _ => None,
            },
            "Concat" => match (first_in, attr_int(n, "axis")) {
                (Some(MapLayout::Nchw), Some(1 | -3)) | (Some(MapLayout::Nhwc), Some(3 | -1)) => first_in,
                _ => None,
            },
            "Relu" | "LeakyRelu" | "PRelu" | "Clip" | "Sigmoid" | "HardSigmoid" | "HardSwish" | "Tanh" | "Elu"
            | "Selu" | "Celu" | "Gelu" | "Mish" | "Softplus" | "Identity" | "Dropout" | "Add" | "Sub" | "Mul"
            | "Div" | "Sum" | "Max" | "Min" | "Neg" | "Abs" | "Pad" | "Erf" | "Exp" | "Sqrt" | "Pow" | "Cast"
            | "Where" => first_in,
            _ => None,
        };
        if let Some(l) = layout {
            out.insert(y.clone(), l);
        }
    }
    out
}

/// All candidate target layers in topological order (the input itself first).
pub fn candidates(
    graph: &GraphProto,
    index: &GraphIndex,
    consts: &Constants,
    facts: &ShapeFacts,
    input: &str,
    input_layout: MapLayout,
    output: &str,
) -> Vec<Candidate> {
    let layout = layouts(graph, index, facts, input, input_layout);
    let feeds_output = index.ancestors(&[output]);
    let spatial = |t: &str, l: MapLayout| {
        let Some(f) = facts.get(t) else { return false };
        let (_, h, w) = l.axes();
        f.rank() == 4 && matches!((f.dims[h], f.dims[w]), (Dim::Fixed(a), Dim::Fixed(b)) if a * b > 1)
    };
    let mut out = Vec::new();
    if spatial(input, input_layout) {
        out.push(Candidate {
            tensor: input.to_owned(),
            node: String::new(),
            op: "Input".into(),
            dims: facts.get(input).map(|f| f.dims.clone()).unwrap_or_default(),
            layout: input_layout,
            is_default: false,
        });
    }
    for &i in &index.order {
        let n = &graph.node[i];
        let Some(y) = n.output.first() else { continue };
        let Some(&l) = layout.get(y) else { continue };
        // Padding, identities and casts are not layers anyone means to explain.
        if !spatial(y, l) || !feeds_output.contains(y) || matches!(op(n), "Identity" | "Pad" | "Cast") {
            continue;
        }
        out.push(Candidate {
            tensor: y.clone(),
            node: n.name.clone().unwrap_or_default(),
            op: op(n).to_owned(),
            dims: facts.get(y).map(|f| f.dims.clone()).unwrap_or_default(),
            layout: l,
            is_default: false,
        });
    }
    if let Some(d) = default_index(graph, index, consts, facts, &out, output) {
        out[d].is_default = true;
    }
    out
}

/// Whether `n` pools a spatial map down to one value per channel (global pooling, a
/// spatial mean/max, a pool whose window covers the map, or flattening into a dense layer).
fn is_global_pool(n: &NodeProto, consts: &Constants, facts: &ShapeFacts, layout: Option<MapLayout>) -> bool {
    let x = n.input.first().map(String::as_str).unwrap_or("");
    let spatial_axes = |axes: &[i64]| {
        let mut a: Vec<i64> = axes.iter().map(|&v| if v < 0 { v + 4 } else { v }).collect();
        a.sort_unstable();
        match layout {
            Some(MapLayout::Nhwc) => a == [1, 2],
            _ => a == [2, 3],
        }
    };
    match op(n) {
        "GlobalAveragePool" | "GlobalMaxPool" | "GlobalLpPool" | "Flatten" => true,
        "ReduceMean" | "ReduceMax" | "ReduceSum" => {
            let axes = attr_ints(n, "axes").or_else(|| n.input.get(1).and_then(|a| consts.ints(a)));
            axes.is_some_and(|a| spatial_axes(&a))
        }
        "AveragePool" | "MaxPool" => {
            let (k, f) = (attr_ints(n, "kernel_shape"), facts.get(x));
            matches!((k, f), (Some(k), Some(f)) if k.len() == 2 && f.rank() == 4
                && Some(k[0]) == f.dims[2].fixed() && Some(k[1]) == f.dims[3].fixed())
        }
        "Reshape" => facts.get(n.output.first().map(String::as_str).unwrap_or("")).is_some_and(|f| f.rank() == 2),
        _ => false,
    }
}

/// The automatic target: the input of the last global pooling on the way to the scores
/// (or the nearest candidate before it); without pooling, the last candidate.
fn default_index(
    graph: &GraphProto,
    index: &GraphIndex,
    consts: &Constants,
    facts: &ShapeFacts,
    cands: &[Candidate],
    output: &str,
) -> Option<usize> {
    let feeds_output = index.ancestors(&[output]);
    let by_tensor: HashMap<&str, usize> = cands.iter().enumerate().map(|(i, c)| (c.tensor.as_str(), i)).collect();
    let pool = index.order.iter().rev().map(|&i| &graph.node[i]).find(|n| {
        n.output.first().is_some_and(|y| feeds_output.contains(y))
            && n.input.first().is_some_and(|x| {
                let l = cands.iter().find(|c| &c.tensor == x).map(|c| c.layout);
                facts.get(x).is_some_and(|f| f.rank() == 4) && is_global_pool(n, consts, facts, l)
            })
    });
    if let Some(pool) = pool {
        let x = &pool.input[0];
        if let Some(&i) = by_tensor.get(x.as_str()) {
            return Some(i);
        }
        // The pool reads a non-candidate (e.g. a 1x1 map); take the latest candidate feeding it.
        let anc = index.ancestors(&[x]);
        return cands.iter().rposition(|c| anc.contains(&c.tensor) && c.op != "Input");
    }
    cands.iter().rposition(|c| c.op != "Input")
}

/// Resolve a user's layer name among the candidates: exact tensor name, exact node name, a
/// `/`-separated path segment (Keras layer names inside tf2onnx node names), then a unique
/// substring. Each step that finds several is an ambiguity error listing them.
pub fn resolve<'c>(cands: &'c [Candidate], query: &str, all_tensors: &[String]) -> Result<&'c Candidate, GradError> {
    let steps: [&dyn Fn(&Candidate) -> bool; 4] = [
        &|c| c.tensor == query,
        &|c| !c.node.is_empty() && c.node == query,
        &|c| segments(&c.node).chain(segments(&c.tensor)).any(|s| s == query),
        &|c| c.tensor.contains(query) || c.node.contains(query),
    ];
    for step in steps {
        let hits: Vec<&Candidate> = cands.iter().filter(|c| step(c)).collect();
        match hits.as_slice() {
            [one] => return Ok(one),
            [] => continue,
            many => {
                return Err(GradError::AmbiguousLayer {
                    query: query.to_owned(),
                    matches: many.iter().map(|c| c.tensor.clone()).collect(),
                });
            }
        }
    }
    let not_spatial = all_tensors.iter().any(|t| t == query);
    Err(GradError::LayerNotFound {
        query: query.to_owned(),
        detail: if not_spatial {
            "exists but is not a 4-D spatial feature map".into()
        } else {
            "matches no tensor or node".into()
        },
        suggestions: closest(cands, query),
    })
}

/// `a/b/c:0` -> `a`, `b`, `c`.
fn segments(name: &str) -> impl Iterator<Item = &str> {
    name.split(['/', ':']).filter(|s| !s.is_empty())
}

fn closest(cands: &[Candidate], query: &str) -> Vec<String> {
    let q = query.to_lowercase();
    let mut scored: Vec<(usize, &Candidate)> =
        cands.iter().map(|c| (edit_distance(&q, &c.tensor.to_lowercase()), c)).collect();
    scored.sort_by_key(|(d, _)| *d);
    scored.into_iter().take(3).map(|(_, c)| c.tensor.clone()).collect()
}

fn edit_distance(a: &str, b: &str) -> usize {
    let b: Vec<char> = b.chars().collect();
    let mut prev: Vec<usize> = (0..=b.len()).collect();
    for (i, ca) in a.chars().enumerate() {
        let mut cur = vec![i + 1; b.len() + 1];
        for (j, cb) in b.iter().enumerate() {
            cur[j + 1] = (prev[j] + usize::from(ca != *cb)).min(prev[j + 1] + 1).min(cur[j] + 1);
        }
        prev = cur;
    }
    prev[b.len()]
}
