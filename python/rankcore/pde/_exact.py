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
is the objective's partial gradient in the kernel parameters at the minimiser, taken at
fixed ``Z`` (:func:`kernel_adjoints`): at fixed ``U`` it is the same in exact arithmetic
but goes through ``K⁻¹``.

This module holds the dense solve (the stacked least-squares matrix built with Kronecker
products, solved by Householder QR up to ``QR_MAX_CELLS`` cells and by rotated semi-normal
equations up to ``DENSE_MAX_CELLS``: :class:`DenseSolver`) and the Gauss–Newton iteration
that reduces a nonlinear ``φ`` to a sequence of such solves with the diagonal term ``φ′(U)``.
"""

from __future__ import annotations

from functools import reduce
from typing import Callable, Sequence

import numpy as np
import scipy.linalg
import scipy.linalg.blas
import scipy.linalg.lapack

from rankcore import _core
from rankcore.pde._structured import _modes as mode_apply  # x ×_d mats[d], one GEMM per mode

#: Above this many grid cells the dense solve is too slow (its SYRK and Cholesky are O(N³)).
DENSE_MAX_CELLS = 4096
#: Up to this many cells the dense solve is Householder QR (< 0.5 s); above, semi-normal
#: equations (16× faster at 2500 cells, as accurate: see :class:`DenseSolver`).
QR_MAX_CELLS = 1024


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
    ``½‖Z‖² + β/2 ‖U|∂Ω − g‖² + τ/2 ‖A Z + diag ∘ U − target‖²`` (grid-shaped): the
    least-squares solution of ``[I; C] z ≈ [0; r]`` with ``C = [√β B_w; √τ A_w]``
    (:class:`DenseSolver` for one call).

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
    return DenseSolver()(Ls, terms, target, bidx, g, tau, beta, diag)


class DenseSolver:
    """:func:`dense_solve` for the Gauss–Newton steps at one kernel, which differ only in
    ``diag`` and ``target``.

    Up to ``QR_MAX_CELLS`` cells it is Householder QR of ``[I; C]`` (LAPACK gels).

    Above, QR's ``2mn²`` flops take seconds (9 s at 50²), and the normal matrix
    ``H = I + CᵀC`` squares the condition number (``1e13`` at the GP-HM initialisation at
    50², up to ``1e20`` at trial kernels, beyond a float64 Cholesky factor). Two changes make
    its Cholesky factor usable:

    - the unknowns are rotated by ``⊗Q_d`` (:func:`_rotation`, the fast diagonalisation of
      the constant-coefficient operator), in which ``H`` is nearly diagonal, and the columns
      of ``[I; C]`` are scaled to unit norm: that leaves a condition number the factor
      handles (no factorisation failed in a 40-iteration 2-D Allen–Cahn fit at 50²);
    - the factor ``R`` is the right preconditioner of CGLS on the stacked system, not the
      solver (Björck's corrected semi-normal equations): the scaled ``[I; C]`` times
      ``R⁻¹`` is orthogonal up to the factor's error, so each step gains that factor, and two or three steps reach QR's
      answer (to 6e-10 relative, measured at 50²) at a sixteenth of its cost.

    Later steps keep the factor and its column scaling as long as CGLS still converges with
    it in ``_STALE_STEPS`` steps, which saves the ``O(N³)`` SYRK and Cholesky. Where a
    factorisation fails to rounding it is retried with a small diagonal shift (``_SHIFTS``;
    CGLS then takes more steps); where every shift fails, or CGLS does not converge with a
    fresh factor, it falls back to QR.
    """

    def __init__(self) -> None:
        self._key = None
        self._factor = None  # (R, column norms c, CGLS patience) of the last factorisation

    def __call__(self, Ls, terms, target, bidx, g, tau, beta, diag=None, z0=None):
        shape = tuple(L.shape[0] for L in Ls)
        n = int(np.prod(shape))
        key = (tuple(id(L) for L in Ls), id(terms), float(tau), float(beta))
        if key != self._key:
            self._setup(Ls, terms, n)
            self._key, self._factor = key, None
        Lk, A = self._Lk, self._A
        if diag is not None:
            A = A + np.reshape(diag, (-1, 1)) * Lk
        C = np.vstack([np.sqrt(beta) * Lk[bidx], np.sqrt(tau) * A])
        r = np.concatenate([np.sqrt(beta) * np.asarray(g, dtype=np.float64), np.sqrt(tau) * np.ravel(target)])
        if self._Q is None:
            return _householder(C, r, np.ones(n)).reshape(shape)
        x = None
        if self._factor is not None:
            R, c, patience = self._factor
            x = _cgls(C / c, r, 1.0 / c, R, _STALE_STEPS, patience)
        if x is None:
            c = np.sqrt(1.0 + np.einsum("ij,ij->j", C, C))
            C /= c
            factor = _cholesky_normal(C, 1.0 / c)
            self._factor = None
            if factor is not None:
                # a shifted factor: more steps, and no stall rule (see _cgls)
                R, shift = factor
                patience = _PATIENCE if shift == 0 else _STALE_STEPS
                self._factor = (R, c, patience)
                x = _cgls(C, r, 1.0 / c, R, _CGLS_STEPS if shift == 0 else _STALE_STEPS, patience)
            if x is None:
                x = _householder(C, r, 1.0 / c)
        return mode_apply((x / c).reshape(shape), self._Q)

    def _setup(self, Ls, terms, n) -> None:
        """The kernel's part of ``C``: ``⊗L_dQ_d`` and ``A (⊗Q_d)`` (unrotated, Q None, at
        most ``QR_MAX_CELLS`` cells)."""
        self._Q = _rotation(Ls, terms) if n > QR_MAX_CELLS else None
        Q = self._Q
        self._Lk = _kron(Ls if Q is None else [L @ q for L, q in zip(Ls, Q)])
        A = np.zeros((n, n))
        for coef, mats in terms:
            op = _kron(mats if Q is None else [m @ q for m, q in zip(mats, Q)])
            A += np.reshape(coef, (-1, 1)) * op if np.ndim(coef) else float(coef) * op
        self._A = A


def _rotation(Ls, terms) -> list[np.ndarray]:
    """Per dimension the eigenvectors ``Q_d`` of the symmetric part of ``L_d⁻¹ D_d L_d``, with
    ``D_d`` the mean-coefficient sum of the operator's single-dimension terms (``W = D L``):
    the fast diagonalisation of :mod:`rankcore.pde._structured`. In ``⊗Q_d`` the normal
    matrix of a constant-coefficient operator is nearly diagonal."""
    G = [np.zeros_like(L) for L in Ls]
    for coef, mats in terms:
        moving = [d for d, (m, L) in enumerate(zip(mats, Ls)) if m is not L]
        if len(moving) == 1:
            d = moving[0]
            G[d] += float(np.mean(coef)) * scipy.linalg.solve_triangular(Ls[d], mats[d], lower=True, check_finite=False)
    return [np.linalg.eigh(0.5 * (g + g.T))[1] for g in G]


#: CGLS steps at most with a fresh factor (two or three reach round-off).
_CGLS_STEPS = 8
#: CGLS steps at most with the factor of an earlier Gauss–Newton step.
_STALE_STEPS = 40


#: Diagonal shifts tried in turn where the Cholesky factorisation of the equilibrated normal
#: matrix (unit diagonal) fails to rounding. A shifted factor still preconditions CGLS, which
#: then needs more steps (up to ``_STALE_STEPS``); QR only where every shift fails or CGLS does
#: not converge. Measured on 3-D Poisson 16³ with boundary weight 2e4 (one thread): one
#: failed factorisation in a 130-s run, whose QR fallback took 47 s of it.
_SHIFTS = (1e-12, 1e-10, 1e-8)
#: Steps without a new best residual after which CGLS stops (with an unshifted factor).
_PATIENCE = 3


def _cholesky_normal(C: np.ndarray, w: np.ndarray) -> tuple[np.ndarray, float] | None:
    """Upper Cholesky factor of ``diag(w²) + CᵀC + δI`` and its shift ``δ``: 0 where the
    matrix factorises as it is, else the first of ``_SHIFTS`` that does; None where none
    does. Each attempt factorises in place; a failed one (rare) forms the matrix again
    rather than every attempt copying it."""
    n = C.shape[1]
    for shift in (0.0,) + _SHIFTS:
        H = scipy.linalg.blas.dsyrk(1.0, C, trans=1, lower=0)
        H[np.diag_indices(n)] += w * w + shift
        R, info = scipy.linalg.lapack.dpotrf(H, lower=0, overwrite_a=1, clean=1)
        if info == 0:
            return R, shift
    return None


def _cgls(C: np.ndarray, r: np.ndarray, w: np.ndarray, R: np.ndarray, max_steps: int,
          patience: int = _PATIENCE) -> np.ndarray | None:
    """``argmin ‖w ∘ x‖² + ‖Cx − r‖²`` by CGLS on ``[diag(w); C] R⁻¹ y ≈ [0; r]`` from the
    semi-normal solution; None where it has not converged in ``max_steps`` steps, or
    ``patience`` steps without a new best (the residual of a shifted factor's iteration
    oscillates before it falls: 3.5e-10 after 9 steps, 2e-9 after 10, 6e-13 after 25,
    measured on 3-D Poisson 16³)."""

    def rsolve(v, trans):
        return scipy.linalg.solve_triangular(R, v, lower=False, trans=trans, check_finite=False)

    x = rsolve(rsolve(C.T @ r, "T"), "N")
    # The residual in two blocks. The preconditioned matrix is nearly orthogonal, so ‖s‖
    # (its normal-equation residual) is about the error in y; it stops at round-off: below
    # 1e-14 ‖y‖, or ``patience`` steps without a new best.
    y, e1, e2 = R @ x, -w * x, r - C @ x
    s = rsolve(C.T @ e2 + w * e1, "T")
    p, gamma = s.copy(), float(s @ s)
    best, since = (gamma, y.copy()), 0
    for _ in range(max_steps):
        if gamma <= (1e-14 * np.linalg.norm(y)) ** 2 or since >= patience:
            break
        v = rsolve(p, "N")
        q1, q2 = w * v, C @ v
        alpha = gamma / (float(q1 @ q1) + float(q2 @ q2))
        y += alpha * p
        e1 -= alpha * q1
        e2 -= alpha * q2
        s = rsolve(C.T @ e2 + w * e1, "T")
        new = float(s @ s)
        since += 1
        if new < best[0]:
            best, since = (new, y.copy()), 0
        p = s + (new / gamma) * p
        gamma = new
    if best[0] > (1e-10 * np.linalg.norm(best[1])) ** 2:
        return None
    return rsolve(best[1], "N")


def _householder(C: np.ndarray, r: np.ndarray, w: np.ndarray) -> np.ndarray:
    """``argmin ‖w ∘ x‖² + ‖Cx − r‖²`` by Householder QR of ``[diag(w); C]`` (LAPACK gels;
    the diagonal block keeps full column rank)."""
    n = C.shape[1]
    stacked = np.vstack([np.diag(w), C])
    rhs = np.concatenate([np.zeros(n), r])
    _, x, info = scipy.linalg.lapack.dgels(stacked, rhs, overwrite_a=True, overwrite_b=True)
    if info != 0:
        raise np.linalg.LinAlgError(f"least-squares solve for U failed (LAPACK info {info})")
    return x[:n]


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
    return objective_from_parts(Z, R, b, tau, beta)


def objective_from_parts(Z, R, b, tau, beta) -> float:
    """``J`` from the whitened values and :func:`parts`' residual and boundary misfit."""
    return 0.5 * float(np.sum(Z * Z) + beta * (b @ b) + tau * np.sum(R * R))


def kernel_adjoints(Z, Ls, terms, orders, R, b, bidx, tau, beta, dphi=None):
    """``∂J/∂K_d`` and ``∂J/∂K_d⁽ᵐ⁾`` at fixed whitened values ``Z``, per dimension
    ``[K̄⁽⁰⁾, K̄⁽¹⁾, K̄⁽²⁾]`` (None for an order no term uses; ``K⁽⁰⁾ = K_d`` with its nugget):
    contracted with the kernels' parameter derivatives, the gradient of the profiled objective
    (the envelope theorem at the minimiser ``Z``).

    Reverse mode through ``U = Z ×_d L_d``, ``W⁽ᵐ⁾ = K⁽ᵐ⁾L⁻ᵀ``, ``W⁽⁰⁾ = L`` and
    ``½ log|K| = Σ_d (N/n_d) Σ_i log L_d[i, i]``; ``L = chol(K)`` by Murray's adjoint. At fixed
    ``Z`` every step is well scaled: the same derivative at fixed ``U`` goes through ``K⁻¹``
    (``½uᵀK⁻¹u``, ``K⁽ᵐ⁾K⁻¹``), whose round-off at a nugget of 1e-6 made the profiled
    gradient point uphill at the end of runs (1-D x·sin(200x), 900 points: directional
    derivative +2e2 along the computed −∇J, whose norm was 1.4e3).

    ``R`` and ``b`` are :func:`parts`' residual and boundary misfit, ``dphi`` the
    nonlinearity's derivative ``φ′(U)`` (None without one)."""
    grid, ndim, N = Z.shape, Z.ndim, Z.size
    Rbar = tau * R
    Ubar = Rbar * dphi if dphi is not None else np.zeros(grid)
    Ubar.reshape(-1)[bidx] += beta * b
    Lbar = [np.diag(N / L.shape[0] / np.diag(L)) for L in Ls]
    Kbar: list[list[np.ndarray | None]] = [[None, None, None] for _ in Ls]

    for d in range(ndim):
        Lbar[d] += mode_gram(Ubar, Z, Ls, d)
    for (coef, mats), order in zip(terms, orders):
        A = np.asarray(coef) * Rbar
        for d, m in enumerate(order):
            Wbar = mode_gram(A, Z, mats, d)
            if m == 0:
                Lbar[d] += Wbar
                continue
            # W = K⁽ᵐ⁾L⁻ᵀ: K̄⁽ᵐ⁾ = W̄L⁻¹ and L̄ −= (W̄L⁻¹)ᵀW = K̄⁽ᵐ⁾ᵀW
            Kmbar = scipy.linalg.solve_triangular(Ls[d], Wbar.T, lower=True, trans="T", check_finite=False).T
            Kbar[d][m] = Kmbar if Kbar[d][m] is None else Kbar[d][m] + Kmbar
            Lbar[d] -= Kmbar.T @ mats[d]
    for d, L in enumerate(Ls):
        Kbar[d][0] = cholesky_adjoint(L, Lbar[d])
    return Kbar


def mode_gram(A: np.ndarray, Z: np.ndarray, mats, d: int) -> np.ndarray:
    """``unfold_d(A) · unfold_d(Z ×_{e≠d} mats[e])ᵀ``: for ``X = Z ×_e mats[e]`` and
    ``Ā = ∂f/∂X``, the adjoint ``∂f/∂mats[d]`` (``n_d × n_d``)."""
    Y = mode_apply(Z, [None if e == d else m for e, m in enumerate(mats)])
    axes = list(range(1, Z.ndim))
    return np.tensordot(np.moveaxis(A, d, 0), np.moveaxis(Y, d, 0), axes=(axes, axes))


def cholesky_adjoint(L: np.ndarray, Lbar: np.ndarray) -> np.ndarray:
    """``∂f/∂A`` from ``∂f/∂L`` for ``A = LLᵀ`` (Murray 2016): ``L⁻ᵀ Φ(LᵀL̄) L⁻¹``, ``Φ`` the
    lower triangle with the diagonal halved; symmetrised (``dA`` is symmetric)."""
    P = np.tril(L.T @ Lbar)
    P[np.diag_indices_from(P)] *= 0.5
    A1 = scipy.linalg.solve_triangular(L, P, lower=True, trans="T")  # L⁻ᵀ P
    S = scipy.linalg.solve_triangular(L, A1.T, lower=True, trans="T").T  # L⁻ᵀ P L⁻¹
    return 0.5 * (S + S.T)


def solve(Ls, terms, source, bidx, g, tau, beta, phi: Callable | None = None,
          z0: np.ndarray | None = None, solver=None, max_newton: int = 50,
          u0: np.ndarray | None = None):
    """The minimiser ``Z`` of ``J``: one linear solve, or Gauss–Newton steps for a
    nonlinearity ``phi`` (``U ↦ (φ(U), φ′(U))``).

    Each Gauss–Newton step linearises ``φ(U + δ) ≈ φ(U) + φ′(U) δ``, which leaves a linear
    problem with the extra diagonal ``φ′(U)`` and target ``f − φ(U) + φ′(U) U``; the step is
    halved until ``J`` decreases. It stops when ``J`` no longer decreases by a relative
    1e-13 (the minimiser to round-off: the envelope gradient needs a stationary point).

    ``u0`` warm-starts it with grid values from another kernel's solution: the first step
    linearises at ``u0`` and is taken whole. Its result depends on ``u0`` only, where
    starting from that solution's whitened values ``z0`` would start from ``z0 ×_d L_d``,
    grid values far from it when ``L_d`` changed (``J`` ≈ 1e70 measured at 50² cells, from
    which Gauss–Newton gains only 10× per step), and re-whitening ``u0`` through ``L_d⁻¹``
    would inflate ``‖Z‖`` as much. ``z0`` then only starts an iterative linear solver.

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
    solver = DenseSolver() if solver is None else solver
    if phi is None:
        return solver(Ls, terms, source, bidx, g, tau, beta, z0=z0), 1, True
    Z = np.zeros(tuple(L.shape[0] for L in Ls)) if z0 is None else z0
    # With u0 the first step is accepted whole: J(Z) is not the objective at u0.
    J = np.inf if u0 is not None else objective(Z, Ls, terms, source, bidx, g, tau, beta, phi)
    steps, converged = 0, False
    for steps in range(1, max_newton + 1):
        U = u0 if steps == 1 and u0 is not None else mode_apply(Z, Ls)
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
        converged = bool(np.isfinite(J)) and J - Jnew <= 1e-13 * abs(J)
        Z, J = cand, Jnew
        if converged:
            break
    return Z, steps, converged
