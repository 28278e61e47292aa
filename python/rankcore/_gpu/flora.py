"""FLoRA's ΔW and its vector-Jacobian product on the device, written once for cupy and NumPy.

The same algorithms as ``rust/rankcore/src/flora.rs``: ``ΔW = (scale·G) ×ₖ Uₖ`` in the
flop-optimal mode order, and the gradients with the modes whose factor shrinks (rₖ < Iₖ)
contracted on the gradient's side, through leave-one-out products that split off the
most-shrinking mode recursively (``R = ∂L/∂ΔW`` is read twice, not N times, and nothing
larger than ΔW is formed), and the other modes' factors applied to the core instead. Every
product is a (batched) GEMM of :func:`rankcore._gpu.tucker.mode_product`; the cross
products ``A₍ₖ₎ B₍ₖ₎ᵀ`` are one GEMM on mode-first copies.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from rankcore._gpu._arrays import array_module
from rankcore._gpu.tucker import _split, mode_product, multi_mode_product

__all__ = ["delta", "delta_vjp", "init_factors"]


def delta(core: Any, factors: Sequence[Any], scale: float) -> Any:
    """``ΔW = scale · core ×ₖ factors[k]`` (the scale applied to the core, the smallest
    tensor)."""
    scaled = core * core.dtype.type(scale)
    return multi_mode_product(scaled, list(factors), list(range(core.ndim)))


def _cross(a: Any, b: Any, k: int) -> Any:
    """``A₍ₖ₎ B₍ₖ₎ᵀ`` for two tensors equal in shape except along mode `k`."""
    xp = array_module(a)
    P, Ia, Q = _split(a.shape, k)
    Ib = int(b.shape[k])
    if P == 1 or Q == 1:  # the unfoldings are reshapes
        a2 = xp.ascontiguousarray(a).reshape(P, Ia, Q)
        b2 = xp.ascontiguousarray(b).reshape(P, Ib, Q)
        return a2[0] @ b2[0].T if P == 1 else a2[:, :, 0].T @ b2[:, :, 0]
    a2 = xp.moveaxis(a, k, 0).reshape(Ia, P * Q)
    b2 = xp.moveaxis(b, k, 0).reshape(Ib, P * Q)
    return a2 @ b2.T


def _leave_one_out(t: Any, factors: Sequence[Any], rest: list[int], out: dict) -> None:
    """``out[k] = t ×_{m ∈ rest, m≠k} U_mᵀ`` for every `k` in `rest`
    (``flora::leave_one_out``: split off the most-shrinking mode, recurse on the rest)."""
    if len(rest) == 1:
        out[rest[0]] = t
        return
    ratio = {m: t.shape[m] / factors[m].shape[1] for m in rest}
    # the largest ratio; ties to the lowest mode (Rust's max_by with `then(b.cmp(a))`)
    big = max(rest, key=lambda m: (ratio[m], -m))
    right = [m for m in rest if m != big]
    for keep, contract in (([big], right), (right, [big])):
        part = multi_mode_product(t, [factors[m].T for m in contract], contract)
        if len(keep) == 1:
            out[keep[0]] = part
        else:
            _leave_one_out(part, factors, keep, out)


def delta_vjp(core: Any, factors: Sequence[Any], grad: Any, scale: float) -> tuple[Any, list[Any]]:
    """``(∂L/∂core, [∂L/∂Uₖ])`` given ``grad = ∂L/∂ΔW`` (``flora::delta_vjp``)."""
    n = core.ndim
    s = core.dtype.type(scale)
    factors = list(factors)
    shrink = [k for k in range(n) if factors[k].shape[1] < factors[k].shape[0]]
    widen = [k for k in range(n) if k not in shrink]
    loo: dict = {}
    if shrink:
        _leave_one_out(grad, factors, shrink, loo)
        # R ×_{shrink} Uᵀ from the leave-one-out product cheapest to finish
        k0 = min(shrink, key=lambda k: (loo[k].size * factors[k].shape[1], shrink.index(k)))
        small = mode_product(loo[k0], factors[k0].T, k0)
    else:
        small = grad

    def expanded(skip: int | None) -> Any:
        modes = [m for m in widen if m != skip]
        return multi_mode_product(core, [factors[m] for m in modes], modes) if modes else core

    core_widened = expanded(None)
    grads = [(_cross(loo[k], core_widened, k) if k in loo else _cross(small, expanded(k), k)) * s
             for k in range(n)]
    gc = multi_mode_product(small, [factors[m].T for m in widen], widen) if widen else small
    return gc * s, grads


def init_factors(xp: Any, shape: Sequence[int], ranks: Sequence[int], seed: int, dtype: Any) -> list[Any]:
    """The paper's factors N(0, 1/(2rₖ)) from Philox stream k (the CPU's numbers: the
    device generator gives the same normals, bit for bit), generated where `xp` lives."""
    from rankcore._gpu._ops import ops_for

    ops = ops_for(xp)
    return [ops.normal(int(s), int(r), 0, 0, seed, k, np.float64, 1.0 / np.sqrt(2.0 * r)).astype(dtype)
            for k, (s, r) in enumerate(zip(shape, ranks))]
