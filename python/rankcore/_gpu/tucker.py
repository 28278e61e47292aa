"""Tucker decompositions and mode products on the device, written once for cupy and NumPy.

The same algorithms as ``rust/rankcore/src/tucker`` (HOSVD, ST-HOSVD with the error-target
rank rule, HOOI, the mask's imputation rounds, the randomized range finder per mode), step
for step, so CPU and GPU answers agree to rounding:

- a mode product ``T ×ₙ M`` is one GEMM on a reshape of the C-ordered tensor: ``M · T₍ₙ₎``
  for the first mode, ``T · Mᵀ`` for the last, and a strided batched GEMM (cuBLAS
  ``gemmStridedBatched`` / ``gemm(Batched)``) over the leading modes otherwise; chains are
  applied in the flop-optimal order (:func:`rankcore.flora.chain_order`, the Rust rule);
- the Gram matrix ``T₍ₙ₎T₍ₙ₎ᵀ`` of an unfolding is summed in float64 (float32 input widened
  block by block, as the CPU does) over column blocks of at most ``_BLOCK`` entries: a
  reshape when the mode is first or last, a bounded copy of one block otherwise, never the
  whole unfolding; its eigenvectors come from ``xp.linalg.eigh`` (cuSOLVER ``syevd``), or
  the unfolding's SVD (``gesvd``) when it is at most twice as wide as tall (then it is
  small);
- ``svd="randomized"`` runs :mod:`rankcore._gpu.svd`'s range finder (LU normaliser) and
  randQB_EI on the unfolding seen only through products, with the Rust per-mode seeds, so
  both devices draw the same Gaussian test matrices.

Every function takes validated arrays (see :mod:`rankcore.tucker` for the checks) and
returns arrays of the input's namespace and dtype; a handful of scalars (norms, chosen
ranks, errors) are read back for control flow, nothing larger.
"""

from __future__ import annotations

import math
import sys
from typing import Any, Sequence

import numpy as np

from rankcore._gpu._arrays import array_module
from rankcore._gpu._ops import ops_for

__all__ = [
    "check_mask",
    "check_tensor",
    "gram",
    "mode_product",
    "multi_mode_product",
    "reconstruct",
    "sq_norm",
    "tucker",
]

#: Entries per block of a Gram matrix's column blocks and of the norms' partial sums.
_BLOCK = 1 << 24

_GOLDEN = 0x9E3779B97F4A7C15
_MASK64 = (1 << 64) - 1


def check_tensor(a: Any, name: str, *, ndim: int | None = None, ensure_finite: bool = True) -> Any:
    """Validate an N-d device array where it lives: the checks and errors of
    :func:`rankcore._validation.check_array` (float32/float64 kept, other real dtypes
    become float64, complex a ``ValueError``, NaN/inf rejected when `ensure_finite`), and a
    ``TypeError`` for host input (never copied to the device behind the caller's back)."""
    from rankcore._gpu._arrays import _check_finite, _target_dtype, check_same_device
    from rankcore._validation import _check_ndim, _check_not_empty

    check_same_device("rankcore", "cupy", (name, a))
    if not hasattr(a, "shape") or not hasattr(a, "dtype"):
        raise TypeError(f"{name} must be an array, got {type(a).__name__}")
    shape = tuple(a.shape)
    _check_ndim(shape, name, ndim)
    _check_not_empty(shape, name)
    target = _target_dtype(np.dtype(a.dtype), name)
    if a.dtype != target:
        a = a.astype(target)
    if ensure_finite:
        _check_finite(array_module(a), a, name)
    return a


def check_mask(mask: Any, t: Any) -> Any:
    """``rankcore.tucker._check_mask`` on the device: a boolean array of `t`'s shape."""
    from rankcore._gpu._arrays import check_same_device

    check_same_device("tucker", "cupy", ("mask", mask))
    xp = array_module(t)
    if tuple(mask.shape) != tuple(t.shape):
        raise ValueError(f"mask must have the tensor's shape {tuple(t.shape)}, got {tuple(mask.shape)}")
    if np.dtype(mask.dtype).kind not in "biuf":
        raise TypeError(f"mask must hold booleans or 0/1 numbers, got dtype {mask.dtype}")
    if np.dtype(mask.dtype).kind == "f" and not bool(xp.isfinite(mask).all()):
        raise ValueError("mask contains NaN or infinity")
    m = mask != 0
    if not bool(m.any()):
        raise ValueError("mask marks no entry as observed")
    if not bool(xp.where(m, xp.isfinite(t), True).all()):
        raise ValueError("tensor contains NaN or infinity among the observed (mask=1) entries")
    return m


def _prod(xs: Sequence[int]) -> int:
    return int(math.prod(int(x) for x in xs))


def _split(shape: Sequence[int], n: int) -> tuple[int, int, int]:
    return _prod(shape[:n]), int(shape[n]), _prod(shape[n + 1:])


def sq_norm(t: Any) -> float:
    """``‖t‖²_F`` summed in float64 (blocks of ``_BLOCK`` entries, one scalar read)."""
    xp = array_module(t)
    flat = xp.ascontiguousarray(t).reshape(-1)
    total = xp.zeros((), dtype=xp.float64)
    for s in range(0, flat.size, _BLOCK):
        total = total + xp.sum(xp.square(flat[s:s + _BLOCK], dtype=xp.float64))
    return float(total)


def mode_product(t: Any, M: Any, n: int) -> Any:
    """``T ×ₙ M`` (``M`` is ``J × Iₙ``): ``t`` with ``shape[n]`` replaced by ``J``, C order.

    One GEMM on a reshape of the C-ordered tensor: ``M · T₍ₙ₎`` for ``n = 0``, ``T · Mᵀ``
    for the last mode, a batched GEMM over the modes before ``n`` otherwise.
    """
    xp = array_module(t)
    t = xp.ascontiguousarray(t)
    shape = tuple(t.shape)
    P, I, Q = _split(shape, n)
    J = int(M.shape[0])
    out_shape = shape[:n] + (J,) + shape[n + 1:]
    if t.size == 0 or J == 0:
        return xp.zeros(out_shape, dtype=t.dtype)
    if P == 1:
        out = M @ t.reshape(I, Q)
    elif Q == 1:
        out = t.reshape(P, I) @ M.T
    else:
        out = xp.matmul(xp.ascontiguousarray(M), t.reshape(P, I, Q))
    return out.reshape(out_shape)


def multi_mode_product(t: Any, mats: Sequence[Any], modes: Sequence[int]) -> Any:
    """``T ×_{m₁} M₁ ×_{m₂} M₂ …`` (distinct modes) in the flop-optimal order; a C-ordered
    copy of `t` when `mats` is empty."""
    from rankcore.flora import chain_order

    xp = array_module(t)
    if not mats:
        return xp.array(t, order="C", copy=True)
    order = chain_order(tuple(t.shape), [(int(m), int(M.shape[0])) for m, M in zip(modes, mats)])
    cur = t
    for i in order:
        cur = mode_product(cur, mats[i], int(modes[i]))
    return cur


def reconstruct(core: Any, modes: Sequence[int], factors: Sequence[Any]) -> Any:
    """``core ×ₖ Uₖ``."""
    return multi_mode_product(core, list(factors), list(modes))


def _project(x: Any, modes: Sequence[int], factors: Sequence[Any], skip: int | None = None) -> Any:
    """``X ×ₖ Uₖᵀ`` over the listed modes, leaving out entry `skip`."""
    keep = [i for i in range(len(modes)) if i != skip]
    return multi_mode_product(x, [factors[i].T for i in keep], [modes[i] for i in keep])


def gram(t: Any, n: int, dtype: Any = np.float64) -> Any:
    """The Gram matrix ``T₍ₙ₎ T₍ₙ₎ᵀ`` (``Iₙ × Iₙ``) accumulated in `dtype`, without forming
    the unfolding: column blocks of at most ``_BLOCK`` entries, each a reshape of the tensor
    (first or last mode) or one bounded copy (a middle mode; widened to `dtype` in the same
    pass)."""
    xp = array_module(t)
    t = xp.ascontiguousarray(t)
    P, I, Q = _split(t.shape, n)
    dtype = np.dtype(dtype)
    G = xp.zeros((I, I), dtype=dtype)
    if t.size == 0:
        return G
    if P == 1 or Q == 1:
        A = t.reshape(I, Q) if P == 1 else t.reshape(P, I).T  # I × (columns)
        cols = A.shape[1]
        step = max(1, _BLOCK // max(I, 1))
        for s in range(0, cols, step):
            B = A[:, s:s + step]
            if B.dtype != dtype:
                B = B.astype(dtype)
            G += B @ B.T
        return G
    t3 = t.reshape(P, I, Q)
    step = max(1, _BLOCK // (I * Q))
    for s in range(0, P, step):
        blk = t3[s:s + step]
        B = xp.ascontiguousarray(blk.transpose(1, 0, 2), dtype=dtype).reshape(I, -1)
        G += B @ B.T
    return G


def _unfold(t: Any, n: int) -> Any:
    """TensorLy's unfolding, materialised (only for small tensors)."""
    xp = array_module(t)
    return xp.ascontiguousarray(xp.moveaxis(t, n, 0)).reshape(t.shape[n], -1)


def _orthonormal(A: Any) -> Any:
    """Orthonormal basis of the columns of `A` (Householder QR, cuSOLVER ``geqrf``)."""
    return array_module(A).linalg.qr(A, mode="reduced")[0]


def _exact_subspace(t: Any, n: int, r: int) -> tuple[Any, Any]:
    """The leading `r` left singular vectors of ``T₍ₙ₎`` (in `t`'s dtype) and all its
    squared singular values (float64, non-increasing, length ``Iₙ``), as
    ``tucker::decomp::exact_subspace``: the f64 SVD of the unfolding when it is at most
    twice as wide as tall, else the eigenvectors of its f64 Gram matrix."""
    xp = array_module(t)
    I = int(t.shape[n])
    cols = t.size // I
    if cols <= 2 * I:
        U, s, _ = xp.linalg.svd(_unfold(t, n).astype(xp.float64), full_matrices=False)
        sq = s * s
    else:
        w, V = xp.linalg.eigh(gram(t, n))
        U = V[:, ::-1]
        sq = xp.maximum(w[::-1], 0.0)  # round-off negatives clipped, as on the CPU
    if sq.shape[0] < I:
        sq = xp.concatenate([sq, xp.zeros(I - sq.shape[0], dtype=xp.float64)])
    k = min(r, U.shape[1])
    out = xp.empty((I, r), dtype=t.dtype)
    out[:, :k] = U[:, :k]
    if k < r:  # more rank asked than the unfolding has columns: complete at random
        extra = ops_for(xp).normal(I, r, 0, 0, 0x5EED, 7, t.dtype)
        extra[:, :k] = out[:, :k]
        out[:, k:] = _orthonormal(extra)[:, k:]
    return out, sq


def _mode_seed(seed: int, mode: int) -> int:
    return (seed ^ (((mode + 1) * _GOLDEN) & _MASK64)) & _MASK64


class _Unfolding:
    """``T₍ₙ₎`` (``Iₙ × Π_{m≠n} I_m``, TensorLy's column order) or its transpose, seen
    only through products (the operator interface of :mod:`rankcore._gpu.svd`). With
    ``T`` reshaped to ``(P, Iₙ, Q)``: ``T₍ₙ₎ X = Σ_p T[p] X[p]`` (batched GEMMs, summed
    over blocks of ``p``) and ``(T₍ₙ₎ᵀ Y)[p] = T[p]ᵀ Y``."""

    def __init__(self, t: Any, n: int) -> None:
        xp = array_module(t)
        self.xp = xp
        self._t = xp.ascontiguousarray(t)
        self._P, self._I, self._Q = _split(t.shape, n)
        self.mean = None
        self.transposed = False

    @property
    def shape(self) -> tuple[int, int]:
        m, c = self._I, self._P * self._Q
        return (c, m) if self.transposed else (m, c)

    def t(self) -> "_Unfolding":
        out = _Unfolding.__new__(_Unfolding)
        out.__dict__.update(self.__dict__, transposed=not self.transposed)
        return out

    def _mul(self, X: Any) -> Any:  # T₍ₙ₎ X, X of shape (P·Q, l)
        xp, P, I, Q = self.xp, self._P, self._I, self._Q
        l = X.shape[1]
        if P == 1:
            return self._t.reshape(I, Q) @ X
        if Q == 1:
            return self._t.reshape(P, I).T @ X
        t3, X3 = self._t.reshape(P, I, Q), X.reshape(P, Q, l)
        out = xp.zeros((I, l), dtype=X.dtype)
        step = max(1, _BLOCK // max(I * l, 1))
        for s in range(0, P, step):
            out += xp.matmul(t3[s:s + step], X3[s:s + step]).sum(axis=0)
        return out

    def _mul_t(self, Y: Any) -> Any:  # T₍ₙ₎ᵀ Y, Y of shape (I, l)
        xp, P, I, Q = self.xp, self._P, self._I, self._Q
        l = Y.shape[1]
        if P == 1:
            return self._t.reshape(I, Q).T @ Y
        if Q == 1:
            return self._t.reshape(P, I) @ Y
        # (Yᵀ T[p]) is (l, Q) per p: a batched GEMM on the tensor as it lies, then one
        # transpose of the (P·Q × l) result (I/l times smaller than the tensor).
        Z = xp.matmul(xp.ascontiguousarray(Y.T), self._t.reshape(P, I, Q))
        return xp.ascontiguousarray(Z.transpose(0, 2, 1)).reshape(P * Q, l)

    def mul(self, X: Any) -> Any:
        return self._mul_t(X) if self.transposed else self._mul(X)

    def mul_t(self, Y: Any) -> Any:
        return self._mul(Y) if self.transposed else self._mul_t(Y)

    def sq_norm(self) -> float:
        return sq_norm(self._t)


def _subspace(t: Any, n: int, r: int, budget: float | None, svd: dict) -> tuple[Any, float | None]:
    """Leading rank-`r` subspace of ``T₍ₙ₎``; with `budget`, the smallest rank ≤ `r` whose
    discarded energy fits it (``tucker::decomp::subspace``). Returns the factor and the
    discarded energy when known."""
    xp = array_module(t)
    if svd["svd"] == "exact":
        u, sq = _exact_subspace(t, n, r)
        if budget is None:
            return u, None
        # tails[j] = Σ_{i ≥ j} sq[i], summed from the small end; non-increasing in j, so the
        # smallest rank whose tail fits is the number of tails above the budget.
        tails = xp.cumsum(sq[::-1])[::-1]
        rank = max(1, int(xp.count_nonzero(tails > budget)))
        rank = min(rank, r)
        discarded = float(tails[rank]) if rank < tails.shape[0] else 0.0
        return u[:, :rank], discarded
    from rankcore._gpu.svd import _adaptive, _range_finder, _small_svd

    op = _Unfolding(t, n)
    seed = _mode_seed(svd["seed"], n)
    if budget is not None:
        norm2 = op.sq_norm()
        rel = math.sqrt(budget / norm2) if norm2 > 0 else 0.5
        opts = {"tol": min(max(rel, 1e-12), 0.999_999), "block_size": 8, "n_iter": svd["n_power_iter"],
                "n_components": r, "seed": seed}
        U, _, _, rel_error = _adaptive(op, opts, t.dtype)
        return U, rel_error * rel_error * norm2
    m, c = op.shape
    l = min(r + svd["n_oversamples"], m, c)
    Q = _range_finder(op, l, svd["n_power_iter"], "LU", seed, t.dtype)
    U, _, _ = _small_svd(Q, op.mul_t(Q), r)
    return U, None


def _direct(x: Any, norm2: float, p: dict, sequential: bool) -> list[Any]:
    """Factors by HOSVD or ST-HOSVD, with the error-target rank rule
    (``tucker::decomp::direct``)."""
    modes, ranks = p["modes"], p["ranks"]
    nm = len(modes)
    budget = None if p["error_tol"] is None else p["error_tol"] ** 2 * norm2
    factors: list[Any] = []
    cur = x
    for i, (m, r) in enumerate(zip(modes, ranks)):
        view = cur if sequential else x
        share = None if budget is None else budget / (nm - i)
        u, discarded = _subspace(view, m, r, share, p)
        if budget is not None and discarded is not None:
            budget = max(budget - discarded, 0.0)
        if sequential:
            cur = mode_product(view, u.T, m)
        factors.append(u)
    return factors


def _random_factors(xp: Any, shape: Sequence[int], modes: Sequence[int], ranks: Sequence[int],
                    seed: int, dtype: Any) -> list[Any]:
    ops = ops_for(xp)
    return [_orthonormal(ops.normal(int(shape[m]), r, 0, 0, seed, 1 + m, dtype)) for m, r in zip(modes, ranks)]


def _rel(norm2: float, core2: float) -> float:
    return math.sqrt(max(norm2 - core2, 0.0) / norm2) if norm2 > 0 else 0.0


def _final_error(x: Any, norm2: float, core: Any, modes: Sequence[int], factors: Sequence[Any]) -> float:
    """``tucker::decomp::final_error``: by norms unless that is within rounding of zero,
    then from the residual (one reconstruction, summed in float64)."""
    xp = array_module(x)
    by_norms = _rel(norm2, sq_norm(core))
    if norm2 <= 0.0 or by_norms * by_norms > 1e4 * float(np.finfo(x.dtype).eps):
        return by_norms
    rec = reconstruct(core, modes, factors)
    diff = xp.ascontiguousarray(x).astype(xp.float64) - rec.astype(xp.float64)
    return math.sqrt(sq_norm(diff) / norm2)


def _initial(x: Any, norm2: float, p: dict, init_factors: Sequence[Any] | None) -> list[Any]:
    xp = array_module(x)
    if p["method"] == "hooi" and init_factors is not None:
        return [_orthonormal(xp.asarray(f, dtype=x.dtype)) for f in init_factors]
    if p["method"] == "hooi" and p["init"] == "random":
        ranks = p["ranks"]
        if p["error_tol"] is not None:  # the ranks are ST-HOSVD's; the start is random at those
            ranks = [int(u.shape[1]) for u in _direct(x, norm2, p, True)]
        return _random_factors(xp, x.shape, p["modes"], ranks, p["seed"], x.dtype)
    return _direct(x, norm2, p, p["method"] != "hosvd")


def _hooi_sweep(x: Any, p: dict, factors: list[Any]) -> Any:
    """One HOOI sweep over the free modes; returns the new core."""
    last = None
    for i, m in enumerate(p["modes"]):
        if p["fixed"][i]:
            continue
        y = _project(x, p["modes"], factors, skip=i)
        u, _ = _exact_subspace(y, m, int(factors[i].shape[1]))
        factors[i] = u
        last = (i, y)
    if last is None:
        return _project(x, p["modes"], factors)
    i, y = last
    return mode_product(y, factors[i].T, p["modes"][i])


def _say(p: dict, text: str) -> None:
    if p["verbose"]:
        print(text, file=sys.stderr)


def _tucker(x: Any, p: dict, init_factors: Sequence[Any] | None) -> dict:
    norm2 = sq_norm(x)
    factors = _initial(x, norm2, p, init_factors)
    if p["method"] != "hooi":
        core = _project(x, p["modes"], factors)
        err = _final_error(x, norm2, core, p["modes"], factors)
        return {"core": core, "factors": factors, "errors": [err], "n_iter": 0, "converged": True}
    errors: list[float] = []
    core = _project(x, p["modes"], factors)
    converged, n_iter = False, 0
    for it in range(p["n_iter_max"]):
        core = _hooi_sweep(x, p, factors)
        n_iter = it + 1
        err = _rel(norm2, sq_norm(core))
        _say(p, f"tucker: iteration {n_iter}, relative error {err:.6e}")
        done = bool(errors) and abs(errors[-1] - err) < p["tol"]
        errors.append(err)
        if done:
            converged = True
            break
    last = _final_error(x, norm2, core, p["modes"], factors)
    if errors:
        errors[-1] = last
    else:
        errors.append(last)
    return {"core": core, "factors": factors, "errors": errors, "n_iter": n_iter, "converged": converged}


def _tucker_masked(x: Any, mask: Any, p: dict, init_factors: Sequence[Any] | None) -> dict:
    """``tucker::decomp::tucker_masked``: missing entries start at zero and are replaced by
    the current reconstruction before each initial decomposition (``mask_repeats`` times)
    and each HOOI sweep; errors are over the observed entries."""
    xp = array_module(x)
    zero = xp.zeros((), dtype=x.dtype)
    work = xp.where(mask, x, zero)
    obs64 = work.astype(xp.float64)  # observed entries, zeros elsewhere
    obs_norm2 = sq_norm(work)

    def impute(work: Any, core: Any, factors: Sequence[Any]) -> tuple[Any, float]:
        rec = reconstruct(core, p["modes"], factors)
        resid = xp.where(mask, obs64 - rec.astype(xp.float64), 0.0)
        err = math.sqrt(sq_norm(resid) / obs_norm2) if obs_norm2 > 0 else 0.0
        return xp.where(mask, work, rec), err

    direct_p = dict(p, method="hosvd" if p["method"] == "hosvd" else "sthosvd")
    res = _tucker(work, direct_p, None)
    direct_init = p["init"] == "svd" and init_factors is None or p["method"] != "hooi"
    for _ in range(p["mask_repeats"] if direct_init else 0):
        work, _ = impute(work, res["core"], res["factors"])
        res = _tucker(work, direct_p, None)
    work, err = impute(work, res["core"], res["factors"])
    if p["method"] != "hooi":
        res["errors"] = [err]
        return res
    factors = res["factors"] if direct_init else _initial(work, sq_norm(work), p, init_factors)
    errors: list[float] = []
    core = res["core"]
    converged, n_iter = False, 0
    for it in range(p["n_iter_max"]):
        core = _hooi_sweep(work, p, factors)
        n_iter = it + 1
        work, err = impute(work, core, factors)
        _say(p, f"tucker (masked): iteration {n_iter}, relative error on observed entries {err:.6e}")
        done = bool(errors) and abs(errors[-1] - err) < p["tol"]
        errors.append(err)
        if done:
            converged = True
            break
    if not errors:
        errors.append(err)
    return {"core": core, "factors": factors, "errors": errors, "n_iter": n_iter, "converged": converged}


def tucker(x: Any, opts: dict, mask: Any = None, init_factors: Sequence[Any] | None = None) -> dict:
    """Tucker decomposition with the options :func:`rankcore.tucker.tucker` resolves (the
    keys of the Rust core's ``tucker_decompose``); `mask` a boolean array of `x`'s shape
    (True: observed) or None; `init_factors` the given factors of ``init=(core, factors)``.
    Returns ``{"core", "factors", "errors", "n_iter", "converged"}``, arrays in the
    namespace and dtype of `x`."""
    xp = array_module(x)
    x = xp.ascontiguousarray(x)
    p = dict(opts)
    if p.get("fixed") is None:
        p["fixed"] = [False] * len(p["modes"])
    if mask is not None:
        return _tucker_masked(x, mask, p, init_factors)
    return _tucker(x, p, init_factors)
