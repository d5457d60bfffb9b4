"""The compiled engine: every activation and output, float32, its limits, and a
deepgrad without numba (the engine says so; everything else trains as before)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.train import checkpoint, loop
from deepgrad.train.engines import compiled
from deepgrad.train.types import Plan

needs_numba = pytest.mark.skipif(not compiled.numba_available(), reason="no numba")


def _xy(output, m=96, n=5, seed=0):
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((m, n))
    if output == "softmax":
        return X, (X[:, 0] > 0).astype(int) + (X[:, 1] > 0.5)
    if output == "linear":
        return X, X[:, 0] - 0.5 * X[:, 1]
    return X, (X[:, 0] * X[:, 1] > 0).astype(int)


def _fit(engine, hidden, output, dtype="float64", **kw):
    X, y = _xy(output)
    net = dg.Network(
        [5, 7, 4, 3 if output == "softmax" else 1],
        seed=2,
        dtype=dtype,
        hidden_activation=hidden,
        output=output,
    )
    kw = {
        "batch_size": 32,
        "epochs": 3,
        "seed": 5,
        "progress": False,
        "l2": 0.1,
        "optimizer": "adam",
        "learning_rate": 0.02,
        **kw,
    }
    h = net.fit(X.astype(dtype), y, engine=engine, **kw)
    return {k: np.asarray(v, np.float64) for k, v in net.params.items()}, h


@needs_numba
@pytest.mark.parametrize("hidden", ["relu", "leaky_relu", "tanh", "sigmoid", "linear"])
@pytest.mark.parametrize("output", ["sigmoid", "softmax", "linear"])
def test_every_activation_and_output_gives_the_reference_numbers(hidden, output):
    ref, href = _fit("reference", hidden, output, keep_prob=0.8)
    got, h = _fit("compiled", hidden, output, keep_prob=0.8)
    assert h.engine == "compiled" and len(h.iteration_cost) == 9
    np.testing.assert_allclose(h.iteration_cost, href.iteration_cost, rtol=1e-12)
    for k in ref:
        scale = np.max(np.abs(ref[k]))
        assert np.max(np.abs(ref[k] - got[k])) <= 1e-12 * scale, k


@needs_numba
def test_float32_follows_the_reference_to_float32_rounding():
    ref, href = _fit("reference", "relu", "sigmoid", "float32")
    got, h = _fit("compiled", "relu", "sigmoid", "float32")
    assert h.engine == "compiled"
    np.testing.assert_allclose(h.iteration_cost, href.iteration_cost, rtol=1e-4)
    for k in ref:
        np.testing.assert_allclose(got[k], ref[k], rtol=1e-3, atol=1e-5)


@needs_numba
def test_large_steps_go_to_blas_and_custom_optimizers_are_refused_by_name():
    X, y = _xy("sigmoid", n=100)
    kw = dict(epochs=2, batch_size=32, progress=False, seed=1, optimizer="adam", learning_rate=0.01)
    hs, params = [], []
    for engine in (None, "compiled", "reference"):  # 32 rows x 6,400 weights: past the rule
        net = dg.Network([100, 64, 1], seed=0, dtype="float64")
        hs.append(net.fit(X, y, engine=engine, **kw))
        params.append(net.params)
    assert [h.engine for h in hs] == ["numpy-shards", "compiled", "reference"]
    assert not compiled.Compiled.fast_for(_plan_of(X, y, 32, [100, 64, 1]))
    _same_params(params[2], params[1], 1e-12)
    net = dg.Network([5, 3, 1], seed=0)
    custom = dg.optimizers.chain(
        "mine", 0.1, dg.optimizers.scale_by_rms(0.9), dg.optimizers.scale_by_momentum(0.5)
    )
    with pytest.raises(ValueError, match="built-in optimizers only, not 'mine'"):
        net.fit(X[:, :5], y, epochs=1, engine="compiled", optimizer=custom, progress=False)


def _train_with_a_broken_numba(tmp_path, expected: str):
    """In a fresh process with PYTHONPATH at ``tmp_path`` (where the test broke numba):
    a small fit trains on numpy-shards, and asking for the compiled engine raises
    ValueError matching ``expected``."""
    script = textwrap.dedent(f"""
        import numpy as np, pytest, deepgrad as dg
        X = np.random.default_rng(0).standard_normal((64, 2)); y = (X[:, 0] > 0).astype(int)
        net = dg.Network([2, 4, 1], seed=0)
        h = net.fit(X, y, epochs=2, batch_size=16, progress=False)
        assert h.engine == "numpy-shards", h.engine
        with pytest.raises(ValueError, match={expected!r}):
            net.fit(X, y, epochs=1, engine="compiled", progress=False)
        print("ok")
    """)
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(tmp_path), env.get("PYTHONPATH", "")])
    done = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "ok"


def test_a_numba_that_does_not_import_falls_back_to_numpy_shards(tmp_path):
    fake = tmp_path / "numba"
    fake.mkdir()
    (fake / "__init__.py").write_text("raise ImportError('Numba needs NumPy 1.99 or less')\n")
    _train_with_a_broken_numba(tmp_path, "numba does not import here .Numba needs NumPy")


def test_without_numba_the_engine_names_it_and_training_still_works(tmp_path):
    (tmp_path / "sitecustomize.py").write_text("import sys\nsys.modules['numba'] = None\n")
    _train_with_a_broken_numba(tmp_path, "'compiled' cannot run this fit: it needs numba")


def _plan_of(X, y, batch_size, sizes):
    net = dg.Network(sizes, seed=0)
    return Plan(X, y, net.spec, dg.optimizers.adam(0.01), batch_size)


def _history(h):
    return {k: h.as_dict()[k] for k in ("iteration_cost", "iteration_examples", "epoch_cost")}


def _same_history(a, b, rtol):
    assert a["iteration_examples"] == b["iteration_examples"]
    for k in ("iteration_cost", "epoch_cost"):
        np.testing.assert_allclose(a[k], b[k], rtol=rtol, atol=0)


def _same_params(a, b, tol):
    for k in a:
        assert np.max(np.abs(a[k] - b[k])) <= tol * np.max(np.abs(a[k])), k


SPAN_RUNS = [
    dict(optimizer="gd", learning_rate=0.3),
    dict(optimizer="momentum", learning_rate=dg.optimizers.step_decay(0.3, 0.5, 5)),
    dict(optimizer="rmsprop", learning_rate=0.01, l2_normalization="dataset"),
    dict(optimizer="adam", learning_rate=dg.optimizers.exponential_decay(0.02, 0.5, 4)),
    dict(optimizer="adam", learning_rate=0.02, shuffle=False, l2=0.0),
]


@needs_numba
@pytest.mark.parametrize("run", SPAN_RUNS)
def test_spans_of_steps_give_the_numbers_and_history_of_single_steps(run, monkeypatch):
    """A fit without callbacks runs spans of many steps, the order drawn in compiled
    code; with a callback the loop hands one step at a time. Both are the reference's."""
    kw = dict(keep_prob=0.8, epochs=4, batch_size=25, **run)  # 96 rows: a last batch of 21
    ref, href = _fit("reference", "tanh", "sigmoid", **kw)
    one, h1 = _fit("compiled", "tanh", "sigmoid", callbacks=[lambda info: None], **kw)
    monkeypatch.setattr(loop.Spans, "MAX_STEPS", 3)  # spans that end inside epochs
    span, h3 = _fit("compiled", "tanh", "sigmoid", **kw)
    monkeypatch.undo()
    whole, hw = _fit("compiled", "tanh", "sigmoid", **kw)  # spans of whole epochs
    assert len(h1.iteration_cost) == 16
    for params, h in ((one, h1), (span, h3), (whole, hw)):
        _same_params(ref, params, 1e-12)
        _same_history(_history(href), _history(h), 1e-12)
    _same_history(_history(h1), _history(hw), 1e-13)
    assert hw.iteration_time == sorted(hw.iteration_time) and len(hw.epoch_time) == 4


@needs_numba
@pytest.mark.filterwarnings("ignore::RuntimeWarning")
def test_a_span_that_diverges_keeps_the_last_finite_step():
    X, _ = _xy("linear")
    y = X[:, 0] * 3.0
    kw = dict(optimizer="gd", learning_rate=5.0, on_divergence="stop", epochs=3, l2=0.0)
    hs = []
    for engine, callbacks in (("compiled", ()), ("compiled", [lambda i: None]), ("reference", ())):
        net = dg.Network([5, 7, 4, 1], seed=2, dtype="float64", output="linear",
                         hidden_activation="linear")  # fmt: skip
        h = net.fit(X, y, engine=engine, callbacks=callbacks, batch_size=16, seed=5,
                    progress=False, **kw)  # fmt: skip
        assert all(np.isfinite(v).all() for v in net.params.values())
        hs.append((h, net.params))
    (span, p_span), (one, p_one), (ref, _) = hs
    assert span.stopped == one.stopped and span.stopped.startswith("diverged at epoch 1,")
    assert span.stopped.split(":")[0] == ref.stopped.split(":")[0]
    assert span.iteration_cost == pytest.approx(ref.iteration_cost, rel=1e-9)
    assert span.iteration_examples == one.iteration_examples and span.epoch_cost == []
    for k in p_span:
        np.testing.assert_allclose(p_span[k], p_one[k], rtol=1e-13)


@needs_numba
@pytest.mark.parametrize("every", [None, 3])
def test_checkpoints_and_resume_between_spans_give_the_uninterrupted_numbers(tmp_path, every):
    kw = dict(keep_prob=0.8, epochs=3, batch_size=25, optimizer="adam", learning_rate=0.02)
    ref, href = _fit("compiled", "relu", "sigmoid", **kw)

    def interrupt(info):
        if info.iteration == 6:
            raise KeyboardInterrupt

    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        _fit("compiled", "relu", "sigmoid", checkpoint=path, callbacks=[interrupt], **kw)
    got, h = _fit("compiled", "relu", "sigmoid", checkpoint=path, checkpoint_every=every, **kw)
    _same_params(ref, got, 1e-13)
    _same_history(_history(href), _history(h), 1e-13)
    again, h2 = _fit("compiled", "relu", "sigmoid", checkpoint=path, **kw)  # done: no steps
    assert h2.iteration_cost == h.iteration_cost


@needs_numba
def test_validation_and_early_stopping_see_every_epoch_of_spans():
    X, y = _xy("sigmoid", m=60, seed=4)
    kw = dict(keep_prob=1.0, epochs=30, batch_size=25, validation_data=(X, y),
              early_stopping=True, patience=2, learning_rate=0.05)  # fmt: skip
    ref, href = _fit("reference", "relu", "sigmoid", **kw)
    got, h = _fit("compiled", "relu", "sigmoid", **kw)
    _same_params(ref, got, 1e-12)
    np.testing.assert_allclose(h.val_cost, href.val_cost, rtol=1e-12)
    assert h.best_epoch == href.best_epoch and len(h.epoch_cost) == len(href.epoch_cost)


def test_the_scalars_table_is_the_rules_scalars():
    opt = dg.optimizers
    for rule in (
        opt.adam(opt.inverse_time_decay(0.1, 0.3, 7, staircase=True)).flat,
        opt.adam(0.001, 0.9, 0.999).flat,
        opt.momentum(opt.step_decay(0.3, 0.5, 5)).flat,
        opt.gd(opt.exponential_decay(0.3, 0.5, 4)).flat,
        opt.bind_epochs(opt.rmsprop(opt.per_epoch(lambda e: 0.1 if e < 3 else 0.01)), 4).flat,
    ):
        table = opt.scalars_table(rule, 5, 3000)
        per = np.array([rule.scalars(c) for c in range(5, 3005)])
        np.testing.assert_allclose(table, per, rtol=2e-14, atol=0)


def test_ctrl_c_inside_a_deferred_block_is_raised_when_it_ends():
    ran = []
    with pytest.raises(KeyboardInterrupt):
        with loop.deferred_interrupt():
            signal.raise_signal(signal.SIGINT)
            ran.append("after the signal")
    assert ran == ["after the signal"]
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@needs_numba
def test_ctrl_c_during_a_span_keeps_steps_history_and_checkpoint_together(tmp_path, monkeypatch):
    """Ctrl-C while a span runs (in compiled code it waits for the call) is raised once
    the span's steps are in the history: the checkpoint holds them and resumes exactly."""
    kw = dict(keep_prob=0.8, epochs=4, batch_size=25, optimizer="adam", learning_rate=0.02)
    ref, href = _fit("compiled", "relu", "sigmoid", **kw)
    original, calls = compiled.Compiled.run_span, []

    def run_span(self, *args):
        out = original(self, *args)
        calls.append(len(out[0]))
        if len(calls) == 3:
            signal.raise_signal(signal.SIGINT)  # as if it came during the compiled call
        return out

    monkeypatch.setattr(compiled.Compiled, "run_span", run_span)
    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        _fit("compiled", "relu", "sigmoid", checkpoint=path, checkpoint_every=3, **kw)
    saved = checkpoint.load_checkpoint(path)
    assert len(saved.history["iteration_cost"]) == sum(calls) == 6  # spans of 3, 1, 2
    assert saved.epoch * 4 + saved.position == 6
    monkeypatch.undo()
    got, h = _fit("compiled", "relu", "sigmoid", checkpoint=path, **kw)
    _same_params(ref, got, 1e-13)
    _same_history(_history(href), _history(h), 1e-13)


@needs_numba
def test_a_nan_row_of_a_memory_map_is_named(tmp_path):
    X, y = _xy("sigmoid")
    X[37, 2] = np.nan
    path = tmp_path / "X.npy"
    np.save(path, X)
    Xmm = np.load(path, mmap_mode="r")
    net = dg.Network([5, 7, 4, 1], seed=2, dtype="float64")
    with pytest.raises(ValueError, match=r"X contains NaN or inf in rows \[37\]"):
        net.fit(Xmm, y, epochs=1, batch_size=32, engine="compiled", progress=False, seed=5)
