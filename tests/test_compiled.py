"""The compiled engine: every activation and output, float32, its limits, and a
deepgrad without numba (the engine says so; everything else trains as before)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.train.engines import compiled

needs_numba = pytest.mark.skipif(not compiled.numba_available(), reason="no numba")


def _xy(output, m=96, n=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n))
    if output == "softmax":
        return X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    if output == "linear":
        return X, X[:, 0] - 0.5 * X[:, 1]
    return X, (X[:, 0] * X[:, 1] > 0).astype(int)


def _fit(engine, hidden, output, dtype="float64", **kw):
    X, y = _xy(output)
    net = dg.Network(
        [5, 7, 4, 3 if output == "softmax" else 1],
        seed=2,
        dtype=dtype,
        hidden_activation=hidden,
        output=output,
    )
    kw = {
        "batch_size": 32,
        "epochs": 3,
        "seed": 5,
        "progress": False,
        "l2": 0.1,
        "optimizer": "adam",
        "learning_rate": 0.02,
        **kw,
    }
    h = net.fit(X.astype(dtype), y, engine=engine, **kw)
    return {k: np.asarray(v, np.float64) for k, v in net.params.items()}, h


@needs_numba
@pytest.mark.parametrize("hidden", ["relu", "leaky_relu", "tanh", "sigmoid", "linear"])
@pytest.mark.parametrize("output", ["sigmoid", "softmax", "linear"])
def test_every_activation_and_output_gives_the_reference_numbers(hidden, output):
    ref, href = _fit("reference", hidden, output, keep_prob=0.8)
    got, h = _fit("compiled", hidden, output, keep_prob=0.8)
    assert h.engine == "compiled" and len(h.iteration_cost) == 9
    np.testing.assert_allclose(h.iteration_cost, href.iteration_cost, rtol=1e-12)
    for k in ref:
        scale = np.max(np.abs(ref[k]))
        assert np.max(np.abs(ref[k] - got[k])) <= 1e-12 * scale, k


@needs_numba
def test_float32_follows_the_reference_to_float32_rounding():
    ref, href = _fit("reference", "relu", "sigmoid", "float32")
    got, h = _fit("compiled", "relu", "sigmoid", "float32")
    assert h.engine == "compiled"
    np.testing.assert_allclose(h.iteration_cost, href.iteration_cost, rtol=1e-4)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-3, atol=1e-5)


@needs_numba
def test_large_layers_and_custom_optimizers_are_refused_by_name():
    X, y = _xy("sigmoid", n=100)
    net = dg.Network([100, 64, 1], seed=0)
    with pytest.raises(ValueError, match="engine 'compiled' cannot run this fit: its loops"):
        net.fit(X, y, epochs=1, engine="compiled", progress=False)
    net = dg.Network([5, 3, 1], seed=0)
    custom = dg.optimizers.chain(
        "mine", 0.1, dg.optimizers.scale_by_rms(0.9), dg.optimizers.scale_by_momentum(0.5)
    )
    with pytest.raises(ValueError, match="built-in optimizers only, not 'mine'"):
        net.fit(X[:, :5], y, epochs=1, engine="compiled", optimizer=custom, progress=False)


def test_without_numba_the_engine_names_it_and_training_still_works(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['numba'] = None\n")
    script = textwrap.dedent("""
        import numpy as np, pytest, deepgrad as dg
        X = np.random.default_rng(0).standard_normal((64, 2)); y = (X[:, 0] > 0).astype(int)
        net = dg.Network([2, 4, 1], seed=0)
        h = net.fit(X, y, epochs=2, batch_size=16, progress=False)
        assert h.engine == "numpy-shards", h.engine
        with pytest.raises(ValueError, match="'compiled' cannot run this fit: it needs numba"):
            net.fit(X, y, epochs=1, engine="compiled", progress=False)
        print("ok")
    """)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"
