//! The `camscope` command line: argument parsing, and turning typed errors into one-line
//! messages. The work happens in the library; `commands/` holds the thin per-command glue.

mod commands;

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Args, Parser, Subcommand};

use camscope::engine::{Device, SessionOptions};
use camscope::grad::ScoreKind;

#[derive(Parser)]
#[command(
    name = "camscope",
    version,
    about = "Explain image classifiers (Grad-CAM) for any ONNX model, in the terminal"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
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
        SessionOptions { ort_lib: self.ort_lib.clone(), threads: self.threads, device: self.device }
    }
}

#[derive(Subcommand)]
enum Command {
    /// Classify images and print the top-k classes
    Explain {
        /// Image files
        #[arg(required = true, value_name = "IMAGE")]
        images: Vec<PathBuf>,
        #[command(flatten)]
        model: ModelArgs,
        /// How many classes to list
        #[arg(long, short = 'k', default_value_t = 5)]
        top: usize,
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
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Explain { images, model, top } => commands::explain::run(&images, &model, top),
        Command::Layers { model_path, mut model, json } => {
            model.model = model_path.or(model.model);
            commands::layers::run(&model, json)
        }
        Command::Export { model_path, mut model, layer, score, out, force } => {
            model.model = model_path.or(model.model);
            commands::export::run(&model, layer.as_deref(), score, &out, force)
        }
    };
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("camscope: error: {}", commands::one_line(&e));
            ExitCode::from(1)
        }
    }
}
