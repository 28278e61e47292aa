"""The device orchestration of FastRP (``rankcore._gpu.fastrp``) run with NumPy/SciPy standing
in for cupy, against the public CPU path (the Rust core) on the same graphs and seeds.

No GPU is needed: ``ops_for(numpy)`` gives the NumPy references of the kernels (the Rust
Philox generator for the random words), and the sparse products are SciPy's. The device
itself is exercised by ``tests/gpu/``.

Tolerances. Both paths run the same operations on the same random matrices (the words are
bit-identical, ``L R`` is rounded once from the same float64 values, and every element-wise
product follows the Rust expression term for term); only the order of the sums differs
(SpMM / GEMM / NumPy's pairwise row sums against Rust's sequential loops, libm's ``pow``
against Rust's ``powf``). By the usual bound on reordered summation, an entry that sums
``m`` terms of size at most ``max|U|`` moves by at most about ``m · eps · max|U|``, with
``m`` a few times ``n_components`` plus the degree: for these graphs (``k <= 32``, degrees
below ~30, four iterations) that is below ``1e3 · eps · max|U|``, i.e. ~2e-13 in float64
and ~1e-4 · max|U| in the very worst case in float32 (observed: a few ulps of ``max|U|``, in
float32 usually bit-identical). Hence ``rtol = 1e-12`` (float64) / ``1e-5`` (float32), with
the same factor times ``max|U|`` as the absolute part, since entries close to zero (after
cancellation or the centring of ``standardize``) carry the error of the large ones.
"""

from __future__ import annotations

import hashlib
import re
import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import rankcore
from rankcore._gpu import fastrp as gpu
from test_fastrp import _cancelling_pair

TOL = {np.float64: 1e-12, np.float32: 1e-5}


def digest(*arrays):
    return tuple(hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest() for a in arrays)


def graph(n=400, seed=0, m_per_node=4):
    """A weighted COO graph with duplicate edges, self-loops, a sink (n - 2: in-edges only)
    and an isolated node (n - 1: no edges at all; n - 3 may have in-edges only)."""
    rng = np.random.default_rng(seed)
    m = m_per_node * n
    src = rng.integers(0, n - 3, m)
    dst = rng.integers(0, n - 1, m)
    w = rng.random(m) + 0.1
    loops = rng.integers(0, n - 3, 5)
    src = np.r_[src, loops, 5, 5]
    dst = np.r_[dst, loops, 7, 7]  # self-loops and a duplicate pair 5 -> 7
    w = np.r_[w, np.full(5, 0.5), 1.0, 2.0]
    return sp.coo_array((w, (src, dst)), shape=(n, n))


def assert_close(got, want, dtype):
    tol = TOL[dtype]
    assert got.dtype == want.dtype == dtype
    np.testing.assert_allclose(got, want, rtol=tol, atol=tol * np.abs(want).max())


FEATURES = np.random.default_rng(7).standard_normal((400, 9))

PAPER_CASES = [
    dict(),
    dict(transition=False, normalize=True, standardize=False),
    dict(self_influence=0.7, normalization_strength=0.0, normalize=True, standardize=False),
    dict(self_influence=-0.3, standardize=True),
    dict(iteration_weights=[0.5, 0.0, 2.0], normalization_strength=-1.0, density=0.3, standardize=False),
    dict(features=FEATURES, feature_ratio=0.25, directed=False),
    dict(features=FEATURES, feature_ratio=0.5, self_influence=1.0, normalize=True, transition=False),
]

GDS_CASES = [
    dict(),
    dict(self_influence=1.5, normalization_strength=-0.5),
    dict(directed=False, iteration_weights=[1.0, 0.0, 3.0, 0.5]),
    dict(features=FEATURES, feature_ratio=0.25, self_influence=0.5),
    dict(features=FEATURES, feature_ratio=1.0, self_influence=0.5),  # no R part at all
    dict(standardize=True, density=0.05, normalization_strength=0.3),
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize(
    "variant, case",
    [("paper", c) for c in PAPER_CASES] + [("gds", c) for c in GDS_CASES],
)
def test_stand_in_matches_the_cpu_path(variant, case, dtype):
    A = graph().tocsr().astype(dtype)
    want = rankcore.fastrp(A, 24, variant=variant, random_state=11, **case)
    got = gpu.fastrp(A, 24, variant=variant, random_state=11, **case)
    assert type(got) is np.ndarray
    assert_close(got, want, dtype)


@pytest.mark.parametrize("variant", ["paper", "gds"])
def test_isolated_nodes_and_larger_graph(variant):
    n = 2000
    A = graph(n, seed=3, m_per_node=6)
    for w0 in (0.0, 0.8):
        want = rankcore.fastrp(A, 32, variant=variant, self_influence=w0, standardize=False, random_state=5)
        got = gpu.fastrp(A, 32, variant=variant, self_influence=w0, standardize=False, random_state=5)
        assert_close(got, want, np.float64)
        if variant == "gds" and w0 == 0:
            assert not got[n - 1].any()  # isolated: zero without self-influence, as in GDS


@pytest.mark.parametrize("variant", ["paper", "gds"])
def test_row_blocks_do_not_change_the_result(variant, monkeypatch):
    A = graph(300, seed=4)
    kw = dict(variant=variant, features=FEATURES[:300], feature_ratio=0.25, self_influence=0.5,
              normalize=True, random_state=2)
    whole = gpu.fastrp(A, 20, **kw)
    monkeypatch.setattr(gpu, "_BLOCK", 37)  # several row blocks, a partial last one
    np.testing.assert_array_equal(gpu.fastrp(A, 20, **kw), whole)


@pytest.mark.parametrize("variant", ["paper", "gds"])
def test_formats_and_dtypes(variant):
    coo = graph(200, seed=5)
    # Non-canonical CSR (duplicates, unsorted, a stored zero), CSC, COO, integer weights.
    rows, cols, w = coo.row, coo.col, coo.data
    order = np.random.default_rng(0).permutation(rows.size)
    rows, cols, w = np.r_[rows[order], 0], np.r_[cols[order], 1], np.r_[w[order], 0.0]
    indptr = np.r_[0, np.cumsum(np.bincount(rows, minlength=200))]
    by_row = np.argsort(rows, kind="stable")
    messy = sp.csr_matrix((w[by_row], cols[by_row], indptr), shape=(200, 200))
    assert not messy.has_canonical_format
    base = rankcore.fastrp(coo, 16, variant=variant, random_state=1)
    for g in (messy, coo.tocsc(), coo, sp.csr_array(coo), coo.tocsr().tolil()):
        before = digest(g.data) if hasattr(g, "indptr") or g.format == "coo" else None
        got = gpu.fastrp(g, 16, variant=variant, random_state=1)
        assert_close(got, base, np.float64)
        if before is not None:
            assert digest(g.data) == before  # the input is never written to
    ints = sp.csr_array((np.ones(coo.nnz, dtype=np.int64), (coo.row, coo.col)), shape=coo.shape)
    assert_close(gpu.fastrp(ints, 16, variant=variant, random_state=1),
                 rankcore.fastrp(ints, 16, variant=variant, random_state=1), np.float64)
    # The dtype keyword converts; float32 stays float32 throughout.
    f32 = gpu.fastrp(coo, 16, variant=variant, dtype=np.float32, random_state=1)
    assert_close(f32, rankcore.fastrp(coo, 16, variant=variant, dtype=np.float32, random_state=1), np.float32)
    F = FEATURES[:200].astype(np.float32)
    got = gpu.fastrp(coo.astype(np.float32), 16, variant=variant, features=np.asfortranarray(F),
                     feature_ratio=0.5, random_state=1)
    assert_close(got, rankcore.fastrp(coo.astype(np.float32), 16, variant=variant, features=F,
                                      feature_ratio=0.5, random_state=1), np.float32)


def test_symmetric_input_is_unchanged_by_directed_false():
    A = graph(150, seed=6).tocsr()
    S = sp.csr_array(A.maximum(A.T))
    np.testing.assert_array_equal(gpu.fastrp(S, 8, random_state=0), gpu.fastrp(S, 8, directed=False, random_state=0))


EYE = sp.csr_array(np.eye(4))
BAD = [
    (lambda: sp.csr_array(-np.eye(4)), {}),
    (lambda: sp.csr_array(np.array([[0, np.inf], [1, 0]])), {}),
    (lambda: sp.csr_array(np.array([[0, 1e39], [1, 0]])), dict(dtype=np.float32)),  # overflows
    (lambda: sp.coo_array((np.array([3e38, 3e38]), (np.array([0, 0]), np.array([1, 1]))),
                          shape=(2, 2), dtype=np.float32), {}),  # the duplicates' sum overflows
    (lambda: _cancelling_pair("coo"), {}),
    (lambda: _cancelling_pair("csr"), {}),
    (lambda: _cancelling_pair("csc"), {}),
    (lambda: sp.csr_array(np.ones((3, 4))), {}),
    (lambda: sp.csr_array((0, 0)), {}),
    (lambda: sp.csr_array(np.eye(4, dtype=np.complex128)), {}),
    (lambda: EYE, dict(n_nodes=5)),
    (lambda: EYE, dict(directed="no")),
    (lambda: EYE, dict(n_components=0)),
    (lambda: EYE, dict(n_components=-2)),
    (lambda: EYE, dict(n_components=2.5)),
    (lambda: EYE, dict(density=0.0)),
    (lambda: EYE, dict(density=1.5)),
    (lambda: EYE, dict(density="sqrt")),
    (lambda: EYE, dict(variant="neo4j")),
    (lambda: EYE, dict(dtype=np.int32)),
    (lambda: EYE, dict(iteration_weights=[1.0, np.nan])),
    (lambda: EYE, dict(iteration_weights="abc")),
    (lambda: EYE, dict(normalization_strength=np.inf)),
    (lambda: EYE, dict(self_influence="1")),
    (lambda: EYE, dict(normalize=1)),
    (lambda: EYE, dict(transition="yes")),
    (lambda: EYE, dict(standardize=0)),
    (lambda: EYE, dict(random_state="seed")),
    (lambda: EYE, dict(features=np.ones((4, 2)))),
    (lambda: EYE, dict(features=np.ones((3, 2)), feature_ratio=0.5)),
    (lambda: EYE, dict(features=np.ones((4, 2)), feature_ratio=0.1)),  # int(4 * 0.1) == 0
    (lambda: EYE, dict(features=np.ones((4, 2)), feature_ratio=1.5)),
    (lambda: EYE, dict(features=np.array([[1.0, np.nan]] * 4), feature_ratio=0.5)),
    (lambda: EYE, dict(features=np.full((4, 2), 1e300), feature_ratio=0.5, dtype=np.float32)),
    (lambda: EYE, dict(features=np.ones((4, 2), dtype=np.complex128), feature_ratio=0.5)),
    (lambda: EYE, dict(features=np.ones(4), feature_ratio=0.5)),
    (lambda: EYE, dict(feature_ratio=0.5)),
    (lambda: EYE, dict(feature_ratio=0.5, variant="gds")),
]


@pytest.mark.filterwarnings("ignore:overflow encountered in cast:RuntimeWarning")
@pytest.mark.parametrize("make, kwargs", BAD)
def test_bad_inputs_give_the_cpu_errors(make, kwargs):
    g = make()
    before = digest(g.data)
    kwargs = {"n_components": 4, **kwargs}
    with pytest.raises((ValueError, TypeError)) as cpu_error:
        rankcore.fastrp(g, **kwargs)
    with pytest.raises(type(cpu_error.value), match=re.escape(str(cpu_error.value))):
        gpu.fastrp(g, **kwargs)
    assert digest(g.data) == before


def test_non_sparse_graphs_are_refused():
    for g in (np.eye(3), (np.array([0, 1]), np.array([1, 2]))):
        with pytest.raises(TypeError, match="graph"):
            gpu.fastrp(g, 4)


def _device_type(name):
    """A stand-in type that ``rankcore._backend.namespace`` takes for a cupy one (no device
    needed: routing and mixing checks look only at the type's module)."""
    return type(name, (), {"__module__": "cupy._core.core", "shape": (4, 4), "dtype": np.dtype(np.float64)})


def test_host_and_device_arrays_are_never_mixed():
    Dev = _device_type("ndarray")
    with pytest.raises(TypeError, match="features is a cupy"):
        rankcore.fastrp(EYE, 4, features=Dev(), feature_ratio=0.5)
    with pytest.raises(TypeError, match="features is a host ndarray"):
        rankcore.fastrp(Dev(), 4, features=np.ones((4, 2)), feature_ratio=0.5)  # routed to the device
    with pytest.raises(NotImplementedError, match="cupyx.scipy.sparse"):
        rankcore.fastrp((Dev(), Dev()), 4)


def test_import_does_not_import_cupy():
    code = "import sys, rankcore, rankcore._gpu.fastrp; assert 'cupy' not in sys.modules, 'cupy imported'"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_options_are_shared_with_the_cpu_path():
    # Both paths get the core's option dict from the same helper.
    from rankcore.fastrp import _options

    A = graph(50).tocsr()
    F, opts, std = _options(A, None, None, variant="gds", n_components=8, random_state=3)
    assert F is None and std is False
    assert opts == {"variant": "gds", "n_components": 8, "iteration_weights": [0.0, 1.0, 1.0],
                    "normalization_strength": 0.0, "self_influence": 0.0, "property_dim": 0,
                    "density": 1.0 / 3.0, "transition": False, "normalize": True, "seed": 3}
    assert_close(gpu.embed(gpu.adjacency(A, n_nodes=None, directed=None, dtype=None), F, opts, std),
                 rankcore.fastrp(A, 8, variant="gds", random_state=3), np.float64)
