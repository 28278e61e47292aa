"""On the device: FLoRA's ΔW, its VJP, merge and compress on cupy against the CPU path.

Both apply the same products in the same order, so ΔW and the gradients agree to ~100 eps
of the largest entry (1e-12 in float64, 1e-5 in float32).
"""

from __future__ import annotations

import numpy as np
import pytest

from rankcore import flora

TOL = {np.float64: 1e-12, np.float32: 1e-5}


def _adapter(shape, ranks, dtype, seed=0):
    rng = np.random.default_rng(seed)
    return (rng.standard_normal(ranks).astype(dtype),
            [rng.standard_normal((s, r)).astype(dtype) for s, r in zip(shape, ranks)])


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,ranks", [((64, 32), (8, 4)), ((128, 64, 3, 3), (16, 8, 3, 3)),
                                         ((32, 16, 3, 3, 3), (4, 4, 2, 3, 3))])
def test_delta_and_vjp_match_cpu(cp, no_host_transfer, dtype, shape, ranks):
    core, factors = _adapter(shape, ranks, dtype)
    grad = np.random.default_rng(1).standard_normal(shape).astype(dtype)
    C, Fs, G = cp.asarray(core), [cp.asarray(f) for f in factors], cp.asarray(grad)
    with no_host_transfer():
        d = flora.delta(C, Fs, 0.5)
        gc, gfs = flora.delta_vjp(C, Fs, G, 0.5)
    assert isinstance(d, cp.ndarray) and d.dtype == dtype
    want = flora.delta(core, factors, 0.5)
    np.testing.assert_allclose(cp.asnumpy(d), want, rtol=0, atol=TOL[dtype] * np.abs(want).max())
    wc, wfs = flora.delta_vjp(core, factors, grad, 0.5)
    np.testing.assert_allclose(cp.asnumpy(gc), wc, rtol=0, atol=10 * TOL[dtype] * np.abs(wc).max())
    for a, b in zip(gfs, wfs):
        assert isinstance(a, cp.ndarray) and a.dtype == dtype
        np.testing.assert_allclose(cp.asnumpy(a), b, rtol=0, atol=10 * TOL[dtype] * np.abs(b).max())


def test_init_merge_compress(cp, no_host_transfer):
    shape = (64, 32, 3, 3)
    w = cp.asarray(np.random.default_rng(2).standard_normal(shape).astype(np.float32))
    with no_host_transfer():
        core, factors, scale = flora.init(shape, (8, 4, 3, 3), random_state=5, like=w)
    host = flora.init(shape, (8, 4, 3, 3), random_state=5)
    for a, b in zip(factors, host.factors):
        np.testing.assert_allclose(cp.asnumpy(a), b, rtol=1e-6, atol=1e-7)
    core = cp.asarray(np.random.default_rng(3).standard_normal((8, 4, 3, 3)).astype(np.float32))
    with no_host_transfer():
        merged = flora.merge(w, core, factors, 0.3)
        back = flora.unmerge(merged, core, factors, 0.3)
        d = flora.delta(core, factors, 0.3)
        c = flora.compress(d, (8, 4, 3, 3), scale=0.3)
    np.testing.assert_allclose(cp.asnumpy(back), cp.asnumpy(w), atol=1e-5 * float(cp.abs(d).max()))
    assert c.rel_error < 1e-3 and isinstance(c.core, cp.ndarray)
    ref = flora.compress(cp.asnumpy(d), (8, 4, 3, 3), scale=0.3)
    assert c.lora_rank == ref.lora_rank and c.lora_rel_error == pytest.approx(ref.lora_rel_error, rel=1e-3)


def test_mixed_input_is_a_type_error(cp):
    core, factors = _adapter((6, 5), (2, 3), np.float64)
    with pytest.raises(TypeError, match="host"):
        flora.delta(cp.asarray(core), factors)
