"""CSV and TSV tables with a header row, read by pandas: numeric feature columns and an
optional target column (numbers or text labels).

Every cell is read as text first and converted column by column, so a bad table gets an
error naming the line and column: a ragged row, an empty cell, a word in a numeric
column, NaN or inf.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["Table", "TABLE_SUFFIXES", "is_table", "read_table"]

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


class Table(NamedTuple):
    """X (m, n) float64 features, y (m,) targets (numbers, or text as a unicode array) or
    None, and the column names."""

    X: np.ndarray
    y: np.ndarray | None
    feature_names: tuple[str, ...]
    target_name: str | None


def is_table(path) -> bool:
    """True for a file name ending in .csv, .tsv or .tab."""
    return Path(path).suffix.lower() in TABLE_SUFFIXES


def _pandas():
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(
            "reading CSV/TSV tables needs pandas: pip install 'deepgrad[tables]' "
            "(or run make install-tables)"
        ) from exc
    return pandas


def read_table(path, target: str | None = None, require_target: bool = True) -> Table:
    """Read a CSV/TSV file with a header row.

    target : the name of the target column (None: every column is a feature). With
        ``require_target=False`` a missing target column is allowed (predict-time data).
    """
    pd = _pandas()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    name = str(path)
    try:
        df = pd.read_csv(
            path,
            sep=TABLE_SUFFIXES.get(path.suffix.lower(), ","),
            dtype=str,
            keep_default_na=False,  # an empty cell stays "", a missing field becomes NaN
            skipinitialspace=True,
        )
    except pd.errors.EmptyDataError as exc:
        raise ValueError(f"data file {name!r} is empty (no header row)") from exc
    except pd.errors.ParserError as exc:
        raise ValueError(
            f"data file {name!r} is ragged or not a table: {_first_line(exc)}"
        ) from exc
    except UnicodeDecodeError as exc:
        raise ValueError(f"data file {name!r} is not a text table: {exc}") from exc
    columns = [str(c) for c in df.columns]
    if len(df) == 0:
        raise ValueError(f"data file {name!r} has a header but no rows")
    _check_ragged(df, path)
    y = None
    if target is not None and target in columns:
        y = _target(df[target], target, name)
    elif target is not None and require_target:
        raise ValueError(
            f"--target {target!r} is not a column of {name!r}; its columns: "
            + ", ".join(repr(c) for c in columns[:8])
            + (f" and {len(columns) - 8} more" if len(columns) > 8 else "")
        )
    features = [c for c in columns if c != target or y is None]
    if not features:
        raise ValueError(f"data file {name!r} has no feature columns besides {target!r}")
    X = np.column_stack([_numeric(df[c], c, name) for c in features])
    return Table(X, y, tuple(features), target if y is not None else None)


def _first_line(exc: Exception) -> str:
    text = str(exc).strip().splitlines()
    return text[-1] if text else type(exc).__name__


def _check_ragged(df, path: Path) -> None:
    """pandas pads a short row with empty cells (a long row is a ParserError): a row with
    an empty cell is re-read by the csv module to tell a short row from an empty cell."""
    empty = (df.isna() | (df == "")).any(axis=1).to_numpy()
    if not empty.any():
        return
    import csv
    import itertools

    row = int(np.flatnonzero(empty)[0])
    with open(path, newline="") as fh:
        reader = csv.reader(fh, delimiter=TABLE_SUFFIXES.get(path.suffix.lower(), ","))
        fields = next(itertools.islice(reader, row + 1, None), [])
    if len(fields) < df.shape[1]:
        raise ValueError(
            f"data file {str(path)!r} is ragged: line {row + 2} has {len(fields)} fields, "
            f"the header has {df.shape[1]}"
        )


def _numeric(col, column: str, name: str) -> np.ndarray:
    pd = _pandas()
    values = pd.to_numeric(col, errors="coerce").to_numpy(dtype=np.float64)
    bad = ~np.isfinite(values)
    if bad.any():
        row = int(np.flatnonzero(bad)[0])
        cell = col.iloc[row]
        if cell.strip() == "":
            what = "an empty cell"
        elif np.isnan(values[row]) and cell.strip().lower() not in ("nan", "na", "n/a"):
            raise ValueError(
                f"column {column!r} of {name!r} is not numeric: line {row + 2} holds "
                f"{cell!r}; every column except --target must hold numbers"
            )
        else:
            what = f"{cell.strip()!r}"
        raise ValueError(
            f"column {column!r} of {name!r} has {what} at line {row + 2} "
            f"({int(bad.sum())} cell(s) NaN, inf or empty); fill or drop them first"
        )
    return values


def _target(col, column: str, name: str) -> np.ndarray:
    """Numbers when every cell is a finite number, else text labels."""
    pd = _pandas()
    stripped = col.str.strip()
    empty = (stripped == "").to_numpy()
    if empty.any():
        row = int(np.flatnonzero(empty)[0])
        raise ValueError(
            f"target column {column!r} of {name!r} has an empty cell at line {row + 2}"
        )
    numbers = pd.to_numeric(stripped, errors="coerce")
    missing = stripped.str.lower().isin(["nan", "na", "n/a", "null"]).to_numpy()
    if (numbers.isna().to_numpy() & ~missing).any():
        return stripped.to_numpy().astype(str)  # text labels
    values = numbers.to_numpy(dtype=np.float64) if missing.any() else numbers.to_numpy()
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        row = int(np.flatnonzero(~np.isfinite(values))[0])
        raise ValueError(
            f"target column {column!r} of {name!r} holds {col.iloc[row]!r} at line {row + 2}; "
            f"targets must be finite"
        )
    return values
