"""Issue 3's figures, printed: accuracy and time of the shipped MLP configs on real MNIST.

    python bench/mnist_mlp.py                 # all three measurements (about 5 minutes)
    python bench/mnist_mlp.py default         # or any of: default classic epoch noshift

* ``default``: the default config (784-800-800-10 ReLU), trained as ``python -m nn train``
  does: test accuracy on the 10000 test images and the wall time of the whole run
  (loading MNIST from the cache, training, evaluating, writing the run folder).
* ``classic``: the 784-30-10 sigmoid network with the quadratic cost (``--config classic``).
* ``noshift``: the default config without the random shifts (``train.shift=0``), to show
  what the augmentation is worth.
* ``epoch``: seconds per epoch of a 784-256-10 ReLU MLP, SGD with momentum, batch 128, on
  all 60000 training images, float32 (the median of 5 epochs, as DESIGN.md's reference).

Figures are measured, never asserted: the machine is shared and its timings are noisy.
"""

from __future__ import annotations

import os
import platform
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

# nn before NumPy, as `python -m nn` imports them: OpenBLAS then reads nn's short spin
# (nn.blas_env) when NumPy loads it, and the timings are those of training.
import nn  # noqa: F401

# isort: split
import numpy as np

from nn.config import Config
from nn.data import fetch_mnist
from nn.progress import ProgressBar
from nn.run import train_run
from nn.train import train


def run_config(name: str, overrides: list[str] | None = None) -> dict[str, float]:
    cfg = Config.load(name).override(overrides or [])
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        metrics = train_run(cfg, Path(tmp) / "run", progress=ProgressBar(sys.stdout))
        seconds = time.perf_counter() - began
    return {"accuracy": metrics["test"]["accuracy"], "seconds": seconds,
            "epochs": len(metrics["history"])}  # fmt: skip


def epoch_time(epochs: int = 5) -> dict[str, float]:
    cfg = Config().override([
        "model.hidden=[256]", "optimizer.name=momentum", "optimizer.lr=0.05",
        "optimizer.weight_decay=0.0", "schedule.name=constant", f"train.epochs={epochs}",
        "train.validation=0", "train.shift=0", "train.batch_size=128",
    ])  # fmt: skip
    data = fetch_mnist(log=lambda line: None)
    result = train(cfg, data.x_train, data.y_train)
    times = [r["seconds"] for r in result.history]
    return {"median": statistics.median(times), "min": min(times), "max": max(times)}


def main(which: list[str]) -> None:
    which = which or ["default", "classic", "epoch"]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"numpy {np.__version__}, python {platform.python_version()}")  # fmt: skip
    rows = []
    for name in which:
        if name == "epoch":
            t = epoch_time()
            rows.append(
                f"784-256-10 ReLU, momentum, batch 128, 60000 images: epoch median "
                f"{t['median']:.2f} s (min {t['min']:.2f}, max {t['max']:.2f}, 5 epochs)"
            )
        elif name == "noshift":
            r = run_config("default", ["train.shift=0"])
            rows.append(f"config default without shifts: test accuracy {100 * r['accuracy']:.2f}% "
                        f"after {r['epochs']} epochs, whole run {r['seconds']:.1f} s")  # fmt: skip
        else:
            r = run_config(name)
            rows.append(f"config {name}: test accuracy {100 * r['accuracy']:.2f}% after "
                        f"{r['epochs']} epochs, whole run {r['seconds']:.1f} s")  # fmt: skip
    print("\n".join(["", "## results", *rows]))


if __name__ == "__main__":
    main(sys.argv[1:])
