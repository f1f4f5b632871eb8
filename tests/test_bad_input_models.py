"""Bad input to layers, models, optimizers, clipping, decoders and reading: named errors.

Each case is a row of docs/bad-input.md (its message column is checked against a run); the
error must name the argument, what was expected and what was received (``parts``).
"""

from __future__ import annotations

import numpy as np
import pytest
from bad_input_table import DOCS, bad, check_named_error

from nn import DataError, DTypeError, ShapeError, relu
from nn.clip import clip_by_global_norm
from nn.ctc import ctc_log_likelihood
from nn.decode import beam_search, best_path, forced_alignment, readings_to_labels
from nn.ensemble import product_of_experts, shifted
from nn.errors import DivergenceError
from nn.guard import Guard
from nn.health import EpochHealth, layer_names
from nn.inputs import check_training_data
from nn.layers import Dense
from nn.model import Sequential, mlp
from nn.norm_layers import BatchNorm, Dropout
from nn.optim import make_optimizer
from nn.reading import fit_to_canvas, read_outputs, resize
from nn.run import score
from nn.step import train_step
from nn.train import mean_loss

MODEL = mlp([4, 5, 3])
P = MODEL.init(0)
X, Y = np.ones((2, 4), np.float32), np.array([0, 2])
OUT = MODEL.predict(P, X)
MSE = mlp([4, 3], loss="mean_squared_error")
ADAM = make_optimizer("adam")
W = {"w": np.ones((2, 2), np.float32)}
LP = np.log(np.full((1, 3, 3), 1 / 3))  # (N, T, K): blank is 2
INK = np.full((5, 5), 200, np.uint8)
B1 = np.ones(1)


CASES = [
    # layers
    bad("Dense-units", lambda: Dense(0), ValueError, "units", "positive integer", "0"),
    bad("Dense-init", lambda: Dense(5, init="xavier"), ValueError, "init", "he_normal", "'xavier'"),
    bad("Dense-in_shape", lambda: Dense(5).init(np.random.default_rng(0), (1, 2, 3)),
        ShapeError, "in_shape", "(D,) or (T, D)", "(1, 2, 3)"),
    bad("Dense-list", lambda: Dense(2).apply({"w": np.ones((1, 2)), "b": np.ones(2)}, [[1.0]]),
        DTypeError, "(x)", "NumPy array", "list"),
    bad("Dropout-rate", lambda: Dropout(1.0), ValueError, "rate", "[0, 1)", "1.0"),
    bad("BatchNorm-momentum", lambda: BatchNorm(momentum=0), ValueError, "momentum", "(0, 1]", "0"),
    bad("BatchNorm-list", lambda: BatchNorm().apply({"gamma": B1, "beta": B1}, [[1.0]]),
        DTypeError, "(x)", "NumPy array", "list"),
    bad("BatchNorm-one-value", lambda: BatchNorm().forward(
            {"gamma": np.ones(3), "beta": np.zeros(3)}, np.ones((1, 3)), train=True, rng=None,
            state={"running_mean": np.zeros(3), "running_var": np.ones(3)}),
        ValueError, "count", "integer >= 2", "received 1"),
    # building a model
    bad("Sequential-empty", lambda: Sequential([], input_shape=(3,)),
        ValueError, "layers", "must not be empty"),
    bad("Sequential-loss", lambda: Sequential([Dense(2)], input_shape=(3,), loss="hinge"),
        ValueError, "loss", "softmax_cross_entropy", "'hinge'"),
    bad("Sequential-layer", lambda: Sequential([relu], input_shape=(3,)),
        TypeError, "layer 0", "nn.layers.Layer", "function"),
    bad("Sequential-input_shape", lambda: Sequential([Dense(2)], input_shape=3),
        ShapeError, "input_shape", "tuple of integers", "received 3"),
    bad("Sequential-ctc", lambda: Sequential([Dense(2)], input_shape=(3,), loss="ctc"),
        ShapeError, "'ctc'", "(T, K)", "(2,)"),
    bad("mlp-activation", lambda: mlp([4, 3], activation="elu"), ValueError, "activation", "relu",
        "'elu'"),
    # a model's entry points: init, forward, loss, predict, correct
    bad("init-seed", lambda: MODEL.init("0"), TypeError, "seed", "integer >= 0", "'0'"),
    bad("init-negative-seed", lambda: MODEL.init(-1), ValueError, "seed", "integer >= 0", "-1"),
    bad("init-float16", lambda: MODEL.init(0, np.float16),
        DTypeError, "dtype", "float32", "float16"),
    bad("forward-list", lambda: MODEL.forward(P, [[1.0] * 4]), DTypeError, "x", "(N, 4)", "list"),
    bad("forward-int", lambda: MODEL.forward(P, np.ones((2, 4), int)),
        DTypeError, "x", "float32 or float64", "int64"),
    bad("forward-shape", lambda: MODEL.forward(P, np.ones((2, 5), np.float32)),
        ShapeError, "x", "(N, 4)", "(2, 5)"),
    bad("forward-float64", lambda: MODEL.forward(P, X.astype(np.float64)),
        DTypeError, "(x) float64", "share one dtype", "(w) float32"),
    bad("forward-params", lambda: MODEL.forward(list(P.values()), X),
        TypeError, "params", "dict of arrays", "list"),
    bad("forward-missing", lambda: MODEL.forward({k: P[k] for k in P if k != "dense0.w"}, X),
        ShapeError, "dense0.w (4, 5)", "lacks", "it has"),
    bad("forward-wrong-model", lambda: MODEL.forward(mlp([4, 6, 3]).init(0), X),
        ShapeError, "dense0.w (4, 5)", "needs", "(4, 6)"),
    bad("forward-rng", lambda: MODEL.forward(P, X, rng="a"),
        TypeError, "rng", "np.random.Generator", "'a'"),
    bad("loss-batch", lambda: MODEL.loss(P, X), TypeError, "batch", "pair (x, y)", "ndarray"),
    bad("loss-negative", lambda: MODEL.loss(P, (X, np.array([-1, 0]))),
        DataError, "labels", "[0, 3)", "from -1"),
    bad("loss-too-big", lambda: MODEL.loss(P, (X, np.array([3, 0]))),
        DataError, "labels", "[0, 3)", "to 3"),
    bad("loss-float", lambda: MODEL.loss(P, (X, np.array([1.0, 0.0]))),
        DataError, "labels y", "integers", "float64"),
    bad("loss-length", lambda: MODEL.loss(P, (X, np.array([1, 0, 2]))),
        ShapeError, "labels y", "(2,)", "(3,)"),
    bad("loss-mse-too-big", lambda: MSE.loss(MSE.init(0), (X, np.array([3, 0]))),
        DataError, "labels", "0..2", "0..3"),
    bad("loss-empty", lambda: MODEL.loss(P, (X[:0], Y[:0])),
        ShapeError, "'n'", "at least 1", "(0, 3)"),
    bad("predict-batch_size", lambda: MODEL.predict(P, X, batch_size=0),
        ValueError, "batch_size", "integer >= 1", "0"),
    bad("correct-length", lambda: MODEL.correct(OUT, np.array([1, 0, 2])),
        ShapeError, "labels y", "(2,)", "(3,)"),
    bad("correct-too-big", lambda: MODEL.correct(OUT, np.array([7, 0])),
        DataError, "labels y", "[0, 3)", "to 7"),
    bad("correct-outputs", lambda: MODEL.correct(OUT[0], Y),
        ShapeError, "outputs", "(N, K)", "(3,)"),
    bad("mean_loss-empty", lambda: mean_loss(MODEL, OUT[:0], Y[:0]),
        DataError, "out", "mean", "N = 0"),
    bad("score-length", lambda: score(MODEL, P, np.zeros((2, 2, 2), np.uint8), Y[:1]),
        DataError, "labels", "2 images", "1 labels"),
    # optimizers and clipping
    bad("update-lr", lambda: ADAM.update(W, W, ADAM.init(W), lr=float("nan")),
        ValueError, "lr", "finite", "nan"),
    bad("update-grads", lambda: ADAM.update(W, {"w": np.ones(3, np.float32)}, ADAM.init(W), lr=0.1),
        ShapeError, "grads['w']", "(2, 2)", "(3,)"),
    bad("update-state", lambda: ADAM.update(W, W, {}, lr=0.1),
        DataError, "state", "Adam.init(params)", "missing"),
    bad("opt-init-float16", lambda: ADAM.init({"w": np.ones(2, np.float16)}),
        DTypeError, "params['w']", "float32 or float64", "float16"),
    bad("make_optimizer-name", lambda: make_optimizer("adagrad"), ValueError, "name", "adam",
        "'adagrad'"),
    bad("clip-max_norm", lambda: clip_by_global_norm(W, 0), DataError, "max_norm", "positive", "0"),
    # decoders and reading
    bad("best_path-rank", lambda: best_path(LP[0]), ShapeError, "log_probs", "(N, T, K)", "(3, 3)"),
    bad("best_path-int", lambda: best_path(np.ones((1, 2, 3), int)),
        DTypeError, "log_probs", "float", "int64"),
    bad("best_path-nan", lambda: best_path(np.full((1, 2, 3), np.nan)),
        DataError, "log_probs", "finite maximum", "max nan"),
    bad("beam_search-beam", lambda: beam_search(LP, beam=0),
        DataError, "beam", "integer >= 1", "0"),
    bad("forced_alignment-labels", lambda: forced_alignment(LP[0], np.array([2])),
        DataError, "labels", "[0, 2)", "[2]"),
    bad("readings_to_labels-type", lambda: readings_to_labels([1]),
        TypeError, "readings", "Readings", "int"),
    bad("read_outputs-decoder", lambda: read_outputs(MODEL, LP, decoder="greedy"),
        DataError, "decoder", "best_path", "'greedy'"),
    bad("read_outputs-rank", lambda: read_outputs(MODEL, OUT), ShapeError, "out", "(N, T, K)",
        "(2, 3)"),
    bad("product_of_experts-empty", lambda: product_of_experts([]),
        DataError, "log_probs", "non-empty list", "list of length 0"),
    bad("product_of_experts-shape", lambda: product_of_experts([LP, LP[:, :, :2]]),
        ShapeError, "log_probs[1]", "the N and K of log_probs[0]", "(1, 3, 2)"),
    bad("shifted-dy", lambda: shifted(INK, 6, 0), DataError, "dy", "from -5 to 5", "6"),
    bad("ctc_log_likelihood-labels", lambda: ctc_log_likelihood(LP, np.array([[2]])),
        DataError, "labels", "[0, 2)", "from 2 to 2"),
    bad("fit_to_canvas-float", lambda: fit_to_canvas(INK.astype(float), 28, 30),
        DataError, "image", "uint8", "float64"),
    bad("fit_to_canvas-height", lambda: fit_to_canvas(INK, 2, 30),
        ValueError, "height", "integers >= 3", "2 and 30"),
    bad("resize-size", lambda: resize(INK, 0, 3),
        ValueError, "h and w", "integers >= 1", "0 and 3"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "parts"), CASES)
def test_bad_input_is_a_named_error(call, error, parts, request):
    check_named_error(call, error, parts, request.node.callspec.id)


def test_an_empty_batch_is_an_empty_prediction_and_correct_reads_none():
    """predict and correct of N = 0 examples: defined, and empty (docs: `predict-empty`)."""
    out = MODEL.predict(P, X[:0])
    assert out.shape == (0, 3) and out.dtype == np.float32
    assert MODEL.correct(out, Y[:0]).shape == (0,)
    assert best_path(np.zeros((0, 2, 3))) == [] and beam_search(np.zeros((0, 2, 3))) == []
    assert "`predict-empty`" in DOCS.read_text(encoding="utf-8")


def test_nan_in_a_batch_is_an_ieee_loss_that_the_trainer_guard_names():
    """model.loss of a NaN input: a NaN loss, as IEEE arithmetic gives (no check in the hot
    path). The trainer's guard is what names it: the layer and the op (docs: `loss-nan`)."""
    x = X.copy()
    x[1, 2] = np.nan
    value, _ = MODEL.loss(P, (x, Y))
    assert np.isnan(value)
    opt = make_optimizer("sgd")
    with pytest.raises(DivergenceError, match=r"the input batch x is not finite: 1 NaN in 8"):
        train_step(MODEL, opt, P, opt.init(P), {}, (x, Y), lr=0.1, rng=np.random.default_rng(0),
                   guard=Guard("raise"), health=EpochHealth(layer_names(P)))  # fmt: skip
    assert "`loss-nan`" in DOCS.read_text(encoding="utf-8")


# Found by review: each escaped as a bare Python error before the checks above it were fixed.
@pytest.mark.parametrize(
    ("call", "error", "parts"),
    [
        pytest.param(lambda: MODEL.correct(OUT, [0, 5]), DataError, ("labels y", "[0, 3)", "5"),
                     id="correct-list-out-of-range"),
        pytest.param(lambda: MODEL.init(0, dtype=(np.float32, -1)), DTypeError,
                     ("dtype", "float32", "(")  , id="init-malformed-dtype"),
        pytest.param(lambda: score(MODEL, P, np.ones((), np.uint8), np.array(1)), DataError,
                     ("images and labels", "batch axis", "()"), id="score-0-d"),
        pytest.param(lambda: check_training_data(False, MODEL, np.zeros((2, 2, 2), np.uint8),
                                                 np.array(1)),
                     DataError, ("y_train", "(N,)", "0-d array"), id="train-0-d-labels"),
    ],
)  # fmt: skip
def test_bad_input_found_by_review_is_named(call, error, parts):
    with pytest.raises(error) as caught:
        call()
    assert all(part in str(caught.value) for part in parts), str(caught.value)
