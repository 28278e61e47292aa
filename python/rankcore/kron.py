"""Kronecker-structured linear algebra: mat-vecs, solves and log-determinants with
``K = K₁ ⊗ … ⊗ K_D`` without ever forming the ``N × N`` matrix (``N = Π n_d``).

Vectorisation convention: a vector of length ``N`` is a grid of shape ``(n₁, …, n_D)``
flattened in C order (the last index fastest), so ``kron_matvec(Ks, x)`` equals
``functools.reduce(numpy.kron, Ks) @ x``.

cupy arrays (all of them: factors and vectors) run on the device through
:mod:`rankcore._gpu.kron` (mode products as cuBLAS GEMMs, cuSOLVER ``eigh``) and return
cupy arrays; mixing host and device arrays is a ``TypeError``.
"""

from __future__ import annotations

from typing import Any, Sequence

import numpy as np

from rankcore import _core
from rankcore._backend import namespace
from rankcore._gpu._arrays import array_module
from rankcore._validation import check_array as _check_host_array


def check_array(a: Any, *, name: str, ndim: int | None = 2, where: str = "numpy") -> Any:
    """Host ``check_array``, or its device twin for ``where="cupy"`` (a ``TypeError`` for
    an array on the other side)."""
    if where == "cupy":
        from rankcore._gpu.tucker import check_tensor

        return check_tensor(a, name, ndim=ndim)
    return _check_host_array(a, name=name, ndim=ndim)


def _where(a: Any) -> str:
    return "cupy" if namespace(a) == "cupy" else "numpy"

__all__ = ["kron_logdet", "kron_matvec", "kron_solve"]


def _factors(Ks: Any, dtype: Any, square: bool, where: str = "numpy") -> list[Any]:
    if isinstance(Ks, np.ndarray) or not isinstance(Ks, Sequence) or len(Ks) == 0:
        raise TypeError("Ks must be a non-empty list of 2-D arrays")
    out = []
    for d, K in enumerate(Ks):
        K = check_array(K, name=f"Ks[{d}]", where=where)
        if square and K.shape[0] != K.shape[1]:
            raise ValueError(f"Ks[{d}] must be square, got shape {tuple(K.shape)}")
        out.append(array_module(K).ascontiguousarray(K, dtype=dtype))
    return out


def _rhs(y: Any, n: int, name: str, where: str = "numpy") -> tuple[Any, bool]:
    """``y`` of shape (N,) or (N, k) as a C-contiguous (k, N) batch."""
    y = check_array(y, name=name, ndim=None, where=where)
    if y.ndim > 2:
        raise ValueError(f"{name} must be 1-D or 2-D, got {y.ndim} dimensions")
    if y.shape[0] != n:
        raise ValueError(f"{name} has {y.shape[0]} rows, but the Kronecker product has {n} columns")
    vec = y.ndim == 1
    return array_module(y).ascontiguousarray(y.reshape(n, -1).T), vec


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
    where = _where(x)
    x0 = check_array(x, name="x", ndim=None, where=where)
    mats = _factors(Ks, x0.dtype, square=False, where=where)
    n = int(np.prod([K.shape[1] for K in mats]))
    xb, vec = _rhs(x0, n, "x", where)
    if where == "cupy":
        from rankcore._gpu.kron import kron_apply

        out = kron_apply(mats, xb)
    else:
        out = _core.kron_apply(mats, xb)
    return out[0] if vec else array_module(out).ascontiguousarray(out.T)


def _eigh(Ks: Sequence[Any], dtype: Any, where: str = "numpy") -> tuple[list[Any], list[Any]]:
    mats = _factors(Ks, dtype, square=True, where=where)
    for d, K in enumerate(mats):
        if not bool(array_module(K).allclose(K, K.T, rtol=1e-10, atol=0)):
            raise ValueError(f"Ks[{d}] must be symmetric")
    if where == "cupy":
        from rankcore._gpu.kron import eigh

        return eigh(mats)
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
    return _solve(Ks, y, noise, logdet=False)[0]


def kron_solve_logdet(Ks: Sequence[Any], y: Any, noise: float) -> tuple[Any, float]:
    """``(kron_solve(Ks, y, noise), kron_logdet(Ks, noise))`` from one eigendecomposition
    per factor: what a Gaussian likelihood needs (GPyTorch's ``inv_quad_logdet``), at about
    two thirds of the two calls' cost on 64³ grids (the factorisations are a third of it).

    Parameters and results as in :func:`kron_solve` and :func:`kron_logdet`; the matrices
    follow ``y`` (numpy or cupy).
    """
    x, logdet = _solve(Ks, y, noise, logdet=True)
    return x, float(logdet)


def _solve(Ks: Sequence[Any], y: Any, noise: float, *, logdet: bool) -> tuple[Any, float | None]:
    """The solve, and the log-determinant when `logdet`, from one factorisation."""
    where = _where(y)
    y0 = check_array(y, name="y", ndim=None, where=where)
    s2 = _noise(noise)
    qs, lams = _eigh(Ks, y0.dtype, where)
    n = int(np.prod([len(lam) for lam in lams]))
    yb, vec = _rhs(y0, n, "y", where)
    ld = None
    if where == "cupy":
        from rankcore._gpu import kron as device

        out = device.kron_solve(qs, lams, 1.0, s2, yb)
        if logdet:
            ld = device.kron_logdet(lams, 1.0, s2)
    else:
        out = _core.kron_solve_eig(qs, lams, 1.0, s2, yb)
        if logdet:
            ld = _core.kron_logdet_eig(qs, lams, 1.0, s2, False)
    return (out[0] if vec else array_module(out).ascontiguousarray(out.T)), ld


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
    first = Ks[0] if isinstance(Ks, Sequence) and len(Ks) else None
    where = "numpy" if first is None else _where(first)
    if first is not None and where == "numpy":
        first = np.asarray(first)
    dtype = np.float32 if first is not None and getattr(first, "dtype", None) == np.float32 else np.float64
    qs, lams = _eigh(Ks, dtype, where)
    if where == "cupy":
        from rankcore._gpu.kron import kron_logdet as device_logdet

        return device_logdet(lams, 1.0, s2)
    return float(_core.kron_logdet_eig(qs, lams, 1.0, s2, False))
