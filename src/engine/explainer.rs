//! Runs the body and head graphs of one target layer.

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, ArrayView2, ArrayViewD};
use ort::value::{DynValue, ValueType};

use super::{EngineError, GraphSession, Provider, SessionOptions};
use crate::grad::{Analysis, Candidate, GradError, GraphNames, Plan, ScoreKind};

/// What the body computes for a batch of images.
#[derive(Debug, Clone)]
pub struct BodyOutput {
    /// The model's own output `[N, classes]` (logits or probabilities as the model gives them).
    pub output: ArrayD<f32>,
    /// Target activations `[N, ...]`.
    pub activation: ArrayD<f32>,
    /// Other tensors the head needs, in [`Plan`]'s `names.side` order.
    pub side: Vec<ArrayD<f32>>,
}

/// What the head computes for one seed batch.
#[derive(Debug, Clone)]
pub struct HeadOutput {
    /// The differentiated score vector `[N, classes]` (logits or probabilities).
    pub scores: ArrayD<f32>,
    /// d(seed · scores)/d(activations), shaped like the activations.
    pub gradient: ArrayD<f32>,
}

/// The class-independent part of the head's work for one batch of activations: the score
/// vector and the forward values the backward reads (see `grad::Plan::head_split`).
#[derive(Debug)]
pub struct Tape {
    /// The differentiated score vector `[N, classes]`.
    pub scores: ArrayD<f32>,
    /// The backward graph's tape inputs, as ONNX Runtime gave them.
    values: Vec<(String, DynValue)>,
}

/// What [`Explainer::head_pooled`] gives: an image's first Grad-CAM head run.
pub struct PooledHead {
    /// The score vector `[N, classes]`.
    pub scores: ArrayD<f32>,
    /// Grad-CAM's channel weights `[N, C]`.
    pub weights: ArrayD<f32>,
    /// The tape, when asked for.
    pub tape: Option<Tape>,
}

impl super::cache::Weighed for Tape {
    fn bytes(&self) -> usize {
        let value = |v: &DynValue| match v.dtype() {
            ValueType::Tensor { ty, shape, .. } => ty.byte_size(shape.num_elements()).unwrap_or(0),
            _ => 0,
        };
        self.scores.len() * 4 + self.values.iter().map(|(n, v)| n.len() + value(v)).sum::<usize>() + 64
    }
}

/// The head's parts cut where the seed enters (a class switch then runs only `backward`).
struct SplitSessions {
    /// The forward part, opened on first use (only Ablation-CAM needs scores alone): its
    /// session used to cost every model load (the bundled model: 5 ms of 79).
    forward: LazySession,
    backward: LazySession,
    /// The backward giving Grad-CAM's channel weights alone (see `grad::pool`), opened on
    /// first use or by [`Explainer::prepare_pooled`]; its inputs are the backward's.
    pooled: Option<LazySession>,
    /// The whole head giving Grad-CAM's channel weights and the tape: an image's first
    /// Grad-CAM map (opened like `pooled`).
    whole_pooled: Option<LazySession>,
    tape: Vec<String>,
    backward_inputs: Vec<String>,
}

/// A session created when first run.
enum LazySession {
    Pending(Box<crate::onnx::ModelProto>, SessionOptions),
    Open(GraphSession),
}

impl LazySession {
    fn is_open(&self) -> bool {
        matches!(self, LazySession::Open(_))
    }

    fn open(&mut self, label: &Path) -> Result<&mut GraphSession, EngineError> {
        if let LazySession::Pending(model, opts) = self {
            *self = LazySession::Open(GraphSession::from_model(model, label, opts)?);
        }
        match self {
            LazySession::Open(s) => Ok(s),
            LazySession::Pending(..) => unreachable!("opened above"),
        }
    }
}

/// Sessions for one model, target layer and score kind.
pub struct Explainer {
    pub plan: Plan,
    body: GraphSession,
    /// The whole head (also giving the tape when it is split). Where the head has a pooled
    /// form, that one opens with the explainer (an image's first Grad-CAM map runs it) and
    /// this one on first use.
    head: LazySession,
    split: Option<Box<SplitSessions>>,
    body_outputs: Vec<String>,
    path: PathBuf,
    /// Why the head has no gradient (an operator without a rule on the way): the methods
    /// that need none still run on its scores and the body's activations.
    gradient_error: Option<GradError>,
}

impl Explainer {
    /// Build the gradient graphs for `target` and open their sessions. `label` names the
    /// model in errors (its file).
    pub fn new(
        analysis: &Analysis,
        label: &Path,
        target: &Candidate,
        score: ScoreKind,
        guided: bool,
        opts: &SessionOptions,
    ) -> Result<Self, EngineError> {
        let (plan, gradient_error) = match analysis.plan_for_sessions(target, score, guided) {
            Ok(plan) => (plan, None),
            Err(e @ GradError::Unsupported(_)) if !guided => {
                let plan = analysis
                    .plan_forward(target, score)
                    .map_err(|source| EngineError::Grad { path: label.to_owned(), source })?;
                (plan, Some(e))
            }
            Err(source) => return Err(EngineError::Grad { path: label.to_owned(), source }),
        };
        let body = GraphSession::from_encoded(&plan.body_encoded(), label, opts)?;
        // The input as target (Guided Grad-CAM) makes the head the whole model: its tape would
        // be every activation of the network, for a map that is computed once.
        let split = if plan.activation_is_input || gradient_error.is_some() { None } else { plan.head_split() };
        let (head, split) = match split {
            Some(split) => {
                let backward_inputs = split
                    .backward
                    .graph
                    .as_ref()
                    .map_or_else(Vec::new, |g| g.input.iter().filter_map(|v| v.name.clone()).collect());
                let pending = |m: crate::onnx::ModelProto| LazySession::Pending(Box::new(m), opts.clone());
                let mut parts = SplitSessions {
                    forward: pending(split.forward),
                    backward: pending(split.backward),
                    pooled: split.pooled.map(pending),
                    whole_pooled: split.whole_pooled.map(pending),
                    tape: split.tape,
                    backward_inputs,
                };
                // The session the default method's first map needs opens now (so that a head
                // ONNX Runtime refuses fails at load); each of the others when first run.
                let mut head = pending(split.whole);
                match parts.whole_pooled.as_mut() {
                    Some(first) => first.open(label).map(|_| ())?,
                    None => head.open(label).map(|_| ())?,
                }
                (head, Some(Box::new(parts)))
            }
            None => (LazySession::Open(GraphSession::from_model(&plan.head(), label, opts)?), None),
        };
        let body_outputs = plan.body_outputs();
        // The sessions hold the graphs now; the plan's model copy would only cost memory.
        let mut plan = plan;
        plan.release_model();
        Ok(Self { plan, body, head, split, body_outputs, path: label.to_owned(), gradient_error })
    }

    /// Why gradients cannot be computed for this layer, if they cannot.
    pub fn gradient_error(&self) -> Option<EngineError> {
        self.gradient_error.clone().map(|source| EngineError::Grad { path: self.path.clone(), source })
    }

    /// The execution provider running the graphs, and why CUDA was not used (for `auto`).
    pub fn provider(&self) -> (Provider, Option<&str>) {
        (self.body.provider, self.body.fallback.as_deref())
    }

    /// Run the body on an input batch.
    pub fn body(&mut self, input: ArrayViewD<'_, f32>) -> Result<BodyOutput, EngineError> {
        let wanted: Vec<&str> = self.body_outputs.iter().map(String::as_str).collect();
        let name = self.plan.names.input.clone();
        let mut outs = self.body.run(&[(name.as_str(), input.view())], &wanted)?.into_iter();
        let output = outs.next().expect("model output");
        let activation =
            if self.plan.activation_is_input { input.to_owned() } else { outs.next().expect("activation") };
        Ok(BodyOutput { output, activation, side: outs.collect() })
    }

    /// Whether the head is cut in two, so that [`Explainer::head_keeping_tape`]'s tape is
    /// worth keeping per image and [`Explainer::backward`] can run without the forward.
    pub fn splits(&self) -> bool {
        self.split.is_some()
    }

    /// Run the head: scores and gradients for `seed` (`[N, classes]`, one row per image).
    pub fn head(
        &mut self,
        activation: ArrayViewD<'_, f32>,
        side: &[ArrayViewD<'_, f32>],
        seed: ArrayView2<'_, f32>,
    ) -> Result<HeadOutput, EngineError> {
        self.run_head(activation, side, seed, false).map(|(out, _)| out)
    }

    /// [`Explainer::head`], also returning the tape of a split head (for
    /// [`Explainer::backward`] on the same activations): no extra run, only its copy.
    pub fn head_keeping_tape(
        &mut self,
        activation: ArrayViewD<'_, f32>,
        side: &[ArrayViewD<'_, f32>],
        seed: ArrayView2<'_, f32>,
    ) -> Result<(HeadOutput, Option<Tape>), EngineError> {
        self.run_head(activation, side, seed, true)
    }

    fn run_head(
        &mut self,
        activation: ArrayViewD<'_, f32>,
        side: &[ArrayViewD<'_, f32>],
        seed: ArrayView2<'_, f32>,
        keep_tape: bool,
    ) -> Result<(HeadOutput, Option<Tape>), EngineError> {
        self.check_seed(seed)?;
        let names = &self.plan.names;
        let feeds = head_feeds(names, activation, side, Some(seed), |_| true);
        let wanted = [names.score.as_str(), names.gradient.as_str()];
        let tape = self.split.as_ref().filter(|_| keep_tape).map(|s| &s.tape);
        let keep: Vec<&str> = tape.iter().flat_map(|t| t.iter().map(String::as_str)).collect();
        let (outs, kept) = self.head.open(&self.path)?.run_keeping(&feeds, &[], &wanted, &keep)?;
        let mut outs = outs.into_iter();
        let out = HeadOutput { scores: outs.next().expect("scores"), gradient: outs.next().expect("gradient") };
        let tape = tape.map(|t| Tape { scores: out.scores.clone(), values: t.iter().cloned().zip(kept).collect() });
        Ok((out, tape))
    }

    /// The score vectors of a batch of activations, without any gradient (Ablation-CAM's
    /// ablated copies): the forward part of a split head, or the whole head with a zero seed.
    pub fn scores(
        &mut self,
        activation: ArrayViewD<'_, f32>,
        side: &[ArrayViewD<'_, f32>],
    ) -> Result<ArrayD<f32>, EngineError> {
        let path = self.path.clone();
        let Some(SplitSessions { forward, .. }) = self.split.as_deref_mut() else {
            let n = activation.shape().first().copied().unwrap_or(1);
            let zeros = ndarray::Array2::<f32>::zeros((n, self.plan.classes));
            return Ok(self.head(activation, side, zeros.view())?.scores);
        };
        let names = &self.plan.names;
        let feeds = head_feeds(names, activation, side, None, |_| true);
        let (mut floats, _) = forward.open(&path)?.run_keeping(&feeds, &[], &[names.score.as_str()], &[])?;
        Ok(floats.remove(0))
    }

    /// The gradient for `seed` from a split head's tape of the same activations.
    pub fn backward(
        &mut self,
        tape: &Tape,
        activation: ArrayViewD<'_, f32>,
        side: &[ArrayViewD<'_, f32>],
        seed: ArrayView2<'_, f32>,
    ) -> Result<ArrayD<f32>, EngineError> {
        self.run_on_tape(false, tape, activation, side, seed)
    }

    /// Whether [`Explainer::pooled_backward`] can run: a split head whose backward also
    /// exists in its pooled form.
    pub fn pools(&self) -> bool {
        self.split.as_ref().is_some_and(|s| s.pooled.is_some() && s.whole_pooled.is_some())
    }

    /// Open the pooled graphs' sessions ahead of need (the inspector does it in the
    /// background, so that its first Grad-CAM maps do not pay for them).
    pub fn prepare_pooled(&mut self) -> Result<(), EngineError> {
        let path = self.path.clone();
        if let Some(split) = self.split.as_deref_mut() {
            for s in [&mut split.pooled, &mut split.whole_pooled].into_iter().flatten() {
                s.open(&path)?;
            }
        }
        Ok(())
    }

    /// Open one more of the sessions that open on first use (the pooled ones first, then the
    /// whole head and the backward that the other gradient methods run; not the forward part,
    /// which only Ablation-CAM runs). Returns whether one was opened: the inspector calls it
    /// while idle, one session per turn, so that switching to another method does not pay for
    /// a session (80 ms on a ViT-B/16) and a new image waits for at most one.
    pub fn open_next(&mut self) -> Result<bool, EngineError> {
        let path = self.path.clone();
        let mut pending: Vec<&mut LazySession> = Vec::new();
        if let Some(split) = self.split.as_deref_mut() {
            pending.extend([&mut split.pooled, &mut split.whole_pooled].into_iter().flatten());
            pending.push(&mut self.head);
            pending.push(&mut split.backward);
        }
        match pending.into_iter().find(|s| !s.is_open()) {
            Some(s) => s.open(&path).map(|_| true),
            None => Ok(false),
        }
    }

    /// [`Explainer::head_keeping_tape`] for Grad-CAM: the score vector and the channel
    /// weights (the gradient's mean over the map's positions), and the tape when `keep_tape`.
    pub fn head_pooled(
        &mut self,
        activation: ArrayViewD<'_, f32>,
        side: &[ArrayViewD<'_, f32>],
        seed: ArrayView2<'_, f32>,
        keep_tape: bool,
    ) -> Result<PooledHead, EngineError> {
        self.check_seed(seed)?;
        let path = self.path.clone();
        let names = &self.plan.names;
        let Some(SplitSessions { whole_pooled: Some(whole), tape, .. }) = self.split.as_deref_mut() else {
            return Err(EngineError::Run {
                path,
                detail: "internal: Grad-CAM weights asked of a head without a pooled form".into(),
            });
        };
        let feeds = head_feeds(names, activation, side, Some(seed), |_| true);
        let session = whole.open(&path)?;
        let weights = session.output_names().last().cloned().unwrap_or_default();
        let wanted = [names.score.as_str(), weights.as_str()];
        let keep: Vec<&str> = if keep_tape { tape.iter().map(String::as_str).collect() } else { Vec::new() };
        let (outs, kept) = session.run_keeping(&feeds, &[], &wanted, &keep)?;
        let mut outs = outs.into_iter();
        let (scores, weights) = (outs.next().expect("scores"), outs.next().expect("weights"));
        let tape = keep_tape.then(|| Tape { scores: scores.clone(), values: tape.iter().cloned().zip(kept).collect() });
        Ok(PooledHead { scores, weights, tape })
    }

    /// Grad-CAM's channel weights `[N, C]` (the gradient's mean over the map's positions)
    /// for `seed`, from a split head's tape of the same activations: [`Explainer::backward`]
    /// without its last product over every position.
    pub fn pooled_backward(
        &mut self,
        tape: &Tape,
        activation: ArrayViewD<'_, f32>,
        side: &[ArrayViewD<'_, f32>],
        seed: ArrayView2<'_, f32>,
    ) -> Result<ArrayD<f32>, EngineError> {
        self.run_on_tape(true, tape, activation, side, seed)
    }

    /// Run the backward, or its `pooled` form, on a tape: both read the same inputs and give
    /// one output (the gradient, or the channel weights).
    fn run_on_tape(
        &mut self,
        pooled: bool,
        tape: &Tape,
        activation: ArrayViewD<'_, f32>,
        side: &[ArrayViewD<'_, f32>],
        seed: ArrayView2<'_, f32>,
    ) -> Result<ArrayD<f32>, EngineError> {
        self.check_seed(seed)?;
        let path = self.path.clone();
        let names = &self.plan.names;
        let (session, backward_inputs) = match self.split.as_deref_mut() {
            Some(SplitSessions { pooled: Some(p), backward_inputs, .. }) if pooled => (p, backward_inputs),
            Some(SplitSessions { backward, backward_inputs, .. }) if !pooled => (backward, backward_inputs),
            _ => {
                let detail = if pooled {
                    "internal: Grad-CAM weights asked of a head without a pooled backward"
                } else {
                    "internal: a tape given to a head that is not split"
                };
                return Err(EngineError::Run { path, detail: detail.into() });
            }
        };
        let feeds = head_feeds(names, activation, side, Some(seed), |n| backward_inputs.iter().any(|b| b == n));
        let values: Vec<(&str, &DynValue)> = tape.values.iter().map(|(n, v)| (n.as_str(), v)).collect();
        let session = session.open(&path)?;
        let output = session.output_names().first().cloned().unwrap_or_default();
        let (mut outs, _) = session.run_keeping(&feeds, &values, &[output.as_str()], &[])?;
        Ok(outs.remove(0))
    }

    fn check_seed(&self, seed: ArrayView2<'_, f32>) -> Result<(), EngineError> {
        if seed.ncols() != self.plan.classes {
            return Err(EngineError::Run {
                path: self.path.clone(),
                detail: format!("seed has {} columns, the model has {} classes", seed.ncols(), self.plan.classes),
            });
        }
        Ok(())
    }
}

/// A head graph's float inputs by name: the activations and side tensors the graph reads
/// (`reads`), then the seed.
fn head_feeds<'a>(
    names: &'a GraphNames,
    activation: ArrayViewD<'a, f32>,
    side: &'a [ArrayViewD<'a, f32>],
    seed: Option<ArrayView2<'a, f32>>,
    reads: impl Fn(&str) -> bool,
) -> Vec<(&'a str, ArrayViewD<'a, f32>)> {
    let mut feeds = Vec::with_capacity(side.len() + 2);
    if reads(&names.activation) {
        feeds.push((names.activation.as_str(), activation));
    }
    for (n, s) in names.side.iter().zip(side) {
        if reads(n) {
            feeds.push((n.as_str(), s.view()));
        }
    }
    if let Some(seed) = seed {
        feeds.push((names.seed.as_str(), seed.into_dyn()));
    }
    feeds
}
