"""Tucker decompositions and FLoRA adapters: rankcore beside TensorLy (numpy backend).

Cases (same tensors, one process, same thread count):

1. ``hooi``: 200 x 200 x 200 float64 (rank-(10,10,10) signal plus noise), rank (10, 10, 10),
   HOOI from the SVD initialisation, both tools at their defaults (tol 1e-4 on the change of
   relative error, at most 100 iterations), and again with exactly 10 iterations. Accuracy:
   the relative error of each result, recomputed from its reconstruction in float64, so the
   comparison is at equal fit. Target: >= 5x faster than TensorLy.
2. ``partial``: the same tensor, modes (0, 1) only, rank (10, 10): TensorLy's
   ``partial_tucker`` vs ``rankcore.tucker(modes=...)``.
3. ``flora``: ΔW = G x_k U_k for convolution-shaped weights 64x64x3x3 (ranks 16,16,3,3),
   256x256x3x3 (ranks 32,32,3,3) and 512x512x3x3 (ranks 64,64,3,3): ``flora.delta`` and
   ``flora.delta_vjp`` beside a plain numpy
   einsum (``optimize=True``) and the GEMM ceiling: the flops of the chain at the measured
   GEMM rate (numpy, square 2000^3). Target: within 2x of the ceiling from 256x256x3x3 on.
4. ``large``: a 400 x 400 x 400 float32 tensor, rank (10, 10, 10), ``svd="randomized"``
   (ST-HOSVD, and HOOI with 3 iterations): time and peak memory above the input, as a
   multiple of the tensor's size (column peak/unit; target < 2).

Ratios are theirs / ours on the best time: > 1 means rankcore is faster.

    python benches/bench_tucker.py [--quick] [--threads N] [--cases hooi,partial,flora,large]

Results: bench-results/bench_tucker.json (bench_tucker-quick.json with --quick).
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402
from _harness import Row  # noqa: E402

SEED = 0
FULL = dict(shape=(200, 200, 200), rank=(10, 10, 10), noise=0.1, repeat=3, warmup=1,
            large_shape=(400, 400, 400), flora_repeat=100, flora_warmup=50,
            flora=[((64, 64, 3, 3), (16, 16, 3, 3)), ((256, 256, 3, 3), (32, 32, 3, 3)),
                   ((512, 512, 3, 3), (64, 64, 3, 3))])
QUICK = dict(FULL, shape=(60, 60, 60), rank=(5, 5, 5), repeat=2, large_shape=(120, 120, 120),
             flora_repeat=5, flora_warmup=5)
CASES = ("hooi", "partial", "flora", "large")


def low_rank_plus_noise(shape, rank, noise, dtype=np.float64, seed=SEED):
    """core x_k U_k with Gaussian core and orthonormal U_k, scaled to unit RMS, plus noise."""
    rng = np.random.default_rng(seed)
    t = rng.standard_normal(rank)
    for k, (s, r) in enumerate(zip(shape, rank)):
        u, _ = np.linalg.qr(rng.standard_normal((s, r)))
        t = np.moveaxis(np.tensordot(u, t, axes=(1, k)), 0, k)
    t *= np.sqrt(t.size) / np.linalg.norm(t)
    t += noise * rng.standard_normal(shape)
    return t.astype(dtype, copy=False)


def rel_error(tensor, core, factors, modes):
    rec = core
    for f, m in zip(factors, modes):
        rec = np.moveaxis(np.tensordot(f, rec, axes=(1, m)), 0, m)
    return float(np.linalg.norm((rec - tensor).ravel()) / np.linalg.norm(tensor.ravel()))


def _row(case, tool, threads, t, acc="", ours=False, note="", metrics=None):
    return Row(case=case, tool=tool, threads=threads, best=t["best"], median=t["median"],
               times=t["times"], accuracy=acc, ours=ours, note=note, metrics=metrics or {})


def hooi_cases(rc, tl_dec, cfg, threads, partial=False):
    x = low_rank_plus_noise(cfg["shape"], cfg["rank"], cfg["noise"])
    modes = [0, 1] if partial else [0, 1, 2]
    rank = [cfg["rank"][m] for m in modes]
    rows = []
    settings = [("default tol", dict(tol=1e-4, n_iter_max=100))]
    if not partial:
        settings.append(("10 iterations", dict(tol=0.0, n_iter_max=10)))
    for label, kw in settings:
        case = f"{'partial' if partial else 'hooi'} {'x'.join(map(str, cfg['shape']))} ({label})"
        with H.rankcore_threads(rc, threads):
            t = H.time_call(lambda: rc.tucker(x, rank, modes=modes, **kw),
                            repeat=cfg["repeat"], warmup=cfg["warmup"])
        tt = t["result"]
        err = rel_error(x, tt.core, tt.factors, modes)
        rows.append(_row(case, "rankcore", threads, t, f"rel err {err:.6f}", ours=True,
                         note=f"{tt.n_iter} iterations"))
        if tl_dec is None:
            rows.append(H.missing_row(case, "tensorly"))
            continue
        for n in H.thread_counts(threads):
            with H.anchor_threads(n):
                if partial:
                    fn = lambda: tl_dec.partial_tucker(x, rank, modes=modes, init="svd", **kw)[0]  # noqa: E731
                else:
                    fn = lambda: tl_dec.tucker(x, rank, init="svd", **kw)  # noqa: E731
                t = H.time_call(fn, repeat=1 if n != threads else cfg["repeat"], warmup=0)
            core, factors = t["result"]
            err = rel_error(x, core, factors, modes)
            rows.append(_row(case, "tensorly", n, t, f"rel err {err:.6f}"))
    return rows


def flora_cases(rc, cfg, threads, gflops):
    from rankcore import flora

    rows = []
    rng = np.random.default_rng(SEED)
    for shape, ranks in cfg["flora"]:
        core = rng.standard_normal(ranks).astype(np.float32)
        factors = [rng.standard_normal((s, r)).astype(np.float32) for s, r in zip(shape, ranks)]
        grad = rng.standard_normal(shape).astype(np.float32)
        order = flora.chain_order(ranks, [(k, s) for k, s in enumerate(shape)])
        flops, size = 0.0, float(np.prod(ranks))
        for k in order:
            flops += 2 * size * shape[k]
            size = size / ranks[k] * shape[k]
        # VJP: the leave-one-out products and the small contractions are roughly 2-3x that
        name = "x".join(map(str, shape))
        spec = "abcd,Aa,Bb,Cc,Dd->ABCD"
        ceiling = flops / (gflops * 1e9)
        # Sub-millisecond calls: the previous case's BLAS threads (numpy's anchors) spin for a
        # while after their last call and take a core from ours (0.87x measured right after
        # the HOOI case, 1.03-1.22x alone); let them park first. The first few dozen calls of
        # any tool run slower (a 0.23 ms ΔW took 0.33 ms on its 5th call, measured), hence 50
        # warm-ups and 100 repeats.
        time.sleep(0.5)
        with H.rankcore_threads(rc, threads):
            t = H.time_call(lambda: flora.delta(core, factors, 1.0), repeat=cfg["flora_repeat"],
                            warmup=cfg["flora_warmup"])
            rows.append(_row(f"flora delta {name}", "rankcore", threads, t, ours=True,
                             note=f"{flops / 1e6:.1f} MFLOP; ceiling {ceiling * 1e3:.3f} ms "
                                  f"({t['best'] / ceiling:.1f}x)",
                             metrics=dict(flops=flops, ceiling_s=ceiling)))
            tv = H.time_call(lambda: flora.delta_vjp(core, factors, grad, 1.0),
                             repeat=cfg["flora_repeat"], warmup=cfg["flora_warmup"])
        with H.anchor_threads(threads):
            te = H.time_call(lambda: np.einsum(spec, core, *factors, optimize=True),
                             repeat=cfg["flora_repeat"], warmup=cfg["flora_warmup"])
        rows.append(_row(f"flora delta {name}", "numpy einsum", threads, te))
        # VJP flops: grad read by two half-contractions, then small products; count them
        vflops = _vjp_flops(shape, ranks)
        vceil = vflops / (gflops * 1e9)
        rows.append(_row(f"flora delta_vjp {name}", "rankcore", threads, tv, ours=True,
                         note=f"{vflops / 1e6:.1f} MFLOP; ceiling {vceil * 1e3:.3f} ms "
                              f"({tv['best'] / vceil:.1f}x)",
                         metrics=dict(flops=vflops, ceiling_s=vceil)))
        with H.anchor_threads(threads):
            tn = H.time_call(lambda: _numpy_vjp(core, factors, grad), repeat=cfg["flora_repeat"],
                             warmup=cfg["flora_warmup"])
        rows.append(_row(f"flora delta_vjp {name}", "numpy einsum", threads, tn))
    return rows


def _numpy_vjp(core, factors, grad):
    """The same gradients with einsum (optimize=True), as a user would write them."""
    a, b, c, d = factors
    gc = np.einsum("ABCD,Aa,Bb,Cc,Dd->abcd", grad, a, b, c, d, optimize=True)
    ga = np.einsum("ABCD,Bb,Cc,Dd,abcd->Aa", grad, b, c, d, core, optimize=True)
    gb = np.einsum("ABCD,Aa,Cc,Dd,abcd->Bb", grad, a, c, d, core, optimize=True)
    gcc = np.einsum("ABCD,Aa,Bb,Dd,abcd->Cc", grad, a, b, d, core, optimize=True)
    gd = np.einsum("ABCD,Aa,Bb,Cc,abcd->Dd", grad, a, b, c, core, optimize=True)
    return gc, [ga, gb, gcc, gd]


def _vjp_flops(shape, ranks):
    """Flops of the core's scheme: the modes whose factor shrinks (r < I) contracted on the
    gradient's side by leave-one-out products (the most-shrinking mode split off, then
    recursively), the others applied to the core; then one GEMM per factor gradient and the
    core's gradient, each chain in the DP order."""
    from rankcore import flora

    def chain(cur, mats):
        if not mats:
            return 0.0, list(cur)
        order = flora.chain_order(cur, [(m, j) for m, j in mats])
        fl, cur = 0.0, list(cur)
        size = float(np.prod(cur))
        for i in order:
            m, j = mats[i]
            fl += 2 * size * j
            size = size / cur[m] * j
            cur[m] = j
        return fl, cur

    def loo(cur, rest):
        if len(rest) == 1:
            return 0.0, {rest[0]: cur}
        big = max(rest, key=lambda m: (cur[m] / ranks[m], -m))  # as the core splits
        left, right = [big], [m for m in rest if m != big]
        total, outs = 0.0, {}
        for keep, contract in ((left, right), (right, left)):
            fl, part = chain(cur, [(m, ranks[m]) for m in contract])
            total += fl
            fl2, o = loo(part, keep)
            total += fl2
            outs.update(o)
        return total, outs

    n = len(shape)
    shrink = [k for k in range(n) if ranks[k] < shape[k]]
    widen = [k for k in range(n) if k not in shrink]
    total, outs = loo(list(shape), shrink) if shrink else (0.0, {})
    if outs:  # the gradient with every shrinking mode contracted
        k0 = min(outs, key=lambda k: np.prod(outs[k]) * ranks[k])
        total += 2 * np.prod(outs[k0]) * ranks[k0]
    small = [ranks[m] if m in shrink else shape[m] for m in range(n)]
    for k in shrink:  # A_(k) (core with the widening factors)_(k)^T
        total += 2 * np.prod(outs[k]) * ranks[k]
    total += chain(list(ranks), [(m, shape[m]) for m in widen])[0]
    for k in widen:
        total += chain(list(ranks), [(m, shape[m]) for m in widen if m != k])[0]
        total += 2 * np.prod(small) * ranks[k]
    total += chain(small, [(m, ranks[m]) for m in widen])[0]  # the core's gradient
    return float(total)


def large_case(rc, cfg, threads):
    shape = cfg["large_shape"]
    rng = np.random.default_rng(SEED)
    # low rank plus noise, built slab by slab in float32 so that setup stays small
    rank = (10, 10, 10)
    us = [np.linalg.qr(rng.standard_normal((s, r)))[0].astype(np.float32)
          for s, r in zip(shape, rank)]
    core = rng.standard_normal(rank).astype(np.float32)
    core *= np.sqrt(np.prod(shape)) / np.linalg.norm(core)  # unit RMS signal
    x = np.empty(shape, dtype=np.float32)
    for i in range(shape[0]):
        slab = np.tensordot(us[0][i], core, axes=(0, 0))  # (r1, r2)
        x[i] = us[1] @ slab @ us[2].T
        x[i] += 0.1 * rng.standard_normal(shape[1:], dtype=np.float32)
    nbytes = x.nbytes
    rows = []
    for method, kw in (("sthosvd", {}), ("hooi", dict(n_iter_max=3, tol=0.0))):
        case = f"large {'x'.join(map(str, shape))} f32 randomized {method}"
        with H.rankcore_threads(rc, threads):
            t = H.time_call(lambda: rc.tucker(x, rank, svd="randomized", method=method,
                                              random_state=0, **kw),
                            repeat=1, warmup=2, memory=True)
        tt = t["result"]
        row = _row(case, "rankcore", threads, t, f"rel err {tt.rel_error:.4f}", ours=True,
                   note=f"tensor {nbytes / H.MiB:.0f} MiB")
        row.peak_mib = t.get("peak_mib")
        row.peak_units = row.peak_mib * H.MiB / nbytes if row.peak_mib is not None else None
        rows.append(row)
    return rows


def main(argv=None) -> int:
    args, cases = H.parse_args(__doc__, argv, CASES)
    rc = H.import_rankcore("tucker")
    if rc is None:
        return 2
    tl_dec = H.optional_import("tensorly.decomposition")
    cfg = QUICK if args.quick else FULL
    machine = H.machine_info(rc, extra_packages=("tensorly",))
    print(H.describe_machine(machine))
    if tl_dec is None:
        print(f"tensorly: {H.NA}")
    threads = args.threads
    t_start = time.perf_counter()
    out: dict = dict(config=dict(cfg, quick=args.quick, threads=threads, cases=sorted(cases)))
    out["gemm"] = H.gemm_ceiling(2000, 2000, 2000, "float32", threads)
    gflops = out["gemm"]["gflops"]
    print(f"square GEMM 2000^3 f32: {gflops:.0f} GFLOP/s ({threads} threads)\n", flush=True)
    rows: list[Row] = []
    if "hooi" in cases:
        rows += hooi_cases(rc, tl_dec, cfg, threads)
    if "partial" in cases:
        rows += hooi_cases(rc, tl_dec, cfg, threads, partial=True)
    if "flora" in cases:
        rows += flora_cases(rc, cfg, threads, gflops)
    if "large" in cases:
        rows += large_case(rc, cfg, threads)
    H.fill_ratios(rows)
    H.print_table(rows, title="Tucker / FLoRA (ratio = theirs / ours, > 1: rankcore faster; "
                              "peak/unit = peak above input / tensor size)")
    elapsed = time.perf_counter() - t_start
    out.update(rows=[r.as_dict() for r in rows], elapsed_s=elapsed)
    path = H.write_results("bench_tucker-quick" if args.quick else "bench_tucker", out, machine)
    print(f"wrote {path.relative_to(H.REPO_ROOT)} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
