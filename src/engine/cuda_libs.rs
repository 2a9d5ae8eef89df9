//! Preloading the CUDA and cuDNN libraries of NVIDIA's pip packages before the CUDA provider
//! is registered.
//!
//! `pip install onnxruntime-gpu[cuda,cudnn]` puts cuBLAS, cuDNN and the CUDA runtime in
//! `site-packages/nvidia/...`, beside `site-packages/onnxruntime`. The CUDA provider library
//! finds them only through the loader path; from Python, `onnxruntime.preload_dlls()` (or an
//! `import torch` of the same CUDA major version) loads them first. camscope loads ONNX
//! Runtime from Rust, so it does the same: it opens those libraries globally, in dependency
//! order, and the provider's `NEEDED` entries then resolve to the already-loaded copies by
//! soname. Without this, `--device cuda` would fail on a plain pip install unless the user
//! set `LD_LIBRARY_PATH` by hand. Only libraries inside the package's own site folder are
//! opened, and only for a CUDA build of ONNX Runtime.

use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What the preload did, for the fallback reason and `--verbose` reports.
#[derive(Debug, Clone, Default)]
pub struct Preload {
    /// CUDA major version the ONNX Runtime package was built for (`None`: not a pip CUDA build).
    pub cuda_major: Option<u32>,
    pub loaded: Vec<PathBuf>,
    /// Libraries that exist but failed to open, with the loader's reason.
    pub failed: Vec<(PathBuf, String)>,
}

static PRELOAD: OnceLock<Preload> = OnceLock::new();

/// Preload once per process for the ONNX Runtime library at `ort_lib`.
pub fn preload_for(ort_lib: &Path) -> &'static Preload {
    PRELOAD.get_or_init(|| {
        let Some(capi) = ort_lib.parent() else { return Preload::default() };
        let Some(major) = std::fs::read_to_string(capi.join("build_and_package_info.py"))
            .ok()
            .and_then(|text| cuda_major_from_build_info(&text))
        else {
            return Preload::default();
        };
        let Some(site) = capi.parent().and_then(Path::parent) else { return Preload::default() };
        let mut report = Preload { cuda_major: Some(major), ..Preload::default() };
        for path in candidates(site, major).into_iter().filter(|p| p.is_file()) {
            // SAFETY: these are NVIDIA's CUDA libraries from the same environment as the CUDA
            // provider that will load them anyway; their initialisers only set up the runtime.
            match unsafe { open_global(&path) } {
                Ok(()) => report.loaded.push(path),
                Err(why) => report.failed.push((path, why)),
            }
        }
        report
    })
}

/// `cuda_version = '13.0'` in onnxruntime-gpu's `capi/build_and_package_info.py` (the CPU
/// wheel has no such line, or an empty one).
pub fn cuda_major_from_build_info(text: &str) -> Option<u32> {
    text.lines().find_map(|line| {
        let value = line.trim().strip_prefix("cuda_version")?.trim_start().strip_prefix('=')?.trim();
        let value = value.trim_matches(|c| c == '\'' || c == '"');
        value.split('.').next()?.parse().ok()
    })
}

/// The libraries to open, in dependency order (cublasLt before cublas), as onnxruntime-gpu's
/// `preload_dlls` lists them: from CUDA 13 on, NVIDIA ships one `nvidia/cu{major}` package;
/// before, one package per component. cuDNN keeps its own package; its sub-libraries are
/// opened by cuDNN itself when needed.
pub fn candidates(site: &Path, cuda_major: u32) -> Vec<PathBuf> {
    let nvidia = site.join("nvidia");
    let m = cuda_major;
    let cufft = if m >= 13 { 12 } else { 11 };
    let mut paths: Vec<PathBuf> = if m >= 13 {
        let lib = nvidia.join(format!("cu{m}")).join("lib");
        [
            format!("libcublasLt.so.{m}"),
            format!("libcublas.so.{m}"),
            format!("libnvrtc.so.{m}"),
            "libcurand.so.10".to_owned(),
            format!("libcufft.so.{cufft}"),
            format!("libcudart.so.{m}"),
        ]
        .into_iter()
        .map(|name| lib.join(name))
        .collect()
    } else {
        [
            ("cublas", format!("libcublasLt.so.{m}")),
            ("cublas", format!("libcublas.so.{m}")),
            ("cuda_nvrtc", format!("libnvrtc.so.{m}")),
            ("curand", "libcurand.so.10".to_owned()),
            ("cufft", format!("libcufft.so.{cufft}")),
            ("cuda_runtime", format!("libcudart.so.{m}")),
        ]
        .into_iter()
        .map(|(package, name)| nvidia.join(package).join("lib").join(name))
        .collect()
    };
    paths.push(nvidia.join("cudnn/lib/libcudnn.so.9"));
    paths
}

/// Open a library with `RTLD_GLOBAL` and keep it loaded for the life of the process.
#[cfg(unix)]
unsafe fn open_global(path: &Path) -> Result<(), String> {
    use libloading::os::unix::{Library, RTLD_GLOBAL, RTLD_NOW};
    // SAFETY: forwarded to the caller.
    let lib = unsafe { Library::open(Some(path), RTLD_NOW | RTLD_GLOBAL) }.map_err(|e| e.to_string())?;
    std::mem::forget(lib);
    Ok(())
}

#[cfg(not(unix))]
unsafe fn open_global(_path: &Path) -> Result<(), String> {
    Err("preloading is implemented for Linux only".into())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn build_info_gives_the_cuda_major_version() {
        let gpu = "package_name = 'onnxruntime-gpu'\n__version__ = '1.31.1'\ncuda_version = '13.0'\n";
        assert_eq!(cuda_major_from_build_info(gpu), Some(13));
        assert_eq!(cuda_major_from_build_info("cuda_version = \"12.8\""), Some(12));
        assert_eq!(cuda_major_from_build_info("package_name = 'onnxruntime'\n__version__ = '1.32.0'\n"), None);
        assert_eq!(cuda_major_from_build_info("cuda_version = ''"), None);
    }

    #[test]
    fn cuda_13_uses_the_consolidated_package_and_cuda_12_one_package_per_component() {
        let site = Path::new("/site");
        let c13 = candidates(site, 13);
        assert_eq!(c13[0], Path::new("/site/nvidia/cu13/lib/libcublasLt.so.13"));
        assert!(c13.contains(&PathBuf::from("/site/nvidia/cu13/lib/libcufft.so.12")));
        assert_eq!(c13.last().unwrap(), Path::new("/site/nvidia/cudnn/lib/libcudnn.so.9"));
        let c12 = candidates(site, 12);
        assert_eq!(c12[0], Path::new("/site/nvidia/cublas/lib/libcublasLt.so.12"));
        assert!(c12.contains(&PathBuf::from("/site/nvidia/cuda_runtime/lib/libcudart.so.12")));
        assert!(c12.contains(&PathBuf::from("/site/nvidia/cufft/lib/libcufft.so.11")));
    }
}
