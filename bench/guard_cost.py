"""What the non-finite guard and the gradient-health log cost on a training epoch.

    python bench/guard_cost.py                # the default MLP, 5 epochs each way
    python bench/guard_cost.py cnn --repeats 3
    python bench/guard_cost.py --images 12800 --repeats 31   # short epochs, many pairs

Trains one epoch at a time on all 55000 training images of the shipped config, alternating
``guarded=True`` (the trainer as users run it: every step checks each layer's output, the
loss and the squared norm of every gradient, and records per-layer gradient norms;
update/weight ratios every 25 steps) and ``guarded=False`` (the loss check alone), and
prints the median epoch times and their ratio.
Both runs compute the same updates (tested in tests/test_guard.py), so only the guard's
work differs. The epochs alternate, and the cost is the median over the repeats of the ratio
of each repeat's two epochs: the machine's speed drifts over minutes by more than the guard
costs, and neighbouring epochs share the drift.

Whole epochs on a shared machine differ by a few percent from run to run, as much as the
guard could cost; so the script also times the guard's own work on one real batch (the
squared norms, the health record, an update ratio every 25 steps, the generator snapshot)
against the step it guards (loss, gradient and update), medians of many repeats.

Figures are measured, never asserted: the machine is shared and its timings are noisy.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import os
import platform
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

from nn.config import Config
from nn.data import fetch_mnist
from nn.guard import squared_norms
from nn.health import RATIO_EVERY, EpochHealth, layer_names
from nn.step import all_finite
from nn.train import build_model, build_optimizer, images_to_inputs, train


def epoch_seconds(cfg: Config, x, y, guarded: bool) -> float:  # type: ignore[no-untyped-def]
    result = train(cfg, x, y, guarded=guarded)
    return float(result.history[0]["seconds"])


def median_ms(f: Callable[[], object], repeats: int) -> float:
    f()  # warm up: first-call allocations are not the steady state
    times = []
    for _ in range(repeats):
        began = time.perf_counter()
        f()
        times.append(time.perf_counter() - began)
    return 1e3 * statistics.median(times)


def step_shares(cfg: Config, x, y, repeats: int = 30) -> None:  # type: ignore[no-untyped-def]
    """Time the guard's work and the step it guards on one real batch of the config."""
    model, opt = build_model(cfg), build_optimizer(cfg)
    params, stats = model.init(cfg.train.seed), model.init_state()
    n = cfg.train.batch_size
    batch = images_to_inputs(x[:n], model.input_shape), y[:n].astype(np.int64)
    masks = np.random.default_rng(0)
    outputs: list[np.ndarray] = []
    _, grads, _, _ = model.loss_and_outputs(
        params, batch, state=stats, train=True, rng=masks, observe=outputs.append
    )
    state = opt.init(params)
    new, _ = opt.update(params, grads, state, lr=cfg.optimizer.lr)
    health = EpochHealth(layer_names(params))
    sq = squared_norms(grads)

    def guard_work() -> None:
        masks.bit_generator.state  # noqa: B018  (the snapshot the trainer takes)
        with np.errstate(all="ignore"):
            s = squared_norms(grads)
        math.isfinite(math.sqrt(math.fsum(s.values()))) and all_finite(outputs)
        health.record_step(s)

    def step() -> None:
        model.loss_and_outputs(params, batch, state=stats, train=True, rng=masks)
        opt.update(params, grads, state, lr=cfg.optimizer.lr)

    per_step = median_ms(guard_work, 10 * repeats)
    ratio = median_ms(lambda: health.record_update(params, new), repeats) / RATIO_EVERY
    whole = median_ms(step, repeats)
    print(f"one step on {n} real images: {whole:.2f} ms (loss, gradient, update; median of "
          f"{repeats})")  # fmt: skip
    print(f"guard work per step: {per_step:.3f} ms every step + {ratio:.3f} ms "
          f"(update ratios, every {RATIO_EVERY} steps) = {100 * (per_step + ratio) / whole:.2f}% "
          f"of a step; {len(sq)} gradient arrays, {sum(g.size for g in grads.values()):,} "
          f"numbers")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("config", nargs="?", default="default", help="default | cnn | a file")
    parser.add_argument(
        "--repeats", type=int, default=5, help="epochs each way (default 5; 0: per step only)"
    )
    parser.add_argument(
        "--images",
        type=int,
        metavar="N",
        help="train on the first N images only, without validation: shorter epochs, so more "
        "repeats in the same time and less drift between neighbours (default: all)",
    )
    args = parser.parse_args()
    cfg = Config.load(args.config).override(["train.epochs=1"])
    data = fetch_mnist(log=lambda line: None)
    if args.images:
        cfg = cfg.override(["train.validation=0"])
        n = args.images
        data = dataclasses.replace(data, x_train=data.x_train[:n], y_train=data.y_train[:n])
    threads = os.environ.get("OPENBLAS_NUM_THREADS", "the OpenBLAS default")
    print(f"config {args.config}, {args.repeats} epochs each way, alternating; "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, "
          f"threads: {threads}")  # fmt: skip
    times: dict[bool, list[float]] = {True: [], False: []}
    if not args.repeats:
        step_shares(cfg, data.x_train, data.y_train)
        return
    for r in range(args.repeats):
        for guarded in (r % 2 == 0, r % 2 == 1):  # who goes first alternates too
            times[guarded].append(epoch_seconds(cfg, data.x_train, data.y_train, guarded))
            print(f"  repeat {r + 1}: {'guarded  ' if guarded else 'unguarded'} "
                  f"{times[guarded][-1]:.2f} s", flush=True)  # fmt: skip
    on, off = statistics.median(times[True]), statistics.median(times[False])
    for name, ts in (("guarded", times[True]), ("unguarded", times[False])):
        print(f"{name:<10} epoch median {statistics.median(ts):.2f} s "
              f"(min {min(ts):.2f}, max {max(ts):.2f})")  # fmt: skip
    print(
        f"ratio of the medians: guarded / unguarded = {on / off:.4f} ({100 * (on / off - 1):+.2f}%)"
    )
    # The machine's speed drifts over minutes by more than the guard costs: the ratio within
    # each repeat (two neighbouring epochs, order alternating) cancels the drift.
    paired = [g / u for g, u in zip(times[True], times[False], strict=True)]
    q = statistics.quantiles(paired, n=4) if len(paired) > 1 else paired * 3
    print(
        f"guard cost: median of the paired ratios = {statistics.median(paired):.4f} "
        f"({100 * (statistics.median(paired) - 1):+.2f}%; quartiles {q[0]:.4f}, {q[2]:.4f})"
    )
    step_shares(cfg, data.x_train, data.y_train)


if __name__ == "__main__":
    main()
