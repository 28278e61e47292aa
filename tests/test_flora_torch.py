"""``rankcore.flora.torch`` on every device torch offers here (cpu, and cuda when available).

Skipped where torch is not importable. Checks, per device:

- the adapters' parameters live on the base weight's device and dtype;
- forward = base layer with ``W + ΔW`` for Linear, Conv1d/2d/3d (grouped) and Embedding,
  with ΔW from an einsum of the adapter (float64: agreement to 1e-12 relative);
- ``merge()`` gives the same outputs, ``unmerge()`` restores the base weight to rounding;
- autograd gradients of the adapter parameters equal central finite differences
  (``torch.autograd.gradcheck`` in float64) and rankcore's own ``flora.delta_vjp``;
- a short fine-tuning run of a small conv net (two grouped/plain Conv2d and a Linear, all
  adapted) on synthetic data lowers the loss well below its start.
"""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
from torch import nn  # noqa: E402

from rankcore import flora  # noqa: E402
from rankcore.flora import torch as ft  # noqa: E402

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def _einsum_delta(core, factors, scale):
    lo, up = "abcdefgh", "ABCDEFGH"
    n = core.ndim
    spec = lo[:n] + "," + ",".join(f"{up[k]}{lo[k]}" for k in range(n)) + "->" + up[:n]
    return scale * torch.einsum(spec, core, *factors)


def _case(kind, device):
    g = torch.Generator().manual_seed(1)
    cases = {
        "linear": (lambda: nn.Linear(5, 4), (2, 3), lambda: torch.randn(3, 5, generator=g)),
        "conv1d": (lambda: nn.Conv1d(4, 6, 3, padding=1), (2, 3, 2), lambda: torch.randn(2, 4, 7, generator=g)),
        "conv2d_groups": (lambda: nn.Conv2d(8, 6, 3, groups=2, stride=2), (3, 2, 3, 2),
                          lambda: torch.randn(2, 8, 7, 7, generator=g)),
        "conv2d_reflect": (lambda: nn.Conv2d(3, 4, 3, padding=1, padding_mode="reflect"), (2, 3, 2, 2),
                           lambda: torch.randn(2, 3, 5, 5, generator=g)),
        "conv3d_groups": (lambda: nn.Conv3d(4, 6, 2, groups=2), (2, 2, 2, 1, 2),
                          lambda: torch.randn(1, 4, 4, 4, 4, generator=g)),
        "embedding": (lambda: nn.Embedding(10, 4, padding_idx=0), (3, 2),
                      lambda: torch.tensor([[0, 3], [9, 3]])),
    }
    make, ranks, inp = cases[kind]
    torch.manual_seed(0)
    base = make().double().to(device)
    x = inp().to(device)
    if x.is_floating_point():
        x = x.double()
    return base, ranks, x


def _reference(base, w, x):
    if isinstance(base, nn.Linear):
        return nn.functional.linear(x, w, base.bias)
    if isinstance(base, nn.Embedding):
        return w[x]
    return base._conv_forward(x, w, base.bias)


KINDS = ["linear", "conv1d", "conv2d_groups", "conv2d_reflect", "conv3d_groups", "embedding"]


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_parameters_follow_the_weight(device, dtype):
    base = nn.Conv2d(6, 4, 3, groups=2).to(device=device, dtype=dtype)
    layer = ft.wrap(base, (2, 3, 2, 2), scale=0.5)
    params = [layer.flora.core, *layer.flora.factors]
    assert all(p.device.type == device and p.dtype == dtype for p in params)
    assert [tuple(f.shape) for f in layer.flora.factors] == [(4, 2), (3, 3), (3, 2), (3, 2)]
    assert not layer.flora.core.any()  # zero change at init
    assert all(not p.requires_grad for p in base.parameters())
    x = torch.randn(2, 6, 5, 5, device=device, dtype=dtype)
    torch.testing.assert_close(layer(x), base(x))
    # moving the wrapper moves the adapter
    if device == "cpu" and "cuda" in DEVICES:
        layer.to("cuda")
        assert layer.flora.core.device.type == "cuda"


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
def test_forward_is_base_plus_delta_and_merge_round_trips(device, kind):
    base, ranks, x = _case(kind, device)
    w0 = base.weight.detach().clone()
    layer = ft.wrap(base, ranks, scale=0.5)
    with torch.no_grad():
        layer.flora.core.normal_()
    core = layer.flora.core.detach()
    factors = [f.detach() for f in layer.flora.factors]
    d = _einsum_delta(core, factors, 0.5)
    torch.testing.assert_close(layer.delta_weight().detach(), d, rtol=1e-12, atol=1e-12)
    want = _reference(base, w0 + d, x)
    got = layer(x)
    torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    layer.merge()
    layer.merge()  # idempotent
    torch.testing.assert_close(base.weight.detach(), w0 + d, rtol=0, atol=1e-14)
    torch.testing.assert_close(layer(x), want, rtol=1e-12, atol=1e-12)
    layer.unmerge()
    layer.unmerge()  # idempotent
    torch.testing.assert_close(base.weight.detach(), w0, rtol=0, atol=1e-14)
    torch.testing.assert_close(layer(x), got, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("kind", KINDS)
def test_autograd_gradients_equal_finite_differences(device, kind):
    from torch.func import functional_call

    base, ranks, x = _case(kind, device)
    layer = ft.wrap(base, ranks, scale=0.7)
    with torch.no_grad():
        layer.flora.core.normal_()
    names = [n for n, p in layer.named_parameters() if p.requires_grad]
    assert names and all(n.startswith("flora.") for n in names)
    params = tuple(dict(layer.named_parameters())[n].detach().clone().requires_grad_(True) for n in names)
    w = torch.randn_like(layer(x).detach())

    def f(*ps):
        return (functional_call(layer, dict(zip(names, ps)), (x,)) * w).sum()

    # central differences with eps=1e-6 in float64: agreement to ~1e-7 relative
    # (nondet_tol: cuDNN's convolution backward may sum in a different order each call)
    assert torch.autograd.gradcheck(f, params, eps=1e-6, atol=1e-7, rtol=1e-5, nondet_tol=1e-12)


@pytest.mark.parametrize("device", DEVICES)
def test_autograd_gradients_match_delta_vjp(device):
    torch.manual_seed(2)
    base = nn.Conv2d(6, 8, 3, groups=2, padding=1).double().to(device)
    layer = ft.wrap(base, (4, 2, 2, 3), scale=1.5)
    with torch.no_grad():
        layer.flora.core.normal_()
    x = torch.randn(2, 6, 5, 5, dtype=torch.float64, device=device)
    g = torch.randn(2, 8, 5, 5, dtype=torch.float64, device=device)
    (layer(x) * g).sum().backward()
    d = layer.delta_weight().detach().requires_grad_(True)
    (base._conv_forward(x, d, None) * g).sum().backward()
    host = lambda t: t.detach().cpu().numpy()  # noqa: E731  (the test compares on the host)
    core = host(layer.flora.core)
    factors = [host(f) for f in layer.flora.factors]
    g_core, g_factors = flora.delta_vjp(core, factors, host(d.grad), 1.5)
    np.testing.assert_allclose(host(layer.flora.core.grad), g_core, rtol=1e-10, atol=1e-12)
    for f, gf in zip(layer.flora.factors, g_factors):
        np.testing.assert_allclose(host(f.grad), gf, rtol=1e-10, atol=1e-12)
    assert base.weight.grad is None and base.bias.grad is None


@pytest.mark.parametrize("device", DEVICES)
def test_fine_tuning_a_small_conv_net_lowers_the_loss(device):
    """A "pre-trained" net, a teacher that differs from it by a low-rank change of every
    weight, and a student = the pre-trained net with FLoRA adapters (base frozen): a few
    hundred Adam steps on synthetic images must bring the student's loss well below the
    pre-trained net's, and merging must not change the trained outputs."""
    torch.manual_seed(0)
    gen = torch.Generator(device="cpu").manual_seed(0)

    def net():
        return nn.Sequential(
            nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(),
            nn.Conv2d(8, 8, 3, padding=1, groups=2), nn.Tanh(),
            nn.Flatten(), nn.Linear(8 * 6 * 6, 4),
        )

    pre = net().to(device)
    teacher = net().to(device)
    teacher.load_state_dict(pre.state_dict())
    with torch.no_grad():
        for m in teacher:
            if hasattr(m, "weight"):
                w = m.weight
                # a rank-(2, 2, ...) Tucker change, as FLoRA can express
                r = [min(2, s) for s in w.shape]
                t = torch.randn(r, generator=gen)
                for k, s in enumerate(w.shape):
                    u = torch.randn(s, r[k], generator=gen) / np.sqrt(s)
                    t = torch.movedim(torch.tensordot(t, u, dims=([k], [1])), -1, k)
                w.add_(0.5 * t.to(device) * w.abs().mean() / t.abs().mean())
    X = torch.randn(256, 3, 6, 6, generator=gen).to(device)
    with torch.no_grad():
        Y = teacher(X)

    student = net().to(device)
    student.load_state_dict(pre.state_dict())
    for i, m in enumerate(student):
        if isinstance(m, (nn.Conv2d, nn.Linear)):
            ranks = [min(3, s) for s in m.weight.shape]
            student[i] = ft.wrap(m, ranks)
    trainable = [p for p in student.parameters() if p.requires_grad]
    assert trainable and all(p.device.type == device for p in trainable)
    opt = torch.optim.Adam(trainable, lr=1e-2)
    loss_fn = nn.MSELoss()
    with torch.no_grad():
        start = loss_fn(student(X), Y).item()
    for _ in range(300):
        opt.zero_grad()
        loss = loss_fn(student(X), Y)
        loss.backward()
        opt.step()
    with torch.no_grad():
        end = loss_fn(student(X), Y).item()
        assert end < 0.3 * start, (start, end)
        before = student(X)
        for m in student:
            if isinstance(m, (ft.Linear, ft.Conv)):
                m.merge()
        torch.testing.assert_close(student(X), before, rtol=1e-5, atol=1e-5)
    # the frozen base weights changed only through merge
    for m in student:
        if isinstance(m, (ft.Linear, ft.Conv)):
            m.unmerge()
    base_weights = [m.base_layer.weight for m in student if isinstance(m, (ft.Linear, ft.Conv))]
    pre_weights = [m.weight for m in pre if isinstance(m, (nn.Conv2d, nn.Linear))]
    for a, b in zip(base_weights, pre_weights):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-5)
