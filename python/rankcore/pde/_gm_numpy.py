"""Plain-numpy spectral-mixture ("gm") kernel matrices on 1-D grids, for tests and benches.

The Rust core computes the same matrices for :class:`rankcore.pde.GPSolver`; this module lets
the structured inner solve (:mod:`rankcore.pde._structured`) be exercised without the compiled
extension. With ``r = x_i − x_j``, ``ω_q = 2π f_q``, ``b_q = exp(−r²/(2ℓ_q²))``:

    k(r)   = Σ_q w_q b_q cos(ω_q r)
    k′(r)  = Σ_q w_q (b′_q cos − ω_q b_q sin),             b′ = −r/ℓ² b
    k″(r)  = Σ_q w_q (b″_q cos − 2ω_q b′_q sin − ω_q² b_q cos),  b″ = (r²/ℓ⁴ − 1/ℓ²) b

(Wilson & Adams 2013; Fang et al. 2024). The derivative matrices of the GP conditional mean
are ``D⁽ᵐ⁾ = K⁽ᵐ⁾ (K + νI)⁻¹`` with ``K⁽ᵐ⁾[i, j] = ∂ᵐ/∂x_iᵐ k(x_i − x_j)`` (no nugget).
"""

from __future__ import annotations

import numpy as np
import scipy.linalg

__all__ = ["gm_matrices", "default_params"]


def default_params(q: int = 30, freq_scale: float = 20.0, lengthscale: float = 1.0):
    """The solver's default initialisation: equal weights ``1/Q``, frequencies spread over
    ``[0, freq_scale]``, a common lengthscale. Returns ``(w, f, ell)``, each of shape (q,)."""
    return np.full(q, 1.0 / q), np.linspace(0.0, freq_scale, q), np.full(q, lengthscale)


def gm_matrices(x, w, f, ell, nugget=1e-6):
    """Cholesky factor and derivative matrices of the gm kernel on the points ``x``.

    Parameters
    ----------
    x : ndarray of shape (n,)
    w, f, ell : ndarray of shape (q,)
        Weights, frequencies (cycles per unit length), lengthscales.
    nugget : float, default=1e-6
        ``ν`` added to the diagonal of ``K`` before factorising.

    Returns
    -------
    L : ndarray of shape (n, n)
        Lower Cholesky factor of ``K + νI``.
    D1, D2 : ndarray of shape (n, n)
        ``K′ (K + νI)⁻¹`` and ``K″ (K + νI)⁻¹``.
    K : ndarray of shape (n, n)
        The kernel matrix without the nugget.
    """
    x = np.asarray(x, dtype=np.float64)
    r = (x[:, None] - x[None, :])[None]
    w, om, ell = (np.asarray(a, dtype=np.float64)[:, None, None] for a in (w, 2 * np.pi * np.asarray(f), ell))
    b = np.exp(-(r**2) / (2 * ell**2))
    db = -r / ell**2 * b
    d2b = (r**2 / ell**4 - 1 / ell**2) * b
    c, s = np.cos(om * r), np.sin(om * r)
    K = np.sum(w * b * c, axis=0)
    K1 = np.sum(w * (db * c - om * b * s), axis=0)
    K2 = np.sum(w * (d2b * c - 2 * om * db * s - om**2 * b * c), axis=0)
    L = np.linalg.cholesky(K + nugget * np.eye(len(x)))
    solve = lambda M: scipy.linalg.cho_solve((L, True), M.T).T  # noqa: E731  M (K+νI)⁻¹, K+νI symmetric
    return L, solve(K1), solve(K2), K
