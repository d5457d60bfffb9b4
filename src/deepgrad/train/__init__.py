"""Training: one loop (``loop.fit``), many engines (``engines``).

- ``types``: History, StepInfo, DivergenceError, the Plan every engine runs;
- ``arguments``: every check of fit's arguments;
- ``loop``: epochs, order, history, divergence, validation, checkpoints, callbacks;
- ``checkpoint``: the checkpoint file and resume;
- ``engines``: reference (any backend), numpy-shards (fast NumPy), ...;
- ``mpi``: the same loop on every rank of an MPI job, gradients all-reduced.
"""

from .loop import fit
from .types import DivergenceError, History, Plan, Step, StepInfo

__all__ = ["fit", "History", "StepInfo", "DivergenceError", "Plan", "Step"]
