"""Hidden-layer activations: each entry keeps its forward and its derivative together.

``backward(dA, Z, A)`` returns dZ = dA * g'(Z); it receives both Z and A = g(Z) so that each
derivative uses whichever is cheaper and exact (ReLU looks at Z, tanh and sigmoid at A).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from deepgrad.core.backend import namespace

__all__ = ["Activation", "ACTIVATIONS", "get", "sigmoid"]

LEAKY_SLOPE = 0.01


class Activation(NamedTuple):
    """An activation g: ``forward(Z) -> A`` and ``backward(dA, Z, A) -> dZ``."""

    name: str
    forward: Callable[[Any], Any]
    backward: Callable[[Any, Any, Any], Any]
    family: str  # "relu", "tanh", "sigmoid" or "linear": picks the "auto" initializer


def sigmoid(Z):
    """Numerically stable logistic function: never evaluates exp of a positive number."""
    xp = namespace(Z)
    e = xp.exp(-xp.abs(Z))  # in (0, 1]: no overflow for Z = +-1000
    return xp.where(Z >= 0, 1.0 / (1.0 + e), e / (1.0 + e))


def _relu(Z):
    return namespace(Z).where(Z > 0, Z, 0.0)


def _relu_backward(dA, Z, A):
    # The derivative at exactly 0 is taken as 0 (the subgradient most libraries use).
    return namespace(dA).where(Z > 0, dA, 0.0)


def _leaky_relu(Z):
    return namespace(Z).where(Z > 0, Z, LEAKY_SLOPE * Z)


def _leaky_relu_backward(dA, Z, A):
    return namespace(dA).where(Z > 0, dA, LEAKY_SLOPE * dA)


def _tanh(Z):
    return namespace(Z).tanh(Z)


def _tanh_backward(dA, Z, A):
    return dA * (1.0 - A * A)  # tanh' = 1 - tanh^2


def _sigmoid_backward(dA, Z, A):
    return dA * A * (1.0 - A)  # sigma' = sigma (1 - sigma)


def _identity(Z):
    return Z


def _identity_backward(dA, Z, A):
    return dA


ACTIVATIONS: dict[str, Activation] = {
    a.name: a
    for a in (
        Activation("relu", _relu, _relu_backward, "relu"),
        Activation("leaky_relu", _leaky_relu, _leaky_relu_backward, "relu"),
        Activation("tanh", _tanh, _tanh_backward, "tanh"),
        Activation("sigmoid", sigmoid, _sigmoid_backward, "sigmoid"),
        Activation("linear", _identity, _identity_backward, "linear"),
    )
}


def get(name: str) -> Activation:
    """Look up an activation by name; ``ValueError`` lists the valid names."""
    if not isinstance(name, str) or name not in ACTIVATIONS:
        raise ValueError(f"hidden_activation must be one of {sorted(ACTIVATIONS)}, got {name!r}")
    return ACTIVATIONS[name]
