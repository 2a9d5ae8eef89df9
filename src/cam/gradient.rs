//! The gradient methods: Grad-CAM, Grad-CAM++, XGrad-CAM, HiResCAM, LayerCAM.
//!
//! Each follows its pytorch-grad-cam 1.5.7 file (`grad_cam.py`, `grad_cam_plusplus.py`, `xgrad_cam.py`,
//! `hirescam.py`, `layer_cam.py`) formula for formula, including the small epsilons, so the maps match the peer's.
//! Sums accumulate in f64 (the peer sums f32), which moves results by f32 rounding only.

use ndarray::{Array1, Array2, ArrayView2, ArrayView3, Zip};

use super::{CamError, RawMap, same_shape, weighted_map};

/// Grad-CAM (Selvaraju et al. 2017): `w_c = mean(G_c)`, map `= ReLU(Σ_c w_c A_c)`.
pub fn grad_cam(a: ArrayView3<'_, f32>, g: ArrayView3<'_, f32>) -> Result<RawMap, CamError> {
    same_shape(&a, &g)?;
    weighted_map(a, grad_cam_weights(g).view())
}

/// Grad-CAM's channel weights: the spatial mean of each gradient channel.
pub fn grad_cam_weights(g: ArrayView3<'_, f32>) -> Array1<f32> {
    let n = (g.dim().1 * g.dim().2) as f64;
    g.outer_iter().map(|ch| if n == 0.0 { 0.0 } else { (sum64(ch) / n) as f32 }).collect()
}

/// Grad-CAM++ (Chattopadhay et al. 2018, eq. 19) as the peer computes it:
/// `α = G² / (2G² + ΣA·G³ + 1e-6)` where `G ≠ 0` (else 0), `w_c = Σ_ij ReLU(G)·α`, map `= ReLU(Σ_c w_c A_c)`.
///
/// Only `G > 0` contributes (`ReLU(G)` is 0 elsewhere); skipping those terms also avoids the peer's `0 · ∞ = NaN`
/// when a negative gradient makes the denominator vanish.
pub fn grad_cam_plus_plus(a: ArrayView3<'_, f32>, g: ArrayView3<'_, f32>) -> Result<RawMap, CamError> {
    same_shape(&a, &g)?;
    let weights: Array1<f32> = a
        .outer_iter()
        .zip(g.outer_iter())
        .map(|(ac, gc)| {
            let sum_a = sum64(ac) as f32;
            let mut w = 0.0f64;
            for &gv in gc.iter().filter(|&&gv| gv > 0.0) {
                let g2 = gv * gv;
                let g3 = g2 * gv;
                let alpha = g2 / (2.0 * g2 + sum_a * g3 + 1e-6);
                w += f64::from(gv * alpha);
            }
            w as f32
        })
        .collect();
    weighted_map(a, weights.view())
}

/// XGrad-CAM (Fu et al. 2020): `w_c = Σ_ij G·A / (Σ_ij A + 1e-7)`, map `= ReLU(Σ_c w_c A_c)`.
///
/// A channel whose denominator is exactly 0 (possible only with negative activations) gets weight 0 where the peer
/// would produce infinity or NaN.
pub fn xgrad_cam(a: ArrayView3<'_, f32>, g: ArrayView3<'_, f32>) -> Result<RawMap, CamError> {
    same_shape(&a, &g)?;
    let weights: Array1<f32> = a
        .outer_iter()
        .zip(g.outer_iter())
        .map(|(ac, gc)| {
            let denom = sum64(ac) as f32 + 1e-7;
            if denom == 0.0 {
                return 0.0;
            }
            let mut w = 0.0f64;
            Zip::from(&ac).and(&gc).for_each(|&av, &gv| w += f64::from(gv * av / denom));
            w as f32
        })
        .collect();
    weighted_map(a, weights.view())
}

/// HiResCAM (Draelos & Carin 2020): map `= ReLU(Σ_c G_c ⊙ A_c)`, no spatial averaging of the gradients.
pub fn hires_cam(a: ArrayView3<'_, f32>, g: ArrayView3<'_, f32>) -> Result<RawMap, CamError> {
    same_shape(&a, &g)?;
    Ok(elementwise(a, g, |gv| gv))
}

/// LayerCAM (Jiang et al. 2021): map `= ReLU(Σ_c ReLU(G_c) ⊙ A_c)`.
pub fn layer_cam(a: ArrayView3<'_, f32>, g: ArrayView3<'_, f32>) -> Result<RawMap, CamError> {
    same_shape(&a, &g)?;
    Ok(elementwise(a, g, |gv| gv.max(0.0)))
}

/// `ReLU(Σ_c f(G_c) ⊙ A_c)`.
fn elementwise(a: ArrayView3<'_, f32>, g: ArrayView3<'_, f32>, f: impl Fn(f32) -> f32) -> RawMap {
    let (_, h, w) = a.dim();
    let mut acc = Array2::<f64>::zeros((h, w));
    for (ac, gc) in a.outer_iter().zip(g.outer_iter()) {
        Zip::from(&mut acc).and(&ac).and(&gc).for_each(|s, &av, &gv| *s += f64::from(f(gv) * av));
    }
    RawMap::from_pre_relu(acc.mapv(|v| v as f32))
}

fn sum64(x: ArrayView2<'_, f32>) -> f64 {
    x.iter().map(|&v| f64::from(v)).sum()
}

#[cfg(test)]
mod tests {
    use ndarray::{Array3, array};

    use super::*;

    /// Two channels of 2x2, the hand-computed case every test below uses.
    fn case() -> (Array3<f32>, Array3<f32>) {
        let a = Array3::from_shape_vec((2, 2, 2), vec![1.0, 2.0, 3.0, 4.0, 0.0, 1.0, 0.0, 1.0]).unwrap();
        let g = Array3::from_shape_vec((2, 2, 2), vec![1.0, 1.0, 1.0, -1.0, -2.0, 2.0, 0.0, 4.0]).unwrap();
        (a, g)
    }

    fn close(x: &Array2<f32>, want: &Array2<f32>, tol: f32) {
        assert_eq!(x.dim(), want.dim());
        for (p, q) in x.iter().zip(want) {
            assert!((p - q).abs() <= tol, "{x:?} vs {want:?}");
        }
    }

    #[test]
    fn grad_cam_by_hand() {
        let (a, g) = case();
        // w = (mean(1,1,1,-1), mean(-2,2,0,4)) = (0.5, 1); 0.5*[1,2,3,4] + [0,1,0,1] = [0.5, 2, 1.5, 3]
        assert_eq!(grad_cam_weights(g.view()), array![0.5, 1.0]);
        let m = grad_cam(a.view(), g.view()).unwrap();
        assert_eq!(m.map, array![[0.5, 2.0], [1.5, 3.0]]);
        // Negative gradients (a contrastive seed) flip the map; the ReLU keeps none of it.
        let m = grad_cam(a.view(), (-&g).view()).unwrap();
        assert_eq!(m.map, Array2::<f32>::zeros((2, 2)));
        assert_eq!((m.pre_relu_min, m.pre_relu_max), (-3.0, -0.5));
    }

    #[test]
    fn grad_cam_plus_plus_by_hand() {
        let (a, g) = case();
        // Channel 0: ΣA = 10; positive gradients 1,1,1: α = 1/(2 + 10 + 1e-6) each, w0 = 3/(12 + 1e-6).
        // Channel 1: ΣA = 2; positive gradients 2 (α = 4/(8 + 16 + 1e-6)) and 4 (α = 16/(32 + 128 + 1e-6)):
        //            w1 = 2*4/24 + 4*16/160 = 1/3 + 0.4.
        let w0 = 3.0 / 12.0;
        let w1 = 1.0 / 3.0 + 0.4;
        let want = array![[w0, 2.0 * w0 + w1], [3.0 * w0, 4.0 * w0 + w1]];
        close(&grad_cam_plus_plus(a.view(), g.view()).unwrap().map, &want, 1e-6);
    }

    #[test]
    fn grad_cam_plus_plus_ignores_negative_gradients_even_with_a_vanishing_denominator() {
        // G = -1, ΣA = 2: the denominator 2G² + ΣA·G³ + 1e-6 is 1e-6, α = 1e6; ReLU(G) = 0 must still win.
        let a = Array3::from_shape_vec((1, 1, 2), vec![1.0, 1.0]).unwrap();
        let g = Array3::from_shape_vec((1, 1, 2), vec![-1.0, -1.0]).unwrap();
        let m = grad_cam_plus_plus(a.view(), g.view()).unwrap();
        assert_eq!(m.map, array![[0.0, 0.0]]);
        assert!(m.map.iter().all(|v| v.is_finite()));
    }

    #[test]
    fn xgrad_cam_by_hand() {
        let (a, g) = case();
        // w0 = (1 + 2 + 3 - 4) / 10 = 0.2; w1 = (0 + 2 + 0 + 4) / 2 = 3.
        let want = array![[0.2, 0.4 + 3.0], [0.6, 0.8 + 3.0]];
        close(&xgrad_cam(a.view(), g.view()).unwrap().map, &want, 1e-5);
        // A channel summing to -1e-7 has a zero denominator: weight 0, no NaN.
        let a = Array3::from_shape_vec((1, 1, 2), vec![-1e-7, 0.0]).unwrap();
        let g = Array3::from_shape_vec((1, 1, 2), vec![1.0, 1.0]).unwrap();
        let m = xgrad_cam(a.view(), g.view()).unwrap();
        assert!(m.map.iter().all(|v| v.is_finite()) && m.non_finite == 0);
    }

    #[test]
    fn hires_and_layer_cam_by_hand() {
        let (a, g) = case();
        // HiResCAM: [1*1 + 0*-2, 2*1 + 1*2, 3*1 + 0*0, 4*-1 + 1*4] = [1, 4, 3, 0]
        assert_eq!(hires_cam(a.view(), g.view()).unwrap().map, array![[1.0, 4.0], [3.0, 0.0]]);
        // LayerCAM: [1, 2 + 2, 3, 0 + 4] = [1, 4, 3, 4]
        assert_eq!(layer_cam(a.view(), g.view()).unwrap().map, array![[1.0, 4.0], [3.0, 4.0]]);
    }

    #[test]
    fn zero_gradients_give_an_all_zero_map() {
        let (a, _) = case();
        let g = Array3::zeros((2, 2, 2));
        for f in [grad_cam, grad_cam_plus_plus, xgrad_cam, hires_cam, layer_cam] {
            let m = f(a.view(), g.view()).unwrap();
            assert_eq!(m.map, Array2::<f32>::zeros((2, 2)));
            assert_eq!((m.pre_relu_min, m.pre_relu_max), (0.0, 0.0));
        }
    }
}
