"""Matplotlib figures. Every function takes ``ax=None`` (or ``fig=None``) and returns the
figure; none calls ``show()``. matplotlib is imported only here."""

from __future__ import annotations

import numpy as np

__all__ = ["learning_curves", "save_figure"]


def pyplot():
    try:
        import matplotlib

        matplotlib.use("Agg", force=False)
        import matplotlib.pyplot as plt
    except ImportError as exc:
        import importlib.util

        if importlib.util.find_spec("matplotlib") is not None:
            raise  # installed but broken (or the import was interrupted): its own error
        raise ImportError("plots need matplotlib: pip install 'deepgrad[plot]'") from exc
    return plt


def moving_average(values, window: int) -> np.ndarray:
    """Trailing mean over ``window`` points (shorter at the start).

    Each window sum is a suffix sum of one block of ``window`` points plus a prefix sum of
    the next, never a difference of running totals: a difference cancels catastrophically
    after a spike (1e17 - (1e17 - 2.3) = 0), a sum of the window's own points cannot.
    """
    v = np.asarray(values, dtype=float)
    n, w = len(v), max(1, int(window))
    if n == 0:
        return v
    blocks = np.zeros(-(-n // w) * w)
    blocks[:n] = v
    blocks = blocks.reshape(-1, w)
    prefix = np.cumsum(blocks, axis=1).ravel()
    suffix = np.cumsum(blocks[:, ::-1], axis=1)[:, ::-1].ravel()
    end = np.arange(n)
    start = np.maximum(end - w + 1, 0)
    # A window starting at a block boundary is one prefix; otherwise it spans two blocks.
    sums = np.where(start % w == 0, prefix[end], suffix[start] + prefix[end])
    return sums / (end - start + 1)


def learning_curves(history, fig=None, title: str | None = None):
    """Cost per iteration (with a moving average), cost per epoch, validation accuracy."""
    plt = pyplot()
    has_acc = bool(history.val_accuracy) and not np.isnan(history.val_accuracy).all()
    if fig is None:
        fig = plt.figure(figsize=(15 if has_acc else 11, 4))
    axes = fig.subplots(1, 3 if has_acc else 2)
    ax1, ax2 = axes[0], axes[1]
    it = np.arange(1, history.iterations + 1)
    ax1.plot(it, history.iteration_cost, lw=0.6, alpha=0.5, label="J{t} of each mini-batch")
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
    ax2.plot(ep, history.epoch_cost, "o-", ms=3, label="training cost J (epoch mean)")
    if history.val_cost:
        ax2.plot(
            ep[: len(history.val_cost)],
            history.val_cost,
            "s-",
            ms=3,
            label="validation loss (no L2 term)",
        )
    ax2.set(xlabel="epoch", ylabel="cost", yscale="log", title="per epoch")
    ax2.xaxis.set_major_locator(_integer_ticks())
    ax2.legend()
    if has_acc:
        ax3 = axes[2]
        ax3.plot(ep[: len(history.val_accuracy)], history.val_accuracy, "g^-", ms=3)
        ax3.set(xlabel="epoch", ylabel="accuracy", title="validation accuracy")
        ax3.xaxis.set_major_locator(_integer_ticks())
        ax3.grid(alpha=0.3)
    if title:
        fig.suptitle(title)
    fig.tight_layout()
    return fig


def _integer_ticks():
    """Epochs are whole numbers: no 1.2, 1.4 ticks."""
    from matplotlib.ticker import MaxNLocator

    return MaxNLocator(integer=True)


def save_figure(fig, path) -> None:
    """Write a figure atomically (temp file, then rename) and close it."""
    from deepgrad.io.files import atomic_write

    fmt = str(path).rsplit(".", 1)[-1] if "." in str(path) else "png"
    atomic_write(path, lambda f: fig.savefig(f, format=fmt, dpi=110))
    pyplot().close(fig)
