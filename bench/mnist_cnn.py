"""Issue 5's figures, printed: the shipped CNN's accuracy and time, and its epoch against PyTorch.

    python bench/mnist_cnn.py                # train, then epoch (about 20 minutes)
    python bench/mnist_cnn.py train          # or any of: train epoch
    python bench/mnist_cnn.py train --out runs/cnn   # keep the run folder (for `evaluate`)

* ``train``: the shipped CNN config (``--config cnn``), trained as ``python -m nn train``
  does it: test accuracy on the 10000 test images, the wall time of the whole run (load
  MNIST from the cache, train, evaluate, write the run folder), and the median epoch.
* ``epoch``: seconds per training epoch of the same network on all 60000 training images
  (batch 128, float32, random shifts, Adam), ours and, when PyTorch is installed
  (``pip install torch==2.13.0``; never a dependency of ``nn``), PyTorch's on the CPU with
  as many threads as NumPy's BLAS uses, interleaved (ours, theirs, ours, theirs) so both
  see the same machine; medians and the ratio ours / PyTorch.

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
sys.path.insert(0, str(Path(__file__).resolve().parent))

# nn before NumPy, as `python -m nn` imports them: OpenBLAS then reads nn's short spin
# (nn.blas_env) when NumPy loads it, and the timings are those of training.
import nn  # noqa: F401

# isort: split
import numpy as np
from torch_cnn import torch_available, torch_epoch_time

from nn.config import Config
from nn.data import fetch_mnist
from nn.progress import ProgressBar
from nn.run import train_run
from nn.train import train

CONFIG = "cnn"


def train_cnn(out: str | None = None) -> str:
    cfg = Config.load(CONFIG)
    with tempfile.TemporaryDirectory() as tmp:
        began = time.perf_counter()
        run = Path(out) if out else Path(tmp) / "run"
        metrics = train_run(cfg, run, progress=ProgressBar(sys.stdout))
        seconds = time.perf_counter() - began
    epochs = [r["seconds"] for r in metrics["history"]]
    return (
        f"config {CONFIG}: test accuracy {100 * metrics['test']['accuracy']:.2f}% on "
        f"{metrics['test']['images']} images after {len(epochs)} epochs; whole run "
        f"{seconds:.0f} s ({seconds / 60:.1f} min); epoch median {statistics.median(epochs):.1f} s "
        f"(min {min(epochs):.1f}, max {max(epochs):.1f}) on {60000 - cfg.train.validation} images"
    )


def blas_threads() -> int:
    """The threads NumPy's BLAS uses: OpenBLAS's variable if set, else every core."""
    for var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS"):
        if os.environ.get(var, "").isdigit():
            return int(os.environ[var])
    return os.cpu_count() or 1


def epoch_comparison(repeats: int = 2) -> list[str]:
    cfg = Config.load(CONFIG).override(["train.epochs=1", "train.validation=0"])
    data = fetch_mnist(log=lambda line: None)
    layers = [dict(spec) for spec in cfg.model.layers]
    threads = blas_threads()
    ours: list[float] = []
    theirs: list[float] = []
    for _ in range(repeats):
        ours.append(train(cfg, data.x_train, data.y_train).history[0]["seconds"])
        if torch_available():
            theirs += torch_epoch_time(
                layers, data.x_train, data.y_train, batch=cfg.train.batch_size,
                threads=threads, optimizer=cfg.optimizer.name, lr=cfg.optimizer.lr,
            )  # fmt: skip
    rows = [f"ours: epoch of 60000 images, median {statistics.median(ours):.1f} s "
            f"(all: {', '.join(f'{t:.1f}' for t in ours)})"]  # fmt: skip
    if theirs:
        ratio = statistics.median(ours) / statistics.median(theirs)
        listed = ", ".join(f"{t:.1f}" for t in theirs)
        rows.append(f"PyTorch {_torch_version()} CPU, {threads} threads: median "
                    f"{statistics.median(theirs):.1f} s (all: {listed}); "
                    f"ours / PyTorch = {ratio:.2f}")  # fmt: skip
    else:
        rows.append("PyTorch is not installed (pip install torch==2.13.0): no comparison")
    return rows


def _torch_version() -> str:
    import torch

    return str(torch.__version__)


def main(which: list[str]) -> None:
    out = which[which.index("--out") + 1] if "--out" in which else None
    which = [w for w in which if w not in ("--out", out)] or ["train", "epoch"]
    print(f"# {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
          f"numpy {np.__version__}, python {platform.python_version()}")  # fmt: skip
    rows = []
    for name in which:
        rows += [train_cnn(out)] if name == "train" else epoch_comparison()
    print("\n".join(["", "## results", *rows]))


if __name__ == "__main__":
    main(sys.argv[1:])
