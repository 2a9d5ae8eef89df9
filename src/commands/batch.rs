//! `camscope batch DIR --out OUTDIR`: an overlay per image, mirroring the tree, and a report
//! (JSON and CSV). Resumable; never writes inside DIR or outside OUTDIR.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};

use camscope::cam::Method;
use camscope::dataset::cache::FileStamp;
use camscope::dataset::scan::Scan;
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
    pub images: Vec<Entry>,
    pub unreadable: Vec<Unreadable>,
    pub non_images_skipped: usize,
    pub reused_from_previous_run: usize,
    pub total_seconds: f64,
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
fn stamp(path: &Path) -> (u64, i128) {
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
    check_folders(&args.dir, &args.out)?;
    let path = super::model_path(model)?;
    let config = EngineConfig {
        layer: args.layer.clone(),
        score: args.score,
        session: model.session_options(),
        batch: args.batch.max(1),
        ..EngineConfig::default()
    };
    let mut engine = Engine::from_model(model.open(&path)?, config)?;
    let labels = engine.model().card.labels();
    let class = args.class.as_deref().map(|c| class_index(&labels, c)).transpose()?;
    let mut scan = Scan::new(&args.dir)?;
    let images: Vec<PathBuf> = scan.by_ref().collect();
    let non_images = scan.stats().non_images;
    let layer = engine.target().tensor.clone();
    let method = args.method.to_string();
    // Resume: reuse last run's entries whose overlay still exists for an unchanged image.
    let report_path = args.out.join("report.json");
    let previous: HashMap<String, Entry> = if args.overwrite {
        HashMap::new()
    } else {
        std::fs::read(&report_path)
            .ok()
            .and_then(|b| serde_json::from_slice::<Report>(&b).ok())
            .filter(|r| r.layer == layer && r.method == method && r.score == args.score.to_string())
            .map(|r| r.images.into_iter().map(|e| (e.file.clone(), e)).collect())
            .unwrap_or_default()
    };
    let mut entries = Vec::new();
    let mut unreadable = Vec::new();
    let mut reused = 0;
    let mut todo = Vec::new();
    for img in &images {
        let rel = img.strip_prefix(&args.dir).unwrap_or(img).to_string_lossy().into_owned();
        let (size, modified_ns) = stamp(img);
        match previous.get(&rel) {
            // An entry made from a truncated file under --allow-truncated is redone (and so
            // refused) by a run without it.
            Some(e)
                if e.size == size
                    && e.modified_ns == modified_ns
                    && (e.warnings.is_empty() || engine.model().card.input.allow_truncated)
                    && args.out.join(&e.output).is_file() =>
            {
                entries.push(e.clone());
                reused += 1;
            }
            _ => todo.push((img.clone(), rel, size, modified_ns)),
        }
    }
    let (provider, _) = engine.provider();
    eprintln!(
        "camscope batch: {} images under {} ({} non-image files skipped, {} done in a previous run), {} on {}",
        images.len(),
        args.dir.display(),
        non_images,
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
        images,
        unreadable,
        non_images_skipped: non_images,
        reused_from_previous_run: reused,
        total_seconds: started.elapsed().as_secs_f64(),
    };
    // A report of the images done so far, every few seconds: an interrupted run (Ctrl-C,
    // a killed job) then resumes from it instead of redoing everything and writing
    // `name-1.png` copies beside the overlays it already wrote.
    let mut checkpoint = std::time::Instant::now();
    for chunk in todo.chunks(args.batch.max(1)) {
        if checkpoint.elapsed() > std::time::Duration::from_secs(2) {
            write_report(&args.out, &report_of(entries.clone(), unreadable.clone()), args.top)?;
            checkpoint = std::time::Instant::now();
        }
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
            let out_path = args.out.join(&rel_out);
            if let Some(parent) = out_path.parent() {
                std::fs::create_dir_all(parent)
                    .with_context(|| format!("{}: cannot create the folder", parent.display()))?;
            }
            // The user asked to replace outputs with --overwrite; otherwise a name already
            // taken (by a file not from our report) gets a fresh one.
            let written = if args.overwrite || !out_path.exists() {
                render::png::write_png(&overlay, &out_path)?;
                out_path.clone()
            } else {
                render::png::write_png_new(&overlay, &out_path)?
            };
            let render_ms = t0.elapsed().as_secs_f64() * 1e3;
            let top = loaded.scores.top_k(args.top, &labels);
            entries.push(Entry {
                file: rel.clone(),
                top,
                class: loaded.scores.prediction(target, &labels),
                method: method.clone(),
                map_status: serde_json::to_value(MapStatusName::from(map.normalized.status))?
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
                output: written.strip_prefix(&args.out).unwrap_or(&written).to_string_lossy().into_owned(),
                timings: Timings {
                    decode_ms: loaded.timings.decode_ms,
                    body_ms: loaded.timings.body_ms,
                    render_ms,
                    ..map.timings
                },
                size: *size,
                modified_ns: *modified_ns,
                warnings: loaded.warnings.clone(),
            });
            progress.step(&format!("{rel} -> {}", written.display()));
        }
    }
    progress.finish();
    entries.sort_by(|a, b| a.file.cmp(&b.file));
    let report = report_of(entries, unreadable);
    write_report(&args.out, &report, args.top)?;
    eprintln!(
        "camscope batch: {} overlays in {} ({} unreadable images skipped{}), report: {}, {}",
        report.images.len(),
        args.out.display(),
        report.unreadable.len(),
        if report.unreadable.is_empty() { String::new() } else { format!(": {}", list(&report.unreadable)) },
        report_path.display(),
        args.out.join("report.csv").display()
    );
    Ok(if report.images.is_empty() && !images.is_empty() { ExitCode::from(1) } else { ExitCode::SUCCESS })
}

fn list(u: &[Unreadable]) -> String {
    u.iter().take(3).map(|x| x.file.as_str()).collect::<Vec<_>>().join(", ") + if u.len() > 3 { ", ..." } else { "" }
}

/// Write report.json and report.csv atomically (temporary file, then rename).
fn write_report(out: &Path, report: &Report, top: usize) -> Result<()> {
    let json = serde_json::to_vec_pretty(report)?;
    atomic_write(&out.join("report.json"), &json)?;
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
    atomic_write(&out.join("report.csv"), &w.into_inner().map_err(|e| anyhow::anyhow!("{e}"))?)?;
    Ok(())
}

fn atomic_write(path: &Path, bytes: &[u8]) -> Result<()> {
    let tmp = path.with_extension(format!("tmp-{}", std::process::id()));
    std::fs::write(&tmp, bytes).with_context(|| format!("{}: cannot write the report", tmp.display()))?;
    std::fs::rename(&tmp, path).with_context(|| format!("{}: cannot write the report", path.display()))?;
    Ok(())
}
