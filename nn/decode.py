r"""Decoding CTC outputs into strings (spec/best_path.md, spec/beam_search.md).

A CTC network gives, per example, :math:`T` columns of log-probabilities over :math:`K`
classes, ``log_probs`` of shape :math:`(N, T, K)` (a ``log_softmax`` output); the blank is
the last class, :math:`K - 1`. An *alignment* (path) :math:`\pi \in \{0..K-1\}^T` has
probability :math:`\prod_t y_{t,\pi_t}` and reads as the string :math:`\mathcal{B}(\pi)`:
merge runs of equal classes, then drop blanks. A string's probability sums its alignments,
:math:`p(l \mid x) = \sum_{\mathcal{B}(\pi) = l} \prod_t y_{t, \pi_t}`.

- :func:`best_path` takes the most probable *alignment* (argmax per column) and collapses it;
- :func:`beam_search` searches for the most probable *string* by CTC prefix beam search
  (Graves 2012; Hannun et al. 2014), without a language model;
- :func:`forced_alignment` is the most probable alignment of a given string (Viterbi);
- :func:`readings_to_labels` packs decoded strings as ``(N, L)`` labels, ``-1`` padded.

Each decoded symbol gets a confidence: the largest probability of that symbol over the run
of columns its alignment assigns to it (the argmax path for :func:`best_path`, the forced
alignment of the found string for :func:`beam_search`).

>>> import numpy as np
>>> y = np.log([[[0.7, 0.2, 0.1], [0.6, 0.1, 0.3], [0.1, 0.1, 0.8], [0.2, 0.7, 0.1]]])
>>> r = best_path(y)[0]  # argmax path 0 0 _ 1 reads "01"
>>> r.text, r.confidences.tolist(), round(r.log_prob, 4)
('01', [0.7, 0.7], -1.4473)
"""

from __future__ import annotations

import itertools
import numbers
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from nn.errors import DataError, DTypeError, ShapeError

__all__ = ["Reading", "beam_search", "best_path", "forced_alignment", "readings_to_labels"]

Array = np.ndarray[Any, Any]


@dataclass(frozen=True, eq=False)
class Reading:
    """One decoded string. Readings compare by identity (``eq=False``: they hold arrays), and
    the decoders return them with read-only arrays.

    ``labels`` ``(L,)`` int64 class indices in ``[0, K-1)``; ``confidences`` ``(L,)`` float64,
    one per symbol, in ``(0, 1]``; ``log_prob``: for :func:`best_path` the log-probability of
    the best alignment, for :func:`beam_search` :math:`\\log p(l \\mid x)` summed over the
    alignments the beam kept (a lower bound, exact when nothing was pruned); for
    :func:`nn.ensemble.product_of_experts` the sum over the experts of their exact
    log p_m(l | x) (-inf when some expert cannot write the string).
    """

    labels: Array
    confidences: Array
    log_prob: float

    @property
    def text(self) -> str:
        """The labels as one string of decimal numbers: the digits themselves for K <= 11."""
        return "".join(str(int(d)) for d in self.labels)


def best_path(log_probs: Array) -> list[Reading]:
    r"""Best-path (greedy) decoding: :math:`\mathcal{B}(\pi^\star)`, :math:`\pi^\star_t =
    \arg\max_k y_{t,k}`, one :class:`Reading` per example.

    ``log_probs`` is ``(N, T, K)`` only (a single sequence is ``x[None]``). Ties go to the
    lowest class index (``np.argmax``). ``log_prob`` is :math:`\sum_t \max_k \log y_{t,k}`,
    the log-probability of the best alignment, not of the string. The argmax is vectorized
    over the batch and so is the collapse: runs are found on the flattened paths.

    >>> y = np.log([[[0.6, 0.1, 0.3], [0.2, 0.1, 0.7], [0.8, 0.1, 0.1]]])  # 0 _ 0
    >>> best_path(y)[0].text
    '00'
    """
    lp = _checked_log_probs("best_path", log_probs)
    k = lp.shape[2]
    path = lp.argmax(axis=2)
    best = np.take_along_axis(lp, path[..., None], axis=2)[..., 0].astype(np.float64)
    _require_finite_max("best_path", best)
    return _readings(path, best, best.sum(axis=1), k - 1)


def beam_search(log_probs: Array, *, beam: int = 8) -> list[Reading]:
    r"""CTC prefix beam search: the most probable string among those the beam keeps.

    Per prefix :math:`l` it tracks, in log space, :math:`p_b(l)` and :math:`p_{nb}(l)`, the
    probability of the columns so far reading :math:`l` and ending in a blank or not; each
    column extends every prefix by every class, merges equal prefixes, and keeps the ``beam``
    most probable (spec/beam_search.md). Cost :math:`O(T \cdot \mathrm{beam} \cdot K)` per
    sequence, looped over the batch in Python (about 1.3 ms per sequence at T = 36, K = 11,
    beam 8). ``beam`` is an integer >= 1.

    >>> y = np.log([[[0.3, 0.3, 0.4], [0.3, 0.3, 0.4]]])  # best path "" (0.16); "0": 0.33
    >>> best_path(y)[0].text, beam_search(y, beam=2)[0].text
    ('', '0')
    """
    lp = _checked_log_probs("beam_search", log_probs)
    width = _integer(beam)
    if width is None or width < 1:
        raise DataError(f"beam_search: beam must be an integer >= 1, received {beam!r}")
    lp = lp.astype(np.float64, copy=False)
    _require_finite_max("beam_search", lp.max(axis=2))
    readings = []
    for seq in lp:
        labels, log_prob = _prefix_beam_search(seq, width)
        path = _viterbi(seq, labels)
        emitted = seq[np.arange(len(path)), path]
        readings += _readings(path[None], emitted[None], np.array([log_prob]), seq.shape[1] - 1)
    return readings


def forced_alignment(log_probs: Array, labels: Array) -> Array:
    r"""The most probable alignment of ``labels``: ``(T,)`` int64, the class of each column.

    :math:`\arg\max_{\pi:\ \mathcal{B}(\pi) = l} \sum_t \log y_{t,\pi_t}` by the Viterbi
    recursion over the extended labels :math:`(\varnothing, l_1, \varnothing, ..., l_L,
    \varnothing)`. ``log_probs`` is one sequence, ``(T, K)``; ``labels`` ``(L,)`` integers in
    ``[0, K-1)``. Symbol :math:`i` occupies the :math:`i`-th run of equal non-blank classes.
    Ties prefer staying in a state, then the previous state. A string that needs more
    columns than :math:`T` (:math:`L` plus its repeated neighbours) is a ``DataError``.

    >>> y = np.log([[0.6, 0.1, 0.3], [0.5, 0.1, 0.4], [0.1, 0.5, 0.4]])
    >>> forced_alignment(y, np.array([0, 0])).tolist()  # needs a blank between the zeros
    [0, 2, 0]
    """
    lp = np.asarray(log_probs)
    if lp.ndim != 2:
        raise ShapeError(f"forced_alignment: log_probs must be (T, K), received shape {lp.shape}")
    lp = _checked_log_probs("forced_alignment", lp[None])[0].astype(np.float64, copy=False)
    lab = np.asarray(labels)
    k = lp.shape[1]
    if lab.ndim != 1 or (lab.size and lab.dtype.kind not in "iu"):
        raise DataError(
            f"forced_alignment: labels must be a 1-d integer array, received {lab.dtype} "
            f"shape {lab.shape}"
        )
    if lab.size and (lab.min() < 0 or lab.max() >= k - 1):
        raise DataError(
            f"forced_alignment: labels must lie in [0, {k - 1}) (K-1 is the blank), "
            f"received {lab.tolist()}"
        )
    needed = lab.size + int(np.count_nonzero(lab[1:] == lab[:-1]))
    if needed > lp.shape[0]:
        raise DataError(
            f"forced_alignment: labels {lab.tolist()} need at least {needed} columns "
            f"(a blank between repeated symbols), received T = {lp.shape[0]}"
        )
    return _viterbi(lp, tuple(int(c) for c in lab))


def readings_to_labels(readings: Sequence[Reading], length: int | None = None) -> Array:
    """``(N, L)`` int64: each reading's labels, then ``-1`` up to ``L``.

    ``L`` is ``length``, or the longest reading's length (0 for none); a reading longer than
    ``length`` is a ``DataError``.

    >>> readings_to_labels(best_path(np.log([[[0.9, 0.1]], [[0.2, 0.8]]])), length=2).tolist()
    [[0, -1], [-1, -1]]
    """
    if bad := [type(r).__name__ for r in readings if not isinstance(r, Reading)]:
        raise TypeError(
            f"readings_to_labels: readings must be Readings (from best_path or beam_search), "
            f"received {bad[0]}"
        )
    longest = max((len(r.labels) for r in readings), default=0)
    width = longest if length is None else _integer(length)
    if width is None or width < 0:
        raise DataError(f"readings_to_labels: length must be an integer >= 0, received {length!r}")
    if longest > width:
        raise DataError(
            f"readings_to_labels: length {length} is shorter than a reading of {longest} labels"
        )
    out = np.full((len(readings), width), -1, dtype=np.int64)
    for row, r in zip(out, readings, strict=True):
        row[: len(r.labels)] = r.labels
    return out


def _integer(value: object) -> int | None:
    """``int(value)`` for an integer that is not a bool (NumPy integers too), else None."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, numbers.Integral):
        return None
    return int(value)


def _checked_log_probs(who: str, log_probs: object) -> Array:
    lp = np.asarray(log_probs)
    if lp.dtype.kind != "f":
        raise DTypeError(f"{who}: log_probs must be a float array, received {lp.dtype}")
    if lp.ndim != 3 or lp.shape[1] < 1 or lp.shape[2] < 2:
        raise ShapeError(
            f"{who}: log_probs must be (N, T, K) with T >= 1 and K >= 2 (the blank is K-1), "
            f"received shape {lp.shape}"
        )
    return lp


def _require_finite_max(who: str, column_max: Array) -> None:
    """NaN, +inf, or a column of -inf only (probability 0 for every class) are DataErrors."""
    bad = ~np.isfinite(column_max)
    if bad.any():
        n, t = np.argwhere(bad)[0]
        raise DataError(
            f"{who}: every column of log_probs must have a finite maximum (no NaN or +inf, "
            f"not all -inf), received max {column_max[n, t]} at example {n}, column {t}"
        )


def _readings(path: Array, emitted: Array, log_prob: Array, blank: int) -> list[Reading]:
    """Collapse paths ``(N, T)`` into Readings; ``emitted`` ``(N, T)`` is the log-probability of
    the path's class in each column. A symbol is a run of equal non-blank classes; its
    confidence is ``exp`` of the largest ``emitted`` over the run."""
    n, t = path.shape
    if n * t == 0:
        return []
    new_run = np.ones((n, t), dtype=bool)  # every row starts a run, so runs never span rows
    new_run[:, 1:] = path[:, 1:] != path[:, :-1]
    starts = np.flatnonzero(new_run)
    symbol = path.ravel()[starts]
    keep = symbol != blank
    labels = symbol[keep].astype(np.int64)
    confidences = np.exp(np.maximum.reduceat(emitted.ravel(), starts)[keep])
    ends = np.concatenate([[0], np.cumsum(np.bincount(starts[keep] // t, minlength=n))])
    labels.flags.writeable = False
    confidences.flags.writeable = False
    return [
        Reading(labels[a:b], confidences[a:b], float(log_prob[i]))
        for i, (a, b) in enumerate(itertools.pairwise(ends))
    ]


def _prefix_beam_search(lp: Array, beam: int) -> tuple[tuple[int, ...], float]:
    """The best prefix and its log-probability; ``lp`` ``(T, K)`` float64."""
    k = lp.shape[1]
    blank = k - 1
    prefixes: list[tuple[int, ...]] = [()]
    pb = np.array([0.0])  # log p(columns so far read the prefix, last column blank)
    pnb = np.array([-np.inf])  # ... last column non-blank (so it emitted the prefix's end)
    for row in lp:
        last = np.array([p[-1] if p else blank for p in prefixes])
        total = np.logaddexp(pb, pnb)
        # The prefix stays: a blank after anything, or its last symbol repeated (merged).
        stay_b = total + row[blank]
        stay_nb = np.where(last != blank, pnb + row[last], -np.inf)
        # The prefix grows by c. A repeat of its last symbol is a new symbol only after a
        # blank; after a non-blank it merged into the stay above.
        grow = total[:, None] + row[None, :blank]
        has = np.flatnonzero(last != blank)
        grow[has, last[has]] = pb[has] + row[last[has]]
        # A grown prefix already in the beam is the same string: add its mass there.
        index = {p: i for i, p in enumerate(prefixes)}
        for j, p in enumerate(prefixes):
            i = index.get(p[:-1]) if p else None
            if i is not None:
                stay_nb[j] = np.logaddexp(stay_nb[j], grow[i, p[-1]])
                grow[i, p[-1]] = -np.inf
        score = np.concatenate([np.logaddexp(stay_b, stay_nb), grow.ravel()])
        top = np.argsort(-score, kind="stable")[:beam]  # ties: staying first, then beam order
        top = top[np.isfinite(score[top])]  # probability 0: not a candidate
        new: list[tuple[int, ...]] = []
        new_b, new_nb = np.full(len(top), -np.inf), np.empty(len(top))
        for slot, c in enumerate(top.tolist()):
            if c < len(prefixes):
                new.append(prefixes[c])
                new_b[slot], new_nb[slot] = stay_b[c], stay_nb[c]
            else:
                i, s = divmod(c - len(prefixes), blank)
                new.append((*prefixes[i], s))
                new_nb[slot] = grow[i, s]
        prefixes, pb, pnb = new, new_b, new_nb
    return prefixes[0], float(np.logaddexp(pb[0], pnb[0]))


def _viterbi(lp: Array, labels: tuple[int, ...]) -> Array:
    """The best alignment of ``labels`` (feasible) through ``lp`` ``(T, K)``: classes ``(T,)``."""
    t_len, k = lp.shape
    ext = np.full(2 * len(labels) + 1, k - 1, dtype=np.int64)
    ext[1::2] = labels
    s_len = len(ext)
    emit = lp[:, ext]
    # Skipping the blank between two symbols is allowed only if they differ.
    skip = np.zeros(s_len, dtype=bool)
    skip[3::2] = ext[3::2] != ext[1:-2:2]
    delta = np.full(s_len, -np.inf)
    delta[: min(2, s_len)] = emit[0, : min(2, s_len)]
    back = np.zeros((t_len, s_len), dtype=np.int64)  # 0 stay, 1 from s-1, 2 from s-2
    cand = np.full((3, s_len), -np.inf)
    states = np.arange(s_len)
    for t in range(1, t_len):
        cand[0] = delta
        cand[1, 1:] = delta[:-1]
        cand[2, 2:] = np.where(skip[2:], delta[:-2], -np.inf)
        back[t] = cand.argmax(axis=0)  # first maximum: stay, then s-1, then s-2
        delta = cand[back[t], states] + emit[t]
    s = s_len - 1 if s_len == 1 or delta[-1] >= delta[-2] else s_len - 2
    if delta[s] == -np.inf:
        raise DataError(f"forced_alignment: labels {list(labels)} have probability 0")
    path = np.empty(t_len, dtype=np.int64)
    for t in range(t_len - 1, -1, -1):
        path[t] = ext[s]
        s -= back[t, s]
    return path
