"""P11: the verifier itself is tested. A checker that cannot fail proves nothing.

Each mutant below wraps a real, verified op and breaks one thing in the way people break
backward passes by hand: a VJP off by 1%, a dropped term, a sum over the wrong axis, a
transposed weight gradient. ``check_vjp`` must reject every one, and say where and by how
much. A forward-only bug has the right derivative, so only ``check_reference`` can see it.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special

import nn
from nn.testing import (
    COTANGENT_STREAM,
    Check,
    check_float32,
    check_reference,
    check_vjp,
    compare_arrays,
    complex_step,
    gaussian_direction,
    numerical_jacobian,
    sample_inputs,
    vjp_jacobian,
)

RNG = np.random.default_rng(0)
X = RNG.standard_normal((3, 4))  # N=3, D=4: distinct sizes
W = RNG.standard_normal((4, 5))  # M=5
B = RNG.standard_normal(5)
SQUARE_W = RNG.standard_normal((4, 4))  # D=M: a transposed dW has the right shape
SQUARE_B = RNG.standard_normal(4)


def scaled_vjp(x, w, b):
    y, vjp = nn.linear(x, w, b)
    return y, lambda g: tuple(1.01 * c for c in vjp(g))


def softmax_dropped_term(x):
    s, _ = nn.softmax(x)
    return s, lambda g: (s * g,)  # forgets "- s * sum(g * s)"


def softmax_wrong_axis(x):
    s, _ = nn.softmax(x)
    return s, lambda g: (s * (g - (g * s).sum(axis=0, keepdims=True)),)  # rows, not classes


def linear_transposed_dw(x, w, b):
    y, vjp = nn.linear(x, w, b)

    def vjp_t(g):
        dx, dw, db = vjp(g)
        return dx, dw.T, db

    return y, vjp_t


def linear_forward_offset(x, w, b):
    y, vjp = nn.linear(x, w, b)
    return y + 1e-3, vjp  # right derivative, wrong value


MUTANTS = {
    "vjp scaled by 1.01": (scaled_vjp, (X, W, B)),
    "dropped term": (softmax_dropped_term, (X,)),
    "sum over the wrong axis": (softmax_wrong_axis, (X,)),
    "transposed weight gradient": (linear_transposed_dw, (X, SQUARE_W, SQUARE_B)),
}


@pytest.mark.parametrize("bug", MUTANTS)
@pytest.mark.parametrize("method", ["central-difference", "complex-step", "jacobian"])
def test_each_method_rejects_each_injected_bug(bug, method):
    fn, args = MUTANTS[bug]
    report = check_vjp(fn, *args, complex_safe=True, raise_on_failure=False)
    assert any(c.method == method for c in report.failures), report.checks
    with pytest.raises(nn.VerificationError):
        check_vjp(fn, *args, complex_safe=True)


@pytest.mark.parametrize("bug", MUTANTS)
def test_the_correct_op_passes_where_its_mutant_fails(bug):
    """The same inputs pass for the real op, so the failure is the bug's and not the checker's."""
    _, args = MUTANTS[bug]
    real = nn.softmax if len(args) == 1 else nn.linear
    assert check_vjp(real, *args).passed


def test_failure_message_names_op_input_seed_numbers_and_tolerance():
    with pytest.raises(nn.VerificationError) as err:
        check_vjp(linear_transposed_dw, X, SQUARE_W, SQUARE_B, seed=3)
    text = str(err.value)
    assert "linear_transposed_dw" in text
    assert "argument 1" in text  # the weight, by position for a user's op
    assert "direction (3, 1, 0) (seed, group, draw)" in text  # weight alone, first draw
    assert "numeric" in text and "analytic" in text and "tolerance" in text


def test_registered_op_failures_name_the_argument():
    """For a registered op the message uses the argument's real name."""
    x, _ = sample_inputs(nn.linear)
    report = check_vjp(nn.linear, *x)
    assert {c.input for c in report.checks} >= {"x", "w", "b", "all inputs jointly"}


def test_forward_bug_passes_gradient_checks_but_fails_the_reference():
    """Gradient checks cannot see a forward bug; the reference value check (P8) can."""
    assert check_vjp(linear_forward_offset, X, W, B, complex_safe=True).passed

    def reference(x, w, b):
        return np.einsum("nd,dm->nm", x, w) + b

    assert check_reference(nn.linear, reference, X, W, B).passed
    with pytest.raises(nn.VerificationError, match="reference"):
        check_reference(linear_forward_offset, reference, X, W, B)


def test_contract_rejects_wrong_cotangent_dtype_and_count():
    def float32_cotangent(x):
        y, vjp = nn.tanh(x)
        return y, lambda g: (vjp(g)[0].astype(np.float32),)

    def two_cotangents(x):
        y, vjp = nn.tanh(x)
        return y, lambda g: (*vjp(g), g)

    for fn in (float32_cotangent, two_cotangents):
        report = check_vjp(fn, X, raise_on_failure=False)
        assert [c.method for c in report.failures] == ["contract"]


def test_reentrancy_rejects_hidden_state_and_mutated_cotangent():
    calls = []

    def stateful(x):
        y, vjp = nn.tanh(x)

        def leaky(g):
            calls.append(1)
            return (vjp(g)[0] * len(calls),)  # depends on how often it was called

        return y, leaky

    def mutates_g(x):
        y, _ = nn.tanh(x)

        def vjp_in_place(g):
            g *= 1.0 - y * y  # overwrites the caller's array
            return (g,)

        return y, vjp_in_place

    for fn in (stateful, mutates_g):
        report = check_vjp(fn, X, raise_on_failure=False)
        assert "reentrancy" in {c.method for c in report.failures}


def test_tolerances_are_the_protocols():
    """P2's bound is 1e-6 |<g,u>| + 1e-8 ||g||: a 1e-6 relative error passes, 1e-5 fails."""
    for rel, passes in [(5e-7, True), (1e-5, False)]:

        def off(x, rel=rel):
            y, vjp = nn.tanh(x)
            return y, lambda g: (vjp(g)[0] * (1 + rel),)

        report = check_vjp(off, X, raise_on_failure=False, jacobian=False)
        central = [c for c in report.checks if c.method == "central-difference"]
        assert all(c.passed for c in central) is passes


def test_check_ratio_semantics():
    ok = Check("op", "m", "x", None, 1.0, 1.0, 0.0, 0.0)
    bad = Check("op", "m", "x", None, 1.0, 2.0, 1.0, 0.0)
    nan = Check("op", "m", "x", None, np.nan, 2.0, np.nan, 1.0)
    assert ok.passed and ok.ratio == 0
    assert not bad.passed and bad.ratio == np.inf
    assert not nan.passed


def test_complex_step_is_exact_where_central_differences_are_not():
    """P1: the complex step has no subtraction, so it matches to ~1e-16 relative."""
    x = np.array([0.3, -1.2])
    u = [np.array([0.6, 0.8])]
    v = np.ones(2)
    exact = float(np.sum((1 - np.tanh(x) ** 2) * u[0]))
    assert abs(complex_step(nn.tanh, [x], {}, u, v) - exact) <= 1e-15


def test_jacobian_builders_agree_with_a_known_jacobian():
    """P4 machinery: for y = x W + b, dy/dW entry ((n,m),(d,m')) = x[n,d] * (m == m')."""
    num = numerical_jacobian(nn.linear, [X, W, B], {}, 1)
    ana = vjp_jacobian(nn.linear, [X, W, B], {}, 1)
    known = np.einsum("nd,mk->nmdk", X, np.eye(5)).reshape(15, 20)
    np.testing.assert_allclose(ana, known, rtol=0, atol=0)
    np.testing.assert_allclose(num, known, rtol=1e-8, atol=1e-9)


def test_sampler_keeps_every_entry_away_from_kinks():
    (x,), _ = sample_inputs(nn.relu, loop=(50, 50), seed=4)
    assert np.abs(x).min() >= 1e-3


def test_sampler_gives_distinct_core_sizes_and_valid_labels():
    (logits,), static = sample_inputs(nn.softmax_cross_entropy, loop=())
    n, k = logits.shape
    assert n != k
    assert static["labels"].shape == (n,) and static["labels"].max() < k


def test_float32_check_rejects_an_upcast():
    def upcast(x):
        y, vjp = nn.sigmoid(x)
        return y.astype(np.float64), vjp

    assert check_float32(nn.sigmoid, X).passed
    with pytest.raises(nn.VerificationError, match="float32"):
        check_float32(upcast, X)


def test_reference_check_against_scipy_catches_a_one_ulp_scale_bug():
    """P8 tolerances are tight: a relative error of 1e-9 in softmax is caught."""

    def softmax(x):
        return scipy.special.softmax(x, axis=-1)

    def slightly_off(x):
        s, vjp = nn.softmax(x)
        return s * (1 + 1e-9), vjp

    assert check_reference(nn.softmax, softmax, X).passed
    assert not check_reference(slightly_off, softmax, X, raise_on_failure=False).passed


def test_user_data_seeded_like_the_verifier_does_not_hide_a_transpose():
    """Regression: with v drawn from default_rng(seed), x = default_rng(seed).normal(...) made
    v equal x, x^T v symmetric, and the transposed dW passed the directional checks."""
    for seed in range(3):
        x = np.random.default_rng(seed).standard_normal((3, 4))
        report = check_vjp(
            linear_transposed_dw,
            x,
            SQUARE_W,
            SQUARE_B,
            seed=seed,
            raise_on_failure=False,
            jacobian=False,
        )
        assert "central-difference" in {c.method for c in report.failures}


def test_comparison_reports_the_worst_ratio_not_the_worst_excess():
    """The verify table promises the worst error as a fraction of its tolerance."""
    expected = np.array([100.0, 1.0, 0.0])
    actual = expected + np.array([1e-9, 1e-9, 0.0])  # the second entry is worse by ratio
    check = compare_arrays("op", "m", "x", expected, actual, rtol=1e-6, atol=0.0)
    assert check.index == (1,)
    assert check.ratio == pytest.approx(1e-9 / 1e-6)
    exact_zero = compare_arrays("op", "m", "x", np.zeros(2), np.array([0.0, 1e-30]), 1e-6, 1e-7)
    assert not exact_zero.passed and exact_zero.ratio == np.inf


# --- P7 blind spots, pinned tolerances and guards (from review: each survived a mutant) ---


def test_reentrancy_rejects_a_reused_buffer_and_an_overwritten_output():
    """A vjp that writes into one buffer (or into y) is right once and wrong after."""

    def relu_reuses_y(x):
        y = np.maximum(x, 0)
        active = x > 0

        def vjp(g):
            np.multiply(g, active, out=y)  # overwrites the forward output the caller holds
            return (y,)

        return y, vjp

    def tanh_one_buffer(x):
        y = np.tanh(x)
        buf = np.zeros_like(x)

        def vjp(g):
            np.multiply(g, 1 - y * y, out=buf)
            return (buf,)

        return y, vjp

    x = np.random.default_rng(5).standard_normal((20, 20))  # 400 entries: no Jacobian check
    for fn in (relu_reuses_y, tanh_one_buffer):
        report = check_vjp(fn, x, raise_on_failure=False)
        assert "reentrancy" in {c.method for c in report.failures}, fn.__name__
    assert check_vjp(lambda x: (x, lambda g: (g,)), x).passed  # returning g itself is fine


def test_reentrancy_rejects_an_op_that_shifts_its_input_in_place():
    """Softmax is shift-invariant, so only the input-mutation check sees x -= max(x)."""

    def softmax_inplace(x):
        x -= x.max(axis=-1, keepdims=True)
        return nn.softmax(x)

    report = check_vjp(softmax_inplace, X.copy(), raise_on_failure=False)
    assert [c.method for c in report.failures] == ["reentrancy"]
    assert "input 0 was mutated" in report.failures[0].note


def test_contract_rejects_an_output_of_the_wrong_dtype():
    def float32_out(x):
        y, vjp = nn.tanh(x)
        return y.astype(np.float32), vjp

    report = check_vjp(float32_out, X, raise_on_failure=False)
    assert [c.method for c in report.failures] == ["contract"]


def test_float32_check_rejects_a_vjp_that_upcasts():
    """The contract's dtype rule holds in float32 too: a float64 cotangent is refused."""

    def linear_db_upcast(x, w, b):
        y, vjp = nn.linear(x, w, b)

        def vjp64(g):
            dx, dw, db = vjp(g)
            return dx, dw, db.astype(np.float64)

        return y, vjp64

    assert check_float32(nn.linear, X, W, B).passed
    with pytest.raises(nn.VerificationError, match="cotangent 2 is float64"):
        check_float32(linear_db_upcast, X, W, B)


def _moved_norm(fn, arrays, seed, moved):
    """||g|| over the moved inputs, g = vjp(v) with the verifier's cotangent v."""
    out, vjp = fn(*arrays)
    v = np.random.default_rng([seed, COTANGENT_STREAM]).standard_normal(out.shape)
    g = vjp(v)
    return np.sqrt(sum(np.sum(g[i] ** 2) for i in moved))


def test_each_check_uses_the_protocols_tolerance():
    """P1, P2 and P4 bounds, term by term, with ||g|| over the inputs the direction moves."""
    arrays = (X, W, B)
    report = check_vjp(nn.linear, *arrays, seed=4)
    groups = {"x": [0], "w": [1], "b": [2], "all inputs jointly": [0, 1, 2]}
    bounds = {"central-difference": (1e-6, 1e-8), "complex-step": (1e-10, 1e-13)}
    for c in report.checks:
        if c.method in bounds:
            rtol, atol = bounds[c.method]
            gnorm = _moved_norm(nn.linear, arrays, 4, groups[c.input])
            assert c.tolerance == pytest.approx(rtol * abs(c.analytic) + atol * gnorm, rel=1e-12)
    for i, c in enumerate(c for c in report.checks if c.method == "jacobian"):
        n = numerical_jacobian(nn.linear, arrays, {}, i)
        expected = 1e-6 * abs(n[c.index]) + 1e-7 * np.abs(n).max()
        assert c.tolerance == pytest.approx(expected, rel=1e-12)


def test_float32_check_uses_its_tolerance():
    check = check_float32(nn.softmax, X)
    y64 = nn.softmax(X)[0]
    assert check.tolerance == pytest.approx(1e-5 * abs(y64[check.index]) + 1e-6 * y64.max())


def test_complex_step_sees_an_error_central_differences_cannot():
    """A 1e-8 relative error: below P2's 1e-6, far above P1's 1e-10."""

    def tanh_off(x):
        y, vjp = nn.tanh(x)
        return y, lambda g: (vjp(g)[0] * (1 + 1e-8),)

    report = check_vjp(tanh_off, X, complex_safe=True, jacobian=False, raise_on_failure=False)
    assert {c.method for c in report.failures} == {"complex-step"}


def test_directions_have_unit_norm_and_distinct_keys():
    arrays = (X, W, B)
    keys = [(0, gi, k) for gi in range(4) for k in range(12)]
    directions = [gaussian_direction(k, arrays, [0, 1, 2]) for k in keys]
    for u in directions:
        assert np.sqrt(sum(np.sum(d * d) for d in u)) == pytest.approx(1.0, abs=1e-14)
    firsts = {u[0].tobytes() for u in directions}
    assert len(firsts) == len(keys)  # seed*1000 + 10*group + draw collided past 10 draws


@pytest.mark.parametrize(
    ("kwargs", "error", "match"),
    [
        ({"directions": 0}, ValueError, "directions must be at least 1"),
        ({"seed": -1}, ValueError, "seed must be a non-negative"),
    ],
)
def test_check_vjp_refuses_settings_that_would_check_nothing(kwargs, error, match):
    with pytest.raises(error, match=match):
        check_vjp(nn.tanh, X, **kwargs)


def test_check_vjp_refuses_float32_inputs():
    """P0: gradients are checked in float64; float32 made only the complex step fail."""
    with pytest.raises(nn.DTypeError, match=r"x must be float64.*received float32"):
        check_vjp(nn.tanh, X.astype(np.float32))


def test_empty_inputs_are_checked_without_warnings():
    report = check_vjp(nn.linear, np.zeros((0, 4)), W, B)
    assert report.passed and {c.input for c in report.checks if c.method == "jacobian"} == {
        "x",
        "w",
        "b",
    }


def test_sampler_keeps_sizes_distinct_around_a_given_one():
    (x, w, b), _ = sample_inputs(nn.linear, sizes={"n": 5}, loop=())
    assert x.shape == (5, 4) and w.shape == (4, 6) and b.shape == (6,)
