//! Posterior predictions of a grid GP: on the grid itself through the eigenbasis, and at
//! arbitrary off-grid points through row-wise Kronecker contractions.
//!
//! With `α = (K + σ²I)⁻¹ y`, the mean at a point with per-dimension cross-covariance rows
//! `c_d` (`c_d[i] = k_d(x*_d, g_d,i)`) is `s ⟨α, c₁ ⊗ … ⊗ c_D⟩`, and the latent variance is
//! `s Π k_d(0) − s² Σ_j Π_d (Q_dᵀ c_d)[j_d]² / (Λ_j + σ²)`. Each point costs `O(N)` after
//! `O(Σ n_d²)` of small products.

use crate::kron::KronEig;
use crate::{Error, Float, Result};
use faer::MatRef;
use rayon::prelude::*;

/// `⟨t, v₁ ⊗ … ⊗ v_D⟩` for a C-order tensor `t`, contracting the last dimension first.
fn contract<T: Float>(t: &[T], vs: &[Vec<T>], scratch: &mut Vec<f64>) -> f64 {
    let d_last = vs.len() - 1;
    let n_last = vs[d_last].len();
    scratch.clear();
    scratch.extend(t.chunks(n_last).map(|c| {
        c.iter()
            .zip(&vs[d_last])
            .map(|(&a, &b)| a.to_f64() * b.to_f64())
            .sum::<f64>()
    }));
    for d in (0..d_last).rev() {
        let n = vs[d].len();
        let rows = scratch.len() / n;
        // scratch holds a C-order (rows × n) array; contract its last index with vs[d].
        for r in 0..rows {
            let mut s = 0.0;
            for i in 0..n {
                s += scratch[r * n + i] * vs[d][i].to_f64();
            }
            scratch[r] = s;
        }
        scratch.truncate(rows);
    }
    scratch[0]
}

/// Posterior mean and latent variance at off-grid points. `cross[d]` is `M × n_d`
/// (`k_d(x*_m,d, g_d,i)`), `prior_var` the prior variance `s Π k_d(0)` at each point (or one
/// value), `alpha` the grid's `(K + σ²I)⁻¹ y` (one right-hand side).
pub fn predict_points<T: Float>(
    eig: &KronEig<T>,
    scale: T,
    noise: f64,
    alpha: &[T],
    cross: &[MatRef<'_, T>],
    prior_var: f64,
    want_var: bool,
) -> Result<(Vec<T>, Vec<T>)> {
    let shape = eig.shape();
    if cross.len() != shape.len() || alpha.len() != eig.len() {
        return Err(Error::InvalidShape(
            "cross-covariances do not match the grid".into(),
        ));
    }
    let m = cross[0].nrows();
    for (c, &n) in cross.iter().zip(&shape) {
        if c.nrows() != m || c.ncols() != n {
            return Err(Error::InvalidShape(
                "cross-covariances do not match the grid".into(),
            ));
        }
    }
    let lam = eig.grid_eigenvalues(scale, None);
    let inv: Vec<T> = lam
        .iter()
        .map(|&l| T::ONE / (l + T::from_f64(noise)))
        .collect();
    let s = scale.to_f64();
    let out: Vec<(T, T)> = (0..m)
        .into_par_iter()
        .map_init(Vec::new, |scratch, p| {
            let rows: Vec<Vec<T>> = cross
                .iter()
                .map(|c| c.row(p).iter().copied().collect())
                .collect();
            let mean = s * contract(alpha, &rows, scratch);
            let var = if want_var {
                // (Q_dᵀ c_d)² per dimension, then ⟨1/(Λ+σ²), ⊗ p_d²⟩.
                let proj: Vec<Vec<T>> = rows
                    .iter()
                    .zip(&eig.q)
                    .map(|(c, q)| {
                        (0..q.ncols())
                            .map(|j| {
                                let v: f64 = (0..q.nrows())
                                    .map(|i| q[(i, j)].to_f64() * c[i].to_f64())
                                    .sum();
                                T::from_f64(v * v)
                            })
                            .collect()
                    })
                    .collect();
                (prior_var - s * s * contract(&inv, &proj, scratch)).max(0.0)
            } else {
                0.0
            };
            (T::from_f64(mean), T::from_f64(var))
        })
        .collect();
    Ok(out.into_iter().unzip())
}

/// Posterior mean `Q(Λ ∘ Qᵀα)` and latent variance `Σ_j Q_ij² Λ_j σ²/(Λ_j + σ²)` on the full
/// grid (homoscedastic noise). The variance form is non-negative by construction.
pub fn predict_grid<T: Float>(
    eig: &KronEig<T>,
    scale: T,
    noise: f64,
    alpha: &[T],
    batch: usize,
    want_var: bool,
) -> Result<(Vec<T>, Vec<T>)> {
    let n = eig.len();
    if batch == 0 || alpha.len() != n * batch {
        return Err(Error::InvalidShape("alpha does not match the grid".into()));
    }
    let lam = eig.grid_eigenvalues(scale, None);
    let mean = eig.sandwich(alpha, batch, |at| {
        at.par_chunks_mut(n).for_each(|c| {
            for (v, &l) in c.iter_mut().zip(&lam) {
                *v *= l;
            }
        })
    });
    let var = if want_var {
        let s2 = T::from_f64(noise);
        let w: Vec<T> = lam.iter().map(|&l| l * s2 / (l + s2)).collect();
        eig.squared_apply(&w)
    } else {
        vec![]
    };
    Ok((mean, var))
}
