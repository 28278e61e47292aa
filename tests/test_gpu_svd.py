"""The GPU randomized SVD's orchestration, run with NumPy standing in for cupy.

``rankcore._gpu.svd.rsvd`` is the code that runs on cupy arrays; here it runs on NumPy and
SciPy arrays with the kernels' NumPy references (the Rust generator for the test matrix), so
CI checks the algorithm without a GPU. Both engines draw the same Gaussian test matrix, so
they agree to rounding: the orchestrations differ only in how blocks are orthonormalised
(CholeskyQR vs Householder) and in summation order, which changes singular values by a few
``eps · σ₁`` (tolerances below: 1e-12 relative to σ₁ in float64, 2e-5 in float32, i.e.
~100× the dtype's eps for a few hundred-long dot products). The device tests
(``tests/gpu/``) compare the same code on cupy with the CPU path.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st

from rankcore import _core
from rankcore._gpu._arrays import check_array, check_same_device, svd_flip
from rankcore._gpu.svd import orthonormalize, recondition, rsvd
from rankcore.svd import _svd_options

TOL = {np.float64: 1e-12, np.float32: 2e-5}


def _cpu(A, opts):
    if sp.issparse(A):
        return _core.rsvd_sparse(A.shape, A.format == "csc", A.indptr, A.indices, A.data, opts)
    return _core.rsvd_dense(A, opts)


def _decaying(m, n, dtype, seed=0):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, min(m, n))))
    V, _ = np.linalg.qr(rng.standard_normal((n, min(m, n))))
    s = np.logspace(0, -6, min(m, n))
    return ((U * s) @ V.T).astype(dtype)


def _same_subspace(A, B, tol):
    """Largest sine of the principal angles between the column spaces of A and B."""
    Qa, _ = np.linalg.qr(A.astype(np.float64))
    Qb, _ = np.linalg.qr(B.astype(np.float64))
    cos = np.linalg.svd(Qa.T @ Qb, compute_uv=False)
    assert np.sqrt(max(0.0, 1 - cos.min() ** 2)) < tol


CASES = [
    {},
    {"center": True},
    {"transpose": True},
    {"power_iteration_normalizer": "LU"},
    {"power_iteration_normalizer": "none", "n_iter": 2},
    {"n_iter": 0},
    {"n_oversamples": 0},
]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("kw", CASES, ids=str)
def test_dense_matches_the_rust_path(dtype, kw):
    A = _decaying(300, 120, dtype)
    opts = _svd_options(A.shape, 10, random_state=3, **kw)
    g, c = rsvd(A, opts), _cpu(A, opts)
    assert g["U"].dtype == g["S"].dtype == g["Vt"].dtype == dtype
    assert g["U"].shape == c["U"].shape and g["Vt"].shape == c["Vt"].shape
    # Without a normalizer, Y = (A Aᵀ)² A Ω loses about cond(Y) · eps: in float32 the two
    # orthonormalisations of that Y then differ by more than rounding (both are as inaccurate).
    loose = 5 if kw.get("power_iteration_normalizer") == "none" and dtype == np.float32 else 1
    np.testing.assert_allclose(g["S"], c["S"], rtol=0, atol=loose * TOL[dtype] * c["S"][0])
    # Leading singular vectors (well separated here) agree up to sign.
    Ug, Vg = svd_flip(g["U"], g["Vt"])
    Uc, Vc = svd_flip(c["U"], c["Vt"])
    tol = 1e-8 if dtype == np.float64 else 5e-3
    np.testing.assert_allclose(Ug[:, :5], Uc[:, :5], atol=tol)
    np.testing.assert_allclose(Vg[:5], Vc[:5], atol=tol)
    if kw.get("center"):
        np.testing.assert_allclose(g["mean"], c["mean"], rtol=1e-6 if dtype == np.float32 else 1e-14)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("center", [False, True])
def test_sparse_matches_the_rust_path(dtype, fmt, center):
    A = sp.random(400, 250, density=0.05, random_state=1, format=fmt, dtype=dtype)
    opts = _svd_options(A.shape, 12, random_state=5, center=center)
    g, c = rsvd(A, opts), _cpu(A, opts)
    assert g["U"].dtype == dtype
    np.testing.assert_allclose(g["S"], c["S"], rtol=0, atol=TOL[dtype] * c["S"][0])
    _same_subspace(g["U"][:, :5], c["U"][:, :5], 1e-6 if dtype == np.float64 else 1e-2)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("center", [False, True])
def test_fixed_accuracy_matches_the_rust_path(dtype, center):
    A = _decaying(300, 200, dtype, seed=2)
    opts = _svd_options(A.shape, None, random_state=1, tol=0.01, center=center)
    g, c = rsvd(A, opts), _cpu(A, opts)
    assert len(g["S"]) == len(c["S"])
    np.testing.assert_allclose(g["S"], c["S"], rtol=0, atol=TOL[dtype] * c["S"][0] * 10)
    assert g["rel_error"] == pytest.approx(c["rel_error"], rel=1e-6 if dtype == np.float64 else 1e-3)
    assert g["rel_error"] <= 0.01


def test_fixed_accuracy_sparse_centred_and_capped_rank():
    A = sp.random(300, 200, density=0.1, random_state=3, format="csr")
    opts = _svd_options(A.shape, 40, random_state=2, tol=0.2, center=True)
    g, c = rsvd(A, opts), _cpu(A, opts)
    assert len(g["S"]) == len(c["S"]) <= 40
    np.testing.assert_allclose(g["S"], c["S"], rtol=1e-10)


def test_zero_and_rank_deficient_matrices_fall_back_cleanly():
    for A in (np.zeros((50, 20)), np.outer(np.arange(50.0), np.ones(20))):
        opts = _svd_options(A.shape, 5, random_state=0)
        g, c = rsvd(A, opts), _cpu(A, opts)
        assert np.all(np.isfinite(g["U"])) and np.all(np.isfinite(g["Vt"]))
        np.testing.assert_allclose(g["S"], c["S"], atol=1e-12 * max(1.0, c["S"][0]))
        np.testing.assert_allclose(g["U"].T @ g["U"], np.eye(5), atol=1e-12)


# Tall blocks with condition numbers 10^log_cond: an m × l draw and its float type.
_graded_blocks = given(
    m=st.integers(5, 200),
    l=st.integers(1, 30),
    log_cond=st.floats(0, 15),
    dtype=st.sampled_from([np.float64, np.float32]),
    seed=st.integers(0, 2**32 - 1),
)


def _graded(m, l, log_cond, dtype, seed):
    rng = np.random.default_rng(seed)
    U, _ = np.linalg.qr(rng.standard_normal((m, l)))
    V, _ = np.linalg.qr(rng.standard_normal((l, l)))
    return ((U * np.logspace(0, -log_cond, l)) @ V).astype(dtype)


@settings(max_examples=40, deadline=None)
@_graded_blocks
def test_orthonormalize_gives_an_orthonormal_basis_of_the_same_space(m, l, log_cond, dtype, seed):
    l = min(l, m)
    Y = _graded(m, l, log_cond, dtype, seed)
    Q = orthonormalize(Y)
    eps = np.finfo(dtype).eps
    # Orthonormal to a small multiple of eps · l (CholeskyQR3 and Householder alike).
    np.testing.assert_allclose(Q.T @ Q, np.eye(l), atol=50 * l * eps)
    # Same space as Y wherever Y is numerically full rank.
    if log_cond < -np.log10(eps) - 2:
        assert np.linalg.norm(Y - Q @ (Q.T @ Y)) <= 100 * l * eps * np.linalg.norm(Y)


@settings(max_examples=40, deadline=None)
@_graded_blocks
def test_recondition_gives_a_well_conditioned_basis_of_the_same_space(m, l, log_cond, dtype, seed):
    l = min(l, m)
    Y = _graded(m, l, log_cond, dtype, seed)
    Q = recondition(Y).astype(np.float64)
    eps = np.finfo(dtype).eps
    # Within 1e-3 of orthonormal, and orthonormal to working precision wherever one
    # CholeskyQR step could not promise that (u · cond² past the limit).
    past = eps / 2 * 10 ** (2 * log_cond) > 1e-3
    np.testing.assert_allclose(Q.T @ Q, np.eye(l), atol=50 * l * eps if past else 1e-3)
    if log_cond < -np.log10(eps) - 2:
        B, _ = np.linalg.qr(Q)
        assert np.linalg.norm(Y - B @ (B.T @ Y)) <= 100 * l * eps * np.linalg.norm(Y)


def test_recondition_takes_one_step_on_well_conditioned_blocks_as_the_cpu_does():
    rng = np.random.default_rng(0)
    Y = rng.standard_normal((3000, 10)) @ np.diag(np.logspace(0, -1, 10))
    L = np.linalg.cholesky(Y.T @ Y)
    np.testing.assert_allclose(recondition(Y), np.linalg.solve(L, Y.T).T, rtol=1e-12, atol=1e-15)
    # float32 at cond 1e3 is past the limit: fully orthonormal
    Y32 = (rng.standard_normal((3000, 10)) @ np.diag(np.logspace(0, -3, 10))).astype(np.float32)
    Q32 = recondition(Y32)
    np.testing.assert_allclose(Q32.T @ Q32, np.eye(10), atol=1e-5)


def test_device_array_checks_match_the_host_checks():
    with pytest.raises(ValueError, match="A contains NaN"):
        check_array(np.array([[1.0, np.nan]]), name="A")
    with pytest.raises(ValueError, match="infinity"):
        check_array(np.array([[1.0, np.inf]]), name="A")
    with pytest.raises(ValueError, match="2-D"):
        check_array(np.ones(3), name="A")
    with pytest.raises(ValueError, match="empty"):
        check_array(np.ones((0, 3)), name="A")
    with pytest.raises(ValueError, match="Complex"):
        check_array(np.ones((2, 2), dtype=complex), name="A")
    with pytest.raises(TypeError, match="sparse"):
        check_array(sp.eye(3, format="csr"), name="A")
    assert check_array(np.ones((2, 2), dtype=np.int32)).dtype == np.float64
    X = np.ones((2, 2), dtype=np.float32)
    assert check_array(X) is X
    S = sp.csr_matrix((np.ones(3), np.array([1, 0, 1]), np.array([0, 2, 3])), shape=(2, 2))
    S.has_canonical_format = False
    out = check_array(S, accept_sparse=True)
    assert out.has_canonical_format and out is not S and list(S.indices) == [1, 0, 1]


def test_mixing_host_and_device_is_a_type_error():
    Fake = type("ndarray", (), {"__module__": "cupy"})
    with pytest.raises(TypeError, match="X is a cupy .*host"):
        check_same_device("transform", "numpy", ("X", Fake()))
    with pytest.raises(TypeError, match="X is a host ndarray"):
        check_same_device("transform", "cupy", ("X", np.ones(2)))


def test_import_does_not_import_cupy():
    import subprocess
    import sys

    code = "import sys, rankcore, rankcore._gpu.svd, rankcore._gpu.projection; assert 'cupy' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)
