"""CSV and TSV tables with a header row, read by pandas: numeric feature columns and an
optional target column (numbers or text labels).

Every cell is read as text first and converted column by column, so a bad table gets an
error naming the line and column: a ragged row, an empty cell, a word in a numeric
column, NaN or inf. Two cleanups are made and said in ``Table.notes``: rows whose target
is missing (empty, NA, NaN, null, ...) are dropped, never a class; an index column that
pandas or R wrote (empty header, values 0..m-1 or 1..m) is dropped.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["Table", "TABLE_SUFFIXES", "is_table", "read_table"]

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}
# the usual spellings of a missing cell (pandas' defaults, R's NA, SQL's NULL), lower case
MISSING_MARKERS = frozenset(
    ["", "na", "n/a", "nan", "-nan", "null", "none", "<na>", "#n/a", "#na", "nil"]
)


class Table(NamedTuple):
    """X (m, n) float64 features, y (m,) targets (numbers, or text as a unicode array) or
    None, and the column names."""

    X: np.ndarray
    y: np.ndarray | None
    feature_names: tuple[str, ...]
    target_name: str | None
    notes: tuple[str, ...] = ()  # what was dropped, e.g. "3 rows without a target dropped"


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


def read_table(
    path, target: str | None = None, require_target: bool = True, drop_missing: bool = True
) -> Table:
    """Read a CSV/TSV file with a header row.

    target : the name of the target column (None: every column is a feature). With
        ``require_target=False`` a missing target column is allowed (predict-time data).
    drop_missing : rows whose target is missing are dropped (training); False keeps every
        row and leaves the target out (y None, said in ``notes``) when any is missing, so
        that predictions line up with the file's rows.
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
    notes = []
    index = _index_column(df, columns, target)
    if index is not None:
        columns.remove(index)
        notes.append("the unnamed first column (row numbers, an index) dropped")
    if target is not None and target in columns:
        df = _drop_missing_targets(df, target, name, notes) if drop_missing else df
        if drop_missing or not _missing(df[target]).any():
            y = _target(df[target], target, name)
        else:
            notes.append(
                f"target {target!r} has {int(_missing(df[target]).sum())} missing "
                f"cell(s): not scored"
            )
    elif target is not None and require_target:
        raise ValueError(
            f"--target {target!r} is not a column of {name!r}; its columns: "
            + ", ".join(repr(c) for c in columns[:8])
            + (f" and {len(columns) - 8} more" if len(columns) > 8 else "")
        )
    features = [c for c in columns if c != target]
    if not features:
        raise ValueError(f"data file {name!r} has no feature columns besides {target!r}")
    X = np.column_stack([_numeric(df[c], c, name) for c in features])
    return Table(X, y, tuple(features), target if y is not None else None, tuple(notes))


def _index_column(df, columns: list[str], target: str | None) -> str | None:
    """The first column when its header is empty (pandas reads it as 'Unnamed: 0') and it
    holds the row numbers 0..m-1 or 1..m: what ``df.to_csv(path)`` and R's ``write.csv``
    write. A feature like that would leak the row order (a table sorted by its target)."""
    first = columns[0]
    if not first.startswith("Unnamed: 0") or first == target or len(columns) < 2:
        return None
    cells = df.iloc[:, 0].str.strip()
    if not cells.str.fullmatch(r"\d{1,18}").all():
        return None
    values = cells.astype(np.int64).to_numpy()
    rows = np.arange(len(values))
    return first if (np.array_equal(values, rows) or np.array_equal(values, rows + 1)) else None


def _missing(col) -> np.ndarray:
    return col.str.strip().str.lower().isin(MISSING_MARKERS).to_numpy()


def _drop_missing_targets(df, target: str, name: str, notes: list[str]):
    """Rows whose target cell is a missing marker are dropped (a count in ``notes``)."""
    missing = _missing(df[target])
    if not missing.any():
        return df
    if missing.all():
        raise ValueError(
            f"target column {target!r} of {name!r} is missing in all {len(df)} rows "
            f"(empty, NA, NaN, null, ...); choose another --target"
        )
    notes.append(f"{int(missing.sum())} of {len(df)} rows without a target {target!r} dropped")
    return df[~missing]


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
        line = int(col.index[row]) + 2  # the file's line, kept after dropped rows
        cell = col.iloc[row]
        if cell.strip() == "":
            what = "an empty cell"
        elif np.isnan(values[row]) and cell.strip().lower() not in ("nan", "na", "n/a"):
            raise ValueError(
                f"column {column!r} of {name!r} is not numeric: line {line} holds "
                f"{cell!r}; every column except --target must hold numbers"
            )
        else:
            what = f"{cell.strip()!r}"
        raise ValueError(
            f"column {column!r} of {name!r} has {what} at line {line} "
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
        line = int(col.index[row]) + 2
        raise ValueError(f"target column {column!r} of {name!r} has an empty cell at line {line}")
    numbers = pd.to_numeric(stripped, errors="coerce")
    missing = stripped.str.lower().isin(["nan", "na", "n/a", "null"]).to_numpy()
    if (numbers.isna().to_numpy() & ~missing).any():
        return stripped.to_numpy().astype(str)  # text labels
    values = numbers.to_numpy(dtype=np.float64) if missing.any() else numbers.to_numpy()
    if values.dtype.kind == "f" and not np.all(np.isfinite(values)):
        row = int(np.flatnonzero(~np.isfinite(values))[0])
        line = int(col.index[row]) + 2
        raise ValueError(
            f"target column {column!r} of {name!r} holds {col.iloc[row]!r} at line {line}; "
            f"targets must be finite"
        )
    return values
