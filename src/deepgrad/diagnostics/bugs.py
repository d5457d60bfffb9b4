"""Planted backprop bugs: the typical mistakes, each as an alternative ``backward``.

Every bug is ``network.backward`` with one step written wrong, so a learner can run a
gradient check on it and see what a failure looks like and where it points::

    >>> import deepgrad as dg, numpy as np
    >>> from deepgrad import bugs
    >>> net = dg.Network([3, 4, 4, 2], hidden_activation="tanh", output="softmax", seed=0)
    >>> X = np.random.default_rng(0).normal(size=(6, 3))
    >>> r = dg.gradcheck_network(net, X, np.arange(6) % 2, backward=bugs.get("db-missing").backward)
    >>> r.passed, r.failures[0].name[0]
    (False, 'b')

``Bug.targets(spec)`` names the arrays whose gradient the bug makes wrong (the others stay
correct), which is what the tests check the report against.
"""

from __future__ import annotations

from collections.abc import Callable
from functools import partial
from typing import Any, NamedTuple

from deepgrad.core import activations, dropout, losses
from deepgrad.core import network as nw
from deepgrad.core.backend import namespace

__all__ = ["Bug", "BUGS", "get", "names", "backward_with"]


class _Steps(NamedTuple):
    """The steps of backprop that a bug can get wrong (defaults: the correct ones)."""

    output_dZ: Callable = lambda A, Y, m: (A - Y) / m  # noqa: E731 - canonical link
    reg: Callable = lambda l2, m_reg: l2 / m_reg  # noqa: E731 - d/dW of l2/(2m)||W||^2
    dW: Callable = lambda dZ, A_in, l, spec: dZ.T @ A_in  # noqa: E731
    db: Callable = lambda dZ: namespace(dZ).sum(dZ, axis=0)  # noqa: E731
    drop: Callable = dropout.apply  # dA -> dA * mask (inverted dropout, 1/keep_prob inside)
    act: Callable | None = None  # dZ = act(dA, Z, A); None = the registry's derivative


_CORRECT = _Steps()


def backward_with(params, cache, Y, spec, l2=0.0, m_reg=None, steps: _Steps | None = None):
    """``network.backward`` written out with each step replaceable (same math by default)."""
    steps = steps or _CORRECT
    act = steps.act or activations.get(spec.hidden_activation).backward
    ZL = cache.Z[-1]
    m = ZL.shape[0]
    reg = steps.reg(l2, m if m_reg is None else m_reg)
    dZ = steps.output_dZ(losses.get(spec.output).activation(ZL), Y, m)
    grads = {}
    for l in range(spec.L, 0, -1):
        W = params[f"W{l}"]
        grads[f"W{l}"] = steps.dW(dZ, cache.inputs[l - 1], l, spec) + (reg * W if reg else 0.0)
        grads[f"b{l}"] = steps.db(dZ)
        if l > 1:
            dA = steps.drop(dZ @ W, cache.masks[l - 2])
            dZ = act(dA, cache.Z[l - 2], cache.A[l - 2])
    return {k: grads[k] for k in nw.param_names(spec.L)}


class Bug(NamedTuple):
    """A planted bug: ``backward`` has the signature of ``network.backward``.

    ``needs``: what the network must have for the bug to show ("l2", "dropout", or an
    activation name), "" if nothing. ``targets(spec)``: the arrays it makes wrong.
    """

    name: str
    description: str
    backward: Callable[..., dict]
    targets: Callable[[nw.Spec], set[str]]
    needs: str = ""


def _all(spec) -> set[str]:
    return set(nw.param_names(spec.L))


def _weights(spec) -> set[str]:
    return {f"W{l}" for l in range(1, spec.L + 1)}


def _biases(spec) -> set[str]:
    return {f"b{l}" for l in range(1, spec.L + 1)}


def _wide_biases(spec) -> set[str]:
    return {f"b{l}" for l in range(1, spec.L + 1) if spec.layer_sizes[l] > 1}


def _below_output(spec) -> set[str]:
    return {n for l in range(1, spec.L) for n in (f"W{l}", f"b{l}")}


def _transposed_layer(spec) -> int:
    """The first layer whose W has both dimensions > 1 (there a transpose changes values)."""
    for l in range(1, spec.L + 1):
        if min(spec.layer_sizes[l], spec.layer_sizes[l - 1]) > 1:
            return l
    return 1


def _transposed_dW(dZ, A_in, l, spec):
    dW = dZ.T @ A_in  # (n^[l], n^[l-1])
    if l != _transposed_layer(spec):
        return dW
    xp = namespace(dW)
    # A_in.T @ dZ: the column-convention formula used with row-major data; reshaping it
    # back to W's shape hides the mistake from shape checks (a plain transpose if square).
    return xp.reshape(A_in.T @ dZ, dW.shape)


def _db_wrong_axis(dZ):
    xp = namespace(dZ)
    per_example = xp.sum(dZ, axis=1)  # summed over units instead of examples: shape (m,)
    return xp.ones(dZ.shape[1], dtype=dZ.dtype) * xp.sum(per_example)  # forced to b's shape


def _relu_wrong_side(dA, Z, A):
    return namespace(dA).where(Z < 0, dA, 0.0)  # the gradient flows where the unit is off


def _tanh_missing_square(dA, Z, A):
    return dA * (1.0 - A)  # tanh' is 1 - A^2


def _tanh_of_Z(dA, Z, A):
    return dA * (1.0 - Z * Z)  # derivative evaluated at Z instead of A = tanh(Z)


def _sigmoid_missing_factor(dA, Z, A):
    return dA * A  # sigma' is A (1 - A)


def _drop_scale_missing(dA, mask):
    if mask is None:
        return dA
    xp = namespace(dA, mask)
    return dA * xp.astype(mask > 0, dA.dtype)  # forgets the 1/keep_prob of inverted dropout


def _bug(name: str, description: str, targets, needs: str = "", **steps: Any) -> Bug:
    return Bug(name, description, partial(backward_with, steps=_Steps(**steps)), targets, needs)


BUGS: dict[str, Bug] = {
    b.name: b
    for b in (
        _bug(
            "missing-1/m",
            "dZ^[L] = A^[L] - Y, without the 1/m of the mean cost",
            _all,
            output_dZ=lambda A, Y, m: A - Y,
        ),
        _bug(
            "output-sign",
            "dZ^[L] = (Y - A^[L]) / m: the sign of the output error flipped",
            _all,
            output_dZ=lambda A, Y, m: (Y - A) / m,
        ),
        _bug(
            "l2-factor",
            "L2 gradient lambda/(2m) W instead of lambda/m W (the 2 of ||W||^2 forgotten)",
            _weights,
            "l2",
            reg=lambda l2, m_reg: l2 / (2.0 * m_reg),
        ),
        _bug(
            "relu-wrong-side",
            "ReLU derivative 1 where Z < 0 instead of Z > 0",
            _below_output,
            "relu",
            act=_relu_wrong_side,
        ),
        _bug(
            "tanh-derivative",
            "tanh derivative 1 - A instead of 1 - A^2",
            _below_output,
            "tanh",
            act=_tanh_missing_square,
        ),
        _bug(
            "tanh-of-z",
            "tanh derivative 1 - Z^2: evaluated at Z instead of A = tanh(Z)",
            _below_output,
            "tanh",
            act=_tanh_of_Z,
        ),
        _bug(
            "sigmoid-derivative",
            "sigmoid derivative A instead of A (1 - A)",
            _below_output,
            "sigmoid",
            act=_sigmoid_missing_factor,
        ),
        _bug(
            "transposed-dW",
            "dW = A_prev.T @ dZ reshaped to W's shape (the transpose of the "
            "right dW) in the first layer with a 2-D W",
            lambda spec: {f"W{_transposed_layer(spec)}"},
            dW=_transposed_dW,
        ),
        _bug(
            "db-wrong-axis",
            "db summed over the units axis instead of the examples axis",
            _wide_biases,
            db=_db_wrong_axis,
        ),
        _bug(
            "db-missing",
            "bias gradient left at zero",
            _biases,
            db=lambda dZ: namespace(dZ).zeros(dZ.shape[1], dtype=dZ.dtype),
        ),
        _bug(
            "dropout-mask-missing",
            "dropout mask not applied in backward: dropped units still pass gradient",
            _below_output,
            "dropout",
            drop=lambda dA, mask: dA,
        ),
        _bug(
            "dropout-scale-missing",
            "backward applies the 0/1 mask but not the 1/keep_prob scale of inverted dropout",
            _below_output,
            "dropout",
            drop=_drop_scale_missing,
        ),
    )
}


def names() -> list[str]:
    """The planted bugs' names."""
    return list(BUGS)


def get(name: str) -> Bug:
    """A planted bug by name; ``ValueError`` lists the valid names."""
    if not isinstance(name, str) or name not in BUGS:
        raise ValueError(f"bug must be one of {names()}, got {name!r}")
    return BUGS[name]
