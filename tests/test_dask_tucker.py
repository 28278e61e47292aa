"""HOSVD / ST-HOSVD of dask tensors chunked along any modes: the in-memory decomposition to
rounding (same ranks, also those chosen by ``tol``), on a real ``dask.distributed``
``LocalCluster`` (2 worker processes) and on the threaded scheduler."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from rankcore import Tucker, mode_dot, multi_mode_dot, tucker, tucker_to_tensor  # noqa: E402
from test_dask_cluster import cluster, scheduler  # noqa: E402, F401  (shared; see there)


def low_rank_tensor(dtype=np.float64, noise=1e-3):
    rng = np.random.default_rng(0)
    core = rng.standard_normal((4, 3, 5))
    Us = [np.linalg.qr(rng.standard_normal((n, r)))[0] for n, r in ((30, 4), (20, 3), (25, 5))]
    T = np.einsum("abc,ia,jb,kc->ijk", core, *Us) + noise * rng.standard_normal((30, 20, 25))
    return T.astype(dtype)


@pytest.mark.parametrize("method, kw, chunks, dtype", [
    ("hosvd", {"rank": [4, 3, 5]}, (-1, -1, -1), np.float64),
    ("sthosvd", {"rank": None, "tol": 0.01}, (7, 20, 10), np.float64),
    ("hosvd", {"rank": None, "tol": 0.01}, (11, 6, 25), np.float32),
    ("sthosvd", {"rank": [3, 3, 3], "modes": [2, 0]}, (7, 20, 10), np.float32),
])
def test_tucker_equals_in_memory(scheduler, method, kw, chunks, dtype):
    T = low_rank_tensor(dtype)
    ref = tucker(T, method=method, **kw)
    got = tucker(da.from_array(T, chunks=chunks), method=method, **kw)
    assert got.rank == ref.rank and got.modes == ref.modes
    assert type(got.core) is np.ndarray and got.core.dtype == dtype
    assert all(type(f) is np.ndarray and f.dtype == dtype for f in got.factors)
    atol = 1e-6 if dtype == np.float32 else 1e-12
    np.testing.assert_allclose(tucker_to_tensor(got), tucker_to_tensor(ref), atol=atol)
    np.testing.assert_allclose(got.errors, ref.errors, rtol=1e-4 if dtype == np.float32 else 1e-8)
    for f, g in zip(got.factors, ref.factors):  # the same subspaces
        np.testing.assert_allclose(np.abs(f.T @ g), np.eye(f.shape[1]), atol=10 * atol ** 0.5)


def check_same_decomposition(got, ref, dtype, atol=None):
    assert got.rank == ref.rank and got.modes == ref.modes
    assert type(got.core) is np.ndarray and got.core.dtype == dtype
    assert all(type(f) is np.ndarray and f.dtype == dtype for f in got.factors)
    atol = atol or (1e-6 if dtype == np.float32 else 1e-12)
    np.testing.assert_allclose(tucker_to_tensor(got), tucker_to_tensor(ref), atol=atol)
    # The errors of the sweeps come from ‖T‖² - ‖core‖² (relative to ‖T‖²), which the core's
    # rounding knows to about eps·‖T‖²: compare the squared errors to a few hundred eps (in
    # float32, 1e-5 of a 1e-2 error); the last one comes from the residual when small.
    eps = float(np.finfo(dtype).eps)
    np.testing.assert_allclose(np.square(got.errors), np.square(ref.errors), rtol=1e-6, atol=300 * eps)
    for f, g in zip(got.factors, ref.factors):  # the same subspaces
        np.testing.assert_allclose(np.abs(f.T @ g), np.eye(f.shape[1]), atol=10 * atol ** 0.5)


# HOOI from each start; the randomized range finder (fixed rank and error target). The
# tensor is low rank plus noise (1e-3), so a different random range or a different number
# of sweeps would show far above these tolerances: agreement means the same algorithm, the
# same test matrices (Ω of each unfolding, the random start) and the same stopping.
@pytest.mark.parametrize("kw, chunks, dtype", [
    ({"rank": [4, 3, 5]}, (7, 20, 10), np.float64),
    ({"rank": [3, 2, 4], "init": "random", "random_state": 5, "tol": 1e-8}, (11, 6, 25), np.float64),
    ({"rank": None, "tol": 0.01, "n_iter_max": 3}, (10, 10, 10), np.float32),
    ({"rank": [4, 3], "modes": [2, 0], "n_iter_max": 0}, (-1, 7, 7), np.float64),
    ({"rank": [3, 3, 3], "svd": "randomized", "n_power_iter": 1, "random_state": 2}, (7, 20, 10), np.float64),
    ({"rank": None, "tol": 0.05, "svd": "randomized", "n_power_iter": 0, "random_state": 1,
      "method": "hosvd"}, (10, 7, 25), np.float64),
    # float32 with two power iterations: the sketch's rounding (a few ulps of the 1e-1
    # entries, through the products and the orthonormalisations) reaches about 1.5e-6.
    ({"rank": [2, 2, 4], "svd": "randomized_svd", "random_state": 3, "method": "hosvd",
      "atol": 4e-6}, (30, 4, 9), np.float32),
])
def test_hooi_and_randomized_equal_in_memory(scheduler, kw, chunks, dtype):
    T = low_rank_tensor(dtype, noise=1e-3)
    kw = dict(kw)
    atol = kw.pop("atol", None)
    ref = tucker(T, **kw)
    got = tucker(da.from_array(T, chunks=chunks), **kw)
    assert (got.n_iter, got.converged) == (ref.n_iter, ref.converged)
    check_same_decomposition(got, ref, dtype, atol)


def test_sthosvd_randomized_agrees_to_the_sketch_error():
    """ST-HOSVD with the randomized range finder: each mode's ``Ω`` is the in-memory one, but
    from the second mode on it multiplies a tensor already projected on the earlier factors,
    whose column signs (an rSVD's arbitrary choice: the dask and in-memory bases of the same
    range differ) change the sketch. So the answer agrees to the randomized approximation's
    error (1e-3 here with no power iteration), not to rounding; the ranks chosen by ``tol``
    agree."""
    T = low_rank_tensor()
    for kw in ({"rank": [3, 3, 3]}, {"rank": None, "tol": 0.05}):
        kw.update(svd="randomized", n_power_iter=0, random_state=1, method="sthosvd")
        ref = tucker(T, **kw)
        with dask.config.set(scheduler="sync"):
            got = tucker(da.from_array(T, chunks=(10, 7, 25)), **kw)
        assert got.rank == ref.rank
        np.testing.assert_allclose(got.errors, ref.errors, rtol=0.02)
        np.testing.assert_allclose(tucker_to_tensor(got), tucker_to_tensor(ref), atol=1e-2)
        assert np.linalg.svd(got.factors[0].T @ ref.factors[0], compute_uv=False).min() > 1 - 1e-12


def test_hooi_from_given_factors_and_estimator():
    T = low_rank_tensor()
    start = tucker(T, [4, 3, 5], method="hosvd")
    init = (start.core, [f @ np.diag([1.0, -2.0, 0.5, 3.0, 1.0][:f.shape[1]]) for f in start.factors])
    ref = tucker(T, [4, 3, 5], init=init, n_iter_max=2)
    with dask.config.set(scheduler="sync"):
        got = tucker(da.from_array(T, chunks=(10, 10, 10)), [4, 3, 5], init=init, n_iter_max=2)
        est = Tucker(rank=[4, 3, 5], svd="randomized", random_state=0).fit(da.from_array(T, chunks=10))
    check_same_decomposition(got, ref, np.float64)
    mem = Tucker(rank=[4, 3, 5], svd="randomized", random_state=0).fit(T)
    np.testing.assert_allclose(est.inverse_transform(est.core_), mem.inverse_transform(mem.core_), atol=1e-12)


def test_small_errors_come_from_the_residual():
    T = low_rank_tensor(noise=1e-9)
    with dask.config.set(scheduler="sync"):
        got = tucker(da.from_array(T, chunks=(10, 10, 10)), [4, 3, 5], method="hosvd")
    ref = tucker(T, [4, 3, 5], method="hosvd")
    np.testing.assert_allclose(got.errors, ref.errors, rtol=1e-3)
    assert got.errors[0] < 1e-7  # far below what ‖T‖² - ‖core‖² could resolve


def test_estimator_and_errors():
    T = low_rank_tensor()
    Td = da.from_array(T, chunks=(10, 10, 10))
    with dask.config.set(scheduler="sync"):
        est = Tucker(rank=[4, 3, 5], method="sthosvd").fit(Td)
    np.testing.assert_allclose(est.inverse_transform(est.core_),
                               tucker_to_tensor(tucker(T, [4, 3, 5], method="sthosvd")), atol=1e-12)
    with pytest.raises(NotImplementedError, match="mask is not available on dask input"):
        tucker(Td, [2, 2, 2], mask=np.ones(T.shape, dtype=bool))
    with pytest.raises(NotImplementedError, match="fixed_factors is not available on dask input"):
        tucker(Td, [2, 2, 2], init=tucker(T, [2, 2, 2]), fixed_factors=[0])
    with pytest.raises(ValueError, match="init must give one factor per decomposed mode"):
        tucker(Td, [2, 2, 2], init=(None, [np.ones((30, 2))] * 2))
    with pytest.raises(ValueError, match=r"rank for mode 1 must be in \[1, 20\]"):
        tucker(Td, [2, 30, 2], method="hosvd")
    with pytest.raises(ValueError, match="Complex data not supported"):
        tucker(Td.astype(np.complex128), [2, 2, 2], method="hosvd")
    bad = T.copy()
    bad[3, 4, 5] = np.nan
    with dask.config.set(scheduler="sync"), pytest.raises(ValueError, match="tensor contains NaN"):
        tucker(da.from_array(bad, chunks=10), [2, 2, 2], method="hosvd")


def test_mode_products_and_transform(scheduler):
    rng = np.random.default_rng(1)
    T = rng.standard_normal((6, 7, 8, 5))
    Td = da.from_array(T, chunks=(3, 4, 8, 2))
    M = [rng.standard_normal((3, 6)), rng.standard_normal((2, 8)), rng.standard_normal(5)]
    for kw in ({}, {"skip": 1}):
        out = multi_mode_dot(Td, M, [0, 2, 3], **kw)
        assert isinstance(out, da.Array)
        np.testing.assert_allclose(out.compute(), multi_mode_dot(T, M, [0, 2, 3], **kw), atol=1e-12)
    Mt = [m.T for m in M[:2]]
    np.testing.assert_allclose(multi_mode_dot(Td, Mt, [0, 2], transpose=True).compute(),
                               multi_mode_dot(T, Mt, [0, 2], transpose=True), atol=1e-12)
    np.testing.assert_allclose(mode_dot(Td, M[2], 3).compute(), mode_dot(T, M[2], 3), atol=1e-12)
    with pytest.raises(ValueError, match=r"does not chain with mode 0 of tensor \(size 6\): its columns"):
        multi_mode_dot(Td, [np.ones((3, 5))], [0])
    est = Tucker(rank=[3, 3, 3, 2], method="hosvd").fit(Td)
    core = est.transform(Td)
    assert isinstance(core, da.Array)
    np.testing.assert_allclose(core.compute(), est.core_, atol=1e-12)
