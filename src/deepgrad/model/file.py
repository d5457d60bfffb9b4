"""The model file: a Network's architecture, dtype, parameters and preprocessing record
in one .npz (JSON metadata and plain arrays, loaded with allow_pickle=False)."""

from __future__ import annotations

import json

import numpy as np

from deepgrad.core.backend import to_numpy
from deepgrad.data import records
from deepgrad.io.files import DAMAGED_NPZ_ERRORS, atomic_write, check_path, read_npz
from deepgrad.model.net import Network

__all__ = ["save", "load", "FORMAT_VERSION"]

FORMAT_VERSION = 2  # 2: may hold a preprocessing record; files without one are written as 1
READS_VERSIONS = (1, 2)


def save(net, path) -> None:
    """Write ``net`` (architecture, dtype and parameters) to ``path`` (.npz), atomically."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a deepgrad Network, got {type(net).__name__}")
    path = check_path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write the model to {str(path)!r}: it is a directory")
    meta = {
        "format": "deepgrad-network",
        "version": 1 if net.preprocessing is None else FORMAT_VERSION,
        "layer_sizes": list(net.spec.layer_sizes),
        "hidden_activation": net.spec.hidden_activation,
        "output": net.spec.output,
        "dtype": net.dtype,
        "init": net.init if isinstance(net.init, str) else "custom",
    }
    arrays = {k: to_numpy(v) for k, v in net.params.items()}
    if net.preprocessing is not None:
        record, pre_arrays = records.to_file(net.preprocessing)
        meta["preprocessing"] = record
        arrays.update(pre_arrays)
    arrays["__meta__"] = np.array(json.dumps(meta))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def load(path):
    """Read a network written by ``save``; clear errors for missing, foreign or broken files."""
    path = check_path(path)
    if path.is_dir():
        raise IsADirectoryError(f"model file {str(path)!r} is a directory, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    try:
        meta, arrays = read_npz(path)
    except PermissionError:
        raise
    except DAMAGED_NPZ_ERRORS as exc:
        raise ValueError(
            f"model file {str(path)!r} is not a readable deepgrad model (truncated, corrupted "
            f"or another format): {exc}"
        ) from exc
    if not isinstance(meta, dict) or meta.get("format") != "deepgrad-network":
        raise ValueError(f"model file {str(path)!r} is not a deepgrad network")
    if meta.get("version") not in READS_VERSIONS:
        raise ValueError(
            f"model file {str(path)!r} has format version {meta.get('version')!r}; this "
            f"deepgrad reads versions {', '.join(map(str, READS_VERSIONS))}"
        )
    pre_arrays = {k: arrays.pop(k) for k in list(arrays) if k.startswith(records.PREFIX)}
    try:
        net = Network(
            meta["layer_sizes"],
            meta["hidden_activation"],
            meta["output"],
            init="zeros",
            dtype=meta["dtype"],
        )
    except KeyError as exc:
        raise ValueError(f"model file {str(path)!r} has no {exc} in its metadata") from exc
    except (ValueError, TypeError) as exc:
        raise ValueError(f"model file {str(path)!r} has an invalid architecture: {exc}") from exc
    net.init = meta.get("init", "auto")
    expected = net.spec.shapes()
    if set(arrays) != set(expected) or any(arrays[k].shape != expected[k] for k in expected):
        raise ValueError(f"model file {str(path)!r} has parameters that do not match its layers")
    for k in expected:
        if arrays[k].dtype.kind not in "iuf" or not np.all(np.isfinite(arrays[k])):
            raise ValueError(
                f"model file {str(path)!r}: parameter {k} must hold finite real numbers, got "
                f"dtype {arrays[k].dtype}"
                + (" with NaN or inf" if arrays[k].dtype.kind == "f" else "")
            )
    net.params = {k: np.ascontiguousarray(arrays[k], dtype=meta["dtype"]) for k in expected}
    if "preprocessing" in meta or pre_arrays:
        try:
            net.preprocessing = records.from_file(meta.get("preprocessing"), pre_arrays, net.spec)
        except (ValueError, TypeError, KeyError) as exc:
            raise ValueError(
                f"model file {str(path)!r} has an invalid preprocessing record: {exc}"
            ) from exc
    return net
