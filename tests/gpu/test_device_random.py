"""On the device: the CUDA Philox generator reproduces the Rust one.

Words (hence uniforms and signs), normals (the kernel's ``ln``/``cos`` are the CPU's
algorithms, operation by operation) and the sparse-family lists must be bit-identical.
"""

from __future__ import annotations

import numpy as np
import pytest

from rankcore import _core
from rankcore._gpu._ops import DeviceOps, HostOps

SEEDS = [0, 1, 2**32 + 5, 2**64 - 1]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("row0, col0, shape", [(0, 0, (1000, 7)), (3, 5, (513, 3)), (2**40 + 1, 2**31, (9, 4))])
def test_words_are_bit_identical(cp, seed, row0, col0, shape):
    dev = DeviceOps().words(shape[0], shape[1], row0, col0, seed, 0x52500001)
    host = HostOps().words(shape[0], shape[1], row0, col0, seed, 0x52500001)
    np.testing.assert_array_equal(cp.asnumpy(dev), host)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("row0, col0, shape", [(0, 0, (2000, 5)), (1, 3, (777, 2)), (2**33 + 3, 7, (11, 3))])
def test_normals_are_bit_identical(cp, seed, row0, col0, shape):
    # The kernel computes ln and cos with the CPU's operations, each rounded on its own
    # (__dadd_rn & co., no FMA contraction), and sqrt is correctly rounded on both.
    dev = cp.asnumpy(DeviceOps().normal(shape[0], shape[1], row0, col0, seed, 0, np.float64))
    host = _core.random_matrix("normal", seed, 0, row0, col0, shape[0], shape[1])
    np.testing.assert_array_equal(dev, host)
    dev32 = cp.asnumpy(DeviceOps().normal(shape[0], shape[1], row0, col0, seed, 0, np.float32))
    np.testing.assert_array_equal(dev32, host.astype(np.float32))


@pytest.mark.parametrize("density", [0.01, 1 / 3, 1.0])
@pytest.mark.parametrize("by_component", [True, False])
def test_sparse_lists_are_bit_identical(cp, density, by_component):
    k, d = 37, 2500
    dev = DeviceOps().sparse_lists(k, d, density, 42, 0x52500001, by_component)
    host = HostOps().sparse_lists(k, d, density, 42, 0x52500001, by_component)
    np.testing.assert_array_equal(cp.asnumpy(dev[0]), host[0])
    np.testing.assert_array_equal(cp.asnumpy(dev[1]), host[1])
