r"""Weight initializers: Glorot (Xavier) and He (Kaiming), each normal or uniform.

Each initializer draws a dense weight ``w`` of shape (D, M) for a layer ``y = x @ w + b``,
or a convolution kernel of shape (K, C, R, S) for ``conv2d``, with independent, zero-mean
entries, scaled so that the size of the signal neither grows nor shrinks from layer to layer
at initialization. With fan-in :math:`n_\mathrm{in}` (D, or C*R*S for a kernel) and fan-out
:math:`n_\mathrm{out}` (M, or K*R*S; see :func:`fans`), and
:math:`\bar n = (n_\mathrm{in} + n_\mathrm{out}) / 2` their average:

* :func:`glorot_normal`: :math:`N(0, \sigma^2)` with :math:`\sigma^2 = 1 / \bar n`;
* :func:`glorot_uniform`: :math:`U(-a, a)` with :math:`a = \sqrt{3 / \bar n}`;
* :func:`he_normal`: :math:`N(0, \sigma^2)` with :math:`\sigma^2 = 2 / n_\mathrm{in}`;
* :func:`he_uniform`: :math:`U(-a, a)` with :math:`a = \sqrt{6 / n_\mathrm{in}}`.

A uniform :math:`U(-a, a)` has variance :math:`a^2 / 3`, so both variants of a family have
the same variance. The normal variants are plain, untruncated normals (as PyTorch's
``xavier_normal_`` and ``kaiming_normal_``); Keras' ``GlorotNormal`` and ``HeNormal`` are
truncated, see :func:`glorot_normal`. Biases start at zero: the layer sets them, no
initializer is needed. The derivations are on the spec pages ``spec/glorot.md`` and
``spec/he.md``.

Every initializer takes an explicit ``np.random.Generator`` and advances it, so a model
initialized from ``np.random.default_rng(seed)`` is reproducible and its layers independent.
"""

from __future__ import annotations

import math
import operator
from typing import Any

import numpy as np
from numpy.typing import DTypeLike

from nn.errors import DTypeError, ShapeError
from nn.op import Array

__all__ = ["fans", "glorot_normal", "glorot_uniform", "he_normal", "he_uniform"]

# The Generator samples these dtypes natively; any other float is sampled in float64 and cast.
_NATIVE = (np.dtype(np.float32), np.dtype(np.float64))


def fans(shape: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)``: ``(D, M)`` for a dense weight (D, M) used as ``x @ w``,
    ``(C*R*S, K*R*S)`` for a conv kernel (K, C, R, S).

    fan_in is the number of inputs summed into each output (the terms of ``y = x @ w``, or
    of ``y[n,k,p,q] = sum_{c,i,j} w[k,c,i,j] x[n,c,p+i,q+j]``); fan_out the number of
    outputs each input feeds (the terms of its cotangent: ``dx = g @ w.T``, or K channels at
    R*S offsets for a conv input away from the borders, with stride 1). After im2col a conv
    is a GEMM with a (C*R*S, K) weight, whose input dimension is the kernel's fan_in; each
    input pixel appears in R*S rows of the patch matrix, hence K*R*S. The same as PyTorch's
    ``_calculate_fan_in_and_fan_out`` and Keras for kernels. PyTorch stores a linear layer's
    weight as (M, D), so there fan_in is ``shape[1]``; here, as in Keras, it is ``shape[0]``.
    Other ranks are refused, and both fans must be at least 1.

    >>> fans((784, 256))
    (784, 256)
    >>> fans((32, 16, 3, 3))  # (K, C, R, S)
    (144, 288)
    """
    return _fans("fans", shape)


def glorot_normal(
    rng: np.random.Generator, shape: tuple[int, ...], *, dtype: DTypeLike = np.float32
) -> Array:
    r"""Glorot & Bengio (2010), normal: :math:`w \sim N(0, 2 / (n_\mathrm{in} + n_\mathrm{out}))`.

    For ``shape`` (D, M) the variance is :math:`2 / (D + M)`; for a conv kernel (K, C, R, S)
    it is :math:`2 / ((C + K) R S)` (see :func:`fans`).

    A plain normal, not truncated, as PyTorch's ``xavier_normal_``. Keras' ``GlorotNormal``
    is truncated: it draws from a normal of standard deviation :math:`\sigma / 0.8796` and
    redraws every sample beyond two of those, :math:`\pm 2.27 \sigma` (0.8796 is the standard
    deviation of a unit normal truncated to [-2, 2]). Its samples have variance
    :math:`\sigma^2` too, but no tails, where about 2.3% of these samples lie. Early Keras 2
    versions truncated at :math:`\pm 2 \sigma` without the correction, so their samples had
    a standard deviation of :math:`0.88 \sigma`.

    >>> w = glorot_normal(np.random.default_rng(0), (784, 256))
    >>> w.shape, w.dtype
    ((784, 256), dtype('float32'))
    >>> round(float(w.std() / np.sqrt(2 / (784 + 256))), 2)
    1.0
    """
    sides = _sides("glorot_normal", shape)
    n_in, n_out = _fans_of(sides)
    return _normal("glorot_normal", rng, sides, math.sqrt(2 / (n_in + n_out)), dtype)


def glorot_uniform(
    rng: np.random.Generator, shape: tuple[int, ...], *, dtype: DTypeLike = np.float32
) -> Array:
    r"""Glorot & Bengio (2010), uniform: :math:`w \sim U(-a, a)`, :math:`a = \sqrt{6 / (D + M)}`.

    For a conv kernel (K, C, R, S), :math:`a = \sqrt{6 / ((C + K) R S)}`.
    :math:`\mathrm{Var}(U(-a, a)) = a^2/3 = 2 / (n_\mathrm{in} + n_\mathrm{out})`, the variance of
    :func:`glorot_normal`. Every entry satisfies ``abs(w) <= a`` with ``a`` rounded to
    ``dtype``. The same distribution as Keras' ``GlorotUniform``, the default of its
    ``Dense`` layer.

    >>> w = glorot_uniform(np.random.default_rng(0), (784, 256), dtype=np.float64)
    >>> bool(np.abs(w).max() <= np.sqrt(6 / (784 + 256)))
    True
    """
    sides = _sides("glorot_uniform", shape)
    n_in, n_out = _fans_of(sides)
    return _uniform("glorot_uniform", rng, sides, math.sqrt(6 / (n_in + n_out)), dtype)


def he_normal(
    rng: np.random.Generator, shape: tuple[int, ...], *, dtype: DTypeLike = np.float32
) -> Array:
    r"""He et al. (2015), normal: :math:`w \sim N(0, 2 / D)` for ``shape`` (D, M), for ReLU.

    For a conv kernel (K, C, R, S) the variance is :math:`2 / (C R S)`, its fan-in.

    A plain normal, not truncated (as PyTorch's ``kaiming_normal_``). Keras' ``HeNormal``
    is truncated in the same way as its ``GlorotNormal`` (see :func:`glorot_normal`): the
    same variance, no tails beyond :math:`\pm 2.27 \sigma`.

    >>> w = he_normal(np.random.default_rng(0), (784, 256))
    >>> round(float(w.std() / np.sqrt(2 / 784)), 2)
    1.0
    >>> k = he_normal(np.random.default_rng(0), (64, 32, 3, 3))  # (K, C, R, S)
    >>> k.shape, round(float(k.std() / np.sqrt(2 / (32 * 3 * 3))), 1)
    ((64, 32, 3, 3), 1.0)
    """
    sides = _sides("he_normal", shape)
    n_in, _ = _fans_of(sides)
    return _normal("he_normal", rng, sides, math.sqrt(2 / n_in), dtype)


def he_uniform(
    rng: np.random.Generator, shape: tuple[int, ...], *, dtype: DTypeLike = np.float32
) -> Array:
    r"""He et al. (2015), uniform: :math:`w \sim U(-a, a)`, :math:`a = \sqrt{6 / D}`.

    For a conv kernel (K, C, R, S), :math:`a = \sqrt{6 / (C R S)}`.
    :math:`\mathrm{Var}(U(-a, a)) = a^2/3 = 2 / n_\mathrm{in}`, the variance of
    :func:`he_normal`; ``abs(w) <= a`` with ``a`` rounded to ``dtype``.

    >>> w = he_uniform(np.random.default_rng(0), (784, 256), dtype=np.float64)
    >>> bool(np.abs(w).max() <= np.sqrt(6 / 784))
    True
    """
    sides = _sides("he_uniform", shape)
    n_in, _ = _fans_of(sides)
    return _uniform("he_uniform", rng, sides, math.sqrt(6 / n_in), dtype)


_EXPECTED = (
    "(D, M) of a dense weight or (K, C, R, S) of a conv kernel "
    "(a 2-D shape used as x @ w, or a 4-D one used by conv2d)"
)


def _fans(name: str, shape: Any) -> tuple[int, int]:
    return _fans_of(_sides(name, shape))


def _fans_of(sides: tuple[int, ...]) -> tuple[int, int]:
    """``(fan_in, fan_out)`` of checked sides: (D, M), or (C*R*S, K*R*S) for (K, C, R, S)."""
    if len(sides) == 2:
        return sides[0], sides[1]
    k, c, r, s = sides
    return c * r * s, k * r * s


def _sides(name: str, shape: Any) -> tuple[int, ...]:
    """Check that ``shape`` is (D, M) or (K, C, R, S) with every side >= 1; return the sides."""
    if not isinstance(shape, (tuple, list)) or len(shape) not in (2, 4):
        raise ShapeError(f"{name}: shape must be {_EXPECTED}; received {shape!r}")
    try:
        # operator.index admits Python and NumPy integers, not 2.0 or "2"; bools are refused
        # explicitly because True would silently mean 1.
        sides = tuple(operator.index(s) for s in shape if not isinstance(s, (bool, np.bool_)))
    except TypeError:
        sides = ()
    if len(sides) != len(shape):
        raise ShapeError(
            f"{name}: shape must be {_EXPECTED}, with integer sides; received {shape!r}"
        )
    if min(sides) < 1:
        # A layer without inputs or outputs has nothing to scale, and 2 / fan_in is undefined;
        # every side >= 1 is the same as both fans >= 1 for either rank.
        raise ShapeError(
            f"{name}: shape must have fan_in >= 1 and fan_out >= 1, that is D, M >= 1 for a "
            f"dense weight or K, C, R, S >= 1 for a conv kernel; received {shape!r}"
        )
    return sides


def _float_dtype(name: str, dtype: DTypeLike) -> np.dtype[Any]:
    try:
        # np.dtype(None) is float64: refused, since the default here is float32.
        resolved = None if dtype is None else np.dtype(dtype)
    except TypeError:
        resolved = None
    if resolved is None or resolved.kind != "f":
        raise DTypeError(
            f"{name}: dtype must be a real floating dtype such as float32 or float64; "
            f"received {dtype!r}"
        )
    return resolved


def _check_rng(name: str, rng: Any) -> np.random.Generator:
    if not isinstance(rng, np.random.Generator):
        raise TypeError(
            f"{name}: rng must be a numpy.random.Generator, e.g. np.random.default_rng(0); "
            f"received {type(rng).__name__}"
        )
    return rng


def _normal(name: str, rng: Any, shape: tuple[int, ...], std: float, dtype: DTypeLike) -> Array:
    """``std * N(0, 1)``, drawn in float32 or float64 and cast once for any other float."""
    out = _float_dtype(name, dtype)
    draw = out if out in _NATIVE else np.dtype(np.float64)
    z = _check_rng(name, rng).standard_normal(shape, dtype=draw)  # (D, M) or (K, C, R, S)
    return (np.asarray(std, dtype=draw) * z).astype(out, copy=False)


def _uniform(name: str, rng: Any, shape: tuple[int, ...], limit: float, dtype: DTypeLike) -> Array:
    """``limit * (2u - 1)`` for ``u`` uniform on [0, 1), drawn as in :func:`_normal`.

    ``u`` is a multiple of 2**-24 (float32) or 2**-53 (float64), so ``2u - 1`` is exact and
    lies in [-1, 1); rounding is monotone, so ``abs(w) <= limit`` rounded to the dtype.
    """
    out = _float_dtype(name, dtype)
    draw = out if out in _NATIVE else np.dtype(np.float64)
    u = _check_rng(name, rng).random(shape, dtype=draw)  # (D, M) or (K, C, R, S)
    return (np.asarray(limit, dtype=draw) * (2 * u - 1)).astype(out, copy=False)
