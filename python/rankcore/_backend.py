"""Where an array lives, and one helper that routes a call to the matching path.

CuPy and Dask are optional: they are recognised by the module their types come from, so
this module never imports them (and works where they are not installed).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import scipy.sparse

__all__ = ["dispatch", "namespace"]

_CUPY_MODULES = ("cupy", "cupyx")
_DASK_MODULES = ("dask", "dask_expr")


_MODULES_OF: dict[type, frozenset[str]] = {}


def _top_modules(x: Any) -> frozenset[str]:
    """Top-level module names of ``type(x)`` and its base classes (cached per type: every
    public call asks, and the answer cannot change)."""
    t = type(x)
    found = _MODULES_OF.get(t)
    if found is None:
        found = frozenset((cls.__module__ or "").partition(".")[0] for cls in t.__mro__)
        if len(_MODULES_OF) < 1024:  # types made on the fly must not grow it without bound
            _MODULES_OF[t] = found
    return found


def namespace(x: Any) -> str:
    """Say which array library `x` belongs to.

    Parameters
    ----------
    x : object
        An array or array-like.

    Returns
    -------
    str
        ``"cupy"`` for CuPy arrays and ``cupyx.scipy.sparse`` matrices (GPU memory);
        ``"dask"`` for Dask collections; ``"scipy.sparse"`` for SciPy sparse matrices and
        sparse arrays; ``"numpy"`` for everything else (ndarrays, lists, tuples, pandas
        objects and other array-likes that :func:`numpy.asarray` understands).

    Notes
    -----
    CuPy and Dask are detected from the module of ``type(x)`` or any of its base classes,
    without importing either library.
    """
    if type(x) is np.ndarray:
        return "numpy"
    modules = _top_modules(x)
    if modules.intersection(_CUPY_MODULES):
        return "cupy"
    if modules.intersection(_DASK_MODULES):
        return "dask"
    if scipy.sparse.issparse(x):
        return "scipy.sparse"
    return "numpy"


def dispatch(
    x: Any,
    *,
    name: str,
    cpu: Callable[[Any], Any],
    gpu: Callable[[Any], Any] | None = None,
    dask: Callable[[Any], Any] | None = None,
    sparse: Callable[[Any], Any] | None = None,
    param: str = "X",
) -> Any:
    """Call the implementation that matches where `x` lives.

    Each path is called as ``path(x)``; bind the other arguments with a closure or
    :func:`functools.partial`. Arrays are never moved between devices here: a CuPy array
    goes to `gpu` or raises, it is never copied to the host behind the caller's back.

    Parameters
    ----------
    x : object
        The array that decides the path (the main data argument).
    name : str
        Public name of the calling function, used in error messages.
    cpu : callable
        Path for NumPy arrays and array-likes.
    gpu : callable, optional
        Path for CuPy arrays (dense or ``cupyx.scipy.sparse``).
    dask : callable, optional
        Path for Dask collections.
    sparse : callable, optional
        Path for SciPy sparse input. Pass ``sparse=cpu`` when the CPU path handles it.
    param : str, default="X"
        Name of the argument `x` was passed as, used in error messages.

    Returns
    -------
    object
        Whatever the chosen path returns.

    Raises
    ------
    NotImplementedError
        If `x` is a CuPy or Dask array and that path is not given.
    TypeError
        If `x` is SciPy sparse and `sparse` is not given. (A ``TypeError`` that mentions
        "sparse" is what scikit-learn's estimator checks expect for unsupported sparse
        input.)

    Examples
    --------
    >>> import numpy as np
    >>> dispatch(np.ones(3), name="total", cpu=np.sum)
    np.float64(3.0)
    """
    ns = namespace(x)
    if ns == "numpy":
        return cpu(x)
    if ns == "scipy.sparse":
        if sparse is None:
            raise TypeError(
                f"{name}: scipy.sparse input is not supported for {param}; "
                f"convert it with {param}.toarray()"
            )
        return sparse(x)
    if ns == "cupy":
        if gpu is None:
            raise NotImplementedError(
                f"{name}: the GPU path (cupy arrays) is not implemented yet; "
                f"convert with cupy.asnumpy({param}) to use the CPU path"
            )
        return gpu(x)
    if dask is None:
        raise NotImplementedError(
            f"{name}: the dask path is not implemented yet; call {param}.compute() "
            "to load the data into memory and use the CPU path"
        )
    return dask(x)
