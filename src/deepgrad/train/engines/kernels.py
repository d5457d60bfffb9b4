"""The compiled kernel of the ``compiled`` engine: a mini-batch's forward, loss and
backward in one numba call (loops, no NumPy call per layer), for small layers.

Its formulas are ``engines.step``'s (the canonical link dZ^[L] = (g(Z^[L]) - Y) / r,
the bias as the last column of each ``core.layout`` block, dropout by the step's masks),
written as loops; the optimizer's update and the L2 term stay in ``engines.step`` so
they exist once. The tests hold it against the reference engine at 1e-12 in float64.
Compiled on first use and cached on disk (``cache=True``): a fresh process loads it.

Importing this module needs numba; ``engines.compiled`` imports it only when asked.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

__all__ = ["HIDDEN", "OUTPUT", "LEAKY_SLOPE", "forward_backward"]

HIDDEN = {"relu": 0, "leaky_relu": 1, "tanh": 2, "sigmoid": 3, "linear": 4}
OUTPUT = {"sigmoid": 0, "softmax": 1, "linear": 2}
LEAKY_SLOPE = 0.01  # core.activations.LEAKY_SLOPE (checked by the engine)


@njit(cache=True)
def _sigmoid(z):
    e = math.exp(-abs(z))  # as core.activations.sigmoid: no exp of a positive number
    return 1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)


@njit(cache=True)
def _act(code, z, slope):
    if code == 0:
        return z if z > 0 else 0.0 * z
    if code == 1:
        return z if z > 0 else slope * z
    if code == 2:
        return math.tanh(z)
    if code == 3:
        return _sigmoid(z)
    return z


@njit(cache=True)
def _act_grad(code, da, z, a, slope):
    """dA * g'(Z), with A = g(Z) (before dropout), as core.activations' backward."""
    if code == 0:
        return da if z > 0 else 0.0 * da
    if code == 1:
        return da if z > 0 else slope * da
    if code == 2:
        return da * (1.0 - a * a)
    if code == 3:
        return da * a * (1.0 - a)
    return da


@njit(cache=True)
def _layer(A, P, m, n, code, slope, mask, use_mask):
    """(Z, g(Z), masked g(Z)) of one hidden layer: Z = A W^T + b."""
    r = A.shape[0]
    Z, H, Aout = np.empty((r, n), A.dtype), np.empty((r, n), A.dtype), np.empty((r, n), A.dtype)
    for i in range(r):
        for j in range(n):
            s = A[i, 0] * P[j, 0]
            for k in range(1, m):
                s += A[i, k] * P[j, k]
            z = s + P[j, m]
            Z[i, j] = z
            h = _act(code, z, slope)
            H[i, j] = h
            Aout[i, j] = h * mask[i, j] if use_mask else h
    return Z, H, Aout


@njit(cache=True)
def _output(A, P, Y, m, code, r_total):
    """(sum of the losses, dZ^[L] = (g(Z) - Y) / r_total) of the output layer."""
    r, n = A.shape[0], Y.shape[1]
    Z, dZ = np.empty((r, n), A.dtype), np.empty((r, n), A.dtype)
    for i in range(r):
        for j in range(n):
            s = A[i, 0] * P[j, 0]
            for k in range(1, m):
                s += A[i, k] * P[j, k]
            Z[i, j] = s + P[j, m]
    loss, mx, lse = 0.0, 0.0, 0.0
    for i in range(r):
        if code == 1:  # softmax: log-softmax shifted by the largest logit
            mx = Z[i, 0]
            for j in range(1, n):
                mx = max(mx, Z[i, j])
            tot = 0.0
            for j in range(n):
                tot += math.exp(Z[i, j] - mx)
            lse = math.log(tot)
        for j in range(n):
            z, y = Z[i, j], Y[i, j]
            if code == 0:  # binary cross-entropy
                loss += (z if z > 0 else 0.0) - z * y + math.log1p(math.exp(-abs(z)))
                a = _sigmoid(z)
            elif code == 1:
                ls = (z - mx) - lse
                loss -= y * ls
                a = math.exp(ls)
            else:  # half squared error
                d = z - y
                loss += 0.5 * (d * d)
                a = z
            dZ[i, j] = (a - y) / r_total
    return loss, dZ


@njit(cache=True)
def _grad_block(dZ, A, g, m, n):
    """[dW | db] = dZ^T [A | 1] into the (n, m + 1) block g."""
    r = A.shape[0]
    for j in range(n):
        for k in range(m + 1):
            g[j, k] = 0.0
        for i in range(r):
            d = dZ[i, j]
            for k in range(m):
                g[j, k] += d * A[i, k]
            g[j, m] += d


@njit(cache=True)
def forward_backward(X, Y, theta, grad, sizes, offs, hid, out, slope, masks, moffs, r_total):
    """Loss sum of the rows X, Y and their share of the gradient, into ``grad``.

    theta, grad: flat ``core.layout`` vectors (block l at offs[l]); masks: the hidden
    layers' dropout masks, flattened (layer l at moffs[l]; empty: no dropout)."""
    r, L = X.shape[0], sizes.shape[0] - 1
    use_mask = masks.shape[0] > 0
    As, Zs, Hs = [X], [X], [X]
    for l in range(L - 1):
        m, n = sizes[l], sizes[l + 1]
        P = theta[offs[l] : offs[l] + n * (m + 1)].reshape((n, m + 1))
        mk = masks[moffs[l] : moffs[l] + r * n].reshape((r, n)) if use_mask else X
        Z, H, A = _layer(As[l], P, m, n, hid, slope, mk, use_mask)
        As.append(A)
        Zs.append(Z)
        Hs.append(H)
    m = sizes[L - 1]
    P = theta[offs[L - 1] : offs[L - 1] + sizes[L] * (m + 1)].reshape((sizes[L], m + 1))
    loss, dZ = _output(As[L - 1], P, Y, m, out, r_total)
    for l in range(L - 1, -1, -1):
        m, n = sizes[l], sizes[l + 1]
        g = grad[offs[l] : offs[l] + n * (m + 1)].reshape((n, m + 1))
        _grad_block(dZ, As[l], g, m, n)
        if l == 0:
            break
        P = theta[offs[l] : offs[l] + n * (m + 1)].reshape((n, m + 1))
        dnew = np.empty((r, m), X.dtype)
        Z, H = Zs[l], Hs[l]
        for i in range(r):
            for k in range(m):
                s = dZ[i, 0] * P[0, k]
                for j in range(1, n):
                    s += dZ[i, j] * P[j, k]
                if use_mask:
                    s = s * masks[moffs[l - 1] + i * m + k]
                dnew[i, k] = _act_grad(hid, s, Z[i, k], H[i, k], slope)
        dZ = dnew
    return loss
