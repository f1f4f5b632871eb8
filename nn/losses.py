"""Losses: softmax_cross_entropy (integer labels) and mean_squared_error."""

from __future__ import annotations

from typing import Any

import numpy as np

from nn.errors import DataError, ShapeError
from nn.op import VJP, Array, op, unbroadcast


def _random_labels(rng: np.random.Generator, logits: Array) -> dict[str, Any]:
    return {"labels": rng.integers(0, logits.shape[-1], size=logits.shape[:-1])}


@op(signature="(n,k)->()", complex_safe=True, static=_random_labels, nonempty=("n", "k"))
def softmax_cross_entropy(logits: Array, *, labels: Any) -> tuple[Array, VJP]:
    r"""Mean cross-entropy of softmax probabilities against integer class labels.

    .. math:: L = -\frac{1}{N}\sum_n \log \mathrm{softmax}(x_n)_{t_n}
                = \frac{1}{N}\sum_n \Big(\log\sum_k e^{x_{nk}} - x_{n t_n}\Big)

    ``logits`` is (N, K), ``labels`` is (N,) integers in ``[0, K)``; ``L`` is a scalar.
    Gradient: ``dlogits = g * (softmax(x) - onehot(t)) / N``.

    >>> loss, vjp = softmax_cross_entropy(np.zeros((2, 4)), labels=np.array([0, 3]))
    >>> bool(np.isclose(loss, np.log(4)))
    True
    """
    t = np.asarray(labels)
    n, k = logits.shape[-2:]
    if t.shape != logits.shape[:-1]:
        raise ShapeError(
            f"softmax_cross_entropy: labels must have shape {logits.shape[:-1]} "
            f"(the logits' shape without the class axis K={k}), received {t.shape}"
        )
    if t.dtype.kind not in "iu":
        raise DataError(f"softmax_cross_entropy: labels must be integers, received dtype {t.dtype}")
    if t.size and (t.min() < 0 or t.max() >= k):
        raise DataError(
            f"softmax_cross_entropy: labels must lie in [0, {k}), received values "
            f"from {t.min()} to {t.max()}"
        )
    onehot = np.arange(k) == t[..., None]  # (..., N, K) bool
    z = logits - logits.real.max(axis=-1, keepdims=True)  # (..., N, K), stable shift
    e = np.exp(z)  # (..., N, K)
    total = e.sum(axis=-1)  # (..., N), at least 1
    picked = np.where(onehot, z, 0).sum(axis=-1)  # (..., N): z[n, t_n]
    loss = np.asarray((np.log(total) - picked).mean(axis=-1))  # (...,)

    def vjp(g: Array) -> tuple[Array]:
        p = e / total[..., None]  # (..., N, K) softmax probabilities
        return ((p - onehot) * (g[..., None, None] / n),)

    return loss, vjp


@op(signature="(n,k),(n,k)->()", complex_safe=True, nonempty=("n", "k"))
def mean_squared_error(y_pred: Array, y: Array) -> tuple[Array, VJP]:
    r"""Mean of squared differences over all N*K entries: :math:`L = \frac{1}{NK}\sum(\hat y-y)^2`.

    ``y_pred`` and ``y`` are (N, K); ``L`` is a scalar. Gradient:
    ``dy_pred = 2 g (y_pred - y) / (N K)`` and ``dy = -dy_pred``.

    >>> loss, vjp = mean_squared_error(np.array([[1.0, 2.0]]), np.array([[1.0, 4.0]]))
    >>> float(loss), [c.tolist() for c in vjp(1.0)]
    (2.0, [[[0.0, -2.0]], [[0.0, 2.0]]])
    """
    n, k = y_pred.shape[-2:]
    d = y_pred - y  # (..., N, K) after broadcasting the loop dimensions
    loss = np.asarray((d * d).mean(axis=(-2, -1)))  # (...,); d*d, not abs(d)**2: complex-safe

    def vjp(g: Array) -> tuple[Array, Array]:
        dd = d * (2 * g[..., None, None] / (n * k))  # (..., N, K)
        return unbroadcast(dd, y_pred.shape), unbroadcast(-dd, y.shape)

    return loss, vjp
