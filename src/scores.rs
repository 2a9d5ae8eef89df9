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

impl ClassScores {
    /// From a model's raw output row: probabilities as is, or softmax of logits.
    pub fn from_output(row: &[f32], outputs_probabilities: bool) -> Self {
        if outputs_probabilities {
            Self { logits: None, probabilities: row.to_vec() }
        } else {
            Self { logits: Some(row.to_vec()), probabilities: softmax(row) }
        }
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

    fn top_k_indices(&self, k: usize) -> Vec<usize> {
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
        let s = ClassScores::from_output(&[0.0, 2.0, 2.0, 1.0], false);
        let labels = Labels::numbered(4);
        let top: Vec<usize> = s.top_k(3, &labels).iter().map(|p| p.index).collect();
        assert_eq!(top, vec![1, 2, 3]);
        assert_eq!(s.argmax(), 1);
        assert_eq!(s.top_k(10, &labels).len(), 4);
    }
}
