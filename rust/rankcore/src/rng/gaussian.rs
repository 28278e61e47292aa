//! Box–Muller without calls into the math library, so that a batch of normals vectorises.
//!
//! `z = sqrt(-2 ln u1) · cos(x)` with `x = TAU · u2` (both as in the [module
//! documentation](super)). glibc's `ln` and `cos` are scalar calls (about 20 ns per normal
//! here, a third of a small sparse randomized SVD). The two functions below compute the same
//! values with the classic fdlibm algorithms (Sun Microsystems, 1993: `e_log.c`, the
//! Cody–Waite branch of `e_rem_pio2.c`, `k_sin.c`, `k_cos.c`, their coefficients), written
//! without branches: every input takes the same instructions, so a loop over lanes compiles
//! to vector code. Both are within one ulp of the exact value, like glibc's, so the normals
//! agree with the libm formula to within an ulp or two (most are bit-identical: the tests
//! below bound the fraction that are not).
//!
//! Plain multiplications and additions only (no fused multiply-add, which Rust never
//! introduces by itself), so scalar and vector code give the same bits on every CPU, and
//! the CUDA kernel (`python/rankcore/cuda/philox.cuh`), which performs the same operations in
//! the same order with `__dadd_rn` & co., gives them on the GPU: change both together.

// The coefficients are written as fdlibm publishes them (more digits than a double holds;
// each parses to the intended double), so that they can be checked against the source.
#![allow(clippy::excessive_precision)]

/// `ln x` for positive normal `x` (here `x = u1 ∈ [2⁻³², 1]`): fdlibm's reduction to
/// `x = 2ᵏ (1 + f)` with `1 + f ∈ [√2/2, √2)`, then `ln(1 + f) = 2 atanh(f / (2 + f))` by
/// its degree-14 minimax polynomial in `s = f / (2 + f)`. Error below one ulp.
#[inline(always)]
pub(crate) fn ln_positive(x: f64) -> f64 {
    const LN2_HI: f64 = 6.931_471_803_691_238_164_90e-1; // ln 2, 32 leading bits
    const LN2_LO: f64 = 1.908_214_929_270_587_700_02e-10; // ln 2 - LN2_HI
    const LG1: f64 = 6.666_666_666_666_735_130e-1;
    const LG2: f64 = 3.999_999_999_940_941_908e-1;
    const LG3: f64 = 2.857_142_874_366_239_149e-1;
    const LG4: f64 = 2.222_219_843_214_978_396e-1;
    const LG5: f64 = 1.818_357_216_161_805_012e-1;
    const LG6: f64 = 1.531_383_769_920_937_332e-1;
    const LG7: f64 = 1.479_819_860_511_658_591e-1;
    // High word of √2/2: shifting the exponent's origin there puts 1 + f in [√2/2, √2).
    const SQRT_HALF_HI: u32 = 0x3fe6_a09e;
    let bits = x.to_bits();
    let hx = ((bits >> 32) as u32).wrapping_add(0x3ff0_0000 - SQRT_HALF_HI);
    let k = (hx >> 20) as i32 - 0x3ff;
    let hx = (hx & 0x000f_ffff) + SQRT_HALF_HI;
    let m = f64::from_bits((u64::from(hx) << 32) | (bits & 0xffff_ffff));
    let f = m - 1.0;
    let hfsq = 0.5 * f * f;
    let s = f / (2.0 + f);
    let z = s * s;
    let w = z * z;
    let t1 = w * (LG2 + w * (LG4 + w * LG6));
    let t2 = z * (LG1 + w * (LG3 + w * (LG5 + w * LG7)));
    let dk = f64::from(k);
    s * (hfsq + (t2 + t1)) + dk * LN2_LO - hfsq + f + dk * LN2_HI
}

/// `cos x` for `0 ≤ x < 2π + π/4`: `x = n·π/2 + y` with `|y| ≤ π/4` by Cody–Waite reduction
/// against π/2 held as two 33-bit pieces and a 53-bit tail (about 119 bits: for these
/// arguments `|y|` is either 0 or at least 6e-17, so `y` keeps full precision), then
/// fdlibm's polynomials for `sin` and `cos` on `[-π/4, π/4]` with the reduction's tail.
/// Error below one ulp.
#[inline(always)]
pub(crate) fn cos_reduced(x: f64) -> f64 {
    const INV_PIO2: f64 = std::f64::consts::FRAC_2_PI;
    const PIO2_1: f64 = 1.570_796_326_734_125_614_17; // π/2, first 33 bits
    const PIO2_2: f64 = 6.077_100_506_303_965_976_60e-11; // next 33 bits
    const PIO2_2T: f64 = 2.022_266_248_795_950_631_54e-21; // π/2 - PIO2_1 - PIO2_2
                                                           // Adding and subtracting 1.5·2⁵² rounds to the nearest integer.
    const TO_INT: f64 = 1.5 / f64::EPSILON;
    let fnq = x * INV_PIO2 + TO_INT - TO_INT;
    let n = fnq as i32; // 0 ..= 4
                        // n·PIO2_1 and n·PIO2_2 are exact (33-bit pieces, n < 8), and so is x - n·PIO2_1
                        // (Sterbenz); the rounding error of the second subtraction is recovered exactly (Knuth's
                        // TwoSum) and carried into the tail.
    let t = x - fnq * PIO2_1;
    let w = fnq * PIO2_2;
    let r = t - w;
    let back = r - t;
    let err = (t - (r - back)) + (-w - back); // t - w = r + err exactly
    let tail = fnq * PIO2_2T - err;
    let y0 = r - tail;
    let y1 = (r - y0) - tail;
    let (s, c) = (sin_kernel(y0, y1), cos_kernel(y0, y1));
    // cos(nπ/2 + y) = cos y, -sin y, -cos y, sin y for n mod 4 = 0, 1, 2, 3.
    let v = if n & 1 == 0 { c } else { s };
    if (n + 1) & 2 == 0 {
        v
    } else {
        -v
    }
}

/// `sin(x + y)` for `|x| ≤ π/4`, `y` the tail of `x` (fdlibm's `__kernel_sin`).
#[inline(always)]
fn sin_kernel(x: f64, y: f64) -> f64 {
    const S1: f64 = -1.666_666_666_666_663_243_48e-1;
    const S2: f64 = 8.333_333_333_322_489_461_24e-3;
    const S3: f64 = -1.984_126_982_985_794_931_34e-4;
    const S4: f64 = 2.755_731_370_707_006_767_89e-6;
    const S5: f64 = -2.505_076_025_340_686_341_95e-8;
    const S6: f64 = 1.589_690_995_211_550_102_21e-10;
    let z = x * x;
    let w = z * z;
    let r = S2 + z * (S3 + z * S4) + z * w * (S5 + z * S6);
    let v = z * x;
    x - ((z * (0.5 * y - v * r) - y) - v * S1)
}

/// `cos(x + y)` for `|x| ≤ π/4`, `y` the tail of `x` (fdlibm's `__kernel_cos` in the form
/// of FreeBSD and musl: `1 - z/2` split so that its rounding error is added back).
#[inline(always)]
fn cos_kernel(x: f64, y: f64) -> f64 {
    const C1: f64 = 4.166_666_666_666_660_190_37e-2;
    const C2: f64 = -1.388_888_888_887_410_957_49e-3;
    const C3: f64 = 2.480_158_728_947_672_941_78e-5;
    const C4: f64 = -2.755_731_435_139_066_330_35e-7;
    const C5: f64 = 2.087_572_321_298_174_827_90e-9;
    const C6: f64 = -1.135_964_755_778_819_482_65e-11;
    let z = x * x;
    let w = z * z;
    let r = z * (C1 + z * (C2 + z * C3)) + w * w * (C4 + z * (C5 + z * C6));
    let hz = 0.5 * z;
    let w = 1.0 - hz;
    w + (((1.0 - w) - hz) + (z * r - x * y))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rng::RandomMatrix;

    /// Distance in units in the last place of `want` (0 when equal).
    fn ulps(got: f64, want: f64) -> f64 {
        if got == want {
            return 0.0;
        }
        let spacing = f64::from_bits(want.abs().to_bits() + 1) - want.abs();
        (got - want).abs() / spacing
    }

    #[test]
    fn ln_matches_the_math_library_to_an_ulp() {
        // The Box–Muller inputs (a + 1)·2⁻³², from both ends and the middle, and random ones.
        let rng = RandomMatrix::new(11, 0);
        let mut words: Vec<u32> = (0..200_000u64).map(|i| rng.u32_at(i, 0)).collect();
        words.extend((0..2000).flat_map(|t| [t, u32::MAX - t, (1 << 31) + t, (1 << 31) - t]));
        let (mut worst, mut differ) = (0.0f64, 0usize);
        for a in words {
            let u1 = (f64::from(a) + 1.0) * super::super::TWO_POW_M32;
            let e = ulps(ln_positive(u1), u1.ln());
            worst = worst.max(e);
            differ += usize::from(e > 0.0);
        }
        // fdlibm's log is within an ulp, glibc's nearly correctly rounded: they differ by
        // one ulp on about 7 % of these inputs, never by more.
        assert!(worst <= 1.0, "worst {worst} ulp");
        assert!(differ < 208_000 / 10, "{differ} of 208000 differ from libm");
        assert_eq!(ln_positive(1.0), 0.0);
        for x in [1e-300, 0.1, 0.5, 0.75, 2.0, 3.0, 1e10, f64::MAX] {
            assert!(ulps(ln_positive(x), x.ln()) <= 1.0, "ln {x}");
        }
    }

    #[test]
    fn cos_matches_the_math_library_to_an_ulp() {
        let tau_u2 = |b: u32| std::f64::consts::TAU * (f64::from(b) * super::super::TWO_POW_M32);
        let rng = RandomMatrix::new(12, 0);
        let mut words: Vec<u32> = (0..200_000u64).map(|i| rng.u32_at(i, 1)).collect();
        // Next to multiples of π/2 (where cos is near 0 or ±1) and the ends.
        for q in 0..=4u64 {
            let centre = (q << 30) as i64;
            words.extend((-2000..2000).map(|d| (centre + d).clamp(0, u32::MAX as i64) as u32));
        }
        let (mut worst, mut differ) = (0.0f64, 0usize);
        for &b in &words {
            let x = tau_u2(b);
            let e = ulps(cos_reduced(x), x.cos());
            worst = worst.max(e);
            differ += usize::from(e > 0.0);
        }
        // One ulp apart on about 3 % of these inputs (fdlibm's kernels are within an ulp,
        // glibc's nearly correctly rounded), never more.
        assert!(worst <= 1.0, "worst {worst} ulp");
        assert!(
            differ < words.len() / 20,
            "{differ} of {} differ from libm",
            words.len()
        );
        assert_eq!(cos_reduced(0.0), 1.0);
        // The argument closest to π/2 among the inputs: cos is its distance to π/2.
        let x = tau_u2(1 << 30);
        assert!(ulps(cos_reduced(x), x.cos()) <= 1.0);
    }
}
