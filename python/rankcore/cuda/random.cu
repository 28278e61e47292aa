// Random matrices addressed by index (rust/rankcore/src/rng/mod.rs) and the non-zero lists of
// the sparse projection families (rust/rankcore/src/projection.rs). Instantiations launched
// by rankcore._gpu are listed in random.names.
#include "philox.cuh"

// out[r * ncols + c] = T(normal(row0 + r, col0 + c)) * scale, out C-ordered (nrows, ncols).
// One thread per Philox block (two rows) of one column.
template <typename T>
__global__ void rk_fill_normal(T* __restrict__ out, rk_u64 nrows, rk_u32 ncols, rk_u64 row0,
                               rk_u32 col0, rk_u64 seed, rk_u32 stream, T scale) {
    const rk_u64 q0 = row0 >> 1;
    const rk_u64 nq = ((row0 + nrows - 1) >> 1) - q0 + 1;
    const rk_u64 total = nq * ncols;
    for (rk_u64 t = blockIdx.x * (rk_u64)blockDim.x + threadIdx.x; t < total;
         t += (rk_u64)gridDim.x * blockDim.x) {
        const rk_u32 c = (rk_u32)(t % ncols);
        const rk_u64 q = q0 + t / ncols;
        const uint4 w = rk_block(seed, stream, q, col0 + c);
        const rk_u64 i0 = 2 * q, i1 = 2 * q + 1;
        if (i0 >= row0 && i0 < row0 + nrows)
            out[(i0 - row0) * ncols + c] = (T)rk_box_muller(w.x, w.y) * scale;
        if (i1 >= row0 && i1 < row0 + nrows)
            out[(i1 - row0) * ncols + c] = (T)rk_box_muller(w.z, w.w) * scale;
    }
}

// out[r * ncols + c] = word(row0 + r, col0 + c), the raw 32-bit words (uniforms and signs
// are exact functions of them).
__global__ void rk_fill_words(rk_u32* __restrict__ out, rk_u64 nrows, rk_u32 ncols, rk_u64 row0,
                              rk_u32 col0, rk_u64 seed, rk_u32 stream) {
    const rk_u64 total = nrows * ncols;
    for (rk_u64 t = blockIdx.x * (rk_u64)blockDim.x + threadIdx.x; t < total;
         t += (rk_u64)gridDim.x * blockDim.x) {
        const rk_u64 r = t / ncols;
        const rk_u32 c = (rk_u32)(t % ncols);
        out[t] = rk_word(seed, stream, row0 + r, col0 + c);
    }
}

// Non-zeros of the sparse-family matrix R (k components x d features; R[c, j] is decoded
// from word(j, c)), as lists sorted by the inner index, one list per outer index and chunk
// of `chunk` inner indices (a multiple of 4). Entries are signed: +(inner + 1) for a
// positive entry, -(inner + 1) for a negative one.
//
// by_component: outer = component c (k lists), inner = feature j.
// otherwise:    outer = feature j (d lists), inner = component c.
//
// Called twice: with offsets == nullptr it writes counts[outer * nchunks + chunk]; then,
// with the exclusive prefix sums of the counts in offsets, it writes the entries.
__global__ void rk_sparse_lists(rk_u64 seed, rk_u32 stream, rk_u64 threshold, rk_u32 k,
                                rk_u64 d, bool by_component, rk_u64 chunk,
                                int* __restrict__ counts, const long long* __restrict__ offsets,
                                int* __restrict__ entries) {
    const rk_u64 n_inner = by_component ? d : (rk_u64)k;
    const rk_u64 n_outer = by_component ? (rk_u64)k : d;
    const rk_u64 nchunks = (n_inner + chunk - 1) / chunk;
    const rk_u64 total = n_outer * nchunks;
    for (rk_u64 t = blockIdx.x * (rk_u64)blockDim.x + threadIdx.x; t < total;
         t += (rk_u64)gridDim.x * blockDim.x) {
        const rk_u64 outer = t / nchunks;
        const rk_u64 lo = (t % nchunks) * chunk;
        const rk_u64 hi = min(lo + chunk, n_inner);
        long long pos = offsets ? offsets[t] : 0;
        int count = 0;
        if (by_component) {
            // One Philox block gives features 4q .. 4q + 3 of component `outer`.
            for (rk_u64 q = lo >> 2; 4 * q < hi; ++q) {
                const uint4 w = rk_block(seed, stream, q, (rk_u32)outer);
                for (int s = 0; s < 4; ++s) {
                    const rk_u64 j = 4 * q + s;
                    if (j < lo || j >= hi) continue;
                    const int sign = rk_sparse_sign(rk_word_of(w, s), threshold);
                    if (sign == 0) continue;
                    if (offsets) entries[pos++] = sign * (int)(j + 1);
                    ++count;
                }
            }
        } else {
            for (rk_u64 c = lo; c < hi; ++c) {
                const int sign = rk_sparse_sign(rk_word(seed, stream, outer, (rk_u32)c), threshold);
                if (sign == 0) continue;
                if (offsets) entries[pos++] = sign * (int)(c + 1);
                ++count;
            }
        }
        if (!offsets) counts[t] = count;
    }
}
