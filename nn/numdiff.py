"""Numerical differentiation: the numbers the verifier compares a vjp against.

With ``phi(x) = <f(x), v>`` for a fixed cotangent ``v``, the vjp claims
``d/dt phi(x + t u) = <vjp(v), u>``. These functions compute the left side without
using the vjp: by central differences, by the complex step, or entry by entry.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from nn.op import Array, OpFn

CENTRAL_EPS = 1e-6
COMPLEX_H = 1e-20
DIRECTION_STREAM = 0xD1EC


def _outputs(fn: OpFn, arrays: Sequence[Array], static: dict[str, Any]) -> Array:
    out, _ = fn(*arrays, **static)
    return np.asarray(out)


def gaussian_direction(
    key: Sequence[int], arrays: Sequence[Array], moved: Sequence[int]
) -> list[Array]:
    """A Gaussian direction of unit norm over the inputs ``moved`` (zero on the others).

    ``key`` is the ``(seed, group, draw)`` a failed check reports, so the direction can be
    drawn again. Inputs with no entries get none; if nothing moves, the direction is zero.
    """
    rng = np.random.default_rng([*key, DIRECTION_STREAM])  # apart from user data seeded alike
    u = [
        np.asarray(rng.standard_normal(a.shape)) if i in moved else np.zeros(a.shape)
        for i, a in enumerate(arrays)
    ]
    norm = np.sqrt(sum(float(np.sum(d * d)) for d in u))
    return [d / norm for d in u] if norm > 0 else u


def central_difference(
    fn: OpFn,
    arrays: Sequence[Array],
    static: dict[str, Any],
    u: Sequence[Array],
    v: Array,
    eps: float = CENTRAL_EPS,
) -> float:
    """``<(f(x + eps u) - f(x - eps u)) / (2 eps), v>``: the derivative of ``<f,v>`` along ``u``."""
    plus = _outputs(fn, [a + eps * d for a, d in zip(arrays, u, strict=True)], static)
    minus = _outputs(fn, [a - eps * d for a, d in zip(arrays, u, strict=True)], static)
    # Difference the outputs before the dot product: less cancellation than phi(+) - phi(-).
    return float(np.sum((plus - minus) * v) / (2 * eps))


def complex_step(
    fn: OpFn,
    arrays: Sequence[Array],
    static: dict[str, Any],
    u: Sequence[Array],
    v: Array,
    h: float = COMPLEX_H,
) -> float:
    """``Im <f(x + i h u), v> / h``: exact to rounding, since nothing is subtracted."""
    shifted = [a.astype(np.complex128) + 1j * h * d for a, d in zip(arrays, u, strict=True)]
    return float(np.sum(_outputs(fn, shifted, static).imag * v) / h)


def numerical_jacobian(
    fn: OpFn, arrays: Sequence[Array], static: dict[str, Any], i: int, eps: float = CENTRAL_EPS
) -> Array:
    """Central-difference Jacobian of the output with respect to input ``i``: (out.size, x.size)."""
    x = arrays[i]
    if x.size == 0:
        return np.zeros((_outputs(fn, arrays, static).size, 0))
    columns = []
    for k in range(x.size):
        e = np.zeros(x.size)
        e[k] = eps
        e = e.reshape(x.shape)
        plus = [a + e if j == i else a for j, a in enumerate(arrays)]
        minus = [a - e if j == i else a for j, a in enumerate(arrays)]
        columns.append(
            (_outputs(fn, plus, static) - _outputs(fn, minus, static)).ravel() / (2 * eps)
        )
    return np.stack(columns, axis=1)


def vjp_jacobian(fn: OpFn, arrays: Sequence[Array], static: dict[str, Any], i: int) -> Array:
    """The Jacobian of input ``i`` assembled row by row from ``vjp`` of unit cotangents."""
    out, vjp = fn(*arrays, **static)
    if out.size == 0:
        return np.zeros((0, arrays[i].size))
    rows = []
    for j in range(out.size):
        e = np.zeros(out.size)
        e[j] = 1.0
        # A copy: a vjp that reuses one buffer would otherwise make every row its last one.
        rows.append(np.array(vjp(e.reshape(out.shape))[i], copy=True).ravel())
    return np.stack(rows, axis=0)
