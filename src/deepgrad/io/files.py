"""Files written atomically and deepgrad .npz files read safely (no pickle).

The lowest floor of file handling: it imports nothing of deepgrad, so the model file,
checkpoints and plots can all use it."""

from __future__ import annotations

import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

__all__ = ["atomic_write", "check_path", "read_npz", "DAMAGED_NPZ_ERRORS"]


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


def check_path(path) -> Path:
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
