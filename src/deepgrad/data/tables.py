"""CSV and TSV tables with a header row, read by pandas: feature columns (numbers, text,
booleans, with or without gaps) and an optional target column (numbers or text labels).

Every cell is read as text; ``data.columns.TableEncoder`` then learns each feature
column's role on the training rows. Reading makes these cleanups, said in
``Table.notes``: rows whose target is missing (empty, NA, NaN, null, ...) are dropped,
never a class; an index column that pandas or R wrote (empty header, values 0..m-1 or
1..m) is dropped; a .csv whose header holds no comma but semicolons is read as
;-separated. ``features``/``drop`` choose the columns.
"""

from __future__ import annotations

from pathlib import Path
from typing import NamedTuple

import numpy as np

from deepgrad.data.columns import MISSING_MARKERS

__all__ = ["Table", "TABLE_SUFFIXES", "is_table", "read_table", "select_columns"]

TABLE_SUFFIXES = {".csv": ",", ".tsv": "\t", ".tab": "\t"}


class Table(NamedTuple):
    """frame: the feature columns as text cells (a pandas DataFrame, index = the file's
    data row numbers, so that line = index + 2), y (m,) targets (numbers, or text as a
    unicode array) or None, and the column names."""

    frame: object
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
    path,
    target: str | None = None,
    require_target: bool = True,
    drop_missing: bool = True,
    features=None,
    drop=None,
    missing_target: str = "drop",
) -> Table:
    """Read a CSV/TSV file with a header row.

    target : the name of the target column (None: every column is a feature). With
        ``require_target=False`` a missing target column is allowed (predict-time data).
    drop_missing : rows whose target is missing are dropped (training); False keeps every
        row and leaves the target out (y None, said in ``notes``) when any is missing, so
        that predictions line up with the file's rows.
    features, drop : column names to use (only these) or to leave out.
    missing_target : "drop" (the rows, with a count in ``notes``) or "error" (refuse the
        table, naming the first such line).
    """
    pd = _pandas()
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    name = str(path)
    notes = []
    sep = TABLE_SUFFIXES.get(path.suffix.lower(), ",")
    df = _read(pd, path, sep)
    if sep == "," and df.shape[1] == 1 and ";" in str(df.columns[0]):
        df = _read(pd, path, ";")  # Excel in many locales writes ;-separated "CSV"
        notes.append("read as ;-separated (the header has semicolons, no commas)")
    columns = [str(c) for c in df.columns]
    if len(df) == 0:
        raise ValueError(f"data file {name!r} has a header but no rows")
    _check_ragged(df, path, sep if not notes else ";")
    y = None
    index = _index_column(df, columns, target)
    if index is not None:
        columns.remove(index)
        notes.append("the unnamed first column (row labels, an index) dropped")
    if target is not None and target in columns:
        if missing_target not in ("drop", "error"):
            raise ValueError(f"missing_target must be 'drop' or 'error', got {missing_target!r}")
        if drop_missing and missing_target == "error" and _missing(df[target]).any():
            miss = _missing(df[target])
            raise ValueError(
                f"target column {target!r} of {name!r} is missing in {int(miss.sum())} "
                f"row(s), the first at line {int(df.index[miss][0]) + 2} (--missing-target "
                f"drop leaves those rows out)"
            )
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
    features_ = select_columns([c for c in columns if c != target], features, drop, name, target)
    frame = df[features_]
    return Table(frame, y, tuple(features_), target if y is not None else None, tuple(notes))


def select_columns(columns, features, drop, name: str, target=None) -> list[str]:
    """The feature columns after --features (only these, in the file's order) and --drop;
    an unknown name is an error listing the columns."""
    chosen = list(columns)
    for flag, names in (("--features", features), ("--drop", drop)):
        if names is None:
            continue
        unknown = [n for n in names if n not in columns]
        if target is not None and target in names:
            raise ValueError(f"{flag} names the target column {target!r}")
        if unknown:
            raise ValueError(
                f"{flag} names {', '.join(map(repr, unknown))}, not a feature column of "
                f"{name!r}; its columns: "
                + ", ".join(repr(c) for c in columns[:12])
                + (f" and {len(columns) - 12} more" if len(columns) > 12 else "")
            )
        keep = set(names)
        chosen = [c for c in chosen if (c in keep) == (flag == "--features")]
    if not chosen:
        raise ValueError(
            f"data file {name!r} has no feature columns left"
            + (f" besides {target!r}" if target else "")
            + (" after --features/--drop" if features is not None or drop is not None else "")
        )
    return chosen


def _read(pd, path: Path, sep: str):
    name = str(path)
    try:
        return pd.read_csv(
            path,
            sep=sep,
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
        raise ValueError(
            f"data file {name!r} is not UTF-8 text (it holds the byte "
            f"0x{exc.object[exc.start]:02x}); save it as UTF-8 (Excel: 'CSV UTF-8'), or "
            f"convert it: iconv -f latin1 -t utf-8 {name} > utf8.csv"
        ) from exc


def _index_column(df, columns: list[str], target: str | None) -> str | None:
    """The first column when its header is empty (pandas reads it as 'Unnamed: 0') and it
    holds distinct whole numbers: the row labels that ``df.to_csv(path)`` and R's
    ``write.csv`` write (0..m-1 or 1..m, or any unique labels of a filtered, split or
    shuffled frame). A feature like that would leak the row order (a table sorted by its
    target)."""
    first = columns[0]
    if not first.startswith("Unnamed: 0") or first == target or len(columns) < 2:
        return None
    cells = df.iloc[:, 0].str.strip()
    if not cells.str.fullmatch(r"\d{1,18}").all():
        return None
    values = cells.astype(np.int64).to_numpy()
    return first if len(np.unique(values)) == len(values) else None


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


def _check_ragged(df, path: Path, sep: str) -> None:
    """pandas pads a short row with empty cells (a long row is a ParserError): a row with
    an empty cell is re-read by the csv module to tell a short row from an empty cell."""
    empty = (df.isna() | (df == "")).any(axis=1).to_numpy()
    if not empty.any():
        return
    import csv
    import itertools

    row = int(np.flatnonzero(empty)[0])
    with open(path, newline="") as fh:
        reader = csv.reader(fh, delimiter=sep)
        fields = next(itertools.islice(reader, row + 1, None), [])
    if len(fields) < df.shape[1]:
        raise ValueError(
            f"data file {str(path)!r} is ragged: line {row + 2} has {len(fields)} fields, "
            f"the header has {df.shape[1]}"
        )


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
