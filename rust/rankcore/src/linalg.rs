//! Thin helpers over faer: deterministic parallel products, orthonormalisation of tall blocks
//! (TSQR), LU normalisation and small dense SVDs.
//!
//! Determinism: a parallel region here splits its output into row blocks whose boundaries
//! depend only on the shape, and each block is computed by faer's sequential kernels. So one
//! thread and many threads perform exactly the same floating-point operations in the same
//! order, and results are bit-identical.

use crate::{Error, Float, Result};
use faer::dyn_stack::{MemBuffer, MemStack};
use faer::linalg::householder;
use faer::linalg::matmul::matmul as faer_matmul;
use faer::linalg::qr::no_pivoting::factor as qr;
use faer::linalg::svd::{self, ComputeSvdVectors};
use faer::reborrow::*;
use faer::{Accum, Conj, Mat, MatMut, MatRef, Par};
use rayon::prelude::*;

/// Clears the upper halves of the vector registers (`vzeroupper`) where the CPU has AVX.
///
/// faer 0.24's x86 GEMM kernels (private-gemm-x86: assembly generated at build time) return
/// with those halves still dirty. Until something clears them, every legacy-SSE instruction
/// the same thread runs (all scalar floating-point code compiled for the x86-64 baseline)
/// pays a state-transition penalty: Box–Muller normals drawn on a thread that had just run a
/// GEMM took 11× longer on the 2-core reference Xeon. So every faer call in this crate is
/// followed by this (GEMMs through [`gemm`]); it costs a few cycles.
#[inline]
pub fn clear_upper() {
    #[cfg(target_arch = "x86_64")]
    {
        #[target_feature(enable = "avx")]
        unsafe fn vzeroupper() {
            core::arch::x86_64::_mm256_zeroupper();
        }
        if std::arch::is_x86_feature_detected!("avx") {
            // SAFETY: the CPU has AVX.
            unsafe { vzeroupper() }
        }
    }
}

/// `dst = alpha·lhs·rhs` (or `dst += …` with `Accum::Add`) by faer's sequential GEMM, then
/// [`clear_upper`]. Every GEMM of the crate goes through here.
pub fn gemm<T: Float>(
    dst: MatMut<'_, T>,
    accum: Accum,
    lhs: MatRef<'_, T>,
    rhs: MatRef<'_, T>,
    alpha: T,
) {
    faer_matmul(dst, accum, lhs, rhs, alpha, Par::Seq);
    clear_upper();
}

/// Rows per block of a parallel product. Measured on the 2-core reference machine, 512 beats
/// 128 and 256 (faer's packing of the right-hand side is amortised over more rows); the price
/// is fewer blocks than threads for short outputs on many-core machines.
const ROW_BLOCK: usize = 512;

/// Rows per leaf of the TSQR tree (at least `4·ncols`).
const TSQR_ROWS: usize = 2048;

/// Calls `f(row0, block)` on consecutive row blocks of `dst` in parallel. Block boundaries are
/// multiples of `block`, whatever the number of threads.
pub fn par_row_blocks<T: Float>(
    dst: MatMut<'_, T>,
    block: usize,
    f: &(impl Fn(usize, MatMut<'_, T>) + Sync),
) {
    fn go<T: Float>(
        row0: usize,
        dst: MatMut<'_, T>,
        block: usize,
        f: &(impl Fn(usize, MatMut<'_, T>) + Sync),
    ) {
        let nblocks = dst.nrows().div_ceil(block);
        if nblocks <= 1 {
            f(row0, dst);
            return;
        }
        let mid = (nblocks / 2) * block;
        let (top, bottom) = dst.split_at_row_mut(mid);
        rayon::join(
            || go(row0, top, block, f),
            || go(row0 + mid, bottom, block, f),
        );
    }
    go(0, dst, block.max(1), f)
}

/// Rows per block of a [`matmul`] with `m` output rows: about [`ROW_BLOCK`], in an even
/// number of equal blocks (multiples of 16 rows) while there are few, so that two threads
/// share them evenly (2304 rows: six blocks of 384, not four of 512 and one of 256, which
/// left one thread a third of the work alone). A function of `m` only, so the result does
/// not depend on the number of threads.
fn row_block(m: usize) -> usize {
    let mut blocks = m.div_ceil(ROW_BLOCK);
    if blocks > 1 && blocks < 8 && blocks % 2 == 1 {
        blocks += 1;
    }
    m.div_ceil(blocks.max(1)).next_multiple_of(16)
}

/// Inner-dimension chunk of a [`matmul`] whose output is a single row block.
const K_BLOCK: usize = 4096;

/// `dst = lhs · rhs`, bit-identical for any thread count. Any strides are accepted (faer
/// packs the operands). The output is split into row blocks; an output of one block with a
/// long inner dimension (`Aᵀ·Y` for a matrix with few columns) is split along the inner
/// dimension instead, into fixed chunks whose partial products are added in chunk order.
pub fn matmul<T: Float>(dst: MatMut<'_, T>, lhs: MatRef<'_, T>, rhs: MatRef<'_, T>) {
    let k = lhs.ncols();
    if dst.nrows() > ROW_BLOCK || k < 2 * K_BLOCK {
        let block = row_block(dst.nrows());
        par_row_blocks(dst, block, &|row0, block: MatMut<'_, T>| {
            let lhs = lhs.subrows(row0, block.nrows());
            gemm(block, Accum::Replace, lhs, rhs, T::ONE);
        });
        return;
    }
    let chunks = k / K_BLOCK; // the last chunk takes the remainder
    let partials: Vec<Mat<T>> = (0..chunks)
        .into_par_iter()
        .map(|c| {
            let k0 = c * K_BLOCK;
            let len = if c + 1 == chunks { k - k0 } else { K_BLOCK };
            let mut part = Mat::<T>::zeros(dst.nrows(), dst.ncols());
            gemm(
                part.as_mut(),
                Accum::Replace,
                lhs.subcols(k0, len),
                rhs.subrows(k0, len),
                T::ONE,
            );
            part
        })
        .collect();
    let mut dst = dst;
    dst.copy_from(&partials[0]);
    for part in &partials[1..] {
        dst += part;
    }
}

/// `dst -= lhs · rhs` (same blocking as [`matmul`]).
pub fn matmul_sub<T: Float>(dst: MatMut<'_, T>, lhs: MatRef<'_, T>, rhs: MatRef<'_, T>) {
    par_row_blocks(dst, ROW_BLOCK, &|row0, block: MatMut<'_, T>| {
        let lhs = lhs.subrows(row0, block.nrows());
        gemm(block, Accum::Add, lhs, rhs, -T::ONE);
    });
}

/// Householder QR of a tall matrix, kept in factored form.
struct HouseholderQr<T> {
    /// Reflectors below the diagonal, `R` on and above it.
    factors: Mat<T>,
    /// Block reflector coefficients.
    h: Mat<T>,
}

impl<T: Float> HouseholderQr<T> {
    /// Sequential QR of `a` (`nrows >= ncols`).
    fn new(a: MatRef<'_, T>) -> Self {
        let (m, n) = a.shape();
        debug_assert!(m >= n);
        let bs = qr::recommended_block_size::<T>(m, n).max(1);
        let mut factors = a.to_owned();
        let mut h = Mat::<T>::zeros(bs, n);
        let mut buf = MemBuffer::new(qr::qr_in_place_scratch::<T>(
            m,
            n,
            bs,
            Par::Seq,
            Default::default(),
        ));
        qr::qr_in_place(
            factors.as_mut(),
            h.as_mut(),
            Par::Seq,
            MemStack::new(&mut buf),
            Default::default(),
        );
        clear_upper();
        Self { factors, h }
    }

    fn r(&self) -> Mat<T> {
        let n = self.factors.ncols();
        Mat::from_fn(n, n, |i, j| {
            if i <= j {
                self.factors[(i, j)]
            } else {
                T::ZERO
            }
        })
    }

    /// Writes `Q·[top; 0]` into `dst` (`nrows × top.ncols()`): with `top = I` that is the thin
    /// `Q`; in TSQR it is this block's rows of the final `Q`, without forming the local one.
    fn q_times(&self, top: MatRef<'_, T>, mut dst: MatMut<'_, T>) {
        let (m, n) = self.factors.shape();
        dst.fill(T::ZERO);
        dst.rb_mut().subrows_mut(0, top.nrows()).copy_from(top);
        let req = householder::apply_block_householder_sequence_on_the_left_in_place_scratch::<T>(
            m,
            self.h.nrows(),
            n,
        );
        let mut buf = MemBuffer::new(req);
        householder::apply_block_householder_sequence_on_the_left_in_place_with_conj(
            self.factors.as_ref(),
            self.h.as_ref(),
            Conj::No,
            dst,
            Par::Seq,
            MemStack::new(&mut buf),
        );
        clear_upper();
    }
}

/// Thin Householder QR of a tall matrix (`nrows >= ncols`), sequential: returns `(Q, R)`.
pub fn qr_thin<T: Float>(a: MatRef<'_, T>) -> (Mat<T>, Mat<T>) {
    let qr = HouseholderQr::new(a);
    let n = a.ncols();
    let mut q = Mat::<T>::zeros(a.nrows(), n);
    qr.q_times(Mat::<T>::identity(n, n).as_ref(), q.as_mut());
    (q, qr.r())
}

/// Rows per block of the parallel Gram and triangular-solve passes of [`cholesky_qr`].
const CHOL_ROWS: usize = 2048;

/// Replaces the columns of a tall block `y` (`nrows >= ncols`) by an orthonormal basis of
/// their span: [`cholesky_qr`] (GEMM speed) where it succeeds, else [`householder_orthonormalize`].
pub fn orthonormalize<T: Float>(mut y: MatMut<'_, T>) {
    if !cholesky_qr(y.rb_mut()) {
        householder_orthonormalize(y);
    }
}

/// Shifted CholeskyQR (Fukaya, Kannan, Nakatsukasa, Yamamoto & Yanagisawa, "Shifted Cholesky
/// QR for computing the QR factorization of ill-conditioned matrices", SISC 2020): replaces
/// `y` by `y·R⁻¹` with `R` from the Cholesky factor of the Gram matrix, repeated.
///
/// The first step shifts the Gram matrix by `11 (m l + l (l + 1)) u ‖y‖²_F`, which brings any
/// full-rank `y` with `cond(y) < 1/u` to `cond ≲ u^{-1/2}`; plain steps then make it
/// orthonormal to working precision. One more step suffices when the next Gram matrix is
/// within 1/2 of the identity in Frobenius norm (CholeskyQR's error is `O(u cond²)` and
/// `cond² ≤ 3` then): two steps in all for well-conditioned blocks, three otherwise. Each
/// step is one Gram matrix and one triangular solve over fixed row blocks, so the result is
/// bit-identical for any thread count.
///
/// Returns false, leaving `y` with the same span but not orthonormal, when a Gram matrix is
/// not numerically positive definite (rank-deficient `y`, zero columns, NaN); callers then
/// use Householder QR.
pub fn cholesky_qr<T: Float>(y: MatMut<'_, T>) -> bool {
    let (m, l) = y.shape();
    if l == 0 || m < l {
        return false;
    }
    cholesky_qr_from(gram(y.rb()), y)
}

/// [`cholesky_qr`] given the lower triangle of `y`'s Gram matrix `g` (the upper one zero).
fn cholesky_qr_from<T: Float>(mut g: Mat<T>, mut y: MatMut<'_, T>) -> bool {
    let (m, l) = y.shape();
    let trace: f64 = (0..l).map(|i| g[(i, i)].to_f64()).sum();
    let shift = 11.0 * (m * l + l * (l + 1)) as f64 * T::EPSILON.to_f64() * trace;
    for i in 0..l {
        g[(i, i)] += T::from_f64(shift);
    }
    if !cholesky_step(g.as_ref(), y.rb_mut()) {
        return false;
    }
    for step in 1..=2 {
        let g = gram(y.rb());
        // ‖G - I‖²_F from the lower triangle (off-diagonal entries count twice).
        let dev2: f64 = (0..l)
            .flat_map(|j| (j..l).map(move |i| (i, j)))
            .map(|(i, j)| {
                let v = g[(i, j)].to_f64();
                if i == j {
                    (v - 1.0) * (v - 1.0)
                } else {
                    2.0 * v * v
                }
            })
            .sum();
        let close = dev2 <= 0.25; // false for NaN too
        if !(close || step == 1) || !cholesky_step(g.as_ref(), y.rb_mut()) {
            return false;
        }
        if close {
            break;
        }
    }
    true
}

/// The lower triangle of `yᵀy` (the upper one left zero), as a sum of partial Gram matrices
/// of fixed row blocks added in block order (computed in parallel waves of [`GRAM_WAVE`]
/// blocks, so at most that many partials are alive at once).
fn gram<T: Float>(y: MatRef<'_, T>) -> Mat<T> {
    let (m, l) = y.shape();
    let nblocks = m.div_ceil(CHOL_ROWS).max(1);
    let mut g = Mat::<T>::zeros(l, l);
    for wave in (0..nblocks).step_by(GRAM_WAVE) {
        let partials: Vec<Mat<T>> = (wave..(wave + GRAM_WAVE).min(nblocks))
            .into_par_iter()
            .map(|b| {
                let r0 = b * CHOL_ROWS;
                let mut part = Mat::<T>::zeros(l, l);
                syrk_lower(part.as_mut(), y.subrows(r0, CHOL_ROWS.min(m - r0)));
                part
            })
            .collect();
        for part in &partials {
            g += part;
        }
    }
    g
}

/// `dst = lower(bᵀ b)`: the lower triangle of a Gram matrix, half a GEMM's flops (SYRK).
fn syrk_lower<T: Float>(dst: MatMut<'_, T>, b: MatRef<'_, T>) {
    use faer::linalg::matmul::triangular::{matmul as tri_matmul, BlockStructure};
    tri_matmul(
        dst,
        BlockStructure::TriangularLower,
        Accum::Replace,
        b.transpose(),
        BlockStructure::Rectangular,
        b,
        BlockStructure::Rectangular,
        T::ONE,
        Par::Seq,
    );
    clear_upper();
}

/// Rows per block of [`centred_gram`]: a scratch copy of about 1 MiB (measured on the 2-core
/// reference machine at 500000 × 100: 1024-row blocks beat 256 by 15%, and 4096 by 5%), and
/// at least `2n` rows so that merging a block's `n × n` summary stays cheap beside its SYRK.
const GRAM_BLOCK_BYTES: usize = 1 << 20;
/// The number of blocks of [`centred_gram`] is a multiple of this (when more than one).
const GRAM_BLOCK_MULTIPLE: usize = 4;
/// Blocks computed in parallel before their summaries are merged in order (bounds the
/// memory of the summaries to this many `n × n` matrices).
const GRAM_WAVE: usize = 16;

/// Column means `μ` and the Gram matrix `Σᵢ (xᵢ - μ)(xᵢ - μ)ᵀ` of the rows of `x` (`m × n`,
/// any strides), in float64, in one pass over `x` (the covariance route of PCA).
///
/// Each fixed block of rows is copied into a scratch, centred at its own mean, and its Gram
/// matrix taken by a lower-triangular product (half a GEMM's flops); block summaries are
/// merged in block order by the parallel-axis update of Chan, Golub & LeVeque (1979),
/// `C = C_a + C_b + (n_a n_b / n) δδᵀ` with `δ = μ_b - μ_a`, so large column means cause no
/// cancellation (unlike `XᵀX - m μμᵀ`). Without `center`, `μ = 0` and `C = XᵀX`. Block
/// boundaries and the merge order depend only on the shape: the result is bit-identical for
/// any thread count.
pub fn centred_gram<T: Float>(x: MatRef<'_, T>, center: bool) -> (Mat<f64>, Vec<f64>) {
    let (m, n) = x.shape();
    let rows = (GRAM_BLOCK_BYTES / (n.max(1) * std::mem::size_of::<T>()))
        .max(2 * n)
        .clamp(64, 8192);
    // A multiple of GRAM_BLOCK_MULTIPLE blocks of (nearly) equal size, so that few blocks
    // still share out evenly over the threads (5000 × 500 came in 5 blocks of 1000 rows: one
    // thread of two did three); the count does not depend on the thread count.
    let nblocks = match m.div_ceil(rows) {
        0 | 1 => 1,
        b => b.next_multiple_of(GRAM_BLOCK_MULTIPLE),
    };
    let rows = m.div_ceil(nblocks).max(1);
    let nblocks = m.div_ceil(rows).max(1);
    let row_major = x.col_stride() == 1 && n > 1;
    // Means are summed and merged relative to the first row: their rounding errors then
    // scale with the data's spread, not with its offset. (Raw sums of values near 1e4 left
    // each block's mean 3e-15 off, and the merge's δδᵀ terms turned that into 3e-13 of
    // relative error in the Gram matrix, 700 times numpy's centred product.)
    let reference: Vec<f64> = if center && m > 0 {
        (0..n).map(|j| x[(0, j)].to_f64()).collect()
    } else {
        vec![0.0; n]
    };
    let absolute = |mean: &[f64]| -> Vec<T> {
        mean.iter()
            .zip(&reference)
            .map(|(&mj, &o)| T::from_f64(o + mj))
            .collect()
    };
    let block_moments = |b: usize| {
        let r0 = b * rows;
        let block = x.subrows(r0, rows.min(m - r0));
        let h = block.nrows();
        let mut mean = vec![0.0; n];
        let mut part = Mat::<T>::zeros(n, n);
        if row_major {
            // Rows contiguous (numpy's C order): the means from the rows in place, then the
            // centred rows one after the other (the columns of an n × h column-major `st`);
            // transposing the block into a column-major copy took a fifth of the time
            // (500000 × 100, measured). Each column's sum still runs over the rows in order.
            // SAFETY: row r of the block holds n contiguous entries (column stride 1).
            let row = |r: usize| unsafe { std::slice::from_raw_parts(block.ptr_at(r, 0), n) };
            let mut shift = vec![T::ZERO; n];
            if center {
                for r in 0..h {
                    for ((mj, &v), &o) in mean.iter_mut().zip(row(r)).zip(&reference) {
                        *mj += v.to_f64() - o;
                    }
                }
                mean.iter_mut().for_each(|mj| *mj /= h as f64);
                shift = absolute(&mean);
            }
            let mut st = Vec::with_capacity(h * n);
            for r in 0..h {
                st.extend(row(r).iter().zip(&shift).map(|(&v, &sh)| v - sh));
            }
            let st = MatRef::from_column_major_slice(&st, n, h);
            syrk_lower(part.as_mut(), st.transpose());
        } else {
            let mut s = block.to_owned(); // column-major: each column contiguous below
            if center {
                for (j, mj) in mean.iter_mut().enumerate() {
                    let col = s.as_mut().col_mut(j);
                    let o = reference[j];
                    *mj = col.rb().iter().map(|v| v.to_f64() - o).sum::<f64>() / h as f64;
                    let shift = T::from_f64(o + *mj);
                    col.iter_mut().for_each(|v| *v -= shift);
                }
            }
            syrk_lower(part.as_mut(), s.as_ref());
        }
        // The block was centred at its mean rounded to T; about the mean itself its Gram
        // matrix is h·ddᵀ smaller, d = mean - shift (the rounding, well below an ulp of the
        // data's spread in float64).
        let d: Vec<f64> = absolute(&mean)
            .iter()
            .zip(&reference)
            .zip(&mean)
            .map(|((&sh, &o), &mj)| (o - sh.to_f64()) + mj)
            .collect();
        let hf = h as f64;
        Moments {
            count: h,
            gram: Mat::from_fn(n, n, |i, j| {
                part[(i.max(j), i.min(j))].to_f64() - hf * d[i] * d[j]
            }),
            mean,
        }
    };
    let mut total = Moments::empty(n);
    for wave in (0..nblocks).step_by(GRAM_WAVE) {
        let summaries: Vec<Moments> = (wave..(wave + GRAM_WAVE).min(nblocks))
            .into_par_iter()
            .map(block_moments)
            .collect();
        for s in summaries {
            total.merge(s);
        }
    }
    let mean = total
        .mean
        .iter()
        .zip(&reference)
        .map(|(mj, o)| o + mj)
        .collect();
    (total.gram, mean)
}

/// Eigen-decomposition of a symmetric matrix, eigenvalues non-increasing (sequential, so
/// the result does not depend on the thread count), clipped at zero below (for Gram
/// matrices: rounding leaves tiny negative ones). Several times cheaper than an SVD. `what`
/// names the matrix in the error when the iteration does not converge.
pub fn eigh_desc<T: Float>(g: MatRef<'_, T>, what: &'static str) -> Result<(Mat<T>, Vec<T>)> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::evd::{self, ComputeEigenvectors};
    let n = g.nrows();
    let mut u = Mat::<T>::zeros(n, n);
    let mut s = faer::diag::Diag::<T>::zeros(n);
    let req = evd::self_adjoint_evd_scratch::<T>(
        n,
        ComputeEigenvectors::Yes,
        faer::Par::Seq,
        Default::default(),
    );
    let mut buf = MemBuffer::new(req);
    let evd = evd::self_adjoint_evd(
        g,
        s.as_mut(),
        Some(u.as_mut()),
        faer::Par::Seq,
        MemStack::new(&mut buf),
        Default::default(),
    );
    clear_upper();
    evd.map_err(|_| Error::NoConvergence(what))?;
    // ascending -> descending; rounding can leave tiny negative eigenvalues: clip at zero
    let vals: Vec<T> = (0..n)
        .rev()
        .map(|i| if s[i] > T::ZERO { s[i] } else { T::ZERO })
        .collect();
    let mut out = Mat::<T>::zeros(n, n);
    for j in 0..n {
        out.col_mut(j).copy_from(u.col(n - 1 - j));
    }
    Ok((out, vals))
}

/// Row count, mean and centred Gram matrix of a set of rows (float64).
struct Moments {
    count: usize,
    mean: Vec<f64>,
    gram: Mat<f64>,
}

impl Moments {
    fn empty(n: usize) -> Self {
        Self {
            count: 0,
            mean: vec![0.0; n],
            gram: Mat::zeros(n, n),
        }
    }

    /// Adds the rows summarised by `other` (Chan, Golub & LeVeque's pairwise update).
    fn merge(&mut self, other: Moments) {
        if other.count == 0 {
            return;
        }
        if self.count == 0 {
            *self = other;
            return;
        }
        let (na, nb) = (self.count as f64, other.count as f64);
        let n = na + nb;
        let delta: Vec<f64> = other
            .mean
            .iter()
            .zip(&self.mean)
            .map(|(b, a)| b - a)
            .collect();
        let w = na * nb / n;
        let g = &mut self.gram;
        for j in 0..delta.len() {
            for i in 0..delta.len() {
                g[(i, j)] += other.gram[(i, j)] + w * delta[i] * delta[j];
            }
        }
        for (a, d) in self.mean.iter_mut().zip(&delta) {
            *a += d * nb / n;
        }
        self.count += other.count;
    }
}

/// One CholeskyQR step: `g = L Lᵀ`, then `y ← y L⁻ᵀ` over fixed row blocks. False (and `y`
/// untouched) when the factorisation fails or gives a non-finite factor.
fn cholesky_step<T: Float>(g: MatRef<'_, T>, y: MatMut<'_, T>) -> bool {
    match cholesky_factor(g) {
        Some(l) => {
            solve_by_factor(l.as_ref(), y);
            true
        }
        None => false,
    }
}

/// The lower Cholesky factor of `g` (lower triangle read), or `None` unless its diagonal is
/// finite and positive.
fn cholesky_factor<T: Float>(g: MatRef<'_, T>) -> Option<Mat<T>> {
    let llt = g.llt(faer::Side::Lower);
    clear_upper();
    let l = llt.ok()?.L().to_owned();
    (0..l.nrows())
        .all(|i| l[(i, i)].to_f64().is_finite() && l[(i, i)] > T::ZERO)
        .then_some(l)
}

/// `y ← y·L⁻ᵀ` over fixed row blocks.
fn solve_by_factor<T: Float>(l: MatRef<'_, T>, y: MatMut<'_, T>) {
    par_row_blocks(y, CHOL_ROWS, &|_, block: MatMut<'_, T>| {
        // block · L⁻ᵀ = (L⁻¹ · blockᵀ)ᵀ, solved in place on the transposed view.
        faer::linalg::triangular_solve::solve_lower_triangular_in_place(
            l,
            block.transpose_mut(),
            Par::Seq,
        );
        clear_upper();
    });
}

/// Largest `u·cond(y)²` (`u` the unit roundoff) for which [`recondition`] takes a single
/// CholeskyQR step: its result is then orthonormal to within about this much (CholeskyQR's
/// error is `O(u·cond²)`), so its condition number is below 1.001.
const RECONDITION_LIMIT: f64 = 1e-3;

/// Re-conditions a tall block between power iterations, where the next product needs a
/// well-conditioned basis of the same span, not an orthonormal one to working precision:
/// a single CholeskyQR step (one Gram matrix, one triangular solve) when the Cholesky
/// factor `L` shows `u·cond(y)² ≤` [`RECONDITION_LIMIT`] (bounded above through
/// `cond(y) ≤ ‖L‖_F ‖L⁻¹‖_F`), else [`orthonormalize`] (two or three of each). The span
/// is that of a triangular solve either way; bit-identical for any thread count.
pub fn recondition<T: Float>(mut y: MatMut<'_, T>) {
    let (m, l) = y.shape();
    if l == 0 || m < l {
        return orthonormalize(y);
    }
    let g = gram(y.rb());
    if let Some(factor) = cholesky_factor(g.as_ref()) {
        let mut inverse = Mat::<T>::zeros(l, l);
        faer::linalg::triangular_inverse::invert_lower_triangular(
            inverse.as_mut(),
            factor.as_ref(),
            Par::Seq,
        );
        let cond = factor.norm_l2().to_f64() * inverse.norm_l2().to_f64();
        if cond.is_finite() && T::EPSILON.to_f64() / 2.0 * cond * cond <= RECONDITION_LIMIT {
            return solve_by_factor(factor.as_ref(), y);
        }
    }
    if !cholesky_qr_from(g, y.rb_mut()) {
        householder_orthonormalize(y);
    }
}

/// Replaces the columns of a tall block `y` (`nrows >= ncols`) by an orthonormal basis of
/// their span, using a one-level TSQR: QR of fixed row blocks in parallel, QR of the stacked
/// R factors, then each block's reflectors applied to its slice of the second Q.
pub fn householder_orthonormalize<T: Float>(mut y: MatMut<'_, T>) {
    let (m, l) = y.shape();
    let rows = TSQR_ROWS.max(4 * l);
    if m < 2 * rows || l == 0 {
        let (q, _) = qr_thin(y.rb());
        y.copy_from(&q);
        return;
    }
    let nblocks = m / rows; // the last block takes the remainder
    let bounds: Vec<(usize, usize)> = (0..nblocks)
        .map(|b| (b * rows, if b + 1 == nblocks { m } else { (b + 1) * rows }))
        .collect();
    let local: Vec<HouseholderQr<T>> = bounds
        .par_iter()
        .map(|&(r0, r1)| HouseholderQr::new(y.rb().subrows(r0, r1 - r0)))
        .collect();
    let mut stacked = Mat::<T>::zeros(nblocks * l, l);
    for (b, qr) in local.iter().enumerate() {
        stacked.as_mut().subrows_mut(b * l, l).copy_from(qr.r());
    }
    let (q2, _) = qr_thin(stacked.as_ref());
    let mut views = Vec::with_capacity(nblocks);
    let mut rest = y;
    for &(r0, r1) in &bounds[..nblocks - 1] {
        let (head, tail) = rest.split_at_row_mut(r1 - r0);
        views.push(head);
        rest = tail;
    }
    views.push(rest);
    views
        .into_par_iter()
        .zip(local.par_iter())
        .enumerate()
        .for_each(|(b, (dst, qr))| {
            qr.q_times(q2.as_ref().subrows(b * l, l), dst);
        });
}

/// Replaces a tall block `y` by `P·L` from its LU factorisation with partial pivoting (what
/// scipy's `lu(y, permute_l=True)` returns): the same column span, well enough conditioned to
/// keep power iterations from collapsing, at a quarter of a QR's cost.
pub fn lu_normalize<T: Float>(mut y: MatMut<'_, T>) {
    use faer::linalg::lu::partial_pivoting::factor as lu;
    let (m, l) = y.shape();
    let mut work = y.rb().to_owned();
    let mut perm = vec![0usize; m];
    let mut perm_inv = vec![0usize; m];
    let mut buf = MemBuffer::new(lu::lu_in_place_scratch::<usize, T>(
        m,
        l,
        Par::Seq,
        Default::default(),
    ));
    let stack = MemStack::new(&mut buf);
    lu::lu_in_place(
        work.as_mut(),
        &mut perm,
        &mut perm_inv,
        Par::Seq,
        stack,
        Default::default(),
    );
    clear_upper();
    let pivots: Vec<T> = (0..l.min(m)).map(|j| work[(j, j)].abs()).collect();
    let largest = pivots
        .iter()
        .copied()
        .fold(T::ZERO, |a, b| if b > a { b } else { a });
    let floor = largest * T::EPSILON * T::from_f64(m as f64);
    if pivots.iter().any(|&p| !(p > floor)) || !largest.is_finite() {
        orthonormalize(y);
        return;
    }
    // Row i of the factorised matrix is row perm[i] of y: put L's rows back in y's order.
    for (i, &src) in perm.iter().enumerate() {
        for j in 0..l {
            y[(src, j)] = match i.cmp(&j) {
                std::cmp::Ordering::Greater => work[(i, j)],
                std::cmp::Ordering::Equal => T::ONE,
                std::cmp::Ordering::Less => T::ZERO,
            };
        }
    }
}

/// Thin SVD `a = U diag(s) Vᵀ`, sequential (for the small matrices of a randomized method).
/// Singular values come in non-increasing order.
pub fn svd_thin<T: Float>(a: MatRef<'_, T>) -> Result<(Mat<T>, Vec<T>, Mat<T>)> {
    let (m, n) = a.shape();
    let k = m.min(n);
    let mut u = Mat::<T>::zeros(m, k);
    let mut v = Mat::<T>::zeros(n, k);
    let mut s = faer::diag::Diag::<T>::zeros(k);
    let req = svd::svd_scratch::<T>(
        m,
        n,
        ComputeSvdVectors::Thin,
        ComputeSvdVectors::Thin,
        Par::Seq,
        Default::default(),
    );
    let mut buf = MemBuffer::new(req);
    let stack = MemStack::new(&mut buf);
    let svd = svd::svd(
        a,
        s.as_mut(),
        Some(u.as_mut()),
        Some(v.as_mut()),
        Par::Seq,
        stack,
        Default::default(),
    );
    clear_upper();
    svd.map_err(|_| Error::NoConvergence("SVD of the projected matrix"))?;
    let s: Vec<T> = (0..k).map(|i| s[i]).collect();
    // faer returns them sorted; keep the invariant explicit for callers that truncate.
    debug_assert!(s.windows(2).all(|w| w[0] >= w[1]));
    Ok((u, s, v))
}

/// Thin SVD of a tall matrix (`m >= n`) at GEMM speed: [`cholesky_qr`] gives `a = Q R`, the
/// small `R = Qᵀ a` (`n × n`) goes to [`svd_thin`], and `U = Q U_R`. The backward error is
/// CholeskyQR's, `O(m n ε ‖a‖)` at worst (measured: 3e-13 ‖a‖ at 3000 × 12 with condition
/// number 1e14, 1e-15 when well conditioned), against `O(ε ‖a‖)` for a direct SVD: far below
/// the sketching error of a randomized SVD, where this is used. faer's SVD of the whole
/// tall matrix costs
/// several times more (248 ms against about 60 ms at 50000 × 110 on the reference machine).
/// Falls back to [`svd_thin`] where CholeskyQR refuses (rank-deficient `a`) or `a` is not
/// tall.
pub fn svd_tall<T: Float>(a: MatRef<'_, T>) -> Result<(Mat<T>, Vec<T>, Mat<T>)> {
    let (m, n) = a.shape();
    if m < 2 * n || n == 0 {
        return svd_thin(a);
    }
    let mut q = a.to_owned();
    if !cholesky_qr(q.as_mut()) {
        return svd_thin(a);
    }
    let mut r = Mat::<T>::zeros(n, n);
    matmul(r.as_mut(), q.transpose(), a);
    let (ur, s, v) = svd_thin(r.as_ref())?;
    let mut u = Mat::<T>::zeros(m, n);
    matmul(u.as_mut(), q.as_ref(), ur.as_ref());
    Ok((u, s, v))
}

/// Frobenius norm squared, accumulated in f64 column by column (ordered, so deterministic).
pub fn sq_norm<T: Float>(a: MatRef<'_, T>) -> f64 {
    let cols: Vec<f64> = (0..a.ncols())
        .into_par_iter()
        .map(|j| {
            a.col(j)
                .iter()
                .map(|&x| x.to_f64() * x.to_f64())
                .sum::<f64>()
        })
        .collect();
    cols.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn test_matrix(m: usize, n: usize, seed: u64) -> Mat<f64> {
        // A cheap deterministic pseudo-random matrix (no rng dependency in this module).
        Mat::from_fn(m, n, |i, j| {
            let x = (i as u64 * 2654435761 + j as u64 * 40503 + seed * 97) % 1000;
            x as f64 / 500.0 - 1.0 + if i == j { 3.0 } else { 0.0 }
        })
    }

    fn max_abs(a: MatRef<'_, f64>) -> f64 {
        let mut best = 0.0f64;
        for j in 0..a.ncols() {
            for i in 0..a.nrows() {
                best = best.max(a[(i, j)].abs());
            }
        }
        best
    }

    fn assert_orthonormal(q: MatRef<'_, f64>, tol: f64) {
        let gram = q.transpose() * q;
        let err = &gram - Mat::<f64>::identity(q.ncols(), q.ncols());
        assert!(
            max_abs(err.as_ref()) < tol,
            "QᵀQ - I = {}",
            max_abs(err.as_ref())
        );
    }

    /// Distance between the spans of two matrices with orthonormalised columns.
    fn span_gap(a: MatRef<'_, f64>, b: MatRef<'_, f64>) -> f64 {
        let (qa, _) = qr_thin(a);
        let (qb, _) = qr_thin(b);
        let proj = &qb - &qa * (qa.transpose() * &qb);
        max_abs(proj.as_ref())
    }

    /// `a · b` through [`matmul`] on a pool of `threads` threads.
    fn matmul_on(threads: usize, a: &Mat<f64>, b: &Mat<f64>) -> Mat<f64> {
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(threads)
            .build()
            .unwrap();
        let mut c = Mat::<f64>::zeros(a.nrows(), b.ncols());
        pool.install(|| matmul(c.as_mut(), a.as_ref(), b.as_ref()));
        c
    }

    #[test]
    fn matmul_matches_faer_and_is_thread_independent() {
        // Row-block path, then a short output with a long inner dimension (inner split).
        for (a, b, tol) in [
            (test_matrix(1000, 300, 1), test_matrix(300, 40, 2), 1e-11),
            (test_matrix(30, 20000, 3), test_matrix(20000, 5, 4), 1e-9),
        ] {
            let c1 = matmul_on(1, &a, &b);
            assert!(max_abs((&c1 - &a * &b).as_ref()) < tol);
            assert_eq!(c1, matmul_on(3, &a, &b));
        }
    }

    #[test]
    fn replacing_products_never_read_their_destination() {
        // Mode products write into buffers they do not zero first (`tucker::tensor`); a
        // destination full of NaN must not leak into `Accum::Replace` results. Row-block path,
        // inner-split path, and one sequential GEMM of shapes as small as FLoRA's.
        for (a, b) in [
            (test_matrix(1000, 30, 1), test_matrix(30, 256, 2)),
            (test_matrix(30, 20000, 3), test_matrix(20000, 5, 4)),
            (test_matrix(9, 32, 5), test_matrix(32, 256, 6)),
        ] {
            let want = &a * &b;
            let mut c = Mat::<f64>::from_fn(a.nrows(), b.ncols(), |_, _| f64::NAN);
            matmul(c.as_mut(), a.as_ref(), b.as_ref());
            assert!(c.is_all_finite() && max_abs((&c - &want).as_ref()) < 1e-9);
            let mut c = Mat::<f64>::from_fn(a.nrows(), b.ncols(), |_, _| f64::NAN);
            gemm(c.as_mut(), Accum::Replace, a.as_ref(), b.as_ref(), 1.0);
            assert!(c.is_all_finite() && max_abs((&c - &want).as_ref()) < 1e-9);
        }
    }

    /// `m × l` with singular values `10^(-decades · j / (l - 1))`.
    fn graded(m: usize, l: usize, decades: f64) -> Mat<f64> {
        let (u, _) = qr_thin(test_matrix(m, l, 11).as_ref());
        let (v, _) = qr_thin(test_matrix(l, l, 12).as_ref());
        let s = |j: usize| 10f64.powf(-decades * j as f64 / (l.max(2) - 1) as f64);
        let us = Mat::from_fn(m, l, |i, j| u[(i, j)] * s(j));
        &us * v.transpose()
    }

    #[test]
    fn cholesky_qr_is_orthonormal_up_to_condition_1e12() {
        // The shifted step is proven for cond(y) up to about 1/(u·sqrt(11 (m l + l²))), ~5e12
        // at 5000 × 12; beyond it cholesky_qr may refuse, and orthonormalize falls back.
        for &(m, l) in &[(50, 7), (5000, 12), (9000, 1), (4097, 30)] {
            for decades in [0.0, 4.0, 8.0, 12.0, 15.0] {
                let y = graded(m, l, decades);
                let mut q = y.clone();
                if !cholesky_qr(q.as_mut()) {
                    assert!(decades > 12.0, "{m}x{l}, cond 1e{decades}");
                    q.copy_from(&y);
                    orthonormalize(q.as_mut());
                }
                assert_orthonormal(q.as_ref(), 20.0 * l as f64 * f64::EPSILON);
                // Backward stable: y lies in the span of q up to rounding of y's largest part
                // (an angle-based comparison would lose cond(y)·eps on the weakest direction).
                let resid = &y - &q * (q.transpose() * &y);
                assert!(max_abs(resid.as_ref()) < 1e-13, "{m}x{l}, cond 1e{decades}");
            }
        }
    }

    #[test]
    fn recondition_keeps_the_span_and_conditions_the_basis() {
        // Every condition number from 1 to beyond the shifted step's reach: the result spans
        // y to rounding (as cholesky_qr's does) with QᵀQ within the limit of I, and fully
        // orthonormal wherever u·cond² is past the limit (the single step would leave
        // QᵀQ - I far above working precision there).
        for &(m, l) in &[(50, 7), (5000, 12), (4097, 30), (9000, 1)] {
            for decades in [0.0, 0.5, 1.0, 2.0, 3.0, 6.0, 8.0, 12.0, 15.0] {
                let y = graded(m, l, decades);
                let mut q = y.clone();
                recondition(q.as_mut());
                let dev = max_abs((q.transpose() * &q - Mat::<f64>::identity(l, l)).as_ref());
                let past = f64::EPSILON / 2.0 * 10f64.powf(2.0 * decades) > 1e-3;
                let limit = if past { 1e-13 } else { 1e-3 };
                assert!(dev < limit, "{m}x{l}, cond 1e{decades}: QᵀQ - I = {dev:e}");
                // The span: y against an orthonormal basis of q's columns.
                let (b, _) = qr_thin(q.as_ref());
                let resid = &y - &b * (b.transpose() * &y);
                assert!(max_abs(resid.as_ref()) < 1e-13, "{m}x{l}, cond 1e{decades}");
            }
        }
        // The single step, taken on a well-conditioned block, is exactly one CholeskyQR step.
        let y = graded(3000, 10, 1.0);
        let (mut once, mut full) = (y.clone(), y.clone());
        recondition(once.as_mut());
        assert!(cholesky_step(gram(y.as_ref()).as_ref(), full.as_mut()));
        assert_eq!(once, full);
        // In float32 the same block is past the limit: fully orthonormal.
        let y64 = graded(3000, 10, 3.0);
        let y32 = Mat::<f32>::from_fn(3000, 10, |i, j| y64[(i, j)] as f32);
        let mut q32 = y32.clone();
        recondition(q32.as_mut());
        let g = q32.transpose() * &q32 - Mat::<f32>::identity(10, 10);
        assert!((0..10).all(|j| (0..10).all(|i| g[(i, j)].abs() < 1e-5)));
    }

    #[test]
    fn cholesky_qr_refuses_rank_deficiency_and_orthonormalize_falls_back() {
        let mut y = test_matrix(6000, 6, 4);
        y.col_mut(5).fill(0.0);
        assert!(!cholesky_qr(y.clone().as_mut()));
        assert!(!cholesky_qr(Mat::<f64>::zeros(100, 3).as_mut()));
        orthonormalize(y.as_mut());
        assert_orthonormal(y.as_ref(), 1e-12);
    }

    #[test]
    fn cholesky_qr_is_thread_independent() {
        let y = graded(10_000, 25, 10.0);
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut q = y.clone();
            pool.install(|| assert!(cholesky_qr(q.as_mut())));
            q
        };
        assert_eq!(on(1), on(3));
    }

    #[test]
    fn tsqr_is_orthonormal_with_same_span() {
        for &(m, l) in &[(50, 7), (5000, 12), (9000, 1), (4097, 20)] {
            let y = test_matrix(m, l, 3);
            let mut q = y.clone();
            householder_orthonormalize(q.as_mut());
            assert_orthonormal(q.as_ref(), 1e-12);
            assert!(
                span_gap(y.as_ref(), q.as_ref()) < 1e-10,
                "span differs for {m}x{l}"
            );
        }
    }

    #[test]
    fn tsqr_handles_rank_deficiency() {
        let mut y = test_matrix(6000, 6, 4);
        let c0 = y.col(0).to_owned();
        y.col_mut(3).copy_from(&c0);
        y.col_mut(5).fill(0.0);
        householder_orthonormalize(y.as_mut());
        assert_orthonormal(y.as_ref(), 1e-12);
    }

    #[test]
    fn lu_normalize_keeps_span() {
        let y = test_matrix(700, 9, 5);
        let mut z = y.clone();
        lu_normalize(z.as_mut());
        assert!(span_gap(y.as_ref(), z.as_ref()) < 1e-10);
    }

    #[test]
    fn svd_reconstructs() {
        for &(m, n) in &[(40, 15), (15, 40), (1, 9), (9, 1)] {
            let a = test_matrix(m, n, 6);
            let (u, s, v) = svd_thin(a.as_ref()).unwrap();
            let mut us = u.clone();
            for (j, &sj) in s.iter().enumerate() {
                us.col_mut(j).iter_mut().for_each(|x| *x *= sj);
            }
            let rec = &us * v.transpose();
            assert!(max_abs((&rec - &a).as_ref()) < 1e-12 * (m.max(n) as f64) * s[0]);
            assert!(s.windows(2).all(|w| w[0] >= w[1]));
        }
    }

    #[test]
    fn centred_gram_matches_the_two_pass_formula_and_is_thread_independent() {
        // Rows with a large offset: XᵀX - m μμᵀ would cancel most digits; the blocked
        // parallel-axis update must not.
        for &(m, n) in &[(1, 3), (7, 5), (3000, 17), (20_000, 40)] {
            let base = test_matrix(m, n, 8);
            let x = Mat::from_fn(m, n, |i, j| 1e6 + base[(i, j)] * (j + 1) as f64);
            let mean: Vec<f64> = (0..n)
                .map(|j| x.col(j).iter().sum::<f64>() / m as f64)
                .collect();
            let xc = Mat::from_fn(m, n, |i, j| x[(i, j)] - mean[j]);
            let want = xc.transpose() * &xc;
            let xt = x.transpose().to_owned(); // its transpose: x with contiguous rows
            for x in [x.as_ref(), xt.as_ref().transpose()] {
                let on = |threads: usize| {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    pool.install(|| centred_gram(x, true))
                };
                let (g, mu) = on(1);
                assert_eq!((g.clone(), mu.clone()), on(3));
                let scale = max_abs(want.as_ref()).max(1.0);
                assert!(max_abs((&g - &want).as_ref()) < 1e-9 * scale, "{m}x{n}");
                for j in 0..n {
                    assert!((mu[j] - mean[j]).abs() < 1e-8, "{m}x{n}");
                }
                let (raw, zero) = centred_gram(x, false);
                assert!(zero.iter().all(|&v| v == 0.0));
                let xtx = x.transpose() * x;
                assert!(max_abs((&raw - &xtx).as_ref()) < 1e-12 * max_abs(xtx.as_ref()));
            }
        }
    }

    #[test]
    fn centred_gram_is_as_accurate_as_the_data_allows_under_an_offset() {
        // x = 1e4 + q·2⁻³⁸ with integers |q| < 2³⁹ (a spread of ±2 at full resolution): the
        // data are exact, and so is the centred Gram matrix from integer sums,
        // (Σ qqᵀ - (Σq)(Σq)ᵀ/m)·2⁻⁷⁶, up to a rounding or two. Block means summed from the
        // raw values were ~3e-15 off and the merge made that ~3e-13 of the Gram matrix;
        // summed relative to a data row they leave it at rounding level.
        for &(m, n) in &[(1246, 41), (20_000, 6), (5, 3)] {
            let q = |i: usize, j: usize| {
                let h = (i as u64).wrapping_mul(0x9E37_79B9_7F4A_7C15)
                    ^ (j as u64).wrapping_mul(0xC2B2_AE3D_27D4_EB4F);
                let h = h.wrapping_mul(0x1656_67B1_9E37_79F9) >> 24; // 40 bits
                h as i128 - (1 << 39)
            };
            let unit = 2f64.powi(-38);
            let x = Mat::from_fn(m, n, |i, j| 1e4 + q(i, j) as f64 * unit);
            let sums: Vec<i128> = (0..n).map(|j| (0..m).map(|i| q(i, j)).sum()).collect();
            let want = Mat::from_fn(n, n, |a, b| {
                let cross: i128 = (0..m).map(|i| q(i, a) * q(i, b)).sum();
                (cross as f64 - (sums[a] * sums[b]) as f64 / m as f64) * unit * unit
            });
            let xt = x.transpose().to_owned();
            for x in [x.as_ref(), xt.as_ref().transpose()] {
                let (g, mu) = centred_gram(x, true);
                let scale = max_abs(want.as_ref());
                let err = max_abs((&g - &want).as_ref());
                assert!(err <= 1e-14 * scale, "{m}x{n}: {err:e} of {scale:e}");
                for j in 0..n {
                    let exact = 1e4 + sums[j] as f64 / m as f64 * unit;
                    assert!((mu[j] - exact).abs() <= 4e-12, "{m}x{n} mean {j}");
                }
            }
        }
    }

    #[test]
    fn svd_tall_matches_svd_thin() {
        for &(m, n, decades) in &[
            (500, 20, 0.0),
            (5000, 30, 6.0),
            (3000, 12, 14.0),
            (40, 30, 0.0),
        ] {
            let a = graded(m, n, decades);
            let (u, s, v) = svd_tall(a.as_ref()).unwrap();
            let (_, s_ref, _) = svd_thin(a.as_ref()).unwrap();
            for (x, y) in s.iter().zip(&s_ref) {
                assert!(
                    (x - y).abs() < (m * n) as f64 * f64::EPSILON * s_ref[0],
                    "{m}x{n}"
                );
            }
            assert_orthonormal(u.as_ref(), 1e-12);
            assert_orthonormal(v.as_ref(), 1e-12);
            let us = Mat::from_fn(m, n, |i, j| u[(i, j)] * s[j]);
            // CholeskyQR's backward error bound is O(m n ε ‖a‖) (‖a‖ = 1 here).
            let err = max_abs((&us * v.transpose() - &a).as_ref());
            assert!(err < (m * n) as f64 * f64::EPSILON, "{m}x{n}: {err}");
        }
    }
}
