"""``fit``: the public entry of training, single-process or over MPI.

It turns its keyword arguments into one ``FitOptions`` and hands it to the one loop
(``loop.run_fit``) on this process, or on every rank of an MPI job (``mpi``).
"""

from __future__ import annotations

from deepgrad.optim.optimizers import Optimizer
from deepgrad.train.loop import SOLO, run_fit
from deepgrad.train.mpi import fit_distributed
from deepgrad.train.options import FitOptions
from deepgrad.train.types import History

__all__ = ["fit"]


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
    optimizer: str | Optimizer = "gd",
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
    engine: str | None = None,
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
    optimizer : "gd", "momentum", "rmsprop", "adam" or an ``Optimizer`` (then
        ``learning_rate`` is ignored). ``learning_rate`` may be a schedule.
    keep_prob : inverted-dropout keep probability on hidden layers, in (0, 1]; the masks
        are a pure function of (seed, epoch, step) (``dropout.step_masks``).
    seed : shuffling and dropout masks are pure functions of it.
    on_divergence : "raise" (DivergenceError) or "stop" (return, reason in history.stopped).
    checkpoint : a file path. Training state is saved there every ``checkpoint_every``
        iterations, at each epoch end and on KeyboardInterrupt; if the file exists and was
        written by the same configuration, training resumes from it
        (``deepgrad.train.checkpoint``).
        With ``seed=None`` the checkpoint's seed is used.
    distributed : data-parallel over the ranks of ``mpiexec`` (deepgrad.train.mpi); same
        result as single-process up to the order of summation.
    engine : None (default) picks the fastest engine that runs this configuration
        exactly; a name (``deepgrad.train.engines.names()``) asks for one, and a
        ValueError says what it lacks. Every engine gives the reference engine's numbers
        up to rounding; callbacks and checkpoints never change them.
    """
    options = FitOptions(
        batch_size=batch_size, epochs=epochs, learning_rate=learning_rate, l2=l2,
        l2_normalization=l2_normalization, optimizer=optimizer, keep_prob=keep_prob,
        seed=seed, shuffle=shuffle, validation_data=validation_data, callbacks=callbacks,
        on_divergence=on_divergence, progress=progress, checkpoint=checkpoint,
        checkpoint_every=checkpoint_every, engine=engine,
    )  # fmt: skip
    if distributed:
        return fit_distributed(net, X, Y, options)
    return run_fit(net, X, Y, options, SOLO)
