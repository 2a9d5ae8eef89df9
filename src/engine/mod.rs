//! Everything that talks to ONNX Runtime. No other module uses `ort`.

pub mod runtime;

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView4, Ix2};
use ort::session::Session;
use ort::value::TensorRef;

use crate::model::{CardError, ModelCard, OutputKind};

pub use self::runtime::{OrtLibrary, RuntimeError};

/// Why the engine could not load a model or run it.
#[derive(Debug, thiserror::Error)]
pub enum EngineError {
    #[error(transparent)]
    Runtime(#[from] RuntimeError),
    #[error("{}: no such model file; pass --model PATH to an .onnx classifier", path.display())]
    MissingModel { path: PathBuf },
    #[error("{}: not a loadable ONNX model ({detail}); re-export it or pass the right --model", path.display())]
    BadModel { path: PathBuf, detail: String },
    #[error(transparent)]
    Card(#[from] CardError),
    #[error("{}: {detail}", path.display())]
    Unsupported { path: PathBuf, detail: String },
    #[error("{}: ONNX Runtime failed while running the model: {detail}", path.display())]
    Run { path: PathBuf, detail: String },
}

/// Options shared by every session camscope creates.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// `--ort-lib`: an explicit ONNX Runtime library.
    pub ort_lib: Option<PathBuf>,
    /// Intra-op threads; `None` lets ONNX Runtime use one per core.
    pub threads: Option<usize>,
}

/// Build a CPU session from a model file.
pub(crate) fn cpu_session(path: &Path, opts: &SessionOptions) -> Result<Session, EngineError> {
    let lib = runtime::init(opts.ort_lib.as_deref())?;
    if !path.is_file() {
        return Err(EngineError::MissingModel { path: path.to_owned() });
    }
    let bad = |e: ort::Error| EngineError::BadModel { path: path.to_owned(), detail: first_line(&e.to_string()) };
    let mut builder = Session::builder(&lib.environment).map_err(bad)?;
    if let Some(n) = opts.threads {
        builder = builder.with_intra_threads(n).map_err(|e| bad(e.into()))?;
    }
    builder.commit_from_file(path).map_err(bad)
}

/// ONNX Runtime messages can span lines; errors here are one line.
pub(crate) fn first_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// Static dims of a session input/output (`-1` where dynamic).
fn outlet_dims(outlet: &ort::value::Outlet) -> Option<Vec<i64>> {
    outlet.dtype().tensor_shape().map(|s| s.iter().copied().collect())
}

/// The plain classifier: the original model, input tensor in, class scores out. Used by
/// `explain` and as the baseline the gradient graphs are measured against.
pub struct Classifier {
    session: Session,
    path: PathBuf,
    input_name: String,
    output_name: String,
    pub card: ModelCard,
    /// Whether the output already holds probabilities.
    pub outputs_probabilities: bool,
}

impl Classifier {
    /// Load `model` with its card (explicit, sidecar, metadata or inferred) and check that
    /// the card agrees with the model's input and output shapes.
    pub fn open(model: &Path, card_path: Option<&Path>, opts: &SessionOptions) -> Result<Self, EngineError> {
        let session = cpu_session(model, opts)?;
        let metadata_card = session.metadata().ok().and_then(|m| m.custom("camscope.card"));
        let located = ModelCard::locate(model, card_path, metadata_card.as_deref())?;
        let images: Vec<&ort::value::Outlet> =
            session.inputs().iter().filter(|i| outlet_dims(i).is_some_and(|d| d.len() == 4)).collect();
        let input = match located.as_ref().and_then(|c| c.input.name.clone()) {
            Some(name) => session.inputs().iter().find(|i| i.name() == name).ok_or_else(|| {
                let names: Vec<&str> = session.inputs().iter().map(|i| i.name()).collect();
                CardError::Mismatch {
                    card: located.as_ref().map(|c| c.source.to_string()).unwrap_or_default(),
                    detail: format!(
                        "input `{name}` is not an input of {} (inputs: {}); fix `input.name`",
                        model.display(),
                        names.join(", ")
                    ),
                }
            })?,
            None if images.len() == 1 => images[0],
            None => {
                return Err(EngineError::Unsupported {
                    path: model.to_owned(),
                    detail: format!(
                        "{} 4-D inputs; name the image input in a model card (`input.name`)",
                        if images.is_empty() { "no".to_string() } else { images.len().to_string() }
                    ),
                });
            }
        };
        let in_dims = outlet_dims(input).unwrap_or_default();
        let mut card = match located {
            Some(c) => c,
            None => ModelCard::infer(model, input.name(), &in_dims)?,
        };
        card.check_input(model, input.name(), &in_dims)?;
        card.input.name = Some(input.name().to_owned());
        if session.inputs().len() > 1 {
            return Err(EngineError::Unsupported {
                path: model.to_owned(),
                detail: format!(
                    "the model has {} inputs; camscope explains single-input image classifiers",
                    session.inputs().len()
                ),
            });
        }
        let output = match &card.output.name {
            Some(name) => {
                session.outputs().iter().find(|o| o.name() == name).ok_or_else(|| EngineError::Unsupported {
                    path: model.to_owned(),
                    detail: format!("output `{name}` named by the model card does not exist"),
                })?
            }
            None => &session.outputs()[0],
        };
        let out_dims = outlet_dims(output).unwrap_or_default();
        let classes = match out_dims.as_slice() {
            [_, c] if *c > 0 => *c as usize,
            _ => {
                return Err(EngineError::Unsupported {
                    path: model.to_owned(),
                    detail: format!(
                        "output `{}` has shape {}; camscope needs class scores shaped [N, classes]",
                        output.name(),
                        crate::model::fmt_dims(&out_dims)
                    ),
                });
            }
        };
        card.resolve_labels(classes, model)?;
        let (input_name, output_name) = (input.name().to_owned(), output.name().to_owned());
        let outputs_probabilities = card.output.kind == OutputKind::Probabilities;
        Ok(Self { session, path: model.to_owned(), input_name, output_name, card, outputs_probabilities })
    }

    pub fn model_path(&self) -> &Path {
        &self.path
    }

    /// Number of classes.
    pub fn num_classes(&self) -> usize {
        self.card.labels.as_ref().map_or(0, |l| l.len())
    }

    /// Run the model on a batch; returns the raw output `[N, classes]`.
    pub fn run(&mut self, batch: ArrayView4<'_, f32>) -> Result<Array2<f32>, EngineError> {
        let run_err = |e: ort::Error| EngineError::Run { path: self.path.clone(), detail: first_line(&e.to_string()) };
        let batch = batch.as_standard_layout();
        let tensor = TensorRef::from_array_view(batch.view()).map_err(run_err)?;
        let outputs = self.session.run(ort::inputs![self.input_name.as_str() => tensor]).map_err(run_err)?;
        let scores = outputs[self.output_name.as_str()].try_extract_array::<f32>().map_err(run_err)?;
        let scores = scores
            .into_dimensionality::<Ix2>()
            .map_err(|e| EngineError::Run { path: self.path.clone(), detail: e.to_string() })?;
        Ok(scores.to_owned())
    }
}
