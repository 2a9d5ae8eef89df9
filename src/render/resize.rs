//! Bilinear resampling of f32 maps, in the two alignment conventions the peer uses.
//!
//! - [`resize`]: OpenCV's `cv2.resize(map, (W, H), interpolation=cv2.INTER_LINEAR)`, which pytorch-grad-cam's
//!   `scale_cam_image` uses to bring a feature map to the image size. **Half-pixel centres**: output pixel `x`
//!   samples the source at `(x + 0.5) · src/dst - 0.5`; positions beyond the first or last source pixel clamp to
//!   it (edge replication). A 7×7 map scaled to 224×224 thus puts each feature cell's centre at the centre of its
//!   32×32 block, and the outer 16 pixels of each border are flat. This is the convention camscope uses to overlay
//!   maps on images.
//! - [`resize_align_corners`]: `torch.nn.UpsamplingBilinear2d`, i.e. `interpolate(..., mode="bilinear",
//!   align_corners=True)`, which pytorch-grad-cam's Score-CAM uses for its masks: the corner pixels of input and
//!   output coincide and output pixel `x` samples the source at `x · (src - 1)/(dst - 1)`.
//!
//! Both are separable with weights computed in f32 as the originals do, so they match to float rounding (~1e-7).
//! Downscaling with these (like OpenCV's INTER_LINEAR) samples, it does not average.

use ndarray::{Array2, ArrayView2};

/// One output index's two source indices and weights.
#[derive(Debug, Clone, Copy)]
struct Tap {
    i0: usize,
    i1: usize,
    w0: f32,
    w1: f32,
}

/// OpenCV `INTER_LINEAR` taps along one axis (`resize.cpp`, `resizeGeneric` coefficient set-up).
fn half_pixel_taps(src: usize, dst: usize) -> Vec<Tap> {
    // OpenCV stores the inverse scale and inverts it back: scale = 1 / (dst / src), in f64.
    let scale = 1.0 / (dst as f64 / src as f64);
    (0..dst)
        .map(|d| {
            let mut f = ((d as f64 + 0.5) * scale - 0.5) as f32;
            let mut s = f.floor() as isize;
            f -= s as f32;
            if s < 0 {
                (s, f) = (0, 0.0);
            }
            if s >= src as isize - 1 {
                (s, f) = (src as isize - 1, 0.0);
            }
            let i0 = s as usize;
            Tap { i0, i1: (i0 + 1).min(src - 1), w0: 1.0 - f, w1: f }
        })
        .collect()
}

/// PyTorch `align_corners=True` taps along one axis (`UpSample.h`, `compute_source_index_and_lambda`).
fn align_corners_taps(src: usize, dst: usize) -> Vec<Tap> {
    if src == dst {
        return (0..dst).map(|i| Tap { i0: i, i1: i, w0: 1.0, w1: 0.0 }).collect();
    }
    let scale = if dst > 1 { (src - 1) as f32 / (dst - 1) as f32 } else { 0.0 };
    (0..dst)
        .map(|d| {
            let real = scale * d as f32;
            let i0 = (real.floor() as usize).min(src - 1);
            let w1 = (real - i0 as f32).clamp(0.0, 1.0);
            let i1 = if i0 < src - 1 { i0 + 1 } else { i0 };
            Tap { i0, i1, w0: 1.0 - w1, w1 }
        })
        .collect()
}

/// Resize `map` (`[h, w]`) to `[height, width]` like OpenCV's `INTER_LINEAR` (half-pixel centres, edges clamped).
/// An empty source gives zeros.
pub fn resize(map: ArrayView2<'_, f32>, height: usize, width: usize) -> Array2<f32> {
    let (h, w) = map.dim();
    if h == 0 || w == 0 {
        return Array2::zeros((height, width));
    }
    if (h, w) == (height, width) {
        // OpenCV copies when the size does not change.
        return map.to_owned();
    }
    separable(map, &half_pixel_taps(h, height), &half_pixel_taps(w, width))
}

/// Resize `map` (`[h, w]`) to `[height, width]` like `torch.nn.UpsamplingBilinear2d` (`align_corners=True`).
/// An empty source gives zeros.
pub fn resize_align_corners(map: ArrayView2<'_, f32>, height: usize, width: usize) -> Array2<f32> {
    let (h, w) = map.dim();
    if h == 0 || w == 0 {
        return Array2::zeros((height, width));
    }
    separable(map, &align_corners_taps(h, height), &align_corners_taps(w, width))
}

/// Horizontal pass on the source rows, then the vertical blend of two rows (OpenCV's order of operations).
fn separable(map: ArrayView2<'_, f32>, rows: &[Tap], cols: &[Tap]) -> Array2<f32> {
    let horizontal: Vec<Vec<f32>> =
        map.outer_iter().map(|row| cols.iter().map(|t| row[t.i0] * t.w0 + row[t.i1] * t.w1).collect()).collect();
    let mut out = Array2::zeros((rows.len(), cols.len()));
    for (mut line, t) in out.outer_iter_mut().zip(rows) {
        let (r0, r1) = (&horizontal[t.i0], &horizontal[t.i1]);
        for (x, v) in line.iter_mut().enumerate() {
            *v = r0[x] * t.w0 + r1[x] * t.w1;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use ndarray::array;

    use super::*;

    fn close(x: &Array2<f32>, want: &Array2<f32>) {
        assert_eq!(x.dim(), want.dim());
        for (p, q) in x.iter().zip(want) {
            assert!((p - q).abs() < 1e-6, "{x:?}\nvs\n{want:?}");
        }
    }

    #[test]
    fn doubling_uses_half_pixel_centres_and_clamps_edges() {
        // 1x2 -> 1x4: sample positions -0.25, 0.25, 0.75, 1.25 -> clamp, 0.75a + 0.25b, 0.25a + 0.75b, clamp.
        let m = resize(array![[0.0, 4.0]].view(), 1, 4);
        close(&m, &array![[0.0, 1.0, 3.0, 4.0]]);
        let m = resize(array![[0.0], [8.0]].view(), 4, 1);
        close(&m, &array![[0.0], [2.0], [6.0], [8.0]]);
    }

    #[test]
    fn same_size_is_a_copy_and_constants_stay_constant() {
        let src = array![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0]];
        assert_eq!(resize(src.view(), 2, 3), src);
        let c = resize(Array2::from_elem((3, 5), 0.25).view(), 17, 11);
        assert!(c.iter().all(|&v| (v - 0.25).abs() < 1e-7));
        assert_eq!(resize(Array2::<f32>::zeros((0, 3)).view(), 2, 2), Array2::<f32>::zeros((2, 2)));
    }

    #[test]
    fn tripling_by_hand() {
        // 1x2 -> 1x6, scale 1/3: positions -1/3, 0, 1/3, 2/3, 1, 4/3.
        let m = resize(array![[3.0, 6.0]].view(), 1, 6);
        close(&m, &array![[3.0, 3.0, 4.0, 5.0, 6.0, 6.0]]);
    }

    #[test]
    fn align_corners_keeps_the_corners() {
        // 1x2 -> 1x4: positions 0, 1/3, 2/3, 1.
        let m = resize_align_corners(array![[0.0, 3.0]].view(), 1, 4);
        close(&m, &array![[0.0, 1.0, 2.0, 3.0]]);
        // 2x2 -> 3x3: the centre is the mean of the four.
        let m = resize_align_corners(array![[0.0, 2.0], [4.0, 6.0]].view(), 3, 3);
        close(&m, &array![[0.0, 1.0, 2.0], [2.0, 3.0, 4.0], [4.0, 5.0, 6.0]]);
        let m = resize_align_corners(array![[5.0]].view(), 2, 3);
        close(&m, &Array2::from_elem((2, 3), 5.0));
    }
}
