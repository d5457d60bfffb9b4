"""The seed's batch vs mini-batch curves: their shapes, the figure and the CLI commands."""

from __future__ import annotations

import json

import numpy as np
import pytest

import deepgrad as dg
from deepgrad.cli.main import main
from deepgrad.data import arrays as data
from deepgrad.diagnostics import batchsize
from deepgrad.plotting.curves import moving_average


@pytest.fixture(scope="module")
def runs():
    X, y = data.synthetic(4000, 10, seed=1)
    net = dg.Network([10, 32, 16, 1], seed=0)
    return batchsize.compare(
        net,
        X,
        y,
        epochs=8,
        learning_rate=0.1,
        minibatch_sizes=(1000, 64),
        sgd_examples=500,
        sgd_epochs=2,
        seed=0,
    )


def test_runs_and_budgets(runs):
    labels = [r.label for r in runs]
    assert labels[0] == "batch GD" and labels[1:3] == ["mini-batch 1000", "mini-batch 64"]
    assert labels[3].startswith("SGD")
    its = [r.history.iterations for r in runs]
    assert its == [8, 8 * 4, 8 * 63, 2 * 500]
    # batch GD and the mini-batch runs see the same number of examples
    assert len({r.history.iteration_examples[-1] for r in runs[:3]}) == 1


def test_batch_gd_never_rises_with_a_safe_learning_rate(runs):
    J = np.asarray(runs[0].history.iteration_cost)
    assert np.all(np.diff(J) <= 1e-7)
    assert J[-1] < 0.9 * J[0]


@pytest.mark.parametrize("which", [1, 2, 3])
def test_minibatch_cost_is_noisy_but_its_moving_average_falls(runs, which):
    J = np.asarray(runs[which].history.iteration_cost)
    assert np.any(np.diff(J) > 0)  # not monotone: each J{t} is a different mini-batch
    w = max(4, len(J) // 10)
    avg = moving_average(J, w)
    assert avg[-1] < avg[w - 1]
    blocks = [J[i : i + w].mean() for i in range(0, len(J) - w + 1, w)]
    assert blocks[-1] < blocks[0]


def test_compare_figure(runs):
    from deepgrad.plotting import batch as batchplots

    fig = batchplots.compare_figure(runs, title="t")
    assert [ax.get_title() for ax in fig.axes] == [
        "cost per iteration",
        "cost vs wall-clock time",
        "cost vs examples seen",
    ]
    assert len(fig.axes[0].get_legend().get_texts()) == 4


def test_cli_compare_batch(tmp_path, capsys):
    rc = main(
        [
            "compare-batch",
            "--examples",
            "1500",
            "--features",
            "6",
            "--hidden",
            "8",
            "--epochs",
            "3",
            "--batch-sizes",
            "500,64",
            "--sgd-examples",
            "100",
            "--sgd-epochs",
            "1",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    assert (tmp_path / "compare_batch.png").stat().st_size > 10_000
    summary = json.loads((tmp_path / "compare_batch.json").read_text())
    assert [s["iterations"] for s in summary] == [3, 9, 72, 100]
    assert "batch GD" in capsys.readouterr().out


def test_cli_sweep_batch(tmp_path, capsys):
    rc = main(
        [
            "sweep-batch",
            "--examples",
            "3000",
            "--features",
            "6",
            "--hidden",
            "16,8",
            "--sizes",
            "16,64,256,1000",
            "--steps",
            "4",
            "--warmup-epochs",
            "1",
            "--plot",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 0
    out = capsys.readouterr().out
    assert "B_simple =" in out and "recommended batch size:" in out
    res = json.loads((tmp_path / "sweep_batch.json").read_text())
    assert [r["batch_size"] for r in res["rows"]] == [16, 64, 256, 1000]
    assert res["recommended"] in (16, 64, 256, 1000) and res["reason"]
    assert (tmp_path / "sweep_batch.png").is_file()


def test_cli_sweep_batch_time_to_target(tmp_path, capsys):
    args = ["sweep-batch", "--examples", "3000", "--features", "6", "--hidden", "16"]
    args += ["--sizes", "32,3000", "--steps", "3", "--warmup-epochs", "0", "--lr", "0.5"]
    args += ["--target-cost", "0.6", "--max-epochs", "3", "--plot", "--out", str(tmp_path)]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert "time to J <= 0.6" in out and "not reached" in out
    assert "fastest to the target: batch size 32" in out
    res = json.loads((tmp_path / "sweep_batch.json").read_text())["time_to_target"]
    assert res["target_cost"] == 0.6 and [r["batch_size"] for r in res["runs"]] == [32, 3000]
    assert res["runs"][0]["reached"] and not res["runs"][1]["reached"]
    assert (tmp_path / "sweep_batch.png").stat().st_size > 10_000


@pytest.mark.parametrize(
    "flag,value", [("--target-cost", "-1"), ("--max-epochs", "0"), ("--window", "0")]
)
def test_cli_sweep_batch_bad_target_options(tmp_path, capsys, flag, value):
    args = ["sweep-batch", "--examples", "200", "--features", "3", "--sizes", "16"]
    args += ["--target-cost", "0.5", flag, value, "--out", str(tmp_path / "o")]
    assert main(args) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and flag in err[0]
    assert not (tmp_path / "o").exists()


def test_cli_sweep_batch_size_too_large(tmp_path, capsys):
    rc = main(
        [
            "sweep-batch",
            "--examples",
            "100",
            "--features",
            "4",
            "--sizes",
            "64,128",
            "--out",
            str(tmp_path),
        ]
    )
    assert rc == 2
    assert "larger than the data set" in capsys.readouterr().err
