"""Tests that kill mutants of the ops that the other tests let survive (docs/mutation.md).

Each test checks behaviour the op's spec page or docstring promises; the mutant it was
written for is named in its docstring (`mutmut show NAME` in build/mutation/).
"""

from __future__ import annotations

import numpy as np
import pytest

from nn import REGISTRY, DataError, DTypeError, ShapeError, ctc_alignment, unflatten
from nn.norm import batch_moments, update_running

# update_running (spec/batch_norm.md, "running averages")


def _running(dtype=np.float64, **kw):
    ones = np.ones(3, dtype)
    return update_running(ones, 2 * ones, 3 * ones, 4 * ones, **kw)


def test_update_running_with_momentum_zero_keeps_the_running_averages():
    """momentum is a weight in [0, 1], both ends included (nn.norm.x_update_running__mutmut_8)."""
    rm, rv = _running(momentum=0.0, count=5)
    assert rm.tolist() == [1.0] * 3 and rv.tolist() == [2.0] * 3


def test_update_running_accepts_the_smallest_count_and_unbiases_by_two():
    """count = 2 is the smallest with an unbiased variance, m / (m - 1) = 2
    (nn.norm.x_update_running__mutmut_17, _18)."""
    rm, rv = _running(momentum=1.0, count=2)
    assert rm.tolist() == [3.0] * 3 and rv.tolist() == [8.0] * 3


def test_update_running_shape_error_names_each_array_and_its_shape():
    """The error names the four arguments with their shapes (x_update_running__mutmut_21-28)."""
    ones = np.ones(3)
    with pytest.raises(ShapeError) as e:
        update_running(ones, ones, ones, np.ones(4), count=4)
    for part in ["'running_mean': (3,)", "'running_var': (3,)", "'mean': (3,)", "'var': (4,)"]:
        assert part in str(e.value)


def test_update_running_refuses_integer_running_mean_naming_it():
    """(nn.norm.x_update_running__mutmut_39: an error without its message)"""
    with pytest.raises(DTypeError, match="running_mean must have a floating dtype, received int"):
        update_running(np.ones(2, int), np.ones(2), np.ones(2), np.ones(2), count=4)


@pytest.mark.parametrize("wide", ["mean", "var", "running_var"])
def test_update_running_returns_the_running_averages_dtype(wide):
    """float32 running averages stay float32 when a batch statistic is float64
    (nn.norm.x_update_running__mutmut_55, _57, _64, _66, _70, _72)."""
    arrays = {k: np.ones(3, np.float32) for k in ["running_mean", "running_var", "mean", "var"]}
    arrays[wide] = np.full(3, 0.1)  # float64, and not exactly representable in float32
    rm, rv = update_running(**arrays, momentum=0.5, count=4)
    assert rm.dtype == np.float32 and rv.dtype == np.float32


# unflatten's sampler of static arguments (nn.op: OpInfo.static)


def test_unflatten_sample_for_an_empty_row_is_refused_with_a_shape_error():
    """With D = 0 no (A, B) is valid; the sampled arguments must reach the contract's
    ShapeError, not fail as unknown keywords (nn.reshape.x__unflatten_static__mutmut_6, _7)."""
    x = np.zeros((2, 0))
    static = REGISTRY["unflatten"].static(np.random.default_rng(0), x)
    with pytest.raises(ShapeError):
        unflatten(x, **static)


@pytest.mark.parametrize("shape", [(2, 3, 4, 0), (2, 3, 0, 4), (0, 3, 4, 4)])
def test_batch_moments_of_no_values_is_a_shape_error(shape):
    """A channel with no values has no mean: a ShapeError, whichever of N, H, W is 0
    (nn.norm.x_batch_moments__mutmut_11, _12: a ZeroDivisionError for W = 0)."""
    with pytest.raises(ShapeError, match="at least one value"):
        batch_moments(np.zeros(shape))


# ctc_alignment's errors name the function, the argument and what was received


@pytest.mark.parametrize(
    ("log_probs", "got"), [([[[0.0]]], "list"), (np.zeros((1, 1, 2), int), "int")]
)
def test_ctc_alignment_refuses_non_float_log_probs_naming_what_it_received(log_probs, got):
    """(nn.ctc.x_ctc_alignment__mutmut_6-15: the received type or dtype lost)"""
    with pytest.raises(DTypeError, match=rf"ctc_alignment: log_probs must be .*received {got}"):
        ctc_alignment(log_probs, np.array([[0]]))


def test_ctc_alignment_label_errors_name_ctc_alignment():
    """(nn.ctc.x_ctc_alignment__mutmut_25, _31, _32: the errors of _lattice named another op)"""
    with pytest.raises(DataError, match=r"^ctc_alignment: labels must be integers"):
        ctc_alignment(np.zeros((1, 2, 2)), np.array([[0.5]]))
