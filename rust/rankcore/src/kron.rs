//! Kronecker-structured linear algebra on grids: mode products, eigen-solves with
//! `K₁ ⊗ … ⊗ K_D + σ²I`, log-determinants, the exact diagonal of the inverse, and
//! preconditioned conjugate gradients for incomplete grids (Saatçi 2012; Wilson et al. 2014).
//!
//! # Vectorisation convention
//!
//! A grid tensor `Y` of shape `(n₁, …, n_D)` is stored in C order (the last index varies
//! fastest), and `vec(Y)` is that memory order. With this convention
//! `(K₁ ⊗ K₂) vec(Y) = vec(K₁ Y K₂ᵀ)`: the first Kronecker factor acts on the first (slowest)
//! index, exactly as `numpy.kron(K1, K2) @ Y.ravel()` does. A batch of `B` right-hand sides is
//! a C-order array of shape `(B, n₁, …, n_D)`; the batch is simply one more leading index that
//! no factor touches.
//!
//! Never is an `N × N` matrix formed: `(A₁ ⊗ … ⊗ A_D) x` is `D` successive mode products, each
//! a small dense GEMM over the unfolded tensor, costing `O(N Σ n_d)`.
//!
//! # Determinism
//!
//! Every parallel region splits work into blocks whose boundaries depend only on the shape,
//! each block runs faer's sequential kernels, and reductions add fixed-size chunk sums in
//! chunk order. Results are bit-identical for any number of threads.
// `!(x > 0)` is deliberate: it also rejects NaN. `Float` has no `DivAssign`.
#![allow(clippy::neg_cmp_op_on_partial_ord, clippy::assign_op_pattern)]

use crate::linalg::{clear_upper, gemm, matmul, par_row_blocks};
use crate::{invalid, Error, Float, Interrupt, Result};
use faer::diag::Diag;
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::evd::{self_adjoint_evd, self_adjoint_evd_scratch, ComputeEigenvectors};
use faer::{Accum, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Columns per block when a mode product is split along the trailing indices.
const COL_BLOCK: usize = 512;
/// Elements per chunk of an ordered parallel sum.
const SUM_CHUNK: usize = 8192;

/// `Σ_{i<n} f(i)` in f64, summed in fixed chunks whose partial sums are added in order, so
/// the result does not depend on the number of threads.
pub fn ordered_sum(n: usize, f: impl Fn(usize) -> f64 + Sync) -> f64 {
    let parts: Vec<f64> = (0..n.div_ceil(SUM_CHUNK))
        .into_par_iter()
        .map(|c| {
            let a = c * SUM_CHUNK;
            let b = (a + SUM_CHUNK).min(n);
            let mut s = 0.0;
            for i in a..b {
                s += f(i);
            }
            s
        })
        .collect();
    parts.iter().sum()
}

/// `Σ_j ln v(j)` for positive values, chunked as [`ordered_sum`] (so thread-independent).
/// Within a chunk, the mantissas of up to 32 values are multiplied (the product stays in
/// `[1, 2³²)`; in eight independent chains when all 32 are positive normal numbers) and
/// their binary exponents added, so one logarithm serves 32 terms; the rounding error, at
/// most 32ε per block, matches that of 32 separate logarithms. Zero, subnormal, negative
/// and non-finite values take the plain `ln` (and its NaN or −∞).
pub fn sum_ln(n: usize, v: impl Fn(usize) -> f64 + Sync) -> f64 {
    sum_ln_by(n, |start, block| {
        for (i, x) in block.iter_mut().enumerate() {
            *x = v(start + i);
        }
    })
}

/// [`sum_ln`] with the values written a block at a time: `fill(start, block)` sets
/// `block[i] = v(start + i)` (callers with a structured `v`, such as the products of grid
/// eigenvalues, then avoid per-value index arithmetic). Same blocks, same order, same bits.
pub fn sum_ln_by(n: usize, fill: impl Fn(usize, &mut [f64]) + Sync) -> f64 {
    const BLOCK: usize = 32;
    const LANES: usize = 8;
    const MANTISSA: u64 = (1 << 52) - 1;
    let parts: Vec<f64> = (0..n.div_ceil(SUM_CHUNK))
        .into_par_iter()
        .map(|c| {
            let (a, b) = (c * SUM_CHUNK, ((c + 1) * SUM_CHUNK).min(n));
            let mut s = 0.0;
            let mut values = [0.0f64; BLOCK];
            for start in (a..b).step_by(BLOCK) {
                let block = &mut values[..BLOCK.min(b - start)];
                fill(start, block);
                let normal = |x: &f64| (1..0x7ff).contains(&(x.to_bits() >> 52));
                if block.len() == BLOCK && block.iter().all(normal) {
                    // Positive normal values (the usual case): eight independent product
                    // chains of four mantissas each, which the compiler keeps in vector
                    // lanes, then their product (below 2³²).
                    let (mut m, mut e) = ([1.0f64; LANES], [0i64; LANES]);
                    for group in block.chunks_exact(LANES) {
                        for ((ml, el), &x) in m.iter_mut().zip(e.iter_mut()).zip(group) {
                            let bits = x.to_bits();
                            *el += (bits >> 52) as i64 - 1023;
                            *ml *= f64::from_bits((bits & MANTISSA) | (1023 << 52));
                        }
                    }
                    let m = ((m[0] * m[1]) * (m[2] * m[3])) * ((m[4] * m[5]) * (m[6] * m[7]));
                    s += m.ln() + e.iter().sum::<i64>() as f64 * std::f64::consts::LN_2;
                    continue;
                }
                let (mut m, mut e) = (1.0f64, 0i64);
                for &x in block.iter() {
                    let bits = x.to_bits();
                    let ex = (bits >> 52) as i64; // sign and exponent
                    if ex == 0 || ex >= 0x7ff {
                        s += x.ln();
                        continue;
                    }
                    e += ex - 1023;
                    m *= f64::from_bits((bits & MANTISSA) | (1023 << 52));
                }
                s += m.ln() + e as f64 * std::f64::consts::LN_2;
            }
            s
        })
        .collect();
    parts.iter().sum()
}

/// Mode product of a C-order tensor seen as `(pre, n, post)` with a dense `a` of shape
/// `(m, n)`: `dst[p, j, q] = Σ_i a[j, i] · src[p, i, q]`, `dst` of shape `(pre, m, post)`.
pub fn mode_product<T: Float>(src: &[T], dst: &mut [T], pre: usize, post: usize, a: MatRef<'_, T>) {
    let (m, n) = a.shape();
    debug_assert_eq!(src.len(), pre * n * post);
    debug_assert_eq!(dst.len(), pre * m * post);
    if pre == 0 || m == 0 || post == 0 {
        return;
    }
    if post == 1 {
        // The unfolding is a row-major (pre × n) matrix: one deterministic GEMM.
        let x = MatRef::from_row_major_slice(src, pre, n);
        let y = MatMut::from_row_major_slice_mut(dst, pre, m);
        matmul(y, x, a.transpose());
        return;
    }
    dst.par_chunks_mut(m * post)
        .zip(src.par_chunks(n * post))
        .for_each(|(d, s)| {
            let x = MatRef::from_row_major_slice(s, n, post);
            let y = MatMut::from_row_major_slice_mut(d, m, post);
            // Split the trailing columns into fixed blocks: yᵀ[block] = xᵀ[block] · aᵀ.
            par_row_blocks(y.transpose_mut(), COL_BLOCK, &|r0, blk: MatMut<'_, T>| {
                let rows = blk.nrows();
                gemm(
                    blk,
                    Accum::Replace,
                    x.transpose().subrows(r0, rows),
                    a.transpose(),
                    T::ONE,
                );
            });
        });
}

/// Checks that the factors are square-compatible with `x` of `batch` grids and returns the
/// grid shape (columns of each factor).
fn check_factors<T: Float>(mats: &[MatRef<'_, T>], len: usize, batch: usize) -> Result<()> {
    if mats.is_empty() {
        return Err(invalid!("Ks must hold at least one factor"));
    }
    let n: usize = mats.iter().map(|a| a.ncols()).product();
    if batch == 0 || n == 0 || len != n * batch {
        return Err(Error::InvalidShape(format!(
            "x has {len} elements, expected batch × Π n_d = {batch} × {n}"
        )));
    }
    Ok(())
}

/// `(A₁ ⊗ … ⊗ A_D) x` for a batch of `batch` C-order grids (see the module docs); each `A_d`
/// may be rectangular `(m_d × n_d)`. Returns the `batch × Π m_d` result.
pub fn kron_apply<T: Float>(mats: &[MatRef<'_, T>], x: &[T], batch: usize) -> Result<Vec<T>> {
    check_factors(mats, x.len(), batch)?;
    Ok(kron_apply_unchecked(mats, x, batch))
}

pub(crate) fn kron_apply_unchecked<T: Float>(
    mats: &[MatRef<'_, T>],
    x: &[T],
    batch: usize,
) -> Vec<T> {
    let (mut out, mut scratch) = (Vec::new(), Vec::new());
    apply_chain(mats, Some(x), &mut out, &mut scratch, batch);
    out
}

/// `buf ← (A₁ ⊗ … ⊗ A_D) src` where `src` is `x` when given, else `buf`'s own contents.
/// The products alternate between `buf` and `scratch`, which grow once to the largest
/// intermediate and are then reused: a fresh buffer per product costs a page fault per
/// 4 KiB on first touch, measured as much as the GEMM itself on a 64³ grid.
fn apply_chain<T: Float>(
    mats: &[MatRef<'_, T>],
    x: Option<&[T]>,
    buf: &mut Vec<T>,
    scratch: &mut Vec<T>,
    batch: usize,
) {
    if let (true, Some(x)) = (mats.is_empty(), x) {
        *buf = x.to_vec();
    }
    let mut shape: Vec<usize> = mats.iter().map(|a| a.ncols()).collect();
    for (d, a) in mats.iter().enumerate() {
        let pre = batch * shape[..d].iter().product::<usize>();
        let post: usize = shape[d + 1..].iter().product();
        let len = pre * a.nrows() * post;
        grow(scratch, len);
        let src: &[T] = match (d, x) {
            (0, Some(x)) => x,
            _ => buf,
        };
        mode_product(
            &src[..pre * a.ncols() * post],
            &mut scratch[..len],
            pre,
            post,
            *a,
        );
        std::mem::swap(buf, scratch);
        buf.truncate(len);
        shape[d] = a.nrows();
    }
}

/// Eigendecompositions `K_d = Q_d diag(λ_d) Q_dᵀ` of the Kronecker factors.
///
/// Eigenvalues below zero but within the round-off band `λ ≥ −PSD_SLACK·ε·n·max|λ|` (a
/// backward-stable symmetric eigensolver perturbs eigenvalues by about `p(n)·ε·‖K‖₂`; nearly
/// singular kernel matrices show `−1e-16·‖K‖`) are clamped to zero, so that `K` is treated as
/// the positive semi-definite matrix it is in exact arithmetic; `σ² > 0` then keeps `K + σ²I`
/// invertible. A more negative eigenvalue means the factor is not a covariance matrix, and
/// is an `InvalidValue` error naming the factor rather than a silently wrong solve.
#[derive(Clone, Debug)]
pub struct KronEig<T: Float> {
    pub q: Vec<Mat<T>>,
    pub lam: Vec<Vec<T>>,
    /// `Q_dᵀ` stored column-major: mode products with a transposed *view* take a slower
    /// path in faer's small-`k` kernels (measured 2× on 64³ grids).
    qt: Vec<Mat<T>>,
}

impl<T: Float> KronEig<T> {
    /// Decomposes each square, symmetric factor (only the lower triangle is read).
    pub fn new(ks: &[MatRef<'_, T>]) -> Result<Self> {
        if ks.is_empty() {
            return Err(invalid!("Ks must hold at least one factor"));
        }
        let parts: Vec<Result<(Mat<T>, Vec<T>)>> = ks
            .par_iter()
            .enumerate()
            .map(|(d, k)| eigh(*k, d))
            .collect();
        let mut q = Vec::with_capacity(ks.len());
        let mut lam = Vec::with_capacity(ks.len());
        for p in parts {
            let (qd, ld) = p?;
            q.push(qd);
            lam.push(ld);
        }
        Ok(Self::assemble(q, lam))
    }

    /// Wraps precomputed factors (eigenvectors `q[d]`, `n_d × n_d`, and eigenvalues
    /// `lam[d]`, non-negative), after checking shapes and values.
    pub fn from_parts(q: Vec<Mat<T>>, lam: Vec<Vec<T>>) -> Result<Self> {
        if q.is_empty() || q.len() != lam.len() {
            return Err(invalid!(
                "Qs and lams must be non-empty lists of the same length"
            ));
        }
        for (qd, ld) in q.iter().zip(&lam) {
            if qd.nrows() != ld.len() || qd.ncols() != ld.len() || ld.is_empty() {
                return Err(Error::InvalidShape(format!(
                    "an eigenvector factor of shape {}×{} does not match {} eigenvalues",
                    qd.nrows(),
                    qd.ncols(),
                    ld.len()
                )));
            }
            if ld.iter().any(|&v| !(v >= T::ZERO) || !v.is_finite()) {
                return Err(invalid!("eigenvalues must be non-negative and finite"));
            }
        }
        Ok(Self::assemble(q, lam))
    }

    fn assemble(q: Vec<Mat<T>>, lam: Vec<Vec<T>>) -> Self {
        let qt = q.iter().map(|m| m.transpose().to_owned()).collect();
        Self { q, lam, qt }
    }

    /// The grid shape `(n₁, …, n_D)`.
    pub fn shape(&self) -> Vec<usize> {
        self.lam.iter().map(|l| l.len()).collect()
    }

    /// Number of grid cells `N = Π n_d`.
    pub fn len(&self) -> usize {
        self.lam.iter().map(|l| l.len()).product()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The eigenvalues of `scale · K₁ ⊗ … ⊗ K_D` as a C-order grid tensor; factor `skip`
    /// (if any) contributes ones, which gives the eigenvalues with one dimension left out.
    pub fn grid_eigenvalues(&self, scale: T, skip: Option<usize>) -> Vec<T> {
        let ones = skip.map_or(Vec::new(), |d| vec![T::ONE; self.lam[d].len()]);
        let lams: Vec<&[T]> = self
            .lam
            .iter()
            .enumerate()
            .map(|(d, l)| if skip == Some(d) { &ones[..] } else { &l[..] })
            .collect();
        outer_products(scale, &lams)
    }

    /// [`grid_eigenvalues`](Self::grid_eigenvalues) (no skip) without materialising the
    /// `N` values: `(prefix, last)` with entry `j` equal to
    /// `prefix[j / last.len()] * last[j % last.len()]`, the same products in the same order.
    pub fn grid_eigenvalues_split(&self, scale: T) -> (Vec<T>, Vec<T>) {
        match self.lam.split_last() {
            Some((last, rest)) => {
                let rest: Vec<&[T]> = rest.iter().map(|l| &l[..]).collect();
                (outer_products(scale, &rest), last.clone())
            }
            None => (vec![scale], vec![T::ONE]),
        }
    }

    fn q_refs(&self, transpose: bool) -> Vec<MatRef<'_, T>> {
        let qs = if transpose { &self.qt } else { &self.q };
        qs.iter().map(|q| q.as_ref()).collect()
    }

    /// `Qᵀ x` (`x` a batch of grids).
    pub fn to_eigenbasis(&self, x: &[T], batch: usize) -> Vec<T> {
        kron_apply_unchecked(&self.q_refs(true), x, batch)
    }

    /// `Q x̃`.
    pub fn from_eigenbasis(&self, x: &[T], batch: usize) -> Vec<T> {
        kron_apply_unchecked(&self.q_refs(false), x, batch)
    }

    /// `Q · f(Qᵀ y)`: `f` modifies the eigenbasis coefficients (a batch of grids) in place.
    /// Two buffers serve all `2D` mode products.
    pub fn sandwich(&self, y: &[T], batch: usize, f: impl FnOnce(&mut [T])) -> Vec<T> {
        let (mut buf, mut scratch) = (Vec::new(), Vec::new());
        apply_chain(&self.q_refs(true), Some(y), &mut buf, &mut scratch, batch);
        f(&mut buf);
        apply_chain(&self.q_refs(false), None, &mut buf, &mut scratch, batch);
        buf
    }

    /// `(Q∘Q) x`, elementwise squares of the eigenvectors: `Σ_j Q_ij² x_j` for every cell i.
    pub fn squared_apply(&self, x: &[T]) -> Vec<T> {
        let sq: Vec<Mat<T>> = self
            .q
            .iter()
            .map(|q| Mat::from_fn(q.nrows(), q.ncols(), |i, j| q[(i, j)] * q[(i, j)]))
            .collect();
        let refs: Vec<MatRef<'_, T>> = sq.iter().map(|m| m.as_ref()).collect();
        kron_apply_unchecked(&refs, x, 1)
    }
}

/// `scale · λ₁ ⊗ λ₂ ⊗ …` as a flat vector (last factor fastest), multiplied left to right.
fn outer_products<T: Float>(scale: T, lams: &[&[T]]) -> Vec<T> {
    let mut out = vec![scale];
    for l in lams {
        let mut next = vec![T::ZERO; out.len() * l.len()];
        next.par_chunks_mut(l.len().max(1))
            .zip(out.par_iter())
            .for_each(|(row, &a)| {
                for (r, &b) in row.iter_mut().zip(l.iter()) {
                    *r = a * b;
                }
            });
        out = next;
    }
    out
}

/// Grows `v` to `len` values (contents unspecified beyond the old length), allocating with
/// [`crate::projection::huge_zeroed`] when it must reallocate: a grid-sized buffer costs a
/// page fault per 4 KiB on first touch otherwise.
fn grow<T: Float>(v: &mut Vec<T>, len: usize) {
    if v.capacity() < len {
        let mut fresh = crate::projection::huge_zeroed(len);
        let keep = v.len().min(len);
        fresh[..keep].copy_from_slice(&v[..keep]);
        *v = fresh;
    } else if v.len() < len {
        v.resize(len, T::ZERO);
    }
}

/// Round-off allowance, in units of `ε·n·max|λ|`, for negative eigenvalues of a factor that
/// is positive semi-definite in exact arithmetic. Eigenvalue errors of faer's Householder
/// tridiagonalisation + QR are `O(ε·n·‖K‖₂)` with a small constant; 64 leaves a wide margin
/// while still rejecting any genuinely indefinite factor (e.g. `λ = −1` with `‖K‖ = 3`).
pub const PSD_SLACK: f64 = 64.0;

/// Symmetric eigendecomposition with faer's sequential kernel (deterministic), eigenvalues
/// clamped at zero within the round-off band (see [`KronEig`]); `d` is the factor's index,
/// named in the error when `K` is not positive semi-definite.
pub fn eigh<T: Float>(k: MatRef<'_, T>, d: usize) -> Result<(Mat<T>, Vec<T>)> {
    let n = k.nrows();
    if k.ncols() != n || n == 0 {
        return Err(Error::InvalidShape(format!(
            "each Kronecker factor must be square and non-empty, got {}×{}",
            k.nrows(),
            k.ncols()
        )));
    }
    for j in 0..n {
        for i in j..n {
            if !k[(i, j)].is_finite() {
                return Err(invalid!("Ks must be finite"));
            }
        }
    }
    let mut u = Mat::<T>::zeros(n, n);
    let mut s = Diag::<T>::zeros(n);
    let par = Par::Seq;
    let mut mem = MemBuffer::new(self_adjoint_evd_scratch::<T>(
        n,
        ComputeEigenvectors::Yes,
        par,
        Default::default(),
    ));
    let evd = self_adjoint_evd(
        k,
        s.as_mut(),
        Some(u.as_mut()),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    );
    clear_upper();
    evd.map_err(|_| Error::NoConvergence("symmetric eigendecomposition"))?;
    let raw: Vec<f64> = s.column_vector().iter().map(|v| v.to_f64()).collect();
    let max_abs = raw.iter().fold(0.0f64, |m, v| m.max(v.abs()));
    let floor = -PSD_SLACK * T::EPSILON.to_f64() * n as f64 * max_abs;
    if let Some(&bad) = raw.iter().find(|&&v| v < floor) {
        return Err(invalid!(
            "Ks[{d}] is not positive semi-definite: eigenvalue {bad:.6e} < {floor:.3e} \
             (the round-off allowance −{PSD_SLACK}·ε·n·max|λ|, max|λ| = {max_abs:.6e})"
        ));
    }
    let lam = s
        .column_vector()
        .iter()
        .map(|&v| if v > T::ZERO { v } else { T::ZERO })
        .collect();
    Ok((u, lam))
}

fn check_noise(noise: f64) -> Result<()> {
    if !(noise > 0.0) || !noise.is_finite() {
        return Err(invalid!(
            "noise must be a positive finite number, got {noise}"
        ));
    }
    Ok(())
}

/// `(scale · K + σ²I)⁻¹ y` for a batch of grids, through the eigenbasis:
/// `Q diag(1/(λ + σ²)) Qᵀ y`.
pub fn kron_solve<T: Float>(
    eig: &KronEig<T>,
    scale: T,
    noise: f64,
    y: &[T],
    batch: usize,
) -> Result<Vec<T>> {
    check_noise(noise)?;
    let n = eig.len();
    if batch == 0 || y.len() != n * batch {
        return Err(Error::InvalidShape(format!(
            "y has {} elements, expected batch × Π n_d = {batch} × {n}",
            y.len()
        )));
    }
    let (prefix, last) = eig.grid_eigenvalues_split(scale);
    let s2 = T::from_f64(noise);
    Ok(eig.sandwich(y, batch, |t| {
        t.par_chunks_mut(last.len())
            .enumerate()
            .for_each(|(r, row)| {
                let p = prefix[r % prefix.len()];
                for (v, &l) in row.iter_mut().zip(&last) {
                    *v = *v / (p * l + s2);
                }
            })
    }))
}

/// `log det(scale · K + σ²I) = Σ_j log(λ_j + σ²)`, summed in f64.
pub fn kron_logdet<T: Float>(eig: &KronEig<T>, scale: T, noise: f64) -> Result<f64> {
    check_noise(noise)?;
    let (prefix, last) = eig.grid_eigenvalues_split(scale);
    let nl = last.len();
    Ok(sum_ln_by(prefix.len() * nl, |start, block| {
        // One division per block, then walk the grid: row `p` of the prefix, column `q`.
        let (mut p, mut q) = (start / nl, start % nl);
        for x in block.iter_mut() {
            *x = (prefix[p] * last[q]).to_f64() + noise;
            q += 1;
            if q == nl {
                (p, q) = (p + 1, 0);
            }
        }
    }))
}

/// The exact diagonal of `(scale · K + σ²I)⁻¹`: `Σ_j Q_ij² / (λ_j + σ²)`, one Kronecker
/// product with the squared eigenvectors.
pub fn kron_inv_diag<T: Float>(eig: &KronEig<T>, scale: T, noise: f64) -> Result<Vec<T>> {
    check_noise(noise)?;
    let s2 = T::from_f64(noise);
    let w: Vec<T> = eig
        .grid_eigenvalues(scale, None)
        .into_iter()
        .map(|l| T::ONE / (l + s2))
        .collect();
    Ok(eig.squared_apply(&w))
}

/// Settings of [`pcg`].
#[derive(Clone, Copy, Debug)]
pub struct PcgParams {
    /// Stop when `‖r‖ ≤ tol · ‖b‖`.
    pub tol: f64,
    pub max_iter: usize,
}

impl Default for PcgParams {
    fn default() -> Self {
        Self {
            tol: 1e-10,
            max_iter: 1000,
        }
    }
}

/// Outcome of [`pcg`].
#[derive(Clone, Debug)]
pub struct PcgResult<T> {
    /// The solution on the observed cells, in the order of `observed`.
    pub x: Vec<T>,
    pub n_iter: usize,
    /// Final relative residual `‖b − Ax‖/‖b‖`.
    pub rel_residual: f64,
    pub converged: bool,
}

/// An incomplete grid: the observed cells (C-order flat indices, strictly increasing) and a
/// noise variance per observed cell.
pub struct Incomplete<'a, T: Float> {
    pub eig: &'a KronEig<T>,
    pub scale: T,
    pub observed: &'a [usize],
    pub noise: &'a [T],
    /// Grid eigenvalues of `scale · K`, computed once for every mat-vec.
    lam: Vec<T>,
}

impl<'a, T: Float> Incomplete<'a, T> {
    /// Validates the cell list and the noise.
    pub fn new(
        eig: &'a KronEig<T>,
        scale: T,
        observed: &'a [usize],
        noise: &'a [T],
    ) -> Result<Self> {
        let n = eig.len();
        if observed.is_empty() {
            return Err(invalid!("at least one grid cell must be observed"));
        }
        if noise.len() != observed.len() {
            return Err(Error::InvalidShape(format!(
                "noise has {} entries for {} observed cells",
                noise.len(),
                observed.len()
            )));
        }
        if observed.windows(2).any(|w| w[0] >= w[1]) || observed[observed.len() - 1] >= n {
            return Err(invalid!(
                "observed cells must be strictly increasing indices below {n}"
            ));
        }
        if noise.iter().any(|&v| !(v > T::ZERO) || !v.is_finite()) {
            return Err(invalid!(
                "noise must be positive and finite on every observed cell"
            ));
        }
        let lam = eig.grid_eigenvalues(scale, None);
        Ok(Self {
            eig,
            scale,
            observed,
            noise,
            lam,
        })
    }

    /// `(P K Pᵀ + D) v`: scatter to the grid, one Kronecker mat-vec, gather.
    pub fn apply(&self, v: &[T]) -> Vec<T> {
        let mut full = vec![T::ZERO; self.eig.len()];
        for (&i, &x) in self.observed.iter().zip(v) {
            full[i] = x;
        }
        let kv = self.eig.sandwich(&full, 1, |t| {
            t.par_iter_mut().zip(&self.lam).for_each(|(x, &l)| *x *= l)
        });
        self.observed
            .iter()
            .zip(v)
            .zip(self.noise)
            .map(|((&i, &x), &s)| kv[i] + s * x)
            .collect()
    }

    /// Preconditioner `P (K + σ̄² I)⁻¹ Pᵀ` with σ̄² the mean noise: exact when every cell is
    /// observed with equal noise, cheap (one eigen-solve), and symmetric positive definite.
    fn precondition(&self, lam: &[T], noise_mean: T, r: &[T]) -> Vec<T> {
        let mut full = vec![T::ZERO; self.eig.len()];
        for (&i, &x) in self.observed.iter().zip(r) {
            full[i] = x;
        }
        let z = self.eig.sandwich(&full, 1, |t| {
            t.par_iter_mut()
                .zip(lam)
                .for_each(|(x, &l)| *x = *x / (l + noise_mean))
        });
        self.observed.iter().map(|&i| z[i]).collect()
    }

    pub fn noise_mean(&self) -> f64 {
        self.noise.iter().map(|v| v.to_f64()).sum::<f64>() / self.noise.len() as f64
    }
}

fn dot<T: Float>(a: &[T], b: &[T]) -> f64 {
    ordered_sum(a.len(), |i| a[i].to_f64() * b[i].to_f64())
}

/// Solves `(P K Pᵀ + D) x = b` on an incomplete grid by preconditioned conjugate gradients
/// (Kronecker mat-vecs, preconditioner `P (K + σ̄²I)⁻¹ Pᵀ`). `stop` is polled every iteration.
pub fn pcg<T: Float>(
    sys: &Incomplete<'_, T>,
    b: &[T],
    params: PcgParams,
    stop: &dyn Interrupt,
) -> Result<PcgResult<T>> {
    let m = sys.observed.len();
    if b.len() != m {
        return Err(Error::InvalidShape(format!(
            "b has {} entries for {m} observed cells",
            b.len()
        )));
    }
    if b.iter().any(|v| !v.is_finite()) {
        return Err(invalid!("y must be finite on the observed cells"));
    }
    let lam = &sys.lam;
    let nm = T::from_f64(sys.noise_mean());
    let bnorm = dot(b, b).sqrt();
    let mut x = vec![T::ZERO; m];
    if bnorm == 0.0 {
        return Ok(PcgResult {
            x,
            n_iter: 0,
            rel_residual: 0.0,
            converged: true,
        });
    }
    let mut r = b.to_vec();
    let mut z = sys.precondition(lam, nm, &r);
    let mut p = z.clone();
    let mut rz = dot(&r, &z);
    let mut rel = 1.0;
    for it in 0..params.max_iter {
        stop.check()?;
        let ap = sys.apply(&p);
        let pap = dot(&p, &ap);
        if !(pap > 0.0) {
            return Ok(PcgResult {
                x,
                n_iter: it,
                rel_residual: rel,
                converged: false,
            });
        }
        let a = rz / pap;
        let at = T::from_f64(a);
        for i in 0..m {
            x[i] += at * p[i];
            r[i] -= at * ap[i];
        }
        rel = dot(&r, &r).sqrt() / bnorm;
        if rel <= params.tol {
            return Ok(PcgResult {
                x,
                n_iter: it + 1,
                rel_residual: rel,
                converged: true,
            });
        }
        z = sys.precondition(lam, nm, &r);
        let rz_new = dot(&r, &z);
        let beta = T::from_f64(rz_new / rz);
        rz = rz_new;
        for i in 0..m {
            p[i] = z[i] + beta * p[i];
        }
    }
    Ok(PcgResult {
        x,
        n_iter: params.max_iter,
        rel_residual: rel,
        converged: false,
    })
}

/// The log-determinant approximation of Wilson et al. (2014, eq. 9) for an incomplete grid
/// with `n` of the `N` cells observed: `log det(P K Pᵀ + σ̄²I) ≈ Σ_{i ≤ n} log((n/N) λ_i + σ̄²)`
/// over the `n` largest grid eigenvalues `λ_i` of `K`, with σ̄² the mean noise.
///
/// **An approximation**: exact when every cell is observed with equal noise, and otherwise a
/// spectral heuristic (the eigenvalues of a subsampled kernel matrix scale roughly like `n/N`
/// times the full ones); its error is measured in the tests. Returns the value and the
/// selection mask of the eigenvalues used (C-order grid).
pub fn wilson_logdet<T: Float>(
    eig: &KronEig<T>,
    scale: T,
    n_obs: usize,
    noise_mean: f64,
) -> Result<(f64, Vec<bool>)> {
    check_noise(noise_mean)?;
    let lam = eig.grid_eigenvalues(scale, None);
    let big_n = lam.len();
    if n_obs == 0 || n_obs > big_n {
        return Err(invalid!("n_obs must be in 1..={big_n}, got {n_obs}"));
    }
    // Ties broken by index so the selection is deterministic.
    let mut order: Vec<usize> = (0..big_n).collect();
    order.par_sort_unstable_by(|&a, &b| {
        lam[b]
            .partial_cmp(&lam[a])
            .unwrap_or(std::cmp::Ordering::Equal)
            .then(a.cmp(&b))
    });
    let mut mask = vec![false; big_n];
    for &j in &order[..n_obs] {
        mask[j] = true;
    }
    let ratio = n_obs as f64 / big_n as f64;
    let val = ordered_sum(big_n, |j| {
        if mask[j] {
            (ratio * lam[j].to_f64() + noise_mean).ln()
        } else {
            0.0
        }
    });
    Ok((val, mask))
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::linalg::solvers::{DenseSolveCore, Solve};

    fn dense_kron(ms: &[Mat<f64>]) -> Mat<f64> {
        let mut out = Mat::<f64>::from_fn(1, 1, |_, _| 1.0);
        for m in ms {
            let (a, b) = (out.nrows(), out.ncols());
            out = Mat::from_fn(a * m.nrows(), b * m.ncols(), |i, j| {
                out[(i / m.nrows(), j / m.ncols())] * m[(i % m.nrows(), j % m.ncols())]
            });
        }
        out
    }

    fn spd(n: usize, seed: f64) -> Mat<f64> {
        Mat::from_fn(n, n, |i, j| {
            let d = (i as f64 - j as f64) / (n as f64 * 0.3 + seed);
            (-0.5 * d * d).exp()
        })
    }

    #[test]
    fn sum_ln_matches_plain_logarithms() {
        // a wide range of magnitudes (1e-300 to 1e300), so blocks would overflow without
        // the exponent split, and a length that is not a multiple of the block or chunk
        let n = 3 * super::SUM_CHUNK + 45;
        let v = |j: usize| 10f64.powf(((j * 7919) % 601) as f64 - 300.0) * (1.0 + (j % 13) as f64);
        let plain: f64 = (0..n).map(|j| v(j).ln()).sum();
        let fast = sum_ln(n, v);
        assert!((fast - plain).abs() <= 1e-12 * (0..n).map(|j| v(j).ln().abs()).sum::<f64>());
        assert!(sum_ln(3, |j| [1.0, 0.0, 2.0][j]) == f64::NEG_INFINITY);
        assert!(sum_ln(2, |j| [1.0, -1.0][j]).is_nan());
        assert_eq!(sum_ln(0, |_| 1.0), 0.0);
    }

    #[test]
    fn logdet_walks_the_grid_as_the_indexed_sum() {
        // kron_logdet fills blocks by walking (prefix, last) instead of dividing each index:
        // the same values in the same order, so the same bits, on a grid whose last axis is
        // not a divisor of the block or the chunk.
        let ks = [spd(40, 0.3), spd(9, 1.1), spd(37, 2.0)]; // 13320 values: two chunks
        let refs: Vec<MatRef<'_, f64>> = ks.iter().map(|k| k.as_ref()).collect();
        let eig = KronEig::new(&refs).unwrap();
        let (prefix, last) = eig.grid_eigenvalues_split(1.5);
        let nl = last.len();
        let want = sum_ln(prefix.len() * nl, |j| prefix[j / nl] * last[j % nl] + 0.01);
        assert_eq!(
            kron_logdet(&eig, 1.5, 0.01).unwrap().to_bits(),
            want.to_bits()
        );
    }

    #[test]
    fn kron_apply_matches_dense() {
        let ms = vec![
            Mat::from_fn(3, 4, |i, j| (i * 4 + j) as f64 * 0.1 - 0.3),
            Mat::from_fn(2, 5, |i, j| ((i + 2 * j) % 3) as f64 - 1.0),
            Mat::from_fn(4, 3, |i, j| (i as f64 - j as f64).sin()),
        ];
        let x: Vec<f64> = (0..2 * 60).map(|i| (i as f64 * 0.37).cos()).collect();
        let refs: Vec<_> = ms.iter().map(|m| m.as_ref()).collect();
        let y = kron_apply(&refs, &x, 2).unwrap();
        let dk = dense_kron(&ms);
        assert_eq!(y.len(), 2 * 24);
        for b in 0..2 {
            for i in 0..24 {
                let r: f64 = (0..60).map(|j| dk[(i, j)] * x[b * 60 + j]).sum();
                assert!((r - y[b * 24 + i]).abs() < 1e-12);
            }
        }
        assert!(kron_apply(&refs, &x[..7], 1).is_err());
    }

    #[test]
    fn indefinite_factor_is_an_error_round_off_is_clamped() {
        // K1 has eigenvalues −1 and 3: clamping −1 to 0 used to give a solve off by 6.
        let k1 = Mat::from_fn(2, 2, |i, j| if i == j { 1.0 } else { 2.0 });
        let eye = Mat::<f64>::identity(2, 2);
        match KronEig::new(&[eye.as_ref(), k1.as_ref()]) {
            Err(Error::InvalidValue(m)) => {
                assert!(m.contains("Ks[1] is not positive semi-definite"), "{m}");
                assert!(m.contains("-1.0"), "{m}");
            }
            other => panic!("expected InvalidValue, got {other:?}"),
        }
        let k32 = Mat::from_fn(2, 2, |i, j| if i == j { 1.0f32 } else { 2.0 });
        assert!(KronEig::new(&[k32.as_ref()]).is_err());
        // A rank-one PSD factor (all ones, n = 40) has round-off eigenvalues around −1e-15:
        // clamped to zero, and the solve matches the closed form.
        let n = 40;
        let ones = Mat::from_fn(n, n, |_, _| 1.0f64);
        let eig = KronEig::new(&[ones.as_ref()]).unwrap();
        assert!(eig.lam[0].iter().all(|&l| l >= 0.0));
        let y: Vec<f64> = (0..n).map(|i| (i as f64 * 0.7).sin()).collect();
        let x = kron_solve(&eig, 1.0, 0.5, &y, 1).unwrap();
        // (11ᵀ + σ²I)⁻¹ y = (y − 1·Σy/(σ² + n)) / σ²
        let sy: f64 = y.iter().sum();
        for i in 0..n {
            let r = (y[i] - sy / (0.5 + n as f64)) / 0.5;
            assert!((x[i] - r).abs() < 1e-12, "{i}: {} vs {r}", x[i]);
        }
    }

    #[test]
    fn solve_logdet_diag_match_dense() {
        let ms = vec![spd(5, 0.5), spd(4, 1.0), spd(3, 0.2)];
        let refs: Vec<_> = ms.iter().map(|m| m.as_ref()).collect();
        let eig = KronEig::new(&refs).unwrap();
        let (s, noise) = (1.7, 0.05);
        let n = 60;
        let mut a = dense_kron(&ms);
        for i in 0..n {
            for j in 0..n {
                a[(i, j)] *= s;
            }
            a[(i, i)] += noise;
        }
        let llt = a.llt(faer::Side::Lower).unwrap();
        let y: Vec<f64> = (0..n).map(|i| (i as f64).sin()).collect();
        let x = kron_solve(&eig, s, noise, &y, 1).unwrap();
        let yr = Mat::from_fn(n, 1, |i, _| y[i]);
        let xr = llt.solve(&yr);
        for i in 0..n {
            assert!((x[i] - xr[(i, 0)]).abs() < 1e-9 * xr.norm_max().max(1.0));
        }
        let ld: f64 = (0..n).map(|i| 2.0 * llt.L()[(i, i)].ln()).sum();
        assert!((kron_logdet(&eig, s, noise).unwrap() - ld).abs() < 1e-9 * ld.abs());
        let inv = llt.inverse();
        let dg = kron_inv_diag(&eig, s, noise).unwrap();
        for i in 0..n {
            assert!((dg[i] - inv[(i, i)]).abs() < 1e-9 * inv[(i, i)]);
        }
        assert!(kron_solve(&eig, s, 0.0, &y, 1).is_err());
    }

    #[test]
    fn pcg_matches_dense_on_observed_cells() {
        let ms = vec![spd(6, 0.5), spd(5, 1.0)];
        let refs: Vec<_> = ms.iter().map(|m| m.as_ref()).collect();
        let eig = KronEig::new(&refs).unwrap();
        let obs: Vec<usize> = (0..30).filter(|i| i % 4 != 1).collect();
        let noise: Vec<f64> = obs.iter().map(|&i| 0.01 + 0.001 * i as f64).collect();
        let sys = Incomplete::new(&eig, 1.3, &obs, &noise).unwrap();
        let b: Vec<f64> = obs.iter().map(|&i| (i as f64 * 0.7).cos()).collect();
        let res = pcg(&sys, &b, PcgParams::default(), &crate::NeverInterrupt).unwrap();
        assert!(res.converged);
        let k = dense_kron(&ms);
        let m = obs.len();
        let a = Mat::from_fn(m, m, |i, j| {
            1.3 * k[(obs[i], obs[j])] + if i == j { noise[i] } else { 0.0 }
        });
        let xr = a
            .llt(faer::Side::Lower)
            .unwrap()
            .solve(Mat::from_fn(m, 1, |i, _| b[i]));
        for i in 0..m {
            assert!((res.x[i] - xr[(i, 0)]).abs() < 1e-7 * xr.norm_max());
        }
    }

    #[test]
    fn wilson_logdet_is_exact_on_a_full_grid() {
        let ms = vec![spd(6, 0.5), spd(5, 1.0)];
        let refs: Vec<_> = ms.iter().map(|m| m.as_ref()).collect();
        let eig = KronEig::new(&refs).unwrap();
        let (w, mask) = wilson_logdet(&eig, 1.3, 30, 0.05).unwrap();
        assert!(mask.iter().all(|&b| b));
        let exact = kron_logdet(&eig, 1.3, 0.05).unwrap();
        assert!((w - exact).abs() < 1e-12 * exact.abs());
        assert!(wilson_logdet(&eig, 1.3, 31, 0.05).is_err());
        assert!(wilson_logdet(&eig, 1.3, 0, 0.05).is_err());
    }

    #[test]
    fn bit_identical_across_threads() {
        let ms = vec![spd(40, 0.5), spd(33, 1.0), spd(20, 0.3)];
        let refs: Vec<_> = ms.iter().map(|m| m.as_ref()).collect();
        let eig = KronEig::new(&refs).unwrap();
        let y: Vec<f64> = (0..2 * 40 * 33 * 20)
            .map(|i| (i as f64 * 0.01).sin())
            .collect();
        let run = |n: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(n)
                .build()
                .unwrap();
            pool.install(|| {
                (
                    kron_solve(&eig, 1.0, 0.1, &y, 2).unwrap(),
                    kron_logdet(&eig, 1.0, 0.1).unwrap(),
                )
            })
        };
        let (a, la) = run(1);
        let (b, lb) = run(3);
        assert_eq!(a, b);
        assert_eq!(la.to_bits(), lb.to_bits());
    }
}
