"""Matplotlib figures. Every function takes ``ax=None`` (or ``fig=None``) and returns the
figure; none calls ``show()``. matplotlib is imported only here."""

from __future__ import annotations

import numpy as np

__all__ = ["learning_curves", "save_figure"]


def _plt():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:  # pragma: no cover
        raise ImportError("plots need matplotlib: pip install 'deepgrad[plot]'") from exc
    return plt


def moving_average(values, window: int) -> np.ndarray:
    """Trailing mean over ``window`` points (shorter at the start)."""
    v = np.asarray(values, dtype=float)
    c = np.cumsum(np.insert(v, 0, 0.0))
    idx = np.arange(1, len(v) + 1)
    lo = np.maximum(idx - window, 0)
    return (c[idx] - c[lo]) / (idx - lo)


def learning_curves(history, fig=None, title: str | None = None):
    """Cost per iteration (with a moving average) and per epoch, plus validation accuracy."""
    plt = _plt()
    if fig is None:
        fig = plt.figure(figsize=(11, 4))
    ax1, ax2 = fig.subplots(1, 2)
    it = np.arange(1, history.iterations + 1)
    ax1.plot(it, history.iteration_cost, lw=0.6, alpha=0.5, label="J{t} per mini-batch")
    window = max(1, history.iterations // 50)
    if window > 1:
        ax1.plot(
            it,
            moving_average(history.iteration_cost, window),
            lw=1.5,
            label=f"moving average ({window})",
        )
    ax1.set(
        xlabel="iteration",
        ylabel="cost J",
        yscale="log",
        title=f"per iteration (batch size {history.batch_size})",
    )
    ax1.legend()
    ep = np.arange(1, len(history.epoch_cost) + 1)
    ax2.plot(ep, history.epoch_cost, "o-", label="training cost (epoch mean)")
    if history.val_cost:
        ax2.plot(ep[: len(history.val_cost)], history.val_cost, "s-", label="validation cost")
    ax2.set(xlabel="epoch", ylabel="cost J", yscale="log", title="per epoch")
    if history.val_accuracy and not np.isnan(history.val_accuracy).all():
        ax3 = ax2.twinx()
        ax3.plot(
            ep[: len(history.val_accuracy)],
            history.val_accuracy,
            "g^--",
            label="validation accuracy",
        )
        ax3.set_ylabel("accuracy")
        ax3.legend(loc="lower left")
    ax2.legend(loc="upper center")
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def save_figure(fig, path) -> None:
    """Write a figure atomically (temp file, then rename) and close it."""
    from .io import atomic_write

    fmt = str(path).rsplit(".", 1)[-1] if "." in str(path) else "png"
    atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=110))
    _plt().close(fig)
