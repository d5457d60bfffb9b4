"""deepgrad train: train a network on a bundled dataset, a .npz file or a .npy directory."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from ._common import accuracy, add_network_arguments, add_training_arguments, out_dir, write_json

NAME = "train"
HELP = "train a network and write the model, its history and learning curves"


def add_arguments(p) -> None:
    p.add_argument(
        "--data",
        required=True,
        help="bundled dataset (digits, breast_cancer, iris, wine), a .npz with X and "
        "y, or a directory with X.npy and y.npy (memory-mapped)",
    )
    add_network_arguments(p)
    p.add_argument(
        "--output",
        default="auto",
        choices=["auto", "sigmoid", "softmax", "linear"],
        help="output layer/loss; auto picks from the labels",
    )
    add_training_arguments(p)
    p.add_argument("--l2-normalization", default="batch", choices=["batch", "dataset"])
    p.add_argument(
        "--test-fraction",
        type=float,
        default=0.2,
        help="held-out fraction for in-memory data (0 = none)",
    )
    p.add_argument("--out", default="out", help="output directory (default out/)")
    p.add_argument(
        "--checkpoint",
        metavar="PATH",
        help="save training state here (each epoch, on Ctrl-C and every "
        "--checkpoint-every iterations); resume from it when it exists",
    )
    p.add_argument(
        "--checkpoint-every", type=int, metavar="N", help="also checkpoint every N iterations"
    )
    p.add_argument(
        "--distributed",
        action="store_true",
        help="data-parallel over MPI ranks: mpiexec -n 4 deepgrad train ... --distributed "
        "(rank 0 alone prints and writes)",
    )


def load_data(spec: str):
    """(X, y, suggested output) from a bundled name, a .npz file or a .npy directory."""
    from .. import datasets

    path = Path(spec)
    if spec in datasets.BUNDLED:
        return datasets.load_bundled(spec)
    if path.is_dir():
        from ..data import open_dataset

        X, y = open_dataset(path)  # memory-mapped, shape/dtype checked
    elif path.suffix == ".npz" or path.is_file():
        X, y = datasets.load_file(path)
    else:
        raise FileNotFoundError(
            f"--data {spec!r} is neither a bundled dataset {list(datasets.BUNDLED)} nor a file"
        )
    if len(X) != len(y):
        raise ValueError(
            f"--data {spec!r}: X has {len(X)} rows but y has {len(y)}; they must match"
        )
    return X, y, guess_output(y)


def guess_output(y) -> str:
    y = np.asarray(y[:100000])
    if y.dtype.kind not in "biuf":
        raise TypeError(f"the data's y must hold numbers (labels or targets), got dtype {y.dtype}")
    if y.size == 0:
        raise ValueError("the data's y is empty: at least 1 example needed")
    if y.ndim == 2 and y.shape[1] > 1:
        return "linear"
    if y.dtype.kind in "biu" or np.all(y == np.round(y)):
        return "sigmoid" if len(np.unique(y)) <= 2 else "softmax"
    return "linear"


def n_outputs(y, output: str) -> int:
    if output == "softmax":
        return int(np.max(y)) + 1
    return 1 if np.ndim(y) == 1 else int(np.shape(y)[1])


def run(args) -> int:
    import deepgrad as dg

    from .. import datasets, plotting
    from .._checks import check_float

    check_float("--test-fraction", args.test_fraction, 0.0, 1.0, high_open=True)
    if args.distributed:  # issue 7: one-line error outside mpiexec; ranks fail together
        from .. import distributed

        X, y, guessed = distributed.agree(distributed.world(), load_data, args.data)
    else:
        X, y, guessed = load_data(args.data)
    output = guessed if args.output == "auto" else args.output
    Xte = yte = None
    if not isinstance(X, np.memmap) and args.test_fraction > 0:
        X, Xte, y, yte = datasets.train_test_split(X, y, args.test_fraction, args.seed)
    layers = [X.shape[1], *args.hidden, n_outputs(y, output)]
    net = dg.Network(
        layers, args.activation, output, init=args.init, seed=args.seed, dtype=args.dtype
    )
    t0 = time.perf_counter()
    history = net.fit(
        X,
        y,
        batch_size=args.batch_size or None,
        epochs=args.epochs,
        learning_rate=args.lr,
        l2=args.l2,
        l2_normalization=args.l2_normalization,
        keep_prob=args.keep_prob,
        seed=args.seed,
        validation_data=None if Xte is None else (Xte, yte),
        progress=False if args.quiet else None,
        checkpoint=args.checkpoint,
        checkpoint_every=args.checkpoint_every,
        distributed=args.distributed,
    )
    seconds = time.perf_counter() - t0
    if args.distributed and distributed.rank() != 0:
        return 0  # rank 0 alone writes and prints
    out = out_dir(args.out)
    dg.save(net, out / "model.npz")
    write_json(out / "history.json", history.as_dict())
    plotting.save_figure(
        plotting.learning_curves(history, title=f"{net!r}"), out / "learning_curves.png"
    )
    if not args.quiet:
        print(net)
        print(
            f"trained {history.iterations} iterations in {seconds:.1f} s; "
            f"final epoch cost {history.epoch_cost[-1]:.4f}"
        )
        if Xte is not None and output != "linear":
            print(f"held-out accuracy: {accuracy(net, Xte, yte):.4f} on {len(yte)} examples")
        print(f"wrote {out / 'model.npz'}, {out / 'history.json'}, {out / 'learning_curves.png'}")
    return 0
