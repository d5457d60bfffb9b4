"""Choosing the mini-batch size: the gradient noise scale and measured step times.

Gradient noise scale (McCandlish, Kaplan, Amodei et al. 2018, "An Empirical Model of
Large-Batch Training"). With per-example gradients g_i of the data loss L_i, true gradient
G = E[g_i] and per-example covariance Sigma,

    B_simple = tr(Sigma) / |G|^2.

A mini-batch of size B estimates G with noise tr(Sigma)/B, so for B << B_simple a step is
mostly noise (more steps are needed: S = S_min (1 + B_simple / B)) and for B >> B_simple
extra examples add little (E = E_min (1 + B / B_simple)). Training time to a target is
therefore about S_min (1 + B_simple / B) * t_step(B), which ``recommend`` minimises over
the measured t_step(B).

Cheap per-example norms for dense layers. For one example i the gradient of W^[l] is the
outer product dz_i a_i^T (dz_i = dL_i/dZ^[l]_i, a_i = A^[l-1]_i), whose squared Frobenius
norm is ||dz_i||^2 ||a_i||^2; the bias adds ||dz_i||^2. So

    ||g_i||^2 = sum_l ||dz^[l]_i||^2 (||a^[l-1]_i||^2 + 1)

comes from one ordinary forward/backward pass on the batch, without forming any
per-example gradient. With B examples of one batch and their mean gradient g_bar:

    tr(Sigma)_hat = (sum_i ||g_i||^2 - B ||g_bar||^2) / (B - 1)      (unbiased)
    |G|^2_hat     = ||g_bar||^2 - tr(Sigma)_hat / B                  (unbiased)

averaged over several batches before taking the ratio (the ratio of means is far less
noisy than the mean of ratios). The L2 term is deterministic: it adds nothing to Sigma
and is left out of G here (the noise scale of the data loss).

The full noise scale B_noise = tr(H Sigma) / (G^T H G) (``b_noise_interval``) weighs the
noise and the gradient by the Hessian H; it comes from Hessian-vector products (central
differences of two gradients) on groups of the same batches (``curvature_moments``).
"""

from __future__ import annotations

import math
import time
from statistics import NormalDist
from typing import NamedTuple

import numpy as np

from deepgrad.core import activations, losses
from deepgrad.core import network as nw
from deepgrad.core.checks import check_float, check_int
from deepgrad.core.flat import flatten

__all__ = [
    "per_example_sq_norms",
    "noise_scale",
    "NoiseScale",
    "batch_moments",
    "noise_scale_interval",
    "NoiseInterval",
    "student_t_quantile",
    "ratio_interval",
    "batch_rows",
    "b_noise_interval",
    "BNoise",
    "curvature_moments",
    "hessian_vector_product",
    "lr_range_test",
    "RangeTest",
    "scaled_rates",
    "band",
    "track_noise_scale",
    "TrackPoint",
    "validate",
    "Validation",
    "step_times",
    "recommend",
    "Recommendation",
    "candidate_sizes",
    "compare",
    "Run",
    "moving_cost",
    "time_to_target",
    "TimeToTarget",
]


def per_example_sq_norms(params: dict, X, Y, spec: nw.Spec):
    """(||g_i||^2 for each example (m,), mean gradient dict) of the data loss.

    X: (m, n^[0]); Y encoded (m, n^[L]). g_i is the gradient of L_i (not divided by m);
    the mean gradient is (1/m) sum_i g_i, i.e. ``network.backward`` with lambda = 0.
    """
    ZL, cache = nw.forward(params, X, spec)
    act = activations.get(spec.hidden_activation)
    dz = losses.get(spec.output).activation(ZL) - Y  # per example: dL_i/dZ^[L]_i
    m = X.shape[0]
    sq = np.zeros(m)
    mean = {}
    for l in range(spec.L, 0, -1):
        a = cache.inputs[l - 1]
        sq += np.sum(dz * dz, axis=1, dtype=np.float64) * (
            np.sum(a * a, axis=1, dtype=np.float64) + 1.0
        )
        mean[f"W{l}"] = dz.T @ a / m
        mean[f"b{l}"] = np.sum(dz, axis=0) / m
        if l > 1:
            dz = act.backward(dz @ params[f"W{l}"], cache.Z[l - 2], cache.A[l - 2])
    return sq, mean


class NoiseScale(NamedTuple):
    """B_simple = trace / grad_sq, with the two estimates and how many examples went in."""

    b_simple: float
    trace: float  # tr(Sigma) estimate
    grad_sq: float  # |G|^2 estimate
    examples: int


def noise_scale(
    params: dict,
    X,
    Y,
    spec: nw.Spec,
    batch_size: int = 1024,
    batches: int = 8,
    rng: np.random.Generator | None = None,
) -> NoiseScale:
    """Estimate B_simple from ``batches`` random batches of ``batch_size`` rows.

    X (m, n^[0]) may be memory-mapped; Y encoded (m, n^[L]). Returns b_simple = inf when
    the estimate of |G|^2 is <= 0 (the gradient is lost in the noise: any batch is small).
    """
    batch_size = check_int("batch_size", batch_size, 2)
    batches = check_int("batches", batches, 1)
    rng = np.random.default_rng(0) if rng is None else rng
    m = X.shape[0]
    B = min(batch_size, m)
    if B < 2:
        raise ValueError(f"the noise scale needs at least 2 examples, got {m}")
    traces, grads = batch_moments(params, X, Y, spec, B, batches, rng)
    trace, grad_sq = float(np.mean(traces)), float(np.mean(grads))
    return NoiseScale(_ratio(trace, grad_sq), trace, grad_sq, B * batches)


def _ratio(trace: float, grad_sq: float) -> float:
    return trace / grad_sq if grad_sq > 0 else math.inf


def batch_moments(params: dict, X, Y, spec: nw.Spec, batch_size: int, batches: int, rng):
    """Per-batch unbiased estimates (tr(Sigma) (batches,), |G|^2 (batches,)).

    Each batch is ``batch_size`` distinct rows drawn at random; the batches are independent,
    which is what the interval of ``noise_scale_interval`` rests on. Sigma is the covariance
    of the gradient of one row drawn uniformly from the m rows (tr(Sigma) = mean ||g_i - G||^2).
    """
    m, B = X.shape[0], batch_size
    traces, grads = np.empty(batches), np.empty(batches)
    for k, idx in enumerate(batch_rows(rng, m, B, batches)):
        Xb = np.asarray(X[idx], dtype=params["W1"].dtype)
        sq, mean = per_example_sq_norms(params, Xb, Y[idx], spec)
        gbar_sq = sum(float(np.sum(np.square(v, dtype=np.float64))) for v in mean.values())
        s2 = (float(sq.sum()) - B * gbar_sq) / (B - 1)
        # rows drawn without replacement from m: E[s2] = m/(m-1) tr(Sigma) and
        # E||g_bar||^2 = |G|^2 + tr(Sigma)/B (m-B)/(m-1) (finite-population correction)
        traces[k] = s2 * (m - 1) / m
        grads[k] = gbar_sq - s2 * (m - B) / (m * B)
    return traces, grads


def batch_rows(rng: np.random.Generator, m: int, batch_size: int, batches: int) -> list:
    """``batches`` independent sorted draws of ``batch_size`` distinct rows out of m.

    All drawn before any is used, so every estimator built on them (``batch_moments``,
    ``curvature_moments``) sees the same batches from the same ``rng`` state.
    """
    return [np.sort(rng.choice(m, batch_size, replace=False)) for _ in range(batches)]


def candidate_sizes(m: int, low: int = 16, high: int = 8192) -> list[int]:
    """Powers of two from ``low`` to min(high, m), and 1000 (the seed's choice) if <= m."""
    sizes = {2**k for k in range(int(math.log2(low)), int(math.log2(high)) + 1) if 2**k <= m}
    if m >= 1000:
        sizes.add(1000)
    return sorted(sizes)


def step_times(
    net, X, Y, sizes, steps: int = 20, repeats: int = 3, min_seconds: float = 0.02
) -> dict[int, float]:
    """Median seconds per training step at each batch size (the fit loop, gd, this machine).

    Each size trains copies of ``net`` on the first steps*b rows (all of X if it is
    smaller) for k and then 2k epochs; a step's time is the slope, (t_2k - t_k) / (the
    steps of k epochs), so what a fit pays once (its set-up, a compiled engine's call
    and the bookkeeping of its spans of steps) is not counted per step, as in a long
    run. k doubles until the longer fit takes ``min_seconds`` (a compiled step of a small
    batch takes microseconds).
    """
    out = {}
    m = X.shape[0]
    for b in sizes:
        n = min(m, steps * b)
        batches = -(-n // b)
        per = []
        for _ in range(repeats):
            k = max(1, -(-steps // batches))
            t1 = _fit_seconds(net, X[:n], Y[:n], b, k)
            while True:
                t2 = _fit_seconds(net, X[:n], Y[:n], b, 2 * k)
                if t2 >= min_seconds or k * batches >= 2**16:
                    break
                k, t1 = 2 * k, t2  # the longer fit is the next shorter one
            slope = (t2 - t1) / (k * batches)
            per.append(slope if slope > 0 else t2 / (2 * k * batches))
        out[b] = float(np.median(per))
    return out


def _fit_seconds(net, X, Y, batch_size: int, epochs: int) -> float:
    """Wall seconds of one fit of a copy of ``net`` (gd, lr 1e-3, no shuffling)."""
    sub = net.copy()
    t = time.perf_counter()
    sub.fit(X, Y, batch_size=batch_size, epochs=epochs, learning_rate=1e-3, seed=0,
            shuffle=False, progress=False)  # fmt: skip
    return time.perf_counter() - t


class Recommendation(NamedTuple):
    batch_size: int
    b_simple: float  # the noise scale used: B_simple, or B_noise when ``name`` says so
    rows: list  # per size: dict(batch_size, step_s, epoch_s, steps_factor, relative_time)
    reason: str
    name: str = "B_simple"  # which noise scale b_simple holds: "B_simple" or "B_noise"


# the denominator of each noise scale, for the reason of a recommendation
_DENOMINATOR = {"B_simple": "|G|^2", "B_noise": "G^T H G"}


def recommend(
    times: dict[int, float], b_simple: float, m: int, name: str = "B_simple"
) -> Recommendation:
    """Pick the size minimising the predicted time to a target, (1 + B_simple/B) t_step(B).

    ``times``: seconds per step by batch size; ``m``: examples per epoch. ``b_simple`` is
    the noise scale used, named ``name`` in the reason: "B_simple" or "B_noise" (the full
    one of ``b_noise_interval``).
    """
    if name not in _DENOMINATOR:
        raise ValueError(f"name must be one of {sorted(_DENOMINATOR)}, got {name!r}")
    rows = []
    for b, t in sorted(times.items()):
        factor = 1.0 + (b_simple / b if math.isfinite(b_simple) else 1.0)
        rows.append(
            {
                "batch_size": b,
                "step_s": t,
                "epoch_s": t * -(-m // b),
                "steps_factor": factor,
                "predicted": factor * t,
            }
        )
    best = min(rows, key=lambda r: r["predicted"])
    for r in rows:
        r["relative_time"] = r["predicted"] / best["predicted"]
    bb = best["batch_size"]
    if not math.isfinite(b_simple):
        reason = (
            f"the gradient is lost in the noise at this point ({_DENOMINATOR[name]} <= 0 "
            f"estimated): "
            f"batch size {bb} is the cheapest per unit of progress measured here"
        )
    else:
        small = min(rows, key=lambda r: r["batch_size"])
        reason = (
            f"{name} ~ {b_simple:.0f}: steps needed scale as 1 + {name}/B, so batches "
            f"much below ~{b_simple:.0f} spend their steps on noise, and beyond it extra "
            f"examples add little progress. A step at {bb} takes {best['step_s'] * 1e3:.2f} ms "
            f"vs {small['step_s'] * 1e3:.2f} ms at {small['batch_size']}; "
            f"(1 + {name}/B) x time per step is smallest at {bb}"
        )
    return Recommendation(bb, b_simple, rows, reason, name)


class Run(NamedTuple):
    """One curve of ``compare``: its label, batch size, examples used and History."""

    label: str
    batch_size: int | None
    examples: int
    history: object


def compare(
    net,
    X,
    y,
    *,
    epochs: int = 20,
    learning_rate: float = 0.1,
    l2: float = 0.0,
    minibatch_sizes=(1000, 64),
    sgd_examples: int = 2000,
    sgd_epochs: int = 5,
    seed: int = 0,
) -> list[Run]:
    """Train copies of ``net`` on the same data with batch GD, each mini-batch size and SGD.

    Batch GD and the mini-batch runs see all m examples for ``epochs`` epochs; SGD (batch
    size 1) runs ``sgd_epochs`` epochs on the first ``sgd_examples`` rows (a Python-level
    step per example is slow). Same initial parameters, learning rate and L2 for all.
    """
    m = X.shape[0]
    plan = [("batch GD", None, m, epochs)]
    plan += [(f"mini-batch {b}", b, m, epochs) for b in minibatch_sizes if b < m]
    k = min(m, check_int("sgd_examples", sgd_examples, 1))
    plan.append((f"SGD (batch 1, first {k:,} examples)", 1, k, sgd_epochs))
    runs = []
    for label, b, n, ep in plan:
        sub = net.copy()
        h = sub.fit(
            X[:n],
            y[:n],
            batch_size=b,
            epochs=ep,
            learning_rate=learning_rate,
            l2=l2,
            seed=seed,
            progress=False,
        )
        runs.append(Run(label, b, n, h))
    return runs


# -- measured time to a target cost -------------------------------------------------------
class TimeToTarget(NamedTuple):
    """One batch size's run of ``time_to_target``.

    ``seconds``, ``steps`` and ``examples`` are None when the target was not reached within
    ``epochs`` epochs; ``final`` is the moving-average cost at the end of the run.
    """

    batch_size: int
    reached: bool
    seconds: float | None
    steps: int | None
    examples: int | None
    final: float
    epochs: int


def moving_cost(history, window: int) -> np.ndarray:
    """The mini-batch cost J averaged over the last ``window`` examples, after every step.

    Entry t weights each step's J by its examples, over the fewest most recent steps that
    cover >= ``window`` examples; NaN while fewer than ``window`` examples have been seen.
    So batch sizes are smoothed over the same amount of data, not the same number of steps.
    """
    J = np.asarray(history.iteration_cost, dtype=float)
    seen = np.asarray(history.iteration_examples, dtype=float)  # cumulative, after each step
    if J.size == 0:
        return J
    sizes = np.diff(seen, prepend=0.0)
    weighted = np.concatenate([[0.0], np.cumsum(J * sizes)])
    ends = np.concatenate([[0.0], seen])
    # first step u of the window ending at t: the last u with seen[t] - ends[u] >= window
    u = np.searchsorted(ends, seen - window, side="right") - 1
    out = np.full(J.size, np.nan)
    ok = u >= 0
    t = np.nonzero(ok)[0]
    out[t] = (weighted[t + 1] - weighted[u[t]]) / (seen[t] - ends[u[t]])
    return out


def time_to_target(
    net,
    X,
    y,
    sizes,
    target: float,
    *,
    epochs: int = 5,
    learning_rate: float = 0.1,
    l2: float = 0.0,
    window: float = 0.1,
    seed: int = 0,
) -> list[TimeToTarget]:
    """Train a copy of ``net`` at each batch size; when does the cost first reach ``target``?

    Each size trains from the same initial parameters for ``epochs`` epochs (plain GD,
    ``learning_rate``, ``l2``, shuffled with ``seed``). The cost is the seed's mini-batch J
    averaged over the last ``window`` x m examples (``moving_cost``), and the time is the
    training wall-clock time of the step where that average first falls to ``target``.
    Runs are not stopped early, so every size costs ``epochs`` epochs of training.
    """
    target = check_float("target", target, 0.0, low_open=True)
    epochs = check_int("epochs", epochs, 1)
    window = check_float("window", window, 0.0, 1.0, low_open=True)
    m = X.shape[0]
    out = []
    for b in sizes:
        b = check_int("batch size", b, 1, m)
        h = net.copy().fit(
            X,
            y,
            batch_size=b,
            epochs=epochs,
            learning_rate=learning_rate,
            l2=l2,
            seed=seed,
            progress=False,
            on_divergence="stop",
        )
        avg = moving_cost(h, max(b, int(math.ceil(window * m))))
        hit = np.nonzero(avg <= target)[0]
        final = float(avg[-1]) if avg.size else math.nan
        if hit.size:
            t = int(hit[0])
            out.append(
                TimeToTarget(
                    b,
                    True,
                    float(h.iteration_time[t]),
                    t + 1,
                    int(h.iteration_examples[t]),
                    final,
                    epochs,
                )
            )
        else:
            out.append(TimeToTarget(b, False, None, None, None, final, epochs))
    return out


# -- the noise scale with its uncertainty ---------------------------------------------------
class NoiseInterval(NamedTuple):
    """A noise scale with its confidence interval [low, high] at ``level``.

    ``estimate`` is a ``NoiseScale`` (B_simple, ``noise_scale_interval``) or a ``BNoise``
    (B_noise, ``b_noise_interval``); the interval is ``ratio_interval``'s.

    ``high`` is inf when the denominator (|G|^2 or G^T H G) is not clearly above 0 (the
    gradient may be lost in the noise: the data cannot rule out that any batch is small).
    """

    estimate: NoiseScale | BNoise
    low: float
    high: float
    level: float
    batches: int


def _interval_arguments(X, batch_size, batches, level, rng):
    """(rows per batch, batches, level, rng) of an interval estimate, each checked."""
    batch_size = check_int("batch_size", batch_size, 2)
    batches = check_int("batches", batches, 2)
    level = check_float("level", level, 0.0, 1.0, low_open=True, high_open=True)
    rng = np.random.default_rng(0) if rng is None else rng
    B = min(batch_size, X.shape[0])
    if B < 2:
        raise ValueError(f"the noise scale needs at least 2 examples, got {X.shape[0]}")
    return B, batches, level, rng


def noise_scale_interval(
    params: dict,
    X,
    Y,
    spec: nw.Spec,
    batch_size: int = 1024,
    batches: int = 16,
    level: float = 0.9,
    rng: np.random.Generator | None = None,
) -> NoiseInterval:
    """B_simple and a confidence interval from the spread of ``batches`` independent batches.

    B_simple = T/G is a ratio of means over the batches (T: tr(Sigma)_hat, G: |G|^2_hat
    per batch). Its variance by the delta method is var(T_k - B G_k) / (K G^2) with K
    batches; the interval is B -/+ t_{K-1} x that standard error (Student's t, since the
    variance is itself estimated from K values). It covers the noise scale of the
    parameters where it was estimated, not of a later point of training
    (``track_noise_scale``).

    Examples
    --------
    >>> ci = noise_scale_interval(net.params, X, Y, net.spec, batch_size=256)  # doctest: +SKIP
    >>> ci.low <= ci.estimate.b_simple <= ci.high  # doctest: +SKIP
    True
    """
    B, batches, level, rng = _interval_arguments(X, batch_size, batches, level, rng)
    traces, grads = batch_moments(params, X, Y, spec, B, batches, rng)
    b, low, high = ratio_interval(traces, grads, level)
    est = NoiseScale(b, float(traces.mean()), float(grads.mean()), B * batches)
    return NoiseInterval(est, low, high, level, batches)


def ratio_interval(num, den, level: float) -> tuple[float, float, float]:
    """(mean(num)/mean(den), low, high): a ratio of means over K independent batches.

    ``num``, ``den``: (K,) per-batch unbiased estimates of the numerator and denominator.
    By the delta method the ratio R has standard error sd(num_k - R den_k) / (sqrt(K)
    mean(den)); the interval is R -/+ t_{K-1} x that error (Student's t: the variance is
    itself estimated from K values), with the lower end at least 0. When mean(den) is not
    clearly above 0 (within t_{K-1} of its own standard error) the upper end is infinite:
    the data cannot rule out an unbounded ratio. R = inf and [0, inf] when mean(den) <= 0.
    """
    num, den = np.asarray(num, dtype=np.float64), np.asarray(den, dtype=np.float64)
    K = num.shape[0]
    N, D = float(num.mean()), float(den.mean())
    if D <= 0:
        return _ratio(N, D), 0.0, math.inf
    R = N / D
    t = student_t_quantile((1 + level) / 2, K - 1)
    half = t * float(np.std(num - R * den, ddof=1)) / (math.sqrt(K) * D)
    d_se = float(np.std(den, ddof=1)) / math.sqrt(K)
    return R, max(0.0, R - half), math.inf if D <= t * d_se else R + half


# -- the full noise scale: curvature from Hessian-vector products -------------------------
class BNoise(NamedTuple):
    """B_noise = trace_h_sigma / g_h_g (McCandlish et al.'s noise scale, with the Hessian).

    ``examples``: rows of the noise batches; ``hvps``: Hessian-vector products computed
    (each is two gradients of a Hessian batch of as many rows).
    """

    b_noise: float
    trace_h_sigma: float  # tr(H Sigma) estimate
    g_h_g: float  # G^T H G estimate
    examples: int
    hvps: int


def hessian_vector_product(params: dict, X, Y, spec: nw.Spec, v):
    """H v for the Hessian H of the mean data loss over the rows X (m, n^[0]), Y (m, n^[L]).

    ``params`` and ``v`` (the flat layout of ``core.flat.flatten``) in float64. A central
    difference of two hand-written gradients, [g(theta + h v) - g(theta - h v)] / (2h),
    error O(h^2) (exact for a quadratic loss). The step moves theta by
    eps^(1/3) max(|theta|, 1) in norm: the balance of truncation (h^2) and rounding
    (eps/h) for a central difference, relative to the scale of the parameters.
    """
    theta, unflatten = flatten(params)
    nv = float(np.linalg.norm(v))
    if nv == 0.0:
        return np.zeros_like(theta)
    h = np.finfo(np.float64).eps ** (1 / 3) * max(float(np.linalg.norm(theta)), 1.0) / nv

    def grad(th):
        return flatten(nw.cost_and_gradients(unflatten(th), X, Y, spec)[1])[0]

    return (grad(theta + h * v) - grad(theta - h * v)) / (2 * h)


def curvature_moments(
    params: dict, X, Y, spec: nw.Spec, batch_size: int, batches: int, rng, groups: int = 4
):
    """Per-batch unbiased estimates (tr(H Sigma) (batches,), G^T H G (batches,)), float64.

    The batches are ``batch_rows``' (the same as ``batch_moments``' from the same ``rng``
    state). Each is split at random into J = ``groups`` groups of n rows with mean
    gradients a_j (mean a), and an independent Hessian batch of n rows gives H_D
    (E[H_D] = H and independent of the a_j, so E[a_j^T H_D a_j] = E[a_j^T H a_j]).
    Rows are drawn without replacement from m, so the a_j have covariance
    Sigma (m - n)/(n (m - 1)) each and -Sigma/(m - 1) between two groups, and

        tr(H Sigma)_hat = n (m - 1)/m x sum_j (a_j - a)^T H (a_j - a) / (J - 1)
        G^T H G_hat     = a^T H a - tr(H Sigma)_hat (m - J n) / (J n (m - 1))

    are unbiased: J Hessian-vector products per batch (H a and H (a_j - a) for J - 1
    groups; the deviations sum to 0) instead of one per example.
    """
    m, n = X.shape[0], batch_size // groups
    p64 = {k: np.asarray(v, dtype=np.float64) for k, v in params.items()}

    def rows(idx):
        return np.asarray(X[idx], dtype=np.float64), np.asarray(Y[idx], dtype=np.float64)

    def mean_grad(idx):
        return flatten(nw.cost_and_gradients(p64, *rows(idx), spec)[1])[0]

    traces, curv = np.empty(batches), np.empty(batches)
    for k, idx in enumerate(batch_rows(rng, m, batch_size, batches)):
        split = rng.permutation(idx)[: groups * n].reshape(groups, n)
        hess = rows(np.sort(rng.choice(m, n, replace=False)))  # as costly as a group
        a = np.stack([mean_grad(np.sort(g)) for g in split])
        mean = a.mean(axis=0)
        dev = a[:-1] - mean
        Hdev = np.stack([hessian_vector_product(p64, *hess, spec, v) for v in dev])
        Hdev = np.vstack([Hdev, -Hdev.sum(axis=0)])  # H (a_J - a) = -sum of the others
        dev = np.vstack([dev, -dev.sum(axis=0)])
        quad = float(np.sum(dev * Hdev))
        traces[k] = n * (m - 1) / m * quad / (groups - 1)
        curv[k] = mean @ hessian_vector_product(p64, *hess, spec, mean) - traces[k] * (
            m - groups * n
        ) / (groups * n * (m - 1))
    return traces, curv


def b_noise_interval(
    params: dict,
    X,
    Y,
    spec: nw.Spec,
    batch_size: int = 1024,
    batches: int = 16,
    level: float = 0.9,
    rng: np.random.Generator | None = None,
    groups: int = 4,
) -> NoiseInterval:
    """B_noise = tr(H Sigma) / (G^T H G) and its confidence interval at ``level``.

    X (m, n^[0]), Y encoded (m, n^[L]). The full noise scale of McCandlish et al. (2018),
    which B_simple = tr(Sigma)/|G|^2 equals when the Hessian H of the data loss is a
    multiple of the identity. Per-batch estimates from ``curvature_moments`` (the batches
    of ``noise_scale_interval`` for the same ``rng``), the ratio of their means with the
    interval of ``ratio_interval``. Cost: per batch, 2 gradients of half-batches and 4 of
    a Hessian batch of ``batch_size`` rows (about 5x ``noise_scale_interval``).

    Raises ValueError when B_noise is undefined here: non-finite Hessian-vector products or
    tr(H Sigma) estimated <= 0. G^T H G not clearly above 0 gives an infinite upper end
    (and G^T H G <= 0 an infinite estimate), as |G|^2 does for B_simple: the gradient is
    lost in the noise, or the loss curves down along it; the two are not told apart (a
    test for "clearly below 0" misfires on convex problems: the per-batch G^T H G are
    heavy-tailed).

    Examples
    --------
    >>> ci = b_noise_interval(net.params, X, Y, net.spec, batch_size=256)  # doctest: +SKIP
    >>> ci.low <= ci.estimate.b_noise <= ci.high  # doctest: +SKIP
    True
    """
    B, batches, level, rng = _interval_arguments(X, batch_size, batches, level, rng)
    groups = check_int("groups", groups, 2, B)
    with np.errstate(over="ignore", invalid="ignore"):  # non-finite: the error below
        traces, curv = curvature_moments(params, X, Y, spec, B, batches, rng, groups)
    if not (np.all(np.isfinite(traces)) and np.all(np.isfinite(curv))):
        raise ValueError("B_noise: the Hessian-vector products are not finite here")
    T, Q = float(traces.mean()), float(curv.mean())
    if T <= 0:
        raise ValueError(
            f"B_noise: tr(H Sigma) is estimated {T:.3g} <= 0 (the loss curves down along "
            "the gradient noise here), so tr(H Sigma)/(G^T H G) is undefined"
        )
    b, low, high = ratio_interval(traces, curv, level)
    est = BNoise(b, T, Q, groups * (B // groups) * batches, groups * batches)
    return NoiseInterval(est, low, high, level, batches)


def student_t_quantile(p: float, dof: int) -> float:
    """Quantile of Student's t with ``dof`` degrees of freedom (Cornish-Fisher, 4 terms).

    Accurate to about 1e-3 for dof >= 5 at the usual levels; NumPy has no t quantile and
    the core stays free of SciPy.
    """
    z = NormalDist().inv_cdf(p)
    n = float(dof)
    return (
        z
        + (z**3 + z) / (4 * n)
        + (5 * z**5 + 16 * z**3 + 3 * z) / (96 * n**2)
        + (3 * z**7 + 19 * z**5 + 17 * z**3 - 15 * z) / (384 * n**3)
    )


# -- the learning rate of each size -----------------------------------------------------
class RangeTest(NamedTuple):
    """A learning-rate range test at one batch size: the cost after a short run per rate.

    ``costs[k]`` is the moving-average cost at the end of the run at ``rates[k]`` (inf when
    it diverged); ``best`` the rate with the lowest one; ``largest_stable`` the largest
    rate that did not diverge.
    """

    batch_size: int
    rates: tuple
    costs: tuple
    best: float
    largest_stable: float
    examples: int


def lr_range_test(
    net, X, y, batch_size: int, rates, *, examples: int | None = None, seed: int = 0
) -> RangeTest:
    """Train a copy of ``net`` at each rate for ``examples`` rows (one pass), batch ``batch_size``.

    The rate with the lowest cost at the end (averaged over the last quarter of the run)
    is the best step at this batch size for this budget: the eps(B_ref) the model scales.
    """
    rates = tuple(sorted(check_float("rates", r, 0.0, low_open=True) for r in rates))
    if not rates:
        raise ValueError("rates: at least one learning rate is needed, got none")
    n = X.shape[0] if examples is None else min(X.shape[0], check_int("examples", examples, 1))
    batch_size = check_int("batch_size", batch_size, 1, n)
    costs = []
    for r in rates:
        h = net.copy().fit(
            X[:n],
            y[:n],
            batch_size=batch_size,
            epochs=1,
            learning_rate=r,
            seed=seed,
            progress=False,
            on_divergence="stop",
        )
        end = moving_cost(h, max(batch_size, n // 4))[-1]
        costs.append(float(end) if np.isfinite(end) and h.stopped is None else math.inf)
    costs_a = np.asarray(costs)
    stable = [r for r, c in zip(rates, costs, strict=True) if math.isfinite(c)]
    if not stable:
        raise ValueError(f"rates: every learning rate in {list(rates)} diverged")
    best = rates[int(np.argmin(costs_a))]
    return RangeTest(batch_size, rates, tuple(costs), best, max(stable), n)


def scaled_rates(eps_ref: float, b_ref: int, b_noise: float, sizes, cap: float) -> dict:
    """eps(B) = eps_max / (1 + B_noise / B), with eps_max fixed by eps(b_ref) = eps_ref.

    McCandlish et al. (2018), section 2, for plain SGD: the optimal step grows with B and
    saturates near B_noise. ``cap`` (the largest stable rate seen) bounds the growth: the
    model knows nothing of the step beyond which plain GD diverges. With B_noise = inf
    the step is proportional to B (the linear scaling rule).
    """
    out = {}
    for b in sorted(sizes):
        if math.isfinite(b_noise):
            eps = eps_ref * (1 + b_noise / b_ref) / (1 + b_noise / b)
        else:
            eps = eps_ref * b / b_ref
        out[b] = float(min(cap, eps))
    return out


def band(times: dict, interval: NoiseInterval, m: int, factor: float = 1.25) -> list[int]:
    """Sizes predicted within ``factor`` of the best for some B_simple in the interval.

    The predicted time to a target is (1 + B_simple/B) t_step(B) (``recommend``). Every
    noise scale in [low, high] (33 points, geometric) picks its own best; a size is in the
    band when, for at least one of them, it is within ``factor`` of that best. An infinite
    ``high`` stands for a noise scale far above every size (1e4 x the largest).
    """
    factor = check_float("factor", factor, 1.0)
    high = interval.high if math.isfinite(interval.high) else 1e4 * max(times)
    low = max(interval.low, 1e-12)
    keep = set()
    for bs in np.geomspace(low, max(high, low), 33):
        rows = recommend(times, float(bs), m).rows
        keep |= {r["batch_size"] for r in rows if r["relative_time"] <= factor}
    return sorted(keep)


# -- the noise scale during training ------------------------------------------------------
class TrackPoint(NamedTuple):
    """The noise scale after ``epochs`` epochs of training, at cost ``cost``."""

    epochs: float
    examples: int
    cost: float
    interval: NoiseInterval


def track_noise_scale(
    net,
    X,
    y,
    Y,
    *,
    batch_size: int = 64,
    learning_rate: float = 0.1,
    epochs: int = 5,
    noise_batch: int = 1024,
    seed: int = 0,
) -> list[TrackPoint]:
    """B_simple (with its interval) at the start and after each epoch of training a copy.

    ``y`` as ``fit`` takes it, ``Y`` the same targets encoded (m, n^[L]). The paper's point:
    the noise scale grows as the loss falls, so a size chosen early may be too small late.
    """
    epochs = check_int("epochs", epochs, 0)
    sub = net.copy()
    m = X.shape[0]
    out = []
    for e in range(epochs + 1):
        if e:
            sub.fit(
                X,
                y,
                batch_size=batch_size,
                epochs=1,
                learning_rate=learning_rate,
                seed=seed + e,
                progress=False,
            )
        rng = np.random.default_rng(seed + 1000 + e)
        ci = noise_scale_interval(sub.params, X, Y, sub.spec, noise_batch, rng=rng)
        rows = rng.choice(m, min(m, 8192), replace=False)
        J = float(
            nw.cost(sub.params, np.asarray(X[np.sort(rows)], sub.dtype), Y[np.sort(rows)], sub.spec)
        )
        out.append(TrackPoint(float(e), e * m, J, ci))
    return out


# -- the measured check ---------------------------------------------------------------------
class Validation(NamedTuple):
    """Each (size, rate) trained to the target, and whether the recommended pair held.

    ``runs``: (batch_size, learning_rate, TimeToTarget). ``ratio``: the recommended pair's
    seconds over the fastest pair's (None when either did not reach the target).
    """

    runs: list
    recommended: tuple
    fastest: tuple | None
    ratio: float | None
    passed: bool
    fastest_in_band: bool
    message: str


def validate(
    net,
    X,
    y,
    rates: dict,
    target: float,
    *,
    recommended: int,
    band_sizes=(),
    factors=(1.0,),
    limit: float = 1.25,
    epochs: int = 5,
    l2: float = 0.0,
    window: float = 0.1,
    seed: int = 0,
) -> Validation:
    """Train every size at its recommended rate (times each of ``factors``) to ``target``.

    Passes when the recommended (size, rate) reaches the target in at most ``limit`` x the
    wall time of the fastest pair measured. ``factors`` (1 only, by default) widens the
    grid of rates around each size's recommended one, for the benchmark's bar.
    """
    limit = check_float("limit", limit, 1.0)
    if recommended not in rates:
        raise ValueError(
            f"recommended: batch size {recommended!r} has no rate in rates {sorted(rates)}"
        )
    runs = []
    for b, lr in sorted(rates.items()):
        for f in sorted(set(factors) | {1.0}):
            r = time_to_target(
                net,
                X,
                y,
                [b],
                target,
                epochs=epochs,
                learning_rate=lr * f,
                l2=l2,
                window=window,
                seed=seed,
            )[0]
            runs.append((b, lr * f, r))
    pick = (recommended, rates[recommended])
    mine = next(r for b, lr, r in runs if (b, lr) == pick)
    reached = [(b, lr, r) for b, lr, r in runs if r.reached]
    if not reached:
        msg = f"no (size, rate) reached J <= {target:g} within {epochs} epochs: no recommendation"
        return Validation(runs, pick, None, None, False, False, msg)
    b, lr, best = min(reached, key=lambda t: t[2].seconds)
    ratio = mine.seconds / best.seconds if mine.reached else None
    passed = ratio is not None and ratio <= limit
    inband = b in band_sizes
    if ratio is None:
        msg = (
            f"the recommended pair (batch {pick[0]}, lr {pick[1]:.3g}) never reached "
            f"J <= {target:g}: no recommendation"
        )
    else:
        msg = (
            f"recommended (batch {pick[0]}, lr {pick[1]:.3g}) took {ratio:.2f}x the fastest "
            f"(batch {b}, lr {lr:.3g}): {'within' if passed else 'beyond'} {limit:g}x; "
            f"fastest size {'inside' if inband else 'outside'} the band"
        )
    return Validation(runs, pick, (b, lr), ratio, passed, inband, msg)
