//! Matérn Gaussian processes as linear time-invariant SDEs (Hartikainen & Särkkä 2010).
//!
//! With `λ = √(2ν)/ℓ`:
//! - ν = 1/2: state `u`, `F = −λ`, stationary covariance `P∞ = σ²`;
//! - ν = 3/2: state `(u, u')`, `F = [[0, 1], [−λ², −2λ]]`, `P∞ = diag(σ², λ²σ²)`.
//!
//! Over a step `Δ` the exact transition is `A = exp(FΔ)` (closed form below) with process
//! noise `Q = P∞ − A P∞ Aᵀ`, so the discretised chain has exactly the GP's covariance.

use crate::{invalid, Float, Result};
use faer::Mat;

/// Which Matérn kernel.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// ν = 1/2 (exponential kernel), state dimension 1.
    Matern12,
    /// ν = 3/2, state dimension 2.
    Matern32,
}

impl Kind {
    /// Parses `"matern12"` / `"matern32"`.
    pub fn parse(name: &str) -> Result<Self> {
        match name {
            "matern12" => Ok(Kind::Matern12),
            "matern32" => Ok(Kind::Matern32),
            _ => Err(invalid!(
                "kernel must be 'matern12' or 'matern32', got {name:?}"
            )),
        }
    }

    /// State dimension `d` of one latent function.
    pub fn dim(self) -> usize {
        match self {
            Kind::Matern12 => 1,
            Kind::Matern32 => 2,
        }
    }
}

/// One Matérn state-space model with its lengthscale `ℓ` and variance `σ²`.
#[derive(Debug, Clone, Copy)]
pub struct Ssm {
    pub kind: Kind,
    /// `λ = √(2ν)/ℓ`.
    lam: f64,
    var: f64,
}

impl Ssm {
    /// Validates `lengthscale > 0` and `variance > 0` (finite).
    pub fn new(kind: Kind, lengthscale: f64, variance: f64) -> Result<Self> {
        if !(lengthscale > 0.0 && lengthscale.is_finite()) {
            return Err(invalid!(
                "lengthscale must be positive and finite, got {lengthscale}"
            ));
        }
        if !(variance > 0.0 && variance.is_finite()) {
            return Err(invalid!(
                "variance must be positive and finite, got {variance}"
            ));
        }
        let lam = match kind {
            Kind::Matern12 => 1.0 / lengthscale,
            Kind::Matern32 => 3f64.sqrt() / lengthscale,
        };
        Ok(Self {
            kind,
            lam,
            var: variance,
        })
    }

    pub fn dim(&self) -> usize {
        self.kind.dim()
    }

    /// `P∞`, `d × d` (row-major values).
    fn pinf64(&self) -> [[f64; 2]; 2] {
        match self.kind {
            Kind::Matern12 => [[self.var, 0.0], [0.0, 0.0]],
            Kind::Matern32 => [[self.var, 0.0], [0.0, self.lam * self.lam * self.var]],
        }
    }

    /// `A = exp(FΔ)` for `Δ ≥ 0`, computed in f64.
    fn a64(&self, dt: f64) -> [[f64; 2]; 2] {
        let l = self.lam;
        let e = (-l * dt).exp();
        match self.kind {
            Kind::Matern12 => [[e, 0.0], [0.0, 0.0]],
            Kind::Matern32 => [
                [e * (1.0 + l * dt), e * dt],
                [-e * l * l * dt, e * (1.0 - l * dt)],
            ],
        }
    }

    /// The stationary covariance `P∞` (`d × d`).
    pub fn stationary<T: Float>(&self) -> Mat<T> {
        let p = self.pinf64();
        Mat::from_fn(self.dim(), self.dim(), |i, j| T::from_f64(p[i][j]))
    }

    /// The transition `A(Δ)` and process noise `Q(Δ) = P∞ − A P∞ Aᵀ` of a step `Δ ≥ 0`.
    pub fn transition<T: Float>(&self, dt: f64) -> (Mat<T>, Mat<T>) {
        let d = self.dim();
        let a = self.a64(dt);
        let p = self.pinf64();
        let mut q = [[0.0f64; 2]; 2];
        for i in 0..d {
            for j in 0..d {
                let mut apa = 0.0;
                for k in 0..d {
                    for l in 0..d {
                        apa += a[i][k] * p[k][l] * a[j][l];
                    }
                }
                q[i][j] = p[i][j] - apa;
            }
        }
        // Q is symmetric; average the two halves' round-off.
        if d == 2 {
            let off = 0.5 * (q[0][1] + q[1][0]);
            q[0][1] = off;
            q[1][0] = off;
        }
        (
            Mat::from_fn(d, d, |i, j| T::from_f64(a[i][j])),
            Mat::from_fn(d, d, |i, j| T::from_f64(q[i][j])),
        )
    }

    /// The kernel `k(Δ) = σ² · m(λ|Δ|)`, for tests.
    pub fn kernel(&self, dt: f64) -> f64 {
        let s = self.lam * dt.abs();
        match self.kind {
            Kind::Matern12 => self.var * (-s).exp(),
            Kind::Matern32 => self.var * (1.0 + s) * (-s).exp(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transition_reproduces_the_kernel() {
        // Cov(u(t+Δ), u(t)) = (A P∞)[0, 0] = k(Δ).
        for kind in [Kind::Matern12, Kind::Matern32] {
            let m = Ssm::new(kind, 0.7, 1.3).unwrap();
            for dt in [0.0, 0.1, 0.5, 2.0] {
                let (a, q) = m.transition::<f64>(dt);
                let p = m.stationary::<f64>();
                let ap = &a * &p;
                assert!((ap[(0, 0)] - m.kernel(dt)).abs() < 1e-14);
                // A P∞ Aᵀ + Q = P∞.
                let back = &ap * a.transpose() + &q;
                assert!((&back - &p).norm_max() < 1e-14);
            }
        }
    }

    #[test]
    fn rejects_bad_hyperparameters() {
        assert!(Ssm::new(Kind::Matern32, 0.0, 1.0).is_err());
        assert!(Ssm::new(Kind::Matern32, 1.0, f64::NAN).is_err());
        assert!(Kind::parse("rbf").is_err());
    }
}
