"""Tests for rankcore._backend: namespace detection and dispatch."""

import subprocess
import sys

import numpy as np
import pytest
import scipy.sparse as sp

import rankcore._backend
from rankcore._backend import dispatch, namespace


class _Guarded:
    """Stands in for a device or lazy array: converting it to numpy is an error."""

    def __array__(self, *args, **kwargs):
        raise AssertionError("implicit conversion to numpy")


def fake(module, name="ndarray", base=_Guarded):
    """An instance of a class that claims to live in `module`."""
    return type(name, (base,), {"__module__": module})()


CUPY_LIKE = [("cupy", "ndarray"), ("cupyx.scipy.sparse._csr", "csr_matrix"),
             ("cupyx.scipy.sparse._coo", "coo_matrix")]
DASK_LIKE = [("dask.array.core", "Array"), ("dask.dataframe.core", "DataFrame"),
             ("dask_expr._collection", "DataFrame")]


@pytest.mark.parametrize("x", [np.ones((2, 2)), np.float32(1.0), [[1, 2]], (1, 2), 3.0,
                               np.matrix([[1.0]]), np.ma.ones(3), object()])
def test_numpy_and_array_likes(x):
    assert namespace(x) == "numpy"


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo", "lil", "dok", "bsr", "dia"])
@pytest.mark.parametrize("build", [sp.csr_array, sp.csr_matrix])
def test_scipy_sparse(fmt, build):
    assert namespace(build(np.eye(3)).asformat(fmt)) == "scipy.sparse"


@pytest.mark.parametrize("module, name", CUPY_LIKE)
def test_cupy_detected_by_module(module, name):
    assert namespace(fake(module, name)) == "cupy"


def test_subclass_of_cupy_array_is_cupy():
    base = type("ndarray", (_Guarded,), {"__module__": "cupy"})
    sub = type("MyArray", (base,), {"__module__": "mypackage.arrays"})
    assert namespace(sub()) == "cupy"


@pytest.mark.parametrize("module, name", DASK_LIKE)
def test_dask_detected_by_module(module, name):
    assert namespace(fake(module, name)) == "dask"


def test_lookalike_module_names_are_not_matched():
    assert namespace(fake("cupyish", "ndarray", object)) == "numpy"
    assert namespace(fake("daskette.core", "Array", object)) == "numpy"


def test_namespace_imports_neither_cupy_nor_dask():
    # Load the module file on its own, so that whatever the package imports does not count.
    code = (
        "import importlib.util, sys, numpy as np\n"
        "spec = importlib.util.spec_from_file_location('backend', sys.argv[1])\n"
        "backend = importlib.util.module_from_spec(spec); spec.loader.exec_module(backend)\n"
        "backend.namespace(np.ones(2)); backend.namespace([1])\n"
        "assert not {'cupy', 'cupyx', 'dask'} & set(sys.modules), sorted(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code, rankcore._backend.__file__], check=True)


def test_real_dask_array():
    da = pytest.importorskip("dask.array")
    assert namespace(da.ones((4, 4), chunks=2)) == "dask"


def test_real_cupy_array():
    cp = pytest.importorskip("cupy")
    try:
        x = cp.ones(3)
    except Exception:  # noqa: BLE001 (installed, but no usable device)
        pytest.skip("no CUDA device")
    assert namespace(x) == "cupy"
    assert namespace(cp.sparse.csr_matrix(cp.eye(3))) == "cupy"


# --- dispatch -------------------------------------------------------------------------


def record(label, calls):
    def path(x):
        calls.append((label, x))
        return label
    return path


def paths(calls, **present):
    return {k: record(k, calls) for k in ("cpu", "gpu", "dask", "sparse") if present.get(k, True)}


@pytest.mark.parametrize("x, expected", [
    (np.ones(2), "cpu"),
    ([1.0, 2.0], "cpu"),
    (sp.csr_array(np.eye(2)), "sparse"),
    (fake("cupy"), "gpu"),
    (fake("cupyx.scipy.sparse._csr", "csr_matrix"), "gpu"),
    (fake("dask.array.core", "Array"), "dask"),
])
def test_dispatch_calls_matching_path_with_x(x, expected):
    calls = []
    assert dispatch(x, name="f", **paths(calls)) == expected
    assert calls == [(expected, x)]
    assert calls[0][1] is x


def test_sparse_can_share_the_cpu_path():
    calls = []
    cpu = record("cpu", calls)
    X = sp.csc_matrix(np.eye(2))
    assert dispatch(X, name="f", cpu=cpu, sparse=cpu) == "cpu"
    assert calls == [("cpu", X)]


def test_missing_gpu_path():
    calls = []
    msg = (r"^randomized_svd: the GPU path \(cupy arrays\) is not implemented yet; "
           r"convert with cupy\.asnumpy\(A\) to use the CPU path")
    with pytest.raises(NotImplementedError, match=msg):
        dispatch(fake("cupy"), name="randomized_svd", param="A", **paths(calls, gpu=False))
    assert calls == []  # never silently falls back to the CPU path


def test_missing_dask_path():
    calls = []
    with pytest.raises(NotImplementedError,
                       match=r"^tucker: the dask path is not implemented yet; call T\.compute\(\)"):
        dispatch(fake("dask.array.core", "Array"), name="tucker", param="T",
                 **paths(calls, dask=False))
    assert calls == []


def test_missing_sparse_path_is_a_type_error():
    # TypeError mentioning "sparse": what scikit-learn's estimator checks expect.
    calls = []
    with pytest.raises(TypeError, match=r"^kmedoids: scipy\.sparse input is not supported for X; "
                                        r"convert it with X\.toarray\(\)"):
        dispatch(sp.coo_array(np.eye(2)), name="kmedoids", **paths(calls, sparse=False))
    assert calls == []


def test_dispatch_requires_keywords():
    with pytest.raises(TypeError):
        dispatch(np.ones(2), "f", lambda x: x)  # the positional form is refused
