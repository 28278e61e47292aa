"""The CUDA kernels themselves, run on the CPU: bit-identical to the Rust path.

``tests/cuda_emulator`` compiles ``python/rankcore/cuda/*.cu`` as C++ with g++, one OS thread
per CUDA thread (``shim.h``: barriers for ``__syncthreads``/``__syncwarp``, a buffer for
``__shfl_sync``, statics for ``__shared__``). ``DeviceOps`` then launches them exactly as it
does on a GPU (same grids, blocks, argument lists), with NumPy arrays in device memory's
place. So CI checks, without a GPU: Philox words and sparse-family lists bit-identical to
the Rust generator, normals equal to the Rust ones (both compute ``ln`` and ``cos`` with the
same operations, each rounded on its own: CUDA's ``__dadd_rn`` & co. are plain operations
here, compiled without FMA contraction), and the fused projections
bit-identical to the CPU products (same terms, same order), through the public
orchestration. What remains for the device: NVRTC code generation (compiled, not run, by
``tests/test_cuda_compile.py``), warp scheduling and memory ordering on real hardware.
"""

from __future__ import annotations

import ctypes
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pytest
import scipy.sparse as sp

import rankcore
from rankcore import _core
from rankcore import projection as P
from rankcore._gpu import _kernels
from rankcore._gpu import projection as G
from rankcore._gpu._ops import DeviceOps, HostOps

HERE = Path(__file__).resolve().parent / "cuda_emulator"
_CTYPES = {
    np.dtype(np.uint64): ctypes.c_uint64, np.dtype(np.uint32): ctypes.c_uint32,
    np.dtype(np.int64): ctypes.c_int64, np.dtype(np.int32): ctypes.c_int32,
    np.dtype(np.float64): ctypes.c_double, np.dtype(np.float32): ctypes.c_float,
    np.dtype(np.bool_): ctypes.c_bool,
}


@pytest.fixture(scope="module")
def emulated(tmp_path_factory):
    """DeviceOps over NumPy with the kernels compiled for the host."""
    gxx = shutil.which("g++")
    if gxx is None:
        pytest.skip("g++ is not installed")
    lib_path = tmp_path_factory.mktemp("cuda_emulator") / "kernels.so"
    cmd = [gxx, "-std=c++20", "-O1", "-ffp-contract=off", "-pthread", "-shared", "-fPIC", "-Wall", "-Werror",
           "-Wno-unknown-pragmas", f"-I{HERE}", f"-I{_kernels.CUDA_DIR}", "-o", str(lib_path),
           str(HERE / "kernels.cpp")]
    subprocess.run(cmd, check=True, capture_output=True, text=True)
    lib = ctypes.CDLL(str(lib_path))

    def function(source: str, expression: str):
        assert expression in _kernels.name_expressions(source)
        symbol = expression.replace(", ", "_").replace("<", "_").replace(">", "") if "<" in expression else expression + "_"
        entry = getattr(lib, symbol)

        def launch(grid, block, args):
            gx, gy = (tuple(grid) + (1,))[:2]
            cargs = [ctypes.c_uint32(gx), ctypes.c_uint32(gy), ctypes.c_int(block[0])]
            for a in args:
                if isinstance(a, np.ndarray):
                    cargs.append(ctypes.c_void_p(a.ctypes.data))
                else:
                    cargs.append(_CTYPES[np.asarray(a).dtype](a))
            entry(*cargs)

        return launch

    return DeviceOps(np, function)


SEEDS = [0, 7, 2**32 + 5, 2**64 - 1]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("row0, col0, shape", [(0, 0, (300, 5)), (3, 5, (37, 3)), (2**40 + 1, 2**31, (9, 4))])
def test_words_and_normals_equal_the_rust_generator(emulated, seed, row0, col0, shape):
    w = emulated.words(shape[0], shape[1], row0, col0, seed, 0x52500001)
    np.testing.assert_array_equal(w, HostOps().words(shape[0], shape[1], row0, col0, seed, 0x52500001))
    # The kernel's ln and cos are the Rust generator's algorithms, operation by operation.
    z = emulated.normal(shape[0], shape[1], row0, col0, seed, 0, np.float64)
    np.testing.assert_array_equal(z, _core.random_matrix("normal", seed, 0, row0, col0, *shape))
    z32 = emulated.normal(shape[0], shape[1], row0, col0, seed, 3, np.float32, scale=0.25)
    np.testing.assert_array_equal(z32, HostOps().normal(shape[0], shape[1], row0, col0, seed, 3, np.float32, 0.25))

@pytest.mark.parametrize("density", [0.01, 1 / 3, 1.0])
@pytest.mark.parametrize("by_component", [True, False])
@pytest.mark.parametrize("k, d", [(13, 2100), (300, 9)])
def test_sparse_lists_equal_the_rust_components(emulated, density, by_component, k, d):
    got = emulated.sparse_lists(k, d, density, 42, 0x52500001, by_component)
    ref = HostOps().sparse_lists(k, d, density, 42, 0x52500001, by_component)
    np.testing.assert_array_equal(got[0], ref[0])
    np.testing.assert_array_equal(got[1], ref[1])


@pytest.fixture
def on_emulator(emulated, monkeypatch):
    """Routes the orchestrations' kernel table to the emulated kernels."""
    monkeypatch.setattr(G, "ops_for", lambda xp: emulated)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kind, density", [("sparse", 0.05), ("sparse", 1 / 3), ("sparse", 1.0)])
@pytest.mark.parametrize("layout", ["C", "F", "slice", "reversed"])
def test_dense_projection_is_bit_identical_to_the_cpu(on_emulator, dtype, kind, density, layout):
    X = np.random.default_rng(1).standard_normal((70, 300)).astype(dtype)
    X = {"C": X, "F": np.asfortranarray(X), "slice": X[::2, 3:290], "reversed": X[::-1, ::-1]}[layout]
    opts = P._options(kind, X.shape[1], 40, density, 5)
    np.testing.assert_array_equal(G.project(X, opts), P._project(X, opts))


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("k", [5, 40, 70])
def test_csr_projection_is_bit_identical_to_the_cpu(on_emulator, dtype, k):
    X = sp.random(60, 500, density=0.05, format="csr", random_state=2, dtype=dtype)
    X = sp.csr_matrix(sp.diags((np.arange(60) != 3).astype(dtype)) @ X)  # row 3 empty
    X.eliminate_zeros()
    assert X.indptr[4] == X.indptr[3]
    opts = P._options("sparse", 500, k, 0.2, 8)
    np.testing.assert_array_equal(G.project(X, opts), P._project(X, opts, dense_output=True))


def test_the_kernel_flags_nan_and_inf(on_emulator):
    for bad in (np.nan, np.inf):
        X = np.ones((20, 40))
        X[17, 33] = bad
        with pytest.raises(ValueError, match="NaN or infinity"):
            G.project(X, P._options("sparse", 40, 8, 0.5, 0))


def test_randomized_svd_draws_the_cpu_test_matrix(emulated, monkeypatch):
    from rankcore._gpu import svd as gsvd
    from rankcore.svd import _svd_options

    monkeypatch.setattr(gsvd, "ops_for", lambda xp: emulated)
    A = np.random.default_rng(4).standard_normal((120, 60))
    opts = _svd_options(A.shape, 6, random_state=9)
    got, ref = gsvd.rsvd(A, opts), _core.rsvd_dense(A, opts)
    np.testing.assert_allclose(got["S"], ref["S"], rtol=1e-12)


def test_the_public_function_through_the_emulator(on_emulator):
    X = np.random.default_rng(3).standard_normal((50, 200))
    opts = P._options("sparse", 200, 16, 1 / np.sqrt(200), 11)
    np.testing.assert_array_equal(G.project(X, opts), rankcore.random_projection(X, 16, random_state=11))
