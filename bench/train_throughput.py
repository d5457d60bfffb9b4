"""Training throughput on workload T1: deepgrad (NumPy fast path) vs PyTorch eager, CPU.

T1: layers [100, 256, 128, 64, 1], ReLU hidden, sigmoid output, binary cross-entropy +
L2 (lambda = 0.01, divided by the batch size as in the seed), plain mini-batch gradient
descent (lr = 0.1), float32, 500,000 examples in memory, shuffled every epoch.

Both run one full epoch per measurement with the same number of threads (the BLAS
threads NumPy uses, given to torch.set_num_threads). Measurements are interleaved
(deepgrad, torch, deepgrad, torch, ...) and the median is reported, so a neighbour's load
hits both sides alike; the ratio is taken within this run.

The ceiling: FLOPs of one training step (forward Z = A W^T, backward dW = dZ^T A and
dA = dZ W, 2*m*n_in*n_out each) divided by the time NumPy's float32 matmul takes for
exactly those products at the same shapes (preallocated outputs, best of several runs).
It ignores everything that is not a matrix product, so no NumPy implementation can pass
it. "per CPU-second" is examples per second of process CPU time: with 1 thread it is what
wall-clock throughput would be without the neighbours' load (on a shared machine the most
stable number); with more threads it also counts time spent spinning in thread pools.

    python bench/train_throughput.py [--examples 500000] [--repeats 3] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time

import numpy as np

import deepgrad as dg
from deepgrad.data import arrays as data

LAYERS = [100, 256, 128, 64, 1]
BATCH_SIZES = [64, 256, 1000, 4096]
L2, LR = 0.01, 0.1


def blas_threads() -> int:
    try:
        from threadpoolctl import threadpool_info

        return max(i["num_threads"] for i in threadpool_info() if i["user_api"] == "blas")
    except (ImportError, ValueError):
        return os.cpu_count() or 1


def blas_info() -> str:
    try:
        from threadpoolctl import threadpool_info

        i = [i for i in threadpool_info() if i["user_api"] == "blas"][0]
        arch, n = i.get("architecture"), i["num_threads"]
        return f"{i['internal_api']} {i['version']} ({arch}, {n} threads)"
    except (ImportError, IndexError):
        return "unknown"


def deepgrad_epoch(X, y, b: int, seed: int) -> tuple[float, float]:
    net = dg.Network(LAYERS, "relu", "sigmoid", init="he_normal", seed=0)
    t, c = time.perf_counter(), time.process_time()
    h = net.fit(X, y, batch_size=b, epochs=1, learning_rate=LR, l2=L2, seed=seed, progress=False)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return len(X) / wall, len(X) / cpu, h.epoch_cost[-1]


def torch_epoch(torch, Xt, yt, b: int, seed: int) -> tuple[float, float]:
    from train_engines import _torch_model, _torch_optimizer  # the same model and optimizer

    nn = torch.nn
    model = _torch_model(torch, "gd")
    opt = _torch_optimizer(torch, model, "gd", b)
    loss_fn = nn.BCEWithLogitsLoss()
    m = Xt.shape[0]
    g = torch.Generator().manual_seed(seed)
    t, c = time.perf_counter(), time.process_time()
    perm = torch.randperm(m, generator=g)
    total = 0.0
    for s in range(0, m, b):
        idx = perm[s : s + b]
        xb, yb = Xt.index_select(0, idx), yt.index_select(0, idx)
        opt.param_groups[0]["weight_decay"] = L2 / len(idx)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        total += loss.detach() * len(idx)
    wall, cpu = time.perf_counter() - t, time.process_time() - c
    return m / wall, m / cpu, float(total) / m


def step_flops(b: int) -> float:
    f = 0
    for i in range(1, len(LAYERS)):
        f += 2 * b * LAYERS[i] * LAYERS[i - 1] * (3 if i > 1 else 2)
    return float(f)


def matmul_ceiling(b: int, repeats: int = 5) -> tuple[float, float]:
    """(GFLOP/s of NumPy float32 matmul at the step's shapes, examples/s ceiling)."""
    rng = np.random.default_rng(0)
    ops = []
    for i in range(1, len(LAYERS)):
        n_in, n_out = LAYERS[i - 1], LAYERS[i]
        A = rng.standard_normal((b, n_in), dtype=np.float32)
        W = rng.standard_normal((n_out, n_in), dtype=np.float32)
        dZ = rng.standard_normal((b, n_out), dtype=np.float32)
        ops.append((A, W.T, np.empty((b, n_out), np.float32)))  # forward
        ops.append((dZ.T, A, np.empty((n_out, n_in), np.float32)))  # dW
        if i > 1:
            ops.append((dZ, W, np.empty((b, n_in), np.float32)))  # dA
    n = max(3, 20000 // b)
    best = float("inf")
    for _ in range(repeats):
        t = time.perf_counter()
        for _ in range(n):
            for a, w, out in ops:
                np.matmul(a, w, out=out)
        best = min(best, (time.perf_counter() - t) / n)
    return step_flops(b) / best / 1e9, b / best


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--examples", type=int, default=500_000)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument(
        "--batch-sizes", type=lambda s: [int(v) for v in s.split(",")], default=BATCH_SIZES
    )
    p.add_argument(
        "--threads",
        type=lambda s: [int(v) for v in s.split(",")],
        help="thread counts to run the table at, e.g. 2,1 (default: NumPy's BLAS "
        "threads); NumPy via threadpoolctl, torch via set_num_threads",
    )
    p.add_argument("--json", help="also write the results here")
    p.add_argument("--verbose", action="store_true", help="print every measurement")
    args = p.parse_args(argv)
    results = []
    for threads in args.threads or [blas_threads()]:
        results.append(run_table(args, threads))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(results, f, indent=1)
    return 0


def run_table(args, threads: int) -> dict:
    import torch
    from threadpoolctl import threadpool_limits

    torch.set_num_threads(threads)
    with threadpool_limits(threads, user_api="blas"):
        return _table(args, torch, threads)


def _table(args, torch, threads: int) -> dict:
    X, y = data.synthetic(args.examples, LAYERS[0], seed=0)
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.float32)).reshape(-1, 1)
    print(
        f"T1 {LAYERS}, relu/sigmoid, BCE + L2 {L2}, GD lr {LR}, float32, "
        f"{args.examples:,} examples x {LAYERS[0]}, one epoch per measurement, "
        f"median of {args.repeats}"
    )
    print(
        f"numpy {np.__version__} BLAS {blas_info()}; torch {torch.__version__} "
        f"({torch.get_num_threads()} threads); {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} cpus; OPENBLAS_CORETYPE={os.environ.get('OPENBLAS_CORETYPE')}"
    )
    rates = {
        b: {k: [] for k in ("deepgrad", "torch", "dg_cpu", "torch_cpu")} for b in args.batch_sizes
    }
    costs = {}
    for r in range(args.repeats):
        for b in args.batch_sizes:
            rd, rdc, cd = deepgrad_epoch(X, y, b, seed=r)
            rt, rtc, ct = torch_epoch(torch, Xt, yt, b, seed=r)
            for k, v in zip(rates[b], (rd, rt, rdc, rtc), strict=True):
                rates[b][k].append(v)
            if args.verbose:
                print(
                    f"  repeat {r + 1} batch {b}: deepgrad {rd:,.0f} torch {rt:,.0f} ex/s",
                    flush=True,
                )
            costs[b] = (cd, ct)
    rows = []
    print(
        f"\n{'batch':>6} {'deepgrad ex/s':>14} {'torch ex/s':>12} {'ratio':>6} "
        f"{'matmul GFLOP/s':>15} {'ceiling ex/s':>13} {'% of ceiling':>13} "
        f"{'per CPU-s dg/torch (ratio)':>28} {'epoch cost dg/torch':>20}"
    )
    for b in args.batch_sizes:
        d = statistics.median(rates[b]["deepgrad"])
        t = statistics.median(rates[b]["torch"])
        dc = statistics.median(rates[b]["dg_cpu"])
        tc = statistics.median(rates[b]["torch_cpu"])
        gflops, ceil = matmul_ceiling(b)
        rows.append(
            {
                "batch_size": b,
                "deepgrad": d,
                "torch": t,
                "ratio": d / t,
                "matmul_gflops": gflops,
                "ceiling": ceil,
                "pct_ceiling": 100 * d / ceil,
                "deepgrad_per_cpu_s": dc,
                "torch_per_cpu_s": tc,
                "deepgrad_all": rates[b]["deepgrad"],
                "torch_all": rates[b]["torch"],
            }
        )
        cpu = f"{dc:,.0f}/{tc:,.0f} ({dc / tc:.2f})"
        print(
            f"{b:>6} {d:>14,.0f} {t:>12,.0f} {d / t:>6.2f} {gflops:>15.1f} {ceil:>13,.0f} "
            f"{100 * d / ceil:>12.0f}% {cpu:>28} {costs[b][0]:>9.4f}/{costs[b][1]:.4f}"
        )
    ok = next((r["ratio"] >= 1.2 for r in rows if r["batch_size"] == 1000), None)
    if ok is not None:
        print(
            f"\nbatch 1000: deepgrad / torch = "
            f"{next(r['ratio'] for r in rows if r['batch_size'] == 1000):.2f} "
            f"({'meets' if ok else 'MISSES'} the 1.2x bar)"
        )
    return {"threads": threads, "examples": args.examples, "rows": rows}


if __name__ == "__main__":
    raise SystemExit(main())
