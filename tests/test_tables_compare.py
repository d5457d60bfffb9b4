"""bench/tables_compare.py (docs/tables.md) runs end to end on one small table: the CSV
files a user writes, deepgrad's CLI with default flags, scikit-learn on the same split."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("pandas")
pytest.importorskip("sklearn")
pytest.importorskip("vega_datasets")

BENCH = Path(__file__).resolve().parents[1] / "bench" / "tables_compare.py"
SRC = str(Path(__file__).resolve().parents[1] / "src")


@pytest.mark.slow
def test_the_comparison_runs_and_scores_both_sides_on_the_same_rows(tmp_path):
    out = tmp_path / "r.json"
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--seeds", "1", "--only", "barley", "--json", str(out)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "PYTHONPATH": SRC},
    )
    assert proc.returncode in (0, 1), proc.stderr  # 1: a table missed its bar
    (table,) = json.loads(out.read_text())["tables"]
    assert table["table"] == "barley" and table["metric"] == "R2"
    assert set(table["mean"]) == {"deepgrad", "Ridge", "MLPRegressor"}
    assert all(-1 < v <= 1 for v in table["mean"].values())
    # deepgrad's own column roles: the two text columns one-hot, pandas' index dropped
    assert table["columns_used"] == ["variety", "year", "site"]
    assert "the unnamed first column (row labels, an index) dropped" in table["encoding_lines"][0]
    assert "| barley (vega_datasets), target yield |" in proc.stdout
