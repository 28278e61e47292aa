"""Randomized SVD (Halko, Martinsson & Tropp 2011), fixed rank or fixed accuracy.

The functional API :func:`randomized_svd` is a drop-in for
``sklearn.utils.extmath.randomized_svd``; :class:`RandomizedSVD` plays the role of
``sklearn.decomposition.TruncatedSVD`` and :class:`RandomizedPCA` of
``sklearn.decomposition.PCA(svd_solver="randomized")``.
"""

from __future__ import annotations

import contextlib
import numbers
from dataclasses import dataclass
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.utils import assert_all_finite
from sklearn.utils.extmath import safe_sparse_dot, svd_flip
from sklearn.utils.sparsefuncs import mean_variance_axis
from sklearn.utils.validation import check_is_fitted, validate_data

from rankcore import _core
from rankcore._backend import dispatch, namespace
from rankcore._gpu._arrays import array_module, check_same_device, column_means, is_sparse
from rankcore._gpu._arrays import check_array as check_device_array
from rankcore._gpu._arrays import svd_flip as device_svd_flip
from rankcore._gpu._arrays import validate_estimator_data
from rankcore._threads import one_blas_thread
from rankcore._validation import (
    check_array,
    check_choice,
    check_nonneg_float,
    check_positive_int,
    check_random_state_seed,
)

__all__ = ["RandomizedPCA", "RandomizedSVD", "randomized_svd"]

#: Columns added per step in the fixed-accuracy mode.
_BLOCK_SIZE = 32


@dataclass(frozen=True)
class _SvdResult:
    """What the core returns: ``A ≈ U diag(S) Vt`` (after centring by ``mean`` if set)."""

    U: np.ndarray
    S: np.ndarray
    Vt: np.ndarray
    mean: np.ndarray | None
    rel_error: float | None
    n_iter: int


def randomized_svd(
    M: Any,
    n_components: int | None,
    *,
    n_oversamples: int = 10,
    n_iter: int | str = "auto",
    power_iteration_normalizer: str = "auto",
    transpose: bool | str = "auto",
    flip_sign: bool = True,
    random_state: Any = None,
    svd_lapack_driver: str = "gesdd",
    tol: float | None = None,
    center: bool = False,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Truncated SVD by random projections: ``A ≈ U @ diag(S) @ Vt``.

    Same parameters, defaults and results as ``sklearn.utils.extmath.randomized_svd``
    (switch by changing the import), computed in the input's precision, plus a
    fixed-accuracy mode (``tol``) and implicit centring (``center``).

    Parameters
    ----------
    M : array-like, scipy.sparse matrix, cupy array or cupyx.scipy.sparse matrix of shape (m, n)
        The matrix ``A`` of the formulas (scikit-learn's name for the argument).
        float32 or float64 (kept; other real dtypes become float64), C or Fortran order or
        any strides without a copy; CSR or CSC without densifying. cupy input runs on its
        GPU (cuBLAS/cuSPARSE products, CholeskyQR, cuSOLVER for the small SVD) and returns
        cupy arrays; the same seed gives the same test matrix as on the CPU, so answers
        agree to rounding. A dask array (NumPy or scipy.sparse blocks, chunked by rows,
        columns or both) runs as
        dask tasks (see :mod:`rankcore._dask.svd`): ``U`` comes back as a dask array chunked
        like the rows of ``A``, ``S`` and ``Vt`` as NumPy arrays, equal to the in-memory
        answer to rounding (fixed rank and fixed accuracy alike).
    n_components : int or None
        Rank ``k`` of the result, ``1 <= k <= min(m, n)``. ``None`` (with ``tol``) lets the
        fixed-accuracy mode choose it.
    n_oversamples : int, default=10
        Extra sketch columns beyond ``k`` (``l = k + n_oversamples``, capped at
        ``min(m, n)``).
    n_iter : int or "auto", default="auto"
        Power iterations. "auto" is 7 when ``k < 0.1 * min(m, n)``, else 4 (sklearn's rule);
        4 in the fixed-accuracy mode.
    power_iteration_normalizer : {"auto", "QR", "LU", "none"}, default="auto"
        Re-conditioning between power iterations. "auto" is "QR" whenever ``n_iter > 0``:
        our parallel tall-skinny QR is cheaper here than a sequential LU and keeps full
        accuracy in float32 (sklearn's "auto" is "none" for ``n_iter <= 2``, else "LU").
        "QR" takes a single CholeskyQR step where the block is well conditioned
        (``u·cond² ≤ 1e-3``: orthonormal to within 1e-3, which is all the next product
        needs) and a full shifted CholeskyQR otherwise; the final basis is always
        orthonormal to working precision.
    transpose : bool or "auto", default="auto"
        Work on ``A.T``; "auto" does when ``m < n``. The result is the same up to rounding.
    flip_sign : bool, default=True
        Make the largest-magnitude entry of each column of ``U`` positive (sklearn's
        ``svd_flip``), so results are deterministic up to rounding.
    random_state : None, int, numpy.random.Generator or RandomState
        Seed of the Gaussian test matrix (Philox; entry (i, j) depends on the seed and
        (i, j) only, so results do not depend on the thread count). None draws the seed
        from NumPy's global state, like sklearn.
    svd_lapack_driver : {"gesdd", "gesvd"}, default="gesdd"
        Accepted for drop-in compatibility with sklearn (its LAPACK driver for the small
        SVD); the small SVD is faer's on the CPU and cuSOLVER's on the GPU either way.
    tol : float or None, default=None
        Fixed-accuracy mode when ``0 < tol < 1``: the rank is the smallest ``r`` (at most
        ``n_components`` when that is given) whose approximation has relative Frobenius
        error ``||A - U S Vt||_F <= tol * ||A||_F``, found by the blocked randQB_EI range
        finder (Yu, Gu & Li 2018) without a second pass over ``A``. Resolution is about
        ``sqrt(eps)`` of the dtype (1e-7 in float64, 3e-4 in float32). ``None`` or 0 turns
        the mode off.
    center : bool, default=False
        Decompose ``A - mean(A, axis=0)`` without forming it (PCA on sparse data).

    Returns
    -------
    U : ndarray of shape (m, k)
    S : ndarray of shape (k,)
        Non-increasing.
    Vt : ndarray of shape (k, n)
        cupy arrays for cupy input.

    References
    ----------
    N. Halko, P.-G. Martinsson, J. A. Tropp, "Finding structure with randomness", SIAM
    Review 53(2), 2011. W. Yu, Y. Gu, Y. Li, "Efficient randomized algorithms for the
    fixed-precision low-rank matrix approximation", SIAM J. Matrix Anal. Appl. 39(3), 2018.
    """
    check_choice(svd_lapack_driver, "svd_lapack_driver", ("gesdd", "gesvd"))
    kwargs = dict(
        n_oversamples=n_oversamples,
        n_iter=n_iter,
        power_iteration_normalizer=power_iteration_normalizer,
        transpose=transpose,
        random_state=random_state,
        tol=tol,
        center=center,
    )

    def cpu(a: Any) -> _SvdResult:
        return _randomized_svd(check_array(a, name="M", accept_sparse=True), n_components, **kwargs)

    def gpu(a: Any) -> _SvdResult:
        return _randomized_svd(check_device_array(a, name="M", accept_sparse=True), n_components, **kwargs)

    def dask(a: Any) -> _SvdResult:
        from rankcore._dask._arrays import check_array as check_dask_array

        return _randomized_svd(check_dask_array(a, name="M", accept_sparse=True), n_components, **kwargs)

    result = dispatch(M, name="randomized_svd", param="M", cpu=cpu, sparse=cpu, gpu=gpu, dask=dask)
    U, Vt = result.U, result.Vt
    if _check_bool(flip_sign, "flip_sign"):
        U, Vt = _svd_flip(U, Vt)
    return U, result.S, Vt


def _svd_flip(U: Any, Vt: Any, *, u_based_decision: bool = True) -> tuple[Any, Any]:
    """sklearn's ``svd_flip`` on host arrays, its namespace-generic twin on device arrays."""
    if namespace(U) == "cupy":
        return device_svd_flip(U, Vt, u_based_decision=u_based_decision)
    if namespace(U) == "dask":  # U a dask array, Vt in memory
        from rankcore._dask.svd import svd_flip as dask_svd_flip

        return dask_svd_flip(U, Vt, u_based_decision=u_based_decision)
    if u_based_decision and U.shape[0] * U.shape[1] > _FLIP_BLOCK_ELEMENTS:
        return _tall_svd_flip(U, Vt)
    return svd_flip(U, Vt, u_based_decision=u_based_decision)


#: Entries of U per block of :func:`_tall_svd_flip` (a cache-resident ``|U|``).
_FLIP_BLOCK_ELEMENTS = 1 << 16


def _tall_svd_flip(U: np.ndarray, Vt: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """sklearn's ``svd_flip(U, Vt)`` (each column of ``U`` made to have its largest-magnitude
    entry, the first of equals, non-negative; ``Vt``'s rows follow), by blocks of rows: no
    ``|U|`` temporary and no strided reduction over all of ``U`` (0.36 s → 0.07 s for
    200000 × 100, measured)."""
    m, k = U.shape
    step = max(1, _FLIP_BLOCK_ELEMENTS // k)
    cols = np.arange(k)
    best = np.full(k, -1.0)
    picked = np.zeros(k, dtype=U.dtype)
    for r in range(0, m, step):
        block = U[r : r + step]
        rows = np.abs(block).argmax(axis=0)
        values = block[rows, cols]
        better = np.abs(values) > best  # strictly: an earlier block keeps ties
        best[better] = np.abs(values[better])
        picked[better] = values[better]
    signs = np.sign(picked)
    U *= signs
    Vt *= signs[:, None]
    return U, Vt


def _check_bool(value: Any, name: str) -> bool:
    if not isinstance(value, (bool, np.bool_)):
        raise TypeError(f"{name} must be a bool, got {value!r}")
    return bool(value)


def _randomized_svd(A: Any, n_components: int | None, **params: Any) -> _SvdResult:
    """The shared engine of the function and the estimators; ``A`` is already validated
    (host: NumPy/SciPy, run by the Rust core; device: cupy, run by :mod:`rankcore._gpu.svd`).
    `params` are the keywords of :func:`_svd_options`."""
    opts = _svd_options(A.shape, n_components, **params)
    if namespace(A) == "cupy":
        from rankcore._gpu.svd import rsvd

        out = rsvd(A, opts)
    elif namespace(A) == "dask":
        from rankcore._dask.svd import rsvd as dask_rsvd

        out = dask_rsvd(A, opts)
    elif sp.issparse(A):
        if A.format not in ("csr", "csc"):
            A = A.tocsr()
        index = np.int64 if max(A.indptr.dtype.itemsize, A.indices.dtype.itemsize) > 4 else np.int32
        out = _core.rsvd_sparse(
            A.shape,
            A.format == "csc",
            np.ascontiguousarray(A.indptr, dtype=index),
            np.ascontiguousarray(A.indices, dtype=index),
            np.ascontiguousarray(A.data),
            opts,
        )
    else:
        if not (A.flags.aligned and A.dtype.isnative):  # the core reads aligned native data
            A = np.array(A, dtype=A.dtype.newbyteorder("="), order="K")
        out = _core.rsvd_dense(A, opts)
    return _SvdResult(out["U"], out["S"], out["Vt"], out["mean"], out["rel_error"], opts["n_iter"])


def _svd_options(
    shape: tuple[int, int],
    n_components: int | None,
    *,
    n_oversamples: int = 10,
    n_iter: int | str = "auto",
    power_iteration_normalizer: str = "auto",
    transpose: bool | str = "auto",
    random_state: Any = None,
    tol: float | None = None,
    center: bool = False,
) -> dict:
    """Checks the parameters and resolves "auto": the options both engines take."""
    m, n = shape
    tol = check_nonneg_float(tol, "tol", maximum=1.0, allow_none=True)
    adaptive = tol is not None and tol > 0
    if adaptive and tol >= 1.0:
        raise ValueError(f"tol must be in (0, 1) for the fixed-accuracy mode, got {tol}")
    if n_components is None and not adaptive:
        raise ValueError("n_components=None needs a positive tol (the fixed-accuracy mode)")
    limit = min(m, n)
    k = limit if n_components is None else _check_rank(n_components, m, n)
    if n_iter == "auto":
        n_iter = 4 if adaptive or k >= 0.1 * limit else 7
    n_iter = check_positive_int(n_iter, "n_iter", minimum=0)
    normalizer = check_choice(power_iteration_normalizer, "power_iteration_normalizer", ("auto", "QR", "LU", "none"))
    if normalizer == "auto":
        normalizer = "QR" if n_iter > 0 else "none"
    if isinstance(transpose, str):
        check_choice(transpose, "transpose", ("auto",))
        transpose = m < n
    return {
        "n_components": k,
        "n_oversamples": check_positive_int(n_oversamples, "n_oversamples", minimum=0),
        "n_iter": n_iter,
        "power_iteration_normalizer": normalizer,
        "transpose": _check_bool(transpose, "transpose"),
        "seed": check_random_state_seed(random_state),
        "center": _check_bool(center, "center"),
        "tol": tol if adaptive else None,
        "block_size": _BLOCK_SIZE,
    }


def _check_rank(n_components: Any, m: int, n: int) -> int:
    if not isinstance(n_components, numbers.Integral) or isinstance(n_components, (bool, np.bool_)):
        raise TypeError(f"n_components must be an int or None, got {n_components!r}")
    if not 1 <= n_components <= min(m, n):
        raise ValueError(
            f"n_components={n_components} must be between 1 and min(n_samples, n_features) = "
            f"{min(m, n)} (n_samples={m}, n_features={n})"
        )
    return int(n_components)


def _dot(X: Any, B: Any) -> Any:
    """``X @ B`` as a dense array, for host (dense or sparse) and device input alike (a lazy
    dask array for dask input)."""
    if namespace(X) == "dask":
        from rankcore._dask.svd import dot_small

        return dot_small(X, B)
    return safe_sparse_dot(X, B) if namespace(X) != "cupy" else X @ B


def _column_variances(X: Any) -> Any:
    """Population variance of each column (``ddof=0``), sparse input without densifying."""
    if namespace(X) == "dask":  # two passes over the blocks (sparse ones stay sparse)
        from rankcore._dask.svd import column_variances

        return column_variances(X).astype(X.dtype)
    if namespace(X) != "cupy":
        return mean_variance_axis(X, axis=0)[1] if sp.issparse(X) else np.var(X, axis=0)
    xp = array_module(X)
    if not is_sparse(X):
        return xp.var(X, axis=0)
    mean = xp.asarray(X.mean(axis=0)).ravel()
    return xp.asarray(X.multiply(X).mean(axis=0)).ravel() - mean * mean


#: Columns from which the host covariance route decomposes the Gram matrix with LAPACK's
#: partial eigensolver instead of faer's (see :func:`_covariance_eigh`).
_LAPACK_EIGH_FEATURES = 400
#: Columns from which that eigensolver runs on BLAS's threads: below, on one
#: (:func:`rankcore._threads.one_blas_thread`; ``syevr`` for the top 50 of 500 columns took
#: 16 ms on one thread and 14–17 ms on two, 20 of 700 22 and 20 ms, 10 of 1000 48 and 39 ms,
#: AMD EPYC, 2026-12-06).
_THREADED_EIGH_FEATURES = 640


def _eigh_desc(G: Any, top: int | None) -> tuple[Any, Any, float]:
    """``(eigenvalues, eigenvectors, total)`` of the symmetric `G` (its lower triangle
    read), non-increasing, with ``total`` the sum of all
    eigenvalues clipped at zero, or the trace where `top` asked only for the leading ones
    (LAPACK's ``syevr`` on the host: 2.4× faster than the full ``syevd`` for 10 of 1000)."""
    xp = array_module(G)
    n = G.shape[0]
    if top is not None and top < n and xp is np:
        total = max(float(np.trace(G)), 0.0)
        with contextlib.nullcontext() if n >= _THREADED_EIGH_FEATURES else one_blas_thread():
            evals, evecs = scipy.linalg.eigh(G, subset_by_index=[n - top, n - 1], driver="evr",
                                             overwrite_a=True, check_finite=False)
        return evals[::-1], evecs[:, ::-1], total
    evals, evecs = xp.linalg.eigh(G, UPLO="L")
    return evals[::-1], evecs[:, ::-1], float(xp.maximum(evals, 0.0).sum())


def _checks_values(X: Any) -> bool:
    """Whether :func:`_covariance_eigh` rejects NaN and infinity in `X` itself (host dense
    input: they reach the column means, and squares that overflow reach the Gram matrix,
    both checked before any eigensolver), so that ``fit`` need not read X once more to check
    them first (22 ms of a 108 ms fit on 500000 × 100, measured)."""
    return namespace(X) == "numpy" and not sp.issparse(X)


def _reject_non_finite(X: np.ndarray) -> None:
    """The error for a host `X` whose means or Gram matrix are not finite: sklearn's where X
    holds NaN or infinity, else that of squares that overflow."""
    assert_all_finite(X, input_name="X")
    raise ValueError("X contains values whose squares overflow: its covariance is not finite")


def _covariance_eigh(X: Any, top: int | None = None) -> tuple[Any, Any, Any, float]:
    """``(eigenvalues, eigenvectors, mean, total)`` of the centred Gram matrix
    ``Σᵢ (xᵢ - μ)(xᵢ - μ)ᵀ`` of the rows of `X`, eigenvalues non-increasing, all float64;
    ``total`` is the sum of all its eigenvalues clipped at zero (see :func:`_eigh_desc`).
    With `top`, at least the `top` leading pairs are returned.

    Host dense: one pass in the Rust core (``linalg::centred_gram``: blocks centred at their
    own mean, so large means cost no digits, each block's Gram a triangular GEMM), then,
    below ``_LAPACK_EIGH_FEATURES`` columns, faer's eigensolver in the same call (no BLAS
    threads woken to compete with rayon's: 50000 × 200 fit 64 → 44 ms), from there on
    LAPACK's ``syevr`` for the `top` leading pairs only (5000 × 500: 12 ms against faer's
    full decomposition's 18–22 ms). The core's Gram took 1.55–2.1× less time than scipy's
    BLAS SYRK of ``X`` (500–1000 columns, AMD EPYC, 2026-12-06), which this route used
    before. Sparse (host or device): ``XᵀX - m μμᵀ`` without densifying X. Device dense: row
    blocks centred at the column means and multiplied by cuBLAS.
    """
    m, n = X.shape
    xp = array_module(X)
    if namespace(X) == "dask":  # the same one-pass centred Gram per row block, merged exactly
        from rankcore._dask.svd import centred_gram

        G, mean = centred_gram(X)
    elif _checks_values(X):
        if not (X.flags.aligned and X.dtype.isnative):
            X = np.array(X, dtype=X.dtype.newbyteorder("="), order="K")
        if n < _LAPACK_EIGH_FEATURES:
            try:
                evals, evecs, mean = _core.covariance_eigh_dense(X)
            except ValueError:  # non-finite means or Gram matrix
                _reject_non_finite(X)
            return evals, evecs, mean, float(np.maximum(evals, 0.0).sum())
        G, mean = _core.centred_gram_dense(X, True)
        # NaN or infinity in X reach the means; squares that overflow reach the Gram matrix
        if not (np.isfinite(mean).all() and np.isfinite(G).all()):
            _reject_non_finite(X)
    else:
        with np.errstate(over="ignore"):  # a sum that overflows is reported below
            mean = column_means(X, np.float64)
        if is_sparse(X):
            G = xp.asarray((X.T @ X).toarray(), dtype=xp.float64)
            G -= m * xp.outer(mean, mean)
        else:
            G = xp.zeros((n, n), dtype=xp.float64)
            shift = mean.astype(X.dtype)
            step = max(1, (1 << 24) // max(n, 1))
            for r in range(0, m, step):
                B = X[r:r + step] - shift
                G += (B.T @ B).astype(xp.float64)
    evals, evecs, total = _eigh_desc(G, top)
    return evals, evecs, mean, total


class _BaseRandomizedSVD(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Shared validation and sklearn plumbing of the two estimators."""

    def _validate(self, X: Any, *, reset: bool, finite: bool = True) -> Any:
        """sklearn's ``validate_data`` on host input; the same checks on the device for cupy
        input (dense or ``cupyx.scipy.sparse``), whose fitted attributes then stay there.
        ``finite=False`` leaves the host values unchecked (the caller checks them)."""
        on_device = validate_estimator_data(self, X, reset=reset)
        if on_device is not None:
            return on_device
        if namespace(X) == "dask":  # lazily: the values are checked by the tasks that read them
            from rankcore._dask._arrays import validate_estimator_data as validate_dask_data

            return validate_dask_data(self, X, reset=reset)
        return validate_data(
            self, X, accept_sparse=["csr", "csc"], dtype=[np.float64, np.float32], reset=reset,
            ensure_all_finite=finite,
        )

    @property
    def _n_features_out(self) -> int:
        return self.components_.shape[0]

    def _check_projections(self, X: Any) -> Any:
        """Validate projections given to ``inverse_transform`` where the model lives."""
        if self.__dict__.get("_on_device", False) or namespace(X) == "cupy":
            check_same_device(f"{type(self).__name__}.inverse_transform",
                              "cupy" if self.__dict__.get("_on_device", False) else "numpy", ("X", X))
            return check_device_array(X, name="X")
        return check_array(X, name="X")

    def __sklearn_tags__(self):  # noqa: D105
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags

    def fit(self, X: Any, y: Any = None) -> Any:
        """Fit the model on ``X`` (ignores ``y``); returns ``self``."""
        self.fit_transform(X)
        return self


class RandomizedSVD(_BaseRandomizedSVD):
    """Truncated SVD by random projections: the role of sklearn's ``TruncatedSVD``.

    Same parameters and fitted attributes as ``TruncatedSVD(algorithm="randomized")``, on
    dense or CSR/CSC input, float32 kept in float32. In addition, ``n_components=None`` with
    ``0 < tol < 1`` chooses the smallest rank whose relative Frobenius error is at most
    ``tol`` (stored in ``n_components_``); with an integer ``n_components``, ``tol`` is ignored
    as in sklearn's randomized solver, so ``tol=0.0`` is a no-op.

    GPU: fitted on a cupy array (dense or ``cupyx.scipy.sparse``), it computes on that
    device and keeps its fitted arrays there (cupy); ``transform`` then takes cupy input
    and returns cupy, and host input is a ``TypeError`` (and vice versa).

    Parameters
    ----------
    n_components : int or None, default=2
    algorithm : {"randomized"}, default="randomized"
        Accepted for drop-in compatibility; "arpack" is not offered.
    n_iter : int or "auto", default=5
    n_oversamples : int, default=10
    power_iteration_normalizer : {"auto", "QR", "LU", "none"}, default="auto"
    random_state : None, int, Generator or RandomState, default=None
    tol : float, default=0.0

    Attributes
    ----------
    components_ : ndarray of shape (n_components_, n_features)
    singular_values_ : ndarray of shape (n_components_,)
    explained_variance_ : ndarray of shape (n_components_,)
        Variance of each column of the transformed training data.
    explained_variance_ratio_ : ndarray of shape (n_components_,)
    n_components_ : int
    n_iter_ : int
        Power iterations used.
    n_features_in_ : int
    feature_names_in_ : ndarray of str, when fitted on a DataFrame with string columns.

    Examples
    --------
    >>> import numpy as np
    >>> from rankcore import RandomizedSVD
    >>> X = np.random.default_rng(0).standard_normal((100, 20))
    >>> RandomizedSVD(n_components=5, random_state=0).fit_transform(X).shape
    (100, 5)
    """

    def __init__(
        self,
        n_components: int | None = 2,
        *,
        algorithm: str = "randomized",
        n_iter: int | str = 5,
        n_oversamples: int = 10,
        power_iteration_normalizer: str = "auto",
        random_state: Any = None,
        tol: float = 0.0,
    ) -> None:
        self.n_components = n_components
        self.algorithm = algorithm
        self.n_iter = n_iter
        self.n_oversamples = n_oversamples
        self.power_iteration_normalizer = power_iteration_normalizer
        self.random_state = random_state
        self.tol = tol

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit on ``X`` and return its projection ``X @ components_.T``."""
        check_choice(self.algorithm, "algorithm", ("randomized",))
        X = self._validate(X, reset=True)
        if self.n_components is not None and self.n_components > X.shape[1]:
            raise ValueError(f"n_components={self.n_components} must be <= n_features={X.shape[1]}")
        res = _randomized_svd(
            X,
            self.n_components,
            n_iter=self.n_iter,
            n_oversamples=self.n_oversamples,
            power_iteration_normalizer=self.power_iteration_normalizer,
            random_state=self.random_state,
            tol=self.tol if self.n_components is None else None,
        )
        _, Vt = _svd_flip(res.U, res.Vt, u_based_decision=False)
        self.components_ = Vt
        self.singular_values_ = res.S
        self.n_components_ = Vt.shape[0]
        self.n_iter_ = res.n_iter
        X_new = _dot(X, Vt.T)
        xp = array_module(X_new)
        self.explained_variance_ = xp.var(X_new, axis=0)
        self.explained_variance_ratio_ = self.explained_variance_ / _column_variances(X).sum()
        if namespace(X) == "dask":  # the fitted attributes in memory (one more pass over X)
            import dask

            self.explained_variance_, self.explained_variance_ratio_ = dask.compute(
                self.explained_variance_, self.explained_variance_ratio_)
        return X_new

    def transform(self, X: Any) -> np.ndarray:
        """Project ``X`` on the components: ``X @ components_.T``."""
        check_is_fitted(self)
        X = self._validate(X, reset=False)
        return _dot(X, self.components_.T)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Map projections back to feature space: ``X @ components_``."""
        check_is_fitted(self)
        X = self._check_projections(X)
        return X @ self.components_


class RandomizedPCA(_BaseRandomizedSVD):
    """PCA by the covariance route or randomized SVD: the role of sklearn's ``PCA``.

    The data are centred implicitly, so sparse input stays sparse (sklearn's PCA densifies
    or refuses it). Parameters mean what they mean in sklearn's ``PCA``.

    GPU: fitted on a cupy array (dense or ``cupyx.scipy.sparse``), it computes on that
    device and keeps its fitted arrays there (cupy); ``transform`` then takes cupy input
    and returns cupy, and host input is a ``TypeError`` (and vice versa).

    Parameters
    ----------
    n_components : int, float in (0, 1) or None, default=None
        An int keeps that many components. A float keeps the smallest number explaining
        at least that fraction of the variance, found by the fixed-accuracy mode
        (relative Frobenius error ``sqrt(1 - n_components)`` of the centred data), without
        computing the others. None keeps ``min(n_samples, n_features)`` components.
    copy : bool, default=True
        Accepted for drop-in compatibility: the input is never modified either way.
    whiten : bool, default=False
        Scale the projections to unit variance.
    svd_solver : {"auto", "covariance_eigh", "randomized"}, default="auto"
        "covariance_eigh" (scikit-learn's): eigenvectors of the centred ``n × n`` Gram
        matrix, formed in one pass over X (dense: blocks of rows centred at their own mean
        and combined exactly, so large column means cost no accuracy; sparse: ``XᵀX - m
        μμᵀ`` without densifying). Exact, and the fastest route for tall data; like every
        covariance method it resolves eigenvalues only down to about ``eps · λ₁``.
        "randomized": randomized SVD of the implicitly centred X. "auto" picks
        "covariance_eigh" when ``n_features <= 1000`` and ``n_samples >= 10 * n_features``
        (scikit-learn's rule), else "randomized". The choice is stored in ``svd_solver_``.
    tol : float, default=0.0
        Accepted for drop-in compatibility (ARPACK's tolerance in sklearn); unused.
    iterated_power : int or "auto", default="auto"
    n_oversamples : int, default=10
    power_iteration_normalizer : {"auto", "QR", "LU", "none"}, default="auto"
    random_state : None, int, Generator or RandomState, default=None

    Attributes
    ----------
    components_ : ndarray of shape (n_components_, n_features)
    explained_variance_, explained_variance_ratio_, singular_values_ : ndarray
    mean_ : ndarray of shape (n_features,)
    n_components_, n_samples_ : int
    noise_variance_ : float
        Mean of the discarded eigenvalues of the covariance (probabilistic PCA).
        ``get_covariance()``, ``get_precision()``, ``score_samples(X)`` and ``score(X)``
        evaluate that Tipping & Bishop model as sklearn's ``PCA`` does, on sparse input
        without densifying it. The model does not depend on ``whiten`` (sklearn's differs
        there, its issue #13898), and a singular model covariance (zero noise variance with
        fewer components than features) is a ``ValueError`` rather than a huge inverse.
    svd_solver_ : str
        The solver used ("covariance_eigh" or "randomized").
    n_iter_ : int
        Power iterations used (0 for "covariance_eigh").
    """

    def __init__(
        self,
        n_components: int | float | None = None,
        *,
        copy: bool = True,
        whiten: bool = False,
        svd_solver: str = "auto",
        tol: float = 0.0,
        iterated_power: int | str = "auto",
        n_oversamples: int = 10,
        power_iteration_normalizer: str = "auto",
        random_state: Any = None,
    ) -> None:
        self.n_components = n_components
        self.copy = copy
        self.whiten = whiten
        self.svd_solver = svd_solver
        self.tol = tol
        self.iterated_power = iterated_power
        self.n_oversamples = n_oversamples
        self.power_iteration_normalizer = power_iteration_normalizer
        self.random_state = random_state

    def _rank_and_tol(self, m: int, n: int) -> tuple[int | None, float | None]:
        k = self.n_components
        if isinstance(k, numbers.Real) and not isinstance(k, numbers.Integral):
            if not 0.0 < k < 1.0:
                raise ValueError(f"n_components as a float must be in (0, 1), got {k}")
            return None, float(np.sqrt(1.0 - k))
        return (min(m, n) if k is None else k), None

    def _solver(self, m: int, n: int) -> str:
        """The solver ``svd_solver`` resolves to for an ``m × n`` input (see the class)."""
        solver = check_choice(self.svd_solver, "svd_solver", ("auto", "randomized", "covariance_eigh"))
        if solver == "auto":
            return "covariance_eigh" if n <= 1000 and m >= 10 * n else "randomized"
        return solver

    def fit_transform(self, X: Any, y: Any = None) -> np.ndarray:
        """Fit on ``X`` and return its (centred, optionally whitened) projection."""
        return self._fit(X, project=True)

    def _fit(self, X: Any, *, project: bool) -> Any:
        """Fit; return the projection of ``X`` when `project` (the covariance route skips
        that product otherwise; the randomized route has it for free)."""
        check_choice(self.svd_solver, "svd_solver", ("auto", "randomized", "covariance_eigh"))
        X = self._validate(X, reset=True, finite=False)
        m, n = X.shape
        self.svd_solver_ = self._solver(m, n)
        if namespace(X) in ("numpy", "scipy.sparse") and not (
            self.svd_solver_ == "covariance_eigh" and _checks_values(X)
        ):  # the host values, unless the route below checks them itself
            assert_all_finite(X.data if sp.issparse(X) else X, estimator_name=type(self).__name__, input_name="X")
        if self.svd_solver_ == "covariance_eigh":
            self._fit_covariance(X)
            return self._project(X) if project else None
        k, tol = self._rank_and_tol(m, n)
        res = _randomized_svd(
            X,
            k,
            n_iter=self.iterated_power,
            n_oversamples=self.n_oversamples,
            power_iteration_normalizer=self.power_iteration_normalizer,
            random_state=self.random_state,
            tol=tol,
            center=True,
        )
        U, Vt = _svd_flip(res.U, res.Vt, u_based_decision=False)
        dof = max(m - 1, 1)
        self.mean_ = res.mean
        self.components_ = Vt
        self.singular_values_ = res.S
        self.n_components_, self.n_samples_, self.n_iter_ = Vt.shape[0], m, res.n_iter
        self.explained_variance_ = res.S**2 / dof
        total_var = float(_column_variances(X).sum()) * m / dof
        self.explained_variance_ratio_ = self.explained_variance_ / total_var
        rest = min(m, n) - self.n_components_
        leftover = total_var - self.explained_variance_.sum()
        self.noise_variance_ = float(max(leftover, 0.0) / rest) if rest > 0 else 0.0
        # U S is the projection of the centred data; whitening rescales it to unit variance.
        X_new = U * (np.sqrt(dof) if self.whiten else res.S)
        return X_new.astype(X.dtype, copy=False)

    def _fit_covariance(self, X: Any) -> None:
        """The covariance route: eigenvectors of the centred Gram matrix (one pass over X)."""
        m, n = X.shape
        xp = array_module(X)
        k = self.n_components
        fraction = k is not None and isinstance(k, numbers.Real) and not isinstance(k, numbers.Integral)
        if fraction and not 0.0 < k < 1.0:
            raise ValueError(f"n_components as a float must be in (0, 1), got {k}")
        if k is None:
            k = min(m, n)
        elif not fraction:
            k = _check_rank(k, m, n)
        # all eigenvalues only where the choice of k needs them
        evals, evecs, mean, total = _covariance_eigh(X, None if fraction else k)
        dof = max(m - 1, 1)
        variance = xp.maximum(evals, 0.0) / dof  # float64
        total /= dof
        ratio = variance / total if total > 0 else xp.zeros_like(variance)
        if fraction:  # the smallest count whose cumulative ratio exceeds k (sklearn's rule)
            k = min(int((xp.cumsum(ratio) <= k).sum()) + 1, n)
        V = evecs[:, :k]
        signs = xp.sign(V[xp.argmax(xp.abs(V), axis=0), xp.arange(k)])  # sklearn's svd_flip on Vt
        Vt = (V * xp.where(signs == 0, 1.0, signs)).T
        dtype = X.dtype
        self.mean_ = mean.astype(dtype)
        self.components_ = xp.ascontiguousarray(Vt.astype(dtype))
        self.explained_variance_ = variance[:k].astype(dtype)
        self.explained_variance_ratio_ = ratio[:k].astype(dtype)
        self.singular_values_ = xp.sqrt(xp.maximum(evals[:k], 0.0)).astype(dtype)
        self.n_components_, self.n_samples_, self.n_iter_ = k, m, 0
        # the mean of the n - k trailing variances (sklearn's), from the total where only the
        # leading ones were computed
        rest = max(total - float(variance[:k].sum()), 0.0) / (n - k) if k < n else 0.0
        self.noise_variance_ = rest if k < min(m, n) else 0.0

    def fit(self, X: Any, y: Any = None) -> Any:
        """Fit the model on ``X`` (ignores ``y``); returns ``self``."""
        self._fit(X, project=False)
        return self

    def transform(self, X: Any) -> np.ndarray:
        """Project centred ``X`` on the components (scaled to unit variance if whiten)."""
        check_is_fitted(self)
        return self._project(self._validate(X, reset=False))

    def _project(self, X: Any) -> Any:
        X_new = _dot(X, self.components_.T) - self.mean_ @ self.components_.T
        if self.whiten:
            X_new /= self._whitening_scale()
        return X_new

    def _whitening_scale(self) -> np.ndarray:
        # Clipped at eps as sklearn does, so rank-deficient data give finite projections.
        xp = array_module(self.explained_variance_)
        scale = xp.sqrt(self.explained_variance_)
        return xp.maximum(scale, np.finfo(scale.dtype).eps)

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Map projections back to feature space (undoing whitening), adding the mean."""
        check_is_fitted(self)
        X = self._check_projections(X)
        if self.whiten:
            X = X * self._whitening_scale()
        return X @ self.components_ + self.mean_

    # Probabilistic PCA (Tipping & Bishop 1999): x ~ N(μ, Cᵀ diag(d) C + σ² I) with C the
    # orthonormal components, σ² = noise_variance_ and d = max(explained_variance_ - σ², 0).
    # The covariance's eigenvalues are d + σ² along the components and σ² elsewhere, so its
    # inverse and log-determinant are written down directly, in O(n_features · k).

    def _ppca_spectrum(self) -> tuple[Any, float]:
        """``(d + σ², σ²)`` in float64: the covariance's eigenvalues along the components and
        in their orthogonal complement."""
        check_is_fitted(self)
        xp = array_module(self.components_)
        noise = float(self.noise_variance_)
        ev = self.explained_variance_.astype(xp.float64)
        return xp.maximum(ev, noise), noise

    def _check_density(self, along: Any, noise: float) -> None:
        n = self.components_.shape[1]
        singular = noise <= 0.0 and (self.n_components_ < n or float(along.min()) <= 0.0)
        if singular:
            raise ValueError(
                "the fitted probabilistic PCA model has a singular covariance (noise_variance_ "
                f"is 0 and the {self.n_components_} components do not span all {n} features "
                "with positive variance), so its precision and log-likelihood are undefined; "
                "fit with fewer n_components, or on data of full rank"
            )

    def get_covariance(self) -> Any:
        """Covariance of the data under the probabilistic PCA model,
        ``components_ᵀ · diag(max(explained_variance_ - σ², 0)) · components_ + σ² I`` with
        ``σ² = noise_variance_``, shape ``(n_features, n_features)``.

        The model does not depend on ``whiten`` (whitening only rescales ``transform``'s
        output). scikit-learn's ``PCA`` scales the components by ``√explained_variance_``
        here when ``whiten=True`` (scikit-learn issue #13898), which gives a different,
        inconsistent covariance; ``whiten=False`` results match it.
        """
        along, noise = self._ppca_spectrum()
        xp = array_module(self.components_)
        C = self.components_.astype(xp.float64)
        cov = (C.T * (along - noise)) @ C
        cov[xp.diag_indices(cov.shape[0])] += noise
        return cov.astype(self.components_.dtype, copy=False)

    def get_precision(self) -> Any:
        """Inverse of :meth:`get_covariance`, formed from the model's spectrum (no matrix
        inversion). Raises ``ValueError`` when that covariance is singular (zero noise
        variance with fewer components than features)."""
        along, noise = self._ppca_spectrum()
        self._check_density(along, noise)
        xp = array_module(self.components_)
        C = self.components_.astype(xp.float64)
        outside = 1.0 / noise if noise > 0.0 else 0.0
        precision = (C.T * (1.0 / along - outside)) @ C
        precision[xp.diag_indices(precision.shape[0])] += outside
        return precision.astype(self.components_.dtype, copy=False)

    def score_samples(self, X: Any) -> Any:
        """Log-likelihood of each sample under the probabilistic PCA model.

        Sparse input stays sparse: the Mahalanobis term splits into the projection on the
        components and the squared norm of the rest, both computed from ``X`` directly.
        """
        along, noise = self._ppca_spectrum()
        self._check_density(along, noise)
        X = self._validate(X, reset=False)
        xp = array_module(self.components_)
        C = self.components_.astype(xp.float64)
        mean = self.mean_.astype(xp.float64)
        proj = _dot(X, C.T) - mean @ C.T  # (x - μ) Cᵀ, float64
        quad = (proj * proj / along).sum(axis=1)
        if noise > 0.0:
            if is_sparse(X):
                # |x - μ|² - |(x - μ) Cᵀ|²: the rest's norm without densifying X.
                sq = xp.asarray(X.multiply(X).sum(axis=1), dtype=xp.float64).ravel()
                centred = sq - 2.0 * _dot(X, mean) + mean @ mean
                rest = xp.maximum(centred - (proj * proj).sum(axis=1), 0.0)
            else:
                resid = (X - mean) - proj @ C
                rest = (resid * resid).sum(axis=1)
            quad = quad + rest / noise
        n = C.shape[1]
        logdet = float(xp.log(along).sum()) + (n - C.shape[0]) * (np.log(noise) if noise > 0 else 0.0)
        out = -0.5 * (quad + n * np.log(2.0 * np.pi) + logdet)
        return out.astype(self.components_.dtype, copy=False)

    def score(self, X: Any, y: Any = None) -> float:
        """Average log-likelihood of the samples under the probabilistic PCA model."""
        return float(self.score_samples(X).mean())
