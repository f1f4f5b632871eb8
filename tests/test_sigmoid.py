"""sigmoid: forward reference (P8), the invariants of spec/sigmoid.md, and numerics."""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from nn import sigmoid
from nn.testing import check_reference

# Moderate inputs: wide enough to reach both saturated tails (sigmoid(30) is 1 - 1e-13),
# small enough that identities hold to a few rounding errors.
moderate = arrays(
    np.float64,
    array_shapes(min_dims=0, max_dims=3, max_side=5),
    elements=st.floats(-30, 30, allow_subnormal=False),
)


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(), (7,), (2, 3, 4)])
@pytest.mark.parametrize("scale", [1.0, 10.0, 300.0])
def test_reference_scipy_expit(seed, shape, scale):
    """P8: the forward value equals SciPy's independent ``expit`` in float64."""
    x = scale * np.random.default_rng(seed).standard_normal(shape)
    check_reference(sigmoid, scipy.special.expit, x)


def test_reference_scipy_expit_on_a_grid():
    """P8 on a fixed grid across 0 and out to where exp(-|x|) underflows."""
    x = np.concatenate([np.linspace(-40, 40, 161), [-745.0, -700.0, 700.0, 745.0]])
    check_reference(sigmoid, scipy.special.expit, x)


@pytest.mark.spec("sigmoid", 1)
@given(x=moderate)
def test_symmetry(x):
    """Invariant 1: sigma(-x) = 1 - sigma(x); an added constant or a bad branch breaks it."""
    y, _ = sigmoid(x)
    y_neg, _ = sigmoid(-x)
    np.testing.assert_allclose(y_neg, 1 - y, rtol=0, atol=1e-15)


@pytest.mark.spec("sigmoid", 2)
@given(x=moderate)
def test_tanh_identity(x):
    """Invariant 2: sigma(x) = (1 + tanh(x/2)) / 2, against NumPy's tanh.

    Symmetry alone would accept a wrong slope such as 1 / (1 + e^{-2x}); this does not.
    """
    y, _ = sigmoid(x)
    np.testing.assert_allclose(y, (1 + np.tanh(x / 2)) / 2, rtol=1e-13, atol=1e-15)


@pytest.mark.spec("sigmoid", 3)
@given(
    x=arrays(np.float64, st.integers(2, 50), elements=st.floats(-1e3, 1e3, allow_subnormal=False))
)
def test_monotone_into_unit_interval(x):
    """Invariant 3: sigma is nondecreasing, lies in [0, 1], and sigma(0) = 1/2 exactly.

    Catches a flipped sign, sigma(-x), which still satisfies invariant 1.
    """
    y, _ = sigmoid(np.sort(x))
    assert np.all(np.diff(y) >= 0)
    assert np.all((y >= 0) & (y <= 1))
    assert sigmoid(np.zeros(()))[0] == 0.5


@pytest.mark.spec("sigmoid", 4)
@given(x=moderate)
def test_derivative_at_most_a_quarter(x):
    """Invariant 4: 0 <= sigma'(x) <= 1/4, read off the vjp with g = 1, and = 1/4 at x = 0.

    Catches a vjp that forgets a factor, e.g. ``g * y`` (up to 1) or ``g * (1 - y)``.
    """
    _, vjp = sigmoid(x)
    (dx,) = vjp(np.ones_like(x))
    assert np.all((dx >= 0) & (dx <= 0.25))
    _, vjp0 = sigmoid(np.zeros(3))
    assert vjp0(np.ones(3))[0].tolist() == [0.25, 0.25, 0.25]


@pytest.mark.spec("sigmoid", 5)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_saturates_without_overflow(dtype):
    """Invariant 5: |x| up to 1e4 gives finite values and gradients, saturated, no warnings.

    The naive 1 / (1 + exp(-x)) overflows at x = -100 in float32 and at x = -1e3 in float64.
    """
    x = np.array([-1e4, -1e3, -100.0, 100.0, 1e3, 1e4], dtype=dtype)
    # Explicit, so the test keeps its meaning outside this project's pytest settings.
    # Underflow is allowed: exp(-1e4) = 0 is the correctly rounded answer.
    with np.errstate(over="raise", divide="raise", invalid="raise"):
        y, vjp = sigmoid(x)
        (dx,) = vjp(np.ones_like(x))
    assert y.dtype == dtype and dx.dtype == dtype
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    assert y[0] == 0 and y[-1] == 1
    assert dx[0] == 0 and dx[-1] == 0
