"""softmax: forward reference (P8), the invariants of spec/softmax.md, and large-logit numerics.

The gradient protocol, float32 agreement and shape laws run for every op in test_contract.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from nn import softmax
from nn.testing import check_reference

# Rows of logits: up to 3 dimensions (so up to 2 loop dimensions), classes K >= 1. The bound
# keeps the rounding of x + c far below the shift test's tolerance; overflow is tested apart.
LOGITS = arrays(
    np.float64,
    array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6),
    elements=st.floats(-100, 100, allow_nan=False, allow_infinity=False),
)


def scipy_softmax(x):
    return scipy.special.softmax(x, axis=-1)


@pytest.mark.parametrize("shape", [(1,), (5,), (3, 7), (2, 3, 4), (2, 1, 10)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scipy(shape, seed):
    """P8: the forward value equals scipy.special.softmax over the last axis, in float64."""
    x = 3 * np.random.default_rng(seed).standard_normal(shape)
    check_reference(softmax, scipy_softmax, x)


@pytest.mark.spec("softmax", 1)
@given(LOGITS)
def test_rows_are_probability_distributions(x):
    """Every entry is in [0, 1] and every row sums to 1."""
    s, _ = softmax(x)
    assert np.all((s >= 0) & (s <= 1))
    np.testing.assert_allclose(s.sum(axis=-1), 1.0, rtol=0, atol=1e-13)


@pytest.mark.spec("softmax", 2)
@given(LOGITS, st.floats(-100, 100))
def test_shift_invariance(x, c):
    """Adding the same constant to every logit of a row leaves softmax unchanged."""
    # A different constant per row, so a shift that leaked across rows would be caught.
    shift = c * np.arange(1, x[..., :1].size + 1).reshape(x[..., :1].shape) / x[..., :1].size
    np.testing.assert_allclose(softmax(x + shift)[0], softmax(x)[0], rtol=1e-10, atol=1e-15)


@pytest.mark.spec("softmax", 3)
@given(LOGITS, st.integers(0, 2**32 - 1))
def test_vjp_sums_to_zero(x, seed):
    """For any cotangent g, the input cotangent dx sums to zero along the class axis."""
    g = np.random.default_rng(seed).standard_normal(x.shape)
    _, vjp = softmax(x)
    (dx,) = vjp(g)
    # The scale of the cancelling terms is |s * g|, summed along the row.
    scale = np.abs(softmax(x)[0] * g).sum(axis=-1)
    assert np.all(np.abs(dx.sum(axis=-1)) <= 1e-13 * (1 + scale))


@pytest.mark.spec("softmax", 4)
@pytest.mark.parametrize("seed", range(5))
def test_vjp_is_jacobian_transpose_times_g(seed):
    """dx equals J^T g with J = diag(s) - s s^T built entry by entry for every row."""
    rng = np.random.default_rng(seed)
    x = 2 * rng.standard_normal((2, 3, 5))
    g = rng.standard_normal(x.shape)
    s, vjp = softmax(x)
    (dx,) = vjp(g)
    expected = np.empty_like(x)
    for row in np.ndindex(x.shape[:-1]):
        sr = s[row]
        k = len(sr)
        jacobian = np.array([[sr[i] * ((i == j) - sr[j]) for j in range(k)] for i in range(k)])
        expected[row] = jacobian.T @ g[row]
    np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=1e-15)


@pytest.mark.spec("softmax", 5)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_logits_stay_finite(dtype):
    """Logits of magnitude 1e4 give finite values and gradients, without any warning."""
    s, vjp = softmax(np.array([1e4, 1e4, -1e4], dtype=dtype))
    assert s.dtype == dtype
    assert s.tolist() == [0.5, 0.5, 0.0]
    assert np.all(np.isfinite(vjp(np.array([1.0, -2.0, 3.0], dtype=dtype))[0]))

    x = (1e4 * np.random.default_rng(0).standard_normal((4, 6))).astype(dtype)
    s, vjp = softmax(x)
    (dx,) = vjp(np.ones_like(x))
    assert np.all(np.isfinite(s)) and np.all(np.isfinite(dx))
    np.testing.assert_allclose(s.sum(axis=-1), 1.0, rtol=1e-6)
