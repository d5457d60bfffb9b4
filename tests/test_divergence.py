"""Divergence: a non-finite cost, gradient or update stops training at that step, keeps the
last finite parameters and the history, and says where and what to do."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.optim import optimizers
from deepgrad.sklearn import DeepClassifier, DeepRegressor

SRC = str(Path(dg.__file__).resolve().parents[1])
MESSAGE = (
    r"diverged at epoch (\d+), iteration (\d+): .*last finite parameters .* are kept; "
    r"try a smaller learning rate"
)


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(64, 5)) * 3
    y = X @ rng.normal(size=5) + 1.0
    return X, y


def _recorder():
    steps = []

    def callback(info):
        steps.append(
            (info.epoch, info.iteration, info.cost, {k: v.copy() for k, v in info.params.items()})
        )

    return steps, callback


@pytest.mark.parametrize("batch_size", [None, 16, 1])
@pytest.mark.parametrize("lr", [5.0, 1e4, 1e300])
def test_raise_names_epoch_and_iteration_and_keeps_last_finite(data, batch_size, lr):
    X, y = data
    net = dg.Network([5, 16, 16, 1], output="linear", seed=0, dtype="float64")
    steps, callback = _recorder()
    with pytest.raises(dg.DivergenceError, match=MESSAGE) as err:
        net.fit(
            X, y, batch_size=batch_size, epochs=500, learning_rate=lr, seed=0, callbacks=[callback]
        )
    import re

    epoch, iteration = map(int, re.search(MESSAGE, str(err.value)).groups())
    assert iteration == len(steps) + 1  # 1-based: the first step that went wrong
    per_epoch = -(-64 // (batch_size or 64))
    assert epoch == (iteration - 1) // per_epoch + 1
    finite = steps[-1][3] if steps else None
    for k, v in net.params.items():
        assert np.all(np.isfinite(v))
        if finite is not None:
            np.testing.assert_array_equal(v, finite[k])  # exactly the last good step's


@pytest.mark.parametrize("output", ["linear", "sigmoid", "softmax"])
def test_stop_returns_history_up_to_that_step(data, output):
    X, y = data
    if output == "sigmoid":
        y, n_out = (y > 0).astype(int), 1
    elif output == "softmax":
        y, n_out = np.digitize(y, [-2, 2]), 3
    else:
        n_out = 1
    net = dg.Network([5, 32, 32, 32, n_out], output=output, seed=0, dtype="float64")
    steps, callback = _recorder()
    # the cross-entropies are Lipschitz in the logits: only an overflowing update diverges
    lr = 1e6 if output == "linear" else 1e300
    history = net.fit(
        X,
        y,
        batch_size=8,
        epochs=200,
        learning_rate=lr,
        seed=0,
        on_divergence="stop",
        callbacks=[callback],
    )
    assert history.stopped is not None
    assert "smaller learning rate" in history.stopped
    assert history.iterations == len(steps)
    assert all(np.isfinite(history.iteration_cost))
    assert len(history.epoch_cost) == len(history.epoch_time) <= history.iterations
    assert all(np.all(np.isfinite(v)) for v in net.params.values())


def test_no_warnings_leak_from_a_diverging_step(data, recwarn):
    X, y = data
    net = dg.Network([5, 8, 1], output="linear", seed=0)
    net.fit(X, y, epochs=50, learning_rate=1e8, on_divergence="stop", seed=0)
    assert not [w for w in recwarn if issubclass(w.category, RuntimeWarning)]


def test_overflowing_update_with_finite_gradient_is_caught(data):
    X, y = data
    net = dg.Network([5, 4, 1], output="linear", seed=0, dtype="float32")
    before = {k: v.copy() for k, v in net.params.items()}
    # 1e38 * a gradient of order 1..100 overflows float32 in the update, not in the gradient
    history = net.fit(
        X, y, batch_size=None, epochs=3, learning_rate=1e38, seed=0, on_divergence="stop"
    )
    assert history.iterations == 0
    assert "iteration 1: the updated parameters are not finite" in history.stopped
    for k in before:
        np.testing.assert_array_equal(net.params[k], before[k])


def test_nan_from_a_custom_optimizer_is_caught_at_its_step(data):
    X, y = data
    inner = optimizers.gd(0.001)

    def update(grads, state, params):
        new, state = inner.update(grads, state, params)
        if state.count == 4:
            new = {**new, "W1": new["W1"] * np.nan}
        return new, state

    net = dg.Network([5, 4, 1], output="linear", seed=0, dtype="float64")
    opt = optimizers.Optimizer("bad", inner.init, update)
    with pytest.raises(dg.DivergenceError, match="epoch 1, iteration 4: the updated parameters"):
        net.fit(X, y, batch_size=16, epochs=2, optimizer=opt, seed=0)


def test_divergence_error_is_a_floating_point_error():
    assert issubclass(dg.DivergenceError, FloatingPointError)


def test_estimators_raise_divergence(data):
    X, y = data
    with pytest.raises(dg.DivergenceError, match="smaller learning rate"):
        DeepRegressor((16,), learning_rate=1e300, epochs=50, random_state=0).fit(X, y)
    with pytest.raises(dg.DivergenceError, match="smaller learning rate"):
        DeepClassifier((16,), learning_rate=1e300, epochs=50, random_state=0).fit(X, y > 0)


def test_cli_prints_one_line_and_exits_2(tmp_path):
    env = {**os.environ, "PYTHONPATH": SRC}
    out = tmp_path / "out"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "deepgrad",
            "train",
            "--data",
            "iris",
            "--optimizer",
            "gd",
            "--lr",
            "1e6",
            "--epochs",
            "50",
            "--quiet",
            "--out",
            str(out),
        ],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "Traceback" not in proc.stderr
    assert proc.stderr.startswith("deepgrad train: error: diverged at epoch ")
    assert "try a smaller learning rate" in proc.stderr
    assert not out.exists()  # nothing written
