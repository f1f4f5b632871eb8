"""What the non-finite guard and the gradient-health log cost on a training epoch.

    python bench/guard_cost.py                # the default MLP, 5 epochs each way
    python bench/guard_cost.py cnn --repeats 3

Trains one epoch at a time on all 55000 training images of the shipped config, alternating
``guarded=True`` (the trainer as users run it: the squared norm of every gradient each step,
the finiteness check, per-layer gradient norms, update/weight ratios every 25 steps) and
``guarded=False`` (the loss check alone), and prints the median epoch times and their ratio.
Both runs compute the same updates (tested in tests/test_guard.py), so only the guard's
work differs. The epochs alternate so that a change of the machine's load hits both.

Figures are measured, never asserted: the machine is shared and its timings are noisy.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from nn.config import Config
from nn.data import fetch_mnist
from nn.train import train


def epoch_seconds(cfg: Config, x, y, guarded: bool) -> float:  # type: ignore[no-untyped-def]
    result = train(cfg, x, y, guarded=guarded)
    return float(result.history[0]["seconds"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default="default", help="default | cnn | a file")
    parser.add_argument("--repeats", type=int, default=5, help="epochs each way (default 5)")
    args = parser.parse_args()
    cfg = Config.load(args.config).override(["train.epochs=1"])
    data = fetch_mnist(log=lambda line: None)
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "the OpenBLAS default")
    print(f"config {args.config}, {args.repeats} epochs each way, alternating; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"threads: {threads}")  # fmt: skip
    times: dict[bool, list[float]] = {True: [], False: []}
    for r in range(args.repeats):
        for guarded in (r % 2 == 0, r % 2 == 1):  # who goes first alternates too
            times[guarded].append(epoch_seconds(cfg, data.x_train, data.y_train, guarded))
            print(f"  repeat {r + 1}: {'guarded  ' if guarded else 'unguarded'} "
                  f"{times[guarded][-1]:.2f} s", flush=True)  # fmt: skip
    on, off = statistics.median(times[True]), statistics.median(times[False])
    for name, ts in (("guarded", times[True]), ("unguarded", times[False])):
        print(f"{name:<10} epoch median {statistics.median(ts):.2f} s "
              f"(min {min(ts):.2f}, max {max(ts):.2f})")  # fmt: skip
    print(f"guard cost: guarded / unguarded = {on / off:.4f} ({100 * (on / off - 1):+.2f}%)")


if __name__ == "__main__":
    main()
