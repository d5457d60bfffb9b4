"""Saving and loading networks as .npz files, written atomically."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

from . import records
from ._backend import to_numpy

__all__ = ["save", "load", "atomic_write", "FORMAT_VERSION"]

FORMAT_VERSION = 2  # 2: may hold a preprocessing record; files without one are written as 1
READS_VERSIONS = (1, 2)


def atomic_write(path, write) -> None:
    """Call ``write(fileobj)`` on a temp file beside ``path``, fsync, then rename over it.

    A crash at any moment leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise OSError(f"cannot write {str(path)!r}: directory {str(directory)!r} does not exist")
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def _check_path(path) -> Path:
    if not isinstance(path, str | os.PathLike) or str(path) == "":
        raise TypeError(f"path must be a file name (str or os.PathLike), got {path!r}")
    return Path(path)


# What a truncated or damaged .npz raises from np.load (zipfile's words for a bad header
# include NotImplementedError and RuntimeError).
DAMAGED_NPZ_ERRORS = (
    zipfile.BadZipFile,
    ValueError,
    KeyError,
    OSError,
    EOFError,
    TypeError,
    NotImplementedError,
    RuntimeError,
)


def read_npz(path) -> tuple[dict, dict]:
    """(metadata from the ``__meta__`` JSON entry, the other arrays) of a deepgrad .npz."""
    with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    return json.loads(str(arrays.pop("__meta__"))), arrays


def save(net, path) -> None:
    """Write ``net`` (architecture, dtype and parameters) to ``path`` (.npz), atomically."""
    from .model import Network

    if not isinstance(net, Network):
        raise TypeError(f"net must be a deepgrad Network, got {type(net).__name__}")
    path = _check_path(path)
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
    from .model import Network

    path = _check_path(path)
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
