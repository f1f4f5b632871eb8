"""Activation functions: sigmoid, tanh, relu, softmax, log_softmax.

Each op returns ``(out, vjp)``; the backward pass sits right beside the forward one.
The math, its derivation and the invariants are on the spec pages ``spec/<op>.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nn.op import VJP, Array, op
from nn.parallel import for_slices


@op(signature="()->()", complex_safe=True)
def sigmoid(x: Array) -> tuple[Array, VJP]:
    r"""Logistic sigmoid, elementwise: :math:`\sigma(x) = 1 / (1 + e^{-x})`.

    Gradient: :math:`\sigma'(x) = \sigma(x)\,(1 - \sigma(x))`, so ``dx = g * y * (1 - y)``.

    >>> y, vjp = sigmoid(np.array([-1e4, 0.0, 1e4]))
    >>> y.tolist(), vjp(np.ones(3))[0].tolist()
    ([0.0, 0.5, 1.0], [0.0, 0.25, 0.0])
    """
    # exp of a negative number never overflows: use e^{-|x|} on both sides of 0.
    # The branch tests x.real so the op stays complex-safe (no abs of a complex number).
    positive = x.real >= 0
    e = np.exp(np.where(positive, -x, x))  # e^{-|x|} in (0, 1]
    y = np.where(positive, 1 / (1 + e), e / (1 + e))

    def vjp(g: Array) -> tuple[Array]:
        return (g * y * (1 - y),)

    return y, vjp


@op(signature="()->()", complex_safe=True)
def tanh(x: Array) -> tuple[Array, VJP]:
    r"""Hyperbolic tangent, elementwise: :math:`\tanh x = (e^x - e^{-x}) / (e^x + e^{-x})`.

    Gradient: :math:`\tanh'(x) = 1 - \tanh^2 x`, so ``dx = g * (1 - y**2)``.

    >>> y, vjp = tanh(np.array([0.0, 1e4]))
    >>> y.tolist(), vjp(np.ones(2))[0].tolist()
    ([0.0, 1.0], [1.0, 0.0])
    """
    y = np.tanh(x)  # NumPy's tanh saturates to +-1 without overflow

    def vjp(g: Array) -> tuple[Array]:
        return (g * (1 - y * y),)

    return y, vjp


@op(signature="()->()", complex_safe=False, kinks=(0.0,))
def relu(x: Array) -> tuple[Array, VJP]:
    r"""Rectified linear unit, elementwise: :math:`\mathrm{relu}(x) = \max(x, 0)`.

    Gradient: 1 where ``x > 0`` and 0 elsewhere; at the kink ``x = 0`` the convention is
    ``relu'(0) = 0`` (as in PyTorch and JAX). A NaN input gives a NaN output.

    >>> y, vjp = relu(np.array([-2.0, 0.0, 3.0]))
    >>> y.tolist(), vjp(np.ones(3))[0].tolist()
    ([0.0, 0.0, 3.0], [0.0, 0.0, 1.0])
    """
    zero = x.dtype.type(0)
    y, active = np.empty(x.shape, x.dtype), np.empty(x.shape, bool)
    x1, y1, active1 = x.reshape(-1), y.reshape(-1), active.reshape(-1)  # flat; x1 may copy

    def forward(s: slice) -> None:  # a slice of the entries, on one of nn.parallel's threads
        np.greater(x1[s], zero, out=active1[s])
        # np.maximum, not np.where(active, x, 0): a NaN passes through (as in PyTorch) instead
        # of being zeroed, hiding a divergence; and np.where on a random mask is ~10x slower.
        np.maximum(x1[s], zero, out=y1[s])

    for_slices(forward, x1.size, x1.size)

    def vjp(g: Array) -> tuple[Array]:
        dx = np.empty(g.shape, np.result_type(g, active))
        g1, dx1 = g.reshape(-1), dx.reshape(-1)
        sums: list[Any] = []

        def backward(s: slice) -> None:
            # 0 * inf is NaN: only a non-finite g makes dx non-finite, so then (rarely) select.
            with np.errstate(invalid="ignore", over="ignore"):
                np.multiply(g1[s], active1[s], out=dx1[s])  # branch-free: g or exactly 0
                sums.append(np.add.reduce(dx1[s]))  # list.append is atomic under the GIL

        for_slices(backward, g1.size, g1.size)
        if not all(np.isfinite(sums)):
            dx = np.where(active, g, g.dtype.type(0))
        return (dx,)

    return y, vjp


@op(signature="(k)->(k)", complex_safe=True, nonempty=("k",))
def softmax(x: Array) -> tuple[Array, VJP]:
    r"""Softmax over the last axis: :math:`s_i = e^{x_i} / \sum_j e^{x_j}`.

    Gradient: :math:`\partial s_i/\partial x_j = s_i(\delta_{ij} - s_j)`, so
    ``dx = s * (g - sum(g * s))`` with the sum over the last axis.

    >>> s, vjp = softmax(np.array([1e4, 1e4, -1e4]))
    >>> s.tolist()
    [0.5, 0.5, 0.0]
    """
    # Subtracting the row maximum leaves softmax unchanged and keeps exp from overflowing.
    # The shift is a constant for the derivative, so it uses the real part only.
    z = x - x.real.max(axis=-1, keepdims=True)  # (..., K)
    e = np.exp(z)  # (..., K), largest entry 1
    s = e / e.sum(axis=-1, keepdims=True)  # (..., K)

    def vjp(g: Array) -> tuple[Array]:
        return (s * (g - (g * s).sum(axis=-1, keepdims=True)),)

    return s, vjp


@op(signature="(k)->(k)", complex_safe=True, nonempty=("k",))
def log_softmax(x: Array) -> tuple[Array, VJP]:
    r"""Log of the softmax over the last axis: :math:`x_i - \log \sum_j e^{x_j}`.

    Gradient: :math:`\partial y_i / \partial x_j = \delta_{ij} - s_j`, so
    ``dx = g - softmax(x) * sum(g)`` with the sum over the last axis.

    >>> y, _ = log_softmax(np.array([0.0, 0.0]))
    >>> np.allclose(y, np.log(0.5))
    True
    """
    z = x - x.real.max(axis=-1, keepdims=True)  # (..., K); the max entry becomes 0
    e = np.exp(z)  # (..., K)
    total = e.sum(axis=-1, keepdims=True)  # (..., 1), at least 1, so its log is safe
    y = z - np.log(total)  # (..., K)

    def vjp(g: Array) -> tuple[Array]:
        return (g - (e / total) * g.sum(axis=-1, keepdims=True),)

    return y, vjp
