"""Tucker decompositions (HOSVD, ST-HOSVD, HOOI) of a dask array tensor, chunked along any modes.

The algorithm of ``rust/rankcore/src/tucker/decomp.rs`` (``direct``/``subspace``/``hooi_sweep``),
with the tensor's passes as dask graphs:

- exact subspaces come from the Gram matrix of the mode-``n`` unfolding,
  ``G = X₍ₙ₎ X₍ₙ₎ᵀ``, formed in float64 by ``tensordot`` over all other modes (blockwise
  products tree-summed over the blocks), never unfolding; its eigenvectors (non-increasing
  eigenvalues) are computed on the client (``I_n × I_n``);
- randomized subspaces (``svd="randomized"``) are the dask rSVD (:mod:`rankcore._dask.svd`)
  of the unfolding as a lazy dask array, its columns in the core's order so that the rows
  of each mode's ``Ω`` (seeded per mode as the core does) meet the same entries: HOSVD
  agrees with the in-memory one to rounding; ST-HOSVD's later modes sketch a tensor
  already projected on the earlier factors, whose signs (an rSVD's arbitrary choice)
  differ between the two paths, so it agrees to the sketch's error;
- with ``rank=None`` the ranks follow the core's rule exactly: the budget ``tol²‖X‖²``, each
  mode taking the smallest rank whose discarded eigenvalues fit an even share of what is
  left, unused budget carried over;
- ST-HOSVD multiplies the (lazy) working tensor by ``Uₙᵀ`` after each mode, so later Gram
  passes read the shrunk tensor;
- HOOI starts from ST-HOSVD, a random orthonormal start (the core's Gaussian stream
  ``1 + mode``, orthonormalised) or given factors; each sweep projects the tensor on all
  factors but one as a dask graph (one read of the tensor per mode), brings the small
  projection to the client and updates that factor there with the Rust core's exact
  subspace (the in-memory sweep's kernel); it stops as the core does (``|Δ error| < tol``);
- the core ``X ×ₖ Uₖᵀ`` is computed blockwise and brought to the client, the relative error
  from the norms, or (when that difference is below its rounding) from the residual summed
  blockwise, as the core does.

The exact route always uses the Gram matrix for the subspace of the dask tensor (the
in-memory path takes an SVD of the unfolding when it has at most twice as many columns as
rows); both agree to rounding above ``sqrt(eps)`` of the largest singular value. Factors and
core come back as NumPy arrays. ``mask`` and ``fixed_factors`` are not available on dask
input (``NotImplementedError``).
"""

from __future__ import annotations

from typing import Any

import numpy as np

__all__ = ["tucker"]


def _gram(X: Any, n: int) -> np.ndarray:
    import dask.array as da

    others = [a for a in range(X.ndim) if a != n]
    X64 = X.astype(np.float64)
    return np.asarray(da.tensordot(X64, X64, axes=(others, others)).compute())


def _eigh_desc(G: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    w, V = np.linalg.eigh(G)
    return w[::-1], V[:, ::-1]


def _mode_product_t(X: Any, U: np.ndarray, n: int) -> Any:
    """``X ×ₙ Uᵀ`` (lazy): contract mode `n` with the rows of `U`, keep the mode's place."""
    import dask.array as da

    out = da.tensordot(X, U.astype(X.dtype, copy=False), axes=([n], [0]))
    return da.moveaxis(out, -1, n)


def _residual_block(block: np.ndarray, core: np.ndarray, modes: list[int], factors: list[np.ndarray],
                    block_info: Any = None) -> np.ndarray:
    """``Σ (x - x̂)²`` over one block, x̂ the reconstruction's entries there (task side)."""
    from rankcore import _core

    loc = block_info[0]["array-location"]
    mats = [np.ascontiguousarray(f[loc[m][0]:loc[m][1]]) for m, f in zip(modes, factors)]
    rec = _core.multi_mode_dot(np.ascontiguousarray(core), mats, list(modes))
    diff = block.astype(np.float64) - rec.astype(np.float64)
    return np.full((1,) * block.ndim, float(np.sum(diff * diff)))


def _residual(X: Any, core: np.ndarray, modes: list[int], factors: list[np.ndarray]) -> float:
    parts = X.map_blocks(_residual_block, core, modes, factors, chunks=tuple((1,) * len(c) for c in X.chunks),
                         dtype=np.float64, meta=np.empty((0,) * X.ndim, dtype=np.float64),
                         token="rankcore-tucker-residual")
    return float(np.sum(np.asarray(parts.compute()), dtype=np.float64))


def mode_seed(seed: int, mode: int) -> int:
    """The randomized range finder's seed for `mode` (``tucker::decomp::mode_seed``)."""
    return (seed ^ ((mode + 1) * 0x9E37_79B9_7F4A_7C15)) % 2**64


def _unfolding(X: Any, n: int) -> Any:
    """The mode-`n` unfolding ``X₍ₙ₎`` (``Iₙ × Πₖ≠ₙ Iₖ``), lazily, with the columns in the
    order of the core's ``tucker::tensor::Unfolding`` of a C-ordered tensor (which pairs
    them with the rows of the randomized range finder's ``Ω``): the modes before and after
    `n` form two groups, each in C order; the larger group varies fastest (the one after
    `n` on a tie, or when `n`'s size is one and the groups merge)."""
    import dask.array as da

    shape = [int(s) for s in X.shape]
    lo, hi = list(range(n)), list(range(n + 1, X.ndim))
    size_lo, size_hi = int(np.prod([shape[k] for k in lo])), int(np.prod([shape[k] for k in hi]))
    cols_lo = size_lo > size_hi and size_hi > 1 and shape[n] > 1
    perm = [n] + (hi + lo if cols_lo else lo + hi)
    return da.transpose(X, perm).reshape(shape[n], -1)


def _randomized_subspace(X: Any, n: int, r: int, budget: float | None, svd: dict) -> tuple[np.ndarray, float | None]:
    """``subspace`` with ``SvdMethod::Randomized``: the dask rSVD of the unfolding (fixed rank,
    or the fixed-accuracy mode for a `budget` of discarded energy); the discarded energy
    when known."""
    from rankcore._dask.svd import rsvd
    from rankcore.svd import _BLOCK_SIZE

    opts = {"n_components": r, "n_oversamples": svd["n_oversamples"], "n_iter": svd["n_iter"],
            "power_iteration_normalizer": "LU", "transpose": False, "seed": mode_seed(svd["seed"], n),
            "center": False, "tol": None, "block_size": _BLOCK_SIZE}
    norm2 = None
    if budget is not None:
        norm2 = _sq_norm(X)
        rel = (budget / norm2) ** 0.5 if norm2 > 0 else 0.5
        opts.update(tol=min(max(rel, 1e-12), 0.999_999), block_size=8)
    out = rsvd(_unfolding(X, n), opts)
    U = np.asarray(out["U"].compute())
    disc = None if out["rel_error"] is None else out["rel_error"] ** 2 * norm2
    return U, disc


def _exact_subspace(X: Any, n: int, r: int, budget: float | None) -> tuple[np.ndarray, float]:
    """``subspace`` with ``SvdMethod::Exact`` from the Gram matrix (see the module)."""
    w, V = _eigh_desc(_gram(X, n))
    sq = w  # as the core: the eigenvalues as they are
    if budget is None:
        rank = r
    else:
        tail, rank = 0.0, len(sq)
        while rank > 1 and tail + sq[rank - 1] <= budget:
            tail += sq[rank - 1]
            rank -= 1
        rank = min(rank, r)
    return np.ascontiguousarray(V[:, :rank]), max(float(np.sum(sq[rank:])), 0.0)


def _sq_norm(X: Any) -> float:
    import dask.array as da

    return float(da.sum(X.astype(np.float64) ** 2).compute())


def _direct(X: Any, modes: list[int], ranks: list[int], error_tol: float | None, sequential: bool,
            norm2: float, svd: dict | None) -> list[np.ndarray]:
    """HOSVD (`sequential` False) or ST-HOSVD factors (``tucker::decomp::direct``); `svd`
    None for the exact subspaces, else the randomized range finder's settings."""
    dtype = np.dtype(X.dtype)
    nm = len(modes)
    budget = None if error_tol is None else error_tol * error_tol * norm2
    factors: list[np.ndarray] = []
    cur = X
    for i, (m, r) in enumerate(zip(modes, ranks)):
        view = cur if sequential else X
        share = None if budget is None else budget / (nm - i)
        if svd is None:
            U, discarded = _exact_subspace(view, m, r, share)
        else:
            U, discarded = _randomized_subspace(view, m, r, share, svd)
        if budget is not None and discarded is not None:
            budget = max(budget - discarded, 0.0)
        U = U.astype(dtype)
        if sequential:
            cur = _mode_product_t(view, U, m)
        factors.append(U)
    return factors


def _project(X: Any, modes: list[int], factors: list[np.ndarray], skip: int | None = None) -> np.ndarray:
    """``X ×ₖ Uₖᵀ`` over the modes but `skip`, on the client (the most shrinking first)."""
    order = sorted((i for i in range(len(modes)) if i != skip),
                   key=lambda i: factors[i].shape[1] / factors[i].shape[0])
    out = X
    for i in order:
        out = _mode_product_t(out, factors[i], modes[i])
    return np.ascontiguousarray(np.asarray(out.compute()), dtype=X.dtype)


def _final_error(X: Any, norm2: float, core: np.ndarray, modes: list[int], factors: list[np.ndarray]) -> float:
    """``tucker::decomp::final_error``: from the norms, or from the residual when small."""
    core2 = float(np.sum(core.astype(np.float64) ** 2))
    err = ((max(norm2 - core2, 0.0) / norm2) ** 0.5) if norm2 > 0 else 0.0
    if norm2 > 0 and err * err <= 1e4 * float(np.finfo(X.dtype).eps):
        err = (_residual(X, core, modes, factors) / norm2) ** 0.5
    return err


def _mode_update(y: np.ndarray, m: int, r: int) -> tuple[np.ndarray, np.ndarray]:
    """The exact leading mode-`m` subspace of the (in-memory) projection `y` and ``y ×ₘ Uᵀ``,
    by the Rust core (``tucker_decompose`` with one HOSVD mode: ``exact_subspace``, the same
    kernel as the in-memory HOOI sweep)."""
    from rankcore import _core

    opts = {"method": "hosvd", "svd": "exact", "seed": 0, "n_oversamples": 0, "n_power_iter": 0,
            "init": "svd", "modes": [m], "ranks": [r], "error_tol": None, "fixed": [False],
            "n_iter_max": 0, "tol": 0.0, "mask_repeats": 0, "verbose": False}
    out = _core.tucker_decompose(y, opts, None, None)
    return np.asarray(out["factors"][0]), np.asarray(out["core"])


def _orthonormal(U: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.linalg.qr(U.astype(np.float64))[0]).astype(U.dtype)


def tucker(X: Any, *, modes: list[int], ranks: list[int], error_tol: float | None, method: str,
           svd: dict | None = None, init: Any = "svd", n_iter_max: int = 0, tol: float = 0.0,
           verbose: bool = False) -> dict:
    """Tucker decomposition of the validated dask tensor `X` (``tucker::decomp::tucker``):
    HOSVD, ST-HOSVD or HOOI at `ranks` (the upper bounds when `error_tol` chooses them).

    `svd` None: exact (Gram) subspaces; else ``{"n_oversamples", "n_iter", "seed"}`` of the
    randomized range finder, run on the unfolding as a dask rSVD. `init` (HOOI): ``"svd"``
    (ST-HOSVD), ``("random", seed)`` or a list of factors (orthonormalised). HOOI's sweeps
    project the tensor on all factors but one as a dask graph (one read of `X` per mode),
    bring the small projection to the client and update that factor there with the Rust
    core's exact subspace. Returns ``{"core", "factors", "errors", "n_iter", "converged"}``,
    NumPy arrays in `X`'s dtype.
    """
    import sys

    dtype = np.dtype(X.dtype)
    norm2 = _sq_norm(X)
    if method != "hooi":
        factors = _direct(X, modes, ranks, error_tol, method == "sthosvd", norm2, svd)
        core = _project(X, modes, factors)
        return {"core": core, "factors": factors, "errors": [_final_error(X, norm2, core, modes, factors)],
                "n_iter": 0, "converged": True}
    if isinstance(init, str):  # "svd": ST-HOSVD
        factors = _direct(X, modes, ranks, error_tol, True, norm2, svd)
    elif isinstance(init, tuple):  # ("random", seed): ranks from ST-HOSVD with an error target
        from rankcore._gpu._ops import HostOps

        if error_tol is not None:
            ranks = [f.shape[1] for f in _direct(X, modes, ranks, error_tol, True, norm2, svd)]
        factors = [_orthonormal(HostOps().normal(int(X.shape[m]), r, 0, 0, init[1], 1 + m, dtype))
                   for m, r in zip(modes, ranks)]
    else:
        factors = [_orthonormal(np.asarray(f, dtype=dtype)) for f in init]
    errors: list[float] = []
    core = None
    converged, n_iter = False, 0
    for it in range(n_iter_max):
        for i, m in enumerate(modes):
            factors[i], core = _mode_update(_project(X, modes, factors, skip=i), m, factors[i].shape[1])
        n_iter = it + 1
        core2 = float(np.sum(core.astype(np.float64) ** 2))
        err = ((max(norm2 - core2, 0.0) / norm2) ** 0.5) if norm2 > 0 else 0.0
        if verbose:
            print(f"tucker: iteration {n_iter}, relative error {err:.6e}", file=sys.stderr)
        done = bool(errors) and abs(errors[-1] - err) < tol
        errors.append(err)
        if done:
            converged = True
            break
    if core is None:
        core = _project(X, modes, factors)
    last = _final_error(X, norm2, core, modes, factors)
    if errors:
        errors[-1] = last
    else:
        errors.append(last)
    return {"core": core.astype(dtype, copy=False), "factors": [f.astype(dtype, copy=False) for f in factors],
            "errors": errors, "n_iter": n_iter, "converged": converged}


def multi_mode_dot(t: Any, matrix_or_vec_list: Any, modes: Any, skip: Any, transpose: bool) -> Any:
    """:func:`rankcore.multi_mode_dot` of a dask tensor, lazily: one ``tensordot`` per mode
    (blockwise, summed over the contracted mode's chunks), the modes kept in place.

    Matrices and vectors are checked against the tensor's shape before any task runs, with
    the in-memory path's messages for the common mistakes; the result's dtype is the
    in-memory one (float32 only when the tensor and all used matrices are float32).
    """
    import dask.array as da

    from rankcore._dask._arrays import check_array as check_dask_array
    from rankcore.tucker import MAX_ORDER, _check_matrix, _check_mode, _check_skip, _common_dtype

    t = check_dask_array(t, name="tensor", ndim=None)
    if not 1 <= t.ndim <= MAX_ORDER:
        raise ValueError(f"tensor must have order (ndim) between 1 and {MAX_ORDER}, got {t.ndim}")
    if isinstance(matrix_or_vec_list, (str, bytes)):
        raise TypeError("matrix_or_vec_list must be a sequence of matrices or vectors")
    mats = list(matrix_or_vec_list)
    n = len(mats)
    raw = list(range(n)) if modes is None else list(modes)
    if len(raw) != n:
        raise ValueError(f"modes has {len(raw)} entries but matrix_or_vec_list has {n}; "
                         "give one mode per matrix or vector")
    mds = [_check_mode(md, t.ndim, f"modes[{i}]") for i, md in enumerate(raw)]
    if len(set(mds)) != n:
        raise ValueError(f"modes must be distinct modes of the tensor, got {raw}")
    skip = _check_skip(skip, n, "skip")
    skipped = None if skip is None else sorted(range(n), key=lambda i: int(raw[i]))[skip]
    keep = [i for i in range(n) if i != skipped]
    dtype = _common_dtype(t, [mats[i] for i in keep])
    out = t.astype(dtype)
    # Positions shift as vectors contract modes away: track where each original mode is.
    where = list(range(t.ndim))
    for i in sorted(keep, key=lambda i: mds[i]):
        md, m = mds[i], mats[i]
        name = f"matrix_or_vec_list[{i}]"
        size = int(t.shape[md])
        if np.ndim(m) == 1:
            v = _check_matrix(np.asarray(m)[None, :], name, dtype)[0]
            if v.shape[0] != size:
                raise ValueError(f"{name} is a vector of length {v.shape[0]}, which does not chain "
                                 f"with mode {md} of tensor (size {size})")
            out = da.tensordot(out, v, axes=([where[md]], [0]))
            where = [w - (w > where[md]) if j != md else -1 for j, w in enumerate(where)]
            continue
        a = _check_matrix(m, name, dtype)
        j = 0 if transpose else 1
        if a.shape[j] != size:
            raise ValueError(
                f"{name} has shape {a.shape}, which does not chain with mode {md} of tensor "
                f"(size {size}): its {('rows', 'columns')[j]} must number {size}"
                + (" (transposed)" if transpose else "")
            )
        if transpose:
            a = a.T
        out = da.moveaxis(da.tensordot(out, np.ascontiguousarray(a.T), axes=([where[md]], [0])), -1, where[md])
    return out
