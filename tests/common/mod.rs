//! Helpers shared by the integration tests: paths into the checkout and running the binary.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub fn root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

pub fn sample(rel: &str) -> PathBuf {
    root().join("samples").join(rel)
}

pub fn data(rel: &str) -> PathBuf {
    root().join("tests/data").join(rel)
}

pub mod onnx_build;

pub fn bundled_model() -> PathBuf {
    root().join("models/efficientnet_lite0.onnx")
}

/// Run the camscope binary with `args`, from `cwd`.
pub fn camscope_in(cwd: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_camscope")).args(args).current_dir(cwd).output().expect("start camscope")
}

pub fn camscope(args: &[&str]) -> Output {
    camscope_in(&root(), args)
}

/// A failed run's stderr, checked to be one clear line and not a panic.
pub fn one_line_error(out: &Output) -> String {
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    assert!(!out.status.success(), "expected failure, got success; stdout: {}", String::from_utf8_lossy(&out.stdout));
    assert!(!stderr.contains("panicked"), "panic instead of an error: {stderr}");
    let lines: Vec<&str> = stderr.lines().filter(|l| !l.trim().is_empty()).collect();
    assert_eq!(lines.len(), 1, "expected one line of error, got: {stderr}");
    lines[0].to_owned()
}

/// Read a little-endian f32 `.npy` file (the reference tensors written by the Python scripts).
pub fn read_npy_f32(path: &Path) -> (Vec<usize>, Vec<f32>) {
    use ndarray_npy::ReadNpyExt;
    let f = std::fs::File::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let a = ndarray::ArrayD::<f32>::read_npy(f).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    (a.shape().to_vec(), a.iter().copied().collect())
}
