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
import math
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
    """(wall seconds, CPU seconds of this process, result). CPU time is what the
    comparison uses: on a shared machine it does not count the time other jobs hold the
    cores (and for threaded runs it adds up all threads)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def work_model(sizes, m):
    """Multiply-adds and activation evaluations of the plain loop and of the fast path.

    Plain loop: 2P full forward passes. Fast path, per perturbed element of layer l (both
    signs): the column of Z^[l] (m), a rank-1 update of Z^[l+1], then full layers l+2..L;
    activations for the column and every hidden layer after l.
    """
    L = len(sizes) - 1
    full_macs = m * sum(sizes[k - 1] * sizes[k] for k in range(1, L + 1))
    full_acts = m * sum(sizes[1:-1])
    P = sum(sizes[k] * (sizes[k - 1] + 1) for k in range(1, L + 1))
    fast_macs = fast_acts = 0
    for l in range(1, L + 1):
        n_l = sizes[l] * (sizes[l - 1] + 1)
        macs = m + (m * sizes[l + 1] if l < L else 0)
        macs += m * sum(sizes[k - 1] * sizes[k] for k in range(l + 2, L + 1))
        acts = (m if l < L else 0) + m * sum(sizes[l + 1 : L])
        fast_macs += 2 * n_l * macs
        fast_acts += 2 * n_l * acts
    return 2 * P * full_macs, 2 * P * full_acts, fast_macs, fast_acts


def plain_loop(net, X, y, mode="elementwise"):
    """The plain loop (or its directional mode), with BLAS on one thread: faster for these
    small products (measured)."""
    from deepgrad.gradcheck import _single_threaded_blas

    Y = y[:, None]
    J, grads = nw.cost_and_gradients(net.params, X, Y, net.spec, L2)
    with _single_threaded_blas():
        cost = lambda p: nw.cost(p, X, Y, net.spec, L2)  # noqa: E731
        return dg.gradcheck(cost, net.params, grads, eps=EPS, mode=mode)


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
    for label, fast in (("default", False), ("fast_mode=True", True)):
        wall, cpu, ok = timed(
            lambda f=fast: torch.autograd.gradcheck(
                J, (th,), eps=EPS, fast_mode=f, raise_exception=False
            )
        )
        out[label] = (
            wall,
            cpu,
            bool(ok),
            f"torch {torch.__version__}, {torch.get_num_threads()} threads",
        )
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--workers", type=int, default=None, help="threads for gradcheck_network")
    p.add_argument("--no-torch", action="store_true")
    args = p.parse_args()
    net, X, y = reference_problem()
    print(f"T2: {net!r}, m = {M}, eps = {EPS:g}, lambda = {L2}")
    print(f"machine: {platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}")
    print(f"load average before: {os.getloadavg()[0]:.1f}", flush=True)
    fast1 = timed(lambda: dg.gradcheck_network(net, X, y, l2=L2, eps=EPS, workers=1))
    fastn = timed(lambda: dg.gradcheck_network(net, X, y, l2=L2, eps=EPS, workers=args.workers))
    plain = timed(lambda: plain_loop(net, X, y))
    direc = timed(lambda: plain_loop(net, X, y, mode="directional"))
    rows = [
        ("plain loop: dg.gradcheck on network.cost (2P evaluations)", *plain, ""),
        ("gradcheck_network, 1 thread", *fast1, ""),
        ("gradcheck_network, default threads", *fastn, ""),
        ("dg.gradcheck mode='directional' (3 directions per array)", *direc, ""),
    ]
    torch_res = None if args.no_torch else torch_checks(net, X, y)
    for label, (wall, cpu, ok, note) in (torch_res or {}).items():
        rows.append((f"torch.autograd.gradcheck {label}", wall, cpu, ok, note))
    print(f"load average after: {os.getloadavg()[0]:.1f}")
    print("\n| method | wall s | CPU s | CPU s / gradcheck_network (1 thread) | verdict |")
    print("|---|---:|---:|---:|---|")
    for name, wall, cpu, res, note in rows:
        verdict = (
            f"{'pass' if res.passed else 'FAIL'} ({res.relative_error:.2e})"
            if hasattr(res, "passed")
            else ("pass" if res else "FAIL") + f" ({note})"
        )
        print(f"| {name} | {wall:.2f} | {cpu:.2f} | {cpu / fast1[1]:.1f} | {verdict} |")
    p_res, f_res = plain[2], fast1[2]
    dev = max(float(np.max(np.abs(p_res.numerical[k] - f_res.numerical[k]))) for k in net.params)
    print(
        f"\nplain loop / gradcheck_network (1 thread): {plain[1] / fast1[1]:.1f}x CPU time, "
        f"{plain[0] / fast1[0]:.1f}x wall time; with threads: {plain[0] / fastn[0]:.1f}x wall. "
        f"Same verdict: {p_res.passed == f_res.passed == fastn[2].passed}"
    )
    pm, pa, fm, fa = work_model(LAYERS, M)
    print(
        f"arithmetic: plain loop {pm / 1e9:.1f} G multiply-adds and {pa / 1e6:.0f} M tanh; "
        f"fast path {fm / 1e9:.2f} G and {fa / 1e6:.0f} M: {pm / fm:.1f}x and {pa / fa:.1f}x less"
    )
    J = float(nw.cost(net.params, X, y[:, None], net.spec, L2))
    print(
        f"max |numerical(plain) - numerical(fast)| = {dev:.2e}; "
        f"one ulp of J over 2 eps = {math.ulp(J) / (2 * EPS):.1e} (J = {J:.4f})"
    )


if __name__ == "__main__":
    main()
