"""The dask path: rankcore beside dask's own randomized SVD and a materialised projection.

On a ``dask.distributed.LocalCluster`` with 2 worker processes (1 thread each; rankcore, BLAS
and OpenMP pools at 1 thread inside each worker), in one process, on the same lazily generated
array (every task regenerates its row block from a seed; nothing is held in memory between
passes unless a tool keeps it):

1. tall 2,000,000 x 500 float64, low rank plus noise, k=50, 4 power iterations, 10
   oversamples: ``rankcore.randomized_svd`` vs ``dask.array.linalg.svd_compressed`` (same
   ``n_power_iter`` and ``n_oversamples``; ``compute=True``, the setting dask documents for
   input larger than memory that is cheap to recreate, and ``compute=False``, one graph that
   keeps the input in the workers' memory across passes when it fits) and dask-ml's
   ``TruncatedSVD`` when ``dask_ml`` imports. The timed call ends with ``S`` and ``Vt`` on the
   client and ``U`` persisted on the workers. Accuracy: ``||A - U S Vt||_F / ||A||_F``
   (one blockwise pass), the largest relative difference of the singular values from
   rankcore's and the smallest cosine of the principal angles between the right singular
   subspaces.
2. projection of the same array to 256 columns: rankcore's ``random_projection`` (``R``
   regenerated per block from the seed), Gaussian and sparse, vs ``da.dot`` with the same
   ``R`` materialised on the client (dense for Gaussian; scipy.sparse ``R`` in a
   ``map_blocks`` for sparse). The timed call reduces the output to its column sums (the
   output is as large as the input); the tools' outputs are compared blockwise.

For every call: wall time, the ratio (theirs / ours), the time the tasks computed (the sum of
the task stream's compute intervals) and the rest of ``2 x wall`` (scheduler, transfers and
idle workers: ``overhead``; flagged when the recorded intervals add up to more than the
workers had), the number of tasks, and each worker's peak resident memory
(``VmHWM`` after resetting it through ``/proc/self/clear_refs``).

    python benches/bench_dask.py [--quick] [--cases svd,projection]

Results: bench-results/bench_dask.json (bench_dask-quick.json with --quick).
"""

from __future__ import annotations

import functools
import sys
import time
import traceback
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402

SEED = 0
N_WORKERS = 2

FULL = dict(shape=(2_000_000, 500), row_chunk=25_000, rank=100, noise=0.02, k=50, n_iter=4,
            n_oversamples=10, proj_k=256, repeat=2, memory_limit="8GiB")
QUICK = dict(FULL, shape=(200_000, 100), row_chunk=12_500, rank=40, k=10, proj_k=64, repeat=2,
             memory_limit="2GiB")


# --------------------------------------------------------------------------------------
# data: generated per block, on the workers (these functions travel by value)
# --------------------------------------------------------------------------------------


@functools.lru_cache(maxsize=4)
def _right_factor(n: int, rank: int, seed: int) -> np.ndarray:
    """``diag(s) Vᵀ`` (``rank x n``), ``V`` orthonormal, ``s_i = 1 / (1 + i)``."""
    rng = np.random.default_rng([seed, 1])
    V, _ = np.linalg.qr(rng.standard_normal((n, rank)))
    return (V / (1.0 + np.arange(rank))).T.copy()


def _make_block(n: int, rank: int, noise: float, seed: int, block_info=None) -> np.ndarray:
    """Rows ``[r0, r1)`` of ``G diag(s) Vᵀ + noise · N``: ``G`` standard normal, ``N`` uniform
    with unit variance, both a pure function of (seed, block start); ``s_i = 1/(1+i)`` puts
    the noise floor near ``s_k`` for ``k ~ 50``, so power iterations matter."""
    r0, r1 = block_info[None]["array-location"][0]
    rng = np.random.default_rng([seed, 2, r0])
    G = rng.standard_normal((r1 - r0, rank))
    out = G @ _right_factor(n, rank, seed)
    N = rng.random((r1 - r0, n))
    N -= 0.5
    out += (noise * np.sqrt(12.0)) * N
    return out


def lazy_matrix(cfg: dict):
    import dask.array as da

    m, n = cfg["shape"]
    rows = tuple(min(cfg["row_chunk"], m - i) for i in range(0, m, cfg["row_chunk"]))
    return da.map_blocks(_make_block, n, cfg["rank"], cfg["noise"], SEED, chunks=(rows, (n,)),
                         dtype=np.float64, meta=np.empty((0, 0)), token="bench-dask-input")


# --------------------------------------------------------------------------------------
# worker-side measurements
# --------------------------------------------------------------------------------------


# These two run on the workers (``client.run``), which cannot import ``_harness`` (not on
# their path): cloudpickle sends functions of this script by value, so they stay here.
def _reset_peak() -> bool:
    """Reset this process's ``VmHWM`` (Linux ``clear_refs``); False where not allowed."""
    import gc

    gc.collect()
    try:
        import ctypes

        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _peak_mib() -> float:
    """This process's peak resident memory in MiB (``VmHWM``; ``ru_maxrss`` elsewhere)."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024.0
    except OSError:
        pass
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0


def _block_sq_residual(a: np.ndarray, u: np.ndarray, s: np.ndarray, vt: np.ndarray) -> np.ndarray:
    r = a - (u * s) @ vt
    return np.array([[np.einsum("ij,ij->", r, r)]])


def _block_sq_norm(a: np.ndarray) -> np.ndarray:
    return np.array([[np.einsum("ij,ij->", a, a)]])


def _block_max_diff(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.array([[float(np.max(np.abs(a - b))) if a.size else 0.0]])


def _sparse_dot(block: np.ndarray, Rt) -> np.ndarray:
    return np.asarray(block @ Rt)


# --------------------------------------------------------------------------------------
# running one call on the cluster
# --------------------------------------------------------------------------------------


def measured(client, fn):
    """Run ``fn()`` on the cluster; return its result and wall time, task-stream compute
    time and task count, and each worker's peak RSS (MiB)."""
    from distributed import get_task_stream

    client.run(_reset_peak)
    with get_task_stream(client) as ts:
        t0 = time.perf_counter()
        out = fn()
        wall = time.perf_counter() - t0
    compute = sum(ss["stop"] - ss["start"] for task in ts.data for ss in task.get("startstops", ())
                  if ss.get("action") == "compute")
    peaks = client.run(_peak_mib)
    return out, dict(wall=wall, compute=compute, tasks=len(ts.data),
                     overhead=max(N_WORKERS * wall - compute, 0.0),
                     worker_peak_mib=sorted(peaks.values()))


def timed_row(client, case, tool, fn, repeat, note="") -> tuple[H.Row, object]:
    row = H.Row(case=case, tool=tool, threads=N_WORKERS, note=note)
    runs, out = [], None
    try:
        for _ in range(repeat):
            out = None
            out, m = measured(client, fn)
            runs.append(m)
    except Exception as e:  # an anchor that fails is reported, not fatal
        row.note = f"error: {type(e).__name__}: {str(e)[:80]}"
        traceback.print_exc()
        return row, None
    best = min(runs, key=lambda r: r["wall"])
    row.best, row.times = best["wall"], [r["wall"] for r in runs]
    row.median = float(np.median(row.times))
    row.peak_mib = max(best["worker_peak_mib"])
    row.metrics = dict(runs=runs, compute_s=best["compute"], overhead_s=best["overhead"],
                       tasks=best["tasks"], worker_peak_mib=best["worker_peak_mib"])
    split = f"compute {best['compute']:.1f} s + overhead {best['overhead']:.1f} s of {N_WORKERS}x wall"
    if best["compute"] > 1.05 * N_WORKERS * best["wall"]:  # seen with one large graph
        split += " (task-stream intervals exceed the workers' time: split unreliable)"
    row.note = "; ".join(x for x in (note, split, f"{best['tasks']} tasks") if x)
    print(f"  {case:<26} {tool:<30} best {row.best:.2f} s  {split}  peak/worker "
          f"{', '.join(f'{p:.0f}' for p in best['worker_peak_mib'])} MiB", flush=True)
    return row, out


# --------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------


def svd_case(rc, client, cfg, out: dict) -> list[H.Row]:
    import dask
    import dask.array as da
    from distributed import wait

    A = lazy_matrix(cfg)
    m, n = cfg["shape"]
    k, p, q = cfg["k"], cfg["n_oversamples"], cfg["n_iter"]
    case = f"rSVD {m}x{n} f64 k={k}"
    print(f"{case}: {A.numblocks[0]} row blocks of {cfg['row_chunk']}, "
          f"{A.nbytes / 2**30:.2f} GiB generated per pass", flush=True)
    norm2 = float(A.map_blocks(_block_sq_norm, chunks=((1,) * A.numblocks[0], (1,)),
                               dtype=np.float64).sum().compute())

    def ours():
        U, S, Vt = rc.randomized_svd(A, k, n_oversamples=p, n_iter=q, random_state=SEED)
        U = U.persist()
        wait(U)
        return U, S, Vt

    def svd_compressed(compute):
        def run():
            u, s, v = da.linalg.svd_compressed(A, k, n_power_iter=q, n_oversamples=p, seed=SEED,
                                               compute=compute)
            u = u.persist()
            s, v = dask.compute(s, v)
            wait(u)
            return u, s, v
        return run

    tools = [("rankcore", ours, ""),
             ("dask svd_compressed compute=True", svd_compressed(True), ""),
             ("dask svd_compressed compute=False", svd_compressed(False),
              "one graph: the input stays in memory across passes")]
    dask_ml = H.optional_import("dask_ml.decomposition")
    rows: list[H.Row] = []
    results = {}
    for tool, fn, note in tools:
        row, res = timed_row(client, case, tool, fn, cfg["repeat"], note)
        row.ours = tool == "rankcore"
        rows.append(row)
        results[tool] = res
    if dask_ml is None:
        rows.append(H.missing_row(case, "dask-ml TruncatedSVD"))
    else:
        def tsvd():
            est = dask_ml.TruncatedSVD(k, algorithm="randomized", n_iter=q, random_state=SEED)
            U = est.fit_transform(A)
            U = U.persist()
            wait(U)
            S = est.singular_values_
            return U / S, S, est.components_
        row, res = timed_row(client, case, "dask-ml TruncatedSVD", tsvd, cfg["repeat"])
        rows.append(row)
        results["dask-ml TruncatedSVD"] = res
    ref = results.get("rankcore")
    for row in rows:
        res = results.get(row.tool)
        if res is None:
            continue
        U, S, Vt = res
        U = U.rechunk({0: A.chunks[0], 1: -1})
        S, Vt = np.asarray(S, np.float64), np.asarray(Vt, np.float64)
        res2 = float(da.map_blocks(_block_sq_residual, A, U, S, Vt, chunks=((1,) * A.numblocks[0], (1,)),
                                   dtype=np.float64).sum().compute())
        row.metrics["residual_rel"] = float(np.sqrt(max(res2, 0.0) / norm2))
        row.accuracy = f"res {row.metrics['residual_rel']:.6f}"
        if ref is not None and row.tool != "rankcore":
            d = float(np.max(np.abs(S - ref[1]) / ref[1]))
            cos = float(np.linalg.svd(Vt @ np.asarray(ref[2], np.float64).T, compute_uv=False).min())
            row.metrics.update(sv_rel_diff_vs_rankcore=d, subspace_min_cos_vs_rankcore=cos)
            row.accuracy += f"; sv diff {d:.1e}; cos {cos:.6f}"
    out["svd"] = dict(shape=[m, n], k=k, n_oversamples=p, n_iter=q, rank=cfg["rank"],
                      noise=cfg["noise"], row_chunk=cfg["row_chunk"], norm_fro=np.sqrt(norm2))
    return rows


def projection_case(rc, client, cfg, out: dict) -> list[H.Row]:
    import dask.array as da

    A = lazy_matrix(cfg)
    m, n = cfg["shape"]
    k = cfg["proj_k"]
    rows: list[H.Row] = []
    for kind, est_cls in (("gaussian", rc.GaussianRandomProjection), ("sparse", rc.SparseRandomProjection)):
        case = f"projection {m}x{n} -> {k} {kind}"
        lazy_ours = rc.random_projection(A, k, kind=kind, random_state=SEED)
        t0 = time.perf_counter()
        R = est_cls(n_components=k, random_state=SEED).fit(A[:1].compute()).components_
        t_R = time.perf_counter() - t0
        if kind == "gaussian":
            lazy_theirs = da.dot(A, np.ascontiguousarray(R.T))
            label, note = "da.dot, R materialised", f"R built in {t_R:.2f} s on the client"
        else:
            Rt = R.T.tocsr()
            lazy_theirs = A.map_blocks(_sparse_dot, Rt, chunks=(A.chunks[0], (k,)), dtype=A.dtype)
            label, note = "map_blocks X @ R.T (scipy.sparse R)", f"R built in {t_R:.2f} s on the client"
        row, _ = timed_row(client, case, "rankcore",
                           lambda: lazy_ours.sum(axis=0).compute(), cfg["repeat"])
        row.ours = True
        rows.append(row)
        row2, _ = timed_row(client, case, label, lambda: lazy_theirs.sum(axis=0).compute(),
                            cfg["repeat"], note)
        rows.append(row2)
        diff = float(da.map_blocks(_block_max_diff, lazy_ours, lazy_theirs,
                                   chunks=((1,) * A.numblocks[0], (1,)), dtype=np.float64).max().compute())
        scale = float(np.sqrt(n))
        row2.metrics["max_abs_diff_vs_rankcore"] = diff
        row2.accuracy = f"max |diff| {diff:.1e} (entries ~{scale:.0f})"
    out["projection"] = dict(shape=[m, n], n_components=k)
    return rows


def main(argv=None) -> int:
    args, cases = H.parse_args(__doc__, argv, ("svd", "projection"))
    rc = H.import_rankcore("randomized_svd")
    if rc is None:
        return 2
    distributed = H.optional_import("distributed")
    if distributed is None or H.optional_import("dask.array") is None:
        print("dask.array and distributed are needed: pip install 'rankcore[cluster]'", file=sys.stderr)
        return 2
    cfg = QUICK if args.quick else FULL
    machine = H.machine_info(rc, extra_packages=("dask", "distributed", "dask-ml"))
    print(H.describe_machine(machine))
    print(f"LocalCluster: {N_WORKERS} worker processes x 1 thread, memory_limit {cfg['memory_limit']}\n",
          flush=True)
    t_start = time.perf_counter()
    out: dict = dict(config=dict(cfg, quick=args.quick, seed=SEED, workers=N_WORKERS,
                                 threads_per_worker=1, cases=sorted(cases)),
                     dask_ml="installed" if H.optional_import("dask_ml") else "not installed")
    one = {"RANKCORE_NUM_THREADS": "1", "OMP_NUM_THREADS": "1", "OPENBLAS_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1"}
    with distributed.LocalCluster(n_workers=N_WORKERS, threads_per_worker=1, processes=True,
                                  memory_limit=cfg["memory_limit"], dashboard_address=None,
                                  env=one) as cluster, distributed.Client(cluster) as client:
        client.wait_for_workers(N_WORKERS)
        # Warm-up: import rankcore and dask's linalg in the workers before anything is timed.
        small = dict(cfg, shape=(4000, min(cfg["shape"][1], 50)), row_chunk=1000, k=5, rank=10)
        rc.randomized_svd(lazy_matrix(small), 5, n_iter=1, random_state=0)[0].compute()
        rows: list[H.Row] = []
        if "svd" in cases:
            rows += svd_case(rc, client, cfg, out)
        if "projection" in cases:
            rows += projection_case(rc, client, cfg, out)
    H.fill_ratios(rows)
    H.print_table(rows, title="dask, 2 workers x 1 thread (ratio = theirs / ours, > 1: rankcore "
                              "faster; peak MiB = the larger worker's peak RSS)")
    elapsed = time.perf_counter() - t_start
    out.update(rows=[r.as_dict() for r in rows], elapsed_s=elapsed)
    path = H.write_results("bench_dask-quick" if args.quick else "bench_dask", out, machine)
    print(f"wrote {path.relative_to(H.REPO_ROOT)} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
