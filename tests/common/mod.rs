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
pub mod tmux;

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

/// Anything the comparison helpers accept: an ndarray array of any rank, or a flat slice (a 1-D array).
pub trait F32Values {
    fn values_view(&self) -> ndarray::ArrayViewD<'_, f32>;
}

impl<S: ndarray::Data<Elem = f32>, D: ndarray::Dimension> F32Values for ndarray::ArrayBase<S, D> {
    fn values_view(&self) -> ndarray::ArrayViewD<'_, f32> {
        self.view().into_dyn()
    }
}

impl F32Values for [f32] {
    fn values_view(&self) -> ndarray::ArrayViewD<'_, f32> {
        ndarray::ArrayViewD::from_shape(ndarray::IxDyn(&[self.len()]), self).expect("1-D view of a slice")
    }
}

impl F32Values for Vec<f32> {
    fn values_view(&self) -> ndarray::ArrayViewD<'_, f32> {
        self.as_slice().values_view()
    }
}

/// The largest `|v|` of an array, after checking that it is not empty and every value is finite (panics naming
/// `what` otherwise). A fold with `f32::max` alone would skip NaN silently.
pub fn max_abs(what: &str, a: &(impl F32Values + ?Sized)) -> f32 {
    let a = a.values_view();
    assert!(!a.is_empty(), "{what}: no values");
    if let Some((i, v)) = a.iter().enumerate().find(|(_, v)| !v.is_finite()) {
        panic!("{what}: value {i} is {v} (of shape {:?})", a.shape());
    }
    a.iter().fold(0.0f32, |m, v| m.max(v.abs()))
}

/// The one comparison of the tests: `got` and `want` must have the same shape (not merely the same number of
/// values), hold at least one value, and every value on both sides must be finite; returns the largest
/// absolute difference. Panics, naming `what`, on any of these failures.
pub fn max_abs_diff(what: &str, got: &(impl F32Values + ?Sized), want: &(impl F32Values + ?Sized)) -> f32 {
    let (g, w) = (got.values_view(), want.values_view());
    assert_eq!(g.shape(), w.shape(), "{what}: shapes differ (got, want)");
    max_abs(&format!("{what} (got)"), &g);
    max_abs(&format!("{what} (want)"), &w);
    g.iter().zip(w.iter()).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()))
}

/// [`max_abs_diff`] relative to the largest `|want|`, which must not be zero.
pub fn max_rel_diff(what: &str, got: &(impl F32Values + ?Sized), want: &(impl F32Values + ?Sized)) -> f32 {
    let d = max_abs_diff(what, got, want);
    let scale = max_abs(what, want);
    assert!(scale > 0.0, "{what}: the reference is zero everywhere, so no difference is measurable");
    d / scale
}

/// `n` small `size`×`size` images in folders named after ImageNet classes (crops of the sample
/// of that class, each a little different), so the folders give ground truth.
#[allow(dead_code)]
pub fn make_class_images(dir: &Path, n: usize, size: u32) {
    let classes =
        [("tabby", "tabby/chelsea.png"), ("espresso", "espresso/coffee.png"), ("tripod", "tripod/camera.png")];
    let sources: Vec<image::RgbImage> =
        classes.iter().map(|(_, p)| image::open(sample(p)).unwrap().to_rgb8()).collect();
    for i in 0..n {
        let c = i % classes.len();
        let src = &sources[c];
        let (w, h) = src.dimensions();
        let off = (i / classes.len()) as u32 % (w.min(h) / 4);
        let crop = image::imageops::crop_imm(src, off, off, w - 2 * off - 1, h - 2 * off - 1).to_image();
        let small = image::imageops::resize(&crop, size, size, image::imageops::FilterType::Triangle);
        let sub = dir.join(classes[c].0);
        std::fs::create_dir_all(&sub).unwrap();
        small.save(sub.join(format!("{i:04}.png"))).unwrap();
    }
}
