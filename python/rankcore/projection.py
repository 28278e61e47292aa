"""Random projections whose matrix is defined by the seed and never stored.

:func:`random_projection` is the functional form; :class:`SparseRandomProjection` and
:class:`GaussianRandomProjection` are drop-in replacements for
``sklearn.random_projection``'s estimators (same parameters, attributes and output types),
and :func:`johnson_lindenstrauss_min_dim` is sklearn's function.

The matrix ``R`` (``n_components × n_features``, sklearn's ``components_``) is never
materialised during ``transform``: entry ``R[i, j]`` is a pure function of ``(seed, i, j)``
through the Philox generator (see ``rust/rankcore/src/projection.rs`` for the exact layout),
generated block by block inside the product. So the result does not depend on the thread
count, a ``10**6``-feature input projects without a dense ``d × k`` matrix, and the GPU and
dask paths can reproduce the same matrix from the seed alone. ``components_`` materialises
it on request.

Differences from scikit-learn
-----------------------------
- The random matrix differs (another generator), its distribution is the same.
- ``transform`` returns the input's dtype (float32 in, float32 out) even when it differs
  from the dtype seen in ``fit``; sklearn promotes to the fit dtype in that case.
- On cupy input (dense or ``cupyx.scipy.sparse``) the estimators compute on the GPU and
  keep ``components_`` there (cupy/cupyx); an estimator fitted on one side refuses input
  from the other with a ``TypeError``.
- ``components_`` is computed on first access (and cached; not pickled). Assigning to it
  is allowed, as with sklearn: ``transform`` then multiplies by the assigned matrix.
- ``SparseRandomProjection(dense_output=False).transform`` of sparse input returns a
  ``csr_matrix`` for CSR, CSC and COO input alike (sorted indices, no stored zeros). For CSC
  input sklearn's ``safe_sparse_dot`` returns a ``csc_matrix`` instead (CSR and COO give CSR
  in both). The kernel builds CSR rows directly; giving CSC would cost a full copy of the
  result, so call ``.tocsc()`` when that format is needed. (With an assigned
  ``components_`` the product is sklearn's ``safe_sparse_dot`` and its format is sklearn's.)
"""

from __future__ import annotations

import numbers
import warnings
from typing import Any

import numpy as np
import scipy.linalg
import scipy.sparse as sp
from sklearn.base import BaseEstimator, ClassNamePrefixFeaturesOutMixin, TransformerMixin
from sklearn.exceptions import DataDimensionalityWarning
from sklearn.utils._param_validation import Interval, StrOptions
from sklearn.utils.extmath import safe_sparse_dot
from sklearn.utils.validation import check_is_fitted, validate_data

from rankcore import _core
from rankcore._backend import dispatch, namespace
from rankcore._gpu._arrays import check_array as check_device_array
from rankcore._gpu._arrays import check_same_device, is_sparse, validate_estimator_data
from rankcore._validation import check_array, check_choice, check_random_state_seed

__all__ = [
    "GaussianRandomProjection",
    "SparseRandomProjection",
    "johnson_lindenstrauss_min_dim",
    "random_projection",
]


def johnson_lindenstrauss_min_dim(n_samples: Any, *, eps: Any = 0.1) -> Any:
    """Safe number of components for an ``eps``-embedding of ``n_samples`` points.

    Same formula, broadcasting, result type and errors as
    ``sklearn.random_projection.johnson_lindenstrauss_min_dim``::

        n_components >= 4 log(n_samples) / (eps^2 / 2 - eps^3 / 3)

    Parameters
    ----------
    n_samples : int or array-like of int
        Number of samples, greater than 0.
    eps : float or array-like of float, default=0.1
        Maximum distortion, in (0, 1).

    Returns
    -------
    int or ndarray of int64

    References
    ----------
    S. Dasgupta and A. Gupta, "An elementary proof of a theorem of Johnson and
    Lindenstrauss", Random Structures & Algorithms 22(1), 2003.

    Examples
    --------
    >>> int(johnson_lindenstrauss_min_dim(1e6, eps=0.5))
    663
    """
    for value, name in ((n_samples, "n_samples"), (eps, "eps")):
        arr = np.asarray(value)
        if arr.dtype.kind not in "iuf" or isinstance(value, (bool, np.bool_)):
            raise TypeError(f"{name} must be a real number or an array-like of reals, got {value!r}")
    eps = np.asarray(eps)
    n_samples = np.asarray(n_samples)
    if np.any(eps <= 0.0) or np.any(eps >= 1):
        raise ValueError("The JL bound is defined for eps in ]0, 1[, got %r" % eps)
    if np.any(n_samples <= 0):
        raise ValueError(
            "The JL bound is defined for n_samples greater than zero, got %r" % n_samples
        )
    denominator = (eps**2 / 2) - (eps**3 / 3)
    return (4 * np.log(n_samples) / denominator).astype(np.int64)


def _resolve_density(density: Any, n_features: int) -> float:
    if isinstance(density, str) and density == "auto":
        return float(1 / np.sqrt(n_features))
    if not isinstance(density, numbers.Real) or isinstance(density, (bool, np.bool_)):
        raise TypeError(f"density must be 'auto' or a float in (0, 1], got {density!r}")
    if not 0 < density <= 1:  # also rejects NaN
        raise ValueError(f"density must be 'auto' or a float in (0, 1], got {density!r}")
    return float(density)


def _auto_components(n_samples: int, n_features: int, eps: float) -> int:
    k = int(johnson_lindenstrauss_min_dim(n_samples=n_samples, eps=eps))
    if k <= 0:
        raise ValueError(
            "eps=%f and n_samples=%d lead to a target dimension of %d which is invalid"
            % (eps, n_samples, k)
        )
    if k > n_features:
        raise ValueError(
            "eps=%f and n_samples=%d lead to a target dimension of %d which is larger than "
            "the original space with n_features=%d" % (eps, n_samples, k, n_features)
        )
    return k


def _options(kind: str, n_features: int, n_components: int, density: float, seed: int,
             stream: int | None = None) -> dict:
    return {
        "kind": kind,
        "n_features": int(n_features),
        "n_components": int(n_components),
        "density": float(density),
        "seed": int(seed),
        "stream": stream,
    }


def _csr_from_parts(parts: tuple, shape: tuple[int, int], like_array: bool) -> Any:
    cls = sp.csr_array if like_array else sp.csr_matrix
    out = cls(parts, shape=shape)
    out.has_sorted_indices = True
    return out


def _align_sparse(X: Any) -> Any:
    """sklearn's sparse-interface setting (sparray or spmatrix), where sklearn has one."""
    try:
        from sklearn.utils._sparse import _align_api_if_sparse
    except ImportError:  # older sklearn: no such setting
        return X
    return _align_api_if_sparse(X)


def _project(X: Any, opts: dict, *, dense_output: bool = True) -> Any:
    """``X @ R.T`` for a validated NumPy array or SciPy CSR/CSC matrix."""
    if sp.issparse(X):
        like_array = isinstance(X, sp.sparray)
        if X.format != "csr":
            X = X.tocsr()  # O(nnz): CSC is converted, never densified
        index = np.int64 if max(X.indptr.dtype.itemsize, X.indices.dtype.itemsize) > 4 else np.int32
        out = _core.projection_transform_sparse(
            X.shape,
            np.ascontiguousarray(X.indptr, dtype=index),
            np.ascontiguousarray(X.indices, dtype=index),
            np.ascontiguousarray(X.data),
            opts,
            dense_output,
        )
        if dense_output:
            return out
        return _csr_from_parts(out, (X.shape[0], opts["n_components"]), like_array)
    if not (X.flags.aligned and X.dtype.isnative):
        X = np.array(X, dtype=X.dtype.newbyteorder("="), order="K")
    return _core.projection_transform_dense(X, opts)


def _components(opts: dict, dtype: Any, *, dense: bool = False) -> Any:
    """The matrix ``R`` a set of options defines: dense, or CSR for the sparse families."""
    out = _core.projection_components(opts, np.dtype(dtype).name, dense)
    if isinstance(out, tuple):
        return _csr_from_parts(out, (opts["n_components"], opts["n_features"]), False)
    return out


def random_projection(
    X: Any,
    n_components: int | str,
    *,
    kind: str = "sparse",
    density: float | str = "auto",
    eps: float = 0.1,
    random_state: Any = None,
) -> np.ndarray:
    """Project ``X`` on a random matrix: ``X @ R.T``, a dense array.

    Parameters
    ----------
    X : array-like, scipy.sparse, cupy array or cupyx.scipy.sparse matrix of shape (n_samples, n_features)
        float32 or float64 (kept; other real dtypes become float64), any order or strides
        without a copy; CSR/CSC without densifying. cupy input is projected on its GPU
        (fused kernels for the sparse families, bit-identical to the CPU result; the
        Gaussian matrix generated there blockwise and multiplied by cuBLAS) and gives a
        cupy array. A dask array (numpy or scipy.sparse blocks, any chunking) gives a lazy
        dask array with its row chunks, equal bit for bit to the in-memory result; each
        task regenerates the entries of ``R`` it needs from the seed.
    n_components : int or "auto"
        Target dimension ``k``; "auto" is :func:`johnson_lindenstrauss_min_dim`
        ``(n_samples, eps)`` (an error if it exceeds ``n_features``).
    kind : {"sparse", "gaussian", "achlioptas"}, default="sparse"
        "sparse": entries ``±sqrt(1/density)/sqrt(k)`` with probability ``density/2`` each,
        else 0 (Li, Hastie & Church). "achlioptas": the same with density 1/3.
        "gaussian": ``N(0, 1/k)``. The scaling is scikit-learn's, so
        ``E ||R x||² = ||x||²``.
    density : float in (0, 1] or "auto", default="auto"
        For kind="sparse": "auto" is ``1/sqrt(n_features)``. Must be "auto" for the other
        kinds.
    eps : float in (0, 1), default=0.1
        Distortion for ``n_components="auto"``.
    random_state : None, int, numpy.random.Generator or RandomState
        Seed of the matrix; the same seed gives the same matrix as the estimators'.

    Returns
    -------
    ndarray of shape (n_samples, k), the dtype of ``X`` (cupy for cupy input).

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).standard_normal((5, 1000))
    >>> random_projection(X, 64, random_state=0).shape
    (5, 64)
    """

    def cpu(a: Any) -> np.ndarray:
        # The sparse families check dense input for NaN/inf inside the product.
        in_core = kind != "gaussian" and not sp.issparse(a)
        a = check_array(a, name="X", accept_sparse=True, ensure_finite=not in_core)
        opts = _functional_options(a.shape, n_components, kind, density, eps, random_state)
        return _project(a, opts, dense_output=True)

    def gpu(a: Any) -> Any:
        from rankcore._gpu.projection import project

        # Dense input, sparse families: the kernel rejects NaN/inf while it reads X.
        in_kernel = kind != "gaussian" and not is_sparse(a)
        a = check_device_array(a, name="X", accept_sparse=True, ensure_finite=not in_kernel)
        return project(a, _functional_options(a.shape, n_components, kind, density, eps, random_state))

    def dask(a: Any) -> Any:
        from rankcore._dask._arrays import check_array as check_dask_array
        from rankcore._dask._arrays import is_sparse_blocks
        from rankcore._dask.projection import project

        # As on the CPU: for dense blocks and the sparse families, the kernel checks NaN/inf.
        in_core = kind != "gaussian" and not is_sparse_blocks(a)
        a = check_dask_array(a, name="X", accept_sparse=True, ensure_finite=not in_core)
        return project(a, _functional_options(a.shape, n_components, kind, density, eps, random_state))

    return dispatch(X, name="random_projection", cpu=cpu, sparse=cpu, gpu=gpu, dask=dask)


def _functional_options(shape, n_components, kind, density, eps, random_state) -> dict:
    n, d = shape
    check_choice(kind, "kind", ("sparse", "gaussian", "achlioptas"))
    if isinstance(n_components, str) and n_components == "auto":
        k = _auto_components(n, d, eps)
    elif isinstance(n_components, numbers.Integral) and not isinstance(n_components, (bool, np.bool_)):
        if n_components <= 0:
            raise ValueError(f"n_components must be a positive integer or 'auto', got {n_components}")
        k = int(n_components)
    else:
        raise TypeError(f"n_components must be a positive integer or 'auto', got {n_components!r}")
    if kind != "sparse" and not (isinstance(density, str) and density == "auto"):
        raise ValueError(f"density applies to kind='sparse' only; got density={density!r} with kind={kind!r}")
    dens = {"sparse": None, "achlioptas": 1.0 / 3.0, "gaussian": 1.0}[kind]
    if dens is None:
        dens = _resolve_density(density, d)
    family = "gaussian" if kind == "gaussian" else "sparse"
    return _options(family, d, k, dens, check_random_state_seed(random_state))


class _BaseRandomProjection(ClassNamePrefixFeaturesOutMixin, TransformerMixin, BaseEstimator):
    """Shared fitting, transform and sklearn plumbing of the two estimators."""

    _parameter_constraints: dict = {
        "n_components": [Interval(numbers.Integral, 1, None, closed="left"), StrOptions({"auto"})],
        "eps": [Interval(numbers.Real, 0, None, closed="neither")],
        "compute_inverse_components": ["boolean"],
        # Ours takes seeds up to 2**64 and Generators; check_random_state_seed validates it.
        "random_state": "no_validation",
    }
    _kind = "sparse"

    def _fit_density(self, n_features: int) -> float:
        return 1.0

    def fit(self, X: Any, y: Any = None) -> Any:
        """Draw the matrix's seed and resolve ``n_components`` from the shape of ``X``.

        Only the shape of ``X`` is used (and its values checked). Returns ``self``.
        """
        self._fit(X, ensure_all_finite=True)
        return self

    def fit_transform(self, X: Any, y: Any = None, **fit_params: Any) -> Any:
        """``fit(X).transform(X)`` with one validation of ``X`` (for dense input and the
        sparse projection, the finiteness check runs inside the product: one pass over
        ``X`` in all)."""
        X = self._fit(X, ensure_all_finite=not self._core_checks(X))
        return self._apply(X)

    def _core_checks(self, X: Any) -> bool:
        """Whether the product itself rejects NaN/inf (dense input, sparse families)."""
        dense = not is_sparse(X)
        if namespace(X) == "dask":
            from rankcore._dask._arrays import is_sparse_blocks

            dense = not is_sparse_blocks(X)
        return self._kind == "sparse" and dense and "_components_set" not in self.__dict__

    def _validate(self, X: Any, *, reset: bool, ensure_all_finite: bool) -> Any:
        """sklearn's ``validate_data`` for host input; for cupy input the same checks on the
        device (fitted on one side, used on the other: a ``TypeError``)."""
        on_device = validate_estimator_data(self, X, reset=reset, ensure_finite=ensure_all_finite)
        if on_device is not None:
            return on_device
        if namespace(X) == "dask":  # lazily: the values are checked by the tasks that read them
            from rankcore._dask._arrays import validate_estimator_data as validate_dask_data

            return validate_dask_data(self, X, reset=reset, ensure_finite=ensure_all_finite)
        return validate_data(self, X, accept_sparse=["csr", "csc"], reset=reset,
                             dtype=[np.float64, np.float32], ensure_all_finite=ensure_all_finite)

    def _fit(self, X: Any, *, ensure_all_finite: bool) -> Any:
        self._validate_params()
        X = self._validate(X, reset=True, ensure_all_finite=ensure_all_finite)
        n_samples, n_features = X.shape
        if self.n_components == "auto":
            self.n_components_ = _auto_components(n_samples, n_features, self.eps)
        else:
            if self.n_components > n_features:
                warnings.warn(
                    "The number of components is higher than the number of features: "
                    f"n_features < n_components ({n_features} < {self.n_components}). "
                    "The dimensionality of the problem will not be reduced.",
                    DataDimensionalityWarning,
                )
            self.n_components_ = int(self.n_components)
        density = self._fit_density(n_features)
        self._seed = check_random_state_seed(self.random_state)
        self._opts = _options(self._kind, n_features, self.n_components_, density, self._seed)
        self._fit_dtype = X.dtype
        self.__dict__.pop("_components_cache", None)
        self.__dict__.pop("_components_set", None)
        if self.compute_inverse_components:
            self.inverse_components_ = self._compute_inverse_components()
        return X

    @property
    def components_(self) -> Any:
        """The random matrix, ``(n_components_, n_features_in_)``: CSR for the sparse
        projection (dense when ``density_ == 1``, as sklearn), dense for the Gaussian one.
        Equal to what ``transform`` multiplies by. Built on first access."""
        if "_components_set" in self.__dict__:
            return self._components_set
        check_is_fitted(self)
        cached = self.__dict__.get("_components_cache")
        if cached is None:
            dense = self._opts["density"] == 1.0
            if self.__dict__.get("_on_device", False):
                import cupy

                from rankcore._gpu.projection import components

                cached = components(self._opts, self._fit_dtype, cupy, dense=dense)
            else:
                cached = _components(self._opts, self._fit_dtype, dense=dense)
            self._components_cache = cached
        return cached

    @components_.setter
    def components_(self, value: Any) -> None:
        self._components_set = value

    def __getstate__(self) -> dict:
        state = super().__getstate__()
        state.pop("_components_cache", None)
        return state

    @property
    def _n_features_out(self) -> int:
        return self.n_components_

    def _compute_inverse_components(self) -> Any:
        components = self.components_
        if namespace(components) == "cupy":
            import cupy

            dense = components.toarray() if is_sparse(components) else components
            return cupy.linalg.pinv(dense)
        if sp.issparse(components):
            components = components.toarray()
        return scipy.linalg.pinv(components, check_finite=False)

    def _dense_output(self) -> bool:
        return True

    def transform(self, X: Any) -> Any:
        """Project ``X``: ``X @ components_.T`` in the dtype of ``X`` (see the class for the
        output type)."""
        check_is_fitted(self)
        X = self._validate(X, reset=False, ensure_all_finite=not self._core_checks(X))
        return self._apply(X)

    def _apply(self, X: Any) -> Any:
        dense_output = self._dense_output()
        if namespace(X) == "dask":  # a dask array, row blocks projected by the same kernels
            from rankcore._dask.projection import project as project_dask

            return project_dask(X, self._opts, dense_output=dense_output,
                                components=self.__dict__.get("_components_set"))
        if namespace(X) == "cupy":
            from rankcore._gpu.projection import project

            if "_components_set" in self.__dict__:
                Y = X @ self._components_set.T
                return Y.toarray() if dense_output and hasattr(Y, "toarray") else Y
            return project(X, self._opts, dense_output=dense_output)
        if "_components_set" in self.__dict__:
            return _align_sparse(safe_sparse_dot(X, self._components_set.T, dense_output=dense_output))
        return _align_sparse(_project(X, self._opts, dense_output=dense_output))

    def inverse_transform(self, X: Any) -> np.ndarray:
        """Map projections back: ``X @ pinv(components_).T`` (pseudo-inverse computed here
        unless ``compute_inverse_components``); dense even for sparse ``X``."""
        check_is_fitted(self)
        inv = self.inverse_components_ if self.compute_inverse_components else self._compute_inverse_components()
        if namespace(X) == "cupy" or namespace(inv) == "cupy":
            check_same_device("inverse_transform", namespace(inv), ("X", X))
            X = check_device_array(X, name="X", accept_sparse=True)
            return X @ inv.T.astype(X.dtype)
        X = check_array(X, name="X", accept_sparse=True)
        if X.dtype != np.float32:
            X = X.astype(np.float64, copy=False)
        return _align_sparse(X @ inv.T)

    def __sklearn_tags__(self):  # noqa: D105
        tags = super().__sklearn_tags__()
        tags.input_tags.sparse = True
        tags.transformer_tags.preserves_dtype = ["float64", "float32"]
        return tags


class GaussianRandomProjection(_BaseRandomProjection):
    """Reduce dimensionality with a Gaussian random matrix, ``N(0, 1/n_components)``.

    Drop-in for ``sklearn.random_projection.GaussianRandomProjection``.

    Parameters
    ----------
    n_components : int or "auto", default="auto"
        Target dimension; "auto" uses :func:`johnson_lindenstrauss_min_dim` with ``eps``.
    eps : float, default=0.1
        Embedding quality for ``n_components="auto"``, in (0, 1).
    compute_inverse_components : bool, default=False
        Compute the pseudo-inverse of ``components_`` in ``fit``.
    random_state : None, int, Generator or RandomState, default=None
        Seed of the matrix (drawn once in ``fit``).

    Attributes
    ----------
    n_components_ : int
    components_ : ndarray of shape (n_components_, n_features_in_)
        Built on first access; equal to what ``transform`` uses.
    inverse_components_ : ndarray of shape (n_features_in_, n_components_)
        Only with ``compute_inverse_components``.
    n_features_in_ : int
    feature_names_in_ : ndarray of str, when fitted on a DataFrame with string columns.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).random((25, 3000))
    >>> GaussianRandomProjection(random_state=0).fit_transform(X).shape
    (25, 2759)
    """

    _kind = "gaussian"

    def __init__(self, n_components: int | str = "auto", *, eps: float = 0.1,
                 compute_inverse_components: bool = False, random_state: Any = None) -> None:
        self.n_components = n_components
        self.eps = eps
        self.compute_inverse_components = compute_inverse_components
        self.random_state = random_state



class SparseRandomProjection(_BaseRandomProjection):
    """Reduce dimensionality with a sparse random matrix (Achlioptas; Li, Hastie & Church).

    With ``s = 1 / density`` the entries are ``-sqrt(s)/sqrt(n_components)`` and
    ``+sqrt(s)/sqrt(n_components)`` with probability ``1/(2s)`` each, else 0. Drop-in for
    ``sklearn.random_projection.SparseRandomProjection``.

    Parameters
    ----------
    n_components : int or "auto", default="auto"
    density : float in (0, 1] or "auto", default="auto"
        "auto" is ``1/sqrt(n_features)`` (Li et al.); 1/3 gives Achlioptas' matrix.
    eps : float, default=0.1
    dense_output : bool, default=False
        For sparse input: return a dense array instead of a ``csr_matrix`` (dense input always
        gives a dense array, as in sklearn). The sparse result is CSR also for CSC input,
        where sklearn returns CSC (see the module notes; ``.tocsc()`` converts).
    compute_inverse_components : bool, default=False
    random_state : None, int, Generator or RandomState, default=None

    Attributes
    ----------
    n_components_ : int
    components_ : scipy.sparse CSR matrix of shape (n_components_, n_features_in_)
        Dense when ``density_ == 1`` (as sklearn). Built on first access.
    inverse_components_ : ndarray of shape (n_features_in_, n_components_)
    density_ : float
    n_features_in_ : int
    feature_names_in_ : ndarray of str

    References
    ----------
    D. Achlioptas, "Database-friendly random projections", PODS 2001.
    P. Li, T. Hastie and K. W. Church, "Very sparse random projections", KDD 2006.

    Examples
    --------
    >>> import numpy as np
    >>> X = np.random.default_rng(0).random((25, 3000))
    >>> SparseRandomProjection(random_state=0).fit_transform(X).shape
    (25, 2759)
    """

    _parameter_constraints: dict = {
        **_BaseRandomProjection._parameter_constraints,
        "density": [Interval(numbers.Real, 0.0, 1.0, closed="right"), StrOptions({"auto"})],
        "dense_output": ["boolean"],
    }

    def __init__(self, n_components: int | str = "auto", *, density: float | str = "auto",
                 eps: float = 0.1, dense_output: bool = False,
                 compute_inverse_components: bool = False, random_state: Any = None) -> None:
        self.n_components = n_components
        self.density = density
        self.eps = eps
        self.dense_output = dense_output
        self.compute_inverse_components = compute_inverse_components
        self.random_state = random_state

    def _fit_density(self, n_features: int) -> float:
        self.density_ = _resolve_density(self.density, n_features)
        return self.density_

    def _dense_output(self) -> bool:
        # A CSR result for sparse input unless dense_output, or density 1 (sklearn's
        # components_ are then dense, and so is its product).
        return bool(self.dense_output) or self.density_ == 1.0
