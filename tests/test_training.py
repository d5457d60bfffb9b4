"""Batch, mini-batch and stochastic gradient descent."""

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.data import arrays as data
from deepgrad.data import bundled as datasets


def _blobs(rng, m=300):
    X = rng.standard_normal((m, 5))
    y = (X[:, 0] + 0.5 * X[:, 1] - X[:, 2] > 0).astype(int)
    return X, y


def test_batch_gd_cost_never_rises(rng):
    X, y = _blobs(rng)
    net = dg.Network([5, 16, 8, 1], "tanh", seed=0, dtype="float64")
    h = net.fit(X, y, batch_size=None, epochs=200, learning_rate=0.1, l2=0.01, seed=0)
    costs = np.array(h.iteration_cost)
    assert len(costs) == 200 and h.batch_size == 300
    assert np.all(np.diff(costs) <= 1e-12)
    assert costs[-1] < 0.5 * costs[0]


def test_minibatch_reaches_demo_accuracy():
    X, y, _ = datasets.load_bundled("digits")
    Xtr, Xte, ytr, yte = datasets.train_test_split(X, y, 0.25, 0)
    Xtr, Xte = datasets.standardize(Xtr, Xte)
    net = dg.Network([64, 128, 64, 32, 10], output="softmax", init="he_normal", seed=0)
    h = net.fit(
        Xtr,
        ytr,
        batch_size=32,
        epochs=40,
        learning_rate=0.05,
        l2=1.0,
        l2_normalization="dataset",
        seed=0,
    )
    assert np.mean(net.predict(Xte) == yte) >= 0.95
    assert h.iterations == 40 * data.n_batches(len(ytr), 32)


def test_same_seed_same_parameters_bit_for_bit(rng):
    X, y = _blobs(rng)
    nets = []
    for _ in range(2):
        net = dg.Network([5, 8, 1], seed=4)
        net.fit(X, y, batch_size=16, epochs=3, learning_rate=0.1, keep_prob=0.9, seed=11)
        nets.append(net)
    assert all(np.array_equal(nets[0].params[k], nets[1].params[k]) for k in nets[0].params)
    other = dg.Network([5, 8, 1], seed=4)
    other.fit(X, y, batch_size=16, epochs=3, learning_rate=0.1, keep_prob=0.9, seed=12)
    assert not np.array_equal(other.params["W1"], nets[0].params["W1"])


def test_shuffling_is_a_pure_function_of_seed_and_epoch():
    a = list(data.batch_indices(10, 4, seed=3, epoch=1))
    b = list(data.batch_indices(10, 4, seed=3, epoch=1))
    c = list(data.batch_indices(10, 4, seed=3, epoch=2))
    assert [len(i) for i in a] == [4, 4, 2]  # last partial batch kept
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert np.array_equal(np.sort(np.concatenate(a)), np.arange(10))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_partial_batch_averaged_over_its_own_size(rng):
    """One epoch of batches (4, 4, 2) equals three explicit steps on those batches."""
    X, y = _blobs(rng, m=10)
    net = dg.Network([5, 3, 1], seed=0, dtype="float64")
    manual = net.copy()
    h = net.fit(X, y, batch_size=4, epochs=1, learning_rate=0.5, l2=0.1, seed=2)
    for idx, J in zip(data.batch_indices(10, 4, 2, 0), h.iteration_cost, strict=True):
        cost, g = manual.cost_and_gradients(X[idx], y[idx], l2=0.1)
        assert cost == pytest.approx(J, rel=1e-12)
        manual.params = {k: manual.params[k] - 0.5 * g[k] for k in g}
    for k in net.params:
        np.testing.assert_allclose(net.params[k], manual.params[k], rtol=1e-12)


def test_sgd_batch_size_one_and_dataset_l2(rng):
    X, y = _blobs(rng, m=40)
    net = dg.Network([5, 4, 1], seed=0, dtype="float64")
    h = net.fit(
        X, y, batch_size=1, epochs=2, learning_rate=0.05, l2=0.1, l2_normalization="dataset", seed=0
    )
    assert h.iterations == 80 and len(h.epoch_cost) == 2


def test_history_records_validation_and_time(rng):
    X, y = _blobs(rng)
    net = dg.Network([5, 8, 1], seed=0)
    h = net.fit(X[:200], y[:200], batch_size=50, epochs=3, validation_data=(X[200:], y[200:]))
    assert len(h.val_cost) == len(h.val_accuracy) == len(h.epoch_cost) == 3
    assert h.iteration_examples[-1] == 600 and np.all(np.diff(h.iteration_time) >= 0)
    assert 0.5 <= h.val_accuracy[-1] <= 1.0


@pytest.mark.filterwarnings("ignore::deepgrad.UnscaledFeaturesWarning")  # huge X on purpose
def test_divergence_keeps_last_finite_parameters(rng):
    X, y = _blobs(rng)
    X = X * 1e3
    net = dg.Network([5, 64, 64, 1], seed=0, init="standard_normal")
    with pytest.raises(
        dg.DivergenceError, match=r"epoch \d+, iteration \d+.*smaller learning rate"
    ):
        net.fit(X, y, batch_size=None, epochs=50, learning_rate=1e6, seed=0)
    assert all(np.all(np.isfinite(p)) for p in net.params.values())
    net2 = dg.Network([5, 64, 64, 1], seed=0, init="standard_normal")
    h = net2.fit(X, y, batch_size=None, epochs=50, learning_rate=1e6, seed=0, on_divergence="stop")
    assert h.stopped and "diverged" in h.stopped


# -- deepgrad.fit and Network.fit: one signature, the same numbers -----------------------


def test_fit_and_network_fit_have_one_signature_and_docstring():
    import inspect

    net = dg.Network([2, 1], seed=0)
    assert inspect.signature(dg.fit) == inspect.signature(dg.Network.fit)
    bound = list(inspect.signature(net.fit).parameters.values())
    assert bound == list(inspect.signature(dg.fit).parameters.values())[1:]
    for name in ("standardize", "task", "classes"):
        assert inspect.signature(net.fit).parameters[name].kind is inspect.Parameter.KEYWORD_ONLY
    assert dg.fit.__doc__ == dg.Network.fit.__doc__ and "standardize" in dg.fit.__doc__


def _same_fit(a, b):
    ha, hb = a
    na, nb = b
    assert ha.iteration_cost == hb.iteration_cost and ha.epoch_cost == hb.epoch_cost
    for k in na.params:
        assert np.array_equal(na.params[k], nb.params[k]), k


def test_fit_with_preprocessing_is_network_fit_bit_for_bit(rng):
    X = rng.standard_normal((60, 3)) * [1.0, 50.0, 0.01] + [0.0, 200.0, 3.0]
    labels = np.array(["ant", "bee", "cat"])[rng.integers(0, 3, 60)]
    kw = dict(standardize=True, batch_size=16, epochs=3, seed=1, progress=False)
    kw["validation_data"] = (X[:10], labels[:10])
    a, b = (dg.Network([3, 6, 3], "tanh", "softmax", seed=2) for _ in range(2))
    ha, hb = dg.fit(a, X, labels, **kw), b.fit(X, labels, **kw)
    _same_fit((ha, hb), (a, b))
    assert ha.val_cost == hb.val_cost
    assert list(a.preprocessing.classes) == list(b.preprocessing.classes) == ["ant", "bee", "cat"]
    assert list(a.predict(X[:5])) == list(b.predict(X[:5]))
    # classes= or task= alone also take the record path
    y = rng.integers(1, 3, 60)
    c, d = (dg.Network([3, 4, 1], "tanh", "sigmoid", seed=3) for _ in range(2))
    kw = dict(classes=[1, 2], task="classification", epochs=2, seed=0, progress=False)
    with pytest.warns(dg.UnscaledFeaturesWarning) as seen_c:
        hc = dg.fit(c, X, y, **kw)
    with pytest.warns(dg.UnscaledFeaturesWarning) as seen_d:
        hd = d.fit(X, y, **kw)
    assert seen_c[0].filename == seen_d[0].filename == __file__  # points at the caller
    _same_fit((hc, hd), (c, d))


def test_fit_without_preprocessing_trains_on_x_and_y_as_given(rng):
    # No standardize/task/classes: deepgrad.fit keeps its behaviour (no record, no
    # UnscaledFeaturesWarning; warnings are errors here) and Network.fit's numbers.
    X = rng.standard_normal((40, 3)) * 100.0
    y = rng.integers(0, 2, 40)
    a, b = (dg.Network([3, 5, 1], "relu", "sigmoid", seed=4) for _ in range(2))
    ha = dg.fit(a, X, y, epochs=2, seed=0, progress=False)
    assert a.preprocessing is None
    with pytest.warns(dg.UnscaledFeaturesWarning, match="standardize=True"):
        hb = b.fit(X, y, epochs=2, seed=0, progress=False)
    _same_fit((ha, hb), (a, b))
    with pytest.raises(TypeError, match="Y must hold real numbers"):  # text labels need net.fit
        dg.fit(a, X, np.where(y == 1, "yes", "no"), epochs=1, progress=False)
