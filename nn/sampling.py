"""P5: inputs for the gradient checks, kept away from the ops' kinks.

A finite difference that straddles a kink (relu at 0) measures the slope of neither side, so
a correct vjp would fail. Every entry is kept at least ``KINK_MARGIN`` from each declared
kink, far more than the step ``1e-6`` a unit direction moves it.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nn.op import REGISTRY, Array, OpFn, OpInfo

KINK_MARGIN = 1e-3


def info_of(fn: OpFn) -> OpInfo | None:
    """The registry entry of a registered op, or ``None`` for a user's own function."""
    info = REGISTRY.get(getattr(fn, "__name__", ""))
    return info if info is not None and fn is info.fn else None


def sample_inputs(
    fn: OpFn | OpInfo,
    *,
    seed: int = 0,
    sizes: dict[str, int] | None = None,
    loop: tuple[int, ...] = (2, 3),
    dtype: Any = np.float64,
    margin: float = KINK_MARGIN,
) -> tuple[tuple[Array, ...], dict[str, Any]]:
    """Gaussian inputs for a registered op, at least ``margin`` away from its kinks (P5).

    Core dimensions get the op's ``sample_sizes``, else distinct sizes 4, 5, 6, ... in order
    of appearance (distinct sizes expose a transposed gradient); the first input gets the
    leading ``loop`` dimensions (none for an op without loops) and the others broadcast
    against it. An op registered with ``distinct=True`` gets a first input whose entries are
    at least ``margin`` apart. Returns ``(arrays, static)``.

    >>> from nn import relu
    >>> (x,), _ = sample_inputs(relu, sizes={}, loop=(1000,))
    >>> bool(np.abs(x).min() >= 1e-3)
    True
    """
    info = fn if isinstance(fn, OpInfo) else info_of(fn)
    if info is None:
        raise ValueError(f"{fn!r} is not a registered op; build its inputs yourself")
    names = [n for core in info.signature.inputs for n in core]
    given = {**(info.sample_sizes or {}), **(sizes or {})}
    loop = loop if info.loops else ()
    for n in dict.fromkeys(names):  # the smallest size from 4 up that no dimension has yet
        if n not in given:
            given[n] = next(i for i in range(4, 100) if i not in given.values())
    rng = np.random.default_rng(seed)
    arrays = []
    for i, core in enumerate(info.signature.inputs):
        shape = (loop if i == 0 else ()) + tuple(given[n] for n in core)
        x: Array = np.asarray(rng.standard_normal(shape))
        if info.distinct and i == 0:  # evenly spaced values in random order: no near-ties
            spacing = max(margin, 4.0 / max(x.size, 1))
            x = (rng.permutation(x.size) - x.size / 2).reshape(shape) * spacing
        for kink in info.kinks:  # resample only the entries too close to a kink
            while (near := np.abs(x - kink) < margin).any():
                x[near] = rng.standard_normal(int(near.sum()))
        arrays.append(x.astype(dtype))
    static = info.static(rng, *arrays) if info.static else {}
    return tuple(arrays), static
