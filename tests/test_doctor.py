"""nn.doctor: each finding fires on the failure it names, healthy networks give none, and
``python -m nn doctor`` reports on a config and on a run folder, offline.

Healthy batches are synthetic digits (MNIST-like: mostly dark, blobs of ink). Uniform noise
in [0, 1] is not healthy for a trial step: its pixels all sit near 0.5, so the default MLP's
first step at lr 0.05 overshoots (the loss rises from 2.5 to 4.4), and the doctor says so.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
import sys

import numpy as np
import pytest

import nn.datasets
import nn.doctor
import nn.run
from conftest import synthetic_digits
from nn.cli import main, parser
from nn.config import Config
from nn.doctor import (
    KINDS,
    Diagnosis,
    dead_fraction,
    diagnose,
    saturated_fraction,
)
from nn.doctor_plots import save_histograms
from nn.model import mlp
from nn.optim import make_optimizer
from nn.plots import NOTICE
from nn.png import read_png
from nn.trace import trace
from nn.train import build_model, build_optimizer, images_to_inputs

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
ON_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def digits(model, n=64, seed=0):
    """A batch of ``n`` synthetic digits, prepared as the trainer prepares MNIST."""
    images, labels = synthetic_digits(n, seed=seed)
    return images_to_inputs(images, model.input_shape), labels.astype(np.int64)


def noise(n=64, d=784, seed=0):
    rng = np.random.default_rng(seed)
    return rng.random((n, d), dtype=np.float32), rng.integers(0, 10, n)


def normal_weights(params, std=1.0, seed=1):
    """Every weight matrix redrawn from N(0, std^2): the beginner's initialization."""
    rng = np.random.default_rng(seed)
    return {k: (rng.standard_normal(v.shape) * std).astype(v.dtype) if k.endswith(".w") else v
            for k, v in params.items()}  # fmt: skip


def kinds(d: Diagnosis):
    return [(f.kind, f.layer) for f in d.findings]


def by_kind(d: Diagnosis, kind: str):
    return [f for f in d.findings if f.kind == kind]


# --- healthy networks: no finding -------------------------------------------------------------


@pytest.mark.parametrize("name", ["default", "classic", "cnn"])
@pytest.mark.parametrize("seed", [0, 1])
def test_shipped_configs_at_initialization_are_healthy(name, seed):
    """With the config's own optimizer and lr, on MNIST-like digits."""
    cfg = Config.load(name)
    model = build_model(cfg)
    d = diagnose(model, model.init(seed), digits(model, seed=seed), state=model.init_state(),
                 optimizer=build_optimizer(cfg), lr=cfg.optimizer.lr)  # fmt: skip
    assert d.findings == [], str(d)
    assert "no problems found" in str(d)
    assert d.loss_after < d.loss  # the trial step helped
    assert [r.name for r in d.rows] == model.names
    assert [r.shape for r in d.rows] == model.shapes[1:]


@pytest.mark.parametrize(
    "model",
    [mlp([784, 800, 800, 10]),
     mlp([784, 30, 10], activation="sigmoid", output_activation="sigmoid",
         loss="mean_squared_error")],
    ids=["default", "classic"],
)  # fmt: skip
def test_healthy_mlps_on_uniform_noise(model):
    assert diagnose(model, model.init(0), noise()).findings == []


def test_the_table_has_one_row_per_layer_in_order():
    cfg = Config.load("cnn")
    model = build_model(cfg)
    d = diagnose(model, model.init(0), digits(model, 16), optimizer=build_optimizer(cfg), lr=1e-3)
    lines = str(d).splitlines()
    assert lines[0].startswith("one batch of 16: loss ")
    assert "after one step at lr 0.001" in lines[0]
    assert lines[1].split() == ["layer", "ops", "output", "mean", "std", "sat.", "dead", "|grad|",
                                "|dx|", "step/|w|", "nonfinite"]  # fmt: skip
    body = lines[2 : 2 + len(model.names)]
    assert [line.split()[0] for line in body] == model.names
    assert lines[2 + len(model.names)] == "no problems found"
    assert len({len(line) for line in lines[1 : 2 + len(model.names)]}) == 1  # aligned columns
    conv, relu, pool = body[0].split(), body[1].split(), body[2].split()
    assert conv[1] == "conv2d" and relu[1] == "relu" and pool[1] == "max_pool2d"
    assert relu[-5].endswith("%") and conv[-5] == "-"  # dead: relu layers only
    assert conv[-4] != "-" and relu[-4] == "-"  # |grad|: parameterized layers only
    assert "dropout9" in body[9] and "(128,)" in body[9]


def test_diagnose_leaves_params_alone_and_runs_in_inference_mode():
    cfg = Config.load("cnn")
    model = build_model(cfg)
    params = model.init(0)
    before = {k: v.copy() for k, v in params.items()}
    batch = digits(model, 8)
    a = diagnose(model, params, batch, optimizer=build_optimizer(cfg), lr=0.001)
    b = diagnose(model, params, batch)
    assert all(np.array_equal(before[k], params[k]) for k in params)
    assert [r.mean for r in a.rows] == [r.mean for r in b.rows]  # dropout off: deterministic
    assert a.loss == pytest.approx(trace(model, params, batch).loss)
    assert all(r.step is None for r in b.rows) and b.lr is None and b.loss_after is None
    assert a.rows[0].step is not None and a.rows[1].step is None  # conv2d0 has weights, relu1 not


# --- each finding fires on its failure --------------------------------------------------------


def test_n01_weights_in_a_deep_sigmoid_net_saturate_and_are_named():
    model = mlp([784, 100, 100, 100, 100, 10], activation="sigmoid")
    d = diagnose(model, normal_weights(model.init(0)), noise())
    found = kinds(d)
    assert ("saturated", "sigmoid1") in found
    assert [f.layer for f in by_kind(d, "init_scale")] == ["dense0", "dense2", "dense4", "dense6",
                                                           "dense8"]  # fmt: skip
    first = by_kind(d, "init_scale")[0].message
    expected = (
        r"dense0\.w has std (0\.99|1\.0)\d*, 2\dx the Glorot std 0\.048 for fan_in 784, "
        r"fan_out 100: N\(0,1\) weights saturate sigmoid units; use init = glorot_uniform"
    )
    assert re.fullmatch(expected, first), first
    saturated = by_kind(d, "saturated")[0].message
    assert saturated.startswith("sigmoid1: ") and "y < 0.01 or y > 0.99" in saturated
    assert "cause: dense0.w is 2" in saturated and "use init = glorot_uniform" in saturated
    assert d.rows[1].saturated > 0.5 and d.rows[0].saturated is None


def test_unscaled_pixels_saturate_without_blaming_the_initializer():
    """Pixels 0..255 instead of [0, 1] with Glorot weights: the data is the cause."""
    model = mlp([784, 30, 10], activation="sigmoid")
    x, y = noise()
    d = diagnose(model, model.init(0), (x * 255, y))
    assert kinds(d) == [("saturated", "sigmoid1")]
    assert "scale the data to [0, 1]" in d.findings[0].message


def test_tanh_saturation_is_measured_on_both_sides():
    model = mlp([784, 100, 10], activation="tanh")
    d = diagnose(model, normal_weights(model.init(0)), noise())
    assert ("saturated", "tanh1") in kinds(d)
    assert "|y| > 0.99" in by_kind(d, "saturated")[0].message
    y = trace(model, normal_weights(model.init(0)), noise()).outputs[1]
    assert (y < -0.99).mean() > 0.2 and (y > 0.99).mean() > 0.2  # both tails count


def test_a_learning_rate_far_too_large():
    model = mlp([784, 800, 800, 10])
    opt = make_optimizer("nesterov", beta=0.9, weight_decay=5e-4)
    d = diagnose(model, model.init(0), digits(model), optimizer=opt, lr=10.0)
    assert kinds(d) == [("lr_too_large", "dense4")]
    message = d.findings[0].message
    assert re.match(r"a step at lr 10 raised the loss from 2\.\d+ to \d", message), message
    assert "changed dense4's weights by " in message and "% of their norm" in message
    suggested = float(re.search(r"try lr ([0-9.e-]+)", message).group(1))
    assert 0.01 <= suggested <= 0.1  # the shipped lr, 0.05, is in range
    assert d.loss_after > 10 * d.loss
    assert diagnose(model, model.init(0), digits(model), optimizer=opt, lr=0.05).findings == []


def test_a_step_that_makes_the_loss_nonfinite():
    model = mlp([784, 64, 10])
    d = diagnose(model, model.init(0), noise(), optimizer=make_optimizer("sgd"), lr=1e30)
    (finding,) = by_kind(d, "lr_too_large")
    assert not np.isfinite(d.loss_after) and "made the loss " in finding.message


def test_a_huge_step_is_flagged_even_when_the_loss_falls():
    """The classic net at 10x its lr: every output collapses towards 0, the loss drops to
    0.1, but its last layer moves by several times its norm."""
    cfg = Config.load("classic")
    model = build_model(cfg)
    d = diagnose(model, model.init(0), digits(model, 10), optimizer=build_optimizer(cfg),
                 lr=150.0)  # fmt: skip
    assert d.loss_after < d.loss
    (finding,) = d.findings
    assert finding.kind == "lr_too_large" and "took the loss from" in finding.message


def test_biases_at_minus_100_kill_every_relu():
    model = mlp([784, 100, 100, 10])
    params = model.init(0)
    params["dense0.b"] = np.full(100, -100, np.float32)
    d = diagnose(model, params, noise())
    assert kinds(d)[:2] == [("dead_relu", "relu1"), ("dead_relu", "relu3")]
    first, second = by_kind(d, "dead_relu")
    assert first.message.startswith("relu1: 100% of its units are 0 for every example")
    assert "no gradient passes" in first.message and "dense0.b has mean -100" in first.message
    assert "relu1 below it is dead" in second.message
    assert d.rows[1].dead == 1 and d.rows[0].dead is None
    assert ("vanishing", None) in kinds(d)  # dense0's gradient is exactly 0


def test_most_but_not_all_relus_dead():
    model = mlp([784, 100, 10])
    params = model.init(0)
    params["dense0.b"] = np.where(np.arange(100) < 70, -100, 0).astype(np.float32)
    d = diagnose(model, params, noise())
    assert kinds(d) == [("dead_relu", "relu1")]
    assert 0.7 <= d.rows[1].dead <= 0.72  # the 70 units, and one that noise never lights
    assert "71% of its units" in d.findings[0].message and "(dead: " in d.findings[0].message


def test_a_nan_weight_is_found_in_its_layer():
    model = mlp([784, 100, 100, 10])
    params = model.init(0)
    params["dense2.w"][3, 5] = np.nan
    d = diagnose(model, params, noise(), optimizer=make_optimizer("sgd"), lr=0.1)
    assert kinds(d)[0] == ("nonfinite", "dense2")
    assert "dense2.w" in d.findings[0].message and "1 NaN" in d.findings[0].message
    assert d.rows[2].nonfinite > 0 and d.rows[1].nonfinite == 0
    assert d.loss_after is None  # no trial step from non-finite gradients
    assert "nonfinite: the parameter dense2.w" in str(d)


def test_an_inf_in_the_batch_is_named_as_the_data():
    model = mlp([784, 16, 10])
    x, y = noise()
    x[0, 0] = np.inf
    d = diagnose(model, model.init(0), (x, y))
    assert kinds(d) == [("nonfinite", None)] and "input batch" in d.findings[0].message


def test_gradients_vanish_through_ten_sigmoid_layers():
    model = mlp([784, *[100] * 10, 10], activation="sigmoid")
    d = diagnose(model, model.init(0), noise())
    assert kinds(d) == [("vanishing", None)]
    message = d.findings[0].message
    assert "the gradient of dense0 is " in message and "that of dense20" in message
    assert "10 sigmoid/tanh layers" in message


def test_small_weights_vanish_and_are_named():
    model = mlp([784, *[100] * 6, 10], activation="tanh")
    params = {k: v * np.float32(0.1) for k, v in model.init(0).items()}
    d = diagnose(model, params, noise())
    assert kinds(d)[0] == ("vanishing", None)
    scale = by_kind(d, "init_scale")
    assert len(scale) == 7 and "0.1x the Glorot std" in scale[0].message
    assert "weights this small" in scale[0].message
    assert "too small" in d.findings[0].message


def test_n01_weights_in_a_relu_net_explode():
    model = mlp([784, 800, 800, 10])
    d = diagnose(model, normal_weights(model.init(0)), noise())
    assert kinds(d)[0] == ("exploding", None)
    assert [f.layer for f in by_kind(d, "init_scale")] == ["dense0", "dense2", "dense4"]
    assert "the output std of dense4 is " in d.findings[0].message
    assert "He std 0.05" in by_kind(d, "init_scale")[0].message  # relu follows: He
    assert "Glorot std" in by_kind(d, "init_scale")[2].message  # the logits: Glorot


def test_trained_weights_may_shrink_but_not_grow_without_a_finding():
    model = mlp([784, 30, 10], activation="sigmoid")
    small = {k: v * np.float32(0.2) for k, v in model.init(0).items()}
    assert by_kind(diagnose(model, small, noise()), "init_scale")
    assert diagnose(model, small, noise(), trained=True).findings == []
    large = {k: v * np.float32(5) for k, v in model.init(0).items()}
    (f, *_) = by_kind(diagnose(model, large, noise(), trained=True), "init_scale")
    assert "trained weights grew" in f.message and "use init" not in f.message


def test_batch_norm_after_a_layer_excuses_its_scale():
    cfg = Config.load("cnn")
    layers = [dict(x) for x in cfg.model.layers]
    layers.insert(1, {"layer": "batch_norm"})
    cfg = dataclasses.replace(cfg, model=dataclasses.replace(cfg.model, layers=tuple(layers)))
    model = build_model(cfg)
    params = model.init(0)
    params["conv2d0.w"] = params["conv2d0.w"] * np.float32(10)
    d = diagnose(model, params, digits(model, 16), state=model.init_state())
    assert "conv2d0" not in [f.layer for f in by_kind(d, "init_scale")]


def test_every_kind_is_declared():
    assert set(KINDS) == {"nonfinite", "saturated", "dead_relu", "vanishing", "exploding",
                          "init_scale", "lr_too_large"}  # fmt: skip


# --- the measures at their thresholds ---------------------------------------------------------


def test_sigmoid_saturation_threshold_on_both_sides():
    y = np.array([0.0099, 0.0101, 0.5, 0.9899, 0.9901])
    assert saturated_fraction(y, "sigmoid") == pytest.approx(2 / 5)
    assert saturated_fraction(np.array([0.0101, 0.9899]), "sigmoid") == 0
    assert saturated_fraction(np.array([0.0099]), "sigmoid") == 1
    assert saturated_fraction(np.array([0.9901]), "sigmoid") == 1


def test_tanh_saturation_threshold_on_both_sides():
    assert saturated_fraction(np.array([-0.991, 0.991]), "tanh") == 1
    assert saturated_fraction(np.array([-0.989, 0.989, 0.0]), "tanh") == 0


def test_a_unit_is_dead_only_when_zero_for_every_example():
    y = np.zeros((4, 3))
    y[3, 1] = 0.5  # unit 1 lives in one example
    assert dead_fraction(y) == pytest.approx(2 / 3)
    images = np.zeros((5, 2, 3, 3))  # conv outputs: a unit is one (channel, row, column)
    images[:, 0] = 1.0
    images[2, 1, 0, 0] = 1.0
    assert dead_fraction(images) == pytest.approx(8 / 18)


# --- the histograms ---------------------------------------------------------------------------


def block_matplotlib(monkeypatch):
    """Make every ``import matplotlib...`` raise ImportError, as on a machine without it."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)


def test_histograms_without_matplotlib_say_so_and_write_nothing(tmp_path, monkeypatch):
    model = mlp([784, 16, 10])
    d = diagnose(model, model.init(0), noise())
    block_matplotlib(monkeypatch)
    messages = []
    assert save_histograms(d, tmp_path / "doctor.png", log=messages.append) is None
    assert messages == [NOTICE] and list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("source", ["diagnosis", "trace"])
def test_histograms_are_a_png_with_a_panel_per_layer(tmp_path, source):
    model = build_model(Config.load("cnn"))
    d = diagnose(model, model.init(0), digits(model, 8))
    messages = []
    source = {"diagnosis": d, "trace": d.trace}[source]
    out = save_histograms(source, tmp_path / "h.png", log=messages.append)
    if not HAVE_MATPLOTLIB:
        assert not ON_CI, "matplotlib is missing on CI: the test extra must install it"
        assert out is None and messages == [NOTICE]
        return
    assert out == tmp_path / "h.png" and messages == []
    image = read_png(out)  # nn.png decodes it: a valid PNG
    assert image.shape == (3 * 230, 4 * 300)  # 11 layers: 3 rows of 4 panels
    assert image.min() < 100 < image.max()  # drawn, not blank
    assert [p.name for p in tmp_path.iterdir()] == ["h.png"]  # no temporary file left


def test_histograms_refuse_something_else(tmp_path):
    with pytest.raises(TypeError, match=r"expects an nn\.doctor\.Diagnosis or an nn\.trace\.Trace"):
        save_histograms([1, 2], tmp_path / "x.png")


# --- the command line -------------------------------------------------------------------------


@pytest.fixture
def offline(monkeypatch, tiny_mnist):
    """MNIST answers with synthetic digits, for the doctor and for training: no network."""
    load = lambda data_dir=None, log=print: ((tiny_mnist.x_train, tiny_mnist.y_train),  # noqa: E731
                                             (tiny_mnist.x_test, tiny_mnist.y_test))  # fmt: skip
    monkeypatch.setattr(nn.doctor, "load_mnist", load)
    monkeypatch.setattr(nn.datasets, "fetch_mnist", lambda data_dir=None, log=print: tiny_mnist)
    return tiny_mnist


def table_names(out: str) -> list[str]:
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("layer "))
    rows = []
    for line in lines[start + 1 :]:
        if line == "no problems found" or re.match(r"[a-z_]+: ", line):
            break
        rows.append(line.split()[0])
    return rows


@pytest.mark.parametrize("name", ["default", "cnn"])
def test_cli_on_a_shipped_config(name, offline, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(["doctor", name, "--batch-size", "32"]) == 0
    out = capsys.readouterr().out
    model = build_model(Config.load(name))
    assert out.splitlines()[0].startswith(f"config {name} at initialization (seed 0): 32 MNIST")
    assert table_names(out) == model.names
    assert out.rstrip().endswith("no problems found")
    assert list(tmp_path.iterdir()) == []  # no --png: no figure for a config


def test_cli_reports_findings_with_exit_code_0(offline, capsys, tmp_path):
    toml = tmp_path / "hot.toml"
    toml.write_text("[model]\nhidden = [64]\n[optimizer]\nlr = 10.0\n")
    assert main(["doctor", str(toml), "--seed", "3", "--png", str(tmp_path / "d.png")]) == 0
    out = capsys.readouterr().out
    assert "(seed 3)" in out and "one batch of 128" in out
    assert "\nlr_too_large: a step at lr 10 raised the loss" in out
    assert (tmp_path / "d.png").exists() == HAVE_MATPLOTLIB
    assert (NOTICE in out) == (not HAVE_MATPLOTLIB)
    # --set overrides a config as `train --set` does: the same finding without a file
    argv = ["doctor", "default", "--seed", "3", "--set", "model.hidden=[64]",
            "--set", "optimizer.lr=10"]  # fmt: skip
    assert main(argv) == 0
    assert "\nlr_too_large: a step at lr 10 raised the loss" in capsys.readouterr().out


@pytest.mark.filterwarnings("ignore::nn.errors.HealthWarning")  # a tiny net trained briefly
def test_cli_on_a_run_folder(offline, capsys, tmp_path):
    run = tmp_path / "run"
    small = ["model.hidden=[16]", "train.epochs=1", "train.validation=100", "train.batch_size=50"]
    cfg = Config.load("default").override(small)
    nn.run.train_run(cfg, run, log=lambda line: None)
    trained = nn.run.load_model(run)
    capsys.readouterr()
    assert main(["doctor", str(run)]) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].startswith(f"the trained weights of run {run}: 50 MNIST")
    assert table_names(out) == trained.model.names
    if HAVE_MATPLOTLIB:
        assert read_png(run / "doctor.png").ndim == 2
        assert f"histograms: {run / 'doctor.png'}" in out
    else:
        assert not ON_CI, "matplotlib is missing on CI: the test extra must install it"
        assert NOTICE in out and not (run / "doctor.png").exists()
    assert main(["doctor", str(run), "--seed", "1"]) == 1
    assert "--seed and --set change a config" in capsys.readouterr().err
    assert main(["doctor", str(run), "--set", "optimizer.lr=10"]) == 1
    assert "--seed and --set change a config" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["doctor", "nope"], "not a shipped config"),
        (["doctor", "default", "--batch-size", "0"], "--batch-size must be an integer >= 1"),
        (["doctor", "."], "is not a run folder: it has no config.toml"),
    ],
)
def test_cli_errors_are_one_line(argv, message, offline, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_cli_help_describes_every_option(capsys):
    with pytest.raises(SystemExit) as done:
        main(["doctor", "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    sub = parser()._subparsers._group_actions[0].choices["doctor"]
    for action in sub._actions:
        assert action.help, f"doctor {action.option_strings or action.dest} has no help text"
        for flag in action.option_strings:
            assert flag in text
    assert "CONFIG|RUN" in text and "exit code is 0 also when problems are found" in text
