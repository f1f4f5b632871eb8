"""Early stopping on the validation loss, with all its state in a JSON-able record, so a
checkpoint can hold it and a resumed run stops where the uninterrupted one would."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class EarlyStopping:
    """Early stopping on the validation loss: its whole state, so a checkpoint can hold it.

    ``patience = 0`` only tracks the best epoch; otherwise the run stops once ``patience``
    epochs in a row have not lowered the best validation loss, and keeps the best weights.
    """

    patience: int
    best_loss: float = np.inf
    best_epoch: int = 0
    bad_epochs: int = 0
    stopped: bool = False

    def update(self, epoch: int, val_loss: float) -> bool:
        """Record an epoch's validation loss; return whether it is the best so far."""
        better = val_loss < self.best_loss
        if better:
            self.best_loss, self.best_epoch, self.bad_epochs = val_loss, epoch, 0
        else:
            self.bad_epochs += 1
        self.stopped = self.patience > 0 and self.bad_epochs >= self.patience
        return better

    def to_meta(self) -> dict[str, Any]:
        best = self.best_loss if np.isfinite(self.best_loss) else None  # JSON has no inf
        return {"best_val_loss": best, "best_epoch": self.best_epoch,
                "bad_epochs": self.bad_epochs, "stopped_early": self.stopped}  # fmt: skip

    @classmethod
    def from_meta(cls, patience: int, meta: dict[str, Any]) -> EarlyStopping:
        best = np.inf if meta["best_val_loss"] is None else meta["best_val_loss"]
        return cls(patience, best, meta["best_epoch"], meta["bad_epochs"], meta["stopped_early"])
