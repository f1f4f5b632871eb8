"""Metrics of read strings (nn/string_metrics.py): label strings, exact matches, the edit
distance against an independent recursive definition, and the character error rate."""

from __future__ import annotations

from functools import cache

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from nn.errors import DataError, ShapeError
from nn.string_metrics import character_error_rate, edit_distance, label_strings, strings_match

# short strings over a small alphabet, so that equal symbols (and so free diagonals) are common
STRINGS = st.lists(st.integers(0, 3), max_size=7)


def reference_distance(a: list[int], b: list[int]) -> int:
    """Levenshtein's definition, recursively on suffixes (memoized): an independent oracle."""

    @cache
    def d(i: int, j: int) -> int:  # the distance from a[i:] to b[j:]
        if i == len(a) or j == len(b):
            return (len(a) - i) + (len(b) - j)
        return min(
            d(i + 1, j) + 1,  # delete a[i]
            d(i, j + 1) + 1,  # insert b[j]
            d(i + 1, j + 1) + (a[i] != b[j]),  # substitute (free when equal)
        )

    return d(0, 0)


def padded(strings: list[list[int]], length: int | None = None) -> np.ndarray:
    """Label strings as an array (N, L), each row its symbols then -1."""
    width = max([len(s) for s in strings], default=0) if length is None else length
    out = np.full((len(strings), width), -1, np.int64)
    for i, s in enumerate(strings):
        out[i, : len(s)] = s
    return out


# --- edit distance ----------------------------------------------------------------------------


@given(STRINGS, STRINGS)
def test_edit_distance_is_levenshteins_recursive_definition(a, b):
    assert edit_distance(a, b) == reference_distance(a, b)


@given(STRINGS, STRINGS, STRINGS)
def test_edit_distance_is_a_metric_within_its_bounds(a, b, c):
    d = edit_distance(a, b)
    assert edit_distance(a, a) == 0
    assert (d == 0) == (a == b)
    assert d == edit_distance(b, a)  # symmetry
    assert edit_distance(a, c) <= d + edit_distance(b, c)  # triangle inequality
    assert abs(len(a) - len(b)) <= d <= max(len(a), len(b))


@pytest.mark.parametrize(
    ("a", "b", "d"),
    [
        ([1, 2, 3, 4], [1, 3, 4, 5], 2),  # the docstring's example: drop 2, append 5
        ([], [], 0),
        ([], [7, 7, 7], 3),
        ([5, 5], [], 2),
        ([1, 2, 3], [3, 2, 1], 2),  # two substitutions, not a free reversal
        ([1, 1], [1], 1),  # a repeated digit read once is one deletion
        ([0, 1, 2, 3, 4, 5, 6], [0, 1, 2, 9, 4, 5, 6], 1),
    ],
)
def test_edit_distance_of_known_pairs(a, b, d):
    assert edit_distance(a, b) == d == reference_distance(a, b)


def test_edit_distance_takes_arrays_of_any_shape_and_returns_an_int():
    d = edit_distance(np.array([[1, 2], [3, 4]]), np.array([1, 3, 4, 5]))  # raveled
    assert d == 2 and type(d) is int


# --- label strings ----------------------------------------------------------------------------


def test_label_strings_cut_each_row_at_its_padding():
    rows = label_strings(np.array([[1, 2, 3], [4, -1, -1], [-1, -1, -1], [0, 0, -1]]))
    assert [r.tolist() for r in rows] == [[1, 2, 3], [4], [], [0, 0]]
    assert [r.tolist() for r in label_strings(np.zeros((3, 0), np.int64))] == [[], [], []]
    assert label_strings(np.zeros((0, 5), np.int64)) == []
    assert [r.tolist() for r in label_strings(np.array([[7, 8]], np.uint8))] == [[7, 8]]


@pytest.mark.parametrize(
    ("labels", "error", "message"),
    [
        ([[1, -1, 2]], DataError, r"row 0 is \[1, -1, 2\]"),  # a symbol after the padding
        ([[1, 2], [-1, 3]], DataError, r"row 1 is \[-1, 3\]"),
        ([[1, -2, -1]], DataError, r"then -1 padding and nothing else; row 0"),  # below -1
        ([1, 2, 3], ShapeError, r"integer array \(N, L\)"),  # one string, not a batch
        ([[[1]]], ShapeError, r"integer array \(N, L\)"),
        ([[1.0, 2.0]], ShapeError, r"received float64 \(1, 2\)"),
    ],
)
def test_bad_labels_raise_named_errors(labels, error, message):
    with pytest.raises(error, match=message):
        label_strings(np.array(labels))
    with pytest.raises(error, match=message):
        strings_match(np.array(labels), [[]] * len(labels))
    with pytest.raises(error, match=message):
        character_error_rate(np.array(labels), [[]] * len(labels))


# --- whole strings and the character error rate -----------------------------------------------


def test_strings_match_whole_strings_only():
    truth = np.array([[1, 2, 3], [4, 5, -1], [1, 1, -1], [-1, -1, -1]])
    read = [np.array([1, 2, 3]), [4], np.array([[1, 1]]), []]  # any sequence, any shape
    assert strings_match(truth, read).tolist() == [True, False, True, True]
    assert strings_match(truth, [[1, 2], [4, 5, 6], [1], [0]]).tolist() == [False] * 4
    assert strings_match(truth, read).dtype == bool


@pytest.mark.parametrize("fn", [strings_match, character_error_rate])
def test_one_read_string_per_label_row(fn):
    with pytest.raises(ShapeError, match=r"expected 2 \(one per label row\), received 3"):
        fn(np.array([[1], [2]]), [[1], [2], [3]])


def test_character_error_rate_of_the_docstring_and_of_insertions():
    truth = np.array([[1, 2, 3], [4, 5, -1]])
    assert character_error_rate(truth, [[1, 2, 3], [4]]) == pytest.approx(1 / 5)
    # extra digits count too: the rate is not bounded by 1
    assert character_error_rate(np.array([[1]]), [[2, 3, 4]]) == 3.0


@given(st.lists(st.tuples(STRINGS, STRINGS), min_size=1, max_size=5))
def test_character_error_rate_is_total_distance_over_true_characters(pairs):
    truth, read = [list(t) for t, _ in pairs], [list(r) for _, r in pairs]
    labels = padded(truth, length=8)  # extra padding columns change nothing
    chars = sum(map(len, truth))
    if chars == 0:
        with pytest.raises(DataError, match="the true strings have no characters"):
            character_error_rate(labels, read)
        return
    cer = character_error_rate(labels, read)
    expected = sum(reference_distance(t, r) for t, r in pairs) / chars
    assert cer == pytest.approx(expected, rel=1e-12)
    assert (cer == 0) == bool(strings_match(labels, read).all())
    assert (cer == 0) == (truth == read)


@given(st.lists(STRINGS.filter(len), min_size=1, max_size=5))
def test_reading_the_truth_is_a_perfect_score(truth):
    labels = padded(truth)
    assert strings_match(labels, truth).all()
    assert character_error_rate(labels, [np.array(t) for t in truth]) == 0.0
