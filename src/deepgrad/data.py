"""Mini-batches: shuffled index gathers, a pure function of (seed, epoch).

The data set is never copied or permuted as a whole. Each epoch draws a permutation of
the row indices from ``numpy.random.default_rng([seed, epoch])`` and every mini-batch
gathers its rows, ``X[idx]``, when it is used. That costs one gather of batch_size rows
per step (the same bytes the step reads anyway) and 8 bytes per example for the
permutation, and works unchanged on memory-mapped arrays.
"""

from __future__ import annotations

from collections.abc import Iterator

import numpy as np

__all__ = ["epoch_permutation", "batch_slices", "batch_indices", "n_batches"]


def epoch_permutation(m: int, seed: int, epoch: int) -> np.ndarray:
    """The order of the m examples in ``epoch``: depends only on (seed, epoch)."""
    return np.random.default_rng([seed, epoch]).permutation(m)


def n_batches(m: int, batch_size: int) -> int:
    """ceil(m / batch_size): the last, partial batch is kept."""
    return -(-m // batch_size)


def batch_slices(m: int, batch_size: int) -> Iterator[slice]:
    """Consecutive slices of size ``batch_size``; the last one may be shorter."""
    for start in range(0, m, batch_size):
        yield slice(start, min(start + batch_size, m))


def batch_indices(m: int, batch_size: int, seed: int, epoch: int, shuffle: bool = True):
    """Index arrays of each mini-batch of ``epoch``.

    Sorted within a batch: the batch holds the same examples either way, and ascending
    reads are much faster on memory-mapped files.
    """
    order = epoch_permutation(m, seed, epoch) if shuffle else np.arange(m)
    for s in batch_slices(m, batch_size):
        yield np.sort(order[s])
