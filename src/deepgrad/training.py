"""Training: step -> epoch -> fit. The code lives in ``deepgrad.train``; this module keeps
the names it has always had.

``train_step`` is one forward, cost, backward and optimizer update on one mini-batch;
``fit`` validates the inputs, loops over epochs and records a ``History``.
"""

from __future__ import annotations

from . import network as nw
from .train.arguments import L2_NORMALIZATIONS, FitArguments, check_fit_arguments
from .train.loop import evaluate, fit
from .train.types import DivergenceError, History, StepInfo, divergence_message

__all__ = [
    "History",
    "StepInfo",
    "DivergenceError",
    "train_step",
    "fit",
    "divergence_message",
    "check_fit_arguments",
    "FitArguments",
    "L2_NORMALIZATIONS",
    "evaluate",
]


def train_step(params, opt_state, Xb, Yb, spec, optimizer, l2=0.0, m_reg=None, masks=None):
    """One step of (mini-)batch gradient descent: returns (J, grads, params, opt_state)."""
    J, grads = nw.cost_and_gradients(params, Xb, Yb, spec, l2, m_reg, masks)
    new_params, opt_state = optimizer.update(grads, opt_state, params)
    return J, grads, new_params, opt_state
