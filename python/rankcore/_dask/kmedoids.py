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

The dissimilarities come from features with a metric name (the Rust kernels), features with
a callable metric (called per pair in the in-memory order: the condensed matrix of the sample
on the worker, the point-to-medoid dissimilarities blockwise) or, with
``metric="precomputed"``, a square ``n × n`` dask matrix (the sample's block ``D[keep][:, keep]``
gathered, the medoids' columns read blockwise; a condensed vector is not available on dask
input). ``sample_weight`` (in memory or a dask array) weights each sample's FasterPAM with
the sampled points' weights and every loss, as in memory.

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


def _solve_sample(sample: np.ndarray, source: "_Source", opts: dict) -> dict:
    """FasterPAM on the gathered sample (task side, on a worker): features, the square
    dissimilarities among the sampled points, or features whose condensed dissimilarities
    the callable metric gives here (the in-memory slow path's helper)."""
    from rankcore import _core
    from rankcore.kmedoids import _callable_condensed

    # Arrays that came over the network may sit at any offset of a frame: C order, aligned.
    sample = np.require(sample, requirements=["C", "A"])
    if opts["sample_weight"] is not None:
        opts = dict(opts, sample_weight=np.require(opts["sample_weight"], np.float64, ["C", "A"]))
    if source.kind == "callable":
        out = _core.kmedoids_fit("condensed", _callable_condensed(sample, source.metric, "X"), "", opts)
    else:
        out = _core.kmedoids_fit(source.kind, sample, source.metric if source.kind == "features" else "", opts)
    med = np.asarray(out["medoids"], dtype=np.int64)
    coords = None if source.kind == "square" else sample[med].copy()
    return {"medoids": med, "coords": coords, "init": np.asarray(out["init_medoids"]),
            "n_iter": int(out["n_iter"]), "n_swap": int(out["n_swap"])}


def _own_cluster(labels: np.ndarray, medoids: np.ndarray, r0: int, rows: int) -> None:
    """A row that *is* a medoid (by global index) keeps its own cluster, as in memory."""
    local = np.asarray(medoids, dtype=np.int64) - r0
    inside = (local >= 0) & (local < rows)
    labels[local[inside]] = np.nonzero(inside)[0]


def _assign_block(block: np.ndarray, w: Any, coords: np.ndarray, medoids: np.ndarray, metric: str,
                  block_info: Any = None) -> np.ndarray:
    """Labels of the rows of a block of features, then the block's (weighted) loss, as one
    float64 vector of length ``rows + 1`` (task side).

    The Rust kernel assigns the rows to the medoids placed in front of them (``max_iter=0``:
    nearest medoid, ties to the lowest cluster, the loss summed in float64).
    """
    from rankcore import _core

    k = coords.shape[0]
    rows = np.ascontiguousarray(np.concatenate([coords.astype(block.dtype, copy=False), block]))
    weights = None if w is None else np.concatenate([np.ones(k), np.asarray(w, dtype=np.float64)[:, 0]])
    opts = {"n_clusters": k, "method": "fasterpam", "init": "build", "max_iter": 0, "seed": 0,
            "verbose": False, "n_samples": 1, "sample_size": 0, "sample_weight": weights,
            "matrix_budget": 0, "medoids": list(range(k))}
    out = _core.kmedoids_fit("features", rows, metric, opts)
    labels = np.asarray(out["labels"], dtype=np.int64)[k:]
    _own_cluster(labels, medoids, block_info[0]["array-location"][0][0], block.shape[0])
    return np.concatenate([labels.astype(np.float64), [float(out["loss"])]])


def _assign_rows(D: np.ndarray, w: Any, medoids: np.ndarray, block_info: Any = None) -> np.ndarray:
    """:func:`_assign_block` for a block of dissimilarities to the medoids (one column per
    medoid, in order): the nearest (ties to the lowest cluster; a medoid keeps its own), the
    loss ``Σ w d`` in float64, as the core's ``State`` does."""
    labels = np.argmin(D, axis=1).astype(np.int64) if D.shape[0] else np.zeros(0, dtype=np.int64)
    _own_cluster(labels, medoids, block_info[0]["array-location"][0][0], D.shape[0])
    d = D[np.arange(D.shape[0]), labels].astype(np.float64)
    if w is not None:
        d = d * np.asarray(w, dtype=np.float64)[:, 0]
    return np.concatenate([labels.astype(np.float64), [float(np.sum(d))]])


def _callable_block(block: np.ndarray, coords: np.ndarray, medoids: np.ndarray, metric: Any,
                    block_info: Any = None) -> np.ndarray:
    """Dissimilarities (float64) of a block's rows to the medoids by a callable metric, each
    pair called in the in-memory order (``metric(x_i, x_j)`` with ``i < j``; zero for a
    medoid's own row), with the in-memory checks (task side)."""
    r0 = block_info[0]["array-location"][0][0]
    out = np.zeros((block.shape[0], coords.shape[0]))
    for r in range(block.shape[0]):
        i = r0 + r
        for s, (j, c) in enumerate(zip(medoids, coords)):
            if i == j:
                continue
            a, b = (block[r], c) if i < j else (c, block[r])
            try:
                out[r, s] = metric(a, b)
            except (TypeError, ValueError) as e:
                raise TypeError(f"metric(X[{min(i, j)}], X[{max(i, j)}]) must return a real number: {e}") from e
            if not (np.isfinite(out[r, s]) and out[r, s] >= 0):
                raise ValueError(
                    f"metric(X[{min(i, j)}], X[{max(i, j)}]) returned {float(out[r, s])!r}: a callable "
                    "metric must return finite, non-negative dissimilarities"
                )
    return out


def _last(block: np.ndarray) -> np.ndarray:
    return block[-1:]


class _Source:
    """Where CLARA's dissimilarities come from, on dask: ``kind`` ``"features"`` (a feature
    array and the core's metric name), ``"callable"`` (features and a callable metric) or
    ``"square"`` (an ``n × n`` dissimilarity matrix); `w` the weights as an ``(n, 1)`` dask
    array chunked like the rows, or None."""

    def __init__(self, kind: str, X: Any, metric: Any, w: Any) -> None:
        if kind != "square" and len(X.chunks[1]) > 1:
            X = X.rechunk({1: -1})
        self.kind, self.X, self.metric = kind, X, metric
        self.w = None if w is None else w.reshape(-1, 1).rechunk((X.chunks[0], 1))

    def __getstate__(self) -> dict:  # tasks get the kind and metric, not the graphs
        return {"kind": self.kind, "metric": self.metric, "X": None, "w": None}

    @property
    def n(self) -> int:
        return int(self.X.shape[0])

    def sample(self, keep: np.ndarray) -> Any:
        """The rows (or the square block) of the sampled points, lazily (one task)."""
        return self.X[keep][:, keep] if self.kind == "square" else self.X[keep]

    def sample_weight(self, keep: np.ndarray) -> np.ndarray | None:
        return None if self.w is None else np.asarray(self.w[keep, 0].compute(), dtype=np.float64)

    def assignment(self, coords: Any, medoids: np.ndarray) -> Any:
        """Per row block ``[labels..., loss]`` (lazy), chunked ``rows + 1``."""
        import dask.array as da

        X, med = self.X, np.asarray(medoids, dtype=np.int64)
        chunks = (tuple(c + 1 for c in X.chunks[0]),)
        meta = np.empty((0,), dtype=np.float64)
        if self.kind == "features":
            return da.map_blocks(_assign_block, X, self.w, coords, med, self.metric, drop_axis=1,
                                 chunks=chunks, dtype=np.float64, meta=meta, token="rankcore-kmedoids-assign")
        D = self.distances(coords, med)
        return da.map_blocks(_assign_rows, D, self.w, med, drop_axis=1, chunks=chunks, dtype=np.float64,
                             meta=meta, token="rankcore-kmedoids-assign-rows")

    def distances(self, coords: Any, medoids: np.ndarray) -> Any:
        """Dissimilarities of every point to the medoids (``n × k``), lazily (square and
        callable sources)."""
        if self.kind == "square":
            return self.X[:, medoids].rechunk({1: -1})
        k = len(medoids)
        return self.X.map_blocks(_callable_block, coords, medoids, self.metric, chunks=(self.X.chunks[0], (k,)),
                                 dtype=np.float64, meta=np.empty((0, 0)), token="rankcore-kmedoids-callable")

    def loss(self, coords: Any, medoids: np.ndarray) -> float:
        blocks = self.assignment(coords, medoids)
        per_block = blocks.map_blocks(_last, chunks=((1,) * blocks.numblocks[0],), dtype=np.float64)
        return float(np.sum(np.asarray(per_block.compute()), dtype=np.float64))

    def labels_and_loss(self, coords: Any, medoids: np.ndarray) -> tuple[np.ndarray, float]:
        """Every point's cluster (NumPy int64) and the loss, from one blockwise pass."""
        rows = self.X.chunks[0]
        out = np.asarray(self.assignment(coords, medoids).compute())
        ends = np.cumsum([c + 1 for c in rows])
        labels = np.concatenate([out[e - c - 1:e - 1] for e, c in zip(ends, rows)])
        return labels.astype(np.int64), float(np.sum(out[ends - 1], dtype=np.float64))


@dataclass(frozen=True)
class ClaraResult:
    medoids: np.ndarray
    coords: np.ndarray | None
    labels: np.ndarray
    loss: float
    n_iter: int
    n_swap: int
    init_medoids: np.ndarray


def clara(source: _Source, n_clusters: int, *, seed: int, init: Any, max_iter: int,
          n_samples: int, sample_size: int, verbose: bool = False) -> ClaraResult:
    """CLARA on a validated dask source (see the module); `init` is an init name or a list
    of starting medoid indices."""
    import dask
    from dask import delayed

    n, k = source.n, int(n_clusters)
    m = min(max(sample_size or 80 + 4 * k, k), n)
    best: tuple[float, np.ndarray, Any] | None = None
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
                "sample_weight": source.sample_weight(keep_arr), "matrix_budget": 256 << 20}
        start = best[1] if best is not None else (None if isinstance(init, str) else np.asarray(init))
        if start is None:
            opts["init"] = init
        else:
            opts["medoids"] = [int(i) for i in np.searchsorted(keep_arr, start)]
        # The sample is gathered into one task on a worker and solved there.
        res = dask.compute(delayed(_solve_sample, pure=True)(source.sample(keep_arr), source, opts))[0]
        med = keep_arr[res["medoids"]]
        total_iter += res["n_iter"]
        total_swap += res["n_swap"]
        if s == 0:
            first_init = keep_arr[res["init"]]
        loss = source.loss(res["coords"], med)
        if verbose:
            import sys

            print(f"kmedoids: CLARA sample {s + 1} loss {loss:.6e}", file=sys.stderr)
        if best is None or loss < best[0]:
            best = (loss, med, res["coords"])
    _, med, coords = best
    labels, loss = source.labels_and_loss(coords, med)
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


def _check_weight_block(w: np.ndarray) -> np.ndarray:
    if not np.isfinite(w).all():
        raise ValueError("sample_weight contains NaN or infinity")
    if (w < 0).any():
        raise ValueError("sample_weight must be non-negative")
    return w


def _weights(sample_weight: Any, X: Any) -> Any:
    """`sample_weight` (array-like or a 1-D dask array of length n) as a float64 dask array
    chunked like the rows of `X`, with the in-memory checks (for a dask one: one pass over
    the weights alone); None when not given."""
    import dask.array as da

    from rankcore._backend import namespace
    from rankcore.kmedoids import _check_weights

    n = int(X.shape[0])
    if sample_weight is None:
        return None
    if namespace(sample_weight) != "dask":
        return da.from_array(_check_weights(sample_weight, n), chunks=(X.chunks[0],))
    from rankcore._dask._arrays import check_array

    w = check_array(sample_weight, name="sample_weight", ndim=1, ensure_finite=False).astype(np.float64)
    if int(w.shape[0]) != n:
        raise ValueError(f"sample_weight must have length n_samples = {n}, got {int(w.shape[0])}")
    w = w.map_blocks(_check_weight_block, dtype=np.float64).rechunk((X.chunks[0],))
    if float(w.sum().compute()) == 0.0:
        raise ValueError("sample_weight must not be all zero: there would be nothing to cluster")
    return w


def _source(X: Any, metric: Any, sample_weight: Any, method: str, name: str) -> _Source:
    """Validates the metric, `X` (features, or for ``metric="precomputed"`` a square dask
    matrix of dissimilarities) and the method before any task runs; the source for CLARA."""
    from rankcore._dask._arrays import check_array
    from rankcore._validation import check_choice
    from rankcore.kmedoids import FEATURE_METRICS, METHODS

    if not (callable(metric) or isinstance(metric, str)):
        raise TypeError(f"metric must be a string or a callable, got {metric!r}")
    if isinstance(metric, str):
        check_choice(metric, "metric", ("precomputed", *FEATURE_METRICS))
    check_choice(method, "method", METHODS)
    if method not in ("clara", "auto"):  # "auto" on dask input is CLARA, the scalable method
        raise NotImplementedError(
            f"{name}: on dask input only method='clara' (or 'auto', which picks it) is "
            "available (FasterPAM on samples gathered to a worker, the assignment blockwise); "
            "pass method='clara', or X.compute() for the in-memory methods"
        )
    X = check_array(X, name="X")
    if callable(metric):
        kind, core_metric = "callable", metric
    elif metric == "precomputed":
        if X.shape[0] != X.shape[1]:
            raise ValueError(
                f"X must be a square dissimilarity matrix when metric='precomputed', got shape {X.shape} "
                "(a condensed vector is not available on dask input)"
            )
        kind, core_metric = "square", ""
    else:
        kind, core_metric = "features", FEATURE_METRICS[metric]
    return _Source(kind, X, core_metric, _weights(sample_weight, X))


def kmedoids(X: Any, n_clusters: Any, *, metric: Any, method: str, init: Any, max_iter: Any,
             random_state: Any, sample_weight: Any, n_samples: Any, sample_size: Any,
             verbose: Any) -> Any:
    """:func:`rankcore.kmedoids` on a dask array (method "clara"): features with a metric
    name or a callable, or a square dissimilarity matrix (``metric="precomputed"``)."""
    from rankcore._validation import check_choice, check_positive_int, check_random_state_seed
    from rankcore.kmedoids import _INT_MAX, INITS, KMedoidsResult, _check_bool, _check_indices

    source = _source(X, metric, sample_weight, method, "kmedoids")
    n = source.n
    k = check_positive_int(n_clusters, "n_clusters")
    if k > n:
        raise ValueError(f"n_clusters must be in [1, n_samples = {n}], got {k}")
    if isinstance(init, str):
        init = check_choice(init, "init", INITS)
    else:
        init = _check_indices(init, "init", n, k)
    res = clara(
        source, k,
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

    source = _source(X, est.metric, sample_weight, est.method, "KMedoids.fit")
    X = validate_estimator_data(est, X, reset=True, accept_sparse=False)
    n = source.n
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
    res = clara(source, k, seed=check_random_state_seed(est.random_state), init=init,
                max_iter=check_positive_int(est.max_iter, "max_iter", minimum=0),
                n_samples=5, sample_size=0, verbose=bool(est.verbose))
    est.medoid_indices_ = res.medoids
    est.labels_ = res.labels
    est.inertia_ = res.loss
    est.n_iter_ = res.n_iter
    est.n_swap_ = res.n_swap
    est.converged_ = True
    est.method_ = "clara"
    est.cluster_centers_ = None if res.coords is None else np.asarray(res.coords, dtype=X.dtype)
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


def _silhouette_rows(D: np.ndarray, medoids: np.ndarray, block_info: Any = None) -> np.ndarray:
    """Medoid silhouette of a block of dissimilarities to the medoids: ``1 - a/b`` with ``a``,
    ``b`` the nearest and second nearest (``1`` when ``a = 0``, ``0`` with one medoid), as
    the in-memory kernel (task side)."""
    k = D.shape[1]
    if k == 1 or D.shape[0] == 0:
        return np.zeros(D.shape[0])
    labels = np.argmin(D, axis=1)
    _own_cluster(labels, medoids, block_info[0]["array-location"][0][0], D.shape[0])
    rows = np.arange(D.shape[0])
    a = D[rows, labels].astype(np.float64)
    rest = D.astype(np.float64)
    rest[rows, labels] = np.inf
    b = rest.min(axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(a == 0, 1.0, 1.0 - a / b)


def medoid_silhouette(X: Any, medoids: Any, labels: Any, metric: Any, samples: bool) -> Any:
    """:func:`rankcore.medoid_silhouette` of a dask array with given medoids (features, a
    callable metric or square dissimilarities): one blockwise pass; the per-point values
    come back as NumPy (like ``labels_``)."""
    from rankcore.kmedoids import _check_indices

    if labels is not None:
        raise NotImplementedError(
            "medoid_silhouette: labels need the full dissimilarity matrix; on dask input give medoids")
    source = _source(X, metric, None, "clara", "medoid_silhouette")
    X = source.X
    med = np.asarray(_check_indices(medoids, "medoids", source.n, None), dtype=np.int64)
    if med.size == 0:
        raise ValueError("medoids must not be empty")
    meta = np.empty((0,), dtype=np.float64)
    if source.kind == "features":
        coords = np.asarray(X[np.sort(med)].compute())[np.argsort(np.argsort(med))]
        values = X.map_blocks(_silhouette_block, coords, med, source.metric, drop_axis=1, chunks=(X.chunks[0],),
                              dtype=np.float64, meta=meta, token="rankcore-silhouette")
    else:
        coords = None if source.kind == "square" else np.asarray(X[np.sort(med)].compute())[np.argsort(np.argsort(med))]
        values = source.distances(coords, med).map_blocks(
            _silhouette_rows, med, drop_axis=1, dtype=np.float64, meta=meta, token="rankcore-silhouette-rows")
    values = np.asarray(values.compute())
    mean = float(np.mean(values))
    return (mean, values) if samples else mean
