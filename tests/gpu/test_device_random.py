"""On the device: the CUDA Philox generator reproduces the Rust one.

Words (hence uniforms and signs) and the sparse-family lists must be bit-identical; normals
go through CUDA's ``log``/``cos`` (the host's are fdlibm's, vectorised) and must agree within
the sum of the two libraries' error bounds (6 ulp of the float64 value).
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
def test_normals_agree_within_two_ulp(cp, seed, row0, col0, shape):
    dev = cp.asnumpy(DeviceOps().normal(shape[0], shape[1], row0, col0, seed, 0, np.float64))
    host = _core.random_matrix("normal", seed, 0, row0, col0, shape[0], shape[1])
    # CUDA's log (1 ulp) and cos (2 ulp) against the host's fdlibm ones (1 ulp each): through
    # z = sqrt(-2 ln u1)·cos(x), 1 ulp from ln (halved by the root), 3 from cos, 2 from the
    # roundings of sqrt and the product.
    ulp = np.spacing(np.abs(host))
    assert np.all(np.abs(dev - host) <= 6 * ulp)
    dev32 = cp.asnumpy(DeviceOps().normal(shape[0], shape[1], row0, col0, seed, 0, np.float32))
    # Rounding the float64 value once: equal unless it sits on a float32 rounding boundary.
    assert np.all(np.abs(dev32 - host.astype(np.float32)) <= np.spacing(np.abs(host.astype(np.float32))))


@pytest.mark.parametrize("density", [0.01, 1 / 3, 1.0])
@pytest.mark.parametrize("by_component", [True, False])
def test_sparse_lists_are_bit_identical(cp, density, by_component):
    k, d = 37, 2500
    dev = DeviceOps().sparse_lists(k, d, density, 42, 0x52500001, by_component)
    host = HostOps().sparse_lists(k, d, density, 42, 0x52500001, by_component)
    np.testing.assert_array_equal(cp.asnumpy(dev[0]), host[0])
    np.testing.assert_array_equal(cp.asnumpy(dev[1]), host[1])
