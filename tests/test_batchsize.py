"""Gradient noise scale against brute-force per-example gradients; the recommendation."""

from __future__ import annotations

import math

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.core import network as nw
from deepgrad.core.checks import encode_targets
from deepgrad.diagnostics import batchsize


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
    # one batch of all 64 rows: the finite-population correction makes both exact
    trace = np.trace(np.cov(G, rowvar=False, ddof=0))  # of one row drawn uniformly
    gbar = G.mean(axis=0)
    grad_sq = gbar @ gbar
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


def test_moving_cost_averages_the_same_number_of_examples():
    from deepgrad.train.types import History

    h = History(batch_size=10, seed=0)
    # steps of 10, 10, 10, 5 examples (a partial last batch) with costs 4, 2, 1, 3
    h.iteration_cost = [4.0, 2.0, 1.0, 3.0]
    h.iteration_examples = [10, 20, 30, 35]
    avg = batchsize.moving_cost(h, 20)
    assert math.isnan(avg[0])  # fewer than 20 examples seen
    assert avg[1] == pytest.approx((4 * 10 + 2 * 10) / 20)
    assert avg[2] == pytest.approx((2 * 10 + 1 * 10) / 20)
    # the fewest recent steps covering >= 20 examples: 3 steps, 25 examples
    assert avg[3] == pytest.approx((2 * 10 + 1 * 10 + 3 * 5) / 25)
    np.testing.assert_allclose(batchsize.moving_cost(h, 1), h.iteration_cost)


def test_time_to_target_reached_and_not_reached():
    from deepgrad.data import arrays as data

    X, y = data.synthetic(3000, 6, seed=0)
    net = dg.Network([6, 16, 1], seed=0)
    before = {k: v.copy() for k, v in net.params.items()}
    runs = batchsize.time_to_target(net, X, y, [32, 3000], 0.6, epochs=3, learning_rate=0.5)
    for k in before:  # copies were trained
        np.testing.assert_array_equal(net.params[k], before[k])
    small, full = runs
    assert small.reached and small.batch_size == 32 and small.seconds > 0
    assert small.examples == small.steps * 32 and small.examples >= 300  # a 10% window first
    # batch GD: 3 steps of 3000 in 3 epochs, starting near ln 2 ~ 0.69: not reached
    assert not full.reached and full.seconds is None and full.final > 0.6
    again = batchsize.time_to_target(net, X, y, [32], 0.6, epochs=3, learning_rate=0.5)
    assert again[0].steps == small.steps  # the same seed: the same crossing
    never = batchsize.time_to_target(net, X, y, [64], 1e-6, epochs=1)
    assert not never[0].reached and math.isfinite(never[0].final)


@pytest.mark.parametrize(
    "kw,match",
    [
        (dict(target=0.0), "target"),
        (dict(target=float("nan")), "target"),
        (dict(target=0.5, epochs=0), "epochs"),
        (dict(target=0.5, window=1.5), "window"),
        (dict(target=0.5, sizes=[0]), "batch size"),
        (dict(target=0.5, sizes=[10_000]), "batch size"),
    ],
)
def test_time_to_target_bad_input(kw, match):
    X = np.random.default_rng(0).standard_normal((100, 3))
    y = (X[:, 0] > 0).astype(int)
    net = dg.Network([3, 4, 1], seed=0)
    sizes = kw.pop("sizes", [16])
    with pytest.raises(ValueError, match=match):
        batchsize.time_to_target(net, X, y, sizes, **kw)


def _linear_regression(seed, d=4, m=20_000):
    """A linear model at random weights and its exact noise scale over the m rows.

    Output linear, L_i = (z_i - y_i)^2 / 2, so g_i = r_i [x_i, 1] with r_i = z_i - y_i:
    G and tr(Sigma) are the mean and the mean squared deviation of these m vectors.
    """
    rng = np.random.default_rng(seed)
    net = dg.Network([d, 1], output="linear", seed=seed, dtype="float64")
    X = rng.standard_normal((m, d))
    Y = (X @ rng.standard_normal(d) + 1 + 0.5 * rng.standard_normal(m))[:, None]
    r = X @ net.params["W1"].T + net.params["b1"] - Y
    g = np.hstack([r * X, r])
    G = g.mean(axis=0)
    return net, X, Y, float(np.sum((g - G) ** 2, axis=1).mean() / (G @ G))


def test_noise_interval_covers_the_exact_noise_scale_at_the_stated_rate():
    # 300 problems, 16 batches of 128 each: nominal 90 %. Measured 0.877 (the delta method
    # is slightly optimistic for a ratio of heavy-tailed means); a binomial sd is 0.017,
    # so [0.83, 0.96] fails a broken interval (too narrow or trivially wide), not noise.
    hits, widths = 0, []
    for seed in range(300):
        net, X, Y, exact = _linear_regression(seed)
        ci = batchsize.noise_scale_interval(
            net.params,
            X,
            Y,
            net.spec,
            128,
            batches=16,
            level=0.9,
            rng=np.random.default_rng(seed + 7),
        )
        hits += ci.low <= exact <= ci.high
        widths.append((ci.high - ci.low) / exact)
    assert 0.83 <= hits / 300 <= 0.96
    assert np.median(widths) < 0.3  # informative, not [0, inf]


def test_noise_interval_is_unbounded_when_the_gradient_is_lost_in_the_noise():
    # At the least-squares solution of a noisy problem G ~ 0: |G|^2 cannot be told from 0
    rng = np.random.default_rng(0)
    X = rng.standard_normal((5000, 3))
    Y = (X @ [1.0, -2.0, 0.5] + rng.standard_normal(5000))[:, None]
    net = dg.Network([3, 1], output="linear", dtype="float64")
    A = np.hstack([X, np.ones((5000, 1))])
    sol = np.linalg.lstsq(A, Y, rcond=None)[0]
    net.params["W1"][:] = sol[:3].T
    net.params["b1"][:] = sol[3]
    ci = batchsize.noise_scale_interval(net.params, X, Y, net.spec, 256, batches=8)
    assert ci.high == math.inf and ci.low >= 0


def test_student_t_quantile():
    # Published values (any t table): t_{0.95, 15} = 1.753, t_{0.975, 5} = 2.571
    assert batchsize.student_t_quantile(0.95, 15) == pytest.approx(1.753, abs=2e-3)
    assert batchsize.student_t_quantile(0.975, 5) == pytest.approx(2.571, abs=5e-3)


def test_scaled_rates_follow_the_model():
    # eps(B) = eps_max / (1 + Bn/B), eps(64) = 0.1 with Bn = 64: eps_max = 0.2
    r = batchsize.scaled_rates(0.1, 64, 64.0, [16, 64, 256, 4096], cap=10.0)
    assert r[64] == pytest.approx(0.1)
    assert r[16] == pytest.approx(0.2 / 5)
    assert r[4096] == pytest.approx(0.2 / (1 + 64 / 4096))
    assert batchsize.scaled_rates(0.1, 64, 64.0, [4096], cap=0.15)[4096] == 0.15
    assert batchsize.scaled_rates(0.1, 64, math.inf, [128], cap=1.0)[128] == pytest.approx(0.2)


def test_band_widens_with_the_interval():
    times = {64: 1e-3, 256: 1.5e-3, 1024: 4e-3, 4096: 10e-3}
    est = batchsize.NoiseScale(1000.0, 1.0, 1.0, 1)
    tight = batchsize.NoiseInterval(est, 990.0, 1010.0, 0.9, 16)
    wide = batchsize.NoiseInterval(est, 10.0, math.inf, 0.9, 16)
    assert batchsize.band(times, tight, 100_000, 1.0) == [256]
    assert batchsize.band(times, tight, 100_000, 1.25) == [256, 1024]
    assert batchsize.band(times, wide, 100_000, 1.0) == [64, 256, 1024, 4096]


def test_lr_range_test_and_validate_on_a_small_problem():
    from deepgrad.data import arrays as data

    X, y = data.synthetic(3000, 6, seed=0)
    net = dg.Network([6, 16, 1], seed=0)
    rt = batchsize.lr_range_test(net, X, y, 32, [0.01, 0.3, 1e4], examples=2000)
    assert rt.best == 0.3 and rt.largest_stable == 0.3 and rt.costs[2] == math.inf
    assert rt.costs[1] < rt.costs[0]  # 0.01 barely moves in one pass
    rates = {32: 0.3, 3000: 0.3}
    val = batchsize.validate(net, X, y, rates, 0.6, recommended=32, band_sizes=[32], epochs=3)
    assert val.passed and val.ratio == 1.0 and val.fastest == (32, 0.3) and val.fastest_in_band
    bad = batchsize.validate(net, X, y, rates, 0.6, recommended=3000, epochs=3)
    assert not bad.passed and bad.ratio is None and "never reached" in bad.message
    none = batchsize.validate(net, X, y, {32: 0.3}, 1e-6, recommended=32, epochs=1)
    assert none.fastest is None and "no recommendation" in none.message


def test_track_noise_scale_grows_as_the_cost_falls():
    from deepgrad.data import arrays as data

    X, y = data.synthetic(4000, 8, seed=1)
    net = dg.Network([8, 16, 1], seed=1, dtype="float64")
    Y = encode_targets(y, "sigmoid", 1, np, "float64")
    track = batchsize.track_noise_scale(
        net, X, y, Y, batch_size=32, learning_rate=0.5, epochs=3, noise_batch=256
    )
    assert [t.epochs for t in track] == [0, 1, 2, 3]
    assert track[-1].cost < track[0].cost
    assert track[-1].interval.estimate.b_simple > track[0].interval.estimate.b_simple


def test_sweep_batch_cli_validate(tmp_path, capsys):
    import json

    from deepgrad.cli.main import main

    args = ["sweep-batch", "--examples", "3000", "--features", "6", "--hidden", "8",
            "--sizes", "32,128", "--steps", "3", "--range-examples", "1000",
            "--max-epochs", "3", "--out", str(tmp_path)]  # fmt: skip
    assert main([*args, "--target-cost", "0.5", "--validate", "--quiet"]) == 0
    out = json.loads((tmp_path / "sweep_batch.json").read_text())
    v = out["validation"]
    assert set(out["rates"]) == {"32", "128"} and out["band"]
    assert len(v["runs"]) == 2 and "interval" in out
    if out["recommended_pair"] is not None:
        assert out["recommended_pair"]["batch_size"] == v["recommended"][0]
    capsys.readouterr()
    assert main([*args, "--target-cost", "5.0"]) == 2  # the initial cost already meets it
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "already meets it" in err[0]
    assert main([*args, "--validate"]) == 2
    assert "--validate needs --target-cost" in capsys.readouterr().err
    assert main([*args, "--target-cost", "1e-6", "--validate", "--max-epochs", "1"]) == 0
    assert "no recommendation" in capsys.readouterr().out


def test_sweep_batch_cli_recommends_nothing_no_size_was_seen_to_reach(tmp_path, capsys):
    import json

    from deepgrad.cli.main import main

    args = ["sweep-batch", "--examples", "2000", "--features", "6", "--hidden", "8",
            "--sizes", "32,128", "--steps", "3", "--range-examples", "500",
            "--target-cost", "1e-6", "--max-epochs", "1", "--out", str(tmp_path)]  # fmt: skip
    assert main(args) == 0
    lines = [ln for ln in capsys.readouterr().out.splitlines() if "recommend" in ln]
    assert lines == [
        "no recommendation: no batch size reached J <= 1e-06 at lr 0.1 within 1 epochs"
    ]
    assert json.loads((tmp_path / "sweep_batch.json").read_text())["recommended_pair"] is None


def _anisotropic_regression(seed, d=4, m=20_000):
    """Least squares with feature scales 0.2..5 and its exact B_noise and B_simple.

    H = [X, 1]^T [X, 1] / m is the exact (constant) Hessian, far from a multiple of the
    identity; the weights are off along every feature and most along the flattest one, so
    G lies where H is small and B_noise = tr(H Sigma)/(G^T H G) differs from B_simple.
    """
    rng = np.random.default_rng(seed)
    net = dg.Network([d, 1], output="linear", seed=seed, dtype="float64")
    scale = np.exp(rng.uniform(np.log(0.2), np.log(5.0), d))
    X = rng.standard_normal((m, d)) * scale
    w = rng.standard_normal(d)
    Y = (X @ w + 1 + 0.5 * rng.standard_normal(m))[:, None]
    W = w + rng.standard_normal(d) / scale
    W[np.argmin(scale)] += 3 * rng.choice([-1, 1]) / scale.min()
    net.params["W1"][:] = W
    net.params["b1"][:] = 1.0
    A = np.hstack([X, np.ones((m, 1))])
    g = (A @ np.append(W, 1.0) - Y[:, 0])[:, None] * A
    G = g.mean(axis=0)
    H = A.T @ A / m
    dev = g - G
    trace_h = np.einsum("ij,jk,ik->", dev, H, dev) / m
    return net, X, Y, H, trace_h / (G @ H @ G), np.sum(dev**2, axis=1).mean() / (G @ G)


def test_hessian_vector_product_is_the_exact_hessian_of_least_squares():
    net, X, Y, H, *_ = _anisotropic_regression(0, m=2000)
    v = np.random.default_rng(1).standard_normal(H.shape[0])
    Hv = batchsize.hessian_vector_product(net.params, X, Y, net.spec, v)
    np.testing.assert_allclose(Hv, H @ v, rtol=1e-6, atol=1e-6 * np.abs(H @ v).max())
    assert np.all(batchsize.hessian_vector_product(net.params, X, Y, net.spec, 0 * v) == 0)


@pytest.mark.parametrize("act,output", [("tanh", "softmax"), ("sigmoid", "linear")])
def test_hessian_vector_product_of_a_network_matches_second_differences(act, output):
    # an independent route: v^T H v from second differences of the cost itself (smooth
    # activations: a ReLU kink inside the step would break the second difference)
    from deepgrad.core.flat import flatten

    net, X, Y = _problem(act=act, output=output, sizes=(5, 6, 3), m=30)
    theta, unflatten = flatten(net.params)
    rng = np.random.default_rng(2)
    v, w = rng.standard_normal(theta.shape), rng.standard_normal(theta.shape)
    Hv = batchsize.hessian_vector_product(net.params, X, Y, net.spec, v)
    Hw = batchsize.hessian_vector_product(net.params, X, Y, net.spec, w)
    assert w @ Hv == pytest.approx(v @ Hw, rel=1e-6)  # symmetric

    def J(t):
        return nw.cost(unflatten(theta + t * v), X, Y, net.spec)

    h = 1e-4
    assert v @ Hv == pytest.approx((J(h) - 2 * J(0.0) + J(-h)) / h**2, rel=1e-4)


def test_b_noise_interval_covers_the_exact_b_noise_at_the_stated_rate():
    # 200 problems, 16 batches of 128 rows in 4 groups: nominal 90 %. Measured 0.86 here
    # (0.875 over 400 seeds; 0.85-0.92 over other batch sizes and groupings): as B_simple's
    # interval, slightly optimistic. A binomial sd is 0.025; [0.80, 0.96] fails a broken
    # interval, not noise. B_simple's interval covers the exact B_noise far less often.
    hits = simple_hits = 0
    widths = []
    for seed in range(200):
        net, X, Y, _, exact, _ = _anisotropic_regression(seed)
        kw = dict(batches=16, level=0.9, rng=np.random.default_rng(seed + 7))
        ci = batchsize.b_noise_interval(net.params, X, Y, net.spec, 128, **kw)
        kw["rng"] = np.random.default_rng(seed + 7)  # the same 16 batches
        cs = batchsize.noise_scale_interval(net.params, X, Y, net.spec, 128, **kw)
        hits += ci.low <= exact <= ci.high
        simple_hits += cs.low <= exact <= cs.high
        widths.append((ci.high - ci.low) / exact)
    assert 0.80 <= hits / 200 <= 0.96
    assert simple_hits / 200 < 0.5
    assert np.median(widths) < 1.0  # informative, not [0, inf]


def test_b_noise_equals_b_simple_when_the_hessian_is_the_identity_and_exact_on_the_set():
    # x ~ N(0, I) and the bias: H -> I, so B_noise -> B_simple; groups of a batch
    # covering all m rows, with the Hessian from other rows, still average to the truth
    net, X, Y, exact = _linear_regression(3, m=200_000)
    ci = batchsize.b_noise_interval(
        net.params, X, Y, net.spec, 4096, batches=16, rng=np.random.default_rng(0)
    )
    assert ci.estimate.b_noise == pytest.approx(exact, rel=0.15)
    assert ci.estimate.hvps == 64 and ci.estimate.examples == 16 * 4096


def test_b_noise_interval_bad_input_and_undefined_cases():
    net, X, Y = _problem(m=40)
    with pytest.raises(ValueError, match="groups"):
        batchsize.b_noise_interval(net.params, X, Y, net.spec, 16, groups=1)
    with pytest.raises(ValueError, match="batch_size"):
        batchsize.b_noise_interval(net.params, X, Y, net.spec, 1)
    huge = {k: v * 1e300 for k, v in net.params.items()}
    with pytest.raises(ValueError, match="not finite"):
        batchsize.b_noise_interval(huge, X, Y, net.spec, 16)


def test_sweep_batch_cli_noise_scale_full(tmp_path, capsys, monkeypatch):
    import json

    from deepgrad.cli.main import main

    args = ["sweep-batch", "--examples", "3000", "--features", "6", "--hidden", "8",
            "--sizes", "32,128", "--steps", "3", "--range-examples", "1000",
            "--out", str(tmp_path)]  # fmt: skip
    assert main([*args, "--noise-scale", "full"]) == 0
    out = capsys.readouterr().out
    line = next(ln for ln in out.splitlines() if ln.startswith("recommended batch size"))
    assert "noise scale: B_noise, --noise-scale full" in line and "tr(H Sigma)" in line
    d = json.loads((tmp_path / "sweep_batch.json").read_text())
    assert d["noise_scale_used"] == "full" and d["b_noise"]["hvps"] == 64
    assert d["b_noise"]["low"] <= d["b_noise"]["b_noise"] <= d["b_noise"]["high"]
    assert d["reason"].startswith("B_noise ~")
    assert main([*args, "--quiet"]) == 0  # the default: simple, as before
    d = json.loads((tmp_path / "sweep_batch.json").read_text())
    assert d["noise_scale_used"] == "simple" and d["b_noise"] is None
    assert d["reason"].startswith("B_simple ~")
    # full where it cannot be computed (here: non-finite Hessian-vector products)
    (tmp_path / "sweep_batch.json").unlink()
    monkeypatch.setattr(
        batchsize, "curvature_moments", lambda *a, **k: (np.full(16, np.nan), np.ones(16))
    )
    capsys.readouterr()
    assert main([*args, "--noise-scale", "full", "--quiet"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--noise-scale full cannot be computed here" in err[0]
    assert "not finite" in err[0] and "use --noise-scale simple" in err[0]
    assert not (tmp_path / "sweep_batch.json").exists()
