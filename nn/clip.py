r"""Gradient clipping by the global norm (spec/clip_by_global_norm.md).

The gradients of all parameter arrays are treated as one vector :math:`g`, their
concatenation, whose Euclidean norm is the *global norm*

.. math::

    n = \lVert g \rVert = \sqrt{\textstyle\sum_t \sum_i g_{t,i}^2}

(:math:`t` runs over the arrays, :math:`i` over the entries of each). Clipping to
:math:`c` = ``max_norm`` multiplies every array by one scale,

.. math::

    g \leftarrow s\, g, \qquad s = \min\!\left(1, \frac{c}{n}\right),

so the clipped gradient keeps its direction and has norm :math:`\min(n, c)`: an SGD step
:math:`-\eta s g` is never longer than :math:`\eta c` (Pascanu, Mikolov & Bengio 2013).
When :math:`n \le c` nothing is computed: the same arrays come back.

This is TensorFlow's ``tf.clip_by_global_norm`` (``t * clip_norm / max(n, clip_norm)``), whose
``use_norm`` is ``norm`` here. PyTorch's ``torch.nn.utils.clip_grad_norm_`` always multiplies,
by ``min(1, max_norm / (n + 1e-6))``: its clipped norm falls short of ``max_norm`` by the
``1e-6``, and it already scales gradients whose norm is within ``1e-6`` below ``max_norm``.
Both turn a non-finite norm into NaN gradients (PyTorch unless ``error_if_nonfinite=True``);
here it is a :class:`~nn.errors.DivergenceError`, since clipping cannot repair a NaN.

>>> grads = {"w": np.array([[3.0, 0.0]]), "b": np.array([4.0])}  # n = 5
>>> global_norm(grads)
5.0
>>> clipped, n = clip_by_global_norm(grads, 2.5)
>>> clipped["w"].tolist(), clipped["b"].tolist(), n
([[1.5, 0.0]], [2.0], 5.0)
>>> same, _ = clip_by_global_norm(grads, 10.0)
>>> same["w"] is grads["w"]
True
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from typing import Any

import numpy as np

from nn.errors import DataError, DivergenceError, DTypeError

__all__ = ["clip_by_global_norm", "global_norm"]

Array = np.ndarray[Any, Any]
DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# Below this sum of squares some float32 squares may have been subnormal or flushed to zero
# (the smallest normal float32): the sum is then recomputed exactly, in float64.
_TINY = float(np.finfo(np.float32).tiny)


def global_norm(grads: Mapping[str, Array]) -> float:
    r"""The Euclidean norm of all the arrays together, :math:`\sqrt{\sum_t \sum_i g_{t,i}^2}`.

    Each array's sum of squares is one BLAS dot product in the array's dtype (this runs every
    training step); the sums are added in float64. ``grads`` maps names to float32 or float64
    arrays of any shape; an empty dict, or empty arrays, have norm 0.

    NaN and inf propagate: the norm is ``nan`` if any entry is NaN, else ``inf`` if any entry
    is infinite. A finite gradient has a finite norm, exact to float64 rounding, even when
    its squares overflow or underflow the array's dtype: then the sum is redone in float64
    with every entry scaled by one power of two (spec/clip_by_global_norm.md, Numerics).

    >>> global_norm({"w": np.array([1.0, 2.0]), "b": np.array([2.0], np.float32)})
    3.0
    >>> global_norm({"w": np.full(4, 1e20, np.float32)})  # float32 squares overflow above 1.8e19
    2.00000004e+20
    >>> global_norm({"w": np.array([1.0, np.nan])}), global_norm({"w": np.array([np.inf])})
    (nan, inf)
    """
    total = 0.0
    # A square that overflows or underflows is handled below; it is not an error here, even
    # where the caller has made NumPy raise on floating-point errors.
    with np.errstate(over="ignore", under="ignore"):
        for key, g in grads.items():
            flat = _checked("global_norm", key, g).ravel()
            total += float(np.dot(flat, flat))
    if _TINY <= total < math.inf:  # the common case: every square in range
        return math.sqrt(total)
    if math.isnan(total) or (total == math.inf and not _all_finite(grads)):
        return math.sqrt(total)  # a NaN or inf entry: the norm says so
    # Finite entries, yet the sum overflowed to inf (|g| ~ 1e19 in float32, 1e154 in float64)
    # or is so small that squares may have underflowed: a huge gradient must be reported as
    # huge, not as non-finite (which would stop training), and a tiny one as tiny, not 0.
    return _scaled_norm(grads)


def clip_by_global_norm(
    grads: Mapping[str, Array], max_norm: float, *, norm: float | None = None
) -> tuple[dict[str, Array], float]:
    r"""``(clipped, n)``: the gradients scaled to global norm at most ``max_norm``, and ``n``.

    ``n`` is the global norm before clipping (:func:`global_norm`), or ``norm`` when given:
    a caller that has computed it already (the trainer, for its non-finite guard) passes it
    and it is trusted. If :math:`n \le` ``max_norm`` the result holds the very same arrays
    (no copy, bitwise unchanged). Otherwise every array is multiplied by the one scale
    :math:`s = \mathrm{max\_norm} / n`, rounded to the array's dtype. Keys, shapes and
    dtypes are kept; neither ``grads`` nor its arrays are modified.

    Raises :class:`~nn.errors.DivergenceError` if ``n`` is NaN or infinite (clipping
    cannot repair it: that is the trainer's guard, ``[train] nonfinite``), and
    :class:`~nn.errors.DataError` unless ``max_norm`` is a positive finite real number.

    >>> g = {"w": np.array([6.0, 8.0], np.float32)}
    >>> clipped, n = clip_by_global_norm(g, 5.0)
    >>> clipped["w"], n
    (array([3., 4.], dtype=float32), 10.0)
    >>> clip_by_global_norm(g, 0)  # doctest: +ELLIPSIS
    Traceback (most recent call last):
    ...
    nn.errors.DataError: clip_by_global_norm: max_norm must be a positive ..., received 0
    """
    limit = _real(max_norm)
    if limit is None or not (0 < limit < math.inf):
        raise DataError(
            "clip_by_global_norm: max_norm must be a positive finite real number, "
            f"received {max_norm!r}"
        )
    if norm is None:
        n = global_norm(grads)
    else:
        for key, g in grads.items():
            _checked("clip_by_global_norm", key, g)
        given = _real(norm)
        if given is None or given < 0:  # NaN passes on, to be reported as divergence
            raise DataError(
                "clip_by_global_norm: norm must be None or the global norm of grads "
                f"(a real number >= 0), received {norm!r}"
            )
        n = given
    if not math.isfinite(n):
        bad = [key for key, g in grads.items() if not np.isfinite(g).all()]
        where = f"non-finite entries in {bad}" if bad else "the norm passed in is not finite"
        raise DivergenceError(
            f"clip_by_global_norm: the global norm of the gradients is {n} ({where}); "
            "clipping cannot repair a NaN or inf gradient. Let the trainer's guard handle it: "
            '[train] nonfinite = "raise", "skip" or "rollback"'
        )
    if n <= limit:
        return dict(grads), n
    scale = limit / n  # in (0, 1): one real number for every array, so the direction is kept
    return {key: _scaled(g, scale) for key, g in grads.items()}, n


def _scaled(g: Array, scale: float) -> Array:
    """``scale * g`` in ``g``'s dtype: the scale is converted to it first (NumPy 2 would
    promote float32 arrays meeting a float64 scalar)."""
    if scale < np.finfo(g.dtype).tiny:
        # Subnormal or zero as a float32 (n / max_norm > 1e38): it would lose bits, or zero
        # the gradient. Multiply in float64 and round once.
        return (g.astype(np.float64) * scale).astype(g.dtype)
    return np.asarray(g * g.dtype.type(scale))  # asarray: 0-d array * scalar is a scalar


def _checked(who: str, key: str, g: object) -> Array:
    """``g`` if it is a float32 or float64 array, else a :class:`DTypeError` naming it."""
    if not isinstance(g, np.ndarray) or g.dtype not in DTYPES:
        got = g.dtype if isinstance(g, np.ndarray) else type(g).__name__
        raise DTypeError(
            f"{who}: grads[{key!r}] must be a float32 or float64 array, received {got}"
        )
    return g


def _all_finite(grads: Mapping[str, Array]) -> bool:
    return all(bool(np.isfinite(g).all()) for g in grads.values())


def _scaled_norm(grads: Mapping[str, Array]) -> float:
    r"""The norm of finite ``grads`` without overflow or underflow, to float64 rounding.

    Every entry, converted to float64 (exactly), is multiplied by :math:`2^{-e}`, where
    :math:`2^{e-1} \le \max |g| < 2^e`. A power of two scales exactly, the largest scaled
    entry lies in :math:`[1/2, 1)`, so no square overflows, and squares that underflow are
    below :math:`2^{-1000}` of the total. The norm is :math:`2^e \sqrt{\sum (2^{-e} g)^2}`.
    """
    big = max((float(np.max(np.abs(g))) for g in grads.values() if g.size), default=0.0)
    if big == 0.0:
        return 0.0
    _, e = math.frexp(big)
    total = 0.0
    with np.errstate(under="ignore"):
        for g in grads.values():
            flat = np.ldexp(g.ravel().astype(np.float64), -e)
            total += float(np.dot(flat, flat))
    try:
        return math.ldexp(math.sqrt(total), e)
    except OverflowError:  # the norm itself is beyond float64 (entries near 1e308)
        return math.inf


def _real(value: object) -> float | None:
    """``float(value)`` for a real number that is not a bool, else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Real):
        return None
    try:
        return float(value)
    except OverflowError:  # an int beyond float64
        return math.inf
