"""flatten (spec/flatten.md): C order against explicit loops, a view, the vjp, shape laws."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

import nn
from nn import flatten
from nn.testing import check_reference, check_vjp

# Distinct sizes, so that flattening in the wrong axis order cannot give the right layout.
SHAPE = (2, 3, 4, 5)


def loop_flatten(x: np.ndarray) -> np.ndarray:
    """The reference: y[n, (c*H + h)*W + w] = x[n, c, h, w], one entry at a time."""
    n, c, h, w = x.shape
    y = np.empty((n, c * h * w), dtype=x.dtype)
    for i, j, k, m in np.ndindex(n, c, h, w):
        y[i, (j * h + k) * w + m] = x[i, j, k, m]
    return y


@pytest.mark.spec("flatten", 1)
@pytest.mark.parametrize("shape", [SHAPE, (1, 1, 1, 1), (3, 1, 2, 1), (1, 4, 1, 3)])
def test_c_order_matches_explicit_loops(shape):
    """Invariant 1 (P8): entry (c, h, w) of example n lands at column (c*H + h)*W + w."""
    x = np.random.default_rng(0).standard_normal(shape)
    check_reference(flatten, loop_flatten, x, rtol=0, atol=0)


def test_c_order_matches_torch_convention_on_a_small_example():
    """The channel index varies slowest: all of channel 0, then all of channel 1, as torch."""
    x = np.arange(8.0).reshape(1, 2, 2, 2)
    y, _ = flatten(x)
    assert y.tolist() == [[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0]]
    # Channel 0 of x is [[0, 1], [2, 3]]: its four entries come first, in row order.
    assert y[0, :4].tolist() == x[0, 0].ravel().tolist()


@pytest.mark.spec("flatten", 2)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_output_is_a_view_of_the_input(dtype):
    """Invariant 2: for a C-contiguous x the output shares x's memory: no copy is made."""
    x = np.random.default_rng(1).standard_normal(SHAPE).astype(dtype)
    y, vjp = flatten(x)
    assert np.shares_memory(y, x)
    assert y.base is x or y.base is x.base
    assert y.dtype == dtype
    g = np.ones(y.shape, dtype=dtype)
    (dx,) = vjp(g)
    assert dx.dtype == dtype
    assert np.shares_memory(dx, g)  # the vjp is a reshape of g too


def test_non_contiguous_input_is_copied_and_still_correct():
    """A transposed view cannot be reshaped in place: NumPy copies, the values stay right."""
    base = np.random.default_rng(2).standard_normal((2, 5, 4, 3))
    x = base.transpose(0, 3, 2, 1)  # (2, 3, 4, 5), not C-contiguous
    y, vjp = flatten(x)
    np.testing.assert_array_equal(y, loop_flatten(x))
    assert not np.shares_memory(y, base)
    g = np.random.default_rng(3).standard_normal(y.shape)
    np.testing.assert_array_equal(vjp(g)[0], g.reshape(x.shape))


@pytest.mark.spec("flatten", 3)
@pytest.mark.parametrize("seed", [0, 1])
def test_vjp_is_the_inverse_reshape(seed):
    """Invariant 3: dx = g reshaped to (N, C, H, W), entry for entry, so <y, g> = <x, dx>
    exactly (both sums add the same products in the same order)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal(SHAPE)
    y, vjp = flatten(x)
    g = rng.standard_normal(y.shape)
    (dx,) = vjp(g)
    np.testing.assert_array_equal(flatten(dx)[0], g)  # flatten undoes the vjp
    for i, j, k, m in np.ndindex(*SHAPE):
        assert dx[i, j, k, m] == g[i, (j * SHAPE[2] + k) * SHAPE[3] + m]
    assert np.sum(y * g) == np.sum(x * dx)


def test_gradient_protocol_at_other_shapes():
    """P1-P4 beyond the contract's sample: a single example, single pixels, one channel."""
    rng = np.random.default_rng(4)
    for shape in [(1, 3, 2, 2), (4, 2, 1, 1), (2, 1, 3, 2)]:
        check_vjp(flatten, rng.standard_normal(shape))


@given(
    x=arrays(
        np.float64,
        array_shapes(min_dims=4, max_dims=4, min_side=1, max_side=4),
        elements=st.floats(-5, 5, allow_subnormal=False),
    )
)
def test_shape_law_and_values(x):
    """P10: any (N, C, H, W) gives (N, C*H*W) with the same entries in the same C order."""
    n, c, h, w = x.shape
    y, vjp = flatten(x)
    assert y.shape == (n, c * h * w)
    np.testing.assert_array_equal(y.ravel(), x.ravel())
    assert vjp(np.ones(y.shape))[0].shape == x.shape


def test_empty_batch_gives_empty_rows():
    """N = 0 is fine: (0, C, H, W) flattens to (0, C*H*W) (reshape(0, -1) would fail)."""
    y, vjp = flatten(np.zeros((0, 2, 3, 4)))
    assert y.shape == (0, 24)
    assert vjp(np.zeros((0, 24)))[0].shape == (0, 2, 3, 4)


def test_empty_feature_map_is_a_named_shape_error():
    """C*H*W = 0 leaves nothing to feed a dense layer: refused, naming the op and shapes."""
    with pytest.raises(nn.ShapeError, match=r"^flatten: output dimension 'd' would be 0"):
        flatten(np.zeros((2, 0, 3, 4)))


@pytest.mark.parametrize("shape", [(2, 3, 4), (2, 3, 4, 5, 6), (12,)])
def test_wrong_rank_is_a_named_shape_error(shape):
    """Not NCHW: flatten takes exactly four dimensions (loops=False), named in the error."""
    with pytest.raises(nn.ShapeError, match=r"^flatten: .*signature \(n,c,h,w\)->\(n,d\)"):
        flatten(np.zeros(shape))


def test_float32_stays_float32_and_exact():
    x = np.random.default_rng(5).standard_normal(SHAPE).astype(np.float32)
    y, vjp = flatten(x)
    assert y.dtype == np.float32
    np.testing.assert_array_equal(y, loop_flatten(x))
    assert vjp(np.ones(y.shape, np.float32))[0].dtype == np.float32
