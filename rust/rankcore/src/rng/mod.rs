//! Counter-based random numbers: Philox4x32-10 and random matrices addressed by index.
//!
//! Randomised algorithms (range finders, sketches) need a test matrix Ω whose entries do not
//! depend on how the work is split across threads, nor on whether it is drawn on the CPU or on
//! the GPU. A counter-based generator gives this for free: entry (i, j) is computed from
//! scratch as a pure function of (seed, stream, i, j); there is no state to share or advance.
//!
//! # Counter layout
//!
//! Every draw comes from one call of [`philox4x32_10`] with
//!
//! ```text
//! key     = [seed as u32, (seed >> 32) as u32]
//! counter = [q as u32, (q >> 32) as u32, j, stream]     -> words w[0], w[1], w[2], w[3]
//! ```
//!
//! where the block index `q` and the words used depend on the kind of draw for row `i`:
//!
//! - 32-bit words, uniforms, Rademacher signs: `q = i / 4`, word `w = w[i % 4]`;
//!   - uniform    = `w as f64 / 2^32`, in [0, 1);
//!   - Rademacher = `+1.0` if the top bit of `w` is clear, `-1.0` if it is set.
//! - normals: `q = i / 2`, words `(a, b) = (w[0], w[1])` for even `i`, `(w[2], w[3])` for odd
//!   `i`; Box–Muller, cosine branch only, all in f64:
//!   - `u1 = (a as f64 + 1.0) / 2^32`, in (0, 1], so the logarithm is finite;
//!   - `u2 = b as f64 / 2^32`, in [0, 1);
//!   - `z  = sqrt(-2.0 * ln(u1)) * cos(TAU * u2)`, with `TAU` = 2π rounded to f64.
//!
//! Normals and the other draws use the same counters, so a normal matrix and a uniform matrix
//! with the same (seed, stream) are not independent: give them different streams.
//!
//! # Reproducibility across devices
//!
//! The integer words, the uniforms and the Rademacher signs involve only integer arithmetic
//! and exact scalings by powers of two, so any implementation of this layout (the CUDA kernel
//! included) reproduces them bit for bit. Normals also go through `ln` and `cos`: here
//! fdlibm's algorithms written so that they vectorise (see [`gaussian`]), each within an ulp
//! of the exact value (a math library's `ln`/`cos` would agree to an ulp or two); the CUDA
//! kernel computes the same operations in the same order, each rounded on its own (no fused
//! multiply-add), so its normals are bit-identical too.
//! Conversion to `f32` rounds the f64 value once, after the whole computation.

mod gaussian;

use crate::Float;
use faer::{ColMut, MatMut};
use rayon::prelude::*;

// Philox4x32 constants from Random123 (Salmon et al., "Parallel Random Numbers: As Easy as
// 1, 2, 3", SC11): round multipliers and the Weyl increments of the key schedule.
const PHILOX_M0: u32 = 0xD251_1F53;
const PHILOX_M1: u32 = 0xCD9E_8D57;
const PHILOX_W0: u32 = 0x9E37_79B9;
const PHILOX_W1: u32 = 0xBB67_AE85;

/// 2^-32: scales a 32-bit word into [0, 1) exactly.
const TWO_POW_M32: f64 = 1.0 / 4_294_967_296.0;

/// Rows per parallel task in the `fill_*` methods: large enough that the rayon overhead is
/// negligible, small enough that tall matrices with few columns still use every thread.
/// A multiple of 4 so that tasks start on Philox block boundaries when `row0` does.
const ROW_CHUNK: usize = 4096;

#[inline(always)]
fn mulhilo(a: u32, b: u32) -> (u32, u32) {
    let p = u64::from(a) * u64::from(b);
    ((p >> 32) as u32, p as u32)
}

/// Philox4x32 with 10 rounds, exactly as `philox4x32_R(10, ctr, key)` in Random123.
#[inline(always)]
pub fn philox4x32_10(ctr: [u32; 4], key: [u32; 2]) -> [u32; 4] {
    let [mut c0, mut c1, mut c2, mut c3] = ctr;
    let [mut k0, mut k1] = key;
    for round in 0..10 {
        // Random123 bumps the key between rounds: round 0 uses the key as given.
        if round > 0 {
            k0 = k0.wrapping_add(PHILOX_W0);
            k1 = k1.wrapping_add(PHILOX_W1);
        }
        let (hi0, lo0) = mulhilo(PHILOX_M0, c0);
        let (hi1, lo1) = mulhilo(PHILOX_M1, c2);
        [c0, c1, c2, c3] = [hi1 ^ c1 ^ k0, lo1, hi0 ^ c3 ^ k1, lo0];
    }
    [c0, c1, c2, c3]
}

#[inline(always)]
fn to_uniform(w: u32) -> f64 {
    f64::from(w) * TWO_POW_M32
}

#[inline(always)]
fn to_sign(w: u32) -> f64 {
    if w >> 31 == 0 {
        1.0
    } else {
        -1.0
    }
}

/// Box–Muller, cosine branch. Dropping the sine branch wastes half the work of the
/// transcendentals but makes each row depend on its own two words only.
#[inline(always)]
fn box_muller(a: u32, b: u32) -> f64 {
    let u1 = (f64::from(a) + 1.0) * TWO_POW_M32;
    let u2 = f64::from(b) * TWO_POW_M32;
    (-2.0 * gaussian::ln_positive(u1)).sqrt() * gaussian::cos_reduced(std::f64::consts::TAU * u2)
}

/// Rows per step of the vectorised normal fill (a multiple of 16: eight Philox blocks).
const NORMAL_STEP: usize = 64;

/// A virtual random matrix with `u64` rows and `u32` columns: entry (i, j) is a pure function
/// of (seed, stream, i, j). See the [module documentation](self) for the exact definition.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RandomMatrix {
    seed: u64,
    stream: u32,
}

impl RandomMatrix {
    pub fn new(seed: u64, stream: u32) -> Self {
        Self { seed, stream }
    }

    /// The four Philox words of block `q` of column `j`.
    #[inline(always)]
    fn block(&self, q: u64, j: u32) -> [u32; 4] {
        let key = [self.seed as u32, (self.seed >> 32) as u32];
        philox4x32_10([q as u32, (q >> 32) as u32, j, self.stream], key)
    }

    /// Raw 32-bit word of entry (i, j).
    pub fn u32_at(&self, i: u64, j: u32) -> u32 {
        self.block(i / 4, j)[(i % 4) as usize]
    }

    /// The 32-bit words of rows `4q .. 4q + 4` of column `j` from one Philox call:
    /// `words(q, j)[t] == u32_at(4 * q + t, j)`. Consumers that need every row of a block
    /// (the sparse projections) use this instead of four calls of [`u32_at`](Self::u32_at).
    #[inline]
    pub fn words(&self, q: u64, j: u32) -> [u32; 4] {
        self.block(q, j)
    }

    /// [`words`](Self::words) for the eight columns `j0 .. j0 + 8` at once:
    /// `words_x8(q, j0)[t] == words(q, j0 + t)` (column indices wrap at `2^32`). The eight
    /// generators run in lockstep so that the compiler vectorises them (8 lanes with AVX2);
    /// call it from code compiled for such a target to get the speed-up.
    #[inline(always)]
    pub fn words_x8(&self, q: u64, j0: u32) -> [[u32; 4]; 8] {
        let w = self.lockstep([q; 8], std::array::from_fn(|t| j0.wrapping_add(t as u32)));
        std::array::from_fn(|t| [w[0][t], w[1][t], w[2][t], w[3][t]])
    }

    /// Philox blocks `(q[t], j[t])` for eight lanes in lockstep, by word: `lockstep(q, j)[k][t]`
    /// is word `k` of block `(q[t], j[t])` (see [`words_x8`](Self::words_x8)).
    #[inline(always)]
    fn lockstep(&self, q: [u64; 8], j: [u32; 8]) -> [[u32; 8]; 4] {
        let key = [self.seed as u32, (self.seed >> 32) as u32];
        let mut out = [[0u32; 8]; 4];
        // One loop over the lanes with the whole generator inside: the loop vectoriser
        // turns it into vector code (lanes in registers, multiplies as vpmuludq).
        for t in 0..8 {
            let w = philox4x32_10([q[t] as u32, (q[t] >> 32) as u32, j[t], self.stream], key);
            for (o, w) in out.iter_mut().zip(w) {
                o[t] = w;
            }
        }
        out
    }

    /// Uniform in [0, 1), a multiple of 2^-32.
    pub fn uniform_at(&self, i: u64, j: u32) -> f64 {
        to_uniform(self.u32_at(i, j))
    }

    /// +1 or -1 with equal probability.
    pub fn rademacher_at(&self, i: u64, j: u32) -> f64 {
        to_sign(self.u32_at(i, j))
    }

    /// Standard normal.
    pub fn normal_at(&self, i: u64, j: u32) -> f64 {
        let w = self.block(i / 2, j);
        let k = 2 * (i % 2) as usize;
        box_muller(w[k], w[k + 1])
    }

    /// `out[(r, c)] = T::from_f64(self.normal_at(row0 + r, col0 + c))`.
    ///
    /// # Panics
    /// If `row0 + out.nrows()` overflows `u64` or `col0 + out.ncols()` overflows `u32`.
    pub fn fill_normal<T: Float>(&self, row0: u64, col0: u32, out: MatMut<'_, T>) {
        self.fill(row0, col0, out, |r0, j, col| {
            self.normal_segment(r0, j, col)
        });
    }

    /// `out[(r, c)] = T::from_f64(self.uniform_at(row0 + r, col0 + c))`.
    ///
    /// # Panics
    /// As [`fill_normal`](Self::fill_normal).
    pub fn fill_uniform<T: Float>(&self, row0: u64, col0: u32, out: MatMut<'_, T>) {
        self.fill(row0, col0, out, |r0, j, col| {
            self.fill_segment(r0, j, col, &|w| w.map(to_uniform))
        });
    }

    /// `out[(r, c)] = T::from_f64(self.rademacher_at(row0 + r, col0 + c))`.
    ///
    /// # Panics
    /// As [`fill_normal`](Self::fill_normal).
    pub fn fill_rademacher<T: Float>(&self, row0: u64, col0: u32, out: MatMut<'_, T>) {
        self.fill(row0, col0, out, |r0, j, col| {
            self.fill_segment(r0, j, col, &|w| w.map(to_sign))
        });
    }

    /// Fills `out` with the block starting at (row0, col0), where `segment(r0, j, col)`
    /// fills `col` with rows `r0 ..` of column `j`. Tasks are tiles of at most `ROW_CHUNK`
    /// rows of one column; since every entry is a pure function of its index, the result
    /// does not depend on the number of threads or on the tiling.
    fn fill<T: Float>(
        &self,
        row0: u64,
        col0: u32,
        out: MatMut<'_, T>,
        segment: impl Fn(u64, u32, ColMut<'_, T>) + Sync,
    ) {
        let rows_fit = u64::try_from(out.nrows())
            .ok()
            .and_then(|n| row0.checked_add(n));
        let cols_fit = u32::try_from(out.ncols())
            .ok()
            .and_then(|n| col0.checked_add(n));
        assert!(
            rows_fit.is_some(),
            "RandomMatrix: row0 + nrows overflows u64"
        );
        assert!(
            cols_fit.is_some(),
            "RandomMatrix: col0 + ncols overflows u32"
        );

        out.par_row_chunks_mut(ROW_CHUNK)
            .enumerate()
            .flat_map(|(b, tile)| {
                let r0 = row0 + (b * ROW_CHUNK) as u64;
                tile.par_col_iter_mut()
                    .enumerate()
                    .map(move |(c, col)| (r0, col0 + c as u32, col))
            })
            .for_each(|(r0, j, col)| segment(r0, j, col));
    }

    /// Normals of rows `r0 .. r0 + col.nrows()` of column `j` into `col`, `NORMAL_STEP` rows
    /// at a time in vector lanes (8 with AVX-512, 4 with AVX2: 5.6× and 2.5× faster than
    /// scalar code calling glibc, measured on 100000 × 256). Plain multiplications and
    /// additions only, so every path gives the bits of the scalar code used at the ends.
    fn normal_segment<T: Float>(&self, r0: u64, j: u32, col: ColMut<'_, T>) {
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f")
            && std::arch::is_x86_feature_detected!("avx512dq")
        {
            // SAFETY: the CPU supports these, checked just above.
            return unsafe { self.normal_segment_avx512(r0, j, col) };
        }
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx2") {
            // SAFETY: the CPU supports AVX2, checked just above.
            return unsafe { self.normal_segment_avx2(r0, j, col) };
        }
        self.normal_segment_lanes(r0, j, col);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx512f,avx512dq")]
    unsafe fn normal_segment_avx512<T: Float>(&self, r0: u64, j: u32, col: ColMut<'_, T>) {
        self.normal_segment_lanes(r0, j, col);
    }

    #[cfg(target_arch = "x86_64")]
    #[target_feature(enable = "avx2")]
    unsafe fn normal_segment_avx2<T: Float>(&self, r0: u64, j: u32, col: ColMut<'_, T>) {
        self.normal_segment_lanes(r0, j, col);
    }

    #[inline(always)]
    fn normal_segment_lanes<T: Float>(&self, r0: u64, j: u32, mut col: ColMut<'_, T>) {
        let n = col.nrows();
        // Rows before the first even row and after the last whole step: one by one.
        let head = (r0 % 2) as usize;
        let steps = n.saturating_sub(head) / NORMAL_STEP;
        let body = head + steps * NORMAL_STEP;
        for r in (0..head.min(n)).chain(body..n) {
            col[r] = T::from_f64(self.normal_at(r0 + r as u64, j));
        }
        // Words of the even rows 2q (a, b) and the odd rows 2q + 1 (c, d), block by block.
        const HALF: usize = NORMAL_STEP / 2;
        let (mut a, mut b, mut c, mut d) = ([0u32; HALF], [0u32; HALF], [0u32; HALF], [0u32; HALF]);
        let (mut even, mut odd) = ([0f64; HALF], [0f64; HALF]);
        for step in 0..steps {
            let start = head + step * NORMAL_STEP;
            let q0 = (r0 + start as u64) / 2;
            for g in 0..HALF / 8 {
                let q = q0 + 8 * g as u64;
                let [w0, w1, w2, w3] = self.lockstep(std::array::from_fn(|t| q + t as u64), [j; 8]);
                let lanes = 8 * g..8 * g + 8;
                a[lanes.clone()].copy_from_slice(&w0);
                b[lanes.clone()].copy_from_slice(&w1);
                c[lanes.clone()].copy_from_slice(&w2);
                d[lanes].copy_from_slice(&w3);
            }
            for t in 0..HALF {
                even[t] = box_muller(a[t], b[t]);
                odd[t] = box_muller(c[t], d[t]);
            }
            for t in 0..HALF {
                col[start + 2 * t] = T::from_f64(even[t]);
                col[start + 2 * t + 1] = T::from_f64(odd[t]);
            }
        }
    }

    /// Fills `col` with rows `r0 .. r0 + col.nrows()` of column `j`.
    fn fill_segment<T: Float, const K: usize>(
        &self,
        r0: u64,
        j: u32,
        mut col: ColMut<'_, T>,
        draw: &impl Fn([u32; 4]) -> [f64; K],
    ) {
        let n = col.nrows();
        if n == 0 {
            return;
        }
        let k = K as u64;
        let end = r0 + n as u64;
        // Blocks at the two ends may hold rows outside the segment (odd offsets): skip those.
        for q in r0 / k..=(end - 1) / k {
            for (t, v) in draw(self.block(q, j)).into_iter().enumerate() {
                let i = q * k + t as u64;
                if (r0..end).contains(&i) {
                    col[(i - r0) as usize] = T::from_f64(v);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use faer::Mat;

    #[test]
    fn philox_known_answers() {
        // Known-answer vectors of Random123 (D. E. Shaw Research), file tests/kat_vectors,
        // lines "philox4x32 10 CTR[4] KEY[2] EXPECTED[4]".
        let kat: [([u32; 4], [u32; 2], [u32; 4]); 3] = [
            (
                [0; 4],
                [0; 2],
                [0x6627e8d5, 0xe169c58d, 0xbc57ac4c, 0x9b00dbd8],
            ),
            (
                [u32::MAX; 4],
                [u32::MAX; 2],
                [0x408f276d, 0x41c83b0e, 0xa20bc7c6, 0x6d5451fd],
            ),
            (
                [0x243f6a88, 0x85a308d3, 0x13198a2e, 0x03707344],
                [0xa4093822, 0x299f31d0],
                [0xd16cfe09, 0x94fdcceb, 0x5001e420, 0x24126ea1],
            ),
        ];
        for (ctr, key, expected) in kat {
            assert_eq!(
                philox4x32_10(ctr, key),
                expected,
                "ctr {ctr:x?} key {key:x?}"
            );
        }
    }

    #[test]
    fn entries_follow_the_documented_layout() {
        let seed = 0x0123_4567_89ab_cdef_u64;
        let m = RandomMatrix::new(seed, 7);
        let key = [0x89ab_cdef, 0x0123_4567];
        let i: u64 = (5 << 32) + 4 * 3 + 2; // q = (5 << 30) + 3: both counter halves non-zero
        let q = i / 4;
        let w = philox4x32_10([q as u32, (q >> 32) as u32, 11, 7], key);
        assert_eq!(m.u32_at(i, 11), w[2]);
        assert_eq!(m.uniform_at(i, 11), w[2] as f64 / 2f64.powi(32));
        assert_eq!(
            m.rademacher_at(i, 11),
            if w[2] < 1 << 31 { 1.0 } else { -1.0 }
        );

        let q = i / 2;
        let w = philox4x32_10([q as u32, (q >> 32) as u32, 11, 7], key);
        let z = |a: u32, b: u32| {
            let u1 = (a as f64 + 1.0) / 2f64.powi(32);
            let u2 = b as f64 / 2f64.powi(32);
            (-2.0 * u1.ln()).sqrt() * (2.0 * std::f64::consts::PI * u2).cos()
        };
        // The math library's ln and cos against fdlibm's here (each within an ulp, glibc's
        // within half): through sqrt and the product, the normals agree to 4 ulps.
        for (got, want) in [
            (m.normal_at(i, 11), z(w[0], w[1])),
            (m.normal_at(i + 1, 11), z(w[2], w[3])),
        ] {
            let spacing = f64::from_bits(want.abs().to_bits() + 1) - want.abs();
            assert!((got - want).abs() <= 4.0 * spacing, "{got} vs {want}");
        }
    }

    #[test]
    fn extreme_words_give_finite_values() {
        assert_eq!(box_muller(u32::MAX, 0), 0.0); // u1 = 1: ln is exactly 0
        let z = box_muller(0, 0); // u1 = 2^-32: the largest radius
        assert!(z.is_finite() && (6.6..6.7).contains(&z));
        assert!(to_uniform(u32::MAX) < 1.0);
    }

    type Fill = fn(&RandomMatrix, u64, u32, MatMut<'_, f64>);
    type At = fn(&RandomMatrix, u64, u32) -> f64;
    const KINDS: [(Fill, At); 3] = [
        (RandomMatrix::fill_normal::<f64>, RandomMatrix::normal_at),
        (RandomMatrix::fill_uniform::<f64>, RandomMatrix::uniform_at),
        (
            RandomMatrix::fill_rademacher::<f64>,
            RandomMatrix::rademacher_at,
        ),
    ];

    #[test]
    fn fill_matches_entries_and_sub_blocks() {
        let m = RandomMatrix::new(42, 3);
        for (fill, at) in KINDS {
            // Odd and even offsets, odd and even sizes, and a height crossing tile boundaries.
            for (row0, col0, nrows, ncols) in [
                (0, 0, 8, 3),
                (3, 5, 37, 4),
                (2, 0, 10, 1),
                (1, 9, 1, 2),
                (5, 1, 2 * ROW_CHUNK + 3, 3),
            ] {
                let mut big = Mat::<f64>::zeros(nrows, ncols);
                fill(&m, row0, col0, big.as_mut());
                for c in 0..ncols {
                    for r in 0..nrows {
                        let want = at(&m, row0 + r as u64, col0 + c as u32);
                        assert_eq!(big[(r, c)], want, "entry ({r}, {c}) at ({row0}, {col0})");
                    }
                }
                // A sub-block filled on its own equals the same block of the bigger fill.
                let (r1, c1) = (nrows / 3, ncols / 2);
                let (h, w) = (nrows - r1 - nrows / 4, ncols - c1);
                let mut sub = Mat::<f64>::zeros(h, w);
                fill(&m, row0 + r1 as u64, col0 + c1 as u32, sub.as_mut());
                assert_eq!(sub.as_ref(), big.as_ref().submatrix(r1, c1, h, w));
            }
        }
    }

    #[test]
    fn fill_writes_into_strided_views_and_f32() {
        let m = RandomMatrix::new(9, 0);
        // A view with a row stride of 2: the transpose of a row-major block.
        let mut backing = Mat::<f64>::zeros(6, 11);
        m.fill_normal(1, 2, backing.as_mut().transpose_mut());
        let mut f32s = Mat::<f32>::zeros(11, 6);
        m.fill_normal(1, 2, f32s.as_mut());
        for r in 0..11 {
            for c in 0..6 {
                let want = m.normal_at(1 + r as u64, 2 + c as u32);
                assert_eq!(backing[(c, r)], want);
                assert_eq!(f32s[(r, c)], want as f32);
            }
        }
    }

    #[test]
    fn result_does_not_depend_on_thread_count() {
        let m = RandomMatrix::new(1234, 1);
        let mut many = Mat::<f64>::zeros(3 * ROW_CHUNK + 1, 5);
        m.fill_normal(7, 0, many.as_mut());
        let pool = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap();
        let mut one = Mat::<f64>::zeros(3 * ROW_CHUNK + 1, 5);
        pool.install(|| m.fill_normal(7, 0, one.as_mut()));
        assert_eq!(many, one);
    }

    #[test]
    fn seeds_streams_and_far_indices_differ() {
        let draw = |seed: u64, stream: u32, row0: u64| {
            let mut out = Mat::<f64>::zeros(16, 4);
            RandomMatrix::new(seed, stream).fill_uniform(row0, 0, out.as_mut());
            out
        };
        let base = draw(5, 0, 0);
        // Each input word of the generator must matter: the stream, both seed halves, both
        // halves of the row block index.
        for other in [
            draw(5, 1, 0),
            draw(6, 0, 0),
            draw(5 + (1 << 32), 0, 0),
            draw(5, 0, 1 << 34),
        ] {
            let same = (0..16).flat_map(|r| (0..4).map(move |c| (r, c)));
            assert!(same.filter(|&(r, c)| base[(r, c)] == other[(r, c)]).count() == 0);
        }
        // Columns differ from each other too.
        assert_ne!(base.col(0), base.col(1));
    }

    /// Mean and (population) variance of all entries.
    fn moments(a: &Mat<f64>) -> (f64, f64, usize) {
        let n = a.nrows() * a.ncols();
        let v: Vec<f64> = (0..a.ncols())
            .flat_map(|c| (0..a.nrows()).map(move |r| (r, c)))
            .map(|rc| a[rc])
            .collect();
        let mean = v.iter().sum::<f64>() / n as f64;
        let var = v.iter().map(|x| (x - mean).powi(2)).sum::<f64>() / n as f64;
        (mean, var, n)
    }

    #[test]
    fn normal_moments() {
        let mut a = Mat::<f64>::zeros(50_001, 4); // odd height: both Box–Muller words used
        RandomMatrix::new(2024, 0).fill_normal(0, 0, a.as_mut());
        let (mean, var, n) = moments(&a);
        let n = n as f64;
        // Standard errors: 1/sqrt(n) for the mean, sqrt(2/n) for the variance of normals.
        assert!(mean.abs() < 4.0 / n.sqrt(), "mean {mean}");
        assert!((var - 1.0).abs() < 4.0 * (2.0 / n).sqrt(), "variance {var}");
        // Shape: P(|z| < 1) = 0.682689...
        let p = 0.682_689_492_137_085_9;
        let inside = (0..4)
            .flat_map(|c| (0..a.nrows()).map(move |r| (r, c)))
            .filter(|&rc| a[rc].abs() < 1.0)
            .count();
        let frac = inside as f64 / n;
        assert!(
            (frac - p).abs() < 4.0 * (p * (1.0 - p) / n).sqrt(),
            "P(|z|<1) = {frac}"
        );
    }

    #[test]
    fn uniform_moments_and_buckets() {
        let mut a = Mat::<f64>::zeros(50_003, 4);
        RandomMatrix::new(77, 2).fill_uniform(1, 0, a.as_mut());
        let (mean, var, n) = moments(&a);
        let nf = n as f64;
        assert!(
            (mean - 0.5).abs() < 4.0 * (1.0 / 12.0 / nf).sqrt(),
            "mean {mean}"
        );
        assert!((var - 1.0 / 12.0).abs() < 1e-3, "variance {var}");

        // Chi-square over 100 equal buckets: 99 degrees of freedom, mean 99, sd sqrt(198) ~ 14.
        let mut counts = [0usize; 100];
        for c in 0..4 {
            for r in 0..a.nrows() {
                let u = a[(r, c)];
                assert!((0.0..1.0).contains(&u));
                counts[(u * 100.0) as usize] += 1;
            }
        }
        let expected = nf / 100.0;
        let chi2: f64 = counts
            .iter()
            .map(|&k| (k as f64 - expected).powi(2) / expected)
            .sum();
        assert!(chi2 < 99.0 + 4.0 * 198f64.sqrt(), "chi-square {chi2}");
    }

    #[test]
    fn rademacher_mean() {
        let mut a = Mat::<f64>::zeros(50_000, 4);
        RandomMatrix::new(31337, 5).fill_rademacher(2, 3, a.as_mut());
        let (mean, var, n) = moments(&a);
        assert!(mean.abs() < 4.0 / (n as f64).sqrt(), "mean {mean}");
        assert!((var - 1.0).abs() < 1e-3);
        assert!((0..4).all(|c| (0..a.nrows()).all(|r| a[(r, c)].abs() == 1.0)));
    }

    #[test]
    fn vector_paths_give_the_scalar_bits() {
        // Every instruction-set path of the normal fill against the plain one (scalar code
        // for the ends, the compiler's choice for the middle), odd and even starts.
        let m = RandomMatrix::new(0x5eed, 4);
        for (r0, n) in [(0u64, 1000usize), (7, 333), (1 << 40, 65)] {
            let mut plain = Mat::<f64>::zeros(n, 1);
            m.normal_segment_lanes(r0, 3, plain.as_mut().col_mut(0));
            for (r, v) in plain.col(0).iter().enumerate() {
                assert_eq!(*v, m.normal_at(r0 + r as u64, 3));
            }
            #[cfg(target_arch = "x86_64")]
            {
                let mut fast = Mat::<f64>::zeros(n, 1);
                if std::arch::is_x86_feature_detected!("avx2") {
                    // SAFETY: checked just above.
                    unsafe { m.normal_segment_avx2(r0, 3, fast.as_mut().col_mut(0)) };
                    assert_eq!(fast, plain);
                }
                if std::arch::is_x86_feature_detected!("avx512f")
                    && std::arch::is_x86_feature_detected!("avx512dq")
                {
                    // SAFETY: checked just above.
                    unsafe { m.normal_segment_avx512(r0, 3, fast.as_mut().col_mut(0)) };
                    assert_eq!(fast, plain);
                }
            }
        }
    }

    #[test]
    fn words_x8_matches_words() {
        let m = RandomMatrix::new(0xdead_beef_0123_4567, 9);
        for (q, j0) in [(0u64, 0u32), (12_345, 7), (1 << 33, u32::MAX - 3)] {
            let w8 = m.words_x8(q, j0);
            for t in 0..8u32 {
                assert_eq!(w8[t as usize], m.words(q, j0.wrapping_add(t)));
            }
        }
    }
}
