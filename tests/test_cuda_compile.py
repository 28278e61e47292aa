"""Every CUDA source compiles through NVRTC, with every instantiation rankcore launches.

Runs without a GPU: cupy's public compile path queries the device, so this drives the
low-level NVRTC bindings (``cupy.cuda.nvrtc``) with the options a ``cupy.RawModule`` uses
(``assemble_cupy_compiler_options``: cupy's and CUDA's include folders, C++17) plus
rankcore's own (:data:`rankcore._gpu._kernels.OPTIONS`), for ``sm_80`` (A100) and ``sm_90``
(H100/H200). NVRTC has no ``-Werror``, so the log is asserted free of warnings. Errors in a
template body surface only when it is instantiated, which is why the name expressions come
from the same ``.names`` lists the loader launches from.

Needs ``cupy-cuda13x``, ``nvidia-cuda-nvrtc`` and ``nvidia-cuda-runtime`` (the headers),
installed by ``make test``; under ``CI=true`` a missing NVRTC is a failure, not a skip.
"""

from __future__ import annotations

import os

import pytest

from rankcore._gpu import _kernels

ARCHS = ("sm_80", "sm_90")


def _nvrtc():
    try:
        import cupy._core.core as core
        from cupy.cuda import nvrtc

        nvrtc.getVersion()
        options = core.assemble_cupy_compiler_options(())
    except Exception as exc:  # ImportError, or the NVRTC library is missing
        if os.environ.get("CI") == "true":
            raise AssertionError(f"NVRTC is required under CI=true: {exc!r}") from exc
        pytest.skip(f"NVRTC not available: {exc!r}")
    return nvrtc, tuple(options)


def compile_source(code: str, name: str, expressions: list[str], arch: str) -> tuple[str, dict]:
    """Compile `code` to a cubin for `arch`; returns (log, {expression: lowered name})."""
    nvrtc, options = _nvrtc()
    prog = nvrtc.createProgram(code, f"{name}.cu", [], [])
    try:
        for e in expressions:
            nvrtc.addNameExpression(prog, e)
        opts = options + _kernels.OPTIONS + (f"--gpu-architecture={arch}",)
        try:
            nvrtc.compileProgram(prog, opts)
        except nvrtc.NVRTCError as exc:
            raise RuntimeError(f"{name}.cu ({arch}) failed to compile:\n{nvrtc.getProgramLog(prog)}") from exc
        log = nvrtc.getProgramLog(prog)
        assert len(nvrtc.getCUBIN(prog)) > 0
        return log, {e: nvrtc.getLoweredName(prog, e) for e in expressions}
    finally:
        nvrtc.destroyProgram(prog)


def test_every_source_lists_its_instantiations():
    names = _kernels.sources()
    assert {"random", "projection", "kmedoids"} <= set(names)
    for name in names:
        assert _kernels.name_expressions(name), f"cuda/{name}.names lists nothing"


@pytest.mark.parametrize("arch", ARCHS)
@pytest.mark.parametrize("name", _kernels.sources())
def test_source_compiles_without_warnings(name, arch):
    expressions = _kernels.name_expressions(name)
    log, lowered = compile_source(_kernels.source(name), name, expressions, arch)
    assert "warning" not in log.lower(), log
    assert all(lowered[e] for e in expressions)


def test_a_syntax_error_is_reported():
    with pytest.raises(RuntimeError, match="error"):
        compile_source("__global__ void broken(int* x) { x[0] = ; }", "broken", ["broken"], "sm_90")


def test_an_error_inside_a_template_is_reported_when_instantiated():
    code = '#include "philox.cuh"\ntemplate <typename T> __global__ void bad(T* x) { x[0] = undefined_name; }\n'
    compile_source(code, "template_ok", [], "sm_90")  # not instantiated: NVRTC accepts it
    with pytest.raises(RuntimeError, match="undefined_name"):
        compile_source(code, "template_bad", ["bad<float>"], "sm_90")


def test_a_warning_would_be_seen():
    log, _ = compile_source("__global__ void w(int* x) { int unused; x[0] = 1; }", "w", ["w"], "sm_90")
    assert "warning" in log.lower()
