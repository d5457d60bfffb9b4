"""Reading shuffled mini-batches from a memory-mapped X.npy: index gathers vs block shuffle.

Reads one epoch's worth of batches (or --batches of them) without any training, to
isolate the cost of the shuffling scheme, from a cold page cache (the file's cached pages
are dropped first with posix_fadvise(DONTNEED), for this file only) and then warm:

- gather: a fresh permutation of all rows; each batch gathers its (sorted) rows,
  ``np.take(X, idx, out=buf)``: a uniform shuffle, what deepgrad's training loop does.
- block: rows in blocks of --block contiguous rows; the blocks are visited in a shuffled
  order and each batch is one block, read with one sequential copy (the rows inside a
  block keep their order from epoch to epoch: a weaker shuffle).

    python bench/data_read.py --data /tmp/d5m [--batch-size 1000] [--batches 1000]
"""

from __future__ import annotations

import argparse
import os
import resource
import time

import numpy as np

from deepgrad.data import arrays as data
from deepgrad.train import loop

every = 256
peak_rss = [0.0]


def rss_mb() -> float:
    """Resident set size now (Linux /proc), and track the peak seen."""
    with open("/proc/self/statm") as f:
        now = int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 1e6
    peak_rss[0] = max(peak_rss[0], now)
    return now


def drop_cache(path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)
    finally:
        os.close(fd)


def gather(X, b: int, batches: int, seed: int, block=None) -> float:
    m = X.shape[0]
    order = data.epoch_permutation(m, seed, 0, block)
    buf = np.empty((b, X.shape[1]), X.dtype)
    t = time.perf_counter()
    for k in range(batches):
        idx = np.sort(order[k * b : (k + 1) * b])
        np.take(X, idx, axis=0, out=buf[: len(idx)])
        if (k + 1) % every == 0:
            rss_mb()
            data.release_pages(X)
    return batches * b / (time.perf_counter() - t)


def block(X, b: int, batches: int, seed: int) -> float:
    m = X.shape[0]
    starts = np.random.default_rng(seed).permutation(m // b) * b
    buf = np.empty((b, X.shape[1]), X.dtype)
    t = time.perf_counter()
    for k in range(batches):
        s = starts[k % len(starts)]
        np.copyto(buf, X[s : s + b])
        if (k + 1) % every == 0:
            rss_mb()
            data.release_pages(X)
    return batches * b / (time.perf_counter() - t)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--data", required=True)
    p.add_argument("--batch-size", type=int, default=1000)
    p.add_argument("--batches", type=int, default=1000)
    args = p.parse_args(argv)
    X, _ = data.open_dataset(args.data)
    path = os.path.join(args.data, "X.npy")
    print(
        f"{path}: {X.shape} {X.dtype}, {X.nbytes / 1e9:.2f} GB; batch {args.batch_size}, "
        f"{args.batches} batches ({args.batches * args.batch_size:,} rows) per measurement"
    )
    print(f"{'scheme':<14} {'cache':<6} {'rows/s':>12} {'MB/s':>8} {'RSS MB (start -> peak)':>24}")
    global every
    every = max(1, loop.RELEASE_BYTES // (args.batch_size * X.strides[0]))
    schemes = (
        ("uniform", gather),
        ("block-shuffle", lambda *a, **k: gather(*a, **k, block=data.shuffle_block(X))),
        ("contiguous", block),
    )
    for name, fn in schemes:
        for cache in ("cold", "warm"):
            if cache == "cold":
                drop_cache(path)
            r0 = peak_rss[0] = 0.0
            r0 = rss_mb()
            rate = fn(X, args.batch_size, args.batches, seed=1)
            print(
                f"{name:<14} {cache:<6} {rate:>12,.0f} {rate * X.strides[0] / 1e6:>8,.0f} "
                f"{r0:>8.0f} -> {peak_rss[0]:.0f}"
            )
            data.release_pages(X)
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(f"peak RSS of the process {rss:.0f} MB")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
