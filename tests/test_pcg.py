"""The compiled engine draws NumPy's epoch order and dropout bits itself: bit for bit."""

from __future__ import annotations

import numpy as np
import pytest

from deepgrad.core import dropout
from deepgrad.data import arrays
from deepgrad.train.engines import compiled

pytestmark = pytest.mark.skipif(not compiled.numba_available(), reason="no numba")

SEEDS = [0, 1, 7, 12345, 2**31 - 1, 2**32, 2**40 + 3, 2**63 - 1]


def _state(*values):
    from deepgrad.train.engines import pcg

    return pcg, pcg.pcg64_state(pcg.seed_words(np.array(values, np.int64)))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("epoch", [0, 1, 999, 2**33])
def test_raw_numbers_are_pcg64_of_the_seed_sequence(seed, epoch):
    pcg, st = _state(seed, epoch)
    out = np.empty(9, np.uint64)
    pcg.raw_draws(st, out)
    ref = np.random.PCG64(np.random.SeedSequence([seed, epoch])).random_raw(9)
    np.testing.assert_array_equal(out, ref)
    pcg, st = _state(seed, epoch, 3, 1)  # more words than the pool of 4 mixes at first
    pcg.raw_draws(st, out)
    ref = np.random.PCG64(np.random.SeedSequence([seed, epoch, 3, 1])).random_raw(9)
    np.testing.assert_array_equal(out, ref)


@pytest.mark.parametrize("m", [1, 2, 3, 5, 44, 300, 1000, 65_537])
def test_the_epoch_permutation_is_numpys(m):
    rng = np.random.default_rng(0)
    for seed, epoch in zip(rng.choice(SEEDS, 6), rng.integers(0, 10_000, 6), strict=True):
        pcg, st = _state(int(seed), int(epoch))
        out = np.empty(m, np.int64)
        pcg.permutation(st, m, out)
        np.testing.assert_array_equal(out, arrays.epoch_permutation(m, int(seed), int(epoch)))


@pytest.mark.parametrize("keep_prob", [0.8, 0.5, 0.999, 1e-6])
@pytest.mark.parametrize("rows,hidden", [(64, [5, 2]), (7, [3]), (13, [3, 5, 1])])
def test_the_dropout_masks_are_step_masks(keep_prob, rows, hidden):
    from deepgrad.train.engines import kernels

    for dtype in ("float64", "float32"):
        out = np.empty(rows * sum(hidden), dtype)
        scale = np.asarray([1.0 / keep_prob], dtype)[0]  # as the engine passes it
        kernels._masks(out, 12345, 4, 9, dropout.keep_threshold(keep_prob), scale)
        ref = dropout.step_masks(12345, 4, 9, rows, hidden, keep_prob, dtype)
        np.testing.assert_array_equal(out, np.concatenate([mk.ravel() for mk in ref]))
