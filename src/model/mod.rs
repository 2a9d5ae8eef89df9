//! The model card: everything camscope must know about a classifier that the ONNX graph
//! does not say (how to turn a photo into its input tensor, what its classes are called).
//!
//! A card is read from a TOML sidecar next to the model (`model.toml` or
//! `model.camscope.toml` beside `model.onnx`), from the ONNX `metadata_props` key
//! `camscope.card` (the same TOML text), or inferred from the input shape with ImageNet
//! defaults, in that order. The engine checks it against the model's real input shape.

pub mod labels;

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

pub use self::labels::{Labels, LabelsError, LookupError, MatchKind, SearchHit};
use crate::imaging::resample::Filter;

/// Tensor layout of the image input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
pub enum Layout {
    /// `[N, C, H, W]`, PyTorch's and most exporters' layout.
    #[serde(rename = "NCHW", alias = "nchw")]
    Nchw,
    /// `[N, H, W, C]`, Keras/TensorFlow's layout (tf2onnx keeps it at the input).
    #[serde(rename = "NHWC", alias = "nhwc")]
    Nhwc,
}

/// How the photo is fitted to the model's input size.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum ResizePolicy {
    /// Largest centred box with the model's aspect ratio (times `crop_fraction`), resized.
    CenterCrop,
    /// The whole photo, resized to the input size regardless of aspect ratio.
    Stretch,
}

/// What the model's output holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputKind {
    /// Decide from the graph: a final Softmax means probabilities, anything else logits.
    Auto,
    /// Unnormalised class scores; camscope applies softmax for probabilities.
    Logits,
    /// Already probabilities (the graph ends in Softmax or the like).
    Probabilities,
    /// Independent sigmoids, one per class (multi-label), as logits or, when the graph ends
    /// in a Sigmoid, probabilities. Detected by itself from a final Sigmoid.
    Sigmoid,
}

impl InputSpec {
    /// The input's dims as text, e.g. `[N, 3, 224, 224]`.
    pub fn layout_dims_string(&self) -> String {
        match self.layout {
            Layout::Nchw => format!("[N, 3, {}, {}]", self.height, self.width),
            Layout::Nhwc => format!("[N, {}, {}, 3]", self.height, self.width),
        }
    }
}

/// How to build the input tensor from an image.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct InputSpec {
    /// Input tensor name; `None` means the model's only image input.
    #[serde(default)]
    pub name: Option<String>,
    pub layout: Layout,
    pub height: u32,
    pub width: u32,
    #[serde(default = "default_resize")]
    pub resize: ResizePolicy,
    /// Fraction of the centred box kept by `center-crop` (torchvision's 224/256 = 0.875).
    #[serde(default = "one")]
    pub crop_fraction: f64,
    #[serde(default = "default_filter")]
    pub interpolation: Filter,
    /// Pixels (0..255) are multiplied by this before `mean`/`std` (1/255 for 0..1 models).
    #[serde(default = "one")]
    pub pixel_scale: f64,
    /// Per-channel mean, RGB, on the scale after `pixel_scale`.
    pub mean: [f64; 3],
    /// Per-channel standard deviation, RGB, on the scale after `pixel_scale`.
    pub std: [f64; 3],
    /// Read the pixels as stored, not turned upright by the EXIF orientation: for the rare
    /// model trained on raw sensor orientation (a pipeline that never called
    /// `exif_transpose`). `--ignore-exif` sets it for one run.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub ignore_exif: bool,
    /// Decode every pixel of large JPEGs instead of at 1/2-1/8 scale (see
    /// [`Draft`](crate::imaging::Draft)): for a model whose reference accuracy was measured
    /// on full decodes. `--exact-decode` sets it for one run. Always serialized, so journals
    /// written before reduced decoding existed (all full decodes) are not taken for draft runs.
    #[serde(default)]
    pub exact_decode: bool,
    /// Accept truncated JPEGs (with a warning): `--allow-truncated`, never from a card.
    #[serde(skip)]
    pub allow_truncated: bool,
    /// Refuse images with more pixels than this: `--max-pixels`, never from a card.
    #[serde(skip, default = "default_max_pixels")]
    pub max_pixels: u64,
}

impl InputSpec {
    /// How files are decoded for this model. These settings are part of the spec (not
    /// passed beside it) because they change the tensor a file becomes: everything keyed by
    /// the spec, such as the triage score cache, must tell them apart.
    pub fn decode_options(&self) -> crate::imaging::DecodeOptions {
        crate::imaging::DecodeOptions {
            exif: !self.ignore_exif,
            allow_truncated: self.allow_truncated,
            max_pixels: self.max_pixels,
            draft: (!self.exact_decode).then(|| crate::imaging::Draft::for_spec(self)),
        }
    }
}

fn default_max_pixels() -> u64 {
    crate::imaging::DEFAULT_MAX_PIXELS
}

fn default_resize() -> ResizePolicy {
    ResizePolicy::CenterCrop
}
fn default_filter() -> Filter {
    Filter::Bilinear
}
fn one() -> f64 {
    1.0
}
fn auto_kind() -> OutputKind {
    OutputKind::Auto
}

/// Which output holds the class scores, and what they are.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct OutputSpec {
    #[serde(default)]
    pub name: Option<String>,
    #[serde(default = "auto_kind")]
    pub kind: OutputKind,
}

impl Default for OutputSpec {
    fn default() -> Self {
        Self { name: None, kind: OutputKind::Auto }
    }
}

/// The card as written in TOML.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct CardFile {
    #[serde(default)]
    pub name: Option<String>,
    /// Labels file, relative to the card's folder.
    #[serde(default)]
    pub labels: Option<PathBuf>,
    pub input: InputSpec,
    #[serde(default)]
    pub output: OutputSpec,
    #[serde(default)]
    pub layer: Option<LayerSpec>,
}

/// How to read the model's feature maps, where the graph leaves it open.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize)]
#[serde(deny_unknown_fields)]
pub struct LayerSpec {
    /// Token sequences' layout, `"K+HxW"` (K extra tokens first), `"K"` or `"HxW"`: for a
    /// transformer whose grid the graph does not show (see `--tokens`).
    #[serde(default, deserialize_with = "token_spec")]
    pub tokens: Option<crate::grad::TokenSpec>,
}

fn token_spec<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<crate::grad::TokenSpec>, D::Error> {
    let s = String::deserialize(d)?;
    s.parse().map(Some).map_err(serde::de::Error::custom)
}

/// Where a card came from, for messages and the status bar.
#[derive(Debug, Clone, PartialEq)]
pub enum CardSource {
    Sidecar(PathBuf),
    Metadata,
    Inferred,
}

impl std::fmt::Display for CardSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            CardSource::Sidecar(p) => write!(f, "{}", p.display()),
            CardSource::Metadata => f.write_str("the model's metadata"),
            CardSource::Inferred => f.write_str("defaults inferred from the input shape"),
        }
    }
}

/// A resolved model card.
#[derive(Debug, Clone, PartialEq)]
pub struct ModelCard {
    pub name: String,
    pub input: InputSpec,
    pub output: OutputSpec,
    pub layer: Option<LayerSpec>,
    /// `None` until resolved against the model (then numbered names if no file was given).
    pub labels: Option<Labels>,
    pub labels_path: Option<PathBuf>,
    pub source: CardSource,
}

/// Why a card is unusable.
#[derive(Debug, thiserror::Error)]
pub enum CardError {
    #[error("{}: cannot read model card: {source}; replace it with the card's TOML file or remove it", path.display())]
    Read { path: PathBuf, source: std::io::Error },
    #[error("{}: invalid model card: {detail}; see models/efficientnet_lite0.toml for the format", path.display())]
    Parse { path: PathBuf, detail: String },
    #[error("{}: {detail}", path.display())]
    Invalid { path: PathBuf, detail: String },
    #[error(transparent)]
    Labels(#[from] LabelsError),
    #[error("{card}: {detail}")]
    Mismatch { card: String, detail: String },
}

/// Candidate sidecar paths for a model file, in lookup order.
pub fn sidecar_paths(model: &Path) -> [PathBuf; 2] {
    [model.with_extension("toml"), model.with_extension("camscope.toml")]
}

impl ModelCard {
    /// Parse card TOML; `path` names it in errors and anchors the labels path.
    pub fn parse(text: &str, path: &Path, source: CardSource) -> Result<Self, CardError> {
        let file: CardFile = toml::from_str(text).map_err(|e| CardError::Parse {
            path: path.to_owned(),
            detail: e.message().replace('\n', " ").trim().to_owned(),
        })?;
        let dir = path.parent().unwrap_or(Path::new("."));
        let labels_path = file.labels.as_ref().map(|p| if p.is_absolute() { p.clone() } else { dir.join(p) });
        let card = ModelCard {
            name: file.name.unwrap_or_else(|| stem(path)),
            input: file.input,
            output: file.output,
            layer: file.layer,
            labels: None,
            labels_path,
            source,
        };
        card.validate(path)?;
        Ok(card)
    }

    /// Read a card file.
    pub fn read(path: &Path) -> Result<Self, CardError> {
        let text = crate::fsutil::read_regular_string(path)
            .map_err(|source| CardError::Read { path: path.to_owned(), source })?;
        Self::parse(&text, path, CardSource::Sidecar(path.to_owned()))
    }

    /// Find the card for `model`: an explicit path, a sidecar, metadata text, or `None`
    /// (the caller then infers one from the input shape).
    pub fn locate(model: &Path, explicit: Option<&Path>, metadata: Option<&str>) -> Result<Option<Self>, CardError> {
        if let Some(p) = explicit {
            return Self::read(p).map(Some);
        }
        for p in sidecar_paths(model) {
            if p.is_file() {
                return Self::read(&p).map(Some);
            }
        }
        if let Some(text) = metadata {
            return Self::parse(text, model, CardSource::Metadata).map(Some);
        }
        Ok(None)
    }

    /// Defaults for a model with no card: layout and size from the input's static shape,
    /// ImageNet mean/std (the most common convention), centre crop, bilinear.
    pub fn infer(model: &Path, input_name: &str, dims: &[i64]) -> Result<Self, CardError> {
        let (layout, h, w) = infer_layout(dims).ok_or_else(|| CardError::Invalid {
            path: model.to_owned(),
            detail: format!(
                "input `{input_name}` has shape {} and no model card says how to fill it; write {} (see models/efficientnet_lite0.toml)",
                fmt_dims(dims),
                sidecar_paths(model)[0].display()
            ),
        })?;
        let labels_path = model.parent().map(|d| d.join("labels.txt")).filter(|p| p.is_file());
        Ok(ModelCard {
            name: stem(model),
            input: InputSpec {
                name: Some(input_name.to_owned()),
                layout,
                height: h,
                width: w,
                resize: ResizePolicy::CenterCrop,
                crop_fraction: 1.0,
                interpolation: Filter::Bilinear,
                pixel_scale: 1.0,
                mean: [0.485 * 255.0, 0.456 * 255.0, 0.406 * 255.0],
                std: [0.229 * 255.0, 0.224 * 255.0, 0.225 * 255.0],
                ignore_exif: false,
                exact_decode: false,
                allow_truncated: false,
                max_pixels: default_max_pixels(),
            },
            output: OutputSpec::default(),
            layer: None,
            labels: None,
            labels_path,
            source: CardSource::Inferred,
        })
    }

    fn validate(&self, path: &Path) -> Result<(), CardError> {
        let bad = |detail: String| Err(CardError::Invalid { path: path.to_owned(), detail });
        let i = &self.input;
        if i.height == 0 || i.width == 0 || i.height > 8192 || i.width > 8192 {
            return bad(format!(
                "input size {}x{} is out of range; set `height` and `width` to the model's input size",
                i.height, i.width
            ));
        }
        if !(i.crop_fraction > 0.0 && i.crop_fraction <= 1.0) {
            return bad(format!("crop_fraction {} must be in (0, 1]", i.crop_fraction));
        }
        if !(i.pixel_scale.is_finite() && i.pixel_scale > 0.0) {
            return bad(format!("pixel_scale {} must be a positive number", i.pixel_scale));
        }
        if let Some(c) = i.std.iter().position(|s| !(s.is_finite() && *s > 0.0)) {
            return bad(format!("std[{c}] = {} must be a positive number", i.std[c]));
        }
        if let Some(c) = i.mean.iter().position(|m| !m.is_finite()) {
            return bad(format!("mean[{c}] is not a number"));
        }
        Ok(())
    }

    /// Check the card against the model's real input shape. `dims` uses -1 for dynamic axes.
    pub fn check_input(&self, model: &Path, input_name: &str, dims: &[i64]) -> Result<(), CardError> {
        let card = self.source.to_string();
        let mismatch = |detail: String| Err(CardError::Mismatch { card: card.clone(), detail });
        if dims.len() != 4 {
            return mismatch(format!(
                "{} input `{input_name}` has rank {} ({}), but camscope needs a 4-D image batch",
                model.display(),
                dims.len(),
                fmt_dims(dims)
            ));
        }
        let i = &self.input;
        let (c, h, w) = match i.layout {
            Layout::Nchw => (dims[1], dims[2], dims[3]),
            Layout::Nhwc => (dims[3], dims[1], dims[2]),
        };
        let name = match i.layout {
            Layout::Nchw => "NCHW",
            Layout::Nhwc => "NHWC",
        };
        if c != 3 && c > 0 {
            let hint = if matches!(infer_layout(dims), Some((l, _, _)) if l != i.layout) {
                "; set `layout` to the other value"
            } else {
                ""
            };
            return mismatch(format!(
                "layout {name} says channels = {c}, but {} input `{input_name}` is {}; camscope needs 3 RGB channels{hint}",
                model.display(),
                fmt_dims(dims)
            ));
        }
        if (h > 0 && h != i64::from(i.height)) || (w > 0 && w != i64::from(i.width)) {
            return mismatch(format!(
                "input size {}x{} (height x width) disagrees with {} input `{input_name}` {}; set `height` and `width` to match",
                i.height,
                i.width,
                model.display(),
                fmt_dims(dims)
            ));
        }
        Ok(())
    }

    /// Load the labels file (or numbered names) and check the class count.
    pub fn resolve_labels(&mut self, num_classes: usize, model: &Path) -> Result<(), CardError> {
        let labels = match &self.labels_path {
            Some(p) => Labels::read(p)?,
            None => Labels::numbered(num_classes),
        };
        if labels.len() != num_classes {
            let p = self.labels_path.as_ref().map_or_else(String::new, |p| p.display().to_string());
            return Err(CardError::Mismatch {
                card: p,
                detail: format!(
                    "{} classes listed, but {} outputs {num_classes} scores; use the labels file made for this model",
                    labels.len(),
                    model.display()
                ),
            });
        }
        self.labels = Some(labels);
        Ok(())
    }

    /// Labels of a binary classifier (one output): a labels file names both classes
    /// (complement first) or only the positive one; without a file, `negative`/`positive`.
    pub fn resolve_binary_labels(&mut self, model: &Path) -> Result<(), CardError> {
        let labels = match &self.labels_path {
            Some(p) => {
                let file = Labels::read(p)?;
                match file.len() {
                    1 => Labels::binary(Some(&file)),
                    2 => file,
                    n => {
                        return Err(CardError::Mismatch {
                            card: p.display().to_string(),
                            detail: format!(
                                "{n} classes listed, but {} is a binary classifier (one output); list the positive class, or the negative then the positive",
                                model.display()
                            ),
                        });
                    }
                }
            }
            None => Labels::binary(None),
        };
        self.labels = Some(labels);
        Ok(())
    }

    /// The labels; numbered names before [`resolve_labels`](Self::resolve_labels).
    pub fn labels(&self) -> Labels {
        self.labels.clone().unwrap_or_else(|| Labels::numbered(0))
    }
}

/// Layout and size from a static 4-D shape, when the channel axis is unambiguous.
pub fn infer_layout(dims: &[i64]) -> Option<(Layout, u32, u32)> {
    if dims.len() != 4 {
        return None;
    }
    let size = |d: i64| u32::try_from(d).ok().filter(|&d| d > 0);
    if dims[1] == 3 && dims[3] != 3 {
        return Some((Layout::Nchw, size(dims[2])?, size(dims[3])?));
    }
    if dims[3] == 3 && dims[1] != 3 {
        return Some((Layout::Nhwc, size(dims[1])?, size(dims[2])?));
    }
    None
}

/// `[N, 3, 224, 224]` with `?` for dynamic axes.
pub fn fmt_dims(dims: &[i64]) -> String {
    let parts: Vec<String> = dims.iter().map(|&d| if d < 0 { "?".into() } else { d.to_string() }).collect();
    format!("[{}]", parts.join(", "))
}

fn stem(path: &Path) -> String {
    path.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned())
}

#[cfg(test)]
mod tests {
    use super::*;

    const CARD: &str = r#"
        name = "test"
        labels = "labels.txt"
        [input]
        layout = "NCHW"
        height = 224
        width = 224
        resize = "center-crop"
        interpolation = "bicubic"
        mean = [127.0, 127.0, 127.0]
        std = [128.0, 128.0, 128.0]
    "#;

    #[test]
    fn parses_card_and_anchors_labels_path() {
        let card = ModelCard::parse(CARD, Path::new("m/card.toml"), CardSource::Metadata).unwrap();
        assert_eq!(card.input.interpolation, Filter::Bicubic);
        assert_eq!(card.labels_path.as_deref(), Some(Path::new("m/labels.txt")));
        assert_eq!(card.output.kind, OutputKind::Auto);
    }

    #[test]
    fn unknown_field_is_a_clear_error() {
        let text = CARD.replace("height = 224", "hieght = 224");
        let err = ModelCard::parse(&text, Path::new("c.toml"), CardSource::Metadata).unwrap_err().to_string();
        assert!(err.starts_with("c.toml: invalid model card"), "{err}");
        assert!(err.contains("hieght"), "{err}");
    }

    #[test]
    fn ignore_exif_comes_from_the_card_and_run_options_do_not() {
        let card = ModelCard::parse(CARD, Path::new("c.toml"), CardSource::Metadata).unwrap();
        assert!(card.input.decode_options().exif, "EXIF orientation is applied by default");
        assert_eq!(card.input.decode_options().max_pixels, crate::imaging::DEFAULT_MAX_PIXELS);
        let text = CARD.replace("width = 224", "width = 224\n        ignore_exif = true");
        let card = ModelCard::parse(&text, Path::new("c.toml"), CardSource::Metadata).unwrap();
        assert!(!card.input.decode_options().exif);
        // How strictly files are read is the user's call for one run, not the model's.
        for field in ["allow_truncated = true", "max_pixels = 5"] {
            let text = CARD.replace("width = 224", &format!("width = 224\n        {field}"));
            let err = ModelCard::parse(&text, Path::new("c.toml"), CardSource::Metadata).unwrap_err().to_string();
            assert!(err.contains("unknown field"), "{field}: {err}");
        }
    }

    #[test]
    fn size_mismatch_names_card_and_fix() {
        let card = ModelCard::parse(CARD, Path::new("c.toml"), CardSource::Sidecar("c.toml".into())).unwrap();
        let err = card.check_input(Path::new("m.onnx"), "input", &[-1, 3, 256, 256]).unwrap_err().to_string();
        assert!(err.contains("c.toml") && err.contains("224x224") && err.contains("[?, 3, 256, 256]"), "{err}");
        assert!(card.check_input(Path::new("m.onnx"), "input", &[-1, 3, 224, 224]).is_ok());
    }

    #[test]
    fn layout_mismatch_suggests_other_layout() {
        let card = ModelCard::parse(CARD, Path::new("c.toml"), CardSource::Metadata).unwrap();
        let err = card.check_input(Path::new("m.onnx"), "x", &[1, 224, 224, 3]).unwrap_err().to_string();
        assert!(err.contains("layout"), "{err}");
    }

    #[test]
    fn infers_nhwc_from_shape() {
        let card = ModelCard::infer(Path::new("k.onnx"), "x", &[-1, 299, 299, 3]).unwrap();
        assert_eq!((card.input.layout, card.input.height), (Layout::Nhwc, 299));
        assert!(ModelCard::infer(Path::new("k.onnx"), "x", &[-1, 3, -1, -1]).is_err());
    }
}

/// File name of the bundled model inside `models/`.
pub const BUNDLED_MODEL: &str = "efficientnet_lite0.onnx";

/// Why the bundled model could not be found.
#[derive(Debug, thiserror::Error)]
#[error(
    "the bundled model models/{BUNDLED_MODEL} was not found (looked in {searched}); pass --model PATH or run camscope from its checkout"
)]
pub struct NoBundledModel {
    searched: String,
}

/// Path of the bundled EfficientNet-Lite0: `models/` in the working directory, beside the
/// executable's ancestors (`target/release/..`), in `<prefix>/share/camscope` where the wheel
/// installs it beside `<prefix>/bin/camscope` (`pip install camscope`; the wheel's data files
/// go to the environment's prefix, and `share/` is where such data lives), or in the checkout
/// camscope was built from.
pub fn bundled_model() -> Result<PathBuf, NoBundledModel> {
    let mut roots: Vec<PathBuf> = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        roots.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        roots.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
        if let Some(prefix) = exe.parent().and_then(Path::parent) {
            roots.push(prefix.join("share").join("camscope"));
        }
    }
    roots.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let candidates: Vec<PathBuf> = roots.iter().map(|r| r.join("models").join(BUNDLED_MODEL)).collect();
    candidates.iter().find(|p| p.is_file()).cloned().ok_or_else(|| NoBundledModel {
        searched: candidates.iter().map(|p| p.display().to_string()).collect::<Vec<_>>().join(", "),
    })
}
