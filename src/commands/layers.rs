//! `camscope layers`: the candidate target layers of a model.

use std::process::ExitCode;

use anyhow::Result;

use crate::ModelArgs;

pub fn run(args: &ModelArgs, json: bool) -> Result<ExitCode> {
    let model = super::load_model(args)?;
    let cands = model.analysis.candidates();
    let layers: Vec<_> = cands.iter().filter(|c| c.op != "Input").collect();
    if json {
        println!("{}", serde_json::to_string_pretty(&layers)?);
        return Ok(ExitCode::SUCCESS);
    }
    if layers.is_empty() {
        println!("{}: no 4-D spatial feature maps on the way to the scores", model.path.display());
        return Ok(ExitCode::SUCCESS);
    }
    let width = layers.iter().map(|c| c.tensor.len()).max().unwrap_or(0).min(60);
    println!(
        "{}: {} candidate layers (the default: the last map before pooling, or the input of a transformer's last attention)",
        model.path.display(),
        layers.len()
    );
    println!("  {:<width$}  {:<18}  {:<18}  layout", "tensor", "op", "shape");
    for c in layers {
        let mark = match (c.is_default, c.reaches_patches) {
            (true, _) => "  <- default",
            // After a transformer picks its class token: listed, but refused as a target.
            (false, false) => "  (after the class token is picked: no gradient on the patches)",
            _ => "",
        };
        println!("  {:<width$}  {:<18}  {:<18}  {}{mark}", c.tensor, c.op, c.shape_string(), c.layout);
    }
    Ok(ExitCode::SUCCESS)
}
