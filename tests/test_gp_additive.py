"""GridGPRegressor with scikit-learn's default kernel, with an added constant term
(``C1 * RBF(...) + C2``: the rank-one Kronecker term ``c·11ᵀ`` solved by Sherman–Morrison),
and the ``n_targets`` parameter, against scikit-learn's GaussianProcessRegressor.

Tolerances: on these small grids both sides agree to ~1e-14 in practice. scikit-learn's dense
Cholesky of ``C = sK + c·11ᵀ + σ²I`` has relative errors up to ``eps · cond(C)``, and
``cond(C) ≲ (s + c) N / σ²``: below 1e5 for the moderate cases (errors ≲ 1e-11) and about 1e7
for ``c = 1e4`` with ``N = 63``, ``σ² = 0.05`` (≲ 2e-9), so 1e-8 relative is tight and safe
for the likelihood, its gradient, alpha_ and the mean; 1e-7 for the std and cov, which lose
digits to the cancellation ``prior − explained`` (as in tests/test_gp.py).
"""

from __future__ import annotations

import inspect
import warnings

import numpy as np
import pytest
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import GaussianProcessRegressor
from sklearn.gaussian_process.kernels import RBF, ConstantKernel, Matern, WhiteKernel

from rankcore import GridGPRegressor

from test_gp import grid_points, rel, toy

C = ConstantKernel


def fit_both(kernel, X, y, **kw):
    sk = GaussianProcessRegressor(kernel, **kw).fit(X, y)
    ours = GridGPRegressor(kernel, **kw).fit(X, y)
    return sk, ours


def finite_differences(m, theta, h=1e-5):
    # Central differences: truncation O(h²) ≈ 1e-10, round-off eps·|LML|/h ≈ 1e-9.
    return np.array(
        [(m.log_marginal_likelihood(theta + h * e) - m.log_marginal_likelihood(theta - h * e)) / (2 * h) for e in np.eye(len(theta))]
    )


# ---------------------------------------------------------------------------------------
# The default kernel
# ---------------------------------------------------------------------------------------


def test_default_kernel_is_sklearns_current_default_and_is_learned():
    """kernel=None means ConstantKernel() * RBF() with learnable hyperparameters: both
    estimators run L-BFGS-B from the same start on the same objective (equal to ~1e-14), so
    they reach the same optimum; 1e-6 on theta leaves room for round-off in the last step,
    and at an optimum the LML is second-order in that (1e-10)."""
    rng = np.random.default_rng(0)
    X = grid_points(np.linspace(0, 3, 5), np.linspace(0, 3, 4), np.linspace(0, 3, 3))
    y = np.sin(2 * X[:, 0]) + 0.3 * rng.standard_normal(len(X))
    sk, ours = fit_both(None, X, y)
    assert ours.kernel is None  # parameters stay untouched
    assert repr(ours.kernel_) == repr(sk.kernel_) and type(ours.kernel_) is type(sk.kernel_)
    assert np.array_equal(ours.kernel_.bounds, sk.kernel_.bounds)  # sklearn's default bounds
    assert ours.n_iter_ > 0 and not np.allclose(ours.kernel_.theta, 0.0)  # it moved
    np.testing.assert_allclose(ours.kernel_.theta, sk.kernel_.theta, rtol=1e-6, atol=1e-6)
    assert rel(ours.log_marginal_likelihood_value_, sk.log_marginal_likelihood_value_) < 1e-10
    Xt = rng.uniform(0, 3, (7, 3))
    for P in (X, Xt):
        (m1, s1), (m2, s2) = sk.predict(P, return_std=True), ours.predict(P, return_std=True)
        assert rel(m2, m1) < 1e-6
        # At the training points the std is ≈ √alpha = 1e-5, the square root of a variance
        # computed as prior − explained (absolute error ~1e-15 on both sides): compare with an
        # absolute tolerance there (1e-15 / (2·1e-5) ≈ 1e-10).
        np.testing.assert_allclose(s2, s1, rtol=1e-6, atol=1e-9)
    # optimizer=None keeps the default's initial values, as scikit-learn.
    sk, ours = fit_both(None, X, y, optimizer=None)
    assert np.array_equal(ours.kernel_.theta, np.zeros(2)) and ours.n_iter_ == 0
    assert rel(ours.log_marginal_likelihood_value_, sk.log_marginal_likelihood_value_) < 1e-8


def test_default_kernel_docstring_and_bound_warning_match_sklearn():
    doc = inspect.getdoc(GridGPRegressor)
    assert "the kernel `ConstantKernel() * RBF()` is used as default" in " ".join(doc.split())
    # Pure noise drives the length scale to its lower bound: both warn the same way.
    rng = np.random.default_rng(0)
    X = grid_points(np.linspace(0, 3, 7), np.linspace(0, 3, 5))
    y = rng.standard_normal(len(X))
    with warnings.catch_warnings(record=True) as w_sk:
        warnings.simplefilter("always")
        sk = GaussianProcessRegressor().fit(X, y)
    with warnings.catch_warnings(record=True) as w_ours:
        warnings.simplefilter("always")
        ours = GridGPRegressor().fit(X, y)
    bound = [str(w.message) for w in w_sk if issubclass(w.category, ConvergenceWarning)]
    assert bound and bound == [str(w.message) for w in w_ours if issubclass(w.category, ConvergenceWarning)]
    np.testing.assert_allclose(ours.kernel_.theta, sk.kernel_.theta, rtol=1e-6, atol=1e-6)


# ---------------------------------------------------------------------------------------
# A constant term: C1 * RBF(...) + C2
# ---------------------------------------------------------------------------------------

CASES = [
    ((7, 9), C(1.3) * RBF([0.4, 0.9]) + C(2.0) + WhiteKernel(0.05)),
    ((4, 5, 3), C(2.0) * RBF([0.5, 1.0, 0.7]) + C(0.3) + WhiteKernel(0.02)),
    # the constant first (sklearn's theta order), an isotropic RBF, no WhiteKernel (alpha only)
    ((7, 9), C(0.7) + C(1.1) * RBF(0.6)),
    # two constant terms (their sum is c), one of them fixed
    ((7, 9), C(1.3) * RBF([0.4, 0.9]) + C(0.5) + WhiteKernel(0.05) + C(1.5, constant_value_bounds="fixed")),
    ((30,), C(1.1) * Matern(0.5, nu=1.5) + C(0.5) + WhiteKernel(0.05)),
    # Sherman–Morrison stability: a large and a tiny constant
    ((7, 9), C(1.3) * RBF([0.4, 0.9]) + C(1e4) + WhiteKernel(0.05)),
    ((7, 9), C(1.3) * RBF([0.4, 0.9]) + C(1e-6) + WhiteKernel(0.05)),
]
IDS = ["2d", "3d", "first-no-white", "two-constants", "matern-1d", "c=1e4", "c=1e-6"]


@pytest.mark.parametrize("shape,kernel", CASES, ids=IDS)
def test_constant_term_lml_and_gradient_match_sklearn(shape, kernel):
    _, X, y = toy(shape)
    alpha = 1e-10 if "White" in str(kernel) else 0.05
    y = y + 4.0  # an offset worth modelling
    sk, ours = fit_both(kernel, X, y, optimizer=None, alpha=alpha)
    assert rel(ours.log_marginal_likelihood_value_, sk.log_marginal_likelihood_value_) < 1e-8
    np.testing.assert_allclose(ours.alpha_, sk.alpha_, rtol=1e-8, atol=1e-8 * np.abs(sk.alpha_).max())
    rng = np.random.default_rng(5)
    for theta in (sk.kernel_.theta, sk.kernel_.theta + 0.3 * rng.standard_normal(len(sk.kernel_.theta))):
        v1, g1 = sk.log_marginal_likelihood(theta, eval_gradient=True)
        v2, g2 = ours.log_marginal_likelihood(theta, eval_gradient=True)
        assert rel(v2, v1) < 1e-8
        assert rel(g2, g1) < 1e-8
        assert rel(ours.log_marginal_likelihood(theta), v2) < 1e-14  # with or without the gradient
        np.testing.assert_allclose(g2, finite_differences(ours, theta), rtol=1e-5, atol=1e-6 * np.abs(g2).max())


@pytest.mark.parametrize("shape,kernel", CASES, ids=IDS)
@pytest.mark.parametrize("normalize_y", [False, True])
@pytest.mark.parametrize("n_targets", [None, 1, 2])
def test_constant_term_predictions_match_sklearn(shape, kernel, normalize_y, n_targets):
    """mean, std, cov on the training grid, another grid, scattered points and one point,
    for 1-D y, y of shape (n, 1) and two targets, with and without normalize_y."""
    _, X, y = toy(shape, seed=2)
    y = y + 4.0
    if n_targets is not None:
        y = np.stack([y * (t + 1) - 3 * t for t in range(n_targets)], axis=1)
    alpha = 1e-10 if "White" in str(kernel) else 0.05
    sk, ours = fit_both(kernel, X, y, optimizer=None, alpha=alpha, normalize_y=normalize_y)
    D = X.shape[1]
    rng = np.random.default_rng(3)
    other_grid = grid_points(*[np.linspace(-1.5, 2.5, 4)] * D)
    for P in (X, other_grid, rng.uniform(-1.5, 2.5, (9, D)), rng.uniform(-1, 2, (1, D))):
        m1, m2 = sk.predict(P), ours.predict(P)
        assert m2.shape == m1.shape and rel(m2, m1) < 1e-8
        (m1, s1), (m2, s2) = sk.predict(P, return_std=True), ours.predict(P, return_std=True)
        assert s2.shape == s1.shape and rel(m2, m1) < 1e-8 and rel(s2, s1) < 1e-7
        (m1, c1), (m2, c2) = sk.predict(P, return_cov=True), ours.predict(P, return_cov=True)
        assert c2.shape == c1.shape and rel(m2, m1) < 1e-8 and rel(c2, c1) < 1e-7


def test_constant_term_learning_matches_sklearn():
    """Optimised hyperparameters (signal variance, length scales, the constant, the noise):
    same start, same objective to ~1e-14, hence the same L-BFGS-B path (see the default
    kernel's test for the tolerances)."""
    _, X, y = toy((8, 6), seed=3)
    k = C(1.0) * RBF([1.0, 1.0]) + C(1.0) + WhiteKernel(0.1)
    sk, ours = fit_both(k, X, y + 3.0, random_state=0)
    assert ours.n_iter_ > 0
    np.testing.assert_allclose(ours.kernel_.theta, sk.kernel_.theta, rtol=1e-6, atol=1e-6)
    assert rel(ours.log_marginal_likelihood_value_, sk.log_marginal_likelihood_value_) < 1e-10
    assert repr(ours.kernel_) == repr(sk.kernel_)
    P = np.random.default_rng(0).uniform(-1, 2, (6, 2))
    (m1, s1), (m2, s2) = sk.predict(P, return_std=True), ours.predict(P, return_std=True)
    assert rel(m2, m1) < 1e-6 and rel(s2, s1) < 1e-6
    # with restarts and normalize_y, as scikit-learn
    sk, ours = fit_both(k, X, y + 3.0, random_state=1, n_restarts_optimizer=2, normalize_y=True)
    assert abs(ours.log_marginal_likelihood_value_ - sk.log_marginal_likelihood_value_) < 1e-6 * abs(sk.log_marginal_likelihood_value_)


def test_constant_term_float32():
    _, X, y = toy((7, 5))
    k = C(1.0) * RBF([0.5, 0.9]) + C(2.0) + WhiteKernel(0.1)
    a = GridGPRegressor(k, optimizer=None).fit(X, y + 3)
    b = GridGPRegressor(k, optimizer=None).fit(X.astype(np.float32), (y + 3).astype(np.float32))
    # cond(A) ≤ 1 + ‖sK‖/σ² ≈ 100 (the constant never enters a solve): about 5 digits in float32.
    assert abs(b.log_marginal_likelihood_value_ - a.log_marginal_likelihood_value_) < 1e-4 * abs(a.log_marginal_likelihood_value_)
    X32 = X.astype(np.float32)
    for P, Q in ((X32, X), (X32[:5] + np.float32(0.01), X[:5] + 0.01)):
        (m, s), (m64, s64) = b.predict(P, return_std=True), a.predict(Q, return_std=True)
        assert m.dtype == s.dtype == np.float32
        assert rel(m, m64) < 1e-4 and rel(s, s64) < 1e-3


def test_constant_term_samples_on_the_grid():
    """On the training grid samples come from the eigenbasis plus the rank-one term
    σ⁴ g vvᵀ. With a weak product kernel, a strong constant and much noise that term is a
    quarter of the posterior covariance, four times the tolerance (checked below: the model
    without the constant has the covariance without it), while the Monte Carlo error of
    20000 samples is ≈ √(2/20000) ≈ 1% of the scale."""
    _, X, y = toy((6, 5), seed=8)
    k = C(0.05) * RBF([0.5, 0.8]) + C(10.0)
    sk, ours = fit_both(k, X, y + 5, optimizer=None, alpha=0.5)
    cov = sk.predict(X, return_cov=True)[1]
    atol = 0.05 * np.abs(cov).max()
    without = GridGPRegressor(C(0.05) * RBF([0.5, 0.8]), optimizer=None, alpha=0.5).fit(X, y + 5)
    assert np.abs(cov - without.predict(X, return_cov=True)[1]).max() > 4 * atol
    S = ours.sample_y(X, n_samples=20000, random_state=0)
    np.testing.assert_allclose(np.cov(S), cov, atol=atol)
    np.testing.assert_allclose(S.mean(axis=1), sk.predict(X), atol=0.02)
    assert ours.sample_y(X[:4] + 0.01, 3).shape == (4, 3)


def test_constant_term_prior_before_fit():
    _, X, _ = toy((6, 5))
    k = C(1.5) * RBF([0.5, 0.9]) + C(2.0) + WhiteKernel(0.1)
    for ret in ({"return_std": True}, {"return_cov": True}):
        (m1, v1), (m2, v2) = GaussianProcessRegressor(k).predict(X[:4], **ret), GridGPRegressor(k).predict(X[:4], **ret)
        np.testing.assert_array_equal(m2, m1)
        np.testing.assert_allclose(v2, v1, rtol=1e-12)


def test_unsupported_sums_keep_clear_errors():
    axes, X, y = toy((6, 5))
    with pytest.raises(ValueError, match=r"a sum of 2 other terms \(.*RBF.* \+ .*Matern.*\) is not Kronecker-structured"):
        GridGPRegressor(C() * RBF([1.0, 1.0]) + C() * Matern(1.0) + C()).fit(X, y)
    with pytest.raises(ValueError, match="one product of per-dimension kernels plus optional ConstantKernel"):
        GridGPRegressor(RBF(1.0) + RBF(2.0) + WhiteKernel()).fit(X, y)
    with pytest.raises(ValueError, match="Sum .*inside a Product"):
        GridGPRegressor((RBF([1.0, 1.0]) + C()) * C()).fit(X, y)
    with pytest.raises(ValueError, match="no factor acting on the grid"):
        GridGPRegressor(C() + WhiteKernel()).fit(X, y)
    k = C() * RBF([1.0, 1.0]) + C() + WhiteKernel()
    Y = np.sin(grid_points(*axes)[:, 0]).reshape(6, 5)
    Y[2, 3] = np.nan
    with pytest.raises(NotImplementedError, match="ConstantKernel term .*incomplete grids"):
        GridGPRegressor(k).fit_grid(axes, Y)
    with pytest.raises(NotImplementedError, match="ConstantKernel term .*per-sample alpha"):
        GridGPRegressor(k, alpha=np.full(len(y), 0.1)).fit(X, y)


# ---------------------------------------------------------------------------------------
# n_targets
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("n_targets", [None, 1, 3])
def test_n_targets_shapes_the_prior_as_sklearn(n_targets):
    _, X, _ = toy((4, 3))
    P = X[:5]
    k = C(1.2) * RBF([0.7, 0.9]) + WhiteKernel(0.05)
    sk, ours = GaussianProcessRegressor(k, n_targets=n_targets), GridGPRegressor(k, n_targets=n_targets)
    m1, m2 = sk.predict(P), ours.predict(P)
    assert m2.shape == m1.shape and np.array_equal(m1, m2)
    for ret in ({"return_std": True}, {"return_cov": True}):
        (m1, v1), (m2, v2) = sk.predict(P, **ret), ours.predict(P, **ret)
        assert m2.shape == m1.shape and v2.shape == v1.shape
        np.testing.assert_allclose(v2, v1, rtol=1e-12)
    assert ours.sample_y(P, 4).shape == sk.sample_y(P, 4).shape
    # the default kernel before fit, too
    assert GridGPRegressor(n_targets=n_targets).sample_y(P, 2).shape == GaussianProcessRegressor(n_targets=n_targets).sample_y(P, 2).shape


def test_n_targets_checked_at_fit_and_ignored_after():
    _, X, y = toy((4, 3))
    Y = np.stack([y, 2 * y], axis=1)
    k = C(1.2) * RBF([0.7, 0.9]) + WhiteKernel(0.05)
    for n, yy in ((3, Y), (2, y), (1, Y)):
        with pytest.raises(ValueError) as ours:
            GridGPRegressor(k, n_targets=n).fit(X, yy)
        with pytest.raises(ValueError) as sk:
            GaussianProcessRegressor(k, n_targets=n).fit(X, yy)
        assert str(ours.value) == str(sk.value)
    m = GridGPRegressor(k, n_targets=2, optimizer=None).fit(X, Y)
    assert m.predict(X[:3]).shape == (3, 2) and m.sample_y(X[:3], 4).shape == (3, 2, 4)
    for bad in (0, -1, 1.5, True, "2"):
        with pytest.raises(ValueError, match="n_targets must be None or a positive integer"):
            GridGPRegressor(k, n_targets=bad).fit(X, Y)
        with pytest.raises(ValueError, match="n_targets must be None or a positive integer"):
            GridGPRegressor(k, n_targets=bad).predict(X)
