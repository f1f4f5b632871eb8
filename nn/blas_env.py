"""How long OpenBLAS's threads spin after a matrix product: set before NumPy loads it.

After each matrix product OpenBLAS keeps its worker threads spinning for the next one, for
2^28 CPU cycles by default (about 0.1 s). In a CNN step a product is followed by passes that
:mod:`nn.parallel` runs on every core (gathers, sums, ReLU, pooling): the spinning workers
hold the cores those threads need. ``OPENBLAS_THREAD_TIMEOUT = 20`` lets them spin 2^20
cycles (about 0.4 ms), which still bridges the gap between the back-to-back products of an
MLP step. Measured with ``bench/suite.py`` on the 2-core machine (docs/performance.md):
the CNN's epoch 56.45 s with the default, 49.66 s with 20, 48.62 s with 4 (the least
OpenBLAS allows); the 784-256-10 MLP's 0.56 s, 0.57 s and 0.64 s, where 4 wakes the workers
for every small product.

OpenBLAS reads the variable once, when NumPy loads it, so :func:`quiet_blas_spin` runs first
in ``nn/__init__.py``: ``python -m nn`` and a script that imports ``nn`` before NumPy get it;
a process that imported NumPy before ``nn`` keeps the default. A value already in the
environment is kept. The numbers computed are the same either way; only waiting changes.
This module imports nothing from NumPy, for that reason.
"""

from __future__ import annotations

import os
import sys

SPIN_VARIABLE = "OPENBLAS_THREAD_TIMEOUT"
SPIN_EXPONENT = "20"  # 2^20 cycles; OpenBLAS clamps the exponent to [4, 30]


def quiet_blas_spin() -> bool:
    """Set :data:`SPIN_VARIABLE` to :data:`SPIN_EXPONENT` unless it is set; whether it can
    still take effect (NumPy, and so OpenBLAS, not loaded yet)."""
    os.environ.setdefault(SPIN_VARIABLE, SPIN_EXPONENT)
    return "numpy" not in sys.modules
