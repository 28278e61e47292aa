"""Shared benchmark harness: timing, thread control, peak memory, machine ceilings,
a table printer and a JSON writer.

Every ``benches/bench_*.py`` imports this module (it lives next to them, so running
``python benches/bench_x.py`` finds it on ``sys.path``). It depends only on numpy;
threadpoolctl and psutil are used when installed (the ``bench`` extra installs both).

Conventions
-----------
* Anchors (the libraries users would otherwise pick) and rankcore run in one process on the
  same data. ``anchor_threads(n)`` limits every BLAS/OpenMP pool threadpoolctl can see;
  ``rankcore_threads(rc, n)`` sets rankcore's pool *and* the BLAS pools, so any numpy work in
  rankcore's Python layer obeys the same count.
* Ratios are ``theirs / ours`` on the best time: > 1 means rankcore is faster.
* Peak memory is RSS above the RSS at the start of the call (native allocations included),
  sampled by a background thread about every millisecond; where Linux allows resetting the
  high-water mark (``/proc/self/clear_refs``), ``VmHWM`` is read as well and the larger wins.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as _dt
import gc
import importlib
import json
import math
import os
import platform
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, Sequence

import numpy as np

REPO_ROOT = Path(__file__).resolve().parent.parent
RESULTS_DIR = REPO_ROOT / "bench-results"
MiB = 1024.0**2
NA = "n/a (not installed)"

try:  # optional: thread limits for BLAS / OpenMP pools
    from threadpoolctl import threadpool_info, threadpool_limits
except ImportError:  # pragma: no cover - the bench extra installs it
    threadpool_info = None
    threadpool_limits = None

try:  # optional: portable RSS reading
    import psutil
except ImportError:  # pragma: no cover
    psutil = None


# --------------------------------------------------------------------------------------
# optional imports
# --------------------------------------------------------------------------------------


def optional_import(name: str):
    """Import ``name`` or return None if it (or something it needs) cannot be imported."""
    try:
        return importlib.import_module(name)
    except Exception:  # ImportError, but also broken wheels (e.g. numpy ABI errors)
        return None


def cpu_count() -> int:
    """CPUs this process may run on (affinity-aware)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # pragma: no cover - not Linux
        return os.cpu_count() or 1


def parse_args(
    doc: str,
    argv: Sequence[str] | None = None,
    cases: Sequence[str] = (),
    extra: Callable[[argparse.ArgumentParser], None] | None = None,
) -> tuple[argparse.Namespace, set[str]]:
    """The command line every bench shares: ``--quick``, ``--threads`` and, for a bench with
    named cases, ``--cases`` (a comma list, all by default). ``extra`` adds bench-specific
    options. Returns the parsed arguments and the set of cases to run."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="small sizes, for a smoke test")
    ap.add_argument("--threads", type=int, default=cpu_count(),
                    help="threads for rankcore and the anchors (default: all cores)")
    if cases:
        ap.add_argument("--cases", default=",".join(cases), help="comma list: " + ",".join(cases))
    if extra is not None:
        extra(ap)
    args = ap.parse_args(argv)
    if args.threads < 1:
        ap.error("--threads must be >= 1")
    chosen: set[str] = set()
    if cases:
        chosen = {c.strip() for c in args.cases.split(",") if c.strip()}
        if not chosen <= set(cases):
            ap.error(f"unknown case(s): {sorted(chosen - set(cases))}")
    return args, chosen


def import_rankcore(attr: str):
    """``rankcore`` when it imports and has ``attr``; otherwise None, after saying how to
    build it."""
    try:
        import rankcore

        getattr(rankcore, attr)
    except (ImportError, AttributeError) as e:
        print(f"rankcore is not importable ({e}); build it with `make dev`.", file=sys.stderr)
        return None
    return rankcore


# --------------------------------------------------------------------------------------
# thread control
# --------------------------------------------------------------------------------------


@contextlib.contextmanager
def anchor_threads(n: int | None):
    """Limit BLAS and OpenMP pools (numpy, scipy, sklearn, fbpca, ...) to ``n`` threads."""
    if n is None or threadpool_limits is None:
        yield
        return
    with threadpool_limits(limits=int(n)):
        yield


@contextlib.contextmanager
def rankcore_threads(rc, n: int | None):
    """Run rankcore with ``n`` threads; BLAS pools get the same limit."""
    if n is None:
        yield
        return
    with anchor_threads(n), rc.threads(int(n)):
        yield


def thread_counts(n: int) -> list[int]:
    """Thread counts an anchor is tried at: ``n`` (same as rankcore) and 1, deduplicated."""
    return sorted({int(n), 1}, reverse=True)


# --------------------------------------------------------------------------------------
# peak memory
# --------------------------------------------------------------------------------------

_PAGE = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


def rss_bytes() -> int:
    """Current resident set size of this process, in bytes."""
    try:
        with open("/proc/self/statm", "rb") as f:
            return int(f.read().split()[1]) * _PAGE
    except OSError:  # pragma: no cover - not Linux
        if psutil is not None:
            return psutil.Process().memory_info().rss
        return 0


def _load_malloc_trim():
    try:
        import ctypes

        libc = ctypes.CDLL("libc.so.6")
        return libc.malloc_trim
    except (OSError, AttributeError):  # not glibc
        return None


_malloc_trim = _load_malloc_trim()


def release_free_memory() -> None:
    """Give memory that malloc keeps after ``free`` back to the OS (glibc ``malloc_trim``).

    Without it, RSS stays high after a large call (glibc raises its mmap threshold and keeps
    freed chunks), the next call reuses those pages, and its peak above baseline reads ~0.
    """
    gc.collect()
    if _malloc_trim is not None:
        _malloc_trim(0)


def _reset_hwm() -> bool:
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
        return True
    except OSError:
        return False


def _hwm_bytes() -> int:
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) * 1024
    except OSError:  # pragma: no cover
        pass
    return 0


class PeakMemory:
    """Context manager measuring peak RSS above the RSS at entry, in MiB (``.peak_mib``).

    >>> with PeakMemory() as pm:
    ...     x = np.ones(10_000_000)
    >>> pm.peak_mib > 70
    True
    """

    def __init__(self, interval: float = 0.001):
        self.interval = interval
        self.baseline = 0
        self.peak = 0
        self.peak_mib = float("nan")
        self.method = "rss-sampling"

    def _loop(self) -> None:
        while not self._stop.wait(self.interval):
            r = rss_bytes()
            if r > self.peak:
                self.peak = r

    def __enter__(self) -> "PeakMemory":
        release_free_memory()
        self.baseline = rss_bytes()
        self.peak = self.baseline
        self._hwm = _reset_hwm()
        if self._hwm:
            self.method = "rss-sampling+VmHWM"
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="peak-rss", daemon=True)
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()
        self.peak = max(self.peak, rss_bytes())
        if self._hwm:
            self.peak = max(self.peak, _hwm_bytes())
        self.peak_mib = max(self.peak - self.baseline, 0) / MiB


def peak_memory(fn: Callable[[], Any]) -> tuple[Any, float]:
    """Call ``fn()`` once; return ``(result, peak MiB above the RSS before the call)``."""
    with PeakMemory() as pm:
        out = fn()
    return out, pm.peak_mib


# --------------------------------------------------------------------------------------
# timing
# --------------------------------------------------------------------------------------


def time_call(
    fn: Callable[[], Any],
    repeat: int = 3,
    warmup: int = 1,
    *,
    memory: bool = False,
    keep_result: bool = True,
) -> dict:
    """Time ``fn()``: ``warmup`` untimed calls, then ``repeat`` timed ones.

    Returns ``dict(best, median, times)`` (seconds), plus ``result`` (the last call's return
    value) when ``keep_result``. With ``memory=True`` the peak RSS above baseline is measured
    on the last warm-up call (so timed calls run without the sampler, and one-time costs such
    as loading code pages fall in an earlier warm-up when ``warmup >= 2``), or on the first
    timed call when ``warmup == 0``; it is returned as ``peak_mib`` and ``memory_on`` says
    which.
    """
    if repeat < 1:
        raise ValueError("repeat must be >= 1")
    out: dict[str, Any] = {}
    result = None
    for i in range(warmup):
        result = None  # free the previous result before the next call
        if memory and i == warmup - 1:
            result, out["peak_mib"] = peak_memory(fn)
            out["memory_on"] = "warmup"
        else:
            result = fn()
    times = []
    # as timeit does: one collection before the timed calls and none during them. A
    # collection before every call slowed short multi-threaded calls that follow it (a 4 ms
    # two-thread call took 5.3-6.8 ms, measured), which is the collector, not the call.
    result = None
    gc.collect()
    gc_was_enabled = gc.isenabled()
    gc.disable()
    try:
        for i in range(repeat):
            result = None
            if memory and warmup == 0 and i == 0:
                with PeakMemory() as pm:
                    t0 = time.perf_counter()
                    result = fn()
                    times.append(time.perf_counter() - t0)
                out["peak_mib"] = pm.peak_mib
                out["memory_on"] = "timed call"
            else:
                t0 = time.perf_counter()
                result = fn()
                times.append(time.perf_counter() - t0)
    finally:
        if gc_was_enabled:
            gc.enable()
    out.update(best=min(times), median=statistics.median(times), times=times)
    if keep_result:
        out["result"] = result
    return out


# --------------------------------------------------------------------------------------
# machine ceilings
# --------------------------------------------------------------------------------------


def matmul_time(a, b, threads: int | None = None, repeat: int = 3) -> float:
    """Best time of numpy ``a @ b`` at ``threads`` BLAS threads (operands as given)."""
    with anchor_threads(threads):
        return time_call(lambda: a @ b, repeat=repeat, warmup=1, keep_result=False)["best"]


def gemm_ceiling(m: int, n: int, k: int, dtype=np.float64, threads: int | None = None,
                 repeat: int = 3) -> dict:
    """Measured numpy GEMM ``(m x k) @ (k x n)``: ``dict(time, gflops, flops, threads)``."""
    rng = np.random.default_rng(12345)
    a = rng.standard_normal((m, k)).astype(dtype, copy=False)
    b = rng.standard_normal((k, n)).astype(dtype, copy=False)
    t = matmul_time(a, b, threads, repeat)
    flops = 2.0 * m * n * k
    return dict(time=t, gflops=flops / t / 1e9, flops=flops, threads=threads,
                shape=[m, n, k], dtype=np.dtype(dtype).name)


def memory_bandwidth(nbytes: int = 256 * 1024**2, threads: int | None = None,
                     repeat: int = 5) -> dict:
    """Read bandwidth: best time of one read of an ``nbytes`` float64 array, in GB/s.

    Two readers: ``np.sum`` (one thread) and a BLAS matrix-vector product at ``threads``;
    the faster one is the machine's ceiling (``gbps``), both are reported.
    """
    a = np.ones(nbytes // 8)  # np.ones writes every page, so they are resident
    t_sum = time_call(lambda: float(a.sum()), repeat=repeat, warmup=1, keep_result=False)["best"]
    a2 = a.reshape(-1, 4096)
    v = np.ones(4096)
    with anchor_threads(threads):
        t_gemv = time_call(lambda: a2 @ v, repeat=repeat, warmup=1, keep_result=False)["best"]
    t = min(t_sum, t_gemv)
    return dict(bytes=nbytes, time=t, gbps=nbytes / t / 1e9, sum_gbps=nbytes / t_sum / 1e9,
                gemv_gbps=nbytes / t_gemv / 1e9, threads=threads)


# --------------------------------------------------------------------------------------
# machine info
# --------------------------------------------------------------------------------------


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.lower().startswith("model name"):
                    return line.split(":", 1)[1].strip()
    except OSError:  # pragma: no cover
        pass
    return platform.processor() or platform.machine()


def _cpu_flags() -> list[str]:
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("flags"):
                    flags = set(line.split(":", 1)[1].split())
                    return sorted(flags & {"avx", "avx2", "fma", "avx512f", "neon", "sve"})
    except OSError:  # pragma: no cover
        pass
    return []


def _mem_total_gib() -> float | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemTotal:"):
                    return round(int(line.split()[1]) / 1024**2, 1)
    except OSError:  # pragma: no cover
        pass
    if psutil is not None:
        return round(psutil.virtual_memory().total / 1024**3, 1)
    return None


def _version(name: str) -> str | None:
    try:
        from importlib.metadata import version

        return version(name)
    except Exception:
        return None


def _git_commit() -> str | None:
    try:
        r = subprocess.run(["git", "rev-parse", "HEAD"], cwd=REPO_ROOT, capture_output=True,
                           text=True, timeout=5)
        return r.stdout.strip() or None if r.returncode == 0 else None
    except Exception:
        return None


def blas_info() -> list[dict]:
    """BLAS / OpenMP pools threadpoolctl sees (library, version, threads, architecture)."""
    if threadpool_info is None:
        return []
    keep = ("user_api", "internal_api", "version", "num_threads", "threading_layer",
            "architecture", "prefix")
    return [{k: d.get(k) for k in keep if k in d} | {"file": Path(d.get("filepath", "")).name}
            for d in threadpool_info()]


def machine_info(rc=None, extra_packages: Iterable[str] = ()) -> dict:
    """What the numbers were measured on: CPU, cores, memory, versions, BLAS."""
    pkgs = ["numpy", "scipy", "scikit-learn", "threadpoolctl", "psutil", *extra_packages]
    info = {
        "date": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "cpu_model": _cpu_model(),
        "cpu_flags": _cpu_flags(),
        "cores": cpu_count(),
        "logical_cpus": os.cpu_count(),
        "memory_gib": _mem_total_gib(),
        "platform": platform.platform(),
        "python": sys.version.split()[0],
        "versions": {p: _version(p) for p in pkgs},
        "blas": blas_info(),
        "git_commit": _git_commit(),
    }
    if rc is not None:
        info["versions"]["rankcore"] = getattr(rc, "__version__", None) or _version("rankcore")
        try:
            info["rankcore_threads"] = rc.get_num_threads()
        except Exception:
            pass
    return info


def describe_machine(info: dict) -> str:
    v = info["versions"]
    blas = ", ".join(
        f"{b.get('internal_api')} {b.get('version') or ''} ({b.get('num_threads')} thr)".strip()
        for b in info["blas"] if b.get("user_api") == "blas"
    ) or "unknown"
    parts = [f"{info['cpu_model']} [{' '.join(info['cpu_flags'])}], {info['cores']} cores, "
             f"{info['memory_gib']} GiB",
             "python " + info["python"] + ", " + ", ".join(
                 f"{k} {val}" for k, val in v.items() if val is not None),
             "BLAS: " + blas]
    return "\n".join(parts)


# --------------------------------------------------------------------------------------
# result rows and table
# --------------------------------------------------------------------------------------


@dataclasses.dataclass
class Row:
    """One line of a bench table: one tool on one case at one thread count."""

    case: str
    tool: str
    threads: int | None = None
    best: float | None = None
    median: float | None = None
    times: list[float] = dataclasses.field(default_factory=list)
    ratio: float | None = None  # theirs / ours on best time; > 1: rankcore is faster
    accuracy: str = ""
    peak_mib: float | None = None
    peak_units: float | None = None  # peak / a case-defined unit (e.g. (m+n)(k+p) words)
    note: str = ""
    metrics: dict = dataclasses.field(default_factory=dict)
    ours: bool = False  # the rankcore row the ratios of its case refer to

    def as_dict(self) -> dict:
        return dataclasses.asdict(self)


def missing_row(case: str, tool: str, why: str = NA) -> Row:
    return Row(case=case, tool=tool, note=why)


def fill_ratios(rows: Sequence[Row]) -> None:
    """Set ``ratio = best / ours.best`` for each row with a time, per case."""
    ours = {r.case: r for r in rows if r.ours and r.best}
    for r in rows:
        o = ours.get(r.case)
        if o is not None and r.best and r.ratio is None:
            r.ratio = r.best / o.best


def _fmt(x, spec: str) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return format(x, spec)


TABLE_COLUMNS = [
    ("case", "case", "<"),
    ("tool", "tool", "<"),
    ("threads", "threads", ">"),
    ("best", "best (s)", ">"),
    ("median", "median (s)", ">"),
    ("ratio", "ratio", ">"),
    ("accuracy", "accuracy", "<"),
    ("peak_mib", "peak MiB", ">"),
    ("peak_units", "peak/unit", ">"),
    ("note", "note", "<"),
]


def _cell(row: Row, key: str) -> str:
    v = getattr(row, key)
    if key in ("best", "median"):
        if v is None and key == "best" and row.note == NA:
            return "n/a"
        return _fmt(v, ".3f") if (v is None or v >= 0.01) else _fmt(v, ".2e")
    if key == "ratio":
        return _fmt(v, ".2f")
    if key == "peak_mib":
        return _fmt(v, ".1f")
    if key == "peak_units":
        return _fmt(v, ".2f")
    if key == "threads":
        return "" if v is None else str(v)
    return str(v)


def format_table(rows: Sequence[Row], columns=TABLE_COLUMNS) -> str:
    """Aligned pipe table: readable as plain text and valid Markdown. Empty columns dropped."""
    cols = [c for c in columns if any(_cell(r, c[0]) for r in rows)]
    cells = [[_cell(r, c[0]).replace("|", "/") for c in cols] for r in rows]
    heads = [c[1] for c in cols]
    widths = [max([len(h)] + [len(row[i]) for row in cells]) for i, h in enumerate(heads)]

    def line(vals):
        out = []
        for v, w, c in zip(vals, widths, cols, strict=True):
            out.append(v.rjust(w) if c[2] == ">" else v.ljust(w))
        return "| " + " | ".join(out) + " |"

    sep = "|" + "|".join(("-" * (w + 1) + ":") if c[2] == ">" else ("-" * (w + 2))
                         for w, c in zip(widths, cols, strict=True)) + "|"
    return "\n".join([line(heads), sep] + [line(r) for r in cells])


def print_table(rows: Sequence[Row], title: str | None = None) -> None:
    if title:
        print(f"\n### {title}\n")
    print(format_table(rows))
    print()


# --------------------------------------------------------------------------------------
# JSON
# --------------------------------------------------------------------------------------


def _jsonable(x):
    if isinstance(x, dict):
        return {str(k): _jsonable(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_jsonable(v) for v in x]
    if dataclasses.is_dataclass(x) and not isinstance(x, type):
        return _jsonable(dataclasses.asdict(x))
    if isinstance(x, np.ndarray):
        return _jsonable(x.tolist())
    if isinstance(x, np.generic):
        return _jsonable(x.item())
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, (str, int, float, bool)) or x is None:
        return x
    return str(x)


def write_results(bench: str, payload: dict, machine: dict | None = None) -> Path:
    """Write ``bench-results/<bench>.json`` (machine info + payload); return the path."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    path = RESULTS_DIR / f"{bench}.json"
    doc = {"bench": bench, "machine": machine if machine is not None else machine_info()}
    doc.update(payload)
    path.write_text(json.dumps(_jsonable(doc), indent=2) + "\n")
    return path
