"""The CUDA-graph engine: the one step (``engines.step``) on static buffers, captured.

A run of up to ``STEPS_PER_GRAPH`` consecutive steps of the same batch size (a "unit")
is captured once per fit as one CUDA graph and replayed, so kernel launches cost once
per unit, not once per kernel (the torch engine launches ~40 kernels a step). The math
is ``engines.step``'s, on ``torch_flat.TorchOps``; what makes it capturable:

- static buffers: each unit owns the rows of its steps (int64, on the device), their X
  rows when the data set is in host memory or a memory map (staged in pinned host
  memory, copied without blocking), the dropout masks (``dropout.step_masks``, drawn on
  the host exactly as every engine's, then uploaded) and the optimizer's per-step
  scalars (``FlatRule.scalars``: the scheduled rate, Adam's bias corrections) as device
  tensors, so one graph serves every step of every epoch;
- the batch is gathered on the device (``index_select`` from the static rows) when the
  data set is there; the loss, the cost J and the sum of theta (NaN or inf there means
  the step diverged) go into a static output buffer, read to the host once per unit;
- two units per shape alternate, so the host stages unit i + 1 (rows, X, masks,
  scalars) while the device runs unit i.

The loop keeps the order, history, divergence, callbacks, validation and checkpoints.
After a unit is read, its steps are recorded in order. If a step diverged, the state
goes back to the unit's start and its steps run again one by one through
``FlatState.apply`` (the same static buffers and scalars), which keeps the last finite
step and names what was not finite, as every engine does. Callbacks and checkpoints
read the state after every step, so with either the units are one step long.

Without CUDA (``REQUIRE_CUDA`` False, for the tests) the same units run their steps as
plain calls: everything but the capture itself is tested on torch CPU.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator

import numpy as np

from deepgrad.core.layout import Layout
from deepgrad.devices import torch_backend as tb
from deepgrad.train.engines.base import Engine
from deepgrad.train.engines.step import (
    Buffers,
    FlatState,
    Job,
    Kernels,
    backward,
    forward_loss,
    full_gradient,
)
from deepgrad.train.engines.torch_flat import TorchFlat, TorchOps
from deepgrad.train.types import Plan, Step

__all__ = ["TorchGraphs", "STEPS_PER_GRAPH", "REQUIRE_CUDA", "chunks", "steps_per_unit"]

STEPS_PER_GRAPH = 16  # measured in November on an H200 (T1): 16 steps 0.355 s, 64 0.363 s
REQUIRE_CUDA = True  # False runs the engine on torch CPU without capture (tests only)


def chunks(steps: Iterable[Step], k: int) -> Iterator[list[Step]]:
    """Consecutive steps in runs of at most ``k`` with the same number of rows."""
    if not isinstance(k, int) or k < 1:
        raise ValueError(f"k (steps per unit) must be an int >= 1, got {k!r}")
    run: list[Step] = []
    for step in steps:
        if run and (len(run) == k or len(step.rows) != len(run[0].rows)):
            yield run
            run = []
        run.append(step)
    if run:
        yield run


def steps_per_unit(record) -> int:
    """1 when the loop reads the state after every step (callbacks or a checkpoint of
    the loop's ``Recorder``), else ``STEPS_PER_GRAPH``."""
    if getattr(record, "callbacks", None) or getattr(record, "ckpt", None) is not None:
        return 1
    return STEPS_PER_GRAPH


class Unit:
    """n steps of r rows each on static buffers: staged from the host, then replayed."""

    def __init__(self, eng: TorchGraphs, n: int, r: int):
        torch, plan, ops = eng.torch, eng.plan, eng.ops
        self.eng, self.n, self.r = eng, n, r
        pin, dev = eng.graphs, ops.device
        host = lambda *shape, dtype=ops.dtype: torch.empty(shape, dtype=dtype, pin_memory=pin)  # noqa: E731
        self.idx = torch.empty((n, r), dtype=torch.int64, device=dev)
        self.idx_host = host(n, r, dtype=torch.int64)
        self.xs = self.xs_host = None
        if not eng.ops.on_device:
            xdtype = torch.from_numpy(np.empty(0, plan.X.dtype)).dtype
            self.xs_host = host(n, r, plan.X.shape[1], dtype=xdtype)
            self.xs = torch.empty((n, r, plan.X.shape[1]), dtype=xdtype, device=dev)
        hidden = plan.spec.hidden_sizes if plan.keep_prob < 1 else []
        self.masks_host = [host(n, r, h) for h in hidden]
        self.masks = [ops.empty(n, r, h) for h in hidden]
        width = len(eng.flat.rule.scalars(0))
        self.scal_host, self.scal = host(n, max(width, 1)), ops.empty(n, max(width, 1))
        self.width = width
        self.out = ops.zeros(n, 2)  # J, sum(theta) after the update, per step
        self.jobs: list[Job] = []
        self.graph = None

    def stage(self, steps: list[Step], count: int) -> None:
        """Copy the steps' rows, X rows, masks and scalars to the static buffers."""
        plan, flat, r = self.eng.plan, self.eng.flat, self.r
        idx, self.jobs = self.idx_host.numpy(), []
        for t, step in enumerate(steps):
            idx[t] = step.rows
            job = flat.job(step, [(0, r)], count + t)
            self.scal_host.numpy()[t, : self.width] = job.scalars
            masks = plan.masks(step, (0, r))
            for host, mk in zip(self.masks_host, masks or [], strict=False):
                host.numpy()[t] = mk
            scalars = tuple(self.scal[t, i] for i in range(self.width))
            self.jobs.append(job._replace(scalars=scalars))
        if self.xs is not None:
            host = self.xs_host.numpy().reshape(self.n * r, -1)
            np.take(plan.X, idx.reshape(-1), axis=0, out=host, mode="clip")  # valid rows
            if plan.check_batches and not np.isfinite(host).all():
                bad = idx.reshape(-1)[~np.isfinite(host).all(1)][:5]
                raise ValueError(f"X contains NaN or inf in rows {bad}")
        blocking = not self.eng.graphs
        pairs = [(self.idx, self.idx_host), (self.scal, self.scal_host)]
        pairs += list(zip(self.masks, self.masks_host, strict=True))
        if self.xs is not None:
            pairs.append((self.xs, self.xs_host))
        for dev, host in pairs:
            dev.copy_(host, non_blocking=not blocking)

    def gradient(self, t: int):
        """Step t's gather, forward, backward and gradient; writes its cost J to out[t, 0]."""
        eng, r = self.eng, self.r
        k, sh, flat, torch = eng.kernels, eng.buffers, eng.flat, eng.torch
        n0 = eng.plan.X.shape[1]
        rows = self.idx[t]
        Xb = sh.A[0][:r, :n0]
        Xb.copy_(torch.index_select(eng.plan.X, 0, rows) if self.xs is None else self.xs[t])
        torch.index_select(eng.plan.Y, 0, rows, out=sh.Y[:r])
        masks = [m[t] for m in self.masks] or None
        loss = forward_loss(k, sh, flat.views, r, masks)
        backward(k, sh, flat.views, r, r, masks, sh.grad_views[0])
        job = self.jobs[t]
        full_gradient(eng.ops, sh.grad[:1], job, flat.theta, flat.G, flat.work[0])
        J = loss / r
        reg = eng.plan.reg(r)
        if reg:  # J's L2 term, from theta before the update (FlatState.cost)
            W = torch.mul(flat.theta, flat.wmask, out=flat.work[1])
            J = J + reg / 2.0 * torch.dot(W, W)
        self.out[t, 0].copy_(J)
        return job

    def body(self) -> None:
        """All n steps with their updates (what the graph holds)."""
        flat = self.eng.flat
        for t in range(self.n):
            job = self.gradient(t)
            flat.rule.step(flat.theta, flat.G, flat.slots, job.scalars, flat.work)
            self.out[t, 1].copy_(flat.theta.sum())

    def replay(self) -> None:
        """Run the staged steps: the graph (captured on its first use on CUDA), or calls."""
        if not self.eng.graphs:
            self.body()
            return
        if self.graph is None:
            self.graph = capture(self.eng, self)
        self.graph.replay()

    def costs(self) -> list[tuple[float, float]]:
        """(J, sum of theta) of each step, read to the host (the one sync of a unit)."""
        return [tuple(row) for row in self.out.cpu().tolist()]


def capture(eng: TorchGraphs, unit: Unit):
    """``unit``'s steps as a CUDA graph, following torch.cuda.graphs' rules: a warm-up run
    on a side stream first (cuBLAS handles and workspaces, the allocator), captured on that
    stream. The warm-up trains for real: the state goes back to the unit's start after it
    (the snapshot ``eng.keep`` the engine took before the replay)."""
    torch, dev = eng.torch, eng.ops.device
    side = torch.cuda.Stream(dev)
    side.wait_stream(torch.cuda.current_stream(dev))
    try:
        with torch.cuda.stream(side):
            unit.body()
            eng.restore()
            graph = torch.cuda.CUDAGraph()
            with torch.cuda.graph(graph, stream=side):
                unit.body()
            eng.restore()
    except RuntimeError as exc:
        raise RuntimeError(
            f"capturing the training steps in a CUDA graph failed ({exc}); "
            f"fit(engine='torch') runs them without graphs"
        ) from exc
    torch.cuda.current_stream(dev).wait_stream(side)
    return graph


class TorchGraphs(Engine):
    name = "torch-graphs"
    summary = "torch on CUDA: the one step on static buffers, 16 steps per CUDA graph"

    @classmethod
    def why_not(cls, plan, params, opt_state):
        reason = TorchFlat.why_not(plan, params, opt_state)
        if reason is not None:
            return reason
        device = params["W1"].device
        if REQUIRE_CUDA and device.type != "cuda":
            return f"it needs parameters on a CUDA device (they are on {device})"
        return None

    def __init__(self, plan: Plan, params: dict, opt_state):
        super().__init__(plan, params, opt_state)
        W1 = params["W1"]
        self.torch = tb.import_torch()
        self.graphs = W1.device.type == "cuda"
        on_device = tb.backend_of(plan.X) == "torch"
        self.ops = TorchOps(self.torch, W1.dtype, W1.device, on_device)
        self.layout = layout = Layout(plan.spec.layer_sizes)
        self.flat = FlatState(plan, self.ops, layout, params, opt_state)
        self.kernels = Kernels.of(plan, self.ops)
        self.buffers = Buffers(self.kernels, layout, plan.batch_size)
        self.keep = [self.ops.empty(layout.size) for _ in (self.flat.theta, *self.flat.slots)]
        self.units: dict = {}  # (n, r, parity) -> Unit

    def snapshot(self) -> None:
        for keep, now in zip(self.keep, (self.flat.theta, *self.flat.slots), strict=True):
            keep.copy_(now)

    def restore(self) -> None:
        for keep, now in zip(self.keep, (self.flat.theta, *self.flat.slots), strict=True):
            now.copy_(keep)

    def _unit(self, n: int, r: int, parity: int) -> Unit:
        key = (n, r, parity)
        if key not in self.units:
            self.units[key] = Unit(self, n, r)
        return self.units[key]

    def run(self, steps, record):
        pending, count, parity = None, self.flat.count, 0
        for chunk in chunks(steps, steps_per_unit(record)):
            unit = self._unit(len(chunk), len(chunk[0].rows), parity)
            unit.stage(chunk, count)  # while the device still runs the pending unit
            if pending is not None:
                bad = self._finish(*pending, record)
                if bad:
                    return bad
            self.snapshot()
            unit.replay()
            pending, count, parity = (unit, chunk), count + len(chunk), 1 - parity
        return "" if pending is None else self._finish(*pending, record)

    def _finish(self, unit: Unit, chunk: list[Step], record) -> str:
        """Record the unit's steps, or redo them one by one from its start if one diverged."""
        costs = unit.costs()
        if all(math.isfinite(J) and math.isfinite(s) for J, s in costs):
            self.flat.count += len(chunk)
            for (J, _), step in zip(costs, chunk, strict=True):
                record(J, len(step.rows))
            return ""
        self.restore()
        for t in range(len(chunk)):
            job = unit.gradient(t)
            bad = self.flat.apply(float(unit.out[t, 0]), job, record)
            if bad:
                return bad
        return ""

    def state(self):
        return self.flat.state()

    def gradients(self):
        return self.flat.gradients()
