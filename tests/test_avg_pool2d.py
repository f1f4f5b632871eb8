"""Tests of `avg_pool2d` (spec/avg_pool2d.md): loop references, linearity, adjointness."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import nn
from conftest import same_bits
from nn import avg_pool2d
from nn.pool import _geometry, _scatter
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
]


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


def static_of(window, stride):
    return {"window": window} if stride is None else {"window": window, "stride": stride}


def sides(window, stride):
    return pair(window), pair(stride if stride is not None else window)


def loop_avg_pool(x, window=2, stride=None):
    """Explicit loops: the correctly rounded sum of each window, divided by its size."""
    (wh, ww), (sh, sw) = sides(window, stride)
    n_, c_, h, w = x.shape
    y = np.empty((n_, c_, (h - wh) // sh + 1, (w - ww) // sw + 1))
    for n, c, p, q in np.ndindex(y.shape):
        block = x[n, c, p * sh : p * sh + wh, q * sw : q * sw + ww]
        y[n, c, p, q] = math.fsum(block.ravel()) / (wh * ww)
    return y


def loop_conv2d(x, kernel, stride):
    """A plain convolution (cross-correlation, no padding) by explicit loops, kernel (K,C,R,S):
    y[n,k,p,q] = sum_{c,r,s} kernel[k,c,r,s] x[n,c,p*sh+r,q*sw+s]."""
    (sh, sw), (k_, c_, r_, s_) = stride, kernel.shape
    n_, _, h, w = x.shape
    y = np.zeros((n_, k_, (h - r_) // sh + 1, (w - s_) // sw + 1))
    for n, k, p, q in np.ndindex(y.shape):
        for c, r, s in np.ndindex(c_, r_, s_):
            y[n, k, p, q] += kernel[k, c, r, s] * x[n, c, p * sh + r, q * sw + s]
    return y


@st.composite
def pooling_cases(draw, max_side=7):
    """(x, window, stride) for any geometry with at least one window."""
    h, w = draw(st.integers(1, max_side)), draw(st.integers(1, max_side))
    window = (draw(st.integers(1, h)), draw(st.integers(1, w)))
    stride = draw(st.one_of(st.none(), st.tuples(st.integers(1, 4), st.integers(1, 4))))
    shape = (draw(st.integers(1, 2)), draw(st.integers(1, 2)), h, w)
    x = draw(arrays(np.float64, shape, elements=st.floats(-1e3, 1e3, allow_subnormal=False)))
    return x, window, stride


@pytest.mark.spec("avg_pool2d", 1)
@pytest.mark.parametrize(("h", "w", "window", "stride"), GEOMETRIES)
@pytest.mark.parametrize("seed", [0, 1])
def test_forward_matches_loops(h, w, window, stride, seed):
    """P8: the output equals correctly rounded window means computed by explicit loops."""
    x = np.random.default_rng(seed).standard_normal((2, 3, h, w))
    check_reference(avg_pool2d, loop_avg_pool, x, static=static_of(window, stride), rtol=1e-14)


@pytest.mark.spec("avg_pool2d", 2)
@pytest.mark.parametrize(("h", "w", "window", "stride"), GEOMETRIES)
def test_equals_conv2d_with_a_constant_kernel_per_channel(h, w, window, stride):
    """avg_pool2d(x) = conv2d(x, K) with K[k, c] = [k = c] / (wh ww): each channel is
    correlated with a constant kernel of its own, and no channel mixes with another."""
    (wh, ww), step = sides(window, stride)
    c = 3
    kernel = np.zeros((c, c, wh, ww))
    for k in range(c):
        kernel[k, k] = 1.0 / (wh * ww)
    x = np.random.default_rng(2).standard_normal((2, c, h, w))
    y, _ = avg_pool2d(x, **static_of(window, stride))
    np.testing.assert_allclose(y, loop_conv2d(x, kernel, step), rtol=1e-13, atol=1e-15)


@pytest.mark.spec("avg_pool2d", 3)
@given(case=pooling_cases(), a=st.floats(-10, 10), b=st.floats(-10, 10), seed=st.integers(0, 9))
def test_linear(case, a, b, seed):
    """avg_pool(a x1 + b x2) = a avg_pool(x1) + b avg_pool(x2), to rounding."""
    x1, window, stride = case
    x2 = np.random.default_rng(seed).uniform(-1e3, 1e3, x1.shape)
    static = static_of(window, stride)
    left, _ = avg_pool2d(a * x1 + b * x2, **static)
    right = a * avg_pool2d(x1, **static)[0] + b * avg_pool2d(x2, **static)[0]
    # A window of m terms rounds m + 1 times on each side, by at most eps times the mean of
    # |a x1| + |b x2| (the terms of both sides are bounded by it).
    (wh, ww), _ = sides(window, stride)
    scale, _ = avg_pool2d(np.abs(a * x1) + np.abs(b * x2), **static)
    tol = 4 * (wh * ww + 2) * np.finfo(float).eps * scale + 1e-300
    assert np.all(np.abs(left - right) <= tol)


@pytest.mark.spec("avg_pool2d", 4)
@given(case=pooling_cases(), seed=st.integers(0, 9))
def test_vjp_is_the_adjoint(case, seed):
    """<avg_pool(x), g> = <x, vjp(g)>: the op is linear and its vjp is its transpose."""
    x, window, stride = case
    y, vjp = avg_pool2d(x, **static_of(window, stride))
    g = np.random.default_rng(seed).standard_normal(y.shape)
    (dx,) = vjp(g)
    left, right = math.fsum((y * g).ravel()), math.fsum((x * dx).ravel())
    bound = math.fsum((np.abs(x) * np.abs(dx)).ravel())  # both sums of the same products
    assert abs(left - right) <= 1e-13 * bound + 1e-300


@pytest.mark.spec("avg_pool2d", 5)
@given(case=pooling_cases(), seed=st.integers(0, 9))
def test_gradient_sum_equals_cotangent_sum(case, seed):
    """Each window's cotangent is split into wh ww equal shares: sum(dx) = sum(g)."""
    x, window, stride = case
    y, vjp = avg_pool2d(x, **static_of(window, stride))
    g = np.random.default_rng(seed).standard_normal(y.shape)
    (dx,) = vjp(g)
    total = math.fsum(dx.ravel())
    assert abs(total - math.fsum(g.ravel())) <= 1e-14 * math.fsum(np.abs(g).ravel())


@pytest.mark.spec("avg_pool2d", 6)
@pytest.mark.parametrize(("h", "w", "window", "stride"), GEOMETRIES)
def test_each_window_gradient_spreads_evenly_over_its_window(h, w, window, stride):
    """A cotangent on one window adds g / (wh ww) to each of its pixels and nothing elsewhere."""
    (wh, ww), (sh, sw) = sides(window, stride)
    x = np.random.default_rng(0).standard_normal((1, 2, h, w))
    y, vjp = avg_pool2d(x, **static_of(window, stride))
    for c, p, q in np.ndindex(y.shape[1:]):
        g = np.zeros(y.shape)
        g[0, c, p, q] = 3.0
        expected = np.zeros(x.shape)
        expected[0, c, p * sh : p * sh + wh, q * sw : q * sw + ww] = 3.0 / (wh * ww)
        np.testing.assert_array_equal(vjp(g)[0], expected)


@pytest.mark.spec("avg_pool2d", 7)
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
        with pytest.raises(nn.ShapeError, match=r"^avg_pool2d: output dimension '[pq]'"):
            avg_pool2d(x, window=window, stride=stride)
        return
    y, vjp = avg_pool2d(x, window=window, stride=stride)
    assert y.shape == (2, 1, p, q)
    assert vjp(np.ones(y.shape))[0].shape == x.shape


@pytest.mark.spec("avg_pool2d", 8)
@given(case=pooling_cases(), seed=st.integers(0, 9))
def test_fast_path_equals_general_path(case, seed):
    """For disjoint windows, writing each window's share once (the fast path, which leaves
    uncovered pixels at zero) equals accumulating the shares (the general path), bit for bit."""
    x, window, stride = case
    (wh, ww), (sh, sw) = sides(window, stride)
    stride = (max(sh, wh), max(sw, ww))  # disjoint windows
    geo = _geometry("avg_pool2d", x, window, stride)
    y, vjp = avg_pool2d(x, window=window, stride=stride)
    g = np.random.default_rng(seed).standard_normal(y.shape)
    share = g / (wh * ww)
    write, add = (
        _scatter(lambda _, ns: share[ns], x.shape, x.dtype, geo, accumulate=a)
        for a in (False, True)
    )
    np.testing.assert_array_equal(write, add)
    np.testing.assert_array_equal(vjp(g)[0], write)


@pytest.mark.parametrize(("h", "w", "window", "stride"), GEOMETRIES)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_protocol(h, w, window, stride, seed):
    """P1-P4, P7: complex step, central differences, full Jacobian, reentrancy."""
    (x,), _ = sample_inputs(avg_pool2d, seed=seed, sizes={"n": 2, "c": 2, "h": h, "w": w})
    report = check_vjp(avg_pool2d, x, static=static_of(window, stride), seed=seed)
    methods = {c.method for c in report.checks}
    assert {"complex-step", "central-difference", "jacobian", "reentrancy"} <= methods


@pytest.mark.parametrize(("h", "w", "window", "stride"), GEOMETRIES)
def test_float32_agrees_and_stays_float32(h, w, window, stride):
    """float32 in, float32 out and dx, within float32 rounding of the float64 results."""
    rng = np.random.default_rng(5)
    x = rng.standard_normal((2, 3, h, w))
    static = static_of(window, stride)
    y32, vjp32 = avg_pool2d(x.astype(np.float32), **static)
    y64, vjp64 = avg_pool2d(x, **static)
    g = rng.standard_normal(y64.shape)
    (dx32,), (dx64,) = vjp32(g.astype(np.float32)), vjp64(g)
    assert y32.dtype == dx32.dtype == np.float32
    (wh, ww), _ = sides(window, stride)
    tol = (wh * ww + 2) * np.finfo(np.float32).eps  # relative to the mean of |x|, |g|
    scale, _ = avg_pool2d(np.abs(x), **static)
    assert np.all(np.abs(y32 - y64) <= tol * scale)
    _, scatter = avg_pool2d(np.zeros(x.shape), **static)
    assert np.all(np.abs(dx32 - dx64) <= tol * scatter(np.abs(g))[0] * wh * ww)


def test_float32_at_a_training_size():
    """A CNN's first pooling layer: float32 end to end, equal to the loops on a slice."""
    x = np.random.default_rng(0).standard_normal((4, 8, 28, 28)).astype(np.float32)
    y, vjp = avg_pool2d(x)
    (dx,) = vjp(np.ones(y.shape, np.float32))
    assert y.shape == (4, 8, 14, 14) and y.dtype == dx.dtype == np.float32
    np.testing.assert_allclose(
        y[:1, :2], loop_avg_pool(x[:1, :2].astype(float)), rtol=1e-6, atol=1e-6
    )
    assert np.all(dx == 0.25)


def test_complex_input_is_supported():
    """Sums and a division by a real count: complex in, complex out, the same on each part."""
    rng = np.random.default_rng(0)
    re, im = rng.standard_normal((2, 1, 2, 4, 4))
    y, vjp = avg_pool2d(re + 1j * im)
    np.testing.assert_array_equal(y.real, avg_pool2d(re)[0])
    np.testing.assert_array_equal(y.imag, avg_pool2d(im)[0])
    assert vjp(np.ones(y.shape, complex))[0].dtype == complex


@pytest.mark.parametrize(("h", "w", "window", "stride"), [(4, 6, 2, None), (5, 6, 3, 1)])
def test_vjp_is_reentrant_and_pure(h, w, window, stride):
    """P7 in both paths: vjp twice is bitwise equal, and neither x nor g is written."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 2, h, w)).astype(np.float32)
    x_before = x.copy()
    y, vjp = avg_pool2d(x, **static_of(window, stride))
    g = rng.standard_normal(y.shape).astype(np.float32)
    g_before = g.copy()
    first = vjp(g)[0].copy()
    assert same_bits(vjp(g)[0], first)
    assert same_bits(x, x_before) and same_bits(g, g_before)


def test_default_window_is_2_with_stride_equal_to_window():
    x = np.arange(16.0).reshape(1, 1, 4, 4)
    np.testing.assert_array_equal(avg_pool2d(x)[0], avg_pool2d(x, window=2, stride=2)[0])
    assert avg_pool2d(x)[0].tolist() == [[[[2.5, 4.5], [10.5, 12.5]]]]


@pytest.mark.parametrize(
    ("static", "argument", "received"),
    [
        ({"window": 0}, "window", "0"),
        ({"window": (2, -1)}, "window", r"\(2, -1\)"),
        ({"window": [2, 2, 2]}, "window", r"\[2, 2, 2\]"),
        ({"window": None}, "window", "None"),
        ({"window": 2, "stride": -1}, "stride", "-1"),
        ({"window": 2, "stride": (2, True)}, "stride", r"\(2, True\)"),
    ],
)
def test_bad_window_or_stride_names_argument_expected_and_received(static, argument, received):
    expected = r"a positive int or a pair \(h, w\) of positive ints"
    with pytest.raises(
        ValueError, match=rf"^avg_pool2d: {argument} must be {expected}, received {received}$"
    ):
        avg_pool2d(np.zeros((1, 1, 4, 4)), **static)


def test_window_larger_than_the_image_is_a_shape_error():
    with pytest.raises(nn.ShapeError, match=r"^avg_pool2d: output dimension 'p' would be 0"):
        avg_pool2d(np.zeros((1, 1, 2, 5)), window=(3, 1))
