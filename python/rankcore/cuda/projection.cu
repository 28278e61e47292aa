// Y = X R^T for the sparse projection families, R (k x d) given by its non-zero lists
// (random.cu: rk_sparse_lists). Every output entry adds its terms +-x in increasing feature
// order starting from zero and is multiplied by the scale once at the end, exactly as the
// CPU kernels do, so results are bit-identical to rust/rankcore/src/projection.rs.
// Instantiations launched by rankcore._gpu are listed in projection.names.

// Rows of X per block in rk_project_dense, and features per shared-memory tile.
#define RK_TILE_ROWS 16
#define RK_TILE_FEATURES 128

// Dense X (n x d, element strides rs and cs: C, Fortran or sliced), Y C-ordered (n x k).
// R's lists by component (rowptr: k + 1 offsets; entries: +-(feature + 1), increasing).
// Block: RK_TILE_ROWS rows x blockDim.x components (grid.x covers the components, grid.y
// the row tiles). Each thread keeps its component's cursor into the list and one
// accumulator per row; the X tile is staged in shared memory feature-major, so a thread
// reads its feature's RK_TILE_ROWS values contiguously. `bad` is set to 1 if X holds NaN or
// +-inf (checked while the tile is loaded: no second pass over X).
template <typename T>
__global__ void rk_project_dense(const T* __restrict__ X, long long n, long long d, long long rs,
                                 long long cs, const long long* __restrict__ rowptr,
                                 const int* __restrict__ entries, int k, T scale,
                                 T* __restrict__ Y, int* __restrict__ bad) {
    __shared__ T tile[RK_TILE_FEATURES * RK_TILE_ROWS];
    const int c = blockIdx.x * blockDim.x + threadIdx.x;
    const long long row0 = (long long)blockIdx.y * RK_TILE_ROWS;
    const int rows = (int)min((long long)RK_TILE_ROWS, n - row0);
    const bool row_major = cs <= rs;
    T acc[RK_TILE_ROWS];
#pragma unroll
    for (int r = 0; r < RK_TILE_ROWS; ++r) acc[r] = T(0);
    long long p = c < k ? rowptr[c] : 0;
    const long long end = c < k ? rowptr[c + 1] : 0;
    bool finite = true;
    for (long long j0 = 0; j0 < d; j0 += RK_TILE_FEATURES) {
        const int width = (int)min((long long)RK_TILE_FEATURES, d - j0);
        __syncthreads();
        for (int t = threadIdx.x; t < RK_TILE_FEATURES * RK_TILE_ROWS; t += blockDim.x) {
            // Consecutive threads read consecutive addresses of X in either layout.
            const int r = row_major ? t / RK_TILE_FEATURES : t % RK_TILE_ROWS;
            const int f = row_major ? t % RK_TILE_FEATURES : t / RK_TILE_ROWS;
            T v = T(0);
            if (r < rows && f < width) {
                v = X[(row0 + r) * rs + (j0 + f) * cs];
                finite = finite && isfinite(v);
            }
            tile[f * RK_TILE_ROWS + r] = v;
        }
        __syncthreads();
        for (; p < end; ++p) {
            const int e = entries[p];
            const long long f = (long long)(e < 0 ? -e : e) - 1 - j0;
            if (f >= width) break;
            const T* x = tile + f * RK_TILE_ROWS;
            if (e > 0) {
#pragma unroll
                for (int r = 0; r < RK_TILE_ROWS; ++r) acc[r] += x[r];
            } else {
#pragma unroll
                for (int r = 0; r < RK_TILE_ROWS; ++r) acc[r] -= x[r];
            }
        }
    }
    if (!finite) atomicExch(bad, 1);
    if (c >= k) return;
    for (int r = 0; r < rows; ++r) Y[(row0 + r) * k + c] = acc[r] * scale;
}

// CSR X (n x d, int32 indptr/indices), Y C-ordered (n x k) and zeroed by the caller. R's
// lists by feature (colptr: d + 1 offsets; entries: +-(component + 1)). One warp per row:
// the lanes load 32 non-zeros at a time, then walk them in storage order, splitting each
// feature's list among themselves (its components are distinct, so no two lanes touch the
// same output); __syncwarp orders the updates, so every output entry adds its terms in the
// row's order, as the CPU does for sorted indices.
template <typename T>
__global__ void rk_project_csr(const int* __restrict__ indptr, const int* __restrict__ indices,
                               const T* __restrict__ data, long long n,
                               const long long* __restrict__ colptr,
                               const int* __restrict__ entries, int k, T scale,
                               T* __restrict__ Y) {
    const int lane = threadIdx.x & 31;
    const long long warps = (long long)gridDim.x * (blockDim.x >> 5);
    for (long long row = (long long)blockIdx.x * (blockDim.x >> 5) + (threadIdx.x >> 5); row < n;
         row += warps) {
        T* y = Y + row * k;
        const int lo = indptr[row], hi = indptr[row + 1];
        for (int base = lo; base < hi; base += 32) {
            const int mine = base + lane;
            const int j = mine < hi ? indices[mine] : 0;
            const T v = mine < hi ? data[mine] : T(0);
            const int count = min(32, hi - base);
            for (int t = 0; t < count; ++t) {
                const int jt = __shfl_sync(0xffffffffu, j, t);
                const T vt = __shfl_sync(0xffffffffu, v, t);
                for (long long q = colptr[jt] + lane; q < colptr[jt + 1]; q += 32) {
                    const int e = entries[q];
                    if (e > 0) y[e - 1] += vt;
                    else y[-e - 1] -= vt;
                }
                __syncwarp();
            }
        }
        for (int c = lane; c < k; c += 32) y[c] *= scale;
        __syncwarp();
    }
}
