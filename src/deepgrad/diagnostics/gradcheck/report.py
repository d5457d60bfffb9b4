"""The result of a gradient check and how it is judged.

``GradcheckReport`` (immutable) and its ``Entry`` records, the verdict bands and bars of
each method and dtype (``DEFAULTS``, ``bands``, ``verdict``), and ``build_report``: every
method (``generic``, ``plain``, ``exact``) hands its comparisons, one ``Checked`` per
parameter array, to it, so the verdict is computed in one place.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import NamedTuple

import numpy as np

__all__ = [
    "BANDS",
    "DEFAULTS",
    "FAIL_UNITS",
    "SUSPECT_UNITS",
    "NOISE_BAR",
    "bands",
    "verdict",
    "Entry",
    "GradcheckReport",
    "Checked",
    "Criteria",
    "PLAIN",
    "build_report",
]

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
# exact method: an element fails beyond FAIL_UNITS noise floors (a correct backprop reaches
# ~50 of them at worst in float32, measured; a float32 element off by 1e-4 relative sits at
# ~800 / (R_i / |g_i|)). When the whole check fails with no element beyond it, the elements
# beyond SUSPECT_UNITS are named instead.
FAIL_UNITS = 200.0
SUSPECT_UNITS = 20.0
# A correct backprop's relative error is 0.5-2x the report's noise floor (measured on random
# and trained nets); the exact method's bar is never below NOISE_BAR floors.
NOISE_BAR = 10.0


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


# -- judging the comparisons --------------------------------------------------------------


def _rel(num: np.ndarray, ana: np.ndarray) -> float:
    """The seed's ||num - ana|| / (||num|| + ||ana||); 0 when both are 0."""
    den = np.linalg.norm(num) + np.linalg.norm(ana)
    return float(np.linalg.norm(num - ana) / den) if den > 0 else 0.0


class Checked(NamedTuple):
    """What was compared for one array: flat indices, both derivatives, kink flags and
    each element's absolute noise floor."""

    shape: tuple[int, ...]
    flat: np.ndarray
    numerical: np.ndarray
    analytic: np.ndarray
    kink: np.ndarray
    floor: np.ndarray | float = math.nan


def _entries(name: str, c: Checked, which: np.ndarray, units: np.ndarray) -> list[Entry]:
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


class Criteria(NamedTuple):
    """How a report judges elements: the method, its dtype and bands, and how many noise
    floors an element may be off (plain: 1 x the rounding bound ``noise``)."""

    method: str = "plain"
    dtype: str = "float64"
    bands: tuple = BANDS
    fail_units: float = 1.0


PLAIN = Criteria()


def _element_floor(c: Checked, noise: float) -> np.ndarray:
    return np.broadcast_to(np.where(np.isnan(c.floor), noise, c.floor), c.numerical.shape)


def _judge(checked, threshold, noise, how: Criteria, overall_failed: bool):
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


def build_report(
    checked: dict[str, Checked], threshold, eps, noise, total, mode, how: Criteria = PLAIN
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


def _full(checked: dict[str, Checked], which) -> Mapping[str, np.ndarray]:
    """Read-only arrays of each parameter's shape holding ``which`` (a field of Checked
    or a dict of per-element values; NaN = not checked)."""
    out = {}
    for name, c in checked.items():
        arr = np.full(math.prod(c.shape), np.nan)
        arr[c.flat] = getattr(c, which) if isinstance(which, str) else which[name]
        arr = arr.reshape(c.shape)
        arr.flags.writeable = False
        out[name] = arr
    return MappingProxyType(out)
