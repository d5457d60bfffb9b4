"""The network front end: ``gradcheck_network(net, X, Y)``.

Validates the public arguments once, copies the network and the data into the check's
dtype (NumPy), freezes the dropout masks, and hands them to a method: ``exact``
(difference propagation, the default) or ``plain`` (the seed's formula, batched).
"""

from __future__ import annotations

import math
import os
import warnings
from collections.abc import Callable

import numpy as np

from deepgrad.core import dropout
from deepgrad.core import network as nw
from deepgrad.core.backend import to_numpy
from deepgrad.core.checks import as_2d_float, check_float, check_int, check_targets, encode_targets
from deepgrad.diagnostics import diffprop
from deepgrad.diagnostics.gradcheck.common import NetworkData, Settings
from deepgrad.diagnostics.gradcheck.exact import exact_network
from deepgrad.diagnostics.gradcheck.generic import as_float64, check_sample, select
from deepgrad.diagnostics.gradcheck.plain import plain_network
from deepgrad.diagnostics.gradcheck.report import DEFAULTS, GradcheckReport
from deepgrad.model.net import Network, resolve_l2_normalization

__all__ = ["gradcheck_network", "METHODS", "DTYPES", "EPS_RANGE"]

METHODS = ("exact", "plain")
DTYPES = ("float64", "float32")
EPS_RANGE = {"float64": (1e-12, 0.1), "float32": (1e-8, 0.1)}  # eps the checks accept


# -- validation -------------------------------------------------------------------------------


def _network_params(net, dtype: str) -> dict:
    """NumPy copies of net.params in ``dtype``: floating arrays of the spec's shapes."""
    params = {}
    for k, shape in net.spec.shapes().items():
        if k not in net.params:
            raise ValueError(f"net.params has no {k!r}; a {list(net.layer_sizes)} net needs it")
        v = to_numpy(net.params[k])
        if np.asarray(v).dtype.kind != "f":
            raise TypeError(
                f"net.params[{k!r}] has dtype {np.asarray(v).dtype}; parameters must be "
                f"float32 or float64"
            )
        if tuple(v.shape) != shape:
            raise ValueError(f"net.params[{k!r}] has shape {tuple(v.shape)}; expected {shape}")
        params[k] = np.array(v, dtype=dtype)
    return params


def _network_inputs(net, X, Y, keep_prob, masks, seed, dtype: str) -> NetworkData:
    """NumPy params, X, encoded Y and frozen dropout masks in ``dtype`` (validated)."""
    params = _network_params(net, dtype)
    X = np.asarray(to_numpy(as_2d_float("X", X, net.layer_sizes[0])), dtype=dtype)
    Y = check_targets(
        "Y",
        to_numpy(Y) if not isinstance(Y, list) else Y,
        net.spec.output,
        net.layer_sizes[-1],
        X.shape[0],
    )
    Y = encode_targets(np.asarray(to_numpy(Y)), net.spec.output, net.layer_sizes[-1], np, dtype)
    keep_prob = check_float("keep_prob", keep_prob, 0.0, 1.0, low_open=True)
    check_int("seed", seed, 0)
    hidden = net.spec.hidden_sizes
    if masks is not None:
        masks = [m.astype(dtype) for m in _check_masks(masks, X.shape[0], hidden)]
    elif keep_prob < 1.0:
        rng = np.random.default_rng(seed)
        masks = dropout.draw_masks(rng, X.shape[0], hidden, keep_prob, None, dtype)
    return NetworkData(params, X, Y, masks)


def _check_masks(masks, m: int, hidden) -> list:
    if not isinstance(masks, list | tuple) or len(masks) != len(hidden):
        raise ValueError(
            f"masks must be a list of {len(hidden)} arrays (one per hidden layer), got "
            f"{type(masks).__name__} of length {len(masks) if hasattr(masks, '__len__') else '?'}"
        )
    out = []
    for i, (mask, n) in enumerate(zip(masks, hidden, strict=True)):
        mask = as_float64(f"masks[{i}]", mask)
        if mask.shape != (m, n):
            raise ValueError(f"masks[{i}] has shape {mask.shape}; expected ({m}, {n})")
        out.append(mask)
    return out


def _choice(name: str, value, allowed) -> str:
    if not isinstance(value, str) or value not in allowed:
        raise ValueError(f"{name} must be one of {list(allowed)}, got {value!r}")
    return value


def _check_eps(eps, dtype: str) -> float:
    lo, hi = EPS_RANGE[dtype]
    eps = check_float("eps", eps, 0.0, low_open=True)
    if not lo <= eps <= hi:
        raise ValueError(
            f"eps must be in [{lo:g}, {hi:g}] for a {dtype} check, got {eps!r}: below, the "
            f"step is lost in {dtype} rounding; above, the truncation error dominates"
        )
    return eps


def _resolve_method(net, method: str, dtype, eps, threshold):
    """(method, dtype, eps, threshold) with the defaults of DEFAULTS filled in; falls back
    to "plain" (with a warning) for a network the exact method has no identity for."""
    method = _choice("method", method, METHODS)
    dtype = net.dtype if dtype is None else _choice("dtype", dtype, DTYPES)
    why = diffprop.supports(net.spec)
    if method == "exact" and why:
        warnings.warn(f"{why}: falling back to method='plain'", RuntimeWarning, stacklevel=3)
        method = "plain"
    default_eps, default_threshold, _ = DEFAULTS[(method, dtype)]
    eps = _check_eps(default_eps if eps is None else eps, dtype)
    return method, dtype, eps, default_threshold if threshold is None else threshold


# -- the check --------------------------------------------------------------------------------


def gradcheck_network(
    net,
    X,
    Y,
    l2: float = 0.0,
    eps: float | None = None,
    threshold: float | None = None,
    keep_prob: float = 1.0,
    masks=None,
    seed: int = 0,
    sample: int | None = None,
    l2_normalization: str | int = "batch",
    backward: Callable | None = None,
    workers: int | None = None,
    method: str = "exact",
    dtype: str | None = None,
    *,
    l2_denominator: int | None = None,
) -> GradcheckReport:
    """Check a network's backprop against central differences of its regularized cost.

    Computes the seed's central differences (J(theta + eps e_i) - J(theta - eps e_i)) /
    (2 eps) of ``network.cost`` (the L2 term included), batched; see the package docstring.

    Parameters
    ----------
    net : a deepgrad ``Network`` (its parameters are not changed).
    X : (m, n^[0]) inputs; Y : (m,) labels or (m, n^[L]) targets.
    l2 : lambda of the L2 term lambda/(2 m_reg) sum ||W||_F^2.
    l2_normalization : "batch" (default): m_reg = m, the rows of X; a positive int: that
        m_reg (e.g. the training-set size, to check the cost a model was trained on with
        ``fit(l2_normalization="dataset")``).
    eps, threshold : the step and the bar; None: the defaults of ``DEFAULTS`` for the
        method and dtype (exact: 1e-9 and 1e-12 in float64, 1e-6 and 1e-6 in float32;
        plain: 1e-7 and 1e-7 in float64, 3e-2 and 1e-3 in float32). eps must lie in
        ``EPS_RANGE[dtype]``. The exact method's bar is never below ``NOISE_BAR`` noise
        floors (``report.bar``).
    sample, seed : as in ``gradcheck`` (seed also draws dropout masks).
    keep_prob : with keep_prob < 1, dropout masks are drawn once (from ``seed``) and frozen:
        the same masks for J(theta + eps), J(theta - eps) and backprop, so the cost is a
        fixed function of theta again. Redrawing them for each evaluation makes the check
        fail: the difference of two costs would then measure the change of mask (order
        1e-2 here), not of theta (order eps), and dividing by 2 eps blows it up.
    masks : explicit masks (list of (m, n^[l]) arrays, one per hidden layer) instead.
    backward : an alternative ``network.backward`` (e.g. a planted bug from
        ``deepgrad.diagnostics.bugs``) whose gradients are checked instead of deepgrad's.
    workers : threads that evaluate batches of perturbed networks in parallel (NumPy;
        default: the CPU count, at most 8; 1 = sequential). The numbers do not depend on it.
    method : "exact" (default): the same central difference computed without
        cancellation, by difference propagation (``diagnostics.diffprop``), on the net's
        backend (NumPy, or torch on its device); each element is judged against its own
        noise floor (``report.floor``). "plain": the seed's formula, two cost evaluations
        subtracted (NumPy). A net with an activation or output that has no difference
        identity falls back to "plain" with a RuntimeWarning.
    dtype : "float64" or "float32": the precision of the check (None: the net's dtype).
        float32 networks are checked in float32, against float32 backprop.
    l2_denominator : the deprecated name of ``l2_normalization=<int>`` (DeprecationWarning;
        giving it with an int ``l2_normalization`` is a TypeError).

    Returns
    -------
    GradcheckReport; for ReLU-family nets, elements whose +-eps perturbations move some
    pre-activation across 0 are listed in ``report.kinks`` and left out of the verdict.

    Example
    -------
    >>> import deepgrad as dg, numpy as np
    >>> net = dg.Network([3, 5, 2], hidden_activation="tanh", output="softmax", seed=0)
    >>> X = np.random.default_rng(0).normal(size=(8, 3))
    >>> r = dg.gradcheck_network(net, X, np.arange(8) % 2, l2=0.1)
    >>> r.passed, r.method, r.dtype
    (True, 'exact', 'float32')
    """
    if not isinstance(net, Network):
        raise TypeError(f"net must be a deepgrad Network, got {type(net).__name__}")
    method, dtype, eps, threshold = _resolve_method(net, method, dtype, eps, threshold)
    data = _network_inputs(net, X, Y, keep_prob, masks, seed, dtype)
    l2 = check_float("l2", l2, 0.0)
    m_reg = resolve_l2_normalization(l2_normalization, l2_denominator)
    m_reg = data.X.shape[0] if m_reg is None else m_reg
    if backward is not None and not callable(backward):
        raise TypeError(f"backward must be callable like network.backward, got {backward!r}")
    threshold = check_float("threshold", threshold, 0.0, low_open=True)
    sample = check_sample(sample, net.n_params)
    _check_cost(data, net.spec, l2, m_reg)
    workers = min(8, os.cpu_count() or 1) if workers is None else check_int("workers", workers)
    settings = Settings(l2, m_reg, eps, threshold, backward, dtype)
    chosen = select(net.spec.shapes(), sample, seed)
    run = exact_network if method == "exact" else plain_network
    return run(net, data, settings, chosen, workers)


def _check_cost(data: NetworkData, spec, l2, m_reg) -> None:
    params, X, Y, masks = data
    J0 = float(nw.cost(params, X, Y, spec, l2, m_reg, masks))
    if not math.isfinite(J0):
        raise ValueError(f"the cost of net on (X, Y) is {J0}; it must be finite")
