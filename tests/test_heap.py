"""nn.heap: importing nn keeps freed memory for reuse, so a loop of large arrays stops faulting.

Each case runs in a fresh interpreter and counts the minor page faults (pages the kernel had
to map and zero) of a loop that allocates and frees arrays the way a training step does:
the effect on malloc is measured, not only the call. Linux with glibc only, as the module.
"""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from nn.heap import VARIABLE, keep_heap

# A forward pass keeps its activations until the backward pass frees them: here six arrays
# of 13 MB (a CNN's first layer at batch 128) live at once, then go. With glibc's defaults
# the 78 MB then free at the top of the heap exceed its trim threshold (twice the largest
# block freed), go back to the kernel, and the next step faults every page in again.
PROBE = """
import resource, numpy as np, nn
def step():
    kept = [np.ones(3_200_000, np.float32) for _ in range(6)]
    del kept
for _ in range(3):
    step()
before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
for _ in range(20):
    step()
print((resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before) / 20)
"""

linux = pytest.mark.skipif(not sys.platform.startswith("linux"), reason="glibc's mallopt")


def faults_per_step(keep: str | None) -> float:
    env = {k: v for k, v in os.environ.items() if k != VARIABLE}
    if keep is not None:
        env[VARIABLE] = keep
    done = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return float(done.stdout)


@linux
def test_importing_nn_stops_the_page_faults_of_reallocated_arrays() -> None:
    kept, default = faults_per_step(None), faults_per_step("0")
    assert kept < 10  # the six arrays are about 18800 pages of 4 KB
    assert default > 1000


@linux
def test_keep_heap_says_it_acted() -> None:
    assert keep_heap() is True


def test_the_variable_turns_it_off(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(VARIABLE, "0")
    assert keep_heap() is False
