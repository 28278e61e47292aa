"""The CUDA kernels: sources, the instantiations launched, and their compiled modules.

Every ``python/rankcore/cuda/<name>.cu`` is compiled with NVRTC through
``cupy.RawModule(code=..., options=..., name_expressions=...)`` on first use, once per
(device, source hash); ``<name>.names`` beside it lists every name expression (template
instantiation) rankcore launches, so that the CPU-only compile test
(``tests/test_cuda_compile.py``) compiles exactly what runs. cupy is imported here only
when a module is built, never at import.
"""

from __future__ import annotations

import functools
import hashlib
from pathlib import Path
from typing import Any

__all__ = ["CUDA_DIR", "OPTIONS", "function", "name_expressions", "source", "sources"]

#: Where the kernel sources live (shipped inside the wheel as ``rankcore/cuda``).
CUDA_DIR = Path(__file__).resolve().parent.parent / "cuda"

#: NVRTC options beyond cupy's own (``cupy._core.core.assemble_cupy_compiler_options``).
OPTIONS = ("--std=c++17", f"-I{CUDA_DIR}")


def sources() -> list[str]:
    """Names (without ``.cu``) of the kernel sources."""
    return sorted(p.stem for p in CUDA_DIR.glob("*.cu"))


def source(name: str) -> str:
    """The text of ``cuda/<name>.cu``."""
    return (CUDA_DIR / f"{name}.cu").read_text()


def name_expressions(name: str) -> list[str]:
    """The instantiations of ``cuda/<name>.cu`` that rankcore launches (``<name>.names``)."""
    lines = (CUDA_DIR / f"{name}.names").read_text().splitlines()
    return [s.strip() for s in lines if s.strip() and not s.lstrip().startswith("#")]


@functools.cache
def _digest(name: str) -> str:
    """Hash of a source and every header in the folder (a header change recompiles)."""
    h = hashlib.sha256(source(name).encode())
    for header in sorted(CUDA_DIR.glob("*.cuh")):
        h.update(header.read_bytes())
    return h.hexdigest()


@functools.cache
def _module(name: str, device: int, digest: str) -> Any:
    import cupy

    with cupy.cuda.Device(device):
        module = cupy.RawModule(code=source(name), options=OPTIONS, name_expressions=name_expressions(name))
        module.compile()
    return module


def function(name: str, expression: str) -> Any:
    """The compiled kernel ``expression`` (one of ``name_expressions(name)``) of
    ``cuda/<name>.cu`` on the current device."""
    import cupy

    if expression not in name_expressions(name):
        raise KeyError(f"{expression!r} is not listed in cuda/{name}.names; list every instantiation launched")
    return _module(name, cupy.cuda.Device().id, _digest(name)).get_function(expression)
