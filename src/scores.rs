//! Class scores of one image and the top-k view of them.

use serde::{Deserialize, Serialize};

use crate::model::Labels;

/// Scores of one image over all classes.
#[derive(Debug, Clone, PartialEq)]
pub struct ClassScores {
    /// Pre-softmax scores, when the model exposes them.
    pub logits: Option<Vec<f32>>,
    /// Probabilities (softmax of the logits, or the model's own output).
    pub probabilities: Vec<f32>,
}

/// What a classifier's output row means, and so how it becomes class probabilities and how
/// a class is differentiated.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(tag = "kind", rename_all = "lowercase")]
pub enum Head {
    /// One softmax over the classes (single-label). `probabilities`: the output is already
    /// softmaxed; otherwise it holds logits (or log-probabilities, whose softmax is the same).
    Softmax { probabilities: bool },
    /// Independent sigmoids, one per class (multi-label: a chest X-ray can show several
    /// findings). Each class's probability is its own, and they need not sum to 1.
    Sigmoid { probabilities: bool },
    /// One output for the positive class; camscope shows two classes, the complement
    /// (index 0) and the positive class (index 1).
    Binary { probabilities: bool },
}

impl Default for Head {
    fn default() -> Self {
        Head::Softmax { probabilities: false }
    }
}

impl Head {
    /// Whether the model's output row already holds probabilities.
    pub fn outputs_probabilities(self) -> bool {
        match self {
            Head::Softmax { probabilities } | Head::Sigmoid { probabilities } | Head::Binary { probabilities } => {
                probabilities
            }
        }
    }

    /// Whether probabilities come from sigmoids (multi-label or binary) rather than a softmax.
    pub fn is_sigmoid(self) -> bool {
        !matches!(self, Head::Softmax { .. })
    }

    /// Classes a user sees for a model with `outputs` scores (a binary head shows two).
    pub fn classes(self, outputs: usize) -> usize {
        match self {
            Head::Binary { .. } => 2,
            _ => outputs,
        }
    }

    /// The gradient seed over the model's outputs for a seed over the classes a user sees.
    /// A binary head's complement scores `-z` (logit) or `1 - p`, so class weights `s0, s1`
    /// differentiate as `(s1 - s0)` on its one output.
    pub fn output_seed(self, seed: &[f32]) -> Vec<f32> {
        match self {
            Head::Binary { .. } => vec![seed.get(1).copied().unwrap_or(0.0) - seed.first().copied().unwrap_or(0.0)],
            _ => seed.to_vec(),
        }
    }

    /// A short name for status lines and reports.
    pub fn describe(self) -> &'static str {
        match self {
            Head::Softmax { .. } => "softmax",
            Head::Sigmoid { .. } => "multi-label sigmoid",
            Head::Binary { .. } => "binary",
        }
    }
}

impl ClassScores {
    /// From a model's raw output row, read as `head` says.
    pub fn from_output(row: &[f32], head: Head) -> Self {
        match head {
            Head::Softmax { probabilities: true } | Head::Sigmoid { probabilities: true } => {
                Self { logits: None, probabilities: row.to_vec() }
            }
            Head::Softmax { probabilities: false } => Self { logits: Some(row.to_vec()), probabilities: softmax(row) },
            Head::Sigmoid { probabilities: false } => {
                Self { logits: Some(row.to_vec()), probabilities: row.iter().map(|&z| sigmoid(z)).collect() }
            }
            Head::Binary { probabilities } => {
                let v = row.first().copied().unwrap_or(0.0);
                let p = if probabilities { v } else { sigmoid(v) };
                Self { logits: (!probabilities).then(|| vec![-v, v]), probabilities: vec![1.0 - p, p] }
            }
        }
    }

    /// The values the model gave: the logits when it outputs logits, else the probabilities.
    pub fn raw(&self) -> &[f32] {
        self.logits.as_deref().unwrap_or(&self.probabilities)
    }

    /// The `k` most probable classes, most probable first (ties by lower index).
    pub fn top_k(&self, k: usize, labels: &Labels) -> Vec<Prediction> {
        self.top_k_indices(k).into_iter().map(|i| self.prediction(i, labels)).collect()
    }

    /// One class's entry.
    pub fn prediction(&self, index: usize, labels: &Labels) -> Prediction {
        Prediction {
            index,
            label: labels.name(index),
            probability: self.probabilities[index],
            logit: self.logits.as_ref().map(|l| l[index]),
        }
    }

    /// Index of the most probable class.
    pub fn argmax(&self) -> usize {
        self.top_k_indices(1)[0]
    }

    /// Indices of the `k` most probable classes, most probable first (ties by lower index).
    pub fn top_k_indices(&self, k: usize) -> Vec<usize> {
        let mut order: Vec<usize> = (0..self.probabilities.len()).collect();
        order.sort_by(|&a, &b| self.probabilities[b].total_cmp(&self.probabilities[a]).then(a.cmp(&b)));
        order.truncate(k);
        order
    }
}

/// One class of one image.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Prediction {
    pub index: usize,
    pub label: String,
    pub probability: f32,
    #[serde(skip_serializing_if = "Option::is_none", default)]
    pub logit: Option<f32>,
}

/// The logistic function, without overflow for large |z|.
pub fn sigmoid(z: f32) -> f32 {
    if z >= 0.0 {
        1.0 / (1.0 + (-z).exp())
    } else {
        let e = z.exp();
        e / (1.0 + e)
    }
}

/// Numerically stable softmax.
pub fn softmax(logits: &[f32]) -> Vec<f32> {
    let max = logits.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    let exps: Vec<f32> = logits.iter().map(|&x| (x - max).exp()).collect();
    let sum: f32 = exps.iter().sum();
    exps.into_iter().map(|e| e / sum).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn softmax_is_stable_and_normalised() {
        let p = softmax(&[1000.0, 1000.0, -1000.0]);
        assert!((p[0] - 0.5).abs() < 1e-6 && (p[1] - 0.5).abs() < 1e-6 && p[2] == 0.0);
    }

    #[test]
    fn top_k_orders_by_probability_then_index() {
        let s = ClassScores::from_output(&[0.0, 2.0, 2.0, 1.0], Head::default());
        let labels = Labels::numbered(4);
        let top: Vec<usize> = s.top_k(3, &labels).iter().map(|p| p.index).collect();
        assert_eq!(top, vec![1, 2, 3]);
        assert_eq!(s.argmax(), 1);
        assert_eq!(s.top_k(10, &labels).len(), 4);
    }

    #[test]
    fn sigmoid_and_binary_heads_give_each_class_its_own_probability() {
        let multi = ClassScores::from_output(&[0.0, 2.0, -30.0], Head::Sigmoid { probabilities: false });
        assert_eq!(multi.probabilities[0], 0.5);
        assert!((multi.probabilities[1] - 0.880_797).abs() < 1e-6);
        assert!(multi.probabilities[2] > 0.0 && multi.probabilities[2] < 1e-12);
        let bin = ClassScores::from_output(&[2.0], Head::Binary { probabilities: false });
        assert_eq!(bin.logits, Some(vec![-2.0, 2.0]));
        assert!((bin.probabilities[0] + bin.probabilities[1] - 1.0).abs() < 1e-7);
        assert!((bin.probabilities[1] - 0.880_797).abs() < 1e-6);
        let given = ClassScores::from_output(&[0.25], Head::Binary { probabilities: true });
        assert_eq!(given.probabilities, vec![0.75, 0.25]);
        let b = Head::Binary { probabilities: false };
        assert_eq!((b.classes(1), b.output_seed(&[1.0, 0.0]), b.output_seed(&[0.0, 1.0])), (2, vec![-1.0], vec![1.0]));
        assert_eq!(sigmoid(-1000.0), 0.0);
        assert_eq!(sigmoid(1000.0), 1.0);
    }
}
