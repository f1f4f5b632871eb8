"""Tests of `mean_squared_error` (spec/mean_squared_error.md): reference, invariants, gradients."""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy.spatial.distance import sqeuclidean

from conftest import same_bits
from nn import mean_squared_error
from nn.testing import check_reference, check_vjp

# Distinct sizes, so that a gradient with the two axes swapped cannot have the right shape.
N, K = 3, 4

# Bounded floats kept out of the subnormal range: no difference or square underflows, so the
# exact laws below are exact.
finite = st.one_of(st.just(0.0), st.floats(1e-3, 1e3), st.floats(-1e3, -1e-3))
batches = hnp.arrays(np.float64, (N, K), elements=finite)


def reference_mse(y_pred: np.ndarray, y: np.ndarray) -> np.ndarray:
    """Per loop slice: SciPy's squared Euclidean distance of each row pair, summed with fsum
    and divided by N*K."""
    loop = np.broadcast_shapes(y_pred.shape[:-2], y.shape[:-2])
    n, k = y_pred.shape[-2:]
    p, t = np.broadcast_to(y_pred, (*loop, n, k)), np.broadcast_to(y, (*loop, n, k))
    out = np.empty(loop)
    for idx in np.ndindex(*loop):
        out[idx] = math.fsum(sqeuclidean(p[idx][i], t[idx][i]) for i in range(n)) / (n * k)
    return out


@pytest.mark.parametrize(
    ("pred_shape", "target_shape"),
    [
        ((N, K), (N, K)),
        ((2, N, K), (N, K)),  # two predictions scored against one target
        ((N, K), (2, N, K)),
        ((3, 1, N, K), (2, N, K)),  # loop dimensions (3, 1) and (2,) broadcast to (3, 2)
        ((1, 1), (1, 1)),
    ],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference(pred_shape, target_shape, seed):
    """The forward value matches scipy.spatial.distance.sqeuclidean row by row (P8)."""
    rng = np.random.default_rng(seed)
    y_pred, y = rng.standard_normal(pred_shape), rng.standard_normal(target_shape)
    check_reference(mean_squared_error, reference_mse, y_pred, y)


@pytest.mark.spec("mean_squared_error", 1)
@given(batches, batches, st.integers(0, N * K - 1), finite.filter(lambda v: v != 0))
def test_zero_exactly_at_target(y_pred, y, i, delta):
    """L >= 0; L = 0 with zero cotangents at y_pred == y; one differing entry makes L > 0."""
    loss, _ = mean_squared_error(y_pred, y)
    assert loss >= 0

    loss, vjp = mean_squared_error(y, y.copy())
    assert loss == 0
    assert all(not c.any() for c in vjp(1.0))

    # |delta| >= 1e-3 is far above the spacing of floats up to 1e3, so off[i] != y[i].
    off = y.copy()
    off.flat[i] += delta
    loss, vjp = mean_squared_error(off, y)
    dy_pred, dy = vjp(1.0)
    assert loss > 0
    assert dy_pred.flat[i] != 0
    assert dy.flat[i] != 0
    assert np.count_nonzero(dy_pred) == 1  # the other entries still match their targets


@pytest.mark.spec("mean_squared_error", 2)
@given(batches, batches)
def test_symmetric_in_its_arguments(y_pred, y):
    """L(y_pred, y) == L(y, y_pred) bitwise."""
    forward, _ = mean_squared_error(y_pred, y)
    backward, _ = mean_squared_error(y, y_pred)
    assert same_bits(forward, backward)


@pytest.mark.spec("mean_squared_error", 3)
@given(batches, batches, finite)
def test_dy_is_minus_dy_pred(y_pred, y, g):
    """For inputs of the same shape, dy == -dy_pred exactly, for any cotangent g."""
    _, vjp = mean_squared_error(y_pred, y)
    dy_pred, dy = vjp(g)
    np.testing.assert_array_equal(dy, -dy_pred)


@pytest.mark.spec("mean_squared_error", 4)
@given(batches, batches, st.integers(-20, 20), st.sampled_from([1.0, -1.0]))
def test_scaling_is_quadratic(y_pred, y, power, sign):
    """L(a y_pred, a y) == a**2 L(y_pred, y) bitwise for a = +-2**power.

    Multiplying by a power of two only changes exponents, so every step of the computation
    (difference, square, pairwise sum, division) is scaled exactly."""
    a = sign * 2.0**power
    loss, _ = mean_squared_error(y_pred, y)
    scaled, _ = mean_squared_error(a * y_pred, a * y)
    assert scaled == a**2 * loss


@pytest.mark.spec("mean_squared_error", 5)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_quadratic_cost_is_k_over_2_times_mse(seed):
    """C = 1/(2N) sum_n ||a_n - y_n||^2 equals K/2 L, and dC/da = (a - y)/N equals K/2 dy_pred."""
    rng = np.random.default_rng(seed)
    a, y = rng.standard_normal((N, K)), rng.standard_normal((N, K))
    cost = sum(np.linalg.norm(a[n] - y[n]) ** 2 for n in range(N)) / (2 * N)
    loss, vjp = mean_squared_error(a, y)
    np.testing.assert_allclose(K / 2 * loss, cost, rtol=1e-13)
    dy_pred, _ = vjp(1.0)
    np.testing.assert_allclose(K / 2 * dy_pred, (a - y) / N, rtol=1e-14)


@pytest.mark.parametrize(
    ("pred_shape", "target_shape"),
    [
        ((2, N, K), (N, K)),  # dy sums over the two predictions
        ((N, K), (2, N, K)),  # dy_pred sums over the two targets
        ((3, 1, N, K), (2, N, K)),  # y_pred repeated along a size-1 axis, y along a new one
    ],
)
def test_vjp_with_broadcast_loop_dimensions(pred_shape, target_shape):
    """Finite differences, complex step and the full Jacobian agree with the vjp when a
    cotangent must be summed over broadcast loop dimensions (unbroadcast)."""
    rng = np.random.default_rng(3)
    check_vjp(
        mean_squared_error, rng.standard_normal(pred_shape), rng.standard_normal(target_shape)
    )
