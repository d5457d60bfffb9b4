"""T3, the course's size: steps per second of deepgrad and its neighbours.

make_moons 300 examples, [2, 5, 2, 1] ReLU/sigmoid, mini-batch 64 (a partial last batch
of 44), Adam 7e-4 or gd 0.3, ``--epochs`` epochs (2,000 = 10,000 steps). Each
implementation runs in a fresh process, ``--rounds`` rounds alternating; the table gives
the median steps/s. The BLAS kernel (threadpoolctl) is printed in the header. Run it as
``make bench-train`` does: with OPENBLAS_CORETYPE and OPENBLAS_L2_SIZE unset.
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

import numpy as np

__all__ = ["main"]

SIZES = [2, 5, 2, 1]
IMPLS = [
    "deepgrad compiled",
    "deepgrad numpy-shards",
    "plain NumPy loop",
    "JAX jit+scan",
    "PyTorch eager",
]
LR = {"adam": 7e-4, "gd": 0.3}


def _data():
    from sklearn.datasets import make_moons

    X, y = make_moons(300, noise=0.2, random_state=0)
    return X.astype(np.float64), y.astype(np.float64)


def _batches(m, epochs, batch=64, seed=0):
    rng = np.random.default_rng(seed)
    for _ in range(epochs):
        perm = rng.permutation(m)
        for a in range(0, m, batch):
            yield perm[a : a + batch]


def _deepgrad(engine, opt, epochs):
    import deepgrad as dg

    X, y = _data()
    net = dg.Network(SIZES, seed=0)
    kw = dict(epochs=epochs, batch_size=64, optimizer=opt, learning_rate=LR[opt], progress=False)
    dg.Network(SIZES, seed=0).fit(X, y, engine=engine, **{**kw, "epochs": 1})  # load kernels
    t = time.perf_counter()
    h = net.fit(X, y, engine=engine, **kw)
    return len(h.iteration_cost) / (time.perf_counter() - t)


def _init(rng):
    return [
        (rng.standard_normal((b, a)) * np.sqrt(2 / a), np.zeros((b, 1)))
        for a, b in zip(SIZES[:-1], SIZES[1:], strict=True)
    ]


def _numpy_loop(opt, epochs):
    """The course's vectorized loop: examples in columns, dicts of arrays."""
    X, y = _data()
    X, Y = X.T, y[None, :]
    params = [list(p) for p in _init(np.random.default_rng(0))]
    m1 = [[np.zeros_like(w), np.zeros_like(b)] for w, b in params]
    m2 = [[np.zeros_like(w), np.zeros_like(b)] for w, b in params]
    steps, t0, lr = 0, time.perf_counter(), LR[opt]
    for idx in _batches(300, epochs):
        A, caches = X[:, idx], []
        for l, (W, b) in enumerate(params):
            Z = W @ A + b
            caches.append((A, Z))
            A = 1 / (1 + np.exp(-Z)) if l == len(params) - 1 else np.maximum(Z, 0)
        dZ = (A - Y[:, idx]) / len(idx)
        steps += 1
        for l in range(len(params) - 1, -1, -1):
            Ain, _ = caches[l]
            grads = (dZ @ Ain.T, dZ.sum(1, keepdims=True))
            if l:
                dZ = (params[l][0].T @ dZ) * (Ain > 0)  # ReLU' of the layer below
            for j, g in enumerate(grads):
                if opt == "gd":
                    params[l][j] = params[l][j] - lr * g
                else:
                    m1[l][j] = 0.9 * m1[l][j] + 0.1 * g
                    m2[l][j] = 0.999 * m2[l][j] + 0.001 * g * g
                    mh, vh = m1[l][j] / (1 - 0.9**steps), m2[l][j] / (1 - 0.999**steps)
                    params[l][j] = params[l][j] - lr * mh / (np.sqrt(vh) + 1e-8)
    return steps / (time.perf_counter() - t0)


def _jax(opt, epochs):
    """jit + lax.scan over the whole run; the partial last batch by a row weight."""
    import jax
    import jax.numpy as jnp

    jax.config.update("jax_enable_x64", True)
    X, y = _data()
    idx, wts = [], []
    for b in _batches(300, epochs):
        idx.append(np.pad(b, (0, 64 - len(b))))
        wts.append(np.pad(np.full(len(b), 1.0 / len(b)), (0, 64 - len(b))))
    idx, wts = jnp.asarray(np.array(idx)), jnp.asarray(np.array(wts))
    Xj, yj, lr = jnp.asarray(X), jnp.asarray(y), LR[opt]

    def loss(params, i, w):
        A = Xj[i]
        for l, (W, b) in enumerate(params):
            Z = A @ W.T + b[:, 0]
            A = Z if l == len(params) - 1 else jax.nn.relu(Z)
        z = A[:, 0]
        return jnp.sum(w * (jnp.maximum(z, 0) - z * yj[i] + jnp.log1p(jnp.exp(-jnp.abs(z)))))

    def step(carry, xs):
        params, m, v, t = carry
        g = jax.grad(loss)(params, *xs)
        t = t + 1
        if opt == "gd":
            params = jax.tree.map(lambda p, d: p - lr * d, params, g)
        else:
            m = jax.tree.map(lambda a, d: 0.9 * a + 0.1 * d, m, g)
            v = jax.tree.map(lambda a, d: 0.999 * a + 0.001 * d * d, v, g)
            params = jax.tree.map(
                lambda p, a, s: p - lr * (a / (1 - 0.9**t)) / (jnp.sqrt(s / (1 - 0.999**t)) + 1e-8),
                params,
                m,
                v,
            )
        return (params, m, v, t), None

    params = [tuple(map(jnp.asarray, p)) for p in _init(np.random.default_rng(0))]
    zeros = jax.tree.map(jnp.zeros_like, params)
    run = jax.jit(lambda c: jax.lax.scan(step, c, (idx, wts))[0])
    jax.block_until_ready(run((params, zeros, zeros, 0.0)))  # compile outside the timing
    t = time.perf_counter()
    jax.block_until_ready(run((params, zeros, zeros, 0.0)))
    return len(idx) / (time.perf_counter() - t)


def _torch(opt, epochs):
    import torch

    torch.manual_seed(0)
    X, y = _data()
    Xt, yt = torch.from_numpy(X), torch.from_numpy(y)[:, None]
    model = torch.nn.Sequential(
        torch.nn.Linear(2, 5),
        torch.nn.ReLU(),
        torch.nn.Linear(5, 2),
        torch.nn.ReLU(),
        torch.nn.Linear(2, 1),
    ).double()
    cls = torch.optim.Adam if opt == "adam" else torch.optim.SGD
    o, lossf, steps = cls(model.parameters(), lr=LR[opt]), torch.nn.BCEWithLogitsLoss(), 0
    lossf(model(Xt[:64]), yt[:64]).backward()  # torch's lazy set-up outside the timing
    t = time.perf_counter()
    for b in _batches(300, epochs):
        b = torch.from_numpy(b)
        o.zero_grad()
        lossf(model(Xt[b]), yt[b]).backward()
        o.step()
        steps += 1
    return steps / (time.perf_counter() - t)


def _worker(impl, opt, epochs):
    if impl.startswith("deepgrad"):
        return _deepgrad(impl.split()[1], opt, epochs)
    return {"plain NumPy loop": _numpy_loop, "JAX jit+scan": _jax, "PyTorch eager": _torch}[impl](
        opt, epochs
    )


def _kernel() -> str:
    try:
        from threadpoolctl import threadpool_info
    except ImportError:
        return "unknown (no threadpoolctl)"
    blas = [i for i in threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(
        f"{i.get('internal_api')} {i.get('version')} {i.get('architecture')}" for i in blas
    )


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--epochs", type=int, default=2000)
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--json", default=None)
    p.add_argument("--worker", nargs=2, metavar=("IMPL", "OPT"), help=argparse.SUPPRESS)
    a = p.parse_args(argv)
    if a.worker:
        print(json.dumps(_worker(a.worker[0], a.worker[1], a.epochs)))
        return 0
    rates: dict = {}
    for _ in range(a.rounds):
        for opt in LR:
            for impl in IMPLS:
                cmd = [sys.executable, __file__, "--epochs", str(a.epochs), "--worker", impl, opt]
                done = subprocess.run(cmd, capture_output=True, text=True)
                r = json.loads(done.stdout) if done.returncode == 0 else None
                rates.setdefault(f"{impl}|{opt}", []).append(r)
    print(
        f"T3 (course size), {a.epochs} epochs, {a.rounds} fresh-process rounds; BLAS: {_kernel()}"
    )
    print("| implementation | adam steps/s | gd steps/s |\n|---|---:|---:|")
    for impl in IMPLS:
        cells = []
        for opt in LR:
            got = [r for r in rates[f"{impl}|{opt}"] if r is not None]
            cells.append(
                f"{statistics.median(got):,.0f}" if got else "skipped (failed or not installed)"
            )
        print(f"| {impl} | {' | '.join(cells)} |")
    if a.json:
        with open(a.json, "w") as f:
            json.dump({"epochs": a.epochs, "kernel": _kernel(), "rates": rates}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
