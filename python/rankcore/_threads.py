"""Thread count of rankcore's own pool (rayon), separate from numpy's BLAS threads.

The default is ``RANKCORE_NUM_THREADS`` if set, else the machine's cores. Results do not
depend on the thread count: every parallel region splits work by shape, not by threads.
threadpoolctl sees the pool too (``user_api="rankcore"``), so ``threadpool_limits(n)`` limits
it along with BLAS and OpenMP.
"""

from __future__ import annotations

import contextlib
import functools
from collections.abc import Iterator

from rankcore import _core
from rankcore._validation import check_positive_int


def set_num_threads(n: int) -> None:
    """Use ``n`` threads (a positive integer) in every later rankcore call."""
    _core.set_num_threads(check_positive_int(n, "n"))


def get_num_threads() -> int:
    """The number of threads rankcore calls use."""
    return _core.get_num_threads()


@contextlib.contextmanager
def threads(n: int) -> Iterator[None]:
    """Run the ``with`` block on ``n`` threads, then restore the previous count.

    Examples
    --------
    >>> import rankcore
    >>> with rankcore.threads(1):
    ...     rankcore.get_num_threads()
    1
    """
    previous = get_num_threads()
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(previous)


@functools.cache
def _blas_pools():
    """threadpoolctl's view of the loaded BLAS libraries (numpy's and scipy's OpenBLAS),
    built once: scanning the loaded libraries takes ~3 ms, limiting them ~0.1 ms."""
    from threadpoolctl import ThreadpoolController

    return ThreadpoolController().select(user_api="blas")


@contextlib.contextmanager
def one_blas_thread() -> Iterator[None]:
    """Run the ``with`` block with BLAS and LAPACK on one thread.

    For small LAPACK calls between rankcore's own parallel regions: OpenBLAS's worker
    threads spin for a while after each threaded call and take the cores from the next rayon
    region (a 5000 × 500 PCA fit right after another: the core's Gram 16 → 29 ms), while a
    second thread saves nothing in such a call (``syevr`` at 500 columns: 16 ms on one thread,
    14–17 ms on two)."""
    with _blas_pools().limit(limits=1):
        yield


# threadpoolctl (a scikit-learn dependency) finds thread pools by scanning the loaded shared
# libraries. Registering a controller for our extension makes `threadpool_limits(n)` and
# `threadpool_info()` cover rankcore's pool too, so code that already limits BLAS threads
# (joblib workers, sklearn's own guards) also keeps rankcore from oversubscribing.
def _register_threadpoolctl_controller() -> None:
    try:
        import threadpoolctl
    except ImportError:  # pragma: no cover - installed with scikit-learn
        return
    if not hasattr(threadpoolctl, "register"):  # pragma: no cover - threadpoolctl < 3.5
        return

    class RankcoreController(threadpoolctl.LibController):
        user_api = "rankcore"
        internal_api = "rankcore"
        filename_prefixes = ("_core",)  # our extension module is _core.abi3.so
        # Other packages' `_core` modules lack these, so threadpoolctl skips them.
        check_symbols = ("rankcore_get_num_threads", "rankcore_set_num_threads")

        def get_num_threads(self):
            get = self._get_symbol("rankcore_get_num_threads")
            return None if get is None else get()

        def set_num_threads(self, num_threads):
            set_ = self._get_symbol("rankcore_set_num_threads")
            if set_ is not None:
                set_(num_threads)

        def get_version(self):
            # Called before threadpoolctl checks the symbols, so it must not assume that
            # this library is ours.
            if self._get_symbol("rankcore_get_num_threads") is None:
                return None
            from importlib.metadata import PackageNotFoundError, version

            try:
                return version("rankcore")
            except PackageNotFoundError:  # pragma: no cover - source checkout
                return None

    threadpoolctl.register(RankcoreController)


_register_threadpoolctl_controller()
