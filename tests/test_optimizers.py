"""Optimizers: hand-computed first steps, convergence on a quadratic and on Rosenbrock,
purity, schedules, and that they plug into fit."""

from __future__ import annotations

import math

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.optim import optimizers as opt

THETA = {"w": np.array([1.0, -2.0])}
G = {"w": np.array([0.5, -0.25])}


def _step(o, grads=G, params=THETA, state=None):
    state = o.init(params) if state is None else state
    return o.update(grads, state, params)


def test_gd_first_step():
    p, s = _step(opt.gd(0.1))
    np.testing.assert_allclose(p["w"], [1.0 - 0.1 * 0.5, -2.0 + 0.1 * 0.25])
    assert s.count == 1


def test_momentum_first_two_steps():
    o = opt.momentum(0.1, beta=0.9)
    p, s = _step(o)
    # v = 0.9*0 + 0.1*g = [0.05, -0.025]; theta = theta - 0.1 v
    np.testing.assert_allclose(s.inner[0].velocity["w"], [0.05, -0.025])
    np.testing.assert_allclose(p["w"], [0.995, -1.9975])
    p, s = _step(o, params=p, state=s)
    # v = 0.9*0.05 + 0.1*0.5 = 0.095 (and -0.0475): theta = 0.995 - 0.0095
    np.testing.assert_allclose(p["w"], [0.9855, -1.99275])


def test_rmsprop_first_step():
    p, s = _step(opt.rmsprop(0.01, beta=0.9, eps=1e-8))
    # s = 0.1 g^2 = [0.025, 0.00625]; g / sqrt(s) = sign(g) / sqrt(0.1) = +-3.16227766
    # (eps = 1e-8 moves the step by ~4e-9)
    np.testing.assert_allclose(s.inner[0].square_avg["w"], [0.025, 0.00625])
    np.testing.assert_allclose(
        p["w"], [1.0 - 0.0316227766, -2.0 + 0.0316227766], atol=1e-8
    )  # eps: 4e-9


def test_adam_first_two_steps_bias_corrected():
    o = opt.adam(0.1, b1=0.9, b2=0.999, eps=1e-8)
    p, s = _step(o)
    # m = 0.1 g, v = 0.001 g^2; m_hat = g, v_hat = g^2: the step is alpha * g / |g|
    np.testing.assert_allclose(p["w"], [0.9, -1.9], rtol=1e-7)
    assert s.inner[0].count == 1
    p, s = _step(o, grads={"w": np.array([0.1, -0.25])}, params=p, state=s)
    # w[0]: m = 0.9*0.05 + 0.1*0.1 = 0.055, m_hat = 0.055/0.19 = 0.28947368
    #       v = 0.999*0.00025 + 0.001*0.01 = 0.00025975, v_hat = 0.00025975/0.001999
    #       step = 0.1 * 0.28947368 / sqrt(0.12993997) = 0.1 * 0.80304098
    # w[1]: the same gradient twice: m_hat = g, v_hat = g^2, step = alpha again
    np.testing.assert_allclose(p["w"], [0.9 - 0.080304098, -1.8], rtol=1e-7)


def test_update_is_pure():
    for name in ("gd", "momentum", "rmsprop", "adam"):
        o = opt.get(name, 0.1)
        params = {"w": np.array([1.0, 2.0])}
        state = o.init(params)
        before = repr(state)
        new, new_state = o.update({"w": np.array([1.0, 1.0])}, state, params)
        np.testing.assert_array_equal(params["w"], [1.0, 2.0])
        assert repr(state) == before and new_state is not state and new is not params


def _quadratic(theta):
    # f = 0.5 (x^2 + 10 y^2) - x - 10 y: minimum at (1, 1), condition number 10
    x, y = theta["w"]
    return {"w": np.array([x - 1.0, 10.0 * (y - 1.0)])}


def _rosenbrock(theta):
    # f = (1 - x)^2 + 100 (y - x^2)^2: minimum at (1, 1) at the end of a curved valley
    x, y = theta["w"]
    return {"w": np.array([-2 * (1 - x) - 400 * x * (y - x * x), 200 * (y - x * x)])}


def _run(o, grad_fn, start, steps):
    params = {"w": np.array(start, dtype=float)}
    state = o.init(params)
    for _ in range(steps):
        params, state = o.update(grad_fn(params), state, params)
    return params["w"]


@pytest.mark.parametrize(
    "o,steps",
    [
        (opt.gd(0.15), 200),
        (opt.momentum(0.15, 0.9), 400),
        (opt.rmsprop(0.01), 2000),
        (opt.adam(0.05), 1500),
        (opt.gd(opt.inverse_time_decay(0.18, 0.001)), 400),
    ],
)
def test_converges_on_quadratic(o, steps):
    np.testing.assert_allclose(_run(o, _quadratic, [-3.0, 4.0], steps), [1.0, 1.0], atol=1e-3)


@pytest.mark.parametrize(
    "o,steps",
    [
        (opt.gd(1e-3), 40_000),
        (opt.momentum(2e-3, 0.9), 20_000),
        (opt.rmsprop(opt.exponential_decay(1e-2, 0.5, 2000)), 20_000),
        (opt.adam(opt.step_decay(0.02, 0.5, 2000)), 12_000),
    ],
)
def test_converges_on_rosenbrock(o, steps):
    np.testing.assert_allclose(_run(o, _rosenbrock, [-1.2, 1.0], steps), [1.0, 1.0], atol=1e-2)


def test_schedules_hand_values():
    inv = opt.inverse_time_decay(0.1, 1.0)
    assert [inv(t) for t in (0, 1, 3)] == pytest.approx([0.1, 0.05, 0.025])
    inv2 = opt.inverse_time_decay(0.1, 0.5, decay_steps=10)
    assert inv2(20) == pytest.approx(0.05)
    exp = opt.exponential_decay(0.1, 0.5, decay_steps=2)
    assert [exp(t) for t in (0, 1, 2, 4)] == pytest.approx([0.1, 0.1 * math.sqrt(0.5), 0.05, 0.025])
    st = opt.step_decay(0.1, 0.5, every=3)
    assert [st(t) for t in range(7)] == pytest.approx([0.1] * 3 + [0.05] * 3 + [0.025])
    assert opt.constant(0.3)(1000) == 0.3


def test_schedule_drives_the_step_count():
    o = opt.gd(opt.step_decay(1.0, 0.5, every=1))
    params, state = {"w": np.array([0.0])}, None
    state = o.init(params)
    for _ in range(3):
        params, state = o.update({"w": np.array([1.0])}, state, params)
    assert params["w"][0] == pytest.approx(-(1.0 + 0.5 + 0.25))


@pytest.mark.parametrize(
    "bad,match",
    [
        (lambda: opt.get("nesterov", 0.1), "optimizer must be one of"),
        (lambda: opt.momentum(0.1, beta=1.0), "beta"),
        (lambda: opt.adam(0.1, b2=-0.1), "b2"),
        (lambda: opt.rmsprop(0.1, eps=0.0), "eps"),
        (lambda: opt.adam(-1.0), "learning_rate"),
        (lambda: opt.exponential_decay(0.1, 1.5), "decay_rate"),
        (lambda: opt.step_decay(0.1, 0.5, every=0), "every"),
    ],
)
def test_bad_hyperparameters(bad, match):
    with pytest.raises(ValueError, match=match):
        bad()


@pytest.mark.parametrize("name,lr", [("momentum", 0.1), ("rmsprop", 0.003), ("adam", 0.003)])
def test_plug_into_fit(name, lr):
    rng = np.random.default_rng(0)
    X = rng.standard_normal((600, 5))
    y = (X[:, 0] - X[:, 1] > 0).astype(int)
    net = dg.Network([5, 16, 1], seed=0)
    h = net.fit(
        X, y, batch_size=32, epochs=15, optimizer=name, learning_rate=lr, seed=0, progress=False
    )
    assert h.epoch_cost[-1] < 0.5 * h.epoch_cost[0]
    assert np.mean(net.predict(X) == y) > 0.95


def test_same_numbers_on_array_api_strict():
    xps = pytest.importorskip("array_api_strict")
    for name in ("momentum", "rmsprop", "adam"):
        o = opt.get(name, 0.05)
        pn, sn = {"w": np.array([1.0, -2.0])}, None
        ps = {"w": xps.asarray([1.0, -2.0])}
        sn, ss = o.init(pn), o.init(ps)
        for g in ([0.5, -0.25], [0.1, 0.3]):
            pn, sn = o.update({"w": np.array(g)}, sn, pn)
            ps, ss = o.update({"w": xps.asarray(g)}, ss, ps)
        np.testing.assert_allclose(np.asarray(ps["w"]), pn["w"], rtol=1e-12)
