"""Initializers: the invariants of spec/glorot.md and spec/he.md.

The statistical tests use fixed seeds, so they are deterministic. Their bounds are set so
that, drawn with any other seed, a correct initializer would fail a check with probability
ALPHA = 1e-6: each bound is the ALPHA quantile of the statistic's exact (chi-square) or
central-limit distribution under the page's formula. On 262144 entries that resolves the
variance to about 1%, while a wrong fan (fan_out for fan_in, a missing factor 2, R*S
forgotten in a conv kernel's fans) changes it by a factor of 1.25 or more on the non-square
shapes used here.

The dense depth tests build 10-layer networks from the library's own ops (``linear``,
``relu``, ``tanh`` and their vjps) and follow the second moment of the pre-activations
forward and of their cotangents backward, the quantities the pages' derivations are about.
The conv depth test does the same with a small explicit convolution written here
(sliding_window_view + einsum), independent of the library's conv2d.
"""

from __future__ import annotations

import itertools
import math
import re

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpy.lib.stride_tricks import sliding_window_view
from scipy import integrate, stats

from nn.activations import relu, tanh
from nn.errors import DTypeError, NNError, ShapeError
from nn.init import fans, glorot_normal, glorot_uniform, he_normal, he_uniform
from nn.linear import linear

ALPHA = 1e-6  # the probability that a correct initializer fails a statistical check
SEED = 20240611
# Dense (D, M) and conv (K, C, R, S) shapes; fan_in != fan_out, both ways round. The kernels
# (245760 entries) have C != K, so fan_in = K*R*S is wrong too, and R != S.
SHAPES = [(256, 1024), (1024, 256), (256, 64, 3, 5), (64, 256, 5, 3)]
DTYPES = [np.float32, np.float64]
GLOROT = [glorot_normal, glorot_uniform]
HE = [he_normal, he_uniform]


def expected_fans(shape):
    """The pages' fans, written out: (D, M) of a dense weight, (C*R*S, K*R*S) of a kernel."""
    if len(shape) == 2:
        return shape[0], shape[1]
    k, c, r, s = shape
    return c * r * s, k * r * s


def glorot_variance(d: int, m: int) -> float:
    return 2 / (d + m)


def he_variance(d: int, m: int) -> float:
    return 2 / d


VARIANCE = {
    glorot_normal: glorot_variance,
    glorot_uniform: glorot_variance,
    he_normal: he_variance,
    he_uniform: he_variance,
}


def reference(init, shape):
    """The distribution the page specifies for a weight or kernel, as a frozen scipy.stats one.

    Written from the pages' formulas for the standard deviation and the uniform limit, not
    from the code; scipy's own ``var()`` of it then checks the step Var(U(-a, a)) = a**2 / 3.
    """
    d, m = expected_fans(shape)
    if init is glorot_normal:
        return stats.norm(loc=0, scale=math.sqrt(2 / (d + m)))
    if init is he_normal:
        return stats.norm(loc=0, scale=math.sqrt(2 / d))
    limit = math.sqrt(6 / (d + m)) if init is glorot_uniform else math.sqrt(6 / d)
    return stats.uniform(loc=-limit, scale=2 * limit)  # on [loc, loc + scale] = [-a, a]


def check_mean_and_variance(w, variance, dist):
    """Sample mean and second moment against their distributions under the formula.

    Mean: normal with variance ``variance / n`` (exact for normal entries, the central limit
    theorem for uniform ones). Second moment ``m2 = mean(w**2)``, about the known mean 0:
    ``n m2 / variance`` is chi-square with n degrees of freedom for normal entries; for
    uniform ones, w**2 is bounded, and the central limit theorem gives
    ``Var(m2) = (kurtosis - 1) variance**2 / n``, with scipy's kurtosis (9/5 for a uniform).
    """
    x = w.astype(np.float64).ravel()
    n = x.size
    z = stats.norm.isf(ALPHA / 2)  # 4.89: two-sided ALPHA
    assert abs(x.mean()) <= z * math.sqrt(variance / n), (x.mean(), variance)
    ratio = np.mean(x * x) / variance
    if dist.dist.name == "norm":
        low, high = stats.chi2.ppf([ALPHA / 2, 1 - ALPHA / 2], n) / n
    else:
        kurtosis = float(dist.stats(moments="k")) + 3  # scipy gives the excess kurtosis
        low, high = 1 - z * math.sqrt((kurtosis - 1) / n), 1 + z * math.sqrt((kurtosis - 1) / n)
    assert low <= ratio <= high, f"m2 / Var = {ratio}, expected within [{low}, {high}]"


def check_matches_scipy(init, shape, dtype):
    dist = reference(init, shape)
    assert dist.var() == pytest.approx(VARIANCE[init](*expected_fans(shape)), rel=1e-12)
    w = init(np.random.default_rng(SEED), shape, dtype=dtype)
    # The asymptotic Kolmogorov distribution: at n >= 245760 its error is far below ALPHA.
    result = stats.kstest(w.astype(np.float64).ravel(), dist.cdf, method="asymp")
    assert result.pvalue >= ALPHA, result


def check_uniform_bounds(init, shape, dtype):
    """Every |w| <= the limit rounded to dtype; both ends come within 2e-4 of the limit.

    For a correct sampler, P(max w < a (1 - delta)) = (1 - delta/2)**n <= e**-24 at
    n >= 245760 and delta = 2e-4 (the same for min w): the limit is attained, not only kept.
    """
    limit = reference(init, shape).support()[1]
    w = init(np.random.default_rng(SEED), shape, dtype=dtype)
    assert w.dtype == dtype
    assert np.all(np.abs(w) <= np.asarray(limit, dtype=dtype))
    assert w.max() >= limit * (1 - 2e-4) and w.min() <= -limit * (1 - 2e-4)


# --- invariants 1-3 of both pages: mean, variance, distribution, bounds --------------------


@pytest.mark.spec("glorot", 1)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("init", GLOROT)
def test_glorot_mean_and_variance(init, shape, dtype):
    """Mean 0 and Var = 2 / (fan_in + fan_out): 2 / (D + M), or 2 / ((C + K) R S) for a kernel.

    Catches a wrong fan (fan_in or fan_out alone, K*R*S as the kernel's fan_in, R*S
    forgotten), a missing factor 2, a wrong uniform limit.
    """
    w = init(np.random.default_rng(SEED), shape, dtype=dtype)
    assert w.shape == shape
    check_mean_and_variance(w, glorot_variance(*expected_fans(shape)), reference(init, shape))


@pytest.mark.spec("he", 1)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("init", HE)
def test_he_mean_and_variance(init, shape, dtype):
    """Mean 0 and Var = 2 / fan_in: 2 / D, or 2 / (C R S) for a kernel; fan_in only, so 4
    times larger for (256, 1024) than (1024, 256), and for (256, 64, 3, 5) than (64, 256, 5, 3).

    Catches fan_out in place of fan_in (K*R*S for a kernel), R*S forgotten, a missing factor
    2, a wrong uniform limit.
    """
    w = init(np.random.default_rng(SEED), shape, dtype=dtype)
    assert w.shape == shape
    check_mean_and_variance(w, he_variance(*expected_fans(shape)), reference(init, shape))


@pytest.mark.spec("glorot", 2)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("init", GLOROT)
def test_glorot_matches_scipy_distributions(init, shape, dtype):
    """Kolmogorov-Smirnov against scipy.stats.norm / uniform, whose var() is 2 / (n_in + n_out).

    Sees the whole distribution: catches a truncated normal or a uniform with the right
    variance passed off as a normal, which the variance test would accept.
    """
    check_matches_scipy(init, shape, dtype)


@pytest.mark.spec("he", 2)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("init", HE)
def test_he_matches_scipy_distributions(init, shape, dtype):
    """Kolmogorov-Smirnov against scipy.stats.norm / uniform, whose var() is 2 / n_in."""
    check_matches_scipy(init, shape, dtype)


@pytest.mark.spec("glorot", 3)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_glorot_uniform_bounds(shape, dtype):
    """|w| <= sqrt(6 / (n_in + n_out)) rounded to dtype, and both ends are reached."""
    check_uniform_bounds(glorot_uniform, shape, dtype)


@pytest.mark.spec("he", 3)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_he_uniform_bounds(shape, dtype):
    """|w| <= sqrt(6 / n_in) rounded to dtype, and both ends are reached."""
    check_uniform_bounds(he_uniform, shape, dtype)


def test_keras_truncated_normal_has_the_variance_but_fails_the_plain_normal_test():
    """The pages' note on Keras: its truncation constant, and that our test can tell.

    Keras draws N(0, (sigma / 0.8796)**2) truncated at two of its standard deviations; 0.8796
    is the standard deviation of a unit normal truncated to [-2, 2], so the variance is
    sigma**2. The Kolmogorov-Smirnov test of invariant 2 rejects such a sample as a plain
    normal: it would catch a truncating glorot_normal or he_normal.
    """
    constant = 0.87962566103423978  # the literal in Keras' VarianceScaling
    assert stats.truncnorm(-2, 2).std() == pytest.approx(constant, rel=1e-15)
    sigma = math.sqrt(2 / 1024)
    keras = stats.truncnorm(-2, 2, scale=sigma / constant)
    assert keras.std() == pytest.approx(sigma, rel=1e-12)
    assert keras.support()[1] == pytest.approx(2.2737 * sigma, rel=1e-4)
    sample = keras.rvs(size=512 * 512, random_state=np.random.default_rng(SEED))
    assert stats.kstest(sample, stats.norm(scale=sigma).cdf, method="asymp").pvalue < ALPHA


# --- depth: 10 layers of the library's own ops ---------------------------------------------


def depth_profile(rng, widths, draw, activation, x_std=1.0, batch=1000):
    """Second moments of a 10-layer net at init, forward and backward, in float32.

    Layer l = 1..L computes z_l = linear(a_{l-1}, W_l, 0) and a_l = activation(z_l) (a_0 = x,
    N(0, x_std**2) entries; no activation: a linear net). Returns ``q`` with
    q[l-1] = mean(z_l**2) over the batch and units, and ``c`` with c[l-1] = mean(dz_l**2),
    the cotangent of z_l when the output's cotangent has N(0, 1) entries. Biases are zero.
    """
    x = (x_std * rng.standard_normal((batch, widths[0]))).astype(np.float32)  # (N, n_0)
    a, q, vjps = x, [], []
    for d, m in itertools.pairwise(widths):
        z, linear_vjp = linear(a, draw(rng, (d, m)), np.zeros(m, np.float32))  # (N, m)
        q.append(np.mean(np.square(z, dtype=np.float64)))
        a, activation_vjp = (z, None) if activation is None else activation(z)
        vjps.append((linear_vjp, activation_vjp))
    g = rng.standard_normal(a.shape).astype(np.float32)  # (N, n_L): cotangent of a_L
    c = []
    for linear_vjp, activation_vjp in reversed(vjps):
        (g,) = (g,) if activation_vjp is None else activation_vjp(g)  # now dz_l
        c.append(np.mean(np.square(g, dtype=np.float64)))
        g, _, _ = linear_vjp(g)  # da_{l-1}
    return np.array(q), np.array(c[::-1])


def within_factor_2(profile, of):
    """Every entry of ``profile`` is within a factor of 2 of ``of``."""
    return bool(np.all((profile >= of / 2) & (profile <= 2 * of)))


def predicted_linear_profiles(widths, variances):
    """The derivation's prediction for a linear net, relative to the first layer forward
    (q_l / q_1) and to the last layer backward (c_l / c_L).

    Forward, Var(z_l) = n_{l-1} Var(W_l) Var(z_{l-1}); backward, the cotangent of z_{l-1} is
    dz_l W_l^T, a sum of n_l terms: Var(dz_{l-1}) = n_l Var(W_l) Var(dz_l).
    """
    n = np.array(widths, dtype=np.float64)
    v = np.array(variances, dtype=np.float64)
    forward = n[:-1] * v  # layer l's forward factor, l = 1..L
    backward = n[1:] * v
    q = np.concatenate([[1.0], np.cumprod(forward[1:])])
    c = np.concatenate([np.cumprod(backward[1:][::-1])[::-1], [1.0]])
    return q, c


# Widths shrinking by 0.9 a layer, 512 -> 179: fan_in != fan_out everywhere, so the test sees
# Glorot's compromise between the forward and the backward requirement.
TAPERED = [round(512 * 0.9**layer) for layer in range(11)]
SQUARE_RELU = [1024] * 11


def normal_with_variance(variance_of_shape):
    def draw(rng, shape):
        return (math.sqrt(variance_of_shape(*shape)) * rng.standard_normal(shape)).astype(
            np.float32
        )

    return draw


@pytest.mark.spec("he", 4)
@pytest.mark.parametrize("init", HE)
def test_he_keeps_relu_second_moments_over_depth(init):
    """He + ReLU, 10 layers of width 1024, batch 1000: within a factor 2, forward and back.

    Forward: E[z_l**2] = n Var(W) E[relu(z_{l-1})**2] = (2/n) n E[z_{l-1}**2] / 2, preserved
    in expectation over the weights. Backward: dz_{l-1} = (dz_l W_l^T) [z_{l-1} > 0], same
    factor 2 * 1/2. A finite net fluctuates around that (log q_l / q_1 spreads with l / n,
    Hanin & Rolnick 2018): over 30 seeds the worst layer was off by a factor 1.4.
    """
    q, c = depth_profile(np.random.default_rng(SEED), SQUARE_RELU, init, relu)
    assert within_factor_2(q, q[0]), q / q[0]
    assert within_factor_2(c, c[-1]), c / c[-1]


@pytest.mark.spec("he", 5)
@pytest.mark.parametrize(
    ("variance", "factor"),
    [(lambda d, m: 1 / d, 1 / 2), (lambda d, m: 1e-4, 1024 * 1e-4 / 2)],
    ids=["Var 1 over fan_in (Glorot on square layers)", "std 0.01"],
)
def test_he_badly_scaled_inits_leave_the_band(variance, factor):
    """The same ReLU net (batch 250: the margins are wide), badly scaled: each layer
    multiplies q by n Var(W) / 2 = ``factor``.

    Without He's 2 the second moment halves each layer (2**-9 after 9 layers); a fixed std of
    0.01 gives 0.0512 a layer. Both leave the factor-2 band, forward and backward, as
    predicted to within the finite-width spread (a factor 2).
    """
    draw = normal_with_variance(variance)
    q, c = depth_profile(np.random.default_rng(SEED), SQUARE_RELU, draw, relu, batch=250)
    assert not within_factor_2(q, q[0]) and not within_factor_2(c, c[-1])
    predicted = factor ** np.arange(10)
    assert np.all(np.abs(np.log(q / q[0] / predicted)) <= math.log(2)), q / q[0] / predicted
    assert np.all(np.abs(np.log(c / c[-1] / predicted[::-1])) <= math.log(2))


@pytest.mark.spec("glorot", 4)
@pytest.mark.parametrize("init", GLOROT)
def test_glorot_keeps_linear_net_variance_over_depth(init):
    """Glorot, linear net 512 -> 179 (widths x0.9 a layer): within a factor 2, both ways.

    The per-layer factors are 2 n_{l-1} / (n_{l-1} + n_l) = 1.05 forward and
    2 n_l / (n_{l-1} + n_l) = 0.95 backward: after 9 layers 1.59 and 0.62, inside the band,
    and the measured profiles follow the prediction to 20% (the worst seed of 20 was 9%).
    """
    q, c = depth_profile(np.random.default_rng(SEED), TAPERED, init, None)
    assert within_factor_2(q, q[0]), q / q[0]
    assert within_factor_2(c, c[-1]), c / c[-1]
    variances = [glorot_variance(d, m) for d, m in itertools.pairwise(TAPERED)]
    q_predicted, c_predicted = predicted_linear_profiles(TAPERED, variances)
    np.testing.assert_allclose(q / q[0], q_predicted, rtol=0.2)
    np.testing.assert_allclose(c / c[-1], c_predicted, rtol=0.2)


def tanh_recursion(q1, layers):
    """E[z_l**2] for a tanh net whose layers have n Var(W) = 1: q_{l+1} = E[tanh(sqrt(q_l) u)**2].

    u is a standard normal; the expectation by scipy's adaptive quadrature.
    """
    q = [q1]
    for _ in range(layers - 1):
        s = math.sqrt(q[-1])
        value, _ = integrate.quad(lambda u, s=s: math.tanh(s * u) ** 2 * stats.norm.pdf(u), -40, 40)
        q.append(value)
    return np.array(q)


@pytest.mark.spec("glorot", 5)
@pytest.mark.parametrize(("x_std", "keeps_band"), [(1.0, False), (0.1, True)])
def test_glorot_tanh_follows_the_variance_recursion(x_std, keeps_band):
    """Glorot + tanh, 10 square layers of 512: not preserved, but as the theory predicts.

    tanh contracts, E[tanh(z)**2] < E[z**2], so with n Var(W) = 1 the second moment follows
    q_{l+1} = E[tanh(sqrt(q_l) u)**2] (u standard normal), about q_l - 2 q_l**2 when small:
    from q_1 = 1 it falls to 0.058 by layer 10 and leaves the factor-2 band; from q_1 = 0.01,
    in tanh's linear regime, it ends at 0.85 q_1 and stays inside. Measured to 10%.
    """
    q, _ = depth_profile(np.random.default_rng(SEED), [512] * 11, glorot_normal, tanh, x_std)
    predicted = tanh_recursion(q[0], 10)
    np.testing.assert_allclose(q, predicted, rtol=0.1)
    assert within_factor_2(q, q[0]) is keeps_band, q / q[0]


def standard_uniform(rng, shape):
    """The "standard" U(-1/sqrt(n_in), 1/sqrt(n_in)) of Glorot & Bengio's comparison."""
    limit = 1 / math.sqrt(shape[0])
    return rng.uniform(-limit, limit, shape).astype(np.float32)


@pytest.mark.spec("glorot", 6)
@pytest.mark.parametrize(
    ("draw", "variance"),
    [
        (normal_with_variance(lambda d, m: 1 / d), lambda d, m: 1 / d),
        (normal_with_variance(lambda d, m: 1 / m), lambda d, m: 1 / m),
        (standard_uniform, lambda d, m: (2 / math.sqrt(d)) ** 2 / 12),
        (normal_with_variance(lambda d, m: 1e-4), lambda d, m: 1e-4),
    ],
    ids=["fan_in only", "fan_out only", "U(+-1 over sqrt fan_in)", "std 0.01"],
)
def test_glorot_badly_scaled_inits_leave_the_band(draw, variance):
    """The same linear net 512 -> 179 with other scalings leaves the band, as predicted.

    Var = 1 / n_in keeps the forward pass but the backward shrinks to n_10 / n_1 = 0.39;
    Var = 1 / n_out the reverse (forward grows to 2.6); the "standard" U(-1/sqrt(n_in),
    1/sqrt(n_in)) of Glorot & Bengio's comparison has Var = (2 / sqrt(n_in))**2 / 12 =
    1 / (3 n_in), a factor 1/3 a layer; std 0.01 gives n 1e-4 < 0.05 a layer. Each measured
    profile follows its prediction to 20%.
    """
    q, c = depth_profile(np.random.default_rng(SEED), TAPERED, draw, None)
    assert not (within_factor_2(q, q[0]) and within_factor_2(c, c[-1]))
    variances = [variance(d, m) for d, m in itertools.pairwise(TAPERED)]
    q_predicted, c_predicted = predicted_linear_profiles(TAPERED, variances)
    assert not (within_factor_2(q_predicted, 1) and within_factor_2(c_predicted, 1))
    np.testing.assert_allclose(q / q[0], q_predicted, rtol=0.2)
    np.testing.assert_allclose(c / c[-1], c_predicted, rtol=0.2)


# --- convolution kernels: fans after im2col, and depth through conv + relu ------------------


def conv_valid(x, w):
    """y[n,k,p,q] = sum_{c,i,j} w[k,c,i,j] x[n,c,p+i,q+j], P = H - R + 1: one einsum."""
    r, s = w.shape[2:]
    windows = sliding_window_view(x, (r, s), axis=(2, 3))  # (N, C, P, Q, R, S)
    return np.einsum("ncpqij,kcij->nkpq", windows, w, optimize=True)  # (N, K, P, Q)


def conv_same(x, w):
    """``conv_valid`` of x zero-padded by R // 2 and S // 2 on each side ('same', odd R, S)."""
    r, s = w.shape[2:]
    xp = np.pad(x, ((0, 0), (0, 0), (r // 2, r // 2), (s // 2, s // 2)))  # (N, C, H+R-1, W+S-1)
    return conv_valid(xp, w)  # (N, K, H, W)


def conv_same_dx(g, w):
    """The cotangent of ``conv_same``'s x: dx[n,c,h,w] = sum_{k,i,j} g[n,k,h-i+R//2,w-j+S//2]
    w[k,c,i,j], itself a 'same' convolution of g with the kernel flipped and transposed."""
    return conv_same(g, w.transpose(1, 0, 2, 3)[:, :, ::-1, ::-1])  # (N, C, H, W)


def test_explicit_conv_helpers_against_loops():
    """The test's own convolution: the definition by loops over every index, and the adjoint
    identity <g, conv(x)> = <conv_dx(g), x> that makes ``conv_same_dx`` its VJP."""
    rng = np.random.default_rng(SEED)
    x = rng.standard_normal((2, 3, 5, 6))  # (N, C, H, W)
    w = rng.standard_normal((4, 3, 3, 5))  # (K, C, R, S)
    y = np.zeros((2, 4, 3, 2))  # (N, K, P, Q)
    for n, k, p, q, c, i, j in itertools.product(*map(range, (2, 4, 3, 2, 3, 3, 5))):
        y[n, k, p, q] += w[k, c, i, j] * x[n, c, p + i, q + j]
    np.testing.assert_allclose(conv_valid(x, w), y, rtol=1e-12, atol=1e-12)
    y_same = conv_same(x, w)  # (N, K, H, W)
    assert y_same.shape == (2, 4, 5, 6)
    np.testing.assert_allclose(y_same[:, :, 1:4, 2:4], y, rtol=1e-12, atol=1e-12)
    g = rng.standard_normal(y_same.shape)
    dx = conv_same_dx(g, w)
    assert dx.shape == x.shape
    assert np.vdot(g, y_same) == pytest.approx(np.vdot(dx, x), rel=1e-12)


@pytest.mark.spec("glorot", 9)
@pytest.mark.parametrize("shape", [(3, 2, 2, 3), (1, 4, 3, 1), (5, 1, 1, 1)])
def test_kernel_fans_are_those_of_the_im2col_gemm(shape):
    """A (K, C, R, S) kernel's fans, counted on the convolution itself.

    im2col turns the convolution into one GEMM: patches (N*P*Q, C*R*S) @ w.reshape(K, -1).T,
    a dense (C*R*S, K) weight whose input dimension is fan_in. Counted on the Jacobian of
    the convolution (built by convolving every one-hot input; weights in [1, 2), never 0):
    every output sums fan_in = C*R*S inputs, and every input at least R - 1 rows and S - 1
    columns from the borders feeds fan_out = K*R*S outputs, the terms of its cotangent (one
    per output channel and kernel offset; fewer at the borders, none more anywhere).
    """
    k, c, r, s = shape
    fan_in, fan_out = fans(shape)
    rng = np.random.default_rng(SEED)
    w = rng.uniform(1, 2, shape)  # (K, C, R, S)
    h, wd = 2 * r + 1, 2 * s + 2
    x = rng.standard_normal((2, c, h, wd))  # (N, C, H, W)
    p, q = h - r + 1, wd - s + 1
    windows = sliding_window_view(x, (r, s), axis=(2, 3))  # (N, C, P, Q, R, S)
    patches = windows.transpose(0, 2, 3, 1, 4, 5).reshape(2 * p * q, c * r * s)  # (NPQ, CRS)
    dense = w.reshape(k, c * r * s).T  # (C*R*S, K): the GEMM's weight
    y = (patches @ dense).reshape(2, p, q, k).transpose(0, 3, 1, 2)  # (N, K, P, Q)
    np.testing.assert_allclose(y, conv_valid(x, w), rtol=1e-12)
    assert fan_in == dense.shape[0] == c * r * s

    one_hots = np.eye(c * h * wd).reshape(-1, c, h, wd)  # (C*H*W, C, H, W): every input
    jacobian = conv_valid(one_hots, w).reshape(c * h * wd, -1).T  # (K*P*Q, C*H*W)
    terms_of_output = np.count_nonzero(jacobian, axis=1)  # (K*P*Q,)
    outputs_fed = np.count_nonzero(jacobian, axis=0).reshape(c, h, wd)  # (C, H, W)
    assert np.all(terms_of_output == fan_in)
    assert np.all(outputs_fed[:, r - 1 : h - r + 1, s - 1 : wd - s + 1] == fan_out)
    assert outputs_fed.max() == fan_out
    assert fan_out == k * r * s


def zero_padding_profile(side, layers):
    """The mean-field second moments of a 'same' 3x3 conv + relu stack on side x side maps,
    relative to layer 1 (forward) and to the last layer (backward), with He's scale.

    With n Var(W) = 2 over the C*9 terms of an output and half of each a_{l-1}**2 lost to
    the relu, the second moment at a pixel is the mean over its 3x3 neighbours of the
    previous layer's, the neighbours outside the map counting 0: q_l = B q_{l-1} with B the
    zero-padded 3x3 box mean, q_1 = 2 B 1 for unit inputs. The cotangents spread the same way
    back, c_{l-1} = B c_l (B is symmetric). Away from the borders B keeps a constant.
    """

    def box(f):
        padded = np.pad(f, 1)  # (side + 2, side + 2)
        return sum(padded[i : i + side, j : j + side] for i in range(3) for j in range(3)) / 9

    f, means = np.ones((side, side)), []
    for _ in range(layers + 1):
        f = box(f)
        means.append(f.mean())
    forward = np.array(means[:layers]) / means[0]  # B^l 1 / B 1, l = 1..layers
    backward = np.array([1.0, *means[: layers - 1]])[::-1]  # B^(L-l) 1
    return forward, backward


def conv_depth_profile(rng, draw, layers, channels, side, batch):
    """Second moments of pre-activations and their cotangents in a conv + relu stack.

    Layer l computes z_l = conv_same(a_{l-1}, W_l) with a (channels, channels, 3, 3) kernel
    and a_l = relu(z_l), from N(0, 1) inputs a_0 of shape (batch, channels, side, side), in
    float32; q and c as in ``depth_profile``.
    """
    a = rng.standard_normal((batch, channels, side, side)).astype(np.float32)  # (N, C, H, W)
    q, saved = [], []
    for _ in range(layers):
        w = draw(rng, (channels, channels, 3, 3))  # (K, C, R, S), K = C
        z = conv_same(a, w)  # (N, K, H, W)
        q.append(np.mean(np.square(z, dtype=np.float64)))
        a = np.maximum(z, 0)
        saved.append((w, z > 0))
    g = rng.standard_normal(a.shape).astype(np.float32)  # cotangent of a_L
    c = []
    for w, positive in reversed(saved):
        g = g * positive  # dz_l
        c.append(np.mean(np.square(g, dtype=np.float64)))
        g = conv_same_dx(g, w)  # da_{l-1}
    return np.array(q), np.array(c[::-1])


def rs_forgotten(rng, shape):
    """He's normal with fan_in = C instead of C*R*S: R*S = 9 times the variance."""
    return (math.sqrt(2 / shape[1]) * rng.standard_normal(shape)).astype(np.float32)


# 512 channels: the finite-width spread is set by the channel count (see the he page); 24 x 24
# maps keep the zero-padding loss (0.86) far enough from the band's edge.
CONV_LAYERS, CONV_CHANNELS, CONV_SIDE, CONV_BATCH = 6, 512, 24, 1


@pytest.mark.spec("he", 8)
@pytest.mark.parametrize(
    ("draw", "factor"),
    [
        (he_normal, 1.0),
        (he_uniform, 1.0),
        (normal_with_variance(lambda k, c, r, s: 1 / (c * r * s)), 1 / 2),
        (rs_forgotten, 9.0),
    ],
    ids=["he_normal", "he_uniform", "Var 1 over fan_in", "R*S forgotten"],
)
def test_he_keeps_conv_relu_second_moments_over_depth(draw, factor):
    """He + relu through 6 'same' 3x3 convolutions of 512 channels on 24 x 24 maps, batch 1:
    within a factor 2, forward and back.

    Zero padding gives the border pixels fewer terms, so even the mean-field moments fall:
    by ``zero_padding_profile``, to 0.86 of layer 1's at layer 6 forward, and to 0.83 of
    layer 6's at layer 1 backward (0.79 and 0.76 on 16 x 16 maps). Inside the band; the
    measurement follows that prediction, times (n Var(W) / 2)**(l - 1) = ``factor``**(l - 1),
    to within a factor of 2. Var = 1 / fan_in (a factor 1/2 a layer) and R*S forgotten (9 a
    layer) leave the band. Over 25 seeds each, the worst layer of he_normal was off by a
    factor 1.49, of he_uniform 1.51; ln(q_6 / prediction) had a standard deviation of 0.11
    and 0.12, so the band's lower edge, ln(0.86 / 0.5) = 0.54 away, is about 4.5 of them.
    """
    q, c = conv_depth_profile(
        np.random.default_rng(SEED), draw, CONV_LAYERS, CONV_CHANNELS, CONV_SIDE, CONV_BATCH
    )
    forward, backward = zero_padding_profile(CONV_SIDE, CONV_LAYERS)
    np.testing.assert_allclose(forward[-1], 0.861, atol=1e-3)
    np.testing.assert_allclose(backward[0], 0.833, atol=1e-3)
    np.testing.assert_allclose(zero_padding_profile(16, 6)[0][-1], 0.792, atol=1e-3)
    steps = factor ** np.arange(CONV_LAYERS)
    keeps = within_factor_2(q, q[0]) and within_factor_2(c, c[-1])
    assert keeps is (factor == 1), (q / q[0], c / c[-1])
    assert np.all(np.abs(np.log(q / q[0] / (forward * steps))) <= math.log(2)), q / q[0]
    assert np.all(np.abs(np.log(c / c[-1] / (backward * steps[::-1]))) <= math.log(2))


# --- shapes, dtypes, determinism, errors ---------------------------------------------------

float_dtypes = st.sampled_from(["float16", np.float32, np.dtype(np.float64), np.longdouble])


# Dense (D, M) with sides 1..40, or conv kernels (K, C, R, S) with sides 1..6.
any_shape = st.one_of(
    st.tuples(st.integers(1, 40), st.integers(1, 40)),
    st.tuples(*[st.integers(1, 6)] * 4),
)


def check_shape_dtype_and_determinism(init, sides, dtype, seed, as_list):
    shape = list(sides) if as_list else sides
    first = init(np.random.default_rng(seed), shape, dtype=dtype)
    again = init(np.random.default_rng(seed), shape, dtype=dtype)
    assert first.shape == sides and first.dtype == np.dtype(dtype)
    assert np.all(np.isfinite(first))
    np.testing.assert_array_equal(first, again)  # the same rng state, bit for bit
    rng = np.random.default_rng(seed)
    init(rng, shape, dtype=dtype)
    if math.prod(sides) >= 16:  # the call advanced rng: the next weights are fresh draws
        assert not np.array_equal(init(rng, shape, dtype=dtype), first)
    if init in (glorot_uniform, he_uniform):
        limit = reference(init, sides).support()[1]
        assert np.all(np.abs(first) <= np.asarray(limit, dtype=dtype))
    assert init(np.random.default_rng(seed), shape).dtype == np.float32  # the default


@pytest.mark.spec("glorot", 7)
@pytest.mark.parametrize("init", GLOROT)
@given(sides=any_shape, dtype=float_dtypes, seed=st.integers(0, 2**63), as_list=st.booleans())
def test_glorot_shape_dtype_and_determinism(init, sides, dtype, seed, as_list):
    """The requested shape and dtype, bit-for-bit reproducible from the rng; fans = (D, M)
    for a dense weight and (C*R*S, K*R*S) for a kernel (K, C, R, S)."""
    assert fans(sides) == fans(list(sides)) == expected_fans(sides)
    assert all(type(f) is int for f in fans(sides))
    check_shape_dtype_and_determinism(init, sides, dtype, seed, as_list)


@pytest.mark.spec("he", 6)
@pytest.mark.parametrize("init", HE)
@given(sides=any_shape, dtype=float_dtypes, seed=st.integers(0, 2**63), as_list=st.booleans())
def test_he_shape_dtype_and_determinism(init, sides, dtype, seed, as_list):
    """The requested shape and dtype, (D, M) or (K, C, R, S), bit-for-bit reproducible."""
    check_shape_dtype_and_determinism(init, sides, dtype, seed, as_list)


# Ranks 0, 1, 3 and 5 (a 3-D conv1d or 5-D conv3d kernel is not accepted), non-sequences,
# non-integer sides of either accepted rank.
BAD_SHAPES = [
    (),
    (5,),
    (2, 3, 4),
    (1, 2, 3, 3, 3),
    5,
    None,
    "ab",
    "abcd",
    (2.0, 3),
    (True, 3),
    (4, 3, 3.0, 3),
    (4, np.True_, 3, 3),
]
# A zero fan_in (D, or C, R, S) or fan_out (M, or K, R, S), or a negative side.
ZERO_FANS = [(0, 3), (3, 0), (0, 0), (-1, 3), (0, 3, 3, 3), (4, 0, 3, 3), (4, 3, 0, 3)]
ZERO_FANS += [(4, 3, 3, 0), (4, 3, -3, -3)]
ACCEPTED = r"\(D, M\) of a dense weight or \(K, C, R, S\) of a conv kernel"
BAD_DTYPES = [np.int32, bool, np.complex128, object, "U3", "flaot32", None]
BAD_RNGS = [None, 0, np.random.RandomState(0)]


def check_refusals(init):
    rng = np.random.default_rng(0)
    name = init.__name__
    for shape in BAD_SHAPES:
        with pytest.raises(ShapeError, match="shape must be " + ACCEPTED) as error:
            init(rng, shape)
        assert name in str(error.value) and f"received {shape!r}" in str(error.value)
    for shape in ZERO_FANS:
        with pytest.raises(ShapeError, match=r"fan_in >= 1 and fan_out >= 1") as error:
            init(rng, shape)
        assert name in str(error.value) and f"received {shape!r}" in str(error.value)
    for dtype in BAD_DTYPES:
        with pytest.raises(DTypeError, match="dtype must be a real floating dtype") as error:
            init(rng, (3, 4), dtype=dtype)
        assert name in str(error.value) and f"received {dtype!r}" in str(error.value)
    for bad in BAD_RNGS:
        with pytest.raises(TypeError, match=f"{name}: rng must be a numpy.random.Generator"):
            init(bad, (3, 4))


@pytest.mark.spec("glorot", 8)
@pytest.mark.parametrize("init", [*GLOROT, fans])
def test_glorot_refuses_bad_arguments(init):
    """ShapeError for anything but (D, M) or (K, C, R, S) with every side >= 1 (ranks 1, 3, 5
    too), DTypeError for non-float dtypes,
    TypeError for an rng that is not a Generator; each message names the function, the
    argument, what was expected and what was received. ``fans`` refuses the same shapes."""
    if init is fans:
        for shape in BAD_SHAPES + ZERO_FANS:
            with pytest.raises(ShapeError, match=r"^fans: shape must") as error:
                fans(shape)
            assert f"received {shape!r}" in str(error.value)
            assert re.search(ACCEPTED, str(error.value)) or "fan_in >= 1" in str(error.value)
        return
    check_refusals(init)


@pytest.mark.spec("he", 7)
@pytest.mark.parametrize("init", HE)
def test_he_refuses_bad_arguments(init):
    """As for Glorot: ShapeError, DTypeError, TypeError, each with a message that names them."""
    check_refusals(init)


def test_errors_belong_to_the_family():
    """ShapeError is also a ValueError and DTypeError a TypeError, so generic handlers work."""
    with pytest.raises(NNError):
        he_normal(np.random.default_rng(0), (3, 4, 5))
    with pytest.raises(ValueError):
        he_normal(np.random.default_rng(0), (0, 5))
    with pytest.raises(TypeError):
        he_normal(np.random.default_rng(0), (3, 4), dtype=np.int64)


def test_float32_draws_are_not_rounded_float64_draws():
    """Numerics: float32 is sampled natively (its own stream), not drawn in float64 and cast."""
    w32 = glorot_normal(np.random.default_rng(SEED), (8, 8), dtype=np.float32)
    w64 = glorot_normal(np.random.default_rng(SEED), (8, 8), dtype=np.float64)
    assert not np.array_equal(w32, w64.astype(np.float32))
