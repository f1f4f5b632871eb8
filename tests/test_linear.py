"""Tests of `linear` (spec/linear.md): forward reference, invariants, broadcast gradients."""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nn import linear
from nn.testing import check_reference, check_vjp

# Distinct sizes, so that a gradient with two axes swapped cannot have the right shape.
N, D, M = 3, 4, 5

# Bounded floats kept out of the subnormal range: the laws below hold to rounding only while
# no product underflows.
finite = st.one_of(st.just(0.0), st.floats(1e-3, 1e3), st.floats(-1e3, -1e-3))


def matrices(*shape: int) -> st.SearchStrategy[np.ndarray]:
    """float64 arrays of `shape` with entries drawn from `finite`."""
    return hnp.arrays(np.float64, shape, elements=finite)


def loop_index(out_index: tuple[int, ...], loop_shape: tuple[int, ...]) -> tuple[int, ...]:
    """The slice of an input (with loop dimensions `loop_shape`) that broadcasting copies to
    the output slice `out_index`: dimensions are aligned on the right, size-1 ones repeat."""
    out_index = out_index[len(out_index) - len(loop_shape) :]
    return tuple(0 if size == 1 else i for i, size in zip(out_index, loop_shape, strict=True))


def reference_linear(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """y[..., n, m] = fsum_d x[..., n, d] w[..., d, m] + b[..., m], by explicit loops."""
    loop = np.broadcast_shapes(x.shape[:-2], w.shape[:-2], b.shape[:-1])
    n, d, m = x.shape[-2], x.shape[-1], w.shape[-1]
    y = np.empty((*loop, n, m))
    for out in np.ndindex(*loop):
        xs, ws = x[loop_index(out, x.shape[:-2])], w[loop_index(out, w.shape[:-2])]
        bs = b[loop_index(out, b.shape[:-1])]
        for i in range(n):
            for j in range(m):
                y[(*out, i, j)] = math.fsum([xs[i, k] * ws[k, j] for k in range(d)] + [bs[j]])
    return y


# (x, W, b) shapes with loop dimensions; shared by the tests of broadcasting below.
BROADCAST_SHAPES = [
    ((2, N, D), (D, M), (M,)),  # one W and b for every slice of x
    ((N, D), (2, D, M), (M,)),  # one x for a stack of weights
    ((3, 1, N, D), (2, D, M), (M,)),  # loop dimensions (3, 1) and (2,) broadcast to (3, 2)
    ((2, N, D), (D, M), (2, M)),  # a bias per slice, added to every row of its slice
    ((N, D), (D, M), (2, 1, M)),  # the bias alone sets the loop dimensions
]


@pytest.mark.parametrize(
    ("x_shape", "w_shape", "b_shape"),
    [((N, D), (D, M), (M,)), ((1, D), (D, 1), (1,)), *BROADCAST_SHAPES],
)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_reference(x_shape, w_shape, b_shape, seed):
    """The forward value matches explicit loops with correctly rounded sums (P8)."""
    rng = np.random.default_rng(seed)
    x, w, b = (rng.standard_normal(s) for s in (x_shape, w_shape, b_shape))
    check_reference(linear, reference_linear, x, w, b)


@pytest.mark.spec("linear", 1)
@given(matrices(N, D), matrices(N, D), matrices(D, M), finite, finite)
def test_linear_in_x(x1, x2, w, a, c):
    """linear(a x1 + c x2, W, 0) = a linear(x1, W, 0) + c linear(x2, W, 0), to rounding."""
    zero = np.zeros(M)
    left, _ = linear(a * x1 + c * x2, w, zero)
    y1, _ = linear(x1, w, zero)
    y2, _ = linear(x2, w, zero)
    right = a * y1 + c * y2
    # Each side rounds about D + 2 times, each time by at most eps times (|a x1| + |c x2|) |W|.
    scale = (np.abs(a * x1) + np.abs(c * x2)) @ np.abs(w)
    assert np.all(np.abs(left - right) <= 4 * (D + 2) * np.finfo(float).eps * scale)


@pytest.mark.spec("linear", 2)
@given(matrices(N, D), matrices(D, M), matrices(D, M), finite, finite)
def test_linear_in_w(x, w1, w2, a, c):
    """linear(x, a W1 + c W2, 0) = a linear(x, W1, 0) + c linear(x, W2, 0), to rounding."""
    zero = np.zeros(M)
    left, _ = linear(x, a * w1 + c * w2, zero)
    y1, _ = linear(x, w1, zero)
    y2, _ = linear(x, w2, zero)
    right = a * y1 + c * y2
    scale = np.abs(x) @ (np.abs(a * w1) + np.abs(c * w2))  # as above, with the roles swapped
    assert np.all(np.abs(left - right) <= 4 * (D + 2) * np.finfo(float).eps * scale)


@pytest.mark.spec("linear", 3)
@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_adjointness(seed):
    """<linear(x, W, 0), g> = <x, dx> = <W, dW>: the vjp is the adjoint of the forward map."""
    rng = np.random.default_rng(seed)
    x, w, g = rng.standard_normal((N, D)), rng.standard_normal((D, M)), rng.standard_normal((N, M))
    y, vjp = linear(x, w, np.zeros(M))
    dx, dw, _ = vjp(g)
    # All three are the same triple sum sum_{n,d,m} x_nd W_dm g_nm, rounded differently.
    tol = 1e-13 * float(np.sum((np.abs(x) @ np.abs(w)) * np.abs(g)))
    assert abs(np.sum(y * g) - np.sum(x * dx)) <= tol
    assert abs(np.sum(y * g) - np.sum(w * dw)) <= tol


@pytest.mark.spec("linear", 4)
@pytest.mark.parametrize(
    ("x_shape", "b_shape"),
    [((N, D), (M,)), ((2, N, D), (M,)), ((2, 3, N, D), (M,)), ((2, N, D), (2, M))],
)
def test_db_is_g_summed_over_batch(x_shape, b_shape):
    """db is g summed over the rows and over the loop dimensions b was broadcast along (all of
    them for a bias of shape (M,)), and does not depend on x or W."""
    rng = np.random.default_rng(0)
    g = rng.standard_normal((*x_shape[:-1], M))
    # Entry (..., m) of b collects column m of g over the rows and the loop dimensions b
    # lacks: for b of shape (M,) every axis but the last, for b of shape (2, M) the rows only.
    expected = np.empty(b_shape)
    for *b_loop, m in np.ndindex(*b_shape):
        expected[(*b_loop, m)] = math.fsum(g[(..., *b_loop, slice(None), m)].ravel())
    if len(b_shape) > 1:
        np.testing.assert_allclose(expected, g.sum(axis=-2), rtol=1e-13, atol=1e-13)
    for _ in range(2):  # two unrelated (x, W): db must not change
        x, w, b = (
            rng.standard_normal(x_shape),
            rng.standard_normal((D, M)),
            rng.standard_normal(b_shape),
        )
        _, vjp = linear(x, w, b)
        _, _, db = vjp(g)
        assert db.shape == b.shape
        np.testing.assert_allclose(db, expected, rtol=1e-13, atol=1e-13 * np.abs(g).sum())


@pytest.mark.spec("linear", 5)
@pytest.mark.parametrize(("x_shape", "w_shape", "b_shape"), BROADCAST_SHAPES)
def test_broadcast_matches_loop_over_slices(x_shape, w_shape, b_shape):
    """A broadcast batch equals a loop of unbatched calls; a broadcast input's cotangent is
    the sum of the cotangents of all its copies."""
    rng = np.random.default_rng(7)
    x, w, b = (rng.standard_normal(s) for s in (x_shape, w_shape, b_shape))
    y, vjp = linear(x, w, b)
    g = rng.standard_normal(y.shape)
    dx, dw, db = vjp(g)

    expected = [np.zeros_like(x), np.zeros_like(w), np.zeros_like(b)]
    for out in np.ndindex(*y.shape[:-2]):
        where = [loop_index(out, a.shape[:-2]) for a in (x, w)] + [loop_index(out, b.shape[:-1])]
        y_slice, vjp_slice = linear(*(a[i] for a, i in zip((x, w, b), where, strict=True)))
        np.testing.assert_allclose(y[out], y_slice, rtol=1e-13, atol=1e-13)
        for total, i, c in zip(expected, where, vjp_slice(g[out]), strict=True):
            total[i] += c  # every copy of an input slice adds its cotangent

    for got, want in zip((dx, dw, db), expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize(("x_shape", "w_shape", "b_shape"), BROADCAST_SHAPES)
def test_vjp_with_broadcast_loop_dimensions(x_shape, w_shape, b_shape):
    """Finite differences, complex step and the full Jacobian agree with the vjp when a
    cotangent must be summed over broadcast loop dimensions (unbroadcast)."""
    rng = np.random.default_rng(3)
    check_vjp(linear, *(rng.standard_normal(s) for s in (x_shape, w_shape, b_shape)))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_without_input_grad_dw_and_db_are_the_same_and_dx_is_skipped(dtype):
    """A network's first layer asks for no dx (its input is data): the vjp then returns None
    for dx and bitwise the same dw and db."""
    rng = np.random.default_rng(0)
    x, w, b = (rng.standard_normal(s).astype(dtype) for s in [(5, 4), (4, 3), (3,)])
    y, vjp = linear(x, w, b)
    g = rng.standard_normal(y.shape).astype(dtype)
    dx, dw, db = vjp(g)
    none, dw2, db2 = vjp(g, input_grad=False)
    assert none is None and dx is not None
    assert dw.tobytes() == dw2.tobytes() and db.tobytes() == db2.tobytes()
