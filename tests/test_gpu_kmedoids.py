"""The GPU k-medoids orchestration, run with NumPy standing in for cupy, against the Rust path.

``rankcore._gpu.kmedoids`` is the code that runs on cupy arrays; here it runs on NumPy with
the kernels' references (distances from the Rust kernel, bit for bit; the swap reduction in
NumPy). So on tie-free data it must make the CPU's choices exactly: the same BUILD / LAB /
k-medoids++ / random / heuristic medoids and the same FastPAM1 (= PAM) swaps, hence the same
medoids and labels, with the loss equal to rounding (float64 sums in another order:
``rel=1e-12``). The eager variant ("fasterpam" on the device) makes other swaps than the
CPU's FasterPAM; it is checked to end in a local optimum of single swaps (brute force over
every (point, slot) pair) and to lose at most 3% against the CPU's FasterPAM from the same
BUILD start.

The public functions are exercised through a stand-in device type: a NumPy subclass whose
module says ``cupy`` (so ``rankcore`` routes it to the device path) served by a namespace
that keeps every array it makes in that type. Inside it, turning an array of more than one
element into host objects (``tolist``, iteration) or a host scalar (``int``, ``float``,
``bool``) raises ``AssertionError``; one-element reads are counted, as the device tests'
``no_host_transfer`` guard counts them. The orchestration may hand nothing to the CPU core
but seed draws (``random_matrix`` of at most a few hundred uniforms).
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

import rankcore
from rankcore._gpu import _arrays
from rankcore._gpu import kmedoids as gk
from rankcore.kmedoids import _fit_device, dissimilarity_matrix

METRICS = ["euclidean", "sqeuclidean", "manhattan", "cosine"]


def _data(n=240, d=5, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    centres = rng.standard_normal((6, d)) * 4
    return (centres[rng.integers(0, 6, n)] + rng.standard_normal((n, d))).astype(dtype)


def _device(X, k, **kw):
    kw = {"metric": "euclidean", "method": "fastpam1", "init": "build", "max_iter": 300,
          "random_state": 0, "sample_weight": None, "n_samples": 5, "sample_size": None,
          "verbose": False, **kw}
    return _fit_device(X, k, **kw)


def _same(g, c, loss_rel=1e-12):
    np.testing.assert_array_equal(np.asarray(g.medoids), c.medoids)
    np.testing.assert_array_equal(np.asarray(g.labels), c.labels)
    np.testing.assert_array_equal(np.asarray(g.init_medoids), c.init_medoids)
    assert g.loss == pytest.approx(c.loss, rel=loss_rel)
    assert (g.n_iter, g.n_swap, g.converged) == (c.n_iter, c.n_swap, c.converged)


@pytest.fixture
def small_tiles(monkeypatch):
    """Several candidate tiles per pass and several pieces per slot, even on small data."""
    monkeypatch.setattr(gk, "_TILE_BYTES", 1)  # 64 rows per tile
    monkeypatch.setattr(gk, "_PIECE", 13)


# --------------------------------------------------------------------------------------
# equal to the CPU
# --------------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("precompute", [True, False])
def test_fastpam1_equals_the_cpu(small_tiles, dtype, metric, precompute):
    X = _data(dtype=dtype)
    for method in ("fastpam1", "pam"):
        g = _device(X, 7, metric=metric, method=method, precompute=precompute)
        c = rankcore.kmedoids(X, 7, metric=metric, method=method, init="build")
        _same(g, c)
        assert np.asarray(g.medoids).dtype == np.int64 and np.asarray(g.labels).dtype == np.int64


@pytest.mark.parametrize("init", ["build", "lab", "k-medoids++", "random", "heuristic"])
@pytest.mark.parametrize("seed", [0, 11])
def test_every_init_draws_the_cpus_medoids(small_tiles, init, seed):
    X = _data(300, 3, seed=seed)
    g = _device(X, 9, init=init, random_state=seed, precompute=False)
    c = rankcore.kmedoids(X, 9, metric="euclidean", method="fastpam1", init=init, random_state=seed)
    _same(g, c)


def test_precomputed_matrix_input(small_tiles):
    X = _data(200, 4, seed=3)
    D = dissimilarity_matrix(X, "manhattan")
    for DD in (D, np.asfortranarray(D)):
        g = _device(DD, 5, metric="precomputed")
        _same(g, rankcore.kmedoids(D, 5, metric="precomputed", method="fastpam1", init="build"))


@pytest.mark.parametrize("k", [1, 2, 240])
def test_edge_cluster_counts(k):
    X = _data()
    g = _device(X, k)
    c = rankcore.kmedoids(X, k, metric="euclidean", method="fastpam1", init="build")
    _same(g, c)
    assert _device(X, k, method="fasterpam").converged


def test_given_indices_and_max_iter():
    X = _data()
    start = [0, 1, 2, 3]
    g = _device(X, 4, init=start, max_iter=2)
    c = rankcore.kmedoids(X, 4, metric="euclidean", method="fastpam1", init=start, max_iter=2)
    _same(g, c)
    assert not g.converged
    g0 = _device(X, 4, init=np.array(start), max_iter=0)
    np.testing.assert_array_equal(np.asarray(g0.medoids), start)


def test_sample_weight_equals_the_cpu_and_duplicated_points(small_tiles):
    X = _data(150, 3, seed=5)
    w = np.random.default_rng(1).integers(0, 4, 150).astype(np.float64)
    w[0] = 2.5
    g = _device(X, 5, sample_weight=w, precompute=False)
    _same(g, rankcore.kmedoids(X, 5, metric="euclidean", method="fastpam1", init="build", sample_weight=w))
    # integer weights: the loss of w copies (medoids scored on the expanded data)
    wi = w.copy()
    wi[0] = 2
    g = _device(X, 5, sample_weight=wi)
    rep = np.repeat(np.arange(150), wi.astype(int))
    Dm = dissimilarity_matrix(X, "euclidean")[np.ix_(rep, np.asarray(g.medoids))]
    assert g.loss == pytest.approx(Dm.min(axis=1).sum(), rel=1e-12)


def test_integer_data_gives_exact_losses():
    X = np.random.default_rng(2).integers(0, 9, (160, 3)).astype(np.float32)
    for metric in ("sqeuclidean", "manhattan"):
        g = _device(X, 6, metric=metric, method="fastpam1", init="k-medoids++")
        c = rankcore.kmedoids(X, 6, metric=metric, method="fastpam1", init="k-medoids++", random_state=0)
        assert g.loss == c.loss and float(g.loss).is_integer()


# --------------------------------------------------------------------------------------
# the eager variant and CLARA
# --------------------------------------------------------------------------------------


def _loss(D, med, w=None):
    m = D[:, med].min(axis=1)
    return float(m @ (np.ones(len(m)) if w is None else w))


@pytest.mark.parametrize("metric", METRICS)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_eager_ends_in_a_local_optimum_near_fasterpams_loss(small_tiles, metric, seed):
    X = _data(220, 4, seed=seed)
    D = dissimilarity_matrix(X, metric).astype(np.float64)
    for init in ("build", "k-medoids++"):
        g = _device(X, 8, metric=metric, method="fasterpam", init=init, random_state=seed, precompute=False)
        med = np.asarray(g.medoids)
        assert g.converged and g.method == "fasterpam"
        assert g.loss == pytest.approx(_loss(D, med), rel=1e-12)
        np.testing.assert_array_equal(np.asarray(g.labels), np.argmin(D[:, med], axis=1))
        best = min(_loss(D, np.where(np.arange(8) == s, x, med)) for x in range(220)
                   if x not in med for s in range(8))
        assert best >= g.loss * (1 - 1e-12), "a single swap still improves"
        c = rankcore.kmedoids(X, 8, metric=metric, method="fasterpam", init=init, random_state=seed)
        assert g.loss <= c.loss * 1.03
        if init == "k-medoids++":
            assert g.n_iter < g.n_swap  # several swaps per pass


def test_eager_with_weights_is_a_weighted_local_optimum(small_tiles):
    X = _data(160, 3, seed=8)
    w = np.random.default_rng(3).random(160) * 3
    D = dissimilarity_matrix(X, "euclidean")
    g = _device(X, 5, method="fasterpam", sample_weight=w, init="random")
    med = np.asarray(g.medoids)
    assert g.loss == pytest.approx(_loss(D, med, w), rel=1e-12)
    for x in range(160):
        for s in range(5):
            if x not in med:
                assert _loss(D, np.where(np.arange(5) == s, x, med), w) >= g.loss * (1 - 1e-12)


def test_clara_on_the_device(small_tiles):
    X = _data(600, 3, seed=4)
    D = dissimilarity_matrix(X, "euclidean")
    g = _device(X, 6, method="clara", n_samples=4, sample_size=120, random_state=5)
    c = rankcore.kmedoids(X, 6, metric="euclidean", method="clara", n_samples=4, sample_size=120, random_state=5)
    med = np.asarray(g.medoids)
    assert len(set(med.tolist())) == 6 and g.converged
    assert g.loss == pytest.approx(_loss(D, med), rel=1e-12)
    np.testing.assert_array_equal(np.asarray(g.labels), np.argmin(D[:, med], axis=1))
    # the first sample and its BUILD start are the CPU's (same Philox draws)
    np.testing.assert_array_equal(np.asarray(g.init_medoids), c.init_medoids)
    assert g.loss <= c.loss * 1.03
    full = rankcore.kmedoids(X, 6, metric="euclidean", method="fasterpam").loss
    assert g.loss <= full * 1.10
    w = np.ones(600)
    w[:300] = 0.0
    gw = _device(X, 6, method="clara", n_samples=2, sample_weight=w, random_state=1)
    assert gw.loss == pytest.approx(_loss(D, np.asarray(gw.medoids), w), rel=1e-12)


# --------------------------------------------------------------------------------------
# routing, errors, and no host round trip (a stand-in device type)
# --------------------------------------------------------------------------------------


class Dev(np.ndarray):
    """A NumPy array that ``rankcore`` takes for a cupy one; host conversions of more than one
    element raise, one-element reads are counted."""

    reads = 0

    def tolist(self):
        raise AssertionError(f"host transfer: tolist() of shape {self.shape}")

    def __iter__(self):
        raise AssertionError(f"host transfer: iteration over shape {self.shape}")

    def __getitem__(self, key):
        out = super().__getitem__(key)
        return np.asarray(out).view(Dev) if isinstance(out, np.generic) else out


Dev.__module__ = "cupy._stand_in"


def _scalar(name):
    orig = getattr(np.ndarray, name)

    def read(self, *args):
        if self.size > 1:
            raise AssertionError(f"host transfer: {name} of shape {self.shape}")
        Dev.reads += 1
        return orig(self.view(np.ndarray), *args)

    return read


for _name in ("__int__", "__float__", "__bool__", "__index__", "item"):
    setattr(Dev, _name, _scalar(_name))


def _dev(a):
    if isinstance(a, np.ndarray):
        return a.view(Dev)
    if isinstance(a, np.generic):
        return np.asarray(a).view(Dev)
    if isinstance(a, tuple):
        return tuple(_dev(x) for x in a)
    return a


class _DevNamespace:
    """numpy, with every array it returns a Dev."""

    def __getattr__(self, name):
        obj = getattr(np, name)
        if callable(obj) and not isinstance(obj, type):
            return lambda *a, **kw: _dev(obj(*a, **kw))
        return obj


DEVNP = _DevNamespace()


class _DevKernels(gk.HostKernels):
    xp = DEVNP

    def distances(self, *a):
        return _dev(super().distances(*a))

    def swap_pieces(self, *a):
        return _dev(super().swap_pieces(*a))


class _SeedsOnly:
    """The CPU core as the orchestration may use it: seed draws only."""

    def random_matrix(self, kind, seed, stream, row0, col0, nrows, ncols):
        assert kind == "uniform" and nrows * ncols <= 1000, "only a seed's few draws"
        return rankcore._core.random_matrix(kind, seed, stream, row0, col0, nrows, ncols)


@pytest.fixture
def on_device(monkeypatch):
    """Dev arrays are routed to the device path and served by DEVNP."""
    module = lambda x: DEVNP if isinstance(x, Dev) else np  # noqa: E731
    monkeypatch.setattr(_arrays, "array_module", module)
    monkeypatch.setattr(gk, "array_module", module)
    monkeypatch.setattr(gk, "kernels_for", lambda xp: _DevKernels())
    monkeypatch.setattr(gk, "_core", _SeedsOnly())
    monkeypatch.setattr(gk, "_TILE_BYTES", 1)
    Dev.reads = 0
    return Dev


@pytest.mark.parametrize("method", ["fastpam1", "fasterpam", "clara"])
@pytest.mark.parametrize("init", ["build", "k-medoids++", "lab"])
def test_no_host_round_trip(on_device, method, init):
    X = _data(150, 3)
    w = np.random.default_rng(0).random(150)
    res = rankcore.kmedoids(X.view(Dev), 4, metric="cosine", method=method, init=init,
                            sample_weight=w.view(Dev), random_state=2, precompute=False,
                            n_samples=2, sample_size=60)
    for a in (res.medoids, res.labels, res.init_medoids):
        assert isinstance(a, Dev)
    assert Dev.reads <= 40 * (res.n_iter + res.n_swap + 4 * 2 + 3)  # O(1) per pass, swap and medoid
    if method == "fastpam1":
        c = rankcore.kmedoids(X, 4, metric="cosine", method=method, init=init, sample_weight=w, random_state=2)
        _same(res, c)


def test_the_estimator_keeps_the_device(on_device):
    X = _data(180, 4, dtype=np.float32)
    Xd = X.view(Dev)
    km = rankcore.KMedoids(5, method="fastpam1", random_state=0).fit(Xd)
    host = rankcore.KMedoids(5, method="fastpam1", random_state=0).fit(X)
    for a in (km.labels_, km.medoid_indices_, km.cluster_centers_):
        assert isinstance(a, Dev)
    assert km.cluster_centers_.dtype == np.float32
    np.testing.assert_array_equal(np.asarray(km.medoid_indices_), host.medoid_indices_)
    assert km.inertia_ == pytest.approx(host.inertia_, rel=1e-6)
    T = km.transform(Xd)
    assert isinstance(T, Dev) and T.dtype == np.float32
    np.testing.assert_allclose(np.asarray(T), host.transform(X), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(np.asarray(km.predict(Xd)), host.predict(X))
    with pytest.raises(TypeError, match="fitted on cupy"):
        km.predict(X)
    with pytest.raises(TypeError, match="fitted on host"):
        host.predict(Xd)
    # coordinates as init, precomputed, sample_weight
    centres = X[[3, 50, 90, 120, 170]] + 0.01
    km2 = rankcore.KMedoids(5, init=centres.view(Dev), method="fastpam1").fit(Xd)
    h2 = rankcore.KMedoids(5, init=centres, method="fastpam1").fit(X)
    np.testing.assert_array_equal(np.asarray(km2.medoid_indices_), h2.medoid_indices_)
    D = dissimilarity_matrix(X.astype(np.float64), "euclidean")
    kp = rankcore.KMedoids(5, metric="precomputed", method="fastpam1").fit(D.view(Dev))
    assert kp.cluster_centers_ is None and isinstance(kp.transform(D.view(Dev)), Dev)
    w = np.linspace(0.5, 2, 180)
    kw = rankcore.KMedoids(5, method="fastpam1").fit(Xd, sample_weight=w.view(Dev))
    hw = rankcore.KMedoids(5, method="fastpam1").fit(X, sample_weight=w)
    np.testing.assert_array_equal(np.asarray(kw.medoid_indices_), hw.medoid_indices_)
    with pytest.raises(TypeError, match="sample_weight is a host ndarray"):
        rankcore.KMedoids(5).fit(Xd, sample_weight=w)


def test_host_and_device_arrays_are_never_mixed(on_device):
    X = _data(50, 2)
    with pytest.raises(TypeError, match="sample_weight is a host ndarray"):
        rankcore.kmedoids(X.view(Dev), 3, metric="euclidean", sample_weight=np.ones(50))
    with pytest.raises(TypeError, match="sample_weight is a cupy"):
        rankcore.kmedoids(X, 3, metric="euclidean", sample_weight=np.ones(50).view(Dev))


@pytest.mark.parametrize("kwargs, error, match", [
    ({"metric": lambda a, b: 1.0}, NotImplementedError, "callable metric"),
    ({"method": "alternate"}, NotImplementedError, "method='alternate' is not available on cupy"),
    ({"method": "onebatch"}, NotImplementedError, "method='onebatch'"),
    ({"method": "kmeans"}, ValueError, "method"),
    ({"metric": "chebyshev"}, ValueError, "metric"),
    ({"n_clusters": 0}, ValueError, "n_clusters"),
    ({"n_clusters": 51}, ValueError, "n_clusters"),
    ({"max_iter": -1}, ValueError, "max_iter"),
    ({"init": "kmeans++"}, ValueError, "init"),
    ({"init": [0, 1]}, ValueError, "init must hold n_clusters = 3"),
    ({"init": [0, 1, 1]}, ValueError, "init must be distinct"),
    ({"init": [0, 1, 50]}, ValueError, r"init must be in \[0, 50\)"),
    ({"sample_weight": "w-short"}, ValueError, "sample_weight must have length"),
    ({"sample_weight": "w-negative"}, ValueError, "sample_weight must be non-negative"),
    ({"sample_weight": "w-zero"}, ValueError, "sample_weight must not be all zero"),
    ({"sample_weight": "w-nan"}, ValueError, "sample_weight contains NaN"),
    ({"precompute": "yes"}, ValueError, "precompute"),
])
def test_bad_inputs_name_the_parameter(on_device, kwargs, error, match):
    X = _data(50, 2).view(Dev)
    ws = {"w-short": np.ones(49), "w-negative": -np.ones(50), "w-zero": np.zeros(50),
          "w-nan": np.full(50, np.nan)}
    if isinstance(kwargs.get("sample_weight"), str):
        kwargs = {**kwargs, "sample_weight": ws[kwargs["sample_weight"]].view(Dev)}
    kwargs = {"metric": "euclidean", "n_clusters": 3, **kwargs}
    k = kwargs.pop("n_clusters")
    with pytest.raises(error, match=match):
        rankcore.kmedoids(X, k, **kwargs)


def test_bad_data_is_refused(on_device):
    X = _data(30, 2)
    bad = X.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN"):
        rankcore.kmedoids(bad.view(Dev), 3, metric="euclidean")
    with pytest.raises(ValueError, match="Complex data"):
        rankcore.kmedoids((X + 1j).view(Dev), 3, metric="euclidean")
    D = dissimilarity_matrix(X, "euclidean")
    for M, match in [(D[:, :20], "square"), (-D, "non-negative"), (D + np.eye(30), "zero diagonal"),
                     (D + np.triu(np.ones((30, 30)), 1), "symmetric")]:
        with pytest.raises(ValueError, match=match):
            rankcore.kmedoids(np.ascontiguousarray(M).view(Dev), 3, metric="precomputed")
    with pytest.raises(NotImplementedError, match="condensed"):
        rankcore.kmedoids(np.ones(435).view(Dev), 3, metric="precomputed")
    big = np.array([[3e38, 0.0], [-3e38, 0.0], [1.0, 1.0], [2.0, 2.0], [0.0, 0.0]], dtype=np.float32)
    with pytest.raises(ValueError, match="overflowed the float32"):
        rankcore.kmedoids(big.view(Dev), 2, metric="euclidean", method="fastpam1")


def test_import_does_not_import_cupy():
    code = "import sys, rankcore, rankcore._gpu.kmedoids; assert 'cupy' not in sys.modules, 'cupy imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_tiles_fit_the_memory_target():
    # n = 100,000 float32: a tile of candidate rows stays within _TILE_BYTES (256 MiB)
    rows = gk._tile(100_000, np.float32)
    assert rows % 64 == 0 and rows * 100_000 * 4 <= gk._TILE_BYTES
