"""HOSVD and ST-HOSVD of a dask array tensor, chunked along any modes.

The algorithm of ``rust/rankcore/src/tucker/decomp.rs`` (``direct``/``subspace`` with
``svd="exact"``), with the tensor's passes as dask graphs:

- each mode's subspace comes from the Gram matrix of the mode-``n`` unfolding,
  ``G = X₍ₙ₎ X₍ₙ₎ᵀ``, formed in float64 by ``tensordot`` over all other modes (blockwise
  products tree-summed over the blocks), never unfolding; its eigenvectors (non-increasing
  eigenvalues) are computed on the client (``I_n × I_n``);
- with ``rank=None`` the ranks follow the core's rule exactly: the budget ``tol²‖X‖²``, each
  mode taking the smallest rank whose discarded eigenvalues fit an even share of what is
  left, unused budget carried over;
- ST-HOSVD multiplies the (lazy) working tensor by ``Uₙᵀ`` after each mode, so later Gram
  passes read the shrunk tensor;
- the core ``X ×ₖ Uₖᵀ`` is computed blockwise and brought to the client, the relative error
  from the norms, or (when that difference is below its rounding) from the residual summed
  blockwise, as the core does.

The core always uses the Gram route for the subspace (the in-memory path takes an SVD of the
unfolding when it has at most twice as many columns as rows); both agree to rounding above
``sqrt(eps)`` of the largest singular value. Factors and core come back as NumPy arrays.
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["tucker"]


def _gram(X: Any, n: int) -> np.ndarray:
    import dask.array as da

    others = [a for a in range(X.ndim) if a != n]
    X64 = X.astype(np.float64)
    return np.asarray(da.tensordot(X64, X64, axes=(others, others)).compute())


def _eigh_desc(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w, V = np.linalg.eigh(G)
    return w[::-1], V[:, ::-1]


def _mode_product_t(X: Any, U: np.ndarray, n: int) -> Any:
    """``X ×ₙ Uᵀ`` (lazy): contract mode `n` with the rows of `U`, keep the mode's place."""
    import dask.array as da

    out = da.tensordot(X, U.astype(X.dtype, copy=False), axes=([n], [0]))
    return da.moveaxis(out, -1, n)


def _residual_block(block: np.ndarray, core: np.ndarray, modes: list[int], factors: list[np.ndarray],
                    block_info: Any = None) -> np.ndarray:
    """``Σ (x - x̂)²`` over one block, x̂ the reconstruction's entries there (task side)."""
    from rankcore import _core

    loc = block_info[0]["array-location"]
    mats = [np.ascontiguousarray(f[loc[m][0]:loc[m][1]]) for m, f in zip(modes, factors)]
    rec = _core.multi_mode_dot(np.ascontiguousarray(core), mats, list(modes))
    diff = block.astype(np.float64) - rec.astype(np.float64)
    return np.full((1,) * block.ndim, float(np.sum(diff * diff)))


def _residual(X: Any, core: np.ndarray, modes: list[int], factors: list[np.ndarray]) -> float:
    parts = X.map_blocks(_residual_block, core, modes, factors, chunks=tuple((1,) * len(c) for c in X.chunks),
                         dtype=np.float64, meta=np.empty((0,) * X.ndim, dtype=np.float64),
                         token="rankcore-tucker-residual")
    return float(np.sum(np.asarray(parts.compute()), dtype=np.float64))


def tucker(X: Any, *, modes: list[int], ranks: list[int], error_tol: float | None,
           sequential: bool) -> dict:
    """HOSVD (`sequential` False) or ST-HOSVD of the validated dask tensor `X` at `ranks`
    (the upper bounds when `error_tol` chooses them). Returns ``{"core", "factors",
    "errors"}`` as NumPy arrays in `X`'s dtype."""
    import dask.array as da

    dtype = np.dtype(X.dtype)
    norm2 = float(da.sum(X.astype(np.float64) ** 2).compute())
    nm = len(modes)
    budget = None if error_tol is None else error_tol * error_tol * norm2
    factors: list[np.ndarray] = []
    cur = X
    for i, (m, r) in enumerate(zip(modes, ranks)):
        view = cur if sequential else X
        w, V = _eigh_desc(_gram(view, m))
        sq = w  # as the core: the eigenvalues as they are
        if budget is None:
            rank = r
        else:
            share = budget / (nm - i)
            tail, rank = 0.0, len(sq)
            while rank > 1 and tail + sq[rank - 1] <= share:
                tail += sq[rank - 1]
                rank -= 1
            rank = min(rank, r)
            budget = max(budget - float(np.sum(sq[rank:])), 0.0)
        U = np.ascontiguousarray(V[:, :rank]).astype(dtype)
        if sequential:
            cur = _mode_product_t(view, U, m)
        factors.append(U)
    core_lazy = cur if sequential else X
    if not sequential:
        for m, U in zip(modes, factors):
            core_lazy = _mode_product_t(core_lazy, U, m)
    core = np.asarray(core_lazy.compute()).astype(dtype, copy=False)
    core2 = float(np.sum(core.astype(np.float64) ** 2))
    err = ((max(norm2 - core2, 0.0) / norm2) ** 0.5) if norm2 > 0 else 0.0
    if norm2 > 0 and err * err <= 1e4 * float(np.finfo(dtype).eps):
        err = (_residual(X, core, modes, factors) / norm2) ** 0.5
    return {"core": core, "factors": factors, "errors": [err]}


def multi_mode_dot(t: Any, matrix_or_vec_list: Any, modes: Any, skip: Any, transpose: bool) -> Any:
    """:func:`rankcore.multi_mode_dot` of a dask tensor, lazily: one ``tensordot`` per mode
    (blockwise, summed over the contracted mode's chunks), the modes kept in place.

    Matrices and vectors are checked against the tensor's shape before any task runs, with
    the in-memory path's messages for the common mistakes; the result's dtype is the
    in-memory one (float32 only when the tensor and all used matrices are float32).
    """
    import dask.array as da

    from rankcore._dask._arrays import check_array as check_dask_array
    from rankcore.tucker import MAX_ORDER, _check_matrix, _check_mode, _check_skip, _common_dtype

    t = check_dask_array(t, name="tensor", ndim=None)
    if not 1 <= t.ndim <= MAX_ORDER:
        raise ValueError(f"tensor must have order (ndim) between 1 and {MAX_ORDER}, got {t.ndim}")
    if isinstance(matrix_or_vec_list, (str, bytes)):
        raise TypeError("matrix_or_vec_list must be a sequence of matrices or vectors")
    mats = list(matrix_or_vec_list)
    n = len(mats)
    raw = list(range(n)) if modes is None else list(modes)
    if len(raw) != n:
        raise ValueError(f"modes has {len(raw)} entries but matrix_or_vec_list has {n}; "
                         "give one mode per matrix or vector")
    mds = [_check_mode(md, t.ndim, f"modes[{i}]") for i, md in enumerate(raw)]
    if len(set(mds)) != n:
        raise ValueError(f"modes must be distinct modes of the tensor, got {raw}")
    skip = _check_skip(skip, n, "skip")
    skipped = None if skip is None else sorted(range(n), key=lambda i: int(raw[i]))[skip]
    keep = [i for i in range(n) if i != skipped]
    dtype = _common_dtype(t, [mats[i] for i in keep])
    out = t.astype(dtype)
    # Positions shift as vectors contract modes away: track where each original mode is.
    where = list(range(t.ndim))
    for i in sorted(keep, key=lambda i: mds[i]):
        md, m = mds[i], mats[i]
        name = f"matrix_or_vec_list[{i}]"
        size = int(t.shape[md])
        if np.ndim(m) == 1:
            v = _check_matrix(np.asarray(m)[None, :], name, dtype)[0]
            if v.shape[0] != size:
                raise ValueError(f"{name} is a vector of length {v.shape[0]}, which does not chain "
                                 f"with mode {md} of tensor (size {size})")
            out = da.tensordot(out, v, axes=([where[md]], [0]))
            where = [w - (w > where[md]) if j != md else -1 for j, w in enumerate(where)]
            continue
        a = _check_matrix(m, name, dtype)
        j = 0 if transpose else 1
        if a.shape[j] != size:
            raise ValueError(
                f"{name} has shape {a.shape}, which does not chain with mode {md} of tensor "
                f"(size {size}): its {('rows', 'columns')[j]} must number {size}"
                + (" (transposed)" if transpose else "")
            )
        if transpose:
            a = a.T
        out = da.moveaxis(da.tensordot(out, np.ascontiguousarray(a.T), axes=([where[md]], [0])), -1, where[md])
    return out
