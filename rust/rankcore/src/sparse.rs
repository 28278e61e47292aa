//! Compressed sparse row matrices over borrowed buffers, and their products with dense
//! blocks.
//!
//! A CSC matrix is the CSR matrix of its transpose, so one kernel serves both. `A·X` gathers
//! rows of `X` from contiguous panels of 16 (or 8) columns, summed in registers. `Aᵀ·Y`
//! scatters the rows of `A` into per-block partial outputs summed in block order when the
//! output fits in cache, and otherwise gathers over an owned transposed copy (built once,
//! O(nnz)); both run without atomics and sum in a fixed order, so results do not depend on
//! the thread count.

use crate::linalg::par_row_blocks;
use crate::{invalid, Float, Result};
use faer::reborrow::*;
use faer::{MatMut, MatRef};

/// The integer types scipy uses for `indptr` / `indices`.
pub trait SpIndex: Copy + Send + Sync + 'static {
    fn to_usize(self) -> usize;
    /// `None` when `x` does not fit.
    fn from_usize(x: usize) -> Option<Self>;
    /// Negative values become `usize::MAX`, which every range check rejects.
    fn checked_usize(self) -> usize;
}

macro_rules! impl_index {
    ($t:ty) => {
        impl SpIndex for $t {
            #[inline(always)]
            fn to_usize(self) -> usize {
                self as usize
            }
            fn from_usize(x: usize) -> Option<Self> {
                <$t>::try_from(x).ok()
            }
            fn checked_usize(self) -> usize {
                usize::try_from(self).unwrap_or(usize::MAX)
            }
        }
    };
}
impl_index!(i32);
impl_index!(i64);

/// A validated CSR matrix borrowing its three arrays.
#[derive(Clone, Copy, Debug)]
pub struct CsrRef<'a, T, I> {
    nrows: usize,
    ncols: usize,
    indptr: &'a [I],
    indices: &'a [I],
    data: &'a [T],
}

impl<'a, T: Float, I: SpIndex> CsrRef<'a, T, I> {
    /// Checks the structure (O(nnz)) so that the kernels never index out of bounds.
    /// Unsorted and duplicate column indices are allowed (duplicates add up, as in scipy).
    pub fn new(
        nrows: usize,
        ncols: usize,
        indptr: &'a [I],
        indices: &'a [I],
        data: &'a [T],
    ) -> Result<Self> {
        if indptr.len() != nrows + 1 {
            return Err(invalid!(
                "A.indptr must have nrows + 1 = {} entries, got {}",
                nrows + 1,
                indptr.len()
            ));
        }
        if indptr[0].checked_usize() != 0 {
            return Err(invalid!("A.indptr must start at 0"));
        }
        if indptr
            .windows(2)
            .any(|w| w[1].checked_usize() < w[0].checked_usize())
        {
            return Err(invalid!("A.indptr must be non-decreasing"));
        }
        let nnz = indptr[nrows].checked_usize();
        if nnz > indices.len() || nnz > data.len() {
            return Err(invalid!(
                "A.indptr ends at {nnz} but A.indices has {} and A.data {} entries",
                indices.len(),
                data.len()
            ));
        }
        if let Some(bad) = indices[..nnz].iter().find(|&&j| j.checked_usize() >= ncols) {
            return Err(invalid!(
                "A.indices holds {} outside [0, {ncols})",
                bad.checked_usize() as i128
            ));
        }
        Ok(Self {
            nrows,
            ncols,
            indptr,
            indices: &indices[..nnz],
            data: &data[..nnz],
        })
    }

    pub fn shape(&self) -> (usize, usize) {
        (self.nrows, self.ncols)
    }

    /// The error [`transpose`](Self::transpose) would return: the transpose's row pointers
    /// and column indices must fit the index type.
    pub fn check_transposable(&self) -> Result<()> {
        if I::from_usize(self.nnz().max(self.nrows)).is_none() {
            return Err(invalid!(
                "A has too many rows or non-zeros for its index type"
            ));
        }
        Ok(())
    }

    pub fn nnz(&self) -> usize {
        self.data.len()
    }

    #[inline(always)]
    fn row(&self, i: usize) -> (&'a [I], &'a [T]) {
        let (a, b) = (self.indptr[i].to_usize(), self.indptr[i + 1].to_usize());
        (&self.indices[a..b], &self.data[a..b])
    }

    /// The CSR form of `Aᵀ` (that is, `A` in CSC form), by a counting sort, with duplicate
    /// entries summed. Within each row of the result the entries keep `A`'s row order, so the
    /// result is deterministic and duplicates (same row of `A`) arrive side by side. Also says
    /// whether `A` had duplicates.
    pub fn transpose(&self) -> Result<(CsrOwned<T, I>, bool)> {
        self.check_transposable()?;
        let nnz = self.nnz();
        let mut start = vec![0usize; self.ncols + 1];
        for &j in self.indices {
            start[j.to_usize() + 1] += 1;
        }
        for j in 0..self.ncols {
            start[j + 1] += start[j];
        }
        let mut next = start.clone();
        let mut rows = vec![0usize; nnz];
        let mut data = vec![T::ZERO; nnz];
        for i in 0..self.nrows {
            let (cols, vals) = self.row(i);
            for (&j, &v) in cols.iter().zip(vals) {
                let slot = &mut next[j.to_usize()];
                rows[*slot] = i;
                data[*slot] = v;
                *slot += 1;
            }
        }
        // Sum adjacent duplicates, compacting in place.
        let mut indptr = Vec::with_capacity(self.ncols + 1);
        indptr.push(I::from_usize(0).expect("zero fits"));
        let mut write = 0;
        for j in 0..self.ncols {
            for k in start[j]..start[j + 1] {
                if write > indptr[j].to_usize() && rows[write - 1] == rows[k] {
                    let v = data[k];
                    data[write - 1] += v;
                } else {
                    rows[write] = rows[k];
                    data[write] = data[k];
                    write += 1;
                }
            }
            indptr.push(I::from_usize(write).expect("checked above"));
        }
        let had_duplicates = write < nnz;
        rows.truncate(write);
        data.truncate(write);
        let indices = rows
            .into_iter()
            .map(|i| I::from_usize(i).expect("checked above"))
            .collect();
        Ok((
            CsrOwned {
                nrows: self.ncols,
                ncols: self.nrows,
                indptr,
                indices,
                data,
            },
            had_duplicates,
        ))
    }

    /// `out = A · x` with `x` given in panels as [`to_panels`] writes them, parallel over
    /// fixed row blocks: every output entry sums its row's non-zeros in storage order,
    /// whatever the thread count.
    pub fn mul_dense_panels(&self, panels: &[T], out: MatMut<'_, T>) {
        match panel_width::<T>(self.ncols) {
            PANEL => self.gather_panels::<PANEL>(panels, out),
            _ => self.gather_panels::<{ PANEL / 2 }>(panels, out),
        }
    }

    fn gather_panels<const W: usize>(&self, panels: &[T], mut out: MatMut<'_, T>) {
        let (n, l) = (self.ncols, out.ncols());
        let len = n * W;
        debug_assert_eq!(panels.len(), l.div_ceil(W) * len);
        let avx2 = crate::projection::has_avx2();
        // One panel at a time over all rows: the rows gathered then touch only that panel,
        // a contiguous `n × W` block (1.6× faster than gathering the same columns from a
        // row-major `x` at 200000 × 50000 with 10M non-zeros and 110 columns: there each
        // panel row lies on its own page and the gathers miss the TLB).
        for (p, c0) in (0..l).step_by(W).enumerate() {
            let width = W.min(l - c0);
            let panel = &panels[p * len..(p + 1) * len];
            par_row_blocks(
                out.rb_mut().subcols_mut(c0, width),
                512,
                &|row0, mut block| {
                    // Sums of TILE rows at a time, then stored column by column (storing each
                    // row's sums straight into the column-major output took as long as the
                    // gathers when the panel is in cache).
                    let mut tile = [[T::ZERO; W]; TILE];
                    for t0 in (0..block.nrows()).step_by(TILE) {
                        let rows = TILE.min(block.nrows() - t0);
                        for (r, acc) in tile[..rows].iter_mut().enumerate() {
                            let (cols, vals) = self.row(row0 + t0 + r);
                            *acc = if avx2 {
                                // SAFETY: the CPU has AVX2 and FMA.
                                unsafe { panel_row_avx2::<T, I, W>(cols, vals, panel) }
                            } else {
                                panel_row::<T, I, W>(cols, vals, panel)
                            };
                        }
                        for c in 0..width {
                            let dst = block.rb_mut().col_mut(c).subrows_mut(t0, rows);
                            for (d, acc) in dst.iter_mut().zip(&tile) {
                                *d = acc[c];
                            }
                        }
                    }
                },
            );
        }
    }

    /// `out = Aᵀ · y` (`y` with any strides) by scattering the rows of `A`, so no transpose
    /// is needed: each of at most [`SCATTER_BLOCKS`] fixed row blocks of `A` adds
    /// `a_ij · y[i, :]` into its own partial output (rows in storage order; the output's
    /// panels of [`PANEL`] columns one after another, each `n × PANEL` row-major), and the
    /// partials are summed in block order.
    /// Deterministic whatever the thread count. Meant for outputs that fit a core's cache
    /// ([`SCATTER_BYTES`]), where the read-modify-writes hit the cache and `y` streams past
    /// in order; `partials` is scratch reused between calls.
    pub fn mul_t_dense(&self, y: MatRef<'_, T>, partials: &mut Vec<T>, out: MatMut<'_, T>) {
        use rayon::prelude::*;
        let (m, n) = (self.nrows, self.ncols);
        debug_assert_eq!(y.shape(), (m, out.ncols()));
        let padded = y.ncols().div_ceil(PANEL) * PANEL;
        // Each block costs two passes over its partial (zeroing, summing): keep that under
        // about an eighth of the scatter's own work.
        let blocks = (self.nnz() / (16 * n.max(1))).clamp(1, SCATTER_BLOCKS);
        let rows_per = m.div_ceil(blocks);
        let len = n * padded;
        partials.resize(blocks * len, T::ZERO);
        let avx2 = crate::projection::has_avx2();
        if len > 0 {
            partials
                .par_chunks_mut(len)
                .enumerate()
                .for_each(|(b, part)| {
                    part.fill(T::ZERO);
                    let rows = (b * rows_per).min(m)..((b + 1) * rows_per).min(m);
                    if avx2 {
                        // SAFETY: the CPU has AVX2 and FMA.
                        unsafe { scatter_rows_avx2(self, rows, y, part) }
                    } else {
                        scatter_rows(self, rows, y, part)
                    }
                });
        }
        // Sum the partials into the first, in block order, a cache-sized chunk at a time.
        let (first, rest) = partials[..blocks * len].split_at_mut(len);
        let rest = &*rest;
        first
            .par_chunks_mut(SUM_CHUNK)
            .enumerate()
            .for_each(|(k, dst)| {
                for b in 0..blocks - 1 {
                    let src = &rest[b * len + k * SUM_CHUNK..][..dst.len()];
                    for (d, &v) in dst.iter_mut().zip(src) {
                        *d += v;
                    }
                }
            });
        let first = &*first;
        par_row_blocks(out, 512, &|row0, mut block: MatMut<'_, T>| {
            for c in 0..block.ncols() {
                let panel = &first[(c / PANEL) * n * PANEL..];
                for r in 0..block.nrows() {
                    block[(r, c)] = panel[(row0 + r) * PANEL + c % PANEL];
                }
            }
        });
    }

    /// Row sums in f64 (duplicates simply add up).
    pub fn row_sums(&self) -> Vec<f64> {
        use rayon::prelude::*;
        (0..self.nrows)
            .into_par_iter()
            .map(|i| self.row(i).1.iter().map(|v| v.to_f64()).sum())
            .collect()
    }

    /// Per-column sums of squares of `A - 1·shiftᵀ` (or of `A` when `shift` is `None`),
    /// accumulated in f64 without the cancellation of `‖A‖² - m‖μ‖²`. Needs the row access of
    /// `Aᵀ`, so it is called on the transposed matrix: row `j` here is column `j` of `A`.
    /// Assumes no duplicate entries (what [`CsrRef::transpose`] returns).
    pub fn shifted_row_sq_norms(&self, shift: Option<&[T]>) -> f64 {
        use rayon::prelude::*;
        let per_row: Vec<f64> = (0..self.nrows)
            .into_par_iter()
            .map(|j| {
                let (_, vals) = self.row(j);
                let mu = shift.map_or(0.0, |s| s[j].to_f64());
                let nz: f64 = vals.iter().map(|&v| (v.to_f64() - mu).powi(2)).sum();
                nz + (self.ncols - vals.len()) as f64 * mu * mu
            })
            .collect();
        per_row.iter().sum()
    }
}

/// Columns of the dense operand per register block of [`CsrRef::mul_dense_panels`] and
/// [`CsrRef::mul_t_dense`]: a block's sums stay in vector registers (4 AVX2 registers in
/// f64) while the row's non-zeros stream past, instead of loading and storing the whole sum
/// row per non-zero.
pub const PANEL: usize = 16;

/// Largest gathered panel (bytes) of [`PANEL`] columns; taller operands are gathered in
/// panels half as wide, down to a cache line per row, so that a panel stays in the
/// last-level cache (at 50000 × 200000 with 10M non-zeros and 110 columns, 25.6 MB panels
/// of 16 columns took 2× longer than 12.8 MB panels of 8).
const PANEL_BYTES: usize = 8 << 20;

/// Columns per panel of an `n`-row dense operand ([`to_panels`]): [`PANEL`] or half of it.
fn panel_width<T>(n: usize) -> usize {
    let size = std::mem::size_of::<T>();
    if n * PANEL * size > PANEL_BYTES && PANEL / 2 * size >= 64 {
        PANEL / 2
    } else {
        PANEL
    }
}

/// Largest `Aᵀ·Y` output (bytes, padded to whole panels) that [`CsrRef::mul_t_dense`]
/// computes by scattering; wider ones are better gathered over an explicit transpose.
pub const SCATTER_BYTES: usize = 4 << 20;
/// Rows per tile of sums in [`CsrRef::mul_dense_panels`] (a tile of 16 f64 per row is 8 KB).
const TILE: usize = 64;
/// Values per task when the scatter's partial outputs are summed.
const SUM_CHUNK: usize = 4096;
/// At most this many row blocks (so partial outputs) in a scatter.
const SCATTER_BLOCKS: usize = 16;

/// [`scatter_rows`] compiled for AVX2/FMA.
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn scatter_rows_avx2<T: Float, I: SpIndex>(
    a: &CsrRef<'_, T, I>,
    rows: std::ops::Range<usize>,
    y: MatRef<'_, T>,
    part: &mut [T],
) {
    scatter_rows(a, rows, y, part)
}

// Elsewhere `has_avx2()` is false and these names only have to exist.
#[cfg(not(target_arch = "x86_64"))]
use {panel_row as panel_row_avx2, scatter_rows as scatter_rows_avx2};

/// `part[j, :] += a_ij · y[i, :]` for the rows `i` of `a` in `rows`, in order, one panel of
/// [`PANEL`] columns at a time (`part` holds the panels one after another, each `n × PANEL`,
/// so the read-modify-writes of a panel stay within `n · PANEL` values); row `i`'s panel of
/// `y` stays in registers while its non-zeros are applied.
#[inline(always)]
fn scatter_rows<T: Float, I: SpIndex>(
    a: &CsrRef<'_, T, I>,
    rows: std::ops::Range<usize>,
    y: MatRef<'_, T>,
    part: &mut [T],
) {
    let l = y.ncols();
    let len = a.ncols * PANEL;
    for (p, c0) in (0..l).step_by(PANEL).enumerate() {
        let width = PANEL.min(l - c0);
        let panel = &mut part[p * len..(p + 1) * len];
        let yp = y.subcols(c0, width);
        for i in rows.clone() {
            let (cols, vals) = a.row(i);
            if cols.is_empty() {
                continue;
            }
            let mut yi = [T::ZERO; PANEL];
            for (dst, &v) in yi.iter_mut().zip(yp.row(i).iter()) {
                *dst = v;
            }
            for (&j, &v) in cols.iter().zip(vals) {
                let at = j.to_usize() * PANEL;
                let dst: &mut [T; PANEL] = (&mut panel[at..at + PANEL])
                    .try_into()
                    .expect("PANEL entries");
                for (d, &y) in dst.iter_mut().zip(&yi) {
                    *d += v * y;
                }
            }
        }
    }
}

/// [`panel_row`] compiled for AVX2/FMA (the fixed-width sums vectorise; no FMA contraction,
/// so the sums are those of the portable build).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "avx2,fma")]
unsafe fn panel_row_avx2<T: Float, I: SpIndex, const W: usize>(
    cols: &[I],
    vals: &[T],
    panel: &[T],
) -> [T; W] {
    panel_row(cols, vals, panel)
}

/// `Σ v · panel[j]` over one sparse row, in storage order (`panel` holds `W` values per row
/// of the dense operand).
#[inline(always)]
fn panel_row<T: Float, I: SpIndex, const W: usize>(cols: &[I], vals: &[T], panel: &[T]) -> [T; W] {
    let mut acc = [T::ZERO; W];
    for (&j, &v) in cols.iter().zip(vals) {
        let start = j.to_usize() * W;
        let xr: &[T; W] = panel[start..start + W].try_into().expect("W entries");
        for (a, &x) in acc.iter_mut().zip(xr) {
            *a += v * x;
        }
    }
    acc
}

/// An owned CSR matrix (the transpose built by [`CsrRef::transpose`]).
#[derive(Clone, Debug)]
pub struct CsrOwned<T, I> {
    nrows: usize,
    ncols: usize,
    indptr: Vec<I>,
    indices: Vec<I>,
    data: Vec<T>,
}

impl<T: Float, I: SpIndex> CsrOwned<T, I> {
    pub fn as_ref(&self) -> CsrRef<'_, T, I> {
        CsrRef {
            nrows: self.nrows,
            ncols: self.ncols,
            indptr: &self.indptr,
            indices: &self.indices,
            data: &self.data,
        }
    }
}

/// Copies a dense `n × l` block into `out` (resized to fit) as the panels
/// [`CsrRef::mul_dense_panels`] gathers from: with `w = panel_width(n)`, panel `p` holds
/// columns `p·w ..` of every row, `out[(p·n + j)·w + c] = x(j, p·w + c)`, zero where
/// `p·w + c ≥ l`. `out` is reused between products, since a fresh buffer of this size would
/// be page-faulted in by every thread on each call; a new one asks for huge pages (the
/// gathers then miss the TLB less). Parallel over blocks of rows small enough that a block
/// of the output stays in cache.
pub fn to_panels<T: Float>(x: MatRef<'_, T>, out: &mut Vec<T>) {
    use rayon::prelude::*;
    const ROWS: usize = 256;
    let (n, l) = x.shape();
    let w = panel_width::<T>(n);
    let len = n * w;
    let total = l.div_ceil(w) * len;
    if out.capacity() < total {
        *out = crate::projection::huge_zeroed(total);
    }
    out.resize(total, T::ZERO);
    if total == 0 {
        return;
    }
    out.par_chunks_mut(len).enumerate().for_each(|(p, panel)| {
        let c0 = p * w;
        let width = w.min(l - c0);
        panel
            .par_chunks_mut(ROWS * w)
            .enumerate()
            .for_each(|(b, chunk)| {
                let (r0, rows) = (b * ROWS, chunk.len() / w);
                for c in 0..width {
                    for (r, &v) in x.col(c0 + c).subrows(r0, rows).iter().enumerate() {
                        chunk[r * w + c] = v;
                    }
                }
                // The padding's sums are discarded; zeros keep stale values (slow subnormals)
                // out of the arithmetic.
                for r in 0..rows {
                    chunk[r * w + width..(r + 1) * w].fill(T::ZERO);
                }
            });
    });
}

impl<'a, T: Float, I: SpIndex> CsrRef<'a, T, I> {
    /// Column indices and values of row `i`, in storage order (for kernels outside this
    /// module, such as the random projections).
    #[inline]
    pub fn row_entries(&self, i: usize) -> (&'a [I], &'a [T]) {
        self.row(i)
    }

    /// Column indices of rows `i0 .. i1` one after another, in storage order (to look
    /// ahead across rows, e.g. for prefetching).
    #[inline]
    pub fn rows_indices(&self, i0: usize, i1: usize) -> &'a [I] {
        &self.indices[self.indptr[i0].to_usize()..self.indptr[i1].to_usize()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Mat;

    /// A 4×5 example with an empty row, an unsorted row and a duplicate entry.
    fn example() -> (Vec<i64>, Vec<i64>, Vec<f64>, Mat<f64>) {
        let indptr = vec![0, 2, 2, 5, 6];
        let indices = vec![1, 4, 3, 0, 3, 2];
        let data = vec![1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let mut dense = Mat::<f64>::zeros(4, 5);
        for i in 0..4 {
            for k in indptr[i]..indptr[i + 1] {
                dense[(i, indices[k as usize] as usize)] += data[k as usize];
            }
        }
        (indptr, indices, data, dense)
    }

    #[test]
    fn products_match_dense() {
        let (p, i, d, dense) = example();
        let a = CsrRef::new(4, 5, &p, &i, &d).unwrap();
        let x = Mat::from_fn(5, 3, |r, c| (r * 3 + c) as f64 - 4.0);
        let mut y = Mat::<f64>::zeros(4, 3);
        let mut buf = Vec::new();
        to_panels(x.as_ref(), &mut buf);
        a.mul_dense_panels(&buf, y.as_mut());
        assert_eq!(y, &dense * &x);
        let (at, dup) = a.transpose().unwrap();
        assert!(dup);
        let z = Mat::from_fn(4, 2, |r, c| (r + 2 * c) as f64);
        let mut w = Mat::<f64>::zeros(5, 2);
        to_panels(z.as_ref(), &mut buf);
        at.as_ref().mul_dense_panels(&buf, w.as_mut());
        assert_eq!(w, dense.transpose() * &z);
        let mut scattered = Mat::<f64>::zeros(5, 2);
        a.mul_t_dense(z.as_ref(), &mut buf, scattered.as_mut());
        assert_eq!(scattered, w);
    }

    /// The scatter `Aᵀ·Y` against a dense product, with several row blocks (so partial sums),
    /// outputs wider than a panel, any strides of `Y`, and thread counts that must not matter.
    #[test]
    fn scatter_matches_dense_and_threads() {
        let (m, n, l) = (3000, 40, 37);
        let mut indptr = vec![0i64];
        let (mut indices, mut data) = (Vec::new(), Vec::new());
        let mut dense = Mat::<f64>::zeros(m, n);
        for i in 0..m {
            for t in 0..(i * 7 % 23) {
                let j = (i * 31 + t * 17) % n;
                let v = ((i + 3 * t) % 11) as f64 - 5.0;
                indices.push(j as i64);
                data.push(v);
                dense[(i, j)] += v;
            }
            indptr.push(indices.len() as i64);
        }
        let a = CsrRef::new(m, n, &indptr, &indices, &data).unwrap();
        let y = Mat::from_fn(l, m, |c, i| ((i * 13 + c * 7) % 29) as f64 / 8.0 - 1.5);
        let want = dense.transpose() * y.transpose();
        let on = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new()
                .num_threads(threads)
                .build()
                .unwrap();
            let mut out = Mat::<f64>::zeros(n, l);
            pool.install(|| a.mul_t_dense(y.transpose(), &mut Vec::new(), out.as_mut()));
            out
        };
        let one = on(1);
        assert_eq!(one, on(3));
        // Small integers and eighths: every partial sum is exact, so the order cannot matter.
        assert_eq!(one, want);
    }

    /// The panel gather `A·X` against a plain loop over the entries: both panel widths,
    /// several panels with the last one partial, more rows than one copy block, a reused
    /// buffer holding stale values from a larger operand, thread counts that must not matter.
    #[test]
    fn panels_match_loop_and_threads() {
        let m = 300;
        for n in [1100, 70_000] {
            let mut indptr = vec![0i32];
            let (mut indices, mut data) = (Vec::new(), Vec::new());
            for i in 0..m {
                for t in 0..(i * 5 % 19) {
                    indices.push(((i * 37 + t * 10_007) % n) as i32);
                    data.push(((i + 5 * t) % 13) as f64 - 6.0);
                }
                indptr.push(indices.len() as i32);
            }
            let a = CsrRef::new(m, n, &indptr, &indices, &data).unwrap();
            for l in [1, 16, 37] {
                let x = Mat::from_fn(n, l, |j, c| ((j * 7 + c * 3) % 17) as f64 / 4.0 - 2.0);
                // Small integers and quarters: every partial sum is exact.
                let want = Mat::from_fn(m, l, |i, c| {
                    let (lo, hi) = (indptr[i] as usize, indptr[i + 1] as usize);
                    (lo..hi)
                        .map(|e| data[e] * x[(indices[e] as usize, c)])
                        .sum::<f64>()
                });
                for threads in [1, 3] {
                    let pool = rayon::ThreadPoolBuilder::new()
                        .num_threads(threads)
                        .build()
                        .unwrap();
                    let mut buf = vec![f64::NAN; (n + 300) * 3 * PANEL];
                    let mut out = Mat::<f64>::zeros(m, l);
                    pool.install(|| {
                        to_panels(x.as_ref(), &mut buf);
                        a.mul_dense_panels(&buf, out.as_mut())
                    });
                    assert_eq!(out, want, "n {n} l {l} threads {threads}");
                }
            }
        }
        assert_eq!(panel_width::<f64>(1100), PANEL);
        assert_eq!(panel_width::<f64>(70_000), PANEL / 2);
        assert_eq!(panel_width::<f32>(1 << 20), PANEL);
    }

    #[test]
    fn shifted_norms() {
        let (p, i, d, dense) = example();
        let a = CsrRef::new(4, 5, &p, &i, &d).unwrap();
        let (at, _) = a.transpose().unwrap();
        let mu = [0.5, -1.0, 2.0, 0.0, 3.0];
        let mut want = 0.0;
        for r in 0..4 {
            for c in 0..5 {
                want += (dense[(r, c)] - mu[c]).powi(2);
            }
        }
        let got = at.as_ref().shifted_row_sq_norms(Some(&mu));
        assert!((got - want).abs() < 1e-12);
    }

    #[test]
    fn bad_structure_is_an_error() {
        let d = [1.0f64, 2.0];
        assert!(CsrRef::new(2, 3, &[0i32, 1], &[0, 1], &d).is_err()); // indptr too short
        assert!(CsrRef::new(1, 3, &[1i32, 2], &[0, 1], &d).is_err()); // does not start at 0
        assert!(CsrRef::new(2, 3, &[0i32, 2, 1], &[0, 1], &d).is_err()); // decreasing
        assert!(CsrRef::new(1, 3, &[0i32, 3], &[0, 1], &d).is_err()); // past the arrays
        assert!(CsrRef::new(1, 3, &[0i32, 2], &[0, 3], &d).is_err()); // column out of range
        assert!(CsrRef::new(1, 3, &[0i32, 2], &[0, -1], &d).is_err()); // negative column
        assert!(CsrRef::new(1, 3, &[0i32, 2], &[0, 2], &d).is_ok());
    }
}
