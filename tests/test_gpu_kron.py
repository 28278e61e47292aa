"""Kronecker algebra on the device (``rankcore._gpu.kron``), with NumPy standing in for cupy.

Compared with the Rust path (``_core.kron_apply`` / ``kron_eigh`` / ``kron_solve_eig`` /
``kron_logdet_eig``) and with the dense matrix ``reduce(np.kron, Ks)`` on small grids. The
products are the same mode products in the same order, so mat-vecs agree to ~100 eps of
``‖K‖‖x‖``; solves go through eigenvectors that LAPACK and faer compute differently (to
rounding over the spectral gap), so they are compared with the dense solve at 1e-10
relative to ``‖y‖/σ²`` in float64 (cond ≤ 1e3 here) and 1e-3 in float32; log-determinants
are sums of N logs in float64, 1e-12 relative.
"""

from __future__ import annotations

import functools

import numpy as np
import pytest

from rankcore import _core
from rankcore import kron
from rankcore._gpu import kron as gk

from test_gpu_tucker import Dev, fake_device, no_host_path  # noqa: F401  (fixtures)

_cpu_apply = _core.kron_apply


def _spd(n, seed, length=0.3):
    x = np.sort(np.random.default_rng(seed).random(n))
    return np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / length**2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_kron_apply_matches_the_rust_path(no_host_path, dtype):
    rng = np.random.default_rng(0)
    mats = [rng.standard_normal(s).astype(dtype) for s in ((4, 5), (3, 3), (6, 2))]
    xb = rng.standard_normal((3, 5 * 3 * 2)).astype(dtype)
    got = gk.kron_apply(mats, xb)
    assert got.dtype == dtype and got.shape == (3, 4 * 3 * 6)
    dense = functools.reduce(np.kron, [m.astype(np.float64) for m in mats])
    want = xb.astype(np.float64) @ dense.T
    tol = 1e-13 if dtype == np.float64 else 1e-5
    np.testing.assert_allclose(got, want, rtol=0, atol=tol * np.abs(want).max())
    np.testing.assert_allclose(got, _cpu_apply(mats, xb), rtol=0, atol=tol * np.abs(want).max())


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_solve_logdet_and_inverse_diagonal_against_dense(no_host_path, dtype):
    Ks = [_spd(n, s).astype(dtype) for n, s in ((5, 1), (4, 2), (6, 3))]
    qs, lams = gk.eigh(Ks)
    assert all(q.dtype == dtype for q in qs) and all(float(l.min()) >= 0 for l in lams)
    K = functools.reduce(np.kron, [k.astype(np.float64) for k in Ks])
    A = K + 0.1 * np.eye(len(K))
    y = np.random.default_rng(4).standard_normal((2, len(K))).astype(dtype)
    x = gk.kron_solve(qs, lams, 1.0, 0.1, y)
    want = np.linalg.solve(A, y.astype(np.float64).T).T
    tol = 1e-10 if dtype == np.float64 else 1e-3
    np.testing.assert_allclose(x, want, rtol=0, atol=tol * np.abs(want).max())
    ld = gk.kron_logdet(lams, 1.0, 0.1)
    assert ld == pytest.approx(np.linalg.slogdet(A)[1], rel=1e-12 if dtype == np.float64 else 1e-5)
    d = gk.kron_inv_diag(qs, lams, 1.0, 0.1)
    np.testing.assert_allclose(d, np.diag(np.linalg.inv(A)), rtol=tol)
    # scale multiplies K
    np.testing.assert_allclose(gk.kron_solve(qs, lams, 2.0, 0.1, y),
                               np.linalg.solve(2 * K + 0.1 * np.eye(len(K)), y.astype(np.float64).T).T,
                               rtol=0, atol=tol * np.abs(want).max())


def test_eigh_clamps_round_off_and_rejects_indefinite(no_host_path):
    x = np.linspace(0, 1, 40)
    K = np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / 0.5**2)  # numerically singular
    _, lams = gk.eigh([K])
    assert float(lams[0].min()) >= 0.0
    with pytest.raises(ValueError, match=r"Ks\[1\] is not positive semi-definite"):
        gk.eigh([K, np.diag([1.0, -1.0])])
    with pytest.raises(ValueError, match="noise"):
        gk.kron_logdet(lams, 1.0, 0.0)


def test_public_functions_route_device_arrays(fake_device, no_host_path):
    Ks = [_spd(n, s) for n, s in ((5, 1), (4, 2))]
    K = np.kron(*Ks)
    y = np.random.default_rng(5).standard_normal(20)
    dK = [fake_device(k) for k in Ks]
    np.testing.assert_allclose(kron.kron_matvec(dK, fake_device(y)), K @ y, rtol=1e-12)
    Y = np.random.default_rng(6).standard_normal((20, 3))
    np.testing.assert_allclose(kron.kron_matvec(dK, fake_device(Y)), K @ Y, rtol=1e-12)
    A = K + 0.2 * np.eye(20)
    np.testing.assert_allclose(kron.kron_solve(dK, fake_device(y), 0.2), np.linalg.solve(A, y), rtol=1e-10)
    assert kron.kron_logdet(dK, 0.2) == pytest.approx(np.linalg.slogdet(A)[1], rel=1e-12)
    xf, ldf = kron.kron_solve_logdet(dK, fake_device(y), 0.2)
    np.testing.assert_allclose(xf, np.linalg.solve(A, y), rtol=1e-10)
    assert ldf == pytest.approx(np.linalg.slogdet(A)[1], rel=1e-12)
    x32 = kron.kron_solve([fake_device(k.astype(np.float32)) for k in Ks], fake_device(y.astype(np.float32)), 0.2)
    assert x32.dtype == np.float32


def test_mixing_host_and_device_is_a_type_error(fake_device):
    Ks = [_spd(3, 1), _spd(2, 2)]
    with pytest.raises(TypeError, match=r"Ks\[0\] is a host ndarray"):
        kron.kron_matvec(Ks, fake_device(np.ones(6)))
    with pytest.raises(TypeError, match="cupy"):
        kron.kron_solve([fake_device(k) for k in Ks], np.ones(6), 0.1)
    with pytest.raises(ValueError, match=r"Ks\[0\] must be symmetric"):
        kron.kron_solve([fake_device(np.array([[1.0, 2.0], [0.0, 1.0]]))], fake_device(np.ones(2)), 0.1)
