//! The `camscope` command line: argument parsing, and turning typed errors into one-line
//! messages. The work happens in the library; `commands/` holds the thin per-command glue.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use camscope::cam::Method;
use camscope::engine::{Device, SessionOptions};
use camscope::grad::ScoreKind;
use camscope::render::Colormap;
use camscope::tui::Graphics;

#[derive(Parser)]
#[command(
    name = "camscope",
    version,
    about = "Explain image classifiers (Grad-CAM) for any ONNX model, in the terminal",
    long_about = "Explain image classifiers (Grad-CAM) for any ONNX model, in the terminal.\n\n\
                  Without a command, `camscope [PATH]` opens the interactive inspector on the images under PATH \
                  (a folder or one image; default: the current folder). Press ? inside it for the keys.",
    args_conflicts_with_subcommands = true,
    subcommand_negates_reqs = true
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
    #[command(flatten)]
    inspect: InspectCli,
}

/// `camscope [PATH]`: the interactive inspector.
#[derive(Args, Debug)]
struct InspectCli {
    /// Image or folder to inspect (folders are listed recursively)
    #[arg(value_name = "PATH")]
    path: Option<PathBuf>,
    #[command(flatten)]
    model: ModelArgs,
    /// Target layer: tensor name, node name, or a unique part of one (default: the last map before pooling)
    #[arg(long, short = 'l')]
    layer: Option<String>,
    /// gradcam, gradcam++, xgradcam, hirescam, layercam, eigencam, scorecam, ablationcam, guided-gradcam
    #[arg(long, default_value = "gradcam")]
    method: Method,
    /// Differentiate the pre-softmax logit or the probability
    #[arg(long, default_value = "logit", value_name = "logit|prob")]
    score: ScoreKind,
    /// How many classes to list
    #[arg(long, short = 'k', default_value_t = 5)]
    top: usize,
    /// jet, turbo, viridis, inferno, grey
    #[arg(long, default_value = "jet")]
    colormap: Colormap,
    /// Weight of the heatmap in the overlay, 0..1
    #[arg(long, default_value_t = 0.5)]
    alpha: f64,
    /// How images are drawn: ask the terminal, or force a protocol (SSH often hides the terminal's identity)
    #[arg(long, default_value = "auto", value_name = "auto|kitty|sixel|iterm2|halfblocks")]
    graphics: Graphics,
    /// Folder where `s` saves overlays (default: the current folder)
    #[arg(long, value_name = "DIR")]
    save_dir: Option<PathBuf>,
    /// Ground truth as a CSV with columns path,label (default: folder names, when they name classes)
    #[arg(long, value_name = "FILE.csv")]
    labels: Option<PathBuf>,
    /// Write event and frame timings to FILE (JSON lines), for measuring responsiveness
    #[arg(long, value_name = "FILE")]
    trace: Option<PathBuf>,
}

/// Options every command that loads a model shares.
#[derive(Args, Clone, Debug)]
pub struct ModelArgs {
    /// ONNX classifier (default: the bundled EfficientNet-Lite0)
    #[arg(long, short = 'm', value_name = "MODEL.onnx")]
    pub model: Option<PathBuf>,
    /// Model card TOML (default: MODEL.toml beside the model, or inferred)
    #[arg(long, value_name = "CARD.toml")]
    pub card: Option<PathBuf>,
    /// ONNX Runtime shared library (default: searched, see README)
    #[arg(long, value_name = "PATH")]
    pub ort_lib: Option<PathBuf>,
    /// Threads ONNX Runtime may use inside one operator (default: one per core)
    #[arg(long, value_name = "N")]
    pub threads: Option<usize>,
    /// Execution provider: auto (CUDA if it registers, else CPU), cuda, cpu
    #[arg(long, default_value = "auto", value_name = "auto|cuda|cpu")]
    pub device: Device,
}

impl ModelArgs {
    pub fn session_options(&self) -> SessionOptions {
        SessionOptions {
            ort_lib: self.ort_lib.clone(),
            threads: self.threads,
            device: self.device,
            ..SessionOptions::default()
        }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Explain images: top-k classes and a heatmap per class (text, PNG, JSON)
    Explain {
        /// Image files
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        /// Target layer: tensor name, node name, or a unique part of one (default: the last map before pooling)
        #[arg(long, short = 'l')]
        layer: Option<String>,
        /// gradcam, gradcam++, xgradcam, hirescam, layercam, eigencam, scorecam, ablationcam, guided-gradcam
        #[arg(long, default_value = "gradcam")]
        method: Method,
        /// Class to explain, by index or label (repeatable; default: the top-1 class)
        #[arg(long = "class", short = 'c', value_name = "CLASS")]
        classes: Vec<String>,
        /// Contrastive map: evidence for --class against this class
        #[arg(long, value_name = "CLASS")]
        versus: Option<String>,
        /// Differentiate the pre-softmax logit or the probability
        #[arg(long, default_value = "logit", value_name = "logit|prob")]
        score: ScoreKind,
        /// How many classes to list
        #[arg(long, short = 'k', default_value_t = 5)]
        top: usize,
        /// jet, turbo, viridis, inferno, grey
        #[arg(long, default_value = "jet")]
        colormap: Colormap,
        /// Weight of the heatmap in the overlay, 0..1
        #[arg(long, default_value_t = 0.5)]
        alpha: f64,
        /// Write the overlay PNG here (a folder when there are several images or classes)
        #[arg(long, short = 'o', value_name = "FILE.png|DIR")]
        out: Option<PathBuf>,
        /// Replace an existing --out file
        #[arg(long)]
        force: bool,
        /// Print explanations as JSON (top-k, map at feature resolution, timings, ...)
        #[arg(long)]
        json: bool,
        /// Also compute deletion/insertion AUC and average drop (extra model runs)
        #[arg(long)]
        metrics: bool,
        /// Do not show the overlay inline on a terminal
        #[arg(long)]
        no_show: bool,
    },
    /// Explain every image under DIR: overlays mirroring the tree in OUTDIR, report.json and report.csv
    Batch {
        /// Folder of images (searched recursively; non-images are skipped)
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Output folder (created; must not overlap DIR)
        #[arg(long, short = 'o', value_name = "OUTDIR")]
        out: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
        /// Target layer (default: the last map before pooling)
        #[arg(long, short = 'l')]
        layer: Option<String>,
        /// CAM method
        #[arg(long, default_value = "gradcam")]
        method: Method,
        /// Class to explain in every image, by index or label (default: each image's top-1)
        #[arg(long = "class", short = 'c', value_name = "CLASS")]
        class: Option<String>,
        /// Differentiate the pre-softmax logit or the probability
        #[arg(long, default_value = "logit", value_name = "logit|prob")]
        score: ScoreKind,
        /// Classes listed per image in the report
        #[arg(long, short = 'k', default_value_t = 5)]
        top: usize,
        #[arg(long, default_value = "jet")]
        colormap: Colormap,
        #[arg(long, default_value_t = 0.5)]
        alpha: f64,
        /// Recompute and replace outputs of a previous run (default: resume, skipping them)
        #[arg(long)]
        overwrite: bool,
        /// Images per model run
        #[arg(long, default_value_t = 4)]
        batch: usize,
    },
    /// Triage misclassifications: accuracy, confusions, and maps (predicted / true / contrast) for each mistake
    Triage {
        /// Dataset folder (ImageFolder layout: the parent folder names the true class)
        #[arg(value_name = "DIR")]
        dir: PathBuf,
        /// Ground truth from a CSV with columns path,label (label as name or index) instead of folder names
        #[arg(long, value_name = "FILE.csv")]
        labels: Option<PathBuf>,
        /// Output folder (created; must not overlap DIR)
        #[arg(long, short = 'o', value_name = "OUTDIR")]
        out: PathBuf,
        #[command(flatten)]
        model: ModelArgs,
        /// Target layer for the maps (default: the last map before pooling)
        #[arg(long, short = 'l')]
        layer: Option<String>,
        /// CAM method for the maps
        #[arg(long, default_value = "gradcam")]
        method: Method,
        #[arg(long, default_value = "logit", value_name = "logit|prob")]
        score: ScoreKind,
        #[arg(long, default_value = "jet")]
        colormap: Colormap,
        #[arg(long, default_value_t = 0.5)]
        alpha: f64,
        /// Images per model run
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Do not read or write the scan cache
        #[arg(long)]
        no_cache: bool,
    },
    /// Measure camscope's speed on this machine: forward, body, head, Grad-CAM, Score-CAM, throughput
    Bench {
        /// Image to explain (default: the bundled sample photo of an espresso)
        #[arg(long, value_name = "IMAGE")]
        image: Option<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        /// Repetitions per figure (medians are reported)
        #[arg(long, default_value_t = 30)]
        runs: usize,
        /// Repetitions of Score-CAM and Ablation-CAM (slow)
        #[arg(long, default_value_t = 3)]
        scorecam_runs: usize,
        /// Instead: generate N small images and measure the triage scan (images/s, UI tick, peak RSS)
        #[arg(long, value_name = "N")]
        scan: Option<usize>,
        /// Images per model run for --scan
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// List the layers Grad-CAM can target (4-D spatial feature maps) and the default one
    Layers {
        /// ONNX classifier (default: the bundled model)
        #[arg(value_name = "MODEL.onnx")]
        model_path: Option<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        /// Machine-readable output
        #[arg(long)]
        json: bool,
    },
    /// Write the gradient graph as one ONNX file (inputs input, seed; outputs scores, activations, gradients)
    Export {
        /// ONNX classifier
        #[arg(value_name = "MODEL.onnx")]
        model_path: Option<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        /// Target layer: tensor name, node name, or a unique part of one (default: the last map before pooling)
        #[arg(long, short = 'l')]
        layer: Option<String>,
        /// Differentiate the pre-softmax logit or the probability
        #[arg(long, default_value = "logit", value_name = "logit|prob")]
        score: ScoreKind,
        /// Output file (never overwritten unless --force)
        #[arg(long, short = 'o', value_name = "OUT.onnx")]
        out: PathBuf,
        /// Replace OUT.onnx if it exists
        #[arg(long)]
        force: bool,
    },
}

fn main() -> ExitCode {
    // Behave like other Unix tools when output goes to a closed pipe (`camscope layers | head`):
    // end quietly instead of panicking on the failed write.
    #[cfg(unix)]
    // SAFETY: restoring the default disposition of SIGPIPE before any thread starts.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) if e.use_stderr() => {
            // clap's errors span several lines (usage, hints); keep camscope's one-line rule.
            let text = e.render().to_string();
            let first = text.lines().find(|l| !l.trim().is_empty()).unwrap_or("invalid arguments");
            let first = first.trim_start_matches("error: ");
            eprintln!("camscope: error: {first} (see camscope --help)");
            return ExitCode::from(2);
        }
        Err(e) => {
            let _ = e.print();
            return ExitCode::SUCCESS;
        }
    };
    let Some(command) = cli.command else {
        let i = cli.inspect;
        let args = commands::inspect::InspectArgs {
            path: i.path.unwrap_or_else(|| PathBuf::from(".")),
            layer: i.layer,
            method: i.method,
            score: i.score,
            top: i.top,
            colormap: i.colormap,
            alpha: i.alpha,
            graphics: i.graphics,
            save_dir: i.save_dir,
            labels: i.labels,
            trace: i.trace,
        };
        return finish(commands::inspect::run(&args, &i.model));
    };
    let result = match command {
        Command::Explain {
            images,
            model,
            layer,
            method,
            classes,
            versus,
            score,
            top,
            colormap,
            alpha,
            out,
            force,
            json,
            metrics,
            no_show,
        } => {
            let args = commands::explain::ExplainArgs {
                images,
                layer,
                method,
                classes,
                versus,
                score,
                top,
                colormap,
                alpha,
                out,
                force,
                json,
                metrics,
                no_show,
            };
            commands::explain::run(&args, &model)
        }
        Command::Batch { dir, out, model, layer, method, class, score, top, colormap, alpha, overwrite, batch } => {
            let args = commands::batch::BatchArgs {
                dir,
                out,
                layer,
                method,
                class,
                score,
                top,
                colormap,
                alpha,
                overwrite,
                batch,
            };
            commands::batch::run(&args, &model)
        }
        Command::Triage { dir, labels, out, model, layer, method, score, colormap, alpha, batch, no_cache } => {
            let args = commands::triage::TriageArgs {
                dir,
                labels,
                out,
                layer,
                method,
                score,
                colormap,
                alpha,
                batch,
                no_cache,
            };
            commands::triage::run(&args, &model)
        }
        Command::Bench { scan: Some(n), model, batch, .. } => commands::bench::run_scan(n, &model, batch),
        Command::Bench { image, model, runs, scorecam_runs, json, .. } => {
            let image = image.unwrap_or_else(|| {
                std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("samples/espresso/coffee.png")
            });
            commands::bench::run(&commands::bench::BenchArgs { image, runs, scorecam_runs, json }, &model)
        }
        Command::Layers { model_path, mut model, json } => {
            model.model = model_path.or(model.model);
            commands::layers::run(&model, json)
        }
        Command::Export { model_path, mut model, layer, score, out, force } => {
            model.model = model_path.or(model.model);
            commands::export::run(&model, layer.as_deref(), score, &out, force)
        }
    };
    finish(result)
}

/// The exit code of a command, or its error as one line on stderr (exit 1).
fn finish(result: anyhow::Result<ExitCode>) -> ExitCode {
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("camscope: error: {}", commands::one_line(&e));
            ExitCode::from(1)
        }
    }
}
