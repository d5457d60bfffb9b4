"""Benchmark: deepgrad's CLI on real tables against scikit-learn pipelines (not a test).

Every table ships inside a package on PyPI (vega_datasets, statsmodels) and is written to
CSV the way a user would (``DataFrame.to_csv(path)``: the pandas index column included, text
and missing cells kept). For each table and seed the rows are split once (80/20, stratified
for a classification, rows with a missing target left out first) and both sides see the same
two files:

- **deepgrad**, default flags: ``deepgrad train --data train.csv --target T --test-fraction 0``
  (the held-out rows are already apart), then ``deepgrad predict --data test.csv --out
  pred.csv``: column roles, fills, one-hot, dropped columns and the saved encoding are its own.
- **scikit-learn**: a ``ColumnTransformer`` (numeric: ``SimpleImputer(median,
  add_indicator=True)`` + ``StandardScaler``; text: ``SimpleImputer(constant)`` +
  ``OneHotEncoder(handle_unknown="ignore")``) in front of LogisticRegression and
  MLPClassifier, or Ridge and MLPRegressor, on the columns deepgrad kept (a user drops the
  name, date and index columns by hand; the same columns make it a comparison of models, not
  of column choice).

Score: held-out accuracy (classification) or R2 (regression), the mean over the seeds. Bar
(issue 21): deepgrad within 0.02 accuracy / 0.05 R2 of the better scikit-learn model, or
better.

Run: ``python bench/tables_compare.py [--seeds 5] [--json docs/tables_compare.json]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd

BARS = {"classification": 0.02, "regression": 0.05}


def _vega(name):
    from vega_datasets import local_data

    return getattr(local_data, name.replace("-", "_"))()


def _diabetes():
    from sklearn.datasets import load_diabetes

    return load_diabetes(as_frame=True, scaled=False).frame


def _statsmodels(name):
    import importlib

    return importlib.import_module(f"statsmodels.datasets.{name}").load_pandas().data


# (name, source, loader, target, task, what it exercises)
TABLES = [
    ("cars", "vega_datasets", lambda: _vega("cars"), "Origin", "classification",
     "gaps in 2 numeric columns, a name column, a date column"),
    ("seattle-weather", "vega_datasets", lambda: _vega("seattle-weather"), "weather",
     "classification", "a text target with 5 classes, a date column"),
    ("barley", "vega_datasets", lambda: _vega("barley"), "yield", "regression",
     "two text columns (variety, site), year"),
    ("grunfeld", "statsmodels", lambda: _statsmodels("grunfeld"), "invest", "regression",
     "a text column (firm)"),
    ("anes96", "statsmodels", lambda: _statsmodels("anes96"), "vote", "classification",
     "survey codes, all numeric"),
    ("diabetes", "scikit-learn", _diabetes, "target", "regression",
     "a noisy target of 214 whole numbers (needs --task regression)"),
]  # fmt: skip
# what a table needs said (not tuning): diabetes' target could be 214 classes
TASK_FLAGS = {"diabetes": ["--task", "regression"]}


def split(frame: pd.DataFrame, target: str, task: str, seed: int):
    from sklearn.model_selection import train_test_split

    frame = frame[frame[target].notna()].reset_index(drop=True)
    strat = frame[target] if task == "classification" else None
    return train_test_split(frame, test_size=0.2, random_state=seed, stratify=strat)


def deepgrad_run(train: Path, test: Path, target: str, work: Path, seed: int, flags=()):
    """(predictions as strings, the columns the model used, the encoding lines)."""
    exe = [sys.executable, "-m", "deepgrad"]
    out = work / "model"
    done = subprocess.run(
        [*exe, "train", "--data", str(train), "--target", target, "--test-fraction", "0",
         "--seed", str(seed), "--out", str(out), *flags],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done.returncode != 0:
        raise RuntimeError(f"deepgrad train failed:\n{done.stdout}\n{done.stderr}")
    pred = work / "pred.csv"
    done_p = subprocess.run(
        [*exe, "predict", "--model", str(out / "model.npz"), "--data", str(test),
         "--out", str(pred), "--force"],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if done_p.returncode != 0:
        raise RuntimeError(f"deepgrad predict failed:\n{done_p.stdout}\n{done_p.stderr}")
    import deepgrad as dg

    encoder = dg.load(out / "model.npz").preprocessing.columns
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(("columns:", "data:"))]
    return pd.read_csv(pred, dtype=str)["prediction"], encoder, lines


def with_dates_as_numbers(frame: pd.DataFrame, encoder) -> tuple[pd.DataFrame, list[str]]:
    """The columns deepgrad kept, for scikit-learn: a date column replaced by the same
    numbers deepgrad makes of it (years; the day of the year's sin and cos), so that
    both sides see the same information."""
    from deepgrad.data.columns import TableEncoder

    out = {}
    for c in encoder.columns:
        if c.kind == "date":
            values = TableEncoder((c,)).transform(frame[[c.name]])
            for j, name in enumerate(c.output_names):
                out[name] = values[:, j]
        else:
            out[c.name] = frame[c.name]
    return pd.DataFrame(out, index=frame.index), list(out)


def sklearn_models(task: str, numeric, text, seed: int):
    from sklearn.compose import ColumnTransformer
    from sklearn.impute import SimpleImputer
    from sklearn.linear_model import LogisticRegression, Ridge
    from sklearn.neural_network import MLPClassifier, MLPRegressor
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import OneHotEncoder, StandardScaler

    def prep():
        parts = []
        if numeric:
            parts.append(
                ("num", make_pipeline(
                    SimpleImputer(strategy="median", add_indicator=True), StandardScaler()
                ), numeric)
            )  # fmt: skip
        if text:
            parts.append(
                ("text", make_pipeline(
                    SimpleImputer(strategy="constant", fill_value="(missing)"),
                    OneHotEncoder(handle_unknown="ignore"),
                ), text)
            )  # fmt: skip
        return ColumnTransformer(parts)

    if task == "classification":
        return {
            "LogisticRegression": make_pipeline(prep(), LogisticRegression(max_iter=2000)),
            "MLPClassifier": make_pipeline(prep(), MLPClassifier(max_iter=1000, random_state=seed)),
        }
    return {
        "Ridge": make_pipeline(prep(), Ridge()),
        "MLPRegressor": make_pipeline(prep(), MLPRegressor(max_iter=2000, random_state=seed)),
    }


def score(task: str, truth, pred) -> float:
    from sklearn.metrics import accuracy_score, r2_score

    if task == "classification":
        return float(accuracy_score(truth.astype(str).str.strip(), pred.astype(str).str.strip()))
    return float(r2_score(truth.astype(float), pred.astype(float)))


def run_table(name, loader, target, task, seeds, work: Path, flags=()):
    frame = loader()
    rows = []
    for seed in range(seeds):
        train, test = split(frame, target, task, seed)
        d = work / f"{name}-{seed}"
        d.mkdir()
        train.to_csv(d / "train.csv")  # as a user would: the index column included
        test.to_csv(d / "test.csv")
        t0 = time.perf_counter()
        flags_here = [*TASK_FLAGS.get(name, []), *flags]
        pred, encoder, lines = deepgrad_run(
            d / "train.csv", d / "test.csv", target, d, seed, flags_here
        )
        dg_seconds = time.perf_counter() - t0
        # scikit-learn reads the same files, with the columns deepgrad kept
        tr, te = pd.read_csv(d / "train.csv"), pd.read_csv(d / "test.csv")
        ytr, yte = tr[target], te[target]
        if task == "classification":
            ytr, yte = ytr.astype(str), yte.astype(str)
        (tr, used), (te, _) = with_dates_as_numbers(tr, encoder), with_dates_as_numbers(te, encoder)
        text = [c for c in used if not pd.api.types.is_numeric_dtype(tr[c])]
        numeric = [c for c in used if c not in text]
        row = {"seed": seed, "deepgrad": score(task, yte, pred), "used": used,
               "deepgrad_seconds": dg_seconds, "lines": lines}  # fmt: skip
        for model_name, model in sklearn_models(task, numeric, text, seed).items():
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # MLP convergence warnings
                t0 = time.perf_counter()
                model.fit(tr[used], ytr)
                row[model_name + "_seconds"] = time.perf_counter() - t0
            row[model_name] = score(task, yte, pd.Series(model.predict(te[used])))
        rows.append(row)
        shutil.rmtree(d)
    return frame.shape, rows


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--json", help="write the results here")
    ap.add_argument("--only", help="comma-separated table names")
    ap.add_argument("--flags", default="", help="extra flags for deepgrad train (default none)")
    args = ap.parse_args(argv)
    import sklearn

    import deepgrad

    only = set(args.only.split(",")) if args.only else None
    print(
        f"deepgrad {deepgrad.__version__}, scikit-learn {sklearn.__version__}, "
        f"pandas {pd.__version__}, Python {platform.python_version()}, {args.seeds} seeds"
    )
    results = []
    header = "| table (source) | rows x cols | task | deepgrad | best scikit-learn | gap | bar |"
    lines = [header, "|---|---|---|---:|---:|---:|---|"]
    with tempfile.TemporaryDirectory() as tmp:
        for name, source, loader, target, task, what in TABLES:
            if only and name not in only:
                continue
            shape, rows = run_table(
                name, loader, target, task, args.seeds, Path(tmp), args.flags.split()
            )
            models = [k for k in rows[0] if k not in ("seed", "used", "lines")
                      and not k.endswith("_seconds") and k != "deepgrad"]  # fmt: skip
            mean = {k: float(np.mean([r[k] for r in rows])) for k in ["deepgrad", *models]}
            best = max(models, key=lambda k: mean[k])
            gap = mean["deepgrad"] - mean[best]
            ok = gap >= -BARS[task]
            metric = "accuracy" if task == "classification" else "R2"
            results.append({
                "table": name, "source": source, "target": target, "task": task,
                "metric": metric, "shape": list(shape), "what": what, "mean": mean,
                "best_sklearn": best, "gap": gap, "bar": BARS[task], "passed": ok,
                "columns_used": rows[0]["used"], "encoding_lines": rows[0]["lines"],
                "seeds": rows,
            })  # fmt: skip
            others = ", ".join(f"{k} {mean[k]:.3f}" for k in models)
            print(f"{name}: deepgrad {mean['deepgrad']:.3f} | {others} | gap {gap:+.3f}")
            for ln in rows[0]["lines"]:
                print("   ", ln)
            lines.append(
                f"| {name} ({source}), target {target} | {shape[0]} x {shape[1]} | {metric} "
                f"| {mean['deepgrad']:.3f} | {mean[best]:.3f} ({best}) | {gap:+.3f} | "
                f"{'within' if ok else 'MISSED'} {BARS[task]:g} |"
            )
    print("\n".join(lines))
    if args.json:
        Path(args.json).write_text(json.dumps({"tables": results}, indent=1) + "\n")
    return 0 if all(r["passed"] for r in results) else 1


if __name__ == "__main__":
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    raise SystemExit(main())
