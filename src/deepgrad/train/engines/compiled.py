"""The compiled engine: a mini-batch's forward, loss and backward in one numba call.

For the small layers of the course's networks a step does almost no arithmetic; the
time of the NumPy engine goes to ~50 NumPy calls per step. Here the forward pass, the
loss and the backward pass are one compiled call (``engines.kernels``, cached on disk);
the L2 term, the optimizer's flat update (``FlatRule``), the finiteness check and its
undo are ``engines.step``'s (``FlatState``), so that math is written once. Dropout uses
the step's masks (``plan.masks``), as every engine; rows are gathered from memory or a
memory-mapped file. Without numba ``why_not`` says so and ``fit`` never picks it.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from deepgrad.core import activations
from deepgrad.core.layout import Layout
from deepgrad.train.engines.base import Engine
from deepgrad.train.engines.step import FlatState, NumpyOps, full_gradient

__all__ = ["Compiled", "MAX_WEIGHTS", "numba_available"]

# Provisional size rule (a smoke run on a busy machine): the compiled loops beat the
# NumPy engine while per-step Python dominates, i.e. for small layers.
MAX_WEIGHTS = 4096


def numba_available() -> bool:
    """Whether numba can be imported (the ``demo`` extra installs it)."""
    try:
        return importlib.util.find_spec("numba") is not None
    except (ImportError, ValueError):
        return False


def _kernels():
    from deepgrad.train.engines import kernels

    return kernels


class Compiled(Engine):
    name = "compiled"
    summary = "numba: forward, loss and backward of a step in one compiled call (small layers)"

    @classmethod
    def why_not(cls, plan, params, opt_state):
        if not numba_available():
            return "it needs numba (pip install numba, or deepgrad[demo])"
        if not all(type(p) is np.ndarray for p in params.values()):
            return "it needs NumPy parameters"
        if not isinstance(plan.X, np.ndarray) or not isinstance(plan.Y, np.ndarray):
            return "it needs NumPy (or memory-mapped) data"
        if plan.optimizer.flat is None:
            return f"it runs the built-in optimizers only, not {plan.optimizer.name!r}"
        spec, k = plan.spec, _kernels()
        if spec.hidden_activation not in k.HIDDEN or spec.output not in k.OUTPUT:
            return f"it has no kernel for {spec.hidden_activation!r} / {spec.output!r}"
        sizes = spec.layer_sizes
        weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        if weights > MAX_WEIGHTS:
            return f"its loops are for small layers (<= {MAX_WEIGHTS} weights, not {weights})"
        return None

    def __init__(self, plan, params: dict, opt_state):
        super().__init__(plan, params, opt_state)
        self.k = _kernels()
        if self.k.LEAKY_SLOPE != activations.LEAKY_SLOPE:
            raise AssertionError("kernels.LEAKY_SLOPE differs from core.activations'")
        sizes = plan.spec.layer_sizes
        self.dtype = np.asarray(params["W1"]).dtype
        self.ops = NumpyOps(self.dtype)
        self.layout = layout = Layout(sizes)
        self.flat = FlatState(plan, self.ops, layout, params, opt_state)
        self.grad = self.ops.zeros(layout.size)
        self.sizes = np.asarray(sizes, np.int64)
        blocks = [n * (m + 1) for m, n in zip(sizes[:-1], sizes[1:], strict=True)]
        self.offs = np.concatenate([[0], np.cumsum(blocks)[:-1]]).astype(np.int64)
        self.codes = (self.k.HIDDEN[plan.spec.hidden_activation], self.k.OUTPUT[plan.spec.output])
        self.no_masks = np.empty(0, self.dtype)

    def _gather(self, rows):
        plan = self.plan
        Xb = np.ascontiguousarray(np.take(plan.X, rows, axis=0), dtype=self.dtype)
        if plan.check_batches and not np.isfinite(Xb).all():
            raise ValueError(f"X contains NaN or inf in rows {rows[~np.isfinite(Xb).all(1)][:5]}")
        return Xb, np.ascontiguousarray(np.take(plan.Y, rows, axis=0), dtype=self.dtype)

    def _masks(self, step):
        masks = self.plan.masks(step)
        if masks is None:
            return self.no_masks, np.zeros(1, np.int64)
        offs = np.concatenate([[0], np.cumsum([mk.size for mk in masks])]).astype(np.int64)
        return np.concatenate([np.ravel(mk) for mk in masks]).astype(self.dtype), offs

    def run(self, steps, record):
        flat, fb = self.flat, self.k.forward_backward
        hid, out = self.codes
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for step in steps:
                Xb, Yb = self._gather(step.rows)
                masks, moffs = self._masks(step)
                r = len(step.rows)
                loss = fb(
                    Xb,
                    Yb,
                    flat.theta,
                    self.grad,
                    self.sizes,
                    self.offs,
                    hid,
                    out,
                    activations.LEAKY_SLOPE,
                    masks,
                    moffs,
                    float(r),
                )
                job = flat.job(step, [(0, r)])
                full_gradient(self.ops, [self.grad], job, flat.theta, flat.G, flat.work[0])
                bad = flat.apply(flat.cost(float(loss), r), job, record)
                if bad:
                    return bad
        return ""

    def state(self):
        return self.flat.state()

    def gradients(self):
        return self.flat.gradients()
