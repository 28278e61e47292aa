"""On the device: random projections on cupy input against the CPU path on the same data.

Sparse families: exactly equal (same lists, same summation order). Gaussian: the same
matrix (normals bit-identical) times cuBLAS instead of faer, so equal to rounding.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import rankcore

DTYPES = [np.float32, np.float64]


def _data(dtype, n=1000, d=700, seed=0):
    return np.random.default_rng(seed).standard_normal((n, d)).astype(dtype)


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("kind", ["sparse", "achlioptas"])
@pytest.mark.parametrize("layout", ["C", "F", "slice"])
def test_sparse_families_dense_input_exactly_equal(cp, no_host_transfer, dtype, kind, layout):
    X = _data(dtype)
    if layout == "F":
        X = np.asfortranarray(X)
    elif layout == "slice":
        X = X[::2, 5:600]
    Xd = cp.asarray(X)
    with no_host_transfer():
        Y = rankcore.random_projection(Xd, 200, kind=kind, random_state=3)
    assert isinstance(Y, cp.ndarray) and Y.dtype == dtype
    np.testing.assert_array_equal(cp.asnumpy(Y), rankcore.random_projection(X, 200, kind=kind, random_state=3))


@pytest.mark.parametrize("dtype", DTYPES)
def test_sparse_family_csr_input_exactly_equal(cp, no_host_transfer, dtype):
    import cupyx.scipy.sparse as csp

    X = sp.random(3000, 5000, density=0.01, format="csr", random_state=1, dtype=dtype)
    Xd = csp.csr_matrix(X)
    with no_host_transfer():
        Y = rankcore.random_projection(Xd, 128, random_state=9)
    np.testing.assert_array_equal(cp.asnumpy(Y), rankcore.random_projection(X, 128, random_state=9))
    est = rankcore.SparseRandomProjection(64, random_state=2)
    out = est.fit_transform(csp.csc_matrix(X))
    assert csp.issparse(out)
    host = rankcore.SparseRandomProjection(64, random_state=2).fit_transform(X.tocsc())
    np.testing.assert_array_equal(out.toarray().get(), host.toarray())


@pytest.mark.parametrize("dtype", DTYPES)
def test_gaussian_equal_to_rounding(cp, no_host_transfer, dtype):
    X = _data(dtype)
    with no_host_transfer():
        Y = rankcore.random_projection(cp.asarray(X), 96, kind="gaussian", random_state=4)
    ref = rankcore.random_projection(X, 96, kind="gaussian", random_state=4)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(cp.asnumpy(Y), ref, rtol=0, atol=tol * np.abs(ref).max())


@pytest.mark.parametrize("cls", [rankcore.SparseRandomProjection, rankcore.GaussianRandomProjection])
def test_estimators_keep_the_device(cp, cls):
    X = _data(np.float32, 500, 400)
    Xd = cp.asarray(X)
    est = cls(50, random_state=0, compute_inverse_components=True).fit(Xd)
    host = cls(50, random_state=0).fit(X)
    Y = est.transform(Xd)
    assert isinstance(Y, cp.ndarray) and Y.dtype == np.float32
    tol = 0 if cls is rankcore.SparseRandomProjection else 1e-4
    np.testing.assert_allclose(cp.asnumpy(Y), host.transform(X), rtol=0, atol=tol * float(np.abs(host.transform(X)).max()))
    C = est.components_
    assert type(C).__module__.startswith(("cupy", "cupyx"))
    Cd = C.toarray() if hasattr(C, "toarray") else C
    Ch = host.components_.toarray() if sp.issparse(host.components_) else host.components_
    np.testing.assert_allclose(cp.asnumpy(Cd), Ch, rtol=1e-6)
    assert isinstance(est.inverse_components_, cp.ndarray)
    assert isinstance(est.inverse_transform(Y), cp.ndarray)
    with pytest.raises(TypeError, match="fitted on cupy"):
        est.transform(X)
    with pytest.raises(TypeError, match="fitted on host"):
        host.transform(Xd)


def test_bad_input_same_errors_as_cpu(cp):
    X = _data(np.float64, 20, 30)
    X[3, 4] = np.nan
    for kind in ("sparse", "gaussian"):
        with pytest.raises(ValueError, match="NaN"):
            rankcore.random_projection(cp.asarray(X), 5, kind=kind, random_state=0)
    with pytest.raises(ValueError, match="2-D"):
        rankcore.random_projection(cp.ones(5), 2)
    with pytest.raises(ValueError, match="empty"):
        rankcore.random_projection(cp.ones((0, 5)), 2)
    with pytest.raises(ValueError, match="n_components"):
        rankcore.random_projection(cp.ones((4, 5)), 0)
