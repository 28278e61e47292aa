"""The GPU Tucker orchestration (``rankcore._gpu.tucker``), run with NumPy standing in for cupy.

The device code is written once against an array namespace; here it runs on NumPy arrays
and is compared with the Rust path (``_core.multi_mode_dot`` / ``_core.tucker_decompose``)
on the same data. Both follow the same algorithm step by step, so they agree to rounding:

- mode products and Gram matrices: sums of at most a few hundred products, so 1e-13
  (float64) and 1e-5 (float32) relative to ``‖T‖·‖M‖`` (~ 100·eps);
- decompositions: the exact subspaces (f64 SVD or Gram eigenvectors, as on the CPU) agree
  to rounding over the spectral gap, so reconstructions agree to 1e-10 (f64) / 1e-4 (f32)
  of ``‖T‖`` and relative errors to 1e-9 / 1e-4 relative; iteration counts are equal.
  Randomized subspaces depend on the *basis* of the earlier factors (the Gaussian test
  matrix meets the tensor after it is projected), and the CPU's and LAPACK's SVD choose
  column signs differently, so ST-HOSVD/HOOI with ``svd="randomized"`` are compared on
  the first factor's subspace, the chosen ranks and the error guarantee, not entrywise.

"No host round trip": the orchestration must not fall back to the Rust (host) path;
``_core``'s decompositions are patched to raise while it runs. Routing through the public
functions is checked with a NumPy array dressed as a cupy array (:class:`Dev`).
"""

from __future__ import annotations

import numpy as np
import pytest

import importlib

import rankcore
from rankcore import _core
from rankcore._gpu import tucker as gt

tk = importlib.import_module("rankcore.tucker")  # the module (rankcore.tucker is also a function)

RNG = np.random.default_rng(11)


def _lowrank(shape, ranks, noise=1e-3, dtype=np.float64, seed=0):
    rng = np.random.default_rng(seed)
    t = rng.standard_normal(ranks)
    for m, (s, r) in enumerate(zip(shape, ranks)):
        U = np.linalg.qr(rng.standard_normal((s, r)))[0] * np.linspace(1, 3, r)
        t = np.moveaxis(np.tensordot(U, t, axes=(1, m)), 0, m)
    return (t + noise * rng.standard_normal(shape)).astype(dtype)


@pytest.fixture
def no_host_path(monkeypatch):
    """The Rust decompositions raise: the orchestration must never take the host path."""

    def boom(*a, **k):
        raise AssertionError("the device orchestration called the host (Rust) path")

    for name in ("tucker_decompose", "multi_mode_dot", "flora_delta", "flora_delta_vjp", "kron_apply",
                 "kron_eigh", "kron_solve_eig", "kron_logdet_eig", "gp_lml", "gp_kernel_matrix"):
        if hasattr(_core, name):
            monkeypatch.setattr(_core, name, boom)


class Dev(np.ndarray):
    """A host array that :func:`rankcore._backend.namespace` takes for a cupy array."""

    __module__ = "cupy"


def dev(a):
    return np.asarray(a).view(Dev)


@pytest.fixture
def fake_device(monkeypatch):
    """Routes :class:`Dev` arrays to the GPU paths, with NumPy as their namespace."""
    import rankcore._gpu._arrays as ga

    real = ga.array_module

    def array_module(x):
        return np if isinstance(x, Dev) else real(x)

    import rankcore._gpu.kron
    import rankcore._gpu.svd
    import rankcore.flora
    import rankcore.kron

    for mod in (ga, tk, gt, rankcore._gpu.svd, rankcore.flora, rankcore.kron, rankcore._gpu.kron):
        if hasattr(mod, "array_module"):
            monkeypatch.setattr(mod, "array_module", array_module)
    try:
        import rankcore._gpu.flora as gf

        monkeypatch.setattr(gf, "array_module", array_module)
    except ImportError:
        pass
    return dev


# ---------------------------------------------------------------------------------------
# mode products, Gram matrices, the unfolding operator

TOL = {np.float64: 1e-13, np.float32: 1e-5}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("shape", [(7,), (5, 6), (4, 5, 6), (3, 4, 2, 5), (2, 3, 2, 3, 2)])
def test_mode_product_matches_the_rust_path(no_host_path, dtype, shape):
    t = RNG.standard_normal(shape).astype(dtype)
    for n in range(len(shape)):
        for J in (1, 3, shape[n] + 2):
            M = RNG.standard_normal((J, shape[n])).astype(dtype)
            got = gt.mode_product(t, M, n)
            assert got.dtype == dtype and got.flags.c_contiguous
            want = np.moveaxis(np.tensordot(M.astype(np.float64), t.astype(np.float64), axes=(1, n)), 0, n)
            scale = np.linalg.norm(t) * np.linalg.norm(M)
            np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype] * scale)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_multi_mode_product_matches_the_rust_path(dtype):
    t = RNG.standard_normal((6, 5, 4, 3)).astype(dtype)
    mats = [RNG.standard_normal((j, s)).astype(dtype) for j, s in zip((2, 7, 4, 1), t.shape)]
    for modes in ([0, 1, 2, 3], [3, 1], [2], [1, 3, 0]):
        ms = [mats[m] for m in modes]
        want = _core.multi_mode_dot(t, ms, modes)
        got = gt.multi_mode_product(t, ms, modes)
        scale = np.linalg.norm(t) * np.prod([np.linalg.norm(m) for m in ms])
        np.testing.assert_allclose(got, want, rtol=0, atol=TOL[dtype] * scale)
    empty = gt.multi_mode_product(t, [], [])
    assert empty is not t and np.array_equal(empty, t)


@pytest.mark.parametrize("block", [gt._BLOCK, 37])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_gram_and_the_unfolding_operator(monkeypatch, dtype, block):
    monkeypatch.setattr(gt, "_BLOCK", block)  # 37: many blocks, a partial last one
    t = RNG.standard_normal((4, 5, 3, 6)).astype(dtype)
    for n in range(4):
        A = tk.unfold(t, n).astype(np.float64)
        G = gt.gram(t, n)
        assert G.dtype == np.float64
        np.testing.assert_allclose(G, A @ A.T, rtol=0, atol=TOL[dtype] * np.linalg.norm(A) ** 2)
        op = gt._Unfolding(t, n)
        assert op.shape == A.shape and op.t().shape == A.T.shape
        X = RNG.standard_normal((A.shape[1], 3)).astype(dtype)
        Y = RNG.standard_normal((A.shape[0], 3)).astype(dtype)
        scale = np.linalg.norm(A)
        np.testing.assert_allclose(op.mul(X), A @ X, atol=TOL[dtype] * scale * np.linalg.norm(X))
        np.testing.assert_allclose(op.mul_t(Y), A.T @ Y, atol=TOL[dtype] * scale * np.linalg.norm(Y))
        np.testing.assert_allclose(op.t().mul(Y), A.T @ Y, atol=TOL[dtype] * scale * np.linalg.norm(Y))
        assert op.sq_norm() == pytest.approx(float(np.sum(A * A)), rel=1e-12)


# ---------------------------------------------------------------------------------------
# decompositions against the Rust core


def _opts(shape, modes=None, ranks=None, **kw):
    modes = list(range(len(shape))) if modes is None else modes
    o = {"method": "hooi", "svd": "exact", "seed": 5, "n_oversamples": 10, "n_power_iter": 2,
         "init": "svd", "modes": modes, "ranks": ranks if ranks is not None else [shape[m] for m in modes],
         "error_tol": None, "fixed": [False] * len(modes), "n_iter_max": 50, "tol": 1e-8,
         "mask_repeats": 3, "verbose": False}
    o.update(kw)
    return o


_core_tucker = _core.tucker_decompose  # bound before the fixture patches the module


def _reference(x, o, mask=None, init=None):
    return _core_tucker(x, o, mask, init)


def _compare(c, g, x, dtype, modes, exact=True):
    assert [f.shape for f in g["factors"]] == [f.shape for f in c["factors"]]
    assert g["core"].shape == c["core"].shape and g["core"].dtype == dtype
    assert all(f.dtype == dtype for f in g["factors"])
    for f in g["factors"]:
        np.testing.assert_allclose(f.T @ f, np.eye(f.shape[1]), atol=50 * np.finfo(dtype).eps * f.shape[0])
    if exact:
        assert g["n_iter"] == c["n_iter"] and g["converged"] == c["converged"]
        # err² = 1 - ‖G‖²/‖T‖² is known to a few hundred eps of the working precision
        # (the core's rounding), so compare the squares with that absolute slack.
        atol2 = 1e-13 if dtype == np.float64 else 2e-6
        np.testing.assert_allclose(np.square(g["errors"]), np.square(c["errors"]), rtol=1e-8, atol=atol2)
        rc = gt.reconstruct(c["core"], modes, c["factors"])
        rg = gt.reconstruct(g["core"], modes, g["factors"])
        atol = (1e-10 if dtype == np.float64 else 1e-4) * np.linalg.norm(x)
        np.testing.assert_allclose(rg, rc, rtol=0, atol=atol)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", ["hosvd", "sthosvd", "hooi"])
@pytest.mark.parametrize("target", ["rank", "tol"])
def test_exact_decompositions_match_the_rust_path(no_host_path, dtype, method, target):
    x = _lowrank((30, 20, 25), (4, 3, 5), dtype=dtype)
    kw = {"ranks": [4, 3, 5]} if target == "rank" else {"error_tol": 0.01}
    o = _opts(x.shape, method=method, **kw)
    g = gt.tucker(x, o)
    c = _reference(x, o)
    _compare(c, g, x, dtype, o["modes"])
    if target == "tol":
        assert g["errors"][-1] <= 0.01




@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("method", ["hosvd", "sthosvd", "hooi"])
def test_randomized_decompositions_match_the_rust_path(no_host_path, dtype, method):
    x = _lowrank((40, 30, 35), (4, 3, 5), dtype=dtype, seed=1)
    o = _opts(x.shape, method=method, svd="randomized", ranks=[4, 3, 5])
    g, c = gt.tucker(x, o), _reference(x, o)
    # The first mode sees the same tensor and the same test matrix: same subspace.
    s = np.linalg.svd(g["factors"][0].T.astype(np.float64) @ c["factors"][0], compute_uv=False)
    assert s.min() > 1 - (1e-10 if dtype == np.float64 else 1e-4)
    _compare(c, g, x, dtype, o["modes"], exact=method == "hosvd")
    rtol = 1e-6 if dtype == np.float64 else 1e-3
    assert g["errors"][-1] == pytest.approx(c["errors"][-1], rel=rtol)


@pytest.mark.parametrize("method", ["hosvd", "sthosvd", "hooi"])
def test_randomized_error_target(no_host_path, method):
    x = _lowrank((30, 20, 25), (4, 3, 5), noise=1e-2, seed=2)
    o = _opts(x.shape, method=method, svd="randomized", error_tol=0.05)
    g, c = gt.tucker(x, o), _reference(x, o)
    assert g["core"].shape == c["core"].shape  # the same ranks from the same rule
    assert g["errors"][-1] <= 0.05 and c["errors"][-1] <= 0.05
    assert g["errors"][-1] == pytest.approx(c["errors"][-1], rel=1e-2)


def test_partial_fixed_and_given_init(no_host_path):
    x = _lowrank((12, 10, 9, 8), (3, 4, 2, 3), seed=3)
    o = _opts(x.shape, modes=[2, 0], ranks=[2, 3])
    _compare(_reference(x, o), gt.tucker(x, o), x, np.float64, o["modes"])
    o = _opts(x.shape, modes=[2, 0], error_tol=0.02, method="sthosvd")
    _compare(_reference(x, o), gt.tucker(x, o), x, np.float64, o["modes"])
    init = [RNG.standard_normal((12, 3)), RNG.standard_normal((10, 4)), RNG.standard_normal((9, 2)),
            RNG.standard_normal((8, 3))]
    o = _opts(x.shape, ranks=[3, 4, 2, 3], fixed=[False, True, False, False])
    c = _reference(x, o, None, [np.asfortranarray(f) for f in init])
    g = gt.tucker(x, o, None, init)
    _compare(c, g, x, np.float64, o["modes"])
    # the fixed factor is the given one, orthonormalised (same span)
    Q = np.linalg.qr(init[1])[0]
    np.testing.assert_allclose(g["factors"][1] @ g["factors"][1].T, Q @ Q.T, atol=1e-13)


def test_random_init_uses_the_cpu_test_matrices(no_host_path):
    x = _lowrank((15, 12, 10), (3, 3, 3), seed=4)
    o = _opts(x.shape, ranks=[3, 3, 3], init="random", n_iter_max=3, tol=0.0)
    c, g = _reference(x, o), gt.tucker(x, o)
    _compare(c, g, x, np.float64, o["modes"])


@pytest.mark.parametrize("method", ["hosvd", "sthosvd", "hooi"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_masked_decomposition_matches_the_rust_path(no_host_path, method, dtype):
    x = _lowrank((14, 12, 10), (3, 2, 3), seed=5, dtype=dtype)
    mask = np.random.default_rng(6).random(x.shape) > 0.3
    xm = x.copy()
    xm[~mask] = np.nan  # missing entries may hold anything
    o = _opts(x.shape, method=method, ranks=[3, 2, 3], n_iter_max=20, tol=1e-10)
    c = _reference(xm, o, mask.view(np.uint8))
    g = gt.tucker(xm, o, mask)
    _compare(c, g, x, dtype, o["modes"])
    assert np.isfinite(g["core"]).all()


def test_final_error_from_the_residual_when_tiny(no_host_path):
    x = _lowrank((10, 9, 8), (2, 2, 2), noise=1e-9, seed=7)
    o = _opts(x.shape, method="sthosvd", ranks=[2, 2, 2])
    g, c = gt.tucker(x, o), _reference(x, o)
    assert g["errors"][-1] < 1e-7
    assert g["errors"][-1] == pytest.approx(c["errors"][-1], rel=1e-5)


# ---------------------------------------------------------------------------------------
# the public functions route device arrays here


def test_public_functions_route_device_arrays(fake_device, no_host_path):
    x = _lowrank((12, 10, 8), (3, 3, 2), seed=8)
    # (np.ascontiguousarray drops the Dev dress, so results are compared by value only)
    tt = tk.tucker(fake_device(x), (3, 3, 2), n_iter_max=5)
    ref = _core_tucker(x, _opts(x.shape, ranks=[3, 3, 2], n_iter_max=5, tol=1e-4), None, None)
    # errors are √((‖X‖² − ‖G‖²)/‖X‖²): the subtraction's rounding (at most size·eps·‖X‖²
    # summing in any order) is size·eps/(2·err) on the error, 9e-11 here (it was 1.8e-9
    # relative, 1.1e-12 absolute, on an AMD EPYC host: an rtol of 1e-9 was host luck)
    atol = x.size * np.finfo(np.float64).eps / (2 * min(ref["errors"]))
    np.testing.assert_allclose(tt.errors, ref["errors"], rtol=0, atol=atol)
    full = tk.tucker_to_tensor((fake_device(tt.core), [fake_device(f) for f in tt.factors]))
    np.testing.assert_allclose(full, np.einsum("abc,ia,jb,kc->ijk", tt.core, *tt.factors), atol=1e-12)
    M = fake_device(RNG.standard_normal((4, 10)))
    md = tk.mode_dot(fake_device(x), M, 1)
    np.testing.assert_allclose(md, np.einsum("ji,aib->ajb", M, x), atol=1e-12)
    v = tk.mode_dot(fake_device(x), fake_device(np.ones(8)), 2)
    np.testing.assert_allclose(v, x.sum(axis=2), rtol=1e-13)
    mm = tk.multi_mode_dot(fake_device(x), [M, fake_device(np.ones((2, 8)))], modes=[1, 2])
    assert mm.shape == (12, 4, 2)
    (core, factors), errors = tk.partial_tucker(fake_device(x), [3, 2], modes=[0, 2])
    assert core.shape == (3, 10, 2) and len(errors) >= 1
    assert tk.unfold(fake_device(x), 1).shape == (10, 96)
    np.testing.assert_array_equal(tk.fold(tk.unfold(fake_device(x), 1), 1, x.shape), x)
    est = tk.Tucker(rank=(3, 3, 2), method="sthosvd").fit(fake_device(x))
    assert est.core_.shape == (3, 3, 2)
    assert tt.norm() == pytest.approx(np.linalg.norm(tt.core), rel=1e-12)
    # float32 kept
    t32 = tk.tucker(fake_device(x.astype(np.float32)), 2, method="hosvd")
    assert t32.core.dtype == np.float32 and all(f.dtype == np.float32 for f in t32.factors)
    masked = tk.tucker(fake_device(x), 2, mask=fake_device(np.ones(x.shape, bool)), n_iter_max=2)
    assert masked.core.shape == (2, 2, 2)


def test_mixing_host_and_device_is_a_type_error(fake_device):
    x = _lowrank((6, 5, 4), (2, 2, 2))
    with pytest.raises(TypeError, match="matrix_or_vector is a host ndarray"):
        tk.mode_dot(fake_device(x), np.ones((3, 5)), 1)
    with pytest.raises(TypeError, match="cupy"):
        tk.mode_dot(x, fake_device(np.ones((3, 5))), 1)
    with pytest.raises(TypeError, match="mask is a host ndarray"):
        tk.tucker(fake_device(x), 2, mask=np.ones(x.shape, bool))
    with pytest.raises(TypeError, match=r"init factors\[0\] is a host ndarray"):
        tk.tucker(fake_device(x), 2, init=(None, [np.ones((6, 2))] * 3))
    with pytest.raises(TypeError, match=r"tucker_tensor factors\[0\] is a host"):
        tk.tucker_to_tensor((fake_device(np.ones((2, 2, 2))), [np.ones((6, 2))] * 3))


def test_device_checks_match_the_host_checks(fake_device):
    x = _lowrank((6, 5, 4), (2, 2, 2))
    bad = x.copy()
    bad[0, 0, 0] = np.nan
    for arr in (bad, x.astype(complex), x[None, None, None, None, None, None]):
        with pytest.raises((ValueError, TypeError)) as host:
            tk.tucker(arr, 2)
        with pytest.raises(type(host.value), match=str(host.value)[:20]):
            tk.tucker(fake_device(arr), 2)
    with pytest.raises(ValueError, match="rank for mode 0"):
        tk.tucker(fake_device(x), 7)
    with pytest.raises(ValueError, match="mask marks no entry"):
        tk.tucker(fake_device(x), 2, mask=fake_device(np.zeros(x.shape, bool)))
    with pytest.raises(ValueError, match="observed"):
        m = np.ones(x.shape, bool)
        tk.tucker(fake_device(bad), 2, mask=fake_device(m))
    assert tk.tucker(fake_device(x.astype(np.int64)), 2).core.dtype == np.float64
