"""FastRP node embeddings: very sparse random projections of powers of the adjacency.

:func:`fastrp` embeds the nodes of a graph given as a scipy.sparse adjacency matrix, an
edge list ``(src, dst[, weight])`` or a networkx graph; :class:`FastRP` is the same as a
scikit-learn transformer (``fit(graph)`` stores ``embedding_``).

Two variants
------------
``variant="paper"`` follows Chen et al.'s reference code (``fastrp.py`` in
github.com/GTmac/FastRP)::

    E0 = L R,  N1 = M E0,  N_i = M N_{i-1},  U = w0 g(E0) + sum_i alpha_i g(N_i)

with ``M = D^-1 A`` (``transition=True``, the code's ``input_matrix="trans"``) or ``A``,
``L = diag(deg^beta)`` (weighted out-degree), ``R`` the very sparse projection of
scikit-learn's ``SparseRandomProjection`` (density ``1/sqrt(n)``), ``g`` the row L2
normalisation when ``normalize`` (the code's ``normalization``), and finally each column
standardised (``sklearn.preprocessing.scale``, as the code's ``fastrp_merge`` does) when
``standardize``. Defaults: the reference notebook's BlogCatalog configuration,
``iteration_weights=(1.0, 1.0, 7.81, 45.28)``, ``normalization_strength=-0.628``,
``transition=True``, ``normalize=False``, ``standardize=True``.

``variant="gds"`` follows Neo4j Graph Data Science's ``gds.fastRP``::

    E0 = [L R | F P],  N_i = normalize(A N_{i-1}),  U = w0 normalize(E0) + sum_i alpha_i N_i

with ``R`` of density 1/3 (``±sqrt(3)/sqrt(k)``), ``L`` from the number of out-edges, ``F P``
the node features projected by a second sparse matrix into ``int(k * feature_ratio)``
columns. Defaults: GDS's, ``iteration_weights=(0.0, 1.0, 1.0)``,
``normalization_strength=0.0``, ``self_influence=0.0``, ``feature_ratio=0.0``.

Parameter names, and the GDS names they stand for: ``n_components`` (embeddingDimension),
``iteration_weights`` (iterationWeights), ``normalization_strength`` (normalizationStrength;
the paper's beta, the reference code's ``alpha``), ``self_influence`` (nodeSelfInfluence),
``features`` (featureProperties), ``feature_ratio`` (propertyRatio), ``random_state``
(randomSeed). Node features are also accepted by the paper variant (same construction).

Graph conventions (both variants)
---------------------------------
- ``A[v, u]`` is the weight of the edge ``v -> u``; each node aggregates its
  out-neighbours (GDS's natural orientation; ``A @ X`` in the reference code). Undirected
  graphs are symmetric matrices; ``directed=False`` symmetrises any input as
  ``max(A, A.T)`` (the union of both directions; a symmetric input is unchanged).
- Duplicate edges are summed (as scipy does); stored zeros are not edges; self-loops are
  ordinary edges (a node then aggregates its own previous vector).
- Weights must be finite and non-negative, each stored entry (or each parallel edge of a
  networkx multigraph) checked before duplicates are summed.
- Nodes without out-edges: ``L_v = 1``; their rows of ``N_i`` are zero (and stay zero
  under normalisation), so an isolated node's embedding is ``w0`` times its initial vector
  (zero with the default ``self_influence=0``, as in GDS).

The similarity matrix is never formed: each iteration is one parallel CSR x dense product
(rows in storage order, so results are bit-identical for any thread count), and ``R`` is
generated from the seed (``R == SparseRandomProjection(n_components, density=...,
random_state=seed).fit(np.empty((1, n))).components_.T``). Memory besides the graph and the
``n x n_components`` result: ``R`` as two bit masks per node, and one more ``n x
n_components`` buffer for the gds default weights (two for the paper's; none for a single
power), as powers after the last non-zero weight are skipped and the last one is added to
the result row by row.
"""

from __future__ import annotations

import numbers
from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse as sp
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.utils.validation import check_is_fitted

from rankcore import _core
from rankcore._backend import namespace
from rankcore._gpu._arrays import array_module, check_same_device
from rankcore._validation import (
    check_array,
    check_choice,
    check_nonneg_float,
    check_positive_int,
    check_random_state_seed,
)

__all__ = ["FastRP", "fastrp"]

_DEFAULTS = {
    "paper": dict(iteration_weights=(1.0, 1.0, 7.81, 45.28), normalization_strength=-0.628,
                  transition=True, normalize=False, standardize=True, density="auto"),
    "gds": dict(iteration_weights=(0.0, 1.0, 1.0), normalization_strength=0.0,
                transition=False, normalize=True, standardize=False, density=1.0 / 3.0),
}


def _standardize(U: Any, block: int = 65536) -> Any:
    """Columns to zero mean and unit variance in place (``sklearn.preprocessing.scale``;
    zero-variance columns are only centred), with the statistics summed in float64 over
    row blocks so float32 results need no float64 copy. Written against the array's
    namespace: the device path (:mod:`rankcore._gpu.fastrp`) uses it on cupy arrays."""
    xp = array_module(U)
    n = U.shape[0]
    s1 = xp.zeros(U.shape[1])
    for i in range(0, n, block):
        s1 += U[i:i + block].sum(axis=0, dtype=xp.float64)
    mean = s1 / n
    s2 = xp.zeros(U.shape[1])
    for i in range(0, n, block):
        c = U[i:i + block] - mean
        s2 += xp.einsum("ij,ij->j", c, c)
    sd = xp.sqrt(s2 / n)
    sd[sd == 0] = 1.0
    for i in range(0, n, block):
        U[i:i + block] = (U[i:i + block] - mean) / sd
    return U


def _bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def _check_weights(A: Any) -> None:
    """Finite, non-negative weights. Called on the stored entries *before* duplicates are
    summed (a -1/+1 pair must not pass as a zero) and again after conversions that may
    overflow."""
    if not sp.issparse(A):
        data = np.asarray(A)
    elif A.format in ("csr", "csc", "coo", "bsr"):
        data = A.data
    else:  # dok, lil, dia: formats that hold no duplicates
        data = A.tocoo().data
    if data.size and not (np.all(np.isfinite(data)) and data.min() >= 0):
        raise ValueError("graph edge weights must be finite and non-negative")


def _networkx_weights(graph: Any) -> np.ndarray:
    """The weight of every edge (a multigraph's parallel edges one by one; networkx sums
    them when building the matrix)."""
    try:
        return np.fromiter((w for *_, w in graph.edges(data="weight", default=1)), dtype=np.float64,
                           count=graph.number_of_edges())
    except (TypeError, ValueError) as exc:
        raise TypeError("graph edge weights must be real numbers") from exc


def _from_edge_list(graph: Any, n_nodes: int | None, dtype: Any) -> sp.csr_array:
    if len(graph) not in (2, 3):
        raise ValueError(f"graph as an edge list must be (src, dst) or (src, dst, weight), got {len(graph)} items")
    src, dst = (np.asarray(a) for a in graph[:2])
    if src.ndim != 1 or src.shape != dst.shape:
        raise ValueError("graph: src and dst must be 1-D arrays of the same length")
    for a, name in ((src, "src"), (dst, "dst")):
        if a.size and a.dtype.kind not in "iu":
            raise TypeError(f"graph: {name} must hold integer node indices, got dtype {a.dtype}")
    weight = np.ones(src.shape, dtype=dtype) if len(graph) == 2 else np.asarray(graph[2], dtype=np.float64)
    if weight.shape != src.shape:
        raise ValueError("graph: weight must have one entry per edge")
    top = int(max(src.max(initial=-1), dst.max(initial=-1))) + 1
    n = top if n_nodes is None else check_positive_int(n_nodes, "n_nodes")
    if src.size and (min(src.min(), dst.min()) < 0 or top > n):
        raise ValueError(f"graph: edge indices must be in [0, n_nodes={n}); got values in [{min(src.min(), dst.min())}, {top - 1}]")
    if n == 0:
        raise ValueError("graph has no nodes")
    if not np.all(np.isfinite(weight)) or (weight.size and weight.min() < 0):
        raise ValueError("graph edge weights must be finite and non-negative")
    return sp.csr_array((weight.astype(dtype), (src, dst)), shape=(n, n))


def _adjacency(graph: Any, *, n_nodes: int | None, directed: bool | None, dtype: Any) -> tuple[sp.csr_array, list | None]:
    """A canonical CSR copy (or the input itself when already canonical) and the node
    labels for networkx input."""
    nodes = None
    if sp.issparse(graph):
        if graph.ndim != 2 or graph.shape[0] != graph.shape[1]:
            raise ValueError(f"graph must be a square adjacency matrix, got shape {graph.shape}")
        if graph.shape[0] == 0:
            raise ValueError("graph has no nodes")
        if graph.dtype.kind not in "biuf":
            raise TypeError(f"graph must hold real weights, got dtype {graph.dtype}")
        dt = np.dtype(dtype) if dtype is not None else (graph.dtype if graph.dtype in (np.float32, np.float64) else np.float64)
        A = graph
        if A.format != "csr" or not A.has_canonical_format:
            _check_weights(A)  # before duplicates are summed
            A = sp.csr_array(A, dtype=dt, copy=True)
            A.sum_duplicates()
        elif A.dtype != dt:
            # The same structure with converted weights: the index arrays are shared.
            with np.errstate(over="ignore"):  # an overflow to inf is rejected below
                A = sp.csr_array((A.data.astype(dt), A.indices, A.indptr), shape=A.shape)
            A.has_canonical_format = True
        # The core checks every stored weight (finite, non-negative) before it starts.
        if A.nnz and np.any(A.data == 0):
            A = sp.csr_array(A, copy=True)
            A.eliminate_zeros()
    elif _is_networkx(graph):
        import networkx as nx

        nodes = list(graph.nodes)
        if not nodes:
            raise ValueError("graph has no nodes")
        _check_weights(_networkx_weights(graph))
        A = nx.to_scipy_sparse_array(graph, nodelist=nodes, weight="weight", format="csr",
                                     dtype=np.dtype(dtype or np.float64))
        A.sum_duplicates()
        A.eliminate_zeros()
        _check_weights(A)
    elif isinstance(graph, (tuple, list)):
        A = _from_edge_list(graph, n_nodes, np.dtype(dtype or np.float64))
        A.sum_duplicates()
        A.eliminate_zeros()
    else:
        raise TypeError(
            "graph must be a scipy.sparse adjacency matrix, an edge list (src, dst[, weight]) "
            f"or a networkx graph, got {type(graph).__name__}"
        )
    if n_nodes is not None and A.shape[0] != n_nodes:
        raise ValueError(f"n_nodes={n_nodes} does not match the graph's {A.shape[0]} nodes")
    if directed is not None and not _bool(directed, "directed"):
        _check_weights(A)  # before the maximum hides a negative weight
        A = sp.csr_array(A.maximum(A.T))
        A.sum_duplicates()
        A.eliminate_zeros()
    return A, nodes


def _is_networkx(graph: Any) -> bool:
    return any((cls.__module__ or "").startswith("networkx") for cls in type(graph).__mro__)


def _weights(value: Any) -> tuple[float, ...]:
    try:
        w = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"iteration_weights must be a sequence of real numbers, got {value!r}") from exc
    if w.ndim != 1 or not np.all(np.isfinite(w)):
        raise ValueError(f"iteration_weights must be a 1-D sequence of finite numbers, got {value!r}")
    return tuple(float(x) for x in w)


def _real(value: Any, name: str) -> float:
    if not isinstance(value, numbers.Real) or isinstance(value, (bool, np.bool_)) or not np.isfinite(value):
        raise ValueError(f"{name} must be a finite real number, got {value!r}")
    return float(value)


def _check_dtype(dtype: Any) -> np.dtype | None:
    """The ``dtype`` keyword: None, float32 or float64."""
    if dtype is None:
        return None
    return np.dtype(check_choice(np.dtype(dtype).name, "dtype", ("float32", "float64")))


def _options(
    A: Any,
    features: Any,
    check_features: Callable[[Any], Any],
    *,
    variant: str,
    n_components: int = 128,
    iteration_weights: Any = None,
    normalization_strength: float | None = None,
    self_influence: float = 0.0,
    feature_ratio: float = 0.0,
    normalize: bool | None = None,
    transition: bool | None = None,
    standardize: bool | None = None,
    density: float | str | None = None,
    random_state: Any = None,
) -> tuple[Any, dict, bool]:
    """Resolve the public keywords against the variant's defaults, for both paths.

    Parameters
    ----------
    A : CSR matrix of shape (n, n)
        The canonical adjacency (scipy.sparse on the host, cupyx.scipy.sparse on the
        device); only its shape is read.
    features : array-like of shape (n, f) or None
        The ``features`` keyword as given.
    check_features : callable
        Validates `features` where they live and returns them in ``A.dtype``.
    variant, n_components, ... : see :func:`fastrp` (same defaults)
        ``variant`` must already be checked.

    Returns
    -------
    F : array of shape (n, f) or None
        The validated features.
    opts : dict
        The options of ``_core.fastrp_embed`` (and of :func:`rankcore._gpu.fastrp.embed`):
        ``variant``, ``n_components``, ``iteration_weights`` (list of float),
        ``normalization_strength``, ``self_influence``, ``property_dim`` (the feature
        columns ``p``), ``density``, ``transition``, ``normalize`` and ``seed`` (int).
    standardize : bool
        Whether the columns of the result are standardised (:func:`_standardize`).
    """
    d = _DEFAULTS[variant]
    n = A.shape[0]
    k = check_positive_int(n_components, "n_components", maximum=2**31 - 1)
    ratio = check_nonneg_float(feature_ratio, "feature_ratio", maximum=1.0)
    density = d["density"] if density is None else density
    if isinstance(density, str):
        check_choice(density, "density", ("auto",))
        dens = float(1 / np.sqrt(n))
    else:
        dens = check_nonneg_float(density, "density", maximum=1.0, strict=True)
    F, pdim = None, 0
    if features is None and ratio > 0:
        raise ValueError(
            f"feature_ratio={ratio} > 0 requires features (the node features to project; as "
            "GDS's propertyRatio requires featureProperties); pass features or feature_ratio=0"
        )
    if features is not None:
        F = check_features(features)
        if F.shape[0] != n:
            raise ValueError(f"features must have one row per node ({n}), got shape {F.shape}")
        pdim = int(k * ratio)
        if pdim == 0:
            raise ValueError(f"features are used only with feature_ratio > 0 and int(n_components * feature_ratio) >= 1; got feature_ratio={ratio}")
    opts = {
        "variant": variant,
        "n_components": k,
        "iteration_weights": list(_weights(d["iteration_weights"] if iteration_weights is None else iteration_weights)),
        "normalization_strength": _real(d["normalization_strength"] if normalization_strength is None else normalization_strength, "normalization_strength"),
        "self_influence": _real(self_influence, "self_influence"),
        "property_dim": pdim,
        "density": dens,
        "transition": _bool(d["transition"] if transition is None else transition, "transition"),
        "normalize": _bool(d["normalize"] if normalize is None else normalize, "normalize"),
        "seed": check_random_state_seed(random_state),
    }
    return F, opts, _bool(d["standardize"] if standardize is None else standardize, "standardize")


def fastrp(
    graph: Any,
    n_components: int = 128,
    *,
    variant: str = "paper",
    iteration_weights: Any = None,
    normalization_strength: float | None = None,
    self_influence: float = 0.0,
    features: Any = None,
    feature_ratio: float = 0.0,
    normalize: bool | None = None,
    transition: bool | None = None,
    standardize: bool | None = None,
    density: float | str | None = None,
    directed: bool | None = None,
    n_nodes: int | None = None,
    dtype: Any = None,
    random_state: Any = None,
) -> np.ndarray:
    """FastRP embeddings of the nodes of a graph.

    Parameters
    ----------
    graph : scipy.sparse or cupyx.scipy.sparse matrix (n, n), edge list ``(src, dst[, weight])`` or networkx graph
        ``A[v, u]`` is the weight of the edge ``v -> u``. Rows follow the node order
        (``list(G.nodes)`` for networkx). A ``cupyx.scipy.sparse`` matrix (any format)
        runs on its GPU (:mod:`rankcore._gpu.fastrp`: cuSPARSE products, the same random
        matrices, results equal to the CPU path's up to rounding) and gives a cupy array;
        edge lists and networkx graphs run on the CPU.
    n_components : int, default=128
        Embedding dimension ``k`` (GDS: embeddingDimension).
    variant : {"paper", "gds"}, default="paper"
        See the module documentation: the reference code's algorithm or Neo4j GDS's.
    iteration_weights : sequence of float, optional
        ``alpha_1 .. alpha_q``, one per power of the adjacency. Default: per variant
        (paper ``(1.0, 1.0, 7.81, 45.28)``, gds ``(0.0, 1.0, 1.0)``).
    normalization_strength : float, optional
        ``beta`` in ``L = diag(deg^beta)``; negative values damp high-degree nodes. Default:
        paper -0.628, gds 0.0.
    self_influence : float, default=0.0
        ``w0``, weight of the (normalised, for gds) initial vectors.
    features : array-like of shape (n, f), optional
        Node features, projected into ``int(n_components * feature_ratio)`` columns. On
        the same side as ``graph`` (cupy for a device graph; a ``TypeError`` otherwise).
    feature_ratio : float in [0, 1], default=0.0
        Share of the columns given to the features (GDS: propertyRatio), for either
        variant; must be positive when ``features`` is given and zero when it is not (a
        ValueError otherwise, as GDS requires featureProperties for a positive
        propertyRatio).
    normalize : bool, optional
        Paper variant: L2-normalise each power's rows before weighting (default False).
        The gds variant always normalises.
    transition : bool, optional
        Paper variant: use ``D^-1 A`` (default True). Ignored by gds.
    standardize : bool, optional
        Standardise the columns of the result (paper default True, gds False).
    density : float in (0, 1] or "auto", optional
        Density of ``R``: paper default "auto" (``1/sqrt(n)``), gds 1/3.
    directed : bool, optional
        ``False`` symmetrises the graph; None or True uses it as given.
    n_nodes : int, optional
        Number of nodes for an edge list (default: largest index + 1).
    dtype : {float32, float64}, optional
        Working and output dtype; default the adjacency's float dtype, else float64.
    random_state : None, int, Generator or RandomState
        Seed of ``R`` (and of the feature projection).

    Returns
    -------
    ndarray of shape (n, n_components)
        A cupy array for a device graph; dtype float32 or float64 (see ``dtype``).

    References
    ----------
    H. Chen, S. F. Sultan, Y. Tian, M. Chen, S. Skiena, "Fast and Accurate Network
    Embeddings via Very Sparse Random Projection", CIKM 2019.
    Neo4j Graph Data Science, "Fast Random Projection" (gds.fastRP).

    Examples
    --------
    >>> import numpy as np, scipy.sparse as sp
    >>> A = sp.random(100, 100, density=0.05, random_state=0, format="csr")
    >>> fastrp(A + A.T, 16, random_state=0).shape
    (100, 16)
    """
    params = dict(
        variant=variant, n_components=n_components, iteration_weights=iteration_weights,
        normalization_strength=normalization_strength, self_influence=self_influence,
        feature_ratio=feature_ratio, normalize=normalize, transition=transition,
        standardize=standardize, density=density, random_state=random_state,
    )
    if namespace(graph) == "cupy":
        from rankcore._gpu.fastrp import fastrp as device_fastrp

        return device_fastrp(graph, features=features, directed=directed, n_nodes=n_nodes, dtype=dtype, **params)
    if namespace(graph) == "dask":  # one lazy task graph over the adjacency's blocks
        from rankcore._dask.fastrp import fastrp as dask_fastrp

        return dask_fastrp(graph, features=features, directed=directed, n_nodes=n_nodes, dtype=dtype, **params)
    if isinstance(graph, (tuple, list)) and any(namespace(a) == "cupy" for a in graph[:3]):
        raise NotImplementedError(
            "fastrp: edge lists of cupy arrays are not supported; pass the graph as a "
            "cupyx.scipy.sparse.coo_matrix((weight, (src, dst)), shape=(n, n)) to stay on the device"
        )
    check_same_device("fastrp", "numpy", ("features", features))
    check_choice(variant, "variant", ("paper", "gds"))
    dtype = _check_dtype(dtype)
    A, _ = _adjacency(graph, n_nodes=n_nodes, directed=directed, dtype=dtype)
    F, opts, std = _options(
        A, features, lambda f: check_array(f, name="features", dtype_policy=A.dtype.name), **params
    )
    if F is not None and not (F.flags.aligned and F.dtype.isnative):
        F = np.array(F, dtype=F.dtype.newbyteorder("="), order="K")
    index = np.int64 if max(A.indptr.dtype.itemsize, A.indices.dtype.itemsize) > 4 else np.int32
    U = _core.fastrp_embed(
        A.shape[0],
        np.ascontiguousarray(A.indptr, dtype=index),
        np.ascontiguousarray(A.indices, dtype=index),
        np.ascontiguousarray(A.data),
        F,
        opts,
    )
    if std:
        U = _standardize(U)
    return U


class FastRP(TransformerMixin, BaseEstimator):
    """FastRP node embeddings as a scikit-learn transformer.

    ``fit(graph)`` computes ``embedding_`` (one row per node); ``transform(graph)``
    embeds a graph with the same parameters and seed; ``fit_transform(graph)`` returns
    ``embedding_``. Parameters: see :func:`fastrp` (every keyword passes through).

    Attributes
    ----------
    embedding_ : ndarray of shape (n_nodes, n_components)
        A cupy array (left on the device) when fitted on a ``cupyx.scipy.sparse`` graph.
    nodes_ : list or None
        Node labels in row order, for networkx input.
    n_components_ : int
    """

    def __init__(self, n_components: int = 128, *, variant: str = "paper", iteration_weights: Any = None,
                 normalization_strength: float | None = None, self_influence: float = 0.0,
                 features: Any = None, feature_ratio: float = 0.0, normalize: bool | None = None,
                 transition: bool | None = None, standardize: bool | None = None,
                 density: float | str | None = None, directed: bool | None = None,
                 dtype: Any = None, random_state: Any = None) -> None:
        self.n_components = n_components
        self.variant = variant
        self.iteration_weights = iteration_weights
        self.normalization_strength = normalization_strength
        self.self_influence = self_influence
        self.features = features
        self.feature_ratio = feature_ratio
        self.normalize = normalize
        self.transition = transition
        self.standardize = standardize
        self.density = density
        self.directed = directed
        self.dtype = dtype
        self.random_state = random_state

    def _embed(self, graph: Any, seed: int) -> np.ndarray:
        params = self.get_params()
        params["random_state"] = seed
        return fastrp(graph, **params)

    def fit(self, graph: Any, y: Any = None) -> "FastRP":
        """Embed the nodes of ``graph``; returns ``self``."""
        self._seed = check_random_state_seed(self.random_state)
        self.embedding_ = self._embed(graph, self._seed)
        if namespace(self.embedding_) == "dask":  # fitted attributes in memory
            self.embedding_ = np.asarray(self.embedding_.compute())
        self.nodes_ = list(graph.nodes) if _is_networkx(graph) else None
        self.n_components_ = self.embedding_.shape[1]
        return self

    def fit_transform(self, graph: Any, y: Any = None) -> np.ndarray:
        """``fit(graph).embedding_``."""
        return self.fit(graph).embedding_

    def transform(self, graph: Any) -> np.ndarray:
        """Embed ``graph`` with the fitted seed and parameters."""
        check_is_fitted(self)
        return self._embed(graph, self._seed)
