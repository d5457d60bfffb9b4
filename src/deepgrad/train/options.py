"""The options of one fit, as one frozen value.

``fit``, ``Network.fit``, the scikit-learn estimators, MPI and the CLI all build a
``FitOptions``; the loop reads its fields by name. An unknown option is a TypeError when
the value is built, and every field is checked once, in ``arguments.check_fit_arguments``,
at the start of the fit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

__all__ = ["FitOptions"]


@dataclass(frozen=True)
class FitOptions:
    """Everything ``fit`` takes besides the network and the data (see ``train.api.fit``)."""

    batch_size: int | str | None = "auto"
    epochs: int = 10
    learning_rate: Any = 0.1  # a float or a schedule step -> float
    l2: float = 0.0
    l2_normalization: str = "batch"
    optimizer: Any = "gd"  # a name or an optim.optimizers.Optimizer
    keep_prob: float = 1.0
    seed: int | None = None
    shuffle: bool = True
    validation_data: tuple | None = None
    callbacks: tuple | list = ()
    on_divergence: str = "raise"
    progress: bool | None = None
    checkpoint: Any = None
    checkpoint_every: int | None = None
    engine: str | None = None
    early_stopping: bool = False  # stop when the validation cost stops improving
    patience: int = 10  # epochs without improvement before stopping
    monitor: str = "val_cost"  # or "val_accuracy"
    min_delta: float = 0.0  # smallest change that counts as an improvement
    order: Any = None  # None, a callable epoch -> permutation, or an (epochs, m) array
