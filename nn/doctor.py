r"""The doctor: one batch through a network, layer by layer, and what looks wrong.

:func:`diagnose` runs a batch with :func:`nn.trace.trace` in inference mode (dropout off, batch
norm on its running statistics: the function the network computes) and measures each layer:
its output's mean and standard deviation; for sigmoid and tanh layers the fraction of
*saturated* entries, where the derivative has all but vanished,

.. math::

    \sigma:\; y < 0.01 \text{ or } y > 0.99 \;\Rightarrow\; \sigma'(z) = y(1-y) < 0.0099
    \approx 0.04\,\sigma'(0), \qquad
    \tanh:\; |y| > 0.99 \;\Rightarrow\; \tanh'(z) = 1 - y^2 < 0.02 \tanh'(0);

for ReLU layers the fraction of *dead* units (a unit is one feature of the output without the
batch axis; it is dead when it is 0 for every example, so its gradient is 0 for the whole
batch); the norm of the layer's parameter gradients; the norm of the cotangent reaching its
input, :math:`\|\partial L / \partial x\|`, which shows how the gradient propagates down; and
the fraction of non-finite entries. Given an optimizer and a learning rate, it also takes one
trial step from a fresh optimizer state (the parameters are not changed) and reports the loss
on the same batch after it and each layer's step size :math:`\|\Delta\theta\| / \|\theta\|`.

The findings and their thresholds (:mod:`nn.doctor_rules`), measured on the shipped configs at
initialization and trained, and on broken networks:

- ``nonfinite``: the first NaN or inf (:func:`nn.guard.locate_nonfinite` names the layer).
- ``saturated``: more than half of a sigmoid or tanh layer's entries saturated (0% in the
  classic 784-30-10 net at initialization).
- ``dead_relu``: more than half of a ReLU layer's units dead (up to 18% at initialization,
  where convolutions see MNIST's empty borders, and 39% in a trained CNN).
- ``vanishing``: the gradient of the first parameterized layer, or the cotangent reaching the
  network's input, below :data:`VANISHING` times the last parameterized layer's (healthy nets:
  0.34 or more; five sigmoid layers of Glorot weights: 0.005; ten: 1e-6).
- ``exploding``: the output's standard deviation, or the gradient, growing more than
  :data:`EXPLODING` times from the first parameterized layer to the last (healthy: 17 at most,
  a trained CNN's logits; N(0, 1) weights in the default MLP: 400).
- ``init_scale``: a dense or conv weight whose standard deviation is over :data:`INIT_FACTOR`
  times, or (at initialization) under 1/:data:`INIT_FACTOR` of, the He std
  :math:`\sqrt{2/n_\mathrm{in}}` when a ReLU follows, the Glorot std
  :math:`\sqrt{2/(n_\mathrm{in} + n_\mathrm{out})}` otherwise (not checked when batch norm
  follows: it rescales the output anyway).
- ``lr_too_large``: the trial step made the loss non-finite, raised it more than
  :data:`LOSS_RISE` times, or moved a layer's parameters by more than :data:`LARGE_STEP`
  times their norm (the classic config's first step moves its last layer by 0.7 of its norm
  and is fine: a small sigmoid network trained with a large learning rate).

>>> from nn.model import mlp
>>> model = mlp([20, 16, 3], activation="sigmoid")
>>> x, y = np.random.default_rng(0).random((32, 20), np.float32), np.arange(32) % 3
>>> d = diagnose(model, model.init(0), (x, y))
>>> [row.name for row in d.rows], d.findings
(['dense0', 'sigmoid1', 'dense2'], [])
>>> params = model.init(0)
>>> params["dense0.w"] = np.random.default_rng(1).standard_normal((20, 16)).astype(np.float32)
>>> [(f.kind, f.layer) for f in diagnose(model, params, (x, y)).findings]
[('init_scale', 'dense0')]
"""

from __future__ import annotations

import math
import sys
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from nn.data import load_mnist
from nn.doctor_rules import (
    EXPLODING,
    INIT_FACTOR,
    KINDS,
    LARGE_STEP,
    LOSS_RISE,
    PROBLEM_FRACTION,
    SATURATED_SIGMOID,
    SATURATED_TANH,
    TARGET_STEP,
    VANISHING,
    Finding,
    activation_kind,
    findings,
)
from nn.errors import DataError
from nn.layers import Params, State
from nn.op import Array
from nn.trace import Trace, op_names, trace

if TYPE_CHECKING:
    from nn.model import Batch, Sequential
    from nn.optim import Optimizer

__all__ = [
    "EXPLODING", "INIT_FACTOR", "KINDS", "LARGE_STEP", "LOSS_RISE", "PROBLEM_FRACTION",
    "SATURATED_SIGMOID", "SATURATED_TANH", "TARGET_STEP", "VANISHING", "Diagnosis", "Finding",
    "Row", "dead_fraction", "diagnose", "doctor", "saturated_fraction",
]  # fmt: skip


@dataclass(frozen=True)
class Row:
    """One layer's measurements; ``None`` where a measure does not apply to the layer."""

    name: str
    ops: list[str]
    shape: tuple[int, ...]  # the output's shape without the batch axis
    mean: float  # over the output's finite entries
    std: float
    saturated: float | None  # sigmoid and tanh layers: the fraction of saturated entries
    dead: float | None  # relu layers: the fraction of units that are 0 for every example
    grad_norm: float | None  # ||d loss / d the layer's parameters||, if it has any
    dx_norm: float  # ||d loss / d the layer's input||
    nonfinite: float  # the fraction of the output's entries that are NaN or inf
    step: float | None = None  # the trial step: ||delta theta|| / ||theta||


@dataclass
class Diagnosis:
    """What :func:`diagnose` measured; ``str()`` gives the table and one line per finding."""

    rows: list[Row]
    findings: list[Finding]
    loss: float
    batch_size: int
    trace: Trace = field(repr=False)
    lr: float | None = None  # the trial step's learning rate, if one was taken
    loss_after: float | None = None  # the loss on the same batch after the trial step

    def __str__(self) -> str:
        head = f"one batch of {self.batch_size}: loss {self.loss:.4g}"
        if self.lr is not None:
            head += f"; after one step at lr {self.lr:g}: {self.loss_after:.4g}"
        cols = ["layer", "ops", "output", "mean", "std", "sat.", "dead", "|grad|", "|dx|",
                "step/|w|", "nonfinite"]  # fmt: skip
        table = [cols] + [_cells(r) for r in self.rows]
        widths = [max(len(line[i]) for line in table) for i in range(len(cols))]
        lines = [head] + [
            "  ".join(c.ljust(w) if i < 3 else c.rjust(w)
                      for i, (c, w) in enumerate(zip(line, widths, strict=True))).rstrip()
            for line in table
        ]  # fmt: skip
        lines += [f"{f.kind}: {f.message}" for f in self.findings] or ["no problems found"]
        return "\n".join(lines)


def diagnose(
    model: Sequential,
    params: Params,
    batch: Batch,
    *,
    state: State | None = None,
    optimizer: Optimizer | None = None,
    lr: float | None = None,
    trained: bool = False,
) -> Diagnosis:
    """Measure every layer on one batch and list what looks wrong (see the module's text).

    ``optimizer`` and ``lr`` together add a trial step from ``optimizer.init(params)``;
    ``params`` are left as they are. ``trained=True`` says the weights come from training: a
    weight far smaller than its initializer's scale is then normal (weight decay shrinks the
    weights of pixels that are always 0), and a large one is blamed on training.
    """
    with np.errstate(all="ignore"):  # NaN and inf are measured here, not warned about
        t = trace(model, params, batch, state=state)
        rows = [_row(model, t, i) for i in range(len(t.names))]
        after = None
        if optimizer is not None and lr is not None and _finite(t):
            new, _ = optimizer.update(params, t.grads, optimizer.init(params), lr=lr)
            after = model.loss(new, batch, state=state)[0]
            rows = [_with_step(r, params, new) for r in rows]
        found = findings(model, params, batch, state, rows, t.loss, after, lr, trained)
    taken = lr if after is not None else None
    return Diagnosis(rows, found, t.loss, len(batch[0]), t, taken, after)


def saturated_fraction(y: Array, kind: str) -> float:
    """The fraction of a sigmoid's (``kind="sigmoid"``) or tanh's output entries where the
    derivative is under 4% (sigmoid) or 2% (tanh) of its largest value.

    >>> saturated_fraction(np.array([0.005, 0.5, 0.995, 0.2]), "sigmoid")
    0.5
    >>> saturated_fraction(np.array([-0.995, 0.5, 0.98, 0.0]), "tanh")
    0.25
    """
    if kind == "sigmoid":
        return float(np.mean((y < SATURATED_SIGMOID) | (y > 1 - SATURATED_SIGMOID)))
    return float(np.mean(np.abs(y) > SATURATED_TANH))


def dead_fraction(y: Array) -> float:
    """The fraction of units (the features of ``y`` (N, ...) without the batch axis) that are
    0 for every example: their ReLU passes no gradient for the whole batch.

    >>> dead_fraction(np.array([[0.0, 1.0, 0.0], [0.0, 0.0, 2.0]]))  # unit 0 is dead
    0.3333333333333333
    """
    return float(np.mean(np.all(y == 0, axis=0))) if len(y) else 0.0


def norm(arrays: Array | list[Array]) -> float:
    """The 2-norm of an array, or of several as one vector, summed in float64 (no overflow)."""
    items = arrays if isinstance(arrays, list) else [arrays]
    return math.sqrt(sum(float(np.sum(np.square(a, dtype=np.float64))) for a in items))


def own(arrays: Params, name: str) -> list[Array]:
    """The arrays of layer ``name`` (``"dense0.w"`` and ``"dense0.b"`` for ``"dense0"``)."""
    return [v for k, v in arrays.items() if k.partition(".")[0] == name]


def _row(model: Sequential, t: Trace, i: int) -> Row:
    y, layer = t.outputs[i], model.layers[i]
    good = y[np.isfinite(y)].astype(np.float64)
    kind = activation_kind(layer)
    grads = own(t.grads, t.names[i])
    return Row(
        name=t.names[i], ops=op_names(layer), shape=tuple(y.shape[1:]),
        mean=float(good.mean()) if good.size else math.nan,
        std=float(good.std()) if good.size else math.nan,
        saturated=saturated_fraction(y, kind) if kind in ("sigmoid", "tanh") else None,
        dead=dead_fraction(y) if kind == "relu" else None,
        grad_norm=norm(grads) if grads else None, dx_norm=norm(t.dinputs[i]),
        nonfinite=1 - good.size / max(y.size, 1),
    )  # fmt: skip


def _with_step(row: Row, old: Params, new: Params) -> Row:
    """``row`` with the trial step's size ||new - old|| / ||old|| over the layer's arrays."""
    before = own(old, row.name)
    if not before or norm(before) == 0:
        return row
    delta = [b - a for a, b in zip(before, own(new, row.name), strict=True)]
    return replace(row, step=norm(delta) / norm(before))


def _finite(t: Trace) -> bool:
    return math.isfinite(t.loss) and all(math.isfinite(norm(g)) for g in t.grads.values())


def _cells(r: Row) -> list[str]:
    def pct(v: float | None) -> str:
        return "-" if v is None else f"{100 * v:.3g}%"

    def sci(v: float | None) -> str:
        return "-" if v is None else f"{v:.2e}"

    return [r.name, ",".join(r.ops), str(r.shape), f"{r.mean:.4g}", f"{r.std:.4g}",
            pct(r.saturated), pct(r.dead), sci(r.grad_norm), sci(r.dx_norm), sci(r.step),
            pct(r.nonfinite)]  # fmt: skip


def doctor(
    target: str,
    *,
    data_dir: str | None = None,
    batch_size: int | None = None,
    png: str | None = None,
    seed: int | None = None,
    overrides: list[str] | None = None,
    log: Callable[[str], None] = print,
) -> Diagnosis:
    """``python -m nn doctor``: diagnose a run folder's trained network, or a config's at
    initialization, on the first ``batch_size`` MNIST training images (default: the config's
    ``[train] batch_size``), prepared as the trainer prepares them; print the table and write
    the histograms to ``png`` (for a run, ``RUN/doctor.png`` by default)."""
    from nn.build import build_model, build_optimizer, images_to_inputs
    from nn.config import Config
    from nn.datasets import load_dataset
    from nn.doctor_plots import save_histograms
    from nn.run import load_model

    run = Path(target).is_dir()
    if run:
        if seed is not None or overrides:
            raise DataError(f"--seed and --set change a config, but {target} is a run "
                            f"folder with trained weights: drop them")  # fmt: skip
        cfg, model, params, state = load_model(target)
        png = str(Path(target) / "doctor.png") if png is None else png
        what = f"the trained weights of run {target}"
    else:
        cfg = Config.load(target).override(overrides or [])
        model = build_model(cfg)
        seed = cfg.train.seed if seed is None else seed
        params, state = model.init(seed), model.init_state()
        what = f"config {target} at initialization (seed {seed})"
    n = cfg.train.batch_size if batch_size is None else batch_size
    if n < 1:
        raise DataError(f"--batch-size must be an integer >= 1, received {n}")
    if cfg.data.name == "mnist":
        (images, labels), _ = load_mnist(data_dir, log=lambda line: print(line, file=sys.stderr))
    else:  # the first training strings, as the trainer reads them
        data = load_dataset(cfg, data_dir, log=lambda line: print(line, file=sys.stderr))
        images, labels = data.x_train, data.y_train
    batch = images_to_inputs(images[:n], model.input_shape), labels[:n].astype(np.int64)
    o, kind = cfg.optimizer, "MNIST training images" if cfg.data.name == "mnist" else "strings"
    log(f"{what}: {len(batch[1])} {kind}, a trial step of {o.name} at lr {o.lr:g}")
    d = diagnose(model, params, batch, state=state, optimizer=build_optimizer(cfg), lr=o.lr,
                 trained=run)  # fmt: skip
    log(str(d))
    if png is not None and (written := save_histograms(d, png, log=log)) is not None:
        log(f"histograms: {written}")
    return d
