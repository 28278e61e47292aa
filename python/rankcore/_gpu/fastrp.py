"""FastRP on the device, written once for cupy and NumPy/SciPy (the CI stand-in).

The same algorithm as ``rust/rankcore/src/projection/fastrp.rs`` (see its module docs and
:mod:`rankcore.fastrp`), with the same random matrices, so device and host answers agree
to rounding:

- ``E0 = [L R | F P]``: ``R`` (``n × k_b``, ``k_b = k - p``) decoded from the Philox words
  ``(v, c)`` of stream ``0x5250_0001`` (node ``v`` is the projection's "feature", ``c`` the
  component); ``L R`` entries ``±s · deg_v^β`` (``s = sqrt(1/δ)/sqrt(k_b)``; ``deg_v^β``
  replaced by 1 where ``deg_v = 0``) computed in float64 and rounded once. ``P``
  (``f × p``, density 1/3, stream ``0x5250_0003``) decoded from the words ``(j, c)`` of
  feature ``j``; ``F P`` is the product with the signs, scaled by ``sqrt(3)/sqrt(p)`` after
  the sum, as the Rust kernel does.
- Each iteration is one sparse × dense product ``A @ N`` (cuSPARSE SpMM on the device,
  SciPy on the host), then the row scaling of the variant (GDS: L2 normalisation; paper:
  ``D⁻¹`` when ``transition``) and the weighted sum into the embedding (paper: each term
  L2-normalised when ``normalize``). Row norms are summed in float64 and rounded once, as
  in Rust; element-wise products follow the Rust expressions term for term.
- The optional column standardisation is :func:`rankcore.fastrp._standardize`, which is
  written against the array namespace too.

Only the order of the sums differs from the Rust path (SpMM, GEMM and pairwise row sums
against sequential loops), so results agree to a few ulps times the graph's degree.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rankcore._backend import namespace
from rankcore._gpu._arrays import array_module, check_array, check_same_device, is_sparse
from rankcore._gpu._ops import ops_for, threshold
from rankcore._validation import check_choice
from rankcore.fastrp import _bool, _check_dtype, _options, _standardize

__all__ = ["adjacency", "embed", "fastrp"]

#: Philox stream of the node vectors ``R`` (``projection::STREAM_SPARSE``).
STREAM_SPARSE = 0x5250_0001
#: Philox stream of the feature projection ``P`` (``projection::STREAM_FASTRP_FEATURES``).
STREAM_FEATURES = 0x5250_0003
#: Density of ``P`` (GDS's, as in the Rust core).
FEATURE_DENSITY = 1.0 / 3.0
#: Entries per row block of the temporaries (Philox words, float64 squares): 128 MB of
#: float64. Tests shrink it to run several blocks on small graphs.
_BLOCK = 1 << 24


def fastrp(
    graph: Any,
    n_components: int = 128,
    *,
    variant: str = "paper",
    features: Any = None,
    directed: bool | None = None,
    n_nodes: int | None = None,
    dtype: Any = None,
    **params: Any,
) -> Any:
    """:func:`rankcore.fastrp` for a graph in device memory (NumPy/SciPy stand in for it).

    Parameters
    ----------
    graph : cupyx.scipy.sparse matrix of shape (n, n)
        The adjacency, any format (converted to canonical CSR; duplicates summed, stored
        zeros dropped; the input is never modified). A ``scipy.sparse`` matrix runs the
        same code on the host, with NumPy in the place of cupy.
    n_components, variant, directed, n_nodes, dtype
        As in :func:`rankcore.fastrp`.
    features : array of shape (n, f), optional
        Node features in the same memory as `graph` (a ``TypeError`` otherwise).
    **params
        The remaining keywords of :func:`rankcore.fastrp` (``iteration_weights``,
        ``normalization_strength``, ``self_influence``, ``feature_ratio``, ``normalize``,
        ``transition``, ``standardize``, ``density``, ``random_state``).

    Returns
    -------
    array of shape (n, n_components)
        In `graph`'s namespace (cupy for a device graph) and working dtype.
    """
    where = "cupy" if namespace(graph) == "cupy" else "numpy"
    check_same_device("fastrp", where, ("features", features))
    check_choice(variant, "variant", ("paper", "gds"))
    A = adjacency(graph, n_nodes=n_nodes, directed=directed, dtype=_check_dtype(dtype))
    F, opts, std = _options(A, features, lambda f: check_features(f, A.dtype), variant=variant,
                            n_components=n_components, **params)
    return embed(A, F, opts, std)


def _check_weights(A: Any) -> None:
    """Finite, non-negative stored weights (the host path's check, on the device)."""
    xp = array_module(A)
    data = A.data if A.format in ("csr", "csc", "coo", "bsr") else A.tocoo().data
    if data.size and not (bool(xp.isfinite(data).all()) and float(data.min()) >= 0):
        raise ValueError("graph edge weights must be finite and non-negative")


def adjacency(graph: Any, *, n_nodes: int | None, directed: bool | None, dtype: Any) -> Any:
    """The canonical CSR adjacency of a sparse `graph`, as the host path builds it.

    Mirrors the sparse branch of ``rankcore.fastrp._adjacency`` in `graph`'s namespace:
    weights checked before duplicates are summed (a -1/+1 pair must not pass as a zero) and
    again after the dtype conversion; duplicates summed; stored zeros dropped;
    ``directed=False`` gives ``max(A, Aᵀ)``. `graph` itself is returned when it is already
    canonical CSR of the working dtype; it is never modified.

    Parameters
    ----------
    graph : cupyx.scipy.sparse or scipy.sparse matrix of shape (n, n)
    n_nodes : int or None
        Must equal ``n`` when given.
    directed : bool or None
        ``False`` symmetrises.
    dtype : numpy.dtype or None
        Working dtype (float32 or float64); default the graph's float dtype, else float64.

    Returns
    -------
    CSR matrix of shape (n, n), in `graph`'s namespace
    """
    if not is_sparse(graph):
        raise TypeError(
            "graph on the device must be a cupyx.scipy.sparse adjacency matrix (edge lists "
            f"and networkx graphs are host input), got {type(graph).__name__}"
        )
    if graph.ndim != 2 or graph.shape[0] != graph.shape[1]:
        raise ValueError(f"graph must be a square adjacency matrix, got shape {graph.shape}")
    if graph.shape[0] == 0:
        raise ValueError("graph has no nodes")
    if np.dtype(graph.dtype).kind not in "biuf":
        raise TypeError(f"graph must hold real weights, got dtype {graph.dtype}")
    if dtype is not None:
        dt = np.dtype(dtype)
    else:
        dt = np.dtype(graph.dtype) if graph.dtype in (np.float32, np.float64) else np.dtype(np.float64)
    _check_weights(graph)
    A = graph
    if A.format != "csr" or A.dtype != dt or not A.has_canonical_format:
        A = A.tocsr(copy=True).astype(dt, copy=False)
        A.sum_duplicates()
    _check_weights(A)  # float32 sums of duplicates may overflow
    xp = array_module(A)
    if A.nnz and bool(xp.any(A.data == 0)):
        A = A.copy()
        A.eliminate_zeros()
    if n_nodes is not None and A.shape[0] != n_nodes:
        raise ValueError(f"n_nodes={n_nodes} does not match the graph's {A.shape[0]} nodes")
    if directed is not None and not _bool(directed, "directed"):
        A = A.maximum(A.T).tocsr()
        A.sum_duplicates()
        A.eliminate_zeros()
    return A


def check_features(features: Any, dtype: Any) -> Any:
    """Node features validated where they live (:func:`rankcore._gpu._arrays.check_array`)
    and converted to the working `dtype`; NaN and infinity (also from the conversion)
    rejected, as the host path does."""
    F = check_array(features, name="features", ensure_finite=False)
    return check_array(F.astype(dtype, copy=False), name="features")


def _block_rows(width: int) -> int:
    """Rows per block of at most ``_BLOCK`` entries of `width` columns."""
    return max(1, _BLOCK // max(width, 1))


def _inv_norms(X: Any) -> Any:
    """``1/‖row‖₂`` of each row of `X` in its dtype, with the squares summed in float64 and
    ``1/sqrt`` taken in float64 (Rust's ``inv_norm``); 1 for a zero row."""
    xp = array_module(X)
    n, k = X.shape
    rows = _block_rows(k)
    ss = xp.empty(n, dtype=xp.float64)
    for r in range(0, n, rows):
        ss[r:r + rows] = xp.square(X[r:r + rows], dtype=xp.float64).sum(axis=1)
    return (1.0 / xp.sqrt(xp.where(ss > 0, ss, 1.0))).astype(X.dtype)


def _decode(words: Any, t: int, magnitude: Any) -> Any:
    """Sparse-family entries of the Philox `words` in float64: ``±magnitude`` where
    ``(w >> 1) < t`` (negative where bit 0 is set), else 0 (``projection::decode_entry``)."""
    xp = array_module(words)
    signed = xp.where((words & 1).astype(bool), -magnitude, magnitude)
    return xp.where((words >> 1) < t, signed, 0.0)


def _degrees(A: Any, gds: bool) -> Any:
    """float64 degrees: stored out-edges (GDS) or weighted out-degree summed in float64."""
    xp = array_module(A)
    if gds:
        return xp.diff(A.indptr).astype(xp.float64)
    return A.astype(xp.float64, copy=False) @ xp.ones(A.shape[0], dtype=xp.float64)


def initial_vectors(deg: Any, F: Any, opts: dict, dtype: Any, row0: int = 0) -> Any:
    """``E0 = [L R | F P]`` (``n × k``, C order) in `dtype`.

    Parameters
    ----------
    deg : array of shape (n,), float64
        Degrees (``L_v = deg_v^β``, or 1 where ``deg_v = 0``).
    F : array of shape (n, f) or None
        Features in `dtype`.
    opts : dict
        The options built by ``rankcore.fastrp._options``.
    dtype : numpy.dtype
    row0 : int, default=0
        The graph's row of the first of these rows (a row block of a larger graph: R's
        entries depend on the global row).
    """
    xp = array_module(deg)
    ops = ops_for(xp)
    dtype = np.dtype(dtype)
    n, k, p, seed = deg.shape[0], opts["n_components"], opts["property_dim"], opts["seed"]
    kb = k - p
    E = xp.zeros((n, k), dtype=dtype)
    if kb > 0:
        density = opts["density"]
        s = math.sqrt(1.0 / density) / math.sqrt(kb)
        pos = deg > 0
        scale = xp.where(pos, s * xp.power(xp.where(pos, deg, 1.0), opts["normalization_strength"]), s)
        rows = _block_rows(kb)
        for r in range(0, n, rows):
            m = min(rows, n - r)
            words = ops.words(m, kb, row0 + r, 0, seed, STREAM_SPARSE)
            E[r:r + m, :kb] = _decode(words, threshold(density), scale[r:r + m, None]).astype(dtype)
    if F is not None:
        f = F.shape[1]
        signs = _decode(ops.words(f, p, 0, 0, seed, STREAM_FEATURES), threshold(FEATURE_DENSITY), 1.0)
        s = math.sqrt(1.0 / FEATURE_DENSITY) / math.sqrt(p)
        E[:, kb:] = (F @ signs.astype(dtype)) * dtype.type(s)
    return E


def embed(A: Any, F: Any, opts: dict, standardize: bool) -> Any:
    """FastRP embeddings: ``_core.fastrp_embed`` (and ``_standardize``) in `A`'s namespace.

    Parameters
    ----------
    A : CSR matrix of shape (n, n)
        Canonical adjacency (:func:`adjacency`), float32 or float64: the working dtype.
    F : array of shape (n, f) or None
        Node features in ``A.dtype`` (:func:`check_features`); required iff
        ``opts["property_dim"] > 0``.
    opts : dict
        The options built by ``rankcore.fastrp._options`` (the dict the core receives).
    standardize : bool
        Standardise the columns of the result.

    Returns
    -------
    array of shape (n, opts["n_components"]), dtype ``A.dtype``, in `A`'s namespace
    """
    xp = array_module(A)
    dtype = np.dtype(A.dtype)
    T = dtype.type
    gds = opts["variant"] == "gds"
    deg = _degrees(A, gds)
    prev = initial_vectors(deg, F, opts, dtype)
    U = xp.zeros(prev.shape, dtype=dtype)
    if opts["self_influence"] != 0:
        E = prev * _inv_norms(prev)[:, None] if gds or opts["normalize"] else prev
        U += T(opts["self_influence"]) * E
    inv_deg = (xp.where(deg > 0, 1.0 / xp.where(deg > 0, deg, 1.0), 0.0)).astype(dtype)
    for alpha in opts["iteration_weights"]:
        cur = A @ prev  # a fresh array: scaled in place below
        if gds:
            cur *= _inv_norms(cur)[:, None]
        elif opts["transition"]:
            cur *= inv_deg[:, None]
        if alpha != 0:
            g = cur * _inv_norms(cur)[:, None] if not gds and opts["normalize"] else cur
            U += T(alpha) * g
        prev = cur
    if standardize:
        U = _standardize(U)
    return U
