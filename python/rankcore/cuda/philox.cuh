// Philox4x32-10 and the random-matrix layout of rust/rankcore/src/rng/mod.rs, so that entry
// (i, j) of a random matrix is the same function of (seed, stream, i, j) on both devices.
//
//   key     = [seed as u32, seed >> 32]
//   counter = [q as u32, q >> 32, j, stream]
//
// 32-bit words (uniforms, signs, the sparse projection families): q = i / 4, word i % 4.
// Normals: q = i / 2, words (0, 1) for even i and (2, 3) for odd i, Box-Muller (cosine
// branch) in double precision. Words are bit-identical to the CPU's; normals go through
// CUDA's log and cos, which may differ from the CPU's (fdlibm's algorithms, vectorised) in the
// last ulps.
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

// Box-Muller, cosine branch, all in double: u1 in (0, 1], u2 in [0, 1).
__device__ __forceinline__ double rk_box_muller(rk_u32 a, rk_u32 b) {
    const double two_m32 = 2.3283064365386962890625e-10;  // 2^-32
    const double tau = 6.283185307179586;                   // 2*pi rounded to double
    const double u1 = ((double)a + 1.0) * two_m32;
    const double u2 = (double)b * two_m32;
    return sqrt(-2.0 * log(u1)) * cos(tau * u2);
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
