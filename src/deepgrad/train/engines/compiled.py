"""The compiled engine: whole training steps in numba, many per call.

For the small layers of the course's networks a step does almost no arithmetic; the
time of the NumPy engine goes to ~50 NumPy calls per step. Here a step (rows, dropout
masks, forward, loss, backward, the L2 term, the optimizer's update and its undo when
not finite) is one loop of ``engines.kernels.train_steps``, cached on disk. The loop
asks for a span of many steps at once (``run_span``: the kernel draws the epoch order
itself, bit for bit ``data.arrays.epoch_permutation``) when nothing needs to look
between them, and for one step at a time otherwise (``run``: callbacks, a user's order,
memory-mapped data). The per-step scalars come from ``FlatRule.scalars``
(``optimizers.scalars_table``). Without numba ``why_not`` says so and ``fit`` never
picks it.
"""

from __future__ import annotations

import importlib.util

import numpy as np

from deepgrad.core import activations, dropout
from deepgrad.core.layout import Layout
from deepgrad.optim.optimizers import scalars_table
from deepgrad.train.engines.base import Engine, not_finite
from deepgrad.train.engines.step import FlatState, NumpyOps

__all__ = ["Compiled", "FASTER_BELOW", "numba_available"]

# ``fit`` picks the compiled engine while a step's multiply-adds (batch rows x weights)
# stay below this: its loops beat numpy-shards' BLAS calls there (the crossover,
# measured by bench/compiled_crossover.py, is in docs/training.md).
FASTER_BELOW = 50_000


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
    summary = "numba: whole steps in compiled loops, many per call (small layers)"

    @classmethod
    def why_not(cls, plan, params, opt_state):
        if not numba_available():
            return "it needs numba (pip install numba, or deepgrad[demo])"
        if not all(type(p) is np.ndarray for p in params.values()):
            return "it needs NumPy parameters"
        if not isinstance(plan.X, np.ndarray) or not isinstance(plan.Y, np.ndarray):
            return "it needs NumPy (or memory-mapped) data"
        rule = plan.optimizer.flat
        if rule is None or not rule.kind:
            return f"it runs the built-in optimizers only, not {plan.optimizer.name!r}"
        try:
            k = _kernels()
        except ImportError as exc:  # installed, but not for this NumPy or Python
            return f"numba does not import here ({exc})"
        spec = plan.spec
        if spec.hidden_activation not in k.HIDDEN or spec.output not in k.OUTPUT:
            return f"it has no kernel for {spec.hidden_activation!r} / {spec.output!r}"
        return None

    @classmethod
    def fast_for(cls, plan) -> bool:
        """Whether its loops beat the NumPy engine's BLAS here: small steps only."""
        sizes = plan.spec.layer_sizes
        weights = sum(a * b for a, b in zip(sizes[:-1], sizes[1:], strict=True))
        return min(plan.batch_size, plan.m) * weights < FASTER_BELOW

    def __init__(self, plan, params: dict, opt_state):
        super().__init__(plan, params, opt_state)
        k = self.k = _kernels()
        if k.LEAKY_SLOPE != activations.LEAKY_SLOPE:
            raise AssertionError("kernels.LEAKY_SLOPE differs from core.activations'")
        sizes = plan.spec.layer_sizes
        dtype = self.dtype = np.asarray(params["W1"]).dtype
        self.layout = layout = Layout(sizes)
        self.flat = flat = FlatState(plan, NumpyOps(dtype), layout, params, opt_state)
        none = np.empty(0, dtype)
        self.s0, self.s1 = (*flat.slots, none, none)[:2]
        self.sizes = np.asarray(sizes, np.int64)
        self.offs = np.asarray(layout.starts, np.int64)  # where each [W | b] block starts
        name, hyper = plan.optimizer.flat.kind
        self.codes = (k.HIDDEN[plan.spec.hidden_activation], k.OUTPUT[plan.spec.output],
                      k.RULES[name])  # fmt: skip
        with np.errstate(over="ignore"):
            self.hyper = np.asarray(hyper, dtype)
        self.X = np.asarray(plan.X)  # a memory map's pages, as a plain array
        self.order = (plan.m, plan.batch_size, plan.shuffle, plan.check_batches)
        self.reg = (float(plan.l2), 0 if plan.m_reg is None else int(plan.m_reg))
        keep = plan.keep_prob < 1
        with np.errstate(over="ignore"):  # 1 / keep_prob past float32: no unit is kept then
            scale = np.asarray([1.0 / plan.keep_prob if keep else 1.0], dtype)
        self.dropout = (dropout.keep_threshold(plan.keep_prob) if keep else -1, scale)
        self.no_rows = np.empty(0, np.int64)

    def span_why_not(self) -> str | None:
        """None if ``run_span`` can draw this plan's order itself, else why not."""
        plan = self.plan
        if plan.order is not None:
            return "the order is the user's"
        if isinstance(plan.X, np.memmap):
            return "memory-mapped data is read in a block shuffle"
        if plan.m >= 2**32:
            return "it draws orders of fewer than 2^32 rows"
        return None

    def _steps(self, given, where, n):
        """(costs of the steps kept, '' or what was not finite at the next one)."""
        flat = self.flat
        if n == 0:  # a fit resumed at the end of an epoch
            return np.empty(0), ""
        with np.errstate(over="ignore"):  # a float32 rate past its range: inf, as NumPy's
            scalars = np.asarray(scalars_table(flat.rule, flat.count, n), self.dtype)
        costs = np.empty(n)
        done, stop = self.k.train_steps(
            self.X, self.plan.Y, flat.theta, self.s0, self.s1, flat.G, self.sizes, self.offs,
            self.codes, given, where, self.order, self.reg, self.dropout,
            (self.hyper, scalars), costs,
        )  # fmt: skip
        flat.count += done
        if stop == self.k.STOPS["data"]:  # only memory maps are checked: one step a call
            bad = given[~np.isfinite(self.X[given]).all(1)][:5]
            raise ValueError(f"X contains NaN or inf in rows {bad}")
        gradient = self.k.STOPS["gradient"]
        bad = not_finite(float(costs[done]), lambda: stop != gradient) if stop else ""
        return costs[:done], bad

    def run(self, steps, record):
        seed = self.plan.seed
        for step in steps:
            rows = np.ascontiguousarray(step.rows, np.int64)
            costs, bad = self._steps(rows, (step.epoch, step.index, seed), 1)
            if bad:
                return bad
            record(float(costs[0]), len(rows))
        return ""

    def run_span(self, epoch: int, start: int, n: int):
        """Run n steps from batch ``start`` of ``epoch`` on, in the loop's order (and on
        into the next epochs); (their costs, '' or what was not finite at the next)."""
        return self._steps(self.no_rows, (epoch, start, self.plan.seed), n)

    def state(self):
        return self.flat.state()

    def gradients(self):
        return self.flat.gradients()
