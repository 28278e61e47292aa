// The kernels of python/rankcore/cuda, compiled for the host through shim.h, with one C entry
// point per instantiation listed in the .names files: (grid x, grid y, threads, then the
// kernel's own parameters).
#include "shim.h"
#include "random.cu"
#include "projection.cu"
#include "kmedoids.cu"

typedef unsigned long long u64;
typedef unsigned u32;

extern "C" {
#define RK_FILL_NORMAL(T, SUFFIX)                                                           \
    void rk_fill_normal_##SUFFIX(u32 gx, u32 gy, int threads, T* out, u64 nrows, u32 ncols, \
                                 u64 row0, u32 col0, u64 seed, u32 stream, T scale) {       \
        rk_launch(rk_fill_normal<T>, dim3{gx, gy, 1}, threads, out, nrows, ncols, row0,     \
                  col0, seed, stream, scale);                                               \
    }
RK_FILL_NORMAL(float, float)
RK_FILL_NORMAL(double, double)

void rk_fill_words_(u32 gx, u32 gy, int threads, u32* out, u64 nrows, u32 ncols, u64 row0,
                    u32 col0, u64 seed, u32 stream) {
    rk_launch(rk_fill_words, dim3{gx, gy, 1}, threads, out, nrows, ncols, row0, col0, seed, stream);
}

void rk_sparse_lists_(u32 gx, u32 gy, int threads, u64 seed, u32 stream, u64 threshold, u32 k,
                      u64 d, bool by_component, u64 chunk, int* counts, const long long* offsets,
                      int* entries) {
    rk_launch(rk_sparse_lists, dim3{gx, gy, 1}, threads, seed, stream, threshold, k, d,
              by_component, chunk, counts, offsets, entries);
}

#define RK_PROJECT(T, SUFFIX)                                                                 \
    void rk_project_dense_##SUFFIX(u32 gx, u32 gy, int threads, const T* X, long long n,      \
                                   long long d, long long rs, long long cs,                   \
                                   const long long* rowptr, const int* entries, int k,        \
                                   T scale, T* Y, int* bad) {                                  \
        rk_launch(rk_project_dense<T>, dim3{gx, gy, 1}, threads, X, n, d, rs, cs, rowptr,      \
                  entries, k, scale, Y, bad);                                                  \
    }                                                                                          \
    void rk_project_csr_##SUFFIX(u32 gx, u32 gy, int threads, const int* indptr,              \
                                 const int* indices, const T* data, long long n,              \
                                 const long long* colptr, const int* entries, int k, T scale, \
                                 T* Y) {                                                       \
        rk_launch(rk_project_csr<T>, dim3{gx, gy, 1}, threads, indptr, indices, data, n,       \
                  colptr, entries, k, scale, Y);                                               \
    }
RK_PROJECT(float, float)
RK_PROJECT(double, double)

#define RK_KM(T, SUFFIX)                                                                       \
    void rk_km_norms_##SUFFIX(u32 gx, u32 gy, int threads, const T* X, long long n, int d,     \
                              long long ldx, T* norms) {                                       \
        rk_launch(rk_km_norms<T>, dim3{gx, gy, 1}, threads, X, n, d, ldx, norms);              \
    }                                                                                          \
    void rk_km_swap_pieces_##SUFFIX(u32 gx, u32 gy, int threads, const T* D, long long ldd,    \
                                    int nrows, const int* order, const T* dn, const T* ds,     \
                                    const double* w, const long long* pstart, int P,           \
                                    double* ploss, double* acc) {                              \
        rk_launch(rk_km_swap_pieces<T>, dim3{gx, gy, 1}, threads, D, ldd, nrows, order, dn,    \
                  ds, w, pstart, P, ploss, acc);                                               \
    }
#define RK_KM_DISTANCES(T, M)                                                                  \
    void rk_km_distances_##T##_##M(u32 gx, u32 gy, int threads, const T* X, long long ldx,     \
                                   int d, const long long* rows, int nrows, long long col0,    \
                                   int ncols, const T* norms, T* out, long long ldo) {         \
        rk_launch(rk_km_distances<T, M>, dim3{gx, gy, 1}, threads, X, ldx, d, rows, nrows,     \
                  col0, ncols, norms, out, ldo);                                               \
    }
RK_KM(float, float)
RK_KM(double, double)
RK_KM_DISTANCES(float, 0)
RK_KM_DISTANCES(float, 1)
RK_KM_DISTANCES(float, 2)
RK_KM_DISTANCES(float, 3)
RK_KM_DISTANCES(double, 0)
RK_KM_DISTANCES(double, 1)
RK_KM_DISTANCES(double, 2)
RK_KM_DISTANCES(double, 3)
}
