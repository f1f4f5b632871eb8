"""Data augmentation: random translations of images.

A digit moved by a pixel or two is the same digit. Showing the network each training image
at a fresh random offset every epoch teaches it that, and it is what takes the default MLP on
MNIST from 98.38% to 98.91% test accuracy (``python bench/mnist_mlp.py noshift default``).
Augmentation touches only the data, never the gradient, so it needs no vjp; its spec page
is spec/random_shift.md.
"""

from __future__ import annotations

import numpy as np

from nn.errors import ShapeError
from nn.op import Array

__all__ = ["random_shift"]


def random_shift(images: Array, rng: np.random.Generator, max_shift: int) -> Array:
    """Each image moved by its own random offset ``(dy, dx)``, ``|dy|, |dx| <= max_shift``.

    Pixels moved in from outside the image are 0 (MNIST's background); pixels moved out are
    lost. The offsets are drawn uniformly from ``-max_shift..max_shift`` on each axis, rows
    first: ``dy = rng.integers(0, 2s + 1, N) - s``, then ``dx`` the same way.

    ``out[n, i, j] = images[n, i - dy[n], j - dx[n]]`` where that index is inside the image.

    >>> x = np.arange(9.0).reshape(1, 3, 3)
    >>> random_shift(x, np.random.default_rng(0), 0)[0]
    array([[0., 1., 2.],
           [3., 4., 5.],
           [6., 7., 8.]])
    """
    if images.ndim != 3:
        raise ShapeError(f"random_shift: images must be (N, H, W), received shape {images.shape}")
    if isinstance(max_shift, bool) or not isinstance(max_shift, int | np.integer) or max_shift < 0:
        raise ValueError(f"random_shift: max_shift must be an integer >= 0, received {max_shift!r}")
    n, h, w = images.shape
    s = int(max_shift)
    if s == 0:
        return images.copy()
    dy = rng.integers(0, 2 * s + 1, n) - s  # (N,)
    dx = rng.integers(0, 2 * s + 1, n) - s  # (N,)
    padded = np.pad(images, ((0, 0), (s, s), (s, s)))  # (N, H + 2s, W + 2s)
    # out[n, i, j] = padded[n, i - dy + s, j - dx + s]: one gather for the whole batch.
    rows = (np.arange(h) + s)[None, :] - dy[:, None]  # (N, H)
    cols = (np.arange(w) + s)[None, :] - dx[:, None]  # (N, W)
    out: Array = padded[np.arange(n)[:, None, None], rows[:, :, None], cols[:, None, :]]
    return out  # (N, H, W)
