//! Alpha blending a heatmap over an image: `(1 - α)·image + α·colour`, per RGB channel.
//!
//! Computed the way pytorch-grad-cam's `show_cam_on_image(img, mask, use_rgb=True, image_weight=w)` does, so the
//! pixels can be compared with the peer's: both images as f32 in [0, 1] (`u8 / 255`), `cam = (1 - w)·heatmap +
//! w·img` in f32, then `uint8(255 · cam)` (truncation). The peer's `image_weight` is `1 - α`: α is the heatmap's
//! weight, 0 shows the image only, 1 the heatmap only.
//!
//! One difference by default: the peer then divides the whole overlay by its maximum (`cam / np.max(cam)`),
//! which brightens every overlay whose brightest channel is below 1 and makes α a relative rather than an absolute
//! weight. [`blend`] leaves that out; [`blend_like_peer`] keeps it, for pixel-exact comparisons.

use image::RgbImage;

use super::RenderError;

/// `(1 - α)·image + α·heatmap`, `α` in [0, 1].
pub fn blend(image: &RgbImage, heatmap: &RgbImage, alpha: f64) -> Result<RgbImage, RenderError> {
    let cam = mix(image, heatmap, alpha)?;
    Ok(to_image(image, cam.into_iter()))
}

/// Exactly the peer's `show_cam_on_image(image / 255, mask, use_rgb=True, image_weight=1 - α)` given the heatmap
/// it would draw: [`blend`] followed by its division by the overlay's maximum (skipped for an all-black overlay,
/// where the peer divides by zero).
pub fn blend_like_peer(image: &RgbImage, heatmap: &RgbImage, alpha: f64) -> Result<RgbImage, RenderError> {
    let cam = mix(image, heatmap, alpha)?;
    let max = cam.iter().copied().fold(0.0f32, f32::max);
    if max == 0.0 {
        return Ok(to_image(image, cam.into_iter()));
    }
    Ok(to_image(image, cam.iter().map(|&v| v / max)))
}

/// The f32 blend `(1 - w)·heatmap + w·image` with `w = 1 - α`, in the peer's order of operations.
fn mix(image: &RgbImage, heatmap: &RgbImage, alpha: f64) -> Result<Vec<f32>, RenderError> {
    if !(0.0..=1.0).contains(&alpha) {
        return Err(RenderError::Alpha { alpha });
    }
    if image.dimensions() != heatmap.dimensions() {
        return Err(RenderError::Size { what: "heatmap", expected: image.dimensions(), got: heatmap.dimensions() });
    }
    let image_weight = 1.0 - alpha;
    // NumPy multiplies an f32 array by a Python float in f32 (NEP 50), so the weights are rounded to f32 first.
    let (wh, wi) = ((1.0 - image_weight) as f32, image_weight as f32);
    Ok(image
        .as_raw()
        .iter()
        .zip(heatmap.as_raw())
        .map(|(&i, &h)| wh * (f32::from(h) / 255.0) + wi * (f32::from(i) / 255.0))
        .collect())
}

/// `uint8(255 · v)`: truncation (`as` also saturates, so rounding noise above 1 stays 255).
fn to_image(like: &RgbImage, values: impl Iterator<Item = f32>) -> RgbImage {
    let raw: Vec<u8> = values.map(|v| (255.0 * v) as u8).collect();
    RgbImage::from_raw(like.width(), like.height(), raw).expect("same size as the image")
}

#[cfg(test)]
mod tests {
    use image::Rgb;

    use super::*;

    fn one(px: [u8; 3]) -> RgbImage {
        RgbImage::from_pixel(1, 1, Rgb(px))
    }

    #[test]
    fn alpha_weighs_the_heatmap() {
        let img = one([255, 0, 0]);
        let heat = one([0, 255, 0]);
        assert_eq!(blend(&img, &heat, 0.0).unwrap(), img);
        assert_eq!(blend(&img, &heat, 1.0).unwrap(), heat);
        // 0.5·255 = 127.5 -> 127 (truncated, like the peer).
        assert_eq!(blend(&img, &heat, 0.5).unwrap().as_raw(), &[127, 127, 0]);
        // 0.25·heat + 0.75·image: 0.75·255 = 191.25 -> 191; 0.25·255 = 63.75 -> 63.
        assert_eq!(blend(&img, &heat, 0.25).unwrap().as_raw(), &[191, 63, 0]);
    }

    #[test]
    fn peer_variant_divides_by_the_overlay_maximum() {
        // Image 0, heatmap 102 (0.4), α = 0.5: 0.2 everywhere -> / 0.2 -> 1 -> 255.
        let img = one([0, 0, 0]);
        let heat = one([102, 51, 0]);
        assert_eq!(blend(&img, &heat, 0.5).unwrap().as_raw(), &[51, 25, 0]);
        assert_eq!(blend_like_peer(&img, &heat, 0.5).unwrap().as_raw(), &[255, 127, 0]);
        // All black: no division by zero.
        assert_eq!(blend_like_peer(&img, &one([0, 0, 0]), 0.5).unwrap().as_raw(), &[0, 0, 0]);
    }

    #[test]
    fn bad_alpha_and_sizes_are_refused() {
        let img = one([1, 2, 3]);
        assert!(matches!(blend(&img, &img, 1.5), Err(RenderError::Alpha { .. })));
        assert!(matches!(blend(&img, &img, -0.1), Err(RenderError::Alpha { .. })));
        assert!(matches!(blend(&img, &img, f64::NAN), Err(RenderError::Alpha { .. })));
        let big = RgbImage::new(2, 1);
        assert!(matches!(blend(&img, &big, 0.5), Err(RenderError::Size { .. })));
    }
}
