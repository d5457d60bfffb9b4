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
from deepgrad.optim import optimizers
from deepgrad.train.types import TrainingState

__all__ = ["save", "load", "FORMAT_VERSION"]

FORMAT_VERSION = 3  # 2: a preprocessing record or an optimizer state; 3: column roles
READS_VERSIONS = (1, 2, 3)
OPT_PREFIX = "optimizer."  # members "optimizer.<slot>.<param>": the moments, by name


def save(net, path, optimizer_state: bool = False) -> None:
    """Write ``net`` (architecture, dtype and parameters) to ``path`` (.npz), atomically.

    ``optimizer_state=True`` also keeps where training stands (``net.training``: the
    built-in optimizer's name, its moments and counter, the epochs done), so that a
    ``fit`` after ``load`` with the same optimizer goes on exactly as without the save.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a deepgrad Network, got {type(net).__name__}")
    if not isinstance(optimizer_state, bool):
        raise TypeError(f"optimizer_state must be True or False, got {optimizer_state!r}")
    training = _training_record(net) if optimizer_state else None
    path = check_path(path)
    if path.is_dir():
        raise IsADirectoryError(f"cannot write the model to {str(path)!r}: it is a directory")
    meta = {
        "format": "deepgrad-network",
        "version": _version(net.preprocessing, training),
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
    if training is not None:
        meta["training"], opt_arrays = training
        arrays.update(opt_arrays)
    arrays["__meta__"] = np.array(json.dumps(meta))
    atomic_write(path, lambda f: np.savez(f, **arrays))


def _version(pre, training) -> int:
    """The oldest format that holds what is saved (older deepgrads still read the rest)."""
    if pre is not None and pre.columns is not None:
        return 3
    return 1 if pre is None and training is None else 2


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
    opt_arrays = {k: arrays.pop(k) for k in list(arrays) if k.startswith(OPT_PREFIX)}
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
    if "training" in meta or opt_arrays:
        net.training = _training_state(path, meta.get("training"), opt_arrays, net)
    return net


def _training_record(net) -> tuple[dict, dict]:
    """(JSON record, arrays) of ``net.training``, a built-in optimizer's state."""
    t = getattr(net, "training", None)
    if t is None:
        raise ValueError("optimizer_state=True, but net.training is None: fit the network first")
    if t.optimizer not in optimizers.OPTIMIZERS:
        raise ValueError(
            f"optimizer_state=True keeps the built-in optimizers' states "
            f"({sorted(optimizers.OPTIMIZERS)}), not {t.optimizer!r}'s"
        )
    count, slots = optimizers.flat_state(t.opt_state, lambda d: d)
    arrays = {
        f"{OPT_PREFIX}{i}.{k}": to_numpy(v) for i, slot in enumerate(slots) for k, v in slot.items()
    }
    record = {"optimizer": t.optimizer, "count": count, "slots": len(slots), "epochs": t.epochs}
    return record, arrays


def _training_state(path, record, arrays: dict, net) -> TrainingState:
    """The ``TrainingState`` a file keeps, checked against the network it belongs to."""

    def bad(why: str) -> ValueError:
        return ValueError(f"model file {str(path)!r} has an invalid optimizer state: {why}")

    if not isinstance(record, dict) or record.get("optimizer") not in optimizers.OPTIMIZERS:
        raise bad(f"its record must name a built-in optimizer, got {_short(record)}")
    count, epochs = record.get("count"), record.get("epochs")
    if not (type(count) is int and count >= 0 and type(epochs) is int and epochs >= 0):
        raise bad(f"count and epochs must be ints >= 0, got {count!r} and {epochs!r}")
    template = optimizers.get(record["optimizer"], 1.0).init(net.params)
    n_slots = len(optimizers.flat_state(template, lambda d: d)[1])
    shapes = {k: v.shape for k, v in net.params.items()}
    slots = []
    for i in range(n_slots):
        slot = {k: arrays.pop(f"{OPT_PREFIX}{i}.{k}", None) for k in shapes}
        for k, v in slot.items():
            if v is None or v.shape != shapes[k] or v.dtype.kind != "f" or not np.isfinite(v).all():
                raise bad(f"moment {i} of {k} must be finite floats of shape {shapes[k]}")
        slots.append({k: np.ascontiguousarray(v, dtype=net.dtype) for k, v in slot.items()})
    if arrays or record.get("slots") != n_slots:
        raise bad(f"{record['optimizer']} keeps {n_slots} moments per parameter")
    state = optimizers.state_from_flat(template, count, tuple(slots), lambda d: d)
    return TrainingState(record["optimizer"], state, epochs)


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
    params = {k: m for k, m in members.items() if not k.startswith((records.PREFIX, OPT_PREFIX))}
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
