//! The sums over training entries that conditional expectation propagation needs.
//!
//! Entry `n` has coordinates on node `iₙₖ` of each mode `k` and target `yₙ`. With the core's
//! posterior mean `μ` and second moment `M = E[vec(W)vec(W)ᵀ]` (full covariance included),
//! the factor posteriors' means `mᵏᵢ` and second moments `Sᵏᵢ = E[uuᵀ]`, and `E[τ]`:
//!
//! - Tucker, mode `k`: with `W₍ₖ₎` the mode-`k` unfolding (other modes in increasing order,
//!   last fastest, the order of `⊗_{j≠k} uʲ`), the message of entry `n` to `uᵏ` has precision
//!   `E[τ] E[W₍ₖ₎ (⊗_{j≠k} Sʲ) W₍ₖ₎ᵀ]` and shift `E[τ] yₙ μ₍ₖ₎ (⊗_{j≠k} mʲ)`. Both are linear
//!   in the per-entry Kronecker products, so each node's message sum is one contraction of
//!   `M` with `Tᵢ = Σₙ ⊗_{j≠k} Sʲ` (and of `μ` with `tᵢ = Σₙ yₙ ⊗_{j≠k} mʲ`): damping the
//!   sums is the same as damping each entry's message, at no per-entry storage.
//! - Tucker, core: `Σₙ ⊗ₖ Sᵏ` and `Σₙ yₙ ⊗ₖ mᵏ` (the core's message precision and shift
//!   divided by `E[τ]`), grouped by the nodes of the last mode: `Σᵢ Tᵢ ⊗ Sᵢ`.
//! - CP (`W` superdiagonal, its diagonal `w`): Kronecker products become Hadamard products,
//!   `E[wwᵀ] ⊙ (⊙_{j≠k} Sʲ)` and `μ ⊙ (⊙_{j≠k} mʲ)`.
//!
//! Every sum runs over fixed blocks of nodes; blocks are computed in parallel and their
//! partial sums added in block order, so results do not depend on the thread count.

use crate::{invalid, Float, Result};
use faer::{Accum, Mat, MatRef, Par};
use rayon::prelude::*;

/// Nodes per parallel block of [`mode_messages`] and [`core_sums`].
const NODE_BLOCK: usize = 32;
/// Blocks alive at once in [`core_sums`] (bounds the memory of the partial sums).
const WAVE: usize = 16;
/// Points per parallel block of [`predict_moments`].
const POINT_BLOCK: usize = 128;

/// The structure of the core.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CoreKind {
    /// A full `r₁ × … × r_K` core; `vec(W)` in C order (last mode fastest).
    Tucker,
    /// A superdiagonal core (all ranks equal); only its diagonal is a variable.
    Cp,
}

/// The training entries: node indices per mode and targets.
pub struct Design<'a, T> {
    /// `r_k` per mode.
    pub ranks: &'a [usize],
    /// Node count per mode.
    pub nodes: &'a [usize],
    /// `n × K` row-major node indices.
    pub idx: &'a [i64],
    pub y: &'a [T],
    pub core: CoreKind,
}

impl<T: Float> Design<'_, T> {
    fn k(&self) -> usize {
        self.ranks.len()
    }

    /// Length of `vec(W)` (Tucker) or of the diagonal (CP).
    pub fn core_len(&self) -> usize {
        match self.core {
            CoreKind::Tucker => self.ranks.iter().product(),
            CoreKind::Cp => self.ranks[0],
        }
    }

    fn validate(&self) -> Result<()> {
        let k = self.k();
        if k == 0 || self.nodes.len() != k {
            return Err(invalid!("ranks and nodes must have one entry per mode"));
        }
        if self.ranks.contains(&0) || self.nodes.contains(&0) {
            return Err(invalid!("ranks and node counts must be positive"));
        }
        if self.core == CoreKind::Cp && self.ranks.iter().any(|&r| r != self.ranks[0]) {
            return Err(invalid!(
                "a CP core needs equal ranks, got {:?}",
                self.ranks
            ));
        }
        let n = self.y.len();
        if self.idx.len() != n * k {
            return Err(invalid!("idx must be n × K = {n} × {k}"));
        }
        for row in self.idx.chunks(k) {
            for (j, &i) in row.iter().enumerate() {
                if i < 0 || i as usize >= self.nodes[j] {
                    return Err(invalid!("node index {i} out of range for mode {j}"));
                }
            }
        }
        Ok(())
    }

    /// Entries grouped by their node of mode `k` (a stable counting sort): `(order, starts)`.
    fn group(&self, k: usize) -> (Vec<usize>, Vec<usize>) {
        let kk = self.k();
        let n = self.y.len();
        let mut starts = vec![0usize; self.nodes[k] + 1];
        for e in 0..n {
            starts[self.idx[e * kk + k] as usize + 1] += 1;
        }
        for i in 0..self.nodes[k] {
            starts[i + 1] += starts[i];
        }
        let mut fill = starts.clone();
        let mut order = vec![0usize; n];
        for e in 0..n {
            let i = self.idx[e * kk + k] as usize;
            order[fill[i]] = e;
            fill[i] += 1;
        }
        (order, starts)
    }
}

/// Checks the per-mode moment arrays against the design.
fn check_moments<T>(
    ranks: &[usize],
    nodes: &[usize],
    means: &[&[T]],
    seconds: &[&[T]],
) -> Result<()> {
    if means.len() != ranks.len() || seconds.len() != ranks.len() {
        return Err(invalid!("one mean and one second-moment array per mode"));
    }
    for j in 0..ranks.len() {
        let (n, r) = (nodes[j], ranks[j]);
        if means[j].len() != n * r || seconds[j].len() != n * r * r {
            return Err(invalid!(
                "mode {j}: means must be {n} × {r} and second moments {n} × {r} × {r}"
            ));
        }
    }
    Ok(())
}

fn gemm<T: Float>(lhs: MatRef<'_, T>, rhs: MatRef<'_, T>) -> Mat<T> {
    let mut out = Mat::<T>::zeros(lhs.nrows(), rhs.ncols());
    crate::linalg::gemm(out.as_mut(), Accum::Replace, lhs, rhs, T::ONE);
    out
}

/// `out ← a ⊗ b` for square row-major `a` (`p × p`) and `b` (`q × q`).
fn kron_sq<T: Float>(a: &[T], p: usize, b: &[T], q: usize, out: &mut Vec<T>) {
    let n = p * q;
    out.clear();
    out.resize(n * n, T::ZERO);
    for i in 0..p {
        for l in 0..p {
            let s = a[i * p + l];
            for x in 0..q {
                let row = (i * q + x) * n + l * q;
                for y in 0..q {
                    out[row + y] = s * b[x * q + y];
                }
            }
        }
    }
}

fn kron_vec<T: Float>(a: &[T], b: &[T], out: &mut Vec<T>) {
    out.clear();
    for &s in a {
        out.extend(b.iter().map(|&v| s * v));
    }
}

/// For each entry of `order[lo..hi]`: `(⊗ or ⊙)_{j≠k} Sʲ` summed into `t2` and
/// `yₙ (⊗ or ⊙)_{j≠k} mʲ` into `t1`.
#[allow(clippy::too_many_arguments)]
fn node_sums<T: Float>(
    d: &Design<'_, T>,
    k: usize,
    entries: &[usize],
    means: &[&[T]],
    seconds: &[&[T]],
    t1: &mut [T],
    t2: &mut [T],
    buf: &mut [Vec<T>; 4],
) {
    let kk = d.k();
    t1.iter_mut().for_each(|v| *v = T::ZERO);
    t2.iter_mut().for_each(|v| *v = T::ZERO);
    let [v, vt, s, st] = buf;
    for &e in entries {
        let row = &d.idx[e * kk..(e + 1) * kk];
        let y = d.y[e];
        match d.core {
            CoreKind::Tucker => {
                v.clear();
                v.push(T::ONE);
                s.clear();
                s.push(T::ONE);
                let mut p = 1;
                for j in (0..kk).filter(|&j| j != k) {
                    let r = d.ranks[j];
                    let i = row[j] as usize;
                    kron_vec(v, &means[j][i * r..(i + 1) * r], vt);
                    std::mem::swap(v, vt);
                    kron_sq(s, p, &seconds[j][i * r * r..(i + 1) * r * r], r, st);
                    std::mem::swap(s, st);
                    p *= r;
                }
            }
            CoreKind::Cp => {
                let r = d.ranks[0];
                v.clear();
                v.resize(r, T::ONE);
                s.clear();
                s.resize(r * r, T::ONE);
                for j in (0..kk).filter(|&j| j != k) {
                    let i = row[j] as usize;
                    for (a, x) in v.iter_mut().enumerate() {
                        *x *= means[j][i * r + a];
                    }
                    for (a, x) in s.iter_mut().enumerate() {
                        *x *= seconds[j][i * r * r + a];
                    }
                }
            }
        }
        for (o, &x) in t1.iter_mut().zip(v.iter()) {
            *o += y * x;
        }
        for (o, &x) in t2.iter_mut().zip(s.iter()) {
            *o += x;
        }
    }
}

/// [`node_sums`] for the nodes `range` of mode `k` (grouped by `order`/`starts`): the
/// shifts' sums `t1` (`nb × C`) and the precisions' sums `t2` (`nb × C²`), node after node.
#[allow(clippy::too_many_arguments)]
fn block_sums<T: Float>(
    d: &Design<'_, T>,
    k: usize,
    order: &[usize],
    starts: &[usize],
    range: std::ops::Range<usize>,
    c_len: usize,
    means: &[&[T]],
    seconds: &[&[T]],
) -> (Vec<T>, Vec<T>) {
    let nb = range.len();
    let cc = c_len * c_len;
    let mut t1 = vec![T::ZERO; nb * c_len];
    let mut t2 = vec![T::ZERO; nb * cc];
    let mut buf: [Vec<T>; 4] = Default::default();
    for (t, i) in range.enumerate() {
        node_sums(
            d,
            k,
            &order[starts[i]..starts[i + 1]],
            means,
            seconds,
            &mut t1[t * c_len..(t + 1) * c_len],
            &mut t2[t * cc..(t + 1) * cc],
            &mut buf,
        );
    }
    (t1, t2)
}

/// For mode `k` of a Tucker core: `full[a·C + c]`, the index into `vec(W)` of `a` at mode `k`
/// and the multi-index `c` over the other modes (C order).
fn unfold_index(ranks: &[usize], k: usize) -> Vec<usize> {
    let r_all: usize = ranks.iter().product();
    let rk = ranks[k];
    let c_len = r_all / rk;
    let mut full = vec![0usize; rk * c_len];
    for a in 0..rk {
        for c in 0..c_len {
            // Decompose c over the modes j ≠ k, last fastest; insert a at k.
            let mut rem = c;
            let mut idx = 0;
            let mut stride = 1;
            for j in (0..ranks.len()).rev() {
                let ij = if j == k {
                    a
                } else {
                    let v = rem % ranks[j];
                    rem /= ranks[j];
                    v
                };
                idx += ij * stride;
                stride *= ranks[j];
            }
            full[a * c_len + c] = idx;
        }
    }
    full
}

/// The damping-free message sums to every node of mode `k`: precisions `Λ` (`n_k × r × r`)
/// and shifts `η` (`n_k × r`), from the core's mean `mu` and second moment `m2` (row-major
/// `R × R`, `R` the core length), and `E[τ]`.
pub fn mode_messages<T: Float>(
    d: &Design<'_, T>,
    k: usize,
    means: &[&[T]],
    seconds: &[&[T]],
    mu: &[T],
    m2: &[T],
    etau: T,
) -> Result<(Vec<T>, Vec<T>)> {
    d.validate()?;
    check_moments(d.ranks, d.nodes, means, seconds)?;
    if k >= d.k() {
        return Err(invalid!("mode {k} out of range"));
    }
    let rl = d.core_len();
    if mu.len() != rl || m2.len() != rl * rl {
        return Err(invalid!(
            "the core moments must have length {rl} and {rl} × {rl}"
        ));
    }
    let rk = d.ranks[k];
    let nk = d.nodes[k];
    let (order, starts) = d.group(k);
    // Tucker: the contraction matrices; CP needs none.
    let c_len = match d.core {
        CoreKind::Tucker => rl / rk,
        CoreKind::Cp => rk,
    };
    let (mk, muk) = match d.core {
        CoreKind::Tucker => {
            let full = unfold_index(d.ranks, k);
            let cc = c_len * c_len;
            let mk = Mat::from_fn(rk * rk, cc, |ab, cd| {
                let (a, b) = (ab / rk, ab % rk);
                let (c, e) = (cd / c_len, cd % c_len);
                m2[full[a * c_len + c] * rl + full[b * c_len + e]]
            });
            let muk = Mat::from_fn(rk, c_len, |a, c| mu[full[a * c_len + c]]);
            (mk, muk)
        }
        CoreKind::Cp => (Mat::zeros(0, 0), Mat::zeros(0, 0)),
    };
    let mut lam = vec![T::ZERO; nk * rk * rk];
    let mut eta = vec![T::ZERO; nk * rk];
    lam.par_chunks_mut(NODE_BLOCK * rk * rk)
        .zip(eta.par_chunks_mut(NODE_BLOCK * rk))
        .enumerate()
        .for_each(|(blk, (lb, eb))| {
            let i0 = blk * NODE_BLOCK;
            let nb = eb.len() / rk;
            let cc = c_len * c_len;
            let (t1, t2) = block_sums(d, k, &order, &starts, i0..i0 + nb, c_len, means, seconds);
            match d.core {
                CoreKind::Tucker => {
                    // Λ (r² × nb) = Mk · [vec Tᵢ]; η (r × nb) = μ₍ₖ₎ · [tᵢ].
                    let tm = MatRef::from_column_major_slice(&t2, cc, nb);
                    let l = gemm(mk.as_ref(), tm);
                    let tv = MatRef::from_column_major_slice(&t1, c_len, nb);
                    let e = gemm(muk.as_ref(), tv);
                    for t in 0..nb {
                        for ab in 0..rk * rk {
                            lb[t * rk * rk + ab] = etau * l[(ab, t)];
                        }
                        for a in 0..rk {
                            eb[t * rk + a] = etau * e[(a, t)];
                        }
                    }
                }
                CoreKind::Cp => {
                    for t in 0..nb {
                        for ab in 0..rk * rk {
                            lb[t * rk * rk + ab] = etau * m2[ab] * t2[t * cc + ab];
                        }
                        for a in 0..rk {
                            eb[t * rk + a] = etau * mu[a] * t1[t * c_len + a];
                        }
                    }
                }
            }
        });
    Ok((lam, eta))
}

/// The core's message sums: `Σₙ ⊗ₖ Sᵏ` (row-major `R × R`) and `Σₙ yₙ ⊗ₖ mᵏ` (`R`), with
/// Hadamard products for a CP core (`R = r`).
pub fn core_sums<T: Float>(
    d: &Design<'_, T>,
    means: &[&[T]],
    seconds: &[&[T]],
) -> Result<(Vec<T>, Vec<T>)> {
    d.validate()?;
    check_moments(d.ranks, d.nodes, means, seconds)?;
    let last = d.k() - 1;
    let rk = d.ranks[last];
    let nk = d.nodes[last];
    let rl = d.core_len();
    let c_len = match d.core {
        CoreKind::Tucker => rl / rk,
        CoreKind::Cp => rk,
    };
    let cc = c_len * c_len;
    let (order, starts) = d.group(last);
    // One block: (G, s) partial sums; Tucker G is (C² × r²) = Σᵢ vec(Tᵢ) vec(Sᵢ)ᵀ.
    let block = |blk: usize| -> (Vec<T>, Vec<T>) {
        let i0 = blk * NODE_BLOCK;
        let nb = NODE_BLOCK.min(nk - i0);
        let (t1, t2) = block_sums(d, last, &order, &starts, i0..i0 + nb, c_len, means, seconds);
        let (m, s) = (means[last], seconds[last]);
        match d.core {
            CoreKind::Tucker => {
                let tm = MatRef::from_column_major_slice(&t2, cc, nb);
                let sm = Mat::from_fn(nb, rk * rk, |t, ab| s[(i0 + t) * rk * rk + ab]);
                let g = gemm(tm, sm.as_ref());
                let tv = MatRef::from_column_major_slice(&t1, c_len, nb);
                let mm = Mat::from_fn(nb, rk, |t, a| m[(i0 + t) * rk + a]);
                let v = gemm(tv, mm.as_ref());
                let mut gs = vec![T::ZERO; cc * rk * rk];
                for j in 0..rk * rk {
                    for i in 0..cc {
                        gs[i * rk * rk + j] = g[(i, j)];
                    }
                }
                let mut vs = vec![T::ZERO; c_len * rk];
                for a in 0..rk {
                    for c in 0..c_len {
                        vs[c * rk + a] = v[(c, a)];
                    }
                }
                (gs, vs)
            }
            CoreKind::Cp => {
                let mut gs = vec![T::ZERO; rk * rk];
                let mut vs = vec![T::ZERO; rk];
                for t in 0..nb {
                    let i = i0 + t;
                    for ab in 0..rk * rk {
                        gs[ab] += t2[t * cc + ab] * s[i * rk * rk + ab];
                    }
                    for a in 0..rk {
                        vs[a] += t1[t * c_len + a] * m[i * rk + a];
                    }
                }
                (gs, vs)
            }
        }
    };
    let nblocks = nk.div_ceil(NODE_BLOCK);
    let glen = match d.core {
        CoreKind::Tucker => cc * rk * rk,
        CoreKind::Cp => rk * rk,
    };
    let mut g = vec![T::ZERO; glen];
    let mut s = vec![T::ZERO; rl];
    let mut b0 = 0;
    while b0 < nblocks {
        let b1 = (b0 + WAVE).min(nblocks);
        let parts: Vec<(Vec<T>, Vec<T>)> = (b0..b1).into_par_iter().map(block).collect();
        for (pg, ps) in parts {
            for (o, x) in g.iter_mut().zip(pg) {
                *o += x;
            }
            for (o, x) in s.iter_mut().zip(ps) {
                *o += x;
            }
        }
        b0 = b1;
    }
    match d.core {
        CoreKind::Cp => Ok((g, s)),
        CoreKind::Tucker => {
            // g[(c, c'), (a, b)] → ssum[(c·r + a), (c'·r + b)]: the last mode is the fastest
            // index of vec(W).
            let mut ssum = vec![T::ZERO; rl * rl];
            for c in 0..c_len {
                for e in 0..c_len {
                    for a in 0..rk {
                        for b in 0..rk {
                            ssum[(c * rk + a) * rl + e * rk + b] =
                                g[(c * c_len + e) * rk * rk + a * rk + b];
                        }
                    }
                }
            }
            Ok((ssum, s))
        }
    }
}

/// The core's posterior from its `N(0, I)` prior and its (damped) message sums: precision
/// `I + lam` (`lam` row-major `R × R`, symmetric positive semi-definite) and shift `eta`.
/// Returns the mean (`R`) and the covariance (row-major `R × R`), from one sequential faer
/// Cholesky factorisation (deterministic; no BLAS thread pool involved).
pub fn core_posterior<T: Float>(lam: &[T], eta: &[T]) -> Result<(Vec<T>, Vec<T>)> {
    use faer::dyn_stack::{MemBuffer, MemStack};
    use faer::linalg::cholesky::llt::{factor, solve};
    let n = eta.len();
    if n == 0 || lam.len() != n * n {
        return Err(invalid!("lam must be {n} × {n} for a shift of length {n}"));
    }
    if !lam.iter().chain(eta).all(|v| v.is_finite()) {
        return Err(invalid!("the core's message sums must be finite"));
    }
    let half = T::from_f64(0.5);
    let mut l = Mat::from_fn(n, n, |i, j| {
        if i >= j {
            half * (lam[i * n + j] + lam[j * n + i]) + if i == j { T::ONE } else { T::ZERO }
        } else {
            T::ZERO
        }
    });
    let par = Par::Seq;
    let mut mem = MemBuffer::new(
        factor::cholesky_in_place_scratch::<T>(n, par, Default::default())
            .or(solve::solve_in_place_scratch::<T>(n, n, par)),
    );
    let factor = factor::cholesky_in_place(
        l.as_mut(),
        Default::default(),
        par,
        MemStack::new(&mut mem),
        Default::default(),
    );
    crate::linalg::clear_upper();
    factor.map_err(|_| crate::Error::NoConvergence("the core's Cholesky factorisation"))?;
    for j in 1..n {
        for i in 0..j {
            l[(i, j)] = T::ZERO;
        }
    }
    let mut cov = Mat::<T>::identity(n, n);
    solve::solve_in_place_with_conj(
        l.as_ref(),
        faer::Conj::No,
        cov.as_mut(),
        par,
        MemStack::new(&mut mem),
    );
    let mut c = vec![T::ZERO; n * n];
    for i in 0..n {
        for j in 0..n {
            c[i * n + j] = half * (cov[(i, j)] + cov[(j, i)]);
        }
    }
    let e = MatRef::from_column_major_slice(eta, n, 1);
    let m = gemm(cov.as_ref(), e);
    Ok(((0..n).map(|i| m[(i, 0)]).collect(), c))
}

/// Posterior moments of `f = vec(W)ᵀ(⊗ₖ uᵏ)` (or `Σ_a w_a Πₖ uᵏ_a` for CP) at `q` points whose
/// factor moments are given per mode (`means[k]`: `q × r_k`; `seconds[k]`: `q × r_k × r_k`,
/// or none for means only): returns `E[f]` and, with `seconds`, `E[f²]`.
pub fn predict_moments<T: Float>(
    ranks: &[usize],
    core: CoreKind,
    means: &[&[T]],
    seconds: Option<&[&[T]]>,
    mu: &[T],
    m2: &[T],
) -> Result<(Vec<T>, Vec<T>)> {
    let kk = ranks.len();
    if kk == 0 || means.len() != kk || ranks.contains(&0) {
        return Err(invalid!("one positive rank and one mean array per mode"));
    }
    if core == CoreKind::Cp && ranks.iter().any(|&r| r != ranks[0]) {
        return Err(invalid!("a CP core needs equal ranks"));
    }
    let rl: usize = match core {
        CoreKind::Tucker => ranks.iter().product(),
        CoreKind::Cp => ranks[0],
    };
    let q = means[0].len() / ranks[0];
    for j in 0..kk {
        if means[j].len() != q * ranks[j] {
            return Err(invalid!("means[{j}] must be {q} × {}", ranks[j]));
        }
        if let Some(s) = seconds {
            if s.len() != kk || s[j].len() != q * ranks[j] * ranks[j] {
                return Err(invalid!("seconds[{j}] must be {q} × r × r"));
            }
        }
    }
    if mu.len() != rl || (seconds.is_some() && m2.len() != rl * rl) {
        return Err(invalid!(
            "the core moments must have length {rl} and {rl} × {rl}"
        ));
    }
    let mut f1 = vec![T::ZERO; q];
    let mut f2 = vec![T::ZERO; if seconds.is_some() { q } else { 0 }];
    let point = |t: usize, buf: &mut (Vec<T>, Vec<T>)| -> (T, T) {
        let (cur, nxt) = buf;
        match core {
            CoreKind::Tucker => {
                // Contract the last mode first: cur has length P·r over (p, a).
                cur.clear();
                cur.extend_from_slice(mu);
                let mut p = rl;
                for j in (0..kk).rev() {
                    let r = ranks[j];
                    p /= r;
                    let m = &means[j][t * r..(t + 1) * r];
                    nxt.clear();
                    for pi in 0..p {
                        let mut acc = T::ZERO;
                        for a in 0..r {
                            acc += cur[pi * r + a] * m[a];
                        }
                        nxt.push(acc);
                    }
                    std::mem::swap(cur, nxt);
                }
                let mean = cur[0];
                let Some(s) = seconds else {
                    return (mean, T::ZERO);
                };
                cur.clear();
                cur.extend_from_slice(m2);
                let mut p = rl;
                for j in (0..kk).rev() {
                    let r = ranks[j];
                    let n_old = p;
                    p /= r;
                    let sj = &s[j][t * r * r..(t + 1) * r * r];
                    nxt.clear();
                    nxt.resize(p * p, T::ZERO);
                    for pi in 0..p {
                        for pj in 0..p {
                            let mut acc = T::ZERO;
                            for a in 0..r {
                                let row = (pi * r + a) * n_old + pj * r;
                                for b in 0..r {
                                    acc += cur[row + b] * sj[a * r + b];
                                }
                            }
                            nxt[pi * p + pj] = acc;
                        }
                    }
                    std::mem::swap(cur, nxt);
                }
                (mean, cur[0])
            }
            CoreKind::Cp => {
                let r = rl;
                let mut mean = T::ZERO;
                for a in 0..r {
                    let mut v = mu[a];
                    for mj in means {
                        v *= mj[t * r + a];
                    }
                    mean += v;
                }
                let Some(s) = seconds else {
                    return (mean, T::ZERO);
                };
                let mut sec = T::ZERO;
                for ab in 0..r * r {
                    let mut v = m2[ab];
                    for sj in s {
                        v *= sj[t * r * r + ab];
                    }
                    sec += v;
                }
                (mean, sec)
            }
        }
    };
    if seconds.is_some() {
        f1.par_chunks_mut(POINT_BLOCK)
            .zip(f2.par_chunks_mut(POINT_BLOCK))
            .enumerate()
            .for_each(|(blk, (a, b))| {
                let mut buf = (Vec::new(), Vec::new());
                for (o, (x, y)) in a.iter_mut().zip(b.iter_mut()).enumerate() {
                    let (m, s) = point(blk * POINT_BLOCK + o, &mut buf);
                    *x = m;
                    *y = s;
                }
            });
    } else {
        f1.par_chunks_mut(POINT_BLOCK)
            .enumerate()
            .for_each(|(blk, a)| {
                let mut buf = (Vec::new(), Vec::new());
                for (o, x) in a.iter_mut().enumerate() {
                    *x = point(blk * POINT_BLOCK + o, &mut buf).0;
                }
            });
    }
    Ok((f1, f2))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lcg(state: &mut u64) -> f64 {
        *state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        ((*state >> 11) as f64) / ((1u64 << 53) as f64) - 0.5
    }

    fn kron_all(vs: &[&[f64]]) -> Vec<f64> {
        let mut out = vec![1.0];
        for v in vs {
            let mut t = Vec::new();
            kron_vec(&out, v, &mut t);
            out = t;
        }
        out
    }

    /// Brute force over entries against the node-grouped sums, 3 modes, ranks 2 × 3 × 2.
    #[test]
    fn tucker_sums_match_brute_force() {
        let ranks = [2usize, 3, 2];
        let nodes = [4usize, 3, 5];
        let n = 40;
        let mut st = 7u64;
        let idx: Vec<i64> = (0..n * 3)
            .map(|p| ((lcg(&mut st) + 0.5) * nodes[p % 3] as f64) as i64)
            .collect();
        let y: Vec<f64> = (0..n).map(|_| lcg(&mut st)).collect();
        let means: Vec<Vec<f64>> = (0..3)
            .map(|j| (0..nodes[j] * ranks[j]).map(|_| lcg(&mut st)).collect())
            .collect();
        let seconds: Vec<Vec<f64>> = (0..3)
            .map(|j| {
                let r = ranks[j];
                let mut s = vec![0.0; nodes[j] * r * r];
                for i in 0..nodes[j] {
                    let g: Vec<f64> = (0..r * r).map(|_| lcg(&mut st)).collect();
                    for a in 0..r {
                        for b in 0..r {
                            let mut v = if a == b { 0.5 } else { 0.0 };
                            for c in 0..r {
                                v += g[a * r + c] * g[b * r + c];
                            }
                            s[i * r * r + a * r + b] = v;
                        }
                    }
                }
                s
            })
            .collect();
        let rl = 12;
        let mu: Vec<f64> = (0..rl).map(|_| lcg(&mut st)).collect();
        let m2: Vec<f64> = {
            let g: Vec<f64> = (0..rl * rl).map(|_| lcg(&mut st)).collect();
            let mut m = vec![0.0; rl * rl];
            for a in 0..rl {
                for b in 0..rl {
                    for c in 0..rl {
                        m[a * rl + b] += g[a * rl + c] * g[b * rl + c];
                    }
                }
            }
            m
        };
        let d = Design {
            ranks: &ranks,
            nodes: &nodes,
            idx: &idx,
            y: &y,
            core: CoreKind::Tucker,
        };
        let mr: Vec<&[f64]> = means.iter().map(|v| v.as_slice()).collect();
        let sr: Vec<&[f64]> = seconds.iter().map(|v| v.as_slice()).collect();
        let (ssum, s) = core_sums(&d, &mr, &sr).unwrap();
        let mut bs = vec![0.0; rl * rl];
        let mut bv = vec![0.0; rl];
        for e in 0..n {
            let row = &idx[e * 3..e * 3 + 3];
            let ms: Vec<&[f64]> = (0..3)
                .map(|j| &means[j][row[j] as usize * ranks[j]..(row[j] as usize + 1) * ranks[j]])
                .collect();
            let kv = kron_all(&ms);
            for p in 0..rl {
                bv[p] += y[e] * kv[p];
            }
            let mut sk = vec![1.0];
            let mut p = 1;
            for j in 0..3 {
                let r = ranks[j];
                let i = row[j] as usize;
                let mut t = Vec::new();
                kron_sq(&sk, p, &seconds[j][i * r * r..(i + 1) * r * r], r, &mut t);
                sk = t;
                p *= r;
            }
            for p in 0..rl * rl {
                bs[p] += sk[p];
            }
        }
        for p in 0..rl * rl {
            assert!((ssum[p] - bs[p]).abs() < 1e-12);
        }
        for p in 0..rl {
            assert!((s[p] - bv[p]).abs() < 1e-12);
        }
        // Mode messages: Λ_i = Σ_n E[W_(k) (⊗ S) W_(k)ᵀ] via brute force over vec(W) indices.
        for k in 0..3 {
            let (lam, eta) = mode_messages(&d, k, &mr, &sr, &mu, &m2, 2.0).unwrap();
            let rk = ranks[k];
            let mut bl = vec![0.0; nodes[k] * rk * rk];
            let mut be = vec![0.0; nodes[k] * rk];
            for e in 0..n {
                let row = &idx[e * 3..e * 3 + 3];
                let i = row[k] as usize;
                // f = Σ_p w_p Π_j u^j[p_j]; ∂f/∂u^k_a = Σ_{p: p_k = a} w_p Π_{j≠k} u^j[p_j].
                for p in 0..rl {
                    let pi = [p / 6, (p / 2) % 3, p % 2];
                    let mut vm = 1.0;
                    for j in 0..3 {
                        if j != k {
                            vm *= means[j][row[j] as usize * ranks[j] + pi[j]];
                        }
                    }
                    be[i * rk + pi[k]] += 2.0 * y[e] * mu[p] * vm;
                    for q in 0..rl {
                        let qi = [q / 6, (q / 2) % 3, q % 2];
                        let mut vs = 1.0;
                        for j in 0..3 {
                            if j != k {
                                let r = ranks[j];
                                vs *= seconds[j][row[j] as usize * r * r + pi[j] * r + qi[j]];
                            }
                        }
                        bl[i * rk * rk + pi[k] * rk + qi[k]] += 2.0 * m2[p * rl + q] * vs;
                    }
                }
            }
            for p in 0..lam.len() {
                assert!((lam[p] - bl[p]).abs() < 1e-10, "mode {k}");
            }
            for p in 0..eta.len() {
                assert!((eta[p] - be[p]).abs() < 1e-10, "mode {k}");
            }
        }
        // Moments at the training points.
        let gm: Vec<Vec<f64>> = (0..3)
            .map(|j| {
                (0..n)
                    .flat_map(|e| {
                        let i = idx[e * 3 + j] as usize;
                        means[j][i * ranks[j]..(i + 1) * ranks[j]].to_vec()
                    })
                    .collect()
            })
            .collect();
        let gs: Vec<Vec<f64>> = (0..3)
            .map(|j| {
                let r = ranks[j];
                (0..n)
                    .flat_map(|e| {
                        let i = idx[e * 3 + j] as usize;
                        seconds[j][i * r * r..(i + 1) * r * r].to_vec()
                    })
                    .collect()
            })
            .collect();
        let gmr: Vec<&[f64]> = gm.iter().map(|v| v.as_slice()).collect();
        let gsr: Vec<&[f64]> = gs.iter().map(|v| v.as_slice()).collect();
        let (f1, f2) =
            predict_moments(&ranks, CoreKind::Tucker, &gmr, Some(&gsr), &mu, &m2).unwrap();
        // Σ_n E f_n² = ⟨M, Σ ⊗S⟩ and Σ y E f = μᵀ s.
        let tot2: f64 = f2.iter().sum();
        let ref2: f64 = (0..rl * rl).map(|p| m2[p] * ssum[p]).sum();
        assert!((tot2 - ref2).abs() < 1e-9 * ref2.abs().max(1.0));
        let tot1: f64 = f1.iter().zip(&y).map(|(a, b)| a * b).sum();
        let ref1: f64 = (0..rl).map(|p| mu[p] * s[p]).sum();
        assert!((tot1 - ref1).abs() < 1e-10);
    }
}
