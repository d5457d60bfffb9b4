"""The model file: a Network's architecture, dtype, parameters and preprocessing record
in one .npz (JSON metadata and plain arrays, loaded with allow_pickle=False)."""

from __future__ import annotations

import json

import numpy as np

from deepgrad.core.backend import to_numpy
from deepgrad.data import records
from deepgrad.io.files import (
    DAMAGED_NPZ_ERRORS,
    FileRefused,
    atomic_write,
    check_path,
    read_npz,
)
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


def load(path, max_bytes=None):
    """Read a network written by ``save``; clear errors for missing, foreign or broken files.

    Nothing is allocated before the file's member headers, its metadata and its layer
    sizes agree; ``max_bytes`` (default: ``io.files.max_load_bytes()``, 8 GiB or the
    environment's DEEPGRAD_MAX_LOAD_BYTES) caps what the load may allocate.
    """
    path = check_path(path)
    if path.is_dir():
        raise IsADirectoryError(f"model file {str(path)!r} is a directory, not a file")
    if not path.is_file():
        raise FileNotFoundError(f"model file {str(path)!r} does not exist")
    try:
        meta, arrays = read_npz(path, max_bytes, lambda m, members: _check_layout(path, m, members))
    except (PermissionError, FileRefused):
        raise
    except DAMAGED_NPZ_ERRORS as exc:
        raise ValueError(
            f"model file {str(path)!r} is not a readable deepgrad model (truncated, corrupted "
            f"or another format): {exc}"
        ) from exc
    pre_arrays = {k: arrays.pop(k) for k in list(arrays) if k.startswith(records.PREFIX)}
    net = _network(path, meta)
    expected = net.spec.shapes()
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


def _check_layout(path, meta, members: dict) -> None:
    """Refuse a file whose metadata or parameter headers disagree, before reading arrays."""
    if not isinstance(meta, dict) or meta.get("format") != "deepgrad-network":
        raise FileRefused(f"model file {str(path)!r} is not a deepgrad network")
    if meta.get("version") not in READS_VERSIONS:
        raise FileRefused(
            f"model file {str(path)!r} has format version {meta.get('version')!r}; this "
            f"deepgrad reads versions {', '.join(map(str, READS_VERSIONS))}"
        )
    if "layer_sizes" not in meta:
        raise FileRefused(f"model file {str(path)!r} has no 'layer_sizes' in its metadata")
    sizes = meta["layer_sizes"]
    params = {k: m for k, m in members.items() if not k.startswith(records.PREFIX)}
    if (
        not isinstance(sizes, list)
        or not 2 <= len(sizes) <= len(params) + 1  # bounded by what the file stores
        or not all(type(n) is int and n >= 1 for n in sizes)
    ):
        raise FileRefused(
            f"model file {str(path)!r} has an invalid architecture: layer_sizes must be a "
            f"list of 2 to {len(params) + 1} positive ints (the file stores {len(params)} "
            f"parameter arrays), got {_short(sizes)}"
        )
    expected = {}
    for l in range(1, len(sizes)):
        expected[f"W{l}"] = (sizes[l], sizes[l - 1])
        expected[f"b{l}"] = (sizes[l],)
    found = {k: m.shape for k, m in params.items()}
    if found != expected:
        diff = sorted(set(found) ^ set(expected)) or [
            f"{k} {found[k]} (layers say {expected[k]})"
            for k in expected
            if found[k] != expected[k]
        ]
        raise FileRefused(
            f"model file {str(path)!r} has parameters that do not match its layers "
            f"{sizes}: {', '.join(map(str, diff[:4]))}"
        )


def _short(value) -> str:
    text = repr(value)
    return text if len(text) <= 80 else f"{text[:77]}..."


def _network(path, meta) -> Network:
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
    return net
