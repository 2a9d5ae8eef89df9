//! From a normalised map to pixels: upsampling, colormaps, alpha blending, PNG files and terminal cells.
//!
//! Pure functions over `ndarray` and `image::RgbImage` except [`png`] (file writing). Conventions follow
//! pytorch-grad-cam so overlays can be compared with the peer's: OpenCV's bilinear resize ([`resize`]),
//! `uint8(255·v)` to pick a colour, RGB throughout.

pub mod blend;
pub mod cells;
pub mod colormap;
#[rustfmt::skip]
mod colormap_tables;
pub mod png;
pub mod resize;

use image::RgbImage;
use ndarray::{Array2, ArrayView2, ArrayView3};

pub use self::blend::{blend, blend_like_peer};

/// `s` made safe to print on one terminal line: control characters (a newline in a file
/// name, a tab, an escape sequence) are shown as escapes such as `\n` or `\u{1b}`. A newline
/// in a name shifted every later row of the inspector's file list, and an escape could
/// drive the terminal.
pub fn printable(s: &str) -> std::borrow::Cow<'_, str> {
    if !s.chars().any(char::is_control) {
        return s.into();
    }
    s.chars()
        .map(|c| if c.is_control() { c.escape_default().to_string() } else { c.to_string() })
        .collect::<String>()
        .into()
}
pub use self::colormap::{Colormap, UnknownColormap};
pub use self::png::{PngError, fresh_path, write_png, write_png_new};

/// Why an image could not be rendered.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum RenderError {
    #[error("alpha {alpha} is outside [0, 1]; 0 shows only the image, 1 only the heatmap")]
    Alpha { alpha: f64 },
    #[error("{what} is {}x{} but the image is {}x{}", got.0, got.1, expected.0, expected.1)]
    Size { what: &'static str, expected: (u32, u32), got: (u32, u32) },
    #[error("{what} has {got} channels; 3 (RGB) are needed")]
    Channels { what: &'static str, got: usize },
}

/// A normalised map upsampled to `[height, width]` the way the peer shows it: OpenCV bilinear resize
/// ([`resize::resize`], half-pixel centres), then min-max normalised again, as pytorch-grad-cam's
/// `aggregate_multi_layers` does after resizing (bilinear interpolation can lower the peak between cell
/// centres). A map that is flat after resizing (all zero) stays all zero; NaN or infinite values count as 0.
pub fn upsample_map(map: ArrayView2<'_, f32>, height: usize, width: usize) -> Array2<f32> {
    let up = resize::resize(map, height, width).mapv(|v| if v.is_finite() { v } else { 0.0 });
    let lo = up.iter().copied().fold(f32::INFINITY, f32::min);
    let hi = up.iter().copied().fold(f32::NEG_INFINITY, f32::max);
    if up.is_empty() || hi <= lo {
        return Array2::zeros((height, width));
    }
    up.mapv(|v| ((v - lo) / (hi - lo)).clamp(0.0, 1.0))
}

/// The map drawn with a colormap, one pixel per map value (values in [0, 1]).
pub fn heatmap_image(map: ArrayView2<'_, f32>, colormap: Colormap) -> RgbImage {
    let (h, w) = map.dim();
    RgbImage::from_fn(w as u32, h as u32, |x, y| image::Rgb(colormap.color(map[[y as usize, x as usize]])))
}

/// The heatmap of `map` blended over `image` with weight `alpha` ([`blend()`]). A map of another size (typically the
/// feature-resolution map) is first brought to the image's size with [`upsample_map`].
pub fn overlay(
    image: &RgbImage,
    map: ArrayView2<'_, f32>,
    colormap: Colormap,
    alpha: f64,
) -> Result<RgbImage, RenderError> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let heat = if map.dim() == (h, w) {
        heatmap_image(map, colormap)
    } else {
        heatmap_image(upsample_map(map, h, w).view(), colormap)
    };
    blend(image, &heat, alpha)
}

/// pytorch-grad-cam's `deprocess_image`, for showing input gradients (guided backprop, Guided Grad-CAM): centre on
/// the mean, divide by the standard deviation (`+ 1e-5`), scale by 0.1 and shift to 0.5, clip to [0, 1], then
/// `uint8(255·v)`. `x` is `[3, H, W]`; statistics over all values, in f64.
pub fn deprocess_image(x: ArrayView3<'_, f32>) -> Result<RgbImage, RenderError> {
    let (c, h, w) = x.dim();
    if c != 3 {
        return Err(RenderError::Channels { what: "input gradient", got: c });
    }
    let n = x.len().max(1) as f64;
    let mean = x.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = x.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
    let (mean, std) = (mean as f32, var.sqrt() as f32);
    let pixel = |v: f32| {
        let v = ((v - mean) / (std + 1e-5)) * 0.1 + 0.5;
        (v.clamp(0.0, 1.0) * 255.0) as u8
    };
    Ok(RgbImage::from_fn(w as u32, h as u32, |px, py| {
        let (px, py) = (px as usize, py as usize);
        image::Rgb([pixel(x[[0, py, px]]), pixel(x[[1, py, px]]), pixel(x[[2, py, px]])])
    }))
}

#[cfg(test)]
mod tests {
    use ndarray::{Array3, array};

    use super::*;

    #[test]
    fn printable_keeps_text_on_one_line_and_leaves_plain_names_alone() {
        assert!(matches!(printable("cats/tabby ü.png"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(printable("a\nb\tc\u{1b}[2J.png"), "a\\nb\\tc\\u{1b}[2J.png");
    }

    #[test]
    fn heatmap_pixels_come_from_the_colormap() {
        let map = array![[0.0, 1.0], [0.5, 0.25]];
        let img = heatmap_image(map.view(), Colormap::Grey);
        assert_eq!(img.dimensions(), (2, 2));
        assert_eq!(img.get_pixel(1, 0).0, [255; 3]);
        assert_eq!(img.get_pixel(0, 1).0, [127; 3]);
        assert_eq!(img.get_pixel(1, 1).0, [63; 3]);
        assert_eq!(heatmap_image(map.view(), Colormap::Jet).get_pixel(0, 0).0, [0, 0, 128]);
    }

    #[test]
    fn upsampled_map_is_renormalised() {
        // [[0, 1]] -> 1x4 half-pixel: [0, 0.25, 0.75, 1] already spans [0, 1].
        assert_eq!(upsample_map(array![[0.0, 1.0]].view(), 1, 4), array![[0.0, 0.25, 0.75, 1.0]]);
        // A single peak cell: the 1x3 map [0, 1, 0] -> 1x4 samples at -0.125, 0.625, 1.375, 2.125 (clamped ends):
        // [0, 0.625, 0.625, 0], renormalised so the peak is 1 again.
        let up = upsample_map(array![[0.0, 1.0, 0.0]].view(), 1, 4);
        assert_eq!(up, array![[0.0, 1.0, 1.0, 0.0]]);
        assert_eq!(upsample_map(Array2::<f32>::zeros((2, 2)).view(), 3, 3), Array2::<f32>::zeros((3, 3)));
    }

    #[test]
    fn overlay_upsamples_and_blends() {
        let image = RgbImage::from_pixel(4, 1, image::Rgb([0, 0, 0]));
        let out = overlay(&image, array![[0.0, 1.0]].view(), Colormap::Grey, 1.0).unwrap();
        // Grey heatmap of [0, 0.25, 0.75, 1]: 0, 63, 191, 255; alpha 1 shows it alone.
        let reds: Vec<u8> = out.pixels().map(|p| p.0[0]).collect();
        assert_eq!(reds, vec![0, 63, 191, 255]);
        assert!(overlay(&image, array![[0.0]].view(), Colormap::Jet, 2.0).is_err());
    }

    #[test]
    fn deprocess_centres_and_scales() {
        // Values -1 and 1 (mean 0, std 1): 0.5 ∓ 0.1/(1 + 1e-5) -> 102.0003 and 152.9997, truncated to 102 and 152.
        let x = Array3::from_shape_fn((3, 1, 2), |(_, _, i)| if i == 0 { -1.0 } else { 1.0 });
        let img = deprocess_image(x.view()).unwrap();
        assert_eq!(img.get_pixel(0, 0).0, [102; 3]);
        assert_eq!(img.get_pixel(1, 0).0, [152; 3]);
        // Constant input: 0.5 everywhere, no NaN.
        let img = deprocess_image(Array3::from_elem((3, 2, 2), 7.0).view()).unwrap();
        assert!(img.pixels().all(|p| p.0 == [127; 3]));
        assert!(matches!(deprocess_image(Array3::zeros((1, 2, 2)).view()), Err(RenderError::Channels { .. })));
    }
}
