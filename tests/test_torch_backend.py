"""The torch backend: same numbers as NumPy, gradients vs central differences, the fast
loop's eager step vs the generic loop, and bad input. Runs on torch CPU."""

from __future__ import annotations

import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")

import deepgrad as dg  # noqa: E402
from deepgrad.core.backend import to_numpy  # noqa: E402

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
        x, y = np.asarray(a[k], dtype=np.float64), np.asarray(to_numpy(b[k]), dtype=np.float64)
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


def test_fast_path_is_gone():
    X, Y = _data(m=20)
    b = dg.Network([12, 4, 1], backend="torch", seed=0)
    with pytest.raises(TypeError, match="fast_path"):
        b.fit(X, Y, epochs=1, fast_path=True)


def test_missing_torch_says_how_to_install(monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # import torch now raises ImportError
    with pytest.raises(ValueError, match=r"needs PyTorch.*pip install torch==2.13.0") as info:
        dg.Network([2, 1], backend="torch")
    assert isinstance(info.value, ImportError)
    dg.Network([2, 1])  # the NumPy backend never imports torch
