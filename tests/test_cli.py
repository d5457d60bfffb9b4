"""The command line, end to end: real files on disk, real subprocesses."""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from deepgrad.cli.main import main


def test_demo_reaches_accuracy_and_writes_curves(tmp_path, capsys):
    assert main(["demo", "--out", str(tmp_path), "--quiet"]) == 0
    out = capsys.readouterr().out
    acc = float(out.split("held-out accuracy: ")[1].split()[0])
    assert acc >= 0.95
    assert (tmp_path / "demo_learning_curves.png").stat().st_size > 10_000
    assert (tmp_path / "demo_model.npz").is_file()


def test_train_then_predict(tmp_path, capsys):
    rc = main(
        [
            "train",
            "--data",
            "breast_cancer",
            "--hidden",
            "16,8",
            "--epochs",
            "30",
            "--batch-size",
            "32",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "held-out accuracy" in out
    history = json.loads((tmp_path / "history.json").read_text())
    assert len(history["epoch_cost"]) == 30 and history["epoch_cost"][-1] < history["epoch_cost"][0]
    rc = main(
        [
            "predict",
            "--model",
            str(tmp_path / "model.npz"),
            "--data",
            "breast_cancer",
            "--out",
            str(tmp_path / "pred.npy"),
        ]
    )
    assert rc == 0
    acc = float(capsys.readouterr().out.split("accuracy: ")[1].split()[0])
    assert acc > 0.9
    assert np.load(tmp_path / "pred.npy").shape == (569,)


def test_train_from_npz_file(tmp_path, rng):
    X = rng.standard_normal((200, 3))
    y = X @ np.array([1.0, -2.0, 0.5])
    np.savez(tmp_path / "reg.npz", X=X, y=y)
    assert (
        main(
            [
                "train",
                "--data",
                str(tmp_path / "reg.npz"),
                "--hidden",
                "8",
                "--epochs",
                "5",
                "--quiet",
                "--out",
                str(tmp_path / "o"),
            ]
        )
        == 0
    )
    assert (tmp_path / "o" / "model.npz").is_file()


@pytest.mark.parametrize(
    "argv,pattern",
    [
        (["train", "--data", "nope"], "neither a bundled dataset"),
        (["train", "--data", "digits", "--batch-size", "-3"], "--batch-size must be an int >= 0"),
        (["train", "--data", "digits", "--lr", "0"], "--lr must be"),
        (["train", "--data", "digits", "--activation", "swish"], "--activation must be"),
        (["train", "--data", "digits", "--init", "bogus"], "--init must be one of"),
        (["train", "--data", "digits", "--keep-prob", "2"], "--keep-prob must be"),
        (["train", "--data", "digits", "--epochs", "0"], "--epochs must be"),
        (["predict", "--model", "missing.npz", "--data", "digits"], "does not exist"),
    ],
)
def test_bad_input_one_line_exit_2_nothing_written(tmp_path, argv, pattern):
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "deepgrad", *argv, "--out", str(out)]
    if argv[0] == "predict":
        cmd = cmd[:-2]
    r = subprocess.run(
        cmd,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env={**os.environ, "PYTHONWARNINGS": "ignore"},
        timeout=120,
    )
    assert r.returncode == 2, r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert pattern in lines[0]
    assert not out.exists() or not any(out.iterdir())
