"""FastRP on a dask adjacency of scipy.sparse blocks: one lazy graph (blockwise sparse × dense
products, tree sums over column blocks), equal to the in-memory embedding to rounding, on a
real ``dask.distributed.LocalCluster`` (2 worker processes) and on the threaded scheduler."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from rankcore import FastRP, fastrp  # noqa: E402
from test_dask_cluster import cluster, scheduler  # noqa: E402, F401  (shared; see there)


def graph(n=240, seed=0, dtype=np.float64):
    A = sp.random(n, n, density=0.04, random_state=seed, format="csr", dtype=np.float64)
    return sp.csr_matrix(A + A.T, dtype=dtype)


def as_dask(A, chunks):
    return da.from_array(A.toarray(), chunks=chunks).map_blocks(
        sp.csr_matrix, meta=sp.csr_matrix((0, 0), dtype=A.dtype))


def tol(dtype):
    return 2e-5 if dtype == np.float32 else 1e-12


@pytest.mark.parametrize("chunks, variant, dtype, kw", [
    ((-1, -1), "paper", np.float64, {}),
    ((64, -1), "paper", np.float32, {"self_influence": 0.5, "normalize": True}),
    ((50, 70), "gds", np.float64, {"self_influence": 0.3}),
    ((50, 70), "gds", np.float32, {"directed": False}),
    ((33, 33), "paper", np.float64, {"transition": False, "standardize": False}),
])
def test_fastrp_equals_in_memory(scheduler, chunks, variant, dtype, kw):
    A = graph(dtype=dtype)
    ref = fastrp(A, 16, variant=variant, random_state=3, **kw)
    out = fastrp(as_dask(A, chunks), 16, variant=variant, random_state=3, **kw)
    assert isinstance(out, da.Array) and out.dtype == dtype
    got = out.compute()
    assert got.dtype == dtype
    np.testing.assert_allclose(got, ref, rtol=tol(dtype), atol=tol(dtype))


def test_node_features(scheduler):
    A = graph(seed=1)
    F = np.random.default_rng(0).standard_normal((240, 5))
    kw = dict(variant="gds", features=F, feature_ratio=0.25, random_state=1)
    ref = fastrp(A, 16, **kw)
    np.testing.assert_allclose(fastrp(as_dask(A, (80, -1)), 16, **kw).compute(), ref, atol=1e-12)
    kw["features"] = da.from_array(F, chunks=(100, -1))
    np.testing.assert_allclose(fastrp(as_dask(A, (80, -1)), 16, **kw).compute(), ref, atol=1e-12)


def test_estimator(scheduler):
    A = graph(seed=2)
    ref = FastRP(8, random_state=0).fit(A)
    est = FastRP(8, random_state=0).fit(as_dask(A, (60, -1)))
    assert type(est.embedding_) is np.ndarray
    np.testing.assert_allclose(est.embedding_, ref.embedding_, atol=1e-12)
    out = est.transform(as_dask(A, (100, -1)))
    assert isinstance(out, da.Array)
    np.testing.assert_allclose(out.compute(), ref.embedding_, atol=1e-12)


def test_bad_graphs():
    A = graph()
    with pytest.raises(TypeError, match="scipy.sparse"):
        fastrp(da.from_array(A.toarray(), chunks=50), 8)
    with pytest.raises(ValueError, match="square"):
        fastrp(as_dask(A, (60, -1))[:, :100], 8)
    with pytest.raises(ValueError, match="n_nodes=3 does not match"):
        fastrp(as_dask(A, (60, -1)), 8, n_nodes=3)
    bad = A.copy()
    bad.data[5] = -1.0
    with dask.config.set(scheduler="sync"), pytest.raises(ValueError, match="finite and non-negative"):
        fastrp(as_dask(bad, (60, -1)), 8).compute()


def edge_frame(n=200, m=1500, seed=0, weighted=True, npartitions=4):
    """An edge list with duplicate edges, self-loops and zero weights, as pandas and dask."""
    pd = pytest.importorskip("pandas")
    dd = pytest.importorskip("dask.dataframe")  # needs pyarrow
    rng = np.random.default_rng(seed)
    frame = {"src": rng.integers(0, n, m), "dst": rng.integers(0, n, m)}
    frame["src"][:20] = frame["src"][20:40]  # duplicates, summed
    frame["dst"][:20] = frame["dst"][20:40]
    if weighted:
        frame["weight"] = rng.choice([0.0, 0.5, 1.0, 2.5], m)
    df = pd.DataFrame(frame)
    return df, dd.from_pandas(df, npartitions=npartitions)


@pytest.mark.parametrize("weighted, variant, dtype, kw", [
    (True, "paper", None, {}),
    (False, "gds", np.float32, {"directed": False, "self_influence": 0.5}),
    (True, "paper", np.float64, {"n_nodes": 230, "normalize": True}),
])
def test_edge_list_as_a_dask_dataframe(scheduler, weighted, variant, dtype, kw):
    df, ddf = edge_frame(weighted=weighted)
    edges = (df["src"].to_numpy(), df["dst"].to_numpy()) + ((df["weight"].to_numpy(),) if weighted else ())
    kw = dict(kw, variant=variant, dtype=dtype, random_state=4)
    ref = fastrp(edges, 16, **kw)
    out = fastrp(ddf, 16, **kw)
    assert isinstance(out, da.Array) and out.dtype == ref.dtype
    np.testing.assert_allclose(out.compute(), ref, rtol=tol(ref.dtype), atol=tol(ref.dtype))
    est = FastRP(8, random_state=0).fit(ddf)
    np.testing.assert_allclose(est.embedding_, FastRP(8, random_state=0).fit(edges).embedding_, atol=1e-12)


def test_edge_list_dataframe_errors():
    df, ddf = edge_frame()
    with pytest.raises(ValueError, match="needs columns src and dst"):
        fastrp(ddf.rename(columns={"dst": "to"}), 8)
    with pytest.raises(TypeError, match="src must hold integer node indices"):
        fastrp(ddf.assign(src=ddf["src"].astype(float)), 8)
    with pytest.raises(ValueError, match=r"edge indices must be in \[0, n_nodes=50\)"):
        fastrp(ddf, 8, n_nodes=50)
    bad = ddf.assign(weight=ddf["weight"] - 1.0)
    with dask.config.set(scheduler="sync"), pytest.raises(ValueError, match="finite and non-negative"):
        fastrp(bad, 8).compute()
