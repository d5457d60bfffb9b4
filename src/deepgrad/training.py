"""Training: step -> epoch -> fit.

``train_step`` is one forward, cost, backward and optimizer update on one mini-batch;
``run_epoch`` walks the shuffled mini-batches of one epoch; ``fit`` validates the inputs,
loops over epochs and records a ``History``.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from typing import Any, NamedTuple

import numpy as np

from . import data as _data
from . import dropout, fasttrain, optimizers
from . import network as nw
from . import torch_backend as _tb
from ._backend import namespace, scalar
from ._checks import (
    as_2d_float,
    check_fits_dtype,
    check_float,
    check_int,
    check_targets,
    encode_targets,
)
from ._progress import progress_bar

__all__ = ["History", "StepInfo", "DivergenceError", "train_step", "run_epoch", "fit"]

L2_NORMALIZATIONS = ("batch", "dataset")


class DivergenceError(FloatingPointError):
    """The cost or a gradient became NaN or inf during training."""


@dataclass
class History:
    """What ``fit`` recorded.

    iteration_cost[t] is J^{t}, the cost of mini-batch t computed by the forward pass the
    step already did (with dropout, if any). epoch_cost[e] is the example-weighted mean of
    the mini-batch costs of epoch e. iteration_time[t] is seconds since fit started and
    iteration_examples[t] the examples seen so far, for cost-vs-time/examples plots.
    """

    batch_size: int
    seed: int
    iteration_cost: list[float] = field(default_factory=list)
    iteration_time: list[float] = field(default_factory=list)
    iteration_examples: list[int] = field(default_factory=list)
    epoch_cost: list[float] = field(default_factory=list)
    epoch_time: list[float] = field(default_factory=list)
    val_cost: list[float] = field(default_factory=list)
    val_accuracy: list[float] = field(default_factory=list)
    stopped: str | None = None

    @property
    def iterations(self) -> int:
        return len(self.iteration_cost)

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in self.__dataclass_fields__}


class StepInfo(NamedTuple):
    """Passed to each callback after every step."""

    epoch: int
    iteration: int  # counted from 0 over the whole fit
    cost: float
    params: dict
    grads: dict


def train_step(params, opt_state, Xb, Yb, spec, optimizer, l2=0.0, m_reg=None, masks=None):
    """One step of (mini-)batch gradient descent: returns (J, grads, params, opt_state)."""
    J, grads = nw.cost_and_gradients(params, Xb, Yb, spec, l2, m_reg, masks)
    new_params, opt_state = optimizer.update(grads, opt_state, params)
    return J, grads, new_params, opt_state


def _finite(grads: dict) -> bool:
    xp = namespace(*grads.values())
    return all(bool(xp.all(xp.isfinite(g))) for g in grads.values())


def _sum_finite(arrays: dict) -> bool:
    """All entries finite, by one reduction per array: NaN and inf propagate into a sum (a
    sum that overflows needs entries near the dtype's largest value: diverged as well).
    About half the time of isfinite + all per array."""
    values = list(arrays.values())
    with np.errstate(over="ignore", invalid="ignore"):  # the inf is the answer, not a warning
        if all(isinstance(a, np.ndarray) for a in values):
            return math.isfinite(sum(float(a.sum()) for a in values))
        xp = namespace(*values)
        return math.isfinite(sum(scalar(xp.sum(a)) for a in values))


def _divergence(J: float, grads: dict, new_params: dict) -> str:
    """What is not finite after a step ('' when all is well): the cost, a gradient, or the
    updated parameters (a finite gradient times a huge learning rate can overflow). A NaN or
    inf gradient reaches the updated parameters, so one check of those covers both."""
    if not math.isfinite(J):
        return f"the cost is {J}"
    if _sum_finite(new_params):
        return ""
    if not _finite(grads):
        return "a gradient is not finite"
    return "the updated parameters are not finite"


class _Run(NamedTuple):
    """Fixed inputs of one fit: data, targets and the settings of every step."""

    X: Any
    Y: Any  # encoded (m, n_out), NumPy
    spec: nw.Spec
    optimizer: optimizers.Optimizer
    batch_size: int
    l2: float
    m_reg: int | None
    keep_prob: float
    seed: int
    shuffle: bool
    dtype: str
    xp: Any
    check_batches: bool


def _batch(run: _Run, idx):
    if _tb.backend_of(run.Y) == "torch":  # torch backend (issue 8): Y lives on the device
        return _tb.gather_batch(run.X, run.Y, idx, run.dtype, run.check_batches)
    Xb = run.X[idx]
    if run.check_batches and not np.all(np.isfinite(Xb)):
        raise ValueError(f"X contains NaN or inf in rows {idx[~np.isfinite(Xb).all(1)][:5]}")
    Xb = np.asarray(Xb, dtype=run.dtype)
    Yb = run.Y[idx]
    if run.xp is not namespace(Xb):
        Xb, Yb = run.xp.asarray(Xb), run.xp.asarray(Yb)
    return Xb, Yb


def _epoch_so_far(history: History, start: int) -> tuple[float, int]:
    """(sum of J * batch size, examples) over the last ``start`` iterations, summed in the
    order run_epoch sums them, so a resumed epoch's mean cost is bit-for-bit the same."""
    total, seen = 0.0, 0
    examples = [0, *history.iteration_examples]
    for t in range(history.iterations - start, history.iterations):
        size = examples[t + 1] - examples[t]
        seen += size
        total += history.iteration_cost[t] * size
    return total, seen


def divergence_message(epoch: int, t: int, bad: str) -> str:
    """The one wording of a divergence, for every training path."""
    return (
        f"diverged at epoch {epoch + 1}, iteration {t + 1}: {bad}; the last finite "
        f"parameters (before this step) are kept; try a smaller learning rate"
    )


def run_epoch(run: _Run, params, opt_state, epoch, history, bar, callbacks, t0, start=0, hook=None):
    """One pass over all mini-batches of ``epoch``; returns (params, opt_state, ok).

    ``start``: mini-batches of this epoch already done (resuming from a checkpoint): they
    are skipped, their dropout masks drawn and dropped so later masks are the same.
    ``hook(epoch, batches_done, params, opt_state)`` runs after every step (checkpoints).
    """
    _data.check_unchanged(run.X)  # a memory-mapped file that changed size: clear error
    if fasttrain.why_not(run, params, opt_state) is None:  # same numbers, preallocated buffers
        return fasttrain.run_epoch(
            run, params, opt_state, epoch, history, bar, callbacks, t0, start=start, hook=hook
        )
    m = run.X.shape[0]
    drop_rng = np.random.default_rng([run.seed, epoch, 1]) if run.keep_prob < 1 else None
    total, seen = _epoch_so_far(history, start)
    block = _data.shuffle_block(run.X)  # block shuffle for memory-mapped X (see data.py)
    batches = _data.batch_indices(m, run.batch_size, run.seed, epoch, run.shuffle, block)
    for i, idx in enumerate(batches):
        if i < start:
            if drop_rng is not None:
                dropout.draw_masks(drop_rng, len(idx), run.spec.hidden_sizes, run.keep_prob)
            continue
        Xb, Yb = _batch(run, idx)
        masks = None
        if drop_rng is not None:
            masks = dropout.draw_masks(
                drop_rng,
                len(idx),
                run.spec.hidden_sizes,
                run.keep_prob,
                run.xp,
                run.dtype,
                device=_tb.device_of(Xb),
            )
        # Overflow is detected below and reported as divergence, not as a NumPy warning.
        with np.errstate(over="ignore", invalid="ignore", divide="ignore"):
            J, grads, new_params, new_state = train_step(
                params, opt_state, Xb, Yb, run.spec, run.optimizer, run.l2, run.m_reg, masks
            )
        J = scalar(J)
        t = history.iterations
        bad = _divergence(J, grads, new_params)
        if bad:
            history.stopped = divergence_message(epoch, t, bad)
            return params, opt_state, False
        params, opt_state = new_params, new_state
        seen += len(idx)
        total += J * len(idx)
        history.iteration_cost.append(J)
        history.iteration_time.append(time.perf_counter() - t0)
        history.iteration_examples.append(
            (history.iteration_examples[-1] if history.iteration_examples else 0) + len(idx)
        )
        bar.update(1)
        if t % 20 == 0:
            bar.set_postfix_str(f"cost {J:.4f}", refresh=False)
        for cb in callbacks:
            cb(StepInfo(epoch, t, J, params, grads))
        if hook is not None:
            hook(epoch, i + 1, params, opt_state)
    history.epoch_cost.append(total / seen)
    return params, opt_state, True


def _resolve_batch_size(batch_size, m: int) -> int:
    if batch_size is None:
        return m  # batch gradient descent
    if batch_size == "auto":
        return min(64, m)
    b = check_int("batch_size", batch_size, 1)
    if b > m:
        raise ValueError(
            f"batch_size must be <= the number of examples ({m}), got {b}; "
            f"use batch_size=None for batch gradient descent"
        )
    return b


def _evaluate(params, spec, X, Y_raw, l2, dtype):
    """(validation loss without the L2 term, accuracy or nan) of the current parameters."""
    xp = namespace(params["W1"])
    if _tb.backend_of(params["W1"]) == "torch":  # torch backend (issue 8)
        Xv = _tb.as_device_array(X, params["W1"])
    else:
        Xv = xp.asarray(np.asarray(X, dtype=dtype)) if xp is not namespace(X) else X
    Yv = encode_targets(
        Y_raw, spec.output, spec.layer_sizes[-1], xp, Xv.dtype, device=_tb.device_of(Xv)
    )
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


def fit(
    net,
    X,
    Y,
    *,
    batch_size: int | str | None = "auto",
    epochs: int = 10,
    learning_rate: float = 0.1,
    l2: float = 0.0,
    l2_normalization: str = "batch",
    optimizer: str | optimizers.Optimizer = "gd",
    keep_prob: float = 1.0,
    seed: int | None = None,
    shuffle: bool = True,
    validation_data: tuple | None = None,
    callbacks=(),
    on_divergence: str = "raise",
    progress: bool | None = None,
    checkpoint=None,
    checkpoint_every: int | None = None,
    distributed: bool = False,
    fast_path: bool | str | None = None,
) -> History:
    """Train ``net`` in place with (mini-)batch gradient descent and return its History.

    Parameters
    ----------
    X : (m, n^[0]) array or memory-mapped .npy array.
    Y : (m,) labels or (m, n^[L]) targets.
    batch_size : None (or m) for batch gradient descent, 1 for stochastic, anything else
        mini-batch; the last partial batch is kept and averaged over its own size.
        "auto" (default): min(64, m).
    l2 : lambda of the seed's L2 term lambda/(2 m_reg) sum ||W||_F^2.
    l2_normalization : "batch" (m_reg = examples in the mini-batch, the seed's J^{t}) or
        "dataset" (m_reg = m, the whole training set: the penalty's strength then does not
        depend on the batch size, and summing J^{t}'s gradients over an epoch matches the
        full-batch gradient of the full-batch cost).
    optimizer : "gd" or an ``optimizers.Optimizer`` (then ``learning_rate`` is ignored).
    keep_prob : inverted-dropout keep probability on hidden layers, in (0, 1].
    seed : shuffling and dropout masks are pure functions of (seed, epoch).
    on_divergence : "raise" (DivergenceError) or "stop" (return, reason in history.stopped).
    checkpoint : a file path. Training state is saved there every ``checkpoint_every``
        iterations, at each epoch end and on KeyboardInterrupt; if the file exists and was
        written by the same configuration, training resumes from it (see checkpoint.py).
        With ``seed=None`` the checkpoint's seed is used.
    distributed : data-parallel over the ranks of ``mpiexec`` (deepgrad.distributed); same
        result as single-process up to the order of summation.
    fast_path : torch backend only (see ``deepgrad.torch_fast``): None (default) uses the
        fused, CUDA-graphed training loop on CUDA devices and the generic loop elsewhere;
        True asks for it (CUDA graphs on CUDA, eager on CPU), "eager" for it without CUDA
        graphs, False for the generic loop. Its shuffling differs from the NumPy order.
    """
    # --- distributed hook (issue 7): keep first, so locals() holds only the arguments ---
    if distributed:
        options = dict(locals())
        del options["distributed"]
        if options.pop("fast_path") not in (None, False):
            raise ValueError("fast_path is for the torch backend; distributed=True uses NumPy")
        from .distributed import fit_distributed

        return fit_distributed(**options)
    # --- end distributed hook ---
    _tb.check_inputs(net.params, X=X, Y=Y)  # torch backend (issue 8): no mixed inputs
    plain_gd = optimizer in ("gd", "sgd") and not callable(learning_rate)  # (issue 8)
    if validation_data is not None and isinstance(validation_data, tuple | list):
        _tb.check_inputs(
            net.params, **dict(zip(("validation X", "validation Y"), validation_data, strict=False))
        )
    spec = net.spec
    X, Y, b, epochs, l2, keep_prob, optimizer, by_name, val = check_fit_arguments(
        net,
        X,
        Y,
        batch_size,
        epochs,
        learning_rate,
        l2,
        l2_normalization,
        optimizer,
        keep_prob,
        validation_data,
        on_divergence,
        shuffle,
        callbacks,
        progress,
    )
    m = X.shape[0]
    ckpt = None
    if checkpoint is not None:
        from .checkpoint import Checkpointer

        ckpt = Checkpointer(checkpoint, checkpoint_every)
        seed = ckpt.saved_seed if seed is None else seed
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**63))
    seed = check_int("seed", seed, 0)

    xp = namespace(net.params["W1"])
    # --- torch backend (issue 8): data to the device once, optional fast loop ---------
    use_fast = False
    if _tb.backend_of(net.params["W1"]) == "torch":
        from . import torch_fast

        W1 = net.params["W1"]
        Yenc = encode_targets(Y, spec.output, spec.layer_sizes[-1], xp, W1.dtype, device=W1.device)
        X = _tb.place_training_data(X, W1, net.dtype)
        if checkpoint is None:  # the fast loop does not write checkpoints
            use_fast = torch_fast.choose(fast_path, W1.device, X, plain_gd, keep_prob, callbacks)
    else:
        if fast_path not in (None, False):
            raise ValueError(f"fast_path needs backend='torch', got fast_path={fast_path!r}")
        Yenc = np.asarray(
            encode_targets(np.asarray(Y), spec.output, spec.layer_sizes[-1], np, net.dtype)
        )
    # --- end torch backend --------------------------------------------------------------
    run = _Run(
        X,
        Yenc,
        spec,
        optimizer,
        b,
        l2,
        m if l2_normalization == "dataset" else None,
        keep_prob,
        seed,
        shuffle,
        net.dtype,
        xp,
        isinstance(X, np.memmap),
    )
    history = History(batch_size=b, seed=seed)
    if use_fast:  # torch backend (issue 8)
        bar = progress_bar(epochs * _data.n_batches(m, b), progress)
        try:
            return torch_fast.fit(
                net, run, learning_rate, epochs, history, bar, val, on_divergence, use_fast
            )
        finally:
            bar.close()
    params, state = net.params, optimizer.init(net.params)
    start_epoch = start = 0
    if ckpt is not None:
        config = _checkpoint_config(
            net, X, Y, run, l2_normalization, optimizer, learning_rate, by_name
        )
        start_epoch, start, params, state, history = ckpt.resume(
            config, params, state, history, epochs
        )
        net.params = params
    bar = progress_bar(epochs * _data.n_batches(m, b), progress)
    bar.update(history.iterations)
    t0 = time.perf_counter() - (history.iteration_time[-1] if history.iterations else 0.0)
    try:
        for epoch in range(start_epoch, epochs):
            params, state, ok = run_epoch(
                run,
                params,
                state,
                epoch,
                history,
                bar,
                callbacks,
                t0,
                start if epoch == start_epoch else 0,
                None if ckpt is None else ckpt.step,
            )
            net.params = params  # the last finite parameters, also after a divergence
            if not ok:
                if on_divergence == "raise":
                    raise DivergenceError(history.stopped)
                break
            history.epoch_time.append(time.perf_counter() - t0)
            if validation_data is not None:
                vc, va = _evaluate(params, spec, *val, l2, net.dtype)
                history.val_cost.append(vc)
                history.val_accuracy.append(va)
            if ckpt is not None:
                ckpt.epoch_end(epoch + 1, params, state)
    except KeyboardInterrupt:
        if ckpt is not None:
            ckpt.save()  # the last completed step; resume goes on from there
        raise
    finally:
        bar.close()
    return history


class FitArguments(NamedTuple):
    """fit's inputs after validation; ``by_name``: the optimizer was given by its name."""

    X: Any
    Y: Any
    batch_size: int
    epochs: int
    l2: float
    keep_prob: float
    optimizer: optimizers.Optimizer
    by_name: bool
    validation: tuple | None  # (Xv, Yv) checked, or None


def check_fit_arguments(
    net,
    X,
    Y,
    batch_size,
    epochs,
    learning_rate,
    l2,
    l2_normalization,
    optimizer,
    keep_prob,
    validation_data,
    on_divergence,
    shuffle,
    callbacks,
    progress,
) -> FitArguments:
    """Every check ``fit`` makes of its arguments, shared with distributed training."""
    spec = net.spec
    if isinstance(X, np.memmap):  # checked batch by batch while training
        X = as_2d_float("X", X, spec.layer_sizes[0], check_finite=False)
    else:
        X = as_2d_float("X", X, spec.layer_sizes[0], dtype=net.dtype)
    Y = check_targets("Y", Y, spec.output, spec.layer_sizes[-1], X.shape[0])
    check_fits_dtype("Y", Y, net.dtype)
    _check_options(validation_data, shuffle, callbacks, progress)
    b = _resolve_batch_size(batch_size, X.shape[0])
    epochs = check_int("epochs", epochs, 1)
    l2 = check_float("l2", l2, 0.0)
    keep_prob = check_float("keep_prob", keep_prob, 0.0, 1.0, low_open=True)
    if l2_normalization not in L2_NORMALIZATIONS:
        raise ValueError(
            f"l2_normalization must be one of {list(L2_NORMALIZATIONS)}, got {l2_normalization!r}"
        )
    if on_divergence not in ("raise", "stop"):
        raise ValueError(f"on_divergence must be 'raise' or 'stop', got {on_divergence!r}")
    by_name = isinstance(optimizer, str)
    if by_name:
        optimizer = optimizers.get(optimizer, learning_rate)
    elif not isinstance(optimizer, optimizers.Optimizer):
        raise TypeError(f"optimizer must be a name or an Optimizer, got {optimizer!r}")
    val = None
    if validation_data is not None:
        Xv = as_2d_float(
            "validation_data[0]", validation_data[0], spec.layer_sizes[0], dtype=net.dtype
        )
        Yv = check_targets(
            "validation_data[1]", validation_data[1], spec.output, spec.layer_sizes[-1], Xv.shape[0]
        )
        check_fits_dtype("validation_data[1]", Yv, net.dtype)
        val = (Xv, Yv)
    return FitArguments(X, Y, b, epochs, l2, keep_prob, optimizer, by_name, val)


def _check_options(validation_data, shuffle, callbacks, progress) -> None:
    """Type checks of fit's remaining options (a wrong type would fail late and obscurely)."""
    if validation_data is not None and (
        not isinstance(validation_data, tuple | list) or len(validation_data) != 2
    ):
        raise TypeError(
            f"validation_data must be a pair (X_val, Y_val) or None, got "
            f"{type(validation_data).__name__}"
            + (
                f" of length {len(validation_data)}"
                if isinstance(validation_data, tuple | list)
                else ""
            )
        )
    for name, value in (("shuffle", shuffle), ("progress", progress)):
        if not (isinstance(value, bool | np.bool_) or (name == "progress" and value is None)):
            raise TypeError(f"{name} must be True or False, got {value!r}")
    if not isinstance(callbacks, list | tuple) or not all(callable(c) for c in callbacks):
        raise TypeError(f"callbacks must be a list of callables f(StepInfo), got {callbacks!r}")


def _checkpoint_config(net, X, Y, run: _Run, l2_normalization, optimizer, learning_rate, by_name):
    """The settings a checkpoint must share with this fit to be resumed by it."""
    from .checkpoint import training_config

    if not by_name:  # an Optimizer object: learning_rate is not used
        learning_rate = None
    elif callable(learning_rate):  # a schedule: its name (a closure's repr changes per run)
        learning_rate = getattr(learning_rate, "__qualname__", "schedule")
    return training_config(
        net,
        X,
        Y,
        batch_size=run.batch_size,
        l2=run.l2,
        l2_normalization=l2_normalization,
        optimizer=optimizer.name,
        learning_rate=learning_rate,
        keep_prob=run.keep_prob,
        seed=run.seed,
        shuffle=bool(run.shuffle),
    )
