"""batch_norm and batch_norm_inference (spec/batch_norm.md, spec/batch_norm_inference.md):
forward references, the numbered invariants, the compact vjp against the staged chain rule,
the running averages, numerics in float32 and the errors for bad static arguments."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

import nn
from nn import batch_norm, batch_norm_inference
from nn.norm import batch_moments, update_running
from nn.testing import check_float32, check_reference, check_vjp

# Distinct sizes, so a statistic over the wrong axes cannot have the right shape.
SHAPE = (3, 4, 2, 5)  # N, C, H, W
C = SHAPE[1]
ALPHA = 1e-6  # false-alarm probability of each statistical test as a whole


def inputs(seed: int, shape: tuple[int, ...] = SHAPE, eps_scale: float = 1.0):
    """x with a different offset and scale per channel; gamma (signs mixed) and beta."""
    rng = np.random.default_rng(seed)
    c = shape[1]
    offset = rng.uniform(-3, 3, c)[:, None, None]
    scale = rng.uniform(0.5, 4, c)[:, None, None]
    x = offset + scale * rng.standard_normal(shape)
    gamma = rng.choice([-1.0, 1.0], c) * rng.uniform(0.5, 2, c)
    beta = rng.standard_normal(c)
    return x, gamma, beta


def channel_values(x: np.ndarray, c: int) -> np.ndarray:
    """All N*H*W values of channel c, as a flat float64 vector."""
    return np.asarray(x[:, c], dtype=np.float64).ravel()


def reference_batch_norm(x, gamma, beta, *, eps=1e-5):
    """Channel by channel, from np.var(ddof=0) and a correctly rounded mean (math.fsum)."""
    y = np.empty(x.shape)
    for c in range(x.shape[1]):
        v = channel_values(x, c)
        mu = math.fsum(v) / v.size
        var = np.var(v)  # ddof=0: the biased variance
        y[:, c] = gamma[c] * (x[:, c] - mu) / math.sqrt(var + eps) + beta[c]
    return y


def zscore_batch_norm(x, gamma, beta, *, eps=1e-5):
    """scipy.stats.zscore per channel: (x - mu)/sigma, rescaled by sigma/sqrt(var + eps)."""
    y = np.empty(x.shape)
    for c in range(x.shape[1]):
        var = np.var(channel_values(x, c))
        z = stats.zscore(x[:, c], axis=None)
        y[:, c] = gamma[c] * z * math.sqrt(var / (var + eps)) + beta[c]
    return y


def per_channel(a: np.ndarray) -> np.ndarray:
    """Sum over N, H, W: (N, C, H, W) -> (C,)."""
    return a.sum(axis=(0, 2, 3))


# --- invariants of spec/batch_norm.md --------------------------------------------------------


@pytest.mark.spec("batch_norm", 1)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("eps", [1e-5, 0.5, 3.0])
def test_output_has_mean_beta_and_variance_gamma2_var_over_var_plus_eps(seed, eps):
    """Invariant 1: per channel, mean(y) = beta and var(y) = gamma^2 var / (var + eps);
    for gamma = 1, beta = 0: mean 0 and variance var / (var + eps). A large eps makes the
    factor var / (var + eps) visible (a variance that ignored eps would fail)."""
    x, gamma, beta = inputs(seed)
    for g_, b_ in ((gamma, beta), (np.ones(C), np.zeros(C))):
        y, _ = batch_norm(x, g_, b_, eps=eps)
        var = np.array([np.var(channel_values(x, c)) for c in range(C)])
        np.testing.assert_allclose(y.mean(axis=(0, 2, 3)), b_, rtol=0, atol=1e-14)
        expected = g_**2 * var / (var + eps)
        np.testing.assert_allclose(y.var(axis=(0, 2, 3)), expected, rtol=1e-13, atol=0)


@pytest.mark.spec("batch_norm", 2)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_input_gradient_sums_to_zero_per_channel(seed, eps):
    """Invariant 2: sum over n, h, w of dx is 0 for every channel, whatever g is, because
    y does not change when a constant is added to a channel (its mean absorbs it)."""
    x, gamma, beta = inputs(seed)
    _, vjp = batch_norm(x, gamma, beta, eps=eps)
    g = np.random.default_rng(seed + 100).standard_normal(SHAPE) + 3.0  # nonzero mean
    dx, _, _ = vjp(g)
    scale = per_channel(np.abs(dx))
    assert np.all(np.abs(per_channel(dx)) <= 1e-14 * scale)
    assert np.all(scale > 0.1)  # not trivially zero


@pytest.mark.spec("batch_norm", 3)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("eps", [1e-300, 1e-5, 0.5, 3.0])
def test_input_gradient_is_orthogonal_to_xhat_up_to_eps(seed, eps):
    """Invariant 3: sum(dx * xhat) = gamma eps / (var + eps)^(3/2) * sum(g * xhat) per
    channel, exactly; so dx is orthogonal to xhat as eps -> 0 (to rounding at eps = 1e-300),
    because y is then invariant to scaling a channel about its mean."""
    x, gamma, beta = inputs(seed)
    _, vjp = batch_norm(x, gamma, beta, eps=eps)
    g = np.random.default_rng(seed + 200).standard_normal(SHAPE)
    dx, _, _ = vjp(g)
    mean = x.mean(axis=(0, 2, 3))[:, None, None]
    var = np.array([np.var(channel_values(x, c)) for c in range(C)])
    xhat = (x - mean) / np.sqrt(var + eps)[:, None, None]
    left = per_channel(dx * xhat)
    right = gamma * eps / (var + eps) ** 1.5 * per_channel(g * xhat)
    tol = 1e-13 * per_channel(np.abs(dx * xhat))
    assert np.all(np.abs(left - right) <= tol), (left, right)


@pytest.mark.spec("batch_norm", 4)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_invariant_to_shift_and_positive_scale_per_channel(seed):
    """Invariant 4: y(a_c x + b_c) = y(x) for a_c > 0 per channel, up to eps: exactly (to
    rounding) for a shift, for a common scale a with eps -> a^2 eps, and within the bound
    |gamma xhat| |1 - sqrt((var + eps) / (var + eps / a_c^2))| for per-channel scales."""
    x, gamma, beta = inputs(seed)
    rng = np.random.default_rng(seed + 300)
    a = rng.uniform(0.1, 10, C)[:, None, None]
    b = rng.uniform(-100, 100, C)[:, None, None]
    y, _ = batch_norm(x, gamma, beta, eps=1e-5)
    scale = np.abs(y - beta[:, None, None]).max() + 1

    shifted, _ = batch_norm(x + b, gamma, beta, eps=1e-5)
    np.testing.assert_allclose(shifted, y, rtol=0, atol=1e-12 * scale)  # |b| <= 100

    for common in (0.01, 3.0, 1e3):
        scaled, _ = batch_norm(common * x, gamma, beta, eps=1e-5 * common**2)
        np.testing.assert_allclose(scaled, y, rtol=0, atol=1e-13 * scale)

    var = np.array([np.var(channel_values(x, c)) for c in range(C)])[:, None, None]
    moved, _ = batch_norm(a * x + b, gamma, beta, eps=1e-5)
    xhat = (y - beta[:, None, None]) / gamma[:, None, None]
    bound = np.abs(gamma[:, None, None] * xhat) * np.abs(
        1 - np.sqrt((var + 1e-5) / (var + 1e-5 / a**2))
    )
    assert np.all(np.abs(moved - y) <= bound + 1e-12 * scale)
    assert np.abs(moved - y).max() < 1e-4  # eps = 1e-5 against variances >= 0.1: small


@pytest.mark.spec("batch_norm", 5)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize(
    "shape", [SHAPE, (1, 2, 3, 3), (5, 3, 1, 1), (2, 1, 1, 1), (1, 3, 1, 1), (4, 2, 7, 3)]
)
def test_reference_forward(seed, shape):
    """Invariant 5 (P8): the forward value against two independent computations: math.fsum
    means with np.var(ddof=0), and scipy.stats.zscore; in float64. A channel with a single
    value (N*H*W = 1) has var = 0 and outputs beta."""
    x, gamma, beta = inputs(seed, shape)
    static = {"eps": 1e-5}
    check_reference(batch_norm, reference_batch_norm, x, gamma, beta, static=static, rtol=1e-12)
    if shape[0] * shape[2] * shape[3] > 1:  # zscore of one value is 0/0
        check_reference(batch_norm, zscore_batch_norm, x, gamma, beta, static=static, rtol=1e-12)


@pytest.mark.spec("batch_norm", 6)
@pytest.mark.spec("batch_norm_inference", 2)
@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_agrees_with_inference_on_the_batch_statistics(seed, dtype):
    """batch_norm invariant 6 and batch_norm_inference invariant 2: with mean and var the
    batch's own (batch_moments), inference mode gives the training output and the same
    dgamma, dbeta; dx differs by exactly the terms through the statistics."""
    x, gamma, beta = (a.astype(dtype) for a in inputs(seed))
    y, vjp = batch_norm(x, gamma, beta, eps=1e-3)
    mean, var = batch_moments(x)
    assert mean.dtype == var.dtype == dtype
    y_inf, vjp_inf = batch_norm_inference(x, gamma, beta, mean=mean, var=var, eps=1e-3)
    tol = 1e-14 if dtype == np.float64 else 1e-6
    np.testing.assert_allclose(y_inf, y, rtol=tol, atol=tol * np.abs(y).max())
    g = np.random.default_rng(seed).standard_normal(SHAPE).astype(dtype)
    dx, dgamma, dbeta = vjp(g)
    dx_inf, dgamma_inf, dbeta_inf = vjp_inf(g)
    np.testing.assert_allclose(dgamma_inf, dgamma, rtol=tol, atol=tol * np.abs(g).sum())
    np.testing.assert_allclose(dbeta_inf, dbeta, rtol=tol, atol=tol * np.abs(g).sum())
    # Training's dx = inference's dx minus the projection on the directions the statistics
    # move: a constant per channel and xhat itself.
    m = SHAPE[0] * SHAPE[2] * SHAPE[3]
    xhat = (y - beta[:, None, None]) / gamma[:, None, None]
    through_stats = (gamma / np.sqrt(var + dtype(1e-3)))[:, None, None] * (
        (dbeta / m)[:, None, None] + xhat * (dgamma / m)[:, None, None]
    )
    np.testing.assert_allclose(dx, dx_inf - through_stats, rtol=0, atol=20 * tol * np.abs(dx).max())


@pytest.mark.spec("batch_norm", 7)
@pytest.mark.parametrize("seed", [0, 1])
def test_dense_activations_via_reshape(seed):
    """Invariant 7: (N, D) activations are normalized per feature over the batch by viewing
    them as (N, D, 1, 1): the forward equals the 2-D formula (np.mean/np.var over axis 0),
    and the vjp passes the protocol on that path."""
    rng = np.random.default_rng(seed)
    n, d = 6, 5
    a = rng.standard_normal((n, d)) * rng.uniform(0.5, 3, d) + rng.uniform(-2, 2, d)
    gamma, beta = rng.standard_normal(d), rng.standard_normal(d)
    y, vjp = batch_norm(a.reshape(n, d, 1, 1), gamma, beta)
    expected = gamma * (a - a.mean(axis=0)) / np.sqrt(a.var(axis=0) + 1e-5) + beta
    np.testing.assert_allclose(y.reshape(n, d), expected, rtol=1e-13, atol=1e-13)
    dx, _, _ = vjp(np.ones((n, d, 1, 1)))
    assert dx.shape == (n, d, 1, 1)
    check_vjp(batch_norm, a.reshape(n, d, 1, 1), gamma, beta, seed=seed)


@pytest.mark.spec("batch_norm", 8)
@pytest.mark.parametrize("momentum", [0.1, 0.5, 1.0])
def test_running_averages_converge_on_a_repeated_batch(momentum):
    """Invariant 8: fed the same batch k times from (0, 1), the running mean and variance
    approach the batch mean and the unbiased variance (np.var(ddof=1)) like (1 - momentum)^k."""
    x, _, _ = inputs(4)
    m = SHAPE[0] * SHAPE[2] * SHAPE[3]
    mean, var = batch_moments(x)
    rm, rv = np.zeros(C), np.ones(C)
    target_mean = np.array([np.mean(channel_values(x, c)) for c in range(C)])
    target_var = np.array([np.var(channel_values(x, c), ddof=1) for c in range(C)])
    for k in range(1, 201):
        rm, rv = update_running(rm, rv, mean, var, momentum=momentum, count=m)
        decay = (1 - momentum) ** k
        np.testing.assert_allclose(rm, (1 - decay) * target_mean, rtol=1e-12, atol=1e-14)
        np.testing.assert_allclose(rv, decay + (1 - decay) * target_var, rtol=1e-12)
    np.testing.assert_allclose(rm, target_mean, rtol=1e-8)
    np.testing.assert_allclose(rv, target_var, rtol=1e-8)


@pytest.mark.spec("batch_norm", 9)
def test_running_averages_converge_to_the_data_statistics():
    """Invariant 9: on a stream of batches from a distribution with per-channel mean mu_c and
    variance s_c^2, the running averages settle around mu_c and s_c^2, with no bias: the
    running variance is fed the unbiased m/(m-1) var.

    After K = 300 steps (from running mean 0, variance 1; decay 0.9^300 ~ 2e-14), for
    Gaussian data, (rm_c - mu_c)/s_c has variance a/(2-a) / m, and rv_c/s_c^2 - 1 has
    variance a/(2-a) * 2/(m-1) (an exponential average of independent batch estimates).
    Averaged over 3000 independent channels, each passes a z-test at total false-alarm
    probability ALPHA. With m = 4, a biased running variance would be 0.75 s^2: z ~ -60.
    """
    rng = np.random.default_rng(21)
    a, n_channels, shape = 0.1, 3000, (2, 3000, 2, 1)  # m = N*H*W = 4
    m = shape[0] * shape[2] * shape[3]
    mu = rng.uniform(-5, 5, n_channels)
    s = rng.uniform(0.5, 2, n_channels)
    rm, rv = np.zeros(n_channels), np.ones(n_channels)
    for _ in range(300):
        x = mu[:, None, None] + s[:, None, None] * rng.standard_normal(shape)
        mean, var = batch_moments(x)
        rm, rv = update_running(rm, rv, mean, var, momentum=a, count=m)
    ema = a / (2 - a)  # variance of an exponential average of unit-variance terms
    threshold = z_threshold(ALPHA, 2)
    z_mean = np.mean((rm - mu) / s) / np.sqrt(ema / m / n_channels)
    z_var = np.mean(rv / s**2 - 1) / np.sqrt(ema * 2 / (m - 1) / n_channels)
    assert abs(z_mean) < threshold, z_mean
    assert abs(z_var) < threshold, z_var


@pytest.mark.spec("batch_norm", 10)
def test_two_pass_variance_avoids_cancellation_in_float32():
    """Invariant 10: values 1e4 + noise of standard deviation 0.1 in float32. The naive
    E[x^2] - E[x]^2 loses every digit (it comes out negative here, and batch_norm would
    return NaN); the two-pass variance of batch_moments is within 1e-4 of the float64
    variance of the same float32 values. batch_norm's output is then within
    2 ulp(1e4) / sigma ~ 0.02 of float64: a float32 mean carries at least half an ulp of
    |mu| = 1e4 of rounding (4.9e-4), which shifts xhat by that much over sigma = 0.1."""
    rng = np.random.default_rng(22)
    x = (1e4 + 0.1 * rng.standard_normal((64, 2, 4, 4))).astype(np.float32)
    truth = np.array([np.var(channel_values(x, c)) for c in range(2)])
    naive = (x * x).mean(axis=(0, 2, 3)) - x.mean(axis=(0, 2, 3)) ** 2
    assert np.all(np.abs(naive - truth) > truth)  # useless: off by more than 100%
    _, var = batch_moments(x)
    assert var.dtype == np.float32
    np.testing.assert_allclose(var, truth, rtol=1e-4)
    ones, zeros = np.ones(2, np.float32), np.zeros(2, np.float32)
    y, _ = batch_norm(x, ones, zeros, eps=1e-8)
    expected = reference_batch_norm(x.astype(np.float64), ones, zeros, eps=1e-8)
    sigma = np.sqrt(truth).min()
    bound = 2 * float(np.spacing(np.float32(1e4))) / sigma
    assert np.abs(y - expected).max() <= bound


def z_threshold(alpha: float, tests: int) -> float:
    """Two-sided z threshold for `tests` simultaneous z-tests at total level `alpha`."""
    return float(stats.norm.isf(alpha / (2 * tests)))


# --- the vjp, numerics and dtypes ------------------------------------------------------------


def staged_vjp(x, gamma, g, eps):
    """The unsimplified chain rule through mu and var (the "staged" backward), in float64:
    an independent derivation of dx to compare the compact form with."""
    axes = (0, 2, 3)
    m = x.shape[0] * x.shape[2] * x.shape[3]
    mu = x.mean(axis=axes, keepdims=True)
    var = ((x - mu) ** 2).mean(axis=axes, keepdims=True)
    s = np.sqrt(var + eps)
    dxhat = g * gamma[:, None, None]
    dvar = (dxhat * (x - mu)).sum(axis=axes, keepdims=True) * -0.5 * s**-3
    dmu = (-dxhat / s).sum(axis=axes, keepdims=True) + dvar * (-2 * (x - mu)).mean(
        axis=axes, keepdims=True
    )
    return dxhat / s + dvar * 2 * (x - mu) / m + dmu / m


@pytest.mark.parametrize("seed", [0, 1, 2])
@pytest.mark.parametrize("eps", [1e-5, 0.5])
def test_compact_vjp_equals_the_staged_chain_rule(seed, eps):
    """The page's compact dx against the unsimplified chain rule through mu and var."""
    x, gamma, beta = inputs(seed)
    _, vjp = batch_norm(x, gamma, beta, eps=eps)
    g = np.random.default_rng(seed + 400).standard_normal(SHAPE)
    dx, dgamma, dbeta = vjp(g)
    expected = staged_vjp(x, gamma, g, eps)
    np.testing.assert_allclose(dx, expected, rtol=1e-10, atol=1e-12 * np.abs(expected).max())
    xhat = (x - x.mean(axis=(0, 2, 3), keepdims=True)) / np.sqrt(
        x.var(axis=(0, 2, 3), keepdims=True) + eps
    )
    np.testing.assert_allclose(dgamma, per_channel(g * xhat), rtol=1e-12)
    np.testing.assert_allclose(dbeta, per_channel(g), rtol=1e-12)


@pytest.mark.parametrize(
    ("shape", "eps"),
    [((1, 3, 2, 2), 1e-5), ((4, 2, 1, 1), 1e-5), ((2, 3, 3, 1), 1e-5), ((6, 1, 1, 2), 1e-5),
     ((2, 2, 1, 1), 1.0)],
)  # fmt: skip
def test_gradient_protocol_at_other_shapes(shape, eps):
    """P1-P4 beyond the contract's sample: one example, 1x1 maps, one channel, and m = 2.

    With two values per channel xhat is +-sqrt(var / (var + eps)), nearly constant: dx is of
    order eps / var, below the central difference's rounding floor for eps = 1e-5, so m = 2
    is checked with eps = 1."""
    check_vjp(batch_norm, *inputs(5, shape), static={"eps": eps})
    rng = np.random.default_rng(6)
    check_vjp(
        batch_norm_inference,
        *inputs(5, shape),
        static={"mean": rng.standard_normal(shape[1]), "var": rng.uniform(0, 3, shape[1])},
    )


def test_single_value_per_channel_outputs_beta_and_no_input_gradient():
    """N*H*W = 1: var = 0, xhat = 0, y = beta and dx = 0 (the statistics absorb any change)."""
    x, gamma, beta = inputs(7, (1, 3, 1, 1))
    y, vjp = batch_norm(x, gamma, beta)
    np.testing.assert_array_equal(y[0, :, 0, 0], beta)
    dx, dgamma, dbeta = vjp(np.ones(x.shape))
    np.testing.assert_array_equal(dx, 0)
    np.testing.assert_array_equal(dgamma, 0)
    np.testing.assert_array_equal(dbeta, 1)  # sum of g over the single value


def test_constant_channel_is_finite_thanks_to_eps():
    """A constant channel (a dead ReLU map) has var = 0: eps keeps 1/sqrt(var + eps) finite."""
    x = np.zeros((4, 2, 3, 3))
    x[:, 1] = np.random.default_rng(8).standard_normal((4, 3, 3))
    y, vjp = batch_norm(x, np.ones(2), np.full(2, 0.5))
    assert np.all(y[:, 0] == 0.5)
    dx, _, _ = vjp(np.random.default_rng(9).standard_normal(x.shape))
    assert np.isfinite(dx).all()


@pytest.mark.parametrize("eps", [1e-5, np.float64(1e-5), np.float32(1e-5)])
def test_float32_stays_float32(eps):
    """float32 in, float32 out and float32 cotangents, even for a NumPy float64 eps; and the
    forward agrees with float64 at a training-sized batch."""
    x, gamma, beta = (a.astype(np.float32) for a in inputs(10, (32, 4, 6, 6)))
    y, vjp = batch_norm(x, gamma, beta, eps=eps)
    assert y.dtype == np.float32
    assert all(c.dtype == np.float32 for c in vjp(np.ones(x.shape, np.float32)))
    check_float32(batch_norm, *(a.astype(np.float64) for a in (x, gamma, beta)))
    mean, var = batch_moments(x)
    y, vjp = batch_norm_inference(x, gamma, beta, mean=mean.astype(np.float64), var=var, eps=eps)
    assert y.dtype == np.float32
    assert all(c.dtype == np.float32 for c in vjp(np.ones(x.shape, np.float32)))
    rm, rv = update_running(np.zeros(4, np.float32), np.ones(4, np.float32), mean, var, count=9)
    assert rm.dtype == rv.dtype == np.float32


def test_float32_statistics_accuracy_at_a_cnn_sized_batch():
    """float32 accumulation (no float64 upcast) keeps the mean and variance of a
    (128, 8, 28, 28) batch within 2e-6 relative of float64 (measured ~5e-7)."""
    x = (5 + 3 * np.random.default_rng(11).standard_normal((128, 8, 28, 28))).astype(np.float32)
    mean, var = batch_moments(x)
    x64 = x.astype(np.float64)
    np.testing.assert_allclose(mean, x64.mean(axis=(0, 2, 3)), rtol=2e-6)
    np.testing.assert_allclose(var, x64.var(axis=(0, 2, 3)), rtol=2e-6)


# --- errors -----------------------------------------------------------------------------------


@pytest.mark.parametrize("eps", [0, -1e-5, 0.0, float("nan"), float("inf"), "1e-5", True, None])
def test_bad_eps_is_a_value_error_naming_eps(eps):
    x, gamma, beta = inputs(0)
    with pytest.raises(ValueError, match=r"^batch_norm: eps must be a positive finite number"):
        batch_norm(x, gamma, beta, eps=eps)
    with pytest.raises(
        ValueError, match=r"^batch_norm_inference: eps must be a positive finite number"
    ):
        batch_norm_inference(x, gamma, beta, mean=np.zeros(C), var=np.ones(C), eps=eps)


@pytest.mark.parametrize(
    ("name", "value", "error", "message"),
    [
        ("mean", np.zeros(C + 1), nn.ShapeError, r"mean must have shape \(C,\) = \(4,\)"),
        ("var", np.ones((1, C)), nn.ShapeError, r"var must have shape \(C,\) = \(4,\)"),
        ("var", -np.ones(C), ValueError, "var must be nonnegative"),
        ("mean", np.full(C, np.nan), ValueError, "mean must be finite"),
        ("var", np.full(C, np.inf), ValueError, "var must be finite"),
        ("mean", np.zeros(C, complex), nn.DTypeError, "mean must be real numbers"),
    ],
)
def test_bad_statistics_are_named_errors(name, value, error, message):
    x, gamma, beta = inputs(0)
    static = {"mean": np.zeros(C), "var": np.ones(C), name: value}
    with pytest.raises(error, match=f"^batch_norm_inference: {message}"):
        batch_norm_inference(x, gamma, beta, **static)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"count": 1}, "count must be an integer >= 2"),
        ({"count": 0}, "count must be an integer >= 2"),
        ({"count": 4.0}, "count must be an integer >= 2"),
        ({"count": True}, "count must be an integer >= 2"),
        ({"count": 4, "momentum": -0.1}, r"momentum must be a number in \[0, 1\]"),
        ({"count": 4, "momentum": 1.5}, r"momentum must be a number in \[0, 1\]"),
        ({"count": 4, "momentum": float("nan")}, r"momentum must be a number in \[0, 1\]"),
        ({"count": 4, "momentum": None}, r"momentum must be a number in \[0, 1\]"),
    ],
)
def test_bad_running_average_arguments_are_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=f"^update_running: {message}"):
        update_running(np.zeros(2), np.ones(2), np.zeros(2), np.ones(2), **kwargs)


def test_running_averages_of_different_shapes_are_a_shape_error():
    with pytest.raises(nn.ShapeError, match=r"^update_running: all four arrays must share"):
        update_running(np.zeros(2), np.ones(3), np.zeros(2), np.ones(2), count=4)


@pytest.mark.parametrize(
    ("x", "error", "message"),
    [
        (np.zeros((2, 3, 4)), nn.ShapeError, r"x must be \(N, C, H, W\), received shape"),
        (
            np.zeros((0, 3, 2, 2)),
            nn.ShapeError,
            r"each channel needs at least one value \(N\*H\*W >= 1\)",
        ),
        (np.zeros((2, 3, 2, 2), int), nn.DTypeError, "x must have a floating dtype"),
    ],
)
def test_batch_moments_refuses_bad_input(x, error, message):
    with pytest.raises(error, match=f"^batch_moments: {message}"):
        batch_moments(x)


# --- invariants of spec/batch_norm_inference.md -----------------------------------------------


def statistics(seed: int, c: int = C) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed + 500)
    return {"mean": rng.standard_normal(c), "var": rng.uniform(0.1, 3, c)}


@pytest.mark.spec("batch_norm_inference", 1)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_inference_is_an_affine_map_per_channel(seed):
    """Invariant 1: y = a_c x + b_c with a_c = gamma / sqrt(var + eps) and
    b_c = beta - a_c mean, for every entry, against a loop over channels (P8); the vjp is
    dx = a_c g."""
    x, gamma, beta = inputs(seed)
    st = statistics(seed)

    def reference(x, gamma, beta, *, mean, var, eps=1e-5):
        y = np.empty(x.shape)
        for c in range(x.shape[1]):
            a = gamma[c] / math.sqrt(var[c] + eps)
            y[:, c] = a * x[:, c] + (beta[c] - a * mean[c])
        return y

    check_reference(batch_norm_inference, reference, x, gamma, beta, static=st, rtol=1e-12)
    _, vjp = batch_norm_inference(x, gamma, beta, **st)
    g = np.random.default_rng(seed).standard_normal(SHAPE)
    a = (gamma / np.sqrt(st["var"] + 1e-5))[:, None, None]
    np.testing.assert_allclose(vjp(g)[0], a * g, rtol=1e-15)


@pytest.mark.spec("batch_norm_inference", 3)
def test_inference_maps_each_example_on_its_own():
    """Invariant 3: no coupling across the batch: the output for example n alone equals row n
    of the batch's output, bit for bit, and a batch of one works (training mode would output
    beta there)."""
    x, gamma, beta = inputs(12)
    st = statistics(12)
    y, _ = batch_norm_inference(x, gamma, beta, **st)
    for n in range(SHAPE[0]):
        alone, _ = batch_norm_inference(x[n : n + 1], gamma, beta, **st)
        np.testing.assert_array_equal(alone[0], y[n])


def test_inference_gradient_protocol_includes_the_complex_step():
    """batch_norm_inference is holomorphic in x, gamma and beta (the statistics are
    constants), so the protocol runs the complex step too."""
    report = check_vjp(batch_norm_inference, *inputs(13), static=statistics(13))
    assert "complex-step" in {c.method for c in report.checks}
