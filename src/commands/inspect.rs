//! `camscope [PATH]`: check the arguments, list PATH and load the model *before* the terminal
//! is taken over (so mistakes read as one line in the shell), then hand over to the inspector.

use std::io::IsTerminal;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};

use camscope::cam::Method;
use camscope::dataset::scan::Scan;
use camscope::dataset::truth::{CsvTruth, FolderTruth, GroundTruth};
use camscope::engine::{Engine, EngineConfig, LoadedModel, SessionOptions};
use camscope::grad::ScoreKind;
use camscope::render::Colormap;
use camscope::triage::{ScanModel, ScanOptions};
use camscope::tui::{self, Graphics, ScanJob};

use crate::ModelArgs;

/// Options of the inspector beyond the model's.
#[derive(Debug, Clone)]
pub struct InspectArgs {
    pub path: PathBuf,
    pub layer: Option<String>,
    pub method: Method,
    pub score: ScoreKind,
    pub top: usize,
    pub colormap: Colormap,
    pub alpha: f64,
    pub graphics: Graphics,
    pub save_dir: Option<PathBuf>,
    /// Ground truth CSV (`--labels`); without it, folder names.
    pub labels: Option<PathBuf>,
    pub trace: Option<PathBuf>,
}

/// Body-result cache of the inspector: the selected image, its prefetched neighbours and the
/// last few visited (about 1 MB each with the bundled model) fit with room to spare; a larger
/// cache only raises the resident memory while browsing.
const CACHE_BYTES: usize = 32 << 20;

pub fn run(args: &InspectArgs, model: &ModelArgs) -> Result<ExitCode> {
    if args.top == 0 {
        bail!("--top 0 lists nothing; use --top 1 or more");
    }
    if !(0.0..=1.0).contains(&args.alpha) {
        bail!("--alpha {} is outside 0..1; 0 shows the image only, 1 the heatmap only", args.alpha);
    }
    let scan = Scan::new(&args.path)?;
    let path = super::model_path(model)?;
    if std::io::stderr().is_terminal() {
        // Loading takes a moment; a progress line (not when stderr is captured: errors stay one line).
        eprintln!("camscope: loading {} …", path.display());
    }
    let config = EngineConfig {
        layer: args.layer.clone(),
        score: args.score,
        // Idle ONNX Runtime threads must not spin on the cores the UI draws with.
        session: SessionOptions { intra_op_spinning: Some(false), ..model.session_options() },
        cache_bytes: CACHE_BYTES,
        ..EngineConfig::default()
    };
    let mut loaded = LoadedModel::open(&path, model.card.as_deref(), &config.session)?;
    model.apply(&mut loaded);
    let triage = scan_job(args, model, &loaded)?;
    let engine = Engine::from_model(loaded, config)?;
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!(
            "the inspector needs an interactive terminal; use `camscope explain {}` in scripts and pipes",
            args.path.display()
        );
    }
    let save_dir = match &args.save_dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    let opts = tui::Options {
        root: args.path.clone(),
        top_k: args.top,
        method: args.method,
        colormap: args.colormap,
        alpha: args.alpha,
        graphics: args.graphics,
        save_dir,
        trace: args.trace.clone(),
        triage,
    };
    tui::run(engine, scan, opts)?;
    Ok(ExitCode::SUCCESS)
}

/// The background scan of a folder: ground truth from `--labels` (read now, so a bad CSV is
/// one line in the shell) or from folder names (the scan finds out whether any names a class).
///
/// The scan's session gets a thread pool of its own, as many threads as the engine's, created
/// on the scan thread after it has dropped to idle priority (see `tui::scanner`): idle cores
/// go to the scan, and the engine and the UI take them back the moment they need them.
fn scan_job(args: &InspectArgs, model: &ModelArgs, loaded: &LoadedModel) -> Result<Option<ScanJob>> {
    if !args.path.is_dir() {
        if let Some(csv) = &args.labels {
            bail!(
                "--labels {}: {} is one image; give a folder to triage it against the labels",
                csv.display(),
                args.path.display()
            );
        }
        return Ok(None);
    }
    let labels = loaded.card.labels();
    let truth = match &args.labels {
        Some(csv) => GroundTruth::Csv(CsvTruth::read(csv, &args.path, &labels)?),
        None => GroundTruth::Folders(FolderTruth::new(&args.path, labels)),
    };
    let threads =
        model.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, std::num::NonZeroUsize::get));
    let session = SessionOptions { own_pool: Some(threads), intra_op_spinning: Some(false), ..model.session_options() };
    // Batches of 2, not the headless scan's 4: here the scan's activations come on top of the
    // engine's memory, and batch 2 kept the inspector's peak at 312 MB instead of 341 MB while
    // browsing during a scan of 6,000 images (2 cores), for 5-8% fewer images per second.
    let mut options = ScanOptions::new(session);
    options.batch = 2;
    Ok(Some(ScanJob { model: ScanModel::from(loaded), root: args.path.clone(), truth, options }))
}
