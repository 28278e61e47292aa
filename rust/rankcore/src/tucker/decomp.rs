//! HOSVD, ST-HOSVD and HOOI, full or partial (a subset of the modes), with fixed ranks or
//! ranks chosen from an error target, exact or randomized subspaces, and a mask of missing
//! entries filled in by imputation iterations.
//!
//! Error without reconstruction: every method here ends with `G = X ×ₖ Uₖᵀ` for orthonormal
//! `Uₖ`, an orthogonal projection, so `‖X - G ×ₖ Uₖ‖² = ‖X‖² - ‖G‖²`. Both norms are summed
//! in f64, but `G`'s entries carry the working precision's rounding (about `eps·‖X‖`), so the
//! difference is accurate to about `eps·‖X‖²`; when it is below `1e4·eps·‖X‖²` the final
//! error comes from the residual instead (see `final_error`). Ranks are chosen from f64
//! eigenvalues (f32 input widened), so error targets hold down to the rounding floor.

use super::tensor::{
    multi_mode_product, multi_mode_product_with, unfolding_gram_f64, Tensor, TensorRef, Unfolding,
};
use crate::linalg::{orthonormalize, svd_thin};
use crate::operator::Operator;
use crate::rng::RandomMatrix;
use crate::svd::{adaptive_svd, randomized_svd, AdaptiveParams, Normalizer, RsvdParams};
use crate::{invalid, Error, Float, Interrupt, Result};
use faer::{Mat, MatRef};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Method {
    /// Each factor from the original tensor (De Lathauwer et al. 2000a).
    Hosvd,
    /// Each factor from the tensor already truncated in the previous modes (Vannieuwenhoven,
    /// Vandebril & Meerbergen 2012): cheaper, and usually a little more accurate.
    StHosvd,
    /// Higher-order orthogonal iteration (De Lathauwer et al. 2000b) from an initial guess.
    Hooi,
}

#[derive(Clone, Copy, Debug)]
pub enum SvdMethod {
    /// Leading eigenvectors of the unfolding's Gram matrix, or the SVD of the unfolding when
    /// it is at most twice as wide as tall.
    Exact,
    /// The randomized range finder on the unfolding (Halko et al. 2011).
    Randomized {
        n_oversamples: usize,
        n_iter: usize,
        seed: u64,
    },
}

/// How HOOI starts.
#[derive(Clone, Debug)]
pub enum Init<T> {
    /// From ST-HOSVD (TensorLy's `init="svd"`).
    Svd,
    /// Orthonormalised Gaussian factors from this seed (TensorLy's `init="random"`).
    Random(u64),
    /// Given factors, one per decomposed mode (their columns are orthonormalised first).
    Given(Vec<Mat<T>>),
}

#[derive(Clone, Debug)]
pub struct TuckerParams<T> {
    /// The modes to decompose, in the order ST-HOSVD processes them.
    pub modes: Vec<usize>,
    /// Rank per entry of `modes`; an upper bound when `error_tol` is set.
    pub ranks: Vec<usize>,
    /// Relative error target that chooses the ranks (ST-HOSVD / HOSVD bound).
    pub error_tol: Option<f64>,
    pub method: Method,
    pub svd: SvdMethod,
    pub init: Init<T>,
    /// Per entry of `modes`: keep the initial factor (needs `Init::Given`).
    pub fixed: Vec<bool>,
    pub n_iter_max: usize,
    /// HOOI stops when the relative error changes by less than this.
    pub tol: f64,
    /// Imputation rounds of the initial decomposition when a mask is given (TensorLy's
    /// `svd_mask_repeats`).
    pub mask_repeats: usize,
    pub verbose: bool,
}

/// `X ≈ core ×ₖ factors[k]` over the decomposed modes.
#[derive(Clone, Debug)]
pub struct TuckerResult<T> {
    pub core: Tensor<T>,
    /// One per entry of `modes`, `Iₖ × rₖ` with orthonormal columns.
    pub factors: Vec<Mat<T>>,
    /// Relative error after each HOOI iteration (one entry for the direct methods).
    pub errors: Vec<f64>,
    pub n_iter: usize,
    pub converged: bool,
}

impl<T> TuckerResult<T> {
    pub fn rel_error(&self) -> f64 {
        *self.errors.last().unwrap_or(&0.0)
    }
}

fn validate<T: Float>(shape: &[usize], p: &TuckerParams<T>) -> Result<()> {
    let n = shape.len();
    if p.modes.is_empty() {
        return Err(invalid!("modes must list at least one mode"));
    }
    let mut seen = vec![false; n];
    for &m in &p.modes {
        if m >= n {
            return Err(invalid!("modes must be in [0, {n}), got {m}"));
        }
        if std::mem::replace(&mut seen[m], true) {
            return Err(invalid!("modes must be distinct, got mode {m} twice"));
        }
    }
    if p.ranks.len() != p.modes.len() || p.fixed.len() != p.modes.len() {
        return Err(invalid!(
            "rank must have one entry per decomposed mode ({}), got {}",
            p.modes.len(),
            p.ranks.len()
        ));
    }
    for (&m, &r) in p.modes.iter().zip(&p.ranks) {
        if r == 0 || r > shape[m] {
            return Err(invalid!(
                "rank for mode {m} must be in [1, {}], got {r}",
                shape[m]
            ));
        }
    }
    if let Some(e) = p.error_tol {
        if !(e > 0.0 && e < 1.0) {
            return Err(invalid!("tol (error target) must be in (0, 1), got {e}"));
        }
    }
    if p.fixed.iter().any(|&f| f) && !matches!(p.init, Init::Given(_)) {
        return Err(invalid!(
            "fixed_factors needs init=(core, factors) giving those factors"
        ));
    }
    if let Init::Given(fs) = &p.init {
        if fs.len() != p.modes.len() {
            return Err(Error::InvalidShape(format!(
                "init must give one factor per decomposed mode ({}), got {}",
                p.modes.len(),
                fs.len()
            )));
        }
        for ((f, &m), &r) in fs.iter().zip(&p.modes).zip(&p.ranks) {
            if f.nrows() != shape[m] || f.ncols() != r {
                return Err(Error::InvalidShape(format!(
                    "init factor for mode {m} must be {}x{r}, got {}x{}",
                    shape[m],
                    f.nrows(),
                    f.ncols()
                )));
            }
        }
    }
    Ok(())
}

/// The leading left singular vectors of `X₍ₙ₎` and, for the exact method, all its squared
/// singular values (non-increasing).
struct Subspace<T> {
    u: Mat<T>,
    sq_values: Vec<f64>,
}

/// Materialised unfolding (only for small tensors: the HOOI projections).
fn unfold_small<T: Float>(t: TensorRef<'_, T>, n: usize) -> Mat<T> {
    let op = Unfolding::new(t, n);
    let (m, c) = crate::operator::LinOp::shape(&op);
    let eye = Mat::<T>::identity(m, m);
    let mut out = Mat::<T>::zeros(c, m);
    crate::operator::LinOp::mul_t(&op, eye.as_ref(), out.as_mut());
    out.transpose().to_owned()
}

fn exact_subspace<T: Float>(t: TensorRef<'_, T>, n: usize, r: usize) -> Result<Subspace<T>> {
    let i_n = t.shape()[n];
    let cols = t.len() / i_n;
    // Both paths work in f64 (f32 input widened): the squared singular values choose the
    // ranks from the error target, and f32 rounding of the Gram (about eps·σ₁²) would hide
    // a tail of relative energy 1e-7, i.e. relative errors below about 3e-4.
    let (u, s, squared) = if cols <= 2 * i_n {
        let a = unfold_small(t, n);
        let a64 = Mat::<f64>::from_fn(a.nrows(), a.ncols(), |i, j| a[(i, j)].to_f64());
        let (u, s, _) = svd_thin(a64.as_ref())?;
        (u, s, false)
    } else {
        // Gram eigenvectors: singular values below sqrt(eps64)·σ₁ are lost, but the leading
        // subspace is as accurate as the gap allows, at a fraction of the SVD's cost.
        let g = unfolding_gram_f64(t, n);
        let (u, s) = crate::linalg::eigh_desc(
            g.as_ref(),
            "eigendecomposition of the unfolding's Gram matrix",
        )?;
        (u, s, true)
    };
    let u = Mat::<T>::from_fn(u.nrows(), u.ncols(), |i, j| T::from_f64(u[(i, j)]));
    let mut sq: Vec<f64> = s
        .iter()
        .map(|&x| {
            if squared {
                x.to_f64()
            } else {
                x.to_f64().powi(2)
            }
        })
        .collect();
    sq.resize(i_n, 0.0);
    let k = r.min(u.ncols());
    let mut out = Mat::<T>::zeros(i_n, r);
    out.as_mut()
        .subcols_mut(0, k)
        .copy_from(u.as_ref().subcols(0, k));
    if k < r {
        // fewer columns than asked (more rank than the unfolding has columns): complete
        fill_orthonormal(&mut out, k, 0x5eed);
    }
    Ok(Subspace {
        u: out,
        sq_values: sq,
    })
}

/// Replaces columns `k..` of `u` by random directions orthonormal to the first `k`.
fn fill_orthonormal<T: Float>(u: &mut Mat<T>, k: usize, seed: u64) {
    let (m, r) = u.shape();
    let mut extra = Mat::<T>::zeros(m, r);
    RandomMatrix::new(seed, 7).fill_normal(0, 0, extra.as_mut());
    extra
        .as_mut()
        .subcols_mut(0, k)
        .copy_from(u.as_ref().subcols(0, k));
    orthonormalize(extra.as_mut());
    u.as_mut()
        .subcols_mut(k, r - k)
        .copy_from(extra.as_ref().subcols(k, r - k));
}

fn mode_seed(seed: u64, mode: usize) -> u64 {
    seed ^ (mode as u64 + 1).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

/// Leading rank-`r` subspace of `X₍ₙ₎`; with `budget`, the smallest rank ≤ `r` whose
/// discarded energy fits it. Returns the subspace and the discarded energy when known.
fn subspace<T: Float>(
    t: TensorRef<'_, T>,
    n: usize,
    r: usize,
    budget: Option<f64>,
    svd: SvdMethod,
    stop: &dyn Interrupt,
) -> Result<(Mat<T>, Option<f64>)> {
    match svd {
        SvdMethod::Exact => {
            let sub = exact_subspace(t, n, r)?;
            let total: f64 = sub.sq_values.iter().sum();
            let Some(b) = budget else {
                let kept: f64 = sub.sq_values[..r].iter().sum();
                return Ok((sub.u, Some((total - kept).max(0.0))));
            };
            // smallest rank whose tail fits the budget (tails summed from the small end)
            let mut tail = 0.0f64;
            let mut rank = sub.sq_values.len();
            while rank > 1 && tail + sub.sq_values[rank - 1] <= b {
                tail += sub.sq_values[rank - 1];
                rank -= 1;
            }
            let rank = rank.min(r);
            let discarded: f64 = sub.sq_values[rank..].iter().sum();
            Ok((sub.u.as_ref().subcols(0, rank).to_owned(), Some(discarded)))
        }
        SvdMethod::Randomized {
            n_oversamples,
            n_iter,
            seed,
        } => {
            let op = Unfolding::new(t, n);
            let a = Operator::new(&op, false);
            let seed = mode_seed(seed, n);
            if let Some(b) = budget {
                let norm2 = t.sq_norm();
                let rel = if norm2 > 0.0 { (b / norm2).sqrt() } else { 0.5 };
                let p = AdaptiveParams {
                    tol: rel.clamp(1e-12, 0.999_999),
                    block_size: 8,
                    n_iter,
                    max_rank: r,
                    transpose: false,
                    seed,
                };
                let s = adaptive_svd(&a, &p, stop)?;
                let disc = s.rel_error.map(|e| e * e * norm2);
                Ok((s.u, disc))
            } else {
                let p = RsvdParams {
                    n_components: r,
                    n_oversamples,
                    n_iter,
                    normalizer: Normalizer::Lu,
                    transpose: false,
                    seed,
                };
                Ok((randomized_svd(&a, &p, stop)?.u, None))
            }
        }
    }
}

/// `X ×ₖ Uₖᵀ` over the listed (mode, factor) pairs, skipping `skip`.
fn project<T: Float>(
    x: TensorRef<'_, T>,
    modes: &[usize],
    factors: &[Mat<T>],
    skip: Option<usize>,
    stop: &dyn Interrupt,
) -> Result<Tensor<T>> {
    let mats: Vec<(usize, MatRef<'_, T>)> = modes
        .iter()
        .zip(factors)
        .enumerate()
        .filter(|(i, _)| Some(*i) != skip)
        .map(|(_, (&m, f))| (m, f.transpose()))
        .collect();
    multi_mode_product_with(x, &mats, stop)
}

/// `core ×ₖ Uₖ` (the reconstruction).
pub fn reconstruct<T: Float>(
    core: TensorRef<'_, T>,
    modes: &[usize],
    factors: &[Mat<T>],
) -> Result<Tensor<T>> {
    let mats: Vec<(usize, MatRef<'_, T>)> = modes
        .iter()
        .zip(factors)
        .map(|(&m, f)| (m, f.as_ref()))
        .collect();
    multi_mode_product(core, &mats)
}

/// Initial factors by HOSVD or ST-HOSVD (with the error-target rank rule).
fn direct<T: Float>(
    x: TensorRef<'_, T>,
    norm2: f64,
    p: &TuckerParams<T>,
    sequential: bool,
    stop: &dyn Interrupt,
) -> Result<Vec<Mat<T>>> {
    let nm = p.modes.len();
    // Budget for the discarded energy, ‖X - X̂‖² ≤ Σₖ discardedₖ (both HOSVD and ST-HOSVD):
    // what is left is split evenly over the modes still to come, so modes that discard less
    // than their share pass the rest on (Vannieuwenhoven et al. 2012 split it evenly).
    let mut budget = p.error_tol.map(|e| e * e * norm2);
    let mut factors: Vec<Mat<T>> = Vec::with_capacity(nm);
    let mut cur: Option<Tensor<T>> = None;
    for (i, (&m, &r)) in p.modes.iter().zip(&p.ranks).enumerate() {
        stop.check()?;
        let view = match (&cur, sequential) {
            (Some(c), true) => c.view(),
            _ => x,
        };
        let share = budget.map(|b| b / (nm - i) as f64);
        let (u, discarded) = subspace(view, m, r, share, p.svd, stop)?;
        if let (Some(b), Some(d)) = (budget.as_mut(), discarded) {
            *b = (*b - d).max(0.0);
        }
        if sequential {
            let next = super::tensor::mode_product_with(view, u.transpose(), m, stop)?;
            cur = Some(next);
        }
        factors.push(u);
    }
    Ok(factors)
}

fn random_factors<T: Float>(
    shape: &[usize],
    modes: &[usize],
    ranks: &[usize],
    seed: u64,
) -> Vec<Mat<T>> {
    modes
        .iter()
        .zip(ranks)
        .map(|(&m, &r)| {
            let mut u = Mat::<T>::zeros(shape[m], r);
            RandomMatrix::new(seed, 1 + m as u32).fill_normal(0, 0, u.as_mut());
            orthonormalize(u.as_mut());
            u
        })
        .collect()
}

/// The relative error of `core ×ₖ Uₖ`: by `‖X‖² - ‖G‖²` when that is well above its rounding
/// (G's entries carry about `eps·‖X‖` each, so the difference is known to about
/// `eps·‖X‖²` times a modest factor), otherwise from the residual itself (one
/// reconstruction, summed in f64), so that small errors are reported as they are.
fn final_error<T: Float>(
    x: TensorRef<'_, T>,
    norm2: f64,
    core: &Tensor<T>,
    modes: &[usize],
    factors: &[Mat<T>],
) -> Result<f64> {
    let by_norms = rel(norm2, core.sq_norm());
    if norm2 <= 0.0 || by_norms * by_norms > 1e4 * T::EPSILON.to_f64() {
        return Ok(by_norms);
    }
    let rec = reconstruct(core.view(), modes, factors)?.into_c_order();
    let mut err2 = 0.0f64;
    let mut i = 0;
    x.for_each_c(|v| {
        err2 += (v.to_f64() - rec.data[i].to_f64()).powi(2);
        i += 1;
    });
    Ok((err2 / norm2).sqrt())
}

fn rel(norm2: f64, core2: f64) -> f64 {
    if norm2 > 0.0 {
        ((norm2 - core2).max(0.0) / norm2).sqrt()
    } else {
        0.0
    }
}

/// Tucker decomposition of `x` (see [`TuckerParams`]).
pub fn tucker<T: Float>(
    x: TensorRef<'_, T>,
    p: &TuckerParams<T>,
    stop: &dyn Interrupt,
) -> Result<TuckerResult<T>> {
    validate(x.shape(), p)?;
    let norm2 = x.sq_norm();
    let mut factors = initial(x, norm2, p, stop)?;
    if p.method != Method::Hooi {
        let core = project(x, &p.modes, &factors, None, stop)?;
        let err = final_error(x, norm2, &core, &p.modes, &factors)?;
        return Ok(TuckerResult {
            core,
            factors,
            errors: vec![err],
            n_iter: 0,
            converged: true,
        });
    }
    let mut errors = Vec::new();
    let mut core = project(x, &p.modes, &factors, None, stop)?;
    let mut converged = false;
    let mut n_iter = 0;
    for it in 0..p.n_iter_max {
        stop.check()?;
        core = hooi_sweep(x, p, &mut factors, stop)?;
        n_iter = it + 1;
        let err = rel(norm2, core.sq_norm());
        if p.verbose {
            eprintln!("tucker: iteration {n_iter}, relative error {err:.6e}");
        }
        let done = errors
            .last()
            .is_some_and(|&prev: &f64| (prev - err).abs() < p.tol);
        errors.push(err);
        if done {
            converged = true;
            break;
        }
    }
    let last = final_error(x, norm2, &core, &p.modes, &factors)?;
    match errors.last_mut() {
        Some(e) => *e = last,
        None => errors.push(last),
    }
    Ok(TuckerResult {
        core,
        factors,
        errors,
        n_iter,
        converged,
    })
}

fn initial<T: Float>(
    x: TensorRef<'_, T>,
    norm2: f64,
    p: &TuckerParams<T>,
    stop: &dyn Interrupt,
) -> Result<Vec<Mat<T>>> {
    Ok(match (&p.init, p.method) {
        (Init::Given(fs), Method::Hooi) => fs
            .iter()
            .map(|f| {
                let mut u = f.clone();
                orthonormalize(u.as_mut());
                u
            })
            .collect(),
        (Init::Random(seed), Method::Hooi) => {
            // with an error target, the ranks are ST-HOSVD's; the start is random at those
            let ranks: Vec<usize> = if p.error_tol.is_some() {
                direct(x, norm2, p, true, stop)?
                    .iter()
                    .map(|u| u.ncols())
                    .collect()
            } else {
                p.ranks.clone()
            };
            random_factors(x.shape(), &p.modes, &ranks, *seed)
        }
        (_, Method::Hosvd) => direct(x, norm2, p, false, stop)?,
        _ => direct(x, norm2, p, true, stop)?,
    })
}

/// One HOOI sweep over the free modes; returns the new core.
fn hooi_sweep<T: Float>(
    x: TensorRef<'_, T>,
    p: &TuckerParams<T>,
    factors: &mut [Mat<T>],
    stop: &dyn Interrupt,
) -> Result<Tensor<T>> {
    let mut last: Option<(usize, Tensor<T>)> = None;
    for (i, &m) in p.modes.iter().enumerate() {
        if p.fixed[i] {
            continue;
        }
        stop.check()?;
        let y = project(x, &p.modes, factors, Some(i), stop)?;
        let (u, _) = subspace(
            y.view(),
            m,
            factors[i].ncols(),
            None,
            SvdMethod::Exact,
            stop,
        )?;
        factors[i] = u;
        last = Some((i, y));
    }
    match last {
        // the core is the last projection, truncated in the mode just updated
        Some((i, y)) => {
            super::tensor::mode_product_with(y.view(), factors[i].transpose(), p.modes[i], stop)
        }
        None => project(x, &p.modes, factors, None, stop),
    }
}

/// Tucker with missing entries: `mask[i] != 0` marks observed entries of `x`. Missing entries
/// start at zero and are replaced by the current reconstruction before every initial
/// decomposition (`mask_repeats` times) and every HOOI sweep, as TensorLy does. The errors
/// reported are over the observed entries.
pub fn tucker_masked<T: Float>(
    x: TensorRef<'_, T>,
    mask: TensorRef<'_, u8>,
    p: &TuckerParams<T>,
    stop: &dyn Interrupt,
) -> Result<TuckerResult<T>> {
    if mask.shape() != x.shape() {
        return Err(Error::InvalidShape(format!(
            "mask must have the tensor's shape {:?}, got {:?}",
            x.shape(),
            mask.shape()
        )));
    }
    validate(x.shape(), p)?;
    let m = mask.to_c_vec();
    let obs: Vec<T> = x.to_c_vec();
    let filled: Vec<T> = obs
        .iter()
        .zip(&m)
        .map(|(&v, &k)| if k != 0 { v } else { T::ZERO })
        .collect();
    let obs_norm2: f64 = filled.iter().map(|v| v.to_f64().powi(2)).sum();
    let mut work = Tensor::from_c_vec(x.shape(), filled)?;
    let impute = |work: &mut Tensor<T>, core: &Tensor<T>, factors: &[Mat<T>]| -> Result<f64> {
        let rec = reconstruct(core.view(), &p.modes, factors)?.into_c_order();
        let mut err2 = 0.0f64;
        for (i, w) in work.data.iter_mut().enumerate() {
            if m[i] != 0 {
                err2 += (obs[i].to_f64() - rec.data[i].to_f64()).powi(2);
            } else {
                *w = rec.data[i];
            }
        }
        Ok(if obs_norm2 > 0.0 {
            (err2 / obs_norm2).sqrt()
        } else {
            0.0
        })
    };
    let direct_p = TuckerParams {
        method: if p.method == Method::Hosvd {
            Method::Hosvd
        } else {
            Method::StHosvd
        },
        ..p.clone()
    };
    let mut res = tucker(work.view(), &direct_p, stop)?;
    let direct_init = matches!(p.init, Init::Svd) || p.method != Method::Hooi;
    let repeats = if direct_init { p.mask_repeats } else { 0 };
    for _ in 0..repeats {
        stop.check()?;
        impute(&mut work, &res.core, &res.factors)?;
        res = tucker(work.view(), &direct_p, stop)?;
    }
    let mut err = impute(&mut work, &res.core, &res.factors)?;
    if p.method != Method::Hooi {
        res.errors = vec![err];
        return Ok(res);
    }
    let mut factors = if direct_init {
        res.factors
    } else {
        initial(work.view(), work.sq_norm(), p, stop)?
    };
    let mut errors = Vec::new();
    let mut core = res.core;
    let mut converged = false;
    let mut n_iter = 0;
    for it in 0..p.n_iter_max {
        stop.check()?;
        core = hooi_sweep(work.view(), p, &mut factors, stop)?;
        n_iter = it + 1;
        err = impute(&mut work, &core, &factors)?;
        if p.verbose {
            eprintln!(
                "tucker (masked): iteration {n_iter}, relative error on observed entries {err:.6e}"
            );
        }
        let done = errors
            .last()
            .is_some_and(|&prev: &f64| (prev - err).abs() < p.tol);
        errors.push(err);
        if done {
            converged = true;
            break;
        }
    }
    if errors.is_empty() {
        errors.push(err);
    }
    Ok(TuckerResult {
        core,
        factors,
        errors,
        n_iter,
        converged,
    })
}
