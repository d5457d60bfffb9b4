"""Bundled real datasets (shipped inside scikit-learn's wheel) and .npz/.npy loading."""

from __future__ import annotations

import zipfile
from pathlib import Path

import numpy as np

__all__ = ["BUNDLED", "load_bundled", "load_file", "load_npy", "train_test_split", "standardize"]

BUNDLED = ("digits", "breast_cancer", "iris", "wine")


def load_bundled(name: str) -> tuple[np.ndarray, np.ndarray, str]:
    """(X scaled to [0, 1] per feature, y integer labels, suggested output) of a bundled set.

    These come with scikit-learn (no download): digits is 1,797 8x8 images of 10 digits.
    """
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
    X, y = getattr(datasets, f"load_{name}")(return_X_y=True)
    lo, hi = X.min(axis=0), X.max(axis=0)
    X = (X - lo) / np.where(hi > lo, hi - lo, 1.0)
    n_classes = int(y.max()) + 1
    return X.astype(np.float64), y.astype(np.int64), "sigmoid" if n_classes == 2 else "softmax"


def load_file(path) -> tuple[np.ndarray, np.ndarray]:
    """(X, y) from a .npz holding arrays ``X`` and ``y`` (or ``Y``)."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"data file {str(path)!r} does not exist")
    try:
        with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
            keys = set(z.files)
            ykey = "y" if "y" in keys else "Y"
            if "X" in keys and ykey in keys:
                return z["X"], z[ykey]
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


def train_test_split(X, y, test_fraction: float, seed: int):
    """Shuffled split, stratified by label when y holds class labels (<= 100 distinct)."""
    rng = np.random.default_rng(seed)
    labels = np.unique(y, axis=0) if np.ndim(y) == 1 else []
    if np.ndim(y) != 1 or len(labels) > 100:
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
