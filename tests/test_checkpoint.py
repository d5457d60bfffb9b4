"""Checkpoints: exact resume (in process and after SIGKILL), config mismatch, corruption."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import deepgrad as dg
from deepgrad.optim import optimizers
from deepgrad.train import checkpoint as ck

SRC = str(Path(dg.__file__).resolve().parents[1])


@pytest.fixture(scope="module")
def data():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(150, 6))
    y = (X[:, 0] + X[:, 1] ** 2 > 1).astype(np.int64) + (X[:, 2] > 0.5)
    return X, y


def _net():
    return dg.Network([6, 12, 8, 3], output="softmax", seed=1, dtype="float64")


def _train(data, epochs=3, **kw):
    net = _net()
    kw = {"batch_size": 16, "seed": 5, "keep_prob": 0.8, "learning_rate": 0.2, **kw}
    history = net.fit(*data, epochs=epochs, **kw)
    return net, history


def _same_params(a, b):
    return set(a) == set(b) and all(np.array_equal(a[k], b[k]) for k in a)


def _interrupt_at(t):
    def callback(info):
        if info.iteration == t:
            raise KeyboardInterrupt

    return callback


@pytest.mark.parametrize("stop_at", [0, 7, 9, 10, 25])
@pytest.mark.parametrize("every", [None, 3])
def test_interrupt_and_resume_is_bit_identical(data, tmp_path, stop_at, every):
    ref, href = _train(data)
    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        _train(data, checkpoint=path, checkpoint_every=every, callbacks=[_interrupt_at(stop_at)])
    saved = ck.load_checkpoint(path)
    # the interrupt lands in a callback of step `stop_at`: the step is done and recorded
    # (callbacks run after the checkpoint's snapshot), so the checkpoint holds it
    assert len(saved.history["iteration_cost"]) == stop_at + 1
    assert saved.epoch * 10 + saved.position == stop_at + 1  # 150 / 16 -> 10 batches an epoch
    net, history = _train(data, checkpoint=path, checkpoint_every=every)
    assert _same_params(net.params, ref.params)
    assert history.iteration_cost == href.iteration_cost
    assert history.epoch_cost == href.epoch_cost
    assert history.iteration_examples == href.iteration_examples


def test_finished_checkpoint_is_reused_and_extended(data, tmp_path):
    path = tmp_path / "run.ckpt"
    ref2, _ = _train(data, epochs=2)
    ref4, href4 = _train(data, epochs=4)
    net, h = _train(data, epochs=2, checkpoint=path)
    assert _same_params(net.params, ref2.params)
    net, h = _train(data, epochs=2, checkpoint=path)  # nothing left to do: same result
    assert _same_params(net.params, ref2.params) and h.iterations == 20
    net, h = _train(data, epochs=4, checkpoint=path)  # more epochs: goes on from epoch 2
    assert _same_params(net.params, ref4.params)
    assert h.epoch_cost == href4.epoch_cost
    with pytest.raises(ck.CheckpointError, match="already at epoch 4, past epochs=3"):
        _train(data, epochs=3, checkpoint=path)


def test_validation_history_is_kept_across_resume(data, tmp_path):
    path = tmp_path / "run.ckpt"
    val = (data[0][:40], data[1][:40])
    _, href = _train(data, validation_data=val)
    with pytest.raises(KeyboardInterrupt):
        _train(data, checkpoint=path, validation_data=val, callbacks=[_interrupt_at(15)])
    _, h = _train(data, checkpoint=path, validation_data=val)
    assert h.val_cost == href.val_cost and h.val_accuracy == href.val_accuracy


def test_seed_none_takes_the_checkpoint_seed(data, tmp_path):
    path = tmp_path / "run.ckpt"
    with pytest.raises(KeyboardInterrupt):
        _train(data, seed=None, checkpoint=path, callbacks=[_interrupt_at(12)])
    seed = ck.load_checkpoint(path).config["seed"]
    ref, _ = _train(data, seed=seed)
    net, h = _train(data, seed=None, checkpoint=path)
    assert h.seed == seed and _same_params(net.params, ref.params)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"learning_rate": 0.3}, "learning_rate: 0.2 in the checkpoint, 0.3 now"),
        ({"batch_size": 8}, "batch_size: 16 in the checkpoint, 8 now"),
        ({"seed": 6}, "seed: 5 in the checkpoint, 6 now"),
        ({"keep_prob": 1.0}, "keep_prob: 0.8 in the checkpoint, 1.0 now"),
        ({"l2": 0.1}, "l2: 0.0 in the checkpoint, 0.1 now"),
        ({"l2_normalization": "dataset"}, "l2_normalization: 'batch' in the checkpoint"),
        ({"shuffle": False}, "shuffle: True in the checkpoint, False now"),
    ],
)
def test_mismatched_configuration_says_what_differs(data, tmp_path, change, message):
    path = tmp_path / "run.ckpt"
    _train(data, epochs=1, checkpoint=path)
    before = path.read_bytes()
    with pytest.raises(ck.CheckpointError, match=message):
        _train(data, checkpoint=path, **change)
    assert path.read_bytes() == before  # the good checkpoint is untouched


def test_other_data_or_architecture_is_refused(data, tmp_path):
    path = tmp_path / "run.ckpt"
    _train(data, epochs=1, checkpoint=path)
    X, y = data
    with pytest.raises(ck.CheckpointError, match="data: the training data"):
        _net().fit(
            X + 1.0, y, batch_size=16, seed=5, keep_prob=0.8, learning_rate=0.2, checkpoint=path
        )
    other = dg.Network([6, 10, 3], output="softmax", seed=1, dtype="float64")
    with pytest.raises(ck.CheckpointError, match=r"layer_sizes: \[6, 12, 8, 3\]"):
        other.fit(X, y, batch_size=16, seed=5, keep_prob=0.8, learning_rate=0.2, checkpoint=path)


def _corrupt(path: Path, how: str) -> None:
    raw = bytearray(path.read_bytes())
    if how == "truncate":
        path.write_bytes(raw[: len(raw) // 2])
    elif how == "empty":
        path.write_bytes(b"")
    elif how == "flip":  # flip one bit inside the stored parameters
        with np.load(path) as z:
            w = z["params.W1"].tobytes()
        at = raw.find(w[:64]) + 10
        raw[at] ^= 0x01
        path.write_bytes(bytes(raw))
    else:
        path.write_bytes(b"not a checkpoint at all")


@pytest.mark.parametrize("how", ["truncate", "empty", "flip", "garbage"])
def test_corrupted_checkpoint_is_detected_and_previous_kept(data, tmp_path, how):
    path = tmp_path / "run.ckpt"
    _train(data, epochs=2, checkpoint=path)  # writes after epoch 1, then epoch 2
    prev = tmp_path / "run.ckpt.prev"
    assert ck.load_checkpoint(prev).epoch == 1
    _corrupt(path, how)
    with pytest.raises(ck.CheckpointError, match="truncated or corrupted|checksum") as err:
        _train(data, epochs=2, checkpoint=path)
    assert "run.ckpt.prev" in str(err.value)
    assert ck.load_checkpoint(prev).epoch == 1  # still there, still good
    os.replace(prev, path)  # the message's advice works
    ref, _ = _train(data, epochs=2)
    net, _ = _train(data, epochs=2, checkpoint=path)
    assert _same_params(net.params, ref.params)


def test_checksum_catches_a_consistent_looking_edit(tmp_path):
    """A file rewritten with valid zip CRCs but changed content still fails the SHA-256."""
    path = tmp_path / "c.npz"
    c = ck.Checkpoint(
        0,
        1,
        {"W1": np.ones((2, 2))},
        {"opt.count": np.array(1)},
        {"iteration_cost": [1.0], "stopped": None},
        {"seed": 0},
    )
    ck.save_checkpoint(path, c)
    with np.load(path) as z:
        arrays = dict(z)
    arrays["params.W1"] = arrays["params.W1"] * 2
    np.savez(path, **arrays)
    with pytest.raises(ck.CheckpointError, match="checksum"):
        ck.load_checkpoint(path)


def test_a_model_file_is_not_taken_for_a_checkpoint(data, tmp_path):
    path = tmp_path / "model.npz"
    dg.save(_net(), path)
    before = path.read_bytes()
    with pytest.raises(ck.CheckpointError, match="'deepgrad-network' file\\); pass another path"):
        _train(data, checkpoint=path)
    assert path.read_bytes() == before


def test_other_version_and_foreign_npz_are_refused(tmp_path):
    path = tmp_path / "c.npz"
    np.savez(path, __meta__=np.array(json.dumps({"format": ck.FORMAT, "version": 99})))
    with pytest.raises(ck.CheckpointError, match="format version 99"):
        ck.load_checkpoint(path)
    np.savez(path, W1=np.ones(3))
    with pytest.raises(ck.CheckpointError, match="truncated or corrupted"):
        ck.load_checkpoint(path)


def test_failed_write_keeps_the_good_file(data, tmp_path, monkeypatch):
    path = tmp_path / "run.ckpt"
    _train(data, epochs=1, checkpoint=path)
    good = path.read_bytes()

    def disk_full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(ck.os, "fsync", disk_full)
    with pytest.raises(OSError, match="No space left"):
        _train(data, epochs=2, checkpoint=path)
    assert path.read_bytes() == good
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run.ckpt", "run.ckpt.prev"]


def test_optimizer_state_round_trips():
    class State(tuple):
        pass

    from typing import NamedTuple

    class Adamish(NamedTuple):
        count: int
        mu: dict
        nu: dict
        scale: float

    template = Adamish(0, {"W1": np.zeros((2, 3))}, {"W1": np.zeros((2, 3))}, 1.0)
    state = Adamish(7, {"W1": np.arange(6.0).reshape(2, 3)}, {"W1": np.full((2, 3), 0.1)}, 0.5)
    arrays = ck.flatten_state(state)
    assert sorted(arrays) == ["opt.count", "opt.mu.W1", "opt.nu.W1", "opt.scale"]
    back = ck.restore_state(template, arrays)
    assert back.count == 7 and isinstance(back.count, int) and back.scale == 0.5
    assert np.array_equal(back.mu["W1"], state.mu["W1"])
    gd = optimizers.gd(0.1)
    assert ck.restore_state(gd.init({}), ck.flatten_state(optimizers.GDState(12))).count == 12
    with pytest.raises(ck.CheckpointError, match="another optimizer"):
        ck.restore_state(template, {"opt.count": np.array(1)})


def test_bad_checkpoint_arguments(data, tmp_path):
    with pytest.raises(TypeError, match="checkpoint must be a path"):
        _train(data, checkpoint=3)
    with pytest.raises(ValueError, match="checkpoint must be a file path"):
        _train(data, checkpoint=tmp_path)
    with pytest.raises(ValueError, match="checkpoint_every must be an int >= 1, got 0"):
        _train(data, checkpoint=tmp_path / "c", checkpoint_every=0)
    with pytest.raises(OSError, match="does not exist"):
        _train(data, checkpoint=tmp_path / "no" / "such" / "c")
    assert list(tmp_path.iterdir()) == []


# -- the real thing: SIGKILL a CLI run at a random moment and start it again ----------------
def _cli(*args):
    env = {**os.environ, "PYTHONPATH": SRC}
    return subprocess.Popen(
        [sys.executable, "-m", "deepgrad", *args],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )


def _finish(proc, timeout=120) -> tuple[int, str]:
    _, err = proc.communicate(timeout=timeout)
    return proc.returncode, err


def _train_args(out, ckpt=None):
    args = [
        "train",
        "--data",
        "digits",
        "--hidden",
        "48,32",
        "--epochs",
        "6",
        "--batch-size",
        "16",
        "--keep-prob",
        "0.9",
        "--seed",
        "3",
        "--quiet",
        "--out",
        str(out),
    ]
    return args + (["--checkpoint", str(ckpt), "--checkpoint-every", "7"] if ckpt else [])


def _model(out):
    with np.load(out / "model.npz") as z:
        return {k: z[k] for k in z.files if k != "__meta__"}


@pytest.mark.slow
def test_sigkill_at_a_random_moment_then_rerun_is_bit_identical(tmp_path):
    rc, err = _finish(_cli(*_train_args(tmp_path / "ref")))
    assert rc == 0, err
    rng = np.random.default_rng(int(time.time()))
    ckpt = tmp_path / "run.ckpt"
    killed_at = None
    for _ in range(5):  # until a kill lands mid-training
        for p in [*tmp_path.glob("run.ckpt*"), *tmp_path.glob("run/*")]:
            p.unlink()
        proc = _cli(*_train_args(tmp_path / "run", ckpt))
        # Kill after a random number (1-40) of the ~75 checkpoint writes of the run: the
        # training itself takes well under a second, so a random sleep often missed it.
        writes, last, deadline = int(rng.integers(1, 41)), None, time.time() + 60
        while writes > 0 and proc.poll() is None and time.time() < deadline:
            try:
                stamp = ckpt.stat().st_mtime_ns  # each write renames a new file into place
            except FileNotFoundError:
                stamp = None
            if stamp is not None and stamp != last:
                writes, last = writes - 1, stamp
            time.sleep(0.001)
        if proc.poll() is not None:
            _finish(proc)
        else:
            proc.send_signal(signal.SIGKILL)
            _finish(proc, 30)
            killed_at = ck.load_checkpoint(ckpt)
            if killed_at.epoch < 6:
                break
    assert killed_at is not None and killed_at.epoch < 6, "could not kill the run mid-training"
    assert not (tmp_path / "run" / "model.npz").exists()
    rc, err = _finish(_cli(*_train_args(tmp_path / "run", ckpt)))
    assert rc == 0, err
    a, b = _model(tmp_path / "ref"), _model(tmp_path / "run")
    assert _same_params(a, b), f"resumed from epoch {killed_at.epoch}, batch {killed_at.position}"
    ha = json.loads((tmp_path / "ref" / "history.json").read_text())
    hb = json.loads((tmp_path / "run" / "history.json").read_text())
    assert ha["iteration_cost"] == hb["iteration_cost"]
    assert ha["epoch_cost"] == hb["epoch_cost"]
    assert not list(tmp_path.glob(".run.ckpt.*.tmp"))  # no half-written leftovers


@pytest.mark.slow
def test_cli_checkpoint_mismatch_is_one_line_exit_2(tmp_path):
    ckpt = tmp_path / "c.ckpt"
    args = [
        "train",
        "--data",
        "iris",
        "--hidden",
        "8",
        "--epochs",
        "2",
        "--quiet",
        "--out",
        str(tmp_path / "o"),
        "--checkpoint",
        str(ckpt),
    ]
    assert _finish(_cli(*args))[0] == 0
    rc, err = _finish(_cli(*args[:-4], "--lr", "0.5", *args[-4:]))
    assert rc == 2
    assert err.count("\n") == 1 and "learning_rate: 0.001 in the checkpoint, 0.5 now" in err


_CKPT: dict[str, bytes] = {}


@settings(max_examples=200, deadline=None)
@given(data=st.data())
def test_property_any_damage_is_detected(data, tmp_path_factory):
    """Any truncation or any changed byte: a CheckpointError, or (a byte the format does not
    use) exactly the saved content. Never a silently different checkpoint."""
    tmp = tmp_path_factory.getbasetemp()
    path = tmp / "prop.ckpt"
    if "b" not in _CKPT:
        c = ck.Checkpoint(
            1,
            2,
            {"W1": np.arange(6.0).reshape(2, 3)},
            {"opt.count": np.array(3)},
            {"iteration_cost": [1.0, 0.5], "stopped": None},
            {"seed": 4},
        )
        ck.save_checkpoint(path, c)
        _CKPT["b"] = path.read_bytes()
    good = _CKPT["b"]
    if data.draw(st.booleans()):
        bad = good[: data.draw(st.integers(0, len(good) - 1))]
    else:
        at = data.draw(st.integers(0, len(good) - 1))
        bad = good[:at] + bytes([good[at] ^ data.draw(st.integers(1, 255))]) + good[at + 1 :]
    path.write_bytes(bad)
    try:
        back = ck.load_checkpoint(path)
    except ck.CheckpointError:
        return
    assert back.epoch == 1 and back.position == 2 and back.config == {"seed": 4}
    np.testing.assert_array_equal(back.params["W1"], np.arange(6.0).reshape(2, 3))
    assert back.history["iteration_cost"] == [1.0, 0.5]


@pytest.mark.slow
def test_ctrl_c_saves_then_rerun_is_bit_identical(tmp_path):
    """SIGINT (Ctrl-C): the CLI saves the last completed step, exits 130; a rerun finishes
    with the same parameters as an uninterrupted run."""
    rc, err = _finish(_cli(*_train_args(tmp_path / "ref")))
    assert rc == 0, err
    ckpt = tmp_path / "run.ckpt"
    args = _train_args(tmp_path / "run", ckpt)[:-2] + ["--checkpoint-every", "100000"]
    proc = _cli(*args)
    deadline = time.time() + 60
    while not ckpt.exists() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.01)  # the first epoch-end checkpoint
    time.sleep(0.3)
    proc.send_signal(signal.SIGINT)
    rc, err = _finish(proc)
    if rc == 0:
        pytest.skip("the run finished before the interrupt arrived")
    assert rc == 130 and "interrupted" in err
    saved = ck.load_checkpoint(ckpt)
    assert saved.position > 0 or saved.epoch > 0
    rc, err = _finish(_cli(*args))
    assert rc == 0, err
    assert _same_params(_model(tmp_path / "ref"), _model(tmp_path / "run"))


# -- one fit per checkpoint: the lock ---------------------------------------------------
LOCK_CHILD = r"""
import sys, time
import numpy as np
import deepgrad as dg
X = np.random.default_rng(0).normal(size=(40, 3)); y = (X[:, 0] > 0).astype(int)
def slow(info):
    time.sleep(0.2)
dg.Network([3, 4, 1], seed=0).fit(X, y, epochs=1000, batch_size=8, seed=0,
                                  checkpoint=sys.argv[1], callbacks=[slow])
"""


def test_a_second_process_on_a_checkpoint_is_refused_and_a_killed_one_frees_it(data, tmp_path):
    path = tmp_path / "run.ckpt"
    stranger = tmp_path / ".unrelated.tmp"  # not the checkpoint's: never deleted
    stranger.write_text("x")
    env = {**os.environ, "PYTHONPATH": str(Path(dg.__file__).resolve().parents[1])}
    child = subprocess.Popen([sys.executable, "-c", LOCK_CHILD, str(path)], env=env)
    try:
        lock = tmp_path / "run.ckpt.lock"
        for _ in range(300):
            if lock.exists() and lock.read_text().strip() == str(child.pid) and path.exists():
                break
            time.sleep(0.05)
        X, y = data
        with pytest.raises(ck.CheckpointError, match=f"is in use by process {child.pid}"):
            _net().fit(X, y, epochs=2, seed=0, checkpoint=path)
        debris = tmp_path / f".run.ckpt.{child.pid}x.tmp"  # as if killed mid-write
        debris.write_text("partial")
        child.send_signal(signal.SIGKILL)
        child.wait(timeout=30)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    with pytest.raises(ck.CheckpointError, match="belongs to another training run"):
        _net().fit(X, y, epochs=2, seed=0, checkpoint=path)  # the lock is free again
    assert not debris.exists() and stranger.exists()
