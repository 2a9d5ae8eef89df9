//! `camscope triage DIR [--labels FILE.csv] --out OUTDIR`: predictions against ground truth,
//! accuracy and confusions, and predicted / true / contrastive maps for every mistake.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Result, bail};
use serde::{Deserialize, Serialize};

use camscope::cam::Method;
use camscope::dataset::journal::Journal;
use camscope::dataset::json_stream;
use camscope::dataset::paths::ImagePaths;
use camscope::dataset::shard::Shard;
use camscope::dataset::stats::{self, ClassProb, ImageResult, Outcome};
use camscope::dataset::table::{self, TriageRow};
use camscope::dataset::truth::{CsvTruth, FolderTruth, GroundTruth};
use camscope::engine::{Engine, EngineConfig, Fault, Seed};
use camscope::grad::ScoreKind;
use camscope::model::Labels;
use camscope::render::{self, Colormap};
use camscope::triage::{self, ScanOptions, ScanUpdate};

use super::batch::{EXIT_PARTIAL, check_folders, decodes, stamp};
use super::merge::{Identity, MergedRows, ShardFile, ShardHead, open_shards};
use super::progress::Progress;
use super::rel_name;
use crate::ModelArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct TriageArgs {
    /// Dataset folder (ImageFolder layout: the parent folder names the true class)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Ground truth from a CSV with columns path,label (label as name or index) instead of folder names
    #[arg(long, value_name = "FILE.csv")]
    pub labels: Option<PathBuf>,
    /// Output folder (created; must not overlap DIR)
    #[arg(long, short = 'o', value_name = "OUTDIR")]
    pub out: PathBuf,
    /// Target layer for the maps (default: the last map before pooling)
    #[arg(long, short = 'l')]
    pub layer: Option<String>,
    /// CAM method for the maps
    #[arg(long, default_value = "gradcam")]
    pub method: Method,
    #[arg(long, default_value = "logit", value_name = "logit|prob")]
    pub score: ScoreKind,
    #[arg(long, default_value = "jet")]
    pub colormap: Colormap,
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f64,
    /// Images per model run (on CUDA at least 32)
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    /// Do not read or write the scan cache
    #[arg(long)]
    pub no_cache: bool,
    #[command(flatten)]
    pub shard: super::ShardArgs,
}

#[derive(Serialize, Deserialize)]
struct ClassRef {
    index: usize,
    label: String,
}

#[derive(Serialize, Deserialize)]
struct Row {
    path: String,
    #[serde(rename = "true")]
    truth: Option<ClassRef>,
    predicted: ClassRef,
    predicted_probability: f32,
    true_probability: Option<f32>,
    correct: Option<bool>,
    in_top5: Option<bool>,
    margin: f32,
    loss: Option<f64>,
    top5: Vec<(usize, String, f32)>,
    overlays: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct SummaryOut {
    images: usize,
    labeled: usize,
    unlabeled: usize,
    unreadable: usize,
    /// Images the model scored NaN or infinite (format 3; counted as unreadable before).
    #[serde(default)]
    nan_scores: usize,
    top1_correct: usize,
    top5_correct: usize,
    top1_accuracy: Option<f64>,
    top5_accuracy: Option<f64>,
    per_class: Vec<(String, usize, usize, f64)>,
    confusions: Vec<(String, String, usize)>,
    most_confident_mistakes: Vec<String>,
    least_confident_correct: Vec<String>,
}

#[derive(Serialize, Deserialize)]
struct ScanOut {
    computed: usize,
    from_cache: usize,
    seconds: f64,
    images_per_second: f64,
    cache_note: Option<String>,
}

/// The version of triage.json's format. 3: images the model scored NaN or infinite are
/// listed under `nan_scores` and counted in `summary.nan_scores`, no longer under
/// `unreadable` (their files are fine: the word sent users looking for broken ones).
/// 2: `format_version` and `model_sha256` appear, so that `camscope OUT` can tell an output
/// it reads from an older one and check that the model it is given is the one the
/// predictions came from (the size and mtime in `config` do not survive a copy to another
/// machine). 1: the files written before, without the field.
pub const TRIAGE_FORMAT_VERSION: u32 = 3;

/// The oldest triage.json `camscope OUT` opens: 2, the first with the model's fingerprint
/// (a format-2 file lists NaN-scored images as unreadable, which the inspector then shows).
pub const TRIAGE_FORMAT_OLDEST_READ: u32 = 2;

#[derive(Serialize, Deserialize)]
struct TriageOut {
    /// [`TRIAGE_FORMAT_VERSION`] of the camscope that wrote the file (0: absent, older).
    #[serde(default)]
    format_version: u32,
    model: String,
    /// SHA-256 of the model file, hex (empty in older outputs).
    #[serde(default)]
    model_sha256: String,
    scan: ScanOut,
    root: String,
    /// The dataset root, absolute: what `merge` checks all shards agree on (`root` is as typed).
    #[serde(default)]
    dataset: String,
    /// The map settings (model file, size and mtime, layer, method, card input...), as the
    /// journal keys them: shards of one run have equal ones, and `merge` checks it.
    #[serde(default)]
    config: serde_json::Value,
    /// Which shard this output holds (absent in an unsharded or merged output).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    shard: Option<Shard>,
    truth_source: String,
    layer: String,
    method: String,
    summary: SummaryOut,
    unlabeled_folders: Vec<String>,
    unreadable: Vec<(String, String)>,
    /// Images the model scored NaN or infinite, with the error (format 3).
    #[serde(default)]
    nan_scores: Vec<(String, String)>,
    /// Images used despite a decoder warning (`--allow-truncated`), with the warning: their
    /// scores may be wrong.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    warnings: Vec<(String, String)>,
    /// Written row by row and read so by `merge` (see [`json_stream::write_pretty_with_rows`], [`ShardFile`]): empty
    /// in the value itself.
    #[serde(default)]
    images: Vec<Row>,
}

/// Ground truth for a dataset: a CSV when given, else the folder names.
pub fn ground_truth(dir: &Path, csv: Option<&Path>, labels: &Labels) -> Result<(GroundTruth, String)> {
    Ok(match csv {
        Some(c) => (GroundTruth::Csv(CsvTruth::read(c, dir, labels)?), format!("{} (CSV)", c.display())),
        None => (GroundTruth::Folders(FolderTruth::new(dir, labels.clone())), "folder names".into()),
    })
}

pub fn run(args: &TriageArgs, model_args: &ModelArgs) -> Result<ExitCode> {
    // First: a bad --shard (or scheduler environment) is refused before any work.
    let shard = args.shard.detect()?;
    check_folders(&args.dir, &args.out)?;
    let path = super::model_path(model_args)?;
    let model = model_args.open(&path, args.method.needs().gradients)?;
    let labels = model.card.labels();
    let (mut truth, truth_source) = ground_truth(&args.dir, args.labels.as_deref(), &labels)?;
    if let GroundTruth::Csv(c) = &truth {
        for w in c.warnings() {
            eprintln!("camscope: warning: {w}");
        }
    }
    // The listing is the one thing triage holds for every image besides its 60-byte result.
    let (listing, images, all) = super::shard_listing(&args.dir, shard)?;
    for p in &listing.stats().special_files {
        eprintln!("camscope: note: {}: a pipe, socket or device named like an image; skipped, never read", p.display());
    }
    if all == 0 {
        bail!("{}: no images found; triage needs a folder of images", args.dir.display());
    }
    if let Some(s) = shard {
        eprintln!("camscope triage: shard {s}: {} of {all} images", images.len());
    }
    let mut opts = ScanOptions::new(model_args.session_options());
    opts.batch = args.batch.max(1);
    if args.no_cache {
        opts.cache_dir = None;
    }
    // Compact results, aligned with `images` (the path is not copied): see `Scored`.
    let mut results: Vec<Option<Scored>> = vec![None; images.len()];
    let mut unreadable = Vec::new();
    let mut nan_scores = Vec::new();
    let mut watch = super::NanWatch::default();
    let mut warnings = Vec::new();
    let mut progress = Progress::new(images.len(), "scanning");
    let scan = triage::scan(&triage::ScanModel::from(&model), &images, &args.dir, &mut truth, &opts, |u| {
        match u {
            ScanUpdate::Result { index, result, warnings: w, .. } => {
                progress.step(&images.path(index).display().to_string());
                for w in w {
                    eprintln!("camscope: warning: {w}");
                    warnings.push((images.rel(index).to_string_lossy().into_owned(), w));
                }
                results[index] = Some(Scored::of(&result));
                watch.record(true, &path);
            }
            ScanUpdate::Unreadable { index, error, fault } => {
                progress.step(&format!("{}: {}", images.path(index).display(), fault.word()));
                let item = (images.rel(index).to_string_lossy().into_owned(), error);
                if fault == Fault::NonFinite {
                    nan_scores.push(item);
                    watch.record(false, &path);
                } else {
                    unreadable.push(item);
                }
            }
        }
        true
    })?;
    progress.finish();
    if let Some(note) = &scan.cache_note {
        eprintln!("camscope: note: {note}");
    }
    // Sorted: the order met depends on which results came from the cache, and shards meet
    // them in another order still (merge sorts them the same way).
    let mut unlabeled_folders: Vec<String> = match &truth {
        GroundTruth::Folders(f) => f.problems().iter().map(|p| p.to_string()).collect(),
        _ => Vec::new(),
    };
    unlabeled_folders.sort();
    for p in &unlabeled_folders {
        eprintln!("camscope: note: {p}");
    }
    let result_at = |i: usize| results[i].map(|s| s.result(images.path(i).into_owned()));

    // Maps for the mistakes: predicted, true, and predicted-minus-true.
    let mut engine = Engine::from_model(
        model.clone(),
        EngineConfig {
            layer: args.layer.clone(),
            score: args.score,
            session: model_args.session_options(),
            // Each mistake is loaded once and its three maps come from that load: the
            // inspector's caches of bodies and heads (108 MB) would only fill with images
            // never asked for again (peak RSS 355 MB at 200,000 images, 240 MB without).
            cache_bytes: 0,
            ..EngineConfig::default()
        },
    )?;
    let mistakes: Vec<usize> =
        (0..images.len()).filter(|&i| result_at(i).is_some_and(|r| r.outcome() == Outcome::Wrong)).collect();
    // Only mistakes have maps: a map keyed by image, not a list as long as the dataset.
    let mut overlays: std::collections::HashMap<usize, Vec<String>> = std::collections::HashMap::new();
    // The maps are journalled (see camscope::dataset::journal): a rerun after an interruption
    // keeps the mistakes already drawn and replaces camscope's own half-finished outputs in
    // place instead of writing `-1` copies beside them.
    let (model_size, model_modified_ns) = stamp(&path);
    let config = MapConfig {
        model: path.canonicalize().unwrap_or_else(|_| path.clone()).display().to_string(),
        model_size,
        model_modified_ns,
        layer: engine.target().tensor.clone(),
        method: args.method.to_string(),
        score: args.score.to_string(),
        colormap: format!("{:?}", args.colormap),
        alpha: args.alpha,

        input: engine.model().card.input.clone(),
    };
    let mut journal = Journal::<MistakeMaps>::open(&args.out, "triage", &config)?;
    let mut progress = Progress::new(mistakes.len(), "mistakes");
    for &i in &mistakes {
        let r = &result_at(i).expect("a mistake has a result");
        let (t, p) = (r.truth.expect("labeled"), r.predicted().expect("has a prediction"));
        let name = rel_name(&args.dir, &r.path);
        let stamp = stamp(&r.path);
        if let Some(done) = journal.done(&name)? {
            let whole = done.overlays.iter().all(|o| decodes(&args.out.join(o)));
            if done.predicted == p && done.truth == t && (done.size, done.modified_ns) == stamp && whole {
                overlays.insert(i, done.overlays);
                progress.step(&name);
                continue;
            }
        }
        let loaded = engine.load(&r.path)?;
        let base = Path::new("mistakes").join(&name);
        for (kind, seed) in [
            ("predicted", Seed::Class(p)),
            ("true", Seed::Class(t)),
            ("contrast", Seed::Contrast { positive: p, negative: t }),
        ] {
            let map = engine.map(&loaded, args.method, &seed)?;
            let img = render::overlay(&loaded.view, map.normalized.map.view(), args.colormap, args.alpha)?;
            let file = base.with_extension(format!("{kind}.png"));
            let written = journal.write_output(&file, &render::png::encode_png(&img), false)?;
            overlays.entry(i).or_default().push(written.to_string_lossy().into_owned());
        }
        journal.finish(
            &name,
            &MistakeMaps {
                predicted: p,
                truth: t,
                size: stamp.0,
                modified_ns: stamp.1,
                overlays: overlays.get(&i).cloned().unwrap_or_default(),
            },
        )?;
        progress.step(&name);
    }
    progress.finish();

    // Summary and rows one image at a time: nothing here grows with the dataset but `results`.
    let scored = || (0..images.len()).filter_map(|i| result_at(i).map(|r| (i, r)));
    let mut summary = stats::SummaryBuilder::new(10);
    for (i, r) in scored() {
        summary.add(i, &r);
    }
    let summary = summary_out(
        summary.finish(),
        (unreadable.len(), nan_scores.len()),
        |c| labels.name(c),
        |i| images.rel(i).to_string_lossy().into_owned(),
    );
    let make_rows = || -> Box<dyn Iterator<Item = std::io::Result<Row>> + '_> {
        Box::new(scored().map(|(i, r)| {
            Ok(row(&r, rel_name(&args.dir, &r.path), overlays.get(&i).cloned().unwrap_or_default(), &|c| {
                labels.name(c)
            }))
        }))
    };
    let out = TriageOut {
        format_version: TRIAGE_FORMAT_VERSION,
        model: path.display().to_string(),
        model_sha256: model_sha256(&path)?,
        scan: ScanOut {
            computed: scan.computed,
            from_cache: scan.from_cache,
            seconds: scan.seconds,
            images_per_second: (scan.computed + scan.from_cache) as f64 / scan.seconds.max(1e-9),
            cache_note: scan.cache_note.clone(),
        },
        root: args.dir.display().to_string(),
        dataset: super::dataset_id(&args.dir),
        config: serde_json::to_value(&config)?,
        shard,
        truth_source,
        layer: engine.target().tensor.clone(),
        method: args.method.to_string(),
        summary,
        unlabeled_folders,
        unreadable,
        nan_scores,
        warnings,
        images: Vec::new(),
    };
    write_outputs(&journal, &out, &make_rows)?;
    print_summary(&out, &args.out);
    if let Some(e) = watch.all_nan(&path) {
        bail!(e);
    }
    Ok(exit_status(&out))
}

/// 0 when every image was scored, else [`EXIT_PARTIAL`]: the outputs hold what could be done.
fn exit_status(t: &TriageOut) -> ExitCode {
    if t.unreadable.is_empty() && t.nan_scores.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_PARTIAL) }
}

/// One image's row of triage.json / .csv / .parquet, from its result. One function for an
/// unsharded run and for `merge`, so a merged triage.json is exactly the one an unsharded run
/// writes: the derived figures (margin, loss...) are recomputed, never parsed back from text.
fn row(r: &ImageResult, path: String, overlays: Vec<String>, class_name: &dyn Fn(usize) -> String) -> Row {
    let class_ref = |i: usize| ClassRef { index: i, label: class_name(i) };
    Row {
        path,
        truth: r.truth.map(class_ref),
        predicted: class_ref(r.predicted().unwrap_or(0)),
        predicted_probability: r.confidence(),
        true_probability: r.p_truth,
        correct: match r.outcome() {
            Outcome::Correct => Some(true),
            Outcome::Wrong => Some(false),
            Outcome::Unlabeled => None,
        },
        in_top5: r.in_top(5),
        margin: r.margin(),
        loss: r.loss(),
        top5: r.top.iter().take(5).map(|c| (c.class, class_name(c.class), c.probability)).collect(),
        overlays,
    }
}

/// The summary of triage.json from [`stats::Summary`] (`image_name`: of a result's index).
fn summary_out(
    summary: stats::Summary,
    (unreadable, nan_scores): (usize, usize),
    class_name: impl Fn(usize) -> String,
    image_name: impl Fn(usize) -> String,
) -> SummaryOut {
    SummaryOut {
        images: summary.images,
        labeled: summary.labeled,
        unlabeled: summary.images - summary.labeled,
        unreadable,
        nan_scores,
        top1_correct: summary.top1_correct,
        top5_correct: summary.top5_correct,
        top1_accuracy: summary.top1_accuracy(),
        top5_accuracy: summary.top5_accuracy(),
        per_class: summary.per_class.iter().map(|c| (class_name(c.class), c.images, c.correct, c.accuracy())).collect(),
        confusions: summary
            .confusions
            .iter()
            .map(|c| (class_name(c.truth), class_name(c.predicted), c.count))
            .collect(),
        most_confident_mistakes: summary.confident_mistakes.iter().map(|&i| image_name(i)).collect(),
        least_confident_correct: summary.unsure_correct.iter().map(|&i| image_name(i)).collect(),
    }
}

/// One image's scan result without its path (the listing has it) and with the five best
/// classes only (all that rows and summary read; the scan gives ten): 60 bytes where an
/// [`ImageResult`] takes ~300 (`Option<Scored>` too: the niche of `truth`), so a
/// million-image triage holds ~60 MB of results.
#[derive(Debug, Clone, Copy)]
struct Scored {
    truth: Option<u32>,
    p_truth: Option<f32>,
    top: [(u32, f32); 5],
    n: u8,
}

impl Scored {
    fn of(r: &ImageResult) -> Self {
        let mut top = [(0, 0.0); 5];
        for (t, c) in top.iter_mut().zip(&r.top) {
            *t = (c.class as u32, c.probability);
        }
        Self { truth: r.truth.map(|t| t as u32), p_truth: r.p_truth, top, n: r.top.len().min(5) as u8 }
    }

    fn result(&self, path: PathBuf) -> ImageResult {
        ImageResult {
            path,
            truth: self.truth.map(|t| t as usize),
            top: self.top[..self.n as usize]
                .iter()
                .map(|&(class, probability)| ClassProb { class: class as usize, probability })
                .collect(),
            p_truth: self.p_truth,
        }
    }
}

impl ShardHead for TriageOut {
    fn identity(&self) -> Identity {
        Identity {
            dataset: self.dataset.clone(),
            config: self.config.clone(),
            extra: vec![
                ("ground truth", self.truth_source.clone()),
                ("model file contents (SHA-256)", self.model_sha256.clone()),
            ],
            shard: self.shard,
        }
    }
}

impl super::merge::ShardRow for Row {
    fn path(&self) -> &str {
        &self.path
    }
}

/// A shard's row as the result the scan gave (top-5 is all the summary reads).
fn shard_result(r: &Row) -> ImageResult {
    ImageResult {
        path: PathBuf::from(&r.path),
        truth: r.truth.as_ref().map(|c| c.index),
        top: r.top5.iter().map(|&(class, _, probability)| ClassProb { class, probability }).collect(),
        p_truth: r.true_probability,
    }
}

/// `camscope merge` of triage shards (`inputs`: each folder with its triage.json, checked to
/// make a whole by the caller): the rows of all shards in the scan's order, the summary
/// recomputed from them through [`summary_out`], the mistakes' maps linked into `out`.
///
/// Streamed like an unsharded run: the shards' rows are read one at a time, once to check
/// them and build the summary, then once for each table written, so memory holds per-class
/// figures and the mistakes' maps, not the rows (200,000 rows took 200 MB parsed whole).
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<ExitCode> {
    let files: Vec<ShardFile<TriageOut>> = open_shards(inputs, "triage.json")?;
    let first = &files[0].head;
    let mut unreadable = Vec::new();
    let mut nan_scores = Vec::new();
    let mut warnings = Vec::new();
    let mut folders = Vec::new();
    let mut scan = ScanOut { computed: 0, from_cache: 0, seconds: 0.0, images_per_second: 0.0, cache_note: None };
    for f in &files {
        let t = &f.head;
        scan.computed += t.scan.computed;
        scan.from_cache += t.scan.from_cache;
        scan.seconds += t.scan.seconds;
        scan.cache_note = scan.cache_note.take().or_else(|| t.scan.cache_note.clone());
        unreadable.extend(t.unreadable.iter().cloned());
        nan_scores.extend(t.nan_scores.iter().cloned());
        warnings.extend(t.warnings.iter().cloned());
        folders.extend(t.unlabeled_folders.iter().cloned());
    }
    scan.images_per_second = (scan.computed + scan.from_cache) as f64 / scan.seconds.max(1e-9);
    for list in [&mut unreadable, &mut nan_scores] {
        list.sort_by(|a: &(String, String), b| Path::new(&a.0).cmp(Path::new(&b.0)));
    }
    warnings.sort_by(|a: &(String, String), b| Path::new(&a.0).cmp(Path::new(&b.0)));
    folders.sort();
    folders.dedup();

    // First pass: every row checked, the summary, the class names, and the maps to link.
    let mut summary = stats::SummaryBuilder::new(10);
    let mut names = std::collections::HashMap::new();
    let mut maps: Vec<(usize, usize, Vec<String>)> = Vec::new();
    for (i, merged) in MergedRows::<Row>::open(inputs, &files)?.enumerate() {
        let (k, r) = merged?;
        for c in r.truth.iter().chain([&r.predicted]) {
            names.insert(c.index, c.label.clone());
        }
        for (i, l, _) in &r.top5 {
            names.entry(*i).or_insert_with(|| l.clone());
        }
        summary.add(i, &shard_result(&r));
        // Every map is checked before anything is written: a refused merge leaves OUT as it was.
        if let Some(src) = r.overlays.iter().map(|o| inputs[k].join(o)).find(|p| !p.is_file()) {
            bail!("{}: missing; that shard's output is incomplete, rerun it and merge again", src.display());
        }
        if !r.overlays.is_empty() {
            maps.push((i, k, r.overlays));
        }
    }
    let example_names: std::collections::HashMap<usize, String> =
        summary.example_paths().map(|(i, p)| (i, p.to_string_lossy().into_owned())).collect();
    let config = first.config.clone();
    let mut journal = Journal::<MistakeMaps>::open(out, "triage", &config)?;
    let mut overlays = std::collections::HashMap::new();
    for (i, k, maps) in maps {
        let mut linked = Vec::with_capacity(maps.len());
        for o in &maps {
            let src = inputs[k].join(o);
            linked.push(journal.link_output(Path::new(o), &src, false)?.to_string_lossy().into_owned());
        }
        overlays.insert(i, linked);
    }
    let class_name = |c: usize| names.get(&c).cloned().unwrap_or_else(|| c.to_string());
    let image_name = |i: usize| example_names.get(&i).cloned().unwrap_or_default();
    let summary = summary_out(summary.finish(), (unreadable.len(), nan_scores.len()), class_name, image_name);
    let make_rows = || -> Box<dyn Iterator<Item = std::io::Result<Row>> + '_> {
        match MergedRows::<Row>::open(inputs, &files) {
            Ok(rows) => Box::new(rows.enumerate().map(|(i, merged)| {
                let (_, r) = merged.map_err(|e| std::io::Error::other(format!("{e:#}")))?;
                let o = overlays.get(&i).cloned().unwrap_or_default();
                Ok(row(&shard_result(&r), r.path, o, &class_name))
            })),
            Err(e) => Box::new(std::iter::once(Err(std::io::Error::other(format!("{e:#}"))))),
        }
    };
    let merged = TriageOut {
        format_version: TRIAGE_FORMAT_VERSION,
        model: first.model.clone(),
        model_sha256: first.model_sha256.clone(),
        scan,
        root: first.root.clone(),
        dataset: first.dataset.clone(),
        config,
        shard: None,
        truth_source: first.truth_source.clone(),
        layer: first.layer.clone(),
        method: first.method.clone(),
        summary,
        unlabeled_folders: folders,
        unreadable,
        nan_scores,
        warnings,
        images: Vec::new(),
    };
    write_outputs(&journal, &merged, &make_rows)?;
    print_summary(&merged, out);
    Ok(exit_status(&merged))
}

/// What must not change for a rerun to reuse the maps of a previous run.
#[derive(Serialize)]
struct MapConfig {
    model: String,
    model_size: u64,
    model_modified_ns: i128,
    layer: String,
    method: String,
    score: String,
    colormap: String,
    alpha: f64,
    /// How images become tensors (size, normalisation, EXIF, truncation, pixel limit).
    input: camscope::model::InputSpec,
}

/// The journal record of one mistake's maps: reused while the image, its prediction and its
/// truth are unchanged (a fixed label makes another contrast map).
#[derive(Debug, Clone, Serialize, Deserialize)]
struct MistakeMaps {
    predicted: usize,
    truth: usize,
    size: u64,
    modified_ns: i128,
    overlays: Vec<String>,
}

/// The model file's SHA-256 as triage.json records it: what identifies the model when the
/// output is opened on another machine, where its path, size and mtime are not the same.
pub fn model_sha256(path: &Path) -> Result<String> {
    let hash = camscope::dataset::cache::ModelHash::of_file(path)?;
    Ok(hash.0.iter().map(|b| format!("{b:02x}")).collect())
}

/// `, N with NaN scores` after the unreadable count, when the model scored any image NaN.
fn nan_part(s: &SummaryOut) -> String {
    match s.nan_scores {
        0 => String::new(),
        n => format!(", {n} with NaN scores"),
    }
}

fn pct(v: Option<f64>) -> String {
    v.map_or_else(|| "n/a (no labeled images)".into(), |v| format!("{:.1}%", v * 100.0))
}

fn print_summary(t: &TriageOut, out: &Path) {
    let s = &t.summary;
    println!(
        "{}: {} images ({} labeled by {}, {} unlabeled, {} unreadable{})",
        t.root,
        s.images,
        s.labeled,
        t.truth_source,
        s.unlabeled,
        s.unreadable,
        nan_part(s)
    );
    println!(
        "  top-1 accuracy {} ({}/{}), top-5 accuracy {} ({}/{})",
        pct(s.top1_accuracy),
        s.top1_correct,
        s.labeled,
        pct(s.top5_accuracy),
        s.top5_correct,
        s.labeled
    );
    if !s.confusions.is_empty() {
        println!("  most frequent confusions (true -> predicted):");
        for (a, b, n) in s.confusions.iter().take(10) {
            println!("    {a} -> {b}: {n}");
        }
    }
    if !s.most_confident_mistakes.is_empty() {
        println!("  most confident mistakes: {}", s.most_confident_mistakes.join(", "));
    }
    println!(
        "  wrote {}, {}, {}, {} and maps of the mistakes under {}",
        out.join("triage.json").display(),
        out.join("triage.csv").display(),
        out.join("triage.parquet").display(),
        out.join("summary.txt").display(),
        out.join("mistakes").display()
    );
}

/// triage.json, triage.csv, triage.parquet and summary.txt, each written atomically and
/// streamed: `rows` makes the per-image rows afresh for each file (`t.images` is empty), so a
/// million rows never sit in memory at once. The Parquet table is written first: a row it
/// cannot encode stops the run before any other report is written.
fn write_outputs<'r>(
    journal: &Journal<MistakeMaps>,
    t: &TriageOut,
    rows: &dyn Fn() -> Box<dyn Iterator<Item = std::io::Result<Row>> + 'r>,
) -> Result<()> {
    super::write_table(journal, "triage.parquet", |mut stream| {
        for chunk in table::chunks(rows()) {
            stream.triage_rows(&chunk?.iter().map(triage_row).collect::<Vec<_>>())?;
        }
        Ok(stream.finish_triage()?)
    })?;
    journal.write_report_with("triage.json", |w| json_stream::write_pretty_with_rows(w, t, "images", rows()))?;
    journal.write_report_with("triage.csv", |w| write_csv(w, rows()).map_err(std::io::Error::other))?;
    let s = &t.summary;
    let mut text = format!(
        "camscope triage of {} with {}\nground truth: {}\nimages: {} ({} labeled, {} unlabeled, {} unreadable{})\ntop-1 accuracy: {} ({}/{})\ntop-5 accuracy: {} ({}/{})\n",
        t.root,
        t.model,
        t.truth_source,
        s.images,
        s.labeled,
        s.unlabeled,
        s.unreadable,
        nan_part(s),
        pct(s.top1_accuracy),
        s.top1_correct,
        s.labeled,
        pct(s.top5_accuracy),
        s.top5_correct,
        s.labeled
    );
    text += "\nper class (images, correct, accuracy):\n";
    for (c, n, k, a) in &s.per_class {
        text += &format!("  {c}: {n}, {k}, {:.1}%\n", a * 100.0);
    }
    text += "\nconfusions (true -> predicted: count):\n";
    for (a, b, n) in &s.confusions {
        text += &format!("  {a} -> {b}: {n}\n");
    }
    text += &format!("\nmost confident mistakes: {}\n", s.most_confident_mistakes.join(", "));
    text += &format!("least confident correct predictions: {}\n", s.least_confident_correct.join(", "));
    for f in &t.unlabeled_folders {
        text += &format!("note: {f}\n");
    }
    for (_, w) in &t.warnings {
        text += &format!("warning: {w}\n");
    }
    if let Some((_, e)) = t.nan_scores.first() {
        let n = t.nan_scores.len();
        text += &format!(
            "note: the model scored {n} images NaN or infinite (triage.json lists them under nan_scores), the first: {e}\n"
        );
    }
    journal.write_report("summary.txt", text.as_bytes())?;
    Ok(())
}

/// A row as the Parquet table borrows it.
fn triage_row(r: &Row) -> TriageRow<'_> {
    TriageRow {
        path: &r.path,
        truth: r.truth.as_ref().map(|c| (c.index, c.label.as_str())),
        predicted: (r.predicted.index, &r.predicted.label),
        predicted_probability: r.predicted_probability,
        true_probability: r.true_probability,
        correct: r.correct,
        in_top5: r.in_top5,
        margin: r.margin,
        loss: r.loss,
        top5: &r.top5,
        overlays: &r.overlays,
    }
}

/// triage.csv, a row at a time.
fn write_csv(w: &mut impl Write, rows: impl Iterator<Item = std::io::Result<Row>>) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(w);
    w.write_record([
        "path",
        "true_index",
        "true_label",
        "predicted_index",
        "predicted_label",
        "predicted_probability",
        "true_probability",
        "correct",
        "in_top5",
        "margin",
        "loss",
        "top5",
    ])?;
    for r in rows {
        let r = r?;
        let opt = |v: Option<String>| v.unwrap_or_default();
        w.write_record([
            r.path.clone(),
            opt(r.truth.as_ref().map(|c| c.index.to_string())),
            opt(r.truth.as_ref().map(|c| c.label.clone())),
            r.predicted.index.to_string(),
            r.predicted.label.clone(),
            format!("{:.6}", r.predicted_probability),
            opt(r.true_probability.map(|p| format!("{p:.6}"))),
            opt(r.correct.map(|c| c.to_string())),
            opt(r.in_top5.map(|c| c.to_string())),
            format!("{:.6}", r.margin),
            opt(r.loss.map(|l| format!("{l:.6}"))),
            r.top5.iter().map(|(i, l, p)| format!("{l} ({i}) {p:.4}")).collect::<Vec<_>>().join("; "),
        ])?;
    }
    w.flush()?;
    Ok(())
}
