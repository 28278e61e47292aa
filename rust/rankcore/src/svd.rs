//! Randomized SVD (Halko, Martinsson & Tropp 2011) with a fixed rank, and a fixed-accuracy
//! variant built on the blocked randQB_EI range finder (Yu, Gu & Li 2018).
//!
//! Both see the matrix only through [`Operator`] products, so dense, sparse, transposed and
//! implicitly centred inputs share one implementation.

use crate::linalg::{
    lu_normalize, matmul, matmul_sub, orthonormalize, recondition, sq_norm, svd_tall,
};
use crate::operator::Operator;
use crate::rng::RandomMatrix;
use crate::{invalid, Float, Interrupt, Result};
use faer::{Mat, MatMut, MatRef};

/// How the block is re-conditioned between power iterations (sklearn's
/// `power_iteration_normalizer`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Normalizer {
    None,
    Lu,
    Qr,
}

/// Parameters of the fixed-rank randomized SVD.
#[derive(Clone, Copy, Debug)]
pub struct RsvdParams {
    pub n_components: usize,
    pub n_oversamples: usize,
    pub n_iter: usize,
    pub normalizer: Normalizer,
    /// Work on `Aᵀ` (cheaper when `A` is wide); the result is transformed back.
    pub transpose: bool,
    pub seed: u64,
}

/// Parameters of the fixed-accuracy randomized SVD.
#[derive(Clone, Copy, Debug)]
pub struct AdaptiveParams {
    /// Target relative Frobenius error `‖A - U S Vᵀ‖_F ≤ tol·‖A‖_F`, in (0, 1).
    pub tol: f64,
    /// Columns added to the basis per step.
    pub block_size: usize,
    /// Power iterations per block.
    pub n_iter: usize,
    /// Largest rank to try (at most `min(m, n)`).
    pub max_rank: usize,
    pub transpose: bool,
    pub seed: u64,
}

/// `A ≈ U diag(s) Vᵀ`: `u` is m×k, `v` is n×k, `s` is non-increasing.
#[derive(Clone, Debug)]
pub struct Svd<T> {
    pub u: Mat<T>,
    pub s: Vec<T>,
    pub v: Mat<T>,
    /// Relative Frobenius error of the approximation when the algorithm tracks it.
    pub rel_error: Option<f64>,
}

/// Fixed-rank randomized SVD: the range finder with `n_iter` power iterations, then the
/// exact SVD of the small projected matrix.
pub fn randomized_svd<T: Float>(
    a: &Operator<'_, T>,
    p: &RsvdParams,
    stop: &dyn Interrupt,
) -> Result<Svd<T>> {
    let (m, n) = a.shape();
    let k = p.n_components;
    if k == 0 || k > m.min(n) {
        return Err(invalid!(
            "n_components must be in [1, min(n_rows, n_cols)] = [1, {}], got {k}",
            m.min(n)
        ));
    }
    let w = if p.transpose { a.t() } else { a.clone() };
    // More than min(m, n) columns cannot enlarge the range: cap the sketch there.
    let l = k.saturating_add(p.n_oversamples).min(m.min(n));
    let q = range_finder(&w, l, p.n_iter, p.normalizer, p.seed, stop)?;
    let mut svd = project(&w, q.as_ref(), k)?;
    if p.transpose {
        std::mem::swap(&mut svd.u, &mut svd.v);
    }
    Ok(svd)
}

/// An orthonormal m×l basis approximating the range of `w` (Halko et al., Alg. 4.3/4.4).
fn range_finder<T: Float>(
    w: &Operator<'_, T>,
    l: usize,
    n_iter: usize,
    normalizer: Normalizer,
    seed: u64,
    stop: &dyn Interrupt,
) -> Result<Mat<T>> {
    let (m, n) = w.shape();
    let mut omega = Mat::<T>::zeros(n, l);
    RandomMatrix::new(seed, 0).fill_normal(0, 0, omega.as_mut());
    let mut y = Mat::<T>::zeros(m, l);
    w.mul(omega.as_ref(), y.as_mut());
    let mut z = omega; // reuse the n×l buffer
                       // Checks before every pass over the matrix: one pass is the longest step (about a
                       // second on a 10M-non-zero sparse matrix), so Ctrl-C is honoured within about that.
    for _ in 0..n_iter {
        stop.check()?;
        normalize(y.as_mut(), normalizer);
        w.mul_t(y.as_ref(), z.as_mut());
        stop.check()?;
        normalize(z.as_mut(), normalizer);
        w.mul(z.as_ref(), y.as_mut());
    }
    stop.check()?;
    orthonormalize(y.as_mut());
    Ok(y)
}

fn normalize<T: Float>(y: MatMut<'_, T>, normalizer: Normalizer) {
    match normalizer {
        Normalizer::None => {}
        Normalizer::Lu => lu_normalize(y),
        Normalizer::Qr => recondition(y),
    }
}

/// SVD of `B = Qᵀ·A` through the tall `Bᵀ = Aᵀ·Q = W S Zᵀ`: then `A ≈ (Q Z) S Wᵀ`.
fn project<T: Float>(w: &Operator<'_, T>, q: MatRef<'_, T>, k: usize) -> Result<Svd<T>> {
    let (_, n) = w.shape();
    let mut bt = Mat::<T>::zeros(n, q.ncols());
    w.mul_t(q, bt.as_mut());
    Ok(truncate(q, svd_tall(bt.as_ref())?, k))
}

/// The rank-`k` SVD of `A ≈ Q·B` from the SVD `(W, s, Z)` of `Bᵀ`: `U = Q·Z`, `V = W`.
fn truncate<T: Float>(q: MatRef<'_, T>, (wv, s, z): (Mat<T>, Vec<T>, Mat<T>), k: usize) -> Svd<T> {
    let mut u = Mat::<T>::zeros(q.nrows(), k);
    matmul(u.as_mut(), q, z.as_ref().subcols(0, k));
    Svd {
        u,
        s: s[..k].to_vec(),
        v: wv.as_ref().subcols(0, k).to_owned(),
        rel_error: None,
    }
}

/// Fixed-accuracy randomized SVD: grows an orthonormal basis `Q` block by block (randQB_EI),
/// tracking the error `‖A - QB‖²_F = ‖A‖²_F - ‖B‖²_F` exactly as it goes, so no second pass
/// over `A` is needed to check it. Then returns the smallest rank `r` whose truncation of
/// `QB` meets `tol`.
///
/// The indicator subtracts two nearly equal numbers, so `tol` is resolved down to about
/// `sqrt(eps)` of the working precision (1e-7 in f64, 3e-4 in f32); below that the method
/// runs to full rank.
pub fn adaptive_svd<T: Float>(
    a: &Operator<'_, T>,
    p: &AdaptiveParams,
    stop: &dyn Interrupt,
) -> Result<Svd<T>> {
    if !(p.tol > 0.0 && p.tol < 1.0) {
        return Err(invalid!(
            "tol must be in (0, 1) for the fixed-accuracy mode, got {}",
            p.tol
        ));
    }
    if p.block_size == 0 {
        return Err(invalid!("block_size must be positive"));
    }
    let w = if p.transpose { a.t() } else { a.clone() };
    let (m, n) = w.shape();
    let cap = m.min(n).min(p.max_rank.max(1));
    if cap > u32::MAX as usize {
        return Err(invalid!(
            "the fixed-accuracy mode supports ranks up to 2^32, got min(m, n) = {cap}"
        ));
    }
    let norm2 = w.sq_norm();
    let target = p.tol * p.tol * norm2;
    let rng = RandomMatrix::new(p.seed, 0);
    let mut basis = Basis {
        qs: Vec::new(),
        bts: Vec::new(),
    };
    let mut err2 = norm2;
    let mut rank = 0;
    // At least one block, so that a zero matrix gets one zero component, not none.
    while rank < cap && (rank == 0 || err2 > target) {
        stop.check()?;
        let b = p.block_size.min(cap - rank);
        let mut omega = Mat::<T>::zeros(n, b);
        rng.fill_normal(0, rank as u32, omega.as_mut());
        let q = basis.next_block(&w, omega, p.n_iter, stop)?;
        let mut bt = Mat::<T>::zeros(n, b);
        w.mul_t(q.as_ref(), bt.as_mut());
        err2 -= sq_norm(bt.as_ref());
        basis.qs.push(q);
        basis.bts.push(bt);
        rank += b;
    }
    let q = concat_cols(&basis.qs, m);
    let bt = concat_cols(&basis.bts, n);
    let small = svd_tall(bt.as_ref())?;
    let resid = err2.max(0.0);
    let r = smallest_rank(&small.1, resid, target);
    let tail: f64 = small.1[r..].iter().map(|x| x.to_f64().powi(2)).sum();
    let mut svd = truncate(q.as_ref(), small, r);
    svd.rel_error = Some(if norm2 > 0.0 {
        ((resid + tail) / norm2).sqrt()
    } else {
        0.0
    });
    if p.transpose {
        std::mem::swap(&mut svd.u, &mut svd.v);
    }
    Ok(svd)
}

/// The smallest `r ≥ 1` with `resid + Σ_{j ≥ r} s_j² ≤ target`, or all of `s` if none.
fn smallest_rank<T: Float>(s: &[T], resid: f64, target: f64) -> usize {
    let mut tail = resid;
    let mut r = s.len();
    // Walk down from the full rank while dropping one more value still meets the target.
    while r > 1 {
        let next = tail + s[r - 1].to_f64().powi(2);
        if next > target {
            break;
        }
        tail = next;
        r -= 1;
    }
    r.max(1).min(s.len())
}

/// The blocks found so far: `Q = [Q₁ … Q_t]` (m×b each) and `Bᵀ = [B₁ᵀ … B_tᵀ] = Aᵀ Q`.
struct Basis<T> {
    qs: Vec<Mat<T>>,
    bts: Vec<Mat<T>>,
}

impl<T: Float> Basis<T> {
    /// One randQB_EI step: sample `(A - QB)·Ω`, refine by power iterations on `A - QB`,
    /// re-orthogonalise against `Q`, and return the new orthonormal block.
    fn next_block(
        &self,
        w: &Operator<'_, T>,
        omega: Mat<T>,
        n_iter: usize,
        stop: &dyn Interrupt,
    ) -> Result<Mat<T>> {
        let (m, _) = w.shape();
        let mut y = Mat::<T>::zeros(m, omega.ncols());
        let mut z = omega;
        self.residual_mul(w, z.as_ref(), y.as_mut());
        for _ in 0..n_iter {
            stop.check()?;
            recondition(y.as_mut());
            self.residual_mul_t(w, y.as_ref(), z.as_mut());
            stop.check()?;
            recondition(z.as_mut());
            self.residual_mul(w, z.as_ref(), y.as_mut());
        }
        orthonormalize(y.as_mut());
        // Rounding leaves components along Q: remove them once more (Gram–Schmidt twice).
        for q in &self.qs {
            let mut c = Mat::<T>::zeros(q.ncols(), y.ncols());
            matmul(c.as_mut(), q.transpose(), y.as_ref());
            matmul_sub(y.as_mut(), q.as_ref(), c.as_ref());
        }
        orthonormalize(y.as_mut());
        Ok(y)
    }

    /// `out = (A - QB)·x = A·x - Σ Qᵢ (Bᵢᵀᵀ x)`.
    fn residual_mul(&self, w: &Operator<'_, T>, x: MatRef<'_, T>, mut out: MatMut<'_, T>) {
        w.mul(x, out.as_mut());
        for (q, bt) in self.qs.iter().zip(&self.bts) {
            let mut c = Mat::<T>::zeros(bt.ncols(), x.ncols());
            matmul(c.as_mut(), bt.transpose(), x);
            matmul_sub(out.as_mut(), q.as_ref(), c.as_ref());
        }
    }

    /// `out = (A - QB)ᵀ·y = Aᵀ·y - Σ Bᵢᵀ (Qᵢᵀ y)`.
    fn residual_mul_t(&self, w: &Operator<'_, T>, y: MatRef<'_, T>, mut out: MatMut<'_, T>) {
        w.mul_t(y, out.as_mut());
        for (q, bt) in self.qs.iter().zip(&self.bts) {
            let mut c = Mat::<T>::zeros(q.ncols(), y.ncols());
            matmul(c.as_mut(), q.transpose(), y);
            matmul_sub(out.as_mut(), bt.as_ref(), c.as_ref());
        }
    }
}

fn concat_cols<T: Float>(blocks: &[Mat<T>], nrows: usize) -> Mat<T> {
    let total = blocks.iter().map(|b| b.ncols()).sum();
    let mut out = Mat::<T>::zeros(nrows, total);
    let mut c0 = 0;
    for b in blocks {
        out.as_mut().subcols_mut(c0, b.ncols()).copy_from(b);
        c0 += b.ncols();
    }
    out
}

#[cfg(test)]
mod tests;
