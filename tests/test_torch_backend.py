"""The torch backend: same numbers as NumPy, gradients vs central differences, the fast
loop's eager step vs the generic loop, and bad input. Runs on torch CPU."""

from __future__ import annotations

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import deepgrad as dg  # noqa: E402
from deepgrad import torch_backend as tb  # noqa: E402
from deepgrad import torch_fast  # noqa: E402

T1_SMALL = [12, 16, 8, 4, 1]  # T1's shape, scaled down


def _data(m=300, n=12, seed=0, output="sigmoid", n_out=1):
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, n))
    s = X[:, 0] - 0.5 * X[:, 1] + 0.3 * X[:, 2] * X[:, 3]
    if output == "sigmoid":
        return X, (s > 0).astype(np.float64)
    if output == "softmax":
        return X, np.digitize(s, [-0.5, 0.5])
    return X, np.stack([s, X[:, 4]], axis=1)[:, :n_out]


def _nets(sizes, dtype="float64", **kw):
    a = dg.Network(sizes, seed=3, dtype=dtype, **kw)
    b = dg.Network(sizes, seed=3, dtype=dtype, backend="torch", device="cpu", **kw)
    return a, b


def _max_rel(a: dict, b: dict) -> float:
    """max over parameters of ||a - b|| / ||a|| (b may hold tensors)."""
    out = 0.0
    for k in a:
        x, y = np.asarray(a[k], dtype=np.float64), tb.to_numpy_any(b[k])
        out = max(out, float(np.linalg.norm(x - y) / max(np.linalg.norm(x), 1e-30)))
    return out


# -- same network, same numbers ------------------------------------------------------------
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_same_seed_gives_the_same_initial_parameters(dtype):
    a, b = _nets(T1_SMALL, dtype)
    assert b.backend == "torch" and str(b.device) == "cpu" and a.backend == "numpy"
    for k in a.params:
        assert b.params[k].dtype == getattr(torch, dtype)
        np.testing.assert_array_equal(a.params[k], b.params[k].numpy())


@pytest.mark.parametrize(
    "act,output,n_out",
    [
        ("relu", "sigmoid", 1),
        ("tanh", "softmax", 3),
        ("leaky_relu", "linear", 2),
        ("sigmoid", "sigmoid", 1),
        ("linear", "softmax", 3),
    ],
)
def test_forward_cost_and_gradients_match_numpy(act, output, n_out):
    X, Y = _data(output=output, n_out=n_out)
    a, b = _nets([12, 10, 7, n_out], hidden_activation=act, output=output)
    Ja, ga = a.cost_and_gradients(X, Y, l2=0.2)
    Jb, gb = b.cost_and_gradients(X, Y, l2=0.2)
    assert isinstance(Jb, float) and Jb == pytest.approx(Ja, rel=1e-13)
    assert all(isinstance(g, torch.Tensor) for g in gb.values())
    assert _max_rel(ga, gb) < 1e-12
    np.testing.assert_allclose(
        b.predict_proba(X).numpy(), a.predict_proba(X), rtol=1e-12, atol=1e-13
    )
    np.testing.assert_allclose(b.predict(X).numpy(), a.predict(X), rtol=1e-12, atol=1e-13)


def test_torch_gradients_agree_with_central_differences():
    X, Y = _data(m=40)
    net = dg.Network(
        [12, 6, 5, 1],
        hidden_activation="tanh",
        seed=1,
        dtype="float64",
        backend="torch",
        device="cpu",
    )
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    _, grads = net.cost_and_gradients(Xt, Yt, l2=0.5)
    eps, num, ana = 1e-6, [], []
    for k, p in net.params.items():
        flat = p.view(-1)
        for i in range(0, flat.numel(), 3):
            old = float(flat[i])
            flat[i] = old + eps
            plus = net.cost(Xt, Yt, l2=0.5)
            flat[i] = old - eps
            minus = net.cost(Xt, Yt, l2=0.5)
            flat[i] = old
            num.append((plus - minus) / (2 * eps))
            ana.append(float(grads[k].view(-1)[i]))
    num, ana = np.array(num), np.array(ana)
    rel = np.linalg.norm(num - ana) / (np.linalg.norm(num) + np.linalg.norm(ana))
    assert rel < 1e-7


# float32 uses tanh: with ReLU, a pre-activation within rounding (~1e-7) of the kink makes
# two correct float32 runs take different subgradients and part ways (see bench/gpu_train.py).
@pytest.mark.parametrize("dtype,act,tol", [("float64", "relu", 1e-10), ("float32", "tanh", 1e-4)])
def test_fifty_steps_on_the_same_batches_agree_with_numpy(dtype, act, tol):
    X, Y = _data(m=500)
    a, b = _nets(T1_SMALL, dtype, hidden_activation=act)
    kw = dict(batch_size=10, epochs=1, learning_rate=0.1, l2=0.01, seed=7)
    ha, hb = a.fit(X, Y, **kw), b.fit(X, Y, **kw)
    assert hb.iterations == ha.iterations == 50
    assert _max_rel(a.params, b.params) < tol
    np.testing.assert_allclose(hb.iteration_cost, ha.iteration_cost, rtol=tol)


def test_dropout_masks_are_the_same_on_both_backends():
    X, Y = _data(m=120)
    a, b = _nets(T1_SMALL)
    kw = dict(batch_size=30, epochs=2, learning_rate=0.1, keep_prob=0.8, seed=2)
    a.fit(X, Y, **kw)
    b.fit(X, Y, **kw)
    assert _max_rel(a.params, b.params) < 1e-12
    masks = b.draw_masks(5, 0.5, np.random.default_rng(0))
    assert masks[0].device.type == "cpu" and masks[0].shape == (5, 16)


def test_fit_and_predict_on_tensors_with_validation():
    X, Y = _data(m=800, seed=4)
    net = dg.Network([12, 32, 16, 1], seed=0, backend="torch", device="cpu")
    Xt, Yt = torch.from_numpy(X).float(), torch.from_numpy(Y)
    h = net.fit(
        Xt[:600],
        Yt[:600],
        batch_size=32,
        epochs=15,
        learning_rate=0.2,
        seed=0,
        validation_data=(Xt[600:], Yt[600:]),
    )
    assert h.epoch_cost[-1] < 0.6 * h.epoch_cost[0]
    assert h.val_accuracy[-1] > 0.85
    pred = net.predict(Xt[600:])
    assert isinstance(pred, torch.Tensor) and pred.shape == (200,)
    assert float((pred == Yt[600:]).double().mean()) == pytest.approx(h.val_accuracy[-1])
    assert net.predict_proba(X[:3]).shape == (3, 1)  # host arrays are copied to the device


def test_read_only_and_memory_mapped_inputs(tmp_path):
    X, Y = _data(m=120)
    X = X.astype(np.float32)
    X.setflags(write=False)
    a, b = _nets([12, 5, 1], "float32")
    kw = dict(batch_size=40, epochs=2, learning_rate=0.1, seed=0)
    a.fit(X, Y, **kw)
    b.fit(X, Y, **kw)
    np.save(tmp_path / "X.npy", X)
    mm = np.load(tmp_path / "X.npy", mmap_mode="r")
    _, c = _nets([12, 5, 1], "float32")
    c.fit(mm, Y, **kw)  # stays on the host, gathered per batch
    assert _max_rel(a.params, b.params) < 1e-6 and _max_rel(a.params, c.params) < 1e-6
    assert b.predict(X).shape == (120,)


def test_to_copy_save_load_roundtrip(tmp_path):
    a, b = _nets(T1_SMALL, "float32")
    c = b.copy()
    c.params["W1"][0, 0] += 1.0
    assert float(b.params["W1"][0, 0]) == float(a.params["W1"][0, 0])
    assert "backend='torch'" in repr(b)
    dg.save(b, tmp_path / "m.npz")
    loaded = dg.load(tmp_path / "m.npz")
    assert loaded.backend == "numpy"
    b.to("numpy")
    assert b.backend == "numpy" and b.device == "cpu"
    for k in a.params:
        np.testing.assert_array_equal(a.params[k], b.params[k])
        np.testing.assert_array_equal(a.params[k], loaded.params[k])
    assert a.to("torch", "cpu") is a and isinstance(a.params["b1"], torch.Tensor)


# -- the fast loop, eager on the CPU ---------------------------------------------------------
@pytest.mark.parametrize(
    "act,output,n_out,l2_normalization",
    [
        ("relu", "sigmoid", 1, "batch"),
        ("tanh", "softmax", 3, "dataset"),
        ("leaky_relu", "linear", 2, "batch"),
        ("sigmoid", "sigmoid", 1, "dataset"),
    ],
)
def test_fast_loop_matches_the_generic_loop(monkeypatch, act, output, n_out, l2_normalization):
    # 7 full batches of 30 and a tail of 17; 3 steps per unit: 2 main replays + a rest unit
    monkeypatch.setattr(torch_fast, "STEPS_PER_GRAPH", 3)
    X, Y = _data(m=227, output=output, n_out=n_out)
    sizes = [12, 9, 6, n_out]
    kw = dict(
        batch_size=30,
        epochs=3,
        learning_rate=0.05,
        l2=0.3,
        shuffle=False,
        l2_normalization=l2_normalization,
        seed=0,
    )
    _, gen = _nets(sizes, hidden_activation=act, output=output)
    _, fast = _nets(sizes, hidden_activation=act, output=output)
    hg = gen.fit(X, Y, fast_path=False, **kw)
    hf = fast.fit(X, Y, fast_path=True, **kw)
    assert hf.iterations == hg.iterations == 24
    np.testing.assert_allclose(hf.iteration_cost, hg.iteration_cost, rtol=1e-12)
    np.testing.assert_allclose(hf.epoch_cost, hg.epoch_cost, rtol=1e-12)
    assert hf.iteration_examples == hg.iteration_examples
    assert np.all(np.diff(hf.iteration_time) >= 0) and len(hf.epoch_time) == 3
    assert _max_rel(gen.params, fast.params) < 1e-10
    assert all(v.is_contiguous() for v in fast.params.values())


class _FakeStream:
    def __init__(self, *a, **k):
        pass

    def wait_stream(self, other):
        pass


class _FakeGraph:
    """Stands in for a captured CUDA graph: replay runs the unit's steps."""

    def __init__(self, unit):
        self.replay = unit.body


@pytest.mark.parametrize("features", [(), ("gather",)])
def test_graph_bookkeeping_with_a_stand_in_for_cuda_graphs(monkeypatch, features):
    # CPU cannot capture; check what is not CUDA: the warm-up's training is undone,
    # replays read the static index and loss buffers, main and rest units line up.
    import contextlib

    monkeypatch.setattr(torch_fast, "STEPS_PER_GRAPH", 4)
    monkeypatch.setattr(torch_fast, "DEFAULT_FEATURES", features)
    X, Y = _data(m=203)
    kw = dict(batch_size=20, epochs=2, learning_rate=0.1, l2=0.05, seed=5)
    _, ref = _nets([12, 9, 1])
    href = ref.fit(X, Y, fast_path="eager", **kw)
    captured = []
    monkeypatch.setattr(torch.cuda, "Stream", _FakeStream)
    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda d=None: _FakeStream())
    monkeypatch.setattr(torch.cuda, "synchronize", lambda d=None: None)
    monkeypatch.setattr(
        torch_fast, "_capture_one", lambda t, u, s: captured.append(u.steps) or _FakeGraph(u)
    )
    monkeypatch.setattr(torch_fast, "choose", lambda *a: "graphs")
    _, net = _nets([12, 9, 1])
    h = net.fit(X, Y, fast_path=True, **kw)
    assert captured == [4, 3]  # 10 full batches = 2 x 4 + (2 full + the tail of 3)
    assert h.iteration_cost == href.iteration_cost
    for k in ref.params:
        assert torch.equal(ref.params[k], net.params[k])


def test_fast_loop_float32_agrees_with_numpy_without_shuffling():
    X, Y = _data(m=500)
    a, b = _nets(T1_SMALL, "float32", hidden_activation="tanh")
    kw = dict(batch_size=10, epochs=1, learning_rate=0.1, l2=0.01, shuffle=False, seed=0)
    a.fit(X, Y, **kw)
    b.fit(X, Y, fast_path="eager", **kw)
    assert _max_rel(a.params, b.params) < 1e-4


def test_fast_loop_shuffles_by_seed_and_epoch_and_trains():
    out = torch.empty(1000, dtype=torch.int64)
    gen = torch.Generator()
    torch_fast.epoch_order(1000, 5, 0, out, gen)
    first = out.clone()
    assert torch.equal(torch.sort(first).values, torch.arange(1000))
    torch_fast.epoch_order(1000, 5, 0, out, gen)
    assert torch.equal(out, first)
    torch_fast.epoch_order(1000, 5, 1, out, gen)
    assert not torch.equal(out, first)
    X, Y = _data(m=600, seed=1)
    runs = []
    for _ in range(2):
        net = dg.Network([12, 32, 16, 1], seed=0, backend="torch", device="cpu")
        runs.append(
            net.fit(X, Y, batch_size=50, epochs=12, learning_rate=0.3, seed=4, fast_path=True)
        )
    assert runs[0].iteration_cost == runs[1].iteration_cost  # reproducible
    assert runs[0].epoch_cost[-1] < 0.6 * runs[0].epoch_cost[0]


@pytest.mark.filterwarnings("ignore::deepgrad.UnscaledFeaturesWarning")  # huge X on purpose
def test_fast_loop_divergence_restores_the_epoch_start():
    X, Y = _data(m=200)
    X[:, 0] *= 1e6
    net = dg.Network(
        [12, 8, 1],
        seed=0,
        dtype="float64",
        backend="torch",
        device="cpu",
        hidden_activation="linear",
        output="linear",
    )
    Yl = np.stack([Y], axis=1) * 1e6
    with pytest.raises(dg.DivergenceError, match="restored to the start"):
        net.fit(X, Yl, batch_size=20, epochs=5, learning_rate=1.0, fast_path=True, seed=0)
    start = dg.Network(
        [12, 8, 1], seed=0, dtype="float64", hidden_activation="linear", output="linear"
    )
    for k in start.params:  # diverged in epoch 1: back to the initial parameters
        np.testing.assert_array_equal(start.params[k], net.params[k].numpy())
    h = net.fit(
        X,
        Yl,
        batch_size=20,
        epochs=5,
        learning_rate=1.0,
        fast_path=True,
        seed=0,
        on_divergence="stop",
    )
    assert h.stopped and "diverged at epoch 1" in h.stopped and h.epoch_cost == []


def test_fast_path_is_off_by_default_on_cpu(monkeypatch):
    called = []
    monkeypatch.setattr(torch_fast, "fit", lambda *a, **k: called.append(1))
    X, Y = _data(m=50)
    _, b = _nets([12, 4, 1])
    b.fit(X, Y, batch_size=10, epochs=1, seed=0)
    assert called == []
    b.fit(X, Y, batch_size=10, epochs=1, seed=0, fast_path="eager")
    assert called == [1]


# -- bad input --------------------------------------------------------------------------------
def test_unknown_backend_and_bad_devices():
    with pytest.raises(ValueError, match=r"backend must be one of \['numpy', 'torch'\], got 'jax'"):
        dg.Network([2, 1], backend="jax")
    with pytest.raises(ValueError, match="device must be None or 'cpu' for backend='numpy'"):
        dg.Network([2, 1], device="cuda")
    with pytest.raises(ValueError, match="device must be 'cpu', 'cuda'"):
        dg.Network([2, 1], backend="torch", device="tpu")
    with pytest.raises(TypeError, match="device must be a string"):
        dg.Network([2, 1], backend="torch", device=3.5)
    with pytest.raises(ValueError, match="backend must be one of"):
        dg.Network([2, 1]).to("cupy")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without a GPU")
def test_cuda_without_a_gpu_is_a_clear_error():
    with pytest.raises(ValueError, match=r"device='cuda' needs a CUDA GPU.*use device='cpu'"):
        dg.Network([2, 1], backend="torch", device="cuda")
    with pytest.raises(ValueError, match="needs a CUDA GPU"):
        dg.Network([2, 1]).to("torch", "cuda:0")


def test_mixing_numpy_arrays_and_tensors_is_a_clear_error():
    X, Y = _data(m=20)
    a, b = _nets([12, 3, 1])
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(Y)
    with pytest.raises(TypeError, match="mixing NumPy arrays and torch tensors: Y is a ndarray"):
        b.fit(Xt, Y, epochs=1)
    with pytest.raises(TypeError, match="mixing NumPy arrays and torch tensors"):
        b.cost(X, Yt)
    with pytest.raises(TypeError, match=r"network's parameters are NumPy arrays.*net.to\('torch'"):
        a.predict(Xt)
    with pytest.raises(TypeError, match="network's parameters are NumPy"):
        a.fit(Xt, Yt, epochs=1)
    with pytest.raises(TypeError, match="validation X is a torch tensor on meta but the network"):
        b.fit(X, Y, epochs=1, validation_data=(torch.empty((5, 12), device="meta"), Y[:5]))
    with pytest.raises(TypeError, match="X is a torch tensor on meta but the network is on cpu"):
        b.predict(torch.empty((5, 12), device="meta"))


def test_fast_path_arguments_are_checked():
    X, Y = _data(m=64)
    a, b = _nets([12, 3, 1])
    with pytest.raises(
        ValueError, match=r"fast_path must be one of \[None, True, False, 'eager'\]"
    ):
        b.fit(X, Y, epochs=1, fast_path="graphs")
    with pytest.raises(ValueError, match="fast_path=True needs keep_prob=1"):
        b.fit(X, Y, epochs=1, fast_path=True, keep_prob=0.5)
    with pytest.raises(ValueError, match="fast_path=True needs optimizer='gd' with a constant"):
        b.fit(X, Y, epochs=1, fast_path=True, learning_rate=lambda t: 0.1)
    with pytest.raises(ValueError, match="fast_path needs backend='torch'"):
        a.fit(X, Y, epochs=1, fast_path=True)


def test_missing_torch_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ValueError, match=r"needs PyTorch.*pip install torch==2.13.0") as info:
        dg.Network([2, 1], backend="torch")
    assert isinstance(info.value, ImportError)
    dg.Network([2, 1])  # the NumPy backend never imports torch


# -- the fast loop's optional features (torch_fast.FEATURES) ----------------------------------
@pytest.mark.parametrize(
    "features", [("gather",), ("gather", "triton", "streams"), ("triton",), ("streams",)]
)
@pytest.mark.parametrize("act,output,n_out", [("relu", "sigmoid", 1), ("tanh", "softmax", 3)])
def test_fast_loop_features_give_the_same_numbers(monkeypatch, features, act, output, n_out):
    # on the CPU only "gather" applies ("triton", "streams" need CUDA): bitwise the same as
    # the default fast loop, and the generic loop's numbers to 1e-10; shuffled, with a tail
    monkeypatch.setattr(torch_fast, "STEPS_PER_GRAPH", 3)
    X, Y = _data(m=227, output=output, n_out=n_out)
    sizes = [12, 9, 6, n_out]
    kw = dict(batch_size=30, epochs=2, learning_rate=0.05, l2=0.3, seed=0)
    _, gen = _nets(sizes, hidden_activation=act, output=output)
    _, base = _nets(sizes, hidden_activation=act, output=output)
    _, var = _nets(sizes, hidden_activation=act, output=output)
    gen.fit(X, Y, fast_path=False, shuffle=False, **kw)
    hb = base.fit(X, Y, fast_path=True, **kw)
    monkeypatch.setattr(torch_fast, "DEFAULT_FEATURES", features)
    hv = var.fit(X, Y, fast_path=True, **kw)
    assert hv.iteration_cost == hb.iteration_cost
    for k in base.params:
        assert torch.equal(base.params[k], var.params[k])
    _, var2 = _nets(sizes, hidden_activation=act, output=output)
    var2.fit(X, Y, fast_path=True, shuffle=False, **kw)
    assert _max_rel(gen.params, var2.params) < 1e-10


def test_streams_step_with_stand_in_streams_is_the_plain_step(monkeypatch):
    # the multi-stream step's ordering needs CUDA; its arithmetic is checked here with
    # streams that run everything in order
    import contextlib

    monkeypatch.setattr(torch.cuda, "stream", lambda s: contextlib.nullcontext())
    monkeypatch.setattr(torch.cuda, "current_stream", lambda d=None: _FakeStream())
    rng = np.random.default_rng(1)
    for hidden, output, n_out in (("relu", "sigmoid", 1), ("tanh", "softmax", 3)):
        net = dg.Network(
            [12, 9, 6, n_out], hidden_activation=hidden, output=output, seed=2, dtype="float64"
        )
        X = torch.from_numpy(rng.normal(size=(40, 12)))
        Y = torch.from_numpy(rng.random(size=(40, n_out)))
        c = torch_fast.make_consts(40, n_out, 0.1, 0.2, None, torch.float64, "cpu")
        out = []
        for opt in (None, torch_fast.Options(streams=(_FakeStream(), _FakeStream()))):
            P = torch_fast.FlatParams.from_dict(
                {k: torch.from_numpy(v) for k, v in net.params.items()}, 3
            )
            parts = torch.zeros(3, dtype=torch.float64)
            for _ in range(3):
                torch_fast.step(P, X, Y, parts, c, hidden, output, opt)
            out.append((P.wflat, P.bflat, parts))
        for a, b in zip(*out, strict=True):
            assert torch.equal(a, b)


def test_unknown_feature_is_rejected(monkeypatch):
    X, Y = _data(m=50)
    _, b = _nets([12, 4, 1])
    monkeypatch.setattr(torch_fast, "DEFAULT_FEATURES", ("gather", "fusion"))
    with pytest.raises(ValueError, match=r"features must be among .*got \['fusion'\]"):
        b.fit(X, Y, batch_size=10, epochs=1, fast_path=True)


def test_triton_output_kernel_in_the_interpreter(monkeypatch):
    # runs only where Triton is installed (the GPU image); its interpreter runs on the CPU
    monkeypatch.setenv("TRITON_INTERPRET", "1")
    pytest.importorskip("triton")
    monkeypatch.setattr(torch_fast, "_TRITON_CACHE", {})
    kernel = torch_fast._triton_bce()
    gen = torch.Generator().manual_seed(0)
    for m in (7, 1000):
        Z = torch.randn(m, 1, generator=gen) * 5
        Z[0, 0], Z[1, 0] = 80.0, -80.0
        Y = (torch.rand(m, 1, generator=gen) > 0.5).float()
        c = torch_fast.make_consts(m, 1, 0.1, 0.0, None, torch.float32, "cpu")
        p1, p2 = torch.full((3,), 7.0), torch.zeros(3)
        dZ = torch_fast._output_grad_fused(kernel, Z, Y, p1, c)
        ref = torch_fast._output_grad("sigmoid", Z, Y, p2, c)
        assert torch.allclose(dZ, ref, atol=1e-6)
        assert abs(float(p1[0] - p1[1]) - float(p2[0] - p2[1])) < 1e-4 * float(p2[0])
        assert float(p1[2]) == 7.0  # ||W||^2's slot untouched
