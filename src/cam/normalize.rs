//! Normalising maps to [0, 1] without ever dividing by zero or producing NaN.
//!
//! The Keras tutorial divides by the map's maximum and returns NaN (or -0) when the map is all zero or all negative;
//! pytorch-grad-cam's `scale_cam_image` divides by `1e-7 + max` and silently returns zeros. camscope normalises
//! exactly (the maximum becomes 1) and says why a map carries no information ([`MapStatus`]), so the interface can
//! show "no evidence for this class" instead of a blank or broken heatmap. [`scale_like_peer`] is the peer's formula,
//! for comparisons.

use ndarray::{Array2, ArrayView2};

use super::RawMap;

/// Whether a normalised map carries information, and if not, why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MapStatus {
    /// The map varies: normalised so its minimum is 0 and its maximum 1.
    Ok,
    /// Every value was exactly zero before the ReLU (for instance all gradients were 0). Normalised map: zeros.
    AllZero,
    /// Nothing was positive before the ReLU (some value negative, none above 0): the explained score decreases
    /// wherever the map looks, e.g. a contrastive class b dominating a everywhere. Normalised map: zeros.
    AllNegative,
    /// A positive constant after the ReLU: every position counts the same. Normalised map: zeros (as the peer's).
    Constant,
    /// No finite value left: the model's scores, activations or gradients were NaN or infinite (a model that
    /// outputs NaN). Normalised map: zeros.
    NotFinite,
}

impl MapStatus {
    /// A short phrase for user messages.
    pub fn describe(self) -> &'static str {
        match self {
            MapStatus::Ok => "ok",
            MapStatus::AllZero => "the map is zero everywhere (no gradient reached the target layer)",
            MapStatus::AllNegative => "nothing in the image increases this score (the map was negative everywhere)",
            MapStatus::Constant => "the map is the same everywhere (no location stands out)",
            MapStatus::NotFinite => {
                "the map is NaN or infinite everywhere (the model's scores or gradients are not finite for this image)"
            }
        }
    }
}

/// A map scaled to [0, 1], with what the raw map looked like.
#[derive(Debug, Clone, PartialEq)]
pub struct NormalizedMap {
    /// Values in [0, 1], never NaN; all zeros unless `status` is [`MapStatus::Ok`].
    pub map: Array2<f32>,
    pub status: MapStatus,
    /// Smallest value of the raw map before the ReLU.
    pub raw_min: f32,
    /// Largest value of the raw map before the ReLU.
    pub raw_max: f32,
    /// Non-finite raw values that were replaced by 0.
    pub non_finite: usize,
}

/// Min-max normalise a method's map: `(x - min) / (max - min)` over the map after the ReLU, so the result spans
/// exactly [0, 1] when the map varies. Differs from the peer's `scale_cam_image` by its `1e-7` only, that is by
/// about `1e-7 / (max - min)` relative.
pub fn normalize(raw: &RawMap) -> NormalizedMap {
    let (lo, hi) = raw.map.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(lo, hi), &v| (lo.min(v), hi.max(v)));
    let status = if raw.non_finite > 0 && raw.non_finite == raw.map.len() {
        MapStatus::NotFinite
    } else if raw.map.is_empty() || hi <= 0.0 {
        if raw.pre_relu_min < 0.0 { MapStatus::AllNegative } else { MapStatus::AllZero }
    } else if hi == lo {
        MapStatus::Constant
    } else {
        MapStatus::Ok
    };
    let map = match status {
        // hi > lo and both finite (RawMap holds finite values only), so the range is positive.
        MapStatus::Ok => {
            let range = hi - lo;
            raw.map.mapv(|v| ((v - lo) / range).clamp(0.0, 1.0))
        }
        _ => Array2::zeros(raw.map.raw_dim()),
    };
    NormalizedMap { map, status, raw_min: raw.pre_relu_min, raw_max: raw.pre_relu_max, non_finite: raw.non_finite }
}

/// pytorch-grad-cam's `scale_cam_image` at the map's own size: `(x - min) / (1e-7 + max(x - min))`, in f32 like
/// NumPy. The maximum comes out slightly below 1 (`r / (r + 1e-7)` for a range `r`); a constant map gives zeros.
/// Unlike the peer, NaN and infinities are read as 0, so the result is never NaN.
pub fn scale_like_peer(map: ArrayView2<'_, f32>) -> Array2<f32> {
    let clean = map.mapv(|v| if v.is_finite() { v } else { 0.0 });
    let lo = clean.iter().copied().fold(f32::INFINITY, f32::min);
    let shifted = clean.mapv(|v| v - lo);
    let hi = shifted.iter().copied().fold(0.0f32, f32::max);
    let denom = 1e-7f32 + hi;
    shifted.mapv(|v| v / denom)
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    fn raw(pre: Array2<f32>) -> RawMap {
        RawMap::from_pre_relu(pre)
    }

    #[test]
    fn a_map_with_no_finite_value_says_so() {
        let n = normalize(&raw(array![[f32::NAN, f32::INFINITY], [f32::NAN, f32::NEG_INFINITY]]));
        assert_eq!((n.status, n.non_finite), (MapStatus::NotFinite, 4));
        assert!(n.map.iter().all(|v| *v == 0.0));
        // One finite value left: the usual statuses apply.
        assert_eq!(normalize(&raw(array![[f32::NAN, 0.0]])).status, MapStatus::AllZero);
    }

    #[test]
    fn varying_map_spans_zero_to_one() {
        let n = normalize(&raw(array![[-1.0, 0.5], [1.5, 2.5]]));
        // After the ReLU: [0, 0.5, 1.5, 2.5] -> / 2.5
        assert_eq!(n.status, MapStatus::Ok);
        assert_eq!(n.map, array![[0.0, 0.2], [0.6, 1.0]]);
        assert_eq!((n.raw_min, n.raw_max), (-1.0, 2.5));
    }

    #[test]
    fn positive_offset_is_removed() {
        let n = normalize(&raw(array![[2.0, 3.0], [4.0, 6.0]]));
        assert_eq!(n.map, array![[0.0, 0.25], [0.5, 1.0]]);
    }

    #[test]
    fn all_zero_map_is_reported_not_divided() {
        let n = normalize(&raw(Array2::zeros((3, 3))));
        assert_eq!(n.status, MapStatus::AllZero);
        assert_eq!(n.map, Array2::<f32>::zeros((3, 3)));
    }

    #[test]
    fn all_negative_map_is_reported() {
        let n = normalize(&raw(array![[-1.0, -2.0], [-0.5, -3.0]]));
        assert_eq!(n.status, MapStatus::AllNegative);
        assert_eq!(n.map, Array2::<f32>::zeros((2, 2)));
        assert!(n.map.iter().all(|v| v.to_bits() == 0), "no -0.0");
        assert_eq!((n.raw_min, n.raw_max), (-3.0, -0.5));
        // Zero and negative values, nothing positive: still "all negative" for the user.
        assert_eq!(normalize(&raw(array![[0.0, -1.0]])).status, MapStatus::AllNegative);
    }

    #[test]
    fn constant_map_is_reported() {
        let n = normalize(&raw(Array2::from_elem((2, 3), 0.7)));
        assert_eq!(n.status, MapStatus::Constant);
        assert_eq!(n.map, Array2::<f32>::zeros((2, 3)));
    }

    #[test]
    fn nan_never_comes_out() {
        let n = normalize(&raw(array![[f32::NAN, 1.0], [f32::NEG_INFINITY, 3.0]]));
        assert_eq!(n.status, MapStatus::Ok);
        assert_eq!(n.non_finite, 2);
        assert_eq!(n.map, array![[0.0, 1.0 / 3.0], [0.0, 1.0]]);
        let all_nan = normalize(&raw(Array2::from_elem((2, 2), f32::NAN)));
        // Not "zero everywhere (no gradient reached the layer)": that sent users looking for a
        // graph problem when their model outputs NaN.
        assert_eq!(all_nan.status, MapStatus::NotFinite);
        assert!(all_nan.map.iter().all(|v| *v == 0.0));
        let empty = normalize(&raw(Array2::zeros((0, 0))));
        assert_eq!(empty.status, MapStatus::AllZero);
    }

    #[test]
    fn tiny_ranges_still_reach_one() {
        // Probability scores near 1 give gradients ~1e-9; the peer's 1e-7 would cap such a map near 0.01.
        let n = normalize(&raw(array![[0.0, 1e-9], [2e-9, 4e-9]]));
        assert_eq!(n.status, MapStatus::Ok);
        assert_eq!(n.map[[1, 1]], 1.0);
        assert!((n.map[[0, 1]] - 0.25).abs() < 1e-6);
        let peer = scale_like_peer(array![[0.0, 1e-9], [2e-9, 4e-9]].view());
        assert!((peer[[1, 1]] - 4e-9 / (1e-7 + 4e-9)).abs() < 1e-6);
    }

    #[test]
    fn peer_scaling_uses_its_epsilon() {
        let s = scale_like_peer(array![[1.0, 2.0], [3.0, 5.0]].view());
        let d = 1e-7f32 + 4.0;
        assert_eq!(s, array![[0.0, 1.0 / d], [2.0 / d, 4.0 / d]]);
        assert_eq!(scale_like_peer(Array2::from_elem((2, 2), 3.0).view()), Array2::<f32>::zeros((2, 2)));
        assert_eq!(scale_like_peer(array![[f32::NAN, 1.0]].view()), array![[0.0, 1.0 / (1e-7f32 + 1.0)]]);
    }
}
