"""deepgrad compare-batch: the seed's figure, batch GD vs mini-batch vs SGD."""

from __future__ import annotations

import numpy as np

from deepgrad.cli.common import add_network_arguments, out_dir, write_json

NAME = "compare-batch"
HELP = "train one network with batch GD, mini-batch (64, 1000) and SGD; plot cost curves"


def add_data_arguments(p, examples: int) -> None:
    p.add_argument(
        "--data",
        help="bundled dataset, .npz or .npy directory (default: a "
        "synthetic set from make-data's generator)",
    )
    p.add_argument(
        "--examples", type=int, default=examples, help=f"synthetic set: rows (default {examples})"
    )
    p.add_argument("--features", type=int, default=20, help="synthetic set: columns (20)")


def load(args):
    """(X, y, output) from --data or the synthetic generator."""
    from deepgrad.data import arrays as data

    if args.data:
        from deepgrad.cli.sources import load_data

        return load_data(args.data)
    X, y = data.synthetic(args.examples, args.features, seed=args.seed)
    return X, y, "sigmoid"


def build_net(args, X, y, output):
    import deepgrad as dg
    from deepgrad.cli.sources import n_outputs

    layers = [X.shape[1], *args.hidden, n_outputs(y, output)]
    return dg.Network(
        layers, args.activation, output, init=args.init, seed=args.seed, dtype=args.dtype
    )


def add_arguments(p) -> None:
    add_data_arguments(p, 20_000)
    add_network_arguments(p, hidden="64,32")
    p.add_argument("--epochs", type=int, default=20, help="epochs for batch GD and mini-batch")
    p.add_argument("--lr", type=float, default=0.1, help="learning rate, all runs (0.1)")
    p.add_argument("--l2", type=float, default=0.0)
    p.add_argument("--batch-sizes", default="1000,64", help="mini-batch sizes (1000,64)")
    p.add_argument(
        "--sgd-examples",
        type=int,
        default=2000,
        help="SGD (batch size 1) runs on the first N examples (2000)",
    )
    p.add_argument("--sgd-epochs", type=int, default=5)
    p.add_argument("--out", default="out", help="output directory (default out/)")
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    from deepgrad.cli.common import int_list
    from deepgrad.diagnostics import batchsize
    from deepgrad.plotting import batch as batchplots
    from deepgrad.plotting import curves as plotting

    X, y, output = load(args)
    net = build_net(args, X, y, output)
    runs = batchsize.compare(
        net,
        X,
        y,
        epochs=args.epochs,
        learning_rate=args.lr,
        l2=args.l2,
        minibatch_sizes=int_list(args.batch_sizes),
        sgd_examples=args.sgd_examples,
        sgd_epochs=args.sgd_epochs,
        seed=args.seed,
    )
    out = out_dir(args.out)
    title = f"{net!r}, lr {args.lr}, {X.shape[0]:,} examples"
    plotting.save_figure(batchplots.compare_figure(runs, title=title), out / "compare_batch.png")
    summary = []
    for r in runs:
        h = r.history
        tail = float(np.mean(h.iteration_cost[-max(1, h.iterations // 20) :]))
        summary.append(
            {
                "label": r.label,
                "batch_size": r.batch_size,
                "examples": r.examples,
                "iterations": h.iterations,
                "seconds": h.iteration_time[-1],
                "first_cost": h.iteration_cost[0],
                "final_cost_avg": tail,
                "epoch_cost": h.epoch_cost,
            }
        )
    write_json(out / "compare_batch.json", summary)
    if not args.quiet:
        print(f"{'run':<40} {'iters':>7} {'seconds':>8} {'J first':>8} {'J last 5%':>9}")
        for s in summary:
            print(
                f"{s['label']:<40} {s['iterations']:>7} {s['seconds']:>8.2f} "
                f"{s['first_cost']:>8.4f} {s['final_cost_avg']:>9.4f}"
            )
        print(f"wrote {out / 'compare_batch.png'} and {out / 'compare_batch.json'}")
    return 0
