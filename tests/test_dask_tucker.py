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
    with pytest.raises(NotImplementedError, match="only method='hosvd' or 'sthosvd'"):
        tucker(Td, [2, 2, 2])  # HOOI, the default
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
