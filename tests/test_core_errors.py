"""Bad input to the core API: ValueError/TypeError naming the argument and the value."""

import numpy as np
import pytest

import deepgrad as dg


@pytest.fixture
def net():
    return dg.Network([4, 5, 1], seed=0)


@pytest.fixture
def xy(rng):
    return rng.standard_normal((10, 4)), rng.integers(0, 2, 10)


@pytest.mark.parametrize(
    "kwargs,exc,pattern",
    [
        ({"layer_sizes": [4]}, ValueError, "layer_sizes needs at least 2"),
        ({"layer_sizes": "4,5"}, TypeError, "layer_sizes must be a list"),
        ({"layer_sizes": [4, 0, 1]}, ValueError, r"layer_sizes\[1\] must be an int >= 1, got 0"),
        ({"layer_sizes": [4, 2.5, 1]}, TypeError, r"layer_sizes\[1\] must be an int"),
        ({"hidden_activation": "swish"}, ValueError, "hidden_activation must be one of"),
        ({"output": "tanh"}, ValueError, "output must be one of"),
        ({"init": "kaiming"}, ValueError, "init must be one of"),
        ({"dtype": "float16"}, ValueError, "dtype must be one of"),
        ({"output": "softmax", "layer_sizes": [4, 1]}, ValueError, "softmax output needs >= 2"),
        ({"seed": -1}, ValueError, "seed must be an int >= 0"),
    ],
)
def test_network_arguments(kwargs, exc, pattern):
    args = {"layer_sizes": [4, 5, 1], **kwargs}
    with pytest.raises(exc, match=pattern):
        dg.Network(**args)


def test_data_errors(net, xy):
    X, y = xy
    with pytest.raises(ValueError, match="Y has 9 rows but X has 10"):
        net.cost(X, y[:9])
    with pytest.raises(ValueError, match="X has 3 columns but the network's first layer expects 4"):
        net.cost(X[:, :3], y)
    Xn = X.copy()
    Xn[2, 1] = np.nan
    with pytest.raises(ValueError, match="X contains NaN or inf"):
        net.fit(Xn, y)
    with pytest.raises(ValueError, match="Y contains NaN or inf"):
        net.cost(X, np.where(y == 1, np.inf, 0.0))
    with pytest.raises(ValueError, match="Y must hold 0/1 labels for a sigmoid output, got .*2"):
        net.cost(X, y + 1)
    with pytest.raises(ValueError, match="X is empty"):
        net.fit(X[:0], y[:0])
    with pytest.raises(ValueError, match="X must be 2-D"):
        net.predict(X[0])
    with pytest.raises(TypeError, match="X must hold real numbers.*complex"):
        net.predict(X.astype(complex))
    with pytest.raises(TypeError, match="X must hold real numbers"):
        net.predict(np.array([["a", "b", "c", "d"]]))


def test_softmax_label_out_of_range(rng):
    net = dg.Network([4, 5, 10], output="softmax", seed=0)
    with pytest.raises(ValueError, match=r"integer class labels in \[0, 9\].*10"):
        net.cost(rng.standard_normal((3, 4)), np.array([1, 10, 3]))


@pytest.mark.parametrize(
    "kwargs,exc,pattern",
    [
        ({"batch_size": 0}, ValueError, "batch_size must be an int >= 1, got 0"),
        ({"batch_size": -5}, ValueError, "batch_size must be an int >= 1"),
        ({"batch_size": 2.5}, TypeError, "batch_size must be an int"),
        ({"batch_size": 11}, ValueError, r"batch_size must be <= the number of examples \(10\)"),
        ({"learning_rate": 0.0}, ValueError, "learning_rate must be a finite number > 0"),
        ({"learning_rate": -0.1}, ValueError, "learning_rate"),
        ({"learning_rate": float("inf")}, ValueError, "learning_rate"),
        ({"learning_rate": float("nan")}, ValueError, "learning_rate"),
        ({"learning_rate": "fast"}, TypeError, "learning_rate must be a real number"),
        ({"l2": -0.1}, ValueError, "l2 must be a finite number >= 0"),
        ({"epochs": 0}, ValueError, "epochs must be an int >= 1, got 0"),
        ({"keep_prob": 0.0}, ValueError, r"keep_prob must be a finite number in \(0, 1\]"),
        ({"keep_prob": 1.5}, ValueError, "keep_prob"),
        ({"optimizer": "lbfgs"}, ValueError, "optimizer must be one of"),
        ({"l2_normalization": "epoch"}, ValueError, "l2_normalization must be one of"),
        ({"on_divergence": "ignore"}, ValueError, "on_divergence must be"),
    ],
)
def test_fit_arguments(net, xy, kwargs, exc, pattern):
    X, y = xy
    before = {k: v.copy() for k, v in net.params.items()}
    with pytest.raises(exc, match=pattern):
        net.fit(X, y, **kwargs)
    assert all(np.array_equal(before[k], net.params[k]) for k in before)  # untouched


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        dg.load(tmp_path / "missing.npz")
    bad = tmp_path / "bad.npz"
    bad.write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="not a readable deepgrad model"):
        dg.load(bad)


def test_save_load_roundtrip_and_truncation(tmp_path, rng):
    net = dg.Network([4, 6, 3], "tanh", "softmax", seed=2, dtype="float64")
    path = tmp_path / "m.npz"
    dg.save(net, path)
    back = dg.load(path)
    assert back.spec == net.spec and back.dtype == "float64"
    X = rng.standard_normal((5, 4))
    np.testing.assert_array_equal(back.predict_proba(X), net.predict_proba(X))
    assert [p.name for p in tmp_path.iterdir()] == ["m.npz"]  # no temp files left
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="truncated, corrupted"):
        dg.load(path)
