"""One loop, many engines: every engine gives the reference engine's numbers.

The matrix: optimizer x schedule x dropout x l2_normalization x data (in memory, or a
memory-mapped file with the block shuffle running) x engine, float64, 1e-12 relative,
with a last partial batch. Then resume mid-epoch, divergence, callbacks and checkpoints
(which must never change the numbers), engine choice, and the drift bugs of the loops
this replaced, as regression tests. MPI (P = 1, 2, 3) is in test_distributed.py.
"""

from __future__ import annotations

import itertools
import threading

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.core import dropout
from deepgrad.data import arrays as data
from deepgrad.optim import optimizers
from deepgrad.train import engines
from deepgrad.train.engines import compiled, shards

SIZES = [8, 16, 8, 1]
COMPILED = pytest.param(
    "compiled", marks=pytest.mark.skipif(not compiled.numba_available(), reason="no numba")
)
M, BATCH = 1200, 250  # 4 full batches and a partial one of 200


@pytest.fixture(autouse=True)
def _small_shards(monkeypatch):
    """Row shards (two threads) even for these small batches, and small shuffle blocks."""
    monkeypatch.setattr(shards, "MIN_SHARD_FLOPS", 0)
    monkeypatch.setattr(shards, "MIN_SHARD_ROWS", 16)
    monkeypatch.setattr(data, "BLOCK_BYTES", 8 * 4 * 10)  # blocks of 10 rows of 8 float32


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("engines") / "d"
    data.make_dataset(path, M, SIZES[0], seed=3)
    return path


def _data(dataset, memmap: bool):
    X, y = data.open_dataset(dataset)
    return (X, y) if memmap else (np.array(X), np.array(y))


def _optimizer(name, schedule):
    lr = {"gd": 0.2, "momentum": 0.2, "rmsprop": 0.01, "adam": 0.01}[name]
    if schedule:
        lr = optimizers.exponential_decay(lr, 0.5, 4)
    return optimizers.get(name, lr)


def _fit(X, y, engine, backend=None, epochs=2, output="sigmoid", **kw):
    backend = backend or ("torch" if engine == "torch" else "numpy")
    if backend == "torch":
        pytest.importorskip("torch")
    net = dg.Network(SIZES, seed=1, dtype="float64", backend=backend, output=output)
    kw = {"batch_size": BATCH, "seed": 7, "l2": 0.05, "progress": False, **kw}
    h = net.fit(X, y, epochs=epochs, engine=engine, **kw)
    return {k: tb_numpy(v) for k, v in net.params.items()}, h


def tb_numpy(v):
    return np.asarray(v.cpu().numpy() if hasattr(v, "cpu") else v, dtype=np.float64)


def _assert_close(a: dict, b: dict, tol=1e-12):
    for k in a:
        scale = np.max(np.abs(a[k])) or 1.0
        err = np.max(np.abs(a[k] - b[k])) / scale
        assert err <= tol, f"{k}: relative difference {err:.2e} > {tol:.0e}"


MATRIX = list(
    itertools.product(
        ["gd", "momentum", "rmsprop", "adam"], [False, True], [1.0, 0.8], ["batch", "dataset"]
    )
)


@pytest.mark.parametrize("memmap", [False, True], ids=["memory", "memmap"])
@pytest.mark.parametrize("opt,schedule,keep_prob,norm", MATRIX)
def test_every_engine_gives_the_reference_numbers(dataset, memmap, opt, schedule, keep_prob, norm):
    X, y = _data(dataset, memmap)
    kw = dict(keep_prob=keep_prob, l2_normalization=norm)
    ref, href = _fit(X, y, "reference", optimizer=_optimizer(opt, schedule), **kw)
    assert href.engine == "reference" and len(href.iteration_cost) == 10
    fast, hfast = _fit(X, y, "numpy-shards", optimizer=_optimizer(opt, schedule), **kw)
    assert hfast.engine == "numpy-shards"
    _assert_close(ref, fast)
    np.testing.assert_allclose(hfast.iteration_cost, href.iteration_cost, rtol=1e-12)
    if compiled.numba_available():
        comp, hcomp = _fit(X, y, "compiled", optimizer=_optimizer(opt, schedule), **kw)
        assert hcomp.engine == "compiled"
        _assert_close(ref, comp)
        np.testing.assert_allclose(hcomp.iteration_cost, href.iteration_cost, rtol=1e-12)
    pytest.importorskip("torch")
    for engine in ("torch", "reference"):  # on torch CPU tensors (memory maps stay on the host)
        if engine == "reference" and (opt not in ("gd", "adam") or memmap):
            continue
        tt, ht = _fit(X, y, engine, "torch", optimizer=_optimizer(opt, schedule), **kw)
        assert ht.engine == engine
        np.testing.assert_allclose(ht.iteration_cost, href.iteration_cost, rtol=1e-12)
        _assert_close(ref, tt)


def test_the_fastest_capable_engine_is_chosen_and_named(dataset):
    X, y = _data(dataset, False)
    _, h = _fit(X, y, None, optimizer="adam", learning_rate=0.01, keep_prob=0.8)
    assert h.engine == "numpy-shards"
    one = optimizers.chain("mine", 0.1, optimizers.scale_by_momentum(0.5))
    p1, h = _fit(X, y, None, optimizer=one)
    assert h.engine == "numpy-shards"  # one built-in transformation: its flat form runs
    p2, _ = _fit(X, y, None, optimizer=optimizers.momentum(0.1, 0.5))
    assert all(np.array_equal(p1[k], p2[k]) for k in p1)
    custom = optimizers.chain(
        "mine", 0.1, optimizers.scale_by_rms(0.9), optimizers.scale_by_momentum(0.5)
    )
    _, h = _fit(X, y, None, optimizer=custom)
    assert h.engine == "reference"  # a chain of two has no flat form
    with pytest.raises(ValueError, match="engine 'numpy-shards' cannot run this fit: it runs"):
        _fit(X, y, "numpy-shards", optimizer=custom)
    with pytest.raises(ValueError, match=r"engine must be one of \['compiled', 'numpy-shards', "):
        _fit(X, y, "warp-drive")


@pytest.mark.parametrize("engine", ["numpy-shards", "torch", "reference", COMPILED])
def test_callbacks_and_checkpoints_never_change_the_numbers(dataset, tmp_path, engine):
    X, y = _data(dataset, True)
    kw = dict(optimizer="adam", learning_rate=0.01, keep_prob=0.8)
    plain, h0 = _fit(X, y, engine, **kw)
    seen = []
    with_cb, h1 = _fit(X, y, engine, callbacks=[lambda info: seen.append(info.cost)], **kw)
    path = tmp_path / f"{engine}.ckpt"
    with_ck, h2 = _fit(X, y, engine, checkpoint=path, checkpoint_every=3, **kw)
    assert h0.engine == h1.engine == h2.engine == engine
    for other, h in ((with_cb, h1), (with_ck, h2)):
        for k in plain:
            np.testing.assert_array_equal(plain[k], other[k])
        assert h.iteration_cost == h0.iteration_cost
    assert seen == h0.iteration_cost


@pytest.mark.parametrize("engine", ["numpy-shards", "torch", "reference", COMPILED])
@pytest.mark.parametrize("stop_at", [2, 7])  # mid-epoch 1, mid-epoch 2
def test_resume_mid_epoch_gives_the_uninterrupted_numbers(dataset, tmp_path, engine, stop_at):
    X, y = _data(dataset, True)
    kw = dict(optimizer="momentum", learning_rate=0.1, keep_prob=0.8, epochs=3)
    ref, href = _fit(X, y, "reference", **kw)

    def interrupt(info):
        if info.iteration == stop_at:
            raise KeyboardInterrupt

    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        _fit(X, y, engine, checkpoint=path, callbacks=[interrupt], **kw)
    resumed, h = _fit(X, y, engine, checkpoint=path, **kw)
    _assert_close(ref, resumed)
    np.testing.assert_allclose(h.iteration_cost, href.iteration_cost, rtol=1e-12)
    np.testing.assert_allclose(h.epoch_cost, href.epoch_cost, rtol=1e-12)


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("engine", ["numpy-shards", "torch", "reference", COMPILED])
def test_divergence_keeps_the_last_finite_parameters_and_history(dataset, engine):
    X, y = _data(dataset, False)
    y = X[:, 0] * 3.0  # a regression that a step of 50 blows up within an epoch
    kw = dict(optimizer="gd", learning_rate=50.0, on_divergence="stop", epochs=3, batch_size=16)
    kw["output"] = "linear"
    seen = []
    params, h = _fit(X, y, engine, callbacks=[lambda i: seen.append(i.params)], **kw)
    assert h.stopped.startswith(f"diverged at epoch 1, iteration {len(h.iteration_cost) + 1}:")
    assert "the last finite parameters (before this step) are kept" in h.stopped
    assert all(np.isfinite(v).all() for v in params.values())
    last = seen[-1] if seen else None
    if last is not None:  # the parameters after the last step the history holds
        for k in params:
            np.testing.assert_array_equal(params[k], last[k])
    ref, href = _fit(X, y, "reference", **kw)
    # the same step diverges (inf or nan at the overflow may differ by rounding)
    assert href.stopped.split(":")[0] == h.stopped.split(":")[0]
    assert href.iteration_cost == pytest.approx(h.iteration_cost, rel=1e-9)


def test_dropout_masks_are_a_pure_function_of_seed_epoch_and_step():
    full = dropout.step_masks(3, 1, 4, 37, [5, 7], 0.7, np.float64)
    again = dropout.step_masks(3, 1, 4, 37, [5, 7], 0.7, np.float64)
    other = dropout.step_masks(3, 1, 5, 37, [5, 7], 0.7, np.float64)
    for a, b, c in zip(full, again, other, strict=True):
        np.testing.assert_array_equal(a, b)
        assert not np.array_equal(a, c)
        assert set(np.unique(a)) <= {0.0, 1 / 0.7}
    for lo, hi in [(0, 1), (1, 20), (20, 37), (5, 6)]:  # any rows, alone, are the same
        part = dropout.step_masks(3, 1, 4, 37, [5, 7], 0.7, np.float64, part=(lo, hi))
        for a, p in zip(full, part, strict=True):
            np.testing.assert_array_equal(a[lo:hi], p)


def test_dropout_keep_rate_matches_keep_prob():
    for p in (0.5, 0.8, 0.95):
        masks = dropout.step_masks(0, 0, 0, 20_000, [50], p, np.float64)
        kept = (masks[0] > 0).mean()
        # binomial: 4 standard deviations of 1e6 draws, plus the 1/65536 resolution
        assert abs(kept - p) <= 4 * np.sqrt(p * (1 - p) / 1e6) + 2**-16


def test_shard_count_depends_on_the_shapes_only(monkeypatch):
    monkeypatch.undo()
    k = shards.n_shards(1000, [100, 256, 128, 64, 1])
    monkeypatch.setattr(shards, "_cores", lambda: 1)
    assert shards.n_shards(1000, [100, 256, 128, 64, 1]) == k == 2
    assert shards.n_shards(100, [100, 256, 128, 64, 1]) == 1  # under 2 x 64 rows


def test_one_core_runs_the_same_shards_in_one_thread(dataset, monkeypatch):
    X, y = _data(dataset, False)
    two, _ = _fit(X, y, "numpy-shards", optimizer="adam", learning_rate=0.01)
    monkeypatch.setattr(shards, "_cores", lambda: 1)
    one, _ = _fit(X, y, "numpy-shards", optimizer="adam", learning_rate=0.01)
    for k in two:
        np.testing.assert_array_equal(one[k], two[k])  # same shards, same sums: same bits


def test_shard_rows_cover_the_batch():
    for r, k in [(250, 2), (200, 2), (7, 2), (1, 2), (1000, 3)]:
        parts = shards.shard_rows(r, k)
        assert parts[0][0] == 0 and parts[-1][1] == r
        assert all(a[1] == b[0] for a, b in zip(parts, parts[1:], strict=False))


@pytest.mark.parametrize("bad_row", [10, 240])  # in the first shard, in the second
def test_an_error_in_one_shard_is_raised_not_deadlocked(tmp_path, bad_row):
    data.make_dataset(tmp_path / "d", 500, SIZES[0])
    X, y = data.open_dataset(tmp_path / "d")
    Xw = np.lib.format.open_memmap(tmp_path / "d" / "X.npy", mode="r+")
    Xw[bad_row, 0] = np.nan
    Xw.flush()
    X, y = data.open_dataset(tmp_path / "d")
    before = threading.active_count()
    with pytest.raises(ValueError, match="X contains NaN or inf in rows"):
        _fit(X, y, "numpy-shards", shuffle=False, batch_size=250)
    assert threading.active_count() == before  # every worker thread stopped


def test_concurrent_fits_keep_their_blas_limits():
    from deepgrad.train.engines import threads

    a, b = threads.blas_single_thread(), threads.blas_single_thread()
    a.release()
    assert threads.holders() == 1  # b still holds the limit
    b.release()
    b.release()  # twice is harmless
    assert threads.holders() == 0


def test_engines_name_themselves():
    assert engines.names() == ["compiled", "numpy-shards", "torch-graphs", "torch", "reference"]
    for cls in engines.ENGINES.values():
        assert cls.summary


def test_estimators_reach_the_fast_engine_with_the_same_numbers():
    from sklearn.datasets import load_breast_cancer
    from sklearn.preprocessing import StandardScaler

    from deepgrad.sklearn import DeepClassifier

    X, y = load_breast_cancer(return_X_y=True)
    X = StandardScaler().fit_transform(X)
    kw = dict(hidden_layer_sizes=(16,), epochs=3, optimizer="adam", learning_rate=0.01)
    fast = DeepClassifier(**kw, random_state=0).fit(X, y)
    # 64 rows x 496 weights a step: small enough for the compiled loops
    assert fast.engine_ == ("compiled" if compiled.numba_available() else "numpy-shards")
    steps = 3 * -(-len(X) // 64)  # batch "auto" = min(64, m), as Network.fit
    assert len(fast.iteration_loss_curve_) == steps
    # Adam's state went on from epoch to epoch: its step count is every step's
    assert fast.net_.training.opt_state.count == steps
    assert fast.score(X, y) > 0.95


def test_two_concurrent_fits_run_and_restore_the_blas_threads(dataset):
    from threadpoolctl import threadpool_info

    before = [i["num_threads"] for i in threadpool_info()]
    X, y = _data(dataset, False)
    results, errors = [], []

    def work():
        try:
            results.append(_fit(X, y, "numpy-shards", optimizer="adam", learning_rate=0.01)[0])
        except Exception as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(2)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert not errors
    for k in results[0]:
        np.testing.assert_array_equal(results[0][k], results[1][k])
    assert [i["num_threads"] for i in threadpool_info()] == before


# -- the one step and the one layout ------------------------------------------------------


@pytest.mark.parametrize("backend", ["numpy", "torch"])
def test_layout_packs_every_layer_as_one_w_b_block(backend):
    from deepgrad.core.layout import Layout

    net = dg.Network([3, 4, 2], seed=0, dtype="float64")
    params = net.params
    lay = Layout(net.layer_sizes)
    assert lay.shapes == [(4, 4), (2, 5)] and lay.size == 26 == net.n_params
    flat = lay.pack_into(np.empty(lay.size), params)
    if backend == "torch":
        torch = pytest.importorskip("torch")
        flat = torch.from_numpy(flat)
    blocks = lay.views(flat)
    # block l is [W | b], row-major: the bias is each row's last entry
    np.testing.assert_array_equal(tb_numpy(blocks[0][:, :-1]), params["W1"])
    np.testing.assert_array_equal(tb_numpy(flat[16:26]).reshape(2, 5)[:, 4], params["b2"])
    blocks[1][0, 0] = 7.0  # views, not copies
    assert float(flat[16]) == 7.0
    back = lay.unpack(flat)
    assert float(back["W2"][0, 0]) == 7.0
    flat[16] = 8.0  # unpack copies: what the caller got does not change
    assert float(back["W2"][0, 0]) == 7.0
    assert all(tb_numpy(v).flags.c_contiguous for v in back.values())
    if backend == "torch":
        assert all(v.is_contiguous() for v in back.values())
    mask = lay.weight_mask(flat * 0 + 5)
    assert float(mask.sum()) == 4 * 3 + 2 * 4  # weights only
    w = sum(float((v**2).sum()) for k, v in lay.unpack(flat).items() if k.startswith("W"))
    assert lay.weights_sq(flat) == pytest.approx(w, rel=1e-15)


@pytest.mark.parametrize("engine", ["numpy-shards", "torch"])
def test_the_fast_engines_run_the_one_step(dataset, monkeypatch, engine):
    """Both fast engines call engines.step's forward and backward, once per shard and step."""
    from deepgrad.train.engines import step

    calls = {"forward": 0, "backward": 0}
    for name in calls:
        real = getattr(step, name)

        def counted(*args, _real=real, _name=name):
            calls[_name] += 1
            return _real(*args)

        monkeypatch.setattr(step, name, counted)
    X, y = _data(dataset, False)
    _, h = _fit(X, y, engine, epochs=1)
    assert h.engine == engine
    per_step = 2 if engine == "numpy-shards" else 1  # row shards (see _small_shards)
    assert calls == {"forward": 5 * per_step, "backward": 5 * per_step}


def test_torch_and_shards_engines_agree_on_the_cpu(dataset):
    """The same step on NumPy and on torch tensors: equal to the rounding of the products."""
    X, y = _data(dataset, False)
    for opt in ("adam", "momentum"):
        a, ha = _fit(X, y, "numpy-shards", optimizer=opt, learning_rate=0.01, keep_prob=0.8)
        b, hb = _fit(X, y, "torch", optimizer=opt, learning_rate=0.01, keep_prob=0.8)
        _assert_close(a, b)
        np.testing.assert_allclose(ha.iteration_cost, hb.iteration_cost, rtol=1e-12)
