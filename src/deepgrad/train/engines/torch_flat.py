"""The torch engine: the reference's math on torch tensors, any device, set up once.

One flat parameter vector on the device (each layer's W row-major, then b), gradients
written into one flat vector by ``out=`` products, the optimizer's flat rule
(``Optimizer.flat``) applied to the whole vector, and buffers allocated once per fit:
no dict of tensors and no autograd per step. The rows of a mini-batch are gathered on
the device when the data set is there (``torch_backend.place_training_data``), else from
host memory (a memory map too) and copied. Dropout masks are ``dropout.step_masks``
(drawn on the host, the same as every engine's). Gives the reference engine's numbers up
to the rounding of ``addmm`` (tests: 1e-12 relative in float64 on the CPU).
"""

from __future__ import annotations

import math

import numpy as np

from deepgrad.core import losses
from deepgrad.core.activations import get as get_activation
from deepgrad.devices import torch_backend as tb
from deepgrad.optim.optimizers import flat_state, state_from_flat
from deepgrad.train.engines.base import Engine, not_finite, sum_is_finite
from deepgrad.train.types import Plan

__all__ = ["TorchFlat"]


class _Layout:
    """W^[l] (row-major) then b^[l], layer after layer, in one flat tensor."""

    def __init__(self, sizes):
        self.shapes, ends, at = [], [], 0
        for l in range(1, len(sizes)):
            n_out, n_in = sizes[l], sizes[l - 1]
            self.shapes.append((n_out, n_in))
            ends.append((at, at + n_out * n_in, at + n_out * n_in + n_out))
            at += n_out * (n_in + 1)
        self.ends, self.size = ends, at

    def views(self, flat) -> list:
        return [
            (flat[a:w].view(s), flat[w:e])
            for (a, w, e), s in zip(self.ends, self.shapes, strict=True)
        ]

    def pack(self, params: dict, like):
        torch = tb.import_torch()
        flat = torch.empty(self.size, dtype=like.dtype, device=like.device)
        for l, (W, b) in enumerate(self.views(flat), start=1):
            W.copy_(params[f"W{l}"])
            b.copy_(params[f"b{l}"])
        return flat

    def unpack(self, flat) -> dict:
        out = {}
        for l, (W, b) in enumerate(self.views(flat), start=1):
            out[f"W{l}"], out[f"b{l}"] = W.clone(), b.clone()
        return out


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
        self.torch = torch = tb.import_torch()
        W1 = params["W1"]
        self.device, self.dtype = W1.device, W1.dtype
        sizes = plan.spec.layer_sizes
        self.layout = lay = _Layout(sizes)
        self.rule, self.template = plan.optimizer.flat, opt_state
        pack = lambda d: lay.pack(d, W1)  # noqa: E731
        self.count, slots = flat_state(opt_state, pack)
        self.theta, self.slots = pack(params), tuple(slots)
        self.G = torch.zeros_like(self.theta)
        self.work = (torch.empty_like(self.theta), torch.empty_like(self.theta))
        self.backup = [torch.empty_like(v) for v in (self.theta, *self.slots)]
        self.wmask = torch.zeros_like(self.theta)
        for W, _ in lay.views(self.wmask):
            W.fill_(1)
        b = plan.batch_size
        new = lambda *shape: torch.empty(shape, dtype=self.dtype, device=self.device)  # noqa: E731
        self.Z = [new(b, n) for n in sizes[1:]]
        self.A = [new(b, n) for n in sizes[1:-1]]
        self.Xb, self.Yb = new(b, sizes[0]), new(b, sizes[-1])
        self.on_device = tb.backend_of(plan.X) == "torch"
        self.act = get_activation(plan.spec.hidden_activation)
        self.out = losses.get(plan.spec.output)
        self.relu = plan.spec.hidden_activation == "relu"
        self.regmasks: dict = {}

    def _gather(self, rows):
        r, plan, torch = len(rows), self.plan, self.torch
        idx = torch.from_numpy(rows).to(self.device)
        Xb, Yb = self.Xb[:r], self.Yb[:r]
        if self.on_device:
            torch.index_select(plan.X, 0, idx, out=Xb)
        else:
            host = np.take(plan.X, rows, axis=0)
            if plan.check_batches and not np.isfinite(host).all():
                bad = rows[~np.isfinite(host).all(1)][:5]
                raise ValueError(f"X contains NaN or inf in rows {bad}")
            Xb.copy_(torch.from_numpy(np.ascontiguousarray(host)))
        torch.index_select(plan.Y, 0, idx, out=Yb)
        return Xb, Yb

    def _masks(self, step):
        masks = self.plan.masks(step)
        if masks is None:
            return None
        return [self.torch.from_numpy(mk).to(self.device) for mk in masks]

    def _forward(self, Xb, P, masks, r):
        torch, A = self.torch, Xb
        L = len(P)
        for l, (W, b) in enumerate(P):
            Z = torch.addmm(b, A, W.T, out=self.Z[l][:r])
            if l == L - 1:
                return Z
            if self.relu:
                A = torch.clamp_min(Z, 0, out=self.A[l][:r])
            else:
                A = self.A[l][:r]
                A.copy_(self.act.forward(Z))
            if masks is not None:
                A.mul_(masks[l])
        return Z

    def _backward(self, Xb, Yb, ZL, P, masks, r):
        torch, g = self.torch, self.layout.views(self.G)
        dZ = (self.out.activation(ZL) - Yb) / r  # canonical link
        for l in range(len(P) - 1, -1, -1):
            A = Xb if l == 0 else self.A[l - 1][:r]
            torch.mm(dZ.T, A, out=g[l][0])
            torch.sum(dZ, 0, out=g[l][1])
            if l == 0:
                break
            dA = dZ @ P[l][0]
            if masks is not None:
                dA.mul_(masks[l - 1])
            if self.relu:
                dZ = dA.mul_(A > 0)
            else:
                dZ = self.act.backward(dA, self.Z[l - 1][:r], self.act.forward(self.Z[l - 1][:r]))

    def _step(self, step, record) -> str:
        torch, plan = self.torch, self.plan
        r = len(step.rows)
        Xb, Yb = self._gather(step.rows)
        masks = self._masks(step)
        P = self.layout.views(self.theta)
        ZL = self._forward(Xb, P, masks, r)
        loss = float(self.out.loss_sum(ZL, Yb))
        self._backward(Xb, Yb, ZL, P, masks, r)
        reg = plan.reg(r)
        J = loss / r
        if reg:
            W = torch.mul(self.wmask, self.theta, out=self.work[0])
            J += reg / 2.0 * float(torch.dot(W, self.theta))
            self.G.add_(W.mul_(reg))
        if not math.isfinite(J):
            return not_finite(J, lambda: True)
        for keep, now in zip(self.backup, (self.theta, *self.slots), strict=True):
            keep.copy_(now)  # to undo an update that overflows
        self.rule.step(self.theta, self.G, self.slots, self.rule.scalars(self.count), self.work)
        if not sum_is_finite([self.theta]):
            for keep, now in zip(self.backup, (self.theta, *self.slots), strict=True):
                now.copy_(keep)
            return not_finite(J, lambda: sum_is_finite([self.G]))
        self.count += 1
        record(J, r)
        return ""

    def run(self, steps, record):
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            for step in steps:
                bad = self._step(step, record)
                if bad:
                    return bad
        return ""

    def state(self):
        params = self.layout.unpack(self.theta)
        unpack = self.layout.unpack
        return params, state_from_flat(self.template, self.count, self.slots, unpack)

    def gradients(self):
        return self.layout.unpack(self.G)
