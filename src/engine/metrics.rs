//! Faithfulness metrics of a map, computed with batched model runs.
//!
//! - Deletion and insertion AUC (Petsiuk et al., RISE, 2018): pixels are removed (set to the
//!   normalised tensor's zero) or inserted into a blurred copy (Gaussian, σ = 5 px, 11-tap
//!   kernel, as RISE's code) in order of decreasing saliency, in `STEPS` equal steps; the area
//!   under the class probability curve is the score (deletion: lower is better; insertion:
//!   higher is better).
//! - Average drop and increase in confidence (Chattopadhay et al., Grad-CAM++, 2018): the
//!   probability on the image multiplied by the map (in pixel space, the map upsampled to the
//!   input), compared with the probability on the full image.

use ndarray::{Array2, Array3, Array4, ArrayView2, ArrayView3, Axis};

use super::pipeline::{Engine, ExplainError, Loaded};
use crate::explanation::Metrics;
use crate::grad::ScoreKind;
use crate::model::{InputSpec, Layout};
use crate::scores::softmax;

/// Steps of the deletion/insertion curves (each one model run, batched).
pub const STEPS: usize = 32;

/// Pixel indices (row-major over `[H, W]`) from most to least salient; ties by index.
pub fn saliency_order(map: ArrayView2<'_, f32>) -> Vec<usize> {
    let flat: Vec<f32> = map.iter().copied().collect();
    let mut order: Vec<usize> = (0..flat.len()).collect();
    order.sort_by(|&a, &b| flat[b].total_cmp(&flat[a]).then(a.cmp(&b)));
    order
}

/// Trapezoidal area under `ys` sampled at equal steps over [0, 1].
pub fn auc(ys: &[f64]) -> f64 {
    if ys.len() < 2 {
        return ys.first().copied().unwrap_or(0.0);
    }
    let n = (ys.len() - 1) as f64;
    (ys.iter().sum::<f64>() - (ys[0] + ys[ys.len() - 1]) / 2.0) / n
}

/// Separable Gaussian blur of a `[C, H, W]` sample with zero padding (RISE's substrate).
pub fn blur_chw(x: ArrayView3<'_, f32>, sigma: f32, taps: usize) -> Array3<f32> {
    let half = (taps / 2) as isize;
    let k: Vec<f32> = (-half..=half).map(|i| (-((i * i) as f32) / (2.0 * sigma * sigma)).exp()).collect();
    let sum: f32 = k.iter().sum();
    let k: Vec<f32> = k.into_iter().map(|v| v / sum).collect();
    let (c, h, w) = x.dim();
    let mut tmp = Array3::<f32>::zeros((c, h, w));
    let mut out = Array3::<f32>::zeros((c, h, w));
    for ch in 0..c {
        for y in 0..h {
            for xx in 0..w {
                let mut acc = 0.0;
                for (t, kv) in k.iter().enumerate() {
                    let sx = xx as isize + t as isize - half;
                    if (0..w as isize).contains(&sx) {
                        acc += kv * x[[ch, y, sx as usize]];
                    }
                }
                tmp[[ch, y, xx]] = acc;
            }
        }
        for y in 0..h {
            for xx in 0..w {
                let mut acc = 0.0;
                for (t, kv) in k.iter().enumerate() {
                    let sy = y as isize + t as isize - half;
                    if (0..h as isize).contains(&sy) {
                        acc += kv * tmp[[ch, sy as usize, xx]];
                    }
                }
                out[[ch, y, xx]] = acc;
            }
        }
    }
    out
}

/// The deletion (from `x` towards `substrate`) or insertion (from `substrate` towards `x`)
/// sequence: `STEPS + 1` samples `[C, H, W]`, step `i` having the `i·n/STEPS` most salient
/// pixels taken from the other end.
pub fn perturbation_series(x: ArrayView3<'_, f32>, substrate: ArrayView3<'_, f32>, order: &[usize]) -> Array4<f32> {
    let (c, h, w) = x.dim();
    let n = h * w;
    let mut series = Array4::zeros((STEPS + 1, c, h, w));
    let mut cur = x.to_owned();
    let mut done = 0;
    for step in 0..=STEPS {
        let upto = step * n / STEPS;
        for &p in &order[done..upto] {
            let (y, xx) = (p / w, p % w);
            for ch in 0..c {
                cur[[ch, y, xx]] = substrate[[ch, y, xx]];
            }
        }
        done = upto;
        series.index_axis_mut(Axis(0), step).assign(&cur);
    }
    series
}

/// `[C,H,W]` view of a sample in the model's layout.
fn to_chw(x: &Array3<f32>, layout: Layout) -> Array3<f32> {
    match layout {
        Layout::Nchw => x.clone(),
        Layout::Nhwc => x.view().permuted_axes([2, 0, 1]).as_standard_layout().to_owned(),
    }
}

fn from_chw_batch(x: Array4<f32>, layout: Layout) -> Array4<f32> {
    match layout {
        Layout::Nchw => x,
        Layout::Nhwc => x.permuted_axes([0, 2, 3, 1]).as_standard_layout().to_owned(),
    }
}

/// The image multiplied by the map in pixel space, normalised like any input.
fn map_weighted_input(loaded: &Loaded, map_up: ArrayView2<'_, f32>, spec: &InputSpec) -> Array3<f32> {
    let mut view = loaded.view.clone();
    for (x, y, p) in view.enumerate_pixels_mut() {
        let m = map_up[[y as usize, x as usize]];
        for v in p.0.iter_mut() {
            *v = (f32::from(*v) * m) as u8;
        }
    }
    crate::imaging::normalize(&view, spec)
}

/// All four metrics for one image, class and map (normalised, at any resolution).
pub fn metrics(
    engine: &mut Engine,
    loaded: &Loaded,
    class: usize,
    map: ArrayView2<'_, f32>,
) -> Result<Metrics, ExplainError> {
    let spec = engine.model().card.input.clone();
    let (h, w) = (spec.height as usize, spec.width as usize);
    let map_up = crate::render::upsample_map(map, h, w);
    let order = saliency_order(map_up.view());
    let x = to_chw(&loaded.input, spec.layout);
    let zeros = Array3::zeros(x.dim());
    let blurred = blur_chw(x.view(), 5.0, 11);
    let deletion = perturbation_series(x.view(), zeros.view(), &order);
    let insertion = perturbation_series(blurred.view(), x.view(), &order);
    let masked = map_weighted_input(loaded, map_up.view(), &spec);
    let mut all = ndarray::concatenate(Axis(0), &[deletion.view(), insertion.view()]).expect("same sample shape");
    all = from_chw_batch(all, spec.layout);
    let all = ndarray::concatenate(Axis(0), &[all.view(), masked.view().insert_axis(Axis(0))]).expect("same shape");
    let scores = engine.score_inputs(all.view())?;
    let probs = probabilities(scores, engine.score_kind());
    let p: Vec<f64> = probs.column(class).iter().map(|&v| f64::from(v)).collect();
    let base = f64::from(loaded.scores.probabilities[class]);
    let p_masked = p[2 * (STEPS + 1)];
    Ok(Metrics {
        deletion_auc: auc(&p[..=STEPS]),
        insertion_auc: auc(&p[STEPS + 1..2 * (STEPS + 1)]),
        average_drop_pct: if base > 0.0 { ((base - p_masked).max(0.0) / base) * 100.0 } else { 0.0 },
        confidence_increased: p_masked > base,
    })
}

/// Class probabilities from the scores model's output.
fn probabilities(scores: Array2<f32>, kind: ScoreKind) -> Array2<f32> {
    match kind {
        ScoreKind::Prob => scores,
        ScoreKind::Logit => {
            let mut out = scores.clone();
            for (mut o, r) in out.outer_iter_mut().zip(scores.outer_iter()) {
                o.assign(&ndarray::Array1::from(softmax(&r.to_vec())));
            }
            out
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ndarray::array;

    #[test]
    fn auc_of_constant_and_linear_curves() {
        assert!((auc(&[1.0, 1.0, 1.0]) - 1.0).abs() < 1e-12);
        assert!((auc(&[1.0, 0.5, 0.0]) - 0.5).abs() < 1e-12);
        assert!((auc(&[0.0, 1.0]) - 0.5).abs() < 1e-12);
    }

    #[test]
    fn order_is_most_salient_first() {
        let m = array![[0.1, 0.9], [0.5, 0.9]];
        assert_eq!(saliency_order(m.view()), vec![1, 3, 2, 0]);
    }

    #[test]
    fn deletion_series_ends_at_substrate() {
        let x = Array3::from_elem((1, 2, 2), 1.0f32);
        let z = Array3::zeros((1, 2, 2));
        let s = perturbation_series(x.view(), z.view(), &[0, 1, 2, 3]);
        assert_eq!(s.index_axis(Axis(0), 0).sum(), 4.0);
        assert_eq!(s.index_axis(Axis(0), STEPS).sum(), 0.0);
        // Monotone: each step removes at least as much as the previous one.
        let sums: Vec<f32> = s.outer_iter().map(|v| v.sum()).collect();
        assert!(sums.windows(2).all(|w| w[1] <= w[0]));
    }

    #[test]
    fn blur_keeps_constants_away_from_borders_and_spreads_impulses() {
        let mut x = Array3::zeros((1, 21, 21));
        x[[0, 10, 10]] = 1.0;
        let b = blur_chw(x.view(), 5.0, 11);
        assert!((b.sum() - 1.0).abs() < 1e-5, "an impulse far from borders keeps its mass");
        assert!(b[[0, 10, 10]] < 0.02 && b[[0, 10, 10]] > b[[0, 10, 15]]);
    }
}
