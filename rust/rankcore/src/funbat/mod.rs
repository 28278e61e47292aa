//! Functional Bayesian Tucker decomposition (FunBaT; Fang et al., ICLR 2024): the numerical
//! kernels behind `rankcore.FunBaT`.
//!
//! A continuous-indexed tensor is modelled as `y = vec(W)ᵀ(u¹(x₁) ⊗ … ⊗ uᴷ(x_K)) + ε`, where
//! each mode's `r_k` latent functions have independent Matérn Gaussian-process priors written
//! as linear time-invariant SDEs. The Python estimator runs conditional expectation
//! propagation; this module does its heavy parts:
//!
//! - [`ssm`]: the Matérn ν = 1/2 and 3/2 state-space models (stationary covariance, exact
//!   discrete transitions).
//! - [`smoother`]: one joint Kalman filter + RTS smoother per mode over its sorted distinct
//!   coordinates (state dimension `d·r_k`), taking each node's summed messages in natural
//!   parameters; the approximate evidence for hyperparameter learning; exact interpolation
//!   and extrapolation of the posterior at new coordinates.
//! - [`messages`]: the per-node sums of the messages to the factors, the core's message
//!   sums, and the Kronecker (Tucker) / Hadamard (CP) moment products for predictions.
//!
//! Determinism: every parallel region splits its work into blocks fixed by the problem's
//! shape and adds partial sums in block order, so one thread and many give bit-identical
//! results.
// `!(x > y)` is deliberate: it also rejects NaN.
#![allow(clippy::neg_cmp_op_on_partial_ord)]

pub mod messages;
pub mod smoother;
pub mod ssm;

pub use messages::{core_posterior, core_sums, mode_messages, predict_moments, CoreKind, Design};
pub use smoother::{evidence, interpolate, smooth, Smoothed};
pub use ssm::{Kind, Ssm};
