"""Randomized SVD: rankcore beside scikit-learn, fbpca and (if installed) torch.

Cases (all tools on the same arrays, in one process, at the same thread count):

1. dense 10000 x 2000, k=50, n_iter=4, n_oversamples=10, float64 and float32; a low-rank-plus-
   noise matrix with a slowly decaying spectrum. Accuracy: relative error of the top-k singular
   values against numpy's exact SVD, and ||A - U S Vt||_F over the optimal rank-k residual
   (1.0 = optimal). Ceiling: numpy's time for the 2*n_iter+2 products with A the algorithm does.
2. scipy.sparse CSR 200000 x 50000, 10M non-zeros, float64, k=100, n_iter=4: rankcore vs
   scikit-learn (one sklearn call: it takes ~40 s). Accuracy: each tool's residual (computed
   sparsely) and how far its singular values are from rankcore's. Ceiling: one read of A plus
   the dense blocks per product at measured memory bandwidth.
3. Peak RSS above the input for every call, also as a multiple of (m+n)(k+p)*itemsize
   (the "a few (m+n)(k+p) arrays" bound; column ``peak/unit``).

Ratios are theirs / ours on the best time: > 1 means rankcore is faster. Anchors run at the
bench's thread count and at 1 thread (one BLAS thread is often faster for them on small
machines); the summary names each anchor's best.

    python benches/bench_svd.py [--quick] [--threads N] [--cases dense,sparse]

Results: bench-results/bench_svd.json (bench_svd-quick.json with --quick).
"""

from __future__ import annotations

import contextlib
import sys
import time
import traceback
from pathlib import Path

import numpy as np
import scipy.sparse as sp

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402

SEED = 0

FULL = dict(
    dense_shape=(10000, 2000), dense_rank=200, dense_noise=1e-4, dense_k=50,
    sparse_shape=(200000, 50000), sparse_density=0.001, sparse_k=100,
    n_iter=4, n_oversamples=10,
    repeat=3, warmup=2,                      # dense, every tool (memory on 2nd warm-up)
    sparse_repeat=2, sparse_warmup=1,        # sparse, rankcore
    sparse_anchor_repeat=1, sparse_anchor_warmup=0,
)
QUICK = dict(FULL, dense_shape=(2000, 500), dense_rank=150, dense_k=20,
             sparse_shape=(20000, 5000), sparse_k=50, repeat=2, sparse_anchor_repeat=2)


# --------------------------------------------------------------------------------------
# data
# --------------------------------------------------------------------------------------


def make_dense(m: int, n: int, rank: int, noise: float, seed: int = SEED) -> np.ndarray:
    """U diag(s) V^T + noise * G with s_i = 1/(1+i), U, V orthonormal (QR of Gaussians).

    The noise floor sits near s_k for k ~ 50, so the tail is flat and slowly decaying: a
    realistic case where n_iter matters and the tools' accuracy differs.
    """
    rng = np.random.default_rng(seed)
    r = min(rank, m, n)
    U, _ = np.linalg.qr(rng.standard_normal((m, r)))
    V, _ = np.linalg.qr(rng.standard_normal((n, r)))
    s = 1.0 / (1.0 + np.arange(r))
    A = (U * s) @ V.T
    A += noise * rng.standard_normal((m, n))
    return A


def make_sparse(m: int, n: int, density: float, seed: int = SEED) -> sp.csr_matrix:
    """CSR like scipy.sparse.random (uniform [0,1) values), but built in well under a second:
    round(density*n) column indices per row drawn with numpy (duplicates summed)."""
    rng = np.random.default_rng(seed)
    per = max(1, round(density * n))
    idx = np.sort(rng.integers(0, n, size=(m, per), dtype=np.int32), axis=1)
    data = rng.random(m * per)
    indptr = np.arange(0, m * per + 1, per, dtype=np.int32 if m * per < 2**31 else np.int64)
    A = sp.csr_matrix((data, idx.ravel(), indptr), shape=(m, n))
    A.sum_duplicates()
    return A


# --------------------------------------------------------------------------------------
# tools: name -> (runner(A, k, cfg), threads context factory)
# --------------------------------------------------------------------------------------


def tool_rankcore(rc):
    def run(A, k, cfg):
        return rc.randomized_svd(A, k, n_oversamples=cfg["n_oversamples"],
                                 n_iter=cfg["n_iter"], random_state=SEED)
    return run, (lambda n: H.rankcore_threads(rc, n))


def tool_sklearn():
    from sklearn.utils.extmath import randomized_svd

    def run(A, k, cfg):
        return randomized_svd(A, k, n_oversamples=cfg["n_oversamples"], n_iter=cfg["n_iter"],
                              random_state=SEED)
    return run, H.anchor_threads


def tool_fbpca(fbpca):
    def run(A, k, cfg):
        np.random.seed(SEED)  # fbpca draws from numpy's global RNG
        return fbpca.pca(A, k, raw=True, n_iter=cfg["n_iter"], l=k + cfg["n_oversamples"])
    return run, H.anchor_threads


def tool_torch(torch):
    def run(A, k, cfg):
        torch.manual_seed(SEED)
        U, S, V = torch.svd_lowrank(torch.from_numpy(A), q=k + cfg["n_oversamples"],
                                    niter=cfg["n_iter"])
        return U[:, :k].numpy(), S[:k].numpy(), V[:, :k].T.numpy()

    @contextlib.contextmanager
    def threads(n):
        old = torch.get_num_threads()
        torch.set_num_threads(int(n))
        try:
            with H.anchor_threads(n):
                yield
        finally:
            torch.set_num_threads(old)
    return run, threads


# --------------------------------------------------------------------------------------
# accuracy
# --------------------------------------------------------------------------------------


def _f64(U, S, Vt, k):
    return (np.asarray(U, np.float64)[:, :k], np.asarray(S, np.float64)[:k],
            np.asarray(Vt, np.float64)[:k])


def dense_residual(A: np.ndarray, U, S, Vt, block: int = 1024) -> float:
    """||A - U diag(S) Vt||_F, explicitly in float64, a row block at a time."""
    total = 0.0
    for i in range(0, A.shape[0], block):
        R = np.asarray(A[i:i + block], np.float64) - (U[i:i + block] * S) @ Vt
        total += float(np.einsum("ij,ij->", R, R))
    return float(np.sqrt(total))


def sparse_residual(A, U, S, Vt, normA2: float) -> float:
    """||A - U S Vt||_F without forming it: ||A||^2 - 2<A, U S Vt> + ||U S Vt||^2
    (the last term with Gram matrices, so U and V need not be exactly orthonormal)."""
    UtA = (A.T @ U).T                                          # k x n, sparse product
    cross = float(np.einsum("ij,ij->", UtA, S[:, None] * Vt))
    G = (U.T @ U) * (S[:, None] * (Vt @ Vt.T) * S[None, :])
    return float(np.sqrt(max(normA2 - 2.0 * cross + float(G.sum()), 0.0)))


# --------------------------------------------------------------------------------------
# running one tool
# --------------------------------------------------------------------------------------


def run_tool(case, label, runner, ctx, A, k, cfg, threads, repeat, warmup, unit_bytes,
             metrics_fn) -> Row:
    row = H.Row(case=case, tool=label, threads=threads)
    try:
        with ctx(threads):
            t = H.time_call(lambda: runner(A, k, cfg), repeat=repeat, warmup=warmup,
                            memory=True)
    except Exception as e:  # an anchor that fails on this input is reported, not fatal
        row.note = f"error: {type(e).__name__}: {str(e)[:80]}"
        traceback.print_exc()
        return row
    U, S, Vt = t.pop("result")
    row.best, row.median, row.times = t["best"], t["median"], t["times"]
    row.peak_mib = t.get("peak_mib")
    row.peak_units = row.peak_mib * H.MiB / unit_bytes if row.peak_mib is not None else None
    row.metrics = dict(memory_on=t.get("memory_on"), out_dtype=str(np.asarray(U).dtype))
    row.metrics.update(metrics_fn(*_f64(U, S, Vt, k)))
    row.metrics["S"] = np.asarray(S, np.float64)[:k]  # kept for cross-tool comparison
    if row.metrics["out_dtype"] != str(A.dtype):
        row.note = f"returns {row.metrics['out_dtype']}"
    print(f"  {case:<18} {label:<10} thr={threads}  best {row.best:.3f} s  "
          f"peak {row.peak_mib:.1f} MiB", flush=True)
    return row


Row = H.Row


def anchors_for(case_kind: str, optional: dict) -> list[tuple[str, object]]:
    """[(name, tool or None if not installed)] for this case kind."""
    tools = [("sklearn", tool_sklearn())]
    if case_kind == "dense":
        tools.append(("fbpca", tool_fbpca(optional["fbpca"]) if optional["fbpca"] else None))
        tools.append(("torch", tool_torch(optional["torch"]) if optional["torch"] else None))
    return tools


# --------------------------------------------------------------------------------------
# cases
# --------------------------------------------------------------------------------------


def dense_cases(rc, cfg, threads, optional, out: dict) -> list[Row]:
    m, n = cfg["dense_shape"]
    k, p, q = cfg["dense_k"], cfg["n_oversamples"], cfg["n_iter"]
    kp = k + p
    t0 = time.perf_counter()
    A64 = make_dense(m, n, cfg["dense_rank"], cfg["dense_noise"])
    t_gen = time.perf_counter() - t0
    t0 = time.perf_counter()
    s_true = np.linalg.svd(A64, compute_uv=False)  # exact reference, computed once
    t_exact = time.perf_counter() - t0
    print(f"dense {m}x{n}: built in {t_gen:.1f} s, exact SVD (values) {t_exact:.1f} s",
          flush=True)
    opt = float(np.sqrt(np.sum(s_true[k:] ** 2)))
    normA = float(np.sqrt(np.sum(s_true ** 2)))
    out["dense"] = dict(shape=[m, n], k=k, n_oversamples=p, n_iter=q, rank=cfg["dense_rank"],
                        noise=cfg["dense_noise"], build_s=t_gen, exact_svd_s=t_exact,
                        optimal_residual_rel=opt / normA, s_true_topk=s_true[:k],
                        s_true_k_plus=s_true[k:k + 10])
    rows: list[Row] = []
    for dtype in (np.float64, np.float32):
        A = A64 if dtype == np.float64 else A64.astype(np.float32)
        name = np.dtype(dtype).name
        case = f"dense {m}x{n} {'f64' if dtype == np.float64 else 'f32'}"
        unit = (m + n) * kp * A.itemsize

        def metrics(U, S, Vt, A=A):
            err = np.abs(S - s_true[:k]) / s_true[:k]
            res = dense_residual(A, U, S, Vt)
            return dict(sv_rel_err_max=float(err.max()), sv_rel_err_mean=float(err.mean()),
                        residual_rel=res / normA, residual_ratio=res / opt)

        def acc(r):
            mt = r.metrics
            return f"sv {mt['sv_rel_err_max']:.1e} res x{mt['residual_ratio']:.5f}"

        case_rows = []
        run, ctx = tool_rankcore(rc)
        r = run_tool(case, "rankcore", run, ctx, A, k, cfg, threads, cfg["repeat"],
                     cfg["warmup"], unit, metrics)
        r.ours = True
        case_rows.append(r)
        for tname, tool in anchors_for("dense", optional):
            if tool is None:
                case_rows.append(H.missing_row(case, tname))
                continue
            for nt in H.thread_counts(threads):
                case_rows.append(run_tool(case, tname, tool[0], tool[1], A, k, cfg, nt,
                                          cfg["repeat"], cfg["warmup"], unit, metrics))
        # ceiling: numpy's time for the same products (q+1 of A @ X, q+1 of A.T @ Y)
        rng = np.random.default_rng(1)
        X = rng.standard_normal((n, kp)).astype(dtype)
        Y = rng.standard_normal((m, kp)).astype(dtype)
        t_ax = H.matmul_time(A, X, threads)
        t_aty = H.matmul_time(A.T, Y, threads)
        nprod = 2 * q + 2
        ceiling = (q + 1) * (t_ax + t_aty)
        gflops = nprod * 2.0 * m * n * kp / ceiling / 1e9
        crow = H.Row(case=case, tool="ceiling", threads=threads, best=ceiling,
                     note=f"numpy GEMM, {nprod} products with A, {gflops:.0f} GFLOP/s",
                     metrics=dict(t_AX=t_ax, t_ATY=t_aty, products=nprod, gflops=gflops))
        if r.best:
            r.note = (r.note + "; " if r.note else "") + f"{r.best / ceiling:.2f}x ceiling"
            r.metrics["time_over_ceiling"] = r.best / ceiling
        for row in case_rows:
            if row.best is not None:
                row.accuracy = acc(row)
        rows += case_rows + [crow]
        out["dense"][f"ceiling_{name}"] = crow.metrics | dict(time=ceiling)
        out["dense"][f"unit_bytes_{name}"] = unit
        del A
    return rows


def sparse_case(rc, cfg, threads, optional, out: dict, full_anchors: bool) -> list[Row]:
    m, n = cfg["sparse_shape"]
    k, p, q = cfg["sparse_k"], cfg["n_oversamples"], cfg["n_iter"]
    kp = k + p
    t0 = time.perf_counter()
    A = make_sparse(m, n, cfg["sparse_density"])
    t_gen = time.perf_counter() - t0
    print(f"sparse {m}x{n} nnz={A.nnz}: built in {t_gen:.1f} s", flush=True)
    case = f"sparse {m}x{n} f64"
    normA2 = float(np.dot(A.data, A.data))
    unit = (m + n) * kp * 8
    a_bytes = A.data.nbytes + A.indices.nbytes + A.indptr.nbytes

    def metrics(U, S, Vt):
        res = sparse_residual(A, U, S, Vt, normA2)
        return dict(residual_rel=res / np.sqrt(normA2), energy=float(np.sum(S ** 2)) / normA2)

    rows: list[Row] = []
    run, ctx = tool_rankcore(rc)
    ours = run_tool(case, "rankcore", run, ctx, A, k, cfg, threads, cfg["sparse_repeat"],
                    cfg["sparse_warmup"], unit, metrics)
    ours.ours = True
    rows.append(ours)
    for tname, tool in anchors_for("sparse", optional):
        if tool is None:
            rows.append(H.missing_row(case, tname))
            continue
        counts = H.thread_counts(threads) if full_anchors else [threads]
        for nt in counts:
            rows.append(run_tool(case, tname, tool[0], tool[1], A, k, cfg, nt,
                                 cfg["sparse_anchor_repeat"], cfg["sparse_anchor_warmup"],
                                 unit, metrics))
    timed = [r for r in rows if r.best is not None]
    best_res = min(r.metrics["residual_rel"] for r in timed) if timed else None
    s_ours = ours.metrics.get("S") if ours.best is not None else None
    for r in timed:
        r.metrics["residual_over_best"] = r.metrics["residual_rel"] / best_res
        r.accuracy = f"res {r.metrics['residual_rel']:.6f} x{r.metrics['residual_over_best']:.5f}"
        if s_ours is not None and r is not ours:
            d = float(np.max(np.abs(r.metrics["S"] - s_ours) / s_ours))
            r.metrics["sv_rel_diff_vs_rankcore"] = d
            r.note = (r.note + "; " if r.note else "") + f"sv rel diff vs rankcore {d:.1e}"
    # ceiling: memory traffic of 2q+2 products, each reading A once and a block in and out
    bw = out["memory_bandwidth"]["gbps"] * 1e9
    per_product = a_bytes + (m + n) * kp * 8
    nprod = 2 * q + 2
    ceiling = nprod * per_product / bw
    crow = H.Row(case=case, tool="ceiling", threads=threads, best=ceiling,
                 note=f"memory: {nprod} x (read A + {kp}-col blocks) at "
                      f"{bw / 1e9:.1f} GB/s",
                 metrics=dict(products=nprod, bytes_per_product=per_product))
    if ours.best:
        ours.note = (ours.note + "; " if ours.note else "") + f"{ours.best / ceiling:.1f}x ceiling"
        ours.metrics["time_over_ceiling"] = ours.best / ceiling
    rows.append(crow)
    out["sparse"] = dict(shape=[m, n], nnz=A.nnz, density=cfg["sparse_density"], k=k,
                         n_oversamples=p, n_iter=q, build_s=t_gen, input_bytes=a_bytes,
                         unit_bytes=unit, ceiling=crow.metrics | dict(time=ceiling))
    return rows


# --------------------------------------------------------------------------------------
# summary and main
# --------------------------------------------------------------------------------------


def summarize(rows: list[Row]) -> list[dict]:
    """Per case and anchor: the anchor at its best thread count vs rankcore."""
    out = []
    ours = {r.case: r for r in rows if r.ours and r.best}
    for case in dict.fromkeys(r.case for r in rows):
        o = ours.get(case)
        for tool in dict.fromkeys(r.tool for r in rows if r.case == case):
            if tool in ("rankcore", "ceiling"):
                continue
            timed = [r for r in rows if r.case == case and r.tool == tool and r.best]
            if not timed:
                status = next(r.note for r in rows if r.case == case and r.tool == tool)
                out.append(dict(case=case, tool=tool, status=status))
                continue
            b = min(timed, key=lambda r: r.best)
            out.append(dict(case=case, tool=tool, best_threads=b.threads, best=b.best,
                            ratio=(b.best / o.best) if o else None))
    return out


def main(argv=None) -> int:
    def full_anchors_option(ap):
        ap.add_argument("--full-anchors", action="store_true",
                        help="also run sklearn at 1 thread on the sparse case (adds ~40 s)")

    args, cases = H.parse_args(__doc__, argv, ("dense", "sparse"), extra=full_anchors_option)
    rc = H.import_rankcore("randomized_svd")
    if rc is None:
        return 2
    optional = {name: H.optional_import(name) for name in ("fbpca", "torch")}
    cfg = QUICK if args.quick else FULL
    full_anchors = args.full_anchors or args.quick

    machine = H.machine_info(rc, extra_packages=("fbpca", "torch"))
    print(H.describe_machine(machine))
    for name, mod in optional.items():
        if mod is None:
            print(f"{name}: {H.NA}")
    threads = args.threads
    print(f"threads: {threads} (rankcore and anchors); anchors also at 1\n", flush=True)

    t_start = time.perf_counter()
    out: dict = dict(config=dict(cfg, quick=args.quick, threads=threads, seed=SEED,
                                 cases=sorted(cases)))
    out["memory_bandwidth"] = H.memory_bandwidth(threads=threads)
    out["gemm"] = {d: H.gemm_ceiling(2000, 2000, 2000, d, threads)
                   for d in ("float64", "float32")}
    print(f"memory read {out['memory_bandwidth']['gbps']:.1f} GB/s; square GEMM 2000^3 "
          f"{out['gemm']['float64']['gflops']:.0f} GFLOP/s f64, "
          f"{out['gemm']['float32']['gflops']:.0f} f32 ({threads} threads)\n", flush=True)

    rows: list[Row] = []
    if "dense" in cases:
        rows += dense_cases(rc, cfg, threads, optional, out)
    if "sparse" in cases:
        rows += sparse_case(rc, cfg, threads, optional, out, full_anchors)
    H.fill_ratios(rows)
    for r in rows:  # the ceiling row's "ratio" would be its efficiency: leave it blank
        if r.tool == "ceiling":
            r.ratio = None

    H.print_table(rows, title="randomized SVD (ratio = theirs / ours, > 1: rankcore faster; "
                              "peak/unit = peak / ((m+n)(k+p) itemsize))")
    summary = summarize(rows)
    print("anchors at their best thread count:")
    for s in summary:
        if "status" in s:
            print(f"  {s['case']:<22} {s['tool']:<8} {s['status']}")
        else:
            ratio = f"ratio {s['ratio']:.2f}" if s["ratio"] else ""
            print(f"  {s['case']:<22} {s['tool']:<8} {s['best_threads']} thread(s) "
                  f"{s['best']:.3f} s  {ratio}")
    elapsed = time.perf_counter() - t_start
    for r in rows:
        r.metrics.pop("S", None)
    out.update(rows=[r.as_dict() for r in rows], summary=summary, elapsed_s=elapsed)
    path = H.write_results("bench_svd-quick" if args.quick else "bench_svd", out, machine)
    print(f"\nwrote {path.relative_to(H.REPO_ROOT)} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
