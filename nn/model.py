"""Models: a stack of layers and a loss, assembled only from verified parts.

A model is used as one pure function (DESIGN.md, "The op contract")::

    value, grads = model.loss(params, (x, y))   # grads has params' names, shapes and dtypes

so the whole network's gradient can be checked end to end by the same protocol as one op
(:func:`~nn.model_checks.check_model`).

**Modes and state.** By default a model computes in inference mode. ``train=True`` turns
on what only training does: dropout draws its masks from the ``rng`` passed in (an integer
seed gives the same masks on every call, so the training-mode loss is a deterministic
function that can be checked), and batch norm normalizes by the batch's statistics. Batch
norm's running averages are the model's *state*, separate from the parameters: gradient
descent never touches them; :meth:`Sequential.forward` returns them updated.

**Verified assembly.** :class:`Sequential` refuses a part it cannot vouch for. A layer of
:mod:`nn.layers` built from library ops (each with a spec page and passed by the test suite)
is accepted as is. Any other part, such as a user's own layer or activation, is run through
:func:`nn.testing.check_vjp` at the shape it will see, when the model is built; if a check
fails, :class:`~nn.errors.VerificationError` says which layer, which check and by how much.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, cast

import numpy as np

from nn import activations, inputs
from nn.errors import DataError, ShapeError, VerificationError
from nn.layers import Activation, Dense, Layer, LayerVJP, Params, Shape, State
from nn.losses import mean_squared_error, softmax_cross_entropy
from nn.model_checks import (  # noqa: F401  (check_model, verify_layer: used as nn.model.*)
    _assembly_message,
    _signatures,
    check_model,
    check_params,
    is_trusted,
    param_shapes,
    verify_layer,
    verify_loss,
)
from nn.op import Array
from nn.string_losses import ctc_of_logits, heads_cross_entropy, strings_read_right

# (x: (N, *input_shape) float, y: integer class labels (N,), or strings (N, L) padded with -1)
Batch = tuple[Array, Array]
LossFn = Callable[[Array, Array], tuple[Array, Callable[[Array], tuple[Array, ...]]]]
Rng = int | np.random.Generator | None  # a seed gives the same dropout masks on every call
LOSSES = ("softmax_cross_entropy", "mean_squared_error", "ctc")
ACTIVATIONS = ("relu", "sigmoid", "tanh")


class Sequential:
    """Layers applied in order, then a loss against integer class labels.

    ``loss="softmax_cross_entropy"`` reads the last layer's output as logits;
    ``loss="mean_squared_error"`` compares it with one-hot targets (the classic quadratic
    cost, usually after a sigmoid). Strings of digits (labels (N, L), -1 after each string's
    end) are read two ways: ``loss="ctc"`` takes outputs (T, K), one score vector per image
    column with the blank last, through log_softmax into :func:`~nn.ctc.ctc_loss`; and
    ``softmax_cross_entropy`` of outputs (L, K) scores L heads, each against its digit, as
    one batch of N L rows. ``loss`` may also be a user's function
    ``fn(outputs (N, K), labels (N,)) -> (value, vjp)`` with ``vjp(g) -> (d_outputs,)``,
    verified at assembly like a user's layer.

    >>> from nn.activations import relu
    >>> model = Sequential([Dense(5), Activation(relu), Dense(3)], input_shape=(4,))
    >>> params = model.init(0)
    >>> sorted(params)
    ['dense0.b', 'dense0.w', 'dense2.b', 'dense2.w']
    >>> x, y = np.ones((2, 4), np.float32), np.array([0, 2])
    >>> value, grads = model.loss(params, (x, y))
    >>> grads["dense0.w"].shape, grads["dense0.w"].dtype
    ((4, 5), dtype('float32'))
    """

    def __init__(
        self,
        layers: Sequence[Layer],
        *,
        input_shape: Shape,
        loss: str | LossFn = "softmax_cross_entropy",
        verify_seed: int = 0,
    ) -> None:
        if not callable(loss) and loss not in LOSSES:
            raise ValueError(
                f"Sequential: loss must be one of {LOSSES} or a function "
                f"fn(outputs, labels) -> (value, vjp), received {loss!r}"
            )
        if not layers:
            raise ValueError("Sequential: layers must not be empty")
        self.layers = list(layers)
        self.loss_fn = loss if callable(loss) else None
        self.loss_name = getattr(loss, "__name__", "loss") if callable(loss) else str(loss)
        self._param_shapes: dict[str, Shape] | None = None  # from the layers' init, on first use
        # A first layer whose vjp can skip dx (Conv2D.input_grad_optional): the input is data.
        self._first_skips_dx = bool(getattr(self.layers[0], "input_grad_optional", False))
        self.input_shape = inputs.check_input_shape(input_shape)
        self.shapes = [self.input_shape]  # shapes[i] is layer i's input shape (no batch axis)
        for i, layer in enumerate(self.layers):
            if not isinstance(layer, Layer):
                raise TypeError(
                    f"Sequential: layer {i} must be an nn.layers.Layer (wrap a function in "
                    f"Activation), received {type(layer).__name__}"
                )
            try:
                if not is_trusted(layer):  # its own params reach its ops here: shapes too
                    report = verify_layer(layer, self.shapes[-1], seed=verify_seed)
                    if not report.passed:
                        raise VerificationError(_assembly_message(i, layer, report))
                self.shapes.append(tuple(layer.out_shape(self.shapes[-1])))
            except ShapeError as e:
                raise ShapeError(
                    f"model: layer {i} ({layer.name}) cannot take inputs "
                    f"(N, {', '.join(map(str, self.shapes[-1]))}): {e}{_signatures(layer)}"
                ) from None
        if self.loss_name == "ctc" and len(self.shapes[-1]) != 2:
            raise ShapeError(
                f"Sequential: loss 'ctc' reads outputs (T, K), one column of K scores per step "
                f"(the blank last), but the last layer gives {self.shapes[-1]}"
            )
        self.names = [f"{layer.name}{i}" for i, layer in enumerate(self.layers)]
        for name in self.names:  # parameters are found by "<name>.<key>": names must be clean
            if "." in name or self.names.count(name) > 1:
                raise ValueError(
                    f"Sequential: layer names must be unique and without '.', so parameter "
                    f"names are unambiguous; {name!r} is not"
                )
        self.state_names = list(self.init_state())
        if self.loss_fn is not None:
            verify_loss(self.loss_fn, self.classes, seed=verify_seed)

    @property
    def classes(self) -> int:
        """K, the number of outputs (classes): the last axis of outputs (T, K) or (L, K)."""
        out = self.shapes[-1]
        return int(out[-1]) if self.loss_name == "ctc" or len(out) > 1 else int(np.prod(out))

    def init(self, seed: int | np.random.Generator, dtype: Any = np.float32) -> Params:
        """Fresh parameters, ``"<layer name><index>.<param>"`` -> array, drawn from ``seed``."""
        rng = inputs.check_seed("model.init", seed)
        dtype = inputs.check_float_dtype("model.init", dtype)
        params: Params = {}
        for name, layer, shape in zip(self.names, self.layers, self.shapes, strict=False):
            for key, value in layer.init(rng, shape, dtype).items():
                params[f"{name}.{key}"] = value
        return params

    def init_state(self, dtype: Any = np.float32) -> State:
        """Fresh state (running statistics), named like parameters; empty for most models."""
        state: State = {}
        for name, layer, shape in zip(self.names, self.layers, self.shapes, strict=False):
            for key, value in layer.init_state(shape, dtype).items():
                state[f"{name}.{key}"] = value
        return state

    def forward(
        self,
        params: Params,
        x: Array,
        *,
        state: State | None = None,
        train: bool = False,
        rng: Rng = None,
        observe: Callable[[Array], object] | None = None,
    ) -> tuple[Array, Callable[..., Params], State]:
        """``(out, vjp, new_state)``: the network's output, a vjp from its cotangent to the
        parameters' gradients, and the state after this batch (unchanged in inference).

        For inspection: ``observe`` is called with each layer's output as it is computed
        (``outputs.append`` keeps them all, as :mod:`nn.trace` does; the trainer's guard checks
        each one and keeps none, so memory stays what training needs), and
        ``vjp(g, cotangents=a_list)`` appends the cotangent of each layer's input, from the
        last layer down."""
        inputs.check_inputs(self, x)
        state = self._check_state(state)
        if self._param_shapes is None:
            self._param_shapes = param_shapes(self)
        inputs.check_mapping("model", "params", params)
        check_params(self, params, self._param_shapes)
        gen = inputs.check_rng(rng)
        vjps: list[LayerVJP] = []
        new_state: State = {}
        for name, layer in zip(self.names, self.layers, strict=True):
            own = layer_params(state, name)
            x, vjp, own = layer.forward(
                layer_params(params, name), x, state=own, train=train, rng=gen
            )
            vjps.append(vjp)
            if observe is not None:
                observe(x)
            new_state.update({f"{name}.{k}": v for k, v in own.items()})

        def model_vjp(g: Array, cotangents: list[Array] | None = None) -> Params:
            grads: Params = {}
            for name, vjp in zip(reversed(self.names), reversed(vjps), strict=True):
                if vjp is vjps[0] and cotangents is None and self._first_skips_dx:
                    # The input is data: its cotangent is never used (a conv's col2im saved)
                    _, dparams = cast(Callable[..., Any], vjp)(g, input_grad=False)
                    grads.update({f"{name}.{k}": v for k, v in dparams.items()})
                    break
                g, dparams = vjp(g)
                if cotangents is not None:
                    cotangents.append(g)
                grads.update({f"{name}.{k}": v for k, v in dparams.items()})
            return {k: grads[k] for k in params}  # the params' order

        return x, model_vjp, new_state

    def loss(
        self,
        params: Params,
        batch: Batch,
        *,
        state: State | None = None,
        train: bool = False,
        rng: Rng = None,
    ) -> tuple[float, Params]:
        """``(value, grads)``: the mean loss over the batch and its gradient for every parameter."""
        value, grads, _, _ = self.loss_and_outputs(params, batch, state=state, train=train, rng=rng)
        return value, grads

    def loss_and_outputs(
        self,
        params: Params,
        batch: Batch,
        *,
        state: State | None = None,
        train: bool = False,
        rng: Rng = None,
        observe: Callable[[Array], object] | None = None,
    ) -> tuple[float, Params, Array, State]:
        """:meth:`loss`, the network's outputs (N, K), which the trainer scores, and the state
        after the batch; ``observe`` as in :meth:`forward`."""
        x, y = inputs.check_batch(batch)
        out, vjp, new_state = self.forward(
            params, x, state=state, train=train, rng=rng, observe=observe
        )  # (N, K)
        value, loss_vjp = self.loss_value(out, y)
        g = loss_vjp(np.ones((), dtype=out.dtype))[0]  # d loss / d out: (N, K)
        return float(value), vjp(g), out, new_state

    def loss_value(
        self, out: Array, y: Array
    ) -> tuple[Array, Callable[[Array], tuple[Array, ...]]]:
        """The loss applied to outputs (N, K) and labels (N,), or to outputs (N, T, K) or
        (N, L, K) and strings (N, L): ``(value, vjp)``."""
        if self.loss_fn is not None:
            return self.loss_fn(out, y)
        inputs.check_labels(self.loss_name, out, y)
        if self.loss_name == "ctc":
            return ctc_of_logits(out, y)
        if self.loss_name == "softmax_cross_entropy" and out.ndim == 3:
            return heads_cross_entropy(out, y)
        if self.loss_name == "softmax_cross_entropy":
            return softmax_cross_entropy(out, labels=y)
        target = one_hot(y, out.shape[-1], out.dtype)  # (N, K)
        return mean_squared_error(out, target)

    def correct(self, out: Array, y: Array) -> Array:
        """(N,) bool: which outputs read their label exactly: a class for outputs (N, K),
        every head for (N, L, K), the whole string for ``ctc`` (:func:`~nn.string_losses.
        strings_read_right`). An output with a NaN or inf reads nothing right."""
        inputs.check_labels(self.loss_name, out, y)
        inputs.check_classes(out, y)
        if self.loss_name == "ctc":
            return strings_read_right(out, y)
        found = out.argmax(axis=-1)  # (N,) or (N, L)
        right = found == y if found.ndim == 1 else (found == y).all(axis=1)
        return np.asarray(right & np.isfinite(out).all(axis=tuple(range(1, out.ndim))))

    def predict(
        self, params: Params, x: Array, *, state: State | None = None, batch_size: int = 1000
    ) -> Array:
        """The network's outputs, ``(N, *model.shapes[-1])``, in inference mode, in batches
        to bound memory."""
        inputs.check_inputs(self, x)
        starts = range(0, len(x), inputs.check_batch_size(batch_size))
        outs = [self.forward(params, x[i : i + batch_size], state=state)[0] for i in starts]
        return np.concatenate(outs) if outs else np.zeros((0, *self.shapes[-1]), x.dtype)

    def _check_state(self, state: State | None) -> State:
        state = {} if state is None else state
        inputs.check_mapping("model", "state", state)
        if missing := [k for k in self.state_names if k not in state]:
            raise ValueError(
                f"model: state must hold the running statistics {missing} (from "
                f"model.init_state() or a trained run); received keys {sorted(state)}"
            )
        return state

    def config(self) -> dict[str, Any]:
        """JSON-able description of the architecture (recorded in run folders)."""
        return {
            "input_shape": list(self.input_shape),
            "loss": self.loss_name,
            "layers": [layer.config() for layer in self.layers],
        }

    def summary(self) -> str:
        """One line per layer: name, output shape, parameter count."""
        lines = [f"input {self.input_shape}"]
        params = self.init(0, np.float64)
        for name, shape in zip(self.names, self.shapes[1:], strict=True):
            count = sum(v.size for v in layer_params(params, name).values())
            lines.append(f"{name:<12} -> {shape!s:<10} {count:>9,} parameters")
        total = sum(v.size for v in params.values())
        lines.append(f"loss {self.loss_name}, {total:,} parameters")
        return "\n".join(lines)


def layer_params(params: Params, name: str) -> Params:
    """One layer's parameters under their own names: ``"dense0.w"`` -> ``"w"`` for ``dense0``."""
    return {k.partition(".")[2]: v for k, v in params.items() if k.partition(".")[0] == name}


def mlp(
    sizes: Sequence[int],
    *,
    activation: str = "relu",
    output_activation: str | None = None,
    loss: str = "softmax_cross_entropy",
    init: str | None = None,
) -> Sequential:
    """A fully connected network ``sizes[0] -> ... -> sizes[-1]`` of library parts.

    The initializer defaults to He for ReLU and Glorot otherwise (see ``spec/he.md`` and
    ``spec/glorot.md``: each keeps its activation's variance at init).

    >>> mlp([784, 30, 10], activation="sigmoid", output_activation="sigmoid",
    ...     loss="mean_squared_error").names
    ['dense0', 'sigmoid1', 'dense2', 'sigmoid3']
    """
    if len(sizes) < 2:
        raise ValueError(f"mlp: sizes needs an input and an output size, received {sizes}")
    for a in (activation, output_activation):
        if a is not None and a not in ACTIVATIONS:
            raise ValueError(f"mlp: activation must be one of {ACTIVATIONS}, received {a!r}")
    init = init or ("he_normal" if activation == "relu" else "glorot_uniform")
    layers: list[Layer] = []
    for i, units in enumerate(sizes[1:]):
        layers.append(Dense(units, init=init))
        last = i == len(sizes) - 2
        name = output_activation if last else activation
        if name is not None:
            layers.append(Activation(getattr(activations, name)))
    return Sequential(layers, input_shape=(sizes[0],), loss=loss)


def one_hot(y: Array, k: int, dtype: Any = np.float32) -> Array:
    """Integer labels (N,) -> one-hot rows (N, K); labels outside 0..K-1 raise DataError."""
    y = np.asarray(y)
    if y.ndim != 1 or y.dtype.kind not in "iu":
        raise DataError(
            f"one_hot: labels must be a 1-d integer array, received {y.dtype} {y.shape}"
        )
    if y.size and (y.min() < 0 or y.max() >= k):
        raise DataError(f"one_hot: labels must lie in 0..{k - 1}, received {y.min()}..{y.max()}")
    out = np.zeros((y.size, k), dtype=dtype)  # (N, K)
    out[np.arange(y.size), y] = 1
    return out
