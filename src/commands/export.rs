//! `camscope export`: the gradient graph as one ONNX file.

use std::path::Path;
use std::process::ExitCode;

use anyhow::{Result, bail};

use camscope::grad::ScoreKind;
use camscope::onnx;

use crate::ModelArgs;

pub fn run(args: &ModelArgs, layer: Option<&str>, score: ScoreKind, out: &Path, force: bool) -> Result<ExitCode> {
    // Even with --force, only a regular file is replaced: renaming over a link drops the
    // user's link, over a device removes a system node.
    if let Some(what) = camscope::fsutil::non_regular(out) {
        bail!(
            "{}: is {what}, not a regular file; camscope only replaces regular files, so choose another -o path",
            out.display()
        );
    }
    if out.exists() && !force {
        bail!("{}: already exists; choose another -o path or pass --force to replace it", out.display());
    }
    let model = super::load_model(args)?;
    if args.model.as_deref().is_some_and(|m| same_file(m, out)) {
        bail!("{}: is the input model; choose another -o path", out.display());
    }
    let grad_err = |source| camscope::engine::EngineError::Grad { path: model.path.clone(), source };
    let target = model.analysis.resolve_layer(layer).map_err(grad_err)?;
    let plan = model.analysis.plan(&target, score, false).map_err(grad_err)?;
    onnx::write_model(out, &plan.export())?;
    let (c, h, w) = target.chw();
    println!(
        "{}: gradient graph for layer {} ({c}x{h}x{w}, {}), score {score}, {} classes",
        out.display(),
        target.tensor,
        target.layout,
        plan.classes
    );
    println!("  inputs: input {}, seed [N, {}]", model.card.input.layout_dims_string(), plan.classes);
    println!(
        "  outputs: scores [N, {}], activations {}, gradients {}",
        plan.classes,
        target.shape_string(),
        target.shape_string()
    );
    Ok(ExitCode::SUCCESS)
}

fn same_file(a: &Path, b: &Path) -> bool {
    matches!((a.canonicalize(), b.canonicalize()), (Ok(x), Ok(y)) if x == y)
}
