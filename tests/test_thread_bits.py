"""Same bits from any thread: a float64 numpy-shards fit in a worker thread against the
same fit in the main thread.

The condition (docs/training.md, "Same bits from any thread"): the engine limits BLAS to
one thread per fit, but OpenBLAS (0.3.31, NumPy's wheel) ignores a thread limit set from a
non-main thread once the main thread has set one, so a fit started in a worker thread runs
its matrix products multi-threaded, and those sum in another order (last bits). With the
limit held by the main thread, any thread gives the main thread's bits.
"""

from __future__ import annotations

import threading

import numpy as np
import pytest

import deepgrad as dg

threadpoolctl = pytest.importorskip("threadpoolctl")


def _fit(out: list) -> None:
    rng = np.random.default_rng(0)
    X = rng.normal(size=(600, 120))
    y = (X[:, 0] > 0).astype(int)
    net = dg.Network([120, 96, 64, 1], seed=0, dtype="float64")
    net.fit(X, y, epochs=2, batch_size=300, seed=0, engine="numpy-shards")
    out.append(net.params)


def _in_thread() -> dict:
    out: list = []
    t = threading.Thread(target=_fit, args=(out,))
    t.start()
    t.join()
    return out[0]


def test_a_worker_thread_fit_has_the_main_threads_bits_with_the_limit_held_by_main():
    main: list = []
    _fit(main)
    with threadpoolctl.threadpool_limits(1, user_api="blas"):  # the documented remedy
        worker = _in_thread()
    for k in main[0]:
        np.testing.assert_array_equal(worker[k], main[0][k], err_msg=k)
