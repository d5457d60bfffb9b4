"""Figures for choosing a batch size: batch vs mini-batch curves and the size sweep.

matplotlib is imported lazily (through ``plotting.pyplot``); every function takes ``fig=None``
and returns the figure, never shows it.
"""

from __future__ import annotations

import math

import numpy as np

from deepgrad.plotting.curves import moving_average, pyplot

__all__ = ["compare_figure", "sweep_figure", "track_figure", "validation_figure"]


def compare_figure(runs, fig=None, title: str | None = None):
    """Cost J^{t} per iteration, against wall-clock time and against examples seen.

    ``runs``: the list from ``batchsize.compare``. Mini-batch curves are drawn light with a
    moving average on top; SGD only as its moving average; batch GD as one smooth line.
    """
    plt = pyplot()
    fig = plt.figure(figsize=(15, 4.6)) if fig is None else fig
    axes = fig.subplots(1, 3)
    xs = [
        ("iteration", lambda h: np.arange(1, h.iterations + 1), "iteration t", "log"),
        ("time", lambda h: np.asarray(h.iteration_time), "wall-clock time (s)", "log"),
        ("examples", lambda h: np.asarray(h.iteration_examples), "examples seen", "log"),
    ]
    colors = plt.rcParams["axes.prop_cycle"].by_key()["color"]
    top = 0.0
    for ax, (_, xfn, xlabel, xscale) in zip(axes, xs, strict=True):
        for i, run in enumerate(runs):
            h, c = run.history, colors[i % len(colors)]
            x, J = xfn(h), np.asarray(h.iteration_cost)
            if run.batch_size is None or h.iterations < 20:
                ax.plot(x, J, color=c, lw=1.8, label=run.label)
                top = max(top, float(J.max()))
            else:
                w = max(5, h.iterations // 40)
                avg = moving_average(J, w)
                if run.batch_size > 1:  # single-example costs would hide everything else
                    ax.plot(x, J, color=c, lw=0.4, alpha=0.25)
                ax.plot(x, avg, color=c, lw=1.5, label=f"{run.label} (moving avg {w})")
                top = max(top, float(avg.max()))
        # Single-example costs reach 10+ and 1e-10: the axis follows the averages instead.
        ax.set(xlabel=xlabel, ylabel="cost J{t} of the (mini-)batch", xscale=xscale)
        ax.grid(alpha=0.3)
    for ax in axes:
        ax.set_ylim(0, 1.15 * top)
    axes[0].set_title("cost per iteration")
    axes[1].set_title("cost vs wall-clock time")
    axes[2].set_title("cost vs examples seen")
    axes[0].legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def sweep_figure(rec, fig=None, title: str | None = None, time_to_target=None, band=None):
    """Time per step and per epoch by batch size, and the predicted time to a target;
    with ``time_to_target`` (``batchsize.time_to_target``'s runs) also the measured one,
    with ``band`` (``batchsize.band``'s sizes) the band shaded on the prediction."""
    plt = pyplot()
    n = 3 if time_to_target is None else 4
    fig = plt.figure(figsize=(4.4 * n, 4.2)) if fig is None else fig
    axes = fig.subplots(1, n)
    ax1, ax2, ax3 = axes[:3]
    b = np.array([r["batch_size"] for r in rec.rows])
    ax1.plot(b, [r["step_s"] * 1e3 for r in rec.rows], "o-")
    ax1.set(
        xscale="log",
        yscale="log",
        xlabel="batch size B",
        ylabel="ms per step",
        title="time per step",
    )
    ax2.plot(b, [r["epoch_s"] for r in rec.rows], "o-")
    ax2.set(xscale="log", xlabel="batch size B", ylabel="s per epoch", title="time per epoch")
    ax3.plot(b, [r["relative_time"] for r in rec.rows], "o-")
    ax3.set(
        xscale="log",
        yscale="log",
        xlabel="batch size B",
        ylabel="(1 + B_simple/B) t_step, relative",
        title="predicted time to a target cost",
    )
    if band:
        ax3.axvspan(min(band), max(band), color="tab:red", alpha=0.1, label="band")
    if time_to_target is not None:
        ax4 = axes[3]
        hit = [r for r in time_to_target if r.reached]
        ax4.plot([r.batch_size for r in hit], [r.seconds for r in hit], "o-", color="tab:green")
        for r in time_to_target:
            if not r.reached:
                ax4.axvline(r.batch_size, color="tab:green", alpha=0.3, lw=6)
        ax4.set(
            xscale="log",
            xlabel="batch size B",
            ylabel="seconds",
            title="measured time to the target cost\n(shaded: not reached)",
        )
    for ax in axes:
        if math.isfinite(rec.b_simple):
            ax.axvline(
                rec.b_simple, color="gray", ls="--", lw=1, label=f"{rec.name} = {rec.b_simple:.0f}"
            )
        ax.axvline(
            rec.batch_size, color="tab:red", ls=":", lw=1.5, label=f"recommended {rec.batch_size}"
        )
        ax.grid(alpha=0.3)
    ax3.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def track_figure(track, fig=None, title: str | None = None):
    """B_simple (with its interval) and the cost after each epoch (``track_noise_scale``)."""
    plt = pyplot()
    fig = plt.figure(figsize=(9, 4.2)) if fig is None else fig
    ax1, ax2 = fig.subplots(1, 2)
    e = np.array([t.epochs for t in track])
    est = np.array([t.interval.estimate.b_simple for t in track])
    low = np.array([t.interval.low for t in track])
    high = np.array([t.interval.high for t in track])
    top = np.nanmax(np.where(np.isfinite(high), high, est)) * 2
    ax1.fill_between(e, low, np.where(np.isfinite(high), high, top), alpha=0.25)
    ax1.plot(e, est, "o-", label="B_simple")
    ax1.set(yscale="log", xlabel="epochs trained", ylabel="B_simple", title="noise scale")
    ax2.plot([t.cost for t in track], est, "o", alpha=0.8)
    ax2.set(
        xscale="log",
        yscale="log",
        xlabel="cost J",
        ylabel="B_simple",
        title="noise scale as the cost falls",
    )
    ax2.invert_xaxis()
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def validation_figure(val, fig=None, title: str | None = None):
    """Measured seconds to the target per (batch size, learning rate) of ``validate``."""
    plt = pyplot()
    fig = plt.figure(figsize=(6.4, 4.4)) if fig is None else fig
    ax = fig.subplots()
    hit = [(b, lr, r) for b, lr, r in val.runs if r.reached]
    if hit:
        sc = ax.scatter(
            [b for b, _, _ in hit],
            [r.seconds for _, _, r in hit],
            c=np.log10([lr for _, lr, _ in hit]),
        )
        fig.colorbar(sc, ax=ax, label="log10 learning rate")
    b, lr = val.recommended
    mine = [r for bb, ll, r in val.runs if (bb, ll) == (b, lr) and r.reached]
    if mine:
        ax.plot([b], [mine[0].seconds], "r*", ms=16, label=f"recommended ({b}, {lr:.3g})")
    if val.fastest is not None:
        best = min(r.seconds for _, _, r in val.runs if r.reached)
        ax.axhline(best * 1.25, color="gray", ls="--", lw=1, label="1.25 x fastest")
    ax.set(
        xscale="log",
        yscale="log",
        xlabel="batch size B",
        ylabel="seconds to the target",
        title=val.message if len(val.message) < 60 else "measured time to the target",
    )
    from matplotlib.ticker import FormatStrFormatter, LogLocator, NullLocator

    sizes = sorted({bb for bb, _, _ in val.runs})
    ax.set_xticks(sizes, [str(s) for s in sizes])  # the candidate sizes, not log minor ticks
    ax.xaxis.set_minor_locator(NullLocator())
    # seconds at 1, 2 and 5 of each decade: times within one decade still get numbers
    ax.yaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.yaxis.set_major_formatter(FormatStrFormatter("%g"))
    ax.yaxis.set_minor_locator(NullLocator())
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig
