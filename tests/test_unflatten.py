"""unflatten (spec/unflatten.md): C order against explicit loops, a permutation with an exact
adjoint, locality of heads, the round trip, the static shape's sampler and named errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import nn
from nn import unflatten
from nn.op import REGISTRY
from nn.testing import check_reference, check_vjp

# 4 heads of 3: distinct sizes, so a transposed reading cannot give the right layout.
N, A, B = 2, 4, 3


def loop_unflatten(x: np.ndarray, *, shape: tuple[int, int]) -> np.ndarray:
    """The reference: y[n, i, k] = x[n, i*B + k], one entry at a time."""
    a, b = shape
    y = np.empty((x.shape[0], a, b), dtype=x.dtype)
    for n, i, k in np.ndindex(x.shape[0], a, b):
        y[n, i, k] = x[n, i * b + k]
    return y


@pytest.mark.spec("unflatten", 1)
@pytest.mark.parametrize("shape", [(A, B), (B, A), (1, 12), (12, 1), (6, 2)])
def test_order_matches_explicit_loops(shape):
    """Invariant 1 (P8): y[n, i, k] = x[n, i*B + k]; head i is the slice iB:(i+1)B."""
    x = np.random.default_rng(0).standard_normal((N, 12))
    check_reference(unflatten, loop_unflatten, x, static={"shape": shape}, rtol=0, atol=0)
    y, _ = unflatten(x, shape=shape)
    b = shape[1]
    for i in range(shape[0]):
        np.testing.assert_array_equal(y[:, i], x[:, i * b : (i + 1) * b])


@pytest.mark.spec("unflatten", 2)
@pytest.mark.parametrize("seed", [0, 1])
def test_permutation_and_exact_adjoint(seed):
    """Invariant 2: the same entries, and <unflatten(x), g> == <x, vjp(g)> exactly (C order
    on both sides: the same products in the same order)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((N, A * B))
    y, vjp = unflatten(x, shape=(A, B))
    np.testing.assert_array_equal(np.sort(y, axis=None), np.sort(x, axis=None))
    assert np.sum(y) == np.sum(x)
    g = rng.standard_normal(y.shape)
    (dx,) = vjp(g)
    assert np.sum(y * g) == np.sum(x * dx)
    for n, j in np.ndindex(N, A * B):  # the page's Gradient, entry by entry
        assert dx[n, j] == g[n, j // B, j % B]


@pytest.mark.spec("unflatten", 3)
@pytest.mark.parametrize("head", range(A))
def test_head_i_sees_only_its_own_features(head):
    """Invariant 3: features iB..(i+1)B-1 feed head i and no other; head i's cotangent
    reaches only those features."""
    rng = np.random.default_rng(head)
    x = rng.standard_normal((N, A * B))
    y, vjp = unflatten(x, shape=(A, B))
    own = slice(head * B, (head + 1) * B)
    moved = x.copy()
    moved[:, own] += 1 + rng.random((N, B))
    y2, _ = unflatten(moved, shape=(A, B))
    assert np.any(y2 != y, axis=(0, 2)).tolist() == [i == head for i in range(A)]
    g = np.zeros(y.shape)
    g[:, head] = rng.standard_normal((N, B))
    (dx,) = vjp(g)
    assert np.all(dx[:, own] != 0)
    assert not np.delete(dx, np.arange(A * B)[own], axis=1).any()


@pytest.mark.spec("unflatten", 4)
@pytest.mark.parametrize("dtype", [np.float32, np.float64, np.complex128])
def test_round_trip_and_views(dtype):
    """Invariant 4: vjp(unflatten(x)) = x, unflatten(vjp(g)) = g; views of the same dtype."""
    rng = np.random.default_rng(4)
    x = rng.standard_normal((N, A * B)).astype(dtype)
    y, vjp = unflatten(x, shape=(A, B))
    assert y.dtype == dtype and np.shares_memory(y, x)
    np.testing.assert_array_equal(vjp(y)[0], x)
    g = rng.standard_normal(y.shape).astype(dtype)
    (dx,) = vjp(g)
    assert dx.dtype == dtype and np.shares_memory(dx, g)
    np.testing.assert_array_equal(unflatten(dx, shape=(A, B))[0], g)


@pytest.mark.spec("unflatten", 5)
def test_a_shape_that_does_not_fit_is_named():
    """Invariant 5: A*B != D names the op, D and the shape; a malformed shape is a TypeError."""
    x = np.zeros((N, 70))
    with pytest.raises(
        nn.ShapeError, match=r"^unflatten: shape \(7, 9\) holds 7\*9 = 63 entries, .*D = 70"
    ):
        unflatten(x, shape=(7, 9))
    for bad in [(70,), (7, 10, 1), "7x10", (7.0, 10), (True, 70), None]:
        with pytest.raises(TypeError, match=r"^unflatten: shape must be a pair of integers"):
            unflatten(x, shape=bad)
    # Sizes below 1 are refused by the contract, with the static argument in the message.
    with pytest.raises(nn.ShapeError, match=r"^unflatten: output dimension 'a' would be -7"):
        unflatten(x, shape=(-7, -10))
    with pytest.raises(nn.ShapeError, match=r"^unflatten: output dimension 'a' would be 0"):
        unflatten(np.zeros((N, 0)), shape=(0, 5))


def test_seven_heads_of_ten_as_the_baseline_uses_them():
    """The 7-digit baseline: 70 dense outputs -> 7 heads of 10 scores, each a softmax row."""
    x = np.arange(140.0).reshape(2, 70)
    y, _ = unflatten(x, shape=(7, 10))
    assert y.shape == (2, 7, 10)
    assert y[1, 6].tolist() == list(np.arange(130.0, 140.0))


def test_the_static_sampler_gives_valid_nontrivial_shapes():
    """The contract tests draw `shape` from the op's sampler: always A*B = D, and not the
    trivial (1, D) or (D, 1) when D has other factors (a transposed vjp hides there)."""
    static = REGISTRY["unflatten"].static
    assert static is not None
    rng = np.random.default_rng(0)
    for d in range(1, 25):
        for _ in range(5):
            a, b = static(rng, np.zeros((2, d)))["shape"]
            assert a * b == d
            others = [f for f in range(2, d) if d % f == 0]
            assert (1 < a < d) or not others
    seen = {static(rng, np.zeros((2, 12)))["shape"] for _ in range(50)}
    assert seen == {(2, 6), (3, 4), (4, 3), (6, 2)}


def test_gradient_protocol_at_other_shapes():
    rng = np.random.default_rng(5)
    for n, shape in [(1, (2, 3)), (3, (1, 4)), (2, (5, 1)), (1, (7, 10))]:
        x = rng.standard_normal((n, shape[0] * shape[1]))
        report = check_vjp(unflatten, x, static={"shape": shape})
        assert "complex-step" in {c.method for c in report.checks}


@given(
    n=st.integers(0, 3),
    shape=st.tuples(st.integers(1, 5), st.integers(1, 5)),
    data=st.data(),
)
def test_shape_law_and_values(n, shape, data):
    """P10: any (N, A*B) gives (N, A, B) with the same entries in C order."""
    x = data.draw(
        arrays(
            np.float64, (n, shape[0] * shape[1]), elements=st.floats(-5, 5, allow_subnormal=False)
        )
    )
    y, vjp = unflatten(x, shape=shape)
    assert y.shape == (n, *shape)
    np.testing.assert_array_equal(y.ravel(), x.ravel())
    assert vjp(np.ones(y.shape))[0].shape == x.shape


def test_empty_batch():
    y, vjp = unflatten(np.zeros((0, 6)), shape=(2, 3))
    assert y.shape == (0, 2, 3)
    assert vjp(np.zeros((0, 2, 3)))[0].shape == (0, 6)


@pytest.mark.parametrize("shape", [(6,), (2, 3, 6), ()])
def test_wrong_rank_is_a_named_shape_error(shape):
    with pytest.raises(nn.ShapeError, match=r"^unflatten: .*signature \(n,d\)->\(n,a,b\)"):
        unflatten(np.zeros(shape), shape=(2, 3))
