"""The affine map of a fully connected layer: ``y = x W + b``."""

from __future__ import annotations

import numpy as np

from nn.op import VJP, Array, op, unbroadcast


@op(signature="(n,d),(d,m),(m)->(n,m)", complex_safe=True)
def linear(x: Array, w: Array, b: Array) -> tuple[Array, VJP]:
    r"""Affine map :math:`y = x W + b` of a batch of row vectors.

    ``x`` is (N, D) inputs, ``w`` is (D, M) weights, ``b`` is (M,) biases; ``y`` is (N, M).
    Gradients, from :math:`y_{nm} = \sum_d x_{nd} W_{dm} + b_m`:
    ``dx = g W^T``, ``dw = x^T g``, ``db = sum_n g``. Leading (loop) dimensions broadcast
    as in ``np.matmul``; each cotangent is summed back to its input's shape.

    >>> y, vjp = linear(np.ones((2, 3)), np.ones((3, 4)), np.zeros(4))
    >>> y.shape, [c.shape for c in vjp(np.ones((2, 4)))]
    ((2, 4), [(2, 3), (3, 4), (4,)])
    """
    # b[..., None, :] gives the bias its own row axis, so b's loop dimensions (if any) meet
    # the batch's loop dimensions instead of being mistaken for N.
    y = np.matmul(x, w) + b[..., None, :]  # (..., N, D) @ (..., D, M) + (..., 1, M) -> (..., N, M)

    def vjp(g: Array) -> tuple[Array, Array, Array]:
        dx = np.matmul(g, np.swapaxes(w, -1, -2))  # (..., N, M) @ (..., M, D) -> (..., N, D)
        dw = np.matmul(np.swapaxes(x, -1, -2), g)  # (..., D, N) @ (..., N, M) -> (..., D, M)
        db = g.sum(axis=-2)  # (..., N, M) -> (..., M)
        return unbroadcast(dx, x.shape), unbroadcast(dw, w.shape), unbroadcast(db, b.shape)

    return y, vjp
