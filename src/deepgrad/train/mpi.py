"""Data-parallel training over MPI: the training loop on every rank, gradients all-reduced.

Every rank runs ``loop.run_fit`` with a ``Ranks`` group, so epochs, the epoch order (the
block shuffle of memory-mapped data included), history, divergence, validation,
checkpoints and callbacks are the single-process ones. The engine, ``AllReduce``, wraps
the reference step: each rank computes the loss and gradient sums of its rows of the
global mini-batch (``distributed.shard_bounds``), one ``Allreduce`` of one flat buffer
sums them, and every rank applies the same optimizer update (any optimizer). Dropout
masks are the single-process ones, each rank drawing its own rows
(``dropout.step_masks``). See ``deepgrad.train.distributed`` for launching, consistency
checks and failure handling.
"""

from __future__ import annotations

import math

import numpy as np

from deepgrad.core import network as nw
from deepgrad.core.backend import is_numpy
from deepgrad.train import distributed as mpi
from deepgrad.train.engines.base import Engine, not_finite, sum_is_finite
from deepgrad.train.engines.reference import gather
from deepgrad.train.loop import run_fit
from deepgrad.train.options import FitOptions
from deepgrad.train.types import Plan

__all__ = ["fit_distributed", "Ranks", "AllReduce"]


class AllReduce(Engine):
    name = "mpi"
    summary = "every rank its rows of each batch, one Allreduce of all gradients per step"

    @classmethod
    def why_not(cls, plan, params, opt_state):
        if not all(is_numpy(p) for p in params.values()):
            return "distributed=True needs NumPy parameters (MPI sends host memory)"
        return None

    def __init__(self, plan: Plan, params: dict, opt_state, comm):
        super().__init__(plan, params, opt_state)
        self.comm, self.size, self.rank = comm, comm.Get_size(), comm.Get_rank()
        self.params, self.opt_state, self.grads = params, opt_state, None
        self.keys = list(params)
        ends = np.cumsum([params[k].size for k in self.keys]).tolist()
        self.spans = list(zip([0, *ends[:-1]], ends, strict=True))
        self.buf = np.empty(ends[-1] + 1, dtype=params["W1"].dtype)

    def _local(self, step) -> None:
        """buf = [sums over this rank's rows of the data-term gradients | their loss sum]."""
        n = len(step.rows)
        lo, hi = mpi.shard_bounds(n, self.size, self.rank)
        if hi == lo:  # a batch smaller than the number of ranks
            self.buf[:] = 0
            return
        Xl, Yl = gather(self.plan, step.rows[lo:hi], np)
        masks = self.plan.masks(step, (lo, hi))
        J, grads = nw.cost_and_gradients(self.params, Xl, Yl, self.plan.spec, 0.0, None, masks)
        for k, (a, b) in zip(self.keys, self.spans, strict=True):
            np.multiply(grads[k], hi - lo, out=self.buf[a:b].reshape(grads[k].shape))
        self.buf[-1] = float(J) * (hi - lo)

    def _step(self, step):
        from mpi4py import MPI

        plan, n = self.plan, len(step.rows)
        self._local(step)
        self.comm.Allreduce(MPI.IN_PLACE, self.buf, op=MPI.SUM)
        self.buf /= n
        reg, grads = plan.reg(n), {}
        for k, (a, b) in zip(self.keys, self.spans, strict=True):
            g = self.buf[a:b].reshape(self.params[k].shape)
            grads[k] = g + reg * self.params[k] if (reg and k.startswith("W")) else g.copy()
        m_reg = n if plan.m_reg is None else plan.m_reg
        J = float(self.buf[-1]) + float(nw.l2_penalty(self.params, plan.spec.L, plan.l2, m_reg))
        new, state = plan.optimizer.update(grads, self.opt_state, self.params)
        return J, grads, new, state

    def run(self, steps, record):
        for step in steps:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                J, grads, new, state = self._step(step)
            # global values: every rank decides the same
            if not (math.isfinite(J) and sum_is_finite(new.values())):
                return not_finite(J, lambda g=grads: sum_is_finite(g.values()))
            self.params, self.opt_state, self.grads = new, state, grads
            record(J, len(step.rows))
        return ""

    def state(self):
        return self.params, self.opt_state

    def gradients(self):
        return self.grads


class Ranks:
    """The ranks of ``comm`` as the training loop's group (see ``loop.Solo``)."""

    def __init__(self, comm):
        self.comm = comm
        self.root = comm.Get_rank() == 0

    def agree(self, fn, *args, **kwargs):
        return mpi.agree(self.comm, fn, *args, **kwargs)

    def bcast(self, value):
        return self.comm.bcast(value, root=0)

    def check_replicas(self, params, opt_state, epoch: int) -> None:
        mpi.check_replicas(self.comm, params, opt_state, epoch)

    def guard(self):
        return mpi.abort_on_error(self.comm)

    def engine(self, plan, params, opt_state, name):
        if name not in (None, AllReduce.name):
            raise ValueError(f"engine must be None or 'mpi' with distributed=True, got {name!r}")
        reason = AllReduce.why_not(plan, params, opt_state)
        if reason is not None:
            raise TypeError(reason)
        return AllReduce(plan, params, opt_state, self.comm)


def fit_distributed(net, X, Y, options: FitOptions | None = None, *, comm=None, **kwargs):
    """Train ``net`` in place on all ranks of ``comm`` (default COMM_WORLD).

    ``options`` (a ``FitOptions``, or its fields as keywords) are ``fit``'s (which calls
    this for ``distributed=True``), with the same result up to the order of summation; every rank
    must call it with the same arguments and data (each reads only its rows). Returns the
    History on every rank. Rank 0 alone shows progress, runs ``callbacks``, evaluates
    ``validation_data`` and reads and writes the checkpoint; what it read is broadcast.
    """
    comm = mpi.world() if comm is None else comm
    if options is None:
        options = mpi.agree(comm, FitOptions, **kwargs)
    elif kwargs:
        raise TypeError("give the options either as a FitOptions or as keywords, not both")
    return run_fit(net, X, Y, options, Ranks(comm))
