//! Gaussian processes on Cartesian grids with product kernels `k(x, x') = s Π_d k_d(x_d, x'_d)`,
//! whose covariance is `s K₁ ⊗ … ⊗ K_D` (Saatçi 2012; Wilson et al. 2014).
//!
//! - [`kernels`]: 1-D kernels with hyperparameter and input derivatives, matrix builders.
//! - [`likelihood`]: exact log marginal likelihood and gradient on full grids.
//! - [`incomplete`]: missing cells / heteroscedastic noise (PCG + Wilson log-det).
//! - [`predict`]: posterior mean and variance on and off the grid.
//! - [`pde`]: the GP-HM PDE solver's objective, gradient and predictions.
// `!(x > 0)` is deliberate: it also rejects NaN. `Float` has no `DivAssign`.
#![allow(clippy::neg_cmp_op_on_partial_ord, clippy::assign_op_pattern)]

pub mod incomplete;
pub mod kernels;
pub mod likelihood;
pub mod pde;
pub mod predict;
