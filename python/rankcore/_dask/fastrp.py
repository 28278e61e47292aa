"""FastRP of a graph whose adjacency is a dask array of scipy.sparse blocks, or whose edges
are a dask DataFrame (columns ``src``, ``dst``, optionally ``weight``; turned into CSR row
blocks by :func:`adjacency_from_edges`, nothing gathered on the client).

The orchestration of :func:`rankcore._gpu.fastrp.embed` (written against an array
namespace; NumPy/SciPy run it on the host) on dask's graph, lazily and in one task graph:

- the degrees are blockwise row sums (float64), summed over column blocks;
- ``E0 = [L R | F P]``: each row block regenerates its rows of ``R`` from the seed (Philox
  words ``(v, c)`` of stream ``0x5250_0001`` at the block's row offset, decoded by
  :func:`rankcore._gpu.fastrp._decode`), so ``R`` is never built nor broadcast;
- every propagation step ``A N`` is a blockwise sparse × dense product (``A_ik N_k``, one
  task per block of ``A``) tree-summed over the column blocks; the row scalings (L2 norms
  summed in float64, ``D⁻¹``) and the weighted sum are blockwise on row blocks, with the
  device path's helpers;
- the optional column standardisation is a dask reduction (means and variances in float64).

The result is a dask array chunked like the rows of the adjacency, equal to the in-memory
embedding to rounding (sums over column blocks; SciPy's products against the Rust kernels).
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

__all__ = ["fastrp"]


def _check_block(block: Any, dtype: Any, block_info: Any = None) -> Any:
    """A canonical CSR block of the working dtype, weights checked (task side)."""
    from rankcore.fastrp import _check_weights

    if not sp.issparse(block):
        raise TypeError(f"graph: every block of a dask adjacency must be scipy.sparse, got {type(block).__name__}")
    _check_weights(block)
    A = sp.csr_matrix(block, dtype=dtype, copy=True)
    A.sum_duplicates()
    _check_weights(A)
    A.eliminate_zeros()
    return A


def _symmetrize(a: Any, b: Any) -> Any:
    out = sp.csr_matrix(a.maximum(b))
    out.sum_duplicates()
    out.eliminate_zeros()
    return out


def _row_degrees(block: Any, gds: bool) -> np.ndarray:
    """Stored out-edges (GDS) or weighted out-degree in float64 of a block's rows."""
    if gds:
        return np.diff(block.indptr).astype(np.float64)[:, None]
    return (block.astype(np.float64) @ np.ones(block.shape[1], dtype=np.float64))[:, None]


def _initial_block(deg: np.ndarray, F: Any, opts: dict, dtype: Any, block_info: Any = None) -> np.ndarray:
    """Rows ``[r0, r1)`` of ``E0 = [L R | F P]`` (task side): the in-memory construction at
    the block's row offset."""
    from rankcore._gpu.fastrp import initial_vectors

    r0 = block_info[0]["array-location"][0][0]
    return initial_vectors(deg[:, 0], F, opts, dtype, row0=r0)


def _spmm(a: Any, b: np.ndarray) -> np.ndarray:
    """One block's partial product ``A_ik N_k`` as a ``(rows, 1, k)`` block (task side)."""
    return np.asarray(a @ b)[:, None, :]


def _inv_norm_scale(X: np.ndarray) -> np.ndarray:
    from rankcore._gpu.fastrp import _inv_norms

    return X * _inv_norms(X)[:, None]


def _scale_rows(X: np.ndarray, d: np.ndarray) -> np.ndarray:
    return X * d


def _product(A: Any, N: Any, dtype: Any) -> Any:
    """``A @ N``: blockwise sparse × dense, tree-summed over the column blocks of ``A``."""
    import dask.array as da

    N = N.rechunk({0: A.chunks[1], 1: -1})
    partial = da.blockwise(
        _spmm, "ikj", A, "ik", N, "kj", adjust_chunks={"k": 1}, dtype=dtype,
        meta=np.empty((0, 0, 0), dtype=dtype), concatenate=False,
    )
    return partial.sum(axis=1, dtype=dtype)


# --- an edge list as a dask DataFrame ---------------------------------------------------------


def is_dataframe(graph: Any) -> bool:
    """Whether `graph` is a dask DataFrame (by its type's module; dask.dataframe not imported)."""
    mod = type(graph).__module__ or ""
    return hasattr(graph, "columns") and hasattr(graph, "to_delayed") and mod.startswith(("dask.dataframe", "dask_expr"))


def _edge_range(part: Any) -> np.ndarray:
    """``[min index, max index, edges]`` of one partition (task side)."""
    src, dst = part["src"].to_numpy(), part["dst"].to_numpy()
    if not src.size:
        return np.array([[np.iinfo(np.int64).max, -1, 0]], dtype=np.int64)
    return np.array([[min(src.min(), dst.min()), max(src.max(), dst.max()), src.size]], dtype=np.int64)


def _split_edges(part: Any, bounds: np.ndarray, weighted: bool) -> list:
    """The edges of one partition grouped by the row block of their source, in their order
    (task side): ``[(src, dst, weight or None), ...]`` per row block, weights checked."""
    from rankcore.fastrp import _check_weights

    src, dst = part["src"].to_numpy(dtype=np.int64), part["dst"].to_numpy(dtype=np.int64)
    w = part["weight"].to_numpy(dtype=np.float64) if weighted else None
    if w is not None:
        _check_weights(w)  # before duplicates are summed, as in memory
    block = np.searchsorted(bounds, src, side="right") - 1
    order = np.argsort(block, kind="stable")
    cuts = np.searchsorted(block[order], np.arange(len(bounds)))
    return [(src[order[a:b]], dst[order[a:b]], None if w is None else w[order[a:b]])
            for a, b in zip(cuts[:-1], cuts[1:])]


def _pick(parts: list, b: int) -> tuple:
    return parts[b]


def _csr_block(r0: int, r1: int, n: int, dtype: Any, *pieces: tuple) -> Any:
    """Rows ``[r0, r1)`` of the adjacency from the pieces of every partition, in partition
    order (task side): duplicate edges are summed in the order they come, as in memory."""
    src = np.concatenate([p[0] for p in pieces]) - r0
    dst = np.concatenate([p[1] for p in pieces])
    if pieces[0][2] is None:
        w = np.ones(src.shape, dtype=dtype)
    else:
        w = np.concatenate([p[2] for p in pieces]).astype(dtype)
    return sp.csr_matrix((w, (src, dst)), shape=(r1 - r0, n))


def adjacency_from_edges(df: Any, *, n_nodes: Any, dtype: Any, rows_per_block: int | None = None) -> Any:
    """The adjacency of the edge list `df` (a dask DataFrame with integer columns ``src``,
    ``dst`` and optionally a real ``weight``) as a dask array of CSR row blocks, ``A[src,
    dst] = Σ weight`` as :func:`rankcore.fastrp`'s in-memory edge lists.

    The columns, dtypes and node indices are checked before the adjacency is built (one pass
    over the index columns for their range, which also gives ``n_nodes`` when it is None);
    the weights by the tasks that read them. Each partition's edges are split by the row
    block of their source, and each row block is assembled from its pieces of every
    partition, in partition order.
    """
    import dask
    import dask.array as da
    from dask import delayed

    from rankcore._validation import check_positive_int

    cols = list(df.columns)
    missing = [c for c in ("src", "dst") if c not in cols]
    if missing:
        raise ValueError(f"graph as a dask DataFrame edge list needs columns src and dst (and optionally weight); "
                         f"missing {missing}, got columns {cols}")
    for c in ("src", "dst"):
        if np.dtype(df[c].dtype).kind not in "iu":
            raise TypeError(f"graph: {c} must hold integer node indices, got dtype {df[c].dtype}")
    weighted = "weight" in cols
    if weighted and np.dtype(df["weight"].dtype).kind not in "biuf":
        raise TypeError(f"graph edge weights must be real numbers, got dtype {df['weight'].dtype}")
    parts = df[["src", "dst"] + (["weight"] if weighted else [])].to_delayed()
    ranges = np.concatenate(dask.compute(*[delayed(_edge_range, pure=True)(p) for p in parts]))
    lo, top = int(ranges[:, 0].min()), int(ranges[:, 1].max()) + 1
    has_edges = int(ranges[:, 2].sum()) > 0
    n = top if n_nodes is None else check_positive_int(n_nodes, "n_nodes")
    if has_edges and (lo < 0 or top > n):
        raise ValueError(f"graph: edge indices must be in [0, n_nodes={n}); got values in [{lo}, {top - 1}]")
    if n == 0:
        raise ValueError("graph has no nodes")
    rows = rows_per_block or max(1, -(-n // max(1, len(parts))))
    bounds = np.arange(0, n + rows, rows)[: -(-n // rows) + 1]
    bounds[-1] = n
    split = [delayed(_split_edges, pure=True)(p, bounds, weighted) for p in parts]
    blocks = []
    for b in range(len(bounds) - 1):
        r0, r1 = int(bounds[b]), int(bounds[b + 1])
        pieces = [delayed(_pick, pure=True)(s, b) for s in split]
        blk = delayed(_csr_block, pure=True)(r0, r1, n, dtype, *pieces)
        blocks.append(da.from_delayed(blk, shape=(r1 - r0, n), dtype=dtype,
                                      meta=sp.csr_matrix((0, 0), dtype=dtype)))
    return da.concatenate(blocks, axis=0)


def _validate(graph: Any, *, n_nodes: Any, directed: Any, dtype: Any) -> Any:
    """The dask adjacency with every block canonical CSR of the working dtype (lazily);
    shape, dtype and block type checked before any task runs."""
    import dask.array as da

    from rankcore._dask._arrays import is_sparse_blocks
    from rankcore.fastrp import _bool

    if is_dataframe(graph):
        graph = adjacency_from_edges(graph, n_nodes=n_nodes, dtype=np.dtype(dtype or np.float64))
    if not isinstance(graph, da.Array):
        raise TypeError(
            f"graph on dask must be a dask.array.Array of scipy.sparse row blocks, got {type(graph).__name__}"
        )
    if graph.ndim != 2 or graph.shape[0] != graph.shape[1]:
        raise ValueError(f"graph must be a square adjacency matrix, got shape {graph.shape}")
    if any(isinstance(s, float) and math.isnan(s) for s in graph.shape):
        raise ValueError(f"graph has unknown chunk sizes (shape {graph.shape}); call graph.compute_chunk_sizes()")
    if graph.shape[0] == 0:
        raise ValueError("graph has no nodes")
    if not is_sparse_blocks(graph):
        raise TypeError(
            "graph must be a scipy.sparse adjacency matrix: a dask graph needs scipy.sparse "
            "blocks (for example X.map_blocks(scipy.sparse.csr_matrix))"
        )
    if np.dtype(graph.dtype).kind not in "biuf":
        raise TypeError(f"graph must hold real weights, got dtype {graph.dtype}")
    dt = np.dtype(dtype) if dtype is not None else (
        np.dtype(graph.dtype) if graph.dtype in (np.float32, np.float64) else np.dtype(np.float64))
    if n_nodes is not None and graph.shape[0] != n_nodes:
        raise ValueError(f"n_nodes={n_nodes} does not match the graph's {graph.shape[0]} nodes")
    meta = sp.csr_matrix((0, 0), dtype=dt)
    A = graph.map_blocks(_check_block, dt, dtype=dt, meta=meta, token="rankcore-fastrp-adjacency")
    if directed is not None and not _bool(directed, "directed"):
        At = A.T.rechunk(A.chunks)
        A = da.map_blocks(_symmetrize, A, At, dtype=dt, meta=meta, token="rankcore-fastrp-sym")
    return A


def fastrp(graph: Any, n_components: int = 128, *, variant: str = "paper", features: Any = None,
           directed: bool | None = None, n_nodes: int | None = None, dtype: Any = None,
           **params: Any) -> Any:
    """:func:`rankcore.fastrp` for a dask adjacency (see the module); a lazy dask array."""
    import dask.array as da

    from rankcore._validation import check_array, check_choice
    from rankcore.fastrp import _check_dtype, _options

    check_choice(variant, "variant", ("paper", "gds"))
    A = _validate(graph, n_nodes=n_nodes, directed=directed, dtype=_check_dtype(dtype))
    dtype = np.dtype(A.dtype)

    def check_features(f: Any) -> Any:
        from rankcore._backend import namespace

        if namespace(f) == "dask":
            from rankcore._dask._arrays import check_array as check_dask_array

            return check_dask_array(f, name="features").astype(dtype)
        return check_array(f, name="features", dtype_policy=dtype.name)

    F, opts, standardize = _options(A, features, check_features, variant=variant,
                                    n_components=n_components, **params)
    T = dtype.type
    gds = opts["variant"] == "gds"
    n, k = int(A.shape[0]), opts["n_components"]
    rows = A.chunks[0]
    deg = A.map_blocks(_row_degrees, gds, chunks=(rows, (1,) * A.numblocks[1]), dtype=np.float64,
                       meta=np.empty((0, 0), dtype=np.float64)).sum(axis=1, keepdims=True)
    if F is not None:
        F = (F.rechunk({0: rows, 1: -1}) if hasattr(F, "chunks")
             else da.from_array(np.ascontiguousarray(F), chunks=(rows, -1)))
        prev = da.map_blocks(_initial_block, deg, F, opts, dtype, chunks=(rows, (k,)), dtype=dtype,
                             meta=np.empty((0, 0), dtype=dtype), token="rankcore-fastrp-e0")
    else:
        prev = da.map_blocks(_initial_block, deg, None, opts, dtype, chunks=(rows, (k,)), dtype=dtype,
                             meta=np.empty((0, 0), dtype=dtype), token="rankcore-fastrp-e0")
    U = da.zeros((n, k), dtype=dtype, chunks=(rows, k))
    if opts["self_influence"] != 0:
        E = prev.map_blocks(_inv_norm_scale, dtype=dtype) if gds or opts["normalize"] else prev
        U = U + T(opts["self_influence"]) * E
    inv_deg = da.where(deg > 0, 1.0 / da.where(deg > 0, deg, 1.0), 0.0).astype(dtype)
    for alpha in opts["iteration_weights"]:
        cur = _product(A, prev, dtype)
        if gds:
            cur = cur.map_blocks(_inv_norm_scale, dtype=dtype)
        elif opts["transition"]:
            cur = da.map_blocks(_scale_rows, cur, inv_deg, dtype=dtype)
        if alpha != 0:
            g = cur.map_blocks(_inv_norm_scale, dtype=dtype) if not gds and opts["normalize"] else cur
            U = U + T(alpha) * g
        prev = cur
    if standardize:
        mean = U.sum(axis=0, dtype=np.float64) / n
        c = U - mean
        sd = da.sqrt((c * c).sum(axis=0) / n)
        sd = da.where(sd == 0, 1.0, sd)
        U = ((U - mean) / sd).astype(dtype)
    return U
