"""FLoRA wrappers for PyTorch layers (importable only where PyTorch is installed).

Each wrapper freezes the base layer and adds ``ΔW = scale · G ×ₖ Uₖ`` (see
:mod:`rankcore.flora`) to its weight in the forward pass; ΔW is built with ``torch.tensordot``
in the flop-optimal mode order, so gradients flow to ``G`` and every ``Uₖ`` through autograd.

- :class:`Linear` (``nn.Linear``, weight out × in),
- :class:`Conv` for ``nn.Conv1d/2d/3d``, grouped or not (weight out × in/groups × kernel…:
  the weight's real shape, where the reference code used ``in_channels``), any padding mode
  (the base layer's own ``_conv_forward`` applies it),
- :class:`Embedding` (``nn.Embedding``, weight num_embeddings × dim; the reference's
  assertions made it impossible).

``merge()`` folds ΔW into the base weight for inference and ``unmerge()`` takes it out again
(a TODO in the reference). :func:`wrap` picks the wrapper for a layer.

Example
-------
>>> layer = Conv(nn.Conv2d(64, 64, 3, groups=4), ranks=(8, 8, 3, 3), scale=1.0)  # doctest: +SKIP
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import torch
from torch import nn
from torch.nn import functional as F

from rankcore.flora import _check_ranks, _check_scale, chain_order

__all__ = ["Conv", "Embedding", "FLoRADelta", "Linear", "wrap"]


class FLoRADelta(nn.Module):
    """The parameters ``G`` (core, zeros) and ``Uₖ`` (N(0, 1/(2rₖ))) and ``forward() = ΔW``."""

    def __init__(
        self,
        weight_shape: Sequence[int],
        ranks: Any,
        scale: float = 1.0,
        *,
        dtype: torch.dtype | None = None,
        device: Any = None,
    ) -> None:
        super().__init__()
        shape = [int(s) for s in weight_shape]
        r = _check_ranks(ranks, shape)
        self.weight_shape = tuple(shape)
        self.ranks = tuple(r)
        self.scale = _check_scale(scale)
        kw = {"dtype": dtype, "device": device}
        self.core = nn.Parameter(torch.zeros(r, **kw))
        self.factors = nn.ParameterList(
            nn.Parameter(torch.randn(s, rk, **kw) / math.sqrt(2.0 * rk)) for s, rk in zip(shape, r)
        )
        # modes applied to the core in the flop-optimal order (fixed by the shapes)
        self._order = chain_order(r, [(k, s) for k, s in enumerate(shape)])

    def forward(self) -> torch.Tensor:
        t = self.core * self.scale
        for k in self._order:
            # contract mode k of t with the factor's columns, then put the new axis back at k
            t = torch.movedim(torch.tensordot(t, self.factors[k], dims=([k], [1])), -1, k)
        return t

    def extra_repr(self) -> str:
        return f"weight_shape={self.weight_shape}, ranks={self.ranks}, scale={self.scale}"


class _Wrapper(nn.Module):
    def __init__(self, base: nn.Module, ranks: Any, scale: float, dropout: float) -> None:
        super().__init__()
        self.base_layer = base
        base.requires_grad_(False)
        w = base.weight
        self.flora = FLoRADelta(tuple(w.shape), ranks, scale, dtype=w.dtype, device=w.device)
        self.dropout = nn.Dropout(dropout) if dropout > 0 else nn.Identity()
        self.merged = False

    def delta_weight(self) -> torch.Tensor:
        return self.flora()

    @torch.no_grad()
    def merge(self) -> None:
        """Add ΔW to the base weight (for inference); the forward then skips the adapter."""
        if not self.merged:
            self.base_layer.weight.add_(self.flora().to(self.base_layer.weight.dtype))
            self.merged = True

    @torch.no_grad()
    def unmerge(self) -> None:
        """Take ΔW back out of the base weight."""
        if self.merged:
            self.base_layer.weight.sub_(self.flora().to(self.base_layer.weight.dtype))
            self.merged = False


class Linear(_Wrapper):
    """``nn.Linear`` plus FLoRA: ``y = base(x) + dropout(x) @ ΔWᵀ``; ranks (r_out, r_in)."""

    def __init__(self, base: nn.Linear, ranks: Any, scale: float = 1.0, dropout: float = 0.0):
        if not isinstance(base, nn.Linear):
            raise TypeError(f"base must be an nn.Linear, got {type(base).__name__}")
        super().__init__(base, ranks, scale, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if self.merged:
            return out
        return out + F.linear(self.dropout(x), self.delta_weight().to(x.dtype))


class Conv(_Wrapper):
    """``nn.Conv1d/2d/3d`` plus FLoRA over the weight (out, in/groups, kernel…).

    The adapter's convolution uses the base layer's stride, padding (and padding mode),
    dilation and groups, and no bias.
    """

    def __init__(self, base: nn.Module, ranks: Any, scale: float = 1.0, dropout: float = 0.0):
        if not isinstance(base, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
            raise TypeError(f"base must be an nn.Conv1d/2d/3d, got {type(base).__name__}")
        super().__init__(base, ranks, scale, dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(x)
        if self.merged:
            return out
        d = self.delta_weight().to(x.dtype)
        return out + self.base_layer._conv_forward(self.dropout(x), d, None)


class Embedding(_Wrapper):
    """``nn.Embedding`` plus FLoRA over its (num_embeddings, dim) table.

    The adapter's lookup honours ``padding_idx``; ``max_norm`` renormalisation (which writes
    to the table) applies to the base table only.
    """

    def __init__(self, base: nn.Embedding, ranks: Any, scale: float = 1.0):
        if not isinstance(base, nn.Embedding):
            raise TypeError(f"base must be an nn.Embedding, got {type(base).__name__}")
        super().__init__(base, ranks, scale, 0.0)

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        out = self.base_layer(idx)
        if self.merged:
            return out
        b = self.base_layer
        # dense gradients for the adapter (ΔW is computed, not a stored table)
        return out + F.embedding(idx, self.delta_weight(), b.padding_idx, None, 2.0,
                                 b.scale_grad_by_freq, False)


def wrap(layer: nn.Module, ranks: Any, scale: float = 1.0, dropout: float = 0.0) -> nn.Module:
    """The FLoRA wrapper for `layer` (Linear, Conv1d/2d/3d or Embedding)."""
    if isinstance(layer, nn.Linear):
        return Linear(layer, ranks, scale, dropout)
    if isinstance(layer, (nn.Conv1d, nn.Conv2d, nn.Conv3d)):
        return Conv(layer, ranks, scale, dropout)
    if isinstance(layer, nn.Embedding):
        return Embedding(layer, ranks, scale)
    raise TypeError(f"no FLoRA wrapper for {type(layer).__name__}")
