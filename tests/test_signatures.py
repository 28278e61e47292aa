"""Drop-in signatures: every parameter of an anchor (scikit-learn, TensorLy, scikit-learn-extra)
exists in ours, under the same name, with the same default and, where the anchor lets it be
passed by position, at the same position.

A difference is allowed only when it is listed below with its reason: `EXCEPTIONS` for the
deliberate ones, `MISSING` for gaps still to close (delete the entry when the parameter is
added; the test fails on a listed difference that no longer exists, so the lists stay true).
Our extra parameters must have defaults, so that every anchor call still works.
"""

from __future__ import annotations

import importlib
import inspect
from typing import Any

import pytest

import rankcore

# our public name -> (anchor module, anchor attribute)
ANCHORS: dict[str, tuple[str, str]] = {
    "randomized_svd": ("sklearn.utils.extmath", "randomized_svd"),
    "RandomizedSVD": ("sklearn.decomposition", "TruncatedSVD"),
    "RandomizedPCA": ("sklearn.decomposition", "PCA"),
    "SparseRandomProjection": ("sklearn.random_projection", "SparseRandomProjection"),
    "GaussianRandomProjection": ("sklearn.random_projection", "GaussianRandomProjection"),
    "johnson_lindenstrauss_min_dim": ("sklearn.random_projection", "johnson_lindenstrauss_min_dim"),
    "GridGPRegressor": ("sklearn.gaussian_process", "GaussianProcessRegressor"),
    "KMedoids": ("sklearn_extra.cluster", "KMedoids"),
    "tucker": ("tensorly.decomposition", "tucker"),
    "partial_tucker": ("tensorly.decomposition", "partial_tucker"),
    "Tucker": ("tensorly.decomposition", "Tucker"),
    "tucker_to_tensor": ("tensorly", "tucker_to_tensor"),
    "tucker_to_unfolded": ("tensorly", "tucker_to_unfolded"),
    "tucker_to_vec": ("tensorly", "tucker_to_vec"),
    "mode_dot": ("tensorly.tenalg", "mode_dot"),
    "multi_mode_dot": ("tensorly.tenalg", "multi_mode_dot"),
    "unfold": ("tensorly", "unfold"),
    "fold": ("tensorly", "fold"),
}

# scikit-learn-extra is rarely installed (it has no wheels for recent Pythons): its
# KMedoids.__init__ as documented (https://scikit-learn-extra.readthedocs.io, KMedoids),
# every parameter positional-or-keyword.
KMEDOIDS_DOCUMENTED = [
    ("n_clusters", 8),
    ("metric", "euclidean"),
    ("method", "alternate"),
    ("init", "heuristic"),
    ("max_iter", 300),
    ("random_state", None),
]

_SVD_ALIAS = "default 'exact' is TensorLy's default 'truncated_svd' under its name; both accepted"

# (our name, anchor parameter) -> why ours differs on purpose
EXCEPTIONS: dict[tuple[str, str], str] = {
    ("KMedoids", "method"): (
        "default 'fasterpam' instead of 'alternate' (faster and better medoids); "
        "'alternate' is accepted; documented in README and the docstring (design.md)"
    ),
    ("KMedoids", "init"): (
        "default 'build' instead of 'heuristic' (PAM's BUILD, the better start); "
        "'heuristic' is accepted; documented in README and the docstring (design.md)"
    ),
    ("tucker", "svd"): _SVD_ALIAS,
    ("partial_tucker", "svd"): _SVD_ALIAS,
    ("Tucker", "svd"): _SVD_ALIAS,
}

# (our name, anchor parameter) -> a gap still to close (svd.py, gp.py);
# delete the entry once the parameter is added
MISSING: dict[tuple[str, str], str] = {}

# public names with no anchor in this check, and why
NO_ANCHOR: dict[str, str] = {
    "DynMscResult": "result type of dynmsc",
    "KMedoidsResult": "result type of kmedoids",
    "TuckerTensor": "result type; TensorLy's TuckerTensor is accepted wherever ours is",
    "FastRP": "FastRP has no scikit-learn or TensorLy counterpart",
    "fastrp": "FastRP has no scikit-learn or TensorLy counterpart",
    "FunBaT": "continuous-indexed Bayesian Tucker has no scikit-learn or TensorLy counterpart",
    "FunCP": "continuous-indexed Bayesian CP has no scikit-learn or TensorLy counterpart",
    "kmedoids": "functional k-medoids; its model, the `kmedoids` package, is outside this list",
    "dynmsc": "from the `kmedoids` package, outside this list",
    "medoid_silhouette": "from the `kmedoids` package, outside this list",
    "random_projection": "functional form of the projection estimators, no anchor function",
    "kron_logdet": "Kronecker algebra, no anchor",
    "kron_matvec": "Kronecker algebra, no anchor",
    "kron_solve": "Kronecker algebra, no anchor",
    "kron_solve_logdet": "Kronecker algebra, no anchor",
    "flora": "module",
    "pde": "module",
    "get_num_threads": "thread control, no anchor",
    "set_num_threads": "thread control, no anchor",
    "threads": "thread control, no anchor",
}

_POSITIONAL = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
_VARIADIC = (inspect.Parameter.VAR_POSITIONAL, inspect.Parameter.VAR_KEYWORD)


def _anchor_params(name: str) -> list[tuple[str, Any, Any]] | None:
    """(name, default, kind) of the anchor's parameters; None if it cannot be imported."""
    module, attr = ANCHORS[name]
    try:
        obj = getattr(importlib.import_module(module), attr)
    except ImportError:
        if name == "KMedoids":
            kind = inspect.Parameter.POSITIONAL_OR_KEYWORD
            return [(p, d, kind) for p, d in KMEDOIDS_DOCUMENTED]
        return None
    return [
        (p.name, p.default, p.kind)
        for p in inspect.signature(obj).parameters.values()
        if p.kind not in _VARIADIC
    ]


def _same_default(a: Any, b: Any) -> bool:
    return type(a) is type(b) and a == b


def differences(name: str, anchor: list[tuple[str, Any, Any]]) -> dict[str, str]:
    """Anchor parameter -> what is wrong with ours (absent, other default, other position)."""
    ours = inspect.signature(getattr(rankcore, name)).parameters
    order = [p for p in ours]
    out = {}
    for i, (pname, default, kind) in enumerate(anchor):
        if pname not in ours:
            out[pname] = "missing"
            continue
        p = ours[pname]
        if p.kind in _VARIADIC or p.kind is inspect.Parameter.POSITIONAL_ONLY:
            out[pname] = f"cannot be passed by keyword ({p.kind.description})"
        elif default is not inspect.Parameter.empty and not _same_default(p.default, default):
            out[pname] = f"default {p.default!r}, anchor's {default!r}"
        elif kind in _POSITIONAL and (order.index(pname) != i or p.kind not in _POSITIONAL):
            out[pname] = f"anchor takes it by position {i}, ours does not"
    return out


def test_every_public_name_is_checked_or_says_why_not():
    public = set(rankcore.__all__)
    assert public == set(ANCHORS) | set(NO_ANCHOR), (
        "new public names need an anchor in ANCHORS or a reason in NO_ANCHOR: "
        f"{sorted(public ^ (set(ANCHORS) | set(NO_ANCHOR)))}"
    )
    assert not set(ANCHORS) & set(NO_ANCHOR)
    for key in list(EXCEPTIONS) + list(MISSING):
        assert key[0] in ANCHORS, key
    assert not set(EXCEPTIONS) & set(MISSING)


@pytest.mark.parametrize("name", sorted(ANCHORS))
def test_anchor_parameters_exist_with_the_same_default(name):
    anchor = _anchor_params(name)
    if anchor is None:
        pytest.skip(f"{ANCHORS[name][0]} is not installed")
    found = differences(name, anchor)
    allowed = {p for (n, p) in list(EXCEPTIONS) + list(MISSING) if n == name}
    unexpected = {p: why for p, why in found.items() if p not in allowed}
    stale = sorted(allowed - set(found))
    assert not unexpected, f"{name} differs from {'.'.join(ANCHORS[name])}: {unexpected}"
    assert not stale, f"{name}: listed differences that no longer exist, remove them: {stale}"


@pytest.mark.parametrize("name", sorted(ANCHORS))
def test_our_extra_parameters_have_defaults(name):
    """Extras must not break a call written for the anchor."""
    anchor = _anchor_params(name)
    if anchor is None:
        pytest.skip(f"{ANCHORS[name][0]} is not installed")
    names = {p for p, _, _ in anchor}
    # positions where an anchor call always passes an argument (a renamed parameter there,
    # such as a MISSING entry, still works by position; the keyword is reported above)
    required = {
        i for i, (_, d, k) in enumerate(anchor) if k in _POSITIONAL and d is inspect.Parameter.empty
    }
    params = inspect.signature(getattr(rankcore, name)).parameters.values()
    for i, p in enumerate(params):
        if p.name in names or p.kind in _VARIADIC or p.default is not inspect.Parameter.empty:
            continue
        assert p.kind in _POSITIONAL and i in required, f"{name}: extra {p.name} has no default"


def test_the_check_fails_on_a_removed_or_changed_parameter(monkeypatch):
    """The comparison itself: drop or change a parameter and it is reported."""

    def fake(tensor, matrix_or_vec_list, modes=None, transpose=True):
        pass

    monkeypatch.setattr(rankcore, "multi_mode_dot", fake)
    anchor = [
        ("tensor", inspect.Parameter.empty, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("matrix_or_vec_list", inspect.Parameter.empty, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("modes", None, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("skip", None, inspect.Parameter.POSITIONAL_OR_KEYWORD),
        ("transpose", False, inspect.Parameter.POSITIONAL_OR_KEYWORD),
    ]
    found = differences("multi_mode_dot", anchor)
    assert set(found) == {"skip", "transpose"}
    assert found["skip"] == "missing" and "default" in found["transpose"]

    def moved(tensor, matrix_or_vec_list, skip=None, modes=None, transpose=False):
        pass

    monkeypatch.setattr(rankcore, "multi_mode_dot", moved)
    assert set(differences("multi_mode_dot", anchor)) == {"modes", "skip"}
    # 1 and True compare equal but are different defaults
    assert not _same_default(1, True) and _same_default(1e-4, 0.0001)
