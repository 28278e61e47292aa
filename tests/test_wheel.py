"""The wheel is the artifact users install: test it as they get it.

``make dev`` builds the abi3 wheel the way ``pip install .`` does (maturin's PEP 517
backend) into ``dist/wheel`` and installs it into ``.venv``. Here the same wheel is checked
for its contents and installed into a fresh virtual environment holding only the runtime
dependencies (numpy, scipy, scikit-learn, resolved by pip from the wheel's metadata), where a
smoke script runs one call of each family and an estimator in a Pipeline, from a directory
outside the repository (so nothing is imported from the source tree). A runtime import of a
test-only package, or a file missing from the wheel, fails here.

The stub test compares ``rankcore/_core.pyi`` with the extension module (``mypy.stubtest``:
names, and signatures as PyO3 reports them).
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
WHEELS = ROOT / "dist" / "wheel"
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def _wheel() -> Path:
    found = sorted(WHEELS.glob("rankcore-*.whl"))
    if not found:
        if IN_CI:
            pytest.fail(f"no wheel in {WHEELS}: `make dev` builds it")
        pytest.skip(f"no wheel in {WHEELS} (built by `make dev`)")
    assert len(found) == 1, f"several wheels in {WHEELS}: {found}"
    return found[0]


def test_wheel_holds_every_package_file():
    wheel = _wheel()
    assert "-abi3-" in wheel.name, wheel.name
    names = set(zipfile.ZipFile(wheel).namelist())
    src = ROOT / "python"
    wanted = [
        p.relative_to(src).as_posix()
        for p in src.rglob("*")
        if p.is_file()
        and "__pycache__" not in p.parts
        and p.suffix in (".py", ".pyi", ".cu", ".cuh", ".names", ".typed")
    ]
    assert any(w.endswith("cuda/projection.cu") for w in wanted), "the source listing is broken"
    missing = sorted(set(wanted) - names)
    assert not missing, f"files missing from {wheel.name}: {missing}"
    assert any(n.startswith("rankcore/_core.") and n.endswith(".so") for n in names), names
    for required in ("rankcore/py.typed", "rankcore/_core.pyi"):
        assert required in names


SMOKE = r"""
import sys
import numpy as np
import scipy.sparse as sp
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import make_pipeline
import rankcore
from rankcore import (KMedoids, RandomizedPCA, GaussianRandomProjection, GridGPRegressor,
                      FastRP, kmedoids, randomized_svd, tucker)

assert "site-packages" in rankcore.__file__, rankcore.__file__
rng = np.random.default_rng(0)
A = rng.standard_normal((200, 40)) @ np.diag(0.8 ** np.arange(40))
U, S, Vt = randomized_svd(A, 5, random_state=0)
assert np.allclose(S, np.linalg.svd(A, compute_uv=False)[:5], rtol=1e-6)
randomized_svd(sp.random(300, 100, density=0.05, format="csr", random_state=0), 3, random_state=0)
T = rng.standard_normal((8, 9, 10))
core, factors = tucker(T, rank=(3, 3, 3))
assert core.shape == (3, 3, 3)
res = kmedoids(rng.standard_normal((100, 3)), 4, metric="euclidean")
assert len(res.medoids) == 4
Y = GaussianRandomProjection(n_components=16, random_state=0).fit_transform(A)
assert Y.shape == (200, 16)
G = sp.random(50, 50, density=0.1, format="csr", random_state=1)
E = FastRP(n_components=8, random_state=0).fit_transform(G + G.T)
assert E.shape == (50, 8)
x = np.linspace(0, 1, 12)
X = np.stack(np.meshgrid(x, x, indexing="ij"), -1).reshape(-1, 2)
gp = GridGPRegressor(optimizer=None).fit(X, np.sin(X.sum(1)))
assert gp.predict(X[:3]).shape == (3,)
from rankcore import flora, pde, kron
y = (A[:, 0] > 0).astype(int)
pipe = make_pipeline(RandomizedPCA(n_components=5, random_state=0), LogisticRegression()).fit(A, y)
assert pipe.score(A, y) > 0.8
KMedoids(3).fit(A)
test_only = {"pytest", "hypothesis", "pandas", "dask", "cupy", "torch", "tensorly", "networkx"}
leaked = sorted(test_only & set(sys.modules))
assert not leaked, f"test-only packages imported at run time: {leaked}"
import importlib.util
assert importlib.util.find_spec("pytest") is None  # the environment really is bare
print("smoke ok")
"""


def test_fresh_environment_with_runtime_dependencies_only(tmp_path):
    wheel = _wheel()
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=True, clear=True).create(env_dir)
    py = env_dir / "bin" / "python"
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    install = subprocess.run(
        [str(py), "-m", "pip", "install", "-q", str(wheel)],
        capture_output=True, text=True, env=env, timeout=900,
    )
    assert install.returncode == 0, install.stdout + install.stderr
    script = tmp_path / "smoke.py"
    script.write_text(SMOKE)
    run = subprocess.run(
        [str(py), str(script)], capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300
    )
    assert run.returncode == 0 and "smoke ok" in run.stdout, run.stdout + run.stderr


def test_stubs_match_the_extension_module():
    try:
        import mypy.stubtest  # noqa: F401
    except ImportError:
        if IN_CI:
            pytest.fail("mypy is needed for the stub check (make dev installs it)")
        pytest.skip("mypy is not installed")
    out = subprocess.run(
        [sys.executable, "-m", "mypy.stubtest", "rankcore._core"],
        capture_output=True, text=True, cwd=ROOT, timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
