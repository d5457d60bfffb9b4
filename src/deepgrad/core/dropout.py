"""Inverted dropout with explicit masks.

A mask for hidden layer l has the shape of A^[l], (m, n^[l]), and holds 0 (dropped) or
1/keep_prob (kept): multiplying by it both drops units and rescales the survivors, so the
expected activation is unchanged and nothing needs rescaling at test time ("inverted").
Masks are plain arrays drawn from an explicit ``numpy.random.Generator``: the same masks
can be passed to any number of forward passes, which is what makes gradient checking
with dropout possible (the cost becomes a fixed function of theta again).
"""

from __future__ import annotations

import numpy as np

from deepgrad.core.backend import namespace

__all__ = ["draw_masks", "apply", "step_masks", "keep_threshold", "TRAINING_STREAM"]

# Training masks come from their own stream, apart from the shuffling's (seed, epoch).
TRAINING_STREAM = 1
KEEP_LEVELS = 2**16
UNITS_PER_DRAW = 4  # 16-bit draws per 64-bit raw number (little-endian order)


def draw_masks(
    rng: np.random.Generator,
    m: int,
    hidden_sizes,
    keep_prob: float,
    xp=None,
    dtype="float32",
    device=None,
) -> list:
    """One scaled mask per hidden layer, each of shape (m, n^[l]).

    Parameters
    ----------
    rng : numpy.random.Generator
    m : number of examples (rows) in the batch.
    hidden_sizes : sizes n^[1], ..., n^[L-1] of the hidden layers.
    keep_prob : probability of keeping a unit, in (0, 1].
    xp : array namespace of the result (NumPy when None).
    device : device of the result in ``xp`` (e.g. a torch.device); None: the default.

    Example
    -------
    >>> masks = draw_masks(np.random.default_rng(0), 4, [3], keep_prob=0.5)
    >>> sorted(set(masks[0].ravel().tolist())) in ([0.0, 2.0], [2.0], [0.0])
    True
    """
    masks = []
    for n in hidden_sizes:
        keep = rng.random((m, n)) < keep_prob
        mask = (keep / keep_prob).astype(dtype)
        if xp is not None:
            mask = xp.asarray(mask) if device is None else xp.asarray(mask, device=device)
        masks.append(mask)
    return masks


def apply(A, mask):
    """A * mask (mask already holds 0 or 1/keep_prob); ``mask=None`` means no dropout."""
    if mask is None:
        return A
    return A * namespace(A, mask).astype(mask, A.dtype)


def keep_threshold(keep_prob: float) -> int:
    """Units are kept where a uniform 16-bit draw is below this: with probability
    round(65536 keep_prob) / 65536, within 7.7e-6 of ``keep_prob`` (none is kept below
    keep_prob = 2^-17, where a float draw would keep one unit in 131,072 or fewer)."""
    return min(KEEP_LEVELS, round(keep_prob * KEEP_LEVELS))


def step_masks(
    seed: int, epoch: int, step: int, rows: int, hidden_sizes, keep_prob: float, dtype, part=None
):
    """The dropout masks of training step ``step`` of ``epoch`` (0-based): one per hidden
    layer, (rows, n^[l]), holding 0 or 1/keep_prob.

    A pure function of (seed, epoch, step), so every training engine, every row shard
    and every MPI rank takes the same masks, and a run resumed mid-epoch draws exactly
    the ones it would have drawn. Drawn from raw 16-bit random numbers, not one float
    per unit (several times faster; ``keep_threshold`` gives the resolution). Row i of
    a mask belongs to row i of the step's mini-batch. ``part=(a, b)``: only rows a..b-1
    of each mask, the same numbers as those rows of the whole masks (the generator jumps
    ahead to them), so row shards can draw their own part in parallel.
    """
    a, b = (0, rows) if part is None else part
    bits = np.random.PCG64(np.random.SeedSequence([seed, epoch, step, TRAINING_STREAM]))
    threshold, scale = keep_threshold(keep_prob), np.asarray(1.0 / keep_prob, dtype)
    masks, offset, position = [], 0, 0  # units before this layer; draws taken so far
    for n in (int(n) for n in hidden_sizes):
        first, count = offset + a * n, (b - a) * n
        draw, skip = divmod(first, UNITS_PER_DRAW)
        bits.advance((draw - position) % 2**128)  # may step back one draw: wraps around
        taken = -(-(skip + count) // UNITS_PER_DRAW)
        units = bits.random_raw(taken).view(np.uint16)[skip : skip + count]
        position = draw + taken
        if threshold == 0:  # nothing kept (and 1/keep_prob may overflow the dtype)
            masks.append(np.zeros((b - a, n), dtype))
        else:
            masks.append(np.multiply(units < threshold, scale, dtype=dtype).reshape(b - a, n))
        offset += rows * n
    return masks
