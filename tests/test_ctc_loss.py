"""ctc_loss and ctc_alignment: brute-force references (P8), the spec page's invariants, the
gradient protocol through log_softmax, and shape laws (P10).

The gradient protocol on ctc_loss itself (P1-P4, P7), with labels from its registered sampler,
runs in test_contract.py.
"""

from __future__ import annotations

import itertools
import math
import warnings

import numpy as np
import pytest
import scipy.special
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import nn
from nn import ctc_alignment, ctc_loss, log_softmax
from nn.ctc import ctc_log_likelihood
from nn.testing import check_reference, check_vjp

# --- references -------------------------------------------------------------------------


def collapse(path, blank):
    """B: merge runs of equal classes, then drop the blanks."""
    return tuple(c for i, c in enumerate(path) if c != blank and (i == 0 or c != path[i - 1]))


def brute_force(lp, label):
    """(log p, gamma (T, K)) for one example by enumerating all K**T alignments."""
    t, k = lp.shape
    paths = np.array(list(itertools.product(range(k), repeat=t)), dtype=int).reshape(-1, t)
    hits = paths[[collapse(tuple(p), k - 1) == tuple(label) for p in paths]]  # (P, T)
    logs = lp[np.arange(t), hits].sum(axis=1)  # (P,): log of each alignment's product
    logp = scipy.special.logsumexp(logs) if len(hits) else -np.inf
    gamma = np.zeros((t, k))
    for path, w in zip(hits, np.exp(logs - logp), strict=True):
        gamma[np.arange(t), path] += w
    return logp, gamma


def pad(rows, width=None):
    """Label rows (lists) as an (N, L) int array padded with -1."""
    width = max((len(r) for r in rows), default=0) if width is None else width
    out = np.full((len(rows), width), -1, dtype=np.int64)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def reference_loss(log_probs, *, labels):
    rows = [[c for c in r if c >= 0] for r in labels.tolist()]
    return -np.mean([brute_force(lp, r)[0] for lp, r in zip(log_probs, rows, strict=True)])


def repeats(row):
    return sum(a == b for a, b in itertools.pairwise(row))


# (T, K, label rows): empty rows, repeats, labels as long as T allows
CASES = [
    (1, 2, [[], [0]]),
    (2, 2, [[0], [], [0]]),
    (3, 2, [[0, 0], [0], []]),
    (4, 3, [[0, 1], [1, 1], [0, 1, 0, 1], []]),
    (5, 3, [[0, 1, 0], [1, 1, 0], [0, 0, 0], [1]]),
    (6, 3, [[0, 0, 1], [1, 0, 1, 0], [0, 1, 1, 0], [1, 1, 1], []]),
]


def random_log_probs(seed, shape, normalized=True, scale=2.0):
    x = scale * np.random.default_rng(seed).standard_normal(shape)
    return log_softmax(x)[0] if normalized else x


def log_softmax_then_ctc(logits, *, labels):
    """ctc_loss(log_softmax(logits)): the way a network uses it, as one op."""
    lp, vjp_softmax = log_softmax(logits)
    loss, vjp_ctc = ctc_loss(lp, labels=labels)

    def vjp(g):
        return vjp_softmax(vjp_ctc(g)[0])

    return loss, vjp


# --- invariants ---------------------------------------------------------------------------


@pytest.mark.spec("ctc_loss", 1)
@pytest.mark.parametrize(("t", "k", "rows"), CASES)
@pytest.mark.parametrize("normalized", [True, False], ids=["log_softmax", "free"])
def test_value_matches_brute_force_enumeration(t, k, rows, normalized):
    """P8: the loss equals -mean log of the sum over all K**T collapsing alignments."""
    labels = pad(rows)
    lp = random_log_probs(t * k, (len(rows), t, k), normalized)
    check_reference(ctc_loss, reference_loss, lp, static={"labels": labels}, atol=1e-13)


@pytest.mark.spec("ctc_loss", 2)
@pytest.mark.parametrize(("t", "k", "rows"), CASES)
@pytest.mark.parametrize("normalized", [True, False], ids=["log_softmax", "free"])
def test_gradient_matches_brute_force_posteriors(t, k, rows, normalized):
    """dlp[n,t,k] = -g gamma_n[t,k] / N with gamma summed over the enumerated alignments."""
    labels = pad(rows)
    lp = random_log_probs(t * k + 1, (len(rows), t, k), normalized)
    gamma = np.stack([brute_force(x, r)[1] for x, r in zip(lp, rows, strict=True)])
    _, vjp = ctc_loss(lp, labels=labels)
    (dlp,) = vjp(np.array(-1.5))
    np.testing.assert_allclose(dlp, 1.5 * gamma / len(rows), rtol=1e-10, atol=1e-13)


@pytest.mark.spec("ctc_loss", 3)
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_gradient_through_log_softmax(seed):
    """Through log_softmax the gradient is g (softmax - gamma) / N, and the composition passes
    the gradient protocol (P2-P4, P7) on the logits, also at scale 5."""
    t, k, rows = CASES[4]
    labels = pad(rows, width=4)
    logits = 2.0 * np.random.default_rng(seed).standard_normal((len(rows), t, k))
    check_vjp(log_softmax_then_ctc, logits, static={"labels": labels}, seed=seed)
    check_vjp(log_softmax_then_ctc, 5 * logits, static={"labels": labels}, seed=seed)
    lp = log_softmax(logits)[0]
    gamma = np.stack([brute_force(x, r)[1] for x, r in zip(lp, rows, strict=True)])
    _, vjp = log_softmax_then_ctc(logits, labels=labels)
    (dx,) = vjp(np.array(1.0))
    expected = (scipy.special.softmax(logits, axis=-1) - gamma) / len(rows)
    np.testing.assert_allclose(dx, expected, rtol=1e-10, atol=1e-14)


@pytest.mark.spec("ctc_loss", 4)
@pytest.mark.parametrize("width", [0, 1, 3])
def test_empty_label_is_all_blanks(width):
    """An empty label has one alignment, all blanks: L = -mean_n sum_t lp[n, t, blank]; its
    gradient is -1/N on the blank column; with T = 0 the loss is 0."""
    lp = random_log_probs(7, (3, 5, 4), normalized=False)
    labels = np.full((3, width), -1)
    loss, vjp = ctc_loss(lp, labels=labels)
    assert np.isclose(loss, -lp[:, :, -1].sum(axis=1).mean(), rtol=1e-14)
    expected = np.zeros_like(lp)
    expected[:, :, -1] = -1 / 3
    np.testing.assert_allclose(vjp(np.array(1.0))[0], expected, rtol=1e-14, atol=0)
    loss, vjp = ctc_loss(np.zeros((2, 0, 3)), labels=np.full((2, width), -1))
    assert loss == 0.0 and vjp(np.array(1.0))[0].shape == (2, 0, 3)


@pytest.mark.spec("ctc_loss", 5)
@pytest.mark.parametrize(
    ("t", "row"),
    [(1, [0]), (4, []), (4, [1, 2]), (5, [0, 0]), (6, [2, 2, 2]), (400, [0, 1, 2, 3, 4, 5, 6]),
     (400, [3, 3, 1, 9, 9, 9, 0]), (60, [1] * 30)],
)  # fmt: skip
def test_constant_log_probs_count_alignments(t, row):
    """With every entry equal to c, each alignment has probability e^{cT}, and a label of
    length L with r repeats has C(T + L - r, 2L) of them: L = -Tc - log C(T + L - r, 2L).
    T = 400 included: e^{cT} underflows there, the loss does not."""
    c = -math.log(11.0)
    lp = np.full((1, t, 11), c)
    loss, _ = ctc_loss(lp, labels=pad([row]))
    count = math.comb(t + len(row) - repeats(row), 2 * len(row))
    assert np.isclose(loss, -t * c - math.log(count), rtol=1e-13)


@pytest.mark.spec("ctc_loss", 6)
@pytest.mark.parametrize("seed", [0, 1])
def test_full_length_label_has_one_alignment(seed):
    """A label of length T without repeats has exactly one alignment, the label itself:
    L = -sum_t lp[t, l_t] and the gradient is -onehot(l) / N."""
    lp = random_log_probs(seed, (1, 5, 6), normalized=False)
    row = [4, 0, 3, 0, 1]
    loss, vjp = ctc_loss(lp, labels=pad([row]))
    assert np.isclose(loss, -lp[0, np.arange(5), row].sum(), rtol=1e-14)
    np.testing.assert_allclose(vjp(np.array(1.0))[0], -np.eye(6)[row][None], atol=1e-14)


@pytest.mark.spec("ctc_loss", 7)
def test_repeated_label_needs_a_blank():
    """The label "11" cannot be read from T = 2 columns (11 collapses to "1"): DataError; from T = 3
    it has exactly one alignment, 1-1 (the skip 1 -> 1 over the blank is forbidden)."""
    lp = random_log_probs(3, (1, 3, 3), normalized=False)
    with pytest.raises(nn.DataError, match="1 adjacent repeat"):
        ctc_loss(lp[:, :2], labels=pad([[1, 1]]))
    loss, vjp = ctc_loss(lp, labels=pad([[1, 1]]))
    assert np.isclose(loss, -(lp[0, 0, 1] + lp[0, 1, 2] + lp[0, 2, 1]), rtol=1e-14)
    expected = -np.eye(3)[[1, 2, 1]][None]
    np.testing.assert_allclose(vjp(np.array(1.0))[0], expected, atol=1e-14)


@pytest.mark.spec("ctc_loss", 8)
@pytest.mark.parametrize(("t", "k", "rows"), CASES)
def test_padding_width_does_not_matter(t, k, rows):
    """Extra -1 columns change neither the loss nor the gradient."""
    lp = random_log_probs(t, (len(rows), t, k))
    loss, vjp = ctc_loss(lp, labels=pad(rows))
    g = vjp(np.array(1.0))[0]
    for extra in (1, 4):
        wide = pad(rows, width=max(len(r) for r in rows) + extra)
        loss2, vjp2 = ctc_loss(lp, labels=wide)
        assert np.isclose(loss2, loss, rtol=1e-14, atol=1e-15)
        np.testing.assert_allclose(vjp2(np.array(1.0))[0], g, rtol=1e-13, atol=1e-15)


@pytest.mark.spec("ctc_loss", 9)
@pytest.mark.parametrize(("t", "k", "rows"), CASES)
def test_posteriors_sum_to_one_per_column(t, k, rows):
    """sum_k gamma[t, k] = 1 for every column; ctc_alignment's states also sum to 1 per
    column, are 0 past 2 len + 1, and summed by class they are gamma by enumeration."""
    labels = pad(rows, width=max(len(r) for r in rows) + 1)
    lp = random_log_probs(t + 10, (len(rows), t, k), normalized=False)
    _, vjp = ctc_loss(lp, labels=labels)
    (dlp,) = vjp(np.array(1.0))
    np.testing.assert_allclose(dlp.sum(axis=-1), -1 / len(rows), rtol=1e-12)
    post = ctc_alignment(lp, labels)  # (N, T, S)
    assert post.shape == (len(rows), t, 2 * labels.shape[1] + 1)
    np.testing.assert_allclose(post.sum(axis=-1), 1.0, rtol=1e-12)
    for n, row in enumerate(rows):
        ext = [k - 1] + [c for r in row for c in (r, k - 1)]  # (blank, l1, blank, ...)
        assert np.all(post[n, :, len(ext) :] == 0)
        by_class = post[n, :, : len(ext)] @ np.eye(k)[ext]  # (T, K)
        np.testing.assert_allclose(by_class, brute_force(lp[n], row)[1], rtol=1e-10, atol=1e-13)


@pytest.mark.spec("ctc_loss", 10)
@pytest.mark.parametrize("seed", [0, 1])
def test_column_shift_changes_value_by_minus_mean_shift(seed):
    """Adding c[n, t] to every class of column t adds c[n, t] to every alignment's log:
    L changes by -sum_{n,t} c[n, t] / N, and the gradient does not change."""
    t, k, rows = CASES[5]
    lp = random_log_probs(seed, (len(rows), t, k), normalized=False)
    shift = 3.0 * np.random.default_rng(seed + 1).standard_normal((len(rows), t, 1))
    loss, vjp = ctc_loss(lp, labels=pad(rows))
    loss2, vjp2 = ctc_loss(lp + shift, labels=pad(rows))
    assert np.isclose(loss2, loss - shift.sum() / len(rows), rtol=1e-13)
    np.testing.assert_allclose(vjp2(np.array(1.0))[0], vjp(np.array(1.0))[0], atol=1e-13)


@pytest.mark.spec("ctc_loss", 11)
def test_examples_are_independent():
    """A batch's loss is the mean of its examples' losses; each example's gradient is its
    own gradient divided by N (the 1/N of the mean)."""
    t, k, rows = CASES[5]
    lp = random_log_probs(5, (len(rows), t, k))
    loss, vjp = ctc_loss(lp, labels=pad(rows))
    (dlp,) = vjp(np.array(1.0))
    singles = [ctc_loss(lp[n : n + 1], labels=pad([r])) for n, r in enumerate(rows)]
    assert np.isclose(loss, np.mean([s[0] for s in singles]), rtol=1e-14)
    for n, (_, v) in enumerate(singles):
        np.testing.assert_allclose(dlp[n], v(np.array(1.0))[0][0] / len(rows), rtol=1e-13)


@pytest.mark.spec("ctc_loss", 12)
def test_bad_labels_raise_named_errors():
    """Non-integer, out-of-range (the blank K-1 included), mid-row padding and too-long
    labels raise DataError; a wrong labels shape ShapeError; complex log-probs DTypeError.
    Messages name labels (and, for a label too long, the example, its length, repeats and T)."""
    lp = np.zeros((2, 4, 3))
    for bad in ([[0, 1], [1, 0.5]], [[0, 2], [1, 0]], [[0, -2], [1, 0]], [[-1, 0], [1, 0]]):
        with pytest.raises(nn.DataError, match="labels"):
            ctc_loss(lp, labels=np.array(bad))
    for shape in [(2,), (3, 2), (2, 2, 1)]:
        with pytest.raises(nn.ShapeError, match="labels"):
            ctc_loss(lp, labels=np.zeros(shape, dtype=int))
    too_long = r"example 1 .* length 3 and 1 adjacent repeat.*at least 4 columns, but T = 3"
    with pytest.raises(nn.DataError, match=too_long):
        ctc_loss(lp[:, :3], labels=pad([[0, 1, 0], [1, 1, 0]]))
    with pytest.raises(nn.DTypeError, match="real"):
        ctc_loss(lp.astype(complex), labels=pad([[0], [1]]))
    with pytest.raises(nn.DTypeError, match="log_probs"):
        ctc_alignment(lp.astype(int), pad([[0], [1]]))
    with pytest.raises(nn.ShapeError, match="log_probs"):
        ctc_alignment(lp[0], pad([[0], [1]]))


@pytest.mark.spec("ctc_loss", 13)
@pytest.mark.parametrize(("t", "k", "rows"), CASES[3:])
def test_float32_agrees_with_float64(t, k, rows):
    """float32 in gives a float32 loss, cotangent and alignment, equal to float64 to float32
    precision (the recursion runs in float64 either way)."""
    lp = random_log_probs(t, (len(rows), t, k))
    labels = pad(rows)
    l64, v64 = ctc_loss(lp, labels=labels)
    l32, v32 = ctc_loss(lp.astype(np.float32), labels=labels)
    (d32,) = v32(np.array(1.0, dtype=np.float32))
    assert l32.dtype == d32.dtype == ctc_alignment(lp.astype(np.float32), labels).dtype
    assert d32.dtype == np.float32
    assert np.isclose(l32, l64, rtol=1e-6)
    np.testing.assert_allclose(d32, v64(np.array(1.0))[0], rtol=1e-5, atol=1e-6)


@pytest.mark.spec("ctc_loss", 14)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_long_sequences_stay_finite(dtype):
    """T = 400 columns of log-probs near -5 (the product of a path's probabilities is about
    e^-2000, 0 in any float): the loss is finite, near 2000, with a finite gradient whose
    columns sum to -1/N, and no floating-point warning."""
    rng = np.random.default_rng(0)
    lp = (-5 + 0.5 * rng.standard_normal((2, 400, 11))).astype(dtype)
    assert np.exp(lp[0].astype(np.float64)).min(axis=1).prod() == 0.0  # probability space: 0
    labels = pad([[3, 3, 1, 9, 9, 9, 0], list(range(10)) * 5])
    with np.errstate(all="raise"):
        loss, vjp = ctc_loss(lp, labels=labels)
        (dlp,) = vjp(np.array(1.0, dtype=dtype))
    assert 1000 < loss < 3000
    assert np.isfinite(dlp).all() and dlp.dtype == dtype
    np.testing.assert_allclose(dlp.sum(axis=-1), -0.5, rtol=1e-4)


@pytest.mark.spec("ctc_loss", 15)
def test_minus_infinity_entries():
    """-inf log-probs (probability 0) where no alignment needs them, and entries of -1e4: the
    loss equals brute force and the gradient is finite (0 at the -inf entries), with no
    warning. When every alignment needs a -inf entry (p = 0), the loss is +inf and that
    example's gradient is 0, not NaN."""
    t, k, rows = CASES[4]
    lp = random_log_probs(9, (len(rows), t, k))
    lp[0, :, 2] = -np.inf  # row 0 = "010" never needs the blank
    lp[3, 1:, 0] = -np.inf  # row 3 = "1" never needs class 0
    lp[2, 2:4] = -1e4  # row 2 = "000"; its only alignments pass these two columns
    labels = pad(rows)
    with np.errstate(all="raise"):
        loss, vjp = ctc_loss(lp, labels=labels)
        (dlp,) = vjp(np.array(1.0))
    assert np.isclose(loss, reference_loss(lp, labels=labels), rtol=1e-13)
    assert np.isfinite(dlp).all() and np.all(dlp[0, :, 2] == 0) and np.all(dlp[3, 1:, 0] == 0)
    lp[1, :, 1] = -np.inf  # row 1 = "110" needs class 1
    with np.errstate(all="raise"):
        loss, vjp = ctc_loss(lp, labels=labels)
        (dlp,) = vjp(np.array(1.0))
        post = ctc_alignment(lp, labels)
    assert loss == np.inf and np.all(dlp[1] == 0) and np.all(post[1] == 0)
    assert np.isfinite(dlp).all() and np.allclose(post[[0, 2, 3]].sum(axis=-1), 1.0)


@st.composite
def problems(draw):
    """Random (N, T, K) log-probs, float32 or float64, with feasible padded labels."""
    n, t, k = draw(st.integers(1, 4)), draw(st.integers(0, 7)), draw(st.integers(1, 5))
    dtype = draw(st.sampled_from([np.float32, np.float64]))
    lp = draw(arrays(dtype, (n, t, k), elements=st.floats(-30, 5, width=32)))
    rows = []
    for _ in range(n):
        row = draw(st.lists(st.integers(0, k - 2), max_size=t)) if k > 1 else []
        while len(row) + repeats(row) > t:
            row.pop()
        rows.append(row)
    labels = pad(rows, width=max(len(r) for r in rows) + draw(st.integers(0, 2)))
    return lp, labels


@pytest.mark.spec("ctc_loss", 16)
@settings(max_examples=60, deadline=None)
@given(problems())
def test_shape_laws(problem):
    """P10: the loss is a 0-d array and the cotangent has log_probs' shape and dtype; the
    alignment is (N, T, 2L + 1); all finite."""
    lp, labels = problem
    loss, vjp = ctc_loss(lp, labels=labels)
    (dlp,) = vjp(np.array(1.0, dtype=lp.dtype))
    assert isinstance(loss, np.ndarray) and loss.shape == () and loss.dtype == lp.dtype
    assert dlp.shape == lp.shape and dlp.dtype == lp.dtype
    post = ctc_alignment(lp, labels)
    assert post.shape == (*lp.shape[:2], 2 * labels.shape[1] + 1) and post.dtype == lp.dtype
    assert np.isfinite(loss) and np.isfinite(dlp).all() and np.isfinite(post).all()


@pytest.mark.spec("ctc_loss", 17)
@pytest.mark.parametrize(("t", "k", "rows"), CASES)
def test_log_likelihood_per_example(t, k, rows):
    """log p(l_n | x_n) of each example against enumeration; -mean is the loss; float32 in
    gives float64 out; an impossible label is -inf; bad input is named as in ctc_loss."""
    labels = pad(rows)
    lp = random_log_probs(t * k + 2, (len(rows), t, k))
    got = ctc_log_likelihood(lp, labels)
    assert got.shape == (len(rows),) and got.dtype == np.float64
    want = [brute_force(x, r)[0] for x, r in zip(lp, rows, strict=True)]
    np.testing.assert_allclose(got, want, rtol=1e-12)
    assert math.isclose(-got.mean(), ctc_loss(lp, labels=labels)[0], rel_tol=1e-14)
    assert ctc_log_likelihood(lp[:0], labels[:0]).shape == (0,)  # ctc_loss refuses N = 0
    # Too long for T (ctc_loss refuses it): no alignment, probability 0, no warning.
    too_long = pad([[0] * (t + 1), *rows[1:]])
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        far = ctc_log_likelihood(lp, too_long)
    assert far[0] == brute_force(lp[0], [0] * (t + 1))[0] == -np.inf
    np.testing.assert_allclose(far[1:], got[1:], rtol=1e-12)
    single = ctc_log_likelihood(lp.astype(np.float32), labels)
    assert single.dtype == np.float64
    np.testing.assert_allclose(single, got, rtol=1e-5)
    if rows[0]:
        blocked = lp.copy()
        blocked[0, :, rows[0][0]] = -np.inf  # the first label's first symbol cannot be written
        assert ctc_log_likelihood(blocked, labels)[0] == -np.inf
    with pytest.raises(nn.DataError, match="ctc_log_likelihood: labels must lie in"):
        ctc_log_likelihood(lp, np.full_like(labels, k - 1))
    with pytest.raises(nn.DTypeError, match="ctc_log_likelihood: log_probs must be a real float"):
        ctc_log_likelihood(lp.astype(np.int64), labels)
    with pytest.raises(nn.ShapeError, match="ctc_log_likelihood: log_probs must have shape"):
        ctc_log_likelihood(lp[0], labels)
