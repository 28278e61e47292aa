"""Tests of the structured inner solve of GP-HM (rankcore.pde._structured.solve_whitened).

The reference is the plain dense solution written here: the whitened operator
``A_w = (Σ_t diag(c_t) ⊗_d M_{t,d} + diag(s)) (⊗_d L_d)`` built with ``np.kron`` and the stacked
least-squares problem ``min ‖[I; √β B_w; √τ A_w] z − [0; √β g; √τ r]‖`` solved by
``scipy.linalg.lstsq`` (an SVD-based solver: another method, and accurate to about
``κ(M) · eps`` of the stacked matrix ``M``).

Tolerance: the PCG stops when the relative preconditioned residual is below ``rtol = 1e-13``
(≈ the relative error in the energy norm of the normal matrix, whose condition number is
``κ(M)²``), so the relative error of ``z`` is at most about ``κ(M) · rtol`` plus rounding of
both solvers, ``κ(M) · eps`` each. The test problems below have ``κ(M) ≲ 1e3`` (asserted),
so ``1e-9`` leaves a safety factor of ten over ``κ(M)·(rtol + 2 eps) ≈ 1e-10``.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given, settings
from hypothesis import strategies as st
from threadpoolctl import threadpool_limits  # a scikit-learn dependency

from rankcore.pde._gm_numpy import default_params, gm_matrices
from rankcore.pde._structured import solve_whitened

TOL = 1e-9
RTOL = 1e-13
TAU = float(np.exp(10.0))
BETA = 200.0 * TAU


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    # matrices here are ≤ 876 × 400: threads buy nothing, and on shared cores OpenBLAS's
    # spinning threads made this file 5× slower
    with threadpool_limits(limits=1, user_api="blas"):
        yield


@functools.lru_cache(maxsize=None)
def _mats(n: int, freq_scale: float = 2.0, nugget: float = 1e-6):
    """(L, D1, D2) of the gm kernel on n points of [0, 2π]; cached, never written to."""
    x = np.linspace(0.0, 2 * np.pi, n)
    L, D1, D2, _ = gm_matrices(x, *default_params(freq_scale=freq_scale), nugget=nugget)
    for a in (L, D1, D2):
        a.setflags(write=False)
    return L, D1, D2


def _faces(grid):
    mask = np.zeros(grid, dtype=bool)
    for d, n in enumerate(grid):
        idx = [slice(None)] * len(grid)
        idx[d] = 0
        mask[tuple(idx)] = True
        idx[d] = n - 1
        mask[tuple(idx)] = True
    return np.flatnonzero(mask)


def _kron(mats):
    return functools.reduce(np.kron, mats)


def _dense_reference(Ls, terms, target, bidx, g, tau, beta, diag=None):
    """z minimising the GP-HM objective, from the dense stacked least-squares problem."""
    grid = tuple(L.shape[0] for L in Ls)
    N = int(np.prod(grid))
    A = np.zeros((N, N)) if diag is None else np.diag(np.asarray(diag, dtype=float).ravel())
    for c, mats in terms:
        T = _kron([np.eye(n) if m is None else m for m, n in zip(mats, grid)])
        A += (np.diag(np.ravel(c)) @ T) if np.ndim(c) else c * T
    Lk = _kron(Ls)
    M = np.vstack([np.eye(N), np.sqrt(beta) * Lk[bidx], np.sqrt(tau) * (A @ Lk)])
    rhs = np.concatenate([np.zeros(N), np.sqrt(beta) * g, np.sqrt(tau) * np.ravel(target)])
    z = scipy.linalg.lstsq(M, rhs)[0]
    return z.reshape(grid), np.linalg.cond(M), Lk


def _problem(grid, seed=0, freq_scale=2.0):
    rng = np.random.default_rng(seed)
    mats = [_mats(n, freq_scale) for n in grid]
    Ls = [m[0] for m in mats]
    bidx = _faces(grid)
    return mats, Ls, bidx, rng.standard_normal(bidx.size), rng.standard_normal(grid), rng


def _laplacian(mats):
    D = len(mats)
    return [(1.0, [m[2] if e == d else None for e, m in enumerate(mats)]) for d in range(D)]


def _check(Ls, terms, target, bidx, g, tau=TAU, beta=BETA, diag=None, **kw):
    Z, info = solve_whitened(Ls, terms, target, bidx, g, tau, beta, diag=diag, rtol=RTOL, **kw)
    zref, cond, Lk = _dense_reference(Ls, terms, target, bidx, g, tau, beta, diag)
    assert cond < 2e3, cond  # the tolerance argument of the module docstring
    assert info["converged"]
    assert Z.shape == zref.shape
    err_z = np.linalg.norm(Z - zref) / np.linalg.norm(zref)
    U, Uref = Lk @ Z.ravel(), Lk @ zref.ravel()
    err_u = np.linalg.norm(U - Uref) / np.linalg.norm(Uref)
    assert err_z < TOL, err_z
    assert err_u < TOL, err_u
    return Z, info


# --------------------------------------------------------------------------- agreement


@pytest.mark.parametrize("grid", [(30,), (12, 10), (20, 20), (6, 5, 4)])
def test_poisson_matches_dense(grid):
    mats, Ls, bidx, g, r, _ = _problem(grid)
    _check(Ls, _laplacian(mats), r, bidx, g)


def test_grid_coefficients_first_derivative_order_zero_and_diag():
    grid = (12, 10)
    mats, Ls, bidx, g, r, rng = _problem(grid, seed=1)
    terms = [
        (1.0 + 0.3 * rng.random(grid), [mats[0][2], None]),
        (0.7, [None, mats[1][2]]),
        (0.5 * rng.standard_normal(grid), [mats[0][1], None]),  # advection in x
        (-0.4, [None, mats[1][1]]),
        (0.25, [mats[0][1], mats[1][1]]),  # a mixed term ∂x∂y
        (2.0, [None, None]),  # order 0 (Helmholtz-like shift)
    ]
    _check(Ls, terms, r, bidx, g, diag=rng.random(grid) * 3 - 1)


def test_allen_cahn_gauss_newton_diag():
    grid = (20, 20)
    mats, Ls, bidx, g, r, rng = _problem(grid, seed=2)
    x = np.linspace(0, 2 * np.pi, 20)
    u = np.outer(np.sin(x), np.cos(x))
    _check(Ls, _laplacian(mats), r, bidx, g, diag=3 * u * u - 1)


def test_interior_and_empty_boundary_indices():
    grid = (12, 10)
    mats, Ls, bidx, g, r, rng = _problem(grid, seed=3)
    # cells off the faces take the full-transform path of the boundary operator
    cells = np.concatenate([bidx[::3], [13, 57, 60]])
    _check(Ls, _laplacian(mats), r, cells, rng.standard_normal(cells.size))
    _check(Ls, _laplacian(mats), r, np.array([], dtype=np.int64), np.array([]), tau=10.0)
    _check(Ls, _laplacian(mats), r, bidx, g, beta=0.0, tau=10.0)


def test_objective_value_and_optimality():
    grid = (12, 10)
    mats, Ls, bidx, g, r, rng = _problem(grid, seed=4)
    terms = _laplacian(mats)
    Z, info = _check(Ls, terms, r, bidx, g)
    Lk = _kron(Ls)
    A = np.kron(mats[0][2], np.eye(10)) + np.kron(np.eye(12), mats[1][2])

    def J(z):
        U = Lk @ z
        return 0.5 * (z @ z + BETA * np.sum((U[bidx] - g) ** 2) + TAU * np.sum((A @ U - r.ravel()) ** 2))

    assert info["objective"] == pytest.approx(J(Z.ravel()), rel=1e-9)
    d = rng.standard_normal(Z.size) * 1e-3
    assert J(Z.ravel() + d) > J(Z.ravel())
    assert J(Z.ravel() - d) > J(Z.ravel())


@pytest.mark.parametrize("grid", [(30,), (12, 10)])
def test_dual_method_matches_dense(grid):
    # (pure Poisson: a rough diagonal s is a large perturbation of the dual model, see the
    # method's documentation)
    mats, Ls, bidx, g, r, rng = _problem(grid, seed=6)
    _check(Ls, _laplacian(mats), r, bidx, g, method="dual")
    _check(Ls, _laplacian(mats), r, bidx[:0], g[:0], tau=10.0, method="dual")


# --------------------------------------------------------------------------- behaviour


def test_warm_start():
    grid = (20, 20)
    mats, Ls, bidx, g, r, rng = _problem(grid, seed=5)
    terms = _laplacian(mats)
    Z, cold = solve_whitened(Ls, terms, r, bidx, g, TAU, BETA, rtol=1e-10)
    _, hot = solve_whitened(Ls, terms, r, bidx, g, TAU, BETA, z0=Z, rtol=1e-10)
    assert hot["iterations"] <= 1 and hot["converged"]
    # a nearby problem (the outer loop changes the kernel a little): fewer iterations warm
    r2 = r + 1e-4 * rng.standard_normal(grid)
    _, c2 = solve_whitened(Ls, terms, r2, bidx, g, TAU, BETA, rtol=1e-10)
    Z2, w2 = solve_whitened(Ls, terms, r2, bidx, g, TAU, BETA, z0=Z, rtol=1e-10)
    assert w2["converged"] and w2["iterations"] < c2["iterations"]
    zref = _dense_reference(Ls, terms, r2, bidx, g, TAU, BETA)[0]
    assert np.linalg.norm(Z2 - zref) / np.linalg.norm(zref) < 1e-7


def test_iterations_nearly_grid_independent_on_poisson():
    # the solver's default kernel initialisation (freq_scale = 20) on two grid sizes
    counts = []
    for n in (24, 48):
        mats = [_mats(n, 20.0)] * 2
        x = np.linspace(0, 2 * np.pi, n)
        u = np.outer(np.sin(3 * x), np.sin(2 * x))
        bidx = _faces((n, n))
        _, info = solve_whitened([mats[0][0]] * 2, _laplacian(mats), -13 * u, bidx, u.ravel()[bidx], TAU, BETA,
                                 rtol=1e-10)
        assert info["converged"]
        counts.append(info["iterations"])
    assert max(counts) <= 30, counts


def test_maxiter_reports_not_converged():
    mats, Ls, bidx, g, r, _ = _problem((12, 10))
    Z, info = solve_whitened(Ls, _laplacian(mats), r, bidx, g, TAU, BETA, maxiter=1)
    assert info["iterations"] == 1 and not info["converged"]
    assert np.all(np.isfinite(Z))
    assert info["residual"] > 0


def test_converged_needs_the_true_residual(monkeypatch):
    # A poor preconditioner's norm can make the stopping quantity small while the true
    # residual is not (GP-HM advection on 32 × 256 "converged" to U = 0 with a true residual
    # of 6e-3): a CG that claims rtol without moving y must not be reported converged.
    import rankcore.pde._structured as structured

    mats, Ls, bidx, g, r, _ = _problem((12, 10))
    monkeypatch.setattr(structured, "_pcg", lambda op, prec, b, y, rtol, maxiter: (y, 1, [1.0, 0.0]))
    Z, info = solve_whitened(Ls, _laplacian(mats), r, bidx, g, TAU, BETA)
    assert info["precond_residual"] == 0.0 and info["residual"] == pytest.approx(1.0)
    assert not info["converged"]


def test_drifted_recurrence_restarts_from_the_true_residual(monkeypatch):
    # CG's recurrence residual can drift from the true one (a 3-D trial kernel at 64³ claimed
    # 8.5e-13 with a true residual of 265): a claimed convergence whose true residual is not
    # below √rtol restarts CG from where it stopped, and then reaches the minimiser
    import rankcore.pde._structured as structured

    real = structured._pcg
    calls = []

    def drifting(op, prec, b, y, rtol, maxiter):
        calls.append(maxiter)
        if len(calls) == 1:  # stops at once, claiming convergence at y = 0
            return y, 3, [1.0, 0.5, 1e-16]
        return real(op, prec, b, y, rtol, maxiter)

    monkeypatch.setattr(structured, "_pcg", drifting)
    mats, Ls, bidx, g, r, _ = _problem((12, 10))
    Z, info = _check(Ls, _laplacian(mats), r, bidx, g, maxiter=500)
    assert len(calls) == 2 and calls[1] == 497
    assert info["history"][:3] == [1.0, 0.5, 1e-16] and info["iterations"] > 3


def _first_order(mats, kind):
    """Advection 200 ∂x + Σ ∂_d (first order in every dimension) or heat −∂²x + Σ ∂_d (mixed)."""
    D = len(mats)
    first = (-1.0, [mats[0][2]] + [None] * (D - 1)) if kind == "heat" else (200.0, [mats[0][1]] + [None] * (D - 1))
    return [first] + [(1.0, [m[1] if e == d else None for e, m in enumerate(mats)]) for d in range(1, D)]


@pytest.mark.parametrize("grid", [(12, 10), (20, 16), (6, 5, 4)])
@pytest.mark.parametrize("kind", ["advection", "heat"])
def test_first_order_operators_match_dense(grid, kind):
    # a dimension with first derivatives only is modelled by its antisymmetric part
    # (eigenvalues iμ, complex eigenvectors): the preconditioner works in complex, the CG in
    # real Schur coordinates
    from rankcore.pde import _structured

    mats, Ls, bidx, g, r, _ = _problem(grid)
    terms = _first_order(mats, kind)
    prec = _structured._Preconditioner(Ls, _structured._check_terms(terms, grid), None, bidx, TAU, BETA)
    assert prec.dtype == np.complex128
    assert [np.iscomplexobj(q) for q in prec.Q] == [kind == "advection"] + [True] * (len(grid) - 1)
    Z, info = _check(Ls, terms, r, bidx, g)
    assert Z.dtype == np.float64 and info["iterations"] < 40


def test_antisymmetric_model_eigen_and_real_schur_coordinates():
    # G = L⁻¹ D⁽¹⁾ L is antisymmetric; its complex eigenvectors Q = Q_r U diagonalise it with
    # λ = ±iμ, U is unitary and maps real coordinates to complex ones and back exactly
    from rankcore.pde import _structured

    L, D1, _ = _mats(15)
    G = scipy.linalg.solve_triangular(L, D1 @ L, lower=True)
    G = 0.5 * (G - G.T)
    lam, Qr, first = _structured._eig_model(G)
    assert first.size == 7 and np.allclose(Qr.T @ Qr, np.eye(15), atol=1e-13)
    basis = _structured._PairBasis([first])
    U = basis.matrix(0, 15)
    Q = Qr @ U
    assert np.allclose(U.conj().T @ U, np.eye(15), atol=1e-15)
    assert np.allclose(Q.conj().T @ G @ Q, np.diag(lam), atol=1e-12 * np.abs(G).max())
    assert np.all(lam.real == 0) and np.allclose(np.sort(lam.imag), -np.sort(lam.imag)[::-1])
    x = np.random.default_rng(0).standard_normal(15)
    assert np.allclose(basis.to_complex(x), U.conj().T @ x, atol=1e-15)
    assert np.allclose(basis.to_real(basis.to_complex(x)), x, atol=1e-15)


@pytest.mark.parametrize("kind", ["advection", "heat"])
def test_two_level_first_order_converges_where_the_primal_stalls(kind):
    """As the second-order test below, with complex coarse blocks. Tolerance: the dense
    reference is accurate to about κ(M)·eps and the PCG to κ(M)·rtol in z; κ(M) is 3.3e5
    (advection) and 1e4 (heat) here, so 1e-7 leaves a factor of three."""
    mats, Ls, bidx, g, r, _ = _problem((30, 30), freq_scale=1.0)
    terms = _first_order(mats, kind)
    zref, cond, _ = _dense_reference(Ls, terms, r, bidx, g, TAU, BETA)
    assert cond < 4e5, cond
    Zp, ip = solve_whitened(Ls, terms, r, bidx, g, TAU, BETA, rtol=RTOL, maxiter=500, method="primal")
    Zt, it = solve_whitened(Ls, terms, r, bidx, g, TAU, BETA, rtol=RTOL, maxiter=500)
    assert not ip["converged"] and np.linalg.norm(Zp - zref) > 1e-2 * np.linalg.norm(zref)
    assert it["converged"] and it["coarse"] > 0
    assert np.linalg.norm(Zt - zref) < 1e-7 * np.linalg.norm(zref)


def test_dual_method_refuses_a_first_order_model():
    mats, Ls, bidx, g, r, _ = _problem((12, 10))
    with pytest.raises(ValueError, match="method='dual'"):
        solve_whitened(Ls, _first_order(mats, "advection"), r, bidx, g, TAU, BETA, method="dual")


def test_zero_problem_and_inputs_unchanged():
    mats, Ls, bidx, g, r, _ = _problem((12, 10))
    Z, info = solve_whitened(Ls, _laplacian(mats), np.zeros((12, 10)), bidx, np.zeros(bidx.size), TAU, BETA)
    assert np.all(Z == 0) and info["converged"]
    terms = [(np.ones((12, 10)), [mats[0][2], None]), (1.0, [None, mats[1][2]])]
    args = [[L.copy() for L in Ls], r.copy(), bidx.copy(), g.copy(), np.ones((12, 10)), np.zeros((12, 10))]
    Ls2 = [L.copy() for L in Ls]
    solve_whitened(Ls2, terms, r, bidx, g, TAU, BETA, diag=args[4], z0=args[5])
    for a, b in zip(Ls2, args[0]):
        assert np.array_equal(a, b)
    for a, b in zip([r, bidx, g, args[4], args[5]], args[1:]):
        assert np.array_equal(a, b)
    assert np.array_equal(terms[0][0], np.ones((12, 10)))


@settings(max_examples=12, deadline=None)
@given(
    grid=st.sampled_from([(9,), (16,), (7, 6), (10, 8), (5, 11)]),
    seed=st.integers(0, 2**31 - 1),
    log_tau=st.floats(0.0, 10.0),
    with_diag=st.booleans(),
    fortran=st.booleans(),
)
def test_property_matches_dense(grid, seed, log_tau, with_diag, fortran):
    mats, Ls, bidx, g, r, rng = _problem(grid, seed=seed)
    if fortran:  # memory order of the inputs must not matter
        r = np.asfortranarray(r)
        Ls = [np.asfortranarray(L) for L in Ls]
    tau = float(np.exp(log_tau))
    diag = rng.random(grid) if with_diag else None
    _check(Ls, _laplacian(mats), r, bidx, g, tau=tau, beta=200 * tau, diag=diag)


# --------------------------------------------------------------------------- two-level


@pytest.mark.parametrize("grid, freq_scale, with_diag", [
    ((30, 30), 1.0, False),
    ((36, 36), 1.5, True),
    ((16, 14, 12), 0.3, True),  # the dense reference: about 8 s
])
def test_two_level_converges_where_the_primal_stalls(grid, freq_scale, with_diag):
    """Grids that resolve frequencies far above the kernel's band: the diagonal
    preconditioner is blind to a few 1-D directions per dimension, and the primal CG stops
    (stagnation) with z wrong by 0.2–80 %; the two-level method (coarse space of every
    direction with a blind 1-D factor) reaches the dense minimiser. Tolerance: the dense
    reference is accurate to about κ(M)·eps and the PCG to κ(M)·rtol in z, with κ(M) below
    1e5 here (asserted): 1e-8 leaves a factor of ten."""
    mats, Ls, bidx, g, r, rng = _problem(grid, freq_scale=freq_scale)
    terms = _laplacian(mats)
    diag = rng.random(grid) if with_diag else None
    zref, cond, _ = _dense_reference(Ls, terms, r, bidx, g, TAU, BETA, diag)
    assert cond < 1e5, cond
    Zp, ip = solve_whitened(Ls, terms, r, bidx, g, TAU, BETA, diag=diag, rtol=RTOL, maxiter=500, method="primal")
    Zt, it = solve_whitened(Ls, terms, r, bidx, g, TAU, BETA, diag=diag, rtol=RTOL, maxiter=2000)
    assert not ip["converged"] and np.linalg.norm(Zp - zref) > 1e-3 * np.linalg.norm(zref)
    assert it["converged"] and it["coarse"] > 0
    assert np.linalg.norm(Zt - zref) < 1e-8 * np.linalg.norm(zref)
    assert it["objective"] <= ip["objective"]


def test_two_level_without_blind_directions_is_the_primal():
    mats, Ls, bidx, g, r, _ = _problem((12, 10))  # freq_scale 2 covers these grids' frequencies
    Zp, ip = solve_whitened(Ls, _laplacian(mats), r, bidx, g, TAU, BETA, method="primal")
    Zt, it = solve_whitened(Ls, _laplacian(mats), r, bidx, g, TAU, BETA, method="two_level")
    assert it["coarse"] == 0 and np.array_equal(Zp, Zt)


def test_two_level_with_capped_blocks_still_reaches_the_minimiser(monkeypatch):
    """Coarse blocks over ``_BLOCK_ENTRIES`` keep only their dimensions' most blind
    directions: the preconditioner stays SPD (a sum of SPD parts) and the CG still reaches
    the dense minimiser, in more iterations. Cap of 4000 entries on 30² (blind directions
    ≥ 9 per dimension): the ``X₁⊗X₂`` block keeps 7 of them per dimension. Tolerance as in
    the test above."""
    from rankcore.pde import _structured

    mats, Ls, bidx, g, r, _ = _problem((30, 30), freq_scale=1.0)
    terms = _laplacian(mats)
    zref, cond, _ = _dense_reference(Ls, terms, r, bidx, g, TAU, BETA, None)
    assert cond < 1e5, cond
    monkeypatch.setattr(_structured, "_BLOCK_ENTRIES", 4000)
    prec = _structured._Preconditioner(Ls, terms, None, bidx, TAU, BETA)
    X = [_structured._blind_directions(V, lam, TAU) for V, lam in zip(prec.V, prec.lams)]
    assert min(x.shape[1] for x in X) >= 9, [x.shape[1] for x in X]
    blocks = _structured._BlindBlocks(prec, X, TAU, BETA).blocks
    assert [len(XS) and XS[0].shape[1] for S, _, XS, _ in blocks if len(S) == 2] == [7]
    Z, info = solve_whitened(Ls, terms, r, bidx, g, TAU, BETA, rtol=RTOL)
    assert info["converged"] and np.linalg.norm(Z - zref) < 1e-8 * np.linalg.norm(zref)


def _dense_model(prec, S, X, tau, beta):
    """``Z_Sᵀ H̃_S Z_S`` densely: ``H`` of the constant-coefficient model (``⊕Λ_d + σ``, every
    boundary face whole, weighted by the fraction of its cells given) with every factor of a
    dimension outside ``S`` replaced by its diagonal, ``Z_S = ⊗(X_d if d ∈ S else I)``."""
    ndim, grid = len(prec.grid), prec.grid

    def model(d, M):
        return M if d in S else np.diag(np.diag(M))

    def kron(ms):
        return functools.reduce(np.kron, ms)

    F = [model(d, v.conj().T @ v) for d, v in enumerate(prec.V)]
    A = np.full(int(np.prod(grid)), prec.shift, dtype=prec.dtype)
    for d in range(ndim):
        A += kron([np.diag(prec.lams[d]) if e == d else np.eye(grid[e]) for e in range(ndim)]).diagonal()
    H = np.eye(A.size) + tau * (A.conj()[:, None] * kron(F) * A[None, :])
    for d, side, pos, _ in prec.faces.groups:
        row = prec.V[d][side]
        frac = pos.size * grid[d] / A.size
        H += beta * frac * kron([model(e, np.outer(row.conj(), row)) if e == d else F[e] for e in range(ndim)])
    Z = kron([X[d] if d in S else np.eye(grid[d]) for d in range(ndim)])
    return Z.conj().T @ H @ Z


@pytest.mark.parametrize("grid, first_order", [((9, 7), False), ((6, 5, 4), False), ((9, 7), True), ((6, 5, 4), True)])
def test_two_level_blocks_are_the_model_galerkin_matrices(grid, first_order):
    """Each coarse block's inverse (built from Kronecker products of ``r_d × r_d`` matrices,
    block by block) equals the inverse of the model Galerkin matrix formed densely. Random
    orthonormal ``X_d`` (2 per dimension; complex for a first-order operator, whose model is
    complex), an order-0 term and a diagonal ``s`` for a shift; tolerance: both sides invert
    matrices of condition ≲ 1e8 (τ = e³ here) in float64."""
    from rankcore.pde import _structured

    mats, Ls, bidx, g, r, rng = _problem(grid, freq_scale=1.0)
    deriv = [m[1] for m in mats] if first_order else [m[2] for m in mats]
    terms = [((d + 1.0) * (3 if first_order else 1), [M if e == d else None for e in range(len(grid))])
             for d, M in enumerate(deriv)] + [(0.5, [None] * len(grid))]
    tau, beta = float(np.exp(3.0)), 200 * float(np.exp(3.0))
    prec = _structured._Preconditioner(Ls, terms, rng.random(grid), bidx, tau, beta)
    assert prec.dtype == (np.complex128 if first_order else np.float64)

    def random_basis(n):
        A = rng.standard_normal((n, 2))
        return np.linalg.qr(A + 1j * rng.standard_normal((n, 2)) if first_order else A)[0]

    X = [random_basis(n) for n in grid]
    blocks = _structured._BlindBlocks(prec, X, tau, beta).blocks
    assert len(blocks) == 2 ** len(grid) - 1
    for S, O, _, inverse in blocks:
        # the code orders each block's unknowns as (other dims, S dims); the dense model
        # as the grid's dims: permute before comparing
        E = _dense_model(prec, S, X, tau, beta)
        shape = [2 if d in S else grid[d] for d in range(len(grid))]
        perm = np.arange(E.shape[0]).reshape(shape).transpose(O + S).reshape(-1, 2 ** len(S))
        m = perm.shape[1]
        got = np.stack([inverse(np.tile(e, (perm.shape[0], 1))) for e in np.eye(m)], axis=2)  # J × m × m
        for J in range(perm.shape[0]):
            idx = perm[J]
            Einv = np.linalg.inv(E[np.ix_(idx, idx)])
            assert np.allclose(got[J], Einv, rtol=1e-6, atol=1e-9 * np.abs(Einv).max())
            # and the model has no coupling between different J
            others = np.setdiff1d(np.arange(E.shape[0]), idx)
            assert others.size == 0 or np.abs(E[np.ix_(idx, others)]).max() <= 1e-12 * np.abs(E).max()


# --------------------------------------------------------------------------- bad input


def _good():
    mats, Ls, bidx, g, r, _ = _problem((12, 10))
    return dict(Ls=Ls, terms=_laplacian(mats), target=r, bidx=bidx, g=g, tau=TAU, beta=BETA)


@pytest.mark.parametrize(
    "change, exc, match",
    [
        (dict(Ls=[]), TypeError, "Ls"),
        (dict(Ls="x"), TypeError, "Ls"),
        (dict(Ls=[np.ones((12, 11)), np.eye(10)]), ValueError, r"Ls\[0\]"),
        (dict(Ls=[np.ones((12, 12)), np.eye(10)]), ValueError, "lower triangular"),
        (dict(Ls=[np.eye(12), np.diag(np.r_[0.0, np.ones(9)])]), ValueError, "singular"),
        (dict(Ls=[np.full((12, 12), np.nan), np.eye(10)]), ValueError, "finite"),
        (dict(terms=[]), TypeError, "terms"),
        (dict(terms=[(1.0,)]), TypeError, r"terms\[0\]"),
        (dict(terms=[(1.0, [None])]), ValueError, r"terms\[0\]"),
        (dict(terms=[(1.0, [np.eye(11), None])]), ValueError, r"terms\[0\] matrix 0"),
        (dict(terms=[(np.ones((10, 12)), [None, None])]), ValueError, "coefficient"),
        (dict(terms=[(np.inf, [None, None])]), ValueError, "coefficient"),
        (dict(terms=[("a", [None, None])]), TypeError, "coefficient"),
        (dict(target=np.ones(120)), ValueError, "target"),
        (dict(target=np.full((12, 10), np.nan)), ValueError, "target"),
        (dict(bidx=np.array([0.5])), TypeError, "bidx"),
        (dict(bidx=np.array([0, 120]), g=np.zeros(2)), ValueError, "bidx"),
        (dict(bidx=np.array([-1]), g=np.zeros(1)), ValueError, "bidx"),
        (dict(bidx=np.array([3, 3]), g=np.zeros(2)), ValueError, "repeat"),
        (dict(g=np.zeros(3)), ValueError, "g must"),
        (dict(g=None), TypeError, "g must"),
        (dict(tau=-1.0), ValueError, "tau"),
        (dict(tau=np.nan), ValueError, "tau"),
        (dict(beta="big"), TypeError, "beta"),
        (dict(diag=np.ones((3, 3))), ValueError, "diag"),
        (dict(z0=np.full((12, 10), np.inf)), ValueError, "z0"),
        (dict(rtol=0.0), ValueError, "rtol"),
        (dict(rtol=2.0), ValueError, "rtol"),
        (dict(maxiter=-1), ValueError, "maxiter"),
        (dict(maxiter=2.5), ValueError, "maxiter"),
        (dict(method="lsqr"), ValueError, "method"),
    ],
)
def test_bad_input(change, exc, match):
    kw = _good()
    kw.update(change)
    with pytest.raises(exc, match=match):
        solve_whitened(**kw)


def test_gm_matrices_match_finite_differences():
    # K' and K'' of the numpy gm kernel against central differences of k(x − x_j) in x
    x = np.linspace(0.0, 2.0, 7)
    w, f, ell = default_params(q=5, freq_scale=3.0, lengthscale=0.7)
    L, D1, D2, K = gm_matrices(x, w, f, ell, nugget=1e-6)
    h = 1e-4

    def k_at(shift):
        return _k(x + shift, x, w, f, ell)

    K1 = (k_at(h) - k_at(-h)) / (2 * h)
    K2 = (k_at(h) - 2 * k_at(0.0) + k_at(-h)) / h**2
    Kn = K + 1e-6 * np.eye(7)
    np.testing.assert_allclose(L @ L.T, Kn, rtol=0, atol=1e-14)
    # central-difference truncation h²|k⁽³⁾|/6 and h²|k⁽⁴⁾|/12 with |k⁽ᵐ⁾| ≤ (2π·3)ᵐ: 1.1e-5, 1.0e-4
    np.testing.assert_allclose(D1 @ Kn, K1, rtol=0, atol=2e-5)
    np.testing.assert_allclose(D2 @ Kn, K2, rtol=0, atol=2e-4)


def _k(xa, xb, w, f, ell):
    r = xa[:, None] - xb[None, :]
    return sum(wq * np.exp(-(r**2) / (2 * lq**2)) * np.cos(2 * np.pi * fq * r) for wq, fq, lq in zip(w, f, ell))
