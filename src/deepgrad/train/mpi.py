"""Data-parallel training over MPI: the training loop on every rank, gradients all-reduced.

Every rank runs ``loop.run_fit`` with a ``Ranks`` group, so epochs, the epoch order (the
block shuffle of memory-mapped data included), history, divergence, validation,
checkpoints and callbacks are the single-process ones. The engine, ``AllReduce``, runs
the fast engines' one step (``engines.step``, as numpy-shards does): each rank computes
its rows of the global mini-batch (``distributed.shard_bounds``) as one shard, whose
gradient is already its share of the batch mean; one ``Allreduce`` of one flat buffer
[gradient | loss] sums them, and every rank applies the same update: the flat rule of a
built-in optimizer, or any other optimizer's own ``update`` on dicts. With one rank the
numbers are numpy-shards' wherever that runs the batch as one shard. Dropout masks are the
single-process ones, each rank drawing its own rows (``dropout.step_masks``). See
``deepgrad.train.distributed`` for launching, consistency checks and failure handling.
"""

from __future__ import annotations

import math

import numpy as np

from deepgrad.core.layout import Layout
from deepgrad.train import distributed as mpi
from deepgrad.train.engines.base import Engine, not_finite, sum_is_finite
from deepgrad.train.engines.step import (
    Buffers,
    FlatState,
    Kernels,
    NumpyOps,
    full_gradient,
    shard_step,
)
from deepgrad.train.loop import run_fit
from deepgrad.train.options import FitOptions
from deepgrad.train.types import Plan

__all__ = ["fit_distributed", "Ranks", "AllReduce"]


class AllReduce(Engine):
    name = "mpi"
    summary = "every rank the one step on its rows of each batch, one Allreduce per step"

    @classmethod
    def why_not(cls, plan, params, opt_state):
        if not all(type(p) is np.ndarray for p in params.values()):
            return "distributed=True needs NumPy parameters (MPI sends host memory)"
        if not isinstance(plan.X, np.ndarray) or not isinstance(plan.Y, np.ndarray):
            return "distributed=True needs NumPy (or memory-mapped) data"
        return None

    def __init__(self, plan: Plan, params: dict, opt_state, comm):
        from mpi4py import MPI  # started by the launcher before any rank gets here

        super().__init__(plan, params, opt_state)
        self.in_place, self.sum = MPI.IN_PLACE, MPI.SUM
        self.comm, self.size, self.rank = comm, comm.Get_size(), comm.Get_rank()
        self.timeout = mpi.collective_timeout()
        self.ops = ops = NumpyOps(params["W1"].dtype)
        self.layout = layout = Layout(plan.spec.layer_sizes)
        self.kernels = Kernels.of(plan, ops)
        rows = -(-plan.batch_size // self.size)  # the largest share of a batch
        self.buffers = sh = Buffers(self.kernels, layout, rows)
        self.buf = np.empty(layout.size + 1, ops.dtype)  # [gradient sum | loss sum]
        sh.grad[0] = self.buf[:-1]  # the step writes this rank's gradient into the buffer
        sh.grad_views[0] = layout.views(sh.grad[0])
        self.custom = plan.optimizer.flat is None  # any optimizer: its own dict update
        self.params, self.opt_state = params, opt_state
        self.flat = FlatState(plan, ops, layout, params, opt_state)

    def _gradient(self, step):
        """flat.G and the mean loss of the global batch: this rank's rows, one Allreduce."""
        flat, sh, n = self.flat, self.buffers, len(step.rows)
        job = flat.job(step, [mpi.shard_bounds(n, self.size, self.rank)])
        shard_step(self.kernels, job, sh, 0, flat.views)
        self.buf[-1] = sh.loss[0]
        if self.timeout is None:
            self.comm.Allreduce(self.in_place, self.buf, op=self.sum)
        else:  # a rank that stops answering ends the job instead of hanging it
            request = self.comm.Iallreduce(self.in_place, self.buf, op=self.sum)
            mpi.wait_or_abort(self.comm, request, "gradient Allreduce", self.timeout)
        full_gradient(self.ops, [self.buf[:-1]], job, flat.theta, flat.G, flat.work[0])
        return job, flat.cost(float(self.buf[-1]), n)

    def run(self, steps, record):
        for step in steps:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                job, J = self._gradient(step)
                # global values: every rank decides the same
                update = self._custom_update if self.custom else self.flat.apply
                bad = update(J, job, record)
            if bad:
                return bad
        return ""

    def _custom_update(self, J: float, job, record) -> str:
        """An optimizer without a flat rule: its ``update`` on dicts of arrays."""
        flat = self.flat
        grads = flat.layout.unpack(flat.G)
        new, state = self.plan.optimizer.update(grads, self.opt_state, self.params)
        if not (math.isfinite(J) and sum_is_finite(new.values())):
            return not_finite(J, lambda: sum_is_finite(grads.values()))
        self.params, self.opt_state = new, state
        flat.layout.pack_into(flat.theta, new)
        record(J, len(job.step.rows))
        return ""

    def state(self):
        return (self.params, self.opt_state) if self.custom else self.flat.state()

    def gradients(self):
        return self.flat.gradients()


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
