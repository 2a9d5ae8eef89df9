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
use camscope::tui::{self, Graphics, ScanJob, Source};

use super::recorded::Target;

use crate::ModelArgs;

/// Options of the inspector beyond the model's.
#[derive(Debug, Clone)]
pub struct InspectArgs {
    pub path: PathBuf,
    pub layer: Option<String>,
    /// `None`: Grad-CAM, or the method a triage output was made with.
    pub method: Option<Method>,
    /// `None`: the logit, or the score a triage output was made with.
    pub score: Option<ScoreKind>,
    pub top: usize,
    pub colormap: Colormap,
    pub alpha: f64,
    pub graphics: Graphics,
    pub save_dir: Option<PathBuf>,
    /// Ground truth CSV (`--labels`); without it, folder names.
    pub labels: Option<PathBuf>,
    pub trace: Option<PathBuf>,
    /// Key bindings file (`--keys`); without it, `~/.config/camscope/keys.toml` if present.
    pub keys: Option<PathBuf>,
    /// Where a triage output's images are on this machine (`--root`).
    pub root: Option<PathBuf>,
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
    // A mistake in the key file is reported with the other argument errors, in the shell.
    let keys = tui::keys::KeyList::load(args.keys.as_deref())?;
    if let Target::Triage(file) = super::recorded::target(&args.path)? {
        return run_recorded(args, model, &file, keys);
    }
    if let Some(root) = &args.root {
        bail!(
            "--root {}: relocates the images of a triage output folder, and {} holds no triage.json; drop --root, or give the folder `camscope triage -o` wrote",
            root.display(),
            args.path.display()
        );
    }
    let scan = Scan::new(&args.path)?;
    let path = super::model_path(model)?;
    if std::io::stderr().is_terminal() {
        // Loading takes a moment; a progress line (not when stderr is captured: errors stay one line).
        eprintln!("camscope: loading {} …", path.display());
    }
    let config = EngineConfig {
        layer: args.layer.clone(),
        score: args.score.unwrap_or(ScoreKind::Logit),
        // Idle ONNX Runtime threads must not spin on the cores the UI draws with.
        session: SessionOptions { intra_op_spinning: Some(false), ..model.session_options() },
        cache_bytes: CACHE_BYTES,
        ..EngineConfig::default()
    };
    let mut loaded = LoadedModel::open(&path, model.card.as_deref(), &config.session)?;
    model.apply(&mut loaded);
    let triage = scan_job(args, model, &loaded)?;
    let engine = Engine::from_model(loaded, config)?;
    need_terminal(args)?;
    let opts = options(args, args.path.clone(), args.method.unwrap_or(Method::GradCam), triage, keys);
    tui::run(engine, Source::Folder(scan), opts)?;
    Ok(ExitCode::SUCCESS)
}

/// In scripts and pipes the inspector cannot run: say what to use instead.
fn need_terminal(args: &InspectArgs) -> Result<()> {
    if !std::io::stdout().is_terminal() || !std::io::stdin().is_terminal() {
        bail!(
            "the inspector needs an interactive terminal; use `camscope explain {}` in scripts and pipes",
            args.path.display()
        );
    }
    Ok(())
}

/// The inspector's options.
fn options(
    args: &InspectArgs,
    root: PathBuf,
    method: Method,
    triage: Option<ScanJob>,
    keys: tui::keys::KeyList,
) -> tui::Options {
    let save_dir = match &args.save_dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().unwrap_or_else(|_| PathBuf::from(".")),
    };
    tui::Options {
        root,
        top_k: args.top,
        method,
        colormap: args.colormap,
        alpha: args.alpha,
        graphics: args.graphics,
        save_dir,
        trace: args.trace.clone(),
        triage,
        keys,
    }
}

/// `camscope OUT` on a triage output: the recorded predictions, no scan; the model checked
/// to be the one they came from (see `commands::recorded`), the images under the recorded
/// dataset root or `--root`. Everything that can be refused is refused here, in the shell.
fn run_recorded(
    args: &InspectArgs,
    model: &ModelArgs,
    file: &std::path::Path,
    keys: tui::keys::KeyList,
) -> Result<ExitCode> {
    use super::recorded;
    if let Some(csv) = &args.labels {
        bail!(
            "--labels {}: {} holds the ground truth its triage recorded; drop --labels (or triage again with it)",
            csv.display(),
            args.path.display()
        );
    }
    let t = recorded::read(file)?;
    let root = match &args.root {
        Some(r) if !r.is_dir() => bail!(
            "--root {}: no such folder; give the folder that holds the dataset here (the triage's was {})",
            r.display(),
            t.dataset().display()
        ),
        Some(r) => r.canonicalize().unwrap_or_else(|_| r.clone()),
        None => t.dataset(),
    };
    let path = recorded::choose_model(file, &t, model)?;
    if std::io::stderr().is_terminal() {
        eprintln!("camscope: loading {} …", path.display());
    }
    let method = args.method.or_else(|| t.method()).unwrap_or(Method::GradCam);
    let config = EngineConfig {
        // The triage's layer, so the maps match its PNGs; --layer may choose another.
        layer: Some(args.layer.clone().unwrap_or_else(|| t.layer().to_owned())),
        score: args.score.or_else(|| t.score()).unwrap_or(ScoreKind::Logit),
        session: SessionOptions { intra_op_spinning: Some(false), ..model.session_options() },
        cache_bytes: CACHE_BYTES,
        ..EngineConfig::default()
    };
    let mut loaded = LoadedModel::open(&path, model.card.as_deref(), &config.session)?;
    model.apply(&mut loaded);
    recorded::check_card(file, &t, &mut loaded)?;
    let engine = Engine::from_model(loaded, config)?;
    // Maps other than the triage's are allowed (they do not change the predictions), and said.
    let mut differs = Vec::new();
    if engine.target().tensor != t.layer() {
        differs.push(format!("layer {} (triage: {})", engine.target().tensor, t.layer()));
    }
    if t.method().is_some_and(|m| m != method) {
        differs.push(format!("method {method} (triage: {})", t.method().map(|m| m.to_string()).unwrap_or_default()));
    }
    need_terminal(args)?;
    let out = file.parent().unwrap_or(std::path::Path::new("."));
    let mut rec = recorded::recorded(t, out, &root);
    if !differs.is_empty() {
        let line =
            format!("maps with {}: not those of the PNGs under {}", differs.join(", "), out.join("mistakes").display());
        rec.message = Some(match rec.message.take() {
            Some(shard) => format!("{shard} · {line}"),
            None => line,
        });
    }
    let opts = options(args, root, method, None, keys);
    tui::run(engine, Source::Recorded(Box::new(rec)), opts)?;
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
