"""FLoRA on the device (``rankcore._gpu.flora``), run with NumPy standing in for cupy.

Compared with the Rust path (``_core.flora_delta`` / ``_core.flora_delta_vjp``) on the same
data. Both apply the same products in the same order (ΔW: the flop-optimal chain; the VJP:
the same modes on the gradient's side and on the core's, the same leave-one-out split),
differing only in how each GEMM
sums, so results agree to ~100 eps of the magnitudes involved: 1e-13 (float64) and 1e-5
(float32) relative to the largest entry of the exact result (computed in float64 by einsum).
Routing from the public functions is checked with the test_gpu_tucker :class:`Dev` dress.
"""

from __future__ import annotations

import numpy as np
import pytest

from rankcore import _core, flora
from rankcore._gpu import flora as gf

from test_gpu_tucker import Dev, fake_device, no_host_path  # noqa: F401  (fixtures)

SHAPES = [((6, 5), (2, 3)), ((8, 6, 3, 3), (3, 2, 2, 3)), ((4, 3, 2, 3, 2), (2, 2, 1, 2, 2)),
          ((32, 16, 3, 3), (4, 4, 3, 3)), ((7,), (3,)),
          # factors that widen (r > I) or are square only: every mode applied to the core
          ((3, 2, 4), (4, 2, 5))]
TOL = {np.float64: 1e-13, np.float32: 1e-5}
_cpu_delta, _cpu_vjp = _core.flora_delta, _core.flora_delta_vjp  # bound before any patching


def _adapter(shape, ranks, dtype, seed=0):
    rng = np.random.default_rng(seed)
    core = rng.standard_normal(ranks).astype(dtype)
    factors = [rng.standard_normal((s, r)).astype(dtype) for s, r in zip(shape, ranks)]
    return core, factors


def _einsum_delta(core, factors, scale):
    lo, up = "abcdefgh", "ABCDEFGH"
    n = core.ndim
    spec = lo[:n] + "," + ",".join(f"{up[k]}{lo[k]}" for k in range(n)) + "->" + up[:n]
    return scale * np.einsum(spec, core.astype(np.float64), *[f.astype(np.float64) for f in factors])


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,ranks", SHAPES)
def test_delta_matches_the_rust_path(no_host_path, shape, ranks, dtype):
    core, factors = _adapter(shape, ranks, dtype)
    got = gf.delta(core, factors, 0.7)
    assert got.dtype == dtype and got.shape == tuple(shape)
    want = _cpu_delta(core, factors, 0.7)
    exact = _einsum_delta(core, factors, 0.7)
    big = np.abs(exact).max()
    np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype] * big)
    np.testing.assert_allclose(got, exact, rtol=0, atol=TOL[dtype] * big)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape,ranks", SHAPES)
def test_delta_vjp_matches_the_rust_path(no_host_path, shape, ranks, dtype):
    core, factors = _adapter(shape, ranks, dtype, seed=1)
    grad = np.random.default_rng(2).standard_normal(shape).astype(dtype)
    gc, gfs = gf.delta_vjp(core, factors, grad, 1.3)
    cc, cfs = _cpu_vjp(core, factors, grad, 1.3)
    assert gc.dtype == dtype and gc.shape == core.shape
    # exact gradients in float64 by einsum: ⟨ΔW, R⟩ is linear in each argument
    g64 = grad.astype(np.float64)
    scale_c = np.abs(cc).max()
    np.testing.assert_allclose(gc, cc, rtol=0, atol=TOL[dtype] * scale_c * 10)
    for a, b, f in zip(gfs, cfs, factors):
        assert a.dtype == dtype and a.shape == f.shape
        np.testing.assert_allclose(a, b, rtol=0, atol=TOL[dtype] * np.abs(b).max() * 10)
    # and ⟨∂L/∂G, G⟩ = ⟨R, ΔW⟩ (Euler: ΔW is linear in G)
    lhs = float(np.sum(gc.astype(np.float64) * core))
    rhs = float(np.sum(g64 * _einsum_delta(core, factors, 1.3)))
    assert lhs == pytest.approx(rhs, rel=TOL[dtype] * 100, abs=TOL[dtype] * 100 * abs(rhs))


def test_delta_vjp_matches_finite_differences(no_host_path):
    core, factors = _adapter((5, 4, 3), (2, 3, 2), np.float64, seed=3)
    R = np.random.default_rng(4).standard_normal((5, 4, 3))
    gc, gfs = gf.delta_vjp(core, factors, R, 0.5)

    def loss(c, fs):
        return float(np.sum(_einsum_delta(c, fs, 0.5) * R))

    h = 1e-6
    for idx in np.ndindex(core.shape):
        e = np.zeros_like(core)
        e[idx] = h
        fd = (loss(core + e, factors) - loss(core - e, factors)) / (2 * h)
        assert gc[idx] == pytest.approx(fd, rel=1e-7, abs=1e-8)
    for k, f in enumerate(factors):
        for idx in np.ndindex(f.shape):
            e = np.zeros_like(f)
            e[idx] = h
            fp = [g + e if j == k else g for j, g in enumerate(factors)]
            fm = [g - e if j == k else g for j, g in enumerate(factors)]
            fd = (loss(core, fp) - loss(core, fm)) / (2 * h)
            assert gfs[k][idx] == pytest.approx(fd, rel=1e-7, abs=1e-8)


def test_public_functions_route_device_arrays(fake_device, no_host_path):
    core, factors = _adapter((8, 6, 3, 3), (3, 2, 2, 3), np.float32, seed=5)
    dcore, dfs = fake_device(core), [fake_device(f) for f in factors]
    d = flora.delta(dcore, dfs, 0.5)
    np.testing.assert_allclose(d, _cpu_delta(core, factors, 0.5), atol=1e-5 * np.abs(d).max())
    assert d.dtype == np.float32
    R = np.ones(d.shape, np.float32)
    gc, gfs = flora.delta_vjp(dcore, dfs, fake_device(R), 0.5)
    cc, cfs = _cpu_vjp(core, factors, R, 0.5)
    np.testing.assert_allclose(gc, cc, atol=1e-5 * np.abs(cc).max())
    w = np.random.default_rng(6).standard_normal(d.shape).astype(np.float32)
    merged = flora.merge(fake_device(w), dcore, dfs, 0.5)
    np.testing.assert_allclose(merged, w + d, rtol=1e-6)
    back = flora.unmerge(fake_device(np.array(merged)), dcore, dfs, 0.5)
    np.testing.assert_allclose(back, w, atol=1e-5 * np.abs(d).max())
    out = fake_device(np.empty_like(w))
    assert flora.merge(fake_device(w), dcore, dfs, 0.5, out=out) is out
    # init on the device: the CPU's numbers (HostOps stands in for the Philox kernel)
    params = flora.init(d.shape, (3, 2, 2, 3), random_state=3, like=fake_device(w))
    host = flora.init(d.shape, (3, 2, 2, 3), random_state=3)
    assert not params.core.any() and params.core.dtype == np.float32
    for a, b in zip(params.factors, host.factors):
        np.testing.assert_allclose(a, b, rtol=2e-7)
    # compress through the device Tucker path
    c = flora.compress(fake_device(_cpu_delta(core, factors, 1.0).astype(np.float64)), (3, 2, 2, 3))
    assert c.rel_error < 1e-6 and c.ranks == (3, 2, 2, 3)


def test_mixing_host_and_device_is_a_type_error(fake_device):
    core, factors = _adapter((6, 5), (2, 3), np.float64)
    with pytest.raises(TypeError, match=r"factors\[0\] is a host ndarray"):
        flora.delta(fake_device(core), factors)
    with pytest.raises(TypeError, match="cupy"):
        flora.delta(core, [fake_device(f) for f in factors])
    with pytest.raises(TypeError, match="grad_delta is a host ndarray"):
        flora.delta_vjp(fake_device(core), [fake_device(f) for f in factors], np.ones((6, 5)))
    with pytest.raises(TypeError, match="core is a host ndarray"):
        flora.merge(fake_device(np.ones((6, 5))), core, factors)
    with pytest.raises(ValueError, match="grad_delta must have"):
        flora.delta_vjp(fake_device(core), [fake_device(f) for f in factors], fake_device(np.ones((5, 6))))
