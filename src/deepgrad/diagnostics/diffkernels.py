"""Compiled difference identities (numba) for the NumPy path of ``diffprop``.

One vectorized pass over a batch of changes instead of NumPy's six (two reductions to
pick the form, four arithmetic) and their scratch arrays: the hidden layers' differences
are most of what the exact method adds to the products it shares with the plain one.
The formulas, and the order of their operations, are ``diffprop._tanh_diff``'s. When a
batch needs more than the first-order form, the form is chosen per element instead of
per batch (each is exact where it is taken). So a float64 batch gives NumPy's numbers
whenever NumPy would take one form for all of it; float32 batches may differ in the
last bit (numba evaluates the float64 constants in float64), not in precision.
Compiled on first use and cached on disk (``cache=True``); ``nogil`` lets the check's
thread pool run batches in parallel.

Importing this module needs numba; ``diffprop`` imports it only when it is installed and
``DEEPGRAD_DIFFPROP_NUMBA`` is not "0".
"""

from __future__ import annotations

import math

from numba import njit

__all__ = ["tanh_difference"]


@njit(cache=True, nogil=True)
def tanh_difference(D, t, q, s_pos, s_neg, unit, small, out):
    """out (K, m, n) <- tanh(z + D) - tanh(z) for every k; D (K, m, n) is left as it is.

    t = tanh z, q = sech^2 z, s_pos = sigmoid(2z), s_neg = sigmoid(-2z): (m, n), the
    ``diffprop._tanh_pre`` quantities. unit, small: the dtype's ``diffprop`` thresholds
    (d^2 below unit: sinh d = d and cosh d = 1; |d| up to small: their series).
    """
    if not _first_order(D, t, q, unit, out):
        _by_element(D, t, q, s_pos, s_neg, unit, small, out)


@njit(cache=True, nogil=True)
def _first_order(D, t, q, unit, out):
    """out <- d q / (1 + t d), the form for d^2 below ``unit``; whether every d is.

    No branch in the loop, so it is vectorized: 1.5x faster than ``_by_element``
    (measured), and the usual case (the check's steps are ~1e-9).
    """
    K, m, n = D.shape
    biggest = 0.0
    for k in range(K):
        for i in range(m):
            for j in range(n):
                d = D[k, i, j]
                biggest = max(biggest, d * d)
                out[k, i, j] = (d * q[i, j]) / (t[i, j] * d + 1.0)
    return biggest < unit


@njit(cache=True, nogil=True)
def _by_element(D, t, q, s_pos, s_neg, unit, small, out):
    K, m, n = D.shape
    for k in range(K):
        for i in range(m):
            for j in range(n):
                d = D[k, i, j]
                if d * d < unit:
                    out[k, i, j] = (d * q[i, j]) / (t[i, j] * d + 1.0)
                elif abs(d) <= small:
                    d2 = d * d
                    s = d2 * (1.0 / 6.0) * d + d  # sinh d
                    den = t[i, j] * s + 1.0 + d2 * 0.5  # cosh d + tanh(z) sinh d
                    out[k, i, j] = (s * q[i, j]) / den
                else:
                    e = math.exp(d)
                    out[k, i, j] = math.sinh(d) * q[i, j] / (e * s_pos[i, j] + s_neg[i, j] / e)
