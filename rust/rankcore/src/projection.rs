//! Random projections whose matrix is never stored: Gaussian, Achlioptas and very sparse
//! (Li, Hastie & Church 2006), with scikit-learn's scaling; and FastRP graph embeddings
//! ([`fastrp`]).
//!
//! # The matrix
//!
//! The projection maps `x ∈ R^d` to `R x ∈ R^k`, where `R` is `k × d` (scikit-learn's
//! `components_`). Entry `R[i, j]` (component `i`, feature `j`) is a pure function of
//! `(seed, stream, i, j)` through [`RandomMatrix`], whose *rows are features and columns are
//! components*: the draw for `R[i, j]` is the draw at row `j`, column `i`.
//!
//! - **Sparse families** (density `δ ∈ (0, 1]`; Achlioptas is `δ = 1/3`, "very sparse" is
//!   `δ = 1/√d`): let `w = words(j / 4, i)[j % 4]` be the 32-bit word of entry `(j, i)` (the
//!   word [`RandomMatrix::u32_at`] returns). The word is split in two independent parts:
//!   bits 1..=31 (`w >> 1`, uniform on `[0, 2^31)`) decide whether the entry is non-zero,
//!   bit 0 (`w & 1`) decides its sign. The entry is non-zero iff
//!   `(w >> 1) < T` with `T = ceil(δ · 2^31)` (computed in f64, exact since `δ · 2^31` is a
//!   scaled f64), i.e. with probability `T / 2^31` (`δ` rounded up to a multiple of
//!   `2^-31`; `δ = 1` gives `T = 2^31`, so every entry is non-zero). Its sign is `+` when
//!   `w & 1 == 0`, `-` otherwise; since bit 0 is independent of the other bits, the sign is
//!   exactly balanced given the entry is non-zero, for every `δ`. Its magnitude is
//!   scikit-learn's `s = sqrt(1/δ) / sqrt(k)`, computed in f64 and rounded once to the
//!   working type. Only integer operations decide the pattern, so any implementation of
//!   the Philox layout (the CUDA kernels included) reproduces it bit for bit
//!   ([`decode_entry`] is the reference).
//! - **Gaussian**: `R[i, j] = T(z) · T(1/sqrt(k))` with `z = normal_at(j, i)`, i.e.
//!   `N(0, 1/k)` as in scikit-learn. Normals agree across devices to a few ulps (see
//!   [`crate::rng`]).
//!
//! # Streams
//!
//! | stream          | value         | used for                                         |
//! |-----------------|---------------|--------------------------------------------------|
//! | [`STREAM_SPARSE`]   | `0x5250_0001` | sparse families; FastRP's node vectors           |
//! | [`STREAM_GAUSSIAN`] | `0x5250_0002` | Gaussian projections                             |
//! | [`STREAM_FASTRP_FEATURES`] | `0x5250_0003` | FastRP's projection of node features    |
//!
//! (Randomized SVD uses stream 0.)
//!
//! # Products
//!
//! `Y = X Rᵀ` (`n × k`, row-major) is computed over blocks of features. For the sparse
//! families each block's non-zeros are generated once into per-feature lists (components
//! of the positive entries, then of the negative ones) and applied to tiles of 8 rows of a dense `X` (any
//! strides) or to the rows of a CSR `X`; the sums are `±x` additions scaled by `s` at the
//! end. Every output entry adds its terms in increasing feature order whatever the block
//! size, the tiling or the thread count, so results are bit-identical across thread counts,
//! and a dense input and its CSR form (sorted indices) give bit-identical outputs. For the
//! Gaussian family each block of `Rᵀ` is generated densely and multiplied with faer's
//! sequential GEMM over fixed row blocks; its block size depends only on `k`.

pub mod fastrp;

use crate::rng::RandomMatrix;
use crate::sparse::{CsrRef, SpIndex};
use crate::{invalid, Float, Interrupt, Result};
use faer::reborrow::*;
use faer::{Accum, Mat, MatMut, MatRef};
use rayon::prelude::*;

/// Philox stream of the sparse families (and of FastRP's node vectors).
pub const STREAM_SPARSE: u32 = 0x5250_0001;
/// Philox stream of the Gaussian family.
pub const STREAM_GAUSSIAN: u32 = 0x5250_0002;
/// Philox stream of FastRP's random projection of node features.
pub const STREAM_FASTRP_FEATURES: u32 = 0x5250_0003;

/// Non-zeros per block of sparse-family lists (a few MB of `u32`).
const LIST_BUDGET: f64 = (1 << 22) as f64;
/// Entries per block of the Gaussian `Rᵀ` generated at once.
const GAUSS_BUDGET: usize = 1 << 21;
/// Features per parallel task when generating lists (a multiple of 4).
const GEN_CHUNK: usize = 256;
/// Rows of a dense tile (the vector width of the kernel).
const TILE: usize = 8;
/// Rows per parallel task in the products.
const TASK_ROWS: usize = 64;
/// Rows per chunk of a CSR output built directly in CSR form (a chunk's dense scratch
/// stays in L2 for `k` up to a few hundred).
const CSR_CHUNK: usize = 256;
/// Components must fit in 31 bits (the Philox column index is a `u32`).
const MAX_COMPONENTS: usize = 1 << 31;

/// Which distribution the entries follow.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Family {
    /// `N(0, 1/k)`.
    Gaussian,
    /// `±sqrt(1/δ)/sqrt(k)` with probability `δ/2` each, else 0.
    Sparse { density: f64 },
}

/// A `k × d` random projection defined by its seed; nothing of it is stored.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Projection {
    n_features: usize,
    n_components: usize,
    family: Family,
    seed: u64,
    stream: u32,
    /// Features per block; 0 chooses from the shape (tests shrink it).
    block: usize,
}

/// A CSR matrix produced here (sklearn layout: `indptr`, `indices`, `data`).
#[derive(Clone, Debug, PartialEq)]
pub struct CsrParts<T> {
    pub nrows: usize,
    pub ncols: usize,
    pub indptr: Vec<i64>,
    pub indices: Vec<i64>,
    pub data: Vec<T>,
}

/// Per-feature lists of the non-zeros of `R` for features `j0 .. j0 + len`: for feature
/// `j0 + f`, `entries[bounds[2f] .. bounds[2f + 1]]` are the components where `R` is
/// positive and `entries[bounds[2f + 1] .. bounds[2f + 2]]` those where it is negative.
/// Splitting by sign keeps the kernels free of unpredictable branches.
struct Lists {
    j0: usize,
    bounds: Vec<usize>,
    entries: Vec<u32>,
}

impl Lists {
    /// Positive and negative components of feature `j0 + f`.
    #[inline(always)]
    fn of(&self, f: usize) -> (&[u32], &[u32]) {
        let b = &self.bounds[2 * f..2 * f + 3];
        (&self.entries[b[0]..b[1]], &self.entries[b[1]..b[2]])
    }
    fn len(&self) -> usize {
        (self.bounds.len() - 1) / 2
    }
}

/// A zeroed vector of `len` values whose pages the kernel may back with transparent huge
/// pages (Linux `madvise(MADV_HUGEPAGE)`, which numpy also applies to its large arrays; a
/// hint only). Random row gathers over a matrix of a GB otherwise miss the TLB on nearly
/// every row.
pub(crate) fn huge_zeroed<T: Float>(len: usize) -> Vec<T> {
    let v = vec![T::ZERO; len];
    advise_huge(&v);
    v
}

/// Asks for transparent huge pages behind `s` (see [`huge_zeroed`]); it affects pages not
/// yet touched, so call it before the first write.
pub(crate) fn advise_huge<T>(s: &[T]) {
    #[cfg(target_os = "linux")]
    advise_huge_pages(s.as_ptr() as usize, std::mem::size_of_val(s));
}

#[cfg(target_os = "linux")]
fn advise_huge_pages(addr: usize, bytes: usize) {
    use std::ffi::{c_int, c_void};
    unsafe extern "C" {
        fn madvise(addr: *mut c_void, len: usize, advice: c_int) -> c_int;
    }
    const MADV_HUGEPAGE: c_int = 14;
    const PAGE: usize = 4096;
    let (start, end) = (addr.div_ceil(PAGE) * PAGE, (addr + bytes) / PAGE * PAGE);
    if end >= start + (2 << 20) {
        // SAFETY: [start, end) lies inside the vector's allocation and is page-aligned;
        // MADV_HUGEPAGE only changes how later page faults are served, never the contents.
        // Failure (e.g. THP disabled) is harmless and ignored.
        unsafe { madvise(start as *mut c_void, end - start, MADV_HUGEPAGE) };
    }
}

/// Whether the CPU runs the AVX-512 builds of the kernels that have one (F, BW, VL, with
/// AVX2 and FMA; checked once by std).
#[inline(always)]
pub(crate) fn has_avx512() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512bw")
            && std::arch::is_x86_feature_detected!("avx512vl")
            && has_avx2()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the CPU runs the AVX2/FMA builds of the kernels (checked once by std).
#[inline(always)]
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2") && std::arch::is_x86_feature_detected!("fma")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether the sparse-family entry of word `w` is non-zero, for threshold
/// `t = ceil(δ · 2^31)` (bits 1..=31 of the word; see the module docs).
#[inline(always)]
pub(crate) fn is_nonzero(w: u32, t: u64) -> bool {
    u64::from(w >> 1) < t
}

/// Whether the sparse-family entry of word `w`, if non-zero, is negative (bit 0).
#[inline(always)]
pub(crate) fn is_negative(w: u32) -> bool {
    w & 1 == 1
}

/// The sign of the sparse-family entry of word `w` for threshold `t = ceil(δ · 2^31)`:
/// `0` (zero), `1` or `-1`. This is the reference decoding every kernel (CPU or GPU) follows.
pub fn decode_entry(w: u32, t: u64) -> i8 {
    if !is_nonzero(w, t) {
        0
    } else if is_negative(w) {
        -1
    } else {
        1
    }
}

impl Projection {
    /// Validates the shape and the density; the stream is the family's default.
    pub fn new(n_features: usize, n_components: usize, family: Family, seed: u64) -> Result<Self> {
        if n_features == 0 {
            return Err(invalid!("n_features must be positive, got 0"));
        }
        if n_components == 0 || n_components >= MAX_COMPONENTS {
            return Err(invalid!(
                "n_components must be in [1, 2^31), got {n_components}"
            ));
        }
        if u64::try_from(n_features).is_err() {
            return Err(invalid!("n_features is too large"));
        }
        let stream = match family {
            Family::Gaussian => STREAM_GAUSSIAN,
            Family::Sparse { density } => {
                if !(density > 0.0 && density <= 1.0) {
                    return Err(invalid!("density must be in (0, 1], got {density}"));
                }
                STREAM_SPARSE
            }
        };
        Ok(Self {
            n_features,
            n_components,
            family,
            seed,
            stream,
            block: 0,
        })
    }

    /// The same matrix with `fb` features per block (rounded up to a multiple of 4): results
    /// of the sparse families do not depend on it; tests use it to run several blocks on
    /// small inputs.
    pub fn with_feature_block(mut self, fb: usize) -> Self {
        self.block = fb.max(1).div_ceil(4) * 4;
        self
    }

    /// The same matrix drawn from another Philox stream.
    pub fn with_stream(mut self, stream: u32) -> Self {
        self.stream = stream;
        self
    }

    pub fn n_features(&self) -> usize {
        self.n_features
    }

    pub fn n_components(&self) -> usize {
        self.n_components
    }

    pub fn family(&self) -> Family {
        self.family
    }

    pub(crate) fn rng(&self) -> RandomMatrix {
        RandomMatrix::new(self.seed, self.stream)
    }

    /// Magnitude of the non-zeros (sparse) or the standard deviation (Gaussian), in f64.
    pub fn scale(&self) -> f64 {
        let k = (self.n_components as f64).sqrt();
        match self.family {
            Family::Gaussian => 1.0 / k,
            Family::Sparse { density } => (1.0 / density).sqrt() / k,
        }
    }

    /// `ceil(δ · 2^31)`: an entry whose word `w` has `(w >> 1)` below it is a non-zero
    /// (see [`decode_entry`]).
    pub(crate) fn threshold(&self) -> u64 {
        match self.family {
            Family::Sparse { density } => (density * 2_147_483_648.0).ceil() as u64,
            Family::Gaussian => 1 << 31,
        }
    }

    /// Features per block: lists or dense blocks of a few MB, a multiple of 4.
    fn feature_block(&self) -> usize {
        if self.block > 0 {
            return self.block;
        }
        let k = self.n_components;
        let fb = match self.family {
            Family::Sparse { density } => {
                (LIST_BUDGET / (k as f64 * density * 1.25 + 1.0)) as usize
            }
            Family::Gaussian => GAUSS_BUDGET / k,
        };
        (fb.max(4) / 4 * 4).min(self.n_features.div_ceil(4) * 4)
    }

    fn blocks(&self) -> impl Iterator<Item = (usize, usize)> {
        let (d, fb) = (self.n_features, self.feature_block());
        (0..d.div_ceil(fb)).map(move |b| (b * fb, ((b + 1) * fb).min(d)))
    }

    /// Lists of the non-zeros of features `j0 .. j1` (`j0` a multiple of 4), generated in
    /// parallel chunks and concatenated in feature order.
    fn lists(&self, j0: usize, j1: usize) -> Lists {
        let chunks: Vec<(Vec<usize>, Vec<u32>)> = (j0..j1)
            .step_by(GEN_CHUNK)
            .collect::<Vec<_>>()
            .into_par_iter()
            .map(|a| self.gen_chunk(a, (a + GEN_CHUNK).min(j1)))
            .collect();
        let mut bounds = Vec::with_capacity(2 * (j1 - j0) + 1);
        bounds.push(0);
        let total = chunks.iter().map(|c| c.1.len()).sum();
        let mut entries = Vec::with_capacity(total);
        for (counts, ent) in chunks {
            for c in counts {
                bounds.push(bounds.last().copied().unwrap_or(0) + c);
            }
            entries.extend_from_slice(&ent);
        }
        Lists {
            j0,
            bounds,
            entries,
        }
    }

    /// Counts (positives, negatives per feature) and entries of features `a .. b` (`a` a
    /// multiple of 4): one Philox call gives the words of four consecutive features for one
    /// component.
    fn gen_chunk(&self, a: usize, b: usize) -> (Vec<usize>, Vec<u32>) {
        #[cfg(target_arch = "x86_64")]
        if has_avx2() {
            // SAFETY: the CPU has AVX2 and FMA (checked at run time).
            return unsafe { self.gen_chunk_avx2(a, b) };
        }
        self.gen_chunk_impl(a, b)
    }

    /// [`gen_chunk_impl`](Self::gen_chunk_impl) compiled for AVX2 (the eight Philox
    /// generators of `words_x8` run in vector lanes).
    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2,fma")]
    unsafe fn gen_chunk_avx2(&self, a: usize, b: usize) -> (Vec<usize>, Vec<u32>) {
        self.gen_chunk_impl(a, b)
    }

    #[inline(always)]
    fn gen_chunk_impl(&self, a: usize, b: usize) -> (Vec<usize>, Vec<u32>) {
        let (rng, t, k) = (self.rng(), self.threshold(), self.n_components);
        let mut counts = Vec::with_capacity(2 * (b - a));
        let mut entries = Vec::new();
        let mut per: [[Vec<u32>; 2]; 4] = Default::default();
        for q in a / 4..b.div_ceil(4) {
            per.iter_mut().flatten().for_each(Vec::clear);
            for i0 in (0..k).step_by(8) {
                let w8 = rng.words_x8(q as u64, i0 as u32);
                for (i, w) in (i0..k).zip(w8) {
                    for (lane, &word) in w.iter().enumerate() {
                        if is_nonzero(word, t) {
                            per[lane][usize::from(is_negative(word))].push(i as u32);
                        }
                    }
                }
            }
            for (lane, lists) in per.iter().enumerate() {
                if (a..b).contains(&(4 * q + lane)) {
                    for list in lists {
                        counts.push(list.len());
                        entries.extend_from_slice(list);
                    }
                }
            }
        }
        (counts, entries)
    }

    /// `R[:, j0..j1]` of the Gaussian family (`k × (j1 - j0)`, column-major, so column `f`
    /// is row `j0 + f` of `Rᵀ`, contiguous).
    fn gaussian_block<T: Float>(&self, j0: usize, j1: usize) -> Mat<T> {
        let k = self.n_components;
        let mut m = Mat::<T>::zeros(k, j1 - j0);
        self.rng()
            .fill_normal(j0 as u64, 0, m.as_mut().transpose_mut());
        let s = T::from_f64(self.scale());
        m.as_mut().par_col_chunks_mut(256).for_each(|mut c| {
            for j in 0..c.ncols() {
                c.rb_mut().col_mut(j).iter_mut().for_each(|v| *v *= s);
            }
        });
        m
    }

    /// The matrix `R` (`k × d`) in CSR form, for the sparse families: rows are components,
    /// column indices increase within a row, values are `±T(scale)`.
    pub fn components_csr<T: Float>(&self) -> Result<CsrParts<T>> {
        if self.family == Family::Gaussian {
            return Err(invalid!("components_csr is for the sparse families"));
        }
        let (rng, t, d) = (self.rng(), self.threshold(), self.n_features);
        let rows: Vec<(Vec<i64>, Vec<bool>)> = (0..self.n_components)
            .into_par_iter()
            .map(|i| {
                let (mut cols, mut neg) = (Vec::new(), Vec::new());
                for q in 0..d.div_ceil(4) {
                    let w = rng.words(q as u64, i as u32);
                    for (lane, &word) in w.iter().enumerate() {
                        let j = 4 * q + lane;
                        if j < d && is_nonzero(word, t) {
                            cols.push(j as i64);
                            neg.push(is_negative(word));
                        }
                    }
                }
                (cols, neg)
            })
            .collect();
        let s = T::from_f64(self.scale());
        let mut out = CsrParts {
            nrows: self.n_components,
            ncols: d,
            indptr: vec![0],
            indices: Vec::new(),
            data: Vec::new(),
        };
        for (cols, neg) in rows {
            out.indices.extend_from_slice(&cols);
            out.data.extend(neg.iter().map(|&n| if n { -s } else { s }));
            out.indptr.push(out.indices.len() as i64);
        }
        Ok(out)
    }

    /// The matrix `R` (`k × d`) densely; for the Gaussian family this is its only form.
    pub fn components_dense<T: Float>(&self) -> Mat<T> {
        match self.family {
            Family::Gaussian => self.gaussian_block::<T>(0, self.n_features),
            Family::Sparse { .. } => {
                let c = self.components_csr::<T>().expect("sparse family");
                let mut m = Mat::<T>::zeros(c.nrows, c.ncols);
                for i in 0..c.nrows {
                    for p in c.indptr[i] as usize..c.indptr[i + 1] as usize {
                        m[(i, c.indices[p] as usize)] = c.data[p];
                    }
                }
                m
            }
        }
    }

    fn check_out(&self, n: usize, out_len: usize) -> Result<()> {
        if out_len != n * self.n_components {
            return Err(invalid!(
                "out must hold n_samples * n_components = {} values, got {out_len}",
                n * self.n_components
            ));
        }
        Ok(())
    }

    /// `out = X Rᵀ` for a dense `X` (`n × d`, any strides); `out` is row-major `n × k`.
    /// The sparse families reject NaN and infinity in `X` (checked in the same pass); the
    /// Gaussian one leaves that to the caller.
    pub fn transform_dense<T: Float>(
        &self,
        x: MatRef<'_, T>,
        out: &mut [T],
        stop: &dyn Interrupt,
    ) -> Result<()> {
        if x.ncols() != self.n_features {
            return Err(shape_error(x.ncols(), self.n_features));
        }
        self.check_out(x.nrows(), out.len())?;
        let nblocks = self.blocks().count();
        for (b, (j0, j1)) in self.blocks().enumerate() {
            stop.check()?;
            let (first, last) = (b == 0, b + 1 == nblocks);
            match self.family {
                Family::Sparse { .. } => {
                    let lists = self.lists(j0, j1);
                    let s = if last {
                        Some(T::from_f64(self.scale()))
                    } else {
                        None
                    };
                    if sparse_dense_product(x, &lists, out, self.n_components, first, s) {
                        return Err(invalid!(
                            "X contains NaN or infinity; only finite values are supported"
                        ));
                    }
                }
                Family::Gaussian => {
                    let rt = self.gaussian_block::<T>(j0, j1);
                    gaussian_dense_product(x.subcols(j0, j1 - j0), rt.transpose(), out, first);
                }
            }
        }
        Ok(())
    }

    /// `out = X Rᵀ` for a CSR `X` (`n × d`); `out` is row-major `n × k`.
    pub fn transform_csr<T: Float, I: SpIndex>(
        &self,
        x: CsrRef<'_, T, I>,
        out: &mut [T],
        stop: &dyn Interrupt,
    ) -> Result<()> {
        let (n, d) = x.shape();
        if d != self.n_features {
            return Err(shape_error(d, self.n_features));
        }
        self.check_out(n, out.len())?;
        let nblocks = self.blocks().count();
        for (b, (j0, j1)) in self.blocks().enumerate() {
            stop.check()?;
            let (first, last) = (b == 0, b + 1 == nblocks);
            let block = match self.family {
                Family::Sparse { .. } => Block::Lists(self.lists(j0, j1)),
                Family::Gaussian => Block::Dense(j0, self.gaussian_block::<T>(j0, j1)),
            };
            let s = T::from_f64(self.scale());
            csr_product(
                x,
                0,
                &block,
                out,
                self.n_components,
                first,
                last.then_some(s),
            );
        }
        Ok(())
    }

    /// `X Rᵀ` for a CSR `X`, returned in CSR form without exact zeros (scikit-learn's output
    /// for sparse input and a sparse projection). With one feature block the rows are
    /// computed by chunks and compressed at once, so peak memory is the result plus a
    /// chunk per thread; with several blocks (very wide, dense projections) a dense
    /// intermediate is used.
    pub fn transform_csr_to_csr<T: Float, I: SpIndex>(
        &self,
        x: CsrRef<'_, T, I>,
        stop: &dyn Interrupt,
    ) -> Result<CsrParts<T>> {
        let (n, d) = x.shape();
        let k = self.n_components;
        if d != self.n_features {
            return Err(shape_error(d, self.n_features));
        }
        let single = self.blocks().count() == 1;
        let pieces: Vec<(Vec<usize>, Vec<i64>, Vec<T>)> =
            if single && self.family != Family::Gaussian {
                stop.check()?;
                let block = Block::Lists(self.lists(0, d));
                let s = T::from_f64(self.scale());
                let starts: Vec<usize> = (0..n).step_by(CSR_CHUNK).collect();
                starts
                    .into_par_iter()
                    // One scratch tile per rayon job, not per chunk: a fresh buffer per
                    // chunk would be page-faulted in again every time.
                    .map_init(Vec::new, |tile: &mut Vec<T>, r0| {
                        let h = CSR_CHUNK.min(n - r0);
                        tile.resize(h * k, T::ZERO);
                        csr_rows(x, r0, &block, tile, k, true, Some(s));
                        compress(tile, k)
                    })
                    .collect()
            } else {
                let mut dense = vec![T::ZERO; n * k];
                self.transform_csr(x, &mut dense, stop)?;
                dense
                    .par_chunks(CSR_CHUNK * k)
                    .map(|tile| compress(tile, k))
                    .collect()
            };
        let nnz = pieces.iter().map(|p| p.1.len()).sum();
        let mut out = CsrParts {
            nrows: n,
            ncols: k,
            indptr: Vec::with_capacity(n + 1),
            indices: Vec::with_capacity(nnz),
            data: Vec::with_capacity(nnz),
        };
        out.indptr.push(0);
        for (counts, idx, vals) in pieces {
            for c in counts {
                let last = *out.indptr.last().unwrap_or(&0);
                out.indptr.push(last + c as i64);
            }
            out.indices.extend_from_slice(&idx);
            out.data.extend_from_slice(&vals);
        }
        Ok(out)
    }
}

/// Shape errors name the parameter the user passed.
fn shape_error(got: usize, want: usize) -> crate::Error {
    crate::Error::InvalidShape(format!(
        "X has {got} features, but the projection was fitted with {want} features"
    ))
}

/// What one feature block of a CSR product needs.
enum Block<T> {
    Lists(Lists),
    /// First feature and `R[:, j0..j1]` (see [`Projection::gaussian_block`]).
    Dense(usize, Mat<T>),
}

/// Non-zeros of a row-major tile: per-row counts, column indices, values.
fn compress<T: Float>(tile: &[T], k: usize) -> (Vec<usize>, Vec<i64>, Vec<T>) {
    let mut counts = Vec::with_capacity(tile.len() / k);
    let (mut idx, mut vals) = (Vec::new(), Vec::new());
    for row in tile.chunks(k) {
        let before = idx.len();
        for (c, &v) in row.iter().enumerate() {
            if v != T::ZERO {
                idx.push(c as i64);
                vals.push(v);
            }
        }
        counts.push(idx.len() - before);
    }
    (counts, idx, vals)
}

/// Accumulates one feature block of a sparse family into `out` (row-major `n × k`): zeroed
/// first when `first`, multiplied by `scale` at the end when given (the last block).
fn sparse_dense_product<T: Float>(
    x: MatRef<'_, T>,
    lists: &Lists,
    out: &mut [T],
    k: usize,
    first: bool,
    scale: Option<T>,
) -> bool {
    out.par_chunks_mut(TASK_ROWS * k)
        .enumerate()
        .map(|(b, chunk)| {
            let mut acc = vec![[T::ZERO; TILE]; k];
            let mut chk = [T::ZERO; TILE];
            let rows = chunk.len() / k;
            for t0 in (0..rows).step_by(TILE) {
                let h = TILE.min(rows - t0);
                let tile = &mut chunk[t0 * k..(t0 + h) * k];
                for (i, a) in acc.iter_mut().enumerate() {
                    for (l, v) in a.iter_mut().enumerate() {
                        *v = if first || l >= h {
                            T::ZERO
                        } else {
                            tile[l * k + i]
                        };
                    }
                }
                let row0 = b * TASK_ROWS + t0;
                #[cfg(target_arch = "x86_64")]
                if has_avx2() {
                    // SAFETY: the CPU has AVX2 and FMA (checked at run time).
                    unsafe { tile_kernel_avx2(x, row0, h, lists, &mut acc, &mut chk) };
                } else {
                    tile_kernel(x, row0, h, lists, &mut acc, &mut chk);
                }
                #[cfg(not(target_arch = "x86_64"))]
                tile_kernel(x, row0, h, lists, &mut acc, &mut chk);
                for (i, a) in acc.iter().enumerate() {
                    for l in 0..h {
                        tile[l * k + i] = scale.map_or(a[l], |s| a[l] * s);
                    }
                }
            }
            // `0 · x` is 0 for finite x and NaN for NaN or ±inf.
            chk.iter().any(|c| *c != T::ZERO)
        })
        .reduce(|| false, |a, b| a || b)
}

/// [`tile_kernel`] compiled for AVX2/FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn tile_kernel_avx2<T: Float>(
    x: MatRef<'_, T>,
    row0: usize,
    h: usize,
    lists: &Lists,
    acc: &mut [[T; TILE]],
    chk: &mut [T; TILE],
) {
    tile_kernel(x, row0, h, lists, acc, chk)
}

/// `acc[i][l] += Σ_j ±x[row0 + l, j]` over the block's features, in feature order (the
/// 8-lane updates vectorise). Every element of the tile is read, also for features without
/// non-zeros, and `chk += 0 · x` turns NaN for a non-finite element: the finiteness check
/// costs no second pass over `X`.
#[inline(always)]
fn tile_kernel<T: Float>(
    x: MatRef<'_, T>,
    row0: usize,
    h: usize,
    lists: &Lists,
    acc: &mut [[T; TILE]],
    chk: &mut [T; TILE],
) {
    let (rs, cs, ptr) = (x.row_stride(), x.col_stride(), x.as_ptr());
    for f in 0..lists.len() {
        let (pos, neg) = lists.of(f);
        let j = (lists.j0 + f) as isize;
        let mut xv = [T::ZERO; TILE];
        // SAFETY (both loops): row0 + l < nrows (h rows remain) and j < ncols (the caller
        // checked the feature count), so every offset is inside the array the view borrows.
        if h == TILE {
            for (l, v) in xv.iter_mut().enumerate() {
                *v = unsafe { *ptr.offset((row0 + l) as isize * rs + j * cs) };
            }
        } else {
            for (l, v) in xv.iter_mut().enumerate().take(h) {
                *v = unsafe { *ptr.offset((row0 + l) as isize * rs + j * cs) };
            }
        }
        for l in 0..TILE {
            chk[l] += T::ZERO * xv[l];
        }
        for &i in pos {
            let a = &mut acc[i as usize];
            for l in 0..TILE {
                a[l] += xv[l];
            }
        }
        for &i in neg {
            let a = &mut acc[i as usize];
            for l in 0..TILE {
                a[l] -= xv[l];
            }
        }
    }
}

/// `out (+)= X_b Rᵀ_b` for one Gaussian feature block, over fixed row blocks.
fn gaussian_dense_product<T: Float>(
    x: MatRef<'_, T>,
    rt: MatRef<'_, T>,
    out: &mut [T],
    first: bool,
) {
    let k = rt.ncols();
    let n = x.nrows();
    let dst = MatMut::from_row_major_slice_mut(out, n, k);
    let accum = if first { Accum::Replace } else { Accum::Add };
    crate::linalg::par_row_blocks(dst, 512, &|row0, block: MatMut<'_, T>| {
        let lhs = x.subrows(row0, block.nrows());
        crate::linalg::gemm(block, accum, lhs, rt, T::ONE);
    });
}

/// One feature block of `X Rᵀ` for the CSR rows `row0 ..` of `x` that `out` (row-major)
/// holds, in parallel over fixed row chunks.
fn csr_product<T: Float, I: SpIndex>(
    x: CsrRef<'_, T, I>,
    row0: usize,
    block: &Block<T>,
    out: &mut [T],
    k: usize,
    first: bool,
    scale: Option<T>,
) {
    out.par_chunks_mut(TASK_ROWS * k)
        .enumerate()
        .for_each(|(b, chunk)| csr_rows(x, row0 + b * TASK_ROWS, block, chunk, k, first, scale));
}

/// Sequential kernel of [`csr_product`]: rows `row0 .. row0 + out.len() / k`.
fn csr_rows<T: Float, I: SpIndex>(
    x: CsrRef<'_, T, I>,
    row0: usize,
    block: &Block<T>,
    out: &mut [T],
    k: usize,
    first: bool,
    scale: Option<T>,
) {
    for (r, y) in out.chunks_mut(k).enumerate() {
        if first {
            y.fill(T::ZERO);
        }
        let (cols, vals) = x.row_entries(row0 + r);
        match block {
            Block::Lists(lists) => {
                let range = lists.j0..lists.j0 + lists.len();
                for (&j, &v) in cols.iter().zip(vals) {
                    let j = j.to_usize();
                    if range.contains(&j) {
                        let (pos, neg) = lists.of(j - lists.j0);
                        for &i in pos {
                            y[i as usize] += v;
                        }
                        for &i in neg {
                            y[i as usize] -= v;
                        }
                    }
                }
                if let Some(s) = scale {
                    y.iter_mut().for_each(|v| *v *= s);
                }
            }
            Block::Dense(j0, r) => {
                let range = *j0..*j0 + r.ncols();
                pulp::Arch::new().dispatch(|| {
                    for (&j, &v) in cols.iter().zip(vals) {
                        let j = j.to_usize();
                        if range.contains(&j) {
                            let col = r.col(j - j0);
                            let col = col.try_as_col_major().expect("Mat columns are contiguous");
                            for (yc, &rc) in y.iter_mut().zip(col.as_slice()) {
                                *yc += v * rc;
                            }
                        }
                    }
                });
            }
        }
    }
}

#[cfg(test)]
mod tests;
