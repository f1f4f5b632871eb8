"""One training step under the non-finite guard: forward, backward, checks, clipping, update.

The trainer (:mod:`nn.train`) loops over batches and calls :func:`train_step`; everything a
step decides (whether its arrays are finite, whether to clip, what the policy does with a
failed step) is here, where it can be tested one step at a time.

A step is accepted only if every layer's output, the loss and every parameter gradient are
finite. Each check is one BLAS dot product of an array with itself (a NaN or an inf makes
the sum NaN or inf; a sum that overflows from huge but finite entries is checked again
entry by entry), so the guard costs about 1% of a step, for the default MLP and for the
CNN alike (``bench/guard_cost.py``). The outputs are checked as well as the loss and
the gradients because some ops squash an inf into a finite value: ``sigmoid(inf) = 1`` with
a zero derivative, ``relu(-inf) = 0``, and then neither the loss nor any gradient shows it.
A NaN in an intermediate cotangent that a ReLU then drops never reaches an update, so it
is not looked for. An update that overflows the weights is named at the next step, as
non-finite parameters.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from nn.clip import clip_by_global_norm
from nn.guard import Guard, locate_nonfinite, squared_norms
from nn.health import EpochHealth
from nn.layers import Params, State
from nn.op import Array
from nn.optim import Optimizer

if TYPE_CHECKING:
    from nn.model import Batch, Sequential


@dataclass
class StepResult:
    """The state after a step, and what happened to it."""

    params: Params
    opt_state: dict[str, Array]
    stats: State  # running statistics
    value: float  # the batch's loss (NaN or inf when the step failed)
    out: Array  # the network's outputs (N, K)
    accepted: bool  # False: the batch was dropped (policy "skip" or "rollback")
    rolled_back: bool = False  # the state is the start of the epoch's (policy "rollback")
    clipped: bool = False  # the gradient's global norm was above clip_norm


def train_step(
    model: Sequential,
    opt: Optimizer,
    params: Params,
    opt_state: dict[str, Array],
    stats: State,
    batch: Batch,
    *,
    lr: float,
    rng: np.random.Generator,
    guard: Guard,
    health: EpochHealth,
    clip: float = 0.0,
    ratio: bool = False,
    where: str = "a step",
) -> StepResult:
    """One step on ``batch`` in training mode, dropout masks drawn from ``rng``.

    A finite step records its squared gradient norms in ``health`` (and, with ``ratio``,
    the update/weight ratios), clips the gradient to global norm ``clip`` (0: off) and
    updates. A non-finite one is located (:func:`nn.guard.locate_nonfinite`, with ``rng``'s
    masks replayed) and handed to ``guard``, which raises, or returns the state to go on
    from; ``where`` names the step in its messages.
    """
    before = rng.bit_generator.state  # to replay the same dropout masks in a diagnosis
    check = FiniteCheck()
    # The guard names a NaN or an inf by layer and op: NumPy's own warnings would be noise.
    with np.errstate(all="ignore"):
        value, grads, out, new_stats = model.loss_and_outputs(
            params, batch, state=stats, train=True, rng=rng, observe=check
        )
    sq = squared_norms(grads)
    norm = math.sqrt(math.fsum(sq.values()))  # the global norm, from the same squares
    if not (math.isfinite(value) and math.isfinite(norm) and check.finite):
        replay = np.random.default_rng()
        replay.bit_generator.state = before
        finding = locate_nonfinite(model, params, batch, state=stats, train=True, rng=replay)
        restored = guard.failed(finding, where)  # raises for "raise"
        if restored is None:  # "skip": nothing changes, not even the running statistics
            return StepResult(params, opt_state, stats, value, out, accepted=False)
        return StepResult(*restored, value, out, accepted=False, rolled_back=True)
    guard.passed()
    health.record_step(sq)
    clipped = bool(clip) and norm > clip
    if clipped:
        grads, _ = clip_by_global_norm(grads, clip, norm=norm)
    new_params, opt_state = opt.update(params, grads, opt_state, lr=lr)
    if ratio:
        health.record_update(params, new_params)
    return StepResult(new_params, opt_state, new_stats, value, out, True, clipped=clipped)


class FiniteCheck:
    """Called with each layer's output as the forward pass makes it: ``finite`` says whether
    every entry of every output was finite. It keeps no reference to an output, so the guard
    does not change what memory a step holds: a list of the outputs would keep tens of MB of
    CNN activations alive through the backward pass and the update."""

    def __init__(self) -> None:
        self.finite = True

    def __call__(self, y: Array) -> None:
        if self.finite:
            self.finite = all_finite([y])


def all_finite(arrays: list[Array]) -> bool:
    """Whether every entry of every array is finite, by one BLAS dot each."""
    with np.errstate(over="ignore", invalid="ignore"):
        for a in arrays:
            flat = a.ravel()
            if not math.isfinite(float(np.dot(flat, flat))) and not np.isfinite(flat).all():
                return False
    return True
