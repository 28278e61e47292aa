"""Tests for rankcore._validation: array checks, random_state -> seed, scalar checks."""

import hashlib
import re

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from rankcore._validation import (
    check_array,
    check_choice,
    check_nonneg_float,
    check_positive_int,
    check_random_state_seed,
)

FLOATS = [np.float32, np.float64]
CONVERTED = [np.bool_, np.int8, np.int16, np.int32, np.int64, np.uint8, np.uint16,
             np.uint32, np.uint64, np.float16, np.longdouble]
SPARSE_FORMATS = ["csr", "csc", "coo", "lil", "dok", "bsr", "dia"]


def digest(a):
    """Hash of an array's values, shape and dtype (dense or sparse)."""
    if sp.issparse(a) and a.format in ("csr", "csc", "bsr"):
        parts = [a.data, a.indices, a.indptr]  # the stored buffers themselves
    elif sp.issparse(a):
        a = a.tocoo()
        parts = [a.row, a.col, a.data]
    else:
        parts = [np.asarray(a)]
    h = hashlib.sha256()
    for p in parts:
        h.update(repr((p.shape, p.dtype.str)).encode())
        h.update(np.ascontiguousarray(p).tobytes())
    return h.hexdigest()


def layouts(a):
    """Views of a 2-D array in several memory layouts (none of them copies)."""
    yield "C", a
    yield "F", np.asfortranarray(a)
    yield "transposed", a.T
    yield "step", a[::2, ::2] if min(a.shape) > 1 else a[:, :]
    yield "reversed", a[::-1, ::-1]


# --- dense dtypes and layouts ---------------------------------------------------------

float_arrays = st.sampled_from(FLOATS).flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=9),
                          elements=st.floats(-1e6, 1e6, width=np.dtype(dt).itemsize * 8))
)


@settings(max_examples=60, deadline=None)
@given(float_arrays, st.booleans())
def test_float_arrays_returned_without_copy(X, readonly):
    X.flags.writeable = not readonly
    for label, view in layouts(X):
        before = digest(view)
        out = check_array(view)
        assert out is view, label
        assert out.dtype == X.dtype
        assert np.shares_memory(out, view)
        assert digest(view) == before


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(CONVERTED).flatmap(
    lambda dt: hnp.arrays(dt, hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=7),
                          elements=None if dt is np.bool_ else st.integers(0, 100))))
def test_other_real_dtypes_become_float64(X):
    before = digest(X)
    out = check_array(X)
    assert out.dtype == np.float64
    assert not np.shares_memory(out, X)
    np.testing.assert_array_equal(out, X.astype(np.float64))
    assert digest(X) == before


@pytest.mark.parametrize("dtype", FLOATS + CONVERTED)
def test_dtypes_match_sklearn(dtype):
    sklearn_check = pytest.importorskip("sklearn.utils").check_array
    X = np.arange(12).reshape(3, 4).astype(dtype)
    ours = check_array(X)
    theirs = sklearn_check(X, dtype=[np.float64, np.float32])
    assert ours.dtype == theirs.dtype
    np.testing.assert_array_equal(ours, theirs)


@pytest.mark.parametrize("policy, dtype", [("float64", np.float64), ("float32", np.float32)])
@pytest.mark.parametrize("src", [np.float32, np.float64, np.int64, np.bool_])
def test_dtype_policy_forces_dtype(policy, dtype, src):
    X = np.ones((3, 2), dtype=src)
    out = check_array(X, dtype_policy=policy)
    assert out.dtype == dtype
    if src is dtype:
        assert out is X


def test_unknown_dtype_policy():
    with pytest.raises(ValueError, match="dtype_policy"):
        check_array(np.ones((2, 2)), dtype_policy="float16")


@pytest.mark.parametrize("order", ["C", "F"])
def test_conversion_keeps_layout(order):
    X = np.ones((4, 3), dtype=np.int32, order=order)
    out = check_array(X)
    assert out.flags.c_contiguous == X.flags.c_contiguous
    assert out.flags.f_contiguous == X.flags.f_contiguous


def test_lists_and_tuples_are_converted():
    out = check_array([[1, 2], [3, 4]])
    assert isinstance(out, np.ndarray) and out.dtype == np.float64
    out = check_array(((1.5, 2.0), (3.0, 4.0)))
    np.testing.assert_array_equal(out, [[1.5, 2.0], [3.0, 4.0]])


@pytest.mark.filterwarnings("ignore::PendingDeprecationWarning")  # np.matrix
def test_subclasses_are_returned_as_plain_views(tmp_path):
    path = tmp_path / "x.dat"
    np.arange(6, dtype=np.float64).tofile(path)
    X = np.memmap(path, dtype=np.float64, mode="r", shape=(2, 3))
    out = check_array(X)
    assert type(out) is np.ndarray
    assert np.shares_memory(out, X)
    M = np.matrix([[1.0, 2.0]])
    assert type(check_array(M)) is np.ndarray


def test_non_native_byte_order_is_copied_to_native():
    X = np.arange(6, dtype=">f8").reshape(2, 3)
    before = digest(X)
    out = check_array(X)
    assert out.dtype == np.float64 and out.dtype.isnative
    np.testing.assert_array_equal(out, X)
    assert digest(X) == before
    X32 = np.arange(6, dtype=">f4").reshape(3, 2)
    assert check_array(X32).dtype == np.dtype("=f4")


def test_unaligned_is_copied_to_aligned():
    buf = bytearray(8 * 6 + 1)
    X = np.frombuffer(buf, dtype=np.float64, offset=1).reshape(2, 3)
    assert not X.flags.aligned
    out = check_array(X)
    assert out.flags.aligned and out.dtype == np.float64
    np.testing.assert_array_equal(out, X)


# --- object, complex and non-numeric data ---------------------------------------------


def test_object_arrays_of_numbers_become_float64():
    X = np.array([[1, 2.5], [np.float32(3), True]], dtype=object)
    before = digest(X.astype(float))
    out = check_array(X)
    assert out.dtype == np.float64
    np.testing.assert_array_equal(out, [[1, 2.5], [3, 1]])
    assert digest(X.astype(float)) == before


def test_object_array_with_other_objects_is_a_type_error():
    X = np.ones((3, 2)).astype(object)
    X[0, 0] = {"foo": "bar"}
    # scikit-learn's check_dtype_object matches this message.
    msg = r"A must hold numbers.*argument must be .* string.* number"
    with pytest.raises(TypeError, match=msg):
        check_array(X, name="A")


def test_object_array_with_strings_is_a_type_error():
    X = np.array([[1.0, "2.0"]], dtype=object)
    with pytest.raises(TypeError, match="A must hold numbers.*strings"):
        check_array(X, name="A")


@pytest.mark.parametrize("dtype", [np.complex64, np.complex128])
def test_complex_is_rejected(dtype):
    X = np.ones((3, 2), dtype=dtype)
    # ValueError, with the wording scikit-learn's check_complex_data expects.
    with pytest.raises(ValueError, match="Complex data not supported: A"):
        check_array(X, name="A")


@pytest.mark.parametrize("X", [
    np.array([["a", "b"]]),
    np.array([[b"a", b"b"]]),
    np.array([["2020-01-01"]], dtype="datetime64[D]"),
    np.array([[1]], dtype="timedelta64[s]"),
    np.zeros((2, 2), dtype=[("a", "f8")]),
    [["1", "2"]],
])
def test_non_numeric_is_a_type_error(X):
    with pytest.raises(TypeError, match="A must hold real numbers"):
        check_array(X, name="A")


def test_ragged_list_is_a_value_error():
    with pytest.raises(ValueError, match="A could not be converted"):
        check_array([[1.0, 2.0], [3.0]], name="A")


# --- shape ----------------------------------------------------------------------------


def test_one_dimensional_input_message():
    msg = re.escape("X must be a 2-D array, got a 1-D array of shape (5,)")
    with pytest.raises(ValueError, match=msg) as info:
        check_array(np.ones(5))
    assert "X.reshape(-1, 1)" in str(info.value)
    assert "Reshape your data" in str(info.value)  # scikit-learn's estimator checks


@pytest.mark.parametrize("X, what", [
    (np.ones((2, 2, 2)), r"a 3-D array of shape \(2, 2, 2\)"),
    (np.float64(3.0), "a scalar"),
    (3, "a scalar"),
    (None, "a scalar"),
])
def test_wrong_ndim(X, what):
    with pytest.raises(ValueError, match=f"^B must be a 2-D array, got {what}"):
        check_array(X, name="B")


def test_other_ndim():
    T = np.ones((2, 3, 4))
    assert check_array(T, ndim=3) is T
    assert check_array(T, ndim=None) is T
    with pytest.raises(ValueError, match="T must be a 3-D array, got a 2-D array"):
        check_array(np.ones((2, 2)), name="T", ndim=3)
    with pytest.raises(ValueError, match="T must be an array, got a scalar"):
        check_array(1.0, name="T", ndim=None)


@pytest.mark.parametrize("shape, msg", [
    ((0, 3), r"A is empty: found array with 0 sample\(s\) \(shape=\(0, 3\)\)"),
    # the regex scikit-learn's check_estimators_empty_data uses:
    ((12, 0), r"0 feature\(s\) \(shape=\(\d*, 0\)\) while a minimum of \d* is required."),
    ((0, 0), r"0 sample\(s\)"),
])
def test_empty_is_rejected(shape, msg):
    X = np.empty(shape)
    with pytest.raises(ValueError, match=msg):
        check_array(X, name="A")
    assert check_array(X, allow_empty=True) is X


def test_empty_tensor():
    with pytest.raises(ValueError, match=r"T is empty \(shape=\(2, 0, 3\)\)"):
        check_array(np.ones((2, 0, 3)), name="T", ndim=3)


# --- finiteness -----------------------------------------------------------------------


@settings(max_examples=40, deadline=None)
@given(st.sampled_from(FLOATS), st.sampled_from([np.nan, np.inf, -np.inf]),
       st.integers(1, 6), st.integers(1, 6), st.data())
def test_non_finite_is_rejected(dtype, bad, n, m, data):
    X = np.zeros((n, m), dtype=dtype)
    i, j = data.draw(st.integers(0, n - 1)), data.draw(st.integers(0, m - 1))
    X[i, j] = bad
    word = "NaN" if np.isnan(bad) else "infinity"
    with pytest.raises(ValueError, match=f"A contains {word}"):
        check_array(X, name="A")
    assert check_array(X, ensure_finite=False) is X


def test_large_finite_values_whose_sum_overflows_are_accepted():
    X = np.full((4, 4), np.finfo(np.float32).max, dtype=np.float32)
    assert check_array(X) is X


def test_finiteness_checked_after_conversion():
    X = np.array([[1.0, np.nan]], dtype=object)
    with pytest.raises(ValueError, match="A contains NaN"):
        check_array(X, name="A")


# --- sparse ---------------------------------------------------------------------------


def sparse_input(fmt, dtype=np.float64, kind="array"):
    dense = np.array([[0, 1, 0, 2], [3, 0, 0, 0], [0, 0, 4, 5]], dtype=dtype)
    build = sp.csr_array if kind == "array" else sp.csr_matrix
    return build(dense).asformat(fmt), dense


@pytest.mark.parametrize("kind", ["array", "matrix"])
@pytest.mark.parametrize("fmt", SPARSE_FORMATS)
def test_sparse_rejected_unless_accepted(fmt, kind):
    X, _ = sparse_input(fmt, kind=kind)
    msg = r"A is a scipy.sparse .*sparse input is not supported.*A\.toarray\(\)"
    with pytest.raises(TypeError, match=msg):
        check_array(X, name="A")


@pytest.mark.parametrize("kind", ["array", "matrix"])
@pytest.mark.parametrize("fmt", ["csr", "csc"])
@pytest.mark.parametrize("dtype", FLOATS)
@pytest.mark.parametrize("index_dtype", [np.int32, np.int64])
def test_csr_csc_returned_as_is(fmt, kind, dtype, index_dtype):
    X, _ = sparse_input(fmt, dtype, kind)
    X.indices = X.indices.astype(index_dtype)
    X.indptr = X.indptr.astype(index_dtype)
    X.data.flags.writeable = False
    before = digest(X)
    out = check_array(X, accept_sparse=True)
    assert out is X
    assert out.indices.dtype == index_dtype
    assert digest(X) == before


@pytest.mark.parametrize("kind", ["array", "matrix"])
@pytest.mark.parametrize("fmt", ["coo", "lil", "dok", "bsr", "dia"])
def test_other_sparse_formats_become_csr(fmt, kind):
    X, dense = sparse_input(fmt, kind=kind)
    before = digest(X)
    out = check_array(X, accept_sparse=True)
    assert out.format == "csr" and out.dtype == np.float64
    assert sp.issparse(out) and isinstance(out, sp.sparray) == (kind == "array")
    np.testing.assert_array_equal(out.toarray(), dense)
    assert digest(X) == before


@pytest.mark.parametrize("dtype", [np.int32, np.int64, np.bool_, np.uint8, np.longdouble])
@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_data_dtype_converted(dtype, fmt):
    X, dense = sparse_input(fmt, dtype)
    before = digest(X)
    out = check_array(X, accept_sparse=True)
    assert out.dtype == np.float64 and out.format in ("csr", "csc")
    assert out.indices.dtype in (np.int32, np.int64)
    np.testing.assert_array_equal(out.toarray(), dense.astype(np.float64))
    assert digest(X) == before


def test_sparse_complex_rejected():
    X = sp.csr_array(np.eye(2, dtype=np.complex128))
    with pytest.raises(ValueError, match="Complex data not supported: A"):
        check_array(X, name="A", accept_sparse=True)


@pytest.mark.parametrize("bad, word", [(np.nan, "NaN"), (np.inf, "infinity")])
def test_sparse_non_finite_rejected(bad, word):
    X, _ = sparse_input("csr")
    X.data[1] = bad
    with pytest.raises(ValueError, match=f"A contains {word}"):
        check_array(X, name="A", accept_sparse=True)
    assert check_array(X, accept_sparse=True, ensure_finite=False) is X


def test_sparse_shape_checks():
    with pytest.raises(ValueError, match=r"A is empty: found array with 0 sample\(s\)"):
        check_array(sp.csr_array((0, 3)), name="A", accept_sparse=True)
    empty = sp.csr_array((0, 3))
    assert check_array(empty, accept_sparse=True, allow_empty=True) is empty
    no_entries = sp.csr_array((4, 3))
    assert check_array(no_entries, accept_sparse=True) is no_entries
    with pytest.raises(ValueError, match="A must be a 3-D array"):
        check_array(sp.csr_array((2, 3)), name="A", ndim=3, accept_sparse=True)


def test_sparse_invalid_structure_rejected():
    X = sp.csr_array((np.ones(2), np.array([0, 7]), np.array([0, 1, 2])), shape=(2, 3))
    with pytest.raises(ValueError, match="A is not a valid CSR matrix"):
        check_array(X, name="A", accept_sparse=True)


def test_sparse_non_native_data_copied():
    X, dense = sparse_input("csr")
    X.data = X.data.astype(">f8")
    before = digest(X)
    out = check_array(X, accept_sparse=True)
    assert out.data.dtype.isnative and out.dtype == np.float64
    np.testing.assert_array_equal(out.toarray(), dense)
    assert digest(X) == before


# --- device and lazy arrays are never pulled to the host ------------------------------


class _Guarded:
    def __array__(self, *args, **kwargs):
        raise AssertionError("implicit conversion to numpy")


@pytest.mark.parametrize("module, ns", [("cupy", "cupy"), ("dask.array.core", "dask")])
def test_device_and_lazy_arrays_are_type_errors(module, ns):
    fake = type("ndarray", (_Guarded,), {"__module__": module})()
    with pytest.raises(TypeError, match=f"A is a {ns} array"):
        check_array(fake, name="A")


# --- random_state -> seed -------------------------------------------------------------


def test_none_gives_fresh_seeds():
    seeds = {check_random_state_seed(None) for _ in range(8)}
    assert len(seeds) == 8
    assert all(isinstance(s, int) and 0 <= s < 2**64 for s in seeds)


@given(st.integers(0, 2**64 - 1))
def test_int_seed_is_itself(seed):
    assert check_random_state_seed(seed) == seed
    assert type(check_random_state_seed(seed)) is int


@pytest.mark.parametrize("value", [np.int8(5), np.int64(5), np.uint64(5), np.uint8(5)])
def test_numpy_integer_seeds(value):
    assert check_random_state_seed(value) == 5


@pytest.mark.parametrize("value", [-1, 2**64, np.int64(-3)])
def test_int_seed_out_of_range(value):
    with pytest.raises(ValueError, match=r"random_state must be in \[0, 2\*\*64\)"):
        check_random_state_seed(value)


@pytest.mark.parametrize("value", [True, np.bool_(False), 1.0, "0", [1], np.random.SeedSequence(1),
                                   np.random.PCG64(1)])
def test_other_random_state_types(value):
    with pytest.raises(TypeError, match="random_state must be None, an int"):
        check_random_state_seed(value)


@pytest.mark.parametrize("make", [np.random.default_rng, np.random.RandomState])
@given(seed=st.integers(0, 2**32 - 1))
def test_generators_reproducible_and_advanced(make, seed):
    a, b = make(seed), make(seed)
    first = check_random_state_seed(a)
    assert type(first) is int and 0 <= first < 2**64
    assert first == check_random_state_seed(b)
    assert check_random_state_seed(a) == check_random_state_seed(b)  # both advanced alike


@pytest.mark.parametrize("make", [np.random.default_rng, np.random.RandomState])
def test_generator_draws_use_64_bits(make):
    gen = make(0)
    seeds = [check_random_state_seed(gen) for _ in range(200)]
    assert len(set(seeds)) == 200
    assert max(seeds) >= 2**63  # values above the int64 range occur
    assert check_random_state_seed(make(0)) == seeds[0]


# --- scalar parameters ----------------------------------------------------------------


@pytest.mark.parametrize("value", [1, 7, np.int32(7), np.uint64(7), np.int64(10**6)])
def test_positive_int_accepts(value):
    out = check_positive_int(value, "n_components")
    assert out == value and type(out) is int


@pytest.mark.parametrize("value", [0, -1, np.int64(0)])
def test_positive_int_below_minimum(value):
    with pytest.raises(ValueError, match="n_components must be an integer >= 1, got"):
        check_positive_int(value, "n_components")


@pytest.mark.parametrize("value", [1.0, 2.5, True, np.bool_(True), "3", None, np.float64(3)])
def test_positive_int_rejects_non_integers(value):
    with pytest.raises(TypeError, match="n_components must be an integer >= 1"):
        check_positive_int(value, "n_components")


def test_positive_int_bounds_and_none():
    assert check_positive_int(0, "n_iter", minimum=0) == 0
    assert check_positive_int(5, "k", maximum=5) == 5
    with pytest.raises(ValueError, match="k must be an integer >= 2 and <= 5, got 6"):
        check_positive_int(6, "k", minimum=2, maximum=5)
    assert check_positive_int(None, "k", allow_none=True) is None
    with pytest.raises(TypeError, match="k must be None or an integer >= 1"):
        check_positive_int(1.5, "k", allow_none=True)


@pytest.mark.parametrize("value", [0, 0.0, 1e-3, 3, np.float32(0.5), np.float64(2.0), np.int16(4)])
def test_nonneg_float_accepts(value):
    out = check_nonneg_float(value, "tol")
    assert out == float(value) and type(out) is float


@pytest.mark.parametrize("value", [-1e-9, np.nan, np.inf, -np.inf, np.float32(np.nan)])
def test_nonneg_float_rejects_values(value):
    with pytest.raises(ValueError, match="tol must be a finite real number >= 0.0"):
        check_nonneg_float(value, "tol")


@pytest.mark.parametrize("value", [True, "1.0", None, 1j, [1.0]])
def test_nonneg_float_rejects_types(value):
    with pytest.raises(TypeError, match="tol must be a real number"):
        check_nonneg_float(value, "tol")


def test_nonneg_float_options():
    with pytest.raises(ValueError, match="alpha must be a finite real number > 0.0 and <= 1.0"):
        check_nonneg_float(0.0, "alpha", strict=True, maximum=1.0)
    with pytest.raises(ValueError, match="<= 1.0"):
        check_nonneg_float(1.5, "alpha", maximum=1.0)
    assert check_nonneg_float(1.0, "alpha", strict=True, maximum=1.0) == 1.0
    assert check_nonneg_float(None, "alpha", allow_none=True) is None
    assert check_nonneg_float(-2, "shift", minimum=-5) == -2.0


def test_choice():
    assert check_choice("svd", "init", ("svd", "random")) == "svd"
    assert check_choice(np.str_("svd"), "init", ["svd", "random"]) == "svd"
    assert check_choice(None, "method", ("auto", None)) is None
    with pytest.raises(ValueError, match="init must be one of 'svd', 'random'; got 'SVD'"):
        check_choice("SVD", "init", ("svd", "random"))
    with pytest.raises(ValueError, match="flag must be one of 1, 2; got True"):
        check_choice(True, "flag", (1, 2))
    with pytest.raises(ValueError, match="init must be one of"):
        check_choice(np.array(["svd", "svd"]), "init", ("svd",))
    with pytest.raises(ValueError, match="init must be one of"):
        check_choice([1], "init", {"svd", "random"})
