"""Reshaping ops: the bridges between feature maps, rows, sequences and heads.

* :func:`flatten`: (N, C, H, W) -> (N, CHW), feature maps to a dense layer's rows;
* :func:`columns`: (N, C, H, W) -> (N, W, CH), feature maps to a sequence of columns;
* :func:`unflatten`: (N, D) -> (N, A, B), a row to A heads of B scores each.

Each moves entries without arithmetic, so its vjp moves the cotangent's entries back.
"""

from __future__ import annotations

import operator
from typing import Any

import numpy as np

from nn.errors import ShapeError
from nn.op import VJP, Array, op


def _flat_size(sizes: dict[str, int]) -> dict[str, int]:
    return {"d": sizes["c"] * sizes["h"] * sizes["w"]}


@op(
    signature="(n,c,h,w)->(n,d)",
    complex_safe=True,
    loops=False,
    derive=_flat_size,
    sample_sizes={"n": 2, "c": 3, "h": 4, "w": 5},
)
def flatten(x: Array) -> tuple[Array, VJP]:
    r"""Flatten each example's feature maps into one row: :math:`(N, C, H, W) \to (N, CHW)`.

    Row ``n`` holds ``x[n]`` in C order: ``y[n, (c*H + h)*W + w] = x[n, c, h, w]``, the
    order of ``np.reshape`` and of PyTorch's ``torch.flatten(x, 1)``. The output is a view of
    ``x`` whenever NumPy can reshape without copying (always, for a C-contiguous ``x``).
    Gradient: the same entries moved back, ``dx = g.reshape(x.shape)``.

    >>> y, vjp = flatten(np.arange(12.0).reshape(2, 3, 2, 1))
    >>> y.shape, y[1].tolist(), vjp(y)[0].shape
    ((2, 6), [6.0, 7.0, 8.0, 9.0, 10.0, 11.0], (2, 3, 2, 1))
    """
    n, c, h, w = x.shape
    # Explicit sizes, not -1: reshape(0, -1) of an empty batch cannot infer the row length.
    y = x.reshape(n, c * h * w)  # (N, C, H, W) -> (N, C*H*W)

    def vjp(g: Array) -> tuple[Array]:
        return (np.reshape(g, x.shape),)  # (N, C*H*W) -> (N, C, H, W)

    return y, vjp


def _column_size(sizes: dict[str, int]) -> dict[str, int]:
    return {"d": sizes["c"] * sizes["h"]}


@op(
    signature="(n,c,h,w)->(n,w,d)",
    complex_safe=True,
    loops=False,
    derive=_column_size,
    sample_sizes={"n": 2, "c": 3, "h": 4, "w": 5},
)
def columns(x: Array) -> tuple[Array, VJP]:
    r"""Read feature maps as a sequence of columns: :math:`(N, C, H, W) \to (N, W, CH)`.

    Step ``w`` of example ``n`` is the vertical strip ``x[n, :, :, w]``, all channels of
    column ``w`` stacked channel by channel: ``y[n, w, c*H + h] = x[n, c, h, w]``. A network
    that reads a line of digits scores each step, left to right (spec/columns.md).
    Gradient: the same entries moved back, ``dx[n, c, h, w] = g[n, w, c*H + h]``.

    >>> y, vjp = columns(np.arange(12.0).reshape(1, 2, 2, 3))
    >>> y.shape, y[0, 0].tolist(), vjp(y)[0].shape
    ((1, 3, 4), [0.0, 3.0, 6.0, 9.0], (1, 2, 2, 3))
    """
    n, c, h, w = x.shape
    # The transpose brings w next to n; NumPy can merge (c, h) into one axis of a strided
    # view, but then a step's D features lie W entries apart. One contiguous copy makes each
    # step a contiguous row, so the dense layer after it reshapes (N, W, D) to (N*W, D) rows
    # without another copy (that reshape cannot merge n and w of the strided view).
    y = np.ascontiguousarray(x.transpose(0, 3, 1, 2)).reshape(n, w, c * h)  # -> (N, W, C*H)

    def vjp(g: Array) -> tuple[Array]:
        g4 = g.reshape(n, w, c, h)  # (N, W, C*H) -> (N, W, C, H)
        # Contiguous like x, so pooling's and convolution's backward read it row by row.
        return (np.ascontiguousarray(g4.transpose(0, 2, 3, 1)),)  # -> (N, C, H, W)

    return y, vjp


def _unflatten_shape(sizes: dict[str, int], **static: Any) -> dict[str, int]:
    """``{"a": A, "b": B}`` from the static ``shape``; a ShapeError unless ``A B = D``."""
    shape = static["shape"]  # nn.op checks that it is given, and refuses any other keyword
    a, b = _pair_of_ints(shape)
    if a * b != sizes["d"]:
        raise ShapeError(
            f"unflatten: shape {tuple(shape)} holds {a}*{b} = {a * b} entries, but each example "
            f"has D = {sizes['d']} features; signature (n,d)->(n,a,b)"
        )
    return {"a": a, "b": b}


def _pair_of_ints(shape: Any) -> tuple[int, int]:
    try:
        if isinstance(shape, (str, bytes)) or len(shape) != 2:
            raise TypeError
        if any(isinstance(v, bool) for v in shape):
            raise TypeError
        a, b = (operator.index(v) for v in shape)
    except TypeError:
        raise TypeError(
            f"unflatten: shape must be a pair of integers (A, B), received {shape!r}"
        ) from None
    return a, b


def _unflatten_static(rng: np.random.Generator, x: Array) -> dict[str, Any]:
    """A random valid ``shape`` for ``x``'s D: a factor pair ``(A, D / A)``, avoiding the
    trivial ``(1, D)`` and ``(D, 1)`` when D has other factors."""
    d = x.shape[-1]
    if d < 1:
        return {"shape": (1, d)}  # no valid shape: the contract refuses B = 0
    factors = [a for a in range(1, d + 1) if d % a == 0]
    inner = [a for a in factors if 1 < a < d] or factors
    a = int(rng.choice(inner))
    return {"shape": (a, d // a)}


@op(
    signature="(n,d)->(n,a,b)",
    complex_safe=True,
    loops=False,
    derive=_unflatten_shape,
    static=_unflatten_static,
    sample_sizes={"n": 2, "d": 12},
)
def unflatten(x: Array, *, shape: tuple[int, int]) -> tuple[Array, VJP]:
    r"""Split each example's row into a matrix: :math:`(N, D) \to (N, A, B)`, :math:`AB = D`.

    ``y[n, i, j] = x[n, i*B + j]``, C order (the inverse of flattening an (A, B) matrix).
    A dense layer of 70 units followed by ``unflatten(shape=(7, 10))`` gives 7 heads of 10
    class scores each (spec/unflatten.md). Gradient: ``dx = g.reshape(N, D)``.

    >>> y, vjp = unflatten(np.arange(12.0).reshape(2, 6), shape=(2, 3))
    >>> y.shape, y[1].tolist(), vjp(y)[0].shape
    ((2, 2, 3), [[6.0, 7.0, 8.0], [9.0, 10.0, 11.0]], (2, 6))
    """
    n, d = x.shape
    a, b = _pair_of_ints(shape)  # derive checked a * b == d before this call
    y = x.reshape(n, a, b)  # (N, D) -> (N, A, B); a view, no copy

    def vjp(g: Array) -> tuple[Array]:
        return (np.reshape(g, (n, d)),)  # (N, A, B) -> (N, D)

    return y, vjp
