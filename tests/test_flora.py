"""FLoRA adapters: ΔW, its vector-Jacobian product, merging, compression."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rankcore import flora

RNG = np.random.default_rng(7)


def ref_delta(core, factors, scale):
    """ΔW with einsum, spelled out per order."""
    letters = "abcdefgh"
    upper = "ABCDEFGH"
    n = core.ndim
    spec = letters[:n] + "," + ",".join(f"{upper[k]}{letters[k]}" for k in range(n))
    return scale * np.einsum(spec + "->" + upper[:n], core, *factors)


def random_adapter(shape, ranks, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    core = rng.standard_normal(ranks).astype(dtype)
    factors = [rng.standard_normal((s, r)).astype(dtype) for s, r in zip(shape, ranks)]
    return core, factors


SHAPES = [((6, 5), (2, 3)), ((8, 6, 3, 3), (3, 2, 2, 3)), ((4, 3, 2, 3, 2), (2, 2, 1, 2, 2))]


@pytest.mark.parametrize("shape,ranks", SHAPES)
def test_init_gives_exact_zero_and_paper_scale(shape, ranks):
    core, factors, scale = flora.init(shape, ranks, scale=2.0, random_state=0)
    assert core.shape == tuple(ranks) and not core.any()
    assert [f.shape for f in factors] == [(s, r) for s, r in zip(shape, ranks)]
    d = flora.delta(core, factors, scale)
    assert d.shape == tuple(shape) and d.dtype == np.float32
    assert np.all(d == 0)
    # reproducible, and distinct seeds differ
    _, f2, _ = flora.init(shape, ranks, random_state=0)
    np.testing.assert_array_equal(factors[0], f2[0])
    _, f3, _ = flora.init(shape, ranks, random_state=1)
    assert all(not np.array_equal(a, b) for a, b in zip(factors, f3))


def test_init_factor_variance():
    _, factors, _ = flora.init((4000, 3000), (8, 8), random_state=1, dtype=np.float64)
    for f in factors:
        assert abs(f.var() - 1 / 16) < 0.05 / 16


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape,ranks", SHAPES)
def test_delta_matches_einsum(shape, ranks, dtype):
    core, factors = random_adapter(shape, ranks, dtype)
    before = [core.copy()] + [f.copy() for f in factors]
    d = flora.delta(core, factors, 0.5)
    assert d.dtype == dtype
    want = ref_delta(core.astype(np.float64), [f.astype(np.float64) for f in factors], 0.5)
    tol = 1e-5 if dtype == np.float32 else 1e-13
    np.testing.assert_allclose(d, want, rtol=tol, atol=tol * np.abs(want).max())
    for a, b in zip([core] + factors, before):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("shape,ranks", SHAPES)
def test_vjp_matches_finite_differences(shape, ranks):
    core, factors = random_adapter(shape, ranks, seed=3)
    scale = 0.7
    r = RNG.standard_normal(shape)

    def loss(c, fs):
        return float(np.sum(ref_delta(c, fs, scale) * r))

    gc, gf = flora.delta_vjp(core, factors, r, scale)
    h = 1e-6
    fd = np.zeros_like(core)
    for idx in np.ndindex(core.shape):
        cp, cm = core.copy(), core.copy()
        cp[idx] += h
        cm[idx] -= h
        fd[idx] = (loss(cp, factors) - loss(cm, factors)) / (2 * h)
    np.testing.assert_allclose(gc, fd, atol=1e-6)
    for k in range(len(factors)):
        fdk = np.zeros_like(factors[k])
        for idx in np.ndindex(factors[k].shape):
            fp = [f.copy() for f in factors]
            fm = [f.copy() for f in factors]
            fp[k][idx] += h
            fm[k][idx] -= h
            fdk[idx] = (loss(core, fp) - loss(core, fm)) / (2 * h)
        np.testing.assert_allclose(gf[k], fdk, atol=1e-6)


def ref_vjp(core, factors, g, scale):
    """Both gradients by einsum in float64: ``∂L/∂G = s·R ×ₖ Uₖᵀ`` and ``∂L/∂Uₖ`` the
    contraction of ``R`` with the core expanded in every mode but ``k``."""
    n = core.ndim
    big, small = "ABCDEFGH"[:n], "abcdefgh"[:n]
    c, r = core.astype(np.float64), g.astype(np.float64)
    us = [f.astype(np.float64) for f in factors]
    spec = ",".join([big] + [big[k] + small[k] for k in range(n)]) + "->" + small
    want_c = scale * np.einsum(spec, r, *us, optimize=True)
    want_u = []
    for k in range(n):
        ops = [r, c] + [us[j] for j in range(n) if j != k]
        subs = [big, small] + [big[j] + small[j] for j in range(n) if j != k]
        want_u.append(
            scale * np.einsum(",".join(subs) + "->" + big[k] + small[k], *ops, optimize=True)
        )
    return want_c, want_u


@st.composite
def adapters(draw):
    """Shapes and ranks of order 1-5 whose factors shrink (r < I), are square or widen
    (r > I), in any mix: each kind takes another route through ``delta_vjp``."""
    n = draw(st.integers(1, 5))
    shape = tuple(draw(st.integers(1, 7)) for _ in range(n))
    ranks = tuple(draw(st.integers(1, 5)) for _ in range(n))
    return shape, ranks, draw(st.integers(0, 2**32 - 1))


@settings(max_examples=60, deadline=None)
@given(adapters(), st.sampled_from([np.float32, np.float64]), st.booleans())
def test_vjp_matches_einsum_on_any_shape(problem, dtype, fortran):
    shape, ranks, seed = problem
    core, factors = random_adapter(shape, ranks, dtype, seed=seed)
    g = np.random.default_rng(seed + 1).standard_normal(shape).astype(dtype)
    if fortran:
        core, g = np.asfortranarray(core), np.asfortranarray(g)
        factors = [np.asfortranarray(f) for f in factors]
    before = [core.copy(), g.copy()] + [f.copy() for f in factors]
    gc, gf = flora.delta_vjp(core, factors, g, 0.6)
    want_c, want_u = ref_vjp(core, factors, g, 0.6)
    # float32: each output sums at most 7^5 products of O(1) terms; 1e-4 of the largest
    tol = 1e-4 if dtype == np.float32 else 1e-11
    assert gc.shape == core.shape and gc.dtype == dtype
    np.testing.assert_allclose(gc, want_c, rtol=tol, atol=tol * max(1, np.abs(want_c).max()))
    for k, (a, b) in enumerate(zip(gf, want_u)):
        assert a.shape == factors[k].shape and a.dtype == dtype
        np.testing.assert_allclose(a, b, rtol=tol, atol=tol * max(1, np.abs(b).max()))
    for a, b in zip([core, g] + factors, before):
        np.testing.assert_array_equal(a, b)


def test_vjp_float32_and_layouts():
    core, factors = random_adapter((16, 8, 3, 3), (4, 4, 3, 3), np.float32, seed=4)
    g = RNG.standard_normal((16, 8, 3, 3)).astype(np.float32)
    a = flora.delta_vjp(core, factors, g, 1.0)
    b = flora.delta_vjp(np.asfortranarray(core), [np.asfortranarray(f) for f in factors],
                        np.asfortranarray(g), 1.0)
    assert a[0].dtype == np.float32 and all(x.dtype == np.float32 for x in a[1])
    # against an einsum reference in float64: dcore = g x_k U_k^T; dU_k contracts g with
    # the core expanded in every other mode
    c64, g64 = core.astype(np.float64), g.astype(np.float64)
    u64 = [f.astype(np.float64) for f in factors]
    want_c = np.einsum("ijkl,ia,jb,kc,ld->abcd", g64, *u64, optimize=True)
    np.testing.assert_allclose(a[0], want_c, rtol=1e-4, atol=1e-4 * np.abs(want_c).max())
    big, small = "ijkl", "abcd"
    for k in range(4):
        ops = [g64, c64] + [u64[j] for j in range(4) if j != k]
        subs = [big, small] + [big[j] + small[j] for j in range(4) if j != k]
        want_u = np.einsum(",".join(subs) + "->" + big[k] + small[k], *ops, optimize=True)
        np.testing.assert_allclose(a[1][k], want_u, rtol=1e-4, atol=1e-4 * np.abs(want_u).max())
    np.testing.assert_allclose(a[0], b[0], rtol=1e-5, atol=1e-4)
    for x, y in zip(a[1], b[1]):
        np.testing.assert_allclose(x, y, rtol=1e-5, atol=1e-4)


def test_merge_unmerge_round_trip_and_inputs_unchanged():
    w = RNG.standard_normal((8, 6, 3, 3))
    core, factors = random_adapter((8, 6, 3, 3), (3, 2, 2, 3), seed=5)
    w0 = w.copy()
    merged = flora.merge(w, core, factors, 0.3)
    np.testing.assert_array_equal(w, w0)
    np.testing.assert_allclose(merged, w + ref_delta(core, factors, 0.3), atol=1e-13)
    back = flora.unmerge(merged, core, factors, 0.3)
    np.testing.assert_allclose(back, w, atol=1e-13)
    # in place only when asked
    res = flora.merge(w, core, factors, 0.3, out=w)
    assert res is w
    np.testing.assert_allclose(w, merged, atol=0)
    flora.unmerge(w, core, factors, 0.3, out=w)
    np.testing.assert_allclose(w, w0, atol=1e-13)


def test_compress_exact_low_rank_is_exact():
    core, factors = random_adapter((16, 12, 3, 3), (3, 2, 2, 2), seed=6)
    d = ref_delta(core, factors, 1.0)
    c = flora.compress(d, (3, 2, 2, 2), scale=2.0)
    assert c.rel_error < 1e-7
    np.testing.assert_allclose(flora.delta(c.core, c.factors, c.scale), d, atol=1e-10 * np.abs(d).max())
    assert c.n_params == 3 * 2 * 2 * 2 + 16 * 3 + 12 * 2 + 3 * 2 + 3 * 2
    assert c.lora_n_params <= max(c.n_params, 16 + 12 * 9)
    assert 0 <= c.lora_rel_error <= 1


def test_compress_tol():
    core, factors = random_adapter((10, 8, 3, 3), (3, 3, 2, 2), seed=8)
    d = ref_delta(core, factors, 1.0) + 1e-3 * RNG.standard_normal((10, 8, 3, 3))
    c = flora.compress(d, tol=0.05)
    err = np.linalg.norm(flora.delta(*c) - d) / np.linalg.norm(d)
    assert err <= 0.05 and abs(err - c.rel_error) < 1e-6


def test_compress_flags_lora_over_budget():
    d = RNG.standard_normal((64, 32, 3, 3))
    # FLoRA (1,1,1,1): 1 + 64 + 32 + 3 + 3 = 103 numbers; rank-1 LoRA needs 64 + 288 = 352
    c = flora.compress(d, (1, 1, 1, 1))
    assert c.n_params == 103 and c.lora_rank == 1 and c.lora_n_params == 352
    assert c.lora_over_budget
    c = flora.compress(d, (8, 8, 2, 2))
    assert c.lora_n_params <= c.n_params and not c.lora_over_budget


def test_chain_order_shrinks_first():
    # expanding a 2x2x2 core to (100, 2, 50): the mode that grows least comes first
    assert flora.chain_order((2, 2, 2), [(0, 100), (1, 2), (2, 50)])[0] == 1


def test_bad_inputs():
    with pytest.raises(ValueError, match="ranks"):
        flora.init((4, 3), (5, 1))
    with pytest.raises(ValueError, match="ranks"):
        flora.init((4, 3), (0, 1))
    with pytest.raises(ValueError, match="ranks"):
        flora.init((4, 3), (1, 1, 1))
    with pytest.raises(ValueError, match="weight_shape"):
        flora.init((2,) * 9, 1)
    core, factors = random_adapter((6, 5), (2, 3))
    with pytest.raises(ValueError, match="chain"):
        flora.delta(core, [factors[0], factors[0]])
    with pytest.raises(ValueError, match="factors"):
        flora.delta(core, factors[:1])
    with pytest.raises(ValueError, match="grad_delta"):
        flora.delta_vjp(core, factors, np.ones((5, 6)))
    bad = core.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        flora.delta(bad, factors)
    # values are checked by the core on the host path: every argument, named, NaN before inf
    for k in range(2):
        for value, what in ((np.nan, "NaN"), (np.inf, "infinity"), (-np.inf, "infinity")):
            fs = [f.copy() for f in factors]
            fs[k][-1, -1] = value
            before = fs[k].copy()
            with pytest.raises(ValueError, match=rf"factors\[{k}\] contains {what}"):
                flora.delta(core, fs)
            with pytest.raises(ValueError, match=rf"factors\[{k}\] contains {what}"):
                flora.delta_vjp(core, fs, np.ones((6, 5)))
            np.testing.assert_array_equal(fs[k], before)
    both = core.copy()
    both[0, 0], both[1, 1] = np.inf, np.nan
    with pytest.raises(ValueError, match="core contains NaN"):
        flora.delta(both, factors)
    with pytest.raises(ValueError, match="core contains infinity"):
        flora.delta_vjp(np.where(np.isnan(both), 0, both), factors, np.ones((6, 5)))
    grad = np.ones((6, 5), dtype=np.float32)
    grad[2, 3] = np.inf
    with pytest.raises(ValueError, match="grad_delta contains infinity"):
        flora.delta_vjp(core, factors, grad)
    with pytest.raises(ValueError, match="weight"):
        flora.merge(np.ones((6, 4)), core, factors)
    with pytest.raises(ValueError, match="ranks or tol"):
        flora.compress(np.ones((6, 5)))


def test_cupy_like_input_goes_to_the_device_path():
    class FakeCupy:
        __module__ = "cupy"

    # routed to rankcore._gpu.flora, whose device checks reject a non-array
    with pytest.raises(TypeError, match="core must be an array"):
        flora.delta(FakeCupy(), [])
    with pytest.raises(TypeError, match="core must be an array"):
        flora.delta_vjp(FakeCupy(), [], None)


def test_torch_wrappers():
    torch = pytest.importorskip("torch")
    from rankcore.flora import torch as ft

    torch.manual_seed(0)
    conv = torch.nn.Conv2d(8, 6, 3, groups=2, padding=1)
    layer = ft.Conv(conv, (3, 2, 3, 3))
    x = torch.randn(2, 8, 5, 5)
    y0 = conv(x)
    torch.testing.assert_close(layer(x), y0)  # zero change at init
    with torch.no_grad():
        layer.flora.core.normal_()
    d = layer.delta_weight().detach().numpy().astype(np.float64)
    fs = [f.detach().numpy().astype(np.float64) for f in layer.flora.factors]
    np.testing.assert_allclose(d, ref_delta(layer.flora.core.detach().numpy(), fs, 1.0), rtol=1e-4, atol=1e-5)
    y = layer(x)
    y.sum().backward()
    assert layer.flora.core.grad is not None and conv.weight.grad is None
    layer.merge()
    torch.testing.assert_close(layer(x), y.detach(), rtol=1e-4, atol=1e-4)
    layer.unmerge()
    lin = ft.wrap(torch.nn.Linear(5, 4), (2, 2))
    emb = ft.wrap(torch.nn.Embedding(10, 4), (3, 2))
    assert lin(torch.randn(3, 5)).shape == (3, 4)
    assert emb(torch.tensor([1, 2])).shape == (2, 4)


def _torch_layer(ft, torch, base, ranks, scale):
    """A wrapper in float64 with a random (non-zero) core, so ΔW ≠ 0."""
    layer = ft.wrap(base.double(), ranks, scale=scale)
    with torch.no_grad():
        layer.flora.core.normal_()
    return layer


def _numpy_adapter(layer):
    core = layer.flora.core.detach().numpy()
    return core, [f.detach().numpy() for f in layer.flora.factors], layer.flora.scale


@pytest.mark.parametrize("kind", ["conv1d", "conv2d_groups", "conv3d", "linear", "embedding"])
def test_torch_wrapper_forward_is_base_plus_delta(kind):
    torch = pytest.importorskip("torch")
    from torch.nn import functional as F

    from rankcore.flora import torch as ft

    torch.manual_seed(1)
    nn = torch.nn
    base, ranks, x = {
        "conv1d": (nn.Conv1d(4, 6, 3, padding=1), (2, 3, 2), torch.randn(2, 4, 7)),
        "conv2d_groups": (nn.Conv2d(8, 6, 3, groups=2, stride=2), (3, 2, 3, 2), torch.randn(2, 8, 7, 7)),
        "conv3d": (nn.Conv3d(3, 4, 2), (2, 2, 2, 1, 2), torch.randn(1, 3, 4, 4, 4)),
        "linear": (nn.Linear(5, 4), (2, 3), torch.randn(3, 5)),
        "embedding": (nn.Embedding(10, 4, padding_idx=0), (3, 2), torch.tensor([[0, 3], [9, 3]])),
    }[kind]
    w0 = base.weight.detach().double().clone()
    layer = _torch_layer(ft, torch, base, ranks, scale=0.5)
    if x.is_floating_point():
        x = x.double()
    core, factors, scale = _numpy_adapter(layer)
    w = torch.from_numpy(w0.numpy() + ref_delta(core, factors, scale))
    if kind == "linear":
        want = F.linear(x, w, base.bias)
    elif kind == "embedding":
        want = w[x]
    else:
        want = base._conv_forward(x, w, base.bias)
    got = layer(x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    # merge folds the same ΔW into the weight; unmerge restores it to rounding
    layer.merge()
    layer.merge()  # idempotent
    torch.testing.assert_close(layer(x), want, rtol=1e-12, atol=1e-12)
    layer.unmerge()
    torch.testing.assert_close(base.weight.detach(), w0, rtol=0, atol=1e-14)
    torch.testing.assert_close(layer(x), got, rtol=1e-12, atol=1e-12)


def test_torch_wrapper_gradients_match_delta_vjp():
    # autograd through the wrapper's tensordot chain must agree with our analytic delta_vjp
    torch = pytest.importorskip("torch")
    from rankcore.flora import torch as ft

    torch.manual_seed(2)
    base = torch.nn.Conv2d(6, 8, 3, groups=2, padding=1)
    layer = _torch_layer(ft, torch, base, (4, 2, 2, 3), scale=1.5)
    x = torch.randn(2, 6, 5, 5, dtype=torch.float64)
    g = torch.randn(2, 8, 5, 5, dtype=torch.float64)
    (layer(x) * g).sum().backward()
    # ∂L/∂ΔW from autograd on the convolution alone
    d = layer.delta_weight().detach().requires_grad_(True)
    (base._conv_forward(x, d, None) * g).sum().backward()
    core, factors, scale = _numpy_adapter(layer)
    g_core, g_factors = flora.delta_vjp(core, factors, d.grad.numpy(), scale)
    np.testing.assert_allclose(layer.flora.core.grad.numpy(), g_core, rtol=1e-10, atol=1e-12)
    for f, gf in zip(layer.flora.factors, g_factors):
        np.testing.assert_allclose(f.grad.numpy(), gf, rtol=1e-10, atol=1e-12)
    assert base.weight.grad is None and base.bias.grad is None  # the base layer is frozen


def test_torch_wrapper_bad_inputs():
    torch = pytest.importorskip("torch")
    from rankcore.flora import torch as ft

    nn = torch.nn
    with pytest.raises(TypeError, match="no FLoRA wrapper"):
        ft.wrap(nn.ReLU(), 1)
    with pytest.raises(TypeError, match="nn.Linear"):
        ft.Linear(nn.Conv1d(2, 2, 1), (1, 1))
    with pytest.raises(ValueError, match="ranks"):
        ft.wrap(nn.Linear(5, 4), (0, 2))  # the reference's check `all(r) >= 1` let this pass
    with pytest.raises(ValueError, match="ranks"):
        ft.wrap(nn.Conv2d(4, 4, 3), (2, 2, 4, 1))  # rank 4 above the kernel size 3
    with pytest.raises(ValueError, match="ranks"):
        ft.wrap(nn.Linear(5, 4), (2, 2, 2))
