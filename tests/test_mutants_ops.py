"""Tests that kill mutants of the ops that the other tests let survive (docs/mutation.md).

Each test checks behaviour the op's spec page or docstring promises; the mutant it was
written for is named in its docstring (`mutmut show NAME` in build/mutation/).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import nn.parallel
from nn import (
    REGISTRY,
    DataError,
    DivergenceError,
    DTypeError,
    ShapeError,
    avg_pool2d,
    batch_norm_inference,
    conv2d,
    conv2d_transpose,
    ctc_alignment,
    ctc_loss,
    dropout_mask,
    max_pool2d,
    softmax_cross_entropy,
    unflatten,
)
from nn.clip import clip_by_global_norm, global_norm
from nn.ctc import _lattice, _repeats, _sample_labels
from nn.norm import batch_moments, update_running
from nn.pool import _deriver

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


# dropout_mask and dropout's sampler (spec/dropout.md)


class _ConstantUniforms(np.random.Generator):
    """A generator whose uniforms are all ``u`` (its integers are PCG64's from ``seed``): pins
    the comparisons of uniforms with probabilities."""

    def __init__(self, u: float, seed: int = 0):
        super().__init__(np.random.PCG64(seed))
        self.u = u

    def random(self, size=None, dtype=np.float64, out=None):
        return self.u if size is None else np.full(size, self.u)


def test_dropout_mask_keeps_an_entry_whose_uniform_equals_the_rate():
    """Entry i is kept when u_i >= rate, equality included
    (nn.dropout.x_dropout_mask__mutmut_14)."""
    assert dropout_mask(_ConstantUniforms(0.5), (3,), 0.5).tolist() == [True] * 3
    assert dropout_mask(_ConstantUniforms(0.25), (3,), 0.5).tolist() == [False] * 3


def test_dropout_mask_rate_error_names_the_received_type():
    """(nn.dropout.x__check_rate__mutmut_4: the type of another object)"""
    with pytest.raises(ValueError, match=r"received '0\.5' of type str$"):
        dropout_mask(np.random.default_rng(0), (3,), "0.5")


@pytest.mark.parametrize(("shape", "expected"), [(3, (3,)), (np.int64(2), (2,)), ((2, 0), (2, 0))])
def test_dropout_mask_takes_an_integer_as_a_1d_shape_and_zero_dims(shape, expected):
    """An integer is a 1-d shape, and a dimension may be 0
    (nn.dropout.x__check_shape__mutmut_2, _14, _15)."""
    assert dropout_mask(np.random.default_rng(0), shape, 0.5).shape == expected


@pytest.mark.parametrize("shape", [(True, 2), "ab", (2, -1), (2.0,), None])
def test_dropout_mask_refuses_a_bad_shape_naming_it(shape):
    """Booleans, strings, negatives and non-integers are refused with a ValueError that names
    shape (nn.dropout.x__check_shape__mutmut_4, _10, _11, _16)."""
    with pytest.raises(ValueError, match=r"^dropout_mask: shape must be a tuple of integers >= 0"):
        dropout_mask(np.random.default_rng(0), shape, 0.5)


def test_dropout_sampler_draws_moderate_rates():
    """The verifier's rates lie in [0.2, 0.7): some entries dropped, some kept, and a scale
    1/(1-p) of at most 1/0.3, so the checks stay well-conditioned
    (nn.dropout.x__random_mask__mutmut_5, _6)."""
    rng = np.random.default_rng(0)
    rates = [REGISTRY["dropout"].static(rng, np.ones(4))["rate"] for _ in range(200)]
    assert 0.2 <= min(rates) and max(rates) < 0.7


# The samplers of static arguments the verifier draws (nn.op: OpInfo.static)


def test_batch_norm_inference_sampler_draws_variances_between_half_and_two():
    """Variances of order 1, away from 0 and bounded: var in [0.5, 2)
    (nn.norm.x__random_statistics__mutmut_14, _15)."""
    rng = np.random.default_rng(0)
    sample = REGISTRY["batch_norm_inference"].static
    var = np.concatenate([sample(rng, np.ones((2, 50, 1, 1)))["var"] for _ in range(20)])
    assert 0.5 <= var.min() < 0.6 and 1.9 < var.max() < 2.0


def _ctc_rows(seed, n, t, k):
    labels = _sample_labels(np.random.default_rng(seed), np.zeros((n, t, k)))["labels"]
    assert labels.shape[0] == n and (labels[:, -1] == -1).all()  # a padding column
    assert labels.shape[1] == max((labels >= 0).sum(axis=1)) + 1  # and only one spare
    return [[int(c) for c in row if c >= 0] for row in labels]


def test_ctc_repeats_counts_adjacent_equal_labels_only():
    """The first and the last label are not adjacent (nn.ctc.x__repeats__mutmut_7)."""
    assert [_repeats(r) for r in [[], [1], [1, 2, 1], [1, 1, 2, 2, 2]]] == [0, 0, 0, 3]


@pytest.mark.parametrize(
    ("n", "t", "k"), [(1, 3, 2), (2, 3, 2), (2, 4, 3), (3, 6, 4), (1, 1, 2), (3, 2, 5), (2, 5, 1)]
)
def test_ctc_sampler_labels_fit_start_with_a_repeat_and_leave_the_last_row_empty(n, t, k):
    """Labels in [0, K-1) that fit T columns; the first row starts with a repeat when one fits
    (T >= 3); with N > 1 the last row is the empty string, the others are not all empty;
    one spare padding column (nn.ctc.x__sample_labels__mutmut_7-19, _73)."""
    for seed in range(30):
        rows = _ctc_rows(seed, n, t, k)
        for row in rows:
            assert len(row) + _repeats(row) <= t and all(0 <= c < k - 1 for c in row)
        if n > 1 or k == 1:
            assert rows[-1] == []
        if t >= 3 and k > 1:
            assert len(rows[0]) >= 2 and rows[0][0] == rows[0][1]


def test_ctc_sampler_repeats_a_label_when_its_uniform_is_below_0_4():
    """A repeat has probability 0.4: u < 0.4. At u = 0.4 every later label is drawn afresh,
    so some row holds two labels (nn.ctc.x__sample_labels__mutmut_43: all repeats)."""
    rows = [
        _sample_labels(_ConstantUniforms(0.4, seed), np.zeros((1, 6, 4)))["labels"][0]
        for seed in range(10)
    ]
    assert any(len(set(row[row >= 0].tolist())) > 1 for row in rows)


def test_ctc_sampler_forces_the_leading_repeat_in_the_first_row_only():
    """(nn.ctc.x__sample_labels__mutmut_15: every row started with a repeat)"""
    seconds = [_ctc_rows(seed, 3, 6, 4)[1][:2] for seed in range(30)]
    assert any(len(r) < 2 or r[0] != r[1] for r in seconds)


def test_ctc_sampler_is_a_function_of_the_seed():
    """The verifier's ctc_loss samples at its sizes (N, T, K) = (3, 6, 4) for seeds 0-2: a
    change to the sampler changes every recorded check, so it must be deliberate
    (nn.ctc.x__sample_labels__mutmut_30, _37, _39: other lengths drawn)."""
    assert [_ctc_rows(seed, 3, 6, 4) for seed in range(3)] == [
        [[2, 2, 2], [1, 1, 1, 2], []],
        [[1, 1, 0, 0], [1, 0, 1, 1, 2], []],
        [[2, 2, 2], [2, 2], []],
    ]


def test_batch_norm_inference_accepts_a_zero_variance():
    """A constant channel has variance 0, which eps makes safe: y = gamma (x - mean) / sqrt(eps)
    + beta (nn.norm.x_batch_norm_inference__mutmut_36: var = 0 refused)."""
    x = np.array([3.0, 5.0]).reshape(1, 1, 1, 2)
    y, _ = batch_norm_inference(
        x, np.array([2.0]), np.array([1.0]), mean=np.array([3.0]), var=np.array([0.0]), eps=0.25
    )
    assert y.ravel().tolist() == [1.0, 9.0]


def test_softmax_cross_entropy_label_shape_error_names_the_expected_shape_with_loop_dims():
    """With loop dimensions the labels' shape is the logits' shape without K, all of it
    (nn.losses.x_softmax_cross_entropy__mutmut_10, _11)."""
    with pytest.raises(
        ShapeError, match=r"labels must have shape \(2, 3\) .*K=4\), received \(3,\)"
    ):
        softmax_cross_entropy(np.zeros((2, 3, 4)), labels=np.zeros(3, int))


# ctc_loss and ctc_alignment: label errors, the lattice, posteriors (spec/ctc_loss.md)


def test_ctc_label_range_error_names_the_range_and_the_blank():
    """(nn.ctc.x__lattice__mutmut_23-26: another range or blank in the message)"""
    expected = r"labels must lie in \[0, 3\) \(class 3 is the blank\) or be -1 padding, received"
    with pytest.raises(DataError, match=expected + r" values from 0 to 3$"):
        ctc_loss(np.zeros((1, 4, 4)), labels=np.array([[0, 3]]))


def test_ctc_late_padding_error_names_the_row_that_has_it():
    """A -1 followed by a character anywhere in a row, here in row 1 after its first label
    (nn.ctc.x__lattice__mutmut_31, _35, _38: missed, or row None or 0 named)."""
    labels = np.array([[0, 1, 1], [0, -1, 1]])
    with pytest.raises(
        DataError, match=r"only at the end of a row, received row 1 = \[0, -1, 1\]$"
    ):
        ctc_loss(np.zeros((2, 8, 3)), labels=labels)


def test_ctc_lattice_padding_states_are_blanks():
    """The padding of a row extends it with blank states: their class in onehot and their
    log-probs are the blank's (nn.ctc.x__lattice__mutmut_83, _90)."""
    log_probs = np.log(np.array([[[0.2, 0.3, 0.5]] * 4]))  # (1, 4, 3): blank = class 2
    lp, _, _, onehot = _lattice("ctc_loss", log_probs, np.array([[0, -1]]))
    assert onehot[0, 3:].tolist() == [[0.0, 0.0, 1.0]] * 2  # states 3, 4: padding
    assert (lp[0, :, 3:] == np.log(0.5)).all()


def test_ctc_alignment_of_an_example_with_a_nan_log_prob_is_nan():
    """A NaN on an example's path makes its likelihood NaN, and then all its posteriors: not
    alpha beta left unnormalized (finite numbers that look like posteriors); the other
    example is untouched (nn.ctc.x__posteriors__mutmut_16 found the bug)."""
    log_probs = np.log(np.full((2, 3, 3), 1 / 3))
    log_probs[0, 1, 0] = np.nan
    with np.errstate(invalid="ignore"):
        gamma = ctc_alignment(log_probs, np.array([[0], [1]]))
    assert np.isnan(gamma[0]).all()
    assert np.allclose(gamma[1].sum(axis=-1), 1.0)


# clip_by_global_norm with the norm passed in (spec/clip_by_global_norm.md)


def test_clip_by_global_norm_with_a_given_norm_still_names_a_bad_gradient():
    """(nn.clip.x_clip_by_global_norm__mutmut_15, _21, _22: another function named)"""
    expected = r"^clip_by_global_norm: grads\['w'\] must be a float32 or float64 array, received"
    with pytest.raises(DTypeError, match=expected + " int32$"):
        clip_by_global_norm({"w": np.ones(2, np.int32)}, 1.0, norm=1.0)


def test_clip_by_global_norm_refuses_a_negative_given_norm_naming_it():
    """(nn.clip.x_clip_by_global_norm__mutmut_30: the message changed)"""
    expected = (
        r"^clip_by_global_norm: norm must be None or the global norm of grads "
        r"\(a real number >= 0\), received -1\.0$"
    )
    with pytest.raises(DataError, match=expected):
        clip_by_global_norm({"w": np.ones(2)}, 1.0, norm=-1.0)


def test_clip_by_global_norm_divergence_error_says_what_to_do():
    """A non-finite norm passed in is a DivergenceError that says where it came from and
    points at the trainer's guard (nn.clip.x_clip_by_global_norm__mutmut_42-49)."""
    expected = (
        r"^clip_by_global_norm: the global norm of the gradients is nan \(the norm passed in is "
        r"not finite\); clipping cannot repair a NaN or inf gradient\. Let the trainer's guard "
        r'handle it: \[train\] nonfinite = "raise", "skip" or "rollback"$'
    )
    with pytest.raises(DivergenceError, match=expected):
        clip_by_global_norm({"w": np.ones(2)}, 1.0, norm=float("nan"))


def test_global_norm_of_huge_and_tiny_entries_ignores_underflow_even_when_numpy_raises():
    """The rescaled sum underflows for the tiny entry; that is no error, even under
    np.errstate(all="raise") (nn.clip.x__scaled_norm__mutmut_17)."""
    with np.errstate(all="raise"):
        assert global_norm({"w": np.array([1e300, 1e-300])}) == 1e300


def test_conv2d_sampler_draws_strides_dilations_and_the_least_fitting_padding():
    """Stride and dilation in {1, 2}, each value drawn; padding the least that fits the
    dilated kernel in the input, ceil((d (k - 1) + 1 - n) / 2) or 0, plus 0 or 1, each drawn
    (nn.conv.x__sample_static__mutmut_10-49)."""
    rng = np.random.default_rng(0)
    seen = {"stride": set(), "dilation": set(), "extra": set()}
    for n in range(1, 7):
        for k in range(1, 5):
            x, w, b = np.ones((1, 1, n, n + 1)), np.ones((1, 1, k, k)), np.ones(1)
            for _ in range(8):
                static = REGISTRY["conv2d"].static(rng, x, w, b)
                seen["stride"] |= set(static["stride"])
                seen["dilation"] |= set(static["dilation"])
                pads = zip((n, n + 1), static["padding"], static["dilation"], strict=True)
                for size, p, d in pads:
                    least = max(0, math.ceil((d * (k - 1) + 1 - size) / 2))
                    assert p - least in {0, 1}
                    seen["extra"].add(p - least)
    assert seen == {"stride": {1, 2}, "dilation": {1, 2}, "extra": {0, 1}}


# conv2d_transpose (spec/conv2d.md): conv2d's input gradient, with its own argument checks


@pytest.mark.parametrize(
    ("x_shape", "w_shape"),
    [((2, 32, 6, 3), (3, 32, 3, 2)), ((2, 32, 3, 6), (3, 32, 2, 3))],
)
def test_conv2d_transpose_is_bitwise_conv2ds_input_gradient(x_shape, w_shape):
    """It takes the path conv2d's vjp takes, so the two agree to the bit; here output sizes
    P != Q and kernels R != S tell the path's arguments apart
    (nn.conv.x_conv2d_transpose__mutmut_75, _82, _83)."""
    rng = np.random.default_rng(0)
    x, w = rng.standard_normal(x_shape), rng.standard_normal(w_shape)
    y, vjp = conv2d(x, w, np.zeros(w_shape[0]))
    g = rng.standard_normal(y.shape)
    assert np.array_equal(conv2d_transpose(g, w, input_shape=x_shape), vjp(g)[0])


_INTS = np.ones((1, 1, 2, 2), np.int64)


@pytest.mark.parametrize(
    ("g", "w", "message"),
    [
        (
            np.ones((1, 1, 2, 2), int),
            np.ones((1, 1, 2, 2)),
            "g must be .*, received ndarray of int64",
        ),
        (
            np.ones((1, 1, 2, 2)),
            np.ones((1, 1, 2, 2), int),
            "w must be .*, received ndarray of int64",
        ),
        ([[[[1.0]]]], np.ones((1, 1, 1, 1)), "g must be .*, received list$"),
    ],
)
def test_conv2d_transpose_names_a_non_float_argument_and_what_it_received(g, w, message):
    """(nn.conv.x_conv2d_transpose__mutmut_16-19, _25-30)"""
    with pytest.raises(DTypeError, match=r"^conv2d_transpose: " + message):
        conv2d_transpose(g, w, input_shape=(1, 1, 3, 3))


def test_conv2d_transpose_refuses_a_kernel_with_no_rows():
    """R = 0 is refused like S = 0 (nn.conv.x_conv2d_transpose__mutmut_48)."""
    with pytest.raises(ShapeError, match=r"^conv2d_transpose: g .* do not fit input_shape"):
        conv2d_transpose(np.ones((1, 1, 4, 2)), np.ones((1, 1, 0, 2)), input_shape=(1, 1, 3, 3))


# max_pool2d and avg_pool2d (spec/max_pool2d.md, spec/avg_pool2d.md)


@pytest.mark.parametrize("name", ["max_pool2d", "avg_pool2d"])
def test_pool_deriver_gives_the_output_sizes(name):
    """P = (H - wh) // sh + 1 and Q = (W - ww) // sw + 1, window 2 and stride = window by
    default. _deriver runs when nn is imported, before a mutant is active, so only a direct
    call exercises its mutants (nn.pool.x__deriver__mutmut_1-24)."""
    derive = _deriver(name)
    assert derive({"h": 7, "w": 9}, window=(2, 3), stride=(2, 2)) == {"p": 3, "q": 4}
    assert derive({"h": 7, "w": 9}, window=(3, 2)) == {"p": 2, "q": 4}
    assert derive({"h": 5, "w": 6}) == {"p": 2, "q": 3}
    with pytest.raises(ValueError, match=rf"^{name}: window must be a positive int"):
        derive({"h": 5, "w": 6}, window=0)


@pytest.mark.parametrize("pool", [max_pool2d, avg_pool2d])
def test_pool_functions_own_checks_name_the_op(pool):
    """The op's checks run first, but the function behind it checks window and stride itself,
    naming the op (nn.pool.x_max_pool2d__mutmut_5, _13, _14; x_avg_pool2d__mutmut_3, _11, _12)."""
    with pytest.raises(ValueError, match=rf"^{pool.__name__}: stride must be a positive int"):
        pool.__wrapped__(np.ones((1, 1, 4, 4)), window=2, stride=(1, 0))


def test_max_pool2d_function_refuses_complex_input_by_itself():
    """(nn.pool.x_max_pool2d__mutmut_2, _3: the function's own check removed or unnamed)"""
    with pytest.raises(DTypeError, match=r"^max_pool2d: x must be real .*received complex128$"):
        max_pool2d.__wrapped__(np.ones((1, 1, 2, 2), complex))


def test_pool_sampler_draws_windows_of_two_or_three_and_strides_of_one_to_three_or_none():
    """Windows of 2 or 3 where they fit, else the whole side (1); stride None (= window) with
    probability 1/2, u < 1/2, else 1, 2 or 3 per side: each case drawn
    (nn.pool.x__sample_static__mutmut_15-42)."""
    rng = np.random.default_rng(0)
    sample = REGISTRY["max_pool2d"].static
    windows, strides = {1: set(), 2: set(), 5: set()}, set()
    for side in windows:
        for _ in range(60):
            static = sample(rng, np.ones((1, 1, side, side)))
            windows[side] |= set(static["window"])
            strides |= {None} if static["stride"] is None else set(static["stride"])
    assert windows == {1: {1}, 2: {2}, 5: {2, 3}} and strides == {None, 1, 2, 3}
    assert sample(_ConstantUniforms(0.5), np.ones((1, 1, 4, 4)))["stride"] is not None


def test_max_pool2d_window_of_more_than_256_offsets_routes_the_gradient():
    """257 offsets do not fit the uint8 offsets of small windows
    (nn.pool.x__max_offsets__mutmut_29)."""
    x = np.zeros((1, 1, 1, 257))
    x[0, 0, 0, 256] = 1.0
    y, vjp = max_pool2d(x, window=(1, 257))
    assert y.ravel().tolist() == [1.0]
    assert np.flatnonzero(vjp(np.ones(y.shape))[0]).tolist() == [256]


@pytest.mark.parametrize("pool", [max_pool2d, avg_pool2d])
@pytest.mark.parametrize("window", [2, (3, 2)])
def test_pool_split_over_threads_is_bitwise_the_single_thread_result(monkeypatch, pool, window):
    """The forward and the vjp split the batch over threads (nn.parallel.for_slices); with
    every size over the threshold the result is the one-thread result, bit for bit
    (nn.pool.x__scatter__mutmut_41, _45; x__max_offsets__mutmut_79)."""
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, 2, 6, 6))
    y1, vjp1 = pool(x, window=window)
    g = rng.standard_normal(y1.shape)
    dx1 = vjp1(g)[0]
    monkeypatch.setattr(nn.parallel, "THREADS", 2)
    monkeypatch.setattr(nn.parallel, "MIN_SIZE", 0)
    y2, vjp2 = pool(x, window=window)
    assert np.array_equal(y2, y1) and np.array_equal(vjp2(g)[0], dx1)


def test_global_norm_of_float32_arrays_is_one_float32_dot_product_each():
    """The common case: each array's sum of squares is a BLAS dot in its own dtype, the sums
    added in float64 (nn.clip.x_global_norm__mutmut_21: a negative total sent every call to
    the slow float64 rescaling, which rounds otherwise)."""
    w = np.full(3, 0.1, np.float32)
    b = np.array([0.3])
    expected = math.sqrt(float(np.dot(w, w)) + 0.09)
    assert expected != math.sqrt(3 * float(w[0]) ** 2 + 0.09)  # float32 rounding shows
    assert global_norm({"w": w, "b": b}) == expected


def test_global_norm_takes_the_fast_path_at_float32s_smallest_normal():
    """A sum of squares of exactly float32's tiny is in range: the float32 dot's result,
    here with the square of 2^-75 rounded away (nn.clip.x_global_norm__mutmut_27)."""
    w = np.array([2.0**-63, 2.0**-75], np.float32)
    assert global_norm({"w": w}) == 2.0**-63


def test_global_norm_of_tiny_float32_entries_ignores_underflow_even_when_numpy_raises():
    """Squares that underflow in float32 are no error, even under np.errstate(all="raise"):
    the sum is redone in float64 (nn.clip.x_global_norm__mutmut_4, _6)."""
    w = np.array([1e-30, 1e-25], np.float32)
    with np.errstate(all="raise"):
        n = global_norm({"w": w})
    assert n == pytest.approx(math.hypot(float(w[0]), float(w[1])), rel=1e-15)
