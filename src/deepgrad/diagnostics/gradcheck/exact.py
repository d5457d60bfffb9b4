"""The exact method for networks: the same central differences without cancellation.

The change of every later layer, Delta Z, is carried apart from Z and the differences
come from identities without cancellation (``deepgrad.diagnostics.diffprop``), so
[J(theta + eps) - J(theta)] - [J(theta - eps) - J(theta)] is known to the dtype's full
relative precision: ~1e-16 in float64 instead of the ulp(J) / (2 eps) ~ 1e-9 rounding
noise of the plain formula, and ~1e-7 in float32, where the plain formula cannot do
better than ~2e-4. Each element is judged against its own noise floor: a few unit
roundoffs of the root-sum-square of the terms backprop adds up for it (``report.floor``,
``report.units``). Runs on the net's backend (NumPy, or torch on its device).
"""

from __future__ import annotations

import contextlib

import numpy as np

from deepgrad.core import activations, losses
from deepgrad.core import network as nw
from deepgrad.core.backend import to_numpy
from deepgrad.devices import torch_backend as tb
from deepgrad.diagnostics import diffprop
from deepgrad.diagnostics.gradcheck.common import (
    NetworkData,
    Settings,
    has_kinks,
    run_chunks,
    single_threaded_blas,
    thread_pool,
)
from deepgrad.diagnostics.gradcheck.generic import prepare
from deepgrad.diagnostics.gradcheck.report import (
    FAIL_UNITS,
    Checked,
    Criteria,
    GradcheckReport,
    bands,
    build_report,
)

__all__ = ["exact_network"]

# Perturbed activations per batch (K m n): 1 MB arrays, as in the plain method. Smaller
# batches cost more in Python per element (2^16: 1.3x the time on T2), larger ones no less.
_EXACT_CHUNK = 1 << 17


def _exact_layer(b: diffprop.Base, name: str, flat: np.ndarray, eps: float, setup, pool=None):
    """Exact central differences of the selected elements of one array, and kink flags.

    ``setup`` = (l2, m_reg, to_backend): each batch moves +eps and -eps copies of its
    elements, propagates the changes (``diffprop.differences``) and returns
    ([J(theta + eps) - J] - [J(theta - eps) - J]) / (2 eps), the L2 term as 4 w eps exactly.
    """
    l2, m_reg, to_backend = setup
    l, is_w = int(name[1:]), name[0] == "W"
    n_in = b.spec.layer_sizes[l - 1]
    rows, cols = np.divmod(flat, n_in) if is_w else (flat, np.zeros_like(flat))
    w = to_numpy(b.params[name]).reshape(-1)[flat].astype(np.float64)
    m = b.Y.shape[0]
    width = max(b.spec.layer_sizes[min(l + 1, b.spec.L) :]) * m
    chunk = max(1, _EXACT_CHUNK // (2 * width))
    track = has_kinks(b.spec)

    def one(start: int):
        sl = slice(start, start + chunk)
        n = len(rows[sl])
        r, c = np.concatenate([rows[sl]] * 2), np.concatenate([cols[sl]] * 2)
        d = np.concatenate([np.full(n, eps), np.full(n, -eps)])
        dJ, crossed = diffprop.differences(
            b, l, to_backend(r), to_backend(c), to_backend(d, float_=True), is_w, track
        )
        num = to_numpy((dJ[:n] - dJ[n:]) / (2.0 * eps * m)).astype(np.float64)
        if is_w and l2:
            num = num + (l2 / (2.0 * m_reg)) * (4.0 * w[sl] * eps) / (2.0 * eps)
        return num, to_numpy(crossed[:n] | crossed[n:])

    return run_chunks(one, range(0, len(flat), chunk), pool)


def _gradient_scale(b: diffprop.Base, l2: float, m_reg: int) -> dict[str, np.ndarray]:
    """The root-sum-square of the terms backprop adds up for each element (float64): R_i.

    Rounding gives each term of dW = dZ.T @ A (and of the dZ it is made of, layer after
    layer) a relative error of a few unit roundoffs with random sign, so the error of an
    element is a few roundoffs of sqrt(sum of squared terms), R_i, not of |dW_i|, which can
    be much smaller after cancellation (and not of the sum of |terms|, 100-1000x too
    pessimistic through 4 layers of random signs, measured). Difference propagation adds the
    same products in the other direction, so R_i is its scale too.
    """
    spec, act = b.spec, activations.get(b.spec.hidden_activation)
    sq = lambda a: np.square(np.asarray(to_numpy(a), dtype=np.float64))  # noqa: E731
    ZL, Y = np.asarray(to_numpy(b.Z[-1]), np.float64), np.asarray(to_numpy(b.Y), np.float64)
    A = np.asarray(losses.get(spec.output).activation(ZL))
    # dZ^[L] = (A - Y) / m is a subtraction: where A ~ Y (a confident, right output) its
    # rounding is ulp(A), not ulp(A - Y); min(A^2, Y^2) adds that term (0 where y = 0).
    dZ2 = (np.square(A - Y) + np.minimum(np.square(A), np.square(Y))) / ZL.shape[0] ** 2
    R = {}
    for l in range(spec.L, 0, -1):
        W2 = sq(b.params[f"W{l}"])
        R[f"W{l}"] = np.sqrt(dZ2.T @ sq(b.inputs[l - 1]) + (l2 / m_reg) ** 2 * W2)
        R[f"b{l}"] = np.sqrt(np.sum(dZ2, axis=0))
        if l > 1:
            dA2 = dZ2 @ W2
            if b.masks is not None:
                dA2 = dA2 * sq(b.masks[l - 2])
            Zp = np.asarray(to_numpy(b.Z[l - 2]), np.float64)
            dZ2 = dA2 * np.square(act.backward(np.ones_like(Zp), Zp, act.forward(Zp)))
    return R


def _backend_converter(net, dtype: str):
    """(namespace arrays -> the net's backend) for the exact path, and whether to thread."""
    if net.backend == "numpy":
        return (lambda a, float_=False: a.astype(dtype) if float_ else a), True
    torch = tb.import_torch()
    device = net.device
    tdt = getattr(torch, dtype)
    return (
        lambda a, float_=False: torch.as_tensor(a, dtype=tdt if float_ else None, device=device)
    ), False


def exact_network(
    net, data: NetworkData, settings: Settings, chosen: dict, workers: int
) -> GradcheckReport:
    """The exact method in ``settings.dtype`` on the net's backend (NumPy or torch, any
    device), on the ``chosen`` flat indices of each array; ``workers`` threads (NumPy)."""
    params, X, Y, masks = data
    l2, m_reg, eps, threshold, backward, dtype = settings
    to_backend, threads = _backend_converter(net, dtype)
    if net.backend != "numpy":
        params = {k: to_backend(v, float_=True) for k, v in params.items()}
        X, Y = to_backend(X, float_=True), to_backend(Y, float_=True)
        masks = None if masks is None else [to_backend(mk, float_=True) for mk in masks]
    b = diffprop.base(params, X, Y, net.spec, masks)
    grads = (backward or nw.backward)(params, b.cache, Y, net.spec, l2, m_reg)
    _, G, _ = prepare(params, {k: to_numpy(v) for k, v in grads.items()})
    unit = float(np.finfo(dtype).eps)
    R = _gradient_scale(b, l2, m_reg)
    checked = {}
    pool = thread_pool(workers if threads else 1)
    with single_threaded_blas(), pool or contextlib.nullcontext(), np.errstate(over="ignore"):
        for name, flat in chosen.items():
            num, kink = _exact_layer(b, name, flat, eps, (l2, m_reg, to_backend), pool)
            ana = G[name].reshape(-1)[flat]
            floor = unit * R[name].reshape(-1)[flat]
            checked[name] = Checked(params[name].shape, flat, num, ana, kink, floor)
    how = Criteria("exact", dtype, bands("exact", dtype), FAIL_UNITS)
    return build_report(checked, threshold, eps, 0.0, net.n_params, "elementwise", how)
