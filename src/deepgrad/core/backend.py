"""Array-namespace helpers: the math takes its namespace from its inputs.

All numeric code in deepgrad calls ``namespace(*arrays)`` and then uses only functions of
the Python array API standard on the returned namespace, so the same forward, backward and
update code runs on NumPy arrays, ``array_api_strict`` arrays and PyTorch tensors.
"""

from __future__ import annotations

from typing import Any

import array_api_compat
import numpy as np

__all__ = ["namespace", "is_numpy", "to_numpy", "scalar"]


_NUMPY = array_api_compat.array_namespace(np.empty(0))


def namespace(*arrays: Any):
    """Return the array API namespace shared by ``arrays`` (NumPy when given none)."""
    arrays = tuple(a for a in arrays if a is not None)
    if all(type(a) is np.ndarray for a in arrays):
        return _NUMPY  # the common case, without array_namespace's ~50 us of inspection
    return array_api_compat.array_namespace(*arrays)


def is_numpy(x: Any) -> bool:
    """True for NumPy arrays (including memory maps)."""
    return isinstance(x, np.ndarray)


def to_numpy(x: Any) -> np.ndarray:
    """Copy any array (NumPy, array_api_strict, torch on any device) to a NumPy array."""
    if isinstance(x, np.ndarray):
        return x
    if array_api_compat.is_torch_array(x):
        return x.detach().cpu().numpy()
    return np.asarray(x)


def scalar(x: Any) -> float:
    """A 0-d array (any namespace) as a Python float."""
    return x if isinstance(x, float) else float(to_numpy(x))
