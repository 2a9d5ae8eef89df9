//! Class activation maps as pure functions over `ndarray`: no I/O, no threads, no ONNX Runtime.
//!
//! Every method reproduces pytorch-grad-cam 1.5.7 (the peer camscope's results are compared with), for ONE image:
//! activations `A` and gradients `G = d score / d A` are `[C, h, w]` f32, channel first (the engine converts NHWC
//! models before calling). Each method returns a [`RawMap`]: the map at feature resolution after the ReLU the peer
//! applies to every method, plus the range before the ReLU so [`normalize()`] can tell an all-negative map from an
//! all-zero one. Gradients may have any sign (contrastive seeds, probability scores): nothing here assumes otherwise.
//!
//! Score-CAM and Ablation-CAM need batched model runs that only the engine can do; [`score`] and [`ablation`] give
//! the pure pieces (masks, ablated activations, weights) and [`weighted_map`] combines them.

pub mod ablation;
pub mod eigen;
pub mod gradient;
pub mod guided;
mod linalg;
pub mod normalize;
pub mod score;

use std::fmt;
use std::str::FromStr;

use ndarray::{Array2, ArrayView1, ArrayView3, Zip};

pub use self::eigen::eigen_cam;
pub use self::gradient::{grad_cam, grad_cam_plus_plus, hires_cam, layer_cam, xgrad_cam};
pub use self::normalize::{MapStatus, NormalizedMap, normalize, scale_like_peer};

/// Why a map could not be computed.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum CamError {
    #[error("{what} has shape {got:?} but {expected:?} was expected; this is a bug in the caller of camscope::cam")]
    Shape { what: &'static str, expected: Vec<usize>, got: Vec<usize> },
    #[error("{method} needs the gradients of the score with respect to the target layer; compute them first")]
    MissingGradients { method: Method },
    #[error("{method} needs batched model runs; the engine orchestrates it from the pieces in camscope::cam")]
    NeedsModelRuns { method: Method },
    #[error("{what}: got {got} values for {expected} channels")]
    ChannelCount { what: &'static str, expected: usize, got: usize },
    #[error(
        "the class score is {score} without ablation, so Ablation-CAM's relative drop (original - ablated) / original \
         is undefined; pick another class or method"
    )]
    ZeroScore { score: f32 },
    #[error("unknown method {name:?}; valid methods: {}", Method::NAMES.join(", "))]
    UnknownMethod { name: String },
}

/// The explanation methods camscope offers, by their CLI names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Method {
    /// Grad-CAM: channel weights are the spatial mean of the gradients.
    GradCam,
    /// Grad-CAM++: weights from second/third powers of the gradients (paper's eq. 19).
    GradCamPlusPlus,
    /// XGrad-CAM: weights are the activation-weighted gradient sums, per channel.
    XGradCam,
    /// HiResCAM: the elementwise product of gradients and activations, summed over channels.
    HiResCam,
    /// LayerCAM: like HiResCAM with only the positive gradients.
    LayerCam,
    /// Eigen-CAM: projection on the first principal component of the activations; no class, no gradients.
    EigenCam,
    /// Score-CAM: channels weighted by the softmax of the score of the input masked by each channel.
    ScoreCam,
    /// Ablation-CAM: channels weighted by the relative score drop when each channel is ablated.
    AblationCam,
    /// Guided Grad-CAM: Grad-CAM upsampled to the input, times the guided-backprop input gradient.
    GuidedGradCam,
}

/// What the engine must run for a method, beyond one forward pass of the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Needs {
    /// `d score / d A` at the target layer.
    pub gradients: bool,
    /// `d score / d input` (guided backprop through the whole network).
    pub input_gradients: bool,
    /// Extra batched forward runs.
    pub model_runs: ModelRuns,
}

/// Extra model runs a method needs, one per channel of the target layer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ModelRuns {
    /// None: the map comes from `A` (and `G`) alone.
    None,
    /// The whole model on `input * mask_c` for each channel `c` (Score-CAM): `C` full forward passes.
    MaskedInputs,
    /// Only the head (layers after the target) on `A` with channel `c` ablated (Ablation-CAM): `C` head passes.
    AblatedActivations,
}

impl Method {
    /// Every method, in the order of [`Method::NAMES`].
    pub const ALL: [Method; 9] = [
        Method::GradCam,
        Method::GradCamPlusPlus,
        Method::XGradCam,
        Method::HiResCam,
        Method::LayerCam,
        Method::EigenCam,
        Method::ScoreCam,
        Method::AblationCam,
        Method::GuidedGradCam,
    ];

    /// The CLI names, in the order of [`Method::ALL`].
    pub const NAMES: [&'static str; 9] = [
        "gradcam",
        "gradcam++",
        "xgradcam",
        "hirescam",
        "layercam",
        "eigencam",
        "scorecam",
        "ablationcam",
        "guided-gradcam",
    ];

    /// The CLI name.
    pub fn name(self) -> &'static str {
        Self::NAMES[Self::ALL.iter().position(|&m| m == self).expect("every method is in ALL")]
    }

    /// What the engine must compute before [`compute`] (or the Score/Ablation pieces) can make a map.
    pub fn needs(self) -> Needs {
        let (gradients, input_gradients, model_runs) = match self {
            Method::GradCam | Method::GradCamPlusPlus | Method::XGradCam | Method::HiResCam | Method::LayerCam => {
                (true, false, ModelRuns::None)
            }
            Method::EigenCam => (false, false, ModelRuns::None),
            Method::ScoreCam => (false, false, ModelRuns::MaskedInputs),
            Method::AblationCam => (false, false, ModelRuns::AblatedActivations),
            Method::GuidedGradCam => (true, true, ModelRuns::None),
        };
        Needs { gradients, input_gradients, model_runs }
    }

    /// Whether the map depends on the chosen class (Eigen-CAM's does not).
    pub fn uses_class(self) -> bool {
        self != Method::EigenCam
    }
}

impl fmt::Display for Method {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for Method {
    type Err = CamError;

    /// The CLI names, case-insensitive; `-` and `_` are ignored (`grad-cam`, `Score_CAM`, `guidedgradcam`).
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let key = |n: &str| n.chars().filter(|c| !matches!(c, '-' | '_')).collect::<String>().to_ascii_lowercase();
        let wanted = key(s.trim());
        Method::ALL
            .into_iter()
            .find(|m| key(m.name()) == wanted)
            .ok_or_else(|| CamError::UnknownMethod { name: s.to_owned() })
    }
}

/// A method's map at feature resolution before normalisation: after the ReLU the peer applies (`np.maximum(cam,
/// 0)` in `BaseCAM.compute_cam_per_layer`), with the range before it. Non-finite values (a model that produced
/// NaN or infinity) are replaced by 0 and counted, so nothing downstream ever sees NaN.
#[derive(Debug, Clone, PartialEq)]
pub struct RawMap {
    /// `max(map, 0)`, `[h, w]`.
    pub map: Array2<f32>,
    /// Smallest value before the ReLU (0 for an empty map).
    pub pre_relu_min: f32,
    /// Largest value before the ReLU (0 for an empty map).
    pub pre_relu_max: f32,
    /// How many values were NaN or infinite (replaced by 0).
    pub non_finite: usize,
}

impl RawMap {
    /// Apply the ReLU to a map, keeping its range.
    pub fn from_pre_relu(mut pre: Array2<f32>) -> Self {
        let mut non_finite = 0;
        let (mut lo, mut hi) = (f32::INFINITY, f32::NEG_INFINITY);
        pre.mapv_inplace(|v| {
            let v = if v.is_finite() {
                v
            } else {
                non_finite += 1;
                0.0
            };
            lo = lo.min(v);
            hi = hi.max(v);
            // Not `v.max(0.0)`: that may keep -0.0, and -0.0 is what the tutorial's broken maps look like.
            if v > 0.0 { v } else { 0.0 }
        });
        if pre.is_empty() {
            (lo, hi) = (0.0, 0.0);
        }
        RawMap { map: pre, pre_relu_min: lo, pre_relu_max: hi, non_finite }
    }

    /// Min-max normalise to [0, 1], with a status; see [`normalize()`].
    pub fn normalize(&self) -> NormalizedMap {
        normalize(self)
    }
}

/// Compute one of the methods that need only `A` (and `G`): Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM,
/// Eigen-CAM, and Guided Grad-CAM's feature-resolution map (which is Grad-CAM's; the guided part is at input
/// resolution, see [`guided`]). Score-CAM and Ablation-CAM return [`CamError::NeedsModelRuns`].
pub fn compute(method: Method, a: ArrayView3<'_, f32>, g: Option<ArrayView3<'_, f32>>) -> Result<RawMap, CamError> {
    let grads = || g.ok_or(CamError::MissingGradients { method });
    match method {
        Method::GradCam | Method::GuidedGradCam => grad_cam(a, grads()?),
        Method::GradCamPlusPlus => grad_cam_plus_plus(a, grads()?),
        Method::XGradCam => xgrad_cam(a, grads()?),
        Method::HiResCam => hires_cam(a, grads()?),
        Method::LayerCam => layer_cam(a, grads()?),
        Method::EigenCam => Ok(eigen_cam(a)),
        Method::ScoreCam | Method::AblationCam => Err(CamError::NeedsModelRuns { method }),
    }
}

/// `max(Σ_c w_c A_c, 0)`: the combination shared by Grad-CAM, XGrad-CAM, Grad-CAM++, Score-CAM and Ablation-CAM
/// (the peer's `BaseCAM.get_cam_image` followed by its ReLU). Sums accumulate in f64.
pub fn weighted_map(a: ArrayView3<'_, f32>, weights: ArrayView1<'_, f32>) -> Result<RawMap, CamError> {
    let (c, h, w) = a.dim();
    if weights.len() != c {
        return Err(CamError::ChannelCount { what: "channel weights", expected: c, got: weights.len() });
    }
    let mut acc = ndarray::Array2::<f64>::zeros((h, w));
    for (ch, &wc) in a.outer_iter().zip(weights) {
        Zip::from(&mut acc).and(&ch).for_each(|s, &v| *s += f64::from(wc * v));
    }
    Ok(RawMap::from_pre_relu(acc.mapv(|v| v as f32)))
}

/// Check that `g` has the shape of `a`.
pub(crate) fn same_shape(a: &ArrayView3<'_, f32>, g: &ArrayView3<'_, f32>) -> Result<(), CamError> {
    if a.shape() != g.shape() {
        return Err(CamError::Shape { what: "gradients", expected: a.shape().to_vec(), got: g.shape().to_vec() });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use ndarray::{Array3, array};

    use super::*;

    #[test]
    fn method_names_round_trip_and_aliases_parse() {
        for m in Method::ALL {
            assert_eq!(m.name().parse::<Method>().unwrap(), m);
            assert_eq!(m.to_string(), m.name());
        }
        assert_eq!("Grad-CAM".parse::<Method>().unwrap(), Method::GradCam);
        assert_eq!("GRADCAM++".parse::<Method>().unwrap(), Method::GradCamPlusPlus);
        assert_eq!("score_cam".parse::<Method>().unwrap(), Method::ScoreCam);
        assert_eq!("guidedgradcam".parse::<Method>().unwrap(), Method::GuidedGradCam);
    }

    #[test]
    fn unknown_method_lists_the_valid_names() {
        let err = "gradcam+++".parse::<Method>().unwrap_err();
        assert_eq!(err, CamError::UnknownMethod { name: "gradcam+++".into() });
        let msg = err.to_string();
        assert!(msg.starts_with("unknown method \"gradcam+++\"; valid methods: gradcam, gradcam++,"), "{msg}");
        assert!(msg.ends_with("ablationcam, guided-gradcam"), "{msg}");
        assert!("".parse::<Method>().is_err());
    }

    #[test]
    fn needs_say_what_the_engine_must_run() {
        assert_eq!(
            Method::GradCam.needs(),
            Needs { gradients: true, input_gradients: false, model_runs: ModelRuns::None }
        );
        assert!(!Method::EigenCam.needs().gradients && !Method::EigenCam.uses_class());
        assert_eq!(Method::ScoreCam.needs().model_runs, ModelRuns::MaskedInputs);
        assert!(!Method::ScoreCam.needs().gradients);
        assert_eq!(Method::AblationCam.needs().model_runs, ModelRuns::AblatedActivations);
        assert!(Method::GuidedGradCam.needs().input_gradients && Method::GuidedGradCam.needs().gradients);
        let gradient_free = Method::ALL.iter().filter(|m| !m.needs().gradients).count();
        assert_eq!(gradient_free, 3);
    }

    #[test]
    fn compute_dispatches_and_reports_what_is_missing() {
        let a = Array3::from_shape_vec((2, 1, 2), vec![1.0, 2.0, 3.0, 0.0]).unwrap();
        let g = Array3::from_shape_vec((2, 1, 2), vec![1.0, 1.0, -1.0, -1.0]).unwrap();
        // Grad-CAM: weights (1, -1): [1 - 3, 2 - 0] = [-2, 2] -> ReLU [0, 2].
        let m = compute(Method::GradCam, a.view(), Some(g.view())).unwrap();
        assert_eq!(m.map, array![[0.0, 2.0]]);
        assert_eq!(compute(Method::GuidedGradCam, a.view(), Some(g.view())).unwrap(), m);
        assert_eq!(
            compute(Method::LayerCam, a.view(), None),
            Err(CamError::MissingGradients { method: Method::LayerCam })
        );
        assert_eq!(
            compute(Method::ScoreCam, a.view(), Some(g.view())),
            Err(CamError::NeedsModelRuns { method: Method::ScoreCam })
        );
        assert!(compute(Method::EigenCam, a.view(), None).is_ok());
        let bad = Array3::<f32>::zeros((2, 2, 1));
        assert!(matches!(compute(Method::HiResCam, a.view(), Some(bad.view())), Err(CamError::Shape { .. })));
    }

    #[test]
    fn weighted_map_sums_channels_then_relus() {
        let a = Array3::from_shape_vec((2, 2, 2), vec![1.0, 2.0, 3.0, 4.0, 1.0, 1.0, 1.0, 10.0]).unwrap();
        let m = weighted_map(a.view(), array![2.0, -1.0].view()).unwrap();
        // 2*[1,2,3,4] - [1,1,1,10] = [1, 3, 5, -2]
        assert_eq!(m.map, array![[1.0, 3.0], [5.0, 0.0]]);
        assert_eq!((m.pre_relu_min, m.pre_relu_max, m.non_finite), (-2.0, 5.0, 0));
        assert_eq!(
            weighted_map(a.view(), array![1.0].view()),
            Err(CamError::ChannelCount { what: "channel weights", expected: 2, got: 1 })
        );
    }

    #[test]
    fn raw_map_replaces_non_finite_values_and_counts_them() {
        let m = RawMap::from_pre_relu(array![[f32::NAN, -1.0], [f32::INFINITY, 2.0]]);
        assert_eq!(m.map, array![[0.0, 0.0], [0.0, 2.0]]);
        assert_eq!((m.pre_relu_min, m.pre_relu_max, m.non_finite), (-1.0, 2.0, 2));
        let empty = RawMap::from_pre_relu(Array2::zeros((0, 3)));
        assert_eq!((empty.pre_relu_min, empty.pre_relu_max), (0.0, 0.0));
    }
}
