"""CNN layers assembled into models: shapes at assembly, modes, state, the whole-network check,
configs of layer tables, and training with exact resume."""

from __future__ import annotations

import re

import numpy as np
import pytest

from conftest import same_bits, synthetic_digits
from nn.activations import relu
from nn.architecture import build_layers, layer_problem
from nn.config import Config
from nn.conv_layers import AvgPool2D, Conv2D, Flatten, MaxPool2D
from nn.errors import DataError, ShapeError
from nn.layers import Activation, Dense
from nn.model import Sequential, check_model, is_trusted, verify_layer
from nn.norm_layers import BatchNorm, Dropout
from nn.train import build_model, train

LENET = [
    {"layer": "conv2d", "channels": 3, "kernel": 3, "padding": "same"},
    {"layer": "batch_norm"},
    {"layer": "relu"},
    {"layer": "max_pool2d", "window": 2},
    {"layer": "conv2d", "channels": 4, "kernel": 3},
    {"layer": "relu"},
    {"layer": "avg_pool2d", "window": 2},
    {"layer": "flatten"},
    {"layer": "dropout", "rate": 0.3},
    {"layer": "dense", "units": 10},
]


def small_cnn(input_shape=(1, 8, 8)) -> Sequential:
    layers = build_layers(
        [*LENET[:8], {"layer": "dropout", "rate": 0.3}, {"layer": "dense", "units": 3}]
    )
    return Sequential(layers, input_shape=input_shape)


@pytest.mark.parametrize(
    ("layer", "in_shape", "out_shape"),
    [
        (Conv2D(5, 3), (2, 7, 6), (5, 5, 4)),
        (Conv2D(5, 3, padding="same"), (2, 7, 6), (5, 7, 6)),
        (Conv2D(5, (3, 2), stride=2, padding=1, dilation=(1, 2)), (2, 7, 6), (5, 4, 3)),
        (MaxPool2D(2), (3, 7, 6), (3, 3, 3)),
        (AvgPool2D(3, stride=1), (3, 7, 6), (3, 5, 4)),
        (Flatten(), (3, 4, 5), (60,)),
        (BatchNorm(), (3, 4, 5), (3, 4, 5)),
        (BatchNorm(), (6,), (6,)),
        (Dropout(0.5), (3, 4, 5), (3, 4, 5)),
    ],
    ids=lambda v: type(v).__name__ if not isinstance(v, tuple) else None,
)
def test_out_shape_is_what_apply_returns_and_the_layer_verifies(layer, in_shape, out_shape):
    """The shape law of each layer, and its vjp by the protocol at a general position: the
    wrappers pass the right arguments to their verified ops and return the right names."""
    assert layer.out_shape(in_shape) == out_shape
    assert is_trusted(layer)
    report = verify_layer(layer, in_shape, seed=1)
    assert report.passed, report


@pytest.mark.parametrize(
    ("layers", "input_shape", "match"),
    [
        ([Dense(4), Conv2D(2, 3)], (5,), r"layer 1 \(conv2d\).*Conv2D: expects images"),
        ([Conv2D(2, 3), Dense(4)], (1, 8, 8), r"layer 1 \(dense\).*Dense: expects flat inputs"),
        ([Conv2D(2, 5), MaxPool2D(5)], (1, 6, 6), r"layer 1 \(max_pool2d\).*window does not fit"),
        ([Conv2D(2, 7)], (1, 6, 6), r"layer 0 \(conv2d\).*does not fit an input of 6x6"),
    ],
)
def test_shapes_that_do_not_fit_fail_at_assembly_naming_the_layer(layers, input_shape, match):
    with pytest.raises(ShapeError, match=match):
        Sequential(layers, input_shape=input_shape)


def test_dropout_is_the_identity_in_inference_and_seeded_in_training():
    model = Sequential([Flatten(), Dropout(0.5), Dense(3)], input_shape=(1, 4, 4))
    params = model.init(0)
    x = np.random.default_rng(0).standard_normal((5, 1, 4, 4)).astype(np.float32)
    plain = Sequential([Flatten(), Dense(3)], input_shape=(1, 4, 4))
    eval_out = model.forward(params, x)[0]
    assert np.array_equal(
        eval_out,
        plain.forward({"dense1.w": params["dense2.w"], "dense1.b": params["dense2.b"]}, x)[0],
    )
    a = model.forward(params, x, train=True, rng=7)[0]
    b = model.forward(params, x, train=True, rng=7)[0]
    c = model.forward(params, x, train=True, rng=8)[0]
    assert np.array_equal(a, b) and not np.array_equal(a, c)
    with pytest.raises(ValueError, match="Dropout: training mode needs an rng"):
        model.forward(params, x, train=True)


def test_batch_norm_state_updates_in_training_and_is_used_in_inference():
    model = Sequential([BatchNorm(momentum=0.5)], input_shape=(2, 3, 3))
    params, state = model.init(0), model.init_state()
    assert sorted(state) == ["batch_norm0.running_mean", "batch_norm0.running_var"]
    x = np.random.default_rng(0).normal(3.0, 2.0, (50, 2, 3, 3)).astype(np.float32)
    _, _, new = model.forward(params, x, state=state, train=True)
    mean = x.mean(axis=(0, 2, 3))
    assert np.allclose(new["batch_norm0.running_mean"], 0.5 * mean, rtol=1e-5)
    # the running variance takes the unbiased variance over the N H W values of a channel
    unbiased = x.astype(np.float64).var(axis=(0, 2, 3), ddof=1)
    assert np.allclose(new["batch_norm0.running_var"], 0.5 + 0.5 * unbiased, rtol=1e-5)
    assert state["batch_norm0.running_mean"].tolist() == [0, 0]  # returned anew, not in place
    eval_out = model.forward(params, x, state=new)[0]
    expected = (x - new["batch_norm0.running_mean"][:, None, None]) / np.sqrt(
        new["batch_norm0.running_var"][:, None, None] + 1e-5
    )
    assert np.allclose(eval_out, expected, atol=1e-5)
    with pytest.raises(ValueError, match=r"state must hold the running statistics"):
        model.forward(params, x)


@pytest.mark.parametrize("train_mode", [False, True], ids=["inference", "training"])
def test_check_model_passes_on_a_cnn_with_batch_norm_and_dropout(train_mode):
    """P12 on the whole CNN, in both modes: in training the batch statistics depend on the
    weights below them, and the masks are fixed by the seed (P6)."""
    model = small_cnn()
    params = model.init(0, np.float64)
    state = {k: v + 0.3 for k, v in model.init_state(np.float64).items()}
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 1, 8, 8)), rng.integers(0, 3, 6)
    report = check_model(model, params, (x, y), state=state, train=train_mode, seed=3)
    assert report.passed, report


def test_check_model_catches_a_wrong_batch_norm_gradient(monkeypatch):
    """Dropping batch norm's mean(g * xhat) term is a classic bug; the whole-network check in
    training mode must see it through the convolution below."""
    import nn.norm_layers

    honest = nn.norm_layers.batch_norm

    def missing_term(x, gamma, beta, *, eps):
        y, vjp = honest(x, gamma, beta, eps=eps)
        mean = x.mean(axis=(0, 2, 3), keepdims=True)
        inv = 1 / np.sqrt(x.var(axis=(0, 2, 3), keepdims=True) + eps)

        def wrong(g):
            dx, dgamma, dbeta = vjp(g)
            xhat = (x - mean) * inv
            term = (g * xhat).mean(axis=(0, 2, 3), keepdims=True) * xhat
            return dx + gamma[None, :, None, None] * inv * term, dgamma, dbeta

        return y, wrong

    model = small_cnn()
    params = model.init(0, np.float64)
    rng = np.random.default_rng(1)
    x, y = rng.standard_normal((6, 1, 8, 8)), rng.integers(0, 3, 6)
    state = model.init_state(np.float64)
    assert check_model(model, params, (x, y), state=state, train=True).passed
    monkeypatch.setattr(nn.norm_layers, "batch_norm", missing_term)
    report = check_model(model, params, (x, y), state=state, train=True)
    assert "conv2d0.w" in {c.input for c in report.failures}


@pytest.mark.parametrize(
    ("spec", "match"),
    [
        ({"layer": "conv"}, r"layer must be one of \["),
        ({"layer": "conv2d", "channels": 3, "size": 3}, r"unknown key\(s\) \['size'\]"),
        ({"layer": "conv2d"}, r"needs \['channels'\]"),
        ({"layer": "dropout", "rate": 1.5}, r"rate must be a number in \[0, 1\)"),
        ({"layer": "max_pool2d", "window": 0}, r"window must be at least 1"),
        ({"layer": "relu", "alpha": 1}, r"relu accepts none"),
        ("relu", r"must be a table"),
    ],
)
def test_bad_layer_tables_are_named(spec, match):
    problem = layer_problem(spec)
    assert problem is not None
    assert re.search(match, problem), problem


def test_config_of_layers_round_trips_and_refuses_mixing_with_mlp_keys():
    cfg = Config.from_dict({"model": {"layers": LENET}})
    assert Config.from_toml(cfg.to_toml()) == cfg
    assert "hidden" not in cfg.to_dict()["model"]
    assert build_model(cfg).input_shape == (1, 28, 28)
    with pytest.raises(DataError, match=r"drop the MLP key\(s\) \['hidden'\]"):
        Config.from_dict({"model": {"layers": LENET, "hidden": [10]}})
    with pytest.raises(DataError, match=r"\[model\] layers\[1\] \(batch_norm\) unknown key"):
        Config.from_dict({"model": {"layers": [LENET[0], {"layer": "batch_norm", "mom": 1}]}})
    with pytest.raises(ShapeError, match=r"last layer must give 10 outputs"):
        build_model(
            Config.from_dict({"model": {"layers": [*LENET[:-1], {"layer": "dense", "units": 3}]}})
        )


def test_a_cnn_with_dropout_and_batch_norm_learns_and_resumes_bitwise(tmp_path):
    x, y = synthetic_digits(600, seed=3)
    cfg = Config.from_dict({
        "model": {"layers": LENET},
        "optimizer": {"name": "adam", "lr": 0.01},
        "train": {"epochs": 5, "batch_size": 50, "validation": 100},
    })  # fmt: skip
    whole = train(cfg, x, y, run_dir=tmp_path / "whole")
    assert whole.history[-1]["val_accuracy"] > 0.8
    assert sorted(whole.state) == ["batch_norm1.running_mean", "batch_norm1.running_var"]
    train(cfg, x, y, run_dir=tmp_path / "cut", stop_after=2)
    resumed = train(cfg, x, y, run_dir=tmp_path / "cut", resume=True)
    for name in whole.params:
        assert same_bits(resumed.params[name], whole.params[name]), name
    for name in whole.state:
        assert same_bits(resumed.state[name], whole.state[name]), name


def test_untrusted_layer_in_a_cnn_is_still_verified():
    from nn.errors import VerificationError

    def bad_relu(x):
        y, vjp = relu(x)
        return y, lambda g: (2 * vjp(g)[0],)

    with pytest.raises(VerificationError, match=r"layer 1 \(bad_relu\)"):
        Sequential([Conv2D(2, 3), Activation(bad_relu), Flatten(), Dense(3)], input_shape=(1, 6, 6))


def test_set_layers_or_mlp_keys_replaces_the_other_description():
    """--set model.layers=[...] on the default MLP config gives a CNN, and --set model.hidden
    on the CNN config gives an MLP: one description of the network at a time."""
    cnn = Config().override(['model.layers=[{layer = "flatten"}, {layer = "dense", units = 10}]'])
    assert cnn.model.layers and "hidden" not in cnn.to_dict()["model"]
    mlp = Config.load("cnn").override(["model.hidden=[10]"])
    assert mlp.model.layers == () and mlp.model.hidden == (10,)


def test_a_user_layers_training_mode_is_verified_at_assembly():
    """A layer that overrides forward is checked in training mode too: here inference is
    right and training doubles its output but forgets the 2 in its vjp."""
    from nn.errors import VerificationError
    from nn.layers import Layer

    class Noisy(Layer):
        name = "noisy"

        def forward(self, params, x, *, state, train, rng):
            if not train:
                return x, lambda g: (g, {}), state
            return 2 * x, lambda g: (g, {}), state

    with pytest.raises(VerificationError, match=r"layer 1 \(noisy\).*x \(training\)"):
        Sequential([Flatten(), Noisy(), Dense(3)], input_shape=(1, 4, 4))


def test_a_batch_of_one_for_batch_norm_is_refused_before_training():
    x, y = synthetic_digits(101, seed=3)
    layers = [{"layer": "flatten"}, {"layer": "dense", "units": 8}, {"layer": "batch_norm"},
              {"layer": "dense", "units": 10}]  # fmt: skip
    cfg = Config.from_dict({"model": {"layers": layers},
                            "train": {"epochs": 1, "batch_size": 50, "validation": 0}})  # fmt: skip
    with pytest.raises(DataError, match=r"batch_size 50 leaves a last batch of 1 .* batch_norm2"):
        train(cfg, x, y)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (
            lambda: BatchNorm(momentum="0.1"),
            r"momentum must be a number in \(0, 1\], received '0.1'",
        ),
        (lambda: BatchNorm(eps=True), r"eps must be a finite number > 0, received True"),
        (lambda: Conv2D((3, 4)), r"channels must be a positive integer, received \(3, 4\)"),
        (lambda: Conv2D(3, padding="valid"), r"padding must be 'same', an integer or a pair"),
        (lambda: Dropout("0.5"), r"rate must be a number in \[0, 1\), received '0.5'"),
    ],
)
def test_bad_layer_arguments_name_the_argument_and_what_was_received(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_a_numpy_integer_seed_gives_the_same_masks_as_a_python_int():
    model = Sequential([Flatten(), Dropout(0.5), Dense(3)], input_shape=(1, 4, 4))
    params = model.init(0)
    x = np.ones((4, 1, 4, 4), np.float32)
    a = model.forward(params, x, train=True, rng=np.int64(5))[0]
    assert np.array_equal(a, model.forward(params, x, train=True, rng=5)[0])


@pytest.mark.filterwarnings("ignore::nn.errors.HealthWarning")  # a tiny net, a large lr
def test_early_stopping_keeps_the_best_epochs_running_statistics_and_resumes_bitwise(tmp_path):
    x, y = synthetic_digits(600, seed=3)
    cfg = Config.from_dict({
        "model": {"layers": LENET},
        "optimizer": {"name": "adam", "lr": 0.1},  # large: the validation loss goes up again
        "schedule": {"name": "constant"},
        "train": {"epochs": 8, "batch_size": 50, "validation": 100, "patience": 2},
    })  # fmt: skip
    whole = train(cfg, x, y, run_dir=tmp_path / "whole")
    best = whole.best_epoch
    assert whole.stopped_early and best < len(whole.history)
    cut = train(cfg, x, y, run_dir=tmp_path / "cut", stop_after=best)
    for name in whole.state:  # the kept statistics are the best epoch's, not the last one's
        assert same_bits(whole.state[name], cut.state[name]), name
    resumed = train(cfg, x, y, run_dir=tmp_path / "cut", resume=True)
    for name in whole.state:
        assert same_bits(resumed.state[name], whole.state[name]), name
    for name in whole.params:
        assert same_bits(resumed.params[name], whole.params[name]), name
