"""CTC decoding: the invariants of spec/best_path.md and spec/beam_search.md.

References are independent of nn.decode: brute force over all K^T alignments (the exact
probability of every string, the best alignment of every string), a per-example Python loop
for the collapse, and a dict-based prefix beam search written from Hannun et al.'s pseudocode
in Python floats.
"""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from nn.decode import Reading, beam_search, best_path, forced_alignment, readings_to_labels
from nn.errors import DataError, DTypeError, ShapeError


def normalized(rng, shape, scale=2.0):
    """Random log-probabilities (log_softmax of Gaussian logits), float64."""
    x = rng.normal(size=shape) * scale
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


def collapse(path, blank):
    """B(path): merge runs of equal classes, then drop blanks."""
    out, prev = [], None
    for c in path:
        if c != prev and c != blank:
            out.append(int(c))
        prev = c
    return tuple(out)


def runs(path, blank):
    """[(symbol, [columns])] for each run of equal non-blank classes, in order."""
    found = []
    for t, c in enumerate(path):
        if c == blank:
            continue
        if t and path[t - 1] == c:
            found[-1][1].append(t)
        else:
            found.append((int(c), [t]))
    return found


def brute(lp):
    """{string: (log p(string), best alignment log-prob, best alignment)} over all K^T paths."""
    t_len, k = lp.shape
    paths = np.array(list(itertools.product(range(k), repeat=t_len)))
    scores = lp[np.arange(t_len), paths].sum(axis=1)
    table = {}
    for path, score in zip(paths, scores, strict=True):
        s = collapse(path, k - 1)
        total, best, where = table.get(s, (-math.inf, -math.inf, None))
        if score > best:
            best, where = score, path
        table[s] = (np.logaddexp(total, score), best, where)
    return table


def lae(a, b):
    if a == -math.inf:
        return b
    if b == -math.inf:
        return a
    return max(a, b) + math.log1p(math.exp(-abs(a - b)))


def reference_beam_search(lp, beam):
    """Prefix beam search as in Hannun et al. (2014), Algorithm 1, without a language model."""
    t_len, k = lp.shape
    blank = k - 1
    beams = {(): (0.0, -math.inf)}
    for t in range(t_len):
        nxt = {}

        def add(prefix, b=-math.inf, nb=-math.inf, nxt=nxt):
            old_b, old_nb = nxt.get(prefix, (-math.inf, -math.inf))
            nxt[prefix] = (lae(old_b, b), lae(old_nb, nb))

        for prefix, (b, nb) in beams.items():
            for c in range(k):
                p = float(lp[t, c])
                if c == blank:
                    add(prefix, b=lae(b, nb) + p)
                elif prefix and c == prefix[-1]:
                    add(prefix, nb=nb + p)
                    add((*prefix, c), nb=b + p)
                else:
                    add((*prefix, c), nb=lae(b, nb) + p)
        beams = dict(sorted(nxt.items(), key=lambda kv: -lae(*kv[1]))[:beam])
    best = max(beams, key=lambda s: lae(*beams[s]))
    return best, lae(*beams[best])


def tiny_cases(seed, count):
    """Random normalized (T, K) inputs small enough for brute force (K^T <= 1024)."""
    rng = np.random.default_rng(seed)
    for _ in range(count):
        k = int(rng.integers(2, 5))
        t = int(rng.integers(1, 6 if k < 4 else 5))
        yield normalized(rng, (t, k), scale=float(rng.choice([0.5, 1.0, 2.0, 4.0])))


def labels_of(reading):
    return tuple(reading.labels.tolist())


# --- best_path ------------------------------------------------------------------------------


@pytest.mark.spec("best_path", 1)
def test_best_path_collapses_the_argmax_path():
    rng = np.random.default_rng(0)
    for _ in range(20):
        n, t, k = int(rng.integers(1, 30)), int(rng.integers(1, 15)), int(rng.integers(2, 7))
        # Rounded log-probabilities make ties and long runs of equal classes common.
        lp = np.round(rng.normal(size=(n, t, k)), 0)
        readings = best_path(lp)
        assert len(readings) == n
        for x, r in zip(lp, readings, strict=True):
            path = x.argmax(axis=1)
            assert labels_of(r) == collapse(path, k - 1)
            assert r.labels.dtype == np.int64 and r.labels.shape == (len(r.labels),)
            assert not np.any(r.labels == k - 1)
            # Equal neighbours in the string were separated by a blank in the path.
            spans = runs(path, k - 1)
            for (a, cols_a), (b, cols_b) in itertools.pairwise(spans):
                if a == b:
                    assert (path[cols_a[-1] + 1 : cols_b[0]] == k - 1).any()
    # By hand: 0 _ 0 reads "00", 0 0 reads "0", _ _ reads "".
    y = np.log([[0.6, 0.1, 0.3], [0.2, 0.1, 0.7], [0.8, 0.1, 0.1]])
    assert best_path(y[None])[0].text == "00"
    assert best_path(y[[0, 2]][None])[0].text == "0"
    assert best_path(y[[1, 1]][None])[0].text == ""


@pytest.mark.spec("best_path", 2)
def test_best_path_log_prob_is_the_most_probable_alignment():
    for lp in tiny_cases(1, 40):
        table = brute(lp)
        s, (_, best, _) = max(table.items(), key=lambda kv: kv[1][1])
        r = best_path(lp[None])[0]
        assert labels_of(r) == s
        assert r.log_prob == pytest.approx(best, rel=1e-12, abs=1e-12)
        assert r.log_prob >= max(v[1] for v in table.values()) - 1e-12


@pytest.mark.spec("best_path", 3)
def test_best_path_confidences():
    rng = np.random.default_rng(2)
    for _ in range(20):
        k = int(rng.integers(2, 12))
        lp = normalized(rng, (8, int(rng.integers(1, 40)), k), scale=3.0)
        for x, r in zip(lp, best_path(lp), strict=True):
            path = x.argmax(axis=1)
            expected = [max(math.exp(x[t, c]) for t in cols) for c, cols in runs(path, k - 1)]
            np.testing.assert_allclose(r.confidences, expected, rtol=1e-14)
            assert r.confidences.dtype == np.float64
            assert np.all(r.confidences >= 1 / k - 1e-15) and np.all(r.confidences <= 1)
            # The argmax path is the best alignment of its own string.
            np.testing.assert_array_equal(forced_alignment(x, r.labels), path)


@pytest.mark.spec("best_path", 4)
def test_batch_dtypes_and_edge_shapes_agree():
    rng = np.random.default_rng(3)
    lp = normalized(rng, (12, 9, 5)).astype(np.float32)
    batch = best_path(lp)
    wide = best_path(lp.astype(np.float64))
    for i, r in enumerate(batch):
        alone = best_path(lp[i : i + 1])[0]
        for other in (alone, wide[i]):
            np.testing.assert_array_equal(r.labels, other.labels)
            np.testing.assert_allclose(r.confidences, other.confidences, rtol=1e-6)
            assert r.log_prob == pytest.approx(other.log_prob, rel=1e-6)
        assert isinstance(r.log_prob, float)
    assert best_path(np.zeros((0, 5, 3))) == []
    assert beam_search(np.zeros((0, 5, 3))) == []
    one = best_path(np.log([[[0.2, 0.8]]]))[0]  # T = 1, K = 2: a blank
    assert one.text == "" and one.labels.shape == (0,) and one.confidences.shape == (0,)


@pytest.mark.spec("best_path", 5)
def test_readings_to_labels_round_trip():
    rng = np.random.default_rng(4)
    readings = best_path(normalized(rng, (30, 20, 11), scale=3.0))
    labels = readings_to_labels(readings)
    assert labels.dtype == np.int64
    assert labels.shape == (30, max(len(r.labels) for r in readings))
    for row, r in zip(labels, readings, strict=True):
        assert labels_of(r) == tuple(row[row >= 0].tolist())
        assert np.all(row[len(r.labels) :] == -1)
        assert r.text == "".join(str(d) for d in row[row >= 0])
    assert readings_to_labels(readings, length=25).shape == (30, 25)
    assert readings_to_labels([]).shape == (0, 0)
    assert readings_to_labels([], length=7).shape == (0, 7)
    empty = Reading(np.zeros(0, np.int64), np.zeros(0), 0.0)
    assert readings_to_labels([empty, empty]).shape == (2, 0)
    with pytest.raises(DataError, match="length 2 is shorter than a reading of 3"):
        readings_to_labels([Reading(np.array([1, 2, 3]), np.ones(3), 0.0)], length=2)
    with pytest.raises(DataError, match="length must be an integer >= 0, received -1"):
        readings_to_labels([], length=-1)


@pytest.mark.spec("best_path", 6)
@pytest.mark.spec("beam_search", 7)
def test_bad_arguments_are_named():
    good = np.log(np.full((2, 3, 4), 0.25))
    for decode in (best_path, beam_search):
        name = decode.__name__
        with pytest.raises(ShapeError, match=rf"{name}: log_probs must be \(N, T, K\).*\(3, 4\)"):
            decode(good[0])
        with pytest.raises(ShapeError, match=r"K >= 2.*\(2, 3, 1\)"):
            decode(good[..., :1])
        with pytest.raises(ShapeError, match=r"T >= 1.*\(2, 0, 4\)"):
            decode(good[:, :0])
        with pytest.raises(DTypeError, match=f"{name}: log_probs must be a float array.*int64"):
            decode(np.zeros((2, 3, 4), np.int64))
        for bad, shown in ((np.nan, "nan"), (np.inf, "inf"), (-np.inf, "-inf")):
            x = good.copy()
            x[1, 2] = bad
            with pytest.raises(DataError, match=f"{name}: .*max {shown} at example 1, column 2"):
                decode(x)
    x = good.copy()
    x[0, :, :3] = -np.inf  # probability 0 for some classes is fine
    x[0, :, 3] = 0.0
    for r in (best_path(x)[0], beam_search(x)[0]):
        assert r.text == "" and r.log_prob == 0.0
    for beam in (0, -1, 2.0, True, "8"):
        with pytest.raises(DataError, match=f"beam_search: beam must be an integer >= 1, .*{beam}"):
            beam_search(good, beam=beam)  # type: ignore[arg-type]
    with pytest.raises(ShapeError, match=r"forced_alignment: log_probs must be \(T, K\)"):
        forced_alignment(good, np.array([0]))
    with pytest.raises(DataError, match=r"labels must lie in \[0, 3\).*\[3\]"):
        forced_alignment(good[0], np.array([3]))
    with pytest.raises(DataError, match="1-d integer array"):
        forced_alignment(good[0], np.array([0.0]))
    with pytest.raises(DataError, match=r"\[1, 1, 1\] need at least 5 columns.*T = 3"):
        forced_alignment(good[0], np.array([1, 1, 1]))
    x = good[0].copy()
    x[:, 1] = -np.inf
    with pytest.raises(DataError, match=r"labels \[1\] have probability 0"):
        forced_alignment(x, np.array([1]))


# --- beam_search ----------------------------------------------------------------------------


def strings_up_to(t_len, k):
    """How many strings of length <= T over K-1 symbols: a beam this wide prunes nothing."""
    return sum((k - 1) ** n for n in range(t_len + 1))


@pytest.mark.spec("beam_search", 1)
def test_wide_beam_finds_the_most_probable_string():
    for lp in tiny_cases(5, 60):
        table = brute(lp)
        s, (total, _, _) = max(table.items(), key=lambda kv: kv[1][0])
        r = beam_search(lp[None], beam=strings_up_to(*lp.shape))[0]
        assert labels_of(r) == s
        assert r.log_prob == pytest.approx(total, rel=1e-12, abs=1e-12)


@pytest.mark.spec("beam_search", 2)
def test_matches_a_reference_prefix_beam_search():
    rng = np.random.default_rng(6)
    for _ in range(25):
        k = int(rng.integers(2, 7))
        lp = normalized(rng, (int(rng.integers(1, 14)), k), scale=float(rng.choice([1.0, 3.0])))
        for beam in (1, 2, 3, 5, 10):
            s, log_prob = reference_beam_search(lp, beam)
            r = beam_search(lp[None], beam=beam)[0]
            assert labels_of(r) == s
            assert r.log_prob == pytest.approx(log_prob, rel=1e-12, abs=1e-12)


@pytest.mark.spec("beam_search", 3)
def test_log_prob_is_a_lower_bound_on_the_string_probability():
    for lp in tiny_cases(7, 60):
        table = brute(lp)
        for beam in (1, 2, 3):
            r = beam_search(lp[None], beam=beam)[0]
            assert r.log_prob <= table[labels_of(r)][0] + 1e-12
    # Beam 1 drops "" after the first column, so the alignment _ 1 of "1" is lost.
    y = np.log([[[0.1, 0.5, 0.4], [0.4, 0.3, 0.3]]])
    r = beam_search(y, beam=1)[0]
    assert r.text == "1" and math.exp(r.log_prob) == pytest.approx(0.30)
    assert math.exp(brute(y[0])[(1,)][0]) == pytest.approx(0.42)


@pytest.mark.spec("beam_search", 4)
def test_a_dominant_alignment_is_found_by_every_beam():
    rng = np.random.default_rng(8)
    checked = 0
    for _ in range(200):
        k = int(rng.integers(2, 5))
        lp = normalized(rng, (int(rng.integers(1, 6 if k < 4 else 5)), k), scale=4.0)
        bp = best_path(lp[None])[0]
        if bp.log_prob <= math.log(0.5):
            continue
        checked += 1
        table = brute(lp)
        assert labels_of(bp) == max(table, key=lambda s: table[s][0])
        for beam in (1, 2, 8):
            assert labels_of(beam_search(lp[None], beam=beam)[0]) == labels_of(bp)
    assert checked > 30
    # A one-hot-ish alignment of "1123581" over T = 36 columns, K = 11: 0.99 per column.
    target = [10, 1, 1, 10, 1, 1, 1, 2, 2, 10, 10, 3, 5, 5, 10, 8, 1, 1] + [10] * 18
    probs = np.full((1, 36, 11), 0.01 / 10)
    probs[0, np.arange(36), target] = 0.99
    for decode in (best_path, beam_search):
        r = decode(np.log(probs))[0]
        assert r.text == "1123581"
        np.testing.assert_allclose(r.confidences, 0.99)


@pytest.mark.spec("beam_search", 5)
def test_the_beam_is_a_heuristic():
    # Beam 1 is not best path: best path reads "10" (0.20); beam 1 keeps "1" (0.42).
    y = np.log([[[0.1, 0.5, 0.4], [0.4, 0.3, 0.3]]])
    assert best_path(y)[0].text == "10" and beam_search(y, beam=1)[0].text == "1"
    # Widening the beam can hurt, and the beam can lose to best path: p("0") = 0.35,
    # p("1") = 0.33; best path and beam 1 read "0", beam 2 reads "1", beam 3 "0" again.
    y = np.log([[[0.1, 0.2, 0.7], [0.4, 0.3, 0.3]]])
    table = brute(y[0])
    assert math.exp(table[(0,)][0]) == pytest.approx(0.35)
    assert math.exp(table[(1,)][0]) == pytest.approx(0.33)
    assert best_path(y)[0].text == "0"
    assert [beam_search(y, beam=b)[0].text for b in (1, 2, 3)] == ["0", "1", "0"]


@pytest.mark.spec("beam_search", 6)
def test_forced_alignment_is_the_best_alignment_of_the_string():
    for lp in tiny_cases(9, 40):
        blank = lp.shape[1] - 1
        for s, (_, best, _) in brute(lp).items():
            path = forced_alignment(lp, np.array(s, dtype=np.int64))
            assert path.dtype == np.int64 and path.shape == (lp.shape[0],)
            assert collapse(path, blank) == s
            assert lp[np.arange(len(path)), path].sum() == pytest.approx(best, rel=1e-12)


@pytest.mark.spec("beam_search", 6)
def test_beam_confidences_come_from_the_forced_alignment():
    rng = np.random.default_rng(10)
    lp = normalized(rng, (40, 12, 4), scale=1.5)
    for x, r in zip(lp, beam_search(lp, beam=4), strict=True):
        path = forced_alignment(x, r.labels)
        spans = runs(path, 3)
        assert [c for c, _ in spans] == r.labels.tolist()
        expected = [max(math.exp(x[t, c]) for t in cols) for c, cols in spans]
        np.testing.assert_allclose(r.confidences, expected, rtol=1e-14)
        assert np.all(r.confidences > 0) and np.all(r.confidences <= 1)
