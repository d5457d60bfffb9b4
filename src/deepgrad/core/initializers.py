"""Weight initializers: one general ``variance_scaling`` and named one-liners on it.

Every initializer is a callable ``init(shape, rng, dtype) -> numpy.ndarray`` with
``shape = (fan_out, fan_in) = (n^[l], n^[l-1])``, the seed's shape of W^[l].

The variances (n = fan_in = n^[l-1], n' = fan_out = n^[l]):

=================  ======================  ===========================================
name               Var(W)                  reason
=================  ======================  ===========================================
lecun_*            1 / n                   keeps Var(Z) = Var(A_prev) for linear/SELU
he_*               2 / n                   ReLU zeroes half the signal: double it
xavier_*           2 / (n + n')            tanh/sigmoid: balance forward and backward
random             1e-4 (N(0,1) * 0.01)    the course's small random start (vanishes)
standard_normal    1                       N(0, 1): explodes in deep ReLU nets
zeros              0                       breaks nothing but symmetry (units stay equal)
orthogonal         gain^2 / n (rows/cols   orthonormal rows or columns, times gain
                   orthonormal)
=================  ======================  ===========================================

Example
-------
>>> import numpy as np
>>> from deepgrad import initializers
>>> W = initializers.get("he_normal")((256, 128), np.random.default_rng(0), "float64")
>>> W.shape, round(float(W.var() * 128), 1)
((256, 128), 2.0)
"""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np

__all__ = [
    "Initializer",
    "checked_output",
    "variance_scaling",
    "lecun_normal",
    "lecun_uniform",
    "he_normal",
    "he_uniform",
    "xavier_normal",
    "xavier_uniform",
    "zeros",
    "random",
    "standard_normal",
    "orthogonal",
    "get",
    "names",
    "checked_output",
    "predicted_variance",
]

Initializer = Callable[[tuple[int, int], np.random.Generator, object], np.ndarray]

MODES = ("fan_in", "fan_out", "fan_avg")
DISTRIBUTIONS = ("normal", "truncated_normal", "uniform")

# Std of a standard normal truncated to [-2, 2]: dividing by it restores unit variance
# after truncation (the constant JAX and Keras use).
_TRUNCATED_STD = 0.87962566103423978


def _fans(shape) -> tuple[int, int]:
    fan_out, fan_in = shape
    return fan_in, fan_out


def _check_shape(shape) -> tuple[int, int]:
    if (
        not isinstance(shape, tuple | list)
        or len(shape) != 2
        or not all(isinstance(s, int | np.integer) and s >= 1 for s in shape)
    ):
        raise ValueError(f"shape must be (fan_out, fan_in), two positive ints, got {shape!r}")
    return int(shape[0]), int(shape[1])


def variance_scaling(scale: float, mode: str = "fan_in", distribution: str = "normal"):
    """General initializer with Var(W) = scale / n, n chosen by ``mode``.

    Parameters
    ----------
    scale : float > 0
        Target variance times n.
    mode : {"fan_in", "fan_out", "fan_avg"}
        n = fan_in, fan_out or (fan_in + fan_out) / 2.
    distribution : {"normal", "truncated_normal", "uniform"}
        Normal; normal truncated at two standard deviations with its std corrected so the
        variance is still ``scale / n``; or uniform on [-sqrt(3 scale/n), +sqrt(3 scale/n)].

    Returns
    -------
    callable ``(shape, rng, dtype) -> ndarray`` of shape ``(fan_out, fan_in)``.
    """
    if not isinstance(scale, int | float) or not math.isfinite(scale) or scale <= 0:
        raise ValueError(f"scale must be a finite number > 0, got {scale!r}")
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    if distribution not in DISTRIBUTIONS:
        raise ValueError(f"distribution must be one of {list(DISTRIBUTIONS)}, got {distribution!r}")

    def init(shape, rng: np.random.Generator, dtype="float64") -> np.ndarray:
        shape = _check_shape(shape)
        fan_in, fan_out = _fans(shape)
        n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
        variance = scale / n
        if distribution == "normal":
            W = rng.standard_normal(shape) * math.sqrt(variance)
        elif distribution == "truncated_normal":
            std = math.sqrt(variance) / _TRUNCATED_STD
            W = _truncated_standard_normal(rng, shape) * std
        else:
            limit = math.sqrt(3.0 * variance)  # Var(U(-a, a)) = a^2 / 3
            W = rng.uniform(-limit, limit, shape)
        return W.astype(dtype, copy=False)

    init.variance_rule = (scale, mode)  # read by predicted_variance
    return init


def _truncated_standard_normal(rng: np.random.Generator, shape) -> np.ndarray:
    """Standard normal samples restricted to [-2, 2] by redrawing the ones outside."""
    out = rng.standard_normal(shape)
    bad = np.abs(out) > 2.0
    while bad.any():
        out[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(out) > 2.0
    return out


lecun_normal = variance_scaling(1.0, "fan_in", "normal")
lecun_uniform = variance_scaling(1.0, "fan_in", "uniform")
he_normal = variance_scaling(2.0, "fan_in", "normal")
he_uniform = variance_scaling(2.0, "fan_in", "uniform")
# 2 / (n + n') = 1 / ((n + n') / 2): scale 1 over the average fan.
xavier_normal = variance_scaling(1.0, "fan_avg", "normal")
xavier_uniform = variance_scaling(1.0, "fan_avg", "uniform")


def zeros(shape, rng=None, dtype="float64") -> np.ndarray:
    """All zeros: every unit of a layer computes the same thing and gets the same update."""
    return np.zeros(_check_shape(shape), dtype=dtype)


def random(shape, rng: np.random.Generator, dtype="float64") -> np.ndarray:
    """The course's ``np.random.randn(n, n_prev) * 0.01``: Var(W) = 1e-4 whatever the fan."""
    return (rng.standard_normal(_check_shape(shape)) * 0.01).astype(dtype, copy=False)


def standard_normal(shape, rng: np.random.Generator, dtype="float64") -> np.ndarray:
    """N(0, 1) weights, Var(W) = 1: the unscaled start that explodes with depth."""
    return rng.standard_normal(_check_shape(shape)).astype(dtype, copy=False)


def orthogonal(gain: float = 1.0):
    """Orthogonal initializer (Saxe et al. 2014): orthonormal rows or columns times ``gain``.

    The Q factor of a Gaussian matrix, with the signs of R's diagonal folded in so that Q is
    uniformly (Haar) distributed. Use gain sqrt(2) for ReLU.
    """
    if not isinstance(gain, int | float) or not math.isfinite(gain) or gain <= 0:
        raise ValueError(f"gain must be a finite number > 0, got {gain!r}")

    def init(shape, rng: np.random.Generator, dtype="float64") -> np.ndarray:
        fan_out, fan_in = _check_shape(shape)
        A = rng.standard_normal((max(fan_out, fan_in), min(fan_out, fan_in)))
        Q, R = np.linalg.qr(A)
        Q *= np.sign(np.diag(R))
        W = Q if fan_out >= fan_in else Q.T
        return (gain * W).astype(dtype, copy=False)

    init.variance_rule = ("orthogonal", gain)
    return init


_REGISTRY: dict[str, Initializer] = {
    "lecun_normal": lecun_normal,
    "lecun_uniform": lecun_uniform,
    "he_normal": he_normal,
    "he_uniform": he_uniform,
    "xavier_normal": xavier_normal,
    "xavier_uniform": xavier_uniform,
    "glorot_normal": xavier_normal,
    "glorot_uniform": xavier_uniform,
    "zeros": zeros,
    "random": random,
    "standard_normal": standard_normal,
    "orthogonal": orthogonal(1.0),
}

# "auto" picks by activation family: He for ReLU-like, Xavier for tanh/sigmoid, LeCun for linear.
_AUTO = {
    "relu": "he_normal",
    "tanh": "xavier_normal",
    "sigmoid": "xavier_normal",
    "linear": "lecun_normal",
    "softmax": "xavier_normal",
}


def checked_output(init, shape: tuple[int, int], rng, dtype) -> np.ndarray:
    """``init(shape, rng, dtype)`` of a user's callable, checked: an array of ``shape`` of
    finite real numbers (anything else is a ValueError naming what came back)."""
    W = init(shape, rng, dtype)
    name = getattr(init, "__name__", repr(init))
    arr = np.asarray(W) if isinstance(W, np.ndarray | list | tuple) else None
    if arr is None or arr.shape != tuple(shape) or arr.dtype.kind not in "biuf":
        got = f"shape {arr.shape} dtype {arr.dtype}" if arr is not None else type(W).__name__
        raise ValueError(
            f"init {name} must return a real array of shape {tuple(shape)} (fan_out, fan_in), "
            f"got {got}"
        )
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"init {name} returned NaN or inf for a weight matrix of shape {shape}")
    return arr


def names() -> list[str]:
    """All names ``get`` accepts."""
    return sorted([*_REGISTRY, "auto"])


def get(name: str, activation: str = "relu") -> Initializer:
    """Return the initializer ``(shape, rng, dtype) -> array`` called ``name``.

    ``"auto"`` resolves by ``activation`` (an activation or output name): He for the ReLU
    family, Xavier for tanh, sigmoid and softmax, LeCun for linear.
    """
    if name == "auto":
        from deepgrad.core import activations

        family = activation if activation in _AUTO else activations.get(activation).family
        return _REGISTRY[_AUTO[family]]
    if not isinstance(name, str) or name not in _REGISTRY:
        raise ValueError(f"init must be one of {names()}, got {name!r}")
    return _REGISTRY[name]


def predicted_variance(init: Initializer, shape) -> float | None:
    """Var(W) the initializer aims for at ``shape`` (None when it has no fixed rule)."""
    fan_out, fan_in = _check_shape(shape)
    if init is zeros:
        return 0.0
    if init is random:
        return 1e-4
    if init is standard_normal:
        return 1.0
    rule = getattr(init, "variance_rule", None)
    if rule is None:
        return None
    if rule[0] == "orthogonal":
        # Orthonormal rows (fan_out <= fan_in) have entries of mean square 1 / fan_in.
        return rule[1] ** 2 / max(fan_in, fan_out)
    scale, mode = rule
    n = {"fan_in": fan_in, "fan_out": fan_out, "fan_avg": (fan_in + fan_out) / 2}[mode]
    return scale / n
