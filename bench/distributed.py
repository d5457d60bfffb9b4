"""How data-parallel training over MPI scales: measured on this machine, predicted for N.

    python bench/distributed.py            (make bench-distributed)

1. Under ``mpiexec -n P`` (P = 2..4, loopback/shared memory, 1 BLAS thread per rank) it
   times the Allreduce of T1's flat gradient buffer (67,073 parameters + the loss sum,
   float32, 268 KB), a 1-value Allreduce (the latency), one local step at b/P rows, and
   one full ``distributed_step`` (local step + Allreduce + update), and compares the last
   with local step + Allreduce.
2. In this process it times one deepgrad step (``train_step``, T1, float32) at
   the local batch sizes b/P the table needs.
3. It predicts the step time on N machines, one rank each, with the ring-allreduce model

       T_step(P) = compute(b/P) + 2 (P - 1) alpha + 2 (P - 1) / P * bytes / beta

   (alpha: per-message latency, beta: link bandwidth; 2(P-1) messages of bytes/P each way),
   the epoch time ceil(M / b) T_step(P) for T1's M = 500,000 examples, the speedup
   T_step(1) / T_step(P), and the global batch size below which communication takes longer
   than computing, from a straight-line fit compute(n) = c0 + c1 n.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import time
from pathlib import Path

# One BLAS thread per process (one rank per core): on a shared 2-core machine more threads
# make every timing noisy. Override with OMP_NUM_THREADS/OPENBLAS_NUM_THREADS.
for _v in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_v, "1")

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))

import deepgrad as dg  # noqa: E402
from deepgrad.optim import optimizers  # noqa: E402
from deepgrad.train import distributed  # noqa: E402
from deepgrad.train.engines.reference import train_step  # noqa: E402

T1 = [100, 256, 128, 64, 1]
M = 500_000
LINKS = {  # name: (bandwidth in bytes/s, per-message latency in s)
    "10 Gb/s (TCP, alpha 15 us)": (10e9 / 8, 15e-6),
    "100 Gb/s (RDMA, alpha 2 us)": (100e9 / 8, 2e-6),
}


def _t1(n, seed=0):
    net = dg.Network(T1, "relu", "sigmoid", seed=seed, dtype="float32")
    rng = np.random.default_rng(seed)
    X = rng.standard_normal((n, T1[0]), dtype=np.float32)
    Y = (rng.random((n, 1)) < 0.5).astype(np.float32)
    return net, X, Y


def step_time(n: int, repeats: int = 30) -> float:
    """Seconds of one T1 train_step (forward, backward, GD update) on n rows, best of
    ``repeats`` (the least disturbed by other processes on a shared machine)."""
    net, X, Y = _t1(n)
    opt = optimizers.gd(0.1)
    params, state = net.params, opt.init(net.params)
    times = []
    for _ in range(repeats + 3):
        t0 = time.perf_counter()
        train_step(params, state, X, Y, net.spec, opt, 0.01)
        times.append(time.perf_counter() - t0)
    return float(np.min(times[3:]))


def _timed(comm, fns, repeats, stat):
    """stat over repetitions of the slowest rank's time of each fn (ranks start together).

    The functions are interleaved, so load from other processes hits them alike.
    """
    from mpi4py import MPI

    times = np.empty((repeats, len(fns)))
    for i in range(repeats):
        for j, fn in enumerate(fns):
            comm.Barrier()
            t0 = time.perf_counter()
            fn()
            times[i, j] = time.perf_counter() - t0
    comm.Allreduce(MPI.IN_PLACE, times, op=MPI.MAX)
    return [float(v) for v in stat(times, axis=0)]


def worker(batch: int, repeats: int) -> None:
    """Runs on every rank under mpiexec; rank 0 prints one JSON line."""
    from mpi4py import MPI

    comm = distributed.world()
    P, r = comm.Get_size(), comm.Get_rank()
    lo, hi = distributed.shard_bounds(batch, P, r)
    net, X, Y = _t1(hi - lo, seed=r)
    buf = np.ones(net.n_params + 1, dtype=np.float32)
    one = np.ones(1, dtype=np.float32)
    opt = optimizers.gd(0.1)
    state = opt.init(net.params)
    big = lambda: comm.Allreduce(MPI.IN_PLACE, buf)  # noqa: E731
    small = lambda: comm.Allreduce(MPI.IN_PLACE, one)  # noqa: E731
    _timed(comm, [big, small], 20, np.median)  # warm up
    allreduce, latency = _timed(comm, [big, small], repeats, np.median)
    local, dist = _timed(
        comm,
        [
            lambda: train_step(net.params, state, X, Y, net.spec, opt, 0.01),
            lambda: distributed.distributed_step(
                comm, net.params, state, X, Y, batch, net.spec, opt, 0.01, None, None
            ),
        ],
        max(20, repeats // 4),
        np.min,
    )
    out = dict(P=P, bytes=buf.nbytes, allreduce=allreduce, latency=latency)
    out.update(local_step=local, dist_step=dist)
    if r == 0:
        print(json.dumps(out), flush=True)


def measure_loopback(P: int, batch: int, repeats: int) -> dict:
    argv = [sys.executable, __file__, "--worker", "--batch", str(batch)]
    cmd, env = distributed.local_mpiexec(P, [*argv, "--repeats", str(repeats)], threads=1)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    if proc.returncode != 0:
        raise RuntimeError(f"mpiexec -n {P} failed:\n{proc.stderr[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def comm_time(P: int, nbytes: int, bandwidth: float, alpha: float) -> float:
    """Ring allreduce: 2(P-1) messages of nbytes/P each, latency alpha each."""
    if P == 1:
        return 0.0
    return 2 * (P - 1) * alpha + 2 * (P - 1) / P * nbytes / bandwidth


def crossover(P: int, t_comm: float, compute: dict) -> str:
    """The global batch below which comm takes longer than compute(b/P).

    compute(n) is made non-decreasing (running maximum: timing noise must not create
    several crossings) and interpolated linearly between the measured n.
    """
    ns = np.array(sorted(compute), dtype=float)
    ts = np.maximum.accumulate([compute[n] for n in sorted(compute)])
    if ts[0] >= t_comm:
        return f"never (a step on {int(ns[0])} row(s) already takes longer)"
    if ts[-1] < t_comm:
        return f"b < more than {int(P * ns[-1])} (beyond the measured sizes)"
    k = int(np.argmax(ts >= t_comm))  # first measured size at or above t_comm
    n = ns[k - 1] + (t_comm - ts[k - 1]) * (ns[k] - ns[k - 1]) / max(ts[k] - ts[k - 1], 1e-12)
    return f"b < {math.ceil(P * n)}  (b/N < {n:.0f} rows per machine)"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    ap.add_argument("--batch", type=int, default=1000, help="global batch for loopback runs")
    ap.add_argument("--batches", default="256,1000,4096", help="global batches in the model")
    ap.add_argument("--machines", default="1,2,4,8,16,32")
    ap.add_argument("--ranks", default="2,3,4", help="loopback rank counts")
    ap.add_argument("--repeats", type=int, default=200)
    args = ap.parse_args()
    if args.worker:
        return worker(args.batch, args.repeats)

    n_params = dg.Network(T1, "relu", "sigmoid", dtype="float32").n_params
    nbytes = 4 * (n_params + 1)
    print(f"T1 {T1}: {n_params} parameters; Allreduce buffer {nbytes} bytes (float32)\n")
    print("1. Measured on this machine: P ranks over shared memory, 1 BLAS thread each,")
    print(f"   global batch {args.batch} (local b/P rows); times in ms")
    print(f"{'P':>3} {'allreduce':>10} {'1-value':>8} {'local step':>11} {'dist step':>10} "
          f"{'local+allred':>13}")  # fmt: skip
    for P in [int(p) for p in args.ranks.split(",")]:
        d = measure_loopback(P, args.batch, args.repeats)
        print(f"{P:>3} {1e3 * d['allreduce']:>10.3f} {1e3 * d['latency']:>8.3f} "
              f"{1e3 * d['local_step']:>11.2f} {1e3 * d['dist_step']:>10.2f} "
              f"{1e3 * (d['local_step'] + d['allreduce']):>13.2f}")  # fmt: skip

    batches = [int(b) for b in args.batches.split(",")]
    machines = [int(p) for p in args.machines.split(",")]
    sizes = {math.ceil(b / P) for b in batches for P in machines}
    sizes = sorted(sizes | {2**k for k in range(13)})
    compute = {n: step_time(n) for n in sizes}
    print("\n2. One deepgrad step (train_step, T1, float32, 1 thread) in this process, ms,")
    print("   by rows n (best of 30):")
    print("   " + ", ".join(f"{n}: {1e3 * compute[n]:.2f}" for n in sizes))

    print(f"\n3. Predicted on N machines, one rank each; epoch of M = {M} examples")
    for link, (beta, alpha) in LINKS.items():
        print(f"\n   link {link}")
        print(f"   {'b':>5} {'N':>3} {'compute':>8} {'comm':>7} {'step':>7} {'epoch s':>8} "
              f"{'speedup':>7}")  # fmt: skip
        for b in batches:
            t1 = compute[b]
            for P in machines:
                tc, tm = compute[math.ceil(b / P)], comm_time(P, nbytes, beta, alpha)
                t = tc + tm
                print(f"   {b:>5} {P:>3} {1e3 * tc:>8.2f} {1e3 * tm:>7.3f} {1e3 * t:>7.2f} "
                      f"{math.ceil(M / b) * t:>8.2f} {t1 / t:>7.2f}")  # fmt: skip
        print("   communication dominates (comm > compute(b/N)) for global batch b below:")
        for P in machines[1:]:
            tm = comm_time(P, nbytes, beta, alpha)
            print(f"     N = {P:>3}: comm {1e3 * tm:.3f} ms -> {crossover(P, tm, compute)}")


if __name__ == "__main__":
    main()
