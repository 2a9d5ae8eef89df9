//! The `camscope` command line: argument parsing and turning typed errors into one-line
//! messages. All work happens in the library.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::{Args, Parser, Subcommand};

use camscope::engine::{Classifier, SessionOptions};
use camscope::scores::ClassScores;
use camscope::{imaging, model};

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

#[derive(Args, Clone)]
struct ModelArgs {
    /// ONNX classifier (default: the bundled EfficientNet-Lite0)
    #[arg(long, short = 'm', value_name = "MODEL.onnx")]
    model: Option<PathBuf>,
    /// Model card TOML (default: MODEL.toml beside the model, or inferred)
    #[arg(long, value_name = "CARD.toml")]
    card: Option<PathBuf>,
    /// ONNX Runtime shared library (default: searched, see README)
    #[arg(long, value_name = "PATH", global = true)]
    ort_lib: Option<PathBuf>,
    /// Threads ONNX Runtime may use inside one operator (default: one per core)
    #[arg(long, value_name = "N")]
    threads: Option<usize>,
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
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("camscope: error: {}", one_line(&e));
            ExitCode::from(1)
        }
    }
}

/// An error chain as one line: `context: cause: cause`.
fn one_line(e: &anyhow::Error) -> String {
    e.chain().map(|c| c.to_string()).collect::<Vec<_>>().join(": ").replace('\n', " ")
}

fn run(cli: Cli) -> Result<ExitCode> {
    match cli.command {
        Command::Explain { images, model, top } => explain(&images, &model, top),
    }
}

fn open_classifier(args: &ModelArgs) -> Result<Classifier> {
    let path = match &args.model {
        Some(p) => p.clone(),
        None => model::bundled_model().context("no --model given")?,
    };
    let opts = SessionOptions { ort_lib: args.ort_lib.clone(), threads: args.threads };
    Ok(Classifier::open(&path, args.card.as_deref(), &opts)?)
}

fn explain(images: &[PathBuf], args: &ModelArgs, top: usize) -> Result<ExitCode> {
    if top == 0 {
        anyhow::bail!("--top 0 lists nothing; use --top 1 or more");
    }
    let mut classifier = open_classifier(args)?;
    let labels = classifier.card.labels();
    let mut failed = 0;
    for path in images {
        let tensor = match imaging::load_tensor(path, &classifier.card.input) {
            Ok(t) => t,
            Err(e) => {
                eprintln!("camscope: error: {e}");
                failed += 1;
                continue;
            }
        };
        let batch = tensor.insert_axis(ndarray::Axis(0));
        let out = classifier.run(batch.view())?;
        let scores =
            ClassScores::from_output(out.row(0).as_slice().expect("contiguous row"), classifier.outputs_probabilities);
        println!("{}", path.display());
        for (rank, p) in scores.top_k(top, &labels).iter().enumerate() {
            println!("  {:>2}. {:<32} {:>6.2}%  (class {})", rank + 1, p.label, p.probability * 100.0, p.index);
        }
    }
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
