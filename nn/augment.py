"""Data augmentation: random translations, slants and zooms of images.

A digit moved by a pixel or two is the same digit. Showing the network each training image
at a fresh random offset every epoch teaches it that, and it is what takes the default MLP on
MNIST from 98.38% to 98.91% test accuracy (``python bench/mnist_mlp.py noshift default``).
A digit written with a slant, or a little larger or smaller, is also the same digit:
:func:`random_affine` shows each image sheared and zoomed about its centre. Augmentation
touches only the data, never the gradient, so it needs no vjp; the spec pages are
spec/random_shift.md and spec/random_affine.md.
"""

from __future__ import annotations

import numpy as np

from nn.errors import DTypeError, ShapeError
from nn.op import Array

__all__ = ["random_affine", "random_shift"]

MAX_SLANT, MAX_ZOOM = 1.0, 0.5
"""The largest ``slant`` and ``zoom`` :func:`random_affine` takes (``[train]`` checks the same):
beyond them a digit is slanted past 45 degrees or zoomed to half or 1.5 times its size."""


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


def random_affine(images: Array, rng: np.random.Generator, slant: float, zoom: float) -> Array:
    """Each image sheared by its own slant and zoomed by its own factor about its centre.

    Image ``n`` gets a slant ``s[n] = rng.uniform(-slant, slant, N)`` and then a zoom
    ``a[n] = rng.uniform(1 - zoom, 1 + zoom, N)``. With the centre ``c = ((H-1)/2, (W-1)/2)``,
    the input point ``(y, x)`` goes to ``(cy + a (y - cy), cx + a (x - cx + s (y - cy)))``:
    rows below the centre move right for ``s > 0``, as in handwriting slanted forward. Each
    output pixel ``(i, j)`` is read by bilinear interpolation at the point that goes there,
    ``y = cy + (i - cy) / a``, ``x = cx + (j - cx) / a - s (y - cy)``, with the input taken as
    0 outside the image (``scipy.ndimage.affine_transform(..., order=1,
    mode="grid-constant")``). ``slant = zoom = 0`` returns a copy. Spec: spec/random_affine.md.

    >>> x = np.arange(6.0, dtype=np.float32).reshape(1, 2, 3)
    >>> random_affine(x, np.random.default_rng(0), 0.0, 0.0)[0]
    array([[0., 1., 2.],
           [3., 4., 5.]], dtype=float32)
    """
    if images.ndim != 3:
        raise ShapeError(f"random_affine: images must be (N, H, W), received shape {images.shape}")
    if images.dtype not in (np.float32, np.float64):
        raise DTypeError(
            f"random_affine: images must be float32 or float64 (it interpolates), "
            f"received {images.dtype}"
        )
    for name, value, top in (("slant", slant, MAX_SLANT), ("zoom", zoom, MAX_ZOOM)):
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= top:
            raise ValueError(f"random_affine: {name} must be a number in [0, {top}], "
                             f"received {value!r}")  # fmt: skip
    n, h, w = images.shape
    if slant == 0 and zoom == 0:
        return images.copy()
    s = rng.uniform(-slant, slant, n)[:, None, None]  # (N, 1, 1)
    a = rng.uniform(1 - zoom, 1 + zoom, n)[:, None, None]  # (N, 1, 1)
    cy, cx = (h - 1) / 2, (w - 1) / 2
    dy = (np.arange(h)[None, :, None] - cy) / a  # (N, H, 1): y - cy of the point read
    x = cx + (np.arange(w)[None, None, :] - cx) / a - s * dy  # (N, H, W)
    y = np.broadcast_to(cy + dy, x.shape)  # (N, H, W)
    # Bilinear reads of a zero-padded copy: the four neighbours of (y, x), each weighted by
    # its closeness; a neighbour outside the image reads a padding zero.
    padded = np.pad(images, ((0, 0), (1, 1), (1, 1)))  # (N, H + 2, W + 2)
    y0 = np.clip(np.floor(y), -1, h)  # (N, H, W)
    x0 = np.clip(np.floor(x), -1, w)
    fy = (np.clip(y, -1, h) - y0).astype(images.dtype)  # weights in [0, 1]
    fx = (np.clip(x, -1, w) - x0).astype(images.dtype)
    rows, cols = y0.astype(np.intp) + 1, x0.astype(np.intp) + 1  # into padded
    rows1, cols1 = np.minimum(rows + 1, h + 1), np.minimum(cols + 1, w + 1)
    batch = np.arange(n)[:, None, None]  # (N, 1, 1)
    top = padded[batch, rows, cols] * (1 - fx) + padded[batch, rows, cols1] * fx
    bottom = padded[batch, rows1, cols] * (1 - fx) + padded[batch, rows1, cols1] * fx
    out: Array = top * (1 - fy) + bottom * fy
    return out  # (N, H, W)
