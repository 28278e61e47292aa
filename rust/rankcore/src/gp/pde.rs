//! The GP-HM PDE solver's objective and its analytic gradient (Fang et al., "Solving High
//! Frequency and Multi-Scale PDEs with Gaussian Processes", ICLR 2024).
//!
//! # Model
//!
//! The solution values `U` on a Cartesian grid of collocation points (`N = Π n_d` cells, C
//! order) get the prior `vec(U) ~ N(0, K)`, `K = K₁ ⊗ … ⊗ K_D`, where `K_d` is a 1-D kernel
//! matrix (in GP-HM a Gaussian or Student-t spectral mixture) plus a nugget `ν k_d(0) I`:
//! these kernels are numerically singular on fine grids (the reference code adds an absolute
//! jitter `1e-6`). The nugget is relative to the prior variance `k_d(0)` so that learning the
//! weights cannot scale it away: with an absolute one, growing every weight makes the
//! kernel ever closer to singular and the objective ever lower, a degenerate direction that
//! an optimiser solving exactly for `U` finds at once. Below, `K_d` includes the nugget. Derivatives of the GP conditional mean at the grid are mode products:
//! `∂ᵐ_d u = U ×_d D_d⁽ᵐ⁾`, `D_d⁽ᵐ⁾ = K_d⁽ᵐ⁾ K_d⁻¹`, `K_d⁽ᵐ⁾[i, j] = ∂ᵐ_x k_d(x_i, x_j)`
//! (no nugget: it belongs to the covariance of the values only).
//!
//! A linear operator is a sum of terms `c_t ∘ (U ×_{d} D_d^{(m_{t,d})} …)` (a coefficient,
//! constant or one per cell, times a partial derivative of order `m_{t,d} ≤ 2` in each
//! dimension); a pointwise nonlinearity `φ(U)` may be added (its values and derivative are
//! passed in). With the source `f`, the residual on every collocation point and the misfit on
//! the boundary cells (those on a face of the box) are
//!
//! `R = Σ_t c_t ∘ (U ×… D…) + φ(U) − f`, `b = U|∂Ω − g`.
//!
//! # Objective (negative log joint, up to constants)
//!
//! `L = ½ vec(U)ᵀK⁻¹vec(U) + ½ Σ_d (N/n_d) log|K_d|`
//! `  + w_b (τ_b/2 ‖b‖² − N_b/2 log τ_b) + τ_r/2 ‖R‖² − N/2 log τ_r`,
//!
//! exactly the reference code's loss: the boundary log-likelihood is multiplied by a fixed
//! weight `w_b` (its `llk_weight`, 200 in every published configuration), the precisions
//! `τ_b, τ_r` are learned as `log τ`, and the residual is taken on all `N` grid points.
//! (One difference: the reference stacks the four edges of a 2-D grid, counting corners
//! twice; here each boundary cell counts once.)
//!
//! # Gradient
//!
//! With `A = U ×₁ K₁⁻¹ … ×_D K_D⁻¹` and `G_t = τ_r c_t ∘ R`:
//!
//! - `∂L/∂U = A + w_b τ_b Pᵀb + Σ_t G_t ×… D…ᵀ + τ_r φ′(U) ∘ R` (adjoint mode products).
//! - Kernel parameters of dimension d, through `n_d × n_d` sensitivity matrices (never an
//!   `N × N` one). For a perturbation `dK_d`: the prior fit changes by
//!   `−½ ⟨dK_d, A_(d) B_(d)ᵀ⟩` with `B = U ×_d K_d⁻¹` (the other factors cancel against their
//!   inverses), the log-determinant by `½ (N/n_d) ⟨dK_d, K_d⁻¹⟩`. A term whose derivative
//!   along d is `D = K⁽ᵐ⁾K⁻¹` changes by `⟨dD, S⟩` with `S = G_(d) W_(d)ᵀ`, `W` the term's
//!   other derivative mode products applied to `U`; since
//!   `dD = (dK⁽ᵐ⁾ − D dK) K⁻¹`, that is `⟨dK⁽ᵐ⁾, S K⁻¹⟩ − ⟨dK, Dᵀ S K⁻¹⟩`.
//!   The three sensitivity matrices (for `K`, `K⁽¹⁾`, `K⁽²⁾`) are then contracted with
//!   `∂θ k⁽ᵐ⁾(x_i − x_j)` ([`Kernel1d::grad_deriv_contract`]).
//! - `∂L/∂log τ_b = w_b (τ_b/2 ‖b‖² − N_b/2)`, `∂L/∂log τ_r = τ_r/2 ‖R‖² − N/2`.
//!
//! Cost: `O(Σ n_d³)` for the factorisations and `O(N Σ n_d)` per mode product (a few per
//! term and dimension), plus `O(n_d² Q)` per kernel.
//!
//! # Precision and determinism
//!
//! Kernel matrices, factorisations and sensitivities are f64 (they are small); the grid
//! tensors (`U`, residuals, mode products) are in the caller's precision `T`. The priors' `K⁻¹`
//! has a condition number near `1/ν`, so f32 grids lose most digits of the prior term: f64 is
//! the precision to solve in, f32 is offered for cheap exploratory runs. Every parallel region
//! uses fixed blocks and ordered sums, so results are bit-identical for any thread count.

use crate::gp::kernels::{contract_rows, Kernel1d};
use crate::kron::{eigh, mode_product, ordered_sum};
use crate::linalg::matmul;
use crate::{invalid, Error, Float, Interrupt, Result};
use faer::{Mat, MatRef};
use rayon::prelude::*;

/// Highest input-derivative order per dimension.
pub const MAX_ORDER: usize = 2;

/// One operator term `coef ∘ ∂^{orders} u`.
#[derive(Clone, Debug)]
pub struct Term<T> {
    /// One value (a constant coefficient) or one per grid cell (C order).
    pub coef: Vec<T>,
    /// Derivative order along each grid dimension (`0..=2`).
    pub orders: Vec<usize>,
}

/// A PDE on a grid: operator terms, source, boundary values and the fixed model settings.
#[derive(Clone, Debug)]
pub struct Problem<T> {
    /// Collocation coordinates per dimension (strictly increasing).
    pub axes: Vec<Vec<f64>>,
    pub terms: Vec<Term<T>>,
    /// `f` on every grid cell.
    pub source: Vec<T>,
    /// Flat C-order indices of the boundary cells (strictly increasing).
    pub boundary: Vec<usize>,
    /// `g` on the boundary cells.
    pub boundary_values: Vec<T>,
    /// `w_b`: the fixed weight of the boundary log-likelihood.
    pub boundary_weight: f64,
    /// `ν`: `ν k_d(0)` is added to the diagonal of every `K_d`.
    pub nugget: f64,
}

/// The learned non-grid quantities.
#[derive(Clone, Debug)]
pub struct Params {
    /// One 1-D kernel per dimension.
    pub kernels: Vec<Kernel1d>,
    pub log_tau_b: f64,
    pub log_tau_r: f64,
}

/// Value and gradient of the objective, plus the diagnostics a solver reports.
#[derive(Clone, Debug)]
pub struct Objective<T> {
    pub value: f64,
    /// `½ vec(U)ᵀK⁻¹vec(U) + ½ Σ_d (N/n_d) log|K_d|`.
    pub prior: f64,
    /// `‖b‖²` and `‖R‖²`.
    pub boundary_sq: f64,
    pub residual_sq: f64,
    /// `R` on the grid.
    pub residual: Vec<T>,
    /// `∂L/∂U` (empty without the gradient).
    pub grad_u: Vec<T>,
    /// `∂L/∂θ` per dimension, in [`Kernel1d::params`] order.
    pub grad_kernels: Vec<Vec<f64>>,
    pub grad_log_tau_b: f64,
    pub grad_log_tau_r: f64,
}

fn strictly_increasing(x: &[f64]) -> bool {
    x.iter().all(|v| v.is_finite()) && x.windows(2).all(|w| w[0] < w[1])
}

fn all_finite<T: Float>(x: &[T]) -> bool {
    x.iter().all(|v| v.is_finite())
}

impl<T: Float> Problem<T> {
    /// Grid shape `(n₁, …, n_D)`.
    pub fn shape(&self) -> Vec<usize> {
        self.axes.iter().map(|a| a.len()).collect()
    }

    /// Number of grid cells.
    pub fn len(&self) -> usize {
        self.axes.iter().map(|a| a.len()).product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Checks shapes and values (the messages name the offending argument).
    pub fn validate(&self) -> Result<()> {
        if self.axes.is_empty() {
            return Err(invalid!("grid must have at least one dimension"));
        }
        for (d, a) in self.axes.iter().enumerate() {
            if a.len() < 3 {
                return Err(invalid!(
                    "grid dimension {d} has {} points; at least 3 are needed (two boundary \
                     points and one interior point)",
                    a.len()
                ));
            }
            if !strictly_increasing(a) {
                return Err(invalid!(
                    "grid coordinates of dimension {d} must be finite and strictly increasing"
                ));
            }
        }
        let n = self.len();
        let dims = self.axes.len();
        if self.terms.is_empty() {
            return Err(invalid!("operator must have at least one term"));
        }
        for (t, term) in self.terms.iter().enumerate() {
            if term.orders.len() != dims {
                return Err(Error::InvalidShape(format!(
                    "operator term {t} gives {} derivative orders for a {dims}-D grid",
                    term.orders.len()
                )));
            }
            if let Some(&o) = term.orders.iter().find(|&&o| o > MAX_ORDER) {
                return Err(invalid!(
                    "operator term {t} asks for a derivative of order {o}; at most \
                     {MAX_ORDER} per dimension is supported"
                ));
            }
            if term.coef.len() != 1 && term.coef.len() != n {
                return Err(Error::InvalidShape(format!(
                    "operator term {t} has {} coefficients; expected 1 or {n} (one per cell)",
                    term.coef.len()
                )));
            }
            if !all_finite(&term.coef) {
                return Err(invalid!("operator term {t} has non-finite coefficients"));
            }
        }
        if self.source.len() != n {
            return Err(Error::InvalidShape(format!(
                "source has {} values for {n} grid cells",
                self.source.len()
            )));
        }
        if !all_finite(&self.source) {
            return Err(invalid!("source must be finite"));
        }
        if self.boundary.len() != self.boundary_values.len() {
            return Err(Error::InvalidShape(format!(
                "boundary has {} values for {} boundary cells",
                self.boundary_values.len(),
                self.boundary.len()
            )));
        }
        if self.boundary.windows(2).any(|w| w[0] >= w[1]) || self.boundary.iter().any(|&i| i >= n) {
            return Err(invalid!(
                "boundary cells must be strictly increasing indices below {n}"
            ));
        }
        if !all_finite(&self.boundary_values) {
            return Err(invalid!("boundary values must be finite"));
        }
        if !(self.boundary_weight > 0.0) || !self.boundary_weight.is_finite() {
            return Err(invalid!(
                "boundary_weight must be positive and finite, got {}",
                self.boundary_weight
            ));
        }
        if !(self.nugget > 0.0) || !self.nugget.is_finite() {
            return Err(invalid!(
                "nugget must be positive and finite, got {}",
                self.nugget
            ));
        }
        Ok(())
    }

    /// The highest derivative order any term takes along each dimension.
    fn max_orders(&self) -> Vec<usize> {
        (0..self.axes.len())
            .map(|d| self.terms.iter().map(|t| t.orders[d]).max().unwrap_or(0))
            .collect()
    }
}

/// The flat indices of the cells on the faces of a grid of shape `shape` (increasing).
pub fn boundary_cells(shape: &[usize]) -> Vec<usize> {
    let n: usize = shape.iter().product();
    (0..n)
        .filter(|&flat| {
            let mut rest = flat;
            let mut on_face = false;
            for &nd in shape.iter().rev() {
                let i = rest % nd;
                rest /= nd;
                on_face |= i == 0 || i + 1 == nd;
            }
            on_face
        })
        .collect()
}

/// Per-dimension factorisation: `K⁻¹`, `log|K|` and the derivative matrices `D⁽ᵐ⁾`.
pub struct Factor {
    /// `(K + νI)⁻¹`, symmetric.
    pub kinv: Mat<f64>,
    pub logdet: f64,
    /// `D⁽ᵐ⁾ = K⁽ᵐ⁾ K⁻¹` for `m = 1, 2` (index `m − 1`), where some term needs it.
    pub deriv: [Option<Mat<f64>>; 2],
}

/// The lower Cholesky factor of `K + νI` (sequential, deterministic), or `None` when a
/// pivot is not positive.
fn cholesky_lower(k: MatRef<'_, f64>, nugget: f64) -> Option<Mat<f64>> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::cholesky::llt::factor;
    let n = k.nrows();
    let mut l = Mat::from_fn(n, n, |i, j| {
        if i >= j {
            k[(i, j)] + if i == j { nugget } else { 0.0 }
        } else {
            0.0
        }
    });
    let par = faer::Par::Seq;
    let mut mem = MemBuffer::new(factor::cholesky_in_place_scratch::<f64>(
        n,
        par,
        Default::default(),
    ));
    let factor = factor::cholesky_in_place(
        l.as_mut(),
        Default::default(),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    );
    crate::linalg::clear_upper();
    factor.ok()?;
    // faer leaves workspace values above the diagonal: the factor is the lower triangle.
    for j in 1..n {
        for i in 0..j {
            l[(i, j)] = 0.0;
        }
    }
    let finite = l.col_iter().all(|c| c.iter().all(|v| v.is_finite()));
    finite.then_some(l)
}

/// `(K + νI)⁻¹` and `log|K + νI|`: Cholesky (sequential, deterministic) of `K + νI`, and the
/// eigendecomposition with eigenvalues clamped at zero within round-off (see
/// [`crate::kron::eigh`]) when round-off makes a pivot non-positive.
fn inverse_logdet(k: MatRef<'_, f64>, nugget: f64, d: usize) -> Result<(Mat<f64>, f64)> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::cholesky::llt::inverse;
    let n = k.nrows();
    if let Some(l) = cholesky_lower(k, nugget) {
        let par = faer::Par::Seq;
        let mut mem = MemBuffer::new(inverse::inverse_scratch::<f64>(n, par));
        let logdet = (0..n).map(|i| 2.0 * l[(i, i)].ln()).sum::<f64>();
        let mut lower = Mat::<f64>::zeros(n, n);
        inverse::inverse(lower.as_mut(), l.as_ref(), par, MemStack::new(&mut mem));
        crate::linalg::clear_upper();
        // `inverse` writes the lower triangle of the symmetric inverse.
        let inv = Mat::from_fn(
            n,
            n,
            |i, j| if i >= j { lower[(i, j)] } else { lower[(j, i)] },
        );
        if logdet.is_finite() && inv.col_iter().all(|c| c.iter().all(|v| v.is_finite())) {
            return Ok((inv, logdet));
        }
    }
    let (q, lam) = eigh(k, d)?;
    let inv: Vec<f64> = lam.iter().map(|&l| 1.0 / (l + nugget)).collect();
    let logdet = lam.iter().map(|&l| (l + nugget).ln()).sum();
    let qs = Mat::from_fn(n, n, |i, j| q[(i, j)] * inv[j]);
    let mut out = Mat::<f64>::zeros(n, n);
    matmul(out.as_mut(), qs.as_ref(), q.transpose());
    let sym = Mat::from_fn(n, n, |i, j| 0.5 * (out[(i, j)] + out[(j, i)]));
    Ok((sym, logdet))
}

/// The spacing `h` when `x` is equally spaced (to round-off), so that every kernel matrix is
/// Toeplitz: `k(x_i − x_j) = k((i − j)h)` needs `2n − 1` kernel evaluations instead of `n²`.
fn uniform_step(x: &[f64]) -> Option<f64> {
    let n = x.len();
    if n < 2 {
        return None;
    }
    let h = (x[n - 1] - x[0]) / (n - 1) as f64;
    let tol = 1e-12 * (x[0].abs() + x[n - 1].abs() + h.abs());
    x.iter()
        .enumerate()
        .all(|(i, &v)| (v - (x[0] + i as f64 * h)).abs() <= tol)
        .then_some(h)
}

/// `K⁽ᵐ⁾[i, j] = ∂ᵐ_x k(x_i, x_j)` for `m = 0..=max_order`, one pass over the pairs (or over
/// the `2n − 1` lags of an equally spaced grid).
fn kernel_matrices(k: &Kernel1d, x: &[f64], max_order: usize) -> Vec<Mat<f64>> {
    let n = x.len();
    let vals: Vec<[f64; 3]> = match uniform_step(x) {
        Some(h) => (0..2 * n - 1)
            .into_par_iter()
            .map(|lag| k.eval((lag as f64 - (n - 1) as f64) * h))
            .collect(),
        None => vec![],
    };
    let at = |i: usize, j: usize| -> [f64; 3] {
        if vals.is_empty() {
            k.eval(x[i] - x[j])
        } else {
            vals[i + n - 1 - j]
        }
    };
    let mut out: Vec<Mat<f64>> = (0..=max_order).map(|_| Mat::zeros(n, n)).collect();
    for j in 0..n {
        for i in 0..n {
            let v = at(i, j);
            for (m, o) in out.iter_mut().enumerate() {
                o[(i, j)] = v[m];
            }
        }
    }
    out
}

/// `g_p = Σ_m Σ_ij ∂θ_p k⁽ᵐ⁾(x_i − x_j) W_m[i, j]`; on an equally spaced grid the sums over
/// each diagonal of `W_m` are taken first, so the kernel derivatives are evaluated once per lag.
/// [`contract_sensitivities`] plus the nugget's share: the diagonal `ν k(0)` of `K` moves
/// with `∂k(0)/∂θ`, so `∂L/∂K` contributes `ν tr(∂L/∂K) ∂k(0)/∂θ`.
fn contract_with_nugget(
    k: &Kernel1d,
    x: &[f64],
    w: &[Option<Mat<f64>>; 3],
    nugget: f64,
) -> Result<Vec<f64>> {
    let mut g = contract_sensitivities(k, x, w)?;
    if let Some(w0) = &w[0] {
        let trace: f64 = (0..w0.nrows()).map(|i| w0[(i, i)]).sum();
        let mut at0 = vec![0.0; g.len()];
        k.grad(0.0, &mut at0);
        for (gp, dp) in g.iter_mut().zip(at0) {
            *gp += nugget * trace * dp;
        }
    }
    Ok(g)
}

fn contract_sensitivities(k: &Kernel1d, x: &[f64], w: &[Option<Mat<f64>>; 3]) -> Result<Vec<f64>> {
    let refs = [
        w[0].as_ref().map(|m| m.as_ref()),
        w[1].as_ref().map(|m| m.as_ref()),
        w[2].as_ref().map(|m| m.as_ref()),
    ];
    let Some(h) = uniform_step(x) else {
        return k.grad_deriv_contract(x, refs);
    };
    let n = x.len();
    // One row per lag `i − j`: the same parallel rows and ordered sum as the kernels' pair
    // contractions.
    contract_rows(2 * n - 1, k.n_params(), |lag, acc, g| {
        let off = lag as isize - (n as isize - 1); // i − j
        let r = off as f64 * h;
        for (m, wm) in refs.iter().enumerate() {
            let Some(wm) = wm else { continue };
            let i0 = off.max(0) as usize;
            let j0 = (-off).max(0) as usize;
            let mut diag = 0.0;
            for t in 0..n - i0.max(j0) {
                diag += wm[(i0 + t, j0 + t)];
            }
            k.grad_deriv(r, m, g)?;
            for (a, gp) in acc.iter_mut().zip(g.iter()) {
                *a += gp * diag;
            }
        }
        Ok(())
    })
}

impl Factor {
    /// Factorises kernel `k` on the points `x`; `max_order` derivative matrices are built.
    pub fn new(k: &Kernel1d, x: &[f64], nugget: f64, max_order: usize, d: usize) -> Result<Self> {
        let nugget = nugget * k.diag();
        let max_order = max_order.min(MAX_ORDER);
        let mats = kernel_matrices(k, x, max_order);
        if mats[0].col_iter().any(|c| c.iter().any(|v| !v.is_finite())) {
            return Err(invalid!("kernel matrix of dimension {d} is not finite"));
        }
        let (kinv, logdet) = inverse_logdet(mats[0].as_ref(), nugget, d)?;
        let n = x.len();
        let mut deriv: [Option<Mat<f64>>; 2] = [None, None];
        for m in 1..=max_order {
            let mut dm = Mat::<f64>::zeros(n, n);
            matmul(dm.as_mut(), mats[m].as_ref(), kinv.as_ref());
            deriv[m - 1] = Some(dm);
        }
        Ok(Self {
            kinv,
            logdet,
            deriv,
        })
    }

    fn d(&self, m: usize) -> &Mat<f64> {
        self.deriv[m - 1]
            .as_ref()
            .expect("derivative matrices are built for every order a term uses")
    }
}

fn to_t<T: Float>(m: &Mat<f64>) -> Mat<T> {
    Mat::from_fn(m.nrows(), m.ncols(), |i, j| T::from_f64(m[(i, j)]))
}

/// Applies `mats[d]` (`m_d × n_d`, or nothing for `None`) along each dimension of the C-order
/// tensor `x` of shape `shape`.
fn apply_modes<T: Float>(x: &[T], shape: &[usize], mats: &[Option<MatRef<'_, T>>]) -> Vec<T> {
    let mut shape = shape.to_vec();
    let mut cur: Option<Vec<T>> = None;
    for (d, a) in mats.iter().enumerate() {
        let Some(a) = a else { continue };
        let src: &[T] = cur.as_deref().unwrap_or(x);
        let pre: usize = shape[..d].iter().product();
        let post: usize = shape[d + 1..].iter().product();
        let mut next = vec![T::ZERO; pre * a.nrows() * post];
        mode_product(src, &mut next, pre, post, *a);
        shape[d] = a.nrows();
        cur = Some(next);
    }
    cur.unwrap_or_else(|| x.to_vec())
}

/// `M[i, j] = Σ_{other indices} x[…i…] y[…j…]`: the Gram matrix of the mode-d unfoldings,
/// `X_(d) Y_(d)ᵀ`, accumulated over the leading indices in order (deterministic).
fn mode_gram<T: Float>(x: &[T], y: &[T], shape: &[usize], d: usize) -> Mat<f64> {
    let n = shape[d];
    let pre: usize = shape[..d].iter().product();
    let post: usize = shape[d + 1..].iter().product();
    let mut acc = Mat::<T>::zeros(n, n);
    if post == 1 {
        // Unfoldings are row-major (pre × n): M = Xᵀ Y in one deterministic product.
        let xm = MatRef::from_row_major_slice(x, pre, n);
        let ym = MatRef::from_row_major_slice(y, pre, n);
        matmul(acc.as_mut(), xm.transpose(), ym);
    } else {
        let mut tmp = Mat::<T>::zeros(n, n);
        for p in 0..pre {
            let xs = &x[p * n * post..(p + 1) * n * post];
            let ys = &y[p * n * post..(p + 1) * n * post];
            let xm = MatRef::from_row_major_slice(xs, n, post);
            let ym = MatRef::from_row_major_slice(ys, n, post);
            matmul(tmp.as_mut(), xm, ym.transpose());
            acc += &tmp;
        }
    }
    Mat::from_fn(n, n, |i, j| acc[(i, j)].to_f64())
}

fn sq_sum<T: Float>(x: &[T]) -> f64 {
    ordered_sum(x.len(), |i| {
        let v = x[i].to_f64();
        v * v
    })
}

/// The optional pointwise nonlinearity: `φ(U)` and `φ′(U)` on every cell.
pub struct Nonlinearity<'a, T> {
    pub value: &'a [T],
    pub deriv: &'a [T],
}

/// Factorises every dimension (in parallel over dimensions).
pub fn factors<T: Float>(prob: &Problem<T>, params: &Params) -> Result<Vec<Factor>> {
    if params.kernels.len() != prob.axes.len() {
        return Err(Error::InvalidShape(format!(
            "{} kernels given for a {}-D grid",
            params.kernels.len(),
            prob.axes.len()
        )));
    }
    let max_orders = prob.max_orders();
    params
        .kernels
        .par_iter()
        .zip(prob.axes.par_iter())
        .enumerate()
        .map(|(d, (k, x))| Factor::new(k, x, prob.nugget, max_orders[d], d))
        .collect()
}

/// Evaluates the objective (and its gradient when `grad`) at `U` (see the module docs).
pub fn objective<T: Float>(
    prob: &Problem<T>,
    params: &Params,
    u: &[T],
    nonlin: Option<Nonlinearity<'_, T>>,
    grad: bool,
    stop: &dyn Interrupt,
) -> Result<Objective<T>> {
    prob.validate()?;
    let n = prob.len();
    if u.len() != n {
        return Err(Error::InvalidShape(format!(
            "U has {} values for {n} grid cells",
            u.len()
        )));
    }
    if !all_finite(u) {
        return Err(invalid!("U must be finite"));
    }
    if let Some(nl) = &nonlin {
        if nl.value.len() != n || nl.deriv.len() != n {
            return Err(Error::InvalidShape(
                "the nonlinearity's values and derivatives need one entry per grid cell".into(),
            ));
        }
        if !all_finite(nl.value) || !all_finite(nl.deriv) {
            return Err(invalid!("the nonlinearity returned non-finite values"));
        }
    }
    for (name, v) in [
        ("log_tau_b", params.log_tau_b),
        ("log_tau_r", params.log_tau_r),
    ] {
        if !v.is_finite() || v.abs() > 700.0 {
            return Err(invalid!("{name} must be finite and within ±700, got {v}"));
        }
    }
    stop.check()?;
    let shape = prob.shape();
    let dims = shape.len();
    let fac = factors(prob, params)?;
    stop.check()?;
    let kinv_t: Vec<Mat<T>> = fac.iter().map(|f| to_t(&f.kinv)).collect();
    let deriv_t: Vec<[Option<Mat<T>>; 2]> = fac
        .iter()
        .map(|f| [f.deriv[0].as_ref().map(to_t), f.deriv[1].as_ref().map(to_t)])
        .collect();
    let dref = |d: usize, m: usize| -> Option<MatRef<'_, T>> {
        if m == 0 {
            None
        } else {
            deriv_t[d][m - 1].as_ref().map(|x| x.as_ref())
        }
    };

    // Prior: A = U ×_all K⁻¹.
    let all_kinv: Vec<Option<MatRef<'_, T>>> = kinv_t.iter().map(|m| Some(m.as_ref())).collect();
    let a = apply_modes(u, &shape, &all_kinv);
    let fit = ordered_sum(n, |i| u[i].to_f64() * a[i].to_f64());
    let logdet: f64 = fac
        .iter()
        .zip(&shape)
        .map(|(f, &nd)| (n / nd) as f64 * f.logdet)
        .sum();
    let prior = 0.5 * fit + 0.5 * logdet;

    // Residual: Σ_t c_t ∘ ∂^{m_t} U + φ(U) − f.
    let term_vals: Vec<Vec<T>> = prob
        .terms
        .iter()
        .map(|t| {
            let mats: Vec<Option<MatRef<'_, T>>> =
                (0..dims).map(|d| dref(d, t.orders[d])).collect();
            apply_modes(u, &shape, &mats)
        })
        .collect();
    let mut resid: Vec<T> = prob.source.iter().map(|&f| -f).collect();
    if let Some(nl) = &nonlin {
        for (r, &p) in resid.iter_mut().zip(nl.value) {
            *r += p;
        }
    }
    for (t, v) in prob.terms.iter().zip(&term_vals) {
        resid.par_iter_mut().enumerate().for_each(|(i, r)| {
            let c = if t.coef.len() == 1 {
                t.coef[0]
            } else {
                t.coef[i]
            };
            *r += c * v[i];
        });
    }
    drop(term_vals);
    let bmis: Vec<T> = prob
        .boundary
        .iter()
        .zip(&prob.boundary_values)
        .map(|(&i, &g)| u[i] - g)
        .collect();
    let boundary_sq = sq_sum(&bmis);
    let residual_sq = sq_sum(&resid);
    let (tau_b, tau_r) = (params.log_tau_b.exp(), params.log_tau_r.exp());
    let nb = prob.boundary.len() as f64;
    let wb = prob.boundary_weight;
    let value = prior
        + wb * (0.5 * tau_b * boundary_sq - 0.5 * nb * params.log_tau_b)
        + 0.5 * tau_r * residual_sq
        - 0.5 * n as f64 * params.log_tau_r;
    let mut out = Objective {
        value,
        prior,
        boundary_sq,
        residual_sq,
        residual: resid,
        grad_u: vec![],
        grad_kernels: vec![],
        grad_log_tau_b: wb * (0.5 * tau_b * boundary_sq - 0.5 * nb),
        grad_log_tau_r: 0.5 * tau_r * residual_sq - 0.5 * n as f64,
    };
    if !grad {
        return Ok(out);
    }
    stop.check()?;

    // ∂L/∂U.
    let mut gu = a.clone();
    let tb = T::from_f64(wb * tau_b);
    for (&i, &b) in prob.boundary.iter().zip(&bmis) {
        gu[i] += tb * b;
    }
    let tr = T::from_f64(tau_r);
    if let Some(nl) = &nonlin {
        gu.par_iter_mut().enumerate().for_each(|(i, g)| {
            *g += tr * nl.deriv[i] * out.residual[i];
        });
    }
    let deriv_tt: Vec<[Option<Mat<T>>; 2]> = deriv_t
        .iter()
        .map(|ms| {
            [
                ms[0].as_ref().map(|m| m.transpose().to_owned()),
                ms[1].as_ref().map(|m| m.transpose().to_owned()),
            ]
        })
        .collect();
    // Sensitivities ∂L/∂K_d, ∂L/∂K_d⁽¹⁾, ∂L/∂K_d⁽²⁾.
    let mut sens: Vec<[Option<Mat<f64>>; 3]> = (0..dims).map(|_| [None, None, None]).collect();
    for term in &prob.terms {
        let g: Vec<T> = out
            .residual
            .par_iter()
            .enumerate()
            .map(|(i, &r)| {
                let c = if term.coef.len() == 1 {
                    term.coef[0]
                } else {
                    term.coef[i]
                };
                tr * c * r
            })
            .collect();
        let adj: Vec<Option<MatRef<'_, T>>> = (0..dims)
            .map(|d| match term.orders[d] {
                0 => None,
                m => deriv_tt[d][m - 1].as_ref().map(|x| x.as_ref()),
            })
            .collect();
        let back = apply_modes(&g, &shape, &adj);
        gu.par_iter_mut().zip(&back).for_each(|(a, &b)| *a += b);
        for d in 0..dims {
            let m = term.orders[d];
            if m == 0 {
                continue;
            }
            stop.check()?;
            // W: the term's other derivatives applied to U.
            let others: Vec<Option<MatRef<'_, T>>> = (0..dims)
                .map(|e| {
                    if e == d {
                        None
                    } else {
                        dref(e, term.orders[e])
                    }
                })
                .collect();
            let w = apply_modes(u, &shape, &others);
            let s = mode_gram(&g, &w, &shape, d);
            let nd = shape[d];
            let mut sk = Mat::<f64>::zeros(nd, nd);
            matmul(sk.as_mut(), s.as_ref(), fac[d].kinv.as_ref());
            // ∂/∂K⁽ᵐ⁾ += S K⁻¹;  ∂/∂K −= Dᵀ S K⁻¹.
            let mut dk = Mat::<f64>::zeros(nd, nd);
            matmul(dk.as_mut(), fac[d].d(m).transpose(), sk.as_ref());
            add_into(&mut sens[d][m], sk);
            add_into(&mut sens[d][0], Mat::from_fn(nd, nd, |i, j| -dk[(i, j)]));
        }
    }
    out.grad_u = gu;
    // Prior fit and log-determinant.
    for d in 0..dims {
        stop.check()?;
        let nd = shape[d];
        let mut only: Vec<Option<MatRef<'_, T>>> = vec![None; dims];
        only[d] = Some(kinv_t[d].as_ref());
        let b = apply_modes(u, &shape, &only);
        let ab = mode_gram(&a, &b, &shape, d);
        let c = 0.5 * (n / nd) as f64;
        let kinv = &fac[d].kinv;
        let p = Mat::from_fn(nd, nd, |i, j| {
            -0.25 * (ab[(i, j)] + ab[(j, i)]) + c * kinv[(i, j)]
        });
        add_into(&mut sens[d][0], p);
    }
    out.grad_kernels = params
        .kernels
        .par_iter()
        .zip(prob.axes.par_iter())
        .zip(sens.par_iter())
        .map(|((k, x), s)| contract_with_nugget(k, x, s, prob.nugget))
        .collect::<Result<Vec<_>>>()?;
    Ok(out)
}

fn add_into(slot: &mut Option<Mat<f64>>, m: Mat<f64>) {
    match slot {
        Some(s) => *s += &m,
        None => *slot = Some(m),
    }
}

/// Lower Cholesky factors `L_d` of `K_d + νI`, one per dimension: the whitened coordinates
/// `U = Z ×₁ L₁ … ×_D L_D` turn the prior fit into `½‖Z‖²` (a change of variables that a
/// solver may optimise in; the objective and its minima are the same).
pub fn cholesky_factors<T: Float>(prob: &Problem<T>, params: &Params) -> Result<Vec<Mat<f64>>> {
    if params.kernels.len() != prob.axes.len() {
        return Err(Error::InvalidShape(
            "one kernel per grid dimension is needed".into(),
        ));
    }
    (0..prob.axes.len())
        .into_par_iter()
        .map(|d| {
            let k = &kernel_matrices(&params.kernels[d], &prob.axes[d], 0)[0];
            let jitter = prob.nugget * params.kernels[d].diag();
            cholesky_lower(k.as_ref(), jitter).ok_or_else(|| {
                invalid!(
                    "K_{d} + nugget·I is not numerically positive definite; increase the nugget"
                )
            })
        })
        .collect()
}

/// `Σ_m Σ_ij ∂K_d⁽ᵐ⁾[i, j]/∂θ_p · W_m[i, j]` for every parameter of dimension `d`'s kernel
/// (`K_d⁽⁰⁾` with its nugget `ν k_d(0) I`; `K⁽ᵐ⁾[i, j] = k⁽ᵐ⁾(x_i − x_j)`), over the orders
/// `m = 0, 1, 2` whose `W_m` is given.
pub fn kernel_contract<T: Float>(
    prob: &Problem<T>,
    params: &Params,
    d: usize,
    w: [Option<MatRef<'_, f64>>; 3],
) -> Result<Vec<f64>> {
    let n = prob.axes.get(d).map(|a| a.len()).unwrap_or(0);
    if d >= params.kernels.len() {
        return Err(Error::InvalidShape(format!("dimension {d} out of range")));
    }
    if w.iter().flatten().any(|m| m.nrows() != n || m.ncols() != n) {
        return Err(Error::InvalidShape(format!("W not {n}×{n}")));
    }
    contract_with_nugget(
        &params.kernels[d],
        &prob.axes[d],
        &w.map(|m| m.map(|m| m.to_owned())),
        prob.nugget,
    )
}

/// Cross-covariance rows `k⁽ᵒ⁾(x*_i − x_j)` times `K⁻¹`: the matrix that maps grid values to
/// the conditional mean's `o`-th derivative at the points `xs` (`len(xs) × n`).
fn interp_matrix(
    k: &Kernel1d,
    x: &[f64],
    xs: &[f64],
    kinv: &Mat<f64>,
    order: usize,
) -> Result<Mat<f64>> {
    let c = k.matrix(xs, x, order, 0)?;
    let mut p = Mat::<f64>::zeros(xs.len(), x.len());
    matmul(p.as_mut(), c.as_ref(), kinv.as_ref());
    Ok(p)
}

fn check_u<T: Float>(prob: &Problem<T>, params: &Params, u: &[T]) -> Result<()> {
    prob.validate()?;
    if u.len() != prob.len() {
        return Err(Error::InvalidShape(format!(
            "U has {} values for {} grid cells",
            u.len(),
            prob.len()
        )));
    }
    if params.kernels.len() != prob.axes.len() {
        return Err(Error::InvalidShape(
            "one kernel per grid dimension is needed".into(),
        ));
    }
    Ok(())
}

/// The conditional mean (or its derivative of order `orders[d]` along each dimension) on the
/// tensor grid `test_axes[0] × … × test_axes[D−1]`: `U ×_d (C_d K_d⁻¹)`.
pub fn predict_grid<T: Float>(
    prob: &Problem<T>,
    params: &Params,
    u: &[T],
    test_axes: &[Vec<f64>],
    orders: &[usize],
) -> Result<Vec<T>> {
    check_u(prob, params, u)?;
    let dims = prob.axes.len();
    if test_axes.len() != dims || orders.len() != dims {
        return Err(Error::InvalidShape(format!(
            "test axes and derivative orders must have one entry per dimension ({dims})"
        )));
    }
    if orders.iter().any(|&o| o > MAX_ORDER) {
        return Err(invalid!("derivative orders must be at most {MAX_ORDER}"));
    }
    if test_axes
        .iter()
        .any(|a| a.is_empty() || a.iter().any(|v| !v.is_finite()))
    {
        return Err(invalid!("test axes must be non-empty and finite"));
    }
    let mats: Vec<Mat<T>> = (0..dims)
        .into_par_iter()
        .map(|d| {
            let f = Factor::new(&params.kernels[d], &prob.axes[d], prob.nugget, 0, d)?;
            Ok(to_t(&interp_matrix(
                &params.kernels[d],
                &prob.axes[d],
                &test_axes[d],
                &f.kinv,
                orders[d],
            )?))
        })
        .collect::<Result<Vec<_>>>()?;
    let refs: Vec<Option<MatRef<'_, T>>> = mats.iter().map(|m| Some(m.as_ref())).collect();
    Ok(apply_modes(u, &prob.shape(), &refs))
}

/// The conditional mean at arbitrary points (`M × D`, one row per point):
/// `⟨A, c₁ ⊗ … ⊗ c_D⟩` with `A = U ×_all K⁻¹` and `c_d` the cross-covariance rows.
pub fn predict_points<T: Float>(
    prob: &Problem<T>,
    params: &Params,
    u: &[T],
    points: MatRef<'_, f64>,
) -> Result<Vec<T>> {
    check_u(prob, params, u)?;
    let dims = prob.axes.len();
    if points.ncols() != dims {
        return Err(Error::InvalidShape(format!(
            "points must have {dims} columns, got {}",
            points.ncols()
        )));
    }
    if points.col_iter().any(|c| c.iter().any(|v| !v.is_finite())) {
        return Err(invalid!("points must be finite"));
    }
    let fac: Vec<Factor> = (0..dims)
        .into_par_iter()
        .map(|d| Factor::new(&params.kernels[d], &prob.axes[d], prob.nugget, 0, d))
        .collect::<Result<Vec<_>>>()?;
    let kinv_t: Vec<Option<Mat<T>>> = fac.iter().map(|f| Some(to_t(&f.kinv))).collect();
    let refs: Vec<Option<MatRef<'_, T>>> = kinv_t
        .iter()
        .map(|m| m.as_ref().map(|x| x.as_ref()))
        .collect();
    let shape = prob.shape();
    let a = apply_modes(u, &shape, &refs);
    let out: Vec<T> = (0..points.nrows())
        .into_par_iter()
        .map_init(Vec::new, |scratch: &mut Vec<f64>, p| {
            // Contract the last dimension first, then the rest in reverse order.
            let rows: Vec<Vec<f64>> = (0..dims)
                .map(|d| {
                    prob.axes[d]
                        .iter()
                        .map(|&xj| params.kernels[d].eval(points[(p, d)] - xj)[0])
                        .collect()
                })
                .collect();
            let n_last = shape[dims - 1];
            scratch.clear();
            scratch.extend(a.chunks(n_last).map(|c| {
                c.iter()
                    .zip(&rows[dims - 1])
                    .map(|(&v, &w)| v.to_f64() * w)
                    .sum::<f64>()
            }));
            for d in (0..dims - 1).rev() {
                let nd = shape[d];
                let outer = scratch.len() / nd;
                for o in 0..outer {
                    let mut s = 0.0;
                    for i in 0..nd {
                        s += scratch[o * nd + i] * rows[d][i];
                    }
                    scratch[o] = s;
                }
                scratch.truncate(outer);
            }
            T::from_f64(scratch[0])
        })
        .collect();
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::NeverInterrupt;

    fn lin(n: usize, a: f64, b: f64) -> Vec<f64> {
        (0..n)
            .map(|i| a + (b - a) * i as f64 / (n - 1) as f64)
            .collect()
    }

    fn stm(p: &[f64]) -> Kernel1d {
        Kernel1d::from_params("stm", p).unwrap()
    }

    fn problem_2d() -> (Problem<f64>, Params, Vec<f64>, Vec<f64>, Vec<f64>) {
        // One equally spaced axis (Toeplitz path), one not (general path).
        let axes = vec![lin(6, 0.0, 1.0), vec![-0.5, -0.2, 0.05, 0.4, 0.7]];
        let n = 30;
        let shape = [6, 5];
        let boundary = boundary_cells(&shape);
        let coef: Vec<f64> = (0..n).map(|i| 1.0 + 0.1 * (i as f64).sin()).collect();
        let prob = Problem {
            axes,
            terms: vec![
                Term {
                    coef: vec![1.3],
                    orders: vec![2, 0],
                },
                Term {
                    coef,
                    orders: vec![0, 2],
                },
                Term {
                    coef: vec![0.7],
                    orders: vec![1, 1],
                },
                Term {
                    coef: vec![-2.0],
                    orders: vec![0, 0],
                },
            ],
            source: (0..n).map(|i| (i as f64 * 0.3).cos()).collect(),
            boundary_values: boundary.iter().map(|&i| 0.1 * i as f64).collect(),
            boundary,
            boundary_weight: 3.0,
            nugget: 1e-2,
        };
        let params = Params {
            kernels: vec![
                stm(&[0.6, 0.4, 0.5, 1.2, 0.3, 0.4]),
                Kernel1d::from_params("sm", &[0.8, 0.9, 0.35]).unwrap(),
            ],
            log_tau_b: 0.3,
            log_tau_r: -0.2,
        };
        let u: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).sin()).collect();
        let phi: Vec<f64> = u.iter().map(|v| v * (v * v - 1.0)).collect();
        let dphi: Vec<f64> = u.iter().map(|v| 3.0 * v * v - 1.0).collect();
        (prob, params, u, phi, dphi)
    }

    fn value(prob: &Problem<f64>, params: &Params, u: &[f64]) -> f64 {
        let phi: Vec<f64> = u.iter().map(|v| v * (v * v - 1.0)).collect();
        let dphi: Vec<f64> = u.iter().map(|v| 3.0 * v * v - 1.0).collect();
        let nl = Nonlinearity {
            value: &phi,
            deriv: &dphi,
        };
        objective(prob, params, u, Some(nl), false, &NeverInterrupt)
            .unwrap()
            .value
    }

    #[test]
    fn gradient_matches_finite_differences() {
        let (prob, params, u, phi, dphi) = problem_2d();
        let nl = Nonlinearity {
            value: &phi,
            deriv: &dphi,
        };
        let o = objective(&prob, &params, &u, Some(nl), true, &NeverInterrupt).unwrap();
        let rel = |a: f64, b: f64| (a - b).abs() / b.abs().max(1.0);
        for i in [0, 7, 13, 29] {
            let h = 1e-6;
            let (mut a, mut b) = (u.clone(), u.clone());
            a[i] += h;
            b[i] -= h;
            let fd = (value(&prob, &params, &a) - value(&prob, &params, &b)) / (2.0 * h);
            assert!(
                rel(o.grad_u[i], fd) < 1e-6,
                "U[{i}]: {} vs {fd}",
                o.grad_u[i]
            );
        }
        for d in 0..2 {
            let p = params.kernels[d].params();
            let kind = if d == 0 { "stm" } else { "sm" };
            for j in 0..p.len() {
                let h = 1e-6 * p[j].abs().max(1.0);
                let (mut a, mut b) = (params.clone(), params.clone());
                let (mut pa, mut pb) = (p.clone(), p.clone());
                pa[j] += h;
                pb[j] -= h;
                a.kernels[d] = Kernel1d::from_params(kind, &pa).unwrap();
                b.kernels[d] = Kernel1d::from_params(kind, &pb).unwrap();
                let fd = (value(&prob, &a, &u) - value(&prob, &b, &u)) / (2.0 * h);
                let g = o.grad_kernels[d][j];
                assert!(rel(g, fd) < 1e-5, "dim {d} param {j}: {g} vs {fd}");
            }
        }
        let h = 1e-6;
        let (mut a, mut b) = (params.clone(), params.clone());
        a.log_tau_b += h;
        b.log_tau_b -= h;
        let fd = (value(&prob, &a, &u) - value(&prob, &b, &u)) / (2.0 * h);
        assert!(rel(o.grad_log_tau_b, fd) < 1e-6);
        let (mut a, mut b) = (params.clone(), params.clone());
        a.log_tau_r += h;
        b.log_tau_r -= h;
        let fd = (value(&prob, &a, &u) - value(&prob, &b, &u)) / (2.0 * h);
        assert!(rel(o.grad_log_tau_r, fd) < 1e-6);
    }

    #[test]
    fn results_do_not_depend_on_thread_count() {
        let (prob, params, u, phi, dphi) = problem_2d();
        let run = |t: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(t)
                .build()
                .unwrap();
            pool.install(|| {
                let nl = Nonlinearity {
                    value: &phi,
                    deriv: &dphi,
                };
                objective(&prob, &params, &u, Some(nl), true, &NeverInterrupt).unwrap()
            })
        };
        let (a, b) = (run(1), run(3));
        assert_eq!(a.value.to_bits(), b.value.to_bits());
        assert_eq!(a.grad_u, b.grad_u);
        assert_eq!(a.grad_kernels, b.grad_kernels);
    }

    #[test]
    fn predictions_reproduce_the_grid_values() {
        let (prob, params, u, _, _) = problem_2d();
        let g = predict_grid(&prob, &params, &u, &prob.axes, &[0, 0]).unwrap();
        let pts = Mat::from_fn(30, 2, |i, d| {
            prob.axes[d][if d == 0 { i / 5 } else { i % 5 }]
        });
        let p = predict_points(&prob, &params, &u, pts.as_ref()).unwrap();
        for i in 0..30 {
            // K_cross K⁻¹ U = (K − νI) K⁻¹ U = U − ν K⁻¹ U on the grid.
            assert!((g[i] - u[i]).abs() < 0.1, "{} vs {}", g[i], u[i]);
            assert!((g[i] - p[i]).abs() < 1e-10);
        }
    }

    #[test]
    fn bad_inputs_are_rejected() {
        let (prob, params, u, _, _) = problem_2d();
        let ok = |p: &Problem<f64>| objective(p, &params, &u, None, false, &NeverInterrupt);
        assert!(ok(&prob).is_ok());
        let mut p = prob.clone();
        p.terms[0].orders = vec![3, 0];
        assert!(ok(&p).is_err());
        let mut p = prob.clone();
        p.source[3] = f64::NAN;
        assert!(ok(&p).is_err());
        let mut p = prob.clone();
        p.boundary_values[0] = f64::INFINITY;
        assert!(ok(&p).is_err());
        let mut p = prob.clone();
        p.axes[0] = vec![0.0, 0.0, 1.0, 2.0, 3.0, 4.0];
        assert!(ok(&p).is_err());
        let mut p = prob.clone();
        p.axes[1] = vec![0.0, 1.0];
        p.source.truncate(12);
        assert!(ok(&p).is_err());
        let mut p = prob.clone();
        p.nugget = 0.0;
        assert!(ok(&p).is_err());
        assert!(objective(&prob, &params, &u[..5], None, false, &NeverInterrupt).is_err());
    }

    #[test]
    fn cholesky_factors_are_lower_and_reconstruct() {
        let (prob, params, ..) = problem_2d();
        let ls = cholesky_factors(&prob, &params).unwrap();
        for (d, l) in ls.iter().enumerate() {
            let x = &prob.axes[d];
            let k = params.kernels[d].matrix(x, x, 0, 0).unwrap();
            for i in 0..l.nrows() {
                for j in 0..l.ncols() {
                    if j > i {
                        assert_eq!(l[(i, j)], 0.0);
                    }
                    let llt: f64 = (0..l.ncols()).map(|t| l[(i, t)] * l[(j, t)]).sum();
                    let jitter = prob.nugget * params.kernels[d].diag();
                    let want = k[(i, j)] + if i == j { jitter } else { 0.0 };
                    assert!((llt - want).abs() < 1e-12);
                }
            }
        }
    }

    #[test]
    fn boundary_cells_of_a_3x4_grid() {
        assert_eq!(
            boundary_cells(&[3, 4]),
            vec![0, 1, 2, 3, 4, 7, 8, 9, 10, 11]
        );
        assert_eq!(boundary_cells(&[4]), vec![0, 3]);
    }
}
