"""k-medoids on dask arrays (CLARA: samples solved with FasterPAM on a worker, the assignment
and loss blockwise): the in-memory ``method="clara"`` answer for the same seed, on a real
``dask.distributed.LocalCluster`` (2 worker processes) and on the threaded scheduler."""

from __future__ import annotations

import numpy as np
import pytest

da = pytest.importorskip("dask.array")
dask = pytest.importorskip("dask")

from rankcore import KMedoids, kmedoids, medoid_silhouette  # noqa: E402
from test_dask_cluster import cluster, scheduler  # noqa: E402, F401  (shared; see there)


def blobs(n=450, d=4, seed=0, dtype=np.float64):
    rng = np.random.default_rng(seed)
    X = np.concatenate([rng.standard_normal((n // 3, d)) + c for c in (0.0, 3.0, 6.0)])
    return X[rng.permutation(len(X))].astype(dtype)


@pytest.mark.parametrize("chunks, metric, init, dtype", [
    ((-1, -1), "euclidean", "build", np.float64),
    ((100, -1), "manhattan", "lab", np.float32),
    ((37, 2), "sqeuclidean", "random", np.float64),
])
def test_clara_equals_in_memory(scheduler, chunks, metric, init, dtype):
    X = blobs(dtype=dtype)
    kw = dict(metric=metric, method="clara", init=init, random_state=4, n_samples=3, sample_size=40)
    ref = kmedoids(X, 3, **kw)
    got = kmedoids(da.from_array(X, chunks=chunks), 3, **kw)
    np.testing.assert_array_equal(got.medoids, ref.medoids)
    np.testing.assert_array_equal(got.labels, ref.labels)
    np.testing.assert_array_equal(got.init_medoids, ref.init_medoids)
    assert type(got.labels) is np.ndarray and got.labels.dtype == np.int64
    assert (got.n_iter, got.n_swap, got.converged) == (ref.n_iter, ref.n_swap, ref.converged)
    np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-12 if dtype == np.float64 else 1e-6)


def test_given_start_indices():
    X = blobs(seed=1)
    kw = dict(metric="euclidean", method="clara", init=[0, 1, 2], random_state=0, n_samples=2)
    with dask.config.set(scheduler="sync"):
        got = kmedoids(da.from_array(X, chunks=(64, -1)), 3, **kw)
    ref = kmedoids(X, 3, **kw)
    np.testing.assert_array_equal(got.medoids, ref.medoids)
    np.testing.assert_array_equal(got.labels, ref.labels)


def test_estimator_fit_predict_transform(scheduler):
    X = blobs(seed=2)
    Xd = da.from_array(X, chunks=(80, -1))
    ref = KMedoids(3, method="clara", random_state=1).fit(X)
    est = KMedoids(3, method="clara", random_state=1).fit(Xd)
    np.testing.assert_array_equal(est.medoid_indices_, ref.medoid_indices_)
    np.testing.assert_array_equal(est.labels_, ref.labels_)
    np.testing.assert_array_equal(est.cluster_centers_, ref.cluster_centers_)
    assert type(est.labels_) is np.ndarray and est.n_features_in_ == 4
    np.testing.assert_allclose(est.inertia_, ref.inertia_, rtol=1e-12)
    D = est.transform(Xd)
    assert isinstance(D, da.Array)
    np.testing.assert_array_equal(D.compute(), ref.transform(X))
    P = est.predict(Xd)
    assert isinstance(P, da.Array)
    np.testing.assert_array_equal(P.compute(), ref.predict(X))
    # method="auto" (or the default) on dask input is CLARA.
    auto = KMedoids(3, method="auto", random_state=1).fit(Xd)
    np.testing.assert_array_equal(auto.medoid_indices_, ref.medoid_indices_)


def test_nan_and_bad_input(scheduler):
    X = blobs()
    X[200, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        kmedoids(da.from_array(X, chunks=(100, -1)), 3, metric="euclidean", method="clara", random_state=0)
    Xd = da.from_array(blobs(), chunks=(100, -1))
    with pytest.raises(NotImplementedError, match="only method='clara'"):
        kmedoids(Xd, 3, metric="euclidean", method="fasterpam")
    with pytest.raises(ValueError, match="X must be a square dissimilarity matrix when metric='precomputed'"):
        kmedoids(Xd, 3, method="clara")  # the default metric
    with pytest.raises(TypeError, match="metric must be a string or a callable"):
        kmedoids(Xd, 3, metric=3, method="clara")
    with pytest.raises(ValueError, match="sample_weight must have length n_samples = 450"):
        kmedoids(Xd, 3, metric="euclidean", method="clara", sample_weight=np.ones(3))
    with pytest.raises(ValueError, match="sample_weight must be non-negative"):
        kmedoids(Xd, 3, metric="euclidean", method="clara", sample_weight=-np.ones(450))
    with pytest.raises(ValueError, match="sample_weight must not be all zero"):
        kmedoids(Xd, 3, metric="euclidean", method="clara", sample_weight=da.zeros(450, chunks=100))
    with pytest.raises(ValueError, match="n_clusters must be in"):
        kmedoids(Xd, 1000, metric="euclidean", method="clara")
    with pytest.raises(ValueError, match="Complex data not supported"):
        kmedoids(Xd.astype(np.complex128), 3, metric="euclidean", method="clara")
    est = KMedoids(3, method="clara", random_state=0).fit(blobs())
    with pytest.raises(ValueError, match="X has 3 features, but KMedoids is expecting 4"):
        est.predict(Xd[:, 1:])


@pytest.mark.parametrize("metric", ["euclidean", "cosine"])
def test_medoid_silhouette_blockwise(scheduler, metric):
    X = blobs(seed=3)
    med = kmedoids(X, 3, metric=metric, random_state=0).medoids[::-1]
    ref = medoid_silhouette(X, med, metric=metric, return_samples=True)
    got = medoid_silhouette(da.from_array(X, chunks=(70, -1)), med, metric=metric, return_samples=True)
    np.testing.assert_array_equal(got[1], ref[1])
    np.testing.assert_allclose(got[0], ref[0], rtol=1e-14)
    with pytest.raises(NotImplementedError, match="give medoids"):
        medoid_silhouette(da.from_array(X, chunks=(70, -1)), labels=np.zeros(450, dtype=int), metric=metric)


def test_sample_weight(scheduler):
    X = blobs(seed=5)
    w = np.random.default_rng(0).uniform(0.0, 3.0, len(X))
    kw = dict(metric="euclidean", method="clara", random_state=2, n_samples=3, sample_size=50)
    ref = kmedoids(X, 3, sample_weight=w, **kw)
    assert not np.array_equal(ref.medoids, kmedoids(X, 3, **kw).medoids)  # the weights matter
    for weights in (w, da.from_array(w, chunks=77)):  # in memory, or a dask array
        got = kmedoids(da.from_array(X, chunks=(64, -1)), 3, sample_weight=weights, **kw)
        np.testing.assert_array_equal(got.medoids, ref.medoids)
        np.testing.assert_array_equal(got.labels, ref.labels)
        np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-12)
    est = KMedoids(3, metric="manhattan", method="clara", random_state=0)
    mem = KMedoids(3, metric="manhattan", method="clara", random_state=0).fit(X, sample_weight=w)
    est.fit(da.from_array(X, chunks=(100, -1)), sample_weight=w)
    np.testing.assert_array_equal(est.medoid_indices_, mem.medoid_indices_)
    np.testing.assert_allclose(est.inertia_, mem.inertia_, rtol=1e-12)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_precomputed_square_matrix(scheduler, dtype):
    from sklearn.metrics import pairwise_distances

    X = blobs(seed=6)
    D = pairwise_distances(X).astype(dtype)
    w = np.linspace(0.5, 2.0, len(X))
    kw = dict(metric="precomputed", method="clara", random_state=1, n_samples=2, sample_size=60)
    ref = kmedoids(D, 3, sample_weight=w, **kw)
    Dd = da.from_array(D, chunks=(100, 150))
    got = kmedoids(Dd, 3, sample_weight=w, **kw)
    np.testing.assert_array_equal(got.medoids, ref.medoids)
    np.testing.assert_array_equal(got.labels, ref.labels)
    np.testing.assert_array_equal(got.init_medoids, ref.init_medoids)
    np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-12 if dtype == np.float64 else 1e-6)
    est = KMedoids(3, metric="precomputed", method="clara", random_state=1).fit(Dd)
    mem = KMedoids(3, metric="precomputed", method="clara", random_state=1).fit(D)
    np.testing.assert_array_equal(est.medoid_indices_, mem.medoid_indices_)
    assert est.cluster_centers_ is None and est.n_features_in_ == len(X)
    np.testing.assert_array_equal(est.transform(Dd[:50]).compute(), mem.transform(D[:50]))
    np.testing.assert_array_equal(est.predict(Dd).compute(), mem.predict(D))
    mean, values = medoid_silhouette(Dd, est.medoid_indices_, metric="precomputed", return_samples=True)
    ref_mean, ref_values = medoid_silhouette(D, est.medoid_indices_, metric="precomputed", return_samples=True)
    np.testing.assert_allclose(values, ref_values, rtol=1e-12 if dtype == np.float64 else 1e-6)
    np.testing.assert_allclose(mean, ref_mean, rtol=1e-12 if dtype == np.float64 else 1e-6)
    with pytest.raises(ValueError, match="square dissimilarity matrix"):
        kmedoids(Dd[:, :100], 3, **kw)


def _chebyshev(a, b):
    return float(np.max(np.abs(a - b)))


def test_callable_metric(scheduler):
    X = blobs(n=150, seed=7)
    kw = dict(metric=_chebyshev, method="clara", random_state=3, n_samples=2, sample_size=40)
    ref = kmedoids(X, 3, **kw)
    got = kmedoids(da.from_array(X, chunks=(40, -1)), 3, **kw)
    np.testing.assert_array_equal(got.medoids, ref.medoids)
    np.testing.assert_array_equal(got.labels, ref.labels)
    np.testing.assert_allclose(got.loss, ref.loss, rtol=1e-12)
    ref_s = medoid_silhouette(X, ref.medoids, metric=_chebyshev, return_samples=True)
    got_s = medoid_silhouette(da.from_array(X, chunks=(40, -1)), ref.medoids, metric=_chebyshev, return_samples=True)
    np.testing.assert_allclose(got_s[1], ref_s[1], rtol=1e-12)

    def bad(a, b):
        return -1.0

    with dask.config.set(scheduler="sync"), pytest.raises(ValueError, match="callable metric must return finite, non-negative"):
        kmedoids(da.from_array(X, chunks=(40, -1)), 3, metric=bad, method="clara", random_state=0)
