"""Gradient clipping: the invariants of spec/clip_by_global_norm.md.

References are independent of nn.clip: math.fsum and math.hypot over every entry as a Python
float, scipy.linalg.norm (BLAS nrm2, which scales against overflow), and TensorFlow's
formula t * c / max(n, c) evaluated in float64.
"""

from __future__ import annotations

import copy
import math
import re

import numpy as np
import pytest
import scipy.linalg
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import array_shapes, arrays

from nn.clip import clip_by_global_norm, global_norm
from nn.errors import DataError, DivergenceError, DTypeError
from nn.optim import SGD

NAMES = ["dense0.w", "dense0.b", "conv.w", "scale"]
# Entries exactly representable in float32, so one draw serves both dtypes.
ENTRY = st.floats(-10, 10, width=32)
U64 = 2.0**-53


@st.composite
def gradients(draw, exponents=None):
    """A dict of 1 to 4 float32/float64 arrays (0 to 3 axes, sides 0 to 4), each scaled by 2^e.

    ``exponents`` maps a dtype to the range of e drawn per array; by default one e in
    [-20, 20] for the whole dict, so gradients of very different sizes are drawn.
    """
    names = draw(st.lists(st.sampled_from(NAMES), min_size=1, max_size=4, unique=True))
    common = draw(st.integers(-20, 20))
    grads = {}
    for name in names:
        dtype = np.dtype(draw(st.sampled_from([np.float32, np.float64])))
        shape = draw(array_shapes(min_dims=0, max_dims=3, min_side=0, max_side=4))
        e = common if exponents is None else draw(st.integers(*exponents[dtype.type]))
        values = draw(arrays(dtype, shape, elements=ENTRY))
        grads[name] = np.asarray(np.ldexp(values, e), dtype=dtype)  # exact unless it underflows
    return grads


FACTOR = st.floats(1e-3, 1e3)  # max_norm as a multiple of the gradient's norm


def entries(grads):
    """Every entry of every array, as Python floats (exact)."""
    return [x for g in grads.values() for x in g.ravel().tolist()]


def exact_norm(grads):
    """The norm by math.hypot over all entries: correctly rounded, no overflow."""
    return math.hypot(*entries(grads))


def bound(grads):
    """A bound on the relative rounding error of global_norm: gamma_k per array in its dtype
    (BLAS dot of k non-negative squares), plus float64 terms for the sum and the scaled path."""
    unit = sum((g.size + 2) * np.finfo(g.dtype).eps / 2 for g in grads.values())
    return float(unit) + (sum(g.size for g in grads.values()) + 8) * U64


def assert_scaled(clipped, grads, scale, rtol):
    """Each clipped array is ``scale * grads`` (float64) within ``rtol`` plus the dtype's
    roundings, and the smallest subnormal for entries that underflow."""
    for key, g in grads.items():
        finfo = np.finfo(g.dtype)
        expected = scale * g.astype(np.float64)
        np.testing.assert_allclose(
            clipped[key].astype(np.float64),
            expected,
            rtol=rtol + 2 * float(finfo.eps),
            atol=float(finfo.smallest_subnormal),
            err_msg=key,
        )


def max_norm_for(grads, factor):
    n = exact_norm(grads)
    return n * factor if n > 0 else factor


# --- the definition -------------------------------------------------------------------------


@pytest.mark.spec("clip_by_global_norm", 1)
@given(grads=gradients(), factor=FACTOR)
def test_clipped_norm_is_the_smaller_of_n_and_max_norm(grads, factor):
    """Invariant 1: after clipping the norm is min(n, c), to rounding; never c (1 - 1e-6).

    Catches a missing sqrt, a scale applied to the wrong side of c, per-array clipping and
    PyTorch's n + 1e-6 (in float64).
    """
    c = max_norm_for(grads, factor)
    n = exact_norm(grads)
    clipped, _ = clip_by_global_norm(grads, c)
    target = min(n, c)
    tol = 1.01 * bound(grads) + 4 * float(max(np.finfo(g.dtype).eps for g in grads.values()))
    # a scaled entry that lands among the subnormals is only as exact as their spacing
    size = sum(g.size for g in grads.values())
    floor = math.sqrt(size) * max(
        float(np.finfo(g.dtype).smallest_subnormal) for g in grads.values()
    )
    assert abs(exact_norm(clipped) - target) <= tol * target + floor


@pytest.mark.spec("clip_by_global_norm", 2)
@given(grads=gradients(), factor=st.one_of(st.just(1.0), st.floats(1.0, 1e3)))
def test_at_most_max_norm_returns_the_same_arrays(grads, factor):
    """Invariant 2: n <= c (c = n exactly included) returns the same objects, bitwise.

    Catches scaling by c / n when n < c (scaling small gradients up) and a strict n < c.
    """
    n = global_norm(grads)
    c = n * factor if n > 0 else factor
    before = copy.deepcopy(grads)
    clipped, returned = clip_by_global_norm(grads, c)
    assert returned == n and clipped is not grads and list(clipped) == list(grads)
    for key, g in grads.items():
        assert clipped[key] is g
        assert g.tobytes() == before[key].tobytes()


@pytest.mark.spec("clip_by_global_norm", 3)
@given(grads=gradients(), factor=st.floats(1e-3, 0.99))
def test_every_array_is_scaled_by_the_same_factor(grads, factor):
    """Invariant 3: one scale s = c / n for all arrays; the direction is kept (cosine 1).

    Catches per-array clipping (each array by its own norm) and per-value clipping.
    """
    c = max_norm_for(grads, factor)
    clipped, n = clip_by_global_norm(grads, c)
    if not n > c:  # a zero or empty gradient: nothing to scale
        assert n == 0.0
        return
    assert_scaled(clipped, grads, c / n, rtol=0.0)
    # The cosine, where every clipped entry is 0 or normal: a subnormal result keeps only a
    # few bits (assert_scaled bounds it by the subnormal spacing instead).
    if all(np.all((g == 0) | (np.abs(g) >= np.finfo(g.dtype).tiny)) for g in clipped.values()):
        a, b = np.array(entries(grads)), np.array(entries(clipped))
        if np.any(b):
            a, b = a / np.abs(a).max(), b / np.abs(b).max()  # no underflow in the products
            cosine = float(a @ b) / (np.linalg.norm(a) * np.linalg.norm(b))
            assert cosine == pytest.approx(1, abs=1e-6)


@pytest.mark.spec("clip_by_global_norm", 4)
@given(grads=gradients(), factor=FACTOR)
def test_matches_a_float64_reference_and_tensorflows_formula(grads, factor):
    """Invariant 4: n = sqrt(fsum g^2) over all entries; clipped = t * c / max(n, c).

    Catches a missing sqrt, a norm of one array only, and a wrong scale.
    """
    reference = math.sqrt(math.fsum(x * x for x in entries(grads)))
    c = max_norm_for(grads, factor)
    clipped, n = clip_by_global_norm(grads, c)
    assert n == pytest.approx(reference, rel=bound(grads), abs=1e-300)
    assert global_norm(grads) == n
    tensorflow = c / max(reference, c)  # t * clip_norm / max(global_norm, clip_norm)
    assert_scaled(clipped, grads, tensorflow, rtol=1.01 * bound(grads))


@pytest.mark.spec("clip_by_global_norm", 5)
@given(
    grads=gradients(exponents={np.float32: (-140, 120), np.float64: (-1070, 1000)}),
)
def test_global_norm_is_the_norm_of_the_concatenation(grads):
    """Invariant 5: global_norm = hypot(all entries) = scipy.linalg.norm(concatenation),
    for arrays whose squares overflow or underflow their dtype (and float64).

    Catches float32 or float64 overflow taken for a non-finite gradient, tiny gradients whose
    norm underflows to 0, and a missing sqrt.
    """
    flat = np.concatenate([np.zeros(1)] + [g.ravel().astype(np.float64) for g in grads.values()])
    expected = exact_norm(grads)
    got = global_norm(grads)
    assert math.isfinite(got)
    assert got == pytest.approx(expected, rel=bound(grads), abs=0.0)
    assert got == pytest.approx(float(scipy.linalg.norm(flat)), rel=bound(grads), abs=0.0)


@pytest.mark.spec("clip_by_global_norm", 5)
@pytest.mark.parametrize(
    "extra",
    [{}, {"b": np.array([3.0, -4.0])}, {"b": np.array([1e200])}],
    ids=["alone", "with-float64", "with-huge-float64"],
)
def test_huge_and_tiny_float32_gradients_have_their_exact_norm(extra):
    """Invariant 5: float32 entries of 1e20 (squares overflow float32) or 1e-25 (squares
    underflow) get their exact norm; the clipped gradient is finite with norm c."""
    for value in (1e20, 4e19, 1e-25, 1e-40):
        w = np.full((3, 5), value, np.float32)
        w[0, 0] = -w[0, 0]
        grads = {"w": w, **extra}
        expected = exact_norm(grads)
        assert global_norm(grads) == pytest.approx(expected, rel=64 * U64, abs=0.0), value
        clipped, n = clip_by_global_norm(grads, 1e-30)  # n / c up to 1e230: s is tiny
        assert n == global_norm(grads) > 0
        assert clipped["w"].dtype == np.float32
        assert exact_norm(clipped) == pytest.approx(min(expected, 1e-30), rel=1e-6, abs=0), value


@pytest.mark.spec("clip_by_global_norm", 6)
def test_nonfinite_gradients_propagate_and_raise():
    """Invariant 6: NaN and inf reach the norm (no FloatingPointError, though the test
    fixture makes NumPy raise them); clipping them is a DivergenceError naming the arrays."""
    ok = np.ones(3, np.float32)
    huge = np.full(2, 1e20, np.float32)  # overflowing squares, but finite
    assert math.isnan(global_norm({"a": ok, "b": np.array([1.0, np.nan])}))
    assert math.isnan(global_norm({"a": np.array([np.inf]), "b": np.array([np.nan])}))
    assert global_norm({"a": huge, "b": np.array([-np.inf], np.float32)}) == math.inf
    for bad in (np.nan, np.inf, -np.inf):
        grads = {"a": ok, "b": np.array([1.0, bad]), "c": huge}
        with pytest.raises(DivergenceError, match=r"non-finite entries in \['b'\].*guard"):
            clip_by_global_norm(grads, 1e30)
    for norm in (math.nan, math.inf):
        with pytest.raises(DivergenceError, match="the norm passed in is not finite"):
            clip_by_global_norm({"a": ok}, 1.0, norm=norm)


@pytest.mark.spec("clip_by_global_norm", 6)
def test_bad_arguments_are_named():
    """Invariant 6: max_norm, norm and the arrays are checked; each error names the culprit."""
    grads = {"w": np.ones((2, 2))}
    for value in (0, 0.0, -1.0, math.nan, math.inf, True, np.bool_(True), "1", None, 10**400):
        received = re.escape(repr(value))
        with pytest.raises(
            DataError, match=rf"max_norm must be a positive finite real number, received {received}"
        ):
            clip_by_global_norm(grads, value)
    for norm in (-1.0, "2", True):
        with pytest.raises(DataError, match=r"norm must be None or the global norm of grads"):
            clip_by_global_norm(grads, 1.0, norm=norm)
    for bad, got in [
        (np.ones(2, int), "int64"),
        (np.ones(2, np.float16), "float16"),
        (np.ones(2, complex), "complex128"),
        ([1.0, 2.0], "list"),
    ]:
        message = rf"grads\['b'\] must be a float32 or float64 array, received {got}"
        with pytest.raises(DTypeError, match="global_norm: " + message):
            global_norm({**grads, "b": bad})
        with pytest.raises(DTypeError, match=message):
            clip_by_global_norm({**grads, "b": bad}, 1.0)
        with pytest.raises(DTypeError, match=message):
            clip_by_global_norm({**grads, "b": bad}, 1.0, norm=2.0)


@pytest.mark.spec("clip_by_global_norm", 7)
@given(grads=gradients(), factor=FACTOR)
def test_clipping_twice_is_clipping_once(grads, factor):
    """Invariant 7: a second clipping is the identity or a scale within rounding of 1."""
    c = max_norm_for(grads, factor)
    once, _ = clip_by_global_norm(grads, c)
    twice, n = clip_by_global_norm(once, c)
    tol = 1.01 * bound(grads) + 4 * float(max(np.finfo(g.dtype).eps for g in grads.values()))
    assert n <= c * (1 + tol)
    if n <= c:
        assert all(twice[k] is once[k] for k in once)
    assert_scaled(twice, once, 1.0, rtol=tol)


@pytest.mark.spec("clip_by_global_norm", 8)
@given(grads=gradients(), factor=FACTOR)
def test_clipping_is_pure_and_keeps_keys_and_dtypes(grads, factor):
    """Invariant 8: nothing is modified; keys, shapes and dtypes are kept; clipped arrays are
    new; norm=global_norm(grads) changes nothing. Catches in-place scaling (g *= s)."""
    c = max_norm_for(grads, factor)
    frozen = dict(grads)
    before = copy.deepcopy(grads)
    clipped, n = clip_by_global_norm(grads, c)
    assert list(grads) == list(frozen) and all(grads[k] is frozen[k] for k in frozen)
    for key, g in grads.items():
        assert g.tobytes() == before[key].tobytes()
    assert list(clipped) == list(grads)
    for key, g in clipped.items():
        assert isinstance(g, np.ndarray)
        assert (g.dtype, g.shape) == (grads[key].dtype, grads[key].shape)
        if n > c:
            assert not np.shares_memory(g, grads[key])
    given_norm, n2 = clip_by_global_norm(grads, c, norm=global_norm(grads))
    assert n2 == n
    for key, g in clipped.items():
        assert g.tobytes() == given_norm[key].tobytes()


# --- the derivation -------------------------------------------------------------------------


@pytest.mark.spec("clip_by_global_norm", 9)
@given(
    grads=gradients(),
    factor=FACTOR,
    lr=st.floats(1e-3, 1.0),
    seed=st.integers(0, 2**32 - 1),
)
def test_clipped_sgd_step_is_the_projected_step(grads, factor, lr, seed):
    """Invariant 9: the SGD step with the clipped gradient is at most lr * c long and
    minimizes <g, d> + |d|^2 / (2 lr) over the ball |d| <= lr * c: random points of the ball
    (inside and on the sphere, and the unclipped step shrunk to it) do no better."""
    grads = {k: g.astype(np.float64) for k, g in grads.items()}  # the model in float64
    c = max_norm_for(grads, factor)
    clipped, n = clip_by_global_norm(grads, c)
    zero = {k: np.zeros_like(g) for k, g in grads.items()}
    new, _ = SGD().update(zero, clipped, SGD().init(zero), lr=lr)
    step = np.array(entries(new))  # the step from w = 0
    g = np.array(entries(grads))
    radius = lr * c
    tol = 1e-12
    assert np.linalg.norm(step) <= radius * (1 + tol)

    def model(d):
        return float(g @ d) + float(d @ d) / (2 * lr)

    if g.size == 0:
        return
    rng = np.random.default_rng(seed)
    directions = rng.standard_normal((64, g.size))
    directions /= np.linalg.norm(directions, axis=1, keepdims=True)
    radii = radius * rng.uniform(0, 1, 64) ** (1 / g.size)
    radii[:16] = radius  # on the sphere, where the constrained minimum lies when clipping
    others = [*(directions * radii[:, None]), -g * min(lr, radius / n) if n > 0 else 0 * g]
    scale = lr * n * n + radius * n + lr * c * c + 1e-300  # the size of the model's values
    for d in others:
        assert model(step) <= model(d) + tol * scale


@pytest.mark.spec("clip_by_global_norm", 9)
@given(
    ratio=st.floats(2.5, 10.0),
    lr=st.floats(0.01, 1.0),
    c=st.floats(0.01, 100.0),
    w0=st.floats(-100.0, 100.0),
)
def test_clipping_bounds_sgd_on_a_steep_quadratic(ratio, lr, c, w0):
    """Invariant 9: on f(w) = a w^2 / 2 with lr * a = ratio > 2, clipped SGD stays within
    max(|w0|, lr c) for 60 steps while plain SGD grows as |1 - lr a|^t."""
    a = ratio / lr
    opt = SGD()
    w = plain = {"w": np.array([w0])}
    state = plain_state = opt.init(w)
    limit = max(abs(w0), lr * c) * (1 + 1e-12)
    for _ in range(60):
        clipped, _ = clip_by_global_norm({"w": a * w["w"]}, c)
        w, state = opt.update(w, clipped, state, lr=lr)
        assert abs(float(w["w"][0])) <= limit
        plain, plain_state = opt.update(plain, {"w": a * plain["w"]}, plain_state, lr=lr)
    growth = (ratio - 1) ** 60  # |1 - lr a|^60 >= 1.5^60 ~ 3.7e10
    assert abs(float(plain["w"][0])) == pytest.approx(abs(w0) * growth, rel=1e-9)
