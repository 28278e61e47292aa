//! Dissimilarity sources behind one trait: a precomputed square matrix, a condensed vector
//! (scipy's `pdist` layout) and a feature matrix whose distances are computed on the fly.
//!
//! The algorithms only ever ask for whole rows `d(x, ·)` (a swap candidate against every
//! point, or a medoid against every point), in blocks, so the feature source can compute a
//! block of rows at once with a register-tiled kernel and never forms the n×n matrix.
//!
//! Every entry `d(i, j)` is a pure function of the two rows `i` and `j`: the kernel sums in a
//! fixed lane order that does not depend on which other rows share the block, so on-the-fly
//! distances are bit-identical to the materialised matrix ([`Materialise::to_matrix`]) and
//! exactly symmetric, whatever the block sizes and thread count.

use crate::{invalid, Float, Result};
use rayon::prelude::*;

/// A symmetric dissimilarity over `n` objects with a zero diagonal.
pub trait Dissimilarity<T: Float>: Sync {
    /// Number of objects.
    fn len(&self) -> usize;
    /// Whether there are no objects (never, for a validated source).
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Writes `d(rows[r], j)` for all `j` into `out[r * n .. (r + 1) * n]`.
    fn rows_into(&self, rows: &[usize], out: &mut [T]);
    /// Row `i` without a copy, when the source stores it.
    fn stored_row(&self, _i: usize) -> Option<&[T]> {
        None
    }
    /// One entry `d(i, j)`, identical to entry `j` of row `i`.
    fn get(&self, i: usize, j: usize) -> T;
    /// Rows a caller should request at once for efficiency.
    fn preferred_block(&self) -> usize {
        1
    }
    /// `out[a * s + b] = d(members[a], members[b])` with `s = members.len()`, each entry
    /// identical to [`Dissimilarity::get`]'s. Here entry by entry.
    fn members_block(&self, members: &[usize], out: &mut [T]) {
        let s = members.len();
        for (a, &i) in members.iter().enumerate() {
            for (b, &j) in members.iter().enumerate() {
                out[a * s + b] = self.get(i, j);
            }
        }
    }
    /// `cost[a] = Σ_b w[members[b]] · d(members[a], members[b])` over `b ≠ a`, each sum in
    /// increasing `b` (the Voronoi step of OneBatchPAM). Here each pair is read once, with
    /// [`Dissimilarity::get`], for both of its entries; a source with a block kernel computes
    /// whole rows instead, which gives the same sums wherever it is exactly symmetric.
    fn member_costs(&self, members: &[usize], w: &[f64]) -> Vec<f64> {
        let mut cost = vec![0.0f64; members.len()];
        for (i, &x) in members.iter().enumerate() {
            for (j, &o) in members.iter().enumerate().skip(i + 1) {
                let d = self.get(x, o).to_f64();
                cost[i] += w[o] * d;
                cost[j] += w[x] * d;
            }
        }
        cost
    }
}

/// Checks a square matrix stored contiguously (row- or column-major: it must be symmetric, so
/// either reads the same): finite, non-negative, zero diagonal, symmetric to
/// `sqrt(eps) · max(D)` (matrices from a GEMM-based distance are not exactly symmetric; row
/// `x` is what the algorithms read).
pub fn check_square<T: Float>(data: &[T], n: usize, name: &str) -> Result<()> {
    if n == 0 || data.len() != n.saturating_mul(n) {
        return Err(invalid!("{name} must be a non-empty square matrix"));
    }
    // One contiguous pass: every value finite and non-negative (checked branch-free, the
    // message built only on failure), the diagonal zero, and the largest value.
    let rows: Vec<(bool, f64)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let row = &data[i * n..(i + 1) * n];
            let mut ok = row[i] == T::ZERO;
            let mut max = T::ZERO;
            for &v in row {
                ok &= v >= T::ZERO && v.is_finite();
                if v > max {
                    max = v;
                }
            }
            (ok, max.to_f64())
        })
        .collect();
    if let Some(i) = rows.iter().position(|r| !r.0) {
        let row = &data[i * n..(i + 1) * n];
        let msg = match row.iter().position(|v| !v.is_finite()) {
            Some(j) => format!("{name} contains NaN or infinity (at [{i}, {j}])"),
            None => match row.iter().position(|&v| v < T::ZERO) {
                Some(j) => format!(
                    "{name} must be non-negative, got {:?} at [{i}, {j}]",
                    row[j]
                ),
                None => format!(
                    "{name} must have a zero diagonal, got {:?} at [{i}, {i}]",
                    row[i]
                ),
            },
        };
        return Err(invalid!("{msg}"));
    }
    let max = rows.iter().fold(0.0f64, |m, r| m.max(r.1));
    let tol = T::EPSILON.to_f64().sqrt() * max;
    // Tiles of B×B against their mirror, so both reads stay in cache.
    const B: usize = 64;
    let asym = |bi: usize| -> Option<String> {
        for bj in 0..=bi {
            for i in bi * B..((bi + 1) * B).min(n) {
                for j in bj * B..((bj + 1) * B).min(i) {
                    let (a, b) = (data[i * n + j].to_f64(), data[j * n + i].to_f64());
                    if (a - b).abs() > tol {
                        return Some(format!(
                            "{name} must be symmetric: [{i}, {j}] = {a} but [{j}, {i}] = {b}"
                        ));
                    }
                }
            }
        }
        None
    };
    match (0..n.div_ceil(B)).into_par_iter().find_map_first(asym) {
        Some(msg) => Err(invalid!("{msg}")),
        None => Ok(()),
    }
}

/// A square matrix stored row by row (`n * n` values in `data`: a borrowed, validated
/// input, or an owned matrix such as [`Owned`]). A symmetric matrix in C or Fortran order
/// reads the same.
pub struct Square<S> {
    pub(crate) data: S,
    pub(crate) n: usize,
}

/// An owned matrix (the materialised feature distances), as a [`Dissimilarity`].
pub type Owned<T> = Square<Vec<T>>;

impl<'a, T: Float> Square<&'a [T]> {
    /// Validates (see [`check_square`]) and wraps `data` (`n * n` values).
    pub fn new(data: &'a [T], n: usize) -> Result<Self> {
        check_square(data, n, "the dissimilarity matrix")?;
        Ok(Self { data, n })
    }
}

impl<T: Float> Owned<T> {
    /// Wraps a matrix the caller built (not validated: its own computations).
    pub fn from_computed(data: Vec<T>, n: usize) -> Self {
        debug_assert_eq!(data.len(), n * n);
        Self { data, n }
    }
}

impl<T: Float, S: AsRef<[T]> + Sync> Dissimilarity<T> for Square<S> {
    fn len(&self) -> usize {
        self.n
    }
    fn rows_into(&self, rows: &[usize], out: &mut [T]) {
        let data = self.data.as_ref();
        for (r, &i) in rows.iter().enumerate() {
            out[r * self.n..(r + 1) * self.n].copy_from_slice(&data[i * self.n..(i + 1) * self.n]);
        }
    }
    fn stored_row(&self, i: usize) -> Option<&[T]> {
        Some(&self.data.as_ref()[i * self.n..(i + 1) * self.n])
    }
    fn get(&self, i: usize, j: usize) -> T {
        self.data.as_ref()[i * self.n + j]
    }
}

/// The condensed upper triangle as scipy's `pdist` returns it: `d(i, j)` for `i < j` at
/// `n i - i (i + 1) / 2 + j - i - 1`.
pub struct Condensed<'a, T> {
    data: &'a [T],
    n: usize,
}

impl<'a, T: Float> Condensed<'a, T> {
    /// Validates the length (`n (n - 1) / 2` for some `n >= 1`... `n = 1` is the empty
    /// vector) and the values (finite, non-negative).
    pub fn new(data: &'a [T]) -> Result<Self> {
        let m = data.len();
        // n (n - 1) / 2 = m  ⇔  n = (1 + sqrt(1 + 8m)) / 2
        let n = ((1.0 + (1.0 + 8.0 * m as f64).sqrt()) / 2.0).round() as usize;
        if n * (n - 1) / 2 != m {
            return Err(invalid!(
                "a condensed distance vector must have length n (n - 1) / 2, got {m}"
            ));
        }
        if let Some((i, v)) = data
            .par_iter()
            .enumerate()
            .find_first(|(_, v)| !v.is_finite() || **v < T::ZERO)
        {
            return Err(invalid!(
                "the condensed distances must be finite and non-negative, got {v:?} at [{i}]"
            ));
        }
        Ok(Self { data, n })
    }
}

impl<T: Float> Dissimilarity<T> for Condensed<'_, T> {
    fn len(&self) -> usize {
        self.n
    }
    fn rows_into(&self, rows: &[usize], out: &mut [T]) {
        let n = self.n;
        for (r, &i) in rows.iter().enumerate() {
            let out = &mut out[r * n..(r + 1) * n];
            // j < i: the entries (j, i) sit one per stored row j, at a shrinking stride.
            let mut at = i.wrapping_sub(1);
            for (j, o) in out[..i].iter_mut().enumerate() {
                *o = self.data[at];
                at = at + n - j - 2;
            }
            out[i] = T::ZERO;
            let start = n * i - i * (i + 1) / 2;
            out[i + 1..].copy_from_slice(&self.data[start..start + n - i - 1]);
        }
    }
    fn get(&self, i: usize, j: usize) -> T {
        let (a, b) = if i < j { (i, j) } else { (j, i) };
        if a == b {
            return T::ZERO;
        }
        self.data[self.n * a - a * (a + 1) / 2 + b - a - 1]
    }
}

/// Metrics computed on the fly from features.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Metric {
    Euclidean,
    SqEuclidean,
    Manhattan,
    Cosine,
}

impl Metric {
    pub fn parse(name: &str) -> Result<Self> {
        Ok(match name {
            "euclidean" => Self::Euclidean,
            "sqeuclidean" => Self::SqEuclidean,
            "manhattan" | "cityblock" | "l1" => Self::Manhattan,
            "cosine" => Self::Cosine,
            other => {
                return Err(invalid!(
                    "metric must be 'precomputed', 'euclidean', 'sqeuclidean', 'manhattan' or 'cosine', got {other:?}"
                ))
            }
        })
    }
}

/// Points per panel: the kernel keeps one distance per point of a panel in a vector lane.
const LANES: usize = 8;
/// Candidates evaluated together in the kernel (each panel load serves all of them).
const TILE: usize = 4;

/// The fused multiply-add the distance kernel sums with (correctly rounded everywhere: one
/// instruction where the CPU has FMA, which pulp's dispatch enables, libm's otherwise).
pub trait Fma: Float {
    fn fma(self, b: Self, c: Self) -> Self;
}
impl Fma for f32 {
    #[inline(always)]
    fn fma(self, b: Self, c: Self) -> Self {
        self.mul_add(b, c)
    }
}
impl Fma for f64 {
    #[inline(always)]
    fn fma(self, b: Self, c: Self) -> Self {
        self.mul_add(b, c)
    }
}

/// One term of the metric's sum: `acc + f(a, b)`, the same expression in every code path.
#[inline(always)]
pub(crate) fn term<T: Fma>(metric: Metric, a: T, b: T, acc: T) -> T {
    match metric {
        Metric::Euclidean | Metric::SqEuclidean => {
            let t = a - b;
            t.fma(t, acc)
        }
        Metric::Manhattan => acc + (a - b).abs(),
        Metric::Cosine => a.fma(b, acc),
    }
}

/// A row-major feature matrix (`n × d`, contiguous) and a metric.
///
/// Every distance is the sequential sum over the features `l = 0, 1, …` of [`term`] (for
/// euclidean `fma(x_l − y_l, x_l − y_l, acc)`), then the metric's finish; the blocked kernel
/// computes exactly that for each pair, just for `TILE × LANES` pairs at once, from a copy of
/// `X` transposed in panels of `LANES` points (so the lanes hold different points and no
/// horizontal sum is needed).
pub struct Features<'a, T> {
    x: &'a [T],
    n: usize,
    d: usize,
    metric: Metric,
    /// `panels[(b * d + l) * LANES + lane] = x[b * LANES + lane, l]` (zero past `n`).
    panels: Vec<T>,
    /// Euclidean norms of the rows (cosine only), from the same sum.
    norms: Vec<T>,
}

impl<'a, T: Fma> Features<'a, T> {
    pub fn new(x: &'a [T], n: usize, d: usize, metric: Metric) -> Result<Self> {
        if n == 0 || d == 0 || x.len() != n * d {
            return Err(invalid!(
                "X must be a non-empty n_samples × n_features matrix"
            ));
        }
        if x.par_iter().any(|v| !v.is_finite()) {
            return Err(invalid!("X contains NaN or infinity"));
        }
        let nb = n.div_ceil(LANES);
        let mut panels = vec![T::ZERO; nb * d * LANES];
        panels
            .par_chunks_mut(d * LANES)
            .enumerate()
            .for_each(|(b, p)| {
                for lane in 0..LANES.min(n - b * LANES) {
                    let row = &x[(b * LANES + lane) * d..(b * LANES + lane + 1) * d];
                    for (l, &v) in row.iter().enumerate() {
                        p[l * LANES + lane] = v;
                    }
                }
            });
        let mut f = Self {
            x,
            n,
            d,
            metric,
            panels,
            norms: Vec::new(),
        };
        if metric == Metric::Cosine {
            f.norms = (0..n).into_par_iter().map(|i| f.raw(i, i).sqrt()).collect();
        }
        Ok(f)
    }

    #[inline(always)]
    fn row(&self, i: usize) -> &[T] {
        &self.x[i * self.d..(i + 1) * self.d]
    }

    /// `f` applied to the sub-source of the rows `members` of `X` (object `a` there is
    /// `members[a]` here): its blocked rows equal this source's entries, the same values from
    /// the same sums (every term of every metric here is symmetric in its two arguments, and
    /// the cosine norms come from the same sums).
    fn with_members<R>(&self, members: &[usize], f: impl FnOnce(&Features<'_, T>) -> R) -> R {
        let x: Vec<T> = members
            .iter()
            .flat_map(|&i| self.row(i).iter().copied())
            .collect();
        f(&Features::new(&x, members.len(), self.d, self.metric).expect("rows of a validated X"))
    }

    /// The metric's sum for one pair, before the finish.
    fn raw(&self, i: usize, j: usize) -> T {
        let (a, b) = (self.row(i), self.row(j));
        pulp::Arch::new().dispatch(PairOp {
            a,
            b,
            metric: self.metric,
        })
    }

    /// `out[c * n + j] = d(cands[c], j)` for up to `TILE` candidates and `j < cols`.
    fn tile_rows(&self, cands: &[usize], cols: usize, out: &mut [T]) {
        let rows: [&[T]; TILE] = std::array::from_fn(|c| self.row(cands[c.min(cands.len() - 1)]));
        pulp::Arch::new().dispatch(TileOp {
            f: self,
            rows,
            cands,
            cols,
            out,
        });
    }

    #[inline(always)]
    fn finish(&self, acc: T, i: usize, j: usize) -> T {
        finish(self.metric, acc, i, j, &self.norms)
    }
}

/// The metric's finish of the sum `acc` for the pair `(i, j)` (`norms`: the rows' Euclidean
/// norms, cosine only): the same function for every feature source.
#[inline(always)]
pub(crate) fn finish<T: Float>(metric: Metric, acc: T, i: usize, j: usize, norms: &[T]) -> T {
    if i == j {
        return T::ZERO;
    }
    match metric {
        Metric::Euclidean => acc.sqrt(),
        Metric::SqEuclidean | Metric::Manhattan => acc,
        Metric::Cosine => {
            let denom = norms[i] * norms[j];
            if denom == T::ZERO {
                return T::ONE; // a zero vector is at cosine distance 1 from all others
            }
            let s = T::ONE - acc / denom;
            let two = T::ONE + T::ONE;
            if s < T::ZERO {
                T::ZERO
            } else if s > two {
                two
            } else {
                s
            }
        }
    }
}

/// The blocked kernel as a pulp operation, so that it is compiled for (and run with) the
/// widest SIMD unit and FMA the CPU has, selected at run time.
struct TileOp<'s, 'a, T> {
    f: &'s Features<'a, T>,
    rows: [&'s [T]; TILE],
    cands: &'s [usize],
    cols: usize,
    out: &'s mut [T],
}

impl<T: Fma> pulp::WithSimd for TileOp<'_, '_, T> {
    type Output = ();
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) {
        let TileOp {
            f,
            rows,
            cands,
            cols,
            out,
        } = self;
        let (n, d) = (f.n, f.d);
        for b in 0..cols.div_ceil(LANES) {
            let panel = &f.panels[b * d * LANES..(b + 1) * d * LANES];
            let acc = match f.metric {
                Metric::Euclidean | Metric::SqEuclidean => kernel(Metric::Euclidean, &rows, panel),
                Metric::Manhattan => kernel(Metric::Manhattan, &rows, panel),
                Metric::Cosine => kernel(Metric::Cosine, &rows, panel),
            };
            let j0 = b * LANES;
            for (c, &i) in cands.iter().enumerate() {
                for lane in 0..LANES.min(cols - j0) {
                    out[c * n + j0 + lane] = f.finish(acc[c][lane], i, j0 + lane);
                }
            }
        }
    }
}

/// One pair's sum, as a pulp operation (see [`TileOp`]).
struct PairOp<'s, T> {
    a: &'s [T],
    b: &'s [T],
    metric: Metric,
}

impl<T: Fma> pulp::WithSimd for PairOp<'_, T> {
    type Output = T;
    #[inline(always)]
    fn with_simd<S: pulp::Simd>(self, _simd: S) -> T {
        let m = self.metric;
        self.a
            .iter()
            .zip(self.b)
            .fold(T::ZERO, |acc, (&x, &y)| term(m, x, y, acc))
    }
}

/// `acc[c][lane] = Σ_l term(a_c[l], panel[l][lane])`, sequentially over `l` for each pair.
#[inline(always)]
fn kernel<T: Fma>(metric: Metric, a: &[&[T]; TILE], panel: &[T]) -> [[T; LANES]; TILE] {
    let d = panel.len() / LANES;
    let a: [&[T]; TILE] = std::array::from_fn(|c| &a[c][..d]);
    let mut acc = [[T::ZERO; LANES]; TILE];
    for l in 0..d {
        let p: &[T; LANES] = panel[l * LANES..(l + 1) * LANES]
            .try_into()
            .expect("LANES long");
        for c in 0..TILE {
            let av = a[c][l];
            for lane in 0..LANES {
                acc[c][lane] = term(metric, av, p[lane], acc[c][lane]);
            }
        }
    }
    acc
}

/// A feature source whose full matrix can be formed (bit-identical to its on-the-fly rows),
/// so that [`super::kmedoids_features`] can trade memory for speed.
pub trait Materialise<T: Float>: Dissimilarity<T> {
    /// The full `n × n` matrix, row-major.
    fn to_matrix(&self) -> Vec<T>;
}

impl<T: Fma> Materialise<T> for Features<'_, T> {
    fn to_matrix(&self) -> Vec<T> {
        symmetric_matrix(self.n, TILE, |rows, cols, out| {
            self.tile_rows(rows, cols, out)
        })
    }
}

/// The symmetric `n × n` matrix whose lower triangle `fill(rows, cols, out)` writes, `block`
/// rows at a time (`out[r * n + j] = d(rows[r], j)` for `j < cols`, `cols` just past the
/// block's last row), mirrored into the upper triangle (every distance is exactly symmetric).
pub(crate) fn symmetric_matrix<T: Float>(
    n: usize,
    block: usize,
    fill: impl Fn(&[usize], usize, &mut [T]) + Sync,
) -> Vec<T> {
    let mut out = vec![T::ZERO; n * n];
    out.par_chunks_mut(n * block)
        .enumerate()
        .for_each(|(t, o)| {
            let r0 = t * block;
            let rows: Vec<usize> = (r0..(r0 + block).min(n)).collect();
            fill(&rows, r0 + rows.len(), o);
        });
    // Mirror in B×B tiles so that the strided reads stay in cache.
    const B: usize = 64;
    let ptr = SyncPtr(out.as_mut_ptr());
    (0..n.div_ceil(B)).into_par_iter().for_each(|bi| {
        let p = &ptr;
        for bj in bi..n.div_ceil(B) {
            for i in bi * B..((bi + 1) * B).min(n) {
                for j in (bj * B).max(i + 1)..((bj + 1) * B).min(n) {
                    // SAFETY: the upper entries (i, j), j > i, of row block bi are written
                    // only by this task; the entries read, (j, i) with j > i, lie in the
                    // lower triangle, which nothing writes now.
                    unsafe { *p.0.add(i * n + j) = *p.0.add(j * n + i) };
                }
            }
        }
    });
    out
}

impl<T: Fma> Dissimilarity<T> for Features<'_, T> {
    fn len(&self) -> usize {
        self.n
    }
    fn rows_into(&self, rows: &[usize], out: &mut [T]) {
        for (r, o) in rows.chunks(TILE).zip(out.chunks_mut(TILE * self.n)) {
            self.tile_rows(r, self.n, o);
        }
    }
    fn preferred_block(&self) -> usize {
        TILE
    }
    fn get(&self, i: usize, j: usize) -> T {
        self.finish(self.raw(i, j), i, j)
    }
    /// The members' rows by the blocked kernel ([`Features::with_members`]).
    fn members_block(&self, members: &[usize], out: &mut [T]) {
        let local: Vec<usize> = (0..members.len()).collect();
        self.with_members(members, |sub| sub.rows_into(&local, out));
    }
    /// The members' rows by the blocked kernel ([`Features::with_members`]), a block of rows
    /// at a time: OneBatchPAM's Voronoi polish at 20000 × 64, k = 100 took 82 ms instead of
    /// 191 pair by pair.
    fn member_costs(&self, members: &[usize], w: &[f64]) -> Vec<f64> {
        let s = members.len();
        let local: Vec<usize> = (0..s).collect();
        let step = (MEMBER_BLOCK / s).max(1).div_ceil(TILE) * TILE;
        let mut block = vec![T::ZERO; step.min(s) * s];
        let mut cost = vec![0.0f64; s];
        self.with_members(members, |sub| {
            for rows in local.chunks(step) {
                let out = &mut block[..rows.len() * s];
                sub.rows_into(rows, out);
                for (&a, row) in rows.iter().zip(out.chunks(s)) {
                    // the zero diagonal adds 0.0, which leaves the sum as it is
                    cost[a] = row
                        .iter()
                        .zip(members)
                        .fold(0.0f64, |c, (&d, &o)| c + w[o] * d.to_f64());
                }
            }
        });
        cost
    }
}

/// Entries of the row block [`Features::member_costs`] computes at once.
const MEMBER_BLOCK: usize = 1 << 16;

struct SyncPtr<T>(*mut T);
// SAFETY: used only where the writes of different threads go to disjoint entries.
unsafe impl<T> Sync for SyncPtr<T> {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn condensed_matches_square() {
        let n = 7;
        let full: Vec<f64> = (0..n * n)
            .map(|t| {
                let (i, j) = (t / n, t % n);
                if i == j {
                    0.0
                } else {
                    (i.min(j) * 10 + i.max(j)) as f64
                }
            })
            .collect();
        let mut cond = vec![];
        for i in 0..n {
            for j in i + 1..n {
                cond.push(full[i * n + j]);
            }
        }
        let c = Condensed::new(&cond).unwrap();
        assert_eq!(c.len(), n);
        let mut out = vec![0.0; n * n];
        c.rows_into(&(0..n).collect::<Vec<_>>(), &mut out);
        assert_eq!(out, full);
        assert!(Condensed::new(&[1.0f64, 2.0]).is_err());
        assert_eq!(Condensed::<f64>::new(&[]).unwrap().len(), 1);
    }

    const METRICS: [Metric; 4] = [
        Metric::Euclidean,
        Metric::SqEuclidean,
        Metric::Manhattan,
        Metric::Cosine,
    ];

    /// The Voronoi sums and member blocks of the blocked kernel equal those read pair by pair
    /// (the trait's own methods, through a source that does not override them), bit for
    /// bit, for every metric, with unsorted members and blocks of rows smaller than a cluster.
    #[test]
    fn member_costs_match_pair_by_pair() {
        struct Pairwise<'f, 'a>(&'f Features<'a, f64>);
        impl Dissimilarity<f64> for Pairwise<'_, '_> {
            fn len(&self) -> usize {
                self.0.len()
            }
            fn rows_into(&self, rows: &[usize], out: &mut [f64]) {
                self.0.rows_into(rows, out)
            }
            fn get(&self, i: usize, j: usize) -> f64 {
                self.0.get(i, j)
            }
        }
        let (n, d) = (700, 9);
        let x: Vec<f64> = (0..n * d)
            .map(|t| ((t * 7919) % 101) as f64 / 13.0 - 3.0)
            .collect();
        let w: Vec<f64> = (0..n).map(|i| 1.0 + (i % 5) as f64 / 3.0).collect();
        let members: Vec<usize> = (0..n).map(|i| (i * 337) % n).take(650).collect();
        for m in METRICS {
            let f = Features::new(&x, n, d, m).unwrap();
            let blocked = f.member_costs(&members, &w);
            let pairwise = Pairwise(&f).member_costs(&members, &w);
            assert_eq!(blocked, pairwise, "{m:?}");
            let few = &members[..41];
            let (mut a, mut b) = (vec![0.0; 41 * 41], vec![1.0; 41 * 41]);
            f.members_block(few, &mut a);
            Pairwise(&f).members_block(few, &mut b);
            assert_eq!(a, b, "{m:?}");
        }
    }

    #[test]
    fn features_rows_independent_of_tiling() {
        let (n, d) = (11, 13);
        let x: Vec<f32> = (0..n * d)
            .map(|t| ((t * 7919) % 31) as f32 / 7.0 - 2.0)
            .collect();
        for m in METRICS {
            let f = Features::new(&x, n, d, m).unwrap();
            let full = f.to_matrix();
            for i in 0..n {
                let mut one = vec![0.0; n];
                f.rows_into(&[i], &mut one);
                assert_eq!(&one[..], &full[i * n..(i + 1) * n]);
                for j in 0..n {
                    assert_eq!(full[i * n + j], full[j * n + i]);
                    let direct: f64 = (0..d)
                        .map(|l| {
                            let (a, b) = (x[i * d + l] as f64, x[j * d + l] as f64);
                            match m {
                                Metric::Manhattan => (a - b).abs(),
                                Metric::Cosine => a * b,
                                _ => (a - b) * (a - b),
                            }
                        })
                        .sum();
                    let want = match m {
                        Metric::Euclidean => direct.sqrt(),
                        Metric::Cosine if i != j => {
                            let ni: f64 = (0..d).map(|l| (x[i * d + l] as f64).powi(2)).sum();
                            let nj: f64 = (0..d).map(|l| (x[j * d + l] as f64).powi(2)).sum();
                            1.0 - direct / (ni * nj).sqrt()
                        }
                        Metric::Cosine => 0.0,
                        _ => direct,
                    };
                    assert!((full[i * n + j] as f64 - want).abs() < 1e-4 * (1.0 + want));
                }
            }
        }
        assert!(Square::new(&[0.0f64, 1.0, 2.0, 0.0], 2).is_err());
        assert!(Square::new(&[0.0f64, 1.0, 1.0, 0.0], 2).is_ok());
        assert!(Square::new(&[1.0f64, 1.0, 1.0, 0.0], 2).is_err());
        assert!(Square::new(&[0.0f64, -1.0, -1.0, 0.0], 2).is_err());
    }
}
