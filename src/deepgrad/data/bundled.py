"""Bundled real datasets (shipped inside scikit-learn's wheel) and .npz/.npy loading."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

__all__ = [
    "BUNDLED",
    "load_bundled",
    "load_bundled_table",
    "load_file",
    "load_npy",
    "train_test_split",
    "tail_split",
    "standardize",
]

BUNDLED = ("digits", "breast_cancer", "iris", "wine")


def load_bundled(name: str, scale: str | None = None) -> tuple[np.ndarray, np.ndarray, str]:
    """(X, y integer labels, suggested output) of a bundled set, X as published.

    These come with scikit-learn (no download): digits is 1,797 8x8 images of 10 digits.
    ``scale="minmax"`` maps each feature to [0, 1] over the whole set, for diagnostics that
    use every row; a model scored on held-out rows must fit its scaling on the training
    rows only (``Network.fit(..., standardize=True)``).
    """
    X, y, _ = load_bundled_table(name)
    if scale not in (None, "minmax"):
        raise ValueError(f"scale must be None or 'minmax', got {scale!r}")
    if scale == "minmax":
        lo, hi = X.min(axis=0), X.max(axis=0)
        X = (X - lo) / np.where(hi > lo, hi - lo, 1.0)
    n_classes = int(y.max()) + 1
    return X, y, "sigmoid" if n_classes == 2 else "softmax"


def load_bundled_table(name: str) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """(X float64 as published, y int64 labels, feature names) of a bundled set."""
    if name not in BUNDLED:
        raise ValueError(
            f"dataset must be one of {list(BUNDLED)} or a .npz/.npy path, got {name!r}"
        )
    try:
        from sklearn import datasets
    except ImportError as exc:  # pragma: no cover - sklearn is in the default install
        raise ImportError(
            "bundled datasets need scikit-learn: pip install 'deepgrad[sklearn]'"
        ) from exc
    bunch = getattr(datasets, f"load_{name}")()
    names = tuple(str(n) for n in bunch.feature_names)
    return bunch.data.astype(np.float64), bunch.target.astype(np.int64), names


def load_file(path, require_y: bool = True) -> tuple[np.ndarray, np.ndarray | None]:
    """(X, y) from a .npz holding arrays ``X`` and ``y`` (or ``Y``); y is None for an
    X-only file when ``require_y`` is False."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            keys = set(z.files)
            ykey = "y" if "y" in keys else "Y"
            if "X" in keys and ykey in keys:
                return z["X"], z[ykey]
            if "X" in keys and not require_y:
                return z["X"], None
    except PermissionError:
        raise
    except (
        OSError,
        EOFError,
        ValueError,
        TypeError,
        zipfile.BadZipFile,
        NotImplementedError,
        RuntimeError,
    ) as exc:
        raise ValueError(f"data file {str(path)!r} is not a readable .npz file: {exc}") from exc
    raise ValueError(f"data file {str(path)!r} must hold arrays 'X' and 'y', has {sorted(keys)}")


def load_npy(path) -> np.ndarray:
    """An array from a .npy file; clear errors for missing or unreadable files."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    try:
        return np.load(path, allow_pickle=False)
    except PermissionError:
        raise
    except (OSError, EOFError, ValueError) as exc:
        raise ValueError(f"data file {str(path)!r} is not a readable .npy file: {exc}") from exc


def train_test_split(X, y, test_fraction: float, seed: int, stratify: bool | None = None):
    """Shuffled split; stratified by label when ``stratify`` (None: when y holds class
    labels, <= 100 distinct). Returns X_train, X_test, y_train, y_test."""
    rng = np.random.default_rng(seed)
    labels = np.unique(y, axis=0) if np.ndim(y) == 1 else []
    if stratify is None:
        stratify = np.ndim(y) == 1 and len(labels) <= 100
    if not stratify:
        order = rng.permutation(len(y))
        k = int(round(test_fraction * len(y)))
        test, train = np.sort(order[:k]), np.sort(order[k:])
        return X[train], X[test], y[train], y[test]
    test = []
    for c in labels:
        idx = np.flatnonzero(y == c)
        rng.shuffle(idx)
        test.append(idx[: int(round(test_fraction * len(idx)))])
    test = np.sort(np.concatenate(test))
    train = np.setdiff1d(np.arange(len(y)), test)
    return X[train], X[test], y[train], y[test]


def tail_split(X, y, test_fraction: float):
    """The last ``test_fraction`` of the rows held out, as views (a memory-mapped X stays
    on disk). Right for files written in random order (``make-data``'s are); a file
    sorted by label or time must be shuffled first."""
    k = len(y) - int(round(test_fraction * len(y)))
    return X[:k], X[k:], y[:k], y[k:]


def standardize(X_train, *others):
    """Zero mean, unit variance per feature using the training set's statistics only.

    Centered inputs keep the first layer's gradient from pointing the same way for every
    weight (all-positive inputs do that), which lets plain gradient descent use a larger
    learning rate without the occasional blow-up on a small last mini-batch.
    """
    mu = X_train.mean(axis=0)
    sd = X_train.std(axis=0)
    sd = np.where(sd > 0, sd, 1.0)
    return tuple((X - mu) / sd for X in (X_train, *others))
