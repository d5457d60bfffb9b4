"""Forward propagation, the seed's cost, backward propagation, and the ``Network`` façade.

Shapes (examples are rows; the seed's column layout transposed):

- X = A^[0]: (m, n^[0]);  Z^[l], A^[l]: (m, n^[l])
- W^[l]: (n^[l], n^[l-1]), exactly the seed's shape;  b^[l]: (n^[l],)
- Z^[l] = A^[l-1] @ W^[l].T + b^[l];  A^[l] = g^[l](Z^[l])

Cost (the seed's, section 3):

    J = (1/m) sum_i L(yhat_i, y_i) + lambda / (2 m_reg) sum_l ||W^[l]||_F^2

with m_reg = m, the examples in the batch (the seed's choice, default), or the size of the
whole training set (``l2_normalization="dataset"``, so the penalty does not grow when the
batch shrinks). Biases are not penalized.

Backward (canonical link, see losses.py):

    dZ^[L] = (A^[L] - Y) / m
    dW^[l] = dZ^[l].T @ A^[l-1] + (lambda / m_reg) W^[l];   db^[l] = sum_i dZ^[l]_i
    dA^[l-1] = dZ^[l] @ W^[l];   dZ^[l-1] = dA^[l-1] * mask^[l-1] * g'(Z^[l-1])
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np

from deepgrad.core import activations, dropout, initializers, losses
from deepgrad.core.backend import namespace

__all__ = [
    "Spec",
    "Cache",
    "init_params",
    "forward",
    "cost_from_output",
    "cost",
    "backward",
    "cost_and_gradients",
    "l2_penalty",
    "param_names",
]


@dataclass(frozen=True)
class Spec:
    """The architecture: layer sizes [n^[0], ..., n^[L]], hidden activation, output."""

    layer_sizes: tuple[int, ...]
    hidden_activation: str = "relu"
    output: str = "sigmoid"

    @property
    def L(self) -> int:
        """Number of layers with parameters (hidden layers + output layer)."""
        return len(self.layer_sizes) - 1

    @property
    def hidden_sizes(self) -> tuple[int, ...]:
        return self.layer_sizes[1:-1]

    def shapes(self) -> dict[str, tuple[int, ...]]:
        out = {}
        for l in range(1, self.L + 1):
            out[f"W{l}"] = (self.layer_sizes[l], self.layer_sizes[l - 1])
            out[f"b{l}"] = (self.layer_sizes[l],)
        return out


class Cache(NamedTuple):
    """What backward needs, per layer l = 1..L (index l-1).

    inputs[l-1] = A^[l-1] as fed to layer l (after dropout); Z[l-1] = Z^[l];
    A[l-1] = g(Z^[l]) before dropout; masks[l-1] = dropout mask of layer l (None = none).
    """

    inputs: list
    Z: list
    A: list
    masks: list


def param_names(L: int) -> list[str]:
    """["W1", "b1", ..., "WL", "bL"]: the seed's order of the concatenated theta."""
    return [n for l in range(1, L + 1) for n in (f"W{l}", f"b{l}")]


def memory_bytes() -> int | None:
    """This machine's physical memory in bytes (None where the OS does not say)."""
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (AttributeError, ValueError, OSError):
        return None


def check_allocation(what: str, nbytes: int, available: int | None = None) -> None:
    """ValueError before allocating ``nbytes`` for ``what`` when they exceed the memory."""
    available = memory_bytes() if available is None else available
    if available is not None and nbytes > available:
        raise ValueError(
            f"{what} need {nbytes} bytes ({nbytes / 2**30:.1f} GiB), more than this machine's "
            f"{available} bytes of memory ({available / 2**30:.1f} GiB); use smaller layers"
        )


def init_params(spec: Spec, init: str | Any, rng: np.random.Generator, dtype="float32"):
    """Initial parameters: W^[l] from the initializer, b^[l] = 0.

    ``init`` is a name (see ``initializers.names()``) or a callable ``(shape, rng, dtype)``.
    "auto" picks per layer: by the hidden activation for hidden layers, by the output for
    the last.
    """
    n = sum(int(np.prod(s)) for s in spec.shapes().values())
    check_allocation(
        f"the parameters of layer_sizes {list(spec.layer_sizes)} ({n} numbers as {dtype})",
        n * np.dtype(dtype).itemsize,
    )
    params = {}
    for l in range(1, spec.L + 1):
        shape = (spec.layer_sizes[l], spec.layer_sizes[l - 1])
        if callable(init):
            W = initializers.checked_output(init, shape, rng, dtype)
        else:
            act = spec.hidden_activation if l < spec.L else spec.output
            W = initializers.get(init, activation=act)(shape, rng, dtype)
        params[f"W{l}"] = np.ascontiguousarray(W, dtype=dtype)
        params[f"b{l}"] = np.zeros(shape[0], dtype=dtype)
    return params


def forward(params: dict, X, spec: Spec, masks=None):
    """Forward propagation. Returns (Z^[L], Cache); A^[L] = output activation of Z^[L].

    ``masks`` is None (no dropout) or a list of L-1 dropout masks for the hidden layers
    (see ``dropout.draw_masks``); the output layer is never dropped.
    """
    g = activations.get(spec.hidden_activation).forward
    inputs, Zs, As, ms = [], [], [], []
    A = X
    for l in range(1, spec.L + 1):
        inputs.append(A)
        Z = A @ params[f"W{l}"].T + params[f"b{l}"]
        Zs.append(Z)
        if l == spec.L:
            break
        A_act = g(Z)
        mask = None if masks is None else masks[l - 1]
        As.append(A_act)
        ms.append(mask)
        A = dropout.apply(A_act, mask)
    return Zs[-1], Cache(inputs, Zs, As, ms)


def l2_penalty(params: dict, L: int, l2: float, m_reg: int):
    """lambda / (2 m_reg) * sum_l ||W^[l]||_F^2 (0 when lambda = 0)."""
    if l2 == 0:
        return 0.0
    xp = namespace(params["W1"])
    total = sum(xp.sum(params[f"W{l}"] * params[f"W{l}"]) for l in range(1, L + 1))
    return l2 / (2.0 * m_reg) * total


def cost_from_output(ZL, Y, params: dict, spec: Spec, l2: float = 0.0, m_reg: int | None = None):
    """J = (1/m) sum_i L(yhat_i, y_i) + lambda/(2 m_reg) sum_l ||W^[l]||_F^2, a 0-d array."""
    m = ZL.shape[0]
    data = losses.get(spec.output).loss_sum(ZL, Y) / m
    return data + l2_penalty(params, spec.L, l2, m if m_reg is None else m_reg)


def cost(params: dict, X, Y, spec: Spec, l2: float = 0.0, m_reg: int | None = None, masks=None):
    """The seed's regularized cost on (X, Y); Y already encoded as (m, n_out)."""
    ZL, _ = forward(params, X, spec, masks)
    return cost_from_output(ZL, Y, params, spec, l2, m_reg)


def backward(
    params: dict,
    cache: Cache,
    Y,
    spec: Spec,
    l2: float = 0.0,
    m_reg: int | None = None,
    dA_out: list | None = None,
):
    """Gradients of J with respect to every parameter: a dict with the keys of ``params``.

    ``dA_out``: a list of L-1 slots that, when given, receives dJ/dA^[l] of every hidden
    layer l (before its dropout mask), for diagnostics.
    """
    act = activations.get(spec.hidden_activation)
    out = losses.get(spec.output)
    ZL = cache.Z[-1]
    m = ZL.shape[0]
    reg = l2 / (m if m_reg is None else m_reg)
    dZ = (out.activation(ZL) - Y) / m  # canonical link: dJ/dZ^[L] = (A^[L] - Y) / m
    xp = namespace(dZ)
    grads = {}
    for l in range(spec.L, 0, -1):
        W = params[f"W{l}"]
        grads[f"W{l}"] = dZ.T @ cache.inputs[l - 1] + (reg * W if reg else 0.0)
        grads[f"b{l}"] = xp.sum(dZ, axis=0)
        if l > 1:
            dA = dZ @ W
            if dA_out is not None:
                dA_out[l - 2] = dA
            dA = dropout.apply(dA, cache.masks[l - 2])  # dropped units get no gradient
            dZ = act.backward(dA, cache.Z[l - 2], cache.A[l - 2])
    return {k: grads[k] for k in param_names(spec.L)}


def cost_and_gradients(
    params: dict, X, Y, spec: Spec, l2: float = 0.0, m_reg: int | None = None, masks=None
):
    """(J, grads) from one forward and one backward pass."""
    ZL, cache = forward(params, X, spec, masks)
    J = cost_from_output(ZL, Y, params, spec, l2, m_reg)
    return J, backward(params, cache, Y, spec, l2, m_reg)
