"""Training throughput by configuration: deepgrad's chosen engine vs PyTorch eager, CPU.

T1: [100, 256, 128, 64, 1] ReLU/sigmoid, BCE + L2 (lambda 0.01 over the batch size, as
in the seed), float32, shuffled every epoch. Each configuration runs in both with the
same settings: gd (lr 0.1), momentum 0.9 (EMA form; torch SGD with dampening 0.9),
rmsprop, adam (1e-3), adam with an exponential decay of the learning rate per step,
inverted dropout keep_prob 0.8 with gd, gd with a callback after every step, gd with a
checkpoint every 100 steps (torch: torch.save of model and optimizer state).

Every measurement is one epoch after a short warm-up, in a fresh process; deepgrad and
torch alternate, and the ratio reported is the median of the paired ratios, so a
neighbour's load hits both sides alike. Also: full-batch GD on a 300-example network,
the numpy-shards engine against the reference engine (the generic loop), same process.

    python bench/train_engines.py [--pairs 3] [--examples 300000] [--json FILE]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time

import numpy as np

LAYERS = [100, 256, 128, 64, 1]
L2, LR, ADAM_LR = 0.01, 0.1, 1e-3
CONFIGS = ["gd", "momentum", "rmsprop", "adam", "adam+decay", "dropout 0.8",
           "gd+callback", "gd+checkpoint"]  # fmt: skip
DECAY = (0.96, 100)  # alpha_t = alpha 0.96^(t / 100)


def _deepgrad(X, y, config: str, b: int, seed: int) -> float:
    import deepgrad as dg
    from deepgrad.optim import optimizers as o

    kw = dict(batch_size=b, epochs=1, l2=L2, seed=seed, progress=False)
    opt = {
        "momentum": o.momentum(LR, 0.9),
        "rmsprop": o.rmsprop(ADAM_LR, 0.9),
        "adam": o.adam(ADAM_LR),
        "adam+decay": o.adam(o.exponential_decay(ADAM_LR, *DECAY)),
    }.get(config, o.gd(LR))
    kw["optimizer"] = opt
    if config == "dropout 0.8":
        kw["keep_prob"] = 0.8
    if config == "gd+callback":
        kw["callbacks"] = [lambda info: None]
    tmp = tempfile.TemporaryDirectory()
    if config == "gd+checkpoint":
        kw["checkpoint"], kw["checkpoint_every"] = os.path.join(tmp.name, "c.npz"), 100
    warm = dg.Network(LAYERS, "relu", "sigmoid", init="he_normal", seed=0)
    warm.fit(X[: 20 * b], y[: 20 * b], **{**kw, "checkpoint": None})
    net = dg.Network(LAYERS, "relu", "sigmoid", init="he_normal", seed=0)
    t = time.perf_counter()
    h = net.fit(X, y, **kw)
    rate = len(X) / (time.perf_counter() - t)
    tmp.cleanup()
    return rate, h.engine


def _torch_model(torch, config):
    nn = torch.nn
    torch.manual_seed(0)
    mods = []
    for i in range(len(LAYERS) - 1):
        mods.append(nn.Linear(LAYERS[i], LAYERS[i + 1]))
        if i < len(LAYERS) - 2:
            mods.append(nn.ReLU())
            if config == "dropout 0.8":
                mods.append(nn.Dropout(p=0.2))
    return nn.Sequential(*mods)


def _torch_optimizer(torch, model, config, b):
    weights = [p for n, p in model.named_parameters() if n.endswith("weight")]
    biases = [p for n, p in model.named_parameters() if n.endswith("bias")]
    # The seed's L2 term lambda/(2m) sum ||W||^2: weight decay lambda/m on the weights.
    groups = [{"params": weights, "weight_decay": L2 / b}, {"params": biases, "weight_decay": 0}]
    if config == "momentum":
        return torch.optim.SGD(groups, lr=LR, momentum=0.9, dampening=0.9)
    if config == "rmsprop":
        return torch.optim.RMSprop(groups, lr=ADAM_LR, alpha=0.9, eps=1e-8)
    if config.startswith("adam"):
        return torch.optim.Adam(groups, lr=ADAM_LR)
    return torch.optim.SGD(groups, lr=LR)


def _torch_epoch(torch, model, opt, sched, Xt, yt, b, config, seed, path=None):
    loss_fn = torch.nn.BCEWithLogitsLoss()
    perm = torch.randperm(Xt.shape[0], generator=torch.Generator().manual_seed(seed))
    for step, s in enumerate(range(0, Xt.shape[0], b)):
        idx = perm[s : s + b]
        xb, yb = Xt.index_select(0, idx), yt.index_select(0, idx)
        opt.param_groups[0]["weight_decay"] = L2 / len(idx)
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(xb), yb)
        loss.backward()
        opt.step()
        if sched is not None:
            sched.step()
        if config == "gd+callback":
            (lambda info: None)(float(loss.detach()))
        if path is not None and (step + 1) % 100 == 0:
            torch.save({"model": model.state_dict(), "opt": opt.state_dict()}, path)


def _torch(X, y, config: str, b: int, seed: int) -> float:
    import torch

    torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y.astype(np.float32)).reshape(-1, 1)
    tmp = tempfile.TemporaryDirectory()
    path = os.path.join(tmp.name, "c.pt") if config == "gd+checkpoint" else None
    for n in (20 * b, len(X)):  # warm-up, then the measured epoch
        model = _torch_model(torch, config)
        opt = _torch_optimizer(torch, model, config, b)
        sched = None
        if config == "adam+decay":
            sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda t: DECAY[0] ** (t / DECAY[1]))
        t = time.perf_counter()
        _torch_epoch(torch, model, opt, sched, Xt[:n], yt[:n], b, config, seed, path)
        rate = n / (time.perf_counter() - t)
    tmp.cleanup()
    return rate, "torch eager"


def one(side: str, config: str, b: int, examples: int, seed: int) -> None:
    """A child process: one measurement, printed as JSON."""
    from deepgrad.data import arrays as data

    X, y = data.synthetic(examples, LAYERS[0], seed=0)
    rate, engine = (_deepgrad if side == "deepgrad" else _torch)(X, y, config, b, seed)
    print(json.dumps({"rate": rate, "engine": engine}))


def _child(side, config, b, examples, seed, threads) -> dict:
    env = dict(os.environ, BENCH_THREADS=str(threads), OMP_NUM_THREADS=str(threads),
               OPENBLAS_NUM_THREADS=str(threads))  # fmt: skip
    cmd = [sys.executable, __file__, "--one", side, config, str(b), str(examples), str(seed)]
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def full_batch(repeats: int = 3) -> dict:
    """Full-batch GD, 300 examples, [20, 64, 32, 1]: shards engine vs reference, s/1000 it."""
    import deepgrad as dg
    from deepgrad.data import arrays as data

    X, y = data.synthetic(300, 20, seed=0)
    times = {"numpy-shards": [], "reference": []}
    for _ in range(repeats):
        for engine in times:
            net = dg.Network([20, 64, 32, 1], seed=0)
            t = time.perf_counter()
            net.fit(X, y, batch_size=None, epochs=1000, engine=engine, progress=False)
            times[engine].append(time.perf_counter() - t)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"seconds_per_1000_iterations": med, "ratio": med["reference"] / med["numpy-shards"]}


def table(args) -> dict:
    rows = []
    plan = [(c, 1000) for c in CONFIGS] + [(c, b) for b in (64, 4096) for c in ("gd", "adam")]
    for config, b in plan:
        examples = args.examples if b >= 1000 else args.examples // 3
        pairs = []
        for r in range(args.pairs):
            d = _child("deepgrad", config, b, examples, r, args.threads)
            t = _child("torch", config, b, examples, r, args.threads)
            pairs.append((d["rate"], t["rate"]))
        ratio = statistics.median(d / t for d, t in pairs)
        row = {"config": config, "batch": b, "engine": d["engine"],
               "deepgrad": statistics.median(p[0] for p in pairs),
               "torch": statistics.median(p[1] for p in pairs), "ratio": ratio,
               "pairs": pairs}  # fmt: skip
        rows.append(row)
        print(f"| {config} | {b} | {row['engine']} | {row['deepgrad']:,.0f} | "
              f"{row['torch']:,.0f} | {ratio:.2f} |", flush=True)  # fmt: skip
    return {"rows": rows}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--pairs", type=int, default=3)
    p.add_argument("--examples", type=int, default=300_000)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--json")
    p.add_argument("--one", nargs=5, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.one:
        side, config, b, examples, seed = args.one
        one(side, config, int(b), int(examples), int(seed))
        return 0
    print(f"T1 {LAYERS}, float32, {args.threads} threads, {args.pairs} pairs, "
          f"{platform.processor() or platform.machine()}, {os.cpu_count()} cpus")  # fmt: skip
    print("| configuration | batch | deepgrad engine | deepgrad ex/s | PyTorch eager ex/s | "
          "ratio (median of pairs) |\n|---|---:|---|---:|---:|---:|")  # fmt: skip
    result = table(args)
    base = next(r["deepgrad"] for r in result["rows"] if r["config"] == "gd" and r["batch"] == 1000)
    print("\nfeature cost, batch 1000 (deepgrad ex/s / deepgrad plain GD ex/s):")
    for r in result["rows"]:
        if r["batch"] == 1000:
            print(f"  {r['config']:<14} {r['deepgrad'] / base:.2f}")
    fb = full_batch()
    result["full_batch"] = fb
    s = fb["seconds_per_1000_iterations"]
    print(f"\nfull-batch GD, 300 examples, 1000 iterations: numpy-shards "
          f"{s['numpy-shards']:.2f} s, reference {s['reference']:.2f} s "
          f"(shards {fb['ratio']:.2f}x as fast)")  # fmt: skip
    if args.json:
        with open(args.json, "w") as f:
            json.dump(result, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
