"""Layers that compute differently in training: dropout and batch normalization.

Both override :meth:`nn.layers.Layer.forward`, which the model calls with ``train`` and an
explicit random generator. In inference (``train=False``) dropout is the identity and batch
norm uses its running statistics, the layer's *state*; in training dropout draws a mask from
the generator and batch norm normalizes by the batch's own statistics and returns updated
running averages (spec/dropout.md, spec/batch_norm.md).

>>> bn = BatchNorm()
>>> sorted(bn.init(np.random.default_rng(0), (4, 5, 5))), sorted(bn.init_state((4, 5, 5)))
(['beta', 'gamma'], ['running_mean', 'running_var'])
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nn.dropout import dropout, dropout_mask
from nn.errors import ShapeError
from nn.layers import Layer, LayerVJP, Params, Shape, State
from nn.norm import batch_moments, batch_norm, batch_norm_inference, update_running
from nn.op import Array, OpFn


class Dropout(Layer):
    """Inverted dropout (:func:`~nn.dropout.dropout`): in training each unit is zeroed with
    probability ``rate`` and the survivors are scaled by ``1 / (1 - rate)``, so inference
    needs no rescaling and is the identity."""

    name = "dropout"

    def __init__(self, rate: float = 0.5) -> None:
        if not _real(rate) or not 0 <= rate < 1:
            raise ValueError(f"Dropout: rate must be a number in [0, 1), received {rate!r}")
        self.rate = float(rate)

    def forward(
        self,
        params: Params,
        x: Array,
        *,
        state: State,
        train: bool,
        rng: np.random.Generator | None,
    ) -> tuple[Array, LayerVJP, State]:
        if not train or self.rate == 0:
            y, vjp = self.apply(params, x)
            return y, vjp, state
        if rng is None:
            raise ValueError("Dropout: training mode needs an rng (a seed or a Generator)")
        mask = dropout_mask(rng, x.shape, self.rate)  # (N, ...) booleans
        y, op_vjp = dropout(x, rate=self.rate, mask=mask)
        return y, lambda g: (op_vjp(g)[0], {}), state

    def library_ops(self) -> tuple[OpFn, ...]:
        return (dropout,)

    def config(self) -> dict[str, Any]:
        return {"layer": self.name, "rate": self.rate}


class BatchNorm(Layer):
    """Batch normalization per channel (C, H, W inputs) or per feature (D inputs).

    Parameters ``gamma`` (ones) and ``beta`` (zeros); state ``running_mean`` (zeros) and
    ``running_var`` (ones), updated in training as ``(1 - momentum) running + momentum batch``
    (PyTorch's convention). :meth:`apply` is the training-mode function of the parameters,
    normalized by the batch's statistics; :meth:`forward` adds the running averages and the
    inference mode.
    """

    name = "batch_norm"

    def __init__(self, *, momentum: float = 0.1, eps: float = 1e-5) -> None:
        if not _real(momentum) or not 0 < momentum <= 1:
            raise ValueError(
                f"BatchNorm: momentum must be a number in (0, 1], received {momentum!r}"
            )
        if not _real(eps) or not 0 < eps < np.inf:
            raise ValueError(f"BatchNorm: eps must be a finite number > 0, received {eps!r}")
        self.momentum, self.eps = float(momentum), float(eps)

    @staticmethod
    def channels(in_shape: Shape) -> int:
        if len(in_shape) not in (1, 3):
            raise ShapeError(
                f"BatchNorm: expects features (N, D) or images (N, C, H, W), so in_shape must "
                f"be (D,) or (C, H, W), received in_shape {in_shape}"
            )
        return in_shape[0]

    def init(self, rng: np.random.Generator, in_shape: Shape, dtype: Any = np.float32) -> Params:
        c = self.channels(in_shape)
        return {"gamma": np.ones(c, dtype), "beta": np.zeros(c, dtype)}  # (C,), (C,)

    def init_state(self, in_shape: Shape, dtype: Any = np.float32) -> State:
        c = self.channels(in_shape)
        return {"running_mean": np.zeros(c, dtype), "running_var": np.ones(c, dtype)}

    def apply(self, params: Params, x: Array) -> tuple[Array, LayerVJP]:
        y, vjp = batch_norm(_as_images(x), params["gamma"], params["beta"], eps=self.eps)
        return self._wrap(x, y, vjp)

    def forward(
        self,
        params: Params,
        x: Array,
        *,
        state: State,
        train: bool,
        rng: np.random.Generator | None,
    ) -> tuple[Array, LayerVJP, State]:
        x4 = _as_images(x)  # (N, C, H, W); features (N, D) become (N, D, 1, 1)
        if train:
            y, vjp = batch_norm(x4, params["gamma"], params["beta"], eps=self.eps)
            mean, var = batch_moments(x4)  # (C,), (C,)
            running = update_running(
                state["running_mean"],
                state["running_var"],
                mean,
                var,
                momentum=self.momentum,
                count=x4.size // x4.shape[1],
            )  # count: the N H W values of each channel; fmt: skip
            state = {"running_mean": running[0], "running_var": running[1]}
        else:
            y, vjp = batch_norm_inference(
                x4, params["gamma"], params["beta"],
                mean=state["running_mean"], var=state["running_var"], eps=self.eps,
            )  # fmt: skip
        return (*self._wrap(x, y, vjp), state)

    @staticmethod
    def _wrap(x: Array, y: Array, vjp: Any) -> tuple[Array, LayerVJP]:
        def bn_vjp(g: Array) -> tuple[Array, Params]:
            dx, dgamma, dbeta = vjp(g.reshape(y.shape))
            return dx.reshape(x.shape), {"gamma": dgamma, "beta": dbeta}

        return y.reshape(x.shape), bn_vjp

    def library_ops(self) -> tuple[OpFn, ...]:
        return (batch_norm, batch_norm_inference)

    def config(self) -> dict[str, Any]:
        return {"layer": self.name, "momentum": self.momentum, "eps": self.eps}


def _real(v: Any) -> bool:
    """A real number, not a bool (True would silently mean 1) nor a string from a config."""
    return isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)


def _as_images(x: Array) -> Array:
    if not isinstance(x, np.ndarray) or x.ndim == 4:
        return x  # not an array: the op refuses it by name
    return x.reshape(*x.shape, 1, 1)  # (N, D) -> (N, D, 1, 1)
