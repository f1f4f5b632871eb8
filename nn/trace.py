"""One batch through a model, with every intermediate array kept: for diagnosis, not training.

:func:`trace` runs the same forward and backward pass as :meth:`~nn.model.Sequential.loss`
and keeps what training throws away: each layer's input and output, and the cotangent
arriving at each of them. The non-finite guard (:mod:`nn.guard`) uses it to find the first
layer where a NaN or an inf appeared; the doctor (:mod:`nn.doctor`) to measure activations
and gradients layer by layer.

>>> from nn.model import mlp
>>> model = mlp([4, 3, 2], activation="relu")
>>> params = model.init(0)
>>> t = trace(model, params, (np.ones((5, 4), np.float32), np.array([0, 1, 0, 1, 1])))
>>> t.names, [y.shape for y in t.outputs], t.dinputs[0].shape
(['dense0', 'relu1', 'dense2'], [(5, 3), (5, 3), (5, 2)], (5, 4))
>>> op_names(model.layers[0])
['linear']
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nn.layers import Layer, Params, State
from nn.op import Array

if TYPE_CHECKING:  # the model imports nothing from here
    from nn.model import Batch, Rng, Sequential


@dataclass
class Trace:
    """Every array of one forward and backward pass; index ``i`` is layer ``i``."""

    names: list[str]  # the layers' names, such as "dense0"
    inputs: list[Array]  # inputs[i]: layer i's input x; inputs[0] is the batch
    outputs: list[Array]  # outputs[i]: layer i's output y; outputs[-1] is the network's
    loss: float  # the mean loss over the batch
    dout: Array  # d loss / d network output, (N, K)
    dinputs: list[Array]  # dinputs[i]: d loss / d inputs[i] (layer i's dx)
    grads: Params  # d loss / d every parameter, as model.loss returns them
    state: State  # the state after the batch

    def doutputs(self, i: int) -> Array:
        """The cotangent of layer ``i``'s output (the ``g`` its vjp received)."""
        return self.dout if i == len(self.names) - 1 else self.dinputs[i + 1]


def trace(
    model: Sequential,
    params: Params,
    batch: Batch,
    *,
    state: State | None = None,
    train: bool = False,
    rng: Rng = None,
) -> Trace:
    """Run ``batch`` through ``model`` and keep every intermediate array.

    NumPy's overflow and invalid-value warnings are silenced: finding where a NaN or an
    inf appears is this function's caller's job, and it needs the arrays, not warnings.
    """
    x, y = batch
    outputs: list[Array] = []
    cotangents: list[Array] = []
    with np.errstate(all="ignore"):
        out, vjp, new_state = model.forward(
            params, x, state=state, train=train, rng=rng, observe=outputs.append
        )  # (N, K)
        value, loss_vjp = model.loss_value(out, y)
        dout = loss_vjp(np.ones((), dtype=out.dtype))[0]  # (N, K)
        grads = vjp(dout, cotangents=cotangents)
    return Trace(
        names=list(model.names),
        inputs=[x, *outputs[:-1]],
        outputs=outputs,
        loss=float(value),
        dout=dout,
        dinputs=cotangents[::-1],  # the vjp walks from the last layer down
        grads=grads,
        state=new_state,
    )


def op_names(layer: Layer) -> list[str]:
    """The names of the ops a layer computes with: ``["linear"]`` for a dense layer, the
    function's name for an activation, the class name for a user's own layer."""
    ops = layer.library_ops()
    if ops:
        return [getattr(f, "__name__", type(f).__name__) for f in ops]
    fn = getattr(layer, "fn", None)
    return [getattr(fn, "__name__", type(layer).__name__) if fn else type(layer).__name__]
