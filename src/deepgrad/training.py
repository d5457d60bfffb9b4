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
from . import dropout
from . import network as nw
from . import optimizers
from . import torch_backend as _tb
from ._backend import namespace, scalar
from ._checks import as_2d_float, check_float, check_int, check_targets, encode_targets
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


def run_epoch(run: _Run, params, opt_state, epoch, history, bar, callbacks, t0):
    """One pass over all mini-batches of ``epoch``; returns (params, opt_state)."""
    m = run.X.shape[0]
    drop_rng = np.random.default_rng([run.seed, epoch, 1]) if run.keep_prob < 1 else None
    total, seen = 0.0, 0
    for idx in _data.batch_indices(m, run.batch_size, run.seed, epoch, run.shuffle):
        Xb, Yb = _batch(run, idx)
        masks = None
        if drop_rng is not None:
            masks = dropout.draw_masks(
                drop_rng, len(idx), run.spec.hidden_sizes, run.keep_prob, run.xp, run.dtype,
                device=_tb.device_of(Xb),
            )
        J, grads, new_params, new_state = train_step(
            params, opt_state, Xb, Yb, run.spec, run.optimizer, run.l2, run.m_reg, masks
        )
        J = scalar(J)
        t = history.iterations
        if not math.isfinite(J) or not _finite(grads):
            history.stopped = (
                f"diverged at epoch {epoch + 1}, iteration {t + 1}: the "
                f"{'cost' if not math.isfinite(J) else 'gradient'} is {J if not math.isfinite(J) else 'not finite'}; "
                f"try a smaller learning rate"
            )
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
    history.epoch_cost.append(total / seen)
    return params, opt_state, True


def _resolve_batch_size(batch_size, m: int) -> int:
    if batch_size is None:
        return m  # batch gradient descent
    b = check_int("batch_size", batch_size, 1)
    if b > m:
        raise ValueError(
            f"batch_size must be <= the number of examples ({m}), got {b}; "
            f"use batch_size=None for batch gradient descent"
        )
    return b


def _evaluate(params, spec, X, Y_raw, l2, dtype):
    """(validation cost, accuracy or nan) of the current parameters."""
    xp = namespace(params["W1"])
    if _tb.backend_of(params["W1"]) == "torch":  # torch backend (issue 8)
        Xv = _tb.as_device_array(X, params["W1"])
    else:
        Xv = xp.asarray(np.asarray(X, dtype=dtype)) if xp is not namespace(X) else X
    Yv = encode_targets(Y_raw, spec.output, spec.layer_sizes[-1], xp, Xv.dtype,
                        device=_tb.device_of(Xv))
    ZL, _ = nw.forward(params, Xv, spec)
    J = scalar(nw.cost_from_output(ZL, Yv, params, spec, l2))
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
    batch_size: int | None = 64,
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
    fast_path: bool | str | None = None,
) -> History:
    """Train ``net`` in place with (mini-)batch gradient descent and return its History.

    Parameters
    ----------
    X : (m, n^[0]) array or memory-mapped .npy array.
    Y : (m,) labels or (m, n^[L]) targets.
    batch_size : None (or m) for batch gradient descent, 1 for stochastic, anything else
        mini-batch; the last partial batch is kept and averaged over its own size.
    l2 : lambda of the seed's L2 term lambda/(2 m_reg) sum ||W||_F^2.
    l2_normalization : "batch" (m_reg = examples in the mini-batch, the seed's J^{t}) or
        "dataset" (m_reg = m, the whole training set: the penalty's strength then does not
        depend on the batch size, and summing J^{t}'s gradients over an epoch matches the
        full-batch gradient of the full-batch cost).
    optimizer : "gd" or an ``optimizers.Optimizer`` (then ``learning_rate`` is ignored).
    keep_prob : inverted-dropout keep probability on hidden layers, in (0, 1].
    seed : shuffling and dropout masks are pure functions of (seed, epoch).
    on_divergence : "raise" (DivergenceError) or "stop" (return, reason in history.stopped).
    fast_path : torch backend only (see ``deepgrad.torch_fast``): None (default) uses the
        fused, CUDA-graphed training loop on CUDA devices and the generic loop elsewhere;
        True asks for it (CUDA graphs on CUDA, eager on CPU), "eager" for it without CUDA
        graphs, False for the generic loop. Its shuffling differs from the NumPy order.
    """
    _tb.check_inputs(net.params, X=X, Y=Y)  # torch backend (issue 8): no mixed inputs
    plain_gd = optimizer in ("gd", "sgd") and not callable(learning_rate)  # (issue 8)
    if validation_data is not None and isinstance(validation_data, tuple | list):
        _tb.check_inputs(net.params, **dict(zip(("validation X", "validation Y"),
                                                 validation_data, strict=False)))
    spec = net.spec
    if isinstance(X, np.memmap):
        X = as_2d_float("X", X, spec.layer_sizes[0], check_finite=False)
    else:
        X = as_2d_float("X", X, spec.layer_sizes[0])
    m = X.shape[0]
    Y = check_targets("Y", Y, spec.output, spec.layer_sizes[-1], m)
    b = _resolve_batch_size(batch_size, m)
    epochs = check_int("epochs", epochs, 1)
    l2 = check_float("l2", l2, 0.0)
    keep_prob = check_float("keep_prob", keep_prob, 0.0, 1.0, low_open=True)
    if l2_normalization not in L2_NORMALIZATIONS:
        raise ValueError(
            f"l2_normalization must be one of {list(L2_NORMALIZATIONS)}, got {l2_normalization!r}"
        )
    if on_divergence not in ("raise", "stop"):
        raise ValueError(f"on_divergence must be 'raise' or 'stop', got {on_divergence!r}")
    if isinstance(optimizer, str):
        optimizer = optimizers.get(optimizer, learning_rate)
    elif not isinstance(optimizer, optimizers.Optimizer):
        raise TypeError(f"optimizer must be a name or an Optimizer, got {optimizer!r}")
    if validation_data is not None:
        Xv = as_2d_float("validation_data[0]", validation_data[0], spec.layer_sizes[0])
        Yv = check_targets("validation_data[1]", validation_data[1], spec.output,
                           spec.layer_sizes[-1], Xv.shape[0])
    if seed is None:
        seed = int(np.random.SeedSequence().entropy % (2**63))
    seed = check_int("seed", seed, 0)

    xp = namespace(net.params["W1"])
    # --- torch backend (issue 8): data to the device once, optional fast loop ---------
    if _tb.backend_of(net.params["W1"]) == "torch":
        from . import torch_fast

        W1 = net.params["W1"]
        Yenc = encode_targets(Y, spec.output, spec.layer_sizes[-1], xp, W1.dtype,
                              device=W1.device)
        X = _tb.place_training_data(X, W1, net.dtype)
        use_fast = torch_fast.choose(fast_path, W1.device, X, plain_gd, keep_prob, callbacks)
    else:
        use_fast = False
        if fast_path not in (None, False):
            raise ValueError(f"fast_path needs backend='torch', got fast_path={fast_path!r}")
        Yenc = np.asarray(encode_targets(np.asarray(Y), spec.output, spec.layer_sizes[-1], np,
                                         net.dtype))
    # --- end torch backend --------------------------------------------------------------
    run = _Run(X, Yenc, spec, optimizer, b, l2, m if l2_normalization == "dataset" else None,
               keep_prob, seed, shuffle, net.dtype, xp, isinstance(X, np.memmap))
    history = History(batch_size=b, seed=seed)
    bar = progress_bar(epochs * _data.n_batches(m, b), progress)
    if use_fast:  # torch backend (issue 8)
        val = (Xv, Yv) if validation_data is not None else None
        try:
            return torch_fast.fit(net, run, learning_rate, epochs, history, bar, val,
                                  on_divergence, use_fast)
        finally:
            bar.close()
    params, state = net.params, optimizer.init(net.params)
    t0 = time.perf_counter()
    try:
        for epoch in range(epochs):
            params, state, ok = run_epoch(run, params, state, epoch, history, bar, callbacks, t0)
            net.params = params  # the last finite parameters, also after a divergence
            if not ok:
                if on_divergence == "raise":
                    raise DivergenceError(history.stopped)
                break
            history.epoch_time.append(time.perf_counter() - t0)
            if validation_data is not None:
                vc, va = _evaluate(params, spec, Xv, Yv, l2, net.dtype)
                history.val_cost.append(vc)
                history.val_accuracy.append(va)
    finally:
        bar.close()
    return history
