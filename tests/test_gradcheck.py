"""Gradient checking: the generic checker, the report, the fast network path, kinks,
dropout, planted bugs and bad input."""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.core import dropout, losses
from deepgrad.core import network as nw
from deepgrad.diagnostics import bugs
from deepgrad.diagnostics.gradcheck import Entry, verdict
from deepgrad.diagnostics.gradcheck.plain import _loss_sums

ACTIVATIONS = ["relu", "leaky_relu", "tanh", "sigmoid", "linear"]
OUTPUTS = ["sigmoid", "softmax", "linear"]


def problem(act="tanh", out="softmax", sizes=(4, 6, 5), m=12, seed=0, n_out=3):
    """A small float64 network and a batch (X, y) that fits its output."""
    rng = np.random.default_rng(seed)
    n_out = 1 if out == "sigmoid" else n_out
    net = dg.Network([*sizes, n_out], act, out, init="xavier_normal", seed=seed, dtype="float64")
    X = rng.normal(size=(m, sizes[0]))
    if out == "softmax":
        y = rng.integers(0, n_out, m)
    elif out == "sigmoid":
        y = (rng.random(m) < 0.5).astype(float)
    else:
        y = rng.normal(size=(m, n_out))
    return net, X, y


def encoded(net, X, y):
    return net.validate_data(X, y)


def generic_for(net, X, y, l2=0.0, masks=None, eps=1e-7, **kw):
    """The plain loop on theta -> network.cost, with backprop's gradients."""
    Xa, Ya = encoded(net, X, y)
    params = {k: np.asarray(v, dtype=np.float64) for k, v in net.params.items()}
    _, grads = nw.cost_and_gradients(params, Xa, Ya, net.spec, l2, None, masks)
    cost = lambda p: nw.cost(p, Xa, Ya, net.spec, l2, None, masks)  # noqa: E731
    return dg.gradcheck(cost, params, grads, eps=eps, **kw)


# -- the generic checker -------------------------------------------------------------------


def test_generic_passes_on_a_quadratic_given_as_one_array():
    A = np.array([[2.0, 1.0, 0.0], [1.0, 3.0, 0.5], [0.0, 0.5, 1.0]])
    x = np.array([1.0, -2.0, 0.5])
    report = dg.gradcheck(lambda v: 0.5 * v @ A @ v, x, A @ x)
    assert report.passed and report.relative_error < 1e-9
    assert report.verdict == "correct" and report.checked == report.total == 3
    assert list(report.per_param) == ["theta"] and not report.failures


def test_generic_names_the_failing_element_with_its_index():
    rng = np.random.default_rng(0)
    params = {
        "W1": rng.normal(size=(3, 4)),
        "b1": rng.normal(size=3),
        "W2": rng.normal(size=(4, 2)),
    }
    cost = lambda p: float(np.sum(p["W1"] ** 2) + np.sum(np.sin(p["b1"])) + np.sum(p["W2"] ** 3))  # noqa: E731
    grads = {"W1": 2 * params["W1"], "b1": np.cos(params["b1"]), "W2": 3 * params["W2"] ** 2}
    grads["W2"] = grads["W2"].copy()
    grads["W2"][3, 1] *= 2.0  # one wrong element
    report = dg.gradcheck(cost, params, grads)
    assert not report.passed
    assert len(report.failures) == 1
    worst = report.failures[0]
    assert (worst.name, worst.index) == ("W2", (3, 1))
    assert worst.analytic == pytest.approx(2 * worst.numerical, rel=1e-6)
    assert worst.error == pytest.approx(1 / 3, rel=1e-6)
    assert report.per_param["W1"] < 1e-7 and report.per_param["b1"] < 1e-7
    assert "W2[3, 1]: numerical" in str(report)
    assert list(report.per_param) == ["W1", "b1", "W2"]


def test_entry_prints_like_the_issue():
    e = Entry("W2", (3, 1), 0.0123, 0.0246, 3.3e-01)
    assert str(e) == "W2[3, 1]: numerical 0.0123, backprop 0.0246, error 3.3e-01"


def test_relative_error_is_the_seeds_formula():
    x = np.array([1.0, 2.0])
    wrong = np.array([1.5, 2.0])  # gradient of 0.5 ||x||^2 is x
    report = dg.gradcheck(lambda v: 0.5 * float(v @ v), x, wrong)
    expected = np.linalg.norm(x - wrong) / (np.linalg.norm(x) + np.linalg.norm(wrong))
    assert report.relative_error == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize(
    "error, band",
    [
        (1e-9, "correct"),
        (9.9e-8, "correct"),
        (1e-7, "suspicious"),
        (9e-6, "suspicious"),
        (1e-5, "probably wrong"),
        (1e-3, "probably wrong"),
        (2e-3, "bug"),
        (1.0, "bug"),
    ],
)
def test_verdict_bands(error, band):
    assert verdict(error) == band


def test_report_is_immutable_and_its_arrays_read_only():
    report = dg.gradcheck(lambda v: float(v @ v), np.ones(3), 2 * np.ones(3))
    with pytest.raises(dataclasses.FrozenInstanceError):
        report.relative_error = 0.0
    with pytest.raises(TypeError):
        report.per_param["theta"] = 1.0
    with pytest.raises(ValueError):
        report.numerical["theta"][0] = 1.0


def test_float32_cost_warns_and_params_are_promoted():
    seen = []

    def cost(v):
        seen.append(v.dtype)
        return np.float32(np.sum(v.astype(np.float32) ** 2))

    with pytest.warns(RuntimeWarning, match="float32"):
        dg.gradcheck(cost, np.ones(3, dtype=np.float32), np.full(3, 2.0, dtype=np.float32))
    assert set(seen) == {np.dtype(np.float64)}


def test_user_params_are_not_changed():
    x = np.array([0.3, -0.7])
    before = x.copy()
    dg.gradcheck(lambda v: float(np.sum(v**3)), x, 3 * x**2)
    assert np.array_equal(x, before)


def test_sample_is_stratified_seeded_and_covers_every_array():
    net, X, y = problem()
    a = generic_for(net, X, y, sample=20, seed=3)
    b = generic_for(net, X, y, sample=20, seed=3)
    c = generic_for(net, X, y, sample=20, seed=4)
    counts = {k: int(np.sum(~np.isnan(v))) for k, v in a.numerical.items()}
    assert all(n >= 1 for n in counts.values())
    assert abs(sum(counts.values()) - 20) <= len(counts)
    assert counts["W1"] > counts["b3"]  # proportional to size
    for k in a.numerical:
        assert np.array_equal(np.isnan(a.numerical[k]), np.isnan(b.numerical[k]))
    assert any(
        not np.array_equal(np.isnan(a.numerical[k]), np.isnan(c.numerical[k])) for k in a.numerical
    )


def test_directional_mode_passes_with_few_evaluations():
    net, X, y = problem()
    calls = []
    Xa, Ya = encoded(net, X, y)
    _, grads = nw.cost_and_gradients(net.params, Xa, Ya, net.spec, 0.1)

    def cost(p):
        calls.append(1)
        return nw.cost(p, Xa, Ya, net.spec, 0.1)

    report = dg.gradcheck(cost, net.params, grads, mode="directional", directions=2)
    assert report.passed and report.mode == "directional"
    assert len(calls) == 1 + 2 * 2 * len(net.params)  # J0 + 2 per direction per array


def test_directional_mode_falls_back_to_elements_of_the_failing_array():
    net, X, y = problem()
    Xa, Ya = encoded(net, X, y)
    _, grads = nw.cost_and_gradients(net.params, Xa, Ya, net.spec)
    grads["W2"] = grads["W2"].copy()
    grads["W2"][1, 2] += 0.05
    report = dg.gradcheck(
        lambda p: nw.cost(p, Xa, Ya, net.spec), net.params, grads, mode="directional"
    )
    assert not report.passed
    assert (report.failures[0].name, report.failures[0].index) == ("W2", (1, 2))
    assert report.numerical["W2"].shape == net.params["W2"].shape  # checked element-wise
    assert report.numerical["W1"].shape == (3,)  # the directions of an array that passed


# -- the fast network path --------------------------------------------------------------------


def test_loss_sums_match_losses_bitwise():
    rng = np.random.default_rng(0)
    Z = rng.normal(size=(5, 7, 3)) * 4
    targets = {
        "sigmoid": (rng.random((7, 3)) < 0.5) * 1.0,
        "softmax": np.eye(3)[rng.integers(0, 3, 7)],
        "linear": rng.normal(size=(7, 3)),
    }
    for out, Y in targets.items():
        sums = _loss_sums(out, Z, Y)
        for k in range(5):
            assert sums[k] == float(losses.get(out).loss_sum(Z[k], Y)), out


@pytest.mark.parametrize("eps", [1e-3, 1e-5])
@pytest.mark.parametrize(
    "act, out, kp",
    [
        ("tanh", "softmax", 1.0),
        ("sigmoid", "linear", 0.7),
        ("leaky_relu", "sigmoid", 1.0),
        ("relu", "softmax", 0.8),
    ],
)
def test_fast_path_equals_the_plain_loop(act, out, kp, eps):
    # With eps = 1e-3 the truncation error (eps^2 f''' / 6, ~1e-7 here) is far above 1e-9:
    # equality at 1e-9 shows that the fast path evaluates the same perturbed costs, not a
    # linearization of them.
    net, X, y = problem(act, out, sizes=(4, 6, 5, 5))
    masks = (
        dropout.draw_masks(np.random.default_rng(1), len(X), [6, 5, 5], kp, None, "float64")
        if kp < 1
        else None
    )
    fast = dg.gradcheck_network(net, X, y, l2=0.1, eps=eps, masks=masks)
    plain = generic_for(net, X, y, l2=0.1, masks=masks, eps=eps)
    biggest = max(float(np.max(np.abs(v))) for v in plain.numerical.values())
    for k in net.params:
        assert np.max(np.abs(fast.numerical[k] - plain.numerical[k])) <= 1e-9 * max(1, biggest), k
    if act in ("tanh", "sigmoid"):
        assert fast.n_kinks == 0  # smooth activations have no kinks
        if eps == 1e-3:  # the truncation error is there, and both paths have it
            assert plain.relative_error > 1e-9
            assert fast.relative_error == pytest.approx(plain.relative_error, rel=1e-3)


@pytest.mark.parametrize("act, out", [("tanh", "sigmoid"), ("sigmoid", "softmax")])
def test_fast_path_equals_the_plain_loop_at_eps_1e7_up_to_its_rounding(act, out):
    # At eps = 1e-7 each J is known to ~1 ulp, so the plain loop's own central differences
    # carry a noise of ulp(J) / (2 eps) (5.6e-10 for J in [0.5, 1)); the fast path agrees
    # with it to a few of those units, and to 1e-9 * max(1, max|d_theta|) when that is larger.
    net, X, y = problem(act, out, sizes=(5, 8, 8), m=16)
    fast = dg.gradcheck_network(net, X, y, l2=0.01)
    plain = generic_for(net, X, y, l2=0.01)
    J = net.cost(X, y, l2=0.01)
    biggest = max(float(np.max(np.abs(v))) for v in plain.numerical.values())
    bound = max(1e-9 * max(1, biggest), 4 * math.ulp(J) / 2e-7)
    for k in net.params:
        assert np.max(np.abs(fast.numerical[k] - plain.numerical[k])) <= bound, k
    assert fast.passed == plain.passed


@pytest.mark.parametrize("act", ACTIVATIONS)
@pytest.mark.parametrize("out", OUTPUTS)
def test_correct_backprop_passes_for_every_activation_output_pair(act, out):
    for seed in (0, 1):
        net, X, y = problem(act, out, sizes=(4, 6, 5), m=10, seed=seed)
        report = dg.gradcheck_network(net, X, y, l2=0.05)
        assert report.passed, (act, out, seed, str(report))
        assert not report.failures


def test_l2_term_is_part_of_the_checked_cost():
    net, X, y = problem("tanh", "softmax")
    with_l2 = dg.gradcheck_network(net, X, y, l2=0.5)
    without = dg.gradcheck_network(net, X, y, l2=0.0)
    diff = with_l2.numerical["W1"] - without.numerical["W1"]
    np.testing.assert_allclose(diff, 0.5 / len(X) * net.params["W1"], rtol=1e-5, atol=1e-8)
    np.testing.assert_allclose(with_l2.numerical["b1"], without.numerical["b1"], atol=1e-8)


@pytest.mark.parametrize("method", ["exact", "plain"])
def test_l2_normalization_int_is_the_deprecated_l2_denominator(method):
    net, X, y = problem("tanh", "softmax")
    new = dg.gradcheck_network(net, X, y, l2=0.5, l2_normalization=200, method=method)
    with pytest.warns(DeprecationWarning, match="l2_normalization=200") as seen:
        old = dg.gradcheck_network(net, X, y, l2=0.5, l2_denominator=200, method=method)
    assert seen[0].filename == __file__
    assert new.relative_error == old.relative_error and new.passed
    for k in net.params:
        assert np.array_equal(new.numerical[k], old.numerical[k])
        assert np.array_equal(new.analytic[k], old.analytic[k])
    # the L2 term's derivative is lambda / m_reg W: divided by 200, not by the rows of X
    without = dg.gradcheck_network(net, X, y, method=method)
    diff = new.numerical["W1"] - without.numerical["W1"]
    np.testing.assert_allclose(diff, 0.5 / 200 * net.params["W1"], rtol=1e-4, atol=1e-8)
    batch = dg.gradcheck_network(net, X, y, l2=0.5, method=method)
    explicit_m = dg.gradcheck_network(net, X, y, l2=0.5, l2_normalization=len(X), method=method)
    assert np.array_equal(batch.numerical["W1"], explicit_m.numerical["W1"])
    with pytest.raises(TypeError, match="pass only l2_normalization"):
        dg.gradcheck_network(net, X, y, l2=0.5, l2_normalization=200, l2_denominator=200)
    with pytest.raises(ValueError, match="l2_normalization must be"):
        dg.gradcheck_network(net, X, y, l2=0.5, l2_normalization="dataset")


def test_network_is_not_changed_and_float32_nets_are_checked_in_float32_by_default():
    # The default changed with the exact method: a float32 network is checked in float32
    # (its own eps and bar); dtype="float64" checks a float64 copy as before.
    net = dg.Network([3, 5, 2], "tanh", "softmax", seed=0)  # float32
    before = {k: v.copy() for k, v in net.params.items()}
    X = np.random.default_rng(0).normal(size=(8, 3))
    report = dg.gradcheck_network(net, X, np.arange(8) % 2, sample=10)
    assert report.passed and report.checked <= 16 and report.dtype == "float32"
    as64 = dg.gradcheck_network(net, X, np.arange(8) % 2, sample=10, dtype="float64")
    assert as64.passed and as64.dtype == "float64" and as64.relative_error < 1e-13
    for k in before:
        assert np.array_equal(net.params[k], before[k]) and net.params[k].dtype == np.float32


def test_workers_do_not_change_the_numbers():
    net, X, y = problem("tanh", "sigmoid", sizes=(4, 30, 30), m=40)
    a = dg.gradcheck_network(net, X, y, l2=0.1, workers=1)
    b = dg.gradcheck_network(net, X, y, l2=0.1, workers=3)
    for k in net.params:
        assert np.array_equal(a.numerical[k], b.numerical[k])


# -- kinks ------------------------------------------------------------------------------------


def kinky_relu_problem():
    """A ReLU net where the pre-activation of unit 0 of layer 1 is ~1e-9 for example 0."""
    net, X, y = problem("relu", "softmax", sizes=(4, 6, 5), m=10)
    z = X[0] @ net.params["W1"][0]
    net.params["b1"][0] = -z + 1e-9
    return net, X, y


def test_relu_kinks_are_reported_not_failed():
    net, X, y = kinky_relu_problem()
    report = dg.gradcheck_network(net, X, y)
    assert report.n_kinks >= 1 and report.passed and not report.failures
    names = {e.name for e in report.kinks}
    assert names <= {"W1", "b1"}
    assert ("b1", (0,)) in {(e.name, e.index) for e in report.kinks}
    assert "kinks" in str(report)
    # The plain loop has no way to know: the same elements look like failures there.
    plain = generic_for(net, X, y)
    assert not plain.passed and plain.failures[0].name in {"W1", "b1"}


def test_smooth_nets_have_no_kinks():
    net, X, y = problem("tanh", "softmax")
    assert dg.gradcheck_network(net, X, y).n_kinks == 0


# -- dropout ----------------------------------------------------------------------------------


def test_dropout_with_frozen_masks_passes():
    net, X, y = problem("tanh", "softmax", sizes=(4, 8, 8), m=16)
    report = dg.gradcheck_network(net, X, y, keep_prob=0.7, seed=5, l2=0.05)
    assert report.passed, str(report)


def test_dropout_with_masks_redrawn_per_evaluation_fails():
    # Redrawing the masks for every evaluation makes J(theta + eps) and J(theta - eps) the
    # costs of two different thinned networks: their difference is the effect of the masks
    # (order 1e-2), not of the step (order eps * |grad|), and dividing by 2 eps turns it into
    # numbers of order 1e4. Freezing the masks makes the cost a fixed function of theta again.
    net, X, y = problem("tanh", "softmax", sizes=(4, 8, 8), m=16)
    Xa, Ya = encoded(net, X, y)
    rng = np.random.default_rng(0)
    draw = lambda: dropout.draw_masks(rng, 16, [8, 8], 0.7, None, "float64")  # noqa: E731
    _, grads = nw.cost_and_gradients(net.params, Xa, Ya, net.spec, 0.0, None, draw())
    report = dg.gradcheck(
        lambda p: nw.cost(p, Xa, Ya, net.spec, 0.0, None, draw()), net.params, grads, sample=30
    )
    assert not report.passed and report.verdict == "bug"
    assert max(abs(e.numerical) for e in report.failures) > 100


# -- planted bugs -----------------------------------------------------------------------------


def bug_problem(bug):
    act = bug.needs if bug.needs in ("relu", "tanh", "sigmoid") else "tanh"
    net, X, y = problem(act, "softmax", sizes=(4, 6, 6), m=12, seed=1)
    l2 = 0.5 if bug.needs == "l2" else 0.0
    keep = 0.6 if bug.needs == "dropout" else 1.0
    return net, X, y, l2, keep


@pytest.mark.parametrize("name", bugs.names())
def test_each_planted_bug_is_caught_and_its_array_named_first(name):
    bug = bugs.get(name)
    net, X, y, l2, keep = bug_problem(bug)
    correct = dg.gradcheck_network(net, X, y, l2=l2, keep_prob=keep)
    report = dg.gradcheck_network(net, X, y, l2=l2, keep_prob=keep, backward=bug.backward)
    targets = bug.targets(net.spec)
    assert correct.passed
    assert not report.passed and report.verdict == "bug"
    assert report.failures[0].name in targets
    for k, err in report.per_param.items():  # the arrays it does not touch stay correct
        assert (err > 1e-3) if k in targets else (err < 1e-7), (k, err)


def test_at_least_eight_kinds_of_bugs():
    assert len(bugs.names()) >= 8
    for must in (
        "missing-1/m",
        "l2-factor",
        "relu-wrong-side",
        "transposed-dW",
        "db-wrong-axis",
        "dropout-mask-missing",
        "db-missing",
        "tanh-derivative",
    ):
        assert must in bugs.names()


def test_backward_with_default_steps_is_networks_backward():
    net, X, y = problem("relu", "softmax", sizes=(4, 6, 5))
    Xa, Ya = encoded(net, X, y)
    masks = dropout.draw_masks(np.random.default_rng(0), len(X), [6, 5], 0.8, None, "float64")
    _, cache = nw.forward(net.params, Xa, net.spec, masks)
    a = nw.backward(net.params, cache, Ya, net.spec, 0.3)
    b = bugs.backward_with(net.params, cache, Ya, net.spec, 0.3)
    for k in a:
        assert np.array_equal(a[k], b[k])


def test_unknown_bug_lists_the_valid_names():
    with pytest.raises(ValueError, match="missing-1/m"):
        bugs.get("nope")


# -- bad input --------------------------------------------------------------------------------


def test_mismatched_keys_and_shapes_name_grads():
    p = {"W1": np.ones((2, 3)), "b1": np.ones(2)}
    cost = lambda q: float(np.sum(q["W1"]))  # noqa: E731
    with pytest.raises(ValueError, match="grads has keys"):
        dg.gradcheck(cost, p, {"W1": np.ones((2, 3))})
    with pytest.raises(ValueError, match=r"grads\['b1'\] has shape \(3,\)"):
        dg.gradcheck(cost, p, {"W1": np.ones((2, 3)), "b1": np.ones(3)})
    with pytest.raises(ValueError, match="params must be a non-empty"):
        dg.gradcheck(cost, {}, {})


def test_non_finite_cost_names_cost_fn():
    with pytest.raises(ValueError, match="cost_fn returned nan"):
        dg.gradcheck(lambda v: float("nan"), np.ones(2), np.ones(2))
    with pytest.raises(ValueError, match="cost_fn returned inf at theta"):
        dg.gradcheck(lambda v: math.inf if v[1] > 1 else 0.0, np.ones(2), np.ones(2))


@pytest.mark.parametrize("eps", [0.0, -1e-7, math.nan])
def test_eps_must_be_positive(eps):
    with pytest.raises(ValueError, match="eps"):
        dg.gradcheck(lambda v: float(v @ v), np.ones(2), np.ones(2), eps=eps)
    net, X, y = problem()
    with pytest.raises(ValueError, match="eps"):
        dg.gradcheck_network(net, X, y, eps=eps)


def test_sample_larger_than_P_names_sample():
    with pytest.raises(ValueError, match=r"sample must be an int in \[1, 2\]"):
        dg.gradcheck(lambda v: float(v @ v), np.ones(2), np.ones(2), sample=3)
    net, X, y = problem()
    with pytest.raises(ValueError, match="sample"):
        dg.gradcheck_network(net, X, y, sample=net.n_params + 1)


def test_other_bad_arguments():
    x = np.ones(2)
    with pytest.raises(ValueError, match="mode"):
        dg.gradcheck(lambda v: 0.0, x, x, mode="fast")
    with pytest.raises(TypeError, match="cost_fn"):
        dg.gradcheck(3, x, x)
    with pytest.raises(TypeError, match="params"):
        dg.gradcheck(lambda v: 0.0, {"a": np.array(["x"])}, {"a": np.array([1.0])})
    with pytest.raises(ValueError, match="threshold"):
        dg.gradcheck(lambda v: 0.0, x, x, threshold=0)
    net, X, y = problem()
    with pytest.raises(TypeError, match="net"):
        dg.gradcheck_network("net", X, y)
    with pytest.raises(ValueError, match="keep_prob"):
        dg.gradcheck_network(net, X, y, keep_prob=0.0)
    with pytest.raises(ValueError, match=r"masks\[1\] has shape"):
        dg.gradcheck_network(net, X, y, masks=[np.ones((12, 6)), np.ones((12, 4))])
    with pytest.raises(ValueError, match="l2"):
        dg.gradcheck_network(net, X, y, l2=-1)
    with pytest.raises(ValueError, match="X has 3 columns|X has"):
        dg.gradcheck_network(net, X[:, :3], y)


# -- the figure -------------------------------------------------------------------------------


def test_plot_draws_on_a_given_axis_and_returns_the_figure(tmp_path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from deepgrad.plotting.curves import save_figure
    from deepgrad.plotting.gradcheck import report_errors

    net, X, y = problem()
    report = dg.gradcheck_network(net, X, y, backward=bugs.get("db-missing").backward)
    fig, ax = plt.subplots()
    assert report_errors(report, ax=ax) is fig
    assert [t.get_text() for t in ax.get_xticklabels()] == list(net.params)
    assert ax.get_yscale() == "log"
    save_figure(fig, tmp_path / "e.png")
    assert (tmp_path / "e.png").stat().st_size > 5000


def test_failing_only_by_rounding_says_so():
    # eps so small that the central difference is all rounding: the check fails, but no
    # element is blamed beyond the noise, and the table says what to do.
    report = dg.gradcheck(
        lambda v: float(np.sum(np.sin(v))),
        np.linspace(0.1, 1, 5),
        np.cos(np.linspace(0.1, 1, 5)),
        eps=1e-14,
    )
    assert not report.passed and not report.failures
    assert report.noise > 1e-3
    assert "the error is rounding; try a larger eps" in str(report)
