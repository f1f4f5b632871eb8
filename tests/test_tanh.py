"""tanh: forward reference (P8), the invariants of spec/tanh.md, and numerics."""

from __future__ import annotations

import math

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from nn import tanh
from nn.testing import check_reference

# Moderate inputs: wide enough to reach saturation (tanh(30) rounds to 1), small enough
# that identities hold to a few rounding errors.
moderate = arrays(
    np.float64,
    array_shapes(min_dims=0, max_dims=3, max_side=5),
    elements=st.floats(-30, 30, allow_subnormal=False),
)


def math_tanh(x):
    """The reference: Python's scalar ``math.tanh``, one entry at a time (no NumPy ufunc)."""
    out = np.empty(x.shape)
    for index in np.ndindex(x.shape):
        out[index] = math.tanh(float(x[index]))
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(), (7,), (2, 3, 4)])
@pytest.mark.parametrize("scale", [0.01, 1.0, 10.0])
def test_reference_math_tanh(seed, shape, scale):
    """P8: the forward value equals ``math.tanh`` applied entry by entry, in float64."""
    x = scale * np.random.default_rng(seed).standard_normal(shape)
    check_reference(tanh, math_tanh, x)


def test_reference_math_tanh_on_a_grid():
    """P8 on a fixed grid across 0, through the saturation near |x| = 19, out to 1e3."""
    x = np.concatenate([np.linspace(-25, 25, 201), [-1e3, -1e-8, 1e-8, 1e3]])
    check_reference(tanh, math_tanh, x)


@pytest.mark.spec("tanh", 1)
@given(x=moderate)
def test_odd(x):
    """Invariant 1: tanh(-x) = -tanh(x); an added constant or a one-sided formula breaks it."""
    y, _ = tanh(x)
    y_neg, _ = tanh(-x)
    np.testing.assert_allclose(y_neg, -y, rtol=1e-15, atol=0)


@pytest.mark.spec("tanh", 2)
@given(x=moderate)
def test_sigmoid_identity(x):
    """Invariant 2: tanh(x) = 2 sigma(2x) - 1, with SciPy's ``expit`` as sigma.

    Oddness alone would accept a wrong slope such as tanh(x / 2); this does not.
    """
    y, _ = tanh(x)
    # Near 0, 2 sigma(2x) - 1 cancels: allow a few rounding errors of 1 in absolute terms.
    np.testing.assert_allclose(y, 2 * scipy.special.expit(2 * x) - 1, rtol=1e-13, atol=1e-15)


@pytest.mark.spec("tanh", 3)
@given(x=moderate)
def test_bounded_with_slope_at_most_one(x):
    """Invariant 3: |tanh x| <= 1 and 0 <= tanh'(x) <= 1, read off the vjp with g = 1.

    At x = 0 both are exact: tanh 0 = 0, tanh'(0) = 1. Catches a vjp of ``g * (1 - y)``
    (slope 2 for negative x) and a forward pass scaled by a constant.
    """
    y, vjp = tanh(x)
    (dx,) = vjp(np.ones_like(x))
    assert np.all(np.abs(y) <= 1)
    assert np.all((dx >= 0) & (dx <= 1))
    y0, vjp0 = tanh(np.zeros(3))
    assert y0.tolist() == [0.0, 0.0, 0.0]
    assert vjp0(np.ones(3))[0].tolist() == [1.0, 1.0, 1.0]


@pytest.mark.spec("tanh", 4)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_saturates_without_overflow(dtype):
    """Invariant 4: |x| up to 1e4 gives finite values and gradients, saturated, no warnings.

    The textbook (e^x - e^-x) / (e^x + e^-x) gives inf / inf = nan here, with an overflow.
    """
    x = np.array([-1e4, -1e3, -100.0, 100.0, 1e3, 1e4], dtype=dtype)
    # Explicit, so the test keeps its meaning outside this project's pytest settings.
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        y, vjp = tanh(x)
        (dx,) = vjp(np.ones_like(x))
    assert y.dtype == dtype and dx.dtype == dtype
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    assert y.tolist() == [-1.0, -1.0, -1.0, 1.0, 1.0, 1.0]
    assert dx.tolist() == [0.0] * 6
