//! Score-CAM (Wang et al. 2020), the pure pieces; the engine runs the model.
//!
//! The peer (pytorch-grad-cam 1.5.7, `score_cam.py`), for one image and one class:
//! 1. each activation channel `A_c` (`[h, w]`) is upsampled to the input size with
//!    `torch.nn.UpsamplingBilinear2d` (bilinear, `align_corners=True`) and min-max scaled:
//!    `mask_c = (up - min) / (max - min + 1e-8)` ([`mask`]);
//! 2. the model runs on `input · mask_c` for every channel (the mask multiplies all colour channels of the
//!    normalised input tensor), in batches (16 by default), and the class's pre-softmax score is read from each
//!    output ([`masked_inputs`] builds such a batch);
//! 3. the weights are the softmax of those `C` scores over the channels ([`weights`]);
//! 4. map `= ReLU(Σ_c w_c A_c)` ([`super::weighted_map`]).

use std::ops::Range;

use ndarray::{Array1, Array2, Array4, ArrayView2, ArrayView3, ArrayViewMut3, Axis};

use super::{CamError, RawMap, weighted_map};
use crate::model::Layout;
use crate::render::resize::resize_align_corners;

/// Channel `c`'s mask at the input size `[height, width]`, values in [0, 1].
pub fn mask(channel: ArrayView2<'_, f32>, height: usize, width: usize) -> Array2<f32> {
    let up = resize_align_corners(channel, height, width);
    let lo = up.iter().copied().filter(|v| v.is_finite()).fold(f32::INFINITY, f32::min);
    let hi = up.iter().copied().filter(|v| v.is_finite()).fold(f32::NEG_INFINITY, f32::max);
    if lo > hi {
        // No finite value at all.
        return Array2::zeros((height, width));
    }
    // The peer's `+ 1e-8` keeps a constant channel from dividing by zero: its mask is all 0.
    let denom = hi - lo + 1e-8;
    up.mapv(|v| if v.is_finite() { (v - lo) / denom } else { 0.0 })
}

/// The batch of masked inputs for `channels` of `a`: `[channels.len(), …input's shape]`, each `input · mask_c`.
///
/// `input` is one preprocessed image in the model's own layout (`[3, H, W]` for NCHW, `[H, W, 3]` for NHWC; any
/// number of colour channels); masks are made at its `H × W`.
pub fn masked_inputs(
    input: ArrayView3<'_, f32>,
    layout: Layout,
    a: ArrayView3<'_, f32>,
    channels: Range<usize>,
) -> Result<Array4<f32>, CamError> {
    if channels.end > a.dim().0 || channels.start > channels.end {
        return Err(CamError::ChannelCount { what: "channel range end", expected: a.dim().0, got: channels.end });
    }
    let (d0, d1, d2) = input.dim();
    let mut batch = Array4::zeros((channels.len(), d0, d1, d2));
    for (out, c) in batch.outer_iter_mut().zip(channels) {
        write_masked_input(input, layout, a.index_axis(Axis(0), c), out);
    }
    Ok(batch)
}

/// Write `input · mask(channel)` into `out` (the input's shape). The engine fills a reused
/// batch buffer with it, from several threads: a fresh buffer per mask cost more than the
/// model run on a GPU.
pub fn write_masked_input(
    input: ArrayView3<'_, f32>,
    layout: Layout,
    channel: ArrayView2<'_, f32>,
    mut out: ArrayViewMut3<'_, f32>,
) {
    let (height, width) = match layout {
        Layout::Nchw => (input.dim().1, input.dim().2),
        Layout::Nhwc => (input.dim().0, input.dim().1),
    };
    let m = mask(channel, height, width);
    match layout {
        Layout::Nchw => {
            for (mut plane, src) in out.outer_iter_mut().zip(input.outer_iter()) {
                ndarray::Zip::from(&mut plane).and(&src).and(&m).for_each(|o, &x, &k| *o = x * k);
            }
        }
        Layout::Nhwc => {
            ndarray::Zip::from(out.lanes_mut(Axis(2)))
                .and(input.lanes(Axis(2)))
                .and(&m)
                .for_each(|mut o, x, &k| o.zip_mut_with(&x, |o, &x| *o = x * k));
        }
    }
}

/// Score-CAM's channel weights: the softmax over channels of the class score of each masked input (in channel
/// order). Numerically stable (the maximum is subtracted first); non-finite scores count as the lowest score.
pub fn weights(scores: &[f32]) -> Array1<f32> {
    let finite = |s: f32| if s.is_finite() { s } else { f32::MIN };
    let max = scores.iter().map(|&s| finite(s)).fold(f32::MIN, f32::max);
    let exps: Vec<f64> = scores.iter().map(|&s| f64::from(finite(s) - max).exp()).collect();
    let sum: f64 = exps.iter().sum();
    exps.into_iter().map(|e| (e / sum) as f32).collect()
}

/// The Score-CAM map from the activations and the per-channel scores.
pub fn score_cam(a: ArrayView3<'_, f32>, scores: &[f32]) -> Result<RawMap, CamError> {
    if scores.len() != a.dim().0 {
        return Err(CamError::ChannelCount { what: "Score-CAM scores", expected: a.dim().0, got: scores.len() });
    }
    weighted_map(a, weights(scores).view())
}

#[cfg(test)]
mod tests {
    use ndarray::{Array3, array};

    use super::*;

    #[test]
    fn mask_is_upsampled_with_aligned_corners_then_scaled() {
        // [[1, 3]] -> 1x3 with corners aligned: [1, 2, 3]; min-max: [0, 0.5, 1] (within the 1e-8).
        let m = mask(array![[1.0, 3.0]].view(), 1, 3);
        for (x, y) in m.iter().zip([0.0, 0.5, 1.0]) {
            assert!((x - y).abs() < 1e-7, "{m:?}");
        }
        // A constant channel gives an all-zero mask, never NaN.
        assert_eq!(mask(Array2::from_elem((2, 2), 4.0).view(), 3, 3), Array2::<f32>::zeros((3, 3)));
        assert_eq!(mask(Array2::from_elem((2, 2), f32::NAN).view(), 2, 2), Array2::<f32>::zeros((2, 2)));
    }

    #[test]
    fn masked_inputs_multiply_every_colour_channel_in_either_layout() {
        // Two activation channels of 1x2, input 2 colours x 1x3 (NCHW) and the same as HWC.
        let a = Array3::from_shape_vec((2, 1, 2), vec![0.0, 1.0, 5.0, 1.0]).unwrap();
        let nchw = Array3::from_shape_vec((2, 1, 3), vec![1.0, 2.0, 3.0, 10.0, 20.0, 30.0]).unwrap();
        let b = masked_inputs(nchw.view(), Layout::Nchw, a.view(), 0..2).unwrap();
        assert_eq!(b.dim(), (2, 2, 1, 3));
        // Channel 0 mask [0, 0.5, 1]; channel 1 (5 -> 1) mask [1, 0.5, 0].
        let want0 = [0.0, 1.0, 3.0, 0.0, 10.0, 30.0];
        let want1 = [1.0, 1.0, 0.0, 10.0, 10.0, 0.0];
        for (got, want) in b.outer_iter().zip([want0, want1]) {
            for (x, y) in got.iter().zip(want) {
                assert!((x - y).abs() < 1e-6, "{got:?}");
            }
        }
        let nhwc = nchw.view().permuted_axes([1, 2, 0]).to_owned();
        let b2 = masked_inputs(nhwc.view(), Layout::Nhwc, a.view(), 1..2).unwrap();
        assert_eq!(b2.dim(), (1, 1, 3, 2));
        assert_eq!(b2.index_axis(Axis(0), 0), b.index_axis(Axis(0), 1).permuted_axes([1, 2, 0]));
        assert!(masked_inputs(nchw.view(), Layout::Nchw, a.view(), 1..3).is_err());
    }

    #[test]
    fn weights_are_a_softmax_over_channels() {
        let w = weights(&[0.0, 2f32.ln(), 1000.0 + 0.0]);
        assert!((w[2] - 1.0).abs() < 1e-6 && w[0] < 1e-30);
        let w = weights(&[0.0, 3f32.ln()]);
        assert!((w[0] - 0.25).abs() < 1e-7 && (w[1] - 0.75).abs() < 1e-7);
        let w = weights(&[f32::NAN, 1.0]);
        assert_eq!(w.to_vec(), vec![0.0, 1.0]);
    }

    #[test]
    fn map_by_hand() {
        // Scores (0, ln 3) -> weights (1/4, 3/4); A_0 = [4, 0], A_1 = [0, 4] -> [1, 3].
        let a = Array3::from_shape_vec((2, 1, 2), vec![4.0, 0.0, 0.0, 4.0]).unwrap();
        let m = score_cam(a.view(), &[0.0, 3f32.ln()]).unwrap();
        assert!((m.map[[0, 0]] - 1.0).abs() < 1e-6 && (m.map[[0, 1]] - 3.0).abs() < 1e-6);
        assert!(score_cam(a.view(), &[1.0]).is_err());
    }
}
