"""nn.metrics: against explicit Python loops, the identities that tie the three together, errors."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from nn.errors import DataError, DTypeError, ShapeError
from nn.metrics import accuracy, confusion_matrix, per_class_accuracy


@st.composite
def labelled(draw, min_n=0):
    """(y_true, y_pred, k) with N in [min_n, 40], K in [1, 12], in a random integer dtype."""
    k = draw(st.integers(1, 12))
    n = draw(st.integers(min_n, 40))
    dtype = draw(st.sampled_from([np.uint8, np.int32, np.int64, np.uint64]))
    labels = arrays(dtype, n, elements=st.integers(0, k - 1))
    return draw(labels), draw(labels), k


def loop_confusion(y_true, y_pred, k):
    counts = [[0] * k for _ in range(k)]
    for t, p in zip(y_true.tolist(), y_pred.tolist(), strict=True):
        counts[t][p] += 1
    return counts


@given(labelled())
def test_confusion_matrix_against_a_loop(case):
    """Rows are true classes, columns predictions; int64 whatever the label dtype."""
    y_true, y_pred, k = case
    got = confusion_matrix(y_true, y_pred, k)
    assert got.dtype == np.int64 and got.shape == (k, k)
    assert got.tolist() == loop_confusion(y_true, y_pred, k)


@given(labelled(min_n=1))
def test_accuracy_against_a_loop(case):
    y_true, y_pred, _ = case
    hits = sum(t == p for t, p in zip(y_true.tolist(), y_pred.tolist(), strict=True))
    got = accuracy(y_true, y_pred)
    assert isinstance(got, float)
    assert got == hits / len(y_true)


@given(labelled())
def test_per_class_accuracy_against_a_loop(case):
    """Recall of each true class; NaN exactly for the classes with no sample."""
    y_true, y_pred, k = case
    got = per_class_accuracy(y_true, y_pred, k)
    assert got.dtype == np.float64 and got.shape == (k,)
    for c in range(k):
        preds = [p for t, p in zip(y_true.tolist(), y_pred.tolist(), strict=True) if t == c]
        if preds:
            assert got[c] == sum(p == c for p in preds) / len(preds)
        else:
            assert np.isnan(got[c])


@given(labelled(min_n=1))
def test_the_three_agree(case):
    """sum(C) = N, trace(C) / N = accuracy, per-class = diag(C) / row sums of C."""
    y_true, y_pred, k = case
    c = confusion_matrix(y_true, y_pred, k)
    assert c.sum() == len(y_true)
    assert np.trace(c) / len(y_true) == accuracy(y_true, y_pred)
    rows = c.sum(axis=1)
    present = rows > 0
    np.testing.assert_array_equal(
        per_class_accuracy(y_true, y_pred, k)[present], np.diag(c)[present] / rows[present]
    )


def test_asymmetric_example_fixes_orientation():
    """Class-0 samples predicted as 1 sit in row 0 (true class), column 1 (predicted class)."""
    y_true = np.array([0, 0, 0, 1], dtype=np.uint8)
    y_pred = np.array([1, 1, 1, 1], dtype=np.uint8)
    np.testing.assert_array_equal(
        confusion_matrix(y_true, y_pred, 3), [[0, 3, 0], [0, 1, 0], [0, 0, 0]]
    )
    np.testing.assert_array_equal(per_class_accuracy(y_true, y_pred, 3), [0.0, 1.0, np.nan])
    assert accuracy(y_true, y_pred) == 0.25


def test_uint8_labels_with_many_classes_do_not_wrap():
    """t * K + p overflows uint8 for K = 30 (29 * 30 + 29 = 899): it must be computed in int64."""
    y = np.arange(30, dtype=np.uint8)
    np.testing.assert_array_equal(confusion_matrix(y, y, 30), np.eye(30, dtype=np.int64))


def test_empty_inputs():
    """No samples: an all-zero matrix and all-NaN recall are well defined; accuracy is not."""
    empty = np.array([], dtype=np.int64)
    np.testing.assert_array_equal(confusion_matrix(empty, empty, 2), np.zeros((2, 2)))
    assert np.isnan(per_class_accuracy(empty, empty, 2)).all()
    with pytest.raises(DataError, match="accuracy: y_true and y_pred are empty"):
        accuracy(empty, empty)


ok = np.array([0, 1, 2])


@pytest.mark.parametrize("function", [confusion_matrix, per_class_accuracy, accuracy])
@pytest.mark.parametrize(
    ("y_true", "y_pred", "error", "message"),
    [
        (ok, ok[:2], ShapeError, r"must both have shape \(N,\), received \(3,\) and \(2,\)"),
        (ok[:, None], ok[:, None], ShapeError, r"received \(3, 1\) and \(3, 1\)"),
        (np.array(1), np.array(1), ShapeError, r"received \(\) and \(\)"),
        (
            ok,
            ok.astype(float),
            DTypeError,
            "y_pred must hold integer labels, received dtype float64",
        ),
        (ok.astype(bool), ok, DTypeError, "y_true must hold integer labels, received dtype bool"),
    ],
)
def test_shape_and_dtype_errors_name_the_function_and_both_shapes(
    function, y_true, y_pred, error, message
):
    args = (y_true, y_pred) if function is accuracy else (y_true, y_pred, 3)
    with pytest.raises(error, match=f"^{function.__name__}: .*{message}"):
        function(*args)


@pytest.mark.parametrize("function", [confusion_matrix, per_class_accuracy])
@pytest.mark.parametrize(
    ("y_true", "y_pred", "k", "message"),
    [
        (ok, ok, 2, "y_true must lie in 0..1 for k=2, received values from 0 to 2"),
        (ok, ok - 1, 3, "y_pred must lie in 0..2 for k=3, received values from -1 to 1"),
        (ok, ok, 0, "k .* must be an integer >= 1, received 0"),
        (ok, ok, 3.0, "received 3.0"),
        (ok, ok, True, "received True"),
    ],
)
def test_labels_outside_the_classes_are_data_errors(function, y_true, y_pred, k, message):
    with pytest.raises(DataError, match=f"^{function.__name__}: .*{message}"):
        function(y_true, y_pred, k)
