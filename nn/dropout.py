"""Inverted dropout with an explicit mask, and the mask's sampler.

The op is deterministic given its mask (DESIGN.md P6): the randomness lives in
:func:`dropout_mask`, drawn from an explicit ``np.random.Generator``, so the gradient check
sees a fixed function and a training step can be replayed exactly.
"""

from __future__ import annotations

import operator
from numbers import Real
from typing import Any

import numpy as np

from nn.errors import ShapeError
from nn.op import VJP, Array, op


def _check_rate(where: str, rate: Any) -> float:
    """``rate`` as a float in ``[0, 1)``, or a ``ValueError`` naming it."""
    if isinstance(rate, (bool, np.bool_)) or not isinstance(rate, Real):
        raise ValueError(
            f"{where}: rate must be a real number in [0, 1) (the probability of dropping an "
            f"entry), received {rate!r} of type {type(rate).__name__}"
        )
    if not 0.0 <= float(rate) < 1.0:  # also refuses NaN
        raise ValueError(
            f"{where}: rate must be in [0, 1) (the probability of dropping an entry; 1 would "
            f"drop everything and divide by 0), received {rate!r}"
        )
    return float(rate)


def dropout_mask(rng: np.random.Generator, shape: tuple[int, ...], rate: float) -> Array:
    """A boolean keep-mask of ``shape``: each entry ``True`` with probability ``1 - rate``.

    The entries are independent: entry ``i`` is ``u_i >= rate`` for ``u_i`` uniform on
    ``[0, 1)`` from ``rng``. The same generator state gives the same mask.

    >>> mask = dropout_mask(np.random.default_rng(0), (2, 3), 0.5)
    >>> mask.dtype, mask.shape
    (dtype('bool'), (2, 3))
    """
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"dropout_mask: rng must be a np.random.Generator (np.random.default_rng(seed)), "
            f"received {type(rng).__name__}"
        )
    rate = _check_rate("dropout_mask", rate)
    return np.asarray(rng.random(_check_shape(shape)) >= rate)  # P(u >= rate) = 1 - rate


def _check_shape(shape: Any) -> tuple[int, ...]:
    """``shape`` as a tuple of integers >= 0 (an integer is a 1-d shape), or a ``ValueError``."""
    dims = (shape,) if isinstance(shape, (int, np.integer)) else shape
    try:
        if isinstance(dims, (str, bytes)) or any(isinstance(d, (bool, np.bool_)) for d in dims):
            raise TypeError
        out = tuple(operator.index(d) for d in dims)
    except TypeError:
        out = (-1,)
    if any(d < 0 for d in out):
        raise ValueError(
            f"dropout_mask: shape must be a tuple of integers >= 0 (x.shape), received {shape!r}"
        )
    return out


def _random_mask(rng: np.random.Generator, x: Array) -> dict[str, Any]:
    rate = float(rng.uniform(0.2, 0.7))
    return {"rate": rate, "mask": dropout_mask(rng, x.shape, rate)}


@op(signature="()->()", complex_safe=True, static=_random_mask)
def dropout(x: Array, *, rate: float, mask: Any) -> tuple[Array, VJP]:
    r"""Inverted dropout at training time: :math:`y = x \cdot m / (1 - p)`.

    ``mask`` (boolean, or numbers that are all 0 or 1) has the shape of ``x``: 1 keeps an
    entry, 0 drops it; ``rate`` is the drop probability :math:`p \in [0, 1)` the mask was drawn
    with (:func:`dropout_mask`). Kept entries are scaled by :math:`1/(1-p)` so that
    :math:`E[y] = x`, and evaluation can use the identity. The map is linear and diagonal,
    so ``dx = g * m / (1 - p)``.

    >>> y, vjp = dropout(np.array([1.0, 2.0, 3.0, 4.0]), rate=0.5,
    ...                  mask=np.array([True, False, True, False]))
    >>> y.tolist(), vjp(np.ones(4))[0].tolist()
    ([2.0, 0.0, 6.0, 0.0], [2.0, 0.0, 2.0, 0.0])
    """
    rate = _check_rate("dropout", rate)
    keep = _check_mask(np.asarray(mask), x.shape)
    # The scale rounded once to x's own dtype: a float64 scalar would upcast float32 (NEP 50).
    scale = x.dtype.type(1.0 / (1.0 - rate))
    m = keep * scale  # (...) bool * scalar: 0 or 1/(1-p), in x's dtype
    # A product, not np.where(keep, x, 0): a NaN or inf in a dropped entry still shows up, as
    # in PyTorch, instead of being hidden from the divergence checks.
    y = x * m

    def vjp(g: Array) -> tuple[Array]:
        return (g * m,)

    return y, vjp


def _check_mask(mask: Array, shape: tuple[int, ...]) -> Array:
    """The mask as booleans, after checking its shape and values."""
    if mask.shape != shape:
        raise ShapeError(
            f"dropout: mask must have the shape of x {shape}, received {mask.shape}; "
            f"draw it with dropout_mask(rng, x.shape, rate)"
        )
    if mask.dtype == np.bool_:
        return mask
    if mask.dtype.kind not in "iuf":
        raise ValueError(
            f"dropout: mask must be boolean or 0/1 numbers, received dtype {mask.dtype}"
        )
    bad = (mask != 0) & (mask != 1)
    if bad.any():
        value = mask[bad].flat[0].item()
        raise ValueError(f"dropout: mask entries must be 0 or 1, received {value!r}")
    return np.asarray(mask != 0)


__all__ = ["dropout", "dropout_mask"]
