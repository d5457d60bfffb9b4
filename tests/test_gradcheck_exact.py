"""The exact method of gradcheck_network (difference propagation): its identities against
high-precision references, its central differences against the plain formula, the bars
in float64 and float32, named element bugs, kinks, dropout, torch, fallback, bad input."""

from __future__ import annotations

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.core import activations, dropout
from deepgrad.core import network as nw
from deepgrad.diagnostics import bugs, diffprop
from deepgrad.diagnostics.gradcheck import DEFAULTS, EPS_RANGE, FAIL_UNITS
from deepgrad.diagnostics.gradcheck import bands as gradcheck_bands

SEEDS = (0, 1, 2)
ACTS = ["tanh", "sigmoid", "relu", "leaky_relu", "linear"]


def problem(act="tanh", out="sigmoid", sizes=(10, 24, 24), m=48, seed=0, dtype="float64"):
    rng = np.random.default_rng(seed)
    n_out = 1 if out == "sigmoid" else 3
    net = dg.Network([*sizes, n_out], act, out, init="auto", seed=seed, dtype=dtype)
    X = rng.normal(size=(m, sizes[0]))
    if out == "softmax":
        y = rng.integers(0, n_out, m)
    elif out == "sigmoid":
        y = (rng.random(m) < 0.5).astype(float)
    else:
        y = rng.normal(size=(m, n_out))
    return net, X, y


def t2(act="tanh", out="sigmoid", dtype="float64", seed=0):
    """The README's T2: [20, 50, 50, 50, 50, n_out], m = 256."""
    return problem(act, out, (20, 50, 50, 50, 50), 256, seed, dtype)


def scaled_backward(name, index, factor):
    """network.backward with one element of one gradient multiplied by (1 + factor)."""

    def backward(params, cache, Y, spec, l2=0.0, m_reg=None):
        grads = nw.backward(params, cache, Y, spec, l2, m_reg)
        grads[name] = grads[name].copy()
        grads[name][index] *= 1 + factor
        return grads

    return backward


# -- identities -------------------------------------------------------------------------------


@pytest.mark.parametrize("act", ACTS)
def test_activation_differences_match_mpmath(act):
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 60
    exact = {
        "tanh": mp.tanh,
        "sigmoid": lambda x: 1 / (1 + mp.exp(-x)),
        "relu": lambda x: max(x, 0),
        "leaky_relu": lambda x: x if x > 0 else activations.LEAKY_SLOPE * x,
        "linear": lambda x: x,
    }[act]
    rng = np.random.default_rng(0)
    Z = np.concatenate([rng.normal(size=40) * 3, [25.0, -25.0, 1e-12, -3e-10]])
    for scale in (1e-12, 1e-9, 1e-6, 1e-3, 0.3):
        D = rng.normal(size=(1, Z.size)) * scale
        got = diffprop.activation_difference(act, Z[None], D)[0]
        ref = np.array(
            [
                float(exact(mp.mpf(z) + mp.mpf(d)) - exact(mp.mpf(z)))
                for z, d in zip(Z, D[0], strict=False)
            ]
        )
        err = np.abs(got - ref)
        rel = err / np.maximum(np.abs(ref), 1e-300)
        assert np.all(rel <= 2e-15), (act, scale, rel.max())  # a few roundings, no cancellation


@pytest.mark.parametrize("act", ACTS)
def test_float32_activation_differences_keep_float32_precision(act):
    # Against float64 arithmetic on the same float32 inputs (float64 subtraction loses
    # ~1e-13 relative at these steps: far below float32's 6e-8).
    rng = np.random.default_rng(1)
    Z = (rng.normal(size=(1, 500)) * 1.5).astype(np.float32)  # float64 tanh rounds beyond
    D = (rng.normal(size=(1, 500)) * 1e-3).astype(np.float32)
    got = diffprop.activation_difference(act, Z, D)
    assert got.dtype == np.float32
    g = activations.get(act).forward
    Z64, D64 = Z.astype(np.float64), D.astype(np.float64)
    ref = g(Z64 + D64) - g(Z64)
    assert np.all(np.abs(got - ref) <= 6e-7 * np.abs(ref) + 1e-30)  # ~10 roundings


@pytest.mark.parametrize("out", ["sigmoid", "softmax", "linear"])
@pytest.mark.parametrize("scale", [1.0, 30.0])  # 30: a saturated, confidently right net
def test_loss_differences_match_mpmath(out, scale):
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 60
    rng = np.random.default_rng(2)
    n = 1 if out == "sigmoid" else 3
    ZL = rng.normal(size=(6, n)) * scale
    if out == "sigmoid":
        Y = (ZL > 0).astype(float)  # confident and right: the losses are tiny
    elif out == "softmax":
        Y = np.eye(n)[np.argmax(ZL, axis=1)]
    else:
        Y = ZL + rng.normal(size=ZL.shape) * 1e-3
    D = rng.normal(size=(2, 6, n)) * 1e-7

    def loss(z, y):  # one example, mpmath
        if out == "sigmoid":
            return sum(
                y[k] * mp.log(1 + mp.exp(-z[k])) + (1 - y[k]) * mp.log(1 + mp.exp(z[k]))
                for k in range(n)
            )
        if out == "softmax":
            lse = mp.log(sum(mp.exp(zk) for zk in z))
            return sum(y[k] * (lse - z[k]) for k in range(n))
        return sum((z[k] - y[k]) ** 2 for k in range(n)) / 2

    got = diffprop.loss_difference_sums(out, ZL, D, Y)
    for k in range(2):
        ref = 0
        for i in range(6):
            z = [mp.mpf(v) for v in ZL[i]]
            zd = [mp.mpf(v) + mp.mpf(d) for v, d in zip(ZL[i], D[k, i], strict=False)]
            ref += loss(zd, Y[i]) - loss(z, Y[i])
        assert abs(got[k] - float(ref)) <= 1e-13 * abs(float(ref)), (out, scale, k)


def test_softplus_fallback_branch_is_exact():
    # sigmoid(z) expm1(d) < -0.5: log1p would lose digits; the log-sum form takes over.
    mp = pytest.importorskip("mpmath")
    mp.mp.dps = 50
    ZL, Y, D = np.array([[5.0]]), np.array([[0.0]]), np.array([[[-3.0]]])
    got = diffprop.loss_difference_sums("sigmoid", ZL, D, Y)[0]
    ref = mp.log(1 + mp.exp(mp.mpf(2))) - mp.log(1 + mp.exp(mp.mpf(5)))
    assert abs(got - float(ref)) <= 1e-15 * abs(float(ref))


# -- the central differences ------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize(
    "act, out", [("tanh", "sigmoid"), ("relu", "softmax"), ("sigmoid", "linear")]
)
def test_float32_exact_equals_float64_plain_on_the_same_network(act, out, seed):
    # The float64 plain formula on the float32 network's parameters (eps 1e-4: truncation
    # ~1e-8 relative, rounding ~1e-12) is a reference far more precise than float32.
    net, X, y = problem(act, out, seed=seed, dtype="float32")
    exact = dg.gradcheck_network(net, X, y, l2=0.05, eps=1e-4)
    ref = dg.gradcheck_network(net, X, y, l2=0.05, eps=1e-4, method="plain", dtype="float64")
    assert exact.dtype == "float32" and exact.method == "exact"
    biggest = max(float(np.max(np.abs(v))) for v in ref.numerical.values())
    for k in net.params:
        ok = ~np.isin(np.arange(ref.numerical[k].size), [])  # every element
        dev = np.abs(exact.numerical[k] - ref.numerical[k]).ravel()[ok]
        assert np.max(dev) <= 2e-6 * biggest, (k, np.max(dev) / biggest)


@pytest.mark.parametrize("seed", SEEDS)
def test_exact_float64_has_no_rounding_noise_where_plain_has(seed):
    net, X, y = problem("tanh", "sigmoid", seed=seed)
    exact = dg.gradcheck_network(net, X, y, l2=0.01)
    plain = dg.gradcheck_network(net, X, y, l2=0.01, method="plain")
    assert exact.relative_error <= 1e-14 < plain.relative_error
    assert exact.eps == DEFAULTS[("exact", "float64")][0] and plain.eps == 1e-7


@pytest.mark.parametrize("act", ACTS)
@pytest.mark.parametrize("out", ["sigmoid", "softmax", "linear"])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_correct_backprop_is_within_the_dtype_bar(act, out, dtype):
    for seed in (0, 1):
        net, X, y = problem(act, out, sizes=(6, 12, 12), m=24, seed=seed, dtype=dtype)
        r = dg.gradcheck_network(net, X, y, l2=0.05)
        bar = 1e-12 if dtype == "float64" else 5e-7
        assert r.passed and r.relative_error <= bar, (act, out, dtype, seed, str(r))
        assert max(float(np.nanmax(u)) for u in r.units.values()) < FAIL_UNITS


@pytest.mark.slow
@pytest.mark.parametrize(
    "act, out", [("tanh", "sigmoid"), ("relu", "sigmoid"), ("tanh", "softmax"), ("relu", "linear")]
)
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_t2_bars(act, out, dtype):
    net, X, y = t2(act, out, dtype)
    r = dg.gradcheck_network(net, X, y, l2=0.01)
    bar = 1e-12 if dtype == "float64" else 5e-7
    assert r.passed and r.relative_error <= bar, str(r)


# -- named bugs -------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype, factor", [("float64", 1e-8), ("float32", 1e-4)])
@pytest.mark.parametrize("name", ["W1", "W2", "W3"])
def test_one_element_off_is_the_first_failure(seed, dtype, factor, name):
    net, X, y = problem("tanh", "sigmoid", seed=seed, dtype=dtype)
    correct = dg.gradcheck_network(net, X, y, l2=0.01)
    assert correct.passed and not correct.failures
    g = np.abs(correct.analytic[name])
    picks = [int(np.argmax(g))]  # the largest element
    if dtype == "float64":  # and the median one (in float32, 1e-4 of an element whose
        # gradient cancels to ~1/8 of its terms is within the float32 noise of big nets)
        picks.append(int(np.argsort(g, axis=None)[g.size // 2]))
    for flat in picks:
        index = tuple(int(i) for i in np.unravel_index(flat, g.shape))
        r = dg.gradcheck_network(net, X, y, l2=0.01, backward=scaled_backward(name, index, factor))
        assert not r.passed, (name, index)
        first = r.failures[0]
        assert (first.name, first.index) == (name, index), (str(r), index)
        assert first.units > FAIL_UNITS and f"{name}[" in str(r)


@pytest.mark.parametrize("seed", SEEDS)
def test_activation_cached_in_float32_fails_the_float64_check(seed):
    def backward(params, cache, Y, spec, l2=0.0, m_reg=None):
        inputs = list(cache.inputs)
        inputs[1] = inputs[1].astype(np.float32).astype(np.float64)  # A^[1] stored as float32
        return nw.backward(params, cache._replace(inputs=inputs), Y, spec, l2, m_reg)

    net, X, y = problem("tanh", "sigmoid", seed=seed)
    r = dg.gradcheck_network(net, X, y, l2=0.01, backward=backward)
    assert not r.passed and r.failures[0].name == "W2"
    plain = dg.gradcheck_network(net, X, y, l2=0.01, backward=backward, method="plain")
    assert plain.passed  # the seed's formula cannot see it


@pytest.mark.parametrize("dtype", ["float64", "float32"])
@pytest.mark.parametrize("name", bugs.names())
def test_every_planted_bug_is_caught_in_each_dtype(name, dtype):
    bug = bugs.get(name)
    act = bug.needs if bug.needs in ("relu", "tanh", "sigmoid") else "tanh"
    net, X, y = problem(act, "softmax", sizes=(4, 6, 6), m=12, seed=1, dtype=dtype)
    l2 = 0.5 if bug.needs == "l2" else 0.0
    keep = 0.6 if bug.needs == "dropout" else 1.0
    assert dg.gradcheck_network(net, X, y, l2=l2, keep_prob=keep).passed
    r = dg.gradcheck_network(net, X, y, l2=l2, keep_prob=keep, backward=bug.backward)
    assert not r.passed and r.verdict == "bug" and r.failures[0].name in bug.targets(net.spec)


# -- kinks, dropout ---------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_relu_kink_crossings_are_counted_and_excluded(dtype):
    net, X, y = problem("relu", "softmax", sizes=(4, 6, 5), m=10, dtype=dtype)
    z = float(X[0].astype(dtype) @ net.params["W1"][0])
    net.params["b1"][0] = -z + 1e-9 if dtype == "float64" else -z
    eps = 1e-7 if dtype == "float64" else 1e-4
    r = dg.gradcheck_network(net, X, y, eps=eps)
    assert r.n_kinks >= 1 and r.passed and not r.failures
    assert {e.name for e in r.kinks} <= {"W1", "b1"}
    # a kink is an element whose +-eps step puts some pre-activation on the other side
    Xa, _ = net.validate_data(X, y)
    for e in r.kinks:
        if e.name == "b1":
            Z1 = np.asarray(Xa, np.float64) @ net.params["W1"].T.astype(np.float64)
            col = Z1[:, e.index[0]] + float(net.params["b1"][e.index[0]])
            assert np.any(np.sign(col + eps) != np.sign(col - eps))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("act", ["tanh", "relu"])
def test_dropout_with_frozen_masks_equals_the_plain_formula(seed, act):
    net, X, y = problem(act, "softmax", sizes=(5, 8, 8), m=16, seed=seed)
    masks = dropout.draw_masks(np.random.default_rng(seed), 16, [8, 8], 0.7, None, "float64")
    exact = dg.gradcheck_network(net, X, y, l2=0.1, masks=masks, eps=1e-3)
    plain = dg.gradcheck_network(net, X, y, l2=0.1, masks=masks, eps=1e-3, method="plain")
    for k in net.params:
        ok = ~np.isin(np.arange(net.params[k].size), [])
        assert np.max(np.abs(exact.numerical[k] - plain.numerical[k]).ravel()[ok]) <= 1e-10
    assert dg.gradcheck_network(net, X, y, masks=masks).passed


# -- the NumPy path: in place, in per-thread scratch arrays ----------------------------------


@pytest.mark.parametrize("step", [1e-9, 1e-5, 1e-3])  # tanh's first-order, series, exp forms
def test_numpy_in_place_differences_equal_the_generic_loop(step):
    # array_api_strict arrays take the array-API loop of diffprop.differences (fresh arrays),
    # NumPy arrays its in-place loop in scratch arrays: the same operations, the same numbers.
    xps = pytest.importorskip("array_api_strict")
    net, X, y = problem("tanh", "sigmoid", sizes=(8, 16, 16, 16), m=40)
    rng = np.random.default_rng(4)
    rows, cols = rng.integers(0, 16, 12), rng.integers(0, 8, 12)
    deltas = rng.choice([-1.0, 1.0], 12) * step
    a = diffprop.base(net.params, X, y[:, None], net.spec)
    s = xps.asarray
    b = diffprop.base({k: s(v) for k, v in net.params.items()}, s(X), s(y[:, None]), net.spec)
    for l, is_w in ((1, True), (2, True), (2, False), (3, True)):
        got, _ = diffprop.differences(a, l, rows, cols, deltas, is_w, False)
        ref, _ = diffprop.differences(b, l, s(rows), s(cols), s(deltas), is_w, False)
        if l < 3:
            np.testing.assert_array_equal(got, np.asarray(ref))
        else:  # no hidden layer after l: the generic loop sums its strided (K, m) view in
            # another order than NumPy's pairwise sum of a row-major one
            np.testing.assert_allclose(got, np.asarray(ref), rtol=1e-14)


# -- the report, torch, fallback --------------------------------------------------------------


def test_report_states_floor_units_and_bands():
    net, X, y = problem()
    r = dg.gradcheck_network(net, X, y, backward=scaled_backward("W2", (3, 4), 1e-6))
    assert r.bands == gradcheck_bands("exact", "float64")
    assert 0 < r.noise_floor < 1e-13
    assert set(r.floor) == set(r.units) == set(net.params)
    assert np.all(r.floor["W1"] > 0) and r.floor["W1"].shape == net.params["W1"].shape
    first = r.failures[0]
    assert (first.name, first.index) == ("W2", (3, 4))
    assert first.units == pytest.approx(r.units["W2"][3, 4])
    assert "x floor" in str(first) and "noise floor" in r.summary() and "bands (exact" in str(r)


def test_torch_cpu_gives_the_numpy_numbers():
    pytest.importorskip("torch")
    for dtype, tol in (("float64", 1e-15), ("float32", 1e-6)):
        net, X, y = problem("tanh", "softmax", dtype=dtype)
        a = dg.gradcheck_network(net, X, y, l2=0.1)
        b = dg.gradcheck_network(net.copy().to("torch", "cpu"), X, y, l2=0.1)
        assert a.passed and b.passed and b.dtype == dtype
        biggest = max(float(np.max(np.abs(v))) for v in a.numerical.values())
        for k in net.params:
            assert np.max(np.abs(a.numerical[k] - b.numerical[k])) <= tol * biggest


def test_activation_without_identity_falls_back_to_plain(monkeypatch):
    softsign = activations.Activation(
        "softsign",
        lambda Z: Z / (1 + abs(Z)),
        lambda dA, Z, A: dA / (1 + abs(Z)) ** 2,
        "tanh",
    )
    monkeypatch.setitem(activations.ACTIVATIONS, "softsign", softsign)
    net, X, y = problem("tanh", "sigmoid")
    net.spec = nw.Spec(net.spec.layer_sizes, "softsign", "sigmoid")
    with pytest.warns(RuntimeWarning, match="softsign.*method='plain'") as seen:
        r = dg.gradcheck_network(net, X, y)
    assert len(seen) == 1 and len(str(seen[0].message).splitlines()) == 1
    assert r.method == "plain" and r.passed and r.eps == 1e-7


# -- bad input --------------------------------------------------------------------------------


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_eps_out_of_the_dtype_range_names_the_range(dtype):
    net, X, y = problem(dtype=dtype)
    lo, hi = EPS_RANGE[dtype]
    for eps in (lo / 10, hi * 10):
        with pytest.raises(ValueError, match=rf"eps must be in \[{lo:g}, {hi:g}\] for a {dtype}"):
            dg.gradcheck_network(net, X, y, eps=eps)


def test_integer_params_and_mismatched_shapes_name_the_array():
    net, X, y = problem()
    bad = net.copy()
    bad.params["W2"] = np.ones(bad.params["W2"].shape, dtype=np.int64)
    with pytest.raises(TypeError, match=r"net.params\['W2'\] has dtype int64"):
        dg.gradcheck_network(bad, X, y)
    bad = net.copy()
    bad.params["b1"] = np.zeros(3)
    with pytest.raises(ValueError, match=r"net.params\['b1'\] has shape \(3,\); expected \(24,\)"):
        dg.gradcheck_network(bad, X, y)


def test_bad_method_and_dtype_name_the_argument():
    net, X, y = problem()
    with pytest.raises(ValueError, match=r"method must be one of \['exact', 'plain'\]"):
        dg.gradcheck_network(net, X, y, method="fast")
    with pytest.raises(ValueError, match=r"dtype must be one of \['float64', 'float32'\]"):
        dg.gradcheck_network(net, X, y, dtype="float16")


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_trained_confident_net_passes_and_its_floor_predicts_the_error(dtype):
    # A well-fit net: (A - Y) / m is a subtraction of nearly equal numbers where the output
    # is confident and right, and the gradient is small after cancellation. The floor covers
    # that rounding, and a correct backprop's relative error stays near the floor.
    rng = np.random.default_rng(0)
    X = rng.normal(size=(300, 8))
    y = (X @ rng.normal(size=8) > 0).astype(float)
    net = dg.Network([8, 24, 24, 1], "relu", "sigmoid", seed=0, dtype=dtype)
    net.fit(X, y, batch_size=32, epochs=40, learning_rate=0.1, l2=0.01, seed=0)
    r = dg.gradcheck_network(net, X[:64], y[:64], l2=0.01)
    assert r.passed and not r.failures, str(r)
    assert r.relative_error <= 3 * r.noise_floor and r.bar >= r.threshold
    bad = dg.gradcheck_network(
        net, X[:64], y[:64], l2=0.01, backward=bugs.get("db-missing").backward
    )
    assert not bad.passed and bad.failures[0].name[0] == "b"
