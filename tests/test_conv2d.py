"""Tests of `conv2d` (spec/conv2d.md): SciPy and loop references, invariants, the protocol."""

from __future__ import annotations

import contextlib
import math
import re
import tracemalloc

import numpy as np
import pytest
import scipy.signal
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import nn
import nn.conv
import nn.conv_dft
import nn.conv_rows
from conftest import same_bits
from nn import conv2d, conv2d_transpose, linear
from nn.testing import check_float32, check_reference, check_vjp

EPS = np.finfo(np.float64).eps
# Bounded, and kept away from the underflow range: the laws below hold to rounding only while
# no product is subnormal (Hypothesis finds 1e-284 * 1e-40 otherwise).
finite = st.one_of(st.just(0.0), st.floats(1e-3, 4), st.floats(-4, -1e-3))


def pair(v):
    return (v, v) if isinstance(v, int) else tuple(v)


# The op computes a stride-1 convolution of real arrays by DFT matrices (nn.conv_dft.use_dft)
# or by shifted row GEMMs (nn.conv_rows.use_rows), else lays its columns out per image or
# batch-wide (nn.conv.per_image), each by a size rule; the tests of values run every path
# whatever the sizes, by moving the rules' thresholds. (Where a path does not apply, at a
# stride > 1, a dilation or complex arrays, the "dft" and "rows" settings fall back to the
# batch-wide columns.) Thresholds: (PER_IMAGE_RATIO, ROWS_MIN_CS, DFT_MAX_RATIO).
LAYOUTS = {
    "per-image": (0, 10**9, -1),
    "batch-wide": (10**9, 10**9, -1),
    "rows": (10**9, 0, -1),
    "dft": (10**9, 10**9, 10**9),
}
THRESHOLDS = ((nn.conv, "PER_IMAGE_RATIO"), (nn.conv_rows, "ROWS_MIN_CS"),
              (nn.conv_dft, "DFT_MAX_RATIO"))  # fmt: skip


@contextlib.contextmanager
def layout(name):
    saved = [getattr(module, attr) for module, attr in THRESHOLDS]
    for (module, attr), value in zip(THRESHOLDS, LAYOUTS[name], strict=True):
        setattr(module, attr, value)
    try:
        yield
    finally:
        for (module, attr), value in zip(THRESHOLDS, saved, strict=True):
            setattr(module, attr, value)


by_layout = pytest.mark.parametrize("path", list(LAYOUTS))


# --- independent references ------------------------------------------------------------


def loop_conv2d(x, w, b, stride=1, padding=0, dilation=1):
    """Explicit loops over every output and every term of its sum; a tap that falls in the
    padding reads zero by a bounds check (no padded array). Returns (y, scale) with scale the
    sum of |terms|, the size of the rounding error of any summation order."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    n_, c_, h_, w_ = x.shape
    k_, _, r_, s_ = w.shape
    p_ = (h_ + 2 * ph - dh * (r_ - 1) - 1) // sh + 1
    q_ = (w_ + 2 * pw - dw * (s_ - 1) - 1) // sw + 1
    y = np.zeros((n_, k_, p_, q_), x.dtype)
    scale = np.zeros((n_, k_, p_, q_))
    for n, k, p, q in np.ndindex(n_, k_, p_, q_):
        terms = [b[k]]
        for c, i, j in np.ndindex(c_, r_, s_):
            row, col = p * sh + i * dh - ph, q * sw + j * dw - pw
            if 0 <= row < h_ and 0 <= col < w_:
                terms.append(w[k, c, i, j] * x[n, c, row, col])
        y[n, k, p, q] = math.fsum(terms) if x.dtype.kind == "f" else sum(terms)
        scale[n, k, p, q] = sum(abs(t) for t in terms)
    return y, scale


def loop_conv2d_vjp(x, w, g, stride=1, padding=0, dilation=1):
    """The Gradient section's sums by explicit loops: every product of the forward sum sends
    g back to the weight and the input pixel it multiplied (taps in the padding send nothing)."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    _, c_, h_, w_ = x.shape
    _, _, r_, s_ = w.shape
    dx, dwt, db = np.zeros_like(x), np.zeros_like(w), np.zeros(w.shape[0], x.dtype)
    for n, k, p, q in np.ndindex(*g.shape):
        db[k] += g[n, k, p, q]
        for c, i, j in np.ndindex(c_, r_, s_):
            row, col = p * sh + i * dh - ph, q * sw + j * dw - pw
            if 0 <= row < h_ and 0 <= col < w_:
                dx[n, c, row, col] += g[n, k, p, q] * w[k, c, i, j]
                dwt[k, c, i, j] += g[n, k, p, q] * x[n, c, row, col]
    return dx, dwt, db


def dft_bound(x, w, b, static):
    """Per-output rounding bound of the DFT path (spec/conv2d.md, Rounding), 0 where that path
    does not apply: its three products mix every pixel of an image, so its error scales with
    the whole image's sum of |w| |x|, not with the window's terms."""
    geo = tuple(pair(static.get(key, default)) for key, default in
                (("stride", 1), ("padding", 0), ("dilation", 1)))  # fmt: skip
    if not nn.conv_dft.use_dft(x.dtype, x.shape, w.shape, geo):
        return 0.0
    _, c_, h_, w_ = x.shape
    _, _, r_, s_ = w.shape
    lh, lw = nn.conv_dft.grid(h_, w_, r_, s_, geo[1])
    terms = h_ * w_ + 2 * c_ + 2 * nn.conv_dft.frequency_count(lh, lw) + r_ * s_ + 3
    sums = np.abs(x).sum(axis=(2, 3)) @ np.abs(w).sum(axis=(2, 3)).T + np.abs(b)  # (N, K)
    return 8 * terms * EPS * sums[:, :, None, None]


def scipy_conv2d(x, w, b, stride=1, padding=0, dilation=1):
    """scipy.signal.correlate2d ('valid') of each zero-padded channel with its kernel, summed
    over channels, plus the bias. A dilation is a kernel with dh - 1 zero rows (dw - 1 zero
    columns) between its taps; a stride keeps every sh-th row and sw-th column of the output."""
    (sh, sw), (ph, pw), (dh, dw) = pair(stride), pair(padding), pair(dilation)
    k_, c_, r_, s_ = w.shape
    wd = np.zeros((k_, c_, dh * (r_ - 1) + 1, dw * (s_ - 1) + 1))
    wd[:, :, ::dh, ::dw] = w
    xp = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    out = []
    for n in range(x.shape[0]):
        out.append(
            [
                sum(scipy.signal.correlate2d(xp[n, c], wd[k, c], mode="valid") for c in range(c_))
                + b[k]
                for k in range(k_)
            ]
        )
    return np.array(out)[:, :, ::sh, ::sw]


# --- Hypothesis: shapes, geometry and values ---------------------------------------------


@st.composite
def cases(draw, dtype=np.float64, elements=finite, max_side=7):
    """(x, w, b, static): small shapes, any stride, padding and dilation with >= 1 output."""
    n, c, k = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    r, s = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    stride = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    padding = (draw(st.integers(0, 2)), draw(st.integers(0, 2)))
    dilation = (draw(st.integers(1, 3)), draw(st.integers(1, 3)))
    sides = [
        draw(st.integers(max(1, d * (kk - 1) + 1 - 2 * pp), max(max_side, d * (kk - 1) + 1)))
        for kk, pp, d in zip((r, s), padding, dilation, strict=True)
    ]
    x = draw(arrays(dtype, (n, c, *sides), elements=elements))
    w = draw(arrays(dtype, (k, c, r, s), elements=elements))
    b = draw(arrays(dtype, (k,), elements=elements))
    return x, w, b, {"stride": stride, "padding": padding, "dilation": dilation}


def random_case(seed, x_shape, w_shape, dtype=np.float64, **static):
    rng = np.random.default_rng(seed)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    b = rng.standard_normal(w_shape[0])
    return x.astype(dtype), w.astype(dtype), b.astype(dtype), static


# (x shape, w shape, static): stride, padding and dilation alone and together, per side.
GEOMETRIES = [
    ((2, 3, 5, 6), (4, 3, 3, 2), {}),
    ((2, 3, 5, 6), (4, 3, 3, 2), {"padding": 1}),
    ((2, 3, 5, 6), (4, 3, 3, 2), {"stride": 2}),
    ((2, 3, 6, 7), (4, 3, 3, 2), {"stride": (2, 3), "padding": (1, 0)}),
    ((2, 3, 6, 7), (4, 3, 2, 2), {"dilation": (2, 3), "padding": (0, 2)}),
    ((2, 2, 7, 6), (3, 2, 3, 3), {"stride": (2, 1), "padding": (2, 1), "dilation": (1, 2)}),
    ((1, 2, 6, 6), (3, 2, 2, 3), {"stride": 3, "padding": 2, "dilation": 2}),
    ((2, 3, 4, 5), (4, 3, 1, 1), {"stride": (1, 2)}),
    ((1, 2, 3, 3), (2, 2, 3, 3), {}),  # the kernel covers the image: one output pixel
]
IDS = [f"{x}x{w}{s}" for x, w, s in GEOMETRIES]


# --- forward references (P8) --------------------------------------------------------------


@by_layout
@pytest.mark.spec("conv2d", 5)
@pytest.mark.parametrize(("x_shape", "w_shape", "static"), GEOMETRIES, ids=IDS)
@pytest.mark.parametrize("seed", [0, 1])
def test_matches_scipy_correlate2d(path, x_shape, w_shape, static, seed):
    """conv2d equals scipy.signal.correlate2d on the zero-padded channels, summed over
    channels, plus the bias; a dilated kernel and a subsampled output give dilation, stride."""
    with layout(path):
        x, w, b, static = random_case(seed, x_shape, w_shape, **static)
        check_reference(conv2d, scipy_conv2d, x, w, b, static=static, rtol=1e-12, atol=1e-13)


@by_layout
@pytest.mark.spec("conv2d", 6)
@given(cases(), st.data())
def test_matches_loop_reference(path, case, data):
    """Fast path (im2col + GEMM, col2im) = explicit loops, forward and all three cotangents,
    over Hypothesis-drawn shapes, strides, paddings and dilations."""
    with layout(path):
        x, w, b, static = case
        y, vjp = conv2d(x, w, b, **static)
        ref, scale = loop_conv2d(x, w, b, **static)
        assert y.shape == ref.shape
        assert np.all(np.abs(y - ref) <= 8 * (w[0].size + 1) * EPS * scale + dft_bound(*case))
        g = data.draw(arrays(np.float64, y.shape, elements=finite))
        for got, want in zip(vjp(g), loop_conv2d_vjp(x, w, g, **static), strict=True):
            np.testing.assert_allclose(
                got, want, rtol=1e-12, atol=1e-12 * max(1.0, np.abs(want).max())
            )


@by_layout
@pytest.mark.spec("conv2d", 6)
@pytest.mark.parametrize(("x_shape", "w_shape", "static"), GEOMETRIES, ids=IDS)
def test_matches_loop_reference_complex(path, x_shape, w_shape, static):
    """The same for complex128 inputs: no conjugate anywhere (conv2d is holomorphic)."""
    with layout(path):
        rng = np.random.default_rng(5)
        x, w, b = (
            rng.standard_normal(s) + 1j * rng.standard_normal(s)
            for s in (x_shape, w_shape, w_shape[:1])
        )
        y, vjp = conv2d(x, w, b, **static)
        np.testing.assert_allclose(y, loop_conv2d(x, w, b, **static)[0], rtol=1e-12, atol=1e-12)
        g = rng.standard_normal(y.shape) + 1j * rng.standard_normal(y.shape)
        for got, want in zip(vjp(g), loop_conv2d_vjp(x, w, g, **static), strict=True):
            assert got.dtype == np.complex128
            np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


# --- invariants ---------------------------------------------------------------------------


@by_layout
@pytest.mark.spec("conv2d", 1)
@given(cases(), st.data(), finite, finite)
def test_linear_in_x(path, case, data, a, c):
    """conv2d(a x1 + c x2, w, 0) = a conv2d(x1, w, 0) + c conv2d(x2, w, 0), to rounding."""
    with layout(path):
        x1, w, b, static = case
        x2 = data.draw(arrays(np.float64, x1.shape, elements=finite))
        zero = np.zeros_like(b)
        left = conv2d(a * x1 + c * x2, w, zero, **static)[0]
        right = a * conv2d(x1, w, zero, **static)[0] + c * conv2d(x2, w, zero, **static)[0]
        big = np.abs(a * x1) + np.abs(c * x2)
        scale = loop_conv2d(big, np.abs(w), zero, **static)[0]
        bound = 3 * dft_bound(big, w, zero, static)  # three convolutions, each within it
        assert np.all(np.abs(left - right) <= 8 * (w[0].size + 2) * EPS * scale + bound)


@by_layout
@pytest.mark.spec("conv2d", 2)
@given(cases(), st.data(), finite, finite)
def test_linear_in_w(path, case, data, a, c):
    """conv2d(x, a w1 + c w2, 0) = a conv2d(x, w1, 0) + c conv2d(x, w2, 0), to rounding."""
    with layout(path):
        x, w1, b, static = case
        w2 = data.draw(arrays(np.float64, w1.shape, elements=finite))
        zero = np.zeros_like(b)
        left = conv2d(x, a * w1 + c * w2, zero, **static)[0]
        right = a * conv2d(x, w1, zero, **static)[0] + c * conv2d(x, w2, zero, **static)[0]
        big = np.abs(a * w1) + np.abs(c * w2)
        scale = loop_conv2d(np.abs(x), big, zero, **static)[0]
        bound = 3 * dft_bound(x, big, zero, static)  # three convolutions, each within it
        assert np.all(np.abs(left - right) <= 8 * (w1[0].size + 2) * EPS * scale + bound)


@by_layout
@pytest.mark.spec("conv2d", 3)
@given(cases(), st.data())
def test_adjointness(path, case, data):
    """<conv2d(x, w, 0), g> = <x, conv2d_transpose(g, w)> = <w, dw>, and the vjp's dx is
    conv2d_transpose(g, w), bitwise."""
    with layout(path):
        x, w, b, static = case
        y, vjp = conv2d(x, w, np.zeros_like(b), **static)
        g = data.draw(arrays(np.float64, y.shape, elements=finite))
        dx_t = conv2d_transpose(g, w, input_shape=x.shape, **static)
        dx, dw, _ = vjp(g)
        assert dx_t.shape == x.shape and dx_t.dtype == x.dtype
        assert same_bits(dx, dx_t)
        # Each is the triple sum over (n, k, p, q, c, i, j) of g w x, rounded differently.
        total = float(
            np.sum(np.abs(g) * loop_conv2d(np.abs(x), np.abs(w), np.zeros_like(b), **static)[0])
        )
        tol = 8 * (w[0].size + g[0].size + x[0].size) * EPS * total + 1e-300
        assert abs(np.sum(y * g) - np.sum(x * dx_t)) <= tol
        assert abs(np.sum(y * g) - np.sum(w * dw)) <= tol


@pytest.mark.spec("conv2d", 4)
@given(
    arrays(np.float64, (2, 2, 11, 12), elements=finite),
    arrays(np.float64, (3, 2, 3, 2), elements=finite),
    st.integers(0, 3),
    st.integers(0, 3),
    st.sampled_from([(1, 1), (2, 1), (1, 3), (2, 2)]),
    st.sampled_from([(1, 1), (2, 1), (1, 2)]),
)
def test_shift_equivariance(big, w, a, c, stride, dilation):
    """Shifting the input by (a sh, c sw) pixels shifts the output by (a, c) (at stride 1 any
    shift), for every output position whose window stays inside both crops."""
    (sh, sw) = stride
    h, wd = 11 - 3 * sh, 12 - 3 * sw
    b = np.zeros(3)
    y1 = conv2d(big[:, :, :h, :wd], w, b, stride=stride, dilation=dilation)[0]
    y2 = conv2d(big[:, :, a * sh : a * sh + h, c * sw : c * sw + wd], w, b, stride=stride,
                dilation=dilation)[0]  # fmt: skip
    # Output (p, q) of the shifted crop reads the pixels of output (p + a, q + c) of the first.
    scale = 8 * w[0].size * EPS * np.abs(big).max() * np.abs(w).sum()
    rows, cols = max(0, y1.shape[2] - a), max(0, y1.shape[3] - c)  # the positions in both
    np.testing.assert_allclose(
        y2[:, :, :rows, :cols], y1[:, :, a : a + rows, c : c + cols], rtol=0, atol=scale
    )


@pytest.mark.spec("conv2d", 7)
@pytest.mark.parametrize("stride", [1, 2, (1, 3)])
@pytest.mark.parametrize("padding", [0, (1, 2)])
def test_1x1_kernel_is_linear_over_channels(stride, padding):
    """A 1x1 kernel maps each (strided, padded) pixel's C channels to K by one matrix: it is
    `linear` applied to the pixels as rows, with W = w[:, :, 0, 0]^T."""
    rng = np.random.default_rng(3)
    x, w, b = (
        rng.standard_normal((2, 3, 5, 7)),
        rng.standard_normal((4, 3, 1, 1)),
        rng.standard_normal(4),
    )
    y, _ = conv2d(x, w, b, stride=stride, padding=padding)
    (sh, sw), (ph, pw) = pair(stride), pair(padding)
    pixels = np.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))[:, :, ::sh, ::sw]  # (N, C, P, Q)
    rows = pixels.transpose(0, 2, 3, 1)  # (N, P, Q, C): loop dimensions N, P; rows Q
    expected = linear(rows, w[:, :, 0, 0].T, b)[0].transpose(0, 3, 1, 2)  # (N, K, P, Q)
    np.testing.assert_allclose(y, expected, rtol=1e-13, atol=1e-13)


@pytest.mark.spec("conv2d", 8)
@given(
    st.integers(1, 9), st.integers(1, 4), st.integers(1, 4), st.integers(0, 3), st.integers(1, 3)
)
def test_output_size_formula(h, r, stride, padding, dilation):
    """P = floor((H + 2 ph - dh (R - 1) - 1) / sh) + 1: the number of row offsets p >= 0 with
    the dilated kernel inside the padded input; none at all is a named ShapeError."""
    fits = [p for p in range(h + 2 * padding) if p * stride + dilation * (r - 1) < h + 2 * padding]
    x, w, b = np.zeros((1, 1, h, 3)), np.zeros((2, 1, r, 1)), np.zeros(2)
    static = {"stride": (stride, 1), "padding": (padding, 0), "dilation": (dilation, 1)}
    if not fits:
        with pytest.raises(nn.ShapeError, match=r"^conv2d: output dimension 'p' would be"):
            conv2d(x, w, b, **static)
        return
    y, vjp = conv2d(x, w, b, **static)
    assert y.shape == (1, 2, len(fits), 3)
    assert y.shape[2] == (h + 2 * padding - dilation * (r - 1) - 1) // stride + 1
    assert [c.shape for c in vjp(np.ones(y.shape))] == [x.shape, w.shape, b.shape]


@by_layout
@pytest.mark.spec("conv2d", 9)
@pytest.mark.parametrize(("x_shape", "w_shape", "static"), GEOMETRIES[:6], ids=IDS[:6])
def test_db_is_g_summed_over_batch_and_pixels(path, x_shape, w_shape, static):
    """db[k] = sum over n, p, q of g[n, k, p, q], whatever x and w are."""
    with layout(path):
        g = np.random.default_rng(1).standard_normal(
            conv2d(*random_case(0, x_shape, w_shape)[:3], **static)[0].shape
        )
        expected = [math.fsum(g[:, k].ravel()) for k in range(w_shape[0])]
        for seed in (0, 1):  # two unrelated (x, w): db must not change
            x, w, b, _ = random_case(seed, x_shape, w_shape)
            _, vjp = conv2d(x, w, b, **static)
            np.testing.assert_allclose(vjp(g)[2], expected, rtol=1e-13, atol=1e-13)


# --- the gradient protocol, float32, reentrancy, memory ------------------------------------


@by_layout
@pytest.mark.parametrize(("x_shape", "w_shape", "static"), GEOMETRIES, ids=IDS)
def test_gradient_protocol(path, x_shape, w_shape, static):
    """P1-P4, P7 at each geometry: complex step, central differences, the full Jacobian."""
    with layout(path):
        x, w, b, static = random_case(2, x_shape, w_shape, **static)
        report = check_vjp(conv2d, x, w, b, static=static, seed=2, jacobian=True)
        assert {"complex-step", "central-difference", "jacobian", "reentrancy"} <= {
            c.method for c in report.checks
        }


@by_layout
@pytest.mark.parametrize(("x_shape", "w_shape", "static"), GEOMETRIES, ids=IDS)
def test_float32_agrees_with_float64_and_stays_float32(path, x_shape, w_shape, static):
    with layout(path):
        x, w, b, static = random_case(4, x_shape, w_shape, **static)
        check_float32(conv2d, x, w, b, static=static)
        y, _ = conv2d(x, w, b, **static)
        g = np.ones(y.shape, np.float32)
        assert (
            conv2d_transpose(g, w.astype(np.float32), input_shape=x.shape, **static).dtype
            == np.float32
        )


@by_layout
@pytest.mark.parametrize(
    ("x_shape", "w_shape"), [((8, 16, 14, 14), (32, 16, 3, 3)), ((8, 1, 28, 28), (8, 1, 5, 5))]
)
def test_float32_at_cnn_sizes(path, x_shape, w_shape):
    """At a CNN's sizes every result is float32 and close to float64 (sums of up to 144
    products, float32 accumulation in BLAS)."""
    with layout(path):
        x, w, b, _ = random_case(0, x_shape, w_shape)
        pad = (w_shape[2] - 1) // 2
        y64, vjp64 = conv2d(x, w, b, padding=pad)
        y32, vjp32 = conv2d(*(a.astype(np.float32) for a in (x, w, b)), padding=pad)
        g = np.random.default_rng(1).standard_normal(y64.shape)
        assert y32.dtype == np.float32
        np.testing.assert_allclose(y32, y64, rtol=0, atol=2e-5 * np.abs(y64).max())
        for c32, c64 in zip(vjp32(g.astype(np.float32)), vjp64(g), strict=True):
            assert c32.dtype == np.float32
            np.testing.assert_allclose(c32, c64, rtol=0, atol=2e-5 * np.abs(c64).max())


@by_layout
def test_vjp_is_reentrant_and_mutates_nothing(path):
    """P7 in float32 at a CNN-like size: vjp twice is bitwise identical; x, w, b, y, g intact."""
    with layout(path):
        x, w, b, _ = random_case(0, (4, 8, 10, 10), (16, 8, 3, 3), np.float32)
        saved = [a.copy() for a in (x, w, b)]
        y, vjp = conv2d(x, w, b, stride=2, padding=1, dilation=(1, 2))
        y_saved = y.copy()
        g = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
        g_saved = g.copy()
        first = [c.copy() for c in vjp(g)]
        second = vjp(g)
        assert all(same_bits(a, b_) for a, b_ in zip(first, second, strict=True))
        assert all(
            a.tobytes() == s.tobytes()
            for a, s in zip((x, w, b, y, g), (*saved, y_saved, g_saved), strict=True)
        )


@by_layout
def test_peak_memory_is_float32_sized(path):
    """No float64 temporaries: the peak of NumPy's allocations during forward and backward
    stays within a budget counted in float32 columns, which a float64 copy would break."""
    with layout(path):
        n, c, h, k, r = 16, 8, 14, 16, 3
        x, w, b, _ = random_case(0, (n, c, h, h), (k, c, r, r), np.float32)
        g = np.ones((n, k, h, h), np.float32)
        tracemalloc.start()
        try:
            _, vjp = conv2d(x, w, b, padding=1)
            vjp(g)
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
        cols = c * r * r * n * h * h * 4  # bytes of the float32 columns
        images = (n * c + 2 * n * k) * (h + 2) ** 2 * 4  # padded x, y and its copy, in float32
        assert peak <= 2 * cols + 2 * images, (peak, cols, images)


# --- static arguments and errors --------------------------------------------------------


@pytest.mark.parametrize(
    ("static", "same"),
    [
        ({"stride": 2}, {"stride": (2, 2)}),
        ({"stride": [2, 1]}, {"stride": (2, 1)}),
        ({"padding": np.int64(1)}, {"padding": (1, 1)}),
        ({"dilation": (np.int32(2), 1)}, {"dilation": (2, 1)}),
    ],
)
def test_int_pair_list_and_numpy_integer_forms_agree(static, same):
    x, w, b, _ = random_case(0, (1, 2, 7, 7), (2, 2, 2, 2))
    np.testing.assert_array_equal(conv2d(x, w, b, **static)[0], conv2d(x, w, b, **same)[0])


@pytest.mark.parametrize(
    ("name", "value", "kind"),
    [
        ("stride", 0, "positive"),
        ("stride", -1, "positive"),
        ("stride", 1.5, "positive"),
        ("stride", 2.0, "positive"),
        ("stride", True, "positive"),
        ("stride", (1,), "positive"),
        ("stride", (1, 2, 3), "positive"),
        ("stride", "1", "positive"),
        ("padding", -1, "non-negative"),
        ("padding", (0, -2), "non-negative"),
        ("padding", 0.5, "non-negative"),
        ("padding", False, "non-negative"),
        ("dilation", 0, "positive"),
        ("dilation", (1, 0), "positive"),
        ("dilation", None, "positive"),
    ],
)
def test_bad_static_arguments_name_argument_expected_and_received(name, value, kind):
    x, w, b, _ = random_case(0, (1, 1, 5, 5), (1, 1, 2, 2))
    message = (
        rf"^conv2d: {name} must be a {kind} int or a pair \(h, w\) of {kind} ints, "
        rf"received {re.escape(repr(value))}$"
    )
    with pytest.raises(ValueError, match=message):
        conv2d(x, w, b, **{name: value})
    y, _ = conv2d(x, w, b)
    with pytest.raises(ValueError, match=message.replace("conv2d", "conv2d_transpose")):
        conv2d_transpose(np.ones(y.shape), w, input_shape=x.shape, **{name: value})


def test_unknown_keyword_is_refused():
    x, w, b, _ = random_case(0, (1, 1, 5, 5), (1, 1, 2, 2))
    with pytest.raises(TypeError, match=r"conv2d: unknown keyword argument\(s\) \['strides'\]"):
        conv2d(x, w, b, strides=2)


def test_kernel_larger_than_padded_input_is_a_shape_error():
    x, w, b, _ = random_case(0, (1, 1, 4, 6), (1, 1, 3, 3))
    with pytest.raises(
        nn.ShapeError, match=r"^conv2d: output dimension 'p' would be 0 .*dilation=2"
    ):
        conv2d(x, w, b, dilation=2)
    conv2d(x, w, b, dilation=2, padding=(1, 0))  # padding makes room


def test_empty_kernel_is_refused():
    with pytest.raises(nn.ShapeError, match=r"dimension 'r' must be at least 1"):
        conv2d(np.zeros((1, 1, 3, 3)), np.zeros((1, 1, 0, 1)), np.zeros(1))


def test_conv2d_transpose_refuses_inconsistent_shapes_and_dtypes():
    w = np.zeros((4, 3, 3, 3))
    g = np.zeros((2, 4, 3, 3))
    assert conv2d_transpose(g, w, input_shape=(2, 3, 5, 5)).shape == (2, 3, 5, 5)
    # stride 2 maps inputs of 7 and 8 rows to 3 outputs: input_shape decides
    assert conv2d_transpose(g, w, input_shape=(2, 3, 8, 7), stride=2).shape == (2, 3, 8, 7)
    for shape in [(2, 3, 6, 5), (3, 3, 5, 5), (2, 4, 5, 5), (2, 3, 5)]:
        with pytest.raises(
            nn.ShapeError, match=r"^conv2d_transpose: g \(N, K, P, Q\) \(2, 4, 3, 3\)"
        ):
            conv2d_transpose(g, w, input_shape=shape)
    with pytest.raises(nn.ShapeError, match="do not fit"):
        conv2d_transpose(g, np.zeros((5, 3, 3, 3)), input_shape=(2, 3, 5, 5))
    with pytest.raises(nn.DTypeError, match="share one dtype"):
        conv2d_transpose(g.astype(np.float32), w, input_shape=(2, 3, 5, 5))
    with pytest.raises(nn.DTypeError, match="floating"):
        conv2d_transpose(g.astype(int), w, input_shape=(2, 3, 5, 5))


@st.composite
def dft_geometries(draw):
    """(h, w, r, s, padding) of a stride-1 convolution with at least one output."""
    r, s = draw(st.integers(1, 4)), draw(st.integers(1, 4))
    padding = (draw(st.integers(0, 3)), draw(st.integers(0, 3)))
    h = draw(st.integers(max(1, r - 2 * padding[0]), 7))
    w = draw(st.integers(max(1, s - 2 * padding[1]), 7))
    return h, w, r, s, padding


@pytest.mark.spec("conv2d", 10)
@given(dft_geometries(), st.integers(0, 2**32 - 1))
def test_dft_matrices_are_numpys_fft(geometry, seed):
    """The DFT path's three matrices against NumPy's FFT (pocketfft), an independent reference:
    A_in is rfft2 of the image on the LH x LW grid, the kernel's spectrum is the conjugated
    rfft2 of the kernel placed at (i - ph, j - pw) modulo the grid, and A_out reads irfft2 of
    a real grid signal's spectrum, at the kept frequencies, at the P x Q outputs."""
    h, w, r, s, padding = geometry
    a_in, a_out, taps = nn.conv_dft.transforms(h, w, r, s, padding, "<f8")
    lh, lw = nn.conv_dft.grid(h, w, r, s, padding)
    fh, fw, _ = nn.conv_dft.frequencies(lh, lw)
    assert len(fh) == nn.conv_dft.frequency_count(lh, lw) == a_in.shape[0] // 2
    p, q = h + 2 * padding[0] - r + 1, w + 2 * padding[1] - s + 1
    rng = np.random.default_rng(seed)

    def complex_pairs(v):  # rows (f, re/im) -> complex (F,)
        return v[0::2] + 1j * v[1::2]

    image = rng.standard_normal((h, w))
    want = np.fft.rfft2(image, s=(lh, lw))[fh, fw]
    np.testing.assert_allclose(complex_pairs(a_in @ image.ravel()), want, atol=1e-12)
    kernel = rng.standard_normal((r, s))
    placed = np.zeros((lh, lw))
    placed[np.ix_((np.arange(r) - padding[0]) % lh, (np.arange(s) - padding[1]) % lw)] = kernel
    spectrum = taps[0] @ kernel.ravel() + 1j * (taps[1] @ kernel.ravel())
    np.testing.assert_allclose(spectrum, np.conj(np.fft.rfft2(placed))[fh, fw], atol=1e-12)
    signal = rng.standard_normal((lh, lw))
    kept = np.fft.rfft2(signal)[fh, fw]
    pairs = np.stack([kept.real, kept.imag], axis=-1).ravel()  # (f, re/im)
    np.testing.assert_allclose(pairs @ a_out, signal[:p, :q].ravel(), atol=1e-12)


@pytest.mark.spec("conv2d", 11)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_dft_path_rounding_scales_with_the_whole_image(dtype):
    """The DFT path's error at each output is within 8 (HW + 2C + 2F + RS + 3) u times the
    image's sum over channels of ||w_kc||_1 ||x_nc||_1 (plus |b_k|), also where the window
    holds only zeros: there the other paths are exact and this one is not."""
    rng = np.random.default_rng(7)
    x, w, b = rng.uniform(1, 4, (2, 3, 9, 9)), rng.uniform(1, 4, (4, 3, 3, 3)), np.zeros(4)
    x[:, :, :, :4] = 0  # the windows of output columns 0 and 1 (padding 0) read zeros only
    ref, _ = loop_conv2d(x, w, b)
    assert np.all(ref[..., :2] == 0)
    with layout("dft"):
        y, _ = conv2d(*(a.astype(dtype) for a in (x, w, b)))
        u = np.finfo(dtype).eps
        bound = dft_bound(x, w, b, {}) * (u / EPS)
        assert np.all(np.abs(y - ref) <= bound)
        assert np.abs(y[..., :2]).max() > 0  # not exact there: rounding of the image's size


def test_layout_rules_pick_per_image_for_a_first_layer_and_rows_for_deeper_ones():
    """The rules on the CNN's layers: a first layer (C = 1) per image; a deeper layer by
    shifted rows at stride 1, batch-wide columns at stride 2. Every path gives the same values."""
    assert nn.conv.per_image(1, 3, 3, 28, 28) and nn.conv.per_image(1, 5, 5, 28, 28)
    assert not nn.conv.per_image(32, 3, 3, 14, 14) and not nn.conv.per_image(32, 5, 5, 14, 14)
    rows = nn.conv_rows.use_rows  # (c, s, p, r, stride)
    assert not rows(1, 5, 28, 5, (1, 1)) and rows(32, 5, 14, 5, (1, 1))
    assert not rows(32, 5, 7, 5, (2, 2)) and not rows(32, 5, 14, 5, (1, 2))
    assert not rows(128, 3, 1, 4, (1, 1))  # fewer output rows than kernel rows
    x, w, b, _ = random_case(0, (3, 2, 9, 9), (4, 2, 3, 3))
    g = np.random.default_rng(1).standard_normal((3, 4, 9, 9))
    results = []
    for path in LAYOUTS:
        with layout(path):
            y, vjp = conv2d(x, w, b, padding=1)
            results.append((y, *vjp(g)))
    for other in results[1:]:
        for a, b_ in zip(results[0], other, strict=True):
            np.testing.assert_allclose(a, b_, rtol=1e-13, atol=1e-13)


def test_dft_rule_takes_the_cnns_5x5_layer_only():
    """use_dft: the CNN's 32 -> 64, 5 x 5 layer on 14 x 14 maps (0.59 of the direct sum's
    multiply-adds), in float32 and float64; not its first layer (one channel: 37 times), a
    3 x 3 layer, the 7-digit reader's layers, a stride, a dilation or complex arrays."""
    use, same = nn.conv_dft.use_dft, ((1, 1), (2, 2), (1, 1))
    cnn2 = ((128, 32, 14, 14), (64, 32, 5, 5))
    assert use(np.float32, *cnn2, same) and use(np.float64, *cnn2, same)
    assert not use(np.complex128, *cnn2, same)
    assert not use(np.float32, *cnn2, ((2, 2), (2, 2), (1, 1)))
    assert not use(np.float32, *cnn2, ((1, 1), (2, 2), (2, 2)))
    assert not use(np.float32, (128, 1, 28, 28), (32, 1, 5, 5), same)
    assert not use(np.float32, (128, 32, 14, 14), (64, 32, 3, 3), ((1, 1),) * 3)
    digits7 = [((64, 64, 8, 36), (128, 64, 3, 3), (1, 1)), ((64, 128, 4, 36), (256, 128, 4, 3),
               (0, 1)), ((64, 256, 1, 36), (256, 256, 1, 3), (0, 1))]  # fmt: skip
    assert not any(use(np.float32, xs, ws, ((1, 1), pad, (1, 1))) for xs, ws, pad in digits7)


@by_layout
@pytest.mark.parametrize("stride", [1, 2])
def test_without_input_grad_dw_and_db_are_the_same_and_dx_is_skipped(path, stride):
    """A network's first layer asks for no dx (its input is data): the vjp then returns None
    for dx and bitwise the same dw and db."""
    with layout(path):
        x, w, b, _ = random_case(0, (3, 20, 9, 8), (4, 20, 3, 3), np.float32)
        y, vjp = conv2d(x, w, b, stride=stride, padding=1)
        g = np.random.default_rng(1).standard_normal(y.shape).astype(np.float32)
        dx, dw, db = vjp(g)
        none, dw2, db2 = vjp(g, input_grad=False)
        assert none is None and dx is not None
        assert same_bits(dw, dw2) and same_bits(db, db2)
