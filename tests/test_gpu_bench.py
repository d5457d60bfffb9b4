"""bench/gpu_train.py runs end to end on torch CPU at a tiny size (the GPU run is one-shot)."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

BENCH = Path(__file__).resolve().parents[1] / "bench" / "gpu_train.py"


def _load():
    spec = importlib.util.spec_from_file_location("gpu_train", BENCH)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


@pytest.mark.slow
def test_gpu_bench_runs_on_cpu_and_writes_json(tmp_path, capsys):
    bench = _load()
    out = tmp_path / "r.json"
    rc = bench.main(
        [
            "--device",
            "cpu",
            "--examples",
            "2500",
            "--batch-sizes",
            "1000,2048",
            "--repeats",
            "1",
            "--slow-examples",
            "2000",
            "--agree-batch",
            "8",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    report = json.loads(out.read_text())
    rows = {(r["method"], r["batch_size"]): r for r in report["results"]}
    for b in (1000, 2048):
        for method in (
            "deepgrad fast path",
            "deepgrad generic path",
            "PyTorch eager",
            "matmul floor (CUDA graphs)",
        ):
            row = rows[(method, b)]
            assert row["error"] is None and row["epoch_s"] > 0, row
        assert rows[("PyTorch, CUDA graph per step", b)]["error"] == "skipped: needs CUDA"
        for method in ("JAX jit of one step", "JAX lax.scan over the epoch"):
            assert (method, b) in rows  # measured, or skipped/failed with the reason
    slow = rows[("PyTorch eager", 1000)]
    assert slow["extrapolated_from"] == 2000
    assert rows[("deepgrad fast path", 1000)]["extrapolated_from"] is None
    agree = report["agreement"]
    assert len(agree) == 6 and all(np.isfinite(a["max_rel_diff"]) for a in agree)
    assert all(a["ok"] for a in agree if a["dtype"] == "float64" or a["hidden"] == "tanh")
    text = capsys.readouterr().out
    assert "| deepgrad fast path |" in text and "agreement fast float64 relu" in text


def test_gpu_bench_rejects_bad_flags(capsys):
    bench = _load()
    for argv in (
        ["--batch-sizes", "0"],
        ["--repeats", "50"],
        ["--batch-sizes", "x"],
        ["--examples", "10", "--batch-sizes", "100"],
    ):
        with pytest.raises(SystemExit) as info:
            bench.parse_args(argv)
        assert info.value.code == 2


VARIANTS = Path(__file__).resolve().parents[1] / "bench" / "gpu_variants.py"


@pytest.mark.slow
def test_gpu_variants_bench_runs_on_cpu(tmp_path, capsys):
    # children per variant; "streams" needs CUDA: skipped with the reason, the rest timed
    spec = importlib.util.spec_from_file_location("gpu_variants", VARIANTS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    out = tmp_path / "v.json"
    argv = ["--device", "cpu", "--examples", "2100", "--batch-sizes", "1000", "--repeats", "1",
            "--agree-batch", "8", "--variants", "base,gather,gather+streams@4", "--no-jax",
            "--json", str(out)]  # fmt: skip
    assert mod.main(argv) == 0
    report = json.loads(out.read_text())
    rows = {(r["method"], r["batch_size"]): r for r in report["results"]}
    for method in ("base", "gather", "matmul floor (CUDA graphs)"):
        assert rows[(method, 1000)]["error"] is None and rows[(method, 1000)]["epoch_s"] > 0
    assert rows[("gather+streams@4", 1000)]["error"].startswith("skipped: streams does not")
    assert rows[("gather", 1000)]["active"] == ["gather"]
    agree = report["agreement"]
    assert len(agree) == 6 and all(a["ok"] for a in agree)
    text = capsys.readouterr().out
    assert "| gather |" in text and "fastest agreeing variant at b=1000" in text


def test_gpu_variants_rejects_bad_variants():
    spec = importlib.util.spec_from_file_location("gpu_variants", VARIANTS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.parse_variant("gather+streams@16") == (("gather", "streams"), 16)
    assert mod.parse_variant("base") == ((), None)
    for argv in (["--variants", "gather+fusion"], ["--variants", "base@x"]):
        with pytest.raises(SystemExit) as info:
            mod.parse_args(argv)
        assert info.value.code == 2


def test_gpu_variants_keeps_rows_of_a_child_that_times_out():
    import sys

    spec = importlib.util.spec_from_file_location("gpu_variants", VARIANTS)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    code = "import time; print('ROW {\"batch_size\": 1}', flush=True); time.sleep(30)"
    items, error = mod.run_child([sys.executable, "-c", code], 2)
    assert items == [("ROW", {"batch_size": 1})]
    assert error == "child timed out after 2 s"
