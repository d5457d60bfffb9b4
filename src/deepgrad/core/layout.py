"""The engines' flat layout of theta: each layer's [W | b] as one block of one vector.

Layer l's block is the (n^[l], n^[l-1] + 1) matrix [W^[l] | b^[l]], row-major, and the
blocks follow each other, layer 1 first. With a column of ones appended to a layer's
input, one matrix product gives Z = [A | 1] [W | b]^T and one gives the gradient
[dW | db] = dZ^T [A | 1]. Every training engine (NumPy shards, torch, MPI) keeps its
parameters, gradients and optimizer state in this layout. The public ``flatten`` keeps
the course's theta order W1, b1, ..., WL, bL instead (``deepgrad.core.flat``).

Only slicing and ``reshape`` of a contiguous vector are used, so the views work the same
on NumPy arrays and torch tensors (on any device).
"""

from __future__ import annotations

import math

import numpy as np

__all__ = ["Layout"]


def _copy(x):
    """A contiguous copy that owns its memory (NumPy ``copy``, torch ``clone``)."""
    if isinstance(x, np.ndarray):
        return x.copy()
    y = x.clone()
    return y if y.is_contiguous() else y.contiguous()


class Layout:
    """Every layer's [W | b] as one (n^[l], n^[l-1] + 1) block of one flat vector."""

    def __init__(self, sizes):
        self.shapes = [(sizes[l], sizes[l - 1] + 1) for l in range(1, len(sizes))]
        self.ends = np.cumsum([math.prod(s) for s in self.shapes]).tolist()
        self.starts = [0, *self.ends[:-1]]
        self.size = self.ends[-1]

    def views(self, flat) -> list:
        """[W | b] of each layer: (n^[l], n^[l-1] + 1) views into ``flat``."""
        return [
            flat[a:e].reshape(s)
            for a, e, s in zip(self.starts, self.ends, self.shapes, strict=True)
        ]

    def weight_mask(self, flat):
        """Fill ``flat`` with 1 on the weights and 0 on the biases (the L2 term's mask)."""
        for Wb in self.views(flat):
            Wb[:, :-1] = 1
            Wb[:, -1] = 0
        return flat

    def pack_into(self, flat, params: dict):
        """Write the dict {W1, b1, ...} into ``flat`` (an array of ``size`` entries)."""
        for l, Wb in enumerate(self.views(flat), start=1):
            Wb[:, :-1] = params[f"W{l}"]
            Wb[:, -1] = params[f"b{l}"]
        return flat

    def unpack(self, flat) -> dict:
        """A fresh dict of contiguous copies: what callers get can never change under them."""
        out = {}
        for l, Wb in enumerate(self.views(flat), start=1):
            out[f"W{l}"] = _copy(Wb[:, :-1])
            out[f"b{l}"] = _copy(Wb[:, -1])
        return out

    def weights_sq(self, flat) -> float:
        """sum ||W^[l]||^2 over layers (biases excluded); non-finite if any entry is."""
        biases = [Wb[:, -1] for Wb in self.views(flat)]
        return float(flat.dot(flat)) - sum(float(b.dot(b)) for b in biases)
