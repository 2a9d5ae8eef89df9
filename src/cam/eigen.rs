//! Eigen-CAM (Muhammad & Yeasin 2020): the activations projected on their first principal component.
//!
//! As pytorch-grad-cam 1.5.7 computes it (`utils/svd_on_activations.py::get_2d_projection`): NaN activations
//! become 0; the `[C, h, w]` activations are read as `h·w` samples of `C` features, centred per channel (the
//! mean over positions is subtracted); the map is the centred data times the first right singular vector, that
//! is `σ₁·u₁` over the positions. camscope gets `σ₁` and `u₁` from the eigen-decomposition of the smaller Gram
//! matrix (`h·w × h·w` or `C × C`), in f64.
//!
//! The sign of a singular vector is arbitrary: `(u, v)` and `(-u, -v)` are equally valid, and which one NumPy's
//! LAPACK returns depends on the library and the data. Because the ReLU follows, the two signs give different
//! maps (the bright and the dark half of the projection). The peer keeps whatever LAPACK returns; camscope fixes
//! the sign deterministically, see [`eigen_projection`].

use ndarray::{Array2, ArrayView3};

use super::RawMap;
use super::linalg::symmetric_eigen;

/// Eigen-CAM's map: `ReLU` of [`eigen_projection`]. It ignores the class (no gradients).
pub fn eigen_cam(a: ArrayView3<'_, f32>) -> RawMap {
    RawMap::from_pre_relu(eigen_projection(a))
}

/// The first-principal-component projection `[h, w]` before the ReLU (the peer's `get_2d_projection`), with
/// camscope's sign convention: the projection points the way the activations grow, i.e. its correlation with the
/// total activation `Σ_c A_c` over the positions is not negative. Post-ReLU feature maps are large where the
/// network sees something, so this keeps the salient side positive, where the peer's LAPACK sign is a coin toss.
pub fn eigen_projection(a: ArrayView3<'_, f32>) -> Array2<f32> {
    let (c, h, w) = a.dim();
    let n = h * w;
    if c == 0 || n == 0 {
        return Array2::zeros((h, w));
    }
    // x[p][k]: position p, channel k, centred over positions; f64 throughout.
    let clean = |v: f32| if v.is_nan() { 0.0 } else { f64::from(v) };
    let mut x = vec![0.0f64; n * c];
    for (k, ch) in a.outer_iter().enumerate() {
        let mean = ch.iter().map(|&v| clean(v)).sum::<f64>() / n as f64;
        for (p, &v) in ch.iter().enumerate() {
            x[p * c + k] = clean(v) - mean;
        }
    }
    let mut projection = if n <= c {
        // Gram over positions: X Xᵀ = U Σ² Uᵀ; projection σ₁ u₁.
        let gram = gram(n, c, |i, j, k| x[i * c + k] * x[j * c + k]);
        let (values, vectors) = symmetric_eigen(&gram, n);
        let top = argmax(&values);
        let sigma = values[top].max(0.0).sqrt();
        (0..n).map(|p| sigma * vectors[p * n + top]).collect::<Vec<f64>>()
    } else {
        // Gram over channels: Xᵀ X = V Σ² Vᵀ; projection X v₁.
        let gram = gram(c, n, |i, j, p| x[p * c + i] * x[p * c + j]);
        let (values, vectors) = symmetric_eigen(&gram, c);
        let top = argmax(&values);
        (0..n).map(|p| (0..c).map(|k| x[p * c + k] * vectors[k * c + top]).sum()).collect()
    };
    // Sign: positive correlation with the total activation per position.
    let total: Vec<f64> = (0..n).map(|p| a.iter().skip(p).step_by(n).map(|&v| clean(v)).sum()).collect();
    if projection.iter().zip(&total).map(|(p, t)| p * t).sum::<f64>() < 0.0 {
        projection.iter_mut().for_each(|p| *p = -*p);
    }
    Array2::from_shape_vec((h, w), projection.into_iter().map(|v| v as f32).collect()).expect("h*w values")
}

/// Symmetric `m × m` matrix with entries `Σ_{k<len} f(i, j, k)`.
fn gram(m: usize, len: usize, f: impl Fn(usize, usize, usize) -> f64) -> Vec<f64> {
    let mut g = vec![0.0; m * m];
    for i in 0..m {
        for j in i..m {
            let s: f64 = (0..len).map(|k| f(i, j, k)).sum();
            g[i * m + j] = s;
            g[j * m + i] = s;
        }
    }
    g
}

fn argmax(values: &[f64]) -> usize {
    values.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map_or(0, |(i, _)| i)
}

#[cfg(test)]
mod tests {
    use ndarray::{Array3, array};

    use super::*;

    #[test]
    fn rank_one_activations_project_onto_their_pattern() {
        // Both channels are multiples of one spatial pattern s = [0, 1, 2, 3]: A_0 = s, A_1 = 2s.
        // Centred: s - 1.5 = [-1.5, -0.5, 0.5, 1.5] times (1, 2); first component v = (1, 2)/√5,
        // projection = (s - 1.5)·√5.
        let a = Array3::from_shape_vec((2, 2, 2), vec![0.0, 1.0, 2.0, 3.0, 0.0, 2.0, 4.0, 6.0]).unwrap();
        let p = eigen_projection(a.view());
        let r5 = 5f32.sqrt();
        let want = array![[-1.5 * r5, -0.5 * r5], [0.5 * r5, 1.5 * r5]];
        for (x, y) in p.iter().zip(&want) {
            assert!((x - y).abs() < 1e-5, "{p:?}");
        }
        // After the ReLU only the bright half remains.
        let m = eigen_cam(a.view());
        assert_eq!(m.map[[0, 0]], 0.0);
        assert!((m.map[[1, 1]] - 1.5 * r5).abs() < 1e-5);
    }

    #[test]
    fn the_sign_follows_the_activations_whichever_gram_matrix_is_used() {
        // One channel per position (C = 9 > h·w = 4) and few channels (C = 1 < h·w = 4).
        let mut wide = Array3::<f32>::zeros((9, 2, 2));
        for k in 0..9 {
            for (p, v) in [0.0, 1.0, 5.0, 2.0].iter().enumerate() {
                wide[[k, p / 2, p % 2]] = v * (1.0 + k as f32);
            }
        }
        let narrow = Array3::from_shape_vec((1, 2, 2), vec![0.0, 1.0, 5.0, 2.0]).unwrap();
        for a in [wide, narrow] {
            let p = eigen_projection(a.view());
            // The brightest position (5) gets the largest projection.
            assert!(p[[1, 0]] > 0.0 && p.iter().all(|&v| v <= p[[1, 0]]), "{p:?}");
        }
        // Negated activations flip the direction of growth, and the map with it.
        let a = Array3::from_shape_vec((1, 1, 3), vec![-1.0, 0.0, -4.0]).unwrap();
        let p = eigen_projection(a.view());
        assert!(p[[0, 1]] > 0.0 && p[[0, 2]] < 0.0, "{p:?}");
    }

    #[test]
    fn projection_matches_the_svd_definition() {
        // Three channels, 2x3 positions. σ₁u₁ is the eigenvector of X Xᵀ (X: positions × centred channels) for its
        // largest eigenvalue λ = σ₁², scaled to norm σ₁. Checked independently of the solver: X Xᵀ p = |p|² p, and
        // |p|² equals the largest eigenvalue found by plain power iteration.
        let a = Array3::from_shape_vec(
            (3, 2, 3),
            vec![1.0, 0.0, 2.0, 4.0, 1.0, 0.5, 0.0, 3.0, 1.0, 1.0, 2.0, 0.0, 2.0, 2.0, 0.0, 5.0, 1.0, 1.0],
        )
        .unwrap();
        let p: Vec<f64> = eigen_projection(a.view()).iter().map(|&v| f64::from(v)).collect();
        let channels: Vec<Vec<f64>> =
            a.outer_iter().map(|ch| ch.iter().map(|&v| f64::from(v)).collect::<Vec<_>>()).collect();
        let centred: Vec<Vec<f64>> =
            channels.iter().map(|ch| ch.iter().map(|v| v - ch.iter().sum::<f64>() / 6.0).collect()).collect();
        let xxt = |v: &[f64]| -> Vec<f64> {
            (0..6).map(|i| (0..6).map(|j| centred.iter().map(|ch| ch[i] * ch[j]).sum::<f64>() * v[j]).sum()).collect()
        };
        let lambda: f64 = p.iter().map(|v| v * v).sum();
        for (got, want) in xxt(&p).iter().zip(&p) {
            assert!((got - lambda * want).abs() < 1e-4 * lambda, "not an eigenvector");
        }
        let mut v = vec![1.0, 0.3, -0.2, 0.7, 0.1, -0.5];
        let mut top = 0.0;
        for _ in 0..500 {
            let w = xxt(&v);
            top = w.iter().map(|x| x * x).sum::<f64>().sqrt();
            v = w.iter().map(|x| x / top).collect();
        }
        assert!((lambda - top).abs() < 1e-4 * top, "λ = {lambda}, power iteration {top}");
    }

    #[test]
    fn constant_or_nan_activations_give_an_all_zero_map() {
        let a = Array3::from_elem((4, 3, 3), 2.5f32);
        assert_eq!(eigen_cam(a.view()).map, Array2::<f32>::zeros((3, 3)));
        let mut a = Array3::<f32>::zeros((2, 2, 2));
        a[[0, 0, 0]] = f32::NAN;
        let m = eigen_cam(a.view());
        assert!(m.map.iter().all(|v| *v == 0.0) && m.non_finite == 0);
        assert_eq!(eigen_projection(Array3::<f32>::zeros((0, 2, 2)).view()), Array2::<f32>::zeros((2, 2)));
    }
}
