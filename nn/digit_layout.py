"""Geometry of digit strings (spec/digit_strings.md): ink boxes, gaps, bilinear scaling.

The pixel-level helpers of :mod:`nn.digit_strings`, in NumPy only: where each digit of a string
goes (:func:`layout`), how a digit is scaled (:func:`resample`) and cropped to its ink
(:func:`crop_to_ink`).
"""

from __future__ import annotations

import functools
import math
from typing import Any

import numpy as np

__all__ = ["SIDE", "crop_to_ink", "layout", "resample", "scaled_side"]

Array = np.ndarray[Any, Any]
SIDE = 28  # MNIST's digits are SIDE x SIDE


def scaled_side(scale: float) -> int:
    """Rows and columns of a digit scaled by ``scale``: ``floor(28 scale + 1/2)``."""
    return math.floor(SIDE * scale + 0.5)


def layout(widths: list[int], gaps: list[int], width: int) -> list[int]:
    """Left ink columns, the first at 0: each box starts ``widths[j] + gaps[j]`` after the last.

    A gap is raised to ``1 - widths[j]`` if needed (every box starts right of the previous
    one's start); then, while the string is wider than ``width``, the largest gap still above
    that floor (the first such) loses a pixel.

    >>> layout([10, 10, 10], [5, 1], 40)   # fits: the gaps as drawn
    [0, 15, 26]
    >>> layout([10, 10, 10], [5, 1], 34)   # 2 columns too wide: the gap of 5 gives them
    [0, 13, 24]
    >>> layout([2, 9], [-4], 40)           # raised to the floor 1 - 2: starts 1 column later
    [0, 1]
    """
    floors = [1 - wj for wj in widths[:-1]]
    g = [max(gj, fj) for gj, fj in zip(gaps, floors, strict=True)]

    def lefts_and_extent() -> tuple[list[int], int]:
        lefts, left, extent = [], 0, 0
        for j, wj in enumerate(widths):
            lefts.append(left)
            extent = max(extent, left + wj)
            left += wj + (g[j] if j < len(g) else 0)
        return lefts, extent

    lefts, extent = lefts_and_extent()
    while extent > width:
        above = [j for j in range(len(g)) if g[j] > floors[j]]
        if not above:  # cannot happen when width >= len(widths) - 1 + max(widths)
            break
        g[max(above, key=lambda j: (g[j], -j))] -= 1  # the largest; the first of equal ones
        lefts, extent = lefts_and_extent()
    return lefts


@functools.lru_cache(maxsize=64)
def _weights(side: int) -> Array:
    """(side, 28) bilinear weights, half-pixel centres: row p samples (p + 1/2) 28/side - 1/2."""
    u = np.clip((np.arange(side) + 0.5) * SIDE / side - 0.5, 0, SIDE - 1)
    i0 = np.floor(u).astype(np.int64)
    frac = u - i0
    weights = np.zeros((side, SIDE))
    np.add.at(weights, (np.arange(side), i0), 1 - frac)
    np.add.at(weights, (np.arange(side), np.minimum(i0 + 1, SIDE - 1)), frac)
    weights.setflags(write=False)
    return weights


def resample(digit: Array, side: int) -> Array:
    """A 28 x 28 uint8 digit resampled bilinearly to ``side x side``, rounded half up, uint8."""
    weights = _weights(side)
    values = weights @ digit.astype(np.float64) @ weights.T  # convex combinations of 0..255
    return np.clip(np.floor(values + 0.5), 0, 255).astype(np.uint8)


def crop_to_ink(digit: Array) -> Array:
    """``digit`` from its first to its last column holding a pixel > 0 (no columns if none)."""
    columns = np.flatnonzero(digit.any(axis=0))
    return digit[:, columns[0] : columns[-1] + 1] if len(columns) else digit[:, :0]
