"""k-medoids on the device, written once for cupy and NumPy (the CI stand-in).

Dissimilarities come from features, a tile of rows at a time (``cuda/kmedoids.cu``:
``rk_km_distances``, the CPU's direct sums, bit for bit), or from a square matrix already on
the device. The n×n matrix is never formed from features unless it fits the ``precompute``
budget: a pass holds one tile of ``B × n`` distances (``_TILE_BYTES``), the state holds the
``n × k`` distances to the medoids.

The swap evaluation is FastPAM1's (Schubert & Rousseeuw 2019): for a candidate ``x`` and
every point ``o`` (nearest medoid at ``dn``, second at ``ds``, weight ``w``)::

    change(x, s) = Σ_o w (min(d, dn) − dn)  +  Σ_{o: near(o) = s} w (min(max(d, dn), ds) − dn)

with ``d = d(x, o)``; the first sum is shared by all slots, the second is the removal loss
of slot ``s`` corrected by ``x``. Points are grouped by slot and cut into pieces of at most
``_PIECE`` points; ``rk_km_swap_pieces`` reduces each (candidate, piece) in one warp (fixed
order, float64, no atomics), and one small GEMM with the piece→slot indicator adds the pieces
of each slot. So a pass evaluates every (candidate, slot) pair exactly as PAM would, in
O(n·(n·d + k)) work, and the argmins pick the lowest candidate, then the lowest slot, on
ties: FastPAM1's (and PAM's) swaps.

Methods
-------
``fastpam1`` (and ``pam``): one best swap per pass, the CPU's FastPAM1/PAM result on tie-free
data. ``fasterpam`` (the eager variant, the GPU counterpart of FasterPAM): each pass evaluates
all candidates against the current state, proposes for every slot its best improving
candidate, and applies the proposals in order of their gain, each re-evaluated against the
state the previous ones left (one distance row each) and applied only if it still lowers the
loss; it stops after a pass with no improving swap, so the result is a local optimum of
single swaps, like FasterPAM's (but not the same one: the swap sequence differs).
``clara``: the eager variant on ``n_samples`` subsamples on the device, each scored on all
points. Inits: ``build`` (PAM's BUILD: one pass per medoid), ``lab``, ``random``,
``k-medoids++`` and ``heuristic`` with the CPU's Philox draws, or given indices.

Host reads are scalars only (a chosen index, a gain's sign, the loss); the medoids, labels
and every array stay where the input lives.
"""

from __future__ import annotations

import math
import sys
from typing import Any

import numpy as np

from rankcore import _core
from rankcore import _core as _reference  # HostKernels only: the orchestration takes seed draws from _core
from rankcore._gpu._arrays import array_module

__all__ = ["DeviceKernels", "HostKernels", "METRIC_CODES", "cross_distances", "fit", "kernels_for"]

#: The CPU's metric names and the kernel's template argument for each.
METRIC_CODES = {"euclidean": 0, "sqeuclidean": 1, "manhattan": 2, "cosine": 3}
#: Philox streams of the random parts (those of rust/rankcore/src/kmedoids/init.rs).
STREAM_RANDOM = 0x4B4D_0001
STREAM_KPP = 0x4B4D_0002
STREAM_LAB = 0x4B4D_0003
STREAM_CLARA = 0x4B4D_0004
#: ``init="auto"`` takes BUILD while ``n² k`` is at most this (one device pass over n² pairs
#: per medoid; 100 times the CPU's bound), LAB beyond.
AUTO_BUILD_WORK = 2.5e11
#: Bytes of one tile of candidate rows (``B × n`` distances).
_TILE_BYTES = 256 << 20
#: Points per piece of the swap reduction (one warp each).
_PIECE = 1024
_THREADS = 256


# --------------------------------------------------------------------------------------
# the kernel table
# --------------------------------------------------------------------------------------


def kernels_for(xp: Any) -> "HostKernels | DeviceKernels":
    """NumPy references (``xp is numpy``) or the device's kernels."""
    return HostKernels() if xp is np else DeviceKernels(xp)


class HostKernels:
    """References of the kernels: distances from the Rust kernel (the same bits), the swap
    reduction in plain NumPy (float64, another summation order)."""

    xp = np

    def norms(self, X: np.ndarray) -> None:
        return None  # the Rust reference computes its own

    def distances(self, X: np.ndarray, norms: Any, rows: Any, col0: int, ncols: int,
                  metric: str) -> np.ndarray:
        """``out[r, c] = d(rows[r], col0 + c)``."""
        rows = np.asarray(rows, dtype=np.int64)
        both = np.ascontiguousarray(np.concatenate([X[rows], X[col0:col0 + ncols]]))
        full = _reference.kmedoids_matrix("features", both, metric)
        out = np.array(full[: len(rows), len(rows):])
        # The Rust matrix sees two copies of a point here; the kernel knows it is one.
        out[rows[:, None] == np.arange(col0, col0 + ncols)[None, :]] = 0
        return out

    def swap_pieces(self, D: np.ndarray, order: np.ndarray, dn: np.ndarray, ds: np.ndarray,
                    w: np.ndarray, pstart: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """``(ploss, acc)``, each ``(rows, pieces)`` float64 (see ``rk_km_swap_pieces``)."""
        G = D[:, order].astype(np.float64)
        a, b = dn.astype(np.float64), ds.astype(np.float64)
        with np.errstate(invalid="ignore"):  # overflowed (infinite) distances: reported later
            acc_terms = w * (np.minimum(G, a) - a)
            ploss_terms = w * (np.minimum(np.maximum(G, a), b) - a)
        lo, hi = pstart[:-1], pstart[1:]

        def pieces(t: np.ndarray) -> np.ndarray:
            t = np.concatenate([t, np.zeros((t.shape[0], 1))], axis=1)  # so lo = n is valid
            return np.where(hi > lo, np.add.reduceat(t, lo, axis=1)[:, : len(lo)], 0.0)

        return pieces(ploss_terms), pieces(acc_terms)


def _grid(total: int) -> int:
    return max(1, min(-(-total // _THREADS), 65535 * 64))


class DeviceKernels:
    """The kernels of ``cuda/kmedoids.cu`` on the current device (`xp` and `function` are
    NumPy and the host-compiled kernels in ``tests/test_cuda_emulated.py``)."""

    def __init__(self, xp: Any = None, function: Any = None) -> None:
        if xp is None:
            import cupy as xp
        if function is None:
            from rankcore._gpu import _kernels

            function = _kernels.function
        self.xp = xp
        self._function = function

    @staticmethod
    def _t(dtype: Any) -> str:
        return "float" if np.dtype(dtype) == np.float32 else "double"

    def norms(self, X: Any) -> Any:
        n, d = X.shape
        out = self.xp.empty(n, dtype=X.dtype)
        f = self._function("kmedoids", f"rk_km_norms<{self._t(X.dtype)}>")
        f((_grid(n),), (_THREADS,), (X, np.int64(n), np.int32(d), np.int64(X.strides[0] // X.itemsize), out))
        return out

    def distances(self, X: Any, norms: Any, rows: Any, col0: int, ncols: int, metric: str) -> Any:
        xp = self.xp
        rows = xp.ascontiguousarray(xp.asarray(rows, dtype=xp.int64))
        nr = int(rows.shape[0])
        out = xp.empty((nr, ncols), dtype=X.dtype)
        if nr == 0 or ncols == 0:
            return out
        name = f"rk_km_distances<{self._t(X.dtype)}, {METRIC_CODES[metric]}>"
        grid = (-(-ncols // 64), -(-nr // 64))
        self._function("kmedoids", name)(
            grid, (_THREADS,),
            (X, np.int64(X.strides[0] // X.itemsize), np.int32(X.shape[1]), rows, np.int32(nr),
             np.int64(col0), np.int32(ncols), X if norms is None else norms, out, np.int64(ncols)))
        return out

    def swap_pieces(self, D: Any, order: Any, dn: Any, ds: Any, w: Any, pstart: Any) -> tuple[Any, Any]:
        xp = self.xp
        nr, P = int(D.shape[0]), int(pstart.shape[0]) - 1
        ploss = xp.empty((nr, P), dtype=xp.float64)
        acc = xp.empty((nr, P), dtype=xp.float64)
        warps = nr * P
        self._function("kmedoids", f"rk_km_swap_pieces<{self._t(D.dtype)}>")(
            (max(1, -(-warps // (_THREADS // 32))),), (_THREADS,),
            (D, np.int64(D.strides[0] // D.itemsize), np.int32(nr), order, dn, ds, w, pstart,
             np.int32(P), ploss, acc))
        return ploss, acc


# --------------------------------------------------------------------------------------
# dissimilarity sources
# --------------------------------------------------------------------------------------


class _Source:
    """Rows of the dissimilarity: from features (computed per tile) or a stored matrix."""

    def __init__(self, kern: Any, *, X: Any = None, D: Any = None, metric: str = "",
                 norms: Any = None) -> None:
        self.kern, self.xp = kern, kern.xp
        self.X, self.D, self.metric = X, D, metric
        if X is not None and metric == "cosine" and norms is None:
            norms = kern.norms(X)
        self.norms = norms
        base = X if D is None else D
        self.n, self.dtype = int(base.shape[0]), base.dtype

    def rows(self, r0: int, r1: int) -> Any:
        """``d(x, ·)`` for ``x`` in ``r0..r1``, shape ``(r1 - r0, n)``."""
        if self.D is not None:
            return self.D[r0:r1]
        return self.kern.distances(self.X, self.norms, self.xp.arange(r0, r1, dtype=self.xp.int64),
                                   0, self.n, self.metric)

    def rows_at(self, idx: Any) -> Any:
        """``d(x, ·)`` for the points `idx` (a device or host index array)."""
        idx = self.xp.asarray(idx, dtype=self.xp.int64)
        if self.D is not None:
            return self.D[idx]
        return self.kern.distances(self.X, self.norms, idx, 0, self.n, self.metric)

    def sub(self, idx: Any) -> "_Source":
        """The dissimilarities among the points `idx` (distinct) as a stored matrix."""
        xp = self.xp
        if self.D is not None:
            return _Source(self.kern, D=xp.ascontiguousarray(self.D[idx][:, idx]))
        Xs = xp.ascontiguousarray(self.X[idx])
        norms = None if self.norms is None else xp.ascontiguousarray(self.norms[idx])
        m = int(Xs.shape[0])
        D = self.kern.distances(Xs, norms, xp.arange(m, dtype=xp.int64), 0, m, self.metric)
        return _Source(self.kern, D=D)

    def materialised(self) -> "_Source":
        """The n×n matrix of the same bits, computed one tile of rows at a time."""
        if self.D is not None:
            return self
        xp = self.xp
        D = xp.empty((self.n, self.n), dtype=self.dtype)
        step = _tile(self.n, self.dtype)
        for r0 in range(0, self.n, step):
            D[r0:r0 + step] = self.rows(r0, min(self.n, r0 + step))
        return _Source(self.kern, D=D)

    def tiles(self) -> Any:
        step = _tile(self.n, self.dtype)
        for r0 in range(0, self.n, step):
            r1 = min(self.n, r0 + step)
            yield r0, r1, self.rows(r0, r1)


def _tile(n: int, dtype: Any) -> int:
    """Candidate rows per tile: ``_TILE_BYTES`` of distances, a multiple of 64 (at least 64)."""
    rows = _TILE_BYTES // max(1, n * np.dtype(dtype).itemsize)
    return max(64, rows // 64 * 64)


# --------------------------------------------------------------------------------------
# the swap state
# --------------------------------------------------------------------------------------


class _State:
    """Medoids, the ``n × k`` distances to them, each point's nearest and second-nearest
    slot and distance, the loss, and the points grouped by slot in pieces for the kernel."""

    def __init__(self, src: _Source, med: Any, w: Any) -> None:
        xp = self.xp = src.xp
        self.src, self.w = src, w
        self.n, self.k = src.n, int(med.shape[0])
        self.med = xp.array(med, dtype=xp.int64)
        self.is_med = xp.zeros(self.n, dtype=bool)
        self.is_med[self.med] = True
        self.dm = xp.ascontiguousarray(src.rows_at(self.med).T)
        self.reassign()

    def reassign(self) -> None:
        """Nearest and second nearest from ``dm``: ties to the lowest slot, a medoid always
        its own nearest (the CPU's ``nearest_two``); then loss, order and pieces."""
        xp, n, k, dm = self.xp, self.n, self.k, self.dm
        ar = xp.arange(n)
        near = xp.argmin(dm, axis=1)
        near[self.med] = xp.arange(k)
        dn = dm[ar, near]
        if k > 1:
            tmp = dm.copy()
            tmp[ar, near] = np.inf
            ds = tmp[ar, xp.argmin(tmp, axis=1)]
        else:
            ds = xp.full(n, np.inf, dtype=dm.dtype)
        self.near, self.dn, self.ds = near, dn, ds
        self.loss = float(dn.astype(xp.float64) @ self.w)
        order = xp.argsort(near, kind="stable")
        bounds = xp.zeros(k + 1, dtype=xp.int64)
        bounds[1:] = xp.cumsum(xp.bincount(near, minlength=k))
        self.order = order.astype(xp.int32)
        self.dn_p, self.ds_p, self.w_p = dn[order], ds[order], self.w[order]
        self.pstart, slots = _pieces(xp, bounds, n)
        self.onehot = (slots[:, None] == xp.arange(k)[None, :]).astype(xp.float64)

    def evaluate(self, D: Any) -> tuple[Any, Any]:
        """``(change, slot)`` of the best swap of each candidate row of `D` (lowest slot on
        ties), as FastPAM1 computes it."""
        xp = self.xp
        pl, ac = self.src.kern.swap_pieces(D, self.order, self.dn_p, self.ds_p, self.w_p, self.pstart)
        ploss = pl @ self.onehot
        slot = xp.argmin(ploss, axis=1)
        return ploss[xp.arange(ploss.shape[0]), slot] + ac.sum(axis=1), slot

    def evaluate_all(self) -> tuple[Any, Any]:
        """Best swap of every point as candidate (medoids: +inf)."""
        xp = self.xp
        change = xp.empty(self.n, dtype=xp.float64)
        slot = xp.empty(self.n, dtype=xp.int64)
        for r0, r1, D in self.src.tiles():
            change[r0:r1], slot[r0:r1] = self.evaluate(D)
        change[self.is_med] = np.inf
        return change, slot

    def swap(self, s: int, x: int, row: Any) -> None:
        """Medoid slot `s` becomes point `x` (whose distance row is `row`)."""
        self.is_med[self.med[s]] = False
        self.is_med[x] = True
        self.med[s] = x
        self.dm[:, s] = row
        self.reassign()

    def labels(self) -> Any:
        return self.near.astype(self.xp.int64)


def _pieces(xp: Any, bounds: Any, n: int) -> tuple[Any, Any]:
    """Piece offsets (``P + 1``, int64) cutting ``0..n`` at every slot boundary in `bounds`
    and every ``_PIECE`` points, and the slot of each piece. Empty pieces are allowed."""
    k = int(bounds.shape[0]) - 1
    starts = xp.sort(xp.concatenate([bounds[:-1], xp.arange(0, n, _PIECE, dtype=xp.int64)]))
    pstart = xp.concatenate([starts, xp.asarray([n], dtype=xp.int64)])
    slots = xp.minimum(xp.searchsorted(bounds, starts, side="right") - 1, k - 1)
    return pstart, slots


# --------------------------------------------------------------------------------------
# initialisation
# --------------------------------------------------------------------------------------


def _uniforms(seed: int, stream: int, m: int, col: int = 0) -> np.ndarray:
    """Philox uniforms ``(i, col)`` for ``i < m`` (host: a seed's few draws, not data)."""
    if m == 0:
        return np.zeros(0)
    return _core.random_matrix("uniform", seed, stream, 0, col, m, 1)[:, 0]


def _sample(n: int, m: int, seed: int, stream: int, col: int) -> list[int]:
    """The CPU's ``init::sample``: the first ``min(m, n)`` entries of a Fisher–Yates shuffle
    of ``0..n`` driven by Philox column `col` (kept sparse: O(m) work)."""
    m = min(m, n)
    u = _uniforms(seed, stream, m, col)
    perm: dict[int, int] = {}
    out = []
    for i in range(m):
        j = i + min(int(u[i] * (n - i)), n - i - 1)
        vi, vj = perm.get(i, i), perm.get(j, j)
        perm[i], perm[j] = vj, vi
        out.append(vj)
    return out


def _single_pieces(xp: Any, n: int) -> tuple[Any, Any]:
    """One group of all points in index order, in pieces (BUILD's reductions)."""
    order = xp.arange(n, dtype=xp.int32)
    return order, xp.concatenate([xp.arange(0, n, _PIECE, dtype=xp.int64), xp.asarray([n], dtype=xp.int64)])


def _totals(src: _Source, w: Any) -> Any:
    """``Σ_o w_o d(x, o)`` for every point ``x`` (float64)."""
    xp = src.xp
    order, pstart = _single_pieces(xp, src.n)
    zero = xp.zeros(src.n, dtype=src.dtype)
    inf = xp.full(src.n, np.inf, dtype=src.dtype)
    out = xp.empty(src.n, dtype=xp.float64)
    for r0, r1, D in src.tiles():
        out[r0:r1] = src.kern.swap_pieces(D, order, zero, inf, w, pstart)[0].sum(axis=1)
    return out


def _build(src: _Source, k: int, w: Any) -> Any:
    """PAM BUILD: the point of least total dissimilarity, then greedily the point that lowers
    the loss most; ties to the lowest index (the CPU's ``init::build``)."""
    xp, n = src.xp, src.n
    med = [int(xp.argmin(_totals(src, w)))]
    is_med = xp.zeros(n, dtype=bool)
    is_med[med[0]] = True
    dn = src.rows_at([med[0]])[0].copy()
    order, pstart = _single_pieces(xp, n)
    inf = xp.full(n, np.inf, dtype=src.dtype)
    while len(med) < k:
        change = xp.empty(n, dtype=xp.float64)
        for r0, r1, D in src.tiles():
            change[r0:r1] = src.kern.swap_pieces(D, order, dn, inf, w, pstart)[1].sum(axis=1)
        change[is_med] = np.inf
        x = int(xp.argmin(change))
        med.append(x)
        is_med[x] = True
        dn = xp.minimum(dn, src.rows_at([x])[0])
    return xp.asarray(med, dtype=xp.int64)


def _lab(src: _Source, k: int, w: Any, seed: int) -> Any:
    """LAB: BUILD on a fresh Philox subsample of ``10 + ceil(sqrt(n))`` non-medoids per step,
    which serves both as candidates and as the points measured (the CPU's ``init::lab``)."""
    xp, n = src.xp, src.n
    m = 10 + math.ceil(math.sqrt(n))
    med: list[int] = []
    is_med = xp.zeros(n, dtype=bool)
    dn = None
    for step in range(k):
        free = xp.nonzero(~is_med)[0]
        s = free[xp.asarray(_sample(n - step, m, seed, STREAM_LAB, step), dtype=xp.int64)]
        Dss = src.sub(s).D.astype(xp.float64)
        if step == 0:
            cost = (Dss * w[s]).sum(axis=1)
        else:
            cur = dn[s].astype(xp.float64)
            cost = ((xp.minimum(Dss, cur) - cur) * w[s]).sum(axis=1)
        x = int(s[xp.argmin(cost)])
        row = src.rows_at([x])[0]
        dn = row.copy() if dn is None else xp.minimum(dn, row)
        med.append(x)
        is_med[x] = True
    return xp.asarray(med, dtype=xp.int64)


def _kpp(src: _Source, k: int, w: Any, seed: int) -> Any:
    """k-medoids++: the first medoid uniform, each next drawn with probability proportional
    to ``w_o d(o, nearest medoid)²`` (the CPU's ``init::kpp``, same Philox draws)."""
    xp, n = src.xp, src.n
    u = _uniforms(seed, STREAM_KPP, k)
    med = [min(int(u[0] * n), n - 1)]
    is_med = xp.zeros(n, dtype=bool)
    is_med[med[0]] = True
    dn = src.rows_at([med[0]])[0].copy()
    for step in range(1, k):
        d = dn.astype(xp.float64)
        p = xp.where(is_med, 0.0, w * (d * d))
        cs = xp.cumsum(p)
        total = float(cs[-1])
        x = None
        if total > 0.0:
            target = xp.asarray([float(u[step]) * total])
            x = int(xp.searchsorted(cs, target, side="right")[0])
            if x >= n:  # rounding left the target at the last partial sum: the last positive
                x = n - 1 - int(xp.argmax((p > 0)[::-1]))
        if x is None:  # the remaining points coincide with medoids (or weigh nothing)
            x = int(xp.argmax(~is_med))
        med.append(x)
        is_med[x] = True
        dn = xp.minimum(dn, src.rows_at([x])[0])
    return xp.asarray(med, dtype=xp.int64)


def _initialize(src: _Source, k: int, init: Any, w: Any, seed: int) -> Any:
    xp, n = src.xp, src.n
    if not isinstance(init, str):
        return xp.asarray(init, dtype=xp.int64)
    if init == "auto":
        init = "build" if float(n) ** 2 * k <= AUTO_BUILD_WORK else "lab"
    if init == "build":
        return _build(src, k, w)
    if init == "lab":
        return _lab(src, k, w, seed)
    if init == "k-medoids++":
        return _kpp(src, k, w, seed)
    if init == "random":
        return xp.asarray(_sample(n, k, seed, STREAM_RANDOM, 0), dtype=xp.int64)
    if init == "heuristic":  # the k points of least total dissimilarity (ties: lowest index)
        return xp.argsort(_totals(src, w), kind="stable")[:k].astype(xp.int64)
    raise ValueError(f"unknown init {init!r}")


# --------------------------------------------------------------------------------------
# swap loops
# --------------------------------------------------------------------------------------


class _Progress:
    def __init__(self) -> None:
        self.n_iter = self.n_swap = 0
        self.converged = False


def _log(verbose: bool, msg: str) -> None:
    if verbose:
        print(f"kmedoids (device): {msg}", file=sys.stderr)


def _fastpam1(st: _State, max_iter: int, verbose: bool) -> _Progress:
    """One best swap per pass (lowest candidate, then lowest slot, on ties) until none
    lowers the loss: PAM's and FastPAM1's swaps."""
    xp, p = st.xp, _Progress()
    while True:
        if st.k == st.n:
            p.converged = True
            break
        if p.n_iter >= max_iter:
            break
        p.n_iter += 1
        change, slot = st.evaluate_all()
        x = int(xp.argmin(change))
        if not float(change[x]) < 0.0:
            p.converged = True
            break
        st.swap(int(slot[x]), x, st.src.rows_at([x])[0])
        p.n_swap += 1
        _log(verbose, f"iteration {p.n_iter} loss {st.loss:.6e}")
    return p


def _eager(st: _State, max_iter: int, verbose: bool) -> _Progress:
    """The eager variant: per pass, each slot's best improving candidate is proposed, and
    the proposals are applied best first, each re-evaluated against the current state."""
    xp, p = st.xp, _Progress()
    n, k = st.n, st.k
    if k == n:
        p.converged = True
        return p
    slots = xp.arange(k)
    while p.n_iter < max_iter:
        p.n_iter += 1
        before, last = p.n_swap, st.loss
        change, slot = st.evaluate_all()
        by_change = xp.argsort(change, kind="stable")
        grouped = by_change[xp.argsort(slot[by_change], kind="stable")]  # by slot, then change
        first = xp.searchsorted(slot[grouped], slots, side="left")
        at = grouped[xp.minimum(first, n - 1)]
        valid = (first < n) & (slot[at] == slots)
        gain = xp.where(valid, change[at], np.inf)
        ranked = at[xp.argsort(gain, kind="stable")]
        for i in range(int((gain < 0.0).sum())):
            x = int(ranked[i])
            row = st.src.rows_at([x])
            c, s = st.evaluate(row)
            if float(c[0]) < 0.0:
                st.swap(int(s[0]), x, row[0])
                p.n_swap += 1
        _log(verbose, f"pass {p.n_iter} loss {st.loss:.6e} swaps {p.n_swap - before}")
        if p.n_swap == before or st.loss >= last:
            p.converged = True
            break
    return p


# --------------------------------------------------------------------------------------
# CLARA
# --------------------------------------------------------------------------------------


def _clara(src: _Source, k: int, init: Any, opts: dict, w: Any) -> dict:
    """FastCLARA on the device: the eager variant on ``n_samples`` subsamples (the later ones
    holding the best medoids so far), each scored on all points; the best kept."""
    xp, n = src.xp, src.n
    m = min(max(opts["sample_size"] or 80 + 4 * k, k), n)
    seed = opts["seed"]
    best_loss, best = math.inf, None
    given = None if isinstance(init, str) else xp.asarray(init, dtype=xp.int64)
    total, first_init = _Progress(), None
    for s in range(max(1, opts["n_samples"])):
        keep0 = best if best is not None else given
        perm = xp.asarray(_sample(n, min(n, m + k), seed, STREAM_CLARA, s), dtype=xp.int64)
        if keep0 is None:
            keep = perm[:m]
        else:
            rest = perm[~xp.isin(perm, keep0)]
            keep = xp.concatenate([keep0, rest[: m - k]])
        keep = xp.sort(keep)
        sub = src.sub(keep)
        sw = xp.ascontiguousarray(w[keep])
        start = (_initialize(sub, k, init, sw, (seed + s) % 2**64) if keep0 is None
                 else xp.searchsorted(keep, keep0))
        st = _State(sub, start, sw)
        prog = _eager(st, opts["max_iter"], False)
        total.n_iter += prog.n_iter
        total.n_swap += prog.n_swap
        med = keep[st.med]
        if s == 0:
            first_init = keep[start]
        loss = _State(src, med, w).loss
        _log(opts["verbose"], f"CLARA sample {s + 1} loss {loss:.6e}")
        if best is None or loss < best_loss:
            best_loss, best = loss, med
    total.converged = True
    return _result(_State(src, best, w), total, first_init)


# --------------------------------------------------------------------------------------
# entry point
# --------------------------------------------------------------------------------------


def _result(st: _State, p: _Progress, init_medoids: Any) -> dict:
    if not math.isfinite(st.loss):
        ty = "float32" if st.dm.dtype == np.float32 else "float64"
        raise ValueError(
            f"dissimilarities overflowed the {ty} range (infinite distances or loss); "
            "use float64 input or rescale the data"
        )
    return {"medoids": st.med, "labels": st.labels(), "loss": st.loss, "n_iter": p.n_iter,
            "n_swap": p.n_swap, "converged": p.converged, "init_medoids": init_medoids}


def fit(data: Any, kind: str, metric: str, opts: dict, w: Any, init: Any) -> dict:
    """Run k-medoids on validated input where it lives.

    `data`: features (``kind="features"``, C-contiguous, ``metric`` one of
    :data:`METRIC_CODES`) or a square dissimilarity matrix (``kind="square"``). `opts`:
    ``n_clusters``, ``method`` ("fasterpam", "fastpam1", "pam", "clara"), ``max_iter``,
    ``seed``, ``n_samples``, ``sample_size``, ``matrix_budget`` (bytes of the n×n matrix
    that features may be turned into), ``verbose``. `w`: float64 weights. `init`: an init
    name or a device array of medoid indices. Returns the dict the CPU core returns.
    """
    kern = kernels_for(array_module(data))
    if kind == "features":
        src = _Source(kern, X=data, metric=metric)
    else:
        src = _Source(kern, D=data)
    k, method = opts["n_clusters"], opts["method"]
    if method == "clara":
        return _clara(src, k, init, opts, w)
    if kind == "features" and src.n * src.n * src.dtype.itemsize <= opts["matrix_budget"]:
        src = src.materialised()
    start = _initialize(src, k, init, w, opts["seed"])
    st = _State(src, start, w)
    if not math.isfinite(st.loss):
        return _result(st, _Progress(), start)  # raises: no swaps on overflowed distances
    _log(opts["verbose"], f"init loss {st.loss:.6e}")
    if method == "fasterpam":
        p = _eager(st, opts["max_iter"], opts["verbose"])
    else:
        p = _fastpam1(st, opts["max_iter"], opts["verbose"])
    return _result(st, p, start)


def cross_distances(A: Any, B: Any, metric: str) -> Any:
    """``out[i, j] = d(A[i], B[j])`` (validated, same dtype, C-contiguous), by the same
    kernel: the rows of `B` and `A` stacked into one feature matrix."""
    xp = array_module(A)
    Z = xp.concatenate([B, A])
    src = _Source(kernels_for(xp), X=Z, metric=metric)
    m, k = int(A.shape[0]), int(B.shape[0])
    out = xp.empty((m, k), dtype=Z.dtype)
    step = max(64, (_TILE_BYTES // max(1, k * Z.itemsize)) // 64 * 64)
    for r0 in range(0, m, step):
        r1 = min(m, r0 + step)
        out[r0:r1] = src.kern.distances(Z, src.norms, xp.arange(k + r0, k + r1, dtype=xp.int64), 0, k, metric)
    return out
