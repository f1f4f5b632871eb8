"""A progress bar for training: epoch, batch, loss, accuracy and images per second.

On a terminal one line is redrawn in place (at most ten times a second, so drawing never
costs training time); in a log file or a pipe only each epoch's summary line is written.
"""

from __future__ import annotations

import sys
import time
from typing import Any, TextIO


class ProgressBar:
    """Called with the trainer's progress dicts (see :func:`nn.train.train`)."""

    def __init__(self, stream: TextIO | None = None, width: int = 24) -> None:
        self.stream = stream or sys.stdout
        self.live = self.stream.isatty()
        self.width = width
        self.last_draw = 0.0

    def __call__(self, p: dict[str, Any]) -> None:
        if p.get("end_of_epoch"):
            self._end_of_epoch(p)
            return
        now = time.monotonic()
        if not self.live or (now - self.last_draw < 0.1 and p["step"] != p["steps"]):
            return
        self.last_draw = now
        done = int(self.width * p["step"] / p["steps"])
        bar = "#" * done + "." * (self.width - done)
        self.stream.write(
            f"\repoch {p['epoch']}/{p['epochs']} [{bar}] batch {p['step']}/{p['steps']} "
            f"loss {p['loss']:.4f} acc {100 * p['accuracy']:.2f}% "
            f"{p['images_per_second']:,.0f} img/s"
        )
        self.stream.flush()

    def _end_of_epoch(self, r: dict[str, Any]) -> None:
        val = (
            f" | val loss {r['val_loss']:.4f} acc {100 * r['val_accuracy']:.2f}%"
            if "val_loss" in r
            else ""
        )
        self.stream.write(
            ("\r\033[K" if self.live else "")
            + f"epoch {r['epoch']:>3}: loss {r['train_loss']:.4f} acc "
            f"{100 * r['train_accuracy']:.2f}%{val} | lr {r['lr']:.3g} | {r['seconds']:.1f} s, "
            f"{r['images_per_second']:,.0f} img/s\n"
        )
        # the guard's diagnoses and the gradient-health warnings (nn.guard, nn.health)
        what = {"skip": "skipped", "rollback": "rolled back"}.get(r.get("nonfinite_policy", ""))
        for event in r.get("nonfinite", []):
            self.stream.write(f"  non-finite, {what or 'stopped'}: {event}\n")
        for warning in r.get("warnings", []):
            self.stream.write(f"  warning: {warning}\n")
        self.stream.flush()
