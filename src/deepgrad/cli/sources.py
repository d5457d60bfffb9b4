"""Where the commands' --data comes from: a bundled set, a CSV/TSV table, a .npz, a .npy
or a directory of memory-mapped .npy files."""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

from deepgrad.io import files

__all__ = ["Source", "load_source", "load_data", "guess_output", "n_outputs"]


class Source(NamedTuple):
    """X (m, n) and y (m,)/(m, k) or None, with what is known about them."""

    X: object
    y: object
    feature_names: tuple[str, ...] | None
    target_name: str | None
    what: str  # e.g. "cancer.csv (569 rows, 30 feature columns, target 'diagnosis')"
    bundled: bool
    mapped: bool  # X is memory-mapped: never loaded whole
    notes: tuple[str, ...] = ()  # what reading the table dropped or left out
    frame: object = None  # a table's feature columns as text (X is None until encoded)


def load_source(
    spec: str,
    target: str | None = None,
    need_y: bool = True,
    require_target: bool = False,
    features=None,
    drop=None,
    missing_target: str = "drop",
) -> Source:
    """Read --data; ``need_y=False`` allows X-only files (predict), where a table's target
    column may be absent unless ``require_target``. A table comes back as ``frame`` (its
    feature columns as text) with X None: the columns are encoded on the training rows
    (``data.columns.TableEncoder``). ``features``/``drop``: a table's columns to use or
    leave out."""
    from deepgrad.data import bundled as datasets
    from deepgrad.data import tables

    path = Path(spec)
    if spec in datasets.BUNDLED:
        if target is not None:
            raise ValueError(
                f"--target is for CSV/TSV tables; the bundled set {spec!r} has its own "
                f"target: leave --target out"
            )
        X, y, names = datasets.load_bundled_table(spec)
        return Source(X, y, names, None, _what(f"the bundled {spec} set", X), True, False)
    if target is not None and not tables.is_table(path):
        raise ValueError(f"--target is for CSV/TSV tables; --data {spec!r} is not one")
    if (features is not None or drop is not None) and not tables.is_table(path):
        raise ValueError(f"--features/--drop are for CSV/TSV tables; --data {spec!r} is not one")
    if tables.is_table(path):
        if target is None and need_y:
            raise ValueError(
                f"--data {spec!r} is a table: name its target column with --target COLUMN"
            )
        t = tables.read_table(
            path,
            target,
            require_target=need_y or require_target,
            drop_missing=need_y,
            features=features,
            drop=drop,
            missing_target=missing_target,
        )
        what = (
            _what(spec, t.frame, "feature columns")
            + (f", target {t.target_name!r}" if t.target_name else "")
            + "".join(f"; {note}" for note in t.notes)
        )
        return Source(
            None, t.y, t.feature_names, t.target_name, what, False, False, t.notes, t.frame
        )
    if path.is_dir():
        from deepgrad.data.arrays import open_dataset

        X, y = open_dataset(path)  # memory-mapped, shape/dtype checked
        return Source(X, y, None, None, _what(f"{spec} (memory-mapped)", X), False, True)
    if path.suffix == ".npy":
        files.npy_header(path)  # declared shape against the file's size, before reading
        X = _two_d(spec, datasets.load_npy(path))
        if need_y:
            raise ValueError(f"--data {spec!r} is one .npy (X only); training needs y too")
        return Source(X, None, None, None, _what(spec, X), False, False)
    if path.suffix == ".npz" or path.is_file():
        if not zipfile.is_zipfile(path):
            raise ValueError(
                f"--data {spec!r} is not a .npz file (nor a .npy, nor a .csv/.tsv table, nor "
                f"a bundled set {list(datasets.BUNDLED)})"
            )
        files.npz_headers(path, allow_compressed=True)  # declared sizes, before reading
        X, y = datasets.load_file(path, require_y=need_y)
        X = _two_d(spec, X)
        if y is not None and len(X) != len(y):
            raise ValueError(
                f"--data {spec!r}: X has {len(X)} rows but y has {len(y)}; they must match"
            )
        return Source(X, y, None, None, _what(spec, X), False, False)
    raise FileNotFoundError(
        f"--data {spec!r} is neither a bundled dataset {list(datasets.BUNDLED)} nor a file"
    )


def _two_d(spec: str, X):
    if X.ndim != 2:
        raise ValueError(
            f"--data {spec!r}: X must be a 2-D array (one row per example), got shape {X.shape}"
        )
    return X


def _what(name: str, X, features: str = "features") -> str:
    shape = np.shape(X)
    if len(shape) != 2:
        return name
    return f"{name}: {shape[0]:,} rows, {shape[1]} {features}"


# -- for the diagnostic commands (gradcheck, compare-init, compare-batch) ----------------
def load_data(spec: str, target: str | None = None):
    """(X, y, suggested output); bundled sets min-max scaled over all rows, a table's
    columns encoded on all its rows and text labels numbered 0..K-1 in sorted order
    (these commands report no held-out score)."""
    from deepgrad.data import bundled as datasets

    if spec in datasets.BUNDLED and target is None:
        return datasets.load_bundled(spec, scale="minmax")
    src = load_source(spec, target)
    X, y = src.X, src.y
    if src.frame is not None:
        X = encode_all_rows(src, spec)
    if y is not None and np.asarray(y).dtype.kind == "U":
        from deepgrad.data.preprocessing import class_names, encode_labels

        y = encode_labels(y, class_names(y, f"target column {src.target_name!r}"))
    return X, y, guess_output(y)


def encode_all_rows(src: Source, spec: str) -> np.ndarray:
    """A table's feature columns encoded with roles learned on all its rows."""
    from deepgrad.data.columns import TableEncoder

    encoder = TableEncoder.fit(src.frame, lines=True, source=repr(spec))
    limit = files.max_load_bytes()
    return encoder.transform(src.frame, lines=True, source=repr(spec), max_bytes=limit)


def guess_output(y) -> str:
    y = np.asarray(y[:100000])
    if y.dtype.kind not in "biuf":
        raise TypeError(f"the data's y must hold numbers (labels or targets), got dtype {y.dtype}")
    if y.size == 0:
        raise ValueError("the data's y is empty: at least 1 example needed")
    if y.ndim == 2 and y.shape[1] > 1:
        return "linear"
    if y.dtype.kind in "biu" or np.all(y == np.round(y)):
        return "sigmoid" if len(np.unique(y)) <= 2 else "softmax"
    return "linear"


def n_outputs(y, output: str) -> int:
    if output == "softmax":
        return int(np.max(y)) + 1
    return 1 if np.ndim(y) == 1 else int(np.shape(y)[1])
