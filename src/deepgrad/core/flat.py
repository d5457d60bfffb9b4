"""The seed's concatenation of all parameters into one vector theta."""

from __future__ import annotations

import math
import re

from deepgrad.core.backend import namespace

__all__ = ["flatten", "ordered_keys"]

_SEED_NAME = re.compile(r"^([Wb])(\d+)$")


def ordered_keys(params: dict) -> list[str]:
    """W1, b1, W2, b2, ... when the keys follow the seed's naming; else the dict's order."""
    keys = list(params)
    if keys and all(_SEED_NAME.match(k) for k in keys):
        return sorted(keys, key=lambda k: (int(k[1:]), k[0] == "b"))
    return keys


def flatten(params: dict):
    """Concatenate W^[1], b^[1], ..., W^[L], b^[L] into theta; return (theta, unflatten).

    ``unflatten(theta)`` rebuilds a dict with the original keys, shapes and order.

    Example
    -------
    >>> import numpy as np
    >>> theta, unflatten = flatten({"W1": np.ones((2, 3)), "b1": np.zeros(2)})
    >>> theta.shape, unflatten(theta)["W1"].shape
    ((8,), (2, 3))
    """
    if not isinstance(params, dict) or not params:
        raise TypeError(f"params must be a non-empty dict of arrays, got {type(params).__name__}")
    for k, v in params.items():
        if not hasattr(v, "shape") or not hasattr(v, "dtype"):
            raise TypeError(f"params[{k!r}] must be an array, got {type(v).__name__}")
    keys = ordered_keys(params)
    xp = namespace(*params.values())
    shapes = [tuple(params[k].shape) for k in keys]
    sizes = [math.prod(s) for s in shapes]
    theta = xp.concat([xp.reshape(params[k], (-1,)) for k in keys])

    def unflatten(vector):
        if not hasattr(vector, "shape"):
            raise TypeError(
                f"theta must be an array of shape ({sum(sizes)},), got {type(vector).__name__}"
            )
        vxp = namespace(vector)
        if tuple(vector.shape) != (sum(sizes),):
            raise ValueError(f"theta must have shape ({sum(sizes)},), got {tuple(vector.shape)}")
        out, start = {}, 0
        for k, shape, size in zip(keys, shapes, sizes, strict=True):
            out[k] = vxp.reshape(vector[start : start + size], shape)
            start += size
        return {k: out[k] for k in params}

    return theta, unflatten
