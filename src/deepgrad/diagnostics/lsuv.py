"""LSUV: layer-sequential unit-variance initialization (Mishkin & Matas, ICLR 2016).

A data-driven initializer. Start from orthonormal weights (``initializers.orthogonal``), then,
layer by layer from the first, forward one batch to layer l and rescale W^[l] by
1 / sqrt(Var(Z^[l])) until the layer's output variance Var(Z^[l]) is within ``tol`` of 1
(at most ``max_iter`` rescalings per layer). "Output" is the layer's linear output Z^[l],
as in the paper (the blob after the fully-connected layer, before the nonlinearity).

With zero biases Z^[l] is linear in W^[l], so one rescaling lands on 1 exactly; the loop
matters when biases are not zero (the paper's general case). No variance rule is assumed,
so LSUV adapts to any activation, depth or input scale: the data says what the scale is.

Example
-------
>>> import numpy as np, deepgrad as dg
>>> X = np.random.default_rng(0).standard_normal((500, 32))
>>> net = dg.Network([32, 64, 64, 10], "relu", "softmax", seed=0)
>>> net2, info = dg.lsuv(net, X)
>>> bool(np.all(np.abs(np.array(info.variances) - 1) <= 0.1))
True
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from deepgrad.core import activations, initializers
from deepgrad.core.backend import namespace, scalar
from deepgrad.core.checks import check_float, check_int
from deepgrad.model.net import Network

__all__ = ["lsuv", "LSUVInfo"]


class LSUVInfo(NamedTuple):
    """Per layer l = 1..L (index l-1): Var(Z^[l]) on the batch after LSUV, and how many
    rescalings it took (0 when the orthonormal start was already within ``tol``)."""

    variances: tuple[float, ...]
    iterations: tuple[int, ...]


def _layer_variance(A_prev, W, b) -> tuple[object, float]:
    Z = A_prev @ W.T + b
    xp = namespace(Z)
    return Z, scalar(xp.var(xp.astype(Z, xp.float64)))


def _scale_layer(A_prev, W, b, l: int, tol: float, max_iter: int):
    """Rescale W until |Var(Z) - 1| <= tol; returns (Z, W, variance, iterations)."""
    Z, var = _layer_variance(A_prev, W, b)
    it = 0
    while abs(var - 1.0) > tol and it < max_iter:
        if not math.isfinite(var) or var == 0:
            raise ValueError(
                f"LSUV: layer {l}'s output has variance {var!r} on the batch, so it cannot be "
                f"rescaled to 1; give a batch with varied, finite inputs"
            )
        W = W / math.sqrt(var)
        Z, var = _layer_variance(A_prev, W, b)
        it += 1
    return Z, W, var, it


def lsuv(net, X, *, tol: float = 0.1, max_iter: int = 10, seed: int = 0):
    """LSUV-initialize a copy of ``net`` on the batch X; ``net`` is not changed.

    Parameters
    ----------
    net : Network (its layer sizes, activation and dtype are used; its weights are replaced).
    X : (m, n^[0]) batch, m >= 2 (the paper uses one mini-batch of the training data).
    tol : accept Var(Z^[l]) within ``tol`` of 1.
    max_iter : most rescalings per layer.
    seed : seeds the orthonormal start.

    Returns
    -------
    (Network, LSUVInfo) : the new network (``init == "lsuv"``) and per-layer variances.
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a deepgrad Network, got {type(net).__name__}")
    tol = check_float("tol", tol, 0.0, low_open=True)
    max_iter = check_int("max_iter", max_iter, 1)
    seed = check_int("seed", seed, 0)
    A = net.validate_inputs(X)
    if A.shape[0] < 2:
        raise ValueError(f"X needs at least 2 rows to measure a variance, got {A.shape[0]}")
    new = net.copy()
    rng = np.random.default_rng(seed)
    ortho = initializers.orthogonal(1.0)
    g = activations.get(net.spec.hidden_activation).forward
    xp = namespace(A)
    variances, iters = [], []
    for l in range(1, net.spec.L + 1):
        W0 = ortho(tuple(new.params[f"W{l}"].shape), rng, net.dtype)
        W0 = xp.asarray(W0) if xp is not namespace(W0) else W0
        Z, W, var, it = _scale_layer(A, W0, new.params[f"b{l}"], l, tol, max_iter)
        new.params[f"W{l}"] = W
        variances.append(var)
        iters.append(it)
        A = g(Z)
    new.init = "lsuv"
    return new, LSUVInfo(tuple(variances), tuple(iters))
