"""Figures for the probe: per-layer scales in the style of Glorot & Bengio (2010),
activation histograms, the probe over training time, and cost curves per initializer.

Every function takes ``fig=None`` and returns the figure; none calls ``show()``.
"""

from __future__ import annotations

import numpy as np

from deepgrad.diagnostics.probe import HIST_EDGES
from deepgrad.plotting.curves import pyplot

__all__ = ["probe_figure", "hist_layers", "training_probe_figure", "compare_init_figure"]


def _positive(values) -> np.ndarray:
    """Zeros and non-finite values become NaN: gaps on a log axis instead of errors."""
    v = np.asarray(values, dtype=float)
    return np.where(np.isfinite(v) & (v > 0), v, np.nan)


def hist_layers(n_hidden: int, k: int = 5) -> list[int]:
    """About ``k`` hidden layers spread from the first to the last (1-based, distinct)."""
    return sorted({int(round(x)) for x in np.linspace(1, n_hidden, min(k, n_hidden))})


def _scales_panels(reports, ax_a, ax_g) -> None:
    for i, r in enumerate(reports):
        color = f"C{i}"
        layers = np.arange(1, len(r.hidden) + 1)
        ax_a.plot(
            layers,
            _positive(r.column("a_std")),
            "o-",
            ms=3,
            color=color,
            label=f"{r.init}: {r.verdict}",
        )
        ax_a.plot(
            layers,
            _positive(r.column("predicted_a_std")),
            ":",
            color="k",
            lw=1.2,
            label="predicted (mean field)" if i == 0 else None,
        )
        ax_g.plot(layers, _positive(r.column("grad_a_std")), "o-", ms=3, color=color, label=r.init)
    ax_a.set(yscale="log", xlabel="hidden layer l", ylabel="std of A^[l]", title="activations")
    ax_g.set(
        yscale="log",
        xlabel="hidden layer l",
        ylabel="std of dJ/dA^[l]",
        title="back-propagated gradients",
    )
    ax_a.legend(fontsize=8)
    ax_g.legend(fontsize=8)


def _hist_panel(report, ax, layers) -> None:
    centers = (HIST_EDGES[:-1] + HIST_EDGES[1:]) / 2
    stats = report.hidden
    lo, hi = np.inf, -np.inf
    for j, l in enumerate(layers):
        s = stats[l - 1]
        counts = np.asarray(s.a_log10_hist, dtype=float)
        total = counts.sum()
        if total == 0:
            ax.plot([], [], color=f"C{j}", label=f"layer {l}: all zero")
            continue
        nz = np.flatnonzero(counts)
        lo, hi = min(lo, centers[nz[0]]), max(hi, centers[nz[-1]])
        ax.step(
            centers,
            counts / total,
            where="mid",
            color=f"C{j}",
            label=f"layer {l} ({100 * s.a_zero_fraction:.0f}% zeros)",
        )
    if np.isfinite(lo):
        ax.set_xlim(lo - 1, hi + 1)
    ax.set(xlabel="log10 |A^[l]| (non-zero entries)", ylabel="fraction of entries")
    ax.set_title(f"{report.init}: histograms of |A^[l]|", fontsize=10)
    ax.legend(fontsize=7)


def probe_figure(reports, fig=None, layers=None):
    """Top: std of A^[l] and of dJ/dA^[l] per hidden layer on log axes, one line per report
    (dotted: the initializer's predicted std). Bottom: for each report, histograms of
    log10 |A^[l]| for a few layers (``layers``, default spread over the depth).
    """
    plt = pyplot()
    reports = list(reports)
    n = len(reports)
    cols = max(2, n)
    if fig is None:
        fig = plt.figure(figsize=(3.6 * cols, 6.6))
    grid = fig.add_gridspec(2, 2 * cols)
    ax_a = fig.add_subplot(grid[0, :cols])
    ax_g = fig.add_subplot(grid[0, cols:])
    _scales_panels(reports, ax_a, ax_g)
    for i, r in enumerate(reports):
        ax = fig.add_subplot(grid[1, 2 * i : 2 * i + 2])
        _hist_panel(r, ax, layers or hist_layers(len(r.hidden)))
    r0 = reports[0]
    fig.suptitle(
        f"{len(r0.hidden)} hidden {r0.hidden_activation} layers of width "
        f"{r0.layer_sizes[1]}, {r0.examples} examples ({r0.dtype})"
    )
    fig.tight_layout()
    return fig


def training_probe_figure(tp, fig=None, layers=None):
    """The probe over training steps: activation RMS, gradient std and dead/saturated
    fraction of a few hidden layers, against the number of updates."""
    plt = pyplot()
    if fig is None:
        fig = plt.figure(figsize=(13, 3.8))
    axes = fig.subplots(1, 3)
    steps = np.asarray(tp.steps)
    n_hidden = len(tp.reports[0].hidden)
    layers = layers or hist_layers(n_hidden, 4)
    rms = np.sqrt(np.clip(tp.series("a_second_moment"), 0, None))
    frac_name = (
        "dead_fraction"
        if tp.reports[0].hidden[0].dead_fraction is not None
        else "saturated_fraction"
    )
    panels = [
        (rms, "RMS of A^[l]", "log"),
        (tp.series("grad_a_std"), "std of dJ/dA^[l]", "log"),
        (tp.series(frac_name), frac_name.replace("_", " "), "linear"),
    ]
    for ax, (values, label, scale) in zip(axes, panels, strict=True):
        for j, l in enumerate(layers):
            y = _positive(values[:, l - 1]) if scale == "log" else values[:, l - 1]
            ax.plot(steps, y, "o-", ms=3, color=f"C{j}", label=f"layer {l}")
        ax.set(xlabel="updates", ylabel=label, yscale=scale)
        ax.legend(fontsize=7)
    fig.tight_layout()
    return fig


def compare_init_figure(histories: dict, fig=None, title: str | None = None):
    """Cost per iteration of one training run per initializer, on one log-scaled axis.

    A run that diverged ends where it stopped, marked with an x; the y range follows the
    runs that did not diverge, and a diverged run's last cost above it is written at the top.
    """
    plt = pyplot()
    if fig is None:
        fig = plt.figure(figsize=(8, 4.8))
    ax = fig.subplots()
    calm = [
        c
        for h in histories.values()
        if h.stopped is None
        for c in _positive(h.iteration_cost)
        if np.isfinite(c)
    ]
    top = 3 * max(calm) if calm else None
    ax.set_yscale("log")
    for i, (name, h) in enumerate(histories.items()):
        cost = _positive(h.iteration_cost)
        it = np.arange(1, len(cost) + 1)
        label = name if h.stopped is None else f"{name} (diverged after {len(cost)} it.)"
        # Stalled runs lie on top of each other: distinct dashes keep each visible.
        ax.plot(it, cost, lw=1.2, color=f"C{i}", ls=("-", "--", "-.", ":")[i % 4], label=label)
        if h.stopped is None or not len(cost):
            continue
        y = cost[-1] if top is None or cost[-1] <= top else top / 1.5
        ax.plot(it[-1:], [y], "x", ms=10, mew=2, color=f"C{i}")
        if top is not None and cost[-1] > top:
            ax.annotate(
                f"{name}: J = {cost[-1]:.2g}, then NaN",
                (it[-1], y),
                textcoords="offset points",
                xytext=(8, -4),
                fontsize=8,
                color=f"C{i}",
            )
    if top is not None:
        ax.set_ylim(min(calm) / 1.5, top)
    ax.set(xlabel="iteration", ylabel="cost J{t} (mini-batch)")
    ax.legend(fontsize=8)
    if title:
        ax.set_title(title)
    fig.tight_layout()
    return fig
