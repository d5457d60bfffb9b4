"""Training checkpoints: everything ``fit`` needs to go on exactly where it stopped.

A checkpoint is one .npz file holding

- the parameters ``params.W1``, ``params.b1``, ... (NumPy copies, exact bits);
- the optimizer state, a NamedTuple of counters and dicts of arrays, flattened to named
  arrays ``opt.<field>.<key>`` and rebuilt on the template ``optimizer.init(params)``;
- the position: ``epoch`` and ``position`` (mini-batches of that epoch already done).
  Shuffling and dropout masks are pure functions of (seed, epoch), so this is the whole
  random state: a resumed epoch redraws the same permutation and skips ``position`` batches;
- the ``History`` so far, and the training configuration it was written by;
- a SHA-256 over all of the above, so a truncated or corrupted file is detected.

Writes are atomic (``io.atomic_write``: temp file, fsync, rename) and the good file being
replaced is first hard-linked to ``PATH.prev``: at every instant ``PATH`` is a complete
checkpoint, and after a bad write (a full disk, a corrupted sector) the previous one is kept.

Example
-------
>>> import deepgrad as dg, numpy as np, tempfile, os
>>> X = np.random.default_rng(0).normal(size=(40, 3)); y = (X[:, 0] > 0).astype(int)
>>> path = os.path.join(tempfile.mkdtemp(), "run.ckpt.npz")
>>> h1 = dg.Network([3, 4, 1], seed=0).fit(X, y, epochs=2, seed=0, checkpoint=path)
>>> h2 = dg.Network([3, 4, 1], seed=0).fit(X, y, epochs=3, seed=0, checkpoint=path)
>>> len(h2.epoch_cost)  # resumed after epoch 2: one more epoch was run
3
"""

from __future__ import annotations

import glob
import hashlib
import io as _io
import json
import os
from dataclasses import fields
from pathlib import Path
from typing import Any, NamedTuple

import numpy as np

from deepgrad.core.backend import namespace, to_numpy
from deepgrad.core.checks import check_int
from deepgrad.io.files import DAMAGED_NPZ_ERRORS, FileRefused, atomic_write, read_npz

__all__ = [
    "CheckpointError",
    "Checkpoint",
    "Checkpointer",
    "save_checkpoint",
    "load_checkpoint",
    "training_config",
    "config_differences",
    "FORMAT_VERSION",
]

FORMAT = "deepgrad-checkpoint"
FORMAT_VERSION = 1
_HASH_ALL_BYTES = 256 * 2**20  # hash data sets up to this size whole, larger ones sampled


_STEP_LISTS = ("iteration_cost", "iteration_time", "iteration_examples")
_EPOCH_LISTS = ("epoch_cost", "epoch_time")


class CheckpointError(ValueError):
    """A checkpoint file is unreadable, corrupted, or belongs to another training run."""


class Checkpoint(NamedTuple):
    """The content of a checkpoint file (params and optimizer leaves as NumPy arrays)."""

    epoch: int  # the epoch in progress (== epochs when training is complete)
    position: int  # mini-batches of ``epoch`` already done
    params: dict
    opt_arrays: dict  # flattened optimizer state, rebuilt with ``restore_state``
    history: dict  # History.as_dict()
    config: dict


# -- the configuration a checkpoint belongs to ------------------------------------------
def data_fingerprint(X, Y) -> str:
    """SHA-256 of the data's shape, dtype and bytes (sampled rows beyond 256 MiB)."""
    h = hashlib.sha256()
    for A in (X, Y):
        A = to_numpy(A)
        h.update(f"{A.dtype.str}{A.shape}".encode())
        if A.nbytes <= _HASH_ALL_BYTES:
            h.update(np.ascontiguousarray(A).tobytes())
        else:  # a memory-mapped giant: 4096 evenly spaced rows
            rows = np.linspace(0, A.shape[0] - 1, 4096).astype(np.int64)
            h.update(np.ascontiguousarray(A[rows]).tobytes())
    return h.hexdigest()


def training_config(net, X, Y, **settings) -> dict:
    """The settings that must match for a checkpoint to be resumed (JSON-able dict).

    ``settings`` are fit's (batch_size, learning_rate, l2, l2_normalization, optimizer,
    keep_prob, seed, shuffle); ``epochs`` is not among them: a finished run can be resumed
    with more epochs.
    """
    config = {
        "layer_sizes": list(net.spec.layer_sizes),
        "hidden_activation": net.spec.hidden_activation,
        "output": net.spec.output,
        "dtype": net.dtype,
        "data": data_fingerprint(X, Y),
    }
    for key, value in settings.items():
        config[key] = value if isinstance(value, bool | int | float | str | None) else repr(value)
    return config


def config_differences(saved: dict, current: dict) -> list[str]:
    """Human-readable 'name: saved X, now Y' for every setting that differs."""
    out = []
    for key in sorted(set(saved) | set(current)):
        a, b = saved.get(key), current.get(key)
        if a != b:
            if key == "data":
                out.append("data: the training data (X, Y) differ from the checkpoint's")
            else:
                out.append(f"{key}: {a!r} in the checkpoint, {b!r} now")
    return out


# -- optimizer state <-> named arrays ----------------------------------------------------
def flatten_state(tree: Any, prefix: str = "opt") -> dict[str, np.ndarray]:
    """NamedTuples, tuples, dicts, arrays and numbers -> {"opt.field.key": array}."""
    out: dict[str, np.ndarray] = {}
    if tree is None:
        return out
    if isinstance(tree, tuple) and hasattr(tree, "_fields"):
        items = zip(tree._fields, tree, strict=True)
    elif isinstance(tree, list | tuple):
        items = ((str(i), v) for i, v in enumerate(tree))
    elif isinstance(tree, dict):
        items = ((str(k), v) for k, v in tree.items())
    else:
        return {prefix: np.asarray(to_numpy(tree))}
    for key, value in items:
        out.update(flatten_state(value, f"{prefix}.{key}"))
    return out


def restore_state(template: Any, arrays: dict, prefix: str = "opt"):
    """Rebuild a state shaped like ``template`` (from ``optimizer.init``) from named arrays."""
    if template is None:
        return None
    if isinstance(template, tuple) and hasattr(template, "_fields"):
        return type(template)(
            *(
                restore_state(v, arrays, f"{prefix}.{k}")
                for k, v in zip(template._fields, template, strict=True)
            )
        )
    if isinstance(template, list | tuple):
        return type(template)(
            restore_state(v, arrays, f"{prefix}.{i}") for i, v in enumerate(template)
        )
    if isinstance(template, dict):
        return {k: restore_state(v, arrays, f"{prefix}.{k}") for k, v in template.items()}
    if prefix not in arrays:
        raise CheckpointError(
            f"the checkpoint's optimizer state has no {prefix!r}: it was written by another "
            f"optimizer"
        )
    value = arrays[prefix]
    if isinstance(template, bool | int | float):
        return type(template)(value[()])
    xp = namespace(template)
    return value if isinstance(template, np.ndarray) else xp.asarray(value)


# -- the file --------------------------------------------------------------------------
def _digest(meta: dict, arrays: dict[str, np.ndarray]) -> str:
    h = hashlib.sha256(json.dumps(meta, sort_keys=True).encode())
    for name in sorted(arrays):
        a = np.ascontiguousarray(arrays[name])
        h.update(f"{name}|{a.dtype.str}|{a.shape}|".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def _history_arrays(history: dict) -> tuple[dict, dict]:
    lists, scalars = {}, {}
    for key, value in history.items():
        if isinstance(value, list):
            dtype = np.int64 if key == "iteration_examples" else np.float64
            lists[f"history.{key}"] = np.asarray(value, dtype=dtype)
        else:
            scalars[key] = value
    return lists, scalars


def save_checkpoint(path, ckpt: Checkpoint) -> None:
    """Write ``ckpt`` atomically; an existing good file is kept as ``PATH.prev``."""
    path = Path(path)
    arrays = {f"params.{k}": np.asarray(to_numpy(v)) for k, v in ckpt.params.items()}
    arrays.update(ckpt.opt_arrays)
    hist_arrays, hist_scalars = _history_arrays(ckpt.history)
    arrays.update(hist_arrays)
    meta = {
        "format": FORMAT,
        "version": FORMAT_VERSION,
        "epoch": ckpt.epoch,
        "position": ckpt.position,
        "history": hist_scalars,
        "config": ckpt.config,
    }
    meta["sha256"] = _digest(meta, arrays)
    arrays["__meta__"] = np.array(json.dumps(meta))
    buffer = _io.BytesIO()
    np.savez(buffer, **arrays)  # serialize first: a failure here leaves the disk untouched
    if path.is_file():
        prev = path.with_name(path.name + ".prev")
        prev.unlink(missing_ok=True)
        try:
            os.link(path, prev)  # PATH itself stays in place until the rename below
        except OSError:
            atomic_write(prev, lambda f: f.write(path.read_bytes()))
    atomic_write(path, lambda f: f.write(buffer.getbuffer()))


def load_checkpoint(path) -> Checkpoint:
    """Read and verify a checkpoint; ``CheckpointError`` says what is wrong with it."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"checkpoint {str(path)!r} does not exist")
    prev = path.with_name(path.name + ".prev")
    hint = (
        f"; the previous good checkpoint is {str(prev)!r}: move it to {str(path)!r} to "
        f"resume from it"
        if prev.is_file()
        else f"; delete {str(path)!r} to start over"
    )
    try:
        meta, arrays = read_npz(path, check=lambda m, members: _check_layout(path, m, members))
    except (PermissionError, CheckpointError):
        raise
    except FileRefused as exc:  # it names the file and the member
        raise CheckpointError(f"{exc}{hint}") from exc
    except DAMAGED_NPZ_ERRORS as exc:
        raise CheckpointError(
            f"checkpoint {str(path)!r} is truncated or corrupted ({type(exc).__name__}){hint}"
        ) from exc
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        what = meta.get("format") if isinstance(meta, dict) else None
        raise CheckpointError(
            f"checkpoint {str(path)!r} is not a deepgrad checkpoint"
            + (f" (it is a {what!r} file)" if isinstance(what, str) else "")
            + "; pass another path for the checkpoint"
        )
    if meta.get("version") != FORMAT_VERSION:
        raise CheckpointError(
            f"checkpoint {str(path)!r} has format version {meta.get('version')!r}; this deepgrad "
            f"reads version {FORMAT_VERSION}"
        )
    stored = meta.pop("sha256", None)
    if stored != _digest(meta, arrays):
        raise CheckpointError(f"checkpoint {str(path)!r} fails its SHA-256 checksum{hint}")
    return _content(path, meta, arrays)


def _bad(path, what: str) -> CheckpointError:
    return CheckpointError(
        f"checkpoint {str(path)!r} has a valid checksum but {what}; delete it to start over"
    )


def _check_layout(path, meta, members) -> None:
    """Refuse, before reading arrays, a file whose parameters do not fit its own layers."""
    config = meta.get("config") if isinstance(meta, dict) else None
    sizes = config.get("layer_sizes") if isinstance(config, dict) else None
    params = {k: m for k, m in members.items() if k.startswith("params.")}
    if sizes is None:  # a config without layers never matches a fit's (resume refuses it)
        return
    if (
        not isinstance(sizes, list)
        or not 2 <= len(sizes) <= len(params) + 1
        or not all(type(n) is int and n >= 1 for n in sizes)
    ):
        raise CheckpointError(
            f"checkpoint {str(path)!r}: its layer_sizes must be 2 to {len(params) + 1} "
            f"positive ints, got {repr(sizes)[:80]}"
        )
    dtype = config.get("dtype")
    for l in range(1, len(sizes)):
        for name, shape in ((f"W{l}", (sizes[l], sizes[l - 1])), (f"b{l}", (sizes[l],))):
            m = params.pop(f"params.{name}", None)
            if m is None or m.shape != shape or m.dtype != np.dtype(dtype or "float64"):
                got = "missing" if m is None else f"shape {m.shape} dtype {m.dtype}"
                raise CheckpointError(
                    f"checkpoint {str(path)!r}: parameter {name} must have shape {shape} "
                    f"dtype {dtype}, got {got}"
                )
    if params:
        raise CheckpointError(f"checkpoint {str(path)!r} has unknown parameters {sorted(params)}")


def _count(path, name: str, value) -> int:
    if type(value) is not int or value < 0:
        raise _bad(path, f"{name} {value!r} (it must be an int >= 0)")
    return value


def _content(path, meta, arrays) -> Checkpoint:
    """The checkpoint, its content checked: counters, finiteness and history lengths."""
    epoch = _count(path, "epoch", meta.get("epoch"))
    position = _count(path, "position", meta.get("position"))
    params = {k[len("params.") :]: v for k, v in arrays.items() if k.startswith("params.")}
    for name, value in params.items():
        if not np.all(np.isfinite(value)):
            raise _bad(path, f"parameter {name} holds NaN or inf")
    if not isinstance(meta.get("history"), dict):
        raise _bad(path, "no history record")
    history = dict(meta["history"])
    for key, value in arrays.items():
        if key.startswith("history."):
            if value.ndim != 1:
                raise _bad(path, f"{key} of shape {value.shape} (it must be 1-D)")
            history[key[len("history.") :]] = value.tolist()
    _check_lengths(path, history, epoch, position)
    return Checkpoint(
        epoch=epoch,
        position=position,
        params=params,
        opt_arrays={k: v for k, v in arrays.items() if k.startswith("opt")},
        history=history,
        config=meta["config"],
    )


def _check_lengths(path, history: dict, epoch: int, position: int) -> None:
    per_step = {k: len(history[k]) for k in _STEP_LISTS if k in history}
    per_epoch = {k: len(history[k]) for k in _EPOCH_LISTS if k in history}
    if len(set(per_step.values())) > 1 or any(n < position for n in per_step.values()):
        raise _bad(path, f"per-step histories of lengths {per_step} at position {position}")
    if any(n != epoch for n in per_epoch.values()):
        raise _bad(path, f"per-epoch histories of lengths {per_epoch} at epoch {epoch}")


# -- what fit uses ---------------------------------------------------------------------
def lock_checkpoint(path: Path):
    """An exclusive lock on ``PATH.lock`` (holding the owner's pid), for the life of a fit.

    ``fcntl.flock`` locks go with the open file: the OS releases them when the process ends,
    however it ends, so a killed run never leaves the checkpoint locked (its lock file may
    stay, unlocked). ``unlock_checkpoint`` removes the file; a process that locked a file
    just removed sees that its inode is gone and tries again."""
    import fcntl

    lock_path = path.with_name(path.name + ".lock")
    if not lock_path.parent.is_dir():
        raise FileNotFoundError(
            f"cannot write checkpoint {str(path)!r}: directory {str(path.parent)!r} does not exist"
        )
    while True:
        try:
            fh = open(lock_path, "a+")
        except OSError as exc:
            raise OSError(
                exc.errno, f"cannot lock checkpoint {str(path)!r}: {exc.strerror}"
            ) from exc
        try:
            fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            fh.seek(0)
            owner = fh.read().strip() or "unknown"
            fh.close()
            raise CheckpointError(
                f"checkpoint {str(path)!r} is in use by process {owner} (its lock is "
                f"{str(lock_path)!r}); wait for it or use another path"
            ) from None
        try:
            if os.stat(lock_path).st_ino == os.fstat(fh.fileno()).st_ino:
                break
        except FileNotFoundError:
            pass
        fh.close()  # locked a file its owner removed meanwhile: lock the new one
    fh.seek(0)
    fh.truncate()
    fh.write(f"{os.getpid()}\n")
    fh.flush()
    return fh


def unlock_checkpoint(path: Path, fh) -> None:
    """Remove ``PATH.lock`` (while still holding it), then release it."""
    path.with_name(path.name + ".lock").unlink(missing_ok=True)
    fh.close()


class Checkpointer:
    """Resumes ``fit`` from ``path`` and saves to it every ``every`` iterations, at each
    epoch end and on KeyboardInterrupt.

    ``fit`` calls ``resume`` once, ``step`` after every mini-batch (cheap: it keeps the
    position and a function that returns the engine's state, called only when writing;
    a write every ``every`` steps), ``epoch_end`` after every epoch and ``save`` when
    interrupted.
    """

    def __init__(self, path, every: int | None = None):
        if not isinstance(path, str | os.PathLike):
            raise TypeError(f"checkpoint must be a path (str or os.PathLike), got {path!r}")
        self.path = Path(path)
        if self.path.is_dir():
            raise ValueError(f"checkpoint must be a file path, got the directory {str(path)!r}")
        self.every = None if every is None else check_int("checkpoint_every", every, 1)
        self._lock = lock_checkpoint(self.path)
        try:
            # every writer holds the lock: the temp files found now are a dead writer's
            for stale in self.path.parent.glob(f".{glob.escape(self.path.name)}.*.tmp"):
                stale.unlink(missing_ok=True)
            self.saved = load_checkpoint(self.path) if self.path.exists() else None
        except BaseException:
            self.close()
            raise
        self.config: dict = {}
        self._snapshot = None
        self._history = None

    def close(self) -> None:
        """Release the checkpoint's lock (also released by the OS when the process ends)."""
        if self._lock is not None:
            unlock_checkpoint(self.path, self._lock)
            self._lock = None

    @property
    def saved_seed(self) -> int | None:
        return None if self.saved is None else self.saved.config.get("seed")

    def resume(self, config: dict, params: dict, opt_state, history, epochs: int, batches=None):
        """(epoch, position, params, opt_state, history): the saved ones if there is a
        checkpoint matching ``config``, else the given ones at (0, 0). ``batches``: the
        mini-batches of one epoch, the bound of the saved position."""
        self.config, self._history = config, history
        if self.saved is None:
            self._take(0, 0, lambda: (params, opt_state))
            return 0, 0, params, opt_state, history
        diffs = config_differences(self.saved.config, config)
        if diffs:
            raise CheckpointError(
                f"checkpoint {str(self.path)!r} belongs to another training run: "
                + "; ".join(diffs)
                + " (use another path, or delete it to start over)"
            )
        if self.saved.epoch > epochs:
            raise CheckpointError(
                f"checkpoint {str(self.path)!r} is already at epoch {self.saved.epoch}, past "
                f"epochs={epochs}; ask for at least {self.saved.epoch} epochs"
            )
        if batches is not None and self.saved.position > batches:
            raise _bad(
                self.path,
                f"position {self.saved.position}, past the {batches} mini-batches of an epoch",
            )
        xp = namespace(*params.values())
        new_params = {
            k: v if isinstance(v, np.ndarray) and xp is namespace(v) else xp.asarray(v)
            for k, v in self.saved.params.items()
        }
        state = restore_state(opt_state, self.saved.opt_arrays)
        for f in fields(history):
            if f.name in self.saved.history:  # fields added since the file was written
                setattr(history, f.name, self.saved.history[f.name])  # keep their defaults
        self._take(self.saved.epoch, self.saved.position, lambda: (new_params, state))
        return self.saved.epoch, self.saved.position, new_params, state, history

    def _take(self, epoch, position, get_state) -> None:
        lengths = {k: len(v) for k, v in self._history.as_dict().items() if isinstance(v, list)}
        self._snapshot = (epoch, position, get_state, lengths)

    def step(self, epoch: int, position: int, get_state) -> None:
        """Called by the training loop after each mini-batch; ``get_state()`` returns the
        (params, opt_state) after it (called when writing, before the next step)."""
        self._take(epoch, position, get_state)
        if self.every is not None and self._history.iterations % self.every == 0:
            self.save()

    def epoch_end(self, next_epoch: int, get_state) -> None:
        self._take(next_epoch, 0, get_state)
        self.save()

    def save(self) -> None:
        """Write the last consistent snapshot (history cut to the snapshot's lengths)."""
        if self._snapshot is None:
            return
        epoch, position, get_state, lengths = self._snapshot
        params, opt_state = get_state()
        history = {
            k: (v[: lengths[k]] if isinstance(v, list) else v)
            for k, v in self._history.as_dict().items()
        }
        save_checkpoint(
            self.path,
            Checkpoint(epoch, position, params, flatten_state(opt_state), history, self.config),
        )
