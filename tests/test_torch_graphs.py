"""The CUDA-graph engine (torch-graphs) gives the reference engine's numbers.

Everything but the capture runs on torch CPU (``REQUIRE_CUDA`` off: the units' steps are
plain calls): the static buffers, the staged rows, X rows, masks and per-step scalars,
units of 16 steps, the redo of a unit that diverged, resume mid-epoch. The GPU tests at
the end (skipped without CUDA) run the captured graphs against the reference on the CPU.
"""

from __future__ import annotations

import itertools

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.data import arrays as data
from deepgrad.optim import optimizers
from deepgrad.train.engines import torch_graphs as tg
from deepgrad.train.types import Step

torch = pytest.importorskip("torch")

SIZES = [8, 16, 8, 1]
M, BATCH = 1200, 50  # 24 steps an epoch: one unit of 16 and one of 8
CUDA = torch.cuda.is_available()


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    path = tmp_path_factory.mktemp("graphs") / "d"
    data.make_dataset(path, M, SIZES[0], seed=3)
    return path


@pytest.fixture
def on_cpu(monkeypatch):
    monkeypatch.setattr(tg, "REQUIRE_CUDA", False)


def _data(dataset, memmap: bool):
    X, y = data.open_dataset(dataset)
    return (X, y) if memmap else (np.array(X), np.array(y))


def _optimizer(name, schedule):
    lr = {"gd": 0.2, "momentum": 0.2, "rmsprop": 0.01, "adam": 0.01}[name]
    if schedule:
        lr = optimizers.exponential_decay(lr, 0.5, 4)
    return optimizers.get(name, lr)


def _fit(X, y, engine, device="cpu", dtype="float64", sizes=SIZES, epochs=2, **kw):
    backend = "numpy" if engine == "reference" and device == "cpu" else "torch"
    extra = {"device": device} if backend == "torch" else {}
    output = kw.pop("output", "sigmoid")
    hidden = kw.pop("hidden_activation", "relu")
    net = dg.Network(sizes, seed=1, dtype=dtype, backend=backend, output=output,
                     hidden_activation=hidden, **extra)  # fmt: skip
    kw = {"batch_size": BATCH, "seed": 7, "l2": 0.05, "progress": False, **kw}
    h = net.fit(X, y, epochs=epochs, engine=engine, **kw)
    return {k: _numpy(v) for k, v in net.params.items()}, h


def _numpy(v):
    return np.asarray(v.cpu().numpy() if hasattr(v, "cpu") else v, dtype=np.float64)


def _assert_close(a: dict, b: dict, tol=1e-12):
    for k in a:
        scale = np.max(np.abs(a[k])) or 1.0
        err = np.max(np.abs(a[k] - b[k])) / scale
        assert err <= tol, f"{k}: relative difference {err:.2e} > {tol:.0e}"


def test_without_cuda_it_is_never_chosen_and_says_why(dataset):
    X, y = _data(dataset, False)
    _, h = _fit(X, y, None, optimizer="adam", learning_rate=0.01)
    assert h.engine == "torch"  # the fastest engine that runs torch CPU tensors
    with pytest.raises(ValueError, match=r"'torch-graphs' cannot run this fit: it needs "
                       r"parameters on a CUDA device \(they are on cpu\)"):  # fmt: skip
        _fit(X, y, "torch-graphs", optimizer="adam", learning_rate=0.01)
    with pytest.raises(ValueError, match="'torch-graphs' cannot run this fit: it needs torch"):
        net = dg.Network(SIZES, seed=1)
        net.fit(X, y, engine="torch-graphs", progress=False)


def test_chunks_are_runs_of_equal_batches_in_order():
    sizes = [5] * 7 + [3] + [5] * 2
    steps = [Step(0, i, np.arange(s)) for i, s in enumerate(sizes)]
    runs = list(tg.chunks(steps, 3))
    assert [[s.index for s in run] for run in runs] == [[0, 1, 2], [3, 4, 5], [6], [7], [8, 9]]
    assert list(tg.chunks([], 4)) == []
    with pytest.raises(ValueError, match="k .steps per unit. must be an int >= 1, got 0"):
        list(tg.chunks(steps, 0))


MATRIX = list(itertools.product(["gd", "momentum", "rmsprop", "adam"], [False, True], [1.0, 0.8]))


@pytest.mark.parametrize("memmap", [False, True], ids=["on-device", "host-memmap"])
@pytest.mark.parametrize("opt,schedule,keep_prob", MATRIX)
def test_the_reference_numbers_on_torch_cpu(dataset, on_cpu, memmap, opt, schedule, keep_prob):
    X, y = _data(dataset, memmap)
    norm = "dataset" if schedule else "batch"  # both L2 normalizations across the matrix
    kw = dict(keep_prob=keep_prob, l2_normalization=norm, batch_size=70)  # a tail of 10
    ref, href = _fit(X, y, "reference", optimizer=_optimizer(opt, schedule), **kw)
    got, h = _fit(X, y, "torch-graphs", optimizer=_optimizer(opt, schedule), **kw)
    assert h.engine == "torch-graphs" and len(h.iteration_cost) == 2 * 18
    _assert_close(ref, got)
    np.testing.assert_allclose(h.iteration_cost, href.iteration_cost, rtol=1e-12)
    np.testing.assert_allclose(h.epoch_cost, href.epoch_cost, rtol=1e-12)


@pytest.mark.parametrize(
    "hidden,output", [("tanh", "softmax"), ("sigmoid", "linear"), ("leaky_relu", "sigmoid")]
)
def test_every_activation_and_output(dataset, on_cpu, hidden, output):
    X, y = _data(dataset, False)
    if output == "softmax":
        y = (X[:, 0] > 0).astype(int) + (X[:, 1] > 0)
        sizes = [8, 16, 8, 3]
    else:
        sizes = SIZES
    kw = dict(optimizer="adam", learning_rate=0.01, keep_prob=0.8, sizes=sizes,
              hidden_activation=hidden, output=output)  # fmt: skip
    ref, href = _fit(X, y, "reference", **kw)
    got, h = _fit(X, y, "torch-graphs", **kw)
    _assert_close(ref, got)
    np.testing.assert_allclose(h.iteration_cost, href.iteration_cost, rtol=1e-12)


def test_float32_agrees_to_its_rounding(dataset, on_cpu):
    X, y = _data(dataset, False)
    kw = dict(optimizer="adam", learning_rate=0.01, keep_prob=0.8, dtype="float32")
    ref, href = _fit(X, y, "reference", **kw)
    got, h = _fit(X, y, "torch-graphs", **kw)
    _assert_close(ref, got, tol=1e-4)
    np.testing.assert_allclose(h.iteration_cost, href.iteration_cost, rtol=1e-4)


def test_units_hold_16_steps_unless_the_state_is_read_every_step(dataset, on_cpu, monkeypatch):
    X, y = _data(dataset, False)
    sizes = []
    real = tg.Unit.replay

    def counted(self):
        sizes.append(self.n)
        return real(self)

    monkeypatch.setattr(tg.Unit, "replay", counted)
    plain, h0 = _fit(X, y, "torch-graphs", optimizer="adam", learning_rate=0.01, keep_prob=0.8)
    assert sizes == [16, 8, 16, 8]
    sizes.clear()
    seen = []
    cb, h1 = _fit(X, y, "torch-graphs", optimizer="adam", learning_rate=0.01, keep_prob=0.8,
                  callbacks=[lambda info: seen.append(info.cost)])  # fmt: skip
    assert sizes == [1] * 48 and seen == h1.iteration_cost
    for k in plain:  # the same numbers, bit for bit
        np.testing.assert_array_equal(plain[k], cb[k])
    assert h0.iteration_cost == h1.iteration_cost


@pytest.mark.filterwarnings("ignore::RuntimeWarning")
@pytest.mark.parametrize("with_callback", [False, True], ids=["units-of-16", "units-of-1"])
def test_divergence_keeps_the_last_finite_step(dataset, on_cpu, with_callback):
    X, y = _data(dataset, False)
    y = X[:, 0] * 3.0  # a regression that a step of 50 blows up within an epoch
    kw = dict(optimizer="gd", learning_rate=50.0, on_divergence="stop", epochs=3,
              batch_size=16, output="linear")  # fmt: skip
    seen = []
    if with_callback:
        kw["callbacks"] = [lambda info: seen.append(info.params)]
    params, h = _fit(X, y, "torch-graphs", **kw)
    kw.pop("callbacks", None)
    ref, href = _fit(X, y, "reference", **kw)
    assert h.stopped.split(":")[0] == href.stopped.split(":")[0]
    assert 1 < len(h.iteration_cost) < 75 and len(h.iteration_cost) % 16  # inside a unit
    assert h.iteration_cost == pytest.approx(href.iteration_cost, rel=1e-9)
    assert all(np.isfinite(v).all() for v in params.values())
    _assert_close(ref, params, tol=1e-9)
    if with_callback:
        for k in params:
            np.testing.assert_array_equal(params[k], _numpy(seen[-1][k]))


@pytest.mark.parametrize("stop_at", [5, 30])  # mid-epoch 1 (inside its first unit), epoch 2
def test_resume_mid_epoch_gives_the_uninterrupted_numbers(dataset, on_cpu, tmp_path, stop_at):
    X, y = _data(dataset, True)
    kw = dict(optimizer="adam", learning_rate=0.01, keep_prob=0.8, epochs=3)
    ref, href = _fit(X, y, "reference", **kw)

    def interrupt(info):
        if info.iteration == stop_at:
            raise KeyboardInterrupt

    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        _fit(X, y, "torch-graphs", checkpoint=path, callbacks=[interrupt], **kw)
    resumed, h = _fit(X, y, "torch-graphs", checkpoint=path, **kw)
    _assert_close(ref, resumed)
    np.testing.assert_allclose(h.iteration_cost, href.iteration_cost, rtol=1e-12)
    np.testing.assert_allclose(h.epoch_cost, href.epoch_cost, rtol=1e-12)


# --- on the GPU (skipped without CUDA): the captured graphs ---------------------------

gpu = pytest.mark.skipif(not CUDA, reason="needs CUDA")


@gpu
@pytest.mark.parametrize("memmap", [False, True], ids=["on-device", "memmap"])
@pytest.mark.parametrize("opt,schedule,keep_prob", MATRIX)
def test_cuda_graphs_give_the_reference_numbers(dataset, memmap, opt, schedule, keep_prob):
    X, y = _data(dataset, memmap)
    norm = "dataset" if schedule else "batch"
    kw = dict(keep_prob=keep_prob, l2_normalization=norm, batch_size=70)
    ref, href = _fit(X, y, "reference", optimizer=_optimizer(opt, schedule), **kw)
    got, h = _fit(X, y, None, "cuda", optimizer=_optimizer(opt, schedule), **kw)
    assert h.engine == "torch-graphs"  # chosen on CUDA
    _assert_close(ref, got)
    np.testing.assert_allclose(h.iteration_cost, href.iteration_cost, rtol=1e-12)


@gpu
def test_cuda_graphs_float32_and_resume(dataset, tmp_path):
    X, y = _data(dataset, False)
    # float32: rounding only; ReLU's kink can flip a unit where Z is ~0 (docs/gpu.md)
    kw = dict(optimizer="adam", learning_rate=0.01, keep_prob=0.8, dtype="float32")
    ref, _ = _fit(X, y, "reference", **kw)
    got, _ = _fit(X, y, "torch-graphs", "cuda", **kw)
    _assert_close(ref, got, tol=1e-3)
    kw = dict(optimizer="momentum", learning_rate=0.1, keep_prob=0.8, epochs=3)
    ref, _ = _fit(X, y, "reference", **kw)

    def interrupt(info):
        if info.iteration == 30:
            raise KeyboardInterrupt

    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        _fit(X, y, "torch-graphs", "cuda", checkpoint=path, callbacks=[interrupt], **kw)
    resumed, _ = _fit(X, y, "torch-graphs", "cuda", checkpoint=path, **kw)
    _assert_close(ref, resumed)


def test_a_bad_row_of_a_memory_map_is_named(tmp_path, on_cpu):
    data.make_dataset(tmp_path / "d", 500, SIZES[0])
    Xw = np.lib.format.open_memmap(tmp_path / "d" / "X.npy", mode="r+")
    Xw[240, 0] = np.nan
    Xw.flush()
    X, y = data.open_dataset(tmp_path / "d")
    with pytest.raises(ValueError, match=r"X contains NaN or inf in rows \[240\]"):
        _fit(X, y, "torch-graphs", shuffle=False, optimizer="gd", learning_rate=0.1)
