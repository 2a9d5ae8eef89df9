//! ONNX Runtime sessions for camscope's graphs, on the requested execution provider.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use ndarray::{ArrayD, ArrayViewD, IxDyn};
use ort::ep::ExecutionProvider;
use ort::session::Session;
use ort::session::builder::SessionBuilder;
use ort::value::{DynValue, TensorRef};

use super::{EngineError, first_line, runtime};
use crate::onnx::{Encoded, ModelProto, SHARED_FILE_NAME, encode_model};

/// Where to run: `auto` tries CUDA and falls back to the CPU; `cuda` insists.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Device {
    #[default]
    Auto,
    Cuda,
    Cpu,
}

impl std::str::FromStr for Device {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.to_ascii_lowercase().as_str() {
            "auto" => Ok(Self::Auto),
            "cuda" | "gpu" => Ok(Self::Cuda),
            "cpu" => Ok(Self::Cpu),
            other => Err(format!("unknown device `{other}`; use auto, cuda or cpu")),
        }
    }
}

/// The execution provider a session actually runs on.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub enum Provider {
    #[serde(rename = "CPU")]
    Cpu,
    #[serde(rename = "CUDA")]
    Cuda,
}

impl std::fmt::Display for Provider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Provider::Cpu => "CPU",
            Provider::Cuda => "CUDA",
        })
    }
}

/// Options shared by every session camscope creates.
#[derive(Debug, Clone, Default)]
pub struct SessionOptions {
    /// `--ort-lib`: an explicit ONNX Runtime library.
    pub ort_lib: Option<PathBuf>,
    /// Intra-op threads of the process-wide pool (set by the first session); `None`: one per core.
    pub threads: Option<usize>,
    pub device: Device,
    /// For one-off sessions (the shape probe): plain malloc/free instead of ONNX Runtime's
    /// arena, no memory pattern, no weight prepacking and basic graph optimisation only,
    /// which keep a session that runs once from costing more memory than the run itself.
    /// (Measured for the triage scan too: without the arena it ran 25% slower and peaked
    /// higher, so long-lived sessions keep it.)
    pub one_off: bool,
    /// Whether the process-wide pool's threads busy-wait for the next run (`None`: ONNX
    /// Runtime's default, which spins; set by the first session). The inspector turns
    /// spinning off: on a small machine the spinning threads take the cores the UI and the
    /// terminal need to draw the frame that follows a run (measured on 2 cores: class switch
    /// p95 11 -> 7 ms, next image 18 -> 11 ms).
    pub intra_op_spinning: Option<bool>,
    /// A thread pool of the session's own with this many intra-op threads (the calling thread
    /// counts as one) instead of the process-wide one. The inspector's background scan uses
    /// it: ONNX Runtime creates the pool's threads on the thread that creates the session, so
    /// they inherit the scan thread's low scheduling priority, while the process-wide pool
    /// keeps the interactive engine at normal priority. Its threads never spin.
    pub own_pool: Option<usize>,
    /// Once set, runs that have not started yet fail with [`EngineError::Stopped`]. The
    /// inspector sets it when the user quits: a Score-CAM has hundreds of runs left, and the
    /// process must not exit while its engine thread is still inside ONNX Runtime (the
    /// library's exit-time destructors then crash it: seen as a segfault at exit in CI).
    pub stop: Option<Arc<AtomicBool>>,
}

/// Why CUDA was not used (for `auto`, reported next to the provider).
pub type FallbackReason = Option<String>;

/// Create a session builder on the requested device. Registration is checked explicitly:
/// ONNX Runtime would otherwise fall back to the CPU silently when the CUDA provider library
/// or its CUDA/cuDNN dependencies are missing.
fn builder(opts: &SessionOptions, label: &Path) -> Result<(SessionBuilder, Provider, FallbackReason), EngineError> {
    let lib = runtime::init(opts.ort_lib.as_deref(), opts.threads, opts.intra_op_spinning)?;
    let bad = |e: String| EngineError::BadModel { path: label.to_owned(), detail: first_line(&e) };
    let mut b = Session::builder(&lib.environment).map_err(|e| bad(e.to_string()))?;
    if opts.one_off {
        b = b.with_memory_pattern(false).map_err(|e| bad(e.to_string()))?;
        b = b.with_prepacking(false).map_err(|e| bad(e.to_string()))?;
        b = b
            .with_optimization_level(ort::session::builder::GraphOptimizationLevel::Level1)
            .map_err(|e| bad(e.to_string()))?;
    }
    if let Some(threads) = opts.own_pool {
        b = b.with_independent_thread_pool().map_err(|e| bad(e.to_string()))?;
        b = b.with_intra_threads(threads.max(1)).map_err(|e| bad(e.to_string()))?;
        b = b.with_inter_threads(1).map_err(|e| bad(e.to_string()))?;
        b = b.with_config_entry("session.intra_op.allow_spinning", "0").map_err(|e| bad(e.to_string()))?;
    }
    let (provider, reason) = match opts.device {
        Device::Cpu => (Provider::Cpu, None),
        Device::Cuda | Device::Auto => {
            let cuda = ort::ep::CUDA::default()
                // Full float32: with TF32 (ONNX Runtime's default on Ampere and later) the
                // H200's maps differed from the CPU's by 7.5e-4 after normalisation; explanations
                // are compared across devices and against float32 references, and this model
                // is too small for TF32 to matter for speed.
                .with_tf32(false)
                .with_conv_algorithm_search(conv_search(std::env::var("CAMSCOPE_CUDNN_SEARCH").ok().as_deref()));
            let preload = super::cuda_libs::preload_for(&lib.path);
            let attempt = match ort::ep::CUDA::is_available() {
                Ok(true) => cuda.register(&mut b).map(|()| true).map_err(|e| {
                    let mut why = first_line(&e.to_string());
                    if let Some((path, detail)) = preload.failed.first() {
                        why.push_str(&format!(" (could not preload {}: {})", path.display(), first_line(detail)));
                    }
                    why
                }),
                // A CPU-only build (the PyPI `onnxruntime` wheel): nothing failed, `auto` means CPU.
                Ok(false) if opts.device == Device::Auto => Ok(false),
                Ok(false) => Err(format!("this ONNX Runtime ({}) has no CUDA provider", lib.path.display())),
                Err(e) => Err(first_line(&e.to_string())),
            };
            match (attempt, opts.device) {
                (Ok(true), _) => (Provider::Cuda, None),
                (Ok(false), _) => (Provider::Cpu, None),
                (Err(why), Device::Cuda) => {
                    return Err(EngineError::Cuda { detail: why, library: lib.path.clone() });
                }
                (Err(why), _) => (Provider::Cpu, Some(why)),
            }
        }
    };
    if let Some(prefix) = profile_prefix().filter(|_| !opts.one_off) {
        b = b.with_profiling(prefix).map_err(|e| bad(e.to_string()))?;
    }
    // After CUDA: ONNX Runtime gives each node to the first provider that takes it.
    if opts.one_off {
        ort::ep::CPU::default().with_arena_allocator(false).register(&mut b).map_err(|e| bad(e.to_string()))?;
    }
    Ok((b, provider, reason))
}

/// cuDNN's convolution algorithm choice: heuristic, not ONNX Runtime's default exhaustive
/// benchmark of every algorithm for each new input shape. Measured on an H200 in the same
/// runs: exhaustive made Score-CAM twice as slow (1.8-2.1 s against 0.9-1.1 s per image,
/// before short batches were padded) and gained nothing measurable on single images (Grad-CAM
/// 1.5-2.2 ms per image either way). `CAMSCOPE_CUDNN_SEARCH=exhaustive|heuristic|default`
/// overrides it.
fn conv_search(var: Option<&str>) -> ort::ep::cuda::ConvAlgorithmSearch {
    use ort::ep::cuda::ConvAlgorithmSearch;
    match var.map(str::to_ascii_lowercase).as_deref() {
        Some("exhaustive") => ConvAlgorithmSearch::Exhaustive,
        Some("default") => ConvAlgorithmSearch::Default,
        _ => ConvAlgorithmSearch::Heuristic,
    }
}

/// `CAMSCOPE_ORT_PROFILE=DIR`: ONNX Runtime writes a profile of every session (each node's
/// time and execution provider) under DIR, for finding out where a device spends its time.
fn profile_prefix() -> Option<PathBuf> {
    let dir = PathBuf::from(std::env::var_os("CAMSCOPE_ORT_PROFILE").filter(|v| !v.is_empty())?);
    std::fs::create_dir_all(&dir).ok()?;
    Some(dir.join("camscope"))
}

/// Register the buffer an [`Encoded`] model's external weights live in, under the name its
/// graph refers to ([`SHARED_FILE_NAME`]).
fn with_shared_weights(b: SessionBuilder, buffer: &Arc<[u8]>) -> Result<SessionBuilder, String> {
    b.with_external_initializer_file_in_memory(SHARED_FILE_NAME, Arc::clone(buffer)).map_err(|e| e.to_string())
}

/// A session over one of camscope's graphs (or a model file), with named f32 I/O.
pub struct GraphSession {
    session: Session,
    label: PathBuf,
    pub provider: Provider,
    pub fallback: FallbackReason,
    outputs: Vec<String>,
    stop: Option<Arc<AtomicBool>>,
}

impl GraphSession {
    /// A session for an in-memory model; `label` names it in errors (usually the model file).
    pub fn from_model(model: &ModelProto, label: &Path, opts: &SessionOptions) -> Result<Self, EngineError> {
        Self::from_bytes(&encode_model(model), label, opts)
    }

    /// A session for an encoded model whose weights may live in a buffer of their own (see
    /// `grad::Plan::body_encoded`), which ONNX Runtime reads in place.
    pub fn from_encoded(model: &Encoded, label: &Path, opts: &SessionOptions) -> Result<Self, EngineError> {
        let Some(buffer) = &model.external else { return Self::from_bytes(&model.bytes, label, opts) };
        let (b, provider, fallback) = builder(opts, label)?;
        let bad = |e: String| EngineError::BadModel { path: label.to_owned(), detail: first_line(&e) };
        let mut b = with_shared_weights(b, buffer).map_err(bad)?;
        let session = b.commit_from_memory(&model.bytes).map_err(|e| bad(e.to_string()))?;
        let outputs = session.outputs().iter().map(|o| o.name().to_owned()).collect();
        Ok(Self { session, label: label.to_owned(), provider, fallback, outputs, stop: opts.stop.clone() })
    }

    /// A session for an encoded model (see `grad::Plan::body_bytes`).
    pub fn from_bytes(bytes: &[u8], label: &Path, opts: &SessionOptions) -> Result<Self, EngineError> {
        let (mut b, provider, fallback) = builder(opts, label)?;
        let session = b
            .commit_from_memory(bytes)
            .map_err(|e| EngineError::BadModel { path: label.to_owned(), detail: first_line(&e.to_string()) })?;
        let outputs = session.outputs().iter().map(|o| o.name().to_owned()).collect();
        Ok(Self { session, label: label.to_owned(), provider, fallback, outputs, stop: opts.stop.clone() })
    }

    /// A one-off CPU session that records every node's output shapes in ONNX Runtime's
    /// profile (written under `profile_prefix`), with graph optimisations off so that the
    /// profiled nodes are the model's own, and without arena or prepacking.
    pub fn profiling(
        model: &Encoded,
        label: &Path,
        ort_lib: Option<&Path>,
        profile_prefix: &Path,
    ) -> Result<Self, EngineError> {
        let lib = runtime::init(ort_lib, None, None)?;
        let bad = |e: String| EngineError::BadModel { path: label.to_owned(), detail: first_line(&e) };
        let mut b = Session::builder(&lib.environment).map_err(|e| bad(e.to_string()))?;
        b = b.with_memory_pattern(false).map_err(|e| bad(e.to_string()))?;
        b = b.with_prepacking(false).map_err(|e| bad(e.to_string()))?;
        b = b
            .with_optimization_level(ort::session::builder::GraphOptimizationLevel::Disable)
            .map_err(|e| bad(e.to_string()))?;
        ort::ep::CPU::default().with_arena_allocator(false).register(&mut b).map_err(|e| bad(e.to_string()))?;
        b = b.with_profiling(profile_prefix).map_err(|e| bad(e.to_string()))?;
        if let Some(buffer) = &model.external {
            b = with_shared_weights(b, buffer).map_err(bad)?;
        }
        let session = b.commit_from_memory(&model.bytes).map_err(|e| bad(e.to_string()))?;
        let outputs = session.outputs().iter().map(|o| o.name().to_owned()).collect();
        Ok(Self { session, label: label.to_owned(), provider: Provider::Cpu, fallback: None, outputs, stop: None })
    }

    /// Whether ONNX Runtime can open `model` at all: a CPU session without graph
    /// optimisations, created and dropped (for a model stripped of its weights, see
    /// `onnx::known_ops::without_weights`, this takes milliseconds).
    pub fn check(model: &ModelProto, label: &Path, ort_lib: Option<&Path>) -> Result<(), EngineError> {
        let lib = runtime::init(ort_lib, None, None)?;
        let bad = |e: String| EngineError::BadModel { path: label.to_owned(), detail: first_line(&e) };
        let mut b = Session::builder(&lib.environment).map_err(|e| bad(e.to_string()))?;
        b = b
            .with_optimization_level(ort::session::builder::GraphOptimizationLevel::Disable)
            .map_err(|e| bad(e.to_string()))?;
        b.commit_from_memory(&encode_model(model)).map(drop).map_err(|e| bad(e.to_string()))
    }

    /// Stop profiling and return the profile's path.
    pub fn end_profiling(&mut self) -> Result<PathBuf, EngineError> {
        self.session.end_profiling().map(PathBuf::from).map_err(|e| self.run_err(e))
    }

    /// Run with float inputs; returns the named int64 outputs that exist and have at most
    /// `max_len` values (graph-computed constants).
    pub fn run_small_ints(
        &mut self,
        inputs: &[(&str, ArrayViewD<'_, f32>)],
        names: &[String],
        max_len: usize,
    ) -> Result<HashMap<String, Vec<i64>>, EngineError> {
        self.run_with(inputs, |outs, _| {
            Ok(names
                .iter()
                .filter_map(|n| {
                    let a = outs.get(n.as_str())?.try_extract_array::<i64>().ok()?;
                    (a.len() <= max_len).then(|| (n.clone(), a.iter().copied().collect()))
                })
                .collect())
        })
    }

    /// A session for a model file as is.
    pub fn from_file(path: &Path, opts: &SessionOptions) -> Result<Self, EngineError> {
        if !path.is_file() {
            return Err(EngineError::MissingModel { path: path.to_owned() });
        }
        let (mut b, provider, fallback) = builder(opts, path)?;
        let session = b
            .commit_from_file(path)
            .map_err(|e| EngineError::BadModel { path: path.to_owned(), detail: first_line(&e.to_string()) })?;
        let outputs = session.outputs().iter().map(|o| o.name().to_owned()).collect();
        Ok(Self { session, label: path.to_owned(), provider, fallback, outputs, stop: opts.stop.clone() })
    }

    pub fn session(&self) -> &Session {
        &self.session
    }

    pub fn output_names(&self) -> &[String] {
        &self.outputs
    }

    fn run_err(&self, e: impl std::fmt::Display) -> EngineError {
        EngineError::Run { path: self.label.clone(), detail: first_line(&e.to_string()) }
    }

    /// Run with float inputs and hand the outputs to `read` (they borrow the session).
    fn run_with<T>(
        &mut self,
        inputs: &[(&str, ArrayViewD<'_, f32>)],
        read: impl FnOnce(
            &mut ort::session::SessionOutputs<'_>,
            &dyn Fn(&dyn std::fmt::Display) -> EngineError,
        ) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        self.run_values(inputs, &[], read)
    }

    /// [`GraphSession::run_with`] with ONNX Runtime values as further inputs (a head's tape,
    /// fed back as ONNX Runtime gave it, whatever its element type).
    fn run_values<T>(
        &mut self,
        inputs: &[(&str, ArrayViewD<'_, f32>)],
        values: &[(&str, &DynValue)],
        read: impl FnOnce(
            &mut ort::session::SessionOutputs<'_>,
            &dyn Fn(&dyn std::fmt::Display) -> EngineError,
        ) -> Result<T, EngineError>,
    ) -> Result<T, EngineError> {
        if self.stop.as_ref().is_some_and(|s| s.load(Ordering::Relaxed)) {
            return Err(EngineError::Stopped { path: self.label.clone() });
        }
        let standard: Vec<_> = inputs.iter().map(|(_, a)| a.as_standard_layout()).collect();
        let mut feeds = Vec::with_capacity(inputs.len() + values.len());
        for ((name, _), arr) in inputs.iter().zip(&standard) {
            let t = TensorRef::from_array_view(arr.view()).map_err(|e| self.run_err(e))?;
            feeds.push((name.to_string(), ort::session::SessionInputValue::from(t)));
        }
        for (name, v) in values {
            feeds.push((name.to_string(), ort::session::SessionInputValue::from(*v)));
        }
        let label = self.label.clone();
        let err =
            |e: &dyn std::fmt::Display| EngineError::Run { path: label.clone(), detail: first_line(&e.to_string()) };
        let mut outs = self.session.run(feeds).map_err(|e| err(&e))?;
        read(&mut outs, &err)
    }

    /// Run with float inputs and ONNX Runtime values; returns the named float outputs, in
    /// `wanted` order, and takes the `keep` outputs whole, in their order (a tape).
    pub fn run_keeping(
        &mut self,
        inputs: &[(&str, ArrayViewD<'_, f32>)],
        values: &[(&str, &DynValue)],
        wanted: &[&str],
        keep: &[&str],
    ) -> Result<(Vec<ArrayD<f32>>, Vec<DynValue>), EngineError> {
        self.run_values(inputs, values, |outs, err| {
            let floats = wanted
                .iter()
                .map(|w| {
                    let v = outs.get(*w).ok_or_else(|| err(&format!("the graph has no output `{w}`")))?;
                    Ok(v.try_extract_array::<f32>().map_err(|e| err(&e))?.to_owned())
                })
                .collect::<Result<Vec<_>, EngineError>>()?;
            let kept = keep
                .iter()
                .map(|k| outs.remove(*k).ok_or_else(|| err(&format!("the graph has no output `{k}`"))))
                .collect::<Result<Vec<_>, EngineError>>()?;
            Ok((floats, kept))
        })
    }

    /// Run with float inputs; returns the named float outputs, in `wanted` order.
    pub fn run(
        &mut self,
        inputs: &[(&str, ArrayViewD<'_, f32>)],
        wanted: &[&str],
    ) -> Result<Vec<ArrayD<f32>>, EngineError> {
        self.run_with(inputs, |outs, err| {
            wanted
                .iter()
                .map(|w| {
                    let v = outs.get(*w).ok_or_else(|| err(&format!("the graph has no output `{w}`")))?;
                    Ok(v.try_extract_array::<f32>().map_err(|e| err(&e))?.to_owned())
                })
                .collect()
        })
    }

    /// Run a probe graph ([`crate::onnx::shapes::probe_model`]): each probed tensor's dims,
    /// plus the values of the small integer constants the graph computes (into `ints`).
    pub fn run_probe(
        &mut self,
        inputs: &[(&str, ArrayViewD<'_, f32>)],
        layout: &crate::onnx::shapes::ProbeLayout,
        ints: &mut HashMap<String, Vec<i64>>,
    ) -> Result<Vec<(String, Vec<i64>)>, EngineError> {
        self.run_with(inputs, |outs, err| {
            let record: Vec<i64> = match outs.get(layout.shapes.as_str()) {
                Some(v) => v.try_extract_array::<i64>().map_err(|e| err(&e))?.iter().copied().collect(),
                None => Vec::new(),
            };
            for c in &layout.constants {
                if let Some(a) = outs.get(c.as_str()).and_then(|v| v.try_extract_array::<i64>().ok()) {
                    if a.len() <= SMALL_INTS {
                        ints.insert(c.clone(), a.iter().copied().collect());
                    }
                }
            }
            Ok(crate::onnx::shapes::decode_probe(layout, &record))
        })
    }
}

/// Integer outputs up to this size are recorded by [`GraphSession::run_shapes`].
const SMALL_INTS: usize = 64;

/// Zeros of a shape (probe inputs).
pub fn zeros(dims: &[usize]) -> ArrayD<f32> {
    ArrayD::zeros(IxDyn(dims))
}
