//! From an image file to the tensor a model expects: decode, crop/resize, normalise.
//!
//! Decoding is the only I/O here; everything after it is a pure function of the pixels and
//! the model card's [`InputSpec`], so the same code serves the CLI, the TUI and the tests.

pub mod resample;

use std::path::{Path, PathBuf};

use image::RgbImage;
use ndarray::{Array3, Array4, ArrayView3, ArrayView4, Axis};

use crate::model::{InputSpec, Layout, ResizePolicy};

/// Why an image could not be turned into pixels.
#[derive(Debug, thiserror::Error)]
pub enum ImageError {
    #[error("{}: no such file; check the path", path.display())]
    Missing { path: PathBuf },
    #[error("{}: cannot read: {source}; check the file's permissions", path.display())]
    Unreadable { path: PathBuf, source: std::io::Error },
    #[error("{}: not an image camscope can read ({detail}); use PNG, JPEG, GIF, BMP, TIFF, WebP, PNM or ICO", path.display())]
    NotAnImage { path: PathBuf, detail: String },
    #[error("{}: corrupt or truncated image ({detail}); re-export or replace the file", path.display())]
    Corrupt { path: PathBuf, detail: String },
    #[error("{}: not a regular file (a pipe, socket or device); pass an image file", path.display())]
    NotAFile { path: PathBuf },
    #[error("{}: image is {width}x{height}, too small to use; it needs at least 1x1 pixels", path.display())]
    Empty { path: PathBuf, width: u32, height: u32 },
}

/// File extensions treated as images when scanning folders (lower case).
pub const IMAGE_EXTENSIONS: &[&str] =
    &["png", "jpg", "jpeg", "gif", "bmp", "tif", "tiff", "webp", "pnm", "ppm", "pgm", "pbm", "ico"];

/// Whether a path looks like an image by its extension (cheap: no I/O).
pub fn has_image_extension(path: &Path) -> bool {
    path.extension()
        .and_then(|e| e.to_str())
        .is_some_and(|e| IMAGE_EXTENSIONS.iter().any(|x| x.eq_ignore_ascii_case(e)))
}

/// Decode a file into 8-bit RGB. Like Pillow's `convert("RGB")`: grey is replicated, alpha
/// dropped, EXIF orientation ignored (training pipelines ignore it too, so the model's view
/// of the image is the unrotated one).
pub fn load_rgb(path: &Path) -> Result<RgbImage, ImageError> {
    let io_err = |source: std::io::Error| match source.kind() {
        std::io::ErrorKind::NotFound => ImageError::Missing { path: path.to_owned() },
        _ => ImageError::Unreadable { path: path.to_owned(), source },
    };
    // Reading a FIFO named `x.png` would block forever, waiting for a writer.
    if !std::fs::metadata(path).map_err(io_err)?.is_file() {
        return Err(ImageError::NotAFile { path: path.to_owned() });
    }
    let bytes = std::fs::read(path).map_err(io_err)?;
    decode_rgb(&bytes, path)
}

/// Decode bytes (named by `path` in errors) into 8-bit RGB.
pub fn decode_rgb(bytes: &[u8], path: &Path) -> Result<RgbImage, ImageError> {
    let format = image::guess_format(bytes).map_err(|_| ImageError::NotAnImage {
        path: path.to_owned(),
        detail: if bytes.is_empty() { "the file is empty".into() } else { "unrecognised file signature".into() },
    })?;
    let img = image::load_from_memory_with_format(bytes, format).map_err(|e| match e {
        image::ImageError::Unsupported(u) => ImageError::NotAnImage { path: path.to_owned(), detail: u.to_string() },
        other => ImageError::Corrupt { path: path.to_owned(), detail: other.to_string() },
    })?;
    if img.width() == 0 || img.height() == 0 {
        return Err(ImageError::Empty { path: path.to_owned(), width: img.width(), height: img.height() });
    }
    Ok(img.to_rgb8())
}

/// The region of the source image the model sees, as `(left, top, width, height)`.
///
/// `CenterCrop` takes the largest centred box with the model's aspect ratio (offsets
/// floored, like the export script's `(w - s) // 2`), shrunk by `crop_fraction`.
pub fn crop_box(width: u32, height: u32, spec: &InputSpec) -> (u32, u32, u32, u32) {
    match spec.resize {
        ResizePolicy::Stretch => (0, 0, width, height),
        ResizePolicy::CenterCrop => {
            let target = f64::from(spec.width) / f64::from(spec.height);
            let (mut cw, mut ch) = if f64::from(width) / f64::from(height) > target {
                (((f64::from(height) * target).round() as u32).max(1), height)
            } else {
                (width, ((f64::from(width) / target).round() as u32).max(1))
            };
            if spec.crop_fraction < 1.0 {
                cw = ((f64::from(cw) * spec.crop_fraction).round() as u32).max(1);
                ch = ((f64::from(ch) * spec.crop_fraction).round() as u32).max(1);
            }
            ((width - cw) / 2, (height - ch) / 2, cw, ch)
        }
    }
}

/// Crop and resize to the model's input size: the pixels the model actually sees. The TUI
/// and overlays use this same image so the heatmap lines up with what was classified.
pub fn model_view(img: &RgbImage, spec: &InputSpec) -> RgbImage {
    let (left, top, w, h) = crop_box(img.width(), img.height(), spec);
    let cropped = if (left, top, w, h) == (0, 0, img.width(), img.height()) {
        img.clone()
    } else {
        image::imageops::crop_imm(img, left, top, w, h).to_image()
    };
    resample::resize(&cropped, spec.width, spec.height, spec.interpolation)
}

/// Normalise model-sized pixels into one sample: `(x * scale - mean) / std` per channel,
/// laid out as CHW (NCHW models) or HWC (NHWC models). Computed in f32, in the same order
/// of operations as NumPy's `(x - mean) / std`, so it matches Python references exactly.
pub fn normalize(view: &RgbImage, spec: &InputSpec) -> Array3<f32> {
    let (w, h) = (view.width() as usize, view.height() as usize);
    let px = view.as_raw();
    let mean = spec.mean.map(|m| m as f32);
    let std = spec.std.map(|s| s as f32);
    let scale = spec.pixel_scale as f32;
    let value = |v: u8, c: usize| {
        let x = f32::from(v);
        let x = if scale == 1.0 { x } else { x * scale };
        (x - mean[c]) / std[c]
    };
    // Straight loops over the raw buffers: this runs for every image of a triage scan, on the
    // core ONNX Runtime is not using.
    let n = w * h;
    let mut out = vec![0f32; 3 * n];
    match spec.layout {
        Layout::Nchw => {
            let (r, rest) = out.split_at_mut(n);
            let (g, b) = rest.split_at_mut(n);
            for (i, p) in px.chunks_exact(3).enumerate() {
                r[i] = value(p[0], 0);
                g[i] = value(p[1], 1);
                b[i] = value(p[2], 2);
            }
            Array3::from_shape_vec((3, h, w), out).expect("3 planes of h x w")
        }
        Layout::Nhwc => {
            for (o, (i, &v)) in out.iter_mut().zip(px.iter().enumerate()) {
                *o = value(v, i % 3);
            }
            Array3::from_shape_vec((h, w, 3), out).expect("h x w pixels of 3 channels")
        }
    }
}

/// Stack samples into a batch tensor (N first).
pub fn batch(samples: &[ArrayView3<'_, f32>]) -> Array4<f32> {
    let views: Vec<_> = samples.iter().map(|s| s.view().insert_axis(Axis(0))).collect();
    ndarray::concatenate(Axis(0), &views).expect("samples share one shape")
}

/// `x` with zero samples appended up to `rows` samples (`x` itself when it has that many).
/// On CUDA every new batch size makes cuDNN plan each convolution again (0.4-0.9 s for the
/// bundled model on an H200, each time the size alternates), so a short last batch is padded
/// to the usual size and the extra rows' outputs are dropped.
pub fn pad_batch(x: ArrayView4<'_, f32>, rows: usize) -> ndarray::CowArray<'_, f32, ndarray::Ix4> {
    let (n, a, b, c) = x.dim();
    if n >= rows {
        return x.into();
    }
    let mut padded = Array4::zeros((rows, a, b, c));
    padded.slice_mut(ndarray::s![..n, .., .., ..]).assign(&x);
    padded.into()
}

/// Decode, crop, resize and normalise one file.
pub fn load_tensor(path: &Path, spec: &InputSpec) -> Result<Array3<f32>, ImageError> {
    Ok(normalize(&model_view(&load_rgb(path)?, spec), spec))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pad_batch_appends_zero_samples_and_keeps_full_batches_as_they_are() {
        let x = Array4::from_shape_fn((2, 3, 2, 2), |(n, c, y, x)| (n * 100 + c * 10 + y * 2 + x) as f32 + 1.0);
        let p = pad_batch(x.view(), 4);
        assert_eq!(p.dim(), (4, 3, 2, 2));
        assert_eq!(p.slice(ndarray::s![..2, .., .., ..]), x);
        assert!(p.slice(ndarray::s![2.., .., .., ..]).iter().all(|&v| v == 0.0));
        assert!(pad_batch(x.view(), 2).is_view(), "a full batch is not copied");
    }
}
