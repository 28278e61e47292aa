"""k-medoids clustering: FasterPAM, FastPAM1/2, PAM, alternating, FastCLARA.

The functional API :func:`kmedoids` covers what the ``kmedoids`` package's ``fasterpam`` /
``fastpam1`` / ``pam`` / ``alternating`` functions do; :class:`KMedoids` is a drop-in for
scikit-learn-extra's ``KMedoids`` (same parameter names where they mean the same; our
defaults differ, see the class). :func:`medoid_silhouette` is the O(nk) medoid silhouette.

Dissimilarities come from a precomputed square matrix, a condensed vector as
:func:`scipy.spatial.distance.pdist` returns it, or features with a metric computed on the
fly (never forming the n×n matrix).

References
----------
E. Schubert, P. J. Rousseeuw, "Faster k-Medoids Clustering: Improving the PAM, CLARA, and
CLARANS Algorithms", SISAP 2019. E. Schubert, P. J. Rousseeuw, "Fast and Eager k-Medoids
Clustering: O(k) Runtime Improvement of the PAM, CLARA, and CLARANS Algorithms",
Information Systems 101 (2021). L. Kaufman, P. J. Rousseeuw, "Clustering by means of
medoids" (1987).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClusterMixin, TransformerMixin
from sklearn.metrics import pairwise_distances
from sklearn.utils.validation import check_is_fitted, validate_data

from rankcore import _core
from rankcore._backend import dispatch, namespace
from rankcore._validation import (
    check_array,
    check_choice,
    check_positive_int,
    check_random_state_seed,
)

__all__ = ["DynMscResult", "KMedoids", "KMedoidsResult", "dynmsc", "kmedoids", "medoid_silhouette"]

METHODS = ("auto", "fasterpam", "fastpam1", "fastpam2", "pam", "alternate", "clara", "clarans", "onebatch", "fastermsc")
INITS = ("auto", "build", "lab", "random", "k-medoids++", "heuristic")
#: Metric names accepted for features, and the core's name for each.
FEATURE_METRICS = {
    "euclidean": "euclidean",
    "l2": "euclidean",
    "sqeuclidean": "sqeuclidean",
    "manhattan": "manhattan",
    "cityblock": "manhattan",
    "l1": "manhattan",
    "cosine": "cosine",
}
METRICS = ("precomputed", *FEATURE_METRICS)
# Counts cross into the core as 64-bit integers: larger ones get a ValueError naming them.
_INT_MAX = 2**63 - 1


@dataclass(frozen=True)
class KMedoidsResult:
    """The result of :func:`kmedoids`.

    Attributes
    ----------
    medoids : ndarray of int64, shape (n_clusters,)
        Indices of the medoids; cluster ``c`` is the one around ``medoids[c]``.
    labels : ndarray of int64, shape (n_samples,)
        Cluster of each point: its nearest medoid (ties to the lowest cluster; a medoid is
        always in its own cluster).
    loss : float
        ``Σ_i w_i d(i, medoid(i))`` (weights 1 by default), accumulated in float64.
    n_iter : int
        Passes (FasterPAM, alternate), swap iterations (PAM, FastPAM1/2; one per swap for
        PAM and FastPAM1) or, for CLARA, the FasterPAM passes of all samples.
    n_swap : int
        Swaps performed (medoid moves for alternate).
    converged : bool
        True when the run ended in a local optimum, False when ``max_iter`` stopped it.
    init_medoids : ndarray of int64, shape (n_clusters,)
        The medoids the initialisation chose (CLARA: of its first sample).
    method : str
        The method that ran ("auto" resolved).
    """

    medoids: np.ndarray
    labels: np.ndarray
    loss: float
    n_iter: int
    n_swap: int
    converged: bool
    init_medoids: np.ndarray
    method: str = "fasterpam"


def _source(X: Any, metric: Any, name: str = "X") -> tuple[str, Any, str]:
    """(kind, data, core metric) for the core; validates shapes and dtypes.

    ``data`` is an array, or for CSR features the tuple ``(values, indptr, indices,
    n_features)`` with int64 indices and canonical rows (sorted, no duplicates).
    """
    if callable(metric):
        return "condensed", _callable_condensed(X, metric, name), ""
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a string or a callable, got {metric!r}")
    check_choice(metric, "metric", METRICS)
    if metric == "precomputed":
        X = check_array(X, name=name, ndim=None, allow_empty=True)
        if X.ndim == 2 and X.size == 0:
            raise ValueError(f"{name} is empty (shape={X.shape})")
        if X.ndim == 1:
            return "condensed", np.ascontiguousarray(X), ""
        if X.ndim != 2 or X.shape[0] != X.shape[1]:
            raise ValueError(
                f"{name} must be a square dissimilarity matrix or a condensed vector when "
                f"metric='precomputed', got shape {X.shape}"
            )
        # A symmetric matrix in Fortran order is its own transpose in C order: no copy.
        X = X.T if X.flags.f_contiguous and not X.flags.c_contiguous else np.ascontiguousarray(X)
        return "square", X, ""
    X = check_array(X, name=name, ndim=2, accept_sparse=True)
    if sp.issparse(X):
        return "csr", _csr_parts(X), FEATURE_METRICS[metric]
    return "features", np.ascontiguousarray(X), FEATURE_METRICS[metric]


def _csr_parts(X: Any) -> tuple[np.ndarray, np.ndarray, np.ndarray, int]:
    """``(values, indptr, indices, n_features)`` of a canonical CSR form of `X` (the input is
    never modified: a non-canonical one is copied before its duplicates are summed)."""
    X = X.tocsr()
    if not X.has_canonical_format:
        X = X.copy()
        X.sum_duplicates()
    values = np.ascontiguousarray(X.data)
    return values, X.indptr.astype(np.int64), X.indices.astype(np.int64), X.shape[1]


def _callable_condensed(X: Any, metric: Any, name: str) -> np.ndarray:
    """``metric(X[i], X[j])`` for every pair ``i < j``, as a condensed vector (float64).

    The documented slow path: one Python call per pair with the GIL held (Ctrl-C works),
    as scikit-learn's ``pairwise_distances`` with a callable. Dense rows are passed as 1-D
    arrays, sparse rows as 1 × n_features sparse matrices.
    """
    X = check_array(X, name=name, ndim=2, accept_sparse=True)
    n = X.shape[0]
    rows = [X[i] for i in range(n)]
    out = np.empty(n * (n - 1) // 2)
    t = 0
    for i in range(n - 1):
        xi = rows[i]
        for j in range(i + 1, n):
            try:
                out[t] = metric(xi, rows[j])
            except (TypeError, ValueError) as e:
                raise TypeError(f"metric({name}[{i}], {name}[{j}]) must return a real number: {e}") from e
            t += 1
    bad = np.flatnonzero(~(np.isfinite(out) & (out >= 0)))
    if bad.size:
        i, j = _condensed_pair(int(bad[0]), n)
        raise ValueError(
            f"metric({name}[{i}], {name}[{j}]) returned {float(out[bad[0]])!r}: a callable metric must "
            "return finite, non-negative dissimilarities"
        )
    return out


def _condensed_pair(t: int, n: int) -> tuple[int, int]:
    """The pair ``(i, j)``, ``i < j``, stored at position `t` of a condensed vector."""
    i = 0
    while t >= n - 1 - i:
        t -= n - 1 - i
        i += 1
    return i, i + 1 + t


def _n_points(kind: str, data: Any) -> int:
    if kind == "csr":
        return data[1].shape[0] - 1
    if kind == "condensed":
        m = data.shape[0]
        n = int(round((1 + np.sqrt(1 + 8 * m)) / 2))
        if n * (n - 1) // 2 != m:
            raise ValueError(f"a condensed distance vector must have length n (n - 1) / 2, got {m}")
        return n
    return data.shape[0]


def _check_indices(ind: Any, name: str, n: int, k: int | None) -> list[int]:
    arr = np.asarray(ind)
    if arr.ndim != 1 or (arr.size and arr.dtype.kind not in "iu"):
        raise TypeError(f"{name} must be a 1-D array of integer indices, got {ind!r}")
    if k is not None and arr.size != k:
        raise ValueError(f"{name} must hold n_clusters = {k} indices, got {arr.size}")
    if arr.size and (arr.min() < 0 or arr.max() >= n):
        raise ValueError(f"{name} must be in [0, {n}), got {arr.tolist()}")
    if len(np.unique(arr)) != arr.size:
        raise ValueError(f"{name} must be distinct, got {arr.tolist()}")
    return [int(v) for v in arr]


def _check_weights(sample_weight: Any, n: int) -> np.ndarray | None:
    if sample_weight is None:
        return None
    w = check_array(sample_weight, name="sample_weight", ndim=1, dtype_policy="float64")
    if w.shape[0] != n:
        raise ValueError(f"sample_weight must have length n_samples = {n}, got {w.shape[0]}")
    if (w < 0).any():
        raise ValueError("sample_weight must be non-negative")
    if not (w > 0).any():
        raise ValueError("sample_weight must not be all zero: there would be nothing to cluster")
    return np.ascontiguousarray(w)


def kmedoids(
    X: Any,
    n_clusters: int,
    *,
    metric: str = "precomputed",
    method: str = "auto",
    init: str | Any = "auto",
    max_iter: int = 300,
    random_state: Any = None,
    sample_weight: Any = None,
    n_samples: int = 5,
    sample_size: int | None = None,
    precompute: bool | str = "auto",
    verbose: bool = False,
) -> KMedoidsResult:
    """Cluster ``X`` into ``n_clusters`` clusters around medoids (points of the data).

    Minimises ``Σ_i w_i d(i, m(i))`` over sets of ``n_clusters`` medoids, ``m(i)`` the medoid
    nearest to ``i``, by local search from an initial set.

    Parameters
    ----------
    X : array-like
        With ``metric="precomputed"``: an (n, n) dissimilarity matrix (symmetric to
        ``sqrt(eps) · max``, non-negative, zero diagonal; row ``x`` is what is read), or the
        condensed vector of length n (n − 1) / 2 that :func:`scipy.spatial.distance.pdist`
        returns. Otherwise an (n, n_features) feature matrix, dense or scipy.sparse (CSR,
        CSC, COO; distances merge the rows' non-zeros, never densifying, and equal the dense
        input's bit for bit). float32 and float64 are kept
        (distances are computed and stored in that dtype, the loss summed in float64);
        other real dtypes become float64. Never modified.
    n_clusters : int
        ``1 <= n_clusters <= n``.
    metric : {"precomputed", "euclidean", "sqeuclidean", "manhattan", "cosine"} or callable, default="precomputed"
        A callable ``metric(x, y) -> float`` is the slow path: it is called once per pair
        ``i < j`` (``n (n − 1) / 2`` Python calls, GIL held, Ctrl-C works; rows as 1-D
        arrays, or 1 × n_features matrices for sparse ``X``) and the condensed matrix is
        clustered (float64; the values must be finite and non-negative). For features, distances are computed on the fly in blocks, so no n×n matrix is
        formed (memory O(n·n_clusters)). Euclidean and squared euclidean sum
        ``(x_l − y_l)²`` directly (no ``‖x‖² + ‖y‖² − 2x·y`` cancellation), manhattan
        ``|x_l − y_l|``, cosine is ``1 − x·y / (‖x‖ ‖y‖)`` (1 against a zero vector); each
        distance is a pure function of the two rows, exactly symmetric, zero on the diagonal.
        Also accepted: "l2", "l1", "cityblock".
    method : {"auto", "fasterpam", "fastpam1", "fastpam2", "pam", "alternate", "clara", "clarans", "onebatch", "fastermsc"}, default="auto"
        "auto": "fasterpam" on given dissimilarities and on features whose n×n matrix fits
        the ``precompute`` budget (256 MiB: n ≤ 8192 in float32, 5792 in float64), else
        "onebatch" (so the default scales to any n; ``KMedoidsResult.method`` says which
        ran). "onebatch": OneBatchPAM (de Mathelin et al. 2025), FasterPAM's eager swaps with
        the loss estimated on one random batch of ``sample_size`` points (default
        ``max(100 ln(n · n_clusters), n_clusters)``, fewer when the n × batch matrix would
        pass 512 MiB, never below 2 n_clusters): O(n·m) per pass and memory instead of
        O(n²); then exact Voronoi steps (each medoid moved to the best member of its cluster,
        while that costs no more than the batch phase), and one pass of exact FasterPAM swaps
        whose candidates are the ``m / n_clusters`` members nearest to each medoid (O(n·m)
        again). Measured at 20000 × 64, k = 100: 0.35 % above FasterPAM's loss in about a
        sixth of its time (see the README's k-medoids bench); a larger ``sample_size`` gives
        a lower loss for more time.
        "fastermsc": FasterMSC, eager swaps that maximise the medoid silhouette
        (:func:`medoid_silhouette`) instead of minimising the loss (n_clusters >= 2, no
        sample_weight; Lenssen & Schubert 2022). "fasterpam": eager swaps (first improving swap, pass after pass; fastest, the
        default). "fastpam1": PAM's swaps and result exactly, O(k) faster. "pam": the
        original SWAP (reference; slow). "fastpam2": several swaps per iteration.
        "alternate": Voronoi iteration (k-means style; scikit-learn-extra's default; worse
        optima). "clara": FasterPAM on ``n_samples`` subsamples of ``sample_size`` points,
        the best on all points kept (for n too large for one FasterPAM). "clarans":
        FastCLARANS, randomised swaps from random medoids (``n_samples`` restarts, stop after
        ``sample_size`` draws without improvement, default ``max(250, 2.5% of n − k)``;
        ``max_iter`` bounds draws at ``max_iter · sample_size``).
    init : {"auto", "build", "lab", "random", "k-medoids++", "heuristic"} or array of int, default="auto"
        "auto": "build" while n² n_clusters ≤ 2.5·10⁹ (about a second), "lab" beyond, and
        always "lab" for "onebatch" (which exists to avoid reading n² dissimilarities).
        "build": PAM's greedy BUILD (deterministic, best start, O(n² k)). "lab": BUILD on
        random subsamples (linear approximative BUILD, O(n k) — use for large n). "random":
        uniform. "k-medoids++": D² sampling. "heuristic": the ``n_clusters`` points of
        least total dissimilarity (scikit-learn-extra's default). An array: the starting
        medoid *indices*.
    max_iter : int, default=300
        Bound on passes (fasterpam, alternate), swaps (pam, fastpam1) or iterations
        (fastpam2); 0 only assigns the points to the initial medoids.
    random_state : None, int, numpy.random.Generator or RandomState
        Seed for "random", "k-medoids++", "lab" and "clara" (Philox: results do not depend
        on the thread count).
    sample_weight : array-like of shape (n,), optional
        Non-negative weights: a point of weight ``w`` counts as ``w`` copies of itself in the
        loss and in every swap gain. A candidate medoid's own weight matters only through its
        own assignment cost, exactly as for its copies.
    n_samples, sample_size : int, default=5, None
        CLARA: number of subsamples and their size (None: ``80 + 4 n_clusters``). CLARANS:
        restarts and the number of failed draws that ends one. OneBatchPAM: ``sample_size``
        is the batch size (None: see ``method``).
    precompute : bool or "auto", default="auto"
        Feature input only: compute the n×n matrix once (with the same kernel, so the same
        bits) instead of recomputing rows on every pass. "auto" does when it takes at most
        256 MiB (n ≤ 8192 in float32, 5792 in float64); False never forms it (memory
        O(n·n_clusters)). Ignored by "clara".
    verbose : bool, default=False
        Print the loss after every pass/iteration (to stderr).

    Returns
    -------
    KMedoidsResult
        medoids, labels, loss, n_iter, n_swap, converged, init_medoids.

    Notes
    -----
    **cupy input** (a feature matrix, or a square matrix with ``metric="precomputed"``; see
    :mod:`rankcore._gpu.kmedoids`) runs on its GPU: distances are computed on the fly in
    tiles by a kernel with the same direct sums (the CPU's bits), never as an n×n matrix
    beyond the ``precompute`` budget; ``sample_weight`` must be a cupy array too, and
    medoids, labels and init_medoids come back as cupy arrays. Methods there: "fastpam1" and
    "pam" (FastPAM1: PAM's swaps, equal to the CPU's on tie-free data), "fasterpam" (also
    for "auto": an eager variant that applies, per pass, each medoid slot's best improving
    candidate, best first, each re-checked against the current state; it ends in a
    single-swap local optimum like FasterPAM, through other swaps) and "clara" (that variant
    on the samples). Inits: all of the above; "auto" is "build" while ``n² k <= 2.5e11``,
    else "lab". Other methods, sparse or condensed input and callable metrics raise
    ``NotImplementedError``.

    All methods are parallel and deterministic: a block of candidate swaps is evaluated
    in parallel against the current state and the first improving one in sequential order
    (fasterpam) or the best one with the lowest (candidate, medoid slot) on ties (pam,
    fastpam1) is applied, then the rest re-evaluated; every sum has a fixed order. So 1 and
    N threads give identical results, and FasterPAM makes the same swaps as the sequential
    algorithm of the ``kmedoids`` package from the same start.

    Examples
    --------
    >>> import numpy as np, rankcore
    >>> X = np.array([[0.0], [0.1], [0.2], [5.0], [5.1]])
    >>> res = rankcore.kmedoids(X, 2, metric="euclidean")
    >>> sorted(res.medoids.tolist()), round(res.loss, 6)
    ([1, 3], 0.3)
    """

    def cpu(a: Any) -> KMedoidsResult:
        from rankcore._gpu._arrays import check_same_device

        check_same_device("kmedoids", "numpy", ("sample_weight", sample_weight))
        kind, data, core_metric = _source(a, metric)
        return _fit(kind, data, core_metric, n_clusters, method=method, init=init,
                    max_iter=max_iter, random_state=random_state, sample_weight=sample_weight,
                    n_samples=n_samples, sample_size=sample_size, verbose=verbose,
                    precompute=precompute)

    def dask(a: Any) -> KMedoidsResult:
        from rankcore._dask.kmedoids import kmedoids as dask_kmedoids

        return dask_kmedoids(a, n_clusters, metric=metric, method=method, init=init,
                             max_iter=max_iter, random_state=random_state,
                             sample_weight=sample_weight, n_samples=n_samples,
                             sample_size=sample_size, verbose=verbose)

    def gpu(a: Any) -> KMedoidsResult:
        return _fit_device(a, n_clusters, metric=metric, method=method, init=init,
                           max_iter=max_iter, random_state=random_state,
                           sample_weight=sample_weight, n_samples=n_samples,
                           sample_size=sample_size, verbose=verbose, precompute=precompute)

    return dispatch(X, name="kmedoids", param="X", cpu=cpu, sparse=cpu, gpu=gpu, dask=dask)


def _fit(
    kind: str,
    data: np.ndarray,
    metric: str,
    n_clusters: Any,
    *,
    method: str,
    init: Any,
    max_iter: Any,
    random_state: Any,
    sample_weight: Any,
    n_samples: Any,
    sample_size: Any,
    verbose: Any,
    medoid_indices: Any = None,
    precompute: Any = "auto",
) -> KMedoidsResult:
    n = _n_points(kind, data)
    k = check_positive_int(n_clusters, "n_clusters")
    if k > n:
        raise ValueError(f"n_clusters must be in [1, n_samples = {n}], got {k}")
    method = _resolve_method(check_choice(method, "method", METHODS), kind, data, n, precompute)
    opts = _options(k, method, max_iter, random_state, verbose, n_samples, sample_size, precompute)
    opts.update(init="build", sample_weight=_check_weights(sample_weight, n))
    if medoid_indices is not None:
        opts["medoids"] = _check_indices(medoid_indices, "medoid_indices", n, k)
    elif isinstance(init, str):
        opts["init"] = check_choice(init, "init", INITS)
    else:
        opts["medoids"] = _check_indices(init, "init", n, k)
    return _result(_core.kmedoids_fit(kind, data, metric, opts), method)


def _options(k: int, method: str, max_iter: Any, random_state: Any, verbose: Any, n_samples: Any,
             sample_size: Any, precompute: Any) -> dict[str, Any]:
    """The validated options the core (CPU or device) reads, each error naming its parameter."""
    return {
        "n_clusters": k,
        "method": method,
        "max_iter": check_positive_int(max_iter, "max_iter", minimum=0, maximum=_INT_MAX),
        "seed": check_random_state_seed(random_state),
        "verbose": _check_bool(verbose, "verbose"),
        "n_samples": check_positive_int(n_samples, "n_samples", maximum=_INT_MAX),
        "sample_size": check_positive_int(sample_size, "sample_size", allow_none=True, maximum=_INT_MAX) or 0,
        "matrix_budget": _matrix_budget(precompute),
    }


def _result(out: dict, method: str) -> "KMedoidsResult":
    """The :class:`KMedoidsResult` of a fit's output dictionary (CPU core or device)."""
    return KMedoidsResult(
        medoids=out["medoids"],
        labels=out["labels"],
        loss=float(out["loss"]),
        n_iter=int(out["n_iter"]),
        n_swap=int(out["n_swap"]),
        converged=bool(out["converged"]),
        init_medoids=out["init_medoids"],
        method=method,
    )


#: Methods that run on the device ("auto" is "fasterpam" there: the eager variant).
DEVICE_METHODS = ("fasterpam", "fastpam1", "pam", "clara")


def _fit_device(
    X: Any,
    n_clusters: Any,
    *,
    metric: Any,
    method: Any,
    init: Any,
    max_iter: Any,
    random_state: Any,
    sample_weight: Any,
    n_samples: Any,
    sample_size: Any,
    verbose: Any,
    precompute: Any = "auto",
    medoid_indices: Any = None,
    name: str = "kmedoids",
) -> KMedoidsResult:
    """:func:`kmedoids` on a device array (cupy; NumPy stands in for it in CI): validates
    where the data lives and runs :mod:`rankcore._gpu.kmedoids`. Medoids, labels and
    init_medoids come back in the namespace of `X`."""
    from rankcore._gpu import kmedoids as device
    from rankcore._gpu._arrays import array_module, check_same_device, is_sparse
    from rankcore._gpu._arrays import check_array as check_device_array

    where = "cupy" if namespace(X) == "cupy" else "numpy"
    check_same_device(name, where, ("sample_weight", sample_weight))
    if callable(metric):
        raise NotImplementedError(
            f"{name}: a callable metric is not available on cupy input (it is one Python call "
            "per pair); use a metric name, or metric='precomputed' with the matrix on the device"
        )
    if not isinstance(metric, str):
        raise TypeError(f"metric must be a string or a callable, got {metric!r}")
    check_choice(metric, "metric", METRICS)
    xp = array_module(X)
    if is_sparse(X):
        raise NotImplementedError(
            f"{name}: sparse X (cupyx.scipy.sparse) is not available on the device; pass a dense "
            "cupy array, or a scipy.sparse matrix for the CPU path"
        )
    if metric == "precomputed" and getattr(X, "ndim", None) == 1:
        raise NotImplementedError(
            f"{name}: a condensed distance vector is not available on the device; pass the "
            "square (n, n) matrix"
        )
    data = check_device_array(X, name="X")
    if metric == "precomputed":
        data, kind, core_metric = _device_square(xp, data), "square", ""
    else:
        data, kind, core_metric = xp.ascontiguousarray(data), "features", FEATURE_METRICS[metric]
    n = int(data.shape[0])
    k = check_positive_int(n_clusters, "n_clusters")
    if k > n:
        raise ValueError(f"n_clusters must be in [1, n_samples = {n}], got {k}")
    method = check_choice(method, "method", METHODS)
    method = "fasterpam" if method == "auto" else method
    if method not in DEVICE_METHODS:
        raise NotImplementedError(
            f"{name}: method={method!r} is not available on cupy input; the device runs "
            "'fasterpam' (eager swaps), 'fastpam1', 'pam' (FastPAM1: the same swaps) and 'clara'"
        )
    opts = _options(k, method, max_iter, random_state, verbose, n_samples, sample_size, precompute)
    weights = _device_weights(xp, sample_weight, n)
    if medoid_indices is not None:
        start = _device_indices(xp, medoid_indices, "medoid_indices", n, k)
    elif isinstance(init, str):
        start = check_choice(init, "init", INITS)
    else:
        start = _device_indices(xp, init, "init", n, k)
    return _result(device.fit(data, kind, core_metric, opts, weights, start), method)


def _device_square(xp: Any, D: Any) -> Any:
    """A validated (finite: already checked) square dissimilarity matrix on the device, in
    C order: non-negative, zero diagonal, symmetric to ``sqrt(eps) · max`` (the CPU's checks;
    scalar reads only). A symmetric Fortran-ordered matrix is read as its transpose."""
    if D.shape[0] != D.shape[1]:
        raise ValueError(
            "X must be a square dissimilarity matrix or a condensed vector when "
            f"metric='precomputed', got shape {tuple(D.shape)}"
        )
    D = D.T if D.flags.f_contiguous and not D.flags.c_contiguous else xp.ascontiguousarray(D)
    if bool((D < 0).any()):
        raise ValueError("X must be non-negative (a dissimilarity matrix)")
    if bool((xp.diagonal(D) != 0).any()):
        raise ValueError("X must have a zero diagonal (a dissimilarity matrix)")
    n = int(D.shape[0])
    tol = float(np.sqrt(np.finfo(D.dtype).eps)) * float(D.max())
    step = max(1, (64 << 20) // max(1, n * D.itemsize))
    for r0 in range(0, n, step):
        r1 = min(n, r0 + step)
        if bool((xp.abs(D[r0:r1] - D[:, r0:r1].T) > tol).any()):
            raise ValueError("X must be symmetric (a dissimilarity matrix; asymmetry above sqrt(eps) * max)")
    return D


def _device_weights(xp: Any, sample_weight: Any, n: int) -> Any:
    """Float64 weights where the data lives (ones when None), checked as on the CPU."""
    if sample_weight is None:
        return xp.ones(n, dtype=xp.float64)
    if not hasattr(sample_weight, "dtype") or getattr(sample_weight, "ndim", None) != 1:
        raise ValueError("sample_weight must be a 1-D array")
    kind = np.dtype(sample_weight.dtype).kind
    if kind not in "biuf":
        raise TypeError(f"sample_weight must hold real numbers, got dtype {sample_weight.dtype}")
    if sample_weight.shape[0] != n:
        raise ValueError(f"sample_weight must have length n_samples = {n}, got {sample_weight.shape[0]}")
    w = xp.ascontiguousarray(sample_weight, dtype=xp.float64)
    if not bool(xp.isfinite(w).all()):
        raise ValueError("sample_weight contains NaN or infinity")
    if bool((w < 0).any()):
        raise ValueError("sample_weight must be non-negative")
    if not bool((w > 0).any()):
        raise ValueError("sample_weight must not be all zero: there would be nothing to cluster")
    return w


def _device_indices(xp: Any, ind: Any, name: str, n: int, k: int) -> Any:
    """Medoid indices as an int64 array where the data lives: host input is checked on the
    host and copied over (k integers); device input is checked there (scalar reads)."""
    if namespace(ind) != "cupy" or xp is np:
        return xp.asarray(_check_indices(ind, name, n, k), dtype=xp.int64)
    if ind.ndim != 1 or (ind.size and np.dtype(ind.dtype).kind not in "iu"):
        raise TypeError(f"{name} must be a 1-D array of integer indices")
    if ind.size != k:
        raise ValueError(f"{name} must hold n_clusters = {k} indices, got {ind.size}")
    if int(ind.min()) < 0 or int(ind.max()) >= n:
        raise ValueError(f"{name} must be in [0, {n})")
    if int(xp.unique(ind).size) != k:
        raise ValueError(f"{name} must be distinct")
    return ind.astype(xp.int64)


def _resolve_method(method: str, kind: str, data: Any, n: int, precompute: Any) -> str:
    """``method="auto"``: FasterPAM when the dissimilarities are given or their n×n matrix
    fits the default ``precompute`` budget (or ``precompute=True``), OneBatchPAM beyond."""
    if method != "auto":
        return method
    if kind in ("square", "condensed") or precompute is True:
        return "fasterpam"
    itemsize = (data[0] if kind == "csr" else data).dtype.itemsize
    return "fasterpam" if n * n * itemsize <= _MATRIX_BUDGET else "onebatch"


def _matrix_budget(precompute: Any) -> int:
    if isinstance(precompute, str):
        check_choice(precompute, "precompute", ("auto",))
        return _MATRIX_BUDGET
    return 2**62 if _check_bool(precompute, "precompute") else 0


#: Bytes of the n×n matrix that ``precompute="auto"`` allows (the core's MATRIX_BUDGET).
_MATRIX_BUDGET = 256 << 20


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def medoid_silhouette(
    X: Any,
    medoids: Any = None,
    *,
    labels: Any = None,
    metric: str = "precomputed",
    return_samples: bool = False,
) -> float | tuple[float, np.ndarray]:
    """The medoid silhouette of a clustering given by its medoids, in O(n k).

    ``s_i = 1 − a_i / b_i`` with ``a_i`` and ``b_i`` the dissimilarities of point ``i`` to its
    nearest and second-nearest medoid; the result is the mean over all points (Van der Laan et
    al. 2003; Lenssen & Schubert 2022). Zero distances follow the ``kmedoids`` package: ``a/b``
    counts as 0 when ``a_i = 0``, so ``s_i = 1`` even when ``b_i = 0`` too (duplicate points).
    With one medoid every ``s_i`` is 0 (``kmedoids`` returns 1 there; the silhouette is
    undefined without a second cluster).

    Parameters
    ----------
    X : array-like
        As in :func:`kmedoids` (square or condensed dissimilarities, or features).
    medoids : array-like of int, optional
        Distinct medoid indices (``KMedoidsResult.medoids`` / ``KMedoids.medoid_indices_``);
        every point counts in the cluster of its nearest medoid. Give exactly one of
        ``medoids`` and ``labels``.
    labels : array-like of int of shape (n,), optional
        Cluster labels instead (any clustering). The medoid of each cluster is its point of
        least summed dissimilarity to the cluster's points (ties: the lowest index); ``a_i``
        is the dissimilarity to the own cluster's medoid, ``b_i`` to the nearest other medoid
        and ``s_i = (b_i − a_i) / max(a_i, b_i)`` (which is ``1 − a_i / b_i`` when every point
        sits with its nearest medoid; ``s_i = 1`` when ``a_i = 0``; may be negative). Needs
        the full (n, n) dissimilarities (O(n²) time and memory). ``kmedoids`` takes medoids
        only.
    metric : str, default="precomputed"
        As in :func:`kmedoids`.
    return_samples : bool, default=False
        Also return the per-point values.

    Returns
    -------
    float, or (float, ndarray of shape (n,))
    """
    samples = _check_bool(return_samples, "return_samples")
    if (medoids is None) == (labels is None):
        raise TypeError("medoid_silhouette takes exactly one of medoids and labels")
    if namespace(X) == "dask":  # one blockwise pass over the features
        from rankcore._dask.kmedoids import medoid_silhouette as dask_silhouette

        return dask_silhouette(X, medoids, labels, metric, samples)
    if labels is not None:
        mean, values = _labels_silhouette(X, labels, metric)
        return (mean, values) if samples else mean
    kind, data, core_metric = _source(X, metric)
    n = _n_points(kind, data)
    med = _check_indices(medoids, "medoids", n, None)
    if not med:
        raise ValueError("medoids must not be empty")
    mean, values = _core.kmedoids_silhouette(kind, data, core_metric, med)
    return (float(mean), values) if samples else float(mean)


def _labels_silhouette(X: Any, labels: Any, metric: str) -> tuple[float, np.ndarray]:
    """Medoid silhouette of a labelling (see :func:`medoid_silhouette`), from the full matrix."""
    kind, data, core_metric = _source(X, metric)
    n = _n_points(kind, data)
    lab = np.asarray(labels)
    if lab.ndim != 1 or (lab.size and lab.dtype.kind not in "iu"):
        raise TypeError(f"labels must be a 1-D array of integers, got {labels!r}")
    if lab.shape[0] != n:
        raise ValueError(f"labels must have length n_samples = {n}, got {lab.shape[0]}")
    if kind == "condensed":
        from scipy.spatial.distance import squareform

        D = squareform(data, checks=False).astype(np.float64)
    elif kind == "square":
        D = data.astype(np.float64)
    else:
        D = _core.kmedoids_matrix(kind, data, core_metric).astype(np.float64)
    if not np.isfinite(D).all():
        raise ValueError(
            f"dissimilarities overflowed the {(data[0] if kind == 'csr' else data).dtype} range "
            "(infinite distances); use float64 input or rescale the data"
        )
    groups = np.unique(lab, return_inverse=True)[1].ravel()
    k = int(groups.max()) + 1
    if k == 1:
        return 0.0, np.zeros(n)
    med = np.empty(k, dtype=np.int64)
    for c in range(k):
        idx = np.flatnonzero(groups == c)
        med[c] = idx[np.argmin(D[np.ix_(idx, idx)].sum(axis=1))]
    Dm = D[:, med]
    a = Dm[np.arange(n), groups]
    Dm[np.arange(n), groups] = np.inf
    b = Dm.min(axis=1)
    top = np.maximum(a, b)
    values = np.where(a > 0, (b - a) / np.where(top > 0, top, 1.0), 1.0)
    return float(values.mean()), values


@dataclass(frozen=True)
class DynMscResult:
    """The result of :func:`dynmsc`.

    Attributes
    ----------
    n_clusters : int
        The chosen number of clusters (highest mean medoid silhouette; ties: the smaller).
    medoids, labels : ndarray of int64
        The clustering at that k.
    silhouette : float
        Its mean medoid silhouette.
    loss : float
        Its k-medoids loss (sum of distances to the nearest medoid).
    ks, silhouettes : ndarray
        Every k tried (from ``max_clusters`` down to ``min_clusters``) and its silhouette.
    n_swap : int
        Swaps over all k.
    """

    n_clusters: int
    medoids: np.ndarray
    labels: np.ndarray
    silhouette: float
    loss: float
    ks: np.ndarray
    silhouettes: np.ndarray
    n_swap: int


def dynmsc(
    X: Any,
    max_clusters: int,
    *,
    min_clusters: int = 2,
    metric: str = "precomputed",
    init: str | Any = "auto",
    max_iter: int = 300,
    random_state: Any = None,
    verbose: bool = False,
) -> DynMscResult:
    """DynMSC: choose the number of clusters by the medoid silhouette.

    Runs FasterMSC with ``max_clusters`` medoids, then repeatedly removes the medoid whose
    removal keeps the highest silhouette and optimises again, down to ``min_clusters``; the
    k with the highest mean medoid silhouette wins (Lenssen & Schubert, "Medoid Silhouette
    clustering with automatic cluster number selection", Information Systems 2024). The
    ``kmedoids`` package's ``dynmsc``.

    Parameters
    ----------
    X : array-like
        As in :func:`kmedoids`.
    max_clusters : int
        Largest k tried, ``2 <= max_clusters <= n``.
    min_clusters : int, default=2
        Smallest k tried.
    metric, init, max_iter, random_state, verbose
        As in :func:`kmedoids` (``init`` chooses the ``max_clusters`` starting medoids).

    Returns
    -------
    DynMscResult
    """
    kind, data, core_metric = _source(X, metric)
    n = _n_points(kind, data)
    kmax = check_positive_int(max_clusters, "max_clusters", minimum=2)
    if kmax > n:
        raise ValueError(f"max_clusters must be in [2, n_samples = {n}], got {kmax}")
    kmin = check_positive_int(min_clusters, "min_clusters", minimum=2, maximum=kmax)
    opts: dict[str, Any] = {
        "n_clusters": kmax,
        "min_clusters": kmin,
        "method": "fastermsc",
        "init": "build",
        "max_iter": check_positive_int(max_iter, "max_iter", minimum=0, maximum=_INT_MAX),
        "seed": check_random_state_seed(random_state),
        "verbose": _check_bool(verbose, "verbose"),
        "n_samples": 1,
        "sample_size": 0,
        "sample_weight": None,
        "matrix_budget": _MATRIX_BUDGET,
    }
    if isinstance(init, str):
        opts["init"] = check_choice(init, "init", INITS)
    else:
        opts["medoids"] = _check_indices(init, "init", n, kmax)
    out = _core.kmedoids_dynmsc(kind, data, core_metric, opts)
    return DynMscResult(
        n_clusters=len(out["medoids"]),
        medoids=out["medoids"],
        labels=out["labels"],
        silhouette=float(out["silhouette"]),
        loss=float(out["loss"]),
        ks=out["ks"],
        silhouettes=out["silhouettes"],
        n_swap=int(out["n_swap"]),
    )


def dissimilarity_matrix(X: Any, metric: str = "euclidean") -> np.ndarray:
    """The full (n, n) matrix of ``metric`` over the rows of ``X``, from the kernel that
    :func:`kmedoids` uses on the fly (bit-identical to what it reads; in ``X``'s dtype)."""
    kind, data, core_metric = _source(X, metric)
    return _core.kmedoids_matrix(kind, data, core_metric)


class KMedoids(ClusterMixin, TransformerMixin, BaseEstimator):
    """k-medoids clustering: a drop-in for scikit-learn-extra's ``KMedoids``.

    Parameters keep scikit-learn-extra's names and meanings; the defaults differ:
    ``method="auto"`` (FasterPAM, or OneBatchPAM for feature data too large for the n×n
    matrix; theirs "alternate", which finds worse optima) and ``init="auto"`` (PAM's BUILD,
    deterministic and the best start, while its O(n² k) work is small, LAB beyond; theirs
    "heuristic"). ``method_`` records the method that ran. Fitted on a cupy array, it runs on
    the GPU (see :func:`kmedoids`) and keeps its fitted arrays there; ``transform`` and
    ``predict`` then take cupy input and return cupy arrays.

    Parameters
    ----------
    n_clusters : int, default=8
    metric : str, default="euclidean"
        "precomputed" (fit on an (n, n) dissimilarity matrix; predict/transform then take
        (n_queries, n_train) dissimilarities to the training points), "euclidean",
        "sqeuclidean", "manhattan" ("l1", "cityblock"), "cosine" ("l2" = "euclidean"), or a
        callable ``metric(x, y) -> float`` (slow: one Python call per pair, see
        :func:`kmedoids`). Feature metrics accept scipy.sparse ``X`` (never densified).
    method : {"auto", "fasterpam", "fastpam1", "fastpam2", "pam", "alternate", "clara", "clarans", "onebatch", "fastermsc"}, default="auto"
        See :func:`kmedoids`.
    init : {"auto", "build", "lab", "random", "k-medoids++", "heuristic"} or array, default="auto"
        An array of shape (n_clusters, n_features) gives starting medoid *coordinates*, as
        in scikit-learn-extra: each row is replaced by the nearest training point (they must
        be distinct). Indices go in ``medoid_indices``.
    max_iter : int, default=300
    random_state : None, int, Generator or RandomState, default=None
    medoid_indices : array of int or None, default=None
        Starting medoid indices (overrides ``init``).
    verbose : bool, default=False

    Attributes
    ----------
    medoid_indices_ : ndarray of int64, shape (n_clusters,)
    cluster_centers_ : ndarray of shape (n_clusters, n_features), or None when precomputed
    labels_ : ndarray of int64, shape (n_samples,)
    inertia_ : float
        The (weighted) loss, sum of dissimilarities to the nearest medoid.
    n_iter_ : int
    n_swap_ : int
    converged_ : bool
    method_ : str
        The method that ran ("auto" resolved).
    n_features_in_ : int

    Examples
    --------
    >>> import numpy as np
    >>> from rankcore import KMedoids
    >>> X = np.array([[1, 2], [1, 4], [1, 0], [4, 2], [4, 4], [4, 0]], dtype=float)
    >>> km = KMedoids(n_clusters=2, random_state=0).fit(X)
    >>> km.labels_.tolist()
    [0, 0, 0, 1, 1, 1]
    """

    def __init__(
        self,
        n_clusters: int = 8,
        metric: str = "euclidean",
        method: str = "auto",
        init: str | Any = "auto",
        max_iter: int = 300,
        random_state: Any = None,
        *,
        medoid_indices: Any = None,
        verbose: bool = False,
    ) -> None:
        self.n_clusters = n_clusters
        self.metric = metric
        self.method = method
        self.init = init
        self.max_iter = max_iter
        self.random_state = random_state
        self.medoid_indices = medoid_indices
        self.verbose = verbose

    def __sklearn_tags__(self):  # noqa: D105
        tags = super().__sklearn_tags__()
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        tags.input_tags.pairwise = self._precomputed()
        tags.input_tags.sparse = not self._precomputed()
        return tags

    def _precomputed(self) -> bool:
        return isinstance(self.metric, str) and self.metric == "precomputed"

    def _pairwise_metric(self) -> Any:
        """The metric for scikit-learn's ``pairwise_distances`` (predict, transform, init)."""
        return self.metric if callable(self.metric) else FEATURE_METRICS[self.metric]

    def _validate(self, X: Any, reset: bool) -> Any:
        sparse = False if self._precomputed() else ["csr", "csc"]
        return validate_data(self, X, dtype=[np.float64, np.float32], accept_sparse=sparse, reset=reset)

    def fit(self, X: Any, y: Any = None, sample_weight: Any = None) -> KMedoids:
        """Cluster ``X`` (ignores ``y``); ``sample_weight`` as in :func:`kmedoids`."""
        if not (isinstance(self.metric, str) or callable(self.metric)):
            raise TypeError(f"metric must be a string or a callable, got {self.metric!r}")
        if isinstance(self.metric, str):
            check_choice(self.metric, "metric", METRICS)
        if namespace(X) == "dask":  # CLARA: samples solved on a worker, assignment blockwise
            from rankcore._dask.kmedoids import fit_estimator

            return fit_estimator(self, X, sample_weight)
        from rankcore._gpu._arrays import validate_estimator_data

        Xd = validate_estimator_data(self, X, reset=True)
        if Xd is not None:  # cupy: fitted on the device, attributes stay there
            return self._fit_device(Xd, sample_weight)
        X = self._validate(X, reset=True)
        n = X.shape[0]
        k = check_positive_int(self.n_clusters, "n_clusters")
        if k > n:
            raise ValueError(f"n_clusters must be in [1, n_samples = {n}], got {k} (n_samples={n})")
        kind, data, core_metric = _source(X, self.metric)
        init = self.init
        if not isinstance(init, str):
            init = self._init_indices(X, init, k)
        res = _fit(kind, data, core_metric, k, method=self.method, init=init,
                   max_iter=self.max_iter, random_state=self.random_state,
                   sample_weight=sample_weight, n_samples=5, sample_size=None,
                   verbose=self.verbose, medoid_indices=self.medoid_indices)
        self.medoid_indices_ = res.medoids
        self.labels_ = res.labels
        self.inertia_ = res.loss
        self.n_iter_ = res.n_iter
        self.method_ = res.method
        self.n_swap_ = res.n_swap
        self.converged_ = res.converged
        self.cluster_centers_ = None if self._precomputed() else X[res.medoids].copy()
        return self

    def _fit_device(self, X: Any, sample_weight: Any) -> KMedoids:
        """``fit`` on a validated device array (see :func:`kmedoids` for what runs there)."""
        n = X.shape[0]
        k = check_positive_int(self.n_clusters, "n_clusters")
        if k > n:
            raise ValueError(f"n_clusters must be in [1, n_samples = {n}], got {k} (n_samples={n})")
        init = self.init
        if not isinstance(init, str) and self.medoid_indices is None:
            init = self._init_indices_device(X, init, k)
        res = _fit_device(X, k, metric=self.metric, method=self.method, init=init,
                          max_iter=self.max_iter, random_state=self.random_state,
                          sample_weight=sample_weight, n_samples=5, sample_size=None,
                          verbose=self.verbose, medoid_indices=self.medoid_indices,
                          name=type(self).__name__)
        self.medoid_indices_ = res.medoids
        self.labels_ = res.labels
        self.inertia_ = res.loss
        self.n_iter_ = res.n_iter
        self.method_ = res.method
        self.n_swap_ = res.n_swap
        self.converged_ = res.converged
        self.cluster_centers_ = None if self._precomputed() else X[res.medoids].copy()
        return self

    def _init_indices_device(self, X: Any, init: Any, k: int) -> Any:
        """Medoid coordinates on the device → indices of the nearest training points."""
        from rankcore._gpu import kmedoids as device
        from rankcore._gpu._arrays import array_module, check_same_device
        from rankcore._gpu._arrays import check_array as check_device_array

        if self._precomputed():
            raise ValueError("init as coordinates needs features; with metric='precomputed' pass medoid_indices")
        check_same_device(type(self).__name__, "cupy" if namespace(X) == "cupy" else "numpy", ("init", init))
        centers = check_device_array(init, name="init")
        if tuple(centers.shape) != (k, X.shape[1]):
            raise ValueError(f"init must have shape (n_clusters, n_features) = {(k, X.shape[1])}, got {tuple(centers.shape)}")
        xp = array_module(X)
        centers = xp.ascontiguousarray(centers.astype(X.dtype))
        metric = self._device_metric()
        idx = device.cross_distances(centers, xp.ascontiguousarray(X), metric).argmin(axis=1)
        if int(xp.unique(idx).size) != k:
            raise ValueError("init: two starting centres map to the same nearest training point")
        return idx

    def _device_metric(self) -> str:
        if callable(self.metric):
            raise NotImplementedError(
                f"{type(self).__name__}: a callable metric is not available on cupy input; use a metric name"
            )
        return FEATURE_METRICS[self.metric]

    def _init_indices(self, X: np.ndarray, init: Any, k: int) -> np.ndarray:
        """Medoid coordinates → indices of the nearest training points."""
        if self._precomputed():
            raise ValueError("init as coordinates needs features; with metric='precomputed' pass medoid_indices")
        centers = check_array(init, name="init", ndim=2)
        if centers.shape != (k, X.shape[1]):
            raise ValueError(f"init must have shape (n_clusters, n_features) = {(k, X.shape[1])}, got {centers.shape}")
        idx = pairwise_distances(centers, X, metric=self._pairwise_metric()).argmin(axis=1)
        if len(np.unique(idx)) != k:
            raise ValueError("init: two starting centres map to the same nearest training point")
        return idx

    def _distances(self, X: Any) -> np.ndarray:
        if self._precomputed():
            if X.shape[1] != self.labels_.shape[0]:
                raise ValueError(
                    f"with metric='precomputed', X must hold dissimilarities to the {self.labels_.shape[0]} "
                    f"training points, got shape {X.shape}"
                )
            return np.array(X[:, self.medoid_indices_], dtype=X.dtype)
        with np.errstate(over="ignore"):  # overflow is reported below, as an error
            D = pairwise_distances(X, self.cluster_centers_, metric=self._pairwise_metric())
        if not np.isfinite(D).all():  # finite inputs, so float32 overflow (as `fit` reports)
            raise ValueError(
                f"dissimilarities overflowed the {X.dtype} range (infinite distances); "
                "use float64 input or rescale the data"
            )
        return D.astype(X.dtype, copy=False)

    def transform(self, X: Any) -> np.ndarray:
        """Dissimilarities of ``X`` to the medoids, shape (n_samples, n_clusters)."""
        check_is_fitted(self)
        if namespace(X) == "dask":  # lazily, row blocks, the same distances
            from rankcore._dask._arrays import validate_estimator_data
            from rankcore._dask.kmedoids import distances

            X = validate_estimator_data(self, X, reset=False, accept_sparse=False)
            if self._precomputed():  # the columns of the medoids, lazily
                return X[:, self.medoid_indices_].rechunk({1: -1})
            return distances(X, self.cluster_centers_, self._pairwise_metric())
        from rankcore._gpu._arrays import validate_estimator_data

        Xd = validate_estimator_data(self, X, reset=False)
        if Xd is not None:  # fitted on the device: the distances are computed there
            return self._distances_device(Xd)
        return self._distances(self._validate(X, reset=False))

    def _distances_device(self, X: Any) -> Any:
        from rankcore._gpu import kmedoids as device
        from rankcore._gpu._arrays import array_module

        xp = array_module(X)
        if self._precomputed():
            if X.shape[1] != self.labels_.shape[0]:
                raise ValueError(
                    f"with metric='precomputed', X must hold dissimilarities to the {self.labels_.shape[0]} "
                    f"training points, got shape {tuple(X.shape)}"
                )
            return xp.ascontiguousarray(X[:, self.medoid_indices_])
        C = self.cluster_centers_
        D = device.cross_distances(xp.ascontiguousarray(X.astype(C.dtype)), C, self._device_metric())
        if not bool(xp.isfinite(D).all()):
            raise ValueError(
                f"dissimilarities overflowed the {C.dtype} range (infinite distances); "
                "use float64 input or rescale the data"
            )
        return D

    def predict(self, X: Any) -> np.ndarray:
        """Index of the nearest medoid for each row of ``X`` (ties: lowest)."""
        return self.transform(X).argmin(axis=1).astype(np.int64)

    def fit_predict(self, X: Any, y: Any = None, sample_weight: Any = None) -> np.ndarray:
        """Fit and return ``labels_``."""
        return self.fit(X, sample_weight=sample_weight).labels_
