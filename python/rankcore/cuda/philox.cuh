// Philox4x32-10 and the random-matrix layout of rust/rankcore/src/rng/mod.rs, so that entry
// (i, j) of a random matrix is the same function of (seed, stream, i, j) on both devices.
//
//   key     = [seed as u32, seed >> 32]
//   counter = [q as u32, q >> 32, j, stream]
//
// 32-bit words (uniforms, signs, the sparse projection families): q = i / 4, word i % 4.
// Normals: q = i / 2, words (0, 1) for even i and (2, 3) for odd i, Box-Muller (cosine
// branch) in double precision, with the CPU's own ln and cos (below): words and normals
// are bit-identical to the CPU's.
#pragma once

#define RK_PHILOX_M0 0xD2511F53u
#define RK_PHILOX_M1 0xCD9E8D57u
#define RK_PHILOX_W0 0x9E3779B9u
#define RK_PHILOX_W1 0xBB67AE85u

typedef unsigned int rk_u32;
typedef unsigned long long rk_u64;

// Philox4x32 with 10 rounds, as philox4x32_R(10, ctr, key) in Random123.
__device__ __forceinline__ uint4 rk_philox(uint4 c, rk_u32 k0, rk_u32 k1) {
#pragma unroll
    for (int round = 0; round < 10; ++round) {
        if (round > 0) {
            k0 += RK_PHILOX_W0;
            k1 += RK_PHILOX_W1;
        }
        const rk_u32 hi0 = __umulhi(RK_PHILOX_M0, c.x), lo0 = RK_PHILOX_M0 * c.x;
        const rk_u32 hi1 = __umulhi(RK_PHILOX_M1, c.z), lo1 = RK_PHILOX_M1 * c.z;
        c = make_uint4(hi1 ^ c.y ^ k0, lo1, hi0 ^ c.w ^ k1, lo0);
    }
    return c;
}

// The four words of block q of column j.
__device__ __forceinline__ uint4 rk_block(rk_u64 seed, rk_u32 stream, rk_u64 q, rk_u32 j) {
    return rk_philox(make_uint4((rk_u32)q, (rk_u32)(q >> 32), j, stream), (rk_u32)seed,
                     (rk_u32)(seed >> 32));
}

__device__ __forceinline__ rk_u32 rk_word_of(uint4 w, int t) {
    return t == 0 ? w.x : t == 1 ? w.y : t == 2 ? w.z : w.w;
}

// The 32-bit word of entry (i, j).
__device__ __forceinline__ rk_u32 rk_word(rk_u64 seed, rk_u32 stream, rk_u64 i, rk_u32 j) {
    return rk_word_of(rk_block(seed, stream, i >> 2, j), (int)(i & 3));
}

// ln x for positive normal x: the CPU's branch-free fdlibm algorithm
// (rust/rankcore/src/rng/gaussian.rs, same constants, same order of operations). Every
// operation is rounded on its own (__dadd_rn & co.: NVRTC would otherwise fuse products and
// sums into FMAs), so the result is bit-identical to the CPU's.
__device__ __forceinline__ double rk_ln_positive(double x) {
    const double ln2_hi = 6.93147180369123816490e-01, ln2_lo = 1.90821492927058770002e-10;
    const double lg1 = 6.666666666666735130e-01, lg2 = 3.999999999940941908e-01;
    const double lg3 = 2.857142874366239149e-01, lg4 = 2.222219843214978396e-01;
    const double lg5 = 1.818357216161805012e-01, lg6 = 1.531383769920937332e-01;
    const double lg7 = 1.479819860511658591e-01;
    const rk_u32 sqrt_half_hi = 0x3fe6a09eu;
    const rk_u64 bits = (rk_u64)__double_as_longlong(x);
    rk_u32 hx = (rk_u32)(bits >> 32) + (0x3ff00000u - sqrt_half_hi);
    const int k = (int)(hx >> 20) - 0x3ff;
    hx = (hx & 0x000fffffu) + sqrt_half_hi;
    const double m = __longlong_as_double((long long)(((rk_u64)hx << 32) | (bits & 0xffffffffull)));
    const double f = __dsub_rn(m, 1.0);
    const double hfsq = __dmul_rn(__dmul_rn(0.5, f), f);
    const double s = __ddiv_rn(f, __dadd_rn(2.0, f));
    const double z = __dmul_rn(s, s);
    const double w = __dmul_rn(z, z);
    const double t1 = __dmul_rn(w, __dadd_rn(lg2, __dmul_rn(w, __dadd_rn(lg4, __dmul_rn(w, lg6)))));
    const double t2 = __dmul_rn(
        z, __dadd_rn(lg1, __dmul_rn(w, __dadd_rn(lg3, __dmul_rn(w, __dadd_rn(lg5, __dmul_rn(w, lg7)))))));
    const double dk = (double)k;
    double r = __dmul_rn(s, __dadd_rn(hfsq, __dadd_rn(t2, t1)));
    r = __dadd_rn(r, __dmul_rn(dk, ln2_lo));
    r = __dsub_rn(r, hfsq);
    r = __dadd_rn(r, f);
    return __dadd_rn(r, __dmul_rn(dk, ln2_hi));
}

// sin(x + y) and cos(x + y) for |x| <= pi/4, y the tail of x (fdlibm's kernels, as on the CPU).
__device__ __forceinline__ double rk_sin_kernel(double x, double y) {
    const double s1 = -1.66666666666666324348e-01, s2 = 8.33333333332248946124e-03;
    const double s3 = -1.98412698298579493134e-04, s4 = 2.75573137070700676789e-06;
    const double s5 = -2.50507602534068634195e-08, s6 = 1.58969099521155010221e-10;
    const double z = __dmul_rn(x, x);
    const double w = __dmul_rn(z, z);
    const double r = __dadd_rn(__dadd_rn(s2, __dmul_rn(z, __dadd_rn(s3, __dmul_rn(z, s4)))),
                               __dmul_rn(__dmul_rn(z, w), __dadd_rn(s5, __dmul_rn(z, s6))));
    const double v = __dmul_rn(z, x);
    const double inner = __dsub_rn(__dmul_rn(z, __dsub_rn(__dmul_rn(0.5, y), __dmul_rn(v, r))), y);
    return __dsub_rn(x, __dsub_rn(inner, __dmul_rn(v, s1)));
}

__device__ __forceinline__ double rk_cos_kernel(double x, double y) {
    const double c1 = 4.16666666666666019037e-02, c2 = -1.38888888888741095749e-03;
    const double c3 = 2.48015872894767294178e-05, c4 = -2.75573143513906633035e-07;
    const double c5 = 2.08757232129817482790e-09, c6 = -1.13596475577881948265e-11;
    const double z = __dmul_rn(x, x);
    const double w = __dmul_rn(z, z);
    const double r = __dadd_rn(__dmul_rn(z, __dadd_rn(c1, __dmul_rn(z, __dadd_rn(c2, __dmul_rn(z, c3))))),
                               __dmul_rn(__dmul_rn(w, w), __dadd_rn(c4, __dmul_rn(z, __dadd_rn(c5, __dmul_rn(z, c6))))));
    const double hz = __dmul_rn(0.5, z);
    const double one_minus = __dsub_rn(1.0, hz);
    return __dadd_rn(one_minus, __dadd_rn(__dsub_rn(__dsub_rn(1.0, one_minus), hz),
                                          __dsub_rn(__dmul_rn(z, r), __dmul_rn(x, y))));
}

// cos x for 0 <= x < 2 pi + pi/4: Cody-Waite reduction by pi/2 (two 33-bit pieces and a tail,
// the second subtraction's rounding error recovered by TwoSum), then the kernels.
__device__ __forceinline__ double rk_cos_reduced(double x) {
    const double inv_pio2 = 6.36619772367581382433e-01;
    const double pio2_1 = 1.57079632673412561417e+00, pio2_2 = 6.07710050630396597660e-11;
    const double pio2_2t = 2.02226624879595063154e-21;
    const double to_int = 6755399441055744.0;  // 1.5 * 2^52
    const double fnq = __dsub_rn(__dadd_rn(__dmul_rn(x, inv_pio2), to_int), to_int);
    const int n = (int)fnq;
    const double t = __dsub_rn(x, __dmul_rn(fnq, pio2_1));
    const double w = __dmul_rn(fnq, pio2_2);
    const double r = __dsub_rn(t, w);
    const double back = __dsub_rn(r, t);
    const double err = __dadd_rn(__dsub_rn(t, __dsub_rn(r, back)), __dsub_rn(-w, back));
    const double tail = __dsub_rn(__dmul_rn(fnq, pio2_2t), err);
    const double y0 = __dsub_rn(r, tail);
    const double y1 = __dsub_rn(__dsub_rn(r, y0), tail);
    const double v = (n & 1) == 0 ? rk_cos_kernel(y0, y1) : rk_sin_kernel(y0, y1);
    return ((n + 1) & 2) == 0 ? v : -v;
}

// Box-Muller, cosine branch, all in double: u1 in (0, 1], u2 in [0, 1).
__device__ __forceinline__ double rk_box_muller(rk_u32 a, rk_u32 b) {
    const double two_m32 = 2.3283064365386962890625e-10;  // 2^-32
    const double tau = 6.283185307179586;                   // 2*pi rounded to double
    const double u1 = __dmul_rn(__dadd_rn((double)a, 1.0), two_m32);
    const double u2 = __dmul_rn((double)b, two_m32);
    return __dmul_rn(__dsqrt_rn(__dmul_rn(-2.0, rk_ln_positive(u1))), rk_cos_reduced(__dmul_rn(tau, u2)));
}

// Standard normal entry (i, j).
__device__ __forceinline__ double rk_normal(rk_u64 seed, rk_u32 stream, rk_u64 i, rk_u32 j) {
    const uint4 w = rk_block(seed, stream, i >> 1, j);
    return (i & 1) ? rk_box_muller(w.z, w.w) : rk_box_muller(w.x, w.y);
}

// Sparse-family entry of word w for threshold t = ceil(density * 2^31): 0, +1 or -1
// (projection::decode_entry): non-zero iff (w >> 1) < t, negative iff bit 0 is set.
__device__ __forceinline__ int rk_sparse_sign(rk_u32 w, rk_u64 t) {
    if ((rk_u64)(w >> 1) >= t) return 0;
    return (w & 1u) ? -1 : 1;
}
