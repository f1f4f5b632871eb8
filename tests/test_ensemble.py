"""Reading with several experts: the invariants of spec/product_of_experts.md.

References are independent of nn.ensemble and nn.ctc: brute force over all K^T alignments of
each expert (the exact probability of every string and the best alignment of every string),
and a pixel loop for ``shifted``. The reading functions are checked on a tiny digit-strings
run trained here (the fixtures of tests/test_reading.py).
"""

from __future__ import annotations

import itertools
import math
import re

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from test_decode import collapse, normalized
from test_reading import one_test_string, sample, string_run  # noqa: F401 (fixtures)

from nn.cli import main
from nn.datasets import string_params
from nn.decode import best_path
from nn.ensemble import VIEWS, product_of_experts, shifted
from nn.errors import DataError, DTypeError, ShapeError
from nn.png import write_png
from nn.reading import fit_to_canvas, read_number, read_with_experts
from nn.run import load_model


def brute(lp):
    """{string: (log p(string), best alignment)} over all K^T alignments of one (T, K)."""
    t_len, k = lp.shape
    table: dict[tuple[int, ...], tuple[float, tuple[int, ...]]] = {}
    best: dict[tuple[int, ...], float] = {}
    for path in itertools.product(range(k), repeat=t_len):
        score = float(sum(lp[t, c] for t, c in enumerate(path)))
        s = collapse(path, k - 1)
        total, where = table.get(s, (-math.inf, ()))
        if score > best.get(s, -math.inf):
            best[s], where = score, path
        table[s] = (float(np.logaddexp(total, score)), where)
    return table


def argmax_string(lp):
    """The best path's string, by a loop over the columns."""
    return collapse([int(np.argmax(row)) for row in lp], lp.shape[1] - 1)


def expert_confidences(lp, string):
    """Per symbol: the largest y over its run in the string's best alignment, by a loop."""
    table = brute(lp)
    if string not in table or table[string][0] == -math.inf:
        return np.zeros(len(string))
    path, blank, out = table[string][1], lp.shape[1] - 1, []
    for t, c in enumerate(path):
        if c == blank:
            continue
        if t and path[t - 1] == c:
            out[-1] = max(out[-1], math.exp(lp[t, c]))
        else:
            out.append(math.exp(lp[t, c]))
    return np.array(out)


def reference(experts, n):
    """Example n's reading by brute force: (string, score, confidences)."""
    tables = [brute(lp[n]) for lp in experts]
    scores = []
    for lp in experts:
        s = argmax_string(lp[n])
        scores.append((sum(t.get(s, (-math.inf,))[0] for t in tables), s))
    best = max(range(len(scores)), key=lambda i: (scores[i][0], -i))  # ties: earliest expert
    score, string = scores[best]
    conf = np.mean([expert_confidences(lp[n], string) for lp in experts], axis=0)
    return string, score, conf


@pytest.mark.spec("product_of_experts", 1)
@pytest.mark.parametrize("seed", range(4))
def test_one_expert_is_best_path(seed):
    """One expert reads its best path: the same labels and confidences, and log_prob is the
    string's exact log p(l | x) (brute force), not the alignment's."""
    lp = normalized(np.random.default_rng(seed), (5, 4, 3))
    for n, (r, b) in enumerate(zip(product_of_experts([lp]), best_path(lp), strict=True)):
        np.testing.assert_array_equal(r.labels, b.labels)
        np.testing.assert_allclose(r.confidences, b.confidences, rtol=1e-14)
        assert math.isclose(r.log_prob, brute(lp[n])[tuple(r.labels.tolist())][0], rel_tol=1e-12)
        assert r.log_prob >= b.log_prob
    # A tie between a symbol and the blank: best_path keeps the symbol's run going (lower
    # class index), and so must the reading's confidence (0.45 in column 1, not 0.4).
    tie = np.log([[[0.4, 0.3, 0.3], [0.45, 0.1, 0.45], [0.1, 0.1, 0.8]]])
    (r,), (b,) = product_of_experts([tie]), best_path(tie)
    assert r.text == b.text == "0" and r.confidences.tolist() == b.confidences.tolist() == [0.45]


@pytest.mark.spec("product_of_experts", 2)
@pytest.mark.parametrize(("seed", "m", "t", "k"), [(0, 2, 4, 3), (1, 3, 5, 3), (2, 4, 3, 4)])
def test_the_reading_is_the_best_scoring_candidate(seed, m, t, k):
    """Against brute force: the string is the best-scoring of the experts' best-path strings,
    log_prob is its summed exact log-likelihood, confidences are the experts' mean."""
    rng = np.random.default_rng(seed)
    experts = [normalized(rng, (6, t, k), scale=1.0) for _ in range(m)]
    readings = product_of_experts(experts)
    changed = 0
    for n, r in enumerate(readings):
        string, score, conf = reference(experts, n)
        assert tuple(r.labels.tolist()) == string
        assert math.isclose(r.log_prob, score, rel_tol=1e-12)
        np.testing.assert_allclose(r.confidences, conf, rtol=1e-12)
        changed += string != argmax_string(experts[0][n])
    assert changed  # the cases include readings where the first expert is outvoted


@pytest.mark.spec("product_of_experts", 3)
def test_the_experts_order_and_multiplicity():
    """Permuting the experts changes nothing but tie-breaking (none here); repeating every
    expert twice doubles log_prob and keeps the strings and confidences."""
    rng = np.random.default_rng(7)
    experts = [normalized(rng, (20, 6, 4), scale=1.0) for _ in range(3)]
    base = product_of_experts(experts)
    for order in itertools.permutations(range(3)):
        for r, b in zip(product_of_experts([experts[i] for i in order]), base, strict=True):
            np.testing.assert_array_equal(r.labels, b.labels)
            assert math.isclose(r.log_prob, b.log_prob, rel_tol=1e-12)
            np.testing.assert_allclose(r.confidences, b.confidences, rtol=1e-12)
    for r, b in zip(product_of_experts(experts * 2), base, strict=True):
        np.testing.assert_array_equal(r.labels, b.labels)
        assert math.isclose(r.log_prob, 2 * b.log_prob, rel_tol=1e-12)
        np.testing.assert_allclose(r.confidences, b.confidences, rtol=1e-12)
    # Two experts that mirror each other (classes 0 and 1 swapped) give "0" and "1" the same
    # score: the earliest expert's string is read.
    a = np.log([[[0.5, 0.2, 0.3], [0.5, 0.2, 0.3]]])
    b = a[:, :, [1, 0, 2]]
    ab, ba = product_of_experts([a, b])[0], product_of_experts([b, a])[0]
    assert (ab.text, ba.text) == ("0", "1") and ab.log_prob == ba.log_prob


@pytest.mark.spec("product_of_experts", 4)
def test_experts_with_different_columns_and_impossible_strings():
    """Experts may have different T. A string too long for an expert's columns has score
    -inf there and that expert gives its digits confidence 0; ties go to the earliest."""
    y = np.log([[0.1, 0.8, 0.1], [0.8, 0.1, 0.1], [0.1, 0.8, 0.1], [0.1, 0.1, 0.8]])
    long = y[None]  # (1, 4, 3): reads "101", which needs 3 columns
    short = np.log([[[0.1, 0.7, 0.2], [0.2, 0.2, 0.6]]])  # (1, 2, 3): reads "1"
    (r,) = product_of_experts([long, short])
    string, score, conf = reference([long, short], 0)
    assert r.text == "".join(map(str, string)) == "1"  # "101" is impossible for the short one
    assert math.isclose(r.log_prob, score, rel_tol=1e-12)
    np.testing.assert_allclose(r.confidences, conf, rtol=1e-12)
    (alone,) = product_of_experts([long, long[:, :3]])  # both can write "101"
    assert alone.text == "101"
    with np.errstate(divide="ignore"):  # probabilities 0: log -inf
        # Class 0 is impossible for the first expert, which reads "121"; the second reads
        # "0" from one column, where "121" does not fit: every candidate scores -inf.
        first = np.log([[[0, 0.8, 0.1, 0.1], [0, 0.1, 0.8, 0.1], [0, 0.8, 0.1, 0.1],
                         [0, 0.1, 0.1, 0.8]]])  # fmt: skip
        second = np.log([[[1.0, 0, 0, 0]]])
    (r,) = product_of_experts([first, second])
    assert r.log_prob == -math.inf and r.text == "121"  # the earliest expert's
    np.testing.assert_allclose(r.confidences, [0.4, 0.4, 0.4])  # 0.8 and 0 for each digit


@pytest.mark.spec("product_of_experts", 5)
def test_examples_are_read_independently_and_dtypes_agree():
    """Each example alone reads as in the batch; float32 experts read the same strings;
    N = 0 gives []; the Readings' arrays are read-only."""
    rng = np.random.default_rng(3)
    experts = [normalized(rng, (8, 6, 4)) for _ in range(3)]
    batch = product_of_experts(experts)
    for n, r in enumerate(batch):
        (alone,) = product_of_experts([lp[n : n + 1] for lp in experts])
        np.testing.assert_array_equal(alone.labels, r.labels)
        assert alone.log_prob == r.log_prob
        assert not r.labels.flags.writeable and not r.confidences.flags.writeable
    for r, b in zip(product_of_experts([lp.astype(np.float32) for lp in experts]), batch,
                    strict=True):  # fmt: skip
        np.testing.assert_array_equal(r.labels, b.labels)
        assert math.isclose(r.log_prob, b.log_prob, rel_tol=1e-5)
    assert product_of_experts([lp[:0] for lp in experts]) == []


@pytest.mark.spec("product_of_experts", 6)
def test_bad_experts_are_named():
    """Each unusable expert is named by its index, with what was expected and received."""
    lp = np.log(np.full((2, 3, 3), 1 / 3))
    for bad, got in (([], "list of length 0"), ((), "tuple of length 0"),
                     (lp, r"ndarray \(one expert is \[log_probs\]\)"), (3, "int")):  # fmt: skip
        with pytest.raises(DataError, match=rf"^product_of_experts: log_probs must be a "
                           rf"non-empty list of \(N, T, K\) arrays, one per expert, received "
                           rf"{got}$"):  # fmt: skip
            product_of_experts(bad)
    with pytest.raises(DTypeError, match=r"^product_of_experts: log_probs\[1\] must be a float "
                       r"array, received int64$"):  # fmt: skip
        product_of_experts([lp, np.zeros((2, 3, 3), np.int64)])
    for shape in ((2, 3), (2, 0, 3), (2, 3, 1)):
        with pytest.raises(ShapeError, match=rf"^product_of_experts: log_probs\[1\] must be "
                           rf"\(N, T, K\) with T >= 1 and K >= 2 \(the blank is K-1\), "
                           rf"received shape {re.escape(str(shape))}$"):  # fmt: skip
            product_of_experts([lp, np.zeros(shape)])
    for shape in ((3, 3, 3), (2, 3, 4)):
        with pytest.raises(ShapeError, match=rf"^product_of_experts: log_probs\[1\] must have "
                           rf"the N and K of log_probs\[0\], \(2, 3, 3\), received shape "
                           rf"{re.escape(str(shape))}$"):  # fmt: skip
            product_of_experts([lp, np.zeros(shape)])
    with pytest.raises(ShapeError, match=r"^product_of_experts: log_probs\[0\] must be \(N, T, "
                       r"K\) with T >= 1"):  # fmt: skip
        product_of_experts([lp[0]])
    nan = lp.copy()
    nan[1, 2, 0] = np.nan
    with pytest.raises(DataError, match=r"^product_of_experts: log_probs\[1\]: every column must "
                       r"have a finite maximum \(no NaN or \+inf, not all -inf\), received max "
                       r"nan at example 1, column 2$"):  # fmt: skip
        product_of_experts([lp, nan])


def shifted_by_loop(x, dy, dx):
    out = np.zeros_like(x)
    h, w = x.shape[-2:]
    for i in range(h):
        for j in range(w):
            if 0 <= i - dy < h and 0 <= j - dx < w:
                out[..., i, j] = x[..., i - dy, j - dx]
    return out


@pytest.mark.spec("product_of_experts", 7)
@given(
    x=hnp.arrays(np.float32, hnp.array_shapes(min_dims=2, max_dims=4, max_side=5)),
    data=st.data(),
)
def test_shifted_moves_pixels_and_fills_zeros(x, data):
    """shifted equals a pixel loop for every shift up to the image's size, keeps shape and
    dtype, never shares memory with x; shifting by (0, 0) copies."""
    h, w = x.shape[-2:]
    dy = data.draw(st.integers(-h, h))
    dx = data.draw(st.integers(-w, w))
    out = shifted(x, dy, dx)
    assert out.shape == x.shape and out.dtype == x.dtype and not np.shares_memory(out, x)
    np.testing.assert_array_equal(out, shifted_by_loop(x, dy, dx))
    np.testing.assert_array_equal(shifted(x, 0, 0), x)


@pytest.mark.spec("product_of_experts", 8)
def test_views_and_bad_shifts():
    """VIEWS: the image first, then the four one-pixel moves, all different. A shift that is
    not an integer, or larger than the image, is named."""
    assert VIEWS[0] == (0, 0) and len(set(VIEWS)) == 5
    assert sorted(abs(dy) + abs(dx) for dy, dx in VIEWS) == [0, 1, 1, 1, 1]
    x = np.ones((2, 3, 4))
    with pytest.raises(DataError, match=r"shifted: dy must be an integer from -3 to 3 \(the "
                       r"image's size\), received 4"):  # fmt: skip
        shifted(x, 4, 0)
    with pytest.raises(DataError, match="shifted: dx must be an integer from -4 to 4"):
        shifted(x, 0, 0.5)
    with pytest.raises(ShapeError, match=r"shifted: x must have shape \(\.\.\., H, W\)"):
        shifted(np.ones(3), 0, 0)


@pytest.mark.spec("product_of_experts", 9)
def test_read_with_experts_of_a_trained_run(string_run, sample, tmp_path, capsys):  # noqa: F811
    """A run read with its views is the product of its model's outputs on the moved images;
    `python -m nn read RUN IMAGE --with RUN --shifts` prints that reading."""
    run, _ = string_run
    trained = load_model(run)
    images = np.stack([one_test_string(string_params(trained.cfg.data, "test"), sample, i)[0]
                       for i in range(3)])  # fmt: skip
    from nn.activations import log_softmax
    from nn.build import images_to_inputs

    x = images_to_inputs(images, trained.model.input_shape)
    experts = [log_softmax(trained.model.predict(trained.params, shifted_by_loop(x, dy, dx),
                                                 state=trained.state).astype(np.float64))[0]
               for dy, dx in VIEWS]  # fmt: skip
    expected = product_of_experts(experts + experts)
    got = read_with_experts([trained, trained], images)
    for r, e in zip(got, expected, strict=True):
        np.testing.assert_array_equal(r.labels, e.labels)
        np.testing.assert_allclose(r.confidences, e.confidences, rtol=1e-12)
        assert math.isclose(r.log_prob, e.log_prob, rel_tol=1e-12)
    one = read_with_experts([trained], images, views=[(0, 0)])
    for r, b in zip(one, best_path(experts[0]), strict=True):
        np.testing.assert_array_equal(r.labels, b.labels)
    image = images[0]
    write_png(tmp_path / "number.png", image)
    canvas = fit_to_canvas(image, *trained.model.input_shape[1:])
    (want,) = read_with_experts([trained, trained], canvas[None])
    reading, _ = read_number(trained, tmp_path / "number.png", also=[trained], views=VIEWS)
    np.testing.assert_array_equal(reading.labels, want.labels)
    capsys.readouterr()
    assert main(["read", str(run), str(tmp_path / "number.png"), "--with", str(run),
                 "--shifts"]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert lines[0] == f"{tmp_path / 'number.png'}: {want.text or '(nothing)'}"
    assert lines[1:] == [f"  {d}  confidence {p:.3f}"
                         for d, p in zip(want.labels, want.confidences, strict=True)]  # fmt: skip
    with pytest.raises(DataError, match="read_with_experts: runs and views must not be empty"):
        read_with_experts([], images)
    with pytest.raises(
        DataError,
        match=r"^read_with_experts: runs\[0\] must read images of "
        r"the given size \(5, 5\), received a run whose input is \(1, 28, 64\)$",
    ):
        read_with_experts([trained, trained], images[:, :5, :5].copy())
    with pytest.raises(TypeError, match=r"^read_with_experts: runs\[1\] must be a run's model, "
                       r"nn.run.load_model\(RUN\), received str$"):  # fmt: skip
        read_with_experts([trained, str(run)], images)
    with pytest.raises(DataError, match=r"^read_with_experts: images must be gray uint8 pixels "
                       r"\(N, H, W\), received float64 \(3, 28, 64\)$"):  # fmt: skip
        read_with_experts([trained], images.astype(float))
    with pytest.raises(TypeError, match=r"^read_number: also\[0\] must be a run's model"):
        read_number(trained, tmp_path / "number.png", also=[str(run)])
