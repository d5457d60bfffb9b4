"""deepgrad make-data: write a deterministic synthetic classification set as .npy files."""

from __future__ import annotations

import time

NAME = "make-data"
HELP = "write a synthetic binary classification set (X.npy float32, y.npy) in chunks"


def add_arguments(p) -> None:
    p.add_argument("--examples", type=int, required=True, help="number of rows m")
    p.add_argument("--features", type=int, default=100, help="number of columns n_x (100)")
    p.add_argument("--seed", type=int, default=0, help="seed of the teacher and the rows")
    p.add_argument("--noise", type=float, default=0.05, help="fraction of flipped labels")
    p.add_argument("--out", required=True, help="directory to create (must not exist)")
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    from deepgrad.data import arrays as data

    t = time.perf_counter()
    out = data.make_dataset(args.out, args.examples, args.features, args.seed, args.noise)
    if not args.quiet:
        X, y = data.open_dataset(out)
        gb = X.nbytes / 1e9
        print(
            f"wrote {out}/X.npy {X.shape} {X.dtype} ({gb:.2f} GB) and y.npy "
            f"(positive fraction {float(y[:1_000_000].mean()):.3f}) "
            f"in {time.perf_counter() - t:.1f} s"
        )
    return 0
