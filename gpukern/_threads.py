"""Threads for loops of independent BLAS-heavy items (networks, kernel tiles).

One Python thread per core, each item with single-threaded BLAS: for the GEMMs of a few
dozen rows (SGL) or of tiles (empirical kernels), BLAS's own threads spend more time
synchronising than computing. NumPy and BLAS release the GIL, so the threads overlap.
"""

from __future__ import annotations

import contextlib
import functools
import os
from collections.abc import Callable, Iterable
from typing import Any


def threads() -> int:
    """Threads to use: GPUKERN_NUM_THREADS, else the cores this process may run on."""
    env = os.environ.get("GPUKERN_NUM_THREADS")
    if env:
        from ._checks import integer

        return integer("GPUKERN_NUM_THREADS", int(env), 1)
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


@functools.cache
def _pool(workers: int):
    from concurrent.futures import ThreadPoolExecutor

    return ThreadPoolExecutor(workers, thread_name_prefix="gpukern")


def parallel_map(fn: Callable[[Any], None], items: Iterable[Any]) -> None:
    """fn(item) for every item, items dealt round-robin to ``threads()`` threads."""
    items = list(items)
    workers = min(len(items), threads())
    if workers <= 1:
        for item in items:
            fn(item)
        return

    def run(k: int) -> None:
        for item in items[k::workers]:
            fn(item)

    list(_pool(workers).map(run, range(workers)))  # list(): re-raises a worker's error


@functools.cache
def _controller():
    """threadpoolctl's view of the BLAS libraries, made once (a fresh look costs ~0.1 ms a
    call, a lot for SGL steps of small ensembles); None without threadpoolctl."""
    try:
        from threadpoolctl import ThreadpoolController
    except ImportError:
        return None
    import scipy.linalg  # noqa: F401  (loads scipy's BLAS, which the SGL step calls)

    return ThreadpoolController()


def single_threaded_blas():
    """BLAS limited to one thread within the block (threadpoolctl)."""
    controller = _controller()
    if controller is None:  # correct without it, only slower
        return contextlib.nullcontext()
    return controller.limit(limits=1, user_api="blas")
