"""Verification of models: parts at assembly, and the whole network's gradient.

:class:`~nn.model.Sequential` accepts a layer of the library as it is (each op it is built
from has a spec page and passed the protocol in the test suite); any other layer goes
through :func:`verify_layer` when the model is built. :func:`check_model` runs the protocol on
the whole network's loss, as one function of all its parameters (P12).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import numpy as np

from nn.errors import ShapeError, VerificationError
from nn.layers import Layer, Params, Shape, State, is_library_op
from nn.op import REGISTRY, Array
from nn.report import Report
from nn.testing import check_vjp

if TYPE_CHECKING:  # the model imports this module to verify its parts
    from nn.model import Batch, Sequential

LIBRARY_LAYER_MODULES = ("nn.layers", "nn.conv_layers", "nn.norm_layers")


def _signatures(layer: Layer) -> str:
    """``" (op conv2d: (n,c,h,w),(k,c,r,s),(k)->(n,k,p,q))"`` for a layer of library ops."""
    ops = layer.library_ops() or ()
    sigs = [f"{f.__name__}: {REGISTRY[f.__name__].signature.text}" for f in ops if is_library_op(f)]
    return f" (op {'; '.join(sigs)})" if sigs else ""


def is_trusted(layer: Layer) -> bool:
    """A layer of the library itself (:mod:`nn.layers`, :mod:`nn.conv_layers`,
    :mod:`nn.norm_layers`), built only from library ops."""
    ops = layer.library_ops()
    return type(layer).__module__ in LIBRARY_LAYER_MODULES and ops is not None


def verify_layer(layer: Layer, in_shape: Shape, *, seed: int = 0, batch: int = 2) -> Report:
    """Check a layer's vjp (input and every parameter) by :func:`nn.testing.check_vjp`.

    The layer runs in float64 on a batch of Gaussian inputs of its real shape, with
    parameters from its own ``init`` moved to a general position: a bug can hide at special
    values such as a scale initialized to exactly 1 (``dx = g`` is then right by accident).
    A layer that overrides :meth:`~nn.layers.Layer.forward` is checked in both modes, as
    the model will run it: in inference, and in training with random draws fixed by
    ``seed`` (the same on every evaluation, P6) and its initial state.
    """
    rng = np.random.default_rng([seed, 0x1A7E])
    label = f"{layer.name} ({type(layer).__name__})"
    modal = type(layer).forward is not Layer.forward
    try:
        params = {k: _general_position(rng, v) for k, v in layer.init(rng, in_shape).items()}
        # state too, kept nonnegative: running statistics such as a variance must be
        state = {
            k: np.abs(_general_position(rng, v)) for k, v in layer.init_state(in_shape).items()
        }
        x = rng.standard_normal((batch, *in_shape))  # (N, *in_shape)
        checks = []
        for train in (False, True) if modal else (False,):
            as_op = _layer_as_op(layer, list(params), state, train, seed)
            as_op.__name__ = label + (" in training" if train else "")
            expected = (batch, *tuple(layer.out_shape(in_shape)))
            if (got := np.shape(as_op(x, *params.values())[0])) != expected:
                raise VerificationError(
                    f"{label}: out_shape says the output is {expected} for an input {x.shape}, "
                    f"but the layer returned {got}"
                )
            names = [f"{n} (training)" if train and modal else n for n in ["x", *params]]
            report = check_vjp(
                as_op, x, *params.values(), seed=seed, raise_on_failure=False, names=names
            )
            checks += report.checks
        return Report(label, checks)
    except (VerificationError, ShapeError):  # a ShapeError names the op, its signature, shapes
        raise
    except Exception as e:  # a layer that cannot even run is reported, not crashed into
        raise VerificationError(f"{label} could not be verified: {type(e).__name__}: {e}") from e


def _layer_as_op(
    layer: Layer, names: list[str], state: State, train: bool, seed: int
) -> Callable[..., tuple[Array, Callable[[Array], tuple[Array, ...]]]]:
    """The layer as an op of (x, *params) in one mode; a fresh generator from ``seed`` on
    every call, so dropout draws the same mask for every finite difference."""

    def as_op(x: Array, *arrays: Array) -> tuple[Array, Callable[[Array], tuple[Array, ...]]]:
        y, vjp, _ = layer.forward(
            dict(zip(names, arrays, strict=True)), x, state=state, train=train,
            rng=np.random.default_rng(seed),
        )  # fmt: skip

        def op_vjp(g: Array) -> tuple[Array, ...]:
            dx, dparams = vjp(g)
            return (dx, *(dparams[k] for k in names))

        return y, op_vjp

    return as_op


def _general_position(rng: np.random.Generator, p: Array) -> Array:
    """``p`` plus Gaussian noise of half its RMS (or of 0.5 if ``p`` is all zero), float64."""
    p = np.asarray(p, np.float64)
    rms = float(np.sqrt(np.mean(p * p))) if p.size else 0.0
    return p + 0.5 * (rms if rms > 0 else 1.0) * rng.standard_normal(p.shape)


def check_model(
    model: Sequential,
    params: Params,
    batch: Batch,
    *,
    state: State | None = None,
    train: bool = False,
    seed: int = 0,
    directions: int = 2,
) -> Report:
    """The whole network's gradient by the protocol (P2, P3): every parameter tensor alone and
    all jointly, in float64 (P12: run it at init and after some training steps).

    ``train=True`` checks the training-mode loss: dropout's masks come from ``seed`` anew on
    every evaluation, so they are the same for every finite difference (P6), and batch norm
    normalizes by the batch's statistics, whose dependence on the parameters is part of
    the gradient.

    The absolute term of P2's tolerance uses the whole gradient's norm (``atol_scale="all"``):
    in a deep sigmoid network the first layer's gradient can be 1e2-1e4 times (or more) below
    the loss, so ``1e-8 ||g_moved||`` would fall below the rounding floor ``1e-10 |f|`` of a
    central difference taken on the loss: a property of the loss, not a bug.
    """
    names = list(params)
    x = np.asarray(batch[0], np.float64)
    state64 = {k: np.asarray(v, np.float64) for k, v in (state or {}).items()}

    def network_loss(*arrays: Array) -> tuple[Array, Callable[[Array], tuple[Array, ...]]]:
        value, grads = model.loss(
            dict(zip(names, arrays, strict=True)), (x, batch[1]),
            state=state64, train=train, rng=seed,
        )  # fmt: skip
        return np.asarray(value), lambda g: tuple(g * grads[k] for k in names)

    network_loss.__name__ = "model loss"
    arrays = [np.asarray(params[k], np.float64) for k in names]
    return check_vjp(
        network_loss, *arrays, seed=seed, directions=directions, raise_on_failure=False,
        atol_scale="all", names=names,
    )  # fmt: skip


def _assembly_message(i: int, layer: Layer, report: Report) -> str:
    worst = max(report.failures, key=lambda c: np.nan_to_num(c.ratio, nan=np.inf))
    where = ", ".join(dict.fromkeys(c.input for c in report.failures))
    return (
        f"layer {i} ({layer.name}) is not a library op, so it was verified at assembly and "
        f"failed {len(report.failures)} of {len(report.checks)} checks (on {where}); worst: "
        f"{worst.message()} ({worst.ratio:.3g} x tolerance)"
    )


def param_shapes(model: Sequential) -> dict[str, Shape]:
    """``name -> shape`` of every parameter the model's layers create (by their ``init``)."""
    rng = np.random.default_rng(0)
    return {
        f"{name}.{key}": tuple(np.shape(value))
        for name, layer, shape in zip(model.names, model.layers, model.shapes, strict=False)
        for key, value in layer.init(rng, shape, np.float32).items()
    }


def check_params(model: Sequential, params: Params, expected: dict[str, Shape]) -> None:
    """ShapeError naming the layer, its op's signature and the shapes, before any arithmetic,
    if ``params`` lacks a parameter, has one too many, or one of another shape: a weight of
    the wrong shape can pass its own op (a (784, 10) ``w`` where (784, 800) was built) and
    fail only in a later layer, which would then be blamed."""
    if extra := [k for k in params if k not in expected]:
        raise ShapeError(
            f"model: params has {extra}, which no layer of this model creates; it expects "
            f"{sorted(expected)}"
        )
    for i, (name, layer) in enumerate(zip(model.names, model.layers, strict=True)):
        own = {k: v for k, v in expected.items() if k.partition(".")[0] == name}
        if missing := [k for k in own if k not in params]:
            need = ", ".join(f"{k} {own[k]}" for k in missing)
            raise ShapeError(
                f"model: params lacks {need} of layer {i} ({name}); it has {list(params)}"
            )
        if wrong := [k for k, s in own.items() if np.shape(params[k]) != s]:
            got = ", ".join(f"{k} {np.shape(params[k])}" for k in wrong)
            want = ", ".join(f"{k} {own[k]}" for k in wrong)
            x = ", ".join(map(str, model.shapes[i]))
            raise ShapeError(
                f"model: layer {i} ({name}) takes inputs (N, {x}) and needs {want}, but "
                f"params has {got}{_signatures(layer)}; were these parameters made for "
                f"another model?"
            )


def verify_loss(fn: Callable[..., tuple[Array, Any]], classes: int, *, seed: int = 0) -> Report:
    """Check a user's loss ``fn(outputs (N, K), labels (N,)) -> (value, vjp)`` by
    :func:`nn.testing.check_vjp` at random outputs of K classes (labels held fixed); a
    failure is a :class:`~nn.errors.VerificationError` naming the worst check."""
    rng = np.random.default_rng([seed, 0x1055])
    labels = np.arange(3) % classes
    out = rng.standard_normal((3, classes))  # (N, K) float64

    def loss_of_outputs(o: Array) -> tuple[Array, Any]:
        return fn(o, labels)

    loss_of_outputs.__name__ = getattr(fn, "__name__", "loss")
    try:
        report = check_vjp(loss_of_outputs, out, seed=seed, raise_on_failure=False,
                           names=["outputs"])  # fmt: skip
    except Exception as e:  # a loss that cannot even run is reported, not crashed into
        raise VerificationError(
            f"loss {loss_of_outputs.__name__} could not be verified: {type(e).__name__}: {e}"
        ) from e
    if not report.passed:
        worst = max(report.failures, key=lambda c: np.nan_to_num(c.ratio, nan=np.inf))
        raise VerificationError(
            f"loss {loss_of_outputs.__name__} is not a library loss, so it was verified at "
            f"assembly and failed: {worst.message()} ({worst.ratio:.3g} x tolerance)"
        )
    return report
