"""Random projections and FastRP: rankcore beside scikit-learn and a scipy FastRP reference.

Cases (all tools on the same arrays, in one process, at the same thread count):

1. dense 20000 x 10000 float64 -> 256 components, sparse (density 1/sqrt(d)) and Gaussian:
   rankcore's estimators vs ``sklearn.random_projection`` (fit_transform, which is what users
   time: sklearn builds its matrix in ``fit``). Ceiling: one read of the input at measured
   memory bandwidth (sparse), and numpy's GEMM of the same shape (Gaussian, flop-bound).
2. scipy.sparse CSR 100000 x 100000 with 0.01% non-zeros -> 256: sparse output (sklearn's
   default) and dense output, and Gaussian. Ceiling: one read of the input plus one write
   of the dense output.
3. FastRP on a synthetic power-law directed graph, 10^6 nodes and 10^7 edges, 128 dims,
   4 iterations (the paper's variant and defaults): rankcore vs the reference algorithm
   written with scipy.sparse as the paper's code does (``reference_fastrp`` below: sklearn's
   SparseRandomProjection for R, scipy's CSR x dense products, every power kept in a list,
   weighted sum, column standardisation). Peak memory of both.
4. Quality: node classification (logistic regression on the embeddings, micro-F1, 5-fold
   cross-validation over 5 seeds) on a stochastic block model graph and on networkx's
   karate club (the real graph networkx ships with node labels): reference vs rankcore.

Accuracy columns: for projections, the mean |ratio - 1| of squared pairwise distances of
200 sampled pairs (both tools should show the same distortion); for FastRP, micro-F1.

    python benches/bench_projection.py [--quick] [--threads N] [--cases dense,csr,fastrp,quality]

Results: bench-results/bench_projection.json (bench_projection-quick.json with --quick).
"""

from __future__ import annotations

import sys
import time
import traceback
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402

SEED = 0
FULL = dict(dense_shape=(20000, 10000), k=256, csr_n=100000, csr_density=1e-4,
            graph_nodes=10**6, graph_edges=10**7, fastrp_k=128, repeat=3, warmup=1,
            quality_seeds=5, sbm_sizes=(300, 300, 300, 300))
QUICK = dict(FULL, dense_shape=(4000, 2000), csr_n=20000, graph_nodes=10**5, graph_edges=10**6,
             repeat=2, quality_seeds=2, sbm_sizes=(100, 100, 100))
WEIGHTS = (1.0, 1.0, 7.81, 45.28)
BETA = -0.628


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------


def make_csr(n: int, density: float, seed: int = SEED) -> sp.csr_matrix:
    """n x n CSR with round(density * n) uniform columns per row, built with numpy (not
    scipy.sparse.random, which is slow and memory-hungry at this size)."""
    rng = np.random.default_rng(seed)
    per = max(1, round(density * n))
    idx = np.sort(rng.integers(0, n, size=(n, per), dtype=np.int32), axis=1)
    A = sp.csr_matrix((rng.random(n * per), idx.ravel(), np.arange(0, n * per + 1, per, dtype=np.int64)),
                      shape=(n, n))
    A.sum_duplicates()
    return A


def power_law_graph(n: int, m: int, exponent: float = 0.8, seed: int = SEED) -> sp.csr_array:
    """A directed graph with m edges whose endpoints are drawn with probability proportional
    to (rank + 1)^-exponent (node ranks shuffled separately for sources and targets): a
    heavy-tailed degree distribution. Duplicate edges are summed."""
    rng = np.random.default_rng(seed)
    p = (np.arange(1, n + 1, dtype=np.float64)) ** -exponent
    cdf = np.cumsum(p / p.sum())
    src = rng.permutation(n)[np.minimum(np.searchsorted(cdf, rng.random(m)), n - 1)]
    dst = rng.permutation(n)[np.minimum(np.searchsorted(cdf, rng.random(m)), n - 1)]
    A = sp.csr_array((np.ones(m), (src, dst)), shape=(n, n))
    A.sum_duplicates()
    return A


# --------------------------------------------------------------------------------------
# the scipy reference FastRP (the paper's code, written plainly)
# --------------------------------------------------------------------------------------


def reference_fastrp(A, dim, weights=WEIGHTS, beta=BETA, seed=SEED):
    """Chen et al.'s fastrp_projection + fastrp_merge (input_matrix="trans",
    projection_method="sparse", normalization=False): R from sklearn's
    SparseRandomProjection, N1 = D^-1 A L R, N_i = D^-1 A N_{i-1} with scipy, every N_i
    kept, U = sum w_i N_i, then sklearn.preprocessing.scale."""
    from sklearn.preprocessing import scale
    from sklearn.random_projection import SparseRandomProjection

    n = A.shape[0]
    deg = np.asarray(A.sum(axis=1)).ravel()
    inv = np.divide(1.0, deg, out=np.zeros_like(deg), where=deg > 0)
    M = sp.csr_matrix(sp.diags(inv) @ A)
    L = np.power(deg, beta, out=np.ones_like(deg), where=deg > 0)
    tr = SparseRandomProjection(n_components=dim, random_state=seed, dense_output=True)
    tr.fit(M)
    tr.components_ = tr.components_ @ sp.diags(L)
    cur = tr.transform(M)
    U_list = [cur]
    for _ in range(2, len(weights) + 1):
        cur = M @ cur
        U_list.append(cur)
    U = np.zeros_like(U_list[0])
    for Ui, w in zip(U_list, weights):
        U += Ui * w
    return scale(U)


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def distortion(X, Y, pairs=200, seed=1):
    rng = np.random.default_rng(seed)
    n = X.shape[0]
    i, j = rng.integers(0, n, pairs), rng.integers(0, n, pairs)
    keep = i != j
    i, j = i[keep], j[keep]

    def rows(Z, idx):
        Z = Z[idx]
        return Z.toarray() if sp.issparse(Z) else np.asarray(Z)

    dx = ((rows(X, i) - rows(X, j)) ** 2).sum(1)
    dy = ((rows(Y, i) - rows(Y, j)) ** 2).sum(1)
    ok = dx > 0
    return float(np.mean(np.abs(dy[ok] / dx[ok] - 1)))


def run(case, tool, fn, threads, ctx, cfg, *, ours=False, accuracy=None, repeat=None, warmup=None):
    row = H.Row(case=case, tool=tool, threads=threads, ours=ours)
    try:
        with ctx(threads):
            t = H.time_call(fn, repeat=repeat or cfg["repeat"], warmup=cfg["warmup"] if warmup is None else warmup,
                            memory=True)
    except Exception as e:  # an anchor failing on this input is reported, not fatal
        traceback.print_exc()
        row.note = f"error: {type(e).__name__}: {str(e)[:80]}"
        return row, None
    out = t.pop("result")
    row.best, row.median, row.times, row.peak_mib = t["best"], t["median"], t["times"], t.get("peak_mib")
    if accuracy is not None:
        row.accuracy = accuracy(out)
    print(f"  {case:<34} {tool:<24} thr={threads} best {row.best:.3f} s peak {row.peak_mib:.0f} MiB {row.accuracy}",
          flush=True)
    return row, out


# --------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------


def dense_cases(rc, cfg, threads, bw, out):
    from sklearn import random_projection as skrp

    m, d = cfg["dense_shape"]
    k = cfg["k"]
    X = np.random.default_rng(SEED).standard_normal((m, d))
    read = X.nbytes / bw
    rows = []
    acc = lambda Y: f"dist {distortion(X, Y):.4f}"  # noqa: E731
    rc_ctx = lambda n: H.rankcore_threads(rc, n)  # noqa: E731
    for kind, ours_cls, sk_cls in [("sparse", rc.SparseRandomProjection, skrp.SparseRandomProjection),
                                   ("gaussian", rc.GaussianRandomProjection, skrp.GaussianRandomProjection)]:
        case = f"dense {m}x{d} f64 -> {k} {kind}"
        r, _ = run(case, "rankcore", lambda: ours_cls(k, random_state=SEED).fit_transform(X), threads, rc_ctx, cfg,
                   ours=True, accuracy=acc)
        rows.append(r)
        for nt in H.thread_counts(threads):
            rows.append(run(case, "sklearn", lambda: sk_cls(k, random_state=SEED).fit_transform(X), nt,
                            H.anchor_threads, cfg, accuracy=acc, repeat=2)[0])
        if kind == "sparse":
            ceiling, note = read, f"one read of X ({X.nbytes / 2**20:.0f} MiB) at {bw / 1e9:.1f} GB/s"
        else:
            G = np.random.default_rng(1).standard_normal((d, k))
            ceiling = H.matmul_time(X, G, threads, repeat=2)
            note = f"numpy GEMM X @ G ({2 * m * d * k / ceiling / 1e9:.0f} GFLOP/s): flop-bound"
        rows.append(H.Row(case=case, tool="ceiling", threads=threads, best=ceiling, note=note))
        if r.best:
            r.note = f"{r.best / ceiling:.2f}x ceiling"
    out["dense"] = dict(shape=[m, d], k=k, read_s=read)
    return rows


def csr_cases(rc, cfg, threads, bw, out):
    from sklearn import random_projection as skrp

    n, k = cfg["csr_n"], cfg["k"]
    X = make_csr(n, cfg["csr_density"])
    in_bytes = X.data.nbytes + X.indices.nbytes + X.indptr.nbytes
    print(f"CSR {n}x{n} nnz={X.nnz}", flush=True)
    rc_ctx = lambda nt: H.rankcore_threads(rc, nt)  # noqa: E731
    acc = lambda Y: f"dist {distortion(X, Y):.4f}"  # noqa: E731
    rows = []
    for label, ours, theirs in [
        ("sparse, CSR out", lambda: rc.SparseRandomProjection(k, random_state=SEED).fit_transform(X),
         lambda: skrp.SparseRandomProjection(k, random_state=SEED).fit_transform(X)),
        ("sparse, dense out", lambda: rc.SparseRandomProjection(k, dense_output=True, random_state=SEED).fit_transform(X),
         lambda: skrp.SparseRandomProjection(k, dense_output=True, random_state=SEED).fit_transform(X)),
        ("gaussian", lambda: rc.GaussianRandomProjection(k, random_state=SEED).fit_transform(X),
         lambda: skrp.GaussianRandomProjection(k, random_state=SEED).fit_transform(X)),
    ]:
        case = f"CSR {n}^2 0.01% -> {k} {label}"
        r, _ = run(case, "rankcore", ours, threads, rc_ctx, cfg, ours=True, accuracy=acc)
        rows.append(r)
        for nt in H.thread_counts(threads):
            rows.append(run(case, "sklearn", theirs, nt, H.anchor_threads, cfg, accuracy=acc, repeat=2)[0])
        ceiling = (in_bytes + (n * k * 8 if "dense" in label or label == "gaussian" else 0)) / bw
        rows.append(H.Row(case=case, tool="ceiling", threads=threads, best=ceiling,
                          note="read X" + (" + write dense output" if "dense" in label or label == "gaussian" else "")))
    out["csr"] = dict(n=n, nnz=int(X.nnz), k=k)
    return rows


def fastrp_case(rc, cfg, threads, bw, out):
    n, m, k = cfg["graph_nodes"], cfg["graph_edges"], cfg["fastrp_k"]
    t0 = time.perf_counter()
    A = power_law_graph(n, m)
    deg = np.diff(A.indptr)
    print(f"graph {n} nodes, {A.nnz} edges (max out-degree {deg.max()}), built in {time.perf_counter() - t0:.1f} s",
          flush=True)
    case = f"FastRP {n} nodes {A.nnz} edges k={k} q=4"
    rc_ctx = lambda nt: H.rankcore_threads(rc, nt)  # noqa: E731
    rows = []
    cfg1 = dict(cfg, warmup=1)
    for dtype in (np.float64, np.float32):
        r, U = run(case, f"rankcore paper {np.dtype(dtype).name}",
                   lambda: rc.fastrp(A, k, variant="paper", dtype=dtype, random_state=SEED), threads, rc_ctx, cfg1,
                   ours=dtype == np.float64, repeat=2)
        rows.append(r)
        del U
    r, U = run(case, "rankcore gds float32", lambda: rc.fastrp(A, k, variant="gds", dtype=np.float32, random_state=SEED),
               threads, rc_ctx, cfg1, repeat=2)
    rows.append(r)
    del U
    r, U = run(case, "scipy reference float64", lambda: reference_fastrp(A, k), threads, H.anchor_threads, cfg,
               repeat=1, warmup=0)
    rows.append(r)
    del U
    out["fastrp"] = dict(n=n, nnz=int(A.nnz), k=k, weights=WEIGHTS, beta=BETA)
    rows += fastrp_package_case(rc, A, k, threads, cfg, bw)
    return rows


def fastrp_package_case(rc, A, k, threads, cfg, bw):
    """The GDS variant beside the ``fastrp`` package (Rust): the graph symmetrised (about
    2 m non-zeros), iteration weights (0, 1, 1), float32. Ceiling: the rows gathered (one
    k-vector per non-zero and iteration) at the measured read bandwidth; gathers of 512-byte
    rows scattered over a 512 MB matrix run below it."""
    S = (A + A.T).tocsr()
    S.sum_duplicates()
    S.data[:] = 1.0
    S = sp.csr_matrix(S)
    n = S.shape[0]
    weights = (0.0, 1.0, 1.0)
    case = f"FastRP gds {n} nodes {S.nnz} nnz k={k} q=3"
    cfg1 = dict(cfg, warmup=1)
    try:
        import fastrp
    except ImportError:
        fastrp = None
        print("  fastrp package not installed: pip install fastrp", flush=True)
    data32 = S.data.astype(np.float32)
    # Two rounds, each tool's calls in turn, best of both: the time of a call that faults in
    # 1 GB of fresh pages varies by +-15% with how fragmented memory is (huge pages), and the
    # first round runs right after the scipy reference's 7 GB peak.
    rounds: dict[str, list] = {}
    for _ in range(2):
        r, _ = run(case, "rankcore gds float32",
                   lambda: rc.fastrp(S, k, variant="gds", iteration_weights=weights, dtype=np.float32,
                                     random_state=SEED),
                   threads, lambda nt: H.rankcore_threads(rc, nt), cfg1, ours=True, repeat=3)
        rounds.setdefault("ours", []).append(r)
        if fastrp is not None:
            r, _ = run(case, f"fastrp {getattr(fastrp, '__version__', '')}".strip(),
                       lambda: fastrp.fit_csr(S.indptr, S.indices, data32, n, k, weights=list(weights),
                                              seed=SEED, undirected=False),
                       threads, H.anchor_threads, cfg1, repeat=3)
            rounds.setdefault("fastrp", []).append(r)
    rows = [_best_round(rs) for rs in rounds.values()]
    gathered = S.nnz * k * 4 * len(weights)
    rows.append(H.Row(case=case, tool="ceiling", threads=threads, best=gathered / bw,
                      note=f"gather {gathered / 1e9:.1f} GB at read bandwidth"))
    return rows


def _best_round(rows):
    """One row from the rounds of one tool: the fastest round's, with every round's times."""
    ok = [r for r in rows if r.best is not None]
    if not ok:
        return rows[0]
    best = min(ok, key=lambda r: r.best)
    best.times = [t for r in ok for t in (r.times or [])]
    best.median = float(np.median(best.times)) if best.times else best.median
    best.note = (best.note + "; " if best.note else "") + f"best of {len(rows)} interleaved rounds"
    return best


def micro_f1(U, y, seeds):
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_score

    scores = []
    for s in range(seeds):
        cv = StratifiedKFold(5, shuffle=True, random_state=s)
        scores.append(cross_val_score(LogisticRegression(max_iter=3000), U, y, cv=cv, scoring="f1_micro").mean())
    return float(np.mean(scores)), float(np.std(scores))


def quality_case(rc, cfg, out):
    nx = H.optional_import("networkx")
    if nx is None:
        return [H.missing_row("quality", "networkx")]
    sizes = list(cfg["sbm_sizes"])
    b = len(sizes)
    p = np.full((b, b), 0.004) + np.eye(b) * 0.03
    graphs = {
        "SBM " + "x".join(map(str, sizes)): (nx.stochastic_block_model(sizes, p.tolist(), seed=0),
                                               np.repeat(np.arange(b), sizes)),
    }
    K = nx.karate_club_graph()
    graphs["karate club"] = (K, np.array([K.nodes[v]["club"] == "Officer" for v in K], dtype=int))
    rows = []
    res = {}
    for name, (G, y) in graphs.items():
        A = nx.to_scipy_sparse_array(G, format="csr", dtype=np.float64)
        k = 32 if G.number_of_nodes() < 100 else 64
        embs = {
            "scipy reference (paper)": lambda seed: reference_fastrp(A, k, seed=seed),
            "rankcore paper": lambda seed: rc.fastrp(A, k, variant="paper", random_state=seed),
            "rankcore gds": lambda seed: rc.fastrp(A, k, variant="gds", random_state=seed),
        }
        for tool, make in embs.items():
            # Average over embedding seeds too: the random matrix is part of the noise.
            scores = [micro_f1(make(seed), y, cfg["quality_seeds"]) for seed in range(3)]
            mean = float(np.mean([s[0] for s in scores]))
            spread = float(np.std([s[0] for s in scores]) + np.mean([s[1] for s in scores]))
            row = H.Row(case=f"quality {name} (k={k})", tool=tool, accuracy=f"micro-F1 {mean:.3f} +- {spread:.3f}")
            rows.append(row)
            res[f"{name}/{tool}"] = dict(micro_f1=mean, spread=spread)
            print(f"  {row.case:<34} {tool:<24} {row.accuracy}", flush=True)
    out["quality"] = res
    return rows


def main(argv=None) -> int:
    args, cases = H.parse_args(__doc__, argv, ("dense", "csr", "fastrp", "quality"))
    rc = H.import_rankcore("fastrp")
    if rc is None:
        return 2
    cfg = QUICK if args.quick else FULL
    machine = H.machine_info(rc, extra_packages=("networkx",))
    print(H.describe_machine(machine))
    threads = args.threads
    out: dict = dict(config=dict(cfg, quick=args.quick, threads=threads, cases=sorted(cases)))
    out["memory_bandwidth"] = H.memory_bandwidth(threads=threads)
    bw = out["memory_bandwidth"]["gbps"] * 1e9
    print(f"threads: {threads}; memory read {bw / 1e9:.1f} GB/s (the ceiling: one read of the input)\n", flush=True)
    t_start = time.perf_counter()
    rows: list[H.Row] = []
    if "dense" in cases:
        rows += dense_cases(rc, cfg, threads, bw, out)
    if "csr" in cases:
        rows += csr_cases(rc, cfg, threads, bw, out)
    if "fastrp" in cases:
        rows += fastrp_case(rc, cfg, threads, bw, out)
    if "quality" in cases:
        rows += quality_case(rc, cfg, out)
    H.fill_ratios(rows)
    for r in rows:
        if r.tool == "ceiling" or r.tool.startswith("rankcore"):
            r.ratio = None if r.tool == "ceiling" or not r.ours else r.ratio
    H.print_table(rows, title="random projections and FastRP (ratio = theirs / ours, > 1: rankcore faster)")
    elapsed = time.perf_counter() - t_start
    out.update(rows=[r.as_dict() for r in rows], elapsed_s=elapsed)
    path = H.write_results("bench_projection-quick" if args.quick else "bench_projection", out, machine)
    print(f"wrote {path.relative_to(H.REPO_ROOT)} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
