"""Kronecker-structured linear algebra on the device, written once for cupy and NumPy.

The same algorithms as ``rust/rankcore/src/kron.rs``: ``K = K₁ ⊗ … ⊗ K_D`` is applied by
successive mode products of the C-ordered grid (:func:`rankcore._gpu.tucker.mode_product`:
one GEMM or one strided batched GEMM per factor, for a whole batch of right-hand sides at
once), each factor is diagonalised by ``xp.linalg.eigh`` (cuSOLVER ``syevd``) with the CPU's
round-off clamp, and solves, log-determinants and the inverse's diagonal go through the
eigenbasis. A batch of grids is a ``(k, N)`` array (the batch as an extra leading mode).
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from rankcore._gpu._arrays import array_module
from rankcore._gpu.tucker import multi_mode_product

__all__ = ["PSD_SLACK", "eigh", "grid_eigenvalues", "kron_apply", "kron_inv_diag", "kron_logdet", "kron_solve"]

#: Round-off allowance for negative eigenvalues, ``λ ≥ −PSD_SLACK·ε·n·max|λ|`` (kron.rs).
PSD_SLACK = 64.0


def kron_apply(mats: Sequence[Any], xb: Any) -> Any:
    """``(M₁ ⊗ … ⊗ M_D) x`` for each row of the ``(k, Π n_d)`` batch `xb` (C-order grids);
    returns ``(k, Π m_d)``."""
    k = int(xb.shape[0])
    grid = xb.reshape((k,) + tuple(int(M.shape[1]) for M in mats))
    out = multi_mode_product(grid, list(mats), list(range(1, len(mats) + 1)))
    return out.reshape(k, -1)


def eigh(mats: Sequence[Any]) -> tuple[list[Any], list[Any]]:
    """``K_d = Q_d diag(λ_d) Q_dᵀ`` per factor (eigenvalues ascending, as on the CPU), with
    round-off negatives clamped to zero; a more negative eigenvalue is a ``ValueError``
    naming the factor (``kron::eigh``)."""
    qs, lams = [], []
    for d, K in enumerate(mats):
        xp = array_module(K)
        n = int(K.shape[0])
        lam, Q = xp.linalg.eigh(K)
        max_abs = float(xp.abs(lam).max())
        floor = -PSD_SLACK * float(np.finfo(K.dtype).eps) * n * max_abs
        low = float(lam.min())
        if not math.isfinite(low) or not math.isfinite(max_abs):
            raise ValueError("Ks must be finite")
        if low < floor:
            raise ValueError(
                f"Ks[{d}] is not positive semi-definite: eigenvalue {low:.6e} < {floor:.3e} "
                f"(the round-off allowance −{PSD_SLACK}·ε·n·max|λ|, max|λ| = {max_abs:.6e})"
            )
        qs.append(xp.ascontiguousarray(Q))
        lams.append(xp.maximum(lam, 0))
    return qs, lams


def grid_eigenvalues(lams: Sequence[Any], scale: float = 1.0) -> Any:
    """The eigenvalues of ``scale · K₁ ⊗ … ⊗ K_D`` as a flat C-order grid."""
    xp = array_module(lams[0])
    out = xp.full((1,), scale, dtype=lams[0].dtype)
    for lam in lams:
        out = (out[:, None] * lam[None, :]).reshape(-1)
    return out


def _check_noise(noise: float) -> float:
    if not (noise > 0.0 and math.isfinite(noise)):
        raise ValueError(f"noise must be a positive finite number, got {noise}")
    return float(noise)


def kron_solve(qs: Sequence[Any], lams: Sequence[Any], scale: float, noise: float, yb: Any) -> Any:
    """``(scale · K + σ²I)⁻¹ y`` for each row of `yb`: ``Q diag(1/(λ + σ²)) Qᵀ y``."""
    s2 = _check_noise(noise)
    lam = grid_eigenvalues(lams, scale)
    t = kron_apply([q.T for q in qs], yb)
    t = t / (lam + lam.dtype.type(s2))[None, :]
    return kron_apply(list(qs), t)


def kron_logdet(lams: Sequence[Any], scale: float, noise: float) -> float:
    """``log det(scale · K + σ²I) = Σ_j log(λ_j + σ²)``, summed in float64 (one scalar read)."""
    s2 = _check_noise(noise)
    xp = array_module(lams[0])
    lam = grid_eigenvalues([l.astype(xp.float64) for l in lams], scale)
    return float(xp.sum(xp.log(lam + s2)))


def kron_inv_diag(qs: Sequence[Any], lams: Sequence[Any], scale: float, noise: float) -> Any:
    """The exact diagonal of ``(scale · K + σ²I)⁻¹``: ``Σ_j Q_ij² / (λ_j + σ²)``, one
    Kronecker product with the squared eigenvectors."""
    s2 = _check_noise(noise)
    lam = grid_eigenvalues(lams, scale)
    w = 1 / (lam + lam.dtype.type(s2))
    return kron_apply([q * q for q in qs], w[None, :])[0]
