"""Tests that kill mutants of the verifier (nn/testing.py, nn/numdiff.py) and of the op
machinery (nn/op.py) that the other tests let survive (docs/mutation.md).

Each test checks behaviour the module's docstrings promise; the mutant it was written for is
named in its docstring (`mutmut show NAME` in build/mutation/).
"""

from __future__ import annotations

import functools
import inspect

import numpy as np
import pytest

import nn
from nn.errors import DTypeError, ShapeError, VerificationError
from nn.numdiff import (
    central_difference,
    complex_step,
    gaussian_direction,
    numerical_jacobian,
    vjp_jacobian,
)
from nn.op import Signature, _Keywords, op, unbroadcast
from nn.testing import check_float32, check_reference, check_vjp

X = np.linspace(-2.0, 2.0, 12).reshape(3, 4)


def _doubled(x):
    """A user's op that is not registered: y = 2x, dx = 2g, dtype-preserving."""
    return 2 * x, lambda g: (2 * g,)


def _upcast(x):
    """float32 in, float64 out: the bug check_float32 exists for."""
    return x.astype(np.float64), lambda g: (g,)


# check_float32 (P0)


def test_check_float32_reports_the_op_the_method_and_the_output():
    """A passing check says what it checked (nn.testing.x_check_float32__mutmut_48-65)."""
    check = check_float32(nn.relu, X)
    assert (check.op, check.method, check.input, check.passed) == (
        "relu",
        "float32",
        "output",
        True,
    )


def test_check_float32_failure_names_the_op_the_method_and_the_problem():
    """(nn.testing.x_check_float32__mutmut_5, _6, _35-46)"""
    check = check_float32(_upcast, X, raise_on_failure=False)
    assert (check.op, check.method, check.input, check.passed) == (
        "_upcast", "float32", "output", False,
    )  # fmt: skip
    assert check.note == "float32 in, float64 out"
    with pytest.raises(
        VerificationError, match=r"^_upcast: float32 check on output: .*float64 out"
    ):
        check_float32(_upcast, X)


def test_check_float32_passes_an_unregistered_op_that_keeps_float32():
    """The float32 vjp is fed a float32 cotangent: a plain function (no @op casting g) that
    keeps dtypes passes (nn.testing.x_check_float32__mutmut_23, _25)."""
    assert check_float32(_doubled, X).passed


# check_reference (P8)


def test_check_reference_reports_the_op_the_method_and_the_output():
    """(nn.testing.x_check_reference__mutmut_7, _8, _21, _23, _35-38)"""
    check = check_reference(_doubled, lambda x: 2 * x, X)
    assert (check.op, check.method, check.input, check.passed) == (
        "_doubled", "reference", "output", True,
    )  # fmt: skip


def test_check_reference_shape_mismatch_names_the_op_and_both_shapes():
    """(nn.testing.x_check_reference__mutmut_19: an error without its message)"""
    with pytest.raises(
        VerificationError, match=r"_doubled: output shape \(3, 4\), reference shape \(4, 3\)"
    ):
        check_reference(_doubled, lambda x: 2 * x.T, X)


# numdiff: the numbers the verifier compares a vjp against


def _buffered(x):
    """y = 3x whose vjp writes every cotangent into one buffer and returns it."""
    buffer = np.empty_like(x)

    def vjp(g):
        np.multiply(g, 3.0, out=buffer)
        return (buffer,)

    return 3 * x, vjp


def test_vjp_jacobian_copies_each_row_of_a_vjp_that_reuses_its_buffer():
    """(nn.numdiff.x_vjp_jacobian__mutmut_16: every row would be the last one)"""
    assert vjp_jacobian(_buffered, [np.zeros(3)], {}, 0).tolist() == (3 * np.eye(3)).tolist()


def test_jacobians_of_empty_inputs_and_outputs_have_no_rows_or_columns():
    """An input with no entries has no columns, an output with no entries no rows
    (nn.numdiff.x_numerical_jacobian__mutmut_11, x_vjp_jacobian__mutmut_7)."""
    empty_x = [np.ones((2, 0)), np.ones((0, 3)), np.ones(3)]  # y (2, 3) = b
    assert numerical_jacobian(nn.linear, empty_x, {}, 0).shape == (6, 0)
    empty_y = [np.ones((0, 3)), np.ones((3, 2)), np.ones(2)]  # y (0, 2)
    assert vjp_jacobian(nn.linear, empty_y, {}, 1).shape == (0, 6)


def _product(x, y):
    """y = x * y, elementwise: two inputs."""
    return x * y, lambda g: (g * y, g * x)


@pytest.mark.parametrize("derivative", [central_difference, complex_step])
@pytest.mark.parametrize(("fn", "inputs", "directions"), [(_doubled, 1, 2), (_product, 2, 1)])
def test_directional_derivatives_refuse_a_direction_for_other_inputs(
    derivative, fn, inputs, directions
):
    """u has one array per input: one more or one fewer is a mistake, not truncated
    (nn.numdiff.x_central_difference__mutmut_12, _15, _16; x_complex_step__mutmut_9-13)."""
    x = np.ones(3)
    with pytest.raises(ValueError, match="zip"):
        derivative(fn, [x] * inputs, {}, [x] * directions, np.ones(3))


# check_vjp: the contract (P0), reentrancy (P7) and Jacobian (P4) checks' reports


def _check(report, method, label=None):
    return next(c for c in report.checks if c.method == method and label in (None, c.input))


def _two_cotangents(x):
    return 2 * x, lambda g: (2 * g, 2 * g)


def _list_cotangent(x):
    return 2 * x, lambda g: [2 * g]


def _float32_cotangent(x):
    return 2 * x, lambda g: ((2 * g).astype(np.float32),)


def _float32_output(x):
    return (2 * x).astype(np.float32), lambda g: (2 * g,)


@pytest.mark.parametrize(
    ("fn", "note"),
    [
        (_two_cotangents, "vjp must return a tuple of 1 cotangents, returned tuple of 2"),
        (_list_cotangent, "vjp must return a tuple of 1 cotangents, returned list"),
        (_float32_cotangent, "cotangent of argument 0 is (3,) float32, input is (3,) float64"),
        (_float32_output, "output dtype float32 differs from input dtype float64"),
    ],
)
def test_check_vjp_contract_failure_says_what_the_vjp_returned(fn, note):
    """(nn.testing.x__contract__mutmut_7-10, _26, _27, _32)"""
    report = check_vjp(fn, np.ones(3), raise_on_failure=False)
    check = _check(report, "contract")
    assert (check.op, check.input, check.passed, check.note) == (fn.__name__, "vjp", False, note)


def _mutates_g(x):
    def vjp(g):
        out = 2 * g.copy()
        g += 1.0
        return (out,)

    return 2 * x, vjp


def _mutates_output(x):
    y = 2 * x

    def vjp(g):
        y[0] += 1.0
        return (2 * g,)

    return y, vjp


@pytest.mark.parametrize(
    ("fn", "note"),
    [
        (_mutates_g, "vjp mutated its cotangent argument g"),
        (_mutates_output, "the output was mutated"),
    ],
)
def test_check_vjp_reentrancy_failure_names_what_was_written(fn, note):
    """(nn.testing.x__reentrancy__mutmut_37-47, _61-72)"""
    report = check_vjp(fn, np.ones(3), raise_on_failure=False, jacobian=False)
    check = _check(report, "reentrancy")
    assert (check.op, check.input, check.passed) == (fn.__name__, "vjp", False)
    assert note in check.note.split("; ")


def test_check_vjp_refuses_a_vjp_whose_second_call_returns_more_cotangents():
    """The second call's cotangents are compared one by one with the first's, never
    truncated (each of the two strict zips in _reentrancy is enough: see the equivalents
    nn.testing.x__reentrancy__mutmut_7 and _20)."""
    calls = []

    def grows(x):
        def vjp(g):
            calls.append(1)
            return (2 * g,) * len(calls)

        return 2 * x, vjp

    with pytest.raises(ValueError, match="zip"):
        check_vjp(grows, np.ones(3), raise_on_failure=False)


def _wrong_last_entry(x):
    """y = 3x whose vjp doubles the last entry's cotangent."""
    return 3 * x, lambda g: (3 * g * np.array([1.0, 1.0, 2.0]),)


def test_check_vjp_jacobian_failure_names_the_op_and_the_worst_entry():
    """(nn.testing.x__jacobian_check__mutmut_2, _23, _25)"""
    report = check_vjp(_wrong_last_entry, np.ones(3), raise_on_failure=False)
    check = _check(report, "jacobian")
    assert (check.op, check.input, check.passed) == ("_wrong_last_entry", "argument 0", False)
    assert check.note == "worst entry: output 2, input element 2"


def _sum_of_scaled(x, y):
    """2x + 1000y: the Jacobians of x and y differ in scale by 500."""
    return 2 * x + 1000 * y, lambda g: (2 * g, 1000 * g)


def test_check_vjp_atol_scale_all_scales_each_jacobian_by_the_largest_of_all():
    """With atol_scale="all" the absolute term of x's Jacobian check is 1e-7 times y's largest
    entry, 1000, not x's own 2 (nn.testing.x__jacobian_check__mutmut_9, _17)."""
    x = np.ones(3)
    moved = _check(check_vjp(_sum_of_scaled, x, x), "jacobian", "argument 0")
    every = _check(check_vjp(_sum_of_scaled, x, x, atol_scale="all"), "jacobian", "argument 0")
    assert moved.tolerance < 1e-5 < 1e-4 < every.tolerance


def test_check_vjp_defaults_to_seed_0_and_two_directions_per_group():
    """P3: two Gaussian directions, keys (seed, group, draw) from seed 0
    (nn.testing.x_check_vjp__mutmut_1, _2)."""
    report = check_vjp(_doubled, X)
    keys = [c.direction for c in report.checks if c.method == "central-difference"]
    assert keys == [(0, 0, 0), (0, 0, 1)]


def test_check_vjp_takes_a_single_direction():
    """directions = 1 is allowed, 0 is not (nn.testing.x_check_vjp__mutmut_6, _7)."""
    report = check_vjp(_doubled, X, directions=1, seed=3)
    assert [c.direction for c in report.checks if c.method == "central-difference"] == [(3, 0, 0)]
    with pytest.raises(ValueError, match=r"^check_vjp: directions must be at least 1"):
        check_vjp(_doubled, X, directions=0)


def test_check_vjp_refuses_an_unknown_atol_scale_naming_the_choices():
    """(nn.testing.x_check_vjp__mutmut_17: an error without its message)"""
    with pytest.raises(ValueError, match=r"^check_vjp: atol_scale must be 'moved' or 'all', rec"):
        check_vjp(_doubled, X, atol_scale="max")


def test_check_vjp_labels_the_inputs_with_names_of_the_right_length_only():
    """(nn.testing.x_check_vjp__mutmut_27: the length test inverted)"""
    report = check_vjp(_doubled, X, names=["x"])
    assert {c.input for c in report.checks if c.method == "central-difference"} == {"x"}
    with pytest.raises(ValueError, match=r"^check_vjp: names must label each of the 1 inputs"):
        check_vjp(_doubled, X, names=["x", "y"])


def test_check_vjp_names_the_op_in_every_directional_check():
    """(nn.testing.x_check_vjp__mutmut_182, _219, _222: no op name, no direction key)"""
    report = check_vjp(_doubled, X, complex_safe=True)
    directional = [c for c in report.checks if c.method in ("central-difference", "complex-step")]
    assert {c.method for c in directional} == {"central-difference", "complex-step"}
    assert all(c.op == "_doubled" and c.direction is not None for c in directional)


def test_check_vjp_raises_on_a_contract_failure_by_default():
    """(nn.testing.x_check_vjp__mutmut_87: the report returned instead)"""
    with pytest.raises(
        VerificationError, match=r"_two_cotangents: contract check on vjp: .*returned tuple of 2"
    ):
        check_vjp(_two_cotangents, X)


def test_check_vjp_moves_two_inputs_alone_and_jointly():
    """P3: a group per input and one for all inputs together once there are two
    (nn.testing.x_check_vjp__mutmut_124)."""
    report = check_vjp(_product, X, X + 3.0)
    labels = {c.input for c in report.checks if c.method == "central-difference"}
    assert labels == {"argument 0", "argument 1", "all inputs jointly"}


def _sum_plus(x, y):
    """x.sum() + 2y: x may have no entries."""
    return x.sum() + 2 * y, lambda g: (np.full(x.shape, g.sum()), 2 * g)


def test_check_vjp_skips_an_input_with_no_entries_and_checks_the_next():
    """(nn.testing.x_check_vjp__mutmut_129: the loop stopped at the empty input)"""
    report = check_vjp(_sum_plus, np.zeros(0), X)
    labels = {c.input for c in report.checks if c.method == "central-difference"}
    assert labels == {"argument 1", "all inputs jointly"}


def test_check_vjp_atol_scale_all_scales_the_directional_tolerance_too():
    """P2's absolute term uses ||g|| of all inputs with atol_scale="all": for x of 2x + 1000y
    its tolerance is over 10 times x's own (nn.testing.x_check_vjp__mutmut_140)."""
    moved = _check(check_vjp(_sum_of_scaled, X, X), "central-difference", "argument 0")
    every = _check(
        check_vjp(_sum_of_scaled, X, X, atol_scale="all"), "central-difference", "argument 0"
    )
    assert moved.direction == every.direction and every.tolerance > 10 * moved.tolerance


def _spread(x):
    """y (301,) = x[0] * ones: one input entry, 301 outputs."""
    return x[0] * np.ones(301), lambda g: (np.array([g.sum()]),)


def test_check_vjp_full_jacobian_up_to_300_inputs_and_outputs():
    """P4 runs when the inputs and the output have at most 300 entries each, both ends
    included (nn.testing.x_check_vjp__mutmut_242-244)."""
    at_limit = check_vjp(_doubled, np.linspace(-1.0, 1.0, 300))
    assert [c.method for c in at_limit.checks].count("jacobian") == 1
    assert "jacobian" not in [c.method for c in check_vjp(_spread, np.ones(1)).checks]


def test_check_vjp_lets_the_op_refuse_a_missing_input():
    """check_vjp does not preempt the op's own error for too few arrays
    (nn.testing.x_check_vjp__mutmut_54: a bare zip ValueError)."""
    with pytest.raises(ShapeError, match=r"^linear: expected 3 array argument"):
        check_vjp(nn.linear, np.ones((2, 3)), np.ones((3, 4)))


def test_check_vjp_calls_a_nameless_callable_op():
    """A callable without __name__ (a functools.partial) is "op" in the report
    (nn.testing.x__name_of__mutmut_7-14)."""
    report = check_vjp(functools.partial(_doubled), X)
    assert {c.op for c in report.checks} == {"op"}


def test_check_vjp_catches_a_reused_buffer_that_the_second_call_overwrites():
    """The first call's cotangents are copied before the second call, so both problems of a
    buffer handed out twice show (nn.testing.x_check_vjp__mutmut_92)."""
    buffer, calls = np.empty(3), []

    def reuses(x):
        def vjp(g):
            calls.append(1)
            np.multiply(g, 2.0 * len(calls), out=buffer)  # wrong after the first call
            return (buffer,)

        return 2 * x, vjp

    report = check_vjp(reuses, np.ones(3), raise_on_failure=False)
    problems = _check(report, "reentrancy").note.split("; ")
    assert "cotangent 0 differs on the second call" in problems
    assert any("one buffer reused by every call" in p for p in problems)


# gaussian_direction (P3)


def test_gaussian_direction_is_drawn_again_from_its_key():
    """(nn.numdiff.x_gaussian_direction__mutmut_2: an unseeded generator)"""
    arrays = [np.ones(4), np.ones(2)]
    first = gaussian_direction((1, 2, 3), arrays, [0, 1])
    again = gaussian_direction((1, 2, 3), arrays, [0, 1])
    assert all(np.array_equal(a, b) for a, b in zip(first, again, strict=True))


def test_gaussian_direction_has_unit_norm_or_is_zero_when_nothing_moves():
    """A unit vector whatever the draw's norm; zero, not NaN, when nothing moves
    (nn.numdiff.x_gaussian_direction__mutmut_18, _20, _21)."""
    for seed in range(10):
        u = gaussian_direction((seed, 0, 0), [np.ones(1), np.ones(2)], [0])
        assert abs(float(u[0][0])) == pytest.approx(1.0) and u[1].tolist() == [0.0, 0.0]
    assert [d.tolist() for d in gaussian_direction((0, 0, 0), [np.ones(2)], [])] == [[0.0, 0.0]]


# nn.op: keyword checks and unbroadcast


def test_keywords_of_a_signature_lists_accepted_required_and_open():
    """(nn.op.xǁ_Keywordsǁof__mutmut_5, _8, _15, _17)"""

    def f(x, *, a, b=1, **more):
        return x

    def g(x, *, a=0):
        return x

    kw = _Keywords.of("f", inspect.signature(f).parameters.values())
    assert (kw.op, kw.accepted, kw.required, kw.open) == ("f", ("a", "b"), frozenset({"a"}), True)
    assert _Keywords.of("g", inspect.signature(g).parameters.values()).open is False


@pytest.mark.parametrize(
    ("call", "op", "takes"),
    [
        (lambda: nn.relu(X, size=2), "relu", "none"),
        (
            lambda: nn.max_pool2d(np.ones((1, 1, 2, 2)), size=2),
            "max_pool2d",
            "['window', 'stride']",
        ),
    ],
)
def test_unknown_keyword_error_names_the_op_and_what_it_takes(call, op, takes):
    """(nn.op.xǁ_Keywordsǁof__mutmut_5, xǁ_Keywordsǁcheck_unknown__mutmut_2, _6-9)"""
    with pytest.raises(TypeError) as e:
        call()
    assert str(e.value) == f"{op}() got an unexpected keyword argument 'size'; it takes {takes}"


def test_unbroadcast_returns_g_itself_when_nothing_was_broadcast():
    """No copy when no axis was broadcast, and a 0-d cotangent stays an array
    (nn.op.x_unbroadcast__mutmut_5, _18: a sum over no axes, a scalar for 0-d)."""
    g = np.ones((2, 3), np.float32)
    assert unbroadcast(g, (2, 3)) is g
    assert isinstance(unbroadcast(np.ones(()), ()), np.ndarray)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (
            lambda: nn.linear(np.ones(3), np.ones((3, 2)), np.ones(2)),
            "linear: argument 0 (x) needs at least 2 dimension(s) (n,d), received 1; ",
        ),
        (
            lambda: nn.linear(np.ones((2, 3, 4)), np.ones((5, 4, 2)), np.ones(2)),
            "linear: loop dimensions [(2,), (5,), ()] do not broadcast; ",
        ),
        (
            lambda: nn.max_pool2d(np.ones((1, 1, 2, 2)), window=3, stride=1),
            "max_pool2d: output dimension 'p' would be 0 (< 1) for these shapes with window=3, "
            "stride=1; ",
        ),
        (
            lambda: nn.conv2d(np.ones((1, 1, 2, 2)), np.ones((1, 1, 3, 3)), np.ones(1)),
            "conv2d: output dimension 'p' would be 0 (< 1) for these shapes; ",
        ),
    ],
)
def test_shape_errors_name_the_op_the_argument_and_what_was_received(call, message):
    """(nn.op.xǁSignatureǁoutput_shape__mutmut_24, _27, _61, _74, _79, _80)"""
    with pytest.raises(ShapeError) as e:
        call()
    assert str(e.value).startswith(message) and "; signature (" in str(e.value)


def test_a_derived_output_without_a_derive_function_is_a_named_error():
    """(nn.op.xǁSignatureǁoutput_shape__mutmut_64: an error without its message)"""
    signature = Signature.parse("(n)->(p)")
    with pytest.raises(ValueError, match=r"^f: derived dimensions .*'p'.* need a derive function$"):
        signature.output_shape("f", [(3,)])


def test_a_non_array_argument_is_named_with_its_type():
    """(nn.op.x__check_arrays__mutmut_10: the type of another object)"""
    expected = r"^relu: argument 0 \(x\) must be a NumPy array of floats, received list; convert"
    with pytest.raises(DTypeError, match=expected):
        nn.relu([1.0])


def test_a_complex_extra_argument_of_a_real_op_is_named_by_its_position():
    """(nn.op.x__check_arrays__mutmut_21, _22: an IndexError past the op's argument names)"""
    with pytest.raises(DTypeError, match=r"^relu: argument 1 must be real, float32 or float64"):
        nn.relu(np.ones(2), np.ones(2, complex))


def test_signature_parse_ignores_spaces():
    """(nn.op.xǁSignatureǁparse__mutmut_12, _13, _39, _40)"""
    spaced, tight = Signature.parse("(n, k), (k) -> ()"), Signature.parse("(n,k),(k)->()")
    assert spaced == tight and spaced.text == "(n,k),(k)->()"


def test_op_registers_spec_page_and_distinct_sizes_with_their_defaults():
    """spec defaults to the op's name, distinct to False (nn.op.x_op__mutmut_2, _34, _39,
    _52, _53)."""
    relu, pool = nn.REGISTRY["relu"], nn.REGISTRY["max_pool2d"]
    assert (relu.spec, relu.distinct, pool.spec, pool.distinct) == (
        "relu", False, "max_pool2d", True,
    )  # fmt: skip


def test_op_refuses_unknown_nonempty_names_and_a_second_registration_naming_them():
    """(nn.op.x_op__mutmut_11, _12, _25: errors without their messages)"""
    with pytest.raises(
        ValueError, match=r"^nonempty names \['k'\], not in signature '\(n\)->\(n\)'"
    ):
        op(signature="(n)->(n)", complex_safe=False, nonempty=("k",))

    def relu(x):
        return x, lambda g: (g,)

    with pytest.raises(ValueError, match=r"^op 'relu' is registered twice$"):
        op(signature="()->()", complex_safe=False)(relu)


def test_missing_keyword_error_names_what_is_missing_what_the_op_takes_and_what_it_got():
    """(nn.op.xǁ_Keywordsǁcheck_missing__mutmut_3-5)"""
    with pytest.raises(TypeError) as e:
        nn.dropout(X, rate=0.5)
    assert str(e.value) == (
        "dropout: missing keyword argument(s) ['mask']; it takes ['rate', 'mask'], "
        "received ['rate']"
    )
