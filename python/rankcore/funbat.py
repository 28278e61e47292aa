"""Functional Bayesian Tucker decomposition (FunBaT) for continuous-indexed tensors.

Tucker assumes finitely many objects per mode; FunBaT (Fang et al., ICLR 2024) lets each mode
be indexed by a real coordinate. The ``K``-mode tensor entry at coordinates
``x = (x₁, …, x_K)`` is modelled as

.. math::

    y = \\operatorname{vec}(W)^\\top \\big(u^1(x_1) \\otimes \\cdots \\otimes u^K(x_K)\\big) + ε,
    \\qquad ε \\sim N(0, τ^{-1}),

with a core ``W`` of shape ``(r₁, …, r_K)`` (prior ``N(0, I)`` on ``vec(W)``; superdiagonal in
the CP variant), a ``Gamma(a₀, b₀)`` prior on the noise precision ``τ``, and ``r_k``
independent latent functions per mode with Matérn (ν = 1/2 or 3/2) Gaussian-process priors.
Each GP is written as a linear SDE, so the posterior of a mode's functions at its sorted
distinct coordinates comes from one Kalman filter and RTS smoother, in time linear in the
number of coordinates.

Inference is conditional expectation propagation (Wang & Zhe 2019): each entry's likelihood
sends closed-form Gaussian messages to its factor nodes and to the core, and a Gamma message
to ``τ``, computed from the current posteriors of the other variables (the core's full
covariance included). The messages are linear in the per-entry moment products, so only their
damped per-node sums are kept. Per-mode lengthscales and variances are learned by maximising
the approximate evidence of each mode's state-space model given its messages. Predictions at
any coordinates use the exact state-space interpolation between nodes (and extrapolation
beyond them).

The heavy parts (smoothers, message sums, Kronecker moment products) run in the Rust core
(``rankcore._core.funbat_*``); this module orchestrates them.

References
----------
Fang, S., Yu, X., Wang, Z., Li, S., Kirby, M., Zhe, S. (2024). Functional Bayesian Tucker
decomposition for continuous-indexed tensor data. ICLR.
Wang, Z., Zhe, S. (2019). Conditional expectation propagation. UAI.
Hartikainen, J., Särkkä, S. (2010). Kalman filtering and smoothing solutions to temporal
Gaussian process regression models. MLSP.
"""

from __future__ import annotations

import numbers
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from sklearn.base import BaseEstimator, RegressorMixin
from sklearn.utils.validation import check_is_fitted, validate_data

from rankcore import _core
from rankcore._backend import dispatch
from rankcore._validation import check_random_state_seed

__all__ = ["FactorFunctions", "FunBaT", "FunCP"]

_KERNELS = ("matern12", "matern32")
#: log-space bounds of the learned hyperparameters: lengthscale relative to the coordinate
#: range of its mode, variance absolute.
_ELL_BOUNDS = (1e-4, 1e2)
#: Sweeps (counted from 0) at which the hyperparameters move: every sweep from the second to
#: the twelfth, then every third (each move costs one batch of up to 9 filter passes per mode).
_HYPER_FIRST, _HYPER_DENSE, _HYPER_EVERY = 1, 12, 3
#: Pattern-search steps in log space: the first, and the floor.
_STEP0, _STEP_MIN = 0.5, 0.02
_VAR_BOUNDS = (1e-4, 1e4)


@dataclass
class FactorFunctions:
    """The posterior of one mode's ``r`` latent functions, callable at any coordinates.

    Attributes
    ----------
    nodes : ndarray of shape (n_nodes,)
        The sorted distinct training coordinates of the mode.
    mean : ndarray of shape (n_nodes, r)
        Posterior means of the functions at the nodes.
    cov : ndarray of shape (n_nodes, r, r)
        Posterior covariances of the functions at the nodes (the functions of a mode are
        correlated a posteriori).
    kernel : str
    lengthscale, variance : float
        The mode's (learned or fixed) GP hyperparameters.

    Calling ``f(x)`` gives the posterior means at coordinates ``x`` (shape ``(len(x), r)``),
    exactly interpolated between nodes and extrapolated beyond them; ``f(x, return_std=True)``
    also gives the standard deviations and ``f.moments(x)`` the full covariances. These are
    the functions of the internal, unit-scaled model: predictions are ``y_scale_ ·
    vec(W)ᵀ(⊗ₖ uᵏ)`` with ``W = core_ / y_scale_``.
    """

    nodes: np.ndarray
    mean: np.ndarray
    cov: np.ndarray
    kernel: str
    lengthscale: float
    variance: float
    _states: list = field(repr=False)

    @property
    def rank(self) -> int:
        return self.mean.shape[1]

    def moments(self, x: Any) -> tuple[np.ndarray, np.ndarray]:
        """Posterior means ``(q, r)`` and covariances ``(q, r, r)`` at coordinates ``x``."""
        xq = np.ascontiguousarray(np.asarray(x, dtype=np.float64).ravel())
        if not np.all(np.isfinite(xq)):
            raise ValueError("x must be finite")
        r = self.rank
        m, c = _core.funbat_interpolate(
            self.kernel, self.lengthscale, self.variance, r, self.nodes, self._states, xq
        )
        return m.reshape(len(xq), r), c.reshape(len(xq), r, r)

    def __call__(self, x: Any, return_std: bool = False):
        m, c = self.moments(x)
        if return_std:
            return m, np.sqrt(np.maximum(np.diagonal(c, axis1=1, axis2=2), 0.0))
        return m


def _check_rank(rank: Any, K: int, core: str) -> tuple[int, ...]:
    if isinstance(rank, numbers.Integral) and not isinstance(rank, bool):
        ranks = (int(rank),) * K
    else:
        try:
            ranks = tuple(rank)
        except TypeError:
            raise ValueError(f"rank must be a positive integer or a sequence of them, got {rank!r}") from None
        if not all(isinstance(r, numbers.Integral) and not isinstance(r, bool) for r in ranks):
            raise ValueError(f"rank must hold positive integers, got {rank!r}")
        ranks = tuple(int(r) for r in ranks)
        if len(ranks) != K:
            raise ValueError(f"rank has {len(ranks)} entries but X has {K} modes (columns)")
    if any(r < 1 for r in ranks):
        raise ValueError(f"rank must be at least 1 in every mode, got {rank!r}")
    if core == "cp" and len(set(ranks)) != 1:
        raise ValueError(f"rank must be the same in every mode for a CP core, got {rank!r}")
    return ranks


def _per_mode(value: Any, K: int, name: str) -> list[float | None]:
    """None (learned), a positive number, or a sequence of K of those."""
    vals = [value] * K if value is None or isinstance(value, numbers.Real) else list(value)
    if len(vals) != K:
        raise ValueError(f"{name} must be None, a positive number or {K} of them, got {value!r}")
    out: list[float | None] = []
    for v in vals:
        if v is None:
            out.append(None)
        elif isinstance(v, numbers.Real) and not isinstance(v, bool) and np.isfinite(v) and v > 0:
            out.append(float(v))
        else:
            raise ValueError(f"{name} must be None or positive and finite, got {value!r}")
    return out


class _FunBaTBase(RegressorMixin, BaseEstimator):
    _core_kind = "tucker"

    # -- fitting ---------------------------------------------------------------------------

    def _check_params(self, K: int):
        core = self._core_kind
        ranks = _check_rank(self.rank, K, core)
        if self.kernel not in _KERNELS:
            raise ValueError(f"kernel must be one of {_KERNELS}, got {self.kernel!r}")
        ells = _per_mode(self.lengthscale, K, "lengthscale")
        vars_ = _per_mode(self.variance, K, "variance")
        if not (isinstance(self.max_iter, numbers.Integral) and self.max_iter >= 1):
            raise ValueError(f"max_iter must be a positive integer, got {self.max_iter!r}")
        if not (isinstance(self.tol, numbers.Real) and self.tol >= 0):
            raise ValueError(f"tol must be a non-negative number, got {self.tol!r}")
        if not (isinstance(self.damping, numbers.Real) and 0 < self.damping <= 1):
            raise ValueError(f"damping must be in (0, 1], got {self.damping!r}")
        try:
            a0, b0 = (float(v) for v in self.noise_prior)
        except (TypeError, ValueError):
            raise ValueError(f"noise_prior must be a pair (shape, rate), got {self.noise_prior!r}") from None
        if not (a0 > 0 and b0 > 0 and np.isfinite(a0) and np.isfinite(b0)):
            raise ValueError(f"noise_prior must hold two positive numbers, got {self.noise_prior!r}")
        return ranks, ells, vars_, a0, b0

    def fit(self, X: Any, y: Any) -> "_FunBaTBase":
        """Fit the model to tensor entries observed at continuous coordinates.

        Parameters
        ----------
        X : array-like of shape (n_samples, K)
            Real coordinates of each entry, one column per mode. Every mode needs at least
            two distinct coordinates. Not modified.
        y : array-like of shape (n_samples,)
            Entry values. Not modified.

        Returns
        -------
        self

        Raises
        ------
        NotImplementedError
            For CuPy or Dask input (no GPU or Dask path yet; never copied to the host).
        """
        dispatch(y, name=f"{type(self).__name__}.fit", param="y", cpu=lambda v: v)
        return dispatch(X, name=f"{type(self).__name__}.fit", param="X", cpu=lambda X: self._fit(X, y))

    def _fit(self, X: Any, y: Any) -> "_FunBaTBase":
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32], y_numeric=True)
        n, K = X.shape
        if n < 2:
            raise ValueError(f"FunBaT needs at least 2 samples, got n_samples = {n}")
        ranks, ells, vars_, a0, b0 = self._check_params(K)
        self._dtype = X.dtype
        X = X.astype(np.float64)  # the filter runs in float64 (see the class docstring)
        y = np.asarray(y, dtype=np.float64)
        nodes, idx = [], np.empty((n, K), dtype=np.int64)
        for k in range(K):
            u, inv = np.unique(X[:, k], return_inverse=True)
            if len(u) < 2:
                raise ValueError(
                    f"X[:, {k}] has a single distinct coordinate; FunBaT needs at least 2 per mode"
                )
            nodes.append(np.ascontiguousarray(u))
            idx[:, k] = inv.ravel()
        core = self._core_kind
        R = int(np.prod(ranks)) if core == "tucker" else ranks[0]
        scale = float(np.sqrt(np.mean(y * y)))
        scale = scale if scale > 0 else 1.0
        yy = np.ascontiguousarray(y / scale)
        spans = [float(u[-1] - u[0]) for u in nodes]
        learn_ell = [e is None for e in ells]
        learn_var = [v is None for v in vars_]
        ell = [0.2 * s if e is None else e for e, s in zip(ells, spans)]
        var = [1.0 if v is None else v for v in vars_]
        steps = [_STEP0] * K

        # Symmetry-breaking start: smooth random functions (random cosines at the prior's
        # frequencies), scaled so that the initial f has unit size. The Kalman filters
        # themselves always start from the stationary prior.
        rng = np.random.default_rng(check_random_state_seed(self.random_state))
        means, seconds = [], []
        amp = R ** (-1.0 / (2 * K)) if core == "tucker" else ranks[0] ** (-1.0 / (2 * K))
        for k in range(K):
            w = rng.standard_normal((8, ranks[k])) / ell[k]
            ph = rng.uniform(0, 2 * np.pi, (8, ranks[k]))
            f = np.cos(nodes[k][:, None, None] * w[None] + ph[None]).sum(axis=1) / 2.0 * amp
            means.append(np.ascontiguousarray(f))
            seconds.append(np.ascontiguousarray(np.einsum("ia,ib->iab", f, f)))

        rho = float(self.damping)
        etau = 1.0
        a_post = a0 + 0.5 * n
        mode_msgs: list[Any] = [None] * K
        core_msg = None
        f_old = None
        self.converged_ = False
        self.n_iter_ = 0
        t0 = time.perf_counter()
        args = dict(ranks=list(ranks), core=core, nodes=[len(u) for u in nodes], idx=idx, y=yy)
        states: list[Any] = [None] * K

        def update_core():
            nonlocal core_msg, etau
            ssum, s = _core.funbat_core_sums(args["ranks"], core, args["nodes"], idx, yy, means, seconds)
            ssum = ssum.reshape(R, R)
            new = (etau * ssum, etau * s)
            core_msg = new if core_msg is None else tuple((1 - rho) * o + rho * m for o, m in zip(core_msg, new))
            mu, cov = _core.funbat_core_posterior(
                np.ascontiguousarray(core_msg[0]), np.ascontiguousarray(core_msg[1])
            )
            cov = cov.reshape(R, R)
            m2 = np.ascontiguousarray(np.outer(mu, mu) + cov)
            # Noise precision: Gamma(a₀ + n/2, b₀ + ½ Σ E[(y − f)²]), with
            # Σ E[f²] = ⟨M, Σ⊗S⟩ and Σ y E[f] = μᵀ Σ y ⊗ m.
            resid = float(yy @ yy - 2.0 * mu @ s + np.sum(m2 * ssum))
            b_post = b0 + 0.5 * max(resid, 0.0)
            etau = a_post / b_post
            return np.ascontiguousarray(mu), cov, m2, b_post

        for it in range(self.max_iter):
            mu, cov, m2, b_post = update_core()
            for k in range(K):
                lam, eta = _core.funbat_mode_messages(
                    k, args["ranks"], core, args["nodes"], idx, yy, means, seconds, mu, m2, etau
                )
                lam = lam.reshape(len(nodes[k]), ranks[k], ranks[k])
                eta = eta.reshape(len(nodes[k]), ranks[k])
                if mode_msgs[k] is not None:
                    lam = (1 - rho) * mode_msgs[k][0] + rho * lam
                    eta = (1 - rho) * mode_msgs[k][1] + rho * eta
                mode_msgs[k] = (lam, eta)
                if _hyper_sweep(it) and (learn_ell[k] or learn_var[k]):
                    ell[k], var[k], steps[k] = _learn_hyper(
                        self.kernel, ranks[k], nodes[k], lam, eta, ell[k], var[k], learn_ell[k], learn_var[k],
                        spans[k], steps[k],
                    )
                st = _core.funbat_smooth(self.kernel, ell[k], var[k], ranks[k], nodes[k], lam, eta)
                states[k] = st
                m = st["mean"].reshape(len(nodes[k]), ranks[k])
                c = st["cov"].reshape(len(nodes[k]), ranks[k], ranks[k])
                means[k] = np.ascontiguousarray(m)
                seconds[k] = np.ascontiguousarray(c + np.einsum("ia,ib->iab", m, m))
            self.n_iter_ = it + 1
            f_now, _ = _core.funbat_predict_moments(
                list(ranks), core, [means[k][idx[:, k]] for k in range(K)], None, mu, m2
            )
            change = np.inf if f_old is None else float(np.linalg.norm(f_now - f_old) / max(np.linalg.norm(f_now), 1e-300))
            f_old = f_now
            if self.verbose:
                rmse = float(np.sqrt(np.mean((f_now - yy) ** 2))) * scale
                print(
                    f"FunBaT iter {it + 1:3d}  train RMSE {rmse:.5g}  noise sd {scale / np.sqrt(etau):.4g}  "
                    f"change {change:.3g}  lengthscales {np.round(ell, 4).tolist()}  "
                    f"{time.perf_counter() - t0:.2f}s",
                    flush=True,
                )
            if change < self.tol:
                self.converged_ = True
                break
        # The core and the noise for the final factors.
        mu, cov, m2, b_post = update_core()

        self.ranks_ = ranks
        self.y_scale_ = scale
        self.core_ = (mu * scale).reshape(ranks) if core == "tucker" else mu * scale
        self.core_cov_ = cov * scale**2
        self._mu, self._m2 = mu, m2
        self.noise_shape_, self.noise_rate_ = a_post, b_post
        self.noise_variance_ = scale**2 * (b_post / (a_post - 1.0) if a_post > 1 else b_post / a_post)
        self.lengthscales_ = np.array(ell)
        self.variances_ = np.array(var)
        self.factor_functions_ = []
        for k in range(K):
            st = states[k]
            self.factor_functions_.append(
                FactorFunctions(
                    nodes=nodes[k],
                    mean=means[k],
                    cov=seconds[k] - np.einsum("ia,ib->iab", means[k], means[k]),
                    kernel=self.kernel,
                    lengthscale=ell[k],
                    variance=var[k],
                    _states=[st["filt_mean"], st["filt_cov"], st["state_mean"], st["state_cov"]],
                )
            )
        return self

    # -- prediction ------------------------------------------------------------------------

    def predict_f(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        """Posterior mean and variance of the noise-free ``f(x)`` at coordinates ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, K)

        Returns
        -------
        mean, var : ndarrays of shape (n_samples,)
            ``var`` includes the uncertainty of the core and of every factor function.
        """
        check_is_fitted(self, "factor_functions_")
        return dispatch(X, name=f"{type(self).__name__}.predict", param="X", cpu=self._predict_f)

    def _predict_f(self, X: Any) -> tuple[np.ndarray, np.ndarray]:
        X = validate_data(self, X, reset=False, dtype=[np.float64, np.float32])
        K = X.shape[1]
        ms, ss = [], []
        for k in range(K):
            m, c = self.factor_functions_[k].moments(X[:, k])
            ms.append(np.ascontiguousarray(m))
            ss.append(np.ascontiguousarray(c + np.einsum("ia,ib->iab", m, m)))
        f1, f2 = _core.funbat_predict_moments(list(self.ranks_), self._core_kind, ms, ss, self._mu, self._m2)
        s = self.y_scale_
        var = np.maximum(f2 - f1 * f1, 0.0) * s * s
        return (f1 * s).astype(X.dtype, copy=False), var.astype(X.dtype, copy=False)

    def predict(self, X: Any, return_std: bool = False):
        """Posterior predictive mean (and standard deviation) at coordinates ``X``.

        Parameters
        ----------
        X : array-like of shape (n_samples, K)
            Any real coordinates: between, at or beyond the training coordinates.
        return_std : bool, default=False
            Also return the predictive standard deviation of a new noisy observation
            ``y`` (the latent ``f``'s variance plus the noise variance); see
            :meth:`predict_f` for ``f`` alone.

        Returns
        -------
        y_mean : ndarray of shape (n_samples,)
        y_std : ndarray of shape (n_samples,), only with ``return_std``
        """
        mean, var = self.predict_f(X)
        if return_std:
            return mean, np.sqrt(var + self.noise_variance_).astype(mean.dtype, copy=False)
        return mean

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.input_tags.allow_nan = False
        return tags


def _hyper_sweep(it: int) -> bool:
    return _HYPER_FIRST <= it < _HYPER_DENSE or (it >= _HYPER_DENSE and (it - _HYPER_DENSE) % _HYPER_EVERY == 0)


def _learn_hyper(kind, r, x, lam, eta, ell, var, learn_ell, learn_var, span, step):
    """One pattern-search move on a mode's approximate evidence over (log ℓ, log σ²), the free
    ones: the current point and its neighbours at ±step (a 3 × 3 stencil, or 3 points when one
    is fixed) are evaluated in one batched, parallel core call; the best becomes the new
    point, and the step halves when the current point stays best. Returns (ℓ, σ², step)."""
    lo = np.log([_ELL_BOUNDS[0] * span, _VAR_BOUNDS[0]])
    hi = np.log([_ELL_BOUNDS[1] * span, _VAR_BOUNDS[1]])
    th = np.clip(np.log([ell, var]), lo, hi)
    offs_l = (0.0, -step, step) if learn_ell else (0.0,)
    offs_v = (0.0, -step, step) if learn_var else (0.0,)
    pts = np.array([[th[0] + a, th[1] + b] for a in offs_l for b in offs_v])
    pts = np.clip(pts, lo, hi)
    vals = np.asarray(_core.funbat_evidence(kind, np.exp(pts), r, x, lam, eta), dtype=np.float64)
    vals = np.where(np.isfinite(vals), vals, -np.inf)
    best = int(np.argmax(vals))  # ties keep the earliest, i.e. the current point
    if best == 0 or not vals[best] > vals[0]:
        return float(np.exp(th[0])), float(np.exp(th[1])), max(step * 0.5, _STEP_MIN)
    return float(np.exp(pts[best, 0])), float(np.exp(pts[best, 1])), step


_PARAMS_DOC = """
    kernel : {"matern32", "matern12"}, default="matern32"
        Matérn smoothness ν = 3/2 or 1/2 of every latent function's GP prior.
    lengthscale : None, float or sequence of K floats, default=None
        Per-mode GP lengthscales. None learns them (from 0.2 × the mode's coordinate range)
        by maximising the approximate evidence of each mode's state-space model given its
        current messages: a pattern search in log space that moves once per sweep (every
        sweep from the second to the twelfth, then every third), its stencil evaluated in
        parallel; a number fixes them.
    variance : None, float or sequence of K floats, default=None
        Per-mode GP variances; None learns them (from 1), a number fixes them.
    max_iter : int, default=100
        Maximum number of CEP sweeps (core, noise, then each mode).
    tol : float, default=1e-4
        Convergence: stop when the relative change of the posterior mean of ``f`` at the
        training entries between sweeps falls below ``tol``.
    damping : float in (0, 1], default=1.0
        Weight of the new messages: ``new sum = (1 − damping) · old + damping · fresh``.
        1 is plain conditional EP (coordinate ascent); smaller values slow it but can help
        oscillating fits.
    noise_prior : (float, float), default=(1e-3, 1e-3)
        Shape and rate of the Gamma prior on the noise precision τ (of the targets scaled
        by their root mean square).
    random_state : None, int, Generator or RandomState, default=None
        Seeds the random smooth functions the factors start from.
    verbose : bool, default=False
        Print the training RMSE, noise level, change and lengthscales every sweep.

    Attributes
    ----------
    core_ : ndarray of shape rank (Tucker) or (r,) (CP)
        Posterior mean of the core, in the units of ``y`` (``y_scale_ · E[W]``).
    core_cov_ : ndarray of shape (R, R)
        Posterior covariance of ``vec(core_)``.
    factor_functions_ : list of FactorFunctions
        Per mode: the node table (``nodes``, ``mean``, ``cov``) and a callable giving the
        posterior of the latent functions at any coordinates.
    lengthscales_, variances_ : ndarray of shape (K,)
        The GP hyperparameters used (learned or fixed).
    noise_variance_ : float
        Posterior mean of the noise variance ``1/τ`` in the units of ``y``.
    y_scale_ : float
        Root mean square of the training targets (the model is fitted to ``y / y_scale_``).
    ranks_ : tuple of int
    n_iter_ : int
    converged_ : bool
    n_features_in_ : int
        K, the number of modes.

    Notes
    -----
    Inference runs in float64 whatever the input dtype (the Kalman filter's covariances
    lose too much precision in float32 with nearly noise-free data); predictions come back
    in the dtype of ``X``. Cost per sweep: ``O(n · R²/r_k²)`` for each mode's message sums,
    ``O(n_k · R²)`` for their contraction with the core's second moment, ``O(n_k · (d r_k)³)``
    for each smoother (``n_k`` distinct coordinates of mode k, ``d`` = 1 or 2, ``R = Π r_k``)
    and ``O(R³)`` for the core. Memory holds per-node message sums only, never per-entry
    messages.
"""


class FunBaT(_FunBaTBase):
    __doc__ = (
        """Functional Bayesian Tucker decomposition of a continuous-indexed tensor.

    See the module docstring (:mod:`rankcore.funbat`) for the model and the inference.

    Parameters
    ----------
    rank : int or sequence of K ints, default=2
        Tucker ranks ``(r₁, …, r_K)``: latent functions per mode. An int means the same
        rank in every mode.
    core : {"tucker", "cp"}, default="tucker"
        A full Tucker core or a superdiagonal (CP) one; ``"cp"`` needs equal ranks and is
        what :class:`FunCP` fits."""
        + _PARAMS_DOC
        + """
    Examples
    --------
    >>> import numpy as np
    >>> from rankcore import FunBaT
    >>> rng = np.random.default_rng(0)
    >>> X = rng.uniform(0, 1, (300, 2))
    >>> y = np.sin(2 * np.pi * X[:, 0]) * np.exp(-X[:, 1])
    >>> model = FunBaT(rank=1, random_state=0).fit(X, y)
    >>> bool(model.score(X, y) > 0.99)
    True
    """
    )

    def __init__(
        self,
        rank: Any = 2,
        *,
        core: str = "tucker",
        kernel: str = "matern32",
        lengthscale: Any = None,
        variance: Any = None,
        max_iter: int = 100,
        tol: float = 1e-4,
        damping: float = 1.0,
        noise_prior: Any = (1e-3, 1e-3),
        random_state: Any = None,
        verbose: bool = False,
    ) -> None:
        self.rank = rank
        self.core = core
        self.kernel = kernel
        self.lengthscale = lengthscale
        self.variance = variance
        self.max_iter = max_iter
        self.tol = tol
        self.damping = damping
        self.noise_prior = noise_prior
        self.random_state = random_state
        self.verbose = verbose

    @property
    def _core_kind(self) -> str:  # type: ignore[override]
        if self.core not in ("tucker", "cp"):
            raise ValueError(f"core must be 'tucker' or 'cp', got {self.core!r}")
        return self.core


class FunCP(_FunBaTBase):
    __doc__ = (
        """Functional Bayesian CP decomposition: :class:`FunBaT` with a superdiagonal core.

    ``f(x) = Σ_j w_j Π_k u^k_j(x_k)`` with ``N(0, 1)`` priors on the weights ``w``.

    Parameters
    ----------
    rank : int, default=2
        Number of components ``r`` (latent functions in every mode)."""
        + _PARAMS_DOC
    )

    _core_kind = "cp"

    def __init__(
        self,
        rank: Any = 2,
        *,
        kernel: str = "matern32",
        lengthscale: Any = None,
        variance: Any = None,
        max_iter: int = 100,
        tol: float = 1e-4,
        damping: float = 1.0,
        noise_prior: Any = (1e-3, 1e-3),
        random_state: Any = None,
        verbose: bool = False,
    ) -> None:
        self.rank = rank
        self.kernel = kernel
        self.lengthscale = lengthscale
        self.variance = variance
        self.max_iter = max_iter
        self.tol = tol
        self.damping = damping
        self.noise_prior = noise_prior
        self.random_state = random_state
        self.verbose = verbose
