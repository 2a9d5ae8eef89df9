//! Triage: the model's predictions over a whole dataset against ground truth, fast enough to
//! rescan 10,000 images, and cached so reopening a folder is instant.
//!
//! The scan runs the plain model (scores only: no activations are kept for thousands of
//! images) in batches, decoding the next batches on other threads while ONNX Runtime runs the
//! current one. Results already in the on-disk cache (keyed by model + card hash, file path,
//! size and mtime) are not recomputed. The TUI runs [`scan`] on a thread of its own; the
//! `triage` command runs it in the foreground.

use std::path::{Path, PathBuf};
use std::sync::mpsc;
use std::time::Instant;

use ndarray::{Array3, Array4, Axis};

use crate::dataset::cache::{self, CacheError, FileStamp, LoadOutcome, ModelHash, ScanCache};
use crate::dataset::paths::ImagePaths;
use crate::dataset::stats::ImageResult;
use crate::dataset::truth::GroundTruth;
use crate::engine::{Classifier, EngineError, LoadedModel, Provider, SessionOptions};
use crate::imaging;
use crate::model::ModelCard;

/// The smallest scan batch on CUDA.
pub const CUDA_SCAN_BATCH: usize = 32;

/// How many classes each result keeps (top-5 accuracy needs 5; more helps the TUI).
pub const TOP_K: usize = 10;

/// Scan settings.
#[derive(Debug, Clone)]
pub struct ScanOptions {
    /// Images per model run (on CUDA at least [`CUDA_SCAN_BATCH`]).
    pub batch: usize,
    /// Cache folder; `None` disables the cache.
    pub cache_dir: Option<PathBuf>,
    pub session: SessionOptions,
    /// Decoding threads; `None`: [`decoder_threads`] for the provider and the machine.
    pub decoders: Option<usize>,
}

/// Decoding threads for a scan. One keeps up with ONNX Runtime on a small CPU machine (and
/// leaves the other core to the model and the UI); with many cores or a GPU, decoding on one
/// thread was the bottleneck: on a 16-core H200 machine the scan reached 0.58x the plain
/// forward on the CPU and 0.15x on CUDA.
pub fn decoder_threads(provider: Provider, cores: usize) -> usize {
    match provider {
        Provider::Cpu => (cores / 4).clamp(1, 8),
        Provider::Cuda => (cores / 2).clamp(1, 8),
    }
}

impl ScanOptions {
    /// Batches of 4 (on CPU, ONNX Runtime is as fast per image at batch 2-4 as at 16, with a
    /// fraction of the activation memory), the user cache directory (if one can be found).
    pub fn new(session: SessionOptions) -> Self {
        Self { batch: 4, cache_dir: cache::default_dir().ok(), session, decoders: None }
    }
}

/// One event of a running scan.
#[derive(Debug, Clone)]
pub enum ScanUpdate {
    /// The result for `images[index]`, with the decoder's warnings (a truncated file accepted
    /// with `--allow-truncated`: its scores may be wrong, so every output must say so).
    Result { index: usize, result: ImageResult, cached: bool, warnings: Vec<String> },
    /// `images[index]` could not be read or decoded, or the model scored it NaN (`fault`).
    Unreadable { index: usize, error: String, fault: crate::engine::Fault },
}

/// What a finished (or cancelled) scan did.
#[derive(Debug, Clone, Default)]
pub struct ScanReport {
    pub computed: usize,
    pub from_cache: usize,
    /// Images that could not be read or decoded.
    pub unreadable: usize,
    /// Images the model scored NaN or infinite (the files are fine: see [`crate::engine::Fault`]).
    pub non_finite: usize,
    pub cancelled: bool,
    /// Decoding threads the scan used (0 when everything came from the cache).
    pub decoders: usize,
    /// Images per model run the scan used (0 when everything came from the cache).
    pub batch: usize,
    /// What happened to the cache file (loaded, discarded and why, or a write problem).
    pub cache_note: Option<String>,
    pub seconds: f64,
}

/// Why a scan could not run.
#[derive(Debug, thiserror::Error)]
pub enum TriageError {
    #[error(transparent)]
    Engine(#[from] EngineError),
    #[error(transparent)]
    Cache(#[from] CacheError),
}

/// What a scan needs of a model: its file, card and tensor names, without the analysed graph.
/// The inspector's scan thread holds one while the engine owns the [`LoadedModel`]; cloning
/// that would copy the weights (19 MB for the bundled model) for nothing, since the scan opens
/// its own session from the file.
#[derive(Debug, Clone)]
pub struct ScanModel {
    pub path: PathBuf,
    pub card: ModelCard,
    pub input: String,
    pub output: String,
    pub classes: usize,
    pub fixed_batch: bool,
    pub head: crate::scores::Head,
}

impl From<&LoadedModel> for ScanModel {
    fn from(m: &LoadedModel) -> Self {
        Self {
            path: m.path.clone(),
            card: m.card.clone(),
            input: m.input.clone(),
            output: m.output.clone(),
            classes: m.user_classes(),
            fixed_batch: m.fixed_batch,
            head: m.head,
        }
    }
}

/// The hash the cache is keyed by: the model's bytes and its card (preprocessing changes the
/// scores as much as the weights do).
pub fn model_key(model: &ScanModel) -> Result<ModelHash, CacheError> {
    let weights = ModelHash::of_file(&model.path)?;
    let card = format!("{:?}", model.card.input);
    Ok(ModelHash::of_bytes(&[&weights.0[..], card.as_bytes()].concat()))
}

/// A decoded batch on its way to the model.
struct Decoded {
    indices: Vec<usize>,
    stamps: Vec<Option<FileStamp>>,
    samples: Vec<Array3<f32>>,
    warnings: Vec<Vec<String>>,
    errors: Vec<(usize, String)>,
}

/// Scan `images` (in order) under `root`. `truth` gives each image's class; `on_update` sees
/// every result as it arrives and may return `false` to cancel.
pub fn scan<I: ImagePaths + Sync + ?Sized>(
    model: &ScanModel,
    images: &I,
    root: &Path,
    truth: &mut GroundTruth,
    opts: &ScanOptions,
    mut on_update: impl FnMut(ScanUpdate) -> bool,
) -> Result<ScanReport, TriageError> {
    let t0 = Instant::now();
    let mut report = ScanReport::default();
    let mut cache = match &opts.cache_dir {
        Some(dir) => match ScanCache::open(dir, &model_key(model)?, root, model.classes) {
            Ok((c, outcome)) => {
                report.cache_note = match outcome {
                    LoadOutcome::Discarded { reason } => Some(format!("scan cache discarded ({reason}); rebuilding")),
                    LoadOutcome::Recovered { entries, ignored_bytes } => Some(format!(
                        "scan cache: kept {entries} entries, cut off {ignored_bytes} bytes of an interrupted or damaged save"
                    )),
                    _ => None,
                };
                Some(c)
            }
            Err(e) => {
                report.cache_note = Some(e.to_string());
                None
            }
        },
        None => None,
    };
    // Results from the cache first: a reopened folder fills in at once.
    let mut pending = Vec::new();
    for i in 0..images.len() {
        let path = images.path(i);
        let path: &Path = &path;
        let stamp = FileStamp::read(path).ok();
        let hit = match (&cache, &stamp) {
            (Some(c), Some(s)) => c.lookup_result(path, s, truth.truth(path)),
            _ => None,
        };
        match hit {
            Some(result) => {
                report.from_cache += 1;
                if !on_update(ScanUpdate::Result { index: i, result, cached: true, warnings: Vec::new() }) {
                    report.cancelled = true;
                    return finish(report, cache, t0);
                }
            }
            None => pending.push(i),
        }
    }
    if pending.is_empty() {
        return finish(report, cache, t0);
    }
    let mut classifier = Classifier::open(&model.path, &model.input, &model.output, &opts.session)?;
    let batch = match (model.fixed_batch, classifier.provider()) {
        (true, _) => 1,
        // A GPU's throughput keeps rising with the batch (the H200 ran the plain forward at
        // 5,373 images/s at batch 32) and the activations stay in GPU memory.
        (false, Provider::Cuda) => opts.batch.max(CUDA_SCAN_BATCH),
        (false, Provider::Cpu) => opts.batch.max(1),
    };
    report.batch = batch;
    let spec = model.card.input.clone();
    let head = model.head;
    // Decode on other threads, ahead of the model: decoder `w` takes batches w, w + n, ...
    // and the model takes them back in order, so results arrive in the images' order and at
    // most two batches per decoder wait in memory.
    let decoders = opts
        .decoders
        .unwrap_or_else(|| {
            let cores = std::thread::available_parallelism().map_or(1, |n| n.get());
            decoder_threads(classifier.provider(), cores)
        })
        .max(1);
    report.decoders = decoders;
    // Decoders borrow the listing and take index chunks of `pending`: no path is copied, so a
    // million-image scan holds its listing once (scoped threads end before `scan` returns).
    let n_chunks = pending.len().div_ceil(batch);
    let (pending, spec) = (&pending, &spec);
    std::thread::scope(|scope| -> Result<(), TriageError> {
        let mut receivers = Vec::with_capacity(decoders);
        for w in 0..decoders {
            let (tx, rx) = mpsc::sync_channel::<Decoded>(1);
            receivers.push(rx);
            scope.spawn(move || {
                for chunk in pending.chunks(batch).skip(w).step_by(decoders) {
                    if tx.send(decode_batch(chunk, images, spec)).is_err() {
                        return; // the scan was cancelled
                    }
                }
            });
        }
        let result = (|| -> Result<(), TriageError> {
            let in_order = (0..n_chunks).map_while(|k| receivers[k % decoders].recv().ok());
            let mut since_save = 0;
            let mut last_save = Instant::now();
            let mut last_save_took = std::time::Duration::ZERO;
            'batches: for mut d in in_order {
                for (index, error) in d.errors {
                    report.unreadable += 1;
                    if !on_update(ScanUpdate::Unreadable { index, error, fault: crate::engine::Fault::Unreadable }) {
                        report.cancelled = true;
                        break 'batches;
                    }
                }
                if d.samples.is_empty() {
                    continue;
                }
                let views: Vec<_> = d.samples.iter().map(|s| s.view()).collect();
                let x: Array4<f32> = imaging::batch(&views);
                let out = if classifier.provider() == Provider::Cuda {
                    // One batch size on CUDA (see `imaging::pad_batch`).
                    classifier.run(imaging::pad_batch(x.view(), batch).view())?
                } else {
                    classifier.run(x.view())?
                };
                for (k, row) in out.axis_iter(Axis(0)).take(d.indices.len()).enumerate() {
                    let row: Vec<f32> = row.to_vec();
                    let i = d.indices[k];
                    let path = images.path(i);
                    let path: &Path = &path;
                    if let Some(what) = crate::engine::non_finite_summary(&row) {
                        // Never ranked or cached: NaN scores would sort anywhere and read as class 0.
                        let error = crate::engine::ExplainError::NonFinite {
                            image: path.to_path_buf(),
                            model: model.path.clone(),
                            what: format!("scores: {what}"),
                        };
                        report.non_finite += 1;
                        let (error, fault) = (error.to_string(), error.fault());
                        if !on_update(ScanUpdate::Unreadable { index: i, error, fault }) {
                            report.cancelled = true;
                            break 'batches;
                        }
                        continue;
                    }
                    let probs = crate::scores::ClassScores::from_output(&row, head).probabilities;
                    let warnings = std::mem::take(&mut d.warnings[k]);
                    // Results with a warning are not cached: a cached result would come back without it.
                    if let (Some(c), Some(s), true) = (cache.as_mut(), d.stamps[k], warnings.is_empty()) {
                        c.insert(path, s, &probs);
                    }
                    report.computed += 1;
                    let result = ImageResult::from_probabilities(path.to_path_buf(), truth.truth(path), &probs, TOP_K);
                    if !on_update(ScanUpdate::Result { index: i, result, cached: false, warnings }) {
                        report.cancelled = true;
                        break 'batches;
                    }
                }
                since_save += d.samples.len();
                // Save now and then so an interrupted scan (Ctrl-C, a killed job) keeps its work: after
                // 5 s, or 2,000 images, and never sooner than ten times the last save's duration. A save
                // appends only the records made since the last one (the cache is a log), so it costs
                // the same at the millionth image as at the first.
                let due = std::time::Duration::from_secs(5).max(last_save_took * 10);
                if since_save > 0
                    && (since_save >= 2000 || last_save.elapsed() > due)
                    && last_save.elapsed() > last_save_took * 10
                {
                    since_save = 0;
                    if let Some(c) = cache.as_mut() {
                        let t = Instant::now();
                        if let Err(e) = c.save() {
                            report.cache_note = Some(e.to_string());
                        }
                        last_save_took = t.elapsed();
                    }
                    last_save = Instant::now();
                }
            }
            Ok(())
        })();
        drop(receivers); // a decoder blocked on a full channel sees the scan is over
        result
    })?;
    finish(report, cache, t0)
}

/// Decode and preprocess one batch of images; unreadable ones are listed, not fatal.
fn decode_batch<I: ImagePaths + ?Sized>(chunk: &[usize], images: &I, spec: &crate::model::InputSpec) -> Decoded {
    let mut d = Decoded { indices: vec![], stamps: vec![], samples: vec![], warnings: vec![], errors: vec![] };
    for (i, p) in chunk.iter().map(|&i| (i, images.path(i))) {
        let p: &Path = &p;
        match imaging::load_image(p, &spec.decode_options()) {
            Ok(decoded) => {
                d.indices.push(i);
                d.stamps.push(FileStamp::read(p).ok());
                d.samples.push(imaging::normalize(&imaging::model_view(&decoded.rgb, spec), spec));
                d.warnings.push(decoded.warnings);
            }
            Err(e) => d.errors.push((i, e.to_string())),
        }
    }
    d
}

fn finish(mut report: ScanReport, cache: Option<ScanCache>, t0: Instant) -> Result<ScanReport, TriageError> {
    if let Some(mut c) = cache {
        if let Err(e) = c.save() {
            report.cache_note = Some(e.to_string());
        }
    }
    report.seconds = t0.elapsed().as_secs_f64();
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_decoder_on_a_small_machine_more_with_many_cores_and_most_for_a_gpu() {
        assert_eq!(decoder_threads(Provider::Cpu, 2), 1);
        assert_eq!(decoder_threads(Provider::Cpu, 16), 4);
        assert_eq!(decoder_threads(Provider::Cuda, 2), 1);
        assert_eq!(decoder_threads(Provider::Cuda, 16), 8);
        assert_eq!(decoder_threads(Provider::Cuda, 64), 8);
    }
}
