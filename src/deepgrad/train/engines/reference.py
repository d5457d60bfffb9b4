"""The reference engine: the seed's formulas as written, on any array backend.

Each step is ``network.cost_and_gradients`` on the gathered mini-batch, then the
optimizer's own ``update`` on dicts of arrays. It runs every configuration (any array
API backend: NumPy, torch on any device, array_api_strict; any optimizer, custom ones
included), and every other engine is tested against it.
"""

from __future__ import annotations

import math

import numpy as np

from deepgrad.core import network as nw
from deepgrad.core.backend import namespace, scalar
from deepgrad.devices import torch_backend as tb
from deepgrad.train.engines.base import Engine, not_finite, sum_is_finite
from deepgrad.train.types import Plan, Step

__all__ = ["Reference", "gather", "train_step"]


def gather(plan: Plan, rows, xp):
    """(X rows, encoded Y rows) of a mini-batch, as arrays of ``xp`` (Y's device)."""
    if tb.backend_of(plan.Y) == "torch":
        return tb.gather_batch(plan.X, plan.Y, rows, plan.dtype, plan.check_batches)
    Xb = plan.X[rows]
    if plan.check_batches and not np.all(np.isfinite(Xb)):
        raise ValueError(f"X contains NaN or inf in rows {rows[~np.isfinite(Xb).all(1)][:5]}")
    Xb, Yb = np.asarray(Xb, dtype=plan.dtype), plan.Y[rows]
    if xp is not namespace(Xb):
        Xb, Yb = xp.asarray(Xb), xp.asarray(Yb)
    return Xb, Yb


class Reference(Engine):
    name = "reference"
    summary = "the formulas as written, any backend and optimizer (the tested reference)"

    @classmethod
    def why_not(cls, plan, params, opt_state):
        return None

    def __init__(self, plan: Plan, params: dict, opt_state):
        super().__init__(plan, params, opt_state)
        self.params, self.opt_state, self.grads = params, opt_state, None
        self.xp = namespace(params["W1"])
        self.device = tb.device_of(params["W1"])

    def _masks(self, step: Step):
        masks = self.plan.masks(step)
        if masks is None or self.xp is np:
            return masks
        if self.device is None:
            return [self.xp.asarray(mk) for mk in masks]
        return [self.xp.asarray(mk, device=self.device) for mk in masks]

    def run(self, steps, record):
        plan = self.plan
        for step in steps:
            Xb, Yb = gather(plan, step.rows, self.xp)
            masks = self._masks(step)
            n = len(step.rows)
            # Overflow is reported as divergence below, not as a NumPy warning.
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                J, grads = nw.cost_and_gradients(
                    self.params, Xb, Yb, plan.spec, plan.l2, plan.m_reg, masks
                )
                new, state = plan.optimizer.update(grads, self.opt_state, self.params)
            J = scalar(J)
            if not (math.isfinite(J) and sum_is_finite(new.values())):
                return not_finite(J, lambda g=grads: sum_is_finite(g.values()))
            self.params, self.opt_state, self.grads = new, state, grads
            record(J, n)
        return ""

    def state(self):
        return self.params, self.opt_state

    def gradients(self):
        return self.grads


def train_step(params, opt_state, Xb, Yb, spec, optimizer, l2=0.0, m_reg=None, masks=None):
    """One step of (mini-)batch gradient descent, the reference way: one forward, cost,
    backward and optimizer update on one mini-batch. Returns (J, grads, params, opt_state)."""
    J, grads = nw.cost_and_gradients(params, Xb, Yb, spec, l2, m_reg, masks)
    new_params, opt_state = optimizer.update(grads, opt_state, params)
    return J, grads, new_params, opt_state
