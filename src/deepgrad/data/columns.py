"""Column roles learned on the training rows: what turns a real table (numbers with gaps,
text, booleans) into the network's numeric inputs, and the same again at predict time.

``TableEncoder.fit(frame)`` looks at each column of the training rows once:

- **numeric** (every non-missing cell a number): a missing cell is filled with the
  training median (or mean), and a 0/1 missing-indicator column is added when training
  had missing cells. A few stray tokens in an otherwise numeric column (UCI's ``?``) are
  read as missing and said so.
- **date** (every non-missing cell an ISO date, ``2012-01-31`` or ``2012-01-31 08:00``,
  or a datetime column): the date as a number of years (2012.08), and, when the training
  dates fall on more than one day of the year, the day of the year as a point on the unit
  circle (two columns, sin and cos: December 31 sits next to January 1). A missing cell
  takes the training median and the circle's centre, flagged by a 0/1 column when
  training had missing cells.
- **category** (text or booleans): one 0/1 column per training category; a missing cell
  is its own category when training had one; a category not seen in training is all
  zeros, with one ``UnseenCategoryWarning`` naming the column and the values.
- **dropped**, with the reason: a column with every cell missing, a constant one, and a
  text column with more distinct values than half its rows (an ID, a name, free text)
  unless it is named in ``categorical`` (which also keeps a date column one-hot).

``transform(frame)`` picks the columns by name (extra columns ignored, any order) and
names the ones that are missing. The encoder is stored in the model file as JSON (no
pickle) by ``data.records``.

>>> import pandas as pd
>>> df = pd.DataFrame({"size": [1.0, None, 3.0], "colour": ["red", "blue", "red"]})
>>> enc = TableEncoder.fit(df)
>>> enc.feature_names
('size', 'size (missing)', 'colour=blue', 'colour=red')
>>> enc.transform(df).tolist()
[[1.0, 0.0, 0.0, 1.0], [2.0, 1.0, 1.0, 0.0], [3.0, 0.0, 0.0, 1.0]]
"""

from __future__ import annotations

import math
import re
import warnings
from dataclasses import dataclass

import numpy as np

__all__ = [
    "Column",
    "TableEncoder",
    "UnseenCategoryWarning",
    "MISSING_MARKERS",
    "FILL_STRATEGIES",
]

# the usual spellings of a missing cell (pandas' defaults, R's NA, SQL's NULL), lower case
MISSING_MARKERS = frozenset(
    ["", "na", "n/a", "nan", "-nan", "null", "none", "<na>", "#n/a", "#na", "nil", "nat"]
)
FILL_STRATEGIES = ("median", "mean", "error")
HIGH_CARDINALITY_FRACTION = 0.5  # more distinct values than this share of the rows: an ID
MIN_CATEGORIES_KEPT = 20  # ... unless there are at most this many
MAX_CATEGORIES = 1000  # above this a text column is dropped (unless named)
MAX_CATEGORIES_NAMED = 10_000  # the one-hot width a named column may take
STRAY_FRACTION = 0.05  # non-numbers in a numeric column read as missing: at most 5% ...
MAX_STRAY_TOKENS = 3  # ... and at most 3 distinct tokens ('?', '-', 'unknown')
MISSING_LABEL = "(missing)"
# an ISO date, optionally with a time: what pandas, R, SQL and spreadsheets write
ISO_DATE = re.compile(r"\d{4}-\d{2}-\d{2}(?:[ T]\d{2}:\d{2}(?::\d{2}(?:\.\d+)?)?)?")
KINDS = ("numeric", "date", "category")


class UnseenCategoryWarning(UserWarning):
    """A text column holds a value that training never saw: it is encoded as all zeros."""


@dataclass(frozen=True)
class Column:
    """One input column's role. kind: "numeric", "date" or "category".

    numeric: ``fill`` replaces a missing cell; ``indicator`` adds a 0/1 column; cells
    equal to one of ``missing_tokens`` count as missing. date: the same ``fill`` (in
    years) and ``indicator``; ``seasonal`` adds the day of the year's sin and cos.
    category: ``categories`` in output order; ``missing_category`` adds a column for
    missing cells.
    """

    name: str
    kind: str
    fill: float | None = None
    indicator: bool = False
    missing_tokens: tuple[str, ...] = ()
    categories: tuple[str, ...] = ()
    missing_category: bool = False
    seasonal: bool = False

    @property
    def width(self) -> int:
        if self.kind == "category":
            return len(self.categories) + self.missing_category
        return 1 + 2 * self.seasonal + self.indicator

    @property
    def output_names(self) -> tuple[str, ...]:
        flag = (f"{self.name} {MISSING_LABEL}",) if self.indicator else ()
        if self.kind == "numeric":
            return (self.name,) + flag
        if self.kind == "date":
            season = (f"{self.name} (day of year, sin)", f"{self.name} (day of year, cos)")
            return (f"{self.name} (years)",) + (season if self.seasonal else ()) + flag
        extra = (f"{self.name}={MISSING_LABEL}",) if self.missing_category else ()
        return tuple(f"{self.name}={c}" for c in self.categories) + extra

    def describe(self) -> str:
        if self.kind == "numeric":
            text = "numeric"
            if self.indicator:
                text += f", missing cells filled with {self.fill:.6g} and flagged"
            if self.missing_tokens:
                text += f" ({', '.join(map(repr, self.missing_tokens))} read as missing)"
            return text
        if self.kind == "date":
            text = "date, as years" + (
                " and the day of the year (sin, cos)" if self.seasonal else ""
            )
            if self.indicator:
                text += f", missing cells filled with {self.fill:.6g} and flagged"
            return text
        shown = ", ".join(repr(c) for c in self.categories[:5])
        more = f" and {len(self.categories) - 5} more" if len(self.categories) > 5 else ""
        miss = ", missing cells a category" if self.missing_category else ""
        return f"one-hot over {len(self.categories)} categories ({shown}{more}){miss}"


def _pandas():
    try:
        import pandas
    except ImportError as exc:
        raise ImportError(
            "encoding a table's columns needs pandas: pip install 'deepgrad[tables]' "
            "(or run make install-tables)"
        ) from exc
    return pandas


def is_frame(X) -> bool:
    """True for a pandas DataFrame (named columns), the input a TableEncoder takes."""
    return hasattr(X, "columns") and hasattr(X, "iloc") and hasattr(X, "dtypes")


def needs_encoding(frame) -> bool:
    """True when a DataFrame has a column that is not all finite-or-NaN numbers: text,
    booleans, categories, or a missing cell."""
    pd = _pandas()
    for name in frame.columns:
        s = frame[name]
        if pd.api.types.is_bool_dtype(s) or not pd.api.types.is_numeric_dtype(s):
            return True
        if s.isna().any():
            return True
    return False


def _where(index_value, lines: bool) -> str:
    return f"line {int(index_value) + 2}" if lines else f"row {index_value!r}"


def _text(s):
    """A column's cells as stripped text; missing cells (None, NaN, pd.NA, NaT, the
    markers) as the mask beside it."""
    na = s.isna().to_numpy()
    text = s.astype(str).str.strip()
    missing = na | text.str.lower().isin(MISSING_MARKERS).to_numpy()
    return text, missing


def _numbers(text, missing):
    """(float64 values with NaN where missing or not a number, mask of non-numbers)."""
    pd = _pandas()
    values = pd.to_numeric(text.where(~missing), errors="coerce").to_numpy(dtype=np.float64)
    return values, np.isnan(values) & ~missing


@dataclass(frozen=True, eq=False)
class TableEncoder:
    """The columns a network reads from a table, each with its role (see the module).

    columns : the kept columns in input order; dropped : (name, why) pairs;
    notes : what the fit decided that a user should hear (stray tokens read as missing).
    """

    columns: tuple[Column, ...]
    dropped: tuple[tuple[str, str], ...] = ()
    notes: tuple[str, ...] = ()

    # -- fitting ---------------------------------------------------------------------
    @classmethod
    def fit(
        cls,
        frame,
        missing: str = "median",
        categorical=(),
        lines: bool = False,
        source: str = "the table",
    ) -> TableEncoder:
        """Learn each column's role from the training rows of ``frame`` (a DataFrame).

        missing : "median" or "mean" fills a numeric column's missing cells; "error"
            refuses them (as deepgrad did before).
        categorical : names of text columns kept one-hot however many values they have.
        lines : say file line numbers (index + 2, a CSV with a header) in errors.
        """
        pd = _pandas()
        if not is_frame(frame):
            raise TypeError(f"the table must be a pandas DataFrame, got {type(frame).__name__}")
        if missing not in FILL_STRATEGIES:
            raise ValueError(f"missing must be one of {list(FILL_STRATEGIES)}, got {missing!r}")
        names = [str(c) for c in frame.columns]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"{source} has duplicate column names {dup}")
        forced = _names_list(categorical, "categorical")
        unknown = [c for c in forced if c not in names]
        if unknown:
            raise ValueError(
                f"categorical column(s) {unknown} are not columns of {source} "
                f"(its columns: {_show(names)})"
            )
        if len(frame) == 0:
            raise ValueError(f"{source} has no rows to learn the columns from")
        columns, dropped, notes = [], [], []
        for name, key in zip(names, frame.columns, strict=True):
            s = frame[key]
            col, why, note = _fit_column(pd, s, name, missing, name in forced, lines, source)
            if col is None:
                dropped.append((name, why))
            else:
                columns.append(col)
            if note:
                notes.append(note)
        if not columns:
            reasons = "; ".join(f"{n!r}: {w}" for n, w in dropped[:4])
            raise ValueError(
                f"every column of {source} would be dropped ({reasons}); nothing is left to "
                f"train on"
            )
        return cls(tuple(columns), tuple(dropped), tuple(notes))

    # -- what it makes ---------------------------------------------------------------
    @property
    def input_names(self) -> tuple[str, ...]:
        """The table's columns the encoder reads, in order."""
        return tuple(c.name for c in self.columns)

    @property
    def feature_names(self) -> tuple[str, ...]:
        """The network's inputs: 'age', 'age (missing)', 'island=Biscoe', ..."""
        return tuple(n for c in self.columns for n in c.output_names)

    @property
    def width(self) -> int:
        """How many inputs the network needs: ``layer_sizes[0]``."""
        return len(self.feature_names)

    def describe(self) -> list[str]:
        """One line per column: its role, or why it was dropped."""
        w = max(len(n) for n in [*self.input_names, *(n for n, _ in self.dropped)])
        lines = [f"  {c.name:<{w}}  {c.describe()}" for c in self.columns]
        lines += [f"  {n:<{w}}  dropped: {why}" for n, why in self.dropped]
        return lines

    def summary(self) -> str:
        """One line: the columns used and how, and those dropped."""
        kinds = dict.fromkeys(KINDS, 0)
        for c in self.columns:
            kinds[c.kind] += 1
        filled = [c.name for c in self.columns if c.indicator]
        dates = f", {kinds['date']} date" if kinds["date"] else ""
        text = (
            f"{len(self.columns)} columns used ({kinds['numeric']} numeric{dates}, "
            f"{kinds['category']} one-hot) -> {self.width} inputs"
        )
        if filled:
            text += f"; missing cells filled in {_show(filled)}"
        if self.dropped:
            short = [f"{n!r} ({why.split(':')[0]})" for n, why in self.dropped]
            text += "; dropped " + ", ".join(short)
        return text

    # -- applying --------------------------------------------------------------------
    def transform(
        self, frame, lines: bool = False, source: str = "the data", max_bytes: int | None = None
    ) -> np.ndarray:
        """The network's inputs (m, width) float64 from a DataFrame holding the columns by
        name (extra columns are ignored, the order is free). ``max_bytes``: refuse (a
        ValueError giving the size) inputs that would take more memory than this."""
        pd = _pandas()
        if not is_frame(frame):
            raise TypeError(
                f"{source} must be a pandas DataFrame with the columns "
                f"{_show(list(self.input_names))}, got {type(frame).__name__}"
            )
        by_name = {str(c): c for c in frame.columns}
        absent = [n for n in self.input_names if n not in by_name]
        if absent:
            raise ValueError(
                f"{source} lacks {len(absent)} column(s) the model was trained on: "
                f"{_show(absent)} (it has {_show(list(by_name))})"
            )
        m = len(frame)
        need = 8 * m * self.width
        if max_bytes is not None and need > max_bytes:
            raise ValueError(
                f"the columns of {source} encode to {m:,} rows x {self.width:,} inputs = "
                f"{_size(need)}, above the {_size(max_bytes)} limit "
                f"(DEEPGRAD_MAX_LOAD_BYTES); drop wide text columns (--drop) or raise the limit"
            )
        out = np.zeros((m, self.width), dtype=np.float64)
        j = 0
        for c in self.columns:
            s, block = frame[by_name[c.name]], out[:, j : j + c.width]
            if c.kind == "numeric":
                block[:] = _apply_numeric(pd, c, s, lines, source)
            elif c.kind == "date":
                block[:] = _apply_date(pd, c, s, lines, source)
            else:
                _apply_category(pd, c, s, block, source)
            j += c.width
        return out

    # -- the model file ----------------------------------------------------------------
    def to_record(self) -> dict:
        """A JSON-able dict (the model file's ``columns`` record)."""
        dates = any(c.kind == "date" for c in self.columns)
        return {
            "version": 2 if dates else 1,  # 2: date columns (a reader of 1 would refuse them)
            "columns": [
                {
                    "name": c.name,
                    "kind": c.kind,
                    "fill": c.fill,
                    "indicator": c.indicator,
                    "missing_tokens": list(c.missing_tokens),
                    "categories": list(c.categories),
                    "missing_category": c.missing_category,
                    **({"seasonal": c.seasonal} if c.kind == "date" else {}),
                }
                for c in self.columns
            ],
            "dropped": [list(d) for d in self.dropped],
        }

    @classmethod
    def from_record(cls, record) -> TableEncoder:
        """The encoder a model file holds; every field checked (ValueError naming it)."""
        if not isinstance(record, dict) or record.get("version") not in (1, 2):
            raise ValueError("the columns record must be a JSON object with version 1 or 2")
        items = record.get("columns")
        if not isinstance(items, list) or not items:
            raise ValueError("the columns record must list at least one column")
        columns = [_column_from(i, item) for i, item in enumerate(items)]
        names = [c.name for c in columns]
        if len(set(names)) != len(names):
            raise ValueError("the columns record names a column twice")
        dropped = record.get("dropped", [])
        if not isinstance(dropped, list) or not all(
            isinstance(d, list) and len(d) == 2 and all(isinstance(x, str) for x in d)
            for d in dropped
        ):
            raise ValueError("the columns record's 'dropped' must be [name, reason] pairs")
        return cls(tuple(columns), tuple(tuple(d) for d in dropped))

    @classmethod
    def numeric(cls, names) -> TableEncoder:
        """An encoder that reads ``names`` as numbers without gaps (what models trained
        before column roles expect): a missing cell is an error."""
        return cls(tuple(Column(str(n), "numeric") for n in names))


# -- fitting one column ------------------------------------------------------------------
def _fit_column(pd, s, name, missing, forced, lines, source):
    """(Column or None, why dropped, a note or None)."""
    note = None
    if pd.api.types.is_bool_dtype(s):
        text, miss = _text(s)
        col = _category(text, miss, name, forced, source)
        return col, ("" if col else _why_dropped(text, miss, name)), None
    if pd.api.types.is_datetime64_any_dtype(s) and not forced:
        return _fit_date(pd, s, name, missing, lines, source)
    if pd.api.types.is_numeric_dtype(s):
        values = s.to_numpy(dtype=np.float64, na_value=np.nan)
        miss, tokens = np.isnan(values), ()
    else:
        text, miss = _text(s)
        if not forced and _all_dates(pd, text, miss):
            return _fit_date(pd, s, name, missing, lines, source)
        values, bad = _numbers(text, miss)
        n_bad, n_cells = int(bad.sum()), int((~miss).sum())
        if n_bad == 0 and n_cells > 0:
            tokens = ()
        else:
            stray = sorted(set(text[bad].tolist()))
            numbers = n_cells - n_bad
            if (
                0 < n_bad <= STRAY_FRACTION * n_cells
                and len(stray) <= MAX_STRAY_TOKENS
                and numbers >= 2
            ):
                tokens = tuple(stray)
                miss = miss | bad
                note = (
                    f"column {name!r}: {n_bad} cell(s) {_show(stray)} in a column of numbers "
                    f"read as missing"
                )
            else:
                col = _category(text, miss, name, forced, source)
                return col, ("" if col else _why_dropped(text, miss, name)), None
    if not miss.all() and not np.all(np.isfinite(values[~miss])):
        row = int(np.flatnonzero(~miss & ~np.isfinite(values))[0])
        raise ValueError(
            f"column {name!r} of {source} holds {values[row]!r} at "
            f"{_where(s.index[row], lines)}; numbers must be finite"
        )
    fill, why = _fill(values, miss, s, name, missing, lines, source, "{:.6g}")
    if why:
        return None, why, None
    return Column(name, "numeric", fill, bool(miss.any()), tokens), "", note


def _fill(values, miss, s, name, missing, lines, source, shown: str):
    """(the fill of a numeric or date column's missing cells, or None and why the column
    is dropped: every cell missing, or constant). ``shown`` formats the constant value;
    missing == "error" refuses a gap."""
    if miss.all():
        return None, f"every cell is missing ({len(values)} rows)"
    known = values[~miss]
    if not miss.any() and np.all(known == known[0]):
        return None, f"constant: every row holds {shown.format(known[0])}"
    if miss.any() and missing == "error":
        row = int(np.flatnonzero(miss)[0])
        raise ValueError(
            f"column {name!r} of {source} has {int(miss.sum())} missing cell(s), the first at "
            f"{_where(s.index[row], lines)}; fill them, or let deepgrad fill them with the "
            f"median (the default, --missing median)"
        )
    return float(np.median(known) if missing == "median" else np.mean(known)), None


def _all_dates(pd, text, miss) -> bool:
    """Every non-missing cell an ISO date that exists (not '2012-13-45')."""
    cells = text[~miss]
    if len(cells) == 0 or not cells.str.fullmatch(ISO_DATE).all():
        return False
    return not pd.to_datetime(cells, errors="coerce", format="ISO8601").isna().any()


def _fit_date(pd, s, name, missing, lines, source):
    """A date column's role (or why it is dropped): years, and the day of the year when
    the training dates fall on more than one."""
    years, season, miss = _dates(pd, s, name, lines, source)
    fill, why = _fill(years, miss, s, name, missing, lines, source, f"the date {s.iloc[0]}")
    if why:
        return None, why, None
    days = np.round(season[~miss], 9)
    seasonal = bool(np.any(days != days[0]))
    return Column(name, "date", fill, bool(miss.any()), seasonal=seasonal), "", None


def _dates(pd, s, name, lines, source):
    """(years as a float: 2012.08, the fraction of the year gone: 0..1, missing mask)."""
    if pd.api.types.is_datetime64_any_dtype(s):
        when = pd.Series(pd.DatetimeIndex(s).tz_localize(None), index=s.index)
    else:
        text, miss = _text(s)
        bad = ~miss & ~text.str.fullmatch(ISO_DATE).to_numpy()
        when = pd.to_datetime(text.where(~miss & ~bad), errors="coerce", format="ISO8601")
        bad |= ~miss & when.isna().to_numpy()  # '2012-13-45' looks like a date but is not
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"column {name!r} of {source} holds {text.iloc[row]!r} at "
                f"{_where(s.index[row], lines)} ({int(bad.sum())} such cell(s)); the model "
                f"reads this column as dates (YYYY-MM-DD, optionally with a time)"
            )
    miss = when.isna().to_numpy()
    w = when.dt
    length = np.where(w.is_leap_year.fillna(False).to_numpy(dtype=bool), 366.0, 365.0)
    seconds = (w.hour * 3600 + w.minute * 60 + w.second).to_numpy(dtype=np.float64, na_value=0)
    gone = ((w.day_of_year.to_numpy(dtype=np.float64, na_value=1) - 1) + seconds / 86400) / length
    years = w.year.to_numpy(dtype=np.float64, na_value=np.nan) + gone
    return years, np.where(miss, np.nan, gone), miss


def _apply_date(pd, c: Column, s, lines: bool, source: str) -> np.ndarray:
    years, gone, miss = _dates(pd, s, c.name, lines, source)
    cols = [np.where(miss, c.fill, years)]
    if c.seasonal:
        angle = 2 * np.pi * np.where(miss, 0.0, gone)
        cols += [np.where(miss, 0.0, np.sin(angle)), np.where(miss, 0.0, np.cos(angle))]
    if c.indicator:
        cols.append(miss.astype(np.float64))
    return np.column_stack(cols)


def _category(text, miss, name, forced, source) -> Column | None:
    values = text[~miss]
    categories = tuple(sorted(set(values.tolist())))
    n = len(categories)
    limit = MAX_CATEGORIES_NAMED if forced else MAX_CATEGORIES
    if forced and n > limit:
        raise ValueError(
            f"categorical column {name!r} of {source} has {n:,} distinct values; at most "
            f"{limit:,} can be one-hot encoded"
        )
    if n == 0 or (n == 1 and not miss.any()):
        return None
    if not forced and (
        n > limit or (n > MIN_CATEGORIES_KEPT and n > HIGH_CARDINALITY_FRACTION * len(values))
    ):
        return None
    return Column(name, "category", categories=categories, missing_category=bool(miss.any()))


def _why_dropped(text, miss, name) -> str:
    values = text[~miss]
    n = len(set(values.tolist()))
    if n == 0:
        return f"every cell is missing ({len(text)} rows)"
    if n == 1 and not miss.any():
        return f"constant: every row holds {values.iloc[0]!r}"
    return (
        f"{n:,} distinct text values in {len(values):,} rows: an ID, a name or free text? "
        f"(--categorical {name} keeps it one-hot)"
    )


# -- applying one column -----------------------------------------------------------------
def _apply_numeric(pd, c: Column, s, lines: bool, source: str) -> np.ndarray:
    if pd.api.types.is_numeric_dtype(s) and not pd.api.types.is_bool_dtype(s):
        values = s.to_numpy(dtype=np.float64, na_value=np.nan)
        miss = np.isnan(values)
    else:
        text, miss = _text(s)
        if c.missing_tokens:
            miss = miss | text.isin(c.missing_tokens).to_numpy()
        values, bad = _numbers(text, miss)
        if bad.any():
            row = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"column {c.name!r} of {source} holds {text.iloc[row]!r} at "
                f"{_where(s.index[row], lines)} ({int(bad.sum())} such cell(s)); the model "
                f"reads this column as numbers"
            )
    inf = ~miss & ~np.isfinite(np.where(miss, 0.0, values))
    if inf.any():
        row = int(np.flatnonzero(inf)[0])
        raise ValueError(
            f"column {c.name!r} of {source} holds {values[row]!r} at "
            f"{_where(s.index[row], lines)}; numbers must be finite"
        )
    if miss.any() and c.fill is None:
        row = int(np.flatnonzero(miss)[0])
        raise ValueError(
            f"column {c.name!r} of {source} has {int(miss.sum())} missing cell(s), the first "
            f"at {_where(s.index[row], lines)}; the model was trained without missing cells "
            f"in it: fill or drop them"
        )
    filled = np.where(miss, c.fill if c.fill is not None else 0.0, values)
    if c.indicator:
        return np.column_stack([filled, miss.astype(np.float64)])
    return filled[:, None]


def _apply_category(pd, c: Column, s, out: np.ndarray, source: str) -> None:
    text, miss = _text(s)
    cats = np.asarray(c.categories, dtype=object)
    codes = pd.Index(list(cats)).get_indexer(text.to_numpy())
    codes[miss] = -1
    rows = np.arange(len(codes))
    seen = codes >= 0
    out[rows[seen], codes[seen]] = 1.0
    if c.missing_category:
        out[miss, len(cats)] = 1.0
    unseen = ~seen & (~miss if c.missing_category else np.ones(len(codes), dtype=bool))
    if unseen.any():
        values = sorted(set(text[unseen & ~miss].tolist()))
        missing_note = (
            f" and {int((unseen & miss).sum())} missing cell(s)" if (unseen & miss).any() else ""
        )
        warnings.warn(
            f"column {c.name!r} of {source}: {int(unseen.sum())} row(s) hold values not seen "
            f"in training ({_show(values) if values else 'none'}{missing_note}); they are "
            f"encoded as all zeros",
            UnseenCategoryWarning,
            stacklevel=4,
        )


# -- the record ----------------------------------------------------------------------------
def _column_from(i: int, item) -> Column:
    def bad(why: str) -> ValueError:
        return ValueError(f"column {i + 1} of the columns record: {why}")

    if not isinstance(item, dict):
        raise bad("must be a JSON object")
    name, kind = item.get("name"), item.get("kind")
    if not isinstance(name, str) or not name:
        raise bad(f"name must be a non-empty string, got {name!r}")
    if kind not in KINDS:
        raise bad(f"kind must be one of {list(KINDS)}, got {kind!r}")
    indicator, miss_cat = item.get("indicator", False), item.get("missing_category", False)
    if not isinstance(indicator, bool) or not isinstance(miss_cat, bool):
        raise bad("indicator and missing_category must be true or false")
    tokens, cats = item.get("missing_tokens", []), item.get("categories", [])
    if not isinstance(tokens, list) or not all(isinstance(t, str) for t in tokens):
        raise bad("missing_tokens must be a list of strings")
    if not isinstance(cats, list) or not all(isinstance(t, str) for t in cats):
        raise bad("categories must be a list of strings")
    fill, seasonal = item.get("fill"), item.get("seasonal", False)
    if not isinstance(seasonal, bool) or (seasonal and kind != "date"):
        raise bad("seasonal must be true or false, and only a date column has it")
    if kind == "date":
        if cats or miss_cat or tokens:
            raise bad("a date column has no categories or missing tokens")
        if isinstance(fill, bool) or not isinstance(fill, int | float) or not math.isfinite(fill):
            raise bad(f"a date column's fill must be a finite number (years), got {fill!r}")
        return Column(name, kind, float(fill), indicator, seasonal=seasonal)
    if kind == "numeric":
        if cats or miss_cat:
            raise bad("a numeric column has no categories")
        if fill is not None and (
            isinstance(fill, bool) or not isinstance(fill, int | float) or not math.isfinite(fill)
        ):
            raise bad(f"fill must be a finite number or null, got {fill!r}")
        if indicator and fill is None:
            raise bad("a missing indicator needs a fill value")
        return Column(name, kind, None if fill is None else float(fill), indicator, tuple(tokens))
    if fill is not None or indicator or tokens:
        raise bad("a category column has no fill, indicator or missing tokens")
    if not cats or len(cats) > MAX_CATEGORIES_NAMED:
        raise bad(f"categories must hold 1 to {MAX_CATEGORIES_NAMED:,} values, got {len(cats):,}")
    if len(set(cats)) != len(cats):
        raise bad("categories must be distinct")
    return Column(name, kind, categories=tuple(cats), missing_category=miss_cat)


def _names_list(value, what: str) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        value = [value]
    names = list(value)
    if not all(isinstance(n, str) for n in names):
        raise TypeError(f"{what} must be column names (strings), got {names!r}")
    return names


def _show(names, limit: int = 6) -> str:
    shown = ", ".join(repr(n) for n in list(names)[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _size(n: int) -> str:
    return f"{n / 2**30:.3g} GiB" if n >= 2**30 else f"{n / 2**20:.3g} MiB"
