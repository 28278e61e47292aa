"""On the device: FastRP on a cupyx adjacency against the CPU path on the same graph.

Same random vectors (Philox words are bit-identical); the products are cuSPARSE's, whose
summation order differs, so float64 agrees to ~1e-12 and float32 to ~1e-4 of max|U|.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

import rankcore

TOL = {np.float32: 1e-4, np.float64: 1e-11}


def _graph(n=3000, density=0.003, dtype=np.float64, seed=0):
    A = sp.random(n, n, density=density, format="csr", random_state=seed, dtype=dtype)
    return (A + A.T).tocsr()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("kw", [{"variant": "paper"}, {"variant": "gds"}, {"variant": "paper", "normalize": True, "self_influence": 0.5},
                                {"variant": "gds", "self_influence": 1.0, "directed": False}], ids=str)
def test_matches_cpu(cp, no_host_transfer, dtype, kw):
    import cupyx.scipy.sparse as csp

    A = _graph(dtype=dtype)
    Ad = csp.csr_matrix(A)
    before = Ad.data.copy()
    with no_host_transfer():
        U = rankcore.fastrp(Ad, 64, random_state=3, **kw)
    assert isinstance(U, cp.ndarray) and U.dtype == dtype
    ref = rankcore.fastrp(A, 64, random_state=3, **kw)
    np.testing.assert_allclose(cp.asnumpy(U), ref, rtol=0, atol=TOL[dtype] * np.abs(ref).max())
    assert bool((Ad.data == before).all())


def test_features_and_formats(cp, no_host_transfer):
    import cupyx.scipy.sparse as csp

    A = _graph(1500)
    F = np.random.default_rng(1).standard_normal((1500, 20))
    with no_host_transfer():
        U = rankcore.fastrp(csp.coo_matrix(A), 32, variant="gds", features=cp.asarray(F), feature_ratio=0.25, random_state=2)
    ref = rankcore.fastrp(A, 32, variant="gds", features=F, feature_ratio=0.25, random_state=2)
    np.testing.assert_allclose(cp.asnumpy(U), ref, rtol=0, atol=1e-11 * np.abs(ref).max())
    with pytest.raises(TypeError, match="features"):
        rankcore.fastrp(csp.csr_matrix(A), 32, variant="gds", features=F, feature_ratio=0.25)
    est = rankcore.FastRP(16, random_state=0).fit(csp.csr_matrix(A))
    assert isinstance(est.embedding_, cp.ndarray)


def test_bad_weights_rejected(cp):
    import cupyx.scipy.sparse as csp

    A = _graph(200)
    A.data[0] = -1.0
    with pytest.raises(ValueError, match="non-negative"):
        rankcore.fastrp(csp.csr_matrix(A), 8)
