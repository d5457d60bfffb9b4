"""Synthetic data sets on disk, memory-mapped training and its bad inputs."""

from __future__ import annotations

import json

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.cli.main import main
from deepgrad.data import arrays as data
from deepgrad.train import loop


def test_synthetic_is_deterministic_balanced_and_chunk_independent(monkeypatch):
    X, y = data.synthetic(5000, 7, seed=3)
    X2, y2 = data.synthetic(5000, 7, seed=3)
    np.testing.assert_array_equal(X, X2)
    np.testing.assert_array_equal(y, y2)
    assert X.dtype == np.float32 and y.dtype == np.uint8 and set(np.unique(y)) == {0, 1}
    assert 0.45 < y.mean() < 0.55
    monkeypatch.setattr(data, "BLOCK_ROWS", 1000)  # other chunking, other sizes: same rows
    Xs, ys = data.synthetic(2500, 7, seed=3)
    assert not np.array_equal(Xs, X[:2500])  # blocks are the unit of determinism
    Xs2, _ = data.synthetic(1200, 7, seed=3)
    np.testing.assert_array_equal(Xs2, Xs[:1200])


def test_labels_are_learnable():
    X, y = data.synthetic(6000, 10, seed=0, noise=0.0)
    net = dg.Network([10, 32, 1], seed=0)
    net.fit(X[:5000], y[:5000], batch_size=64, epochs=10, learning_rate=0.1, seed=0, progress=False)
    assert np.mean(net.predict(X[5000:]) == y[5000:]) > 0.9


def test_make_dataset_matches_synthetic_and_is_atomic(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "BLOCK_ROWS", 700)
    out = data.make_dataset(tmp_path / "set", 2000, 5, seed=2)
    X, y = data.open_dataset(out)
    Xm, ym = data.synthetic(2000, 5, seed=2)
    np.testing.assert_array_equal(X, Xm)
    np.testing.assert_array_equal(y, ym)
    meta = json.loads((out / "meta.json").read_text())
    assert meta["examples"] == 2000 and 0.4 < meta["positive_fraction"] < 0.6
    with pytest.raises(FileExistsError, match="already exists"):
        data.make_dataset(out, 10, 5)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["set"]  # no temp dir left


def test_make_dataset_interrupted_leaves_nothing(tmp_path, monkeypatch):
    def boom(*a, **k):
        raise KeyboardInterrupt

    monkeypatch.setattr(data, "synthetic_block", boom)
    with pytest.raises(KeyboardInterrupt):
        data.make_dataset(tmp_path / "set", 100, 3)
    assert list(tmp_path.iterdir()) == []


def test_cli_make_data_then_train_from_disk(tmp_path, capsys):
    d = tmp_path / "d"
    assert main(["make-data", "--examples", "3000", "--features", "8", "--out", str(d)]) == 0
    assert "wrote" in capsys.readouterr().out
    assert (
        main(
            [
                "train",
                "--data",
                str(d),
                "--hidden",
                "16,8",
                "--epochs",
                "2",
                "--batch-size",
                "256",
                "--quiet",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    assert (tmp_path / "o" / "model.npz").is_file()
    rc = main(["make-data", "--examples", "10", "--features", "8", "--out", str(d)])
    assert rc == 2 and "already exists" in capsys.readouterr().err


def _write(tmp_path, X, y):
    tmp_path.mkdir(exist_ok=True)
    np.save(tmp_path / "X.npy", X)
    np.save(tmp_path / "y.npy", y)
    return tmp_path


@pytest.mark.parametrize(
    "case,match",
    [
        ("missing", "has no X.npy"),
        ("int X", "must be a 2-D float32 or float64"),
        ("1-D X", "must be a 2-D float32 or float64"),
        ("rows", "must hold 50 numeric labels"),
        ("truncated", "not a complete .npy file"),
    ],
)
def test_open_dataset_bad_input(tmp_path, case, match):
    X, y = np.zeros((50, 3), np.float32), np.zeros(50, np.uint8)
    if case == "missing":
        tmp_path.mkdir(exist_ok=True)
        np.save(tmp_path / "y.npy", y)
    elif case == "int X":
        _write(tmp_path, X.astype(np.int32), y)
    elif case == "1-D X":
        _write(tmp_path, X[:, 0], y)
    elif case == "rows":
        _write(tmp_path, X, y[:40])
    else:
        _write(tmp_path, X, y)
        raw = (tmp_path / "X.npy").read_bytes()
        (tmp_path / "X.npy").write_bytes(raw[:-100])
    with pytest.raises((ValueError, FileNotFoundError), match=match):
        data.open_dataset(tmp_path)
    rc = main(["train", "--data", str(tmp_path), "--quiet", "--out", str(tmp_path / "o")])
    assert rc == 2 and not (tmp_path / "o" / "model.npz").exists()


@pytest.mark.parametrize("engine", ["numpy-shards", "reference"])
def test_memmap_that_changes_size_is_caught_at_the_next_epoch(tmp_path, engine):
    data.make_dataset(tmp_path / "d", 1000, 4)
    X, y = data.open_dataset(tmp_path / "d")
    grown = []

    def grow(info):
        if not grown and info.iteration == 3:  # the last step of epoch 1
            with open(tmp_path / "d" / "X.npy", "ab") as f:
                f.write(b"\0" * 64)
            grown.append(True)

    net = dg.Network([4, 5, 1], seed=0)
    with pytest.raises(ValueError, match="changed size while training"):
        net.fit(
            X, y, batch_size=250, epochs=3, seed=0, progress=False, callbacks=[grow], engine=engine
        )


def test_batch_size_larger_than_the_data_set(tmp_path):
    data.make_dataset(tmp_path / "d", 100, 4)
    X, y = data.open_dataset(tmp_path / "d")
    with pytest.raises(ValueError, match="batch_size must be <= the number of examples"):
        dg.Network([4, 3, 1], seed=0).fit(X, y, batch_size=101, progress=False)


def test_page_release_keeps_the_numbers(tmp_path, monkeypatch):
    data.make_dataset(tmp_path / "d", 2000, 6)
    X, y = data.open_dataset(tmp_path / "d")
    results = []
    for release in (4096, 2**40):  # every ~10 batches, never
        monkeypatch.setattr(loop, "RELEASE_BYTES", release)
        net = dg.Network([6, 8, 1], seed=0)
        h = net.fit(X, y, batch_size=37, epochs=2, seed=1, progress=False)
        results.append((net.params, h.iteration_cost))
    for k in results[0][0]:
        np.testing.assert_array_equal(results[0][0][k], results[1][0][k])
    assert results[0][1] == results[1][1]


def test_block_shuffle_is_a_seeded_permutation_of_windows_of_blocks():
    short = data.epoch_permutation(10_007, 3, 0, block=50, window=4)  # a short last block
    np.testing.assert_array_equal(np.sort(short), np.arange(10_007))
    m, block, window = 10_050, 50, 4
    p = data.epoch_permutation(m, 3, 0, block=block, window=window)
    np.testing.assert_array_equal(np.sort(p), np.arange(m))
    np.testing.assert_array_equal(p, data.epoch_permutation(m, 3, 0, block=block, window=window))
    assert not np.array_equal(p, data.epoch_permutation(m, 3, 1, block=block, window=window))
    span = block * window
    for start in range(0, m - span, span):
        blocks = np.unique(p[start : start + span] // block)
        assert len(blocks) == window  # each window holds whole blocks ...
        assert not np.all(np.diff(p[start : start + span]) > 0)  # ... shuffled inside
    # small data sets (one window or less) get a uniform permutation
    np.testing.assert_array_equal(
        data.epoch_permutation(100, 3, 0, block=50), np.random.default_rng([3, 0]).permutation(100)
    )


def test_memmap_training_uses_the_block_shuffle(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "BLOCK_BYTES", 4 * 4 * 10)  # blocks of 10 rows of 4 float32
    data.make_dataset(tmp_path / "d", 2000, 4)
    X, y = data.open_dataset(tmp_path / "d")
    assert data.shuffle_block(X) == 10 and data.shuffle_block(np.asarray(X)) is None
    seen = []
    real = data.batch_indices

    def spy(*args):
        seen.append(args[5])  # block (then the user's order, None here)
        return real(*args)

    monkeypatch.setattr(data, "batch_indices", spy)
    for engine in ("numpy-shards", "reference"):
        net = dg.Network([4, 3, 1], seed=0)
        net.fit(X, y, batch_size=100, epochs=1, progress=False, engine=engine)
    assert seen == [10, 10]
