"""The torch engine: the one step (``engines.step``) on torch tensors, any device.

``TorchOps`` is the step's table of array operations for torch; the engine runs each
mini-batch as one shard. One flat parameter vector on the device (``core.layout``: each
layer's [W | b]), gradients written into one flat vector by ``out=`` products, the
optimizer's flat rule (``Optimizer.flat``) applied to the whole vector, and buffers
allocated once per fit: no dict of tensors and no autograd per step. The rows of a
mini-batch are gathered on the device when the data set is there
(``torch_backend.place_training_data``), else from host memory (a memory map too) and
copied. Dropout masks are ``dropout.step_masks`` (drawn on the host, the same as every
engine's). Gives the reference engine's numbers up to the rounding of the matrix
products (tests: 1e-12 relative in float64 on the CPU) and, on the CPU in float64, the
numpy-shards engine's to the same rounding.
"""

from __future__ import annotations

import numpy as np

from deepgrad.core.layout import Layout
from deepgrad.devices import torch_backend as tb
from deepgrad.train.engines.base import Engine
from deepgrad.train.engines.step import Buffers, FlatState, Kernels, full_gradient, shard_step
from deepgrad.train.types import Plan

__all__ = ["TorchFlat", "TorchOps"]


class TorchOps:
    """The step's array operations (``engines.step.NumpyOps``) for torch, on any device."""

    def __init__(self, torch, dtype, device, on_device: bool):
        self.torch, self.dtype, self.device, self.on_device = torch, dtype, device, on_device

    def empty(self, *shape):
        return self.torch.empty(shape, dtype=self.dtype, device=self.device)

    def ones(self, *shape):
        return self.torch.ones(shape, dtype=self.dtype, device=self.device)

    def zeros(self, *shape):
        return self.torch.zeros(shape, dtype=self.dtype, device=self.device)

    def relu_scratch(self, rows: int, n: int):
        return None

    def raw_buffer(self, plan: Plan, rows: int):
        return None

    def matmul(self, a, b, out):
        return self.torch.matmul(a, b, out=out)

    def mul(self, a, b, out):
        return self.torch.mul(a, b, out=out)

    def add(self, a, b, out):
        return self.torch.add(a, b, out=out)

    @staticmethod
    def copyto(dst, src):
        dst.copy_(src)

    @staticmethod
    def relu_(x, scratch):
        return x.clamp_min_(0)

    @staticmethod
    def relu_grad_(dA, A, scratch):
        return dA.mul_(A > 0)

    def masks(self, masks):
        if masks is None:
            return None
        return [self.torch.from_numpy(mk).to(self.device) for mk in masks]

    def gather(self, plan: Plan, idx, sh):
        """Rows ``idx`` of X into A[0] (on the device, or from host memory and copied)."""
        torch, r, n = self.torch, len(idx), plan.X.shape[1]
        at = torch.from_numpy(idx).to(self.device)
        Xb = sh.A[0][:r, :n]
        if self.on_device:
            Xb.copy_(torch.index_select(plan.X, 0, at))
        else:
            host = np.take(plan.X, idx, axis=0)
            if plan.check_batches and not np.isfinite(host).all():
                bad = idx[~np.isfinite(host).all(1)][:5]
                raise ValueError(f"X contains NaN or inf in rows {bad}")
            Xb.copy_(torch.from_numpy(np.ascontiguousarray(host)))
        return torch.index_select(plan.Y, 0, at, out=sh.Y[:r])


class TorchFlat(Engine):
    name = "torch"
    summary = "torch tensors on any device, one flat vector, buffers made once, no autograd"

    @classmethod
    def why_not(cls, plan, params, opt_state):
        if tb.backend_of(params["W1"]) != "torch":
            return "it needs torch parameters (backend='torch')"
        if plan.optimizer.flat is None:
            return f"it runs the built-in optimizers only, not {plan.optimizer.name!r}"
        return None

    def __init__(self, plan: Plan, params: dict, opt_state):
        super().__init__(plan, params, opt_state)
        W1 = params["W1"]
        on_device = tb.backend_of(plan.X) == "torch"
        self.ops = TorchOps(tb.import_torch(), W1.dtype, W1.device, on_device)
        self.layout = layout = Layout(plan.spec.layer_sizes)
        self.flat = FlatState(plan, self.ops, layout, params, opt_state)
        self.kernels = Kernels.of(plan, self.ops)
        self.buffers = Buffers(self.kernels, layout, plan.batch_size)

    def run(self, steps, record):
        flat, sh, k = self.flat, self.buffers, self.kernels
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for step in steps:
                job = flat.job(step, [(0, len(step.rows))])
                shard_step(k, job, sh, 0, flat.views)
                full_gradient(self.ops, sh.grad[:1], job, flat.theta, flat.G, flat.work[0])
                bad = flat.apply(flat.cost(sh.loss[0], len(step.rows)), job, record)
                if bad:
                    return bad
        return ""

    def state(self):
        return self.flat.state()

    def gradients(self):
        return self.flat.gradients()
