"""End-to-end tests of `deepgrad probe` and `deepgrad compare-init` (issue 4)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from deepgrad.cli.main import main


def test_probe_command_prints_tables_and_writes_plot_and_json(tmp_path, capsys):
    png, js = tmp_path / "probe.png", tmp_path / "probe.json"
    argv = [
        "probe",
        "--depth",
        "8",
        "--width",
        "64",
        "--activation",
        "relu",
        "--init",
        "he_normal,xavier_normal,random,lsuv",
        "--examples",
        "200",
        "--seed",
        "3",
        "--plot",
        str(png),
        "--json",
        str(js),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    for name in ("he_normal", "xavier_normal", "random", "lsuv"):
        assert f"== {name}: " in out
    assert "lr|dW|/|W|" in out
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    data = json.loads(js.read_text())
    assert data["config"]["depth"] == 8 and data["config"]["init"] == [
        "he_normal",
        "xavier_normal",
        "random",
        "lsuv",
    ]
    verdicts = {r["init"]: r["verdict"] for r in data["results"]}
    assert verdicts["he_normal"] == "stable"
    assert verdicts["random"] == "vanishing"  # 64 * 1e-4 / 2 = 0.0032 per layer
    assert verdicts["lsuv"] == "stable"
    he, lsuv = data["results"][0], data["results"][3]
    assert len(he["layers"]) == 9 and he["layers"][0]["predicted_a_second_moment"] > 0
    assert lsuv["layers"][0]["predicted_a_second_moment"] is None  # data-driven: no rule


def test_probe_command_json_is_strict_even_after_overflow(tmp_path, capsys):
    js = tmp_path / "p.json"
    argv = [
        "probe",
        "--depth",
        "45",
        "--width",
        "256",
        "--init",
        "standard_normal",
        "--examples",
        "40",
        "--dtype",
        "float32",
        "--json",
        str(js),
    ]
    assert main(argv) == 0
    data = json.loads(js.read_text(), parse_constant=lambda c: pytest.fail(f"{c} in JSON"))
    (std,) = data["results"]
    assert std["verdict"] == "exploding" and "inf/NaN" in std["verdict_reason"]
    assert "overflows" not in capsys.readouterr().err


@pytest.mark.parametrize(
    "flags, message",
    [
        (["--depth", "0"], "--depth must be an int >= 1, got 0"),
        (["--width", "0"], "--width must be an int >= 1, got 0"),
        (["--init", "he_normal,bogus"], "unknown initializer 'bogus'"),
        (["--init", ","], "at least one initializer"),
        (["--examples", "0"], "--examples must be an int >= 1"),
        (["--activation", "swish"], "hidden_activation must be one of"),
    ],
)
def test_probe_command_bad_input(tmp_path, capsys, flags, message):
    png = tmp_path / "never.png"
    assert main(["probe", "--depth", "2", "--width", "8", *flags, "--plot", str(png)]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not png.exists() and list(tmp_path.iterdir()) == []


def test_probe_command_missing_output_directory_fails_before_work(tmp_path, capsys):
    bad = tmp_path / "nope" / "p.png"
    assert main(["probe", "--depth", "2", "--width", "8", "--plot", str(bad)]) == 2
    err = capsys.readouterr()
    assert "does not exist" in err.err and "==" not in err.out


def test_compare_init_command(tmp_path, capsys):
    png, js = tmp_path / "ci.png", tmp_path / "ci.json"
    argv = [
        "compare-init",
        "--depth",
        "30",
        "--width",
        "32",
        "--epochs",
        "1",
        "--init",
        "he_normal,zeros,standard_normal",
        "--plot",
        str(png),
        "--json",
        str(js),
    ]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "he_normal" in out and "diverged" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    results = json.loads(js.read_text())["results"]
    assert results["standard_normal"]["outcome"] == "diverged"
    assert results["standard_normal"]["stopped"].startswith("diverged")
    zeros = results["zeros"]["iteration_cost"]
    assert results["zeros"]["outcome"] == "stalls"
    assert np.ptp(zeros) < 0.05 and abs(zeros[0] - np.log(10)) < 1e-3  # stuck at chance


def test_compare_init_bad_input(tmp_path, capsys):
    png = tmp_path / "ci.png"
    assert main(["compare-init", "--init", "nope", "--plot", str(png)]) == 2
    assert "unknown initializer 'nope'" in capsys.readouterr().err
    assert main(["compare-init", "--depth", "0", "--plot", str(png)]) == 2
    assert main(["compare-init", "--lr", "-1", "--plot", str(png)]) == 2
    assert main(["compare-init", "--data", str(tmp_path / "x.npz"), "--plot", str(png)]) == 2
    assert not png.exists()
