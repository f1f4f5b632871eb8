"""nn.parallel: elementwise passes on threads give bitwise the serial results, never hang.

The ops' own tests run at small sizes, below MIN_SIZE, where every pass is serial; here the
threshold is lowered to 0 so that the threaded path runs, and compared with the serial one.
"""

from __future__ import annotations

import os
import signal
import threading

import numpy as np
import pytest

from conftest import same_bits
from nn import parallel
from nn.conv import conv2d
from nn.pool import avg_pool2d, max_pool2d


def run_ops(seed: int) -> list[np.ndarray]:
    """Every result of the ops that use nn.parallel: the conv row path (forward, dx, dw, db)
    and both poolings at disjoint and overlapping windows, NaN included."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((5, 8, 9, 10)).astype(np.float32)  # C S = 40: row path for 5x5
    x[0, 0, 0, 0] = np.nan
    w = rng.standard_normal((6, 8, 5, 5)).astype(np.float32)
    b = rng.standard_normal(6).astype(np.float32)
    results = []
    y, vjp = conv2d(np.nan_to_num(x), w, b, padding=2)
    results += [y, *vjp(rng.standard_normal(y.shape).astype(np.float32))]
    for window, stride in [(2, 2), (3, 1), (3, 2)]:
        for pool in (max_pool2d, avg_pool2d):
            y, vjp = pool(x, window=window, stride=stride)
            results += [y, *vjp(rng.standard_normal(y.shape).astype(np.float32))]
    return results


@pytest.mark.parametrize("threads", [2, 3])
def test_threaded_passes_are_bitwise_the_serial_ones(monkeypatch, threads):
    monkeypatch.setattr(parallel, "THREADS", 1)
    serial = run_ops(0)
    monkeypatch.setattr(parallel, "THREADS", threads)
    monkeypatch.setattr(parallel, "MIN_SIZE", 0)
    calls = []
    real = parallel.split
    monkeypatch.setattr(parallel, "split", lambda n, p: calls.append(n) or real(n, p))
    threaded = run_ops(0)
    assert calls, "no pass ran on the pool: the test would compare serial with serial"
    assert len(serial) == len(threaded)
    assert all(same_bits(a, b) for a, b in zip(serial, threaded, strict=True))


def test_slices_cover_the_range_once():
    for n in range(1, 12):  # n = 0 has only the empty slice; for_slices runs it serially
        for parts in range(1, 5):
            covered = [i for s in parallel.split(n, parts) for i in range(n)[s]]
            assert covered == list(range(n))
            assert all(s.stop > s.start for s in parallel.split(n, parts))


def threaded(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every pass on a pool of 2 threads, a pool of this test's own: a test that leaves its
    threads stuck must not hang the next one."""
    monkeypatch.setattr(parallel, "THREADS", 2)
    monkeypatch.setattr(parallel, "MIN_SIZE", 0)
    monkeypatch.setattr(parallel, "_pool", None)


def test_the_callers_error_settings_hold_in_every_thread(monkeypatch):
    """np.errstate is per thread: a division by zero in a pool thread raises as in the
    caller's, and the "log" mode writes to the caller's seterrcall object."""
    threaded(monkeypatch)
    x = np.zeros(8)
    with np.errstate(divide="raise"), pytest.raises(FloatingPointError, match="divide"):
        parallel.for_slices(lambda s: np.divide(1.0, x[s]), len(x), x.size)

    class Log:
        def __init__(self) -> None:
            self.lines: list[str] = []

        def write(self, text: str) -> None:
            self.lines.append(text)

    log = Log()
    with np.errstate(divide="log", call=log):
        parallel.for_slices(lambda s: np.divide(1.0, x[s]), len(x), x.size)
    assert log.lines and all("divide by zero" in line for line in log.lines)


def test_an_exception_in_a_slice_is_raised_after_every_slice_ran(monkeypatch):
    threaded(monkeypatch)
    done = []

    def fn(s: slice) -> None:
        done.append(s.start)
        if s.start == 0:
            raise ValueError("slice 0 failed")

    with pytest.raises(ValueError, match="slice 0 failed"):
        parallel.for_slices(fn, 4, 4)
    assert sorted(done) == [0, 2]


def test_a_pass_inside_a_pass_runs_on_its_thread_instead_of_deadlocking(monkeypatch):
    """Both pool threads waiting for an inner pass that needs the pool would wait forever."""
    threaded(monkeypatch)
    inner: list[str] = []

    def outer(s: slice) -> None:
        parallel.for_slices(lambda t: inner.append(threading.current_thread().name), 4, 4)

    runner = threading.Thread(target=parallel.for_slices, args=(outer, 4, 4), daemon=True)
    runner.start()
    runner.join(timeout=10)
    assert not runner.is_alive(), "nested for_slices deadlocked"
    assert len(inner) == 2 and all(name.startswith("nn-pass") for name in inner)


@pytest.mark.skipif(not hasattr(os, "fork"), reason="fork is a POSIX call")
def test_a_forked_child_gets_a_pool_of_its_own(monkeypatch):
    """The parent's pool threads do not exist in a forked child: without a fresh pool its
    first threaded pass would wait forever (multiprocessing forks by default on Linux)."""
    threaded(monkeypatch)
    for _ in range(5):  # the parent's pool exists now, its threads idle
        parallel.for_slices(lambda s: None, 4, 4)
    pid = os.fork()
    if pid == 0:  # the child: a pass, then exit 0; killed by SIGALRM (14) if it hangs
        code = 2  # an exception: the child must never return into pytest
        try:
            signal.alarm(10)
            fresh = parallel._pool is None  # the parent's threads are not in this process
            out = np.zeros(4)
            parallel.for_slices(lambda s: np.add(out[s], 1, out=out[s]), 4, 4)
            code = 0 if fresh and out.tolist() == [1.0] * 4 else 1
        finally:
            os._exit(code)
    _, status = os.waitpid(pid, 0)
    assert os.waitstatus_to_exitcode(status) == 0
