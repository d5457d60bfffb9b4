"""Validation at the public boundary: every message names the argument, the value and
what is allowed. Inside the library the invariants are trusted."""

from __future__ import annotations

import math
import numbers
from typing import Any

import array_api_compat
import numpy as np

from deepgrad.core.backend import namespace, to_numpy

__all__ = [
    "as_2d_float",
    "check_int",
    "check_float",
    "encode_targets",
    "check_targets",
    "check_fits_dtype",
]


def _short(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def check_int(name: str, value: Any, minimum: int = 1, maximum: int | None = None) -> int:
    """An ``int`` in [minimum, maximum] (bools are not ints here)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral):
        raise TypeError(f"{name} must be an int >= {minimum}, got {_short(value)}")
    if value < minimum or (maximum is not None and value > maximum):
        allowed = f">= {minimum}" if maximum is None else f"in [{minimum}, {maximum}]"
        raise ValueError(f"{name} must be an int {allowed}, got {value!r}")
    return int(value)


def check_float(
    name: str,
    value: Any,
    low: float = -math.inf,
    high: float = math.inf,
    low_open: bool = False,
    high_open: bool = False,
) -> float:
    """A finite real number in the interval given (open or closed at each end)."""
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise TypeError(f"{name} must be a real number, got {_short(value)}")
    value = float(value)
    bad_low = value <= low if low_open else value < low
    bad_high = value >= high if high_open else value > high
    if not math.isfinite(value) or bad_low or bad_high:
        allowed = _interval(low, high, low_open, high_open)
        raise ValueError(f"{name} must be a finite number {allowed}, got {value!r}")
    return value


def _interval(low: float, high: float, low_open: bool, high_open: bool) -> str:
    """'> 0', '>= 0', '<= 1' or 'in (0, 1]': an unbounded side is not written as inf."""
    if math.isinf(high) and math.isinf(low):
        return "(any finite value)"
    if math.isinf(high):
        return f"{'>' if low_open else '>='} {low:g}"
    if math.isinf(low):
        return f"{'<' if high_open else '<='} {high:g}"
    return f"in {'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"


def _is_array(x: Any) -> bool:
    return array_api_compat.is_array_api_obj(x)


def as_2d_float(
    name: str, X: Any, n_features: int | None = None, check_finite: bool = True, dtype=None
):
    """Return X as a 2-D real array (lists become NumPy), checking shape and values.

    Memory-mapped NumPy arrays are returned as they are (no copy); their finiteness is
    checked by the training loop batch by batch instead of here when ``check_finite`` is off.
    """
    if not _is_array(X):
        try:
            X = np.asarray(X)
        except (ValueError, TypeError) as exc:
            raise TypeError(f"{name} must be a 2-D array of real numbers, got {_short(X)}") from exc
    if isinstance(X, np.ndarray) and X.dtype.kind not in "biuf":
        raise TypeError(
            f"{name} must hold real numbers (int or float), got dtype {X.dtype} "
            f"(complex, strings and objects are not allowed)"
        )
    xp = namespace(X)
    if not isinstance(X, np.ndarray) and not xp.isdtype(X.dtype, ("real floating", "integral")):
        raise TypeError(f"{name} must hold real numbers, got dtype {X.dtype}")
    if X.ndim != 2:
        raise ValueError(
            f"{name} must be 2-D with shape (m examples, n_x features), got shape {tuple(X.shape)}"
        )
    if X.shape[0] == 0:
        raise ValueError(f"{name} is empty: it has shape {tuple(X.shape)}; at least 1 row needed")
    if n_features is not None and X.shape[1] != n_features:
        raise ValueError(
            f"{name} has {X.shape[1]} columns but the network's first layer expects "
            f"{n_features} features"
        )
    if check_finite and not _all_finite(X):
        raise ValueError(f"{name} contains NaN or inf; all values must be finite")
    if check_finite and dtype is not None:
        check_fits_dtype(name, X, dtype)
    return X


def check_fits_dtype(name: str, X, dtype: str) -> None:
    """Finite values that would overflow to inf when cast to ``dtype`` (e.g. 1e300 as
    float32) are an error here, not a silent inf (or a false 'divergence') later."""
    if not isinstance(X, np.ndarray) or X.size == 0 or X.dtype.kind not in "iuf":
        return
    limit = float(np.finfo(dtype).max)
    if X.dtype.kind in "iu" or float(np.finfo(X.dtype).max) <= limit:
        return  # every value fits (the largest int64 is ~9.2e18); no pass over the data
    largest = max(abs(float(np.max(X))), abs(float(np.min(X))))  # no copy of X
    if largest > limit:
        raise ValueError(
            f"{name} has values up to {largest:.3g}, beyond the largest {dtype} ({limit:.3g}); "
            f"rescale the data or use dtype='float64'"
        )


def _all_finite(X) -> bool:
    xp = namespace(X)
    if xp.isdtype(X.dtype, "integral"):
        return True
    if isinstance(X, np.ndarray):
        # One reduction, no (m, n) temporary: NaN or inf anywhere makes the sum non-finite;
        # a sum that overflows from finite values is re-checked element by element.
        with np.errstate(over="ignore", invalid="ignore"):
            if math.isfinite(float(np.sum(X))):
                return True
    return bool(xp.all(xp.isfinite(X)))


def check_targets(name: str, Y: Any, output: str, n_out: int, m: int | None) -> Any:
    """Validate labels/targets for an output layer; return them as an array (unchanged)."""
    if not _is_array(Y):
        try:
            Y = np.asarray(Y)
        except (ValueError, TypeError) as exc:
            raise TypeError(
                f"{name} must be an array of labels or targets, got {_short(Y)}"
            ) from exc
    if isinstance(Y, np.ndarray) and Y.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers or integer labels, got dtype {Y.dtype}")
    if Y.ndim not in (1, 2):
        raise ValueError(f"{name} must have shape (m,) or (m, {n_out}), got {tuple(Y.shape)}")
    if m is not None and Y.shape[0] != m:
        raise ValueError(f"{name} has {Y.shape[0]} rows but X has {m}; they must match")
    if Y.ndim == 1 and output != "softmax" and n_out != 1:  # would broadcast silently
        raise ValueError(
            f"{name} has shape {tuple(Y.shape)} but the output layer has {n_out} units; "
            f"pass shape (m, {n_out})"
        )
    if Y.ndim == 2 and Y.shape[1] != n_out and not (output == "softmax" and Y.shape[1] == 1):
        raise ValueError(f"{name} has {Y.shape[1]} columns but the output layer has {n_out} units")
    if not _all_finite(Y):
        raise ValueError(f"{name} contains NaN or inf; all values must be finite")
    if output == "sigmoid":
        vals = _unique(Y)
        if not set(vals) <= {0.0, 1.0}:
            raise ValueError(
                f"{name} must hold 0/1 labels for a sigmoid output, got values {vals[:5]}"
            )
    elif output == "softmax" and (Y.ndim == 1 or Y.shape[1] == 1):
        vals = _unique(Y)
        bad = [v for v in vals if v != int(v) or not 0 <= v < n_out]
        if bad:
            raise ValueError(
                f"{name} must hold integer class labels in [0, {n_out - 1}] for a "
                f"{n_out}-class softmax, got {bad[:5]}"
            )
    elif output == "softmax":
        xp = namespace(Y)
        sums = xp.sum(Y, axis=1)
        if bool(xp.any(Y < 0)) or bool(xp.any(xp.abs(sums - 1.0) > 1e-6)):
            raise ValueError(f"{name} one-hot rows must be >= 0 and sum to 1")
    return Y


def _unique(Y) -> list[float]:
    if array_api_compat.is_torch_array(Y):  # unique on the device: copy back only the values
        return [float(v) for v in to_numpy(namespace(Y).unique_values(Y))]
    return [float(v) for v in np.unique(to_numpy(Y))]


def encode_targets(Y, output: str, n_out: int, xp, dtype, device=None):
    """Targets as a float (m, n_out) array in namespace ``xp`` (one-hot for class labels).

    ``device``: where host arrays go in ``xp`` (e.g. a torch.device); None: the default.
    """
    if not _is_array(Y) or namespace(Y) is not xp:
        if isinstance(Y, np.ndarray | list):
            Y = xp.asarray(np.asarray(Y), **({} if device is None else {"device": device}))
    if output == "softmax" and (Y.ndim == 1 or Y.shape[1] == 1):
        labels = xp.astype(xp.reshape(Y, (-1,)), xp.int64)
        classes = xp.arange(n_out, dtype=xp.int64, device=array_api_compat.device(labels))
        return xp.astype(labels[:, None] == classes[None, :], dtype)
    if Y.ndim == 1:
        Y = xp.reshape(Y, (-1, 1))
    return xp.astype(Y, dtype)
