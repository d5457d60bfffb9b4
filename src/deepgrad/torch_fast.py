"""The fast training loop of the torch backend: fused steps, CUDA graphs, no host syncs.

``fit(..., fast_path=None)`` uses it for torch networks on a CUDA device (``fast_path``
True/"eager" asks for it anywhere, False turns it off). The math is the seed's, the same as
``network.backward`` followed by plain gradient descent, rearranged so one step is about
30 kernels (11 of them matrix products) with no host synchronization:

- forward: ``Z = A @ W.T + b`` as one ``addmm`` (bias in the GEMM); for ReLU layers the
  activation too (``_addmm_activation``: cuBLASLt's bias+ReLU epilogue on CUDA);
- output: dZ^[L] is left unscaled, ``A^[L] - Y``, and its 1/m is folded into the update;
  the loss is kept as partial sums (sum softplus(z), z.y) written into a device buffer;
- update: gradient and step in one GEMM each. With decay = 1 - alpha lambda / m_reg,
  ``W <- decay W - (alpha / m) dZ^T A_prev`` is W - alpha (dW + lambda/m_reg W), the seed's
  update with its L2 term, and ``b <- b - (alpha / m) dZ^T 1`` is one matrix-vector product.
  dA^[l-1] = dZ^[l] W^[l] is taken before W^[l] changes; the activation derivative is one
  kernel read from A (ReLU: A > 0 exactly when Z > 0);
- the cost J^{t} = partials / m + lambda / (2 m_reg) ||W||^2 (one dot over the weights,
  which live in one flat buffer) is assembled for the whole epoch at its end, and read to
  the host once per epoch.

On CUDA, ``STEPS_PER_GRAPH`` consecutive steps are captured into one CUDA graph over static
buffers (the batch index slice and the loss partials) and replayed, so launches cost once
per graph, not per kernel. An epoch of n_full full batches and an optional tail batch runs
as repeats of the main graph plus one "rest" graph (the leftover full steps and the tail,
whose shape differs), both captured once per ``fit``. The same step function runs eagerly
on the CPU (and on CUDA with ``fast_path="eager"``); tests compare it with the generic loop.

Optional features (``FEATURES``; ``DEFAULT_FEATURES`` is what ``fit`` uses, chosen from
bench/gpu_variants.py's numbers): "gather" (one gather per graph into static buffers),
"triton" (the sigmoid/BCE output in one Triton kernel), "streams" (updates, loss and
||W||^2 on side streams inside the graph). None changes the arithmetic of a step.

Differences from the generic loop (documented choices):

- shuffling: each epoch's order is ``torch.randperm`` drawn on the device from a
  ``torch.Generator`` seeded with (seed, epoch): reproducible, but not the NumPy order
  (uploading NumPy's permutation would cost a host permutation and a copy every epoch);
  batches are not sorted within themselves (no memory map to be kind to);
- ``history.iteration_time`` is interpolated within each epoch (timing a step would need
  a host sync);
- on divergence (a non-finite cost), the parameters go back to the start of that epoch.
"""

from __future__ import annotations

import math
import time
from typing import Any, NamedTuple

import array_api_compat
import numpy as np

from .activations import LEAKY_SLOPE
from .torch_backend import import_torch

__all__ = [
    "STEPS_PER_GRAPH",
    "MODES",
    "FEATURES",
    "DEFAULT_FEATURES",
    "choose",
    "epoch_order",
    "step",
    "Trainer",
    "fit",
]

STEPS_PER_GRAPH = 16  # steps per CUDA graph (16 measured 0.355 s vs 64: 0.363 s on T1)
MODES = (None, True, False, "eager")

# Optional rearrangements of the step (same math; see ``Options``):
# "gather": one gather of X, Y per unit (STEPS_PER_GRAPH steps) into static buffers, then
#   each step reads contiguous slices (views): 2 kernels per unit, not 2 per step;
# "triton": sigmoid/BCE output: dZ = sigmoid(Z) - Y and the loss partial in one Triton kernel
#   (CUDA, float32, one output unit; otherwise the torch ops);
# "streams": on CUDA, the parameter updates, the loss partials and ||W||^2 run on two side
#   streams, off the critical path dZ -> dA -> dZ (joined at the end of every step).
FEATURES = ("gather", "triton", "streams")
# The features ``fit`` uses: the fastest agreeing set measured by bench/gpu_variants.py on an
# H200 (T1, batch 1000: 0.355 s/epoch with 16 steps per graph vs 0.618 s with none).
DEFAULT_FEATURES: tuple = ("gather", "triton", "streams")


def choose(fast_path, device, X, plain_gd: bool, keep_prob: float, callbacks) -> str | bool:
    """Which loop ``fit`` runs for a torch network: "graphs", "eager" or False."""
    if fast_path not in MODES:
        raise ValueError(f"fast_path must be one of {list(MODES)}, got {fast_path!r}")
    if fast_path is False:
        return False
    missing = []
    if not plain_gd:
        missing.append("optimizer='gd' with a constant learning_rate")
    if keep_prob < 1:
        missing.append("keep_prob=1 (no dropout)")
    if callbacks:
        missing.append("no callbacks (they need every step's values on the host)")
    if not array_api_compat.is_torch_array(X):
        missing.append("the training set on the device (it does not fit in its memory)")
    if fast_path is None:
        return "graphs" if device.type == "cuda" and not missing else False
    if missing:
        raise ValueError(f"fast_path={fast_path!r} needs " + "; ".join(missing))
    return "graphs" if device.type == "cuda" and fast_path is True else "eager"


def epoch_order(m: int, seed: int, epoch: int, out, generator) -> None:
    """Write the example order of ``epoch`` into ``out`` (int64, (m,)) on its device.

    ``torch.randperm`` from ``generator`` seeded by a hash of (seed, epoch): a pure
    function of (seed, epoch) on a given device type, drawn where the data lives.
    """
    torch = import_torch()
    key = np.random.SeedSequence([seed, epoch, 8]).generate_state(1, np.uint64)[0]
    generator.manual_seed(int(key >> np.uint64(1)))
    torch.randperm(m, generator=generator, device=out.device, out=out)


class FlatParams(NamedTuple):
    """Weights and biases as views into two flat buffers (one dot gives sum ||W||^2)."""

    W: list  # W[l-1] is W^[l], (n^[l], n^[l-1])
    b: list
    wflat: Any
    bflat: Any

    @classmethod
    def from_dict(cls, params: dict, L: int) -> FlatParams:
        torch = import_torch()
        Ws = [params[f"W{l}"] for l in range(1, L + 1)]
        bs = [params[f"b{l}"] for l in range(1, L + 1)]
        wflat, W = _flat_copy(torch, Ws)
        bflat, b = _flat_copy(torch, bs)
        return cls(W, b, wflat, bflat)

    def as_dict(self) -> dict:
        out = {}
        for l, (W, b) in enumerate(zip(self.W, self.b, strict=True), start=1):
            out[f"W{l}"], out[f"b{l}"] = W.clone(), b.clone()
        return out


ALIGN = 16  # elements: every view starts 64 (float32) or 128 (float64) bytes aligned


def _flat_copy(torch, arrays):
    """(flat buffer, views of it holding copies of ``arrays``); gaps stay 0, so a dot of
    the buffer with itself is the sum of the squares of the arrays."""
    offsets, o = [], 0
    for a in arrays:
        offsets.append(o)
        o += -(-a.numel() // ALIGN) * ALIGN  # aligned starts, as cuBLASLt prefers
    flat = torch.zeros(o, dtype=arrays[0].dtype, device=arrays[0].device)
    views = []
    for a, start in zip(arrays, offsets, strict=True):
        v = flat[start : start + a.numel()].view(a.shape)
        v.copy_(a)
        views.append(v)
    return flat, views


class Consts(NamedTuple):
    """Per-batch-size constants of a step (Python floats and static device tensors)."""

    lr_m: float  # alpha / m_b: dZ^[L]'s 1/m folded into the updates
    decay: float  # 1 - alpha lambda / m_reg: the L2 gradient folded into the update
    l2: bool
    ones: Any  # (m_b,) ones: db = dZ^T 1
    zeros: Any  # (m_b, n_out) zeros: softplus(z) = logaddexp(z, 0)


def make_consts(m_b, n_out, lr, l2, m_reg, dtype, device) -> Consts:
    torch = import_torch()
    m_reg = m_b if m_reg is None else m_reg
    return Consts(
        lr / m_b,
        1.0 - lr * l2 / m_reg,
        l2 > 0,
        torch.ones(m_b, dtype=dtype, device=device),
        torch.zeros((m_b, n_out), dtype=dtype, device=device),
    )


def _hidden_forward(name: str, b, A, W):
    torch = import_torch()
    if name == "relu":
        return torch._addmm_activation(b, A, W.T)  # bias and ReLU in the GEMM's epilogue
    Z = torch.addmm(b, A, W.T)
    if name == "tanh":
        return Z.tanh_()
    if name == "sigmoid":
        return Z.sigmoid_()
    if name == "leaky_relu":
        return torch.nn.functional.leaky_relu_(Z, LEAKY_SLOPE)
    return Z


def _hidden_backward(name: str, dA, A):
    """dZ = dA * g'(Z), one kernel, from A = g(Z) (A > 0 iff Z > 0 for the ReLU family)."""
    aten = import_torch().ops.aten
    if name == "relu":
        return aten.threshold_backward(dA, A, 0)
    if name == "leaky_relu":
        return aten.leaky_relu_backward(dA, A, LEAKY_SLOPE, True)
    if name == "tanh":
        return aten.tanh_backward(dA, A)  # dA (1 - A^2)
    if name == "sigmoid":
        return aten.sigmoid_backward(dA, A)  # dA A (1 - A)
    return dA


def _output_grad(name: str, Z, Y, parts, c: Consts):
    """A^[L] - Y (the canonical link's m dJ/dZ^[L]); loss partials into parts[0], parts[1].

    The summed loss is half**(linear) * (parts[0] - parts[1]):
    sigmoid/BCE: sum softplus(z) - z.y (= max(z,0) - z y + log1p(exp(-|z|)) per entry);
    softmax/CCE: 0 - Y.log_softmax(Z); linear/half MSE: 0.5 (D.D - 0), D = Z - Y.
    """
    torch = import_torch()
    if name == "sigmoid":
        torch.sum(torch.logaddexp(Z, c.zeros), dim=(0, 1), out=parts[0])
        torch.dot(Z.view(-1), Y.view(-1), out=parts[1])
        return torch.sigmoid(Z).sub_(Y)
    if name == "softmax":
        logp = torch.log_softmax(Z, dim=1)
        torch.dot(logp.view(-1), Y.view(-1), out=parts[1])
        return logp.exp_().sub_(Y)
    D = Z - Y
    torch.dot(D.view(-1), D.view(-1), out=parts[0])
    return D


class Options(NamedTuple):
    """The features a Trainer actually uses (``requested`` minus what cannot apply here)."""

    gather: bool = False
    triton: Any = None  # the Triton kernel (a callable) or None
    streams: Any = None  # (weights stream, biases/loss stream) or None

    @classmethod
    def resolve(cls, features, device, dtype, output: str, n_out: int) -> Options:
        features = tuple(features or ())
        bad = [f for f in features if f not in FEATURES]
        if bad:
            raise ValueError(f"features must be among {list(FEATURES)}, got {bad}")
        torch = import_torch()
        cuda = device.type == "cuda"
        kernel = None
        if "triton" in features and cuda and dtype == torch.float32:
            if output == "sigmoid" and n_out == 1:
                kernel = _triton_bce(device)
        streams = None
        if "streams" in features and cuda:
            streams = (torch.cuda.Stream(device), torch.cuda.Stream(device))
        return cls("gather" in features, kernel, streams)

    def names(self) -> list[str]:
        on = [("gather", self.gather), ("triton", self.triton), ("streams", self.streams)]
        return [n for n, v in on if v is not None and v is not False]


_TRITON_CACHE: dict = {}


def _triton_bce(device=None):
    """The fused sigmoid/BCE output kernel as ``f(Z, Y, dZ, parts)``, or None without Triton
    (or when a first launch on ``device`` fails: the reason is kept in
    ``_TRITON_CACHE["error"]``, and the torch ops are used).

    One program holds the whole batch (up to TRITON_MAX_ROWS): dZ = sigmoid(z) - y, and
    parts[0] = sum(max(z, 0) - z y + log(1 + exp(-|z|))), parts[1] = 0 (one deterministic
    block reduction, no atomics, nothing to zero first).
    """
    if "bce" in _TRITON_CACHE:
        return _TRITON_CACHE["bce"]
    try:
        import triton
        import triton.language as tl
    except ImportError:
        _TRITON_CACHE["bce"] = None
        return None

    @triton.jit
    def _bce_kernel(z_ptr, y_ptr, dz_ptr, parts_ptr, n, BLOCK: tl.constexpr):
        o = tl.arange(0, BLOCK)
        mask = o < n
        z = tl.load(z_ptr + o, mask=mask, other=0.0)
        y = tl.load(y_ptr + o, mask=mask, other=0.0)
        e = tl.exp(-tl.abs(z))
        r = 1.0 / (1.0 + e)
        s = tl.where(z >= 0, r, e * r)  # sigmoid(z), no overflow
        tl.store(dz_ptr + o, s - y, mask=mask)
        loss = tl.maximum(z, 0.0) - z * y + tl.log(1.0 + e)
        tl.store(parts_ptr, tl.sum(tl.where(mask, loss, 0.0), axis=0))
        tl.store(parts_ptr + 1, 0.0)

    def run(Z, Y, dZ, parts):
        block = max(16, triton.next_power_of_2(Z.numel()))
        _bce_kernel[(1,)](Z, Y, dZ, parts, Z.numel(), BLOCK=block, num_warps=8)

    if device is not None:  # compile and launch once here, outside any capture
        torch = import_torch()
        try:
            z = torch.linspace(-3, 3, 5, device=device).reshape(5, 1)
            y, dz, parts = torch.ones_like(z), torch.empty_like(z), torch.zeros(3, device=device)
            run(z, y, dz, parts)
            ok = torch.allclose(dz, torch.sigmoid(z) - y, atol=1e-6)
            if not ok:
                raise RuntimeError("the kernel's dZ differs from sigmoid(Z) - Y")
        except Exception as exc:  # noqa: BLE001 - any failure: fall back to torch ops
            _TRITON_CACHE["bce"], _TRITON_CACHE["error"] = None, f"{type(exc).__name__}: {exc}"
            return None
    _TRITON_CACHE["bce"] = run
    return run


TRITON_MAX_ROWS = 16384  # one program holds the whole batch; larger batches use torch ops


def _output_grad_fused(kernel, Z, Y, parts, c: Consts):
    """The Triton path of ``_output_grad`` (sigmoid/BCE, one output unit): one kernel."""
    torch = import_torch()
    if Z.numel() > TRITON_MAX_ROWS or not Y.is_contiguous():
        return _output_grad("sigmoid", Z, Y, parts, c)
    dZ = torch.empty_like(Z)
    kernel(Z, Y.reshape(Z.shape), dZ, parts)
    return dZ


def step(P: FlatParams, Xb, Yb, parts, c: Consts, hidden: str, output: str, opt=None) -> None:
    """One training step on the batch (Xb, Yb), updating P in place.

    Writes the loss partials and ||W||^2 (before the update) into ``parts`` (3,). Only
    device work, no host synchronization: safe to capture in a CUDA graph.
    """
    if opt is not None and opt.streams is not None:
        return _step_streams(P, Xb, Yb, parts, c, hidden, output, opt)
    torch = import_torch()
    acts = [Xb]  # A^[0] .. A^[L-1]
    L = len(P.W)
    for l in range(L - 1):
        acts.append(_hidden_forward(hidden, P.b[l], acts[-1], P.W[l]))
    ZL = torch.addmm(P.b[-1], acts[-1], P.W[-1].T)
    if opt is not None and opt.triton is not None and output == "sigmoid":
        dZ = _output_grad_fused(opt.triton, ZL, Yb, parts, c)
    else:
        dZ = _output_grad(output, ZL, Yb, parts, c)
    if c.l2:
        torch.dot(P.wflat, P.wflat, out=parts[2])  # the old W: J^{t} is this step's cost
    for l in range(L - 1, -1, -1):
        dA = torch.mm(dZ, P.W[l]) if l > 0 else None  # before W^[l] is updated
        P.W[l].addmm_(dZ.T, acts[l], beta=c.decay, alpha=-c.lr_m)
        P.b[l].addmv_(dZ.T, c.ones, alpha=-c.lr_m)
        if l > 0:
            dZ = _hidden_backward(hidden, dA, acts[l])
    return None


def _step_streams(P: FlatParams, Xb, Yb, parts, c: Consts, hidden, output, opt) -> None:
    """``step`` with the work off the critical path on two side streams (CUDA only).

    Main stream: forward, dZ^[L], then dA^[l-1] = dZ^[l] W^[l] and dZ^[l-1] per layer.
    Stream sw: ||W||^2 (old W), then W^[l]'s update once dA^[l-1] is enqueued before it.
    Stream sb: the loss partials, then b^[l]'s update. Both join the main stream at the
    end (the next forward needs the new W). Every tensor the side streams read is kept
    referenced (``keep``) until after the join, so the caching allocator cannot hand its
    memory to main-stream work while a side stream may still read it.
    """
    torch = import_torch()
    main = torch.cuda.current_stream(Xb.device)
    sw, sb = opt.streams
    acts = [Xb]
    L = len(P.W)
    for l in range(L - 1):
        acts.append(_hidden_forward(hidden, P.b[l], acts[-1], P.W[l]))
    ZL = torch.addmm(P.b[-1], acts[-1], P.W[-1].T)
    keep = [ZL, Yb]
    if opt.triton is not None and output == "sigmoid":
        dZ = _output_grad_fused(opt.triton, ZL, Yb, parts, c)
        sb.wait_stream(main)
    elif output == "sigmoid":
        sb.wait_stream(main)  # the loss partials beside dZ^[L]
        with torch.cuda.stream(sb):
            torch.sum(torch.logaddexp(ZL, c.zeros), dim=(0, 1), out=parts[0])
            torch.dot(ZL.view(-1), Yb.view(-1), out=parts[1])
        dZ = torch.sigmoid(ZL).sub_(Yb)
    else:
        dZ = _output_grad(output, ZL, Yb, parts, c)
        sb.wait_stream(main)
    sw.wait_stream(main)
    if c.l2:
        with torch.cuda.stream(sw):
            torch.dot(P.wflat, P.wflat, out=parts[2])
    for l in range(L - 1, -1, -1):
        keep.append(dZ)
        dA = torch.mm(dZ, P.W[l]) if l > 0 else None  # before W^[l] is updated
        sw.wait_stream(main)
        sb.wait_stream(main)
        with torch.cuda.stream(sw):
            P.W[l].addmm_(dZ.T, acts[l], beta=c.decay, alpha=-c.lr_m)
        with torch.cuda.stream(sb):
            P.b[l].addmv_(dZ.T, c.ones, alpha=-c.lr_m)
        if l > 0:
            dZ = _hidden_backward(hidden, dA, acts[l])
    main.wait_stream(sw)
    main.wait_stream(sb)
    del keep, acts  # only now: the side streams' reads are ordered before later main work


class _Unit:
    """A fixed run of steps over ``idx`` (a static slice of the epoch's order).

    ``segments`` is [(n_steps, batch_size), ...]. ``run`` copies the order slice into the
    static ``idx``, runs the steps (CUDA-graph replay once captured, else eagerly) and
    copies the static loss partials out.
    """

    def __init__(self, segments, P, X, Y, consts: dict, hidden, output, opt=None):
        torch = import_torch()
        self.segments = [(n, b) for n, b in segments if n > 0]
        self.rows = sum(n * b for n, b in self.segments)
        self.steps = sum(n for n, _ in self.segments)
        self.idx = torch.zeros(self.rows, dtype=torch.int64, device=X.device)
        self.parts = torch.zeros((self.steps, 3), dtype=X.dtype, device=X.device)
        self.opt = opt if opt is not None else Options()
        self.bufs = None
        if self.opt.gather:  # the unit's rows, gathered once per run (static buffers)
            self.bufs = (
                torch.empty((self.rows, *X.shape[1:]), dtype=X.dtype, device=X.device),
                torch.empty((self.rows, *Y.shape[1:]), dtype=Y.dtype, device=Y.device),
            )
        self.args = (P, X, Y, consts, hidden, output)
        self.graph = None

    def body(self) -> None:
        P, X, Y, consts, hidden, output = self.args
        torch = import_torch()
        if self.bufs is not None:
            torch.index_select(X, 0, self.idx, out=self.bufs[0])
            torch.index_select(Y, 0, self.idx, out=self.bufs[1])
        t = r = 0
        for n, b in self.segments:
            for _ in range(n):
                if self.bufs is None:
                    idx = self.idx[r : r + b]
                    Xb, Yb = X.index_select(0, idx), Y.index_select(0, idx)
                else:
                    Xb, Yb = self.bufs[0][r : r + b], self.bufs[1][r : r + b]
                step(P, Xb, Yb, self.parts[t], consts[b], hidden, output, self.opt)
                t, r = t + 1, r + b

    def run(self, order, parts_out) -> None:
        self.idx.copy_(order)
        if self.graph is None:
            self.body()
        else:
            self.graph.replay()
        parts_out.copy_(self.parts)


def capture(units: list, P: FlatParams, device) -> None:
    """Capture each unit's steps as a CUDA graph.

    Follows torch.cuda.graphs' rules: warm up on a side stream first (cuBLAS/cuBLASLt
    handles and workspaces, allocator) and capture on that same stream (as
    ``make_graphed_callables`` does), all inputs static, no host sync inside. The
    warm-up trains for real, so the parameters are saved before and restored after.
    """
    torch = import_torch()
    saved = (P.wflat.clone(), P.bflat.clone())
    try:
        side = torch.cuda.Stream(device)
        side.wait_stream(torch.cuda.current_stream(device))
        with torch.cuda.stream(side):
            for _ in range(2):
                for u in units:
                    u.body()
        torch.cuda.current_stream(device).wait_stream(side)
        for u in units:  # each graph has its own memory pool: no reuse hazards between them
            u.graph = _capture_one(torch, u, side)
    except RuntimeError as exc:
        raise RuntimeError(
            f"capturing the fast training loop in a CUDA graph failed ({exc}); "
            f"fit(..., fast_path='eager') runs it without graphs, fast_path=False runs the "
            f"generic loop"
        ) from exc
    finally:
        P.wflat.copy_(saved[0])
        P.bflat.copy_(saved[1])
        torch.cuda.synchronize(device)


def _capture_one(torch, unit: _Unit, stream):
    """One unit's steps as a CUDA graph (recorded, not run), captured on ``stream`` (the
    warm-up stream: its cuBLAS(Lt) handle and workspace already exist)."""
    g = torch.cuda.CUDAGraph()
    with torch.cuda.graph(g, stream=stream):
        unit.body()
    return g


class Trainer:
    """The fast loop's state for one ``fit``: parameters, schedule of units, buffers."""

    def __init__(self, params: dict, run, learning_rate: float, graphs: bool, features=None):
        torch = import_torch()
        X, Y, spec = run.X, run.Y, run.spec
        self.m, self.run, device = X.shape[0], run, X.device
        features = DEFAULT_FEATURES if features is None else features
        self.opt = Options.resolve(features, device, X.dtype, spec.output, spec.layer_sizes[-1])
        self.P = FlatParams.from_dict(params, spec.L)
        n_full, tail = divmod(self.m, run.batch_size)
        sizes = [run.batch_size] * n_full + ([tail] if tail else [])
        consts = {
            b: make_consts(
                b, spec.layer_sizes[-1], learning_rate, run.l2, run.m_reg, X.dtype, device
            )
            for b in set(sizes)
        }
        k = min(STEPS_PER_GRAPH, n_full)
        q, r = divmod(n_full, k)
        args = (self.P, X, Y, consts, spec.hidden_activation, spec.output, self.opt)
        rest = [(r, run.batch_size), (1 if tail else 0, tail)]
        self.units = [_Unit([(k, run.batch_size)], *args)] if q else []
        self.schedule = self.units * q
        if r or tail:
            self.units.append(_Unit(rest, *args))
            self.schedule.append(self.units[-1])
        self.sizes = sizes
        self.parts = torch.zeros((len(sizes), 3), dtype=X.dtype, device=device)
        half = 0.5 if spec.output == "linear" else 1.0
        sz = torch.tensor(sizes, dtype=X.dtype, device=device)
        m_reg = sz if run.m_reg is None else torch.full_like(sz, float(run.m_reg))
        self.loss_scale, self.pen_scale = half / sz, run.l2 / (2.0 * m_reg)
        self.order = torch.arange(self.m, device=device)
        self.generator = torch.Generator(device=device)
        if graphs:
            capture(self.units, self.P, device)

    def epoch(self, epoch: int) -> tuple[list[float], bool]:
        """Run one epoch; return (cost of every step, parameters all finite): one sync."""
        torch = import_torch()
        if self.run.shuffle:
            epoch_order(self.m, self.run.seed, epoch, self.order, self.generator)
        row = t = 0
        for u in self.schedule:
            u.run(self.order[row : row + u.rows], self.parts[t : t + u.steps])
            row, t = row + u.rows, t + u.steps
        p = self.parts
        costs = (p[:, 0] - p[:, 1]) * self.loss_scale + p[:, 2] * self.pen_scale
        ok = torch.isfinite(self.P.wflat).all() & torch.isfinite(self.P.bflat).all()
        values = torch.cat([costs, ok.to(costs.dtype).reshape(1)]).tolist()
        return values[:-1], bool(values[-1])

    def snapshot(self):
        return self.P.wflat.clone(), self.P.bflat.clone()

    def restore(self, snap) -> None:
        self.P.wflat.copy_(snap[0])
        self.P.bflat.copy_(snap[1])


def _record(history, costs: list, sizes: list, t_start: float, t_end: float) -> None:
    n = len(costs)
    seen = history.iteration_examples[-1] if history.iteration_examples else 0
    for i, (J, b) in enumerate(zip(costs, sizes, strict=False)):
        seen += b
        history.iteration_cost.append(J)
        history.iteration_time.append(t_start + (i + 1) / n * (t_end - t_start))
        history.iteration_examples.append(seen)


def fit(net, run, learning_rate, epochs, history, bar, validation, on_divergence, mode):
    """The fast loop behind ``training.fit`` (inputs already validated there)."""
    from .training import DivergenceError, _evaluate

    t0 = time.perf_counter()
    tr = Trainer(net.params, run, learning_rate, graphs=(mode == "graphs"))
    for epoch in range(epochs):
        snap = tr.snapshot()
        t_start = time.perf_counter() - t0
        costs, finite = tr.epoch(epoch)
        t_end = time.perf_counter() - t0
        bad = next((i for i, J in enumerate(costs) if not math.isfinite(J)), None)
        if bad is None and not finite:
            bad = len(costs)
        if bad is not None:
            tr.restore(snap)
            net.params = tr.P.as_dict()
            _record(history, costs[:bad], tr.sizes, t_start, t_end)
            what = f"the cost is {costs[bad]}" if bad < len(costs) else "a parameter is not finite"
            history.stopped = (
                f"diverged at epoch {epoch + 1}, iteration {history.iterations + 1}: {what}; "
                f"parameters restored to the start of the epoch; try a smaller learning rate"
            )
            if on_divergence == "raise":
                raise DivergenceError(history.stopped)
            break
        _record(history, costs, tr.sizes, t_start, t_end)
        history.epoch_cost.append(sum(J * b for J, b in zip(costs, tr.sizes, strict=True)) / tr.m)
        history.epoch_time.append(time.perf_counter() - t0)
        bar.update(len(costs))
        bar.set_postfix_str(f"cost {costs[-1]:.4f}", refresh=False)
        if validation is not None:
            vc, va = _evaluate(tr.P.as_dict(), run.spec, *validation, run.l2, net.dtype)
            history.val_cost.append(vc)
            history.val_accuracy.append(va)
    net.params = tr.P.as_dict()
    return history
