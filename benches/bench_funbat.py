"""FunBaT on the Beijing PM2.5 continuous-indexed tensor, beside the tools users would
otherwise pick.

Data: ``../shared/data/beijing_pm25.npz`` (16,965 daily PM2.5 readings indexed by
temperature x pressure x day, each coordinate scaled to [0, 10], targets standardised; five
80/20 folds ``fold{k}_tr_X``, ``fold{k}_tr_y``, ``fold{k}_te_X``, ``fold{k}_te_y``). Every tool
fits each training fold and predicts its test fold; the table gives test RMSE and MAE as
mean ± std over the folds and the mean fit+predict time per fold.

Tools:

1. ``FunBaT`` (rankcore), Tucker ranks 2, 3, 5, 7 in every mode, Matérn 3/2, learned
   lengthscales and variances, at most 40 CEP sweeps (tol 1e-4), seed 0.
2. ``FunBaT, reference settings``: the settings of the reference implementation's
   ``config_beijing_PM25_Tucker.yaml`` as far as they apply: rank 3, Matérn 1/2, lengthscale
   0.1 and variance 1 fixed in every mode, Gamma(1, 1) noise prior, damping 0.5 (its 100
   epochs capped at 40 sweeps here).
3. ``FunCP`` (rankcore), rank 7.
4. Discrete Tucker (``rankcore.tucker`` with ``mask``) on the binned grid: each coordinate
   cut into equal-width bins, cells averaged, HOOI on the observed cells, the test entry
   predicted by its cell of the reconstruction; grids 20 x 20 x 300 and 30 x 30 x 1318
   (about one bin per day), rank 7 in every mode (capped by the grid).
5. scikit-learn ``GaussianProcessRegressor`` (ConstantKernel x anisotropic Matérn 3/2 +
   WhiteKernel, hyperparameters by its L-BFGS, ``normalize_y``) on a random subsample of
   1,000 training points (the exact GP is cubic in n).
6. ``KNeighborsRegressor`` (k = 5, 10) and ``HistGradientBoostingRegressor`` (defaults) on the
   raw coordinates.

Ratio = theirs / ours on time, against FunBaT rank 7.

    python benches/bench_funbat.py [--quick] [--threads N]

``--quick``: fold 0 only, FunBaT ranks 2 and 3, 15 sweeps. Results:
bench-results/bench_funbat.json (bench_funbat-quick.json with --quick).
"""

from __future__ import annotations

import sys
import time
import warnings
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _harness as H  # noqa: E402
from _harness import Row  # noqa: E402

DATA = H.REPO_ROOT.parent / "shared" / "data" / "beijing_pm25.npz"
SEED = 0
FULL = dict(folds=5, ranks=(2, 3, 5, 7), max_iter=40, gp_subsample=1000)
QUICK = dict(folds=1, ranks=(2, 3), max_iter=15, gp_subsample=300)


def load(path: Path = DATA):
    d = np.load(path)
    k = 0
    folds = []
    while f"fold{k}_tr_X" in d.files:
        folds.append(tuple(d[f"fold{k}_{s}"] for s in ("tr_X", "tr_y", "te_X", "te_y")))
        k += 1
    return folds


def binned_tucker(rc, bins, rank):
    def fit_predict(X, y, Xt):
        edges = [np.linspace(X[:, k].min(), X[:, k].max(), b + 1)[1:-1] for k, b in enumerate(bins)]
        cell = tuple(np.digitize(X[:, k], edges[k]) for k in range(X.shape[1]))
        cell_t = tuple(np.digitize(Xt[:, k], edges[k]) for k in range(X.shape[1]))
        s, c = np.zeros(bins), np.zeros(bins)
        np.add.at(s, cell, y)
        np.add.at(c, cell, 1)
        T = np.where(c > 0, s / np.maximum(c, 1), 0.0)
        core, factors = rc.tucker(T, rank=[min(rank, b) for b in bins], mask=c > 0, n_iter_max=100, random_state=SEED)
        return rc.tucker_to_tensor((core, factors))[cell_t]

    return fit_predict


def estimator(make):
    def fit_predict(X, y, Xt):
        return make().fit(X, y).predict(Xt)

    return fit_predict


def gp_subsample(n_sub):
    from sklearn.gaussian_process import GaussianProcessRegressor
    from sklearn.gaussian_process.kernels import ConstantKernel, Matern, WhiteKernel

    def fit_predict(X, y, Xt):
        idx = np.random.default_rng(SEED).choice(len(X), min(n_sub, len(X)), replace=False)
        kernel = ConstantKernel() * Matern([1.0] * X.shape[1], nu=1.5) + WhiteKernel(0.1)
        gp = GaussianProcessRegressor(kernel, normalize_y=True, random_state=SEED)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            gp.fit(X[idx], y[idx])
        return gp.predict(Xt)

    return fit_predict


def run_tool(name, fit_predict, folds, threads, ours=False, note=""):
    rmse, mae, times = [], [], []
    for X, y, Xt, yt in folds:
        t0 = time.perf_counter()
        p = fit_predict(X, y, Xt)
        times.append(time.perf_counter() - t0)
        rmse.append(float(np.sqrt(np.mean((p - yt) ** 2))))
        mae.append(float(np.mean(np.abs(p - yt))))
    acc = (f"RMSE {np.mean(rmse):.4f}±{np.std(rmse):.4f}  MAE {np.mean(mae):.4f}±{np.std(mae):.4f}")
    print(f"  {name:44s} {acc}  {np.mean(times):7.2f} s/fold", flush=True)
    return Row(case="pm25", tool=name, threads=threads, best=float(np.mean(times)),
               median=float(np.median(times)), times=times, accuracy=acc, ours=ours, note=note,
               metrics=dict(rmse=rmse, mae=mae, rmse_mean=float(np.mean(rmse)),
                            mae_mean=float(np.mean(mae))))


def main(argv=None) -> int:
    args, _ = H.parse_args(__doc__, argv)
    rc = H.import_rankcore("FunBaT")
    if rc is None:
        return 2
    if not DATA.exists():
        print(f"data not found: {DATA}")
        return 2
    cfg = QUICK if args.quick else FULL
    machine = H.machine_info(rc, extra_packages=("scikit-learn",))
    print(H.describe_machine(machine))
    threads = args.threads
    folds = load()[: cfg["folds"]]
    print(f"Beijing PM2.5: {len(folds)} fold(s), {len(folds[0][0])} train / {len(folds[0][2])} test\n")
    t_start = time.perf_counter()
    rows: list[Row] = []
    mi = cfg["max_iter"]
    with H.rankcore_threads(rc, threads):
        for r in cfg["ranks"]:
            rows.append(run_tool(f"rankcore FunBaT rank {r}", estimator(
                lambda r=r: rc.FunBaT(rank=r, max_iter=mi, random_state=SEED)), folds, threads,
                ours=(r == max(cfg["ranks"]))))
        rows.append(run_tool("rankcore FunBaT, reference settings (rank 3)", estimator(
            lambda: rc.FunBaT(rank=3, kernel="matern12", lengthscale=0.1, variance=1.0,
                              noise_prior=(1.0, 1.0), damping=0.5, max_iter=mi, random_state=SEED)),
            folds, threads, note="reference config: Matérn 1/2, ℓ = 0.1, damping 0.5"))
        rows.append(run_tool(f"rankcore FunCP rank {max(cfg['ranks'])}", estimator(
            lambda: rc.FunCP(rank=max(cfg["ranks"]), max_iter=mi, random_state=SEED)), folds, threads))
        for bins in ((20, 20, 300), (30, 30, 1318)):
            rows.append(run_tool(f"rankcore tucker (mask), grid {'x'.join(map(str, bins))}, rank 7",
                                 binned_tucker(rc, bins, 7), folds, threads, note="binned coordinates"))
    with H.anchor_threads(threads):
        from sklearn.ensemble import HistGradientBoostingRegressor
        from sklearn.neighbors import KNeighborsRegressor

        rows.append(run_tool(f"sklearn GaussianProcessRegressor ({cfg['gp_subsample']} pts)",
                             gp_subsample(cfg["gp_subsample"]), folds, threads, note="random subsample"))
        for k in (5, 10):
            rows.append(run_tool(f"sklearn KNeighborsRegressor k={k}", estimator(
                lambda k=k: KNeighborsRegressor(k)), folds, threads))
        rows.append(run_tool("sklearn HistGradientBoostingRegressor", estimator(
            lambda: HistGradientBoostingRegressor(random_state=SEED)), folds, threads))
    H.fill_ratios(rows)
    H.print_table(rows, title="Beijing PM2.5, test RMSE/MAE (mean ± std over folds); best = mean "
                              "s per fold (fit + predict); ratio = theirs / FunBaT rank 7")
    elapsed = time.perf_counter() - t_start
    out = dict(config=dict(cfg, quick=args.quick, threads=threads), rows=[r.as_dict() for r in rows],
               elapsed_s=elapsed)
    path = H.write_results("bench_funbat-quick" if args.quick else "bench_funbat", out, machine)
    print(f"wrote {path.relative_to(H.REPO_ROOT)} ({elapsed:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
