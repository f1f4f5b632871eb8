"""Bad input to the trainer, to configs (TOML files and --set) and to the command line.

Each case is a row of docs/bad-input.md (its message column is checked against a run). The
trainer checks its data before the first step, so a bad label in the validation split is
named at once, not after an epoch. The command line answers a misuse with exit code 2 and
argparse's usage (a malformed command) or exit code 1 and one line (a bad value, a bad
file), never a traceback. Nothing here trains: the run folders are written by hand.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from bad_input_table import bad, check_named_error, documented

import nn.datasets
from conftest import synthetic_digits
from nn.build import build_model
from nn.checkpoint import save_checkpoint
from nn.cli import main
from nn.config import Config
from nn.errors import DataError, ShapeError
from nn.png import write_png
from nn.train import train

CFG = Config().override(["model.hidden=[8]", "train.epochs=1", "train.validation=20",
                         "train.batch_size=50"])  # fmt: skip
XS, YS = synthetic_digits(100)
STRINGS = Config.from_toml("""
[data]
name = "digit_strings"
train_strings = 40
test_strings = 10
max_length = 2
test_length = 2
height = 28
width = 30
[model]
layers = [{layer = "columns"}, {layer = "dense", units = 11}]
loss = "ctc"
[train]
validation = 10
""")  # a CTC model of T = 30 columns of 11 classes
XT = np.zeros((40, 28, 30), np.uint8)
YT = np.full((40, 2), -1)
YT[:, 0] = 3


def replace(a, index, value):
    a = a.astype(type(value)) if isinstance(value, float) else a.astype(np.int64)
    a[index] = value
    return a


def load(text):
    Path("bad.toml").write_text(text, encoding="utf-8")
    return Config.load("bad.toml")


CASES = [
    # train(): its data, checked before the first step
    bad("train-cfg", lambda: train({"train": {}}, XS, YS), TypeError, "cfg", "Config", "dict"),
    bad("train-x-float", lambda: train(CFG, XS / 255, YS),
        DataError, "x_train", "uint8", "float64"),
    bad("train-x-nan", lambda: train(CFG, replace(XS / 255, 0, np.nan), YS),
        DataError, "x_train", "uint8", "NaN"),
    bad("train-x-list", lambda: train(CFG, XS.tolist(), YS), DataError, "x_train", "uint8", "list"),
    bad("train-x-shape", lambda: train(CFG, XS[:, :20, :20], YS),
        ShapeError, "x_train", "(784,)", "(100, 20, 20)"),
    bad("train-y-nan", lambda: train(CFG, XS, replace(YS, 3, np.nan)),
        DataError, "y_train", "integer", "NaN or inf at index 3"),
    bad("train-y-negative", lambda: train(CFG, XS, replace(YS, 3, -1)),
        DataError, "y_train", "0..9", "-1 at index 3"),
    bad("train-y-validation", lambda: train(CFG, XS, replace(YS, 95, 10)),
        DataError, "y_train", "0..9", "10 at index 95"),
    bad("train-y-rank", lambda: train(CFG, XS, YS[:, None]),
        ShapeError, "y_train", "(N,)", "(100, 1)"),
    bad("train-y-length", lambda: train(CFG, XS, YS[:50]),
        DataError, "y_train", "100 images", "50"),
    bad("train-empty", lambda: train(CFG, XS[:0], YS[:0]),
        DataError, "x_train", "at least", "N = 0"),
    bad("train-validation", lambda: train(CFG, XS[:20], YS[:20]),
        DataError, "validation", "0..19", "found 20"),
    bad("train-stop_after", lambda: train(CFG, XS, YS, stop_after="2"),
        DataError, "stop_after", "epoch >= 1", "'2'"),
    bad("train-strings-rank", lambda: train(STRINGS, XT, YT[:, 0]),
        ShapeError, "y_train", "(N, L)", "(40,)"),
    bad("train-strings-padding", lambda: train(STRINGS, XT, YT[:, ::-1]),
        DataError, "y_train", "padded with -1 at their end", "[-1, 3]"),
    bad("train-strings-too-long", lambda: train(STRINGS, XT, np.full((40, 16), 3)),
        DataError, "y_train", "T = 30", "needs 31 columns"),
    # configs: a TOML file
    bad("toml-unknown-key", lambda: load("[train]\nepoch = 3\n"),
        DataError, "bad.toml", "[train]", "unknown key 'epoch'"),
    bad("toml-unknown-table", lambda: load("[trian]\nepochs = 3\n"),
        DataError, "bad.toml", "expected one of", "[trian]"),
    bad("toml-wrong-type", lambda: load("[train]\nepochs = '3'\n"),
        DataError, "[train]: epochs", "int", "'3'"),
    bad("toml-bool", lambda: load("[train]\nepochs = true\n"), DataError, "epochs", "int", "True"),
    bad("toml-range", lambda: load("[train]\nbatch_size = 0\n"),
        DataError, "[train] batch_size", "integer >= 1", "found 0"),
    bad("toml-nan", lambda: load("[optimizer]\nlr = nan\n"),
        DataError, "[optimizer] lr", "finite number >= 0", "nan"),
    bad("toml-layer", lambda: load("[model]\nlayers = [{layer = 'dense', units = 0}]\n"),
        DataError, "layers[0]", "positive integer", "received 0"),
    bad("toml-syntax", lambda: load("[train\n"), DataError, "bad.toml", "TOML", "line 1"),
    # configs: --set
    bad("set-form", lambda: Config().override(["epochs=3"]),
        DataError, "'epochs=3'", "table.key=value", "train.epochs=3"),
    bad("set-unknown-key", lambda: Config().override(["train.epoch=3"]),
        DataError, "--set", "expected one of", "'epoch'"),
    bad("set-wrong-type", lambda: Config().override(["train.epochs=2.5"]),
        DataError, "epochs", "int", "2.5"),
    bad("set-range", lambda: Config().override(["optimizer.lr=-1"]),
        DataError, "[optimizer] lr", "finite number >= 0", "-1.0"),
]  # fmt: skip


@pytest.mark.parametrize(("call", "error", "parts"), CASES)
def test_bad_input_is_a_named_error(call, error, parts, request, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)  # config files are written here
    check_named_error(call, error, parts, request.node.callspec.id)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A digits run and a strings run, written as training would leave them (untrained
    weights), and the files the command line is given."""
    here = tmp_path_factory.mktemp("cli")
    for name, cfg in (("run", CFG), ("strings", STRINGS)):
        model = build_model(cfg)
        (here / name).mkdir()
        (here / name / "config.toml").write_text(cfg.to_toml(), encoding="utf-8")
        save_checkpoint(here / name / "model", params=model.init(0) | model.init_state(),
                        opt_state={}, meta={"config": cfg.to_dict()})  # fmt: skip
    np.save(here / "nan.npy", np.full((28, 28), np.nan, np.float32))
    np.save(here / "none.npy", np.zeros((0, 28, 28), np.uint8))
    (here / "notes.txt").write_text("7", encoding="utf-8")
    write_png(here / "number.png", np.pad(np.full((20, 8), 200, np.uint8), 4))
    return here


CLI = {  # case: (argv, exit code, parts of stderr)
    "cli-command": (["fit"], 2, ["argument command", "choose from", "'fit'"]),
    "cli-stop-after": (["train", "--stop-after", "x"], 2, ["--stop-after", "int", "'x'"]),
    "cli-seed": (["doctor", "default", "--seed", "-1"], 2, ["--seed", "integer >= 0", "'-1'"]),
    "cli-config": (["train", "--config", "nope"], 1, ["'nope'", "shipped", "no such file"]),
    "cli-set-key": (["train", "--set", "train.epoch=3"], 1, ["[train]", "expected", "'epoch'"]),
    "cli-set-type": (["train", "--set", "model.hidden=800"], 1, ["hidden", "list", "800"]),
    "cli-resume-set": (["train", "--resume", "run", "--set", "train.epochs=1"], 1,
                       ["--resume", "drop --config, --set", "--out"]),
    "cli-out-file": (["train", "--out", "notes.txt"], 1, ["notes.txt", "not a folder", "file"]),
    "cli-validation": (["train", "--out", "r", "--set", "train.validation=600",
                        "--set", "model.hidden=[8]"], 1, ["validation", "0..599", "600"]),
    "cli-evaluate": (["evaluate", "notes.txt"], 1, ["notes.txt", "run folder", "no config.toml"]),
    "cli-predict-nan": (["predict", "run", "nan.npy"], 1, ["nan.npy", "finite", "NaN"]),
    "cli-predict-empty": (["predict", "run", "none.npy"], 1, ["none.npy", "no images", "(0, 28"]),
    "cli-predict-suffix": (["predict", "run", "notes.txt"], 1, ["notes.txt", ".png", "'.txt'"]),
    "cli-predict-strings": (["predict", "strings", "number.png"], 1,
                            ["strings", "whole numbers", "nn read"]),
    "cli-read-digits": (["read", "run", "number.png"], 1, ["number.png", "digit_strings", "mnist"]),
    "cli-read-beam": (["read", "strings", "number.png", "--beam", "0"], 1,
                      ["beam", "integer >= 1", "0"]),
}  # fmt: skip


@pytest.mark.parametrize("case", CLI)
def test_command_line_misuse_is_one_message_and_an_exit_code(case, runs, tiny_mnist,
                                                             monkeypatch, capsys):  # fmt: skip
    argv, code, parts = CLI[case]
    monkeypatch.chdir(runs)
    monkeypatch.setattr(nn.datasets, "fetch_mnist", lambda data_dir=None, log=print: tiny_mnist)
    if code == 2:
        with pytest.raises(SystemExit) as done:
            main(argv)
        assert done.value.code == 2
    else:
        assert main(argv) == 1
    err = capsys.readouterr().err
    assert "Traceback" not in err
    for part in parts:
        assert part in err, (part, err)
    assert documented().get(case) == err.strip().splitlines()[-1]
