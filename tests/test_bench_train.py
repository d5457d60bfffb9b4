"""bench/train_engines.py (make bench-train) runs every configuration at a tiny size."""

from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

pytest.importorskip("torch")

BENCH = Path(__file__).resolve().parents[1] / "bench" / "train_engines.py"


def _load():
    sys.path.insert(0, str(BENCH.parent))
    spec = importlib.util.spec_from_file_location("train_engines", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.parametrize("config", _load().CONFIGS)
def test_every_configuration_runs_in_both(config):
    bench = _load()
    from deepgrad.data import arrays as data

    X, y = data.synthetic(2000, bench.LAYERS[0], seed=0)
    rate, engine = bench._deepgrad(X, y, config, 100, 0)
    assert rate > 0 and engine == "numpy-shards"
    rate, engine = bench._torch(X, y, config, 100, 0)
    assert rate > 0 and engine == "torch eager"


def test_full_batch_compares_the_engines():
    result = _load().full_batch(repeats=1)
    assert set(result["seconds_per_1000_iterations"]) == {"numpy-shards", "reference"}
