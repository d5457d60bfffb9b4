"""Data for training: shuffled mini-batches, synthetic sets, memory-mapped .npy directories.

Shuffling schemes: index gathers, one mini-batch at a time
----------------------------------------------------------
The data set is never copied or permuted as a whole. Each epoch draws an order of the row
indices from ``numpy.random.default_rng([seed, epoch])`` and every mini-batch gathers its
rows, ``X[idx]`` (``np.take(X, idx, out=buffer)`` on the fast path), when it is used, with
the indices sorted inside the batch (the batch holds the same examples either way, and
ascending reads are faster on memory-mapped files). Cost: one gather of batch_size rows
per step, 8 bytes per example for the order (40 MB for 5,000,000 examples), nothing else.

- Arrays in memory: a uniform permutation (``epoch_permutation(m, seed, epoch)``).
- Memory-mapped X (``shuffle_block``): a block shuffle. Rows are cut into blocks of ~1 MiB
  of consecutive rows (2,621 rows of 100 float32), the blocks are visited in a random
  order and the rows of each window of 32 consecutive blocks (~32 MiB) are permuted
  uniformly. A mini-batch of 1,000 then mixes rows of 32 random blocks. Why: a uniform
  gather from a file touches one 4 KiB page per 400-byte row (the kernel maps up to 64
  KiB around each fault), so it reads ~10-100x the bytes it uses, and its mapped pages
  spread over the whole file. Measured on the 5M x 100 set (bench/data_read.py, README):
  uniform gathers 0.43 M rows/s from a cold cache and 1.9 M warm, with the process's
  resident memory growing to the whole 2 GB file; the block shuffle 0.71 M rows/s cold,
  5.5 M warm, resident memory under 400 MB. The price: rows of one block stay within
  the same ~32 MiB window of an epoch, so a file sorted by label or time must be
  shuffled once on disk first (make-data's files are in random order already).

Resident memory stays bounded: the training loop calls ``release_pages`` after every 256
MB it has gathered from a memory-mapped X, dropping the mapped pages from the process
(``madvise(MADV_DONTNEED)``; the kernel's page cache may keep them).

Synthetic data
--------------
``synthetic``/``make_dataset`` make a deterministic binary classification set: X ~ N(0, 1)
in float32, labels from a fixed random teacher network y = [tanh(X W1^T) w2 > 0] with a
fraction ``noise`` of labels flipped; the teacher is odd in X, so the classes are balanced
up to sampling noise. Rows are made in blocks of ``BLOCK_ROWS``, each from its own
generator ``default_rng([seed, 1, block])``, so a set depends only on (m, n_x, seed,
noise), whatever the chunking.
"""

from __future__ import annotations

import hashlib
import json
import mmap
import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import numpy as np

__all__ = [
    "epoch_permutation",
    "shuffle_block",
    "batch_slices",
    "batch_indices",
    "check_permutation",
    "EpochOrder",
    "n_batches",
    "BLOCK_ROWS",
    "teacher",
    "synthetic_block",
    "synthetic",
    "make_dataset",
    "open_dataset",
    "check_unchanged",
    "release_pages",
]

BLOCK_ROWS = 65_536  # rows per generation block: the data depend only on (m, n_x, seed)
BLOCK_BYTES = 2**20  # block shuffle of memory-mapped data: blocks of ~1 MiB of rows
TEACHER_HIDDEN = 32


def epoch_permutation(
    m: int, seed: int, epoch: int, block: int | None = None, window: int = 32
) -> np.ndarray:
    """The order of the m examples in ``epoch``: depends only on (seed, epoch).

    ``block=None``: a uniform permutation. ``block=k``: a block shuffle for data on disk:
    the rows are cut into blocks of k consecutive rows, the blocks are visited in a
    random order, and the rows of each group of ``window`` consecutive (shuffled) blocks
    are permuted uniformly among themselves.
    """
    rng = np.random.default_rng([seed, epoch])
    if block is None or m <= block * window:
        return rng.permutation(m)
    n_blocks = -(-m // block)
    rows = (rng.permutation(n_blocks)[:, None] * block + np.arange(block)).ravel()
    rows = rows[rows < m]  # the last block may be short
    span = block * window
    for start in range(0, m, span):
        rng.shuffle(rows[start : start + span])  # a view: shuffled in place
    return rows


def shuffle_block(X) -> int | None:
    """Rows per block of the block shuffle for X: ~1 MiB of rows for a memory-mapped X,
    None (a uniform permutation) for arrays in memory."""
    if not isinstance(X, np.memmap):
        return None
    return max(1, BLOCK_BYTES // max(1, X.strides[0]))


def n_batches(m: int, batch_size: int) -> int:
    """ceil(m / batch_size): the last, partial batch is kept."""
    return -(-m // batch_size)


def batch_slices(m: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of size ``batch_size``; the last one may be shorter."""
    for start in range(0, m, batch_size):
        yield slice(start, min(start + batch_size, m))


def batch_indices(
    m: int,
    batch_size: int,
    seed: int,
    epoch: int,
    shuffle: bool = True,
    block: int | None = None,
    order: np.ndarray | None = None,
):
    """Index arrays of each mini-batch of ``epoch`` (``block``: see ``epoch_permutation``).

    ``order``: this epoch's permutation of the rows, given by the user (``fit(order=)``);
    it replaces the drawn one. Sorted within a batch: the batch holds the same examples
    either way, and ascending reads are much faster on memory-mapped files.
    """
    if order is None:
        order = epoch_permutation(m, seed, epoch, block) if shuffle else np.arange(m)
    for s in batch_slices(m, batch_size):
        yield np.sort(order[s])


def check_permutation(name: str, perm, m: int) -> np.ndarray:
    """``perm`` as an int64 array if it is a permutation of range(m), else ValueError
    saying how it is not (length, a repeated row, a row out of range)."""
    try:
        p = np.asarray(perm)
    except (TypeError, ValueError) as exc:
        raise ValueError(f"{name} must be a permutation of the {m} rows, got {perm!r}") from exc
    if p.ndim != 1 or p.shape[0] != m:
        raise ValueError(
            f"{name} must be a permutation of the {m} rows (shape ({m},)), got shape {p.shape}"
        )
    if p.dtype.kind not in "iu":
        raise ValueError(f"{name} must hold integer row indices, got dtype {p.dtype}")
    p = p.astype(np.int64)
    if m and (p.min() < 0 or p.max() >= m):
        bad = p[(p < 0) | (p >= m)][0]
        raise ValueError(f"{name} must hold rows 0..{m - 1}, got row {bad}")
    counts = np.bincount(p, minlength=m)
    if np.any(counts != 1):
        raise ValueError(
            f"{name} must be a permutation of the {m} rows: row {int(np.argmax(counts))} "
            f"appears {int(counts.max())} times"
        )
    return p


class EpochOrder:
    """The batch order a user gave ``fit``: ``order(epoch)`` is that epoch's checked
    permutation of the m rows.

    ``order`` is a callable ``epoch -> permutation`` (called once per epoch: a callable
    that draws from a generator is not asked twice for the same epoch) or an array of
    shape (epochs, m), row e being epoch e's order. ``fingerprint`` names it for
    checkpoints (the arrays' digest, or the callable's name).
    """

    def __init__(self, order, m: int, epochs: int):
        self.m = m
        self._last: tuple[int, np.ndarray] | None = None
        if callable(order):
            self._fn, self._table = order, None
            self.fingerprint = "callable " + getattr(order, "__qualname__", type(order).__name__)
            return
        try:
            table = np.asarray(order)
        except (TypeError, ValueError) as exc:
            raise ValueError(f"order must be a callable or an array, got {order!r}") from exc
        if table.ndim != 2 or table.shape[0] < epochs:
            raise ValueError(
                f"order must be a callable epoch -> permutation or an array of shape "
                f"(epochs, m) = ({epochs}, {m}) or more rows, got shape {table.shape}"
            )
        self._table = np.stack(
            [check_permutation(f"order[{e}]", table[e], m) for e in range(table.shape[0])]
        )
        self._fn = None
        self.fingerprint = "array " + hashlib.sha256(self._table.tobytes()).hexdigest()[:16]

    def check(self, first: int, last: int) -> None:
        """ValueError now, before training, if epochs ``first`` .. ``last - 1`` cannot all
        get an order (an array too short) or epoch ``first``'s is not a permutation."""
        if self._table is not None and last > self._table.shape[0]:
            raise ValueError(
                f"order has {self._table.shape[0]} epochs' permutations; this fit trains "
                f"epochs {first}..{last - 1} (epochs count on in continued training)"
            )
        self(first)

    def __call__(self, epoch: int) -> np.ndarray:
        if self._table is not None:
            if epoch >= self._table.shape[0]:
                raise ValueError(
                    f"order has {self._table.shape[0]} epochs' permutations, epoch {epoch} "
                    f"needs one more row"
                )
            return self._table[epoch]
        if self._last is None or self._last[0] != epoch:
            self._last = (epoch, check_permutation(f"order({epoch})", self._fn(epoch), self.m))
        return self._last[1]


# -- synthetic data ---------------------------------------------------------------------
def teacher(n_features: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The fixed random teacher: W1 (32, n_x) ~ N(0, 1/n_x), w2 (32,) ~ N(0, 1/32)."""
    rng = np.random.default_rng([seed, 0])
    W1 = rng.standard_normal((TEACHER_HIDDEN, n_features)) / np.sqrt(n_features)
    w2 = rng.standard_normal(TEACHER_HIDDEN) / np.sqrt(TEACHER_HIDDEN)
    return W1.astype(np.float32), w2.astype(np.float32)


def synthetic_block(block: int, rows: int, n_features: int, seed: int, noise: float, T=None):
    """Block ``block`` of a synthetic set: X (rows, n_x) float32, y (rows,) uint8 in {0, 1}."""
    W1, w2 = teacher(n_features, seed) if T is None else T
    rng = np.random.default_rng([seed, 1, block])
    X = rng.standard_normal((rows, n_features), dtype=np.float32)
    y = np.tanh(X @ W1.T) @ w2 > 0
    flip = rng.random(rows) < noise
    return X, (y ^ flip).astype(np.uint8)


def _blocks(m: int):
    for k, start in enumerate(range(0, m, BLOCK_ROWS)):
        yield k, start, min(start + BLOCK_ROWS, m)


def _check_synthetic_args(m, n_features, seed, noise):
    from deepgrad.core.checks import check_float, check_int

    return (
        check_int("examples", m, 1),
        check_int("features", n_features, 1),
        check_int("seed", seed, 0),
        check_float("noise", noise, 0.0, 0.5),
    )


def synthetic(m: int, n_features: int, seed: int = 0, noise: float = 0.05):
    """An in-memory synthetic set (X (m, n_x) float32, y (m,) uint8); same rows as
    ``make_dataset`` writes for the same arguments.

    >>> X, y = synthetic(1000, 20, seed=0)
    >>> X.shape, X.dtype.name, 0.4 < y.mean() < 0.6
    ((1000, 20), 'float32', True)
    """
    m, n_features, seed, noise = _check_synthetic_args(m, n_features, seed, noise)
    T = teacher(n_features, seed)
    X = np.empty((m, n_features), np.float32)
    y = np.empty(m, np.uint8)
    for k, a, b in _blocks(m):
        X[a:b], y[a:b] = synthetic_block(k, b - a, n_features, seed, noise, T)
    return X, y


def make_dataset(out, examples: int, features: int, seed: int = 0, noise: float = 0.05) -> Path:
    """Write a synthetic set as ``out/X.npy`` (m, n_x) float32 and ``out/y.npy`` (m,) uint8.

    Written block by block through ``np.lib.format.open_memmap`` (memory stays at one
    block, ~26 MB for 100 features), into a temporary directory beside ``out`` that is
    renamed to ``out`` only when complete: an interrupted run leaves nothing at ``out``.
    ``out`` must not exist yet (or be an empty directory).
    """
    m, n, seed, noise = _check_synthetic_args(examples, features, seed, noise)
    out = Path(out)
    if out.exists() and not (out.is_dir() and not any(out.iterdir())):
        raise FileExistsError(f"--out {str(out)!r} already exists; remove it or choose another")
    parent = out.parent if str(out.parent) else Path(".")
    if not parent.is_dir():
        raise OSError(f"cannot write {str(out)!r}: directory {str(parent)!r} does not exist")
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=parent))
    try:
        X = np.lib.format.open_memmap(tmp / "X.npy", "w+", np.float32, (m, n))
        y = np.lib.format.open_memmap(tmp / "y.npy", "w+", np.uint8, (m,))
        T = teacher(n, seed)
        for k, a, b in _blocks(m):
            X[a:b], y[a:b] = synthetic_block(k, b - a, n, seed, noise, T)
            if k % 4 == 3:  # written pages go to the page cache, out of our RSS
                release_pages(X)
        X.flush()
        y.flush()
        meta = {
            "examples": m,
            "features": n,
            "seed": seed,
            "noise": noise,
            "teacher": f"[{n}, {TEACHER_HIDDEN}, 1] tanh, W ~ N(0, 1/fan_in)",
            "positive_fraction": float(_mean(y)),
        }
        del X, y
        (tmp / "meta.json").write_text(json.dumps(meta, indent=1))
        umask = os.umask(0)
        os.umask(umask)
        os.chmod(tmp, 0o777 & ~umask)  # mkdtemp made it private
        if out.exists():
            out.rmdir()
        os.replace(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _mean(y) -> float:
    return sum(float(y[a:b].sum(dtype=np.int64)) for _, a, b in _blocks(len(y))) / len(y)


# -- memory-mapped data sets ------------------------------------------------------------
def open_dataset(path) -> tuple[np.memmap, np.memmap]:
    """(X, y) memory-mapped from ``path/X.npy`` and ``path/y.npy``, checked.

    X must be 2-D float32/float64 and y 1-D (or 2-D) with as many rows; the files must be
    complete (a truncated .npy is reported, not read past its end).
    """
    path = Path(path)
    arrays = []
    for name in ("X.npy", "y.npy"):
        f = path / name
        if not f.is_file():
            raise FileNotFoundError(f"data directory {str(path)!r} has no {name}")
        try:
            arrays.append(np.load(f, mmap_mode="r", allow_pickle=False))
        except (ValueError, OSError, EOFError) as exc:
            raise ValueError(f"{str(f)!r} is not a complete .npy file: {exc}") from exc
    X, y = arrays
    if X.ndim != 2 or X.dtype not in (np.float32, np.float64):
        raise ValueError(
            f"{str(path / 'X.npy')!r} must be a 2-D float32 or float64 array, got "
            f"shape {X.shape} dtype {X.dtype}"
        )
    if y.ndim not in (1, 2) or y.shape[0] != X.shape[0] or y.dtype.kind not in "biuf":
        raise ValueError(
            f"{str(path / 'y.npy')!r} must hold {X.shape[0]} numeric labels (one "
            f"per row of X), got shape {y.shape} dtype {y.dtype}"
        )
    return X, y


def check_unchanged(X) -> None:
    """Raise if the file behind a memory-mapped X changed size since it was opened.

    Called at the start of every epoch: reading a mapping past the end of a file that
    shrank would kill the process (SIGBUS), and a grown file means X is not what the
    training run was checked against.
    """
    name = getattr(X, "filename", None)
    if not isinstance(X, np.memmap) or name is None:
        return
    # Only a whole-file mapping (its base is the mmap) can be compared with the file size.
    expected = X.offset + X.nbytes if isinstance(X.base, mmap.mmap) else None
    try:
        size = os.path.getsize(name)
    except OSError as exc:
        raise ValueError(f"X: the memory-mapped file {name!r} is gone: {exc}") from exc
    if expected is not None and size != expected:
        raise ValueError(
            f"X: the memory-mapped file {name!r} changed size while training "
            f"(opened as {expected} bytes for shape {X.shape}, now {size} bytes); "
            f"reopen it"
        )


def release_pages(X) -> None:
    """Drop the pages of a memory-mapped X from this process (no-op for other arrays).

    Keeps resident memory bounded while an epoch walks a file larger than memory should
    hold; the pages stay in the OS page cache and are mapped again on the next read.
    """
    mm = getattr(X, "_mmap", None)
    if isinstance(mm, mmap.mmap) and hasattr(mm, "madvise"):
        mm.madvise(mmap.MADV_DONTNEED)
