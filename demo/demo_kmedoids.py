"""k-medoids section of the tour: scikit-learn's digits clustered with k = 10.

Prints loss, time and agreement with the true digit labels (ARI) for FasterPAM from BUILD
and from random medoids, FastPAM1 and the alternating method, beside the ``kmedoids``
package when it is installed, and writes the ten medoid images as a PNG grid.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import rankcore


def run(out_dir: Path) -> None:
    from sklearn.datasets import load_digits
    from sklearn.metrics import adjusted_rand_score

    title = "k-medoids: digits, k = 10"
    print(f"\n{title}\n{'=' * len(title)}")
    X, y = load_digits(return_X_y=True)
    X = X.astype(np.float32)
    print(f"{X.shape[0]} images of 8x8 pixels, euclidean distances computed inside rankcore")
    results = {}
    for label, kw in [
        ("fasterpam, BUILD", dict(method="fasterpam", init="build")),
        ("fasterpam, random", dict(method="fasterpam", init="random", random_state=0)),
        ("fastpam1, BUILD", dict(method="fastpam1", init="build")),
        ("alternate, BUILD", dict(method="alternate", init="build")),
    ]:
        t0 = time.perf_counter()
        res = rankcore.kmedoids(X, 10, metric="euclidean", **kw)
        dt = time.perf_counter() - t0
        ari = adjusted_rand_score(y, res.labels)
        sil = rankcore.medoid_silhouette(X, res.medoids, metric="euclidean")
        results[label] = res
        print(f"  {label:<20} loss {res.loss:10.1f}  swaps {res.n_swap:3d}  "
              f"ARI {ari:.3f}  medoid silhouette {sil:.3f}  {dt * 1e3:7.1f} ms")
    try:
        import kmedoids
        from sklearn.metrics import pairwise_distances

        t0 = time.perf_counter()
        theirs = kmedoids.fasterpam(pairwise_distances(X), 10, init="build", random_state=0)
        dt = time.perf_counter() - t0
        print(f"  {'kmedoids package':<20} loss {theirs.loss:10.1f}  swaps {theirs.n_swap:3d}  "
              f"ARI {adjusted_rand_score(y, theirs.labels):.3f}  {'':24}{dt * 1e3:7.1f} ms")
    except ImportError:
        print("  (the kmedoids package is not installed: pip install kmedoids to compare)")
    best = results["fasterpam, BUILD"]
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  matplotlib is not installed: no figure")
        return
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, axes = plt.subplots(1, 10, figsize=(10, 1.5))
    order = np.argsort(y[best.medoids], kind="stable")
    for ax, c in zip(axes, order):
        m = best.medoids[c]
        ax.imshow(X[m].reshape(8, 8), cmap="gray_r")
        ax.set_title(f"digit {y[m]}\nn={np.sum(best.labels == c)}", fontsize=7)
        ax.axis("off")
    fig.suptitle(f"k-medoids medoids of the digits (FasterPAM, loss {best.loss:.0f})", fontsize=9)
    path = out_dir / "kmedoids_digits_medoids.png"
    fig.savefig(path, dpi=120, bbox_inches="tight")
    plt.close(fig)
    print(f"  wrote {path}")


if __name__ == "__main__":
    run(Path(__file__).resolve().parent.parent / "demo-output")
