"""PCA and small sparse randomized SVD: the everyday shapes, beside scikit-learn.

Cases (same arrays, one process, rankcore at the bench's thread count; sklearn at that count
and at 1 BLAS thread, its best shown):

1. ``pca_tall``: ``RandomizedPCA(k).fit_transform`` (default ``svd_solver="auto"``: the
   covariance route for tall data) vs ``sklearn.decomposition.PCA(k).fit_transform`` (its
   "auto" picks ``covariance_eigh`` for these shapes), dense float64 500000 x 100 and
   2000000 x 50, k = 10; a grid of smaller shapes (n_samples, n_features, k) checks that no
   shape is slower than sklearn. Accuracy: max relative error of ``explained_variance_``
   against numpy's exact eigenvalues of the covariance (computed once, in float64).
2. ``sparse_small``: ``randomized_svd`` of scipy CSR 20000 x 5000 (192k non-zeros, k=20,
   n_iter=5) and 200000 x 5000 (2M non-zeros, k=20, n_iter=4) vs sklearn's
   ``randomized_svd``; accuracy: top-k singular values relative to sklearn's.

    python benches/bench_pca.py [--quick] [--threads N] [--cases pca_tall,sparse_small]

Results: bench-results/bench_pca.json.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402

SEED = 0
FULL = dict(
    tall=[(500_000, 100, 10), (2_000_000, 50, 10)],
    grid=[(20_000, 50, 5), (100_000, 20, 5), (50_000, 200, 20), (20_000, 1000, 10), (5_000, 500, 50)],
    sparse=[((20_000, 5_000), 192_000, 20, 5), ((200_000, 5_000), 2_000_000, 20, 4)],
    repeat=3,
)
QUICK = dict(tall=[(50_000, 40, 5)], grid=[(5_000, 50, 5)], sparse=[((5_000, 1_000), 20_000, 10, 4)], repeat=2)


def _data(m: int, n: int) -> np.ndarray:
    rng = np.random.default_rng(SEED)
    return rng.standard_normal((m, n)) * np.linspace(3.0, 0.1, n) + 10.0


def pca_rows(rc, cfg, threads) -> list[H.Row]:
    from sklearn.decomposition import PCA

    rows = []
    for m, n, k in cfg["tall"] + cfg["grid"]:
        case = f"PCA {m}x{n} k={k}"
        X = _data(m, n)
        exact = np.linalg.eigvalsh(np.cov(X, rowvar=False))[::-1][:k]
        # numpy's BLAS threads spin for a while after the reference and take cores from
        # whichever tool runs next (rankcore: 0.060-0.067 s at 500000x100 right after it,
        # 0.055 s alone): let them park first
        time.sleep(0.5)
        # millisecond fits: ten times the repeats (and warm-ups), for rankcore and sklearn alike,
        # so that the best time is not decided by the BLAS threads of the reference above
        # still spinning, or by one slow call
        repeat, warmup = (cfg["repeat"], 1) if m * n >= 10**7 else (10 * cfg["repeat"], 5)
        with H.rankcore_threads(rc, threads):
            r = H.time_call(lambda: rc.RandomizedPCA(k, random_state=0).fit(X), repeat=repeat, warmup=warmup)
        est = r.pop("result")
        err = np.max(np.abs(est.explained_variance_ - exact) / exact)
        rows.append(H.Row(case, f"rankcore ({est.svd_solver_})", threads, r["best"], r["median"], r["times"],
                          accuracy=f"{err:.1e}", ours=True))
        for t in H.thread_counts(threads):
            with H.anchor_threads(t):
                a = H.time_call(lambda: PCA(k, random_state=0).fit(X), repeat=repeat, warmup=warmup)
            ref = a.pop("result")
            err = np.max(np.abs(ref.explained_variance_ - exact) / exact)
            rows.append(H.Row(case, f"sklearn PCA ({ref._fit_svd_solver})", t, a["best"], a["median"], a["times"],
                              accuracy=f"{err:.1e}"))
        print(f"  {case} done", flush=True)
    return rows


def sparse_rows(rc, cfg, threads) -> list[H.Row]:
    from sklearn.utils.extmath import randomized_svd

    rows = []
    for (m, n), nnz, k, n_iter in cfg["sparse"]:
        case = f"rSVD CSR {m}x{n} nnz={nnz} k={k} it={n_iter}"
        rng = np.random.default_rng(SEED)
        A = sp.csr_matrix((rng.standard_normal(nnz), (rng.integers(0, m, nnz), rng.integers(0, n, nnz))), shape=(m, n))
        with H.rankcore_threads(rc, threads):
            r = H.time_call(lambda: rc.randomized_svd(A, k, n_iter=n_iter, random_state=0), repeat=cfg["repeat"] + 2)
        S = r.pop("result")[1]
        for t in H.thread_counts(threads):
            with H.anchor_threads(t):
                a = H.time_call(lambda: randomized_svd(A, k, n_iter=n_iter, random_state=0), repeat=cfg["repeat"])
            S_ref = a.pop("result")[1]
            rows.append(H.Row(case, "sklearn randomized_svd", t, a["best"], a["median"], a["times"]))
        rows.append(H.Row(case, "rankcore", threads, r["best"], r["median"], r["times"],
                          accuracy=f"{np.max(np.abs(S - S_ref)) / S_ref[0]:.1e} vs sklearn", ours=True))
        print(f"  {case} done", flush=True)
    return rows


def main(argv=None) -> int:
    args, cases = H.parse_args(__doc__, argv, ("pca_tall", "sparse_small"))
    rc = H.import_rankcore("RandomizedPCA")
    if rc is None:
        return 2
    cfg = QUICK if args.quick else FULL
    machine = H.machine_info(rc)
    print(H.describe_machine(machine))
    threads = args.threads
    rows: list[H.Row] = []
    if "pca_tall" in cases:
        rows += pca_rows(rc, cfg, threads)
    if "sparse_small" in cases:
        rows += sparse_rows(rc, cfg, threads)
    H.fill_ratios(rows)
    H.print_table(rows, title="PCA and small sparse rSVD (ratio = theirs / ours, > 1: rankcore faster)")
    path = H.write_results("bench_pca-quick" if args.quick else "bench_pca",
                           dict(config=dict(cfg, threads=threads), rows=rows), machine)
    print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
