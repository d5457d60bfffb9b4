"""Files written atomically and deepgrad .npz files read safely (no pickle).

The lowest floor of file handling: it imports nothing of deepgrad, so the model file,
checkpoints and plots can all use it."""

from __future__ import annotations

import json
import math
import os
import tempfile
import zipfile
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = [
    "atomic_write",
    "check_path",
    "read_npz",
    "npz_headers",
    "npy_header",
    "max_load_bytes",
    "Member",
    "FileRefused",
    "DAMAGED_NPZ_ERRORS",
    "DEFAULT_MAX_LOAD_BYTES",
]


def atomic_write(path, write) -> None:
    """Call ``write(fileobj)`` on a temp file beside ``path``, fsync, then rename over it.

    A crash at any moment leaves either the old file or the new one, never half of one.
    """
    path = Path(path)
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise OSError(f"cannot write {str(path)!r}: directory {str(directory)!r} does not exist")
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=directory)
    except OSError as exc:
        raise OSError(exc.errno, f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; give the usual mode
        os.replace(tmp, path)
    except OSError as exc:  # a full disk, a quota: say which file
        Path(tmp).unlink(missing_ok=True)
        if str(path) in str(exc):
            raise
        raise OSError(exc.errno, f"cannot write {str(path)!r}: {exc.strerror or exc}") from exc
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


# -- bounded reading -------------------------------------------------------------------
DEFAULT_MAX_LOAD_BYTES = 8 * 2**30
MAX_LOAD_ENV = "DEEPGRAD_MAX_LOAD_BYTES"


class FileRefused(ValueError):
    """A file whose structure or declared sizes are refused before its data is read."""


class Member(NamedTuple):
    """What one .npy (or .npz member) header declares, checked against its stored size."""

    name: str
    shape: tuple[int, ...]
    dtype: np.dtype
    nbytes: int


def max_load_bytes(max_bytes=None) -> int:
    """The ceiling on what one load may allocate: ``max_bytes``, else the environment
    variable DEEPGRAD_MAX_LOAD_BYTES, else 8 GiB."""
    if max_bytes is None:
        text = os.environ.get(MAX_LOAD_ENV)
        if text is None:
            return DEFAULT_MAX_LOAD_BYTES
        if not text.strip().isdigit() or int(text) < 1:
            raise ValueError(f"{MAX_LOAD_ENV} must be a positive number of bytes, got {text!r}")
        return int(text)
    if isinstance(max_bytes, bool) or not isinstance(max_bytes, int) or max_bytes < 1:
        raise ValueError(f"max_bytes must be a positive int (bytes), got {max_bytes!r}")
    return max_bytes


def _read_header(fh, where: str) -> tuple[tuple[int, ...], np.dtype, int]:
    """(shape, dtype, header length) of the .npy stream ``fh``; ValueError naming ``where``."""
    try:
        version = np.lib.format.read_magic(fh)
        if version == (1, 0):
            shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
        elif version == (2, 0):
            shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
        else:
            raise ValueError(f"npy format version {version} is not read (1.0 and 2.0 are)")
    except (ValueError, OSError, EOFError, SyntaxError) as exc:
        raise FileRefused(f"{where} has no valid .npy header: {exc}") from exc
    if dtype.hasobject:
        raise FileRefused(f"{where} holds Python objects (dtype {dtype}); only plain arrays load")
    return shape, dtype, fh.tell()


def _member(name: str, fh, stored: int, where: str) -> Member:
    shape, dtype, header = _read_header(fh, where)
    nbytes = math.prod(shape) * dtype.itemsize  # Python ints: no overflow
    if header + nbytes != stored:
        raise FileRefused(
            f"{where} declares shape {shape} dtype {dtype} ({nbytes} bytes of data) but holds "
            f"{stored - header} bytes"
        )
    return Member(name, tuple(shape), dtype, nbytes)


def _check_total(members, path, limit: int) -> None:
    total = sum(m.nbytes for m in members)
    if total > limit:
        raise FileRefused(
            f"{str(path)!r} declares {total} bytes of arrays, more than the load limit of "
            f"{limit} bytes (raise it with max_bytes= or {MAX_LOAD_ENV})"
        )


def npy_header(path, max_bytes=None) -> Member:
    """Check a .npy file's header against its size and the load limit, reading no data."""
    path = Path(path)
    with open(path, "rb") as fh:
        member = _member(path.name, fh, os.fstat(fh.fileno()).st_size, f"{str(path)!r}")
    _check_total([member], path, max_load_bytes(max_bytes))
    return member


def npz_headers(path, max_bytes=None, allow_compressed: bool = False) -> dict[str, Member]:
    """Every member of a .npz, checked before any data is read.

    Refused (ValueError naming the file and the member): a member that is not a .npy, a
    compressed one (``np.savez`` never compresses: a compressed member can be a zip bomb),
    a duplicate name, a header whose declared shape and dtype disagree with the stored size,
    object arrays, and a total beyond ``max_load_bytes(max_bytes)``. ``allow_compressed``
    (users' data files, ``np.savez_compressed``): compressed members are read, their
    declared uncompressed size bounded by the same ceiling (zipfile stops at it).
    """
    path = Path(path)
    members: dict[str, Member] = {}
    with zipfile.ZipFile(path) as zf:
        for info in zf.infolist():
            name = info.filename.removesuffix(".npy")
            where = f"{str(path)!r} member {info.filename!r}"
            if not info.filename.endswith(".npy"):
                raise FileRefused(f"{where} is not a .npy array")
            if name in members:
                raise FileRefused(f"{str(path)!r} holds the member {info.filename!r} twice")
            if info.compress_type != zipfile.ZIP_STORED and not allow_compressed:
                raise FileRefused(f"{where} is compressed; deepgrad files are stored uncompressed")
            with zf.open(info) as fh:
                members[name] = _member(name, fh, info.file_size, where)
    _check_total(members.values(), path, max_load_bytes(max_bytes))
    return members


def read_npz(path, max_bytes=None, check=None) -> tuple[dict, dict]:
    """(metadata from the ``__meta__`` JSON entry, the other arrays) of a deepgrad .npz.

    Every member's header is checked first (``npz_headers``); then ``check(meta, members)``,
    if given, may refuse the file from its metadata and declared shapes before the other
    arrays are read.
    """
    members = npz_headers(path, max_bytes)
    if "__meta__" not in members:
        raise ValueError(f"{str(path)!r} has no __meta__ member")
    meta_member = members["__meta__"]
    if meta_member.shape != () or meta_member.dtype.kind != "U":
        raise FileRefused(
            f"{str(path)!r} member '__meta__.npy' must be a text scalar, got shape "
            f"{meta_member.shape} dtype {meta_member.dtype}"
        )
    with open(path, "rb") as fh, np.load(fh, allow_pickle=False) as z:
        meta = json.loads(str(z["__meta__"]))
        if check is not None:
            check(meta, {k: m for k, m in members.items() if k != "__meta__"})
        arrays = {k: z[k] for k in members if k != "__meta__"}
    return meta, arrays
