"""nn.plots: the figures when matplotlib is importable, one notice when it is not, and input checks.

The test extra installs matplotlib, so the suite draws real figures there and checks them with
nn.png's decoder (cross-checked against Pillow, which matplotlib requires). An interpreter
without matplotlib still exercises the real ImportError path; on CI (CI=true) that counts as
a failure, so a missing plotting extra cannot pass unnoticed.
"""

from __future__ import annotations

import importlib.util
import os
import sys

import numpy as np
import pytest

import nn.plots
from nn.errors import DataError, DTypeError, ShapeError
from nn.plots import CONFUSION_SIZE, CURVE_SIZE, NOTICE, save_figures
from nn.png import read_png

HISTORY = [
    {"epoch": e, "train_loss": 1 / e, "train_accuracy": 1 - 0.1 / e, "val_loss": 1.2 / e,
     "val_accuracy": 1 - 0.12 / e, "lr": 0.1, "seconds": 2.5}
    for e in (1, 2, 3)
]  # fmt: skip
NO_VALIDATION = [
    {"epoch": 1, "train_loss": 0.9, "train_accuracy": 0.7, "lr": 0.1, "seconds": 1.0},
    {"epoch": 2, "train_loss": 0.5, "train_accuracy": 0.8, "val_loss": None, "val_accuracy": None,
     "lr": 0.1, "seconds": 1.0},
]  # fmt: skip
CONFUSION = np.random.default_rng(0).integers(0, 20, size=(10, 10)) + np.diag(
    np.arange(900, 1000, 10)
)
HAVE_MATPLOTLIB = importlib.util.find_spec("matplotlib") is not None
ON_CI = os.environ.get("CI", "").lower() in {"1", "true", "yes"}


def block_matplotlib(monkeypatch):
    """Make every ``import matplotlib...`` raise ImportError, as on a machine without it."""
    for name in [m for m in sys.modules if m == "matplotlib" or m.startswith("matplotlib.")]:
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # None in sys.modules: ImportError


def test_without_matplotlib_one_notice_and_nothing_written(tmp_path, monkeypatch):
    block_matplotlib(monkeypatch)
    messages = []
    assert save_figures(tmp_path, HISTORY, CONFUSION, log=messages.append) == []
    assert messages == [NOTICE]
    assert "\n" not in NOTICE and "pip install 'nn-verified[plot]'" in NOTICE
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("history", [HISTORY, NO_VALIDATION], ids=["validation", "none"])
def test_figures_with_matplotlib(tmp_path, history):
    """Three PNGs of the documented sizes that nn.png reads, not blank; nothing logged."""
    messages = []
    paths = save_figures(tmp_path / "run", history, CONFUSION, log=messages.append)
    if not HAVE_MATPLOTLIB:
        assert not ON_CI, "matplotlib is missing on CI: the test extra must install it"
        assert paths == [] and messages == [NOTICE]  # the real ImportError, not a simulated one
        return
    assert messages == []
    assert paths == [tmp_path / "run" / n for n in ("loss.png", "accuracy.png", "confusion.png")]
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == sorted(p.name for p in paths)
    for path, (width, height) in zip(paths, [CURVE_SIZE, CURVE_SIZE, CONFUSION_SIZE], strict=True):
        image = read_png(path)
        assert image.shape == (height, width)
        assert image.min() < 100 and image.max() > 200  # dark text and lines on a light page
        assert_decodes_like_pillow(path, image)


def assert_decodes_like_pillow(path, image):
    from PIL import Image  # matplotlib depends on Pillow

    rgba = np.asarray(Image.open(path).convert("RGBA")).astype(np.float64)  # (H, W, 4)
    luma = rgba[..., 0] * 0.299 + rgba[..., 1] * 0.587 + rgba[..., 2] * 0.114  # (H, W)
    assert np.abs(image - luma * rgba[..., 3] / 255).max() <= 0.5 + 1e-9


def test_figures_show_the_right_numbers_in_the_right_places():
    """Curves hold each epoch's values; the heatmap's row i is true class i (counts[0, 9] is
    drawn at x = 9, y = 0) with the count written in the cell; y is labelled "true class"."""
    if not HAVE_MATPLOTLIB:
        assert not ON_CI, "matplotlib is missing on CI: the test extra must install it"
        return
    from matplotlib.figure import Figure

    for key in ("loss", "accuracy"):
        train, val = plot_axes(nn.plots._curves(Figure, HISTORY, key, key)).lines
        expected = [[r["epoch"], r[f"train_{key}"]] for r in HISTORY]
        np.testing.assert_array_equal(train.get_xydata(), expected)
        np.testing.assert_array_equal(
            val.get_xydata(), [[r["epoch"], r[f"val_{key}"]] for r in HISTORY]
        )
        assert len(plot_axes(nn.plots._curves(Figure, NO_VALIDATION, key, key)).lines) == 1
    counts = np.zeros((10, 10), dtype=np.int64)
    counts[0, 9] = 7
    ax = plot_axes(nn.plots._confusion(Figure, counts))
    np.testing.assert_array_equal(ax.images[0].get_array(), counts)
    cells = {tuple(map(int, text.get_position())): text.get_text() for text in ax.texts}
    assert cells[(9, 0)] == "7" and cells[(0, 9)] == "0" and len(cells) == 100
    assert (ax.get_xlabel(), ax.get_ylabel()) == ("predicted class", "true class")


def plot_axes(figure):
    """The plot's axes (the confusion figure's second axes is its colour bar)."""
    return figure.axes[0]


def test_the_callers_matplotlib_state_is_untouched(tmp_path, monkeypatch):
    """No pyplot import (which would pick a backend) and the same rcParams afterwards.

    Both are process-wide, so earlier tests could hide a change: imports are spied on while
    save_figures runs, and rcParams start from matplotlib's defaults."""
    if not HAVE_MATPLOTLIB:
        assert not ON_CI, "matplotlib is missing on CI: the test extra must install it"
        return
    import builtins

    import matplotlib

    imported = []
    real_import = builtins.__import__

    def spy(name, globals=None, locals=None, fromlist=(), level=0):
        imported.extend([name, *(f"{name}.{item}" for item in fromlist or ())])
        return real_import(name, globals, locals, fromlist, level)

    with matplotlib.rc_context():
        matplotlib.rcdefaults()
        before = matplotlib.rcParams.copy()  # copy(): dict() would resolve the backend itself
        monkeypatch.setattr(builtins, "__import__", spy)
        save_figures(tmp_path, HISTORY, CONFUSION, log=lambda message: None)
        monkeypatch.undo()
        assert matplotlib.rcParams.copy() == before
    assert "matplotlib.figure" in imported  # the spy saw save_figures' imports
    assert not [name for name in imported if "pyplot" in name]


@pytest.mark.parametrize(
    ("history", "confusion", "error", "message"),
    [
        ([], CONFUSION, DataError, "history is empty"),
        ([{"epoch": 1, "train_accuracy": 0.5}], CONFUSION, DataError,
         r"history\[0\]\['train_loss'\] must be a number, received None"),
        ([*HISTORY, {**HISTORY[0], "val_loss": "high"}], CONFUSION, DataError,
         r"history\[3\]\['val_loss'\] must be a number, received 'high'"),
        (HISTORY, CONFUSION[:3], ShapeError, r"shape \(K, K\) with K >= 1, received \(3, 10\)"),
        (HISTORY, np.zeros((0, 0), dtype=int), ShapeError, r"received \(0, 0\)"),
        (HISTORY, CONFUSION / 2, DTypeError, "integer counts, received dtype float64"),
        (HISTORY, -CONFUSION, DataError, "counts must be >= 0"),
    ],
)  # fmt: skip
def test_bad_inputs_are_refused_with_or_without_matplotlib(
    tmp_path, history, confusion, error, message
):
    with pytest.raises(error, match=f"^save_figures: .*{message}"):
        save_figures(tmp_path, history, confusion, log=lambda message: None)
    assert list(tmp_path.iterdir()) == []
