"""The NumPy fast path of the training loop: the same math, with preallocated buffers.

``training.run_epoch`` hands an epoch to ``run_epoch`` here when ``why_not(run, params,
opt_state)`` is None, i.e. when everything is NumPy and the optimizer is plain gradient
descent (with any learning-rate schedule). The formulas are those of the generic path
(``network.forward/backward`` + ``optimizers.gd``); only the summation order of a few
reductions differs (db as a GEMV, gradients summed over row shards), so the parameters
after N steps agree with the generic path to rounding (tests check 1e-6 relative in
float32, 1e-12 in float64).

What makes it faster (measured in bench/train_throughput.py, README):

- every matrix product writes into a preallocated array (``np.matmul(..., out=)``); ReLU
  and its derivative are done in place (A overwrites Z: ReLU'(Z) > 0 exactly where A > 0);
- the shuffled rows of a mini-batch are gathered straight into one buffer,
  ``np.take(X, idx, axis=0, out=Xb)``: no per-epoch copy of the data set, no per-step
  allocation, and it works unchanged on memory-mapped arrays;
- data-parallel row shards, one thread each with single-threaded BLAS (see ``n_shards``);
- the update is in place on this module's own copy of the parameters (taken at the start
  of the epoch), so the dict the caller passed in is still never modified.

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

import numpy as np

from . import data as _data
from . import losses, optimizers
from . import network as nw

__all__ = ["why_not", "run_epoch", "Buffers"]


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


class Buffers:
    """Arrays reused by every step of an epoch, sized for the largest batch.

    A[l-1]: (b, n^[l]) hidden activations (ReLU in place of Z); dA[l-1]: (b, n^[l]);
    mask[l-1]: (b, n^[l]) bool; gW/gb shaped like W/b.
    """

    def __init__(self, spec: nw.Spec, b: int, dtype):
        sizes = spec.layer_sizes
        hidden = sizes[1:-1]
        self.A = [np.empty((b, n), dtype) for n in hidden]
        self.dA = [np.empty((b, n), dtype) for n in hidden]
        self.mask = [np.empty((b, n), bool) for n in hidden]
        self.gW = [np.empty((sizes[l], sizes[l - 1]), dtype) for l in range(1, len(sizes))]
        self.gb = [np.empty(sizes[l], dtype) for l in range(1, len(sizes))]
        self.regW = [np.empty_like(g) for g in self.gW]
        self.ones = np.ones(b, dtype)


class _Slot:
    """One mini-batch's input buffers: X (b, n^[0]) in the net's dtype, Y (b, n^[L])."""

    def __init__(self, run, b: int, dtype):
        n = run.X.shape[1]
        self.X = np.empty((b, n), dtype)
        self.raw = None if run.X.dtype == self.X.dtype else np.empty((b, n), run.X.dtype)
        self.Y = np.empty((b, run.Y.shape[1]), dtype)

    def gather(self, run, idx, start: int = 0):
        """(Xb, Yb): rows ``idx`` of X and Y written into rows start:start+len(idx)."""
        sl = slice(start, start + len(idx))
        if self.raw is None:
            Xb = np.take(run.X, idx, axis=0, out=self.X[sl])
        else:
            np.take(run.X, idx, axis=0, out=self.raw[sl])
            Xb = self.X[sl]
            np.copyto(Xb, self.raw[sl], casting="unsafe")
        if run.check_batches and not np.isfinite(Xb).all():
            raise ValueError(f"X contains NaN or inf in rows {idx[~np.isfinite(Xb).all(1)][:5]}")
        return Xb, np.take(run.Y, idx, axis=0, out=self.Y[sl])


RELEASE_BYTES = 256 * 2**20  # drop mapped pages of a memory-mapped X after this much reading


def _batches(run, epoch: int):
    """Yield the (sorted) row indices of each mini-batch of ``epoch``.

    The shards gather their own rows (``_Slot.gather``), in parallel. No background
    reader: one that gathered batch t+1 while batch t computed was measured slower (216k
    vs 290k examples/s on a memory-mapped 1M x 100 set, 2 cores): its thread competes
    with the compute threads, and a block-shuffled gather from the page cache costs only
    ~0.2 ms per 1,000 rows (README, "Data on disk").
    """
    m = run.X.shape[0]
    block = _data.shuffle_block(run.X)
    row_bytes, read = run.X.strides[0], 0
    for idx in _data.batch_indices(m, run.batch_size, run.seed, epoch, run.shuffle, block):
        yield idx
        read += len(idx) * row_bytes
        if read >= RELEASE_BYTES:
            _data.release_pages(run.X)
            read = 0


def _forward(W: list, b: list, Xb, spec: nw.Spec, buf: Buffers, relu: bool, act, ZL):
    """Fill ZL (r, n^[L]) with Z^[L]; return the layer inputs [A^[0], ..., A^[L-1]]."""
    r = Xb.shape[0]
    inputs, Zpre = [Xb], []
    A = Xb
    for l in range(spec.L - 1):
        Z = np.matmul(A, W[l].T, out=buf.A[l][:r])
        Z += b[l]
        if relu:
            A = np.maximum(Z, 0, out=Z)  # Z is not needed again: ReLU'(Z) > 0 iff A > 0
        else:
            Zpre.append(Z)  # buf.A[l] is not written again in this step
            A = act.forward(Z)
        inputs.append(A)
    np.matmul(A, W[-1].T, out=ZL)
    ZL += b[-1]
    return inputs, Zpre


def _backward(W: list, dZ, inputs, Zpre, spec, buf: Buffers, relu: bool, act) -> None:
    """This shard's part of the gradients, sum over its rows, into ``buf.gW``/``buf.gb``.

    dZ: (r, n^[L]) rows of dJ/dZ^[L] = (A^[L] - Y) / m; the formulas of ``network.backward``.
    """
    r = dZ.shape[0]
    for l in range(spec.L - 1, -1, -1):
        np.matmul(dZ.T, inputs[l], out=buf.gW[l])
        np.matmul(buf.ones[:r], dZ, out=buf.gb[l])  # db = sum_i dZ_i, as a BLAS GEMV
        if l > 0:
            if W[l].shape[0] == 1:  # one output unit: an outer product, exact either way
                dA = np.multiply(dZ, W[l], out=buf.dA[l - 1][:r])
            else:
                dA = np.matmul(dZ, W[l], out=buf.dA[l - 1][:r])
            if relu:
                mask = np.greater(inputs[l], 0, out=buf.mask[l - 1][:r])
                dZ = np.multiply(dA, mask.view(np.uint8), out=dA)  # uint8: no bool cast loop
            else:
                dZ = act.backward(dA, Zpre[l - 1], inputs[l])


# -- data-parallel shards -----------------------------------------------------------------
# With 2+ cores, the batch is split into row shards computed at the same time by Python
# threads (NumPy and BLAS release the GIL), BLAS itself single-threaded: every operation
# then runs in parallel, the elementwise ones (bias, ReLU, masks, sums) included, which
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


def n_shards(batch_size: int) -> int:
    """How many row shards a batch is split into: one per BLAS thread, >= 64 rows each."""
    return max(1, min(_blas_threads(), batch_size // MIN_SHARD_ROWS))


def _shard_rows(r: int, k: int) -> list[slice]:
    step = -(-r // k)
    return [slice(a, min(a + step, r)) for a in range(0, r, step)]


class _Pool:
    """Runs one function per shard: shard 0 in this thread, the rest in worker threads."""

    def __init__(self, k: int):
        from concurrent.futures import ThreadPoolExecutor

        self.executor = ThreadPoolExecutor(k - 1, "deepgrad-shard") if k > 1 else None

    def map(self, fn, args: list) -> None:
        futures = [self.executor.submit(fn, *a) for a in args[1:]] if self.executor else []
        errors = []
        try:
            fn(*args[0])
        except BaseException as exc:  # wait for the others before raising
            errors.append(exc)
        for f in futures:
            try:
                f.result()
            except BaseException as exc:
                errors.append(exc)
        if errors:  # the shard's own error, not the broken barrier it left the others
            real = [e for e in errors if not isinstance(e, threading.BrokenBarrierError)]
            raise (real or errors)[0]

    def close(self) -> None:
        if self.executor is not None:
            self.executor.shutdown()


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


def _groups(arrays, n: int) -> list[list[int]]:
    """Indices of ``arrays`` split into n groups of about equal total size (greedy)."""
    groups, load = [[] for _ in range(n)], [0] * n
    for j in sorted(range(len(arrays)), key=lambda j: -arrays[j].size):
        k = load.index(min(load))
        groups[k].append(j)
        load[k] += arrays[j].size
    return groups


def _step(run, W, b, shards, pool, slot, idx, ZL, relu, act, reg):
    """Gather, forward, cost and backward of one mini-batch: (J, gW, gb, all finite).

    Each shard gathers its rows and runs them through forward, the output layer's loss,
    dZ^[L] = (A^[L] - Y) / r and backward; after one barrier each shard then sums a share
    of the parameters' gradients over the shards, adds the L2 term, and checks them.
    """
    spec, r = run.spec, len(idx)
    out = losses.get(spec.output)
    rows = _shard_rows(r, len(shards))
    n, L = len(rows), spec.L
    params = (*W, *b)
    grads = [(*sh.gW, *sh.gb) for sh in shards[:n]]
    groups = _groups(params, n)
    barrier = threading.Barrier(n) if n > 1 else None
    loss, sq, finite = [0.0] * n, [0.0] * n, [True] * n

    def task(k, sl):
        # Overflow shows up as a non-finite cost or gradient (divergence), not as a warning;
        # errstate is per thread, so each shard sets it.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            try:
                Xs, Ys = slot.gather(run, idx[sl], sl.start)
                ZLs = ZL[sl]
                inputs, Zpre = _forward(W, b, Xs, spec, shards[k], relu, act, ZLs)
                loss[k] = float(out.loss_sum(ZLs, Ys))
                dZ = (out.activation(ZLs) - Ys) / r  # canonical link, mean over the batch
                _backward(W, dZ, inputs, Zpre, spec, shards[k], relu, act)
            except BaseException:
                if barrier is not None:
                    barrier.abort()  # the other shards stop waiting
                raise
            if barrier is not None:
                barrier.wait()
            for j in groups[k]:
                acc = grads[0][j]
                for other in grads[1:]:
                    acc += other[j]
                if j < L and run.l2:
                    sq[k] += float(np.vdot(params[j], params[j]))  # for the L2 term of J
                    acc += np.multiply(params[j], reg, out=shards[0].regW[j])
                # A sum is finite only if every term is (overflow of the sum is re-checked).
                finite[k] &= math.isfinite(float(acc.sum())) or bool(np.isfinite(acc).all())

    pool.map(task, list(enumerate(rows)))
    m_reg = r if run.m_reg is None else run.m_reg
    J = sum(loss) / r + run.l2 / (2.0 * m_reg) * sum(sq)
    ok = all(finite) and math.isfinite(J)
    return J, grads[0][:L], grads[0][L:], ok


def run_epoch(run, params, opt_state, epoch, history, bar, callbacks, t0, start=0, hook=None):
    """One epoch on the fast path; same contract as ``training.run_epoch``.

    ``start``: mini-batches of this epoch already done (a resumed run): skipped.
    ``hook(epoch, batches_done, params, opt_state)``: called after every step (with copies).
    """
    spec = run.spec
    names = nw.param_names(spec.L)
    own = {k: np.array(params[k], copy=True) for k in names}  # updated in place below
    bsize = min(run.batch_size, run.X.shape[0])
    k = n_shards(bsize)
    dtype = own["W1"].dtype
    shards = [Buffers(spec, -(-bsize // k), dtype) for _ in range(k)]
    ZL = np.empty((bsize, spec.layer_sizes[-1]), dtype)
    pool = _Pool(k)
    try:
        # The update can overflow in this thread too: divergence is reported, not warned.
        with _blas_limit(), np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            ctx = (own, names, shards, pool, ZL, start, hook)
            return _epoch(run, ctx, opt_state, epoch, history, bar, callbacks, t0)
    finally:
        pool.close()


def _epoch(run, ctx, opt_state, epoch, history, bar, callbacks, t0):
    from .activations import get as get_activation
    from .training import StepInfo, _epoch_so_far, divergence_message

    own, names, shards, pool, ZL, start, hook = ctx
    spec = run.spec
    W = [own[f"W{l}"] for l in range(1, spec.L + 1)]
    b = [own[f"b{l}"] for l in range(1, spec.L + 1)]
    relu, act = spec.hidden_activation == "relu", get_activation(spec.hidden_activation)
    schedule, count = run.optimizer.learning_rate, opt_state.count
    total, seen = _epoch_so_far(history, start)
    slot = _Slot(run, ZL.shape[0], W[0].dtype)
    backup = [np.empty_like(p) for p in (*W, *b)]
    for i, idx in enumerate(_batches(run, epoch)):
        if i < start:
            continue
        reg = run.l2 / (len(idx) if run.m_reg is None else run.m_reg)
        J, gW, gb, finite = _step(run, W, b, shards, pool, slot, idx, ZL, relu, act, reg)
        t = history.iterations
        if not finite:
            history.stopped = _divergence_message(epoch, t, J)
            return _result(own, names), optimizers.GDState(count), False
        grads = _grads_copy(gW, gb) if callbacks else None
        lr = schedule(count)
        for p, g, keep in zip((*W, *b), (*gW, *gb), backup, strict=True):
            np.copyto(keep, p)  # ~1% of a step: lets a diverged update be undone exactly
            p -= np.multiply(g, lr, out=g)  # the seed's theta := theta - alpha * d_theta
        if not all(np.isfinite(np.sum(p)) for p in (*W, *b)):
            for p, keep in zip((*W, *b), backup, strict=True):
                np.copyto(p, keep)
            history.stopped = divergence_message(epoch, t, "the updated parameters are not finite")
            return _result(own, names), optimizers.GDState(count), False
        count += 1
        seen += len(idx)
        total += J * len(idx)
        _record(history, J, len(idx), t0, bar)
        for cb in callbacks:
            cb(StepInfo(epoch, t, J, _result(own, names), grads))
        if hook is not None:
            hook(epoch, i + 1, _result(own, names), optimizers.GDState(count))
    history.epoch_cost.append(total / seen)
    return _result(own, names), optimizers.GDState(count), True


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


def _result(own: dict, names) -> dict:
    """A fresh dict of copies: what callers get can never change under them."""
    return {k: own[k].copy() for k in names}


def _grads_copy(gW: list, gb: list) -> dict:
    out = {}
    for l in range(1, len(gW) + 1):
        out[f"W{l}"] = gW[l - 1].copy()
        out[f"b{l}"] = gb[l - 1].copy()
    return out
