//! PCA of text embeddings, e.g. to 64 dims to initialise LLM-ESR's
//! collaborative item embeddings.
//!
//! Same model as scikit-learn's `PCA(n_components=k)` (what LLM-ESR uses):
//! centre the rows, take the top-`k` eigenvectors of the covariance
//! (`XᵀX / (n − 1)`, computed in f64 with nalgebra, decomposed with
//! nalgebra's `SymmetricEigen`), project. Component signs are fixed so that
//! each component's largest-magnitude entry is positive, making the result
//! deterministic. For embedding matrices (`n` in the thousands, `d` ≤ 1024)
//! the `d × d` covariance is small, so this is both exact and quick.

use nalgebra::{DMatrix, SymmetricEigen};

use crate::embedder::Embeddings;
use crate::error::{Result, TextError};

/// A fitted PCA.
#[derive(Debug, Clone, PartialEq)]
pub struct Pca {
    /// Column means of the training matrix (length `d`).
    pub mean: Vec<f64>,
    /// `k` orthonormal components, each of length `d`, by decreasing variance.
    pub components: Vec<Vec<f64>>,
    /// Variance along each component (eigenvalues of the covariance).
    pub explained_variance: Vec<f64>,
    /// `explained_variance / total variance`.
    pub explained_variance_ratio: Vec<f64>,
}

impl Pca {
    /// Fits `k` components to the rows of `x`.
    pub fn fit(x: &Embeddings, k: usize) -> Result<Self> {
        let (n, d) = (x.rows, x.dim);
        if n < 2 {
            return Err(TextError::Pca(format!("needs at least 2 rows, got {n}")));
        }
        if k == 0 || k > d || k > n {
            return Err(TextError::Pca(format!(
                "cannot take {k} components of a {n}×{d} matrix"
            )));
        }
        if let Some(i) = x.data.iter().position(|v| !v.is_finite()) {
            return Err(TextError::Pca(format!(
                "value at row {}, column {} is not finite",
                i / d,
                i % d
            )));
        }
        let _span = tracing::debug_span!("pca", n, d, k).entered();
        let mut m = DMatrix::<f64>::from_row_iterator(n, d, x.data.iter().map(|&v| v as f64));
        let mean: Vec<f64> = (0..d).map(|j| m.column(j).mean()).collect();
        for (j, mu) in mean.iter().enumerate() {
            m.column_mut(j).add_scalar_mut(-mu);
        }
        let cov = m.tr_mul(&m) / (n as f64 - 1.0); // [d, d]
        let eig = SymmetricEigen::new(cov);
        let total: f64 = eig.eigenvalues.iter().map(|v| v.max(0.0)).sum();
        let mut order: Vec<usize> = (0..d).collect();
        order.sort_by(|&a, &b| eig.eigenvalues[b].total_cmp(&eig.eigenvalues[a]));
        let mut components = Vec::with_capacity(k);
        let mut explained_variance = Vec::with_capacity(k);
        for &c in order.iter().take(k) {
            let mut v: Vec<f64> = eig.eigenvectors.column(c).iter().copied().collect();
            let big = v
                .iter()
                .copied()
                .max_by(|a, b| a.abs().total_cmp(&b.abs()))
                .unwrap_or(1.0);
            if big < 0.0 {
                v.iter_mut().for_each(|x| *x = -*x);
            }
            components.push(v);
            explained_variance.push(eig.eigenvalues[c].max(0.0));
        }
        let explained_variance_ratio = explained_variance
            .iter()
            .map(|v| if total > 0.0 { v / total } else { 0.0 })
            .collect();
        Ok(Self {
            mean,
            components,
            explained_variance,
            explained_variance_ratio,
        })
    }

    /// Projects rows onto the components: `rows × k`.
    pub fn transform(&self, x: &Embeddings) -> Result<Embeddings> {
        let d = self.mean.len();
        if x.dim != d {
            return Err(TextError::DimensionMismatch {
                context: "PCA input".into(),
                expected: d,
                found: x.dim,
            });
        }
        let k = self.components.len();
        let mut data = Vec::with_capacity(x.rows * k);
        for row in x.iter_rows() {
            for c in &self.components {
                let dot: f64 = row
                    .iter()
                    .zip(c)
                    .zip(&self.mean)
                    .map(|((&v, &w), &mu)| (v as f64 - mu) * w)
                    .sum();
                data.push(dot as f32);
            }
        }
        Ok(Embeddings {
            rows: x.rows,
            dim: k,
            data,
        })
    }
}

/// Fits and applies PCA: the `rows × k` projection and the fitted model.
pub fn pca(x: &Embeddings, k: usize) -> Result<(Embeddings, Pca)> {
    let p = Pca::fit(x, k)?;
    let y = p.transform(x)?;
    Ok((y, p))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Deterministic pseudo-random numbers (xorshift), no extra dependency.
    fn noise(seed: &mut u64) -> f64 {
        *seed ^= *seed << 13;
        *seed ^= *seed >> 7;
        *seed ^= *seed << 17;
        (*seed >> 11) as f64 / (1u64 << 53) as f64 - 0.5
    }

    /// Rows = a few latent directions with decreasing scales, plus small noise.
    fn data(n: usize, d: usize) -> Embeddings {
        let mut s = 0x9E3779B97F4A7C15u64;
        let dirs: Vec<Vec<f64>> = (0..4)
            .map(|_| (0..d).map(|_| noise(&mut s)).collect())
            .collect();
        let scales = [8.0, 4.0, 2.0, 1.0];
        let mut out = Vec::with_capacity(n * d);
        for _ in 0..n {
            let z: Vec<f64> = scales.iter().map(|sc| sc * noise(&mut s)).collect();
            #[allow(clippy::needless_range_loop)] // j indexes every direction
            for j in 0..d {
                let v: f64 = z.iter().zip(&dirs).map(|(zq, dq)| zq * dq[j]).sum::<f64>()
                    + 0.01 * noise(&mut s)
                    + 3.0;
                out.push(v as f32);
            }
        }
        Embeddings {
            rows: n,
            dim: d,
            data: out,
        }
    }

    #[test]
    fn components_orthonormal_variance_sorted() {
        let x = data(500, 24);
        let (y, p) = pca(&x, 6).unwrap();
        assert_eq!((y.rows, y.dim), (500, 6));
        for a in 0..6 {
            for b in 0..6 {
                let dot: f64 = p.components[a]
                    .iter()
                    .zip(&p.components[b])
                    .map(|(u, v)| u * v)
                    .sum();
                let want = if a == b { 1.0 } else { 0.0 };
                assert!((dot - want).abs() < 1e-9, "<c{a}, c{b}> = {dot}");
            }
        }
        for w in p.explained_variance.windows(2) {
            assert!(w[0] >= w[1], "{:?}", p.explained_variance);
        }
        // Four latent directions carry nearly all the variance.
        let top4: f64 = p.explained_variance_ratio[..4].iter().sum();
        assert!(top4 > 0.999, "{top4}");
        assert!(p.explained_variance_ratio.iter().sum::<f64>() <= 1.0 + 1e-9);
        // The projection's per-column variance equals the explained variance,
        // and its columns are centred.
        for c in 0..6 {
            let col: Vec<f64> = (0..y.rows).map(|i| y.row(i)[c] as f64).collect();
            let mean = col.iter().sum::<f64>() / col.len() as f64;
            let var = col.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (col.len() - 1) as f64;
            assert!(mean.abs() < 1e-3, "mean {mean}");
            let ev = p.explained_variance[c];
            assert!((var - ev).abs() <= 1e-3 * ev.max(1e-3), "{var} vs {ev}");
        }
    }

    #[test]
    fn deterministic_signs() {
        let x = data(100, 10);
        let a = Pca::fit(&x, 3).unwrap();
        let b = Pca::fit(&x, 3).unwrap();
        assert_eq!(a, b);
        for c in &a.components {
            let big = c
                .iter()
                .copied()
                .max_by(|u, v| u.abs().total_cmp(&v.abs()))
                .unwrap();
            assert!(big > 0.0);
        }
    }

    #[test]
    fn bad_inputs() {
        let x = data(10, 4);
        assert!(Pca::fit(&x, 5).is_err());
        assert!(Pca::fit(&x, 0).is_err());
        let one = Embeddings {
            rows: 1,
            dim: 4,
            data: vec![0.0; 4],
        };
        assert!(Pca::fit(&one, 1).is_err());
        let mut nan = x.clone();
        nan.data[5] = f32::NAN;
        let e = Pca::fit(&nan, 2).unwrap_err().to_string();
        assert!(e.contains("row 1, column 1"), "{e}");
        let p = Pca::fit(&x, 2).unwrap();
        let wrong = Embeddings {
            rows: 1,
            dim: 3,
            data: vec![0.0; 3],
        };
        assert!(p.transform(&wrong).is_err());
    }
}
