"""What every part of training shares: the History a fit returns, the StepInfo its
callbacks get, the Plan (the fixed inputs of one fit) every engine runs, and the one
wording of a divergence."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from deepgrad.core import dropout
from deepgrad.core import network as nw
from deepgrad.optim.optimizers import Optimizer

__all__ = [
    "DivergenceWarning",
    "cost_rise",
    "cost_rise_message",
    "TrainingState",
    "History",
    "StepInfo",
    "DivergenceError",
    "Plan",
    "Step",
    "divergence_message",
]


class DivergenceError(FloatingPointError):
    """The cost or a gradient became NaN or inf during training."""


class DivergenceWarning(UserWarning):
    """The cost rose by orders of magnitude during training but stayed finite."""


def cost_rise(iteration_cost, factor: float = 100.0) -> tuple[float, float, float] | None:
    """(first, peak, last) cost when the cost rose above ``factor`` times its first value
    at some point (a learning rate too large: units die, the net stalls), else None."""
    costs = np.asarray(iteration_cost, dtype=np.float64)
    if costs.size < 2 or not np.all(np.isfinite(costs)) or costs[0] <= 0:
        return None
    peak = float(costs.max())
    if peak <= factor * costs[0]:
        return None
    return float(costs[0]), peak, float(costs[-1])


def cost_rise_message(rise: tuple[float, float, float], learning_rate, name: str) -> str:
    """The one wording of a finite divergence (``cost_rise``), for fit and the CLI;
    ``name`` is how the user sets the rate ("learning_rate", "--lr")."""
    first, peak, last = rise
    fixed = isinstance(learning_rate, int | float) and not isinstance(learning_rate, bool)
    rate = f" {learning_rate:g}" if fixed else ""
    fix = f"lower {name} (e.g. {learning_rate / 10:g})" if fixed else f"lower {name}"
    return (
        f"the cost rose from {first:.3g} to {peak:.3g} (x{peak / first:.1e}) before "
        f"settling at {last:.3g}: the learning rate{rate} is too large and has likely "
        f"killed units; {fix}"
    )


@dataclass
class History:
    """What ``fit`` recorded.

    iteration_cost[t] is J^{t}, the cost of mini-batch t computed by the forward pass the
    step already did (with dropout, if any). epoch_cost[e] is the example-weighted mean of
    the mini-batch costs of epoch e. iteration_time[t] is seconds since fit started and
    iteration_examples[t] the examples seen so far, for cost-vs-time/examples plots.
    ``engine`` names the engine that ran the steps (see ``deepgrad.train.engines``);
    ``opt_state`` is the optimizer state after the last step kept, to go on training from
    (not saved in checkpoints, which keep their own copy).
    """

    batch_size: int
    seed: int
    iteration_cost: list[float] = field(default_factory=list)
    iteration_time: list[float] = field(default_factory=list)
    iteration_examples: list[int] = field(default_factory=list)
    epoch_cost: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)
    val_cost: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    stopped: str | None = None
    engine: str | None = None
    early_stopped: str | None = None  # the early-stopping line, when it stopped the fit
    best_epoch: int | None = None  # with early stopping: the epoch whose parameters are kept
    opt_state: Any = field(default=None, repr=False, compare=False)

    @property
    def iterations(self) -> int:
        return len(self.iteration_cost)

    def as_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "opt_state"}
        for k in ("early_stopped", "best_epoch"):  # only when early stopping ran
            if out[k] is None:
                del out[k]
        return out


class TrainingState(NamedTuple):
    """Where a network's training stands, kept on it (``Network.training``) after each fit.

    ``optimizer`` names the optimizer, ``opt_state`` is its state after the last update
    (``state.t`` updates, moments by name), ``epochs`` the epochs done. The next ``fit``
    with the same optimizer goes on from here, Keras-style: epoch numbers (and so the
    drawn order, dropout masks and per-epoch schedules) and the optimizer's moments and
    counter continue, so two fits equal one fit with the epochs added, bit for bit. A fit
    with another optimizer, or ``net.training = None``, starts afresh.
    """

    optimizer: str
    opt_state: Any
    epochs: int


class StepInfo(NamedTuple):
    """Passed to each callback after every step."""

    epoch: int
    iteration: int  # counted from 0 over the whole fit
    cost: float
    params: dict
    grads: dict


class Step(NamedTuple):
    """One mini-batch to train on: its epoch, its position in the epoch, its rows."""

    epoch: int
    index: int
    rows: np.ndarray  # sorted row indices into the training set


@dataclass(frozen=True)
class Plan:
    """The fixed inputs of one fit: data, targets and the settings of every step.

    ``Y`` holds the encoded (m, n^[L]) targets (on the parameters' device for torch);
    ``m_reg`` None means the seed's m = rows of the mini-batch in the L2 term.
    """

    X: Any
    Y: Any
    spec: nw.Spec
    optimizer: Optimizer
    batch_size: int
    l2: float = 0.0
    m_reg: int | None = None
    keep_prob: float = 1.0
    seed: int = 0
    shuffle: bool = True
    dtype: str = "float64"
    check_batches: bool = False
    order: Any = None  # data.EpochOrder: the user's batch order, or None (drawn from seed)

    @property
    def m(self) -> int:
        return int(self.X.shape[0])

    def reg(self, rows: int) -> float:
        """lambda / m_reg of a step on ``rows`` examples (0.0 without L2)."""
        return self.l2 / (rows if self.m_reg is None else self.m_reg)

    def masks(self, step: Step, part=None) -> list | None:
        """The step's dropout masks (NumPy, rows ``part`` of them), or None without."""
        if self.keep_prob >= 1:
            return None
        return dropout.step_masks(
            self.seed,
            step.epoch,
            step.index,
            len(step.rows),
            self.spec.hidden_sizes,
            self.keep_prob,
            self.dtype,
            part,
        )


def divergence_message(epoch: int, t: int, bad: str) -> str:
    """The one wording of a divergence, for every engine."""
    return (
        f"diverged at epoch {epoch + 1}, iteration {t + 1}: {bad}; the last finite "
        f"parameters (before this step) are kept; try a smaller learning rate"
    )
