"""relu: forward reference (P8), the invariants of spec/relu.md, and numerics."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from nn import relu
from nn.testing import check_reference

# Any moderate floats, exact zeros included: relu's identities hold exactly, with no rounding.
moderate = arrays(
    np.float64,
    array_shapes(min_dims=0, max_dims=3, max_side=5),
    elements=st.floats(-30, 30, allow_subnormal=False),
)


def loop_relu(x):
    """The reference: ``max(v, 0.0)`` on Python floats, one entry at a time."""
    out = np.empty(x.shape)
    for index in np.ndindex(x.shape):
        out[index] = max(float(x[index]), 0.0)
    return out


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("shape", [(), (7,), (2, 3, 4)])
def test_reference_python_loop(seed, shape):
    """P8: the forward value equals an explicit Python loop of ``max(v, 0.0)``, in float64."""
    x = np.random.default_rng(seed).standard_normal(shape)
    check_reference(relu, loop_relu, x)


def test_reference_python_loop_on_a_grid():
    """P8 on a grid through the kink, exact zeros and tiny and huge magnitudes included."""
    x = np.concatenate([np.linspace(-3, 3, 61), [-1e300, -1e-300, -0.0, 1e-300, 1e300]])
    check_reference(relu, loop_relu, x)


@pytest.mark.spec("relu", 1)
@given(x=moderate, a=st.floats(1e-3, 1e3))
def test_positively_homogeneous(x, a):
    """Invariant 1: relu(a x) = a relu(x) for a > 0, bit for bit.

    Catches a shifted threshold or offset, e.g. max(x, 0) + c or max(x - c, 0).
    """
    left, _ = relu(a * x)
    right, _ = relu(x)
    np.testing.assert_array_equal(left, a * right)


@pytest.mark.spec("relu", 2)
@given(x=moderate)
def test_idempotent(x):
    """Invariant 2: relu(relu(x)) = relu(x), bit for bit.

    Catches a leaky slope on the negative side, which homogeneity alone would accept:
    applied twice, the negative part shrinks again.
    """
    once, _ = relu(x)
    twice, _ = relu(once)
    np.testing.assert_array_equal(twice, once)


@pytest.mark.spec("relu", 3)
@given(x=moderate)
def test_splits_into_positive_and_negative_parts(x):
    """Invariant 3: x = relu(x) - relu(-x) with both parts >= 0, bit for bit.

    Catches |x| (parts would sum, not cancel) and any slope other than 0 and 1.
    """
    positive, _ = relu(x)
    negative, _ = relu(-x)
    assert np.all(positive >= 0) and np.all(negative >= 0)
    np.testing.assert_array_equal(positive - negative, x)


@pytest.mark.spec("relu", 4)
def test_kink_convention():
    """Invariant 4: the gradient is g [x > 0], so exactly 0 at x = 0 and at x = -0.0.

    The contract tests sample 1e-3 away from the kink, so only this test sees x = 0 itself.
    Catches a mask ``x >= 0`` (gradient g at the kink) and a subgradient such as 1/2.
    """
    tiny = np.finfo(np.float64).smallest_subnormal
    x = np.array([-2.0, -0.0, 0.0, tiny, 3.0])
    y, vjp = relu(x)
    (dx,) = vjp(np.array([1.0, 2.0, 3.0, 4.0, 5.0]))
    assert y.tolist() == [0.0, 0.0, 0.0, tiny, 3.0]
    assert dx.tolist() == [0.0, 0.0, 0.0, 4.0, 5.0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_non_finite_cotangents_of_inactive_entries_give_exactly_zero(dtype):
    """The VJP multiplies g by the 0/1 mask, where 0 * inf would be NaN: an inactive entry
    still gets exactly 0 for an inf or NaN cotangent, and an active one gets g itself. Sums
    that overflow from finite entries take the same exact path."""
    x = np.array([-1.0, -2.0, 0.0, 3.0, 4.0], dtype)
    _, vjp = relu(x)
    (dx,) = vjp(np.array([np.inf, np.nan, -np.inf, np.inf, 1.0], dtype))
    assert dx.dtype == dtype
    assert dx[:3].tolist() == [0.0, 0.0, 0.0] and dx[3] == np.inf and dx[4] == 1.0
    big = np.finfo(dtype).max
    x = np.array([1.0, 1.0, -1.0], dtype)
    (dx,) = relu(x)[1](np.array([big, big, np.inf], dtype))
    assert dx.tolist() == [big, big, 0.0]


@pytest.mark.spec("relu", 5)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_inputs_without_warnings(dtype):
    """Invariant 5: |x| up to 1e4 gives exact, finite values and gradients and no warnings."""
    x = np.array([-1e4, -1e3, 1e3, 1e4], dtype=dtype)
    # Explicit, so the test keeps its meaning outside this project's pytest settings.
    with np.errstate(all="raise"):
        y, vjp = relu(x)
        (dx,) = vjp(np.ones_like(x))
    assert y.dtype == dtype and dx.dtype == dtype
    assert np.isfinite(y).all() and np.isfinite(dx).all()
    assert y.tolist() == [0.0, 0.0, 1e3, 1e4]
    assert dx.tolist() == [0.0, 0.0, 1.0, 1.0]


@pytest.mark.spec("relu", 6)
def test_nan_propagates():
    """A NaN input stays NaN (np.where(x > 0, x, 0) would zero it and hide a divergence)."""
    x = np.array([np.nan, -1.0, 2.0])
    y, vjp = relu(x)  # comparisons with NaN are quiet: no FloatingPointError under errstate
    assert np.isnan(y[0])
    assert y[1:].tolist() == [0.0, 2.0]
    np.testing.assert_array_equal(y[1:], np.maximum(x[1:], 0))
    assert vjp(np.ones(3))[0][1:].tolist() == [0.0, 1.0]


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_on_the_pools_threads_as_on_one(dtype, monkeypatch):
    """A CNN-sized array runs on nn.parallel's threads (one slice each): y, the mask and dx
    are bitwise those of one thread, NaN in x and inf in g included (an inf's slice is
    caught and takes the exact selection), and x need not be contiguous."""
    import nn.parallel

    rng = np.random.default_rng(0)
    x = rng.standard_normal((8, 4, 64, 130)).astype(dtype)[..., ::2]  # 2**18 entries, strided
    x[0, 0, 0, 0], x[-1, -1, -1, -1] = np.nan, -np.inf
    g = rng.standard_normal(x.shape).astype(dtype)
    g[-1, -1, -1, -1] = np.inf  # an inactive entry, in the last thread's slice
    assert x.size >= nn.parallel.MIN_SIZE
    y, vjp = relu(x)
    (dx,) = vjp(g)
    monkeypatch.setattr(nn.parallel, "THREADS", 1)
    y1, vjp1 = relu(x)
    (dx1,) = vjp1(g)
    assert y.tobytes() == y1.tobytes() and dx.tobytes() == dx1.tobytes()
    assert np.isnan(y[0, 0, 0, 0]) and dx[-1, -1, -1, -1] == 0
    np.testing.assert_array_equal(dx, np.where(x > 0, g, 0))
