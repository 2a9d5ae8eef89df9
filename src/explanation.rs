//! The one representation of "an explanation" shared by the TUI, `explain --json` and the
//! batch report: which model, layer, method, score and class, the top-k, the map at feature
//! resolution, where it ran and how long each stage took.

use serde::{Deserialize, Serialize};

use crate::cam::{MapStatus, NormalizedMap};
use crate::grad::ScoreKind;
use crate::scores::Prediction;

/// Milliseconds spent in each stage (0 when the stage was served from the cache).
#[derive(Debug, Clone, Copy, Default, PartialEq, Serialize, Deserialize)]
pub struct Timings {
    /// Decoding, cropping, resizing and normalising the image.
    pub decode_ms: f64,
    /// The body graph (backbone) on the image.
    pub body_ms: f64,
    /// Head graph runs (forward + backward), or extra model runs for Score-CAM / Ablation-CAM.
    pub head_ms: f64,
    /// The CAM method itself.
    pub map_ms: f64,
    /// Upsampling, colormap and blending.
    pub render_ms: f64,
}

impl Timings {
    pub fn total_ms(&self) -> f64 {
        self.decode_ms + self.body_ms + self.head_ms + self.map_ms + self.render_ms
    }
}

/// What the map explains: one class, or one class against another (contrastive).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Target {
    pub class: Prediction,
    /// For contrastive maps: the class subtracted (`class` minus `versus`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub versus: Option<Prediction>,
}

/// One map for one image.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Explanation {
    pub image: String,
    pub model: String,
    pub layer: String,
    pub method: String,
    pub score: ScoreKind,
    pub target: Target,
    pub top: Vec<Prediction>,
    pub device: String,
    /// Map status: ok, all-zero, all-negative, constant.
    pub map_status: MapStatusName,
    /// Normalised map in [0, 1] at feature resolution, row-major `[h][w]`.
    pub map: Vec<Vec<f32>>,
    /// Range of the raw map before the ReLU (what normalisation started from).
    pub raw_min: f32,
    pub raw_max: f32,
    pub timings: Timings,
    /// Faithfulness metrics, when asked for.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub metrics: Option<Metrics>,
    /// Why this result may be wrong, from decoding the image (a truncated JPEG accepted
    /// with `--allow-truncated`); absent when there is nothing to say.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

/// [`MapStatus`] in the words of the JSON output.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum MapStatusName {
    Ok,
    AllZero,
    AllNegative,
    Constant,
    NotFinite,
}

impl From<MapStatus> for MapStatusName {
    fn from(s: MapStatus) -> Self {
        match s {
            MapStatus::Ok => Self::Ok,
            MapStatus::AllZero => Self::AllZero,
            MapStatus::AllNegative => Self::AllNegative,
            MapStatus::Constant => Self::Constant,
            MapStatus::NotFinite => Self::NotFinite,
        }
    }
}

/// The map as nested rows for JSON.
pub fn map_rows(m: &NormalizedMap) -> Vec<Vec<f32>> {
    m.map.outer_iter().map(|r| r.to_vec()).collect()
}

/// Faithfulness of a map (see `engine::metrics`).
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Metrics {
    /// Area under the class probability as the most salient pixels are deleted first (RISE):
    /// lower is better.
    pub deletion_auc: f64,
    /// Area under the class probability as the most salient pixels are inserted first into a
    /// blurred image (RISE): higher is better.
    pub insertion_auc: f64,
    /// Grad-CAM++'s drop in confidence when only the map-weighted image is shown,
    /// `max(0, p - p_masked) / p` in percent: lower is better.
    pub average_drop_pct: f64,
    /// Whether the confidence increased on the map-weighted image (Grad-CAM++'s "increase in
    /// confidence" counts these).
    pub confidence_increased: bool,
}
