//! Image resampling that reproduces Pillow's `Image.resize` bit for bit on 8-bit images.
//!
//! Models are trained and exported with Pillow-based pipelines (torchvision, timm, Keras
//! `load_img`), so the only way to give ONNX Runtime exactly the tensor the model saw at
//! training time is to resample the way Pillow does: a separable convolution whose kernel is
//! stretched by the scale factor when shrinking (antialiasing), coefficients rounded to 22-bit
//! fixed point, horizontal pass first over only the rows the vertical pass needs, and each
//! pass rounded and clamped back to `u8`. Pure functions, no I/O.

use image::RgbImage;

/// Resampling filters with Pillow's definitions (`src/libImaging/Resample.c`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Filter {
    /// Nearest neighbour (Pillow's `NEAREST`).
    Nearest,
    /// Triangle filter, support 1 (Pillow's `BILINEAR`).
    Bilinear,
    /// Keys cubic with a = -0.5, support 2 (Pillow's `BICUBIC`).
    Bicubic,
    /// Lanczos with 3 lobes (Pillow's `LANCZOS`).
    Lanczos,
}

impl Filter {
    fn support(self) -> f64 {
        match self {
            Filter::Nearest => 0.5,
            Filter::Bilinear => 1.0,
            Filter::Bicubic => 2.0,
            Filter::Lanczos => 3.0,
        }
    }

    fn weight(self, x: f64) -> f64 {
        match self {
            Filter::Nearest => {
                if (-0.5..0.5).contains(&x) {
                    1.0
                } else {
                    0.0
                }
            }
            Filter::Bilinear => {
                let x = x.abs();
                if x < 1.0 { 1.0 - x } else { 0.0 }
            }
            Filter::Bicubic => {
                const A: f64 = -0.5;
                let x = x.abs();
                if x < 1.0 {
                    ((A + 2.0) * x - (A + 3.0)) * x * x + 1.0
                } else if x < 2.0 {
                    (((x - 5.0) * x + 8.0) * x - 4.0) * A
                } else {
                    0.0
                }
            }
            Filter::Lanczos => {
                fn sinc(x: f64) -> f64 {
                    if x == 0.0 {
                        1.0
                    } else {
                        let x = x * std::f64::consts::PI;
                        x.sin() / x
                    }
                }
                if (-3.0..3.0).contains(&x) { sinc(x) * sinc(x / 3.0) } else { 0.0 }
            }
        }
    }
}

const PRECISION_BITS: u32 = 32 - 8 - 2;

/// Per output pixel: first input index, number of taps, and fixed-point taps.
struct Coefficients {
    bounds: Vec<(usize, usize)>,
    ksize: usize,
    taps: Vec<i32>,
}

/// Pillow's `precompute_coeffs` + `normalize_coeffs_8bpc` for one axis.
fn coefficients(in_size: usize, in0: f64, in1: f64, out_size: usize, filter: Filter) -> Coefficients {
    let scale = (in1 - in0) / out_size as f64;
    let filterscale = scale.max(1.0);
    let support = filter.support() * filterscale;
    let ksize = support.ceil() as usize * 2 + 1;
    let mut bounds = Vec::with_capacity(out_size);
    let mut taps = vec![0i32; out_size * ksize];
    let mut weights = vec![0f64; ksize];
    for xx in 0..out_size {
        let center = in0 + (xx as f64 + 0.5) * scale;
        let ss = 1.0 / filterscale;
        // C's (int) cast truncates toward zero; the clamp makes the sign moot.
        let xmin = ((center - support + 0.5) as i64).max(0) as usize;
        let xmax = ((center + support + 0.5) as i64).min(in_size as i64).max(xmin as i64) as usize - xmin;
        let mut sum = 0.0;
        for (x, w) in weights.iter_mut().enumerate().take(xmax) {
            *w = filter.weight((x as f64 + xmin as f64 - center + 0.5) * ss);
            sum += *w;
        }
        for x in 0..xmax {
            let w = if sum != 0.0 { weights[x] / sum } else { weights[x] };
            let fixed = w * f64::from(1u32 << PRECISION_BITS);
            taps[xx * ksize + x] = if w < 0.0 { (fixed - 0.5) as i32 } else { (fixed + 0.5) as i32 };
        }
        bounds.push((xmin, xmax));
    }
    Coefficients { bounds, ksize, taps }
}

#[inline]
fn clip8(acc: i32) -> u8 {
    (acc >> PRECISION_BITS).clamp(0, 255) as u8
}

/// Resize an RGB image to `width` x `height` exactly as Pillow's `Image.resize` does for
/// mode "RGB" with the given filter and no `box`/`reducing_gap`.
pub fn resize(src: &RgbImage, width: u32, height: u32, filter: Filter) -> RgbImage {
    resize_region(src, (0, 0, src.width(), src.height()), width, height, filter)
}

/// [`resize`] of the `(left, top, width, height)` region of `src`, as Pillow's `crop` then
/// `resize` (the same pixels), without copying the region out first: a model's crop of a
/// photo decoded at reduced scale is 1.7 MB, and the copy took a third of the resize's time.
pub fn resize_region(
    src: &RgbImage,
    region: (u32, u32, u32, u32),
    width: u32,
    height: u32,
    filter: Filter,
) -> RgbImage {
    let (left, top, in_w, in_h) = region;
    let whole = (left, top, in_w, in_h) == (0, 0, src.width(), src.height());
    let (out_w, out_h) = (width as usize, height as usize);
    let degenerate =
        (in_w as usize, in_h as usize) == (out_w, out_h) || out_w == 0 || out_h == 0 || in_w == 0 || in_h == 0;
    if filter == Filter::Nearest || degenerate {
        // Not the path of a model's input: crop, then the whole-image code.
        let cropped;
        let src = if whole {
            src
        } else {
            cropped = image::imageops::crop_imm(src, left, top, in_w, in_h).to_image();
            &cropped
        };
        if filter == Filter::Nearest {
            return resize_nearest(src, width, height);
        }
        return image::imageops::resize(src, width, height, image::imageops::FilterType::Nearest);
    }
    let (in_w, in_h) = (in_w as usize, in_h as usize);
    // The region's rows in `src`: `in_w` pixels from `left`, `stride` bytes apart.
    let (left, top, stride) = (left as usize, top as usize, src.width() as usize * 3);
    let horiz = coefficients(in_w, 0.0, in_w as f64, out_w, filter);
    let vert = coefficients(in_h, 0.0, in_h as f64, out_h, filter);
    let need_h = out_w != in_w;
    let need_v = out_h != in_h;

    // Horizontal pass over only the rows the vertical pass reads.
    let (row_first, row_last) = if need_v {
        let (first, _) = vert.bounds[0];
        let (last_start, last_len) = vert.bounds[out_h - 1];
        (first, last_start + last_len)
    } else {
        (0, in_h)
    };
    let src_px = src.as_raw();
    let region_row = |y: usize| &src_px[(top + y) * stride + left * 3..][..in_w * 3];
    let (mid, mid_w, mid_rows, row_offset) = if need_h {
        let rows = row_last - row_first;
        let mut mid = vec![0u8; rows * out_w * 3];
        for y in 0..rows {
            let in_row = region_row(y + row_first);
            let out_row = &mut mid[y * out_w * 3..(y + 1) * out_w * 3];
            for (xx, &(xmin, n)) in horiz.bounds.iter().enumerate() {
                let k = &horiz.taps[xx * horiz.ksize..xx * horiz.ksize + n];
                let mut acc = [1i32 << (PRECISION_BITS - 1); 3];
                for (x, &w) in k.iter().enumerate() {
                    let p = &in_row[(x + xmin) * 3..(x + xmin) * 3 + 3];
                    for c in 0..3 {
                        acc[c] += i32::from(p[c]) * w;
                    }
                }
                for c in 0..3 {
                    out_row[xx * 3 + c] = clip8(acc[c]);
                }
            }
        }
        (mid, out_w, rows, row_first)
    } else {
        ((0..in_h).flat_map(region_row).copied().collect(), in_w, in_h, 0)
    };
    if !need_v {
        return RgbImage::from_raw(width, height, mid).expect("buffer size matches dimensions");
    }
    debug_assert!(mid_rows >= 1);
    // Vertical pass row by row: whole rows are accumulated tap by tap (contiguous, so the
    // compiler vectorises it), the same sums in the same order as Pillow's per-pixel loop.
    let row_len = mid_w * 3;
    let mut out = vec![0u8; out_w * out_h * 3];
    let mut acc = vec![0i32; row_len];
    for (yy, &(ymin, n)) in vert.bounds.iter().enumerate() {
        let k = &vert.taps[yy * vert.ksize..yy * vert.ksize + n];
        let base = ymin - row_offset;
        acc.fill(1i32 << (PRECISION_BITS - 1));
        for (y, &w) in k.iter().enumerate() {
            let row = &mid[(base + y) * row_len..(base + y + 1) * row_len];
            for (a, &v) in acc.iter_mut().zip(row) {
                *a += i32::from(v) * w;
            }
        }
        for (o, &a) in out[yy * row_len..(yy + 1) * row_len].iter_mut().zip(&acc) {
            *o = clip8(a);
        }
    }
    RgbImage::from_raw(width, height, out).expect("buffer size matches dimensions")
}

/// Pillow's nearest-neighbour resize: source index `floor((x + 0.5) * scale)`.
fn resize_nearest(src: &RgbImage, width: u32, height: u32) -> RgbImage {
    let sx = f64::from(src.width()) / f64::from(width.max(1));
    let sy = f64::from(src.height()) / f64::from(height.max(1));
    RgbImage::from_fn(width, height, |x, y| {
        let ix = (((f64::from(x) + 0.5) * sx) as u32).min(src.width() - 1);
        let iy = (((f64::from(y) + 0.5) * sy) as u32).min(src.height() - 1);
        *src.get_pixel(ix, iy)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bicubic_kernel_is_interpolating() {
        assert_eq!(Filter::Bicubic.weight(0.0), 1.0);
        assert_eq!(Filter::Bicubic.weight(1.0), 0.0);
        assert_eq!(Filter::Bicubic.weight(2.0), 0.0);
        assert!((Filter::Bicubic.weight(0.5) - 0.5625).abs() < 1e-12);
        assert!((Filter::Bicubic.weight(1.5) + 0.0625).abs() < 1e-12);
    }

    #[test]
    fn constant_image_stays_constant() {
        let img = RgbImage::from_pixel(37, 23, image::Rgb([200, 10, 77]));
        for f in [Filter::Nearest, Filter::Bilinear, Filter::Bicubic, Filter::Lanczos] {
            for (w, h) in [(5, 9), (64, 64), (37, 11), (100, 23)] {
                let out = resize(&img, w, h, f);
                assert_eq!((out.width(), out.height()), (w, h));
                assert!(out.pixels().all(|p| p.0 == [200, 10, 77]), "{f:?} {w}x{h}");
            }
        }
    }

    #[test]
    fn a_region_resizes_as_its_crop_does() {
        let img = RgbImage::from_fn(61, 47, |x, y| image::Rgb([(x * 4) as u8, (y * 5) as u8, ((x * y) % 251) as u8]));
        for f in [Filter::Nearest, Filter::Bilinear, Filter::Bicubic, Filter::Lanczos] {
            for (region, (w, h)) in [((5, 3, 40, 40), (13, 13)), ((0, 7, 61, 30), (61, 11)), ((9, 0, 20, 47), (7, 47))]
            {
                let (l, t, rw, rh) = region;
                let crop = image::imageops::crop_imm(&img, l, t, rw, rh).to_image();
                assert_eq!(resize_region(&img, region, w, h, f), resize(&crop, w, h, f), "{f:?} {region:?}");
            }
        }
    }

    #[test]
    fn bilinear_halving_averages_pixel_pairs() {
        // Shrinking 4 -> 2 with a triangle filter stretched x2 covers taps at distances
        // 0.25 and 0.75 from the centre on each side: weights 3/8, 3/8, 1/8, 1/8 (edges clamp).
        let mut img = RgbImage::new(4, 1);
        for (x, v) in [0u8, 40, 80, 120].into_iter().enumerate() {
            img.put_pixel(x as u32, 0, image::Rgb([v, v, v]));
        }
        let out = resize(&img, 2, 1, Filter::Bilinear);
        // Left output: taps x=0,1,2 with weights .75,.75,.25 normalised by 1.75 ->
        // (0*.75 + 40*.75 + 80*.25)/1.75 = 28.57 -> 29.
        assert_eq!(out.get_pixel(0, 0).0[0], 29);
        assert_eq!(out.get_pixel(1, 0).0[0], 91);
    }
}
