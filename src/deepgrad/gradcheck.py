"""Gradient checking (the seed, section 2): central differences compared with backprop.

For every element theta_i of the concatenated parameters,

    d_theta_approx[i] = (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps)

and the check passes when the seed's normalised distance

    ||d_theta_approx - d_theta||_2 / (||d_theta_approx||_2 + ||d_theta||_2)

is below ``threshold`` (1e-7 with eps = 1e-7). The report also says *which* elements
disagree: a bug in one layer's backward shows up as that array's entries, worst first.

Two entry points:

- ``gradcheck(cost_fn, params, grads)`` works for any NumPy cost function of a dict of
  arrays (or of one array): the plain loop, 2 cost evaluations per element.
- ``gradcheck_network(net, X, Y)`` computes the same central differences for a deepgrad
  network, faster (4x on the README's reference net T2, close to the 6x fewer
  multiply-adds and 3x fewer activations that remain there): a change to W^[l][i, j] moves
  only unit i of Z^[l] (by
  delta * A^[l-1][:, j]), so the unperturbed forward pass is reused up to layer l, layer l+1
  gets a rank-1 update, and many perturbed networks are pushed through the remaining layers
  at once as one large matrix product. Every J(theta +- eps e_i) is still a real cost
  evaluation of the perturbed network (forward functions only; no derivative and no
  backprop is used), summed and regularized exactly as ``network.cost`` does it.

Limits of float64 that the report states instead of hiding: J is known to about one unit
in the last place, so a central difference carries a rounding noise of about
ulp(J) / (2 eps) (5.6e-10 for J in [0.5, 1) and eps = 1e-7). Elements whose disagreement is
below that noise are never listed as failures.
"""

from __future__ import annotations

import contextlib
import math
import os
import threading
import warnings
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, NamedTuple

import numpy as np

from . import activations, dropout
from . import network as nw
from ._backend import to_numpy
from ._checks import as_2d_float, check_float, check_int, check_targets, encode_targets
from .flat import ordered_keys

__all__ = [
    "gradcheck",
    "gradcheck_network",
    "GradcheckReport",
    "Entry",
    "BANDS",
    "verdict",
    "MODES",
]

MODES = ("elementwise", "directional")

# Verdict bands for a relative error (the seed's bar is 1e-7).
BANDS = (
    (1e-7, "correct"),
    (1e-5, "suspicious"),
    (1e-3, "probably wrong"),
    (math.inf, "bug"),
)

_RELU_FAMILY = ("relu", "leaky_relu")
_NOISE_ULPS = 4.0  # noise estimate: 4 ulp(J) / eps, twice the worst rounding we measured
_CHUNK_ELEMENTS = 1 << 17  # perturbed activations per batch (K * m * n): 1 MB, fits in L2


def verdict(error: float) -> str:
    """The band of a relative error: "correct" (< 1e-7, the seed's bar), "suspicious"
    (< 1e-5), "probably wrong" (up to 1e-3) or "bug" (above 1e-3: almost certainly a bug)."""
    if error < BANDS[0][0]:
        return BANDS[0][1]
    if error < BANDS[1][0]:
        return BANDS[1][1]
    return BANDS[2][1] if error <= BANDS[2][0] else BANDS[3][1]


class Entry(NamedTuple):
    """One checked element: ``name`` ("W2"), ``index`` ((3, 1)), both derivatives and
    the element's relative error |num - ana| / (|num| + |ana|)."""

    name: str
    index: tuple[int, ...]
    numerical: float
    analytic: float
    error: float

    def __str__(self) -> str:
        where = f"{self.name}[{', '.join(map(str, self.index))}]"
        return (
            f"{where}: numerical {self.numerical:.3g}, backprop {self.analytic:.3g}, "
            f"error {self.error:.1e}"
        )


@dataclass(frozen=True, eq=False)
class GradcheckReport:
    """The result of a gradient check (immutable).

    Attributes
    ----------
    relative_error : the seed's ||approx - grad|| / (||approx|| + ||grad||) over every
        checked element that is not a kink.
    threshold : the bar; ``passed`` is ``relative_error < threshold``.
    per_param : {"W1": relative error of that array, ...} (same formula, one array).
    failures : elements that disagree, worst first (``Entry`` records): relative error
        above ``threshold`` and a disagreement above the float64 ``noise``.
    kinks : elements whose +-eps evaluations put a ReLU pre-activation on opposite sides
        of 0 (the cost is not differentiable there); excluded from the verdict.
    checked, total : elements (or directions) compared, and P.
    eps, noise : the step, and the rounding noise of one central difference,
        about ulp(J) / eps.
    mode : "elementwise" or "directional".
    numerical, analytic : {"W1": read-only array of the parameter's shape, ...}: the central
        differences and backprop's values (NaN where not checked; in directional mode, one
        value per direction for arrays that passed).
    """

    relative_error: float
    threshold: float
    per_param: Mapping[str, float]
    failures: tuple[Entry, ...]
    kinks: tuple[Entry, ...]
    checked: int
    total: int
    eps: float
    noise: float
    mode: str = "elementwise"
    numerical: Mapping[str, np.ndarray] = field(default_factory=dict)
    analytic: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def passed(self) -> bool:
        return bool(self.relative_error < self.threshold)

    @property
    def verdict(self) -> str:
        return verdict(self.relative_error)

    @property
    def n_kinks(self) -> int:
        return len(self.kinks)

    def summary(self) -> str:
        """One line: verdict, relative error, elements checked, kinks."""
        status = "PASSED" if self.passed else "FAILED"
        what = "directions/elements" if self.mode == "directional" else "elements"
        return (
            f"gradient check {status}: relative error {self.relative_error:.2e} "
            f"({'<' if self.passed else '>='} {self.threshold:.0e}, {self.verdict}); "
            f"{self.checked} of {self.total} {what} checked, eps {self.eps:.0e}, "
            f"{self.n_kinks} kinks, {len(self.failures)} failing elements"
        )

    def table(self, max_rows: int = 10) -> str:
        """Per-array errors with their bands, then the worst failing elements."""
        lines = [f"{'parameter':<10} {'error':>9}  verdict"]
        for name, err in self.per_param.items():
            lines.append(f"{name:<10} {err:>9.2e}  {verdict(err)}")
        if self.failures:
            shown = min(max_rows, len(self.failures))
            lines.append(f"failing elements (worst first, {shown} of {len(self.failures)}):")
            lines += [f"  {e}" for e in self.failures[:shown]]
        elif not self.passed:
            lines.append(
                f"no element disagrees by more than the float64 noise ({self.noise:.1e}): "
                "the error is rounding; try a larger eps (e.g. 1e-6)"
            )
        if self.kinks:
            lines.append(f"kinks (not failures, {len(self.kinks)}): e.g. {self.kinks[0]}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return f"{self.summary()}\n{self.table()}"


# -- validation and the report --------------------------------------------------------------


def _as_float64(name: str, value: Any) -> np.ndarray:
    arr = to_numpy(value) if not isinstance(value, int | float | list | tuple) else value
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = np.array(arr, dtype=np.float64, copy=True)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; all values must be finite")
    return arr


def _prepare(params, grads) -> tuple[dict, dict, bool]:
    """float64 copies of params and grads as dicts in the seed's order; single-array flag."""
    single = not isinstance(params, Mapping)
    if single:
        if isinstance(grads, Mapping):
            raise ValueError("grads must be one array like params, got a dict")
        params, grads = {"theta": params}, {"theta": grads}
    if not params:
        raise ValueError("params must be a non-empty dict of arrays, got an empty dict")
    if not isinstance(grads, Mapping):
        raise ValueError(
            f"grads must be a dict with the keys of params, got {type(grads).__name__}"
        )
    if set(params) != set(grads):
        raise ValueError(
            f"grads has keys {sorted(map(str, grads))} but params has {sorted(map(str, params))}; "
            "they must be the same"
        )
    keys = ordered_keys(dict(params))
    P = {k: _as_float64(f"params[{k!r}]", params[k]) for k in keys}
    G = {k: _as_float64(f"grads[{k!r}]", grads[k]) for k in keys}
    for k in keys:
        if P[k].shape != G[k].shape:
            raise ValueError(
                f"grads[{k!r}] has shape {G[k].shape} but params[{k!r}] has shape {P[k].shape}"
            )
    return P, G, single


def _check_options(eps, threshold, sample, total: int, seed) -> tuple[float, float, int | None]:
    eps = check_float("eps", eps, 0.0, low_open=True)
    threshold = check_float("threshold", threshold, 0.0, low_open=True)
    check_int("seed", seed, 0)
    if sample is not None:
        sample = check_int("sample", sample, 1, total)
    return eps, threshold, sample


def _select(shapes: dict, sample: int | None, seed: int) -> dict[str, np.ndarray]:
    """Flat indices to check per array: all, or ``sample`` in total, stratified.

    Each array gets a share proportional to its size (at least one element), drawn
    without replacement from a Generator seeded with ``seed``.
    """
    sizes = {k: math.prod(s) for k, s in shapes.items()}
    if sample is None:
        return {k: np.arange(n) for k, n in sizes.items()}
    rng = np.random.default_rng(seed)
    total = sum(sizes.values())
    out = {}
    for k, n in sizes.items():
        share = min(n, max(1, round(sample * n / total)))
        out[k] = np.sort(rng.choice(n, size=share, replace=False))
    return out


def _noise(J0: float, eps: float, scale: float = 0.0) -> float:
    """Rounding noise of one central difference: a few ulp(J) over 2 eps.

    ``scale`` > |J| stands for intermediate values J is computed from by cancellation
    (confident logits: a loss of 1e-3 from logits of 20), whose rounding J inherits.
    """
    return _NOISE_ULPS * math.ulp(max(abs(J0), scale, 1e-300)) / (2.0 * eps)


def _rel(num: np.ndarray, ana: np.ndarray) -> float:
    """The seed's ||num - ana|| / (||num|| + ||ana||); 0 when both are 0."""
    den = np.linalg.norm(num) + np.linalg.norm(ana)
    return float(np.linalg.norm(num - ana) / den) if den > 0 else 0.0


class _Checked(NamedTuple):
    """What was compared for one array: flat indices, both derivatives, kink flags."""

    shape: tuple[int, ...]
    flat: np.ndarray
    numerical: np.ndarray
    analytic: np.ndarray
    kink: np.ndarray


def _entries(name: str, c: _Checked, which: np.ndarray) -> list[Entry]:
    num, ana = c.numerical[which], c.analytic[which]
    den = np.abs(num) + np.abs(ana)
    err = np.divide(np.abs(num - ana), den, out=np.zeros_like(den), where=den > 0)
    return [
        Entry(
            name, tuple(int(i) for i in np.unravel_index(f, c.shape)), float(n), float(a), float(e)
        )
        for f, n, a, e in zip(c.flat[which], num, ana, err, strict=True)
    ]


def _report(checked: dict[str, _Checked], threshold, eps, noise, total, mode) -> GradcheckReport:
    """Assemble the report; kinks are excluded from every error."""
    nums, anas, per_param, failures, kinks = [], [], {}, [], []
    for name, c in checked.items():
        ok = ~c.kink
        nums.append(c.numerical[ok])
        anas.append(c.analytic[ok])
        per_param[name] = _rel(c.numerical[ok], c.analytic[ok])
        diff = np.abs(c.numerical - c.analytic)
        den = np.abs(c.numerical) + np.abs(c.analytic)
        bad = ok & (diff > threshold * den) & (diff > noise)
        failures += _entries(name, c, bad)
        kinks += _entries(name, c, c.kink)
    failures.sort(key=lambda e: -e.error)
    rel = _rel(np.concatenate(nums), np.concatenate(anas))
    n_checked = sum(len(c.flat) for c in checked.values())
    return GradcheckReport(
        rel,
        threshold,
        MappingProxyType(per_param),
        tuple(failures),
        tuple(kinks),
        n_checked,
        total,
        eps,
        noise,
        mode,
        _full(checked, "numerical"),
        _full(checked, "analytic"),
    )


def _full(checked: dict[str, _Checked], which: str) -> Mapping[str, np.ndarray]:
    """Read-only arrays of each parameter's shape holding ``which`` (NaN = not checked)."""
    out = {}
    for name, c in checked.items():
        arr = np.full(math.prod(c.shape), np.nan)
        arr[c.flat] = getattr(c, which)
        arr = arr.reshape(c.shape)
        arr.flags.writeable = False
        out[name] = arr
    return MappingProxyType(out)


# -- the generic checker ----------------------------------------------------------------------


def _evaluator(cost_fn: Callable, P: dict, single: bool) -> Callable[[str], float]:
    """``evaluate(where) -> float``: J at the current P; checks finiteness and precision."""
    if not callable(cost_fn):
        raise TypeError(f"cost_fn must be callable(params) -> float, got {type(cost_fn).__name__}")
    arg = P["theta"] if single else P
    warned = []

    def evaluate(where: str) -> float:
        J = cost_fn(arg)
        dtype = str(getattr(J, "dtype", "float64"))
        if not warned and dtype.endswith(("float32", "float16", "bfloat16")):
            warned.append(True)
            warnings.warn(
                f"cost_fn returned {dtype}: a central difference in that precision cannot "
                "reach the 1e-7 bar; compute the cost in float64",
                RuntimeWarning,
                stacklevel=4,
            )
        J = float(to_numpy(J)) if not isinstance(J, int | float) else float(J)
        if not math.isfinite(J):
            raise ValueError(f"cost_fn returned {J} at {where}; the cost must be finite")
        return J

    return evaluate


def _central(evaluate, arr: np.ndarray, name: str, flat: np.ndarray, eps: float) -> np.ndarray:
    """The seed's (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps) for each flat index."""
    view = arr.reshape(-1)
    out = np.empty(len(flat))
    for n, f in enumerate(flat):
        w = view[f]
        view[f] = w + eps
        plus = evaluate(f"{name}[{f}] + eps")
        view[f] = w - eps
        minus = evaluate(f"{name}[{f}] - eps")
        view[f] = w
        out[n] = (plus - minus) / (2.0 * eps)
    return out


def _directional(evaluate, arr: np.ndarray, grad: np.ndarray, name: str, eps, count, rng):
    """Numerical and analytic derivatives along ``count`` random +-1 directions of one array."""
    saved = arr.copy()
    num, ana = np.empty(count), np.empty(count)
    for d in range(count):
        u = rng.choice(np.array([-1.0, 1.0]), size=arr.shape)
        np.add(saved, eps * u, out=arr)
        plus = evaluate(f"{name} + eps u")
        np.subtract(saved, eps * u, out=arr)
        minus = evaluate(f"{name} - eps u")
        num[d], ana[d] = (plus - minus) / (2.0 * eps), float(np.sum(grad * u))
    arr[...] = saved
    return num, ana


def gradcheck(
    cost_fn: Callable,
    params,
    grads,
    eps: float = 1e-7,
    threshold: float = 1e-7,
    sample: int | None = None,
    mode: str = "elementwise",
    seed: int = 0,
    directions: int = 3,
) -> GradcheckReport:
    """Compare ``grads`` with central differences of ``cost_fn`` (the seed's gradient check).

    Parameters
    ----------
    cost_fn : callable(params) -> float; params is the dict (or the one array) passed here,
        as float64 copies that the checker perturbs in place.
    params, grads : dicts with the same keys and shapes (e.g. {"W1": (n1, n0), "b1": (n1,)}),
        or one array each.
    eps : the step of the central difference (> 0).
    threshold : the bar for ``report.passed`` (the seed's 1e-7).
    sample : check ``sample`` elements in total, stratified over the arrays (seeded),
        instead of all P; must be in [1, P].
    mode : "elementwise" (2 evaluations per element) or "directional": ``directions``
        random +-1 directions per array (2 evaluations each, like PyTorch's fast mode);
        an array whose directions disagree is then checked element-wise, so the report
        still names elements.
    seed : seeds ``sample`` and the directions.

    Returns
    -------
    GradcheckReport

    Example
    -------
    >>> import numpy as np
    >>> A = np.array([[2.0, 1.0], [1.0, 3.0]])
    >>> report = gradcheck(lambda x: 0.5 * x @ A @ x, np.array([1.0, -2.0]),
    ...                    A @ np.array([1.0, -2.0]))
    >>> report.passed
    True
    """
    P, G, single = _prepare(params, grads)
    total = sum(a.size for a in P.values())
    eps, threshold, sample = _check_options(eps, threshold, sample, total, seed)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    evaluate = _evaluator(cost_fn, P, single)
    noise = _noise(evaluate("theta"), eps)
    select = _select({k: a.shape for k, a in P.items()}, sample, seed)
    if mode == "directional":
        directions = check_int("directions", directions, 1)
        return _directional_report(
            evaluate, P, G, select, eps, threshold, noise, directions, seed, total
        )
    checked = {}
    for k, flat in select.items():
        num = _central(evaluate, P[k], k, flat, eps)
        checked[k] = _Checked(
            P[k].shape, flat, num, G[k].reshape(-1)[flat], np.zeros(len(flat), bool)
        )
    return _report(checked, threshold, eps, noise, total, "elementwise")


def _directional_report(evaluate, P, G, select, eps, threshold, noise, count, seed, total):
    """Directions per array; arrays that disagree fall back to element-wise."""
    rng = np.random.default_rng(seed)
    checked = {}
    for k in P:
        num, ana = _directional(evaluate, P[k], G[k], k, eps, count, rng)
        diff = np.abs(num - ana)
        if np.any((diff > threshold * (np.abs(num) + np.abs(ana))) & (diff > noise)):
            flat = select[k]
            num = _central(evaluate, P[k], k, flat, eps)
            checked[k] = _Checked(
                P[k].shape, flat, num, G[k].reshape(-1)[flat], np.zeros(len(flat), bool)
            )
        else:  # the directions stand in for the array's elements (index = direction)
            checked[k] = _Checked((count,), np.arange(count), num, ana, np.zeros(count, bool))
    return _report(checked, threshold, eps, noise, total, "directional")


# -- the fast exact path for deepgrad networks ------------------------------------------------


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
        inT[l] = np.ascontiguousarray(np.concatenate([A_in, np.ones((m, 1))], axis=1).T)
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


_WORKSPACE = threading.local()


def _buffer(tag: str, shape: tuple[int, ...]) -> np.ndarray:
    """A reusable per-thread scratch array: fresh 1 MB arrays for every batch would cost a
    page fault per 4 kB (more than the arithmetic on them, measured)."""
    cache = _WORKSPACE.__dict__.setdefault("buffers", {})
    key = (tag, shape)
    if key not in cache:
        cache[key] = np.empty(shape)
    return cache[key]


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
    Z = _buffer("Z", (K, m, W_next.shape[0]))
    np.multiply(dcol[:, :, None], W_next.T[rows][:, None, :], out=Z)  # rank-1 update ...
    Z += cache.Z[l]  # ... of Z^[l+1]
    for k in range(l + 1, L):
        _flag_kinks(kinks, Z)
        A = _activate(name, Z)
        if s.masks is not None:
            A = dropout.apply(A, s.masks[k - 1])
        W, b = s.params[f"W{k + 1}"], s.params[f"b{k + 1}"]
        Z = _buffer(f"Z{k + 1}", (K, m, W.shape[0]))
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
    """Central differences of every selected element of one array, in batches.

    Batches are independent; with a thread ``pool`` they run in parallel (NumPy and BLAS
    release the GIL on arrays this large).
    """
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
    track = s.spec.hidden_activation in _RELU_FAMILY

    def one(start: int):
        sl = slice(start, start + chunk)
        r, c = np.concatenate([rows[sl]] * 2), np.concatenate([cols[sl]] * 2)
        ww = np.concatenate([w[sl]] * 2) if is_w else None
        d = np.concatenate([deltas[0][sl], deltas[1][sl]])
        J, kinks = _perturbed_costs(s, l, r, c, ww, d, track)
        half = len(J) // 2
        return (J[:half] - J[half:]) / (2.0 * eps), kinks

    starts = range(0, len(flat), chunk)
    results = list(pool.map(one, starts) if pool is not None else map(one, starts))
    if not results:
        return np.empty(0), np.zeros(0, bool)
    return (np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results]))


def _network_inputs(net, X, Y, keep_prob, masks, seed):
    """float64 params, X, encoded Y and frozen dropout masks (validated)."""
    from .model import Network

    if not isinstance(net, Network):
        raise TypeError(f"net must be a deepgrad Network, got {type(net).__name__}")
    params = {k: np.array(to_numpy(v), dtype=np.float64) for k, v in net.params.items()}
    X = np.asarray(to_numpy(as_2d_float("X", X, net.layer_sizes[0])), dtype=np.float64)
    Y = check_targets(
        "Y",
        to_numpy(Y) if not isinstance(Y, list) else Y,
        net.spec.output,
        net.layer_sizes[-1],
        X.shape[0],
    )
    Y = encode_targets(np.asarray(Y), net.spec.output, net.layer_sizes[-1], np, np.float64)
    keep_prob = check_float("keep_prob", keep_prob, 0.0, 1.0, low_open=True)
    check_int("seed", seed, 0)
    hidden = net.spec.hidden_sizes
    if masks is not None:
        masks = _check_masks(masks, X.shape[0], hidden)
    elif keep_prob < 1.0:
        rng = np.random.default_rng(seed)
        masks = dropout.draw_masks(rng, X.shape[0], hidden, keep_prob, None, "float64")
    return params, X, Y, masks


def _check_masks(masks, m: int, hidden) -> list:
    if not isinstance(masks, list | tuple) or len(masks) != len(hidden):
        raise ValueError(
            f"masks must be a list of {len(hidden)} arrays (one per hidden layer), got "
            f"{type(masks).__name__} of length {len(masks) if hasattr(masks, '__len__') else '?'}"
        )
    out = []
    for i, (mask, n) in enumerate(zip(masks, hidden, strict=True)):
        mask = _as_float64(f"masks[{i}]", mask)
        if mask.shape != (m, n):
            raise ValueError(f"masks[{i}] has shape {mask.shape}; expected ({m}, {n})")
        out.append(mask)
    return out


def _single_threaded_blas():
    """BLAS limited to one thread while the check runs (parallelism comes from ``workers``):
    a multi-threaded BLAS on these (K m, n) products spins against the element-wise work
    and made the check twice as slow (measured). Needs threadpoolctl; else a no-op."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - shipped with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def gradcheck_network(
    net,
    X,
    Y,
    l2: float = 0.0,
    eps: float = 1e-7,
    threshold: float = 1e-7,
    keep_prob: float = 1.0,
    masks=None,
    seed: int = 0,
    sample: int | None = None,
    l2_denominator: int | None = None,
    backward: Callable | None = None,
    workers: int | None = None,
) -> GradcheckReport:
    """Check a network's backprop against central differences of its regularized cost.

    Computes the same numbers as ``gradcheck(lambda p: network.cost(p, X, Y, ...), ...)``
    (two real cost evaluations per element, the L2 term included) in a fraction of the
    time; see the module docstring for how. Works on a float64 copy of ``net``.

    Parameters
    ----------
    net : a deepgrad ``Network`` (its parameters are not changed).
    X : (m, n^[0]) inputs; Y : (m,) labels or (m, n^[L]) targets.
    l2 : lambda of the L2 term; ``l2_denominator`` divides it by that instead of m.
    eps, threshold, sample, seed : as in ``gradcheck`` (seed also draws dropout masks).
    keep_prob : with keep_prob < 1, dropout masks are drawn once (from ``seed``) and frozen:
        the same masks for J(theta + eps), J(theta - eps) and backprop, so the cost is a
        fixed function of theta again. Redrawing them for each evaluation makes the check
        fail: the difference of two costs would then measure the change of mask (order
        1e-2 here), not of theta (order eps), and dividing by 2 eps blows it up.
    masks : explicit masks (list of (m, n^[l]) arrays, one per hidden layer) instead.
    backward : an alternative ``network.backward`` (e.g. a planted bug from
        ``deepgrad.bugs``) whose gradients are checked instead of deepgrad's.
    workers : threads that evaluate batches of perturbed networks in parallel (default:
        the CPU count, at most 8; 1 = sequential). The numbers do not depend on it.

    Returns
    -------
    GradcheckReport; for ReLU-family nets, elements whose +-eps evaluations flip the sign
    of some pre-activation are listed in ``report.kinks`` and left out of the verdict.

    Example
    -------
    >>> import deepgrad as dg, numpy as np
    >>> net = dg.Network([3, 5, 2], hidden_activation="tanh", output="softmax", seed=0)
    >>> X = np.random.default_rng(0).normal(size=(8, 3))
    >>> dg.gradcheck_network(net, X, np.arange(8) % 2, l2=0.1).passed
    True
    """
    params, Xa, Ya, masks = _network_inputs(net, X, Y, keep_prob, masks, seed)
    l2 = check_float("l2", l2, 0.0)
    m_reg = (
        Xa.shape[0] if l2_denominator is None else check_int("l2_denominator", l2_denominator, 1)
    )
    if backward is not None and not callable(backward):
        raise TypeError(f"backward must be callable like network.backward, got {backward!r}")
    total = net.n_params
    eps, threshold, sample = _check_options(eps, threshold, sample, total, seed)
    s = _state(params, Xa, Ya, net.spec, l2, m_reg, masks)
    J0 = float(nw.cost_from_output(s.cache.Z[-1], Ya, params, net.spec, l2, m_reg))
    if not math.isfinite(J0):
        raise ValueError(f"the cost of net on (X, Y) is {J0}; it must be finite")
    grads = (backward or nw.backward)(params, s.cache, Ya, net.spec, l2, m_reg)
    _, G, _ = _prepare(params, grads)
    workers = min(8, os.cpu_count() or 1) if workers is None else check_int("workers", workers)
    checked = {}
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    with _single_threaded_blas(), pool or contextlib.nullcontext():
        for name, flat in _select(net.spec.shapes(), sample, seed).items():
            num, kink = _layer_numerical(s, name, flat, eps, pool)
            checked[name] = _Checked(params[name].shape, flat, num, G[name].reshape(-1)[flat], kink)
    # Per-example losses are computed from Z^[L]; their rounding, ~ulp(|Z^[L]|) each,
    # averages over m examples to ~ulp(|Z^[L]|) / sqrt(m) in J.
    scale = float(np.max(np.abs(s.cache.Z[-1]))) / math.sqrt(Xa.shape[0])
    return _report(checked, threshold, eps, _noise(J0, eps, scale), total, "elementwise")
