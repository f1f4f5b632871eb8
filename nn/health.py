r"""Gradient health: per-layer gradient norms and update/weight ratios, logged every epoch.

For layer $l$ with parameter arrays $\theta_l$ (a dense layer's $w$ and $b$) and their
gradients $g_l$ at step $t$, the trainer records

.. math::

    \|g_l\|_t = \Big(\sum_{a \in \theta_l} \|g_a\|_F^2\Big)^{1/2}, \qquad
    r_l = \frac{\|\theta_l^{t} - \theta_l^{t-1}\|}{\|\theta_l^{t-1}\|}

(the norm comes from the squared norms the non-finite guard computes every step; the
update/weight ratio $r_l$, which needs a subtraction, every :data:`RATIO_EVERY` steps). Each
epoch's record in the run's history gets, per layer, the median and the largest gradient
norm and the median update/weight ratio, and a list of warnings (also issued as
:class:`~nn.errors.HealthWarning`) when

- **no gradient** reaches a layer: its gradient norm was exactly 0 at every step of the epoch
  (every ReLU above it dead, or every unit saturated);
- the gradient **vanishes**: a layer's median norm is below :data:`VANISHING` times the
  largest layer's;
- the gradient **explodes**: the epoch's largest global norm is above :data:`SPIKE` times its
  median, or the median grew more than :data:`GROWTH` times since the last epoch;
- **updates are too large**: a layer's median update/weight ratio is above :data:`LARGE_UPDATE`
  (a step moves the weights by a tenth of their size: the learning rate is too large for the
  loss scale; healthy runs of MNIST stay near 1e-3, see docs/debugging.md).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np

from nn.guard import squared_norms
from nn.layers import Params
from nn.op import Array

RATIO_EVERY = 25  # steps between update/weight ratio samples (the first step of an epoch is one)
VANISHING = 1e-4  # a layer's median gradient norm below this times the largest layer's
SPIKE = 1e3  # the largest step's global norm above this times the epoch's median
GROWTH = 1e2  # the epoch's median global norm above this times the last epoch's
LARGE_UPDATE = 0.1  # median ||update|| / ||weights|| of a layer above this


class EpochHealth:
    """Collects one epoch's gradient norms and update ratios, layer by layer."""

    def __init__(self, names: list[str]) -> None:
        self.layers = names  # parameter names' layer parts, in the model's order
        self.norms: list[list[float]] = []  # per step: each layer's gradient norm
        self.ratios: list[list[float]] = []  # per sample: each layer's update/weight ratio

    def record_step(self, sq: Mapping[str, float]) -> None:
        """One step's squared norms per parameter (from :func:`nn.guard.squared_norms`)."""
        self.norms.append([math.sqrt(v) for v in _by_layer(sq, self.layers)])

    def record_update(self, old: Params, new: Params) -> None:
        """One step's update/weight ratio per layer (a layer at exactly 0 gives inf or nan)."""
        delta = squared_norms({k: new[k] - old[k] for k in old})
        size = squared_norms(old)
        with np.errstate(divide="ignore", invalid="ignore"):
            self.ratios.append(
                [float(np.sqrt(np.float64(d) / s)) for d, s in
                 zip(_by_layer(delta, self.layers), _by_layer(size, self.layers), strict=True)]
            )  # fmt: skip

    def summary(self) -> dict[str, Any]:
        """The epoch's figures, JSON-able: per layer, median and largest gradient norm and
        median update/weight ratio, and the global norm's median and largest value."""
        if not self.norms:
            return {}
        norms = np.array(self.norms)  # (steps, layers)
        total = np.sqrt(np.sum(norms**2, axis=1))  # (steps,)
        out: dict[str, Any] = {
            "grad_norm": dict(zip(self.layers, _floats(np.median(norms, 0)), strict=True)),
            "grad_norm_max": dict(zip(self.layers, _floats(norms.max(0)), strict=True)),
            "global_grad_norm": float(np.median(total)),
            "global_grad_norm_max": float(total.max()),
        }
        if self.ratios:
            ratios = np.median(np.array(self.ratios), axis=0)
            out["update_ratio"] = dict(zip(self.layers, _floats(ratios), strict=True))
        return out


def health_warnings(epoch: int, now: dict[str, Any], before: dict[str, Any] | None) -> list[str]:
    """The warnings of :mod:`nn.health`'s rules for one epoch's :meth:`EpochHealth.summary`."""
    if "grad_norm" not in now:  # no step was recorded
        return []
    out, norms = [], now["grad_norm"]
    largest = max(norms.values())
    for layer, n in norms.items():
        if now["grad_norm_max"][layer] == 0:
            out.append(
                f"epoch {epoch}: no gradient reached {layer} (its gradient was exactly 0 at "
                f"every step): its units, or all units above it, are dead ReLUs or saturated; "
                f"run python -m nn doctor on the run"
            )
        elif n == 0:
            out.append(
                f"epoch {epoch}: the gradient of {layer} was exactly 0 in at least half of the "
                f"steps (the largest layer's median: {largest:.3g}): dead ReLUs or saturated "
                f"units above it; run python -m nn doctor on the run"
            )
        elif n < VANISHING * largest:
            out.append(
                f"epoch {epoch}: the gradient vanishes at {layer}: median norm {n:.3g}, "
                f"{n / largest:.2g} of the largest layer's ({largest:.3g})"
            )
    median, peak = now["global_grad_norm"], now["global_grad_norm_max"]
    if peak > SPIKE * median:  # a median of 0 (most steps without gradient) included
        times = f"{peak / median:.3g} x" if median else "far above"
        out.append(
            f"epoch {epoch}: the gradient exploded in a step: global norm {peak:.3g}, "
            f"{times} the epoch's median {median:.3g}; consider [optimizer] clip_norm"
        )
    last = (before or {}).get("global_grad_norm")  # None before the first epoch, or the log
    if last is not None and median > GROWTH * last:
        grew = f"{median / last:.3g} x the last epoch's" if last else "up from 0 last epoch"
        out.append(f"epoch {epoch}: the gradient norm is exploding: median {median:.3g}, {grew}")
    for layer, r in now.get("update_ratio", {}).items():
        if r > LARGE_UPDATE:
            out.append(
                f"epoch {epoch}: updates are too large at {layer}: a step changes its "
                f"parameters by {100 * r:.3g}% of their norm (healthy runs: 0.1% to 1.4%); the "
                f"learning rate is too large for the loss scale"
            )
    return out


def layer_names(params: Params) -> list[str]:
    """The layers that have parameters, in the parameters' order: ``"dense0"``, ..."""
    return list(dict.fromkeys(k.partition(".")[0] for k in params))


def _by_layer(values: Mapping[str, float], layers: list[str]) -> list[float]:
    sums = dict.fromkeys(layers, 0.0)
    for key, v in values.items():
        sums[key.partition(".")[0]] += v
    return list(sums.values())


def _floats(a: Array) -> list[float]:
    return [float(v) for v in a]
