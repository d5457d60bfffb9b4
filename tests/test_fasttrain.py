"""The NumPy fast path gives the generic path's numbers, and falls back where it should."""

from __future__ import annotations

import numpy as np
import pytest

import deepgrad as dg
from deepgrad import data, fasttrain, optimizers


def _fit(
    monkeypatch,
    fast: bool,
    *,
    sizes=(12, 16, 8, 1),
    act="relu",
    output="sigmoid",
    dtype="float32",
    m=203,
    X_dtype=None,
    **kw,
):
    rng = np.random.default_rng(1)
    X = rng.standard_normal((m, sizes[0])).astype(X_dtype or dtype)
    if output == "softmax":
        y = rng.integers(0, sizes[-1], m)
    elif output == "linear":
        y = rng.standard_normal((m, sizes[-1]))
    else:
        y = (X[:, 0] + 0.3 * X[:, 1] > 0).astype(int)
        if sizes[-1] > 1:  # one 0/1 label column per sigmoid unit
            y = (X[:, : sizes[-1]] > 0).astype(int)
    net = dg.Network(list(sizes), act, output, seed=3, dtype=dtype)
    used = []
    real = fasttrain.why_not

    def spy(*args):
        reason = real(*args) if fast else "forced off"
        used.append(reason is None)
        return reason

    monkeypatch.setattr(fasttrain, "why_not", spy)
    h = net.fit(X, y, progress=False, seed=5, **kw)
    return net.params, h, used


def _threads(monkeypatch, k: int) -> None:
    """Shard into k threads whatever the machine, and however small the network."""
    monkeypatch.setattr(fasttrain, "_blas_threads", lambda: k)
    monkeypatch.setattr(fasttrain, "MIN_SHARD_FLOPS", 0)


def _rel(a, b):
    return float(np.linalg.norm(a - b) / max(np.linalg.norm(b), 1e-30))


@pytest.mark.parametrize(
    "dtype,tol,kw",
    [
        ("float32", 1e-6, dict(batch_size=32, epochs=3, l2=0.1)),  # 203 = 6*32 + 11: partial
        ("float64", 1e-12, dict(batch_size=32, epochs=3, l2=0.1)),
        ("float32", 1e-6, dict(batch_size=50, epochs=2, l2=0.5, l2_normalization="dataset")),
        ("float64", 1e-12, dict(batch_size=None, epochs=4, learning_rate=0.3)),
        ("float64", 1e-12, dict(batch_size=1, epochs=1, learning_rate=0.01, l2=0.01)),
        (
            "float64",
            1e-12,
            dict(
                batch_size=16, epochs=2, optimizer=optimizers.gd(optimizers.step_decay(0.2, 0.5, 7))
            ),
        ),
    ],
)
def test_fast_path_matches_generic(monkeypatch, dtype, tol, kw):
    pf, hf, used_f = _fit(monkeypatch, True, dtype=dtype, **kw)
    pg, hg, used_g = _fit(monkeypatch, False, dtype=dtype, **kw)
    assert all(used_f) and not any(used_g)
    for k in pg:
        assert pf[k].dtype == pg[k].dtype == np.dtype(dtype)
        assert _rel(pf[k], pg[k]) < tol, k
    np.testing.assert_allclose(hf.iteration_cost, hg.iteration_cost, rtol=10 * tol)
    assert hf.iteration_examples == hg.iteration_examples


@pytest.mark.parametrize(
    "act,output,sizes",
    [
        ("tanh", "softmax", (6, 10, 7, 4)),
        ("leaky_relu", "linear", (6, 9, 2)),
        ("sigmoid", "sigmoid", (6, 5, 5, 3)),
    ],
)
def test_fast_path_other_activations_and_outputs(monkeypatch, act, output, sizes):
    kw = dict(batch_size=40, epochs=2, l2=0.05, learning_rate=0.05)
    pf, _, used = _fit(
        monkeypatch, True, sizes=sizes, act=act, output=output, dtype="float64", **kw
    )
    pg, _, _ = _fit(monkeypatch, False, sizes=sizes, act=act, output=output, dtype="float64", **kw)
    assert all(used)
    for k in pg:
        assert _rel(pf[k], pg[k]) < 1e-12


def test_float64_data_into_float32_net(monkeypatch):
    kw = dict(batch_size=25, epochs=2, X_dtype="float64")
    pf, _, used = _fit(monkeypatch, True, **kw)
    pg, _, _ = _fit(monkeypatch, False, **kw)
    assert all(used)
    assert all(_rel(pf[k], pg[k]) < 1e-6 for k in pg)


def test_fast_path_on_memmap(monkeypatch, tmp_path):
    data.make_dataset(tmp_path / "d", 3000, 12, seed=0)
    X, y = data.open_dataset(tmp_path / "d")
    Xm, ym = np.array(X), np.array(y)
    nets = []
    for arr in ((X, y), (Xm, ym)):
        net = dg.Network([12, 8, 1], seed=0)
        net.fit(*arr, batch_size=128, epochs=2, seed=0, progress=False)
        nets.append(net.params)
    for k in nets[0]:
        np.testing.assert_array_equal(nets[0][k], nets[1][k])


def test_callbacks_see_copies_and_input_params_untouched(monkeypatch):
    net = dg.Network([4, 6, 1], seed=0)
    before = {k: v.copy() for k, v in net.params.items()}
    given = net.params
    seen = []
    X = np.random.default_rng(0).standard_normal((40, 4))
    y = (X[:, 0] > 0).astype(int)
    net.fit(
        X,
        y,
        batch_size=10,
        epochs=1,
        seed=0,
        progress=False,
        callbacks=[lambda info: seen.append((info.params, info.grads))],
    )
    assert len(seen) == 4
    for k in before:
        np.testing.assert_array_equal(given[k], before[k])  # the caller's dict is not mutated
    assert not np.array_equal(seen[0][0]["W1"], seen[-1][0]["W1"])
    assert set(seen[0][1]) == set(before)


@pytest.mark.parametrize(
    "kw,reason",
    [
        (dict(keep_prob=0.8), "dropout"),
        (dict(optimizer="adam"), "adam"),
        (dict(optimizer="momentum"), "momentum"),
    ],
)
def test_fallbacks(kw, reason):
    from deepgrad.training import _Run  # noqa: PLC2701

    net = dg.Network([3, 4, 1], seed=0)
    opt = optimizers.get(kw.get("optimizer", "gd"), 0.1)
    run = _Run(
        np.zeros((5, 3), np.float32),
        np.zeros((5, 1), np.float32),
        net.spec,
        opt,
        2,
        0.0,
        None,
        kw.get("keep_prob", 1.0),
        0,
        True,
        "float32",
        np,
        False,
    )
    why = fasttrain.why_not(run, net.params, opt.init(net.params))
    assert why is not None and reason in why


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
@pytest.mark.parametrize("fast", [True, False])
def test_divergence_is_reported_like_the_generic_path(monkeypatch, fast):
    kw = dict(
        sizes=(12, 8, 1),
        output="linear",
        dtype="float64",
        batch_size=16,
        epochs=5,
        learning_rate=50.0,
        on_divergence="stop",
    )
    pf, hf, _ = _fit(monkeypatch, fast, **kw)
    assert hf.stopped.startswith("diverged at epoch 1, iteration ")
    assert all(np.isfinite(v).all() for v in pf.values())
    pg, hg, _ = _fit(monkeypatch, not fast, **kw)
    assert hf.stopped == hg.stopped
    for k in pg:
        np.testing.assert_allclose(pf[k], pg[k], rtol=1e-9)


@pytest.mark.parametrize("threads,dtype,tol", [(2, "float32", 1e-6), (3, "float64", 1e-12)])
def test_row_shards_match_generic(monkeypatch, threads, dtype, tol):
    # batch 400 of 1000 rows: shards of 200 (or 134, 134, 132); the last batch of 200 too
    _threads(monkeypatch, threads)
    assert fasttrain.n_shards(400) == threads and fasttrain.n_shards(100) == 1
    kw = dict(sizes=(12, 32, 16, 1), m=1000, dtype=dtype, batch_size=400, epochs=3, l2=0.1)
    pf, hf, used = _fit(monkeypatch, True, **kw)
    pg, hg, _ = _fit(monkeypatch, False, **kw)
    assert all(used)
    for k in pg:
        assert _rel(pf[k], pg[k]) < tol, k
    np.testing.assert_allclose(hf.iteration_cost, hg.iteration_cost, rtol=10 * tol)


def test_shards_only_where_the_work_pays_for_a_thread(monkeypatch):
    monkeypatch.setattr(fasttrain, "_blas_threads", lambda: 2)
    t1, small = (100, 256, 128, 64, 1), (20, 64, 32, 1)
    assert [fasttrain.n_shards(b, t1) for b in (64, 128, 256, 1000)] == [1, 1, 2, 2]
    assert [fasttrain.n_shards(b, small) for b in (128, 1000, 8192)] == [1, 1, 2]
    assert fasttrain.n_shards(1000) == 2  # rows only


def test_shard_rows_cover_the_batch():
    for r, k in ((1000, 2), (999, 2), (400, 3), (5, 4), (1, 2), (130, 2)):
        rows = fasttrain._shard_rows(r, k)
        assert len(rows) <= k
        assert np.concatenate([np.arange(r)[s] for s in rows]).tolist() == list(range(r))
    # the main thread (shard 0) also does the step's bookkeeping: it gets a few rows fewer
    sizes = [s.stop - s.start for s in fasttrain._shard_rows(1000, 2)]
    assert sizes == [500 - fasttrain.MAIN_FEWER_ROWS // 2, 500 + fasttrain.MAIN_FEWER_ROWS // 2]


def test_layout_packs_weights_and_biases_and_masks_the_weights():
    net = dg.Network([5, 7, 3, 1], seed=0)
    layout = fasttrain._Layout(net.spec.layer_sizes, np.float32)
    flat = layout.pack(net.params)
    assert flat.size == sum(p.size for p in net.params.values())
    back = layout.unpack(flat)
    for k, v in net.params.items():
        np.testing.assert_array_equal(back[k], v)
        assert back[k].flags.c_contiguous
    # the L2 mask is 1 exactly on the weights: sum ||W||^2 through it
    sq = float(np.dot(flat * layout.wmask, flat * layout.wmask))
    expect = sum(float(np.sum(net.params[f"W{l}"] ** 2)) for l in (1, 2, 3))
    assert sq == pytest.approx(expect, rel=1e-6)
    assert fasttrain._weights_sq(flat, layout.views(flat)) == pytest.approx(expect, rel=1e-5)


@pytest.mark.parametrize("threads", [1, 2])
def test_callback_gradients_match_generic_l2_term_included(monkeypatch, threads):
    _threads(monkeypatch, threads)
    seen = {True: [], False: []}
    for fast in (True, False):
        kw = dict(sizes=(12, 16, 8, 1), m=600, dtype="float64", batch_size=300, epochs=1)
        cb = [lambda info, fast=fast: seen[fast].append(info)]
        _fit(monkeypatch, fast, l2=0.7, callbacks=cb, **kw)
    assert len(seen[True]) == len(seen[False]) == 2
    for a, b in zip(seen[True], seen[False], strict=True):
        assert a.cost == pytest.approx(b.cost, rel=1e-12)
        for k in b.grads:
            assert _rel(a.grads[k], b.grads[k]) < 1e-12, k
            assert _rel(a.params[k], b.params[k]) < 1e-12, k


@pytest.mark.filterwarnings("ignore::RuntimeWarning")  # the overflow is the point
def test_divergence_with_row_shards_stops_every_thread(monkeypatch):
    import threading

    _threads(monkeypatch, 2)
    kw = dict(sizes=(12, 8, 1), output="linear", dtype="float64", m=1000, batch_size=256)
    kw.update(epochs=5, learning_rate=50.0, on_divergence="stop")
    before = threading.active_count()
    pf, hf, used = _fit(monkeypatch, True, **kw)
    assert all(used) and threading.active_count() == before  # the worker has exited
    pg, hg, _ = _fit(monkeypatch, False, **kw)
    assert hf.stopped == hg.stopped and hf.stopped.startswith("diverged at epoch 2")
    for k in pg:
        assert _rel(pf[k], pg[k]) < 1e-9, k


def test_schedule_and_l2_with_row_shards_match_generic(monkeypatch):
    # the decay vector 1 - alpha lambda / m changes with the schedule and on the last,
    # smaller batch (m = 1000 = 3 * 300 + 100)
    _threads(monkeypatch, 2)
    opt = optimizers.gd(optimizers.inverse_time_decay(0.3, 0.5))
    kw = dict(sizes=(12, 32, 16, 1), m=1000, dtype="float64", batch_size=300, epochs=3)
    pf, hf, used = _fit(monkeypatch, True, optimizer=opt, l2=0.3, **kw)
    pg, hg, _ = _fit(monkeypatch, False, optimizer=opt, l2=0.3, **kw)
    assert all(used)
    for k in pg:
        assert _rel(pf[k], pg[k]) < 1e-12, k
    np.testing.assert_allclose(hf.iteration_cost, hg.iteration_cost, rtol=1e-12)


def test_resume_mid_epoch_with_start_and_hook():
    from deepgrad._progress import progress_bar
    from deepgrad.training import History, _Run

    rng = np.random.default_rng(0)
    X = rng.standard_normal((100, 5)).astype(np.float32)
    Y = (X[:, :1] > 0).astype(np.float32)
    net = dg.Network([5, 7, 1], seed=0)
    opt = optimizers.gd(0.1)
    run = _Run(X, Y, net.spec, opt, 16, 0.01, None, 1.0, 3, True, "float32", np, False)
    saved = {}

    def hook(epoch, done, params, state):
        saved[done] = (params, state)

    full = History(16, 3)
    bar = progress_bar(1, False)
    p_full, s_full, ok = fasttrain.run_epoch(
        run, net.params, opt.init(net.params), 0, full, bar, (), 0.0, hook=hook
    )
    assert ok and sorted(saved) == list(range(1, 8)) and saved[7][1].count == 7
    part = History(16, 3)
    for k in ("iteration_cost", "iteration_time", "iteration_examples"):
        setattr(part, k, list(getattr(full, k)[:3]))
    p_res, s_res, ok = fasttrain.run_epoch(run, *saved[3], 0, part, bar, (), 0.0, start=3)
    assert ok and s_res.count == s_full.count == 7
    for k in p_full:
        np.testing.assert_array_equal(p_res[k], p_full[k])
    assert part.epoch_cost == full.epoch_cost and part.iteration_cost == full.iteration_cost


@pytest.mark.parametrize("bad_row", [10, 390])  # in the first shard, in the second
def test_an_error_in_one_shard_is_raised_not_deadlocked(monkeypatch, tmp_path, bad_row):
    _threads(monkeypatch, 2)
    X = np.random.default_rng(0).standard_normal((400, 3)).astype(np.float32)
    X[bad_row, 1] = np.nan
    np.save(tmp_path / "X.npy", X)
    Xm = np.load(tmp_path / "X.npy", mmap_mode="r")  # NaN is checked batch by batch
    y = (np.arange(400) % 2).astype(np.int64)
    net = dg.Network([3, 4, 1], seed=0)
    with pytest.raises(ValueError, match="NaN or inf in rows"):
        net.fit(Xm, y, batch_size=400, epochs=1, shuffle=False, progress=False)
