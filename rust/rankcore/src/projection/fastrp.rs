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
    advise_huge, has_avx2, has_avx512, huge_zeroed, is_negative, is_nonzero, Family, Projection,
    STREAM_FASTRP_FEATURES, STREAM_SPARSE,
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
    if (0..n).into_par_iter().with_min_len(CHUNK).any(|v| {
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

/// FastRP embeddings of the graph `a` (CSR, `n × n`) into `out` (row-major `n × k`; its
/// contents on entry do not matter).
///
/// Memory: `E₀` is kept compact ([`Start`], a few bytes per node); the powers `Nᵢ` need at
/// most two `n × k` buffers besides `out`, fewer where the weights allow ([`plan`]).
pub fn fastrp<T: Float, I: SpIndex>(
    a: CsrRef<'_, T, I>,
    features: Option<MatRef<'_, T>>,
    p: &FastRpParams,
    out: &mut [T],
    stop: &dyn Interrupt,
) -> Result<()> {
    fastrp_with(a, features, p, out, stop, Isa::detect())
}

/// The kernel builds a CPU can run; every one gives the same bits (tested).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Isa {
    Scalar,
    Avx2,
    Avx512,
}

impl Isa {
    /// The fastest build this CPU runs.
    pub(super) fn detect() -> Self {
        if has_avx512() {
            Isa::Avx512
        } else if has_avx2() {
            Isa::Avx2
        } else {
            Isa::Scalar
        }
    }
}

/// [`fastrp`] with the kernel build chosen by the caller (`isa` must be one the CPU runs:
/// [`Isa::detect`] or a slower one).
pub(super) fn fastrp_with<T: Float, I: SpIndex>(
    a: CsrRef<'_, T, I>,
    features: Option<MatRef<'_, T>>,
    p: &FastRpParams,
    out: &mut [T],
    stop: &dyn Interrupt,
    isa: Isa,
) -> Result<()> {
    check(&a, features, p, out.len())?;
    let (n, k) = (a.shape().0, p.n_components);
    let degree: Vec<f64> = match p.variant {
        Variant::Paper => a.row_sums(),
        Variant::Gds => (0..n).map(|v| a.row_entries(v).0.len() as f64).collect(),
    };
    let steps = plan(p.self_influence, &p.iteration_weights);
    if steps.is_empty() {
        out.par_chunks_mut(CHUNK * k).for_each(|c| c.fill(T::ZERO));
        return Ok(());
    }
    let start = Start::new(n, &degree, features, p, stop, isa)?;
    let ctx = Ctx {
        k,
        isa,
        gds: p.variant == Variant::Gds,
        normalize: p.normalize,
        inv_deg: match (p.variant, p.transition) {
            (Variant::Paper, true) => degree
                .iter()
                .map(|&d| T::from_f64(if d > 0.0 { 1.0 / d } else { 0.0 }))
                .collect(),
            _ => Vec::new(),
        },
    };
    let scratch = |b: Buf| {
        if steps.iter().any(|s| s.write == Some(b)) {
            huge_zeroed::<T>(n * k)
        } else {
            Vec::new()
        }
    };
    let (mut x, mut y) = (scratch(Buf::X), scratch(Buf::Y));
    advise_huge(out);
    for step in &steps {
        let mut bufs = [&mut *out, &mut x[..], &mut y[..]];
        let in_pass = matches!(step.add, Add::InPass { .. });
        let (read, write, acc) = pick(&mut bufs, step.read, step.write, in_pass);
        run_step(&a, &start, read, write, acc, step, &ctx, stop)?;
        if step.add == Add::After {
            let [out, x, y] = bufs;
            let rows: &[T] = if step.write == Some(Buf::X) { x } else { y };
            let alpha = T::from_f64(step.alpha);
            out.par_chunks_mut(CHUNK * k)
                .zip(rows.par_chunks(CHUNK * k))
                .for_each(|(o, c)| {
                    for (orow, crow) in o.chunks_mut(k).zip(c.chunks(k)) {
                        contribute(orow, crow, alpha, ctx.weight_norm(crow), true);
                    }
                });
        }
    }
    Ok(())
}

/// The `n × k` places a step's rows can live in: the output or one of two scratch buffers.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Buf {
    Out,
    X,
    Y,
}

/// How a step's weighted rows reach the output.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Add {
    /// Weight zero: not at all.
    No,
    /// In the step's own pass; `first`: the output holds nothing of the embedding yet, so
    /// its rows are set (`0 + α g y`) rather than added to.
    InPass { first: bool },
    /// In a pass after the step (its input was the output, used as scratch): set.
    After,
    /// Likewise, but by the next step, which reads these rows anyway (its `carry`).
    Next,
}

/// One pass over the rows: `Nᵢ` from `Nᵢ₋₁` (`gather`), or the `w₀ E₀` term (no gather).
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Step {
    pub(super) alpha: f64,
    pub(super) gather: bool,
    /// The previous rows (`None`: `E₀`).
    pub(super) read: Option<Buf>,
    /// Where this step's rows are kept for the next one (`None`: only added to the output).
    pub(super) write: Option<Buf>,
    pub(super) add: Add,
    /// The weight of the previous step's rows when this step puts them into the output
    /// (`Add::Next`; 0 otherwise): each output row is set to them, then the step adds its
    /// own.
    pub(super) carry: f64,
}

/// The passes for weights `w₀` and `α₁ … α_q`, and where each keeps its rows.
///
/// Powers after the last non-zero weight are skipped (they change nothing), the last one
/// computed is added to the output row by row without being stored, and while the output
/// holds nothing of the embedding (all weights so far zero) it serves as a scratch buffer
/// (the rows computed from it reach the output in the next step's pass where possible).
/// So the GDS default `(0, 1, 1)` needs one scratch buffer, the paper's default two.
pub(super) fn plan(w0: f64, alphas: &[f64]) -> Vec<Step> {
    let q = alphas.iter().rposition(|&a| a != 0.0).map_or(0, |i| i + 1);
    let mut steps = Vec::with_capacity(q + 1);
    let mut empty = true;
    if w0 != 0.0 {
        steps.push(Step {
            alpha: w0,
            gather: false,
            read: None,
            write: None,
            add: Add::InPass { first: true },
            carry: 0.0,
        });
        empty = false;
    }
    let (mut prev, mut carry) = (None, 0.0);
    for (i, &alpha) in alphas[..q].iter().enumerate() {
        let in_out = prev == Some(Buf::Out);
        let write = if i + 1 == q && !in_out {
            None
        } else if alpha == 0.0 && empty && !in_out {
            Some(Buf::Out)
        } else if prev == Some(Buf::X) {
            Some(Buf::Y)
        } else {
            Some(Buf::X)
        };
        let add = if alpha == 0.0 {
            Add::No
        } else if in_out && i + 1 < q && alphas[i + 1] != 0.0 {
            Add::Next
        } else if in_out {
            Add::After
        } else {
            Add::InPass { first: empty }
        };
        steps.push(Step {
            alpha,
            gather: true,
            read: prev,
            write,
            add,
            carry,
        });
        empty &= alpha == 0.0;
        prev = write;
        carry = if add == Add::Next { alpha } else { 0.0 };
    }
    steps
}

/// The input, output and accumulator slices of a step (distinct places of `bufs`, which
/// holds the output, X and Y in that order).
#[allow(clippy::type_complexity)]
fn pick<'a, T>(
    bufs: &'a mut [&mut [T]; 3],
    read: Option<Buf>,
    write: Option<Buf>,
    acc: bool,
) -> (Option<&'a [T]>, Option<&'a mut [T]>, Option<&'a mut [T]>) {
    let (mut r, mut w, mut o) = (None, None, None);
    for (b, s) in [Buf::Out, Buf::X, Buf::Y].into_iter().zip(bufs.iter_mut()) {
        if read == Some(b) {
            r = Some(&**s);
        } else if write == Some(b) {
            w = Some(&mut **s);
        } else if acc && b == Buf::Out {
            o = Some(&mut **s);
        }
    }
    (r, w, o)
}

/// What every pass needs besides its slices.
struct Ctx<T> {
    k: usize,
    isa: Isa,
    gds: bool,
    normalize: bool,
    /// `1/deg` per node for the paper's transition matrix (empty otherwise).
    inv_deg: Vec<T>,
}

impl<T: Float> Ctx<T> {
    /// `g`: the L2 normalisation applied before weighting (the paper's `normalize`).
    fn weight_norm(&self, row: &[T]) -> T {
        if !self.gds && self.normalize {
            inv_norm(row)
        } else {
            T::ONE
        }
    }
}

/// `out = 0 + α (g y)` (`first`) or `out += α (g y)`.
#[inline(always)]
fn contribute<T: Float>(out: &mut [T], y: &[T], alpha: T, g: T, first: bool) {
    for (x, &y) in out.iter_mut().zip(y) {
        let c = alpha * (g * y);
        *x = if first { T::ZERO + c } else { *x + c };
    }
}

/// One step over all rows, in sections so that Ctrl-C is seen within a section.
#[allow(clippy::too_many_arguments)]
fn run_step<T: Float, I: SpIndex>(
    a: &CsrRef<'_, T, I>,
    start: &Start<T>,
    read: Option<&[T]>,
    write: Option<&mut [T]>,
    acc: Option<&mut [T]>,
    step: &Step,
    ctx: &Ctx<T>,
    stop: &dyn Interrupt,
) -> Result<()> {
    let (n, k) = (a.shape().0, ctx.k);
    let tasks = n.div_ceil(CHUNK);
    // Each task's rows of the two optional slices.
    fn split<T>(s: Option<&mut [T]>, len: usize, tasks: usize) -> Vec<Option<&mut [T]>> {
        match s {
            Some(s) => s.chunks_mut(len).map(Some).collect(),
            None => (0..tasks).map(|_| None).collect(),
        }
    }
    let (mut wch, mut ach) = (split(write, CHUNK * k, tasks), split(acc, CHUNK * k, tasks));
    let pass = Pass {
        a,
        start,
        read,
        ctx,
        gather: step.gather,
        alpha: T::from_f64(step.alpha),
        first: step.add == Add::InPass { first: true },
        carry: T::from_f64(step.carry),
    };
    for t0 in (0..tasks).step_by(SECTION / CHUNK) {
        stop.check()?;
        let t1 = (t0 + SECTION / CHUNK).min(tasks);
        wch[t0..t1]
            .par_iter_mut()
            .zip(ach[t0..t1].par_iter_mut())
            .enumerate()
            .for_each(|(t, (w, o))| {
                let (v0, w, o) = ((t0 + t) * CHUNK, w.as_deref_mut(), o.as_deref_mut());
                match ctx.isa {
                    // SAFETY: the CPU has these features (`Isa`, checked at run time).
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx512 => unsafe { pass.rows_avx512(v0, w, o) },
                    // SAFETY: as above.
                    #[cfg(target_arch = "x86_64")]
                    Isa::Avx2 => unsafe { pass.rows_avx2(v0, w, o) },
                    _ => pass.rows(v0, w, o),
                }
            });
    }
    Ok(())
}

/// A step's work on one task's rows.
struct Pass<'a, 'g, T, I> {
    a: &'a CsrRef<'g, T, I>,
    start: &'a Start<T>,
    read: Option<&'a [T]>,
    ctx: &'a Ctx<T>,
    gather: bool,
    alpha: T,
    first: bool,
    carry: T,
}

impl<T: Float, I: SpIndex> Pass<'_, '_, T, I> {
    /// [`rows`](Self::rows) compiled for AVX-512 (the sign masks of `E₀` select with
    /// mask registers).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    unsafe fn rows_avx512(&self, v0: usize, write: Option<&mut [T]>, out: Option<&mut [T]>) {
        self.rows(v0, write, out)
    }

    /// [`rows`](Self::rows) compiled for AVX2/FMA.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn rows_avx2(&self, v0: usize, write: Option<&mut [T]>, out: Option<&mut [T]>) {
        self.rows(v0, write, out)
    }

    /// Rows `v0 ..` (`CHUNK` of them, fewer at the end): each is computed into its row of
    /// `write` (or a scratch row), scaled, and its weighted contribution put into `out`.
    #[inline(always)]
    fn rows(&self, v0: usize, mut write: Option<&mut [T]>, mut out: Option<&mut [T]>) {
        let (k, ctx) = (self.ctx.k, self.ctx);
        let rows = CHUNK.min(self.a.shape().0 - v0);
        let mut tmp = Vec::new();
        for r in 0..rows {
            let v = v0 + r;
            let crow: &mut [T] = match write.as_deref_mut() {
                Some(w) => &mut w[r * k..(r + 1) * k],
                None => {
                    tmp.resize(k, T::ZERO);
                    &mut tmp
                }
            };
            let g = if self.gather {
                // This row's columns and those of the task's later rows, to prefetch
                // across rows (most rows have fewer edges than the prefetch distance).
                let ahead = self.a.rows_indices(v, v0 + rows);
                let vals = self.a.row_entries(v).1;
                gather(crow, ahead, vals, self.read, self.start, k);
                // Paper: the transition row scaling; GDS: the L2 normalisation that
                // propagates.
                let post = if ctx.gds {
                    inv_norm(crow)
                } else if ctx.inv_deg.is_empty() {
                    T::ONE
                } else {
                    ctx.inv_deg[v]
                };
                if post != T::ONE {
                    crow.iter_mut().for_each(|x| *x *= post);
                }
                ctx.weight_norm(crow)
            } else {
                crow.fill(T::ZERO);
                self.start.add_row(v, T::ONE, crow);
                if ctx.gds || ctx.normalize {
                    inv_norm(crow)
                } else {
                    T::ONE
                }
            };
            if let Some(o) = out.as_deref_mut() {
                let o = &mut o[r * k..(r + 1) * k];
                if self.carry != T::ZERO {
                    let prev = &self.read.expect("a carry comes with rows")[v * k..(v + 1) * k];
                    contribute(o, prev, self.carry, ctx.weight_norm(prev), true);
                }
                contribute(o, crow, self.alpha, g, self.first);
            }
        }
    }
}

/// `row = Σ_e w_e prev[col_e, :]` in storage order (the row updates vectorise); `prev` is
/// `E₀` when `None`. The columns are the first `vals.len()` of `ahead`; the rest are
/// prefetched.
#[inline(always)]
fn gather<T: Float, I: SpIndex>(
    row: &mut [T],
    ahead: &[I],
    vals: &[T],
    prev: Option<&[T]>,
    start: &Start<T>,
    k: usize,
) {
    row.fill(T::ZERO);
    for (e, (&j, &w)) in ahead.iter().zip(vals).enumerate() {
        // The rows gathered are scattered over a matrix much larger than the caches: ask
        // for the row a few edges ahead while this one is summed.
        let j = j.to_usize();
        match prev {
            Some(prev) => {
                if let Some(&u) = ahead.get(e + PREFETCH_AHEAD) {
                    prefetch_row(prev, u.to_usize() * k, k);
                }
                for (x, &y) in row.iter_mut().zip(&prev[j * k..(j + 1) * k]) {
                    *x += w * y;
                }
            }
            None => {
                if let Some(&u) = ahead.get(e + PREFETCH_AHEAD_START) {
                    start.prefetch(u.to_usize());
                }
                start.add_row(j, w, row);
            }
        }
    }
}

/// `1/‖row‖₂`, or 1 for a zero row. The squares are summed in f64 in eight interleaved
/// partial sums (entry `i` into sum `i % 8`, in storage order: vector lanes rather than one
/// chain of `k` dependent additions), added as `((s₀+s₄)+(s₂+s₆))+((s₁+s₅)+(s₃+s₇))`.
#[inline(always)]
pub(super) fn inv_norm<T: Float>(row: &[T]) -> T {
    let mut s = [0.0f64; 8];
    let mut chunks = row.chunks_exact(8);
    for c in &mut chunks {
        for (a, &v) in s.iter_mut().zip(c) {
            *a += v.to_f64() * v.to_f64();
        }
    }
    for (a, &v) in s.iter_mut().zip(chunks.remainder()) {
        *a += v.to_f64() * v.to_f64();
    }
    let ss = ((s[0] + s[4]) + (s[2] + s[6])) + ((s[1] + s[5]) + (s[3] + s[7]));
    if ss > 0.0 {
        T::from_f64(1.0 / ss.sqrt())
    } else {
        T::ONE
    }
}

/// Edges between a row's prefetch and its use.
const PREFETCH_AHEAD: usize = 4;
/// The same for the rows of `E₀`, a cache line or two each: more of them are in flight.
const PREFETCH_AHEAD_START: usize = 16;

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

/// The initial vectors `E₀ = [L R | F P]` in compact form: the non-zeros of a row of `L R`
/// are `±s_v` (`s_v = s·deg_v^β`, `s` the projection's scale), so a node needs its scale
/// and two bit masks (`k_b / 8` bytes each) instead of `k` values. The first product
/// gathers these (32 + 4 bytes a node for `k = 128` in float32, against 512), and no
/// `n × k` buffer is filled or paged in for them.
struct Start<T> {
    kb: usize,
    /// `u32` words per mask, `⌈k_b / 32⌉`.
    words: usize,
    /// Per node, `words` words marking its positive entries, then `words` marking its
    /// negative ones (column `c`: bit `c % 32` of word `c / 32`).
    signs: Vec<u32>,
    /// `s_v` per node (empty when `k_b = 0`).
    scale: Vec<T>,
    /// `F P`, row-major `n × p` (empty without features).
    features: Vec<T>,
    pd: usize,
}

impl<T: Float> Start<T> {
    fn new(
        n: usize,
        degree: &[f64],
        features: Option<MatRef<'_, T>>,
        p: &FastRpParams,
        stop: &dyn Interrupt,
        isa: Isa,
    ) -> Result<Self> {
        let pd = p.property_dim;
        let kb = p.n_components - pd;
        let words = kb.div_ceil(32);
        let mut signs = vec![0u32; n * 2 * words];
        advise_huge(&signs);
        let mut scale = huge_zeroed::<T>(if kb > 0 { n } else { 0 });
        if kb > 0 {
            let r = Projection::new(n, kb, Family::Sparse { density: p.density }, p.seed)?
                .with_stream(STREAM_SPARSE);
            let (rng, t, s) = (r.rng(), r.threshold(), r.scale());
            signs
                .par_chunks_mut(CHUNK * 2 * words)
                .zip(scale.par_chunks_mut(CHUNK))
                .enumerate()
                .for_each(|(b, (bits, sc))| {
                    let v0 = b * CHUNK;
                    for (v, x) in (v0..).zip(sc.iter_mut()) {
                        let d = degree[v];
                        *x = T::from_f64(if d > 0.0 {
                            s * d.powf(p.normalization_strength)
                        } else {
                            s
                        });
                    }
                    let fill = Fill {
                        rng,
                        t,
                        v0,
                        rows: sc.len(),
                        kb,
                        words,
                    };
                    match isa {
                        // SAFETY: the CPU has these features (`Isa`, checked at run time).
                        #[cfg(target_arch = "x86_64")]
                        Isa::Avx512 => unsafe { fill.run_avx512(bits) },
                        // SAFETY: as above.
                        #[cfg(target_arch = "x86_64")]
                        Isa::Avx2 => unsafe { fill.run_avx2(bits) },
                        _ => fill.run(bits),
                    }
                });
        }
        let mut fp = Vec::new();
        if let Some(f) = features {
            let proj =
                Projection::new(f.ncols(), pd, Family::Sparse { density: 1.0 / 3.0 }, p.seed)?
                    .with_stream(STREAM_FASTRP_FEATURES);
            fp = vec![T::ZERO; n * pd];
            proj.transform_dense(f, &mut fp, stop)?;
        }
        Ok(Start {
            kb,
            words,
            signs,
            scale,
            features: fp,
            pd,
        })
    }

    /// `row += w E₀[u, :]`, each entry as `x += w·e` would (`w·(±s) = ±(w·s)`, `w·0 = 0`).
    #[inline(always)]
    fn add_row(&self, u: usize, w: T, row: &mut [T]) {
        let (random, feats) = row.split_at_mut(self.kb);
        if self.kb > 0 {
            let m = w * self.scale[u];
            let (neg_m, zero) = (-m, T::ZERO);
            let bits = &self.signs[u * 2 * self.words..(u + 1) * 2 * self.words];
            let (pos, neg) = bits.split_at(self.words);
            for ((xs, &pw), &nw) in random.chunks_mut(32).zip(pos).zip(neg) {
                for (j, x) in xs.iter_mut().enumerate() {
                    *x += if (pw >> j) & 1 != 0 {
                        m
                    } else if (nw >> j) & 1 != 0 {
                        neg_m
                    } else {
                        zero
                    };
                }
            }
        }
        if self.pd > 0 {
            let f = &self.features[u * self.pd..(u + 1) * self.pd];
            for (x, &y) in feats.iter_mut().zip(f) {
                *x += w * y;
            }
        }
    }

    /// Hints node `u`'s masks, scale and features into the cache.
    #[inline(always)]
    fn prefetch(&self, u: usize) {
        prefetch_row(&self.signs, u * 2 * self.words, 2 * self.words);
        prefetch_row(&self.scale, u, 1);
        prefetch_row(&self.features, u * self.pd, self.pd);
    }
}

/// Sets the sign bits of `R` for the nodes `v0 .. v0 + rows`.
struct Fill {
    rng: crate::rng::RandomMatrix,
    t: u64,
    v0: usize,
    rows: usize,
    kb: usize,
    words: usize,
}

impl Fill {
    /// [`run`](Self::run) compiled for AVX-512.
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512bw,avx512vl,avx2,fma")]
    unsafe fn run_avx512(&self, bits: &mut [u32]) {
        self.run(bits)
    }

    /// [`run`](Self::run) compiled for AVX2 (the Philox generators of `words_x8` in
    /// vector lanes).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn run_avx2(&self, bits: &mut [u32]) {
        self.run(bits)
    }

    /// `v0` is a multiple of 4: one Philox call gives the words of four nodes, for eight
    /// columns `c0 .. c0 + 8` that share one mask word (`c0` is a multiple of 8). The bits
    /// are formed without branches (a third of the entries are non-zero, at random).
    #[inline(always)]
    fn run(&self, bits: &mut [u32]) {
        let (v0, rows, words) = (self.v0, self.rows, self.words);
        for q in v0 / 4..(v0 + rows).div_ceil(4) {
            for c0 in (0..self.kb).step_by(8) {
                let w8 = self.rng.words_x8(q as u64, c0 as u32);
                let cols = (self.kb - c0).min(8);
                // The four nodes' masks side by side (vector lanes).
                let (mut pos, mut neg) = ([0u32; 4], [0u32; 4]);
                for (c, w) in w8[..cols].iter().enumerate() {
                    for lane in 0..4 {
                        let nz = u32::from(is_nonzero(w[lane], self.t));
                        let minus = u32::from(is_negative(w[lane]));
                        pos[lane] |= (nz & (minus ^ 1)) << c;
                        neg[lane] |= (nz & minus) << c;
                    }
                }
                for lane in 0..4 {
                    let r = 4 * q + lane - v0;
                    if r < rows {
                        let at = r * 2 * words + c0 / 32;
                        bits[at] |= pos[lane] << (c0 % 32);
                        bits[at + words] |= neg[lane] << (c0 % 32);
                    }
                }
            }
        }
    }
}
