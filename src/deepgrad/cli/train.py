"""deepgrad train: train a network on a bundled dataset, a CSV/TSV table, a .npz file or a
directory of memory-mapped .npy files; the model file keeps the preprocessing."""

from __future__ import annotations

import argparse
import os
import time
import warnings
from pathlib import Path

import numpy as np

from deepgrad.cli.common import (
    add_network_arguments,
    add_training_arguments,
    as_flag_error,
    batch_size_for,
    check_writable_dir,
    classification_lines,
    evaluate,
    out_dir,
    regression_lines,
    score_warning,
    warn,
    write_json,
    write_run,
)

NAME = "train"
HELP = "train a network and write the model, its history and learning curves"

# The flags' defaults by task (docs/tables.md has the measurements behind them: six real
# tables against scikit-learn, bench/tables_compare.py). Adam at 0.001 (Kingma & Ba's
# step) for STEP_BUDGET steps whatever the table's size, at least the task's epochs and at
# most MAX_EPOCHS: a table of 100 rows needs as many updates as one of 100,000, and 20
# epochs of 2 batches had barley at R2 0.23 against scikit-learn's 0.65. So many steps
# overfit a few hundred rows: a classification keeps 0.8 of the hidden units (dropout), a
# regression has an L2 term over the training-set size whose lambda is chosen from L2_GRID
# by a validation split of the training rows (no one lambda fits both barley, R2 0.74 at
# 1 and 0.63 at 10, and diabetes, 0.19 at 1 and 0.49 at 10); past AUTO_L2_ROWS rows, or
# memory-mapped, the table's own lambda. gd keeps the course's --lr.
DEFAULTS = {
    "classification": {
        "epochs": 20,
        "lr": 0.1,
        "l2": 0.0,
        "l2_normalization": "batch",
        "keep_prob": 0.8,
    },
    "regression": {
        "epochs": 50,
        "lr": 0.01,
        "l2": 3.0,
        "l2_normalization": "dataset",
        "keep_prob": 1.0,
    },
}
ADAPTIVE_LR = 0.001  # rmsprop's and adam's step when --lr is left out (Kingma & Ba's)
L2_GRID = (1.0, 3.0, 10.0, 30.0)  # a regression's --l2 left out: chosen from these ...
AUTO_L2_ROWS = 100_000  # ... up to this many training rows
L2_VALIDATION = 0.2  # ... by the cost on this share of them
STEP_BUDGET = 3000  # --epochs left out: about this many steps ...
MAX_EPOCHS = 1000  # ... in at most this many epochs


def add_arguments(p) -> None:
    p.add_argument(
        "--data",
        required=True,
        help="bundled dataset (digits, breast_cancer, iris, wine), a CSV/TSV table with a "
        "header (with --target), a .npz with X and y, or a directory with X.npy and y.npy "
        "(memory-mapped)",
    )
    p.add_argument("--target", metavar="COLUMN", help="the target column of a CSV/TSV table")
    add_column_arguments(p)
    p.add_argument(
        "--task",
        choices=["classification", "regression"],
        help="what y is; inferred when unambiguous (and said so)",
    )
    add_network_arguments(p)
    p.add_argument(
        "--output",
        default="auto",
        choices=["auto", "sigmoid", "softmax", "linear"],
        help="output layer/loss; auto: sigmoid for 2 classes, softmax for more, linear for "
        "a regression",
    )
    add_training_arguments(
        p,
        DEFAULTS,
        {
            "epochs": f"default: about {STEP_BUDGET:,} steps, at least 20 epochs (50 for a "
            f"regression) and at most {MAX_EPOCHS:,}",
            "lr": f"default {ADAPTIVE_LR:g} for adam and rmsprop; for gd and momentum 0.1, "
            "0.01 for a regression",
        },
    )
    p.add_argument(
        "--l2-normalization",
        default=None,
        choices=["batch", "dataset"],
        help="divide the L2 term by the mini-batch's rows or the training set's (default "
        "batch; dataset for a regression)",
    )
    p.add_argument(
        "--standardize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="standardize the inputs (and a regression's targets) with the training rows' "
        "mean and std, saved with the model (default on; --no-standardize for raw inputs)",
    )
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="held-out fraction (default 0.2; 0 = none): random rows, stratified by class, "
        "or the last rows of a memory-mapped directory",
    )
    p.add_argument("--out", default="out", help="output directory (default out/)")
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="save training state here (each epoch, on Ctrl-C and every "
        "--checkpoint-every iterations); resume from it when it exists",
    )
    p.add_argument(
        "--checkpoint-every", type=int, metavar="N", help="also checkpoint every N iterations"
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel over MPI ranks: mpiexec -n 4 deepgrad train ... --distributed "
        "(rank 0 alone prints and writes)",
    )
    p.add_argument(
        "--mpi-timeout",
        type=float,
        metavar="SECONDS",
        help="--distributed: a rank that waits this long for another in a collective names "
        "the silent ranks and aborts the job (default: the DEEPGRAD_MPI_TIMEOUT variable; "
        "unset, wait forever)",
    )
    add_learning_arguments(p)


def column_list(text: str) -> list[str]:
    """'a,b, c' -> ['a', 'b', 'c'] (column names for --features, --drop, --categorical)."""
    names = [n.strip() for n in text.split(",") if n.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected column names separated by commas, got {text!r}")
    return names


def add_column_arguments(p) -> None:
    """A table's columns: --features, --drop, --categorical, --missing, --explain."""
    p.add_argument(
        "--features",
        type=column_list,
        metavar="A,B,...",
        help="a table's feature columns: only these (default: every column but --target)",
    )
    p.add_argument(
        "--drop", type=column_list, metavar="C,...", help="a table's columns to leave out"
    )
    p.add_argument(
        "--categorical",
        type=column_list,
        metavar="C,...",
        help="text columns to one-hot encode however many distinct values they have (a "
        "text column with more distinct values than half its rows is dropped otherwise)",
    )
    p.add_argument(
        "--missing",
        default="median",
        choices=["median", "mean", "error"],
        help="a numeric column's missing cells: filled with the training rows' median "
        "(default) or mean, with a 0/1 column flagging them; error: refuse them",
    )
    p.add_argument(
        "--missing-target",
        default="drop",
        choices=["drop", "error"],
        help="rows whose target is missing (empty, NA, NaN, null, ...): dropped with a count "
        "(default), or an error",
    )
    p.add_argument(
        "--explain",
        action="store_true",
        help="list every column of a table with how it is encoded (or why it was dropped)",
    )


def add_learning_arguments(p) -> None:
    """--optimizer, --lr-decay, --lr-decay-every, --lr-decay-per, --early-stopping,
    --patience."""
    p.add_argument(
        "--optimizer",
        default="adam",
        choices=["gd", "momentum", "rmsprop", "adam"],
        help="the update rule (default adam, beta1 0.9, beta2 0.999; gd: the course's "
        "mini-batch gradient descent)",
    )
    p.add_argument(
        "--lr-decay",
        type=float,
        metavar="RATE",
        help="inverse-time decay: alpha_k = lr / (1 + RATE * k), k counting epochs "
        "(or steps, --lr-decay-per step)",
    )
    p.add_argument(
        "--lr-decay-every",
        type=int,
        metavar="N",
        help="with --lr-decay: k = floor(epochs / N), the rate changes every N epochs "
        "(the course's schedule_lr_decay with time_interval N)",
    )
    p.add_argument(
        "--lr-decay-per",
        default="epoch",
        choices=["epoch", "step"],
        help="what --lr-decay counts (default epoch)",
    )
    p.add_argument(
        "--early-stopping",
        action=argparse.BooleanOptionalAction,
        default=None,
        help="set --validation-fraction of the training rows apart, stop when their cost has "
        "not improved for --patience epochs and keep the best epoch's parameters (default "
        "off; the held-out rows are never used to stop)",
    )
    p.add_argument(
        "--validation-fraction",
        type=float,
        default=0.1,
        metavar="F",
        help="--early-stopping: the share of the training rows it watches (default 0.1)",
    )
    p.add_argument(
        "--patience", type=int, default=10, metavar="N", help="--early-stopping: epochs (10)"
    )


def learning_rate(args):
    """--lr, or its schedule when --lr-decay is given."""
    from deepgrad.optim.optimizers import inverse_time_decay

    if args.lr_decay is None:
        return args.lr
    every = args.lr_decay_every
    return inverse_time_decay(
        args.lr, args.lr_decay, every or 1, staircase=every is not None, per=args.lr_decay_per
    )


def check_flags(args) -> None:
    """Each flag checked under its own name before any work."""
    from deepgrad.core.checks import check_float, check_int

    check_float("--test-fraction", args.test_fraction, 0.0, 1.0, high_open=True)
    if args.epochs is not None:
        check_int("--epochs", args.epochs, 1)
    if args.lr is not None:
        check_float("--lr", args.lr, 0.0, low_open=True)
    if args.l2 is not None:
        check_float("--l2", args.l2, 0.0)
    if args.keep_prob is not None:
        check_float("--keep-prob", args.keep_prob, 0.0, 1.0, low_open=True)
    check_int("--seed", args.seed, 0)
    if args.checkpoint_every is not None:
        check_int("--checkpoint-every", args.checkpoint_every, 1)
    if args.lr_decay is not None:
        check_float("--lr-decay", args.lr_decay, 0.0)
    if args.lr_decay_every is not None:
        check_int("--lr-decay-every", args.lr_decay_every, 1)
        if args.lr_decay is None:
            raise ValueError("--lr-decay-every applies with --lr-decay only")
    check_int("--patience", args.patience, 1)
    check_float("--validation-fraction", args.validation_fraction, 0.0, 1.0, True, True)
    if args.mpi_timeout is not None:
        check_float("--mpi-timeout", args.mpi_timeout, 0.0, low_open=True)
        if not args.distributed:
            raise ValueError("--mpi-timeout applies to --distributed training only")


def resolve_task(args, y, bundled: bool = False) -> tuple[str, str]:
    """(task, how it was chosen) from --task, --output or the targets."""
    from deepgrad.data.preprocessing import infer_task

    implied = {"linear": "regression", "sigmoid": "classification", "softmax": "classification"}
    implied = implied.get(args.output)
    if args.task and implied and args.task != implied:
        raise ValueError(f"--output {args.output} does a {implied}, not --task {args.task}")
    if args.task:
        return args.task, "--task"
    if implied:
        return implied, f"--output {args.output}"
    if bundled:
        return "classification", "a bundled classification set"
    task, why = infer_task(y, flag="--task")
    return task, f"inferred: {why}; --task to choose"


def check_targets_for(task: str, y, target_name) -> np.ndarray | None:
    """The class names (classification) after checking y fits the task."""
    from deepgrad.data.preprocessing import class_names

    where = f"target column {target_name!r}" if target_name else "y"
    y_np = np.asarray(y)
    if task == "regression":
        if y_np.dtype.kind not in "biuf":
            raise ValueError(
                f"--task regression needs numeric targets; {where} holds text labels "
                f"(e.g. {y_np.reshape(-1)[0].item()!r})"
            )
        return None
    if y_np.dtype.kind == "f" and np.any(y_np != np.round(y_np)):
        raise ValueError(
            f"--task classification needs class labels; {where} holds fractional values "
            f"(e.g. {y_np[y_np != np.round(y_np)][0]:g}); use --task regression"
        )
    return class_names(y_np, where)


def choose_output(args, y, classes) -> tuple[str, int]:
    """(output layer, units): linear for a regression, one sigmoid unit for 2 classes,
    a softmax over K units for K classes."""
    if classes is None:
        return "linear", 1 if np.ndim(y) == 1 else int(np.shape(y)[1])
    k = len(classes)
    output = args.output if args.output != "auto" else ("sigmoid" if k == 2 else "softmax")
    if output == "sigmoid" and k > 2:
        raise ValueError(
            f"--output sigmoid is for 2 classes; the labels have {k}: use --output softmax"
        )
    return output, 1 if output == "sigmoid" else k


def split(src, y, task: str, args):
    """(Xtr, Xte, ytr, yte, description); Xte is None without a held-out set. For a
    table, Xtr and Xte are the row positions of its frame (encoded afterwards)."""
    from deepgrad.data import bundled as datasets

    m = len(y)
    X = src.X if src.frame is None else np.arange(m)
    if args.test_fraction == 0:
        return X, None, y, None, f"no held-out split (--test-fraction 0): all {m:,} rows"
    if src.mapped:
        Xtr, Xte, ytr, yte = datasets.tail_split(src.X, y, args.test_fraction)
        how = "the last rows of the memory-mapped files, not loaded (rows must be in random order)"
    else:
        strat = task == "classification"
        Xtr, Xte, ytr, yte = datasets.train_test_split(
            X, y, args.test_fraction, args.seed, stratify=strat
        )
        how = f"random rows{', stratified by class' if strat else ''}, --seed {args.seed}"
    if len(yte) == 0 or len(ytr) == 0:
        raise ValueError(
            f"--test-fraction {args.test_fraction:g} of {m} rows leaves "
            f"{len(ytr)} to train on and {len(yte)} held out; both need at least 1"
        )
    text = (
        f"held-out split: {len(yte):,} of {m:,} rows ({args.test_fraction:.0%}, {how}); "
        f"training on the other {len(ytr):,}"
    )
    return Xtr, Xte, ytr, yte, text


def run(args) -> int:
    import deepgrad as dg
    from deepgrad.core.checks import check_int

    check_flags(args)
    check_writable_dir(args.out)  # before the work, not after it
    src = _load(args)
    task, how = resolve_task(args, src.y, src.bundled)
    classes = check_targets_for(task, src.y, src.target_name)
    output, n_out = choose_output(args, src.y, classes)
    _fill_defaults(args, task)
    Xtr, Xte, ytr, yte, split_text = split(src, src.y, task, args)
    encoder, Xtr, Xte, column_lines = _encode_columns(args, src, Xtr, Xte)
    args.early_stopping = bool(args.early_stopping)  # left out: off
    stopping = None  # its own rows: the held-out ones stay unseen until the score
    if args.early_stopping:
        Xtr, ytr, stopping = _stopping_rows(args, Xtr, ytr, src, task)
    batch_size = batch_size_for(args.batch_size, len(ytr))
    if args.epochs is None:
        args.epochs = default_epochs(task, len(ytr), batch_size)
    standardize = args.standardize and not src.mapped
    try:
        hidden = [check_int(f"--hidden entry {i + 1}", h, 1) for i, h in enumerate(args.hidden)]
        net = dg.Network(
            [Xtr.shape[1], *hidden, n_out],
            args.activation,
            output,
            init=args.init,
            seed=args.seed,
            dtype=args.dtype,
        )
    except (ValueError, TypeError) as exc:
        raise as_flag_error(exc) from exc
    pre = _record(Xtr, ytr, output, n_out, standardize, classes, src, encoder)
    net.preprocessing = None if pre.is_identity else pre
    l2_line = _choose_l2(args, net, Xtr, ytr, batch_size, src, task)
    quiet = args.quiet or (args.distributed and _rank() != 0)
    if not quiet:
        lines = [f"data: {src.what}", *column_lines]
        lines += [f"task: {task} ({how})" + _classes_text(classes)]
        lines += [split_text, _scaling_text(args, src, task), repr(net)]
        lines += [l2_line] if l2_line else []
        print("\n".join([*lines, _settings_text(args, task, batch_size, len(ytr))]))
    _resume_note(args, quiet)
    t0 = time.perf_counter()
    try:
        history = _fit(net, args, Xtr, ytr, Xte, yte, batch_size, src, stopping)
    except KeyboardInterrupt:
        _interrupted(args)
        raise
    seconds = time.perf_counter() - t0
    if args.distributed and _rank() != 0:
        return 0  # rank 0 alone writes and prints
    _report(net, args, history, seconds, Xtr, ytr, Xte, yte, task, quiet)
    out = out_dir(args.out)
    from deepgrad.plotting import curves as plotting

    write_run(
        out,
        {
            "model.npz": lambda p: dg.save(net, p),
            "history.json": lambda p: write_json(p, history.as_dict()),
            "learning_curves.png": lambda p: plotting.save_figure(
                plotting.learning_curves(history, title=f"{net!r}"), p
            ),
        },
    )
    if not quiet:
        print(f"wrote {out / 'model.npz'}, {out / 'history.json'}, {out / 'learning_curves.png'}")
    return 0


def _settings_text(args, task: str, batch_size, m: int) -> str:
    b = m if batch_size is None else min(64, m) if batch_size == "auto" else batch_size
    l2 = f", L2 lambda {args.l2:g} over the {args.l2_normalization}" if args.l2 else ""
    l2 += f", dropout keep-prob {args.keep_prob:g}" if args.keep_prob < 1 else ""
    epochs = f"{args.epochs} epochs" + (
        f" ({args.epochs * -(-m // b):,} steps)" if getattr(args, "epochs_auto", False) else ""
    )
    if args.early_stopping:
        l2 += (
            f", early stopping on {args.validation_fraction:.0%} of the training rows "
            f"(patience {args.patience})"
        )
    return (
        f"training: {epochs}, batch size {b}, {args.optimizer}, lr {args.lr:g}{l2} "
        f"(unset flags take the {task} defaults, see --help)"
    )


def _fill_defaults(args, task: str) -> None:
    """--lr, --l2, --l2-normalization left out: the task's defaults (an adaptive
    optimizer's own --lr); --epochs is filled by ``default_epochs`` once the rows are known."""
    if args.lr is None and args.optimizer in ("rmsprop", "adam"):
        args.lr = ADAPTIVE_LR
    args.epochs_auto = args.epochs is None
    args.l2_auto = args.l2 is None
    for key, value in DEFAULTS[task].items():
        if key != "epochs" and getattr(args, key) is None:
            setattr(args, key, value)


def default_epochs(task: str, m: int, batch_size) -> int:
    """About STEP_BUDGET steps of ``batch_size`` over ``m`` rows, within the task's least
    epochs and MAX_EPOCHS."""
    b = m if batch_size is None else min(64, m) if batch_size == "auto" else batch_size
    steps = -(-m // b)
    return max(DEFAULTS[task]["epochs"], min(MAX_EPOCHS, -(-STEP_BUDGET // steps)))


def _rank() -> int:
    from deepgrad.train import distributed

    return distributed.rank()


def _load(args):
    from deepgrad.cli.sources import load_source

    columns = {"features": args.features, "drop": args.drop}
    columns["missing_target"] = args.missing_target
    if args.distributed:  # one-line error outside mpiexec; ranks fail together
        from deepgrad.train import distributed

        if args.mpi_timeout is not None:  # read by the engine (distributed.collective_timeout)
            os.environ[distributed.TIMEOUT_ENV] = repr(float(args.mpi_timeout))
            distributed.collective_timeout()  # a bad value: one line, before any work
        return distributed.agree(
            distributed.world(), load_source, args.data, args.target, **columns
        )
    return load_source(args.data, args.target, **columns)


def _record(Xtr, ytr, output, n_out, standardize, classes, src, encoder=None):
    from deepgrad.data.preprocessing import fit_preprocessing

    return fit_preprocessing(
        Xtr,
        ytr,
        output,
        n_out,
        standardize,
        classes=classes,
        feature_names=src.feature_names,
        target_name=src.target_name,
        columns=encoder,
    )


def _encode_columns(args, src, train_rows, test_rows):
    """(encoder or None, Xtr, Xte, the lines to print): a table's column roles learned on
    its training rows, then applied to both parts (a category only in the held-out rows
    is a warning line)."""
    if src.frame is None:
        if args.categorical:
            raise ValueError(
                f"--categorical is for CSV/TSV tables; --data {args.data!r} is not one"
            )
        return None, train_rows, test_rows, []
    from deepgrad.data.columns import TableEncoder
    from deepgrad.io.files import max_load_bytes

    name = repr(args.data)
    train = src.frame.iloc[train_rows]
    encoder = TableEncoder.fit(
        train,
        missing=args.missing,
        categorical=args.categorical or (),
        lines=True,
        source=name,
    )
    limit = max_load_bytes()  # what a file may make us allocate
    Xtr = encoder.transform(train, lines=True, source=name, max_bytes=limit)
    Xte = None
    if test_rows is not None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            test = src.frame.iloc[test_rows]
            Xte = encoder.transform(test, lines=True, source=name, max_bytes=limit)
        for w in caught:
            warn("train", f"held-out rows: {w.message}")
    lines = [f"columns: {encoder.summary()}"] + [f"columns: {n}" for n in encoder.notes]
    if args.explain:
        lines += encoder.describe()
    return encoder, Xtr, Xte, lines


def _interrupted(args) -> None:
    """Ctrl-C during training: say what was kept and how to go on."""
    import sys

    if args.checkpoint:
        print(
            f"deepgrad train: interrupted; the training state is saved in {args.checkpoint}: "
            f"run the same command again to resume (nothing written to {args.out})",
            file=sys.stderr,
        )
    else:
        print(
            f"deepgrad train: interrupted; nothing was written to {args.out} (with "
            f"--checkpoint PATH a run can be resumed)",
            file=sys.stderr,
        )


def _classes_text(classes) -> str:
    if classes is None:
        return ""
    from deepgrad.cli.common import show

    shown = ", ".join(show(c.item()) for c in classes[:10])
    return f"; {len(classes)} classes: {shown}" + (" ..." if len(classes) > 10 else "")


def _scaling_text(args, src, task) -> str:
    if src.mapped and args.standardize:
        return (
            "inputs used as stored (a memory-mapped X is not standardized: that would load "
            "it; write standardized files, e.g. as make-data does)"
        )
    if not args.standardize:
        return "inputs used raw (--no-standardize)"
    targets = " and targets" if task == "regression" else ""
    return (
        f"inputs{targets} standardized with the training rows' mean and std "
        f"(saved with the model, applied by predict)"
    )


def _resume_note(args, quiet: bool) -> None:
    """Say when a checkpoint will be resumed, and whether anything is left to train."""
    if quiet or not args.checkpoint or not Path(args.checkpoint).is_file():
        return
    from deepgrad.train.checkpoint import load_checkpoint

    saved = load_checkpoint(args.checkpoint)
    done = len(saved.history.get("iteration_cost", []))
    if saved.epoch >= args.epochs and saved.position == 0:
        print(
            f"checkpoint {args.checkpoint} is complete ({saved.epoch} epochs, {done} "
            f"iterations): nothing left to train; reporting the saved model"
        )
    else:
        print(
            f"resuming from checkpoint {args.checkpoint}: epoch {saved.epoch + 1} of "
            f"{args.epochs}, {done} iterations done"
        )


def _choose_l2(args, net, Xtr, ytr, batch_size, src, task) -> str | None:
    """A regression's --l2 left out: each lambda of L2_GRID trains a copy of ``net`` on
    1 - L2_VALIDATION of the training rows; the lowest squared error on the rest wins
    (sets ``args.l2``). Returns the line that says so, or None where it does not apply."""
    from deepgrad.data import bundled as datasets

    if not (args.l2_auto and task == "regression") or src.mapped or args.distributed:
        return None
    if not 10 <= len(ytr) <= AUTO_L2_ROWS:
        return None
    Xa, Xb, ya, yb = datasets.train_test_split(Xtr, ytr, L2_VALIDATION, args.seed + 1, False)
    errors = {}
    for lam in L2_GRID:
        trial = net.copy()
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            trial.fit(
                Xa,
                ya,
                batch_size=min(batch_size, len(ya)) if isinstance(batch_size, int) else batch_size,
                epochs=args.epochs,
                learning_rate=learning_rate(args),
                optimizer=args.optimizer,
                l2=lam,
                l2_normalization=args.l2_normalization,
                keep_prob=args.keep_prob,
                seed=args.seed,
                progress=False,
                on_divergence="stop",
            )
        pred = np.asarray(trial.predict(Xb), dtype=np.float64).reshape(np.shape(yb))
        err = float(np.mean((pred - yb) ** 2))
        errors[lam] = err if np.isfinite(err) else np.inf
    args.l2 = min(errors, key=lambda k: (errors[k], k))
    shown = ", ".join(f"{k:g}: {v:.4g}" for k, v in errors.items())
    return (
        f"L2: lambda {args.l2:g}, the lowest mean squared error on {len(yb):,} of the "
        f"training rows set apart ({shown}); --l2 to choose"
    )


def _stopping_rows(args, Xtr, ytr, src, task):
    """(training rows, their targets, (validation rows, targets)): --validation-fraction
    of the training rows set apart for early stopping."""
    from deepgrad.data import bundled as datasets

    if src.mapped:
        raise ValueError(
            "--early-stopping needs the training rows in memory, not a memory-mapped "
            "directory (--no-early-stopping)"
        )
    Xfit, Xval, yfit, yval = datasets.train_test_split(
        Xtr, ytr, args.validation_fraction, args.seed + 1, stratify=task == "classification"
    )
    if len(yval) == 0 or len(yfit) == 0:
        raise ValueError(
            f"--validation-fraction {args.validation_fraction:g} of {len(ytr)} training rows "
            f"leaves {len(yfit)} to train on and {len(yval)} to stop by; both need at least 1"
        )
    return Xfit, yfit, (Xval, yval)


def _fit(net, args, Xtr, ytr, Xte, yte, batch_size, src, stopping=None):
    """net.fit with the library's warnings turned into one stderr line each; ``stopping``:
    the (rows, targets) early stopping watches, else the held-out ones are the curve's."""
    from deepgrad.data.preprocessing import UnscaledFeaturesWarning, unscaled_features
    from deepgrad.train.types import DivergenceError, DivergenceWarning

    validation = None if Xte is None or src.mapped else (Xte, yte)
    if stopping is not None:
        validation = stopping
    if net.preprocessing is None or net.preprocessing.inputs is None:
        problem = unscaled_features(Xtr, src.feature_names)
        if problem:  # said before training: a divergence may follow
            fix = "drop --no-standardize" if not args.standardize else "standardize the files"
            warn("train", f"training on unstandardized features: {problem}; {fix}")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UnscaledFeaturesWarning)  # said below, with flags
        warnings.simplefilter("ignore", DivergenceWarning)  # said below, with --lr
        try:
            history = net.fit(
                Xtr,
                ytr,
                batch_size=batch_size,
                epochs=args.epochs,
                learning_rate=learning_rate(args),
                optimizer=args.optimizer,
                l2=args.l2,
                l2_normalization=args.l2_normalization,
                keep_prob=args.keep_prob,
                seed=args.seed,
                validation_data=validation,
                progress=False if args.quiet else None,
                checkpoint=args.checkpoint,
                checkpoint_every=args.checkpoint_every,
                distributed=args.distributed,
                early_stopping=args.early_stopping,
                patience=args.patience,
            )
        except (ValueError, TypeError) as exc:
            raise as_flag_error(exc) from exc
        except DivergenceError as exc:
            raise DivergenceError(
                f"{exc} (--lr {args.lr:g}); nothing was written to {args.out}"
            ) from exc
    return history


def _report(net, args, history, seconds, Xtr, ytr, Xte, yte, task, quiet) -> None:
    """The summary lines, the held-out score beside its baseline, and the warnings."""
    from deepgrad.train.types import cost_rise, cost_rise_message

    if not quiet:
        print(
            f"trained {history.iterations} iterations in {seconds:.1f} s; "
            f"final epoch cost {history.epoch_cost[-1]:.4g}"
        )
    held_out = Xte is not None
    X, y = (Xte, yte) if held_out else (Xtr, ytr)
    where = "held-out " if held_out else "training-set (no held-out split) "
    score = evaluate(net, X, y, task, reference=ytr)
    lines = classification_lines(score, where) if task == "classification" else None
    lines = lines or regression_lines(score, where)
    if not quiet:
        print("\n".join(lines))
    rise = cost_rise(history.iteration_cost)
    if rise is not None:
        warn("train", cost_rise_message(rise, args.lr, "--lr"))
    if history.early_stopped:
        print(history.early_stopped)
    elif len(history.val_cost) >= 2:
        past = trained_past_best(history.val_cost)
        if past:
            warn("train", past)
    scaled = net.preprocessing is not None and net.preprocessing.inputs is not None
    problem = score_warning(score, where.split(" (")[0].strip(), standardized=scaled)
    if problem:
        warn("train", problem)


def trained_past_best(val_cost, margin: float = 0.2) -> str | None:
    """A warning line when training went on well past the best held-out epoch: the cost
    at the end more than ``margin`` above its minimum, at least 5 epochs and a quarter of
    the run after it."""
    n = len(val_cost)
    best = min(range(n), key=lambda e: val_cost[e])
    last, low = val_cost[-1], val_cost[best]
    if n - 1 - best < max(5, n // 4) or not last > (1 + margin) * low:
        return None
    return (
        f"the held-out cost was lowest at epoch {best + 1} ({low:.4g}) and rose "
        f"{100 * (last / low - 1):.0f}% by epoch {n} ({last:.4g}); --early-stopping "
        f"stops at the best epoch of a validation share of the training rows"
    )
