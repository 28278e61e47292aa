"""Random projections on the device, written once for cupy and NumPy (the CI stand-in).

The matrix ``R`` (``k × d``) is the one ``rust/rankcore/src/projection.rs`` defines from the
seed. Sparse families: ``Y = X Rᵀ`` by the fused kernels of ``cuda/projection.cu``, which
read ``R`` from its non-zero lists (``k · d · density`` entries, generated on the device)
and ``X`` once, adding each output's terms in the CPU's order, so results are bit-identical
to the CPU path. Gaussian: ``Rᵀ`` generated on the device one block of features at a time
and multiplied by cuBLAS (or cuSPARSE for CSR ``X``); never stored whole beyond a budget.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from rankcore._gpu._arrays import array_module, is_sparse
from rankcore._gpu._ops import ops_for

__all__ = ["components", "project"]

STREAM_SPARSE = 0x5250_0001
STREAM_GAUSSIAN = 0x5250_0002
#: Entries of a Gaussian ``Rᵀ`` block generated at once (256 MiB in float32).
_GAUSS_BUDGET = 1 << 26


def _stream(opts: dict) -> int:
    if opts.get("stream") is not None:
        return int(opts["stream"])
    return STREAM_GAUSSIAN if opts["kind"] == "gaussian" else STREAM_SPARSE


def _scale(opts: dict) -> float:
    """The non-zeros' magnitude (sparse) or the standard deviation (Gaussian), in float64."""
    k = math.sqrt(opts["n_components"])
    return 1.0 / k if opts["kind"] == "gaussian" else math.sqrt(1.0 / opts["density"]) / k


def _sparse_module(xp: Any) -> Any:
    if xp is np:
        import scipy.sparse

        return scipy.sparse
    import cupyx.scipy.sparse

    return cupyx.scipy.sparse


def project(X: Any, opts: dict, *, dense_output: bool = True) -> Any:
    """``X @ R.T`` for a validated 2-D array (dense or CSR/CSC) where it lives.

    `opts` are :func:`rankcore.projection._options`. Returns a dense array of the namespace
    and dtype of `X`, or a CSR matrix for sparse `X` when `dense_output` is False.
    Raises ``ValueError`` when dense `X` holds NaN or infinity (sparse families: checked
    by the kernel while it reads `X`).
    """
    xp = array_module(X)
    ops = ops_for(xp)
    k, d = opts["n_components"], X.shape[1]
    seed, stream, scale = opts["seed"], _stream(opts), _scale(opts)
    if opts["kind"] == "sparse":
        if is_sparse(X):
            X = X.tocsr()
            ptr, entries = ops.sparse_lists(k, d, opts["density"], seed, stream, by_component=False)
            Y = ops.project_csr(X, ptr, entries, k, scale)
        else:
            ptr, entries = ops.sparse_lists(k, d, opts["density"], seed, stream, by_component=True)
            Y, bad = ops.project_dense(X, ptr, entries, k, scale)
            if bad:
                raise ValueError("X contains NaN or infinity; only finite values are supported")
    else:
        Y = xp.zeros((X.shape[0], k), dtype=X.dtype)
        block = max(1, _GAUSS_BUDGET // k)
        for j0 in range(0, d, block):
            j1 = min(d, j0 + block)
            Rt = ops.normal(j1 - j0, k, j0, 0, seed, stream, X.dtype, scale)
            part = X if (j0, j1) == (0, d) else X[:, j0:j1]
            Y += part @ Rt
    if is_sparse(X) and not dense_output:
        return _sparse_module(xp).csr_matrix(Y)
    return Y


def components(opts: dict, dtype: Any, xp: Any, *, dense: bool = False) -> Any:
    """The matrix ``R`` (``k × d``) the options define, in namespace `xp`: CSR for the
    sparse families unless `dense`, dense for the Gaussian one."""
    ops = ops_for(xp)
    dtype = np.dtype(dtype)
    k, d = opts["n_components"], opts["n_features"]
    seed, stream, scale = opts["seed"], _stream(opts), _scale(opts)
    if opts["kind"] == "gaussian":
        return xp.ascontiguousarray(ops.normal(d, k, 0, 0, seed, stream, dtype, scale).T)
    ptr, entries = ops.sparse_lists(k, d, opts["density"], seed, stream, by_component=True)
    indices = (xp.abs(entries) - 1).astype(xp.int32)
    data = xp.where(entries > 0, dtype.type(scale), -dtype.type(scale)).astype(dtype)
    R = _sparse_module(xp).csr_matrix((data, indices, ptr.astype(xp.int32)), shape=(k, d))
    return R.toarray() if dense else R
