r"""Classification metrics from integer labels: accuracy, confusion matrix, per-class accuracy.

For true labels $t$ and predictions $\hat y$ of $N$ samples over $K$ classes:

.. math::

    \mathrm{accuracy} = \frac{1}{N}\sum_n [t_n = \hat y_n], \qquad
    C_{ij} = \#\{n : t_n = i,\ \hat y_n = j\}, \qquad
    \mathrm{recall}_i = \frac{C_{ii}}{\sum_j C_{ij}}

so the confusion matrix $C$ has true classes in rows and predicted classes in columns,
$\sum_{ij} C_{ij} = N$ and $\mathrm{trace}(C) / N$ is the accuracy. Labels are 1-D integer arrays
of equal shape (N,); a wrong shape is a :class:`~nn.errors.ShapeError`, a non-integer dtype a
:class:`~nn.errors.DTypeError`, a label outside ``0..K-1`` a :class:`~nn.errors.DataError`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nn.errors import DataError, DTypeError, ShapeError

__all__ = ["accuracy", "confusion_matrix", "per_class_accuracy"]


def _labels(name: str, y_true: Any, y_pred: Any) -> tuple[np.ndarray, np.ndarray]:
    """Both label arrays as int64 (N,), after checking shape and dtype; ``name`` is the caller."""
    t, p = np.asarray(y_true), np.asarray(y_pred)
    if t.ndim != 1 or t.shape != p.shape:
        raise ShapeError(
            f"{name}: y_true and y_pred must both have shape (N,), received {t.shape} and {p.shape}"
        )
    for arg, a in (("y_true", t), ("y_pred", p)):
        if a.dtype.kind not in "iu":
            raise DTypeError(f"{name}: {arg} must hold integer labels, received dtype {a.dtype}")
    # int64 before any arithmetic: uint8 labels (as MNIST stores them) would wrap in t * K + p.
    return t.astype(np.int64), p.astype(np.int64)


def accuracy(y_true: Any, y_pred: Any) -> float:
    """The fraction of samples whose prediction equals the true label.

    An empty batch has no accuracy: that is a :class:`DataError`, not a silent NaN.

    >>> accuracy(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]))
    0.75
    """
    t, p = _labels("accuracy", y_true, y_pred)
    if t.size == 0:
        raise DataError(
            "accuracy: y_true and y_pred are empty; the accuracy of 0 samples is undefined"
        )
    return float(np.count_nonzero(t == p) / t.size)


def confusion_matrix(y_true: Any, y_pred: Any, k: int) -> np.ndarray:
    """Counts (K, K) int64: entry (i, j) is the number of samples of true class i predicted as j.

    >>> confusion_matrix(np.array([0, 1, 2, 2]), np.array([0, 2, 2, 2]), 3)
    array([[1, 0, 0],
           [0, 0, 1],
           [0, 0, 2]])
    """
    return _confusion("confusion_matrix", y_true, y_pred, k)


def _confusion(name: str, y_true: Any, y_pred: Any, k: int) -> np.ndarray:
    t, p = _labels(name, y_true, y_pred)
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise DataError(
            f"{name}: k (the number of classes) must be an integer >= 1, received {k!r}"
        )
    for arg, a in (("y_true", t), ("y_pred", p)):
        if a.size and (a.min() < 0 or a.max() >= k):
            raise DataError(
                f"{name}: {arg} must lie in 0..{k - 1} for k={k}, received values "
                f"from {a.min()} to {a.max()}"
            )
    # Sample n lands in cell t_n * K + p_n of the flattened matrix.
    counts = np.bincount(t * k + p, minlength=k * k)  # (K * K,)
    return counts.reshape(k, k).astype(np.int64)  # (K, K)


def per_class_accuracy(y_true: Any, y_pred: Any, k: int) -> np.ndarray:
    """Accuracy within each true class (the recall), (K,) float64: ``C[i, i] / C[i, :].sum()``.

    A class with no samples has no accuracy: its entry is NaN, so it cannot pass for 0% or
    100% (use ``np.nanmean`` to average over the classes present).

    >>> per_class_accuracy(np.array([0, 1, 1, 1]), np.array([0, 1, 0, 1]), 3)
    array([1.        , 0.66666667,        nan])
    """
    matrix = _confusion("per_class_accuracy", y_true, y_pred, k)  # (K, K)
    support = matrix.sum(axis=1)  # (K,) samples per true class
    out = np.full(k, np.nan)
    # where=: no division for an empty class, which would raise under np.errstate(divide="raise").
    np.divide(np.diag(matrix), support, out=out, where=support > 0)
    return out
