"""Gaussian-process regression on Cartesian grids with Kronecker-structured covariances.

A product kernel ``k(x, x') = s Π_d k_d(x_d, x'_d)`` evaluated on a grid gives the covariance
``s K₁ ⊗ … ⊗ K_D``; with per-dimension eigendecompositions the log marginal likelihood, its
gradient and the predictions cost ``O(Σ n_d³ + N Σ n_d)`` instead of ``O(N³)`` (Saatçi 2012;
Wilson et al. 2014). :class:`GridGPRegressor` is a drop-in for scikit-learn's
``GaussianProcessRegressor`` on grid data: it accepts the separable scikit-learn kernels
(plus a constant offset ``+ ConstantKernel``, a rank-one Kronecker term handled exactly by
Sherman–Morrison) and rankcore's own per-dimension product kernels (:class:`ProductKernel` of
1-D kernels, including spectral mixtures).

References
----------
Saatçi, Y. (2012). Scalable inference for structured Gaussian process models. PhD thesis.
Wilson, A. G., Gilboa, E., Nehorai, A., Cunningham, J. P. (2014). Fast kernel learning for
multidimensional pattern extrapolation. NeurIPS.
Wilson, A. G., Adams, R. P. (2013). Gaussian process kernels for pattern discovery and
extrapolation. ICML.
"""

from __future__ import annotations

import copy
import numbers
import warnings
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import scipy.linalg
import scipy.optimize
from sklearn.base import BaseEstimator, MultiOutputMixin, RegressorMixin
from sklearn.exceptions import ConvergenceWarning
from sklearn.gaussian_process import kernels as skk
from sklearn.utils import check_random_state
from sklearn.utils.validation import check_is_fitted, validate_data

from rankcore import _core
from rankcore._gpu._arrays import array_module

__all__ = [
    "GridGPRegressor",
    "Kernel1D",
    "Matern1D",
    "Periodic1D",
    "ProductKernel",
    "RBF1D",
    "RationalQuadratic1D",
    "SpectralMixture1D",
]

_LOG_BOUNDS = (1e-5, 1e5)
#: Incomplete grids: exact dense predictive variance up to this many observed cells.
_DENSE_VAR_LIMIT = 1000
#: Incomplete grids beyond that: pathwise samples for the Monte Carlo variance.
_MC_SAMPLES = 128


# ---------------------------------------------------------------------------------------
# rankcore's own kernels: 1-D factors and their product over grid dimensions
# ---------------------------------------------------------------------------------------


class Kernel1D:
    """A stationary 1-D kernel with unit amplitude, evaluated by the Rust core.

    Parameters are optimised in log space within ``bounds`` (pairs of positive numbers, or
    ``"fixed"``). Subclasses name the parameters; :attr:`kind` is the core's kernel name.
    """

    kind: str = ""

    def __init__(self, params: Sequence[float], bounds: Any = _LOG_BOUNDS) -> None:
        self.params = np.asarray(params, dtype=np.float64).copy()
        self.bounds = bounds

    def matrix(self, x1: np.ndarray, x2: np.ndarray, a: int = 0, b: int = 0) -> np.ndarray:
        """``∂ᵃ_x ∂ᵇ_x' k(x1[i], x2[j])`` (``a + b ≤ 2``), float64."""
        return _core.gp_kernel_matrix(
            self.kind, self.params, np.ascontiguousarray(x1, np.float64), np.ascontiguousarray(x2, np.float64), a, b
        )

    def grads(self, x1: np.ndarray, x2: np.ndarray) -> list[np.ndarray]:
        """``[∂K/∂θ_p]`` for every raw parameter θ_p."""
        return _core.gp_kernel_grads(
            self.kind, self.params, np.ascontiguousarray(x1, np.float64), np.ascontiguousarray(x2, np.float64)
        )

    def grad_contract(self, x: np.ndarray, W: np.ndarray) -> np.ndarray:
        """``[Σ_ij ∂K_p[i, j] W[i, j]]_p`` on ``x × x`` without forming the ∂K/∂θ_p
        matrices (GIL released), float64 of shape (n_params,)."""
        return np.asarray(
            _core.gp_kernel_grad_contract(
                self.kind, self.params, np.ascontiguousarray(x, np.float64), np.ascontiguousarray(W, np.float64)
            )
        )

    def _bounds_array(self) -> np.ndarray:
        b = self.bounds
        if isinstance(b, str):
            return np.empty((0, 2))
        b = np.asarray(b, dtype=np.float64)
        if b.shape == (2,):
            b = np.tile(b, (len(self.params), 1))
        return b

    def __repr__(self) -> str:
        return f"{type(self).__name__}({', '.join(f'{v:.4g}' for v in self.params)})"

    def __eq__(self, other: object) -> bool:
        return type(self) is type(other) and np.array_equal(self.params, other.params)  # type: ignore[attr-defined]


class RBF1D(Kernel1D):
    """``exp(−r²/2ℓ²)``."""

    kind = "rbf"

    def __init__(self, length_scale: float = 1.0, bounds: Any = _LOG_BOUNDS) -> None:
        super().__init__([length_scale], bounds)


class Matern1D(Kernel1D):
    """Matérn kernel with ``nu`` ∈ {0.5, 1.5, 2.5}."""

    def __init__(self, length_scale: float = 1.0, nu: float = 1.5, bounds: Any = _LOG_BOUNDS) -> None:
        kinds = {0.5: "matern12", 1.5: "matern32", 2.5: "matern52"}
        if nu not in kinds:
            raise ValueError(f"nu must be 0.5, 1.5 or 2.5, got {nu!r}")
        self.kind = kinds[nu]
        self.nu = nu
        super().__init__([length_scale], bounds)


class RationalQuadratic1D(Kernel1D):
    """``(1 + r²/(2αℓ²))^−α``; parameters ``[length_scale, alpha]``."""

    kind = "rq"

    def __init__(self, length_scale: float = 1.0, alpha: float = 1.0, bounds: Any = _LOG_BOUNDS) -> None:
        super().__init__([length_scale, alpha], bounds)


class Periodic1D(Kernel1D):
    """``exp(−2 sin²(πr/p)/ℓ²)`` (scikit-learn's ``ExpSineSquared``); ``[length_scale, periodicity]``."""

    kind = "periodic"

    def __init__(self, length_scale: float = 1.0, periodicity: float = 1.0, bounds: Any = _LOG_BOUNDS) -> None:
        super().__init__([length_scale, periodicity], bounds)


class SpectralMixture1D(Kernel1D):
    """``Σ_q w_q base(r; ℓ_q) cos(2π f_q r)``.

    ``base="gaussian"`` is the spectral mixture of Wilson & Adams (2013) (a Gaussian mixture
    spectral density with means ``f_q`` and variances ``1/(2πℓ_q)²``); ``base="matern52"`` is
    the Student-t mixture spectrum of GP-HM (Fang et al. 2024). Parameters are
    ``[weights, frequencies, length_scales]`` (``3Q``), all positive and learned in log space.
    """

    def __init__(
        self,
        weights: Sequence[float],
        frequencies: Sequence[float],
        length_scales: Sequence[float],
        base: str = "gaussian",
        bounds: Any = _LOG_BOUNDS,
    ) -> None:
        w, f, ll = (np.atleast_1d(np.asarray(v, dtype=np.float64)) for v in (weights, frequencies, length_scales))
        if not (len(w) == len(f) == len(ll) > 0):
            raise ValueError("weights, frequencies and length_scales must have the same positive length")
        if base not in ("gaussian", "matern52"):
            raise ValueError(f"base must be 'gaussian' or 'matern52', got {base!r}")
        self.kind = "sm" if base == "gaussian" else "stm"
        self.base = base
        super().__init__(np.concatenate([w, f, ll]), bounds)


class ProductKernel:
    """``s · Π_d k_d(x_d, x'_d)`` (+ a white-noise level): one 1-D kernel per grid dimension.

    Parameters
    ----------
    factors : list of Kernel1D
        One per grid dimension (in the order of the columns of X / the axes).
    signal_variance : float, default=1.0
    noise_level : float or None, default=None
        A learnable white-noise variance (the role of scikit-learn's ``WhiteKernel``).
    signal_variance_bounds, noise_level_bounds : pair or "fixed", default=(1e-5, 1e5)

    The hyperparameter vector ``theta`` is the log of, in order: the signal variance, each
    factor's parameters, the noise level (fixed ones left out), as in scikit-learn.
    """

    def __init__(
        self,
        factors: Sequence[Kernel1D],
        signal_variance: float = 1.0,
        noise_level: float | None = None,
        signal_variance_bounds: Any = _LOG_BOUNDS,
        noise_level_bounds: Any = _LOG_BOUNDS,
    ) -> None:
        self.factors = list(factors)
        self.signal_variance = signal_variance
        self.noise_level = noise_level
        self.signal_variance_bounds = signal_variance_bounds
        self.noise_level_bounds = noise_level_bounds

    def __repr__(self) -> str:
        f = " * ".join(map(repr, self.factors))
        n = f" + White({self.noise_level:.4g})" if self.noise_level is not None else ""
        return f"{self.signal_variance:.4g} * {f}{n}"


# ---------------------------------------------------------------------------------------
# The internal model: per-dimension factor lists plus a map from theta to them
# ---------------------------------------------------------------------------------------


@dataclass
class _Model:
    """Factors per dimension (each a list of Kernel1D multiplied together), signal variance
    parts, white-noise parts, constant-offset parts (ConstantKernel terms added to the
    product: ``c·11ᵀ``), and for each free log-hyperparameter the places it sets."""

    dims: list[list[Kernel1D]]
    scale_parts: list[float]
    noise_parts: list[float]
    offset_parts: list[float] = field(default_factory=list)
    # theta entry -> list of targets: ("scale", i) | ("noise", i) | ("offset", i) | ("factor", d, f, p)
    entries: list[list[tuple]] = field(default_factory=list)
    bounds: list[tuple[float, float]] = field(default_factory=list)
    rebuild: Callable[[np.ndarray], Any] | None = None

    @property
    def scale(self) -> float:
        return float(np.prod(self.scale_parts))

    @property
    def white(self) -> float:
        return float(np.sum(self.noise_parts))

    @property
    def offset(self) -> float:
        return float(np.sum(self.offset_parts))

    def theta(self) -> np.ndarray:
        out = []
        for targets in self.entries:
            out.append(np.log(self._get(targets[0])))
        return np.asarray(out, dtype=np.float64)

    def _parts(self, kind: str) -> list[float]:
        return {"scale": self.scale_parts, "noise": self.noise_parts, "offset": self.offset_parts}[kind]

    def _get(self, t: tuple) -> float:
        if t[0] == "factor":
            return float(self.dims[t[1]][t[2]].params[t[3]])
        return self._parts(t[0])[t[1]]

    def with_theta(self, theta: np.ndarray) -> "_Model":
        m = copy.deepcopy(self)
        for targets, v in zip(m.entries, np.exp(np.asarray(theta, dtype=np.float64))):
            for t in targets:
                if t[0] == "factor":
                    m.dims[t[1]][t[2]].params[t[3]] = v
                else:
                    m._parts(t[0])[t[1]] = v
        return m

    def factor_matrix(self, d: int, x1: np.ndarray, x2: np.ndarray) -> np.ndarray:
        out = np.ones((len(x1), len(x2)))
        for k in self.dims[d]:
            out *= k.matrix(x1, x2)
        return out

    def prior_diag(self) -> float:
        return self.scale * float(np.prod([np.prod([k.matrix(np.zeros(1), np.zeros(1))[0, 0] for k in f]) for f in self.dims]))


def _leaf_bounds(hp: Any) -> list[tuple[float, float]]:
    b = np.log(np.atleast_2d(np.asarray(hp.bounds, dtype=np.float64)))
    if b.shape[0] == 1 and hp.n_elements > 1:
        b = np.tile(b, (hp.n_elements, 1))
    return [tuple(r) for r in b]


def _flatten(k: Any, op: type) -> list[Any]:
    if isinstance(k, op):
        return _flatten(k.k1, op) + _flatten(k.k2, op)
    return [k]


_NOT_SEPARABLE = (
    "{name} over {D} dimensions uses the Euclidean distance across all of them, so it is not a "
    "product of per-dimension kernels and has no Kronecker structure. Use a ProductKernel of "
    "1-D kernels instead, e.g. ProductKernel([Matern1D(nu=1.5), Matern1D(nu=1.5)])"
)


def _from_sklearn(kernel: Any, D: int) -> _Model:
    """Translate a scikit-learn kernel into per-dimension factors (theta in sklearn's order).

    Terms of the top-level sum: one product of per-dimension kernels (a ConstantKernel in it
    is the signal variance), ConstantKernel terms (a constant offset ``c·11ᵀ``, the rank-one
    Kronecker term ``c (1 ⊗ … ⊗ 1)(1 ⊗ … ⊗ 1)ᵀ``) and WhiteKernel terms (noise)."""
    model = _Model(dims=[[] for _ in range(D)], scale_parts=[], noise_parts=[])
    terms = _flatten(kernel, skk.Sum)
    products = [t for t in terms if not isinstance(t, (skk.WhiteKernel, skk.ConstantKernel))]
    if len(products) > 1:
        raise ValueError(
            "kernel must be one product of per-dimension kernels plus optional ConstantKernel "
            f"(constant offset) and WhiteKernel (noise) terms; a sum of {len(products)} other terms "
            f"({' + '.join(map(str, products))}) is not Kronecker-structured"
        )

    # Walk the tree in sklearn's theta order (left to right), recording targets.
    def visit(k: Any, in_product: bool = False) -> None:
        if isinstance(k, skk.Sum):
            visit(k.k1)
            visit(k.k2)
            return
        if isinstance(k, skk.Product):
            if any(isinstance(t, (skk.Sum, skk.WhiteKernel)) for t in (k.k1, k.k2)):
                raise ValueError(
                    "a Sum (or WhiteKernel) inside a Product is not separable across grid "
                    "dimensions; only one product of per-dimension kernels plus ConstantKernel "
                    "and WhiteKernel terms added at the top level is supported"
                )
            visit(k.k1, True)
            visit(k.k2, True)
            return
        leaf(k, in_product)

    def leaf(k: Any, in_product: bool) -> None:
        if isinstance(k, skk.WhiteKernel):
            i = len(model.noise_parts)
            model.noise_parts.append(float(k.noise_level))
            if not k.hyperparameter_noise_level.fixed:
                model.entries.append([("noise", i)])
                model.bounds += _leaf_bounds(k.hyperparameter_noise_level)
            return
        if isinstance(k, skk.ConstantKernel):
            kind = "scale" if in_product else "offset"
            parts = model._parts(kind)
            parts.append(float(k.constant_value))
            if not k.hyperparameter_constant_value.fixed:
                model.entries.append([(kind, len(parts) - 1)])
                model.bounds += _leaf_bounds(k.hyperparameter_constant_value)
            return
        if isinstance(k, skk.Matern) and np.isinf(k.nu):
            k = skk.RBF(k.length_scale, k.length_scale_bounds)
        if type(k) is skk.RBF:  # (Matern subclasses RBF in scikit-learn)
            ls = np.atleast_1d(np.asarray(k.length_scale, dtype=np.float64))
            if len(ls) not in (1, D):
                raise ValueError(f"RBF length_scale has {len(ls)} entries for {D} grid dimensions")
            places = []
            for d in range(D):
                places.append((d, len(model.dims[d])))
                model.dims[d].append(RBF1D(ls[d if len(ls) == D else 0]))
            if not k.hyperparameter_length_scale.fixed:
                if len(ls) == 1:  # isotropic: one theta sets every dimension
                    model.entries.append([("factor", d, f, 0) for d, f in places])
                else:
                    model.entries += [[("factor", d, f, 0)] for d, f in places]
                model.bounds += _leaf_bounds(k.hyperparameter_length_scale)
            return
        names = {skk.Matern: "Matern", skk.RationalQuadratic: "RationalQuadratic", skk.ExpSineSquared: "ExpSineSquared"}
        for cls, name in names.items():
            if isinstance(k, cls) and D > 1:
                raise ValueError(_NOT_SEPARABLE.format(name=name, D=D))
        if isinstance(k, skk.Matern):
            if k.nu not in (0.5, 1.5, 2.5):
                raise ValueError(f"Matern nu must be 0.5, 1.5, 2.5 or inf, got {k.nu}")
            ls = float(np.ravel(k.length_scale)[0])
            add_leaf(k, Matern1D(ls, k.nu), {"length_scale": 0})
            return
        if isinstance(k, skk.RationalQuadratic):
            add_leaf(k, RationalQuadratic1D(float(k.length_scale), float(k.alpha)), {"alpha": 1, "length_scale": 0})
            return
        if isinstance(k, skk.ExpSineSquared):
            add_leaf(k, Periodic1D(float(k.length_scale), float(k.periodicity)), {"length_scale": 0, "periodicity": 1})
            return
        raise ValueError(
            f"kernel {type(k).__name__} is not supported on grids: use products of ConstantKernel, "
            "RBF, Matern, RationalQuadratic, ExpSineSquared, plus ConstantKernel and WhiteKernel terms"
        )

    def add_leaf(k: Any, k1: Kernel1D, where: dict[str, int]) -> None:
        f = len(model.dims[0])
        model.dims[0].append(k1)
        for hp in k.hyperparameters:  # sklearn's order (alphabetical)
            if not hp.fixed:
                model.entries.append([("factor", 0, f, where[hp.name])])
                model.bounds += _leaf_bounds(hp)

    visit(kernel)
    if any(len(f) == 0 for f in model.dims):
        raise ValueError("kernel has no factor acting on the grid (only constants / white noise)")
    if not model.scale_parts:
        model.scale_parts.append(1.0)
    sk_bounds = np.asarray(kernel.bounds).reshape(-1, 2) if len(kernel.theta) else np.empty((0, 2))
    if len(sk_bounds) != len(model.entries):  # pragma: no cover - a translation bug
        raise RuntimeError("internal error: theta layout differs from scikit-learn's")
    model.bounds = [tuple(b) for b in sk_bounds]
    model.rebuild = kernel.clone_with_theta
    return model


def _from_product(kernel: ProductKernel, D: int) -> _Model:
    if len(kernel.factors) != D:
        raise ValueError(f"ProductKernel has {len(kernel.factors)} factors for {D} grid dimensions")
    for k in kernel.factors:
        if not isinstance(k, Kernel1D):
            raise TypeError(f"ProductKernel factors must be Kernel1D objects, got {type(k).__name__}")
        if not np.all(np.isfinite(k.params) & (k.params > 0)):
            raise ValueError(f"kernel parameters of {k!r} must be positive and finite (they are learned in log space)")
    for name in ("signal_variance", "noise_level"):
        v = getattr(kernel, name)
        if v is not None and not (np.isfinite(v) and v > 0):
            raise ValueError(f"{name} must be positive and finite, got {v!r}")
    model = _Model(
        dims=[[copy.deepcopy(k)] for k in kernel.factors],
        scale_parts=[float(kernel.signal_variance)],
        noise_parts=[] if kernel.noise_level is None else [float(kernel.noise_level)],
    )

    def add(targets: list[tuple], b: Any, n: int = 1) -> None:
        if isinstance(b, str):
            if b != "fixed":
                raise ValueError(f"bounds must be a (low, high) pair or 'fixed', got {b!r}")
            return
        b = np.log(np.asarray(b, dtype=np.float64).reshape(-1, 2))
        if len(b) == 1:
            b = np.tile(b, (n, 1))
        for t, row in zip(targets, b):
            model.entries.append([t])
            model.bounds.append(tuple(row))

    add([("scale", 0)], kernel.signal_variance_bounds)
    for d, k in enumerate(model.dims):
        add([("factor", d, 0, p) for p in range(len(k[0].params))], k[0].bounds, len(k[0].params))
    if kernel.noise_level is not None:
        add([("noise", 0)], kernel.noise_level_bounds)

    def rebuild(theta: np.ndarray) -> ProductKernel:
        m = model.with_theta(theta)
        out = copy.deepcopy(kernel)
        out.factors = [f[0] for f in m.dims]
        out.signal_variance = m.scale_parts[0]
        if kernel.noise_level is not None:
            out.noise_level = m.noise_parts[0]
        return out

    model.rebuild = rebuild
    return model


def _make_model(kernel: Any, D: int) -> _Model:
    if kernel is None:  # scikit-learn's default (GaussianProcessRegressor.fit), learnable
        kernel = skk.ConstantKernel() * skk.RBF()
    if isinstance(kernel, ProductKernel):
        return _from_product(kernel, D)
    if isinstance(kernel, (list, tuple)):
        return _from_product(ProductKernel(list(kernel)), D)
    if isinstance(kernel, skk.Kernel):
        return _from_sklearn(kernel, D)
    raise TypeError(
        f"kernel must be a scikit-learn kernel, a rankcore.gp.ProductKernel or a list of Kernel1D, got {type(kernel).__name__}"
    )


# ---------------------------------------------------------------------------------------
# Grid detection
# ---------------------------------------------------------------------------------------


def _detect_grid(X: Any) -> tuple[list[Any], Any] | None:
    """Sorted unique coordinates per column and each row's C-order cell index, or None when
    the rows are not exactly the cells of the grid those coordinates span (numpy or cupy;
    on the device two scalar reads: counts)."""
    xp = array_module(X)
    axes, idx = [], []
    for d in range(X.shape[1]):
        u, inv = xp.unique(X[:, d], return_inverse=True)
        axes.append(u)
        idx.append(inv.ravel())
    shape = tuple(int(a.shape[0]) for a in axes)
    if int(np.prod(shape, dtype=np.float64)) != X.shape[0]:
        return None
    flat = xp.ravel_multi_index(tuple(idx), shape)
    if int(xp.unique(flat).shape[0]) != X.shape[0]:
        return None
    return axes, flat


def _grid_or_error(X: Any) -> tuple[list[Any], Any]:
    """:func:`_detect_grid`, or a ValueError saying why ``X`` is not a full grid."""
    xp = array_module(X)
    if X.shape[0] < 2:
        raise ValueError(f"X has n_samples={X.shape[0]}; a grid needs at least 2 coordinates per dimension")
    shape = tuple(int(xp.unique(X[:, d]).shape[0]) for d in range(X.shape[1]))
    for d, n in enumerate(shape):
        if n < 2:
            raise ValueError(
                f"grid dimension {d} of X has a single coordinate; drop that column (a size-1 "
                "dimension carries no information for a stationary kernel)"
            )
    g = _detect_grid(X)
    if g is None:
        n_unique = _count_unique_rows(X)
        if n_unique < X.shape[0]:
            raise ValueError(f"X has {X.shape[0] - n_unique} duplicate point(s); a grid GP needs each cell once")
        cells = float(np.prod(shape, dtype=np.float64))
        raise ValueError(
            f"X is not a full grid: its {X.shape[0]} points do not fill the {cells:.0f} cells spanned by "
            f"the unique coordinates per column {shape}. Use fit_grid(axes, Y) with NaN in the missing cells."
        )
    return g


def _count_unique_rows(X: Any) -> int:
    """Distinct rows (cupy's ``unique`` has no ``axis``): lexicographic sort, then compare
    neighbours."""
    xp = array_module(X)
    order = xp.lexsort(X.T[::-1])
    S = X[order]
    return int(1 + (S[1:] != S[:-1]).any(axis=1).sum())


# ---------------------------------------------------------------------------------------
# A constant offset: the rank-one Kronecker term c·11ᵀ (Sherman–Morrison)
# ---------------------------------------------------------------------------------------


def _grid_eigenvalues(scale: float, lams: Sequence[np.ndarray]) -> np.ndarray:
    """``s λ₁ ⊗ … ⊗ λ_D`` in C order, float64."""
    lam = np.array([scale])
    for lv in lams:
        lam = np.multiply.outer(lam, np.asarray(lv, np.float64)).ravel()
    return lam


@dataclass
class _Offset:
    """The pieces of ``C⁻¹ = A⁻¹ − g vvᵀ`` for ``C = A + c·11ᵀ`` (``A = sK + σ²I``) that
    predictions need: ``v = A⁻¹1`` on the grid, the gain ``g = c/(1 + c·1ᵀv)`` and
    ``1ᵀα`` per target (``α = C⁻¹y``)."""

    c: float
    v: np.ndarray
    gain: float
    one_alpha: np.ndarray


def _lml_offset(qs, lams, scale: float, noise: float, c: float, Y: np.ndarray, grad: bool) -> dict:
    """Exact LML of ``Y`` (B × N, rows independent) under ``C = A + c·11ᵀ``, with the same
    outputs as ``_core.gp_lml`` plus ``d_offset`` (∂/∂c) and ``offset`` (an :class:`_Offset`).

    In the eigenbasis of ``A`` (``A = Q diag(e) Qᵀ``), ``u = Qᵀ1 = ⊗_d Q_dᵀ1`` is a Kronecker
    vector, so ``v = A⁻¹1 = Q(u/e)`` and ``γ = 1ᵀv = Σ u²/e`` cost one mode-product chain.
    Sherman–Morrison and the matrix determinant lemma, with ``δ = 1 + cγ``, ``β = vᵀy``:
    ``α = C⁻¹y = A⁻¹y'`` with ``y' = y − c(1ᵀα)1`` and ``1ᵀα = β/δ``;
    ``log det C = log det A + log δ``. The gradient for a parameter of ``A`` is
    ``½ Σ_b α_bᵀ dA α_b − ½ B tr(A⁻¹dA) + ½ B (c/δ) vᵀdA v``: the core's gradient for the rows
    ``[√κ y'_b; √(κBc/δ) 1]`` with ``κ = (B+1)/B``, divided by κ (each row adds its quadratic
    term and one ``−½ tr(A⁻¹dA)``). For ``c``: ``½ Σ_b (1ᵀα_b)² − ½ B γ/δ``.
    """
    B, N = Y.shape
    dt = Y.dtype
    e = _grid_eigenvalues(scale, lams) + noise
    u = _grid_eigenvalues(1.0, [np.asarray(q, np.float64).sum(axis=0) for q in qs])
    v = np.asarray(_core.kron_apply(qs, np.ascontiguousarray((u / e)[None], dtype=dt))[0], np.float64)
    gamma = float(np.sum(u * u / e))
    delta = 1.0 + c * gamma
    one_alpha = (Y.astype(np.float64) @ v) / delta  # 1ᵀα = β/δ, (B,)
    Yp = Y - (c * one_alpha)[:, None]
    kappa = (B + 1) / B if grad else 1.0
    rows = np.sqrt(kappa) * Yp
    if grad:
        rows = np.vstack([rows, np.full((1, N), np.sqrt(kappa * B * c / delta))])
    out = _core.gp_lml(qs, lams, scale, noise, np.ascontiguousarray(rows, dtype=dt), grad)
    alpha = np.asarray(out["alpha"][:B], np.float64) / np.sqrt(kappa)
    fit = float(np.sum(Y.astype(np.float64) * alpha))
    logdet = float(np.sum(np.log(e))) + np.log1p(c * gamma)
    value = -0.5 * fit - 0.5 * B * logdet - 0.5 * B * N * np.log(2 * np.pi)
    res = {"value": value, "alpha": alpha.astype(dt), "offset": _Offset(c, v, c / delta, one_alpha)}
    if grad:
        res["d_scale"] = out["d_scale"] / kappa
        res["d_noise"] = out["d_noise"] / kappa
        res["d_factor"] = [np.asarray(R, np.float64) / kappa for R in out["d_factor"]]
        res["d_offset"] = 0.5 * float(np.sum(one_alpha**2)) - 0.5 * B * gamma / delta
    return res


# ---------------------------------------------------------------------------------------
# The estimator
# ---------------------------------------------------------------------------------------


def _on_device(*arrays: Any) -> bool:
    """Whether any of the arrays is a cupy array (the device path; mixing is a TypeError there)."""
    from rankcore._backend import namespace

    return any(namespace(a) == "cupy" for a in arrays)


def _gpu():
    import rankcore._gpu.gp as g  # never at import time: rankcore does not import cupy

    return g


def _assemble_gradient(model: _Model, out: dict, fgrad: dict) -> np.ndarray:
    """The gradient with respect to the log-hyperparameters (``model.entries``) from the
    core's ``d_scale``/``d_noise``/``d_offset`` and the per-factor contractions `fgrad`."""
    g = np.zeros(len(model.entries))
    for i, targets in enumerate(model.entries):
        for t in targets:
            v = model._get(t)
            if t[0] == "scale":
                g[i] += model.scale * out["d_scale"]  # d/dlog c_i of Π c = s
            elif t[0] == "noise":
                g[i] += v * out["d_noise"]
            elif t[0] == "offset":
                g[i] += v * out["d_offset"]
            else:
                g[i] += v * fgrad[(t[1], t[2], t[3])]
    return g


class GridGPRegressor(MultiOutputMixin, RegressorMixin, BaseEstimator):
    """Gaussian-process regression on a Cartesian grid with a Kronecker-structured kernel.

    A drop-in for :class:`sklearn.gaussian_process.GaussianProcessRegressor` when the
    training inputs form a grid: same parameters, same fitted attributes, the same log
    marginal likelihood (to round-off), at ``O(Σ n_d³ + N Σ n_d)`` instead of ``O(N³)``.

    Parameters
    ----------
    kernel : sklearn kernel, ProductKernel, list of Kernel1D or None, default=None
        The kernel specifying the covariance function of the GP. If `None` is passed, the
        kernel `ConstantKernel() * RBF()` is used as default. Note that the kernel
        hyperparameters are optimized during fitting unless the bounds are marked as
        `"fixed"` or the argument `optimizer` is set to `None` (as scikit-learn).

        Supported: a sum of one product of per-dimension kernels and optional
        ``ConstantKernel`` and ``WhiteKernel`` terms. In the product, scikit-learn kernels
        are translated into per-dimension factors: ``ConstantKernel`` (signal variance) times
        ``RBF`` (isotropic or one length scale per dimension; the squared-exponential is a
        product over dimensions), and for 1-D grids also ``Matern`` (ν ∈ {0.5, 1.5, 2.5, ∞}),
        ``RationalQuadratic`` and ``ExpSineSquared``. Matern/RQ/ExpSineSquared over several
        dimensions use the Euclidean distance and are not separable: pass a
        :class:`ProductKernel` of 1-D kernels instead. A ``ConstantKernel`` added to the
        product (``C1 * RBF(...) + C2``, an unknown constant offset) is the rank-one
        Kronecker term ``c·11ᵀ``, solved exactly by Sherman–Morrison and the matrix
        determinant lemma in the product's eigenbasis at the same cost (full grids only; not
        on the conjugate-gradient path of incomplete grids or per-sample ``alpha``).
        ``WhiteKernel`` terms are the noise. Any other sum (e.g. of two non-constant
        products) is not Kronecker-structured and raises a ``ValueError`` saying so.
    alpha : float or array-like of shape (n_samples,), default=1e-10
        Added to the diagonal (noise variance). An array gives heteroscedastic noise and uses
        the conjugate-gradient path (see ``fit_grid``).
    optimizer : "fmin_l_bfgs_b", callable or None, default="fmin_l_bfgs_b"
        Maximises the log marginal likelihood with scipy's L-BFGS-B and the analytic
        gradient. A callable ``optimizer(obj_func, initial_theta, bounds) -> (theta, f)``
        is used as in scikit-learn. None keeps the kernel fixed.
    n_restarts_optimizer : int, default=0
        Extra starts drawn log-uniformly within the bounds.
    normalize_y : bool, default=False
        Centre and scale the targets (per output) before fitting, as scikit-learn.
    copy_X_train : bool, default=True
        Store a copy of the training inputs.
    n_targets : int, default=None
        The number of dimensions of the target values, as scikit-learn: the number of
        outputs when predicting or sampling from the prior (``predict`` / ``sample_y`` before
        ``fit``); ``fit`` checks that y has that many. Ignored once fitted.
    random_state : None, int or Generator/RandomState, default=None
        For the restarts.
    cg_tol : float, default=1e-10
        Relative residual of the conjugate-gradient solves on incomplete grids.
    cg_max_iter : int, default=2000

    Attributes
    ----------
    X_train_ : ndarray of shape (n_samples, n_dims)
    y_train_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
    axes_ : list of ndarray
        The grid coordinates per dimension (sorted for ``fit``, as given for ``fit_grid``).
    grid_shape_ : tuple of int
    kernel_ : the kernel with the fitted hyperparameters (same type as ``kernel``).
    alpha_ : ndarray of shape (n_samples,) or (n_samples, n_targets)
        ``(K + σ²I)⁻¹ y`` on the training points.
    log_marginal_likelihood_value_ : float
        Exact on full grids; on incomplete grids the Wilson et al. (2014) approximation.
    incomplete_ : bool
    n_iter_ : int
        Optimizer iterations (0 when the kernel is fixed).

    Notes
    -----
    cupy input (``fit``, ``fit_grid``, ``predict``, ``sample_y``) runs on the device
    (:mod:`rankcore._gpu.gp`): fitted grid-sized attributes are cupy arrays, the optimizer
    reads back only scalars, and host and device arrays are never mixed (``TypeError``).
    """

    def __init__(
        self,
        kernel: Any = None,
        *,
        alpha: Any = 1e-10,
        optimizer: Any = "fmin_l_bfgs_b",
        n_restarts_optimizer: int = 0,
        normalize_y: bool = False,
        copy_X_train: bool = True,
        n_targets: int | None = None,
        random_state: Any = None,
        cg_tol: float = 1e-10,
        cg_max_iter: int = 2000,
    ) -> None:
        self.kernel = kernel
        self.alpha = alpha
        self.optimizer = optimizer
        self.n_restarts_optimizer = n_restarts_optimizer
        self.normalize_y = normalize_y
        self.copy_X_train = copy_X_train
        self.n_targets = n_targets
        self.random_state = random_state
        self.cg_tol = cg_tol
        self.cg_max_iter = cg_max_iter

    # -- fitting -----------------------------------------------------------------------

    def fit(self, X: Any, y: Any) -> "GridGPRegressor":
        """Fit on points X that form a full Cartesian grid (any row order).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_dims)
            Every cell of the grid spanned by the unique coordinates per column, once.
        y : array-like of shape (n_samples,) or (n_samples, n_targets)
        """
        if _on_device(X, y):
            return _gpu().fit(self, X, y)
        self.__dict__.pop("_on_device", None)
        X, y = validate_data(self, X, y, multi_output=True, y_numeric=True, dtype=[np.float64, np.float32])
        if y.dtype != X.dtype:
            y = y.astype(X.dtype)
        axes, flat = _grid_or_error(X)
        shape = tuple(len(a) for a in axes)
        Y = np.empty((int(np.prod(shape)),) + y.shape[1:], dtype=X.dtype)
        Y[flat] = y
        self._flat = flat
        return self._fit(axes, Y, np.ones(len(Y), bool), X, y, self.alpha, flat)

    def fit_grid(self, axes: Sequence[Any], Y: Any) -> "GridGPRegressor":
        """Fit on a grid given by its coordinates, with NaN marking missing cells.

        Parameters
        ----------
        axes : list of array-like
            ``axes[d]`` holds the ``n_d ≥ 2`` distinct, finite coordinates of dimension d.
        Y : array-like of shape (n_1, …, n_D)
            Targets on the grid; NaN cells are unobserved. With missing cells (or an array
            ``alpha`` of shape ``Y.shape``), solves use preconditioned conjugate gradients and
            the log-determinant the approximation of Wilson et al. (2014).
        """
        if _on_device(Y, *(axes if isinstance(axes, (list, tuple)) else ())):
            return _gpu().fit_grid(self, axes, Y)
        self.__dict__.pop("_on_device", None)
        if isinstance(axes, np.ndarray) and axes.ndim == 1 or not isinstance(axes, (list, tuple, np.ndarray)):
            raise TypeError("axes must be a list of 1-D coordinate arrays, one per grid dimension")
        axs = []
        for d, a in enumerate(axes):
            a = np.asarray(a)
            if a.ndim != 1 or a.dtype.kind not in "iuf":
                raise ValueError(f"axes[{d}] must be a 1-D array of real coordinates")
            a = a.astype(np.float64)
            if not np.all(np.isfinite(a)):
                raise ValueError(f"axes[{d}] contains NaN or infinity")
            if len(a) < 2:
                raise ValueError(f"axes[{d}] has {len(a)} coordinate(s); every grid dimension needs at least 2")
            if len(np.unique(a)) != len(a):
                raise ValueError(f"axes[{d}] has duplicate coordinates")
            axs.append(a)
        Y = np.asarray(Y)
        if Y.dtype.kind not in "iuf":
            raise TypeError(f"Y must be numeric, got dtype {Y.dtype}")
        dtype = Y.dtype if Y.dtype in (np.float32, np.float64) else np.float64
        Y = Y.astype(dtype)
        shape = tuple(len(a) for a in axs)
        if Y.shape != shape:
            raise ValueError(f"Y has shape {Y.shape}, but the axes span a grid of shape {shape}")
        if np.any(np.isinf(Y)):
            raise ValueError("Y contains infinity (NaN marks missing cells)")
        obs = ~np.isnan(Y).ravel()
        if obs.sum() < 2:
            raise ValueError("Y must have at least 2 observed (non-NaN) cells")
        mesh = np.meshgrid(*axs, indexing="ij")
        Xall = np.stack([m.ravel() for m in mesh], axis=1).astype(dtype)
        flat = np.flatnonzero(obs)
        X = Xall[flat]
        y = Y.ravel()[flat]
        alpha = self.alpha
        if np.ndim(alpha) > 0:
            a = np.asarray(alpha, dtype=np.float64)
            if a.shape != shape:
                raise ValueError(f"alpha must be a scalar or have the grid's shape {shape}, got {a.shape}")
            alpha = a.ravel()[flat]
        self.n_features_in_ = len(axs)
        self._flat = flat
        return self._fit(axs, np.where(obs, Y.ravel(), 0).astype(dtype), obs, X, y, alpha, flat)

    def _check_fit_params(self, n_seen: int) -> None:
        """n_targets against the targets seen, n_restarts_optimizer (both paths)."""
        self._check_n_targets()
        if self.n_targets is not None and n_seen != self.n_targets:
            raise ValueError(
                "The number of targets seen in `y` is different from the parameter "
                f"`n_targets`. Got {n_seen} != {self.n_targets}."
            )
        if not isinstance(self.n_restarts_optimizer, numbers.Integral) or self.n_restarts_optimizer < 0:
            raise ValueError(f"n_restarts_optimizer must be a non-negative integer, got {self.n_restarts_optimizer!r}")

    def _fit(self, axes, Yfull, obs, X, y, alpha, flat) -> "GridGPRegressor":
        D = len(axes)
        model = _make_model(self.kernel, D)
        self._check_fit_params(y.shape[1] if y.ndim > 1 else 1)
        a = np.asarray(alpha, dtype=np.float64)
        if np.any(~np.isfinite(a)) or np.any(a < 0):
            raise ValueError("alpha must be non-negative and finite")
        if a.ndim > 0 and a.shape != (len(y),):
            raise ValueError(f"alpha must be a scalar or have shape ({len(y)},), got {a.shape}")
        self.incomplete_ = bool(not obs.all() or a.ndim > 0)
        if self.incomplete_ and y.ndim > 1:
            raise ValueError("incomplete grids and per-sample alpha support one target only")
        if self.incomplete_ and model.offset_parts:
            raise NotImplementedError(
                "a ConstantKernel term added to the kernel (a constant offset) is not supported on "
                "incomplete grids or with per-sample alpha (the conjugate-gradient path); use "
                "normalize_y=True or centre y instead"
            )
        self._dtype = X.dtype
        self.axes_ = [np.asarray(ax, dtype=np.float64) for ax in axes]
        self.grid_shape_ = tuple(len(ax) for ax in axes)
        self.X_train_ = np.array(X, copy=True) if self.copy_X_train else X
        # Normalise as scikit-learn does.
        if self.normalize_y:
            self._y_train_mean = np.mean(y, axis=0)
            std = np.std(y, axis=0)
            self._y_train_std = np.where(std == 0, 1.0, std) if np.ndim(std) else (std if std != 0 else 1.0)
            y = ((y - self._y_train_mean) / self._y_train_std).astype(self._dtype)
        else:
            self._y_train_mean = np.zeros(1 if y.ndim == 1 else y.shape[1:])[0 if y.ndim == 1 else slice(None)]
            self._y_train_std = 1.0
        self.y_train_ = y
        self._obs_flat = np.flatnonzero(obs).astype(np.int64)
        # alpha arrives in the rows' order (X_train_, used by the dense variance paths);
        # the core solve works on the observed cells in ascending cell order.
        self._alpha_rows = a
        if a.ndim > 0:
            cells = np.empty(len(self._obs_flat), dtype=np.float64)
            cells[np.searchsorted(self._obs_flat, flat)] = a
            a = cells
        self._alpha_cells = a
        ygrid = np.zeros((len(obs),) + y.shape[1:], dtype=self._dtype)
        ygrid[flat] = y
        self._Y = np.ascontiguousarray(ygrid.reshape(len(obs), -1).T)  # (B, N)
        return self._fit_model(model)

    def _fit_model(self, model: _Model) -> "GridGPRegressor":
        """The optimizer loop (on the host: it sees the LML and its gradient as scalars and
        a hyperparameter-sized vector, whichever path computes them), then ``_finish``."""
        self.n_iter_ = 0
        opt_value = None
        theta0 = model.theta()
        if self.optimizer is not None and len(theta0) > 0:
            bounds = np.asarray(model.bounds)

            def obj(theta: np.ndarray, eval_gradient: bool = True):
                if eval_gradient:
                    v, g = self._lml(model.with_theta(theta), True)
                    return -v, -g
                return -self._lml(model.with_theta(theta), False)[0]

            results = [self._optimize(obj, theta0, bounds)]
            if self.n_restarts_optimizer > 0:
                if not np.isfinite(bounds).all():
                    raise ValueError("multiple optimizer restarts require finite bounds")
                rng = check_random_state(self.random_state)
                for _ in range(self.n_restarts_optimizer):
                    start = rng.uniform(bounds[:, 0], bounds[:, 1])
                    results.append(self._optimize(obj, start, bounds))
            best = min(results, key=lambda r: r[1])
            model = model.with_theta(best[0])
            opt_value = -float(best[1])
        self._model = model
        self.kernel_ = model.rebuild(model.theta()) if model.rebuild else None
        if opt_value is not None and isinstance(self.kernel_, skk.Kernel):
            self.kernel_._check_bounds_params()  # scikit-learn's warning for a hyperparameter at a bound
        self._finish(model, opt_value)
        return self

    def _optimize(self, obj, theta0, bounds):
        if self.optimizer == "fmin_l_bfgs_b":
            res = scipy.optimize.minimize(obj, theta0, method="L-BFGS-B", jac=True, bounds=bounds)
            self.n_iter_ = max(self.n_iter_, int(res.nit))
            return res.x, float(res.fun)
        if callable(self.optimizer):
            theta, f = self.optimizer(obj, theta0, bounds)
            return np.asarray(theta, dtype=np.float64), float(f)
        raise ValueError(f"optimizer must be 'fmin_l_bfgs_b', a callable or None, got {self.optimizer!r}")

    def _noise(self, model: _Model) -> float | np.ndarray:
        """Noise variance per observed cell, in ascending cell order (``_obs_flat``)."""
        return self._alpha_cells + model.white

    def _noise_rows(self, model: _Model) -> float | np.ndarray:
        """Noise variance per training row, in the order of ``X_train_``."""
        return self._alpha_rows + model.white

    def _eig(self, model: _Model):
        Ks = [np.ascontiguousarray(model.factor_matrix(d, ax, ax), dtype=self._dtype) for d, ax in enumerate(self.axes_)]
        qs, lams = _core.kron_eigh(Ks)
        return [np.ascontiguousarray(q) for q in qs], list(lams)

    def _core_lml(self, model: _Model, qs, lams, grad: bool) -> dict:
        noise = self._noise(model)
        if self.incomplete_:
            nz = np.broadcast_to(np.asarray(noise, np.float64), (len(self._obs_flat),))
            if np.any(nz <= 0):
                raise ValueError("the noise variance (alpha + WhiteKernel) must be positive")
            out = _core.gp_lml_incomplete(
                qs, lams, model.scale, self._obs_flat, np.ascontiguousarray(nz, self._dtype),
                np.ascontiguousarray(self._Y[0, self._obs_flat]), float(self.cg_tol), int(self.cg_max_iter), grad,
            )
            if not out["converged"]:
                warnings.warn(
                    f"conjugate gradients stopped after {out['n_iter']} iterations at relative residual "
                    f"{out['rel_residual']:.1e} (cg_tol={self.cg_tol}); raise cg_max_iter or bound the noise "
                    "level away from zero",
                    ConvergenceWarning,
                    stacklevel=3,
                )
            return out
        noise = float(noise)
        if not noise > 0:
            raise ValueError("the noise variance alpha + WhiteKernel noise_level must be positive for a grid GP")
        if model.offset_parts:
            return _lml_offset(qs, lams, model.scale, noise, model.offset, self._Y, grad)
        return _core.gp_lml(qs, lams, model.scale, noise, self._Y, grad)

    def _lml(self, model: _Model, grad: bool) -> tuple[float, np.ndarray]:
        if self.__dict__.get("_on_device"):
            return _gpu().lml(self, model, grad)
        qs, lams = self._eig(model)
        out = self._core_lml(model, qs, lams, grad)
        if not grad:
            return out["value"], np.empty(0)
        # Chain rule to log-hyperparameters: each factor parameter through Σ dK_d ∘ R_d.
        fgrad: dict[tuple, float] = {}
        for d, ax in enumerate(self.axes_):
            R = np.asarray(out["d_factor"][d], dtype=np.float64)
            mats = [k.matrix(ax, ax) for k in model.dims[d]]
            for f, k in enumerate(model.dims[d]):
                others = np.ones_like(R)
                for g, m in enumerate(mats):
                    if g != f:
                        others *= m
                for p, v in enumerate(k.grad_contract(ax, others * R)):
                    fgrad[(d, f, p)] = float(v)
        return out["value"], _assemble_gradient(model, out, fgrad)

    def _finish(self, model: _Model, opt_value: float | None) -> None:
        if self.__dict__.get("_on_device"):
            return _gpu().finish(self, model, opt_value)
        qs, lams = self._eig(model)
        out = self._core_lml(model, qs, lams, False)
        self._qs, self._lams = qs, lams
        self._offset = out.get("offset")
        self._mc_var = None
        alpha_grid = out["alpha"]  # (B, N)
        self.log_marginal_likelihood_value_ = float(out["value"]) if opt_value is None else opt_value
        self._alpha_grid = alpha_grid
        a = alpha_grid[:, self._flat].T
        self.alpha_ = a[:, 0] if self.y_train_.ndim == 1 else a
        if self.incomplete_:
            self._cg = (out["n_iter"], out["rel_residual"], out["converged"])

    # -- likelihood ----------------------------------------------------------------------

    def log_marginal_likelihood(self, theta: Any = None, eval_gradient: bool = False, clone_kernel: bool = True):
        """Log marginal likelihood at log-hyperparameters ``theta`` (scikit-learn's layout:
        ``kernel_.theta``), with its gradient when ``eval_gradient``. ``theta=None`` returns
        the fitted value. On incomplete grids this is the Wilson et al. (2014) approximation.
        """
        check_is_fitted(self, "_model")
        if theta is None:
            if eval_gradient:
                raise ValueError("Gradient can only be evaluated for theta!=None")
            return self.log_marginal_likelihood_value_
        theta = np.asarray(theta, dtype=np.float64)
        if theta.shape != (len(self._model.entries),):
            raise ValueError(f"theta must have shape ({len(self._model.entries)},), got {theta.shape}")
        v, g = self._lml(self._model.with_theta(theta), eval_gradient)
        return (v, g) if eval_gradient else v

    # -- prediction ----------------------------------------------------------------------

    def _prior_matrix(self, model: _Model, X1: np.ndarray, X2: np.ndarray) -> np.ndarray:
        """The product part ``s Π_d k_d(x_d, x'_d)`` of the prior covariance (no offset, no noise)."""
        K = np.full((len(X1), len(X2)), model.scale)
        for d in range(X1.shape[1]):
            K *= model.factor_matrix(d, X1[:, d], X2[:, d])
        return K

    def _check_n_targets(self) -> int:
        n = self.n_targets
        if n is not None and (isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 1):
            raise ValueError(f"n_targets must be None or a positive integer, got {n!r}")
        return 1 if n is None else int(n)

    def predict(self, X: Any, return_std: bool = False, return_cov: bool = False):
        """Posterior mean (and standard deviation or covariance) at the points X.

        Points forming a grid (any grid, e.g. the training grid or a finer one) are handled
        with Kronecker products in ``O(M Σ n_d)``; scattered points cost ``O(N)`` each.
        ``return_cov`` builds an ``M × N`` cross-covariance (small M only). As in
        scikit-learn, the variance includes the WhiteKernel noise but not ``alpha``, and
        before ``fit`` the prior is returned (zero mean; ``n_targets`` outputs).
        """
        if _on_device(X) or self.__dict__.get("_on_device"):
            return _gpu().predict(self, X, return_std, return_cov)
        if return_std and return_cov:
            raise RuntimeError("At most one of return_std or return_cov can be requested.")
        if not hasattr(self, "_model"):
            return self._predict_prior(np.asarray(X, dtype=np.float64), return_std, return_cov)
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        model = self._model
        if X.shape[1] != len(self.axes_):
            raise ValueError(f"X has {X.shape[1]} features, but the grid has {len(self.axes_)} dimensions")
        mean, var, p = self._predict_mean_var(model, X, return_std)
        cov = self._predict_cov(model, X, p) if return_cov else None
        return _denormalise(self, model, len(X), mean, var, cov)

    def _predict_prior(self, X, return_std, return_cov):
        """The prior, shaped as scikit-learn's: mean ``zeros((M, n_targets)).squeeze()``,
        std (M,) or (M, n_targets), cov (M, M) or (M, M, n_targets)."""
        model = _make_model(self.kernel, X.shape[1])
        T = self._check_n_targets()
        mean = np.zeros((X.shape[0], T)).squeeze()
        if not (return_std or return_cov):
            return mean
        if return_cov:
            out = self._prior_matrix(model, X, X) + model.offset + model.white * np.eye(len(X))
        else:
            out = np.full(X.shape[0], np.sqrt(model.prior_diag() + model.offset + model.white))
        return mean, (np.repeat(out[..., None], T, axis=-1) if T > 1 else out)

    def _predict_mean_var(self, model, X, want_var):
        """Mean (B, M) and latent variance (M,) (or None) of the normalised targets, and with a
        constant term ``p = s K_prod(X, grid) A⁻¹1`` (M,) (else None).

        With the offset, ``k(x, ·) = s k_prod(x, ·) + c`` and ``C⁻¹ = A⁻¹ − g vvᵀ``
        (:class:`_Offset`): the mean gains ``c 1ᵀα`` and the latent variance of ``A``'s model
        gains ``c − 2cp − c²γ + (c/δ)(p + cγ)² = g (1 − p)²`` (the covariance
        ``g (1 − p)(1 − p)ᵀ``): one non-negative term, no cancellation for large c.
        ``p`` is one more right-hand side of the mean's Kronecker products."""
        off = self._offset
        rows = self._alpha_grid if off is None else np.vstack([self._alpha_grid, off.v.astype(self._dtype)])
        mean, var = self._product_mean_var(model, X, rows, want_var)
        if off is None:
            return mean, var, None
        p = mean[-1]
        mean = mean[:-1] + off.c * off.one_alpha[:, None]
        return mean, (None if var is None else var + off.gain * (1.0 - p) ** 2), p

    def _product_mean_var(self, model, X, rows, want_var):
        """``s K_prod(X, grid) r`` for each row r of ``rows`` (R × N on the grid), as (R, M),
        and the latent variance (M,) (or None) under ``A = sK + σ²I``."""
        s = model.scale
        g = _detect_grid(X) if len(X) > 1 else None
        if g is None:  # scattered points: O(N) each, in the core
            out = [self._points(model, X, r, want_var and i == 0) for i, r in enumerate(rows)]
            return np.stack([m for m, _ in out]), out[0][1]
        axes, flat = g
        C = [np.ascontiguousarray(model.factor_matrix(d, ax, self.axes_[d]), dtype=self._dtype) for d, ax in enumerate(axes)]
        mean = np.asarray(_core.kron_apply(C, np.ascontiguousarray(rows)), np.float64)[:, flat] * s
        var = None
        if want_var:
            if self.incomplete_:
                var = self._incomplete_var(model, X)
            else:
                # var = prior − s² Σ_j (⊗ C_d Q_d)_{ij}² / (Λ_j + σ²)
                P2 = [np.ascontiguousarray((c @ q) ** 2) for c, q in zip(C, self._qs)]
                lam = _grid_eigenvalues(s, self._lams)
                w = (1.0 / (lam + float(self._noise(model)))).astype(self._dtype)[None, :]
                var = model.prior_diag() - s * s * _core.kron_apply(P2, w)[0][flat]
        return mean, var

    def _points(self, model, X, alpha, want_var):
        """Mean ``s K_prod(X, grid) alpha`` (M,) at scattered points, and the latent variance."""
        C = [np.ascontiguousarray(model.factor_matrix(d, X[:, d], self.axes_[d]), dtype=self._dtype) for d in range(X.shape[1])]
        noise = self._noise(model)
        nz = float(np.mean(noise)) if self.incomplete_ else float(noise)
        # The eigen formula for the variance needs homoscedastic noise on a full grid.
        exact = want_var and not self.incomplete_
        mean, var = _core.gp_predict_points(self._qs, self._lams, model.scale, nz, np.ascontiguousarray(alpha), C, model.prior_diag(), exact)
        if not want_var:
            var = None
        elif self.incomplete_:
            var = self._incomplete_var(model, X)
        return np.asarray(mean, np.float64), (None if var is None else np.asarray(var, np.float64))

    def _cells(self, X):
        """Grid cell index of each row of X, or None when some row is not a grid cell."""
        idx = []
        for d, ax in enumerate(self.axes_):
            order = np.argsort(ax)
            pos = np.clip(np.searchsorted(ax[order], X[:, d]), 0, len(ax) - 1)
            if not np.array_equal(ax[order][pos], X[:, d]):
                return None
            idx.append(order[pos])
        return np.ravel_multi_index(idx, self.grid_shape_)

    def _incomplete_var(self, model, X):
        """Latent variance on an incomplete grid: exact (dense Cholesky of the observed
        cells) up to ``_DENSE_VAR_LIMIT`` observations; beyond, at grid cells, a Monte Carlo
        estimate from ``_MC_SAMPLES`` pathwise posterior samples (Matheron's rule: prior
        sample on the grid by Kronecker products, one PCG solve each), whose relative error
        is about √(2/_MC_SAMPLES) ≈ 12%."""
        X = X.astype(np.float64)
        if len(self.X_train_) <= _DENSE_VAR_LIMIT:
            Xo = self.X_train_.astype(np.float64)
            Koo = self._prior_matrix(model, Xo, Xo) + np.diag(np.broadcast_to(self._noise_rows(model), (len(Xo),)))
            Kxo = self._prior_matrix(model, X, Xo)
            L = np.linalg.cholesky(Koo)
            V = scipy.linalg.solve_triangular(L, Kxo.T, lower=True)
            return model.prior_diag() - np.einsum("ij,ij->j", V, V)
        cells = self._cells(X)
        if cells is None:
            raise NotImplementedError(
                f"predictive std/cov at off-grid points of an incomplete grid with more than {_DENSE_VAR_LIMIT} "
                "observed cells is not implemented; predict at the grid cells instead"
            )
        if getattr(self, "_mc_var", None) is None:
            self._mc_var = self._mc_grid_var(model)
        return self._mc_var[cells]

    def _mc_grid_var(self, model):
        rng = np.random.default_rng(0)
        S = _MC_SAMPLES
        lam = _grid_eigenvalues(model.scale, self._lams)
        N = lam.size
        qs = self._qs
        qts = [np.ascontiguousarray(q.T) for q in qs]
        obs = self._obs_flat
        nz = np.ascontiguousarray(np.broadcast_to(self._noise(model), (len(obs),)), dtype=self._dtype)
        f = _core.kron_apply(qs, np.ascontiguousarray(np.sqrt(lam) * rng.standard_normal((S, N)), dtype=self._dtype))
        rhs = np.ascontiguousarray(f[:, obs] + np.sqrt(nz) * rng.standard_normal((S, len(obs))), dtype=self._dtype)
        v, _, _ = _core.gp_pcg_solve(qs, self._lams, model.scale, obs, nz, rhs, 1e-6, int(self.cg_max_iter))
        full = np.zeros((S, N), dtype=self._dtype)
        full[:, obs] = v
        Kv = _core.kron_apply(qs, np.ascontiguousarray(_core.kron_apply(qts, full) * lam, dtype=self._dtype))
        return np.mean((np.asarray(f, np.float64) - Kv) ** 2, axis=0)

    @staticmethod
    def _row_kron(C):
        V = np.ones((C[0].shape[0], 1))
        for c in C:
            V = (V[:, :, None] * np.asarray(c, np.float64)[:, None, :]).reshape(len(V), -1)
        return V

    def _predict_cov(self, model, X, p=None):
        """Latent posterior covariance (M, M); ``p`` from :meth:`_predict_mean_var` when the
        kernel has a constant term."""
        X64 = X.astype(np.float64)
        prior = self._prior_matrix(model, X64, X64)
        if self.incomplete_:
            if len(self.X_train_) > _DENSE_VAR_LIMIT:
                raise NotImplementedError(
                    f"return_cov on an incomplete grid with more than {_DENSE_VAR_LIMIT} observed cells is not implemented"
                )
            Xo = self.X_train_.astype(np.float64)
            Koo = self._prior_matrix(model, Xo, Xo) + np.diag(np.broadcast_to(self._noise_rows(model), (len(Xo),)))
            Kxo = self._prior_matrix(model, X64, Xo)
            return prior - Kxo @ np.linalg.solve(Koo, Kxo.T)
        s = model.scale
        P = [np.asarray(model.factor_matrix(d, X64[:, d], self.axes_[d])) @ np.asarray(q, np.float64) for d, q in enumerate(self._qs)]
        V = self._row_kron(P)
        lam = _grid_eigenvalues(model.scale, self._lams)
        cov = prior - s * s * (V / (lam + float(self._noise(model)))) @ V.T
        if p is not None:
            cov += self._offset.gain * np.outer(1.0 - p, 1.0 - p)
        return cov

    def sample_y(self, X: Any, n_samples: int = 1, random_state: Any = 0) -> np.ndarray:
        """Draw samples from the posterior at X (from the prior before ``fit``), shape
        (n_samples_X, n_samples) (or (n_samples_X, n_targets, n_samples)).

        On the full training grid, samples come from the eigenbasis in ``O(N Σ n_d)``:
        ``f = μ + Q (√(Λσ²/(Λ+σ²)) ∘ z)`` (plus ``σ² √g v ζ`` with a constant term, see
        :class:`_Offset`, and WhiteKernel noise, as scikit-learn's covariance includes it).
        Elsewhere, as scikit-learn, from the dense covariance.
        """
        if _on_device(X) or self.__dict__.get("_on_device"):
            return _gpu().sample_y(self, X, n_samples, random_state)
        rng = check_random_state(random_state)
        fitted = hasattr(self, "_model")
        if fitted:
            X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        on_grid = fitted and not self.incomplete_ and X.shape == self.X_train_.shape and np.array_equal(X, self.X_train_)
        if not on_grid:
            mean, cov = self.predict(X, return_cov=True)
            if mean.ndim == 1:
                return rng.multivariate_normal(mean, cov, n_samples).T
            return np.stack([rng.multivariate_normal(mean[:, t], cov[..., t], n_samples).T for t in range(mean.shape[1])], axis=1)
        model = self._model
        mean = self.predict(X).astype(np.float64)
        N = len(X)
        lam = _grid_eigenvalues(model.scale, self._lams)
        s2 = float(self._noise(model))
        T = 1 if mean.ndim == 1 else mean.shape[1]
        # Independent draws per target: T·n_samples rows through one batched Kronecker product.
        z = rng.standard_normal((T * n_samples, N))
        zt = np.ascontiguousarray(np.sqrt(lam * s2 / (lam + s2)) * z, dtype=self._dtype)
        f = _core.kron_apply([np.ascontiguousarray(q) for q in self._qs], zt).astype(np.float64)
        f = f[:, self._flat].reshape(T, n_samples, N).transpose(2, 0, 1)  # (M, T, n_samples)
        if self._offset is not None:
            # On the training grid 1 − p = σ²v: the covariance gains σ⁴ g vvᵀ.
            v = self._offset.v[self._flat][:, None, None]
            f += s2 * np.sqrt(self._offset.gain) * v * rng.standard_normal((1, T, n_samples))
        if model.white > 0:
            f += np.sqrt(model.white) * rng.standard_normal(f.shape)
        std_y = np.reshape(np.asarray(self._y_train_std, np.float64), (1, -1, 1))
        out = mean.reshape(N, T, 1) + f * std_y
        return (out[:, 0, :] if mean.ndim == 1 else out).astype(self._dtype)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.target_tags.multi_output = True
        return tags


def _denormalise(est, model, M, mean, var, cov):
    """Undo the target normalisation and shape the outputs as scikit-learn (≥ 1.6) does:
    mean (M,) or (M, B) (given as (B, M)), std (M,) or (M, B), cov (M, M) or (M, M, B),
    where a single target given as y of shape (n, 1) is squeezed to the 1-D forms. Host and
    device arrays alike (``xp`` is their namespace)."""
    xp = array_module(mean)
    dt = est._dtype
    multi = est.y_train_.ndim > 1
    B = int(est.y_train_.shape[1]) if multi else 1
    std_y = xp.broadcast_to(xp.asarray(est._y_train_std, dtype=np.float64), (B,)) if multi else est._y_train_std
    squeeze = multi and B == 1
    if multi:
        mean = mean.T * std_y + est._y_train_mean
        mean = mean[:, 0] if squeeze else mean
    else:
        mean = mean[0] * std_y + est._y_train_mean
    if cov is not None:
        cov = cov + model.white * xp.eye(M)
        if multi:
            cov = cov[:, :, None] * std_y**2
            cov = cov[:, :, 0] if squeeze else cov
        else:
            cov = cov * std_y**2
        return mean.astype(dt), cov.astype(dt)
    if var is not None:
        std = xp.sqrt(xp.maximum(var + model.white, 0.0))
        if multi:
            std = std[:, None] * std_y
            std = std[:, 0] if squeeze else std
        else:
            std = std * std_y
        return mean.astype(dt), std.astype(dt)
    return mean.astype(dt)
