//! The one piece of linear algebra Eigen-CAM needs: the eigenvalues and eigenvectors of a small symmetric matrix.
//!
//! Householder reduction to tridiagonal form followed by the implicit QL algorithm (EISPACK's `tred2`/`tql2`, as
//! in the public-domain JAMA library), in f64. O(n³) with a small constant and no convergence surprises, unlike
//! power iteration when the two leading eigenvalues are close; n is min(h·w, C), 49 for a 7×7 feature map. Written
//! here rather than pulling a linear-algebra crate for one function.

/// Eigen-decomposition of a symmetric `n × n` matrix (row-major `a`, only symmetric input is meaningful).
/// Returns the eigenvalues (unsorted) and the eigenvectors as the columns of a row-major `n × n` matrix.
pub(crate) fn symmetric_eigen(a: &[f64], n: usize) -> (Vec<f64>, Vec<f64>) {
    assert_eq!(a.len(), n * n, "matrix is not n x n");
    if n == 0 {
        return (Vec::new(), Vec::new());
    }
    let mut v = a.to_vec();
    let mut d = vec![0.0; n];
    let mut e = vec![0.0; n];
    tred2(&mut v, &mut d, &mut e, n);
    tql2(&mut v, &mut d, &mut e, n);
    (d, v)
}

/// Householder tridiagonalisation: on return `d` is the diagonal, `e[1..]` the sub-diagonal, `v` the
/// accumulated orthogonal transformation.
fn tred2(v: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize) {
    let at = |i: usize, j: usize| i * n + j;
    for j in 0..n {
        d[j] = v[at(n - 1, j)];
    }
    for i in (1..n).rev() {
        let scale: f64 = d[..i].iter().map(|x| x.abs()).sum();
        let mut h = 0.0;
        if scale == 0.0 {
            e[i] = d[i - 1];
            for j in 0..i {
                d[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
                v[at(j, i)] = 0.0;
            }
        } else {
            for dk in &mut d[..i] {
                *dk /= scale;
                h += *dk * *dk;
            }
            let mut f = d[i - 1];
            let mut g = h.sqrt();
            if f > 0.0 {
                g = -g;
            }
            e[i] = scale * g;
            h -= f * g;
            d[i - 1] = f - g;
            e[..i].fill(0.0);
            for j in 0..i {
                f = d[j];
                v[at(j, i)] = f;
                g = e[j] + v[at(j, j)] * f;
                for k in j + 1..i {
                    g += v[at(k, j)] * d[k];
                    e[k] += v[at(k, j)] * f;
                }
                e[j] = g;
            }
            f = 0.0;
            for j in 0..i {
                e[j] /= h;
                f += e[j] * d[j];
            }
            let hh = f / (h + h);
            for j in 0..i {
                e[j] -= hh * d[j];
            }
            for j in 0..i {
                f = d[j];
                g = e[j];
                for k in j..i {
                    v[at(k, j)] -= f * e[k] + g * d[k];
                }
                d[j] = v[at(i - 1, j)];
                v[at(i, j)] = 0.0;
            }
        }
        d[i] = h;
    }
    for i in 0..n - 1 {
        v[at(n - 1, i)] = v[at(i, i)];
        v[at(i, i)] = 1.0;
        let h = d[i + 1];
        if h != 0.0 {
            for k in 0..=i {
                d[k] = v[at(k, i + 1)] / h;
            }
            for j in 0..=i {
                let g: f64 = (0..=i).map(|k| v[at(k, i + 1)] * v[at(k, j)]).sum();
                for k in 0..=i {
                    v[at(k, j)] -= g * d[k];
                }
            }
        }
        for k in 0..=i {
            v[at(k, i + 1)] = 0.0;
        }
    }
    for j in 0..n {
        d[j] = v[at(n - 1, j)];
        v[at(n - 1, j)] = 0.0;
    }
    v[at(n - 1, n - 1)] = 1.0;
    e[0] = 0.0;
}

/// Implicit QL iterations on the tridiagonal matrix, accumulating the rotations into `v`.
fn tql2(v: &mut [f64], d: &mut [f64], e: &mut [f64], n: usize) {
    // Far more than QL needs (about two per eigenvalue); only a guard against non-finite input looping forever.
    const MAX_ITERATIONS: usize = 100;
    let at = |i: usize, j: usize| i * n + j;
    for i in 1..n {
        e[i - 1] = e[i];
    }
    e[n - 1] = 0.0;
    let mut f = 0.0;
    let mut tst1: f64 = 0.0;
    let eps = f64::EPSILON;
    for l in 0..n {
        tst1 = tst1.max(d[l].abs() + e[l].abs());
        let mut m = l;
        while m < n - 1 && e[m].abs() > eps * tst1 {
            m += 1;
        }
        if m > l {
            for _ in 0..MAX_ITERATIONS {
                let mut g = d[l];
                let mut p = (d[l + 1] - g) / (2.0 * e[l]);
                let mut r = p.hypot(1.0);
                if p < 0.0 {
                    r = -r;
                }
                d[l] = e[l] / (p + r);
                d[l + 1] = e[l] * (p + r);
                let dl1 = d[l + 1];
                let mut h = g - d[l];
                for di in &mut d[l + 2..n] {
                    *di -= h;
                }
                f += h;
                p = d[m];
                let (mut c, mut c2, mut c3) = (1.0, 1.0, 1.0);
                let el1 = e[l + 1];
                let (mut s, mut s2) = (0.0, 0.0);
                for i in (l..m).rev() {
                    c3 = c2;
                    c2 = c;
                    s2 = s;
                    g = c * e[i];
                    h = c * p;
                    r = p.hypot(e[i]);
                    e[i + 1] = s * r;
                    s = e[i] / r;
                    c = p / r;
                    p = c * d[i] - s * g;
                    d[i + 1] = h + s * (c * g + s * d[i]);
                    for k in 0..n {
                        h = v[at(k, i + 1)];
                        v[at(k, i + 1)] = s * v[at(k, i)] + c * h;
                        v[at(k, i)] = c * v[at(k, i)] - s * h;
                    }
                }
                p = -s * s2 * c3 * el1 * e[l] / dl1;
                e[l] = s * p;
                d[l] = c * p;
                if e[l].abs() <= eps * tst1 {
                    break;
                }
            }
        }
        d[l] += f;
        e[l] = 0.0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Check `A v = λ v` for every pair and that the vectors are orthonormal.
    fn check(a: &[f64], n: usize) -> Vec<f64> {
        let (d, v) = symmetric_eigen(a, n);
        for j in 0..n {
            for i in 0..n {
                let av: f64 = (0..n).map(|k| a[i * n + k] * v[k * n + j]).sum();
                assert!((av - d[j] * v[i * n + j]).abs() < 1e-9, "A v != λ v for eigenpair {j}");
            }
            for k in 0..n {
                let dot: f64 = (0..n).map(|i| v[i * n + j] * v[i * n + k]).sum();
                let want = if j == k { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-9, "eigenvectors {j} and {k} are not orthonormal");
            }
        }
        let mut d = d;
        d.sort_by(f64::total_cmp);
        d
    }

    #[test]
    fn two_by_two_by_hand() {
        // [[2, 1], [1, 2]] has eigenvalues 1 and 3.
        let d = check(&[2.0, 1.0, 1.0, 2.0], 2);
        assert!((d[0] - 1.0).abs() < 1e-12 && (d[1] - 3.0).abs() < 1e-12);
    }

    #[test]
    fn known_spectrum_and_degenerate_cases() {
        // Tridiagonal [-1, 2, -1] of size 5: eigenvalues 2 - 2 cos(kπ/6), k = 1..5.
        let n = 5;
        let mut a = vec![0.0; n * n];
        for i in 0..n {
            a[i * n + i] = 2.0;
            if i + 1 < n {
                a[i * n + i + 1] = -1.0;
                a[(i + 1) * n + i] = -1.0;
            }
        }
        let d = check(&a, n);
        for (k, dk) in d.iter().enumerate() {
            let want = 2.0 - 2.0 * ((k + 1) as f64 * std::f64::consts::PI / 6.0).cos();
            assert!((dk - want).abs() < 1e-12, "{d:?}");
        }
        // Repeated eigenvalues, a zero matrix, a diagonal one and 1x1.
        assert_eq!(check(&[0.0; 9], 3), vec![0.0; 3]);
        let d = check(&[3.0, 0.0, 0.0, 0.0, 3.0, 0.0, 0.0, 0.0, 1.0], 3);
        assert!((d[0] - 1.0).abs() < 1e-12 && (d[2] - 3.0).abs() < 1e-12);
        assert_eq!(check(&[7.0], 1), vec![7.0]);
        assert_eq!(symmetric_eigen(&[], 0), (vec![], vec![]));
    }

    #[test]
    fn gram_matrix_of_random_data() {
        // A rank-3 Gram matrix of size 8 built from a fixed pseudo-random sequence.
        let mut x = 1u64;
        let mut rnd = || {
            x = x.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (x >> 11) as f64 / (1u64 << 53) as f64 - 0.5
        };
        let cols: Vec<[f64; 3]> = (0..8).map(|_| [rnd(), rnd(), rnd()]).collect();
        let mut a = vec![0.0; 64];
        for i in 0..8 {
            for j in 0..8 {
                a[i * 8 + j] = (0..3).map(|k| cols[i][k] * cols[j][k]).sum();
            }
        }
        let d = check(&a, 8);
        assert!(d[..5].iter().all(|v| v.abs() < 1e-12), "rank 3 means five zero eigenvalues: {d:?}");
        let trace: f64 = (0..8).map(|i| a[i * 9]).sum();
        assert!((d.iter().sum::<f64>() - trace).abs() < 1e-12);
    }
}
