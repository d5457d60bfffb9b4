"""The plain method for networks: the seed's central difference, batched.

A change to W^[l][i, j] moves only unit i of Z^[l], so the unperturbed forward pass is
reused up to layer l, layer l+1 gets a rank-1 update, and many perturbed networks go
through the remaining layers as one matrix product. Two costs are subtracted, as in the
seed's formula: the result carries the rounding of J, ~ulp(J) / eps (``rounding_noise``),
and elements below that noise are never listed as failures. NumPy only.
"""

from __future__ import annotations

import contextlib
import math
from typing import NamedTuple

import numpy as np

from deepgrad.core import activations, dropout
from deepgrad.core import network as nw
from deepgrad.diagnostics.diffprop import scratch
from deepgrad.diagnostics.gradcheck.common import (
    NetworkData,
    Settings,
    has_kinks,
    run_chunks,
    single_threaded_blas,
    thread_pool,
)
from deepgrad.diagnostics.gradcheck.generic import prepare, rounding_noise
from deepgrad.diagnostics.gradcheck.report import (
    Checked,
    Criteria,
    GradcheckReport,
    bands,
    build_report,
)

__all__ = ["plain_network"]

_CHUNK_ELEMENTS = 1 << 17  # perturbed activations per batch (K * m * n): 1 MB, fits in L2


# -- the unperturbed network and the perturbed costs --------------------------------------


def _loss_sums(output: str, ZL: np.ndarray, Y: np.ndarray) -> np.ndarray:
    """sum_i L for each of K perturbed networks: ZL (K, m, n_out), Y (m, n_out) -> (K,).

    The same element-wise formulas as losses.py, summed per network over a contiguous
    (m * n_out) row, i.e. in the order ``losses.get(output).loss_sum`` sums one network.
    """
    K = ZL.shape[0]
    if output == "sigmoid":
        E = np.where(ZL > 0, ZL, 0.0) - ZL * Y + np.log1p(np.exp(-np.abs(ZL)))
        return np.sum(E.reshape(K, -1), axis=1)
    if output == "softmax":
        shifted = ZL - np.max(ZL, axis=-1, keepdims=True)
        log_sm = shifted - np.log(np.sum(np.exp(shifted), axis=-1, keepdims=True))
        return -np.sum((Y * log_sm).reshape(K, -1), axis=1)
    D = ZL - Y
    return 0.5 * np.sum((D * D).reshape(K, -1), axis=1)


class _State(NamedTuple):
    """The float64 network and its unperturbed forward pass, laid out for column access.

    ``inT[l]`` is A^[l-1] as fed to layer l, transposed, with a row of ones appended (the
    bias "input"), shape (n^[l-1] + 1, m); ``ZT[l]`` is Z^[l] transposed, (n^[l], m).
    """

    params: dict
    Y: np.ndarray
    spec: nw.Spec
    l2: float
    m_reg: int
    masks: list | None
    cache: nw.Cache
    inT: dict
    ZT: dict
    sq: dict  # sum ||W^[l]||_F^2 per layer, as network.l2_penalty computes it


def _state(params, X, Y, spec, l2, m_reg, masks) -> _State:
    _, cache = nw.forward(params, X, spec, masks)
    m = X.shape[0]
    inT, ZT, sq = {}, {}, {}
    for l in range(1, spec.L + 1):
        A_in = cache.inputs[l - 1]
        ones = np.ones((m, 1), dtype=A_in.dtype)
        inT[l] = np.ascontiguousarray(np.concatenate([A_in, ones], axis=1).T)
        ZT[l] = np.ascontiguousarray(cache.Z[l - 1].T)
        W = params[f"W{l}"]
        sq[l] = np.sum(W * W)
    return _State(params, Y, spec, l2, m_reg, masks, cache, inT, ZT, sq)


def _penalty(s: _State, l: int, w: np.ndarray | None, delta: np.ndarray):
    """lambda/(2 m_reg) sum ||W||^2 of each perturbed network, summed as l2_penalty does.

    Only W^[l][i, j] changed (from w to w + delta), so its array's sum of squares changes
    by (w + delta)^2 - w^2; biases (w is None) are not penalized.
    """
    if s.l2 == 0:
        return 0.0
    total = 0
    for k in range(1, s.spec.L + 1):
        total = total + (
            s.sq[k] + ((w + delta) ** 2 - w * w) if k == l and w is not None else s.sq[k]
        )
    return s.l2 / (2.0 * s.m_reg) * total


def _activate(name: str, Z: np.ndarray) -> np.ndarray:
    """g(Z), in place where NumPy's ufunc is the registry's own forward (same numbers)."""
    if name == "tanh":
        return np.tanh(Z, out=Z)
    if name == "linear":
        return Z
    return activations.get(name).forward(Z)


def _downstream(s: _State, l: int, zcol: np.ndarray, rows: np.ndarray, kinks: np.ndarray | None):
    """Push K perturbed copies of unit ``rows[k]`` of Z^[l] (zcol: (K, m)) to Z^[L].

    Returns Z^[L] of every perturbed network, (K, m, n^[L]). ``kinks`` (K/2,), when given,
    is or-ed with "some ReLU pre-activation differs in sign between the +eps half and the
    -eps half of the batch".
    """
    spec, cache, L = s.spec, s.cache, s.spec.L
    K, m = zcol.shape
    if l == L:
        ZL = np.repeat(cache.Z[L - 1][None], K, axis=0)
        ZL[np.arange(K), :, rows] = zcol
        return ZL
    name = spec.hidden_activation
    _flag_kinks(kinks, zcol)
    acol = activations.get(name).forward(zcol)
    if s.masks is not None:
        acol = dropout.apply(acol, s.masks[l - 1].T[rows])
    dcol = acol - s.inT[l + 1][rows]  # the change of unit i of A^[l], per example
    W_next = s.params[f"W{l + 1}"]
    Z = scratch("Z", (K, m, W_next.shape[0]), W_next.dtype)
    np.multiply(dcol[:, :, None], W_next.T[rows][:, None, :], out=Z)  # rank-1 update ...
    Z += cache.Z[l]  # ... of Z^[l+1]
    for k in range(l + 1, L):
        _flag_kinks(kinks, Z)
        A = _activate(name, Z)
        if s.masks is not None:
            A = dropout.apply(A, s.masks[k - 1])
        W, b = s.params[f"W{k + 1}"], s.params[f"b{k + 1}"]
        Z = scratch(f"Z{k + 1}", (K, m, W.shape[0]), W.dtype)
        np.matmul(A.reshape(K * m, A.shape[-1]), W.T, out=Z.reshape(K * m, W.shape[0]))
        Z += b
    return Z


def _flag_kinks(kinks: np.ndarray | None, Z: np.ndarray) -> None:
    if kinks is None:
        return
    half = Z.shape[0] // 2
    pos = Z > 0
    axes = tuple(range(1, Z.ndim))
    kinks |= np.any(pos[:half] != pos[half:], axis=axes)


def _perturbed_costs(s: _State, l: int, rows, cols, w, deltas, track_kinks: bool):
    """J of K perturbed networks (W^[l][rows, cols] or b^[l][rows] moved by ``deltas``).

    ``cols`` = n^[l-1] selects the bias. The first half of the batch holds the +eps
    perturbations, the second half the matching -eps ones. Returns (J (K,), kinks (K/2,)).
    """
    m = s.Y.shape[0]
    zcol = s.ZT[l][rows] + deltas[:, None] * s.inT[l][cols]  # only unit i of Z^[l] moves
    kinks = np.zeros(len(rows) // 2, bool) if track_kinks else None
    ZL = _downstream(s, l, zcol, rows, kinks)
    data = _loss_sums(s.spec.output, ZL, s.Y) / m
    J = data + _penalty(s, l, w, deltas)
    return J, (kinks if track_kinks else np.zeros(len(rows) // 2, bool))


def _layer_numerical(s: _State, name: str, flat: np.ndarray, eps: float, pool=None):
    """Central differences of every selected element of one array, in batches (run in
    parallel on a thread ``pool``, see ``common.run_chunks``), and their kink flags."""
    l, is_w = int(name[1:]), name[0] == "W"
    arr = s.params[name]
    n_in = arr.shape[1] if is_w else 0
    rows, cols = (
        np.divmod(flat, n_in) if is_w else (flat, np.full(len(flat), s.spec.layer_sizes[l - 1]))
    )
    w = arr.reshape(-1)[flat]
    # The perturbation the plain loop really applies: fl(w +- eps) - w.
    deltas = ((w + eps) - w, (w - eps) - w)
    # Widest array a batch allocates per perturbed network: (m, n^[k]) for the layers
    # k > l it recomputes (Z^[L] itself when l = L).
    width = max(s.spec.layer_sizes[min(l + 1, s.spec.L) :]) * s.Y.shape[0]
    chunk = max(1, _CHUNK_ELEMENTS // (2 * width))
    track = has_kinks(s.spec)

    def one(start: int):
        sl = slice(start, start + chunk)
        r, c = np.concatenate([rows[sl]] * 2), np.concatenate([cols[sl]] * 2)
        ww = np.concatenate([w[sl]] * 2) if is_w else None
        d = np.concatenate([deltas[0][sl], deltas[1][sl]])
        J, kinks = _perturbed_costs(s, l, r, c, ww, d, track)
        half = len(J) // 2
        return (J[:half] - J[half:]) / (2.0 * eps), kinks

    return run_chunks(one, range(0, len(flat), chunk), pool)


# -- the method ---------------------------------------------------------------------------


def plain_network(
    net, data: NetworkData, settings: Settings, chosen: dict, workers: int
) -> GradcheckReport:
    """The seed's formula, batched (NumPy, in ``settings.dtype``), on the ``chosen`` flat
    indices of each array ({"W1": indices, ...}); ``workers`` threads."""
    params, X, Y, masks = data
    l2, m_reg, eps, threshold, backward, dtype = settings
    s = _state(params, X, Y, net.spec, l2, m_reg, masks)
    J0 = float(nw.cost_from_output(s.cache.Z[-1], Y, params, net.spec, l2, m_reg))
    grads = (backward or nw.backward)(params, s.cache, Y, net.spec, l2, m_reg)
    _, G, _ = prepare(params, grads)
    checked = {}
    pool = thread_pool(workers)
    with single_threaded_blas(), pool or contextlib.nullcontext():
        for name, flat in chosen.items():
            num, kink = _layer_numerical(s, name, flat, eps, pool)
            checked[name] = Checked(params[name].shape, flat, num, G[name].reshape(-1)[flat], kink)
    # Per-example losses are computed from Z^[L]; their rounding, ~ulp(|Z^[L]|) each,
    # averages over m examples to ~ulp(|Z^[L]|) / sqrt(m) in J.
    scale = float(np.max(np.abs(s.cache.Z[-1]))) / math.sqrt(X.shape[0])
    how = Criteria("plain", dtype, bands("plain", dtype), 1.0)
    noise = rounding_noise(J0, eps, scale, dtype)
    return build_report(checked, threshold, eps, noise, net.n_params, "elementwise", how)
