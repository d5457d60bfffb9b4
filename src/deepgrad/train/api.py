"""``fit``: the public entry of training, single-process or over MPI.

``deepgrad.fit(net, X, Y, ...)`` and ``Network.fit(X, Y, ...)`` are made by ``_fit_function``
from one keyword list and one docstring (``FIT_DOC``), so they cannot drift apart. Both turn
their keyword arguments into one ``FitOptions`` and hand it to the one loop
(``loop.run_fit``) on this process, or on every rank of an MPI job (``mpi``).
``Network.fit`` always goes through the network's preprocessing record (standardization,
class names); ``deepgrad.fit`` does when ``standardize=True``, ``task`` or ``classes`` is
given, and otherwise trains on X and Y as given. The loop is imported by the first fit,
so that ``import deepgrad`` (which defines ``Network.fit``) stays light.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from deepgrad.core.checks import as_2d_float
from deepgrad.data.columns import TableEncoder, is_frame, needs_encoding
from deepgrad.data.preprocessing import (
    TASKS,
    class_names,
    fit_preprocessing,
    task_of,
    warn_if_unscaled,
)
from deepgrad.optim.optimizers import Optimizer
from deepgrad.train.options import FitOptions
from deepgrad.train.types import History

__all__ = ["fit", "network_fit", "FIT_DOC"]

FIT_DOC = """Train ``net`` in place with (mini-)batch gradient descent; returns its History.

    ``deepgrad.fit(net, X, Y, ...)`` and ``net.fit(X, Y, ...)`` take the same arguments.
    ``net.fit`` always goes through the network's preprocessing record (``standardize``,
    ``task``, ``classes`` below); ``deepgrad.fit`` does when ``standardize=True``, ``task``
    or ``classes`` is given, and otherwise trains on X and Y exactly as given (no record
    read or written, no ``UnscaledFeaturesWarning``).

    Parameters
    ----------
    X : (m, n^[0]) array or memory-mapped .npy array.
    Y : (m,) labels or (m, n^[L]) targets.
    standardize : fit a ``Standardizer`` of X on these (training) rows and train on the
        standardized features; for a linear output also scale the targets to zero mean
        and unit variance. Saved with the model and applied by ``predict``. Default False:
        the network sees X as given (an ``UnscaledFeaturesWarning`` says when that looks
        like a mistake).
    task : "classification" or "regression", checked against the output layer (None:
        the output layer's task).
    classes : the class names, sorted, output unit i meaning ``classes[i]`` (one sigmoid
        unit: 2 names), e.g. ``[1, 2, 3]`` or ``[-1, 1]``; the labels in Y are then these
        names. Default: text labels are mapped to their sorted names automatically;
        numeric labels must be the output's indices (0..K-1, or 0/1). The class names are
        kept in ``net.preprocessing``: ``predict`` returns the user's labels. A network
        that already has a preprocessing record keeps it (continued training) unless
        ``standardize=True`` fits a new one.
    batch_size : None (or m) for batch gradient descent, 1 for stochastic, anything else
        mini-batch; the last partial batch is kept and averaged over its own size.
        "auto" (default): min(64, m).
    l2 : lambda of the seed's L2 term lambda/(2 m_reg) sum ||W||_F^2.
    l2_normalization : "batch" (m_reg = examples in the mini-batch, the seed's J^{t}) or
        "dataset" (m_reg = m, the whole training set: the penalty's strength then does not
        depend on the batch size, and summing J^{t}'s gradients over an epoch matches the
        full-batch gradient of the full-batch cost).
    optimizer : "gd", "momentum", "rmsprop", "adam" or an ``Optimizer`` (then
        ``learning_rate`` is ignored). ``learning_rate`` may be a schedule
        (``optim.optimizers.Schedule``) counting updates (``per="step"``) or epochs
        (``per="epoch"``: every update of epoch e uses alpha(e)).
    keep_prob : inverted-dropout keep probability on hidden layers, in (0, 1]; the masks
        are a pure function of (seed, epoch, step) (``dropout.step_masks``).
    seed : shuffling and dropout masks are pure functions of it.
    order : the batch order as data, replacing the drawn one: a callable
        ``epoch -> permutation of range(m)`` (called once per epoch; over MPI every rank
        calls it, so it must not depend on the rank) or an array of shape (epochs, m)
        whose row e is epoch e's order. Epoch e's batches are rows
        ``order[e][k*b:(k+1)*b]`` (sorted within the batch, which changes only the
        summation order). ``shuffle`` is then unused. A checkpoint records it (the array's
        digest, or the callable's name). docs/course.md reproduces the course's
        ``random_mini_batches`` with it.
    validation_data : (X_val, Y_val), evaluated after every epoch (through the record).
    early_stopping : stop when ``monitor`` ("val_cost", the default, or "val_accuracy"
        of ``validation_data``, which it needs) has not improved by more than
        ``min_delta`` for ``patience`` epochs, and keep the parameters of the best epoch
        (``history.best_epoch``); ``history.early_stopped`` is the one line saying where
        it stopped and which epoch's parameters were kept. The optimizer state kept
        for continued training is the last epoch's.
    on_divergence : "raise" (DivergenceError) or "stop" (return, reason in history.stopped).
        A cost that rises by orders of magnitude and stays finite gives a
        ``DivergenceWarning`` (the CLI's wording).
    checkpoint : a file path. Training state is saved there every ``checkpoint_every``
        iterations, at each epoch end and on KeyboardInterrupt; if the file exists and was
        written by the same configuration, training resumes from it
        (``deepgrad.train.checkpoint``).
        With ``seed=None`` the checkpoint's seed is used. With a checkpoint, the
        checkpoint (not ``net.training``) says where training goes on.
    Continued training: each fit leaves ``net.training`` (optimizer name, state, epochs
        done); the next fit with the same optimizer goes on from it (epochs, order, masks,
        schedules and moments continue): two fits equal one fit with the epochs added.
    distributed : data-parallel over the ranks of ``mpiexec`` (deepgrad.train.mpi); same
        result as single-process up to the order of summation.
    engine : None (default) picks the fastest engine that runs this configuration
        exactly; a name (``deepgrad.train.engines.names()``) asks for one, and a
        ValueError says what it lacks. Every engine gives the reference engine's numbers
        up to rounding; callbacks and checkpoints never change them.

    Example
    -------
    >>> import deepgrad as dg, numpy as np
    >>> X = np.random.default_rng(0).normal(size=(64, 3))
    >>> y = (X[:, 0] > 0).astype(int)
    >>> net = dg.Network([3, 8, 1], "tanh", "sigmoid", seed=0)
    >>> history = dg.fit(net, X, y, epochs=2, seed=0, progress=False)  # = net.fit(X, y, ...)
    >>> len(history.epoch_cost)
    2
    """


def _fit_function(preprocess_always: bool):
    """``deepgrad.fit`` (``preprocess_always=False``) or ``Network.fit`` (True): the same
    keywords, defaults and docstring, written once."""

    def fit(
        net,
        X,
        Y,
        *,
        standardize: bool = False,
        task: str | None = None,
        classes=None,
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
        order=None,
        early_stopping: bool = False,
        patience: int = 10,
        monitor: str = "val_cost",
        min_delta: float = 0.0,
    ) -> History:
        options = FitOptions(
            batch_size=batch_size, epochs=epochs, learning_rate=learning_rate, l2=l2,
            l2_normalization=l2_normalization, optimizer=optimizer, keep_prob=keep_prob,
            seed=seed, shuffle=shuffle, validation_data=validation_data, callbacks=callbacks,
            on_divergence=on_divergence, progress=progress, checkpoint=checkpoint,
            checkpoint_every=checkpoint_every, engine=engine, order=order,
            early_stopping=early_stopping, patience=patience, monitor=monitor,
            min_delta=min_delta,
        )  # fmt: skip
        asked = standardize is not False or task is not None or classes is not None
        if preprocess_always or asked:
            record = (standardize, task, classes)
            return _fit_through_record(net, X, Y, options, distributed, record)
        return _run(net, X, Y, options, distributed)

    fit.__doc__ = FIT_DOC
    return fit


fit = _fit_function(preprocess_always=False)
network_fit = _fit_function(preprocess_always=True)  # Network.fit
fit.__qualname__, network_fit.__qualname__ = "fit", "Network.fit"


def _run(net, X, Y, options: FitOptions, distributed: bool) -> History:
    """The one loop on this process, or on every rank of an MPI job."""
    # Imported here, by the first fit: the loop loads the engines (import deepgrad is light).
    from deepgrad.train.loop import SOLO, run_fit
    from deepgrad.train.mpi import fit_distributed

    if distributed:
        return fit_distributed(net, X, Y, options)
    return run_fit(net, X, Y, options, SOLO)


# -- the network's preprocessing record ------------------------------------------------------


def _fit_through_record(net, X, Y, options: FitOptions, distributed: bool, record) -> History:
    """Train on the user's rows and labels through ``net.preprocessing``: a new record
    (standardization, class names) fitted on these rows, or the one the net has."""
    standardize, task, classes = record
    _check_task(net, task)
    if not isinstance(standardize, bool | np.bool_):
        raise TypeError(f"standardize must be True or False, got {standardize!r}")
    pre = net.preprocessing
    if pre is None or standardize or classes is not None:
        X, pre = _fit_record(net, X, Y, bool(standardize), classes)
    Xm, Ym = (X, Y) if pre is None else (pre.transform(X), pre.encode(Y))
    validation = options.validation_data
    if pre is not None and isinstance(validation, tuple | list) and len(validation) == 2:
        Xv = pre.encode_columns(validation[0], source="validation_data[0]")
        if pre.inputs is not None:  # checked before any arithmetic
            Xv = as_2d_float("validation_data[0]", Xv, net.layer_sizes[0], dtype=net.dtype)
        validation = (pre.transform(Xv), pre.encode(validation[1]))
        options = dataclasses.replace(options, validation_data=validation)
    net.preprocessing = pre
    try:
        history = _run(net, Xm, Ym, options, distributed)
    except ValueError as exc:
        hint = _classes_hint(Ym, net.spec.output, net.layer_sizes[-1])
        if hint is None or not str(exc).startswith("Y must hold"):
            raise
        raise ValueError(f"{exc}; {hint}") from exc
    if pre is None or pre.inputs is None:
        fix = "pass standardize=True to fit (or use deepgrad.Standardizer)"
        warn_if_unscaled(Xm, fix, stacklevel=4)  # the caller of fit
    return history


def _fit_record(net, X, Y, standardize: bool, classes):
    """(X checked when standardizing, the new record or None when it changes nothing)."""
    columns = getattr(X, "columns", None)  # a pandas DataFrame: keep its names
    encoder = None
    if is_frame(X) and needs_encoding(X):  # text, booleans or missing cells
        encoder = TableEncoder.fit(X, source="X")
        X = _encoded(net, encoder, X)
    if standardize and isinstance(X, np.memmap):
        raise ValueError(
            "standardize=True would load the memory-mapped X into memory; write "
            "standardized files (or a Standardizer's transform) and pass standardize=False"
        )
    if standardize:
        X = as_2d_float("X", X, net.layer_sizes[0], dtype=net.dtype)
    pre = fit_preprocessing(
        X,
        Y,
        net.spec.output,
        net.layer_sizes[-1],
        standardize,
        classes=_sorted(classes),
        feature_names=None if columns is None else [str(c) for c in columns],
        columns=encoder,
    )
    return X, None if pre.is_identity else pre


def _encoded(net, encoder: TableEncoder, X) -> np.ndarray:
    """X through the encoder just fitted on it; its width must be the network's input."""
    n_in = net.layer_sizes[0]
    if encoder.width != n_in:
        raise ValueError(
            f"X's columns encode to {encoder.width} inputs ({encoder.summary()}) but the "
            f"network takes {n_in}: build it with layer_sizes[0] = {encoder.width} "
            f"(deepgrad.TableEncoder.fit(X).width; .describe() lists each column's role)"
        )
    return encoder.transform(X, source="X")


def _check_task(net, task) -> None:
    if task is None:
        return
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)} or None, got {task!r}")
    if task != task_of(net.spec.output):
        raise ValueError(
            f"task={task!r} does not fit this network's {net.spec.output} output "
            f"(a {task_of(net.spec.output)}); build it with output="
            + ("'linear'" if task == "regression" else "'softmax' or 'sigmoid'")
        )


def _sorted(classes):
    """Class names as a sorted array of distinct labels (None stays None)."""
    if classes is None:
        return None
    names = class_names(classes, "classes")
    if len(names) != len(classes):
        raise ValueError(f"classes must be distinct labels, got {list(classes)!r}")
    return names


def _classes_hint(Y, output: str, n_out: int) -> str | None:
    """For numeric labels that are class names (1..K, -1/+1): how to say so."""
    if output == "linear" or not isinstance(Y, np.ndarray | list | tuple):
        return None
    try:
        values = np.unique(np.asarray(Y))
    except (TypeError, ValueError):
        return None
    expected = 2 if output == "sigmoid" and n_out == 1 else n_out
    if values.dtype.kind not in "iuf" or len(values) != expected:
        return None
    shown = [v.item() for v in values]
    return f"if {shown} are the class names, pass classes={shown} to fit"
