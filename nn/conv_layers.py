"""Layers of images: convolution, pooling and the reshapes after them, each a thin wrapper of
one op. :class:`Flatten` makes rows for dense layers, :class:`Columns` a sequence of columns
(one step per image column, for a CTC reader), :class:`Unflatten` heads of class scores.

Inputs are NCHW batches; a layer's ``in_shape`` is (C, H, W), without the batch axis. Each
layer checks the shape it is given when the model is assembled, so a CNN whose layers do
not fit together fails before any arithmetic, naming the layer and the shapes.

>>> conv = Conv2D(8, kernel=3, padding="same")
>>> params = conv.init(np.random.default_rng(0), (1, 28, 28))
>>> {k: v.shape for k, v in params.items()}
{'w': (8, 1, 3, 3), 'b': (8,)}
>>> conv.out_shape((1, 28, 28)), MaxPool2D(2).out_shape((8, 28, 28))
((8, 28, 28), (8, 14, 14))
>>> Columns().out_shape((8, 14, 14)), Unflatten((7, 10)).out_shape((70,))
((14, 112), (7, 10))
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from typing import Any

import numpy as np

from nn import init as initializers
from nn.conv import conv2d
from nn.errors import ShapeError
from nn.layers import Layer, LayerVJP, Params, Shape
from nn.op import REGISTRY, Array, OpFn
from nn.pool import avg_pool2d, max_pool2d
from nn.reshape import columns, flatten, unflatten

Pair = tuple[int, int]


def pair(value: Any, name: str, who: str, *, minimum: int) -> Pair:
    """An int or a pair of ints, each at least ``minimum``, as ``(h, w)``."""
    items = value if isinstance(value, (tuple, list)) else (value, value)
    try:
        if len(items) != 2 or any(isinstance(v, bool) for v in items):
            raise TypeError
        h, w = (operator.index(v) for v in items)
    except TypeError:
        raise ValueError(
            f"{who}: {name} must be an integer or a pair of integers, received {value!r}"
        ) from None
    if min(h, w) < minimum:
        raise ValueError(f"{who}: {name} must be at least {minimum}, received {value!r}")
    return h, w


def image_shape(in_shape: Shape, who: str) -> tuple[int, int, int]:
    """``in_shape`` as (C, H, W), or a ShapeError that says what the layer needs."""
    if len(in_shape) != 3:
        raise ShapeError(
            f"{who}: expects images (N, C, H, W), so in_shape must be (C, H, W), received "
            f"in_shape {in_shape}; a dense layer's output must be reshaped, not convolved"
        )
    c, h, w = in_shape
    return c, h, w


def op_out_shape(fn: OpFn, shapes: list[Shape], static: dict[str, Any], why: str) -> Shape:
    """The output shape (without the batch axis) the op's own signature derives for these
    inputs, so the layer never restates the op's size formula; ``why`` replaces the op's
    ShapeError, in the layer's words."""
    try:
        return REGISTRY[fn.__name__].output_shape(shapes, static)[1:]
    except ShapeError:
        raise ShapeError(why) from None


class Conv2D(Layer):
    """A 2-D convolution (cross-correlation, as in PyTorch), :func:`~nn.conv.conv2d`.

    ``w`` is (K, C, R, S) from the named initializer of :mod:`nn.init` (He by default, for
    ReLU; fan_in = C R S), ``b`` is (K,) zeros. ``padding="same"`` pads ``dilation (R - 1)
    / 2`` on each side, so an odd kernel at stride 1 keeps H and W.
    """

    name = "conv2d"
    input_grad_optional = True
    """Its vjp takes ``input_grad=False`` (dx is then None): a model skips a first layer's dx."""

    def __init__(
        self,
        channels: int,
        kernel: int | Pair = 3,
        *,
        stride: int | Pair = 1,
        padding: int | Pair | str = 0,
        dilation: int | Pair = 1,
        init: str = "he_normal",
    ) -> None:
        who = "Conv2D"
        if (
            isinstance(channels, bool)
            or not isinstance(channels, (int, np.integer))
            or channels < 1
        ):
            raise ValueError(f"{who}: channels must be a positive integer, received {channels!r}")
        self.channels = int(channels)
        self.kernel = pair(kernel, "kernel", who, minimum=1)
        self.stride = pair(stride, "stride", who, minimum=1)
        self.dilation = pair(dilation, "dilation", who, minimum=1)
        if padding == "same":
            if any(k % 2 == 0 for k in self.kernel):
                raise ValueError(f"{who}: padding='same' needs an odd kernel, received {kernel}")
            self.padding = (
                self.dilation[0] * (self.kernel[0] - 1) // 2,
                self.dilation[1] * (self.kernel[1] - 1) // 2,
            )
        elif isinstance(padding, str):
            raise ValueError(
                f"{who}: padding must be 'same', an integer or a pair, received {padding!r}"
            )
        else:
            self.padding = pair(padding, "padding", who, minimum=0)
        if init not in initializers.__all__ or init == "fans":
            choices = [n for n in initializers.__all__ if n != "fans"]
            raise ValueError(f"{who}: init must be one of {choices}, received {init!r}")
        self.initializer = init

    def init(self, rng: np.random.Generator, in_shape: Shape, dtype: Any = np.float32) -> Params:
        c, _, _ = image_shape(in_shape, "Conv2D")
        self.out_shape(in_shape)  # refuse a kernel that does not fit before drawing weights
        draw = getattr(initializers, self.initializer)
        return {
            "w": draw(rng, (self.channels, c, *self.kernel), dtype=dtype),  # (K, C, R, S)
            "b": np.zeros(self.channels, dtype=dtype),  # (K,)
        }

    def out_shape(self, in_shape: Shape) -> Shape:
        c, h, w = image_shape(in_shape, "Conv2D")
        k = self.channels
        static = {"stride": self.stride, "padding": self.padding, "dilation": self.dilation}
        return op_out_shape(
            conv2d, [(1, c, h, w), (k, c, *self.kernel), (k,)], static,
            f"Conv2D: a {self.kernel} kernel (dilation {self.dilation}, padding "
            f"{self.padding}) does not fit an input of {h}x{w}; in_shape {in_shape}",
        )  # fmt: skip

    def apply(self, params: Params, x: Array) -> tuple[Array, LayerVJP]:
        y, vjp = conv2d(
            x,
            params["w"],
            params["b"],
            stride=self.stride,
            padding=self.padding,
            dilation=self.dilation,
        )  # (N, C, H, W) -> (N, K, P, Q); fmt: skip

        vjp_with_options: Callable[..., tuple[Any, ...]] = vjp  # conv2d's takes input_grad

        def conv_vjp(g: Array, *, input_grad: bool = True) -> tuple[Array, Params]:
            dx, dw, db = vjp_with_options(g, input_grad=input_grad)  # dx None without input_grad
            return dx, {"w": dw, "b": db}

        return y, conv_vjp

    def library_ops(self) -> tuple[OpFn, ...]:
        return (conv2d,)

    def config(self) -> dict[str, Any]:
        return {"layer": self.name, "channels": self.channels, "kernel": list(self.kernel),
                "stride": list(self.stride), "padding": list(self.padding),
                "dilation": list(self.dilation), "init": self.initializer}  # fmt: skip


class _Pool2D(Layer):
    op: OpFn

    def __init__(self, window: int | Pair = 2, *, stride: int | Pair | None = None) -> None:
        who = type(self).__name__
        self.window = pair(window, "window", who, minimum=1)
        self.stride = self.window if stride is None else pair(stride, "stride", who, minimum=1)

    def out_shape(self, in_shape: Shape) -> Shape:
        c, h, w = image_shape(in_shape, type(self).__name__)
        return op_out_shape(
            type(self).op, [(1, c, h, w)], {"window": self.window, "stride": self.stride},
            f"{type(self).__name__}: a {self.window} window does not fit an input of "
            f"{h}x{w}; in_shape {in_shape}",
        )  # fmt: skip

    def apply(self, params: Params, x: Array) -> tuple[Array, LayerVJP]:
        y, vjp = type(self).op(x, window=self.window, stride=self.stride)  # (N,C,H,W)->(N,C,P,Q)
        return y, lambda g: (vjp(g)[0], {})

    def library_ops(self) -> tuple[OpFn, ...]:
        return (type(self).op,)

    def config(self) -> dict[str, Any]:
        return {"layer": self.name, "window": list(self.window), "stride": list(self.stride)}


class MaxPool2D(_Pool2D):
    """The largest value of each window, :func:`~nn.pool.max_pool2d` (stride: the window)."""

    name = "max_pool2d"
    op = staticmethod(max_pool2d)


class AvgPool2D(_Pool2D):
    """The mean of each window, :func:`~nn.pool.avg_pool2d` (stride: the window)."""

    name = "avg_pool2d"
    op = staticmethod(avg_pool2d)


class Flatten(Layer):
    """(N, C, H, W) -> (N, C H W), :func:`~nn.reshape.flatten`: from feature maps to a
    dense layer's rows."""

    name = "flatten"

    def out_shape(self, in_shape: Shape) -> Shape:
        c, h, w = image_shape(in_shape, "Flatten")
        return (c * h * w,)

    def apply(self, params: Params, x: Array) -> tuple[Array, LayerVJP]:
        y, vjp = flatten(x)  # (N, C, H, W) -> (N, C*H*W)
        return y, lambda g: (vjp(g)[0], {})

    def library_ops(self) -> tuple[OpFn, ...]:
        return (flatten,)


class Columns(Layer):
    r"""(N, C, H, W) -> (N, W, C H), :func:`~nn.reshape.columns`: step ``w`` of the sequence
    is column ``w`` of the feature maps, ``y[n, w, c*H + h] = x[n, c, h, w]``, for layers
    that score each column (a :class:`~nn.layers.Dense` applies to every step).

    >>> y, vjp = Columns().apply({}, np.zeros((2, 4, 3, 9)))
    >>> y.shape, vjp(y)[0].shape
    ((2, 9, 12), (2, 4, 3, 9))
    """

    name = "columns"

    def out_shape(self, in_shape: Shape) -> Shape:
        c, h, w = image_shape(in_shape, "Columns")
        return op_out_shape(  # (C, H, W) -> (W, C*H)
            columns, [(1, c, h, w)], {},
            f"Columns: steps of C*H = {c * h} features cannot feed a layer; in_shape {in_shape}",
        )  # fmt: skip

    def apply(self, params: Params, x: Array) -> tuple[Array, LayerVJP]:
        y, vjp = columns(x)  # (N, C, H, W) -> (N, W, C*H)
        return y, lambda g: (vjp(g)[0], {})

    def library_ops(self) -> tuple[OpFn, ...]:
        return (columns,)


class Unflatten(Layer):
    r"""(N, D) -> (N, A, B), :func:`~nn.reshape.unflatten` with ``shape = (A, B)``, A B = D:
    a dense layer of 70 units read as 7 heads of 10 class scores, one per digit position.

    >>> layer = Unflatten((7, 10))
    >>> y, vjp = layer.apply({}, np.zeros((2, 70)))
    >>> y.shape, vjp(y)[0].shape, layer.config()
    ((2, 7, 10), (2, 70), {'layer': 'unflatten', 'shape': [7, 10]})
    """

    name = "unflatten"

    def __init__(self, shape: tuple[int, int] | list[int]) -> None:
        items = shape if isinstance(shape, (tuple, list)) else ()
        if len(items) != 2 or any(
            isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1 for v in items
        ):
            raise ValueError(
                f"Unflatten: shape must be a list of 2 positive integers [A, B] (A heads of B "
                f"scores), received {list(shape) if isinstance(shape, tuple) else shape!r}"
            )
        self.shape = (int(items[0]), int(items[1]))

    def out_shape(self, in_shape: Shape) -> Shape:
        a, b = self.shape
        if len(in_shape) != 1:
            raise ShapeError(
                f"Unflatten: expects flat inputs (N, D), so in_shape must be (D,) with "
                f"D = {a}*{b} = {a * b}, received in_shape {in_shape}"
            )
        return op_out_shape(  # (D,) -> (A, B)
            unflatten, [(1, *in_shape)], {"shape": self.shape},
            f"Unflatten: shape {list(self.shape)} holds {a}*{b} = {a * b} entries, but the input "
            f"has D = {in_shape[0]} features; in_shape {in_shape}",
        )  # fmt: skip

    def apply(self, params: Params, x: Array) -> tuple[Array, LayerVJP]:
        y, vjp = unflatten(x, shape=self.shape)  # (N, D) -> (N, A, B)
        return y, lambda g: (vjp(g)[0], {})

    def library_ops(self) -> tuple[OpFn, ...]:
        return (unflatten,)

    def config(self) -> dict[str, Any]:
        return {"layer": self.name, "shape": list(self.shape)}
