"""FunBaT / FunCP: the state-space smoother against a dense GP, the message sums against
brute force, recovery of known continuous-indexed tensors, calibrated intervals,
determinism across thread counts and input validation."""

from __future__ import annotations

import pickle

import numpy as np
import pytest
from sklearn.base import clone

import rankcore
from rankcore import FunBaT, FunCP, _core


def matern(kind, ell, var, a, b):
    d = np.abs(np.asarray(a)[:, None] - np.asarray(b)[None, :])
    if kind == "matern12":
        return var * np.exp(-d / ell)
    s = np.sqrt(3.0) * d / ell
    return var * (1 + s) * np.exp(-s)


def dense_posterior(kind, ell, var, x, lam, eta):
    """Posterior of U (nodes × functions, node-major) under the prior K ⊗ I and the
    Gaussian factors exp(−½uᵢᵀΛᵢuᵢ + ηᵢᵀuᵢ), written plainly; and the log evidence."""
    n, r = eta.shape
    K = np.kron(matern(kind, ell, var, x, x), np.eye(r))
    L = scipy_block_diag(lam)
    A = np.eye(n * r) + L @ K
    post = K @ np.linalg.inv(A)
    post = 0.5 * (post + post.T)
    mean = post @ eta.ravel()
    logz = -0.5 * np.linalg.slogdet(A)[1] + 0.5 * eta.ravel() @ post @ eta.ravel()
    return mean.reshape(n, r), post, logz


def scipy_block_diag(blocks):
    import scipy.linalg

    return scipy.linalg.block_diag(*blocks)


def random_messages(rng, n, r, strength=3.0):
    G = rng.standard_normal((n, r, r))
    lam = strength * np.einsum("nij,nkj->nik", G, G) / r
    return np.ascontiguousarray(lam), rng.standard_normal((n, r))


def u1(x):
    return np.sin(2 * np.pi * x) ** 2 * np.cos(2 * np.pi * x)


def u2(x):
    return np.exp(-2 * x) * np.sin(1.5 * np.pi * x)


def rmse(a, b):
    return float(np.sqrt(np.mean((np.asarray(a) - np.asarray(b)) ** 2)))


# ---------------------------------------------------------------------------------------
# the state-space smoother is the dense GP posterior
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["matern12", "matern32"])
@pytest.mark.parametrize("r", [1, 3])
def test_smoother_equals_dense_gp(kind, r):
    rng = np.random.default_rng(3)
    n = 25
    x = np.sort(rng.uniform(-1, 2, n))
    lam, eta = random_messages(rng, n, r)
    ell, var = 0.4, 1.7
    st = _core.funbat_smooth(kind, ell, var, r, x, lam, eta)
    mean, post, logz = dense_posterior(kind, ell, var, x, lam, eta)
    np.testing.assert_allclose(st["mean"].reshape(n, r), mean, atol=1e-10)
    cov = st["cov"].reshape(n, r, r)
    for i in range(n):
        np.testing.assert_allclose(cov[i], post[i * r : (i + 1) * r, i * r : (i + 1) * r], atol=1e-10)
    assert st["log_z"] == pytest.approx(logz, abs=1e-8)
    ev = _core.funbat_evidence(kind, np.array([[ell, var], [2 * ell, var]]), r, x, lam, eta)
    assert ev[0] == pytest.approx(logz, abs=1e-8)
    assert ev[1] == pytest.approx(dense_posterior(kind, 2 * ell, var, x, lam, eta)[2], abs=1e-8)

    # Interpolation between nodes and extrapolation at both ends equal the dense GP with
    # the query as an extra node carrying no message.
    xq = np.array([-3.0, x[0], 0.5 * (x[4] + x[5]), x[7] + 1e-7, 0.37, 4.5])
    states = [st["filt_mean"], st["filt_cov"], st["state_mean"], st["state_cov"]]
    mq, cq = _core.funbat_interpolate(kind, ell, var, r, x, states, xq)
    mq, cq = mq.reshape(-1, r), cq.reshape(-1, r, r)
    for t, xs in enumerate(xq):
        xa = np.append(x, xs)
        la = np.concatenate([lam, np.zeros((1, r, r))])
        ea = np.concatenate([eta, np.zeros((1, r))])
        if xs in x:
            xa, la, ea = x, lam, eta
        o = np.argsort(xa, kind="stable")
        m2, p2, _ = dense_posterior(kind, ell, var, xa[o], la[o], ea[o])
        pos = int(np.flatnonzero(xa[o] == xs)[0])
        np.testing.assert_allclose(mq[t], m2[pos], atol=1e-8)
        np.testing.assert_allclose(cq[t], p2[pos * r : (pos + 1) * r, pos * r : (pos + 1) * r], atol=1e-8)


@pytest.mark.parametrize("kind", ["matern12", "matern32"])
def test_one_mode_free_with_core_fixed_is_the_dense_gp(kind):
    """Core and mode 2 known exactly: mode 1's messages + smoother give the exact GP
    posterior of u¹ given y = vec(W)ᵀ(u¹ ⊗ u²) + noise."""
    rng = np.random.default_rng(5)
    r1, r2, n = 2, 3, 60
    nodes1 = np.sort(rng.uniform(0, 1, 12))
    nodes2 = np.sort(rng.uniform(0, 1, 7))
    idx = np.stack([rng.integers(0, 12, n), rng.integers(0, 7, n)], axis=1).astype(np.int64)
    W = rng.standard_normal((r1, r2))
    U2 = rng.standard_normal((7, r2))
    y = rng.standard_normal(n)
    tau = 4.0
    mu = W.ravel()
    m2 = np.outer(mu, mu)  # a point-mass core
    means = [np.zeros((12, r1)), U2]
    seconds = [np.zeros((12, r1, r1)), np.einsum("ia,ib->iab", U2, U2)]
    lam, eta = _core.funbat_mode_messages(0, [r1, r2], "tucker", [12, 7], idx, y, means, seconds, mu, m2, tau)
    lam, eta = lam.reshape(12, r1, r1), eta.reshape(12, r1)
    ell, var = 0.3, 1.2
    st = _core.funbat_smooth(kind, ell, var, r1, nodes1, lam, eta)
    # Dense: y_n = B_n · vec(U1) with B_n picking node idx[n, 0] and b_n = W U2[idx[n, 1]].
    B = np.zeros((n, 12 * r1))
    for e in range(n):
        B[e, idx[e, 0] * r1 : (idx[e, 0] + 1) * r1] = W @ U2[idx[e, 1]]
    K = np.kron(matern(kind, ell, var, nodes1, nodes1), np.eye(r1))
    S = B @ K @ B.T + np.eye(n) / tau
    mean = K @ B.T @ np.linalg.solve(S, y)
    post = K - K @ B.T @ np.linalg.solve(S, B @ K)
    np.testing.assert_allclose(st["mean"], mean, atol=1e-9)
    cov = st["cov"].reshape(12, r1, r1)
    for i in range(12):
        np.testing.assert_allclose(cov[i], post[i * r1 : (i + 1) * r1, i * r1 : (i + 1) * r1], atol=1e-9)


def test_cp_sums_equal_tucker_with_a_diagonal_core():
    rng = np.random.default_rng(2)
    r, K, n = 3, 3, 50
    nodes = [5, 4, 6]
    idx = np.stack([rng.integers(0, m, n) for m in nodes], axis=1).astype(np.int64)
    y = rng.standard_normal(n)
    means = [rng.standard_normal((m, r)) for m in nodes]
    seconds = []
    for m in nodes:
        G = rng.standard_normal((m, r, r))
        seconds.append(np.ascontiguousarray(np.einsum("nij,nkj->nik", G, G)))
    w = rng.standard_normal(r)
    G = rng.standard_normal((r, r))
    Mw = np.outer(w, w) + G @ G.T
    D = np.zeros((r**K, r))
    for a in range(r):
        D[np.ravel_multi_index((a,) * K, (r,) * K), a] = 1.0
    mu_t, M_t = D @ w, D @ Mw @ D.T
    for k in range(K):
        lc, ec = _core.funbat_mode_messages(k, [r] * K, "cp", nodes, idx, y, means, seconds, w, Mw.ravel(), 1.5)
        lt, et = _core.funbat_mode_messages(k, [r] * K, "tucker", nodes, idx, y, means, seconds, mu_t, M_t.ravel(), 1.5)
        np.testing.assert_allclose(lc, lt, atol=1e-10)
        np.testing.assert_allclose(ec, et, atol=1e-10)
    sc, vc = _core.funbat_core_sums([r] * K, "cp", nodes, idx, y, means, seconds)
    st, vt = _core.funbat_core_sums([r] * K, "tucker", nodes, idx, y, means, seconds)
    np.testing.assert_allclose(sc.reshape(r, r), D.T @ st.reshape(r**K, r**K) @ D, atol=1e-10)
    np.testing.assert_allclose(vc, D.T @ vt, atol=1e-10)


# ---------------------------------------------------------------------------------------
# recovery
# ---------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def paper_case():
    """The synthetic case of Fang et al. (2024): rank 1, two modes on [0, 1], noise-free."""
    rng = np.random.default_rng(1)
    X = rng.uniform(0, 1, (400, 2))
    y = u1(X[:, 0]) * u2(X[:, 1])
    model = FunBaT(rank=1, random_state=0).fit(X, y)
    return model, X, y


def test_paper_synthetic_case(paper_case):
    model, X, y = paper_case
    rng = np.random.default_rng(11)
    Xt = rng.uniform(0, 1, (500, 2))  # coordinates never seen in training
    assert not np.isin(Xt, X).any()
    assert rmse(model.predict(Xt), u1(Xt[:, 0]) * u2(Xt[:, 1])) <= 0.005
    # A grid through [0, 1]², including the corners beyond the outermost training nodes.
    g = np.linspace(0, 1, 41)
    Xg = np.stack(np.meshgrid(g, g, indexing="ij"), -1).reshape(-1, 2)
    assert rmse(model.predict(Xg), u1(Xg[:, 0]) * u2(Xg[:, 1])) <= 0.005
    assert model.converged_ and 1 <= model.n_iter_ <= model.max_iter
    # The learned factor functions match u1, u2 up to scale (and sign).
    for k, fn in enumerate((u1, u2)):
        est = model.factor_functions_[k](g)[:, 0]
        corr = np.corrcoef(est, fn(g))[0, 1]
        assert abs(corr) > 0.999


def test_factor_functions_are_node_tables(paper_case):
    model = paper_case[0]
    for ff in model.factor_functions_:
        m, s = ff(ff.nodes, return_std=True)
        np.testing.assert_allclose(m, ff.mean, rtol=0, atol=1e-12)
        np.testing.assert_allclose(s**2, np.diagonal(ff.cov, axis1=1, axis2=2), rtol=1e-10, atol=1e-14)


def test_three_mode_tucker_with_asymmetric_core():
    """An asymmetric 2 × 3 × 2 core: every mode's unfolding must use the same axis order."""
    rng = np.random.default_rng(7)
    W = rng.standard_normal((2, 3, 2))
    fs = [
        [lambda x: np.sin(2 * x), lambda x: np.cos(3 * x)],
        [lambda x: np.ones_like(x), lambda x: np.sin(x), lambda x: np.cos(2 * x + 1)],
        [lambda x: np.exp(-x), lambda x: np.sin(3 * x) * 0.8],
    ]

    def truth(X):
        U = [np.stack([f(X[:, k]) for f in fs[k]], axis=1) for k in range(3)]
        return np.einsum("abc,na,nb,nc->n", W, *U)

    # Coordinates on a fine lattice, so that each node carries several entries.
    X = rng.integers(0, 40, (1500, 3)) / 40 * 2.0
    y = truth(X)
    Xt = rng.uniform(0, 2, (400, 3))
    model = FunBaT(rank=(2, 3, 2), random_state=0, max_iter=60).fit(X, y)
    err = rmse(model.predict(Xt), truth(Xt)) / np.std(truth(Xt))
    assert err < 0.05, err
    assert model.core_.shape == (2, 3, 2)
    # Transposing the modes (and the ranks) gives the same fit quality: axis order agrees.
    perm = [2, 0, 1]
    model_p = FunBaT(rank=(2, 2, 3), random_state=0, max_iter=60).fit(X[:, perm], y)
    err_p = rmse(model_p.predict(Xt[:, perm]), truth(Xt)) / np.std(truth(Xt))
    assert err_p < 0.05, err_p


def test_cp_variant_recovers_a_cp_tensor():
    rng = np.random.default_rng(4)
    X = rng.uniform(0, 1, (600, 2))
    y = 1.5 * np.sin(3 * X[:, 0]) * np.cos(2 * X[:, 1]) + 0.7 * X[:, 0] ** 2 * np.sin(4 * X[:, 1])
    Xt = rng.uniform(0, 1, (300, 2))
    yt = 1.5 * np.sin(3 * Xt[:, 0]) * np.cos(2 * Xt[:, 1]) + 0.7 * Xt[:, 0] ** 2 * np.sin(4 * Xt[:, 1])
    model = FunCP(rank=2, random_state=0).fit(X, y)
    assert model.core_.shape == (2,)
    assert rmse(model.predict(Xt), yt) / np.std(yt) < 0.02
    # FunBaT(core="cp") is the same model.
    a = FunCP(rank=2, random_state=0, max_iter=3).fit(X, y).predict(Xt)
    b = FunBaT(rank=2, core="cp", random_state=0, max_iter=3).fit(X, y).predict(Xt)
    np.testing.assert_array_equal(a, b)


def test_intervals_are_calibrated_on_noisy_data():
    rng = np.random.default_rng(8)
    X = rng.uniform(0, 1, (900, 2))
    f = lambda X: np.sin(4 * X[:, 0]) * np.cos(3 * X[:, 1]) + 0.5 * X[:, 1]  # noqa: E731
    y = f(X) + 0.1 * rng.standard_normal(len(X))
    Xt = rng.uniform(0, 1, (1000, 2))
    yt = f(Xt) + 0.1 * rng.standard_normal(len(Xt))
    model = FunBaT(rank=2, kernel="matern32", random_state=1).fit(X, y)
    mean, std = model.predict(Xt, return_std=True)
    cover = np.mean(np.abs(yt - mean) <= 1.959964 * std)
    assert 0.90 <= cover <= 0.99, cover
    assert np.sqrt(model.noise_variance_) == pytest.approx(0.1, rel=0.2)
    fm, fv = model.predict_f(Xt)
    np.testing.assert_array_equal(fm, mean)
    assert np.all(fv >= 0) and np.all(fv < std**2)


# ---------------------------------------------------------------------------------------
# determinism, inputs, estimator plumbing
# ---------------------------------------------------------------------------------------


def test_same_result_for_one_and_many_threads():
    rng = np.random.default_rng(9)
    X = rng.uniform(0, 1, (400, 3))
    y = np.sin(3 * X[:, 0]) * np.cos(2 * X[:, 1]) * (1 + X[:, 2]) + 0.05 * rng.standard_normal(400)
    Xt = rng.uniform(-0.1, 1.1, (300, 3))
    out = []
    for n in (1, 3):
        with rankcore.threads(n):
            m = FunBaT(rank=(2, 2, 2), random_state=0, max_iter=5).fit(X, y)
            out.append((m.predict(Xt, return_std=True), m.core_, m.lengthscales_))
    for a, b in zip(out[0][0], out[1][0]):
        np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(out[0][1], out[1][1])
    np.testing.assert_array_equal(out[0][2], out[1][2])


def test_inputs_are_not_modified_and_dtype_follows_x():
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (120, 2)).astype(np.float32)
    y = (X[:, 0] * np.cos(3 * X[:, 1])).astype(np.float32)
    X.setflags(write=False)
    y.setflags(write=False)
    Xc, yc = X.copy(), y.copy()
    m = FunBaT(rank=1, random_state=0, max_iter=5).fit(X, y)
    p = m.predict(X)
    np.testing.assert_array_equal(X, Xc)
    np.testing.assert_array_equal(y, yc)
    assert p.dtype == np.float32
    assert m.predict(X.astype(np.float64)).dtype == np.float64


def test_seeded_fits_repeat_and_clone_and_pickle(paper_case):
    model, X, y = paper_case
    again = clone(model).fit(X, y)
    np.testing.assert_array_equal(again.predict(X[:20]), model.predict(X[:20]))
    restored = pickle.loads(pickle.dumps(model))
    np.testing.assert_array_equal(restored.predict(X[:20]), model.predict(X[:20]))
    assert model.get_params()["rank"] == 1


def test_fixed_hyperparameters_are_kept():
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (150, 2))
    y = np.sin(3 * X[:, 0]) * X[:, 1]
    m = FunBaT(rank=1, lengthscale=[0.3, 0.5], variance=2.0, random_state=0, max_iter=5).fit(X, y)
    np.testing.assert_array_equal(m.lengthscales_, [0.3, 0.5])
    np.testing.assert_array_equal(m.variances_, [2.0, 2.0])
    m = FunBaT(rank=1, lengthscale=0.3, random_state=0, max_iter=5).fit(X, y)
    np.testing.assert_array_equal(m.lengthscales_, [0.3, 0.3])


def test_verbose_prints(capsys):
    rng = np.random.default_rng(0)
    X = rng.uniform(0, 1, (50, 2))
    FunBaT(rank=1, random_state=0, max_iter=2, verbose=True).fit(X, X[:, 0] * X[:, 1])
    assert "FunBaT iter" in capsys.readouterr().out


@pytest.mark.parametrize(
    "kwargs,X,y,match",
    [
        ({}, [[0.0, np.nan], [1.0, 2.0], [0.5, 1.0]], [1.0, 2.0, 3.0], "X"),
        ({}, [[0.0, np.inf], [1.0, 2.0], [0.5, 1.0]], [1.0, 2.0, 3.0], "X"),
        ({}, [[0.0, 1.0], [1.0, 2.0], [0.5, 1.5]], [1.0, np.nan, 3.0], "y"),
        ({}, [[0.0, 1.0], [1.0, 2.0], [0.5, 1.5]], [1.0, np.inf, 3.0], "y"),
        ({}, np.empty((0, 2)), np.empty(0), "0 sample"),
        ({"rank": 0}, [[0.0, 1.0], [1.0, 2.0]], [1.0, 2.0], "rank"),
        ({"rank": (1, 2, 3)}, [[0.0, 1.0], [1.0, 2.0]], [1.0, 2.0], "rank"),
        ({"rank": (1, 2), "core": "cp"}, [[0.0, 1.0], [1.0, 2.0]], [1.0, 2.0], "rank"),
        ({"rank": 1.5}, [[0.0, 1.0], [1.0, 2.0]], [1.0, 2.0], "rank"),
        ({}, [[0.0, 1.0], [1.0, 1.0], [2.0, 1.0]], [1.0, 2.0, 3.0], r"X\[:, 1\]"),
        ({"kernel": "rbf"}, [[0.0, 1.0], [1.0, 2.0]], [1.0, 2.0], "kernel"),
        ({"core": "full"}, [[0.0, 1.0], [1.0, 2.0]], [1.0, 2.0], "core"),
        ({"lengthscale": -1.0}, [[0.0, 1.0], [1.0, 2.0]], [1.0, 2.0], "lengthscale"),
        ({"lengthscale": [1.0, 2.0, 3.0]}, [[0.0, 1.0], [1.0, 2.0]], [1.0, 2.0], "lengthscale"),
        ({"variance": 0.0}, [[0.0, 1.0], [1.0, 2.0]], [1.0, 2.0], "variance"),
        ({"max_iter": 0}, [[0.0, 1.0], [1.0, 2.0]], [1.0, 2.0], "max_iter"),
        ({"damping": 0.0}, [[0.0, 1.0], [1.0, 2.0]], [1.0, 2.0], "damping"),
        ({"noise_prior": (0.0, 1.0)}, [[0.0, 1.0], [1.0, 2.0]], [1.0, 2.0], "noise_prior"),
        ({}, [[0.0, 1.0], [1.0, 2.0]], [1.0, 2.0, 3.0], "inconsistent"),
    ],
)
def test_bad_input(kwargs, X, y, match):
    with pytest.raises(ValueError, match=match):
        FunBaT(**kwargs).fit(np.asarray(X), np.asarray(y))


def test_predict_checks_the_number_of_modes(paper_case):
    model = paper_case[0]
    with pytest.raises(ValueError, match="features"):
        model.predict(np.zeros((3, 3)))
    with pytest.raises(ValueError, match="X"):
        model.predict(np.array([[0.1, np.nan]]))


# ---------------------------------------------------------------------------------------
# scikit-learn's estimator checks
# ---------------------------------------------------------------------------------------

from sklearn.utils.estimator_checks import parametrize_with_checks  # noqa: E402

_NOT_THE_MODEL = (
    "make_regression's target is linear in 10 coordinates: a rank-1 product of smooth "
    "functions of each coordinate (the model FunBaT fits) cannot reach R² > 0.5 on it"
)


@parametrize_with_checks(
    [FunBaT(rank=1, max_iter=3, random_state=0), FunCP(rank=1, max_iter=3, random_state=0)],
    expected_failed_checks=lambda est: {"check_regressors_train": _NOT_THE_MODEL},
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


def test_uncertainty_grows_away_from_the_data(paper_case):
    model = paper_case[0]
    _, var_in = model.predict_f(np.array([[0.5, 0.3]]))
    _, var_out = model.predict_f(np.array([[1.8, 0.3]]))
    assert var_out[0] > 100 * var_in[0]
    ff = model.factor_functions_[0]
    _, s = ff(np.array([0.5, 1.2, 2.0]), return_std=True)
    assert s[0, 0] < s[1, 0] < s[2, 0]


def test_matern12_fits_a_rough_field():
    rng = np.random.default_rng(12)
    X = rng.uniform(0, 1, (300, 2))
    f = lambda X: np.abs(X[:, 0] - 0.4) * (1 + np.sign(X[:, 1] - 0.5) * 0.5)  # noqa: E731
    m = FunBaT(rank=1, kernel="matern12", random_state=0, max_iter=30).fit(X, f(X))
    Xt = rng.uniform(0, 1, (300, 2))
    assert rmse(m.predict(Xt), f(Xt)) / np.std(f(Xt)) < 0.1


def test_core_float32_path_matches_float64():
    rng = np.random.default_rng(6)
    n, r = 30, 2
    x = np.sort(rng.uniform(0, 3, n))
    lam, eta = random_messages(rng, n, r)
    a = _core.funbat_smooth("matern32", 0.5, 1.0, r, x, lam, eta)
    b = _core.funbat_smooth("matern32", 0.5, 1.0, r, x.astype(np.float32), lam.astype(np.float32), eta.astype(np.float32))
    assert b["mean"].dtype == np.float32
    np.testing.assert_allclose(b["mean"], a["mean"], rtol=0, atol=1e-4)
    np.testing.assert_allclose(b["cov"], a["cov"], rtol=0, atol=1e-4)


def test_dask_input_is_not_silently_computed():
    da = pytest.importorskip("dask.array")
    X = da.from_array(np.random.default_rng(0).uniform(0, 1, (20, 2)), chunks=10)
    with pytest.raises(NotImplementedError):
        FunBaT(rank=1).fit(X, np.ones(20))


def test_core_posterior_is_the_gaussian_update():
    rng = np.random.default_rng(13)
    G = rng.standard_normal((6, 6))
    lam = G @ G.T
    eta = rng.standard_normal(6)
    mu, cov = _core.funbat_core_posterior(lam, eta)
    ref = np.linalg.inv(np.eye(6) + lam)
    np.testing.assert_allclose(cov.reshape(6, 6), ref, atol=1e-12)
    np.testing.assert_allclose(mu, ref @ eta, atol=1e-12)
