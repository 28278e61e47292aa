"""Shared input checks: arrays (dtype, shape, finiteness), ``random_state`` and scalars.

Conventions (see ``design.md``): a bad value or shape raises ``ValueError``, an
unsupported type raises ``TypeError``, and every message names the parameter. Inputs are
never written to, and arrays are copied only when the Rust core could not read them as
they are.
"""

from __future__ import annotations

import numbers
from collections.abc import Collection
from typing import Any

import numpy as np

from rankcore._backend import namespace

__all__ = [
    "check_array",
    "check_choice",
    "check_nonneg_float",
    "check_positive_int",
    "check_random_state_seed",
]

_POLICIES = {"float": None, "float64": np.dtype(np.float64), "float32": np.dtype(np.float32)}
_BOOLS = (bool, np.bool_)


def _is_int(value: Any) -> bool:
    return isinstance(value, numbers.Integral) and not isinstance(value, _BOOLS)


def _is_real(value: Any) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, _BOOLS)


def _target_dtype(dtype: np.dtype, name: str, policy: str) -> np.dtype:
    """The float dtype an array of `dtype` is returned in (object arrays: float64)."""
    if dtype.kind == "c":
        # ValueError with this wording is what scikit-learn's check_complex_data expects.
        raise ValueError(f"Complex data not supported: {name} has dtype {dtype}")
    if dtype.kind not in "biufO":
        raise TypeError(f"{name} must hold real numbers, got an array of dtype {dtype}")
    if _POLICIES[policy] is not None:
        return _POLICIES[policy]
    if dtype.kind == "f" and dtype.itemsize in (4, 8):
        return dtype.newbyteorder("=")
    return np.dtype(np.float64)


def _native_aligned(a: np.ndarray) -> np.ndarray:
    """`a` itself when aligned and in native byte order, else a copy that is (same layout)."""
    if a.flags.aligned and a.dtype.isnative:
        return a
    return np.array(a, dtype=a.dtype.newbyteorder("="), order="K", copy=True)


def _from_object(X: np.ndarray, name: str) -> np.ndarray:
    """Convert an object array holding numbers to float64, as scikit-learn does."""
    if any(isinstance(v, (str, bytes)) for v in X.flat):
        raise TypeError(f"{name} must hold numbers, got an object array containing strings")
    try:
        return X.astype(np.float64)
    except TypeError as exc:  # keeps numpy's "argument must be a string or a real number"
        raise TypeError(f"{name} must hold numbers: {exc}") from exc
    except (ValueError, OverflowError) as exc:
        raise ValueError(f"{name} must hold numbers: {exc}") from exc


def _check_ndim(shape: tuple[int, ...], name: str, ndim: int | None) -> None:
    got = len(shape)
    if ndim is None and got == 0:
        raise ValueError(f"{name} must be an array, got a scalar")
    if ndim is None or got == ndim:
        return
    what = "a scalar" if got == 0 else f"a {got}-D array of shape {shape}"
    msg = f"{name} must be a {ndim}-D array, got {what}"
    if ndim == 2 and got == 1:
        msg += (
            f". Reshape your data with {name}.reshape(-1, 1) if it has a single feature "
            f"or {name}.reshape(1, -1) if it holds a single sample"
        )
    raise ValueError(msg)


def _check_not_empty(shape: tuple[int, ...], name: str) -> None:
    if all(shape):
        return
    if len(shape) == 2:
        what = "sample(s)" if shape[0] == 0 else "feature(s)"
        count = shape[0] if shape[0] == 0 else shape[1]
        raise ValueError(
            f"{name} is empty: found array with {count} {what} (shape={shape}) "
            "while a minimum of 1 is required."
        )
    raise ValueError(f"{name} is empty (shape={shape}); every dimension must be at least 1")


def _check_finite(a: np.ndarray, name: str) -> None:
    if a.size <= 4096:  # small: the direct test costs less than the sum's setup
        if np.isfinite(a).all():
            return
    else:
        with np.errstate(all="ignore"):
            if np.isfinite(a.sum()) or np.isfinite(a).all():  # the sum: a cheap first test
                return
    what = "NaN" if np.isnan(a).any() else "infinity"
    raise ValueError(f"{name} contains {what}; only finite values are supported")


def _check_compressed(X: Any, name: str) -> None:
    """Check a CSR/CSC structure, so that the core never indexes out of bounds."""
    n_major, n_minor = X.shape if X.format == "csr" else X.shape[::-1]
    indptr, indices = X.indptr, X.indices
    ok = (
        indptr.ndim == 1
        and len(indptr) == n_major + 1
        and indptr[0] == 0
        and indptr[-1] == len(indices) == len(X.data)
        and bool(np.all(indptr[1:] >= indptr[:-1]))
        and (len(indices) == 0 or (indices.min() >= 0 and indices.max() < n_minor))
    )
    if not ok:
        raise ValueError(f"{name} is not a valid {X.format.upper()} matrix: {X!r}")


def _check_sparse(X: Any, name: str, policy: str, ensure_finite: bool) -> Any:
    if X.format not in ("csr", "csc"):
        X = X.tocsr()
    target = _target_dtype(X.dtype, name, policy)
    if target != X.dtype:
        X = X.astype(target)
    parts = (X.data, X.indices, X.indptr)
    fixed = tuple(_native_aligned(a) for a in parts)
    if any(p is not f for p, f in zip(parts, fixed)):
        X = type(X)(fixed, shape=X.shape)
    _check_compressed(X, name)
    if ensure_finite:
        _check_finite(X.data, name)
    return X


def check_array(
    X: Any,
    *,
    name: str = "X",
    ndim: int | None = 2,
    dtype_policy: str = "float",
    accept_sparse: bool = False,
    allow_empty: bool = False,
    ensure_finite: bool = True,
) -> Any:
    """Validate a host (NumPy or SciPy sparse) array and return it in a form the core reads.

    float32 and float64 arrays come back as they are: no copy, whatever the order or
    strides (C, Fortran, sliced, negative or zero strides, read-only). A copy is made only
    when the dtype changes, or when the data is unaligned or not in native byte order.

    Parameters
    ----------
    X : array-like or scipy.sparse matrix/array
        The input. Lists, tuples and other array-likes go through :func:`numpy.asarray`.
    name : str, default="X"
        Parameter name used in error messages.
    ndim : int or None, default=2
        Required number of dimensions; None accepts any number but 0.
    dtype_policy : {"float", "float64", "float32"}, default="float"
        ``"float"``: float32 and float64 are kept; every other real dtype (integers,
        bools, float16, longdouble) and object arrays holding numbers become float64, as
        in scikit-learn. ``"float64"`` / ``"float32"``: always return that dtype.
    accept_sparse : bool, default=False
        Accept SciPy sparse matrices and arrays. CSR and CSC are returned as they are
        (index arrays int32 or int64 as given); other formats are converted to CSR,
        which copies. Integer or bool data is converted to float64 (a copy, whose index
        dtype SciPy chooses).
    allow_empty : bool, default=False
        Accept arrays with a dimension of length 0.
    ensure_finite : bool, default=True
        Reject NaN and infinity (for sparse input, among the stored values).

    Returns
    -------
    numpy.ndarray or scipy.sparse matrix/array
        `X` itself when nothing needs converting (callers must not write to it), else a
        converted copy as described above.

    Raises
    ------
    TypeError
        Unsupported type: sparse input when `accept_sparse` is False, strings, dates or
        other non-numeric data, CuPy or Dask arrays (route them with
        :func:`rankcore._backend.dispatch` first; they are never copied to the host here).
    ValueError
        Complex data ("Complex data not supported", as scikit-learn), wrong number of
        dimensions, empty input, NaN or infinity.
    """
    if dtype_policy not in _POLICIES:
        raise ValueError(f"dtype_policy must be one of {sorted(_POLICIES)}, got {dtype_policy!r}")
    ns = namespace(X)
    if ns in ("cupy", "dask"):
        raise TypeError(
            f"{name} is a {ns} array; this check handles NumPy and SciPy input only, and "
            "device or lazy arrays are never copied to host memory implicitly"
        )
    if ns == "scipy.sparse":
        if not accept_sparse:
            raise TypeError(
                f"{name} is a scipy.sparse {type(X).__name__}, but sparse input is not "
                f"supported here; convert it with {name}.toarray()"
            )
        _check_ndim(X.shape, name, ndim)
        if not allow_empty:
            _check_not_empty(X.shape, name)
        return _check_sparse(X, name, dtype_policy, ensure_finite)

    if type(X) is not np.ndarray:  # lists, subclasses (memmap, matrix), pandas, ...
        try:
            X = np.asarray(X)
        except (ValueError, TypeError) as exc:  # e.g. ragged nested lists
            raise ValueError(f"{name} could not be converted to an array: {exc}") from exc
    target = _target_dtype(X.dtype, name, dtype_policy)
    _check_ndim(X.shape, name, ndim)
    if not allow_empty:
        _check_not_empty(X.shape, name)
    if X.dtype.kind == "O":
        X = _from_object(X, name)
    if X.dtype != target:
        X = X.astype(target)  # order="K": the layout is kept
    X = _native_aligned(X)
    if ensure_finite:
        _check_finite(X, name)
    return X


def check_random_state_seed(random_state: Any) -> int:
    """Turn a ``random_state`` argument into one 64-bit seed.

    Parameters
    ----------
    random_state : None, int, numpy.random.Generator or numpy.random.RandomState
        None draws the seed from NumPy's global RandomState, as scikit-learn does, so
        :func:`numpy.random.seed` makes unseeded calls repeatable. An int in
        ``[0, 2**64)`` (Python or NumPy integer, not bool) is the seed. A Generator or
        RandomState gives one 64-bit draw; this advances it, as scikit-learn's use of a
        passed generator does, so two calls with the same generator give two seeds.

    Returns
    -------
    int
        A seed in ``[0, 2**64)``.

    Raises
    ------
    TypeError
        For any other type, bools included.
    ValueError
        For an int outside ``[0, 2**64)``.
    """
    if random_state is None:
        return int(np.random.randint(0, 2**64, dtype=np.uint64))
    if _is_int(random_state):
        seed = int(random_state)
        if not 0 <= seed < 2**64:
            raise ValueError(f"random_state must be in [0, 2**64), got {seed}")
        return seed
    if isinstance(random_state, np.random.Generator):
        return int(random_state.integers(0, 2**64, dtype=np.uint64))
    if isinstance(random_state, np.random.RandomState):
        return int(random_state.randint(0, 2**64, dtype=np.uint64))
    raise TypeError(
        "random_state must be None, an int, a numpy.random.Generator or a "
        f"numpy.random.RandomState, got {type(random_state).__name__}"
    )


def _range_text(minimum: Any, maximum: Any, *, strict: bool = False) -> str:
    low = f"{'>' if strict else '>='} {minimum}"
    return low if maximum is None else f"{low} and <= {maximum}"


def check_positive_int(
    value: Any,
    name: str,
    *,
    minimum: int = 1,
    maximum: int | None = None,
    allow_none: bool = False,
) -> int | None:
    """Check an integer parameter such as ``n_components`` or ``max_iter``.

    Parameters
    ----------
    value : object
        The value passed by the user.
    name : str
        Parameter name used in error messages.
    minimum : int, default=1
        Smallest allowed value.
    maximum : int or None, default=None
        Largest allowed value, or no upper bound.
    allow_none : bool, default=False
        Accept None (and return it).

    Returns
    -------
    int or None
        `value` as a Python int (or None).

    Raises
    ------
    TypeError
        If `value` is not a Python or NumPy integer (bools and floats such as 3.0 are
        rejected, as scikit-learn's parameter validation does).
    ValueError
        If `value` is outside ``[minimum, maximum]``.
    """
    if value is None and allow_none:
        return None
    bounds = _range_text(minimum, maximum)
    if not _is_int(value):
        none = "None or " if allow_none else ""
        raise TypeError(f"{name} must be {none}an integer {bounds}, got {value!r}")
    value = int(value)
    if value < minimum or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be an integer {bounds}, got {value}")
    return value


def check_nonneg_float(
    value: Any,
    name: str,
    *,
    minimum: float = 0.0,
    maximum: float | None = None,
    strict: bool = False,
    allow_none: bool = False,
) -> float | None:
    """Check a real parameter such as ``tol`` or ``alpha``.

    Parameters
    ----------
    value : object
        The value passed by the user: a Python or NumPy int or float, not a bool.
    name : str
        Parameter name used in error messages.
    minimum : float, default=0.0
        Smallest allowed value.
    maximum : float or None, default=None
        Largest allowed value, or no upper bound.
    strict : bool, default=False
        Require ``value > minimum`` instead of ``>=``.
    allow_none : bool, default=False
        Accept None (and return it).

    Returns
    -------
    float or None
        `value` as a Python float (or None).

    Raises
    ------
    TypeError
        If `value` is not a real number.
    ValueError
        If `value` is NaN, infinite or outside the allowed range.
    """
    if value is None and allow_none:
        return None
    bounds = _range_text(minimum, maximum, strict=strict)
    if not _is_real(value):
        none = "None or " if allow_none else ""
        raise TypeError(f"{name} must be {none}a real number {bounds}, got {value!r}")
    value = float(value)
    too_low = value <= minimum if strict else value < minimum
    if not np.isfinite(value) or too_low or (maximum is not None and value > maximum):
        raise ValueError(f"{name} must be a finite real number {bounds}, got {value}")
    return value


def check_choice(value: Any, name: str, choices: Collection[Any]) -> Any:
    """Check that `value` is one of `choices` (compared with ``==``) and return it.

    Raises
    ------
    ValueError
        Listing the allowed choices.
    """

    def same(c: Any) -> bool:
        try:  # bools match only bools (True is not 1 here); arrays do not compare
            return isinstance(value, _BOOLS) == isinstance(c, _BOOLS) and bool(value == c)
        except (TypeError, ValueError):
            return False

    if not any(same(c) for c in choices):
        allowed = ", ".join(repr(c) for c in choices)
        raise ValueError(f"{name} must be one of {allowed}; got {value!r}")
    return value
