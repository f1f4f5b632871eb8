r"""CTC: the connectionist temporal classification loss (Graves et al., 2006).

A network reads a sequence in ``T`` columns and gives each column a distribution over ``K``
classes, the last of which, ``K - 1``, is the *blank*. An alignment ``pi`` picks one class per
column; the collapse map ``B`` merges runs of equal classes and then drops the blanks
(``B(a a - b b) = B(a - b) = ab``; ``B(a - a) = aa`` needs the blank between the two a's).
The probability of a label string is the total over its alignments,

.. math:: p(l \mid x) = \sum_{\pi:\, B(\pi) = l} \prod_{t} e^{\,\mathrm{lp}[t, \pi_t]},

and :func:`ctc_loss` is the batch mean of ``-log p(l_n | x_n)``. The sum over up to ``K**T``
alignments is computed by the forward-backward recursions over the *extended label*
``l' = (blank, l_1, blank, l_2, ..., l_L, blank)`` of ``S = 2L + 1`` states, in log space,
in ``O(T L)`` per sequence. :func:`ctc_alignment` returns the posterior occupancy of every
state, the picture of where the network places each character. The math, the derivation
of the gradient and the numerics are on ``spec/ctc_loss.md``.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from nn.errors import DataError, DTypeError, ShapeError
from nn.op import VJP, Array, op

NEG_INF = -np.inf


def _repeats(row: list[int]) -> int:
    """Adjacent equal labels: each needs a blank column between its two characters."""
    return sum(row[j] == row[j - 1] for j in range(1, len(row)))


def _sample_labels(rng: np.random.Generator, log_probs: Array) -> dict[str, Any]:
    """Feasible random labels for (N, T, K) log-probs: with repeats, an empty row, padding."""
    n, t, k = log_probs.shape
    rows: list[list[int]] = []
    for i in range(n):
        row: list[int] = []
        if k > 1 and not (i == n - 1 and n > 1):  # only the blank exists; keep one row empty
            if i == 0 and t >= 3:  # the first row starts with a repeat when one fits
                row = [int(rng.integers(0, k - 1))] * 2
            for _ in range(int(rng.integers(0, t + 1))):
                repeat = bool(row) and rng.random() < 0.4
                row.append(row[-1] if repeat else int(rng.integers(0, k - 1)))
            while len(row) + _repeats(row) > t:  # drop characters until it fits in T columns
                row.pop()
        rows.append(row)
    width = max(map(len, rows), default=0) + 1  # one spare -1 column: padding always present
    labels = np.full((n, width), -1, dtype=np.int64)  # (N, L)
    for i, row in enumerate(rows):
        labels[i, : len(row)] = row
    return {"labels": labels}


def _lattice(
    name: str, log_probs: Array, labels: Any, *, refuse_too_long: bool = True
) -> tuple[Array, Array, Array, Array]:
    """Check ``labels`` against (N, T, K) log-probs; build the extended-label lattice.

    A label that needs more than T columns is a ``DataError`` unless ``refuse_too_long`` is
    False; its final states are then out of the forward pass's reach, and its p is 0.

    Returns ``lp`` (N, T, S) float64, the log-prob of each state's class per column;
    ``skip`` (N, S), where the jump s-2 -> s is allowed; ``last`` (N, S), the final states
    (the last blank and the last character) of each example; ``onehot`` (N, S, K), the class
    of every state.
    """
    n, t, k = log_probs.shape
    lab = np.asarray(labels)
    if lab.ndim != 2 or lab.shape[0] != n:
        raise ShapeError(
            f"{name}: labels must have shape (N, L) = ({n}, L), one row per example padded "
            f"with -1, received shape {lab.shape}"
        )
    if lab.dtype.kind not in "iu":
        raise DataError(f"{name}: labels must be integers, received dtype {lab.dtype}")
    if lab.size and (lab.min() < -1 or lab.max() >= k - 1):
        raise DataError(
            f"{name}: labels must lie in [0, {k - 1}) (class {k - 1} is the blank) or be -1 "
            f"padding, received values from {lab.min()} to {lab.max()}"
        )
    pad = lab < 0  # (N, L)
    if (late := pad[:, :-1] & ~pad[:, 1:]).any():  # a -1 followed by a character
        i = int(np.flatnonzero(late.any(axis=1))[0])
        raise DataError(
            f"{name}: labels may have -1 padding only at the end of a row, received "
            f"row {i} = {lab[i].tolist()}"
        )
    length = (~pad).sum(axis=1)  # (N,)
    same = (lab[:, 1:] == lab[:, :-1]) & ~pad[:, 1:]  # (N, L-1): l_j == l_{j-1}
    repeats = same.sum(axis=1)  # (N,)
    if refuse_too_long and (bad := np.flatnonzero(length + repeats > t)).size:
        i = int(bad[0])
        raise DataError(
            f"{name}: example {i} cannot be aligned: its label has length {length[i]} and "
            f"{repeats[i]} adjacent repeat(s), so it needs at least {length[i] + repeats[i]} "
            f"columns, but T = {t}"
        )
    s = 2 * lab.shape[1] + 1
    ext = np.full((n, s), k - 1, dtype=np.intp)  # (N, S): blank, l_1, blank, ..., blank
    ext[:, 1::2] = np.where(pad, k - 1, lab)  # (N, L) into the odd states; padding: blank
    skip = np.zeros((n, s), dtype=bool)  # (N, S)
    # Jump l_{j-1} -> l_j over the blank between them, unless they are equal (the blank is
    # then the only thing that keeps "aa" from collapsing to "a").
    skip[:, 3::2] = ~same & ~pad[:, 1:]
    states = np.arange(s)  # (S,)
    last = (states == 2 * length[:, None]) | (states == 2 * length[:, None] - 1)  # (N, S)
    # Padding states (past 2 len) read the blank, but their posterior is exactly 0 (beta
    # starts at the example's own final states and flows only backward), so no mask is needed.
    onehot = ext[:, :, None] == np.arange(k)  # (N, S, K) bool
    # float64 inside whatever the input: see Numerics on the spec page.
    lp = np.take_along_axis(log_probs.astype(np.float64), ext[:, None, :], axis=2)  # (N, T, S)
    return lp, skip, last, onehot.astype(np.float64)


def _shift(a: Array, by: int) -> Array:
    """``out[:, s] = a[:, s - by]`` (``by > 0``) or ``a[:, s + |by|]``; -inf where none."""
    out = np.full_like(a, NEG_INF)  # (N, S)
    if by > 0:
        out[:, by:] = a[:, :-by]
    else:
        out[:, :by] = a[:, -by:]
    return out


def _forward(lp: Array, skip: Array) -> Array:
    """log alpha (N, T+1, S): alpha[:, 0] is the start, alpha[:, t+1] includes column t.

    alpha_{t+1}(s) = (alpha_t(s) + alpha_t(s-1) + [skip s] alpha_t(s-2)) * y_t(l'_s), in logs.
    The start puts all mass on state 0 "before" column 0; one step from there reaches
    exactly the two allowed first states, the first blank and the first character.
    """
    n, t, s = lp.shape
    alpha = np.full((n, t + 1, s), NEG_INF)  # (N, T+1, S)
    alpha[:, 0, 0] = 0.0
    for i in range(t):
        a = alpha[:, i]  # (N, S)
        # np.logaddexp(-inf, -inf) is -inf with no warning: no NaN from -inf - -inf.
        into = np.logaddexp(np.logaddexp(a, _shift(a, 1)), np.where(skip, _shift(a, 2), NEG_INF))
        alpha[:, i + 1] = into + lp[:, i]
    return alpha


def _backward(lp: Array, skip: Array, last: Array) -> Array:
    """log beta (N, T+1, S): beta[:, t+1](s) sums the columns after t, given state s at t.

    beta_t(s) = sum over s' in {s, s+1, s+2 if skip s'} of y_t(l'_s') beta_{t+1}(s'), in
    logs; it starts at 1 (a log of 0) on the final states, -inf elsewhere.
    """
    n, t, s = lp.shape
    beta = np.full((n, t + 1, s), NEG_INF)  # (N, T+1, S)
    beta[:, t] = np.where(last, 0.0, NEG_INF)
    for i in range(t, 0, -1):
        c = beta[:, i] + lp[:, i - 1]  # (N, S): enter state s' at column i-1, then the rest
        jump = _shift(np.where(skip, c, NEG_INF), -2)  # (N, S): from s to s+2, if allowed
        beta[:, i - 1] = np.logaddexp(np.logaddexp(c, _shift(c, -1)), jump)
    return beta


def _log_likelihood(alpha: Array, last: Array) -> Array:
    """log p(l_n | x_n) (N,): the mass that ends in a final state after the last column."""
    end = np.where(last, alpha[:, -1], NEG_INF)  # (N, S)
    top = end.max(axis=1)  # (N,)
    safe = np.where(np.isfinite(top), top, 0.0)  # (N,): no -inf - -inf for impossible labels
    with np.errstate(divide="ignore"):  # log 0 = -inf is the right answer when p = 0
        logp: Array = safe + np.log(np.exp(end - safe[:, None]).sum(axis=1))  # (N,)
    return logp


def _posteriors(lp: Array, skip: Array, last: Array, alpha: Array, logp: Array) -> Array:
    """State posteriors gamma (N, T, S) = alpha beta / p, from the forward pass's results."""
    beta = _backward(lp, skip, last)  # (N, T+1, S)
    # p = 0 (every alignment passes a -inf entry): alpha + beta is -inf everywhere, and
    # dividing by 1 instead of 0 gives posteriors of 0 instead of NaN. A NaN or +inf log p
    # (a NaN or +inf input) stays: every posterior of the example is then NaN (or 0 and
    # NaN), not alpha beta left unnormalized.
    norm = np.where(np.isneginf(logp), 0.0, logp)  # (N,)
    gamma: Array = np.exp(alpha[:, 1:] + beta[:, 1:] - norm[:, None, None])  # (N, T, S)
    return gamma


@op(
    signature="(n,t,k)->()",
    complex_safe=False,
    loops=False,
    static=_sample_labels,
    nonempty=("n", "k"),
    sample_sizes={"n": 3, "t": 6, "k": 4},
)
def ctc_loss(log_probs: Array, *, labels: Any) -> tuple[Array, VJP]:
    r"""Mean over the batch of the CTC negative log-likelihood, blank = class ``K - 1``.

    .. math::
        L = -\frac{1}{N}\sum_n \log \sum_{\pi:\,B(\pi) = l_n} \prod_t e^{\mathrm{lp}[n,t,\pi_t]}

    ``log_probs`` is (N, T, K), per-column log-probabilities (``log_softmax`` over K);
    ``labels`` is (N, L) integers in ``[0, K-1)``, each row padded at its end with -1 (a
    row of -1 is the empty string). Unlike PyTorch's ``reduction='mean'``, the loss is not
    divided by the label lengths. Raises ``DataError`` for labels that are not integers,
    out of range, padded in the middle, or too long for T (``T < length + repeats``).
    Gradient, exact for any input (normalized or not): ``dlp[n,t,k] = -g gamma_n[t,k] / N``,
    the posterior probability that column t emits class k.

    >>> lp = np.log(np.full((1, 2, 2), 0.5))  # T = 2 columns, class 0 and the blank
    >>> loss, vjp = ctc_loss(lp, labels=np.array([[0]]))  # "0" from 00, 0-, -0: p = 3/4
    >>> round(float(loss), 4), vjp(1.0)[0].round(4).tolist()
    (0.2877, [[[-0.6667, -0.3333], [-0.6667, -0.3333]]])
    """
    # Complex log_probs never get here: ctc_loss is not complex-safe, so nn.op refuses them.
    lp, skip, last, onehot = _lattice("ctc_loss", log_probs, labels)
    n = log_probs.shape[0]
    alpha = _forward(lp, skip)  # (N, T+1, S)
    logp = _log_likelihood(alpha, last)  # (N,)
    loss = np.asarray(-logp.mean(), dtype=log_probs.dtype)  # ()

    def vjp(g: Array) -> tuple[Array]:
        # beta is computed here, not in the forward: a loss evaluated without its gradient
        # (validation) pays for one pass only. The vjp writes nothing it reads (alpha, lp are
        # only read), so a second call is bitwise identical (P7).
        gamma = _posteriors(lp, skip, last, alpha, logp)  # (N, T, S)
        occupancy = gamma @ onehot  # (N, T, S) @ (N, S, K) -> (N, T, K): gamma_n[t, k]
        return ((occupancy * (-float(g) / n)).astype(log_probs.dtype),)

    return loss, vjp


def ctc_alignment(log_probs: Array, labels: Any) -> Array:
    r"""Posterior occupancy of the extended-label states: (N, T, S) with S = 2L + 1.

    ``out[n, t, s] = alpha_t(s) beta_t(s) / p(l_n | x_n)``, the probability, over the
    alignments of ``l_n`` weighted by their probability, that column t sits in state s of
    ``(blank, l_1, blank, l_2, ..., blank)``. For a feasible example with p > 0 each column
    sums to 1 over s; states past ``2 len_n + 1`` (padding) are 0, and so is every state
    of an example with p = 0. Same arguments and checks as :func:`ctc_loss`.

    >>> lp = np.log(np.full((1, 2, 2), 0.5))
    >>> ctc_alignment(lp, np.array([[0]])).round(4).tolist()  # 00, 0-, -0 equally likely
    [[[0.3333, 0.6667, 0.0], [0.0, 0.6667, 0.3333]]]
    """
    lp, skip, last, _ = _lattice("ctc_alignment", _checked("ctc_alignment", log_probs), labels)
    alpha = _forward(lp, skip)  # (N, T+1, S)
    gamma = _posteriors(lp, skip, last, alpha, _log_likelihood(alpha, last))  # (N, T, S)
    return gamma.astype(log_probs.dtype)


def ctc_log_likelihood(log_probs: Array, labels: Any) -> Array:
    r"""``log p(l_n | x_n)`` of each example: (N,) float64, ``-inf`` where it is impossible.

    The forward recursion of :func:`ctc_loss` without the mean: ``ctc_loss`` is
    ``-ctc_log_likelihood(...).mean()``. It scores a given string, which is what
    :mod:`nn.ensemble` needs to compare one string under several models. The same
    ``log_probs`` and ``labels`` as :func:`ctc_loss` (``labels`` positional here) and the same
    checks, except two: N = 0 gives an empty array, and a label too long for the T columns
    (length plus adjacent repeats above T), which ``ctc_loss`` refuses as a training error,
    has probability 0 here, log -inf: a reader with fewer columns cannot write it.

    >>> lp = np.log(np.full((1, 2, 2), 0.5))
    >>> ctc_log_likelihood(lp, np.array([[0]])).round(4).tolist()  # log 3/4
    [-0.2877]
    """
    checked = _checked("ctc_log_likelihood", log_probs)
    lp, skip, last, _ = _lattice("ctc_log_likelihood", checked, labels, refuse_too_long=False)
    return _log_likelihood(_forward(lp, skip), last)  # (N,)


def _checked(name: str, log_probs: Any) -> Array:
    """``log_probs`` if it is a real float (N, T, K) array with K >= 1, else a named error."""
    if not isinstance(log_probs, np.ndarray) or log_probs.dtype.kind != "f":
        got = getattr(log_probs, "dtype", type(log_probs).__name__)
        raise DTypeError(f"{name}: log_probs must be a real float array, received {got}")
    if log_probs.ndim != 3 or log_probs.shape[2] == 0:
        raise ShapeError(
            f"{name}: log_probs must have shape (N, T, K) with K >= 1 (the blank), "
            f"received shape {log_probs.shape}"
        )
    return log_probs
