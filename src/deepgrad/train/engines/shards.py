"""The NumPy row-shard engine: the reference's math with preallocated buffers and threads.

The formulas are those of ``network.forward/backward`` and of the optimizer's update
(``FlatRule``: the same arithmetic on one flat vector); only the rounding of the matrix
products differs (the bias is added inside them, and gradients are summed over row
shards), so the parameters agree with the reference engine to rounding (tests: 1e-12
relative in float64). What makes it faster (bench/train_throughput.py, docs/training.md):

- every matrix product writes into a preallocated array, and the bias is folded into
  them: each layer input carries a column of ones, so Z = [A | 1] [W | b]^T and
  [dW | db] = dZ^T [A | 1] (``Layout``); ReLU and its derivative run in place;
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

import math
import os
import threading
from typing import NamedTuple

import numpy as np

from deepgrad.core import losses
from deepgrad.core.activations import get as get_activation
from deepgrad.optim.optimizers import flat_state, state_from_flat
from deepgrad.train.engines.base import Engine, not_finite, sum_is_finite
from deepgrad.train.engines.threads import blas_single_thread
from deepgrad.train.types import Plan

__all__ = ["Shards", "Layout", "n_shards"]


class Layout:
    """Every layer's [W | b] as one (n^[l], n^[l-1] + 1) block of one flat vector."""

    def __init__(self, sizes, dtype):
        self.shapes = [(sizes[l], sizes[l - 1] + 1) for l in range(1, len(sizes))]
        self.ends = np.cumsum([r * c for r, c in self.shapes]).tolist()
        self.size = self.ends[-1]
        self.dtype = np.dtype(dtype)
        self.wmask = np.ones(self.size, dtype)  # 1 on weights, 0 on biases (the L2 term)
        for Wb in self.views(self.wmask):
            Wb[:, -1] = 0

    def views(self, flat) -> list:
        """[W | b] of each layer: (n^[l], n^[l-1] + 1) views into ``flat``."""
        starts = [0, *self.ends[:-1]]
        return [
            flat[a:e].reshape(s) for a, e, s in zip(starts, self.ends, self.shapes, strict=True)
        ]

    def pack(self, params: dict) -> np.ndarray:
        flat = np.empty(self.size, self.dtype)
        for l, Wb in enumerate(self.views(flat), start=1):
            Wb[:, :-1] = params[f"W{l}"]
            Wb[:, -1] = params[f"b{l}"]
        return flat

    def unpack(self, flat) -> dict:
        """A fresh dict of contiguous copies: what callers get can never change under them."""
        out = {}
        for l, Wb in enumerate(self.views(flat), start=1):
            out[f"W{l}"] = Wb[:, :-1].copy()
            out[f"b{l}"] = Wb[:, -1].copy()
        return out


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


class Buffers:
    """One shard's arrays, sized for its largest share of a mini-batch.

    A[l]: (rows, n^[l] + 1), the input of layer l + 1 with its column of ones (A[0] holds
    the gathered X); ReLU's output overwrites Z in place. ``grad``: this shard's gradient.
    """

    def __init__(self, plan: Plan, layout: Layout, rows: int):
        sizes, dtype = plan.spec.layer_sizes, layout.dtype
        hidden = sizes[1:-1]
        relu = plan.spec.hidden_activation == "relu"
        self.A = [np.ones((rows, n + 1), dtype) for n in sizes[:-1]]
        self.raw = None if plan.X.dtype == dtype else np.empty((rows, sizes[0]), plan.X.dtype)
        self.Y = np.empty((rows, sizes[-1]), dtype)
        self.ZL = np.empty((rows, sizes[-1]), dtype)
        self.Z = [] if relu else [np.empty((rows, n), dtype) for n in hidden]  # for g'(Z)
        # np.maximum against zeros is ~3x faster than against the scalar 0 (SIMD loop).
        self.zeros = [np.zeros((rows, n + 1), dtype) for n in hidden] if relu else []
        self.positive = [np.empty((rows, n + 1), bool) for n in hidden] if relu else []
        self.dA = [np.zeros((rows, n + 1), dtype) for n in hidden]
        self.grad = [np.empty(layout.size, dtype) for _ in range(2)]  # by step parity
        self.grad_views = [layout.views(g) for g in self.grad]
        self.loss = [0.0, 0.0]

    def gather(self, plan: Plan, idx):
        """Rows ``idx`` of X into A[0] and of Y into this shard's Y buffer."""
        r, n = len(idx), plan.X.shape[1]
        Xb = self.A[0][:r, :n]
        if self.raw is None:
            np.take(plan.X, idx, axis=0, out=Xb, mode="clip")  # idx is valid; no buffering
        else:
            np.copyto(Xb, np.take(plan.X, idx, axis=0, out=self.raw[:r]), casting="unsafe")
        if plan.check_batches and not np.isfinite(Xb).all():
            raise ValueError(f"X contains NaN or inf in rows {idx[~np.isfinite(Xb).all(1)][:5]}")
        return np.take(plan.Y, idx, axis=0, out=self.Y[:r], mode="clip")


class Kernels(NamedTuple):
    """The per-plan constants of the forward and backward pass."""

    plan: Plan
    relu: bool
    act: object
    out: object


def _forward(k: Kernels, sh: Buffers, P: list, r: int, masks) -> float:
    """Forward pass of this shard's r gathered rows; returns the sum of their losses."""
    sizes, L, A = k.plan.spec.layer_sizes, k.plan.spec.L, sh.A
    for l in range(L - 1):
        n = sizes[l + 1]
        if k.relu:  # Z is not needed again: ReLU'(Z) > 0 exactly where A > 0
            np.matmul(A[l][:r], P[l].T, out=A[l + 1][:r, :n])
            np.maximum(A[l + 1][:r], sh.zeros[l][:r], out=A[l + 1][:r])
        else:
            Z = np.matmul(A[l][:r], P[l].T, out=sh.Z[l][:r])
            np.copyto(A[l + 1][:r, :n], k.act.forward(Z))
        if masks is not None:
            np.multiply(A[l + 1][:r, :n], masks[l], out=A[l + 1][:r, :n])
    ZL = np.matmul(A[L - 1][:r], P[L - 1].T, out=sh.ZL[:r])
    return float(k.out.loss_sum(ZL, sh.Y[:r]))


def _backward(k: Kernels, sh: Buffers, P: list, r: int, r_total: int, masks, g: list) -> None:
    """This shard's rows' share of the mini-batch gradient, into the views ``g``."""
    sizes, A = k.plan.spec.layer_sizes, sh.A
    ZL = sh.ZL[:r]
    dZ = k.out.activation(ZL) - sh.Y[:r]  # canonical link
    dZ /= r_total  # the mean over the whole mini-batch
    for l in range(k.plan.spec.L - 1, -1, -1):
        np.matmul(dZ.T, A[l][:r], out=g[l])  # [dW | db] = dZ^T [A | 1]
        if l == 0:
            break
        n = sizes[l]
        dA = sh.dA[l - 1][:r]
        if P[l].shape[0] == 1:  # one output unit: an outer product, exact either way;
            np.multiply(dZ, P[l], out=dA)  # whole rows (contiguous): last column unused
        else:
            np.matmul(dZ, P[l][:, :n], out=dA[:, :n])
        if masks is not None:
            np.multiply(dA[:, :n], masks[l - 1], out=dA[:, :n])
        if k.relu:  # after dropout A > 0 where Z > 0 and the unit was kept
            positive = np.greater(A[l][:r], 0, out=sh.positive[l - 1][:r])
            dZ = np.multiply(dA, positive.view(np.uint8), out=dA)[:, :n]
        else:
            dZ = k.act.backward(dA[:, :n], sh.Z[l - 1][:r], k.act.forward(sh.Z[l - 1][:r]))


class Job(NamedTuple):
    """Step t for every thread: its rows, dropout key, and the update's scalars."""

    step: object  # types.Step
    parts: list  # (a, b) row range of each shard
    scalars: tuple  # the optimizer's per-step scalars
    regmask: np.ndarray | None  # (lambda / m_reg) on weights, 0 on biases; None without L2
    parity: int = 0  # which of each shard's two gradient buffers this step writes


def _shard_step(k: Kernels, job: Job, sh: Buffers, s: int, P: list) -> None:
    """Shard s of step ``job``: the loss and gradient of its rows."""
    if s >= len(job.parts):
        return
    a, b = job.parts[s]
    rows = job.step.rows
    sh.gather(k.plan, rows[a:b])
    masks = k.plan.masks(job.step, (a, b))
    sh.loss[job.parity] = _forward(k, sh, P, b - a, masks)
    _backward(k, sh, P, b - a, len(rows), masks, sh.grad_views[job.parity])


def _full_gradient(shards: list, job: Job, theta, G, tmp):
    """dJ/dtheta: the shards' data gradients summed in shard order, plus the L2 term.
    Every thread does exactly these operations, so their copies stay equal bit for bit."""
    grads = [sh.grad[job.parity] for sh in shards[: len(job.parts)]]
    if len(grads) == 1:
        np.copyto(G, grads[0])
    else:
        np.add(grads[0], grads[1], out=G)
        for g in grads[2:]:
            G += g
    if job.regmask is not None:  # into a buffer: a fresh temporary costs page faults
        G += np.multiply(job.regmask, theta, out=tmp)
    return G


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

    def __init__(self, plan: Plan, params: dict, opt_state):
        super().__init__(plan, params, opt_state)
        spec = plan.spec
        self.layout = layout = Layout(spec.layer_sizes, np.asarray(params["W1"]).dtype)
        self.rule, self.template = plan.optimizer.flat, opt_state
        self.count, slots = flat_state(opt_state, layout.pack)
        self.theta, self.slots = layout.pack(params), tuple(slots)
        self.G = np.empty_like(self.theta)
        self.work = (np.empty_like(self.theta), np.empty_like(self.theta))
        self.backup = [np.empty_like(v) for v in (self.theta, *self.slots)]
        self._views = layout.views(self.theta)  # theta is updated in place: views stay
        k = n_shards(plan.batch_size, spec.layer_sizes)
        rows = max(b - a for a, b in shard_rows(plan.batch_size, k))
        self.k = k
        self.buffers = [Buffers(plan, layout, rows) for _ in range(k)]
        relu = spec.hidden_activation == "relu"
        act = get_activation(spec.hidden_activation)
        self.kernels = Kernels(plan, relu, act, losses.get(spec.output))
        self.regmasks: dict = {}
        self.threads = Crew(self, min(k, _cores()))
        self.limit = blas_single_thread()

    def _job(self, step, count) -> Job:
        r = len(step.rows)
        reg = self.plan.reg(r)
        if reg and reg not in self.regmasks:
            self.regmasks[reg] = np.multiply(self.layout.wmask, reg, dtype=self.layout.dtype)
        parts = shard_rows(r, self.k)
        return Job(step, parts, self.rule.scalars(count), self.regmasks.get(reg))

    def run(self, steps, record):
        steps = iter(steps)
        step = next(steps, None)
        if step is None:
            return ""
        crew = self.threads
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            job = crew.post(self._job(step, self.count))
            while job is not None:
                crew.compute(0, job, self.views)
                step = next(steps, None)  # workers find step t + 1 waiting when done
                nxt = None if step is None else crew.post(self._job(step, self.count + 1))
                crew.sync()
                bad = self._update(job, record)
                if bad:
                    return bad
                job = nxt
        return ""

    @property
    def views(self):
        return self._views

    def _update(self, job: Job, record) -> str:
        r, n = len(job.step.rows), len(job.parts)
        G = _full_gradient(self.buffers, job, self.theta, self.G, self.work[0])
        loss = sum(sh.loss[job.parity] for sh in self.buffers[:n])
        reg = self.plan.reg(r)
        J = loss / r + (reg / 2.0 * _weights_sq(self.theta, self.views) if reg else 0.0)
        if not math.isfinite(J):
            return not_finite(J, lambda: True)
        for keep, now in zip(self.backup, (self.theta, *self.slots), strict=True):
            np.copyto(keep, now)  # to undo an update that overflows
        self.rule.step(self.theta, G, self.slots, job.scalars, self.work)
        if not sum_is_finite([self.theta]):
            for keep, now in zip(self.backup, (self.theta, *self.slots), strict=True):
                np.copyto(now, keep)
            return not_finite(J, lambda: sum_is_finite([G]))
        self.count += 1
        record(J, r)
        return ""

    def state(self):
        params = self.layout.unpack(self.theta)
        state = state_from_flat(self.template, self.count, self.slots, self.layout.unpack)
        return params, state

    def gradients(self):
        return self.layout.unpack(self.G)

    def close(self):
        self.threads.stop()
        self.limit.release()


def _weights_sq(flat, P: list) -> float:
    """sum ||W^[l]||^2 over layers (biases excluded), non-finite if any parameter is."""
    return float(np.dot(flat, flat)) - sum(float(np.dot(Wb[:, -1], Wb[:, -1])) for Wb in P)


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
            _shard_step(self.engine.kernels, job, self.engine.buffers[s], s, P)

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
        eng = self.engine
        theta, slots, G = eng.theta.copy(), tuple(s.copy() for s in eng.slots), eng.G.copy()
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
                    grad = _full_gradient(eng.buffers, job, theta, G, work[0])
                    eng.rule.step(theta, grad, slots, job.scalars, work)
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
