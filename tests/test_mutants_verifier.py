"""Tests that kill mutants of the verifier (nn/testing.py, nn/numdiff.py) and of the op
machinery (nn/op.py) that the other tests let survive (docs/mutation.md).

Each test checks behaviour the module's docstrings promise; the mutant it was written for is
named in its docstring (`mutmut show NAME` in build/mutation/).
"""

from __future__ import annotations

import numpy as np
import pytest

import nn
from nn.errors import VerificationError
from nn.testing import check_float32, check_reference

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
