"""Device-array helpers shared by the GPU orchestrations, written for numpy and cupy alike.

Input checks mirror :func:`rankcore._validation.check_array` (same errors, same dtype rules)
without moving data: finiteness is one reduction on the device and one scalar read back.
Host and device arrays are never mixed silently: :func:`check_same_device` raises.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rankcore._backend import namespace
from rankcore._validation import _check_ndim, _check_not_empty

__all__ = ["array_module", "check_array", "check_same_device", "column_means", "is_sparse", "linalg", "svd_flip"]


def array_module(x: Any) -> Any:
    """``cupy`` for cupy arrays and ``cupyx.scipy.sparse`` matrices, else ``numpy``."""
    if namespace(x) == "cupy":
        import cupy

        return cupy
    return np


def is_sparse(x: Any) -> bool:
    """Whether `x` is a SciPy or ``cupyx.scipy.sparse`` matrix."""
    if namespace(x) == "cupy":
        import cupyx.scipy.sparse

        return cupyx.scipy.sparse.issparse(x)
    import scipy.sparse

    return scipy.sparse.issparse(x)


def column_means(A: Any, dtype: Any = None) -> Any:
    """Column means of a dense or sparse 2-D array, accumulated in float64 and returned in
    `dtype` (default: the dtype of `A`)."""
    xp = array_module(A)
    sums = A.astype(xp.float64).sum(axis=0) if is_sparse(A) else A.sum(axis=0, dtype=xp.float64)
    return (xp.asarray(sums).ravel() / A.shape[0]).astype(dtype or A.dtype)


def _sparse_module(x: Any) -> Any:
    if namespace(x) == "cupy":
        import cupyx.scipy.sparse

        return cupyx.scipy.sparse
    import scipy.sparse

    return scipy.sparse


def check_same_device(name: str, where: str, *arrays: tuple[str, Any]) -> None:
    """Raise ``TypeError`` when the named arrays do not all live where `where` says
    (``"cupy"`` or a host namespace): host and device arrays are never mixed."""
    for arg, a in arrays:
        if a is None:
            continue
        on_device = namespace(a) == "cupy"
        if on_device != (where == "cupy"):
            here = "a cupy (device) array" if on_device else f"a host {type(a).__name__}"
            there = "cupy (device) arrays" if where == "cupy" else "host (NumPy/SciPy) arrays"
            raise TypeError(
                f"{name}: {arg} is {here}, but this call works on {there}; convert it "
                "explicitly (cupy.asarray / cupy.asnumpy): rankcore never moves data between "
                "host and device behind your back"
            )


def _target_dtype(dtype: np.dtype, name: str) -> np.dtype:
    if dtype.kind == "c":
        raise ValueError(f"Complex data not supported: {name} has dtype {dtype}")
    if dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got an array of dtype {dtype}")
    if dtype.kind == "f" and dtype.itemsize in (4, 8):
        return dtype
    return np.dtype(np.float64)


def _check_finite(xp: Any, data: Any, name: str) -> None:
    if data.size == 0 or bool(xp.isfinite(data).all()):
        return
    what = "NaN" if bool(xp.isnan(data).any()) else "infinity"
    raise ValueError(f"{name} contains {what}; only finite values are supported")


def check_array(X: Any, *, name: str = "X", accept_sparse: bool = False,
                ensure_finite: bool = True) -> Any:
    """Validate a 2-D array where it lives (cupy dense or ``cupyx`` CSR/CSC; NumPy/SciPy
    stand in for them in CI). float32/float64 kept without a copy; other real dtypes become
    float64; complex is a ``ValueError``; NaN/inf rejected when `ensure_finite`; other
    sparse formats become CSR; non-canonical CSR/CSC (unsorted or duplicate indices) is
    copied into canonical form, never modified in place."""
    xp = array_module(X)
    if not hasattr(X, "shape") or not hasattr(X, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(X).__name__}")
    _check_ndim(tuple(X.shape), name, 2)
    _check_not_empty(tuple(X.shape), name)
    target = _target_dtype(np.dtype(X.dtype), name)
    if is_sparse(X):
        if not accept_sparse:
            raise TypeError(f"{name} is a sparse {type(X).__name__}, but sparse input is not supported here")
        if X.format not in ("csr", "csc"):
            X = X.tocsr()
        if X.dtype != target:
            X = X.astype(target)
        if not X.has_canonical_format:
            X = X.copy()
            X.sum_duplicates()  # also sorts the indices
        if ensure_finite:
            _check_finite(xp, X.data, name)
        return X
    if X.dtype != target:
        X = X.astype(target)
    if ensure_finite:
        _check_finite(xp, X, name)
    return X


def svd_flip(U: Any, Vt: Any, *, u_based_decision: bool = True) -> tuple[Any, Any]:
    """scikit-learn's ``svd_flip`` for either namespace: the largest-magnitude entry of each
    column of ``U`` (or row of ``Vt``) made positive."""
    xp = array_module(U)
    if u_based_decision:
        rows = xp.argmax(xp.abs(U), axis=0)
        signs = xp.sign(U[rows, xp.arange(U.shape[1])])
    else:
        cols = xp.argmax(xp.abs(Vt), axis=1)
        signs = xp.sign(Vt[xp.arange(Vt.shape[0]), cols])
    signs = xp.where(signs == 0, 1, signs).astype(U.dtype)
    return U * signs, Vt * signs[:, None]


class _Linalg:
    """The dense factorizations the orchestrations need, from scipy or cupyx.scipy."""

    def __init__(self, xp: Any) -> None:
        self.xp = xp
        if xp is np:
            import scipy.linalg as sl
        else:
            import cupyx.scipy.linalg as sl  # needs cuBLAS: imported in GPU calls only
        self._sl = sl

    def cholesky_lower(self, G: Any) -> Any | None:
        """Lower Cholesky factor of `G`, or None when `G` is not numerically positive definite."""
        xp = self.xp
        try:
            if xp is np:
                L = np.linalg.cholesky(G)
            else:
                import cupyx

                # cupy ignores cuSOLVER's status by default (a failed potrf returns a partial
                # factor that may look finite); 'raise' reads it back (one integer).
                with cupyx.errstate(linalg="raise"):
                    L = xp.linalg.cholesky(G)
        except np.linalg.LinAlgError:
            return None
        return L if bool(xp.isfinite(L).all()) else None

    def solve_lower(self, L: Any, B: Any) -> Any:
        """``L⁻¹ B`` for lower-triangular `L`."""
        return self._sl.solve_triangular(L, B, lower=True, check_finite=False)

    def lu_permuted(self, Y: Any) -> Any:
        """``P L`` of ``Y = P L U`` (scikit-learn's LU power-iteration normalizer)."""
        return self._sl.lu(Y, permute_l=True, check_finite=False)[0]

    def qr(self, Y: Any) -> Any:
        return self.xp.linalg.qr(Y, mode="reduced")[0]

    def svd(self, A: Any) -> tuple[Any, Any, Any]:
        return self.xp.linalg.svd(A, full_matrices=False)


def linalg(xp: Any) -> _Linalg:
    """The factorizations for namespace `xp` (numpy: SciPy; cupy: cuSOLVER through cupyx)."""
    return _Linalg(xp)


def validate_estimator_data(estimator: Any, X: Any, *, reset: bool, ensure_finite: bool = True) -> Any:
    """The device-side counterpart of sklearn's ``validate_data`` for a cupy `X`.

    ``reset=True`` (fit) records ``n_features_in_`` and that the estimator lives on the
    device (``_on_device``); ``reset=False`` checks the feature count and refuses data from
    the other side of the bus with a ``TypeError`` naming both (also for host `X` given to
    an estimator fitted on the device: call it with any `X`). Returns the validated `X`,
    or None for host `X` on a host-fitted estimator (the caller validates it as usual).
    """
    on_device = namespace(X) == "cupy"
    name = type(estimator).__name__
    if not reset:
        fitted_on_device = estimator.__dict__.get("_on_device", False)
        if on_device != fitted_on_device:
            where = "cupy (device)" if fitted_on_device else "host (NumPy/SciPy)"
            got = "a cupy (device) array" if on_device else f"a host {type(X).__name__}"
            raise TypeError(
                f"{name} was fitted on {where} data, but X is {got}; convert it explicitly "
                "(cupy.asarray / cupy.asnumpy): rankcore never moves data between host and "
                "device behind your back"
            )
    if not on_device:
        if reset:
            estimator.__dict__.pop("_on_device", None)
        return None
    X = check_array(X, name="X", accept_sparse=True, ensure_finite=ensure_finite)
    if reset:
        estimator.n_features_in_ = X.shape[1]
        estimator.__dict__.pop("feature_names_in_", None)
        estimator._on_device = True
    elif X.shape[1] != estimator.n_features_in_:
        raise ValueError(
            f"X has {X.shape[1]} features, but {name} is expecting {estimator.n_features_in_} "
            "features as input."
        )
    return X
