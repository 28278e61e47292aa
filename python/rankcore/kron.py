"""Kronecker-structured linear algebra: mat-vecs, solves and log-determinants with
``K = K₁ ⊗ … ⊗ K_D`` without ever forming the ``N × N`` matrix (``N = Π n_d``).

Vectorisation convention: a vector of length ``N`` is a grid of shape ``(n₁, …, n_D)``
flattened in C order (the last index fastest), so ``kron_matvec(Ks, x)`` equals
``functools.reduce(numpy.kron, Ks) @ x``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from rankcore import _core
from rankcore._validation import check_array

__all__ = ["kron_logdet", "kron_matvec", "kron_solve"]


def _factors(Ks: Any, dtype: Any, square: bool) -> list[np.ndarray]:
    if isinstance(Ks, np.ndarray) or not isinstance(Ks, Sequence) or len(Ks) == 0:
        raise TypeError("Ks must be a non-empty list of 2-D arrays")
    out = []
    for d, K in enumerate(Ks):
        K = check_array(K, name=f"Ks[{d}]")
        if square and K.shape[0] != K.shape[1]:
            raise ValueError(f"Ks[{d}] must be square, got shape {K.shape}")
        out.append(np.ascontiguousarray(K, dtype=dtype))
    return out


def _rhs(y: Any, n: int, name: str) -> tuple[np.ndarray, bool]:
    """``y`` of shape (N,) or (N, k) as a C-contiguous (k, N) batch."""
    y = check_array(y, name=name, ndim=None)
    if y.ndim > 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got {y.ndim} dimensions")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} rows, but the Kronecker product has {n} columns")
    vec = y.ndim == 1
    return np.ascontiguousarray(y.reshape(n, -1).T), vec


def _noise(noise: Any) -> float:
    try:
        v = float(noise)
    except (TypeError, ValueError):
        raise TypeError(f"noise must be a real number, got {type(noise).__name__}") from None
    if not (v > 0.0 and np.isfinite(v)):
        raise ValueError(f"noise must be positive and finite, got {noise!r}")
    return v


def kron_matvec(Ks: Sequence[Any], x: Any) -> np.ndarray:
    """``(K₁ ⊗ … ⊗ K_D) x`` by successive mode products, ``O(N Σ n_d)``.

    Parameters
    ----------
    Ks : list of array-like, each of shape (m_d, n_d)
        The Kronecker factors (rectangular allowed).
    x : array-like of shape (Π n_d,) or (Π n_d, k)
        Vector(s) in C-order grid layout (see the module docs).

    Returns
    -------
    numpy.ndarray of shape (Π m_d,) or (Π m_d, k), the dtype of `x` (float32 or float64).
    """
    x0 = check_array(x, name="x", ndim=None)
    mats = _factors(Ks, x0.dtype, square=False)
    n = int(np.prod([K.shape[1] for K in mats]))
    xb, vec = _rhs(x0, n, "x")
    out = _core.kron_apply(mats, xb)
    return out[0] if vec else np.ascontiguousarray(out.T)


def _eigh(Ks: Sequence[Any], dtype: Any) -> tuple[list[np.ndarray], list[np.ndarray]]:
    mats = _factors(Ks, dtype, square=True)
    for d, K in enumerate(mats):
        if not np.allclose(K, K.T, rtol=1e-10, atol=0):
            raise ValueError(f"Ks[{d}] must be symmetric")
    qs, lams = _core.kron_eigh(mats)
    return [np.ascontiguousarray(q) for q in qs], list(lams)


def kron_solve(Ks: Sequence[Any], y: Any, noise: float) -> np.ndarray:
    """``(K₁ ⊗ … ⊗ K_D + σ²I)⁻¹ y`` through per-factor eigendecompositions.

    With ``K_d = Q_d Λ_d Q_dᵀ``, the solve is ``Q diag(1/(λ + σ²)) Qᵀ y`` (Saatçi 2012), at
    ``O(Σ n_d³ + N Σ n_d)`` instead of ``O(N³)``.

    Parameters
    ----------
    Ks : list of array-like, each (n_d, n_d), symmetric positive semi-definite
        Eigenvalues below zero within round-off (``λ ≥ −64·ε·n_d·max|λ|``) are clamped to
        zero; a more negative one raises ValueError naming the factor (``Ks[d] is not
        positive semi-definite``), since clamping it would return a wrong solve.
    y : array-like of shape (N,) or (N, k)
    noise : float
        σ² > 0, added to the diagonal.

    Returns
    -------
    numpy.ndarray, same shape and dtype as `y`.
    """
    y0 = check_array(y, name="y", ndim=None)
    s2 = _noise(noise)
    qs, lams = _eigh(Ks, y0.dtype)
    n = int(np.prod([len(lam) for lam in lams]))
    yb, vec = _rhs(y0, n, "y")
    out = _core.kron_solve_eig(qs, lams, 1.0, s2, yb)
    return out[0] if vec else np.ascontiguousarray(out.T)


def kron_logdet(Ks: Sequence[Any], noise: float) -> float:
    """``log det(K₁ ⊗ … ⊗ K_D + σ²I) = Σ_j log(Π_d λ_{d,j_d} + σ²)``, summed in float64.

    Parameters
    ----------
    Ks : list of array-like, each (n_d, n_d), symmetric positive semi-definite
        As in `kron_solve`: round-off negative eigenvalues are clamped, an indefinite
        factor raises ValueError.
    noise : float
        σ² > 0.
    """
    s2 = _noise(noise)
    first = np.asarray(Ks[0]) if isinstance(Ks, Sequence) and len(Ks) else None
    dtype = np.float32 if first is not None and first.dtype == np.float32 else np.float64
    qs, lams = _eigh(Ks, dtype)
    return float(_core.kron_logdet_eig(qs, lams, 1.0, s2, False))
