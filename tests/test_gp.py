"""GridGPRegressor against scikit-learn's GaussianProcessRegressor (same fixed kernels), a
dense Cholesky computation written here, and finite differences."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, DotProduct, ExpSineSquared, Matern
from sklearn.gaussian_process.kernels import RationalQuadratic, WhiteKernel

import rankcore
from rankcore import GridGPRegressor
from rankcore.gp import Matern1D, Periodic1D, ProductKernel, RBF1D, RationalQuadratic1D, SpectralMixture1D


def grid_points(*axes):
    mesh = np.meshgrid(*axes, indexing="ij")
    return np.stack([m.ravel() for m in mesh], axis=1)


def toy(shape=(7, 5), seed=0, shuffle=True):
    rng = np.random.default_rng(seed)
    axes = [np.sort(rng.uniform(-1, 2, n)) for n in shape]
    X = grid_points(*axes)
    y = np.sin(2 * X[:, 0]) + np.cos(X[:, -1]) + 0.1 * rng.standard_normal(len(X))
    if shuffle:
        p = rng.permutation(len(X))
        X, y = X[p], y[p]
    return axes, X, y


def dense_lml(K, y):
    """log N(y; 0, K) by Cholesky, written plainly."""
    L = np.linalg.cholesky(K)
    a = np.linalg.solve(L.T, np.linalg.solve(L, y))
    return -0.5 * y @ a - np.log(np.diag(L)).sum() - 0.5 * len(y) * np.log(2 * np.pi)


def rel(a, b):
    return np.max(np.abs(np.asarray(a) - np.asarray(b))) / max(np.max(np.abs(b)), 1e-300)


SK_CASES = [
    ((7, 5), ConstantKernel(1.3) * RBF([0.4, 0.9]) + WhiteKernel(0.05)),
    ((6, 5), RBF(0.7) * ConstantKernel(0.8) + WhiteKernel(0.1)),
    ((4, 5, 3), ConstantKernel(2.0) * RBF([0.5, 1.0, 0.7]) + WhiteKernel(0.02)),
    ((30,), ConstantKernel(1.1) * Matern(0.5, nu=0.5) + WhiteKernel(0.05)),
    ((30,), Matern(0.6, nu=1.5) + WhiteKernel(0.05)),
    ((30,), ConstantKernel(0.7) * Matern(0.6, nu=2.5) + WhiteKernel(0.05)),
    ((30,), RationalQuadratic(0.5, alpha=1.7) + WhiteKernel(0.05)),
    ((30,), ExpSineSquared(0.9, periodicity=1.3) + WhiteKernel(0.05)),
    ((30,), ConstantKernel(1.5) * Matern(0.8, nu=1.5) * ExpSineSquared(1.0, 1.2) + WhiteKernel(0.05)),
]


@pytest.mark.parametrize("shape,kernel", SK_CASES, ids=range(len(SK_CASES)))
def test_lml_gradient_and_predictions_match_sklearn(shape, kernel):
    _, X, y = toy(shape)
    sk = GaussianProcessRegressor(kernel, optimizer=None).fit(X, y)
    ours = GridGPRegressor(kernel, optimizer=None).fit(X, y)
    assert rel(ours.log_marginal_likelihood_value_, sk.log_marginal_likelihood_value_) < 1e-8
    theta = sk.kernel_.theta + 0.1 * np.arange(len(sk.kernel_.theta))
    v1, g1 = sk.log_marginal_likelihood(theta, eval_gradient=True)
    v2, g2 = ours.log_marginal_likelihood(theta, eval_gradient=True)
    assert rel(v2, v1) < 1e-8
    assert rel(g2, g1) < 1e-8
    np.testing.assert_allclose(ours.alpha_, sk.alpha_, rtol=1e-8, atol=1e-8 * np.abs(sk.alpha_).max())
    rng = np.random.default_rng(1)
    Xt = rng.uniform(-1, 2, (9, X.shape[1]))
    for P in (X, Xt):
        m1, s1 = sk.predict(P, return_std=True)
        m2, s2 = ours.predict(P, return_std=True)
        assert rel(m2, m1) < 1e-8 and rel(s2, s1) < 1e-7
    c1 = sk.predict(Xt, return_cov=True)[1]
    c2 = ours.predict(Xt, return_cov=True)[1]
    assert rel(c2, c1) < 1e-7


def test_learning_matches_sklearn():
    _, X, y = toy((8, 6), seed=3)
    k = ConstantKernel(1.0) * RBF([1.0, 1.0]) + WhiteKernel(0.1)
    sk = GaussianProcessRegressor(k, random_state=0).fit(X, y)
    ours = GridGPRegressor(k, random_state=0).fit(X, y)
    assert abs(ours.log_marginal_likelihood_value_ - sk.log_marginal_likelihood_value_) < 1e-5
    np.testing.assert_allclose(ours.kernel_.theta, sk.kernel_.theta, rtol=1e-3, atol=1e-3)
    assert type(ours.kernel_) is type(sk.kernel_) and ours.n_iter_ > 0


def test_normalize_y_and_multi_output_match_sklearn():
    _, X, y = toy((6, 5), seed=4)
    Y = np.stack([y, 3 * y + 5, -y], axis=1)
    k = ConstantKernel(1.2) * RBF([0.5, 0.8]) + WhiteKernel(0.05)
    for yy in (y * 4 + 10, Y):
        sk = GaussianProcessRegressor(k, optimizer=None, normalize_y=True).fit(X, yy)
        ours = GridGPRegressor(k, optimizer=None, normalize_y=True).fit(X, yy)
        assert rel(ours.log_marginal_likelihood_value_, sk.log_marginal_likelihood_value_) < 1e-8
        Xt = np.random.default_rng(0).uniform(-1, 2, (5, 2))
        for P in (X, Xt):
            m1, s1 = sk.predict(P, return_std=True)
            m2, s2 = ours.predict(P, return_std=True)
            assert m2.shape == m1.shape and s2.shape == s1.shape
            assert rel(m2, m1) < 1e-8 and rel(s2, s1) < 1e-7


def test_product_kernel_matches_dense_cholesky():
    """Non-sklearn product kernels (Matérn × RQ, spectral mixtures) against the explicit K."""
    axes, X, y = toy((6, 7), shuffle=False)
    pk = ProductKernel(
        [Matern1D(0.6, nu=2.5), SpectralMixture1D([0.7, 0.3], [0.4, 1.1], [0.8, 0.5], base="matern52")],
        signal_variance=1.4,
        noise_level=0.03,
    )
    m = GridGPRegressor(pk, optimizer=None).fit(X, y)
    K = 1.4 * np.kron(pk.factors[0].matrix(axes[0], axes[0]), pk.factors[1].matrix(axes[1], axes[1]))
    ref = dense_lml(K + (0.03 + 1e-10) * np.eye(len(y)), y)
    assert abs(m.log_marginal_likelihood_value_ - ref) < 1e-9 * abs(ref)


@pytest.mark.parametrize(
    "factors",
    [
        [RBF1D(0.5), RationalQuadratic1D(0.7, 1.3)],
        [Periodic1D(0.9, 1.6), Matern1D(0.4, nu=1.5)],
        [SpectralMixture1D([0.6, 0.4], [0.3, 0.9], [0.7, 0.4]), SpectralMixture1D([1.0], [0.5], [0.6], base="matern52")],
    ],
)
def test_gradient_matches_finite_differences(factors):
    _, X, y = toy((6, 5), seed=2)
    m = GridGPRegressor(ProductKernel(factors, 1.2, 0.05), optimizer=None).fit(X, y)
    theta = m._model.theta() + 0.05
    _, g = m.log_marginal_likelihood(theta, eval_gradient=True)
    h = 1e-6
    fd = np.array(
        [(m.log_marginal_likelihood(theta + h * e) - m.log_marginal_likelihood(theta - h * e)) / (2 * h) for e in np.eye(len(theta))]
    )
    np.testing.assert_allclose(g, fd, rtol=1e-5, atol=1e-6 * np.abs(fd).max())


def test_learning_recovers_lengthscales_from_prior_sample():
    rng = np.random.default_rng(7)
    axes = [np.linspace(0, 3, 30), np.linspace(0, 3, 28)]
    true_ls, noise = (0.3, 0.8), 0.01
    K = np.kron(*(np.exp(-0.5 * (a[:, None] - a[None, :]) ** 2 / ls**2) for a, ls in zip(axes, true_ls)))
    L = np.linalg.cholesky(K + 1e-8 * np.eye(len(K)))
    y = L @ rng.standard_normal(len(K)) + np.sqrt(noise) * rng.standard_normal(len(K))
    k = ConstantKernel(1.0) * RBF([1.0, 1.0]) + WhiteKernel(0.1)
    m = GridGPRegressor(k).fit(grid_points(*axes), y)
    ls = m.kernel_.k1.k2.length_scale
    np.testing.assert_allclose(ls, true_ls, rtol=0.15)
    assert 0.5 * noise < m.kernel_.k2.noise_level < 2 * noise


def test_incomplete_grid_matches_dense_gp_on_observed_cells():
    axes, _, _ = toy((8, 6), seed=5, shuffle=False)
    X = grid_points(*axes)
    Y = (np.sin(2 * X[:, 0]) + X[:, 1] ** 2).reshape(8, 6)
    Y[2, 3] = Y[5, 1] = Y[7, 0] = Y[0, 5] = np.nan
    Y0 = Y.copy()
    k = ConstantKernel(1.3) * RBF([0.5, 0.9]) + WhiteKernel(0.05)
    m = GridGPRegressor(k, optimizer=None).fit_grid(axes, Y)
    assert np.array_equal(Y, Y0, equal_nan=True) and m.incomplete_
    obs = ~np.isnan(Y.ravel())
    sk = GaussianProcessRegressor(k, optimizer=None).fit(X[obs], Y.ravel()[obs])
    m1, s1 = sk.predict(X, return_std=True)
    m2, s2 = m.predict(X, return_std=True)
    assert rel(m2, m1) < 1e-8 and rel(s2, s1) < 1e-8  # PCG to 1e-10
    np.testing.assert_allclose(m.alpha_, sk.alpha_, rtol=1e-7, atol=1e-8 * np.abs(sk.alpha_).max())
    # The Wilson et al. (2014) log-determinant is an approximation: with 4 of 48 cells
    # missing, the measured error is 0.62 nats of 28.7 (2.1%); exact on full grids.
    err = abs(m.log_marginal_likelihood_value_ - sk.log_marginal_likelihood_value_)
    assert err < 0.03 * abs(sk.log_marginal_likelihood_value_), err
    # Learning on the incomplete grid runs on the approximate objective and its gradient.
    learned = GridGPRegressor(k).fit_grid(axes, Y)
    assert np.isfinite(learned.log_marginal_likelihood_value_)


def test_heteroscedastic_alpha_matches_sklearn():
    axes, _, _ = toy((6, 5), seed=6, shuffle=False)
    X = grid_points(*axes)
    y = np.cos(X[:, 0] * 2) * X[:, 1]
    alpha = np.random.default_rng(0).uniform(0.01, 0.2, len(y))
    k = ConstantKernel(1.1) * RBF([0.6, 0.7])
    sk = GaussianProcessRegressor(k, alpha=alpha, optimizer=None).fit(X, y)
    ours = GridGPRegressor(k, alpha=alpha, optimizer=None).fit(X, y)
    assert rel(ours.predict(X), sk.predict(X)) < 1e-8
    assert rel(ours.alpha_, sk.alpha_) < 1e-7


def test_heteroscedastic_alpha_shuffled_rows_matches_sklearn():
    # Per-sample alpha follows X's rows, whatever their order: the core solve works in
    # grid-cell order, so alpha must be scattered to the cells with y.
    _, X, y = toy((7, 5), seed=3, shuffle=True)
    alpha = np.random.default_rng(1).uniform(0.01, 0.3, len(y))
    k = ConstantKernel(1.1) * RBF([0.6, 0.7])
    sk = GaussianProcessRegressor(k, alpha=alpha, optimizer=None).fit(X, y)
    ours = GridGPRegressor(k, alpha=alpha, optimizer=None).fit(X, y)
    fine = grid_points(np.linspace(-1, 2, 6), np.linspace(-1, 2, 4))
    for P in (X, X[::-1], fine, fine[:5]):
        m1, s1 = sk.predict(P, return_std=True)
        m2, s2 = ours.predict(P, return_std=True)
        assert rel(m2, m1) < 1e-8
        assert rel(s2, s1) < 1e-7
    assert rel(ours.predict(X[:4], return_cov=True)[1], sk.predict(X[:4], return_cov=True)[1]) < 1e-7
    assert rel(ours.alpha_, sk.alpha_) < 1e-7
    # The LML here is the Wilson approximation (not sklearn's exact value), but it must not
    # depend on the row order: refit on the C-ordered rows with alpha permuted alike.
    p = np.lexsort(X.T[::-1])
    c_order = GridGPRegressor(k, alpha=alpha[p], optimizer=None).fit(X[p], y[p])
    v1, g1 = ours.log_marginal_likelihood(k.theta, eval_gradient=True)
    v2, g2 = c_order.log_marginal_likelihood(k.theta, eval_gradient=True)
    assert abs(v1 - v2) < 1e-10 * abs(v2) and rel(g1, g2) < 1e-8


def test_kernel_grad_contract_matches_gradient_matrices():
    # Σ ∂K_p ∘ W per parameter, computed in the core (GIL released), equals the contraction
    # of the explicit ∂K/∂θ_p matrices.
    x = np.sort(np.random.default_rng(4).uniform(-2, 3, 17))
    W = np.random.default_rng(5).standard_normal((17, 17))
    kernels = [RBF1D(0.7), Matern1D(0.6, nu=0.5), Matern1D(0.6, nu=1.5), Matern1D(0.6, nu=2.5),
               RationalQuadratic1D(0.8, 1.3), Periodic1D(0.9, 1.7),
               SpectralMixture1D([0.5, 1.5, 0.7], [0.3, 2.0, 1.1], [0.8, 0.4, 1.2])]
    for k in kernels:
        want = np.array([np.sum(dK * W) for dK in k.grads(x, x)])
        got = k.grad_contract(x, W)
        assert got.shape == want.shape and rel(got, want) < 1e-12, k
        with rankcore.threads(1):
            assert np.array_equal(k.grad_contract(x, W), got)
    with pytest.raises(ValueError, match="W must have shape"):
        RBF1D(0.7).grad_contract(x, W[:3, :3])


@pytest.mark.parametrize("normalize_y", [False, True])
@pytest.mark.parametrize("n_targets", [None, 1, 3])
def test_output_shapes_and_values_match_sklearn(normalize_y, n_targets):
    # sklearn (>= 1.6): mean (M,)|(M, B), std (M,)|(M, B), cov (M, M)|(M, M, B); y of shape
    # (n, 1) is squeezed to the 1-D forms; sample_y (M, S)|(M, B, S).
    _, X, y = toy((4, 3), seed=11)
    if n_targets is not None:
        y = np.stack([y * (t + 1) + t for t in range(n_targets)], axis=1)
    k = ConstantKernel(1.2) * RBF([0.7, 0.9]) + WhiteKernel(0.05)
    sk = GaussianProcessRegressor(k, optimizer=None, normalize_y=normalize_y).fit(X, y)
    ours = GridGPRegressor(k, optimizer=None, normalize_y=normalize_y).fit(X, y)
    off = np.random.default_rng(2).uniform(-1, 2, (5, 2))
    for P in (X, off):
        assert ours.predict(P).shape == sk.predict(P).shape
        assert rel(ours.predict(P), sk.predict(P)) < 1e-8
        (m1, s1), (m2, s2) = sk.predict(P, return_std=True), ours.predict(P, return_std=True)
        assert m2.shape == m1.shape and s2.shape == s1.shape
        assert rel(m2, m1) < 1e-8
        assert rel(s2, s1) < 1e-7
        (m1, c1), (m2, c2) = sk.predict(P, return_cov=True), ours.predict(P, return_cov=True)
        assert m2.shape == m1.shape and c2.shape == c1.shape
        assert rel(c2, c1) < 1e-7
        assert ours.sample_y(P, 4).shape == sk.sample_y(P, 4).shape


def test_off_grid_test_grid_and_samples():
    _, X, y = toy((6, 5), seed=8)
    k = ConstantKernel(1.0) * RBF([0.5, 0.8]) + WhiteKernel(0.05)
    sk = GaussianProcessRegressor(k, optimizer=None).fit(X, y)
    ours = GridGPRegressor(k, optimizer=None).fit(X, y)
    fine = grid_points(np.linspace(-1, 2, 11), np.linspace(-1, 2, 9))  # another grid
    m1, s1 = sk.predict(fine, return_std=True)
    m2, s2 = ours.predict(fine, return_std=True)
    assert rel(m2, m1) < 1e-8 and rel(s2, s1) < 1e-7
    # Grid samples: empirical covariance converges to the posterior covariance.
    S = ours.sample_y(X, n_samples=20000, random_state=0)
    assert S.shape == (len(X), 20000)
    cov = sk.predict(X, return_cov=True)[1]
    np.testing.assert_allclose(np.cov(S), cov, atol=0.05 * np.abs(cov).max())
    np.testing.assert_allclose(S.mean(axis=1), sk.predict(X), atol=0.02)
    assert ours.sample_y(fine[:4], 3).shape == (4, 3)


def test_float32_close_to_float64():
    _, X, y = toy((7, 5))
    k = ConstantKernel(1.0) * RBF([0.5, 0.9]) + WhiteKernel(0.1)
    a = GridGPRegressor(k, optimizer=None).fit(X, y)
    b = GridGPRegressor(k, optimizer=None).fit(X.astype(np.float32), y.astype(np.float32))
    # cond(K + σ²I) ≤ ~1 + ‖K‖/σ² ≈ 100: float32 (eps 6e-8) keeps about 5 digits.
    assert abs(b.log_marginal_likelihood_value_ - a.log_marginal_likelihood_value_) < 1e-4 * abs(a.log_marginal_likelihood_value_)
    p = b.predict(X.astype(np.float32))
    assert p.dtype == np.float32 and rel(p, a.predict(X)) < 1e-4


def test_threads_bit_identical_and_inputs_unchanged():
    _, X, y = toy((12, 9))
    X0, y0 = X.copy(), y.copy()
    k = ConstantKernel(1.0) * RBF([0.5, 0.9]) + WhiteKernel(0.1)
    with rankcore.threads(1):
        a = GridGPRegressor(k).fit(X, y)
        pa = a.predict(X, return_std=True)
    with rankcore.threads(2):
        b = GridGPRegressor(k).fit(X, y)
        pb = b.predict(X, return_std=True)
    assert np.array_equal(a.kernel_.theta, b.kernel_.theta)
    assert np.array_equal(pa[0], pb[0]) and np.array_equal(pa[1], pb[1])
    assert np.array_equal(X, X0) and np.array_equal(y, y0)


def test_clone_pickle_and_unfitted_prior():
    _, X, y = toy((6, 5))
    m = GridGPRegressor(ConstantKernel(1.0) * RBF([0.5, 0.9]) + WhiteKernel(0.1)).fit(X, y)
    m2 = pickle.loads(pickle.dumps(m))
    np.testing.assert_array_equal(m2.predict(X), m.predict(X))
    c = clone(m)
    assert not hasattr(c, "kernel_")
    k = ConstantKernel(2.0) * RBF([0.5, 0.9])
    mean, std = GridGPRegressor(k).predict(X[:3], return_std=True)
    sk_mean, sk_std = GaussianProcessRegressor(k).predict(X[:3], return_std=True)
    np.testing.assert_allclose(std, sk_std, rtol=1e-12)
    np.testing.assert_allclose(mean, sk_mean, atol=0)
    assert mean.shape == sk_mean.shape and std.shape == sk_std.shape


def test_bad_inputs():
    _, X, y = toy((6, 5))
    k = ConstantKernel(1.0) * RBF([0.5, 0.9]) + WhiteKernel(0.1)
    with pytest.raises(ValueError, match="not a full grid"):
        GridGPRegressor(k).fit(X[:-1], y[:-1])
    with pytest.raises(ValueError, match="duplicate"):
        GridGPRegressor(k).fit(np.vstack([X[:-1], X[:1]]), y)
    # Scattered points whose unique counts per column multiply to ~1e28 cells: the clear
    # message, not numpy's "invalid dims" from allocating the spanned grid.
    Xs = np.random.default_rng(0).uniform(size=(3000, 8))
    with pytest.raises(ValueError, match="not a full grid"):
        GridGPRegressor(k).fit(Xs, np.ones(3000))
    m8 = GridGPRegressor(ConstantKernel(1.0) * RBF([0.5] * 8) + WhiteKernel(0.1), optimizer=None)
    m8.fit(grid_points(*[[0.0, 1.0]] * 8), np.arange(256.0))
    assert m8.predict(Xs[:300]).shape == (300,)  # 300 scattered rows span 300**8 cells
    with pytest.raises(ValueError, match="NaN|infinity"):
        Xn = X.copy()
        Xn[0, 0] = np.nan
        GridGPRegressor(k).fit(Xn, y)
    with pytest.raises(ValueError, match="single coordinate"):
        GridGPRegressor(RBF(1.0) + WhiteKernel()).fit(np.c_[X, np.zeros(len(X))], y)
    with pytest.raises(ValueError, match="noise variance"):
        GridGPRegressor(ConstantKernel() * RBF([1.0, 1.0]), alpha=0.0, optimizer=None).fit(X, y)
    with pytest.raises(ValueError, match="not separable|Euclidean"):
        GridGPRegressor(Matern(1.0) + WhiteKernel()).fit(X, y)
    with pytest.raises(ValueError, match="Kronecker|sum"):
        GridGPRegressor(RBF(1.0) + RBF(2.0)).fit(X, y)
    with pytest.raises(ValueError, match="not separable|Sum"):
        GridGPRegressor((RBF(1.0) + WhiteKernel()) * ConstantKernel()).fit(X, y)
    with pytest.raises(ValueError, match="not supported"):
        GridGPRegressor(DotProduct()).fit(X, y)
    with pytest.raises(ValueError, match="shape"):
        GridGPRegressor(k).fit_grid([np.arange(3.0), np.arange(4.0)], np.zeros((4, 3)))
    with pytest.raises(ValueError, match="duplicate"):
        GridGPRegressor(k).fit_grid([np.array([0.0, 0.0, 1.0]), np.arange(4.0)], np.zeros((3, 4)))
    with pytest.raises(ValueError, match="at least 2"):
        GridGPRegressor(k).fit_grid([np.array([0.0]), np.arange(4.0)], np.zeros((1, 4)))
    with pytest.raises(ValueError, match="y|samples|inconsistent"):
        GridGPRegressor(k).fit(X, y[:-1])
    with pytest.raises(ValueError, match="optimizer"):
        GridGPRegressor(k, optimizer="adam").fit(X, y)
    with pytest.raises(ValueError, match="factors"):
        GridGPRegressor(ProductKernel([RBF1D()])).fit(X, y)
    with pytest.raises(ValueError, match="nu"):
        Matern1D(nu=0.7)
    with pytest.raises(ValueError, match="kernel parameter"):
        GridGPRegressor(ProductKernel([RBF1D(-1.0), RBF1D()]), optimizer=None).fit(X, y)
    m = GridGPRegressor(k, optimizer=None).fit(X, y)
    with pytest.raises(ValueError, match="features"):
        m.predict(np.zeros((2, 3)))
    with pytest.raises(ValueError, match="theta"):
        m.log_marginal_likelihood(np.zeros(2))


def test_incomplete_grid_monte_carlo_variance(monkeypatch):
    """Beyond the dense limit, grid-cell variances are a Monte Carlo (Matheron) estimate:
    128 pathwise samples, relative error ≈ √(2/128) ≈ 12% per cell; checked on average."""
    import rankcore.gp as g

    axes = [np.linspace(0, 2, 14), np.linspace(0, 1, 12)]
    X = grid_points(*axes)
    Y = (np.sin(2 * X[:, 0]) + X[:, 1]).reshape(14, 12)
    Y[3:7, 4:8] = np.nan
    k = ConstantKernel(1.0) * RBF([0.4, 0.3]) + WhiteKernel(0.01)
    exact = GridGPRegressor(k, optimizer=None).fit_grid(axes, Y).predict(X, return_std=True)[1]
    monkeypatch.setattr(g, "_DENSE_VAR_LIMIT", 10)
    m = GridGPRegressor(k, optimizer=None).fit_grid(axes, Y)
    mc = m.predict(X, return_std=True)[1]
    lat_exact, lat_mc = exact**2 - 0.01, mc**2 - 0.01
    # Per cell the error is ~12% (mean absolute ≈ 0.8 × that); the estimator is unbiased, so
    # the average over cells is much closer.
    assert np.mean(np.abs(lat_mc - lat_exact)) < 0.15 * np.mean(lat_exact)
    assert abs(np.mean(lat_mc) - np.mean(lat_exact)) < 0.05 * np.mean(lat_exact)
    with pytest.raises(NotImplementedError, match="off-grid"):
        m.predict(X[:3] + 0.01, return_std=True)


# scikit-learn's common checks fit on random points, which are never a full grid: every check
# that fits such data fails by design with the clear "X is not a full grid" error (tested
# above). The unfitted check expects NotFittedError, but like GaussianProcessRegressor we
# predict from the prior before fit.
_NOT_A_GRID = "fits random X, which is not a full grid (GridGPRegressor needs grid data by design)"
_EXPECTED_FAILED = {
    name: _NOT_A_GRID
    for name in [
        "check_fit_score_takes_y", "check_estimators_overwrite_params", "check_dont_overwrite_parameters",
        "check_estimators_fit_returns_self", "check_readonly_memmap_input", "check_n_features_in_after_fitting",
        "check_positive_only_tag_during_fit", "check_estimators_dtypes", "check_dtype_object",
        "check_pipeline_consistency", "check_estimators_nan_inf", "check_estimators_pickle",
        "check_f_contiguous_array_estimator", "check_regressors_train", "check_regressor_data_not_an_array",
        "check_regressor_multioutput", "check_regressors_no_decision_function", "check_supervised_y_2d",
        "check_regressors_int", "check_methods_sample_order_invariance", "check_methods_subset_invariance",
        "check_dict_unchanged", "check_fit_idempotent", "check_fit_check_is_fitted", "check_n_features_in",
        "check_fit2d_predict1d",
    ]
}
_EXPECTED_FAILED["check_estimators_unfitted"] = "predicts from the prior before fit, as GaussianProcessRegressor"


from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402


@parametrize_with_checks([GridGPRegressor()], expected_failed_checks=lambda est: _EXPECTED_FAILED)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_pipeline_with_scaler_keeps_the_grid():
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    _, X, y = toy((6, 5))
    k = ConstantKernel(1.0) * RBF([0.5, 0.9]) + WhiteKernel(0.1)
    p = make_pipeline(StandardScaler(), GridGPRegressor(k)).fit(X, y)
    assert p.score(X, y) > 0.9


def test_incomplete_gradient_is_the_gradient_of_the_approximation():
    """L-BFGS-B on incomplete grids follows the exact gradient of the approximate LML (PCG
    data fit + Wilson log-determinant): check it against finite differences."""
    axes = [np.linspace(0, 2, 9), np.linspace(0, 1, 7)]
    X = grid_points(*axes)
    Y = (np.sin(2 * X[:, 0]) + X[:, 1]).reshape(9, 7)
    Y[2, 3] = Y[5, 1] = Y[8, 6] = np.nan
    k = ConstantKernel(1.2) * RBF([0.5, 0.4]) + WhiteKernel(0.05)
    m = GridGPRegressor(k, optimizer=None, cg_tol=1e-13).fit_grid(axes, Y)
    theta = m.kernel_.theta + 0.1
    _, g = m.log_marginal_likelihood(theta, eval_gradient=True)
    h = 1e-5
    fd = np.array(
        [(m.log_marginal_likelihood(theta + h * e) - m.log_marginal_likelihood(theta - h * e)) / (2 * h) for e in np.eye(len(theta))]
    )
    np.testing.assert_allclose(g, fd, rtol=1e-4, atol=1e-5 * np.abs(fd).max())


from functools import reduce  # noqa: E402

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402


@settings(max_examples=15, deadline=None)
@given(
    shape=st.lists(st.integers(2, 5), min_size=1, max_size=3),
    seed=st.integers(0, 10_000),
    noise=st.floats(1e-3, 1.0),
    dtype=st.sampled_from([np.float64, np.float32]),
)
def test_lml_property_against_dense(shape, seed, noise, dtype):
    rng = np.random.default_rng(seed)
    axes = [np.sort(rng.uniform(0, 3, n)) + np.arange(n) * 1e-3 for n in shape]
    ls = rng.uniform(0.3, 2.0, len(shape))
    X = grid_points(*axes)
    y = rng.standard_normal(len(X))
    k = ConstantKernel(1.5) * RBF(ls) + WhiteKernel(noise)
    m = GridGPRegressor(k, optimizer=None).fit(X.astype(dtype), y.astype(dtype))
    K = 1.5 * reduce(np.kron, [np.exp(-0.5 * (a[:, None] - a[None, :]) ** 2 / l**2) for a, l in zip(axes, ls)])
    ref = dense_lml(K + (noise + 1e-10) * np.eye(len(y)), y)
    # float32: cond(K + σ²I) ≤ 1 + 1.5·N/σ² ≤ 2e5 here, so a few 1e-3 relative at worst.
    tol = 1e-9 if dtype == np.float64 else 5e-3
    assert abs(m.log_marginal_likelihood_value_ - ref) <= tol * max(abs(ref), 1.0)
    assert m.predict(X.astype(dtype)).dtype == dtype


def test_multi_output_samples_and_kernel_derivative_matrices():
    _, X, y = toy((5, 4))
    Y = np.stack([y, 2 * y + 1], axis=1)
    m = GridGPRegressor(ConstantKernel(1.0) * RBF([0.5, 0.9]) + WhiteKernel(0.1), optimizer=None, normalize_y=True).fit(X, Y)
    S = m.sample_y(X, n_samples=3, random_state=1)
    assert S.shape == (len(X), 2, 3)
    assert not np.allclose(S[:, 0] - S[:, 0].mean(), (S[:, 1] - S[:, 1].mean()) / 2)  # independent draws
    # Input-derivative matrices (for derivative observations / PDE solvers) vs finite differences.
    x1, x2, h = np.linspace(0, 1, 5), np.linspace(0.1, 0.9, 4), 1e-5
    for k in (RBF1D(0.4), Matern1D(0.5, nu=2.5), Periodic1D(0.8, 0.7), SpectralMixture1D([1.0], [1.3], [0.4])):
        d1 = (k.matrix(x1 + h, x2) - k.matrix(x1 - h, x2)) / (2 * h)
        np.testing.assert_allclose(k.matrix(x1, x2, 1, 0), d1, atol=1e-8)
        d2 = (k.matrix(x1, x2 + h, 1, 0) - k.matrix(x1, x2 - h, 1, 0)) / (2 * h)
        np.testing.assert_allclose(k.matrix(x1, x2, 1, 1), d2, atol=1e-7)
        dxx = (k.matrix(x1 + h, x2, 1, 0) - k.matrix(x1 - h, x2, 1, 0)) / (2 * h)
        np.testing.assert_allclose(k.matrix(x1, x2, 2, 0), dxx, atol=1e-6)
