"""Bad input to the ops and the verifier: each case a named error, or the result it should be.

Every case is a row of docs/bad-input.md, whose message column is checked here against the
message a run gives, so the page cannot drift from the library. An error must name the
argument, what was expected and what was received (``parts``). NaN and inf are not errors
in an op: they go through IEEE arithmetic as in NumPy (the trainer's guard names them), and
an empty batch is an empty result or a named error, as each row says.
"""

from __future__ import annotations

import re

import numpy as np
import pytest
from bad_input_table import DOCS, bad, check_named_error

import nn
from nn import DataError, DTypeError, ShapeError
from nn.testing import check_vjp

X = np.ones((2, 3))
LP = np.log(np.full((2, 4, 3), 1 / 3))  # CTC log-probs (N, T, K) = (2, 4, 3): blank is 2
X4 = np.ones((2, 1, 5, 5))
W4, B1 = np.ones((1, 1, 3, 3)), np.ones(1)
MASK = np.ones((2, 3), bool)


CASES = [
    # dtype: the contract takes float32 or float64 arrays (complex where complex-safe)
    bad("relu-int", lambda: nn.relu(np.ones(3, int)),
        DTypeError, "(x)", "float32 or float64", "int64"),
    bad("relu-float16", lambda: nn.relu(np.ones(3, np.float16)),
        DTypeError, "(x)", "float32", "float16"),
    bad("relu-object", lambda: nn.relu(np.ones(3, object)), DTypeError, "(x)", "float32", "object"),
    bad("relu-list", lambda: nn.relu([1.0]), DTypeError, "(x)", "NumPy array", "list"),
    bad("relu-complex", lambda: nn.relu(np.ones(3, complex)),
        DTypeError, "x must be real", "not complex-safe", "complex128"),
    bad("batch_norm-complex", lambda: nn.batch_norm(X4 + 0j, B1 + 0j, B1 + 0j),
        DTypeError, "x must be real", "complex128"),
    bad("linear-mixed", lambda: nn.linear(X.astype(np.float32), np.ones((3, 2)), np.ones(2)),
        DTypeError, "(w)", "share one dtype", "float32"),
    # rank and shape: the op's signature, and every shape received
    bad("softmax-0d", lambda: nn.softmax(np.array(1.0)),
        ShapeError, "(x)", "(k)->(k)", "received shapes ()"),
    bad("linear-rank", lambda: nn.linear(np.ones(3), np.ones((3, 2)), np.ones(2)),
        ShapeError, "(x)", "at least 2", "(3,)"),
    bad("linear-shape", lambda: nn.linear(X, np.ones((4, 2)), np.ones(2)),
        ShapeError, "(w)", "'d' is 3", "but 4"),
    bad("conv2d-rank", lambda: nn.conv2d(X4[0], W4, B1),
        ShapeError, "(x)", "(n,c,h,w)", "(1, 5, 5)"),
    bad("conv2d-kernel", lambda: nn.conv2d(X4, np.ones((1, 1, 7, 7)), B1),
        ShapeError, "'p'", "< 1", "(1, 1, 7, 7)"),
    bad("mse-shape", lambda: nn.mean_squared_error(X, np.ones((2, 4))),
        ShapeError, "(y)", "'k' is 3", "but 4"),
    bad("flatten-rank", lambda: nn.flatten(X), ShapeError, "(x)", "(n,c,h,w)", "(2, 3)"),
    bad("unflatten-shape", lambda: nn.unflatten(np.ones((2, 6)), shape=(4, 2)),
        ShapeError, "shape (4, 2)", "D = 6", "4*2 = 8"),
    bad("batch_norm-gamma", lambda: nn.batch_norm(X4, np.ones(2), B1),
        ShapeError, "(gamma)", "'c' is 1", "but 2"),
    bad("batch_norm_inference-mean",
        lambda: nn.batch_norm_inference(X4, B1, B1, mean=np.zeros(2), var=B1),
        ShapeError, "mean", "(1,)", "(2,)"),
    # keyword (static) arguments: missing, misspelt, out of range
    bad("unflatten-no-shape", lambda: nn.unflatten(np.ones((2, 6))),
        TypeError, "['shape']", "it takes", "received []"),
    bad("sce-misspelt", lambda: nn.softmax_cross_entropy(X, label=[0, 1]),
        TypeError, "['labels']", "received ['label']"),
    bad("relu-keyword", lambda: nn.relu(X, axis=0), TypeError, "'axis'", "it takes none"),
    bad("max_pool2d-keyword", lambda: nn.max_pool2d(X4, size=2),
        TypeError, "'size'", "['window', 'stride']"),
    bad("conv2d-stride", lambda: nn.conv2d(X4, W4, B1, stride=0),
        ValueError, "stride", "positive int", "received 0"),
    bad("dropout-rate", lambda: nn.dropout(X, rate=1.0, mask=MASK),
        ValueError, "rate", "[0, 1)", "1.0"),
    bad("dropout-mask", lambda: nn.dropout(X, rate=0.5, mask=np.ones((3, 3), bool)),
        ShapeError, "mask", "(2, 3)", "(3, 3)"),
    bad("dropout_mask-shape", lambda: nn.dropout_mask(np.random.default_rng(0), (2, -3), 0.5),
        ValueError, "shape", "integers >= 0", "(2, -3)"),
    bad("batch_norm-eps", lambda: nn.batch_norm(X4, B1, B1, eps=-1),
        ValueError, "eps", "positive finite", "-1"),
    bad("batch_norm_inference-var", lambda: nn.batch_norm_inference(X4, B1, B1, mean=B1, var=-B1),
        ValueError, "var", "nonnegative", "-1.0"),
    # labels of the losses
    bad("sce-negative", lambda: nn.softmax_cross_entropy(X, labels=np.array([-1, 0])),
        DataError, "labels", "[0, 3)", "from -1"),
    bad("sce-too-big", lambda: nn.softmax_cross_entropy(X, labels=np.array([3, 0])),
        DataError, "labels", "[0, 3)", "to 3"),
    bad("sce-float", lambda: nn.softmax_cross_entropy(X, labels=np.array([1.0, 0.0])),
        DataError, "labels", "integers", "float64"),
    bad("sce-length", lambda: nn.softmax_cross_entropy(X, labels=np.array([1, 0, 2])),
        ShapeError, "labels", "(2,)", "(3,)"),
    bad("ctc-blank", lambda: nn.ctc_loss(LP, labels=np.array([[2], [0]])),
        DataError, "labels", "[0, 2)", "to 2"),
    bad("ctc-rows", lambda: nn.ctc_loss(LP, labels=np.array([[1]])),
        ShapeError, "labels", "(2, L)", "(1, 1)"),
    bad("ctc-padding", lambda: nn.ctc_loss(LP, labels=np.array([[-1, 0], [0, -1]])),
        DataError, "labels", "only at the end", "[-1, 0]"),
    bad("ctc-too-long", lambda: nn.ctc_loss(LP, labels=np.zeros((2, 3), int)),
        DataError, "example 0", "at least 5 columns", "T = 4"),
    bad("ctc-complex", lambda: nn.ctc_loss(LP + 0j, labels=np.array([[0], [1]])),
        DTypeError, "log_probs must be real", "complex128"),
    # empty batches the math cannot define: a mean over no examples, a batch statistic
    bad("sce-empty", lambda: nn.softmax_cross_entropy(np.ones((0, 3)), labels=np.zeros(0, int)),
        ShapeError, "'n'", "at least 1", "(0, 3)"),
    bad("mse-empty", lambda: nn.mean_squared_error(np.ones((0, 3)), np.ones((0, 3))),
        ShapeError, "'n'", "at least 1", "(0, 3)"),
    bad("ctc-empty", lambda: nn.ctc_loss(np.ones((0, 4, 3)), labels=np.zeros((0, 1), int)),
        ShapeError, "'n'", "at least 1", "(0, 4, 3)"),
    bad("batch_norm-empty", lambda: nn.batch_norm(np.ones((0, 1, 2, 2)), B1, B1),
        ShapeError, "'n'", "at least 1", "(0, 1, 2, 2)"),
    bad("softmax-no-classes", lambda: nn.softmax(np.ones((2, 0))),
        ShapeError, "'k'", "at least 1", "(2, 0)"),
    # the verifier
    bad("check_vjp-float32", lambda: check_vjp(nn.tanh, np.ones(2, np.float32)),
        DTypeError, "x must be float64", "float32"),
    bad("check_vjp-names", lambda: check_vjp(nn.tanh, np.ones(2), names=["a", "b"]),
        ValueError, "names", "each of the 1 inputs", "['a', 'b']"),
    bad("check_vjp-directions", lambda: check_vjp(nn.tanh, np.ones(2), directions=0),
        ValueError, "directions", "at least 1", "0"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "parts"), CASES)
def test_bad_input_is_a_named_error(call, error, parts, request):
    check_named_error(call, error, parts, request.node.callspec.id)


# NaN and inf: no error from an op (the contract checks shapes and dtypes, never values, so
# the hot path pays nothing); the result is IEEE arithmetic's, as in NumPy and PyTorch.
NAN, INF = np.nan, np.inf
IEEE = {  # case: (call, expected result)
    "relu-nan-inf": (lambda: nn.relu(np.array([NAN, INF, -INF]))[0], [NAN, INF, 0.0]),
    "sigmoid-nan-inf": (lambda: nn.sigmoid(np.array([NAN, INF, -INF]))[0], [NAN, 1.0, 0.0]),
    "softmax-inf": (lambda: nn.softmax(np.array([[INF, 1.0], [1.0, 1.0]]))[0],
                    [[NAN, NAN], [0.5, 0.5]]),
    "linear-nan-row": (lambda: nn.linear(np.array([[NAN, 1.0], [1.0, 1.0]]), np.ones((2, 1)),
                                         np.zeros(1))[0], [[NAN], [2.0]]),
    "sce-nan": (lambda: nn.softmax_cross_entropy(np.array([[NAN, 1.0]]), labels=np.array([1]))[0],
                NAN),
    "ctc-minus-inf": (lambda: nn.ctc_loss(np.full((1, 2, 3), -INF), labels=np.array([[0]]))[0],
                      INF),
    "dropout-dropped-nan": (lambda: nn.dropout(np.array([NAN, 1.0]), rate=0.5,
                                               mask=np.array([False, True]))[0], [NAN, 2.0]),
    "max_pool2d-nan": (lambda: nn.max_pool2d(np.array([[[[1.0, NAN], [2.0, 3.0]]]]), window=2)[0],
                       [[[[NAN]]]]),
}  # fmt: skip


@pytest.mark.parametrize("case", IEEE)
def test_nan_and_inf_go_through_ops_as_ieee_arithmetic(case):
    call, expected = IEEE[case]
    with np.errstate(all="ignore"):
        got = call()
    np.testing.assert_array_equal(got, expected)  # NaN where NaN is expected, and nowhere else
    assert f"`{case}`" in DOCS.read_text(encoding="utf-8")


def test_the_callers_errstate_decides_whether_an_invalid_operation_raises():
    """inf - inf in softmax's shift: NumPy's RuntimeWarning, or FloatingPointError under
    np.errstate(invalid="raise") as in the test-suite; the op does not change the setting."""
    with np.errstate(invalid="raise"), pytest.raises(FloatingPointError, match="invalid"):
        nn.softmax(np.array([INF, 1.0]))
    with np.errstate(invalid="warn"), pytest.warns(RuntimeWarning, match="invalid"):
        nn.softmax(np.array([INF, 1.0]))


# Empty batches (N = 0) where the result is defined: an empty result of the right shape, and
# cotangents of their inputs' shapes (a weight's gradient over no examples is zero).
EMPTY = {
    "relu-empty": (nn.relu, [np.ones((0, 3))], {}, (0, 3)),
    "linear-empty": (nn.linear, [np.ones((0, 3)), np.ones((3, 2)), np.ones(2)], {}, (0, 2)),
    "softmax-empty": (nn.softmax, [np.ones((0, 3))], {}, (0, 3)),
    "conv2d-empty": (nn.conv2d, [np.ones((0, 1, 5, 5)), W4, B1], {}, (0, 1, 3, 3)),
    "max_pool2d-empty": (nn.max_pool2d, [np.ones((0, 1, 4, 4))], {"window": 2}, (0, 1, 2, 2)),
    "flatten-empty": (nn.flatten, [np.ones((0, 1, 2, 2))], {}, (0, 4)),
    "batch_norm_inference-empty": (nn.batch_norm_inference, [np.ones((0, 1, 2, 2)), B1, B1],
                                   {"mean": B1, "var": B1}, (0, 1, 2, 2)),
}  # fmt: skip


@pytest.mark.parametrize("case", EMPTY)
def test_an_empty_batch_gives_an_empty_result_where_one_is_defined(case):
    fn, args, static, shape = EMPTY[case]
    out, vjp = fn(*args, **static)
    assert out.shape == shape
    cotangents = vjp(np.ones(shape))
    assert [c.shape for c in cotangents] == [a.shape for a in args]
    assert all(not np.any(c) for c in cotangents[1:])  # nothing to add up: zero
    assert f"`{case}`" in DOCS.read_text(encoding="utf-8")


def test_every_row_of_the_page_is_a_case_of_these_tests():
    sources = "".join(f.read_text(encoding="utf-8") for f in DOCS.parents[1].glob(
        "tests/test_bad_input_*.py"))  # fmt: skip
    rows = re.findall(r"^\| `([\w-]+)` \|", DOCS.read_text(encoding="utf-8"), re.MULTILINE)
    assert len(rows) == len(set(rows)) > 150
    assert [r for r in rows if not re.search(f'[`"]{r}[`"]', sources)] == []
