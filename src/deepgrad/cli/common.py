"""Argument types and helpers shared by the commands."""

from __future__ import annotations

import argparse
import json
import os
import shutil
from pathlib import Path

import numpy as np


def int_list(text: str) -> list[int]:
    """'128,64,64' -> [128, 64, 64]; an empty entry ('128,,64') is an error."""
    try:
        values = [int(t) for t in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"expected comma-separated ints like 128,64, got {text!r}"
        ) from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints >= 1, got {text!r}")
    return values


def add_network_arguments(p: argparse.ArgumentParser, hidden="128,64,32") -> None:
    p.add_argument(
        "--hidden",
        type=int_list,
        default=int_list(hidden),
        help=f"hidden layer widths, comma-separated (default {hidden})",
    )
    p.add_argument("--activation", default="relu", help="hidden activation (default relu)")
    p.add_argument("--init", default="auto", help="initializer name (default auto)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--seed", type=int, default=0, help="seed for init and shuffling")


def add_training_arguments(
    p: argparse.ArgumentParser, defaults: dict, told_as: dict | None = None
) -> None:
    """--batch-size, --epochs, --lr, --l2, --keep-prob, --quiet. ``defaults``: task ->
    {"epochs", "lr", "l2"}; the flags default to None and the task fills them in.
    ``told_as``: flag key -> the help's own words for its default."""

    def told(key: str) -> str:
        if told_as and key in told_as:
            return f"({told_as[key]})"
        c, r = defaults["classification"][key], defaults["regression"][key]
        return f"(default {c:g}" + ("" if c == r else f"; {r:g} for a regression") + ")"

    p.add_argument(
        "--batch-size",
        type=int,
        default=None,
        help="mini-batch size; 0 = batch gradient descent (default min(64, training rows))",
    )
    p.add_argument(
        "--epochs", type=int, default=None, help=f"passes over the data {told('epochs')}"
    )
    p.add_argument(
        "--lr",
        "--learning-rate",
        dest="lr",
        type=float,
        default=None,
        help=f"learning rate alpha {told('lr')}",
    )
    p.add_argument("--l2", type=float, default=None, help=f"lambda of the L2 term {told('l2')}")
    p.add_argument(
        "--keep-prob",
        type=float,
        default=None,
        help=f"dropout keep probability in the hidden layers {told('keep_prob')}",
    )
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def write_json(path, obj) -> None:
    from deepgrad.io.files import atomic_write

    text = json.dumps(obj, indent=1, default=float).encode()
    atomic_write(path, lambda f: f.write(text))


def check_writable_dir(path, flag: str = "--out") -> None:
    """Refuse, before any work, an output directory that cannot be made or written: a
    file in the way, or a directory (or its nearest existing parent) without write access."""
    out = Path(path)
    if out.exists() and not out.is_dir():
        raise FileExistsError(f"{flag} {str(path)!r} is a file; give a directory")
    probe = out
    while not probe.exists():
        parent = probe.parent
        if parent == probe:
            break
        probe = parent
    if probe.exists() and not probe.is_dir():
        raise NotADirectoryError(f"cannot create {flag} {str(path)!r}: {str(probe)!r} is a file")
    if not os.access(probe, os.W_OK | os.X_OK):
        raise PermissionError(
            f"cannot write {flag} {str(path)!r}: no write permission in {str(probe)!r}"
        )


def out_dir(path) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


STAGING = ".run-{pid}.tmp"


def write_run(out: Path, writers: dict) -> None:
    """Write a run's files into ``out`` as a unit: each ``writers[name](path)`` writes into
    a staging directory ``out/.run-PID.tmp``; then the previous run's files of these names
    are removed and the new ones renamed into place. A kill at any moment leaves the old
    run, or files of the new run alone, never a mix; the staging directory of a process
    that is gone is removed by the next run."""
    remove_dead_staging(out)
    staging = out / STAGING.format(pid=os.getpid())
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        for name, write in writers.items():
            write(staging / name)
        for name in writers:
            (out / name).unlink(missing_ok=True)
        for name in writers:
            os.replace(staging / name, out / name)
    finally:
        shutil.rmtree(staging, ignore_errors=True)


def remove_dead_staging(out: Path) -> None:
    for staging in out.glob(STAGING.format(pid="*")):
        pid = staging.name[len(".run-") : -len(".tmp")]
        if pid.isdigit() and not _alive(int(pid)):
            shutil.rmtree(staging, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def accuracy(net, X, y) -> float:
    return float(np.mean(np.asarray(net.predict(X)) == np.asarray(y)))


# API argument -> the flag a command-line user typed, for messages that start "name must".
FLAGS = {
    "batch_size": "--batch-size",
    "epochs": "--epochs",
    "learning_rate": "--lr",
    "l2": "--l2",
    "keep_prob": "--keep-prob",
    "hidden_activation": "--activation",
    "init": "--init",
    "dtype": "--dtype",
    "output": "--output",
    "seed": "--seed",
    "checkpoint_every": "--checkpoint-every",
    "checkpoint": "--checkpoint",
    "layer_sizes[1]": "--hidden",
}


def as_flag_error(exc: Exception) -> Exception:
    """The same error with a leading API argument name replaced by its flag."""
    text = str(exc)
    for name, flag in FLAGS.items():
        if text.startswith(f"{name} "):
            return type(exc)(flag + text[len(name) :])
    return exc


def batch_size_for(flag_value, m: int):
    """--batch-size -> fit's batch_size: None (unset) = min(64, m), 0 = batch GD."""
    from deepgrad.core.checks import check_int

    if flag_value is None:
        return "auto"
    b = check_int("--batch-size", flag_value, 0)
    if b > m:
        raise ValueError(
            f"--batch-size {b} is more than the {m} training rows; use a smaller one, or "
            f"--batch-size 0 for batch gradient descent"
        )
    return None if b == 0 else b


def warn(command: str, message: str) -> None:
    """One warning line on stderr."""
    import sys

    print(f"deepgrad {command}: warning: {message}", file=sys.stderr)


def show(value) -> str:
    return (
        repr(value)
        if isinstance(value, str)
        else f"{value:g}"
        if isinstance(value, float)
        else str(value)
    )


def classification_lines(score, where: str) -> list[str]:
    """accuracy with its majority-class baseline, then per-class counts."""
    per_class = ", ".join(f"{show(c)} {ok}/{n}" for c, ok, n in score.per_class[:20])
    more = f" (and {len(score.per_class) - 20} more)" if len(score.per_class) > 20 else ""
    return [
        f"{where}accuracy: {score.accuracy:.4f} on {score.m} examples (majority-class "
        f"baseline {score.baseline:.4f}: always {show(score.majority)})",
        f"per class (correct/total): {per_class}{more}",
    ]


def regression_lines(score, where: str) -> list[str]:
    return [
        f"{where}R2: {score.r2:.4f}, RMSE: {score.rmse:.4g}, MAE: {score.mae:.4g} on "
        f"{score.m} examples (predicting the mean: R2 0, RMSE {score.baseline_rmse:.4g})"
    ]


FEW_SCORED = 30  # fewer scored rows than this: the score itself is noise


def score_warning(score, what: str, standardized: bool | None = None) -> str | None:
    """A warning when the score is no better than the baseline, else None. The advice
    follows what was done: ``standardized`` False (raw inputs) suggests standardizing,
    True does not; few scored rows are named as the likelier reason."""
    if standardized is False:
        fix = "standardize the inputs (drop --no-standardize) or lower --lr"
    else:
        fix = "check that the columns carry the target, or try another --lr or --epochs"
    if score.m < FEW_SCORED:
        fix = f"only {score.m} rows were scored, so the score is noisy; {fix}"
    if hasattr(score, "accuracy"):
        if score.accuracy > score.baseline + 1e-12:
            return None
        return (
            f"{what} accuracy {score.accuracy:.4f} is no better than always answering "
            f"{show(score.majority)} ({score.baseline:.4f}): the network learned nothing "
            f"useful; {fix}"
        )
    if score.r2 > 0:
        return None
    return f"{what} R2 {score.r2:.4f} <= 0: no better than predicting the mean; {fix}"


def predict_rows(net, X, chunk: int = 65_536) -> np.ndarray:
    """net.predict over X, ``chunk`` rows at a time (a memory-mapped X is never loaded)."""
    return np.concatenate(
        [np.asarray(net.predict(X[a : a + chunk])) for a in range(0, len(X), chunk)]
    )


def evaluate(net, X, y, task, reference=None, pred=None):
    """The score of net on (X, y) (``pred``: its predictions, when already made)."""
    from deepgrad.diagnostics.metrics import classification_score, regression_score

    pred = predict_rows(net, X) if pred is None else pred
    y = np.asarray(y)
    if task == "classification":
        return classification_score(y, pred, reference=reference)
    mean = None if reference is None else np.mean(np.asarray(reference, dtype=float), axis=0)
    return regression_score(y, pred, reference_mean=mean)
