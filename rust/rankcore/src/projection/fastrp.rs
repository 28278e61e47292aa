//! FastRP node embeddings (Chen et al., "Fast and Accurate Network Embeddings via Very
//! Sparse Random Projection", CIKM 2019), in the paper's form and in the form graph
//! databases ship (Neo4j GDS).
//!
//! Both start from initial vectors `E₀ = [L R | F P]` (`n × k`):
//!
//! - `R` (`n × k_b`, `k_b = k - p`) is the sparse projection of [`super`] with `d = n`
//!   "features" (the nodes), density `δ` and stream [`STREAM_SPARSE`]: `R = componentsᵀ` of
//!   that projection, so `R[v, c] = ±sqrt(1/δ)/sqrt(k_b)` or 0.
//! - `L = diag(deg_v^β)` with `β` the normalization strength; `deg` is the weighted
//!   out-degree (row sum) in the paper's variant, the number of out-edges in the GDS one (as
//!   GDS does); a node of degree 0 gets `L_v = 1`.
//! - `F P`: node features `F` (`n × f`) times a sparse projection `P` (`f × p`, density 1/3,
//!   stream [`STREAM_FASTRP_FEATURES`]); `p = 0` without features.
//!
//! Then, with `A` the adjacency (`A[v, u]` = weight of the edge `v → u`; each node
//! aggregates its out-neighbours, self-loops included):
//!
//! - **paper**: `Nᵢ = M Nᵢ₋₁` with `N₀ = E₀` and `M = A`, or `M = D⁻¹A` (rows of zero degree
//!   stay zero) when `transition`; embedding `= w₀ g(N₀) + Σ αᵢ g(Nᵢ)` with `g` the row L2
//!   normalisation when `normalize`, else the identity.
//! - **gds**: `Nᵢ = normalize(A Nᵢ₋₁)` (GDS averages over neighbours before normalising; the
//!   normalisation cancels the average); embedding `= w₀ normalize(E₀) + Σ αᵢ Nᵢ`.
//!
//! Rows whose vector is zero stay zero under normalisation. Each product is a parallel
//! gather over fixed row chunks; every row sums its edges in storage order, so results are
//! bit-identical for any thread count.

use super::{
    has_avx2, huge_zeroed, is_negative, is_nonzero, Family, Projection, STREAM_FASTRP_FEATURES,
    STREAM_SPARSE,
};
use crate::sparse::{CsrRef, SpIndex};
use crate::{invalid, Float, Interrupt, Result};
use faer::MatRef;
use rayon::prelude::*;

/// Rows per parallel task.
const CHUNK: usize = 256;
/// Rows between two interrupt checks (a multiple of `CHUNK`).
const SECTION: usize = 1 << 16;

/// Which FastRP.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Variant {
    /// Chen et al.'s reference code: sums, optional transition matrix and normalisation.
    Paper,
    /// Neo4j GDS: neighbour averages, L2-normalised every iteration.
    Gds,
}

/// Parameters of [`fastrp`] (the Python layer documents and defaults them).
#[derive(Clone, Debug, PartialEq)]
pub struct FastRpParams {
    pub variant: Variant,
    /// Embedding dimension `k`.
    pub n_components: usize,
    /// `α₁ … α_q`: one weight per power of the adjacency.
    pub iteration_weights: Vec<f64>,
    /// `β` in `L = diag(deg^β)`.
    pub normalization_strength: f64,
    /// `w₀`, the weight of the initial vectors.
    pub self_influence: f64,
    /// Columns `p` of the feature part (0 without features).
    pub property_dim: usize,
    /// Density `δ` of `R`.
    pub density: f64,
    /// Paper variant: use `D⁻¹A` instead of `A`.
    pub transition: bool,
    /// Paper variant: L2-normalise each `Nᵢ` before weighting.
    pub normalize: bool,
    pub seed: u64,
}

fn check(
    a: &CsrRef<'_, impl Float, impl SpIndex>,
    f: Option<MatRef<'_, impl Float>>,
    p: &FastRpParams,
    out_len: usize,
) -> Result<()> {
    let (n, m) = a.shape();
    if n != m {
        return Err(invalid!(
            "graph must be a square adjacency matrix, got {n} x {m}"
        ));
    }
    let k = p.n_components;
    if k == 0 || p.property_dim > k {
        return Err(invalid!(
            "n_components must be positive and at least the feature columns"
        ));
    }
    if out_len != n * k {
        return Err(invalid!("out must hold n_nodes * n_components values"));
    }
    if !(p.density > 0.0 && p.density <= 1.0) {
        return Err(invalid!("density must be in (0, 1], got {}", p.density));
    }
    let finite = |x: f64| x.is_finite();
    if !p.iteration_weights.iter().copied().all(finite)
        || !finite(p.normalization_strength)
        || !finite(p.self_influence)
    {
        return Err(invalid!(
            "iteration_weights, normalization_strength and self_influence must be finite"
        ));
    }
    if (0..n).any(|v| {
        a.row_entries(v)
            .1
            .iter()
            .any(|w| !(w.is_finite() && *w >= Float::ZERO))
    }) {
        return Err(invalid!(
            "graph edge weights must be finite and non-negative"
        ));
    }
    match f {
        Some(f) if f.nrows() != n || p.property_dim == 0 => Err(invalid!(
            "features must have one row per node and property_dim > 0"
        )),
        None if p.property_dim > 0 => Err(invalid!("property_dim > 0 needs features")),
        _ => Ok(()),
    }
}

/// FastRP embeddings of the graph `a` (CSR, `n × n`) into `out` (row-major `n × k`).
pub fn fastrp<T: Float, I: SpIndex>(
    a: CsrRef<'_, T, I>,
    features: Option<MatRef<'_, T>>,
    p: &FastRpParams,
    out: &mut [T],
    stop: &dyn Interrupt,
) -> Result<()> {
    check(&a, features, p, out.len())?;
    let (n, k) = (a.shape().0, p.n_components);
    let degree: Vec<f64> = match p.variant {
        Variant::Paper => a.row_sums(),
        Variant::Gds => (0..n).map(|v| a.row_entries(v).0.len() as f64).collect(),
    };
    let mut prev = initial_vectors(n, &degree, features, p, stop)?;
    out.fill(T::ZERO);
    let gds = p.variant == Variant::Gds;
    if p.self_influence != 0.0 {
        let w0 = T::from_f64(p.self_influence);
        let norm = gds || p.normalize;
        out.par_chunks_mut(CHUNK * k)
            .zip(prev.par_chunks(CHUNK * k))
            .for_each(|(o, e)| {
                for (orow, erow) in o.chunks_mut(k).zip(e.chunks(k)) {
                    let s = if norm { inv_norm(erow) } else { T::ONE };
                    for (x, &y) in orow.iter_mut().zip(erow) {
                        *x += w0 * (s * y);
                    }
                }
            });
    }
    let inv_deg: Vec<T> = degree
        .iter()
        .map(|&d| T::from_f64(if d > 0.0 { 1.0 / d } else { 0.0 }))
        .collect();
    let mut cur = huge_zeroed::<T>(n * k);
    for &alpha in &p.iteration_weights {
        let alpha = T::from_f64(alpha);
        let prev_ref = &prev;
        let inv_deg = &inv_deg;
        // Rows go in sections so that Ctrl-C is seen within a section, not an iteration.
        for (sec, (cs, os)) in cur
            .chunks_mut(SECTION * k)
            .zip(out.chunks_mut(SECTION * k))
            .enumerate()
        {
            stop.check()?;
            cs.par_chunks_mut(CHUNK * k)
                .zip(os.par_chunks_mut(CHUNK * k))
                .enumerate()
                .for_each(|(b, (c, o))| {
                    for (r, (crow, orow)) in c.chunks_mut(k).zip(o.chunks_mut(k)).enumerate() {
                        let v = sec * SECTION + b * CHUNK + r;
                        let (cols, vals) = a.row_entries(v);
                        #[cfg(target_arch = "x86_64")]
                        if has_avx2() {
                            // SAFETY: the CPU has AVX2 and FMA (checked at run time).
                            unsafe { gather_avx2(crow, cols, vals, prev_ref, k) };
                        } else {
                            gather(crow, cols, vals, prev_ref, k);
                        }
                        #[cfg(not(target_arch = "x86_64"))]
                        gather(crow, cols, vals, prev_ref, k);
                        // Paper: the transition row scaling; GDS: the L2 normalisation that
                        // propagates. Then the weighted contribution to the embedding.
                        let post = if gds {
                            inv_norm(crow)
                        } else if p.transition {
                            inv_deg[v]
                        } else {
                            T::ONE
                        };
                        if post != T::ONE {
                            crow.iter_mut().for_each(|x| *x *= post);
                        }
                        let g = if !gds && p.normalize {
                            inv_norm(crow)
                        } else {
                            T::ONE
                        };
                        if alpha != T::ZERO {
                            for (x, &y) in orow.iter_mut().zip(crow.iter()) {
                                *x += alpha * (g * y);
                            }
                        }
                    }
                });
        }
        std::mem::swap(&mut prev, &mut cur);
    }
    Ok(())
}

/// `1/‖row‖₂` (summed in f64 in storage order), or 1 for a zero row.
fn inv_norm<T: Float>(row: &[T]) -> T {
    let ss: f64 = row.iter().map(|v| v.to_f64() * v.to_f64()).sum();
    if ss > 0.0 {
        T::from_f64(1.0 / ss.sqrt())
    } else {
        T::ONE
    }
}

/// [`gather`] compiled for AVX2/FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn gather_avx2<T: Float, I: SpIndex>(
    row: &mut [T],
    cols: &[I],
    vals: &[T],
    prev: &[T],
    k: usize,
) {
    gather(row, cols, vals, prev, k)
}

/// `row = Σ_e w_e prev[col_e, :]` in storage order (the row updates vectorise).
#[inline(always)]
fn gather<T: Float, I: SpIndex>(row: &mut [T], cols: &[I], vals: &[T], prev: &[T], k: usize) {
    row.fill(T::ZERO);
    for (e, (&j, &w)) in cols.iter().zip(vals).enumerate() {
        // The rows gathered are scattered over a matrix much larger than the caches: ask
        // for the row a few edges ahead while this one is summed.
        if let Some(&ahead) = cols.get(e + PREFETCH_AHEAD) {
            prefetch_row(prev, ahead.to_usize() * k, k);
        }
        let j = j.to_usize();
        for (x, &y) in row.iter_mut().zip(&prev[j * k..(j + 1) * k]) {
            *x += w * y;
        }
    }
}

/// Edges between a row's prefetch and its use.
const PREFETCH_AHEAD: usize = 4;

/// Hints the cache lines of `data[start .. start + len]` into the cache (x86-64 only; a
/// hint, so no effect on results).
#[inline(always)]
fn prefetch_row<T>(data: &[T], start: usize, len: usize) {
    #[cfg(target_arch = "x86_64")]
    {
        use std::arch::x86_64::{_mm_prefetch, _MM_HINT_T0};
        let end = (start + len).min(data.len());
        let step = (64 / std::mem::size_of::<T>()).max(1);
        let mut i = start;
        while i < end {
            // SAFETY: i < data.len(), so the pointer is inside the slice; prefetching never
            // faults or changes memory.
            unsafe { _mm_prefetch::<_MM_HINT_T0>(data.as_ptr().add(i) as *const i8) };
            i += step;
        }
    }
}

/// Writes the non-zeros of `L R` for the nodes `v0 .. v0 + rows` into their rows.
struct Fill<'a> {
    rng: crate::rng::RandomMatrix,
    t: u64,
    v0: usize,
    rows: usize,
    k: usize,
    kb: usize,
    scale: &'a [f64],
}

impl Fill<'_> {
    /// [`run`](Self::run) compiled for AVX2 (the Philox generators of `words_x8` in
    /// vector lanes).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2<T: Float>(&self, chunk: &mut [T]) {
        self.run(chunk)
    }

    /// `v0` is a multiple of 4: one Philox call gives the words of four nodes.
    #[inline(always)]
    fn run<T: Float>(&self, chunk: &mut [T]) {
        let (v0, rows, k) = (self.v0, self.rows, self.k);
        for q in v0 / 4..(v0 + rows).div_ceil(4) {
            for c0 in (0..self.kb).step_by(8) {
                let w8 = self.rng.words_x8(q as u64, c0 as u32);
                for (c, w) in (c0..self.kb).zip(w8) {
                    for (lane, &word) in w.iter().enumerate() {
                        let r = 4 * q + lane - v0;
                        if r < rows && is_nonzero(word, self.t) {
                            let s = self.scale[r];
                            chunk[r * k + c] = T::from_f64(if is_negative(word) { -s } else { s });
                        }
                    }
                }
            }
        }
    }
}

/// `E₀ = [L R | F P]`, row-major `n × k`.
fn initial_vectors<T: Float>(
    n: usize,
    degree: &[f64],
    features: Option<MatRef<'_, T>>,
    p: &FastRpParams,
    stop: &dyn Interrupt,
) -> Result<Vec<T>> {
    let k = p.n_components;
    let kb = k - p.property_dim;
    let mut e = huge_zeroed::<T>(n * k);
    if kb > 0 {
        let r = Projection::new(n, kb, Family::Sparse { density: p.density }, p.seed)?
            .with_stream(STREAM_SPARSE);
        let (rng, t, s) = (r.rng(), r.threshold(), r.scale());
        e.par_chunks_mut(CHUNK * k)
            .enumerate()
            .for_each(|(b, chunk)| {
                let v0 = b * CHUNK;
                let rows = chunk.len() / k;
                let scale: Vec<f64> = (v0..v0 + rows)
                    .map(|v| {
                        if degree[v] > 0.0 {
                            s * degree[v].powf(p.normalization_strength)
                        } else {
                            s
                        }
                    })
                    .collect();
                let fill = Fill {
                    rng,
                    t,
                    v0,
                    rows,
                    k,
                    kb,
                    scale: &scale,
                };
                #[cfg(target_arch = "x86_64")]
                if has_avx2() {
                    // SAFETY: the CPU has AVX2 and FMA (checked at run time).
                    unsafe { fill.run_avx2(chunk) };
                } else {
                    fill.run(chunk);
                }
                #[cfg(not(target_arch = "x86_64"))]
                fill.run(chunk);
            });
    }
    if let Some(f) = features {
        let pd = p.property_dim;
        let proj = Projection::new(f.ncols(), pd, Family::Sparse { density: 1.0 / 3.0 }, p.seed)?
            .with_stream(STREAM_FASTRP_FEATURES);
        let mut fp = vec![T::ZERO; n * pd];
        proj.transform_dense(f, &mut fp, stop)?;
        e.par_chunks_mut(k)
            .zip(fp.par_chunks(pd))
            .for_each(|(row, src)| {
                row[kb..].copy_from_slice(src);
            });
    }
    Ok(e)
}
