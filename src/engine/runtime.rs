//! Finding and loading the ONNX Runtime shared library.
//!
//! camscope links ONNX Runtime at run time (ort's `load-dynamic`), so one binary works with
//! whatever ONNX Runtime the machine has (from 1.17 on, ort's `api-17` floor), including the
//! CUDA build that ships in the `onnxruntime-gpu` wheel. The library is searched, in order:
//! `--ort-lib PATH`, `$ORT_DYLIB_PATH`, the project-local install made by
//! `scripts/setup-ort` (`.deps/onnxruntime`), the `onnxruntime` package of the active Python
//! (which is also where `onnxruntime-gpu` installs), then the system's loader path.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The ONNX Runtime version `scripts/setup-ort` installs.
pub const PINNED_VERSION: &str = "1.32.0";
/// The oldest ONNX Runtime camscope accepts (ort's `api-17` feature).
pub const MIN_MINOR: u32 = 17;
/// The one-line fix printed whenever the library is missing or unusable.
pub const INSTALL_HINT: &str = "run `scripts/setup-ort` in the camscope checkout (installs onnxruntime 1.32.0 into .deps/), \
     or `pip install onnxruntime`, or pass --ort-lib /path/to/libonnxruntime.so";

/// How the library was found (shown by `--verbose` and the status bar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Flag,
    EnvVar,
    ProjectLocal,
    Python,
    System,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Flag => "--ort-lib",
            Origin::EnvVar => "ORT_DYLIB_PATH",
            Origin::ProjectLocal => "project-local .deps",
            Origin::Python => "the active Python's onnxruntime package",
            Origin::System => "the system library path",
        })
    }
}

/// The loaded library.
#[derive(Debug, Clone)]
pub struct OrtLibrary {
    pub path: PathBuf,
    pub version: String,
    pub origin: Origin,
    pub environment: ort::environment::Environment,
}

/// Why ONNX Runtime is unavailable.
#[derive(Debug, Clone, thiserror::Error)]
pub enum RuntimeError {
    #[error("{}: ONNX Runtime library given by {origin} does not exist; {INSTALL_HINT}", path.display())]
    MissingExplicit { path: PathBuf, origin: Origin },
    #[error("ONNX Runtime library not found (searched {searched}); {INSTALL_HINT}")]
    NotFound { searched: String },
    #[error("{}: cannot load ONNX Runtime ({detail}); {INSTALL_HINT}", path.display())]
    Load { path: PathBuf, detail: String },
    #[error("{}: ONNX Runtime {version} is too old (camscope needs 1.{MIN_MINOR} or newer); {INSTALL_HINT}", path.display())]
    TooOld { path: PathBuf, version: String },
    #[error("{}: ONNX Runtime failed to start: {detail}", path.display())]
    Environment { path: PathBuf, detail: String },
    #[error("ONNX Runtime is already loaded from {}; cannot switch to {} in the same process", loaded.display(), wanted.display())]
    AlreadyLoaded { loaded: PathBuf, wanted: PathBuf },
}

static LOADED: OnceLock<Result<OrtLibrary, RuntimeError>> = OnceLock::new();

/// Load ONNX Runtime once per process; later calls return the same library (or error).
/// `threads` sizes the process-wide intra-op thread pool and `spinning` sets whether its idle
/// threads busy-wait (first call wins; `None`: one thread per core, ONNX Runtime's default).
pub fn init(
    explicit: Option<&Path>,
    threads: Option<usize>,
    spinning: Option<bool>,
) -> Result<&'static OrtLibrary, RuntimeError> {
    let result = LOADED.get_or_init(|| load(explicit, threads, spinning));
    match (result, explicit) {
        (Ok(lib), Some(wanted)) if lib.origin != Origin::Flag && lib.path != wanted => {
            Err(RuntimeError::AlreadyLoaded { loaded: lib.path.clone(), wanted: wanted.to_owned() })
        }
        (Ok(lib), _) => Ok(lib),
        (Err(e), _) => Err(e.clone()),
    }
}

fn load(explicit: Option<&Path>, threads: Option<usize>, spinning: Option<bool>) -> Result<OrtLibrary, RuntimeError> {
    let (path, origin) = locate(explicit, std::env::var_os("ORT_DYLIB_PATH").map(PathBuf::from))?;
    let version = probe_version(&path)?;
    let minor: u32 = version.split('.').nth(1).and_then(|m| m.parse().ok()).unwrap_or(0);
    if minor < MIN_MINOR {
        return Err(RuntimeError::TooOld { path, version });
    }
    let builder =
        ort::init_from(&path).map_err(|e| RuntimeError::Load { path: path.clone(), detail: e.to_string() })?;
    let env_err = |e: ort::Error| RuntimeError::Environment { path: path.clone(), detail: e.to_string() };
    // One thread pool for all sessions. camscope alternates between sessions (body, head,
    // scores) many times a second; with a pool per session, each session's idle threads spin
    // while the next session's threads work, and on two cores that doubled Grad-CAM's time.
    let pool = ort::environment::GlobalThreadPoolOptions::default()
        .with_intra_threads(threads.unwrap_or(0))
        .and_then(|p| p.with_inter_threads(1))
        .and_then(|p| match spinning {
            Some(spin) => p.with_spin_control(spin),
            None => Ok(p),
        })
        .map_err(env_err)?;
    let environment = builder.with_name("camscope").with_global_thread_pool(pool).build().map_err(env_err)?;
    environment.set_log_level(log_level(std::env::var("CAMSCOPE_ORT_LOG").ok().as_deref()));
    Ok(OrtLibrary { path, version, origin, environment })
}

/// ONNX Runtime's own log level. camscope reports every failure itself, in one line; ORT's
/// logger writes straight to stderr (it would garble the TUI and double every error), so it
/// only speaks for fatal errors unless `CAMSCOPE_ORT_LOG=verbose|info|warning|error` asks.
fn log_level(var: Option<&str>) -> ort::logging::LogLevel {
    use ort::logging::LogLevel;
    match var.map(str::to_ascii_lowercase).as_deref() {
        Some("verbose") => LogLevel::Verbose,
        Some("info") => LogLevel::Info,
        Some("warning" | "warn") => LogLevel::Warning,
        Some("error") => LogLevel::Error,
        _ => LogLevel::Fatal,
    }
}

/// Open the library on its own to read its version before handing it to ort, so that a
/// wrong file or an old version becomes a clear error instead of ort's panic.
fn probe_version(path: &Path) -> Result<String, RuntimeError> {
    let load_err = |detail: String| RuntimeError::Load { path: path.to_owned(), detail };
    // SAFETY: loading ONNX Runtime runs its (side-effect free) static initialisers only.
    let lib = unsafe { libloading::Library::new(path) }.map_err(|e| load_err(e.to_string()))?;
    // SAFETY: `OrtGetApiBase` has this signature in every ONNX Runtime release.
    let get_base: libloading::Symbol<unsafe extern "C" fn() -> *const ort::sys::OrtApiBase> =
        unsafe { lib.get(b"OrtGetApiBase") }
            .map_err(|_| load_err("no OrtGetApiBase symbol: not an ONNX Runtime library".into()))?;
    // SAFETY: the API base is a static table inside the library, valid while it is loaded.
    let version = unsafe {
        let base = get_base();
        if base.is_null() {
            return Err(load_err("OrtGetApiBase returned null".into()));
        }
        std::ffi::CStr::from_ptr(((*base).GetVersionString)()).to_string_lossy().into_owned()
    };
    // Keep the library mapped: ort opens the same file again and unloading ONNX Runtime
    // while it is in use elsewhere in the process is unsafe.
    std::mem::forget(lib);
    Ok(version)
}

/// Apply the search order; `env_path` is `$ORT_DYLIB_PATH`.
pub fn locate(explicit: Option<&Path>, env_path: Option<PathBuf>) -> Result<(PathBuf, Origin), RuntimeError> {
    if let Some(p) = explicit {
        return explicit_file(p, Origin::Flag);
    }
    if let Some(p) = env_path.filter(|p| !p.as_os_str().is_empty()) {
        return explicit_file(&p, Origin::EnvVar);
    }
    let mut searched = Vec::new();
    for dir in project_local_dirs() {
        let capi = dir.join(".deps/onnxruntime/onnxruntime/capi");
        if let Some(lib) = newest_library_in(&capi) {
            return Ok((lib, Origin::ProjectLocal));
        }
        searched.push(capi.display().to_string());
    }
    for capi in python_capi_dirs() {
        if let Some(lib) = newest_library_in(&capi) {
            return Ok((lib, Origin::Python));
        }
        searched.push(capi.display().to_string());
    }
    for dir in
        ["/usr/local/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/opt/homebrew/lib"]
    {
        if let Some(lib) = newest_library_in(Path::new(dir)) {
            return Ok((lib, Origin::System));
        }
    }
    searched.push("the system library path".into());
    Err(RuntimeError::NotFound { searched: searched.join(", ") })
}

fn explicit_file(p: &Path, origin: Origin) -> Result<(PathBuf, Origin), RuntimeError> {
    if p.is_file() {
        Ok((p.to_owned(), origin))
    } else if p.is_dir() {
        newest_library_in(p)
            .map(|l| (l, origin))
            .ok_or_else(|| RuntimeError::MissingExplicit { path: p.to_owned(), origin })
    } else {
        Err(RuntimeError::MissingExplicit { path: p.to_owned(), origin })
    }
}

/// Folders that may hold a project-local `.deps`: the working directory, the executable's
/// ancestors (`target/release/camscope` lives two levels below the checkout) and the
/// checkout this binary was built from.
fn project_local_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    if let Ok(cwd) = std::env::current_dir() {
        dirs.push(cwd);
    }
    if let Ok(exe) = std::env::current_exe() {
        dirs.extend(exe.ancestors().skip(1).take(4).map(Path::to_path_buf));
    }
    dirs.push(PathBuf::from(env!("CARGO_MANIFEST_DIR")));
    let mut seen = std::collections::HashSet::new();
    dirs.retain(|d| seen.insert(d.clone()));
    dirs
}

/// `onnxruntime/capi` folders of the active Python environment. Virtual environments and
/// conda are read from their variables without starting Python; otherwise `python3` is
/// asked where its `onnxruntime` package lives (without importing it).
fn python_capi_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(prefix) = std::env::var_os(var) {
            let lib = Path::new(&prefix).join("lib");
            if let Ok(entries) = std::fs::read_dir(&lib) {
                for e in entries.flatten() {
                    if e.file_name().to_string_lossy().starts_with("python") {
                        dirs.push(e.path().join("site-packages/onnxruntime/capi"));
                    }
                }
            }
        }
    }
    let script = "import importlib.util as u\ns = u.find_spec('onnxruntime')\nprint(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else '')";
    for python in ["python3", "python"] {
        if let Ok(out) = Command::new(python).args(["-c", script]).output() {
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() {
                if !text.is_empty() {
                    dirs.push(Path::new(&text).join("capi"));
                }
                break;
            }
        }
    }
    dirs
}

/// The newest `libonnxruntime` in a folder (versioned names included, since the PyPI wheel
/// ships only `libonnxruntime.so.1.32.0` with no unversioned link).
pub fn newest_library_in(dir: &Path) -> Option<PathBuf> {
    let entries = std::fs::read_dir(dir).ok()?;
    let mut best: Option<(Vec<u32>, PathBuf)> = None;
    for e in entries.flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let Some(version) = library_version(&name) else { continue };
        if best.as_ref().is_none_or(|(v, _)| version > *v) {
            best = Some((version, e.path()));
        }
    }
    best.map(|(_, p)| p)
}

/// Version numbers in a library file name, or `None` if it is not ONNX Runtime's main library.
fn library_version(name: &str) -> Option<Vec<u32>> {
    let rest = if cfg!(target_os = "windows") {
        return (name.eq_ignore_ascii_case("onnxruntime.dll")).then(Vec::new);
    } else if cfg!(target_os = "macos") {
        name.strip_prefix("libonnxruntime")?.strip_suffix(".dylib")?
    } else {
        name.strip_prefix("libonnxruntime.so")?
    };
    if rest.is_empty() {
        return Some(Vec::new());
    }
    rest.strip_prefix('.')?.split('.').map(|p| p.parse().ok()).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    #[cfg(target_os = "linux")]
    fn versioned_names_are_recognised() {
        assert_eq!(library_version("libonnxruntime.so.1.32.0"), Some(vec![1, 32, 0]));
        assert_eq!(library_version("libonnxruntime.so"), Some(vec![]));
        assert_eq!(library_version("libonnxruntime_providers_cuda.so"), None);
        assert_eq!(library_version("libonnxruntime.so.1.32.0.bak"), None);
    }

    #[test]
    fn missing_explicit_path_is_an_error_with_the_fix() {
        let err = locate(Some(Path::new("/nonexistent/libonnxruntime.so")), None).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/libonnxruntime.so") && err.contains("scripts/setup-ort"), "{err}");
        let err = locate(None, Some("/nope/lib.so".into())).unwrap_err().to_string();
        assert!(err.contains("ORT_DYLIB_PATH"), "{err}");
    }
}
