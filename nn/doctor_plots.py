"""The doctor's figure: a histogram of each layer's activations on the diagnosed batch.

matplotlib is optional, as for the run figures (:mod:`nn.plots`): without it nothing is
written and one line says so. The figure is drawn on an Agg canvas through
:class:`matplotlib.figure.Figure`, never ``pyplot``, and the PNG is written atomically.
"""

from __future__ import annotations

import io
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from nn.atomic import write_bytes_atomic
from nn.doctor import Diagnosis, Row
from nn.plots import NOTICE
from nn.trace import Trace

__all__ = ["COLUMNS", "NOTICE", "save_histograms"]

COLUMNS = 4  # histograms per row of the figure
_PANEL = (300, 230)  # pixels per histogram
_DPI = 100
_MAX_VALUES = 200_000  # entries drawn per layer: an evenly spaced sample of larger outputs
_BINS = 60


def save_histograms(
    diagnosis_or_trace: Diagnosis | Trace,
    path: str | os.PathLike[str],
    log: Callable[[str], None] = print,
) -> Path | None:
    """Write a PNG with one histogram per layer of its outputs' finite values, titled with the
    layer's name, shape and statistics; return its path, or None without matplotlib.

    The counts are on a log scale, so a ReLU's spike at 0 and its tail both show.

    >>> import tempfile
    >>> from nn.doctor import diagnose
    >>> from nn.model import mlp
    >>> model = mlp([6, 4, 2])
    >>> d = diagnose(model, model.init(0), (np.ones((8, 6), np.float32), np.arange(8) % 2))
    >>> out = save_histograms(d, Path(tempfile.mkdtemp()) / "doctor.png", log=lambda s: None)
    >>> out is None or out.read_bytes()[:8] == b"\\x89PNG\\r\\n\\x1a\\n"
    True
    """
    t = diagnosis_or_trace.trace if isinstance(diagnosis_or_trace, Diagnosis) else (
        diagnosis_or_trace)  # fmt: skip
    if not isinstance(t, Trace):
        raise TypeError(
            f"save_histograms: expects an nn.doctor.Diagnosis or an nn.trace.Trace, received "
            f"{type(diagnosis_or_trace).__name__}"
        )
    rows = diagnosis_or_trace.rows if isinstance(diagnosis_or_trace, Diagnosis) else None
    try:
        from matplotlib.backends.backend_agg import (  # type: ignore[import-not-found, unused-ignore]
            FigureCanvasAgg,
        )
        from matplotlib.figure import (  # type: ignore[import-not-found, unused-ignore]
            Figure,
        )
    except ImportError:
        log(NOTICE)
        return None
    n = len(t.names)
    cols = min(COLUMNS, n)
    lines = math.ceil(n / cols)
    size = (cols * _PANEL[0] / _DPI, lines * _PANEL[1] / _DPI)
    figure = Figure(figsize=size, dpi=_DPI, layout="constrained")
    for i, (name, y) in enumerate(zip(t.names, t.outputs, strict=True)):
        ax = figure.add_subplot(lines, cols, i + 1)
        values = _sample(y)
        if values.size:
            ax.hist(values, bins=_BINS, color="tab:blue", log=True)
        else:
            ax.text(0.5, 0.5, "no finite value", ha="center", va="center", transform=ax.transAxes)
        ax.set_title(_title(name, y, values, rows[i] if rows else None), fontsize=8)
        ax.tick_params(which="both", labelsize=7)
    buffer = io.BytesIO()
    FigureCanvasAgg(figure).print_png(buffer)  # type: ignore[no-untyped-call, unused-ignore]
    write_bytes_atomic(path, buffer.getvalue())
    return Path(path)


def _sample(y: Any) -> np.ndarray:
    """The finite entries of ``y``, at most :data:`_MAX_VALUES` of them, evenly spaced."""
    flat = np.asarray(y).ravel()
    flat = flat[:: max(1, -(-flat.size // _MAX_VALUES))]  # ceil: never above the limit
    return np.asarray(flat[np.isfinite(flat)], dtype=np.float64)


def _title(name: str, y: Any, values: np.ndarray, row: Row | None) -> str:
    """``name (shape)`` on one line; the mean, std, and saturation or dead units on the next."""
    if row is not None:
        mean, std = row.mean, row.std
    else:
        mean, std = (float(values.mean()), float(values.std())) if values.size else (math.nan,) * 2
    extra = ""
    if row is not None and row.saturated is not None:
        extra = f", sat. {100 * row.saturated:.3g}%"
    if row is not None and row.dead is not None:
        extra = f", dead {100 * row.dead:.3g}%"
    shape = "x".join(map(str, np.shape(y)[1:]))
    return f"{name} ({shape})\nmean {mean:.3g}, std {std:.3g}{extra}"
