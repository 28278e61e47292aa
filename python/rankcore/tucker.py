"""Tucker decompositions (HOSVD, ST-HOSVD, HOOI) and the tensor operations around them.

The functions mirror TensorLy's (``tensorly.decomposition.tucker`` / ``partial_tucker``,
``tensorly.tenalg.mode_dot`` / ``multi_mode_dot``, ``tensorly.unfold`` / ``fold``,
``tensorly.tucker_to_tensor`` / ``tucker_to_unfolded`` / ``tucker_to_vec``) with the same
arguments and defaults, so that switching is a change of import; :class:`Tucker`
plays the role of ``tensorly.decomposition.Tucker``. The work runs in Rust on strided views
of the input (C or Fortran order, no copy).

References
----------
L. De Lathauwer, B. De Moor, J. Vandewalle, "A multilinear singular value decomposition"
and "On the best rank-1 and rank-(R1,...,RN) approximation of higher-order tensors",
SIAM J. Matrix Anal. Appl. 21 (2000).
N. Vannieuwenhoven, R. Vandebril, K. Meerbergen, "A new truncation strategy for the higher-
order singular value decomposition", SIAM J. Sci. Comput. 34 (2012).
"""

from __future__ import annotations

import numbers
from collections.abc import Sequence
from typing import Any

import numpy as np

from rankcore import _core
from rankcore._backend import dispatch, namespace
from rankcore._gpu._arrays import array_module
from rankcore._validation import (
    check_array,
    check_choice,
    check_nonneg_float,
    check_positive_int,
    check_random_state_seed,
)

__all__ = [
    "Tucker",
    "TuckerTensor",
    "fold",
    "mode_dot",
    "multi_mode_dot",
    "partial_tucker",
    "tucker",
    "tucker_to_tensor",
    "tucker_to_unfolded",
    "tucker_to_vec",
    "unfold",
]

MAX_ORDER = 8
_SVD_ALIASES = {
    "exact": "exact",
    "truncated_svd": "exact",
    "symeig_svd": "exact",
    "randomized": "randomized",
    "randomized_svd": "randomized",
}
_METHODS = ("hooi", "hosvd", "sthosvd")


# ---------------------------------------------------------------------------------------
# validation helpers


def _check_tensor(
    tensor: Any, name: str = "tensor", *, min_order: int = 1, finite: bool = True,
    where: str = "numpy",
) -> Any:
    """A validated tensor on the host (``where="numpy"``) or the device (``"cupy"``; host
    input there is a ``TypeError``, as device input is on the host)."""
    if where == "cupy":
        from rankcore._gpu.tucker import check_tensor as check_device_tensor

        t = check_device_tensor(tensor, name, ensure_finite=finite)
    else:
        t = check_array(tensor, name=name, ndim=None, ensure_finite=finite)
    if not min_order <= t.ndim <= MAX_ORDER:
        raise ValueError(
            f"{name} must have order (ndim) between {min_order} and {MAX_ORDER}, got {t.ndim}"
        )
    return t


def _check_matrix(m: Any, name: str, dtype: np.dtype, where: str = "numpy", ndim: int = 2) -> Any:
    if where == "cupy":
        from rankcore._gpu.tucker import check_tensor as check_device_tensor

        a = check_device_tensor(m, name, ndim=ndim)
    else:
        a = check_array(m, name=name, ndim=ndim, dtype_policy="float")
    return a.astype(dtype, copy=False)


def _check_mode(mode: Any, ndim: int, name: str = "mode") -> int:
    if not isinstance(mode, numbers.Integral) or isinstance(mode, (bool, np.bool_)):
        raise TypeError(f"{name} must be an integer, got {mode!r}")
    mode = int(mode)
    if not -ndim <= mode < ndim:
        raise ValueError(f"{name} must be in [{-ndim}, {ndim}), got {mode}")
    return mode % ndim


def _common_dtype(t: Any, mats: Sequence[Any]) -> np.dtype:
    if t.dtype == np.float32 and all(
        hasattr(m, "shape") and getattr(m, "dtype", None) == np.float32 for m in mats
    ):
        return np.dtype(np.float32)
    return np.dtype(np.float64)


# ---------------------------------------------------------------------------------------
# unfold / fold / mode products


def unfold(tensor: Any, mode: int) -> np.ndarray:
    """Mode-`mode` unfolding, TensorLy's convention.

    ``unfold(T, n)`` is ``moveaxis(T, n, 0).reshape(T.shape[n], -1)`` in C order: column
    ``j`` enumerates the other indices with the last one varying fastest.

    Parameters
    ----------
    tensor : array-like of order N
    mode : int

    Returns
    -------
    ndarray of shape (tensor.shape[mode], prod of the other sizes)
        A cupy array for cupy input (a copy on the device unless the moved axes already
        lie in C order).
    """
    xp = array_module(tensor)
    t = xp.asarray(tensor)
    mode = _check_mode(mode, t.ndim)
    return xp.reshape(xp.moveaxis(t, mode, 0), (t.shape[mode], -1))


def fold(unfolded_tensor: Any, mode: int, shape: Sequence[int]) -> np.ndarray:
    """Inverse of :func:`unfold`: ``fold(unfold(T, n), n, T.shape) == T``.

    Parameters
    ----------
    unfolded_tensor : array-like of shape (shape[mode], prod of the other sizes)
    mode : int
    shape : sequence of int
        Shape of the folded tensor.
    """
    full = [int(s) for s in shape]
    mode = _check_mode(mode, len(full))
    xp = array_module(unfolded_tensor)
    u = xp.asarray(unfolded_tensor)
    if u.size != int(np.prod(full)) or u.ndim != 2 or u.shape[0] != full[mode]:
        raise ValueError(
            f"unfolded_tensor of shape {u.shape} cannot be folded along mode {mode} "
            f"into shape {tuple(full)}"
        )
    moved = [full[mode]] + full[:mode] + full[mode + 1 :]
    return xp.moveaxis(xp.reshape(u, moved), 0, mode)


def _mode_dot_cpu(t: np.ndarray, mats: list[np.ndarray], modes: list[int]) -> np.ndarray:
    return _core.multi_mode_dot(t, mats, modes)


def _check_skip(skip: Any, n: int, name: str) -> int | None:
    if skip is None:
        return None
    if not isinstance(skip, numbers.Integral) or isinstance(skip, (bool, np.bool_)):
        raise TypeError(f"{name} must be None or an integer, got {skip!r}")
    skip = int(skip)
    if not 0 <= skip < n:
        raise ValueError(
            f"{name} must be None or an index in [0, {n}) of the {n} matrices or vectors, "
            f"got {skip}"
        )
    return skip


def _mode_products(
    t: Any,
    matrix_or_vec_list: Any,
    modes: Any,
    skip: Any,
    transpose: bool,
    *,
    tensor_name: str = "tensor",
    list_name: str = "matrix_or_vec_list",
    item_name: str = "matrix_or_vec_list[{i}]",
    modes_name: str = "modes",
    mode_item_name: str = "modes[{i}]",
    skip_name: str = "skip",
    where: str = "numpy",
) -> Any:
    """Validated body of :func:`multi_mode_dot` (and of the functions built on it), on the
    host (the Rust core) or, with ``where="cupy"``, on the device
    (:func:`rankcore._gpu.tucker.multi_mode_product`; every matrix must be a cupy array too).

    The ``*_name`` arguments are the caller's parameter names, used in error messages.
    """
    t = _check_tensor(t, tensor_name, where=where)
    if isinstance(matrix_or_vec_list, (str, bytes)):
        raise TypeError(f"{list_name} must be a sequence of matrices or vectors")
    try:
        mats = list(matrix_or_vec_list)
    except TypeError as exc:
        raise TypeError(
            f"{list_name} must be a sequence of matrices or vectors, "
            f"got {type(matrix_or_vec_list).__name__}"
        ) from exc
    n = len(mats)
    if modes is None:
        if n > t.ndim:
            raise ValueError(
                f"{list_name} has {n} entries but the tensor has order {t.ndim}; "
                f"pass {modes_name} to say which modes they multiply"
            )
        raw = list(range(n))
    else:
        if isinstance(modes, (numbers.Integral, str, bytes)):
            raise TypeError(f"{modes_name} must be None or a sequence of int, got {modes!r}")
        try:
            raw = list(modes)
        except TypeError as exc:
            raise TypeError(
                f"{modes_name} must be None or a sequence of int, got {modes!r}"
            ) from exc
        if len(raw) != n:
            raise ValueError(
                f"{modes_name} has {len(raw)} entries but {list_name} has {n}; "
                "give one mode per matrix or vector"
            )
    mds = [_check_mode(md, t.ndim, mode_item_name.format(i=i)) for i, md in enumerate(raw)]
    if len(set(mds)) != n:
        raise ValueError(f"{modes_name} must be distinct modes of the tensor, got {raw}")
    skip = _check_skip(skip, n, skip_name)
    # TensorLy applies the products in ascending order of the given modes (a stable sort of
    # the values as given) and `skip` counts in that order; the list index when the modes
    # ascend, as they do by default.
    skipped = None if skip is None else sorted(range(n), key=lambda i: int(raw[i]))[skip]
    keep = [i for i in range(n) if i != skipped]
    dtype = _common_dtype(t, [mats[i] for i in keep])
    t = t.astype(dtype, copy=False)
    arrays, used, vec_modes = [], [], []
    for i in keep:
        md, name = mds[i], item_name.format(i=i)
        m = mats[i]
        nd = np.ndim(m)
        if nd == 1:
            a = _check_matrix(m, name, dtype, where, ndim=1)[None, :]
            vec_modes.append(md)
            if a.shape[1] != t.shape[md]:
                raise ValueError(
                    f"{name} is a vector of length {a.shape[1]}, which does not chain with "
                    f"mode {md} of {tensor_name} (size {t.shape[md]})"
                )
        elif nd == 2:
            a = _check_matrix(m, name, dtype, where)
            j = 0 if transpose else 1
            if a.shape[j] != t.shape[md]:
                raise ValueError(
                    f"{name} has shape {a.shape}, which does not chain with mode {md} of "
                    f"{tensor_name} (size {t.shape[md]}): its {('rows', 'columns')[j]} "
                    f"must number {t.shape[md]}" + (" (transposed)" if transpose else "")
                )
            if transpose:
                a = a.T
        else:
            raise ValueError(f"{name} must be a matrix (2-D) or a vector (1-D), got {nd}-D")
        arrays.append(a)
        used.append(md)
    if where == "cupy":
        from rankcore._gpu.tucker import multi_mode_product

        out = multi_mode_product(t, arrays, used)
    else:
        out = _mode_dot_cpu(t, arrays, used) if arrays else t.copy()
    return out.squeeze(axis=tuple(vec_modes)) if vec_modes else out


def mode_dot(
    tensor: Any, matrix_or_vector: Any, mode: int, transpose: bool = False
) -> np.ndarray:
    """n-mode product ``T ×ₙ M``: ``Y[..., j, ...] = Σₖ M[j, k] T[..., k, ...]``.

    Same arguments and result as ``tensorly.tenalg.mode_dot``.

    Parameters
    ----------
    tensor : array-like of order 1 to 8
        float32 or float64 (kept), any strides; never modified.
    matrix_or_vector : array-like of shape (J, I_mode) or (I_mode,)
        A vector contracts the mode away (the result has one mode fewer).
    mode : int
        Negative values count from the end.
    transpose : bool, default=False
        Use ``Mᵀ`` (then `matrix_or_vector` is I_mode × J). Vectors are unaffected.

    Returns
    -------
    ndarray
        Shape of `tensor` with ``shape[mode]`` replaced by J (or removed for a vector).
        float32 when both inputs are float32, else float64.

    Raises
    ------
    ValueError
        `mode` out of range, or `matrix_or_vector` not 1-D/2-D or of a size that does not
        match ``tensor.shape[mode]``.
    """

    def cpu(t: Any, where: str = "numpy") -> Any:
        return _mode_products(
            t, [matrix_or_vector], [mode], None, transpose,
            item_name="matrix_or_vector", mode_item_name="mode", where=where,
        )

    def gpu(t: Any) -> Any:
        return cpu(t, "cupy")

    def dask(t: Any) -> Any:
        from rankcore._dask.tucker import multi_mode_dot as dask_multi_mode_dot

        return dask_multi_mode_dot(t, [matrix_or_vector], [mode], None, transpose)

    return dispatch(tensor, name="mode_dot", param="tensor", cpu=cpu, gpu=gpu, dask=dask)


def multi_mode_dot(
    tensor: Any,
    matrix_or_vec_list: Sequence[Any],
    modes: Sequence[int] | None = None,
    skip: int | None = None,
    transpose: bool = False,
) -> np.ndarray:
    """Chain of n-mode products ``T ×_{m₁} M₁ ×_{m₂} M₂ …`` in the flop-optimal order.

    Same arguments, defaults and result as ``tensorly.tenalg.multi_mode_dot``. The order of
    the products is chosen by dynamic programming over the subsets of modes (exact for any
    mix of shrinking and growing matrices); a truncation's most-shrinking mode goes first.

    Parameters
    ----------
    tensor : array-like of order 1 to 8
        float32 or float64 (kept), any strides; never modified.
    matrix_or_vec_list : sequence of array-like
        One matrix (J × I_m) or vector (I_m,) per entry of `modes`. A vector contracts its
        mode away; the other modes keep their places (`modes` always refer to the modes of
        `tensor`, before any contraction).
    modes : sequence of int, optional
        Distinct modes of `tensor`, one per entry of `matrix_or_vec_list` (negative values
        count from the end). Default ``range(len(matrix_or_vec_list))``.
    skip : int, optional
        Leave out one matrix or vector: its position when the entries are ordered by
        ascending `modes` (as TensorLy counts), which is its index in
        `matrix_or_vec_list` when `modes` ascend (the default). Must be in
        ``[0, len(matrix_or_vec_list))``. The skipped entry is not read.
    transpose : bool, default=False
        Use the transposes of the matrices (then each is I_m × J). Vectors are unaffected.

    Returns
    -------
    ndarray
        `tensor` with ``shape[m]`` replaced by J for each matrix, and mode m removed for each
        vector. float32 when the tensor and all used matrices are float32, else float64. A
        new array, also when nothing is multiplied.

    Raises
    ------
    ValueError
        `modes` of the wrong length, repeated or out of range; `skip` out of range; an
        entry that is not 1-D/2-D or whose size does not match its mode.
    TypeError
        `modes` or `skip` of the wrong type.
    """

    def cpu(t: Any) -> np.ndarray:
        return _mode_products(t, matrix_or_vec_list, modes, skip, transpose)

    def gpu(t: Any) -> Any:
        return _mode_products(t, matrix_or_vec_list, modes, skip, transpose, where="cupy")

    def dask(t: Any) -> Any:
        from rankcore._dask.tucker import multi_mode_dot as dask_multi_mode_dot

        return dask_multi_mode_dot(t, matrix_or_vec_list, modes, skip, transpose)

    return dispatch(tensor, name="multi_mode_dot", param="tensor", cpu=cpu, gpu=gpu, dask=dask)


# ---------------------------------------------------------------------------------------
# Tucker tensors


class TuckerTensor:
    """A Tucker tensor ``core ×ₖ factors[k]``; unpacks as ``core, factors``.

    Attributes
    ----------
    core : ndarray
        The core; in a partial decomposition its undecomposed modes keep the tensor's sizes.
        A cupy array when the decomposition ran on the device (the factors too); every
        method then stays on the device.
    factors : list of ndarray
        One factor per decomposed mode, ``I_k × r_k`` (orthonormal columns when produced by
        :func:`tucker`).
    modes : list of int
        The modes the factors belong to (all modes for a full decomposition).
    errors : list of float
        Relative error after each iteration (one entry for HOSVD/ST-HOSVD).
    n_iter : int
        HOOI iterations run.
    converged : bool
        Whether HOOI stopped on `tol` before `n_iter_max`.
    """

    def __init__(
        self,
        core: Any,
        factors: Sequence[Any],
        modes: Sequence[int] | None = None,
        *,
        errors: Sequence[float] = (),
        n_iter: int = 0,
        converged: bool = True,
    ) -> None:
        # cupy arrays stay on the device; anything else becomes a NumPy array
        xp = array_module(core)
        self.core = xp.asarray(core)
        self.factors = [array_module(f).asarray(f) for f in factors]
        self.modes = list(range(len(self.factors))) if modes is None else list(modes)
        self.errors = list(errors)
        self.n_iter = int(n_iter)
        self.converged = bool(converged)

    def __iter__(self):
        return iter((self.core, self.factors))

    def __len__(self) -> int:
        return 2

    def __getitem__(self, i: int) -> Any:
        return (self.core, self.factors)[i]

    def __repr__(self) -> str:
        return (
            f"TuckerTensor(shape={self.shape}, rank={self.rank}, modes={self.modes}, "
            f"rel_error={self.rel_error:.3g})"
        )

    @property
    def shape(self) -> tuple[int, ...]:
        """Shape of the full tensor."""
        s = list(self.core.shape)
        for f, m in zip(self.factors, self.modes):
            s[m] = f.shape[0]
        return tuple(s)

    @property
    def rank(self) -> tuple[int, ...]:
        """Shape of the core."""
        return tuple(self.core.shape)

    @property
    def rel_error(self) -> float:
        """Last relative error ``‖T - T̂‖ / ‖T‖`` (from ‖T‖² - ‖core‖², see :func:`tucker`)."""
        return self.errors[-1] if self.errors else float("nan")

    @property
    def n_params(self) -> int:
        """Numbers stored: core plus factors."""
        return int(self.core.size + sum(f.size for f in self.factors))

    @property
    def compression_ratio(self) -> float:
        """Entries of the full tensor per stored number."""
        return float(np.prod(self.shape)) / self.n_params

    def to_tensor(self) -> np.ndarray:
        """The full tensor ``core ×ₖ factors[k]``."""
        return multi_mode_dot(self.core, self.factors, self.modes)

    def to_unfolded(self, mode: int) -> np.ndarray:
        """TensorLy's :func:`unfold` of the full tensor."""
        return unfold(self.to_tensor(), mode)

    def to_vec(self) -> np.ndarray:
        """The full tensor flattened in C order."""
        return self.to_tensor().ravel()

    def norm(self) -> float:
        """Frobenius norm of the full tensor; ``‖core‖`` when the factors are orthonormal
        (no reconstruction), else computed from the full tensor."""
        xp = array_module(self.core)
        ortho = all(
            bool(xp.allclose(f.T @ f, xp.eye(f.shape[1]), atol=1e2 * np.finfo(f.dtype).eps))
            for f in self.factors
        )
        if ortho:
            return float(xp.linalg.norm(self.core.astype(xp.float64).ravel()))
        return float(xp.linalg.norm(self.to_tensor().astype(xp.float64).ravel()))


def _unpack_tucker(tucker_tensor: Any) -> tuple[Any, list[Any], list[int] | None]:
    if isinstance(tucker_tensor, TuckerTensor):
        return tucker_tensor.core, tucker_tensor.factors, tucker_tensor.modes
    if isinstance(tucker_tensor, (np.ndarray, str, bytes)):
        raise TypeError(
            "tucker_tensor must be a TuckerTensor or a (core, factors) pair, "
            f"got {type(tucker_tensor).__name__}"
        )
    try:
        core, factors = tucker_tensor
    except (TypeError, ValueError) as exc:
        raise TypeError("tucker_tensor must be a TuckerTensor or a (core, factors) pair") from exc
    return core, factors, None


def tucker_to_tensor(
    tucker_tensor: Any,
    skip_factor: int | None = None,
    transpose_factors: bool = False,
    modes: Sequence[int] | None = None,
) -> np.ndarray:
    """Full tensor ``core ×ₘ factors[k]`` of a Tucker tensor (TensorLy's ``tucker_to_tensor``,
    same arguments, defaults and result).

    Parameters
    ----------
    tucker_tensor : TuckerTensor or (core, factors)
        A :class:`TuckerTensor`, TensorLy's ``TuckerTensor`` or a ``(core, factors)`` pair;
        never modified.
    skip_factor : int, optional
        Leave out one factor: its position when the factors are ordered by ascending
        `modes` (as TensorLy counts), which is its index in ``factors`` when the modes ascend
        (always for a full decomposition). With ``skip_factor=k`` on a full decomposition
        the result is the tensor projected on every factor but the k-th.
    transpose_factors : bool, default=False
        Multiply by the factors' transposes instead (applied to a full tensor with
        orthonormal factors this gives its core). Combines with `skip_factor`: the other
        factors are transposed.
    modes : sequence of int, optional
        The modes of ``core`` the factors multiply, one per factor (as for
        :func:`multi_mode_dot`); for a partial Tucker tensor from ``partial_tucker``.
        Default: a :class:`TuckerTensor`'s own ``modes``, else ``range(len(factors))``.

    Returns
    -------
    ndarray
        ``core`` with mode m resized to ``factors[k].shape[0]`` (``shape[1]`` when
        transposed) for each factor; float32 when core and factors are float32.

    Raises
    ------
    TypeError
        `tucker_tensor` is not a Tucker tensor or pair; `skip_factor` or `modes` of the
        wrong type.
    ValueError
        `skip_factor` not in ``[0, len(factors))``; `modes` of the wrong length, repeated or
        out of range; a factor whose shape does not match its mode of the core.
    """
    core, factors, own_modes = _unpack_tucker(tucker_tensor)
    if modes is None:
        modes = own_modes

    def cpu(c: Any, where: str = "numpy") -> Any:
        return _mode_products(
            c, factors, modes, skip_factor, transpose_factors,
            tensor_name="tucker_tensor core", list_name="tucker_tensor factors",
            item_name="tucker_tensor factors[{i}]", skip_name="skip_factor", where=where,
        )

    def gpu(c: Any) -> Any:
        return cpu(c, "cupy")

    return dispatch(core, name="tucker_to_tensor", param="tucker_tensor core", cpu=cpu, gpu=gpu)


def tucker_to_unfolded(
    tucker_tensor: Any,
    mode: int = 0,
    skip_factor: int | None = None,
    transpose_factors: bool = False,
) -> np.ndarray:
    """Mode-`mode` unfolding of the full tensor of a Tucker tensor (TensorLy's
    ``tucker_to_unfolded``, same arguments, defaults and result).

    ``unfold(tucker_to_tensor(tucker_tensor, skip_factor, transpose_factors), mode)``.

    Parameters
    ----------
    tucker_tensor : TuckerTensor or (core, factors)
        See :func:`tucker_to_tensor`; a partial :class:`TuckerTensor` uses its ``modes``.
    mode : int, default=0
        Mode of the full tensor to unfold along.
    skip_factor : int, optional
        See :func:`tucker_to_tensor`.
    transpose_factors : bool, default=False
        See :func:`tucker_to_tensor`.

    Returns
    -------
    ndarray of shape (full.shape[mode], prod of the other sizes)

    Raises
    ------
    TypeError, ValueError
        As :func:`tucker_to_tensor`; and for a `mode` that is not a mode of the result.
    """
    full = tucker_to_tensor(
        tucker_tensor, skip_factor=skip_factor, transpose_factors=transpose_factors
    )
    return unfold(full, mode)


def tucker_to_vec(
    tucker_tensor: Any, skip_factor: int | None = None, transpose_factors: bool = False
) -> np.ndarray:
    """The full tensor of a Tucker tensor flattened in C order (TensorLy's ``tucker_to_vec``,
    same arguments, defaults and result).

    Parameters
    ----------
    tucker_tensor : TuckerTensor or (core, factors)
        See :func:`tucker_to_tensor`; a partial :class:`TuckerTensor` uses its ``modes``.
    skip_factor : int, optional
        See :func:`tucker_to_tensor`.
    transpose_factors : bool, default=False
        See :func:`tucker_to_tensor`.

    Returns
    -------
    ndarray of shape (prod of the full tensor's sizes,)

    Raises
    ------
    TypeError, ValueError
        As :func:`tucker_to_tensor`.
    """
    full = tucker_to_tensor(
        tucker_tensor, skip_factor=skip_factor, transpose_factors=transpose_factors
    )
    return full.reshape(-1)


# ---------------------------------------------------------------------------------------
# decomposition


def _resolve_modes(modes: Any, ndim: int) -> list[int]:
    if modes is None:
        return list(range(ndim))
    if isinstance(modes, numbers.Integral):
        modes = [modes]
    out = [_check_mode(m, ndim, "modes") for m in modes]
    if not out:
        raise ValueError("modes must list at least one mode")
    if len(set(out)) != len(out):
        raise ValueError(f"modes must be distinct, got {list(modes)}")
    return out


def _resolve_rank(rank: Any, shape: tuple[int, ...], modes: list[int]) -> list[int] | None:
    if rank is None:
        return None
    if isinstance(rank, numbers.Integral) and not isinstance(rank, (bool, np.bool_)):
        ranks = [int(rank)] * len(modes)
    elif isinstance(rank, (list, tuple, np.ndarray)):
        ranks = list(rank)
        if len(ranks) == len(shape) and len(modes) < len(shape):
            ranks = [ranks[m] for m in modes]
        if len(ranks) != len(modes):
            raise ValueError(
                f"rank must be an int or have one entry per decomposed mode ({len(modes)}), "
                f"got {len(ranks)} entries"
            )
    else:
        raise TypeError(f"rank must be None, an int or a sequence of ints, got {rank!r}")
    out = []
    for r, m in zip(ranks, modes):
        if not isinstance(r, numbers.Integral) or isinstance(r, (bool, np.bool_)):
            raise TypeError(f"rank entries must be integers, got {r!r}")
        if not 1 <= int(r) <= shape[m]:
            raise ValueError(f"rank for mode {m} must be in [1, {shape[m]}], got {int(r)}")
        out.append(int(r))
    return out


def _resolve_init(init: Any, t: Any, modes: list[int], ranks: list[int] | None, where: str = "numpy"):
    """Returns (init name, list of factor arrays or None, ranks)."""
    if isinstance(init, str):
        check_choice(init, "init", ("svd", "random"))
        return init, None, ranks
    try:
        _, factors = init
    except (TypeError, ValueError) as exc:
        raise TypeError('init must be "svd", "random" or a (core, factors) pair') from exc
    factors = list(factors)
    if len(factors) != len(modes):
        raise ValueError(
            f"init must give one factor per decomposed mode ({len(modes)}), got {len(factors)}"
        )
    mats = []
    for i, (f, m) in enumerate(zip(factors, modes)):
        a = _check_matrix(f, f"init factors[{i}]", t.dtype, where)
        if a.shape[0] != t.shape[m]:
            raise ValueError(
                f"init factors[{i}] has {a.shape[0]} rows, mode {m} of the tensor has {t.shape[m]}"
            )
        mats.append(a if where == "cupy" else np.array(a, order="F"))
    given = [a.shape[1] for a in mats]
    if ranks is not None and ranks != given:
        raise ValueError(f"rank {ranks} does not match the init factors' ranks {given}")
    for r, m in zip(given, modes):
        if not 1 <= r <= t.shape[m]:
            raise ValueError(f"init factor for mode {m} has {r} columns; need 1..{t.shape[m]}")
    return "given", mats, given


def _check_mask(mask: Any, t: Any, where: str = "numpy") -> Any:
    if where == "cupy":
        from rankcore._gpu.tucker import check_mask as check_device_mask

        return check_device_mask(mask, t)
    m = np.asarray(mask)
    if m.shape != t.shape:
        raise ValueError(f"mask must have the tensor's shape {t.shape}, got {m.shape}")
    if m.dtype.kind not in "biuf":
        raise TypeError(f"mask must hold booleans or 0/1 numbers, got dtype {m.dtype}")
    if m.dtype.kind == "f" and not np.isfinite(m).all():
        raise ValueError("mask contains NaN or infinity")
    m = m != 0
    if not m.any():
        raise ValueError("mask marks no entry as observed")
    if not np.isfinite(t[m]).all():
        raise ValueError("tensor contains NaN or infinity among the observed (mask=1) entries")
    return m.view(np.uint8)


def tucker(
    tensor: Any,
    rank: Any = None,
    fixed_factors: Sequence[int] | None = None,
    n_iter_max: int = 100,
    init: Any = "svd",
    return_errors: bool = False,
    svd: str = "exact",
    tol: float = 1e-4,
    random_state: Any = None,
    mask: Any = None,
    verbose: bool = False,
    *,
    method: str = "hooi",
    modes: Sequence[int] | None = None,
    n_oversamples: int = 10,
    n_power_iter: int = 2,
    svd_mask_repeats: int = 5,
) -> Any:
    """Tucker decomposition ``T ≈ core ×₁ U₁ ×₂ U₂ … ×_N U_N`` with orthonormal factors.

    The positional parameters are TensorLy's ``tucker``'s, in its order.

    Parameters
    ----------
    tensor : array-like of order 2 to 8
        float32 or float64 (kept; other real dtypes become float64), C or Fortran order or
        any strides, never copied or modified.
    rank : int, sequence of int or None
        Core size per decomposed mode (an int for all), each in ``[1, shape[mode]]``.
        ``None``: ranks are chosen so that the relative error is at most `tol` (below).
    fixed_factors : sequence of int, optional
        Modes whose factor stays as given in ``init=(core, factors)`` (TensorLy's meaning).
    n_iter_max : int, default=100
        HOOI iterations at most.
    init : {"svd", "random"} or (core, factors), default="svd"
        HOOI's start: ST-HOSVD, random orthonormal factors, or given factors (orthonormalised).
    return_errors : bool, default=False
        Also return the list of relative errors (TensorLy's convention).
    svd : {"exact", "randomized"}, default="exact"
        How each mode's subspace is found: the leading eigenvectors of the unfolding's Gram
        matrix (formed without unfolding) or, for large tensors, the randomized range finder
        on the unfolding operator. TensorLy's ``"truncated_svd"`` and ``"randomized_svd"`` are
        accepted as aliases.
    tol : float, default=1e-4
        With a `rank`: HOOI stops when the relative error changes by less than `tol`
        (TensorLy's meaning). With ``rank=None``: the relative error target in (0, 1); ranks
        come from the ST-HOSVD bound ``‖T - T̂‖² ≤ Σₖ (discarded σ² of mode k)``, with the
        budget ``tol²‖T‖²`` split over the modes in processing order (each mode may use an
        even share of what is left, so unused budget carries over). HOOI then refines at
        those ranks with convergence tolerance 1e-4, which can only lower the error. The
        guarantee holds for ``method="hosvd"`` too, and for ``svd="randomized"`` up to the
        randomized error estimate. With ``init="random"`` the ranks are still chosen by
        ST-HOSVD, then HOOI starts from random orthonormal factors at those ranks; it
        usually reaches the same error, but a random start carries no guarantee. The ranks
        come from eigenvalues computed in float64 (also for float32 input), so the target
        is met down to the working precision's rounding floor, about ``1e-5`` in float32
        and ``1e-13`` in float64.
    random_state : None, int, Generator or RandomState
        Seeds ``init="random"`` and the randomized range finder.
    mask : array-like of the tensor's shape, optional
        True/1 for observed entries. Missing entries (which may hold NaN) are imputed with
        the current reconstruction before each of `svd_mask_repeats` initial decompositions
        and each HOOI iteration, as TensorLy does; errors are over observed entries.
    verbose : bool, default=False
        Print the error after each HOOI iteration (to stderr).
    method : {"hooi", "hosvd", "sthosvd"}, default="hooi"
        HOOI (De Lathauwer et al. 2000) from `init`; the plain HOSVD; or the sequentially
        truncated HOSVD (Vannieuwenhoven et al. 2012), which processes `modes` in the given
        order (put the most-shrinking mode first: every later step works on a smaller
        tensor).
    modes : sequence of int, optional
        Decompose only these modes (partial Tucker); the core keeps the others' sizes.
    n_oversamples, n_power_iter : int, default=10, 2
        Randomized range finder settings (``svd="randomized"``).
    svd_mask_repeats : int, default=5
        Imputation rounds of the initial decomposition when `mask` is given.

    Returns
    -------
    TuckerTensor
        Unpacks as ``core, factors``; with `return_errors`, ``(tucker_tensor, errors)``.

    Notes
    -----
    The error is computed as ``sqrt(‖T‖² - ‖core‖²)/‖T‖`` (valid for orthonormal factors,
    no reconstruction), with both norms summed in float64. That difference is only known to
    about ``eps·‖T‖²`` (the core carries the working precision's rounding), so when it falls
    below ``1e4·eps·‖T‖²`` (relative errors below about 0.035 in float32, 1.5e-6 in
    float64) the final error is computed from the residual ``T - core ×ₖ Uₖ`` instead (one
    reconstruction, summed in float64), and is then accurate to a few ulps of ``‖T‖``.
    """

    def cpu(x: Any) -> Any:
        return _tucker_cpu(
            x, rank, fixed_factors, n_iter_max, init, return_errors, svd, tol, random_state,
            mask, verbose, method, modes, n_oversamples, n_power_iter, svd_mask_repeats,
        )

    def dask(x: Any) -> Any:
        return _tucker_dask(
            x, rank, fixed_factors, n_iter_max, init, return_errors, svd, tol, random_state,
            mask, verbose, method, modes, n_oversamples, n_power_iter, svd_mask_repeats,
        )

    def gpu(x: Any) -> Any:
        return _tucker_cpu(
            x, rank, fixed_factors, n_iter_max, init, return_errors, svd, tol, random_state,
            mask, verbose, method, modes, n_oversamples, n_power_iter, svd_mask_repeats,
            where="cupy",
        )

    return dispatch(tensor, name="tucker", param="tensor", cpu=cpu, gpu=gpu, dask=dask)


def _tucker_dask(
    x, rank, fixed_factors, n_iter_max, init, return_errors, svd, tol, random_state, mask,
    verbose, method, modes, n_oversamples, n_power_iter, svd_mask_repeats,
):
    """The dask path of :func:`tucker`: HOSVD, ST-HOSVD and HOOI, exact (Gram) or randomized
    subspaces, the tensor's passes as dask graphs (:mod:`rankcore._dask.tucker`)."""
    from rankcore._dask._arrays import check_array as check_dask_array
    from rankcore._dask.tucker import tucker as dask_tucker

    if mask is not None:
        raise NotImplementedError(
            "tucker: mask is not available on dask input (the imputation rewrites the missing "
            "entries every sweep); call tensor.compute() to use the in-memory path"
        )
    if fixed_factors:
        raise NotImplementedError(
            "tucker: fixed_factors is not available on dask input; call tensor.compute() to "
            "use the in-memory path"
        )
    t = check_dask_array(x, name="tensor", ndim=None)
    if not 2 <= t.ndim <= MAX_ORDER:
        raise ValueError(f"tensor must have order (ndim) between 2 and {MAX_ORDER}, got {t.ndim}")
    check_choice(method, "method", _METHODS)
    check_choice(svd, "svd", tuple(_SVD_ALIASES))
    n_iter_max = check_positive_int(n_iter_max, "n_iter_max", minimum=0, maximum=2**31)
    n_oversamples = check_positive_int(n_oversamples, "n_oversamples", minimum=0)
    n_power_iter = check_positive_int(n_power_iter, "n_power_iter", minimum=0)
    check_positive_int(svd_mask_repeats, "svd_mask_repeats", minimum=0)
    tol = check_nonneg_float(tol, "tol")
    mds = _resolve_modes(modes, t.ndim)
    shape = tuple(int(s) for s in t.shape)
    ranks = _resolve_rank(rank, shape, mds)
    seed = check_random_state_seed(random_state)
    how, init_factors, ranks = _resolve_init(init, t, mds, ranks)
    error_tol = None
    if ranks is None:
        if not 0.0 < tol < 1.0:
            raise ValueError(f"with rank=None, tol is the relative error target in (0, 1); got {tol}")
        error_tol, tol = tol, 1e-4
        ranks = [shape[m] for m in mds]
    randomized = None
    if _SVD_ALIASES[svd] == "randomized":
        randomized = {"n_oversamples": n_oversamples, "n_iter": n_power_iter, "seed": seed}
    start = {"svd": "svd", "random": ("random", seed)}.get(how, init_factors)
    out = dask_tucker(t, modes=mds, ranks=ranks, error_tol=error_tol, method=method, svd=randomized,
                      init=start, n_iter_max=n_iter_max, tol=tol, verbose=bool(verbose))
    tt = TuckerTensor(out["core"], out["factors"], mds, errors=out["errors"], n_iter=out["n_iter"],
                      converged=out["converged"])
    return (tt, tt.errors) if return_errors else tt


def _tucker_cpu(
    x, rank, fixed_factors, n_iter_max, init, return_errors, svd, tol, random_state, mask,
    verbose, method, modes, n_oversamples, n_power_iter, svd_mask_repeats, where="numpy",
):
    """The in-memory body of :func:`tucker`: validation, then the Rust core (host) or
    :func:`rankcore._gpu.tucker.tucker` (``where="cupy"``: every array on the device)."""
    t = _check_tensor(x, min_order=2, finite=mask is None, where=where)
    check_choice(method, "method", _METHODS)
    check_choice(svd, "svd", tuple(_SVD_ALIASES))
    svd = _SVD_ALIASES[svd]
    n_iter_max = check_positive_int(n_iter_max, "n_iter_max", minimum=0, maximum=2**31)
    n_oversamples = check_positive_int(n_oversamples, "n_oversamples", minimum=0)
    n_power_iter = check_positive_int(n_power_iter, "n_power_iter", minimum=0)
    svd_mask_repeats = check_positive_int(svd_mask_repeats, "svd_mask_repeats", minimum=0)
    tol = check_nonneg_float(tol, "tol")
    mds = _resolve_modes(modes, t.ndim)
    ranks = _resolve_rank(rank, t.shape, mds)
    how, init_factors, ranks = _resolve_init(init, t, mds, ranks, where)
    error_tol = None
    if ranks is None:
        if not 0.0 < tol < 1.0:
            raise ValueError(f"with rank=None, tol is the relative error target in (0, 1); got {tol}")
        error_tol, tol = tol, 1e-4
        ranks = [t.shape[m] for m in mds]
    fixed = [False] * len(mds)
    for f in fixed_factors or ():
        m = _check_mode(f, t.ndim, "fixed_factors")
        if m not in mds:
            raise ValueError(f"fixed_factors lists mode {m}, which is not decomposed")
        if how != "given":
            raise ValueError("fixed_factors needs init=(core, factors) holding those factors")
        fixed[mds.index(m)] = True
    m8 = None if mask is None else _check_mask(mask, t, where)
    opts = {
        "method": method, "svd": svd, "seed": check_random_state_seed(random_state),
        "n_oversamples": n_oversamples, "n_power_iter": n_power_iter,
        "init": "random" if how == "random" else "svd", "modes": mds, "ranks": ranks,
        "error_tol": error_tol, "fixed": fixed, "n_iter_max": n_iter_max, "tol": tol,
        "mask_repeats": svd_mask_repeats, "verbose": bool(verbose),
    }
    if where == "cupy":
        from rankcore._gpu.tucker import tucker as device_tucker

        out = device_tucker(t, opts, m8, init_factors)
    else:
        out = _core.tucker_decompose(t, opts, m8, init_factors)
    tt = TuckerTensor(
        out["core"], out["factors"], mds, errors=out["errors"], n_iter=out["n_iter"],
        converged=out["converged"],
    )
    return (tt, tt.errors) if return_errors else tt


def partial_tucker(
    tensor: Any,
    rank: Any = None,
    modes: Sequence[int] | None = None,
    n_iter_max: int = 100,
    init: Any = "svd",
    tol: float = 1e-4,
    svd: str = "exact",
    random_state: Any = None,
    verbose: bool = False,
    mask: Any = None,
    svd_mask_repeats: int = 5,
    **kwargs: Any,
) -> tuple[TuckerTensor, list[float]]:
    """Tucker decomposition of the listed modes only (TensorLy's ``partial_tucker``, same
    positional order and return value ``((core, factors), errors)``). See :func:`tucker`."""
    tt = tucker(
        tensor, rank, n_iter_max=n_iter_max, init=init, svd=svd, tol=tol,
        random_state=random_state, mask=mask, verbose=verbose, modes=modes,
        svd_mask_repeats=svd_mask_repeats, **kwargs,
    )
    return tt, tt.errors


class Tucker:
    """Tucker decomposition as an estimator (TensorLy's ``Tucker`` class).

    Every parameter is :func:`tucker`'s, stored untouched. ``fit(T)`` sets
    ``decomposition_`` (a :class:`TuckerTensor`), ``core_``, ``factors_``, ``errors_``,
    ``n_iter_`` and ``converged_``; ``transform(T)`` projects a tensor of the same shape
    onto the factors (``T ×ₖ Uₖᵀ``, a core) and ``inverse_transform(core)`` maps a core back.
    """

    def __init__(
        self,
        rank: Any = None,
        n_iter_max: int = 100,
        init: Any = "svd",
        return_errors: bool = False,
        svd: str = "exact",
        tol: float = 1e-4,
        fixed_factors: Sequence[int] | None = None,
        random_state: Any = None,
        mask: Any = None,
        verbose: bool = False,
        method: str = "hooi",
        modes: Sequence[int] | None = None,
        n_oversamples: int = 10,
        n_power_iter: int = 2,
        svd_mask_repeats: int = 5,
    ) -> None:
        self.rank = rank
        self.n_iter_max = n_iter_max
        self.init = init
        self.return_errors = return_errors
        self.svd = svd
        self.tol = tol
        self.fixed_factors = fixed_factors
        self.random_state = random_state
        self.mask = mask
        self.verbose = verbose
        self.method = method
        self.modes = modes
        self.n_oversamples = n_oversamples
        self.n_power_iter = n_power_iter
        self.svd_mask_repeats = svd_mask_repeats

    _PARAMS = (
        "rank", "n_iter_max", "init", "svd", "tol", "fixed_factors", "random_state", "mask",
        "verbose", "method", "modes", "n_oversamples", "n_power_iter", "svd_mask_repeats",
    )

    def get_params(self, deep: bool = True) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self._PARAMS + ("return_errors",)}

    def set_params(self, **params: Any) -> Tucker:
        for k, v in params.items():
            if k not in self.get_params():
                raise ValueError(f"invalid parameter {k!r} for Tucker")
            setattr(self, k, v)
        return self

    def __repr__(self) -> str:
        return f"Tucker(rank={self.rank!r}, method={self.method!r}, svd={self.svd!r})"

    def fit(self, tensor: Any, y: Any = None) -> Tucker:
        kwargs = {k: getattr(self, k) for k in self._PARAMS}
        tt = tucker(tensor, **kwargs)
        self.decomposition_ = tt
        self.core_, self.factors_ = tt.core, tt.factors
        self.modes_ = tt.modes
        self.errors_ = tt.errors
        self.n_iter_ = tt.n_iter
        self.converged_ = tt.converged
        return self

    def fit_transform(self, tensor: Any, y: Any = None) -> Any:
        """Fit and return the decomposition (with errors when `return_errors`)."""
        self.fit(tensor)
        return (self.decomposition_, self.errors_) if self.return_errors else self.decomposition_

    def _check_fitted(self) -> None:
        if not hasattr(self, "decomposition_"):
            raise AttributeError("this Tucker instance is not fitted yet; call fit first")

    def transform(self, tensor: Any) -> np.ndarray:
        """Core of `tensor` in the fitted factors: ``T ×ₖ Uₖᵀ`` over the decomposed modes."""
        self._check_fitted()
        return multi_mode_dot(tensor, self.factors_, self.modes_, transpose=True)

    def inverse_transform(self, core: Any) -> np.ndarray:
        """Full tensor from a core: ``core ×ₖ Uₖ``."""
        self._check_fitted()
        return multi_mode_dot(core, self.factors_, self.modes_)
