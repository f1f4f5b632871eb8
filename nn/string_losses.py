"""The losses of networks that read strings of digits, composed from verified ops.

A network that reads a string gives either one column of scores per slice of the image,
(N, T, K) with the blank last, trained by CTC (:func:`ctc_of_logits`), or one head per digit,
(N, L, K), trained by cross-entropy on each head (:func:`heads_cross_entropy`). Labels are
strings (N, L): the digits, then -1 padding. Each loss is two verified ops joined by the
chain rule, and :class:`nn.model.Sequential` checks whole networks with them end to end.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from nn import activations
from nn.ctc import ctc_loss
from nn.decode import best_path
from nn.errors import ShapeError
from nn.losses import softmax_cross_entropy
from nn.op import Array
from nn.string_metrics import strings_match

__all__ = ["ctc_of_logits", "heads_cross_entropy", "strings_read_right"]


def ctc_of_logits(out: Array, y: Array) -> tuple[Array, Callable[[Array], tuple[Array]]]:
    """CTC of column scores (N, T, K) against label strings (N, L): log_softmax over K, then
    :func:`~nn.ctc.ctc_loss`; two verified ops composed by the chain rule."""
    log_probs, softmax_vjp = activations.log_softmax(out)  # (N, T, K)
    value, ctc_vjp = ctc_loss(log_probs, labels=y)

    def vjp(g: Array) -> tuple[Array]:
        (dlog_probs,) = ctc_vjp(g)  # (N, T, K)
        (dout,) = softmax_vjp(dlog_probs)  # (N, T, K)
        return (dout,)

    return value, vjp


def heads_cross_entropy(out: Array, y: Array) -> tuple[Array, Callable[[Array], tuple[Array]]]:
    """Cross-entropy of L heads (N, L, K) against strings (N, L): the N L rows as one batch,
    so the value is the mean over examples of the mean over heads."""
    n, length, k = out.shape
    if np.shape(y) != (n, length):
        raise ShapeError(
            f"model: the outputs are {length} heads of {k} classes, so the labels must be "
            f"(N, {length}) = ({n}, {length}), one digit per head; received {np.shape(y)}"
        )
    value, vjp_rows = softmax_cross_entropy(out.reshape(n * length, k), labels=y.reshape(-1))

    def vjp(g: Array) -> tuple[Array]:
        (drows,) = vjp_rows(g)  # (N L, K)
        return (drows.reshape(out.shape),)  # (N, L, K)

    return value, vjp


def strings_read_right(out: Array, y: Array) -> Array:
    """(N,) bool: whether the best path of CTC columns (N, T, K) reads each string of
    ``y`` (N, L) exactly, with no partial credit. Columns with a NaN or inf read nothing
    right (the decoder would refuse them)."""
    finite = np.isfinite(out).all(axis=tuple(range(1, out.ndim)))  # (N,)
    right = np.zeros(len(out), dtype=bool)
    if finite.any():
        readings = best_path(activations.log_softmax(out[finite])[0])  # (n, T, K) -> n strings
        right[finite] = strings_match(y[finite], [r.labels for r in readings])
    return right
