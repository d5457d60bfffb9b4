"""BLAS thread limits shared by concurrent fits.

``threadpoolctl``'s limits are process-wide: two fits in two threads that each set and
restore them would undo each other's. Here the first holder sets single-threaded BLAS
and the last one to release restores what was there, whatever the order.
"""

from __future__ import annotations

import threading

__all__ = ["blas_single_thread", "BlasLimit", "holders"]

_lock = threading.Lock()
_holders = 0
_limiter = None


class BlasLimit:
    """A held limit; ``release`` once (further calls do nothing)."""

    def __init__(self):
        self.held = True

    def release(self) -> None:
        global _holders, _limiter
        with _lock:
            if not self.held:
                return
            self.held = False
            _holders -= 1
            if _holders == 0 and _limiter is not None:
                _limiter.restore_original_limits()
                _limiter = None


def blas_single_thread() -> BlasLimit:
    """Single-threaded BLAS until every holder has released (a no-op without
    threadpoolctl). The library scan (~4 ms) is paid once per fit, not per epoch."""
    global _holders, _limiter
    with _lock:
        if _holders == 0:
            try:
                from threadpoolctl import threadpool_limits
            except ImportError:
                _limiter = None
            else:
                _limiter = threadpool_limits(1, user_api="blas")
        _holders += 1
    return BlasLimit()


def holders() -> int:
    """How many fits hold the limit now."""
    with _lock:
        return _holders
