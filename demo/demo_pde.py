"""GP-HM PDE solver demo: the 1-D multi-scale Poisson problem
u = sin(x) + 0.1 sin(20x) + 0.05 cos(100x) on [0, 1] and a 2-D Poisson problem
u = sin(2πx) sin(4πy), each solved by ``rankcore.pde.GPSolver`` (Student-t mixture kernel,
L-BFGS). Prints error and time; writes demo-output/pde.png with the exact and GP solutions,
the error and the learned spectrum (weights against frequencies). Sizes are kept small so
that the demo runs in seconds; ``benches/bench_pde.py`` runs the paper's full problems.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from rankcore.pde import GPSolver, laplacian, problems


def _two_d():
    u = lambda x, y: np.sin(2 * np.pi * x) * np.sin(4 * np.pi * y)  # noqa: E731
    f = lambda x, y: -((2 * np.pi) ** 2 + (4 * np.pi) ** 2) * u(x, y)  # noqa: E731
    return u, f


def run(out_dir: Path) -> None:
    print("\nGP-HM PDE solver (Gaussian processes on grids)\n" + "=" * 46)
    p = problems.get("poisson_1d_multiscale")
    t0 = time.perf_counter()
    s1 = p.solver(grid=(200,), max_iter=50).fit()
    t1 = time.perf_counter() - t0
    e1 = p.relative_error(s1)
    top = np.argsort(-s1.weights_[0])[:3]
    print(f"  1-D {p.description}")
    print(f"    200 collocation points, {s1.n_iter_} L-BFGS iterations, {t1:.2f} s, rel. L2 error {e1:.2e}")
    print(f"    strongest learned frequencies (cycles/unit): {np.round(s1.frequencies_[0][top], 2)}"
          f"  (true: {1 / (2 * np.pi):.2f}, {20 / (2 * np.pi):.2f}, {100 / (2 * np.pi):.2f})")
    u2, f2 = _two_d()
    t0 = time.perf_counter()
    s2 = GPSolver(laplacian(2), f2, u2, [(0, 1), (0, 1)], grid=(24, 24), freq_scale=4.0, n_components=10,
                  max_iter=20).fit()
    t2 = time.perf_counter() - t0
    ax = [np.linspace(0, 1, 80)] * 2
    mesh = np.meshgrid(*ax, indexing="ij")
    pred2 = s2.predict_grid(ax)
    ref2 = u2(*mesh)
    e2 = float(np.linalg.norm(pred2 - ref2) / np.linalg.norm(ref2))
    print("  2-D Δu = f on [0, 1]², u = sin(2πx) sin(4πy)")
    print(f"    24x24 collocation points, {s2.n_iter_} L-BFGS iterations, {t2:.2f} s, rel. L2 error {e2:.2e}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  matplotlib is not installed: no figure (pip install matplotlib)")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axs = plt.subplots(2, 3, figsize=(13, 7))
    x = p.test_grid(600)[0]
    axs[0, 0].plot(x, p.exact(x), "k-", lw=1, label="exact")
    axs[0, 0].plot(x, s1.predict_grid([x]), "r--", lw=1, label="GP-HM")
    axs[0, 0].set_title("1-D multi-scale Poisson")
    axs[0, 0].legend()
    axs[0, 1].plot(x, s1.predict_grid([x]) - p.exact(x), "b-", lw=1)
    axs[0, 1].set_title(f"error (rel. L2 {e1:.1e})")
    axs[0, 2].stem(s1.frequencies_[0], s1.weights_[0])
    axs[0, 2].set_yscale("log")
    axs[0, 2].set_xlabel("frequency (cycles / unit)")
    axs[0, 2].set_title("learned spectrum (weights)")
    for a, img, title in [(axs[1, 0], ref2, "2-D exact"), (axs[1, 1], pred2, "2-D GP-HM"),
                          (axs[1, 2], pred2 - ref2, f"2-D error (rel. L2 {e2:.1e})")]:
        im = a.imshow(img.T, origin="lower", extent=(0, 1, 0, 1), cmap="RdBu_r")
        a.set_title(title)
        fig.colorbar(im, ax=a, shrink=0.8)
    fig.tight_layout()
    path = out_dir / "pde.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    print(f"  wrote {path}")


if __name__ == "__main__":
    run(Path("demo-output"))
