"""Out of core: a lazily generated array larger than the memory of every worker (together)
goes through a randomized SVD and a random projection on a ``LocalCluster`` of 2 worker
processes with a small memory limit each, and no worker is killed (for memory or anything
else); each worker's peak resident memory is printed (``pytest -s``) and checked against its
limit.

The array (2 GB of float64, chunks of 16 MB) is exactly rank 5: ``G diag(s) Vᵀ`` with ``G``
Gaussian and ``V`` orthonormal, both pure functions of a seed and the block's first row, so
the rSVD must recover ``s``-weighted ``V`` to rounding (checked), and the projection's rows are
compared, bit for bit, with the in-memory projection of the same rows.

This runs in CI (it is not marked slow): about 20-40 s on 2 cores, mostly generating the 2 GB
twice for the rSVD (one read per power iteration plus one) and once for the projection.
"""

from __future__ import annotations

import os

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
distributed = pytest.importorskip("distributed")

from rankcore import random_projection, randomized_svd  # noqa: E402

MEMORY_LIMIT = 500 * 2**20
SHAPE = (1_250_000, 200)  # 2.0 GB of float64: 3.8x one worker's limit
ROWS = 10_000             # 16 MB blocks
RANK = 5
SEED = 11


def _right_factor() -> np.ndarray:
    rng = np.random.default_rng([SEED, 0])
    V, _ = np.linalg.qr(rng.standard_normal((SHAPE[1], RANK)))
    return V


def _make_block(block_info=None) -> np.ndarray:
    """Rows ``[r0, r1)`` of ``G diag(s) Vᵀ`` (task side)."""
    r0, r1 = block_info[None]["array-location"][0]
    G = np.random.default_rng([SEED, 1, r0]).standard_normal((r1 - r0, RANK))
    return (G * np.arange(RANK, 0, -1.0)) @ _right_factor().T


def lazy_array():
    rows = (ROWS,) * (SHAPE[0] // ROWS)
    return da.map_blocks(_make_block, chunks=(rows, (SHAPE[1],)), dtype=np.float64,
                         meta=np.empty((0, 0)), token="rankcore-ooc-input")


def _reset_peak() -> None:
    import ctypes
    import gc

    gc.collect()
    try:
        ctypes.CDLL("libc.so.6").malloc_trim(0)
    except (OSError, AttributeError):
        pass
    with open("/proc/self/clear_refs", "w") as f:  # resets VmHWM (Linux)
        f.write("5")


def _peak_bytes() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))


def _spilled_bytes(dask_worker) -> float:
    """Bytes this worker has written to its spill directory so far."""
    metrics = getattr(dask_worker.data, "cumulative_metrics", {})
    return float(metrics.get(("disk-write", "bytes"), 0.0))


@pytest.mark.skipif(not os.path.exists("/proc/self/clear_refs"), reason="needs Linux /proc")
def test_larger_than_worker_memory_rsvd_and_projection():
    A = lazy_array()
    assert A.nbytes > 3.5 * MEMORY_LIMIT  # more than both workers hold together
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True,
                                  memory_limit=MEMORY_LIMIT, dashboard_address=":0",
                                  env={"RANKCORE_NUM_THREADS": "1"}) as cluster, \
            distributed.Client(cluster) as client:
        client.wait_for_workers(2, timeout=60)
        before = client.run(os.getpid)
        client.run(_reset_peak)

        U, S, Vt = randomized_svd(A, RANK, n_iter=1, random_state=0)
        U = U.persist()  # 1.25e6 x 5: 50 MB, kept on the workers
        U_head = U[:ROWS].compute()
        proj = random_projection(A, 16, kind="gaussian", random_state=3)
        col_sums = proj.sum(axis=0).compute()  # every block projected, none held
        head, tail = proj[:100].compute(), proj[-100:].compute()

        peaks = client.run(_peak_bytes)
        spilled = client.run(_spilled_bytes)
        after = client.run(os.getpid)
        workers = client.scheduler_info()["workers"]
    print("\nper-worker peak RSS (MiB):", {w: round(p / 2**20) for w, p in peaks.items()},
          f"limit {MEMORY_LIMIT / 2**20:.0f} MiB, array {A.nbytes / 2**30:.2f} GiB")
    # No worker died or was restarted: the same processes at the same addresses throughout.
    assert after == before and len(workers) == 2
    assert all(p < MEMORY_LIMIT for p in peaks.values()), peaks
    # Spilling is how dask copes with memory pressure, so it is reported, not limited: how
    # much goes to disk depends on the timing of the tasks (measured 0 on a quiet machine,
    # 110 MB and 245 MB in all under load). What must hold is above: no worker killed or
    # restarted, every peak under the limit, and the results below.
    print("spilled to disk (MiB):", {w: round(b / 2**20) for w, b in spilled.items()})

    # The rSVD of an exactly rank-5 matrix: singular values s ‖G_col‖ (to sampling), and the
    # right singular subspace is span(V) to rounding (cosines of the principal angles 1).
    V = _right_factor()
    cos = np.linalg.svd(Vt @ V, compute_uv=False)
    np.testing.assert_allclose(cos, 1.0, atol=1e-10)
    np.testing.assert_allclose(S / np.sqrt(SHAPE[0]), np.arange(RANK, 0, -1.0), rtol=5e-3)
    block = _make_block({None: {"array-location": [(0, ROWS), (0, SHAPE[1])]}})
    np.testing.assert_allclose((U_head * S) @ Vt, block, atol=1e-9 * np.abs(block).max())

    # The projection: rows equal, bit for bit, to the in-memory projection of the same rows.
    last = _make_block({None: {"array-location": [(SHAPE[0] - ROWS, SHAPE[0]), (0, SHAPE[1])]}})
    np.testing.assert_array_equal(head, random_projection(block[:100], 16, kind="gaussian", random_state=3))
    np.testing.assert_array_equal(tail, random_projection(last[-100:], 16, kind="gaussian", random_state=3))
    assert col_sums.shape == (16,) and np.isfinite(col_sums).all()
