"""FastRP against dense references written plainly from the paper and GDS definitions."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.model_selection import cross_val_score

import rankcore
from rankcore import FastRP, SparseRandomProjection, fastrp
from rankcore import _core
from rankcore.projection import _components, _options


def digest(*arrays):
    return tuple(hashlib.sha1(np.ascontiguousarray(a).tobytes()).hexdigest() for a in arrays)


def graph(n=30, seed=0, directed=True):
    """A weighted graph with a self-loop, duplicate edges, an isolated node (n-1) and a
    sink (n-2: in-edges only)."""
    rng = np.random.default_rng(seed)
    m = 4 * n
    src = rng.integers(0, n - 2, m)
    dst = rng.integers(0, n - 1, m)
    w = rng.random(m) + 0.1
    src = np.r_[src, 3, 3, 5]
    dst = np.r_[dst, 3, 7, 7]  # a self-loop at 3 and a duplicate pair 5 -> 7
    w = np.r_[w, 0.5, 1.0, 2.0]
    return src, dst, w


def dense_adjacency(src, dst, w, n, directed=True):
    A = np.zeros((n, n))
    np.add.at(A, (src, dst), w)
    return A if directed else np.maximum(A, A.T)


def normalize_rows(X):
    norms = np.sqrt((X * X).sum(axis=1, keepdims=True))
    return np.where(norms > 0, X / np.where(norms > 0, norms, 1), X)


def initial_vectors(A, k, variant, beta, density, seed, F=None, pdim=0):
    n = A.shape[0]
    kb = k - pdim
    R = SparseRandomProjection(kb, density=density, random_state=seed).fit(np.zeros((1, n))).components_
    R = R.T.toarray()  # n x kb
    deg = A.sum(axis=1) if variant == "paper" else (A != 0).sum(axis=1).astype(float)
    L = np.where(deg > 0, np.power(np.where(deg > 0, deg, 1.0), beta), 1.0)
    E0 = L[:, None] * R
    if F is not None:
        opts = _options("sparse", F.shape[1], pdim, 1 / 3, seed, stream=_core.PROJECTION_STREAM_FASTRP_FEATURES)
        P = _components(opts, np.float64).toarray()  # pdim x f
        E0 = np.hstack([E0, F @ P.T])
    return E0


def reference_paper(A, k, weights, beta, w0, density, transition, normalize, standardize, seed):
    deg = A.sum(axis=1)
    M = (np.where(deg > 0, 1 / np.where(deg > 0, deg, 1), 0)[:, None] * A) if transition else A
    g = normalize_rows if normalize else (lambda X: X)
    N = initial_vectors(A, k, "paper", beta, density, seed)
    U = w0 * g(N)
    for a in weights:
        N = M @ N
        U = U + a * g(N)
    if standardize:
        sd = U.std(axis=0)
        U = (U - U.mean(axis=0)) / np.where(sd > 0, sd, 1)
    return U


def reference_gds(A, k, weights, beta, w0, seed, F=None, pdim=0):
    N = initial_vectors(A, k, "gds", beta, 1 / 3, seed, F, pdim)
    U = w0 * normalize_rows(N)
    for a in weights:
        N = normalize_rows(A @ N)
        U = U + a * N
    return U


PAPER_CASES = [
    dict(),
    dict(transition=False, normalize=True, standardize=False),
    dict(self_influence=0.7, normalization_strength=0.0, normalize=True, standardize=False),
    dict(iteration_weights=[0.5, 2.0], normalization_strength=-1.0, density=0.3, standardize=False),
]


@pytest.mark.parametrize("case", PAPER_CASES)
@pytest.mark.parametrize("directed", [True, False])
def test_paper_variant_equals_dense_reference(case, directed):
    n, k, seed = 30, 12, 4
    src, dst, w = graph(n)
    A = dense_adjacency(src, dst, w, n, directed)
    kw = dict(iteration_weights=(1.0, 1.0, 7.81, 45.28), normalization_strength=-0.628, self_influence=0.0,
              transition=True, normalize=False, standardize=True, density="auto") | case
    got = fastrp((src, dst, w), k, variant="paper", directed=None if directed else False, n_nodes=n,
                 random_state=seed, **case)
    density = 1 / np.sqrt(n) if kw["density"] == "auto" else kw["density"]
    want = reference_paper(A, k, kw["iteration_weights"], kw["normalization_strength"], kw["self_influence"],
                           density, kw["transition"], kw["normalize"], kw["standardize"], seed)
    np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-9 * np.abs(want).max())


@pytest.mark.parametrize("w0", [0.0, 1.5])
@pytest.mark.parametrize("beta", [0.0, -0.5])
@pytest.mark.parametrize("directed", [True, False])
def test_gds_variant_equals_dense_reference(w0, beta, directed):
    n, k, seed = 30, 10, 8
    src, dst, w = graph(n, seed=1)
    A = dense_adjacency(src, dst, w, n, directed)
    got = fastrp((src, dst, w), k, variant="gds", self_influence=w0, normalization_strength=beta,
                 directed=None if directed else False, n_nodes=n, random_state=seed)
    want = reference_gds(A, k, (0.0, 1.0, 1.0), beta, w0, seed)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)
    # The isolated node (n - 1) gets only its (normalised) initial vector.
    if w0 == 0:
        assert not got[n - 1].any()
    else:
        assert np.isclose(np.linalg.norm(got[n - 1]), w0)


def test_gds_with_node_features():
    n, k, seed = 25, 16, 3
    src, dst, w = graph(n, seed=2)
    A = dense_adjacency(src, dst, w, n)
    F = np.random.default_rng(0).standard_normal((n, 5))
    got = fastrp((src, dst, w), k, variant="gds", features=F, feature_ratio=0.25, self_influence=0.5,
                 n_nodes=n, random_state=seed)
    want = reference_gds(A, k, (0.0, 1.0, 1.0), 0.0, 0.5, seed, F, pdim=4)
    np.testing.assert_allclose(got, want, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("variant", ["paper", "gds"])
def test_input_forms_agree_and_float32(variant):
    nx = pytest.importorskip("networkx")
    n = 30
    src, dst, w = graph(n, seed=5)
    A = sp.coo_array((w, (src, dst)), shape=(n, n)).tocsr()  # duplicates summed
    G = nx.DiGraph()
    G.add_nodes_from(range(n))
    for (s, d), v in zip(zip(*A.nonzero()), A.data):
        G.add_edge(int(s), int(d), weight=float(v))
    base = fastrp(A, 8, variant=variant, random_state=1)
    np.testing.assert_allclose(fastrp((src, dst, w), 8, variant=variant, n_nodes=n, random_state=1), base, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(fastrp(G, 8, variant=variant, random_state=1), base, rtol=1e-12, atol=1e-12)
    # Non-canonical input (unsorted, duplicate entries, stored zeros) is not modified.
    coo = sp.coo_matrix((np.r_[w, 0.0], (np.r_[src, 0], np.r_[dst, 1])), shape=(n, n))
    csr = sp.csr_matrix((coo.data, coo.col, np.r_[0, np.cumsum(np.bincount(coo.row, minlength=n))]), shape=(n, n))
    csr = sp.csr_matrix((coo.data[np.argsort(coo.row, kind="stable")], coo.col[np.argsort(coo.row, kind="stable")],
                         csr.indptr), shape=(n, n))
    before = digest(csr.data, csr.indices, csr.indptr)
    np.testing.assert_allclose(fastrp(csr, 8, variant=variant, random_state=1), base, rtol=1e-10, atol=1e-12)
    assert digest(csr.data, csr.indices, csr.indptr) == before
    f32 = fastrp(A.astype(np.float32), 8, variant=variant, random_state=1)
    assert f32.dtype == np.float32
    np.testing.assert_allclose(f32, base, rtol=1e-3, atol=1e-3 * np.abs(base).max())


def test_undirected_symmetric_input_is_unchanged_by_directed_false():
    src, dst, w = graph(30, seed=6)
    A = sp.csr_array(dense_adjacency(src, dst, w, 30, directed=False))
    np.testing.assert_array_equal(fastrp(A, 8, random_state=0), fastrp(A, 8, directed=False, random_state=0))


def test_results_do_not_depend_on_thread_count():
    rng = np.random.default_rng(0)
    n = 3000
    src, dst = rng.integers(0, n, 30000), rng.integers(0, n, 30000)
    out = {}
    for t in (1, 2):
        with rankcore.threads(t):
            out[t] = [fastrp((src, dst), 32, variant=v, n_nodes=n, random_state=3) for v in ("paper", "gds")]
    for a, b in zip(out[1], out[2]):
        np.testing.assert_array_equal(a, b)


def test_sbm_embeddings_separate_the_blocks():
    nx = pytest.importorskip("networkx")
    sizes = [60, 60, 60]
    p = [[0.15, 0.01, 0.01], [0.01, 0.15, 0.01], [0.01, 0.01, 0.15]]
    G = nx.stochastic_block_model(sizes, p, seed=0)
    y = np.repeat(np.arange(3), 60)
    for variant in ("paper", "gds"):
        U = fastrp(G, 64, variant=variant, random_state=0)
        acc = cross_val_score(LogisticRegression(max_iter=2000), U, y, cv=3).mean()
        assert acc > 0.9, (variant, acc)


def test_estimator_passes_every_keyword():
    src, dst, w = graph(20, seed=7)
    A = sp.coo_array((w, (src, dst)), shape=(20, 20)).tocsr()
    kw = dict(variant="paper", iteration_weights=[1.0, 3.0], normalization_strength=-0.3, self_influence=0.2,
              normalize=True, transition=False, standardize=False, density=0.5, directed=False,
              dtype=np.float32, random_state=5)
    est = FastRP(8, **kw)
    np.testing.assert_array_equal(est.fit_transform(A), fastrp(A, 8, **kw))
    np.testing.assert_array_equal(est.transform(A), est.embedding_)
    assert est.n_components_ == 8
    for key, value in FastRP(8, **kw).get_params().items():
        assert key == "n_components" or key == "features" or key == "feature_ratio" or kw[key] is value


@pytest.mark.parametrize(
    "make, kwargs, match",
    [
        (lambda: sp.csr_array(-np.eye(4)), {}, "non-negative"),
        (lambda: sp.csr_array(np.array([[0, np.inf], [1, 0]])), {}, "finite"),
        # Canonical CSR: its weights are checked by the core, after the dtype conversion
        # (an overflow to inf) and before directed=False takes the maximum with Aᵀ.
        (lambda: sp.csr_array(np.array([[0, 1e300], [1, 0]])), dict(dtype=np.float32), "finite"),
        (lambda: sp.csr_array(np.array([[0, -1.0], [2.0, 0]])), dict(directed=False), "non-negative"),
        (lambda: sp.csr_array(np.array([[0, -1.0], [2.0, 0]])), dict(dtype=np.float32), "non-negative"),
        (lambda: sp.csr_array(np.ones((3, 4))), {}, "square"),
        (lambda: (np.array([0, 5]), np.array([1, 2])), dict(n_nodes=4), "edge indices"),
        (lambda: (np.array([0, -1]), np.array([1, 2])), {}, "edge indices"),
        (lambda: (np.array([0, 1]), np.array([1, 2]), np.array([1.0, np.nan])), {}, "finite"),
        (lambda: sp.csr_array(np.eye(4)), dict(n_components=0), "n_components"),
        (lambda: sp.csr_array(np.eye(4)), dict(n_components=-2), "n_components"),
        (lambda: sp.csr_array(np.eye(4)), dict(density=0.0), "density"),
        (lambda: sp.csr_array(np.eye(4)), dict(density=1.5), "density"),
        (lambda: sp.csr_array(np.eye(4)), dict(variant="neo4j"), "variant"),
        (lambda: sp.csr_array(np.eye(4)), dict(iteration_weights=[1.0, np.nan]), "iteration_weights"),
        (lambda: sp.csr_array(np.eye(4)), dict(features=np.ones((4, 2))), "feature_ratio"),
        (lambda: sp.csr_array(np.eye(4)), dict(features=np.ones((3, 2)), feature_ratio=0.5), "features"),
        (lambda: sp.csr_array(np.eye(4)), dict(feature_ratio=0.5), "feature_ratio.*features"),
        (lambda: sp.csr_array(np.eye(4)), dict(feature_ratio=0.5, variant="gds"), "feature_ratio.*features"),
        (lambda: "edges", {}, "graph"),
    ],
)
def test_bad_inputs_name_the_parameter(make, kwargs, match):
    g = make()
    parts = (g.data, g.indices, g.indptr) if sp.issparse(g) else (g if isinstance(g, tuple) else ())
    before = digest(*parts)
    kwargs = {"n_components": 4, **kwargs}
    with pytest.raises((ValueError, TypeError), match=match):
        fastrp(g, **kwargs)
    assert digest(*parts) == before


def _cancelling_pair(fmt):
    """A 3-node graph whose edge 0 -> 1 is stored twice, with weights -1 and +1."""
    data, row, col = np.array([-1.0, 1.0, 2.0]), np.array([0, 0, 1]), np.array([1, 1, 2])
    if fmt == "coo":
        return sp.coo_array((data, (row, col)), shape=(3, 3))
    if fmt == "csr":  # non-canonical: duplicate column in row 0
        return sp.csr_array((data, col, np.array([0, 2, 3, 3])), shape=(3, 3))
    return sp.csc_array((data, row, np.array([0, 0, 2, 3])), shape=(3, 3))


@pytest.mark.parametrize("fmt", ["coo", "csr", "csc"])
def test_negative_weights_are_rejected_before_duplicates_are_summed(fmt):
    g = _cancelling_pair(fmt)
    assert fmt == "coo" or not g.has_canonical_format
    before = digest(g.data)
    with pytest.raises(ValueError, match="non-negative"):
        fastrp(g, 4, random_state=0)
    assert digest(g.data) == before
    # The edge-list form of the same graph.
    with pytest.raises(ValueError, match="non-negative"):
        fastrp((np.array([0, 0, 1]), np.array([1, 1, 2]), np.array([-1.0, 1.0, 2.0])), 4)


def test_negative_parallel_edge_of_a_multigraph_is_rejected():
    nx = pytest.importorskip("networkx")
    G = nx.MultiDiGraph()
    G.add_edge(0, 1, weight=-1.0)
    G.add_edge(0, 1, weight=1.0)
    G.add_edge(1, 2, weight=2.0)
    with pytest.raises(ValueError, match="non-negative"):
        fastrp(G, 4, random_state=0)
    G.remove_edge(0, 1, key=0)  # the -1 edge goes; a valid multigraph still embeds
    assert fastrp(G, 4, random_state=0).shape == (3, 4)


def test_large_graph_crosses_interrupt_sections():
    # More than 2**16 nodes: rows are processed in several sections between interrupt checks.
    n, k, seed = 70_000, 8, 2
    rng = np.random.default_rng(1)
    src, dst = rng.integers(0, n, 4 * n), rng.integers(0, n, 4 * n)
    A = sp.csr_array((np.ones(src.size), (src, dst)), shape=(n, n))
    A.sum_duplicates()
    got = fastrp(A, k, variant="gds", random_state=seed)
    R = SparseRandomProjection(k, density=1 / 3, random_state=seed).fit(np.zeros((1, n))).components_
    N = R.T.toarray()
    U = np.zeros((n, k))
    for a in (0.0, 1.0, 1.0):
        N = normalize_rows(A @ N)
        U += a * N
    np.testing.assert_allclose(got, U, rtol=1e-10, atol=1e-12)
