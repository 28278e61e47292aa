"""Random projections and FastRP: the demo section (``make demo`` runs ``run(out_dir)``).

1. A sparse random projection of a 1000 x 10000 matrix: pairwise distances are kept within
   the Johnson-Lindenstrauss eps, the same matrix as sklearn's estimator would use in its
   place, and the time beside scikit-learn's.
2. FastRP on Zachary's karate club (shipped with networkx): how well the embeddings recover
   the two clubs (logistic regression, 2-means), and a 2-D view written to
   demo-output/fastrp_karate.png.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

import rankcore

SEED = 0


def _header(title: str) -> None:
    print(f"\n{title}\n{'=' * len(title)}")


def _projection_section() -> None:
    _header("Sparse random projection (Li, Hastie & Church), matrix generated from the seed")
    from sklearn.random_projection import SparseRandomProjection as SkSRP

    rng = np.random.default_rng(SEED)
    X = rng.standard_normal((1000, 10000))
    eps = 0.3
    k = int(rankcore.johnson_lindenstrauss_min_dim(X.shape[0], eps=eps))
    est = rankcore.SparseRandomProjection(eps=eps, random_state=SEED)
    t0 = time.perf_counter()
    Y = est.fit_transform(X)
    t_ours = time.perf_counter() - t0
    t0 = time.perf_counter()
    SkSRP(eps=eps, random_state=SEED).fit_transform(X)
    t_sk = time.perf_counter() - t0
    i, j = rng.integers(0, 1000, 500), rng.integers(0, 1000, 500)
    keep = i != j
    ratio = ((Y[i[keep]] - Y[j[keep]]) ** 2).sum(1) / ((X[i[keep]] - X[j[keep]]) ** 2).sum(1)
    print(f"  1000 x 10000 -> {k} components (JL bound for eps={eps}), density {est.density_:.4f}")
    print(f"  squared-distance ratios over 500 pairs: [{ratio.min():.3f}, {ratio.max():.3f}] "
          f"(inside [1 - eps, 1 + eps] = [{1 - eps}, {1 + eps}])")
    C = est.components_
    same = np.allclose(est.transform(X[:5]), X[:5] @ C.T.toarray())
    print(f"  components_ ({C.nnz} non-zeros, built on request) equals what transform used: {same}")
    print(f"  time: rankcore {t_ours:.3f} s, scikit-learn {t_sk:.3f} s ({t_sk / t_ours:.1f}x)")


def _fastrp_section(out_dir: Path) -> None:
    _header("FastRP node embeddings of Zachary's karate club")
    try:
        import networkx as nx
    except ImportError:
        print("  networkx is not installed: section skipped (pip install networkx)")
        return
    from sklearn.cluster import KMeans
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import adjusted_rand_score
    from sklearn.model_selection import cross_val_score

    G = nx.karate_club_graph()
    y = np.array([G.nodes[v]["club"] == "Officer" for v in G], dtype=int)
    embeddings = {}
    for variant in ("paper", "gds"):
        t0 = time.perf_counter()
        U = rankcore.fastrp(G, 32, variant=variant, random_state=SEED)
        dt = time.perf_counter() - t0
        acc = cross_val_score(LogisticRegression(max_iter=2000), U, y, cv=5).mean()
        Un = U / np.maximum(np.linalg.norm(U, axis=1, keepdims=True), 1e-12)
        ari = adjusted_rand_score(y, KMeans(2, n_init=10, random_state=SEED).fit_predict(Un))
        embeddings[variant] = U
        print(f"  {variant:<5}: 34 nodes x 32 dims in {dt * 1e3:.1f} ms; club prediction accuracy "
              f"(5-fold) {acc:.3f}; 2-means vs clubs ARI {ari:.3f}")
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        print("  matplotlib is not installed: no figure (pip install matplotlib)")
        return
    fig, axes = plt.subplots(1, 2, figsize=(10, 4.5))
    pos = None
    for ax, (variant, U) in zip(axes, embeddings.items()):
        Uc = U - U.mean(axis=0)
        _, _, Vt = np.linalg.svd(Uc, full_matrices=False)
        P = Uc @ Vt[:2].T  # the 2-D principal view of the embedding
        pos = {v: P[i] for i, v in enumerate(G)}
        nx.draw_networkx_edges(G, pos, ax=ax, alpha=0.15)
        ax.scatter(P[:, 0], P[:, 1], c=np.where(y == 1, "tab:orange", "tab:blue"), s=60, edgecolors="k")
        ax.set_title(f"FastRP ({variant}), 2 principal components")
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Karate club: colour = club after the split (blue: Mr. Hi, orange: Officer)")
    out_dir.mkdir(parents=True, exist_ok=True)
    path = out_dir / "fastrp_karate.png"
    fig.savefig(path, dpi=110, bbox_inches="tight")
    plt.close(fig)
    print(f"  wrote {path}")


def run(out_dir: Path) -> None:
    """The random-projection and FastRP sections of the tour."""
    _projection_section()
    _fastrp_section(Path(out_dir))


if __name__ == "__main__":
    run(Path(__file__).resolve().parent.parent / "demo-output")
