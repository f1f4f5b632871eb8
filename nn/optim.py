"""Optimizers: pure update rules with explicit state (SGD, momentum, Nesterov, Adam).

An optimizer holds only its hyperparameters. ``init(params)`` makes its state, a flat dict of
arrays that saves to ``.npz`` and restores exactly; ``update(params, grads, state, lr=...)``
returns new parameters and a new state and never mutates its arguments. The learning rate is
an argument of every step, so a schedule (:mod:`nn.schedules`) stays outside.

State layout: ``"step"`` (int64, 0-d: the number of updates done), and per parameter ``p``
``"velocity/p"`` (momentum, Nesterov) or ``"m/p"`` and ``"v/p"`` (Adam), each with the
parameter's shape and dtype.

Every update computes in the parameter's dtype (float32 or float64): scalars are converted
to it first, since NumPy 2 would promote float32 arrays meeting NumPy float64 scalars. The
rules are derived on spec/sgd.md, momentum.md, nesterov.md, adam.md and weight_decay.md.

>>> opt = make_optimizer("sgd")
>>> params = {"w": np.array([1.0, -2.0])}
>>> state = opt.init(params)
>>> new, state = opt.update(params, {"w": np.array([0.5, 0.5])}, state, lr=0.1)
>>> new["w"].tolist(), int(state["step"])
([0.95, -2.05], 1)
"""

from __future__ import annotations

import inspect
import math
import numbers
from typing import Any

import numpy as np

from nn.errors import DataError, DTypeError, ShapeError

__all__ = ["SGD", "Adam", "Momentum", "make_optimizer"]

Array = np.ndarray[Any, Any]
Params = dict[str, Array]
State = dict[str, Array]
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
BLOCK = 1 << 15
"""Entries updated at a time. A rule is a chain of elementwise passes (Adam's is ten); run on
a whole 800 x 800 weight matrix each pass goes to memory and back, but on a block of 32768
entries (128 KB in float32) the chain's temporaries stay in the core's cache (the default
MLP's epoch: 5.3 s -> 4.4 s on one thread). The blocks run on the calling thread: handed to
nn.parallel's threads they made the epoch slower (3.45 s against 3.29 s on two cores), as
BLAS's own threads still spin for the core after each matrix product. Each entry meets
the same operations in the same order, so the result is bitwise that of whole arrays."""


def _real(
    who: str, arg: str, value: object, *, low: float, high: float = math.inf, open_: str = ""
) -> float:
    """``float(value)`` if it is a finite real in the interval, else a named error.

    ``open_`` lists the open ends: ``"low"``, ``"high"`` or both (``"low high"``).
    """
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        raise TypeError(f"{who}: {arg} must be a real number, received {value!r}")
    x = float(value)
    above = x > low if "low" in open_ else x >= low
    below = x < high if "high" in open_ else x <= high
    if not (math.isfinite(x) and above and below):
        left = "(" if "low" in open_ else "["
        right = ")" if "high" in open_ or math.isinf(high) else "]"
        raise ValueError(
            f"{who}: {arg} must be finite and in {left}{low:g}, {high:g}{right}, received {value!r}"
        )
    return x


def _names(what: str, got: set[str], expected: set[str]) -> str:
    return f"{what}: missing {sorted(expected - got)}, extra {sorted(got - expected)}"


class _Optimizer:
    """What the three optimizers share: state layout, validation, weight decay, dtype."""

    name: str
    weight_decay: float
    slots: tuple[str, ...] = ()  # per-parameter state arrays, as "<slot>/<param name>"

    def config(self) -> dict[str, Any]:
        """The constructor's keyword arguments, JSON-able: ``type(opt)(**opt.config())``."""
        raise NotImplementedError

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.config().items())
        return f"{type(self).__name__}({args})"

    def init(self, params: Params) -> State:
        """The state before the first update: ``step = 0`` and every slot zero."""
        _check_params(f"{type(self).__name__}.init", params)
        state: State = {"step": np.zeros((), dtype=np.int64)}
        for slot in self.slots:
            state.update({f"{slot}/{key}": np.zeros_like(w) for key, w in params.items()})
        return state

    def update(
        self, params: Params, grads: Params, state: State, *, lr: float
    ) -> tuple[Params, State]:
        """One step: new ``(params, state)``; the arguments are left untouched.

        ``grads`` must have the parameters' names and shapes; a gradient of another floating
        dtype is rounded to its parameter's dtype first. ``state`` must come from
        :meth:`init` (or an earlier :meth:`update`) for parameters of these names, shapes
        and dtypes.
        """
        who = f"{type(self).__name__}.update"
        rate = _real(who, "lr", lr, low=0.0)
        _check_params(who, params)
        grads = _check_grads(who, params, grads)
        _check_state(who, self, params, state)
        t = int(state["step"]) + 1  # this update's number, 1-based (Adam's bias correction)
        new_params: Params = {}
        new_state: State = {"step": np.array(t, dtype=np.int64)}
        for key, w in params.items():
            dt = w.dtype.type
            # Coupled L2 on weights only: the gradient of (lambda/2)||w||^2 joins g.
            decay = dt(self.weight_decay) if self.weight_decay > 0 and w.ndim >= 2 else None
            old = {slot: state[f"{slot}/{key}"] for slot in self.slots}
            new_params[key], slots = self._by_blocks(w, grads[key], old, dt(rate), t, decay)
            new_state.update({f"{s}/{key}": a for s, a in slots.items()})
        return new_params, new_state

    def _by_blocks(
        self, w: Array, g: Array, old: State, lr: Any, t: int, decay: Any
    ) -> tuple[Array, State]:
        """``_rule`` (after the decay term ``g + decay w``) on blocks of :data:`BLOCK` entries,
        writing into new arrays of the parameter's shape."""
        new_w = np.empty(w.shape, w.dtype)
        new = {slot: np.empty(a.shape, a.dtype) for slot, a in old.items()}
        # reshape(-1): a view of a contiguous array (a copy of any other), 0-d as (1,)
        w1, g1, out_w = w.reshape(-1), g.reshape(-1), new_w.reshape(-1)
        old1 = {slot: a.reshape(-1) for slot, a in old.items()}
        out = {slot: a.reshape(-1) for slot, a in new.items()}

        for start in range(0, w.size, BLOCK):
            part = slice(start, start + BLOCK)
            wb, gb = w1[part], g1[part]
            if decay is not None:
                gb = gb + decay * wb
            blocks_out = {"w": out_w[part], **{k: a[part] for k, a in out.items()}}
            self._rule(wb, gb, {k: a[part] for k, a in old1.items()}, lr, t, blocks_out)
        return new_w, new

    def _rule(self, w: Array, g: Array, slots: State, lr: Any, t: int, out: State) -> None:
        """The update of one block: the new ``w`` into ``out["w"]`` and each new slot into
        ``out[slot]``, each written by the last operation of its formula. Every write is
        ``casting="no"``: a result promoted to float64 is an error, never rounded away."""
        raise NotImplementedError


class SGD(_Optimizer):
    r"""Plain gradient descent: :math:`w \leftarrow w - \eta\, g` (spec/sgd.md).

    >>> p = {"w": np.array([2.0])}
    >>> new, _ = SGD().update(p, {"w": np.array([1.0])}, SGD().init(p), lr=0.5)
    >>> new["w"].tolist()
    [1.5]
    """

    def __init__(self, *, weight_decay: float = 0.0) -> None:
        self.name = "sgd"
        self.weight_decay = _real("SGD", "weight_decay", weight_decay, low=0.0)

    def config(self) -> dict[str, Any]:
        return {"weight_decay": self.weight_decay}

    def _rule(self, w: Array, g: Array, slots: State, lr: Any, t: int, out: State) -> None:
        new_w = _in_place(np.multiply, g, lr, out=out["w"])  # w - lr g
        _in_place(np.subtract, w, new_w, out=new_w)


class Momentum(_Optimizer):
    r"""Heavy-ball momentum, PyTorch's form (spec/momentum.md, spec/nesterov.md).

    Classical: :math:`v \leftarrow \beta v + g,\ w \leftarrow w - \eta v`.
    Nesterov (``nesterov=True``, name ``"nesterov"``):
    :math:`v \leftarrow \beta v + g,\ w \leftarrow w - \eta (g + \beta v)`.

    >>> opt = Momentum(beta=0.5)
    >>> p, s = {"w": np.array([0.0])}, opt.init({"w": np.array([0.0])})
    >>> for _ in range(3):
    ...     p, s = opt.update(p, {"w": np.array([1.0])}, s, lr=1.0)
    >>> s["velocity/w"].tolist(), p["w"].tolist()  # v = 1, 1.5, 1.75
    ([1.75], [-4.25])
    """

    slots = ("velocity",)

    def __init__(
        self, *, beta: float = 0.9, nesterov: bool = False, weight_decay: float = 0.0
    ) -> None:
        self.beta = _real("Momentum", "beta", beta, low=0.0, high=1.0, open_="high")
        if not isinstance(nesterov, (bool, np.bool_)):
            raise TypeError(f"Momentum: nesterov must be True or False, received {nesterov!r}")
        self.nesterov = bool(nesterov)
        self.weight_decay = _real("Momentum", "weight_decay", weight_decay, low=0.0)
        self.name = "nesterov" if self.nesterov else "momentum"

    def config(self) -> dict[str, Any]:
        return {"beta": self.beta, "nesterov": self.nesterov, "weight_decay": self.weight_decay}

    def _rule(self, w: Array, g: Array, slots: State, lr: Any, t: int, out: State) -> None:
        beta = w.dtype.type(self.beta)
        v = _in_place(np.multiply, slots["velocity"], beta, out=out["velocity"])  # v = beta v + g
        _in_place(np.add, v, g)
        step = g + beta * v if self.nesterov else v  # Nesterov: the look-ahead velocity
        new_w = _in_place(np.multiply, step, lr, out=out["w"])  # w - lr step
        _in_place(np.subtract, w, new_w, out=new_w)


class Adam(_Optimizer):
    r"""Adam with bias correction (Kingma & Ba 2015, Algorithm 1; spec/adam.md).

    :math:`m \leftarrow \beta_1 m + (1-\beta_1) g,\ v \leftarrow \beta_2 v + (1-\beta_2) g^2,\
    w \leftarrow w - \eta\, \hat m / (\sqrt{\hat v} + \epsilon)` with
    :math:`\hat m = m / (1 - \beta_1^t)`, :math:`\hat v = v / (1 - \beta_2^t)`.
    ``weight_decay`` is coupled L2 (added to ``g``), not AdamW's decoupled decay.

    >>> opt = Adam()
    >>> p = {"w": np.array([0.0, 0.0])}
    >>> new, _ = opt.update(p, {"w": np.array([-3.0, 1e-4])}, opt.init(p), lr=0.01)
    >>> new["w"].round(8).tolist()  # lr * g / (|g| + eps): the gradient's size hardly matters
    [0.01, -0.009999]
    """

    slots = ("m", "v")

    def __init__(
        self,
        *,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
        weight_decay: float = 0.0,
    ) -> None:
        self.name = "adam"
        self.beta1 = _real("Adam", "beta1", beta1, low=0.0, high=1.0, open_="high")
        self.beta2 = _real("Adam", "beta2", beta2, low=0.0, high=1.0, open_="high")
        self.eps = _real("Adam", "eps", eps, low=0.0, open_="low")
        self.weight_decay = _real("Adam", "weight_decay", weight_decay, low=0.0)

    def config(self) -> dict[str, Any]:
        return {
            "beta1": self.beta1,
            "beta2": self.beta2,
            "eps": self.eps,
            "weight_decay": self.weight_decay,
        }

    def _rule(self, w: Array, g: Array, slots: State, lr: Any, t: int, out: State) -> None:
        dt = w.dtype.type
        b1, b2 = self.beta1, self.beta2
        # The operations of the formulas in their order: m = b1 m + (1 - b1) g,
        # v = b2 v + (1 - b2) g^2, w - lr m_hat / (sqrt(v_hat) + eps).
        m = _in_place(np.multiply, slots["m"], dt(b1), out=out["m"])
        _in_place(np.add, m, np.multiply(g, dt(1.0 - b1)))
        v = _in_place(np.multiply, slots["v"], dt(b2), out=out["v"])
        g2 = np.multiply(g, g)
        _in_place(np.add, v, _in_place(np.multiply, g2, dt(1.0 - b2)))
        # m and v start at 0, so E[m_t] = (1 - b1^t) E[g]: dividing removes that bias. The
        # corrections are Python floats cast to the parameter's dtype: no float64 promotion.
        step = _in_place(np.divide, m, dt(1.0 - b1**t), out=out["w"])  # m_hat
        denom = _in_place(np.divide, v, dt(1.0 - b2**t), out=g2)  # v_hat, in g2's place
        _in_place(np.add, np.sqrt(denom, out=denom), dt(self.eps))
        _in_place(np.divide, _in_place(np.multiply, step, lr), denom)
        _in_place(np.subtract, w, step, out=step)


def _in_place(ufunc: Any, a: Any, b: Any, *, out: Array | None = None) -> Array:
    """``ufunc(a, b)`` written into ``out`` (default ``a``). ``casting="no"``: an operand of
    another dtype (a float64 promotion) is an error, never rounded away silently."""
    result: Array = ufunc(a, b, out=a if out is None else out, casting="no")
    return result


Optimizer = SGD | Momentum | Adam  # for annotations: what make_optimizer returns
_CHOICES: dict[str, type[SGD] | type[Momentum] | type[Adam]] = {
    "sgd": SGD,
    "momentum": Momentum,
    "nesterov": Momentum,
    "adam": Adam,
}


def make_optimizer(name: str, **hyper: Any) -> Optimizer:
    """The optimizer called ``name`` with hyperparameters ``hyper``.

    ``make_optimizer(opt.name, **opt.config())`` rebuilds ``opt``. ``"nesterov"`` is
    ``Momentum(nesterov=True)``.

    >>> make_optimizer("nesterov", beta=0.8)
    Momentum(beta=0.8, nesterov=True, weight_decay=0.0)
    >>> make_optimizer("adagrad")
    Traceback (most recent call last):
    ...
    ValueError: make_optimizer: unknown name 'adagrad'; choose from adam, momentum, nesterov, sgd
    """
    if name not in _CHOICES:
        raise ValueError(
            f"make_optimizer: unknown name {name!r}; choose from {', '.join(sorted(_CHOICES))}"
        )
    cls = _CHOICES[name]
    accepted = sorted(inspect.signature(cls).parameters)
    if unknown := sorted(set(hyper) - set(accepted)):
        raise ValueError(
            f"make_optimizer: {name!r} accepts {', '.join(accepted)}; received unknown {unknown}"
        )
    if name == "nesterov" and not hyper.setdefault("nesterov", True):
        raise ValueError("make_optimizer: 'nesterov' with nesterov=False; use 'momentum' instead")
    return cls(**hyper)


def _check_params(who: str, params: Params) -> None:
    for key, w in params.items():
        if not isinstance(w, np.ndarray) or w.dtype not in DTYPES:
            got = w.dtype if isinstance(w, np.ndarray) else type(w).__name__
            raise DTypeError(
                f"{who}: params[{key!r}] must be a float32 or float64 array, received {got}"
            )


def _check_grads(who: str, params: Params, grads: Params) -> Params:
    """The gradients, each as an array of its parameter's dtype (no copy when it already is)."""
    if grads.keys() != params.keys():
        raise DataError(
            _names(f"{who}: grads must have the parameters' names", set(grads), set(params))
        )
    out = {}
    for key, w in params.items():
        g = np.asarray(grads[key])
        if g.shape != w.shape:
            raise ShapeError(
                f"{who}: grads[{key!r}] has shape {g.shape}, expected {w.shape} "
                f"(the shape of params[{key!r}])"
            )
        if g.dtype.kind != "f":
            raise DTypeError(f"{who}: grads[{key!r}] must be floating point, received {g.dtype}")
        out[key] = g.astype(w.dtype, copy=False)
    return out


def _check_state(who: str, opt: _Optimizer, params: Params, state: State) -> None:
    origin = f"state must come from {type(opt).__name__}.init(params) for these params"
    expected = {"step"} | {f"{slot}/{key}" for slot in opt.slots for key in params}
    if state.keys() != expected:
        raise DataError(_names(f"{who}: {origin}", set(state), expected))
    step = np.asarray(state["step"])
    if step.shape != () or step.dtype.kind not in "iu" or step < 0:
        raise DataError(
            f"{who}: {origin}; state['step'] must be a 0-d integer >= 0, received "
            f"{step.dtype} array of shape {step.shape} {step.tolist()}"
        )
    for slot in opt.slots:
        for key, w in params.items():
            a = np.asarray(state[f"{slot}/{key}"])
            if a.shape != w.shape or a.dtype != w.dtype:
                raise DataError(
                    f"{who}: {origin}; state['{slot}/{key}'] is {a.dtype} {a.shape}, expected "
                    f"{w.dtype} {w.shape} like params[{key!r}]"
                )
