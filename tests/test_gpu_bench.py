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
            "--configs",
            "gd,adam+exp",
            "--agree-batch",
            "8",
            "--json",
            str(out),
        ]
    )
    assert rc == 0
    report = json.loads(out.read_text())
    rows = {(r["method"], r["config"], r["batch_size"]): r for r in report["results"]}
    for b in (1000, 2048):
        for method in ("deepgrad (torch backend)", "matmul floor (CUDA graphs)"):
            row = rows[(method, "gd", b)]
            assert row["error"] is None and row["epoch_s"] > 0, row
        for config in ("gd", "adam+exp"):
            for method in ("deepgrad torch-graphs", "PyTorch eager"):
                row = rows[(method, config, b)]
                assert row["error"] is None and row["epoch_s"] > 0, row
            graph = rows[("PyTorch, CUDA graph per step", config, b)]
            assert graph["error"] == "skipped: needs CUDA"
            assert ("JAX lax.scan over the epoch", config, b) in rows  # or the reason
        assert rows[("deepgrad torch-graphs", "adam+exp", b)]["engine"] == "torch-graphs"
        assert ("JAX jit of one step", "gd", b) in rows
    slow = rows[("PyTorch eager", "gd", 1000)]
    assert slow["extrapolated_from"] == 2000
    assert rows[("matmul floor (CUDA graphs)", "gd", 1000)]["extrapolated_from"] is None
    assert [bar["config"] for bar in report["bars"]] == ["gd", "adam+exp"]
    assert report["bars"][1]["vs_gd"] > 0
    agree = report["agreement"]
    assert len(agree) == 3 and all(np.isfinite(a["max_rel_diff"]) for a in agree)
    assert all(a["ok"] for a in agree if a["dtype"] == "float64" or a["hidden"] == "tanh")
    text = capsys.readouterr().out
    assert "| deepgrad torch-graphs | adam+exp |" in text and "agreement torch float64 relu" in text


def test_gpu_bench_rejects_bad_flags(capsys):
    bench = _load()
    for argv in (
        ["--batch-sizes", "0"],
        ["--repeats", "50"],
        ["--batch-sizes", "x"],
        ["--examples", "10", "--batch-sizes", "100"],
        ["--configs", "adam,sgd"],
    ):
        with pytest.raises(SystemExit) as info:
            bench.parse_args(argv)
        assert info.value.code == 2
