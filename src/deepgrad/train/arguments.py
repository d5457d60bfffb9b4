"""Every check ``fit`` makes of its arguments, before anything runs."""

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
from deepgrad.optim import optimizers

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


def check_fit_arguments(
    net,
    X,
    Y,
    batch_size,
    epochs,
    learning_rate,
    l2,
    l2_normalization,
    optimizer,
    keep_prob,
    validation_data,
    on_divergence,
    shuffle,
    callbacks,
    progress,
) -> FitArguments:
    """Every check ``fit`` makes of its arguments, shared with distributed training."""
    spec = net.spec
    if isinstance(X, np.memmap):  # checked batch by batch while training
        X = as_2d_float("X", X, spec.layer_sizes[0], check_finite=False)
    else:
        X = as_2d_float("X", X, spec.layer_sizes[0], dtype=net.dtype)
    Y = check_targets("Y", Y, spec.output, spec.layer_sizes[-1], X.shape[0])
    check_fits_dtype("Y", Y, net.dtype)
    check_options(validation_data, shuffle, callbacks, progress)
    b = resolve_batch_size(batch_size, X.shape[0])
    epochs = check_int("epochs", epochs, 1)
    l2 = check_float("l2", l2, 0.0)
    keep_prob = check_float("keep_prob", keep_prob, 0.0, 1.0, low_open=True)
    if l2_normalization not in L2_NORMALIZATIONS:
        raise ValueError(
            f"l2_normalization must be one of {list(L2_NORMALIZATIONS)}, got {l2_normalization!r}"
        )
    if on_divergence not in ("raise", "stop"):
        raise ValueError(f"on_divergence must be 'raise' or 'stop', got {on_divergence!r}")
    by_name = isinstance(optimizer, str)
    if by_name:
        optimizer = optimizers.get(optimizer, learning_rate)
    elif not isinstance(optimizer, optimizers.Optimizer):
        raise TypeError(f"optimizer must be a name or an Optimizer, got {optimizer!r}")
    val = None
    if validation_data is not None:
        Xv = as_2d_float(
            "validation_data[0]", validation_data[0], spec.layer_sizes[0], dtype=net.dtype
        )
        Yv = check_targets(
            "validation_data[1]", validation_data[1], spec.output, spec.layer_sizes[-1], Xv.shape[0]
        )
        check_fits_dtype("validation_data[1]", Yv, net.dtype)
        val = (Xv, Yv)
    return FitArguments(X, Y, b, epochs, l2, keep_prob, optimizer, by_name, val)


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
