"""Where the compiled engine stops beating numpy-shards: steps/s of both by layer width
and batch size (the crossover behind ``engines.compiled.fast_for``).

Net [10, h, h, 1] ReLU/sigmoid, Adam 1e-3, float32 (deepgrad's default), 4,096 synthetic
rows. Each (engine, h, batch) runs in a fresh process, ``--rounds`` rounds alternating
engines; the table gives the median steps/s and compiled / numpy-shards. Run it with
OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset (the kernel is printed).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

__all__ = ["main"]

WIDTHS = [4, 8, 16, 32, 64]
BATCHES = [16, 64, 256]
ENGINES = ["compiled", "numpy-shards"]


def _one(engine: str, h: int, batch: int) -> float:
    import numpy as np

    import deepgrad as dg

    rng = np.random.default_rng(0)
    X = rng.standard_normal((4096, 10))
    y = (X[:, 0] * X[:, 1] > 0).astype(int)
    kw = dict(batch_size=batch, optimizer="adam", learning_rate=1e-3, progress=False, seed=0)
    dg.Network([10, h, h, 1], seed=0).fit(X, y, epochs=1, engine=engine, **kw)  # warm
    epochs, took = 1, 0.0
    while took < 0.4:
        net = dg.Network([10, h, h, 1], seed=0)
        t = time.perf_counter()
        hist = net.fit(X, y, epochs=epochs, engine=engine, **kw)
        took = time.perf_counter() - t
        epochs *= 2
    return len(hist.iteration_cost) / took


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--json", default=None)
    ap.add_argument("--one", nargs=3, default=None, help=argparse.SUPPRESS)
    a = ap.parse_args(argv)
    if a.one:
        print(_one(a.one[0], int(a.one[1]), int(a.one[2])))
        return
    import numpy  # noqa: F401 - loads OpenBLAS, so that threadpoolctl sees it
    import threadpoolctl

    kernels = sorted({i.get("architecture", "?") for i in threadpoolctl.threadpool_info()})
    print(f"BLAS kernel: {', '.join(map(str, kernels))}")
    runs: dict = {}
    for _ in range(a.rounds):
        for h in WIDTHS:
            for batch in BATCHES:
                for engine in ENGINES:
                    cmd = [sys.executable, __file__, "--one", engine, str(h), str(batch)]
                    out = subprocess.run(cmd, capture_output=True, text=True, check=True)
                    runs.setdefault(f"{engine} {h} {batch}", []).append(float(out.stdout))
    rows = []
    print("| h | weights | batch | multiply-adds/step | compiled | numpy-shards | ratio |")
    print("|---:|---:|---:|---:|---:|---:|---:|")
    for h in WIDTHS:
        weights = 10 * h + h * h + h
        for batch in BATCHES:
            c = statistics.median(runs[f"compiled {h} {batch}"])
            s = statistics.median(runs[f"numpy-shards {h} {batch}"])
            rows.append(dict(h=h, weights=weights, batch=batch, compiled=c, shards=s))
            print(f"| {h} | {weights} | {batch} | {weights * batch:,} | {c:,.0f} | {s:,.0f} "
                  f"| {c / s:.2f} |")  # fmt: skip
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"kernel": kernels, "rounds": a.rounds, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
