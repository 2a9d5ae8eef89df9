//! The explanation pipeline: image file -> cached body results -> maps for any class and
//! method. One [`Engine`] per model; the TUI's worker thread, `explain`, `batch` and
//! `triage` all drive this same code.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Instant, SystemTime};

use image::RgbImage;
use ndarray::{Array1, Array2, Array3, Array4, ArrayD, ArrayView3, ArrayView4, Axis, IxDyn, s};

use super::cache::{LruCache, Weighed};
use super::explainer::{Explainer, Tape};
use super::{EngineError, GraphSession, LoadedModel, Provider, SessionOptions};
use crate::cam::{self, CamError, Method, ModelRuns, NormalizedMap, RawMap};
use crate::explanation::Timings;
use crate::grad::{Candidate, ScoreKind};
use crate::imaging::{self, ImageError};
use crate::model::Layout;
use crate::scores::ClassScores;

/// Why an image could not be explained.
#[derive(Debug, thiserror::Error)]
pub enum ExplainError {
    #[error(transparent)]
    Image(#[from] ImageError),
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error("{}: {source}", path.display())]
    Cam { path: PathBuf, source: CamError },
    #[error("class {index} is out of range: the model has {classes} classes (0..{})", classes - 1)]
    ClassOutOfRange { index: usize, classes: usize },
    #[error("{}: the model {} gave non-finite values for this image ({what}); a map or a ranking of NaN means nothing, so check the model (re-export it, or test it in onnxruntime) and the card's mean/std", image.display(), model.display())]
    NonFinite { image: PathBuf, model: PathBuf, what: String },
}

/// Why an image has no scores, in the word a list of images shows: the file could not be
/// read, or the model gave NaN or infinite scores for it (the file is fine: calling it
/// unreadable sent users looking for a broken file).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Fault {
    #[default]
    Unreadable,
    NonFinite,
}

impl Fault {
    pub fn word(self) -> &'static str {
        match self {
            Fault::Unreadable => "unreadable",
            Fault::NonFinite => "NaN scores",
        }
    }
}

impl ExplainError {
    /// Which [`Fault`] this error is, for lists that name it in a word.
    pub fn fault(&self) -> Fault {
        match self {
            ExplainError::NonFinite { .. } => Fault::NonFinite,
            _ => Fault::Unreadable,
        }
    }
}

/// `None` when every value is finite, else what was not, e.g. `3 NaN and 1 +Inf of 1000`.
pub fn non_finite_summary<'a>(values: impl IntoIterator<Item = &'a f32>) -> Option<String> {
    let (mut nan, mut pos, mut neg, mut n) = (0usize, 0usize, 0usize, 0usize);
    for &v in values {
        n += 1;
        if v.is_nan() {
            nan += 1;
        } else if v == f32::INFINITY {
            pos += 1;
        } else if v == f32::NEG_INFINITY {
            neg += 1;
        }
    }
    let parts: Vec<String> = [(nan, "NaN"), (pos, "+Inf"), (neg, "-Inf")]
        .iter()
        .filter(|(k, _)| *k > 0)
        .map(|(k, what)| format!("{k} {what}"))
        .collect();
    (!parts.is_empty()).then(|| format!("{} of {n}", parts.join(" and ")))
}

/// Score-CAM and Ablation-CAM inputs per run on CUDA (see [`Engine::mask_batch`]).
const CUDA_MASK_BATCH: usize = 32;

/// Engine settings.
#[derive(Debug, Clone)]
pub struct EngineConfig {
    /// Target layer (tensor/node name or unique part); `None` picks the default.
    pub layer: Option<String>,
    pub score: ScoreKind,
    /// Byte budget of the body-result cache.
    pub cache_bytes: usize,
    pub session: SessionOptions,
    /// Images per run for batched bodies, Score-CAM masks, Ablation-CAM and metrics (4: on a CPU
    /// the throughput per image peaks at batch 2-4, and activation memory grows with the batch).
    pub batch: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            layer: None,
            score: ScoreKind::Logit,
            cache_bytes: 96 << 20,
            session: SessionOptions::default(),
            batch: 4,
        }
    }
}

/// Which class vector the gradient is seeded with.
#[derive(Debug, Clone, PartialEq)]
pub enum Seed {
    /// One class (one-hot).
    Class(usize),
    /// Evidence for `positive` against `negative` (their difference).
    Contrast { positive: usize, negative: usize },
    /// Any weighting of the classes.
    Vector(Vec<f32>),
}

/// Identifies an image's contents without reading them: a changed file is a new key.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
struct ImageKey {
    path: PathBuf,
    size: u64,
    modified: Option<SystemTime>,
}

impl ImageKey {
    fn of(path: &Path) -> Self {
        let meta = std::fs::metadata(path).ok();
        Self {
            path: path.to_owned(),
            size: meta.as_ref().map_or(0, |m| m.len()),
            modified: meta.and_then(|m| m.modified().ok()),
        }
    }
}

/// Everything computed once per image (cached).
#[derive(Debug, Clone)]
pub struct Loaded {
    pub path: PathBuf,
    /// The pixels the model sees (cropped and resized); overlays are drawn on it.
    pub view: RgbImage,
    /// The normalised input sample in the model's layout (`[3,H,W]` or `[H,W,3]`).
    pub input: Array3<f32>,
    /// Class scores from the model's output.
    pub scores: ClassScores,
    /// Target activations `[1, ...]` in the model's layout.
    pub activation: ArrayD<f32>,
    /// Side tensors the head needs, `[1, ...]`.
    pub side: Vec<ArrayD<f32>>,
    /// Decode and body time when it was computed.
    pub timings: Timings,
    /// What the decoder had to say about the file (a truncated JPEG used with
    /// `--allow-truncated`), one line each: every output of this image repeats them, since
    /// its scores and maps may be wrong.
    pub warnings: Vec<String>,
}

/// An image decoded and preprocessed for the model, before any model run.
#[derive(Debug, Clone)]
pub struct Preprocessed {
    /// The pixels the model sees (cropped and resized).
    pub view: RgbImage,
    /// The normalised input sample in the model's layout.
    pub input: Array3<f32>,
    /// The decoder's warnings (see [`Loaded::warnings`]).
    pub warnings: Vec<String>,
}

/// A head result (scores, and the gradient or what Grad-CAM reads of it) for one image and
/// one class seed.
#[derive(Debug)]
struct HeadOut(Vec<f32>, HeadGrad);

/// What a cached head result holds of the gradient.
#[derive(Debug)]
enum HeadGrad {
    /// The gradient `[C, H, W]`: every gradient method.
    Full(Array3<f32>),
    /// Grad-CAM's channel weights `[C]` alone (a class switch on a kept tape, see
    /// [`Explainer::pooled_backward`]): Grad-CAM only.
    Weights(Array1<f32>),
}

impl Weighed for HeadOut {
    fn bytes(&self) -> usize {
        let g = match &self.1 {
            HeadGrad::Full(g) => g.len(),
            HeadGrad::Weights(w) => w.len(),
        };
        (self.0.len() + g) * 4 + 64
    }
}

/// The seeds whose head results are cached: a class or a contrast of two (a `Vector` seed is
/// rare and would need its floats in the key).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
enum SeedKey {
    Class(usize),
    Contrast(usize, usize),
}

impl SeedKey {
    fn of(seed: &Seed) -> Option<Self> {
        match seed {
            Seed::Class(c) => Some(SeedKey::Class(*c)),
            Seed::Contrast { positive, negative } => Some(SeedKey::Contrast(*positive, *negative)),
            Seed::Vector(_) => None,
        }
    }
}

impl Weighed for Loaded {
    fn bytes(&self) -> usize {
        let floats = self.input.len()
            + self.activation.len()
            + self.side.iter().map(ArrayD::len).sum::<usize>()
            + self.scores.probabilities.len() * 2;
        floats * 4 + self.view.as_raw().len() + 256
    }
}

/// A map for one image, class and method.
#[derive(Debug, Clone)]
pub struct MapOutput {
    pub raw: RawMap,
    pub normalized: NormalizedMap,
    /// Guided Grad-CAM's input-resolution result `[3, H, W]` (model layout, channel first).
    pub guided: Option<Array3<f32>>,
    pub timings: Timings,
}

/// One model with one target layer and score kind, its sessions and its cache.
pub struct Engine {
    model: LoadedModel,
    config: EngineConfig,
    target: Candidate,
    explainer: Explainer,
    scores_session: Option<GraphSession>,
    guided: Option<Explainer>,
    cache: LruCache<ImageKey, Loaded>,
    /// Head results by image and class: on a transformer the head is a whole block forward
    /// and backward (10 ms on ViT-B/16 here), so the inspector computes the top classes of
    /// the shown image in the background (see [`Engine::warm`]) and a class switch among them
    /// costs only the map. Bounded by an eighth of the body cache's budget; off when that is 0.
    heads: LruCache<(ImageKey, SeedKey), HeadOut>,
    /// The class-independent part of the head by image, where the head is split (see
    /// [`Explainer::head_keeping_tape`]): any other class of an image already shown runs
    /// only the backward of the head (ViT-B/16: 5 ms instead of 10). A quarter of the
    /// body cache's budget: a ViT-B/16 tape is 6.8 MB (the last attention's rows, its q and
    /// k), a CNN's a few kB.
    tapes: LruCache<ImageKey, Tape>,
}

impl Engine {
    /// Load a model and build the gradient graphs for the configured layer.
    pub fn open(path: &Path, card: Option<&Path>, config: EngineConfig) -> Result<Self, EngineError> {
        let model = LoadedModel::open(path, card, &config.session)?;
        Self::from_model(model, config)
    }

    pub fn from_model(model: LoadedModel, mut config: EngineConfig) -> Result<Self, EngineError> {
        // Every session of the engine shares one stop flag (see `stop_flag`).
        config.session.stop.get_or_insert_with(Default::default);
        let target = resolve(&model, config.layer.as_deref())?;
        let explainer = Explainer::new(&model.analysis, &model.path, &target, config.score, false, &config.session)?;
        let cache = LruCache::new(config.cache_bytes);
        let heads = LruCache::new(config.cache_bytes / 8);
        let tapes = LruCache::new(config.cache_bytes / 4);
        Ok(Self { model, config, target, explainer, scores_session: None, guided: None, cache, heads, tapes })
    }

    /// Set it to make the engine's runs that have not started yet fail with
    /// [`EngineError::Stopped`], from another thread than the one running the engine: a slow
    /// method (hundreds of runs) then ends after the run in progress.
    pub fn stop_flag(&self) -> std::sync::Arc<std::sync::atomic::AtomicBool> {
        self.config.session.stop.clone().expect("set by from_model")
    }

    pub fn model(&self) -> &LoadedModel {
        &self.model
    }

    pub fn target(&self) -> &Candidate {
        &self.target
    }

    pub fn score_kind(&self) -> ScoreKind {
        self.config.score
    }

    pub fn config(&self) -> &EngineConfig {
        &self.config
    }

    /// The execution provider actually running, and why CUDA is not (under `auto`).
    pub fn provider(&self) -> (Provider, Option<String>) {
        let (p, why) = self.explainer.provider();
        (p, why.map(str::to_owned))
    }

    /// Number of cached images and the bytes all the caches hold: body results, head results
    /// and tapes (a ViT-B/16 image's tape alone is 6.8 MB, its body results 2 MB).
    pub fn cache_usage(&self) -> (usize, usize) {
        (self.cache.len(), self.cache.used_bytes() + self.heads.used_bytes() + self.tapes.used_bytes())
    }

    /// Whether an image's body results are cached (and its file unchanged).
    pub fn is_cached(&self, path: &Path) -> bool {
        self.cache.contains(&ImageKey::of(path))
    }

    /// Inputs per run for Score-CAM's masked images and Ablation-CAM's ablated activations,
    /// hundreds of runs per map. A CPU's throughput per image peaks at `config.batch` (2-4);
    /// a GPU's keeps rising far beyond it (H200: 554 images/s at batch 1, 1191 at batch 16),
    /// and memory is no concern there at 32 (19 MB of input for this model).
    fn mask_batch(&self) -> usize {
        match self.explainer.provider().0 {
            Provider::Cuda => self.config.batch.max(CUDA_MASK_BATCH),
            Provider::Cpu => self.config.batch.max(1),
        }
    }

    /// Whether the head can take several images (or ablated copies) in one run.
    fn head_batches(&self) -> bool {
        self.explainer.plan.batch_flexible && !self.model.fixed_batch
    }

    /// Switch the target layer (the cache is cleared: activations belong to a layer).
    pub fn set_layer(&mut self, layer: Option<&str>) -> Result<(), EngineError> {
        let target = resolve(&self.model, layer)?;
        if target == self.target {
            return Ok(());
        }
        // Tapes are ONNX Runtime values of the old head's sessions: gone before those are.
        self.tapes.clear();
        self.explainer = Explainer::new(
            &self.model.analysis,
            &self.model.path,
            &target,
            self.config.score,
            false,
            &self.config.session,
        )?;
        self.target = target;
        self.config.layer = layer.map(str::to_owned);
        self.cache.clear();
        self.heads.clear();
        Ok(())
    }

    /// Switch between logit and probability scores (body results stay valid).
    pub fn set_score(&mut self, score: ScoreKind) -> Result<(), EngineError> {
        if score == self.config.score {
            return Ok(());
        }
        self.tapes.clear();
        self.explainer =
            Explainer::new(&self.model.analysis, &self.model.path, &self.target, score, false, &self.config.session)?;
        self.config.score = score;
        self.scores_session = None;
        self.heads.clear();
        self.guided = None;
        Ok(())
    }

    /// Decode and preprocess an image (no model run).
    pub fn preprocess(&self, path: &Path) -> Result<Preprocessed, ImageError> {
        let spec = &self.model.card.input;
        let decoded = imaging::load_image(path, &spec.decode_options())?;
        let view = imaging::model_view(&decoded.rgb, spec);
        let input = imaging::normalize(&view, spec);
        Ok(Preprocessed { view, input, warnings: decoded.warnings })
    }

    /// Body results for an image: from the cache, or decoded and run now.
    pub fn load(&mut self, path: &Path) -> Result<Arc<Loaded>, ExplainError> {
        let key = ImageKey::of(path);
        if let Some(hit) = self.cache.get(&key) {
            return Ok(hit);
        }
        let t0 = Instant::now();
        let Preprocessed { view, input, warnings } = self.preprocess(path)?;
        let decode_ms = ms(t0);
        let mut out = self.run_body(std::slice::from_ref(&input.view()))?;
        let mut loaded = out.remove(0);
        self.check_finite(&loaded, path)?;
        loaded.timings.decode_ms = decode_ms;
        let loaded = Arc::new(Loaded { path: path.to_owned(), view, warnings, ..loaded });
        self.cache.insert(key, loaded.clone());
        Ok(loaded)
    }

    /// Body results for many images, `config.batch` at a time (one at a time for models
    /// that only run at batch 1). Unreadable images give their error; the rest go on.
    pub fn load_many(&mut self, paths: &[PathBuf]) -> Vec<Result<Arc<Loaded>, ExplainError>> {
        let batch = if self.model.fixed_batch { 1 } else { self.config.batch.max(1) };
        let mut results: Vec<Option<Result<Arc<Loaded>, ExplainError>>> = (0..paths.len()).map(|_| None).collect();
        let mut pending: Vec<(usize, ImageKey, Preprocessed, f64)> = Vec::new();
        for (i, p) in paths.iter().enumerate() {
            let key = ImageKey::of(p);
            if let Some(hit) = self.cache.get(&key) {
                results[i] = Some(Ok(hit));
                continue;
            }
            let t0 = Instant::now();
            match self.preprocess(p) {
                Ok(pre) => pending.push((i, key, pre, ms(t0))),
                Err(e) => results[i] = Some(Err(e.into())),
            }
        }
        for chunk in pending.chunks(batch) {
            let views: Vec<ArrayView3<'_, f32>> = chunk.iter().map(|c| c.2.input.view()).collect();
            match self.run_body(&views) {
                Ok(outs) => {
                    for ((i, key, Preprocessed { view, warnings, .. }, decode_ms), mut l) in
                        chunk.iter().cloned().zip(outs)
                    {
                        if let Err(e) = self.check_finite(&l, &paths[i]) {
                            results[i] = Some(Err(e));
                            continue;
                        }
                        l.timings.decode_ms = decode_ms;
                        let l = Arc::new(Loaded { path: paths[i].clone(), view, warnings, ..l });
                        self.cache.insert(key, l.clone());
                        results[i] = Some(Ok(l));
                    }
                }
                Err(e) => {
                    let msg = e.to_string();
                    for (i, ..) in chunk {
                        results[*i] =
                            Some(Err(EngineError::Run { path: paths[*i].clone(), detail: msg.clone() }.into()));
                    }
                }
            }
        }
        results.into_iter().map(|r| r.expect("every image has a result")).collect()
    }

    /// Scores and target activations must be finite: a model that outputs NaN (a broken
    /// export, an overflow on this input) used to show `NaN%` for every class, call class 0
    /// the top-1 and blame the gradient for a blank map.
    fn check_finite(&self, l: &Loaded, image: &Path) -> Result<(), ExplainError> {
        let what = match non_finite_summary(l.scores.raw()) {
            Some(w) => format!("scores: {w}"),
            None => match non_finite_summary(l.activation.iter()) {
                Some(w) => format!("activations of layer {}: {w}", self.target.tensor),
                None => return Ok(()),
            },
        };
        Err(ExplainError::NonFinite { image: image.to_owned(), model: self.model.path.clone(), what })
    }

    /// Run the body on samples; returns one [`Loaded`] per sample (paths and views unset).
    fn run_body(&mut self, samples: &[ArrayView3<'_, f32>]) -> Result<Vec<Loaded>, EngineError> {
        self.body_batch(imaging::batch(samples).view())
    }

    /// Run the body on an input batch, bypassing the cache; one [`Loaded`] per image (with
    /// empty path and view: the caller knows them).
    pub fn body_batch(&mut self, batch: ArrayView4<'_, f32>) -> Result<Vec<Loaded>, EngineError> {
        let n = batch.dim().0;
        let samples: Vec<ArrayView3<'_, f32>> = batch.outer_iter().collect();
        let t0 = Instant::now();
        let out = self.explainer.body(batch.into_dyn())?;
        let body_ms = ms(t0) / n as f64;
        let head = self.model.head;
        Ok((0..samples.len())
            .map(|i| {
                let row: Vec<f32> = out.output.index_axis(Axis(0), i).iter().copied().collect();
                Loaded {
                    path: PathBuf::new(),
                    view: RgbImage::new(0, 0),
                    input: samples[i].to_owned(),
                    scores: ClassScores::from_output(&row, head),
                    activation: out.activation.slice_axis(Axis(0), (i..i + 1).into()).to_owned(),
                    side: out.side.iter().map(|s| slice_batch(s, i, samples.len())).collect(),
                    timings: Timings { body_ms, ..Timings::default() },
                    warnings: Vec::new(),
                }
            })
            .collect())
    }

    /// The seed vector for one image, over the model's outputs (a class index is one a user
    /// sees: a binary head's 0 is the complement of its one output).
    pub fn seed_row(&self, seed: &Seed) -> Result<Array1<f32>, ExplainError> {
        let k = self.model.user_classes();
        let check = |i: usize| if i < k { Ok(i) } else { Err(ExplainError::ClassOutOfRange { index: i, classes: k }) };
        let mut row = Array1::zeros(k);
        match seed {
            Seed::Class(c) => row[check(*c)?] = 1.0,
            Seed::Contrast { positive, negative } => {
                row[check(*positive)?] += 1.0;
                row[check(*negative)?] -= 1.0;
            }
            Seed::Vector(v) if v.len() == k => row.assign(&Array1::from(v.clone())),
            Seed::Vector(v) => return Err(ExplainError::ClassOutOfRange { index: v.len(), classes: k }),
        }
        Ok(Array1::from(self.model.head.output_seed(row.as_slice().expect("contiguous"))))
    }

    /// A tensor of the target layer (activations or gradients, `[1, ...]` as ONNX Runtime
    /// gives it) as the canonical `[C, h, w]`: the one place where a layout is undone.
    fn chw(&self, a: &ArrayD<f32>) -> Result<Array3<f32>, EngineError> {
        self.target.layout.to_chw(a.view(), 0).map_err(|e| self.layout_error(&self.model.path, &e))
    }

    /// A target tensor that does not fit its layout, as a run error naming the layer.
    fn layout_error(&self, path: &Path, e: &crate::grad::layout::LayoutError) -> EngineError {
        EngineError::Run { path: path.to_owned(), detail: format!("layer `{}`: {e}", self.target.tensor) }
    }

    /// Head run for one image: (score vector, gradient `[C,h,w]`).
    pub fn head(&mut self, loaded: &Loaded, seed: &Seed) -> Result<(Vec<f32>, Array3<f32>), ExplainError> {
        if let Some(e) = self.explainer.gradient_error() {
            return Err(e.into());
        }
        let key = SeedKey::of(seed)
            .filter(|_| self.config.cache_bytes > 0 && !loaded.path.as_os_str().is_empty())
            .map(|s| (ImageKey::of(&loaded.path), s));
        if let Some(hit) = key.as_ref().and_then(|k| self.heads.get(k)) {
            if let HeadGrad::Full(g) = &hit.1 {
                return Ok((hit.0.clone(), g.clone()));
            }
        }
        let row = self.seed_row(seed)?;
        let (scores, gradient) = self.head_row(loaded, &row)?;
        if let Some(k) = key {
            self.heads.insert(k, Arc::new(HeadOut(scores.clone(), HeadGrad::Full(gradient.clone()))));
        }
        Ok((scores, gradient))
    }

    /// Grad-CAM's channel weights for one image and seed, for less than the gradient costs: a
    /// cached head result, else a backward that stops at the weights (ViT-B/16: the
    /// in-projection's product runs on one row instead of 197), on the image's kept tape or
    /// after the head's forward (keeping its tape). `None` where the head has no such form.
    fn grad_cam_weights(&mut self, loaded: &Loaded, seed: &Seed) -> Result<Option<Array1<f32>>, ExplainError> {
        if let Some(e) = self.explainer.gradient_error() {
            return Err(e.into());
        }
        // As in `head_row`: results are kept only for an image the caches can name.
        let keeps = self.config.cache_bytes > 0 && !loaded.path.as_os_str().is_empty();
        let image = keeps.then(|| ImageKey::of(&loaded.path));
        let key = image.clone().zip(SeedKey::of(seed));
        if let Some(hit) = key.as_ref().and_then(|k| self.heads.get(k)) {
            return Ok(Some(match &hit.1 {
                HeadGrad::Full(g) => cam::gradient::grad_cam_weights(g.view()),
                HeadGrad::Weights(w) => w.clone(),
            }));
        }
        if !self.explainer.pools() {
            return Ok(None);
        }
        let row = self.seed_row(seed)?;
        let row = row.view().insert_axis(Axis(0));
        let side: Vec<_> = loaded.side.iter().map(|s| s.view()).collect();
        let a = loaded.activation.view();
        let (scores, w) = match image.as_ref().and_then(|i| self.tapes.get(i)) {
            Some(tape) => {
                let w = self.explainer.pooled_backward(&tape, a, &side, row.view())?;
                (tape.scores.iter().copied().collect::<Vec<f32>>(), w)
            }
            None => {
                let out = self.explainer.head_pooled(a, &side, row.view(), image.is_some())?;
                if let (Some(i), Some(tape)) = (image, out.tape) {
                    self.tapes.insert(i, Arc::new(tape));
                }
                (out.scores.iter().copied().collect(), out.weights)
            }
        };
        let w: Array1<f32> = w.iter().copied().collect();
        if let Some(k) = key {
            self.heads.insert(k, Arc::new(HeadOut(scores, HeadGrad::Weights(w.clone()))));
        }
        Ok(Some(w))
    }

    /// Change the body cache's byte budget (the head cache gets an eighth of it, the tapes a
    /// quarter; 0 turns all off). Clears them: the benchmark measures with them off, then the
    /// warmed class switch.
    pub fn set_cache_bytes(&mut self, bytes: usize) {
        self.config.cache_bytes = bytes;
        self.cache = LruCache::new(bytes);
        self.heads = LruCache::new(bytes / 8);
        self.tapes = LruCache::new(bytes / 4);
    }

    /// Open one more of the gradient sessions that open on first use; false when none is
    /// left (see [`super::explainer::Explainer::open_next`]).
    pub fn open_next_session(&mut self) -> Result<bool, ExplainError> {
        Ok(self.explainer.open_next()?)
    }

    /// Compute and cache the head results of `classes` for an image ahead of need (the
    /// inspector does this for the shown image's top classes while the user looks at it),
    /// as `method` will read them: Grad-CAM its channel weights alone, which cost less.
    /// Returns how many were computed (cached ones cost nothing).
    pub fn warm(&mut self, loaded: &Loaded, classes: &[usize], method: Method) -> Result<usize, ExplainError> {
        if self.config.cache_bytes == 0 || loaded.path.as_os_str().is_empty() {
            return Ok(0);
        }
        let image = ImageKey::of(&loaded.path);
        let weights = method == Method::GradCam && self.explainer.pools();
        if weights {
            // The first class switch on a kept tape should not wait for its session.
            self.explainer.prepare_pooled()?;
        }
        let mut computed = 0;
        for &c in classes {
            let warm = match self.heads.get(&(image.clone(), SeedKey::Class(c))) {
                Some(hit) => weights || matches!(hit.1, HeadGrad::Full(_)),
                None => false,
            };
            if !warm {
                if weights {
                    self.grad_cam_weights(loaded, &Seed::Class(c))?;
                } else {
                    self.head(loaded, &Seed::Class(c))?;
                }
                computed += 1;
            }
        }
        Ok(computed)
    }

    /// [`Engine::head`] with the seed over the model's outputs (see [`Engine::seed_row`]).
    fn head_row(&mut self, loaded: &Loaded, row: &Array1<f32>) -> Result<(Vec<f32>, Array3<f32>), ExplainError> {
        let row = row.view().insert_axis(Axis(0));
        let side: Vec<_> = loaded.side.iter().map(|s| s.view()).collect();
        // A tape is kept only for a split head and an image the caches can name.
        let keeps = self.explainer.splits() && self.config.cache_bytes > 0 && !loaded.path.as_os_str().is_empty();
        let Some(key) = keeps.then(|| ImageKey::of(&loaded.path)) else {
            let out = self.explainer.head(loaded.activation.view(), &side, row.view())?;
            return Ok((out.scores.iter().copied().collect(), self.chw(&out.gradient)?));
        };
        if let Some(tape) = self.tapes.get(&key) {
            let gradient = self.explainer.backward(&tape, loaded.activation.view(), &side, row.view())?;
            return Ok((tape.scores.iter().copied().collect(), self.chw(&gradient)?));
        }
        let (out, tape) = self.explainer.head_keeping_tape(loaded.activation.view(), &side, row.view())?;
        if let Some(tape) = tape {
            self.tapes.insert(key, Arc::new(tape));
        }
        Ok((out.scores.iter().copied().collect(), self.chw(&out.gradient)?))
    }

    /// Compute `method`'s map for one image and seed.
    pub fn map(&mut self, loaded: &Loaded, method: Method, seed: &Seed) -> Result<MapOutput, ExplainError> {
        let cam_err = |source| ExplainError::Cam { path: loaded.path.clone(), source };
        let a = self.chw(&loaded.activation)?;
        let mut t = Timings::default();
        let seed_row = self.seed_row(seed)?;
        let needs = method.needs();
        if needs.gradients || needs.input_gradients {
            if let Some(e) = self.explainer.gradient_error() {
                return Err(e.into());
            }
        }
        let (raw, guided) = match needs.model_runs {
            // Grad-CAM reads the gradient only through its channel means, which may cost less.
            ModelRuns::None if method == Method::GradCam && !needs.input_gradients => {
                let t0 = Instant::now();
                let weights = self.grad_cam_weights(loaded, seed)?;
                let g = if weights.is_some() { None } else { Some(self.head(loaded, seed)?.1) };
                t.head_ms = ms(t0);
                let t0 = Instant::now();
                let raw = match (&weights, &g) {
                    (Some(w), _) => cam::weighted_map(a.view(), w.view()),
                    (None, g) => cam::compute(method, a.view(), g.as_ref().map(|g| g.view())),
                }
                .map_err(cam_err)?;
                t.map_ms = ms(t0);
                (raw, None)
            }
            ModelRuns::None => {
                let g = if needs.gradients {
                    let t0 = Instant::now();
                    let (_, g) = self.head(loaded, seed)?;
                    t.head_ms = ms(t0);
                    Some(g)
                } else {
                    None
                };
                let t0 = Instant::now();
                let raw = cam::compute(method, a.view(), g.as_ref().map(|g| g.view())).map_err(cam_err)?;
                t.map_ms = ms(t0);
                let guided = if needs.input_gradients {
                    let t0 = Instant::now();
                    let ig = self.input_gradient(loaded, &seed_row)?;
                    t.head_ms += ms(t0);
                    let t0 = Instant::now();
                    let (h, w) = (ig.dim().1, ig.dim().2);
                    let cam_up = crate::render::upsample_map(raw.normalize().map.view(), h, w);
                    let gg = cam::guided::guided_grad_cam(ig.view(), cam_up.view()).map_err(cam_err)?;
                    t.map_ms += ms(t0);
                    Some(gg)
                } else {
                    None
                };
                (raw, guided)
            }
            ModelRuns::MaskedInputs => {
                let t0 = Instant::now();
                let scores = self.masked_scores(loaded, &a, &seed_row)?;
                t.head_ms = ms(t0);
                let t0 = Instant::now();
                let raw = cam::score::score_cam(a.view(), &scores).map_err(cam_err)?;
                t.map_ms = ms(t0);
                (raw, None)
            }
            ModelRuns::AblatedActivations => {
                let t0 = Instant::now();
                let (original, ablated) = self.ablated_scores(loaded, &a, &seed_row)?;
                t.head_ms = ms(t0);
                let t0 = Instant::now();
                let raw = cam::ablation::ablation_cam(a.view(), original, &ablated).map_err(cam_err)?;
                t.map_ms = ms(t0);
                (raw, None)
            }
        };
        let normalized = raw.normalize();
        Ok(MapOutput { raw, normalized, guided, timings: t })
    }

    /// Score vectors of a batch of model inputs through the scores model (the forward model
    /// ending at the differentiated score), `mask_batch()` at a time.
    pub fn score_inputs(&mut self, inputs: ArrayView4<'_, f32>) -> Result<Array2<f32>, EngineError> {
        if self.scores_session.is_none() {
            // Rebuilt from the analysis: the explainer's plan no longer holds the model.
            // The forward part is all Score-CAM needs (it works where a rule is missing).
            let plan = self
                .model
                .analysis
                .plan_forward(&self.target, self.config.score)
                .map_err(|source| EngineError::Grad { path: self.model.path.clone(), source })?;
            self.scores_session =
                Some(GraphSession::from_model(&plan.scores_model(), &self.model.path, &self.config.session)?);
        }
        let name = self.explainer.plan.names.input.clone();
        let score = self.explainer.plan.names.score.clone();
        let batch = if self.model.fixed_batch { 1 } else { self.mask_batch() };
        // One batch size on CUDA (see `imaging::pad_batch`): Score-CAM's last, shorter batch
        // made every Score-CAM call 0.9 s slower on an H200.
        let pad = self.explainer.provider().0 == Provider::Cuda;
        let session = self.scores_session.as_mut().expect("just created");
        let n = inputs.dim().0;
        let mut out = Array2::zeros((n, self.model.classes));
        let mut start = 0;
        while start < n {
            let end = (start + batch).min(n);
            let chunk = inputs.slice(s![start..end, .., .., ..]);
            let chunk = if pad { crate::imaging::pad_batch(chunk, batch) } else { chunk.into() };
            let r = session.run(&[(name.as_str(), chunk.view().into_dyn())], &[score.as_str()])?;
            let r = r.into_iter().next().expect("one output");
            let r = r.into_dimensionality::<ndarray::Ix2>().expect("[N, classes]");
            out.slice_mut(s![start..end, ..]).assign(&r.slice(s![..end - start, ..]));
            start = end;
        }
        Ok(out)
    }

    /// Score-CAM's per-channel scores: `seed · score(input ⊙ mask_c)`. A mask depends on
    /// its channel only up to a positive affine change (it is min-max normalised), so
    /// channels with the same normalised pattern share one masked input, and constant
    /// channels (all-zero masks: most channels of a ReLU map are often empty) share one too.
    /// Each distinct masked input is scored once.
    fn masked_scores(
        &mut self,
        loaded: &Loaded,
        a: &Array3<f32>,
        seed: &Array1<f32>,
    ) -> Result<Vec<f32>, ExplainError> {
        let layout = self.model.card.input.layout;
        let c = a.dim().0;
        // Group channels by normalised pattern; `None` marks constant channels.
        let mut groups: std::collections::HashMap<Option<Vec<u32>>, Vec<usize>> = std::collections::HashMap::new();
        for (i, ch) in a.outer_iter().enumerate() {
            let (lo, hi) = ch.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
            let key = (hi > lo).then(|| ch.iter().map(|&v| ((v - lo) / (hi - lo)).to_bits()).collect());
            groups.entry(key).or_default().push(i);
        }
        let mut reps: Vec<(Option<usize>, Vec<usize>)> =
            groups.into_iter().map(|(k, members)| (k.map(|_| members[0]), members)).collect();
        reps.sort_by_key(|(_, m)| m[0]);
        let (d0, d1, d2) = loaded.input.dim();
        let mut scores = vec![0f32; c];
        let batch = self.mask_batch();
        // One buffer for every batch, filled in parallel: the model is idle meanwhile, and
        // building the masks is a third of Score-CAM's time on a GPU.
        let mut buffer = Array4::zeros((batch.min(reps.len()), d0, d1, d2));
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let input = loaded.input.view();
        for chunk in reps.chunks(batch) {
            let mut inputs = buffer.slice_mut(s![..chunk.len(), .., .., ..]);
            let per_thread = chunk.len().div_ceil(threads);
            std::thread::scope(|scope| {
                for (mut outs, reps) in inputs.axis_chunks_iter_mut(Axis(0), per_thread).zip(chunk.chunks(per_thread)) {
                    scope.spawn(move || {
                        for (out, (rep, _)) in outs.outer_iter_mut().zip(reps) {
                            match rep {
                                Some(ch) => {
                                    cam::score::write_masked_input(input, layout, a.index_axis(Axis(0), *ch), out)
                                }
                                // A constant channel's mask is all zero.
                                None => {
                                    let mut out = out;
                                    out.fill(0.0);
                                }
                            }
                        }
                    });
                }
            });
            let out = self.score_inputs(inputs.view())?;
            for (k, (_, members)) in chunk.iter().enumerate() {
                let s = out.row(k).dot(seed);
                for &m in members {
                    scores[m] = s;
                }
            }
        }
        Ok(scores)
    }

    /// Ablation-CAM's scores: the unablated score and one per ablated channel, through the
    /// head only (batched when the head allows it).
    fn ablated_scores(
        &mut self,
        loaded: &Loaded,
        a: &Array3<f32>,
        seed: &Array1<f32>,
    ) -> Result<(f32, Vec<f32>), ExplainError> {
        let (head_scores, _) = self.head_row(loaded, seed)?;
        let original = Array1::from(head_scores).dot(seed);
        let c = a.dim().0;
        // Not `mask_batch`: on CUDA, 128 ablated copies per head run were 3x slower than 16
        // (the activations cross to the device and back for every run).
        let batch = if self.head_batches() { self.config.batch.max(1) * 4 } else { 1 };
        let mut ablated = Vec::with_capacity(c);
        let mut start = 0;
        while start < c {
            let end = (start + batch).min(c);
            let chw = cam::ablation::ablated_batch(a.view(), start..end)
                .map_err(|source| ExplainError::Cam { path: loaded.path.clone(), source })?;
            let acts = self
                .target
                .layout
                .from_chw(chw, loaded.activation.view())
                .map_err(|e| self.layout_error(&loaded.path, &e))?;
            let n = end - start;
            let side: Vec<ArrayD<f32>> = loaded.side.iter().map(|s| repeat_batch(s, n)).collect();
            let side_views: Vec<_> = side.iter().map(|s| s.view()).collect();
            let scores = self.explainer.scores(acts.view(), &side_views)?;
            let sc = scores.into_dimensionality::<ndarray::Ix2>().expect("[N, classes]");
            ablated.extend(sc.outer_iter().map(|r| r.dot(seed)));
            start = end;
        }
        Ok((original, ablated))
    }

    /// Guided-backprop gradient of `seed · score` w.r.t. the input image, `[3, H, W]`.
    fn input_gradient(&mut self, loaded: &Loaded, seed: &Array1<f32>) -> Result<Array3<f32>, ExplainError> {
        if self.guided.is_none() {
            let input = self.model.analysis.input_target();
            self.guided = Some(Explainer::new(
                &self.model.analysis,
                &self.model.path,
                &input,
                self.config.score,
                true,
                &self.config.session,
            )?);
        }
        let ex = self.guided.as_mut().expect("just created");
        let x = loaded.input.view().insert_axis(Axis(0)).into_dyn().to_owned();
        let row = seed.view().insert_axis(Axis(0));
        let out = ex.head(x.view(), &[], row)?;
        let g = out.gradient.into_dimensionality::<ndarray::Ix4>().expect("4-D input gradient");
        let one = g.index_axis(Axis(0), 0);
        Ok(match self.model.card.input.layout {
            Layout::Nchw => one.to_owned(),
            Layout::Nhwc => one.permuted_axes([2, 0, 1]).as_standard_layout().to_owned(),
        })
    }
}

fn resolve(model: &LoadedModel, layer: Option<&str>) -> Result<Candidate, EngineError> {
    model.analysis.resolve_layer(layer).map_err(|source| EngineError::Grad { path: model.path.clone(), source })
}

/// Image `i` of a batched side tensor (whose batch axis is 0 when it follows the batch).
fn slice_batch(t: &ArrayD<f32>, i: usize, n: usize) -> ArrayD<f32> {
    if t.ndim() > 0 && t.shape()[0] == n { t.slice_axis(Axis(0), (i..i + 1).into()).to_owned() } else { t.clone() }
}

/// A `[1, ...]` tensor repeated `n` times along axis 0.
fn repeat_batch(t: &ArrayD<f32>, n: usize) -> ArrayD<f32> {
    if t.ndim() == 0 || t.shape()[0] != 1 || n == 1 {
        return t.clone();
    }
    let mut shape = t.shape().to_vec();
    shape[0] = n;
    t.broadcast(IxDyn(&shape)).expect("batch axis of size 1").to_owned()
}

fn ms(t0: Instant) -> f64 {
    t0.elapsed().as_secs_f64() * 1e3
}
