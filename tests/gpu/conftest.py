"""Set-up shared by the device tests in ``tests/gpu/``.

Every test here is skipped unless cupy imports *and* sees a CUDA device
(``cupy.cuda.runtime.getDeviceCount()`` >= 1, asked inside try/except, since on a machine
without a driver ``import cupy`` works but that call raises). Without a device, a test module
whose collection fails because of cupy/CUDA (a top-level ``import cupyx...``, say) is
reported as skipped rather than as an error; any other collection error still fails.

Fixtures
--------
``cp``
    The ``cupy`` module.
``no_host_transfer``
    A guard used as ``with no_host_transfer():`` (or ``with no_host_transfer:``). Inside it,
    copying a cupy array of more than one element to the host raises
    ``AssertionError("host transfer ...")``: ``cupy.ndarray.get``, ``cupy.ndarray.__array__``
    (``numpy.asarray(x)``) and ``cupy.asnumpy`` are patched (``cupyx.scipy.sparse``'s
    ``.get()`` goes through ``ndarray.get`` too). A one-element read for control flow stays
    allowed: ``float(x)``, ``int(x)``, ``bool(x)`` and ``x.item()`` of a 0-d or one-element
    array (cupy implements them through ``.get()``, so size <= 1 passes; the guard counts
    them in ``guard.scalar_reads``). The originals are restored on exit, and at teardown
    whatever happened.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

_HERE = Path(__file__).resolve().parent


def _probe() -> tuple[Any, str | None]:
    """``(cupy, None)`` when a CUDA device is usable, else ``(None, why not)``."""
    try:
        import cupy
    except Exception as e:  # ImportError, or a broken install
        return None, f"cupy is not importable ({type(e).__name__}: {e})"
    try:
        n = int(cupy.cuda.runtime.getDeviceCount())
    except Exception as e:  # no driver / no device: CUDARuntimeError
        return None, f"no CUDA device ({type(e).__name__}: {str(e).strip()[:120]})"
    if n < 1:
        return None, "no CUDA device (getDeviceCount() == 0)"
    return cupy, None


_CUPY, _SKIP_REASON = _probe()


def _under_here(path: Any) -> bool:
    try:
        return Path(str(path)).resolve().is_relative_to(_HERE)
    except (OSError, ValueError):
        return False


# --------------------------------------------------------------------------------------
# skipping without a device
# --------------------------------------------------------------------------------------


def pytest_report_header(config):
    if _SKIP_REASON is not None:
        return [f"tests/gpu: skipped: {_SKIP_REASON}"]
    cp = _CUPY
    lines = []
    try:
        props = cp.cuda.runtime.getDeviceProperties(0)
        name = props.get("name", b"?")
        name = name.decode() if isinstance(name, bytes) else str(name)
        lines.append(
            f"tests/gpu: {name}, cupy {cp.__version__}, CUDA runtime "
            f"{cp.cuda.runtime.runtimeGetVersion()}, driver {cp.cuda.runtime.driverGetVersion()}"
        )
    except Exception as e:  # pragma: no cover - informational only
        lines.append(f"tests/gpu: device query failed: {e}")
    try:
        import rankcore

        lines.append(f"tests/gpu: rankcore {getattr(rankcore, '__version__', '?')} from {rankcore.__file__}")
    except Exception as e:
        lines.append(f"tests/gpu: rankcore not importable: {type(e).__name__}: {e}")
    return lines


def pytest_collection_modifyitems(config, items):
    if _SKIP_REASON is None:
        return
    mark = pytest.mark.skip(reason=_SKIP_REASON)
    for item in items:
        if _under_here(item.path):
            item.add_marker(mark)


@pytest.hookimpl(hookwrapper=True)
def pytest_make_collect_report(collector):
    outcome = yield
    if _SKIP_REASON is None:
        return
    rep = outcome.get_result()
    if not rep.failed or not isinstance(collector, pytest.Module) or not _under_here(collector.path):
        return
    text = str(rep.longrepr)
    if any(word in text for word in ("cupy", "cupyx", "CUDA", "cuda")):
        # The module cannot even be imported without a device stack: a skip, not an error.
        rep.outcome = "skipped"
        rep.longrepr = (str(collector.path), 0, f"Skipped: {_SKIP_REASON}")


# --------------------------------------------------------------------------------------
# fixtures
# --------------------------------------------------------------------------------------


@pytest.fixture(scope="session")
def cp():
    """The cupy module (tests are skipped before this runs when there is no device)."""
    if _CUPY is None:
        pytest.skip(_SKIP_REASON)
    return _CUPY


class HostTransferGuard:
    """Context manager: a device-to-host copy of more than one element raises AssertionError.

    Re-entrant (nested ``with`` blocks patch once); usable as ``with guard:`` or
    ``with guard():``.
    """

    _NAMES = ("get", "__array__")

    def __init__(self, cupy: Any) -> None:
        self._cp = cupy
        self._depth = 0
        self._saved: list[tuple[Any, str, bool, Any]] = []
        self.scalar_reads = 0

    def __call__(self) -> "HostTransferGuard":
        return self

    def _check(self, a: Any, where: str) -> None:
        size = getattr(a, "size", None)
        if size is not None and size > 1:
            raise AssertionError(
                f"host transfer: {where} of a cupy array of shape {tuple(a.shape)} "
                f"({a.dtype}) inside no_host_transfer"
            )
        self.scalar_reads += 1

    def _patch(self) -> None:
        cp = self._cp
        nd = cp.ndarray
        guard = self
        orig_get = nd.get
        orig_array = nd.__array__
        orig_asnumpy = cp.asnumpy

        def get(self, *args, **kwargs):
            guard._check(self, "ndarray.get()")
            return orig_get(self, *args, **kwargs)

        def __array__(self, *args, **kwargs):
            guard._check(self, "numpy conversion (ndarray.__array__)")
            return orig_array(self, *args, **kwargs)

        def asnumpy(a, *args, **kwargs):
            if isinstance(a, nd):
                guard._check(a, "cupy.asnumpy()")
            return orig_asnumpy(a, *args, **kwargs)

        for owner, name, new in ((nd, "get", get), (nd, "__array__", __array__),
                                 (cp, "asnumpy", asnumpy)):
            d = owner.__dict__ if isinstance(owner, type) else vars(owner)
            self._saved.append((owner, name, name in d, d.get(name)))
            setattr(owner, name, new)

    def _restore(self) -> None:
        while self._saved:
            owner, name, had, old = self._saved.pop()
            if had:
                setattr(owner, name, old)
            else:  # the attribute was inherited (e.g. from cupy's _ndarray_base): unshadow it
                try:
                    delattr(owner, name)
                except AttributeError:
                    pass

    def __enter__(self) -> "HostTransferGuard":
        if self._depth == 0:
            self._patch()
        self._depth += 1
        return self

    def __exit__(self, *exc: Any) -> bool:
        self._depth -= 1
        if self._depth == 0:
            self._restore()
        return False

    def close(self) -> None:
        """Restore everything, however deep the nesting (teardown)."""
        self._depth = 0
        self._restore()


@pytest.fixture
def no_host_transfer(cp):
    """A :class:`HostTransferGuard`: ``with no_host_transfer(): ...`` (see the module
    docstring)."""
    guard = HostTransferGuard(cp)
    try:
        yield guard
    finally:
        guard.close()
