"""Random projections against dense references, scikit-learn and the JL lemma."""

from __future__ import annotations

import hashlib
import pickle
import warnings

import numpy as np
import pytest
import scipy.sparse as sp
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn import random_projection as skrp
from sklearn.base import clone
from sklearn.exceptions import DataDimensionalityWarning
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
from sklearn.utils.estimator_checks import parametrize_with_checks

import rankcore
from rankcore import (
    GaussianRandomProjection,
    SparseRandomProjection,
    johnson_lindenstrauss_min_dim,
    random_projection,
)


def digest(A):
    if sp.issparse(A):
        return tuple(hashlib.sha1(np.ascontiguousarray(x).tobytes()).hexdigest() for x in (A.data, A.indices, A.indptr))
    return hashlib.sha1(np.ascontiguousarray(A).tobytes()).hexdigest()


def dense(A):
    return A.toarray() if sp.issparse(A) else np.asarray(A)


def data(n, d, seed=0, dtype=np.float64, zeros=0.3):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, d))
    X[rng.random((n, d)) < zeros] = 0.0
    return X.astype(dtype)


# sklearn's own common tests use n_components=2 for these estimators ("auto" needs
# thousands of features for the checks' 20-30 samples).
@parametrize_with_checks(
    [
        SparseRandomProjection(n_components=2, random_state=0),
        SparseRandomProjection(n_components=2, density=1.0, random_state=0),
        SparseRandomProjection(n_components=2, dense_output=True, random_state=0),
        GaussianRandomProjection(n_components=2, random_state=0),
    ]
)
def test_sklearn_compatible(estimator, check):
    check(estimator)


@pytest.mark.parametrize("kind", ["sparse", "achlioptas", "gaussian"])
def test_jl_property_holds_for_the_auto_size(kind):
    n, d, eps = 40, 1500, 0.35
    k = int(johnson_lindenstrauss_min_dim(n, eps=eps))
    assert k < d
    for seed in range(3):
        X = data(n, d, seed=seed, zeros=0.0)
        Y = random_projection(X, "auto", kind=kind, eps=eps, random_state=seed)
        assert Y.shape == (n, k)
        iu = np.triu_indices(n, 1)
        dx = ((X[:, None, :] - X[None, :, :]) ** 2).sum(-1)[iu]
        dy = ((Y[:, None, :] - Y[None, :, :]) ** 2).sum(-1)[iu]
        ratio = dy / dx
        assert ratio.min() > 1 - eps and ratio.max() < 1 + eps, (kind, seed, ratio.min(), ratio.max())
        # Unbiased: E ||Rx||^2 = ||x||^2; the mean of 780 ratios is within a few 1e-2.
        assert abs(ratio.mean() - 1) < 0.05


@pytest.mark.parametrize("density", [1 / 3, 0.05, "auto"])
def test_entries_have_the_documented_distribution(density):
    d, k = 4000, 60
    est = SparseRandomProjection(k, density=density, random_state=11).fit(np.zeros((1, d)))
    delta = est.density_
    C = est.components_
    assert sp.isspmatrix_csr(C) and C.shape == (k, d)
    s = np.sqrt(1 / delta) / np.sqrt(k)
    assert np.all(np.abs(C.data) == s)
    # Chi-square on the counts of -s, 0, +s (2 degrees of freedom; 13.8 is p = 0.001).
    total = d * k
    pos, neg = int((C.data > 0).sum()), int((C.data < 0).sum())
    observed = np.array([neg, total - pos - neg, pos])
    expected = total * np.array([delta / 2, 1 - delta, delta / 2])
    chi2 = float(((observed - expected) ** 2 / expected).sum())
    assert chi2 < 13.8, (observed, expected)
    # Variance of every entry is 1/k (so E ||Rx||^2 = ||x||^2).
    assert abs(C.multiply(C).sum() / total - 1 / k) < 5 * np.sqrt(2 / total) / k * np.sqrt(1 / delta)


def test_gaussian_entries_have_the_documented_distribution():
    d, k = 5000, 40
    C = GaussianRandomProjection(k, random_state=3).fit(np.zeros((1, d))).components_
    z = C.ravel() * np.sqrt(k)
    n = z.size
    assert abs(z.mean()) < 4 / np.sqrt(n)
    assert abs(z.var() - 1) < 4 * np.sqrt(2 / n)
    kurt = ((z - z.mean()) ** 4).mean() / z.var() ** 2
    assert abs(kurt - 3) < 4 * np.sqrt(24 / n)


@pytest.mark.parametrize("cls", [SparseRandomProjection, GaussianRandomProjection])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_components_equal_what_transform_applies(cls, dtype):
    d, k = 120, 9
    est = cls(k, random_state=5).fit(np.zeros((2, d), dtype=dtype))
    C = dense(est.components_)
    assert C.dtype == dtype
    # The identity's rows project to the columns of R exactly.
    np.testing.assert_array_equal(est.transform(np.eye(d, dtype=dtype)), C.T)
    X = data(30, d, seed=1, dtype=dtype)
    eps = np.finfo(dtype).eps
    ref = X.astype(np.float64) @ C.T.astype(np.float64)
    scale = np.abs(X).astype(np.float64) @ np.abs(C.T).astype(np.float64)
    np.testing.assert_array_less(np.abs(est.transform(X) - ref), 4 * d * eps * scale + 1e-300)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dense_and_sparse_inputs_give_the_same_output(dtype):
    X = data(70, 90, seed=2, dtype=dtype)
    est = SparseRandomProjection(12, density=0.2, dense_output=True, random_state=1).fit(X)
    base = est.transform(X)
    assert base.dtype == dtype
    for form in (np.asfortranarray(X), X[::-1][::-1], sp.csr_matrix(X), sp.csc_matrix(X), sp.csr_array(X)):
        np.testing.assert_array_equal(est.transform(form), base)  # bit-identical
    g = GaussianRandomProjection(12, random_state=1).fit(X)
    gb = g.transform(X)
    tol = 1e-4 if dtype == np.float32 else 1e-12
    for form in (np.asfortranarray(X), sp.csr_matrix(X), sp.csc_matrix(X)):
        np.testing.assert_allclose(g.transform(form), gb, atol=tol * np.abs(gb).max())


def test_sparse_output_types_match_sklearn():
    X = sp.random(40, 200, density=0.05, random_state=0, format="csr")
    for dense_output, density in [(False, "auto"), (True, "auto"), (False, 1.0)]:
        ours = SparseRandomProjection(10, density=density, dense_output=dense_output, random_state=0)
        theirs = skrp.SparseRandomProjection(10, density=density, dense_output=dense_output, random_state=0)
        a, b = ours.fit_transform(X), theirs.fit_transform(X)
        assert sp.issparse(a) == sp.issparse(b) and type(a) is type(b), (dense_output, density, type(a), type(b))
        assert sp.issparse(ours.components_) == sp.issparse(theirs.components_)
        if sp.issparse(a):
            assert a.format == "csr" and not np.any(a.data == 0)
            np.testing.assert_allclose(a.toarray(), X @ ours.components_.T.toarray(), atol=1e-12)
    assert isinstance(GaussianRandomProjection(5, random_state=0).fit_transform(X), np.ndarray)


@pytest.mark.parametrize("fmt", ["csr", "csc", "coo"])
def test_sparse_output_format_for_each_input_format(fmt):
    """The documented difference: our sparse result is CSR for every sparse input format;
    sklearn's is CSC for CSC input (CSR otherwise). Values equal the product with
    ``components_`` either way, and an assigned ``components_`` gives sklearn's format."""
    X = sp.random(30, 120, density=0.1, random_state=1, format=fmt)
    ours = SparseRandomProjection(8, dense_output=False, random_state=0).fit(X)
    theirs = skrp.SparseRandomProjection(8, dense_output=False, random_state=0).fit(X)
    a, b = ours.transform(X), theirs.transform(X)
    assert type(a) is sp.csr_matrix and a.has_sorted_indices and not np.any(a.data == 0)
    assert b.format == ("csc" if fmt == "csc" else "csr")
    np.testing.assert_allclose(a.toarray(), X @ ours.components_.T.toarray(), rtol=1e-13, atol=1e-13)
    ours.components_ = theirs.components_
    c = ours.transform(X)
    assert c.format == b.format
    np.testing.assert_allclose(c.toarray(), b.toarray(), rtol=1e-13, atol=1e-13)


def test_results_do_not_depend_on_thread_count():
    X = data(700, 300, seed=4)
    S = sp.csr_matrix(X)
    out = {}
    for n in (1, 2):
        with rankcore.threads(n):
            out[n] = [
                random_projection(X, 40, kind=kind, random_state=2) for kind in ("sparse", "gaussian", "achlioptas")
            ] + [random_projection(S, 40, random_state=2), random_projection(S, 40, kind="gaussian", random_state=2)]
    for a, b in zip(out[1], out[2]):
        np.testing.assert_array_equal(a, b)


def test_functional_and_estimators_share_the_matrix():
    X = data(20, 150, seed=5)
    np.testing.assert_array_equal(
        random_projection(X, 7, kind="achlioptas", random_state=9),
        SparseRandomProjection(7, density=1 / 3, random_state=9).fit_transform(X),
    )
    np.testing.assert_array_equal(
        random_projection(X, 7, kind="gaussian", random_state=9),
        GaussianRandomProjection(7, random_state=9).fit_transform(X),
    )
    a = random_projection(X, 7, random_state=9)
    assert not np.array_equal(a, random_projection(X, 7, random_state=10))
    np.testing.assert_array_equal(a, random_projection(X, 7, random_state=9))


def test_auto_components_match_sklearn_and_names():
    X = np.zeros((50, 3000))
    ours = SparseRandomProjection(eps=0.5, random_state=0).fit(X)
    theirs = skrp.SparseRandomProjection(eps=0.5, random_state=0).fit(X)
    assert ours.n_components_ == theirs.n_components_
    assert ours.density_ == theirs.density_
    # sklearn 1.9's own get_feature_names_out fails with n_components="auto" (it uses the
    # parameter, not n_components_); ours gives the names sklearn gives for an int.
    names = [f"sparserandomprojection{i}" for i in range(ours.n_components_)]
    assert list(ours.get_feature_names_out()) == names
    g = GaussianRandomProjection(3, random_state=0).fit(X)
    assert list(g.get_feature_names_out()) == [f"gaussianrandomprojection{i}" for i in range(3)]
    with pytest.raises(ValueError, match="larger than the original space"):
        SparseRandomProjection(eps=0.1).fit(np.zeros((50, 30)))
    with pytest.warns(DataDimensionalityWarning):
        SparseRandomProjection(40, random_state=0).fit(np.zeros((5, 30)))


def test_jl_min_dim_matches_sklearn():
    for n, eps in [(1e6, 0.5), (1e6, [0.5, 0.1, 0.01]), ([1e4, 1e5, 1e6], 0.1), (10, 0.9)]:
        np.testing.assert_array_equal(johnson_lindenstrauss_min_dim(n, eps=eps), skrp.johnson_lindenstrauss_min_dim(n, eps=eps))
    for eps in (0.0, 1.0, -0.5, 1.5):
        with pytest.raises(ValueError, match="eps"):
            johnson_lindenstrauss_min_dim(100, eps=eps)
    with pytest.raises(ValueError, match="n_samples"):
        johnson_lindenstrauss_min_dim(0, eps=0.5)


@pytest.mark.parametrize("compute", [False, True])
def test_inverse_transform(compute):
    X = data(30, 20, seed=6)
    est = SparseRandomProjection(40, density=0.5, compute_inverse_components=compute, random_state=0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataDimensionalityWarning)
        Y = est.fit_transform(X)
    if compute:
        assert est.inverse_components_.shape == (20, 40)
    # k > d: R has full column rank, so pinv(R) R = I and the inverse is exact.
    np.testing.assert_allclose(est.inverse_transform(Y), X, atol=1e-10)
    np.testing.assert_allclose(est.inverse_transform(sp.csr_matrix(Y)), X, atol=1e-10)


def test_pipeline_clone_pickle_and_assigned_components():
    X = data(80, 60, seed=7)
    y = (X[:, 0] > 0).astype(int)
    pipe = make_pipeline(SparseRandomProjection(20, random_state=0), LogisticRegression())
    pipe.fit(X, y)
    assert pipe.score(X, y) > 0.5
    est = GaussianRandomProjection(8, random_state=1).fit(X)
    _ = est.components_  # cached, not pickled
    est2 = pickle.loads(pickle.dumps(est))
    assert "_components_cache" not in est2.__dict__
    np.testing.assert_array_equal(est2.transform(X), est.transform(X))
    assert clone(est).get_params() == est.get_params()
    # Users who rescale components_ (as FastRP's reference code does) get what they set.
    est.components_ = est.components_ * 2.0
    np.testing.assert_allclose(est.transform(X), 2 * est2.transform(X), rtol=1e-12)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(n_components=0), "n_components"),
        (dict(n_components=-3), "n_components"),
        (dict(n_components=2.5), "n_components"),
        (dict(n_components="auto", eps=0.0), "eps"),
        (dict(n_components="auto", eps=1.5), "eps"),
        (dict(n_components=3, density=0.0), "density"),
        (dict(n_components=3, density=1.5), "density"),
        (dict(n_components=3, density=-1), "density"),
    ],
)
def test_bad_parameters_name_themselves(kwargs, match):
    X = data(10, 3000, seed=8)
    before = digest(X)
    with pytest.raises((ValueError, TypeError), match=match):
        SparseRandomProjection(**kwargs).fit(X)
    fkw = {k: v for k, v in kwargs.items() if k != "n_components"}
    with pytest.raises((ValueError, TypeError), match=match):
        random_projection(X, kwargs["n_components"], **fkw)
    assert digest(X) == before


def test_bad_inputs():
    with pytest.raises(ValueError, match="kind"):
        random_projection(np.ones((3, 4)), 2, kind="dense")
    with pytest.raises(ValueError, match="density"):
        random_projection(np.ones((3, 4)), 2, kind="gaussian", density=0.5)
    with pytest.raises(ValueError, match="NaN"):
        random_projection(np.array([[1.0, np.nan]]), 2)
    # The sparse families check finiteness inside the product: every element, including
    # columns where R has no non-zero, in every layout.
    X = data(30, 200, seed=3)
    est = SparseRandomProjection(2, density=0.01, random_state=0).fit(X)
    for bad in (np.nan, np.inf, -np.inf):
        for r, c in ((0, 0), (29, 199), (7, 101)):
            Xb = X.copy()
            Xb[r, c] = bad
            for form in (Xb, np.asfortranarray(Xb), Xb.astype(np.float32)):
                with pytest.raises(ValueError, match="NaN|inf"):
                    est.transform(form)
                with pytest.raises(ValueError, match="NaN|inf"):
                    SparseRandomProjection(2, density=0.01, random_state=0).fit_transform(form)
    est = SparseRandomProjection(2, random_state=0).fit(np.ones((3, 4)))
    with pytest.raises(ValueError, match="features"):
        est.transform(np.ones((3, 5)))
    S = sp.csr_matrix(np.eye(4))
    before = digest(S)
    est.transform(S)
    assert digest(S) == before


@settings(max_examples=25, deadline=None)
@given(
    n=st.integers(1, 25),
    d=st.integers(1, 40),
    k=st.integers(1, 12),
    seed=st.integers(0, 2**64 - 1),
    kind=st.sampled_from(["sparse", "gaussian", "achlioptas"]),
    dtype=st.sampled_from([np.float32, np.float64]),
    order=st.sampled_from(["C", "F", "csr", "csc"]),
)
def test_property_matches_components(n, d, k, seed, kind, dtype, order):
    X = data(n, d, seed=seed % 1000, dtype=dtype)
    Xin = {"C": X, "F": np.asfortranarray(X), "csr": sp.csr_matrix(X), "csc": sp.csc_matrix(X)}[order]
    Y = random_projection(Xin, k, kind=kind, random_state=seed)
    assert Y.shape == (n, k) and Y.dtype == dtype
    cls = GaussianRandomProjection if kind == "gaussian" else SparseRandomProjection
    extra = {} if kind == "gaussian" else {"density": 1 / 3 if kind == "achlioptas" else "auto"}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DataDimensionalityWarning)
        C = dense(cls(k, random_state=seed, **extra).fit(X).components_).astype(np.float64)
    ref = X.astype(np.float64) @ C.T
    bound = 4 * d * np.finfo(dtype).eps * (np.abs(X).astype(np.float64) @ np.abs(C.T)) + 1e-30
    assert np.all(np.abs(Y - ref) <= bound)
