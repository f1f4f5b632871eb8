"""Figures of a training run: loss and accuracy per epoch, and the test confusion matrix.

matplotlib is an optional dependency (``pip install 'nn-verified[plot]'``). Without it,
:func:`save_figures` writes nothing and says so in one line; training never depends on it.
Figures are drawn with :class:`matplotlib.figure.Figure` on an Agg canvas, never through
``pyplot``: no backend is selected, no global figure registry grows, no window can open,
and the caller's matplotlib state is left as it was. Each PNG is written atomically.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from nn.atomic import write_bytes_atomic
from nn.errors import DataError, DTypeError, ShapeError

if TYPE_CHECKING:
    from matplotlib.figure import Figure  # type: ignore[import-not-found, unused-ignore]

__all__ = ["CONFUSION_SIZE", "CURVE_SIZE", "NOTICE", "save_figures"]

CURVE_SIZE = (800, 500)
"""(width, height) in pixels of loss.png and accuracy.png."""
CONFUSION_SIZE = (700, 600)
"""(width, height) in pixels of confusion.png."""
NOTICE = "figures skipped: matplotlib is not installed (pip install 'nn-verified[plot]')"
_DPI = 100
_ANNOTATE_UP_TO = 20  # classes; beyond that the counts would not fit in the cells


def save_figures(
    run_dir: str | os.PathLike[str],
    history: Sequence[dict[str, Any]],
    confusion: np.ndarray | None,
    log: Callable[[str], None] = print,
) -> list[Path]:
    """Write loss.png, accuracy.png and confusion.png into ``run_dir``; return their paths.

    ``history`` has one dict per epoch with "epoch", "train_loss", "train_accuracy" and,
    when there is a validation split, "val_loss" and "val_accuracy" (absent or None
    otherwise); accuracies are fractions in [0, 1]. ``confusion`` is the (K, K) count matrix
    of :func:`nn.metrics.confusion_matrix`: rows true classes, columns predicted classes;
    ``None`` (a model that reads strings) draws no confusion.png. The inputs are checked
    first, so a bad argument is an error with or without matplotlib.

    >>> import tempfile
    >>> history = [{"epoch": 1, "train_loss": 0.3, "train_accuracy": 0.91}]
    >>> paths = save_figures(tempfile.mkdtemp(), history, np.eye(3, dtype=int), log=lambda s: None)
    >>> [p.name for p in paths] in ([], ["loss.png", "accuracy.png", "confusion.png"])
    True
    """
    counts = None if confusion is None else _check(history, confusion)
    if counts is None:
        _check(history, np.eye(1, dtype=int))  # the history alone
    try:
        from matplotlib.backends.backend_agg import (  # type: ignore[import-not-found, unused-ignore]
            FigureCanvasAgg,
        )
        from matplotlib.figure import (  # type: ignore[import-not-found, unused-ignore]
            Figure,
        )
    except ImportError:
        log(NOTICE)
        return []
    figures = {
        "loss.png": _curves(Figure, history, "loss", "loss (the model's: cross-entropy, CTC, ...)"),
        "accuracy.png": _curves(Figure, history, "accuracy", "accuracy"),
    }
    if counts is not None:
        figures["confusion.png"] = _confusion(Figure, counts)
    paths = []
    for name, figure in figures.items():
        buffer = io.BytesIO()
        # print_png rather than savefig: savefig would apply the user's savefig.* rcParams
        # (bbox="tight", dpi), and the sizes are part of this function's contract.
        FigureCanvasAgg(figure).print_png(buffer)  # type: ignore[no-untyped-call, unused-ignore]
        write_bytes_atomic(Path(run_dir) / name, buffer.getvalue())
        paths.append(Path(run_dir) / name)
    return paths


def _check(history: Sequence[dict[str, Any]], confusion: np.ndarray) -> np.ndarray:
    if len(history) == 0:
        raise DataError("save_figures: history is empty; there is no epoch to plot")
    for i, record in enumerate(history):
        for key in ("epoch", "train_loss", "train_accuracy", "val_loss", "val_accuracy"):
            value = record.get(key)
            if value is None and key.startswith("val_"):
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float, np.number)):
                raise DataError(
                    f"save_figures: history[{i}][{key!r}] must be a number, received {value!r}"
                )
    counts = np.asarray(confusion)
    if counts.ndim != 2 or counts.shape[0] != counts.shape[1] or counts.size == 0:
        raise ShapeError(
            f"save_figures: confusion must have shape (K, K) with K >= 1, received {counts.shape}"
        )
    if counts.dtype.kind not in "iu":
        raise DTypeError(
            f"save_figures: confusion must hold integer counts, received dtype {counts.dtype}"
        )
    if counts.min() < 0:
        raise DataError(f"save_figures: confusion counts must be >= 0, received {counts.min()}")
    return counts


def _figure(figure_class: type[Figure], size: tuple[int, int]) -> Figure:
    return figure_class(figsize=(size[0] / _DPI, size[1] / _DPI), dpi=_DPI, layout="constrained")


def _curves(
    figure_class: type[Figure], history: Sequence[dict[str, Any]], key: str, label: str
) -> Figure:
    """Train (and validation, where present) ``key`` against the epoch."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter  # type: ignore[import-not-found, unused-ignore]

    figure = _figure(figure_class, CURVE_SIZE)
    ax = figure.add_subplot()
    epochs = [record["epoch"] for record in history]
    ax.plot(epochs, [record[f"train_{key}"] for record in history], marker="o", label="training")
    validation = [(r["epoch"], r[f"val_{key}"]) for r in history if r.get(f"val_{key}") is not None]
    if validation:
        ax.plot(*zip(*validation, strict=True), marker="s", label="validation")
    ax.set_xlabel("epoch")
    ax.set_ylabel(label)
    ax.set_title(f"{label} per epoch")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    if key == "accuracy":
        ax.yaxis.set_major_formatter(PercentFormatter(xmax=1.0))
    ax.grid(alpha=0.3)
    ax.legend()
    return figure


def _confusion(figure_class: type[Figure], counts: np.ndarray) -> Figure:
    """A heatmap of the counts, rows true classes, columns predicted, each cell labelled."""
    figure = _figure(figure_class, CONFUSION_SIZE)
    ax = figure.add_subplot()
    k = counts.shape[0]
    image = ax.imshow(counts, cmap="Blues", vmin=0, vmax=max(int(counts.max()), 1))
    if k <= _ANNOTATE_UP_TO:
        dark = counts > counts.max() / 2  # (K, K): white text on the darkest cells
        for (i, j), n in np.ndenumerate(counts):
            ax.text(
                j,
                i,
                str(n),
                ha="center",
                va="center",
                fontsize=8,
                color="white" if dark[i, j] else "black",
            )
    ax.set_xticks(range(k))
    ax.set_yticks(range(k))
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    total, right = int(counts.sum()), int(np.trace(counts))
    ax.set_title(
        f"confusion matrix: {right} of {total} correct"
        + (f" ({right / total:.2%})" if total else "")
    )
    figure.colorbar(image, ax=ax, label="images")
    return figure
