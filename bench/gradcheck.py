"""Benchmark: gradient checking the reference net T2 (prints a table; not a test).

T2: layers [20, 50, 50, 50, 50, 1], tanh hidden, sigmoid output, binary cross-entropy
+ L2 (lambda = 0.01), float64, m = 256 examples, P = 8751 parameters, eps = 1e-7.

Times, in one run:
- the plain element-wise loop: ``deepgrad.gradcheck`` on theta -> network.cost
  (2P full cost evaluations);
- ``deepgrad.gradcheck_network`` (the same central differences, batched), sequential and
  with worker threads;
- ``torch.autograd.gradcheck`` on theta -> J(theta) written in PyTorch, default mode and
  fast_mode=True (when torch is installed: ``pip install 'deepgrad[bench]'``).

Run: ``make bench-gradcheck`` or ``python bench/gradcheck.py``.
"""

from __future__ import annotations

import argparse
import os
import platform
import time

import numpy as np

import deepgrad as dg
from deepgrad import network as nw
from deepgrad.flat import ordered_keys

LAYERS = [20, 50, 50, 50, 50, 1]
L2, M, EPS = 0.01, 256, 1e-7


def reference_problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    net = dg.Network(LAYERS, "tanh", "sigmoid", init="auto", seed=seed, dtype="float64")
    X = rng.normal(size=(M, LAYERS[0]))
    y = (rng.random(M) < 0.5).astype(np.float64)
    return net, X, y


def timed(fn):
    t0 = time.perf_counter()
    out = fn()
    return time.perf_counter() - t0, out


def plain_loop(net, X, y):
    Y = y[:, None]
    J, grads = nw.cost_and_gradients(net.params, X, Y, net.spec, L2)
    return dg.gradcheck(lambda p: nw.cost(p, X, Y, net.spec, L2), net.params, grads, eps=EPS)


def torch_checks(net, X, y):
    """(seconds, passed) for torch.autograd.gradcheck default and fast mode, or None."""
    try:
        import torch
    except ImportError:
        return None
    theta, unflatten = dg.flatten(net.params)
    Xt, Yt = torch.from_numpy(X), torch.from_numpy(y[:, None])
    shapes = {k: v.shape for k, v in net.params.items()}
    keys = ordered_keys(net.params)
    sizes = [int(np.prod(shapes[k])) for k in keys]

    def J(th):
        parts = dict(zip(keys, torch.split(th, sizes), strict=True))
        A = Xt
        L = len(LAYERS) - 1
        for l in range(1, L + 1):
            Z = A @ parts[f"W{l}"].reshape(shapes[f"W{l}"]).T + parts[f"b{l}"]
            A = torch.tanh(Z) if l < L else Z
        bce = torch.nn.functional.binary_cross_entropy_with_logits(A, Yt, reduction="sum") / M
        reg = sum((parts[f"W{l}"] ** 2).sum() for l in range(1, L + 1)) * (L2 / (2 * M))
        return bce + reg

    th = torch.from_numpy(np.asarray(theta)).clone().requires_grad_(True)
    out = {}
    for label, fast in (("default", False), ("fast_mode", True)):
        sec, ok = timed(
            lambda f=fast: torch.autograd.gradcheck(
                J, (th,), eps=EPS, fast_mode=f, raise_exception=False
            )
        )
        out[label] = (sec, bool(ok))
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=None, help="threads for gradcheck_network")
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args()
    net, X, y = reference_problem()
    print(f"T2: {net!r}, m = {M}, eps = {EPS:g}, lambda = {L2}")
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} CPUs, "
        f"numpy {np.__version__}"
    )
    t_fast1, fast1 = timed(lambda: dg.gradcheck_network(net, X, y, l2=L2, eps=EPS, workers=1))
    t_fast, fast = timed(
        lambda: dg.gradcheck_network(net, X, y, l2=L2, eps=EPS, workers=args.workers)
    )
    t_plain, plain = timed(lambda: plain_loop(net, X, y))
    dev = max(float(np.max(np.abs(plain.numerical[k] - fast.numerical[k]))) for k in net.params)
    rows = [
        ("plain loop (2P cost evaluations)", t_plain, plain.passed, plain.relative_error),
        ("gradcheck_network, 1 thread", t_fast1, fast1.passed, fast1.relative_error),
        ("gradcheck_network, default threads", t_fast, fast.passed, fast.relative_error),
    ]
    torch_res = None if args.no_torch else torch_checks(net, X, y)
    if torch_res:
        for label, (sec, ok) in torch_res.items():
            rows.append((f"torch.autograd.gradcheck {label}", sec, ok, float("nan")))
    print("\n| method | seconds | x gradcheck_network (1 thread) | passed | relative error |")
    print("|---|---:|---:|---|---:|")
    for name, sec, ok, err in rows:
        print(f"| {name} | {sec:.3f} | {sec / t_fast1:.1f} | {ok} | {err:.2e} |")
    print(
        f"\nplain loop / gradcheck_network: {t_plain / t_fast1:.1f}x (1 thread), "
        f"{t_plain / t_fast:.1f}x (default threads); same verdict: "
        f"{plain.passed == fast.passed == fast1.passed}"
    )
    print(
        f"max |numerical(plain) - numerical(fast)| = {dev:.2e} "
        f"(rounding noise of one central difference here: {fast.noise / 4:.1e} per ulp of J)"
    )


if __name__ == "__main__":
    main()
