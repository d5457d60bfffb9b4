"""A ``Preprocessing`` record as file content: a JSON dict and plain arrays, no pickle.

Class names are a fixed-width unicode array (text labels) or an int/float/bool array;
the means and scales are float64 arrays. ``from_file`` checks everything a stranger's
file could get wrong (kinds, shapes, finiteness, agreement with the network's layers).
"""

from __future__ import annotations

import numpy as np

from deepgrad.data.columns import TableEncoder
from deepgrad.data.preprocessing import TASKS, Preprocessing, Standardizer, task_of

__all__ = ["PREFIX", "to_file", "from_file"]

PREFIX = "preprocessing."
_SCALERS = ("inputs", "targets")
# sqrt of the smallest normal float64: (x - mean) / scale stays finite for |x| < 1e154
_SMALLEST_SCALE = float(np.sqrt(np.finfo(np.float64).tiny))


def to_file(pre: Preprocessing) -> tuple[dict, dict[str, np.ndarray]]:
    """(JSON-able metadata, arrays named ``preprocessing.*``) of a record."""
    meta = {
        "task": pre.task,
        "feature_names": None if pre.feature_names is None else list(pre.feature_names),
        "target_name": pre.target_name,
    }
    if pre.columns is not None:
        meta["columns"] = pre.columns.to_record()
    arrays = {}
    for which in _SCALERS:
        s = getattr(pre, which)
        if s is not None:
            arrays[f"{PREFIX}{which}.mean"] = np.asarray(s.mean, dtype=np.float64)
            arrays[f"{PREFIX}{which}.scale"] = np.asarray(s.scale, dtype=np.float64)
    if pre.classes is not None:
        arrays[f"{PREFIX}classes"] = np.asarray(pre.classes)
    meta["members"] = sorted(arrays)  # so that a member removed from the file is noticed
    return meta, arrays


def from_file(meta, arrays: dict[str, np.ndarray], spec) -> Preprocessing:
    """The record of a model file, checked against the network ``spec`` it belongs to."""
    if not isinstance(meta, dict):
        raise ValueError("its metadata is missing or not a JSON object")
    task = meta.get("task")
    if task not in TASKS:
        raise ValueError(f"task must be one of {list(TASKS)}, got {task!r}")
    if task != task_of(spec.output):
        raise ValueError(f"task {task!r} does not match the {spec.output} output layer")
    known = {f"{PREFIX}{w}.{p}" for w in _SCALERS for p in ("mean", "scale")}
    unknown = set(arrays) - known - {f"{PREFIX}classes"}
    if unknown:
        raise ValueError(f"unknown arrays {sorted(unknown)}")
    listed = meta.get("members")  # absent in files written before it was recorded
    if listed is not None and (not isinstance(listed, list) or set(listed) != set(arrays)):
        missing = sorted(set(listed) - set(arrays)) if isinstance(listed, list) else listed
        raise ValueError(f"its members {missing!r} are missing (it lists {listed!r})")
    n_in, n_out = spec.layer_sizes[0], spec.layer_sizes[-1]
    inputs = _scaler(arrays, "inputs", (n_in,))
    targets = _scaler(arrays, "targets", (n_out,))
    if targets is not None and task != "regression":
        raise ValueError("target scaling is only for a regression")
    classes = _classes(arrays.get(f"{PREFIX}classes"), spec)
    names = meta.get("feature_names")
    if names is not None and (
        not isinstance(names, list)
        or len(names) != n_in
        or not all(isinstance(n, str) for n in names)
    ):
        raise ValueError(f"feature_names must be a list of {n_in} strings")
    target = meta.get("target_name")
    if target is not None and not isinstance(target, str):
        raise ValueError(f"target_name must be a string, got {target!r}")
    columns = None
    if meta.get("columns") is not None:
        columns = TableEncoder.from_record(meta["columns"])
        if columns.width != n_in or (names is not None and tuple(names) != columns.feature_names):
            raise ValueError(
                f"the columns record makes {columns.width} inputs "
                f"({', '.join(columns.feature_names[:3])}, ...), the network takes {n_in}"
                + ("" if names is None else " or its feature_names differ")
            )
    return Preprocessing(
        task, inputs, targets, classes, None if names is None else tuple(names), target, columns
    )


def _scaler(arrays, which: str, shape: tuple[int, ...]) -> Standardizer | None:
    mean = arrays.get(f"{PREFIX}{which}.mean")
    scale = arrays.get(f"{PREFIX}{which}.scale")
    if mean is None and scale is None:
        return None
    for name, a in (("mean", mean), ("scale", scale)):
        if a is None or a.dtype.kind != "f" or a.shape != shape or not np.all(np.isfinite(a)):
            raise ValueError(f"{which} {name} must be {shape} finite floats")
    if np.any(scale <= 0):
        raise ValueError(f"{which} scale must be > 0")
    if np.any(scale < _SMALLEST_SCALE) or np.any(scale > 1 / _SMALLEST_SCALE):
        raise ValueError(
            f"{which} scale must lie in [{_SMALLEST_SCALE:.3g}, {1 / _SMALLEST_SCALE:.3g}] "
            f"(a scale outside turns ordinary inputs into inf or 0), got min "
            f"{float(np.min(scale)):.3g} max {float(np.max(scale)):.3g}"
        )
    return Standardizer(mean.astype(np.float64), scale.astype(np.float64))


def _classes(classes, spec) -> np.ndarray | None:
    if classes is None:
        return None
    n_out = spec.layer_sizes[-1]
    expected = 2 if spec.output == "sigmoid" and n_out == 1 else n_out
    if spec.output == "linear" or (spec.output == "sigmoid" and n_out != 1):
        raise ValueError(f"class names do not fit a {spec.output} output of {n_out} units")
    if classes.ndim != 1 or len(classes) != expected or classes.dtype.kind not in "biufU":
        raise ValueError(
            f"classes must be {expected} labels (text or numbers), got shape "
            f"{classes.shape} dtype {classes.dtype}"
        )
    if classes.dtype.kind == "f" and not np.all(np.isfinite(classes)):
        raise ValueError("classes must be finite")
    if len(np.unique(classes)) != len(classes) or np.any(np.sort(classes) != classes):
        raise ValueError("classes must be distinct and sorted")
    return classes
