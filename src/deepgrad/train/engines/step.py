"""The training step of the fast engines, written once over a small table of array ops.

One step on a mini-batch: gather its rows, forward, loss, backward, the L2 term, dropout,
and the optimizer's flat update (``FlatRule``) with its undo when the result is not
finite. NumPy shards (``shards``), torch on any device (``torch_flat``) and every MPI rank
(``train.mpi``) run these functions; they differ only in their ``Ops`` (how to allocate,
multiply into a buffer and gather rows) and in how they split the rows (threads, one
shard, ranks). ``core.network`` is the other copy of the math: the course's formulas as
written, which the tests hold this one against.

The math, for the rows a..b of an r-row mini-batch (a "shard"), parameters in the
``core.layout`` blocks P[l] = [W^[l] | b^[l]]:

- each layer input carries a column of ones, so Z = [A | 1] P^T and
  [dW | db] = dZ^T [A | 1]: one product each, the bias inside it;
- ReLU runs in place (its derivative is 1 where the output is > 0); dropout multiplies
  by the step's masks (``dropout.step_masks``, drawn per shard for its own rows);
- dZ^[L] = (g(Z^[L]) - Y) / r (the canonical link of every output), so a shard's
  gradient is its share of the mini-batch mean, and the shards' gradients add up;
- the L2 term (lambda / m_reg) W is added once to the sum, and the cost
  J = loss / r + lambda / (2 m_reg) sum ||W||^2.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from deepgrad.core import losses
from deepgrad.core.activations import get as get_activation
from deepgrad.core.layout import Layout
from deepgrad.optim.optimizers import flat_state, state_from_flat
from deepgrad.train.engines.base import not_finite, sum_is_finite
from deepgrad.train.types import Plan

__all__ = [
    "NumpyOps",
    "Kernels",
    "Buffers",
    "Job",
    "FlatState",
    "forward",
    "forward_loss",
    "backward",
    "shard_step",
    "full_gradient",
]


class NumpyOps:
    """The array operations of the step, for NumPy (every one writes into a buffer)."""

    def __init__(self, dtype):
        self.dtype = np.dtype(dtype)

    def empty(self, *shape):
        return np.empty(shape, self.dtype)

    def ones(self, *shape):
        return np.ones(shape, self.dtype)

    def zeros(self, *shape):
        return np.zeros(shape, self.dtype)

    def relu_scratch(self, rows: int, n: int):
        """(zeros, bool) buffers of ``relu_`` and ``relu_grad_``: np.maximum against an
        array of zeros is ~3x faster than against the scalar 0 (a SIMD loop)."""
        return np.zeros((rows, n), self.dtype), np.empty((rows, n), bool)

    def raw_buffer(self, plan: Plan, rows: int):
        """Where rows of X are gathered before a cast to the parameters' dtype."""
        if plan.X.dtype == self.dtype:
            return None
        return np.empty((rows, plan.X.shape[1]), plan.X.dtype)

    @staticmethod
    def matmul(a, b, out):
        return np.matmul(a, b, out=out)

    @staticmethod
    def mul(a, b, out):
        return np.multiply(a, b, out=out)

    @staticmethod
    def add(a, b, out):
        return np.add(a, b, out=out)

    @staticmethod
    def copyto(dst, src):
        np.copyto(dst, src)

    @staticmethod
    def relu_(x, scratch):
        return np.maximum(x, scratch[0][: len(x)], out=x)

    @staticmethod
    def relu_grad_(dA, A, scratch):
        """dA * (A > 0), in place."""
        positive = np.greater(A, 0, out=scratch[1][: len(A)])
        return np.multiply(dA, positive.view(np.uint8), out=dA)

    @staticmethod
    def masks(masks):
        return masks

    def gather(self, plan: Plan, idx, sh: Buffers):
        """Rows ``idx`` of X into A[0] and of Y into the shard's Y buffer (memory maps too)."""
        r, n = len(idx), plan.X.shape[1]
        Xb = sh.A[0][:r, :n]
        if sh.raw is None:
            np.take(plan.X, idx, axis=0, out=Xb, mode="clip")  # idx is valid; no buffering
        else:
            np.copyto(Xb, np.take(plan.X, idx, axis=0, out=sh.raw[:r]), casting="unsafe")
        if plan.check_batches and not np.isfinite(Xb).all():
            raise ValueError(f"X contains NaN or inf in rows {idx[~np.isfinite(Xb).all(1)][:5]}")
        return np.take(plan.Y, idx, axis=0, out=sh.Y[:r], mode="clip")


class Kernels(NamedTuple):
    """The per-plan constants of the forward and backward pass."""

    plan: Plan
    ops: object  # NumpyOps or torch_flat.TorchOps
    relu: bool
    act: object
    out: object

    @classmethod
    def of(cls, plan: Plan, ops) -> Kernels:
        spec = plan.spec
        act = get_activation(spec.hidden_activation)
        return cls(plan, ops, spec.hidden_activation == "relu", act, losses.get(spec.output))


class Buffers:
    """One shard's arrays, sized for its largest share of a mini-batch.

    A[l]: (rows, n^[l] + 1), the input of layer l + 1 with its column of ones (A[0] holds
    the gathered X); ReLU's output overwrites Z in place. ``grad``: this shard's gradient,
    two by step parity (a thread may start step t + 1 while another sums step t's).
    """

    def __init__(self, k: Kernels, layout: Layout, rows: int):
        ops, sizes = k.ops, k.plan.spec.layer_sizes
        hidden = sizes[1:-1]
        self.A = [ops.ones(rows, n + 1) for n in sizes[:-1]]
        self.raw = ops.raw_buffer(k.plan, rows)
        self.Y = ops.empty(rows, sizes[-1])
        self.ZL = ops.empty(rows, sizes[-1])
        self.Z = [] if k.relu else [ops.empty(rows, n) for n in hidden]  # for g'(Z)
        self.scratch = [ops.relu_scratch(rows, n + 1) for n in hidden] if k.relu else []
        self.dA = [ops.zeros(rows, n + 1) for n in hidden]
        self.grad = [ops.empty(layout.size) for _ in range(2)]
        self.grad_views = [layout.views(g) for g in self.grad]
        self.loss = [0.0, 0.0]


def forward(k: Kernels, sh: Buffers, P: list, r: int, masks) -> float:
    """Forward pass of this shard's r gathered rows; returns the sum of their losses."""
    return float(forward_loss(k, sh, P, r, masks))


def forward_loss(k: Kernels, sh: Buffers, P: list, r: int, masks):
    """``forward`` with the sum of the losses left as an array of the backend: no host
    synchronization, so a captured CUDA graph can hold it (``torch_graphs``)."""
    ops, sizes, L, A = k.ops, k.plan.spec.layer_sizes, k.plan.spec.L, sh.A
    for l in range(L - 1):
        n = sizes[l + 1]
        if k.relu:  # Z is not needed again: ReLU'(Z) > 0 exactly where A > 0
            ops.matmul(A[l][:r], P[l].T, A[l + 1][:r, :n])
            ops.relu_(A[l + 1][:r], sh.scratch[l])  # the column of ones stays 1
        else:
            Z = ops.matmul(A[l][:r], P[l].T, sh.Z[l][:r])
            ops.copyto(A[l + 1][:r, :n], k.act.forward(Z))
        if masks is not None:
            ops.mul(A[l + 1][:r, :n], masks[l], A[l + 1][:r, :n])
    ZL = ops.matmul(A[L - 1][:r], P[L - 1].T, sh.ZL[:r])
    return k.out.loss_sum(ZL, sh.Y[:r])


def backward(k: Kernels, sh: Buffers, P: list, r: int, r_total: int, masks, g: list) -> None:
    """This shard's rows' share of the mini-batch gradient, into the views ``g``."""
    ops, sizes, A = k.ops, k.plan.spec.layer_sizes, sh.A
    dZ = k.out.activation(sh.ZL[:r]) - sh.Y[:r]  # canonical link
    dZ /= r_total  # the mean over the whole mini-batch
    for l in range(k.plan.spec.L - 1, -1, -1):
        ops.matmul(dZ.T, A[l][:r], g[l])  # [dW | db] = dZ^T [A | 1]
        if l == 0:
            break
        n = sizes[l]
        dA = sh.dA[l - 1][:r]
        if P[l].shape[0] == 1:  # one output unit: an outer product, exact either way;
            ops.mul(dZ, P[l], dA)  # whole rows (contiguous): the last column unused
        else:
            ops.matmul(dZ, P[l][:, :n], dA[:, :n])
        if masks is not None:
            ops.mul(dA[:, :n], masks[l - 1], dA[:, :n])
        if k.relu:  # after dropout A > 0 where Z > 0 and the unit was kept
            dZ = ops.relu_grad_(dA, A[l][:r], sh.scratch[l - 1])[:, :n]
        else:
            dZ = k.act.backward(dA[:, :n], sh.Z[l - 1][:r], k.act.forward(sh.Z[l - 1][:r]))


class Job(NamedTuple):
    """Step t for every thread or rank: its rows, dropout key, and the update's scalars."""

    step: object  # types.Step
    parts: list  # (a, b) row range of each shard
    scalars: tuple  # the optimizer's per-step scalars
    regmask: object  # (lambda / m_reg) on weights, 0 on biases; None without L2
    parity: int = 0  # which of each shard's two gradient buffers this step writes


def shard_step(k: Kernels, job: Job, sh: Buffers, s: int, P: list) -> None:
    """Shard s of step ``job``: the loss and gradient of its rows (nothing when it has none)."""
    if s >= len(job.parts):
        return
    a, b = job.parts[s]
    rows = job.step.rows
    if b == a:  # an MPI rank's share of a batch smaller than the number of ranks
        sh.grad[job.parity][:] = 0
        sh.loss[job.parity] = 0.0
        return
    k.ops.gather(k.plan, rows[a:b], sh)
    masks = k.ops.masks(k.plan.masks(job.step, (a, b)))
    sh.loss[job.parity] = forward(k, sh, P, b - a, masks)
    backward(k, sh, P, b - a, len(rows), masks, sh.grad_views[job.parity])


def full_gradient(ops, grads: list, job: Job, theta, G, tmp):
    """dJ/dtheta: the shards' data gradients ``grads`` summed in order, plus the L2 term.
    Every thread does exactly these operations, so their copies stay equal bit for bit."""
    if len(grads) == 1:
        ops.copyto(G, grads[0])
    else:
        ops.add(grads[0], grads[1], G)
        for g in grads[2:]:
            G += g
    if job.regmask is not None:  # into a buffer: a fresh temporary costs page faults
        G += ops.mul(job.regmask, theta, tmp)
    return G


class FlatState:
    """theta, the optimizer's slots and the gradient as flat ``Layout`` vectors, and the
    update that is undone when it is not finite (the loop then keeps the last good step)."""

    def __init__(self, plan: Plan, ops, layout: Layout, params: dict, opt_state):
        new = lambda: ops.empty(layout.size)  # noqa: E731
        self.ops, self.layout, self.plan = ops, layout, plan
        self.rule, self.template = plan.optimizer.flat, opt_state
        if self.rule is None:  # an optimizer of the user's: it updates dicts (train.mpi)
            self.count, slots = 0, ()
        else:
            self.count, slots = flat_state(opt_state, lambda d: layout.pack_into(new(), d))
        self.theta, self.slots = layout.pack_into(new(), params), tuple(slots)
        self.G = ops.zeros(layout.size)
        self.work = (new(), new())
        self.backup = [new() for _ in (self.theta, *self.slots)]
        self.views = layout.views(self.theta)  # theta is updated in place: views stay
        self.wmask = layout.weight_mask(new())
        self.regmasks: dict = {}

    def job(self, step, parts, count=None, parity=0) -> Job:
        """The Job of ``step`` cut into ``parts``, with its L2 mask and update scalars."""
        reg = self.plan.reg(len(step.rows))
        if reg and reg not in self.regmasks:
            self.regmasks[reg] = self.wmask * reg
        count = self.count if count is None else count
        scalars = () if self.rule is None else self.rule.scalars(count)
        return Job(step, parts, scalars, self.regmasks.get(reg), parity)

    def cost(self, loss: float, rows: int) -> float:
        """J = loss / rows + lambda / (2 m_reg) sum ||W||^2."""
        reg = self.plan.reg(rows)
        return loss / rows + (reg / 2.0 * self.layout.weights_sq(self.theta) if reg else 0.0)

    def apply(self, J: float, job: Job, record) -> str:
        """The optimizer's update with ``self.G``; '' and ``record(J, rows)``, or what was
        not finite (and the parameters and state as before)."""
        if not math.isfinite(J):
            return not_finite(J, lambda: True)
        copyto = self.ops.copyto
        for keep, now in zip(self.backup, (self.theta, *self.slots), strict=True):
            copyto(keep, now)  # to undo an update that overflows
        self.rule.step(self.theta, self.G, self.slots, job.scalars, self.work)
        if not sum_is_finite([self.theta]):
            for keep, now in zip(self.backup, (self.theta, *self.slots), strict=True):
                copyto(now, keep)
            return not_finite(J, lambda: sum_is_finite([self.G]))
        self.count += 1
        record(J, len(job.step.rows))
        return ""

    def state(self):
        """(parameters, optimizer state) as fresh dicts in the caller's layout."""
        unpack = self.layout.unpack
        return unpack(self.theta), state_from_flat(self.template, self.count, self.slots, unpack)

    def gradients(self) -> dict:
        return self.layout.unpack(self.G)
