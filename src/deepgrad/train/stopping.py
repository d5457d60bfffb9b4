"""Early stopping: one tracker of the best epoch, shared by ``fit``, the CLI and the
scikit-learn estimators.

After each epoch the caller hands the tracker the monitored value and the parameters;
it keeps a copy of the best ones and says when ``patience`` epochs have passed without
an improvement larger than ``min_delta``. ``message`` is the one line saying where it
stopped and which epoch's parameters were kept.
"""

from __future__ import annotations

import math

from deepgrad.core.backend import namespace
from deepgrad.core.checks import check_float, check_int

__all__ = ["MONITORS", "EarlyStopping", "check_early_stopping"]

# What can be monitored, and whether lower is better.
MONITORS = {"val_cost": True, "val_accuracy": False, "score": False}


def check_early_stopping(early_stopping, patience, monitor, min_delta, has_validation) -> None:
    """TypeError/ValueError for early-stopping options that cannot work."""
    if not isinstance(early_stopping, bool):
        raise TypeError(f"early_stopping must be True or False, got {early_stopping!r}")
    check_int("patience", patience, 1)
    check_float("min_delta", min_delta, 0.0)
    if monitor not in ("val_cost", "val_accuracy"):
        raise ValueError(f"monitor must be 'val_cost' or 'val_accuracy', got {monitor!r}")
    if early_stopping and not has_validation:
        raise ValueError(
            "early_stopping=True needs validation_data=(X_val, Y_val): it monitors the "
            "validation cost (or accuracy) after every epoch"
        )


class EarlyStopping:
    """The best epoch so far of a monitored value, and when to stop.

    ``update(epoch, value, params) -> True`` when training should stop: ``patience``
    epochs without improving on the best by more than ``min_delta``. ``best_params`` is
    a copy of the parameters of ``best_epoch`` (0-based).
    """

    def __init__(self, patience: int = 10, monitor: str = "val_cost", min_delta: float = 0.0):
        self.patience, self.monitor, self.min_delta = patience, monitor, min_delta
        self.lower = MONITORS[monitor]
        self.best = math.inf if self.lower else -math.inf
        self.best_epoch: int | None = None
        self.best_params: dict | None = None
        self.stopped_epoch: int | None = None
        self.stale = 0

    def update(self, epoch: int, value: float, params: dict) -> bool:
        if math.isnan(value):
            better = improved = False
        elif self.lower:
            better, improved = value < self.best, value < self.best - self.min_delta
        else:
            better, improved = value > self.best, value > self.best + self.min_delta
        if better:
            self.best, self.best_epoch = value, epoch
            self.best_params = {k: namespace(v).asarray(v, copy=True) for k, v in params.items()}
        self.stale = 0 if improved else self.stale + 1
        if self.stale >= self.patience:
            self.stopped_epoch = epoch
            return True
        return False

    def message(self) -> str:
        """The one line: where it stopped and which epoch's parameters were kept."""
        what = self.monitor.replace("_", " ").replace("val ", "validation ")
        return (
            f"early stopping at epoch {self.stopped_epoch + 1}: the {what} did not improve "
            f"for {self.patience} epochs; kept the parameters of epoch {self.best_epoch + 1} "
            f"({what} {self.best:.4g})"
        )
