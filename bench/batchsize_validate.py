"""Does sweep-batch's (batch size, learning rate) hold? The docs table of docs/batchsize.md.

Every problem runs ``deepgrad sweep-batch --validate --lr-factors 0.5,1,2`` (the command a
user runs, in this process) on the problem saved as a .npz: the candidate sizes, each at
its recommended rate and at half and twice it, train from the same initial parameters to
the target. The bar (a timing, so a quiet machine): the recommended pair reaches the
target within 1.25x the wall time of the fastest pair of that grid, and the fastest size
lies inside the reported band.

The target of a problem is the cost a plain pilot run (batch 64, lr 0.1, half the epoch
budget) reaches at its end: a cost known to be reachable, not one tuned for the pick.

    python bench/batchsize_validate.py [--quick] [--json FILE] [--markdown FILE] [--figures DIR]
        [--noise-scale simple|full]

--noise-scale full: sweep-batch's rates and band from B_noise (Hessian-vector products)
instead of B_simple; the table's noise column is then B_noise.

--quick: tiny sizes to prove the script runs (its numbers mean nothing).
"""

from __future__ import annotations

import argparse
import json
import platform
import shutil
import tempfile
from pathlib import Path

import numpy as np

# name, data, hidden, epochs
PROBLEMS = [
    ("synthetic 20 features, [64, 32]", ("synthetic", 20, 0.05, 1), "64,32", 10),
    ("synthetic 20 features, [256, 128, 64]", ("synthetic", 20, 0.05, 0), "256,128,64", 10),
    ("synthetic 50 features, deep [32]x5", ("synthetic", 50, 0.05, 2), "32,32,32,32,32", 10),
    ("synthetic 20 features, label noise 0.2", ("synthetic", 20, 0.2, 3), "64,32", 10),
    ("digits (bundled)", ("bundled", "digits"), "64", 30),
    ("breast cancer (bundled)", ("bundled", "breast_cancer"), "32,16", 30),
    ("Seattle weather (vega_datasets table)", ("table", "seattle-weather"), "32,16", 30),
]


def _arrays(spec, examples: int):
    """(X, y) of one problem."""
    from deepgrad.data import arrays, bundled

    if spec[0] == "synthetic":
        _, n, noise, seed = spec
        return arrays.synthetic(examples, n, seed=seed, noise=noise)
    if spec[0] == "bundled":
        X, y, _ = bundled.load_bundled(spec[1], scale="minmax")
        return X, y
    from vega_datasets import local_data

    df = local_data.seattle_weather()
    month = df["date"].dt.month.to_numpy()
    cols = ["precipitation", "temp_max", "temp_min", "wind"]
    X = np.column_stack(
        [df[cols].to_numpy(float), np.sin(month / 6 * np.pi), np.cos(month / 6 * np.pi)]
    )
    X = (X - X.mean(axis=0)) / X.std(axis=0)
    y = np.unique(df["weather"].to_numpy(str), return_inverse=True)[1]
    return X, y.astype(np.int64)


def _target(X, y, hidden: str, epochs: int, seed: int) -> float:
    import deepgrad as dg
    from deepgrad.cli.sources import guess_output, n_outputs
    from deepgrad.diagnostics import batchsize

    output = guess_output(y)
    layers = [X.shape[1], *map(int, hidden.split(",")), n_outputs(y, output)]
    net = dg.Network(layers, "relu", output, seed=seed)
    h = net.fit(X, y, batch_size=64, epochs=max(1, epochs // 2), learning_rate=0.1,
                seed=seed, progress=False)  # fmt: skip
    return float(batchsize.moving_cost(h, max(64, X.shape[0] // 10))[-1])


def _one(
    name, spec, hidden, epochs, examples, work: Path, quick: bool, figure=None, noise="simple"
) -> dict:
    from deepgrad.cli.main import main

    X, y = _arrays(spec, examples)
    target = _target(X, y, hidden, epochs, 0)
    data = work / f"{abs(hash(name))}.npz"
    np.savez(data, X=X, y=y)
    out = work / f"out{abs(hash(name))}"
    args = ["sweep-batch", "--data", str(data), "--hidden", hidden, "--activation", "relu",
            "--target-cost", f"{target:.6g}", "--max-epochs", str(epochs), "--validate",
            "--lr-factors", "0.5,1,2", "--out", str(out), "--quiet",
            "--noise-scale", noise]  # fmt: skip
    if quick:
        args += ["--sizes", "32,128", "--steps", "3", "--range-examples", "500"]
    if figure is not None:
        args.append("--plot")
    rc = main(args)
    if figure is not None:
        shutil.copyfile(out / "validation.png", figure)
    res = json.loads((out / "sweep_batch.json").read_text())
    v = res["validation"]
    full = res.get("b_noise")
    return {
        "problem": name,
        "rows": int(X.shape[0]),
        "rc": rc,
        "target": target,
        "noise_scale": noise,
        "b_simple": res["noise_scale"]["b_simple"],
        "b_noise": None if full is None else full["b_noise"],
        "interval": [res["interval"]["low"], res["interval"]["high"]]
        if full is None
        else [full["low"], full["high"]],
        "band": res["band"],
        "recommended": v["recommended"],
        "fastest": v["fastest"],
        "ratio": v["ratio"],
        "passed": v["passed"],
        "fastest_in_band": v["fastest_in_band"],
        "message": v["message"],
    }


def _markdown(rows) -> str:
    noise = "B_noise" if rows and rows[0].get("b_noise") is not None else "B_simple"
    head = (
        f"| problem | {noise} [90% CI] | band | recommended (B, lr) | fastest (B, lr) "
        "| ratio | <= 1.25x | fastest in band |\n|---|---|---|---|---|---:|---|---|\n"
    )
    lines = []
    for r in rows:
        lo, hi = r["interval"]
        rec = (
            "-" if r["recommended"] is None else f"{r['recommended'][0]}, {r['recommended'][1]:.3g}"
        )
        fast = "-" if r["fastest"] is None else f"{r['fastest'][0]}, {r['fastest'][1]:.3g}"
        ratio = "never reached" if r["ratio"] is None else f"{r['ratio']:.2f}x"
        b = r["b_simple"] if r.get("b_noise") is None else r["b_noise"]
        lines.append(
            f"| {r['problem']} | {b:.0f} [{lo:.0f}, {hi:.0f}] | "
            f"{min(r['band'])}-{max(r['band'])} | {rec} | {fast} | {ratio} | "
            f"{'yes' if r['passed'] else 'no'} | {'yes' if r['fastest_in_band'] else 'no'} |"
        )
    return head + "\n".join(lines) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--quick", action="store_true", help="tiny sizes: prove it runs")
    ap.add_argument("--examples", type=int, default=20_000, help="synthetic rows (20,000)")
    ap.add_argument("--json", default="docs/batchsize_validate.json")
    ap.add_argument("--markdown", default="docs/batchsize_validate.md")
    ap.add_argument(
        "--figures",
        help="also write each problem's validation.png here as batchsize_validation_K.png",
    )
    ap.add_argument("--noise-scale", choices=["simple", "full"], default="simple")
    a = ap.parse_args()
    examples = 2000 if a.quick else a.examples
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        for k, (name, spec, hidden, epochs) in enumerate(PROBLEMS, 1):
            ep = 2 if a.quick else epochs
            fig = None if a.figures is None else Path(a.figures) / f"batchsize_validation_{k}.png"
            rows.append(
                _one(name, spec, hidden, ep, examples, Path(tmp), a.quick, fig, a.noise_scale)
            )
            print(f"{name}: {rows[-1]['message']}", flush=True)
    Path(a.json).write_text(
        json.dumps({"machine": platform.platform(), "quick": a.quick, "rows": rows}, indent=1)
    )
    Path(a.markdown).write_text(_markdown(rows))
    print(_markdown(rows))


if __name__ == "__main__":
    main()
