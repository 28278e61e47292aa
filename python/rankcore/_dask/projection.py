"""Random projections of dask arrays: ``X @ R.T`` as one ``map_blocks`` over row blocks.

``R`` is never built on the client nor shipped: each task gets the options (seed, shape,
density; a few numbers) and the Rust kernel regenerates the entries it needs from the seed,
exactly as the in-memory path does. A row of the output depends on that row of ``X`` only,
so the result equals the in-memory one bit for bit, whatever the row chunking. ``X``
chunked along its columns is first rechunked to one column chunk (a row block then holds
whole rows), which keeps that equality.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import scipy.sparse as sp

from rankcore._dask._arrays import is_sparse_blocks

__all__ = ["project"]


def _project_block(block: Any, opts: dict, dense_output: bool, components: Any) -> Any:
    from rankcore.projection import _align_sparse, _project

    if components is not None:  # an assigned components_ (estimators only)
        from sklearn.utils.extmath import safe_sparse_dot

        return _align_sparse(safe_sparse_dot(block, components.T, dense_output=dense_output))
    return _project(block, opts, dense_output=dense_output)


def project(X: Any, opts: dict, *, dense_output: bool = True, components: Any = None) -> Any:
    """``X @ R.T`` for a validated dask array `X` (numpy or scipy.sparse blocks), lazily.

    Returns a dask array with `X`'s row chunks and one column chunk of ``n_components``
    columns, in `X`'s dtype; its blocks are CSR matrices when `X` has sparse blocks and
    not `dense_output` (as the in-memory sparse path), else ndarrays.
    """
    k = int(opts["n_components"]) if components is None else int(components.shape[0])
    if len(X.chunks[1]) > 1:
        X = X.rechunk({1: -1})
    sparse_out = is_sparse_blocks(X) and not dense_output
    if sparse_out:
        meta = sp.csr_matrix((0, k), dtype=X.dtype)
    else:
        meta = np.empty((0, k), dtype=X.dtype)
    return X.map_blocks(
        _project_block, opts, dense_output, components,
        chunks=(X.chunks[0], (k,)), dtype=X.dtype, meta=meta, token="rankcore-projection",
    )
