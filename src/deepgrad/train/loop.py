"""The training loop: one loop for every engine.

``run_fit`` (called by ``train.api.fit`` and ``train.mpi``) validates the options,
builds the ``Plan`` (the fixed inputs of every step), picks an engine
(``engines.choose``) and sets it up once. The loop owns, for every engine alike: the
epochs and the epoch order (``data.batch_indices``, with the block shuffle for memory-
mapped data), the history, the progress bar, divergence (one wording, the last finite
parameters kept), validation, checkpoints and resume, and callbacks. An engine only runs
the steps it is given (``engines.base.Engine``).

Data-parallel training over MPI runs this same loop on every rank with a ``Group`` of
ranks (``train.mpi``); single-process training uses ``SOLO``.
"""

from __future__ import annotations

import math
import signal
import threading
import time
import warnings
from contextlib import contextmanager, nullcontext

import numpy as np

from deepgrad.core import network as nw
from deepgrad.core.backend import namespace, scalar
from deepgrad.core.checks import check_int, encode_targets
from deepgrad.data import arrays as _data
from deepgrad.devices import torch_backend as tb
from deepgrad.train import engines
from deepgrad.train.arguments import FitArguments, check_fit_arguments
from deepgrad.train.checkpoint import Checkpointer, training_config
from deepgrad.train.options import FitOptions
from deepgrad.train.progress import progress_bar
from deepgrad.train.stopping import EarlyStopping
from deepgrad.train.types import (
    DivergenceError,
    DivergenceWarning,
    History,
    Plan,
    Step,
    StepInfo,
    TrainingState,
    cost_rise,
    cost_rise_message,
    divergence_message,
)

__all__ = ["Solo", "SOLO", "run_fit", "epoch_steps", "evaluate"]


class Solo:
    """The group of one process: what the loop asks of a group of MPI ranks, trivially."""

    root = True

    def agree(self, fn, *args, **kwargs):
        return fn(*args, **kwargs)

    def bcast(self, value):
        return value

    def check_replicas(self, params, opt_state, epoch: int) -> None:
        pass

    def guard(self):
        return nullcontext()

    def engine(self, plan, params, opt_state, name):
        cls = engines.choose(plan, params, opt_state, name)
        return cls(plan, params, opt_state)


SOLO = Solo()


def _check_backend(net, X, Y, o: FitOptions) -> None:
    tb.check_inputs(net.params, X=X, Y=Y)  # no mixed NumPy/torch inputs
    val = o.validation_data
    if val is not None and isinstance(val, tuple | list):
        tb.check_inputs(
            net.params, **dict(zip(("validation X", "validation Y"), val, strict=False))
        )


def make_plan(net, args: FitArguments, o: FitOptions, seed: int) -> Plan:
    """The Plan of a fit: targets encoded once, torch data placed on the device once."""
    spec, X = net.spec, args.X
    W1 = net.params["W1"]
    if tb.backend_of(W1) == "torch":
        xp = namespace(W1)
        Yh = args.Y if tb.backend_of(args.Y) == "torch" else np.array(args.Y)  # writable copy
        Y = encode_targets(Yh, spec.output, spec.layer_sizes[-1], xp, W1.dtype, W1.device)
        X = tb.place_training_data(X, W1, net.dtype)
    else:
        Y = encode_targets(np.asarray(args.Y), spec.output, spec.layer_sizes[-1], np, net.dtype)
        Y = np.ascontiguousarray(Y)
    m_reg = args.X.shape[0] if o.l2_normalization == "dataset" else None
    return Plan(
        X, Y, spec, args.optimizer, args.batch_size, l2=args.l2, m_reg=m_reg,
        keep_prob=args.keep_prob, seed=seed, shuffle=bool(o.shuffle), dtype=net.dtype,
        check_batches=isinstance(args.X, np.memmap), order=args.order,
    )  # fmt: skip


def checkpoint_config(net, args: FitArguments, plan: Plan, o: FitOptions) -> dict:
    """The settings a checkpoint must share with this fit to be resumed by it."""
    learning_rate = o.learning_rate
    if not args.by_name:  # an Optimizer object: learning_rate is not used
        learning_rate = None
    elif callable(learning_rate):  # a schedule: its name (a closure's repr changes per run)
        per = getattr(learning_rate, "per", "step")
        rate = getattr(learning_rate, "rate", learning_rate)
        learning_rate = getattr(rate, "__qualname__", "schedule")
        learning_rate += " per epoch" if per == "epoch" else ""
    return training_config(
        net, args.X, args.Y, batch_size=plan.batch_size, l2=plan.l2,
        l2_normalization=o.l2_normalization, optimizer=plan.optimizer.name,
        learning_rate=learning_rate, keep_prob=plan.keep_prob, seed=plan.seed,
        shuffle=plan.shuffle,
        **({} if plan.order is None else {"order": plan.order.fingerprint}),
    )  # fmt: skip


def _open_checkpoint(o: FitOptions, root: bool):
    if o.checkpoint is None or not root:
        return None
    return Checkpointer(o.checkpoint, o.checkpoint_every)


def _seed(o: FitOptions, ckpt, group) -> int:
    seed = o.seed
    if seed is None and ckpt is not None:
        seed = ckpt.saved_seed
    if seed is None and group.root:
        seed = int(np.random.SeedSequence().entropy % (2**63))
    return check_int("seed", group.bcast(seed), 0)


def _resume(net, args, plan, o, ckpt, group):
    """(start epoch, batches done in it, params, opt_state, history): from the checkpoint
    (read by the root alone, then broadcast), else from the network's training state
    (continued training), else the start of training."""
    params, state = net.params, plan.optimizer.init(net.params)
    history = History(batch_size=plan.batch_size, seed=plan.seed)
    if o.checkpoint is None:
        start, state = carried_state(net, plan.optimizer, state)
        return start, 0, params, state, history

    def read():
        if ckpt is None:
            return None
        config = checkpoint_config(net, args, plan, o)
        batches = -(-args.X.shape[0] // plan.batch_size)
        return ckpt.resume(config, params, state, history, args.epochs, batches)

    got = group.agree(read)
    shared = group.bcast(got)
    return got if group.root else shared  # the root keeps the objects its checkpointer saves


def carried_state(net, optimizer, fresh) -> tuple[int, object]:
    """(epochs done, optimizer state) to go on from: the network's ``training`` when it
    was trained with this optimizer (its state checked against ``fresh``, the state
    ``optimizer.init`` makes for this network), else (0, fresh)."""
    training = getattr(net, "training", None)
    if training is None or training.optimizer != optimizer.name:
        return 0, fresh
    check_state_fits(training.opt_state, fresh)
    return check_int("training.epochs", training.epochs, 0), training.opt_state


def check_state_fits(state, fresh) -> None:
    """ValueError unless ``state`` has the structure of ``fresh`` (same fields, parameter
    names and shapes): an optimizer state for another network or optimizer."""

    def shape(tree):
        if isinstance(tree, dict):
            return {k: tuple(getattr(v, "shape", ())) for k, v in tree.items()}
        if isinstance(tree, tuple):
            return (type(tree).__name__, tuple(shape(v) for v in tree))
        return type(tree).__name__ if not isinstance(tree, int | np.integer) else "int"

    if shape(state) != shape(fresh):
        raise ValueError(
            f"net.training.opt_state does not fit this network and optimizer: got "
            f"{shape(state)!r}, this fit needs {shape(fresh)!r}; set net.training = None "
            f"to start the optimizer afresh"
        )


def run_fit(net, X, Y, o: FitOptions, group) -> History:
    """``fit`` on ``group`` (SOLO, or the ranks of an MPI job), options already gathered."""
    group.agree(_check_backend, net, X, Y, o)
    args = group.agree(check_fit_arguments, net, X, Y, o)
    ckpt = group.agree(_open_checkpoint, o, group.root)
    try:
        plan = group.agree(make_plan, net, args, o, _seed(o, ckpt, group))
        start_epoch, start, params, state, history = _resume(net, args, plan, o, ckpt, group)
        if plan.order is not None:  # before anything trains
            last = args.epochs if o.checkpoint is not None else start_epoch + args.epochs
            group.agree(plan.order.check, start_epoch, last)
        net.params = params
        with group.guard():
            eng = group.engine(plan, params, state, o.engine)
            history.engine = eng.name
            try:
                history = _epochs(
                    net, eng, plan, args, o, ckpt, group, (start_epoch, start), history
                )
            finally:
                eng.close()
        # A fit stopped by a divergence has said so already.
        rise = cost_rise(history.iteration_cost) if group.root and not history.stopped else None
        if rise is not None:
            lr = o.learning_rate if args.by_name else None
            warnings.warn(cost_rise_message(rise, lr, "learning_rate"), DivergenceWarning, 3)
        return history
    finally:
        if ckpt is not None:
            ckpt.close()  # the checkpoint's lock


class Recorder:
    """What happens after every step that is kept: the engine calls it with (J, rows)."""

    def __init__(self, history: History, bar, callbacks, ckpt, eng, epoch, done, t0):
        self.history, self.bar, self.callbacks, self.ckpt, self.eng = (
            history, bar, callbacks, ckpt, eng,
        )  # fmt: skip
        self.epoch, self.done, self.t0 = epoch, done, t0

    def __call__(self, J: float, rows: int) -> None:
        h = self.history
        t = h.iterations
        h.iteration_cost.append(J)
        h.iteration_time.append(time.perf_counter() - self.t0)
        h.iteration_examples.append((h.iteration_examples[-1] if t else 0) + rows)
        self.done += 1
        self.bar.update(1)
        if t % 20 == 0:
            self.bar.set_postfix_str(f"cost {J:.4f}", refresh=False)
        if self.ckpt is not None:  # before the callbacks: an interrupt in one keeps the step
            self.ckpt.step(self.epoch, self.done, self.eng.state)
        if self.callbacks:
            params = self.eng.state()[0]
            grads = self.eng.gradients()
            for cb in self.callbacks:
                cb(StepInfo(self.epoch, t, J, params, grads))


# Drop the mapped pages of a memory-mapped X after reading this many bytes of rows. The
# pages mapped run ~4x ahead of the rows read (a block-shuffled batch touches a page per
# row): on the 5M x 100 set, 256 MiB gave a peak resident memory of 894 MB, 64 MiB 424 MB,
# at the same speed.
RELEASE_BYTES = 64 * 2**20


def epoch_steps(plan: Plan, epoch: int, start: int = 0):
    """The steps of ``epoch`` from batch ``start`` on, in the one order of every engine."""
    X = plan.X
    block = _data.shuffle_block(X)  # block shuffle for memory-mapped X (see data.py)
    memmap = isinstance(X, np.memmap)
    read, row_bytes = 0, X.strides[0] if memmap else 0
    order = None if plan.order is None else plan.order(epoch)
    batches = _data.batch_indices(
        plan.m, plan.batch_size, plan.seed, epoch, plan.shuffle, block, order
    )
    for i, idx in enumerate(batches):
        if i < start:
            continue
        yield Step(epoch, i, idx)
        if memmap:
            read += len(idx) * row_bytes
            if read >= RELEASE_BYTES:
                _data.release_pages(X)
                read = 0


def _epoch_so_far(history: History, done: int) -> tuple[float, int]:
    """(sum of J * batch size, examples) over the last ``done`` iterations, summed in the
    order the epoch sums them, so a resumed epoch's mean cost is bit-for-bit the same."""
    return _cost_sum(history, history.iterations - done, history.iterations)


def _cost_sum(history: History, first: int, end: int) -> tuple[float, int]:
    """(sum of J * batch size, examples) over iterations first..end-1, in order."""
    total, seen = 0.0, 0
    examples = history.iteration_examples
    before = examples[first - 1] if first else 0
    for J, upto in zip(history.iteration_cost[first:end], examples[first:end], strict=True):
        size = upto - before
        seen += size
        total += J * size
        before = upto
    return total, seen


def _epochs(net, eng, plan, args, o, ckpt, group, at, history) -> History:
    start_epoch, start = at
    bar = progress_bar(args.epochs * _data.n_batches(plan.m, plan.batch_size),
                       o.progress if group.root else False)  # fmt: skip
    bar.update(history.iterations)
    callbacks = o.callbacks if group.root else ()
    t0 = time.perf_counter() - (history.iteration_time[-1] if history.iterations else 0.0)
    stopper = EarlyStopping(o.patience, o.monitor, o.min_delta) if o.early_stopping else None
    # What looks at the parameters at each epoch's end (a callback may read net.params).
    watch = args.validation is not None or bool(callbacks) or not isinstance(group, Solo)
    spans = None
    if not callbacks and eng.span_why_not() is None:
        spans = Spans(eng, plan, ckpt, whole_epochs=not (watch or ckpt is not None))
    try:
        last = args.epochs if o.checkpoint is not None else start_epoch + args.epochs
        epoch, done, early = start_epoch, start, False
        while epoch < last and not early:
            if spans is None:
                ok = _one_epoch(eng, plan, epoch, done, history, bar, callbacks, ckpt, t0)
                ended, done = int(ok), 0
            else:
                ended, done, ok = spans.run(epoch, done, last, history, bar, t0)
            for e in range(epoch, epoch + ended):
                early = _epoch_end(net, eng, args, o, ckpt, group, history, stopper, e, watch)
                if early:
                    break
            if not ok and not early:
                if o.on_divergence == "raise":
                    raise DivergenceError(history.stopped)
                break
            epoch += ended
    except KeyboardInterrupt:
        if ckpt is not None:
            ckpt.save()  # the last completed step; resume goes on from there
        raise
    finally:
        net.params, history.opt_state = eng.state()  # the last finite ones, also after an error
        # A checkpoint's history holds every epoch; a continued fit's only its own.
        epochs = len(history.epoch_cost) + (0 if o.checkpoint is not None else start_epoch)
        net.training = TrainingState(plan.optimizer.name, history.opt_state, epochs)
        bar.close()
    if stopper is not None and stopper.best_params is not None:
        net.params, history.best_epoch = stopper.best_params, stopper.best_epoch
    return history


def _epoch_end(net, eng, args, o, ckpt, group, history, stopper, epoch, watch) -> bool:
    """What follows each completed epoch; True if early stopping ends the fit here."""
    if watch:
        params, state = eng.state()
        net.params = params
        group.check_replicas(params, state, epoch)
    if args.validation is not None:
        ev = evaluate(params, net.spec, *args.validation, net.dtype) if group.root else None
        vc, va = group.bcast(ev)
        history.val_cost.append(vc)
        history.val_accuracy.append(va)
        value = vc if o.monitor == "val_cost" else va
        if stopper is not None and stopper.update(epoch, value, params):
            history.early_stopped = stopper.message()
            return True
    if ckpt is not None:
        ckpt.epoch_end(epoch + 1, eng.state)
    return False


def _one_epoch(eng, plan, epoch, done, history, bar, callbacks, ckpt, t0) -> bool:
    """Run one epoch from batch ``done``; False if it diverged (history.stopped says why)."""
    _data.check_unchanged(plan.X)  # a memory-mapped file that changed size: clear error
    first = history.iterations
    record = Recorder(history, bar, callbacks, ckpt, eng, epoch, done, t0)
    bad = eng.run(epoch_steps(plan, epoch, done), record)
    if bad:
        history.stopped = divergence_message(epoch, history.iterations, bad)
        return False
    total, seen = _epoch_so_far(history, done + history.iterations - first)
    history.epoch_cost.append(total / seen)
    history.epoch_time.append(time.perf_counter() - t0)
    return True


@contextmanager
def deferred_interrupt():
    """Ctrl-C inside the block is raised when it ends (in the main thread; elsewhere
    the block runs as it is): a span's steps and their history are kept together."""
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or previous is None:
        yield  # not set from Python: it cannot be put back
        return
    hit = []
    signal.signal(signal.SIGINT, lambda *_: hit.append(True))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if hit and callable(previous):
        previous(signal.SIGINT, None)  # Python's own handler raises KeyboardInterrupt
    elif hit and previous != signal.SIG_IGN:
        raise KeyboardInterrupt


class Spans:
    """Steps run many to an engine call (``Engine.run_span``), where nothing looks
    between them (no callbacks): the engine draws the loop's order itself.

    A span ends at the fit's end, at a checkpoint's ``every`` steps, and at each epoch's
    end when something looks at the epoch (``whole_epochs`` False: validation, a
    checkpoint, MPI). Its length doubles while a span takes under ``TARGET_S`` (so
    Ctrl-C, which waits for the compiled call, is answered within about that), up to
    ``MAX_STEPS``. The history is the one of single steps: each step's cost and
    examples, each epoch's mean cost; a step's time is spread evenly over its span.
    """

    TARGET_S = 0.05
    MAX_STEPS = 1 << 16

    def __init__(self, eng, plan: Plan, ckpt, whole_epochs: bool):
        self.eng, self.ckpt, self.whole_epochs = eng, ckpt, whole_epochs
        self.m, self.bs = plan.m, plan.batch_size
        self.nb = _data.n_batches(plan.m, plan.batch_size)
        self.limit = self.nb

    def run(self, epoch: int, done: int, last: int, history: History, bar, t0):
        """One span from batch ``done`` of ``epoch``: (epochs completed, batches done in
        the epoch it stopped in, False if it diverged)."""
        nb, ckpt = self.nb, self.ckpt
        n = min(self.limit, (last - epoch) * nb - done)
        if not self.whole_epochs:
            n = min(n, nb - done)
        if ckpt is not None and ckpt.every is not None:
            n = min(n, ckpt.every - history.iterations % ckpt.every)
        with deferred_interrupt():  # the engine's state and the history move together
            began = time.perf_counter()
            costs, bad = self.eng.run_span(epoch, done, n)
            now = time.perf_counter()
            k = len(costs)
            sizes = self._record(history, costs, epoch * nb + done, began - t0,
                                 (now - began) / max(1, k + bool(bad)))  # fmt: skip
            ended, at = divmod(done + k, nb)
            self._epoch_costs(history, costs, sizes, done, ended)
            if ckpt is not None and k:
                e_last, b_last = divmod(epoch * nb + done + k - 1, nb)
                ckpt.step(e_last, b_last + 1, self.eng.state)
        if now - began < self.TARGET_S and n == self.limit:
            self.limit = min(2 * self.limit, self.MAX_STEPS)
        bar.update(k)
        if k:
            bar.set_postfix_str(f"cost {costs[-1]:.4f}", refresh=False)
        if bad:
            history.stopped = divergence_message(epoch + ended, history.iterations, bad)
        return ended, at, not bad

    def _epoch_costs(self, history: History, costs, sizes, done: int, ended: int) -> None:
        """The mean cost of each epoch this span completed, summed in order as
        ``_cost_sum`` sums (a cumulative sum per epoch: the same bits); the epoch the
        span began in, when it began before the span, from the history."""
        if not ended:
            return
        nb, first = self.nb, history.iterations - len(costs)
        ends = np.arange(1, ended + 1) * nb - done  # span positions after each epoch
        means = []
        if done:
            total, seen = _cost_sum(history, first + ends[0] - nb, first + ends[0])
            means.append(total / seen)
        whole = slice(int(ends[0]) if means else 0, int(ends[-1]))  # whole epochs
        if whole.stop > whole.start:
            rows = sizes[whole].reshape(-1, nb)
            totals = np.cumsum(costs[whole].reshape(-1, nb) * rows, axis=1)[:, -1]
            means.extend((totals / rows.sum(axis=1)).tolist())
        history.epoch_cost.extend(means)
        history.epoch_time.extend(history.iteration_time[first + int(e) - 1] for e in ends)

    def _record(self, history: History, costs, g0: int, since: float, each: float):
        """The history of k kept steps, the first the g0-th batch of the fit's order;
        returns their batch sizes."""
        k = len(costs)
        b = (g0 + np.arange(k)) % self.nb
        sizes = np.minimum(self.bs, self.m - b * self.bs)
        before = history.iteration_examples[-1] if history.iterations else 0
        history.iteration_cost.extend(costs.tolist())
        history.iteration_time.extend((since + each * np.arange(1, k + 1)).tolist())
        history.iteration_examples.extend((before + np.cumsum(sizes)).tolist())
        return sizes


def evaluate(params, spec, X, Y_raw, dtype):
    """(validation loss without the L2 term, accuracy or nan) of these parameters."""
    xp = namespace(params["W1"])
    if tb.backend_of(params["W1"]) == "torch":
        Xv = tb.as_device_array(X, params["W1"])
    else:
        Xv = xp.asarray(np.asarray(X, dtype=dtype)) if xp is not namespace(X) else X
    Yv = encode_targets(Y_raw, spec.output, spec.layer_sizes[-1], xp, Xv.dtype, tb.device_of(Xv))
    ZL, _ = nw.forward(params, Xv, spec)
    # The data term alone: the L2 term's size depends on m, which differs between sets.
    J = scalar(nw.cost_from_output(ZL, Yv, params, spec, 0.0))
    if spec.output == "linear":
        return J, math.nan
    if spec.output == "softmax":
        acc = xp.mean(xp.astype(xp.argmax(ZL, axis=1) == xp.argmax(Yv, axis=1), Xv.dtype))
    else:
        acc = xp.mean(xp.astype((ZL > 0) == (Yv > 0.5), Xv.dtype))
    return J, scalar(acc)
