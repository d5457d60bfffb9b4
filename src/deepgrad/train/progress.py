"""A progress bar that is quiet unless stderr is a terminal (tqdm when installed)."""

from __future__ import annotations

import sys


class _Silent:
    def update(self, n: int = 1) -> None:
        pass

    def set_postfix_str(self, s: str, refresh: bool = True) -> None:
        pass

    def close(self) -> None:
        pass


def progress_bar(total: int, enabled: bool | None = None, desc: str = "train"):
    """tqdm over ``total`` iterations; ``enabled=None`` means "only on a terminal"."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled:
        return _Silent()
    try:
        from tqdm.auto import tqdm
    except ImportError:  # progress is an optional extra
        return _Silent()
    return tqdm(total=total, desc=desc, unit="it", leave=False, dynamic_ncols=True)
