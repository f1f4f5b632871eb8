"""Tests of `max_pool2d` (spec/max_pool2d.md): loop references, the tie rule, invariants."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from numpy.lib.stride_tricks import sliding_window_view

import nn
from conftest import same_bits
from nn import max_pool2d
from nn.pool import _geometry, _max_offsets, _scatter
from nn.testing import check_reference, check_vjp, sample_inputs

# (H, W, window, stride): disjoint, exact fit, remainder cropped, gaps, overlapping, window 1.
GEOMETRIES = [
    (4, 6, 2, None),
    (5, 7, 2, None),
    (6, 5, (3, 2), None),
    (7, 8, 2, 3),
    (5, 6, 3, 1),
    (6, 7, (3, 2), (2, 1)),
    (5, 6, (2, 3), (1, 2)),
    (4, 5, 1, 1),
    (5, 5, 5, None),
    (18, 17, (17, 16), 1),  # 272 offsets: k no longer fits in uint8
]


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def first_max_loops(x, window=2, stride=None):
    """Explicit loops: each window's value and the (row, col) of its first maximum.

    Row-major order, strictly greater replaces, so a tie keeps the earlier element; NaN
    counts as larger than every number and the first NaN wins.
    """
    (wh, ww), (sh, sw) = pair(window), pair(stride if stride is not None else window)
    n_, c_, h, w = x.shape
    p_, q_ = (h - wh) // sh + 1, (w - ww) // sw + 1
    y = np.empty((n_, c_, p_, q_), x.dtype)
    where = np.empty((n_, c_, p_, q_, 2), int)
    for n, c, p, q in np.ndindex(n_, c_, p_, q_):
        best, at = None, None
        for i in range(wh):
            for j in range(ww):
                v = float(x[n, c, p * sh + i, q * sw + j])
                nan_wins = math.isnan(v) and not math.isnan(best) if best is not None else False
                if best is None or v > best or nan_wins:
                    best, at = v, (p * sh + i, q * sw + j)
        y[n, c, p, q], where[n, c, p, q] = best, at
    return y, where


def loop_max_pool(x, window=2, stride=None):
    return first_max_loops(x, window, stride)[0]


def loop_max_pool_vjp(x, g, window=2, stride=None):
    """dx by explicit loops: each window's cotangent added at its first maximum."""
    _, where = first_max_loops(x, window, stride)
    dx = np.zeros(x.shape)
    for n, c, p, q in np.ndindex(g.shape):
        r, s = where[n, c, p, q]
        dx[n, c, r, s] += g[n, c, p, q]
    return dx


@st.composite
def pooling_cases(draw, values=None, max_side=7):
    """(x, window, stride) for any geometry with at least one window; ties when values are few."""
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    window = (draw(st.integers(1, h)), draw(st.integers(1, w)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), h, w)
    elements = values if values is not None else st.floats(-1e3, 1e3, allow_subnormal=False)
    return draw(arrays(np.float64, shape, elements=elements)), window, stride


few_values = st.integers(-2, 2).map(float)  # many ties in every window


def static_of(window, stride):
    return {"window": window} if stride is None else {"window": window, "stride": stride}


@pytest.mark.spec("max_pool2d", 1)
@pytest.mark.parametrize(("h", "w", "window", "stride"), GEOMETRIES)
@pytest.mark.parametrize("seed", [0, 1])
def test_forward_matches_loops(h, w, window, stride, seed):
    """P8: the output equals explicit loops over every window, bit for bit."""
    x = np.random.default_rng(seed).standard_normal((2, 3, h, w))
    check_reference(
        max_pool2d, loop_max_pool, x, static=static_of(window, stride), rtol=0.0, atol=0.0
    )


@pytest.mark.spec("max_pool2d", 1)
@given(case=pooling_cases(values=few_values))
def test_forward_and_backward_match_loops_for_any_geometry(case):
    """The loop references, forward and backward, at any geometry and with many ties."""
    x, window, stride = case
    y, vjp = max_pool2d(x, **static_of(window, stride))
    np.testing.assert_array_equal(y, loop_max_pool(x, window, stride))
    g = np.arange(1.0, y.size + 1).reshape(y.shape)  # integers: every sum is exact
    np.testing.assert_array_equal(vjp(g)[0], loop_max_pool_vjp(x, g, window, stride))


@pytest.mark.spec("max_pool2d", 2)
def test_tie_rule_first_maximum_in_row_major_order():
    """A window's cotangent goes to its first maximum in row-major order, all of it."""
    # Four 2x2 windows: all equal; tie at (0,1) and (1,0); tie on the bottom row; no tie.
    rows = [[5, 5, 1, 7], [5, 5, 7, 0], [3, 2, 0, 1], [9, 9, 2, 1]]
    x = np.array(rows, dtype=float).reshape(1, 1, 4, 4)
    y, vjp = max_pool2d(x)
    np.testing.assert_array_equal(y, [[[[5.0, 7.0], [9.0, 2.0]]]])
    (dx,) = vjp(np.array([[[[10.0, 20.0], [30.0, 40.0]]]]))
    expected = np.zeros((4, 4))
    expected[0, 0] = 10.0  # all four equal: the top-left element
    expected[0, 3] = 20.0  # (0, 1) of the window comes before (1, 0) in row-major order
    expected[3, 0] = 30.0  # the bottom row's tie: its left element
    expected[3, 2] = 40.0  # the unique maximum
    np.testing.assert_array_equal(dx[0, 0], expected)
    # A constant image: every window sends everything to its top-left element, in both paths.
    for stride in (None, 1):
        y, vjp = max_pool2d(np.full((1, 1, 4, 6), -2.5), window=(2, 3), stride=stride)
        g = np.arange(1.0, y.size + 1).reshape(y.shape)
        sh, sw = (2, 3) if stride is None else (1, 1)
        expected = np.zeros((4, 6))
        for p, q in np.ndindex(y.shape[2:]):
            expected[p * sh, q * sw] += g[0, 0, p, q]  # the window's top-left pixel
        np.testing.assert_array_equal(vjp(g)[0][0, 0], expected)


@pytest.mark.spec("max_pool2d", 3)
def test_overlapping_windows_accumulate():
    """With stride < window, a pixel that is the first maximum of several windows gets the
    sum of their cotangents."""
    # 2x2 windows at stride 1 over a constant 3x4 image: window (p, q) sends its cotangent to
    # its top-left pixel (p, q), so dx is g padded with zeros.
    g = np.arange(1.0, 7.0).reshape(1, 1, 2, 3)
    _, vjp = max_pool2d(np.ones((1, 1, 3, 4)), window=2, stride=1)
    np.testing.assert_array_equal(vjp(g)[0][0, 0], [[1, 2, 3, 0], [4, 5, 6, 0], [0, 0, 0, 0]])
    # A peak at the centre of a 3x3 image is the maximum of all four 2x2 windows.
    x = np.zeros((1, 1, 3, 3))
    x[0, 0, 1, 1] = 1.0
    _, vjp = max_pool2d(x, window=2, stride=1)
    (dx,) = vjp(g[..., :2])
    assert dx[0, 0, 1, 1] == 1 + 2 + 4 + 5
    assert np.count_nonzero(dx) == 1


@pytest.mark.spec("max_pool2d", 4)
@given(case=pooling_cases(values=few_values))
def test_gradient_sum_equals_cotangent_sum(case):
    """Each window's cotangent lands on exactly one pixel: sum(dx) = sum(g), overlapping or not."""
    x, window, stride = case
    y, vjp = max_pool2d(x, **static_of(window, stride))
    g = np.random.default_rng(0).integers(-9, 10, y.shape).astype(float)  # exact sums
    assert vjp(g)[0].sum() == g.sum()


@pytest.mark.spec("max_pool2d", 5)
@pytest.mark.parametrize(("h", "w", "window", "stride"), GEOMETRIES)
def test_each_window_gradient_lands_in_its_window(h, w, window, stride):
    """A cotangent on one window moves exactly one pixel of that window, by that cotangent."""
    (wh, ww), (sh, sw) = pair(window), pair(stride if stride is not None else window)
    x = np.random.default_rng(0).integers(-2, 3, (1, 2, h, w)).astype(float)  # ties
    y, vjp = max_pool2d(x, **static_of(window, stride))
    for c, p, q in np.ndindex(y.shape[1:]):
        g = np.zeros(y.shape)
        g[0, c, p, q] = 3.0
        (dx,) = vjp(g)
        (where,) = np.argwhere(dx != 0)
        _, c_, r, s = where
        assert c_ == c and p * sh <= r < p * sh + wh and q * sw <= s < q * sw + ww
        assert dx[0, c, r, s] == 3.0 and x[0, c, r, s] == y[0, c, p, q]


@pytest.mark.spec("max_pool2d", 6)
@given(case=pooling_cases(), a=st.floats(1e-3, 1e3))
def test_positively_homogeneous(case, a):
    """max_pool(a x) = a max_pool(x) for a > 0, bit for bit: rounding a * x is monotone."""
    x, window, stride = case
    static = static_of(window, stride)
    np.testing.assert_array_equal(max_pool2d(a * x, **static)[0], a * max_pool2d(x, **static)[0])


@pytest.mark.spec("max_pool2d", 7)
@given(case=pooling_cases(), c=st.floats(-1e3, 1e3, allow_subnormal=False))
def test_commutes_with_adding_a_constant(case, c):
    """max_pool(x + c) = max_pool(x) + c, bit for bit: rounding x + c is monotone."""
    x, window, stride = case
    static = static_of(window, stride)
    np.testing.assert_array_equal(max_pool2d(x + c, **static)[0], max_pool2d(x, **static)[0] + c)


@pytest.mark.spec("max_pool2d", 8)
@given(
    h=st.integers(1, 12),
    w=st.integers(1, 12),
    window=st.tuples(st.integers(1, 6), st.integers(1, 6)),
    stride=st.tuples(st.integers(1, 6), st.integers(1, 6)),
)
def test_output_size_law(h, w, window, stride):
    """P = (H - wh) // sh + 1 and Q = (W - ww) // sw + 1; a ShapeError when a side is < 1."""
    x = np.zeros((2, 1, h, w))
    p, q = (h - window[0]) // stride[0] + 1, (w - window[1]) // stride[1] + 1
    if p < 1 or q < 1:
        with pytest.raises(nn.ShapeError, match=r"^max_pool2d: output dimension '[pq]'"):
            max_pool2d(x, window=window, stride=stride)
        return
    y, vjp = max_pool2d(x, window=window, stride=stride)
    assert y.shape == (2, 1, p, q)
    assert vjp(np.ones(y.shape))[0].shape == x.shape


def argmax_over_sliding_windows(x, geo):
    """The vectorized reference: every window copied out by sliding_window_view, then
    np.argmax, which returns the first maximum (or first NaN) in row-major order."""
    wh, ww, sh, sw, p, q = geo
    windows = sliding_window_view(x, (wh, ww), axis=(2, 3))[:, :, ::sh, ::sw]  # (N,C,P,Q,wh,ww)
    flat = windows.reshape(*x.shape[:2], p, q, wh * ww)
    k = flat.argmax(axis=-1)
    return np.take_along_axis(flat, k[..., None], axis=-1)[..., 0], k


@pytest.mark.spec("max_pool2d", 9)
@given(case=pooling_cases(values=st.sampled_from([-1.0, 0.0, 2.0, math.nan, -math.inf])))
def test_fast_path_equals_general_path(case):
    """The offset loop equals sliding_window_view + argmax at any geometry: the same values
    and first-maximum offsets (ties, NaN, -inf included). For disjoint windows, writing the
    backward (the fast path) equals accumulating it (the general path)."""
    x, window, stride = case
    geo = _geometry("max_pool2d", x, window, stride)
    y, k = _max_offsets(x, geo)
    y_ref, k_ref = argmax_over_sliding_windows(x, geo)
    np.testing.assert_array_equal(y, y_ref)
    np.testing.assert_array_equal(k, k_ref)
    wh, ww, sh, sw, _, _ = geo
    geo = _geometry("max_pool2d", x, window, (max(sh, wh), max(sw, ww)))  # disjoint windows
    _, k = _max_offsets(x, geo)
    g = np.arange(1.0, k.size + 1).reshape(k.shape)
    write, add = (
        _scatter(lambda j, ns: np.where(k[ns] == j, g[ns], 0), x.shape, g.dtype, geo, accumulate=a)
        for a in (False, True)
    )
    np.testing.assert_array_equal(write, add)


@pytest.mark.spec("max_pool2d", 10)
@pytest.mark.parametrize("stride", [None, 1])
def test_nan_propagates_and_takes_the_gradient(stride):
    """A window holding NaN outputs NaN and sends its cotangent to its first NaN."""
    x = np.array([[[[1.0, np.nan, 3.0, 4.0], [np.nan, 0.0, 2.0, -1.0]]]])
    y, vjp = max_pool2d(x, stride=stride)
    np.testing.assert_array_equal(y, loop_max_pool(x, 2, stride))
    assert np.isnan(y[0, 0, 0, 0]) and not np.isnan(y[..., -1]).any()
    g = np.arange(1.0, y.size + 1).reshape(y.shape)
    (dx,) = vjp(g)
    np.testing.assert_array_equal(dx, loop_max_pool_vjp(x, g, 2, stride))
    assert dx[0, 0, 0, 1] == (1.0 if stride is None else 3.0)  # stride 1: two windows share it
    assert dx[0, 0, 1, 0] == 0.0  # the second NaN of the window gets nothing


@pytest.mark.parametrize(("h", "w", "window", "stride"), GEOMETRIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_protocol(h, w, window, stride, seed):
    """P1-P4, P7 at distinct inputs (entries >= 1e-3 apart: no tie within a difference step)."""
    (x,), _ = sample_inputs(max_pool2d, seed=seed, sizes={"n": 2, "c": 2, "h": h, "w": w})
    report = check_vjp(max_pool2d, x, static=static_of(window, stride), seed=seed)
    methods = {c.method for c in report.checks}
    assert {"central-difference", "reentrancy"} <= methods
    assert ("jacobian" in methods) == (x.size <= 300)  # the full Jacobian on small inputs


@pytest.mark.parametrize(("h", "w", "window", "stride"), GEOMETRIES)
def test_float32_agrees_and_stays_float32(h, w, window, stride):
    """float32 in, float32 out and dx; equal to float64 on the same values (a max and a
    placement round nothing; overlapping sums of small integers are exact too)."""
    rng = np.random.default_rng(5)
    x32 = rng.standard_normal((2, 3, h, w)).astype(np.float32)
    static = static_of(window, stride)
    y32, vjp32 = max_pool2d(x32, **static)
    y64, vjp64 = max_pool2d(x32.astype(np.float64), **static)
    g = rng.integers(-9, 10, y32.shape)
    (dx32,), (dx64,) = vjp32(g.astype(np.float32)), vjp64(g.astype(np.float64))
    assert y32.dtype == dx32.dtype == np.float32
    np.testing.assert_array_equal(y32, y64.astype(np.float32))
    np.testing.assert_array_equal(dx32, dx64.astype(np.float32))


def test_float32_at_a_training_size():
    """The first pooling layer of the CNN: float32 end to end, equal to the loops on a slice."""
    x = np.random.default_rng(0).standard_normal((4, 8, 28, 28)).astype(np.float32)
    y, vjp = max_pool2d(x)
    (dx,) = vjp(np.ones(y.shape, np.float32))
    assert y.shape == (4, 8, 14, 14) and y.dtype == dx.dtype == np.float32
    np.testing.assert_array_equal(y[:1, :2], loop_max_pool(x[:1, :2]))
    assert dx.sum() == y.size and set(np.unique(dx)) == {0.0, 1.0}


@pytest.mark.parametrize(("h", "w", "window", "stride"), [(4, 6, 2, None), (5, 6, 3, 1)])
def test_vjp_is_reentrant_and_pure(h, w, window, stride):
    """P7 in both paths: vjp twice is bitwise equal, and neither x nor g is written."""
    rng = np.random.default_rng(1)
    x = rng.integers(-2, 3, (2, 2, h, w)).astype(np.float32)
    x_before = x.copy()
    y, vjp = max_pool2d(x, **static_of(window, stride))
    g = rng.standard_normal(y.shape).astype(np.float32)
    g_before = g.copy()
    first = vjp(g)[0].copy()
    assert same_bits(vjp(g)[0], first)
    assert same_bits(x, x_before) and same_bits(g, g_before)


@pytest.mark.parametrize("stride", [None, 1])
def test_infinite_cotangent_stays_on_the_maximum(stride):
    """An infinite or NaN cotangent reaches only its window's maximum: no 0 * inf = NaN."""
    x = np.array([[[[1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 5.0, 0.0]]]])
    y, vjp = max_pool2d(x, stride=stride)
    g = np.zeros(y.shape)
    g[..., 0], g[..., -1] = np.inf, np.nan
    (dx,) = vjp(g)
    np.testing.assert_array_equal(dx, loop_max_pool_vjp(x, g, 2, stride))
    assert np.isnan(dx).sum() == 1 and np.isinf(dx).sum() == 1


def test_default_window_is_2_with_stride_equal_to_window():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(max_pool2d(x)[0], max_pool2d(x, window=2, stride=2)[0])
    assert max_pool2d(x)[0].tolist() == [[[[5.0, 7.0], [13.0, 15.0]]]]


@pytest.mark.parametrize(
    ("static", "argument", "received"),
    [
        ({"window": 0}, "window", "0"),
        ({"window": -2}, "window", "-2"),
        ({"window": (2,)}, "window", r"\(2,\)"),
        ({"window": (2, 2, 2)}, "window", r"\(2, 2, 2\)"),
        ({"window": 2.0}, "window", "2.0"),
        ({"window": True}, "window", "True"),
        ({"window": "2"}, "window", "'2'"),
        ({"window": 2, "stride": 0}, "stride", "0"),
        ({"window": 2, "stride": (1, 0)}, "stride", r"\(1, 0\)"),
        ({"window": 2, "stride": (1.5, 1)}, "stride", r"\(1.5, 1\)"),
    ],
)
def test_bad_window_or_stride_names_argument_expected_and_received(static, argument, received):
    expected = r"a positive int or a pair \(h, w\) of positive ints"
    with pytest.raises(
        ValueError, match=rf"^max_pool2d: {argument} must be {expected}, received {received}$"
    ):
        max_pool2d(np.zeros((1, 1, 4, 4)), **static)


def test_unknown_keyword_is_a_type_error_naming_the_op():
    with pytest.raises(
        TypeError, match=r"max_pool2d\(\) got an unexpected keyword argument 'size'"
    ):
        max_pool2d(np.zeros((1, 1, 4, 4)), size=2)


def test_window_larger_than_the_image_is_a_shape_error():
    with pytest.raises(nn.ShapeError, match=r"^max_pool2d: output dimension 'q' would be 0"):
        max_pool2d(np.zeros((1, 1, 4, 3)), window=4)


def test_numpy_integers_are_accepted_as_window_and_stride():
    x = np.arange(36.0).reshape(1, 1, 6, 6)
    y, _ = max_pool2d(x, window=np.int64(3), stride=(np.int32(3), 3))
    assert y.tolist() == [[[[14.0, 17.0], [32.0, 35.0]]]]


def test_complex_input_is_refused():
    with pytest.raises(nn.DTypeError, match=r"^max_pool2d: x must be real"):
        max_pool2d(np.zeros((1, 1, 2, 2), complex))
