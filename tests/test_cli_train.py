"""``python -m nn train / evaluate / predict / data`` end to end, offline on synthetic digits."""

from __future__ import annotations

import json

import numpy as np
import pytest

import nn.datasets
import nn.run
from conftest import same_bits
from nn.cli import main, parser
from nn.png import write_png

FAST = ["--set", "model.hidden=[16]", "--set", "train.epochs=2", "--set", "train.validation=100",
        "--set", "train.batch_size=50", "--set", "optimizer.lr=0.1"]  # fmt: skip


@pytest.fixture
def offline(monkeypatch, tiny_mnist):
    """fetch_mnist answers with synthetic digits: no network, no cache."""
    monkeypatch.setattr(nn.datasets, "fetch_mnist", lambda data_dir=None, log=print: tiny_mnist)
    return tiny_mnist


def test_train_writes_a_complete_run_folder(tmp_path, offline, capsys):
    run = tmp_path / "run"
    assert main(["train", *FAST, "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "run folder" in out and "test accuracy" in out and "epoch   2:" in out
    files = {p.name for p in run.iterdir()}
    assert {"config.toml", "checkpoint.json", "metrics.json", "model"} <= files
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["finished"] and len(metrics["history"]) == 2
    assert metrics["test"]["images"] == 200 and metrics["test"]["accuracy"] > 0.8
    assert np.array(metrics["test"]["confusion"]).sum() == 200
    assert "hidden = [16]" in (run / "config.toml").read_text()  # the config used, readable


def test_evaluate_and_predict_a_trained_run(tmp_path, offline, capsys):
    run = tmp_path / "run"
    main(["train", *FAST, "--out", str(run)])
    capsys.readouterr()
    assert main(["evaluate", str(run)]) == 0
    out = capsys.readouterr().out
    metrics = json.loads((run / "metrics.json").read_text())
    assert f"test accuracy {100 * metrics['test']['accuracy']:.2f}%" in out
    assert out.count("images)") == 10  # one per-class line per digit

    digits, labels = offline.x_test[:5], offline.y_test[:5]
    np.save(tmp_path / "five.npy", digits)
    write_png(tmp_path / "one.png", digits[0])
    write_png(tmp_path / "paper.png", 255 - digits[0])  # dark digit on white: inverted
    assert main(["predict", str(run), str(tmp_path / "five.npy"), str(tmp_path / "one.png"),
                 str(tmp_path / "paper.png")]) == 0  # fmt: skip
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 7
    assert lines[0].startswith(f"{tmp_path / 'five.npy'}[0]: ")
    predicted = [int(line.split(": ")[1].split()[0]) for line in lines]
    assert predicted[5] == predicted[6] == predicted[0]  # same image, same digit
    assert np.mean(np.array(predicted[:5]) == labels) >= 0.6
    assert "(inverted: light background)" in lines[6] and "inverted" not in lines[5]


def test_stop_and_resume_from_the_command_line(tmp_path, offline, capsys):
    whole, cut = tmp_path / "whole", tmp_path / "cut"
    main(["train", *FAST, "--out", str(whole)])
    assert main(["train", *FAST, "--out", str(cut), "--stop-after", "1"]) == 0
    assert f"python -m nn train --resume {cut}" in capsys.readouterr().out
    assert main(["train", "--resume", str(cut)]) == 0
    a = nn.run.load_model(whole)[2]
    b = nn.run.load_model(cut)[2]
    assert all(same_bits(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["train", "--config", "nope"], "not a shipped config"),
        (["train", "--set", "train.epoch=3"], "unknown key 'epoch'"),
        (["evaluate", "not-a-run"], "not-a-run is not a run folder: it has no config.toml"),
        (["train", "--resume", "r", "--set", "train.epochs=1"], "--resume uses the run's own"),
        (["train", "--set", "model.activation=foo"], "[model] activation must be relu"),
        (["train", "--set", "optimizer.lr=-1"], "[optimizer] lr must be a finite number >= 0"),
        (["train", "--stop-after", "0"], "stop_after must be an epoch >= 1"),
        (["train", "--config", "."], "no such file, and not a shipped config"),
        (["predict", "run", "missing.png"], "run is not a run folder"),
    ],
)
def test_errors_are_one_line_not_a_traceback(argv, message, offline, capsys, tmp_path,
                                             monkeypatch):  # fmt: skip
    monkeypatch.chdir(tmp_path)
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_predict_names_a_bad_image(tmp_path, offline, capsys):
    run = tmp_path / "run"
    main(["train", *FAST, "--out", str(run)])
    np.save(tmp_path / "big.npy", np.zeros((32, 32), np.uint8))
    assert main(["predict", str(run), str(tmp_path / "big.npy")]) == 1
    assert "images must be 28x28 pixels, found shape (1, 32, 32)" in capsys.readouterr().err


def test_a_second_train_into_the_same_folder_is_refused(tmp_path, offline, capsys):
    main(["train", *FAST, "--out", str(tmp_path / "run")])
    assert main(["train", *FAST, "--out", str(tmp_path / "run")]) == 1
    assert "already holds a run; pass --resume" in capsys.readouterr().err


@pytest.mark.parametrize("command", ["train", "evaluate", "predict", "data", "verify"])
def test_help_describes_every_option(command, capsys):
    with pytest.raises(SystemExit) as done:
        main([command, "--help"])
    assert done.value.code == 0
    text = capsys.readouterr().out
    sub = next(a for a in parser()._subparsers._group_actions[0].choices.items() if a[0] == command)
    for action in sub[1]._actions:
        for flag in action.option_strings:
            assert flag in text
        if action.help is None:
            pytest.fail(f"{command} {action.option_strings or action.dest} has no help text")
        if not action.option_strings:  # a positional argument: named and explained
            assert action.metavar in text and action.help in text
    assert len(text.splitlines()) > 3


def rgba_png(gray, alpha):
    """An 8-bit RGBA PNG (filter 0) of equal R, G, B = ``gray`` and the given alpha."""
    import struct
    import zlib

    def chunk(kind, body):
        return (
            struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))
        )

    h, w = gray.shape
    pixels = np.stack([gray, gray, gray, alpha], axis=-1).astype(np.uint8)  # (H, W, 4)
    raw = b"".join(b"\x00" + pixels[y].tobytes() for y in range(h))
    header = struct.pack(">IIBBBBB", w, h, 8, 6, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))  # fmt: skip


def test_predict_reads_dark_ink_on_a_transparent_background(tmp_path, offline, capsys):
    run = tmp_path / "run"
    main(["train", *FAST, "--out", str(run)])
    digit = offline.x_test[0]
    (tmp_path / "ink.png").write_bytes(rgba_png(np.zeros_like(digit), digit))  # black, alpha = ink
    (tmp_path / "light.png").write_bytes(rgba_png(digit, np.full_like(digit, 255)))
    (tmp_path / "empty.png").write_bytes(rgba_png(np.zeros_like(digit), np.zeros_like(digit)))
    capsys.readouterr()
    assert main(["predict", str(run), *(str(tmp_path / f) for f in
                 ("ink.png", "light.png", "empty.png"))]) == 0  # fmt: skip
    ink, light, empty = capsys.readouterr().out.splitlines()
    assert ink.split(": ")[1].split()[0] == light.split(": ")[1].split()[0]
    assert "inverted" in ink and "blank" not in ink
    assert "(warning: the image is blank)" in empty


def test_predict_names_a_missing_file(tmp_path, offline, capsys):
    run = tmp_path / "run"
    main(["train", *FAST, "--out", str(run)])
    assert main(["predict", str(run), str(tmp_path / "nope.png")]) == 1
    err = capsys.readouterr().err
    assert "nope.png: cannot read the file (No such file or directory)" in err
    assert "Traceback" not in err


def test_evaluate_refuses_a_config_edited_after_training(tmp_path, offline, capsys):
    run = tmp_path / "run"
    main(["train", *FAST, "--out", str(run)])
    toml = (run / "config.toml").read_text().replace('activation = "relu"', 'activation = "tanh"')
    (run / "config.toml").write_text(toml)
    assert main(["evaluate", str(run)]) == 1
    assert "model.activation: 'tanh' vs 'relu'" in capsys.readouterr().err


def test_metrics_json_is_strict_json(tmp_path, offline):
    main(["train", *FAST, "--out", str(tmp_path / "run")])
    text = (tmp_path / "run" / "metrics.json").read_text()
    json.loads(text, parse_constant=lambda c: pytest.fail(f"non-standard JSON constant {c}"))


CNN = (
    'model.layers=[{layer = "conv2d", channels = 4, kernel = 3, padding = "same"}, '
    '{layer = "batch_norm"}, {layer = "relu"}, {layer = "max_pool2d", window = 2}, '
    '{layer = "flatten"}, {layer = "dropout", rate = 0.2}, {layer = "dense", units = 10}]'
)
FAST_CNN = ["--set", CNN, "--set", "train.epochs=6", "--set", "train.validation=100",
            "--set", "train.batch_size=50", "--set", "optimizer.name=adam",
            "--set", "optimizer.lr=0.01"]  # fmt: skip


@pytest.mark.filterwarnings("ignore::nn.errors.HealthWarning")  # a tiny net, a large lr
def test_a_cnn_trains_evaluates_and_predicts_through_the_same_cli(tmp_path, offline, capsys):
    """The CLI is unchanged for a CNN: train, evaluate and predict use the run's own config,
    and batch norm's running statistics travel in the run's model folder."""
    run = tmp_path / "cnn"
    assert main(["train", *FAST_CNN, "--out", str(run)]) == 0
    out = capsys.readouterr().out
    assert "conv2d0" in out and "batch_norm1" in out  # the summary
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] > 0.8
    trained = nn.run.load_model(run)
    assert sorted(trained.state) == ["batch_norm1.running_mean", "batch_norm1.running_var"]
    assert not np.all(trained.state["batch_norm1.running_var"] == 1)  # trained, not initial
    assert main(["evaluate", str(run)]) == 0
    evaluated = capsys.readouterr().out
    assert f"test accuracy {100 * metrics['test']['accuracy']:.2f}%" in evaluated
    np.save(tmp_path / "five.npy", offline.x_test[:5])
    assert main(["predict", str(run), str(tmp_path / "five.npy")]) == 0
    predicted = [
        int(line.split(": ")[1].split()[0]) for line in capsys.readouterr().out.splitlines()
    ]
    assert np.mean(np.array(predicted) == offline.y_test[:5]) >= 0.6
