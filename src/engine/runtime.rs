//! Finding and loading the ONNX Runtime shared library.
//!
//! camscope links ONNX Runtime at run time (ort's `load-dynamic`), so one binary works with
//! whatever ONNX Runtime the machine has (from 1.18 on, ort's `api-18` floor), including the
//! CUDA build that ships in the `onnxruntime-gpu` wheel. The library is searched, in order:
//! `--ort-lib PATH`, `$ORT_DYLIB_PATH`, the `onnxruntime` package of the Python environment
//! camscope itself is installed in (`pip install camscope` puts the binary in `<prefix>/bin`
//! and its `onnxruntime` dependency in `<prefix>/lib/python3.X/site-packages`), the
//! project-local install made by `scripts/setup-ort` (`.deps/onnxruntime`), the `onnxruntime`
//! package of the active Python (which is also where `onnxruntime-gpu` installs), then the
//! system's loader path. A pip-installed camscope skips `.deps`: a wheel built from a checkout
//! remembers that checkout's path, and its users expect their environment's library (and
//! `onnxruntime-gpu`'s CUDA), or a clear pip command when it is missing, not the build
//! machine's library.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

/// The ONNX Runtime version `scripts/setup-ort` installs.
pub const PINNED_VERSION: &str = "1.32.0";
/// The oldest ONNX Runtime camscope accepts (ort's `api-18` feature: in-memory external
/// weights, see `onnx::SharedFile`).
pub const MIN_MINOR: u32 = 18;
/// The one-line fix printed whenever the library is missing or unusable.
pub const INSTALL_HINT: &str = "run `scripts/setup-ort` in the camscope checkout (installs onnxruntime 1.32.0 into .deps/), \
     or `pip install onnxruntime`, or pass --ort-lib /path/to/libonnxruntime.so";

/// How the library was found (shown by `--verbose` and the status bar).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    Flag,
    EnvVar,
    Installed,
    ProjectLocal,
    Python,
    System,
}

impl std::fmt::Display for Origin {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Origin::Flag => "--ort-lib",
            Origin::EnvVar => "ORT_DYLIB_PATH",
            Origin::Installed => "the Python environment camscope is installed in",
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
    /// camscope was installed by pip but its environment lost the `onnxruntime` package (and
    /// nothing else provides one): the fix is a pip command for that environment, and the list
    /// of folders searched would only hide it.
    #[error(
        "ONNX Runtime not found: the Python environment camscope is installed in ({}) has no onnxruntime package; {}",
        prefix.display(), pip_hint(Some(prefix), "install")
    )]
    NotInEnvironment { prefix: PathBuf },
    /// PyPI's `onnxruntime` wheels carry the shared library only from 1.19 on; before, ONNX
    /// Runtime was linked into the Python extension, which camscope cannot use.
    #[error(
        "{}: {name} {version} is too old for camscope: its wheel has no ONNX Runtime shared library (they do from 1.19 on); {}",
        site.display(), hint_for_site(site, "install -U")
    )]
    PackageWithoutLibrary { site: PathBuf, name: String, version: String },
    #[error("{}: cannot load ONNX Runtime ({detail}); {}", path.display(), hint_for(path, "install"))]
    Load { path: PathBuf, detail: String },
    #[error("{}: ONNX Runtime {version} is too old (camscope needs 1.{MIN_MINOR} or newer); {}", path.display(), hint_for(path, "install -U"))]
    TooOld { path: PathBuf, version: String },
    #[error("{}: ONNX Runtime failed to start: {detail}", path.display())]
    Environment { path: PathBuf, detail: String },
    #[error("ONNX Runtime is already loaded from {}; cannot switch to {} in the same process", loaded.display(), wanted.display())]
    AlreadyLoaded { loaded: PathBuf, wanted: PathBuf },
}

impl OrtLibrary {
    /// Whether this build of ONNX Runtime has the CUDA provider (the `onnxruntime-gpu` wheel
    /// does, `onnxruntime` does not). Whether it then registers (CUDA and cuDNN found, a GPU
    /// present) is only known when a session asks for it.
    pub fn has_cuda_provider(&self) -> bool {
        use ort::ep::ExecutionProvider;
        ort::ep::CUDA::is_available().unwrap_or(false)
    }
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
    // The first `onnxruntime` package seen that is too old to have a library: the error to
    // give if nothing else is found, since it names the fix.
    let mut old_package = None;
    let installed = std::env::current_exe().ok().and_then(|exe| installed_prefix(&exe));
    for site in installed.iter().flat_map(|prefix| site_dirs(prefix)) {
        if let Some(lib) = site_library(&site) {
            return Ok((lib, Origin::Installed));
        }
        old_package = old_package.or_else(|| package_without_library(&site));
    }
    // A checkout's `.deps` is for a camscope run from that checkout; a pip-installed one would
    // otherwise pick up the `.deps` of the checkout its wheel was built in (CARGO_MANIFEST_DIR)
    // when its own environment lacks onnxruntime, instead of saying so.
    let project_local = if installed.is_some() { Vec::new() } else { project_local_dirs() };
    for dir in project_local {
        let capi = dir.join(".deps/onnxruntime/onnxruntime/capi");
        if let Some(lib) = newest_library_in(&capi) {
            return Ok((lib, Origin::ProjectLocal));
        }
        searched.push(capi.display().to_string());
    }
    for site in python_site_dirs() {
        if let Some(lib) = site_library(&site) {
            return Ok((lib, Origin::Python));
        }
        old_package = old_package.or_else(|| package_without_library(&site));
        searched.push(site.join("onnxruntime/capi").display().to_string());
    }
    for dir in
        ["/usr/local/lib", "/usr/lib", "/usr/lib/x86_64-linux-gnu", "/usr/lib/aarch64-linux-gnu", "/opt/homebrew/lib"]
    {
        if let Some(lib) = newest_library_in(Path::new(dir)) {
            return Ok((lib, Origin::System));
        }
    }
    searched.push("the system library path".into());
    match (old_package, installed) {
        (Some(old), _) => Err(old),
        (None, Some(prefix)) => Err(RuntimeError::NotInEnvironment { prefix }),
        (None, None) => Err(RuntimeError::NotFound { searched: searched.join(", ") }),
    }
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

/// `site-packages` folders of the active Python environment. Virtual environments and
/// conda are read from their variables without starting Python; otherwise `python3` is
/// asked where its `onnxruntime` package lives (without importing it).
fn python_site_dirs() -> Vec<PathBuf> {
    let mut dirs = Vec::new();
    for var in ["VIRTUAL_ENV", "CONDA_PREFIX"] {
        if let Some(prefix) = std::env::var_os(var) {
            dirs.extend(site_dirs(Path::new(&prefix)));
        }
    }
    let script = "import importlib.util as u\ns = u.find_spec('onnxruntime')\nprint(list(s.submodule_search_locations)[0] if s and s.submodule_search_locations else '')";
    for python in ["python3", "python"] {
        if let Ok(out) = Command::new(python).args(["-c", script]).output() {
            let text = String::from_utf8_lossy(&out.stdout).trim().to_owned();
            if out.status.success() {
                if let Some(site) = Path::new(&text).parent().filter(|_| !text.is_empty()) {
                    dirs.push(site.to_owned());
                }
                break;
            }
        }
    }
    dirs
}

/// The prefix of the Python environment (venv, conda, `pip install --user`'s `~/.local`, a
/// system prefix) that pip installed `exe` into: `<prefix>/bin/camscope` beside
/// `<prefix>/lib/python3.X/site-packages/camscope-<version>.dist-info`. `None` for a binary
/// installed any other way (`cargo install`, even into a prefix that has a Python, or
/// `target/release`), which keeps the checkout's `.deps` in its search.
pub fn installed_prefix(exe: &Path) -> Option<PathBuf> {
    let prefix = exe.parent()?.parent()?;
    let by_pip = site_dirs(prefix).iter().any(|site| {
        std::fs::read_dir(site).into_iter().flatten().flatten().any(|e| {
            let name = e.file_name().to_string_lossy().into_owned();
            name.starts_with("camscope-") && name.ends_with(".dist-info")
        })
    });
    by_pip.then(|| prefix.to_owned())
}

fn is_python_prefix(prefix: &Path) -> bool {
    site_dirs(prefix).iter().any(|d| d.is_dir())
}

/// The package folders a Python prefix may have: `lib/python3.X/site-packages` (venvs, conda,
/// `--user`), `dist-packages` (Debian's system Pythons) and `Lib/site-packages` (Windows).
fn site_dirs(prefix: &Path) -> Vec<PathBuf> {
    let mut pythons: Vec<PathBuf> = std::fs::read_dir(prefix.join("lib"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_string_lossy().starts_with("python"))
        .map(|e| e.path())
        .collect();
    pythons.sort();
    let mut dirs: Vec<PathBuf> =
        pythons.iter().flat_map(|p| [p.join("site-packages"), p.join("dist-packages")]).collect();
    dirs.push(prefix.join("Lib").join("site-packages"));
    dirs
}

/// One `onnxruntime*` distribution's claim on the shared library, from its `RECORD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Distribution {
    /// The distribution's name as its `.dist-info` folder spells it (`onnxruntime_gpu`).
    pub name: String,
    pub version: String,
    /// The library file it installed.
    pub library: PathBuf,
    /// Whether that file is still the one it installed (same size as recorded): `onnxruntime`
    /// and `onnxruntime-gpu` of one version write the same file name, and the last one
    /// installed wins.
    pub intact: bool,
}

/// The `onnxruntime*` distributions installed in a `site-packages` folder that put an ONNX
/// Runtime library in `onnxruntime/capi`, read from their `.dist-info/RECORD` files.
pub fn distributions(site: &Path) -> Vec<Distribution> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir(site).into_iter().flatten().flatten() {
        let folder = entry.file_name().to_string_lossy().into_owned();
        let Some(stem) = folder.strip_suffix(".dist-info") else { continue };
        let Some((name, version)) = stem.split_once('-') else { continue };
        if !name.to_ascii_lowercase().starts_with("onnxruntime") {
            continue;
        }
        let Ok(record) = std::fs::read_to_string(entry.path().join("RECORD")) else { continue };
        for line in record.lines() {
            // `path,sha256=...,size`; these paths hold no commas, so no CSV quoting to undo.
            let mut fields = line.rsplitn(3, ',');
            let (Some(size), Some(_hash), Some(path)) = (fields.next(), fields.next(), fields.next()) else { continue };
            let Some(file) = path.strip_prefix("onnxruntime/capi/") else { continue };
            if file.contains('/') || library_version(file).is_none() {
                continue;
            }
            let library = site.join(path);
            let actual = std::fs::metadata(&library).ok().map(|m| m.len());
            let Some(actual) = actual else { continue };
            let intact = size.parse::<u64>().map_or(true, |recorded| recorded == actual);
            found.push(Distribution { name: name.to_owned(), version: version.to_owned(), library, intact });
        }
    }
    found.sort_by(|a, b| a.name.cmp(&b.name).then_with(|| a.version.cmp(&b.version)));
    found
}

/// An `onnxruntime*` distribution in `site` that installed files in `onnxruntime/capi` but no
/// shared library (PyPI's wheels before 1.19), as the error that says so.
fn package_without_library(site: &Path) -> Option<RuntimeError> {
    for entry in std::fs::read_dir(site).into_iter().flatten().flatten() {
        let folder = entry.file_name().to_string_lossy().into_owned();
        let Some((name, version)) = folder.strip_suffix(".dist-info").and_then(|s| s.split_once('-')) else {
            continue;
        };
        let Ok(record) = std::fs::read_to_string(entry.path().join("RECORD")) else { continue };
        let files: Vec<&str> =
            record.lines().filter_map(|l| l.split(',').next()?.strip_prefix("onnxruntime/capi/")).collect();
        if !files.is_empty() && !files.iter().any(|f| library_version(f).is_some()) {
            return Some(RuntimeError::PackageWithoutLibrary {
                site: site.to_owned(),
                name: name.to_owned(),
                version: version.to_owned(),
            });
        }
    }
    None
}

/// The ONNX Runtime library of a `site-packages` folder. `onnxruntime`, `onnxruntime-gpu` and
/// the other builds all install into the same `onnxruntime/capi`, and camscope's wheel depends
/// on the CPU package, so a user who adds `onnxruntime-gpu` has both: a build other than the
/// plain one wins (someone installed it on purpose, for CUDA), then the newer version; a
/// library that another package has since overwritten is that other package's. Without any
/// `.dist-info` (a `pip install --target` folder) it is the newest library in the folder.
fn site_library(site: &Path) -> Option<PathBuf> {
    distributions(site)
        .into_iter()
        .filter(|d| d.intact)
        .max_by_key(|d| {
            let plain = d.name.eq_ignore_ascii_case("onnxruntime");
            let file = d.library.file_name().map(|f| f.to_string_lossy().into_owned()).unwrap_or_default();
            (!plain, library_version(&file))
        })
        .map(|d| d.library)
        .or_else(|| newest_library_in(&site.join("onnxruntime").join("capi")))
}

/// The fix for a library that is missing or unusable: a pip command when the library is a
/// Python package's (`.../site-packages/onnxruntime/capi/...`) or camscope was installed by
/// pip, since `scripts/setup-ort` exists only in a checkout; otherwise [`INSTALL_HINT`].
fn hint_for(library: &Path, verb: &str) -> String {
    // <prefix>/lib/python3.X/site-packages/onnxruntime/capi/libonnxruntime.so.*
    let package_prefix = library
        .parent()
        .filter(|capi| capi.ends_with("onnxruntime/capi"))
        .and_then(|capi| capi.ancestors().nth(5))
        .filter(|prefix| is_python_prefix(prefix));
    let prefix = package_prefix
        .map(Path::to_path_buf)
        .or_else(|| std::env::current_exe().ok().and_then(|exe| installed_prefix(&exe)));
    match prefix {
        Some(prefix) => pip_hint(Some(&prefix), verb),
        None => INSTALL_HINT.to_owned(),
    }
}

/// The pip fix for a package in `site`: with its environment's own Python when `site` is
/// `<prefix>/lib/python3.X/site-packages`.
fn hint_for_site(site: &Path, verb: &str) -> String {
    pip_hint(site.ancestors().nth(3).filter(|prefix| is_python_prefix(prefix)), verb)
}

/// `run `<prefix>/bin/python3 -m pip install onnxruntime` (or ...)`: naming the environment's
/// own Python, since the `pip` first on PATH may belong to another one.
fn pip_hint(prefix: Option<&Path>, verb: &str) -> String {
    let python = prefix.map(|p| p.join("bin").join("python3")).filter(|p| p.is_file());
    let pip = python.map_or_else(|| "pip".to_owned(), |p| format!("{} -m pip", p.display()));
    format!(
        "run `{pip} {verb} onnxruntime` (or `{pip} {verb} onnxruntime-gpu` for CUDA), \
         or pass --ort-lib /path/to/libonnxruntime.so"
    )
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

    /// A fake `site-packages` with an `onnxruntime/capi` library of `len` bytes, recorded in a
    /// `.dist-info/RECORD` of distribution `dist` as `recorded` bytes.
    fn install(site: &Path, dist: &str, version: &str, len: usize, recorded: usize) -> PathBuf {
        let capi = site.join("onnxruntime/capi");
        std::fs::create_dir_all(&capi).unwrap();
        let file = format!("libonnxruntime.so.{version}");
        std::fs::write(capi.join(&file), vec![0u8; len]).unwrap();
        let info = site.join(format!("{dist}-{version}.dist-info"));
        std::fs::create_dir_all(&info).unwrap();
        let record = format!(
            "onnxruntime/__init__.py,sha256=x,10\nonnxruntime/capi/{file},sha256=y,{recorded}\n\
             onnxruntime/capi/libonnxruntime_providers_shared.so,sha256=z,5\n{dist}-{version}.dist-info/RECORD,,\n"
        );
        std::fs::write(info.join("RECORD"), record).unwrap();
        capi.join(file)
    }

    #[test]
    #[cfg(target_os = "linux")]
    fn a_site_prefers_the_gpu_package_unless_its_library_was_overwritten() {
        let dir = tempfile::tempdir().unwrap();
        let site = dir.path();
        let cpu = install(site, "onnxruntime", "1.32.0", 10, 10);
        assert_eq!(site_library(site), Some(cpu.clone()));
        // onnxruntime-gpu of an older version beside it: chosen, it was installed for CUDA.
        let gpu = install(site, "onnxruntime_gpu", "1.31.1", 20, 20);
        assert_eq!(site_library(site), Some(gpu.clone()));
        // onnxruntime-gpu 1.32.0's file, then overwritten by onnxruntime 1.32.0 (installed after).
        std::fs::remove_file(&gpu).unwrap();
        std::fs::remove_dir_all(site.join("onnxruntime_gpu-1.31.1.dist-info")).unwrap();
        install(site, "onnxruntime_gpu", "1.32.0", 10, 30);
        assert_eq!(site_library(site), Some(cpu.clone()));
        let gpu = distributions(site).into_iter().find(|d| d.name == "onnxruntime_gpu").unwrap();
        assert!(!gpu.intact && gpu.library == cpu, "{gpu:?}");
        // A `pip install --target` folder has no dist-info: the newest file.
        let target = dir.path().join("target");
        std::fs::create_dir_all(target.join("onnxruntime/capi")).unwrap();
        std::fs::write(target.join("onnxruntime/capi/libonnxruntime.so.1.20.0"), b"x").unwrap();
        std::fs::write(target.join("onnxruntime/capi/libonnxruntime.so.1.9.0"), b"x").unwrap();
        assert_eq!(site_library(&target), Some(target.join("onnxruntime/capi/libonnxruntime.so.1.20.0")));
    }

    #[test]
    fn a_pip_installed_binary_knows_its_environment_and_names_its_pip() {
        let dir = tempfile::tempdir().unwrap();
        let prefix = dir.path().join("venv");
        let site = prefix.join("lib/python3.11/site-packages");
        std::fs::create_dir_all(&site).unwrap();
        std::fs::create_dir_all(prefix.join("bin")).unwrap();
        std::fs::write(prefix.join("bin/python3"), b"").unwrap();
        // A Python prefix, but camscope was not installed there by pip (`cargo install --root`).
        assert_eq!(installed_prefix(&prefix.join("bin/camscope")), None);
        std::fs::create_dir_all(site.join("camscope-0.1.0.dist-info")).unwrap();
        assert_eq!(installed_prefix(&prefix.join("bin/camscope")), Some(prefix.clone()));
        assert_eq!(installed_prefix(&dir.path().join("target/release/camscope")), None);
        let lib = site.join("onnxruntime/capi/libonnxruntime.so.1.16.3");
        let hint = hint_for(&lib, "install -U");
        assert!(
            hint.contains(&format!("{} -m pip install -U onnxruntime`", prefix.join("bin/python3").display())),
            "{hint}"
        );
        // onnxruntime 1.18: files in onnxruntime/capi but no shared library.
        let info = site.join("onnxruntime-1.18.1.dist-info");
        std::fs::create_dir_all(&info).unwrap();
        std::fs::write(info.join("RECORD"), "onnxruntime/capi/libonnxruntime_providers_shared.so,sha256=z,5\n")
            .unwrap();
        assert_eq!(site_library(&site), None);
        let err = package_without_library(&site).unwrap().to_string();
        assert!(
            err.contains("onnxruntime 1.18.1 is too old") && err.contains("-m pip install -U onnxruntime`"),
            "{err}"
        );
        let err = RuntimeError::NotInEnvironment { prefix: prefix.clone() }.to_string();
        assert!(err.contains("has no onnxruntime package") && err.contains("-m pip install onnxruntime`"), "{err}");
    }

    #[test]
    fn missing_explicit_path_is_an_error_with_the_fix() {
        let err = locate(Some(Path::new("/nonexistent/libonnxruntime.so")), None).unwrap_err().to_string();
        assert!(err.contains("/nonexistent/libonnxruntime.so") && err.contains("scripts/setup-ort"), "{err}");
        let err = locate(None, Some("/nope/lib.so".into())).unwrap_err().to_string();
        assert!(err.contains("ORT_DYLIB_PATH"), "{err}");
    }
}
