"""Layers for sequences and heads: Dense on (T, D) inputs, Columns, Unflatten, their layer
tables, which other layers take (T, D) features, and whole networks checked end to end.

A network that reads a number scores every image column: conv -> relu -> max_pool ->
columns -> dense -> relu -> dense gives (N, T, K) scores. A baseline with 7 heads reads
flatten -> dense(7 * 10) -> unflatten((7, 10)), (N, 7, 10).
"""

from __future__ import annotations

import re

import numpy as np
import pytest

from nn import linear, softmax_cross_entropy
from nn.activations import relu, sigmoid, tanh
from nn.architecture import LAYER_TYPES, build_layers, layer_problem
from nn.conv_layers import Columns, Conv2D, Flatten, MaxPool2D, Unflatten
from nn.errors import ShapeError
from nn.layers import Activation, Dense
from nn.model import Sequential, check_model, is_trusted, layer_params, verify_layer
from nn.norm_layers import BatchNorm, Dropout

N, T, D, M = 3, 5, 4, 6


def test_dense_on_a_sequence_is_dense_on_its_rows_with_gradients_summed():
    """The same w and b at each of the T positions: (N, T, D) gives what the N*T rows give,
    dx is the rows' dx reshaped, and dw, db are the sums of every position's gradients."""
    rng = np.random.default_rng(0)
    layer = Dense(M)
    params = {k: v.astype(np.float64) + 0.1 for k, v in layer.init(rng, (T, D)).items()}
    assert {k: v.shape for k, v in params.items()} == {"w": (D, M), "b": (M,)}
    x, g = rng.standard_normal((N, T, D)), rng.standard_normal((N, T, M))
    y, vjp = layer.apply(params, x)
    dx, dparams = vjp(g)
    rows_y, rows_vjp = layer.apply(params, x.reshape(N * T, D))
    rows_dx, rows_dparams = rows_vjp(g.reshape(N * T, M))
    assert y.shape == (N, T, M) and dx.shape == (N, T, D)
    np.testing.assert_array_equal(y, rows_y.reshape(N, T, M))
    np.testing.assert_array_equal(dx, rows_dx.reshape(N, T, D))
    for k in ("w", "b"):
        np.testing.assert_array_equal(dparams[k], rows_dparams[k])
    # Against an independent sum over positions: each position alone, as a batch of N rows.
    per_position = [layer.apply(params, x[:, t])[1](g[:, t]) for t in range(T)]
    for t, (dx_t, _) in enumerate(per_position):
        np.testing.assert_allclose(dx[:, t], dx_t, rtol=1e-14)
    for k in ("w", "b"):
        total = np.sum([dp[k] for _, dp in per_position], axis=0)
        np.testing.assert_allclose(dparams[k], total, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dparams["w"], np.einsum("ntd,ntm->dm", x, g), rtol=1e-12)
    np.testing.assert_allclose(dparams["b"], g.sum(axis=(0, 1)), rtol=1e-12)


def test_linear_with_a_loop_dimension_sums_dw_over_it():
    """What the brief assumed of the op: linear on (N, T, D) broadcasts w over N and its vjp
    sums dw and db back (unbroadcast). Dense uses one product over N*T rows instead (about
    twice as fast); both give the same numbers."""
    rng = np.random.default_rng(1)
    x, w, b = rng.standard_normal((N, T, D)), rng.standard_normal((D, M)), rng.standard_normal(M)
    g = rng.standard_normal((N, T, M))
    y, vjp = linear(x, w, b)
    dx, dw, db = vjp(g)
    np.testing.assert_allclose(dx, g @ w.T, rtol=1e-13)
    assert (dw.shape, db.shape) == ((D, M), (M,))
    np.testing.assert_allclose(y, x @ w + b, rtol=1e-13)
    np.testing.assert_allclose(dw, np.einsum("ntd,ntm->dm", x, g), rtol=1e-12)
    np.testing.assert_allclose(db, g.sum(axis=(0, 1)), rtol=1e-12)
    dense_y, dense_vjp = Dense(M).apply({"w": w, "b": b}, x)
    np.testing.assert_allclose(dense_y, y, rtol=1e-13)
    np.testing.assert_allclose(dense_vjp(g)[1]["w"], dw, rtol=1e-12)


@pytest.mark.parametrize(
    ("layer", "in_shape", "out_shape"),
    [
        (Dense(M), (T, D), (T, M)),
        (Dense(M), (1, D), (1, M)),
        (Columns(), (3, 4, 5), (5, 12)),
        (Columns(), (2, 1, 1), (1, 2)),
        (Unflatten((4, 3)), (12,), (4, 3)),
        (Unflatten((7, 10)), (70,), (7, 10)),
        (Dropout(0.5), (T, D), (T, D)),
        (Activation(relu), (T, D), (T, D)),
        (Activation(tanh), (T, D), (T, D)),
        (Activation(sigmoid), (T, D), (T, D)),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else None,
)
def test_out_shape_is_what_apply_returns_and_the_layer_verifies(layer, in_shape, out_shape):
    """Each layer's shape law on sequences and heads, and its vjp (input and parameters) by
    the protocol at a general position, in both modes for dropout."""
    assert layer.out_shape(in_shape) == out_shape
    assert is_trusted(layer)
    report = verify_layer(layer, in_shape, seed=1)
    assert report.passed, report


def test_dropout_on_a_sequence_zeroes_single_entries_in_training():
    """Dropout's mask has the input's shape: entries of a (T, D) sequence drop independently."""
    x = np.ones((50, T, D), np.float32)
    y, _, _ = Dropout(0.5).forward({}, x, state={}, train=True, rng=np.random.default_rng(0))
    assert set(np.unique(y).tolist()) == {0.0, 2.0}
    assert 0.4 < float(np.mean(y == 0)) < 0.6
    assert np.any(y == 0, axis=2).mean() > 0.8  # not whole positions: single entries


def test_batch_norm_refuses_sequences_instead_of_normalizing_the_wrong_axis():
    """BatchNorm takes (D,) features or (C, H, W) images. A (T, D) sequence is neither: it
    could mean per feature over N and T, or per position over N; rather than guess (its
    (N, C, ...) reading would take T as the channels), it raises a ShapeError at assembly."""
    with pytest.raises(
        ShapeError, match=r"BatchNorm: expects .*\(D,\) or \(C, H, W\), received in_shape \(5, 4\)"
    ):
        BatchNorm().init(np.random.default_rng(0), (T, D))
    with pytest.raises(ShapeError, match=r"BatchNorm: .*received in_shape \(5, 12\)"):
        Sequential([Columns(), BatchNorm()], input_shape=(3, 4, 5))
    # Applied by hand to a batch of sequences, the op refuses the (N, T, D, 1, 1) it gets.
    params = {"gamma": np.ones(T), "beta": np.zeros(T)}
    with pytest.raises(ShapeError, match=r"^batch_norm: "):
        BatchNorm().apply(params, np.ones((N, T, D)))


@pytest.mark.parametrize(
    ("layers", "input_shape", "match"),
    [
        ([Dense(4)], (2, 3, 4), r"Dense: expects flat inputs \(N, D\) or sequences \(N, T, D\)"),
        ([Conv2D(2, 3), Dense(4)], (1, 8, 8), r"layer 1 \(dense\).*in_shape \(2, 6, 6\)"),
        ([Columns()], (12,), r"layer 0 \(columns\).*Columns: expects images"),
        ([Columns()], (0, 3, 4), r"Columns: steps of C\*H = 0 features"),
        ([Flatten(), Unflatten((7, 9))], (1, 7, 10), r"Unflatten: shape \[7, 9\] holds 7\*9 = 63"),
        ([Columns(), Unflatten((2, 6))], (3, 4, 5), r"Unflatten: expects flat inputs .*\(5, 12\)"),
    ],
)
def test_shapes_that_do_not_fit_fail_at_assembly_naming_the_layer(layers, input_shape, match):
    with pytest.raises(ShapeError, match=match):
        Sequential(layers, input_shape=input_shape)


# --- layer tables --------------------------------------------------------------------------


def test_columns_and_unflatten_layer_tables_build_and_round_trip():
    specs = [
        {"layer": "conv2d", "channels": 2, "kernel": 3},
        {"layer": "columns"},
        {"layer": "dense", "units": 6},
        {"layer": "relu"},
    ]
    layers = build_layers(specs)
    assert [type(layer) for layer in layers[:3]] == [Conv2D, Columns, Dense]
    assert layers[1].config() == {"layer": "columns"}
    heads = build_layers([{"layer": "unflatten", "shape": [7, 10]}])[0]
    assert isinstance(heads, Unflatten) and heads.shape == (7, 10)
    assert heads.config() == {"layer": "unflatten", "shape": [7, 10]}
    assert build_layers([heads.config()])[0].config() == heads.config()
    assert LAYER_TYPES["columns"] is Columns and LAYER_TYPES["unflatten"] is Unflatten


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"layer": "unflatten"}, r"\(unflatten\) needs \['shape'\]"),
        (
            {"layer": "unflatten", "shape": [7]},
            r"shape must be a list of 2 positive integers .*received \[7\]",
        ),
        (
            {"layer": "unflatten", "shape": [7, 0]},
            r"shape must be a list of 2 positive .*received \[7, 0\]",
        ),
        (
            {"layer": "unflatten", "shape": [7, 10, 1]},
            r"shape must be a list of 2 .*received \[7, 10, 1\]",
        ),
        (
            {"layer": "unflatten", "shape": [7.5, 10]},
            r"shape must be a list of 2 .*received \[7.5, 10\]",
        ),
        ({"layer": "unflatten", "shape": [True, 10]}, r"received \[True, 10\]"),
        ({"layer": "unflatten", "shape": "7x10"}, r"shape must be a list of 2 .*received '7x10'"),
        (
            {"layer": "unflatten", "shape": [7, 10], "heads": 7},
            r"unknown key\(s\) \['heads'\]; unflatten accepts \['shape'\]",
        ),
        ({"layer": "columns", "width": 3}, r"unknown key\(s\) \['width'\]; columns accepts none"),
    ],
)
def test_bad_tables_name_the_key_what_is_expected_and_what_was_received(spec, match):
    problem = layer_problem(spec)
    assert problem is not None
    assert re.search(match, problem), problem


# --- whole networks ------------------------------------------------------------------------


def per_position_cross_entropy(out, labels):
    """A test loss for outputs (N, T, K) and labels (N, T): the mean softmax cross-entropy
    over all N*T positions (Sequential's own losses take (N, K) outputs)."""
    rows = out.reshape(labels.size, -1)  # (N, T, K) -> (N*T, K)
    value, vjp = softmax_cross_entropy(rows, labels=labels.reshape(-1))
    return value, lambda g: (vjp(g)[0].reshape(out.shape),)  # (N*T, K) -> (N, T, K)


def batch_away_from_kinks(model, params, shape, labels_shape, classes, seed):
    """P5: redraw the batch until every relu pre-activation is at least 1e-3 from 0 and
    every max-pool window's two largest entries are at least 1e-3 apart."""
    for attempt in range(100):
        rng = np.random.default_rng([seed, attempt])
        x = rng.standard_normal(shape)
        h, margin = x, np.inf
        for name, layer in zip(model.names, model.layers, strict=True):
            if isinstance(layer, Activation):
                margin = min(margin, float(np.abs(h).min()))
            if isinstance(layer, MaxPool2D):
                n, c, hh, ww = h.shape
                windows = h[:, :, : hh // 2 * 2, : ww // 2 * 2].reshape(
                    n, c, hh // 2, 2, ww // 2, 2
                )
                top = np.sort(windows.transpose(0, 1, 2, 4, 3, 5).reshape(-1, 4), axis=1)
                positive = top[:, -1] > 0  # all-zero windows after relu do not move
                margin = min(
                    margin, float(np.min(top[positive, -1] - top[positive, -2], initial=np.inf))
                )
            h = layer.apply(layer_params(params, name), h)[0]
        if margin >= 1e-3:
            return x, rng.integers(0, classes, labels_shape)
    raise AssertionError("no batch away from the kinks")


def column_reader():
    """conv2d -> relu -> max_pool -> columns -> dense -> relu -> dense: (N, T, K) scores."""
    layers = [
        Conv2D(2, 3),
        Activation(relu),
        MaxPool2D(2),
        Columns(),
        Dense(5),
        Activation(relu),
        Dense(4),
    ]
    return Sequential(layers, input_shape=(1, 8, 12), loss=per_position_cross_entropy)


def test_column_reader_shapes():
    model = column_reader()
    # (1, 8, 12) -conv3-> (2, 6, 10) -pool2-> (2, 3, 5) -columns-> (5, 6) -dense-> (5, 5) ...
    assert model.shapes == [
        (1, 8, 12),
        (2, 6, 10),
        (2, 6, 10),
        (2, 3, 5),
        (5, 6),
        (5, 5),
        (5, 5),
        (5, 4),
    ]
    params = model.init(0)
    assert params["dense4.w"].shape == (6, 5) and params["dense6.w"].shape == (5, 4)
    out = model.forward(params, np.zeros((2, 1, 8, 12), np.float32))[0]
    assert out.shape == (2, 5, 4) and out.dtype == np.float32


@pytest.mark.parametrize("seed", [0, 1])
def test_whole_gradient_of_a_column_reader_passes_the_protocol(seed):
    """P12: every parameter through columns and the per-step dense layers, at init and after
    a few steps of gradient descent."""
    model = column_reader()
    params = model.init(seed, np.float64)
    for step in range(2):
        x, y = batch_away_from_kinks(model, params, (2, 1, 8, 12), (2, 5), 4, seed=step)
        report = check_model(model, params, (x, y), seed=step)
        assert report.passed, [c.message() for c in report.failures]
        assert {c.input for c in report.checks} >= {*params, "all inputs jointly"}
        for _ in range(3):
            _, grads = model.loss(params, (x, y))
            params = {k: v - 0.5 * grads[k] for k, v in params.items()}


def test_whole_gradient_of_a_heads_network_passes_the_protocol():
    """flatten -> dense(A*B) -> unflatten((A, B)): A heads, each scored by cross-entropy."""
    model = Sequential(
        [Flatten(), Dense(12), Activation(tanh), Dense(3 * 4), Unflatten((3, 4))],
        input_shape=(1, 4, 4), loss=per_position_cross_entropy,
    )  # fmt: skip
    assert model.shapes[-1] == (3, 4)
    params = model.init(0, np.float64)
    rng = np.random.default_rng(2)
    x, y = rng.standard_normal((3, 1, 4, 4)), rng.integers(0, 4, (3, 3))
    report = check_model(model, params, (x, y))
    assert report.passed, [c.message() for c in report.failures]
    # Head i's scores are units iB..(i+1)B-1 of the last dense layer: the Unflatten is exact.
    out = model.forward(params, x)[0]
    flat = Sequential(model.layers[:-1], input_shape=(1, 4, 4)).forward(params, x)[0]
    np.testing.assert_array_equal(out, flat.reshape(3, 3, 4))


def test_check_model_sees_a_wrong_dense_gradient_on_sequences(monkeypatch):
    """The whole-network check must see a Dense that averages dw over positions instead of
    summing (a classic bug when one weight is shared by T steps)."""
    model = column_reader()
    params = model.init(0, np.float64)
    x, y = batch_away_from_kinks(model, params, (2, 1, 8, 12), (2, 5), 4, seed=0)
    assert check_model(model, params, (x, y)).passed
    honest = Dense.apply

    def averaged(self, p, x):
        out, vjp = honest(self, p, x)
        if x.ndim != 3:
            return out, vjp

        def wrong(g):
            dx, dp = vjp(g)
            return dx, {**dp, "w": dp["w"] / x.shape[1]}

        return out, wrong

    monkeypatch.setattr(Dense, "apply", averaged)
    report = check_model(model, params, (x, y))
    assert {"dense4.w", "dense6.w"} <= {c.input for c in report.failures}
