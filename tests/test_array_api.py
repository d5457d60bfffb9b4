"""The same forward, backward and training step on array_api_strict as on NumPy."""

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.core import network as nw

xps = pytest.importorskip("array_api_strict")


def _strict(params):
    return {k: xps.asarray(v) for k, v in params.items()}


@pytest.mark.parametrize(
    "hidden,output",
    [("relu", "softmax"), ("tanh", "sigmoid"), ("leaky_relu", "linear"), ("sigmoid", "sigmoid")],
)
def test_forward_backward_step_match_numpy(hidden, output, rng):
    net = dg.Network([6, 7, 5, 3], hidden, output, seed=0, dtype="float64")
    X = rng.standard_normal((9, 6))
    Y = (
        rng.integers(0, 3, 9)
        if output == "softmax"
        else (
            (rng.random((9, 3)) < 0.5).astype(float)
            if output == "sigmoid"
            else rng.standard_normal((9, 3))
        )
    )
    J_np, g_np = net.cost_and_gradients(X, Y, l2=0.3)
    strict = net.copy()
    strict.params = _strict(net.params)
    J_s, g_s = strict.cost_and_gradients(xps.asarray(X), xps.asarray(Y), l2=0.3)
    assert all(type(g) is type(xps.asarray(1.0)) for g in g_s.values())
    assert J_s == pytest.approx(J_np, rel=1e-13)
    for k in g_np:
        np.testing.assert_allclose(np.asarray(g_s[k]), g_np[k], rtol=1e-12, atol=1e-14)
    ZL_np, _ = nw.forward(net.params, X, net.spec)
    ZL_s, _ = nw.forward(strict.params, xps.asarray(X), strict.spec)
    np.testing.assert_allclose(np.asarray(ZL_s), ZL_np, rtol=1e-13)


def test_training_steps_match_numpy(rng):
    X = rng.standard_normal((40, 4))
    y = (X[:, 0] > 0).astype(int)
    a = dg.Network([4, 8, 8, 1], "relu", seed=1, dtype="float64")
    b = a.copy()
    b.params = _strict(a.params)
    for net in (a, b):
        net.fit(X, y, batch_size=8, epochs=2, learning_rate=0.1, l2=0.05, keep_prob=0.8, seed=3)
    assert isinstance(b.params["W1"], type(xps.asarray(1.0)))
    for k in a.params:
        np.testing.assert_allclose(np.asarray(b.params[k]), a.params[k], rtol=1e-12, atol=1e-14)
    np.testing.assert_array_equal(np.asarray(b.predict(xps.asarray(X))), a.predict(X))
