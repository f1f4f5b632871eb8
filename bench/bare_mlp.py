"""The floor for an MLP epoch in NumPy: the 784-256-10 network's arithmetic, nothing else.

    python bench/bare_mlp.py                          # 5 epochs, median printed
    OPENBLAS_NUM_THREADS=1 python bench/bare_mlp.py   # the same on one thread

One epoch of 60000 random float32 images in batches of 128: the two matrix products of each
layer forward and backward, ReLU, softmax cross-entropy and SGD with momentum, in place,
with no checks, no guard, no shuffling copy beyond the batch gather. What `nn`'s own epoch
of the same network takes beyond this is the price of its checks and bookkeeping
(docs/performance.md). Figures are printed, never asserted.
"""

from __future__ import annotations

import statistics
import time

import numpy as np


def epoch(rng: np.random.Generator, x: np.ndarray, y: np.ndarray, params: list[np.ndarray],
          velocity: list[np.ndarray], lr: float = 0.01, beta: float = 0.9) -> None:  # fmt: skip
    w1, b1, w2, b2 = params
    order = rng.permutation(len(x))
    for start in range(0, len(x), 128):
        idx = order[start : start + 128]
        xb, yb = x[idx], y[idx]  # (B, 784), (B,)
        h = xb @ w1  # (B, 256)
        h += b1
        a = np.maximum(h, 0)
        logits = a @ w2  # (B, 10)
        logits += b2
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        p[np.arange(len(yb)), yb] -= 1  # softmax - onehot
        g = p / len(yb)  # (B, 10)
        da = g @ w2.T  # (B, 256)
        da *= h > 0
        grads = [xb.T @ da, da.sum(axis=0), a.T @ g, g.sum(axis=0)]
        for w, v, dw in zip(params, velocity, grads, strict=True):
            v *= beta
            v += dw
            w -= lr * v


def main() -> None:
    rng = np.random.default_rng(0)
    x = rng.random((60000, 784), dtype=np.float32)
    y = rng.integers(0, 10, 60000)
    params = [rng.standard_normal((784, 256), dtype=np.float32) * np.float32(0.05),
              np.zeros(256, np.float32),
              rng.standard_normal((256, 10), dtype=np.float32) * np.float32(0.05),
              np.zeros(10, np.float32)]  # fmt: skip
    velocity = [np.zeros_like(w) for w in params]
    times = []
    for _ in range(5):
        began = time.perf_counter()
        epoch(rng, x, y, params, velocity)
        times.append(time.perf_counter() - began)
    print(f"bare NumPy MLP 784-256-10 epoch: median {statistics.median(times):.3f} s "
          f"(min {min(times):.3f}, max {max(times):.3f}) over 5 epochs")  # fmt: skip


if __name__ == "__main__":
    main()
