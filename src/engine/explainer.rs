//! Runs the body and head graphs of one target layer.

use std::path::{Path, PathBuf};

use ndarray::{ArrayD, ArrayView2, ArrayViewD};

use super::{EngineError, GraphSession, Provider, SessionOptions};
use crate::grad::{Analysis, Candidate, GradError, Plan, ScoreKind};

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

/// Sessions for one model, target layer and score kind.
pub struct Explainer {
    pub plan: Plan,
    body: GraphSession,
    head: GraphSession,
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
        let body = GraphSession::from_bytes(&plan.body_bytes(), label, opts)?;
        let head = GraphSession::from_model(&plan.head(), label, opts)?;
        let body_outputs = plan.body_outputs();
        // The sessions hold the graphs now; the plan's model copy would only cost memory.
        let mut plan = plan;
        plan.release_model();
        Ok(Self { plan, body, head, body_outputs, path: label.to_owned(), gradient_error })
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

    /// Run the head: scores and gradients for `seed` (`[N, classes]`, one row per image).
    pub fn head(
        &mut self,
        activation: ArrayViewD<'_, f32>,
        side: &[ArrayViewD<'_, f32>],
        seed: ArrayView2<'_, f32>,
    ) -> Result<HeadOutput, EngineError> {
        if seed.ncols() != self.plan.classes {
            return Err(EngineError::Run {
                path: self.path.clone(),
                detail: format!("seed has {} columns, the model has {} classes", seed.ncols(), self.plan.classes),
            });
        }
        let names = self.plan.names.clone();
        let mut feeds: Vec<(&str, ArrayViewD<'_, f32>)> = vec![(names.activation.as_str(), activation)];
        for (n, s) in names.side.iter().zip(side) {
            feeds.push((n.as_str(), s.view()));
        }
        feeds.push((names.seed.as_str(), seed.into_dyn()));
        let mut outs = self.head.run(&feeds, &[names.score.as_str(), names.gradient.as_str()])?.into_iter();
        Ok(HeadOutput { scores: outs.next().expect("scores"), gradient: outs.next().expect("gradient") })
    }
}
