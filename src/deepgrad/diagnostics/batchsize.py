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
"""

from __future__ import annotations

import math
from typing import NamedTuple

import numpy as np

from deepgrad.core import activations, losses
from deepgrad.core import network as nw
from deepgrad.core.checks import check_float, check_int

__all__ = [
    "per_example_sq_norms",
    "noise_scale",
    "NoiseScale",
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
    traces, grads = [], []
    for _ in range(batches):
        idx = np.sort(rng.choice(m, B, replace=False))
        Xb = np.asarray(X[idx], dtype=params["W1"].dtype)
        sq, mean = per_example_sq_norms(params, Xb, Y[idx], spec)
        gbar_sq = sum(float(np.sum(np.square(v, dtype=np.float64))) for v in mean.values())
        tr = (float(sq.sum()) - B * gbar_sq) / (B - 1)
        traces.append(tr)
        grads.append(gbar_sq - tr / B)
    trace, grad_sq = float(np.mean(traces)), float(np.mean(grads))
    b = trace / grad_sq if grad_sq > 0 else math.inf
    return NoiseScale(b, trace, grad_sq, B * batches)


def candidate_sizes(m: int, low: int = 16, high: int = 8192) -> list[int]:
    """Powers of two from ``low`` to min(high, m), and 1000 (the seed's choice) if <= m."""
    sizes = {2**k for k in range(int(math.log2(low)), int(math.log2(high)) + 1) if 2**k <= m}
    if m >= 1000:
        sizes.add(1000)
    return sorted(sizes)


def step_times(net, X, Y, sizes, steps: int = 20, repeats: int = 3) -> dict[int, float]:
    """Median seconds per training step at each batch size (the fit loop, gd, this machine).

    Each size trains a copy of ``net`` for ``steps`` steps on the first steps*b rows
    (wrapping around if X is smaller); the first step is a warm-up and not counted.
    """
    out = {}
    m = X.shape[0]
    for b in sizes:
        n = min(m, (steps + 1) * b)
        per = []
        for _ in range(repeats):
            sub = net.copy()
            h = sub.fit(
                X[:n],
                Y[:n],
                batch_size=b,
                epochs=max(1, -(-(steps + 1) * b // n)),
                learning_rate=1e-3,
                seed=0,
                shuffle=False,
                progress=False,
            )
            t = np.diff(np.asarray(h.iteration_time))
            per.append(float(np.median(t[:steps] if len(t) else [h.iteration_time[0]])))
        out[b] = float(np.median(per))
    return out


class Recommendation(NamedTuple):
    batch_size: int
    b_simple: float
    rows: list  # per size: dict(batch_size, step_s, epoch_s, steps_factor, relative_time)
    reason: str


def recommend(times: dict[int, float], b_simple: float, m: int) -> Recommendation:
    """Pick the size minimising the predicted time to a target, (1 + B_simple/B) t_step(B).

    ``times``: seconds per step by batch size; ``m``: examples per epoch.
    """
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
            f"the gradient is lost in the noise at this point (|G|^2 <= 0 estimated): "
            f"batch size {bb} is the cheapest per unit of progress measured here"
        )
    else:
        small = min(rows, key=lambda r: r["batch_size"])
        reason = (
            f"B_simple ~ {b_simple:.0f}: steps needed scale as 1 + B_simple/B, so batches "
            f"much below ~{b_simple:.0f} spend their steps on noise, and beyond it extra "
            f"examples add little progress. A step at {bb} takes {best['step_s'] * 1e3:.2f} ms "
            f"vs {small['step_s'] * 1e3:.2f} ms at {small['batch_size']}; "
            f"(1 + B_simple/B) x time per step is smallest at {bb}"
        )
    return Recommendation(bb, b_simple, rows, reason)


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
