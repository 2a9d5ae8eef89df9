//! Per-command glue between the CLI and the library.

pub mod batch;
pub mod bench;
pub mod explain;
pub mod export;
pub mod inspect;
pub mod layers;
pub mod progress;
pub mod triage;

use anyhow::{Context, Result};

use camscope::engine::LoadedModel;
use camscope::model;

use crate::ModelArgs;

/// An error chain as one line: `context: cause: cause`.
pub fn one_line(e: &anyhow::Error) -> String {
    let mut parts: Vec<String> = Vec::new();
    for c in e.chain() {
        let s = c.to_string();
        // thiserror's transparent variants repeat their source: skip exact repeats.
        if parts.last().is_none_or(|p| !p.contains(&s)) {
            parts.push(s);
        }
    }
    parts.join(": ").replace('\n', " ")
}

/// The model named by `--model`, or the bundled one.
pub fn model_path(args: &ModelArgs) -> Result<std::path::PathBuf> {
    match &args.model {
        Some(p) => Ok(p.clone()),
        None => Ok(model::bundled_model().context("no --model given")?),
    }
}

/// Load the model named by `--model` (or the bundled one).
pub fn load_model(args: &ModelArgs) -> Result<LoadedModel> {
    Ok(args.open(&model_path(args)?)?)
}
