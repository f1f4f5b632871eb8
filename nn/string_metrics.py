r"""Metrics of read strings: whole-string accuracy and the character error rate.

A true string is a row of a labels array (N, L) up to its first -1 (the padding after its
end); a read string is any sequence of integers. For N strings $t_n$ read as $r_n$:

.. math::

    \mathrm{whole\ accuracy} = \frac{1}{N}\sum_n [r_n = t_n], \qquad
    \mathrm{CER} = \frac{\sum_n d(t_n, r_n)}{\sum_n |t_n|}

where $d$ is the edit (Levenshtein) distance: the fewest insertions, deletions and
substitutions of one symbol that turn one string into the other. Whole accuracy gives no
partial credit (a 7-digit number with one digit wrong is wrong); the CER says how far off the
misreadings are, so a model that drops one digit in a hundred strings has CER about 1/700.

>>> truth = np.array([[1, 2, 3], [4, 5, -1]])
>>> read = [np.array([1, 2, 3]), np.array([4])]
>>> strings_match(truth, read).tolist(), character_error_rate(truth, read)
([True, False], 0.2)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nn.errors import DataError, ShapeError

__all__ = ["character_error_rate", "edit_distance", "label_strings", "strings_match"]


def label_strings(labels: Any) -> list[np.ndarray]:
    """The strings of a labels array (N, L): each row up to its padding (-1 entries at the end)."""
    y = np.asarray(labels)
    if y.ndim != 2 or y.dtype.kind not in "iu":
        raise ShapeError(
            f"labels must be an integer array (N, L) of strings padded with -1, received "
            f"{y.dtype} {y.shape}"
        )
    valid = y >= 0  # (N, L)
    # a symbol after padding (valid rising from False to True), or a value below -1
    bad = np.any(y < -1, axis=1) | np.any(np.diff(valid.astype(np.int8), axis=1) > 0, axis=1)
    if bad.any():
        raise DataError(
            f"labels: each row must be its symbols (>= 0), then -1 padding and nothing else; "
            f"row {int(bad.argmax())} is {y[bad.argmax()].tolist()}"
        )
    return [row[:n] for row, n in zip(y, valid.sum(axis=1), strict=True)]


def _check(truth: list[np.ndarray], read: Sequence[Any]) -> list[np.ndarray]:
    if len(read) != len(truth):
        raise ShapeError(f"read strings: expected {len(truth)} (one per label row), received "
                         f"{len(read)}")  # fmt: skip
    return [np.asarray(r).ravel() for r in read]


def strings_match(labels: Any, read: Sequence[Any]) -> np.ndarray:
    """(N,) bool: whether each read string equals its true string exactly."""
    truth = label_strings(labels)
    got = _check(truth, read)
    return np.array([np.array_equal(t, r) for t, r in zip(truth, got, strict=True)], dtype=bool)


def edit_distance(a: Any, b: Any) -> int:
    """Levenshtein distance between two sequences, by the classic dynamic programme.

    Row ``i`` of the table holds the distances from ``a[:i]`` to every prefix of ``b``; each
    row is computed from the previous one, so the cost is O(len(a) len(b)) time and
    O(len(b)) memory.

    >>> edit_distance([1, 2, 3, 4], [1, 3, 4, 5])
    2
    """
    a, b = list(np.asarray(a).ravel()), list(np.asarray(b).ravel())
    row = list(range(len(b) + 1))  # distances from the empty prefix of a
    for i, x in enumerate(a, start=1):
        prev, row[0] = row[0], i
        for j, y in enumerate(b, start=1):
            # prev is the diagonal entry: the table's [i-1][j-1], before row[j] is replaced
            prev, row[j] = row[j], min(row[j] + 1, row[j - 1] + 1, prev + (x != y))
    return int(row[-1])


def character_error_rate(labels: Any, read: Sequence[Any]) -> float:
    """Total edit distance over the total number of true characters (0 for a perfect read)."""
    truth = label_strings(labels)
    got = _check(truth, read)
    chars = sum(len(t) for t in truth)
    if chars == 0:
        raise DataError("character_error_rate: the true strings have no characters")
    return sum(edit_distance(t, r) for t, r in zip(truth, got, strict=True)) / chars
