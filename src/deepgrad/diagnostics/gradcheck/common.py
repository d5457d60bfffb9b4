"""What the two network methods (``plain``, ``exact``) share: the checked network's
inputs and settings as records, their batches of perturbed networks (chunks of elements
on a thread pool, BLAS on one thread) and which networks have kinks."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import NamedTuple

import numpy as np

from deepgrad.core import activations
from deepgrad.core import network as nw

__all__ = [
    "NetworkData",
    "Settings",
    "single_threaded_blas",
    "thread_pool",
    "run_chunks",
    "has_kinks",
]


class NetworkData(NamedTuple):
    """The checked network's arrays, validated, in the check's dtype (NumPy): ``params``
    {"W1": (n^[1], n^[0]), ...}, ``X`` (m, n^[0]), ``Y`` encoded (m, n^[L]) and the frozen
    dropout ``masks`` (one (m, n^[l]) array per hidden layer, or None)."""

    params: dict
    X: np.ndarray
    Y: np.ndarray
    masks: list | None


class Settings(NamedTuple):
    """How to check: lambda and m_reg of the L2 term, the step and the bar, the backward
    to check (None: ``core.network.backward``) and the dtype ("float64" or "float32")."""

    l2: float
    m_reg: int
    eps: float
    threshold: float
    backward: Callable | None
    dtype: str


def single_threaded_blas():
    """BLAS limited to one thread while the check runs (parallelism comes from ``workers``):
    a multi-threaded BLAS on these (K m, n) products spins against the element-wise work
    and made the check twice as slow (measured). Needs threadpoolctl; else a no-op."""
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:  # pragma: no cover - shipped with scikit-learn
        return contextlib.nullcontext()
    return threadpool_limits(1, user_api="blas")


def thread_pool(workers: int) -> ThreadPoolExecutor | None:
    """A pool of ``workers`` threads, or None for 1 (the batches then run in order)."""
    return ThreadPoolExecutor(workers) if workers > 1 else None


def run_chunks(one: Callable, starts: Iterable[int], pool=None) -> tuple[np.ndarray, np.ndarray]:
    """``one(start) -> (values, kink flags)`` for every chunk, concatenated in order.

    Chunks are independent; with a thread ``pool`` they run in parallel (NumPy and BLAS
    release the GIL on arrays this large), and the result does not depend on it.
    """
    results = list(pool.map(one, starts) if pool is not None else map(one, starts))
    if not results:
        return np.empty(0), np.zeros(0, bool)
    return (np.concatenate([r[0] for r in results]), np.concatenate([r[1] for r in results]))


def has_kinks(spec: nw.Spec) -> bool:
    """ReLU-family hidden layers: a perturbation can move a pre-activation across 0, where
    the cost is not differentiable; those elements are flagged, not judged."""
    return activations.get(spec.hidden_activation).family == "relu"
