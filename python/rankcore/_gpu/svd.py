"""Randomized SVD on the device, written once for cupy and NumPy (the CI stand-in).

The same algorithm as ``rust/rankcore/src/svd.rs`` (Halko, Martinsson & Tropp's range finder
with power iterations; Yu, Gu & Li's blocked randQB_EI for the fixed-accuracy mode), with
the same Gaussian test matrix: stream 0 of the Philox generator, entry (i, j) a pure
function of (seed, i, j), so CPU and GPU answers agree to rounding. Products are cuBLAS
GEMMs (dense) or cuSPARSE SpMMs (CSR, with the transpose built once); orthonormalisation
is CholeskyQR at GEMM speed (:func:`orthonormalize`; a single step between power
iterations where the block is well conditioned, :func:`recondition`); the small SVD is
cuSOLVER's.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from rankcore._gpu._arrays import array_module, column_means, is_sparse, linalg
from rankcore._gpu._ops import ops_for

__all__ = ["orthonormalize", "recondition", "rsvd"]


class _Operator:
    """``W = A - 1 μᵀ`` (μ the column means, or none), or its transpose, seen only through
    products. Sparse ``A`` is held as CSR together with the CSR of its transpose."""

    def __init__(self, A: Any, mean: Any = None, *, transposed: bool = False) -> None:
        self.xp = array_module(A)
        if is_sparse(A):
            at = A.T  # CSC -> CSR (free) or CSR -> CSC
            self._a, self._at = (A, at.tocsr()) if A.format == "csr" else (at.T.tocsr(), at)
        else:
            self._a, self._at = A, A.T
        self.mean = mean
        self.transposed = transposed

    @property
    def shape(self) -> tuple[int, int]:
        m, n = self._a.shape
        return (n, m) if self.transposed else (m, n)

    def t(self) -> "_Operator":
        out = _Operator.__new__(_Operator)
        out.__dict__.update(self.__dict__, transposed=not self.transposed)
        return out

    def _mul(self, X: Any) -> Any:  # (A - 1 μᵀ) X
        Y = self.xp.ascontiguousarray(self._a @ X)  # a fresh array: updated in place
        if self.mean is not None:
            Y -= (self.mean @ X)[None, :]
        return Y

    def _mul_t(self, Y: Any) -> Any:  # (A - 1 μᵀ)ᵀ Y
        Z = self.xp.ascontiguousarray(self._at @ Y)  # a fresh array: updated in place
        if self.mean is not None:
            Z -= self.mean[:, None] * Y.sum(axis=0)[None, :]
        return Z

    def mul(self, X: Any) -> Any:
        return self._mul_t(X) if self.transposed else self._mul(X)

    def mul_t(self, Y: Any) -> Any:
        return self._mul(Y) if self.transposed else self._mul_t(Y)

    def sq_norm(self) -> float:
        """``‖A - 1 μᵀ‖²_F``, accumulated in float64."""
        xp, A, mu = self.xp, self._a, self.mean
        if not is_sparse(A):
            # Row blocks: the centred copy never exceeds 2^24 entries.
            step = max(1, (1 << 24) // max(A.shape[1], 1))
            total = 0.0
            for r in range(0, A.shape[0], step):
                D = A[r:r + step] if mu is None else A[r:r + step] - mu[None, :]
                total += float(xp.sum(xp.square(D, dtype=xp.float64)))
            return total
        data = A.data.astype(xp.float64)
        if mu is None:
            return float(xp.sum(data * data))
        m = A.shape[0]
        mu64 = mu.astype(xp.float64)
        cols = A.indices
        nnz_per_col = xp.bincount(cols, minlength=A.shape[1])
        shifted = data - mu64[cols]
        return float(xp.sum(shifted * shifted) + xp.sum((m - nnz_per_col) * mu64 * mu64))


def orthonormalize(Y: Any, G: Any = None) -> Any:
    """An orthonormal basis ``Q`` of the columns of the tall `Y` (``Y = Q R``), at GEMM speed.

    Shifted CholeskyQR (Fukaya, Kannan, Nakatsukasa, Yamamoto & Yanagisawa 2020): a first
    Cholesky step on the Gram matrix shifted by ``11 (m l + l (l + 1)) u ‖Y‖²_F`` brings any
    full-rank ``Y`` with ``cond(Y) < 1/u`` to ``Q₁`` with ``cond(Q₁) ≲ u^{-1/2}``; plain
    CholeskyQR steps then make it orthonormal to working precision. One more step suffices
    when ``‖Q₁ᵀQ₁ - I‖_F ≤ 1/2`` (CholeskyQR's error is ``O(u · cond²)``, and
    ``cond(Q₁)² ≤ 3`` then): two steps in all for well-conditioned blocks (CholeskyQR2's
    cost), three otherwise. Each step costs one Gram matrix (GEMM) and one triangular solve.
    Where a Gram matrix is not numerically positive definite (rank-deficient ``Y``, zero
    columns), it falls back to Householder QR (cuSOLVER ``geqrf``), as the CPU path always
    uses. `G` is ``YᵀY`` where the caller has it already.
    """
    xp = array_module(Y)
    la = linalg(xp)
    m, l = Y.shape
    if l == 0 or m < l:
        return la.qr(Y)
    eye = xp.eye(l, dtype=Y.dtype)
    G = Y.T @ Y if G is None else G
    shift = 11.0 * (m * l + l * (l + 1)) * float(np.finfo(Y.dtype).eps) * float(xp.trace(G))
    L = la.cholesky_lower(G + shift * eye)
    if L is None:
        return la.qr(Y)
    Q = xp.ascontiguousarray(la.solve_lower(L, Y.T).T)
    for step in (1, 2):
        G = Q.T @ Q
        close = float(xp.linalg.norm(G - eye)) <= 0.5  # False for NaN too
        L = la.cholesky_lower(G) if close or step == 1 else None
        if L is None:
            return la.qr(Y)  # the shifted step could not condition Y: rank-deficient
        Q = xp.ascontiguousarray(la.solve_lower(L, Q.T).T)
        if close:
            break
    return Q


# Largest ``u · cond(Y)²`` for which :func:`recondition` takes a single CholeskyQR step
# (``linalg::RECONDITION_LIMIT`` on the CPU).
_RECONDITION_LIMIT = 1e-3


def recondition(Y: Any) -> Any:
    """A well-conditioned basis of the span of the tall `Y`, for use between power iterations
    (the CPU path's ``linalg::recondition``): one CholeskyQR step ``Y L⁻ᵀ`` when the Cholesky
    factor shows ``u · cond(Y)² ≤ _RECONDITION_LIMIT`` (through ``cond(Y) ≤ ‖L‖_F ‖L⁻¹‖_F``), which leaves
    it orthonormal to within about that much; else :func:`orthonormalize`."""
    xp = array_module(Y)
    la = linalg(xp)
    m, l = Y.shape
    if l == 0 or m < l:
        return orthonormalize(Y)
    G = Y.T @ Y
    L = la.cholesky_lower(G)
    if L is not None:
        L_inv = la.solve_lower(L, xp.eye(l, dtype=Y.dtype))
        cond = float(xp.linalg.norm(L)) * float(xp.linalg.norm(L_inv))
        if np.isfinite(cond) and float(np.finfo(Y.dtype).eps) / 2 * cond * cond <= _RECONDITION_LIMIT:
            return xp.ascontiguousarray(la.solve_lower(L, Y.T).T)
    return orthonormalize(Y, G)


def _normalize(Y: Any, normalizer: str) -> Any:
    if normalizer == "QR":
        return recondition(Y)
    if normalizer == "LU":
        return linalg(array_module(Y)).lu_permuted(Y)
    return Y


def _range_finder(W: _Operator, l: int, n_iter: int, normalizer: str, seed: int, dtype: Any) -> Any:
    """An orthonormal ``m × l`` basis of the range of `W` (Halko et al., Alg. 4.3/4.4)."""
    m, n = W.shape
    omega = ops_for(W.xp).normal(n, l, 0, 0, seed, 0, dtype)
    Y = W.mul(omega)
    for _ in range(n_iter):
        Z = W.mul_t(_normalize(Y, normalizer))
        Y = W.mul(_normalize(Z, normalizer))
    return orthonormalize(Y)


def _small_svd(Q: Any, Bt: Any, k: int) -> tuple[Any, Any, Any]:
    """Rank-`k` SVD of ``A ≈ Q B`` from the tall ``Bᵀ = W S Zᵀ``: ``U = Q Z``, ``V = W``.

    ``Bᵀ`` is factored as ``Q₂ R`` by :func:`orthonormalize` and only the small ``R`` goes
    to the dense SVD, so the tall part runs at GEMM speed.
    """
    la = linalg(array_module(Q))
    Q2 = orthonormalize(Bt)
    R = Q2.T @ Bt
    Wr, S, Zt = la.svd(R)
    V = Q2 @ Wr[:, :k]
    U = Q @ Zt[:k].T
    return U, S[:k], V


def rsvd(A: Any, opts: dict) -> dict:
    """Randomized SVD with the options ``svd._randomized_svd`` resolves (the keys of the Rust
    core's ``rsvd_dense``): returns ``{"U", "S", "Vt", "mean", "rel_error"}`` in the namespace
    and dtype of `A`."""
    xp = array_module(A)
    mean = column_means(A) if opts["center"] else None
    op = _Operator(A, mean)
    W = op.t() if opts["transpose"] else op
    m, n = W.shape
    if opts["tol"] is None:
        k = opts["n_components"]
        l = min(k + opts["n_oversamples"], m, n)
        Q = _range_finder(W, l, opts["n_iter"], opts["power_iteration_normalizer"], opts["seed"], A.dtype)
        U, S, V = _small_svd(Q, W.mul_t(Q), k)
        rel_error = None
    else:
        U, S, V, rel_error = _adaptive(W, opts, A.dtype)
    if opts["transpose"]:
        U, V = V, U
    return {"U": U, "S": S, "Vt": xp.ascontiguousarray(V.T), "mean": mean, "rel_error": rel_error}


def _adaptive(W: _Operator, opts: dict, dtype: Any) -> tuple[Any, Any, Any, float]:
    """Fixed accuracy by randQB_EI (Yu, Gu & Li 2018), as ``svd::adaptive_svd`` in Rust: grow
    ``Q`` block by block while ``‖A‖²_F - ‖B‖²_F`` exceeds ``tol² ‖A‖²_F``."""
    xp = W.xp
    m, n = W.shape
    cap = min(m, n, max(opts["n_components"], 1))
    b0 = opts["block_size"]
    norm2 = W.sq_norm()
    target = opts["tol"] ** 2 * norm2
    ops = ops_for(xp)
    qs: list[Any] = []
    bts: list[Any] = []

    def residual_mul(X: Any) -> Any:
        Y = W.mul(X)
        for q, bt in zip(qs, bts):
            Y = Y - q @ (bt.T @ X)
        return Y

    def residual_mul_t(Y: Any) -> Any:
        Z = W.mul_t(Y)
        for q, bt in zip(qs, bts):
            Z = Z - bt @ (q.T @ Y)
        return Z

    err2, rank = norm2, 0
    while rank < cap and (rank == 0 or err2 > target):
        b = min(b0, cap - rank)
        Y = residual_mul(ops.normal(n, b, 0, rank, opts["seed"], 0, dtype))
        for _ in range(opts["n_iter"]):
            Z = residual_mul_t(recondition(Y))
            Y = residual_mul(recondition(Z))
        Y = orthonormalize(Y)
        for q in qs:  # Gram-Schmidt twice against the basis so far
            Y = Y - q @ (q.T @ Y)
        Y = orthonormalize(Y)
        bt = W.mul_t(Y)
        err2 -= float(xp.sum(xp.square(bt, dtype=xp.float64)))
        qs.append(Y)
        bts.append(bt)
        rank += b
    Q = xp.concatenate(qs, axis=1)
    Bt = xp.concatenate(bts, axis=1)
    U, S, V = _small_svd(Q, Bt, Q.shape[1])
    return truncate_to_accuracy(U, S, V, err2, target, norm2)


def truncate_to_accuracy(U: Any, S: Any, V: Any, err2: float, target: float, norm2: float) -> tuple:
    """``(U, S, V, rel)`` cut to the smallest rank ``r >= 1`` whose error ``resid + Σ_{j>=r}
    s_j²`` (``resid = max(err2, 0)``, what the basis left out) is at most `target`, with the
    relative error reached; shared by the device and dask fixed-accuracy modes."""
    xp = array_module(S)
    resid = max(err2, 0.0)
    s2 = xp.square(S.astype(xp.float64))
    # The smallest r >= 1 with resid + sum_{j >= r} s_j^2 <= target (svd::smallest_rank).
    tails = resid + xp.cumsum(s2[::-1])[::-1]  # tails[r] = resid + sum_{j >= r} s_j^2
    ok = (tails <= target).astype(xp.int64)
    r = len(S) - int(ok[1:][::-1].cumprod().sum()) if len(S) > 1 else 1
    r = max(1, min(r, len(S)))
    tail = float(s2[r:].sum())
    rel = ((resid + tail) / norm2) ** 0.5 if norm2 > 0 else 0.0
    return U[:, :r], S[:r], V[:, :r], rel
