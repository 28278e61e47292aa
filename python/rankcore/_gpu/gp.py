"""Kronecker-structured Gaussian-process regression on the device, written once for cupy and
NumPy (NumPy stands in for cupy in CPU CI).

The same mathematics as the Rust core (``rust/rankcore/src/gp/``): the 1-D kernel matrices
and their hyperparameter derivatives (``kernels.rs``), the exact log marginal likelihood
and its gradient in the eigenbasis (``likelihood.rs``), the Sherman–Morrison constant term
(``rankcore.gp._lml_offset``), preconditioned conjugate gradients and the Wilson et al.
(2014) log-determinant for incomplete grids (``kron.rs``, ``incomplete.rs``), predictions
on and off the grid (``predict.rs``) and posterior samples. Kronecker products are mode
products (:func:`rankcore._gpu.kron.kron_apply`), eigendecompositions cuSOLVER's
(:func:`rankcore._gpu.kron.eigh`, with the CPU's round-off clamp).

Host/device traffic. Grid-sized arrays (data, α, eigenvectors, predictions) never leave
the device. What is read back is what the host-side optimizer and control flow need: the
log marginal likelihood and each entry of its gradient (one scalar read each: the vector
is hyperparameter-sized), the conjugate-gradient scalars (``pᵀAp``, the residual norm: a
few scalar reads per iteration), and shape facts for input checks (counts, finiteness).
The model's hyperparameters live on the host (they are scalars) and are sent to the device
inside the elementwise kernel evaluations.
"""

from __future__ import annotations

import math
import numbers
import warnings
from typing import Any, Sequence

import numpy as np

from rankcore._gpu import kron as gk
from rankcore._gpu._arrays import array_module, check_array, check_same_device, linalg

__all__ = [
    "kernel_grads",
    "kernel_value",
    "lml_full",
    "lml_incomplete",
    "lml_offset",
    "pcg",
    "rowwise_contract",
    "wilson_logdet",
]

_F64 = np.float64


# ---------------------------------------------------------------------------------------
# 1-D kernels (kernels.rs): value and ∂/∂θ_p as functions of r = x − x'
# ---------------------------------------------------------------------------------------


def _base(xp, base: str, r, l: float):
    """``(b(r), ∂b/∂ℓ)`` of a mixture base shape (Gaussian or Matérn 5/2)."""
    if base == "gaussian":
        u = r / l
        k = xp.exp(-0.5 * u * u)
        return k, u * u / l * k
    a = math.sqrt(5.0) * xp.abs(r) / l
    e = xp.exp(-a)
    return (1.0 + a + a * a / 3.0) * e, a * a / 3.0 * (1.0 + a) * e / l


def _mixture(kind: str, p: np.ndarray):
    q = len(p) // 3
    return ("gaussian" if kind == "sm" else "matern52"), p[:q], p[q : 2 * q], p[2 * q :]


def kernel_value(kind: str, params: Sequence[float], r: Any) -> Any:
    """``k(r)`` elementwise (unit amplitude), float64, for the kinds of ``kernels.rs``."""
    xp = array_module(r)
    p = [float(v) for v in params]
    if kind == "rbf":
        u = r / p[0]
        return xp.exp(-0.5 * u * u)
    if kind == "matern12":
        return xp.exp(-xp.abs(r) / p[0])
    if kind == "matern32":
        a = math.sqrt(3.0) * xp.abs(r) / p[0]
        return (1.0 + a) * xp.exp(-a)
    if kind == "matern52":
        return _base(xp, "matern52", r, p[0])[0]
    if kind == "rq":
        l, alpha = p
        return (1.0 + r * r / (2.0 * alpha * l * l)) ** (-alpha)
    if kind == "periodic":
        l, period = p
        s = xp.sin(math.pi * r / period)
        return xp.exp(-2.0 * s * s / (l * l))
    if kind in ("sm", "stm"):
        base, w, f, ls = _mixture(kind, np.asarray(p))
        out = xp.zeros_like(r)
        for q in range(len(w)):
            b, _ = _base(xp, base, r, float(ls[q]))
            out = out + float(w[q]) * b * xp.cos(2.0 * math.pi * float(f[q]) * r)
        return out
    raise NotImplementedError(f"kernel kind {kind!r} has no device implementation")


def kernel_grads(kind: str, params: Sequence[float], r: Any) -> list[Any]:
    """``[∂k(r)/∂θ_p]`` for every raw parameter θ_p (``Kernel1d::grad``), float64."""
    xp = array_module(r)
    p = [float(v) for v in params]
    if kind == "rbf":
        u = r / p[0]
        return [u * u / p[0] * xp.exp(-0.5 * u * u)]
    if kind == "matern12":
        a = xp.abs(r)
        return [a / (p[0] * p[0]) * xp.exp(-a / p[0])]
    if kind == "matern32":
        a = math.sqrt(3.0) * xp.abs(r) / p[0]
        return [a * a * xp.exp(-a) / p[0]]
    if kind == "matern52":
        return [_base(xp, "matern52", r, p[0])[1]]
    if kind == "rq":
        l, alpha = p
        s = 1.0 + r * r / (2.0 * alpha * l * l)
        k = s ** (-alpha)
        return [r * r / (l * l * l) * k / s, k * (-xp.log(s) + (s - 1.0) / s)]
    if kind == "periodic":
        l, period = p
        phi = math.pi * r / period
        sn, cs = xp.sin(phi), xp.cos(phi)
        k = xp.exp(-2.0 * sn * sn / (l * l))
        return [k * 4.0 * sn * sn / (l * l * l), k * 4.0 * sn * cs * math.pi * r / (period * period * l * l)]
    if kind in ("sm", "stm"):
        base, w, f, ls = _mixture(kind, np.asarray(p))
        nq = len(w)
        out: list[Any] = [None] * (3 * nq)
        for q in range(nq):
            b, bl = _base(xp, base, r, float(ls[q]))
            om = 2.0 * math.pi * float(f[q])
            s, c = xp.sin(om * r), xp.cos(om * r)
            out[q] = b * c
            out[nq + q] = -float(w[q]) * b * s * 2.0 * math.pi * r
            out[2 * nq + q] = float(w[q]) * bl * c
        return out
    raise NotImplementedError(f"kernel kind {kind!r} has no device implementation")


def _diff(x1: Any, x2: Any) -> Any:
    return x1.astype(_F64)[:, None] - x2.astype(_F64)[None, :]


def factor_matrix(model: Any, d: int, x1: Any, x2: Any) -> Any:
    """``Π_f k_{d,f}(x1[i] − x2[j])`` over the factors of grid dimension `d`, float64."""
    r = _diff(x1, x2)
    out = None
    for k in model.dims[d]:
        m = kernel_value(k.kind, k.params, r)
        out = m if out is None else out * m
    return out


def prior_diag(model: Any) -> float:
    """The prior variance ``s Π k(0)`` of the product part (host arithmetic on scalars)."""
    z = np.zeros(1)
    v = model.scale
    for f in model.dims:
        for k in f:
            v *= float(kernel_value(k.kind, k.params, z)[0])
    return v


def prior_matrix(model: Any, X1: Any, X2: Any) -> Any:
    """``s Π_d k_d(x_d, x'_d)`` between two point sets (float64), no offset or noise."""
    K = None
    for d in range(X1.shape[1]):
        m = factor_matrix(model, d, X1[:, d], X2[:, d])
        K = m if K is None else K * m
    return model.scale * K


def factor_hyper_grads(model: Any, axes: Sequence[Any], d_factor: Sequence[Any]) -> dict:
    """``{(d, f, p): Σ_ij ∂K_{d,f}/∂θ_p ∘ (Π_{g≠f} K_{d,g}) ∘ R_d}`` (one scalar read each):
    the chain rule of ``GridGPRegressor._lml`` from ``R_d = ∂ log p/∂K_d``."""
    out = {}
    for d, ax in enumerate(axes):
        R = d_factor[d].astype(_F64)
        r = _diff(ax, ax)
        mats = [kernel_value(k.kind, k.params, r) for k in model.dims[d]]
        for f, k in enumerate(model.dims[d]):
            W = R
            for g, m in enumerate(mats):
                if g != f:
                    W = W * m
            for p, dK in enumerate(kernel_grads(k.kind, k.params, r)):
                out[(d, f, p)] = float((dK * W).sum())
    return out


# ---------------------------------------------------------------------------------------
# Exact log marginal likelihood (likelihood.rs)
# ---------------------------------------------------------------------------------------


def _grid_eig_minus(lams: Sequence[Any], scale: float, d: int) -> Any:
    """``s Π_{e≠d} λ_e`` broadcastable over the C-order grid (size 1 along axis d)."""
    out = None
    D = len(lams)
    for e, lam in enumerate(lams):
        if e == d:
            continue
        shape = [1] * D
        shape[e] = lam.shape[0]
        v = lam.reshape(shape)
        out = v if out is None else out * v
    xp = array_module(lams[0])
    if out is None:
        out = xp.ones([1] * D, dtype=lams[0].dtype)
    return out * lams[0].dtype.type(scale)


def factor_gradients(qs, lams, scale: float, at: Any, w: Any, trace_mult: float) -> list[Any]:
    """``R_d = ½ Q_d (M_d − c·diag(t_d)) Q_dᵀ`` (symmetrised) for every dimension, from
    ``α̃ = Qᵀα`` (B × N) and the trace weights `w` (N, float64): ``factor_gradients`` of
    likelihood.rs, with ``M_d`` one tensordot (a GEMM over the unfolded batch)."""
    shape = tuple(int(q.shape[0]) for q in qs)
    D = len(shape)
    B = int(at.shape[0])
    ag = at.reshape((B,) + shape)
    wg = w.reshape(shape)
    out = []
    for d in range(D):
        lm = _grid_eig_minus(lams, scale, d)
        others = [e for e in range(D) if e != d]
        t = (wg * lm.astype(_F64)).sum(axis=tuple(others)) if others else wg * lm.astype(_F64)
        t = t.reshape(-1)
        ax = [0] + [e + 1 for e in others]
        M = array_module(at).tensordot(ag * lm[None], ag, axes=(ax, ax))
        inner = M - array_module(at).diag((trace_mult * t).astype(M.dtype))
        R = qs[d] @ inner @ qs[d].T
        out.append(0.25 * (R + R.T))
    return out


def lml_full(qs, lams, scale: float, noise: float, Y: Any, grad: bool) -> dict:
    """Exact LML of the rows of ``Y`` (B × N) under ``s K + σ²I`` and its gradient pieces,
    as ``_core.gp_lml``: ``value``, ``alpha`` (B × N), and with `grad` ``d_scale``,
    ``d_noise``, ``d_factor`` (``∂ log p/∂K_d``). Sums in float64."""
    if not (noise > 0.0 and math.isfinite(noise)):
        raise ValueError(f"noise must be a positive finite number, got {noise}")
    xp = array_module(Y)
    B, N = (int(s) for s in Y.shape)
    lam = gk.grid_eigenvalues(lams, scale)
    yt = gk.kron_apply([q.T for q in qs], Y)
    at = yt / (lam + lam.dtype.type(noise))[None, :]
    fit = float((yt.astype(_F64) * at.astype(_F64)).sum())
    lam64 = lam.astype(_F64)
    w = 1.0 / (lam64 + noise)
    logdet = float(xp.log(lam64 + noise).sum())
    value = -0.5 * fit - 0.5 * B * logdet - 0.5 * B * N * math.log(2 * math.pi)
    out = {"value": value, "alpha": gk.kron_apply(list(qs), at)}
    if not grad:
        return out
    a2 = at.astype(_F64) ** 2
    fit_l = float((a2 * lam64[None, :]).sum())
    tr_l = float((lam64 * w).sum())
    out["d_scale"] = (0.5 * fit_l - 0.5 * B * tr_l) / scale if scale > 0 else 0.0
    out["d_noise"] = 0.5 * float(a2.sum()) - 0.5 * B * float(w.sum())
    out["d_factor"] = factor_gradients(qs, lams, scale, at, w, float(B))
    return out


class DeviceOffset:
    """``_Offset`` on the device: ``v = A⁻¹1`` (grid, float64), the gain ``g = c/(1 + cγ)``
    and ``1ᵀα`` per target (B, device)."""

    def __init__(self, c: float, v: Any, gain: float, one_alpha: Any) -> None:
        self.c, self.v, self.gain, self.one_alpha = c, v, gain, one_alpha


def lml_offset(qs, lams, scale: float, noise: float, c: float, Y: Any, grad: bool) -> dict:
    """``rankcore.gp._lml_offset`` (Sherman–Morrison and the determinant lemma for the
    constant term ``c·11ᵀ``) with :func:`lml_full` for the product part."""
    xp = array_module(Y)
    B, N = (int(s) for s in Y.shape)
    dt = Y.dtype
    e = gk.grid_eigenvalues([l.astype(_F64) for l in lams], scale) + noise
    u = gk.grid_eigenvalues([q.astype(_F64).sum(axis=0) for q in qs], 1.0)
    v = gk.kron_apply(list(qs), (u / e)[None].astype(dt))[0].astype(_F64)
    gamma = float((u * u / e).sum())
    delta = 1.0 + c * gamma
    one_alpha = (Y.astype(_F64) @ v) / delta
    Yp = Y.astype(_F64) - (c * one_alpha)[:, None]
    kappa = (B + 1) / B if grad else 1.0
    rows = math.sqrt(kappa) * Yp
    if grad:
        rows = xp.concatenate([rows, xp.full((1, N), math.sqrt(kappa * B * c / delta))], axis=0)
    out = lml_full(qs, lams, scale, noise, xp.ascontiguousarray(rows.astype(dt)), grad)
    alpha = out["alpha"][:B].astype(_F64) / math.sqrt(kappa)
    fit = float((Y.astype(_F64) * alpha).sum())
    logdet = float(xp.log(e).sum()) + math.log1p(c * gamma)
    value = -0.5 * fit - 0.5 * B * logdet - 0.5 * B * N * math.log(2 * math.pi)
    res = {"value": value, "alpha": alpha.astype(dt), "offset": DeviceOffset(c, v, c / delta, one_alpha)}
    if grad:
        res["d_scale"] = out["d_scale"] / kappa
        res["d_noise"] = out["d_noise"] / kappa
        res["d_factor"] = [R.astype(_F64) / kappa for R in out["d_factor"]]
        res["d_offset"] = 0.5 * float((one_alpha**2).sum()) - 0.5 * B * gamma / delta
    return res


# ---------------------------------------------------------------------------------------
# Incomplete grids (kron.rs pcg / wilson_logdet, incomplete.rs)
# ---------------------------------------------------------------------------------------


def pcg(qs, lams, scale: float, obs: Any, noise: Any, b: Any, tol: float, max_iter: int) -> tuple[Any, int, float, bool]:
    """Solve ``(P sK Pᵀ + diag(noise)) x = b`` for each row of `b` (R × m, observed cells
    `obs` ascending) by conjugate gradients with the preconditioner ``P (sK + σ̄²I)⁻¹ Pᵀ``
    (σ̄² the mean noise), as ``kron::pcg``: Kronecker mat-vecs for the whole batch at once,
    per-row step sizes on the device; converged rows are frozen. Two scalar reads per
    iteration (the largest relative residual, whether some ``pᵀAp ≤ 0``). Returns
    ``(x, n_iter, max relative residual, converged)``."""
    xp = array_module(b)
    dt = b.dtype
    R, m = (int(s) for s in b.shape)
    N = int(np.prod([q.shape[0] for q in qs]))
    lam = gk.grid_eigenvalues(lams, scale)
    nm = float(noise.astype(_F64).mean()) if hasattr(noise, "shape") and noise.ndim else float(noise)
    inv = 1 / (lam + lam.dtype.type(nm))
    qts = [q.T for q in qs]

    def scatter(v):
        full = xp.zeros((R, N), dtype=dt)
        full[:, obs] = v
        return full

    def apply(v):
        kv = gk.kron_apply(list(qs), gk.kron_apply(qts, scatter(v)) * lam[None, :])
        return kv[:, obs] + noise * v

    def precondition(r):
        return gk.kron_apply(list(qs), gk.kron_apply(qts, scatter(r)) * inv[None, :])[:, obs]

    def dot(a, c):
        return (a.astype(_F64) * c.astype(_F64)).sum(axis=1)

    bnorm = xp.sqrt(dot(b, b))
    x = xp.zeros_like(b)
    if float(bnorm.max()) == 0.0:
        return x, 0, 0.0, True
    safe = xp.where(bnorm > 0, bnorm, 1.0)
    r = b.copy()
    z = precondition(r)
    p = z.copy()
    rz = dot(r, z)
    active = bnorm > 0
    rel_max = 1.0
    for it in range(int(max_iter)):
        ap = apply(p)
        pap = dot(p, ap)
        if bool((active & ~(pap > 0)).any()):
            return x, it, rel_max, False
        a = xp.where(active, rz / xp.where(active, pap, 1.0), 0.0)
        x = x + a.astype(dt)[:, None] * p
        r = r - a.astype(dt)[:, None] * ap
        rel = xp.sqrt(dot(r, r)) / safe
        rel_max = float(xp.where(bnorm > 0, rel, 0.0).max())
        if rel_max <= tol:
            return x, it + 1, rel_max, True
        active = rel > tol
        z = precondition(r)
        rz_new = dot(r, z)
        beta = xp.where(active, rz_new / xp.where(rz != 0, rz, 1.0), 0.0)
        rz = xp.where(active, rz_new, rz)
        p = xp.where(active[:, None], z + beta.astype(dt)[:, None] * p, p)
    return x, int(max_iter), rel_max, False


def wilson_logdet(lams, scale: float, n_obs: int, noise_mean: float) -> tuple[float, Any]:
    """``Σ_{n_obs largest λ} log((n/N) λ + σ̄²)`` and the selection mask (``kron::wilson_logdet``;
    ties broken by index: a stable sort of ``−λ``)."""
    lam = gk.grid_eigenvalues(lams, scale)
    xp = array_module(lam)
    N = int(lam.shape[0])
    if not (0 < n_obs <= N):
        raise ValueError(f"n_obs must be in 1..={N}, got {n_obs}")
    order = xp.argsort(-lam, kind="stable") if xp is np else xp.argsort(-lam)  # cupy's sort is stable
    mask = xp.zeros(N, dtype=bool)
    mask[order[:n_obs]] = True
    ratio = n_obs / N
    val = float(xp.where(mask, xp.log(ratio * lam.astype(_F64) + noise_mean), 0.0).sum())
    return val, mask


def lml_incomplete(qs, lams, scale: float, obs: Any, noise: Any, y: Any, tol: float, max_iter: int, grad: bool) -> dict:
    """``_core.gp_lml_incomplete``: the Wilson et al. (2014) approximate LML of the observed
    values `y` (m,) with PCG for ``α``, and the exact gradient of that approximation."""
    xp = array_module(y)
    m = int(y.shape[0])
    N = int(np.prod([q.shape[0] for q in qs]))
    x, n_iter, rel, conv = pcg(qs, lams, scale, obs, noise, y[None, :], tol, max_iter)
    if not math.isfinite(rel):
        raise ValueError("conjugate gradients broke down (non-finite residual)")
    x = x[0]
    nm = float(noise.astype(_F64).mean())
    logdet, mask = wilson_logdet(lams, scale, m, nm)
    fit = float((y.astype(_F64) * x.astype(_F64)).sum())
    value = -0.5 * fit - 0.5 * logdet - 0.5 * m * math.log(2 * math.pi)
    alpha = xp.zeros((1, N), dtype=y.dtype)
    alpha[0, obs] = x
    out = {"value": value, "alpha": alpha, "n_iter": n_iter, "rel_residual": rel, "converged": conv}
    if grad:
        r = m / N
        lam = gk.grid_eigenvalues(lams, scale).astype(_F64)
        w = xp.where(mask, r / (r * lam + nm), 0.0)
        at = gk.kron_apply([q.T for q in qs], alpha)
        a2 = at.astype(_F64)[0] ** 2
        fit_l = float((lam * a2).sum())
        tr_l = float((lam * w).sum())
        out["d_scale"] = 0.5 * (fit_l - tr_l) / scale if scale > 0 else 0.0
        out["d_noise"] = 0.5 * float((x.astype(_F64) ** 2).sum()) - 0.5 * float(w.sum()) / r
        out["d_factor"] = factor_gradients(qs, lams, scale, at, w, 1.0)
    return out


# ---------------------------------------------------------------------------------------
# Predictions at scattered points (predict.rs), by row-wise Kronecker contractions
# ---------------------------------------------------------------------------------------

#: Elements of the intermediate (N / n_D) × points block of a row-wise contraction.
_CONTRACT_BLOCK = 1 << 25


def rowwise_contract(t: Any, cross: Sequence[Any]) -> Any:
    """``⟨t, c₁[m] ⊗ … ⊗ c_D[m]⟩`` for every row m of the ``cross[d]`` (M × n_d), with `t`
    a C-order grid (N,): the last dimension by one GEMM, the others by batched reductions,
    in float64, over blocks of points so the intermediate stays below ``_CONTRACT_BLOCK``."""
    xp = array_module(t)
    shape = [int(c.shape[1]) for c in cross]
    M = int(cross[0].shape[0])
    rest = int(np.prod(shape[:-1])) if len(shape) > 1 else 1
    step = max(1, _CONTRACT_BLOCK // max(rest, 1))
    T = t.astype(_F64).reshape(rest, shape[-1])
    outs = []
    for s in range(0, M, step):
        Z = T @ cross[-1][s : s + step].astype(_F64).T  # (rest, m)
        for d in range(len(shape) - 2, -1, -1):
            Z = Z.reshape(-1, shape[d], Z.shape[-1])
            Z = (Z * cross[d][s : s + step].astype(_F64).T[None]).sum(axis=1)
        outs.append(Z.reshape(-1))
    return xp.concatenate(outs) if len(outs) > 1 else outs[0]


def row_kron(C: Sequence[Any]) -> Any:
    """Row-wise Kronecker products ``c₁[m] ⊗ … ⊗ c_D[m]`` (M × N, float64): small M only."""
    V = C[0].astype(_F64)
    for c in C[1:]:
        V = (V[:, :, None] * c.astype(_F64)[:, None, :]).reshape(V.shape[0], -1)
    return V


# ---------------------------------------------------------------------------------------
# Input checks and grid detection on the device
# ---------------------------------------------------------------------------------------


def check_targets(y: Any, n: int) -> Any:
    """``y`` (n,) or (n, T) on the device: numeric, finite; float32/float64 kept."""
    if not hasattr(y, "shape") or not hasattr(y, "dtype"):
        raise TypeError(f"y must be an array, got {type(y).__name__}")
    if y.ndim not in (1, 2):
        raise ValueError(f"y must be 1-D or 2-D, got an array of shape {tuple(y.shape)}")
    if y.shape[0] != n:
        raise ValueError(f"Found input variables with inconsistent numbers of samples: [{n}, {y.shape[0]}]")
    y2 = check_array(y.reshape(n, -1), name="y")
    return y2.reshape(y.shape)


def check_axes(axes: Any) -> list[Any]:
    """``fit_grid``'s axes on the device: 1-D, real, finite, ≥ 2 distinct coordinates each;
    returned as float64."""
    if not isinstance(axes, (list, tuple)):
        raise TypeError("axes must be a list of 1-D coordinate arrays, one per grid dimension")
    out = []
    for d, a in enumerate(axes):
        xp = array_module(a)
        if not hasattr(a, "dtype") or a.ndim != 1 or np.dtype(a.dtype).kind not in "iuf":
            raise ValueError(f"axes[{d}] must be a 1-D array of real coordinates")
        a = a.astype(_F64)
        if not bool(xp.isfinite(a).all()):
            raise ValueError(f"axes[{d}] contains NaN or infinity")
        if a.shape[0] < 2:
            raise ValueError(f"axes[{d}] has {a.shape[0]} coordinate(s); every grid dimension needs at least 2")
        if int(xp.unique(a).shape[0]) != a.shape[0]:
            raise ValueError(f"axes[{d}] has duplicate coordinates")
        out.append(a)
    return out


def same_device(name: str, **arrays: Any) -> None:
    """All named arrays on the device (TypeError naming the first that is not)."""
    check_same_device(name, "cupy", *arrays.items())


def positive_int(v: Any, name: str) -> int:
    if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
        raise ValueError(f"{name} must be a positive integer, got {v!r}")
    return int(v)


def warn_cg(out: dict, tol: float) -> None:
    if not out["converged"]:
        from sklearn.exceptions import ConvergenceWarning

        warnings.warn(
            f"conjugate gradients stopped after {out['n_iter']} iterations at relative residual "
            f"{out['rel_residual']:.1e} (cg_tol={tol}); raise cg_max_iter or bound the noise "
            "level away from zero",
            ConvergenceWarning,
            stacklevel=4,
        )


# ---------------------------------------------------------------------------------------
# GridGPRegressor on the device
# ---------------------------------------------------------------------------------------


def _G():
    from rankcore import gp  # imported late: rankcore.gp imports this module lazily too

    return gp


def _eig(est: Any, model: Any) -> tuple[list[Any], list[Any]]:
    xp = array_module(est.axes_[0])
    Ks = [xp.ascontiguousarray(factor_matrix(model, d, ax, ax).astype(est._dtype)) for d, ax in enumerate(est.axes_)]
    return gk.eigh(Ks)


def _core_lml(est: Any, model: Any, qs, lams, grad: bool) -> dict:
    xp = array_module(est._Y)
    noise = est._noise(model)
    if est.incomplete_:
        m = int(est._obs_flat.shape[0])
        nz = xp.broadcast_to(xp.asarray(noise, dtype=_F64), (m,))
        if bool((nz <= 0).any()):
            raise ValueError("the noise variance (alpha + WhiteKernel) must be positive")
        out = lml_incomplete(qs, lams, model.scale, est._obs_flat, xp.ascontiguousarray(nz.astype(est._dtype)),
                             xp.ascontiguousarray(est._Y[0, est._obs_flat]), float(est.cg_tol), int(est.cg_max_iter), grad)
        warn_cg(out, est.cg_tol)
        return out
    noise = float(noise)
    if not noise > 0:
        raise ValueError("the noise variance alpha + WhiteKernel noise_level must be positive for a grid GP")
    if model.offset_parts:
        return lml_offset(qs, lams, model.scale, noise, model.offset, est._Y, grad)
    return lml_full(qs, lams, model.scale, noise, est._Y, grad)


def lml(est: Any, model: Any, grad: bool) -> tuple[float, np.ndarray]:
    """``GridGPRegressor._lml`` on the device: the value and the (host, hyperparameter-sized)
    gradient with respect to the log-hyperparameters."""
    qs, lams = _eig(est, model)
    out = _core_lml(est, model, qs, lams, grad)
    if not grad:
        return out["value"], np.empty(0)
    fgrad = factor_hyper_grads(model, est.axes_, out["d_factor"])
    return out["value"], _G()._assemble_gradient(model, out, fgrad)


def finish(est: Any, model: Any, opt_value: float | None) -> None:
    """``GridGPRegressor._finish`` on the device (α, eigendecompositions, the constant term)."""
    qs, lams = _eig(est, model)
    out = _core_lml(est, model, qs, lams, False)
    est._qs, est._lams = qs, lams
    est._offset = out.get("offset")
    est._mc_var = None
    est.log_marginal_likelihood_value_ = float(out["value"]) if opt_value is None else opt_value
    est._alpha_grid = out["alpha"]
    a = out["alpha"][:, est._flat].T
    est.alpha_ = a[:, 0] if est.y_train_.ndim == 1 else a
    if est.incomplete_:
        est._cg = (out["n_iter"], out["rel_residual"], out["converged"])


def _check_alpha(alpha: Any, name: str) -> Any:
    """Scalar alpha as a float (a 0-d device array: one scalar read); an array alpha must
    live on the device (TypeError otherwise)."""
    from rankcore._backend import namespace

    if namespace(alpha) == "cupy":
        return float(alpha) if alpha.ndim == 0 else alpha
    if np.ndim(alpha) == 0:
        return float(alpha)
    check_same_device(name, "cupy", ("alpha", alpha))
    return alpha


def fit(est: Any, X: Any, y: Any) -> Any:
    same_device("GridGPRegressor.fit", X=X, y=y)
    X = check_array(X, name="X")
    y = check_targets(y, int(X.shape[0]))
    if y.dtype != X.dtype:
        y = y.astype(X.dtype)
    from rankcore.gp import _grid_or_error

    axes, flat = _grid_or_error(X)
    xp = array_module(X)
    N = int(np.prod([int(a.shape[0]) for a in axes]))
    est.n_features_in_ = int(X.shape[1])
    est.__dict__.pop("feature_names_in_", None)
    return _fit(est, [a.astype(_F64) for a in axes], xp.ones(N, dtype=bool), X, y, est.alpha, flat)


def fit_grid(est: Any, axes: Any, Y: Any) -> Any:
    if not isinstance(axes, (list, tuple)):
        raise TypeError("axes must be a list of 1-D coordinate arrays, one per grid dimension")
    same_device("GridGPRegressor.fit_grid", Y=Y, **{f"axes[{d}]": a for d, a in enumerate(axes)})
    axs = check_axes(axes)
    xp = array_module(Y)
    if np.dtype(Y.dtype).kind not in "iuf":
        raise TypeError(f"Y must be numeric, got dtype {Y.dtype}")
    dtype = Y.dtype if Y.dtype in (np.float32, np.float64) else np.dtype(_F64)
    Y = Y.astype(dtype)
    shape = tuple(int(a.shape[0]) for a in axs)
    if tuple(Y.shape) != shape:
        raise ValueError(f"Y has shape {tuple(Y.shape)}, but the axes span a grid of shape {shape}")
    if bool(xp.isinf(Y).any()):
        raise ValueError("Y contains infinity (NaN marks missing cells)")
    obs = ~xp.isnan(Y).ravel()
    if int(obs.sum()) < 2:
        raise ValueError("Y must have at least 2 observed (non-NaN) cells")
    flat = xp.flatnonzero(obs)
    mesh = xp.meshgrid(*axs, indexing="ij")
    X = xp.stack([m.ravel()[flat] for m in mesh], axis=1).astype(dtype)
    y = Y.ravel()[flat]
    alpha = _check_alpha(est.alpha, "GridGPRegressor.fit_grid")
    if not isinstance(alpha, float):
        if tuple(alpha.shape) != shape:
            raise ValueError(f"alpha must be a scalar or have the grid's shape {shape}, got {tuple(alpha.shape)}")
        alpha = alpha.astype(_F64).ravel()[flat]
    est.n_features_in_ = len(axs)
    est.__dict__.pop("feature_names_in_", None)
    return _fit(est, axs, obs, X, y, alpha, flat)


def _fit(est, axes, obs, X, y, alpha, flat) -> Any:
    """``GridGPRegressor._fit`` on the device: `obs` marks the observed grid cells, `flat`
    is each row's cell index (rows of X and y), `alpha` a float or a device array."""
    G = _G()
    xp = array_module(X)
    model = G._make_model(est.kernel, len(axes))
    n_seen = int(y.shape[1]) if y.ndim > 1 else 1
    est._check_fit_params(n_seen)
    a = _check_alpha(alpha, "GridGPRegressor.fit")
    if isinstance(a, float):
        if not (math.isfinite(a) and a >= 0):
            raise ValueError("alpha must be non-negative and finite")
    else:
        a = a.astype(_F64)
        if bool((~xp.isfinite(a)).any()) or bool((a < 0).any()):
            raise ValueError("alpha must be non-negative and finite")
        if a.ndim > 0 and tuple(a.shape) != (int(y.shape[0]),):
            raise ValueError(f"alpha must be a scalar or have shape ({int(y.shape[0])},), got {tuple(a.shape)}")
    est.incomplete_ = bool(not bool(obs.all()) or not isinstance(a, float))
    if est.incomplete_ and y.ndim > 1:
        raise ValueError("incomplete grids and per-sample alpha support one target only")
    if est.incomplete_ and model.offset_parts:
        raise NotImplementedError(
            "a ConstantKernel term added to the kernel (a constant offset) is not supported on "
            "incomplete grids or with per-sample alpha (the conjugate-gradient path); use "
            "normalize_y=True or centre y instead"
        )
    est._dtype = np.dtype(X.dtype)
    est.axes_ = list(axes)
    est.grid_shape_ = tuple(int(ax.shape[0]) for ax in axes)
    est.X_train_ = X.copy() if est.copy_X_train else X
    if est.normalize_y:
        est._y_train_mean = y.astype(_F64).mean(axis=0)
        std = y.astype(_F64).std(axis=0)
        est._y_train_std = xp.where(std == 0, 1.0, std)
        y = ((y - est._y_train_mean) / est._y_train_std).astype(est._dtype)
    else:
        est._y_train_mean = xp.zeros(() if y.ndim == 1 else tuple(y.shape[1:]))
        est._y_train_std = 1.0
    est.y_train_ = y
    est._flat = flat
    est._obs_flat = xp.flatnonzero(obs).astype(xp.int64)
    est._alpha_rows = a
    if not isinstance(a, float):
        cells = xp.empty(int(est._obs_flat.shape[0]), dtype=_F64)
        cells[xp.searchsorted(est._obs_flat, flat)] = a
        a = cells
    est._alpha_cells = a
    N = int(obs.shape[0])
    ygrid = xp.zeros((N,) + tuple(y.shape[1:]), dtype=est._dtype)
    ygrid[flat] = y
    est._Y = xp.ascontiguousarray(ygrid.reshape(N, -1).T)
    est._on_device = True
    return est._fit_model(model)


def _prior_mean_std(est: Any, X: Any, return_std: bool, return_cov: bool):
    G = _G()
    xp = array_module(X)
    model = G._make_model(est.kernel, int(X.shape[1]))
    T = est._check_n_targets()
    mean = xp.zeros((int(X.shape[0]), T)).squeeze()
    if not (return_std or return_cov):
        return mean
    X64 = X.astype(_F64)
    if return_cov:
        out = prior_matrix(model, X64, X64) + model.offset + model.white * xp.eye(int(X.shape[0]))
    else:
        out = xp.full(int(X.shape[0]), math.sqrt(prior_diag(model) + model.offset + model.white))
    return mean, (xp.repeat(out[..., None], T, axis=-1) if T > 1 else out)


def _dense_check(X: Any, est: Any, reset: bool = False) -> Any:
    from rankcore._gpu._arrays import is_sparse, validate_estimator_data

    Xv = validate_estimator_data(est, X, reset=reset)
    if is_sparse(Xv):
        raise TypeError("X is a sparse matrix; GridGPRegressor needs dense coordinates")
    return Xv


def predict(est: Any, X: Any, return_std: bool = False, return_cov: bool = False):
    if return_std and return_cov:
        raise RuntimeError("At most one of return_std or return_cov can be requested.")
    if not hasattr(est, "_model"):
        same_device("GridGPRegressor.predict", X=X)
        return _prior_mean_std(est, check_array(X, name="X"), return_std, return_cov)
    X = _dense_check(X, est)
    if X.shape[1] != len(est.axes_):
        raise ValueError(f"X has {X.shape[1]} features, but the grid has {len(est.axes_)} dimensions")
    model = est._model
    mean, var, p = _predict_mean_var(est, model, X, return_std)
    cov = _predict_cov(est, model, X, p) if return_cov else None
    from rankcore.gp import _denormalise

    return _denormalise(est, model, int(X.shape[0]), mean, var, cov)


def _predict_mean_var(est, model, X, want_var):
    xp = array_module(X)
    off = est._offset
    rows = est._alpha_grid if off is None else xp.concatenate([est._alpha_grid, off.v.astype(est._dtype)[None]], axis=0)
    mean, var = _product_mean_var(est, model, X, rows, want_var)
    if off is None:
        return mean, var, None
    p = mean[-1]
    mean = mean[:-1] + off.c * off.one_alpha[:, None]
    return mean, (None if var is None else var + off.gain * (1.0 - p) ** 2), p


def _product_mean_var(est, model, X, rows, want_var):
    xp = array_module(X)
    s = model.scale
    from rankcore.gp import _detect_grid

    g = _detect_grid(X) if X.shape[0] > 1 else None
    if g is None:  # scattered points: row-wise Kronecker contractions, O(N) per point
        C = [factor_matrix(model, d, X[:, d], est.axes_[d]).astype(est._dtype) for d in range(X.shape[1])]
        mean = xp.stack([s * rowwise_contract(rows[i], C) for i in range(int(rows.shape[0]))])
        var = None
        if want_var:
            if est.incomplete_:
                var = _incomplete_var(est, model, X)
            else:
                P2 = [(c.astype(_F64) @ q.astype(_F64)) ** 2 for c, q in zip(C, est._qs)]
                lam = gk.grid_eigenvalues([l.astype(_F64) for l in est._lams], s)
                var = xp.maximum(prior_diag(model) - s * s * rowwise_contract(1.0 / (lam + float(est._noise(model))), P2), 0.0)
        return mean, var
    axes, flat = g
    C = [xp.ascontiguousarray(factor_matrix(model, d, ax, est.axes_[d]).astype(est._dtype)) for d, ax in enumerate(axes)]
    mean = gk.kron_apply(C, xp.ascontiguousarray(rows)).astype(_F64)[:, flat] * s
    var = None
    if want_var:
        if est.incomplete_:
            var = _incomplete_var(est, model, X)
        else:
            P2 = [xp.ascontiguousarray((c @ q) ** 2) for c, q in zip(C, est._qs)]
            lam = gk.grid_eigenvalues([l.astype(_F64) for l in est._lams], s)
            w = (1.0 / (lam + float(est._noise(model)))).astype(est._dtype)[None, :]
            var = prior_diag(model) - s * s * gk.kron_apply(P2, w)[0].astype(_F64)[flat]
    return mean, var


def _cells(est, X):
    xp = array_module(X)
    idx = []
    for d, ax in enumerate(est.axes_):
        order = xp.argsort(ax)
        srt = ax[order]
        pos = xp.clip(xp.searchsorted(srt, X[:, d]), 0, int(ax.shape[0]) - 1)
        if not bool((srt[pos] == X[:, d]).all()):
            return None
        idx.append(order[pos])
    return xp.ravel_multi_index(tuple(idx), est.grid_shape_)


def _incomplete_var(est, model, X):
    G = _G()
    xp = array_module(X)
    X = X.astype(_F64)
    n = int(est.X_train_.shape[0])
    if n <= G._DENSE_VAR_LIMIT:
        Xo = est.X_train_.astype(_F64)
        Koo = prior_matrix(model, Xo, Xo) + xp.diag(xp.broadcast_to(xp.asarray(est._noise_rows(model), dtype=_F64), (n,)))
        Kxo = prior_matrix(model, X, Xo)
        la = linalg(xp)
        L = la.cholesky_lower(Koo)
        if L is None:
            raise np.linalg.LinAlgError("the covariance of the observed cells is not positive definite")
        V = la.solve_lower(L, Kxo.T)
        return prior_diag(model) - (V * V).sum(axis=0)
    cells = _cells(est, X)
    if cells is None:
        raise NotImplementedError(
            f"predictive std/cov at off-grid points of an incomplete grid with more than {G._DENSE_VAR_LIMIT} "
            "observed cells is not implemented; predict at the grid cells instead"
        )
    if getattr(est, "_mc_var", None) is None:
        est._mc_var = _mc_grid_var(est, model)
    return est._mc_var[cells]


def _mc_grid_var(est, model):
    """Monte Carlo latent variance on the grid from ``_MC_SAMPLES`` pathwise samples
    (Matheron's rule; ``GridGPRegressor._mc_grid_var``), drawn by the device generator."""
    G = _G()
    xp = array_module(est._Y)
    rng = xp.random.default_rng(0)
    S = G._MC_SAMPLES
    dt = est._dtype
    lam = gk.grid_eigenvalues([l.astype(_F64) for l in est._lams], model.scale)
    N = int(lam.shape[0])
    qs = est._qs
    qts = [q.T for q in qs]
    obs = est._obs_flat
    m = int(obs.shape[0])
    nz = xp.ascontiguousarray(xp.broadcast_to(xp.asarray(est._noise(model), dtype=_F64), (m,)).astype(dt))
    f = gk.kron_apply(qs, xp.ascontiguousarray((xp.sqrt(lam) * rng.standard_normal((S, N))).astype(dt)))
    rhs = xp.ascontiguousarray((f[:, obs] + xp.sqrt(nz.astype(_F64)) * rng.standard_normal((S, m))).astype(dt))
    v, _, _, _ = pcg(qs, est._lams, model.scale, obs, nz, rhs, 1e-6, int(est.cg_max_iter))
    full = xp.zeros((S, N), dtype=dt)
    full[:, obs] = v
    Kv = gk.kron_apply(qs, xp.ascontiguousarray((gk.kron_apply(qts, full) * lam).astype(dt)))
    return ((f.astype(_F64) - Kv) ** 2).mean(axis=0)


def _predict_cov(est, model, X, p=None):
    G = _G()
    xp = array_module(X)
    X64 = X.astype(_F64)
    prior = prior_matrix(model, X64, X64)
    if est.incomplete_:
        n = int(est.X_train_.shape[0])
        if n > G._DENSE_VAR_LIMIT:
            raise NotImplementedError(
                f"return_cov on an incomplete grid with more than {G._DENSE_VAR_LIMIT} observed cells is not implemented"
            )
        Xo = est.X_train_.astype(_F64)
        Koo = prior_matrix(model, Xo, Xo) + xp.diag(xp.broadcast_to(xp.asarray(est._noise_rows(model), dtype=_F64), (n,)))
        Kxo = prior_matrix(model, X64, Xo)
        return prior - Kxo @ xp.linalg.solve(Koo, Kxo.T)
    s = model.scale
    P = [factor_matrix(model, d, X64[:, d], est.axes_[d]) @ q.astype(_F64) for d, q in enumerate(est._qs)]
    V = row_kron(P)
    lam = gk.grid_eigenvalues([l.astype(_F64) for l in est._lams], s)
    cov = prior - s * s * (V / (lam + float(est._noise(model)))) @ V.T
    if p is not None:
        cov = cov + est._offset.gain * xp.outer(1.0 - p, 1.0 - p)
    return cov


def _device_rng(xp: Any, random_state: Any) -> Any:
    """A generator on the device: ints and None seed ``xp.random.default_rng``; a device
    generator (anything cupy with ``standard_normal``) is used as is; a host generator is a
    TypeError (its draws would have to be copied to the device)."""
    from rankcore._backend import namespace

    if random_state is None or isinstance(random_state, (numbers.Integral, np.integer)):
        return xp.random.default_rng(None if random_state is None else int(random_state))
    if hasattr(random_state, "standard_normal") and (xp is np or namespace(random_state) == "cupy"):
        return random_state
    raise TypeError(
        "random_state must be None, an int or a cupy random generator for device (cupy) data, "
        f"got {type(random_state).__name__}"
    )


def _mvn(xp, rng, mean, cov, n_samples):
    """Samples (M, n_samples) of N(mean, cov) for a PSD `cov` (eigen-factor, as NumPy's
    ``multivariate_normal`` uses an SVD: singular covariances are fine)."""
    w, V = xp.linalg.eigh(cov.astype(_F64))
    A = V * xp.sqrt(xp.maximum(w, 0.0))[None, :]
    z = rng.standard_normal((int(cov.shape[0]), n_samples))
    return mean.astype(_F64)[:, None] + A @ z


def sample_y(est: Any, X: Any, n_samples: int = 1, random_state: Any = 0):
    """``GridGPRegressor.sample_y`` on the device (draws from the device generator)."""
    n_samples = positive_int(n_samples, "n_samples")
    fitted = hasattr(est, "_model")
    if fitted:
        X = _dense_check(X, est)
    else:
        same_device("GridGPRegressor.sample_y", X=X)
        X = check_array(X, name="X")
    xp = array_module(X)
    rng = _device_rng(xp, random_state)
    on_grid = (fitted and not est.incomplete_ and tuple(X.shape) == tuple(est.X_train_.shape)
               and bool((X == est.X_train_).all()))
    if not on_grid:
        mean, cov = predict(est, X, return_cov=True)
        if mean.ndim == 1:
            return _mvn(xp, rng, mean, cov, n_samples).astype(mean.dtype)
        return xp.stack([_mvn(xp, rng, mean[:, t], cov[..., t], n_samples) for t in range(mean.shape[1])], axis=1).astype(mean.dtype)
    model = est._model
    mean = predict(est, X).astype(_F64)
    N = int(X.shape[0])
    lam = gk.grid_eigenvalues([l.astype(_F64) for l in est._lams], model.scale)
    s2 = float(est._noise(model))
    T = 1 if mean.ndim == 1 else int(mean.shape[1])
    z = rng.standard_normal((T * n_samples, N))
    zt = xp.ascontiguousarray((xp.sqrt(lam * s2 / (lam + s2)) * z).astype(est._dtype))
    f = gk.kron_apply(est._qs, zt).astype(_F64)
    f = f[:, est._flat].reshape(T, n_samples, N).transpose(2, 0, 1)
    if est._offset is not None:
        v = est._offset.v[est._flat][:, None, None]
        f = f + s2 * math.sqrt(est._offset.gain) * v * rng.standard_normal((1, T, n_samples))
    if model.white > 0:
        f = f + math.sqrt(model.white) * rng.standard_normal(f.shape)
    std_y = xp.reshape(xp.asarray(est._y_train_std, dtype=_F64), (1, -1, 1))
    out = mean.reshape(N, T, 1) + f * std_y
    return (out[:, 0, :] if mean.ndim == 1 else out).astype(est._dtype)
