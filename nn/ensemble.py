r"""Reading with several experts: a product of experts over strings (spec/product_of_experts.md).

An *expert* is one CTC model reading one *view* of the image (the image itself, or the
image moved by a pixel). Each gives its own columns ``log_probs`` (N, T_m, K); their columns
need not line up (a moved image moves the spikes; two models may place a digit in
neighbouring columns, or have different T). A string's probability does not depend on
where its symbols sit, so the experts are combined string by string:

.. math:: \mathrm{score}(l) = \sum_{m=1}^{M} \log p_m(l \mid x),

the log of a product of experts (Hinton 2002). The exact argmax over all strings is out of
reach, so each example's candidates are the strings the experts read by best path, and
:func:`product_of_experts` keeps the candidate with the highest score.

>>> import numpy as np
>>> a = np.log([[[0.4, 0.1, 0.5], [0.5, 0.1, 0.4]]])  # best path _ 0 reads "0"
>>> b = np.log([[[0.05, 0.05, 0.9], [0.05, 0.05, 0.9]]])  # best path _ _ reads ""
>>> # p_a("0") = 0.61, p_b("0") = 0.0925; p_a("") = 0.2, p_b("") = 0.81: "" wins
>>> r = product_of_experts([a, b])[0]
>>> r.text, round(r.log_prob, 4)  # log(0.2 * 0.81)
('', -1.8202)
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from nn.ctc import ctc_log_likelihood
from nn.decode import Reading, _readings, best_path, forced_alignment, readings_to_labels
from nn.errors import DataError, DTypeError, ShapeError
from nn.inputs import as_integer
from nn.op import Array

__all__ = ["VIEWS", "product_of_experts", "shifted"]

#: (dy, dx) of the views read at test time: the image, then moved one pixel left, right, up
#: and down. One pixel is within what training's random_shift (shift = 1) showed the model.
VIEWS = ((0, 0), (0, -1), (0, 1), (-1, 0), (1, 0))


def shifted(x: Array, dy: int, dx: int) -> Array:
    """``x`` (..., H, W) moved ``dy`` rows down and ``dx`` columns right; what enters is 0.

    ``out[..., i, j] = x[..., i - dy, j - dx]`` where that pixel exists, else 0; a new array.

    >>> shifted(np.arange(1, 7).reshape(2, 3), 0, 1).tolist()
    [[0, 1, 2], [0, 4, 5]]
    """
    x = np.asarray(x)
    if x.ndim < 2:
        raise ShapeError(f"shifted: x must have shape (..., H, W), received shape {x.shape}")
    for name, value, size in (("dy", dy, x.shape[-2]), ("dx", dx, x.shape[-1])):
        if as_integer(value) is None or abs(value) > size:
            raise DataError(f"shifted: {name} must be an integer from -{size} to {size} (the "
                            f"image's size), received {value!r}")  # fmt: skip
    h, w = x.shape[-2:]
    out = np.zeros_like(x)
    # Rows i of out with 0 <= i - dy < h receive rows i - dy of x; likewise columns.
    out[..., max(dy, 0) : h + min(dy, 0), max(dx, 0) : w + min(dx, 0)] = x[
        ..., max(-dy, 0) : h - max(dy, 0), max(-dx, 0) : w - max(dx, 0)
    ]
    return out


def product_of_experts(log_probs: Sequence[Array]) -> list[Reading]:
    r"""The best-scoring of the experts' best-path strings, one Reading per example.

    ``log_probs`` is a non-empty sequence of M arrays ``(N, T_m, K)`` (``log_softmax``
    outputs of CTC models; same N and K, any T_m >= 1). For each example the candidates are
    the M best-path strings; each is scored by :math:`\sum_m \log p_m(l \mid x)` (exact, by
    the CTC forward recursion), and the highest wins; ties go to the earliest expert. The
    Reading's ``log_prob`` is that score; its confidence for symbol i is the mean over the
    experts of the confidence each gives symbol i on its most probable alignment of the
    string: its best path when that reads the string, else its forced alignment (as in
    :func:`nn.decode.beam_search`); 0 from an expert under which the string is impossible.
    One expert gives exactly its best path's string and confidences.
    """
    experts = _checked(log_probs)
    n = experts[0].shape[0]
    candidates = [best_path(lp) for lp in experts]  # M lists of N Readings
    scores = np.zeros((len(experts), n))  # (M candidates, N)
    for c, readings in enumerate(candidates):
        labels = readings_to_labels(readings)  # (N, L), L = 0 if every string is empty
        for lp in experts:
            scores[c] += ctc_log_likelihood(lp, labels)  # (N,): -inf if it does not fit
    winner = scores.argmax(axis=0)  # (N,): first maximum, the earliest expert
    out = []
    for i, c in enumerate(winner.tolist()):
        labels = candidates[c][i].labels
        mine = [r[i] for r in candidates]  # each expert's own reading of example i
        out.append(Reading(labels, _confidences(experts, i, labels, mine), float(scores[c, i])))
    return out


def _confidences(experts: list[Array], i: int, labels: Array, mine: list[Reading]) -> Array:
    """(L,): per symbol, the experts' mean confidence on their most probable alignment of
    ``labels`` (0 from an expert that cannot write it). An expert whose best path reads
    ``labels`` has that path as its best alignment of them, and its confidences are known;
    only the others need a forced alignment (Viterbi), which would break ties differently."""
    total = np.zeros(len(labels))  # (L,)
    blank = experts[0].shape[2] - 1
    for lp, own in zip(experts, mine, strict=True):
        if np.array_equal(own.labels, labels):
            total += own.confidences
            continue
        seq = lp[i].astype(np.float64)  # (T, K)
        try:
            path = forced_alignment(seq, labels)  # (T,)
        except DataError:  # too few columns, or probability 0: this expert gives nothing
            continue
        emitted = seq[np.arange(len(path)), path]  # (T,)
        # The decoders' own collapse: a symbol's confidence is its best column in its run.
        total += _readings(path[None], emitted[None], np.zeros(1), blank)[0].confidences
    confidences = total / len(experts)  # (L,)
    confidences.flags.writeable = False
    return confidences


def _checked(log_probs: object) -> list[Array]:
    """The experts as arrays, each named by its index when it is not usable."""
    if isinstance(log_probs, np.ndarray) or not isinstance(log_probs, Sequence) or not log_probs:
        got = type(log_probs).__name__
        if isinstance(log_probs, np.ndarray):
            got += " (one expert is [log_probs])"
        elif isinstance(log_probs, Sequence):
            got += f" of length {len(log_probs)}"
        raise DataError(f"product_of_experts: log_probs must be a non-empty list of (N, T, K) "
                        f"arrays, one per expert, received {got}")  # fmt: skip
    experts = [np.asarray(lp) for lp in log_probs]
    for m, lp in enumerate(experts):
        who = f"product_of_experts: log_probs[{m}]"
        if lp.dtype.kind != "f":
            raise DTypeError(f"{who} must be a float array, received {lp.dtype}")
        if lp.ndim != 3 or lp.shape[1] < 1 or lp.shape[2] < 2:
            raise ShapeError(f"{who} must be (N, T, K) with T >= 1 and K >= 2 (the blank is "
                             f"K-1), received shape {lp.shape}")  # fmt: skip
        first = experts[0].shape
        if (lp.shape[0], lp.shape[2]) != (first[0], first[2]):
            raise ShapeError(f"{who} must have the N and K of log_probs[0], {first}, received "
                             f"shape {lp.shape}")  # fmt: skip
        column_max = lp.max(axis=2, initial=-np.inf)  # (N, T)
        if not np.isfinite(column_max).all():
            n, t = np.argwhere(~np.isfinite(column_max))[0]
            raise DataError(f"{who}: every column must have a finite maximum (no NaN or +inf, "
                            f"not all -inf), received max {column_max[n, t]} at example {n}, "
                            f"column {t}")  # fmt: skip
    return experts
