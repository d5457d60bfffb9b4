"""Training cases run both under mpiexec (train.py) and in the test process.

Each case is small and exercises one part of the equivalence with single-process
training: a global batch not divisible by P, a last partial batch smaller than P (so a
rank gets no rows), dropout, both L2 normalizations, an optimizer with array state,
memory-mapped data, validation data.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

import deepgrad as dg
from deepgrad.data import arrays
from deepgrad.optim import optimizers

# m = 50 rows: batch 16 gives 16, 16, 16, 2 (2 < P = 3: one rank has an empty shard);
# batch 7 gives seven batches of 7 and one of 1.
CASES = {
    "f64_gd_l2": dict(
        dtype="float64", output="sigmoid", batch_size=16, epochs=1, l2=0.05, opt="gd"
    ),
    "f32_gd_l2": dict(
        dtype="float32", output="sigmoid", batch_size=16, epochs=1, l2=0.05, opt="gd"
    ),
    "f64_momentum_dropout_softmax": dict(
        dtype="float64",
        output="softmax",
        batch_size=7,
        epochs=2,
        l2=0.1,
        l2_normalization="dataset",
        keep_prob=0.8,
        opt="momentum",
        validation=True,
    ),
    "f32_momentum_memmap": dict(
        dtype="float32",
        output="softmax",
        batch_size=7,
        epochs=1,
        l2=0.1,
        opt="momentum",
        memmap=True,
    ),  # fmt: skip
    "f64_batch_gd": dict(dtype="float64", output="sigmoid", batch_size=None, epochs=3, opt="gd"),
    # blocks of 1 row (40 bytes) in windows of 32: the block shuffle runs on these 50 rows
    "f64_adam_dropout_memmap_blocks": dict(
        dtype="float64",
        output="sigmoid",
        batch_size=7,
        epochs=2,
        l2=0.05,
        keep_prob=0.8,
        opt="adam",
        memmap=True,
        block_bytes=40,
    ),
    # the caller's batch order, then a second fit that continues the first (Adam's moments
    # and counter, the epoch numbers): both under MPI as in one process
    "f64_adam_order_continued": dict(
        dtype="float64",
        output="sigmoid",
        batch_size=16,
        epochs=2,
        opt="adam",
        order=True,
        more_epochs=1,
    ),
}


class MomentumState(NamedTuple):
    velocity: dict
    count: int


def momentum(learning_rate=0.05, beta=0.9, hook=None) -> optimizers.Optimizer:
    """Heavy-ball momentum with array state; ``hook(count, params)`` lets tests misbehave."""

    def init(params):
        return MomentumState({k: np.zeros_like(v) for k, v in params.items()}, 0)

    def update(grads, state, params):
        if hook is not None:
            hook(state.count, params)
        v = {k: beta * state.velocity[k] + grads[k] for k in params}
        new = {k: params[k] - learning_rate * v[k] for k in params}
        return new, MomentumState(v, state.count + 1)

    return optimizers.Optimizer("momentum", init, update)


def make_data(m=50, n_x=5, seed=0):
    """(X, y_binary, y_3class): features and labels from a fixed random rule."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, n_x))
    y2 = (X[:, 0] + 0.5 * X[:, 1] > 0).astype(np.int64)
    y3 = np.digitize(X[:, 2] - X[:, 3], [-0.5, 0.5]).astype(np.int64)
    return X, y2, y3


class Result(NamedTuple):
    params: dict
    iteration_cost: list
    val_cost: list
    engine: str  # the engine that ran the steps


def run_case(name, X, y2, y3, distributed=False, hook=None) -> Result:
    c = CASES[name]
    y = y2 if c["output"] == "sigmoid" else y3
    n_out = 1 if c["output"] == "sigmoid" else 3
    net = dg.Network([X.shape[1], 7, 4, n_out], "tanh", c["output"], seed=3, dtype=c["dtype"])
    opt = momentum(hook=hook) if c["opt"] == "momentum" else c["opt"]
    block_bytes = arrays.BLOCK_BYTES
    arrays.BLOCK_BYTES = c.get("block_bytes", block_bytes)
    try:
        hist = _fit(net, c, X, y, opt, distributed)
    finally:
        arrays.BLOCK_BYTES = block_bytes
    params = {k: np.asarray(v) for k, v in net.params.items()}
    return Result(params, list(hist.iteration_cost), list(hist.val_cost), hist.engine)


def _order(epoch: int) -> np.ndarray:
    return np.random.default_rng([5, epoch]).permutation(50)


def _fit(net, c, X, y, opt, distributed):
    hist = _fit_epochs(net, c, X, y, opt, distributed, c["epochs"])
    if c.get("more_epochs"):
        hist = _fit_epochs(net, c, X, y, opt, distributed, c["more_epochs"])
    return hist


def _fit_epochs(net, c, X, y, opt, distributed, epochs):
    return net.fit(
        X,
        y,
        order=_order if c.get("order") else None,
        batch_size=c["batch_size"],
        epochs=epochs,
        learning_rate=0.01 if opt == "adam" else 0.3,
        l2=c.get("l2", 0.0),
        l2_normalization=c.get("l2_normalization", "batch"),
        keep_prob=c.get("keep_prob", 1.0),
        optimizer=opt,
        seed=11,
        validation_data=(X[:20], y[:20]) if c.get("validation") else None,
        progress=False,
        distributed=distributed,
    )
