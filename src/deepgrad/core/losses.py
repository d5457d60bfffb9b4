"""Output layers paired with their losses.

Each pair uses the canonical link, so the gradient of the mean loss with respect to the
output pre-activation Z^[L] is the same simple expression for all three:

    dJ/dZ^[L] = (A^[L] - Y) / m

which is why the output activation and its loss live together here and are never
differentiated separately (that would divide by sigma'(Z), which underflows to 0).
Losses are computed from the logits Z^[L], never from log(A), so logits of +-1000 give
finite costs.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

from deepgrad.core.activations import sigmoid
from deepgrad.core.backend import namespace

__all__ = ["Output", "OUTPUTS", "get"]


class Output(NamedTuple):
    """An output activation with its loss.

    ``activation(Z) -> A``; ``loss_sum(Z, Y) -> sum over examples and outputs of L``.
    Y is the encoded target, shape (m, n_out).
    """

    name: str
    activation: Callable[[Any], Any]
    loss_sum: Callable[[Any, Any], Any]


def _bce_sum(Z, Y):
    # -[y log s(z) + (1-y) log(1-s(z))] = max(z, 0) - z y + log(1 + exp(-|z|))
    xp = namespace(Z, Y)
    return xp.sum(xp.where(Z > 0, Z, 0.0) - Z * Y + xp.log1p(xp.exp(-xp.abs(Z))))


def _log_softmax(Z):
    xp = namespace(Z)
    shifted = Z - xp.max(Z, axis=1, keepdims=True)  # largest logit becomes 0: no overflow
    return shifted - xp.log(xp.sum(xp.exp(shifted), axis=1, keepdims=True))


def _softmax(Z):
    return namespace(Z).exp(_log_softmax(Z))


def _cce_sum(Z, Y):
    xp = namespace(Z, Y)
    return -xp.sum(Y * _log_softmax(Z))


def _identity(Z):
    return Z


def _mse_sum(Z, Y):
    # Half the squared error, as in the course and scikit-learn's MLP: its gradient is
    # exactly A - Y, the same canonical form as the two cross-entropies.
    xp = namespace(Z, Y)
    D = Z - Y
    return 0.5 * xp.sum(D * D)


OUTPUTS: dict[str, Output] = {
    o.name: o
    for o in (
        Output("sigmoid", sigmoid, _bce_sum),  # binary cross-entropy
        Output("softmax", _softmax, _cce_sum),  # categorical cross-entropy
        Output("linear", _identity, _mse_sum),  # half mean squared error
    )
}


def get(name: str) -> Output:
    """Look up an output/loss pair by the output's name."""
    if not isinstance(name, str) or name not in OUTPUTS:
        raise ValueError(f"output must be one of {sorted(OUTPUTS)}, got {name!r}")
    return OUTPUTS[name]
