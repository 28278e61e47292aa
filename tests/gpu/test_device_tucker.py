"""On the device: Tucker decompositions and mode products on cupy against the CPU path.

Exact subspaces agree to rounding over the spectral gap (the Gram matrices are summed in
float64 on both devices), so reconstructions agree to 1e-10 (f64) / 1e-4 (f32) of ‖T‖ and
relative errors to 1e-8 / 1e-4. Randomized ST-HOSVD/HOOI depend on the factors' column
signs (LAPACK and cuSOLVER differ), so they are compared on the error, not entrywise.
"""

from __future__ import annotations

import numpy as np
import pytest

from rankcore.tucker import mode_dot, multi_mode_dot, tucker, tucker_to_tensor, unfold


def _lowrank(shape, ranks, noise=1e-3, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.standard_normal(ranks)
    for m, (s, r) in enumerate(zip(shape, ranks)):
        U = np.linalg.qr(rng.standard_normal((s, r)))[0] * np.linspace(1, 3, r)
        t = np.moveaxis(np.tensordot(U, t, axes=(1, m)), 0, m)
    return (t + noise * rng.standard_normal(shape)).astype(dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_mode_products_match_cpu(cp, no_host_transfer, dtype):
    x = np.random.default_rng(1).standard_normal((20, 30, 10, 5)).astype(dtype)
    mats = [np.random.default_rng(k).standard_normal((7, s)).astype(dtype) for k, s in enumerate(x.shape)]
    X, Ms = cp.asarray(x), [cp.asarray(m) for m in mats]
    with no_host_transfer():
        outs = [mode_dot(X, Ms[n], n) for n in range(4)]
        chain = multi_mode_dot(X, Ms, transpose=False)
        u = unfold(X, 2)
    tol = 1e-12 if dtype == np.float64 else 1e-4
    for n, o in enumerate(outs):
        assert isinstance(o, cp.ndarray) and o.dtype == dtype
        want = mode_dot(x, mats[n], n)
        np.testing.assert_allclose(cp.asnumpy(o), want, rtol=0, atol=tol * np.abs(want).max())
    want = multi_mode_dot(x, mats)
    np.testing.assert_allclose(cp.asnumpy(chain), want, rtol=0, atol=tol * np.abs(want).max())
    np.testing.assert_array_equal(cp.asnumpy(u), unfold(x, 2))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("method", ["hosvd", "sthosvd", "hooi"])
@pytest.mark.parametrize("kw", [{"rank": [6, 5, 4]}, {"rank": None, "tol": 0.01}, {"rank": [6, 5, 4], "init": "random"}], ids=str)
def test_exact_tucker_matches_cpu(cp, no_host_transfer, dtype, method, kw):
    x = _lowrank((60, 50, 40), (6, 5, 4), dtype=dtype)
    X = cp.asarray(x)
    with no_host_transfer():
        tt = tucker(X, method=method, random_state=0, **kw)
        full = tucker_to_tensor(tt)
    ref = tucker(x, method=method, random_state=0, **kw)
    assert isinstance(tt.core, cp.ndarray) and tt.core.dtype == dtype and tt.rank == ref.rank
    assert all(isinstance(f, cp.ndarray) and f.dtype == dtype for f in tt.factors)
    assert tt.n_iter == ref.n_iter
    np.testing.assert_allclose(tt.errors, ref.errors, rtol=1e-8 if dtype == np.float64 else 1e-4, atol=1e-6 if dtype == np.float32 else 1e-12)
    atol = (1e-10 if dtype == np.float64 else 1e-4) * np.linalg.norm(x)
    np.testing.assert_allclose(cp.asnumpy(full), tucker_to_tensor(ref), rtol=0, atol=atol)


@pytest.mark.parametrize("method", ["hosvd", "sthosvd", "hooi"])
def test_randomized_and_masked_tucker(cp, no_host_transfer, method):
    x = _lowrank((80, 60, 50), (5, 4, 3), seed=2)
    with no_host_transfer():
        tt = tucker(cp.asarray(x), [5, 4, 3], method=method, svd="randomized", random_state=1)
    ref = tucker(x, [5, 4, 3], method=method, svd="randomized", random_state=1)
    assert tt.rel_error == pytest.approx(ref.rel_error, rel=1e-6)
    mask = np.random.default_rng(3).random(x.shape) > 0.2
    with no_host_transfer():
        tm = tucker(cp.asarray(x), [5, 4, 3], method=method, mask=cp.asarray(mask), n_iter_max=10)
    rm = tucker(x, [5, 4, 3], method=method, mask=mask, n_iter_max=10)
    np.testing.assert_allclose(tm.errors, rm.errors, rtol=1e-8)


def test_partial_tucker_and_estimator(cp, no_host_transfer):
    x = _lowrank((40, 30, 20, 10), (4, 3, 2, 2), seed=4).astype(np.float32)
    from rankcore.tucker import Tucker, partial_tucker

    with no_host_transfer():
        (core, factors), errors = partial_tucker(cp.asarray(x), [4, 2], modes=[0, 2])
        est = Tucker(rank=[4, 3, 2, 2], method="sthosvd").fit(cp.asarray(x))
        z = est.transform(cp.asarray(x))
    (rc, rf), re = partial_tucker(x, [4, 2], modes=[0, 2])
    assert core.shape == rc.shape and errors[-1] == pytest.approx(re[-1], rel=1e-4)
    assert isinstance(z, cp.ndarray) and z.shape == (4, 3, 2, 2)


def test_mixed_input_is_a_type_error(cp):
    x = np.ones((4, 3, 2))
    with pytest.raises(TypeError, match="host"):
        mode_dot(cp.asarray(x), np.ones((2, 3)), 1)
    with pytest.raises(TypeError, match="cupy"):
        mode_dot(x, cp.ones((2, 3)), 1)
