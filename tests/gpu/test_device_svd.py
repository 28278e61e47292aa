"""On the device: randomized SVD/PCA on cupy input against the CPU path on the same data.

The same seed gives the same Gaussian test matrix (normals bit-identical), so singular
values agree to 1e-10 relative in float64 and 1e-4 in float32, and subspaces by their
principal angles.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import rankcore

RTOL = {np.float64: 1e-10, np.float32: 1e-4}


def _decaying(m, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, min(m, n))))
    V, _ = np.linalg.qr(rng.standard_normal((n, min(m, n))))
    s = np.logspace(0, -4, min(m, n))
    return ((U * s) @ V.T).astype(dtype)


def _sine(A, B):
    Qa, _ = np.linalg.qr(np.asarray(A, dtype=np.float64))
    Qb, _ = np.linalg.qr(np.asarray(B, dtype=np.float64))
    c = np.linalg.svd(Qa.T @ Qb, compute_uv=False).min()
    return np.sqrt(max(0.0, 1 - c * c))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [{}, {"center": True}, {"transpose": True}, {"n_iter": 2, "power_iteration_normalizer": "LU"}], ids=str)
def test_dense_matches_cpu(cp, no_host_transfer, dtype, kw):
    A = _decaying(2000, 500, dtype)
    with no_host_transfer():
        U, S, Vt = rankcore.randomized_svd(cp.asarray(A), 20, random_state=1, **kw)
    assert all(isinstance(a, cp.ndarray) and a.dtype == dtype for a in (U, S, Vt))
    Uc, Sc, Vc = rankcore.randomized_svd(A, 20, random_state=1, **kw)
    np.testing.assert_allclose(cp.asnumpy(S), Sc, rtol=RTOL[dtype] * (10 if "LU" in str(kw) else 1))
    assert _sine(cp.asnumpy(U[:, :10]), Uc[:, :10]) < (1e-6 if dtype == np.float64 else 1e-2)
    assert _sine(cp.asnumpy(Vt[:10]).T, Vc[:10].T) < (1e-6 if dtype == np.float64 else 1e-2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("center", [False, True])
def test_sparse_matches_cpu(cp, no_host_transfer, dtype, fmt, center):
    import cupyx.scipy.sparse as csp

    A = sp.random(5000, 800, density=0.01, format=fmt, random_state=3, dtype=dtype)
    Ad = (csp.csr_matrix if fmt == "csr" else csp.csc_matrix)(A)
    with no_host_transfer():
        U, S, Vt = rankcore.randomized_svd(Ad, 10, random_state=2, center=center)
    Uc, Sc, Vc = rankcore.randomized_svd(A, 10, random_state=2, center=center)
    np.testing.assert_allclose(cp.asnumpy(S), Sc, rtol=RTOL[dtype])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_fixed_accuracy_matches_cpu(cp, no_host_transfer, dtype):
    A = _decaying(1500, 400, dtype, seed=5)
    with no_host_transfer():
        U, S, Vt = rankcore.randomized_svd(cp.asarray(A), None, tol=0.05, random_state=0)
    Uc, Sc, Vc = rankcore.randomized_svd(A, None, tol=0.05, random_state=0)
    assert S.shape == Sc.shape
    np.testing.assert_allclose(cp.asnumpy(S), Sc, rtol=RTOL[dtype] * 10)


def test_estimators_keep_the_device(cp, no_host_transfer):
    A = _decaying(1000, 300, np.float32)
    Ad = cp.asarray(A)
    for cls, kw in ((rankcore.RandomizedSVD, {"n_components": 8}), (rankcore.RandomizedPCA, {"n_components": 8, "whiten": True})):
        with no_host_transfer():
            est = cls(random_state=0, **kw)
            Y = est.fit_transform(Ad)
            Z = est.transform(Ad)
            B = est.inverse_transform(Z)
        host = cls(random_state=0, **kw).fit(A)
        for attr in ("components_", "singular_values_", "explained_variance_", "explained_variance_ratio_"):
            assert isinstance(getattr(est, attr), cp.ndarray), attr
            assert getattr(est, attr).dtype == np.float32, attr
        np.testing.assert_allclose(cp.asnumpy(est.singular_values_), host.singular_values_, rtol=1e-4)
        np.testing.assert_allclose(cp.asnumpy(est.explained_variance_ratio_), host.explained_variance_ratio_, rtol=1e-3)
        np.testing.assert_allclose(cp.asnumpy(Y), host.transform(A), atol=1e-3 * float(np.abs(host.transform(A)).max()))
        assert isinstance(B, cp.ndarray) and B.shape == A.shape
        with pytest.raises(TypeError, match="fitted on cupy"):
            est.transform(A)
        with pytest.raises(TypeError, match="host"):
            host.transform(Ad)


def test_bad_input_same_errors_as_cpu(cp):
    A = np.ones((30, 20))
    A[1, 1] = np.inf
    with pytest.raises(ValueError, match="M contains infinity"):
        rankcore.randomized_svd(cp.asarray(A), 3)
    with pytest.raises(ValueError, match="2-D"):
        rankcore.randomized_svd(cp.ones(5), 1)
    with pytest.raises(ValueError, match="empty"):
        rankcore.randomized_svd(cp.ones((0, 4)), 1)
    with pytest.raises(ValueError, match="n_components"):
        rankcore.randomized_svd(cp.ones((5, 4)), 9)
    with pytest.raises(ValueError, match="Complex"):
        rankcore.randomized_svd(cp.ones((5, 4), dtype=cp.complex64), 1)
    B = cp.ones((30, 20))
    before = B.copy()
    rankcore.randomized_svd(B, 2, center=True, random_state=0)
    assert bool((B == before).all())


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("sparse_input", [False, True])
def test_pca_covariance_route_matches_cpu(cp, no_host_transfer, dtype, sparse_input):
    import cupyx.scipy.sparse as csp

    rng = np.random.default_rng(4)
    X = (rng.standard_normal((20_000, 30)) * np.linspace(4, 0.2, 30) + 50.0).astype(dtype)
    if sparse_input:
        X = sp.random(20_000, 30, density=0.2, format="csr", random_state=4, dtype=dtype)
    Xd = csp.csr_matrix(X) if sparse_input else cp.asarray(X)
    with no_host_transfer():
        est = rankcore.RandomizedPCA(5).fit(Xd)
        Y = est.transform(Xd)
    assert est.svd_solver_ == "covariance_eigh" and isinstance(Y, cp.ndarray) and Y.dtype == dtype
    host = rankcore.RandomizedPCA(5).fit(X)
    rtol = 1e-10 if dtype == np.float64 else 1e-4
    np.testing.assert_allclose(cp.asnumpy(est.explained_variance_), host.explained_variance_, rtol=rtol)
    np.testing.assert_allclose(cp.asnumpy(est.components_), host.components_, atol=1e3 * rtol)


@pytest.mark.parametrize("sparse_input", [False, True])
def test_pca_probabilistic_model_matches_cpu(cp, no_host_transfer, sparse_input):
    import cupyx.scipy.sparse as csp

    rng = np.random.default_rng(5)
    X = rng.standard_normal((3000, 20)) * np.linspace(3, 0.2, 20) + 2.0
    if sparse_input:
        X = sp.random(3000, 20, density=0.3, format="csr", random_state=5)
    Xd = csp.csr_matrix(X) if sparse_input else cp.asarray(X)
    with no_host_transfer():
        est = rankcore.RandomizedPCA(4).fit(Xd)
        ll = est.score_samples(Xd)
        cov, prec = est.get_covariance(), est.get_precision()
    assert isinstance(ll, cp.ndarray) and isinstance(cov, cp.ndarray)
    host = rankcore.RandomizedPCA(4).fit(X)
    np.testing.assert_allclose(cp.asnumpy(ll), host.score_samples(X), rtol=1e-9)
    np.testing.assert_allclose(cp.asnumpy(cov), host.get_covariance(), rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(cp.asnumpy(prec), host.get_precision(), rtol=1e-8, atol=1e-10)
    assert est.score(Xd) == pytest.approx(host.score(X), rel=1e-10)
