// A host emulation of the CUDA features rankcore's kernels use, so that CI (no GPU) can run
// the kernels themselves, compiled as C++ by g++: every CUDA thread is an OS thread, blocks
// run one after another, __syncthreads/__syncwarp are std::barriers, __shfl_sync exchanges
// through a per-warp buffer, and __shared__ variables are function statics (shared by the
// threads of the one block running). Slow, and only for small launches in tests.
#pragma once
#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstring>
#include <functional>
#include <memory>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __forceinline__ inline
#define __shared__ static

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
struct uint4 {
    unsigned x, y, z, w;
};
inline uint4 make_uint4(unsigned x, unsigned y, unsigned z, unsigned w) { return {x, y, z, w}; }
inline unsigned __umulhi(unsigned a, unsigned b) {
    return (unsigned)(((unsigned long long)a * b) >> 32);
}
// Double arithmetic rounded operation by operation (the test compiles without FMA
// contraction) and bit casts, as CUDA's intrinsics.
inline double __dadd_rn(double a, double b) { return a + b; }
inline double __dsub_rn(double a, double b) { return a - b; }
inline double __dmul_rn(double a, double b) { return a * b; }
inline double __ddiv_rn(double a, double b) { return a / b; }
inline double __dsqrt_rn(double a) { return std::sqrt(a); }
inline long long __double_as_longlong(double x) {
    long long v;
    std::memcpy(&v, &x, sizeof v);
    return v;
}
inline double __longlong_as_double(long long v) {
    double x;
    std::memcpy(&x, &v, sizeof x);
    return x;
}
using std::isfinite;
using std::max;
using std::min;

namespace rk_emu {
struct Warp {
    std::barrier<> bar{32};
    unsigned long long slot[32];
};
struct Block {
    std::barrier<> bar;
    std::vector<std::unique_ptr<Warp>> warps;
    explicit Block(int threads) : bar(threads) {
        for (int w = 0; w < (threads + 31) / 32; ++w) warps.emplace_back(new Warp);
    }
};
inline thread_local Block* block = nullptr;
}  // namespace rk_emu

inline thread_local dim3 threadIdx, blockIdx;
inline dim3 blockDim, gridDim;

inline void __syncthreads() { rk_emu::block->bar.arrive_and_wait(); }
inline void __syncwarp(unsigned = 0xffffffffu) {
    rk_emu::block->warps[threadIdx.x / 32]->bar.arrive_and_wait();
}
template <typename T>
T __shfl_sync(unsigned, T v, int src) {
    static_assert(sizeof(T) <= 8, "shuffle of at most 8 bytes");
    rk_emu::Warp& w = *rk_emu::block->warps[threadIdx.x / 32];
    std::memcpy(&w.slot[threadIdx.x % 32], &v, sizeof(T));
    w.bar.arrive_and_wait();
    T out;
    std::memcpy(&out, &w.slot[src], sizeof(T));
    w.bar.arrive_and_wait();
    return out;
}
inline int atomicExch(int* p, int v) {
    return std::atomic_ref<int>(*p).exchange(v);
}

// Runs kernel(args...) over the grid (1-D blocks of `threads`, a multiple of 32).
template <typename... P, typename... A>
void rk_launch(void (*kernel)(P...), dim3 grid, int threads, A... args) {
    gridDim = grid;
    blockDim = dim3{(unsigned)threads, 1, 1};
    for (unsigned by = 0; by < grid.y; ++by)
        for (unsigned bx = 0; bx < grid.x; ++bx) {
            rk_emu::Block b(threads);
            std::vector<std::thread> pool;
            for (int t = 0; t < threads; ++t)
                pool.emplace_back([&, t] {
                    rk_emu::block = &b;
                    threadIdx = dim3{(unsigned)t, 0, 0};
                    blockIdx = dim3{bx, by, 0};
                    kernel(args...);
                });
            for (auto& th : pool) th.join();
        }
}
