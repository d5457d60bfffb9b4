"""Optimizers as pure ``(init, update)`` pairs, in the style of optax.

``state = opt.init(params)``; ``new_params, new_state = opt.update(grads, state, params)``.
Nothing is mutated: the state is an immutable NamedTuple and a new params dict is
returned, so a training loop can keep, compare or checkpoint any of them.

The learning rate may be a float or a schedule ``step -> float`` (step counts updates
from 0); see ``constant``, ``inverse_time_decay``, ``exponential_decay``, ``step_decay``.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any, NamedTuple

from ._checks import check_float, check_int

__all__ = [
    "Optimizer",
    "GDState",
    "gd",
    "constant",
    "inverse_time_decay",
    "exponential_decay",
    "step_decay",
    "get",
    "OPTIMIZERS",
]

Schedule = Callable[[int], float]


class Optimizer(NamedTuple):
    """A pure optimizer: ``init(params) -> state``, ``update(grads, state, params)``."""

    name: str
    init: Callable[[dict], Any]
    update: Callable[[dict, Any, dict], tuple[dict, Any]]


class GDState(NamedTuple):
    count: int  # updates done so far (the schedule's step)


def _as_schedule(learning_rate: float | Schedule) -> Schedule:
    if callable(learning_rate):
        return learning_rate
    lr = check_float("learning_rate", learning_rate, 0.0, low_open=True)
    return constant(lr)


def constant(learning_rate: float) -> Schedule:
    """alpha_t = alpha."""
    lr = check_float("learning_rate", learning_rate, 0.0, low_open=True)
    return lambda step: lr


def inverse_time_decay(learning_rate: float, decay_rate: float, decay_steps: int = 1) -> Schedule:
    """alpha_t = alpha / (1 + decay_rate * t / decay_steps) (the course's 1/(1 + k t))."""
    lr = check_float("learning_rate", learning_rate, 0.0, low_open=True)
    k = check_float("decay_rate", decay_rate, 0.0)
    s = check_int("decay_steps", decay_steps, 1)
    return lambda step: lr / (1.0 + k * step / s)


def exponential_decay(learning_rate: float, decay_rate: float, decay_steps: int = 1) -> Schedule:
    """alpha_t = alpha * decay_rate ** (t / decay_steps), decay_rate in (0, 1]."""
    lr = check_float("learning_rate", learning_rate, 0.0, low_open=True)
    r = check_float("decay_rate", decay_rate, 0.0, 1.0, low_open=True)
    s = check_int("decay_steps", decay_steps, 1)
    return lambda step: lr * r ** (step / s)


def step_decay(learning_rate: float, factor: float, every: int) -> Schedule:
    """alpha_t = alpha * factor ** floor(t / every): drop by ``factor`` every ``every`` steps."""
    lr = check_float("learning_rate", learning_rate, 0.0, low_open=True)
    f = check_float("factor", factor, 0.0, 1.0, low_open=True)
    e = check_int("every", every, 1)
    return lambda step: lr * f ** math.floor(step / e)


def gd(learning_rate: float | Schedule = 0.1) -> Optimizer:
    """Plain gradient descent, the seed's update: theta := theta - alpha * d_theta."""
    schedule = _as_schedule(learning_rate)

    def init(params: dict) -> GDState:
        return GDState(0)

    def update(grads: dict, state: GDState, params: dict):
        lr = schedule(state.count)
        return {k: params[k] - lr * grads[k] for k in params}, GDState(state.count + 1)

    return Optimizer("gd", init, update)


OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {"gd": gd, "sgd": gd}


def get(name: str, learning_rate: float | Schedule, **kwargs) -> Optimizer:
    """Build an optimizer by name (``OPTIMIZERS`` lists them)."""
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name](learning_rate, **kwargs)
