"""The NumPy row-shard engine: the one step (``engines.step``) on row shards and threads.

The formulas are those of ``network.forward/backward`` and of the optimizer's update
(``FlatRule``: the same arithmetic on one flat vector); only the rounding of the matrix
products differs (the bias is added inside them, and gradients are summed over row
shards), so the parameters agree with the reference engine to rounding (tests: 1e-12
relative in float64). What makes it faster (bench/train_throughput.py, docs/training.md):

- every matrix product writes into a preallocated array, and the bias is folded into
  them (``core.layout``); ReLU and its derivative run in place;
- the rows of a mini-batch are gathered straight into the first layer's input
  (``np.take(..., out=)``), from memory or a memory-mapped file;
- a mini-batch is cut into row shards, a pure function of the batch size and the layer
  sizes (``n_shards``), never of the machine, so results are the same everywhere; worker
  threads (NumPy and BLAS release the GIL, BLAS itself single-threaded) compute them at
  the same time. Each thread keeps its own copy of the parameters and optimizer state
  and applies the same update, so a step needs one barrier;
- everything is set up once per fit: buffers, threads and the BLAS thread limit;
- dropout masks are drawn by each shard for its own rows (``dropout.step_masks``).
"""

from __future__ import annotations

import os
import threading

import numpy as np

from deepgrad.core.layout import Layout
from deepgrad.train.engines.base import Engine
from deepgrad.train.engines.step import (
    Buffers,
    FlatState,
    Job,
    Kernels,
    NumpyOps,
    full_gradient,
    shard_step,
)
from deepgrad.train.engines.threads import blas_single_thread

__all__ = ["Shards", "n_shards", "shard_rows"]


# A shard's work must outweigh waking a thread and one barrier per step (~50-100 us on a
# VM). Measured (2 cores, examples/s, 1 vs 2 shards): T1 [100, 256, 128, 64, 1] at batch
# 128 (26 MFLOP a shard) 187k vs 168k, at 256 (51 MFLOP) 212k vs 223k, at 1000 (200
# MFLOP) 220k vs 352k.
MIN_SHARD_ROWS = 64
MIN_SHARD_FLOPS = 40e6
MAX_SHARDS = 2


def n_shards(batch_size: int, layer_sizes) -> int:
    """Row shards of a batch: >= 64 rows and >= MIN_SHARD_FLOPS of products each, at most
    MAX_SHARDS. A function of the shapes only, so the numbers never depend on the machine."""
    per_row = 6 * sum(a * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:], strict=True))
    k = min(
        MAX_SHARDS,
        batch_size // MIN_SHARD_ROWS,
        int(batch_size * per_row // max(MIN_SHARD_FLOPS, 1)),
    )
    return max(1, k)


def shard_rows(r: int, k: int) -> list[tuple[int, int]]:
    """Row ranges (a, b) of the k shards of an r-row batch (equal, the first ones larger)."""
    k = max(1, min(k, r))
    bounds = [i * r // k for i in range(k + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(k)]


def _cores() -> int:
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        return os.cpu_count() or 1


class Shards(Engine):
    name = "numpy-shards"
    summary = "NumPy, preallocated buffers, row shards on threads, built-in optimizers"

    @classmethod
    def why_not(cls, plan, params, opt_state):
        if not all(type(p) is np.ndarray for p in params.values()):
            return "it needs NumPy parameters"
        if not isinstance(plan.X, np.ndarray) or not isinstance(plan.Y, np.ndarray):
            return "it needs NumPy (or memory-mapped) data"
        if plan.optimizer.flat is None:
            return f"it runs the built-in optimizers only, not {plan.optimizer.name!r}"
        return None

    def __init__(self, plan, params: dict, opt_state):
        super().__init__(plan, params, opt_state)
        sizes = plan.spec.layer_sizes
        self.ops = ops = NumpyOps(np.asarray(params["W1"]).dtype)
        self.layout = layout = Layout(sizes)
        self.flat = FlatState(plan, ops, layout, params, opt_state)
        self.k = k = n_shards(plan.batch_size, sizes)
        rows = max(b - a for a, b in shard_rows(plan.batch_size, k))
        self.kernels = Kernels.of(plan, ops)
        self.buffers = [Buffers(self.kernels, layout, rows) for _ in range(k)]
        self.threads = Crew(self, min(k, _cores()))
        self.limit = blas_single_thread()

    def _job(self, step, count) -> Job:
        return self.flat.job(step, shard_rows(len(step.rows), self.k), count)

    def run(self, steps, record):
        steps = iter(steps)
        step = next(steps, None)
        if step is None:
            return ""
        crew, flat = self.threads, self.flat
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            job = crew.post(self._job(step, flat.count))
            while job is not None:
                crew.compute(0, job, flat.views)
                step = next(steps, None)  # workers find step t + 1 waiting when done
                nxt = None if step is None else crew.post(self._job(step, flat.count + 1))
                crew.sync()
                bad = self._update(job, record)
                if bad:
                    return bad
                job = nxt
        return ""

    def _update(self, job: Job, record) -> str:
        flat, shards = self.flat, self.buffers[: len(job.parts)]
        grads = [sh.grad[job.parity] for sh in shards]
        full_gradient(self.ops, grads, job, flat.theta, flat.G, flat.work[0])
        J = flat.cost(sum(sh.loss[job.parity] for sh in shards), len(job.step.rows))
        return flat.apply(J, job, record)

    def state(self):
        return self.flat.state()

    def gradients(self):
        return self.flat.gradients()

    def close(self):
        self.threads.stop()
        self.limit.release()


class Crew:
    """The worker threads of a Shards engine, alive for the whole fit.

    Thread 0 is the caller's; thread j >= 1 runs shards j, j + n, ... of every step on its
    own copy of the parameters and optimizer state. The main thread posts step t + 1
    before waiting at step t's barrier, so workers rarely wait for work. Shard gradients
    and losses are kept per step parity: a thread may start step t + 1 while another
    still sums step t's.
    """

    def __init__(self, engine: Shards, n: int):
        self.engine, self.n = engine, n
        self.cond = threading.Condition()
        self.jobs: list = [None, None]
        self.posted = 0  # jobs posted so far (job t is jobs[t % 2])
        self.barrier = threading.Barrier(n) if n > 1 else None
        self.errors: list = []
        self.workers = [
            threading.Thread(target=self._work, args=(j,), name=f"deepgrad-shard-{j}", daemon=True)
            for j in range(1, n)
        ]
        for th in self.workers:
            th.start()

    def post(self, job: Job | None) -> Job | None:
        """Make ``job`` the next step (None: stop); returns it with its parity set."""
        with self.cond:
            job = None if job is None else job._replace(parity=self.posted % 2)
            self.jobs[self.posted % 2] = job
            self.posted += 1
            self.cond.notify_all()
        return job

    def compute(self, j: int, job: Job, P: list) -> None:
        """Thread j's shards of ``job``."""
        for s in range(j, self.engine.k, self.n):
            shard_step(self.engine.kernels, job, self.engine.buffers[s], s, P)

    def sync(self) -> None:
        """Wait until every thread has its shards of the current step done."""
        if self.barrier is None:
            return
        try:
            self.barrier.wait()
        except threading.BrokenBarrierError:
            if self.errors:
                raise self.errors[0] from None
            raise

    def _work(self, j: int) -> None:
        eng, flat = self.engine, self.engine.flat
        theta, slots, G = flat.theta.copy(), tuple(s.copy() for s in flat.slots), flat.G.copy()
        work, P = (np.empty_like(theta), np.empty_like(theta)), eng.layout.views(theta)
        t = 0
        try:
            with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
                while True:
                    with self.cond:
                        while self.posted <= t:
                            self.cond.wait()
                        job = self.jobs[t % 2]
                    if job is None:
                        return
                    self.compute(j, job, P)
                    self.barrier.wait()
                    grads = [sh.grad[job.parity] for sh in eng.buffers[: len(job.parts)]]
                    full_gradient(eng.ops, grads, job, theta, G, work[0])
                    flat.rule.step(theta, G, slots, job.scalars, work)
                    t += 1
        except threading.BrokenBarrierError:
            return
        except BaseException as exc:  # reported by the main thread
            self.errors.append(exc)
            self.barrier.abort()

    def stop(self) -> None:
        if self.barrier is not None:
            self.barrier.abort()  # a worker waiting at a step that will not come stops
        self.post(None)
        for th in self.workers:
            th.join()
