"""Figure for a gradient-check report: per-parameter errors on a log scale, with the bands.

matplotlib is imported lazily (through ``plotting``), only when a figure is drawn.
"""

from __future__ import annotations

import numpy as np

from deepgrad.diagnostics.gradcheck import GradcheckReport

__all__ = ["report_errors"]

_BAND_COLORS = ("#d9f2d9", "#fff3c4", "#ffd9b3", "#f7c6c6")
_FLOOR = 1e-17  # where an exact 0 is drawn on the log axis


def _element_errors(report: GradcheckReport, name: str) -> np.ndarray:
    num, ana = report.numerical[name].ravel(), report.analytic[name].ravel()
    ok = ~np.isnan(num)
    num, ana = num[ok], ana[ok]
    den = np.abs(num) + np.abs(ana)
    err = np.divide(np.abs(num - ana), den, out=np.zeros_like(den), where=den > 0)
    return np.maximum(err, _FLOOR)


def report_errors(report: GradcheckReport, ax=None, title: str | None = None):
    """Per-element errors (dots) and each array's error (bar) against the verdict bands of
    the report's method and dtype, with the estimated noise floor as a grey band: errors
    inside it are rounding, not bugs.

    Returns the figure; never shows it.
    """
    from deepgrad.plotting.curves import pyplot

    plt = pyplot()
    fig = (
        plt.figure(figsize=(max(7.5, 0.7 * len(report.per_param) + 4.5), 4.5))
        if ax is None
        else ax.figure
    )
    ax = ax or fig.add_subplot(1, 1, 1)
    names = list(report.per_param)
    errs = [_element_errors(report, name) for name in names]
    floor = report.noise_floor if np.isfinite(report.noise_floor) else None
    nonzero = [e[e > _FLOOR] for e in errs]  # exact zeros are drawn at the bottom
    smallest = min([report.bar, *(float(e.min()) for e in nonzero if len(e))])
    lo = max(_FLOOR, 10.0 ** np.floor(np.log10(min(smallest, floor or 1.0)) - 1))
    _draw_bands(ax, report, lo, floor)
    _draw_errors(ax, report, names, errs, lo)
    ax.axhline(report.bar, color="k", ls="--", lw=1, label=f"bar {report.bar:.1e}")
    ax.set(
        yscale="log",
        ylim=(lo, 10.0),
        xticks=range(len(names)),
        xticklabels=names,
        ylabel="relative error |num - backprop| / (|num| + |backprop|)",
    )
    status = "passed" if report.passed else "FAILED"
    ax.set_title(
        title
        or f"gradient check {status} ({report.method}, {report.dtype}): "
        f"relative error {report.relative_error:.1e}"
    )
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8)
    fig.tight_layout()
    return fig


def _draw_bands(ax, report: GradcheckReport, lo: float, floor) -> None:
    """The verdict bands of the report's method and dtype, and the noise floor."""
    edges = [lo] + [max(b, lo) for b, _ in report.bands[:-1]] + [1e1]
    for (a, b), color, (_, label) in zip(
        zip(edges, edges[1:], strict=False), _BAND_COLORS, report.bands, strict=True
    ):
        ax.axhspan(a, b, color=color, zorder=0, label=label)
    if floor:
        ax.axhspan(
            lo,
            max(floor, lo),
            facecolor="#9e9e9e",
            alpha=0.45,
            hatch="//",
            edgecolor="#555",
            zorder=1,
            label=f"noise floor ({floor:.1e})",
        )


def _draw_errors(ax, report: GradcheckReport, names, errs, lo: float) -> None:
    """Each element's error (jittered dots) and each array's error (a bar)."""
    rng = np.random.default_rng(0)
    for x, (name, err) in enumerate(zip(names, errs, strict=True)):
        ax.scatter(
            x + rng.uniform(-0.3, 0.3, len(err)),
            np.maximum(err, lo),
            s=5,
            alpha=0.4,
            color="#444",
            zorder=2,
            label="elements" if x == 0 else None,
        )
        ax.hlines(
            max(report.per_param[name], lo),
            x - 0.38,
            x + 0.38,
            lw=3,
            color="#1f5fa8",
            zorder=3,
            label="whole array" if x == 0 else None,
        )
