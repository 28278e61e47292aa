"""k-medoids of a dask array of features: CLARA on dask's graphs (Schubert & Rousseeuw 2021).

The same algorithm, and for the same seed the same samples and medoids, as the in-memory
``method="clara"`` (``rust/rankcore/src/kmedoids/clara.rs``):

- sample ``s`` holds the best medoids so far plus points drawn, in order, from the
  permutation of ``range(n)`` that Fisher–Yates makes with the Philox uniforms of column ``s``
  of stream ``STREAM_CLARA`` (only the first ``sample_size + n_clusters`` positions are drawn,
  on the client), skipping points already taken, until it has ``sample_size`` points;
- the sample's rows are gathered into one task on a worker (``X[keep]``), where FasterPAM
  runs in memory with the Rust kernels (the start: ``init`` for the first sample, the best
  medoids so far for the later ones; the seed ``seed + s``); only the medoid indices and
  coordinates come back;
- the loss of those medoids on all points is a blockwise sum (each block assigned to the
  medoids by the Rust kernel with ``max_iter=0``), the best sample is kept, and every point
  is assigned to it blockwise.

Assignments equal the in-memory ones exactly (each point's nearest medoid is a pure function
of the point and the medoids, ties to the lowest cluster); the losses agree to rounding (the
sums run over blocks).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

__all__ = ["clara", "distances"]

#: The Philox stream of CLARA's samples (``kmedoids::init::STREAM_CLARA``).
STREAM_CLARA = 0x4B4D_0004


def _permutation_prefix(n: int, count: int, seed: int, column: int) -> list[int]:
    """The first `count` entries of ``kmedoids::init::sample(n, n, rng, column)``: Fisher–Yates
    swaps with ``j = i + min(floor(u_i (n - i)), n - i - 1)``, kept in a dict (O(count))."""
    from rankcore import _core

    count = min(count, n)
    u = _core.random_matrix("uniform", seed, STREAM_CLARA, 0, column, count, 1)[:, 0]
    moved: dict[int, int] = {}
    out = []
    for i in range(count):
        j = i + min(int(u[i] * float(n - i)), n - i - 1)
        vi, vj = moved.get(i, i), moved.get(j, j)
        moved[i], moved[j] = vj, vi
        out.append(vj)
    return out


def _solve_sample(Xs: np.ndarray, metric: str, opts: dict) -> dict:
    """FasterPAM on the gathered sample (task side, on a worker)."""
    from rankcore import _core

    Xs = np.ascontiguousarray(Xs)
    out = _core.kmedoids_fit("features", Xs, metric, opts)
    med = np.asarray(out["medoids"], dtype=np.int64)
    return {"medoids": med, "coords": Xs[med].copy(), "init": np.asarray(out["init_medoids"]),
            "n_iter": int(out["n_iter"]), "n_swap": int(out["n_swap"])}


def _assign_block(block: np.ndarray, coords: np.ndarray, medoids: np.ndarray, metric: str,
                  block_info: Any = None) -> np.ndarray:
    """Labels of the rows of a block, then the block's loss, as one float64 vector of length
    ``rows + 1`` (task side).

    The Rust kernel assigns the rows to the medoids placed in front of them (``max_iter=0``:
    nearest medoid, ties to the lowest cluster, the loss summed in float64); a row that *is*
    a medoid (by global index) keeps its own cluster, as in memory.
    """
    from rankcore import _core

    k = coords.shape[0]
    rows = np.ascontiguousarray(np.concatenate([coords.astype(block.dtype, copy=False), block]))
    opts = {"n_clusters": k, "method": "fasterpam", "init": "build", "max_iter": 0, "seed": 0,
            "verbose": False, "n_samples": 1, "sample_size": 0, "sample_weight": None,
            "matrix_budget": 0, "medoids": list(range(k))}
    out = _core.kmedoids_fit("features", rows, metric, opts)
    labels = np.asarray(out["labels"], dtype=np.int64)[k:]
    r0 = block_info[0]["array-location"][0][0] if block_info else 0
    local = np.asarray(medoids, dtype=np.int64) - r0
    inside = (local >= 0) & (local < block.shape[0])
    labels[local[inside]] = np.nonzero(inside)[0]
    return np.concatenate([labels.astype(np.float64), [float(out["loss"])]])


def _last(block: np.ndarray) -> np.ndarray:
    return block[-1:]


def _assignment(X: Any, coords: np.ndarray, medoids: np.ndarray, metric: str) -> Any:
    """Per block ``[labels..., loss]`` (lazy), chunked ``rows + 1``."""
    return X.map_blocks(
        _assign_block, coords, np.asarray(medoids, dtype=np.int64), metric, drop_axis=1,
        chunks=(tuple(c + 1 for c in X.chunks[0]),), dtype=np.float64,
        meta=np.empty((0,), dtype=np.float64), token="rankcore-kmedoids-assign",
    )


def _loss(X: Any, coords: np.ndarray, medoids: np.ndarray, metric: str) -> float:
    blocks = _assignment(X, coords, medoids, metric)
    per_block = blocks.map_blocks(_last, chunks=((1,) * blocks.numblocks[0],), dtype=np.float64)
    return float(np.sum(np.asarray(per_block.compute()), dtype=np.float64))


def labels_and_loss(X: Any, coords: np.ndarray, medoids: np.ndarray, metric: str) -> tuple[np.ndarray, float]:
    """Every point's cluster (NumPy int64) and the loss, from one blockwise pass."""
    out = np.asarray(_assignment(X, coords, medoids, metric).compute())
    ends = np.cumsum([c + 1 for c in X.chunks[0]])
    labels = np.concatenate([out[e - c - 1:e - 1] for e, c in zip(ends, X.chunks[0])])
    loss = float(np.sum(out[ends - 1], dtype=np.float64))
    return labels.astype(np.int64), loss


@dataclass(frozen=True)
class ClaraResult:
    medoids: np.ndarray
    coords: np.ndarray
    labels: np.ndarray
    loss: float
    n_iter: int
    n_swap: int
    init_medoids: np.ndarray


def clara(X: Any, n_clusters: int, metric: str, *, seed: int, init: Any, max_iter: int,
          n_samples: int, sample_size: int, verbose: bool = False) -> ClaraResult:
    """CLARA on the validated dask feature array `X` (see the module); `init` is an init
    name or a list of starting medoid indices, `metric` the core's metric name."""
    import dask
    from dask import delayed

    n, k = int(X.shape[0]), int(n_clusters)
    m = min(max(sample_size or 80 + 4 * k, k), n)
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    best: tuple[float, np.ndarray, np.ndarray] | None = None
    total_iter = total_swap = 0
    first_init = np.zeros(0, dtype=np.int64)
    for s in range(max(n_samples, 1)):
        keep = list(best[1]) if best is not None else (list(init) if not isinstance(init, str) else [])
        taken = set(keep)
        for x in _permutation_prefix(n, m + len(keep), seed, s):
            if len(keep) >= m:
                break
            if x not in taken:
                taken.add(x)
                keep.append(x)
        keep_arr = np.sort(np.asarray(keep, dtype=np.int64))
        opts = {"n_clusters": k, "method": "fasterpam", "init": "build", "max_iter": max_iter,
                "seed": (seed + s) % 2**64, "verbose": False, "n_samples": 1, "sample_size": 0,
                "sample_weight": None, "matrix_budget": 256 << 20}
        start = best[1] if best is not None else (None if isinstance(init, str) else np.asarray(init))
        if start is None:
            opts["init"] = init
        else:
            opts["medoids"] = [int(i) for i in np.searchsorted(keep_arr, start)]
        sample = X[keep_arr]  # gathered into one task on a worker
        res = dask.compute(delayed(_solve_sample, pure=True)(sample, metric, opts))[0]
        med = keep_arr[res["medoids"]]
        total_iter += res["n_iter"]
        total_swap += res["n_swap"]
        if s == 0:
            first_init = keep_arr[res["init"]]
        loss = _loss(X, res["coords"], med, metric)
        if verbose:
            import sys

            print(f"kmedoids: CLARA sample {s + 1} loss {loss:.6e}", file=sys.stderr)
        if best is None or loss < best[0]:
            best = (loss, med, res["coords"])
    _, med, coords = best
    labels, loss = labels_and_loss(X, coords, med, metric)
    return ClaraResult(medoids=med, coords=coords, labels=labels, loss=loss, n_iter=total_iter,
                       n_swap=total_swap, init_medoids=first_init)


def _distance_block(block: np.ndarray, centers: np.ndarray, metric: Any) -> np.ndarray:
    """``KMedoids._distances`` of one row block (task side): the same scikit-learn call."""
    from sklearn.metrics import pairwise_distances

    with np.errstate(over="ignore"):
        D = pairwise_distances(block, centers, metric=metric)
    if not np.isfinite(D).all():
        raise ValueError(
            f"dissimilarities overflowed the {block.dtype} range (infinite distances); "
            "use float64 input or rescale the data"
        )
    return D.astype(block.dtype, copy=False)


def distances(X: Any, centers: np.ndarray, metric: Any) -> Any:
    """Dissimilarities of the rows of the dask array `X` to `centers`, lazily (row blocks)."""
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    k = centers.shape[0]
    return X.map_blocks(_distance_block, centers, metric, chunks=(X.chunks[0], (k,)),
                        dtype=X.dtype, meta=np.empty((0, 0), dtype=X.dtype),
                        token="rankcore-kmedoids-distances")


def _check_dask_call(metric: Any, method: str, sample_weight: Any, name: str) -> str:
    """The core metric name; refuses what the dask path does not offer (before any task)."""
    from rankcore._validation import check_choice
    from rankcore.kmedoids import FEATURE_METRICS, METHODS

    if callable(metric) or not isinstance(metric, str):
        if not callable(metric):
            raise TypeError(f"metric must be a string or a callable, got {metric!r}")
        raise NotImplementedError(f"{name}: callable metrics are not available on dask input")
    if metric == "precomputed":
        raise NotImplementedError(
            f"{name}: metric='precomputed' is not available on dask input; give the features "
            "and a feature metric"
        )
    check_choice(metric, "metric", tuple(FEATURE_METRICS))
    check_choice(method, "method", METHODS)
    if method not in ("clara", "auto"):  # "auto" on dask input is CLARA, the scalable method
        raise NotImplementedError(
            f"{name}: on dask input only method='clara' (or 'auto', which picks it) is "
            "available (FasterPAM on samples gathered to a worker, the assignment blockwise); "
            "pass method='clara', or X.compute() for the in-memory methods"
        )
    if sample_weight is not None:
        raise NotImplementedError(f"{name}: sample_weight is not available on dask input yet")
    return FEATURE_METRICS[metric]


def kmedoids(X: Any, n_clusters: Any, *, metric: Any, method: str, init: Any, max_iter: Any,
             random_state: Any, sample_weight: Any, n_samples: Any, sample_size: Any,
             verbose: Any) -> Any:
    """:func:`rankcore.kmedoids` on a dask array of features (method "clara")."""
    from rankcore._dask._arrays import check_array
    from rankcore._validation import check_choice, check_positive_int, check_random_state_seed
    from rankcore.kmedoids import _INT_MAX, INITS, KMedoidsResult, _check_bool, _check_indices

    core_metric = _check_dask_call(metric, method, sample_weight, "kmedoids")
    X = check_array(X, name="X")
    n = int(X.shape[0])
    k = check_positive_int(n_clusters, "n_clusters")
    if k > n:
        raise ValueError(f"n_clusters must be in [1, n_samples = {n}], got {k}")
    if isinstance(init, str):
        init = check_choice(init, "init", INITS)
    else:
        init = _check_indices(init, "init", n, k)
    res = clara(
        X, k, core_metric,
        seed=check_random_state_seed(random_state),
        init=init,
        max_iter=check_positive_int(max_iter, "max_iter", minimum=0, maximum=_INT_MAX),
        n_samples=check_positive_int(n_samples, "n_samples", maximum=_INT_MAX),
        sample_size=check_positive_int(sample_size, "sample_size", allow_none=True, maximum=_INT_MAX) or 0,
        verbose=_check_bool(verbose, "verbose"),
    )
    fields = dict(medoids=res.medoids, labels=res.labels, loss=res.loss, n_iter=res.n_iter,
                  n_swap=res.n_swap, converged=True, init_medoids=res.init_medoids)
    if "method" in KMedoidsResult.__dataclass_fields__:
        fields["method"] = "clara"
    return KMedoidsResult(**fields)


def fit_estimator(est: Any, X: Any, sample_weight: Any) -> Any:
    """``KMedoids.fit`` on a dask array (``method="clara"``): fitted attributes in memory."""
    from rankcore._dask._arrays import validate_estimator_data
    from rankcore._validation import check_positive_int, check_random_state_seed
    from rankcore.kmedoids import _check_indices

    core_metric = _check_dask_call(est.metric, est.method, sample_weight, "KMedoids.fit")
    X = validate_estimator_data(est, X, reset=True, accept_sparse=False)
    n = int(X.shape[0])
    k = check_positive_int(est.n_clusters, "n_clusters")
    if k > n:
        raise ValueError(f"n_clusters must be in [1, n_samples = {n}], got {k} (n_samples={n})")
    if est.medoid_indices is not None:
        init = _check_indices(est.medoid_indices, "medoid_indices", n, k)
    elif isinstance(est.init, str):
        from rankcore._validation import check_choice
        from rankcore.kmedoids import INITS

        init = check_choice(est.init, "init", INITS)
    else:
        raise NotImplementedError(
            "KMedoids.fit: init as medoid coordinates is not available on dask input; give "
            "medoid_indices"
        )
    res = clara(X, k, core_metric, seed=check_random_state_seed(est.random_state), init=init,
                max_iter=check_positive_int(est.max_iter, "max_iter", minimum=0),
                n_samples=5, sample_size=0, verbose=bool(est.verbose))
    est.medoid_indices_ = res.medoids
    est.labels_ = res.labels
    est.inertia_ = res.loss
    est.n_iter_ = res.n_iter
    est.n_swap_ = res.n_swap
    est.converged_ = True
    est.method_ = "clara"
    est.cluster_centers_ = np.asarray(res.coords, dtype=X.dtype)
    return est


def _silhouette_block(block: np.ndarray, coords: np.ndarray, medoids: np.ndarray, metric: str,
                      block_info: Any = None) -> np.ndarray:
    """Medoid silhouette values of a block's rows (task side): the Rust kernel on the medoids'
    coordinates placed in front of the rows; a row that is a medoid (by global index) gets
    the in-memory value of a point at distance 0 from its medoid."""
    from rankcore import _core

    k = coords.shape[0]
    rows = np.ascontiguousarray(np.concatenate([coords.astype(block.dtype, copy=False), block]))
    _, values = _core.kmedoids_silhouette("features", rows, metric, list(range(k)))
    values = np.array(values[k:], dtype=np.float64)
    r0 = block_info[0]["array-location"][0][0]
    local = np.asarray(medoids, dtype=np.int64) - r0
    values[local[(local >= 0) & (local < block.shape[0])]] = 1.0 if k > 1 else 0.0
    return values


def medoid_silhouette(X: Any, medoids: Any, labels: Any, metric: Any, samples: bool) -> Any:
    """:func:`rankcore.medoid_silhouette` of a dask feature array with given medoids: one
    blockwise pass; the per-point values come back as NumPy (like ``labels_``)."""
    from rankcore._dask._arrays import check_array
    from rankcore.kmedoids import _check_indices

    if labels is not None:
        raise NotImplementedError(
            "medoid_silhouette: labels need the full dissimilarity matrix; on dask input give medoids")
    core_metric = _check_dask_call(metric, "clara", None, "medoid_silhouette")
    X = check_array(X, name="X")
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    med = np.asarray(_check_indices(medoids, "medoids", int(X.shape[0]), None), dtype=np.int64)
    if med.size == 0:
        raise ValueError("medoids must not be empty")
    coords = np.asarray(X[np.sort(med)].compute())[np.argsort(np.argsort(med))]
    values = np.asarray(X.map_blocks(
        _silhouette_block, coords, med, core_metric, drop_axis=1, chunks=(X.chunks[0],),
        dtype=np.float64, meta=np.empty((0,), dtype=np.float64), token="rankcore-silhouette",
    ).compute())
    mean = float(np.mean(values))
    return (mean, values) if samples else mean
