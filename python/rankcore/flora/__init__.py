"""FLoRA adapters: the fine-tuning change of an N-d weight as a Tucker tensor.

FLoRA (Si et al., "FLoRA: Low-Rank Core Space for N-dimension", arXiv 2405.14739) writes the
change of a weight ``W`` (a linear layer's out × in, a convolution's out × in/groups × kh × kw,
…) as

    ΔW = scale · G ×₁ U₁ ×₂ U₂ … ×_N U_N,

a small core ``G`` (r₁ × … × r_N) times one factor ``Uₖ`` (Iₖ × rₖ) per mode of the weight,
keeping the weight's topology instead of flattening it to a matrix as LoRA must.

Our reading of the paper and its reference code (github.com/SJTU-DeepVisionLab/FLoRA,
``FLoRALayer``): the core starts at zero and every factor is drawn from
``kaiming_normal_(a=sqrt(3))`` on its (Iₖ, rₖ) shape, i.e. N(0, 1/(2 rₖ)), so the initial
change is exactly zero while every gradient reaching the core is non-zero; ``scale`` multiplies
ΔW (default 1.0 there and here). The reference orders the modes (in, out, kernel…) and
transposes at the end; we index factors in the weight's own order (out, in, kernel…), which
is the same parametrisation.

What this module adds to the reference: merging for inference (:func:`merge` /
:func:`unmerge`), grouped convolutions (mode 1 is ``in_channels/groups``, the weight's real
shape), embeddings, real per-mode rank checks (``1 <= rₖ <= Iₖ``), gradients without autograd
(:func:`delta_vjp`), and :func:`compress` of an existing full fine-tuning change.
``rankcore.flora.torch`` (importable when PyTorch is) wraps ``nn.Linear``, ``nn.Conv1d/2d/3d``
(grouped too) and ``nn.Embedding``; it is device-agnostic (CPU or CUDA tensors).

cupy arrays: :func:`delta`, :func:`delta_vjp`, :func:`merge`/:func:`unmerge` and
:func:`compress` run on the device (:mod:`rankcore._gpu.flora`, the same algorithms as the
Rust core, as cuBLAS GEMMs) and return cupy arrays; ``init(..., like=cupy_array)`` creates
the adapter there. Host and device arrays are never mixed (``TypeError``).
"""

from __future__ import annotations

import numbers
from dataclasses import dataclass
from typing import Any, NamedTuple, Sequence

import numpy as np

from rankcore import _core
from rankcore._backend import dispatch, namespace
from rankcore._gpu._arrays import array_module
from rankcore._validation import check_array, check_nonneg_float, check_random_state_seed
from rankcore.tucker import MAX_ORDER, tucker

__all__ = [
    "FloraCompression",
    "FloraParams",
    "chain_order",
    "compress",
    "delta",
    "delta_vjp",
    "init",
    "merge",
    "unmerge",
]


class FloraParams(NamedTuple):
    """A FLoRA adapter: ``ΔW = scale · core ×ₖ factors[k]``."""

    core: np.ndarray
    factors: list[np.ndarray]
    scale: float


def _check_ranks(ranks: Any, shape: Sequence[int], name: str = "ranks") -> list[int]:
    if isinstance(ranks, numbers.Integral) and not isinstance(ranks, (bool, np.bool_)):
        ranks = [int(ranks)] * len(shape)
    try:
        ranks = list(ranks)
    except TypeError as exc:
        raise TypeError(f"{name} must be an int or a sequence of ints, got {ranks!r}") from exc
    if len(ranks) != len(shape):
        raise ValueError(
            f"{name} must have one entry per mode of the weight ({len(shape)}), got {len(ranks)}"
        )
    out = []
    for k, (r, s) in enumerate(zip(ranks, shape)):
        if not isinstance(r, numbers.Integral) or isinstance(r, (bool, np.bool_)):
            raise TypeError(f"{name}[{k}] must be an integer, got {r!r}")
        if not 1 <= int(r) <= s:
            raise ValueError(f"{name}[{k}] must be in [1, {s}] (the weight's size), got {int(r)}")
        out.append(int(r))
    return out


def _check_shape(weight_shape: Any) -> list[int]:
    try:
        shape = [int(s) for s in weight_shape]
    except TypeError as exc:
        raise TypeError(f"weight_shape must be a sequence of ints, got {weight_shape!r}") from exc
    if not 1 <= len(shape) <= MAX_ORDER or any(s < 1 for s in shape):
        raise ValueError(
            f"weight_shape must have 1 to {MAX_ORDER} positive sizes, got {tuple(shape)}"
        )
    return shape


def init(
    weight_shape: Sequence[int],
    ranks: Any,
    *,
    scale: float = 1.0,
    random_state: Any = None,
    dtype: Any = np.float32,
    like: Any = None,
) -> FloraParams:
    """A FLoRA adapter initialised as the paper does: zero core, N(0, 1/(2rₖ)) factors.

    Parameters
    ----------
    weight_shape : sequence of int
        Shape of the adapted weight, e.g. (out, in) or (out, in/groups, kh, kw).
    ranks : int or sequence of int
        Core size per mode, ``1 <= rₖ <= weight_shape[k]``.
    scale : float, default=1.0
        Multiplies ΔW.
    random_state : None, int, Generator or RandomState
        Seeds the factors (Philox stream k for mode k, so each factor is reproducible alone).
    dtype : float32 or float64, default=float32
    like : array, optional
        A cupy array: create the adapter on its device (cupy arrays, the factors drawn
        there by the Philox kernel: the CPU's numbers within 2 ulp). Default: NumPy.

    Returns
    -------
    FloraParams
        ``(core, factors, scale)``; ``delta(*params)`` is exactly zero.
    """
    shape = _check_shape(weight_shape)
    r = _check_ranks(ranks, shape)
    scale = _check_scale(scale)
    dtype = np.dtype(dtype)
    if dtype not in (np.float32, np.float64):
        raise TypeError(f"dtype must be float32 or float64, got {dtype}")
    seed = check_random_state_seed(random_state)
    if like is not None and namespace(like) == "cupy":
        from rankcore._gpu.flora import init_factors

        xp = array_module(like)
        return FloraParams(xp.zeros(r, dtype=dtype), init_factors(xp, shape, r, seed, dtype), scale)
    factors = [
        (_core.random_matrix("normal", seed, k, 0, 0, s, rk) / np.sqrt(2.0 * rk)).astype(dtype)
        for k, (s, rk) in enumerate(zip(shape, r))
    ]
    return FloraParams(np.zeros(r, dtype=dtype), factors, scale)


def _check_scale(scale: Any) -> float:
    if not isinstance(scale, numbers.Real) or isinstance(scale, (bool, np.bool_)):
        raise TypeError(f"scale must be a real number, got {scale!r}")
    if not np.isfinite(scale):
        raise ValueError(f"scale must be finite, got {scale}")
    return float(scale)


def _check_nd(a: Any, name: str, ndim: int | None, where: str, finite: bool = True) -> Any:
    """``check_array`` on the host, its device twin for ``where="cupy"`` (host input there,
    or device input on the host, is a ``TypeError``). ``finite=False`` leaves the values to
    the caller (the Rust core checks them for :func:`delta` and :func:`delta_vjp`)."""
    if where == "cupy":
        from rankcore._gpu.tucker import check_tensor

        return check_tensor(a, name, ndim=ndim)
    return check_array(a, name=name, ndim=ndim, ensure_finite=finite)


def _check_adapter(
    core: Any, factors: Any, where: str = "numpy", finite: bool = True
) -> tuple[Any, list[Any]]:
    c = _check_nd(core, "core", None, where, finite)
    if c.ndim > MAX_ORDER:
        raise ValueError(f"core must have order at most {MAX_ORDER}, got {c.ndim}")
    try:
        fs = list(factors)
    except TypeError as exc:
        raise TypeError("factors must be a sequence of matrices") from exc
    if len(fs) != c.ndim:
        raise ValueError(
            f"factors must hold one matrix per mode of core ({c.ndim}), got {len(fs)}"
        )
    dtype = c.dtype
    mats = []
    for k, f in enumerate(fs):
        a = _check_nd(f, f"factors[{k}]", 2, where, finite)
        if a.dtype != dtype:
            dtype = np.dtype(np.float64)
        if a.shape[1] != c.shape[k]:
            raise ValueError(
                f"factors[{k}] has shape {a.shape}, which does not chain with core's mode {k} "
                f"(size {c.shape[k]})"
            )
        mats.append(a)
    return c.astype(dtype, copy=False), [m.astype(dtype, copy=False) for m in mats]


def delta(core: Any, factors: Sequence[Any], scale: float = 1.0) -> np.ndarray:
    """``ΔW = scale · core ×ₖ factors[k]``, in the flop-optimal mode order.

    Parameters
    ----------
    core : array of shape (r₁, …, r_N)
    factors : sequence of N arrays, factors[k] of shape (Iₖ, rₖ)
    scale : float, default=1.0

    Returns
    -------
    ndarray of shape (I₁, …, I_N), in the common dtype (float32 only if all are float32).
    """

    def cpu(c: Any) -> np.ndarray:
        c, fs = _check_adapter(c, factors, finite=False)  # values checked by the core
        return _core.flora_delta(c, fs, _check_scale(scale))

    def gpu(c: Any) -> Any:
        from rankcore._gpu import flora as device_flora

        c, fs = _check_adapter(c, factors, "cupy")
        return device_flora.delta(c, fs, _check_scale(scale))

    return dispatch(core, name="flora.delta", param="core", cpu=cpu, gpu=gpu)


def delta_vjp(
    core: Any, factors: Sequence[Any], grad_delta: Any, scale: float = 1.0
) -> tuple[np.ndarray, list[np.ndarray]]:
    """Gradients of a loss with respect to the core and the factors, given ``∂L/∂ΔW``.

    ``∂L/∂G = scale · R ×ₖ Uₖᵀ`` and ``∂L/∂Uₖ = scale · (R ×_{m≠k} U_mᵀ)₍ₖ₎ G₍ₖ₎ᵀ`` with
    ``R = grad_delta``. The leave-one-out products share work through a split of the modes
    (the most-shrinking mode against the rest, recursively): ``R`` is read twice, not N
    times, and nothing larger than ΔW is formed.

    Parameters
    ----------
    core, factors, scale
        As in :func:`delta`.
    grad_delta : array of ΔW's shape

    Returns
    -------
    (grad_core, grad_factors)
    """

    def cpu(c: Any, where: str = "numpy") -> tuple[Any, list[Any]]:
        c, fs = _check_adapter(c, factors, where, finite=False)  # values checked by the core
        g = _check_nd(grad_delta, "grad_delta", None, where, finite=False).astype(c.dtype, copy=False)
        want = tuple(f.shape[0] for f in fs)
        if tuple(g.shape) != want:
            raise ValueError(f"grad_delta must have ΔW's shape {want}, got {tuple(g.shape)}")
        if where == "cupy":
            from rankcore._gpu import flora as device_flora

            return device_flora.delta_vjp(c, fs, g, _check_scale(scale))
        gc, gf = _core.flora_delta_vjp(c, fs, g, _check_scale(scale))
        return gc, list(gf)

    def gpu(c: Any) -> tuple[Any, list[Any]]:
        return cpu(c, "cupy")

    return dispatch(core, name="flora.delta_vjp", param="core", cpu=cpu, gpu=gpu)


def _apply(sign: float, name: str, weight, core, factors, scale, out):
    from rankcore._gpu._arrays import check_same_device

    try:
        factors = list(factors)
    except TypeError as exc:
        raise TypeError("factors must be a sequence of matrices") from exc
    adapter = [("core", core)] + [(f"factors[{k}]", f) for k, f in enumerate(factors)]

    def cpu(w: Any) -> np.ndarray:
        check_same_device(name, "numpy", *adapter)
        w = check_array(w, name="weight", ndim=None)
        d = delta(core, factors, scale)
        if d.shape != w.shape:
            raise ValueError(f"ΔW has shape {d.shape}, weight has shape {w.shape}")
        if out is None:
            return w + sign * d.astype(w.dtype, copy=False)
        if not isinstance(out, np.ndarray) or out.shape != w.shape:
            raise ValueError(f"out must be a numpy array of the weight's shape {w.shape}")
        if not out.flags.writeable:
            raise ValueError("out is read-only")
        np.add(w, sign * d, out=out, casting="same_kind")
        return out

    def gpu(w: Any) -> Any:
        check_same_device(name, "cupy", *adapter)
        w = _check_nd(w, "weight", None, "cupy")
        d = delta(core, factors, scale)
        if tuple(d.shape) != tuple(w.shape):
            raise ValueError(f"ΔW has shape {tuple(d.shape)}, weight has shape {tuple(w.shape)}")
        xp = array_module(w)
        if out is None:
            return w + w.dtype.type(sign) * d.astype(w.dtype, copy=False)
        check_same_device(name, "cupy", ("out", out))
        if tuple(out.shape) != tuple(w.shape):
            raise ValueError(f"out must be a cupy array of the weight's shape {tuple(w.shape)}")
        xp.add(w, w.dtype.type(sign) * d.astype(w.dtype, copy=False), out=out)
        return out

    return dispatch(weight, name=name, param="weight", cpu=cpu, gpu=gpu)


def merge(
    weight: Any, core: Any, factors: Sequence[Any], scale: float = 1.0, *, out: Any = None
) -> np.ndarray:
    """``weight + ΔW`` for inference. `weight` is never modified unless ``out=weight``.

    Parameters
    ----------
    weight : array of ΔW's shape
    core, factors, scale
        As in :func:`delta`.
    out : ndarray, optional
        Where to write the result (may be `weight` itself, for an in-place merge).

    Returns
    -------
    ndarray in weight's dtype (`out` when given).
    """
    return _apply(1.0, "flora.merge", weight, core, factors, scale, out)


def unmerge(
    weight: Any, core: Any, factors: Sequence[Any], scale: float = 1.0, *, out: Any = None
) -> np.ndarray:
    """``weight - ΔW``: undoes :func:`merge` (to rounding). Same arguments as :func:`merge`."""
    return _apply(-1.0, "flora.unmerge", weight, core, factors, scale, out)


@dataclass(frozen=True)
class FloraCompression:
    """The FLoRA form of a full fine-tuning change, beside LoRA at the same budget.

    ``delta(core, factors, scale)`` approximates the change with relative Frobenius error
    `rel_error` using `n_params` numbers. `lora_rank` is the largest LoRA rank on the
    flattened (I₁ × I₂·…·I_N) matrix whose ``lora_rank·(I₁ + I₂·…·I_N)`` parameters fit that
    budget, and `lora_rel_error` the error of the best such matrix (truncated SVD). LoRA's
    rank is at least 1, so a FLoRA budget below ``I₁ + I₂·…·I_N`` gives LoRA more parameters
    than FLoRA (`lora_n_params` > `n_params`): `lora_over_budget` flags that case, where the
    comparison favours LoRA.
    """

    core: np.ndarray
    factors: list[np.ndarray]
    scale: float
    ranks: tuple[int, ...]
    rel_error: float
    n_params: int
    lora_rank: int
    lora_rel_error: float
    lora_n_params: int

    @property
    def lora_over_budget(self) -> bool:
        """True when even rank-1 LoRA needs more parameters than this FLoRA form."""
        return self.lora_n_params > self.n_params

    def __iter__(self):
        return iter((self.core, self.factors, self.scale))


def compress(
    delta_w: Any,
    ranks: Any = None,
    tol: float | None = None,
    *,
    scale: float = 1.0,
    n_iter_max: int = 100,
    random_state: Any = None,
) -> FloraCompression:
    """The best FLoRA form of an existing change ``delta_w`` (HOOI), and LoRA beside it.

    Parameters
    ----------
    delta_w : array of order 2 to 8
        The change (e.g. fine-tuned minus pre-trained weight).
    ranks : int or sequence of int, optional
        Core size per mode. With `tol` too, the ranks are chosen from `tol` (and ``ranks`` is
        ignored); one of the two is required.
    tol : float in (0, 1), optional
        Relative error target (ST-HOSVD bound; HOOI then only improves it).
    scale : float, default=1.0
        The adapter's scale: the core is divided by it, so ``delta(core, factors, scale)``
        approximates `delta_w`.
    n_iter_max : int, default=100
        HOOI iterations at most (HOOI stops earlier when the relative error changes by less
        than 1e-7 between iterations).
    random_state : None, int, Generator or RandomState
        Unused by the exact method; kept for reproducible extensions.

    Returns
    -------
    FloraCompression
    """
    scale = _check_scale(scale)
    if scale == 0.0:
        raise ValueError("scale must be non-zero to express a change")

    def cpu(d: Any, where: str = "numpy") -> FloraCompression:
        d = _check_nd(d, "delta_w", None, where)
        if not 2 <= d.ndim <= MAX_ORDER:
            raise ValueError(f"delta_w must have order 2 to {MAX_ORDER}, got {d.ndim}")
        if tol is not None:
            t = check_nonneg_float(tol, "tol", strict=True, maximum=1.0)
            tt = tucker(d, None, tol=t, n_iter_max=n_iter_max, random_state=random_state)
        elif ranks is not None:
            r = _check_ranks(ranks, d.shape)
            tt = tucker(d, r, tol=1e-7, n_iter_max=n_iter_max, random_state=random_state)
        else:
            raise ValueError("compress needs ranks or tol")
        core = tt.core / tt.core.dtype.type(scale)
        n_params = tt.n_params
        m, n = d.shape[0], d.size // d.shape[0]
        lora_rank = max(1, min(n_params // (m + n), min(m, n)))
        # best rank-r matrix error: the partial Tucker (HOSVD) of the flattened matrix in its
        # smaller mode is exactly the truncated SVD, computed by our core
        flat = d.reshape(m, n)
        small = 0 if m <= n else 1
        lora = tucker(flat, [lora_rank], modes=[small], method="hosvd")
        lora_err = lora.rel_error
        return FloraCompression(
            core, tt.factors, scale, tt.rank, tt.rel_error, n_params, lora_rank, lora_err,
            lora_rank * (m + n),
        )

    def gpu(d: Any) -> FloraCompression:
        return cpu(d, "cupy")

    return dispatch(delta_w, name="flora.compress", param="delta_w", cpu=cpu, gpu=gpu)


def chain_order(shape: Sequence[int], mats: Sequence[tuple[int, int]]) -> list[int]:
    """Flop-optimal order of the mode products ``T ×ₖ Mₖ`` (Mₖ of shape (Jₖ, shape[k])).

    Dynamic programming over subsets of modes (the tensor's size after a subset does not
    depend on the order). `mats` lists ``(mode, J)``; returns indices into `mats`. The Rust
    core uses the same rule; this copy serves the PyTorch wrappers.
    """
    k = len(mats)
    full = 1 << k

    def size(subset: int) -> float:
        s = float(np.prod([float(x) for x in shape]))
        for i, (mode, j) in enumerate(mats):
            if subset >> i & 1:
                s = s / shape[mode] * j
        return s

    cost = [np.inf] * full
    prev = [-1] * full
    cost[0] = 0.0
    for subset in range(full):
        if not np.isfinite(cost[subset]):
            continue
        sz = size(subset)
        for i, (_, j) in enumerate(mats):
            if subset >> i & 1:
                continue
            nxt = subset | 1 << i
            c = cost[subset] + sz * j
            if c <= cost[nxt]:  # ties: the last product on the lowest mode (as in the core)
                cost[nxt], prev[nxt] = c, i
    order, s = [], full - 1
    while s:
        order.append(prev[s])
        s &= ~(1 << prev[s])
    return order[::-1]
