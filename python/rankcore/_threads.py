"""Thread count of rankcore's own pool (rayon), separate from numpy's BLAS threads.

The default is ``RANKCORE_NUM_THREADS`` if set, else the machine's cores. Results do not
depend on the thread count: every parallel region splits work by shape, not by threads.
"""

from __future__ import annotations

import contextlib
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
