//! `camscope explain`: top-k classes per image.

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::{Result, bail};

use camscope::engine::Classifier;
use camscope::imaging;
use camscope::scores::ClassScores;

use crate::ModelArgs;

pub fn run(images: &[PathBuf], args: &ModelArgs, top: usize) -> Result<ExitCode> {
    if top == 0 {
        bail!("--top 0 lists nothing; use --top 1 or more");
    }
    let model = super::load_model(args)?;
    let mut classifier = Classifier::new(&model, &args.session_options())?;
    let labels = model.card.labels();
    let mut failed = 0;
    for path in images {
        let tensor = match imaging::load_tensor(path, &model.card.input) {
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
            ClassScores::from_output(out.row(0).as_slice().expect("contiguous row"), model.outputs_probabilities);
        println!("{}", path.display());
        for (rank, p) in scores.top_k(top, &labels).iter().enumerate() {
            println!("  {:>2}. {:<32} {:>6.2}%  (class {})", rank + 1, p.label, p.probability * 100.0, p.index);
        }
    }
    Ok(if failed > 0 { ExitCode::from(1) } else { ExitCode::SUCCESS })
}
