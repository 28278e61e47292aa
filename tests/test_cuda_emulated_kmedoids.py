"""The k-medoids kernels (``cuda/kmedoids.cu``) run on the CPU through ``tests/cuda_emulator``.

``DeviceKernels`` launches them exactly as on a GPU (same grids, blocks and arguments) with
NumPy arrays in device memory's place, using the host build of ``test_cuda_emulated.py``.
Checked here without a GPU:

- distance tiles **bit-identical** to the Rust kernel (``HostKernels``, the reference the
  stand-in orchestration uses): same terms (``fma(t, t, acc)``, ``acc + |t|``,
  ``fma(x, y, acc)``), same order, same finish, for all four metrics, both dtypes, any row
  indices, column offsets and partial tiles;
- the swap reduction against a NumPy reference summed another way: equal for integer data
  (every term and partial sum is an exact integer), within ``4 · eps · Σ|terms|`` otherwise
  (warp-strided partial sums and a butterfly instead of NumPy's pairwise sum);
- one whole fit through the emulated kernels, equal to the CPU path.
"""

from __future__ import annotations

import numpy as np
import pytest

import rankcore
from rankcore._gpu import kmedoids as gk
from rankcore.kmedoids import _fit_device

from test_cuda_emulated import emulated  # noqa: F401  (the host-compiled kernels, a fixture)

METRICS = list(gk.METRIC_CODES)


@pytest.fixture(scope="module")
def kern(emulated):  # noqa: F811
    return gk.DeviceKernels(np, emulated._function)


def _features(n, d, dtype, integer=False, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.integers(-4, 5, size=(n, d)) if integer else rng.standard_normal((n, d))
    X = X.astype(dtype)
    X[3] = 0  # a zero row: cosine distance 1 to every other point
    X[5] = X[4]  # duplicate points: distance 0 off the diagonal
    return X


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("metric", METRICS)
def test_distance_tiles_are_bit_identical_to_the_rust_kernel(kern, dtype, metric):
    X = _features(70, 37, dtype)  # 37 features: three chunks of 16, the last partial
    norms = kern.norms(X) if metric == "cosine" else None
    for rows, col0, ncols in [(np.arange(70), 0, 70), (np.array([69, 3, 5, 4, 0, 12]), 2, 67),
                              (np.arange(64, 70), 60, 10)]:
        got = kern.distances(X, norms, rows, col0, ncols, metric)
        ref = gk.HostKernels().distances(X, None, rows, col0, ncols, metric)
        assert got.dtype == dtype
        np.testing.assert_array_equal(got, ref)
    if metric == "cosine":
        ref_norms = np.sqrt((X.astype(np.float64) ** 2).sum(axis=1))
        np.testing.assert_allclose(norms, ref_norms, rtol=4 * np.finfo(dtype).eps)


@pytest.mark.parametrize("metric", METRICS)
def test_integer_features_give_exact_distances(kern, metric):
    X = _features(40, 9, np.float32, integer=True, seed=1)
    got = kern.distances(X, kern.norms(X) if metric == "cosine" else None, np.arange(40), 0, 40, metric)
    X64 = X.astype(np.float64)
    diff = X64[:, None, :] - X64[None, :, :]
    exact = {"euclidean": np.sqrt((diff**2).sum(-1)), "sqeuclidean": (diff**2).sum(-1),
             "manhattan": np.abs(diff).sum(-1)}
    if metric in exact:  # sums of small integers are exact; euclidean: one rounded sqrt
        np.testing.assert_array_equal(got, exact[metric].astype(np.float32))


def _state_arrays(n, k, dtype, integer, seed):
    rng = np.random.default_rng(seed)
    near = rng.integers(0, k, n)
    near[:k] = np.arange(k)  # every slot has points
    order = np.argsort(near, kind="stable").astype(np.int32)
    draw = (lambda size: rng.integers(0, 20, size).astype(dtype)) if integer else \
        (lambda size: rng.random(size).astype(dtype) * 10)
    dn = draw(n)
    ds = dn + draw(n)
    if k == 1:
        ds[:] = np.inf
    w = rng.integers(0, 4, n).astype(np.float64) if integer else rng.random(n) * 2
    bounds = np.concatenate([[0], np.cumsum(np.bincount(near, minlength=k))])
    D = draw((9, n)) * 2
    return D, order, dn[order], ds[order], w[order], bounds


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("integer", [True, False])
@pytest.mark.parametrize("k, piece", [(1, 1024), (4, 7), (13, 40)])
def test_swap_pieces_match_the_numpy_reference(kern, monkeypatch, dtype, integer, k, piece):
    monkeypatch.setattr(gk, "_PIECE", piece)
    n = 150
    D, order, dn, ds, w, bounds = _state_arrays(n, k, dtype, integer, seed=k)
    pstart, slots = gk._pieces(np, bounds, n)
    got = kern.swap_pieces(D, order, dn, ds, w, pstart)
    ref = gk.HostKernels().swap_pieces(D, order, dn, ds, w, pstart)
    for g, r in zip(got, ref):
        assert g.shape == (9, len(pstart) - 1) and g.dtype == np.float64
        if integer:
            np.testing.assert_array_equal(g, r)
        else:
            scale = np.abs(D).max() * w.max() * max(piece, 1)
            np.testing.assert_allclose(g, r, rtol=0, atol=4 * np.finfo(np.float64).eps * scale)
    # the pieces of each slot add up to the slot's sums (the decomposition the GEMM uses)
    ploss = got[0] @ (slots[:, None] == np.arange(k)).astype(np.float64)
    G = D[:, order].astype(np.float64)
    direct = np.stack([(w * (np.minimum(np.maximum(G, dn), ds) - dn))[:, bounds[s]:bounds[s + 1]].sum(1)
                       for s in range(k)], axis=1)
    np.testing.assert_allclose(ploss, direct, rtol=1e-12, atol=1e-12)


def test_a_strided_row_tile(kern):
    # rows of a larger matrix (a view with a row stride longer than the row)
    n = 80
    D, order, dn, ds, w, bounds = _state_arrays(n, 3, np.float64, True, seed=9)
    big = np.zeros((9, n + 13))
    big[:, :n] = D
    pstart, _ = gk._pieces(np, bounds, n)
    got = kern.swap_pieces(big[:, :n], order, dn, ds, w, pstart)
    ref = gk.HostKernels().swap_pieces(D, order, dn, ds, w, pstart)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


@pytest.mark.parametrize("method", ["fastpam1", "fasterpam"])
def test_a_whole_fit_through_the_emulated_kernels(kern, monkeypatch, method):
    monkeypatch.setattr(gk, "kernels_for", lambda xp: kern)
    monkeypatch.setattr(gk, "_PIECE", 16)
    monkeypatch.setattr(gk, "_TILE_BYTES", 64 * 60 * 4)  # one 64-row tile: two tiles per pass
    X = _features(90, 3, np.float32, seed=4)
    kw = dict(metric="euclidean", method=method, init="build", max_iter=100)
    g = _fit_device(X, 3, random_state=0, sample_weight=None, n_samples=5, sample_size=None,
                    verbose=False, precompute=False, **kw)
    c = rankcore.kmedoids(X, 3, precompute=False, **kw)
    if method == "fastpam1":
        np.testing.assert_array_equal(g.medoids, c.medoids)
        np.testing.assert_array_equal(g.labels, c.labels)
        assert g.loss == pytest.approx(c.loss, rel=1e-12)
    else:
        assert g.loss <= c.loss * 1.02
