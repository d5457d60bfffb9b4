"""Difference propagation: f(theta + d) - f(theta) of a network's cost without cancellation.

A central difference of the cost subtracts two numbers that agree in most of their digits:
J(theta + eps e_i) and J(theta - eps e_i) are ~0.69 and differ in their 7th digit at
eps = 1e-7, so each carries the rounding of J (ulp(J) / (2 eps) ~ 1e-9 in float64, 1e-1 in
float32). Here the change of every later layer's pre-activation, Delta Z, is carried apart
from the unperturbed Z and never formed as (Z + Delta) - Z. Each difference comes from an
identity with no subtraction of nearly equal numbers:

- tanh(z + d) - tanh(z) = sinh(d) sech(z) sech(z + d)
  = sinh(d) sech^2(z) / (cosh d + tanh(z) sinh d)
- sigmoid(z + d) - sigmoid(z) = -sigmoid(z + d) sigmoid(-z) expm1(-d)
  = -sigmoid(z) sigmoid(-z) expm1(-d) / (1 + sigmoid(-z) expm1(-d))
- relu / leaky ReLU: d or 0 (or the slope times d) on one side of 0, the exact value across it
- linear: d;  Delta Z^[l+1] = Delta A^[l] @ W^[l+1].T (+ E @ A^[l] for a change E of W^[l+1])
- BCE, written (1 - y) softplus(z) + y softplus(-z):
  softplus(z + d) - softplus(z) = log1p(sigmoid(z) expm1(d)), or, when that argument is below
  -0.5, log(sigmoid(-z) + sigmoid(z) exp(d)) (a sum of positives)
- softmax CE, -log p_y = log sum_k exp(z_k - z_y): log1p(sum_k p_k expm1(d_k - d_y)), with the
  log-sum form when the argument is below -0.5 (d_y is the label-weighted mean of d)
- half MSE: d (z - y) + d^2 / 2

The second forms never compute z + d, whose rounding (ulp(z)) would otherwise cost
relative precision. The result is the exact difference of the real cost for a step of
exactly d (not of the rounded w + d), to the full relative precision of the dtype. Every
function takes its array namespace from its inputs, so NumPy arrays and torch tensors (CPU
or GPU) go through the same code; on NumPy the layers after the perturbed one run in
per-thread scratch arrays, tanh's difference in place. Shapes: a batch of K perturbed
networks is (K, m, n) against the base (m, n).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import NamedTuple

import numpy as np

from deepgrad.core import activations, dropout, losses
from deepgrad.core import network as nw
from deepgrad.core.backend import namespace

__all__ = [
    "ACTIVATION_DIFFERENCES",
    "LOSS_DIFFERENCES",
    "supports",
    "Base",
    "base",
    "activation_difference",
    "loss_difference_sums",
    "differences",
    "scratch",
]

_SMALL = {"float64": 1e-4, "float32": 1e-2}  # |d| up to which sinh d = d + d^3/6 in dtype
_UNIT = {"float64": 2.0**-53, "float32": 2.0**-24}  # d^2 below this: sinh d = d, cosh d = 1


class Base(NamedTuple):
    """The unperturbed network and what the identities reuse, per layer l = 1..L (index l-1).

    ``Z[l-1]``: Z^[l] (m, n^[l]); ``inputs[l-1]``: A^[l-1] after dropout; ``masks``: the
    frozen dropout masks (None: none); ``pre[l-1]``: per-layer quantities of the identity
    (sech(Z) for tanh, (sigmoid(Z), sigmoid(-Z)) for sigmoid, None otherwise); ``out``:
    those of the loss (sigmoid(Z^[L]) and sigmoid(-Z^[L]); softmax probabilities; Z^[L] - Y).
    """

    params: dict
    spec: nw.Spec
    Y: object
    cache: nw.Cache
    Z: list
    inputs: list
    masks: list | None
    pre: list
    out: tuple


def _sech(Z):
    """sech(Z) = 2 / (e^Z + e^-Z): one exp (cosh is 2x slower); 0 where e^Z over/underflows."""
    e = namespace(Z).exp(Z)
    return 2.0 / (e + 1.0 / e)


def _tanh_pre(Z):
    """tanh(Z), sech^2(Z), (1 + tanh Z) / 2 = sigmoid(2Z) and (1 - tanh Z) / 2."""
    sech = _sech(Z)
    return (
        namespace(Z).tanh(Z),
        sech * sech,
        activations.sigmoid(2.0 * Z),
        activations.sigmoid(-2.0 * Z),
    )


def _max_abs(D) -> float:
    xp = namespace(D)
    return max(float(xp.max(D)), -float(xp.min(D)))


def _dtype_name(D) -> str:
    return str(D.dtype).rsplit(".", 1)[-1]  # "float64" for NumPy and torch alike


def _tanh_diff(Z, D, pre):
    """tanh(z + d) - tanh(z) = sinh(d) sech^2(z) / (cosh d + tanh(z) sinh d).

    (sech(z + d) = sech(z) / (cosh d + tanh(z) sinh d): z + d is never formed, so its
    rounding, ulp(z), never enters.) For small |d| (every |d| of the batch below ``_SMALL``)
    sinh and cosh are their series and the denominator is within |d| of 1; otherwise it is
    e^d sigmoid(2z) + e^-d sigmoid(-2z), a sum of positives.
    """
    t, q, s_pos, s_neg = pre
    biggest = _max_abs(D)
    # In-place operators (part of the array API) keep the temporaries few: fresh large
    # arrays cost a page fault per 4 kB, more than the arithmetic on them (measured).
    if biggest * biggest < _UNIT.get(_dtype_name(D), 0.0):
        den = t * D  # sinh d = d and cosh d = 1 to the dtype's precision
        den += 1.0
        out = D * q
        out /= den
        return out
    if biggest <= _SMALL.get(_dtype_name(D), 0.0):
        D2 = D * D
        s = D2 * (1.0 / 6.0)
        s *= D
        s += D  # sinh d = d + d^3 / 6; next terms d^5 / 120 and d^4 / 24: below the rounding
        den = t * s
        den += 1.0
        D2 *= 0.5
        den += D2  # cosh d + tanh(z) sinh d
        s *= q
        s /= den
        return s
    xp = namespace(D)
    e = xp.exp(D)
    return xp.sinh(D) * q / (e * s_pos + s_neg / e)


def _sigmoid_pre(Z):
    s_pos, s_neg = activations.sigmoid(Z), activations.sigmoid(-Z)
    return s_pos, s_neg, s_pos * s_neg


def _sigmoid_diff(Z, D, pre):
    """sigmoid(z + d) - sigmoid(z) = -sigmoid(z) sigmoid(-z) expm1(-d) / (1 + sigmoid(-z)
    expm1(-d)); the denominator is sigmoid(z) + sigmoid(-z) e^-d, summed as positives where
    it would cancel (z + d is never formed)."""
    xp = namespace(Z, D)
    s_pos, s_neg, q = pre
    E = xp.expm1(-D)
    sE = s_neg * E
    den = 1.0 + sE
    if bool(xp.any(sE < -0.5)):
        den = xp.where(sE < -0.5, s_pos + s_neg * xp.exp(-D), den)
    return -q * E / den


def _relu_diff(Z, D, pre, slope: float = 0.0):
    xp = namespace(Z, D)
    after = Z + D  # only its sign is used, except across the kink
    pos, pos_after = Z > 0, after > 0
    same = xp.where(pos, D, slope * D)
    across = xp.where(pos, slope * after - Z, after - slope * Z)
    return xp.where(pos == pos_after, same, across)


def _leaky_diff(Z, D, pre):
    return _relu_diff(Z, D, pre, activations.LEAKY_SLOPE)


def _linear_diff(Z, D, pre):
    return D


# name -> (per-layer precomputation of Z, difference(Z, D, pre) -> g(Z + D) - g(Z))
ACTIVATION_DIFFERENCES: dict[str, tuple[Callable, Callable]] = {
    "tanh": (_tanh_pre, _tanh_diff),
    "sigmoid": (_sigmoid_pre, _sigmoid_diff),
    "relu": (lambda Z: None, _relu_diff),
    "leaky_relu": (lambda Z: None, _leaky_diff),
    "linear": (lambda Z: None, _linear_diff),
}


def _softplus_diff(s_pos, s_neg, D):
    """softplus(z + D) - softplus(z) from s_pos = sigmoid(z), s_neg = sigmoid(-z)."""
    xp = namespace(D)
    arg = s_pos * xp.expm1(D)
    out = xp.log1p(xp.where(arg < -0.5, 0.0, arg))
    if bool(xp.any(arg < -0.5)):  # log1p would lose digits near -1: a sum of positives
        out = xp.where(arg < -0.5, xp.log(s_neg + s_pos * xp.exp(D)), out)
    return out


def _bce_diff(D, Y, pre):
    s_pos, s_neg = pre
    return (1.0 - Y) * _softplus_diff(s_pos, s_neg, D) + Y * _softplus_diff(s_neg, s_pos, -D)


def _cce_diff(D, Y, pre):
    xp = namespace(D, Y)
    P, weight = pre
    d_y = xp.sum(D * Y, axis=-1, keepdims=True) / xp.where(weight > 0, weight, 1.0)
    E = D - d_y
    arg = xp.sum(P * xp.expm1(E), axis=-1, keepdims=True)
    out = xp.log1p(xp.where(arg < -0.5, 0.0, arg))
    if bool(xp.any(arg < -0.5)):
        out = xp.where(arg < -0.5, xp.log(xp.sum(P * xp.exp(E), axis=-1, keepdims=True)), out)
    return weight * out


def _mse_diff(D, Y, pre):
    return D * (pre + 0.5 * D)  # d (z - y) + d^2 / 2


def _loss_pre(output: str, ZL, Y):
    xp = namespace(ZL, Y)
    if output == "sigmoid":
        return activations.sigmoid(ZL), activations.sigmoid(-ZL)
    if output == "softmax":
        return losses.get("softmax").activation(ZL), xp.sum(Y, axis=-1, keepdims=True)
    return ZL - Y


# output name -> difference(D, Y, pre) -> L(z + D, y) - L(z, y), element-wise
LOSS_DIFFERENCES: dict[str, Callable] = {
    "sigmoid": _bce_diff,
    "softmax": _cce_diff,
    "linear": _mse_diff,
}


def supports(spec: nw.Spec) -> str:
    """ "" when every activation and the output of ``spec`` have an identity here, else
    a short reason ("no difference identity for hidden_activation 'swish'")."""
    if spec.hidden_activation not in ACTIVATION_DIFFERENCES and spec.L > 1:
        return f"no difference identity for hidden_activation {spec.hidden_activation!r}"
    if spec.output not in LOSS_DIFFERENCES:
        return f"no difference identity for output {spec.output!r}"
    return ""


def base(params: dict, X, Y, spec: nw.Spec, masks=None) -> Base:
    """The unperturbed forward pass of (params, X) and the identities' precomputations."""
    _, cache = nw.forward(params, X, spec, masks)
    prep = ACTIVATION_DIFFERENCES.get(spec.hidden_activation, (lambda Z: None,))[0]
    pre = [prep(Z) for Z in cache.Z[:-1]]
    out = _loss_pre(spec.output, cache.Z[-1], Y)
    return Base(params, spec, Y, cache, cache.Z, cache.inputs, masks, pre, out)


def activation_difference(name: str, Z, D, pre=None):
    """g(Z + D) - g(Z) for hidden activation ``name``, element-wise and without cancellation.

    ``pre`` is ``ACTIVATION_DIFFERENCES[name][0](Z)`` when it was computed already.
    """
    prep, diff = ACTIVATION_DIFFERENCES[name]
    return diff(Z, D, prep(Z) if pre is None else pre)


def loss_difference_sums(output: str, ZL, D, Y, pre=None):
    """sum over examples and outputs of L(Z^[L] + D) - L(Z^[L]) for each of K networks.

    ZL, Y: (m, n^[L]); D: (K, m, n^[L]) -> (K,). ``pre`` as in ``Base.out``.
    """
    xp = namespace(D)
    pre = _loss_pre(output, ZL, Y) if pre is None else pre
    per = LOSS_DIFFERENCES[output](D, Y, pre)
    return xp.sum(xp.reshape(per, (D.shape[0], -1)), axis=1)


def _crossed(Z, D):
    """(K,) True where some pre-activation of a perturbed network is on the other side of 0."""
    xp = namespace(Z, D)
    flip = (Z > 0) != ((Z + D) > 0)
    return xp.any(xp.reshape(flip, (D.shape[0], -1)), axis=1)


def differences(b: Base, l: int, rows, cols, deltas, is_w: bool, track_kinks: bool):
    """Delta of the summed loss for K perturbed networks, and which crossed a kink.

    Element k moves W^[l][rows[k], cols[k]] (``is_w``) or b^[l][rows[k]] by deltas[k] (a
    (K,) array of the base's dtype). Returns (sum_i L_i(theta + delta) - sum_i L_i(theta)
    of shape (K,), crossed (K,) bool).
    """
    xp = namespace(b.Z[0])
    spec, L = b.spec, b.spec.L
    K = rows.shape[0]
    Zl = _columns(b.Z[l - 1], rows)  # (K, m): unit rows[k] of Z^[l]
    if is_w:
        A_in = _columns(b.inputs[l - 1], cols)
        Dcol = deltas[:, None] * A_in
    else:
        Dcol = deltas[:, None] * xp.ones_like(Zl)
    crossed = xp.zeros_like(deltas, dtype=xp.bool)
    if l == L:
        onehot = xp.astype(rows[:, None] == xp.arange(spec.layer_sizes[L])[None, :], Dcol.dtype)
        D = Dcol[:, :, None] * onehot[:, None, :]
        return loss_difference_sums(spec.output, b.Z[L - 1], D, b.Y, b.out), crossed
    name = spec.hidden_activation
    pre_l = b.pre[l - 1]
    pre_col = None if pre_l is None else _take_pre(pre_l, rows)
    if track_kinks:
        crossed = crossed | _crossed(Zl, Dcol)
    dA = activation_difference(name, Zl, Dcol, pre_col)
    if b.masks is not None:
        dA = dA * _columns(b.masks[l - 1], rows)
    if isinstance(dA, np.ndarray):
        D = _downstream_numpy(b, l, dA, rows, crossed if track_kinks else None)
        return loss_difference_sums(spec.output, b.Z[L - 1], D, b.Y, b.out), crossed
    W_next = b.params[f"W{l + 1}"]
    D = dA[:, :, None] * xp.take(W_next, rows, axis=1).T[:, None, :]  # rank-1: (K, m, n^[l+1])
    m = Zl.shape[1]
    for k in range(l + 1, L):
        if track_kinks:
            crossed = crossed | _crossed(b.Z[k - 1], D)
        dA = activation_difference(name, b.Z[k - 1], D, b.pre[k - 1])
        dA = dropout.apply(dA, None if b.masks is None else b.masks[k - 1])
        W = b.params[f"W{k + 1}"]
        D = xp.reshape(xp.reshape(dA, (K * m, dA.shape[-1])) @ W.T, (K, m, W.shape[0]))
    return loss_difference_sums(spec.output, b.Z[L - 1], D, b.Y, b.out), crossed


def _downstream_numpy(b: Base, l: int, dA: np.ndarray, rows, crossed):
    """Delta Z^[L] (K, m, n^[L]) from the change dA (K, m) of unit rows[k] of A^[l]: the
    loop of ``differences`` for NumPy, the same numbers, in per-thread buffers and in
    place (fresh arrays of this size cost more in page faults than the arithmetic).
    ``crossed`` (K,) is or-ed in place with the kinks crossed (None: not tracked)."""
    K, m = dA.shape
    W = b.params[f"W{l + 1}"]
    D = scratch("D", (K, m, W.shape[0]), W.dtype)
    np.multiply(dA[:, :, None], W.T[rows][:, None, :], out=D)  # rank-1 update of Z^[l+1]
    for k in range(l + 1, b.spec.L):
        if crossed is not None:
            crossed |= _crossed(b.Z[k - 1], D)
        D = _difference_in_place(b.spec.hidden_activation, b.Z[k - 1], D, b.pre[k - 1])
        if b.masks is not None:
            D *= b.masks[k - 1]
        W = b.params[f"W{k + 1}"]
        out = scratch(f"D{k + 1}", (K, m, W.shape[0]), W.dtype)
        np.matmul(D.reshape(K * m, D.shape[-1]), W.T, out=out.reshape(K * m, W.shape[0]))
        D = out
    return D


def _difference_in_place(name: str, Z, D: np.ndarray, pre) -> np.ndarray:
    """``activation_difference(name, Z, D, pre)`` for NumPy, the same numbers: tanh's
    forms written over D (and per-thread scratch arrays), the other activations' as they
    are."""
    if name != "tanh":
        return activation_difference(name, Z, D, pre)
    t, q = pre[0], pre[1]
    unit, small = _UNIT.get(D.dtype.name, 0.0), _SMALL.get(D.dtype.name, 0.0)
    biggest = _max_abs(D)
    if biggest * biggest < unit:
        den = np.multiply(t, D, out=scratch("den", D.shape, D.dtype))
        den += 1.0
        D *= q
        D /= den
        return D
    if biggest <= small:
        D2 = np.multiply(D, D, out=scratch("D2", D.shape, D.dtype))
        s = np.multiply(D2, 1.0 / 6.0, out=scratch("s", D.shape, D.dtype))
        s *= D
        s += D  # sinh d
        den = np.multiply(t, s, out=D)
        den += 1.0
        D2 *= 0.5
        den += D2  # cosh d + tanh(z) sinh d
        s *= q
        return np.divide(s, den, out=D)
    return _tanh_diff(Z, D, pre)


_WORKSPACE = threading.local()


def scratch(tag: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A reusable per-thread scratch array (NumPy) for ``tag``, shape and dtype: fresh
    arrays above ~128 kB are mapped pages, a page fault per 4 kB on first touch, which cost
    more than the arithmetic on them (measured). Its contents are left from its last use."""
    cache = _WORKSPACE.__dict__.setdefault("buffers", {})
    key = (tag, shape, np.dtype(dtype).str)
    if key not in cache:
        cache[key] = np.empty(shape, dtype=dtype)
    return cache[key]


def _take_pre(pre, rows):
    """Columns ``rows`` of a per-layer precomputation (an array or a tuple of them), (K, m)."""
    if isinstance(pre, tuple):
        return tuple(_take_pre(p, rows) for p in pre)
    return _columns(pre, rows)


def _columns(A, idx):
    """Columns ``idx`` of A (m, n) as rows, (K, m). Taken along axis 1, not from a
    transposed view: NumPy's take of that first copies all of A (measured); in NumPy the
    result is made row-major again, so sums over its rows add in the same (pairwise) order."""
    xp = namespace(A)
    if isinstance(A, np.ndarray):
        return np.ascontiguousarray(A[:, idx].T)
    return xp.permute_dims(xp.take(A, idx, axis=1), (1, 0))
