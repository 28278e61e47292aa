"""The GPU random projection's orchestration, run with NumPy standing in for cupy.

``rankcore._gpu.projection`` runs on cupy arrays with the kernels of
``cuda/projection.cu`` and on NumPy arrays with their references (``_gpu._ops.HostOps``).
Here: the non-zero lists built from the seed equal the CPU's ``components_`` exactly, and
the stand-in products equal the CPU path to rounding (the reference multiplies by a sign
matrix in float64, so it is not bit-identical; the device tests check that the real kernels
are). ``tests/test_cuda_compile.py`` compiles the kernels themselves.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp

from rankcore import projection as P
from rankcore._gpu import projection as G
from rankcore._gpu._ops import HostOps, threshold

RTOL = {np.float64: 1e-14, np.float32: 2e-6}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind, density", [("sparse", 0.05), ("sparse", 1 / 3), ("sparse", 1.0), ("gaussian", 1.0)])
def test_dense_products_match_the_rust_path(dtype, kind, density):
    X = np.random.default_rng(0).standard_normal((200, 300)).astype(dtype)
    opts = P._options(kind, 300, 48, density, 11)
    cpu, gpu = P._project(X, opts), G.project(X, opts)
    assert gpu.dtype == dtype and gpu.shape == (200, 48)
    np.testing.assert_allclose(gpu, cpu, rtol=0, atol=RTOL[dtype] * 10 * np.abs(cpu).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind", ["sparse", "gaussian"])
def test_sparse_products_match_the_rust_path(dtype, kind):
    X = sp.random(150, 400, density=0.03, format="csr", random_state=2, dtype=dtype)
    opts = P._options(kind, 400, 32, 0.1 if kind == "sparse" else 1.0, 4)
    cpu = P._project(X, opts, dense_output=True)
    np.testing.assert_allclose(G.project(X, opts), cpu, rtol=0, atol=RTOL[dtype] * 10 * np.abs(cpu).max())
    out = G.project(X.tocsc(), opts, dense_output=False)
    assert sp.issparse(out) and out.format == "csr"
    np.testing.assert_allclose(out.toarray(), cpu, rtol=0, atol=RTOL[dtype] * 10 * np.abs(cpu).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind, density", [("sparse", 0.02), ("sparse", 1.0), ("gaussian", 1.0)])
def test_components_equal_the_cpu_components(dtype, kind, density):
    opts = P._options(kind, 257, 19, density, 123)
    cpu = P._components(opts, dtype, dense=True)
    gpu = G.components(opts, dtype, np, dense=True)
    assert gpu.dtype == dtype
    np.testing.assert_array_equal(gpu, np.asarray(cpu))
    if kind == "sparse":
        csr = G.components(opts, dtype, np)
        assert sp.issparse(csr)
        np.testing.assert_array_equal(csr.toarray(), gpu)


@pytest.mark.parametrize("by_component", [True, False])
def test_lists_are_sorted_and_decode_the_words(by_component):
    ops = HostOps()
    k, d, density, seed, stream = 7, 50, 0.3, 9, 0x52500001
    ptr, entries = ops.sparse_lists(k, d, density, seed, stream, by_component)
    words = ops.words(d, k, 0, 0, seed, stream)  # word(j, c): feature j, component c
    t = threshold(density)
    outer = k if by_component else d
    assert len(ptr) == outer + 1
    for o in range(outer):
        lst = entries[ptr[o]:ptr[o + 1]]
        idx = np.abs(lst) - 1
        assert np.all(np.diff(idx) > 0)
        w = words[:, o] if by_component else words[o, :]
        nonzero = (w >> 1) < t
        np.testing.assert_array_equal(idx, np.flatnonzero(nonzero))
        np.testing.assert_array_equal(lst < 0, (w[idx] & 1) == 1)


def test_nan_in_dense_input_is_rejected_by_the_product():
    X = np.ones((5, 8))
    X[3, 2] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or infinity"):
        G.project(X, P._options("sparse", 8, 4, 0.5, 0))
