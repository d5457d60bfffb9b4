"""What turns the user's table into the network's inputs and targets, and back.

A ``Preprocessing`` record holds everything ``predict`` needs to take raw rows and return
answers in the user's own terms: the task, the input standardization (fitted on the
training rows only), the target scaling of a regression, the class names of a
classification (strings, 1..K, -1/+1: output unit i means ``classes[i]``) and the feature
names when they are known. ``Network.fit`` fits it, ``Network.predict`` applies it and
``deepgrad.save`` stores it in the model file as plain arrays and JSON (no pickle).

>>> import numpy as np
>>> X = np.array([[1.0, 100.0], [3.0, 300.0]])
>>> s = Standardizer.fit(X)
>>> s.transform(X).tolist()
[[-1.0, -1.0], [1.0, 1.0]]
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass

import numpy as np

from deepgrad.core.backend import namespace, to_numpy
from deepgrad.data.columns import TableEncoder, is_frame

__all__ = [
    "TASKS",
    "Standardizer",
    "Preprocessing",
    "UnscaledFeaturesWarning",
    "class_names",
    "encode_labels",
    "needs_label_encoding",
    "unscaled_features",
    "warn_if_unscaled",
]

TASKS = ("classification", "regression")
CHUNK_ROWS = 65_536  # statistics of a memory-mapped X are summed this many rows at a time
UNSCALED = 10.0  # |mean| + std of a feature above this: the features are not standardized


class UnscaledFeaturesWarning(UserWarning):
    """Training on raw features of large or very different scales (standardize them)."""


@dataclass(frozen=True, eq=False)
class Standardizer:
    """Per-column ``(x - mean) / scale``; ``scale`` is the standard deviation (1 where a
    column is constant). Shapes: mean and scale (n,) for X of shape (m, n)."""

    mean: np.ndarray
    scale: np.ndarray

    @classmethod
    def fit(cls, X) -> Standardizer:
        """Mean and standard deviation of each column of X (m, n) or of y (m,).

        Memory-mapped arrays are read in chunks of rows (two passes, float64 sums), never
        loaded whole.
        """
        X = _as_2d(X)
        m = X.shape[0]
        mean = sum(_chunk(X, a).sum(axis=0) for a in range(0, m, CHUNK_ROWS)) / m
        var = sum(((_chunk(X, a) - mean) ** 2).sum(axis=0) for a in range(0, m, CHUNK_ROWS)) / m
        sd = np.sqrt(var)
        return cls(mean, np.where(sd > 1e-12 * np.maximum(1.0, np.abs(mean)), sd, 1.0))

    def transform(self, X):
        """(X - mean) / scale, in X's namespace and dtype (NumPy float64 for ints/lists)."""
        if not hasattr(X, "dtype") or not hasattr(X, "shape"):
            X = np.asarray(X, dtype=np.float64)
        if isinstance(X, np.ndarray):
            X = X if X.dtype.kind == "f" else X.astype(np.float64)
            return (X - self.mean.astype(X.dtype)) / self.scale.astype(X.dtype)
        xp = namespace(X)
        dev = {"device": X.device} if hasattr(X, "device") else {}
        mean, scale = (xp.asarray(a, dtype=X.dtype, **dev) for a in (self.mean, self.scale))
        return (X - mean) / scale

    def inverse_transform(self, Z) -> np.ndarray:
        """Z * scale + mean (NumPy)."""
        return np.asarray(to_numpy(Z), dtype=np.float64) * self.scale + self.mean


def _as_2d(X) -> np.ndarray:
    X = X if isinstance(X, np.ndarray) else np.asarray(to_numpy(X))
    return X.reshape(-1, 1) if X.ndim == 1 else X


def _chunk(X: np.ndarray, start: int) -> np.ndarray:
    return np.asarray(X[start : start + CHUNK_ROWS], dtype=np.float64)


@dataclass(frozen=True, eq=False)
class Preprocessing:
    """The record saved with a model: raw rows in, the user's answers out.

    task : "classification" or "regression".
    inputs : a Standardizer of the n^[0] features, or None (raw inputs).
    targets : a Standardizer of the regression targets, or None.
    classes : (K,) class names of a classification (output unit i is ``classes[i]``;
        one sigmoid unit: ``classes[0]`` below 0.5, ``classes[1]`` above), or None when the
        labels already are the output's indices 0..K-1.
    feature_names, target_name : the network's input names and the target column's,
        when known.
    columns : a TableEncoder (a table's columns -> the network's inputs: fills, one-hot
        categories), or None when the inputs are numbers already.
    """

    task: str
    inputs: Standardizer | None = None
    targets: Standardizer | None = None
    classes: np.ndarray | None = None
    feature_names: tuple[str, ...] | None = None
    target_name: str | None = None
    columns: TableEncoder | None = None

    @property
    def is_identity(self) -> bool:
        """True when it changes nothing (no scaling, labels are already indices)."""
        return (
            self.inputs is None
            and self.targets is None
            and self.classes is None
            and self.feature_names is None
            and self.columns is None
        )

    def encode_columns(self, X, lines: bool = False, source: str = "the data", max_bytes=None):
        """A DataFrame -> its numeric inputs (m, n): the encoder's columns picked by name,
        or the training feature names when the model has them (any order, extra columns
        ignored). Anything else is returned as given."""
        if not is_frame(X):
            return X
        encoder = self.columns
        if encoder is None and self.feature_names is not None:
            encoder = TableEncoder.numeric(self.feature_names)
        if encoder is None:
            return X
        return encoder.transform(X, lines=lines, source=source, max_bytes=max_bytes)

    def transform(self, X):
        """Raw rows (m, n), or a DataFrame with the training columns -> the network's
        inputs."""
        X = self.encode_columns(X)
        return X if self.inputs is None else self.inputs.transform(X)

    def encode(self, y):
        """The user's targets -> what the output layer is trained on."""
        if self.classes is not None:
            return encode_labels(y, self.classes)
        if self.targets is not None:
            y_np = np.asarray(to_numpy(y), dtype=np.float64)
            return self.targets.transform(y_np.reshape(-1, 1) if y_np.ndim == 1 else y_np).reshape(
                y_np.shape
            )
        return y

    def decode(self, pred):
        """The network's predictions (indices, 0/1 or values) -> the user's labels/values."""
        if self.classes is not None:
            return self.classes[np.asarray(to_numpy(pred), dtype=np.int64)]
        if self.targets is not None:
            values = np.asarray(to_numpy(pred), dtype=np.float64)
            flat = values.reshape(-1, 1) if values.ndim == 1 else values
            return self.targets.inverse_transform(flat).reshape(values.shape)
        return pred


def class_names(y, name: str = "y") -> np.ndarray:
    """The sorted distinct labels of y (any type NumPy can sort: strings, ints, floats).

    Text labels become a fixed-width unicode array (stored without pickle).
    """
    y = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else to_numpy(y))
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.ndim != 1:
        raise ValueError(f"{name} must be one label per row, shape (m,), got {y.shape}")
    if y.dtype.kind == "O":
        y = y.astype(str)
    if y.dtype.kind == "f" and not np.all(np.isfinite(y)):
        raise ValueError(f"{name} contains NaN or inf; every row needs a label")
    if y.dtype.kind not in "biufU":
        raise TypeError(f"{name} must hold class labels (numbers or text), got dtype {y.dtype}")
    classes = np.unique(y)
    if len(classes) < 2:
        shown = repr(classes[0].item()) if len(classes) else "none"
        raise ValueError(f"{name} has only one class ({shown}); classification needs at least 2")
    return classes


def encode_labels(y, classes: np.ndarray) -> np.ndarray:
    """Labels -> int64 indices into ``classes``; unknown labels are an error naming them."""
    y = np.asarray(y.to_numpy() if hasattr(y, "to_numpy") else to_numpy(y))
    if y.ndim == 2 and y.shape[1] == 1:
        y = y[:, 0]
    if y.dtype.kind == "O":
        y = y.astype(str)
    if (classes.dtype.kind == "U") != (y.dtype.kind == "U"):
        raise ValueError(
            f"the labels are {_kind(y)} but the model's classes are {_kind(classes)} "
            f"{_show(classes)}"
        )
    idx = np.clip(np.searchsorted(classes, y), 0, len(classes) - 1)
    unknown = classes[idx] != y
    if np.any(unknown):
        raise ValueError(
            f"the labels include {_show(np.unique(y[unknown]))}, not among the model's "
            f"classes {_show(classes)}"
        )
    return idx.astype(np.int64)


def _kind(a: np.ndarray) -> str:
    return "text" if a.dtype.kind == "U" else "numbers"


def _show(values, limit: int = 6) -> str:
    items = [repr(v.item() if hasattr(v, "item") else v) for v in values[:limit]]
    return "[" + ", ".join(items) + (", ..." if len(values) > limit else "") + "]"


def needs_label_encoding(y, output: str, n_out: int) -> bool:
    """True when y holds text labels for a classifier: they are then mapped to indices
    and the names kept in the record. (Numeric labels such as 1..K or -1/+1 are mapped
    when the class names are given; otherwise they must be the output's indices.)"""
    if output == "linear":
        return False
    return is_text(y)


def is_text(y) -> bool:
    """True for text labels: a unicode array, or an object array/list of str only."""
    if isinstance(y, np.ndarray) and y.dtype.kind == "U":
        return True
    if hasattr(y, "to_numpy") and hasattr(y, "dtype"):  # a pandas Series
        y = y.to_numpy()
    if not isinstance(y, np.ndarray | list | tuple):
        return False
    try:
        a = np.asarray(y)
    except (ValueError, TypeError):
        return False  # ragged: the target check reports it
    if a.dtype.kind == "U":
        return True
    return a.dtype.kind == "O" and a.size > 0 and all(isinstance(v, str) for v in a.flat)


def unscaled_features(X, names=None) -> str | None:
    """A description of the worst unscaled feature of X, or None when all look scaled.

    A feature counts as unscaled when |mean| + std > 10 (on up to 65,536 rows): raw
    pixel values, areas, prices. Standardized or min-max-scaled features are near 1.
    """
    sample = _as_2d(X[:CHUNK_ROWS]).astype(np.float64, copy=False)
    if sample.size == 0 or not np.all(np.isfinite(sample)):
        return None  # the input checks report it
    mean, sd = sample.mean(axis=0), sample.std(axis=0)
    size = np.abs(mean) + sd
    j = int(np.argmax(size))
    if size[j] <= UNSCALED:
        return None
    label = f"feature {j}" if names is None else f"feature {j} ({names[j]!r})"
    return (
        f"{label} has mean {mean[j]:.4g} and std {sd[j]:.4g}; unscaled features often "
        f"leave a network stuck at the majority class or diverging"
    )


def warn_if_unscaled(X, fix: str, names=None, stacklevel: int = 3) -> None:
    """warnings.warn an UnscaledFeaturesWarning when X looks unscaled; ``fix``: what to do."""
    problem = unscaled_features(X, names)
    if problem is not None:
        warnings.warn(
            f"training on unstandardized features: {problem}; {fix}",
            UnscaledFeaturesWarning,
            stacklevel=stacklevel,
        )


def task_of(output: str) -> str:
    """The task an output layer does: "regression" for linear, else "classification"."""
    return "regression" if output == "linear" else "classification"


def fit_preprocessing(
    X,
    Y,
    output: str,
    n_out: int,
    standardize: bool,
    classes=None,
    feature_names=None,
    target_name=None,
    columns: TableEncoder | None = None,
) -> Preprocessing:
    """The record for training a network with ``output``/``n_out`` units on (X, Y).

    ``standardize``: fit the input standardization on X (and, for a linear output, the
    target scaling on Y). ``classes``: the class names, output unit i = classes[i]
    (default: the distinct labels of Y when they are text, else none: the labels are
    the output's indices). ``columns``: the encoder that made X from a table (its
    feature names are the network's inputs).
    """
    task = task_of(output)
    if columns is not None:
        feature_names = columns.feature_names
    inputs = Standardizer.fit(X) if standardize else None
    targets = None
    if task == "regression" and standardize:
        targets = Standardizer.fit(np.asarray(to_numpy(Y), dtype=np.float64))
    if classes is None and task == "classification" and needs_label_encoding(Y, output, n_out):
        classes = class_names(Y, "Y")
    if classes is not None:
        classes = np.asarray(classes)
        classes = classes.astype(str) if classes.dtype.kind == "O" else classes
        expected = 2 if output == "sigmoid" and n_out == 1 else n_out
        if len(classes) != expected:
            raise ValueError(
                f"Y has {len(classes)} classes {_show(classes)} but the network's "
                f"{output} output has {n_out} unit(s) (it needs {expected} classes); "
                f"build it with layer_sizes[-1] = {len(classes) if len(classes) > 2 else 1}"
            )
    names = None if feature_names is None else tuple(str(n) for n in feature_names)
    return Preprocessing(task, inputs, targets, classes, names, target_name, columns)


def check_columns(columns, expected, source: str = "the data") -> None:
    """Raise ValueError unless ``columns`` are the training ``expected`` names, in order;
    the message names the missing, extra or misplaced columns."""
    columns, expected = list(columns), list(expected)
    if columns == expected:
        return
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in expected]
    if missing or extra:
        parts = []
        if missing:
            parts.append(f"lacks {len(missing)} the model was trained on: {_names(missing)}")
        if extra:
            parts.append(f"has {len(extra)} the model does not know: {_names(extra)}")
        raise ValueError(
            f"{source} has {len(columns)} feature columns, the model expects {len(expected)}; "
            f"it " + " and ".join(parts)
        )
    i = next(i for i, (a, b) in enumerate(zip(columns, expected, strict=True)) if a != b)
    raise ValueError(
        f"the columns of {source} are in another order than at training: column {i + 1} is "
        f"{columns[i]!r} where the model expects {expected[i]!r}; put them in the training "
        f"order ({_names(expected)})"
    )


def _names(names, limit: int = 5) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


MAX_INFERRED_CLASSES = 20  # whole-number targets with more distinct values: ask, don't guess


def infer_task(y, flag: str = "task") -> tuple[str, str]:
    """(task, why) from the targets alone, only when that is unambiguous.

    Text or boolean labels, or at most 20 distinct whole numbers: classification;
    fractional values or several target columns: regression. Anything else (e.g. 214
    distinct whole numbers) raises ValueError asking for ``flag``.
    """
    y = np.asarray(to_numpy(y))
    if y.ndim == 2 and y.shape[1] > 1:
        return "regression", f"y has {y.shape[1]} columns"
    y = y.reshape(-1)
    if y.dtype.kind in "OUSb":
        return "classification", f"y holds {'text' if y.dtype.kind != 'b' else 'boolean'} labels"
    if y.dtype.kind not in "iuf":
        raise TypeError(f"y must hold numbers or text labels, got dtype {y.dtype}")
    if y.dtype.kind == "f" and np.all(np.isfinite(y)) and np.any(y != np.round(y)):
        return "regression", "y holds fractional values"
    values = np.unique(y)
    if len(values) <= MAX_INFERRED_CLASSES:
        return "classification", f"y holds {len(values)} distinct whole numbers"
    raise ValueError(
        f"cannot tell the task: y holds {len(values)} distinct whole numbers (from "
        f"{values[0]:g} to {values[-1]:g}), quantities or class labels; pass {flag} "
        f"regression or {flag} classification"
    )
