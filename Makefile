# Every target sets itself up from a fresh clone: `make demo` and `make test` are all a new
# user needs. The virtual environment lives in .venv; the extension is built in release mode.
PY      ?= python3
VENV    := .venv
VPY     := $(VENV)/bin/python
STAMP   := $(VENV)/.rankcore-built
# `make dev PROFILE=quick` builds without LTO for fast iteration (see Cargo.toml).
PROFILE ?= release
WHEELS  := dist/wheel
SOURCES := $(shell find rust python -type f \( -name '*.rs' -o -name '*.py' -o -name '*.pyi' -o -name '*.toml' -o -name '*.cu*' \) 2>/dev/null) Cargo.toml pyproject.toml

.PHONY: dev test test-rust test-python demo bench clean

$(VPY):
	$(PY) -m venv $(VENV)
	$(VPY) -m pip install -q --upgrade pip

# Installs the test and bench extras, builds the abi3 wheel exactly as `pip install .` does
# (maturin's PEP 517 backend; release profile) into dist/wheel, and installs that wheel into
# .venv, so the tests exercise what users install. tests/test_wheel.py installs the same wheel
# into a fresh environment with only the runtime dependencies.
# cupy-cuda13x with CUDA 13's NVRTC and headers (~150 MB): tests/test_cuda_compile.py compiles
# every kernel without a GPU. distributed has a lower bound: each release pins its dask, and
# when the newest dask has no distributed yet, an unbounded `distributed` resolves to a 2021
# release that cannot import with it (seen 2026-12-06: dask 2026.11.0, distributed 2021.4.1).
$(STAMP): $(VPY) $(SOURCES)
	$(VPY) -m pip install -q "maturin>=1.7,<2" numpy scipy scikit-learn pytest hypothesis pandas threadpoolctl "dask[array,dataframe]>=2024.1" "distributed>=2024.1" fbpca matplotlib psutil networkx tensorly cupy-cuda13x nvidia-cuda-nvrtc nvidia-cuda-runtime mypy
	rm -rf $(WHEELS) python/rankcore/_core*.so
	MATURIN_PEP517_ARGS="--profile $(PROFILE)" $(VPY) -m pip wheel -q --no-build-isolation --no-deps -w $(WHEELS) .
	$(VPY) -m pip install -q --force-reinstall --no-deps $(WHEELS)/rankcore-*.whl
	touch $(STAMP)

dev: $(STAMP)

test: test-rust test-python

test-rust:
	cargo test -p rankcore --quiet

test-python: $(STAMP)
	$(VPY) -m pytest -q tests

demo: $(STAMP)
	$(VPY) demo/tour.py

# Runs every benches/bench_*.py in turn; each prints its table and writes bench-results/.
# First installs the anchors only the benches use (../shared/anchors.md); a bench whose anchor
# is missing prints a "not installed" row instead of failing.
BENCH_ANCHORS := kmedoids onebatch fastrp
bench: $(STAMP)
	$(VPY) -m pip install -q $(BENCH_ANCHORS) || echo "some bench anchors did not install; their rows say so"
	set -e; for b in benches/bench_*.py; do $(VPY) $$b; done

clean:
	rm -rf $(VENV) target dist demo-output bench-results
