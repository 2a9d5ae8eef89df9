//! `camscope batch DIR --out OUTDIR`: an overlay per image, mirroring the tree, and a report
//! (JSON and CSV). Crash-safe and resumable (see [`camscope::dataset::journal`]); never writes
//! inside DIR or outside OUTDIR.

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use camscope::cam::Method;
use camscope::dataset::cache::FileStamp;
use camscope::dataset::journal::Journal;
use camscope::dataset::json_stream;
use camscope::dataset::paths::ImagePaths;
use camscope::dataset::shard::Shard;
use camscope::dataset::table::{self, BatchRow};
use camscope::engine::{Engine, EngineConfig, Fault, Seed};
use camscope::explanation::{MapStatusName, Timings};
use camscope::grad::ScoreKind;
use camscope::render::{self, Colormap};
use camscope::scores::Prediction;

use super::explain::class_index;
use super::merge::{Identity, MergedRows, ShardFile, ShardHead, ShardRow, open_shards};
use super::progress::Progress;
use super::rel_name;
use crate::ModelArgs;

#[derive(Debug, Clone, clap::Args)]
pub struct BatchArgs {
    /// Folder of images (searched recursively; non-images are skipped)
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Output folder (created; must not overlap DIR)
    #[arg(long, short = 'o', value_name = "OUTDIR")]
    pub out: PathBuf,
    /// Target layer (default: the last map before pooling)
    #[arg(long, short = 'l')]
    pub layer: Option<String>,
    /// CAM method
    #[arg(long, default_value = "gradcam")]
    pub method: Method,
    /// Class to explain in every image, by index or label (default: each image's top-1)
    #[arg(long = "class", short = 'c', value_name = "CLASS")]
    pub class: Option<String>,
    /// Differentiate the pre-softmax logit or the probability
    #[arg(long, default_value = "logit", value_name = "logit|prob")]
    pub score: ScoreKind,
    /// Classes listed per image in the report
    #[arg(long, short = 'k', default_value_t = 5)]
    pub top: usize,
    #[arg(long, default_value = "jet")]
    pub colormap: Colormap,
    #[arg(long, default_value_t = 0.5)]
    pub alpha: f64,
    /// Recompute and replace outputs of a previous run (default: resume, skipping them)
    #[arg(long)]
    pub overwrite: bool,
    /// Images per model run
    #[arg(long, default_value_t = 4)]
    pub batch: usize,
    #[command(flatten)]
    pub shard: super::ShardArgs,
}

/// One image in the report.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Entry {
    /// Path relative to DIR.
    pub file: String,
    pub top: Vec<Prediction>,
    pub class: Prediction,
    pub method: String,
    pub map_status: String,
    /// Overlay path relative to OUTDIR.
    pub output: String,
    pub timings: Timings,
    /// File size and modification time the entry was computed from (for resuming).
    pub size: u64,
    pub modified_ns: i128,
    /// Why this entry may be wrong (a truncated JPEG used with `--allow-truncated`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub warnings: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Unreadable {
    pub file: String,
    pub error: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Report {
    pub model: String,
    pub layer: String,
    pub method: String,
    pub score: String,
    pub device: String,
    /// DIR as given.
    #[serde(default)]
    pub root: String,
    /// DIR, absolute: what `merge` checks all shards agree on.
    #[serde(default)]
    pub dataset: String,
    /// The run's settings as the journal keys them (model file, size and mtime, layer,
    /// method, class, card input...): shards of one run have equal ones, and `merge` checks it.
    #[serde(default)]
    pub config: serde_json::Value,
    /// Which shard this report holds (absent in an unsharded or merged report).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shard: Option<Shard>,
    /// Written entry by entry and read so by `merge` (see
    /// [`json_stream::write_pretty_with_rows`], [`ShardFile`]): empty in the value itself.
    #[serde(default)]
    pub images: Vec<Entry>,
    pub unreadable: Vec<Unreadable>,
    /// Images the model scored NaN or infinite (the files are fine), with the error; listed
    /// under `unreadable` before this field existed.
    #[serde(default)]
    pub nan_scores: Vec<Unreadable>,
    pub non_images_skipped: usize,
    /// FIFOs, sockets and devices named like images: never read (reading would block).
    #[serde(default)]
    pub special_files_skipped: Vec<String>,
    pub reused_from_previous_run: usize,
    pub total_seconds: f64,
}

/// Exit status of a run that wrote what it could but could not read every image (the report
/// lists them): not 0, so scripts notice; not 1, which means nothing useful was done.
pub const EXIT_PARTIAL: u8 = 3;

/// What must not change for a rerun to reuse the previous run's outputs.
#[derive(Serialize)]
struct RunConfig {
    model: String,
    model_size: u64,
    model_modified_ns: i128,
    layer: String,
    method: String,
    score: String,
    class: Option<usize>,
    colormap: String,
    alpha: f64,
    top: usize,
    /// How images become tensors (size, normalisation, EXIF, truncation, pixel limit).
    input: camscope::model::InputSpec,
}

/// Refuse OUTDIR inside DIR (or DIR inside OUTDIR): outputs mirror DIR's tree, so any overlap
/// could write among the user's images. Creates OUTDIR and checks it is writable.
pub fn check_folders(dir: &Path, out: &Path) -> Result<()> {
    let dir_c =
        dir.canonicalize().with_context(|| format!("{}: no such folder; give the folder of images", dir.display()))?;
    if !dir_c.is_dir() {
        bail!("{}: is not a folder; `batch` takes a folder of images (use `explain` for one image)", dir.display());
    }
    // The nearest existing ancestor of OUTDIR decides where it will live.
    let mut probe = out.to_path_buf();
    let mut tail = Vec::new();
    let out_c = loop {
        match probe.canonicalize() {
            Ok(c) => break tail.iter().rev().fold(c, |acc: PathBuf, t: &std::ffi::OsString| acc.join(t)),
            Err(_) => {
                let Some(name) = probe.file_name() else { break std::env::current_dir()?.join(out) };
                tail.push(name.to_owned());
                probe = match probe.parent() {
                    Some(p) if !p.as_os_str().is_empty() => p.to_path_buf(),
                    _ => PathBuf::from("."),
                };
            }
        }
    };
    if out_c.starts_with(&dir_c) || dir_c.starts_with(&out_c) {
        bail!(
            "{}: the output folder overlaps the image folder {}; choose an --out folder outside it",
            out.display(),
            dir.display()
        );
    }
    std::fs::create_dir_all(out).with_context(|| {
        format!("{}: cannot create the output folder; choose a writable --out folder", out.display())
    })?;
    let probe_file = out.join(format!(".camscope-write-test-{}", std::process::id()));
    std::fs::write(&probe_file, b"").with_context(|| {
        format!("{}: the output folder is not writable; choose a writable --out folder", out.display())
    })?;
    let _ = std::fs::remove_file(&probe_file);
    Ok(())
}

/// Size and modification time (ns since the epoch) of a file, as the resume check compares them.
pub(super) fn stamp(path: &Path) -> (u64, i128) {
    match FileStamp::read(path) {
        Ok(s) => (s.size, i128::from(s.mtime_secs) * 1_000_000_000 + i128::from(s.mtime_nanos)),
        Err(_) => (0, 0),
    }
}

pub fn run(args: &BatchArgs, model: &ModelArgs) -> Result<ExitCode> {
    let started = std::time::Instant::now();
    if !(0.0..=1.0).contains(&args.alpha) {
        bail!("--alpha {} is outside 0..1", args.alpha);
    }
    // First: a bad --shard (or scheduler environment) is refused before any work.
    let shard = args.shard.detect()?;
    check_folders(&args.dir, &args.out)?;
    let path = super::model_path(model)?;
    let config = EngineConfig {
        layer: args.layer.clone(),
        score: args.score,
        session: model.session_options(),
        batch: args.batch.max(1),
        ..EngineConfig::default()
    };
    let mut engine = Engine::from_model(model.open(&path, args.method.needs().gradients)?, config)?;
    let labels = engine.model().card.labels();
    let class = args.class.as_deref().map(|c| class_index(&labels, c)).transpose()?;
    let (listing, images, all) = super::shard_listing(&args.dir, shard)?;
    let non_images = listing.stats().non_images;
    if let Some(s) = shard {
        eprintln!("camscope batch: shard {s}: {} of {all} images", images.len());
    }
    let special: Vec<String> = listing.stats().special_files.iter().map(|p| rel_name(&args.dir, p)).collect();
    let layer = engine.target().tensor.clone();
    let method = args.method.to_string();
    // Resume from the output folder's journal: items done under the same configuration are
    // kept when their image is unchanged and their overlay still decodes; the rest is redone,
    // replacing camscope's own stale or half-finished outputs in place.
    let (model_size, model_modified_ns) = stamp(&path);
    let config = RunConfig {
        model: path.canonicalize().unwrap_or_else(|_| path.clone()).display().to_string(),
        model_size,
        model_modified_ns,
        layer: layer.clone(),
        method: method.clone(),
        score: args.score.to_string(),
        class,
        colormap: format!("{:?}", args.colormap),
        alpha: args.alpha,
        top: args.top,

        input: engine.model().card.input.clone(),
    };
    let config_value = serde_json::to_value(&config)?;
    let mut journal = Journal::<Entry>::open(&args.out, "batch", &config)?;
    let report_path = args.out.join("report.json");
    // Which images the report lists (explained now or reused); their entries are the
    // journal's latest records (an image now unreadable keeps an old record there, unlisted).
    let mut listed = vec![false; images.len()];
    let mut unreadable = Vec::new();
    let mut nan_scores = Vec::new();
    let mut watch = super::NanWatch::default();
    let mut reused = 0;
    let mut todo = Vec::new();
    for (i, listed) in listed.iter_mut().enumerate() {
        let rel = images.rel(i).to_string_lossy();
        let (size, modified_ns) = stamp(&images.path(i));
        let previous = if args.overwrite { None } else { journal.done(&rel)? };
        match previous {
            // An entry made from a truncated file under --allow-truncated is redone (and so
            // refused) by a run without it.
            Some(e)
                if e.size == size
                    && e.modified_ns == modified_ns
                    && (e.warnings.is_empty() || engine.model().card.input.allow_truncated)
                    && decodes(&args.out.join(&e.output)) =>
            {
                *listed = true;
                reused += 1;
            }
            _ => todo.push((i, size, modified_ns)),
        }
    }
    let (provider, _) = engine.provider();
    eprintln!(
        "camscope batch: {} images under {} ({} non-image files skipped{}, {} done in a previous run), {} on {}",
        images.len(),
        args.dir.display(),
        non_images,
        if special.is_empty() { String::new() } else { format!(", {} pipes/sockets/devices skipped", special.len()) },
        reused,
        method,
        provider
    );
    let mut progress = Progress::new(todo.len(), "explaining");
    let mut explained = 0;
    for chunk in todo.chunks(args.batch.max(1)) {
        let paths: Vec<PathBuf> = chunk.iter().map(|&(i, ..)| images.path(i).into_owned()).collect();
        let loaded = engine.load_many(&paths);
        for (&(i, size, modified_ns), result) in chunk.iter().zip(loaded) {
            let rel = images.rel(i).to_string_lossy().into_owned();
            let loaded = match result {
                Ok(l) => l,
                Err(e) => {
                    let item = Unreadable { file: rel.clone(), error: e.to_string() };
                    if e.fault() == Fault::NonFinite {
                        nan_scores.push(item);
                        watch.record(false, &path);
                    } else {
                        unreadable.push(item);
                    }
                    progress.step(&format!("{rel}: skipped ({e})"));
                    continue;
                }
            };
            watch.record(true, &path);
            for w in &loaded.warnings {
                eprintln!("camscope: warning: {w}");
            }
            let target = class.unwrap_or_else(|| loaded.scores.argmax());
            let map = engine.map(&loaded, args.method, &Seed::Class(target))?;
            let t0 = std::time::Instant::now();
            let overlay = render::overlay(&loaded.view, map.normalized.map.view(), args.colormap, args.alpha)?;
            let rel_out = Path::new(&rel).with_extension(format!("{}.png", args.method));
            // The user asked to replace outputs with --overwrite; otherwise a name taken by a
            // file camscope did not write gets a fresh one.
            let written = journal.write_output(&rel_out, &render::png::encode_png(&overlay), args.overwrite)?;
            let render_ms = t0.elapsed().as_secs_f64() * 1e3;
            let top = loaded.scores.top_k(args.top, &labels);
            let entry = Entry {
                file: rel.clone(),
                top,
                class: loaded.scores.prediction(target, &labels),
                method: method.clone(),
                map_status: serde_json::to_value(MapStatusName::from(map.normalized.status))?
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                output: written.to_string_lossy().into_owned(),
                timings: Timings {
                    decode_ms: loaded.timings.decode_ms,
                    body_ms: loaded.timings.body_ms,
                    render_ms,
                    ..map.timings
                },
                size,
                modified_ns,
                warnings: loaded.warnings.clone(),
            };
            journal.finish(&rel, &entry)?;
            listed[i] = true;
            explained += 1;
            progress.step(&format!("{rel} -> {}", args.out.join(&written).display()));
        }
    }
    progress.finish();
    let report = Report {
        model: path.display().to_string(),
        layer,
        method,
        score: args.score.to_string(),
        device: provider.to_string(),
        root: args.dir.display().to_string(),
        dataset: super::dataset_id(&args.dir),
        config: config_value,
        shard,
        images: Vec::new(),
        unreadable,
        nan_scores,
        non_images_skipped: non_images,
        special_files_skipped: special,
        reused_from_previous_run: reused,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    // The listed images' entries, read back from the journal in the listing's order.
    let rows = || -> Box<dyn Iterator<Item = std::io::Result<Entry>> + '_> {
        Box::new((0..images.len()).filter(|&i| listed[i]).map(|i| {
            let rel = images.rel(i).to_string_lossy();
            match journal.done(&rel) {
                Ok(Some(e)) => Ok(e),
                Ok(None) => Err(std::io::Error::other(format!("{rel}: its journal record is gone"))),
                Err(e) => Err(std::io::Error::other(e)),
            }
        }))
    };
    write_report(&journal, &report, &rows, args.top)?;
    let listed = explained + reused;
    eprintln!(
        "camscope batch: {listed} overlays in {} ({}), report: {}, {}, {}",
        args.out.display(),
        skipped(&report),
        report_path.display(),
        args.out.join("report.csv").display(),
        args.out.join("report.parquet").display()
    );
    if let (0, Some(e)) = (listed, watch.all_nan(&path)) {
        bail!(e);
    }
    Ok(if listed == 0 && !images.is_empty() {
        ExitCode::from(1)
    } else if report.unreadable.is_empty() && report.nan_scores.is_empty() {
        ExitCode::SUCCESS
    } else {
        // Partial success, like rsync's 23: scripts must not take a run with failures for a clean one.
        ExitCode::from(EXIT_PARTIAL)
    })
}

/// `camscope merge` of batch shards (folders with their report.json, checked by the caller
/// to make a whole): the entries of all shards in the order one run lists them, the overlays
/// linked into `out`, and each entry journalled as done so a `batch` rerun into `out`
/// resumes from the merged folder.
///
/// Streamed like a run: the shards' entries are read one at a time (see [`MergedRows`]),
/// once to check them, once to link the overlays, then once for each report written.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<ExitCode> {
    let files: Vec<ShardFile<Report>> = open_shards(inputs, "report.json")?;
    let first = &files[0].head;
    let top = first.config.get("top").and_then(serde_json::Value::as_u64).unwrap_or(5) as usize;
    let mut merged = Report {
        shard: None,
        unreadable: vec![],
        nan_scores: vec![],
        reused_from_previous_run: 0,
        total_seconds: 0.0,
        ..first.clone()
    };
    for f in &files {
        merged.reused_from_previous_run += f.head.reused_from_previous_run;
        merged.total_seconds += f.head.total_seconds;
        merged.unreadable.extend(f.head.unreadable.iter().cloned());
        merged.nan_scores.extend(f.head.nan_scores.iter().cloned());
    }
    for list in [&mut merged.unreadable, &mut merged.nan_scores] {
        list.sort_by(|a, b| Path::new(&a.file).cmp(Path::new(&b.file)));
    }
    // Every entry and overlay is checked before anything is written: a refused merge leaves
    // OUT as it was.
    for row in MergedRows::<Entry>::open(inputs, &files)? {
        let (k, e) = row?;
        let src = inputs[k].join(&e.output);
        if !src.is_file() {
            bail!("{}: missing; that shard's output is incomplete, rerun it and merge again", src.display());
        }
    }
    let mut journal = Journal::<Entry>::open(out, "batch", &merged.config)?;
    let mut linked = 0;
    for row in MergedRows::<Entry>::open(inputs, &files)? {
        let (k, mut e) = row?;
        let src = inputs[k].join(&e.output);
        e.output = journal.link_output(Path::new(&e.output), &src, false)?.to_string_lossy().into_owned();
        journal.finish(&e.file, &e)?;
        linked += 1;
    }
    // The entries again, as linked (an overlay may have taken another name in OUT).
    let rows = || -> Box<dyn Iterator<Item = std::io::Result<Entry>> + '_> {
        match MergedRows::<Entry>::open(inputs, &files) {
            Ok(rows) => Box::new(rows.map(|row| {
                let (_, e) = row.map_err(|e| std::io::Error::other(format!("{e:#}")))?;
                journal
                    .done(&e.file)
                    .map_err(std::io::Error::other)?
                    .ok_or_else(|| std::io::Error::other(format!("{}: its journal record is gone", e.file)))
            })),
            Err(e) => Box::new(std::iter::once(Err(std::io::Error::other(format!("{e:#}"))))),
        }
    };
    write_report(&journal, &merged, &rows, top)?;
    eprintln!(
        "camscope merge: {linked} overlays in {} ({}), report: {}, {}, {}",
        out.display(),
        skipped(&merged),
        out.join("report.json").display(),
        out.join("report.csv").display(),
        out.join("report.parquet").display()
    );
    Ok(if merged.unreadable.is_empty() && merged.nan_scores.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(EXIT_PARTIAL)
    })
}

impl ShardHead for Report {
    fn identity(&self) -> Identity {
        Identity { dataset: self.dataset.clone(), config: self.config.clone(), extra: vec![], shard: self.shard }
    }
}

impl ShardRow for Entry {
    fn path(&self) -> &str {
        &self.file
    }
}

fn list(u: &[Unreadable]) -> String {
    u.iter().take(3).map(|x| x.file.as_str()).collect::<Vec<_>>().join(", ") + if u.len() > 3 { ", ..." } else { "" }
}

/// What a run skipped, for its last line: `2 unreadable images skipped: a.jpg, b.jpg`, and
/// the images the model scored NaN, when there are any.
fn skipped(r: &Report) -> String {
    let mut s = format!("{} unreadable images skipped", r.unreadable.len());
    if !r.unreadable.is_empty() {
        s += &format!(": {}", list(&r.unreadable));
    }
    if !r.nan_scores.is_empty() {
        s += &format!("; {} images the model scored NaN: {}", r.nan_scores.len(), list(&r.nan_scores));
    }
    s
}

/// The report's rows for the images without an entry, in path order: each file with its
/// status (`unreadable: why` or `NaN scores: why`).
fn failures(r: &Report) -> Vec<(&str, String)> {
    let mut rows: Vec<(&str, String)> = r
        .unreadable
        .iter()
        .map(|u| (u.file.as_str(), format!("{}: {}", Fault::Unreadable.word(), u.error)))
        .chain(r.nan_scores.iter().map(|u| (u.file.as_str(), format!("{}: {}", Fault::NonFinite.word(), u.error))))
        .collect();
    rows.sort_by(|a, b| Path::new(a.0).cmp(Path::new(b.0)));
    rows
}

/// An explained image as a row of report.parquet.
fn entry_row(e: &Entry) -> BatchRow<'_> {
    BatchRow {
        file: &e.file,
        top: &e.top,
        class: Some(&e.class),
        method: Some(&e.method),
        map_status: &e.map_status,
        output: Some(&e.output),
        timings: Some(&e.timings),
        warnings: &e.warnings,
    }
}

/// Write report.parquet, report.json and report.csv, each atomically and streamed: `rows`
/// makes the explained images' entries afresh for each file (`report.images` is empty), so a
/// million entries never sit in memory at once; the unreadable images follow them in the
/// table and the CSV. The Parquet table is written first: a row it cannot encode stops the
/// run before any other report is written.
fn write_report<'r>(
    journal: &Journal<Entry>,
    report: &Report,
    rows: &dyn Fn() -> Box<dyn Iterator<Item = std::io::Result<Entry>> + 'r>,
    top: usize,
) -> Result<()> {
    let failed = failures(report);
    super::write_table(journal, "report.parquet", |mut stream| {
        for chunk in table::chunks(rows()) {
            stream.batch_rows(&chunk?.iter().map(entry_row).collect::<Vec<_>>())?;
        }
        let unreadable: Vec<BatchRow> = failed
            .iter()
            .map(|(file, status)| BatchRow {
                file,
                top: &[],
                class: None,
                method: None,
                map_status: status,
                output: None,
                timings: None,
                warnings: &[],
            })
            .collect();
        for chunk in unreadable.chunks(table::CHUNK_ROWS) {
            stream.batch_rows(chunk)?;
        }
        Ok(stream.finish_batch()?)
    })?;
    journal.write_report_with("report.json", |w| json_stream::write_pretty_with_rows(w, report, "images", rows()))?;
    journal.write_report_with("report.csv", |w| write_csv(w, rows(), &failed, top).map_err(std::io::Error::other))?;
    Ok(())
}

/// report.csv, a row at a time: the `top` best classes as columns of their own.
fn write_csv(
    w: &mut impl std::io::Write,
    rows: impl Iterator<Item = std::io::Result<Entry>>,
    failed: &[(&str, String)],
    top: usize,
) -> Result<(), csv::Error> {
    let mut w = csv::Writer::from_writer(w);
    let mut header = vec!["file".to_owned()];
    for k in 1..=top {
        header.extend([format!("top{k}_label"), format!("top{k}_index"), format!("top{k}_probability")]);
    }
    header.extend(
        [
            "class_index",
            "class_label",
            "class_probability",
            "method",
            "map_status",
            "output",
            "decode_ms",
            "body_ms",
            "head_ms",
            "map_ms",
            "render_ms",
        ]
        .map(String::from),
    );
    w.write_record(&header)?;
    for e in rows {
        let e = e?;
        let mut row = vec![e.file.clone()];
        for k in 0..top {
            match e.top.get(k) {
                Some(p) => row.extend([p.label.clone(), p.index.to_string(), format!("{:.6}", p.probability)]),
                None => row.extend([String::new(), String::new(), String::new()]),
            }
        }
        let t = &e.timings;
        row.extend([
            e.class.index.to_string(),
            e.class.label.clone(),
            format!("{:.6}", e.class.probability),
            e.method.clone(),
            e.map_status.clone(),
            e.output.clone(),
            format!("{:.2}", t.decode_ms),
            format!("{:.2}", t.body_ms),
            format!("{:.2}", t.head_ms),
            format!("{:.2}", t.map_ms),
            format!("{:.2}", t.render_ms),
        ]);
        w.write_record(&row)?;
    }
    let status = header.iter().position(|h| h == "map_status").expect("column");
    for (file, why) in failed {
        let mut row = vec![file.to_string()];
        row.resize(header.len(), String::new());
        row[status] = why.clone();
        w.write_record(&row)?;
    }
    w.flush()?;
    Ok(())
}

/// Whether an output from an earlier run is still a whole PNG (a user may have truncated or
/// replaced it since; camscope's own writes are atomic): see [`render::png::is_whole`]. Only
/// a regular file is read (a pipe put in its place would block the read), and only when it
/// is no longer than a PNG of its size can be ([`render::png::longest`]).
pub(super) fn decodes(path: &Path) -> bool {
    use std::io::Read;
    // Stat before opening: opening a FIFO blocks until someone writes to it.
    let Some(len) = std::fs::metadata(path).ok().filter(std::fs::Metadata::is_file).map(|m| m.len()) else {
        return false;
    };
    let Ok(mut file) = std::fs::File::open(path) else { return false };
    let mut bytes = vec![0u8; 33];
    if file.read_exact(&mut bytes).is_err() || render::png::longest(&bytes).is_none_or(|max| len > max) {
        return false;
    }
    file.read_to_end(&mut bytes).is_ok() && render::png::is_whole(&bytes)
}
