"""softmax_cross_entropy: forward reference (P8), the invariants of its spec page, large logits.

The gradient protocol, float32 agreement and shape laws run for every op in test_contract.py.
"""

from __future__ import annotations

import numpy as np
import pytest
import scipy.special
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

import nn
from nn import log_softmax, softmax_cross_entropy
from nn.testing import check_reference


@st.composite
def batches(draw, max_loop_dims=2):
    """Logits (..., N, K) with bounded finite entries and matching labels (..., N) in [0, K)."""
    loop = draw(st.lists(st.integers(1, 3), max_size=max_loop_dims))
    n, k = draw(st.integers(1, 5)), draw(st.integers(1, 6))
    floats = st.floats(-100, 100, allow_nan=False, allow_infinity=False)
    logits = draw(arrays(np.float64, (*loop, n, k), elements=floats))
    labels = draw(arrays(np.int64, (*loop, n), elements=st.integers(0, k - 1)))
    return logits, labels


def reference_loss(logits, *, labels):
    """Mean over the batch of logsumexp(row) minus the row's logit at its label, by loops."""
    loss = np.empty(labels.shape[:-1])
    for batch in np.ndindex(labels.shape[:-1]):  # one (N, K) batch per loop index
        rows, t = logits[batch], labels[batch]
        per_example = [scipy.special.logsumexp(rows[i]) - rows[i, t[i]] for i in range(len(t))]
        loss[batch] = sum(per_example) / len(per_example)
    return loss


def random_batch(seed, shape, scale=3.0):
    rng = np.random.default_rng(seed)
    logits = scale * rng.standard_normal(shape)
    labels = rng.integers(0, shape[-1], size=shape[:-1])
    return logits, labels


@pytest.mark.parametrize("shape", [(1, 1), (1, 5), (8, 10), (3, 4, 7), (2, 3, 5, 4)])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_scipy_logsumexp_reference(shape, seed):
    """P8: the loss equals a loop of scipy logsumexp minus the picked logit, averaged."""
    logits, labels = random_batch(seed, shape)
    check_reference(softmax_cross_entropy, reference_loss, logits, static={"labels": labels})


@pytest.mark.spec("softmax_cross_entropy", 1)
@given(batches())
def test_equals_mean_negative_log_softmax(batch):
    """The loss is the batch mean of -log_softmax(logits)[n, t_n]."""
    logits, labels = batch
    y, _ = log_softmax(logits)
    picked = np.take_along_axis(y, labels[..., None], axis=-1)[..., 0]  # (..., N)
    loss, _ = softmax_cross_entropy(logits, labels=labels)
    # Terms reach 200 in size, so the tolerance is absolute at that scale.
    np.testing.assert_allclose(loss, -picked.mean(axis=-1), rtol=1e-12, atol=1e-12)


@pytest.mark.spec("softmax_cross_entropy", 2)
@given(batches())
def test_loss_is_nonnegative(batch):
    """The loss is >= 0 exactly, not only to rounding."""
    logits, labels = batch
    loss, _ = softmax_cross_entropy(logits, labels=labels)
    assert np.all(loss >= 0)


@pytest.mark.spec("softmax_cross_entropy", 3)
@pytest.mark.parametrize(("n", "k"), [(1, 1), (1, 10), (5, 3), (32, 10)])
def test_zero_logits_give_log_k(n, k):
    """All-zero logits (a uniform prediction) give log K, whatever the labels."""
    rng = np.random.default_rng(k)
    for _ in range(3):
        labels = rng.integers(0, k, size=n)
        loss, _ = softmax_cross_entropy(np.zeros((n, k)), labels=labels)
        assert loss.shape == ()
        assert np.isclose(loss, np.log(k), rtol=1e-14, atol=1e-15)


@pytest.mark.spec("softmax_cross_entropy", 4)
@pytest.mark.parametrize("shape", [(1, 3), (6, 4), (2, 3, 5, 4)])
@pytest.mark.parametrize("seed", [0, 1])
def test_gradient_is_softmax_minus_onehot_over_n(shape, seed):
    """dlogits = g * (softmax(logits) - onehot(labels)) / N, with softmax from SciPy."""
    logits, labels = random_batch(seed, shape)
    n, k = shape[-2:]
    loss, vjp = softmax_cross_entropy(logits, labels=labels)
    g = np.random.default_rng(seed + 100).standard_normal(loss.shape)  # one g per loop index
    (dx,) = vjp(g)

    onehot = np.eye(k)[labels]  # (..., N, K)
    expected = g[..., None, None] * (scipy.special.softmax(logits, axis=-1) - onehot) / n
    np.testing.assert_allclose(dx, expected, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(dx.sum(axis=-1), 0.0, rtol=0, atol=1e-15)


@pytest.mark.spec("softmax_cross_entropy", 5)
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_large_logits_stay_finite(dtype):
    """Logits of magnitude 1e4 give a finite loss and gradient, even when the label's logit
    is -1e4 (where log(softmax) would be log 0), without any warning."""
    logits = np.array([[1e4, -1e4], [-1e4, 1e4]], dtype=dtype)
    labels = np.array([1, 1])  # the first example is confidently wrong, the second right
    loss, vjp = softmax_cross_entropy(logits, labels=labels)
    assert loss.dtype == dtype
    assert float(loss) == 1e4  # (2e4 + 0) / 2
    (dx,) = vjp(np.array(1.0, dtype=dtype))
    assert dx.tolist() == [[0.5, -0.5], [0.0, 0.0]]

    logits, labels = random_batch(0, (16, 10), scale=1e4)
    logits = logits.astype(dtype)
    logits[np.arange(16), labels] = -1e4  # every label's logit far below the row maximum
    loss, vjp = softmax_cross_entropy(logits, labels=labels)
    (dx,) = vjp(np.array(1.0, dtype=dtype))
    assert np.isfinite(loss) and loss > 0
    assert np.all(np.isfinite(dx)) and np.all(np.abs(dx) <= 1 / 16)


@pytest.mark.spec("softmax_cross_entropy", 6)
def test_bad_labels_raise_named_errors():
    """Out-of-range or non-integer labels raise DataError, a wrong labels shape ShapeError;
    both messages name `labels`."""
    logits = np.zeros((3, 4))
    for bad in ([0, 1, 4], [0, -1, 2], [0.0, 1.0, 2.0]):
        with pytest.raises(nn.DataError, match="labels"):
            softmax_cross_entropy(logits, labels=np.array(bad))
    for shape in [(4,), (3, 1), ()]:
        with pytest.raises(nn.ShapeError, match="labels"):
            softmax_cross_entropy(logits, labels=np.zeros(shape, dtype=int))
