//! Incomplete grids and heteroscedastic noise: observations on a subset of the grid cells,
//! each with its own noise variance. Solves use preconditioned conjugate gradients with
//! Kronecker mat-vecs ([`crate::kron::pcg`]); the log-determinant is the approximation of
//! Wilson et al. (2014) ([`crate::kron::wilson_logdet`]), so the value returned here is an
//! **approximate** log marginal likelihood, and its gradient is the exact gradient of that
//! approximation (data-fit term exact up to the CG tolerance; log-determinant term through
//! first-order eigenvalue perturbation, `∂λ_j = q_jᵀ dK q_j`).

use super::likelihood::{factor_gradients, Lml};
use crate::kron::{ordered_sum, pcg, wilson_logdet, Incomplete, KronEig, PcgParams};
use crate::{invalid, Float, Interrupt, Result};

/// Result of [`lml_incomplete`].
#[derive(Clone, Debug)]
pub struct IncompleteLml<T: Float> {
    pub lml: Lml<T>,
    pub n_iter: usize,
    pub rel_residual: f64,
    pub converged: bool,
}

/// Approximate log marginal likelihood on the observed cells:
/// `−½ yᵀα − ½ logdet_Wilson − ½ n log 2π`, `α = (P K Pᵀ + D)⁻¹ y` by PCG. `d_noise` is the
/// derivative with respect to a noise variance added to every observed cell.
#[allow(clippy::too_many_arguments)]
pub fn lml_incomplete<T: Float>(
    eig: &KronEig<T>,
    scale: T,
    observed: &[usize],
    noise: &[T],
    y: &[T],
    params: PcgParams,
    grad: bool,
    stop: &dyn Interrupt,
) -> Result<IncompleteLml<T>> {
    let sys = Incomplete::new(eig, scale, observed, noise)?;
    let res = pcg(&sys, y, params, stop)?;
    // Non-convergence is reported (converged = false, the residual reached), not an error:
    // an optimizer may visit ill-conditioned hyperparameters on its way; callers warn.
    if !res.rel_residual.is_finite() {
        return Err(invalid!(
            "conjugate gradients broke down (non-finite residual)"
        ));
    }
    let m = observed.len();
    let big_n = eig.len();
    let nm = sys.noise_mean();
    let (logdet, mask) = wilson_logdet(eig, scale, m, nm)?;
    let fit = ordered_sum(m, |i| y[i].to_f64() * res.x[i].to_f64());
    let value = -0.5 * fit - 0.5 * logdet - 0.5 * m as f64 * (2.0 * std::f64::consts::PI).ln();
    let mut alpha = vec![T::ZERO; big_n];
    for (&i, &a) in observed.iter().zip(&res.x) {
        alpha[i] = a;
    }
    let mut lml = Lml {
        value,
        d_scale: 0.0,
        d_noise: 0.0,
        d_factor: vec![],
        alpha,
    };
    if grad {
        let r = m as f64 / big_n as f64;
        let lam = eig.grid_eigenvalues(scale, None);
        // Trace weights of the approximation: ∂/∂λ_j of log(rλ_j + σ̄²) on the selected j.
        let w: Vec<f64> = lam
            .iter()
            .zip(&mask)
            .map(|(&l, &keep)| if keep { r / (r * l.to_f64() + nm) } else { 0.0 })
            .collect();
        let at = eig.to_eigenbasis(&lml.alpha, 1);
        let s = scale.to_f64();
        let a2 = |j: usize| at[j].to_f64() * at[j].to_f64();
        let fit_l = ordered_sum(big_n, |j| lam[j].to_f64() * a2(j));
        let tr_l = ordered_sum(big_n, |j| lam[j].to_f64() * w[j]);
        lml.d_scale = if s > 0.0 {
            0.5 * (fit_l - tr_l) / s
        } else {
            0.0
        };
        let aa = ordered_sum(m, |i| res.x[i].to_f64() * res.x[i].to_f64());
        lml.d_noise = 0.5 * aa - 0.5 * ordered_sum(big_n, |j| w[j]) / r;
        lml.d_factor = factor_gradients(eig, scale, &at, 1, &w, 1.0);
    }
    Ok(IncompleteLml {
        lml,
        n_iter: res.n_iter,
        rel_residual: res.rel_residual,
        converged: res.converged,
    })
}
