"""nn.blas_env: importing nn before NumPy shortens OpenBLAS's spin, and keeps a user's value.

Each case runs in a fresh interpreter: OpenBLAS reads the variable once, when NumPy loads
it. The value OpenBLAS took is asked from OpenBLAS itself (its ``openblas_thread_timeout``,
found among the libraries the process mapped), so the test sees the effect, not only the
variable.
"""

from __future__ import annotations

import os
import subprocess
import sys

from nn.blas_env import SPIN_EXPONENT, SPIN_VARIABLE, quiet_blas_spin

PROBE = """
import ctypes, os, sys
{first}
import nn, numpy
lib = next(line.split()[-1] for line in open("/proc/self/maps") if "openblas" in line)
print(os.environ["{var}"], ctypes.CDLL(lib).openblas_thread_timeout())
"""


def probe(first: str, value: str | None) -> list[str]:
    env = {k: v for k, v in os.environ.items() if k != SPIN_VARIABLE}
    if value is not None:
        env[SPIN_VARIABLE] = value
    code = PROBE.format(first=first, var=SPIN_VARIABLE)
    done = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_nn_first_sets_the_spin_openblas_uses() -> None:
    assert probe("", None) == [SPIN_EXPONENT, SPIN_EXPONENT]


def test_a_value_in_the_environment_is_kept() -> None:
    assert probe("", "24") == ["24", "24"]


def test_numpy_first_keeps_openblas_default() -> None:
    variable, used = probe("import numpy", None)
    assert variable == SPIN_EXPONENT  # set, but too late: OpenBLAS had read its environment
    assert used == "0"  # OpenBLAS's "not set"


def test_says_whether_it_can_still_act() -> None:
    assert "numpy" in sys.modules
    assert quiet_blas_spin() is False
