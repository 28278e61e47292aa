"""Exact minimisation of the GP-HM objective over the grid values at fixed kernels.

For fixed kernel parameters and precisions the objective is, in whitened values ``Z`` with
``U = Z ×₁ L₁ … ×_D L_D`` (``L_d L_dᵀ = K_d``, nugget included),

    J(Z) = ½‖Z‖² + (β/2)‖U|∂Ω − g‖² + (τ/2)‖Σ_t c_t ∘ (Z ×_d W_{t,d}) + φ(U) − f‖²

(``β = w_b τ_b``, ``τ = τ_r``): a linear least-squares problem when there is no nonlinearity
``φ``. The operator acts on ``Z`` through the whitened derivative matrices
``W_d⁽ᵐ⁾ = K_d⁽ᵐ⁾ L_d⁻ᵀ`` (``= D_d⁽ᵐ⁾ L_d`` with ``D⁽ᵐ⁾ = K⁽ᵐ⁾K⁻¹``; ``W⁽⁰⁾ = L_d``), formed
with one triangular solve: the condition number of ``L_d`` is the square root of that of
``K_d``, where forming ``K_d⁻¹`` explicitly would leave round-off of relative size
``ε·cond(K_d)`` in every derivative, noise that line searches on the profiled objective trip
over.

Solving exactly, instead of moving ``U`` with a first-order optimiser together with the
kernel, is what makes the solver accurate: the outer optimiser then only sees the few kernel
parameters, and by the envelope theorem the gradient of the profiled objective ``min_Z J``
is the objective's partial gradient in the kernel parameters at the minimiser.

This module holds the dense solve (the stacked least-squares matrix built with Kronecker
products and solved by Householder QR: fine up to a few thousand grid cells) and the
Gauss–Newton iteration that reduces a nonlinear ``φ`` to a sequence of such solves with the
diagonal term ``φ′(U)``.
"""

from __future__ import annotations

from functools import reduce
from typing import Callable, Sequence

import numpy as np
import scipy.linalg
import scipy.linalg.lapack

from rankcore import _core
from rankcore.pde._structured import _modes as mode_apply  # x ×_d mats[d], one GEMM per mode

#: Above this many grid cells the dense solve's O(N³) QR is too slow (≈ 5 s at 4096).
DENSE_MAX_CELLS = 4096


def kernel_derivative_matrix(kind: str, params, x: np.ndarray, m: int) -> np.ndarray:
    """``K⁽ᵐ⁾[i, j] = k⁽ᵐ⁾(x_i − x_j)``; on an equally spaced axis from its ``2n − 1`` lags
    ``(i − j) h`` (one kernel evaluation per lag, as the core does, so the two agree to the
    last bit), else from every pair."""
    n = len(x)
    params = np.asarray(params, np.float64)
    h = (x[-1] - x[0]) / (n - 1)
    tol = 1e-12 * (abs(x[0]) + abs(x[-1]) + abs(h))
    if np.all(np.abs(x - (x[0] + np.arange(n) * h)) <= tol):
        lags = (np.arange(2 * n - 1) - (n - 1)) * h
        v = _core.gp_kernel_matrix(kind, params, lags, np.zeros(1), m, 0)[:, 0]
        return v[np.arange(n)[:, None] - np.arange(n)[None, :] + n - 1]
    return _core.gp_kernel_matrix(kind, params, x, x, m, 0)


def whitened_operator(kind: str, kparams, axes, Ls, coefs, orders):
    """The operator's terms on ``Z``: ``[(c_t, [W_{t,d} per dimension])]`` with
    ``W⁽ᵐ⁾ = K⁽ᵐ⁾ L⁻ᵀ`` (see the module docstring) and ``W⁽⁰⁾ = L``."""
    cache: dict = {}

    def w(d: int, m: int) -> np.ndarray:
        if m == 0:
            return Ls[d]
        if (d, m) not in cache:
            km = kernel_derivative_matrix(kind, kparams[d], np.asarray(axes[d], dtype=np.float64), m)
            # K⁽ᵐ⁾ L⁻ᵀ = (L⁻¹ K⁽ᵐ⁾ᵀ)ᵀ.
            cache[d, m] = scipy.linalg.solve_triangular(Ls[d], km.T, lower=True, check_finite=False).T
        return cache[d, m]

    return [(c, [w(d, m) for d, m in enumerate(o)]) for c, o in zip(coefs, orders)]


def apply_operator(Z: np.ndarray, terms) -> np.ndarray:
    """``Σ_t c_t ∘ (Z ×_d W_{t,d})`` on the grid."""
    out = np.zeros_like(Z)
    for coef, mats in terms:
        out += np.asarray(coef) * mode_apply(Z, mats)
    return out


def _kron(mats: Sequence[np.ndarray]) -> np.ndarray:
    # C-order flattening: kron(A, B) vec(X) = vec(A X Bᵀ).
    return reduce(np.kron, mats)


def dense_solve(Ls, terms, target, bidx, g, tau, beta, diag=None, z0=None):
    """The minimiser ``Z`` of the linear problem
    ``½‖Z‖² + β/2 ‖U|∂Ω − g‖² + τ/2 ‖A Z + diag ∘ U − target‖²`` (grid-shaped), by
    Householder QR of the stacked least-squares matrix ``[I; √β B_w; √τ A_w]`` (whose
    condition number is the square root of the normal equations', which at ``τ ~ e¹⁰`` and
    second derivatives of high frequencies would be beyond float64).

    Parameters
    ----------
    Ls : list of (n_d, n_d) arrays
        Lower Cholesky factors per dimension (``U = Z ×_d L_d``).
    terms : list of (coef, mats)
        ``coef`` a number or grid-shaped array; ``mats`` one ``(n_d, n_d)`` array per
        dimension, acting on ``Z`` (:func:`whitened_operator`).
    target : grid-shaped array
    bidx, g : flat boundary indices and their values.
    tau, beta : float
        Equation and (weighted) boundary precisions.
    diag : grid-shaped array or None
        Extra diagonal term ``diag ∘ U`` of the operator.
    z0 : ignored
        (A starting point, for iterative solvers with this signature.)
    """
    shape = tuple(L.shape[0] for L in Ls)
    n = int(np.prod(shape))
    Lk = _kron(Ls)
    A = np.zeros((n, n))
    for coef, mats in terms:
        op = _kron(mats)
        A += np.reshape(coef, (-1, 1)) * op if np.ndim(coef) else float(coef) * op
    if diag is not None:
        A += np.reshape(diag, (-1, 1)) * Lk
    stacked = np.vstack([np.eye(n), np.sqrt(beta) * Lk[bidx], np.sqrt(tau) * A])
    rhs = np.concatenate([np.zeros(n), np.sqrt(beta) * np.asarray(g), np.sqrt(tau) * np.ravel(target)])
    # LAPACK gels (QR without pivoting): the identity block keeps full column rank.
    _, z, info = scipy.linalg.lapack.dgels(stacked, rhs, overwrite_a=True, overwrite_b=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"least-squares solve for U failed (LAPACK info {info})")
    return z[:n].reshape(shape)


def parts(Z, Ls, terms, source, bidx, g, phi=None):
    """``(U, R, b)``: the grid values, the equation residual and the boundary misfit."""
    U = mode_apply(Z, Ls)
    R = apply_operator(Z, terms) - source
    if phi is not None:
        R = R + phi(U)[0]
    return U, R, U.ravel()[bidx] - g


def objective(Z, Ls, terms, source, bidx, g, tau, beta, phi=None) -> float:
    """``J(Z)`` (module docstring)."""
    _, R, b = parts(Z, Ls, terms, source, bidx, g, phi)
    return 0.5 * float(np.sum(Z * Z) + beta * (b @ b) + tau * np.sum(R * R))


def solve(Ls, terms, source, bidx, g, tau, beta, phi: Callable | None = None,
          z0: np.ndarray | None = None, solver=dense_solve, max_newton: int = 50):
    """The minimiser ``Z`` of ``J``: one linear solve, or Gauss–Newton steps for a
    nonlinearity ``phi`` (``U ↦ (φ(U), φ′(U))``).

    Each Gauss–Newton step linearises ``φ(U + δ) ≈ φ(U) + φ′(U) δ``, which leaves a linear
    problem with the extra diagonal ``φ′(U)`` and target ``f − φ(U) + φ′(U) U``; the step is
    halved until ``J`` decreases. It stops when ``J`` no longer decreases by a relative
    1e-13 (the minimiser to round-off: the envelope gradient needs a stationary point).

    Returns
    -------
    Z : grid-shaped array
    steps : int
        Linear solves made.
    converged : bool
        False when Gauss–Newton used all ``max_newton`` steps still decreasing ``J`` (far
        from the minimiser Newton's rate on the cubic is only 2/3 per step): ``Z`` is then
        not a stationary point. A linear problem is one solve, so True.
    """
    if phi is None:
        return solver(Ls, terms, source, bidx, g, tau, beta, z0=z0), 1, True
    Z = np.zeros(tuple(L.shape[0] for L in Ls)) if z0 is None else z0
    J = objective(Z, Ls, terms, source, bidx, g, tau, beta, phi)
    steps, converged = 0, False
    for steps in range(1, max_newton + 1):
        U = mode_apply(Z, Ls)
        p, dp = phi(U)
        Znew = solver(Ls, terms, source - p + dp * U, bidx, g, tau, beta, diag=dp, z0=Z)
        step, Jnew = 1.0, np.inf
        for _ in range(30):
            cand = Z + step * (Znew - Z)
            Jnew = objective(cand, Ls, terms, source, bidx, g, tau, beta, phi)
            if Jnew <= J:
                break
            step *= 0.5
        if not Jnew <= J:  # no decrease along the step: stationary to round-off
            converged = True
            break
        converged = J - Jnew <= 1e-13 * abs(J)
        Z, J = cand, Jnew
        if converged:
            break
    return Z, steps, converged
