// k-medoids on the device: dissimilarity tiles computed on the fly from features, and the
// FastPAM1 swap evaluation as a reduction over points. Launched by rankcore._gpu.kmedoids;
// the instantiations it launches are listed in kmedoids.names.
//
// Distances are the CPU's (rust/rankcore/src/kmedoids/dissimilarity.rs) bit for bit: the sum
// over the features l = 0, 1, ... in that order of the metric's term (euclidean and squared
// euclidean: fma(t, t, acc) with t = x_l - y_l; manhattan: acc + |x_l - y_l|; cosine:
// fma(x_l, y_l, acc)), then the same finish (sqrt; cosine 1 - acc / (|x| |y|) clamped to
// [0, 2], 1 against a zero vector). fma, sqrt and division are correctly rounded on both
// devices, and no product here is left for the compiler to contract, so integer data gives
// exact distances and real data the CPU's bits.

// Output tile of rk_km_distances: RK_KM_TILE rows x RK_KM_TILE columns per block of 256
// threads (16 x 16, each 4 x 4 outputs), features staged RK_KM_CHUNK at a time.
#define RK_KM_TILE 64
#define RK_KM_CHUNK 16

__device__ __forceinline__ float rk_km_fma(float a, float b, float c) { return fmaf(a, b, c); }
__device__ __forceinline__ double rk_km_fma(double a, double b, double c) { return fma(a, b, c); }
__device__ __forceinline__ float rk_km_abs(float a) { return fabsf(a); }
__device__ __forceinline__ double rk_km_abs(double a) { return fabs(a); }
__device__ __forceinline__ float rk_km_sqrt(float a) { return sqrtf(a); }
__device__ __forceinline__ double rk_km_sqrt(double a) { return sqrt(a); }

// Metric codes (template argument M): the CPU's Metric enum.
#define RK_KM_EUCLIDEAN 0
#define RK_KM_SQEUCLIDEAN 1
#define RK_KM_MANHATTAN 2
#define RK_KM_COSINE 3

template <int M, typename T>
__device__ __forceinline__ T rk_km_term(T a, T b, T acc) {
    if (M == RK_KM_MANHATTAN) return acc + rk_km_abs(a - b);
    if (M == RK_KM_COSINE) return rk_km_fma(a, b, acc);
    const T t = a - b;
    return rk_km_fma(t, t, acc);
}

template <int M, typename T>
__device__ __forceinline__ T rk_km_finish(T acc, long long i, long long j, const T* norms) {
    if (i == j) return T(0);
    if (M == RK_KM_EUCLIDEAN) return rk_km_sqrt(acc);
    if (M == RK_KM_COSINE) {
        const T denom = norms[i] * norms[j];
        if (denom == T(0)) return T(1);  // a zero vector is at cosine distance 1 from all others
        const T s = T(1) - acc / denom;
        return s < T(0) ? T(0) : (s > T(2) ? T(2) : s);
    }
    return acc;
}

// Euclidean norms of the n rows of X (row stride ldx): sqrt of the sequential fma sum of
// x_l * x_l, as the CPU's cosine metric computes them. One thread per row.
template <typename T>
__global__ void rk_km_norms(const T* __restrict__ X, long long n, int d, long long ldx,
                            T* __restrict__ norms) {
    for (long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x; i < n;
         i += (long long)gridDim.x * blockDim.x) {
        const T* x = X + i * ldx;
        T acc = T(0);
        for (int l = 0; l < d; ++l) acc = rk_km_fma(x[l], x[l], acc);
        norms[i] = rk_km_sqrt(acc);
    }
}

// out[r * ldo + c] = d(rows[r], col0 + c) for r < nrows, c < ncols: X is n x d with row
// stride ldx (features contiguous); rows are any point indices, the columns a contiguous
// range of points. Blocks of 256 threads; grid.x covers the column tiles, grid.y the row
// tiles. Each thread keeps 4 x 4 sums and adds the features in order l = 0, 1, ..., d - 1.
template <typename T, int M>
__global__ void rk_km_distances(const T* __restrict__ X, long long ldx, int d,
                                const long long* __restrict__ rows, int nrows, long long col0,
                                int ncols, const T* __restrict__ norms, T* __restrict__ out,
                                long long ldo) {
    __shared__ T As[RK_KM_CHUNK][RK_KM_TILE + 1];
    __shared__ T Bs[RK_KM_CHUNK][RK_KM_TILE + 1];
    __shared__ long long rid[RK_KM_TILE];
    const int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    const int r0 = blockIdx.y * RK_KM_TILE, c0 = blockIdx.x * RK_KM_TILE;
    for (int t = threadIdx.x; t < RK_KM_TILE; t += blockDim.x)
        rid[t] = r0 + t < nrows ? rows[r0 + t] : -1;
    T acc[4][4];
#pragma unroll
    for (int a = 0; a < 4; ++a)
#pragma unroll
        for (int b = 0; b < 4; ++b) acc[a][b] = T(0);
    for (int l0 = 0; l0 < d; l0 += RK_KM_CHUNK) {
        const int width = min(RK_KM_CHUNK, d - l0);
        __syncthreads();  // rid is written; the previous chunk is consumed
        for (int t = threadIdx.x; t < RK_KM_CHUNK * RK_KM_TILE; t += blockDim.x) {
            // Consecutive threads read consecutive features of one point.
            const int p = t / RK_KM_CHUNK, l = t % RK_KM_CHUNK;
            const long long i = rid[p];
            const long long j = c0 + p < ncols ? col0 + c0 + p : -1;
            As[l][p] = (i >= 0 && l < width) ? X[i * ldx + l0 + l] : T(0);
            Bs[l][p] = (j >= 0 && l < width) ? X[j * ldx + l0 + l] : T(0);
        }
        __syncthreads();
        for (int l = 0; l < width; ++l) {
            T a[4], b[4];
#pragma unroll
            for (int q = 0; q < 4; ++q) {
                a[q] = As[l][ty + 16 * q];
                b[q] = Bs[l][tx + 16 * q];
            }
#pragma unroll
            for (int p = 0; p < 4; ++p)
#pragma unroll
                for (int q = 0; q < 4; ++q) acc[p][q] = rk_km_term<M>(a[p], b[q], acc[p][q]);
        }
    }
    for (int p = 0; p < 4; ++p) {
        const int r = r0 + ty + 16 * p;
        if (r >= nrows) continue;
        const long long i = rid[ty + 16 * p];
        for (int q = 0; q < 4; ++q) {
            const int c = c0 + tx + 16 * q;
            if (c < ncols) out[r * ldo + c] = rk_km_finish<M>(acc[p][q], i, col0 + c, norms);
        }
    }
}

// The FastPAM1 swap evaluation, reduced over the points of one piece per warp.
//
// Points are listed in `order` grouped by their nearest medoid's slot; dn, ds and w are given
// in that order (nearest and second-nearest distance, weight; ds = +inf when there is no
// second medoid). Pieces are consecutive runs of that list (pstart: P + 1 offsets), each
// within one slot's group. For candidate row r of D (D[r * ldd + j] = d(x_r, j)) and piece p
// this writes, in float64,
//
//   acc[r * P + p]   = sum_o w_o (min(d, dn_o) - dn_o)                (the shared term)
//   ploss[r * P + p] = sum_o w_o (min(max(d, dn_o), ds_o) - dn_o)      (its slot's removal,
//                                                                       corrected by x)
//
// so that the change of the loss when x replaces slot s is ploss summed over the pieces of s
// plus acc summed over all pieces: Schubert & Rousseeuw's decomposition of PAM's gain, the
// terms of rust/rankcore/src/kmedoids/state.rs (swap_terms, plus the removal loss per point).
// Each lane sums a strided subset of the piece, then the warp adds the lanes in a fixed
// butterfly: no atomics, so results are the same bits on every run.
template <typename T>
__global__ void rk_km_swap_pieces(const T* __restrict__ D, long long ldd, int nrows,
                                  const int* __restrict__ order, const T* __restrict__ dn,
                                  const T* __restrict__ ds, const double* __restrict__ w,
                                  const long long* __restrict__ pstart, int P,
                                  double* __restrict__ ploss, double* __restrict__ acc) {
    const int lane = threadIdx.x & 31;
    const long long warp = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5);
    if (warp >= (long long)nrows * P) return;  // uniform over the warp
    const long long r = warp / P;
    const int p = (int)(warp % P);
    const T* row = D + r * ldd;
    double sa = 0.0, sp = 0.0;
    for (long long o = pstart[p] + lane; o < pstart[p + 1]; o += 32) {
        const T v = row[order[o]], a = dn[o], b = ds[o];
        const T near = v < a ? v : a;
        const T hi = v < a ? a : v;
        const T cap = hi < b ? hi : b;
        sa = fma(w[o], (double)near - (double)a, sa);
        sp = fma(w[o], (double)cap - (double)a, sp);
    }
    for (int off = 16; off > 0; off >>= 1) {
        sa += __shfl_sync(0xffffffffu, sa, lane ^ off);
        sp += __shfl_sync(0xffffffffu, sp, lane ^ off);
    }
    if (lane == 0) {
        acc[r * P + p] = sa;
        ploss[r * P + p] = sp;
    }
}
