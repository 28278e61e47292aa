//! Stationary 1-D kernels `k(x, x') = k(r)`, `r = x − x'`, with unit amplitude (the product
//! kernel carries one signal variance), their derivatives with respect to every
//! hyperparameter and with respect to the inputs, and kernel-matrix builders.
//!
//! Input derivatives: with `r = x − x'`, `∂/∂x = d/dr` and `∂/∂x' = −d/dr`, so
//! `∂ᵃ_x ∂ᵇ_x' k = (−1)ᵇ k⁽ᵃ⁺ᵇ⁾(r)`; orders `a + b ≤ 2` are provided (value, first derivative
//! in either argument, second derivative in one argument, and the mixed `∂²/∂x∂x'`), which
//! is what derivative matrices `K⁽ᵐ⁾` of a posterior mean need.
//!
//! Everything is evaluated in f64 (kernel matrices are small: `n_d × n_d`); the Kronecker
//! algebra then runs in the caller's precision.
//!
//! | kind | parameters | `k(r)` |
//! |---|---|---|
//! | `rbf` | `ℓ` | `exp(−r²/2ℓ²)` |
//! | `matern12` | `ℓ` | `exp(−|r|/ℓ)` |
//! | `matern32` | `ℓ` | `(1 + a) e⁻ᵃ`, `a = √3|r|/ℓ` |
//! | `matern52` | `ℓ` | `(1 + a + a²/3) e⁻ᵃ`, `a = √5|r|/ℓ` |
//! | `rq` | `ℓ, α` | `(1 + r²/(2αℓ²))^−α` |
//! | `periodic` | `ℓ, p` | `exp(−2 sin²(πr/p)/ℓ²)` (sklearn's `ExpSineSquared`) |
//! | `sm` | `w₁..w_Q, f₁..f_Q, ℓ₁..ℓ_Q` | `Σ w_q exp(−r²/2ℓ_q²) cos(2π f_q r)` (Wilson & Adams 2013) |
//! | `stm` | same | `Σ w_q m₅/₂(r; ℓ_q) cos(2π f_q r)` (Student-t mixture spectrum, GP-HM) |
//!
//! The spectral mixture is written with per-component lengthscales: the Gaussian spectral
//! density with mean `f_q` and variance `v_q` corresponds to `ℓ_q = 1/(2π√v_q)`.
//!
//! Matérn 1/2 is not differentiable at `r = 0`: its first derivative there is reported as 0
//! (the mean of the one-sided limits) and its second as the one-sided limit `1/ℓ²`.

use crate::{invalid, Result};
use faer::{Mat, MatRef};
use rayon::prelude::*;
use std::f64::consts::PI;

/// The base shape of a cosine-modulated mixture component.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Base {
    Gaussian,
    Matern52,
}

/// A stationary 1-D kernel with unit amplitude.
#[derive(Clone, Debug, PartialEq)]
pub enum Kernel1d {
    Rbf {
        l: f64,
    },
    Matern12 {
        l: f64,
    },
    Matern32 {
        l: f64,
    },
    Matern52 {
        l: f64,
    },
    RationalQuadratic {
        l: f64,
        alpha: f64,
    },
    Periodic {
        l: f64,
        period: f64,
    },
    /// `Σ_q w_q base(r; ℓ_q) cos(2π f_q r)`.
    Mixture {
        base: Base,
        w: Vec<f64>,
        f: Vec<f64>,
        l: Vec<f64>,
    },
}

fn positive(name: &str, v: f64) -> Result<f64> {
    if v > 0.0 && v.is_finite() {
        Ok(v)
    } else {
        Err(invalid!(
            "kernel parameter {name} must be positive and finite, got {v}"
        ))
    }
}

/// `(b, b', b'', ∂b/∂ℓ)` of the Gaussian base `exp(−r²/2ℓ²)`.
fn rbf_parts(r: f64, l: f64) -> [f64; 4] {
    let u = r / l;
    let k = (-0.5 * u * u).exp();
    [k, -u / l * k, (u * u - 1.0) / (l * l) * k, u * u / l * k]
}

/// `(b, b', b'', ∂b/∂ℓ)` of Matérn 5/2.
fn m52_parts(r: f64, l: f64) -> [f64; 4] {
    let a = 5f64.sqrt() * r.abs() / l;
    let e = (-a).exp();
    let c = 5.0 / (3.0 * l * l);
    [
        (1.0 + a + a * a / 3.0) * e,
        -c * r * (1.0 + a) * e,
        -c * (1.0 + a - a * a) * e,
        a * a / 3.0 * (1.0 + a) * e / l,
    ]
}

fn base_parts(base: Base, r: f64, l: f64) -> [f64; 4] {
    match base {
        Base::Gaussian => rbf_parts(r, l),
        Base::Matern52 => m52_parts(r, l),
    }
}

/// `(∂b/∂ℓ, ∂b'/∂ℓ, ∂b''/∂ℓ)` of a base shape (derivatives along `r`).
fn base_dl(base: Base, r: f64, l: f64) -> [f64; 3] {
    match base {
        Base::Gaussian => {
            let b = (-0.5 * r * r / (l * l)).exp();
            let (l2, r2) = (l * l, r * r);
            let l3 = l2 * l;
            let bl = r2 / l3 * b;
            [
                bl,
                b * (2.0 * r / l3 - r * r2 / (l3 * l2)),
                (-4.0 * r2 / (l3 * l2) + 2.0 / l3) * b + (r2 / (l2 * l2) - 1.0 / l2) * bl,
            ]
        }
        Base::Matern52 => {
            let a = 5f64.sqrt() * r.abs() / l;
            let e = (-a).exp();
            let c = 5.0 / (3.0 * l * l);
            [
                a * a / 3.0 * (1.0 + a) * e / l,
                c * r / l * e * (2.0 * (1.0 + a) - a * a),
                c / l * e * (2.0 + 2.0 * a - 5.0 * a * a + a * a * a),
            ]
        }
    }
}

/// `Σ_i row_i` over `n` rows of `np` partial sums each: `row(i, acc, g)` adds row i's terms
/// to `acc` (`g` is its scratch for per-pair gradients). Rows run in parallel; their sums are
/// added in row order, so the result is the same for any number of threads.
pub(crate) fn contract_rows(
    n: usize,
    np: usize,
    row: impl Fn(usize, &mut [f64], &mut [f64]) -> Result<()> + Sync,
) -> Result<Vec<f64>> {
    let rows: Vec<Result<Vec<f64>>> = (0..n)
        .into_par_iter()
        .map(|i| {
            let (mut acc, mut g) = (vec![0.0; np], vec![0.0; np]);
            row(i, &mut acc, &mut g)?;
            Ok(acc)
        })
        .collect();
    let mut out = vec![0.0; np];
    for r in rows {
        for (o, v) in out.iter_mut().zip(r?) {
            *o += v;
        }
    }
    Ok(out)
}

impl Kernel1d {
    /// Builds a kernel from its kind name and parameter vector (see the module table).
    pub fn from_params(kind: &str, p: &[f64]) -> Result<Self> {
        let want = |n: usize| -> Result<()> {
            if p.len() == n {
                Ok(())
            } else {
                Err(invalid!(
                    "kernel {kind:?} takes {n} parameter(s), got {}",
                    p.len()
                ))
            }
        };
        Ok(match kind {
            "rbf" | "matern12" | "matern32" | "matern52" => {
                want(1)?;
                let l = positive("length_scale", p[0])?;
                match kind {
                    "rbf" => Self::Rbf { l },
                    "matern12" => Self::Matern12 { l },
                    "matern32" => Self::Matern32 { l },
                    _ => Self::Matern52 { l },
                }
            }
            "rq" => {
                want(2)?;
                Self::RationalQuadratic {
                    l: positive("length_scale", p[0])?,
                    alpha: positive("alpha", p[1])?,
                }
            }
            "periodic" => {
                want(2)?;
                Self::Periodic {
                    l: positive("length_scale", p[0])?,
                    period: positive("periodicity", p[1])?,
                }
            }
            "sm" | "stm" => {
                if p.is_empty() || p.len() % 3 != 0 {
                    return Err(invalid!(
                        "kernel {kind:?} takes 3·Q parameters (weights, frequencies, lengthscales), got {}",
                        p.len()
                    ));
                }
                let q = p.len() / 3;
                let (w, rest) = p.split_at(q);
                let (f, l) = rest.split_at(q);
                if w.iter().any(|&v| !(v >= 0.0) || !v.is_finite()) {
                    return Err(invalid!("mixture weights must be non-negative and finite"));
                }
                if f.iter().any(|v| !v.is_finite()) {
                    return Err(invalid!("mixture frequencies must be finite"));
                }
                for &v in l {
                    positive("length_scale", v)?;
                }
                Self::Mixture {
                    base: if kind == "sm" {
                        Base::Gaussian
                    } else {
                        Base::Matern52
                    },
                    w: w.to_vec(),
                    f: f.to_vec(),
                    l: l.to_vec(),
                }
            }
            other => return Err(invalid!("unknown kernel kind {other:?}")),
        })
    }

    /// The parameters in the order [`Kernel1d::from_params`] takes them.
    pub fn params(&self) -> Vec<f64> {
        match self {
            Self::Rbf { l }
            | Self::Matern12 { l }
            | Self::Matern32 { l }
            | Self::Matern52 { l } => {
                vec![*l]
            }
            Self::RationalQuadratic { l, alpha } => vec![*l, *alpha],
            Self::Periodic { l, period } => vec![*l, *period],
            Self::Mixture { w, f, l, .. } => [w.as_slice(), f, l].concat(),
        }
    }

    pub fn n_params(&self) -> usize {
        match self {
            Self::Mixture { w, .. } => 3 * w.len(),
            Self::RationalQuadratic { .. } | Self::Periodic { .. } => 2,
            _ => 1,
        }
    }

    /// `(k(r), k'(r), k''(r))`.
    pub fn eval(&self, r: f64) -> [f64; 3] {
        match *self {
            Self::Rbf { l } => {
                let p = rbf_parts(r, l);
                [p[0], p[1], p[2]]
            }
            Self::Matern12 { l } => {
                let k = (-r.abs() / l).exp();
                let s = if r > 0.0 {
                    1.0
                } else if r < 0.0 {
                    -1.0
                } else {
                    0.0
                };
                [k, -s / l * k, k / (l * l)]
            }
            Self::Matern32 { l } => {
                let a = 3f64.sqrt() * r.abs() / l;
                let e = (-a).exp();
                let c = 3.0 / (l * l);
                [(1.0 + a) * e, -c * r * e, c * (a - 1.0) * e]
            }
            Self::Matern52 { l } => {
                let p = m52_parts(r, l);
                [p[0], p[1], p[2]]
            }
            Self::RationalQuadratic { l, alpha } => {
                let l2 = l * l;
                let s = 1.0 + r * r / (2.0 * alpha * l2);
                let k = s.powf(-alpha);
                let k1 = -(r / l2) * k / s;
                let k2 = k / (s * s * l2) * (-s + (alpha + 1.0) * r * r / (alpha * l2));
                [k, k1, k2]
            }
            Self::Periodic { l, period } => {
                let phi = PI * r / period;
                let l2 = l * l;
                let k = (-2.0 * phi.sin().powi(2) / l2).exp();
                let g = -2.0 * PI * (2.0 * phi).sin() / (period * l2); // (log k)'
                let g1 = -4.0 * PI * PI * (2.0 * phi).cos() / (period * period * l2);
                [k, k * g, k * (g * g + g1)]
            }
            Self::Mixture {
                base,
                ref w,
                ref f,
                ref l,
            } => {
                let mut out = [0.0; 3];
                for q in 0..w.len() {
                    let [b, b1, b2, _] = match base {
                        Base::Gaussian => rbf_parts(r, l[q]),
                        Base::Matern52 => m52_parts(r, l[q]),
                    };
                    let om = 2.0 * PI * f[q];
                    let (s, c) = (om * r).sin_cos();
                    out[0] += w[q] * b * c;
                    out[1] += w[q] * (b1 * c - om * b * s);
                    out[2] += w[q] * (b2 * c - 2.0 * om * b1 * s - om * om * b * c);
                }
                out
            }
        }
    }

    /// `∂k(r)/∂θ_p` for every parameter, in [`Kernel1d::params`] order, written to `out`.
    pub fn grad(&self, r: f64, out: &mut [f64]) {
        match *self {
            Self::Rbf { l } => out[0] = rbf_parts(r, l)[3],
            Self::Matern12 { l } => {
                let k = (-r.abs() / l).exp();
                out[0] = r.abs() / (l * l) * k;
            }
            Self::Matern32 { l } => {
                let a = 3f64.sqrt() * r.abs() / l;
                out[0] = a * a * (-a).exp() / l;
            }
            Self::Matern52 { l } => out[0] = m52_parts(r, l)[3],
            Self::RationalQuadratic { l, alpha } => {
                let s = 1.0 + r * r / (2.0 * alpha * l * l);
                let k = s.powf(-alpha);
                out[0] = r * r / (l * l * l) * k / s;
                out[1] = k * (-s.ln() + (s - 1.0) / s);
            }
            Self::Periodic { l, period } => {
                let phi = PI * r / period;
                let (sn, cs) = phi.sin_cos();
                let k = (-2.0 * sn * sn / (l * l)).exp();
                out[0] = k * 4.0 * sn * sn / (l * l * l);
                out[1] = k * 4.0 * sn * cs * PI * r / (period * period * l * l);
            }
            Self::Mixture {
                base,
                ref w,
                ref f,
                ref l,
            } => {
                let nq = w.len();
                for q in 0..nq {
                    let [b, _, _, bl] = match base {
                        Base::Gaussian => rbf_parts(r, l[q]),
                        Base::Matern52 => m52_parts(r, l[q]),
                    };
                    let om = 2.0 * PI * f[q];
                    let (s, c) = (om * r).sin_cos();
                    out[q] = b * c;
                    out[nq + q] = -w[q] * b * s * 2.0 * PI * r;
                    out[2 * nq + q] = w[q] * bl * c;
                }
            }
        }
    }

    /// `∂k⁽ᵒʳᵈᵉʳ⁾(r)/∂θ_p` (order 0, 1 or 2 input derivatives along `r`) for every parameter,
    /// in [`Kernel1d::params`] order, written to `out`: the hyperparameter derivatives of the
    /// derivative matrices `K⁽ᵐ⁾` that a PDE solver's residual depends on (GP-HM).
    ///
    /// Provided for the squared exponential, Matérn 5/2 and their cosine-modulated mixtures
    /// (the GP-HM kernels); other kinds return an `InvalidValue` error.
    pub fn grad_deriv(&self, r: f64, order: usize, out: &mut [f64]) -> Result<()> {
        if order > 2 {
            return Err(invalid!("derivative order must be 0, 1 or 2, got {order}"));
        }
        match *self {
            Self::Rbf { l } => out[0] = base_dl(Base::Gaussian, r, l)[order],
            Self::Matern52 { l } => out[0] = base_dl(Base::Matern52, r, l)[order],
            Self::Mixture {
                base,
                ref w,
                ref f,
                ref l,
            } => {
                let nq = w.len();
                for q in 0..nq {
                    let [b, b1, b2, _] = base_parts(base, r, l[q]);
                    let dl = base_dl(base, r, l[q]);
                    let om = 2.0 * PI * f[q];
                    let (s, c) = (om * r).sin_cos();
                    // Value of the component (per unit weight), its ω-derivative and ℓ-derivative.
                    let (val, d_om, d_l) = match order {
                        0 => (b * c, -b * r * s, dl[0] * c),
                        1 => (
                            b1 * c - om * b * s,
                            -b1 * r * s - b * s - om * b * r * c,
                            dl[1] * c - om * dl[0] * s,
                        ),
                        _ => (
                            b2 * c - 2.0 * om * b1 * s - om * om * b * c,
                            -b2 * r * s - 2.0 * b1 * s - 2.0 * om * b1 * r * c - 2.0 * om * b * c
                                + om * om * b * r * s,
                            dl[2] * c - 2.0 * om * dl[1] * s - om * om * dl[0] * c,
                        ),
                    };
                    out[q] = val;
                    out[nq + q] = w[q] * d_om * 2.0 * PI;
                    out[2 * nq + q] = w[q] * d_l;
                }
            }
            _ => {
                return Err(invalid!(
                    "hyperparameter derivatives of input derivatives are implemented for \
                     rbf, matern52, sm and stm kernels only, not {self:?}"
                ))
            }
        }
        Ok(())
    }

    /// `M_p[i, j] = ∂/∂θ_p ∂ᵒʳᵈᵉʳ_x k(x1[i], x2[j])`, one matrix per parameter (test helper
    /// and reference for [`Kernel1d::grad_deriv`] contractions).
    pub fn grad_deriv_matrices(
        &self,
        x1: &[f64],
        x2: &[f64],
        order: usize,
    ) -> Result<Vec<Mat<f64>>> {
        let np = self.n_params();
        let mut out: Vec<Mat<f64>> = (0..np).map(|_| Mat::zeros(x1.len(), x2.len())).collect();
        let mut g = vec![0.0; np];
        for i in 0..x1.len() {
            for j in 0..x2.len() {
                self.grad_deriv(x1[i] - x2[j], order, &mut g)?;
                for p in 0..np {
                    out[p][(i, j)] = g[p];
                }
            }
        }
        Ok(out)
    }

    /// `g_p = Σ_m Σ_ij ∂θ_p k⁽ᵐ⁾(x_i − x_j) · W_m[i, j]` over the orders `m` with a
    /// sensitivity matrix `W_m` (`None` skips that order): the gradient of any function of the
    /// matrices `K⁽⁰⁾, K⁽¹⁾, K⁽²⁾` given its matrix derivatives, without building the
    /// `n_params` matrices. Rows run in parallel and are added in row order (deterministic).
    pub fn grad_deriv_contract(
        &self,
        x: &[f64],
        w: [Option<MatRef<'_, f64>>; 3],
    ) -> Result<Vec<f64>> {
        let n = x.len();
        for m in w.iter().flatten() {
            if m.nrows() != n || m.ncols() != n {
                return Err(invalid!(
                    "each W must have shape ({n}, {n}) to match x, got ({}, {})",
                    m.nrows(),
                    m.ncols()
                ));
            }
        }
        let np = self.n_params();
        contract_rows(n, np, |i, acc, g| {
            for (order, wm) in w.iter().enumerate() {
                let Some(wm) = wm else { continue };
                for j in 0..n {
                    let wij = wm[(i, j)];
                    if wij == 0.0 {
                        continue;
                    }
                    self.grad_deriv(x[i] - x[j], order, g)?;
                    for p in 0..np {
                        acc[p] += g[p] * wij;
                    }
                }
            }
            Ok(())
        })
    }

    /// `k(0)`: the prior variance of this unit-amplitude factor.
    pub fn diag(&self) -> f64 {
        self.eval(0.0)[0]
    }

    /// `M[i, j] = ∂ᵃ_x ∂ᵇ_x' k(x1[i], x2[j])`, orders with `a + b ≤ 2`.
    pub fn matrix(&self, x1: &[f64], x2: &[f64], a: usize, b: usize) -> Result<Mat<f64>> {
        if a + b > 2 {
            return Err(invalid!(
                "input derivative orders must satisfy a + b ≤ 2, got {a} + {b}"
            ));
        }
        let sign = if b % 2 == 1 { -1.0 } else { 1.0 };
        Ok(Mat::from_fn(x1.len(), x2.len(), |i, j| {
            sign * self.eval(x1[i] - x2[j])[a + b]
        }))
    }

    /// `g_p = Σ_ij ∂k(x_i − x_j)/∂θ_p · W[i, j]` for every parameter: the contraction
    /// `Σ ∂K_p ∘ W` of the likelihood gradient, without building the `n_params` matrices
    /// (a 30-component spectral mixture has 90). Rows run in parallel; their partial sums
    /// are added in row order, so the result is the same for any number of threads.
    pub fn grad_contract(&self, x: &[f64], w: MatRef<'_, f64>) -> Result<Vec<f64>> {
        let n = x.len();
        if w.nrows() != n || w.ncols() != n {
            return Err(invalid!(
                "W must have shape ({n}, {n}) to match x, got ({}, {})",
                w.nrows(),
                w.ncols()
            ));
        }
        let np = self.n_params();
        contract_rows(n, np, |i, acc, g| {
            for j in 0..n {
                self.grad(x[i] - x[j], g);
                let wij = w[(i, j)];
                for p in 0..np {
                    acc[p] += g[p] * wij;
                }
            }
            Ok(())
        })
    }

    /// `∂K/∂θ_p` on the points `x1 × x2`, one matrix per parameter.
    pub fn grad_matrices(&self, x1: &[f64], x2: &[f64]) -> Vec<Mat<f64>> {
        let np = self.n_params();
        let mut out: Vec<Mat<f64>> = (0..np).map(|_| Mat::zeros(x1.len(), x2.len())).collect();
        let mut g = vec![0.0; np];
        for i in 0..x1.len() {
            for j in 0..x2.len() {
                self.grad(x1[i] - x2[j], &mut g);
                for p in 0..np {
                    out[p][(i, j)] = g[p];
                }
            }
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grad_contract_matches_grad_matrices() {
        let x: Vec<f64> = (0..13).map(|i| (i as f64 * 0.37).sin() * 2.0).collect();
        let w = Mat::from_fn(13, 13, |i, j| ((i * 7 + j * 3) % 5) as f64 - 1.7);
        for k in all_kernels() {
            let c = k.grad_contract(&x, w.as_ref()).unwrap();
            let ms = k.grad_matrices(&x, &x);
            assert_eq!(c.len(), ms.len());
            for (p, m) in ms.iter().enumerate() {
                let mut r = 0.0;
                for i in 0..13 {
                    for j in 0..13 {
                        r += m[(i, j)] * w[(i, j)];
                    }
                }
                assert!((c[p] - r).abs() <= 1e-12 * r.abs().max(1.0), "{k:?} {p}");
            }
            assert!(k.grad_contract(&x[..5], w.as_ref()).is_err());
        }
    }

    fn all_kernels() -> Vec<Kernel1d> {
        vec![
            Kernel1d::from_params("rbf", &[0.7]).unwrap(),
            Kernel1d::from_params("matern12", &[0.7]).unwrap(),
            Kernel1d::from_params("matern32", &[0.7]).unwrap(),
            Kernel1d::from_params("matern52", &[0.7]).unwrap(),
            Kernel1d::from_params("rq", &[0.7, 1.3]).unwrap(),
            Kernel1d::from_params("periodic", &[0.9, 1.7]).unwrap(),
            Kernel1d::from_params("sm", &[0.5, 1.5, 0.3, 2.0, 0.8, 0.4]).unwrap(),
            Kernel1d::from_params("stm", &[0.5, 1.5, 0.3, 2.0, 0.8, 0.4]).unwrap(),
        ]
    }

    #[test]
    fn input_derivatives_match_finite_differences() {
        let h = 1e-5;
        for k in all_kernels() {
            for &r in &[-1.3, -0.4, 0.25, 0.9, 2.1] {
                let [_, d1, d2] = k.eval(r);
                let fd1 = (k.eval(r + h)[0] - k.eval(r - h)[0]) / (2.0 * h);
                let fd2 = (k.eval(r + h)[1] - k.eval(r - h)[1]) / (2.0 * h);
                assert!((d1 - fd1).abs() < 1e-7, "{k:?} r={r}: {d1} vs {fd1}");
                assert!((d2 - fd2).abs() < 1e-6, "{k:?} r={r}: {d2} vs {fd2}");
            }
        }
    }

    #[test]
    fn parameter_derivatives_match_finite_differences() {
        for k in all_kernels() {
            let p = k.params();
            let kind = match &k {
                Kernel1d::Rbf { .. } => "rbf",
                Kernel1d::Matern12 { .. } => "matern12",
                Kernel1d::Matern32 { .. } => "matern32",
                Kernel1d::Matern52 { .. } => "matern52",
                Kernel1d::RationalQuadratic { .. } => "rq",
                Kernel1d::Periodic { .. } => "periodic",
                Kernel1d::Mixture {
                    base: Base::Gaussian,
                    ..
                } => "sm",
                Kernel1d::Mixture { .. } => "stm",
            };
            let mut g = vec![0.0; p.len()];
            for &r in &[-1.1, 0.3, 0.8] {
                k.grad(r, &mut g);
                for i in 0..p.len() {
                    let h = 1e-6 * p[i].abs().max(1.0);
                    let (mut a, mut b) = (p.clone(), p.clone());
                    a[i] += h;
                    b[i] -= h;
                    let fa = Kernel1d::from_params(kind, &a).unwrap().eval(r)[0];
                    let fb = Kernel1d::from_params(kind, &b).unwrap().eval(r)[0];
                    let fd = (fa - fb) / (2.0 * h);
                    assert!(
                        (g[i] - fd).abs() < 1e-7,
                        "{kind} p{i} r={r}: {} vs {fd}",
                        g[i]
                    );
                }
            }
        }
    }

    #[test]
    fn grad_deriv_matches_finite_differences() {
        let kinds: [(&str, Vec<f64>); 4] = [
            ("rbf", vec![0.7]),
            ("matern52", vec![0.6]),
            ("sm", vec![0.5, 1.5, 0.3, 2.0, 0.8, 0.4]),
            ("stm", vec![0.5, 1.5, 0.3, 2.0, 0.8, 0.4]),
        ];
        for (kind, p) in kinds {
            let k = Kernel1d::from_params(kind, &p).unwrap();
            let mut g = vec![0.0; p.len()];
            for order in 0..3 {
                for &r in &[-1.1, -0.2, 0.3, 0.8] {
                    k.grad_deriv(r, order, &mut g).unwrap();
                    if order == 0 {
                        let mut g0 = vec![0.0; p.len()];
                        k.grad(r, &mut g0);
                        for i in 0..p.len() {
                            assert!((g[i] - g0[i]).abs() < 1e-14 * g0[i].abs().max(1.0));
                        }
                    }
                    for i in 0..p.len() {
                        let h = 1e-6 * p[i].abs().max(1.0);
                        let (mut a, mut b) = (p.clone(), p.clone());
                        a[i] += h;
                        b[i] -= h;
                        let fa = Kernel1d::from_params(kind, &a).unwrap().eval(r)[order];
                        let fb = Kernel1d::from_params(kind, &b).unwrap().eval(r)[order];
                        let fd = (fa - fb) / (2.0 * h);
                        assert!(
                            (g[i] - fd).abs() < 1e-6 * fd.abs().max(1.0),
                            "{kind} order {order} p{i} r={r}: {} vs {fd}",
                            g[i]
                        );
                    }
                }
            }
        }
        let rq = Kernel1d::from_params("rq", &[1.0, 1.0]).unwrap();
        assert!(rq.grad_deriv(0.1, 1, &mut [0.0; 2]).is_err());
        let k = Kernel1d::from_params("stm", &[1.0, 1.0, 1.0]).unwrap();
        assert!(k.grad_deriv(0.1, 3, &mut [0.0; 3]).is_err());
    }

    #[test]
    fn grad_deriv_contract_matches_matrices() {
        let x: Vec<f64> = (0..9).map(|i| (i as f64 * 0.41).cos() * 1.5).collect();
        let k = Kernel1d::from_params("stm", &[0.5, 1.5, 0.3, 2.0, 0.8, 0.4]).unwrap();
        let ws: Vec<Mat<f64>> = (0..3)
            .map(|o| Mat::from_fn(9, 9, |i, j| ((i * 5 + j * 3 + o) % 7) as f64 - 2.9))
            .collect();
        let c = k
            .grad_deriv_contract(&x, [Some(ws[0].as_ref()), None, Some(ws[2].as_ref())])
            .unwrap();
        let mut want = vec![0.0; 6];
        for o in [0, 2] {
            for (p, m) in k.grad_deriv_matrices(&x, &x, o).unwrap().iter().enumerate() {
                for i in 0..9 {
                    for j in 0..9 {
                        want[p] += m[(i, j)] * ws[o][(i, j)];
                    }
                }
            }
        }
        for p in 0..6 {
            assert!((c[p] - want[p]).abs() < 1e-11 * want[p].abs().max(1.0));
        }
    }

    #[test]
    fn bad_parameters_are_rejected() {
        assert!(Kernel1d::from_params("rbf", &[0.0]).is_err());
        assert!(Kernel1d::from_params("rbf", &[1.0, 2.0]).is_err());
        assert!(Kernel1d::from_params("rq", &[1.0, -1.0]).is_err());
        assert!(Kernel1d::from_params("sm", &[1.0, 1.0]).is_err());
        assert!(Kernel1d::from_params("nope", &[1.0]).is_err());
        let k = Kernel1d::from_params("rbf", &[1.0]).unwrap();
        assert!(k.matrix(&[0.0], &[1.0], 2, 1).is_err());
        let m = k.matrix(&[0.0, 0.5], &[0.1], 1, 1).unwrap();
        assert!((m[(0, 0)] + k.eval(-0.1)[2]).abs() < 1e-15);
    }
}
