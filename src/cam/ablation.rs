//! Ablation-CAM (Desai & Ramaswamy 2020), the pure pieces; the engine runs the head of the model.
//!
//! The peer (pytorch-grad-cam 1.5.7, `ablation_cam.py` + `ablation_layer.py`), for one image and one class:
//! 1. the original class score `y` (pre-softmax) from an ordinary forward pass;
//! 2. for every channel `c`, the layers after the target layer run on `A` with channel `c` replaced by a constant
//!    ([`ablation_value`]): 0 when `min(A) == 0` (the usual post-ReLU case), else `min(A) - 1e7`; in batches of 32
//!    ([`ablated_batch`] builds one), giving scores `y_c`;
//! 3. the weights are the relative drops `(y - y_c) / y` ([`weights`]);
//! 4. map `= ReLU(Σ_c w_c A_c)` ([`super::weighted_map`]).
//!
//! A quirk of the peer left out on purpose: its `AblationLayer` recomputes `min` over the whole batch after each
//! ablation, so when `min(A) != 0` the i-th channel of a batch gets `min(A) - (i + 1)·1e7`. Any value that far
//! below the data has the same effect on a ReLU-like head, and only the stated rule is reproducible.

use std::ops::Range;

use ndarray::{Array1, Array4, ArrayView3, Axis};

use super::{CamError, RawMap, weighted_map};

/// How far below the smallest activation an ablated channel is set when 0 would not silence it.
pub const ABLATION_OFFSET: f32 = 1e7;

/// The constant an ablated channel is set to: 0 if `min(A) == 0`, else `min(A) - 1e7` (f32, as the peer).
pub fn ablation_value(a: ArrayView3<'_, f32>) -> f32 {
    let min = a.iter().copied().filter(|v| !v.is_nan()).fold(f32::INFINITY, f32::min);
    if min == 0.0 || !min.is_finite() { 0.0 } else { min - ABLATION_OFFSET }
}

/// A batch `[channels.len(), C, h, w]` of copies of `a`, copy `i` with channel `channels.start + i` set to
/// [`ablation_value`]. Channel first: the engine transposes for NHWC heads.
pub fn ablated_batch(a: ArrayView3<'_, f32>, channels: Range<usize>) -> Result<Array4<f32>, CamError> {
    let (c, h, w) = a.dim();
    if channels.end > c || channels.start > channels.end {
        return Err(CamError::ChannelCount { what: "channel range end", expected: c, got: channels.end });
    }
    let value = ablation_value(a);
    let mut batch = Array4::zeros((channels.len(), c, h, w));
    for (mut copy, ch) in batch.outer_iter_mut().zip(channels) {
        copy.assign(&a);
        copy.index_axis_mut(Axis(0), ch).fill(value);
    }
    Ok(batch)
}

/// Ablation-CAM's channel weights `(original - ablated_c) / original`, in f32 like the peer. The original score
/// must not be 0 (the relative drop is undefined) nor non-finite. As in the peer, a negative original score (a
/// logit below 0, e.g. a low-ranked class) flips the meaning: channels whose ablation *raises* the score get
/// positive weights. Non-finite ablated scores give weight 0.
pub fn weights(original: f32, ablated: &[f32]) -> Result<Array1<f32>, CamError> {
    if original == 0.0 || !original.is_finite() {
        return Err(CamError::ZeroScore { score: original });
    }
    Ok(ablated.iter().map(|&s| if s.is_finite() { (original - s) / original } else { 0.0 }).collect())
}

/// The Ablation-CAM map from the activations, the original score and the score with each channel ablated.
pub fn ablation_cam(a: ArrayView3<'_, f32>, original: f32, ablated: &[f32]) -> Result<RawMap, CamError> {
    if ablated.len() != a.dim().0 {
        return Err(CamError::ChannelCount { what: "Ablation-CAM scores", expected: a.dim().0, got: ablated.len() });
    }
    weighted_map(a, weights(original, ablated)?.view())
}

#[cfg(test)]
mod tests {
    use ndarray::{Array3, array};

    use super::*;

    #[test]
    fn ablation_value_follows_the_peer_rule() {
        let post_relu = Array3::from_shape_vec((2, 1, 2), vec![0.0, 1.0, 2.0, 3.0]).unwrap();
        assert_eq!(ablation_value(post_relu.view()), 0.0);
        let signed = Array3::from_shape_vec((1, 1, 2), vec![-0.5, 3.0]).unwrap();
        assert_eq!(ablation_value(signed.view()), -0.5 - 1e7);
        let positive = Array3::from_shape_vec((1, 1, 2), vec![0.5, 3.0]).unwrap();
        assert_eq!(ablation_value(positive.view()), 0.5f32 - 1e7);
    }

    #[test]
    fn batch_ablates_one_channel_per_copy() {
        let a = Array3::from_shape_vec((3, 1, 2), vec![1.0, 2.0, 3.0, 4.0, 0.0, 6.0]).unwrap();
        let b = ablated_batch(a.view(), 1..3).unwrap();
        assert_eq!(b.dim(), (2, 3, 1, 2));
        assert_eq!(b.index_axis(Axis(0), 0), array![[[1.0, 2.0]], [[0.0, 0.0]], [[0.0, 6.0]]]);
        assert_eq!(b.index_axis(Axis(0), 1), array![[[1.0, 2.0]], [[3.0, 4.0]], [[0.0, 0.0]]]);
        assert!(ablated_batch(a.view(), 2..4).is_err());
    }

    #[test]
    fn weights_are_relative_drops_and_zero_scores_are_refused() {
        let w = weights(4.0, &[3.0, 4.0, 6.0]).unwrap();
        assert_eq!(w.to_vec(), vec![0.25, 0.0, -0.5]);
        // A negative original score flips the sign, as in the peer: ablation raised the score from -2 to -1 (the
        // channel was working against the class), yet (-2 - -1) / -2 = +0.5.
        assert_eq!(weights(-2.0, &[-1.0]).unwrap().to_vec(), vec![0.5]);
        assert_eq!(weights(0.0, &[1.0]), Err(CamError::ZeroScore { score: 0.0 }));
        assert!(weights(f32::NAN, &[1.0]).is_err());
    }

    #[test]
    fn map_by_hand() {
        // y = 10; ablating channel 0 -> 8 (w 0.2), channel 1 -> 10 (w 0).
        let a = Array3::from_shape_vec((2, 1, 2), vec![5.0, 0.0, 7.0, 7.0]).unwrap();
        let m = ablation_cam(a.view(), 10.0, &[8.0, 10.0]).unwrap();
        assert_eq!(m.map, array![[1.0, 0.0]]);
        assert!(ablation_cam(a.view(), 10.0, &[8.0]).is_err());
    }
}
