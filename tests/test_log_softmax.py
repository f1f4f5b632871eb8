"""log_softmax: forward reference (P8), the invariants of spec/log_softmax.md, large logits.

The gradient protocol, float32 agreement and shape laws run for every op in test_contract.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from nn import log_softmax, softmax
from nn.testing import check_reference

# Rows of logits: up to 3 dimensions (so up to 2 loop dimensions), classes K >= 1. The bound
# keeps the rounding of x + c far below the shift test's tolerance; overflow is tested apart.
LOGITS = arrays(
    np.float64,
    array_shapes(min_dims=1, max_dims=3, min_side=1, max_side=6),
    elements=st.floats(-100, 100, allow_nan=False, allow_infinity=False),
)


def scipy_log_softmax(x):
    return scipy.special.log_softmax(x, axis=-1)


@pytest.mark.parametrize("shape", [(1,), (5,), (3, 7), (2, 3, 4), (2, 1, 10)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scipy(shape, seed):
    """P8: the forward value equals scipy.special.log_softmax over the last axis, in float64."""
    x = 3 * np.random.default_rng(seed).standard_normal(shape)
    check_reference(log_softmax, scipy_log_softmax, x)


@pytest.mark.spec("log_softmax", 1)
@given(LOGITS)
def test_exp_gives_softmax(x):
    """exp(log_softmax(x)) equals softmax(x), entry by entry."""
    y, _ = log_softmax(x)
    np.testing.assert_allclose(np.exp(y), softmax(x)[0], rtol=1e-12, atol=1e-300)


@pytest.mark.spec("log_softmax", 2)
@given(LOGITS)
def test_output_is_normalized_log_distribution(x):
    """Every output entry is <= 0 exactly, and each output row has logsumexp 0."""
    y, _ = log_softmax(x)
    assert np.all(y <= 0)
    np.testing.assert_allclose(scipy.special.logsumexp(y, axis=-1), 0.0, rtol=0, atol=1e-13)


@pytest.mark.spec("log_softmax", 3)
@given(LOGITS, st.floats(-100, 100))
def test_shift_invariance(x, c):
    """Adding the same constant to every logit of a row leaves log_softmax unchanged."""
    # A different constant per row, so a shift that leaked across rows would be caught.
    rows = x[..., :1]
    shift = c * np.arange(1, rows.size + 1).reshape(rows.shape) / rows.size
    y, _ = log_softmax(x)
    # log-probabilities reach -200 here; rounding of x + c is absolute, about eps * 200.
    np.testing.assert_allclose(log_softmax(x + shift)[0], y, rtol=0, atol=1e-12)


@pytest.mark.spec("log_softmax", 4)
@given(LOGITS, st.integers(0, 2**32 - 1))
def test_vjp_sums_to_zero_and_one_hot_gives_onehot_minus_softmax(x, seed):
    """dx sums to zero along the class axis; the one-hot cotangent e_t gives e_t - softmax(x)."""
    rng = np.random.default_rng(seed)
    _, vjp = log_softmax(x)
    g = rng.standard_normal(x.shape)
    (dx,) = vjp(g)
    scale = np.abs(g).sum(axis=-1)  # the size of the terms that cancel in the row sum
    assert np.all(np.abs(dx.sum(axis=-1)) <= 1e-13 * (1 + scale))

    k = x.shape[-1]
    onehot = np.eye(k)[rng.integers(0, k, size=x.shape[:-1])]  # (..., K), one 1 per row
    (dx,) = vjp(onehot)
    np.testing.assert_allclose(dx, onehot - softmax(x)[0], rtol=1e-12, atol=1e-15)


@pytest.mark.spec("log_softmax", 5)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_logits_stay_finite(dtype):
    """Logits of magnitude 1e4 give finite values and gradients, without any warning."""
    y, vjp = log_softmax(np.array([1e4, -1e4], dtype=dtype))
    assert y.dtype == dtype
    assert y.tolist() == [0.0, -20000.0]  # log(softmax) would give -inf for the second entry
    assert vjp(np.array([1.0, 1.0], dtype=dtype))[0].tolist() == [-1.0, 1.0]

    x = (1e4 * np.random.default_rng(0).standard_normal((4, 6))).astype(dtype)
    y, vjp = log_softmax(x)
    (dx,) = vjp(np.ones_like(x))
    assert np.all(np.isfinite(y)) and np.all(np.isfinite(dx))
    assert np.all(y <= 0)
    np.testing.assert_allclose(scipy.special.logsumexp(y.astype(np.float64), axis=-1), 0, atol=1e-6)
