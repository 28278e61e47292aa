"""The kernel table: each GPU kernel beside a NumPy reference with the same signature.

The orchestrations in ``rankcore._gpu`` are written once against an array namespace and
call kernels only through :func:`ops_for`. On cupy arrays they get :class:`DeviceOps` (the
NVRTC-compiled kernels of ``python/rankcore/cuda``); on NumPy arrays :class:`HostOps`,
whose references are computed another way (the Rust generator, plain products), so CI
runs every orchestration without a GPU and compares it with the Rust path.

Random matrices follow ``rust/rankcore/src/rng/mod.rs``: entry (i, j) of the matrix with key
(seed, stream) is a pure function of (seed, stream, i, j). Sparse-family lists follow
``projection.rs``: ``R[c, j]`` (component c, feature j) is decoded from word (j, c); an
entry of a list is ``+(index + 1)`` or ``-(index + 1)`` by sign, sorted by index.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import scipy.sparse as sp

from rankcore import _core
from rankcore._gpu import _kernels

__all__ = ["DeviceOps", "HostOps", "ops_for", "threshold"]

_THREADS = 256
_WORDS_CHUNK = 1024  # features per list chunk (by component); a multiple of 4


def threshold(density: float) -> int:
    """``ceil(density · 2^31)``: a word ``w`` gives a non-zero iff ``(w >> 1)`` is below it."""
    return int(math.ceil(density * 2147483648.0))


def ops_for(xp: Any) -> "HostOps | DeviceOps":
    """The kernel table for array namespace `xp`: NumPy references, or the device's kernels."""
    return HostOps() if xp is np else DeviceOps()


class HostOps:
    """NumPy references of the kernels (the Rust generator for the random matrices)."""

    xp = np

    def normal(self, nrows: int, ncols: int, row0: int, col0: int, seed: int, stream: int,
               dtype: Any, scale: float = 1.0) -> np.ndarray:
        """C-ordered ``(nrows, ncols)``: ``T(normal(row0 + r, col0 + c)) * T(scale)``."""
        z = _core.random_matrix("normal", seed, stream, row0, col0, nrows, ncols)
        dtype = np.dtype(dtype)
        return np.ascontiguousarray(z.astype(dtype) * dtype.type(scale))

    def words(self, nrows: int, ncols: int, row0: int, col0: int, seed: int, stream: int) -> np.ndarray:
        """C-ordered ``(nrows, ncols)`` uint32: the raw Philox words."""
        u = _core.random_matrix("uniform", seed, stream, row0, col0, nrows, ncols)
        return np.ascontiguousarray((u * 2.0**32).astype(np.uint32))

    def sparse_lists(self, k: int, d: int, density: float, seed: int, stream: int,
                     by_component: bool) -> tuple[np.ndarray, np.ndarray]:
        """Non-zero lists of the sparse-family ``R`` (``k × d``): ``(ptr, entries)`` with
        ``ptr`` int64 of length ``outer + 1`` (outer = components or features)."""
        opts = {"kind": "sparse", "n_features": d, "n_components": k, "density": density,
                "seed": seed, "stream": stream}
        data, indices, indptr = _core.projection_components(opts, "float64", False)
        R = sp.csr_matrix((data, indices, indptr), shape=(k, d))
        if not by_component:
            R = R.T.tocsr()
        R.sort_indices()
        entries = (np.sign(R.data) * (R.indices + 1)).astype(np.int32)
        return R.indptr.astype(np.int64), entries

    def _signs(self, ptr: np.ndarray, entries: np.ndarray, shape: tuple[int, int]) -> sp.csr_matrix:
        return sp.csr_matrix((np.sign(entries).astype(np.float64), np.abs(entries) - 1, ptr), shape=shape)

    def project_dense(self, X: np.ndarray, ptr: np.ndarray, entries: np.ndarray, k: int,
                      scale: float) -> tuple[np.ndarray, bool]:
        """``(X Sᵀ · scale, X not finite)`` with ``S`` the signs given by component."""
        S = self._signs(ptr, entries, (k, X.shape[1]))
        with np.errstate(all="ignore"):
            Y = np.asarray((S @ X.T).T, dtype=X.dtype) * X.dtype.type(scale)
        return np.ascontiguousarray(Y), not bool(np.isfinite(X).all())

    def project_csr(self, X: Any, ptr: np.ndarray, entries: np.ndarray, k: int, scale: float) -> np.ndarray:
        """``X Sᵀ · scale`` for CSR ``X``, ``S`` given by feature."""
        St = self._signs(ptr, entries, (X.shape[1], k))
        Y = np.asarray((X @ St).toarray(), dtype=X.dtype) * X.dtype.type(scale)
        return np.ascontiguousarray(Y)


def _grid(total: int) -> int:
    return max(1, min(-(-total // _THREADS), 65535 * 4))


class DeviceOps:
    """The CUDA kernels (``python/rankcore/cuda``) on the current device.

    `xp` and `function` default to cupy and :func:`rankcore._gpu._kernels.function`;
    ``tests/test_cuda_emulated.py`` passes NumPy and the same kernels compiled for the host
    (``tests/cuda_emulator``), so CI runs these launches, and the kernels, without a GPU.
    """

    def __init__(self, xp: Any = None, function: Any = None) -> None:
        if xp is None:
            import cupy as xp
        self.xp = xp
        self._function = function or _kernels.function

    def normal(self, nrows: int, ncols: int, row0: int, col0: int, seed: int, stream: int,
               dtype: Any, scale: float = 1.0) -> Any:
        cp = self.xp
        dtype = np.dtype(dtype)
        out = cp.empty((nrows, ncols), dtype=dtype)
        if out.size:
            nq = (row0 + nrows - 1) // 2 - row0 // 2 + 1
            f = self._function("random", f"rk_fill_normal<{'float' if dtype == np.float32 else 'double'}>")
            f((_grid(nq * ncols),), (_THREADS,),
              (out, np.uint64(nrows), np.uint32(ncols), np.uint64(row0), np.uint32(col0),
               np.uint64(seed), np.uint32(stream), dtype.type(scale)))
        return out

    def words(self, nrows: int, ncols: int, row0: int, col0: int, seed: int, stream: int) -> Any:
        cp = self.xp
        out = cp.empty((nrows, ncols), dtype=cp.uint32)
        if out.size:
            f = self._function("random", "rk_fill_words")
            f((_grid(out.size),), (_THREADS,),
              (out, np.uint64(nrows), np.uint32(ncols), np.uint64(row0), np.uint32(col0),
               np.uint64(seed), np.uint32(stream)))
        return out

    def sparse_lists(self, k: int, d: int, density: float, seed: int, stream: int,
                     by_component: bool) -> tuple[Any, Any]:
        cp = self.xp
        n_outer, n_inner = (k, d) if by_component else (d, k)
        chunk = _WORDS_CHUNK if by_component else max(n_inner, 1)
        nchunks = -(-n_inner // chunk)
        total = n_outer * nchunks
        f = self._function("random", "rk_sparse_lists")
        args = (np.uint64(seed), np.uint32(stream), np.uint64(threshold(density)), np.uint32(k),
                np.uint64(d), np.bool_(by_component), np.uint64(chunk))
        counts = cp.empty(total, dtype=cp.int32)
        f((_grid(total),), (_THREADS,), args + (counts, np.uint64(0), np.uint64(0)))
        offsets = cp.zeros(total + 1, dtype=cp.int64)
        offsets[1:] = cp.cumsum(counts, dtype=cp.int64)
        nnz = int(offsets[-1])
        if nnz >= 2**31:
            raise ValueError(f"the projection matrix has {nnz} non-zeros; at most 2^31 - 1 are supported")
        entries = cp.empty(max(nnz, 1), dtype=cp.int32)
        f((_grid(total),), (_THREADS,), args + (counts, offsets, entries))
        return offsets[::nchunks].copy(), entries[:nnz]

    def project_dense(self, X: Any, ptr: Any, entries: Any, k: int, scale: float) -> tuple[Any, bool]:
        cp = self.xp
        n, d = X.shape
        Y = cp.empty((n, k), dtype=X.dtype)
        bad = cp.zeros(1, dtype=cp.int32)
        item = X.itemsize
        threads = min(256, -(-k // 32) * 32)
        name = f"rk_project_dense<{'float' if X.dtype == np.float32 else 'double'}>"
        grid = (-(-k // threads), -(-n // 16))
        self._function("projection", name)(
            grid, (threads,),
            (X, np.int64(n), np.int64(d), np.int64(X.strides[0] // item), np.int64(X.strides[1] // item),
             ptr, entries, np.int32(k), X.dtype.type(scale), Y, bad))
        return Y, bool(int(bad[0]))

    def project_csr(self, X: Any, ptr: Any, entries: Any, k: int, scale: float) -> Any:
        cp = self.xp
        n = X.shape[0]
        Y = cp.zeros((n, k), dtype=X.dtype)
        name = f"rk_project_csr<{'float' if X.dtype == np.float32 else 'double'}>"
        warps = 8
        grid = max(1, min(-(-n // warps), 65535 * 16))
        self._function("projection", name)(
            (grid,), (32 * warps,),
            (X.indptr, X.indices, X.data, np.int64(n), ptr, entries, np.int32(k), X.dtype.type(scale), Y))
        return Y
