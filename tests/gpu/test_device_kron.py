"""On the device: Kronecker mat-vec, solve and log-determinant on cupy against the CPU path.

Mat-vecs are the same mode products (1e-12 / 1e-5 of the largest entry); solves go through
cuSOLVER's vs faer's eigenvectors (agreeing to rounding over the spectral gap): 1e-9
relative in float64 for these well-conditioned (σ² = 0.1) systems; log-determinants 1e-12.
"""

from __future__ import annotations

import numpy as np
import pytest

from rankcore import kron_logdet, kron_matvec, kron_solve, kron_solve_logdet


def _spd(n, seed, length=0.2):
    x = np.sort(np.random.default_rng(seed).random(n))
    return np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / length**2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_kron_matches_cpu(cp, no_host_transfer, dtype):
    Ks = [_spd(n, s).astype(dtype) for n, s in ((40, 1), (30, 2), (20, 3))]
    y = np.random.default_rng(4).standard_normal((40 * 30 * 20, 2)).astype(dtype)
    dK, dy = [cp.asarray(k) for k in Ks], cp.asarray(y)
    with no_host_transfer():
        mv = kron_matvec(dK, dy)
        x = kron_solve(dK, dy, 0.1)
        ld = kron_logdet(dK, 0.1)
        xf, ldf = kron_solve_logdet(dK, dy, 0.1)
    assert isinstance(xf, cp.ndarray) and bool((xf == x).all()) and ldf == ld
    assert isinstance(mv, cp.ndarray) and mv.dtype == dtype and isinstance(x, cp.ndarray) and x.dtype == dtype
    want = kron_matvec(Ks, y)
    tol = 1e-12 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(cp.asnumpy(mv), want, rtol=0, atol=tol * np.abs(want).max())
    wx = kron_solve(Ks, y, 0.1)
    np.testing.assert_allclose(cp.asnumpy(x), wx, rtol=0, atol=(1e-9 if dtype == np.float64 else 1e-3) * np.abs(wx).max())
    assert ld == pytest.approx(kron_logdet(Ks, 0.1), rel=1e-12 if dtype == np.float64 else 1e-4)


def test_mixed_input_is_a_type_error(cp):
    with pytest.raises(TypeError, match="host"):
        kron_matvec([np.eye(3)], cp.ones(3))
