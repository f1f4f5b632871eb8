"""The affine map of a fully connected layer: ``y = x W + b``."""

from __future__ import annotations

from typing import Any

import numpy as np

from nn.op import VJP, Array, op, unbroadcast


@op(signature="(n,d),(d,m),(m)->(n,m)", complex_safe=True)
def linear(x: Array, w: Array, b: Array) -> tuple[Array, VJP]:
    r"""Affine map :math:`y = x W + b` of a batch of row vectors.

    ``x`` is (N, D) inputs, ``w`` is (D, M) weights, ``b`` is (M,) biases; ``y`` is (N, M).
    Gradients, from :math:`y_{nm} = \sum_d x_{nd} W_{dm} + b_m`:
    ``dx = g W^T``, ``dw = x^T g``, ``db = sum_n g``. Leading (loop) dimensions broadcast
    as in ``np.matmul``; each cotangent is summed back to its input's shape.
    ``vjp(g, input_grad=False)`` returns ``None`` for ``dx``: a network's first layer takes
    data, whose cotangent nobody uses, and ``g W^T`` is a third of the layer's backward work.

    >>> y, vjp = linear(np.ones((2, 3)), np.ones((3, 4)), np.zeros(4))
    >>> y.shape, [c.shape for c in vjp(np.ones((2, 4)))]
    ((2, 4), [(2, 3), (3, 4), (4,)])
    """
    # b[..., None, :] gives the bias its own row axis, so b's loop dimensions (if any) meet
    # the batch's loop dimensions instead of being mistaken for N.
    y = np.matmul(x, w)  # (..., N, D) @ (..., D, M) -> (..., N, M)
    if b.ndim == 1:  # the bias adds in place: no second (N, M) array
        y += b
    else:
        y = y + b[..., None, :]  # (..., N, M) + (..., 1, M): b's loop dims may widen y's

    def vjp(g: Array, *, input_grad: bool = True) -> tuple[Any, ...]:  # dx None: no input_grad
        dw = np.matmul(np.swapaxes(x, -1, -2), g)  # (..., D, N) @ (..., N, M) -> (..., D, M)
        db = g.sum(axis=-2)  # (..., N, M) -> (..., M)
        dw, db = unbroadcast(dw, w.shape), unbroadcast(db, b.shape)
        if not input_grad:
            return None, dw, db
        dx = np.matmul(g, np.swapaxes(w, -1, -2))  # (..., N, M) @ (..., M, D) -> (..., N, D)
        return unbroadcast(dx, x.shape), dw, db

    return y, vjp
