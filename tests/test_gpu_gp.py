"""``GridGPRegressor`` on the device (``rankcore._gpu.gp``), with NumPy standing in for cupy.

The device orchestration is compared with the CPU (Rust) path on the same data, and with
references computed another way (finite differences, dense Gaussian algebra, Monte Carlo).
Tolerances, and why:

- 1-D kernels and their hyperparameter derivatives: the same closed forms as ``kernels.rs``
  evaluated elementwise in float64: 1e-14 relative to the largest entry (a few ulp).
- LML and its gradient on the *same* eigendecomposition (the Rust ``kron_eigh`` factors fed
  to both): the same sums in another order: 1e-12 relative (float64).
- Through the estimators, each path diagonalises its own kernel matrices (LAPACK here, faer
  in Rust); eigenvectors agree to rounding over the spectral gap, and the well-conditioned
  problems here (σ² ≥ 1e-3 relative to the signal) keep the LML within 1e-9 relative and
  the gradient within 1e-7 of its scale (``‖g‖ + 1``); predictions within 1e-8 relative of
  the largest value, standard deviations 1e-7.
- Gradient vs central finite differences of the device LML (step 1e-5 in log space):
  truncation error ~1e-10·‖f'''‖, checked at 1e-5 relative.
- Fitted hyperparameters: both paths run L-BFGS-B from the same start on objectives equal
  to ~1e-10, so they follow the same iterates to the optimizer's tolerance: log-θ within
  1e-4, LML within 1e-8 relative.
- Incomplete grids: α by PCG at ``cg_tol = 1e-10`` on both sides: LML 1e-8 relative.
- float32: the Kronecker algebra in float32 on both sides (sums in float64): 1e-4 relative.
- Posterior samples and the Monte Carlo variance come from the device generator (its own
  stream), so they are compared with the exact moments statistically (bounds at ≥ 4σ of
  the Monte Carlo error, stated per test).

"No host round trip": the Rust GP and Kronecker entry points are patched to raise while the
device path runs (``block_host``).
"""

from __future__ import annotations

import importlib
import types

import numpy as np
import pytest
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

from rankcore import _core
from rankcore.gp import (
    GridGPRegressor,
    Matern1D,
    Periodic1D,
    ProductKernel,
    RationalQuadratic1D,
    RBF1D,
    SpectralMixture1D,
)

from test_gpu_tucker import Dev, dev

gg = importlib.import_module("rankcore._gpu.gp")
gkm = importlib.import_module("rankcore._gpu.kron")


@pytest.fixture
def fake_device(monkeypatch):
    """:class:`Dev` arrays take the device path, with NumPy as their namespace."""
    import rankcore._gpu._arrays as ga
    import rankcore._gpu.tucker as gt
    import rankcore.gp as cpu_gp

    real = ga.array_module

    def array_module(x):
        return np if isinstance(x, Dev) else real(x)

    for mod in (ga, gt, gkm, gg, cpu_gp):
        monkeypatch.setattr(mod, "array_module", array_module)
    return dev


@pytest.fixture
def block_host(monkeypatch):
    """Call it (after computing the CPU references) to make every Rust GP/Kronecker entry
    point raise: the device orchestration must not use them."""

    def boom(*a, **k):
        raise AssertionError("the device orchestration called the host (Rust) path")

    def block():
        for name in dir(_core):
            if name.startswith(("gp_", "kron_")):
                monkeypatch.setattr(_core, name, boom)

    return block


def grid_points(*axes):
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


AX = [np.linspace(0, 1, 9), np.linspace(0, 2, 7)]


def _y(axes=AX, seed=0, targets=None):
    rng = np.random.default_rng(seed)
    X = grid_points(*axes)
    y = np.sin(3 * X[:, 0]) * np.cos(2 * X[:, 1]) + 0.3 * X[:, 1] + 0.05 * rng.standard_normal(len(X))
    if targets:
        y = np.stack([y * (t + 1) + t for t in range(targets)], axis=1)
    return X, y


# ---------------------------------------------------------------------------------------
# 1-D kernels


KINDS = [
    ("rbf", [0.7]), ("matern12", [0.4]), ("matern32", [0.9]), ("matern52", [0.5]), ("rq", [0.6, 1.7]),
    ("periodic", [0.8, 1.3]), ("sm", [0.7, 0.3, 0.2, 0.9, 0.5, 0.4]), ("stm", [0.7, 0.3, 0.2, 0.9, 0.5, 0.4]),
]


@pytest.mark.parametrize("kind,params", KINDS)
def test_kernels_and_hyperparameter_derivatives_match_the_rust_core(kind, params):
    x1 = np.array([-1.3, -0.2, 0.0, 0.35, 0.9, 2.1])
    x2 = np.array([-0.7, 0.0, 0.35, 1.6])
    p = np.asarray(params, dtype=np.float64)
    want = _core.gp_kernel_matrix(kind, p, x1, x2, 0, 0)
    got = gg.kernel_value(kind, p, x1[:, None] - x2[None, :])
    np.testing.assert_allclose(got, want, rtol=0, atol=1e-14 * np.abs(want).max())
    for g, w in zip(gg.kernel_grads(kind, p, x1[:, None] - x2[None, :]), _core.gp_kernel_grads(kind, p, x1, x2), strict=True):
        np.testing.assert_allclose(g, w, rtol=0, atol=1e-14 * max(np.abs(w).max(), 1e-300))


def test_unknown_kernel_kind_is_a_clear_not_implemented_error():
    with pytest.raises(NotImplementedError, match="'spline'"):
        gg.kernel_value("spline", [1.0], np.zeros((2, 2)))
    with pytest.raises(NotImplementedError, match="'spline'"):
        gg.kernel_grads("spline", [1.0], np.zeros((2, 2)))


# ---------------------------------------------------------------------------------------
# LML and gradient on the same eigendecomposition


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_lml_and_gradient_match_the_rust_core_on_the_same_factors(dtype):
    axes = [np.linspace(0, 1, 6), np.linspace(0, 1.5, 5), np.linspace(-1, 1, 4)]
    Ks = [np.exp(-0.5 * (a[:, None] - a[None, :]) ** 2 / l**2).astype(dtype) for a, l in zip(axes, (0.4, 0.6, 0.9))]
    qs, lams = _core.kron_eigh(Ks)
    qs = [np.ascontiguousarray(q) for q in qs]
    Y = np.random.default_rng(1).standard_normal((2, 120)).astype(dtype)
    want = _core.gp_lml(qs, list(lams), 1.7, 0.05, Y, True)
    got = gg.lml_full(qs, list(lams), 1.7, 0.05, Y, True)
    tol = 1e-12 if dtype == np.float64 else 2e-5
    assert got["value"] == pytest.approx(want["value"], rel=tol)
    assert got["d_scale"] == pytest.approx(want["d_scale"], rel=tol, abs=tol)
    assert got["d_noise"] == pytest.approx(want["d_noise"], rel=tol, abs=tol)
    np.testing.assert_allclose(got["alpha"], want["alpha"], rtol=0, atol=tol * 10 * np.abs(want["alpha"]).max())
    for R, W in zip(got["d_factor"], want["d_factor"], strict=True):
        np.testing.assert_allclose(R, W, rtol=0, atol=tol * 10 * np.abs(W).max())


def test_lml_offset_and_incomplete_match_the_cpu_helpers():
    import rankcore.gp as G

    axes = [np.linspace(0, 1, 7), np.linspace(0, 2, 6)]
    Ks = [np.exp(-0.5 * (a[:, None] - a[None, :]) ** 2 / 0.5**2) for a in axes]
    qs, lams = _core.kron_eigh(Ks)
    qs = [np.ascontiguousarray(q) for q in qs]
    Y = np.random.default_rng(2).standard_normal((2, 42))
    want = G._lml_offset(qs, list(lams), 1.3, 0.02, 0.8, Y, True)
    got = gg.lml_offset(qs, list(lams), 1.3, 0.02, 0.8, Y, True)
    for key in ("value", "d_scale", "d_noise", "d_offset"):
        assert got[key] == pytest.approx(want[key], rel=1e-12), key
    np.testing.assert_allclose(got["offset"].v, want["offset"].v, rtol=1e-12)
    obs = np.array([0, 1, 2, 5, 8, 9, 13, 20, 21, 22, 30, 33, 34, 40, 41], dtype=np.int64)
    nz = np.linspace(0.01, 0.05, len(obs))
    y = Y[0, obs].copy()
    want = _core.gp_lml_incomplete(qs, list(lams), 1.3, obs, nz, y, 1e-12, 500, True)
    got = gg.lml_incomplete(qs, list(lams), 1.3, obs, nz, y, 1e-12, 500, True)
    assert got["converged"] and got["n_iter"] == pytest.approx(want["n_iter"], abs=2)
    for key in ("value", "d_scale", "d_noise"):
        assert got[key] == pytest.approx(want[key], rel=1e-9), key
    for R, W in zip(got["d_factor"], want["d_factor"], strict=True):
        np.testing.assert_allclose(R, W, rtol=0, atol=1e-9 * np.abs(W).max())


# ---------------------------------------------------------------------------------------
# Through the estimator


KERNELS = {
    "sk_ard_white": lambda: ConstantKernel(1.2) * RBF([0.4, 0.7]) + WhiteKernel(0.01),
    "sk_iso_offset": lambda: ConstantKernel(0.9) * RBF(0.5) + ConstantKernel(0.4) + WhiteKernel(0.02),
    "sk_default": lambda: None,
    "matern_rq": lambda: ProductKernel([Matern1D(0.4, nu=0.5), RationalQuadratic1D(0.6, 2.0)], 1.1, 0.01),
    "matern_periodic": lambda: ProductKernel([Matern1D(0.5, nu=1.5), Periodic1D(0.9, 1.4)], 0.8, 0.02),
    "m52_sm": lambda: ProductKernel([Matern1D(0.5, nu=2.5), SpectralMixture1D([0.6, 0.4], [0.2, 0.5], [0.5, 0.8])], 1.0, 0.02),
}


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_lml_and_gradient_match_the_cpu_estimator_and_finite_differences(fake_device, block_host, name):
    X, y = _y()
    alpha = 1e-2 if name == "sk_default" else 1e-10
    cpu = GridGPRegressor(KERNELS[name](), optimizer=None, alpha=alpha).fit(X, y)
    theta = cpu._model.theta()
    thetas = [theta, theta + 0.3 * np.sin(np.arange(len(theta)) + 1)]
    refs = [cpu.log_marginal_likelihood(t, eval_gradient=True) for t in thetas]
    block_host()
    gpu = GridGPRegressor(KERNELS[name](), optimizer=None, alpha=alpha).fit(dev(X), dev(y))
    assert gpu.log_marginal_likelihood_value_ == pytest.approx(cpu.log_marginal_likelihood_value_, rel=1e-9)
    for t, (v, g) in zip(thetas, refs):
        gv, gg_ = gpu.log_marginal_likelihood(t, eval_gradient=True)
        assert gv == pytest.approx(v, rel=1e-9)
        np.testing.assert_allclose(gg_, g, rtol=0, atol=1e-7 * (np.abs(g).max() + 1))
        h = 1e-5
        fd = np.array([(gpu.log_marginal_likelihood(t + h * e) - gpu.log_marginal_likelihood(t - h * e)) / (2 * h)
                       for e in np.eye(len(t))])
        np.testing.assert_allclose(gg_, fd, rtol=1e-5, atol=1e-5 * (np.abs(fd).max() + 1))


@pytest.mark.parametrize("name", ["sk_ard_white", "sk_iso_offset", "matern_rq"])
def test_fitted_hyperparameters_predictions_and_std_match_the_cpu(fake_device, block_host, name):
    X, y = _y()
    y = y + 1.5  # a mean the constant term can pick up
    perm = np.random.default_rng(5).permutation(len(X))  # any row order
    X, y = X[perm], y[perm]
    cpu = GridGPRegressor(KERNELS[name]()).fit(X, y)
    Xs = np.random.default_rng(6).random((7, 2)) * [1, 2]
    Xg = grid_points(np.linspace(0, 1, 5), np.linspace(0, 2, 4))
    refs = [cpu.predict(Z, return_std=True) for Z in (X, Xs, Xg)]
    covs = cpu.predict(Xs, return_cov=True)
    block_host()
    gpu = GridGPRegressor(KERNELS[name]()).fit(dev(X), dev(y))
    np.testing.assert_allclose(gpu._model.theta(), cpu._model.theta(), rtol=0, atol=1e-4)
    assert gpu.log_marginal_likelihood_value_ == pytest.approx(cpu.log_marginal_likelihood_value_, rel=1e-8)
    assert gpu.n_iter_ > 0 and gpu.incomplete_ is False and gpu.grid_shape_ == (9, 7)
    np.testing.assert_allclose(gpu.alpha_, cpu.alpha_, rtol=0, atol=1e-5 * np.abs(cpu.alpha_).max())
    # predictions at the optimum each path found; compare at the CPU's theta for tightness
    gpu = GridGPRegressor(cpu.kernel_, optimizer=None).fit(dev(X), dev(y))
    for Z, (m, s) in zip((X, Xs, Xg), refs):
        gm, gs = gpu.predict(dev(Z), return_std=True)
        np.testing.assert_allclose(gm, m, rtol=0, atol=1e-8 * np.abs(m).max())
        np.testing.assert_allclose(gs, s, rtol=1e-7, atol=1e-9)
    gm, gc = gpu.predict(dev(Xs), return_cov=True)
    np.testing.assert_allclose(gc, covs[1], rtol=0, atol=1e-8 * np.abs(covs[1]).max())


def test_multi_target_and_normalize_y_match_the_cpu(fake_device, block_host):
    X, y = _y(targets=3)
    k = ConstantKernel(1.0) * RBF([0.5, 0.5]) + WhiteKernel(0.01)
    cpu = GridGPRegressor(k, normalize_y=True).fit(X, y)
    Xs = np.random.default_rng(7).random((6, 2)) * [1, 2]
    m, s = cpu.predict(Xs, return_std=True)
    block_host()
    gpu = GridGPRegressor(k, normalize_y=True).fit(dev(X), dev(y))
    np.testing.assert_allclose(gpu._model.theta(), cpu._model.theta(), rtol=0, atol=1e-4)
    gpu = GridGPRegressor(cpu.kernel_, normalize_y=True, optimizer=None).fit(dev(X), dev(y))
    gm, gs = gpu.predict(dev(Xs), return_std=True)
    assert gm.shape == (6, 3) and gs.shape == (6, 3)
    np.testing.assert_allclose(gm, m, rtol=0, atol=1e-8 * np.abs(m).max())
    np.testing.assert_allclose(gs, s, rtol=1e-7)


def test_float32_is_kept_and_close_to_the_cpu_float32_path(fake_device, block_host):
    X, y = _y()
    X, y = X.astype(np.float32), y.astype(np.float32)
    k = ConstantKernel(1.0) * RBF([0.4, 0.7]) + WhiteKernel(0.01)
    cpu = GridGPRegressor(k, optimizer=None).fit(X, y)
    m, s = cpu.predict(X[:5], return_std=True)
    block_host()
    gpu = GridGPRegressor(k, optimizer=None).fit(dev(X), dev(y))
    assert gpu._dtype == np.float32 and gpu._qs[0].dtype == np.float32 and gpu.alpha_.dtype == np.float32
    assert gpu.log_marginal_likelihood_value_ == pytest.approx(cpu.log_marginal_likelihood_value_, rel=1e-4)
    gm, gs = gpu.predict(dev(X[:5]), return_std=True)
    assert gm.dtype == np.float32 and gs.dtype == np.float32
    np.testing.assert_allclose(gm, m, rtol=0, atol=1e-4 * np.abs(m).max())
    np.testing.assert_allclose(gs, s, rtol=1e-3)


def test_incomplete_grid_and_heteroscedastic_alpha_match_the_cpu(fake_device, block_host):
    X, y = _y()
    Y = y.reshape(9, 7).copy()
    Y[2:5, 1:3] = np.nan
    Y[7, 6] = np.nan
    alpha = np.linspace(0.005, 0.02, 63).reshape(9, 7)
    k = ConstantKernel(1.0) * RBF([0.4, 0.7])
    kw = dict(cg_tol=1e-11)
    cpu = GridGPRegressor(k, alpha=alpha, **kw).fit_grid(AX, Y)
    Xs = np.random.default_rng(8).random((5, 2)) * [1, 2]
    Xall = grid_points(*AX)
    refs = [cpu.predict(Z, return_std=True) for Z in (Xs, Xall)]
    v0, g0 = cpu.log_marginal_likelihood(cpu.kernel_.theta + 0.2, eval_gradient=True)
    block_host()
    gpu = GridGPRegressor(k, alpha=dev(alpha), **kw).fit_grid([dev(a) for a in AX], dev(Y))
    assert gpu.incomplete_ and gpu._cg[2]
    np.testing.assert_allclose(gpu._model.theta(), cpu._model.theta(), rtol=0, atol=1e-4)
    assert gpu.log_marginal_likelihood_value_ == pytest.approx(cpu.log_marginal_likelihood_value_, rel=1e-8)
    v, g = gpu.log_marginal_likelihood(cpu.kernel_.theta + 0.2, eval_gradient=True)
    assert v == pytest.approx(v0, rel=1e-8)
    np.testing.assert_allclose(g, g0, rtol=0, atol=1e-6 * (np.abs(g0).max() + 1))
    gpu = GridGPRegressor(cpu.kernel_, alpha=dev(alpha), optimizer=None, **kw).fit_grid([dev(a) for a in AX], dev(Y))
    for Z, (m, s) in zip((Xs, Xall), refs):
        gm, gs = gpu.predict(dev(Z), return_std=True)
        np.testing.assert_allclose(gm, m, rtol=0, atol=1e-7 * np.abs(m).max())
        np.testing.assert_allclose(gs, s, rtol=1e-7)


def test_incomplete_grid_monte_carlo_variance_against_the_exact(fake_device, block_host, monkeypatch):
    """Beyond the dense limit the grid variance is a 128-sample pathwise Monte Carlo estimate
    (per cell ~12% error; the CPU test's bounds): checked against the exact dense variance."""
    import rankcore.gp as G

    axes = [np.linspace(0, 2, 14), np.linspace(0, 1, 12)]
    X = grid_points(*axes)
    Y = (np.sin(2 * X[:, 0]) + X[:, 1]).reshape(14, 12)
    Y[3:7, 4:8] = np.nan
    k = ConstantKernel(1.0) * RBF([0.4, 0.3]) + WhiteKernel(0.01)
    exact = GridGPRegressor(k, optimizer=None).fit_grid(axes, Y).predict(X, return_std=True)[1]
    block_host()
    monkeypatch.setattr(G, "_DENSE_VAR_LIMIT", 10)
    m = GridGPRegressor(k, optimizer=None).fit_grid([dev(a) for a in axes], dev(Y))
    mc = m.predict(dev(X), return_std=True)[1]
    lat_exact, lat_mc = exact**2 - 0.01, mc**2 - 0.01
    assert np.mean(np.abs(lat_mc - lat_exact)) < 0.15 * np.mean(lat_exact)
    assert abs(np.mean(lat_mc) - np.mean(lat_exact)) < 0.05 * np.mean(lat_exact)
    with pytest.raises(NotImplementedError, match="off-grid"):
        m.predict(dev(X[:3] + 0.01), return_std=True)


@pytest.mark.parametrize("offset", [False, True])
def test_posterior_samples_have_the_posterior_moments(fake_device, block_host, offset):
    """8000 draws: the sample mean is within 5 standard errors (√(var/8000)) of the
    posterior mean, the sample covariance within 0.1·max variance of the exact one (its
    Monte Carlo error is ~√(2/8000) ≈ 1.6% of the variances)."""
    axes = [np.linspace(0, 1, 4), np.linspace(0, 1, 3)]
    X = grid_points(*axes)
    y = np.sin(3 * X[:, 0]) + X[:, 1]
    k = ConstantKernel(1.0) * RBF([0.5, 0.5]) + WhiteKernel(0.05)
    if offset:
        k = k + ConstantKernel(0.5)
    gpu = GridGPRegressor(k, optimizer=None).fit(dev(X), dev(y))
    block_host()
    for Z in (X, X[:5] + 0.1):  # on the training grid (eigenbasis), elsewhere (dense)
        mean, cov = gpu.predict(dev(Z), return_cov=True)
        S = gpu.sample_y(dev(Z), n_samples=8000, random_state=3)
        assert S.shape == (len(Z), 8000)
        se = np.sqrt(np.diag(cov) / 8000)
        assert np.all(np.abs(S.mean(axis=1) - mean) < 5 * se)
        np.testing.assert_allclose(np.cov(S), cov, rtol=0, atol=0.1 * np.diag(cov).max())
    # on cupy data a host generator is refused (its draws would need a copy to the device)
    with pytest.raises(TypeError, match="random_state"):
        gg._device_rng(types.SimpleNamespace(random=np.random), np.random.RandomState(0))


def test_prior_before_fit_on_the_device(fake_device, block_host):
    Xs = np.random.default_rng(9).random((4, 2))
    k = ConstantKernel(2.0) * RBF([0.5, 0.5]) + WhiteKernel(0.1)
    m, s = GridGPRegressor(k).predict(Xs, return_std=True)
    mc, c = GridGPRegressor(k).predict(Xs, return_cov=True)
    block_host()
    gm, gs = GridGPRegressor(k).predict(dev(Xs), return_std=True)
    np.testing.assert_array_equal(gm, m)
    np.testing.assert_allclose(gs, s, rtol=1e-14)
    _, gc = GridGPRegressor(k).predict(dev(Xs), return_cov=True)
    np.testing.assert_allclose(gc, c, rtol=1e-13)


def test_bad_inputs_and_mixing_host_and_device(fake_device):
    X, y = _y()
    with pytest.raises(TypeError, match="y is a host ndarray"):
        GridGPRegressor().fit(dev(X), y)
    with pytest.raises(TypeError, match="X is a host ndarray"):
        GridGPRegressor().fit(X, dev(y))
    with pytest.raises(TypeError, match=r"axes\[1\] is a host ndarray"):
        GridGPRegressor().fit_grid([dev(AX[0]), AX[1]], dev(y.reshape(9, 7)))
    with pytest.raises(TypeError, match="alpha is a host ndarray"):
        GridGPRegressor(alpha=np.full((9, 7), 0.01)).fit_grid([dev(a) for a in AX], dev(y.reshape(9, 7)))
    with pytest.raises(TypeError, match="axes must be a list"):
        GridGPRegressor().fit_grid(dev(AX[0]), dev(y.reshape(9, 7)))
    gpu = GridGPRegressor(optimizer=None, alpha=0.01).fit(dev(X), dev(y))
    with pytest.raises(TypeError, match="fitted on cupy"):
        gpu.predict(X[:3])
    cpu = GridGPRegressor(optimizer=None, alpha=0.01).fit(X, y)
    with pytest.raises(TypeError, match="fitted on host"):
        cpu.predict(dev(X[:3]))
    with pytest.raises(ValueError, match="not a full grid"):
        GridGPRegressor().fit(dev(X[:-1]), dev(y[:-1]))
    with pytest.raises(ValueError, match="duplicate point"):
        GridGPRegressor().fit(dev(np.vstack([X, X[:1]])), dev(np.append(y, y[0])))
    with pytest.raises(ValueError, match="X contains NaN"):
        GridGPRegressor().fit(dev(np.where(np.arange(len(X))[:, None] == 3, np.nan, X)), dev(y))
    with pytest.raises(ValueError, match="y contains infinity"):
        GridGPRegressor().fit(dev(X), dev(np.where(np.arange(len(y)) == 2, np.inf, y)))
    with pytest.raises(ValueError, match="inconsistent numbers of samples"):
        GridGPRegressor().fit(dev(X), dev(y[:-1]))
    with pytest.raises(ValueError, match="single coordinate"):
        GridGPRegressor().fit(dev(np.c_[X, np.ones(len(X))]), dev(y))
    Y = y.reshape(9, 7)
    with pytest.raises(ValueError, match=r"axes\[0\] has duplicate"):
        GridGPRegressor().fit_grid([dev(np.r_[AX[0][:-1], AX[0][0]]), dev(AX[1])], dev(Y))
    with pytest.raises(ValueError, match=r"Y has shape \(7, 9\)"):
        GridGPRegressor().fit_grid([dev(a) for a in AX], dev(Y.T))
    with pytest.raises(ValueError, match="Y contains infinity"):
        GridGPRegressor().fit_grid([dev(a) for a in AX], dev(np.where(Y > 0.5, np.inf, Y)))
    with pytest.raises(ValueError, match="alpha must be non-negative"):
        GridGPRegressor(alpha=-1.0).fit(dev(X), dev(y))
    with pytest.raises(ValueError, match="noise variance"):
        GridGPRegressor(RBF([0.5, 0.5]), alpha=0.0, optimizer=None).fit(dev(X), dev(y))
    with pytest.raises(ValueError, match="n_targets"):
        GridGPRegressor(n_targets=2).fit(dev(X), dev(y))
    with pytest.raises(NotImplementedError, match="constant offset"):
        GridGPRegressor(KERNELS["sk_iso_offset"]()).fit_grid([dev(a) for a in AX], dev(np.where(Y > 0.9, np.nan, Y)))
    with pytest.raises(ValueError, match="not separable|Euclidean"):
        GridGPRegressor(Matern(0.5)).fit(dev(X), dev(y))
    with pytest.raises(ValueError, match="n_samples"):
        gpu.sample_y(dev(X), n_samples=0)
    with pytest.raises(RuntimeError, match="At most one"):
        gpu.predict(dev(X), return_std=True, return_cov=True)
    with pytest.raises(ValueError, match="features"):
        gpu.predict(dev(X[:, :1]))
