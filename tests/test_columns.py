"""columns (spec/columns.md): order against explicit loops, a permutation with an exact
adjoint, locality of steps, the round trip, shape laws and named errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

import nn
from nn import columns
from nn.testing import check_reference, check_vjp

# Distinct sizes, so that stacking in the wrong axis order cannot give the right layout.
SHAPE = (2, 3, 4, 5)


def loop_columns(x: np.ndarray) -> np.ndarray:
    """The reference: y[n, w, c*H + h] = x[n, c, h, w], one entry at a time."""
    n, c, h, w = x.shape
    y = np.empty((n, w, c * h), dtype=x.dtype)
    for i, j, k, m in np.ndindex(n, c, h, w):
        y[i, m, j * h + k] = x[i, j, k, m]
    return y


@pytest.mark.spec("columns", 1)
@pytest.mark.parametrize("shape", [SHAPE, (1, 1, 1, 1), (3, 1, 2, 1), (1, 4, 1, 3), (2, 2, 3, 1)])
def test_order_matches_explicit_loops(shape):
    """Invariant 1 (P8): entry (c, h, w) of example n lands at step w, feature c*H + h."""
    x = np.random.default_rng(0).standard_normal(shape)
    check_reference(columns, loop_columns, x, rtol=0, atol=0)
    # By hand: two channels of 2 x 2. Step 0 is column 0: channel 0 top, bottom, then channel 1.
    y, _ = columns(np.arange(8.0).reshape(1, 2, 2, 2))
    assert y.tolist() == [[[0.0, 2.0, 4.0, 6.0], [1.0, 3.0, 5.0, 7.0]]]


@pytest.mark.spec("columns", 2)
@pytest.mark.parametrize("seed", [0, 1])
def test_permutation_and_exact_adjoint(seed):
    """Invariant 2: the same multiset of entries, and <columns(x), g> == <x, vjp(g)>: the
    products y*g are exactly the products x*dx, so the sums differ only by summation order."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(SHAPE)
    y, vjp = columns(x)
    np.testing.assert_array_equal(np.sort(y, axis=None), np.sort(x, axis=None))
    assert np.sum(y) == pytest.approx(np.sum(x), rel=1e-15, abs=1e-15)
    g = rng.standard_normal(y.shape)
    (dx,) = vjp(g)
    np.testing.assert_array_equal(np.sort(dx, axis=None), np.sort(g, axis=None))
    np.testing.assert_array_equal(np.sort(y * g, axis=None), np.sort(x * dx, axis=None))
    assert float(np.sum(y * g)) == pytest.approx(float(np.sum(x * dx)), rel=1e-14)
    # Exact for integer-valued entries, whose sums have no rounding in any order.
    xi = rng.integers(-9, 9, SHAPE).astype(float)
    gi = rng.integers(-9, 9, y.shape).astype(float)
    yi, vjpi = columns(xi)
    assert np.sum(yi * gi) == np.sum(xi * vjpi(gi)[0])


def loop_columns_inverse(g: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """dx[n, c, h, w] = g[n, w, c*H + h], one entry at a time (the page's Gradient)."""
    dx = np.empty(shape, dtype=g.dtype)
    for i, j, k, m in np.ndindex(*shape):
        dx[i, j, k, m] = g[i, m, j * shape[2] + k]
    return dx


@pytest.mark.spec("columns", 2)
def test_vjp_matches_the_pages_gradient_entry_by_entry():
    rng = np.random.default_rng(3)
    y, vjp = columns(rng.standard_normal(SHAPE))
    g = rng.standard_normal(y.shape)
    np.testing.assert_array_equal(vjp(g)[0], loop_columns_inverse(g, SHAPE))


@pytest.mark.spec("columns", 3)
@pytest.mark.parametrize("w", range(SHAPE[3]))
def test_step_w_sees_only_column_w(w):
    """Invariant 3: changing column w of x changes step w of y only; the cotangent of step w
    reaches column w of dx only."""
    rng = np.random.default_rng(w)
    x = rng.standard_normal(SHAPE)
    y, vjp = columns(x)
    moved = x.copy()
    moved[:, :, :, w] += 1 + rng.random(SHAPE[:3])  # every entry of column w changes
    y2, _ = columns(moved)
    changed = np.any(y2 != y, axis=(0, 2))  # (W,): which steps changed
    assert changed.tolist() == [i == w for i in range(SHAPE[3])]
    np.testing.assert_array_equal(np.delete(y2, w, axis=1), np.delete(y, w, axis=1))
    g = np.zeros(y.shape)
    g[:, w, :] = rng.standard_normal((SHAPE[0], y.shape[2]))
    (dx,) = vjp(g)
    assert not np.delete(dx, w, axis=3).any()
    assert np.all(dx[:, :, :, w] != 0)


@pytest.mark.spec("columns", 4)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_vjp_inverts_the_forward_and_outputs_are_contiguous(dtype):
    """Invariant 4: vjp(columns(x)) = x and columns(vjp(g)) = g; C-contiguous copies."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal(SHAPE).astype(dtype)
    if dtype == np.complex128:
        x = x + 1j * rng.standard_normal(SHAPE)
    y, vjp = columns(x)
    assert y.dtype == dtype and y.flags.c_contiguous and not np.shares_memory(y, x)
    (back,) = vjp(y)
    np.testing.assert_array_equal(back, x)
    assert back.dtype == dtype and back.flags.c_contiguous and not np.shares_memory(back, y)
    g = rng.standard_normal(y.shape).astype(dtype)
    np.testing.assert_array_equal(columns(vjp(g)[0])[0], g)


def test_non_contiguous_input_is_still_correct():
    """A transposed view in, the right values out."""
    base = np.random.default_rng(2).standard_normal((2, 5, 4, 3))
    x = base.transpose(0, 3, 2, 1)  # (2, 3, 4, 5), not C-contiguous
    y, vjp = columns(x)
    np.testing.assert_array_equal(y, loop_columns(x))
    g = np.random.default_rng(3).standard_normal(y.shape)
    np.testing.assert_array_equal(vjp(g)[0], loop_columns_inverse(g, x.shape))


def test_gradient_protocol_at_other_shapes():
    """P1-P4 beyond the contract's sample: one column, one row, one channel."""
    rng = np.random.default_rng(5)
    for shape in [(1, 3, 2, 1), (2, 2, 1, 4), (3, 1, 3, 2)]:
        report = check_vjp(columns, rng.standard_normal(shape))
        assert "complex-step" in {c.method for c in report.checks}


@given(
    x=arrays(
        np.float64,
        array_shapes(min_dims=4, max_dims=4, min_side=1, max_side=4),
        elements=st.floats(-5, 5, allow_subnormal=False),
    )
)
def test_shape_law_and_values(x):
    """P10: any (N, C, H, W) gives (N, W, C*H), the loops' layout, and a vjp of x's shape."""
    n, c, h, w = x.shape
    y, vjp = columns(x)
    assert y.shape == (n, w, c * h)
    np.testing.assert_array_equal(y, loop_columns(x))
    assert vjp(np.ones(y.shape))[0].shape == x.shape


def test_empty_batch_and_empty_sequence():
    """N = 0 gives (0, W, C*H); W = 0 gives a sequence of no steps, (N, 0, C*H)."""
    y, vjp = columns(np.zeros((0, 2, 3, 4)))
    assert y.shape == (0, 4, 6)
    assert vjp(np.zeros((0, 4, 6)))[0].shape == (0, 2, 3, 4)
    y, vjp = columns(np.zeros((2, 2, 3, 0)))
    assert y.shape == (2, 0, 6)
    assert vjp(np.zeros((2, 0, 6)))[0].shape == (2, 2, 3, 0)


def test_steps_of_no_features_are_a_named_shape_error():
    with pytest.raises(nn.ShapeError, match=r"^columns: output dimension 'd' would be 0"):
        columns(np.zeros((2, 0, 3, 4)))


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 3, 4, 5, 6), (12,)])
def test_wrong_rank_is_a_named_shape_error(shape):
    with pytest.raises(nn.ShapeError, match=r"^columns: .*signature \(n,c,h,w\)->\(n,w,d\)"):
        columns(np.zeros(shape))


def test_float32_stays_float32_and_exact():
    x = np.random.default_rng(6).standard_normal(SHAPE).astype(np.float32)
    y, vjp = columns(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, loop_columns(x))
    assert vjp(np.ones(y.shape, np.float32))[0].dtype == np.float32
