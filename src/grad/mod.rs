//! Reverse-mode differentiation of ONNX classifiers, emitted as standard ONNX ops.
//!
//! ONNX files carry no gradients and inference builds of ONNX Runtime cannot run the
//! training `Gradient` op, so camscope writes the backward graph itself: from the class
//! score back to the target layer, one [rule](rules) per operator, in plain ONNX that any
//! execution provider runs. The result is split in two graphs so that switching the class
//! never re-runs the backbone:
//!
//! - **body**: the original model with the target activations (and any other tensors the
//!   head needs, e.g. a residual branch) as extra outputs: run once per image;
//! - **head**: activations + seed → score vector and d(seed·score)/d(activations): the part
//!   after the target layer, forward and backward, run once per class.
//!
//! The head is cut once more where the seed enters ([`Plan::head_split`]): its forward, and
//! every backward op that reads only forward values, are the same for every class. On a
//! ViT that is most of the last block, so the engine keeps what the backward reads (the
//! tape) per image and a class switch runs the backward alone.
//!
//! For users, [`Plan::export`] writes the whole thing as one graph with inputs `input` and
//! `seed` and outputs `scores`, `activations`, `gradients`.

pub mod blocker;
pub mod layout;
mod pool;
mod rows;
pub mod rules;
pub mod target;

use std::collections::{HashMap, HashSet};

use serde::Serialize;

pub use self::layout::{MapLayout, TokenSpec};
pub use self::target::Candidate;
use crate::onnx::builder::Builder;
use crate::onnx::graph::{Constants, GraphError, GraphIndex};
use crate::onnx::shapes::{Dim, ShapeFacts, TensorFact};
use crate::onnx::{
    GraphProto, ModelProto, NodeProto, attr_int, attrs, default_opset, dtype, node_label, op, value_info,
};

/// Which score is differentiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Default)]
#[serde(rename_all = "lowercase")]
pub enum ScoreKind {
    /// The pre-softmax logit (the Grad-CAM paper's choice; the default).
    #[default]
    Logit,
    /// The softmax probability (the Keras tutorial's choice).
    Prob,
}

impl std::str::FromStr for ScoreKind {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "logit" | "logits" => Ok(Self::Logit),
            "prob" | "probability" | "probabilities" => Ok(Self::Prob),
            other => Err(format!("unknown score kind `{other}`; use logit or prob")),
        }
    }
}

impl std::fmt::Display for ScoreKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Logit => "logit",
            Self::Prob => "prob",
        })
    }
}

/// Why a gradient graph cannot be built.
#[derive(Debug, Clone, thiserror::Error)]
pub enum GradError {
    #[error(transparent)]
    Graph(#[from] GraphError),
    #[error(
        "the model has no feature map to explain (no 4-D map and no token sequence [N, T, C] with T = k + h·w on the way to the scores; every tensor there is flat or 1x1)"
    )]
    NoSpatialLayer,
    #[error(
        "layer `{layer}` comes after the model picks its class token: the score's gradient is zero on every patch there, so no gradient method can show anything; use `{suggestion}` (the default: the input of the last attention)"
    )]
    AfterTokenSelection { layer: String, suggestion: String },
    #[error(
        "layer `{layer}` is a sequence of {tokens} tokens that fits several grids ({}); say which with --tokens K+HxW (K extra tokens first), or `tokens = \"K+HxW\"` in the card's [layer] table", readings.join(", "))]
    AmbiguousTokens { layer: String, tokens: usize, readings: Vec<String> },
    #[error("layer `{query}` {detail}; closest candidates: {}; list them with `camscope layers`", suggestions.join(", "))]
    LayerNotFound { query: String, detail: String, suggestions: Vec<String> },
    #[error("layer `{query}` is ambiguous, it matches {}; give the full tensor name", matches.join(", "))]
    AmbiguousLayer { query: String, matches: Vec<String> },
    #[error("{0}")]
    Unsupported(Box<Blocked>),
    #[error(
        "cannot differentiate {op} node `{node}` (no gradient rule for this operator), and every path from the image to the score goes through it with only flat [N, C] tensors after it: no layer after that node can be explained with gradients; Eigen-CAM needs no gradients and still works (--method eigencam), as do Score-CAM and Ablation-CAM"
    )]
    BlocksEveryLayer { op: String, node: String },
    #[error("the shape of `{tensor}` is unknown; it could not be measured by running the model")]
    ShapeUnknown { tensor: String },
    #[error("tensor `{tensor}` does not influence the scores output `{output}`; pick a layer before it")]
    NotOnPath { tensor: String, output: String },
    #[error(
        "the model's opset {opset} is older than 11, which camscope's gradient rules need; re-export with opset 11 or newer"
    )]
    OldOpset { opset: i64 },
    #[error("the scores output `{output}` has shape {shape}; camscope needs [N, classes]")]
    BadOutput { output: String, shape: String },
}

/// An operator camscope cannot differentiate, on the way from a layer to the score.
#[derive(Debug, Clone, thiserror::Error)]
#[error(
    "cannot differentiate {op} node `{node}` on the way from layer `{layer}` to the score ({detail}); {}; Eigen-CAM needs no gradients and still works (--method eigencam)",
    match later.as_slice() {
        [] => "no layer after that node can be explained with gradients".to_owned(),
        l => format!("layers after it avoid it: {} (--layer; see `camscope layers`)", l.join(", ")),
    }
)]
pub struct Blocked {
    pub op: String,
    /// The model's own node name.
    pub node: String,
    pub layer: String,
    pub detail: String,
    /// The nearest layers after the node, which avoid it.
    pub later: Vec<String>,
}

/// A model prepared for differentiation: graph index, constants and shape facts.
#[derive(Debug, Clone)]
pub struct Analysis {
    /// Shared with the plans built from it: a plan used to hold its own copy of the weights.
    model: std::sync::Arc<ModelProto>,
    index: GraphIndex,
    consts: Constants,
    facts: ShapeFacts,
    opset: i64,
    input: String,
    output: String,
    input_layout: MapLayout,
    /// The user's reading of token sequences (`--tokens`, the card), when the graph's is
    /// ambiguous or wrong.
    tokens: Option<TokenSpec>,
    /// Probabilities come from sigmoids (multi-label or binary heads), not a softmax.
    sigmoid: bool,
    /// The model file's buffer the weights are slices of, when read from a file: derived
    /// graphs point ONNX Runtime at it instead of encoding the weights again.
    file: Option<crate::onnx::SharedFile>,
}

/// Names of the tensors the engine feeds and reads.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct GraphNames {
    /// The image input.
    pub input: String,
    /// The model's class scores output (logits or probabilities, as the model gives them).
    pub model_output: String,
    /// The target activations.
    pub activation: String,
    /// Other body tensors the head reads (residual branches and the like).
    pub side: Vec<String>,
    /// The head's seed input `[N, classes]`.
    pub seed: String,
    /// The differentiated score vector (head output).
    pub score: String,
    /// d(seed·score)/d(activation) (head output).
    pub gradient: String,
}

/// Body, head and export graphs for one target layer and score kind.
#[derive(Debug, Clone)]
pub struct Plan {
    pub target: Candidate,
    pub score_kind: ScoreKind,
    pub classes: usize,
    pub names: GraphNames,
    /// Whether the head runs at any batch size whatever batch the body ran at (false when a
    /// shape computed in the body had to be passed in).
    pub batch_flexible: bool,
    /// Whether the target is the image input itself (the body then adds no output for it).
    pub activation_is_input: bool,
    head_nodes: Vec<NodeProto>,
    head_inits: Vec<String>,
    /// Constants of the head's rebuilt shape computations (not part of the export graph).
    rewrite_inits: Vec<crate::onnx::TensorProto>,
    score_nodes: Vec<NodeProto>,
    backward_nodes: Vec<NodeProto>,
    backward_inits: Vec<crate::onnx::TensorProto>,
    /// Backward sums of the contributions to one tensor (see [`pool`]).
    merges: HashSet<String>,
    /// The body's nodes where the head's rows are pruned (see [`rows::model_nodes`]), and
    /// the tensors that then hold fewer rows.
    body_nodes: Option<(Vec<NodeProto>, HashSet<String>)>,
    base: std::sync::Arc<ModelProto>,
    /// See [`Analysis::set_shared_file`].
    file: Option<crate::onnx::SharedFile>,
    facts: ShapeFacts,
}

impl Analysis {
    /// Index a model. `input`/`output` are the image input and the class scores output.
    pub fn new(model: ModelProto, input: &str, output: &str, input_layout: MapLayout) -> Result<Self, GradError> {
        let graph = model.graph.as_ref().ok_or(GraphError::NoGraph)?;
        let index = GraphIndex::new(graph)?;
        let consts = Constants::new(graph);
        let facts = ShapeFacts::from_model(&model);
        let opset = default_opset(&model).unwrap_or(1);
        Ok(Self {
            model: std::sync::Arc::new(model),
            index,
            consts,
            facts,
            opset,
            input: input.to_owned(),
            output: output.to_owned(),
            input_layout,
            tokens: None,
            sigmoid: false,
            file: None,
        })
    }

    /// The buffer `model`'s weights were decoded from ([`crate::onnx::read_model_shared`]).
    pub fn set_shared_file(&mut self, file: Option<crate::onnx::SharedFile>) {
        self.file = file;
    }

    /// See [`Analysis::set_shared_file`].
    pub fn shared_file(&self) -> Option<&crate::onnx::SharedFile> {
        self.file.as_ref()
    }

    /// Whether the model's probabilities come from independent sigmoids (multi-label or
    /// binary heads): `--score prob` then differentiates the sigmoid, not a softmax.
    pub fn set_sigmoid(&mut self, sigmoid: bool) {
        self.sigmoid = sigmoid;
    }

    /// Read token sequences as `spec` says instead of guessing their grid.
    pub fn set_tokens(&mut self, spec: Option<TokenSpec>) {
        self.tokens = spec;
    }

    pub fn model(&self) -> &ModelProto {
        &self.model
    }

    fn graph(&self) -> &GraphProto {
        self.model.graph.as_ref().expect("checked in new")
    }

    pub fn facts(&self) -> &ShapeFacts {
        &self.facts
    }

    /// Constant tensors known to the analysis: small initializers, `Constant` nodes and the
    /// values recorded by [`Analysis::add_constant_values`].
    pub fn constants(&self) -> &Constants {
        &self.consts
    }

    pub fn opset(&self) -> i64 {
        self.opset
    }

    /// Tensors whose shapes must be measured: every node output (declared shapes are often
    /// incomplete, and measuring them all costs one forward pass).
    pub fn probe_targets(&self) -> Vec<String> {
        self.graph().node.iter().flat_map(|n| n.output.iter()).filter(|o| !o.is_empty()).cloned().collect()
    }

    /// Node outputs that do not depend on the input: constants the exporter computes in the
    /// graph, whose values the probe records.
    pub fn computed_constants(&self) -> Vec<String> {
        let dep = self.index.input_dependent(self.graph());
        self.probe_targets().into_iter().filter(|t| !dep.contains(t)).collect()
    }

    /// Merge shapes measured at batch 1 and batch 2 with element types `types` (measured, or
    /// [`Analysis::inferred_types`]); types not given are inferred from the graph.
    pub fn add_measured(
        &mut self,
        at1: &[(String, Vec<i64>)],
        at2: &[(String, Vec<i64>)],
        types: &HashMap<String, i32>,
    ) {
        let mut all = self.inferred_types();
        all.extend(types.iter().map(|(k, v)| (k.clone(), *v)));
        self.facts.add_measured(at1, at2, &all);
    }

    /// Element types of every tensor, inferred from the graph.
    pub fn inferred_types(&self) -> HashMap<String, i32> {
        crate::onnx::types::infer_elem_types(self.graph(), &self.index)
    }

    /// Values of small integer tensors measured by running the model. Those that do not
    /// depend on the input are constants the exporter computed in the graph (torch writes
    /// "same" padding as Shape/Slice/Concat chains of constants): recording them lets rules
    /// that need constant axes, pads or starts differentiate through such graphs.
    pub fn add_constant_values(&mut self, ints: &HashMap<String, Vec<i64>>) {
        let input_dep = self.index.input_dependent(self.model.graph.as_ref().expect("graph"));
        for (name, values) in ints {
            if input_dep.contains(name) || self.consts.get(name).is_some() {
                continue;
            }
            let dims = self.facts.get(name).and_then(|f| f.fixed_dims()).unwrap_or_else(|| vec![values.len() as i64]);
            self.consts.insert(name, crate::onnx::tensors::i64(name, &dims, values));
        }
    }

    /// An operator without a gradient rule that, from the graph alone, blocks every layer
    /// (see [`blocker`]): the gradient methods' error, known before any shape is measured.
    pub fn static_blocker(&self) -> Option<GradError> {
        blocker::static_blocker(self.graph(), &self.index, &self.consts, &self.facts, &self.input, &self.output)
            .map(|b| GradError::BlocksEveryLayer { op: b.op, node: b.node })
    }

    /// Candidate target layers, in topological order, the default one flagged.
    pub fn candidates(&self) -> Vec<Candidate> {
        target::candidates(
            self.graph(),
            &self.index,
            &self.consts,
            &self.facts,
            &self.input,
            self.input_layout,
            &self.output,
            self.tokens,
        )
    }

    /// Token sequences whose grid the graph leaves ambiguous, with their readings.
    pub fn ambiguous_tokens(&self) -> HashMap<String, Vec<MapLayout>> {
        target::layouts(self.graph(), &self.index, &self.facts, &self.input, self.input_layout, self.tokens).ambiguous
    }

    /// The layer a user asked for, or the default one.
    pub fn resolve_layer(&self, query: Option<&str>) -> Result<Candidate, GradError> {
        let cands = self.candidates();
        if cands.iter().all(|c| c.op == "Input") {
            // No map at all, unless token sequences are there but fit several grids: then
            // the user can say which.
            let ambiguous = self.ambiguous_tokens();
            let last = self
                .index
                .order
                .iter()
                .rev()
                .flat_map(|&i| &self.graph().node[i].output)
                .find_map(|t| ambiguous.get_key_value(t));
            if let Some((t, readings)) = last {
                return Err(self.ambiguous_error(t, readings));
            }
            return Err(GradError::NoSpatialLayer);
        }
        match query {
            None => cands.into_iter().find(|c| c.is_default).ok_or(GradError::NoSpatialLayer),
            Some(q) => {
                let all: Vec<String> = self.graph().node.iter().flat_map(|n| n.output.clone()).collect();
                let found = match target::resolve(&cands, q, &all) {
                    Ok(c) => c.clone(),
                    Err(e) => {
                        // A token sequence that is no candidate only because its grid is
                        // ambiguous: say so, with the readings.
                        let ambiguous = self.ambiguous_tokens();
                        let hit = ambiguous.iter().find(|(t, _)| t.as_str() == q || (t.contains(q) && !q.is_empty()));
                        if let Some((t, readings)) = hit {
                            return Err(self.ambiguous_error(t, readings));
                        }
                        return Err(e);
                    }
                };
                if !found.reaches_patches {
                    let suggestion = cands
                        .iter()
                        .find(|c| c.is_default)
                        .map_or_else(|| "an earlier layer".into(), |c| c.tensor.clone());
                    return Err(GradError::AfterTokenSelection { layer: found.tensor, suggestion });
                }
                Ok(found)
            }
        }
    }

    /// The error for token sequence `t` whose count fits several `readings`.
    fn ambiguous_error(&self, t: &str, readings: &[MapLayout]) -> GradError {
        GradError::AmbiguousTokens {
            layer: t.to_owned(),
            tokens: self.facts.get(t).and_then(|f| f.dims.get(1)?.fixed()).unwrap_or(0) as usize,
            readings: readings.iter().map(|l| token_reading(*l)).collect(),
        }
    }

    /// The input as a target (for gradients to pixels: saliency, Guided Grad-CAM).
    pub fn input_target(&self) -> Candidate {
        Candidate {
            tensor: self.input.clone(),
            node: String::new(),
            op: "Input".into(),
            dims: self.facts.get(&self.input).map(|f| f.dims.clone()).unwrap_or_default(),
            layout: self.input_layout,
            reaches_patches: true,
            is_default: false,
        }
    }

    /// Number of classes of the scores output.
    pub fn classes(&self) -> Result<usize, GradError> {
        let f = self.facts.get(&self.output);
        match f.map(|f| f.dims.as_slice()) {
            Some([_, Dim::Fixed(k)]) if *k > 0 => Ok(*k as usize),
            _ => Err(GradError::BadOutput {
                output: self.output.clone(),
                shape: f.map_or("unknown".into(), |f| crate::onnx::shapes::fmt_dims(&f.dims)),
            }),
        }
    }

    /// The logit and probability tensors. Missing ones are emitted into `b` (nodes appended
    /// to `nodes`): Softmax over logits, Exp of a LogSoftmax, or a Sigmoid for sigmoid heads.
    fn score_tensor(&self, kind: ScoreKind, b: &mut Builder, nodes: &mut Vec<NodeProto>) -> (String, bool) {
        let g = self.graph();
        let mut t = self.output.clone();
        while let Some(p) = self.index.producer_node(g, &t).filter(|p| op(p) == "Identity") {
            t = p.input[0].clone();
        }
        let producer = self.index.producer_node(g, &t);
        let (logit, prob) = match producer.map(op) {
            Some("Softmax") if !self.sigmoid => (producer.unwrap().input[0].clone(), Some(t.clone())),
            Some("Sigmoid") if self.sigmoid => (producer.unwrap().input[0].clone(), Some(t.clone())),
            Some("LogSoftmax") if !self.sigmoid => (producer.unwrap().input[0].clone(), None),
            _ => (t.clone(), None),
        };
        match kind {
            ScoreKind::Logit => (logit, false),
            ScoreKind::Prob => match prob {
                Some(p) => (p, false),
                None => {
                    let before = b.nodes.len();
                    let p = if self.sigmoid {
                        b.op("Sigmoid", &[&logit], vec![])
                    } else if producer.map(op) == Some("LogSoftmax") {
                        b.op("Exp", &[&t], vec![])
                    } else {
                        let axis = if self.opset >= 13 { -1 } else { 1 };
                        b.op("Softmax", &[&logit], vec![attrs::int("axis", axis)])
                    };
                    nodes.extend(b.nodes.drain(before..));
                    (p, true)
                }
            },
        }
    }

    /// Build body, head and export pieces for `target` (see [`Analysis::resolve_layer`]).
    /// An operator without a gradient rule on the way is an error naming it and the layers
    /// after it, which avoid it.
    pub fn plan(&self, target: &Candidate, kind: ScoreKind, guided: bool) -> Result<Plan, GradError> {
        self.plan_inner(target, kind, guided, true, false).map_err(|e| self.with_later_layers(e))
    }

    /// [`Analysis::plan`] for the head sessions: where a transformer reads only its class
    /// token, the per-token ops after the last attention run on the class token alone. The
    /// result's [`Plan::export`] must not be used (the export graph keeps every token).
    pub fn plan_for_sessions(&self, target: &Candidate, kind: ScoreKind, guided: bool) -> Result<Plan, GradError> {
        self.plan_inner(target, kind, guided, true, true).map_err(|e| self.with_later_layers(e))
    }

    /// A plan without the backward walk: the head computes the score vector and a zero
    /// "gradient". For the methods that need no gradient (Eigen-CAM, Score-CAM,
    /// Ablation-CAM) when [`Analysis::plan`] fails for want of a rule; callers must not
    /// read its gradient.
    pub fn plan_forward(&self, target: &Candidate, kind: ScoreKind) -> Result<Plan, GradError> {
        self.plan_inner(target, kind, false, false, true)
    }

    /// Fill an `Unsupported` error's `later`: the nearest candidate layers downstream of the
    /// node that blocks the way (at most 3, in topological order).
    fn with_later_layers(&self, e: GradError) -> GradError {
        let GradError::Unsupported(mut blocked) = e else { return e };
        let node = blocked.node.clone();
        let g = self.graph();
        let outputs: Vec<&str> = g
            .node
            .iter()
            .find(|n| node_label(n) == node)
            .map(|n| n.output.iter().map(String::as_str).collect())
            .unwrap_or_default();
        let after = if outputs.is_empty() { HashSet::new() } else { self.index.descendants(g, &outputs) };
        let later = self
            .candidates()
            .into_iter()
            .filter(|c| c.reaches_patches && after.contains(&c.tensor) && !outputs.contains(&c.tensor.as_str()))
            .take(3)
            .map(|c| format!("`{}`", c.tensor))
            .collect();
        blocked.later = later;
        GradError::Unsupported(blocked)
    }

    fn plan_inner(
        &self,
        target: &Candidate,
        kind: ScoreKind,
        guided: bool,
        backward: bool,
        prune: bool,
    ) -> Result<Plan, GradError> {
        if self.opset < 11 {
            return Err(GradError::OldOpset { opset: self.opset });
        }
        let classes = self.classes()?;
        let g = self.graph();
        let a = target.tensor.clone();
        let mut b = Builder::new(g, self.opset, "camscope");
        let mut facts = self.facts.clone();
        let mut score_nodes = Vec::new();
        let (score, emitted) = self.score_tensor(kind, &mut b, &mut score_nodes);
        if emitted {
            let f = facts
                .get(&self.output)
                .cloned()
                .unwrap_or(TensorFact { elem_type: dtype::FLOAT, dims: vec![Dim::Batch, Dim::Fixed(classes as i64)] });
            facts.insert(&score, f);
        }
        let score_roots: Vec<String> =
            if emitted { score_nodes.iter().flat_map(|n| n.input.clone()).collect() } else { vec![score.clone()] };
        let roots: Vec<&str> = score_roots.iter().map(String::as_str).collect();
        let anc = self.index.ancestors(&roots);
        if !anc.contains(&a) {
            return Err(GradError::NotOnPath { tensor: a, output: self.output.clone() });
        }
        let dep = self.index.descendants(g, &[&a]);
        let input_dep = self.index.input_dependent(g);
        let activation_is_input = a == self.input;

        // Forward part of the head: everything the score needs, given the activations.
        let shape_derived = self.shape_derived(&input_dep);
        let mut head_set: HashSet<usize> = HashSet::new();
        let mut inits: Vec<String> = Vec::new();
        let mut side: Vec<String> = Vec::new();
        let mut shape_roots: Vec<usize> = Vec::new();
        let mut seen: HashSet<String> = HashSet::new();
        let mut stack: Vec<String> = score_roots.clone();
        while let Some(t) = stack.pop() {
            if !seen.insert(t.clone()) || t == a {
                continue;
            }
            if self.index.initializers.contains_key(&t) {
                inits.push(t);
                continue;
            }
            let producer = self.index.producer.get(&t).map(|&(i, _)| i);
            let include = |i: usize, stack: &mut Vec<String>, head_set: &mut HashSet<usize>| {
                if head_set.insert(i) {
                    stack.extend(self.index.reads(i).iter().cloned());
                }
            };
            match producer {
                Some(i) if !input_dep.contains(&t) || dep.contains(&t) => include(i, &mut stack, &mut head_set),
                Some(i) if shape_derived.contains(&t) => {
                    if op(&g.node[i]) == "Shape" {
                        head_set.insert(i);
                        shape_roots.push(i);
                    } else {
                        include(i, &mut stack, &mut head_set);
                    }
                }
                // Computed in the body without going through the activations: fed by the body.
                _ => side.push(t),
            }
        }
        let mut batch_flexible = true;
        let mut rewritten: HashMap<usize, Vec<NodeProto>> = HashMap::new();
        for &i in &shape_roots {
            match self.rewrite_shape(&g.node[i], &a, &mut b) {
                Some(nodes) => {
                    rewritten.insert(i, nodes);
                }
                None => {
                    // Keep the measured shape as a side input: correct at the body's batch size.
                    head_set.remove(&i);
                    side.push(g.node[i].output[0].clone());
                    batch_flexible = false;
                }
            }
        }
        side.sort();
        side.dedup();
        let mut head_nodes = Vec::new();
        for &i in &self.index.order {
            if !head_set.contains(&i) {
                continue;
            }
            // A shape read in the head is rebuilt from the facts too: it then reads the
            // activations' batch alone, not the tensor whose rows the head may prune.
            let in_head = op(&g.node[i]) == "Shape" && g.node[i].input.first().is_some_and(|x| *x != a);
            if in_head && !rewritten.contains_key(&i) {
                if let Some(nodes) = self.rewrite_shape(&g.node[i], &a, &mut b) {
                    rewritten.insert(i, nodes);
                }
            }
            match rewritten.remove(&i) {
                Some(nodes) => head_nodes.extend(nodes),
                None => head_nodes.push(g.node[i].clone()),
            }
        }
        // A class-token head: after the target only the leading tokens' rows are read, so
        // the ops producing them compute those rows alone (see [`rows`]).
        let mut slices: Vec<rows::TokenSlice> = Vec::new();
        let mut body_nodes = None;
        if prune {
            let readout = target::extra_token_readout(
                g,
                &self.index,
                &self.consts,
                &self.facts,
                &self.input,
                self.input_layout,
                &self.output,
                self.tokens,
            );
            if let Some(prefix) = readout {
                let whole: HashSet<String> = std::iter::once(a.clone()).chain(score_roots.iter().cloned()).collect();
                let pruned =
                    rows::prune(&head_nodes, prefix as i64, &whole, &a, &self.facts, &self.consts, self.opset, &mut b);
                if let Some(p) = pruned {
                    for (t, &(ax, keep)) in &p.pruned {
                        if let Some(mut f) = facts.get(t).cloned() {
                            if keep.pow == 0 {
                                f.dims[ax] = Dim::Fixed(keep.coef);
                            }
                            facts.insert(t, f);
                        }
                    }
                    for s in &p.slices {
                        if let Some(mut f) = facts.get(&s.full).cloned() {
                            f.dims[s.axis] = Dim::Fixed(s.kept);
                            facts.insert(&s.small, f);
                        }
                    }
                    body_nodes = rows::model_nodes(g, &self.index, &head_set, &p.nodes, &p.pruned)
                        .map(|nodes| (nodes, p.pruned.keys().cloned().collect()));
                    head_nodes = p.nodes;
                    slices = p.slices;
                }
            }
        }
        // Initializers created by shape rewrites and slices belong to the head.
        let rewrite_inits: Vec<crate::onnx::TensorProto> = b.initializers.drain(..).collect();

        // Backward: reverse topological walk over the region between target and score.
        // Every tensor between the target and the score must have known facts: a missing
        // one would silently cut the gradient's path.
        if let Some(t) = dep.iter().find(|t| (anc.contains(*t) || **t == score) && facts.get(t).is_none()) {
            return Err(GradError::ShapeUnknown { tensor: t.clone() });
        }
        let mut region: HashSet<String> = dep
            .iter()
            .filter(|t| anc.contains(*t) || **t == score)
            .filter(|t| facts.get(t).is_some_and(TensorFact::is_float) || **t == a)
            .cloned()
            .collect();
        for s in &slices {
            if region.contains(&s.full) {
                region.insert(s.small.clone());
            }
        }
        let layer = target.tensor.clone();
        let seed = if b.reserve("seed") { "seed".to_owned() } else { b.fresh("seed") };
        let mut contributions: HashMap<String, Vec<String>> = HashMap::new();
        contributions.insert(score.clone(), vec![seed.clone()]);
        let forward: Vec<NodeProto> =
            score_nodes.iter().rev().cloned().chain(head_nodes.iter().rev().cloned()).collect();
        // Sums of the contributions to one tensor (same-shaped: see `pool`).
        let mut merges: HashSet<String> = HashSet::new();
        let mut merge = |b: &mut Builder, c: Vec<String>| {
            if c.len() == 1 {
                return c[0].clone();
            }
            let s = b.sum(&c);
            merges.insert(s.clone());
            s
        };
        for node in forward.iter().filter(|_| backward) {
            let grads: Vec<Option<String>> =
                node.output.iter().map(|o| contributions.remove(o).map(|c| merge(&mut b, c))).collect();
            if grads.iter().all(Option::is_none) {
                continue;
            }
            let needs: Vec<bool> = node.input.iter().map(|i| !i.is_empty() && region.contains(i)).collect();
            if !needs.iter().any(|n| *n) || rules::is_non_differentiable(op(node)) {
                continue;
            }
            // The head's own token slices: the gradient goes back to the leading rows, zero
            // on the rest (their constants are the builder's, not the model's).
            if let Some(s) = slices.iter().find(|s| node.output.first() == Some(&s.small)) {
                if let Some(g) = grads[0].as_ref() {
                    let mut ends = vec![0; s.rank];
                    ends[s.axis] = s.size - s.kept;
                    let back = b.pad(g, &vec![0; s.rank], &ends);
                    contributions.entry(s.full.clone()).or_default().push(back);
                }
                continue;
            }
            // Only Split's rule reads the gradients of outputs after the first: for any other
            // op, a gradient that reaches only a later output cannot be propagated.
            if grads[0].is_none() && op(node) != "Split" {
                return Err(GradError::Unsupported(Box::new(Blocked {
                    op: op(node).to_owned(),
                    node: node_label(node),
                    layer: layer.clone(),
                    detail: "the gradient reaches only a secondary output of this node".into(),
                    later: Vec::new(),
                })));
            }
            let rule = rules::rule_for(op(node)).ok_or_else(|| {
                GradError::Unsupported(Box::new(Blocked {
                    op: op(node).to_owned(),
                    node: node_label(node),
                    layer: layer.clone(),
                    detail: "no gradient rule for this operator".into(),
                    later: Vec::new(),
                }))
            })?;
            let mut ctx = rules::RuleCtx {
                node,
                b: &mut b,
                facts: &facts,
                consts: &self.consts,
                grads: &grads,
                needs: &needs,
                guided,
                layer: &layer,
            };
            let input_grads = rule(&mut ctx)?;
            for (i, gi) in input_grads.into_iter().enumerate() {
                if let (Some(gi), true) = (gi, needs.get(i).copied().unwrap_or(false)) {
                    contributions.entry(node.input[i].clone()).or_default().push(gi);
                }
            }
        }
        let gradient = match contributions.remove(&a) {
            Some(c) => merge(&mut b, c),
            None => b.zeros_like(&a),
        };
        let backward_inits = b.initializers.drain(..).collect();
        Ok(Plan {
            target: target.clone(),
            score_kind: kind,
            classes,
            names: GraphNames {
                input: self.input.clone(),
                model_output: self.output.clone(),
                activation: a,
                side,
                seed,
                score,
                gradient,
            },
            batch_flexible,
            activation_is_input,
            head_nodes,
            head_inits: inits,
            rewrite_inits,
            score_nodes,
            backward_nodes: b.nodes,
            backward_inits,
            merges,
            body_nodes,
            base: std::sync::Arc::clone(&self.model),
            file: self.file.clone(),
            facts,
        })
    }

    /// Tensors computed from the input only through `Shape` (integer shape arithmetic).
    fn shape_derived(&self, input_dep: &HashSet<String>) -> HashSet<String> {
        let g = self.graph();
        let mut out: HashSet<String> = HashSet::new();
        for &i in &self.index.order {
            let n = &g.node[i];
            let dep_inputs: Vec<&String> = self.index.reads(i).iter().filter(|t| input_dep.contains(*t)).collect();
            if dep_inputs.is_empty() {
                continue;
            }
            let non_float = n.output.iter().all(|o| self.facts.get(o).is_some_and(|f| !f.is_float()));
            if op(n) == "Shape" || (non_float && dep_inputs.iter().all(|t| out.contains(*t))) {
                out.extend(n.output.iter().cloned());
            }
        }
        out
    }

    /// Replace `Shape(x)` (x computed in the body) by the same shape rebuilt in the head:
    /// static dims as constants and the batch axis read from the activations' shape.
    fn rewrite_shape(&self, node: &NodeProto, a: &str, b: &mut Builder) -> Option<Vec<NodeProto>> {
        let x = node.input.first()?;
        let y = node.output.first()?.clone();
        let xf = self.facts.get(x)?;
        if !xf.is_complete() {
            return None;
        }
        let r = xf.rank() as i64;
        let clampi = |v: i64| if v < 0 { (v + r).max(0) } else { v.min(r) };
        let start = clampi(attr_int(node, "start").unwrap_or(0)) as usize;
        let end = clampi(attr_int(node, "end").unwrap_or(r)) as usize;
        let before = b.nodes.len();
        // Folded axes (heads in the batch: 12 at batch 1) are a multiple of the batch; one
        // axis at most follows it.
        let units = self.facts.monomials(x)?;
        let units = &units[start..end.max(start)];
        if units.iter().filter(|u| u.1 > 0).count() > 1 {
            return None;
        }
        let shape = rows::shape_from_facts(units, None, a, &self.facts, b)?;
        b.op("Identity", &[&shape], vec![]);
        let mut nodes: Vec<NodeProto> = b.nodes.drain(before..).collect();
        // Write the result under the original name so every consumer reads it unchanged.
        nodes.last_mut()?.output = vec![y];
        Some(nodes)
    }
}

impl Plan {
    /// Drop the copy of the model the graphs were built from (the size of the weights), once
    /// the sessions exist; the graph-building methods must not be called afterwards.
    pub fn release_model(&mut self) {
        self.base = std::sync::Arc::default();
        self.file = None;
    }

    /// The model without its graph (IR version, opsets, functions, metadata): what every
    /// derived graph keeps, without copying the weights.
    fn shell(&self) -> ModelProto {
        let b = &*self.base;
        ModelProto {
            ir_version: b.ir_version,
            opset_import: b.opset_import.clone(),
            producer_name: b.producer_name.clone(),
            producer_version: b.producer_version.clone(),
            domain: b.domain.clone(),
            model_version: b.model_version,
            doc_string: b.doc_string.clone(),
            graph: None,
            metadata_props: b.metadata_props.clone(),
            training_info: b.training_info.clone(),
            functions: b.functions.clone(),
            configuration: b.configuration.clone(),
        }
    }

    /// The outputs the body adds to the model's own: the activations and side tensors.
    fn body_extra_outputs(&self) -> Vec<crate::onnx::ValueInfoProto> {
        let g = self.base.graph.as_ref().expect("graph");
        let existing: HashSet<&str> = g.output.iter().filter_map(|o| o.name.as_deref()).collect();
        let mut extra: Vec<&String> = Vec::new();
        if !self.activation_is_input {
            extra.push(&self.names.activation);
        }
        extra.extend(self.names.side.iter());
        let mut seen = HashSet::new();
        extra
            .into_iter()
            .filter(|t| !existing.contains(t.as_str()) && seen.insert(t.as_str()))
            .map(|t| self.declare(t))
            .collect()
    }

    /// The body graph encoded ([`Plan::body`] without building it: the weights are not
    /// copied), its weights read from the model file's buffer where the model came from one.
    pub fn body_encoded(&self) -> crate::onnx::Encoded {
        self.body_encoded_with(self.file.as_ref())
    }

    /// [`Plan::body_encoded`] with the weights inside the bytes.
    pub fn body_bytes(&self) -> Vec<u8> {
        self.body_encoded_with(None).bytes
    }

    fn body_encoded_with(&self, file: Option<&crate::onnx::SharedFile>) -> crate::onnx::Encoded {
        let base = self.base.graph.as_ref().expect("graph");
        let mut m = self.shell();
        m.graph = Some(match self.pruned_body_graph() {
            Some(graph) => graph,
            // The model's graph less its weights (which go in after), with the extra outputs.
            None => GraphProto {
                initializer: Vec::new(),
                output: base.output.iter().cloned().chain(self.body_extra_outputs()).collect(),
                ..base.clone()
            },
        });
        crate::onnx::encode_external(&m, &base.initializer, file)
    }

    fn declare(&self, name: &str) -> crate::onnx::ValueInfoProto {
        let f = self.facts.get(name);
        let dims: Vec<i64> = f.map(|f| f.dims_i64()).unwrap_or_default();
        // `N` only where the axis is the batch itself: a folded axis (`4·N` heads or windows)
        // under the same symbol would tell ONNX Runtime that the two sizes are equal.
        let units = self.facts.monomials(name);
        let names: Vec<Option<String>> = f
            .map(|f| {
                let per_image = |i: usize| units.as_ref().is_some_and(|u| u[i] == (1, 1));
                let named = |(i, d): (usize, &Dim)| match d {
                    Dim::Batch if per_image(i) => Some("N".to_owned()),
                    Dim::Batch => Some(format!("{name}:{i}")),
                    _ => None,
                };
                f.dims.iter().enumerate().map(named).collect()
            })
            .unwrap_or_default();
        let names: Vec<Option<&str>> = names.iter().map(Option::as_deref).collect();
        value_info(name, f.map_or(dtype::FLOAT, |f| f.elem_type), &dims, &names)
    }

    fn seed_info(&self, name: &str) -> crate::onnx::ValueInfoProto {
        value_info(name, dtype::FLOAT, &[-1, self.classes as i64], &[Some("N"), None])
    }

    /// The body graph: the original model, also outputting the activations and side tensors
    /// (with the head's rows pruned where they can be: [`rows::model_nodes`]).
    pub fn body(&self) -> ModelProto {
        let mut m = (*self.base).clone();
        let g = m.graph.as_mut().expect("graph");
        if let Some(mut pruned) = self.pruned_body_graph() {
            pruned.initializer.append(&mut g.initializer);
            *g = pruned;
        } else {
            g.output.extend(self.body_extra_outputs());
        }
        m
    }

    /// The body's graph without the model's initializers, where the head's rows are pruned:
    /// its nodes, the constants they add, the model's declarations less those of the pruned
    /// tensors (their rows changed).
    fn pruned_body_graph(&self) -> Option<GraphProto> {
        let (nodes, pruned) = self.body_nodes.as_ref()?;
        let base = self.base.graph.as_ref().expect("graph");
        let read: HashSet<&str> = nodes.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
        let declared = |v: &&crate::onnx::ValueInfoProto| !v.name.as_deref().is_some_and(|n| pruned.contains(n));
        Some(GraphProto {
            node: nodes.clone(),
            name: base.name.clone(),
            initializer: self
                .rewrite_inits
                .iter()
                .filter(|t| t.name.as_deref().is_some_and(|n| read.contains(n)))
                .cloned()
                .collect(),
            sparse_initializer: base.sparse_initializer.clone(),
            doc_string: base.doc_string.clone(),
            input: base.input.clone(),
            output: base.output.iter().cloned().chain(self.body_extra_outputs()).collect(),
            value_info: base.value_info.iter().filter(declared).cloned().collect(),
            quantization_annotation: base.quantization_annotation.clone(),
            metadata_props: base.metadata_props.clone(),
        })
    }

    /// Outputs of the body, in order: model output, then activations (unless the target is
    /// the input), then side tensors.
    pub fn body_outputs(&self) -> Vec<String> {
        let mut v = vec![self.names.model_output.clone()];
        if !self.activation_is_input {
            v.push(self.names.activation.clone());
        }
        v.extend(self.names.side.iter().cloned());
        v
    }

    /// The forward model with the differentiated score vector as its only output (logits,
    /// or probabilities): what Score-CAM and the faithfulness metrics run on masked inputs.
    pub fn scores_model(&self) -> ModelProto {
        let mut m = (*self.base).clone();
        let g = m.graph.as_mut().expect("graph");
        g.node.extend(self.score_nodes.iter().cloned());
        let mut out = self.seed_info(&self.names.score);
        out.name = Some(self.names.score.clone());
        g.output = vec![out];
        m
    }

    /// The head graph: (activations, side tensors, seed) → (score vector, gradient).
    pub fn head(&self) -> ModelProto {
        let nodes = self.head_nodes.iter().chain(&self.score_nodes).chain(&self.backward_nodes).cloned().collect();
        let input = self.fed_info().into_iter().chain(std::iter::once(self.seed_info(&self.names.seed))).collect();
        self.subgraph(nodes, input, vec![self.score_info(), self.gradient_info()])
    }

    /// Declarations of the head's inputs from the body: the activations and side tensors.
    fn fed_info(&self) -> Vec<crate::onnx::ValueInfoProto> {
        std::iter::once(self.declare(&self.names.activation))
            .chain(self.names.side.iter().map(|s| self.declare(s)))
            .collect()
    }

    /// Declaration of the head's score vector output.
    fn score_info(&self) -> crate::onnx::ValueInfoProto {
        match self.facts.get(&self.names.score) {
            Some(_) => self.declare(&self.names.score),
            None => self.seed_info(&self.names.score),
        }
    }

    /// Declaration of the head's gradient output (shaped like the activations).
    fn gradient_info(&self) -> crate::onnx::ValueInfoProto {
        let mut v = self.declare(&self.names.activation);
        v.name = Some(self.names.gradient.clone());
        v
    }

    /// The head cut in two where the seed enters, so that a class switch reruns only what
    /// depends on the class. On a ViT the head is the last attention block, forward and
    /// backward; its forward (and every backward op that reads only forward values) is the
    /// same for every class, so the engine runs it once per image and keeps what the
    /// backward reads (the tape). `None` where the cut cannot be made safely (a subgraph
    /// op, a tape tensor of unknown type, a gradient that does not depend on the seed):
    /// the engine then runs [`Plan::head`] whole.
    pub fn head_split(&self) -> Option<HeadSplit> {
        let names = &self.names;
        if self.head_nodes.iter().chain(&self.score_nodes).chain(&self.backward_nodes).any(has_subgraph) {
            return None;
        }
        let fwd: Vec<&NodeProto> = self.head_nodes.iter().chain(&self.score_nodes).collect();
        let fed: HashSet<&str> =
            std::iter::once(names.activation.as_str()).chain(names.side.iter().map(String::as_str)).collect();
        // Forward values: the head's inputs and what its forward nodes compute.
        let mut data: HashSet<&str> = fed.clone();
        data.extend(fwd.iter().flat_map(|n| n.output.iter().map(String::as_str)));
        let mut seeded: HashSet<&str> = HashSet::from([names.seed.as_str()]);
        // Backward nodes: seed-dependent ones stay; those reading forward values only move to
        // the forward graph; those reading constants only go where they are read.
        let mut stays = Vec::new();
        let mut moves = Vec::new();
        let mut constant = Vec::new();
        for n in &self.backward_nodes {
            let reads = || n.input.iter().filter(|i| !i.is_empty()).map(String::as_str);
            if reads().any(|i| seeded.contains(i)) {
                seeded.extend(n.output.iter().map(String::as_str));
                stays.push(n);
            } else if reads().any(|i| data.contains(i)) {
                data.extend(n.output.iter().map(String::as_str));
                moves.push(n);
            } else {
                constant.push(n);
            }
        }
        if !seeded.contains(names.gradient.as_str()) || names.gradient == names.seed {
            return None;
        }
        let forward_nodes: Vec<&NodeProto> = fwd.iter().copied().chain(moves.iter().copied()).collect();
        let forward_nodes = with_constants(&forward_nodes, &constant);
        let backward_nodes = with_constants(&stays, &constant);
        let computed: HashSet<&str> = forward_nodes.iter().flat_map(|n| n.output.iter().map(String::as_str)).collect();
        // Constants both parts read are computed in both (ONNX Runtime folds them).
        let own: HashSet<&str> = backward_nodes.iter().flat_map(|n| n.output.iter().map(String::as_str)).collect();
        let mut tape: Vec<String> = Vec::new();
        for n in &backward_nodes {
            for i in &n.input {
                if computed.contains(i.as_str()) && !own.contains(i.as_str()) && !tape.contains(i) {
                    tape.push(i.clone());
                }
            }
        }
        // Element types of the tape: the measured facts, else inferred from the whole head.
        let whole = self.head();
        let g = whole.graph.as_ref().expect("head graph");
        let inferred = GraphIndex::new(g).ok().map(|ix| crate::onnx::types::infer_elem_types(g, &ix))?;
        let declare = |t: &str| -> Option<crate::onnx::ValueInfoProto> {
            if self.facts.get(t).is_some() {
                return Some(self.declare(t));
            }
            let ty = *inferred.get(t)?;
            let mut v = value_info(t, ty, &[], &[]);
            if let Some(crate::onnx::proto::type_proto::Value::TensorType(tt)) =
                v.r#type.as_mut().and_then(|t| t.value.as_mut())
            {
                tt.shape = None;
            }
            Some(v)
        };
        let tape_decls: Vec<_> = tape.iter().map(|t| declare(t)).collect::<Option<_>>()?;
        let inputs_fed = self.fed_info();
        let forward_outputs: Vec<_> = std::iter::once(self.score_info())
            .chain(tape_decls.iter().filter(|v| v.name.as_deref() != Some(names.score.as_str())).cloned())
            .collect();
        let forward = self.subgraph(forward_nodes, inputs_fed.clone(), forward_outputs.clone());
        // The whole head, also giving the tape: an image's first class costs one run.
        let mut whole = whole;
        if let Some(g) = whole.graph.as_mut() {
            g.output.extend(forward_outputs.into_iter().skip(1));
        }
        let read: HashSet<&str> = backward_nodes.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
        let backward_inputs: Vec<_> = inputs_fed
            .into_iter()
            .filter(|v| v.name.as_deref().is_some_and(|n| read.contains(n)))
            .chain(tape_decls)
            .chain(std::iter::once(self.seed_info(&names.seed)))
            .collect();
        let (pooled, whole_pooled) = self.pooled_graphs(&backward_nodes, backward_inputs.clone(), &whole).unzip();
        let backward = self.subgraph(backward_nodes, backward_inputs, vec![self.gradient_info()]);
        Some(HeadSplit { whole, forward, backward, pooled, whole_pooled, tape })
    }

    /// The backward graph giving Grad-CAM's channel weights `[N, C]` (the gradient's mean
    /// over the map's positions) instead of the gradient, the mean moved up the graph where
    /// it commutes (see [`pool`]), with the backward's inputs; and the whole head giving the
    /// score vector, those weights and the tape (`whole`'s inputs, its outputs but the
    /// gradient). `None` where the target's shape is not known in full.
    fn pooled_graphs(
        &self,
        nodes: &[NodeProto],
        inputs: Vec<crate::onnx::ValueInfoProto>,
        whole: &ModelProto,
    ) -> Option<(ModelProto, ModelProto)> {
        let layout = self.target.layout;
        let f = self.facts.get(&self.names.activation)?;
        let dims: Vec<i64> = f.dims[1..].iter().map(|d| d.fixed()).collect::<Option<_>>()?;
        let (channels, positions) = match layout {
            MapLayout::Tokens { h, w, .. } => (*dims.get(1)?, h * w),
            l => {
                let (c, y, x) = l.axes()?;
                (*dims.get(c - 1)?, usize::try_from(dims.get(y - 1)? * dims.get(x - 1)?).ok()?)
            }
        };
        if f.rank() != layout.rank() || positions == 0 {
            return None;
        }
        let base = self.base.graph.as_ref()?;
        let weights: HashMap<&str, usize> =
            base.initializer.iter().filter_map(|t| Some((t.name.as_deref()?, t.dims.len()))).collect();
        let rank = |t: &str| self.facts.get(t).map(TensorFact::rank).or_else(|| weights.get(t).copied());
        let graph = pool::Graph { nodes, merges: &self.merges, rank: &rank };
        let wg = whole.graph.as_ref()?;
        let mut b = Builder::new(wg, default_opset(whole).unwrap_or(11), "camscope_pool");
        let spans = pool::map_positions(layout);
        let summed = pool::pooled(&graph, &self.names.gradient, f.rank(), &spans, &mut b);
        let mean = b.mul_scalar(&summed, 1.0 / positions as f32);
        let weights_out = b.reshape_to(&mean, &[0, -1]);
        let out = value_info(&weights_out, dtype::FLOAT, &[-1, channels], &[Some("N"), None]);
        let with_pool = |nodes: &[NodeProto], outputs: &[crate::onnx::ValueInfoProto]| {
            let all: Vec<NodeProto> = nodes.iter().chain(&b.nodes).cloned().collect();
            let names: Vec<&str> = outputs.iter().filter_map(|v| v.name.as_deref()).collect();
            let mut m = self.subgraph(pool::needed(all, &names), Vec::new(), outputs.to_vec());
            if let Some(g) = m.graph.as_mut() {
                g.initializer.extend(b.initializers.iter().cloned());
            }
            m
        };
        let mut pooled = with_pool(nodes, std::slice::from_ref(&out));
        pooled.graph.as_mut()?.input = inputs;
        let outputs: Vec<_> = wg
            .output
            .iter()
            .filter(|v| v.name.as_deref() != Some(self.names.gradient.as_str()))
            .cloned()
            .chain(std::iter::once(out))
            .collect();
        let mut whole_pooled = with_pool(&wg.node, &outputs);
        whole_pooled.graph.as_mut()?.input = wg.input.clone();
        Some((pooled, whole_pooled))
    }

    /// A graph of some of the head's nodes with the initializers they read, under the model's
    /// own graph name and annotations (the whole model's weights are copied once, not here).
    fn subgraph(
        &self,
        nodes: Vec<NodeProto>,
        input: Vec<crate::onnx::ValueInfoProto>,
        output: Vec<crate::onnx::ValueInfoProto>,
    ) -> ModelProto {
        let base = self.base.graph.as_ref().expect("graph");
        let read: HashSet<&str> = nodes.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
        let keep: HashSet<&str> = self.head_inits.iter().map(String::as_str).filter(|n| read.contains(n)).collect();
        let initializer = base
            .initializer
            .iter()
            .filter(|t| t.name.as_deref().is_some_and(|n| keep.contains(n)))
            .chain(
                self.rewrite_inits
                    .iter()
                    .chain(&self.backward_inits)
                    .filter(|t| t.name.as_deref().is_some_and(|n| read.contains(n))),
            )
            .cloned()
            .collect();
        let mut m = self.shell();
        m.graph = Some(GraphProto {
            name: base.name.clone(),
            doc_string: base.doc_string.clone(),
            sparse_initializer: base.sparse_initializer.clone(),
            quantization_annotation: base.quantization_annotation.clone(),
            metadata_props: base.metadata_props.clone(),
            node: nodes,
            initializer,
            input,
            output,
            ..Default::default()
        });
        m
    }

    /// One graph for users: inputs `input` and `seed`, outputs `scores` (the differentiated
    /// score vector), `activations` and `gradients`. The model's own input is renamed to
    /// `input` (and any tensor already using one of these names is renamed out of the way).
    pub fn export(&self) -> ModelProto {
        const RESERVED: [&str; 5] = ["input", "seed", "scores", "activations", "gradients"];
        let mut m = (*self.base).clone();
        let g = m.graph.as_mut().expect("graph");
        g.node.extend(self.score_nodes.iter().cloned());
        g.node.extend(self.backward_nodes.iter().cloned());
        g.initializer.extend(self.backward_inits.iter().cloned());
        // Rename clashes with the contract's names, then the input to `input`.
        let mut renames: HashMap<String, String> = HashMap::new();
        let taken: HashSet<String> = all_names(g);
        for r in RESERVED {
            if r == self.names.input && r == "input" {
                continue;
            }
            if taken.contains(r) {
                let mut k = 1;
                while taken.contains(&format!("{r}_{k}")) {
                    k += 1;
                }
                renames.insert(r.to_owned(), format!("{r}_{k}"));
            }
        }
        if self.names.input != "input" {
            renames.insert(self.names.input.clone(), "input".into());
        }
        let rn = |s: &str| renames.get(s).cloned().unwrap_or_else(|| s.to_owned());
        for n in g.node.iter_mut() {
            for t in n.input.iter_mut().chain(n.output.iter_mut()) {
                *t = rn(t);
            }
        }
        for v in g.input.iter_mut().chain(g.output.iter_mut()).chain(g.value_info.iter_mut()) {
            if let Some(name) = v.name.as_mut() {
                *name = rn(name);
            }
        }
        for t in g.initializer.iter_mut() {
            if let Some(name) = t.name.as_mut() {
                *name = rn(name);
            }
        }
        let (score, act, grad, seed) =
            (rn(&self.names.score), rn(&self.names.activation), rn(&self.names.gradient), rn(&self.names.seed));
        let identity = |from: &str, to: &str| NodeProto {
            name: Some(format!("camscope/export/{to}")),
            op_type: Some("Identity".into()),
            input: vec![from.to_owned()],
            output: vec![to.to_owned()],
            ..Default::default()
        };
        g.node.push(identity(&score, "scores"));
        g.node.push(identity(&act, "activations"));
        g.node.push(identity(&grad, "gradients"));
        // The seed is called `seed` in the contract.
        for n in g.node.iter_mut() {
            for t in n.input.iter_mut() {
                if *t == seed {
                    *t = "seed".into();
                }
            }
        }
        let mut input_decl = self.declare(&self.names.input);
        input_decl.name = Some("input".into());
        g.input = std::iter::once(input_decl).chain(std::iter::once(self.seed_info("seed"))).collect();
        let mut scores = self.seed_info("scores");
        scores.name = Some("scores".into());
        let mut acts = self.declare(&self.names.activation);
        acts.name = Some("activations".into());
        let mut grads = self.declare(&self.names.activation);
        grads.name = Some("gradients".into());
        g.output = vec![scores, acts, grads];
        m.producer_name = Some("camscope".into());
        m.producer_version = Some(env!("CARGO_PKG_VERSION").into());
        let note = format!(
            "camscope gradient graph: target layer `{}`, score {}, inputs input + seed [N,{}], outputs scores, activations, gradients",
            self.target.tensor, self.score_kind, self.classes
        );
        m.doc_string = Some(note);
        m
    }
}

/// The head in two graphs (see [`Plan::head_split`]).
#[derive(Debug, Clone)]
pub struct HeadSplit {
    /// [`Plan::head`] also giving the tape after its score vector and gradient: an image's
    /// first class.
    pub whole: ModelProto,
    /// (activations, side tensors) → (score vector, tape): the scores alone (Ablation-CAM).
    pub forward: ModelProto,
    /// (the activations and side tensors it reads, tape, seed) → gradient: every other class.
    pub backward: ModelProto,
    /// `backward` giving Grad-CAM's channel weights `[N, C]` instead of the gradient (the
    /// mean over the map's positions, taken where it is cheapest): a Grad-CAM class switch.
    pub pooled: Option<ModelProto>,
    /// `whole` giving Grad-CAM's channel weights (last output) instead of the gradient: an
    /// image's first Grad-CAM map.
    pub whole_pooled: Option<ModelProto>,
    /// The forward values the backward reads, outputs of `forward` (the score vector among
    /// them when the backward reads it, e.g. a softmax's).
    pub tape: Vec<String>,
}

/// Whether a node carries a subgraph (If, Loop, Scan), whose implicit reads a split would miss.
fn has_subgraph(n: &NodeProto) -> bool {
    n.attribute.iter().any(|a| a.g.is_some() || !a.graphs.is_empty())
}

/// `nodes` in their order, preceded by the constant-only nodes they read (transitively).
fn with_constants(nodes: &[&NodeProto], constant: &[&NodeProto]) -> Vec<NodeProto> {
    let mut need: HashSet<&str> = nodes.iter().flat_map(|n| n.input.iter().map(String::as_str)).collect();
    let mut picked = vec![false; constant.len()];
    for (k, c) in constant.iter().enumerate().rev() {
        if c.output.iter().any(|o| need.contains(o.as_str())) {
            picked[k] = true;
            need.extend(c.input.iter().map(String::as_str));
        }
    }
    constant
        .iter()
        .zip(&picked)
        .filter(|(_, p)| **p)
        .map(|(c, _)| (*c).clone())
        .chain(nodes.iter().map(|n| (*n).clone()))
        .collect()
}

/// `K+HxW` for a token layout (as `--tokens` takes it).
fn token_reading(l: MapLayout) -> String {
    match l {
        MapLayout::Tokens { prefix, suffix, h, w } => format!("{}+{h}x{w}", prefix + suffix),
        other => other.to_string(),
    }
}

/// Every tensor name used in a graph.
fn all_names(g: &GraphProto) -> HashSet<String> {
    let mut s: HashSet<String> = HashSet::new();
    for n in &g.node {
        s.extend(n.input.iter().chain(&n.output).cloned());
    }
    s.extend(g.input.iter().chain(&g.output).chain(&g.value_info).filter_map(|v| v.name.clone()));
    s.extend(g.initializer.iter().filter_map(|t| t.name.clone()));
    s
}
