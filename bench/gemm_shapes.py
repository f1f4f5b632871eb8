"""The MLPs' matrix products alone: NumPy's BLAS against PyTorch's, at the shapes of a step.

    python bench/gemm_shapes.py                 # 2 threads (this machine's cores), 7 repeats
    OPENBLAS_NUM_THREADS=1 python bench/gemm_shapes.py --threads 1

Every float32 matrix product of one training step of the two MLPs of bench/suite.py (batch
128): per layer the forward ``x @ W``, the weight gradient ``x^T @ g`` and, except for the
first layer (its input is data), the input gradient ``g @ W^T``. Each is timed in NumPy (its
bundled OpenBLAS) and in PyTorch (its own BLAS, on the same threads), back to back in every
repeat; the medians are printed per product and summed per step and per epoch of 469
steps. This is the floor under an MLP epoch that no bookkeeping can go below: if NumPy's
products alone take longer than PyTorch's, a NumPy MLP cannot match PyTorch's epoch unless
everything else it does is cheaper than PyTorch's. Figures are printed, never asserted.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# nn before NumPy: OpenBLAS reads nn's short spin when NumPy loads it (nn.blas_env). With
# OpenBLAS's default spin its idle threads hold the cores through PyTorch's next products.
import nn  # noqa: F401

# isort: split
import numpy as np

BATCH, STEPS = 128, 469  # an epoch of 60000 images
MLPS = {"784-256-10": [784, 256, 10], "784-800-800-10": [784, 800, 800, 10]}


def products(sizes: list[int], lib: Any) -> list[tuple[str, Callable[[], object]]]:
    """(name, product) for every matrix product of a step, on random float32 operands."""
    rng = np.random.default_rng(0)
    out = []
    for layer, (d_in, d_out) in enumerate(itertools.pairwise(sizes)):
        x, w, g = (rng.standard_normal(s, dtype=np.float32)
                   for s in ((BATCH, d_in), (d_in, d_out), (BATCH, d_out)))  # fmt: skip
        if lib is not None:
            x, w, g = (lib.from_numpy(a) for a in (x, w, g))
        out.append((f"{d_in}x{d_out} x@W", lambda x=x, w=w: x @ w))
        out.append((f"{d_in}x{d_out} x^T@g", lambda x=x, g=g: x.T @ g))
        if layer > 0:
            out.append((f"{d_in}x{d_out} g@W^T", lambda g=g, w=w: g @ w.T))
    return out


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2, help="PyTorch's threads")
    args = parser.parse_args(argv)
    try:
        import torch
    except ImportError:
        torch = None
    if torch is not None:
        torch.set_num_threads(args.threads)
    versions = f"numpy {np.__version__}" + (f", torch {torch.__version__}" if torch else "")
    print(f"{versions}, batch {BATCH}, medians of {args.repeats} repeats of 200 calls, µs")
    for name, sizes in MLPS.items():
        ours = products(sizes, None)
        theirs = products(sizes, torch) if torch is not None else []
        fns = [fn for _, fn in ours] + [fn for _, fn in theirs]
        times: list[list[float]] = [[] for _ in fns]
        for fn in fns:
            fn()  # warm up
        for _ in range(args.repeats):
            for fn, ts in zip(fns, times, strict=True):
                began = time.perf_counter()
                for _ in range(200):
                    fn()
                ts.append((time.perf_counter() - began) / 200)
        med = [statistics.median(ts) * 1e6 for ts in times]
        print(f"\n{name}: {'product':18s} {'NumPy':>8s} {'PyTorch':>8s} {'ratio':>6s}")
        half = len(ours)
        for i, (label, _) in enumerate(ours):
            torch_us = med[half + i] if theirs else float("nan")
            print(f"{'':{len(name) + 1}s} {label:18s} {med[i]:8.0f} {torch_us:8.0f} "
                  f"{med[i] / torch_us:6.2f}")  # fmt: skip
        step = sum(med[:half])
        torch_step = sum(med[half:]) if theirs else float("nan")
        print(f"{'':{len(name) + 1}s} {'a step':18s} {step:8.0f} {torch_step:8.0f} "
              f"{step / torch_step:6.2f}   an epoch: {step * STEPS / 1e6:.2f} s against "
              f"{torch_step * STEPS / 1e6:.2f} s")  # fmt: skip


if __name__ == "__main__":
    main()
