"""T1 on one GPU: seconds per epoch for deepgrad's torch backend and its peers.

T1 = [100, 256, 128, 64, 1], ReLU hidden layers, sigmoid output, BCE + L2 (lambda = 0.01),
float32 with TF32 off, a synthetic set of ``--examples`` rows (5,000,000 by default)
generated on the device, for each configuration of ``CONFIGS`` (``--configs``): gd and
momentum (lr 0.1), adam (lr 0.001), adam with exponential decay (alpha 0.5 ** (t / steps
of an epoch)), and gd with dropout (keep_prob 0.8). In one run:

- deepgrad's torch-graphs engine (the one loop; units of steps captured as CUDA graphs),
  every configuration, the full set;
- deepgrad's torch engine (eager, one step at a time), gd only;
- PyTorch eager (nn.Sequential + torch.optim) and PyTorch with one CUDA graph per step,
  every configuration (torch.optim's SGD, SGD with dampening = momentum (the EMA form),
  Adam(capturable=True) with the decay as an in-place multiply of its tensor rate,
  nn.Dropout);
- JAX: jax.lax.scan over the whole epoch for every configuration, jax.jit of one step for
  gd (skipped when JAX is missing);
- the floor: the step's 11 matrix products alone, in CUDA graphs;
- agreement: deepgrad on the device vs NumPy after 50 steps on the same batches
  (float32 to 1e-4, float64 to 1e-10, relative).

Each row warms up (compiles, captures) for one epoch, then times ``--repeats`` epochs with
the device synchronized around each, and reports the median. Rows that are slow by nature
(deepgrad, PyTorch eager) time epochs over the first ``--slow-examples`` rows and
scale to the full set (marked "~" and ``extrapolated_from`` in the JSON). A row that fails
is reported with its error; the rest still run.

The bars (``bars`` in the JSON): at batch 1000 every configuration of torch-graphs
<= 0.30 s per epoch and faster than JAX's lax.scan with the same configuration; adam,
adam+exp and dropout within 1.15x of gd's epoch.

    python bench/gpu_train.py                       # on a GPU: docs/gpu.md's table
    python bench/gpu_train.py --smoke               # a check on the CPU (no capture)
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import statistics
import sys
import time
import traceback
from pathlib import Path

import numpy as np

_SRC = Path(__file__).resolve().parents[1] / "src"
if (_SRC / "deepgrad").is_dir():  # this checkout's deepgrad, installed or not
    sys.path.insert(0, str(_SRC))

LAYERS = [100, 256, 128, 64, 1]
LR, L2 = 0.1, 0.01
MAX_REPEATS = 10
AGREE = {"float32": 1e-4, "float64": 1e-10}
# name: (optimizer, learning rate, exponential decay per epoch or None, keep_prob)
CONFIGS = {
    "gd": ("gd", 0.1, None, 1.0),
    "momentum": ("momentum", 0.1, None, 1.0),
    "adam": ("adam", 0.001, None, 1.0),
    "adam+exp": ("adam", 0.001, 0.5, 1.0),
    "dropout": ("gd", 0.1, None, 0.8),
}
GRAPHS = "deepgrad torch-graphs"
METHODS = (  # (method, every configuration or gd only)
    (GRAPHS, True),
    ("deepgrad (torch backend)", False),
    ("PyTorch eager", True),
    ("PyTorch, CUDA graph per step", True),
    ("JAX jit of one step", False),
    ("JAX lax.scan over the epoch", True),
    ("matmul floor (CUDA graphs)", False),
)
BAR_S, BAR_RATIO = 0.30, 1.15  # at batch 1000, on an H100/H200


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--examples", type=int, default=5_000_000)
    p.add_argument("--batch-sizes", default="1000,4096,8192")
    p.add_argument("--repeats", type=int, default=3, help=f"timed epochs (1..{MAX_REPEATS})")
    p.add_argument("--device", default="cuda")
    p.add_argument("--json", default=None, help="output path (default $OUT/gpu_train.json)")
    p.add_argument(
        "--slow-examples",
        type=int,
        default=500_000,
        help="examples per timed epoch of the slow rows (then scaled)",
    )
    p.add_argument(
        "--budget-s",
        type=float,
        default=330.0,
        help="skip the remaining torch rows after this many seconds (JAX gets "
        "what is left of budget + 100 s, at least 60 s)",
    )
    p.add_argument("--skip", default="", help="comma-separated method names to skip")
    p.add_argument("--configs", default=",".join(CONFIGS), help="comma-separated of CONFIGS")
    p.add_argument(
        "--smoke",
        action="store_true",
        help="a tiny run on the CPU (20,000 examples, batch 1000, 1 repeat): the script works",
    )
    p.add_argument(
        "--agree-batch", type=int, default=256, help="batch size of the 50-step agreement check"
    )
    p.add_argument("--jax-worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--jax-methods", default="scan,jit", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.smoke:
        args.device, args.examples, args.batch_sizes = "cpu", 20_000, "1000"
        args.repeats, args.slow_examples, args.agree_batch = 1, 5000, 8
    args.configs = [c.strip() for c in args.configs.split(",") if c.strip()]
    if not args.configs or any(c not in CONFIGS for c in args.configs):
        p.error(f"--configs must be among {list(CONFIGS)}, got {args.configs}")
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        p.error(f"--batch-sizes must be comma-separated ints, got {args.batch_sizes!r}")
    if not args.batch_sizes or min(args.batch_sizes) < 1 or max(args.batch_sizes) > args.examples:
        p.error(f"--batch-sizes must be in [1, --examples], got {args.batch_sizes}")
    if not 1 <= args.repeats <= MAX_REPEATS:
        p.error(f"--repeats must be in [1, {MAX_REPEATS}], got {args.repeats}")
    if args.examples < 1 or args.slow_examples < 1:
        p.error("--examples and --slow-examples must be >= 1")
    if args.json is None:
        args.json = str(Path(os.environ.get("OUT", ".")) / "gpu_train.json")
    return args


class Skip(Exception):
    """A row that does not apply here (reported as skipped, not failed)."""


# -- device, data ------------------------------------------------------------------------------
def setup_torch(device: str):
    import torch

    dev = torch.device(device)
    if dev.type == "cuda" and not torch.cuda.is_available():
        raise SystemExit(f"--device {device}: torch.cuda.is_available() is False")
    torch.backends.cuda.matmul.allow_tf32 = False  # fp32 throughout, as the peers' numbers
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")
    return torch, dev


def sync(torch, dev) -> None:
    if dev.type == "cuda":
        torch.cuda.synchronize(dev)


def make_data(torch, dev, m: int, seed: int = 0, chunk: int = 1 << 20):
    """X ~ N(0, 1) (m, 100) float32 and 0/1 labels from a fixed random tanh teacher."""
    g = torch.Generator(device=dev)
    g.manual_seed(seed)
    W1 = torch.randn(32, LAYERS[0], generator=g, device=dev) / LAYERS[0] ** 0.5
    w2 = torch.randn(32, generator=g, device=dev) / 32**0.5
    X = torch.empty((m, LAYERS[0]), device=dev)
    Y = torch.empty(m, device=dev)
    for s in range(0, m, chunk):
        x = X[s : s + chunk]
        x.normal_(generator=g)
        Y[s : s + chunk] = (torch.tanh(x @ W1.T) @ w2 > 0).float()
    return X, Y


def epochs_timed(sync_fn, run_epoch, repeats: int):
    """(first epoch incl. compile/capture, [timed epochs]) in seconds."""
    sync_fn()
    t = time.perf_counter()
    run_epoch(0)
    sync_fn()
    first = time.perf_counter() - t
    times = []
    for r in range(repeats):
        sync_fn()
        t = time.perf_counter()
        run_epoch(r + 1)
        sync_fn()
        times.append(time.perf_counter() - t)
    return first, times


# -- deepgrad --------------------------------------------------------------------------------
def bench_deepgrad(torch, dev, X, Y, b, repeats, config="gd", engine="torch"):
    """deepgrad's loop with ``engine`` (torch-graphs runs without capture on the CPU)."""
    import deepgrad as dg
    from deepgrad.train.engines import torch_graphs

    before, torch_graphs.REQUIRE_CUDA = torch_graphs.REQUIRE_CUDA, dev.type == "cuda"
    try:  # on the CPU: the smoke check only (no capture)
        net = dg.Network(LAYERS, seed=0, backend="torch", device=dev)
        h = _fit_timed(net, X, Y, b, repeats, config, engine)
    finally:
        torch_graphs.REQUIRE_CUDA = before
    ends = h.epoch_time
    times = [ends[i] - ends[i - 1] for i in range(1, len(ends))]
    return {
        "first_epoch_s": ends[0],
        "runs": times,
        "final_cost": h.epoch_cost[-1],
        "engine": h.engine,
    }


def _deepgrad_optimizer(config: str, steps: int):
    from deepgrad.optim import optimizers

    name, lr, decay, _ = CONFIGS[config]
    return optimizers.get(name, optimizers.exponential_decay(lr, decay, steps) if decay else lr)


def _fit_timed(net, X, Y, b, repeats, config="gd", engine=None):
    steps = -(-X.shape[0] // b)
    return net.fit(
        X,
        Y,
        batch_size=b,
        epochs=1 + repeats,
        optimizer=_deepgrad_optimizer(config, steps),
        keep_prob=CONFIGS[config][3],
        l2=L2,
        seed=0,
        progress=False,
        engine=engine,
    )


# -- PyTorch ---------------------------------------------------------------------------------
def _torch_model(torch, dev, config="gd"):
    name, lr, _, keep = CONFIGS[config]
    nn = torch.nn
    mods = []
    for i in range(len(LAYERS) - 1):
        mods.append(nn.Linear(LAYERS[i], LAYERS[i + 1]))
        if i < len(LAYERS) - 2:
            mods.append(nn.ReLU())
            if keep < 1:
                mods.append(nn.Dropout(1 - keep))
    model = nn.Sequential(*mods).to(dev)
    weights = [m.weight for m in model if isinstance(m, nn.Linear)]
    if name == "adam":  # a tensor rate: the decay is an in-place multiply (capturable)
        cuda = dev.type == "cuda"
        rate = torch.tensor(lr, device=dev) if cuda else lr
        opt = torch.optim.Adam(model.parameters(), lr=rate, capturable=cuda)
    elif name == "momentum":  # dampening = momentum: v = 0.9 v + 0.1 g, deepgrad's EMA
        opt = torch.optim.SGD(model.parameters(), lr=lr, momentum=0.9, dampening=0.9)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=lr)
    lossf = nn.BCEWithLogitsLoss()

    def loss_fn(xb, yb):  # the seed's J: mean BCE + lambda/(2 m) sum ||W||^2
        pen = sum((w * w).sum() for w in weights)
        return lossf(model(xb), yb) + (L2 / (2 * xb.shape[0])) * pen

    return model, opt, loss_fn


def _decay(opt, config: str, steps: int) -> None:
    """One step of the configuration's exponential decay of the rate (none without)."""
    decay = CONFIGS[config][2]
    if decay is None:
        return
    gamma = decay ** (1.0 / steps)
    for group in opt.param_groups:
        if hasattr(group["lr"], "mul_"):
            group["lr"].mul_(gamma)
        else:
            group["lr"] *= gamma


def bench_torch_eager(torch, dev, X, Y, b, repeats, config="gd"):
    _, opt, loss_fn = _torch_model(torch, dev, config)
    Y2 = Y.reshape(-1, 1)
    m = X.shape[0]
    steps = -(-m // b)

    def epoch(_):
        perm = torch.randperm(m, device=dev)
        losses = []
        for s in range(0, m, b):
            idx = perm[s : s + b]
            loss = loss_fn(X[idx], Y2[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            _decay(opt, config, steps)
            losses.append(loss.detach())  # kept on the device: no sync per step
        return losses

    first, times = epochs_timed(lambda: sync(torch, dev), epoch, repeats)
    return {"first_epoch_s": first, "runs": times}


def bench_torch_graph(torch, dev, X, Y, b, repeats, config="gd"):
    """The whole step (gather, forward, backward, update) captured once per batch shape."""
    if dev.type != "cuda":
        raise Skip("needs CUDA")
    _, opt, loss_fn = _torch_model(torch, dev, config)
    Y2 = Y.reshape(-1, 1)
    m = X.shape[0]
    steps = -(-m // b)
    n_full, tail = divmod(m, b)
    graphs = {}
    for size in [b] + ([tail] if tail else []):
        idx = torch.zeros(size, dtype=torch.int64, device=dev)

        def step(idx=idx):
            loss = loss_fn(X.index_select(0, idx), Y2.index_select(0, idx))
            loss.backward()
            opt.step()
            _decay(opt, config, steps)
            return loss.detach()

        side = torch.cuda.Stream(dev)
        side.wait_stream(torch.cuda.current_stream(dev))
        with torch.cuda.stream(side):
            for _ in range(3):
                opt.zero_grad(set_to_none=True)
                step()
        torch.cuda.current_stream(dev).wait_stream(side)
        g = torch.cuda.CUDAGraph()
        opt.zero_grad(set_to_none=True)
        with torch.cuda.graph(g, stream=side):
            loss = step()
        graphs[size] = (g, idx, loss)

    def epoch(_):
        perm = torch.randperm(m, device=dev)
        g, idx, _ = graphs[b]
        for i in range(n_full):
            idx.copy_(perm[i * b : (i + 1) * b])
            g.replay()
        if tail:
            g, idx, _ = graphs[tail]
            idx.copy_(perm[n_full * b :])
            g.replay()

    first, times = epochs_timed(lambda: sync(torch, dev), epoch, repeats)
    return {"first_epoch_s": first, "runs": times}


def bench_floor(torch, dev, X, b, repeats, steps_per_graph=64):
    """The 11 matrix products of a T1 step (4 forward, 4 dW, 3 dA), nothing else."""
    m = X.shape[0]
    n_full, tail = divmod(m, b)

    def buffers(size):
        Ws = [torch.randn(LAYERS[i + 1], LAYERS[i], device=dev) * 0.05 for i in range(4)]
        A = [X[:size]] + [torch.empty(size, n, device=dev) for n in LAYERS[1:]]
        dZ = [torch.empty(size, n, device=dev).normal_() for n in LAYERS[1:]]
        dW = [torch.empty_like(w) for w in Ws]
        return Ws, A, dZ, dW

    def products(bufs):
        Ws, A, dZ, dW = bufs
        for i in range(4):
            torch.mm(A[i], Ws[i].T, out=A[i + 1])
        for i in range(3, -1, -1):
            torch.mm(dZ[i].T, A[i], out=dW[i])
            if i:
                torch.mm(dZ[i], Ws[i], out=dZ[i - 1])

    units = []  # (callable, replays per epoch)
    k = min(steps_per_graph, n_full)
    plan = [(k, b, n_full // k), (n_full % k, b, 1), (1 if tail else 0, tail, 1)]
    for n, size, reps in plan:
        if n == 0 or reps == 0:
            continue
        bufs = buffers(size)

        def run(n=n, bufs=bufs):
            for _ in range(n):
                products(bufs)

        if dev.type == "cuda":
            side = torch.cuda.Stream(dev)
            side.wait_stream(torch.cuda.current_stream(dev))
            with torch.cuda.stream(side):
                run()
            torch.cuda.current_stream(dev).wait_stream(side)
            g = torch.cuda.CUDAGraph()
            with torch.cuda.graph(g, stream=side):
                run()
            units.append((g.replay, reps, bufs))  # the graph writes into bufs: keep them
        else:
            units.append((run, reps, bufs))

    def epoch(_):
        for fn, reps, _ in units:
            for _ in range(reps):
                fn()

    first, times = epochs_timed(lambda: sync(torch, dev), epoch, repeats)
    return {"first_epoch_s": first, "runs": times}


# -- JAX (in a child process: a crash or a CUDA-library clash there cannot take this run) ----
def _jax(device: str):
    os.environ.setdefault("XLA_PYTHON_CLIENT_PREALLOCATE", "false")  # share the GPU
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_default_matmul_precision", "highest")  # no TF32
    kind = "gpu" if device.startswith("cuda") else "cpu"
    devices = (
        jax.devices(kind)
        if kind == "cpu"
        else [d for d in jax.devices() if d.platform in ("gpu", "cuda")]
    )
    if not devices:
        raise RuntimeError(f"JAX sees no {kind} device (it has {jax.devices()})")
    return jax, jnp, devices[0]


def _jax_data(jax, jnp, jdev, m: int):
    """The same kind of set as make_data (N(0, 1) inputs, tanh-teacher labels), in JAX."""
    kx, kw1, kw2 = jax.random.split(jax.random.PRNGKey(0), 3)
    with jax.default_device(jdev):
        X = jax.random.normal(kx, (m, LAYERS[0]), jnp.float32)
        W1 = jax.random.normal(kw1, (32, LAYERS[0]), jnp.float32) / LAYERS[0] ** 0.5
        w2 = jax.random.normal(kw2, (32,), jnp.float32) / 32**0.5
        Y = (jnp.tanh(X @ W1.T) @ w2 > 0).astype(jnp.float32).reshape(-1, 1)
    return X, Y


def _jax_model(jax, jnp, jdev, config="gd", steps=1):
    rng = np.random.default_rng(0)
    params = [
        (
            jax.device_put(
                rng.normal(0, (2 / n_in) ** 0.5, (n_out, n_in)).astype(np.float32), jdev
            ),
            jax.device_put(np.zeros(n_out, np.float32), jdev),
        )
        for n_in, n_out in zip(LAYERS[:-1], LAYERS[1:], strict=True)
    ]

    keep = CONFIGS[config][3]

    def cost(params, xb, yb, key):  # the seed's J: mean BCE (logits) + lambda/(2m) sum ||W||^2
        a = xb
        for i, (W, bias) in enumerate(params[:-1]):
            a = jax.nn.relu(a @ W.T + bias)
            if keep < 1:  # inverted dropout, masks drawn on the device
                kept = jax.random.bernoulli(jax.random.fold_in(key, i), keep, a.shape)
                a = a * kept.astype(a.dtype) / keep
        W, bias = params[-1]
        z = a @ W.T + bias
        pen = sum(jnp.sum(W * W) for W, _ in params)
        return jnp.mean(jnp.logaddexp(0.0, z) - z * yb) + L2 / (2 * xb.shape[0]) * pen

    init, update = _jax_optimizer(jax, jnp, config, steps)
    return params, cost, init, update


def _jax_optimizer(jax, jnp, config: str, steps: int):
    """(init(p) -> state, update(p, g, state) -> (p, state)): deepgrad's formulas."""
    name, lr, decay, _ = CONFIGS[config]
    tm = jax.tree_util.tree_map
    b1, b2, eps = 0.9, 0.999, 1e-8

    def init(p):
        zeros = tm(jnp.zeros_like, p)
        return (jnp.zeros((), jnp.float32), zeros, tm(jnp.zeros_like, p))

    def update(p, g, state):
        t, mu, nu = state
        alpha = lr * decay ** (t / steps) if decay else lr
        if name == "gd":
            return tm(lambda a, d: a - alpha * d, p, g), (t + 1, mu, nu)
        if name == "momentum":
            mu = tm(lambda v, d: 0.9 * v + 0.1 * d, mu, g)
            return tm(lambda a, v: a - alpha * v, p, mu), (t + 1, mu, nu)
        mu = tm(lambda v, d: b1 * v + (1 - b1) * d, mu, g)
        nu = tm(lambda v, d: b2 * v + (1 - b2) * d * d, nu, g)
        c1, c2 = 1 - b1 ** (t + 1), 1 - b2 ** (t + 1)
        step = lambda a, m, v: a - alpha * (m / c1) / (jnp.sqrt(v / c2) + eps)  # noqa: E731
        return tm(step, p, mu, nu), (t + 1, mu, nu)

    return init, update


def bench_jax(jax, jnp, jdev, X, Y, b, repeats, scan: bool, config="gd"):
    m = X.shape[0]
    n_full, tail = divmod(m, b)
    params, cost, init, update = _jax_model(jax, jnp, jdev, config, -(-m // b))
    grad = jax.value_and_grad(cost)
    key0 = jax.random.PRNGKey(1)
    perm_fn = jax.jit(lambda key: jax.random.permutation(key, m))

    def make_step(size):
        @jax.jit
        def step(carry, Xa, Ya, perm, start, key):
            p, s = carry
            idx = jax.lax.dynamic_slice_in_dim(perm, start, size)
            loss, g = grad(p, Xa[idx], Ya[idx], key)
            return update(p, g, s), loss

        return step

    @jax.jit
    def epoch_scan(carry, Xa, Ya, key):
        perm = jax.random.permutation(key, m)

        def body(c, xs):
            ix, i = xs
            loss, g = grad(c[0], Xa[ix], Ya[ix], jax.random.fold_in(key, i))
            return update(c[0], g, c[1]), loss

        rows = perm[: n_full * b].reshape(n_full, b)
        carry, losses = jax.lax.scan(body, carry, (rows, jnp.arange(n_full)))
        if tail:
            ix = perm[n_full * b :]
            _, g = grad(carry[0], Xa[ix], Ya[ix], jax.random.fold_in(key, n_full))
            carry = update(carry[0], g, carry[1])
        return carry, losses

    state = {"c": (params, init(params))}
    steps = {b: make_step(b)} | ({tail: make_step(tail)} if tail else {})

    def epoch(e):
        key = jax.random.fold_in(key0, e)
        if scan:
            state["c"], _ = epoch_scan(state["c"], X, Y, key)
        else:
            perm = perm_fn(key)
            c = state["c"]
            for i in range(n_full):
                c, _ = steps[b](c, X, Y, perm, i * b, jax.random.fold_in(key, i))
            if tail:
                c, _ = steps[tail](c, X, Y, perm, n_full * b, jax.random.fold_in(key, n_full))
            state["c"] = c
        jax.block_until_ready(state["c"])

    first, times = epochs_timed(lambda: None, epoch, repeats)
    return {"first_epoch_s": first, "runs": times, "jax": jax.__version__}


def jax_worker(args) -> int:
    """Child process: time the JAX rows, print them as one JSON line."""
    rows = []
    try:
        jax, jnp, jdev = _jax(args.device)
        X, Y = _jax_data(jax, jnp, jdev, args.examples)
    except Exception as exc:  # noqa: BLE001
        print(json.dumps({"error": f"{type(exc).__name__}: {exc}"[:300]}))
        return 0
    kinds = [("JAX lax.scan over the epoch", True, c) for c in args.configs]
    kinds += [("JAX jit of one step", False, "gd")]
    wanted = {"scan": True, "jit": False}
    keep = {wanted[k.strip()] for k in args.jax_methods.split(",") if k.strip() in wanted}
    for b in args.batch_sizes:
        for method, scan, config in (k for k in kinds if k[1] in keep):
            res = _row(
                method,
                b,
                lambda b=b, scan=scan, c=config: bench_jax(
                    jax, jnp, jdev, X, Y, b, args.repeats, scan, c
                ),
                config=config,
            )
            print(
                f"  {method:32s} {config:9s} b={b:5d}  {_fmt(res)}  ({res['wall_s']:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
            rows.append(res)
            print("ROW " + json.dumps(res), flush=True)  # kept if a later row times out
    print(json.dumps({"rows": rows, "jax": jax.__version__, "device": str(jdev)}))
    return 0


def run_jax_rows(args, timeout: float) -> list[dict]:
    """The JAX rows from a child process (rows with the reason when it cannot run)."""
    import subprocess

    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--jax-worker",
        "--device",
        args.device,
        "--examples",
        str(args.examples),
        "--batch-sizes",
        ",".join(map(str, args.batch_sizes)),
        "--repeats",
        str(args.repeats),
        "--configs",
        ",".join(args.configs),
    ]
    error, out = None, {}
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 1))
        sys.stderr.write(proc.stderr[-3000:])
        lines = [ln for ln in proc.stdout.splitlines() if ln.startswith("{")]
        out = json.loads(lines[-1]) if lines else {}
        error = out.get("error") or (
            None if out else f"JAX worker exited {proc.returncode}: {proc.stderr.strip()[-200:]}"
        )
    except subprocess.TimeoutExpired:
        error = f"JAX worker timed out after {timeout:.0f} s"
    if error:
        error = "skipped: " + error if "No module named 'jax'" in error else error
        kinds = [("JAX lax.scan over the epoch", c) for c in args.configs]
        kinds += [("JAX jit of one step", "gd")]
        return [
            {
                "method": mth,
                "config": c,
                "batch_size": b,
                "epoch_s": None,
                "runs": [],
                "error": error,
            }  # fmt: skip
            for b in args.batch_sizes
            for mth, c in kinds
        ]
    return out["rows"]


# -- agreement with NumPy ----------------------------------------------------------------------
def _rel_errors(a: dict, b: dict) -> tuple[float, float]:
    """(||theta_a - theta_b|| / ||theta_a|| over the seed's concatenated theta,
    max over parameters of the same ratio)."""
    from deepgrad.core.backend import to_numpy

    xs = {k: np.asarray(a[k], np.float64).ravel() for k in a}
    ys = {k: np.asarray(to_numpy(b[k]), np.float64).ravel() for k in a}
    per = [np.linalg.norm(xs[k] - ys[k]) / max(np.linalg.norm(xs[k]), 1e-30) for k in a]
    x, y = np.concatenate(list(xs.values())), np.concatenate(list(ys.values()))
    return float(np.linalg.norm(x - y) / np.linalg.norm(x)), float(max(per))


AGREEMENT_CASES = (("float64", "relu"), ("float32", "relu"), ("float32", "tanh"))


def agreement(dev, dtype: str, b: int = 256, steps: int = 50, hidden: str = "relu"):
    """deepgrad on ``dev`` vs NumPy after ``steps`` steps on the same batches (T1's layers).

    Both run the same shuffled batches (one epoch order for every engine). The tolerance
    applies to theta's relative error. In float32 a ReLU net can meet a pre-activation
    within rounding of the kink (|Z| ~ 1e-7): the two runs then take different
    subgradients and part ways, for any pair of correct implementations; the tanh case
    has no kink.
    """
    import deepgrad as dg

    m = b * steps
    rng = np.random.default_rng(0)
    X = rng.normal(size=(m, LAYERS[0])).astype(dtype)
    Y = (X[:, 0] + 0.5 * X[:, 1] * X[:, 2] > 0).astype(dtype)
    kw = dict(batch_size=b, epochs=1, learning_rate=LR, l2=L2, seed=1, progress=False)
    rows = []
    for path in ("torch",):
        ref = dg.Network(LAYERS, hidden_activation=hidden, seed=0, dtype=dtype)
        ref.fit(X, Y, **kw)
        net = dg.Network(
            LAYERS, hidden_activation=hidden, seed=0, dtype=dtype, backend="torch", device=dev
        )
        path = net.fit(X, Y, **kw).engine  # torch-graphs on CUDA, torch on the CPU
        rel, worst = _rel_errors(ref.params, net.params)
        rows.append(
            {
                "path": path,
                "dtype": dtype,
                "hidden": hidden,
                "steps": steps,
                "batch_size": b,
                "max_rel_diff": rel,
                "max_rel_diff_per_param": worst,
                "tolerance": AGREE[dtype],
                "ok": bool(rel < AGREE[dtype]),
            }
        )
    return rows


# -- the run ---------------------------------------------------------------------------------
def _row(method, b, fn, extrapolate_from=None, scale=1.0, config="gd"):
    t = time.perf_counter()
    try:
        res = fn()
        res["runs"] = [r * scale for r in res["runs"]]
        res["epoch_s"] = statistics.median(res["runs"])
        res["error"] = None
    except Skip as exc:
        res = {"epoch_s": None, "runs": [], "error": f"skipped: {exc}"}
    except Exception as exc:  # noqa: BLE001 - report and go on with the other rows
        res = {"epoch_s": None, "runs": [], "error": f"{type(exc).__name__}: {exc}"[:300]}
        traceback.print_exc(limit=3)
    res.update(
        method=method,
        config=config,
        batch_size=b,
        extrapolated_from=extrapolate_from,
        wall_s=time.perf_counter() - t,
    )
    return res


def _plan(args, torch, dev, X, Y, Xs, Ys, n_slow) -> list:
    """(method, config, batch size, fn[, examples timed]) in the order they run: the rows
    the bars need first (torch-graphs), then the floor and the peers, the slow ones last,
    so a run cut short by --budget-s keeps what matters most."""
    r, bss, cs = args.repeats, args.batch_sizes, args.configs
    graphs = lambda b, c: bench_deepgrad(torch, dev, X, Y, b, r, c, "torch-graphs")  # noqa: E731
    plan = [(GRAPHS, c, b, lambda b=b, c=c: graphs(b, c)) for b in bss for c in cs]
    plan += [
        ("matmul floor (CUDA graphs)", "gd", b, lambda b=b: bench_floor(torch, dev, X, b, r))
        for b in bss
    ]
    plan += [
        ("PyTorch, CUDA graph per step", c, b,
         lambda b=b, c=c: bench_torch_graph(torch, dev, X, Y, b, r, c))
        for b in bss for c in cs
    ]  # fmt: skip
    for b in bss:
        bs = min(b, n_slow)
        plan += [
            ("PyTorch eager", c, b,
             lambda bs=bs, c=c: bench_torch_eager(torch, dev, Xs, Ys, bs, r, c), n_slow)
            for c in cs
        ]  # fmt: skip
        plan.append(
            ("deepgrad (torch backend)", "gd", b,
             lambda bs=bs: bench_deepgrad(torch, dev, Xs, Ys, bs, min(r, 2)), n_slow)
        )  # fmt: skip
    return plan


def run_all(args) -> dict:
    torch, dev = setup_torch(args.device)
    import array_api_compat

    import deepgrad

    print(
        f"torch {torch.__version__}, numpy {np.__version__}, array-api-compat "
        f"{array_api_compat.__version__}, deepgrad from {Path(deepgrad.__file__).parent}, "
        f"device {dev}" + (f" ({torch.cuda.get_device_name(dev)})" if dev.type == "cuda" else ""),
        flush=True,
    )
    t0 = time.perf_counter()
    X, Y = make_data(torch, dev, args.examples)
    n_slow = min(args.examples, args.slow_examples)
    scale = args.examples / n_slow
    Xs, Ys = X[:n_slow], Y[:n_slow]
    skip = {s.strip() for s in args.skip.split(",") if s.strip()}
    plan = _plan(args, torch, dev, X, Y, Xs, Ys, n_slow)
    report = _header(args, torch, dev, n_slow)
    results, agree = report["results"], report["agreement"]
    for dtype, hidden in AGREEMENT_CASES:  # first: quick, and says whether the numbers hold
        try:
            agree += agreement(dev, dtype, args.agree_batch, hidden=hidden)
        except Exception as exc:  # noqa: BLE001
            agree.append(
                {
                    "dtype": dtype,
                    "hidden": hidden,
                    "ok": False,
                    "error": f"{type(exc).__name__}: {exc}",
                }
            )
            traceback.print_exc(limit=3)
    save(args, report, t0)
    for method, config, b, fn, *slow in plan:
        if method in skip:
            continue
        if time.perf_counter() - t0 > args.budget_s:
            results.append(
                {
                    "method": method,
                    "config": config,
                    "batch_size": b,
                    "epoch_s": None,
                    "runs": [],
                    "error": "skipped: --budget-s reached",
                }
            )
            continue
        extra = slow[0] if slow and slow[0] < args.examples else None
        res = _row(method, b, fn, extra, scale if extra else 1.0, config)
        line = f"  {method:32s} {config:9s} b={b:5d}  {_fmt(res)}  ({res['wall_s']:.1f} s)"
        print(line, flush=True)
        results.append(res)
        save(args, report, t0)  # after every row: a crash later keeps what was measured
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    if not {"JAX lax.scan over the epoch", "JAX jit of one step"} <= skip:
        del X, Y, Xs, Ys
        if dev.type == "cuda":
            torch.cuda.empty_cache()
        results += run_jax_rows(args, max(60.0, args.budget_s + 100 - (time.perf_counter() - t0)))
    report["bars"] = bars(report)
    save(args, report, t0)
    return report


def bars(report) -> list[dict]:
    """The issue's bars at batch 1000 (None where a row is missing): torch-graphs <=
    BAR_S s per epoch, faster than JAX's lax.scan with the same configuration, and
    adam, adam+exp and dropout within BAR_RATIO of gd's epoch."""
    cells = {
        (r["method"], r.get("config"), r["batch_size"]): r.get("epoch_s") for r in report["results"]
    }
    out = []
    gd = cells.get((GRAPHS, "gd", 1000))
    for c in report.get("configs", []):
        ours = cells.get((GRAPHS, c, 1000))
        jax = cells.get(("JAX lax.scan over the epoch", c, 1000))
        row = {"config": c, "epoch_s": ours, "jax_scan_s": jax}
        row["under_bar_s"] = None if ours is None else ours <= BAR_S
        row["faster_than_jax"] = None if ours is None or jax is None else ours < jax
        if c != "gd":
            ratio = None if ours is None or gd is None else ours / gd
            row["vs_gd"], row["within_ratio"] = ratio, None if ratio is None else ratio <= BAR_RATIO
        out.append(row)
    return out


def save(args, report, t0) -> None:
    from deepgrad.io.files import atomic_write

    report["total_s"] = time.perf_counter() - t0
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    atomic_write(args.json, lambda f: f.write(json.dumps(report, indent=1).encode()))


def _header(args, torch, dev, n_slow) -> dict:
    return {
        "device": torch.cuda.get_device_name(dev)
        if dev.type == "cuda"
        else platform.processor() or "cpu",
        "torch": torch.__version__,
        "python": sys.version.split()[0],
        "examples": args.examples,
        "batch_sizes": args.batch_sizes,
        "repeats": args.repeats,
        "slow_examples": n_slow,
        "workload": {"layers": LAYERS, "l2": L2, "dtype": "float32", "tf32": False},
        "configs": args.configs,
        "config_settings": {c: CONFIGS[c] for c in args.configs},
        "results": [],
        "agreement": [],
        "total_s": 0.0,
    }


def _fmt(res) -> str:
    if res.get("epoch_s") is None:
        return "skipped" if "skipped" in str(res.get("error")) else "failed"
    return ("~" if res.get("extrapolated_from") else "") + f"{res['epoch_s']:.3f}"


def table(report) -> str:
    bss = report["batch_sizes"]
    cells = {(r["method"], r.get("config"), r["batch_size"]): r for r in report["results"]}
    head = "| method | configuration | " + " | ".join(f"b={b}" for b in bss) + " |"
    lines = [
        f"T1 seconds per epoch, {report['examples']:,} examples, {report['device']}",
        head,
        "|---" * (len(bss) + 2) + "|",
    ]
    for method, every in METHODS:
        for c in report.get("configs", ["gd"]) if every else ["gd"]:
            row = [_fmt(cells[(method, c, b)]) if (method, c, b) in cells else "-" for b in bss]
            lines.append(f"| {method} | {c} | " + " | ".join(row) + " |")
    for a in report["agreement"]:
        rel = a.get("max_rel_diff", math.nan)
        lines.append(
            f"agreement {a.get('path', '?')} {a['dtype']} {a['hidden']}: theta rel diff {rel:.2e} "
            f"(tol {AGREE[a['dtype']]:.0e}) {'ok' if a['ok'] else 'FAIL'}"
            + (f" {a['error']}" if a.get("error") else "")
            + (
                " (ReLU kink: see agreement())"
                if not a["ok"] and a.get("hidden") == "relu" and a["dtype"] == "float32"
                else ""
            )
        )
    for b in bss:
        fast = cells.get((GRAPHS, "gd", b), {}).get("epoch_s")
        for peer in (
            "JAX lax.scan over the epoch",
            "PyTorch, CUDA graph per step",
            "PyTorch eager",
            "deepgrad (torch backend)",
        ):
            other = cells.get((peer, "gd", b), {}).get("epoch_s")
            if fast and other:
                lines.append(f"b={b} gd: {peer} / torch-graphs = {other / fast:.2f}x")
    for bar in report.get("bars", []):
        lines.append(
            "bar (for an H100/H200) b=1000 " + ", ".join(f"{k} {v}" for k, v in bar.items())
        )
    errors = [
        f"{r['method']} {r.get('config')} b={r['batch_size']}: {r['error']}"
        for r in report["results"]
        if r.get("error")
    ]
    return "\n".join(lines + errors)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.jax_worker:
        return jax_worker(args)
    report = run_all(args)
    print(table(report))
    print(f"wrote {args.json} ({report['total_s']:.0f} s)")
    robust = [
        a
        for a in report["agreement"]
        if not (a["dtype"] == "float32" and a.get("hidden") == "relu")
    ]
    return 0 if all(a["ok"] for a in robust) else 1


if __name__ == "__main__":
    sys.exit(main())
