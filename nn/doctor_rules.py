"""The doctor's rules: what each finding means, its threshold and its message.

Each threshold was chosen by measuring healthy networks (the shipped default, classic and cnn
configs at initialization and trained) and broken ones (N(0, 1) weights, deep sigmoid
stacks, weights a tenth of Glorot's, learning rates 20 to 200 times too large); the figures
are next to each constant, the rules in :mod:`nn.doctor`'s documentation.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nn import activations
from nn.conv_layers import AvgPool2D, Conv2D, Flatten, MaxPool2D
from nn.guard import locate_nonfinite
from nn.init import fans
from nn.layers import Activation, Dense, Layer, Params, State
from nn.norm_layers import BatchNorm, Dropout

if TYPE_CHECKING:
    from nn.doctor import Row
    from nn.model import Batch, Sequential

KINDS = ("nonfinite", "saturated", "dead_relu", "vanishing", "exploding", "init_scale",
         "lr_too_large")  # fmt: skip
SATURATED_SIGMOID = 0.01  # y < 0.01 or y > 0.99: sigma'(z) = y (1 - y) < 0.04 sigma'(0)
SATURATED_TANH = 0.99  # |y| > 0.99: tanh'(z) = 1 - y^2 < 0.02 tanh'(0)
PROBLEM_FRACTION = 0.5  # saturated entries or dead units of a layer (healthy: dead <= 39%)
VANISHING = 1e-2  # first / last layer's gradient or input cotangent (healthy >= 0.34)
EXPLODING = 1e2  # growth of the output std or the gradient over the layers (healthy <= 17)
INIT_FACTOR = 3.0  # weight std vs He or Glorot std (healthy: 0.45 to 2.0, trained included)
LOSS_RISE = 1.1  # the trial step's loss after / before (healthy: 0.03 to 0.99)
LARGE_STEP = 2.0  # a layer's ||step|| / ||parameters|| (healthy <= 0.72: classic, lr 15)
TARGET_STEP = 0.03  # the suggested lr's largest step (the default MLP's first step: 0.031)


@dataclass(frozen=True)
class Finding:
    """One problem: its ``kind`` (one of :data:`KINDS`), the ``layer`` it concerns (None for
    the whole network), and a ``message`` naming the likely cause and a fix."""

    kind: str
    layer: str | None
    message: str


def activation_kind(layer: Layer) -> str | None:
    """``"relu"``, ``"sigmoid"`` or ``"tanh"`` for a library activation layer, else None."""
    fn = layer.fn if isinstance(layer, Activation) else None
    return next((k for k in ("relu", "sigmoid", "tanh") if fn is getattr(activations, k)), None)


def findings(
    model: Sequential,
    params: Params,
    batch: Batch,
    state: State | None,
    rows: list[Row],
    loss: float,
    after: float | None,
    lr: float | None,
    trained: bool,
) -> list[Finding]:
    """Every rule applied to the measured ``rows``: the first non-finite value, each layer's
    saturation and dead units, propagation, weight scales, then the trial step (``after``,
    the loss after a step at ``lr``)."""
    found: list[Finding] = []
    finite = math.isfinite(loss) and all(np.isfinite(w).all() for w in params.values())
    numbers = [(r.nonfinite, r.dx_norm, r.grad_norm or 0.0) for r in rows]
    if not finite or not all(v == 0 and math.isfinite(d + g) for v, d, g in numbers):
        where = locate_nonfinite(model, params, batch, state=state)
        if where is not None:
            found.append(Finding("nonfinite", where.layer, where.describe()))
    scale = _init_scale(model, params, trained)
    for i, r in enumerate(rows):
        if r.saturated is not None and r.saturated > PROBLEM_FRACTION:
            found.append(_saturated(rows, i, scale))
        if r.dead is not None and r.dead > PROBLEM_FRACTION:
            found.append(_dead(params, rows, i))
    if not found or found[0].kind != "nonfinite":  # ratios of NaN say nothing
        found += _propagation(rows, scale, found)
    found += [s.finding for s in scale.values()]
    if lr is not None and after is not None:
        found += _step(rows, loss, after, lr)
    return found


@dataclass(frozen=True)
class _Scale:
    finding: Finding
    factor: float  # the weights' std / the reference std
    cause: str  # a shorter message, quoted by a saturation finding


def _init_scale(model: Sequential, params: Params, trained: bool) -> dict[str, _Scale]:
    """Each dense or conv weight whose std is far from He's (a ReLU follows) or Glorot's."""
    out = {}
    for i, (name, layer) in enumerate(zip(model.names, model.layers, strict=True)):
        w = params.get(f"{name}.w")
        follows = _follows(model, i)
        if not isinstance(layer, (Dense, Conv2D)) or w is None or follows == "batch_norm":
            continue
        n_in, n_out = fans(w.shape)
        ref_name = "He" if follows == "relu" else "Glorot"
        ref = math.sqrt(2 / n_in) if follows == "relu" else math.sqrt(2 / (n_in + n_out))
        std = float(np.std(w, dtype=np.float64))
        factor = std / ref
        if not (factor > INIT_FACTOR or (not trained and factor < 1 / INIT_FACTOR)):
            continue
        init = "he_normal" if follows == "relu" else "glorot_uniform"
        if factor < 1:
            why = (
                f"weights this small shrink the signal layer after layer (vanishing "
                f"activations and gradients); use init = {init}"
            )
        else:
            unit = "N(0,1) weights" if 0.9 < std < 1.1 and not trained else "weights this large"
            effect = _EFFECT.get(follows or "", "make the outputs large")
            fix = _GREW if trained else f"use init = {init}"
            why = f"{unit} {effect}; {fix}"
        what = f"{name}.w has std {std:.3g}, {factor:.2g}x the {ref_name} std {ref:.2g}"
        finding = Finding("init_scale", name, f"{what} for fan_in {n_in}, fan_out {n_out}: {why}")
        cause = f"{name}.w is {factor:.2g}x the {ref_name} std for its fans: {why}"
        out[name] = _Scale(finding, factor, cause)
    return out


_EFFECT = {
    "sigmoid": "saturate sigmoid units",
    "tanh": "saturate tanh units",
    "relu": "make the activations grow layer after layer",
}
_GREW = (
    "the trained weights grew far beyond their initial scale: add weight decay or lower the "
    "learning rate"
)


def _follows(model: Sequential, i: int) -> str | None:
    """What layer ``i``'s output meets first past the layers that only move values around
    (pooling, flatten, dropout): an activation's kind, "batch_norm", or None."""
    for layer in model.layers[i + 1 :]:
        if isinstance(layer, (MaxPool2D, AvgPool2D, Flatten, Dropout)):
            continue
        return "batch_norm" if isinstance(layer, BatchNorm) else activation_kind(layer)
    return None


def _below(rows: list[Row], i: int) -> Row | None:
    """The nearest layer under layer ``i`` that has parameters."""
    return next((rows[j] for j in range(i - 1, -1, -1) if rows[j].grad_norm is not None), None)


def _saturated(rows: list[Row], i: int, scale: dict[str, _Scale]) -> Finding:
    r, below = rows[i], _below(rows, i)
    kind, bounds, limit = (
        ("sigmoid", "y < 0.01 or y > 0.99", 4) if "sigmoid" in r.ops else ("tanh", "|y| > 0.99", 2)
    )
    text = (
        f"{r.name}: {100 * (r.saturated or 0):.3g}% of its units are saturated ({bounds}, where "
        f"the derivative is under {limit}% of its largest value): almost no gradient passes them"
    )
    init = scale.get(below.name) if below else None
    if init is not None and init.factor > 1:
        return Finding("saturated", r.name, f"{text}; cause: {init.cause}")
    source = f"{below.name}'s outputs" if below else "the inputs"
    return Finding(
        "saturated",
        r.name,
        f"{text}; its inputs ({source}) have std {rows[i - 1].std if i else math.nan:.3g}, too "
        f"wide for a {kind}: scale the data to [0, 1], use glorot_uniform weights, or lower "
        f"the learning rate if trained weights grew",
    )


def _dead(params: Params, rows: list[Row], i: int) -> Finding:
    r, below = rows[i], _below(rows, i)
    dead = r.dead or 0.0
    text = f"{r.name}: {100 * dead:.3g}% of its units are 0 for every example of the batch"
    if dead == 1:
        text += ", so no gradient passes this layer and nothing below it learns"
    else:
        text += " (dead: their gradient is 0 for the whole batch)"
    b = params.get(f"{below.name}.b") if below else None
    dead_below = [q.name for q in rows[:i] if q.dead == 1]
    if dead_below:  # a layer that outputs 0 for every example: all above it is constant
        cause = (
            f"{dead_below[0]} below it is dead, so its inputs are the same for every example; "
            f"fix {dead_below[0]} first"
        )
    elif below and b is not None and b.size and float(b.mean()) < -max(rows[i - 1].std, 1e-12):
        cause = (
            f"{below.name}.b has mean {float(b.mean()):.3g}: the biases push the "
            f"pre-activations below 0; start the biases at 0"
        )
    else:
        cause = (
            "a step too large can push pre-activations below 0 for good: lower the learning "
            "rate; at initialization use he_normal weights and zero biases"
        )
    return Finding("dead_relu", r.name, f"{text}; {cause}")


def _ratio(a: float | None, b: float | None) -> float | None:
    if a is None or b is None or not (b > 0 and math.isfinite(a) and math.isfinite(b)):
        return None
    return a / b


def _propagation(rows: list[Row], scale: dict[str, _Scale], found: list[Finding]) -> list[Finding]:
    """Vanishing and exploding: the first parameterized layer against the last."""
    layers = [r for r in rows if r.grad_norm is not None]
    if len(layers) < 2:
        return []
    a, z = layers[0], layers[-1]
    grad, dx = _ratio(a.grad_norm, z.grad_norm), _ratio(rows[0].dx_norm, z.dx_norm)
    std = _ratio(z.std, a.std)
    measured = []
    if grad is not None:
        measured.append(f"the gradient of {a.name} is {grad:.2g}x that of {z.name}")
    if dx is not None:
        measured.append(f"the cotangent reaching the input {dx:.2g}x that reaching {z.name}")
    out = []
    if any(v is not None and v < VANISHING for v in (grad, dx)):
        blocked = [str(f.layer) for f in found if f.kind in ("saturated", "dead_relu")]
        small = [name for name, s in scale.items() if s.factor < 1]
        squash = [r for r in rows if r.saturated is not None]
        if blocked:
            cause = f"{', '.join(blocked)} pass almost no gradient (see above)"
        elif small:
            cause = f"the weights of {', '.join(small)} are too small (see init_scale)"
        elif squash:
            cause = (
                f"each of its {len(squash)} sigmoid/tanh layers multiplies it by the derivative, "
                f"at most 1/4 for a sigmoid; use relu with he_normal weights, or batch norm"
            )
        else:
            cause = "the weights shrink it layer after layer; add batch norm"
        text = f"the gradient vanishes on its way down: {_join(measured)}; cause: {cause}"
        out.append(Finding("vanishing", None, text))
    if any(v is not None and v > EXPLODING for v in (std, grad, dx)):
        large = [name for name, s in scale.items() if s.factor > 1]
        if large:
            cause = f"the weights of {', '.join(large)} are too large (see init_scale)"
        else:
            cause = "the weights are too large for the layers' widths (grown in training?)"
        if std is not None:
            measured.insert(0, f"the output std of {z.name} is {std:.3g}x that of {a.name}")
        text = (
            f"the signal grows layer after layer: {_join(measured)}; cause: {cause}; rescale "
            f"the weights (he_normal before relu, glorot_uniform otherwise) or add batch norm"
        )
        out.append(Finding("exploding", None, text))
    return out


def _join(parts: list[str]) -> str:
    return ", ".join(parts[:-1]) + (" and " if len(parts) > 1 else "") + parts[-1]


def _step(rows: list[Row], loss: float, after: float, lr: float) -> list[Finding]:
    """The trial step: a loss that became non-finite or rose, or a layer moved too far."""
    steps = [(r.step, r.name) for r in rows if r.step is not None and math.isfinite(r.step)]
    step, name = max(steps, default=(0.0, ""))
    rose = not math.isfinite(after) or after > LOSS_RISE * loss
    if not (rose or step > LARGE_STEP):
        return []
    if not math.isfinite(after):
        effect = f"made the loss {after:g} (from {loss:.3g})"
    else:
        effect = f"{'raised' if rose else 'took'} the loss from {loss:.3g} to {after:.3g}"
    if name:
        effect += f" and changed {name}'s weights by {100 * step:.3g}% of their norm"
    suggest = lr * min(0.1, TARGET_STEP / step) if step else lr / 10
    text = (
        f"a step at lr {lr:g} {effect}: the learning rate is too large for the loss scale; try "
        f"lr {suggest:.1g} (a step that moves no layer's weights by more than about "
        f"{100 * TARGET_STEP:g}% of their norm)"
    )
    return [Finding("lr_too_large", name or None, text)]
