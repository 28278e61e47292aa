"""kron_matvec, kron_solve and kron_logdet against dense numpy computations of the explicit
Kronecker product (functools.reduce(np.kron, Ks))."""

from __future__ import annotations

from functools import reduce

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import rankcore
from rankcore import kron_logdet, kron_matvec, kron_solve, kron_solve_logdet


def spd(n, ls, seed=0, dtype=np.float64):
    x = np.sort(np.random.default_rng(seed).uniform(0, 1, n))
    return np.exp(-0.5 * (x[:, None] - x[None, :]) ** 2 / ls**2).astype(dtype)


def dense(Ks):
    return reduce(np.kron, [np.asarray(K, np.float64) for K in Ks])


@settings(max_examples=25, deadline=None)
@given(
    shape=st.lists(st.tuples(st.integers(1, 5), st.integers(1, 5)), min_size=1, max_size=3),
    k=st.integers(0, 3),
    seed=st.integers(0, 1000),
    dtype=st.sampled_from([np.float32, np.float64]),
)
def test_matvec_matches_dense(shape, k, seed, dtype):
    rng = np.random.default_rng(seed)
    Ks = [rng.standard_normal(s).astype(dtype) for s in shape]
    n = int(np.prod([s[1] for s in shape]))
    x = rng.standard_normal((n, k) if k else n).astype(dtype)
    Ks0, x0 = [K.copy() for K in Ks], x.copy()
    out = kron_matvec(Ks, x)
    ref = dense(Ks) @ x.astype(np.float64)
    assert out.dtype == dtype and out.shape == ref.shape
    # float32: each output is a sum of Π n_d ≤ 125 products formed in D ≤ 3 stages.
    tol = 1e-12 if dtype == np.float64 else 2e-5
    np.testing.assert_allclose(out, ref, rtol=tol, atol=tol * max(1.0, np.abs(ref).max()))
    assert all(np.array_equal(a, b) for a, b in zip(Ks, Ks0)) and np.array_equal(x, x0)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_solve_and_logdet_match_dense(dtype):
    Ks = [spd(6, 0.3, 1, dtype), spd(5, 0.5, 2, dtype), spd(4, 0.2, 3, dtype)]
    noise = 0.05
    A = dense(Ks) + noise * np.eye(120)
    y = np.random.default_rng(0).standard_normal((120, 2)).astype(dtype)
    x = kron_solve(Ks, y, noise)
    ref = np.linalg.solve(A, y.astype(np.float64))
    # cond(A) ≤ (‖K‖ + σ²)/σ² ≈ 2000 here: float32 loses about 3 digits of its 7.
    tol = 1e-10 if dtype == np.float64 else 2e-3
    assert x.dtype == dtype
    np.testing.assert_allclose(x, ref, rtol=tol, atol=tol * np.abs(ref).max())
    np.testing.assert_allclose(kron_solve(Ks, y[:, 0], noise), ref[:, 0], rtol=tol, atol=tol * np.abs(ref).max())
    ld = kron_logdet(Ks, noise)
    sign, ref_ld = np.linalg.slogdet(A)
    assert sign > 0
    assert abs(ld - ref_ld) <= (1e-10 if dtype == np.float64 else 1e-4) * abs(ref_ld)
    # the fused call: the same factorisation, so the same bits as the two calls
    for rhs in (y, y[:, 0]):
        xf, ldf = kron_solve_logdet(Ks, rhs, noise)
        assert xf.dtype == dtype and xf.shape == rhs.shape
        np.testing.assert_array_equal(xf, kron_solve(Ks, rhs, noise))
        assert ldf == ld


def test_convention_is_c_order():
    """(K1 ⊗ K2) vec_C(Y) = vec_C(K1 Y K2ᵀ)."""
    rng = np.random.default_rng(4)
    K1, K2, Y = rng.standard_normal((3, 4)), rng.standard_normal((5, 2)), rng.standard_normal((4, 2))
    np.testing.assert_allclose(kron_matvec([K1, K2], Y.ravel()), (K1 @ Y @ K2.T).ravel(), rtol=1e-13)


def test_threads_bit_identical():
    Ks = [spd(40, 0.3, 1), spd(33, 0.5, 2), spd(21, 0.2, 3)]
    y = np.random.default_rng(0).standard_normal(40 * 33 * 21)
    with rankcore.threads(1):
        a, la, ma = kron_solve(Ks, y, 0.1), kron_logdet(Ks, 0.1), kron_matvec(Ks, y)
    with rankcore.threads(2):
        b, lb, mb = kron_solve(Ks, y, 0.1), kron_logdet(Ks, 0.1), kron_matvec(Ks, y)
    assert np.array_equal(a, b) and la == lb and np.array_equal(ma, mb)


def test_rank_deficient_factor_is_clamped():
    """A rank-one factor has round-off eigenvalues of either sign; clamping keeps logdet real."""
    v = np.linspace(0, 1, 6)
    Ks = [np.outer(v, v), spd(4, 0.4)]
    A = dense(Ks) + 1e-3 * np.eye(24)
    assert abs(kron_logdet(Ks, 1e-3) - np.linalg.slogdet(A)[1]) < 1e-8 * abs(np.linalg.slogdet(A)[1])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_indefinite_factor_raises(dtype):
    # K1 has eigenvalues -1 and 3; clamping -1 to zero used to give a solve off by 6.
    K1 = np.array([[1.0, 2.0], [2.0, 1.0]], dtype=dtype)
    I2 = np.eye(2, dtype=dtype)
    y = np.arange(4.0, dtype=dtype)
    for f in (lambda: kron_solve([I2, K1], y, 0.5), lambda: kron_logdet([I2, K1], 0.5),
              lambda: kron_solve_logdet([I2, K1], y, 0.5)):
        with pytest.raises(ValueError, match=r"Ks\[1\] is not positive semi-definite: eigenvalue -1\.0"):
            f()
    # A single indefinite factor is named by its index too.
    with pytest.raises(ValueError, match=r"Ks\[0\] is not positive semi-definite"):
        kron_solve([K1], y[:2], 0.5)


def test_bad_inputs():
    K = spd(4, 0.3)
    with pytest.raises(ValueError, match="noise"):
        kron_solve([K], np.ones(4), 0.0)
    with pytest.raises(ValueError, match="noise"):
        kron_logdet([K], -1.0)
    with pytest.raises(TypeError, match="noise"):
        kron_solve([K], np.ones(4), "a")
    with pytest.raises(ValueError, match="rows"):
        kron_solve([K, K], np.ones(5), 0.1)
    with pytest.raises(ValueError, match="square"):
        kron_solve([np.ones((3, 4))], np.ones(4), 0.1)
    with pytest.raises(ValueError, match="symmetric"):
        kron_solve([np.triu(K) + 0.1], np.ones(4), 0.1)
    with pytest.raises(ValueError, match="noise"):
        kron_solve_logdet([K], np.ones(4), 0.0)
    with pytest.raises(ValueError, match="rows"):
        kron_solve_logdet([K, K], np.ones(5), 0.1)
    with pytest.raises(ValueError, match="symmetric"):
        kron_solve_logdet([np.triu(K) + 0.1], np.ones(4), 0.1)
    with pytest.raises(TypeError, match="list"):
        kron_matvec([], np.ones(4))
    with pytest.raises(TypeError, match="list"):
        kron_matvec(K, np.ones(4))
    with pytest.raises(ValueError):
        kron_matvec([K], np.array([1.0, np.nan, 0.0, 1.0]))
    with pytest.raises(ValueError, match="Ks\\[0\\]"):
        kron_matvec([np.full((2, 2), np.inf)], np.ones(2))
