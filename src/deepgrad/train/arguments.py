"""Every check ``fit`` makes of its options (a ``FitOptions``), before anything runs."""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np

from deepgrad.core.checks import (
    as_2d_float,
    check_fits_dtype,
    check_float,
    check_int,
    check_targets,
)
from deepgrad.core.network import check_allocation
from deepgrad.data.arrays import EpochOrder, n_batches
from deepgrad.optim import optimizers
from deepgrad.train.options import FitOptions
from deepgrad.train.stopping import check_early_stopping

__all__ = ["FitArguments", "check_fit_arguments", "resolve_batch_size", "L2_NORMALIZATIONS"]

L2_NORMALIZATIONS = ("batch", "dataset")


def resolve_batch_size(batch_size, m: int) -> int:
    if batch_size is None:
        return m  # batch gradient descent
    if batch_size == "auto":
        return min(64, m)
    b = check_int("batch_size", batch_size, 1)
    if b > m:
        raise ValueError(
            f"batch_size must be <= the number of examples ({m}), got {b}; "
            f"use batch_size=None for batch gradient descent"
        )
    return b


class FitArguments(NamedTuple):
    """fit's inputs after validation; ``by_name``: the optimizer was given by its name."""

    X: Any
    Y: Any
    batch_size: int
    epochs: int
    l2: float
    keep_prob: float
    optimizer: optimizers.Optimizer
    by_name: bool
    validation: tuple | None  # (Xv, Yv) checked, or None
    order: EpochOrder | None = None  # the user's batch order, checked


def check_fit_arguments(net, X, Y, o: FitOptions) -> FitArguments:
    """Every check ``fit`` makes of its arguments (``o``), once per fit, on every rank."""
    spec = net.spec
    if isinstance(X, np.memmap):  # checked batch by batch while training
        X = as_2d_float("X", X, spec.layer_sizes[0], check_finite=False)
    else:
        X = as_2d_float("X", X, spec.layer_sizes[0], dtype=net.dtype)
    Y = check_targets("Y", Y, spec.output, spec.layer_sizes[-1], X.shape[0])
    check_fits_dtype("Y", Y, net.dtype)
    check_options(o.validation_data, o.shuffle, o.callbacks, o.progress)
    b = resolve_batch_size(o.batch_size, X.shape[0])
    epochs = check_int("epochs", o.epochs, 1)
    l2 = check_float("l2", o.l2, 0.0)
    keep_prob = check_float("keep_prob", o.keep_prob, 0.0, 1.0, low_open=True)
    if o.l2_normalization not in L2_NORMALIZATIONS:
        raise ValueError(
            f"l2_normalization must be one of {list(L2_NORMALIZATIONS)}, got {o.l2_normalization!r}"
        )
    if o.on_divergence not in ("raise", "stop"):
        raise ValueError(f"on_divergence must be 'raise' or 'stop', got {o.on_divergence!r}")
    optimizer, by_name = o.optimizer, isinstance(o.optimizer, str)
    if by_name:
        optimizer = optimizers.get(optimizer, o.learning_rate)
    elif not isinstance(optimizer, optimizers.Optimizer):
        raise TypeError(f"optimizer must be a name or an Optimizer, got {optimizer!r}")
    # A per-epoch schedule counts updates from here on: every epoch has the same batches.
    optimizer = optimizers.bind_epochs(optimizer, n_batches(X.shape[0], b))
    order = None
    if o.order is not None:
        order = EpochOrder(o.order, X.shape[0], epochs)  # checked by the loop, knowing
        # the first epoch (continued training counts on)
    check_early_stopping(
        o.early_stopping, o.patience, o.monitor, o.min_delta, o.validation_data is not None
    )
    check_checkpoint_every(o.checkpoint, o.checkpoint_every)
    check_training_memory(net, b)
    val = None
    if o.validation_data is not None:
        Xv, Yv = o.validation_data
        Xv = as_2d_float("validation_data[0]", Xv, spec.layer_sizes[0], dtype=net.dtype)
        Yv = check_targets("validation_data[1]", Yv, spec.output, spec.layer_sizes[-1], len(Xv))
        check_fits_dtype("validation_data[1]", Yv, net.dtype)
        val = (Xv, Yv)
    return FitArguments(X, Y, b, epochs, l2, keep_prob, optimizer, by_name, val, order)


def check_checkpoint_every(checkpoint, every) -> None:
    """``checkpoint_every`` is None or an int >= 1, with or without a checkpoint path
    (without one it has nothing to do, but a wrong value is still a mistake)."""
    if every is not None:
        check_int("checkpoint_every", every, 1)


def check_training_memory(net, batch_size: int) -> None:
    """ValueError before training a network whose working set cannot fit in memory: the
    parameters, their gradient and two optimizer slots, and three activations of a
    mini-batch per layer (a lower bound: the engines need about this much)."""
    itemsize = np.dtype(net.dtype).itemsize
    widths = sum(net.spec.layer_sizes[1:])
    need = itemsize * (4 * net.n_params + 3 * batch_size * widths)
    check_allocation(
        f"training layer_sizes {list(net.spec.layer_sizes)} with batches of {batch_size} rows",
        need,
    )


def check_options(validation_data, shuffle, callbacks, progress) -> None:
    """Type checks of fit's remaining options (a wrong type would fail late and obscurely)."""
    if validation_data is not None and (
        not isinstance(validation_data, tuple | list) or len(validation_data) != 2
    ):
        raise TypeError(
            f"validation_data must be a pair (X_val, Y_val) or None, got "
            f"{type(validation_data).__name__}"
            + (
                f" of length {len(validation_data)}"
                if isinstance(validation_data, tuple | list)
                else ""
            )
        )
    for name, value in (("shuffle", shuffle), ("progress", progress)):
        if not (isinstance(value, bool | np.bool_) or (name == "progress" and value is None)):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    if not isinstance(callbacks, list | tuple) or not all(callable(c) for c in callbacks):
        raise TypeError(f"callbacks must be a list of callables f(StepInfo), got {callbacks!r}")
