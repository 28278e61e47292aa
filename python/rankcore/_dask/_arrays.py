"""Checks and helpers for dask arrays, shared by the dask paths.

The structural checks (type, dimensions, known chunk sizes, dtype, sparse blocks) run on the
client before any task is submitted, with the messages of :mod:`rankcore._validation`. What
only the data can tell (NaN or infinity, a block whose shape disagrees with the array's
chunks) is checked inside the tasks that read each block, and raises the same
``ValueError`` there; dask re-raises it on the client.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from rankcore._validation import _check_finite, _check_ndim, _check_not_empty

__all__ = ["check_array", "is_sparse_blocks", "offsets", "validate_estimator_data"]


def offsets(chunks: tuple[int, ...]) -> np.ndarray:
    """Start index of each chunk along one axis (and the total at the end)."""
    return np.concatenate([[0], np.cumsum(chunks, dtype=np.int64)])


def is_sparse_blocks(X: Any) -> bool:
    """Whether the blocks of the dask array `X` are SciPy sparse matrices (by its meta)."""
    return sp.issparse(getattr(X, "_meta", None))


def _target_dtype(dtype: np.dtype, name: str) -> np.dtype:
    if dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} has dtype {dtype}")
    if dtype.kind == "O":
        raise TypeError(
            f"{name} is a dask array of dtype object; the dask path needs a numeric dtype "
            f"known before the data are read (convert with {name}.astype(float))"
        )
    if dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got an array of dtype {dtype}")
    if dtype.kind == "f" and dtype.itemsize in (4, 8):
        return dtype.newbyteorder("=")
    return np.dtype(np.float64)


def _check_block(block: Any, name: str, finite: str | None, block_info: Any = None) -> Any:
    """Task-side check of one block: its shape, then (if asked) its values."""
    info = (block_info or {}).get(0)
    if info is not None:
        expected = tuple(int(b - a) for a, b in info["array-location"])
        if tuple(block.shape) != expected:
            raise ValueError(
                f"{name}: block {tuple(info['chunk-location'])} has shape {tuple(block.shape)}, "
                f"but the chunks of {name} say {expected}; the dask array's chunks do not match "
                "its data"
            )
    if finite == "rankcore":
        _check_finite(block.data if sp.issparse(block) else block, name)
    elif finite is not None:  # scikit-learn's wording, for the estimators
        from sklearn.utils import assert_all_finite

        assert_all_finite(block.data if sp.issparse(block) else block, input_name=name,
                          estimator_name=finite)
    return block


def check_array(X: Any, *, name: str = "X", ndim: int = 2, accept_sparse: bool = False,
                ensure_finite: bool = True, estimator: str | None = None) -> Any:
    """Validate a dask array without computing it; return the array the path should read.

    Type, dimensions, chunk sizes and dtype are checked here, before any task runs
    (complex: ``ValueError``; object, strings: ``TypeError``; unknown chunk sizes:
    ``ValueError``). float32/float64 are kept, other real dtypes become float64 (lazily).
    Every block is then checked by the task that reads it: its shape against the chunks
    and, when `ensure_finite`, its values (NaN/inf: ``ValueError`` naming `name`; in the
    words of scikit-learn's ``assert_all_finite`` when `estimator` is given).
    """
    try:
        import dask.array as da
    except ImportError as exc:  # pragma: no cover - dask objects imply dask
        raise TypeError(f"{name} looks like a dask collection, but dask.array is not installed") from exc
    if not isinstance(X, da.Array):
        raise TypeError(
            f"{name} is a dask {type(X).__name__}; the dask path takes dask.array.Array "
            f"(convert a dask DataFrame with {name}.to_dask_array(lengths=True))"
        )
    _check_ndim(tuple(X.shape), name, ndim)
    if any(isinstance(s, float) and math.isnan(s) for s in X.shape):
        raise ValueError(
            f"{name} has unknown chunk sizes (shape {X.shape}); call {name}.compute_chunk_sizes() "
            "or give lengths when converting from a dataframe"
        )
    _check_not_empty(tuple(int(s) for s in X.shape), name)
    target = _target_dtype(np.dtype(X.dtype), name)
    sparse_blocks = is_sparse_blocks(X)
    if sparse_blocks and not accept_sparse:
        raise TypeError(
            f"{name} is a dask array of scipy.sparse blocks, but sparse input is not supported "
            f"here; convert it with {name}.map_blocks(lambda b: b.toarray())"
        )
    if X.dtype != target:
        X = X.astype(target)
    finite = (estimator or "rankcore") if ensure_finite else None
    return X.map_blocks(_check_block, name, finite, dtype=X.dtype, meta=X._meta,
                        token=f"rankcore-check-{name}")


def validate_estimator_data(estimator: Any, X: Any, *, reset: bool, accept_sparse: bool = True,
                            ensure_finite: bool = True) -> Any:
    """The dask counterpart of scikit-learn's ``validate_data``: checks `X` as
    :func:`check_array` does (lazily for the values), records ``n_features_in_`` on
    ``reset`` and checks it otherwise, with scikit-learn's message."""
    cls = type(estimator).__name__
    X = check_array(X, name="X", accept_sparse=accept_sparse, ensure_finite=ensure_finite,
                    estimator=cls)
    n_features = int(X.shape[1])
    if reset:
        estimator.n_features_in_ = n_features
        estimator.__dict__.pop("feature_names_in_", None)
    elif n_features != estimator.n_features_in_:
        raise ValueError(
            f"X has {n_features} features, but {cls} is expecting {estimator.n_features_in_} "
            "features as input."
        )
    return X
