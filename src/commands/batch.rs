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
use camscope::dataset::scan::Scan;
use camscope::dataset::shard::Shard;
use camscope::dataset::table::{self, BatchRow};
use camscope::engine::{Engine, EngineConfig, Seed};
use camscope::explanation::{MapStatusName, Timings};
use camscope::grad::ScoreKind;
use camscope::render::{self, Colormap};
use camscope::scores::Prediction;

use super::explain::class_index;
use super::progress::Progress;
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
    pub images: Vec<Entry>,
    pub unreadable: Vec<Unreadable>,
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
    let mut scan = Scan::new(&args.dir)?;
    let mut images: Vec<PathBuf> = scan.by_ref().collect();
    let non_images = scan.stats().non_images;
    if let Some(s) = shard {
        let all = images.len();
        images.retain(|p| s.contains(Path::new(&rel_name(&args.dir, p))));
        eprintln!("camscope batch: shard {s}: {} of {all} images", images.len());
    }
    let special: Vec<String> = scan.stats().special_files.iter().map(|p| rel_name(&args.dir, p)).collect();
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
    let mut entries = Vec::new();
    let mut unreadable = Vec::new();
    let mut reused = 0;
    let mut todo = Vec::new();
    for img in &images {
        let rel = rel_name(&args.dir, img);
        let (size, modified_ns) = stamp(img);
        match journal.done(&rel).filter(|_| !args.overwrite) {
            // An entry made from a truncated file under --allow-truncated is redone (and so
            // refused) by a run without it.
            Some(e)
                if e.size == size
                    && e.modified_ns == modified_ns
                    && (e.warnings.is_empty() || engine.model().card.input.allow_truncated)
                    && decodes(&args.out.join(&e.output)) =>
            {
                entries.push(e.clone());
                reused += 1;
            }
            _ => todo.push((img.clone(), rel, size, modified_ns)),
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
    let report_of = |images: Vec<Entry>, unreadable: Vec<Unreadable>| Report {
        model: path.display().to_string(),
        layer: layer.clone(),
        method: method.clone(),
        score: args.score.to_string(),
        device: provider.to_string(),
        root: args.dir.display().to_string(),
        dataset: super::dataset_id(&args.dir),
        config: config_value.clone(),
        shard,
        images,
        unreadable,
        non_images_skipped: non_images,
        special_files_skipped: special.clone(),
        reused_from_previous_run: reused,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    for chunk in todo.chunks(args.batch.max(1)) {
        let paths: Vec<PathBuf> = chunk.iter().map(|c| c.0.clone()).collect();
        let loaded = engine.load_many(&paths);
        for ((_, rel, size, modified_ns), result) in chunk.iter().zip(loaded) {
            let loaded = match result {
                Ok(l) => l,
                Err(e) => {
                    unreadable.push(Unreadable { file: rel.clone(), error: e.to_string() });
                    progress.step(&format!("{rel}: skipped ({e})"));
                    continue;
                }
            };
            for w in &loaded.warnings {
                eprintln!("camscope: warning: {w}");
            }
            let target = class.unwrap_or_else(|| loaded.scores.argmax());
            let map = engine.map(&loaded, args.method, &Seed::Class(target))?;
            let t0 = std::time::Instant::now();
            let overlay = render::overlay(&loaded.view, map.normalized.map.view(), args.colormap, args.alpha)?;
            let rel_out = Path::new(rel).with_extension(format!("{}.png", args.method));
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
                size: *size,
                modified_ns: *modified_ns,
                warnings: loaded.warnings.clone(),
            };
            journal.finish(rel, entry.clone())?;
            entries.push(entry);
            progress.step(&format!("{rel} -> {}", args.out.join(&written).display()));
        }
    }
    progress.finish();
    entries.sort_by(|a, b| a.file.cmp(&b.file));
    let report = report_of(entries, unreadable);
    write_report(&mut journal, &report, args.top)?;
    eprintln!(
        "camscope batch: {} overlays in {} ({} unreadable images skipped{}), report: {}, {}, {}",
        report.images.len(),
        args.out.display(),
        report.unreadable.len(),
        if report.unreadable.is_empty() { String::new() } else { format!(": {}", list(&report.unreadable)) },
        report_path.display(),
        args.out.join("report.csv").display(),
        args.out.join("report.parquet").display()
    );
    Ok(if report.images.is_empty() && !images.is_empty() {
        ExitCode::from(1)
    } else if report.unreadable.is_empty() {
        ExitCode::SUCCESS
    } else {
        // Partial success, like rsync's 23: scripts must not take a run with failures for a clean one.
        ExitCode::from(EXIT_PARTIAL)
    })
}

/// `camscope merge` of batch shards (folders with their report.json, checked by the caller
/// to make a whole): the entries of all shards sorted as one run sorts them, the overlays
/// linked into `out`, and each entry journalled as done so a `batch` rerun into `out`
/// resumes from the merged folder.
pub fn merge(inputs: &[PathBuf], out: &Path) -> Result<ExitCode> {
    let reports: Vec<Report> = super::merge::read_shards(inputs, "report.json")?;
    let ids: Vec<super::merge::Identity> = reports
        .iter()
        .map(|r| super::merge::Identity {
            dataset: r.dataset.clone(),
            config: r.config.clone(),
            extra: vec![],
            shard: r.shard,
        })
        .collect();
    super::merge::check(inputs, &ids)?;
    let top = reports[0].config.get("top").and_then(serde_json::Value::as_u64).unwrap_or(5) as usize;
    let mut merged = Report {
        shard: None,
        images: vec![],
        unreadable: vec![],
        reused_from_previous_run: 0,
        total_seconds: 0.0,
        ..reports[0].clone()
    };
    let mut entries = Vec::new();
    for (k, r) in reports.into_iter().enumerate() {
        let s = r.shard.expect("checked");
        if let Some(e) = r.images.iter().find(|e| !s.contains(Path::new(&e.file))) {
            bail!(
                "{}: {} is not in shard {s} by this camscope's assignment; merge outputs of one camscope version",
                inputs[k].display(),
                e.file
            );
        }
        merged.reused_from_previous_run += r.reused_from_previous_run;
        merged.total_seconds += r.total_seconds;
        merged.unreadable.extend(r.unreadable);
        entries.extend(r.images.into_iter().map(|e| (k, e)));
    }
    entries.sort_by(|a, b| a.1.file.cmp(&b.1.file));
    merged.unreadable.sort_by(|a, b| Path::new(&a.file).cmp(Path::new(&b.file)));
    // Every overlay is checked before anything is written: a refused merge leaves OUT as it was.
    if let Some(src) = entries.iter().map(|(k, e)| inputs[*k].join(&e.output)).find(|p| !p.is_file()) {
        bail!("{}: missing; that shard's output is incomplete, rerun it and merge again", src.display());
    }
    let mut journal = Journal::<Entry>::open(out, "batch", &merged.config)?;
    for (k, mut e) in entries {
        let src = inputs[k].join(&e.output);
        e.output = journal.link_output(Path::new(&e.output), &src, false)?.to_string_lossy().into_owned();
        journal.finish(&e.file.clone(), e.clone())?;
        merged.images.push(e);
    }
    write_report(&mut journal, &merged, top)?;
    eprintln!(
        "camscope merge: {} overlays and {} unreadable images in {}, report: {}, {}, {}",
        merged.images.len(),
        merged.unreadable.len(),
        out.display(),
        out.join("report.json").display(),
        out.join("report.csv").display(),
        out.join("report.parquet").display()
    );
    Ok(if merged.unreadable.is_empty() { ExitCode::SUCCESS } else { ExitCode::from(EXIT_PARTIAL) })
}

fn list(u: &[Unreadable]) -> String {
    u.iter().take(3).map(|x| x.file.as_str()).collect::<Vec<_>>().join(", ") + if u.len() > 3 { ", ..." } else { "" }
}

/// Write report.json, report.csv and report.parquet atomically (temporary file, then
/// rename). The Parquet table is encoded first: a failure there writes none of them.
fn write_report(journal: &mut Journal<Entry>, report: &Report, top: usize) -> Result<()> {
    let unreadable: Vec<String> = report.unreadable.iter().map(|u| format!("unreadable: {}", u.error)).collect();
    let rows: Vec<BatchRow> = report
        .images
        .iter()
        .map(|e| BatchRow {
            file: &e.file,
            top: &e.top,
            class: Some(&e.class),
            method: Some(&e.method),
            map_status: &e.map_status,
            output: Some(&e.output),
            timings: Some(&e.timings),
            warnings: &e.warnings,
        })
        .chain(report.unreadable.iter().zip(&unreadable).map(|(u, status)| BatchRow {
            file: &u.file,
            top: &[],
            class: None,
            method: None,
            map_status: status,
            output: None,
            timings: None,
            warnings: &[],
        }))
        .collect();
    let parquet = table::batch_parquet(&rows, &journal.out().join("report.parquet"))?;
    let json = serde_json::to_vec_pretty(report)?;
    journal.write_report("report.json", &json)?;
    let mut w = csv::Writer::from_writer(Vec::new());
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
    for e in &report.images {
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
    for u in &report.unreadable {
        let mut row = vec![u.file.clone()];
        row.resize(header.len(), String::new());
        let status = header.iter().position(|h| h == "map_status").expect("column");
        row[status] = format!("unreadable: {}", u.error);
        w.write_record(&row)?;
    }
    journal.write_report("report.csv", &w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;
    journal.write_report("report.parquet", &parquet)?;
    Ok(())
}

/// The name of `p` relative to `root`, as the report and the journal key it.
fn rel_name(root: &Path, p: &Path) -> String {
    p.strip_prefix(root).unwrap_or(p).to_string_lossy().into_owned()
}

/// Whether an output from an earlier run is still a whole PNG (a user may have truncated or
/// replaced it since; camscope's own writes are atomic).
pub(super) fn decodes(path: &Path) -> bool {
    image::ImageReader::open(path).and_then(|r| r.with_guessed_format()).is_ok_and(|r| r.decode().is_ok())
}
