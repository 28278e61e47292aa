"""Random projections on dask arrays: ``map_blocks`` over row blocks, equal bit for bit to
the in-memory result, on a real ``dask.distributed.LocalCluster`` (2 worker processes) and
on the threaded scheduler."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from rankcore import GaussianRandomProjection, SparseRandomProjection, random_projection  # noqa: E402
from test_dask_cluster import cluster, scheduler  # noqa: E402, F401  (shared; see there)

# One chunk; an uneven last chunk; many small chunks; chunked along the columns too.
CHUNKINGS = [(-1, -1), (64, -1), (17, -1), (50, 23)]


def data(dtype=np.float64, shape=(203, 70), seed=0):
    return np.random.default_rng(seed).standard_normal(shape).astype(dtype)


@pytest.mark.parametrize("chunks", CHUNKINGS)
@pytest.mark.parametrize("kind, dtype", [("sparse", np.float64), ("gaussian", np.float32),
                                         ("achlioptas", np.float64)])
def test_functional_equals_in_memory_bit_for_bit(scheduler, chunks, kind, dtype):
    X = data(dtype)
    ref = random_projection(X, 16, kind=kind, random_state=7)
    Xd = da.from_array(X, chunks=chunks)
    out = random_projection(Xd, 16, kind=kind, random_state=7)
    assert isinstance(out, da.Array)
    assert out.chunks[0] == Xd.chunks[0] and out.dtype == dtype
    got = out.compute()
    assert got.dtype == dtype
    np.testing.assert_array_equal(got, ref)


def test_auto_components_and_density(scheduler):
    X = data(shape=(40, 3000))
    ref = random_projection(X, "auto", eps=0.5, density=0.1, random_state=3)
    got = random_projection(da.from_array(X, chunks=(9, 1000)), "auto", eps=0.5, density=0.1, random_state=3)
    np.testing.assert_array_equal(got.compute(), ref)


@pytest.mark.parametrize("cls", [SparseRandomProjection, GaussianRandomProjection])
def test_estimators_fit_transform_on_dask(scheduler, cls):
    X = data()
    Xd = da.from_array(X, chunks=(50, 35))
    mem = cls(n_components=12, random_state=1).fit(X)
    lazy = cls(n_components=12, random_state=1).fit(Xd)
    assert lazy.n_features_in_ == 70 and lazy.n_components_ == 12
    out = lazy.transform(Xd)
    assert isinstance(out, da.Array)
    np.testing.assert_array_equal(out.compute(), mem.transform(X))
    np.testing.assert_array_equal(cls(n_components=12, random_state=1).fit_transform(Xd).compute(),
                                  mem.transform(X))
    # The fitted model is the same: in-memory input through the dask-fitted estimator.
    np.testing.assert_array_equal(lazy.transform(X), mem.transform(X))
    # And dask input through the estimator fitted in memory.
    np.testing.assert_array_equal(mem.transform(Xd).compute(), mem.transform(X))


def test_assigned_components_are_used(scheduler):
    X = data()
    est = GaussianRandomProjection(n_components=5, random_state=0).fit(X)
    est.components_ = np.ones((5, 70))
    np.testing.assert_allclose(est.transform(da.from_array(X, chunks=(60, 20))).compute(),
                               X @ np.ones((70, 5)))


def _csr_blocks(X, chunks):
    return da.from_array(X, chunks=chunks).map_blocks(sp.csr_matrix, meta=sp.csr_matrix((0, 0), dtype=X.dtype))


@pytest.mark.parametrize("dtype", [np.float32])
def test_sparse_blocks(scheduler, dtype):
    X = data(dtype)
    X[np.abs(X) < 1.0] = 0.0
    Xs = sp.csr_matrix(X)
    ref = random_projection(Xs, 16, random_state=2)
    got = random_projection(_csr_blocks(X, (41, -1)), 16, random_state=2).compute()
    np.testing.assert_array_equal(got, ref)
    est = SparseRandomProjection(n_components=16, random_state=2).fit(Xs)
    out = est.transform(_csr_blocks(X, (41, -1)))
    blocks = out.compute()
    assert sp.issparse(blocks)
    np.testing.assert_array_equal(blocks.toarray(), est.transform(Xs).toarray())


# --- errors: the in-memory path's types and messages ---------------------------------------


def test_nan_raises_the_in_memory_error_when_computed(scheduler):
    X = data()
    X[150, 3] = np.nan
    for kind in ("sparse", "gaussian"):
        out = random_projection(da.from_array(X, chunks=(50, -1)), 8, kind=kind, random_state=0)  # lazy
        with pytest.raises(ValueError, match="X contains NaN"):
            out.compute()
    est = GaussianRandomProjection(n_components=8, random_state=0).fit(data())
    with pytest.raises(ValueError, match="Input X contains NaN"):
        est.transform(da.from_array(X, chunks=(50, -1))).compute()


def test_bad_input_fails_before_any_task_runs():
    Xd = da.from_array(data(), chunks=(50, -1))
    with pytest.raises(ValueError, match="Complex data not supported"):
        random_projection(Xd.astype(np.complex128), 8)
    with pytest.raises(TypeError, match="dtype object"):
        random_projection(Xd.astype(object), 8)
    with pytest.raises(ValueError, match="2-D array"):
        random_projection(Xd[:, 0], 8)
    with pytest.raises(ValueError, match="unknown chunk sizes"):
        random_projection(Xd[Xd[:, 0] > 0], 8)
    with pytest.raises(ValueError, match="n_components must be a positive integer"):
        random_projection(Xd, 0)
    est = SparseRandomProjection(n_components=8, random_state=0).fit(Xd)
    with pytest.raises(ValueError, match="X has 69 features, but SparseRandomProjection is expecting 70"):
        est.transform(Xd[:, 1:])


def test_integer_input_becomes_float64():
    X = np.arange(60 * 30).reshape(60, 30) % 7
    ref = random_projection(X, 5, random_state=0)
    got = random_projection(da.from_array(X, chunks=(25, 10)), 5, random_state=0)
    assert got.dtype == np.float64
    with dask.config.set(scheduler="sync"):
        np.testing.assert_array_equal(got.compute(), ref)


def test_blocks_that_disagree_with_the_chunks_are_an_error():
    # A block function that returns one row fewer than its chunk says.
    Xd = da.from_array(data(), chunks=(50, -1)).map_blocks(lambda b: b[:-1] if len(b) == 50 else b)
    out = random_projection(Xd, 8, kind="gaussian", random_state=0)
    with dask.config.set(scheduler="sync"), pytest.raises(ValueError, match="do not match its data"):
        out.compute()
