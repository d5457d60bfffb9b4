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

from ._backend import namespace

__all__ = ["draw_masks", "apply"]


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
