"""conv2d's speed against plain float32 GEMMs of the same work, measured in the same run.

    python bench/conv_ops.py                  # the four CNN layers below, 9 repeats
    python bench/conv_ops.py --repeats 15     # more repeats on a busy machine
    OPENBLAS_NUM_THREADS=1 python bench/conv_ops.py --cpu   # one thread, CPU time:
                                                            # steadiest on a busy machine

For each layer (batch 128, float32, padding "same", stride 1) every repeat times, back to
back: the forward, forward + backward (all three cotangents), the three GEMMs that the
op's im2col algorithm performs, at their exact shapes (``w @ cols``, ``g @ cols^T``,
``w^T @ g``), and a square GEMM with the forward's FLOPs (the machine's best GEMM speed).
Medians are printed, and ratios:

* ``fwd/sq``: forward against one square GEMM of its FLOPs;
* ``fb/3sq``: forward + backward against three such GEMMs (the backward has twice the
  forward's FLOPs), the aim being about 2;
* ``fb/3gemm``: forward + backward against its own three GEMMs at their shapes, so the
  share of the gather, col2im and layout copies.

The machine is shared: absolute times swing with other work, ratios much less (all the
timings of one repeat run back to back, and the median is taken per column). Figures are
printed, never asserted. The peak of NumPy's allocations (tracemalloc) in one forward +
backward is shown against the size of the float32 columns.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nn.conv import conv2d

# (name, x shape, w shape): MNIST CNN layers, padded to keep H and W ("same").
LAYERS = [
    ("conv1 3x3", (128, 1, 28, 28), (32, 1, 3, 3)),
    ("conv1 5x5", (128, 1, 28, 28), (32, 1, 5, 5)),
    ("conv2 3x3", (128, 32, 14, 14), (64, 32, 3, 3)),
    ("conv2 5x5", (128, 32, 14, 14), (64, 32, 5, 5)),
]


def medians(
    fns: list[Callable[[], object]], repeats: int, clock: Callable[[], float] = time.perf_counter
) -> list[float]:
    """Median time of each function (wall or CPU clock), timed back to back in every repeat."""
    for fn in fns:  # warm up: page in, let BLAS start its threads
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, ts in zip(fns, times, strict=True):
            began = clock()
            fn()
            ts.append(clock() - began)
    return [statistics.median(ts) for ts in times]


def bench_layer(
    name: str,
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    repeats: int,
    clock: Callable[[], float],
) -> None:
    rng = np.random.default_rng(0)
    n, c, h, wd = x_shape
    k, _, r, s = w_shape
    x = rng.standard_normal(x_shape, dtype=np.float32)
    w = rng.standard_normal(w_shape, dtype=np.float32)
    b = rng.standard_normal(k, dtype=np.float32)
    pad = ((r - 1) // 2, (s - 1) // 2)
    g = rng.standard_normal((n, k, h, wd), dtype=np.float32)
    crs, npq = c * r * s, n * h * wd
    flops = 2 * k * crs * npq
    # The op's three GEMMs at their shapes, on operands laid out as the op lays them out.
    wmat = rng.standard_normal((k, crs), dtype=np.float32)
    cols = rng.standard_normal((crs, npq), dtype=np.float32)
    gt = rng.standard_normal((k, npq), dtype=np.float32)
    side = round((flops / 2) ** (1 / 3))
    square = rng.standard_normal((side, side), dtype=np.float32)

    def forward() -> object:
        return conv2d(x, w, b, padding=pad)

    def forward_backward() -> object:
        _, vjp = conv2d(x, w, b, padding=pad)
        return vjp(g)

    fwd, fb, g1, g2, g3, sq = medians(
        [
            forward,
            forward_backward,
            lambda: wmat @ cols,  # forward: (K, CRS) @ (CRS, NPQ)
            lambda: gt @ cols.T,  # dw: (K, NPQ) @ (NPQ, CRS)
            lambda: wmat.T @ gt,  # column cotangents: (CRS, K) @ (K, NPQ)
            lambda: square @ square,
        ],
        repeats,
        clock,
    )
    tracemalloc.start()
    forward_backward()
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    ms = 1e3
    print(
        f"{name:10s} {fwd * ms:7.2f} {fb * ms:8.2f} {g1 * ms:8.2f} {(g1 + g2 + g3) * ms:8.2f} "
        f"{sq * ms:7.2f} {flops / sq / 1e9:6.0f} | {fwd / sq:6.2f} {fb / (3 * sq):7.2f} "
        f"{fb / (g1 + g2 + g3):8.2f} | {peak / 2**20:6.1f} {crs * npq * 4 / 2**20:6.1f}",
        flush=True,
    )


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=9)
    parser.add_argument(
        "--cpu",
        action="store_true",
        help="time by the process's CPU clock (with OPENBLAS_NUM_THREADS=1: time another "
        "process takes from this one does not count)",
    )
    args = parser.parse_args(argv)
    clock = time.process_time if args.cpu else time.perf_counter
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs, OPENBLAS_NUM_THREADS={threads}, "
          f"load average {load:.2f}, median of {args.repeats} repeats, "
          f"{'CPU' if args.cpu else 'wall'} time")  # fmt: skip
    print(
        f"{'layer':10s} {'fwd ms':>7s} {'fwd+bwd':>8s} {'gemm':>8s} {'3 gemms':>8s} "
        f"{'sq ms':>7s} {'GF/s':>6s} | {'fwd/sq':>6s} {'fb/3sq':>7s} {'fb/3gemm':>8s} | "
        f"{'peak MB':>6s} {'cols MB':>6s}"
    )
    for name, x_shape, w_shape in LAYERS:
        bench_layer(name, x_shape, w_shape, args.repeats, clock)
    if hasattr(os, "getloadavg"):
        print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
