"""The non-finite guard: where did the first NaN or inf come from?

Every training step checks, by one BLAS dot product each, every layer's output, the loss
and every parameter gradient (:mod:`nn.step`; :func:`squared_norms` gives the gradients'
squares, which the gradient-health log needs anyway). Only when one of them is not finite
does :func:`locate_nonfinite` run the batch again (:func:`nn.trace.trace`, same dropout
masks) and walk it in the order the arrays were computed:

1. the input batch, 2. the parameters, 3. each layer's output, first layer first,
4. the loss, 5. the loss's gradient, then each layer's parameter gradients and ``dx``,
last layer first.

The first non-finite array is the finding: which layer, which op, which array, how many of
its entries are NaN or inf, the largest finite magnitude, and the range of the input that
produced it. :class:`~nn.errors.DivergenceError` carries it as ``error.finding``.

>>> from nn.model import mlp
>>> model = mlp([3, 2], activation="relu")
>>> params = model.init(0)
>>> params["dense0.w"][0, 0] = np.inf
>>> x, y = np.ones((4, 3), np.float32), np.array([0, 1, 0, 1])
>>> print(locate_nonfinite(model, params, (x, y)).describe())  # doctest: +ELLIPSIS
the parameter dense0.w of layer dense0 (op linear) is not finite: 1 inf in 6 entries ...
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING

import numpy as np

from nn.clip import global_norm
from nn.errors import DivergenceError
from nn.layers import Params, State
from nn.op import Array
from nn.trace import op_names, trace

if TYPE_CHECKING:
    from nn.model import Batch, Rng, Sequential


@dataclass(frozen=True)
class Finding:
    """The first non-finite array of a step, and what produced it."""

    where: str  # "input", "parameters", "forward", "loss", "backward"
    layer: str | None  # the layer's name, such as "dense2"; None for the input and the loss
    op: str  # the op that computed the array, such as "linear"
    array: str  # what it is: "x", "w", "output", "loss", "d loss/d output", "dw", "dx"
    size: int
    nan: int
    inf: int
    max_abs: float  # the largest magnitude among the finite entries (nan if none is finite)
    input_range: tuple[float, float] | None  # finite range of the input that produced it
    hint: str  # the likely cause

    @property
    def nonfinite_fraction(self) -> float:
        return (self.nan + self.inf) / max(self.size, 1)

    def describe(self) -> str:
        """One sentence: where, which op, the statistics, and the likely cause."""
        subject = {
            "input": "the input batch x",
            "parameters": f"the parameter {self.array} of layer {self.layer} (op {self.op})",
            "forward": f"the output of layer {self.layer} (op {self.op})",
            "loss": f"the loss ({self.op})"
            if self.array == "loss"
            else f"the loss's gradient d loss/d output ({self.op})",
            "backward": f"the gradient {self.array} of layer {self.layer} (op {self.op})",
        }[self.where]
        counts = " and ".join(
            f"{n} {kind}" for n, kind in ((self.nan, "NaN"), (self.inf, "inf")) if n
        )
        if self.size == 1:  # a scalar, such as the loss
            text = f"{subject} is {'NaN' if self.nan else 'inf'}"
        else:
            text = f"{subject} is not finite: {counts} in {self.size} entries"
            text += f" ({100 * self.nonfinite_fraction:.3g}%)"
        if math.isfinite(self.max_abs):
            text += f"; max |finite entry| {self.max_abs:.3g}"
        if self.input_range is not None:
            lo, hi = self.input_range
            text += f"; its input ranged over [{lo:.3g}, {hi:.3g}]"
        return f"{text}. {self.hint}"


def squared_norms(grads: Mapping[str, Array]) -> dict[str, float]:
    """``name -> sum of squares`` of each array (:func:`nn.clip.global_norm` squared: one BLAS
    dot each, this runs every step).

    A NaN or inf entry makes its sum non-finite; a huge or tiny but finite array gets its
    exact finite sum (its float32 squares would overflow or underflow), so a huge gradient
    is reported as huge, not as non-finite.
    """
    # n * n, not n ** 2: a float64 norm above 1e154 squares to inf instead of raising
    return {name: n * n for name, g in grads.items() for n in [global_norm({name: g})]}


def locate_nonfinite(
    model: Sequential,
    params: Params,
    batch: Batch,
    *,
    state: State | None = None,
    train: bool = False,
    rng: Rng = None,
) -> Finding | None:
    """The first non-finite array of one forward and backward pass, or None if all are finite.

    Pass the arguments of the failed step (for dropout, a generator in the state it had
    before the step, so the masks are the same).
    """
    x, _ = batch
    if (f := _check(x, "input", None, "input", "x", None, _DATA)) is not None:
        return f
    ops = [", ".join(op_names(layer)) for layer in model.layers]
    op_of = dict(zip(model.names, ops, strict=True))
    for key, w in params.items():  # in the model's order
        name = key.partition(".")[0]
        if (f := _check(w, "parameters", name, op_of[name], key, None, _PARAMS)) is not None:
            return f
    t = trace(model, params, batch, state=state, train=train, rng=rng)
    for i, y in enumerate(t.outputs):
        f = _check(y, "forward", t.names[i], ops[i], "output", t.inputs[i], _FORWARD)
        if f is not None:
            return f if f.inf else replace(f, hint=_NAN)
    hint = _LOSS_OWN if model.loss_fn is not None else _LOSS_LARGE
    for array, value in (("loss", np.asarray(t.loss)), ("d loss/d output", t.dout)):
        f = _check(value, "loss", None, model.loss_name, array, t.outputs[-1], hint)
        if f is not None:
            return f
    for i in reversed(range(len(t.names))):
        own = [("d" + k.partition(".")[2], g) for k, g in t.grads.items()
               if k.partition(".")[0] == t.names[i]]  # fmt: skip
        for key, g in [*own, ("dx", t.dinputs[i])]:
            f = _check(g, "backward", t.names[i], ops[i], key, t.inputs[i], _BACKWARD)
            if f is not None:
                return f if f.inf else replace(f, hint=_NAN_VJP)
    return None


_DATA = "The data holds NaN or inf: check how the images were loaded and scaled."
_PARAMS = (
    "An earlier update made the weights non-finite: the learning rate is too large for the "
    "loss scale (lower [optimizer] lr, set [optimizer] clip_norm, or [train] nonfinite = "
    '"rollback").'
)
_FORWARD = (
    "The op overflowed on large inputs or weights: usually a learning rate too large for the "
    "loss scale, or inputs that were not scaled to [0, 1]."
)
_LOSS_OWN = (
    "The network's outputs were finite, so the loss itself overflowed or took log(0): compute "
    "the log-probabilities by log-sum-exp (nn.losses.softmax_cross_entropy) instead of "
    "log(softmax(x))."
)
_LOSS_LARGE = (
    "The network's outputs were finite but so large that the loss overflowed float32: the "
    "weights grew too fast, the learning rate is too large for the loss scale (lower "
    '[optimizer] lr, set [optimizer] clip_norm, or [train] nonfinite = "rollback").'
)
_NAN = (
    "The op made NaN without an inf: 0/0, inf - inf, or the log or square root of a negative "
    "number inside it. A library op does that only on NaN inputs; an op of your own should be "
    "checked at these inputs (nn.testing.check_vjp)."
)
_NAN_VJP = (
    "The op's gradient made NaN without an inf although its forward pass was finite: a 0/0 "
    "in its vjp, such as the derivative of sqrt or abs at 0. Check an op of your own there "
    "(nn.testing.check_vjp at the inputs that failed)."
)
_BACKWARD = (
    "The gradient overflowed although the forward pass was finite: the loss scale or the "
    "weights are too large (lower [optimizer] lr or set [optimizer] clip_norm)."
)


def _check(
    a: Array, where: str, layer: str | None, op: str, array: str, source: Array | None, hint: str
) -> Finding | None:
    """A Finding if ``a`` holds a NaN or an inf, with its statistics; else None."""
    a = np.asarray(a)
    finite = np.isfinite(a)
    if finite.all():
        return None
    nan = int(np.count_nonzero(np.isnan(a)))
    good = a[finite]
    return Finding(
        where=where,
        layer=layer,
        op=op,
        array=array,
        size=int(a.size),
        nan=nan,
        inf=int(a.size - good.size - nan),
        max_abs=float(np.max(np.abs(good))) if good.size else math.nan,
        input_range=_finite_range(source),
        hint=hint,
    )


def _finite_range(a: Array | None) -> tuple[float, float] | None:
    if a is None:
        return None
    good = np.asarray(a)[np.isfinite(a)]
    return (float(good.min()), float(good.max())) if good.size else None


MAX_SKIPS = 10  # batches in a row: then the parameters themselves are bad, not one batch
MAX_ROLLBACKS = 10  # in a whole run: the learning rate has then been divided by 2**10


class Guard:
    """What the trainer does when a step is not finite, by policy:

    - ``"raise"``: :class:`~nn.errors.DivergenceError` with the :class:`Finding`;
    - ``"skip"``: drop the batch (no update, no change of state) and go on; after
      :data:`MAX_SKIPS` batches in a row, raise;
    - ``"rollback"``: go back to the parameters, optimizer state and running statistics of the
      start of the epoch (the last checkpoint), halve the learning rate for the rest of the
      run, and go on with the next batch; after :data:`MAX_ROLLBACKS`, raise.

    The state it needs to resume exactly (``lr_scale``) is in each epoch's record.
    """

    def __init__(self, policy: str, *, lr_scale: float = 1.0, rollbacks: int = 0) -> None:
        self.policy, self.lr_scale, self.rollbacks = policy, lr_scale, rollbacks
        self.skips_in_a_row = 0
        self.events: list[str] = []  # this epoch's diagnoses, for its record
        self.saved: tuple[Params, dict[str, Array], State] | None = None

    def start_epoch(self, params: Params, opt_state: dict[str, Array], stats: State) -> None:
        """Remember the state to roll back to (references suffice: updates are pure). Skips
        are counted in a row within an epoch, so a resumed run counts as the whole one."""
        self.saved, self.events, self.skips_in_a_row = (params, opt_state, stats), [], 0

    def passed(self) -> None:
        self.skips_in_a_row = 0

    def failed(
        self, finding: Finding | None, where: str
    ) -> tuple[Params, dict[str, Array], State] | None:
        """Apply the policy to a failed step (``where``: "step 7 (epoch 1, ...)"); returns the
        state to go on from for a rollback, None for a skip; raises for "raise"."""
        text = f"{where}: " + (
            finding.describe() if finding is not None
            else "the loss or the gradient is not finite, but running the batch again gave "
            "finite arrays everywhere (a non-deterministic layer?)"
        )  # fmt: skip
        self.events.append(text)
        if self.policy == "skip":
            self.skips_in_a_row += 1
            if self.skips_in_a_row < MAX_SKIPS:
                return None
            text = (f"{MAX_SKIPS} batches in a row were not finite, so the parameters "
                    f"themselves are likely bad; the last: {text}")  # fmt: skip
        elif self.policy == "rollback":
            self.rollbacks += 1
            if self.rollbacks <= MAX_ROLLBACKS and self.saved is not None:
                self.lr_scale /= 2
                return self.saved
            text = f"still diverging after {MAX_ROLLBACKS} rollbacks: {text}"
        raise DivergenceError(text, finding)
