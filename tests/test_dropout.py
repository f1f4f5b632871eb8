"""dropout (spec/dropout.md): the unbiased expectation, the mask's keep fraction, the fixed-mask
forward and vjp, dtype, and the errors for bad static arguments.

The statistical tests use z-tests with a stated false-alarm probability: a correct op fails
them with probability at most ALPHA (for a random seed; the seeds here are fixed, so the
outcome is deterministic), while the bugs they target move the statistic by tens of standard
deviations.
"""

from __future__ import annotations

import numpy as np
import pytest
from scipy import stats

import nn
from nn import dropout, dropout_mask
from nn.testing import check_float32, check_reference, check_vjp

ALPHA = 1e-6  # false-alarm probability of each statistical test as a whole


def z_threshold(alpha: float, tests: int) -> float:
    """Two-sided z threshold for `tests` simultaneous z-tests at total level `alpha`
    (Bonferroni: each test at alpha / tests)."""
    return float(stats.norm.isf(alpha / (2 * tests)))


@pytest.mark.spec("dropout", 1)
@pytest.mark.parametrize("rate", [0.1, 0.3, 0.5, 0.8])
def test_expectation_equals_input(rate):
    """Invariant 1 (P6): over many masks E[y] = x, entry by entry.

    For T independent masks, ybar_i = x_i K_i / (T (1 - p)) with K_i ~ Binomial(T, 1 - p), so
    E[ybar_i] = x_i and sd(ybar_i) = |x_i| sqrt(p / ((1 - p) T)). Each of the k entries gets a
    z-test; Bonferroni keeps the total false alarm at ALPHA (normal approximation, accurate
    for T (1-p) p >= 900). Without the 1/(1-p) scale, ybar = (1-p) x and |z| = sqrt(p(1-p)T)
    >= 42 here.
    """
    rng = np.random.default_rng(11)
    x = rng.choice([-1.0, 1.0], 12) * rng.uniform(0.5, 2.0, 12)  # away from 0: sd > 0
    t = 20_000
    xs = np.broadcast_to(x, (t, x.size))  # T copies of x, each with its own mask
    y, _ = dropout(xs, rate=rate, mask=dropout_mask(rng, xs.shape, rate))
    z = (y.mean(axis=0) - x) / (np.abs(x) * np.sqrt(rate / ((1 - rate) * t)))
    assert np.abs(z).max() < z_threshold(ALPHA, x.size), z


@pytest.mark.spec("dropout", 2)
@pytest.mark.parametrize("rate", [0.0, 0.1, 0.5, 0.9])
def test_mask_keep_fraction(rate):
    """Invariant 2: dropout_mask keeps each entry with probability 1 - rate.

    The kept count of n entries is Binomial(n, 1 - p): z = (kept/n - (1 - p)) /
    sqrt(p (1 - p) / n), two-sided at ALPHA. Also per row of a 2-D mask (every row is a fair
    sample, not only the whole), Bonferroni over the rows.
    """
    rng = np.random.default_rng(12)
    n = 200_000
    mask = dropout_mask(rng, (n,), rate)
    assert mask.dtype == np.bool_
    assert mask.shape == (n,)
    if rate == 0.0:
        assert mask.all()  # P(keep) = 1: nothing is ever dropped
        return
    sd = np.sqrt(rate * (1 - rate) / n)
    assert abs(mask.mean() - (1 - rate)) / sd < z_threshold(ALPHA, 1)
    rows = dropout_mask(rng, (20, 10_000), rate)
    z = (rows.mean(axis=1) - (1 - rate)) / np.sqrt(rate * (1 - rate) / rows.shape[1])
    assert np.abs(z).max() < z_threshold(ALPHA, rows.shape[0])


def test_mask_is_reproducible_from_the_generator_state():
    """The same seed gives the same mask; the next draw from one generator differs."""
    a = dropout_mask(np.random.default_rng(5), (4, 6), 0.5)
    b = dropout_mask(np.random.default_rng(5), (4, 6), 0.5)
    np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(5)
    first, second = dropout_mask(rng, (4, 6), 0.5), dropout_mask(rng, (4, 6), 0.5)
    assert not np.array_equal(first, second)


def loop_dropout(x, *, rate, mask):
    """The reference: x / (1 - p) where kept, 0 where dropped, one Python float at a time."""
    y = np.empty(x.shape, dtype=x.dtype)
    for i in np.ndindex(x.shape):
        y[i] = x[i] / (1.0 - rate) if mask[i] else 0.0
    return y


@pytest.mark.spec("dropout", 3)
@pytest.mark.parametrize("rate", [0.0, 0.25, 0.5, 0.9])
@pytest.mark.parametrize("shape", [(), (7,), (2, 3, 4), (2, 3, 2, 2)])
def test_kept_entries_scaled_dropped_entries_zero(rate, shape):
    """Invariant 3 (P8): y = x / (1 - p) where the mask keeps, exactly 0 where it drops;
    a 0/1 integer or float mask gives the same output as the boolean one."""
    rng = np.random.default_rng(13)
    x = rng.standard_normal(shape)
    mask = dropout_mask(rng, shape, rate)
    # x * (1/(1-p)) against x / (1-p): they differ in the last bit at most.
    check_reference(
        dropout, loop_dropout, x, static={"rate": rate, "mask": mask}, rtol=5e-16, atol=0
    )
    y, _ = dropout(x, rate=rate, mask=mask)
    assert np.all(y[~mask] == 0)
    for numeric in (mask.astype(np.int8), mask.astype(np.float32), mask.astype(np.uint64)):
        np.testing.assert_array_equal(dropout(x, rate=rate, mask=numeric)[0], y)


@pytest.mark.spec("dropout", 4)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_vjp_applies_the_same_mask_and_scale(seed):
    """Invariant 4: the map is linear and diagonal, so dx = dropout(g) with the same mask and
    rate, bit for bit; and <y, g> = <x, dx>."""
    rng = np.random.default_rng(seed)
    x, g = rng.standard_normal((2, 3, 5)), rng.standard_normal((2, 3, 5))
    mask = dropout_mask(rng, x.shape, 0.4)
    y, vjp = dropout(x, rate=0.4, mask=mask)
    (dx,) = vjp(g)
    np.testing.assert_array_equal(dx, dropout(g, rate=0.4, mask=mask)[0])
    assert abs(np.sum(y * g) - np.sum(x * dx)) <= 1e-14 * np.sum(np.abs(y * g))


@pytest.mark.spec("dropout", 5)
def test_rate_zero_is_the_identity():
    """Invariant 5: rate 0 with the all-keep mask (what dropout_mask draws) is the identity,
    bit for bit, forward and backward: what evaluation mode computes."""
    rng = np.random.default_rng(14)
    x = rng.standard_normal((3, 4, 2, 2))
    mask = dropout_mask(rng, x.shape, 0.0)
    y, vjp = dropout(x, rate=0.0, mask=mask)
    np.testing.assert_array_equal(y, x)
    g = rng.standard_normal(x.shape)
    np.testing.assert_array_equal(vjp(g)[0], g)


@pytest.mark.spec("dropout", 6)
@pytest.mark.parametrize("rate", [0.3, np.float64(0.3), np.float32(0.3)])
def test_float32_stays_float32(rate):
    """Invariant 6: float32 in, float32 out and float32 cotangent, even for a NumPy float64
    rate (a float64 scale would upcast the product under NumPy 2's promotion rules)."""
    rng = np.random.default_rng(15)
    x = rng.standard_normal((4, 5)).astype(np.float32)
    mask = dropout_mask(rng, x.shape, 0.3)
    y, vjp = dropout(x, rate=rate, mask=mask)
    assert y.dtype == np.float32
    assert vjp(np.ones(x.shape, np.float32))[0].dtype == np.float32
    check_float32(dropout, x.astype(np.float64), static={"rate": rate, "mask": mask})


def test_nan_in_a_dropped_entry_is_not_hidden():
    """A product, as in PyTorch: NaN * 0 is NaN and inf * 0 is NaN (an invalid operation,
    which the test settings turn into an error), so a diverging activation stays visible."""
    y, _ = dropout(np.array([np.nan, 1.0, np.inf]), rate=0.5, mask=np.array([0, 1, 1]))
    assert np.isnan(y[0]) and y[1] == 2.0 and y[2] == np.inf
    with pytest.raises(FloatingPointError, match="invalid value"):
        dropout(np.array([np.inf, 1.0]), rate=0.5, mask=np.array([False, True]))
    with np.errstate(invalid="ignore"):
        y, _ = dropout(np.array([np.inf, 1.0]), rate=0.5, mask=np.array([False, True]))
    assert np.isnan(y[0])


def test_gradient_protocol_with_a_fixed_mask():
    """P6: with the mask fixed the op is a deterministic linear map; P1-P4 at several rates."""
    rng = np.random.default_rng(16)
    for rate in (0.0, 0.5, 0.9):
        x = rng.standard_normal((3, 4))
        check_vjp(dropout, x, static={"rate": rate, "mask": dropout_mask(rng, x.shape, rate)})


@pytest.mark.parametrize("rate", [1.0, -0.1, 1.5, float("nan"), float("inf"), "0.5", True, None])
def test_bad_rate_is_a_value_error_naming_rate(rate):
    x = np.ones(3)
    with pytest.raises(ValueError, match=r"^dropout: rate must be .*\[0, 1\).*received"):
        dropout(x, rate=rate, mask=np.ones(3, bool))
    with pytest.raises(ValueError, match=r"^dropout_mask: rate must be .*\[0, 1\).*received"):
        dropout_mask(np.random.default_rng(0), (3,), rate)


@pytest.mark.parametrize("shape", [(3,), (2, 1), (1, 3), ()])
def test_mask_of_another_shape_is_a_shape_error(shape):
    """No broadcasting of the mask: a mask of another shape is a mistake, named."""
    with pytest.raises(nn.ShapeError, match=r"^dropout: mask must have the shape of x \(2, 3\)"):
        dropout(np.ones((2, 3)), rate=0.5, mask=np.ones(shape, bool))


@pytest.mark.parametrize(
    ("mask", "message"),
    [
        (np.array([0, 2, 1]), "mask entries must be 0 or 1, received 2"),
        (np.array([0.0, 0.5, 1.0]), "mask entries must be 0 or 1, received 0.5"),
        (np.array([1.0, np.nan, 1.0]), "mask entries must be 0 or 1, received nan"),
        (np.array([1j, 0, 1]), "mask must be boolean or 0/1 numbers, received dtype complex128"),
        (np.array(["1", "0", "1"]), "mask must be boolean or 0/1 numbers, received dtype <U1"),
    ],
)
def test_mask_values_other_than_0_and_1_are_refused(mask, message):
    with pytest.raises(ValueError, match=f"^dropout: {message}"):
        dropout(np.ones(3), rate=0.5, mask=mask)


def test_mask_needs_a_generator():
    with pytest.raises(
        TypeError, match=r"^dropout_mask: rng must be a np.random.Generator .*received int"
    ):
        dropout_mask(0, (3,), 0.5)
    with pytest.raises(TypeError, match="received RandomState"):
        dropout_mask(np.random.RandomState(0), (3,), 0.5)
