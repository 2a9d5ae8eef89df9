//! Everything that talks to ONNX Runtime. No other module uses `ort`.
//!
//! [`LoadedModel`] reads a classifier, resolves its model card and measures its tensor
//! shapes; [`Explainer`](explainer::Explainer) runs its body and head graphs.

pub mod cache;
pub mod cuda_libs;
pub mod explainer;
pub mod metrics;
pub mod pipeline;
pub mod probe;
pub mod probe_cache;
pub mod runtime;
pub mod session;

use std::path::{Path, PathBuf};

use ndarray::{Array2, ArrayView4, Ix2};

use crate::grad::{Analysis, GradError, MapLayout};
use crate::model::{CardError, Layout, ModelCard, OutputKind};
use crate::onnx::{self, OnnxError, op, value_info_dims};
use crate::scores::Head;

pub use self::pipeline::{Engine, EngineConfig, ExplainError, Fault, Loaded, MapOutput, Seed, non_finite_summary};
pub use self::probe::probe_shapes;
pub use self::runtime::{OrtLibrary, RuntimeError};
pub use self::session::{Device, GraphSession, Provider, SessionOptions};

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
    Onnx(#[from] OnnxError),
    #[error(transparent)]
    Card(#[from] CardError),
    #[error("{}: {detail}", path.display())]
    Unsupported { path: PathBuf, detail: String },
    #[error("{}: {source}", path.display())]
    Grad { path: PathBuf, source: GradError },
    #[error("{}: ONNX Runtime cannot load this model: {detail}; the converter left an operator ONNX Runtime does not know or a malformed node; re-export the model (another opset, or converter options that inline functions) so that onnxruntime.InferenceSession opens it", path.display())]
    Unloadable { path: PathBuf, detail: String },
    #[error("{}: could not measure tensor shapes by running the model once ({detail}); check that the model card's input size is one the model accepts", path.display())]
    Probe { path: PathBuf, detail: String },
    #[error("{}: ONNX Runtime failed while running the model: {detail}", path.display())]
    Run { path: PathBuf, detail: String },
    #[error("{}: the run was not started because camscope is stopping", path.display())]
    Stopped { path: PathBuf },
    #[error("--device cuda: the CUDA execution provider could not be registered ({detail}); install onnxruntime-gpu with matching CUDA/cuDNN and point --ort-lib at its library (now {}), or use --device cpu", library.display())]
    Cuda { detail: String, library: PathBuf },
}

/// ONNX Runtime messages can span lines; errors here are one line.
pub(crate) fn first_line(s: &str) -> String {
    s.lines().map(str::trim).filter(|l| !l.is_empty()).collect::<Vec<_>>().join(" ")
}

/// A classifier read from disk: its card (labels resolved), and its graph analysed with
/// measured shapes, ready to build gradient graphs.
#[derive(Debug, Clone)]
pub struct LoadedModel {
    pub path: PathBuf,
    pub card: ModelCard,
    pub analysis: Analysis,
    pub input: String,
    pub output: String,
    /// What the scores output holds: softmax logits or probabilities, multi-label
    /// sigmoids, or a binary classifier's one output.
    pub head: Head,
    /// Whether the model's batch axis is fixed (then images go through one at a time).
    pub fixed_batch: bool,
    /// Scores in the model's output row (1 for a binary head, which shows 2 classes: see
    /// [`LoadedModel::user_classes`]).
    pub classes: usize,
    /// Whether the measured shapes came from the on-disk cache (see [`probe_cache`]).
    pub shape_cache: probe_cache::CacheUse,
}

impl LoadedModel {
    /// Read `path`, find its card (explicit, sidecar, metadata, or inferred), check it
    /// against the model, and measure every tensor's shape with two short CPU runs.
    pub fn open(path: &Path, card_path: Option<&Path>, opts: &SessionOptions) -> Result<Self, EngineError> {
        Self::open_checked(path, card_path, opts, false)
    }

    /// [`LoadedModel::open`] for a method that needs gradients: an operator without a rule
    /// that the graph alone shows to block every layer is reported before the shapes are
    /// measured (the probe runs the model twice: 3 s of a ViT-B/16 here, to reach the same
    /// answer). The inspector does not ask: it still offers the methods that need none.
    pub fn open_checked(
        path: &Path,
        card_path: Option<&Path>,
        opts: &SessionOptions,
        gradients: bool,
    ) -> Result<Self, EngineError> {
        let cache_dir = probe_cache::cache_dir();
        // Loading ONNX Runtime (a 35 MB library and its thread pool: 100-160 ms at a cold
        // start here) overlaps reading, decoding and hashing the model; its errors still come
        // first.
        let (lib, read) = std::thread::scope(|s| {
            let lib =
                s.spawn(|| runtime::init(opts.ort_lib.as_deref(), opts.threads, opts.intra_op_spinning).map(drop));
            let read = onnx::read_model_shared(path, cache_dir.is_some());
            (lib.join().unwrap_or_else(|p| std::panic::resume_unwind(p)), read)
        });
        lib?;
        let (model, print, file) = read?;
        let graph = model.graph.as_ref().expect("decode_model checks the graph");
        if onnx::known_ops::first_unknown(graph).is_some() {
            // Only ONNX Runtime can tell (a function or a registered custom op may define
            // it), and it tells at once on the model without its weights.
            let stripped = onnx::known_ops::without_weights(&model);
            if let Err(EngineError::BadModel { detail, .. }) =
                GraphSession::check(&stripped, path, opts.ort_lib.as_deref())
            {
                return Err(EngineError::Unloadable { path: path.to_owned(), detail });
            }
        }
        let metadata = model.metadata_props.iter().find(|p| p.key.as_deref() == Some("camscope.card"));
        let located = ModelCard::locate(path, card_path, metadata.and_then(|p| p.value.as_deref()))?;
        let inits: std::collections::HashSet<&str> =
            graph.initializer.iter().filter_map(|t| t.name.as_deref()).collect();
        let inputs: Vec<(&str, Vec<i64>)> = graph
            .input
            .iter()
            .filter(|v| v.name.as_deref().is_some_and(|n| !inits.contains(n)))
            .map(|v| {
                let dims = value_info_dims(v).and_then(|(_, d)| d).unwrap_or_default();
                (v.name.as_deref().unwrap_or(""), dims)
            })
            .collect();
        let unsupported = |detail: String| EngineError::Unsupported { path: path.to_owned(), detail };
        if inputs.len() != 1 {
            return Err(unsupported(format!(
                "the model has {} inputs ({}); camscope explains single-input image classifiers",
                inputs.len(),
                inputs.iter().map(|(n, _)| *n).collect::<Vec<_>>().join(", ")
            )));
        }
        let (input, in_dims) = inputs[0].clone();
        if let Some(want) = located.as_ref().and_then(|c| c.input.name.as_deref()) {
            if want != input {
                return Err(CardError::Mismatch {
                    card: located.as_ref().map(|c| c.source.to_string()).unwrap_or_default(),
                    detail: format!(
                        "input `{want}` is not an input of {} (its input is `{input}`); fix `input.name`",
                        path.display()
                    ),
                }
                .into());
            }
        }
        let mut card = match located {
            Some(c) => c,
            None => ModelCard::infer(path, input, &in_dims)?,
        };
        card.check_input(path, input, &in_dims)?;
        card.input.name = Some(input.to_owned());
        let output = match &card.output.name {
            Some(name) => {
                if !graph.output.iter().any(|o| o.name.as_deref() == Some(name)) {
                    return Err(unsupported(format!("output `{name}` named by the model card does not exist")));
                }
                name.clone()
            }
            None => graph
                .output
                .first()
                .and_then(|o| o.name.clone())
                .ok_or_else(|| unsupported("the model has no outputs".into()))?,
        };
        let layout = match card.input.layout {
            Layout::Nchw => MapLayout::Nchw,
            Layout::Nhwc => MapLayout::Nhwc,
        };
        let declared_fixed = in_dims.first().is_some_and(|&d| d > 0);
        if declared_fixed && in_dims[0] != 1 {
            return Err(unsupported(format!(
                "the input's batch axis is fixed at {}; re-export with a dynamic or size-1 batch",
                in_dims[0]
            )));
        }
        let grad_err = |source| EngineError::Grad { path: path.to_owned(), source };
        // The analysis takes the model itself (a copy would cost its weights' size).
        let input_name = input.to_owned();
        let input = input_name.as_str();
        let mut analysis = Analysis::new(model, input, &output, layout).map_err(grad_err)?;
        analysis.set_shared_file(Some(file));
        if let Some(e) = analysis.static_blocker().filter(|_| gradients) {
            return Err(grad_err(e));
        }
        let dims = |n: usize| input_dims(&card, n);
        let key = print.map(|(model_hash, model_len)| probe_cache::ProbeKey {
            model_hash,
            model_len,
            input_dims: dims(1),
            fixed_batch: declared_fixed,
        });
        let cache = cache_dir.as_deref().zip(key.as_ref());
        let (batches, shape_cache) =
            probe_shapes(&mut analysis, input, &dims, path, declared_fixed, opts.ort_lib.as_deref(), cache)?;
        let fixed_batch = !batches;
        let classes = analysis.classes().map_err(grad_err)?;
        let head = head_kind(analysis.model(), &output, &card, classes)?;
        analysis.set_sigmoid(head.is_sigmoid());
        if let Some(spec) = card.layer.as_ref().and_then(|l| l.tokens) {
            analysis.set_tokens(Some(spec));
        }
        match head {
            Head::Binary { .. } => card.resolve_binary_labels(path)?,
            _ => card.resolve_labels(head.classes(classes), path)?,
        }
        Ok(Self {
            path: path.to_owned(),
            card,
            analysis,
            input: input.to_owned(),
            output,
            head,
            fixed_batch,
            classes,
            shape_cache,
        })
    }

    /// Input tensor dims for a batch of `n` images.
    pub fn input_dims(&self, n: usize) -> Vec<usize> {
        input_dims(&self.card, n)
    }
}

fn input_dims(card: &ModelCard, n: usize) -> Vec<usize> {
    let (h, w) = (card.input.height as usize, card.input.width as usize);
    match card.input.layout {
        Layout::Nchw => vec![n, 3, h, w],
        Layout::Nhwc => vec![n, h, w, 3],
    }
}

/// The op that makes the scores output (through Identity nodes).
fn final_op<'m>(model: &'m onnx::ModelProto, output: &str) -> Option<&'m str> {
    let g = model.graph.as_ref()?;
    let mut t = output.to_owned();
    loop {
        match g.node.iter().find(|n| n.output.first() == Some(&t)) {
            Some(n) if op(n) == "Identity" => t = n.input[0].clone(),
            Some(n) => return Some(op(n)),
            None => return None,
        }
    }
}

/// What the scores output holds, from the card and the graph's last op; a card that
/// contradicts the graph (a multi-label card on a softmax model, or the reverse) is an error.
fn head_kind(model: &onnx::ModelProto, output: &str, card: &ModelCard, classes: usize) -> Result<Head, CardError> {
    let last = final_op(model, output);
    let (softmaxed, sigmoided) = (matches!(last, Some("Softmax" | "LogSoftmax")), last == Some("Sigmoid"));
    let mismatch = |detail: String| CardError::Mismatch { card: card.source.to_string(), detail };
    let sigmoid = match card.output.kind {
        OutputKind::Auto => sigmoided,
        OutputKind::Sigmoid if softmaxed => {
            return Err(mismatch(format!(
                "`kind = \"sigmoid\"` (multi-label) but the model's output comes from a {}, which makes the classes exclusive; remove `kind` (camscope reads a softmax head from the graph)",
                last.unwrap_or_default()
            )));
        }
        OutputKind::Sigmoid => true,
        OutputKind::Logits | OutputKind::Probabilities if sigmoided => {
            return Err(mismatch(
                "the model's output comes from a Sigmoid (independent probabilities: a multi-label or binary head), not a softmax; set `kind = \"sigmoid\"` in [output] or remove `kind`".into(),
            ));
        }
        OutputKind::Logits | OutputKind::Probabilities => false,
    };
    let probabilities = match card.output.kind {
        OutputKind::Probabilities => true,
        OutputKind::Logits => false,
        _ => sigmoided || last == Some("Softmax"),
    };
    Ok(match (classes, sigmoid) {
        (1, _) => Head::Binary { probabilities },
        (_, true) => Head::Sigmoid { probabilities },
        (_, false) => Head::Softmax { probabilities },
    })
}

impl LoadedModel {
    /// Classes a user sees: the scores of the output row, or 2 for a binary head (the
    /// positive class and its complement).
    pub fn user_classes(&self) -> usize {
        self.head.classes(self.classes)
    }
}

/// Give freed heap memory back to the system. One-off sessions (the shape probe) leave tens
/// of MB free inside glibc's heap, which would otherwise count as resident memory for the
/// whole life of a long-running TUI.
pub fn release_free_memory() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    // SAFETY: malloc_trim only returns unused heap pages to the kernel.
    unsafe {
        libc::malloc_trim(0);
    }
}

/// The plain classifier: the original model file, input tensor in, class scores out. The
/// baseline the gradient graphs are measured against.
pub struct Classifier {
    session: GraphSession,
    input: String,
    output: String,
}

impl Classifier {
    pub fn new(model: &LoadedModel, opts: &SessionOptions) -> Result<Self, EngineError> {
        Self::open(&model.path, &model.input, &model.output, opts)
    }

    /// The classifier of a model file whose input and scores output are known (from a
    /// [`LoadedModel`] opened earlier), without keeping the analysed graph around.
    pub fn open(path: &Path, input: &str, output: &str, opts: &SessionOptions) -> Result<Self, EngineError> {
        Ok(Self { session: GraphSession::from_file(path, opts)?, input: input.to_owned(), output: output.to_owned() })
    }

    pub fn provider(&self) -> Provider {
        self.session.provider
    }

    /// Raw output `[N, classes]` for a batch.
    pub fn run(&mut self, batch: ArrayView4<'_, f32>) -> Result<Array2<f32>, EngineError> {
        let out = self.session.run(&[(self.input.as_str(), batch.into_dyn())], &[self.output.as_str()])?;
        let out = out.into_iter().next().expect("one output");
        out.into_dimensionality::<Ix2>().map_err(|e| EngineError::Run { path: PathBuf::new(), detail: e.to_string() })
    }
}
