"""Randomized SVD / PCA on dask arrays, on a real ``dask.distributed.LocalCluster`` (2 worker
processes) and on the threaded scheduler: the in-memory answer to rounding whatever the
chunking, dtypes kept, fitted attributes in memory, transforms lazy."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from rankcore import RandomizedPCA, RandomizedSVD, randomized_svd  # noqa: E402
from test_dask_cluster import cluster, scheduler  # noqa: E402, F401  (shared; see there)

# One chunk; uneven last row chunk; many row chunks; chunked along both dimensions.
CHUNKINGS = [(-1, -1), (128, -1), (37, -1), (90, 13)]


def low_rank(m=400, n=50, seed=0, offset=0.0, dtype=np.float64):
    """A matrix with a fast-decaying, well-separated spectrum (plus column offsets)."""
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, n)))
    V, _ = np.linalg.qr(rng.standard_normal((n, n)))
    s = 0.7 ** np.arange(n)
    return ((U * s) @ V.T + offset * np.linspace(1, 2, n)).astype(dtype)


def tols(dtype):
    return (1e-4, 1e-3) if dtype == np.float32 else (1e-10, 1e-8)


def check_close(lazy, mem, dtype):
    U, S, Vt = lazy
    Um, Sm, Vtm = mem
    rtol, atol = tols(dtype)
    assert isinstance(U, da.Array)
    assert type(S) is np.ndarray and type(Vt) is np.ndarray
    assert U.dtype == S.dtype == Vt.dtype == dtype
    Uc = U.compute()
    assert Uc.dtype == dtype and Uc.shape == Um.shape
    # Weyl: a perturbation E moves every singular value by at most ‖E‖ ~ ε‖A‖, so the small
    # ones are compared in units of σ₁ too (float32 with one BLAS thread: σ₁₁ = 0.028 off by
    # 1.3e-4 relative, 3.6e-6 absolute)
    np.testing.assert_allclose(S, Sm, rtol=rtol, atol=rtol * Sm[0])
    np.testing.assert_allclose(Vt, Vtm, atol=atol)
    np.testing.assert_allclose(Uc, Um, atol=atol)


@pytest.mark.parametrize("chunks, dtype, center", [
    (CHUNKINGS[0], np.float64, False), (CHUNKINGS[1], np.float32, True),
    (CHUNKINGS[2], np.float64, True), (CHUNKINGS[3], np.float32, False),
])
def test_randomized_svd_equals_in_memory(scheduler, chunks, dtype, center):
    A = low_rank(dtype=dtype, offset=5.0 if center else 0.0)
    kw = dict(n_iter=2, random_state=3, center=center)
    lazy = randomized_svd(da.from_array(A, chunks=chunks), 6, **kw)
    assert lazy[0].chunks[0] == da.from_array(A, chunks=chunks).chunks[0]
    check_close(lazy, randomized_svd(A, 6, **kw), dtype)


@pytest.mark.parametrize("chunks, transpose", [((37, -1), False), ((90, 13), True)])
def test_two_pass_route_for_a_large_short_side(monkeypatch, chunks, transpose):
    """When the short side ``n × l`` does not fit on the client, every product stays a dask
    array (two reads of ``A`` per power iteration): the same answer."""
    import rankcore._dask.svd as dsvd

    monkeypatch.setattr(dsvd, "one_pass_fits", lambda W, l: False)
    monkeypatch.setattr(dsvd, "CLIENT_ELEMENTS", 0)
    A = low_rank(offset=5.0)
    A = A.T.copy() if transpose else A
    kw = dict(n_iter=2, random_state=3, center=True)
    with dask.config.set(scheduler="sync"):
        check_close(randomized_svd(da.from_array(A, chunks=chunks[::-1] if transpose else chunks), 6, **kw),
                    randomized_svd(A, 6, **kw), np.float64)


def test_one_pass_route_sums_on_the_workers_when_the_parts_are_many(monkeypatch, scheduler):
    """The one-pass route with ``Σ_b P_b Q̃_b`` tree-summed on the workers (the per-stripe
    ``P_b`` together too large for the client; here made so by a small threshold)."""
    import rankcore._dask.svd as dsvd

    monkeypatch.setattr(dsvd, "CLIENT_ELEMENTS", 1000)  # n l = 800 fits, 11 stripes' P_b do not
    A = low_rank(offset=5.0)
    kw = dict(n_iter=2, random_state=3, center=True)
    check_close(randomized_svd(da.from_array(A, chunks=(37, -1)), 6, **kw), randomized_svd(A, 6, **kw), np.float64)


@pytest.mark.parametrize("chunks, dtype, center, tol, cap", [
    ((128, 13), np.float32, True, 1e-3, 12),
    ((37, -1), np.float64, False, 0.05, None),
])
def test_fixed_accuracy_mode(scheduler, chunks, dtype, center, tol, cap):
    A = low_rank(dtype=dtype, offset=5.0 if center else 0.0)
    kw = dict(tol=tol, center=center, random_state=2, n_iter=1)
    lazy = randomized_svd(da.from_array(A, chunks=chunks), cap, **kw)
    mem = randomized_svd(A, cap, **kw)
    assert len(lazy[1]) == len(mem[1])
    check_close(lazy, mem, dtype)


@pytest.mark.parametrize("chunks, dtype, center, tol", [
    ((100, -1), np.float64, True, None), ((100, 40), np.float32, False, 0.8),
])
def test_scipy_sparse_blocks(scheduler, chunks, dtype, center, tol):
    import scipy.sparse as sp

    A = sp.random(500, 90, density=0.1, random_state=1, format="csr", dtype=dtype)
    A.data += 1.0
    Ad = da.from_array(A.toarray(), chunks=chunks).map_blocks(sp.csr_matrix, meta=sp.csr_matrix((0, 0), dtype=dtype))
    k = None if tol else 5
    kw = dict(tol=tol, center=center, random_state=0, n_iter=0 if tol else 2)
    check_close(randomized_svd(Ad, k, **kw), randomized_svd(A, k, **kw), dtype)
    if tol:
        return
    pca = RandomizedPCA(4, svd_solver="randomized", random_state=0)
    ref = pca.fit_transform(A)
    got = RandomizedPCA(4, svd_solver="randomized", random_state=0).fit_transform(Ad)
    np.testing.assert_allclose(got.compute(), ref, atol=1e-3 if dtype == np.float32 else 1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_wide_input_is_transposed(scheduler, dtype):
    A = low_rank(m=300, n=40, seed=1, dtype=dtype).T.copy()  # 40 x 300
    kw = dict(n_iter=1, random_state=0, center=True)
    check_close(randomized_svd(da.from_array(A, chunks=(15, 70)), 5, **kw), randomized_svd(A, 5, **kw), dtype)


@pytest.mark.parametrize("normalizer", ["none", "LU", "QR"])
def test_normalizers_and_default_iterations(normalizer):
    A = low_rank(seed=2)
    kw = dict(power_iteration_normalizer=normalizer, random_state=5)
    with dask.config.set(scheduler="sync"):
        check_close(randomized_svd(da.from_array(A, chunks=(100, 25)), 4, **kw),
                    randomized_svd(A, 4, **kw), np.float64)


def test_rank_deficient_input_falls_back_to_householder():
    A = np.zeros((120, 30))
    A[:, :3] = np.random.default_rng(0).standard_normal((120, 3))
    with dask.config.set(scheduler="sync"):
        U, S, Vt = randomized_svd(da.from_array(A, chunks=(40, -1)), 5, n_iter=2, random_state=0)
        Uc = U.compute()
    Sm = randomized_svd(A, 5, n_iter=2, random_state=0)[1]
    np.testing.assert_allclose(S, Sm, atol=1e-12 * Sm[0])
    np.testing.assert_allclose((Uc[:, :3] * S[:3]) @ Vt[:3], A, atol=1e-10)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_randomized_svd_estimator(scheduler, dtype):
    X = low_rank(seed=4, dtype=dtype)
    Xd = da.from_array(X, chunks=(64, 30))
    mem = RandomizedSVD(4, n_iter=2, random_state=0).fit(X)
    lazy = RandomizedSVD(4, n_iter=2, random_state=0)
    ft = lazy.fit_transform(Xd)
    rtol, atol = tols(dtype)
    for name in ("components_", "singular_values_", "explained_variance_", "explained_variance_ratio_"):
        got, ref = getattr(lazy, name), getattr(mem, name)
        assert type(got) is np.ndarray and got.dtype == ref.dtype == dtype, name
        np.testing.assert_allclose(got, ref, rtol=rtol, atol=atol, err_msg=name)
    assert lazy.n_features_in_ == 50 and lazy.n_components_ == 4 and lazy.n_iter_ == 2
    out = lazy.transform(Xd)
    assert isinstance(out, da.Array) and out.dtype == dtype
    np.testing.assert_allclose(out.compute(), mem.transform(X), atol=atol)
    assert isinstance(ft, da.Array)
    np.testing.assert_allclose(ft.compute(), mem.transform(X), atol=atol)


@pytest.mark.parametrize("solver, whiten", [("randomized", False), ("randomized", True),
                                            ("covariance_eigh", True)])
def test_randomized_pca_estimator(scheduler, solver, whiten):
    X = low_rank(seed=5, offset=100.0, dtype=np.float32)
    Xd = da.from_array(X, chunks=(70, 20))
    kw = dict(n_components=3, svd_solver=solver, whiten=whiten, iterated_power=2, random_state=1)
    mem = RandomizedPCA(**kw)
    mem_ft = mem.fit_transform(X)
    lazy = RandomizedPCA(**kw)
    ft = lazy.fit_transform(Xd)
    assert lazy.svd_solver_ == solver
    for name in ("components_", "mean_", "singular_values_", "explained_variance_",
                 "explained_variance_ratio_"):
        got, ref = getattr(lazy, name), getattr(mem, name)
        assert type(got) is np.ndarray and got.dtype == ref.dtype, name
        np.testing.assert_allclose(got, ref, rtol=2e-3, atol=2e-3, err_msg=name)
    assert lazy.n_samples_ == 400
    np.testing.assert_allclose(lazy.noise_variance_, mem.noise_variance_, rtol=1e-2, atol=1e-9)
    # float32 data with large column means: projections agree to float32 centring noise,
    # which whitening scales up by sqrt(n_samples / explained variance).
    atol = 2e-2 if whiten else 2e-3
    out = lazy.transform(Xd)
    assert isinstance(out, da.Array) and out.dtype == np.float32
    np.testing.assert_allclose(out.compute(), mem.transform(X), rtol=1e-3, atol=atol)
    assert isinstance(ft, da.Array) and ft.dtype == np.float32
    np.testing.assert_allclose(ft.compute(), mem_ft, rtol=1e-3, atol=atol)


def test_pca_auto_picks_the_covariance_route_for_tall_dask_input():
    X = low_rank(m=600, n=20, seed=6, offset=1e4)
    with dask.config.set(scheduler="sync"):
        lazy = RandomizedPCA(2).fit(da.from_array(X, chunks=(71, 7)))
    mem = RandomizedPCA(2).fit(X)
    assert lazy.svd_solver_ == "covariance_eigh"
    frac = RandomizedPCA(0.9, svd_solver="randomized", random_state=0)
    with dask.config.set(scheduler="sync"):
        frac.fit(da.from_array(X, chunks=(71, 7)))
    assert frac.n_components_ == RandomizedPCA(0.9, svd_solver="randomized", random_state=0).fit(X).n_components_
    np.testing.assert_allclose(lazy.mean_, mem.mean_, rtol=1e-14)
    np.testing.assert_allclose(lazy.explained_variance_, mem.explained_variance_, rtol=1e-10)
    np.testing.assert_allclose(np.abs(lazy.components_ @ mem.components_.T), np.eye(2), atol=1e-8)


# --- errors: the in-memory path's types and messages ---------------------------------------


def test_nan_raises_the_in_memory_error(scheduler):
    A = low_rank()
    A[333, 7] = np.nan
    with pytest.raises(ValueError, match="M contains NaN; only finite values are supported"):
        randomized_svd(da.from_array(A, chunks=(100, -1)), 3, n_iter=1, random_state=0)
    with pytest.raises(ValueError, match="Input X contains NaN"):
        RandomizedPCA(3, svd_solver="randomized").fit(da.from_array(A, chunks=(100, -1)))


def test_bad_input_fails_before_any_task_runs():
    Ad = da.from_array(low_rank(), chunks=(100, -1))
    with pytest.raises(ValueError, match="Complex data not supported"):
        randomized_svd(Ad.astype(np.complex64), 3)
    with pytest.raises(TypeError, match="dtype object"):
        randomized_svd(Ad.astype(object), 3)
    with pytest.raises(ValueError, match="n_components=60 must be between 1 and"):
        randomized_svd(Ad, 60)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        randomized_svd(Ad[Ad[:, 0] > 0], 3)
    with pytest.raises(ValueError, match="power_iteration_normalizer"):
        randomized_svd(Ad, 3, power_iteration_normalizer="nope")
    with pytest.raises(ValueError, match="tol must be a finite real number"):
        randomized_svd(Ad, None, tol=1.5)
    est = RandomizedSVD(3, random_state=0).fit(low_rank())
    with pytest.raises(ValueError, match="X has 49 features, but RandomizedSVD is expecting 50"):
        est.transform(Ad[:, 1:])


def test_blocks_that_disagree_with_the_chunks_are_a_clear_error(scheduler):
    # A block function that returns one row fewer than its chunk says: the task reading it
    # raises (no wrong answer, no hang), on the one-pass and the two-product routes alike.
    Ad = da.from_array(low_rank(), chunks=(100, -1)).map_blocks(lambda b: b[:-1] if len(b) == 100 else b)
    with pytest.raises(ValueError, match=r"M: block \([0-3], 0\) has shape \(99, 50\).*do not match its data"):
        randomized_svd(Ad, 3, n_iter=1, random_state=0)
    with pytest.raises(ValueError, match="do not match its data"):
        randomized_svd(Ad, None, tol=0.5, n_iter=0, random_state=0)


def test_sign_flip_ties_take_the_first_largest_entry():
    from rankcore._dask.svd import svd_flip

    U = np.array([[0.5, -1.0], [-0.5, 1.0], [0.2, 0.3], [-0.5, 0.9]])
    Vt = np.eye(2)
    with dask.config.set(scheduler="sync"):
        Ud, Vd = svd_flip(da.from_array(U, chunks=(1, 1)), Vt)
        from sklearn.utils.extmath import svd_flip as sk_flip

        Um, Vm = sk_flip(U.copy(), Vt.copy())
        np.testing.assert_array_equal(Ud.compute(), Um)
        np.testing.assert_array_equal(Vd, Vm)


def test_worker_killed_mid_run_is_replaced(cluster):
    """A worker process killed in the middle of an rSVD: the nanny restarts it, dask
    recomputes the lost tasks (persisted blocks included) and the answer is unchanged."""
    import os
    import signal
    import threading
    import time

    from distributed import Client

    A = low_rank(m=800, n=40, seed=9)
    kw = dict(n_iter=3, random_state=0)
    with Client(cluster) as client:
        client.wait_for_workers(2)
        # 8 blocks that take 0.1 s each to read, read 4 times (once per power iteration, and
        # once more): at least 1.6 s on 2 workers,
        # so the kill after 0.5 s falls in the middle of the run however fast the machine.
        Ad = da.from_array(A, chunks=(100, -1)).map_blocks(lambda b: (time.sleep(0.1), b)[1])
        before = client.run(os.getpid)
        victim = sorted(before.values())[0]
        timer = threading.Timer(0.5, os.kill, (victim, signal.SIGKILL))
        timer.start()
        try:
            lazy = randomized_svd(Ad, 5, **kw)
            U = lazy[0].compute()
        finally:
            timer.cancel()
        after = client.run(os.getpid)  # the workers now (the nanny restarts the victim)
    assert victim not in after.values(), "the worker was not killed during the run"
    check_close((da.from_array(U), lazy[1], lazy[2]), randomized_svd(A, 5, **kw), np.float64)
