"""Elementwise passes on every core: threads over disjoint slices of one array.

BLAS runs a matrix product on all the cores, but a NumPy ufunc, copy or reduction runs on
one. In a CNN step those passes (ReLU, pooling, the gathers and scatters of a convolution)
take about as long as the GEMMs, so on 2 cores half the machine idles for half the step.
NumPy releases the GIL inside its loops, so threads that each work on their own slice of
the arrays do run at the same time. Each element is computed by the same loop as without
threads, so results are bitwise identical; only the elapsed time changes.

``for_slices(fn, n, size)`` calls ``fn(slice)`` for slices that cover ``range(n)``, on the
pool's threads when the work is large enough (``size`` elements against :data:`MIN_SIZE`)
and there is more than one thread; ``fn`` must write only through its own slice. The
caller's floating-point error settings (``np.errstate`` and ``np.seterrcall``, which are per
thread) are applied in every thread, so a warning or error is raised as it would be without
threads. A call from inside a pool thread runs on that thread (waiting for the pool from
inside it could deadlock), and a process forked after the pool started makes its own.

The number of threads follows BLAS's: ``NN_THREADS``, else ``OPENBLAS_NUM_THREADS`` or
``OMP_NUM_THREADS``, else the CPUs this process may use.

>>> x = np.arange(10.0)
>>> y = np.empty_like(x)
>>> for_slices(lambda s: np.multiply(x[s], 2, out=y[s]), len(x), x.size)
>>> y.tolist() == (2 * x).tolist()
True
"""

from __future__ import annotations

import itertools
import os
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

MIN_SIZE = 1 << 17
"""Below this many elements a pass is done on the calling thread: handing slices to the pool
costs tens of microseconds, what a pass over ~100000 float32 takes."""


def thread_count() -> int:
    """Threads for elementwise passes: ``NN_THREADS``, else BLAS's variables, else the CPUs."""
    for var in ("NN_THREADS", "OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


THREADS = thread_count()
_pool: ThreadPoolExecutor | None = None
_pool_lock = threading.Lock()  # two threads asking at once get one pool
_local = threading.local()  # .in_pool: this thread is one of the pool's


def _get_pool() -> ThreadPoolExecutor:
    global _pool
    with _pool_lock:
        if _pool is None:
            _pool = ThreadPoolExecutor(max_workers=THREADS, thread_name_prefix="nn-pass")
        return _pool


def _forget_pool() -> None:
    """In a forked child: the parent's pool threads do not exist there, yet its executor
    would believe them idle and queue work that never runs. The child starts its own."""
    global _pool, _pool_lock
    _pool, _pool_lock = None, threading.Lock()


if hasattr(os, "register_at_fork"):  # not on Windows, which has no fork
    os.register_at_fork(after_in_child=_forget_pool)


def split(n: int, parts: int) -> list[slice]:
    """``parts`` contiguous slices of nearly equal length covering ``range(n)`` (none empty)."""
    parts = max(1, min(parts, n))
    bounds = [n * i // parts for i in range(parts + 1)]
    return [slice(a, b) for a, b in itertools.pairwise(bounds)]


def for_slices(fn: Callable[[slice], Any], n: int, size: int) -> None:
    """``fn(s)`` for slices ``s`` covering ``range(n)``: on the calling thread if ``size`` (the
    elements the pass touches) is below :data:`MIN_SIZE` or there is one thread, else one
    slice a thread. The first exception of any slice is raised after all have finished."""
    if THREADS <= 1 or size < MIN_SIZE or n < 2 or getattr(_local, "in_pool", False):
        fn(slice(0, n))
        return
    settings: dict[str, Any] = dict(np.geterr())
    if (call := np.geterrcall()) is not None:  # the target of the "call" and "log" modes
        settings["call"] = call

    def task(s: slice) -> None:
        _local.in_pool = True
        with np.errstate(**settings):  # per thread: carry the caller's
            fn(s)

    futures = [_get_pool().submit(task, s) for s in split(n, THREADS)]
    errors = [f.exception() for f in futures]  # waits for every slice
    for error in errors:
        if error is not None:
            raise error


def add_into(out: np.ndarray[Any, Any], part: np.ndarray[Any, Any]) -> None:
    """``out += part`` (same shapes), split along the first axis over the pool's threads."""

    def add(rows: slice) -> None:
        np.add(out[rows], part[rows], out=out[rows])

    for_slices(add, len(out), part.size)


def swap_planes(
    a: np.ndarray[Any, Any], b: np.ndarray[Any, Any] | None = None
) -> np.ndarray[Any, Any]:
    """``a`` (A, B, M) as a new contiguous (B, A, M), plus ``b[i]`` on every entry of the
    planes ``a[i]`` if ``b`` (A,) is given: rows of M contiguous entries move, split along B
    over the pool's threads."""
    n_a, n_b, m = a.shape
    out = np.empty((n_b, n_a, m), a.dtype)
    a_t = a.transpose(1, 0, 2)  # (B, A, M), a view

    def copy(rows: slice) -> None:
        if b is None:
            out[rows] = a_t[rows]
        else:
            np.add(a_t[rows], b[:, None], out=out[rows])

    for_slices(copy, n_b, a.size)
    return out
