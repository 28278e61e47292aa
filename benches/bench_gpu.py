"""GPU paths: rankcore on cupy arrays beside torch, plain cuBLAS/cuSPARSE and rankcore's CPU path.

Everything runs in one process on one device, on the same arrays (torch sees cupy's memory
through DLPack, no copy). The device's own ceilings are measured first, in the same run:
cuBLAS GEMM rate (cupy.matmul of square float32 and float64 matrices; float32 as cupy runs
it by default, i.e. TF32 off unless CUPY_TF32=1; torch's float32 with TF32 on and off beside
it) and device-to-device copy bandwidth (a ~4 GB buffer, counting bytes read + written; a
read-only reduction beside it).

Cases (each in try/except: a failing tool is recorded in the JSON and the run goes on):

1. ``svd_dense``: 50000 x 10000, float32 and float64, k=100, n_iter=4, n_oversamples=10.
   ``A = U diag(s) V^T`` with orthonormal U, V (QR of Gaussians, on the device) and
   ``s_i = 1/(1+i)``, so every singular value is known exactly. rankcore.randomized_svd vs
   ``torch.svd_lowrank(A, q=110, niter=4)`` vs the "GEMM ceiling" (the 2*n_iter+2 products of
   A or A^T with a 110-column block the algorithm needs, timed alone as cupy GEMMs) vs
   rankcore's CPU path (host copy made before timing; one call per dtype). Accuracy: max
   relative error of the top-k singular values, and ||A - U S Vt||_F over the optimal rank-k
   residual (1.0 = optimal). Targets: >= 2x torch at equal or better accuracy; within 1.5x
   of the GEMM ceiling.
2. ``svd_sparse``: CSR 10^6 x 10^5, 10^8 non-zeros (100 per row, sorted and distinct:
   one column drawn in each of 100 equal column bins), float32, k=100: rankcore on
   cupyx.scipy.sparse.csr_matrix vs torch.svd_lowrank on a torch sparse COO tensor (CSR, then
   a hand-written svd_lowrank on CSR products if torch refuses). Accuracy: residual
   ||A - U S Vt||_F / ||A||_F (computed without densifying) and singular values against a
   reference (rankcore, or torch, with n_iter=12 and 40 extra columns). Target: >= 2x.
3. ``projection``: dense 10^6 x 1000 float32 -> 256: rankcore.random_projection kind="sparse"
   (density auto) and kind="gaussian" vs a cupy GEMM with a materialised dense R
   (``X @ R.T``). Ceiling: one read of X at half the measured copy bandwidth (a copy moves
   its bytes once in each direction: read-side rate = copy rate / 2), with the time of one
   measured reduction over X beside it. Target: sparse within 1.5x of one read of X.
4. ``fastrp``: power-law directed graph with 10^7 nodes and 10^8 edge draws (duplicates
   summed), k=128, float32: rankcore.fastrp on cupyx CSR (variants "paper" and "gds") vs the
   CPU path at --threads on the same graph as scipy CSR. The CPU side first runs a 10x
   smaller graph (GPU too, for a like-for-like ratio); the full graph goes to the CPU only when
   that predicts under 60 s. Reported as edges per second.
5. ``kmedoids``: (a) 100,000 x 64 float32 blobs, k=100, euclidean, distances on the fly
   (``precompute=False``): ``rankcore.kmedoids`` on cupy with its defaults (eager swaps, LAB
   start), wall time and peak device memory (bytes in use in cupy's pool, tracked by an
   allocator hook), targets < 60 s and < 2 GiB; rankcore's CPU defaults beside it for the
   loss. (b) 20,000 x 64, k=100: rankcore on cupy ("fasterpam", the eager variant, and
   "fastpam1") vs the ``kmedoids`` package's ``fasterpam`` (if installed) on
   ``sklearn.metrics.pairwise_distances`` at --threads, distance time included, and
   rankcore's CPU FasterPAM; every row reports its loss. Target: >= 20x the package at equal
   or better loss.

5.-8. ``tucker_hooi``, ``flora``, ``kron_gp``, ``gp_hyper``: see ``benches/_gpu_tk_cases.py``.

Timing: every callable is called once untimed (NVRTC compiles rankcore's kernels on first
use; the first-call time is kept), then the median of 3 runs (1 when a call takes over 5 s),
each between two device synchronisations. GEMM and copy ceilings are timed with CUDA events.
Ratios are theirs / ours on medians: > 1 means rankcore is faster.

    python benches/bench_gpu.py [--quick] [--dry-run] [--cases svd_dense,svd_sparse,projection,fastrp,kmedoids]
                                [--threads N] [--time-budget S] [--no-cpu] [--out PATH]

``--dry-run``: without cupy or a CUDA device, prints "no GPU: skipped" and writes a JSON that
says so (exit 0); with a device, runs every case at tiny sizes. ``--quick``: smaller sizes.
``--time-budget``: no case (or CPU comparison) starts once the budget would be exceeded; the
JSON is rewritten after every case, so a run killed from outside keeps what it measured.

Results: --out, else bench-results/gpu/bench_gpu.json (-quick / -dryrun suffixes); a run that
found no device writes bench-results/bench_gpu-skipped.json instead (it never overwrites
device results).
"""

from __future__ import annotations

import dataclasses
import gc
import json
import math
import os
import signal
import statistics
import sys
import time
import traceback
from pathlib import Path
from typing import Any, Callable

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402

SEED = 0
CASES = ("svd_dense", "svd_sparse", "projection", "fastrp", "kmedoids")

FULL = dict(
    dense_shape=(50_000, 10_000), dense_k=100, n_iter=4, n_oversamples=10,
    sparse_shape=(1_000_000, 100_000), sparse_per_row=100, sparse_k=100,
    ref_n_iter=12, ref_extra=40,
    proj_shape=(1_000_000, 1000), proj_k=256, distortion_pairs=200,
    graph_nodes=10_000_000, graph_edges=100_000_000, fastrp_k=128, cpu_graph_scale=10,
    cpu_full_limit_s=60.0,
    gemm_n=8192, copy_bytes=4 * 1024**3,
    repeat=3, long_call_s=5.0,
    km_large=(100_000, 64), km_small=(20_000, 64), km_k=100, km_blobs=200,
    km_large_target_s=60.0, km_large_target_bytes=2 * 1024**3, km_package_ratio=20.0,
)
QUICK = dict(
    FULL, dense_shape=(20_000, 5000), sparse_shape=(200_000, 50_000), sparse_per_row=50,
    proj_shape=(200_000, 1000), graph_nodes=1_000_000, graph_edges=10_000_000,
    gemm_n=4096, copy_bytes=1024**3, km_large=(30_000, 64), km_small=(8000, 64),
)
DRY = dict(
    FULL, dense_shape=(2000, 500), dense_k=10, sparse_shape=(5000, 2000), sparse_per_row=10,
    sparse_k=10, ref_extra=10, proj_shape=(5000, 200), proj_k=32, distortion_pairs=50,
    graph_nodes=10_000, graph_edges=100_000, fastrp_k=16, gemm_n=1024, copy_bytes=64 * 1024**2,
    repeat=2, km_large=(3000, 16), km_small=(2000, 16), km_k=10, km_blobs=20,
)

TARGETS = dict(torch_ratio=2.0, gemm_ceiling=1.5, read_ceiling=1.5)


# --------------------------------------------------------------------------------------
# environment: cupy, torch, rankcore, the clock and the budget
# --------------------------------------------------------------------------------------


def probe_gpu() -> tuple[Any, str | None]:
    """``(cupy, None)`` when cupy imports and sees a CUDA device, else ``(None, why not)``."""
    try:
        import cupy
    except Exception as e:
        return None, f"cupy is not importable ({type(e).__name__}: {e})"
    try:
        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as e:
        return None, f"no CUDA device ({type(e).__name__}: {str(e).strip()[:160]})"
    if n < 1:
        return None, "no CUDA device (getDeviceCount() == 0)"
    return cupy, None


class Env:
    """What every case needs: the modules, config, clock, error log and the output dict."""

    def __init__(self, cp, torch, rc, cfg, args, out):
        import cupyx.scipy.sparse as cpsp

        self.cp, self.cpsp, self.torch, self.rc = cp, cpsp, torch, rc
        self.cfg, self.args, self.out = cfg, args, out
        self.threads = args.threads
        self.t_start = time.perf_counter()
        self.deadline = self.t_start + args.time_budget
        self.errors: list[dict] = out.setdefault("errors", [])
        self.targets: list[dict] = out.setdefault("targets", [])
        self.rows: list[H.Row] = []

    def sync(self) -> None:
        self.cp.cuda.Device().synchronize()

    def remaining(self) -> float:
        return self.deadline - time.perf_counter()

    def free(self) -> None:
        gc.collect()
        try:
            self.sync()
            self.cp.get_default_memory_pool().free_all_blocks()
            self.cp.get_default_pinned_memory_pool().free_all_blocks()
        except Exception:
            pass
        if self.torch is not None:
            try:
                self.torch.cuda.empty_cache()
            except Exception:
                pass
        H.release_free_memory()

    def error(self, case: str, tool: str, e: BaseException) -> str:
        msg = f"{type(e).__name__}: {str(e).strip()[:200]}"
        self.errors.append(dict(case=case, tool=tool, error=msg, traceback=traceback.format_exc()[-4000:]))
        print(f"  !! {case} / {tool}: {msg}", flush=True)
        return "error: " + msg

    def target(self, case: str, what: str, value: float | None, met: bool | None, detail: str) -> None:
        self.targets.append(dict(case=case, target=what, value=value, met=met, detail=detail))


def time_gpu(fn: Callable[[], Any], sync: Callable[[], None], *, repeat: int = 3, warmup: int = 1,
             long_s: float = 5.0) -> dict:
    """One untimed first call per ``warmup`` (compiles), then ``repeat`` timed calls (1 when the
    first call took over ``long_s``), each between two device synchronisations."""
    res = None
    first = None
    for _ in range(warmup):
        res = None
        sync()
        t0 = time.perf_counter()
        res = fn()
        sync()
        first = time.perf_counter() - t0 if first is None else first
    reps = repeat if (first is None or first < long_s) else 1
    times = []
    for _ in range(reps):
        res = None
        sync()
        t0 = time.perf_counter()
        res = fn()
        sync()
        times.append(time.perf_counter() - t0)
    return dict(first=first, best=min(times), median=statistics.median(times), times=times, result=res)


def time_events(cp, fn: Callable[[], Any], repeat: int = 3) -> dict:
    """Median of ``repeat`` CUDA-event timings of ``fn`` on the current stream, after one warm-up."""
    fn()
    cp.cuda.Device().synchronize()
    start, end = cp.cuda.Event(), cp.cuda.Event()
    times = []
    for _ in range(repeat):
        start.record()
        fn()
        end.record()
        end.synchronize()
        times.append(cp.cuda.get_elapsed_time(start, end) / 1e3)
    return dict(best=min(times), median=statistics.median(times), times=times)


def measure(env: Env, case: str, tool: str, fn: Callable[[], Any], *, ours: bool = False,
            repeat: int | None = None, warmup: int = 1, threads: int | None = None) -> tuple[H.Row, Any]:
    """Time ``fn`` into a row; on failure the row carries the error and the result is None."""
    row = H.Row(case=case, tool=tool, threads=threads, ours=ours)
    try:
        t = time_gpu(fn, env.sync, repeat=env.cfg["repeat"] if repeat is None else repeat, warmup=warmup,
                     long_s=env.cfg["long_call_s"])
    except Exception as e:
        row.note = env.error(case, tool, e)
        env.free()
        return row, None
    res = t.pop("result")
    row.best, row.median, row.times = t["best"], t["median"], t["times"]
    row.metrics["first_call_s"] = t["first"]
    first = f", first call {t['first'] * 1e3:.1f} ms" if t["first"] is not None else ""
    print(f"  {case:<34} {tool:<34} median {row.median * 1e3:10.2f} ms{first}", flush=True)
    return row, res


def to_cupy(cp, x):
    """A cupy view/copy of a cupy, torch (CUDA, via DLPack) or numpy array."""
    if x is None or isinstance(x, cp.ndarray):
        return x
    if type(x).__module__.startswith("torch"):
        try:
            return cp.from_dlpack(x.detach())
        except Exception:
            return cp.asarray(x.detach().contiguous())
    return cp.asarray(np.asarray(x))


def skip_row(case: str, tool: str, why: str) -> H.Row:
    print(f"  {case:<34} {tool:<34} skipped: {why}", flush=True)
    return H.Row(case=case, tool=tool, note=f"skipped: {why}")


# --------------------------------------------------------------------------------------
# ceilings
# --------------------------------------------------------------------------------------


def ceilings(env: Env) -> dict:
    cp, torch, cfg = env.cp, env.torch, env.cfg
    n = cfg["gemm_n"]
    out: dict[str, Any] = dict(gemm_n=n, cupy_tf32_env=os.environ.get("CUPY_TF32"))
    rs = cp.random.RandomState(1)
    for dt in ("float32", "float64"):
        try:
            a = rs.standard_normal((n, n), dtype=dt)
            b = rs.standard_normal((n, n), dtype=dt)
            c = cp.empty((n, n), dtype=dt)
            t = time_events(cp, lambda: cp.matmul(a, b, out=c), repeat=5)
            out[f"gemm_{dt}_tflops"] = 2.0 * n**3 / t["median"] / 1e12
            out[f"gemm_{dt}_s"] = t["median"]
            del a, b, c
        except Exception as e:
            out[f"gemm_{dt}_error"] = env.error("ceilings", f"cupy GEMM {dt}", e)
        env.free()
    if torch is not None:
        for label, tf32 in (("torch_float32_tf32_off", False), ("torch_float32_tf32_on", True)):
            old = torch.backends.cuda.matmul.allow_tf32
            try:
                torch.backends.cuda.matmul.allow_tf32 = tf32
                a = torch.randn(n, n, device="cuda")
                b = torch.randn(n, n, device="cuda")
                t = time_gpu(lambda: torch.matmul(a, b), env.sync, repeat=5)
                out[f"gemm_{label}_tflops"] = 2.0 * n**3 / t["median"] / 1e12
                del a, b, t
            except Exception as e:
                out[f"gemm_{label}_error"] = env.error("ceilings", f"torch GEMM {label}", e)
            finally:
                torch.backends.cuda.matmul.allow_tf32 = old
            env.free()
    nbytes = int(cfg["copy_bytes"])
    try:
        src = cp.empty(nbytes // 4, dtype=cp.float32)
        src.fill(1.5)
        dst = cp.empty_like(src)
        t_memcpy = time_events(cp, lambda: dst.data.copy_from_device_async(src.data, nbytes), repeat=5)
        t_kernel = time_events(cp, lambda: cp.copyto(dst, src), repeat=5)
        t_read = time_events(cp, lambda: src.sum(), repeat=5)
        out["copy_bytes"] = nbytes
        out["copy_memcpy_gbps"] = 2 * nbytes / t_memcpy["median"] / 1e9
        out["copy_kernel_gbps"] = 2 * nbytes / t_kernel["median"] / 1e9
        out["copy_gbps"] = max(out["copy_memcpy_gbps"], out["copy_kernel_gbps"])
        out["read_reduction_gbps"] = nbytes / t_read["median"] / 1e9
        del src, dst
    except Exception as e:
        out["copy_error"] = env.error("ceilings", "copy", e)
    env.free()
    return out


def describe_ceilings(c: dict) -> str:
    def f(key, unit, spec=".1f"):
        v = c.get(key)
        return f"{v:{spec}} {unit}" if isinstance(v, (int, float)) else "n/a"

    return (f"cuBLAS GEMM {c['gemm_n']}^3 (cupy): f32 {f('gemm_float32_tflops', 'TFLOP/s')} "
            f"(TF32 off, cupy's default; CUPY_TF32={c.get('cupy_tf32_env')}), f64 {f('gemm_float64_tflops', 'TFLOP/s')}; "
            f"torch f32 {f('gemm_torch_float32_tf32_off_tflops', 'TFLOP/s')} TF32 off / "
            f"{f('gemm_torch_float32_tf32_on_tflops', 'TFLOP/s')} TF32 on\n"
            f"device copy {f('copy_gbps', 'GB/s', '.0f')} (read + write; memcpy {f('copy_memcpy_gbps', 'GB/s', '.0f')}, "
            f"copy kernel {f('copy_kernel_gbps', 'GB/s', '.0f')}); read-only reduction {f('read_reduction_gbps', 'GB/s', '.0f')}")


# --------------------------------------------------------------------------------------
# data, built on the device
# --------------------------------------------------------------------------------------


def make_dense_known(cp, m: int, n: int, seed: int = SEED):
    """``A = U diag(s) V^T`` in float64 with orthonormal U (m x n), V (n x n) and
    ``s_i = 1/(1+i)``: every singular value is known. Returns ``(A, s)``."""
    rs = cp.random.RandomState(seed)
    s = 1.0 / (1.0 + cp.arange(n, dtype=cp.float64))
    G = rs.standard_normal((m, n), dtype=cp.float64)
    U, _ = cp.linalg.qr(G)
    del G
    G = rs.standard_normal((n, n), dtype=cp.float64)
    V, _ = cp.linalg.qr(G)
    del G
    U *= s[None, :]
    A = U @ V.T
    del U, V
    return cp.ascontiguousarray(A), s


def make_csr_binned(cp, cpsp, m: int, n: int, per_row: int, dtype, seed: int = SEED):
    """m x n CSR with ``per_row`` non-zeros per row, one uniform column in each of ``per_row``
    equal column bins: sorted, distinct (canonical) indices with no sort. Values U[0, 1)."""
    rs = cp.random.RandomState(seed)
    w = n // per_row
    idx = rs.randint(0, w, size=(m, per_row), dtype=cp.int32)
    idx += (cp.arange(per_row, dtype=cp.int32) * w)[None, :]
    nnz = m * per_row
    itype = cp.int32 if nnz < 2**31 else cp.int64
    indptr = cp.arange(m + 1, dtype=itype) * per_row
    data = rs.random_sample(nnz, dtype=dtype)
    A = cpsp.csr_matrix((data, idx.ravel(), indptr), shape=(m, n))
    _mark_canonical(A)
    return A


def _mark_canonical(A) -> None:
    for attr in ("has_canonical_format", "has_sorted_indices"):
        try:
            setattr(A, attr, True)
        except Exception:
            pass


def make_power_law_graph(cp, cpsp, n: int, m: int, dtype, exponent: float = 0.8, seed: int = SEED):
    """Directed graph: m edge draws whose endpoints have probability ~ (rank+1)^-exponent
    (ranks shuffled separately for sources and targets), duplicates summed into weights;
    the same recipe as benches/bench_projection.py, on the device. Returns CSR (n x n)."""
    rs = cp.random.RandomState(seed)
    p = cp.arange(1, n + 1, dtype=cp.float64) ** -exponent
    cdf = cp.cumsum(p)
    cdf /= cdf[-1]
    del p
    ends = []
    for _ in range(2):
        perm = cp.argsort(rs.random_sample(n)).astype(cp.int64)
        draw = cp.minimum(cp.searchsorted(cdf, rs.random_sample(m)), n - 1)
        ends.append(perm[draw])
        del perm, draw
    del cdf
    key = ends[0] * n + ends[1]
    del ends
    key = cp.sort(key)
    first = cp.empty(m, dtype=cp.bool_)
    first[0] = True
    cp.not_equal(key[1:], key[:-1], out=first[1:])
    pos = cp.flatnonzero(first)
    del first
    counts = cp.diff(cp.concatenate([pos, cp.asarray([m], dtype=pos.dtype)])).astype(dtype)
    uniq = key[pos]
    del key, pos
    rows = uniq // n
    cols = (uniq - rows * n).astype(cp.int32)
    del uniq
    itype = cp.int32 if counts.size < 2**31 else cp.int64
    indptr = cp.searchsorted(rows, cp.arange(n + 1, dtype=rows.dtype)).astype(itype)
    del rows
    A = cpsp.csr_matrix((counts, cols, indptr), shape=(n, n))
    _mark_canonical(A)
    return A


# --------------------------------------------------------------------------------------
# accuracy
# --------------------------------------------------------------------------------------


def dense_svd_accuracy(cp, A, U, S, Vt, s_true, k: int, block: int = 8192) -> dict:
    """Top-k singular values against the truth, and ||A - U S Vt||_F (float64, row blocks)
    over the optimal rank-k residual."""
    U = to_cupy(cp, U)[:, :k].astype(cp.float64)
    S = to_cupy(cp, S)[:k].astype(cp.float64)
    Vt = to_cupy(cp, Vt)[:k].astype(cp.float64)
    err = cp.abs(S - s_true[:k]) / s_true[:k]
    total = 0.0
    for i in range(0, A.shape[0], block):
        R = A[i:i + block].astype(cp.float64) - (U[i:i + block] * S) @ Vt
        total += float(cp.vdot(R, R))
        del R
    opt = float(cp.sqrt(cp.sum(s_true[k:] ** 2)))
    res = math.sqrt(total)
    return dict(sv_rel_err_max=float(err.max()), sv_rel_err_mean=float(err.mean()),
                residual_ratio=res / opt if opt > 0 else float("nan"))


def sparse_svd_accuracy(cp, A, U, S, Vt, k: int, normA2: float, s_ref=None) -> dict:
    """||A - U S Vt||_F / ||A||_F without densifying (||A||^2 - 2<A, U S Vt> + ||U S Vt||^2,
    the last term through Gram matrices), and the top-k values against a reference."""
    U = to_cupy(cp, U)[:, :k]
    S = to_cupy(cp, S)[:k].astype(cp.float64)
    Vt = to_cupy(cp, Vt)[:k]
    UtA = (A.T @ cp.ascontiguousarray(U.astype(A.dtype))).T.astype(cp.float64)   # k x n
    U64, V64 = U.astype(cp.float64), Vt.astype(cp.float64)
    cross = float(cp.sum(UtA * (S[:, None] * V64)))
    G = (U64.T @ U64) * (S[:, None] * (V64 @ V64.T) * S[None, :])
    res2 = max(normA2 - 2.0 * cross + float(G.sum()), 0.0)
    out = dict(residual_rel=math.sqrt(res2 / normA2), energy=float(cp.sum(S**2)) / normA2)
    if s_ref is not None:
        out["sv_rel_err_vs_ref_max"] = float((cp.abs(S - s_ref[:k]) / s_ref[:k]).max())
    return out


def distortion(cp, X, Y, pairs: int, seed: int = 1) -> float:
    """Mean |ratio - 1| of squared distances of ``pairs`` random row pairs (X vs Y), on the device."""
    rs = cp.random.RandomState(seed)
    i = rs.randint(0, X.shape[0], size=pairs)
    j = rs.randint(0, X.shape[0], size=pairs)
    dx = cp.sum((X[i].astype(cp.float64) - X[j].astype(cp.float64)) ** 2, axis=1)
    dy = cp.sum((Y[i].astype(cp.float64) - Y[j].astype(cp.float64)) ** 2, axis=1)
    ok = dx > 0
    return float(cp.mean(cp.abs(dy[ok] / dx[ok] - 1)))


# --------------------------------------------------------------------------------------
# torch anchors
# --------------------------------------------------------------------------------------


def torch_lowrank(torch, A_t, k: int, l: int, n_iter: int):
    """torch.svd_lowrank on a torch tensor; returns (U, S, Vt) with k columns/rows."""
    torch.manual_seed(SEED)
    U, S, V = torch.svd_lowrank(A_t, q=l, niter=n_iter)
    return U[:, :k], S[:k], V[:, :k].mT


def torch_lowrank_by_hand(torch, A_t, At_t, k: int, l: int, n_iter: int):
    """svd_lowrank's algorithm (Halko et al. with a QR after every product) written with CSR
    products of A and of its explicit transpose: the fallback when torch.svd_lowrank refuses
    sparse input."""
    torch.manual_seed(SEED)
    R = torch.randn(A_t.shape[1], l, dtype=A_t.dtype, device=A_t.device)
    Q = torch.linalg.qr(A_t @ R).Q
    for _ in range(n_iter):
        Q = torch.linalg.qr(At_t @ Q).Q
        Q = torch.linalg.qr(A_t @ Q).Q
    Bt = At_t @ Q                                   # B^T = A^T Q (n x l)
    W, S, Zt = torch.linalg.svd(Bt, full_matrices=False)  # B^T = W S Z^T  ->  B = Z S W^T
    return (Q @ Zt.mT)[:, :k], S[:k], W[:, :k].mT


# --------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------


def fill_ratios(rows: list[H.Row]) -> None:
    """ratio = row.median / ours.median per case (theirs / ours: > 1 means rankcore is faster)."""
    ours = {r.case: r for r in rows if r.ours and r.median}
    for r in rows:
        o = ours.get(r.case)
        if o is not None and r.median and r is not o and r.ratio is None and not r.metrics.get("no_ratio"):
            r.ratio = r.median / o.median


def case_svd_dense(env: Env) -> list[H.Row]:
    cp, torch, rc, cfg = env.cp, env.torch, env.rc, env.cfg
    m, n = cfg["dense_shape"]
    k, p, q = cfg["dense_k"], cfg["n_oversamples"], cfg["n_iter"]
    l = k + p
    t0 = time.perf_counter()
    A64, s_true = make_dense_known(cp, m, n)
    env.sync()
    t_build = time.perf_counter() - t0
    print(f"dense {m}x{n}: built with known spectrum in {t_build:.1f} s", flush=True)
    info = env.out["cases"].setdefault("svd_dense", {})
    info.update(shape=[m, n], k=k, n_oversamples=p, n_iter=q, spectrum="s_i = 1/(1+i)", build_s=t_build,
                optimal_residual_rel=float(cp.sqrt(cp.sum(s_true[k:] ** 2) / cp.sum(s_true**2))))
    rows: list[H.Row] = []
    for dtype in (cp.float32, cp.float64):
        name = np.dtype(dtype).name
        short = "f32" if dtype == cp.float32 else "f64"
        case = f"svd dense {m}x{n} {short} k={k}"
        A = A64 if dtype == cp.float64 else A64.astype(cp.float32)
        crows: list[H.Row] = []

        def acc(row, res, A=A):
            if res is None:
                return
            try:
                row.metrics.update(dense_svd_accuracy(cp, A, *res, s_true, k))
                mt = row.metrics
                row.accuracy = f"sv {mt['sv_rel_err_max']:.2e} res x{mt['residual_ratio']:.5f}"
            except Exception as e:
                row.note = (row.note + "; " if row.note else "") + env.error(case, row.tool + " accuracy", e)

        # rankcore on the device
        if rc is not None:
            r, res = measure(env, case, "rankcore (cupy)", lambda: rc.randomized_svd(
                A, k, n_oversamples=p, n_iter=q, random_state=SEED), ours=True)
            acc(r, res)
            ours_gpu = r
            del res
        else:
            ours_gpu = skip_row(case, "rankcore (cupy)", "rankcore not importable")
        crows.append(ours_gpu)
        env.free()

        # torch.svd_lowrank on the same memory
        if torch is not None:
            try:
                A_t = torch.from_dlpack(A)
                r, res = measure(env, case, f"torch.svd_lowrank (q={l}, niter={q})",
                                 lambda: torch_lowrank(torch, A_t, k, l, q))
                acc(r, res)
                del res, A_t
            except Exception as e:
                r = H.Row(case=case, tool="torch.svd_lowrank", note=env.error(case, "torch", e))
            crows.append(r)
            torch_row = r
        else:
            torch_row = skip_row(case, "torch.svd_lowrank", "torch not importable")
            crows.append(torch_row)
        env.free()

        # GEMM ceiling: the 2q+2 products alone
        try:
            rs = cp.random.RandomState(2)
            X = rs.standard_normal((n, l), dtype=dtype)
            Y = rs.standard_normal((m, l), dtype=dtype)
            bx = cp.empty((m, l), dtype=dtype)
            by = cp.empty((n, l), dtype=dtype)

            def products():
                for _ in range(q + 1):
                    cp.matmul(A, X, out=bx)
                    cp.matmul(A.T, Y, out=by)

            t = time_events(cp, products, repeat=env.cfg["repeat"])
            nprod = 2 * q + 2
            tflops = nprod * 2.0 * m * n * l / t["median"] / 1e12
            crow = H.Row(case=case, tool=f"GEMM ceiling ({nprod} products)", best=t["best"], median=t["median"],
                         times=t["times"], note=f"{tflops:.1f} TFLOP/s",
                         metrics=dict(products=nprod, tflops=tflops))
            print(f"  {case:<34} {'GEMM ceiling':<34} median {t['median'] * 1e3:10.2f} ms ({tflops:.1f} TFLOP/s)",
                  flush=True)
            del X, Y, bx, by
        except Exception as e:
            crow = H.Row(case=case, tool="GEMM ceiling", note=env.error(case, "GEMM ceiling", e))
        crows.append(crow)
        env.free()

        # rankcore's CPU path on the host copy
        cpu_row = None
        if rc is not None and not env.args.no_cpu:
            est = 40.0 if not env.args.quick else 10.0
            if env.remaining() < est:
                cpu_row = skip_row(case, f"rankcore CPU ({env.threads} thr)", "time budget")
            else:
                try:
                    A_host = cp.asnumpy(A)
                    with H.rankcore_threads(rc, env.threads):
                        cpu_row, res = measure(env, case, f"rankcore CPU ({env.threads} thr)", lambda: rc.randomized_svd(
                            A_host, k, n_oversamples=p, n_iter=q, random_state=SEED), warmup=0, repeat=1,
                            threads=env.threads)
                    acc(cpu_row, None if res is None else tuple(cp.asarray(x) for x in res))
                    del res, A_host
                except Exception as e:
                    cpu_row = H.Row(case=case, tool="rankcore CPU", note=env.error(case, "rankcore CPU", e))
        elif env.args.no_cpu:
            cpu_row = skip_row(case, "rankcore CPU", "--no-cpu")
        if cpu_row is not None:
            crows.append(cpu_row)
        env.free()

        # targets
        if ours_gpu.median:
            if torch_row.median:
                ratio = torch_row.median / ours_gpu.median
                eo, et = ours_gpu.metrics.get("sv_rel_err_max"), torch_row.metrics.get("sv_rel_err_max")
                ro, rt = ours_gpu.metrics.get("residual_ratio"), torch_row.metrics.get("residual_ratio")
                acc_ok = None if None in (eo, et, ro, rt) else (eo <= 1.1 * et and ro <= rt * (1 + 1e-4))
                env.target(case, f">= {TARGETS['torch_ratio']:g}x torch.svd_lowrank at equal or better accuracy",
                           ratio, bool(ratio >= TARGETS["torch_ratio"] and acc_ok) if acc_ok is not None else None,
                           f"{ratio:.2f}x; sv err {_g(eo)} vs {_g(et)}, residual x{_g(ro, '.5f')} vs x{_g(rt, '.5f')} "
                           "(equal or better: sv err <= 1.1x torch's, residual <= torch's)")
            if crow.median:
                over = ours_gpu.median / crow.median
                ours_gpu.note = (ours_gpu.note + "; " if ours_gpu.note else "") + f"{over:.2f}x GEMM ceiling"
                ours_gpu.metrics["time_over_gemm_ceiling"] = over
                env.target(case, f"within {TARGETS['gemm_ceiling']:g}x of the GEMM ceiling", over,
                           bool(over <= TARGETS["gemm_ceiling"]), f"{over:.2f}x ({ours_gpu.median * 1e3:.1f} ms vs "
                           f"{crow.median * 1e3:.1f} ms)")
        info[f"{name}"] = dict(gemm_ceiling_s=crow.median, gemm_ceiling_tflops=crow.metrics.get("tflops"))
        rows += crows
        if dtype == cp.float32:
            del A
        env.free()
    del A64, s_true
    env.free()
    return rows


def _sci(x: int) -> str:
    """1e7 / 9.6e7 style for counts."""
    mant, exp = f"{x:.1e}".split("e")
    mant = mant.rstrip("0").rstrip(".")
    return f"{mant}e{int(exp)}"


def _g(x, spec: str = ".2e") -> str:
    return "n/a" if x is None else format(x, spec)


def case_svd_sparse(env: Env) -> list[H.Row]:
    cp, cpsp, torch, rc, cfg = env.cp, env.cpsp, env.torch, env.rc, env.cfg
    m, n = cfg["sparse_shape"]
    per = cfg["sparse_per_row"]
    k, p, q = cfg["sparse_k"], cfg["n_oversamples"], cfg["n_iter"]
    l = k + p
    t0 = time.perf_counter()
    A = make_csr_binned(cp, cpsp, m, n, per, cp.float32)
    env.sync()
    t_build = time.perf_counter() - t0
    normA2 = float(cp.sum(A.data.astype(cp.float64) ** 2))
    case = f"svd CSR {m}x{n} nnz={_sci(A.nnz)} f32 k={k}"
    print(f"CSR {m}x{n}, {A.nnz} non-zeros: built in {t_build:.1f} s", flush=True)
    info = env.out["cases"].setdefault("svd_sparse", {})
    info.update(shape=[m, n], nnz=int(A.nnz), k=k, n_oversamples=p, n_iter=q, build_s=t_build,
                input_bytes=int(A.data.nbytes + A.indices.nbytes + A.indptr.nbytes))
    rows: list[H.Row] = []
    results: dict[str, Any] = {}

    if rc is not None:
        ours, res = measure(env, case, "rankcore (cupyx CSR)", lambda: rc.randomized_svd(
            A, k, n_oversamples=p, n_iter=q, random_state=SEED), ours=True)
        results[ours.tool] = res
    else:
        ours = skip_row(case, "rankcore (cupyx CSR)", "rankcore not importable")
    rows.append(ours)
    env.free()

    anchor = None
    if torch is not None:
        crow = ccol = cval = None
        try:
            crow = torch.from_dlpack(A.indptr)
            ccol = torch.from_dlpack(A.indices)
            cval = torch.from_dlpack(A.data)
            A_csr = torch.sparse_csr_tensor(crow, ccol, cval, size=(m, n))
        except Exception as e:
            A_csr = None
            rows.append(H.Row(case=case, tool="torch", note=env.error(case, "torch CSR tensor", e)))
        attempts = []
        if A_csr is not None:
            attempts.append(("torch.svd_lowrank (COO)", lambda: A_csr.to_sparse_coo().coalesce(), "lowrank"))
            attempts.append(("torch.svd_lowrank (CSR)", lambda: A_csr, "lowrank"))
            attempts.append(("torch svd_lowrank algorithm by hand (CSR)", lambda: A_csr, "by_hand"))
        At_csr = None
        for tool, make, how in attempts:
            try:
                T = make()
                if how == "lowrank":
                    fn = lambda T=T: torch_lowrank(torch, T, k, l, q)  # noqa: E731
                else:
                    At = A.T.tocsr()
                    _mark_canonical(At)
                    At_csr = torch.sparse_csr_tensor(torch.from_dlpack(At.indptr), torch.from_dlpack(At.indices),
                                                     torch.from_dlpack(At.data), size=(n, m))
                    fn = lambda T=T: torch_lowrank_by_hand(torch, T, At_csr, k, l, q)  # noqa: E731
            except Exception as e:
                rows.append(H.Row(case=case, tool=tool, note=env.error(case, tool + " (setup)", e)))
                continue
            r, res = measure(env, case, tool, fn)
            del T, fn
            rows.append(r)
            if r.median:
                anchor = r
                results[tool] = res
                break
            env.free()
        del A_csr, At_csr, crow, ccol, cval
    else:
        rows.append(skip_row(case, "torch.svd_lowrank", "torch not importable"))
    env.free()

    # reference singular values: more power iterations and columns
    s_ref, ref_tool = None, None
    if env.remaining() > 20:
        try:
            kr, qr = k + cfg["ref_extra"], cfg["ref_n_iter"]
            if rc is not None and ours.median:
                _, s_ref, _ = rc.randomized_svd(A, kr, n_oversamples=p, n_iter=qr, random_state=SEED + 1)
                ref_tool = f"rankcore k={kr} n_iter={qr}"
            elif anchor is not None:
                A_coo = torch.sparse_csr_tensor(torch.from_dlpack(A.indptr), torch.from_dlpack(A.indices),
                                                torch.from_dlpack(A.data), size=(m, n)).to_sparse_coo().coalesce()
                _, s_ref, _ = torch_lowrank(torch, A_coo, kr, kr + p, qr)
                ref_tool = f"torch.svd_lowrank q={kr + p} niter={qr}"
                del A_coo
            if s_ref is not None:
                s_ref = to_cupy(cp, s_ref).astype(cp.float64).copy()
        except Exception as e:
            env.error(case, "reference", e)
            s_ref = None
    info["reference"] = ref_tool
    for r in rows:
        res = results.get(r.tool)
        if res is None:
            continue
        try:
            r.metrics.update(sparse_svd_accuracy(cp, A, *res, k, normA2, s_ref))
            mt = r.metrics
            r.accuracy = f"res {mt['residual_rel']:.6f}" + (
                f" sv {mt['sv_rel_err_vs_ref_max']:.1e} vs ref" if "sv_rel_err_vs_ref_max" in mt else "")
        except Exception as e:
            r.note = (r.note + "; " if r.note else "") + env.error(case, r.tool + " accuracy", e)
    results.clear()
    if ours.median and anchor is not None:
        ratio = anchor.median / ours.median
        ro, rt = ours.metrics.get("residual_rel"), anchor.metrics.get("residual_rel")
        acc_ok = None if None in (ro, rt) else ro <= rt * (1 + 1e-4)
        env.target(case, f">= {TARGETS['torch_ratio']:g}x {anchor.tool}", ratio,
                   bool(ratio >= TARGETS["torch_ratio"] and acc_ok) if acc_ok is not None else None,
                   f"{ratio:.2f}x; residual {_g(ro, '.6f')} vs {_g(rt, '.6f')}")
    del A, s_ref
    env.free()
    return rows


def case_projection(env: Env) -> list[H.Row]:
    cp, rc, cfg = env.cp, env.rc, env.cfg
    m, d = cfg["proj_shape"]
    k = cfg["proj_k"]
    rs = cp.random.RandomState(SEED)
    X = rs.standard_normal((m, d), dtype=cp.float32)
    case_base = f"projection dense {m}x{d} f32 -> {k}"
    info = env.out["cases"].setdefault("projection", {})
    copy_gbps = env.out["ceilings"].get("copy_gbps")
    read_s = X.nbytes / (copy_gbps * 1e9 / 2) if copy_gbps else None
    t_red = time_events(cp, lambda: X.sum(), repeat=5)
    info.update(shape=[m, d], k=k, x_bytes=int(X.nbytes), one_read_s=read_s,
                one_read_definition="bytes(X) / (measured copy bandwidth / 2): a copy moves each byte once read, once written",
                reduction_read_s=t_red["median"])
    print(f"X {m}x{d} f32 ({X.nbytes / 1e9:.2f} GB): one read at copy/2 = "
          f"{_g(read_s and read_s * 1e3, '.2f')} ms; measured reduction over X {t_red['median'] * 1e3:.2f} ms", flush=True)
    rows: list[H.Row] = []
    pairs = cfg["distortion_pairs"]

    def acc(row, Y):
        if Y is None:
            return
        try:
            row.metrics["distortion"] = distortion(cp, X, to_cupy(cp, Y), pairs)
            row.accuracy = f"dist {row.metrics['distortion']:.4f}"
        except Exception as e:
            row.note = (row.note + "; " if row.note else "") + env.error(row.case, row.tool + " accuracy", e)

    # anchor: cupy GEMM with a materialised dense R
    R = rs.standard_normal((k, d), dtype=cp.float32) / np.float32(math.sqrt(k))
    gemm_row, Y = measure(env, case_base, "cupy GEMM X @ R.T (R materialised)", lambda: X @ R.T)
    acc(gemm_row, Y)
    if gemm_row.median:
        tf = 2.0 * m * d * k / gemm_row.median / 1e12
        gemm_row.note = f"{tf:.1f} TFLOP/s"
    del Y, R
    env.free()

    for kind in ("sparse", "gaussian"):
        case = f"{case_base} {kind}"
        if rc is None:
            r = skip_row(case, "rankcore (cupy)", "rankcore not importable")
        else:
            r, Y = measure(env, case, f"rankcore {kind} (cupy)", lambda kind=kind: rc.random_projection(
                X, k, kind=kind, density="auto", random_state=SEED), ours=True)
            acc(r, Y)
            del Y
        rows.append(r)
        # the GEMM anchor is the same call for both kinds: one row per case
        g = dataclasses.replace(gemm_row, case=case, metrics=dict(gemm_row.metrics), ratio=None)
        rows.append(g)
        if r.median and g.median:
            r.metrics["time_over_gemm"] = r.median / g.median
        if kind == "sparse":
            if read_s:
                rows.append(H.Row(case=case, tool="one read of X (copy bw / 2)", best=read_s, median=read_s,
                                  note=f"{X.nbytes / 1e9:.2f} GB at {copy_gbps / 2:.0f} GB/s"))
            rows.append(H.Row(case=case, tool="one read of X (measured reduction)", best=t_red["best"],
                              median=t_red["median"], note="cupy X.sum()"))
            if r.median and read_s:
                over = r.median / read_s
                r.note = f"{over:.2f}x one read of X; {r.median / t_red['median']:.2f}x the reduction"
                r.metrics.update(time_over_read=over, time_over_reduction=r.median / t_red["median"])
                env.target(case, f"within {TARGETS['read_ceiling']:g}x of one read of X (copy bw / 2)", over,
                           bool(over <= TARGETS["read_ceiling"]),
                           f"{over:.2f}x ({r.median * 1e3:.2f} ms vs {read_s * 1e3:.2f} ms); "
                           f"{r.median / t_red['median']:.2f}x a measured reduction over X")
        elif r.median and g.median:
            r.note = f"{r.median / g.median:.2f}x the materialised GEMM"
        env.free()
    del X
    env.free()
    return rows


def case_fastrp(env: Env) -> list[H.Row]:
    cp, cpsp, rc, cfg = env.cp, env.cpsp, env.rc, env.cfg
    n, m, k = cfg["graph_nodes"], cfg["graph_edges"], cfg["fastrp_k"]
    scale = cfg["cpu_graph_scale"]
    info = env.out["cases"].setdefault("fastrp", {})
    rows: list[H.Row] = []
    if rc is None:
        return [skip_row("fastrp", "rankcore", "rankcore not importable")]

    def run_graph(nn, mm, label, *, cpu: bool, cpu_limit: float | None):
        t0 = time.perf_counter()
        A = make_power_law_graph(cp, cpsp, nn, mm, cp.float32)
        env.sync()
        t_build = time.perf_counter() - t0
        case = f"fastrp {_sci(nn)} nodes {_sci(A.nnz)} edges k={k} f32{label}"
        print(f"graph {nn} nodes, {A.nnz} edges (from {mm} draws): built in {t_build:.1f} s", flush=True)
        g = dict(nodes=nn, edge_draws=mm, nnz=int(A.nnz), build_s=t_build)
        out_rows = []
        U_gpu = None
        for variant in ("paper", "gds"):
            r, U = measure(env, case, f"rankcore {variant} (cupyx CSR)", lambda variant=variant: rc.fastrp(
                A, k, variant=variant, random_state=SEED), ours=variant == "paper")
            if r.median:
                r.metrics["edges_per_s"] = A.nnz / r.median
                r.accuracy = f"{A.nnz / r.median:.2e} edges/s"
            if variant != "paper":
                r.metrics["no_ratio"] = True  # another rankcore variant, not an anchor
            if variant == "paper":
                U_gpu = U
            del U
            out_rows.append(r)
            env.free()
        if cpu:
            if cpu_limit is not None and env.remaining() < cpu_limit + 15:
                out_rows.append(skip_row(case, f"rankcore paper CPU ({env.threads} thr)", "time budget"))
            else:
                A_host = A.get()
                with H.rankcore_threads(rc, env.threads):
                    r, U = measure(env, case, f"rankcore paper CPU ({env.threads} thr)", lambda: rc.fastrp(
                        A_host, k, variant="paper", random_state=SEED), warmup=0, repeat=1, threads=env.threads)
                if r.median:
                    r.metrics["edges_per_s"] = A.nnz / r.median
                    r.accuracy = f"{A.nnz / r.median:.2e} edges/s"
                if U is not None and U_gpu is not None:
                    try:
                        Uc = cp.asarray(U)
                        d = float(cp.linalg.norm((to_cupy(cp, U_gpu) - Uc).astype(cp.float64)) /
                                  max(float(cp.linalg.norm(Uc.astype(cp.float64))), 1e-300))
                        r.metrics["rel_diff_vs_gpu"] = d
                        r.note = f"embedding rel. diff vs GPU {d:.1e} (Frobenius)"
                        del Uc
                    except Exception as e:
                        env.error(case, "cpu vs gpu", e)
                del U, A_host
                out_rows.append(r)
        del A, U_gpu
        env.free()
        return out_rows, g

    # full graph on the device
    full_rows, info["graph"] = run_graph(n, m, "", cpu=False, cpu_limit=None)
    rows += full_rows
    if env.args.no_cpu:
        rows.append(skip_row("fastrp", "rankcore CPU", "--no-cpu"))
        return rows
    # the CPU comparison: 10x smaller graph first, then the full one if it should fit
    if env.remaining() < 30:
        rows.append(skip_row("fastrp", "rankcore CPU", "time budget"))
        return rows
    small_rows, info["cpu_graph"] = run_graph(max(n // scale, 10), max(m // scale, 10), f" (CPU comparison, 1/{scale})",
                                              cpu=True, cpu_limit=10.0)
    rows += small_rows
    cpu_small = next((r for r in small_rows if "CPU" in r.tool and r.median), None)
    if cpu_small is not None:
        est = cpu_small.median * scale * 1.2
        info["cpu_full_estimate_s"] = est
        if est <= cfg["cpu_full_limit_s"] and env.remaining() > est + 30:
            A = make_power_law_graph(cp, cpsp, n, m, cp.float32)
            A_host = A.get()
            case = full_rows[0].case
            del A
            env.free()
            with H.rankcore_threads(rc, env.threads):
                r, U = measure(env, case, f"rankcore paper CPU ({env.threads} thr)", lambda: rc.fastrp(
                    A_host, k, variant="paper", random_state=SEED), warmup=0, repeat=1, threads=env.threads)
            if r.median:
                r.metrics["edges_per_s"] = A_host.nnz / r.median
                r.accuracy = f"{A_host.nnz / r.median:.2e} edges/s"
            del U, A_host
            rows.append(r)
            info["cpu_on_full_graph"] = True
        else:
            why = (f"CPU estimate {est:.0f} s > {cfg['cpu_full_limit_s']:.0f} s" if est > cfg["cpu_full_limit_s"]
                   else "time budget")
            info["cpu_on_full_graph"] = False
            info["cpu_full_skipped"] = why
            print(f"  CPU on the full graph skipped: {why}; the CPU ratio is on the 1/{scale} graph", flush=True)
    env.free()
    return rows


def make_blobs(cp, n: int, d: int, blobs: int, seed: int = SEED):
    """``n x d`` float32 points around ``blobs`` Gaussian centres (spread 10, unit noise)."""
    rs = cp.random.RandomState(seed)
    centres = rs.standard_normal((blobs, d), dtype=cp.float32) * 10
    return centres[rs.randint(0, blobs, n)] + rs.standard_normal((n, d), dtype=cp.float32)


class PeakMemory:
    """Peak bytes in use in cupy's default pool while active (an allocator hook)."""

    def __init__(self, cp):
        self.cp, self.pool, self.peak = cp, cp.get_default_memory_pool(), 0

    def __enter__(self):
        self.pool.free_all_blocks()
        self.base = self.peak = self.pool.used_bytes()

        def alloc(size):
            mem = self.pool.malloc(size)
            self.peak = max(self.peak, self.pool.used_bytes())
            return mem

        self.cp.cuda.set_allocator(alloc)
        return self

    def __exit__(self, *exc):
        self.cp.cuda.set_allocator(self.pool.malloc)
        return False


def case_kmedoids(env: Env) -> list[H.Row]:
    cp, rc, cfg = env.cp, env.rc, env.cfg
    k = cfg["km_k"]
    info = env.out["cases"].setdefault("kmedoids", {})
    rows: list[H.Row] = []
    if rc is None:
        return [skip_row("kmedoids", "rankcore", "rankcore not importable")]

    def loss_row(r, res):
        if res is not None:
            r.metrics["loss"] = float(res.loss)
            r.metrics["n_iter"], r.metrics["n_swap"] = int(res.n_iter), int(res.n_swap)
            r.accuracy = f"loss {float(res.loss):.6e}"
        return r

    # compile the kernels once, on a small problem, so no timed call pays for NVRTC
    warm = make_blobs(cp, 500, cfg["km_large"][1], 5)
    rc.kmedoids(warm, 5, metric="euclidean", precompute=False)
    rc.kmedoids(warm, 5, metric="euclidean", method="fastpam1", precompute=False)
    del warm
    env.free()

    # (a) 100,000 x 64 on the fly
    n, d = cfg["km_large"]
    X = make_blobs(cp, n, d, cfg["km_blobs"])
    case = f"kmedoids {_sci(n)}x{d} f32 k={k} on the fly"
    with PeakMemory(cp) as peak:
        r, res = measure(env, case, "rankcore cupy (defaults: eager, LAB)", lambda: rc.kmedoids(
            X, k, metric="euclidean", precompute=False, random_state=SEED), ours=True, warmup=0, repeat=1)
    loss_row(r, res)
    r.peak_mib = (peak.peak - peak.base) / 2**20
    r.metrics["peak_device_bytes"] = peak.peak - peak.base
    info["large"] = dict(n=n, d=d, k=k, seconds=r.median, peak_device_bytes=peak.peak - peak.base,
                         loss=r.metrics.get("loss"))
    if r.median is not None:
        env.target(case, "time < 60 s", r.median, r.median < cfg["km_large_target_s"], f"{r.median:.1f} s")
        env.target(case, "device memory < 2 GiB", r.peak_mib, peak.peak - peak.base < cfg["km_large_target_bytes"],
                   f"peak {r.peak_mib:.0f} MiB in use")
    rows.append(r)
    del res
    if not env.args.no_cpu and env.remaining() > 90:
        Xh = X.get()
        with H.rankcore_threads(rc, env.threads):
            rcpu, res = measure(env, case, f"rankcore CPU defaults ({env.threads} thr)", lambda: rc.kmedoids(
                Xh, k, metric="euclidean", random_state=SEED), warmup=0, repeat=1, threads=env.threads)
        loss_row(rcpu, res)
        rcpu.metrics["no_ratio"] = True  # a loss reference (OneBatchPAM), not an anchor
        rows.append(rcpu)
        del Xh, res
    del X
    env.free()

    # (b) 20,000 x 64: vs the kmedoids package, distance time included
    n, d = cfg["km_small"]
    X = make_blobs(cp, n, d, cfg["km_blobs"], seed=SEED + 1)
    case = f"kmedoids {_sci(n)}x{d} f32 k={k}"
    r, res = measure(env, case, "rankcore cupy fasterpam (eager)", lambda: rc.kmedoids(
        X, k, metric="euclidean", method="fasterpam", random_state=SEED), ours=True, warmup=0, repeat=1)
    ours = loss_row(r, res)
    rows.append(r)
    r, res = measure(env, case, "rankcore cupy fastpam1", lambda: rc.kmedoids(
        X, k, metric="euclidean", method="fastpam1", random_state=SEED), warmup=0, repeat=1)
    r.metrics["no_ratio"] = True
    rows.append(loss_row(r, res))
    Xh = X.get()
    del X, res
    env.free()
    if env.args.no_cpu:
        rows.append(skip_row(case, "CPU", "--no-cpu"))
        return rows
    km = H.optional_import("kmedoids")
    if km is None:
        rows.append(skip_row(case, "kmedoids.fasterpam", "the kmedoids package is not installed"))
    else:
        from sklearn.metrics import pairwise_distances

        def package():
            D = pairwise_distances(Xh, n_jobs=env.threads)
            return km.fasterpam(D, k, random_state=SEED, n_cpu=env.threads)

        with H.anchor_threads(env.threads):
            r, res = measure(env, case, f"kmedoids.fasterpam + pairwise_distances ({env.threads} thr)", package,
                             warmup=0, repeat=1, threads=env.threads)
        if res is not None:
            r.metrics["loss"] = float(res.loss)
            r.accuracy = f"loss {float(res.loss):.6e}"
            if ours.median and r.median:
                ratio = r.median / ours.median
                better = ours.metrics.get("loss", math.inf) <= float(res.loss) * (1 + 1e-6)
                env.target(case, ">= 20x kmedoids.fasterpam at equal or better loss", ratio,
                           ratio >= cfg["km_package_ratio"] and better,
                           f"{ratio:.1f}x, loss {ours.metrics.get('loss'):.6e} vs {float(res.loss):.6e}")
        rows.append(r)
        del res
    if env.remaining() > 60:
        with H.rankcore_threads(rc, env.threads):
            r, res = measure(env, case, f"rankcore CPU fasterpam ({env.threads} thr)", lambda: rc.kmedoids(
                Xh, k, metric="euclidean", method="fasterpam", random_state=SEED), warmup=0, repeat=1,
                threads=env.threads)
        rows.append(loss_row(r, res))
    env.free()
    return rows


RUNNERS = dict(svd_dense=case_svd_dense, svd_sparse=case_svd_sparse, projection=case_projection, fastrp=case_fastrp,
               kmedoids=case_kmedoids)
# Rough seconds each case needs at full size (build + all tools, CPU comparisons included).
ESTIMATE_S = dict(svd_dense=90, svd_sparse=40, projection=20, fastrp=90, kmedoids=150)

# Issue 18's Tucker/FLoRA and Kronecker-GP cases live beside this file (see its docstring).
import _gpu_tk_cases as _TK  # noqa: E402

CASES = CASES + _TK.CASES
RUNNERS.update(_TK.RUNNERS)
ESTIMATE_S.update(_TK.ESTIMATE_S)


# --------------------------------------------------------------------------------------
# output
# --------------------------------------------------------------------------------------


def _ms(x) -> str:
    if x is None or (isinstance(x, float) and not math.isfinite(x)):
        return ""
    return f"{x * 1e3:.2f}" if x < 100 else f"{x * 1e3:.0f}"


def md_table(headers: list[str], rows: list[list[str]], right: set[int] = frozenset()) -> str:
    widths = [max([len(h)] + [len(r[i]) for r in rows]) for i, h in enumerate(headers)]

    def line(vals):
        return "| " + " | ".join(v.rjust(w) if i in right else v.ljust(w)
                                 for i, (v, w) in enumerate(zip(vals, widths))) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if i in right else ("-" * (w + 2)) for i, w in enumerate(widths)) + "|"
    return "\n".join([line(headers), sep] + [line(r) for r in rows])


def results_table(rows: list[H.Row]) -> str:
    body = []
    for r in rows:
        first = r.metrics.get("first_call_s")
        body.append([r.case, r.tool, _ms(r.median), _ms(r.best), _ms(first),
                     "" if r.ratio is None else f"{r.ratio:.2f}", r.accuracy, r.note.replace("|", "/")])
    return md_table(["case", "tool", "median ms", "best ms", "1st call ms", "ratio", "accuracy", "note"], body,
                    right={2, 3, 4, 5})


def targets_table(targets: list[dict]) -> str:
    body = [[t["case"], t["target"], t["detail"], {True: "yes", False: "NO", None: "?"}[t["met"]]] for t in targets]
    return md_table(["case", "target", "measured", "met"], body)


def default_out(args, skipped: bool) -> Path:
    if args.out:
        return Path(args.out)
    if skipped:
        return H.RESULTS_DIR / "bench_gpu-skipped.json"
    suffix = "-dryrun" if args.dry_run else ("-quick" if args.quick else "")
    return H.RESULTS_DIR / "gpu" / f"bench_gpu{suffix}.json"


def write_json(path: Path, doc: dict) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(H._jsonable(doc), indent=2) + "\n")
    tmp.replace(path)


def device_info(cp, torch) -> dict:
    props = cp.cuda.runtime.getDeviceProperties(0)
    name = props.get("name", b"?")
    name = name.decode() if isinstance(name, bytes) else str(name)
    free, total = cp.cuda.runtime.memGetInfo()
    info = dict(name=name, compute_capability=f"{props.get('major')}.{props.get('minor')}",
                multiprocessors=props.get("multiProcessorCount"), l2_bytes=props.get("l2CacheSize"),
                memory_total_gib=total / 1024**3, memory_free_gib=free / 1024**3,
                cuda_runtime=cp.cuda.runtime.runtimeGetVersion(), cuda_driver=cp.cuda.runtime.driverGetVersion(),
                cupy=cp.__version__, cupy_accelerators=os.environ.get("CUPY_ACCELERATORS"))
    if torch is not None:
        info.update(torch=torch.__version__, torch_cuda=getattr(torch.version, "cuda", None))
    return info


# --------------------------------------------------------------------------------------
# main
# --------------------------------------------------------------------------------------


class _Terminated(BaseException):  # not an Exception: the per-tool `except Exception` must not swallow it
    pass


def _on_sigterm(signum, frame):  # `timeout` sends SIGTERM: stop, print and write what we have
    raise _Terminated(f"signal {signum}")


def main(argv=None) -> int:
    def extra(ap):
        ap.add_argument("--dry-run", action="store_true",
                        help="no device: print 'no GPU: skipped' and exit 0; with a device: tiny sizes")
        ap.add_argument("--out", default=None, help="JSON path (default bench-results/gpu/bench_gpu.json)")
        ap.add_argument("--time-budget", type=float, default=330.0,
                        help="seconds: no case starts once it would not fit (default 330)")
        ap.add_argument("--no-cpu", action="store_true", help="skip the comparisons with rankcore's CPU path")

    args, cases = H.parse_args(__doc__, argv, CASES, extra=extra)
    cp, why = probe_gpu()
    if cp is None:
        print(f"no GPU: skipped ({why})")
        path = default_out(args, skipped=True)
        doc = dict(bench="bench_gpu", skipped=True, reason=why, dry_run=args.dry_run,
                   machine=H.machine_info(extra_packages=("cupy-cuda13x", "cupy-cuda12x", "torch")))
        try:
            write_json(path, doc)
            print(f"wrote {path}")
        except OSError as e:
            print(f"could not write {path}: {e}")
        return 0

    signal.signal(signal.SIGTERM, _on_sigterm)
    cfg = DRY if args.dry_run else (QUICK if args.quick else FULL)
    torch = H.optional_import("torch")
    if torch is not None:
        try:
            if not torch.cuda.is_available():
                print("torch: no CUDA; torch anchors skipped")
                torch = None
        except Exception:
            torch = None
    rc = H.import_rankcore("randomized_svd")
    path = default_out(args, skipped=False)
    machine = H.machine_info(rc, extra_packages=("cupy-cuda13x", "torch"))
    out: dict[str, Any] = dict(bench="bench_gpu", machine=machine, device=device_info(cp, torch),
                               config=dict(cfg, quick=args.quick, dry_run=args.dry_run, threads=args.threads,
                                           time_budget=args.time_budget, cases=sorted(cases), seed=SEED,
                                           ratio="theirs / ours on medians (> 1: rankcore faster)"),
                               targets=[], errors=[], cases={}, partial=True)
    if rc is not None:
        out["rankcore_file"] = getattr(rc, "__file__", None)
    dev = out["device"]
    print(f"device: {dev['name']} (sm {dev['compute_capability']}, {dev['multiprocessors']} SMs, "
          f"{dev['memory_total_gib']:.0f} GiB), CUDA runtime {dev['cuda_runtime']}, driver {dev['cuda_driver']}, "
          f"cupy {dev['cupy']}, torch {dev.get('torch', 'n/a')}")
    print(H.describe_machine(machine))
    print(f"rankcore: {out.get('rankcore_file', 'not importable')}; CPU threads for rankcore's CPU path: {args.threads}")
    env = Env(cp, torch, rc, cfg, args, out)
    interrupted = None
    try:
        out["ceilings"] = ceilings(env)
        print(describe_ceilings(out["ceilings"]) + "\n", flush=True)
        write_json(path, out)
        for name in CASES:
            if name not in cases:
                continue
            need = ESTIMATE_S[name] * (0.3 if args.quick else (0.05 if args.dry_run else 1.0))
            if env.remaining() < need:
                why = f"time budget ({env.remaining():.0f} s left, ~{need:.0f} s needed)"
                env.rows.append(skip_row(name, "all tools", why))
                out["cases"].setdefault(name, {})["skipped"] = why
                continue
            print(f"--- {name} ({env.remaining():.0f} s of budget left)", flush=True)
            t0 = time.perf_counter()
            try:
                env.rows += RUNNERS[name](env)
            except _Terminated:
                raise
            except Exception as e:  # a case that fails as a whole (data build, say)
                env.rows.append(H.Row(case=name, tool="case", note=env.error(name, "case", e)))
            out["cases"].setdefault(name, {})["elapsed_s"] = time.perf_counter() - t0
            env.free()
            fill_ratios(env.rows)
            out["rows"] = [r.as_dict() for r in env.rows]
            out["elapsed_s"] = time.perf_counter() - env.t_start
            write_json(path, out)
    except (_Terminated, KeyboardInterrupt) as e:
        interrupted = f"{type(e).__name__}: {e}"
        print(f"\ninterrupted ({interrupted}): writing what was measured", flush=True)
    fill_ratios(env.rows)
    for r in env.rows:
        if not r.ours and ("ceiling" in r.tool or "one read" in r.tool):
            r.ratio = None
    out.update(rows=[r.as_dict() for r in env.rows], elapsed_s=time.perf_counter() - env.t_start,
               partial=interrupted is not None, interrupted=interrupted)
    print("\n### GPU benchmarks (ratio = theirs / ours on medians, > 1: rankcore faster)\n")
    print(describe_ceilings(out.get("ceilings", {"gemm_n": cfg["gemm_n"]})) + "\n")
    print(results_table(env.rows))
    if env.targets:
        print("\n### targets\n")
        print(targets_table(env.targets))
    if env.errors:
        print(f"\n{len(env.errors)} error(s):")
        for e in env.errors:
            print(f"  {e['case']} / {e['tool']}: {e['error']}")
    write_json(path, out)
    print(f"\nwrote {path} ({out['elapsed_s']:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
