"""Tests of the per-layer probe, its verdict, probe_training and LSUV (issue 4).

The claims of the issue are reproduced on the pinned sizes with several seeds, comparing
medians in log space; the slow ones are marked slow (they still run in CI).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.cli.compare_init import standardize
from deepgrad.core import activations
from deepgrad.core import network as nw
from deepgrad.diagnostics import probe as dx

SEEDS = (0, 1, 2)


def inputs(m: int, n: int, seed: int) -> np.ndarray:
    # A stream of its own: never the numbers Network(seed=seed) draws its weights from.
    return np.random.default_rng([seed, 1]).standard_normal((m, n))


def deep_net(init, depth, width, activation="relu", seed=0, dtype="float64", n_in=None):
    layers = [n_in or width] + [width] * depth + [10]
    return dg.Network(layers, activation, "softmax", init=init, seed=seed, dtype=dtype)


def probe_deep(init, depth, width, m, activation="relu", seed=0, dtype="float64"):
    net = deep_net(init, depth, width, activation, seed, dtype)
    return dg.probe(net, inputs(m, width, seed), seed=seed)


def log_median(values) -> float:
    """Median in log space (robust to the log-normal finite-width drift of deep nets)."""
    return float(10 ** np.median(np.log10(np.asarray(values, dtype=float))))


# -- the claims: ReLU, width 500, depth 30, batch 1000 ----------------------------------
@pytest.fixture(scope="module")
def relu_probes():
    # float32, the library's default: 1e-24 activations and overflow are both in reach.
    return {
        init: [probe_deep(init, 30, 500, 1000, seed=s, dtype="float32") for s in SEEDS]
        for init in ("he_normal", "xavier_normal", "random", "standard_normal")
    }


def q_ratio(report) -> float:
    """q_L / q_1: second moment of the last vs the first hidden layer's activations."""
    return report.hidden[-1].a_second_moment / report.hidden[0].a_second_moment


@pytest.mark.slow
def test_he_keeps_the_relu_signal(relu_probes):
    ratios = [q_ratio(r) for r in relu_probes["he_normal"]]
    assert 1 / 4 <= log_median(ratios) <= 4, ratios
    assert all(r.verdict == "stable" for r in relu_probes["he_normal"])


@pytest.mark.slow
def test_he_keeps_the_relu_gradient(relu_probes):
    ratios = [r.hidden[0].grad_a_std / r.hidden[-1].grad_a_std for r in relu_probes["he_normal"]]
    assert 0.5 <= log_median(ratios) <= 2, ratios


@pytest.mark.slow
def test_xavier_and_small_random_vanish_in_relu_nets(relu_probes):
    xavier = [q_ratio(r) for r in relu_probes["xavier_normal"]]
    small = [q_ratio(r) for r in relu_probes["random"]]
    assert log_median(xavier) < 1e-6, xavier
    assert log_median(small) < 1e-30, small
    for r in relu_probes["xavier_normal"] + relu_probes["random"]:
        assert r.verdict == "vanishing" and r.verdict_layer is not None


@pytest.mark.slow
def test_standard_normal_explodes_in_relu_nets(relu_probes):
    for r in relu_probes["standard_normal"]:
        q_last = r.hidden[-1].a_second_moment
        assert not math.isfinite(q_last) or q_ratio(r) > 1e30 or q_last > 1e30
        assert r.verdict == "exploding"


@pytest.mark.slow
def test_measured_second_moments_follow_the_prediction(relu_probes):
    # Layer 1 is a sum of 500 independent terms: the mean-field prediction holds to ~5%.
    # At depth 30 the finite-width fluctuations multiply; the median stays within 2x.
    for init, reports in relu_probes.items():
        first = [
            r.hidden[0].a_second_moment / r.hidden[0].predicted_a_second_moment for r in reports
        ]
        last = [
            r.hidden[-1].a_second_moment / r.hidden[-1].predicted_a_second_moment for r in reports
        ]
        assert 0.95 <= log_median(first) <= 1.05, (init, first)
        assert 0.5 <= log_median(last) <= 2, (init, last)


def test_standard_normal_overflow_in_float32_is_reported_without_warnings():
    # pytest turns warnings into errors: the probe must keep overflow quiet and report it.
    r = probe_deep("standard_normal", 45, 256, 50, dtype="float32")  # 128x per layer
    assert r.verdict == "exploding"
    first_bad = next(s.layer for s in r.layers if not s.finite)
    assert 30 <= first_bad <= 40  # 128^l overflows float32 (3.4e38) near l = 37
    assert r.verdict_layer < first_bad  # it crossed 1e3 long before it overflowed
    assert f"inf/NaN from layer {first_bad}" in r.verdict_reason


def test_overflow_in_the_first_layer_is_the_verdict_layer():
    net = deep_net("he_normal", 3, 8, dtype="float32")
    net.params["W1"] = net.params["W1"] * np.float32(1e30)
    r = dg.probe(net, np.full((4, 8), 1e10, dtype=np.float32))
    assert (r.verdict, r.verdict_layer) == ("exploding", 1)
    assert "overflows" in r.verdict_reason


# -- the claims: tanh, depth 10 -----------------------------------------------------------
@pytest.fixture(scope="module")
def tanh_probes():
    return {
        init: [probe_deep(init, 10, 500, 400, "tanh", seed=s, dtype="float32") for s in SEEDS]
        for init in ("random", "standard_normal", "xavier_normal")
    }


@pytest.mark.slow
def test_small_random_collapses_tanh(tanh_probes):
    stds = [r.hidden[-1].a_std for r in tanh_probes["random"]]
    assert log_median(stds) < 1e-5, stds


@pytest.mark.slow
def test_standard_normal_saturates_tanh(tanh_probes):
    for layer in range(10):
        fracs = [r.hidden[layer].saturated_fraction for r in tanh_probes["standard_normal"]]
        assert np.median(fracs) > 0.9, (layer + 1, fracs)


@pytest.mark.slow
def test_xavier_keeps_tanh_within_a_factor_10(tanh_probes):
    ratios = [r.hidden[-1].a_std / r.hidden[0].a_std for r in tanh_probes["xavier_normal"]]
    assert 0.1 <= log_median(ratios) <= 10, ratios
    # The quadrature prediction of tanh's shrinking second moment holds to a few percent.
    for r in tanh_probes["xavier_normal"]:
        for s in r.hidden:
            assert s.a_second_moment == pytest.approx(s.predicted_a_second_moment, rel=0.1)


# -- He et al. 2015 in miniature ----------------------------------------------------------
@pytest.mark.slow
def test_deep_relu_net_trains_with_he_and_not_with_small_random():
    X, y, _ = _digits()
    X = standardize(X)
    ratios = {"he_normal": [], "random": []}
    for init in ratios:
        for seed in SEEDS:
            net = dg.Network([64] + [100] * 30 + [10], "relu", "softmax", init=init, seed=seed)
            before = net.cost(X, y)
            net.fit(X, y, batch_size=32, epochs=10, learning_rate=0.01, seed=seed, progress=False)
            ratios[init].append(net.cost(X, y) / before)
    assert np.median(ratios["he_normal"]) <= 0.5, ratios
    assert min(ratios["random"]) > 0.9, ratios


def _digits():
    from deepgrad.data import bundled as datasets

    return datasets.load_bundled("digits")


# -- zeros: the symmetry problem -----------------------------------------------------------
def _blobs(seed=0, m=300, n=6, k=3):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, k, m)
    X = rng.standard_normal((m, n)) + 2.0 * np.eye(k, n)[y]
    return X, y


@pytest.mark.parametrize("seed", SEEDS)
def test_zeros_init_keeps_every_hidden_unit_identical(seed):
    X, y = _blobs(seed)
    net = dg.Network([6, 16, 16, 3], "sigmoid", "softmax", init="zeros", dtype="float64")
    net.fit(X, y, batch_size=32, epochs=20, learning_rate=0.5, seed=seed, progress=False)
    for l in (1, 2):
        W, b = net.params[f"W{l}"], net.params[f"b{l}"]
        assert np.abs(W).max() > 1e-3  # the layers did learn something ...
        np.testing.assert_allclose(W, np.broadcast_to(W[:1], W.shape), rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(b, b[0], rtol=1e-10, atol=1e-12)  # ... all units alike
    _, cache = net.forward(X)
    for A in cache.A:
        np.testing.assert_allclose(A, np.broadcast_to(A[:, :1], A.shape), rtol=1e-10)
    # With a random start the units differ: the symmetry is what zeros cannot break.
    other = dg.Network([6, 16, 16, 3], "sigmoid", "softmax", init="xavier_normal", seed=seed)
    assert np.ptp(other.params["W1"], axis=0).max() > 0.1


def test_zeros_init_relu_gets_no_gradient_at_all():
    X, y = _blobs(0)
    net = dg.Network([6, 16, 16, 3], "relu", "softmax", init="zeros", dtype="float64")
    r = dg.probe(net, X, y)
    assert r.verdict == "vanishing" and r.verdict_layer == 1
    assert all(s.dead_fraction == 1.0 for s in r.hidden)
    assert all(s.grad_w_norm == 0 for s in r.hidden)
    assert r.layers[0].update_ratio == 0.0


# -- LSUV ------------------------------------------------------------------------------------
@pytest.mark.parametrize("activation", ["relu", "tanh", "sigmoid", "leaky_relu"])
@pytest.mark.parametrize("seed", SEEDS)
def test_lsuv_gives_unit_output_variance_on_the_init_batch(activation, seed):
    X = 3.0 * inputs(400, 50, seed) + 1.0  # not standardized: LSUV adapts to the data
    net = deep_net("he_normal", 12, 80, activation, seed, n_in=50)
    before = {k: v.copy() for k, v in net.params.items()}
    new, info = dg.lsuv(net, X, seed=seed)
    _, cache = nw.forward(new.params, X, new.spec)
    for l, Z in enumerate(cache.Z, start=1):
        assert abs(np.var(Z) - 1) <= 0.1, (l, np.var(Z))
        assert np.var(Z) == pytest.approx(info.variances[l - 1])
    assert all(1 <= it <= 10 for it in info.iterations)
    assert all(np.array_equal(before[k], net.params[k]) for k in before)  # net untouched
    assert new.init == "lsuv"


def test_lsuv_starts_orthonormal_and_iterates_with_biases():
    X = inputs(500, 40, 0)
    net = deep_net("zeros", 4, 40, "tanh", n_in=40)
    for l in range(1, net.spec.L + 1):
        net.params[f"b{l}"] = np.random.default_rng(l).normal(0, 0.3, net.params[f"b{l}"].shape)
    new, info = dg.lsuv(net, X, seed=3, tol=0.01)
    assert all(abs(v - 1) <= 0.01 for v in info.variances)
    W1 = new.params["W1"]
    # Rescaling keeps the orthogonal structure: W1 W1^T is a multiple of the identity.
    G = W1 @ W1.T
    np.testing.assert_allclose(G / G[0, 0], np.eye(40), atol=1e-10)


def test_lsuv_bad_input():
    net = deep_net("he_normal", 2, 8, n_in=4)
    with pytest.raises(ValueError, match="at least 2 rows"):
        dg.lsuv(net, np.ones((1, 4)))
    with pytest.raises(ValueError, match="variance"):
        dg.lsuv(net, np.zeros((10, 4)))
    with pytest.raises(ValueError, match="empty"):
        dg.lsuv(net, np.zeros((0, 4)))
    with pytest.raises(ValueError, match="tol"):
        dg.lsuv(net, np.ones((5, 4)), tol=0)
    with pytest.raises(TypeError, match="Network"):
        dg.lsuv("net", np.ones((5, 4)))


# -- the measurements themselves -------------------------------------------------------------
def test_backward_signals_match_network_backward_and_central_differences():
    rng = np.random.default_rng(0)
    net = dg.Network([5, 7, 6, 3], "tanh", "softmax", init="xavier_normal", seed=1, dtype="float64")
    X, y = rng.standard_normal((9, 5)), rng.integers(0, 3, 9)
    Y = np.eye(3)[y]
    ZL, cache = nw.forward(net.params, X, net.spec)
    grads, dAs = dx._backward_signals(net.params, cache, Y, net.spec, 0.3)
    ref = nw.backward(net.params, cache, Y, net.spec, 0.3)
    for k in ref:
        np.testing.assert_allclose(grads[k], ref[k], rtol=1e-12, atol=1e-15)

    def cost_from_layer1(A1):  # J as a function of A^[1] (data term only)
        Z2 = A1 @ net.params["W2"].T + net.params["b2"]
        Z3 = np.tanh(Z2) @ net.params["W3"].T + net.params["b3"]
        return float(nw.cost_from_output(Z3, Y, net.params, net.spec))

    A1, eps, num = cache.A[0], 1e-6, np.zeros_like(cache.A[0])
    for idx in np.ndindex(A1.shape):
        up, down = A1.copy(), A1.copy()
        up[idx] += eps
        down[idx] -= eps
        num[idx] = (cost_from_layer1(up) - cost_from_layer1(down)) / (2 * eps)
    np.testing.assert_allclose(dAs[0], num, rtol=1e-6, atol=1e-10)


def test_layer_statistics_by_hand():
    # One ReLU layer with weights chosen so that unit 2 is dead on the batch.
    net = dg.Network([2, 3, 2], "relu", "softmax", init="zeros", dtype="float64")
    net.params["W1"] = np.array([[1.0, 0.0], [0.0, 1.0], [-1.0, -1.0]])
    net.params["W2"] = np.array([[1.0, -1.0, 0.5], [0.5, 0.5, 0.5]])
    X = np.array([[1.0, 2.0], [3.0, 0.5]])
    r = dg.probe(net, X, [0, 1], learning_rate=0.2)
    s1 = r.layers[0]
    A1 = np.maximum(X @ net.params["W1"].T, 0)
    assert s1.a_mean == pytest.approx(A1.mean())
    assert s1.a_std == pytest.approx(A1.std())
    assert s1.a_second_moment == pytest.approx(np.mean(A1**2))
    assert s1.dead_fraction == pytest.approx(1 / 3)
    assert s1.a_zero_fraction == pytest.approx(2 / 6)
    _, grads = net.cost_and_gradients(X, [0, 1])
    for l in (1, 2):
        s = r.layers[l - 1]
        assert s.grad_w_norm == pytest.approx(np.linalg.norm(grads[f"W{l}"]))
        assert s.update_ratio == pytest.approx(
            0.2 * np.linalg.norm(grads[f"W{l}"]) / np.linalg.norm(net.params[f"W{l}"])
        )
    assert r.layers[-1].is_output and r.layers[-1].grad_a_std is None
    assert r.targets == "given"
    # Predictions follow the initializer's rule ("zeros"), not the weights set by hand.
    assert s1.predicted_w_var == 0.0 and s1.w_second_moment == pytest.approx(4 / 6)


def test_saturation_thresholds():
    z = np.array([[-3.0, -0.5, 0.0, 0.5, 2.5]])
    a_tanh = np.tanh(z)
    assert dx._unit_fractions("tanh", z, a_tanh) == (None, pytest.approx(2 / 5))
    a_sig = 1 / (1 + np.exp(-z * 2))  # 0.0025, 0.27, 0.5, 0.73, 0.9933
    assert dx._unit_fractions("sigmoid", z, a_sig) == (None, pytest.approx(2 / 5))
    assert dx._unit_fractions("linear", z, z) == (None, None)


@pytest.mark.parametrize("activation", ["relu", "leaky_relu", "linear", "tanh", "sigmoid"])
@pytest.mark.parametrize("var_z", [1e-4, 0.7, 30.0])
def test_gaussian_moments_match_monte_carlo(activation, var_z):
    z = np.random.default_rng(0).standard_normal(2_000_000) * math.sqrt(var_z)
    g = np.asarray(activations.get(activation).forward(z))
    mean, q = dx._gaussian_moments(activation, var_z)
    assert q == pytest.approx(np.mean(g * g), rel=0.01)
    assert mean == pytest.approx(np.mean(g), rel=0.01, abs=3e-3 * math.sqrt(q))


def test_he_prediction_keeps_q_constant_and_xavier_halves_it():
    spec = nw.Spec((100,) + (100,) * 10 + (10,), "relu", "softmax")
    he = dx.predicted_moments(spec, "he_normal", 1.0)
    xavier = dx.predicted_moments(spec, "xavier_normal", 1.0)
    for l in range(10):
        assert he[l]["a_second_moment"] == pytest.approx(1.0)
        assert xavier[l]["a_second_moment"] == pytest.approx(0.5 ** (l + 1))
    assert dx.predicted_moments(spec, lambda s, r, d: None, 1.0)[0]["z_var"] is None


def test_verdict_thresholds_and_layers():
    ls = [1, 2, 3, 4]
    assert dx._crossing([1.0, 10.0, 500.0, 900.0], ls, "x", "l1")[0] == "stable"
    assert dx._crossing([1.0, 10.0, 2e3, 1e5], ls, "x", "l1")[:2] == ("exploding", 3)
    assert dx._crossing([1.0, 0.1, 1e-2, 9e-4], ls, "x", "l1")[:2] == ("vanishing", 4)
    assert dx._crossing([1.0, math.inf, 1.0, 1.0], ls, "x", "l1")[:2] == ("exploding", 2)
    assert dx._crossing([0.0, 0.0, 0.0, 0.0], ls, "x", "l1")[:2] == ("vanishing", 1)


def test_probe_is_pure_and_deterministic():
    net = deep_net("he_normal", 5, 32, seed=4)
    X = inputs(64, 32, 4)
    params = {k: v.copy() for k, v in net.params.items()}
    r1, r2 = dg.probe(net, X, seed=7), dg.probe(net, X, seed=7)
    assert r1 == r2
    assert all(np.array_equal(params[k], net.params[k]) for k in params)
    assert dg.probe(net, X, seed=8) != r1  # other random labels, other gradients
    assert r1.targets == "random (seed 7)"
    with pytest.raises(AttributeError):
        r1.verdict = "stable"  # immutable report


def test_report_table_json_and_summary():
    import json

    r = probe_deep("standard_normal", 30, 64, 50, dtype="float32")
    text = json.dumps(dx.json_safe(r.to_dict()), allow_nan=False)
    back = json.loads(text)
    assert back["init"] == "standard_normal" and back["verdict"] == "exploding"
    assert len(back["layers"]) == 31 and len(back["hist_edges_log10"]) == len(dx.HIST_EDGES)
    assert "exploding" in r.summary() and "layer" in r.table()


def test_probe_bad_input():
    net = deep_net("he_normal", 2, 8, n_in=4)
    with pytest.raises(ValueError, match="empty"):
        dg.probe(net, np.zeros((0, 4)))
    with pytest.raises(ValueError, match="columns"):
        dg.probe(net, np.zeros((3, 5)))
    with pytest.raises(ValueError, match="NaN"):
        dg.probe(net, np.full((3, 4), np.nan))
    with pytest.raises(ValueError, match="rows"):
        dg.probe(net, np.zeros((3, 4)), [0, 1])
    with pytest.raises(ValueError, match="class labels"):
        dg.probe(net, np.zeros((2, 4)), [0, 10])
    with pytest.raises(ValueError, match="learning_rate"):
        dg.probe(net, np.zeros((3, 4)), learning_rate=0)
    with pytest.raises(ValueError, match="l2"):
        dg.probe(net, np.zeros((3, 4)), l2=-1)
    with pytest.raises(TypeError, match="Network"):
        dg.probe({"W1": 1}, np.zeros((3, 4)))


# -- while training --------------------------------------------------------------------------
def test_probe_training_records_every_n_steps():
    X, y = _blobs(1, m=200)
    net = dg.Network([6, 32, 32, 32, 3], "relu", "softmax", init="he_normal", seed=1)
    tp = dg.probe_training(
        net, X, y, every=7, probe_examples=64, batch_size=20, epochs=3, learning_rate=0.1, seed=0
    )
    assert tp.history.iterations == 30
    assert tp.steps == (0, 7, 14, 21, 28, 30)
    assert tp.series("dead_fraction").shape == (6, 3)
    assert all(r.examples == 64 and r.targets == "given" for r in tp.reports)
    final = dg.probe(
        net,
        X[np.sort(np.random.default_rng(0).choice(200, 64, replace=False))],
        y[np.sort(np.random.default_rng(0).choice(200, 64, replace=False))],
    )
    assert tp.reports[-1].layers == final.layers  # the last record is the trained net


def test_probe_training_shows_relu_units_dying_with_a_huge_learning_rate():
    # A learning rate far too large throws ReLU units into the all-negative region, where
    # they get no gradient again: the probe sees the dead fraction jump during training.
    X, y = _blobs(2, m=300)

    def dead_increase(lr, seed):
        net = dg.Network([6, 64, 64, 64, 3], "relu", "softmax", init="he_normal", seed=seed)
        with np.errstate(over="ignore", invalid="ignore"):  # lr 1.0 may diverge: fine here
            tp = dg.probe_training(
                net,
                X,
                y,
                every=5,
                batch_size=30,
                epochs=2,
                learning_rate=lr,
                seed=seed,
                on_divergence="stop",
            )
        dead = tp.series("dead_fraction")
        return dead[-1].mean() - dead[0].mean()

    assert np.median([dead_increase(1.0, s) for s in range(5)]) > 0.15
    assert np.median([dead_increase(0.05, s) for s in range(5)]) < 0.05


def test_recorder_as_a_fit_callback():
    X, y = _blobs(3, m=100)
    net = dg.Network([6, 16, 3], "tanh", "softmax", seed=0)
    rec = dg.ProbeRecorder(net, X[:50], y[:50], every=2)
    net.fit(X, y, batch_size=25, epochs=2, seed=0, callbacks=[rec], progress=False)
    assert [s for s, _ in rec.records] == [2, 4, 6, 8]
    assert rec.records[0][1].hidden[0].saturated_fraction is not None
    with pytest.raises(ValueError, match="every"):
        dg.ProbeRecorder(net, X, y, every=0)


# -- other array namespaces and the figures ----------------------------------------------------
def _small_tanh_case():
    X = np.random.default_rng(1).standard_normal((64, 16))
    y = np.random.default_rng(2).integers(0, 3, 64)
    net = dg.Network(
        [16, 32, 32, 3], "tanh", "softmax", init="xavier_normal", seed=0, dtype="float64"
    )
    return net, X, y


@pytest.mark.parametrize("backend", ["array_api_strict", "torch"])
def test_probe_and_lsuv_give_the_same_numbers_on_other_namespaces(backend):
    xp = pytest.importorskip(backend)
    net, X, y = _small_tanh_case()
    ref = dg.probe(net, X, y)
    other = net.copy()
    other.params = {k: xp.asarray(v) for k, v in net.params.items()}
    r = dg.probe(other, X, y)
    for name in ("a_std", "a_second_moment", "grad_a_std", "grad_w_norm", "update_ratio"):
        np.testing.assert_allclose(r.column(name, False), ref.column(name, False), rtol=1e-10)
    assert r.verdict == ref.verdict
    _, info = dg.lsuv(other, X)
    assert all(abs(v - 1) <= 0.1 for v in info.variances)


def test_figures_draw_every_case(tmp_path):
    from deepgrad.plotting import curves as plotting
    from deepgrad.plotting import probe as probe_plots

    X = inputs(50, 16, 0)
    reports = [probe_deep(i, 6, 16, 50) for i in ("he_normal", "zeros", "standard_normal")]
    fig = probe_plots.probe_figure(reports)
    assert len(fig.axes) == 2 + 3
    plotting.save_figure(fig, tmp_path / "probe.png")
    Xb, yb = _blobs(0, m=90)
    net = dg.Network([6, 16, 16, 3], "tanh", "softmax", seed=0)
    tp = dg.probe_training(net, Xb, yb, every=2, batch_size=30, epochs=2, seed=0)
    fig = probe_plots.training_probe_figure(tp)
    assert fig.axes[2].get_ylabel() == "saturated fraction"
    plotting.save_figure(fig, tmp_path / "training.png")
    assert (tmp_path / "probe.png").stat().st_size > 0 and X.shape == (50, 16)
    assert probe_plots.hist_layers(30) == [1, 8, 16, 23, 30]
    assert probe_plots.hist_layers(2) == [1, 2]


# -- every input is validated once per public call --------------------------------------


def _count_validation(monkeypatch):
    """Log (function, argument name, caller module) for every call of core.checks' checks
    and of core.backend.namespace wherever deepgrad imported them, until the first forward
    pass (the math). Calls made inside deepgrad.core itself are core's business: left out."""
    import sys

    from deepgrad.core import backend, checks

    names = ["as_2d_float", "check_targets", "encode_targets", "check_fits_dtype"]
    names += ["check_float", "check_int"]
    targets = {id(getattr(checks, n)): (n, getattr(checks, n)) for n in names}
    targets[id(backend.namespace)] = ("namespace", backend.namespace)
    log, state = [], {"math": False}

    def counted(name, fn):
        def wrapper(*args, **kwargs):
            caller = sys._getframe(1).f_globals.get("__name__", "")
            if not state["math"] and not caller.startswith("deepgrad.core"):
                log.append((name, args[0] if args and isinstance(args[0], str) else None))
            return fn(*args, **kwargs)

        return wrapper

    for module in [m for n, m in sys.modules.items() if n.startswith("deepgrad") and m]:
        for attr, value in list(vars(module).items()):
            hit = targets.get(id(value))
            if hit is not None and hit[1] is value:
                monkeypatch.setattr(module, attr, counted(*hit))
    forward = nw.forward

    def first_math(*args, **kwargs):
        state["math"] = True
        return forward(*args, **kwargs)

    monkeypatch.setattr(nw, "forward", first_math)
    return log


CALLS = {
    "probe": lambda net, X, y: dg.probe(net, X, y, l2=0.1),
    "probe, random targets": lambda net, X, y: dg.probe(net, X),
    "gradcheck_network": lambda net, X, y: dg.gradcheck_network(net, X, y, l2=0.1, workers=1),
    "gradcheck_network, dropout": lambda net, X, y: dg.gradcheck_network(
        net, X, y, keep_prob=0.8, sample=20, workers=1, method="plain"
    ),
    "cost": lambda net, X, y: net.cost(X, y, l2=0.1),
    "cost_and_gradients": lambda net, X, y: net.cost_and_gradients(X, y, l2_normalization=9),
}


@pytest.mark.parametrize("call", list(CALLS))
def test_each_input_is_validated_once_before_the_math(monkeypatch, call):
    net = dg.Network([4, 6, 5, 3], "tanh", "softmax", seed=0, dtype="float64")
    X = np.random.default_rng(0).normal(size=(12, 4))
    y = np.arange(12) % 3
    CALLS[call](net, X, y)  # every module loaded before counting
    log = _count_validation(monkeypatch)
    CALLS[call](net, X, y)
    checks = [c for c in log if c[0] != "namespace"]
    assert len(checks) == len(set(checks)), log  # no argument checked twice
    assert [c for c in log if c[0] == "as_2d_float"] == [("as_2d_float", "X")], log
    assert sum(c[0] == "check_targets" for c in log) == (call != "probe, random targets"), log
    assert sum(c[0] == "encode_targets" for c in log) == 1, log
    assert sum(c[0] == "namespace" for c in log) <= 1, log  # the inputs' namespace, once
