"""Crafted files: each is refused with a clean error naming the file, in bounded memory.

Every file is made here (huge declared shapes, zip bombs, duplicate members, missing
members, wrong dtypes, checkpoints whose checksum was recomputed over bad content) and
loaded in a child process that reports the error and its peak RSS (VmHWM), so a load
that allocates what the file declares is caught even when it would have succeeded.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.train import checkpoint as ck

SRC = str(Path(dg.__file__).resolve().parents[1])
PEAK_LIMIT_MB = 200  # python + numpy + deepgrad are ~50 MB; every bomb here holds >= 320 MB

CHILD = r"""
import json, sys
def peak_mb():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
kind, path = sys.argv[1], sys.argv[2]
try:
    if kind == "model":
        import deepgrad as dg
        dg.load(path)
    elif kind == "checkpoint":
        from deepgrad.train.checkpoint import load_checkpoint
        load_checkpoint(path)
    else:
        from deepgrad.cli.main import main
        print(json.dumps({"rc": main(json.loads(path)), "peak": peak_mb()}))
        sys.exit(0)
    print(json.dumps({"error": None, "peak": peak_mb()}))
except SystemExit:
    raise
except BaseException as exc:
    print(json.dumps({"error": type(exc).__name__, "value_error": isinstance(exc, ValueError),
                      "msg": str(exc), "peak": peak_mb()}))
"""


def _child(kind: str, arg: str) -> dict:
    env = {**os.environ, "PYTHONPATH": SRC}
    r = subprocess.run(
        [sys.executable, "-c", CHILD, kind, arg], capture_output=True, text=True, env=env,
        timeout=120,
    )  # fmt: skip
    out = json.loads(r.stdout.strip().splitlines()[-1])
    out["stderr"] = r.stderr
    return out


def _npy_bytes(shape, dtype, data: bytes = b"") -> bytes:
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(
        buf, {"descr": np.lib.format.dtype_to_descr(np.dtype(dtype)), "fortran_order": False,
              "shape": tuple(shape)}
    )  # fmt: skip
    return buf.getvalue() + data


def _rewrite(src: Path, dst: Path, replace=None, extra=(), compress=()) -> None:
    """Copy the .npz ``src`` to ``dst``: members in ``replace`` get new bytes, ``extra``
    (name, bytes) pairs are appended (duplicates allowed), ``compress`` names are deflated."""
    replace = replace or {}
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            data = replace.get(info.filename, zin.read(info))
            method = zipfile.ZIP_DEFLATED if info.filename in compress else zipfile.ZIP_STORED
            zout.writestr(info.filename, data, compress_type=method)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # zipfile warns about the duplicate name
            for name, data in extra:
                zout.writestr(name, data)


def _bomb(src: Path, dst: Path, member: str, shape, dtype="float64") -> None:
    """``member`` replaced by zeros of ``shape``, deflated (GBs become a few MB), streamed."""
    with zipfile.ZipFile(src) as zin, zipfile.ZipFile(dst, "w") as zout:
        for info in zin.infolist():
            if info.filename != member:
                zout.writestr(info.filename, zin.read(info))
                continue
            zinfo = zipfile.ZipInfo(member)
            zinfo.compress_type = zipfile.ZIP_DEFLATED
            with zout.open(zinfo, "w", force_zip64=True) as f:
                f.write(_npy_bytes(shape, dtype))
                chunk, left = bytes(2**24), int(np.prod(shape)) * np.dtype(dtype).itemsize
                while left > 0:
                    f.write(chunk[: min(left, len(chunk))])
                    left -= len(chunk)


@pytest.fixture(scope="module")
def model(tmp_path_factory):
    d = tmp_path_factory.mktemp("crafted")
    X = np.random.default_rng(0).normal(size=(30, 4))
    y = np.where(X[:, 0] > 0, "malignant", "benign")
    net = dg.Network([4, 3, 1], seed=0)
    net.fit(X, y, epochs=1, seed=0, standardize=True)
    dg.save(net, d / "good.npz")
    return d


def _model_case(name: str, d: Path) -> Path:
    good, bad = d / "good.npz", d / f"{name}.npz"
    with np.load(good) as z:
        meta = json.loads(str(z["__meta__"]))
    if name == "huge_shape":
        _rewrite(good, bad, {"W1.npy": _npy_bytes((10**6, 10**6), "float64", bytes(96))})
    elif name == "zip_bomb":
        _bomb(good, bad, "W1.npy", (10**4, 5000))  # 400 MB of zeros in ~0.4 MB
    elif name == "duplicate":
        _rewrite(good, bad, extra=[("W1.npy", _npy_bytes((3, 4), "float64", bytes(96)))])
    elif name == "object_dtype":
        _rewrite(good, bad, {"b1.npy": _npy_bytes((3,), "O", bytes(24))})
        return bad
    elif name == "many_layers":
        meta["layer_sizes"] = [64] + [1] * 10**6 + [10]
        _rewrite(good, bad, {"__meta__.npy": _npy_meta(meta)})
    elif name == "no_classes":
        with zipfile.ZipFile(good) as zin, zipfile.ZipFile(bad, "w") as zout:
            for info in zin.infolist():
                if info.filename != "preprocessing.classes.npy":
                    zout.writestr(info, zin.read(info))
    elif name == "tiny_scale":
        with np.load(good) as z:
            arrays = dict(z)
        arrays["preprocessing.inputs.scale"] = np.full(4, 1e-300)
        np.savez(bad, **arrays)
    return bad


def _npy_meta(meta: dict) -> bytes:
    buf = io.BytesIO()
    np.save(buf, np.array(json.dumps(meta)))
    return buf.getvalue()


MODEL_CASES = {
    "huge_shape": "member 'W1.npy' declares shape (1000000, 1000000)",
    "zip_bomb": "member 'W1.npy' is compressed",
    "duplicate": "holds the member 'W1.npy' twice",
    "object_dtype": "holds Python objects",
    "many_layers": "layer_sizes must be a list of 2 to",
    "no_classes": "preprocessing.classes",
    "tiny_scale": "inputs scale must lie in",
}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MODEL_CASES))
def test_a_crafted_model_file_is_refused_in_bounded_memory(model, name):
    path = _model_case(name, model)
    got = _child("model", str(path))
    assert got["value_error"], got
    assert str(path) in got["msg"] and MODEL_CASES[name] in got["msg"], got["msg"]
    assert got["peak"] < PEAK_LIMIT_MB, got


def _ckpt(d: Path, name: str, **change) -> Path:
    """A checkpoint written by save_checkpoint (so its SHA-256 is right) with bad content."""
    params = {"W1": np.ones((3, 2)), "b1": np.zeros(3), "W2": np.ones((1, 3)), "b2": np.zeros(1)}
    params.update(change.pop("params", {}))
    for k in change.pop("drop", ()):
        params.pop(k)
    history = {"iteration_cost": [1.0, 0.5], "iteration_time": [0.1, 0.1],
               "iteration_examples": [4, 4], "epoch_cost": [0.7], "epoch_time": [0.2]}  # fmt: skip
    history.update(change.pop("history", {}))
    c = ck.Checkpoint(
        change.pop("epoch", 1), change.pop("position", 0), params, {"opt.count": np.array(2)},
        history, {"layer_sizes": [2, 3, 1], "dtype": "float64", "seed": 0},
    )  # fmt: skip
    path = d / f"{name}.ckpt"
    ck.save_checkpoint(path, c)
    return path


CHECKPOINT_CASES = {
    "missing_b2": (
        {"drop": ["b2"]},
        "parameter b2 must have shape (1,) dtype float64, got missing",
    ),
    "int64_W1": ({"params": {"W1": np.ones((3, 2), np.int64)}}, "parameter W1 must have shape"),
    "float16_W1": ({"params": {"W1": np.ones((3, 2), np.float16)}}, "dtype float64, got shape"),
    "nan_W1": ({"params": {"W1": np.full((3, 2), np.nan)}}, "parameter W1 holds NaN"),
    "epoch_text": ({"epoch": "1"}, "epoch '1' (it must be an int >= 0)"),
    "epoch_float": ({"epoch": 1.5}, "epoch 1.5 (it must be an int >= 0)"),
    "history_length": ({"history": {"epoch_cost": [0.7, 0.6]}}, "per-epoch histories"),
    "step_history": ({"history": {"iteration_time": [0.1]}}, "per-step histories"),
    "position_text": ({"position": -1}, "position -1"),
}


@pytest.mark.parametrize("name", sorted(CHECKPOINT_CASES))
def test_a_checkpoint_with_a_valid_checksum_and_bad_content_is_refused(tmp_path, name):
    change, message = CHECKPOINT_CASES[name]
    path = _ckpt(tmp_path, name, **change)
    with pytest.raises(ck.CheckpointError, match="checkpoint '") as info:
        ck.load_checkpoint(path)
    assert message in str(info.value) and str(path) in str(info.value)


@pytest.mark.slow
def test_a_checkpoint_bomb_is_refused_before_its_checksum_in_bounded_memory(tmp_path):
    good = _ckpt(tmp_path, "good")
    bomb = tmp_path / "bomb.ckpt"
    _bomb(good, bomb, "params.W1.npy", (3, 2 * 10**7))  # 480 MB of zeros
    got = _child("checkpoint", str(bomb))
    assert got["error"] == "CheckpointError", got
    assert "is compressed" in got["msg"] and got["peak"] < PEAK_LIMIT_MB, got


def test_a_checkpoint_position_past_the_epoch_is_refused_on_resume(tmp_path):
    X = np.random.default_rng(0).normal(size=(8, 2))
    y = (X[:, 0] > 0).astype(int)
    path = tmp_path / "run.ckpt"
    dg.Network([2, 3, 1], seed=0).fit(X, y, epochs=2, batch_size=4, seed=0, checkpoint=path)
    saved = ck.load_checkpoint(path)  # epoch 2, 4 steps: say epoch 1 with 3 of its 2 done
    history = {**saved.history, "epoch_cost": saved.history["epoch_cost"][:1]}
    history["epoch_time"] = history["epoch_time"][:1]
    ck.save_checkpoint(path, saved._replace(epoch=1, position=3, history=history))
    with pytest.raises(ck.CheckpointError, match="position 3, past the 2 mini-batches"):
        dg.Network([2, 3, 1], seed=0).fit(X, y, epochs=2, batch_size=4, seed=0, checkpoint=path)


DATA_CASES = {
    "huge.npy": "declares shape (1000000000, 4)",
    "huge.npz": "member 'X.npy' declares shape (1000000000, 4)",
    "bomb.npz": "more than the load limit",
    "text.txt": "is not a .npz file",
    "flat.npz": "X must be a 2-D array",
}


def _data_case(d: Path, name: str) -> Path:
    path = d / name
    if name == "huge.npy":
        path.write_bytes(_npy_bytes((10**9, 4), "float64", bytes(64)))
    elif name == "huge.npz":
        np.savez(d / "ok.npz", X=np.zeros((2, 4)), y=np.zeros(2))
        _rewrite(d / "ok.npz", path, {"X.npy": _npy_bytes((10**9, 4), "float64", bytes(64))})
    elif name == "bomb.npz":
        np.savez(d / "ok.npz", X=np.zeros((2, 4)), y=np.zeros(2))
        _bomb(d / "ok.npz", path, "X.npy", (10**7, 4))  # 320 MB, over the 256 MiB limit
    elif name == "text.txt":
        path.write_text("1 2 3\n4 5 6\n")
    else:
        np.savez(path, X=np.arange(4.0), y=np.arange(4))
    return path


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(DATA_CASES))
def test_a_crafted_data_file_is_one_line_and_exit_2_in_bounded_memory(
    model, tmp_path, monkeypatch, name
):
    path = _data_case(tmp_path, name)
    monkeypatch.setenv("DEEPGRAD_MAX_LOAD_BYTES", str(2**28))
    cmd = ["predict", "--model", str(model / "good.npz"), "--data", str(path)]
    got = _child("cli", json.dumps(cmd))
    assert got["rc"] == 2, got
    line = got["stderr"].strip()
    assert "\n" not in line and DATA_CASES[name] in line and str(path) in line, line
    assert got["peak"] < PEAK_LIMIT_MB, got


def test_layer_widths_beyond_memory_are_a_value_error_naming_the_bytes():
    with pytest.raises(ValueError, match=r"need 24000000000004 bytes .* more than this machine"):
        dg.Network([4, 10**12, 1], dtype="float32")


def test_the_load_ceiling_is_configurable(model, monkeypatch):
    with pytest.raises(ValueError, match="more than the load limit of 100 bytes"):
        dg.load(model / "good.npz", max_bytes=100)
    monkeypatch.setenv("DEEPGRAD_MAX_LOAD_BYTES", "100")
    with pytest.raises(ValueError, match="more than the load limit of 100 bytes"):
        dg.load(model / "good.npz")
    monkeypatch.setenv("DEEPGRAD_MAX_LOAD_BYTES", "lots")
    with pytest.raises(ValueError, match="DEEPGRAD_MAX_LOAD_BYTES must be a positive number"):
        dg.load(model / "good.npz")
    monkeypatch.delenv("DEEPGRAD_MAX_LOAD_BYTES")
    assert dg.load(model / "good.npz").layer_sizes == (4, 3, 1)


# -- no silent overwrite, errors that name the file, the small holes ----------------------
def _predict(model, data, out, *extra) -> tuple[int, str]:
    cmd = ["predict", "--model", str(model), "--data", str(data), "--out", str(out), *extra]
    r = subprocess.run(
        [sys.executable, "-m", "deepgrad", *cmd], capture_output=True, text=True,
        env={**os.environ, "PYTHONPATH": SRC}, timeout=120,
    )  # fmt: skip
    return r.returncode, r.stderr.strip()


def test_predict_out_never_overwrites_its_inputs_nor_silently_a_file(model, tmp_path):
    data = tmp_path / "x.npy"
    np.save(data, np.zeros((3, 4)))
    before = data.read_bytes()
    for out, flags in ((data, ()), (data, ("--force",)), (model / "good.npz", ("--force",))):
        rc, err = _predict(model / "good.npz", data, out, *flags)
        assert rc == 2 and "it would destroy the input" in err and "\n" not in err, err
    assert data.read_bytes() == before
    out = tmp_path / "p.csv"
    out.write_text("keep me\n")
    rc, err = _predict(model / "good.npz", data, out)
    assert rc == 2 and "already exists; pass --force" in err and out.read_text() == "keep me\n"
    rc, err = _predict(model / "good.npz", data, out, "--force")
    assert rc == 0 and out.read_text().startswith("prediction,P(benign),P(malignant)\n"), err


def test_a_write_error_names_the_file(tmp_path):
    from deepgrad.io.files import atomic_write

    def fail(f):
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match=r"cannot write '.*m\.npz': No space left on device"):
        atomic_write(tmp_path / "m.npz", fail)
    assert list(tmp_path.iterdir()) == []  # no temp file left


def test_a_custom_init_is_checked_for_shape_and_finiteness():
    def wrong_shape(shape, rng, dtype):
        return np.ones((shape[1], shape[0]))

    def nan(shape, rng, dtype):
        return np.full(shape, np.nan)

    with pytest.raises(ValueError, match=r"init wrong_shape must return .* \(5, 3\).*got shape"):
        dg.Network([3, 5, 1], init=wrong_shape)
    with pytest.raises(ValueError, match="init nan returned NaN or inf"):
        dg.Network([3, 5, 1], init=nan)
    ok = dg.Network([3, 5, 1], init=lambda s, r, d: np.full(s, 0.5))
    assert float(ok.params["W1"][0, 0]) == 0.5


@pytest.mark.parametrize("every", [0, -2, "3", True, 1.5])
def test_checkpoint_every_is_validated(tmp_path, every):
    X = np.random.default_rng(0).normal(size=(8, 2))
    y = (X[:, 0] > 0).astype(int)
    with pytest.raises((ValueError, TypeError), match="checkpoint_every"):
        dg.Network([2, 3, 1], seed=0).fit(
            X, y, epochs=1, checkpoint=tmp_path / "c.ckpt", checkpoint_every=every
        )
    assert not (tmp_path / "c.ckpt").exists()


@pytest.mark.parametrize("every", [0, -2, "3"])
def test_a_wrong_checkpoint_every_without_a_checkpoint_is_still_an_error(every):
    X = np.random.default_rng(0).normal(size=(8, 2))
    with pytest.raises((ValueError, TypeError), match="checkpoint_every"):
        dg.Network([2, 3, 1], seed=0).fit(X, (X[:, 0] > 0).astype(int), checkpoint_every=every)


KILL_AFTER_ONE_RENAME = r"""
import os, signal, sys
from deepgrad.cli import common
real = os.replace
def replace_then_die(a, b):
    real(a, b)
    if str(b).endswith("model.npz") and ".run-" not in str(b):  # renamed into --out
        os.kill(os.getpid(), signal.SIGKILL)  # the worst moment: one file of the run in place
common.os.replace = replace_then_die
from deepgrad.cli.main import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow
def test_train_out_is_replaced_as_a_unit_even_when_killed(tmp_path):
    out = tmp_path / "run"
    env = {**os.environ, "PYTHONPATH": SRC, "MPLBACKEND": "Agg"}
    cmd = ["train", "--data", "iris", "--epochs", "2", "--quiet", "--out", str(out)]
    r = subprocess.run([sys.executable, "-m", "deepgrad", *cmd], env=env, capture_output=True)
    assert r.returncode == 0, r.stderr
    old = {p.name: p.read_bytes() for p in out.iterdir()}
    assert sorted(old) == ["history.json", "learning_curves.png", "model.npz"]
    killed = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_ONE_RENAME, *cmd[:4], "3", *cmd[5:]],
        env=env, capture_output=True,
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    left = {p.name: p.read_bytes() for p in out.iterdir() if not p.name.startswith(".")}
    assert not any(left.get(k) == v for k, v in old.items()), "a mix of two runs"
    assert [p.name for p in out.iterdir() if p.name.startswith(".")]  # the dead writer's
    r = subprocess.run([sys.executable, "-m", "deepgrad", *cmd], env=env, capture_output=True)
    assert r.returncode == 0, r.stderr
    assert sorted(p.name for p in out.iterdir()) == sorted(old)  # debris removed
