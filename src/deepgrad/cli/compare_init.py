"""deepgrad compare-init: train the same deep network once per initializer; plot the costs."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from deepgrad.cli.common import write_json
from deepgrad.cli.probe import check_output_path, parse_inits

NAME = "compare-init"
HELP = (
    "train the same deep network with each initializer for a fixed budget and plot "
    "cost per iteration for all of them on one figure"
)

DEFAULT_INITS = "he_normal,xavier_normal,random,zeros,standard_normal"
DEFAULT_PLOT = "out/compare_init.png"


def add_arguments(p) -> None:
    p.add_argument("--depth", type=int, default=30, help="hidden layers (default 30)")
    p.add_argument("--width", type=int, default=100, help="units per hidden layer (default 100)")
    p.add_argument("--activation", default="relu", help="hidden activation (default relu)")
    p.add_argument(
        "--init",
        default=DEFAULT_INITS,
        help=f"comma-separated initializers, or lsuv (default {DEFAULT_INITS})",
    )
    p.add_argument(
        "--data",
        default="digits",
        help="bundled dataset, .npz with X and y, or a CSV/TSV table with --target "
        "(default digits); features are standardized to mean 0, variance 1",
    )
    p.add_argument("--target", metavar="COLUMN", help="the target column of a CSV/TSV --data")
    p.add_argument("--epochs", type=int, default=8)
    p.add_argument("--batch-size", type=int, default=32)
    p.add_argument("--lr", "--learning-rate", dest="lr", type=float, default=0.01)
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--seed", type=int, default=0, help="seed of weights and shuffling")
    p.add_argument(
        "--plot",
        default=DEFAULT_PLOT,
        metavar="FILE",
        help=f"figure to write (default {DEFAULT_PLOT}, out/ made when missing)",
    )
    p.add_argument("--json", default=None, metavar="FILE", help="write the histories as JSON")


def standardize(X) -> np.ndarray:
    """Each feature to mean 0 and variance 1 (constant features are only centred): the
    initializers' variance rules assume inputs of unit scale."""
    X = np.asarray(X, dtype=np.float64)
    std = X.std(axis=0)
    return (X - X.mean(axis=0)) / np.where(std > 0, std, 1.0)


def outcome(history) -> str:
    """'diverged', 'trains' (last epoch's cost <= half the first iteration's) or 'stalls'."""
    if history.stopped is not None:
        return "diverged"
    return "trains" if history.epoch_cost[-1] <= 0.5 * history.iteration_cost[0] else "stalls"


def train_one(X, y, layers, args, output, init):
    from deepgrad.cli.probe import make_net

    batch = X[np.random.default_rng(args.seed).permutation(len(X))[:512]]  # LSUV's batch
    net = make_net(layers, args.activation, init, args.seed, args.dtype, batch, output)
    # N(0, 1) overflows on purpose: fit detects the non-finite cost and stops there.
    with np.errstate(over="ignore", invalid="ignore"):
        return net.fit(
            X,
            y,
            batch_size=args.batch_size,
            epochs=args.epochs,
            learning_rate=args.lr,
            seed=args.seed,
            on_divergence="stop",
            progress=False,
        )


def _row(init, h, seconds) -> str:
    first = h.iteration_cost[0] if h.iteration_cost else float("nan")
    last = h.epoch_cost[-1] if h.epoch_cost else (h.iteration_cost or [float("nan")])[-1]
    return (
        f"{init:>16} {h.iterations:>6} {first:>10.4g} {last:>10.4g} {outcome(h):>9} {seconds:>6.1f}"
    )


def run(args) -> int:
    from deepgrad.cli.sources import guess_output, load_data, n_outputs
    from deepgrad.core.checks import check_float, check_int
    from deepgrad.diagnostics.probe import json_safe
    from deepgrad.plotting import curves as plotting
    from deepgrad.plotting import probe as probe_plots

    for flag, value in (
        ("--depth", args.depth),
        ("--width", args.width),
        ("--epochs", args.epochs),
        ("--batch-size", args.batch_size),
    ):
        check_int(flag, value, 1)
    check_float("--lr", args.lr, 0.0, low_open=True)
    inits = parse_inits(args.init)
    if args.plot == DEFAULT_PLOT:
        Path(DEFAULT_PLOT).parent.mkdir(exist_ok=True)  # out/, as compare-batch makes it
    check_output_path("--plot", args.plot)
    check_output_path("--json", args.json)
    X, y, _ = load_data(args.data, args.target)
    X, output = standardize(X), guess_output(y)
    layers = [X.shape[1], *[args.width] * args.depth, n_outputs(y, output)]
    print(
        f"{args.data}: {X.shape[0]} examples; {args.depth} hidden {args.activation} layers "
        f"x {args.width}; batch {args.batch_size}, lr {args.lr}, {args.epochs} epochs"
    )
    print(f"{'init':>16} {'iters':>6} {'first J':>10} {'last J':>10} {'outcome':>9} {'s':>6}")
    histories = {}
    for init in inits:
        t0 = time.perf_counter()
        histories[init] = train_one(X, y, layers, args, output, init)
        print(_row(init, histories[init], time.perf_counter() - t0))
    title = (
        f"{args.data}: {args.depth} x {args.width} {args.activation}, batch "
        f"{args.batch_size}, lr {args.lr}"
    )
    plotting.save_figure(probe_plots.compare_init_figure(histories, title=title), args.plot)
    print(f"wrote {args.plot}")
    if args.json:
        write_json(
            args.json,
            json_safe(
                {
                    "config": {k: v for k, v in vars(args).items() if not k.startswith("_")},
                    "results": {
                        k: {**h.as_dict(), "outcome": outcome(h)} for k, h in histories.items()
                    },
                }
            ),
        )
        print(f"wrote {args.json}")
    return 0
