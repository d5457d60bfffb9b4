"""deepgrad predict: apply a saved model (with its preprocessing) to data; score it when
the data has targets; write or show the predictions in the user's own labels."""

from __future__ import annotations

import numpy as np

from deepgrad.cli.common import (
    classification_lines,
    evaluate,
    predict_rows,
    regression_lines,
    score_warning,
    warn,
)

NAME = "predict"
HELP = "predict with a saved model (and score it when the data has labels or targets)"
PREVIEW = 10


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="a model.npz written by deepgrad train")
    p.add_argument(
        "--data",
        required=True,
        help="bundled dataset, a CSV/TSV table with the training columns (and the target "
        "column to score), a .npz with X (and y), or a .npy with X",
    )
    p.add_argument(
        "--target",
        metavar="COLUMN",
        help="the target column of a CSV/TSV table (default: the model's, when present)",
    )
    p.add_argument(
        "--out",
        help="write the predictions here: .csv (a 'prediction' column and, for a "
        "classifier, one probability column per class, 'P(<class>)') or .npy; "
        "without it the first few are shown; never --data or --model, and an existing file "
        "only with --force",
    )
    p.add_argument("--force", action="store_true", help="replace an existing --out file")


def run(args) -> int:
    import deepgrad as dg
    from deepgrad.cli.sources import load_source

    _check_out(args.out, args.data, args.model, args.force)
    net = dg.load(args.model)
    pre = net.preprocessing
    target = args.target or (pre.target_name if pre is not None else None)
    table = _is_table(args.data)
    src = load_source(
        args.data, target if table else None, need_y=False, require_target=bool(args.target)
    )
    X = _features(net, src)
    for note in src.notes:
        print(f"data: {note}")
    task = "regression" if net.spec.output == "linear" else "classification"
    y = None if src.y is None else _targets(net, src, task)
    pred = predict_rows(net, X)
    if y is not None:
        where = _where(src, args.data)
        score = evaluate(net, X, y, task, pred=pred)
        lines = classification_lines if task == "classification" else regression_lines
        print("\n".join(lines(score, "")) + where)
        scaled = net.preprocessing is not None and net.preprocessing.inputs is not None
        problem = score_warning(score, "the", standardized=scaled)
        if problem:
            warn("predict", problem)
    if args.out:
        proba = _probabilities(net, X, task) if args.out.endswith(".csv") else None
        _write(args.out, pred, proba)
        what = " and the probability of each class" if proba is not None else ""
        print(f"wrote {len(pred)} predictions{what} to {args.out}")
    else:
        shown = ", ".join(_fmt(v) for v in pred[:PREVIEW])
        more = f" (first {PREVIEW} of {len(pred)}; --out FILE.csv keeps them all)"
        print(f"predictions: {shown}" + (more if len(pred) > PREVIEW else ""))
    return 0


def _is_table(spec: str) -> bool:
    from deepgrad.data.tables import is_table

    return is_table(spec)


def _check_out(out, data: str, model: str, force: bool) -> None:
    """--out is a new .csv/.npy in an existing directory, never an input (even with
    --force: the input would be gone before it was read), an existing file only with --force."""
    if out is None:
        return
    from pathlib import Path

    for flag, given in (("--data", data), ("--model", model)):
        if _same_file(out, given):
            raise ValueError(f"--out {out!r} is the {flag} file: it would destroy the input")
    if Path(out).suffix not in (".csv", ".npy"):
        raise ValueError(f"--out must end in .csv or .npy, got {out!r}")
    parent = Path(out).parent
    if str(parent) and not parent.is_dir():
        raise OSError(f"cannot write {out!r}: directory {str(parent)!r} does not exist")
    if Path(out).is_dir():
        raise ValueError(f"--out {out!r} is a directory; give a file name")
    if Path(out).exists() and not force:
        raise ValueError(f"--out {out!r} already exists; pass --force to replace it")


def _same_file(a: str, b: str) -> bool:
    import os

    try:
        return os.path.samefile(a, b)
    except OSError:  # one of them does not exist
        return os.path.realpath(a) == os.path.realpath(b)


def _features(net, src):
    """X, checked against what the model was trained on: a table's columns picked by
    name and encoded as in training (extra columns ignored, any order)."""
    pre = net.preprocessing
    n_in = net.layer_sizes[0]
    names = pre.feature_names if pre is not None else None
    if src.frame is not None:
        return _table_features(net, src)
    if np.ndim(src.X) != 2 or np.shape(src.X)[1] != n_in:
        raise ValueError(
            f"--data has {np.shape(src.X)[-1] if np.ndim(src.X) else 0} feature columns but "
            f"the model was trained on {n_in}"
            + (f" ({', '.join(map(repr, names[:4]))}, ...)" if names else "")
        )
    return src.X


def _table_features(net, src) -> np.ndarray:
    """A table through the model's column record (or, for a model that kept only its
    feature names, those columns read as numbers; for one with neither, every column)."""
    import warnings

    from deepgrad.data.columns import TableEncoder
    from deepgrad.io.files import max_load_bytes

    pre = net.preprocessing
    source = repr(src.what.split(":")[0])
    if pre is not None and (pre.columns is not None or pre.feature_names is not None):
        encode = pre.encode_columns
    else:
        encoder = TableEncoder.numeric(src.frame.columns)

        def encode(frame, lines, source, max_bytes):
            return encoder.transform(frame, lines=lines, source=source, max_bytes=max_bytes)

    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        X = encode(src.frame, lines=True, source=source, max_bytes=max_load_bytes())
    for w in caught:
        warn("predict", str(w.message))
    n_in = net.layer_sizes[0]
    if X.shape[1] != n_in:
        raise ValueError(
            f"--data has {X.shape[1]} feature columns but the model was trained on {n_in} "
            f"(and keeps no column names to pick them by)"
        )
    return X


def _targets(net, src, task):
    y = np.asarray(src.y)
    pre = net.preprocessing
    if task == "regression" and y.dtype.kind not in "biuf":
        raise ValueError(
            "the model does regression but the data's targets are text labels "
            f"(e.g. {y.reshape(-1)[0].item()!r}): a model for another task?"
        )
    if task == "classification":
        classes = pre.classes if pre is not None and pre.classes is not None else None
        if classes is not None:
            from deepgrad.data.preprocessing import encode_labels

            try:
                encode_labels(y, classes)
            except ValueError as exc:
                raise ValueError(f"{exc}: a model for another task?") from exc
    return y


def _where(src, spec) -> str:
    if src.bundled:
        return (
            f"\n(scored on all {len(src.y)} rows of the bundled {spec} set, the rows the "
            f"model was trained on included: not a held-out score)"
        )
    return ""


def _fmt(v) -> str:
    v = v.item() if hasattr(v, "item") else v
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def _probabilities(net, X, task):
    """(names, (m, K) probabilities) of a one-label classifier, None otherwise: one
    column per class, named after it (a single sigmoid unit gives both classes)."""
    if task != "classification" or (net.spec.output == "sigmoid" and net.layer_sizes[-1] > 1):
        return None
    chunk = 65_536
    P = np.concatenate(
        [np.asarray(net.predict_proba(X[a : a + chunk])) for a in range(0, len(X), chunk)]
    ).astype(np.float64)
    if P.shape[1] == 1:
        P = np.column_stack([1.0 - P[:, 0], P[:, 0]])
    pre = net.preprocessing
    classes = pre.classes if pre is not None and pre.classes is not None else range(P.shape[1])
    names = [f"P({c.item() if hasattr(c, 'item') else c})" for c in classes]
    return names, P


def _write(path: str, pred: np.ndarray, proba=None) -> None:
    from deepgrad.io.files import atomic_write

    if path.endswith(".npy"):
        atomic_write(path, lambda f: np.save(f, pred, allow_pickle=False))
        return
    cols = 1 if pred.ndim == 1 else pred.shape[1]
    header = ["prediction"] if cols == 1 else [f"prediction_{i}" for i in range(cols)]
    rows = pred.reshape(len(pred), -1).tolist()
    if proba is not None:
        header += proba[0]
        rows = [r + p for r, p in zip(rows, proba[1].tolist(), strict=True)]
    text = ",".join(_csv_cell(h) for h in header) + "\n"
    text += "".join(",".join(_csv_cell(v) for v in r) + "\n" for r in rows)
    atomic_write(path, lambda f: f.write(text.encode()))


def _csv_cell(v) -> str:
    v = v.item() if hasattr(v, "item") else v
    text = repr(v) if isinstance(v, float) else str(v)  # repr: every digit of a float
    return '"' + text.replace('"', '""') + '"' if any(c in text for c in ',"\n') else text
