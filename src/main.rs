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
    #[command(flatten)]
    decode: DecodeArgs,
    /// Target layer: tensor name, node name, or a unique part of one (default: the last map before pooling)
    #[arg(long, short = 'l')]
    layer: Option<String>,
    /// gradcam, gradcam++, xgradcam, hirescam, layercam, eigencam, scorecam, ablationcam, guided-gradcam (default: gradcam, or a triage output's)
    #[arg(long)]
    method: Option<Method>,
    /// Differentiate the pre-softmax logit or the probability (default: logit, or a triage output's)
    #[arg(long, value_name = "logit|prob")]
    score: Option<ScoreKind>,
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
    /// Key bindings (TOML, `action = ["key", ...]`; default ~/.config/camscope/keys.toml if present)
    #[arg(long, value_name = "FILE")]
    keys: Option<PathBuf>,
    /// With a triage output folder as PATH: where its images are on this machine (default: the dataset folder it recorded)
    #[arg(long, value_name = "DIR")]
    root: Option<PathBuf>,
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
    /// Token layout of a transformer's maps where the graph leaves it ambiguous: K extra
    /// tokens first (class, registers), or K+HxW (default: read from the graph)
    #[arg(long, value_name = "K+HxW")]
    pub tokens: Option<camscope::grad::TokenSpec>,
    /// How images are read: set from the commands that read images (see [`DecodeArgs`]).
    #[arg(skip)]
    pub decode: DecodeArgs,
}

/// How the commands that read images decode them (explain, batch, triage, bench, the
/// inspector). They change the tensor a file becomes, so they travel in the model card's
/// input spec (and the triage cache keys on them).
#[derive(Args, Clone, Debug, Default)]
pub struct DecodeArgs {
    /// Use pixels as stored, ignoring the EXIF orientation (for a model trained on raw sensor orientation)
    #[arg(long)]
    pub ignore_exif: bool,
    /// Use truncated JPEGs (the missing part is grey) instead of refusing them, with a warning in every output
    #[arg(long)]
    pub allow_truncated: bool,
    /// Refuse images with more pixels than this (default: 178956970, as Pillow; a guard against decompression bombs)
    #[arg(long, value_name = "N", value_parser = clap::value_parser!(u64).range(1..))]
    pub max_pixels: Option<u64>,
    /// Decode every pixel of large JPEGs (default: at 1/2, 1/4 or 1/8 scale when the crop still gets at least the model's input size, as Pillow's draft)
    #[arg(long)]
    pub exact_decode: bool,
}

impl ModelArgs {
    /// Open the model with these options (the card, then `--tokens` and the decoding options
    /// over the card's). `gradients`: the command's method needs them, so an operator without
    /// a gradient rule that blocks every layer is an error at once (see
    /// `LoadedModel::open_checked`).
    pub fn open(
        &self,
        path: &std::path::Path,
        gradients: bool,
    ) -> Result<camscope::engine::LoadedModel, camscope::engine::EngineError> {
        let mut m = camscope::engine::LoadedModel::open_checked(
            path,
            self.card.as_deref(),
            &self.session_options(),
            gradients,
        )?;
        self.apply(&mut m);
        Ok(m)
    }

    /// Put the command line's `--tokens` and decoding options over an opened model's card.
    pub fn apply(&self, m: &mut camscope::engine::LoadedModel) {
        if self.tokens.is_some() {
            m.analysis.set_tokens(self.tokens);
        }
        let input = &mut m.card.input;
        input.ignore_exif |= self.decode.ignore_exif;
        input.exact_decode |= self.decode.exact_decode;
        input.allow_truncated = self.decode.allow_truncated;
        if let Some(n) = self.decode.max_pixels {
            input.max_pixels = n;
        }
    }

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
        #[command(flatten)]
        args: commands::explain::ExplainArgs,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        decode: DecodeArgs,
    },
    /// Explain every image under DIR: overlays mirroring the tree in OUTDIR, report.json and report.csv
    Batch {
        #[command(flatten)]
        args: commands::batch::BatchArgs,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        decode: DecodeArgs,
    },
    /// Triage misclassifications: accuracy, confusions, and maps (predicted / true / contrast) for each mistake
    Triage {
        #[command(flatten)]
        args: commands::triage::TriageArgs,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        decode: DecodeArgs,
    },
    /// Combine the outputs of `batch` or `triage` shards (--shard K/N) into what one unsharded run writes
    Merge {
        /// The shards' output folders, all of them, in any order
        #[arg(value_name = "OUT_K", required = true)]
        inputs: Vec<PathBuf>,
        /// Output folder of the merged result
        #[arg(long, short = 'o', value_name = "OUTDIR")]
        out: PathBuf,
    },
    /// Measure camscope's speed on this machine: forward, body, head, Grad-CAM, Score-CAM, throughput
    Bench {
        /// Image to explain (default: the bundled sample photo of an espresso)
        #[arg(long, value_name = "IMAGE")]
        image: Option<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        #[command(flatten)]
        decode: DecodeArgs,
        /// Repetitions per figure (medians are reported)
        #[arg(long, default_value_t = 30)]
        runs: usize,
        /// Repetitions of Score-CAM and Ablation-CAM (slow; 0 skips them)
        #[arg(long, default_value_t = 3)]
        scorecam_runs: usize,
        /// Instead: generate N small images and measure the triage scan (images/s, UI tick, peak RSS)
        #[arg(long, value_name = "N")]
        scan: Option<usize>,
        /// Images per model run for --scan
        #[arg(long, default_value_t = 4)]
        batch: usize,
        /// Decoding threads for --scan (default: by provider and cores, as the inspector does)
        #[arg(long, value_name = "N")]
        decoders: Option<usize>,
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
    /// Say which ONNX Runtime (version, file, how it was found) and which bundled model camscope uses
    Doctor {
        #[command(flatten)]
        model: ModelArgs,
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
            keys: i.keys,
            root: i.root,
        };
        let model = ModelArgs { decode: i.decode, ..i.model };
        return finish(commands::inspect::run(&args, &model));
    };
    let result = match command {
        Command::Explain { args, model, decode } => commands::explain::run(&args, &ModelArgs { decode, ..model }),
        Command::Batch { args, model, decode } => commands::batch::run(&args, &ModelArgs { decode, ..model }),
        Command::Triage { args, model, decode } => commands::triage::run(&args, &ModelArgs { decode, ..model }),
        Command::Merge { inputs, out } => commands::merge::run(&inputs, &out),
        Command::Bench { scan: Some(n), model, decode, batch, decoders, .. } => {
            commands::bench::run_scan(n, &ModelArgs { decode, ..model }, batch, decoders)
        }
        Command::Bench { image, model, decode, runs, scorecam_runs, json, .. } => {
            let model = ModelArgs { decode, ..model };
            commands::bench::run(&commands::bench::BenchArgs { image, runs, scorecam_runs, json }, &model)
        }
        Command::Layers { model_path, mut model, json } => {
            model.model = model_path.or(model.model);
            commands::layers::run(&model, json)
        }
        Command::Doctor { model } => commands::doctor::run(&model),
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
