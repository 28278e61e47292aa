"""Kronecker-structured grid GPs: rankcore beside scikit-learn, plain numpy and GPyTorch.

Cases (all tools on the same data, in one process, at the same thread count):

1. ``fit 64x64``: fixed kernel ``C·RBF([ℓ₁, ℓ₂]) + White`` (optimizer=None in both),
   N = 4096: scikit-learn's dense ``GaussianProcessRegressor.fit`` (Cholesky of the 4096² K)
   vs ``GridGPRegressor.fit``. Accuracy: relative difference of the log marginal likelihoods.
   Target: same LML to 1e-8, ≥ 100× faster.
2. ``solve+logdet 64^3`` and ``128^3`` (N = 262,144 and 2,097,152), RBF factors: ``(K + σ²I)⁻¹y`` and ``log det`` by a
   plain numpy eigen-Kronecker implementation written here (eigh per factor, tensordot mode
   products), by GPyTorch's ``KroneckerProductLinearOperator`` when torch/gpytorch import,
   and by ``rankcore.kron_solve_logdet`` (one eigendecomposition per factor, as the numpy code). Accuracy: relative difference
   to numpy. Target: ≥ 3× faster than numpy and GPyTorch.
3. ``learn 64^3``: a full ``GridGPRegressor.fit`` with L-BFGS-B hyperparameter learning
   (signal variance, three lengthscales, noise); time and iterations reported.
4. ``fit+predict 1000x1000``: N = 10⁶, fixed kernel, ``fit(X, y)`` then
   ``predict(X, return_std=True)`` on the grid; time and peak RSS above the data.

Ratios are theirs / ours on the best time: > 1 means rankcore is faster.

    python benches/bench_gp.py [--quick] [--threads N]

Results: bench-results/bench_gp.json (bench_gp-quick.json with --quick).
"""

from __future__ import annotations

import sys
import time
from functools import reduce
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402

Row = H.Row
SEED = 0
FULL = dict(fit_n=64, cube_ns=(64, 128), learn_n=64, big_n=1000, repeat=3)
QUICK = dict(fit_n=24, cube_ns=(24,), learn_n=12, big_n=150, repeat=2)


def grid_points(*axes):
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def field(X, rng, noise=0.05):
    y = np.sin(3 * X[:, 0]) * np.cos(2 * X[:, -1]) + 0.3 * X.sum(axis=1)
    return y + noise * rng.standard_normal(len(X))


def rbf(x, ls):
    return np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / ls**2)


def numpy_kron_mv(mats, x):
    """(A₁ ⊗ … ⊗ A_D) x for C-order x: the cyclic reshape–GEMM–transpose trick (Saatçi 2012),
    one BLAS GEMM per factor."""
    X = x
    for A in mats:
        X = (A @ X.reshape(A.shape[1], -1)).T
    return np.ascontiguousarray(X).ravel()


def numpy_solve_logdet(Ks, y, noise):
    """The plain eigen-Kronecker method in numpy: eigh per factor, two Kronecker mat-vecs."""
    eig = [np.linalg.eigh(K) for K in Ks]
    lam = reduce(np.multiply.outer, [np.maximum(lv, 0) for lv, _ in eig]).ravel()
    t = numpy_kron_mv([Q.T for _, Q in eig], y) / (lam + noise)
    return numpy_kron_mv([Q for _, Q in eig], t), float(np.log(lam + noise).sum())


def case_fit(rc, cfg, threads, out):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    n = cfg["fit_n"]
    rng = np.random.default_rng(SEED)
    X = grid_points(np.linspace(0, 1, n), np.linspace(0, 2, n))
    y = field(X, rng)
    k = ConstantKernel(1.3) * RBF([0.2, 0.5]) + WhiteKernel(0.01)
    case = f"fit {n}x{n} (fixed kernel)"
    rows = []
    with H.rankcore_threads(rc, threads):
        ours = H.time_call(lambda: rc.GridGPRegressor(k, optimizer=None).fit(X, y), repeat=cfg["repeat"])
    with H.anchor_threads(threads):
        sk = H.time_call(lambda: GaussianProcessRegressor(k, optimizer=None).fit(X, y), repeat=cfg["repeat"], warmup=0)
    l_ours = ours["result"].log_marginal_likelihood_value_
    l_sk = sk["result"].log_marginal_likelihood_value_
    relerr = abs(l_ours - l_sk) / abs(l_sk)
    rows.append(Row(case, "rankcore", threads, ours["best"], ours["median"], ours["times"],
                    accuracy=f"LML {l_ours:.10g}", ours=True))
    rows.append(Row(case, "sklearn GPR", threads, sk["best"], sk["median"], sk["times"],
                    accuracy=f"LML rel diff {relerr:.1e}"))
    out["fit"] = dict(n=n, lml_rankcore=l_ours, lml_sklearn=l_sk, rel_diff=relerr)
    return rows


def case_cube(rc, cfg, threads, optional, out, n):
    rng = np.random.default_rng(SEED)
    axes = [np.linspace(0, 1, n)] * 3
    Ks = [rbf(a, ls) for a, ls in zip(axes, (0.1, 0.2, 0.3))]
    y = rng.standard_normal(n**3)
    noise = 0.01
    case = f"solve+logdet {n}^3"
    rows = []

    def ours_fn():
        return rc.kron_solve_logdet(Ks, y, noise)

    # millisecond calls: ten times the repeats and five warm-ups, for every tool alike (as
    # bench_pca does: with 5 repeats the best 64³ call was 3.5 ms against 2.1 ms after warm-up)
    repeat, warmup = (10 * cfg["repeat"], 5) if n**3 < 10**6 else (max(cfg["repeat"], 5), 1)
    with H.rankcore_threads(rc, threads):
        ours = H.time_call(ours_fn, repeat=repeat, warmup=warmup)
    with H.anchor_threads(threads):
        ref = H.time_call(lambda: numpy_solve_logdet(Ks, y, noise), repeat=repeat, warmup=warmup)
    (xo, lo), (xr, lr) = ours["result"], ref["result"]
    acc = f"x rel {np.abs(xo - xr).max() / np.abs(xr).max():.1e}, logdet rel {abs(lo - lr) / abs(lr):.1e}"
    rows.append(Row(case, "rankcore", threads, ours["best"], ours["median"], ours["times"], ours=True))
    rows.append(Row(case, "numpy eigen-Kronecker", threads, ref["best"], ref["median"], ref["times"], accuracy=acc))
    torch, gpytorch = optional.get("torch"), optional.get("gpytorch")
    if torch is None or gpytorch is None:
        rows.append(H.missing_row(case, "GPyTorch Kronecker"))
    else:
        from linear_operator.operators import KroneckerProductLinearOperator

        torch.set_num_threads(threads)
        tK = [torch.from_numpy(K) for K in Ks]
        ty = torch.from_numpy(y)[:, None]

        def gp_fn():
            op = KroneckerProductLinearOperator(*tK).add_jitter(noise)
            return op.solve(ty), op.logdet()

        g = H.time_call(gp_fn, repeat=repeat, warmup=warmup)
        xg, lg = g["result"]
        acc = f"x rel {np.abs(xg.numpy()[:, 0] - xr).max() / np.abs(xr).max():.1e}, logdet rel {abs(float(lg) - lr) / abs(lr):.1e}"
        rows.append(Row(case, "GPyTorch Kronecker", threads, g["best"], g["median"], g["times"], accuracy=acc))
    out.setdefault("cube", []).append(dict(n=n))
    return rows


def case_learn(rc, cfg, threads, out):
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    n = cfg["learn_n"]
    rng = np.random.default_rng(SEED)
    axes = [np.linspace(0, 1, n)] * 3
    X = grid_points(*axes)
    y = field(X, rng, noise=0.1)
    k = ConstantKernel(1.0) * RBF([0.5, 0.5, 0.5]) + WhiteKernel(0.1)
    case = f"learn {n}^3 (L-BFGS-B)"
    with H.rankcore_threads(rc, threads):
        t0 = time.perf_counter()
        m = rc.GridGPRegressor(k).fit(X, y)
        t = time.perf_counter() - t0
    note = f"{m.n_iter_} iterations; kernel_ = {m.kernel_}"
    out["learn"] = dict(n=n, seconds=t, n_iter=m.n_iter_, kernel=str(m.kernel_), lml=m.log_marginal_likelihood_value_)
    return [Row(case, "rankcore", threads, t, t, [t], accuracy=f"LML {m.log_marginal_likelihood_value_:.6g}", note=note, ours=True)]


def case_big(rc, cfg, threads, out):
    from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

    n = cfg["big_n"]
    rng = np.random.default_rng(SEED)
    X = grid_points(np.linspace(0, 1, n), np.linspace(0, 1, n))
    y = field(X, rng)
    k = ConstantKernel(1.0) * RBF([0.05, 0.1]) + WhiteKernel(0.01)
    case = f"fit+predict {n}x{n}"

    def fn():
        m = rc.GridGPRegressor(k, optimizer=None).fit(X, y)
        return m.predict(X, return_std=True)

    with H.rankcore_threads(rc, threads):
        r = H.time_call(fn, repeat=1, warmup=1, memory=True)
    mean, std = r["result"]
    rmse = float(np.sqrt(np.mean((mean - y) ** 2)))
    data_mib = (X.nbytes + y.nbytes) / H.MiB
    out["big"] = dict(n=n, seconds=r["best"], peak_mib=r.get("peak_mib"), data_mib=data_mib, rmse=rmse)
    return [Row(case, "rankcore", threads, r["best"], r["median"], r["times"], accuracy=f"rmse vs y {rmse:.3g}",
                peak_mib=r.get("peak_mib"), note=f"data {data_mib:.0f} MiB", ours=True)]


def main(argv=None) -> int:
    args, _ = H.parse_args(__doc__, argv)
    rc = H.import_rankcore("GridGPRegressor")
    if rc is None:
        return 2
    optional = {name: H.optional_import(name) for name in ("torch", "gpytorch")}
    cfg = QUICK if args.quick else FULL
    machine = H.machine_info(rc, extra_packages=("torch", "gpytorch"))
    print(H.describe_machine(machine))
    for name, mod in optional.items():
        if mod is None:
            print(f"{name}: {H.NA}")
    threads = args.threads
    print(f"threads: {threads}\n", flush=True)
    t_start = time.perf_counter()
    out: dict = dict(config=dict(cfg, quick=args.quick, threads=threads, seed=SEED))
    rows = []
    rows += case_fit(rc, cfg, threads, out)
    for n in cfg["cube_ns"]:
        rows += case_cube(rc, cfg, threads, optional, out, n)
    rows += case_learn(rc, cfg, threads, out)
    rows += case_big(rc, cfg, threads, out)
    H.fill_ratios(rows)
    H.print_table(rows, title="grid GP (ratio = theirs / ours, > 1: rankcore faster)")
    elapsed = time.perf_counter() - t_start
    out.update(rows=[r.as_dict() for r in rows], elapsed_s=elapsed)
    path = H.write_results("bench_gp-quick" if args.quick else "bench_gp", out, machine)
    print(f"wrote {path.relative_to(H.REPO_ROOT)} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
