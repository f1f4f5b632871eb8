"""Where a CNN training step goes: each pass of the cnn config, ours beside PyTorch's.

    python bench/cnn_passes.py                 # batch 128, 15 repeats
    python bench/cnn_passes.py --repeats 31    # steadier on a busy machine

The shipped CNN (conv 5x5 32 same, relu, max-pool 2, conv 5x5 64 same, relu, max-pool 2,
flatten, dense 128, relu, dense 10) is cut into its passes: every layer's forward and its
backward, at the shapes one training step sees (batch 128, float32, random data). Each pass
of ours and its PyTorch counterpart (when torch is installed: same threads) run back to back
in every repeat, and the median of each is printed in milliseconds with the ratio. The first
convolution's backward computes no input gradient in either (its input is data), as in
training. Figures are printed, never asserted: the docs' Performance page quotes them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# nn before NumPy, as `python -m nn` imports them: OpenBLAS then reads nn's short spin
# (nn.blas_env) when NumPy loads it, and the timings are those of training.
import nn  # noqa: F401

# isort: split
import numpy as np

from nn.activations import relu
from nn.conv import conv2d
from nn.linear import linear
from nn.pool import max_pool2d

Pass = Callable[[], object]


def our_passes(n: int) -> dict[str, Pass]:
    """The passes of one step of ours, on random float32 data of the step's shapes."""
    rng = np.random.default_rng(0)
    f32 = np.float32

    def normal(*shape: int) -> np.ndarray:
        return rng.standard_normal(shape, dtype=f32)

    x1, w1, b1 = normal(n, 1, 28, 28), normal(32, 1, 5, 5), normal(32)
    w2, b2 = normal(64, 32, 5, 5), normal(64)
    w3, b3, w4, b4 = normal(3136, 128), normal(128), normal(128, 10), normal(10)
    same = {"stride": 1, "padding": (2, 2), "dilation": 1}
    c1, c1_vjp = conv2d(x1, w1, b1, **same)  # (N, 32, 28, 28)
    r1, r1_vjp = relu(c1)
    p1, p1_vjp = max_pool2d(r1, window=2)  # (N, 32, 14, 14)
    c2, c2_vjp = conv2d(p1, w2, b2, **same)  # (N, 64, 14, 14)
    r2, r2_vjp = relu(c2)
    p2, p2_vjp = max_pool2d(r2, window=2)  # (N, 64, 7, 7)
    flat = p2.reshape(n, -1)  # (N, 3136)
    d1, d1_vjp = linear(flat, w3, b3)
    d2, d2_vjp = linear(np.maximum(d1, 0), w4, b4)
    g = {name: normal(*a.shape) for name, a in
         {"c1": c1, "p1": p1, "c2": c2, "p2": p2, "d1": d1, "d2": d2}.items()}  # fmt: skip
    return {
        "conv1 forward": lambda: conv2d(x1, w1, b1, **same),
        "conv1 backward (no dx)": lambda: c1_vjp(g["c1"], input_grad=False),
        "relu1 forward": lambda: relu(c1),
        "relu1 backward": lambda: r1_vjp(g["c1"]),
        "pool1 forward": lambda: max_pool2d(r1, window=2),
        "pool1 backward": lambda: p1_vjp(g["p1"]),
        "conv2 forward": lambda: conv2d(p1, w2, b2, **same),
        "conv2 backward": lambda: c2_vjp(g["c2"]),
        "relu2 forward": lambda: relu(c2),
        "relu2 backward": lambda: r2_vjp(g["c2"]),
        "pool2 forward": lambda: max_pool2d(r2, window=2),
        "pool2 backward": lambda: p2_vjp(g["p2"]),
        "dense layers forward": lambda: (linear(flat, w3, b3), linear(d1, w4, b4)),
        "dense layers backward": lambda: (d1_vjp(g["d1"]), d2_vjp(g["d2"])),
    }  # fmt: skip


def torch_passes(n: int, threads: int) -> dict[str, Pass]:
    """PyTorch's passes of the same step, each with its own autograd graph."""
    import torch
    from torch.nn import functional as F

    torch.set_num_threads(threads)
    gen = torch.Generator().manual_seed(0)

    def normal(*shape: int, grad: bool = False) -> torch.Tensor:
        return torch.randn(*shape, generator=gen).requires_grad_(grad)

    x1, w1, b1 = normal(n, 1, 28, 28), normal(32, 1, 5, 5, grad=True), normal(32, grad=True)
    w2, b2 = normal(64, 32, 5, 5, grad=True), normal(64, grad=True)
    p1 = normal(n, 32, 14, 14, grad=True)
    c1, c2 = normal(n, 32, 28, 28, grad=True), normal(n, 64, 14, 14, grad=True)
    flat, w3, b3 = normal(n, 3136, grad=True), normal(128, 3136, grad=True), normal(128, grad=True)
    w4, b4 = normal(10, 128, grad=True), normal(10, grad=True)

    def backward(make: Callable[[], torch.Tensor]) -> Pass:
        out = make()
        g = torch.randn(out.shape, generator=gen)
        return lambda: make().backward(g)

    def forward(make: Callable[[], torch.Tensor]) -> Pass:
        def run() -> object:
            with torch.no_grad():
                return make()

        return run

    conv1 = lambda: F.conv2d(x1, w1, b1, padding=2)  # noqa: E731
    conv2 = lambda: F.conv2d(p1, w2, b2, padding=2)  # noqa: E731
    pool1 = lambda: F.max_pool2d(c1, 2)  # noqa: E731
    pool2 = lambda: F.max_pool2d(c2, 2)  # noqa: E731
    dense = lambda: F.linear(F.relu(F.linear(flat, w3, b3)), w4, b4)  # noqa: E731
    # A backward entry times forward + backward; main() subtracts the forward's median.
    return {
        "conv1 forward": forward(conv1),
        "conv1 backward (no dx)": backward(conv1),
        "relu1 forward": forward(lambda: F.relu(c1)),
        "relu1 backward": backward(lambda: F.relu(c1)),
        "pool1 forward": forward(pool1),
        "pool1 backward": backward(pool1),
        "conv2 forward": forward(conv2),
        "conv2 backward": backward(conv2),
        "relu2 forward": forward(lambda: F.relu(c2)),
        "relu2 backward": backward(lambda: F.relu(c2)),
        "pool2 forward": forward(pool2),
        "pool2 backward": backward(pool2),
        "dense layers forward": forward(dense),
        "dense layers backward": backward(dense),
    }


def timed(fn: Pass) -> float:
    began = time.perf_counter()
    fn()
    return time.perf_counter() - began


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=15)
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    ours = our_passes(args.batch)
    try:
        theirs: dict[str, Pass] = torch_passes(args.batch, args.threads)
    except ImportError:
        theirs = {}
    times: dict[str, tuple[list[float], list[float]]] = {k: ([], []) for k in ours}
    for fn in [*ours.values(), *theirs.values()]:
        fn()  # warm up: allocations, BLAS threads, PyTorch's kernel choice
    for _ in range(args.repeats):
        for name, fn in ours.items():
            times[name][0].append(timed(fn))
            if theirs:
                times[name][1].append(timed(theirs[name]))
    print(f"batch {args.batch}, float32, medians of {args.repeats} repeats, milliseconds")
    print(f"{'pass':34} {'ours':>8} {'PyTorch':>8} {'ratio':>6}")
    total = [0.0, 0.0]
    for name, (a, b) in times.items():
        mine = statistics.median(a) * 1e3
        total[0] += mine
        line = f"{name:34} {mine:8.2f}"
        if b:
            # PyTorch's backward entries time forward + backward: subtract the forward.
            other = statistics.median(b) * 1e3
            forward_name = name.replace("backward (no dx)", "forward").replace(
                "backward", "forward"
            )
            if "backward" in name:
                other -= statistics.median(times[forward_name][1]) * 1e3
            total[1] += other
            line += f" {other:8.2f} {mine / other:6.2f}"
        print(line)
    summary = f"{'sum':34} {total[0]:8.2f}"
    if theirs:
        summary += f" {total[1]:8.2f} {total[0] / total[1]:6.2f}"
    print(summary)


if __name__ == "__main__":
    main()
