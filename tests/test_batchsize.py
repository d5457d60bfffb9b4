"""Gradient noise scale against brute-force per-example gradients; the recommendation."""

from __future__ import annotations

import math

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import batchsize
from deepgrad import network as nw
from deepgrad._checks import encode_targets


def _problem(sizes=(5, 7, 4, 3), act="tanh", output="softmax", m=40, seed=0):
    rng = np.random.default_rng(seed)
    net = dg.Network(list(sizes), act, output, seed=seed, dtype="float64")
    X = rng.standard_normal((m, sizes[0]))
    if output == "softmax":
        y = rng.integers(0, sizes[-1], m)
    elif output == "sigmoid":
        y = rng.integers(0, 2, (m, sizes[-1]))
    else:
        y = rng.standard_normal((m, sizes[-1]))
    Y = encode_targets(y, output, sizes[-1], np, "float64")
    return net, X, Y


def _brute(net, X, Y):
    """Per-example gradient vectors, one full backward pass per example."""
    rows = []
    for i in range(X.shape[0]):
        _, g = nw.cost_and_gradients(net.params, X[i : i + 1], Y[i : i + 1], net.spec)
        rows.append(np.concatenate([g[k].ravel() for k in nw.param_names(net.spec.L)]))
    return np.array(rows)


@pytest.mark.parametrize(
    "act,output", [("tanh", "softmax"), ("relu", "sigmoid"), ("leaky_relu", "linear")]
)
def test_per_example_norms_match_brute_force(act, output):
    net, X, Y = _problem(act=act, output=output, sizes=(5, 7, 4, 3))
    sq, mean = batchsize.per_example_sq_norms(net.params, X, Y, net.spec)
    G = _brute(net, X, Y)
    np.testing.assert_allclose(sq, np.sum(G * G, axis=1), rtol=1e-10)
    flat_mean = np.concatenate([mean[k].ravel() for k in nw.param_names(net.spec.L)])
    np.testing.assert_allclose(flat_mean, G.mean(axis=0), rtol=1e-10, atol=1e-14)


def test_noise_scale_matches_brute_force_covariance():
    net, X, Y = _problem(m=64)
    est = batchsize.noise_scale(net.params, X, Y, net.spec, batch_size=64, batches=1)
    G = _brute(net, X, Y)
    trace = np.trace(np.cov(G, rowvar=False))  # unbiased, divides by B - 1
    gbar = G.mean(axis=0)
    grad_sq = gbar @ gbar - trace / 64
    assert est.trace == pytest.approx(trace, rel=1e-9)
    assert est.grad_sq == pytest.approx(grad_sq, rel=1e-9)
    assert est.b_simple == pytest.approx(trace / grad_sq, rel=1e-9)


def test_noise_scale_of_a_known_linear_model():
    # Linear output, no hidden layer, at W = 0, b = 0: g_i = -(y_i) [x_i, 1] with
    # y = 1 + eps: G = -(E[x], 1) = -(0, 1) when x ~ N(0, I) independent of y.
    # Then |G|^2 = 1 and tr(Sigma) = E[y^2] (E||x||^2 + 1) - 1 = (1 + s^2) (d + 1) - 1.
    rng = np.random.default_rng(3)
    d, s, m = 4, 0.5, 200_000
    net = dg.Network([d, 1], output="linear", init="zeros", dtype="float64")
    X = rng.standard_normal((m, d))
    Y = (1.0 + s * rng.standard_normal(m))[:, None]
    est = batchsize.noise_scale(
        net.params, X, Y, net.spec, batch_size=4096, batches=20, rng=np.random.default_rng(0)
    )
    expected = (1 + s**2) * (d + 1) - 1
    assert est.grad_sq == pytest.approx(1.0, rel=0.05)
    assert est.b_simple == pytest.approx(expected, rel=0.1)


def test_recommend_balances_noise_and_step_time():
    times = {64: 1e-3, 256: 1.5e-3, 1024: 4e-3, 4096: 10e-3}
    # B_simple = 1000: predicted (1 + 1000/B) t: 64 -> 16.6e-3, 256 -> 7.4e-3,
    # 1024 -> 7.9e-3, 4096 -> 12.4e-3
    rec = batchsize.recommend(times, 1000.0, m=100_000)
    assert rec.batch_size == 256
    assert "B_simple ~ 1000" in rec.reason
    row = {r["batch_size"]: r for r in rec.rows}
    assert row[1024]["epoch_s"] == pytest.approx(4e-3 * math.ceil(100_000 / 1024))
    # A tiny noise scale makes the cheapest step win; a huge one, the biggest batch
    assert batchsize.recommend(times, 1.0, 100_000).batch_size == 64
    assert batchsize.recommend(times, 1e6, 100_000).batch_size == 4096


def test_candidate_sizes_and_step_times():
    assert batchsize.candidate_sizes(5000) == [16, 32, 64, 128, 256, 512, 1000, 1024, 2048, 4096]
    assert batchsize.candidate_sizes(100) == [16, 32, 64]
    net, X, Y = _problem(output="sigmoid", sizes=(5, 8, 1), m=600)
    times = batchsize.step_times(net, X, Y[:, 0], [16, 64], steps=5, repeats=1)
    assert set(times) == {16, 64} and all(0 < t < 1 for t in times.values())


def test_noise_scale_bad_input():
    net, X, Y = _problem()
    with pytest.raises(ValueError, match="batch_size"):
        batchsize.noise_scale(net.params, X, Y, net.spec, batch_size=1)
