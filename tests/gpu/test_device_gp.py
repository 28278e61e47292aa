"""On the device: ``GridGPRegressor`` on cupy against the CPU (Rust) path on the same data.

Everything grid-sized stays on the device (``no_host_transfer``: only one-element reads,
the LML, each gradient entry, the CG scalars, input-check counts). Tolerances as in
``tests/test_gpu_gp.py`` (cuSOLVER's vs faer's eigenvectors agree to rounding over the
spectral gap): LML 1e-9 relative and gradients 1e-7 of their scale in float64, fitted
log-hyperparameters 1e-4, predictions 1e-8 of the largest value, std 1e-7 relative;
float32 1e-4 / 1e-3; the incomplete grid's PCG at cg_tol 1e-11: LML 1e-8.
"""

from __future__ import annotations

import numpy as np
import pytest
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, WhiteKernel

from rankcore.gp import GridGPRegressor, Matern1D, ProductKernel, RationalQuadratic1D


def _grid(n1=40, n2=30, seed=0):
    a1, a2 = np.linspace(0, 1, n1), np.linspace(0, 2, n2)
    rng = np.random.default_rng(seed)
    Y = np.sin(5 * a1)[:, None] * np.cos(3 * a2)[None, :] + 0.3 * a2[None, :] + 1.0 + 0.05 * rng.standard_normal((n1, n2))
    X = np.stack([m.ravel() for m in np.meshgrid(a1, a2, indexing="ij")], axis=1)
    return [a1, a2], X, Y


KERNELS = {
    "rbf_white": lambda: ConstantKernel(1.0) * RBF([0.3, 0.5]) + WhiteKernel(0.01),
    "offset": lambda: ConstantKernel(1.0) * RBF(0.4) + ConstantKernel(0.5) + WhiteKernel(0.01),
    "matern_rq": lambda: ProductKernel([Matern1D(0.3, nu=1.5), RationalQuadratic1D(0.5, 2.0)], 1.0, 0.01),
}


def _theta(m):
    return m._model.theta()


@pytest.mark.parametrize("name", sorted(KERNELS))
def test_fit_predict_match_cpu(cp, no_host_transfer, name):
    axes, X, Y = _grid()
    y = Y.ravel()
    cpu = GridGPRegressor(KERNELS[name]()).fit(X, y)
    Xs = np.random.default_rng(1).random((50, 2)) * [1, 2]
    m_ref, s_ref = cpu.predict(Xs, return_std=True)
    mg_ref, sg_ref = cpu.predict(X, return_std=True)
    v_ref, g_ref = cpu.log_marginal_likelihood(_theta(cpu) + 0.1, eval_gradient=True)
    dX, dy, dXs = cp.asarray(X), cp.asarray(y), cp.asarray(Xs)
    with no_host_transfer():
        gpu = GridGPRegressor(KERNELS[name]()).fit(dX, dy)
        ms, ss = gpu.predict(dXs, return_std=True)
        mg, sg = gpu.predict(dX, return_std=True)
        v, g = gpu.log_marginal_likelihood(_theta(cpu) + 0.1, eval_gradient=True)
    for a in (gpu.X_train_, gpu.y_train_, gpu.alpha_, gpu._Y, gpu._qs[0], gpu.axes_[0], ms, ss, mg, sg):
        assert isinstance(a, cp.ndarray)
    np.testing.assert_allclose(_theta(gpu), _theta(cpu), rtol=0, atol=1e-4)
    assert gpu.log_marginal_likelihood_value_ == pytest.approx(cpu.log_marginal_likelihood_value_, rel=1e-8)
    assert v == pytest.approx(v_ref, rel=1e-9)
    np.testing.assert_allclose(g, g_ref, rtol=0, atol=1e-7 * (np.abs(g_ref).max() + 1))
    # predictions at the CPU's optimum (each path's own optimum differs by the optimizer's tolerance)
    gpu = GridGPRegressor(cpu.kernel_, optimizer=None).fit(dX, dy)
    with no_host_transfer():
        ms, ss = gpu.predict(dXs, return_std=True)
        mg, sg = gpu.predict(dX, return_std=True)
    for got, want in ((ms, m_ref), (mg, mg_ref)):
        np.testing.assert_allclose(cp.asnumpy(got), want, rtol=0, atol=1e-8 * np.abs(want).max())
    for got, want in ((ss, s_ref), (sg, sg_ref)):
        np.testing.assert_allclose(cp.asnumpy(got), want, rtol=1e-7)


def test_float32_kept(cp, no_host_transfer):
    axes, X, Y = _grid()
    X, y = X.astype(np.float32), Y.ravel().astype(np.float32)
    k = ConstantKernel(1.0) * RBF([0.3, 0.5]) + WhiteKernel(0.01)
    cpu = GridGPRegressor(k, optimizer=None).fit(X, y)
    m, s = cpu.predict(X[:100], return_std=True)
    with no_host_transfer():
        gpu = GridGPRegressor(k, optimizer=None).fit(cp.asarray(X), cp.asarray(y))
        gm, gs = gpu.predict(cp.asarray(X[:100]), return_std=True)
    assert gm.dtype == np.float32 and gs.dtype == np.float32 and gpu._qs[0].dtype == np.float32
    assert gpu.log_marginal_likelihood_value_ == pytest.approx(cpu.log_marginal_likelihood_value_, rel=1e-4)
    np.testing.assert_allclose(cp.asnumpy(gm), m, rtol=0, atol=1e-4 * np.abs(m).max())
    np.testing.assert_allclose(cp.asnumpy(gs), s, rtol=1e-3)


def test_incomplete_grid_with_device_alpha(cp, no_host_transfer):
    axes, X, Y = _grid(30, 20)
    Y[5:12, 3:9] = np.nan
    alpha = np.linspace(0.005, 0.02, Y.size).reshape(Y.shape)
    k = ConstantKernel(1.0) * RBF([0.3, 0.5])
    cpu = GridGPRegressor(k, alpha=alpha, cg_tol=1e-11).fit_grid(axes, Y)
    Xs = np.random.default_rng(2).random((20, 2)) * [1, 2]
    m, s = cpu.predict(Xs, return_std=True)
    with no_host_transfer():
        gpu = GridGPRegressor(k, alpha=cp.asarray(alpha), cg_tol=1e-11).fit_grid([cp.asarray(a) for a in axes], cp.asarray(Y))
    np.testing.assert_allclose(_theta(gpu), _theta(cpu), rtol=0, atol=1e-4)
    assert gpu.log_marginal_likelihood_value_ == pytest.approx(cpu.log_marginal_likelihood_value_, rel=1e-8)
    gpu = GridGPRegressor(cpu.kernel_, alpha=cp.asarray(alpha), optimizer=None, cg_tol=1e-11).fit_grid(
        [cp.asarray(a) for a in axes], cp.asarray(Y))
    with no_host_transfer():
        gm, gs = gpu.predict(cp.asarray(Xs), return_std=True)
    np.testing.assert_allclose(cp.asnumpy(gm), m, rtol=0, atol=1e-7 * np.abs(m).max())
    np.testing.assert_allclose(cp.asnumpy(gs), s, rtol=1e-7)


def test_samples_and_prior_on_the_device(cp, no_host_transfer):
    axes, X, Y = _grid(6, 5)
    k = ConstantKernel(1.0) * RBF([0.3, 0.5]) + WhiteKernel(0.05)
    gpu = GridGPRegressor(k, optimizer=None).fit(cp.asarray(X), cp.asarray(Y.ravel()))
    with no_host_transfer():
        mean, cov = gpu.predict(cp.asarray(X), return_cov=True)
        S = gpu.sample_y(cp.asarray(X), n_samples=20000, random_state=0)
        prior = GridGPRegressor(k).predict(cp.asarray(X[:4]), return_std=True)
    assert isinstance(S, cp.ndarray) and S.shape == (30, 20000)
    se = cp.sqrt(cp.diag(cov) / 20000)
    assert bool((cp.abs(S.mean(axis=1) - mean) < 5 * se).all())
    assert float(cp.abs(cp.cov(S) - cov).max()) < 0.05 * float(cp.diag(cov).max())
    assert isinstance(prior[1], cp.ndarray)


def test_mixed_input_is_a_type_error(cp):
    axes, X, Y = _grid(6, 5)
    with pytest.raises(TypeError, match="host"):
        GridGPRegressor().fit(cp.asarray(X), Y.ravel())
    with pytest.raises(TypeError, match="host"):
        GridGPRegressor().fit_grid([axes[0], cp.asarray(axes[1])], cp.asarray(Y))
    gpu = GridGPRegressor(optimizer=None, alpha=0.01).fit(cp.asarray(X), cp.asarray(Y.ravel()))
    with pytest.raises(TypeError, match="fitted on cupy"):
        gpu.predict(X)
