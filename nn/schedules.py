"""Learning-rate schedules: pure functions of the global step (0-based) returning the lr.

A schedule is called once per update, ``lr = schedule(step)``, and handed to
``optimizer.update(..., lr=lr)``; it holds no state, so resuming a run at step ``s`` needs
nothing but ``s``. Each schedule takes an optional linear ``warmup``: for
``step < warmup`` the value is multiplied by ``(step + 1) / warmup``, which rises linearly
to 1 at ``step = warmup - 1``; warmup scales the schedule, it does not delay it.
The formulas are derived on the spec page ``spec/schedules.md``.

>>> schedule = make_schedule("step", 0.1, every=10, gamma=0.5)
>>> [schedule(s) for s in (0, 9, 10, 25)]
[0.1, 0.1, 0.05, 0.025]
>>> make_schedule(schedule.name, **schedule.config())(25)
0.025
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any

import numpy as np

from nn.optim import _real  # one hyperparameter check, one message format for both modules

__all__ = ["Constant", "CosineDecay", "StepDecay", "make_schedule"]


def _integer(who: str, arg: str, value: object, *, low: int) -> int:
    """``int(value)`` if it is an integer >= ``low``, else a named error."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{who}: {arg} must be an integer, received {value!r}")
    if value < low:
        raise ValueError(f"{who}: {arg} must be an integer >= {low}, received {value!r}")
    return int(value)


class _Schedule:
    """What the schedules share: the step check, the warmup factor, repr."""

    name: str
    lr: float
    warmup: int

    def __call__(self, step: int) -> float:
        """The learning rate for the update with 0-based number ``step``."""
        s = _integer(type(self).__name__, "step", step, low=0)
        value = self._value(s)
        if s < self.warmup:
            value *= (s + 1) / self.warmup
        return value

    def config(self) -> dict[str, Any]:
        """The constructor's keyword arguments, JSON-able.

        ``make_schedule(s.name, **s.config())`` rebuilds ``s``.
        """
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    def _value(self, step: int) -> float:
        raise NotImplementedError


class Constant(_Schedule):
    """The same learning rate at every step: ``lr``.

    >>> Constant(0.1)(0), Constant(0.1)(10**9), Constant(0.1, warmup=4)(0)
    (0.1, 0.1, 0.025)
    """

    def __init__(self, lr: float, *, warmup: int = 0) -> None:
        self.name = "constant"
        self.lr = _real("Constant", "lr", lr, low=0.0)
        self.warmup = _integer("Constant", "warmup", warmup, low=0)

    def config(self) -> dict[str, Any]:
        return {"lr": self.lr, "warmup": self.warmup}

    def _value(self, step: int) -> float:
        return self.lr


class StepDecay(_Schedule):
    r"""Multiply by ``gamma`` every ``every`` (:math:`k`) steps.

    :math:`\eta_s = \eta\, \gamma^{\lfloor s / k \rfloor}`.

    >>> [StepDecay(1.0, every=2, gamma=0.5)(s) for s in range(5)]
    [1.0, 1.0, 0.5, 0.5, 0.25]
    """

    def __init__(self, lr: float, *, every: int, gamma: float, warmup: int = 0) -> None:
        self.name = "step"
        self.lr = _real("StepDecay", "lr", lr, low=0.0)
        self.every = _integer("StepDecay", "every", every, low=1)
        self.gamma = _real("StepDecay", "gamma", gamma, low=0.0, high=1.0, open_="low")
        self.warmup = _integer("StepDecay", "warmup", warmup, low=0)

    def config(self) -> dict[str, Any]:
        return {"lr": self.lr, "every": self.every, "gamma": self.gamma, "warmup": self.warmup}

    def _value(self, step: int) -> float:
        return self.lr * self.gamma ** (step // self.every)


class CosineDecay(_Schedule):
    r"""Half a cosine from ``lr`` at step 0 down to ``final`` at step ``total``, then flat.

    :math:`\eta_s = \eta - (\eta - \eta_{\rm final})\,(1 - \cos(\pi s / T)) / 2` for
    :math:`s < T`, and :math:`\eta_{\rm final}` for :math:`s \ge T`.

    >>> schedule = CosineDecay(1.0, total=4, final=0.2)
    >>> [round(schedule(s), 4) for s in range(6)]
    [1.0, 0.8828, 0.6, 0.3172, 0.2, 0.2]
    """

    def __init__(self, lr: float, *, total: int, final: float = 0.0, warmup: int = 0) -> None:
        self.name = "cosine"
        self.lr = _real("CosineDecay", "lr", lr, low=0.0)
        self.total = _integer("CosineDecay", "total", total, low=1)
        self.final = _real("CosineDecay", "final", final, low=0.0, high=self.lr)
        self.warmup = _integer("CosineDecay", "warmup", warmup, low=0)

    def config(self) -> dict[str, Any]:
        return {"lr": self.lr, "total": self.total, "final": self.final, "warmup": self.warmup}

    def _value(self, step: int) -> float:
        if step >= self.total:
            return self.final
        drop = (1.0 - math.cos(math.pi * step / self.total)) / 2  # 0 at step 0, 1 at total
        # Written as lr minus the drop, step 0 gives lr exactly; max() stops rounding from
        # dipping below final just before total, which would break monotonicity there.
        return max(self.lr - (self.lr - self.final) * drop, self.final)


_CHOICES: dict[str, type[Constant] | type[StepDecay] | type[CosineDecay]] = {
    "constant": Constant,
    "step": StepDecay,
    "cosine": CosineDecay,
}


def make_schedule(name: str, lr: float, **kw: Any) -> Constant | StepDecay | CosineDecay:
    """The schedule called ``name`` ("constant", "step", "cosine") starting at ``lr``.

    >>> make_schedule("cosine", 0.1, total=100)
    CosineDecay(lr=0.1, total=100, final=0.0, warmup=0)
    >>> make_schedule("linear", 0.1)
    Traceback (most recent call last):
    ...
    ValueError: make_schedule: unknown name 'linear'; choose from constant, cosine, step
    """
    if name not in _CHOICES:
        raise ValueError(
            f"make_schedule: unknown name {name!r}; choose from {', '.join(sorted(_CHOICES))}"
        )
    cls = _CHOICES[name]
    accepted = sorted(set(inspect.signature(cls).parameters) - {"lr"})
    if unknown := sorted(set(kw) - set(accepted)):
        raise ValueError(
            f"make_schedule: {name!r} accepts {', '.join(accepted)}; received unknown {unknown}"
        )
    return cls(lr, **kw)
