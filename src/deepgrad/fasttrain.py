"""The NumPy fast path of the training loop: the same math, with preallocated buffers.

``training.run_epoch`` hands an epoch to ``run_epoch`` here when ``why_not(run, params,
opt_state)`` is None, i.e. when everything is NumPy and the optimizer is plain gradient
descent (with any learning-rate schedule). The formulas are those of the generic path
(``network.forward/backward`` + ``optimizers.gd``); only the rounding differs (the bias
is added inside the matrix products, gradients are summed over row shards, and the L2
term is applied as a weight decay), so the parameters after N steps agree with the
generic path to rounding (tests check 1e-6 relative in float32, 1e-12 in float64).

What makes it faster (measured in bench/train_throughput.py, README):

- every matrix product writes into a preallocated array (``np.matmul(..., out=)``), and
  the bias is folded into them: each layer input carries a column of ones, so
  Z = [A | 1] [W | b]^T and [dW | db] = dZ^T [A | 1] (``_Layout``); no bias add, no db sum;
- ReLU and its derivative run in place on whole contiguous blocks (``_Shard``);
- the shuffled rows of a mini-batch are gathered straight into the first layer's input,
  ``np.take(X, idx, axis=0, out=...)``: no per-epoch copy of the data set, no per-step
  allocation, and it works unchanged on memory-mapped arrays;
- data-parallel row shards, one thread each with single-threaded BLAS (``n_shards``).
  Each thread keeps its own copy of all parameters as one flat vector and applies the
  same update to it, so a step needs a single barrier (``_worker``); the main thread
  also keeps the history, checks for divergence and calls callbacks;
- the update takes one pass less by writing the seed's theta - alpha (dtheta + (lambda/m) W)
  as (1 - alpha lambda/m) W - alpha dW (``_update``), into this module's own parameter
  vectors, so the dict the caller passed in is never modified.

Falls back to the generic path (``why_not`` says why) for: non-NumPy parameters (torch,
array_api_strict), dropout (keep_prob < 1), optimizers other than ``gd``, and custom
optimizers. The last partial batch, both L2 normalizations, every hidden activation and
every output are handled here (non-ReLU activations use the registry's functions, which
allocate).
"""

from __future__ import annotations

import math
import threading
import time
from typing import Any, NamedTuple

import numpy as np

from . import data as _data
from . import losses, optimizers
from . import network as nw
from ._checks import _all_finite

__all__ = ["why_not", "run_epoch", "n_shards"]


def why_not(run, params: dict, opt_state) -> str | None:
    """None if the fast path can run this epoch, else the reason it falls back."""
    if not all(type(p) is np.ndarray for p in params.values()):
        return "parameters are not NumPy arrays"
    if not isinstance(run.X, np.ndarray):
        return "X is not a NumPy array"
    if run.keep_prob < 1:
        return "dropout (keep_prob < 1) runs on the generic path"
    opt = run.optimizer
    if (
        opt.name != "gd"
        or opt.learning_rate is None
        or not isinstance(opt_state, optimizers.GDState)
    ):
        return f"optimizer {opt.name!r} runs on the generic path (fast path: gd only)"
    return None


class _Layout:
    """Every layer's [W | b] as one (n^[l], n^[l-1] + 1) block of one flat vector.

    The bias is folded into the matrix products: each layer input carries a column of
    ones (``_Shard.A``), so Z = [A | 1] [W | b]^T adds b inside the GEMM and
    dJ/d[W | b] = dZ^T [A | 1] yields db as the last column. One flat vector also makes
    the per-step work on all parameters (sum over shards, L2, update, finite check) a
    handful of whole-vector operations.
    """

    def __init__(self, sizes, dtype):
        self.shapes = [(sizes[l], sizes[l - 1] + 1) for l in range(1, len(sizes))]
        self.ends = np.cumsum([r * c for r, c in self.shapes]).tolist()
        self.size = self.ends[-1]
        self.dtype = dtype
        # 1 where an entry is a weight, 0 where it is a bias: the L2 term's mask
        self.wmask = np.ones(self.size, dtype)
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


class _Shard:
    """One thread's buffers, sized for its largest share of a mini-batch.

    A[l]: (rows, n^[l] + 1), the input of layer l + 1 with its column of ones (A[0] is the
    gathered X); ReLU's output overwrites Z in place. grad: two flat gradient vectors,
    used on alternate steps, so a shard can write step t + 1's while the others still
    read step t's.
    """

    def __init__(self, run, layout: _Layout, rows: int):
        sizes, dtype = run.spec.layer_sizes, layout.dtype
        hidden = sizes[1:-1]
        relu = run.spec.hidden_activation == "relu"
        self.A = [np.ones((rows, n + 1), dtype) for n in sizes[:-1]]
        self.raw = None if run.X.dtype == dtype else np.empty((rows, sizes[0]), run.X.dtype)
        self.Y = np.empty((rows, sizes[-1]), dtype)
        self.ZL = np.empty((rows, sizes[-1]), dtype)
        self.Z = [] if relu else [np.empty((rows, n), dtype) for n in hidden]  # Z for g'(Z)
        # ReLU works on whole (rows, n + 1) blocks, ones column included (max(1, 0) = 1),
        # which is contiguous and ~2x faster than on the (rows, n) part; dA has an extra
        # column for the same reason (never read). np.maximum against zeros is ~3x faster
        # than against the scalar 0 (NumPy 2.x: its SIMD loop needs two arrays).
        self.zeros = [np.zeros((rows, n + 1), dtype) for n in hidden] if relu else []
        self.mask = [np.empty((rows, n + 1), bool) for n in hidden] if relu else []
        self.dA = [np.zeros((rows, n + 1), dtype) for n in hidden]
        self.grad = [np.empty(layout.size, dtype) for _ in range(2)]
        self.grad_views = [layout.views(g) for g in self.grad]
        self.loss = [0.0, 0.0]

    def gather(self, run, idx):
        """(X rows into A[0], Y rows): ``idx`` of the data, in this shard's buffers."""
        r, n = len(idx), run.X.shape[1]
        Xb = self.A[0][:r, :n]
        if self.raw is None:
            np.take(run.X, idx, axis=0, out=Xb, mode="clip")  # idx is valid; no buffering
        else:
            np.copyto(Xb, np.take(run.X, idx, axis=0, out=self.raw[:r]), casting="unsafe")
        if run.check_batches and not np.isfinite(Xb).all():
            raise ValueError(f"X contains NaN or inf in rows {idx[~np.isfinite(Xb).all(1)][:5]}")
        return np.take(run.Y, idx, axis=0, out=self.Y[:r], mode="clip")


def _forward_backward(job, sh: _Shard, P: list, idx, r_total: int, g: list) -> float:
    """This shard's rows: gradients summed over them into ``g``; returns their loss sum.

    The formulas of ``network.forward/backward`` with dZ^[L] = (A^[L] - Y) / r_total.
    """
    spec, relu, act, out = job.spec, job.relu, job.act, job.out
    sizes, L = spec.layer_sizes, spec.L
    Y = sh.gather(job.run, idx)
    r, A = len(idx), sh.A
    for l in range(L - 1):
        n = sizes[l + 1]
        if relu:  # Z is not needed again: ReLU'(Z) > 0 exactly where A > 0
            np.matmul(A[l][:r], P[l].T, out=A[l + 1][:r, :n])
            np.maximum(A[l + 1][:r], sh.zeros[l][:r], out=A[l + 1][:r])
        else:
            Z = np.matmul(A[l][:r], P[l].T, out=sh.Z[l][:r])
            np.copyto(A[l + 1][:r, :n], act.forward(Z))
    ZL = np.matmul(A[L - 1][:r], P[L - 1].T, out=sh.ZL[:r])
    loss = float(out.loss_sum(ZL, Y))
    dZ = out.activation(ZL) - Y  # canonical link
    dZ /= r_total  # the mean over the whole mini-batch
    for l in range(L - 1, -1, -1):
        np.matmul(dZ.T, A[l][:r], out=g[l])  # [dW | db] = dZ^T [A | 1]
        if l > 0:
            n = sizes[l]
            W = P[l][:, :n]
            dA = sh.dA[l - 1][:r]
            if W.shape[0] == 1:  # one output unit: an outer product, exact either way;
                np.multiply(dZ, P[l], out=dA)  # whole rows (contiguous): last column unused
            else:
                np.matmul(dZ, W, out=dA[:, :n])
            if relu:
                mask = np.greater(A[l][:r], 0, out=sh.mask[l - 1][:r])
                dZ = np.multiply(dA, mask.view(np.uint8), out=dA)[:, :n]  # uint8: no bool loop
            else:
                dZ = act.backward(dA[:, :n], sh.Z[l - 1][:r], A[l][:r, :n])
    return loss


# -- data-parallel shards -----------------------------------------------------------------
# With 2+ cores, the batch is split into row shards computed at the same time by Python
# threads (NumPy and BLAS release the GIL), BLAS itself single-threaded: every operation
# then runs in parallel, the elementwise ones (ReLU, masks, sums) included, which
# multithreaded BLAS alone cannot do. Shard gradients are summed at the end of the step,
# so the numbers differ from one whole-batch product only by rounding order.
MIN_SHARD_ROWS = 64


def _blas_threads() -> int:
    """Threads NumPy's BLAS uses (1 if threadpoolctl is not installed: no sharding)."""
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return 1
    counts = [i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas"]
    return max(counts, default=1)


# A shard's work must outweigh waking a thread and one barrier per step (~50-100 us on
# a VM). Measured (2 cores, one epoch, 1 vs 2 shards, examples/s): [20, 64, 32, 1] at
# batch 128/256/1000 (1.3-10 MFLOP a shard): 1.09M/1.71M/2.07M vs 0.41M/0.72M/1.78M;
# T1 [100, 256, 128, 64, 1] at 128 (26 MFLOP): 187k vs 168k, at 256 (51 MFLOP): 212k vs
# 223k, at 1000 (200 MFLOP): 220k vs 352k.
MIN_SHARD_FLOPS = 40e6


def n_shards(batch_size: int, layer_sizes=None) -> int:
    """How many row shards a batch is split into: one per BLAS thread, >= 64 rows and (given
    the layer sizes) >= MIN_SHARD_FLOPS of forward and backward products each."""
    k = min(_blas_threads(), batch_size // MIN_SHARD_ROWS)
    if layer_sizes is not None:
        per_row = 6 * sum(a * b for a, b in zip(layer_sizes[:-1], layer_sizes[1:], strict=True))
        k = min(k, int(batch_size * per_row // max(MIN_SHARD_FLOPS, 1)))
    return max(1, k)


MAIN_FEWER_ROWS = 8


def _shard_rows(r: int, k: int) -> list[slice]:
    """Row ranges of the k shards of an r-row batch (fewer than k for tiny batches)."""
    if k > 1 and r >= 4 * MAIN_FEWER_ROWS * k:
        a = (r - MAIN_FEWER_ROWS * (k - 1)) // k  # the main thread's share
        step = -(-(r - a) // (k - 1))
        return [slice(0, a)] + [slice(s, min(s + step, r)) for s in range(a, r, step)]
    step = -(-r // k)
    return [slice(a, min(a + step, r)) for a in range(0, r, step)]


def _blas_limit():
    """Single-threaded BLAS during the epoch (each shard is one thread).

    Also with one shard (batches under 128 rows): on a loaded 2-core machine two BLAS
    threads on such small products spin-wait for each other and ran up to 5x slower.
    """
    from contextlib import nullcontext

    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        return nullcontext()
    return threadpool_limits(1, user_api="blas")


class _Job(NamedTuple):
    """What every thread of an epoch shares; only the main thread writes ``slots``."""

    run: Any
    spec: nw.Spec
    layout: _Layout
    shards: list
    relu: bool
    act: Any
    out: Any
    barrier: threading.Barrier | None
    slots: list  # slots[t % 2] = (idx, rows, lr, reg, decay) of step t; None after the last


def _shard_step(job: _Job, k: int, t: int, idx, rows: list, P: list) -> None:
    """Thread k's part of step t: the loss and gradients of its rows ``idx[rows[k]]``."""
    if k < len(rows):
        sh = job.shards[k]
        g = sh.grad_views[t % 2]
        sh.loss[t % 2] = _forward_backward(job, sh, P, idx[rows[k]], len(idx), g)


def _sum_gradients(job: _Job, t: int, n: int, G):
    """The mini-batch gradient of the data term: the n shards' gradients of step t summed.

    Every thread does exactly these operations in this order, so their copies of the
    parameters stay equal bit for bit.
    """
    grads = [sh.grad[t % 2] for sh in job.shards[:n]]
    if n == 1:
        return grads[0]
    np.add(grads[0], grads[1], out=G)
    for g in grads[2:]:
        G += g
    return G


def _update(flat, G, lr: float, decay, tmp, out) -> None:
    """out := the seed's theta - alpha (dJ/dtheta + (lambda/m) W), computed as
    decay * theta - alpha dJ/dtheta with decay = 1 - alpha lambda / m on the weights and 1
    on the biases (``decay`` None without L2): one pass fewer than adding (lambda/m) W to
    the gradient first. ``out`` may be ``flat``: the values are the same, bit for bit."""
    if decay is not None:
        flat = np.multiply(flat, decay, out=out)
    np.subtract(flat, np.multiply(G, lr, out=tmp), out=out)


def _worker(job: _Job, k: int, flat, errors: list) -> None:
    """Thread k >= 1: its own copy of the parameters, one barrier per step."""
    P = job.layout.views(flat)
    G, tmp = np.empty_like(flat), np.empty_like(flat)
    t = 0
    try:
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            while True:
                # Read step t's slot now: the main thread refills it after the barrier.
                idx, rows, lr, _, decay = job.slots[t % 2]
                _shard_step(job, k, t, idx, rows, P)
                job.barrier.wait()
                _update(flat, _sum_gradients(job, t, len(rows), G), lr, decay, tmp, flat)
                if job.slots[(t + 1) % 2] is None:
                    return
                t += 1
    except threading.BrokenBarrierError:
        return  # the main thread stopped the epoch (divergence, or an error it raises)
    except BaseException as exc:
        errors.append(exc)
        job.barrier.abort()


def run_epoch(run, params, opt_state, epoch, history, bar, callbacks, t0, start=0, hook=None):
    """One epoch on the fast path; same contract as ``training.run_epoch``.

    ``start``: mini-batches of this epoch already done (a resumed run): skipped.
    ``hook(epoch, batches_done, params, opt_state)``: called after every step (with copies).
    """
    from .activations import get as get_activation

    spec = run.spec
    layout = _Layout(spec.layer_sizes, np.asarray(params["W1"]).dtype)
    flat = layout.pack(params)  # this module's own copy, updated below
    bsize = min(run.batch_size, run.X.shape[0])
    k = n_shards(bsize, spec.layer_sizes)
    rows = max(s.stop - s.start for s in _shard_rows(bsize, k))
    shards = [_Shard(run, layout, rows) for _ in range(k)]
    relu = spec.hidden_activation == "relu"
    act, out = get_activation(spec.hidden_activation), losses.get(spec.output)
    barrier = threading.Barrier(k) if k > 1 else None
    job = _Job(run, spec, layout, shards, relu, act, out, barrier, [None, None])
    # The update can overflow too: divergence is reported, not warned (errstate is per
    # thread, so each worker sets its own).
    with _blas_limit(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
        return _epoch(job, flat, opt_state, epoch, history, bar, callbacks, t0, start, hook)


def _epoch(job: _Job, flat, opt_state, epoch, history, bar, callbacks, t0, start, hook):
    from .training import StepInfo, _epoch_so_far, divergence_message

    run, layout = job.run, job.layout
    schedule, count = run.optimizer.learning_rate, opt_state.count
    total, seen = _epoch_so_far(history, start)
    # Two parameter vectors, used in turn: step t reads one and writes its update into
    # the other, so a diverged update is dropped rather than undone.
    flats = [flat, np.empty_like(flat)]
    views = [layout.views(f) for f in flats]
    Gsum, tmp = np.empty_like(flat), np.empty_like(flat)
    decays, splits = {}, {}  # made once, never modified: a worker may be reading them

    def slot(idx, count):
        r = len(idx)
        lr, reg = schedule(count), run.l2 / (r if run.m_reg is None else run.m_reg)
        if r not in splits:
            splits[r] = _shard_rows(r, len(job.shards))
        if not reg:
            return idx, splits[r], lr, reg, None
        if (lr, reg) not in decays:  # a new array when they change (schedules)
            decays.clear()
            decay = np.multiply(layout.wmask, -lr * reg, dtype=flat.dtype)
            decay += 1  # 1 - alpha lambda / m on the weights, exactly 1 on the biases
            decays[(lr, reg)] = decay
        return idx, splits[r], lr, reg, decays[(lr, reg)]

    batches = _batches(run, epoch, start)
    first = next(batches, None)
    if first is None:
        history.epoch_cost.append(total / seen)
        return layout.unpack(flat), optimizers.GDState(count), True
    job.slots[0] = slot(first, count)
    errors, threads = [], []
    for k in range(1, len(job.shards)):
        th = threading.Thread(
            target=_worker, args=(job, k, flat.copy(), errors), name=f"deepgrad-shard-{k}"
        )
        th.start()
        threads.append(th)
    i, t, cur, ok, done = start, 0, 0, True, False
    sq = _weights_sq(flat, views[0])  # sum ||W||^2 of the parameters the step uses (L2)
    try:
        while True:
            idx, rows, lr, reg, decay = job.slots[t % 2]
            r = len(idx)
            _shard_step(job, 0, t, idx, rows, views[cur])
            nxt = next(batches, None)
            job.slots[(t + 1) % 2] = None if nxt is None else slot(nxt, count + 1)
            if job.barrier is not None:
                job.barrier.wait()
            G = _sum_gradients(job, t, len(rows), Gsum)
            loss = sum(sh.loss[t % 2] for sh in job.shards[: len(rows)])
            J = loss / r + (reg / 2.0 * sq if reg else 0.0)  # reg = lambda / m
            it = history.iterations
            if not math.isfinite(J):
                history.stopped = _divergence_message(epoch, it, J)
                ok = False
                break
            new = flats[1 - cur]
            _update(flats[cur], G, lr, decay, tmp, new)
            # A NaN or inf gradient makes the updated parameters non-finite too: one pass
            # checks them all and gives the next step's sum ||W||^2.
            sq = _weights_sq(new, views[1 - cur])
            if not (math.isfinite(sq) or _all_finite(new)):
                if _all_finite(G):
                    bad = "the updated parameters are not finite"
                    history.stopped = divergence_message(epoch, it, bad)
                else:
                    history.stopped = _divergence_message(epoch, it, J)
                ok = False
                break
            cur = 1 - cur
            count += 1
            seen += r
            total += J * r
            _record(history, J, r, t0, bar)
            if callbacks:  # the full gradient, L2 term included
                grads = layout.unpack(G + reg * layout.wmask * flats[1 - cur])
                for cb in callbacks:
                    cb(StepInfo(epoch, it, J, layout.unpack(flats[cur]), grads))
            i += 1
            if hook is not None:
                hook(epoch, i, layout.unpack(flats[cur]), optimizers.GDState(count))
            if nxt is None:
                done = True
                break
            t += 1
    except threading.BrokenBarrierError:
        if not errors:
            raise
    finally:
        if job.barrier is not None and not done:
            job.barrier.abort()  # workers waiting for a step that will not come stop
        for th in threads:
            th.join()
    if errors:  # a worker's own error, not the broken barrier it left the others
        raise errors[0]
    if ok:
        history.epoch_cost.append(total / seen)
    return layout.unpack(flats[cur]), optimizers.GDState(count), ok


def _weights_sq(flat, P: list) -> float:
    """sum ||W^[l]||^2 over layers (biases excluded): one pass over the parameters,
    non-finite if any of them is."""
    return float(np.dot(flat, flat)) - sum(float(np.dot(Wb[:, -1], Wb[:, -1])) for Wb in P)


# Drop the mapped pages of a memory-mapped X after reading this many bytes of rows. The
# pages mapped run ~4x ahead of the rows read (a block-shuffled batch touches a page per
# row): on the 5M x 100 set, 256 MiB gave a peak resident memory of 894 MB, 64 MiB 424 MB,
# at the same speed (13.3 s per epoch).
RELEASE_BYTES = 64 * 2**20


def _batches(run, epoch: int, start: int):
    """Yield the (sorted) row indices of each mini-batch of ``epoch`` from ``start`` on.

    The shards gather their own rows (``_Shard.gather``), in parallel. No background
    reader: one that gathered batch t+1 while batch t computed was measured slower (216k
    vs 290k examples/s on a memory-mapped 1M x 100 set, 2 cores): its thread competes
    with the compute threads, and a block-shuffled gather from the page cache costs only
    ~0.2 ms per 1,000 rows (README, "Data on disk").
    """
    m = run.X.shape[0]
    block = _data.shuffle_block(run.X)
    row_bytes, read = run.X.strides[0], 0
    for i, idx in enumerate(
        _data.batch_indices(m, run.batch_size, run.seed, epoch, run.shuffle, block)
    ):
        if i < start:
            continue
        yield idx
        read += len(idx) * row_bytes
        if read >= RELEASE_BYTES:
            _data.release_pages(run.X)
            read = 0


def _record(history, J: float, n: int, t0: float, bar) -> None:
    """Append step t's cost, time and examples seen, as the generic loop does."""
    t = history.iterations
    history.iteration_cost.append(J)
    history.iteration_time.append(time.perf_counter() - t0)
    prev = history.iteration_examples[-1] if history.iteration_examples else 0
    history.iteration_examples.append(prev + n)
    bar.update(1)
    if t % 20 == 0:
        bar.set_postfix_str(f"cost {J:.4f}", refresh=False)


def _divergence_message(epoch: int, t: int, J: float) -> str:
    from .training import divergence_message

    bad = f"the cost is {J}" if not math.isfinite(J) else "a gradient or parameter is not finite"
    return divergence_message(epoch, t, bad)
