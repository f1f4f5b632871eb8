"""Layers: thin pairs of ``init`` and ``apply`` built from verified ops.

A layer is two pure functions (DESIGN.md, "The op contract")::

    params = layer.init(rng, in_shape)          # dict of arrays, e.g. {"w": (D, M), "b": (M,)}
    y, vjp = layer.apply(params, x)             # x: (N, *in_shape) -> y: (N, *out_shape)
    dx, dparams = vjp(g)                        # g like y; dparams has params' names and shapes

A layer holds no arrays itself: the parameters live in the dict the model passes in, so a
whole network stays a pure function of its parameters and can be checked end to end.

Layers that behave differently while training (dropout draws a mask, batch norm uses the
batch's statistics and updates running averages) override :meth:`Layer.forward`, which the
model calls with the mode, an explicit random generator and the layer's *state*: arrays
that training updates but gradient descent does not (batch norm's running mean and
variance), returned anew rather than changed in place.

``library_ops`` lists the registered ops a layer is built from. A layer of this module whose
ops are all library ops is trusted at assembly (each op passed the protocol in the test
suite and has a spec page); any other layer is verified on the spot by
:func:`nn.model_checks.verify_layer`.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np

from nn import init as initializers
from nn.errors import ShapeError
from nn.linear import linear
from nn.op import REGISTRY, Array, OpFn

Params = dict[str, Array]
State = dict[str, Array]  # arrays a layer updates in training, not by gradient (running stats)
Shape = tuple[int, ...]
LayerVJP = Callable[[Array], tuple[Array, Params]]


class Layer:
    """Base class: a layer with no parameters that passes its input through unchanged."""

    name = "layer"

    def init(self, rng: np.random.Generator, in_shape: Shape, dtype: Any = np.float32) -> Params:
        """The layer's parameters for inputs of shape ``(N, *in_shape)``."""
        return {}

    def out_shape(self, in_shape: Shape) -> Shape:
        """The output's shape without the batch axis."""
        return in_shape

    def apply(self, params: Params, x: Array) -> tuple[Array, LayerVJP]:
        """``(y, vjp)`` with ``vjp(g) -> (dx, dparams)``."""
        return x, lambda g: (g, {})

    def init_state(self, in_shape: Shape, dtype: Any = np.float32) -> State:
        """Arrays training updates without gradients (batch norm's running statistics)."""
        return {}

    def forward(
        self,
        params: Params,
        x: Array,
        *,
        state: State,
        train: bool,
        rng: np.random.Generator | None,
    ) -> tuple[Array, LayerVJP, State]:
        """``(y, vjp, new_state)`` in training (``train=True``) or inference mode.

        Most layers compute the same function in both modes, with no state: this default
        is :meth:`apply`. ``rng`` is the only source of randomness a layer may use.
        """
        y, vjp = self.apply(params, x)
        return y, vjp, state

    def library_ops(self) -> tuple[OpFn, ...] | None:
        """The library ops this layer is built from, or ``None`` if it is not built from them."""
        return None

    def config(self) -> dict[str, Any]:
        """JSON-able description, recorded in run folders."""
        return {"layer": self.name}


class Dense(Layer):
    r"""A fully connected layer, ``y = x w + b`` (the :func:`~nn.linear.linear` op).

    ``w`` is drawn by the named initializer of :mod:`nn.init`; ``b`` starts at zero.
    Inputs are rows, ``in_shape`` (D,), or sequences, ``in_shape`` (T, D): then the same
    ``w`` (D, M) and ``b`` (M,) apply at each of the T positions,
    :math:`y_{n,t,m} = \sum_d x_{n,t,d} w_{d,m} + b_m`, so ``out_shape`` is (T, M) and the
    gradients add up over the positions, :math:`dw = \sum_{n,t} x_{n,t}^\top g_{n,t}`,
    :math:`db = \sum_{n,t} g_{n,t}` (one weight used T times gets T contributions).

    >>> layer = Dense(3, init="glorot_uniform")
    >>> params = layer.init(np.random.default_rng(0), (4,))
    >>> {k: v.shape for k, v in params.items()}
    {'w': (4, 3), 'b': (3,)}
    >>> y, vjp = layer.apply(params, np.ones((2, 4), np.float32))
    >>> y.shape, vjp(np.ones_like(y))[1]["b"]
    ((2, 3), array([2., 2., 2.], dtype=float32))
    >>> layer.out_shape((5, 4))  # a sequence of 5 positions of 4 features
    (5, 3)
    >>> y, vjp = layer.apply(params, np.ones((2, 5, 4), np.float32))
    >>> y.shape, vjp(np.ones_like(y))[1]["b"]  # 2 examples x 5 positions
    ((2, 5, 3), array([10., 10., 10.], dtype=float32))
    """

    name = "dense"
    input_grad_optional = True
    """Its vjp takes ``input_grad=False`` (dx is then None): a model skips a first layer's dx."""

    def __init__(self, units: int, *, init: str = "glorot_uniform") -> None:
        if isinstance(units, bool) or not isinstance(units, int | np.integer) or units < 1:
            raise ValueError(f"Dense: units must be a positive integer, received {units!r}")
        if init not in initializers.__all__ or init == "fans":
            choices = [n for n in initializers.__all__ if n != "fans"]
            raise ValueError(f"Dense: init must be one of {choices}, received {init!r}")
        self.units = int(units)
        self.initializer = init

    def init(self, rng: np.random.Generator, in_shape: Shape, dtype: Any = np.float32) -> Params:
        d = _rows_or_sequence(in_shape)[-1]
        draw = getattr(initializers, self.initializer)
        return {
            "w": draw(rng, (d, self.units), dtype=dtype),  # (D, M)
            "b": np.zeros(self.units, dtype=dtype),  # (M,)
        }

    def out_shape(self, in_shape: Shape) -> Shape:
        return (*_rows_or_sequence(in_shape)[:-1], self.units)  # (D,) -> (M,); (T, D) -> (T, M)

    def apply(self, params: Params, x: Array) -> tuple[Array, LayerVJP]:
        if np.ndim(x) != 3:  # np.ndim: a list goes on to linear, which names it
            y, vjp = linear(x, params["w"], params["b"])  # (N, D) -> (N, M)
            with_options: Callable[..., tuple[Any, ...]] = vjp  # linear's takes input_grad
            return y, lambda g, *, input_grad=True: _named(with_options(g, input_grad=input_grad))
        # A sequence: every position is one more row for the same w and b. One matrix product
        # over all N*T rows is about twice as fast as linear's loop over N (N products of T
        # rows, then a sum of N weight gradients); both give dw summed over every position.
        # Explicit sizes, not -1: an empty batch cannot infer them.
        (n, t, d), m = x.shape, params["w"].shape[-1]
        y, vjp = linear(x.reshape(n * t, d), params["w"], params["b"])  # (N*T, D) -> (N*T, M)

        seq_options: Callable[..., tuple[Any, ...]] = vjp  # linear's takes input_grad

        def sequence_vjp(g: Array, *, input_grad: bool = True) -> tuple[Any, Params]:
            g2 = g.reshape(n * t, m)  # (N, T, M) -> (N*T, M)
            dx, dparams = _named(seq_options(g2, input_grad=input_grad))
            return (None if dx is None else dx.reshape(n, t, d)), dparams  # -> (N, T, D)

        return y.reshape(n, t, m), sequence_vjp  # (N*T, M) -> (N, T, M)

    def library_ops(self) -> tuple[OpFn, ...]:
        return (linear,)

    def config(self) -> dict[str, Any]:
        return {"layer": self.name, "units": self.units, "init": self.initializer}


class Activation(Layer):
    """An op of one array applied as a layer: ``Activation(relu)``, ``Activation(my_fn)``.

    ``fn(x) -> (y, vjp)`` with ``vjp(g) -> (dx,)``, the op contract. A library op (such as
    :func:`~nn.activations.relu`) is trusted; a user's function is verified when the
    model is assembled.
    """

    def __init__(self, fn: OpFn) -> None:
        if not callable(fn):
            raise TypeError(f"Activation: fn must be a function fn(x) -> (y, vjp), got {fn!r}")
        self.fn = fn
        self.name = getattr(fn, "__name__", type(fn).__name__)

    def apply(self, params: Params, x: Array) -> tuple[Array, LayerVJP]:
        y, vjp = self.fn(x)

        def activation_vjp(g: Array) -> tuple[Array, Params]:
            (dx,) = vjp(g)
            return dx, {}

        return y, activation_vjp

    def library_ops(self) -> tuple[OpFn, ...] | None:
        return (self.fn,) if is_library_activation(self.fn) else None

    def config(self) -> dict[str, Any]:
        return {"layer": "activation", "fn": self.name}


def is_library_op(fn: Any) -> bool:
    """Whether ``fn`` is an op registered by ``nn`` itself (with a spec page and its tests).

    A user's op registered with :func:`nn.op.op` is not: its page and tests are not part of
    the library's suite, so a model built with it verifies it at assembly.
    """
    info = REGISTRY.get(getattr(fn, "__name__", ""))
    return info is not None and info.fn is fn and fn.__module__.split(".")[0] == "nn"


def is_library_activation(fn: Any) -> bool:
    """A library op of one array whose output has its input's shape, such as ``relu``."""
    if not is_library_op(fn):
        return False
    sig = REGISTRY[fn.__name__].signature
    return len(sig.inputs) == 1 and sig.inputs[0] == sig.output


def _named(cotangents: tuple[Any, ...]) -> tuple[Any, Params]:
    """linear's ``(dx, dw, db)`` as a layer's ``(dx, {"w": dw, "b": db})``."""
    dx, dw, db = cotangents
    return dx, {"w": dw, "b": db}


def _rows_or_sequence(in_shape: Shape) -> Shape:
    """``in_shape`` if it is (D,) or (T, D), else a ShapeError naming both forms."""
    if len(in_shape) not in (1, 2):
        raise ShapeError(
            f"Dense: expects flat inputs (N, D) or sequences (N, T, D), so in_shape must be "
            f"(D,) or (T, D), received in_shape {in_shape}"
        )
    return in_shape
