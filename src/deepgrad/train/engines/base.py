"""The engine interface: what the training loop asks of an engine, and nothing more.

An engine is set up once per fit with the plan, the starting parameters and optimizer
state, and then runs the steps it is given. It owns the numbers; the loop owns epochs,
order, history, divergence wording, callbacks, validation and checkpoints.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import ClassVar

import numpy as np

from deepgrad.core.backend import namespace, scalar
from deepgrad.train.types import Plan, Step

__all__ = ["Engine", "Record"]

Record = Callable[[float, int], None]  # record(J, rows) after each step that is kept


class Engine:
    """Base class of the training engines (see ``deepgrad.train.engines``)."""

    name: ClassVar[str] = "engine"
    summary: ClassVar[str] = ""

    @classmethod
    def why_not(cls, plan: Plan, params: dict, opt_state) -> str | None:
        """None if this engine can run ``plan`` exactly, else what it lacks."""
        raise NotImplementedError

    @classmethod
    def fast_for(cls, plan: Plan) -> bool:
        """Whether ``fit`` should pick it for ``plan`` when it can run it (the engines
        are in order of speed; one may be fast only for some sizes)."""
        return True

    def __init__(self, plan: Plan, params: dict, opt_state):
        self.plan = plan

    def run(self, steps: Sequence[Step], record: Record) -> str:
        """Run ``steps`` in order, calling ``record(J, rows)`` after each step kept.

        Returns '' when all ran, else what was not finite at the first step that was
        dropped (its update is not kept: the state stays at the step before).
        """
        raise NotImplementedError

    def span_why_not(self) -> str | None:
        """None if ``run_span`` can run this plan's steps, drawing their order itself
        (the loop's order, bit for bit), else why not."""
        return "it runs the steps it is given"

    def run_span(self, epoch: int, start: int, n: int) -> tuple[np.ndarray, str]:
        """Run n steps from batch ``start`` of ``epoch`` on (into the next epochs too):
        (the costs of the steps kept, '' or what was not finite at the first dropped)."""
        raise NotImplementedError

    def state(self) -> tuple[dict, object]:
        """(parameters, optimizer state) after the last step kept, as the caller's arrays,
        never to change under the caller."""
        raise NotImplementedError

    def gradients(self) -> dict:
        """dJ/dtheta of the last step kept, L2 term included (for callbacks)."""
        raise NotImplementedError

    def close(self) -> None:
        """Release threads and buffers (the loop calls it once, also after an error)."""


def not_finite(J: float, grads_finite: Callable[[], bool]) -> str:
    """What is not finite after a step: the cost, a gradient or the updated parameters.

    Called only when the updated parameters are not all finite, or the cost is not."""
    if not math.isfinite(J):
        return f"the cost is {J}"
    if not grads_finite():
        return "a gradient is not finite"
    return "the updated parameters are not finite"


def sum_is_finite(arrays) -> bool:
    """All entries of these arrays (any backend) finite, by one sum each: NaN and inf
    propagate into a sum (one that overflows needs entries near the dtype's largest
    value: diverged as well). About half the time of isfinite + all."""
    arrays = list(arrays)
    with np.errstate(over="ignore", invalid="ignore"):
        if all(isinstance(a, np.ndarray) for a in arrays):
            return math.isfinite(sum(float(a.sum()) for a in arrays))
        xp = namespace(*arrays)
        return math.isfinite(sum(scalar(xp.sum(a)) for a in arrays))
