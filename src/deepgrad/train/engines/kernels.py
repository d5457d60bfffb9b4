"""The compiled kernels of the ``compiled`` engine: whole training steps, many per numba
call (loops, no NumPy call per layer), for small layers.

``train_steps`` runs a span of steps: each draws its rows (the epoch's permutation,
``engines.pcg``) or takes the rows it is given, its dropout masks (``pcg``, the bits
of ``core.dropout.step_masks``), runs ``forward_backward``, adds the L2 term, takes the
optimizer's update (``_update``) and undoes it when the result is not finite. The
formulas are ``engines.step``'s (the canonical link dZ^[L] = (g(Z^[L]) - Y) / r, the bias
as the last column of each ``core.layout`` block), written as loops; the per-step
scalars (schedule, bias corrections) come from ``FlatRule.scalars``, so they exist once.
The tests hold it against the reference engine at 1e-12 in float64. Compiled on first
use and cached on disk (``cache=True``): a fresh process loads it.

Importing this module needs numba; ``engines.compiled`` imports it only when asked.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from deepgrad.train.engines import pcg

__all__ = ["HIDDEN", "OUTPUT", "RULES", "LEAKY_SLOPE", "STOPS", "forward_backward", "train_steps"]

HIDDEN = {"relu": 0, "leaky_relu": 1, "tanh": 2, "sigmoid": 3, "linear": 4}
OUTPUT = {"sigmoid": 0, "softmax": 1, "linear": 2}
RULES = {"gd": 0, "momentum": 1, "rmsprop": 2, "adam": 3}  # FlatRule.kind's name
# What stopped a span: the step's cost, its gradient or the updated parameters not
# finite (the update undone), or a row of X not finite (memory-mapped data is checked).
STOPS = {1: "cost", 2: "gradient", 3: "parameters", 4: "data"}
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


@njit(cache=True)
def _update(rule, theta, G, s0, s1, hyper, sc):
    """The flat rule's update of theta and its slots, in place, in the order of its
    NumPy operations (``optim.optimizers``' directions); True if theta stays finite.

    hyper (in theta's dtype): momentum [beta, 1 - beta], rmsprop [beta, 1 - beta, eps],
    adam [b1, 1 - b1, b2, 1 - b2, eps]; sc: FlatRule.scalars, [alpha_t, ...]."""
    lr, ok = sc[0], True
    for i in range(theta.shape[0]):
        g = G[i]
        if rule == 0:
            u = g * lr
        elif rule == 1:
            v = s0[i] * hyper[0] + g * hyper[1]
            s0[i] = v
            u = v * lr
        elif rule == 2:
            sq = s0[i] * hyper[0] + (g * g) * hyper[1]
            s0[i] = sq
            u = (g / (math.sqrt(sq) + hyper[2])) * lr
        else:
            mu = s0[i] * hyper[0] + g * hyper[1]
            nu = s1[i] * hyper[2] + (g * g) * hyper[3]
            s0[i], s1[i] = mu, nu
            u = ((mu / sc[1]) / (math.sqrt(nu / sc[2]) + hyper[4])) * lr
        t = theta[i] - u
        theta[i] = t
        ok = ok and math.isfinite(t)
    return ok


@njit(cache=True)
def _masks(out, seed, epoch, index, threshold, scale):
    """core.dropout.step_masks of one step, every hidden layer's (rows, n) mask one after
    another in ``out``: 16-bit units of PCG64(SeedSequence([seed, epoch, index, 1])),
    little-endian within each raw draw, kept below ``threshold``."""
    st = pcg.pcg64_state(pcg.seed_words(np.array([seed, epoch, index, 1], np.int64)))
    raw = np.empty((out.shape[0] + 3) // 4, np.uint64)
    pcg.raw_draws(st, raw)
    for u in range(out.shape[0]):
        unit = (raw[u // 4] >> np.uint64(16 * (u % 4))) & np.uint64(0xFFFF)
        out[u] = scale if unit < threshold else 0.0


@njit(cache=True)
def _all_finite(a):
    for x in a.ravel():
        if not math.isfinite(x):
            return False
    return True


@njit(cache=True)
def train_steps(
    X, Y, theta, s0, s1, G, sizes, offs, codes, given, where, order, reg, dropout, update,
    costs,
):  # fmt: skip
    """Run ``len(costs)`` steps; returns (steps kept, 0 or the STOPS code of the next).

    theta, G (the gradient of the last step, L2 included), s0, s1 (the rule's slots):
    flat ``core.layout`` vectors, updated in place. codes: (hidden, output, rule).
    where = (epoch, index of the first step in it, seed). Rows: ``given`` (one step's
    rows) or, when it is empty, drawn: the epoch's permutation cut into batches by
    order = (m, batch size, shuffle, check X), going on into the next epochs.
    reg: (lambda, m_reg; 0 = the batch's rows); dropout: (keep threshold, 1 / keep_prob
    as an array of theta's dtype; threshold < 0: no dropout); update: (hyper, the
    scalars table: one row per step). costs[k]: J of step k (also of a step that stops
    the span, for its message)."""
    m, bs, shuffle, check = order
    epoch, b, seed = where
    hid, out, rule = codes
    hyper, scalars = update
    n_batches = (m + bs - 1) // bs
    hidden = 0
    for n in sizes[1:-1]:
        hidden += n
    perm = np.empty(m, np.int64)
    backup = np.empty((3, theta.shape[0]), theta.dtype)
    regd = np.empty(1, theta.dtype)
    for k in range(costs.shape[0]):
        if given.shape[0] > 0:
            rows = given
        else:
            if b == n_batches:
                epoch, b = epoch + 1, 0
            if b == 0 or k == 0:
                if shuffle:
                    st = pcg.pcg64_state(pcg.seed_words(np.array([seed, epoch], np.int64)))
                    pcg.permutation(st, m, perm)
                else:
                    for i in range(m):
                        perm[i] = i
            rows = np.sort(perm[b * bs : min(b * bs + bs, m)])
        r = rows.shape[0]
        Xb, Yb = np.empty((r, X.shape[1]), theta.dtype), np.empty((r, Y.shape[1]), theta.dtype)
        for i in range(r):
            Xb[i] = X[rows[i]]
            Yb[i] = Y[rows[i]]
        if check and not _all_finite(Xb):
            return k, 4
        masks = np.empty(r * hidden if dropout[0] >= 0 else 0, theta.dtype)
        moffs = np.zeros(sizes.shape[0], np.int64)
        if dropout[0] >= 0:
            _masks(masks, seed, epoch, b, dropout[0], dropout[1][0])
            for l in range(1, sizes.shape[0] - 1):
                moffs[l] = moffs[l - 1] + r * sizes[l]
        loss = forward_backward(Xb, Yb, theta, G, sizes, offs, hid, out, LEAKY_SLOPE,
                                masks, moffs, float(r))  # fmt: skip
        lam = reg[0] / (r if reg[1] == 0 else reg[1])
        J = loss / r
        if lam != 0.0:
            regd[0] = lam
            wsq = 0.0
            for l in range(sizes.shape[0] - 1):
                mi, n = sizes[l], sizes[l + 1]
                for j in range(n):
                    for i in range(mi):
                        w = theta[offs[l] + j * (mi + 1) + i]
                        wsq += w * w
                        G[offs[l] + j * (mi + 1) + i] += regd[0] * w
            J += lam / 2.0 * wsq
        costs[k] = J
        if not math.isfinite(J):
            return k, 1
        backup[0] = theta
        backup[1, : s0.shape[0]] = s0
        backup[2, : s1.shape[0]] = s1
        if not _update(rule, theta, G, s0, s1, hyper, scalars[k]):
            theta[:] = backup[0]
            s0[:] = backup[1, : s0.shape[0]]
            s1[:] = backup[2, : s1.shape[0]]
            return k, 2 if not _all_finite(G) else 3
        b += 1
    return costs.shape[0], 0
