"""A tour of rankcore. Run it with `make demo` (or `.venv/bin/python demo/tour.py`).

Everything here runs offline in a few seconds: the data are scikit-learn's bundled digits and
matrices generated with numpy. This file holds the randomized-SVD sections, one function each;
every other algorithm's section is a ``demo/demo_<topic>.py`` file with ``run(out_dir)``, run
after these in name order. Figures go to demo-output/.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import numpy as np

import rankcore

OUT_DIR = Path(__file__).resolve().parent.parent / "demo-output"
SEED = 0


# --------------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------------


def header(title: str) -> None:
    print(f"\n{title}\n{'=' * len(title)}")


def best_time(fn, repeat: int = 3):
    """(result, best wall time in seconds) over ``repeat`` calls after one warm-up call."""
    out = fn()
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        out = fn()
        best = min(best, time.perf_counter() - t0)
    return out, best


def rel_residual(A: np.ndarray, U, S, Vt) -> float:
    """||A - U diag(S) Vt||_F / ||A||_F."""
    return float(np.linalg.norm(A - (U * S) @ Vt) / np.linalg.norm(A))


def low_rank_plus_noise(m: int, n: int, seed: int = SEED) -> np.ndarray:
    """A 3000 x 1000-style test matrix: geometric spectrum 10 * 0.85^i on 100 random
    orthonormal directions, plus Gaussian noise of std 5e-4 (about 5% of ||A||_F)."""
    rng = np.random.default_rng(seed)
    r = 100
    U, _ = np.linalg.qr(rng.standard_normal((m, r)))
    V, _ = np.linalg.qr(rng.standard_normal((n, r)))
    s = 10.0 * 0.85 ** np.arange(r)
    return (U * s) @ V.T + 5e-4 * rng.standard_normal((m, n))


def compare_with_exact(name: str, A: np.ndarray, k: int) -> dict:
    """Time rankcore.randomized_svd beside numpy's exact SVD and print the accuracy."""
    (U, S, Vt), t_rc = best_time(lambda: rankcore.randomized_svd(A, k, random_state=SEED))
    (Ue, Se, Vte), t_ex = best_time(lambda: np.linalg.svd(A, full_matrices=False))
    norm = np.linalg.norm(Se)
    optimal = float(np.sqrt(np.sum(Se[k:] ** 2)) / norm)  # best rank-k: Eckart-Young
    ours = rel_residual(A, U, S, Vt)
    err = np.abs(S - Se[:k]) / Se[:k]

    print(f"{name}: {A.shape[0]} x {A.shape[1]} {A.dtype}, k = {k}")
    print(f"  rankcore.randomized_svd   {t_rc * 1e3:9.2f} ms")
    print(f"  numpy.linalg.svd (exact)  {t_ex * 1e3:9.2f} ms   (exact / rankcore: "
          f"{t_ex / t_rc:.2f})")
    print(f"  {'i':>3}  {'exact':>12}  {'rankcore':>12}  {'rel. error':>10}")
    shown = range(k) if k <= 10 else [*range(5), None, *range(k - 5, k)]
    for i in shown:
        if i is None:
            print(f"  {'...':>3}")
            continue
        print(f"  {i:>3}  {Se[i]:12.6g}  {S[i]:12.6g}  {err[i]:10.1e}")
    print(f"  singular values: max rel. error {err.max():.1e}, mean {err.mean():.1e}")
    print(f"  ||A - U S Vt||_F / ||A||_F: rankcore {ours:.6f}, optimal rank-{k} {optimal:.6f}"
          f"  (ratio {ours / optimal:.5f}; 1 = optimal)")
    return dict(name=name, shape=A.shape, k=k, s_exact=Se, s_rankcore=np.asarray(S),
                A=A, t_rankcore=t_rc, t_exact=t_ex)


# --------------------------------------------------------------------------------------
# sections
# --------------------------------------------------------------------------------------


def section_environment() -> None:
    header("rankcore tour")
    version = getattr(rankcore, "__version__", "?")
    print(f"rankcore {version}, {rankcore.get_num_threads()} threads, numpy {np.__version__}")


def section_digits() -> dict:
    header("1. Randomized SVD of scikit-learn's digits (k = 10)")
    from sklearn.datasets import load_digits

    X = load_digits().data  # 1797 images of 8 x 8 pixels, shipped with scikit-learn
    return compare_with_exact("digits", X, 10)


def section_synthetic() -> dict:
    header("2. Randomized SVD of a low-rank-plus-noise matrix (k = 20)")
    A = low_rank_plus_noise(3000, 1000)
    return compare_with_exact("low rank + noise", A, 20)


def section_fixed_accuracy(synthetic: dict) -> dict:
    header("3. Fixed-accuracy mode: randomized_svd(A, None, tol=0.1)")
    A, Se = synthetic["A"], synthetic["s_exact"]
    tol = 0.1
    (U, S, Vt), t = best_time(lambda: rankcore.randomized_svd(A, None, tol=tol,
                                                              random_state=SEED))
    rank = int(np.asarray(S).size)
    achieved = rel_residual(A, U, S, Vt)
    # smallest r with ||A - A_r||_F <= tol ||A||_F, from the exact spectrum
    tails = np.sqrt(np.append(np.cumsum((Se ** 2)[::-1])[::-1], 0.0)) / np.linalg.norm(Se)
    r_exact = int(np.argmax(tails <= tol))
    print(f"  rank found: {rank}   ({t * 1e3:.1f} ms)")
    print(f"  ||A - U S Vt||_F / ||A||_F = {achieved:.4f}   (tol {tol})")
    print(f"  an exact SVD needs rank {r_exact} for ||A - A_r||_F <= {tol} ||A||_F")
    return dict(rank=rank, achieved=achieved, rank_exact=r_exact)


def section_pipeline() -> dict:
    header("4. scikit-learn Pipeline: RandomizedPCA(10) + LogisticRegression on digits")
    from sklearn.datasets import load_digits
    from sklearn.decomposition import PCA
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import train_test_split
    from sklearn.pipeline import make_pipeline

    X, y = load_digits(return_X_y=True)
    X_tr, X_te, y_tr, y_te = train_test_split(X, y, test_size=0.25, stratify=y,
                                              random_state=SEED)
    scores = {}
    for label, reducer in [
        ("rankcore.RandomizedPCA", rankcore.RandomizedPCA(n_components=10, random_state=SEED)),
        ("sklearn PCA (randomized)", PCA(n_components=10, svd_solver="randomized",
                                         random_state=SEED)),
    ]:
        pipe = make_pipeline(reducer, LogisticRegression(max_iter=5000))
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", category=FutureWarning)
            t0 = time.perf_counter()
            pipe.fit(X_tr, y_tr)
            t_fit = time.perf_counter() - t0
        scores[label] = pipe.score(X_te, y_te)
        print(f"  {label:<26} test accuracy {scores[label]:.3f}   (fit {t_fit * 1e3:.0f} ms)")
    print(f"  {len(y_tr)} training / {len(y_te)} test images, 64 pixels -> 10 components")
    return scores


def section_plot(results: list[dict], fixed: dict | None = None) -> Path | None:
    header("5. Singular-value spectra")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  matplotlib is not installed: no figure (pip install matplotlib)")
        return None
    fig, axes = plt.subplots(1, len(results), figsize=(5.5 * len(results), 4.2))
    for ax, r in zip(np.atleast_1d(axes), results, strict=True):
        se, sr, k = r["s_exact"], r["s_rankcore"], r["k"]
        shown = min(se.size, 6 * k)
        ax.semilogy(np.arange(shown), se[:shown], "-", color="0.3", lw=1.5, label="exact (numpy)")
        ax.semilogy(np.arange(sr.size), sr, "o", ms=4, mfc="none", color="C1",
                    label=f"rankcore, k = {k}")
        if fixed is not None and r is results[-1]:
            ax.axvline(fixed["rank"] - 0.5, color="C2", ls="--", lw=1,
                       label=f"tol = 0.1: rank {fixed['rank']}")
        m, n = r["shape"]
        ax.set(title=f"{r['name']} ({m} x {n})", xlabel="index i", ylabel="singular value s_i")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend()
    fig.tight_layout()
    OUT_DIR.mkdir(parents=True, exist_ok=True)
    path = OUT_DIR / "svd_spectra.png"
    fig.savefig(path, dpi=120)
    plt.close(fig)
    print(f"  wrote {path}")
    return path


def other_sections() -> None:
    """Runs every ``demo/demo_<topic>.py`` in name order: each algorithm's section lives in
    its own file and exposes ``run(out_dir: Path) -> None``."""
    import importlib.util

    for path in sorted(Path(__file__).resolve().parent.glob("demo_*.py")):
        spec = importlib.util.spec_from_file_location(path.stem, path)
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
        module.run(OUT_DIR)


def main() -> None:
    section_environment()
    digits = section_digits()
    synthetic = section_synthetic()
    fixed = section_fixed_accuracy(synthetic)
    section_pipeline()
    section_plot([digits, synthetic], fixed)
    other_sections()


if __name__ == "__main__":
    main()
