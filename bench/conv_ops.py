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

``--paths`` times instead forward + backward of each layer by every algorithm that applies
to it (per-image or batch-wide columns, shifted rows, DFT: tests/test_conv2d.py forces each
the same way, by the rules' thresholds), with the DFT path's multiply-adds as a fraction of
the direct sum's (``nn.conv_dft.use_dft`` takes it up to ``DFT_MAX_RATIO``), on the CNN's
layers and the 7-digit reader's deeper ones (batch 64, as that config trains).

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
from functools import partial
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# nn before NumPy, as `python -m nn` imports them: OpenBLAS then reads nn's short spin
# (nn.blas_env) when NumPy loads it, and the timings are those of training.
import nn  # noqa: F401

# isort: split
import numpy as np

from nn.conv import conv2d

# (name, x shape, w shape): MNIST CNN layers, padded to keep H and W ("same").
LAYERS = [
    ("conv1 3x3", (128, 1, 28, 28), (32, 1, 3, 3)),
    ("conv1 5x5", (128, 1, 28, 28), (32, 1, 5, 5)),
    ("conv2 3x3", (128, 32, 14, 14), (64, 32, 3, 3)),
    ("conv2 5x5", (128, 32, 14, 14), (64, 32, 5, 5)),
]

# The 7-digit reader's layers whose DFT work is near the direct sum's (padding as in its config).
READER_LAYERS = [
    ("d7 3x3 64", (64, 64, 8, 36), (128, 64, 3, 3), (1, 1)),
    ("d7 4x3 128", (64, 128, 4, 36), (256, 128, 4, 3), (0, 1)),
    ("d7 1x3 256", (64, 256, 1, 36), (256, 256, 1, 3), (0, 1)),
]
# Thresholds (PER_IMAGE_RATIO, ROWS_MIN_CS, DFT_MAX_RATIO) that force each path where it applies.
PATHS = {"per-image": (0, 10**9, -1.0), "batch-wide": (10**9, 10**9, -1.0),
         "rows": (10**9, 0, -1.0), "dft": (10**9, 10**9, 1e9)}  # fmt: skip


def _by_path(knobs: Any, values: Any, x: Any, w: Any, b: Any, pad: Any, g: Any) -> object:
    """Forward + backward with the rules' thresholds set to ``values``."""
    for (module, attr), value in zip(knobs, values, strict=True):
        setattr(module, attr, value)
    _, vjp = conv2d(x, w, b, padding=pad)
    return vjp(g)


def bench_paths(repeats: int, clock: Callable[[], float]) -> None:
    """Forward + backward of every layer by each path that applies, in ms; '-' where a path
    does not apply (it would fall back to another)."""
    import nn.conv
    import nn.conv_dft
    import nn.conv_rows

    knobs = ((nn.conv, "PER_IMAGE_RATIO"), (nn.conv_rows, "ROWS_MIN_CS"),
             (nn.conv_dft, "DFT_MAX_RATIO"))  # fmt: skip
    saved = [getattr(module, attr) for module, attr in knobs]
    print(f"{'layer':11s} {'dft/direct':>10s} " + " ".join(f"{p:>10s}" for p in PATHS))
    same = [(name, xs, ws, ((ws[2] - 1) // 2, (ws[3] - 1) // 2)) for name, xs, ws in LAYERS]
    rng = np.random.default_rng(0)
    for name, x_shape, w_shape, pad in same + READER_LAYERS:
        n, c, h, wd = x_shape
        k, _, r, s = w_shape
        p, q = h + 2 * pad[0] - r + 1, wd + 2 * pad[1] - s + 1
        x = rng.standard_normal(x_shape, dtype=np.float32)
        w = rng.standard_normal(w_shape, dtype=np.float32)
        b = rng.standard_normal(k, dtype=np.float32)
        g = rng.standard_normal((n, k, p, q), dtype=np.float32)
        # All stride 1 and real: only the rows path has a condition left, P >= R (use_rows).
        applies = {"per-image": True, "batch-wide": True, "rows": p >= r, "dft": True}
        fns = [partial(_by_path, knobs, PATHS[path], x, w, b, pad, g) for path in PATHS]
        try:
            times = medians(fns, repeats, clock)
        finally:
            for (module, attr), value in zip(knobs, saved, strict=True):
                setattr(module, attr, value)
        ratio = nn.conv_dft.dft_madds(n, c, k, h, wd, r, s, pad) / (n * k * p * q * c * r * s)
        cells = [f"{t * 1e3:10.2f}" if applies[path] else f"{'-':>10s}"
                 for path, t in zip(PATHS, times, strict=True)]  # fmt: skip
        print(f"{name:11s} {ratio:10.2f} " + " ".join(cells), flush=True)


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
    parser.add_argument(
        "--paths", action="store_true", help="forward + backward by each algorithm instead"
    )
    args = parser.parse_args(argv)
    clock = time.process_time if args.cpu else time.perf_counter
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "default")
    print(f"numpy {np.__version__}, {os.cpu_count()} CPUs, OPENBLAS_NUM_THREADS={threads}, "
          f"load average {load:.2f}, median of {args.repeats} repeats, "
          f"{'CPU' if args.cpu else 'wall'} time")  # fmt: skip
    if args.paths:
        bench_paths(args.repeats, clock)
        return
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
