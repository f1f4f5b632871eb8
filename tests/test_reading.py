"""Reading whole numbers, offline: the datasets of a config (digit strings made of real MNIST
digits from tests/data and cached), decoding a model's outputs into strings and scoring them,
reading a number from a picture, and ``python -m nn train / evaluate / read / doctor`` on a
tiny digit-strings run trained here in a second."""

from __future__ import annotations

import contextlib
import importlib.util
import io
import json
from pathlib import Path

import numpy as np
import pytest
from scipy.special import softmax

import nn.datasets
from conftest import mnist_sample
from nn.build import build_model, images_to_inputs
from nn.cli import main
from nn.config import Config
from nn.data import MnistData
from nn.datasets import (
    Dataset,
    cached_strings,
    load_dataset,
    string_params,
)
from nn.decode import best_path
from nn.digit_strings import (
    StringParams,
    load_digit_strings,
    make_digit_strings,
    string_cache_path,
)
from nn.errors import DataError
from nn.plots import save_figures
from nn.png import write_png
from nn.reading import (
    INK,
    INK_HEIGHT,
    fit_to_canvas,
    read_number,
    read_outputs,
    resize,
    score_strings,
)
from nn.run import evaluate_run, load_model
from nn.train import train

HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
BLANK = 10
# A tiny CTC reader of strings of 1 to 3 digits on a 28 x 64 canvas: 64 strings, one epoch.
TINY = """
[data]
name = "digit_strings"
train_strings = 64
test_strings = 32
min_length = 1
max_length = 3
test_length = 3
height = 28
width = 64

[model]
layers = [
    {layer = "conv2d", channels = 8, kernel = 3, padding = "same"},
    {layer = "relu"},
    {layer = "max_pool2d", window = 4},
    {layer = "columns"},
    {layer = "dense", units = 11},
]
loss = "ctc"

[optimizer]
name = "adam"
lr = 0.01
weight_decay = 0.0

[train]
epochs = 1
batch_size = 32
validation = 16
shift = 1
"""
HEADS_LAYERS = [
    {"layer": "avg_pool2d", "window": 4},
    {"layer": "flatten"},
    {"layer": "dense", "units": 30},
    {"layer": "unflatten", "shape": [3, 10]},
]


@pytest.fixture(scope="module")
def sample():
    """Real digits, offline: the first 1000 MNIST training digits stand for the training
    split and the next 200 for the test split."""
    x, y = mnist_sample(1200)
    return MnistData(x[:1000], y[:1000], x[1000:], y[1000:], "1200 MNIST digits (tests/data)",
                     None)  # fmt: skip


def offline_patches(mp: pytest.MonkeyPatch, sample: MnistData, cache: Path) -> None:
    """fetch_mnist answers with the sample; strings are cached under ``cache`` (NN_DATA)."""
    mp.setattr(nn.datasets, "fetch_mnist", lambda data_dir=None, log=print: sample)
    mp.setenv("NN_DATA", str(cache))


@pytest.fixture
def offline(monkeypatch, tmp_path, sample):
    offline_patches(monkeypatch, sample, tmp_path / "cache")
    return sample


@pytest.fixture
def tiny_cfg():
    return Config.from_toml(TINY, "tiny.toml")


@pytest.fixture(scope="module")
def string_run(tmp_path_factory, sample):
    """``python -m nn train --config tiny.toml``: the run folder and what it printed."""
    root = tmp_path_factory.mktemp("strings")
    (root / "tiny.toml").write_text(TINY)
    printed = io.StringIO()
    with pytest.MonkeyPatch.context() as mp, contextlib.redirect_stdout(printed):
        offline_patches(mp, sample, root / "cache")
        code = main(["train", "--config", str(root / "tiny.toml"), "--out", str(root / "run")])
    assert code == 0, printed.getvalue()
    return root / "run", printed.getvalue()


def one_test_string(params: StringParams, digits: MnistData, i: int = 0) -> tuple[np.ndarray, str]:
    """Test string ``i`` of ``params``' test split: its image and its digits as text."""
    s = make_digit_strings(digits.x_test, digits.y_test, params)
    return s.images[i], "".join(str(d) for d in s.labels[i] if d >= 0)


# --- the datasets of a config -----------------------------------------------------------------


def test_string_params_of_the_training_and_test_splits(tiny_cfg):
    d = tiny_cfg.data
    train, test = string_params(d, "train"), string_params(d, "test")
    assert (train.count, train.min_length, train.max_length, train.seed, train.split) == (
        64, 1, 3, 0, "train")  # fmt: skip
    # test strings: all test_length digits long, their own seed, made of test digits
    assert (test.count, test.min_length, test.max_length, test.seed, test.split) == (
        32, 3, 3, 1, "test")  # fmt: skip
    for p in (train, test):
        assert (p.height, p.width, p.gap, p.jitter, p.scale) == (28, 64, (-2, 4), 2, (1.0, 1.0))


@pytest.mark.parametrize("name", ["digits7", "digits7_cnn_heads", "digits7_mlp_heads"])
def test_the_shipped_configs_describe_valid_strings(name):
    d = Config.load(name).data
    for split in ("train", "test"):
        p = string_params(d, split)  # StringParams checks every field
        assert (p.height, p.width, p.max_length) == (32, 144, 7)


def test_mnist_is_mnist(offline):
    data = load_dataset(Config(), log=print)
    assert isinstance(data, Dataset) and data.x_train is offline.x_train
    assert data.y_test is offline.y_test and data.source == offline.source


def test_load_dataset_makes_strings_of_each_split_and_caches_them(offline, tiny_cfg, tmp_path,
                                                                   monkeypatch):  # fmt: skip
    lines: list[str] = []
    data = load_dataset(tiny_cfg, log=lines.append)
    assert data.x_train.shape == (64, 28, 64) and data.x_train.dtype == np.uint8
    assert data.y_train.shape == (64, 3) and data.x_test.shape == (32, 28, 64)
    assert (data.y_test >= 0).all()  # every test string has test_length = 3 digits
    held = tiny_cfg.train.validation
    assert held > 0 and data.source.startswith(
        f"64 training strings ({held} of them held out, made of other digits) and 32 test "
        "strings of MNIST digits (1200 MNIST"
    )
    d, m = tiny_cfg.data, len(offline.x_train) - len(offline.x_train) // 12  # 1000 - 83
    train = make_digit_strings(offline.x_train[:m], offline.y_train[:m],
                               string_params(d, "train", 64 - held))  # fmt: skip
    valid = make_digit_strings(offline.x_train[m:], offline.y_train[m:],
                               string_params(d, "validation", held))  # fmt: skip
    test = make_digit_strings(offline.x_test, offline.y_test, string_params(d, "test"))
    # training strings of the first m training digits, the held-out ones of the others
    np.testing.assert_array_equal(data.x_train, np.concatenate([train.images, valid.images]))
    np.testing.assert_array_equal(data.y_train, np.concatenate([train.labels, valid.labels]))
    np.testing.assert_array_equal(data.x_test, test.images)  # test digits only
    np.testing.assert_array_equal(data.y_test, test.labels)
    assert len(list((tmp_path / "cache").iterdir())) == 3  # train, validation, test
    assert lines == []  # nothing went wrong

    def no_making(*args):
        raise AssertionError("the strings should have come from the cache")

    monkeypatch.setattr(nn.datasets, "make_digit_strings", no_making)
    again = load_dataset(tiny_cfg, log=lines.append)
    for a, b in zip(again.__dict__.values(), data.__dict__.values(), strict=True):
        np.testing.assert_array_equal(a, b)
    assert lines == []


PARAMS = StringParams(8, 1, 3, height=28, width=40, seed=5)


def test_cached_strings_come_from_the_cache_the_second_time(sample, tmp_path, monkeypatch):
    first = cached_strings(PARAMS, sample.x_train, sample.y_train, cache_dir=tmp_path, log=print)
    assert string_cache_path(PARAMS, sample.x_train, sample.y_train, tmp_path).is_file()
    made = nn.datasets.make_digit_strings
    calls = []
    monkeypatch.setattr(nn.datasets, "make_digit_strings",
                        lambda *a: calls.append(a) or made(*a))  # fmt: skip
    second = cached_strings(PARAMS, sample.x_train, sample.y_train, cache_dir=tmp_path, log=print)
    assert calls == [] and second.params == PARAMS
    np.testing.assert_array_equal(second.images, first.images)
    np.testing.assert_array_equal(second.labels, first.labels)


def test_a_cache_file_of_other_parameters_is_made_again(sample, tmp_path):
    other = StringParams(8, 1, 3, height=28, width=40, seed=6)
    cached_strings(other, sample.x_train, sample.y_train, cache_dir=tmp_path, log=print)
    path = string_cache_path(PARAMS, sample.x_train, sample.y_train, tmp_path)
    path.write_bytes(
        string_cache_path(other, sample.x_train, sample.y_train, tmp_path).read_bytes()
    )  # the wrong strings there
    lines: list[str] = []
    got = cached_strings(PARAMS, sample.x_train, sample.y_train, cache_dir=tmp_path,
                         log=lines.append)  # fmt: skip
    assert got.params == PARAMS
    np.testing.assert_array_equal(got.images, make_digit_strings(sample.x_train, sample.y_train,
                                                                 PARAMS).images)  # fmt: skip
    assert lines == [f"digit strings: {path} holds other parameters; making them again"]
    assert load_digit_strings(path).params == PARAMS  # and the cache now holds the right ones


def test_strings_of_other_digits_never_pass_for_these(sample, tmp_path):
    """The cache name covers the digits: the same params on other digits is another file."""
    mine = cached_strings(PARAMS, sample.x_train, sample.y_train, cache_dir=tmp_path, log=print)
    fewer = (sample.x_train[:500], sample.y_train[:500])
    other = cached_strings(PARAMS, *fewer, cache_dir=tmp_path, log=print)
    assert string_cache_path(PARAMS, *fewer, tmp_path) != string_cache_path(
        PARAMS, sample.x_train, sample.y_train, tmp_path
    )
    assert not np.array_equal(mine.images, other.images)
    assert len(list(tmp_path.iterdir())) == 2


def test_a_corrupt_cache_file_is_logged_and_made_again(sample, tmp_path):
    first = cached_strings(PARAMS, sample.x_train, sample.y_train, cache_dir=tmp_path, log=print)
    path = string_cache_path(PARAMS, sample.x_train, sample.y_train, tmp_path)
    data = bytearray(path.read_bytes())
    middle = len(data) // 2
    data[middle : middle + 16] = bytes(255 - b for b in data[middle : middle + 16])
    path.write_bytes(bytes(data))
    with pytest.raises(DataError):
        load_digit_strings(path)
    lines: list[str] = []
    got = cached_strings(PARAMS, sample.x_train, sample.y_train, cache_dir=tmp_path,
                         log=lines.append)  # fmt: skip
    np.testing.assert_array_equal(got.images, first.images)
    assert len(lines) == 1 and lines[0].startswith("digit strings: ")
    assert str(path) in lines[0] and lines[0].endswith("; making them again")
    np.testing.assert_array_equal(load_digit_strings(path).images, first.images)  # rewritten


def test_an_unwritable_cache_is_logged_not_fatal(sample, tmp_path):
    blocked = tmp_path / "file"
    blocked.write_text("not a folder")
    lines: list[str] = []
    got = cached_strings(PARAMS, sample.x_train, sample.y_train, cache_dir=blocked,
                         log=lines.append)  # fmt: skip
    assert got.params == PARAMS and len(got.images) == 8
    assert len(lines) == 1 and lines[0].startswith("digit strings: could not write the cache ")


# --- from outputs to strings ------------------------------------------------------------------


def logits_of_paths(paths: list[list[int]], k: int = 11) -> np.ndarray:
    """Outputs (N, T, K) whose argmax in column t is paths[n][t]."""
    out = np.random.default_rng(3).uniform(-1, 1, (len(paths), len(paths[0]), k))
    for n, path in enumerate(paths):
        out[n, np.arange(len(path)), path] = 6.0
    return out.astype(np.float32)


def test_read_outputs_of_a_ctc_model(tiny_cfg):
    model = build_model(tiny_cfg)
    b = BLANK
    out = logits_of_paths([[1, b, 1, b, 2, 2] + [b] * 10, [b] * 16, [9] * 16])
    for decoder in ("best_path", "beam_search"):
        readings = read_outputs(model, out, decoder=decoder, beam=4)
        assert [r.text for r in readings] == ["112", "", "9"]
        assert all(r.labels.dtype == np.int64 for r in readings)
    direct = best_path(np.log(softmax(out.astype(np.float64), axis=-1)))
    for r, d in zip(read_outputs(model, out), direct, strict=True):
        np.testing.assert_array_equal(r.labels, d.labels)
        np.testing.assert_allclose(r.confidences, d.confidences, rtol=1e-12)
    with pytest.raises(DataError, match=r"decoder must be one of .*received 'greedy'"):
        read_outputs(model, out, decoder="greedy")


def test_read_outputs_of_heads_is_each_heads_argmax_and_its_probability(tiny_cfg):
    cfg = Config.from_dict({**tiny_cfg.to_dict(), "model": {"layers": HEADS_LAYERS,
                            "loss": "softmax_cross_entropy"},
                            "data": {**tiny_cfg.to_dict()["data"], "min_length": 3}})  # fmt: skip
    model = build_model(cfg)
    out = np.random.default_rng(0).standard_normal((4, 3, 10)).astype(np.float32)
    readings = read_outputs(model, out)
    p = softmax(out.astype(np.float64), axis=-1)
    for r, probs in zip(readings, p, strict=True):
        np.testing.assert_array_equal(r.labels, probs.argmax(axis=-1))
        np.testing.assert_allclose(r.confidences, probs.max(axis=-1), rtol=1e-12)
        assert r.log_prob == pytest.approx(np.log(probs.max(axis=-1)).sum(), rel=1e-12)
        assert len(r.text) == 3
    # scored as strings: the decoder is "heads"
    model.predict = lambda params, x, state=None: out  # type: ignore[method-assign]
    labels = np.array([r.labels for r in readings])
    labels[1, 2] = (labels[1, 2] + 1) % 10
    scores = score_strings(model, {}, np.zeros((4, 28, 64), np.uint8), labels)
    assert scores["decoder"] == "heads" and scores["accuracy"] == 0.75
    assert scores["character_error_rate"] == pytest.approx(1 / 12)


def test_score_strings_counts_whole_strings_and_characters(tiny_cfg, monkeypatch):
    model = build_model(tiny_cfg)
    b = BLANK
    paths = [
        [3, 0, 5] + [b] * 13,  # 305: right
        [3, 0, 6] + [b] * 13,  # 306 for 305: one substitution
        [1, b, 1] + [b] * 13,  # 11: right
        [b] * 16,  # nothing for 7: one deletion
    ]
    labels = np.array([[3, 0, 5], [3, 0, 5], [1, 1, -1], [7, -1, -1]])
    out = logits_of_paths(paths)
    monkeypatch.setattr(model, "predict", lambda params, x, state=None: out)
    images = np.zeros((4, 28, 64), np.uint8)
    scores = score_strings(model, {}, images, labels)
    assert scores["images"] == 4 and scores["decoder"] == "best_path"
    assert scores["accuracy"] == 0.5
    assert scores["character_error_rate"] == pytest.approx(2 / 9)
    assert scores["accuracy_by_length"] == {1: 0.0, 2: 1.0, 3: 0.5}
    assert scores["errors"] == [{"index": 1, "truth": "305", "read": "306"},
                                {"index": 3, "truth": "7", "read": ""}]  # fmt: skip
    assert scores["loss"] == pytest.approx(float(model.loss_value(out, labels)[0]), rel=1e-6)
    json.dumps(scores, allow_nan=False)  # fit for metrics.json
    beam = score_strings(model, {}, images, labels, decoder="beam_search")
    assert beam["decoder"] == "beam_search" and beam["accuracy"] == 0.5


# --- a picture on the model's canvas ----------------------------------------------------------


def ink_box(canvas):
    rows = np.flatnonzero((canvas > INK).any(axis=1))
    cols = np.flatnonzero((canvas > INK).any(axis=0))
    return rows[0], rows[-1] + 1, cols[0], cols[-1] + 1


@pytest.mark.parametrize("shape", [(5, 6), (20, 60), (100, 300), (300, 100), (25, 40)])
def test_fit_to_canvas_scales_the_ink_to_the_training_height_and_centres_it(shape):
    canvas_h, canvas_w = 32, 144
    rng = np.random.default_rng(0)
    image = np.zeros((shape[0] + 10, shape[1] + 20), np.uint8)  # a margin of background
    image[5:-5, 10:-10] = rng.integers(INK + 1, 256, shape)  # ink everywhere inside
    canvas = fit_to_canvas(image, canvas_h, canvas_w)
    assert canvas.shape == (canvas_h, canvas_w) and canvas.dtype == np.uint8
    top, bottom, left, right = ink_box(canvas)
    h, w = bottom - top, right - left
    scale = min(INK_HEIGHT / shape[0], (canvas_w - 2) / shape[1])  # as tall as trained on,
    assert abs(h - shape[0] * scale) <= 1 and abs(w - shape[1] * scale) <= 1  # unless too wide
    assert abs(top - (canvas_h - bottom)) <= 1 and abs(left - (canvas_w - right)) <= 1


def test_fit_to_canvas_of_a_training_string_changes_it_little(sample):
    image, _ = one_test_string(StringParams(1, 7, 7, height=32, width=144, seed=3), sample, 0)
    canvas = fit_to_canvas(image, 32, 144)
    top, bottom, _, _ = ink_box(image)
    assert abs((bottom - top) - INK_HEIGHT) <= 3  # already near the training height
    assert np.abs(canvas.astype(int).sum() - image.astype(int).sum()) < 0.15 * image.sum()


def test_resize_keeps_a_constant_image_and_averages_when_shrinking():
    np.testing.assert_array_equal(resize(np.full((7, 9), 200, np.uint8), 3, 20), 200)
    stripes = np.tile(np.array([0, 255], np.uint8), (4, 50))  # (4, 100) one-pixel stripes
    assert np.all(np.abs(resize(stripes, 2, 10).astype(int) - 128) <= 5)  # gray, not stripes


def test_fit_to_canvas_refuses_a_picture_without_ink():
    with pytest.raises(DataError, match=r"blank.png: no ink found"):
        fit_to_canvas(np.full((20, 200), INK, np.uint8), 28, 64, where="blank.png")


# --- the command line, on a tiny trained run ----------------------------------------------------


def test_train_prints_the_character_error_rate_and_writes_string_metrics(string_run):
    run, printed = string_run
    metrics = json.loads((run / "metrics.json").read_text())
    test = metrics["test"]
    assert test["images"] == 32 and test["decoder"] == "best_path"
    assert set(test) >= {"accuracy", "character_error_rate", "accuracy_by_length", "errors", "loss"}
    assert "confusion" not in test and "per_class_accuracy" not in test
    assert list(test["accuracy_by_length"]) == ["3"]  # every test string has 3 digits
    assert (f"whole-number accuracy {100 * test['accuracy']:.2f}% on 32 test strings" in printed
            and f", character error rate {100 * test['character_error_rate']:.2f}%; written to"
            in printed)  # fmt: skip
    assert (
        "data: 64 training strings (16 of them held out, made of other digits) and 32 test"
        in printed
    )
    files = {p.name for p in run.iterdir()}
    assert "confusion.png" not in files  # no confusion matrix of strings
    assert ("loss.png" in files) == HAVE_MATPLOTLIB
    assert Config.load(run / "config.toml") == Config.from_toml(TINY)


def test_evaluate_a_string_run(string_run, offline, capsys):
    run, _ = string_run
    test = json.loads((run / "metrics.json").read_text())["test"]
    result = evaluate_run(run)
    assert json.loads(json.dumps(result)) == test  # the same strings, model and figures
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert lines[0] == (f"whole-number accuracy {100 * test['accuracy']:.2f}% on 32 strings, "
                        f"character error rate {100 * test['character_error_rate']:.2f}% "
                        f"(loss {test['loss']:.4f})")  # fmt: skip
    assert lines[1] == f"  3 digits: {100 * test['accuracy']:6.2f}%"
    shown = test["errors"][:10]
    assert lines[2:] == [f"  string {e['index']}: {e['truth']} read as {e['read']}" for e in shown]


def test_read_prints_the_number_and_a_confidence_per_digit(string_run, sample, tmp_path, capsys):
    run, _ = string_run
    cfg = Config.from_toml(TINY)
    image, _ = one_test_string(string_params(cfg.data, "test"), sample)
    write_png(tmp_path / "number.png", image)
    write_png(tmp_path / "paper.png", 255 - image)  # dark digits on white paper
    trained = load_model(run)
    canvas = fit_to_canvas(image, 28, 64)  # what read makes of the picture
    expected = read_outputs(trained.model, trained.model.predict(
        trained.params, images_to_inputs(canvas[None], trained.model.input_shape)),
        decoder="beam_search")[0]  # fmt: skip
    assert main(["read", str(run), str(tmp_path / "number.png"), str(tmp_path / "paper.png")]) == 0
    lines = capsys.readouterr().out.splitlines()
    n = len(expected.text)
    assert len(lines) == 2 * (1 + n)
    assert lines[0] == f"{tmp_path / 'number.png'}: {expected.text or '(nothing)'}"
    assert lines[1 + n] == (f"{tmp_path / 'paper.png'}: {expected.text or '(nothing)'} "
                            "(inverted: light background)")  # fmt: skip
    for digit, p, line in zip(expected.labels, expected.confidences, lines[1 : 1 + n], strict=True):
        assert line == f"  {digit}  confidence {p:.3f}"
    assert lines[2 + n :] == lines[1 : 1 + n]  # the same confidences for the inverted picture
    assert main(["read", str(run), str(tmp_path / "number.png"), "--decoder", "best_path"]) == 0
    greedy = read_outputs(trained.model, trained.model.predict(
        trained.params, images_to_inputs(canvas[None], trained.model.input_shape)))[0]  # fmt: skip
    assert capsys.readouterr().out.splitlines()[0].endswith(f": {greedy.text or '(nothing)'}")


def test_read_number_fits_any_picture_to_the_canvas(string_run, sample, tmp_path):
    run, _ = string_run
    trained = load_model(run)
    cfg = trained.cfg
    image, _ = one_test_string(string_params(cfg.data, "test"), sample, 1)

    def direct(canvas: np.ndarray, decoder: str = "beam_search"):
        x = images_to_inputs(canvas[None], trained.model.input_shape)
        out = trained.model.predict(trained.params, x)
        return read_outputs(trained.model, out, decoder=decoder)[0]

    write_png(tmp_path / "same.png", image)
    reading, inverted = read_number(trained, tmp_path / "same.png")
    assert not inverted  # read on the canvas fit_to_canvas makes of it
    canvas = fit_to_canvas(image, 28, 64)
    np.testing.assert_array_equal(reading.labels, direct(canvas).labels)
    np.testing.assert_array_equal(reading.confidences, direct(canvas).confidences)
    # twice the size, dark on light: inverted, then scaled to nearly the same canvas
    write_png(tmp_path / "big.png", np.kron(255 - image, np.ones((2, 2), np.uint8)))
    big, inverted = read_number(trained, tmp_path / "big.png", decoder="best_path")
    big_canvas = fit_to_canvas(np.kron(image, np.ones((2, 2), np.uint8)), 28, 64)
    assert inverted and np.mean(np.abs(big_canvas.astype(int) - canvas)) < 8
    np.testing.assert_array_equal(big.labels, direct(big_canvas, "best_path").labels)
    with pytest.raises(DataError, match=r"expected a \.png file"):
        read_number(trained, tmp_path / "number.jpg")


def test_read_refuses_a_run_that_reads_single_digits(offline, tmp_path, capsys):
    run = tmp_path / "mlp"
    assert main(["train", "--set", "model.hidden=[8]", "--set", "train.epochs=1",
                 "--set", "train.validation=100", "--out", str(run)]) == 0  # fmt: skip
    write_png(tmp_path / "seven.png", offline.x_test[0])
    capsys.readouterr()
    assert main(["read", str(run), str(tmp_path / "seven.png")]) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err and "digit_strings" in err and "predict" in err


def test_predict_refuses_a_string_run(string_run, tmp_path, capsys):
    run, _ = string_run
    write_png(tmp_path / "digit.png", np.zeros((28, 28), np.uint8))
    assert main(["predict", str(run), str(tmp_path / "digit.png")]) == 1
    err = capsys.readouterr().err
    assert f"use `python -m nn read {run} IMAGE.png`" in err and "Traceback" not in err


def test_a_ctc_config_on_mnist_digits_is_refused(offline, tmp_path, capsys):
    (tmp_path / "tiny.toml").write_text(TINY)
    argv = ["train", "--config", str(tmp_path / "tiny.toml"), "--out", str(tmp_path / "run")]
    assert main([*argv, "--set", 'data.name="mnist"']) == 1
    err = capsys.readouterr().err
    assert '[model] loss must be ctc only with [data] name = "digit_strings"' in err
    assert "found 'ctc'" in err and "Traceback" not in err
    assert not (tmp_path / "run").exists()  # refused before the run folder is made


def test_doctor_diagnoses_a_string_config(offline, tmp_path, capsys):
    (tmp_path / "tiny.toml").write_text(TINY)
    assert main(["doctor", str(tmp_path / "tiny.toml"), "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    first = out.splitlines()[0]
    toml = tmp_path / "tiny.toml"
    assert first.startswith(f"config {toml} at initialization (seed 0): 8 strings")
    assert "a trial step of adam at lr 0.01" in first
    for name in build_model(Config.from_toml(TINY)).names:
        assert f"\n{name} " in out


def test_save_figures_without_a_confusion_matrix(tmp_path):
    history = [{"epoch": 1, "train_loss": 3.0, "train_accuracy": 0.1, "val_loss": 2.5,
                "val_accuracy": 0.2}]  # fmt: skip
    lines: list[str] = []
    paths = save_figures(tmp_path, history, None, log=lines.append)
    names = [p.name for p in paths]
    assert names == (["loss.png", "accuracy.png"] if HAVE_MATPLOTLIB else [])
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(names)
    with pytest.raises(DataError):  # the history is still checked
        save_figures(tmp_path, [{"epoch": 1}], None, log=lines.append)


def test_a_string_run_resumed_is_bitwise_the_uninterrupted_one(offline, tiny_cfg, tmp_path):
    """Stopped after epoch 1 and resumed, with the string cache deleted in between (the strings
    are made again, bit for bit), training ends on the same weights as a run never stopped."""
    cfg = tiny_cfg.override(["train.epochs=2"])
    first = load_dataset(cfg, log=print)
    whole = train(cfg, first.x_train, first.y_train)
    train(cfg, first.x_train, first.y_train, run_dir=tmp_path / "run", stop_after=1)
    for cached in (tmp_path / "cache").glob("digit-strings-*.npz"):
        cached.unlink()
    again = load_dataset(cfg, log=print)
    resumed = train(cfg, again.x_train, again.y_train, run_dir=tmp_path / "run", resume=True)
    assert len(resumed.history) == 2
    for name, value in whole.params.items():
        np.testing.assert_array_equal(resumed.params[name], value, err_msg=name)
