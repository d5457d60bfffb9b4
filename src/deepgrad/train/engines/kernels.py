"""The compiled kernels of the ``compiled`` engine: whole training steps, many per numba
call (loops, no NumPy call per layer), for small layers.

``train_steps`` runs a span of steps: each draws its rows (the epoch's permutation,
``engines.pcg``) or takes the rows it is given, draws its dropout masks (``pcg``, the
bits of ``core.dropout.step_masks``), runs the forward and backward pass, adds the L2
term, takes the optimizer's update (``_update``) and undoes it when the result is not
finite. Activations are kept transposed, (units, rows), so the loops over a batch's rows
are innermost and run in SIMD lanes; a span allocates its buffers once. The formulas
are ``engines.step``'s (the canonical link dZ^[L] = (g(Z^[L]) - Y) / r, the bias as the
last column of each ``core.layout`` block), written as loops; the per-step scalars
(schedule, bias corrections) come from ``FlatRule.scalars``, so they exist once. The
tests hold it against the reference engine at 1e-12 in float64. Compiled on first use
and cached on disk (``cache=True``): a fresh process loads it.

Importing this module needs numba; ``engines.compiled`` imports it only when asked.
"""

from __future__ import annotations

import math

import numpy as np
from numba import njit

from deepgrad.train.engines import pcg

__all__ = ["HIDDEN", "OUTPUT", "RULES", "LEAKY_SLOPE", "STOPS", "train_steps"]

HIDDEN = {"relu": 0, "leaky_relu": 1, "tanh": 2, "sigmoid": 3, "linear": 4}
OUTPUT = {"sigmoid": 0, "softmax": 1, "linear": 2}
RULES = {"gd": 0, "momentum": 1, "rmsprop": 2, "adam": 3}  # FlatRule.kind's name
# What stopped a span: the step's cost, its gradient or the updated parameters not
# finite (the update undone), or a row of X not finite (memory-mapped data is checked).
STOPS = {"cost": 1, "gradient": 2, "parameters": 3, "data": 4}
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
def _act_grad(code, da, a, slope):
    """dA * g'(Z) from A = g(Z) (before dropout), as core.activations' backward; for
    (leaky) ReLU, Z > 0 exactly where g(Z) > 0."""
    if code == 0:
        return da if a > 0 else 0.0 * da
    if code == 1:
        return da if a > 0 else slope * da
    if code == 2:
        return da * (1.0 - a * a)
    if code == 3:
        return da * a * (1.0 - a)
    return da


# Sums over the rows may be reordered (SIMD lanes) and a multiply-add fused: the numbers
# stay within 1e-12 of the reference's. No flag assumes that numbers are finite.
FAST = {"reassoc", "contract"}


@njit(cache=True, fastmath=FAST)
def _affine(AT, a_in, out, theta, p, m, n, r):
    """out[j * r + i] = sum_k A[k, i] W[j, k] (no bias yet): layer input A as the (m, r)
    block of AT at a_in, [W | b] the (n, m + 1) block of theta at p. Rows innermost."""
    for j in range(n):
        o, w = j * r, theta[p + j * (m + 1)]
        for i in range(r):
            out[o + i] = AT[a_in + i] * w
        for k in range(1, m):
            w, src = theta[p + j * (m + 1) + k], a_in + k * r
            for i in range(r):
                out[o + i] += AT[src + i] * w


@njit(cache=True, fastmath=FAST)
def _forward(AT, HT, aoff, theta, sizes, offs, r, hid, slope, masks, use_mask):
    """The hidden layers: block l of AT, (n^[l], r), is g(Z^[l]) (times the mask, whose
    copy without it HT keeps for g'); block 0 holds the batch's X transposed."""
    for l in range(sizes.shape[0] - 2):
        m, n, o = sizes[l], sizes[l + 1], aoff[l + 1]
        Z = AT[o : o + n * r]
        _affine(AT, aoff[l], Z, theta, offs[l], m, n, r)
        for j in range(n):
            b = theta[offs[l] + j * (m + 1) + m]
            for i in range(j * r, j * r + r):
                h = _act(hid, Z[i] + b, slope)
                if use_mask:
                    HT[o + i] = h
                    Z[i] = h * masks[o - aoff[1] + i]
                else:
                    Z[i] = h


@njit(cache=True, fastmath=FAST)
def _output(AT, aoff, theta, sizes, offs, r, YT, DZ, code):
    """(sum of the losses, DZ = (g(Z^[L]) - Y) / r as (n^[L], r)) of the output layer."""
    L = sizes.shape[0] - 1
    m, n, p = sizes[L - 1], sizes[L], offs[L - 1]
    _affine(AT, aoff[L - 1], DZ, theta, p, m, n, r)
    for j in range(n):
        b = theta[p + j * (m + 1) + m]
        for i in range(j * r, j * r + r):
            DZ[i] += b
    loss = 0.0
    if code == 1:  # softmax: log-softmax shifted by the largest logit, per row
        for i in range(r):
            mx = DZ[i]
            for j in range(1, n):
                mx = max(mx, DZ[j * r + i])
            tot = 0.0
            for j in range(n):
                tot += math.exp(DZ[j * r + i] - mx)
            lse = math.log(tot)
            for j in range(n):
                ls, y = (DZ[j * r + i] - mx) - lse, YT[j * r + i]
                loss -= y * ls
                DZ[j * r + i] = (math.exp(ls) - y) / r
        return loss
    for i in range(n * r):
        z, y = DZ[i], YT[i]
        if code == 0:  # binary cross-entropy; exp(-|z|) once for the loss and sigmoid
            e = math.exp(-abs(z))
            loss += (z if z > 0 else 0.0) - z * y + math.log1p(e)
            DZ[i] = ((1.0 / (1.0 + e) if z >= 0 else e / (1.0 + e)) - y) / r
        else:  # half squared error
            d = z - y
            loss += 0.5 * (d * d)
            DZ[i] = d / r
    return loss


@njit(cache=True, fastmath=FAST)
def _backward(AT, HT, aoff, theta, G, sizes, offs, r, hid, slope, masks, use_mask, cur, nxt):
    """[dW | db] = dZ^T [A | 1] of every layer into G, from dZ^[L] in ``cur``."""
    for l in range(sizes.shape[0] - 2, -1, -1):
        m, n, p, a_in = sizes[l], sizes[l + 1], offs[l], aoff[l]
        for j in range(n):
            d0 = j * r
            for k in range(m):
                s, src = 0.0, a_in + k * r
                for i in range(r):
                    s += cur[d0 + i] * AT[src + i]
                G[p + j * (m + 1) + k] = s
            s = 0.0
            for i in range(r):
                s += cur[d0 + i]
            G[p + j * (m + 1) + m] = s
        if l == 0:
            break
        for k in range(m):  # dA^[l] = W^T dZ, times the mask, times g'(Z^[l])
            o, w = k * r, theta[p + k]
            for i in range(r):
                nxt[o + i] = cur[i] * w
            for j in range(1, n):
                w, d0 = theta[p + j * (m + 1) + k], j * r
                for i in range(r):
                    nxt[o + i] += cur[d0 + i] * w
            h = a_in + k * r
            for i in range(r):
                if use_mask:
                    nxt[o + i] = _act_grad(hid, nxt[o + i] * masks[h - aoff[1] + i],
                                           HT[h + i], slope)  # fmt: skip
                else:
                    nxt[o + i] = _act_grad(hid, nxt[o + i], AT[h + i], slope)
        cur, nxt = nxt, cur


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
    for x in a:
        if not math.isfinite(x):
            return False
    return True


@njit(cache=True)
def _epoch_rows(perm, bs, batch_of, cursor, out):
    """Each batch's rows in ascending order, batch after batch, into ``out``: batch b
    holds perm[b bs : (b + 1) bs], sorted (a pass over the rows instead of a sort)."""
    m = perm.shape[0]
    for idx in range(m):
        batch_of[perm[idx]] = idx // bs
    for b in range(cursor.shape[0]):
        cursor[b] = b * bs
    for row in range(m):
        b = batch_of[row]
        out[cursor[b]] = row
        cursor[b] += 1


@njit(cache=True)
def _transpose_masks(rowwise, out, sizes, r):
    """The step's masks, row-major per layer as drawn, into AT's (n, r) layout."""
    off = 0
    for l in range(1, sizes.shape[0] - 1):
        n = sizes[l]
        for i in range(r):
            for k in range(n):
                out[off + k * r + i] = rowwise[off + i * n + k]
        off += n * r


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
    dt = theta.dtype
    n_batches = (m + bs - 1) // bs
    L = sizes.shape[0] - 1
    width, units = 0, 0
    for l in range(L + 1):
        width, units = max(width, sizes[l]), units + sizes[l]
    hidden = units - sizes[0] - sizes[L]
    drawing = m if given.shape[0] == 0 else 0  # the epoch's order: only when drawn here
    use_mask = dropout[0] >= 0
    AT = np.empty(units * bs, dt)  # every layer's activations, (n, r) blocks
    HT = np.empty(units * bs if use_mask else 0, dt)
    YT, cur, nxt = np.empty(sizes[L] * bs, dt), np.empty(width * bs, dt), np.empty(width * bs, dt)
    drawn, masks = np.empty(hidden * bs, dt), np.empty(hidden * bs, dt)
    aoff = np.zeros(L + 1, np.int64)
    perm, rows_of = np.empty(drawing, np.int64), np.empty(drawing, np.int64)
    batch_of, cursor = np.empty(drawing, np.int64), np.empty(n_batches if drawing else 0, np.int64)
    backup = np.empty((3, theta.shape[0]), dt)
    regd = np.empty(1, dt)
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
                    _epoch_rows(perm, bs, batch_of, cursor, rows_of)
                else:
                    for i in range(m):
                        rows_of[i] = i
            rows = rows_of[b * bs : min(b * bs + bs, m)]
        r = rows.shape[0]
        for l in range(L):
            aoff[l + 1] = aoff[l] + sizes[l] * r
        for i in range(r):
            for j in range(sizes[0]):
                AT[j * r + i] = X[rows[i], j]
            for j in range(sizes[L]):
                YT[j * r + i] = Y[rows[i], j]
        if check and not _all_finite(AT[: sizes[0] * r]):
            return k, 4
        if use_mask:
            _masks(drawn[: hidden * r], seed, epoch, b, dropout[0], dropout[1][0])
            _transpose_masks(drawn, masks, sizes, r)
        _forward(AT, HT, aoff, theta, sizes, offs, r, hid, LEAKY_SLOPE, masks, use_mask)
        loss = _output(AT, aoff, theta, sizes, offs, r, YT, cur, out)
        _backward(AT, HT, aoff, theta, G, sizes, offs, r, hid, LEAKY_SLOPE, masks, use_mask,
                  cur, nxt)  # fmt: skip
        lam = reg[0] / (r if reg[1] == 0 else reg[1])
        J = loss / r
        if lam != 0.0:
            regd[0] = lam
            wsq = 0.0
            for l in range(L):
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
