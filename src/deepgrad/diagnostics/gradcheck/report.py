"""Gradient checking (the seed, section 2): central differences compared with backprop.

For every element theta_i of the concatenated parameters,

    d_theta_approx[i] = (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps)

and the check passes when the seed's normalised distance

    ||d_theta_approx - d_theta||_2 / (||d_theta_approx||_2 + ||d_theta||_2)

is below ``threshold``. The report also says *which* elements disagree: a bug in one
layer's backward shows up as that array's entries, worst first.

Two entry points:

- ``gradcheck(cost_fn, params, grads)`` works for any NumPy cost function of a dict of
  arrays (or of one array): the plain loop, 2 cost evaluations per element, in float64.
- ``gradcheck_network(net, X, Y)`` computes the same central differences for a deepgrad
  network, batched: a change to W^[l][i, j] moves only unit i of Z^[l], so the unperturbed
  forward pass is reused up to layer l, layer l+1 gets a rank-1 update, and many perturbed
  networks go through the remaining layers as one matrix product. No derivative and no
  backprop is used. Two methods:

  - ``method="exact"`` (default): the change of every later layer, Delta Z, is carried
    apart from Z and the differences come from identities without cancellation
    (``deepgrad.diffprop``), so [J(theta + eps) - J(theta)] - [J(theta - eps) - J(theta)]
    is known to the dtype's full relative precision: ~1e-16 in float64 instead of the
    ulp(J) / (2 eps) ~ 1e-9 rounding noise of the plain formula, and ~1e-7 in float32,
    where the plain formula cannot do better than ~2e-4. Each element is judged against
    its own noise floor: a few unit roundoffs of the root-sum-square of the terms backprop
    adds up for it (``report.floor``, ``report.units``).
  - ``method="plain"``: the seed's formula, two costs subtracted; its noise is the
    rounding of J, ~ulp(J) / eps, and elements below it are never listed as failures.

float32 networks are checked in float32, with their own eps, bar and bands (``DEFAULTS``).
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

from deepgrad.core import activations, dropout, losses
from deepgrad.core import network as nw
from deepgrad.core.backend import to_numpy
from deepgrad.core.checks import as_2d_float, check_float, check_int, check_targets, encode_targets
from deepgrad.core.flat import ordered_keys
from deepgrad.devices import torch_backend as tb
from deepgrad.diagnostics import diffprop

__all__ = [
    "gradcheck",
    "gradcheck_network",
    "GradcheckReport",
    "Entry",
    "BANDS",
    "verdict",
    "bands",
    "MODES",
    "METHODS",
    "DTYPES",
    "DEFAULTS",
    "EPS_RANGE",
    "FAIL_UNITS",
    "NOISE_BAR",
]

MODES = ("elementwise", "directional")
METHODS = ("exact", "plain")
DTYPES = ("float64", "float32")

# Verdict bands for a relative error (the seed's bar is 1e-7).
BANDS = (
    (1e-7, "correct"),
    (1e-5, "suspicious"),
    (1e-3, "probably wrong"),
    (math.inf, "bug"),
)

# Per (method, dtype): the default eps, the bar (``threshold``) and the verdict bands.
# exact, float64: at eps 1e-9 the truncation (~eps^2) is far below the rounding, and a
#   correct backprop scores <= 1e-15; 1e-12 leaves 1000x of room and still catches a single
#   element off by 1e-8 relative (it fails by its distance to the noise floor anyway).
# exact, float32: float32 backprop itself is ~1.5e-7 from the exact gradient, and so is the
#   float32 difference: a correct net scores 2-3e-7, hence the bar 1e-6 (not the seed's 1e-7).
# plain: the seed's eps 1e-7 and bar 1e-7 in float64; in float32 the best a central
#   difference can do is ~2e-4 (at eps ~3e-2), so the bar there is 1e-3.
DEFAULTS = {
    ("exact", "float64"): (1e-9, 1e-12, ((1e-12, "correct"), (1e-9, "suspicious"))),
    ("exact", "float32"): (1e-6, 1e-6, ((1e-6, "correct"), (1e-4, "suspicious"))),
    ("plain", "float64"): (1e-7, 1e-7, ((1e-7, "correct"), (1e-5, "suspicious"))),
    ("plain", "float32"): (3e-2, 1e-3, ((1e-3, "correct"), (1e-2, "suspicious"))),
}
EPS_RANGE = {"float64": (1e-12, 0.1), "float32": (1e-8, 0.1)}  # eps the checks accept
# exact method: an element fails beyond FAIL_UNITS noise floors (a correct backprop reaches
# ~50 of them at worst in float32, measured; a float32 element off by 1e-4 relative sits at
# ~800 / (R_i / |g_i|)). When the whole check fails with no element beyond it, the elements
# beyond SUSPECT_UNITS are named instead.
FAIL_UNITS = 200.0
SUSPECT_UNITS = 20.0
# A correct backprop's relative error is 0.5-2x the report's noise floor (measured on random
# and trained nets); the exact method's bar is never below NOISE_BAR floors.
NOISE_BAR = 10.0

_RELU_FAMILY = ("relu", "leaky_relu")
_NOISE_ULPS = 4.0  # noise estimate: 4 ulp(J) / eps, twice the worst rounding we measured
_CHUNK_ELEMENTS = 1 << 17  # perturbed activations per batch (K * m * n): 1 MB, fits in L2
_EXACT_CHUNK = 1 << 14  # the same for the exact method: its temporaries stay below 128 kB


def bands(method: str = "plain", dtype: str = "float64") -> tuple:
    """The verdict bands of a method and dtype: ((bound, label), ...), ``BANDS`` for the
    seed's plain float64 check. Above 1e-3 (or the dtype's "suspicious" bound when that is
    higher) an error is "bug"; between the two, "probably wrong"."""
    correct, suspicious = DEFAULTS[(method, dtype)][2]
    top = max(1e-3, 10 * suspicious[0])
    return (correct, suspicious, (top, "probably wrong"), (math.inf, "bug"))


def verdict(error: float, bands: tuple = BANDS) -> str:
    """The band of a relative error; with the seed's bands: "correct" (< 1e-7),
    "suspicious" (< 1e-5), "probably wrong" (up to 1e-3) or "bug" (above 1e-3)."""
    if error < bands[0][0]:
        return bands[0][1]
    if error < bands[1][0]:
        return bands[1][1]
    return bands[2][1] if error <= bands[2][0] else bands[3][1]


class Entry(NamedTuple):
    """One checked element: ``name`` ("W2"), ``index`` ((3, 1)), both derivatives,
    the element's relative error |num - ana| / (|num| + |ana|) and ``units``, its
    disagreement |num - ana| in units of its noise floor (NaN when not estimated)."""

    name: str
    index: tuple[int, ...]
    numerical: float
    analytic: float
    error: float
    units: float = math.nan

    def __str__(self) -> str:
        where = f"{self.name}[{', '.join(map(str, self.index))}]"
        floor = f", {self.units:.1e} x floor" if math.isfinite(self.units) else ""
        return (
            f"{where}: numerical {self.numerical:.3g}, backprop {self.analytic:.3g}, "
            f"error {self.error:.1e}{floor}"
        )


@dataclass(frozen=True, eq=False)
class GradcheckReport:
    """The result of a gradient check (immutable).

    Attributes
    ----------
    relative_error : the seed's ||approx - grad|| / (||approx|| + ||grad||) over every
        checked element that is not a kink.
    threshold : the bar. ``passed``: ``relative_error < bar`` (``bar`` is ``threshold``,
        for the exact method at least ``NOISE_BAR`` x ``noise_floor``), and for the exact
        method also no failing element.
    per_param : {"W1": relative error of that array, ...} (same formula, one array).
    failures : elements that disagree, worst first (``Entry`` records): relative error
        above ``threshold`` and a disagreement above the noise (plain: ``noise``; exact:
        ``FAIL_UNITS`` times the element's own noise floor, sorted by those units).
    kinks : elements whose +-eps evaluations put a ReLU pre-activation on the other side
        of 0 (the cost is not differentiable there); excluded from the verdict.
    checked, total : elements (or directions) compared, and P.
    eps, noise : the step, and the largest absolute noise of one element (plain: the
        rounding of one central difference, about ulp(J) / eps).
    mode : "elementwise" or "directional".
    numerical, analytic : {"W1": read-only array of the parameter's shape, ...}: the central
        differences and backprop's values (NaN where not checked; in directional mode, one
        value per direction for arrays that passed).
    method, dtype : "exact" (difference propagation) or "plain" (the seed's formula), and
        the precision the check ran in.
    bands : the verdict bands ((bound, label), ...) for this method and dtype.
    noise_floor : the relative error a correct backprop would show if every element were
        off by exactly its noise floor: compare ``relative_error`` with it.
    floor, units : {"W1": array}: each element's absolute noise floor, and its
        disagreement |num - ana| in units of it (NaN where not checked).
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
    method: str = "plain"
    dtype: str = "float64"
    bands: tuple = BANDS
    noise_floor: float = math.nan
    floor: Mapping[str, np.ndarray] = field(default_factory=dict)
    units: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def bar(self) -> float:
        """The relative error ``passed`` compares with: ``threshold``, and for the exact
        method at least ``NOISE_BAR`` noise floors (a well-trained net's gradient is small
        after cancellation, and its float32 backprop can be ~1e-6 off by rounding alone)."""
        if self.method == "plain" or not math.isfinite(self.noise_floor):
            return self.threshold
        return max(self.threshold, NOISE_BAR * self.noise_floor)

    @property
    def passed(self) -> bool:
        below = bool(self.relative_error < self.bar)
        return below and (self.method == "plain" or not self.failures)

    @property
    def verdict(self) -> str:
        return verdict(self.relative_error, self.bands)

    @property
    def n_kinks(self) -> int:
        return len(self.kinks)

    def summary(self) -> str:
        """One line: verdict, relative error, elements checked, kinks."""
        status = "PASSED" if self.passed else "FAILED"
        what = "directions/elements" if self.mode == "directional" else "elements"
        floor = f", noise floor {self.noise_floor:.1e}" if math.isfinite(self.noise_floor) else ""
        return (
            f"gradient check {status}: relative error {self.relative_error:.2e} "
            f"({'<' if self.relative_error < self.bar else '>='} {self.bar:.0e}, "
            f"{self.verdict}{floor}); {self.method} {self.dtype}, "
            f"{self.checked} of {self.total} {what} checked, eps {self.eps:.0e}, "
            f"{self.n_kinks} kinks, {len(self.failures)} failing elements"
        )

    def table(self, max_rows: int = 10) -> str:
        """Per-array errors with their bands, then the worst failing elements."""
        lines = [f"{'parameter':<10} {'error':>9}  verdict"]
        for name, err in self.per_param.items():
            lines.append(f"{name:<10} {err:>9.2e}  {verdict(err, self.bands)}")
        if self.failures:
            shown = min(max_rows, len(self.failures))
            lines.append(f"failing elements (worst first, {shown} of {len(self.failures)}):")
            lines += [f"  {e}" for e in self.failures[:shown]]
        elif not self.passed:
            lines.append(
                f"no element disagrees by more than the {self.dtype} noise ({self.noise:.1e}): "
                "the error is rounding; try a larger eps (e.g. 1e-6)"
            )
        if self.kinks:
            lines.append(f"kinks (not failures, {len(self.kinks)}): e.g. {self.kinks[0]}")
        bounds = ", ".join(f"{label} < {b:.0e}" for b, label in self.bands[:3])
        lines.append(f"bands ({self.method}, {self.dtype}): {bounds}, bug above")
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


def _noise(J0: float, eps: float, scale: float = 0.0, dtype: str = "float64") -> float:
    """Rounding noise of one central difference: a few ulp(J) (in ``dtype``) over 2 eps.

    ``scale`` > |J| stands for intermediate values J is computed from by cancellation
    (confident logits: a loss of 1e-3 from logits of 20), whose rounding J inherits.
    """
    ulp = float(np.spacing(np.asarray(max(abs(J0), scale, 1e-30), dtype=dtype)))
    return _NOISE_ULPS * ulp / (2.0 * eps)


def _rel(num: np.ndarray, ana: np.ndarray) -> float:
    """The seed's ||num - ana|| / (||num|| + ||ana||); 0 when both are 0."""
    den = np.linalg.norm(num) + np.linalg.norm(ana)
    return float(np.linalg.norm(num - ana) / den) if den > 0 else 0.0


class _Checked(NamedTuple):
    """What was compared for one array: flat indices, both derivatives, kink flags and
    each element's absolute noise floor."""

    shape: tuple[int, ...]
    flat: np.ndarray
    numerical: np.ndarray
    analytic: np.ndarray
    kink: np.ndarray
    floor: np.ndarray | float = math.nan


def _entries(name: str, c: _Checked, which: np.ndarray, units: np.ndarray) -> list[Entry]:
    num, ana = c.numerical[which], c.analytic[which]
    den = np.abs(num) + np.abs(ana)
    err = np.divide(np.abs(num - ana), den, out=np.zeros_like(den), where=den > 0)
    return [
        Entry(
            name,
            tuple(int(i) for i in np.unravel_index(f, c.shape)),
            float(n),
            float(a),
            float(e),
            float(u),
        )
        for f, n, a, e, u in zip(c.flat[which], num, ana, err, units[which], strict=True)
    ]


class _Verdict(NamedTuple):
    """How a report judges elements: the method, its dtype and bands, and how many noise
    floors an element may be off (plain: 1 x the rounding bound ``noise``)."""

    method: str = "plain"
    dtype: str = "float64"
    bands: tuple = BANDS
    fail_units: float = 1.0


_PLAIN = _Verdict()


def _element_floor(c: _Checked, noise: float) -> np.ndarray:
    return np.broadcast_to(np.where(np.isnan(c.floor), noise, c.floor), c.numerical.shape)


def _judge(checked, threshold, noise, how: _Verdict, overall_failed: bool):
    """(failures, kinks, units per array): elements beyond the bar and the noise."""
    failures, suspects, kinks, units = [], [], [], {}
    for name, c in checked.items():
        diff = np.abs(c.numerical - c.analytic)
        den = np.abs(c.numerical) + np.abs(c.analytic)
        with np.errstate(divide="ignore", invalid="ignore"):
            units[name] = np.where(diff > 0, diff / _element_floor(c, noise), 0.0)
        above = ~c.kink & (diff > threshold * den)
        failures += _entries(name, c, above & (units[name] > how.fail_units), units[name])
        if how.method == "exact":
            suspects += _entries(name, c, above & (units[name] > SUSPECT_UNITS), units[name])
        kinks += _entries(name, c, c.kink, units[name])
    if not failures and overall_failed:
        failures = suspects  # the check failed: name its most suspicious elements
    failures.sort(key=lambda e: -(e.units if how.method == "exact" else e.error))
    return failures, kinks, units


def _report(
    checked: dict[str, _Checked], threshold, eps, noise, total, mode, how: _Verdict = _PLAIN
) -> GradcheckReport:
    """Assemble the report; kinks are excluded from every error."""
    ok = {k: ~c.kink for k, c in checked.items()}
    num = np.concatenate([c.numerical[ok[k]] for k, c in checked.items()])
    ana = np.concatenate([c.analytic[ok[k]] for k, c in checked.items()])
    floors = np.concatenate([_element_floor(c, noise)[ok[k]] for k, c in checked.items()])
    per_param = {k: _rel(c.numerical[ok[k]], c.analytic[ok[k]]) for k, c in checked.items()}
    rel = _rel(num, ana)
    den = np.linalg.norm(num) + np.linalg.norm(ana)
    noise_floor = float(np.linalg.norm(floors) / den) if den > 0 else 0.0
    bar = threshold if how.method == "plain" else max(threshold, NOISE_BAR * noise_floor)
    failures, kinks, units = _judge(checked, threshold, noise, how, rel >= bar)
    floor_full = {k: _element_floor(c, noise) for k, c in checked.items()}
    return GradcheckReport(
        rel,
        threshold,
        MappingProxyType(per_param),
        tuple(failures),
        tuple(kinks),
        sum(len(c.flat) for c in checked.values()),
        total,
        eps,
        float(max((np.max(f) for f in floor_full.values() if f.size), default=noise)),
        mode,
        _full(checked, "numerical"),
        _full(checked, "analytic"),
        how.method,
        how.dtype,
        how.bands,
        noise_floor,
        _full(checked, floor_full),
        _full(checked, units),
    )


def _full(checked: dict[str, _Checked], which) -> Mapping[str, np.ndarray]:
    """Read-only arrays of each parameter's shape holding ``which`` (a field of _Checked
    or a dict of per-element values; NaN = not checked)."""
    out = {}
    for name, c in checked.items():
        arr = np.full(math.prod(c.shape), np.nan)
        arr[c.flat] = getattr(c, which) if isinstance(which, str) else which[name]
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

    This is always the plain formula, (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps)
    in float64: an arbitrary cost function has no layer structure to carry differences
    through, so the rounding of J (about ulp(J) / (2 eps), 5.6e-10 at eps 1e-7 for J near
    0.7) stays in every element. For a deepgrad network, ``gradcheck_network`` computes the
    same central differences without that noise (``method="exact"``).

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


_WORKSPACE = threading.local()


def _buffer(tag: str, shape: tuple[int, ...], dtype) -> np.ndarray:
    """A reusable per-thread scratch array: fresh 1 MB arrays for every batch would cost a
    page fault per 4 kB (more than the arithmetic on them, measured)."""
    cache = _WORKSPACE.__dict__.setdefault("buffers", {})
    key = (tag, shape, np.dtype(dtype).str)
    if key not in cache:
        cache[key] = np.empty(shape, dtype=dtype)
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
    Z = _buffer("Z", (K, m, W_next.shape[0]), W_next.dtype)
    np.multiply(dcol[:, :, None], W_next.T[rows][:, None, :], out=Z)  # rank-1 update ...
    Z += cache.Z[l]  # ... of Z^[l+1]
    for k in range(l + 1, L):
        _flag_kinks(kinks, Z)
        A = _activate(name, Z)
        if s.masks is not None:
            A = dropout.apply(A, s.masks[k - 1])
        W, b = s.params[f"W{k + 1}"], s.params[f"b{k + 1}"]
        Z = _buffer(f"Z{k + 1}", (K, m, W.shape[0]), W.dtype)
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


def _network_inputs(net, X, Y, keep_prob, masks, seed, dtype: str = "float64"):
    """NumPy params, X, encoded Y and frozen dropout masks in ``dtype`` (validated)."""
    from deepgrad.model.net import Network

    if not isinstance(net, Network):
        raise TypeError(f"net must be a deepgrad Network, got {type(net).__name__}")
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
    track = b.spec.hidden_activation in _RELU_FAMILY

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

    starts = range(0, len(flat), chunk)
    results = list(pool.map(one, starts) if pool is not None else map(one, starts))
    if not results:
        return np.empty(0), np.zeros(0, bool)
    return (np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results]))


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


def _exact_network(net, data, opts, select, workers) -> GradcheckReport:
    """The exact method in ``dtype`` on the net's backend (NumPy or torch, any device)."""
    params, X, Y, masks = data
    l2, m_reg, eps, threshold, backward, dtype = opts
    to_backend, threads = _backend_converter(net, dtype)
    if net.backend != "numpy":
        params = {k: to_backend(v, float_=True) for k, v in params.items()}
        X, Y = to_backend(X, float_=True), to_backend(Y, float_=True)
        masks = None if masks is None else [to_backend(mk, float_=True) for mk in masks]
    b = diffprop.base(params, X, Y, net.spec, masks)
    grads = (backward or nw.backward)(params, b.cache, Y, net.spec, l2, m_reg)
    _, G, _ = _prepare(params, {k: to_numpy(v) for k, v in grads.items()})
    unit = float(np.finfo(dtype).eps)
    R = _gradient_scale(b, l2, m_reg)
    checked = {}
    pool = ThreadPoolExecutor(workers) if workers > 1 and threads else None
    with _single_threaded_blas(), pool or contextlib.nullcontext(), np.errstate(over="ignore"):
        for name, flat in select.items():
            num, kink = _exact_layer(b, name, flat, eps, (l2, m_reg, to_backend), pool)
            ana = G[name].reshape(-1)[flat]
            floor = unit * R[name].reshape(-1)[flat]
            checked[name] = _Checked(params[name].shape, flat, num, ana, kink, floor)
    how = _Verdict("exact", dtype, bands("exact", dtype), FAIL_UNITS)
    return _report(checked, threshold, eps, 0.0, net.n_params, "elementwise", how)


def _plain_network(net, data, opts, select, workers) -> GradcheckReport:
    """The seed's formula, batched (NumPy, in ``dtype``)."""
    params, X, Y, masks = data
    l2, m_reg, eps, threshold, backward, dtype = opts
    s = _state(params, X, Y, net.spec, l2, m_reg, masks)
    J0 = float(nw.cost_from_output(s.cache.Z[-1], Y, params, net.spec, l2, m_reg))
    grads = (backward or nw.backward)(params, s.cache, Y, net.spec, l2, m_reg)
    _, G, _ = _prepare(params, grads)
    checked = {}
    pool = ThreadPoolExecutor(workers) if workers > 1 else None
    with _single_threaded_blas(), pool or contextlib.nullcontext():
        for name, flat in select.items():
            num, kink = _layer_numerical(s, name, flat, eps, pool)
            checked[name] = _Checked(params[name].shape, flat, num, G[name].reshape(-1)[flat], kink)
    # Per-example losses are computed from Z^[L]; their rounding, ~ulp(|Z^[L]|) each,
    # averages over m examples to ~ulp(|Z^[L]|) / sqrt(m) in J.
    scale = float(np.max(np.abs(s.cache.Z[-1]))) / math.sqrt(X.shape[0])
    how = _Verdict("plain", dtype, bands("plain", dtype), 1.0)
    noise = _noise(J0, eps, scale, dtype)
    return _report(checked, threshold, eps, noise, net.n_params, "elementwise", how)


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
    dtype = getattr(net, "dtype", "float64") if dtype is None else _choice("dtype", dtype, DTYPES)
    why = diffprop.supports(net.spec) if hasattr(net, "spec") else ""
    if method == "exact" and why:
        warnings.warn(f"{why}: falling back to method='plain'", RuntimeWarning, stacklevel=3)
        method = "plain"
    default_eps, default_threshold, _ = DEFAULTS[(method, dtype)]
    eps = _check_eps(default_eps if eps is None else eps, dtype)
    return method, dtype, eps, default_threshold if threshold is None else threshold


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
    l2_denominator: int | None = None,
    backward: Callable | None = None,
    workers: int | None = None,
    method: str = "exact",
    dtype: str | None = None,
) -> GradcheckReport:
    """Check a network's backprop against central differences of its regularized cost.

    Computes the seed's central differences (J(theta + eps e_i) - J(theta - eps e_i)) /
    (2 eps) of ``network.cost`` (the L2 term included), batched; see the module docstring.

    Parameters
    ----------
    net : a deepgrad ``Network`` (its parameters are not changed).
    X : (m, n^[0]) inputs; Y : (m,) labels or (m, n^[L]) targets.
    l2 : lambda of the L2 term; ``l2_denominator`` divides it by that instead of m.
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
        ``deepgrad.bugs``) whose gradients are checked instead of deepgrad's.
    workers : threads that evaluate batches of perturbed networks in parallel (NumPy;
        default: the CPU count, at most 8; 1 = sequential). The numbers do not depend on it.
    method : "exact" (default): the same central difference computed without
        cancellation, by difference propagation (``deepgrad.diffprop``), on the net's
        backend (NumPy, or torch on its device); each element is judged against its own
        noise floor (``report.floor``). "plain": the seed's formula, two cost evaluations
        subtracted (NumPy). A net with an activation or output that has no difference
        identity falls back to "plain" with a RuntimeWarning.
    dtype : "float64" or "float32": the precision of the check (None: the net's dtype).
        float32 networks are checked in float32, against float32 backprop.

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
    method, dtype, eps, threshold = _resolve_method(net, method, dtype, eps, threshold)
    data = _network_inputs(net, X, Y, keep_prob, masks, seed, dtype)
    l2 = check_float("l2", l2, 0.0)
    m = data[1].shape[0]
    m_reg = m if l2_denominator is None else check_int("l2_denominator", l2_denominator, 1)
    if backward is not None and not callable(backward):
        raise TypeError(f"backward must be callable like network.backward, got {backward!r}")
    eps, threshold, sample = _check_options(eps, threshold, sample, net.n_params, seed)
    _check_cost(data, net.spec, l2, m_reg)
    workers = min(8, os.cpu_count() or 1) if workers is None else check_int("workers", workers)
    select = _select(net.spec.shapes(), sample, seed)
    opts = (l2, m_reg, eps, threshold, backward, dtype)
    run = _exact_network if method == "exact" else _plain_network
    return run(net, data, opts, select, workers)


def _check_cost(data, spec, l2, m_reg) -> None:
    params, X, Y, masks = data
    J0 = float(nw.cost(params, X, Y, spec, l2, m_reg, masks))
    if not math.isfinite(J0):
        raise ValueError(f"the cost of net on (X, Y) is {J0}; it must be finite")
