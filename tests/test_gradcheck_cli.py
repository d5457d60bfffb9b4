"""``deepgrad gradcheck`` end to end: fresh networks, a model saved by ``deepgrad train``,
planted bugs (exit 1), the plot, and bad input (exit 2)."""

from __future__ import annotations

import numpy as np
import pytest

from deepgrad.cli import main as cli


def run(capsys, *argv):
    code = cli.main(["gradcheck", *argv])
    out = capsys.readouterr()
    return code, out.out, out.err


def test_fresh_network_passes(capsys):
    code, out, _ = run(capsys, "--layers", "6,8,8,3", "--examples", "10")
    assert code == 0
    assert "gradient check PASSED" in out and "W1" in out and "b3" in out


def test_planted_bug_fails_and_points_at_its_array(capsys, tmp_path):
    png = tmp_path / "errors.png"
    code, out, _ = run(
        capsys,
        "--layers",
        "6,8,8,3",
        "--examples",
        "10",
        "--plant-bug",
        "db-missing",
        "--plot",
        str(png),
    )
    assert code == 1
    assert "gradient check FAILED" in out and "planted bug: db-missing" in out
    first = out.split("failing elements (worst first")[1].splitlines()[1].strip()
    assert first.startswith("b")  # e.g. "b2[3]: numerical ..., backprop 0, error 1.0e+00"
    assert png.stat().st_size > 10_000 and png.read_bytes()[:4] == b"\x89PNG"


def test_bug_needing_l2_or_dropout_gets_it_by_default(capsys):
    code, out, _ = run(
        capsys, "--layers", "5,6,6,2", "--examples", "8", "--plant-bug", "dropout-mask-missing"
    )
    assert code == 1 and "keep_prob 0.8" in out
    code, out, _ = run(capsys, "--layers", "5,6,6,2", "--examples", "8", "--plant-bug", "l2-factor")
    assert code == 1 and "l2 0.1" in out
    assert "W" in out.split("failing elements (worst first")[1].splitlines()[1]


@pytest.mark.slow
def test_model_saved_by_train_is_checked(capsys, tmp_path):
    code = cli.main(
        [
            "train",
            "--data",
            "iris",
            "--hidden",
            "8,8",
            "--activation",
            "tanh",
            "--epochs",
            "3",
            "--l2",
            "0.1",
            "--quiet",
            "--out",
            str(tmp_path),
        ]
    )
    assert code == 0
    capsys.readouterr()
    model = tmp_path / "model.npz"
    code, out, _ = run(
        capsys, "--model", str(model), "--data", "iris", "--examples", "20", "--l2", "0.1"
    )
    assert code == 0, out
    assert "Network([4, 8, 8, 3]" in out and "PASSED" in out
    code, out, _ = run(
        capsys, "--model", str(model), "--examples", "20", "--plant-bug", "transposed-dW"
    )
    assert code == 1 and "W1[" in out


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_dtype_and_method_options(capsys, dtype):
    code, out, _ = run(capsys, "--layers", "6,8,8,3", "--examples", "10", "--dtype", dtype)
    assert code == 0 and f"exact {dtype}" in out and f"dtype='{dtype}'" in out
    code, out, _ = run(
        capsys,
        "--layers",
        "6,8,8,3",
        "--examples",
        "10",
        "--dtype",
        dtype,
        "--plant-bug",
        "db-missing",
    )
    assert code == 1 and "x floor" in out
    code, out, _ = run(
        capsys, "--layers", "6,8,8,3", "--examples", "10", "--dtype", dtype, "--method", "plain"
    )
    assert code == 0 and f"plain {dtype}" in out


def test_relu_network_reports_kinks_not_failures(capsys):
    code, out, _ = run(capsys, "--layers", "6,8,8,3", "--activation", "relu", "--examples", "12")
    assert code == 0 and "kinks" in out


@pytest.mark.parametrize(
    "argv, message",
    [
        (["--eps", "0"], "eps must be"),
        (["--eps", "1e-14"], "eps must be in [1e-12, 0.1] for a float64 check"),
        (["--dtype", "float32", "--eps", "1e-9"], "for a float32 check"),
        (["--examples", "0"], "--examples must be"),
        (["--layers", "4,5,3", "--sample", "100000"], "sample must be"),
        (["--plant-bug", "relu-wrong-side", "--activation", "tanh"], "needs a relu network"),
        (["--plant-bug", "l2-factor", "--l2", "0"], "needs --l2 > 0"),
        (["--model", "does-not-exist.npz"], "does not exist"),
        (["--activation", "swish"], "hidden_activation must be one of"),
    ],
)
def test_bad_input_is_one_line_and_exit_2(capsys, argv, message):
    code, out, err = run(capsys, *argv)
    assert code == 2
    assert message in err and len(err.strip().splitlines()) == 1


def test_unknown_bug_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as exc:
        cli.main(["gradcheck", "--plant-bug", "nope"])
    assert exc.value.code == 2


def test_demo_check_prints_a_line_and_the_table(capsys):
    import deepgrad as dg
    from deepgrad.cli.gradcheck import demo_check

    net = dg.Network([4, 6, 3], "relu", "softmax", seed=0)
    X = np.random.default_rng(0).normal(size=(50, 4))
    ok = demo_check(net, X, np.arange(50) % 3, l2=1.0, l2_normalization=50, seed=0)
    out = capsys.readouterr().out
    assert ok and "gradient check of backprop on 32 held-out examples" in out
    assert "parameter" in out and "W1" in out
