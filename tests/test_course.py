"""The learner's experiments: the batch order as data, per-epoch schedules, optimizer
state by name, and the course's published week-2 numbers reproduced through ``fit``.

Published numbers: deeplearning.ai, "Improving Deep Neural Networks", week 2,
"Optimization Methods" (the 5000-epoch version with learning-rate decay), as printed in
the public copies of the notebook, e.g. the repository Silva-6/deeplearning.AI-deep_learning
(1-improving_deep_neural_networks/3-optimization_methods/, the model and decay code) and
the printed outputs ("Cost after epoch 0: 0.702405 ... 4000: 0.573367", accuracies
0.7167 / 0.7167 / 0.94) in the learners' notes that copy the notebook's cells.
"""

from __future__ import annotations

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.core import network as nw
from deepgrad.data.arrays import epoch_permutation
from deepgrad.optim import optimizers as opt

sklearn_datasets = pytest.importorskip("sklearn.datasets")


def _moons():
    """The course's load_dataset: np.random.seed(3); make_moons(300, noise=.2), which
    draws from the global RandomState: the same draws as RandomState(3)."""
    return sklearn_datasets.make_moons(
        n_samples=300, noise=0.2, random_state=np.random.RandomState(3)
    )


def _course_order(epoch: int) -> np.ndarray:
    """random_mini_batches: seed = 10, incremented before each epoch, then
    np.random.seed(seed); np.random.permutation(m)."""
    return np.random.RandomState(11 + epoch).permutation(300)


def _course_run(optimizer, learning_rate, epochs=5000):
    X, y = _moons()
    # initialize_parameters: np.random.seed(3), W = randn(n_l, n_{l-1}) * sqrt(2 / n_{l-1})
    net = dg.Network(
        [2, 5, 2, 1], "relu", "sigmoid", init="he_normal", rng=np.random.RandomState(3),
        dtype="float64",
    )  # fmt: skip
    h = dg.fit(
        net, X, y, optimizer=optimizer, learning_rate=learning_rate, batch_size=64,
        epochs=epochs, order=_course_order, progress=False, seed=0,
    )  # fmt: skip
    ZL, _ = nw.forward(net.params, X, net.spec)
    accuracy = float(np.mean((ZL[:, 0] > 0) == y))
    return [round(h.epoch_cost[e], 6) for e in range(0, epochs, 1000)], accuracy


# "Cost after epoch %i: %f" every 1000 epochs, then the training accuracy.
PUBLISHED = {
    "gd": ([0.702405, 0.668101, 0.635288, 0.600491, 0.573367], 0.7167),
    "momentum": ([0.702413, 0.668167, 0.635388, 0.600591, 0.573444], 0.7167),
    "adam": ([0.702166, 0.167845, 0.141316, 0.138788, 0.136066], 0.94),
}


@pytest.mark.slow
@pytest.mark.parametrize("name", list(PUBLISHED))
def test_the_course_mini_batch_runs_print_the_published_costs(name):
    costs, accuracy = _course_run(name, 0.0007)
    assert costs == PUBLISHED[name][0]
    assert round(accuracy, 2) == round(PUBLISHED[name][1], 2)


def _after_epoch(decay):
    """The course's model sets the rate after epoch i to decay(alpha0, i): epoch e trains
    with decay(alpha0, e - 1) (epochs 0 and 1 both with alpha0)."""
    return opt.per_epoch(lambda e: decay(max(e - 1, 0)))


DECAY = {  # (optimizer, alpha0, decay(epoch) -> alpha, the printed costs)
    "update_lr gd": (
        "gd", 0.1, lambda i: 0.1 / (1 + 1.0 * i),
        [0.701091, 0.661884, 0.65862, 0.656765, 0.655486],
    ),
    "schedule_lr_decay gd": (
        "gd", 0.1, lambda i: 0.1 / (1 + 1.0 * np.floor(i / 1000)),
        [0.701091, 0.127161, 0.120304, 0.117033, 0.117512],
    ),
    "schedule_lr_decay momentum": (
        "momentum", 0.1, lambda i: 0.1 / (1 + 1.0 * np.floor(i / 1000)),
        [0.702226, 0.128974, 0.125965, 0.123375, 0.123218],
    ),
    "schedule_lr_decay adam": (
        "adam", 0.01, lambda i: 0.01 / (1 + 1.0 * np.floor(i / 1000)),
        [0.699346, 0.130074, 0.129826, 0.129282, 0.128361],
    ),
}  # fmt: skip


@pytest.mark.slow
@pytest.mark.parametrize("case", list(DECAY))
def test_the_course_decay_runs_print_the_published_costs(case):
    name, _, decay, printed = DECAY[case]
    costs, _ = _course_run(name, _after_epoch(decay))
    assert costs == printed


def test_schedule_lr_decay_is_inverse_time_decay_on_a_staircase_of_epochs():
    """The course's test case: alpha0 0.5, rate 0.3, interval 100 -> 0.5 after 10 epochs,
    0.3846153846153846 after 100."""
    s = opt.inverse_time_decay(0.5, 0.3, 100, staircase=True, per="epoch")
    assert s(10) == 0.5 and s(100) == pytest.approx(0.3846153846153846, rel=1e-15)
    assert s.per == "epoch" and s.per_step(5)(499) == s(99) and s.per_step(5)(500) == s(100)


def test_a_per_epoch_schedule_gives_every_update_of_an_epoch_the_same_rate():
    """gd with a per-epoch rate equals one fit per epoch with that constant rate."""
    X = np.random.default_rng(0).normal(size=(50, 3))
    y = (X[:, 0] > 0).astype(int)
    a = dg.Network([3, 4, 1], "tanh", "sigmoid", seed=0, dtype="float64")
    b = dg.Network([3, 4, 1], "tanh", "sigmoid", seed=0, dtype="float64")
    rate = opt.step_decay(0.5, 0.5, 1, per="epoch")
    order = lambda e: epoch_permutation(50, 3, e)  # noqa: E731
    dg.fit(a, X, y, epochs=3, batch_size=16, learning_rate=rate, order=order, progress=False)
    for e in range(3):
        b.training = None  # a fresh gd each epoch, its epochs counted by the order
        dg.fit(b, X, y, epochs=1, batch_size=16, learning_rate=rate(e), progress=False,
               order=lambda _, e=e: order(e))  # fmt: skip
    for k in a.params:
        np.testing.assert_allclose(a.params[k], b.params[k], rtol=1e-13)


@pytest.mark.parametrize("engine", ["reference", "numpy-shards", "torch"])
def test_an_order_equal_to_the_drawn_one_gives_the_same_numbers(engine):
    """order= reaches every engine: the default order given as data changes nothing."""
    if engine == "torch":
        pytest.importorskip("torch")
    backend = "torch" if engine == "torch" else "numpy"
    X = np.random.default_rng(1).normal(size=(70, 3))
    y = (X[:, 1] > 0).astype(int)
    out = []
    for order in (None, lambda e: epoch_permutation(70, 5, e)):
        net = dg.Network([3, 6, 1], seed=2, dtype="float64", backend=backend)
        h = net.fit(X, y, epochs=3, batch_size=16, seed=5, order=order, engine=engine,
                    optimizer="adam", learning_rate=0.01, progress=False)  # fmt: skip
        out.append(h.iteration_cost)
    assert out[0] == out[1]
    net = dg.Network([3, 6, 1], seed=2, dtype="float64", backend=backend)
    backwards = np.arange(70)[::-1]
    h = net.fit(X, y, epochs=3, batch_size=16, seed=5, engine=engine, optimizer="adam",
                order=lambda e: backwards, learning_rate=0.01, progress=False)  # fmt: skip
    assert h.iteration_cost != out[0]  # and another order is really used


def test_an_order_array_gives_each_epoch_its_row_and_batches_follow_it():
    X = np.random.default_rng(1).normal(size=(20, 2))
    y = (X[:, 0] > 0).astype(int)
    seen = []
    table = np.stack([np.random.default_rng(e).permutation(20) for e in range(2)])
    net = dg.Network([2, 3, 1], seed=0, dtype="float64")

    def spy(info):
        seen.append(info.iteration)

    h = net.fit(X, y, epochs=2, batch_size=8, order=table, callbacks=[spy], progress=False)
    assert h.iterations == 6 and seen == list(range(6))


@pytest.mark.parametrize(
    ("order", "match"),
    [
        (lambda e: np.arange(19), "shape"),
        (lambda e: np.r_[np.arange(19), 0], "appears 2 times"),
        (lambda e: np.r_[np.arange(19), 20], "rows 0..19"),
        (lambda e: np.arange(20.0), "integer"),
        (np.tile(np.arange(20), (1, 1)), r"\(epochs, m\) = \(2, 20\)"),
        ("abc", "permutation"),
    ],
)
def test_an_order_that_is_not_a_permutation_is_refused_before_training(order, match):
    X = np.random.default_rng(1).normal(size=(20, 2))
    y = (X[:, 0] > 0).astype(int)
    net = dg.Network([2, 3, 1], seed=0)
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(ValueError, match=match):
        net.fit(X, y, epochs=2, batch_size=8, order=order, progress=False)
    for k in before:
        np.testing.assert_array_equal(net.params[k], before[k])


def test_a_later_epoch_with_a_bad_order_stops_with_a_named_error():
    X = np.random.default_rng(1).normal(size=(20, 2))
    y = (X[:, 0] > 0).astype(int)
    net = dg.Network([2, 3, 1], seed=0)
    with pytest.raises(ValueError, match=r"order\(1\)"):
        net.fit(X, y, epochs=2, order=lambda e: np.arange(20 - e), progress=False)


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: opt.inverse_time_decay(-0.1, 1.0), "learning_rate"),
        (lambda: opt.inverse_time_decay(0.1, -1.0), "decay_rate"),
        (lambda: opt.inverse_time_decay(0.1, 1.0, per="batch"), "per must be one of"),
        (lambda: opt.step_decay(0.1, 0.5, 2, per=None), "per must be one of"),
        (lambda: opt.exponential_decay(0.1, 0.5, per="epochs"), "per must be one of"),
    ],
)
def test_a_bad_schedule_is_refused_when_built(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_optimizer_state_is_readable_by_name_and_t_is_one_counter():
    """Adam's t, moments and momentum's velocity by name; the course's test case starts
    from t = 2: with_t sets every counter, and the next update uses t = 3."""
    params = {"W1": np.array([[1.0, -2.0]]), "b1": np.array([0.5])}
    grads = {"W1": np.array([[0.5, -0.5]]), "b1": np.array([0.1])}
    adam = opt.adam(0.1)
    state = adam.init(params).with_t(2)
    assert state.t == 2 and state.inner[0].count == 2
    assert set(state["W1"]) == {"mu", "nu"}
    _, new = adam.update(grads, state, params)
    assert new.t == 3
    b1, b2 = 0.9, 0.999
    m = (1 - b1) * grads["W1"]
    np.testing.assert_allclose(new["W1"]["mu"], m)
    np.testing.assert_allclose(new["W1"]["nu"], (1 - b2) * grads["W1"] ** 2)
    moved = params["W1"] - adam.update(grads, state, params)[0]["W1"]
    expected = 0.1 * (m / (1 - b1**3)) / (np.sqrt((1 - b2) * grads["W1"] ** 2 / (1 - b2**3)) + 1e-8)
    np.testing.assert_allclose(moved, expected, rtol=1e-12)
    mom = opt.momentum(0.1).init(params)
    assert set(mom["b1"]) == {"velocity"} and mom.t == 0
    with pytest.raises(KeyError, match="W9"):
        mom["W9"]
    assert mom[0] == 0  # integer indexing is still a tuple's


def test_network_takes_a_legacy_random_state_like_init_params():
    """Network(rng=RandomState(3)) draws what np.random.seed(3); randn(...) * sqrt(2/n) draws."""
    net = dg.Network([2, 5, 2, 1], "relu", init="he_normal", rng=np.random.RandomState(3),
                     dtype="float64")  # fmt: skip
    legacy = np.random.RandomState(3)
    for layer, (n_out, n_in) in enumerate([(5, 2), (2, 5), (1, 2)], start=1):
        W = legacy.standard_normal((n_out, n_in)) * np.sqrt(2 / n_in)
        np.testing.assert_allclose(net.params[f"W{layer}"], W, rtol=1e-14)
    with pytest.raises(TypeError, match="Generator or RandomState"):
        dg.Network([2, 1], rng=3)


@pytest.mark.parametrize("engine", ["reference", "numpy-shards", "torch"])
@pytest.mark.parametrize("name", ["gd", "momentum", "rmsprop", "adam"])
def test_fit_twice_equals_one_fit_with_the_epochs_added(engine, name):
    """Continued training, bit for bit: optimizer moments, its counter, per-epoch
    schedules, the drawn order and the dropout masks all go on where they stopped."""
    if engine == "torch":
        pytest.importorskip("torch")
    backend = "torch" if engine == "torch" else "numpy"
    X = np.random.default_rng(4).normal(size=(45, 3))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    rate = opt.inverse_time_decay(0.05, 0.5, per="epoch")
    kw = {"batch_size": 16, "seed": 3, "optimizer": name, "learning_rate": rate,
          "keep_prob": 0.9, "engine": engine, "progress": False}  # fmt: skip
    once = dg.Network([3, 5, 1], "tanh", seed=1, dtype="float64", backend=backend)
    h = once.fit(X, y, epochs=5, **kw)
    twice = dg.Network([3, 5, 1], "tanh", seed=1, dtype="float64", backend=backend)
    h1 = twice.fit(X, y, epochs=2, **kw)
    h2 = twice.fit(X, y, epochs=3, **kw)
    assert h1.iteration_cost + h2.iteration_cost == h.iteration_cost
    assert twice.training.epochs == 5 and twice.training.opt_state.t == h.iterations
    for k in once.params:
        assert np.array_equal(np.asarray(once.params[k]), np.asarray(twice.params[k]))


def test_another_optimizer_starts_afresh_and_a_foreign_state_is_refused():
    X = np.random.default_rng(4).normal(size=(30, 3))
    y = (X[:, 0] > 0).astype(int)
    net = dg.Network([3, 4, 1], seed=1, dtype="float64")
    net.fit(X, y, epochs=2, optimizer="adam", learning_rate=0.01, progress=False)
    net.fit(X, y, epochs=1, optimizer="gd", progress=False)
    assert net.training.optimizer == "gd" and net.training.epochs == 1
    other = dg.Network([3, 6, 1], seed=1, dtype="float64")
    other.fit(X, y, epochs=1, optimizer="gd", progress=False)
    net.training = other.training
    before = {k: v.copy() for k, v in net.params.items()}
    net.training = net.training._replace(
        opt_state=dg.optim.optimizers.momentum().init(other.params)
    )
    net.training = net.training._replace(optimizer="momentum")
    with pytest.raises(ValueError, match="does not fit this network"):
        net.fit(X, y, epochs=1, optimizer="momentum", progress=False)
    for k in before:
        np.testing.assert_array_equal(net.params[k], before[k])


def test_a_finite_rise_of_the_cost_warns_in_the_library_with_the_cli_wording():
    """fit(learning_rate=1e6) on a linear output: for 3 epochs the cost rises by orders of
    magnitude and stays finite (0.674 -> 4.5e86; a 5th epoch overflows and stops); fit
    says so (a DivergenceWarning), a sane rate says nothing."""
    X = np.random.default_rng(0).normal(size=(40, 2))
    y = X[:, 0] - 0.5 * X[:, 1]
    net = dg.Network([2, 4, 1], "relu", "linear", seed=0, dtype="float64")
    with pytest.warns(dg.DivergenceWarning, match=r"the cost rose from .* learning rate 1e\+06 "
                      r"is too large .*lower learning_rate \(e\.g\. 100000\)"):  # fmt: skip
        net.fit(X, y, batch_size=None, epochs=3, learning_rate=1e6, seed=0, progress=False,
                on_divergence="stop")  # fmt: skip
    calm = dg.Network([2, 4, 1], "relu", "linear", seed=0, dtype="float64")
    calm.fit(X, y, batch_size=None, epochs=20, learning_rate=0.01, seed=0, progress=False)


def _overfit_data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(60, 5))
    y = (X[:, 0] + 0.8 * rng.normal(size=60) > 0).astype(int)
    Xv = rng.normal(size=(200, 5))
    yv = (Xv[:, 0] > 0).astype(int)
    return X, y, Xv, yv


def test_early_stopping_keeps_the_best_epoch_and_says_so_in_one_line():
    X, y, Xv, yv = _overfit_data()
    kw = {"epochs": 150, "batch_size": 16, "optimizer": "adam", "learning_rate": 0.02,
          "seed": 0, "validation_data": (Xv, yv), "progress": False}  # fmt: skip
    full = dg.Network([5, 64, 64, 1], "relu", seed=0, dtype="float64")
    hf = full.fit(X, y, **kw)
    best = int(np.argmin(hf.val_cost))
    assert best + 10 < 150  # the data overfit: a best epoch well before the end
    net = dg.Network([5, 64, 64, 1], "relu", seed=0, dtype="float64")
    h = net.fit(X, y, early_stopping=True, patience=10, **kw)
    assert h.best_epoch == best and len(h.epoch_cost) == best + 11
    assert h.val_cost == hf.val_cost[: best + 11]  # the same run, cut short
    assert h.early_stopped == (
        f"early stopping at epoch {best + 11}: the validation cost did not improve for 10 "
        f"epochs; kept the parameters of epoch {best + 1} (validation cost {hf.val_cost[best]:.4g})"
    )
    from deepgrad.train.loop import evaluate

    assert evaluate(net.params, net.spec, Xv, yv, net.dtype)[0] == pytest.approx(hf.val_cost[best])


@pytest.mark.parametrize(
    ("kw", "error", "match"),
    [
        ({}, ValueError, "needs validation_data"),
        ({"validation_data": "v", "patience": 0}, TypeError, "validation_data"),
        ({"patience": 0}, ValueError, "patience"),
        ({"monitor": "loss"}, ValueError, "monitor must be"),
        ({"early_stopping": "yes"}, TypeError, "early_stopping must be"),
    ],
)
def test_bad_early_stopping_options_are_refused(kw, error, match):
    X, y, Xv, yv = _overfit_data()
    kw = {"early_stopping": True, "validation_data": (Xv, yv), **kw}
    if match == "needs validation_data":
        kw.pop("validation_data")
    with pytest.raises(error, match=match):
        dg.Network([5, 3, 1], seed=0).fit(X, y, epochs=2, progress=False, **kw)


def _npz(tmp_path):
    X, y, Xv, yv = _overfit_data()
    path = tmp_path / "d.npz"
    np.savez(path, X=np.vstack([X, Xv]), y=np.r_[y, yv])
    return str(path)


def test_cli_early_stopping_says_where_it_stopped_and_a_long_run_warns(tmp_path, capsys):
    from deepgrad.cli.main import main

    argv = ["train", "--data", _npz(tmp_path), "--hidden", "64,64", "--lr", "0.3",
            "--epochs", "150", "--test-fraction", "0.5", "--seed", "0"]  # fmt: skip
    assert main([*argv, "--out", str(tmp_path / "a"), "--early-stopping", "--patience", "5"]) == 0
    out = capsys.readouterr().out
    assert "early stopping at epoch " in out and "kept the parameters of epoch " in out
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    err = capsys.readouterr().err
    assert "held-out cost was lowest at epoch" in err and "--early-stopping" in err


@pytest.mark.parametrize(
    ("flags", "match"),
    [
        (["--lr-decay", "-1"], "--lr-decay"),
        (["--lr-decay-every", "10"], "--lr-decay-every applies with --lr-decay only"),
        (["--lr-decay", "1", "--lr-decay-every", "0"], "--lr-decay-every"),
        (["--early-stopping", "--validation-fraction", "1"], "--validation-fraction"),
        (["--early-stopping", "--validation-fraction", "0.001"], "to stop by; both need"),
        (["--patience", "0"], "--patience"),
    ],
)
def test_cli_learning_flags_refuse_bad_values_in_one_line(tmp_path, capsys, flags, match):
    from deepgrad.cli.main import main

    argv = ["train", "--data", _npz(tmp_path), "--epochs", "2", "--out", str(tmp_path / "o")]
    assert main([*argv, *flags]) == 2
    err = capsys.readouterr().err
    assert match in err and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "o" / "model.npz").exists()


def test_cli_lr_decay_reaches_fit_as_a_per_epoch_schedule(tmp_path, capsys):
    from deepgrad.cli.main import main

    argv = ["train", "--data", _npz(tmp_path), "--epochs", "3", "--seed", "0", "--quiet"]
    assert main([*argv, "--out", str(tmp_path / "a"), "--lr-decay", "1e9"]) == 0
    assert main([*argv, "--out", str(tmp_path / "b")]) == 0
    a = np.load(tmp_path / "a" / "model.npz")
    b = np.load(tmp_path / "b" / "model.npz")
    assert not np.array_equal(a["W1"], b["W1"])  # the decay changed the run


@pytest.mark.slow
def test_the_course_week1_he_initialization_run_prints_the_published_costs():
    """Week 1, "Initialization": make_circles(300, noise .05) after np.random.seed(1) (test
    set: 100 rows after seed 2), [2, 10, 5, 1], He init after np.random.seed(3), 15,000
    full-batch steps of lr 0.01. Printed: cost 0.8830537463419761 at iteration 0,
    0.6879825919728063 at 1000, 0.07357895962677366 at 14000; accuracy 0.9933 / 0.96."""
    circles = sklearn_datasets.make_circles
    Xtr, ytr = circles(n_samples=300, noise=0.05, random_state=np.random.RandomState(1))
    Xte, yte = circles(n_samples=100, noise=0.05, random_state=np.random.RandomState(2))
    net = dg.Network([2, 10, 5, 1], "relu", "sigmoid", init="he_normal",
                     rng=np.random.RandomState(3), dtype="float64")  # fmt: skip
    h = dg.fit(net, Xtr, ytr, batch_size=None, epochs=15000, learning_rate=0.01, seed=0,
               progress=False)  # fmt: skip
    printed = {0: 0.8830537463419761, 1000: 0.6879825919728063, 14000: 0.07357895962677366}
    for t, cost in printed.items():
        assert h.iteration_cost[t] == pytest.approx(cost, rel=1e-12)

    def accuracy(X, y):
        return float(np.mean((nw.forward(net.params, X, net.spec)[0][:, 0] > 0) == y))

    assert round(accuracy(Xtr, ytr), 4) == 0.9933 and accuracy(Xte, yte) == 0.96


def test_a_checkpoint_records_the_order_and_resumes_it_exactly(tmp_path):
    X = np.random.default_rng(2).normal(size=(40, 3))
    y = (X[:, 2] > 0).astype(int)
    table = np.stack([np.random.default_rng(10 + e).permutation(40) for e in range(3)])
    kw = {"epochs": 3, "batch_size": 8, "seed": 1, "optimizer": "adam", "order": table,
          "learning_rate": 0.01, "progress": False}  # fmt: skip
    ref = dg.Network([3, 4, 1], seed=0, dtype="float64")
    href = ref.fit(X, y, **kw)

    def interrupt(info):
        if info.iteration == 7:
            raise KeyboardInterrupt

    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        dg.Network([3, 4, 1], seed=0, dtype="float64").fit(
            X, y, checkpoint=path, callbacks=[interrupt], **kw
        )
    net = dg.Network([3, 4, 1], seed=0, dtype="float64")
    h = net.fit(X, y, checkpoint=path, **kw)
    assert h.iteration_cost == href.iteration_cost
    other = {**kw, "order": table[::-1].copy()}
    with pytest.raises(ValueError, match="order"):
        dg.Network([3, 4, 1], seed=0, dtype="float64").fit(X, y, checkpoint=path, **other)


@pytest.mark.parametrize("optimizer", ["gd", "momentum", "rmsprop", "adam"])
def test_a_model_saved_with_its_optimizer_state_goes_on_training_after_load(tmp_path, optimizer):
    """save(optimizer_state=True) + load + fit == the fit that never left memory, bit for
    bit; without the flag the loaded net starts afresh (epoch 0's order, no moments)."""
    from sklearn.datasets import make_moons

    X, y = make_moons(200, noise=0.2, random_state=3)
    kw = dict(optimizer=optimizer, batch_size=64, learning_rate=0.01, seed=0, progress=False)
    a = dg.Network([2, 5, 2, 1], "relu", "sigmoid", seed=1)
    a.fit(X, y, epochs=3, **kw)
    dg.save(a, tmp_path / "with.npz", optimizer_state=True)
    dg.save(a, tmp_path / "without.npz")
    b, c = dg.load(tmp_path / "with.npz"), dg.load(tmp_path / "without.npz")
    assert b.training.epochs == 3 and b.training.opt_state.t == a.training.opt_state.t == 12
    assert c.training is None
    for net in (a, b, c):
        net.fit(X, y, epochs=2, **kw)
    assert all(np.array_equal(a.params[k], b.params[k]) for k in a.params)
    same = all(np.array_equal(a.params[k], c.params[k]) for k in a.params)
    assert not same  # epochs (the drawn order) and moments start afresh without the flag


def test_saving_an_optimizer_state_refuses_what_it_cannot_keep(tmp_path):
    net = dg.Network([2, 3, 1], "relu", "sigmoid", seed=0)
    with pytest.raises(ValueError, match=r"net.training is None: fit the network first"):
        dg.save(net, tmp_path / "m.npz", optimizer_state=True)
    with pytest.raises(TypeError, match=r"optimizer_state must be True or False, got 'yes'"):
        dg.save(net, tmp_path / "m.npz", optimizer_state="yes")
    assert not (tmp_path / "m.npz").exists()
    X = np.random.default_rng(0).normal(size=(20, 2))
    net.fit(X, (X[:, 0] > 0).astype(int), optimizer="adam", epochs=1, progress=False)
    dg.save(net, tmp_path / "m.npz", optimizer_state=True)
    with np.load(tmp_path / "m.npz") as z:
        members = {k: z[k] for k in z.files}
    members["optimizer.1.W1"] = np.full_like(members["optimizer.1.W1"], np.nan)
    np.savez(tmp_path / "bad.npz", **members)
    with pytest.raises(
        ValueError, match=r"bad.npz' has an invalid optimizer state: moment 1 of W1"
    ):
        dg.load(tmp_path / "bad.npz")
