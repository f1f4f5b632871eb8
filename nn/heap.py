"""Keep freed memory in the process: a training step's large arrays reuse the last step's pages.

A training step allocates the same large arrays every time (a CNN's activations at batch
128 are 13 MB each) and frees them. glibc's malloc gives the top of its heap back to the
kernel when more than its trim threshold (by default twice the largest block freed so far)
lies free there, and serves blocks above its mmap threshold from fresh pages. A forward pass
keeps its activations alive until the backward pass frees them, so tens of MB come free at
the top of the heap at once and go back to the kernel; the next step touches those pages
again and the kernel must map and zero each one. Measured on the CNN config (batch 128,
2 cores): 3886 page faults per step with glibc's defaults and 2 with the settings below,
and an epoch of 31.4 s against 25.6 s (docs/performance.md).

:func:`keep_heap` sets glibc's ``M_MMAP_THRESHOLD`` to 32 MB (the most glibc allows), so
blocks up to that come from the heap, and ``M_TRIM_THRESHOLD`` to 1 GB, so freed heap
memory stays for reuse. The peak resident memory does not change; what changes is that
memory freed after the peak stays with the process (up to 1 GB) instead of going back to
the kernel. The numbers computed are the same; only where the memory comes from changes.

Importing ``nn`` calls it (``nn/__init__.py``), as it sets OpenBLAS's spin
(:mod:`nn.blas_env`). ``NN_KEEP_HEAP=0`` in the environment leaves malloc as it is. Only
glibc has ``mallopt``; elsewhere (macOS, Windows, musl) nothing changes.
"""

from __future__ import annotations

import ctypes
import os
import sys

VARIABLE = "NN_KEEP_HEAP"  # "0": leave malloc's defaults
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3  # mallopt's parameters, from glibc's malloc.h
MMAP_THRESHOLD = 32 << 20  # blocks up to 32 MB from the heap (glibc refuses more)
TRIM_THRESHOLD = 1 << 30  # give the heap's top back to the kernel only past 1 GB free


def keep_heap() -> bool:
    """Set glibc's two thresholds (module docstring); whether they were set: False when
    ``NN_KEEP_HEAP=0``, off glibc, or if glibc refused a value."""
    if os.environ.get(VARIABLE) == "0" or not sys.platform.startswith("linux"):
        return False
    try:
        mallopt = ctypes.CDLL(None).mallopt
    except (OSError, AttributeError):  # no C library with mallopt in this process
        return False
    mallopt.argtypes, mallopt.restype = [ctypes.c_int, ctypes.c_int], ctypes.c_int
    # mallopt returns 1 on success; musl's stub returns 0.
    mmap_set = int(mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) == 1
    return mmap_set and int(mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD)) == 1
