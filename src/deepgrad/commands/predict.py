"""deepgrad predict: apply a saved model to data; print accuracy when labels are there."""

from __future__ import annotations

import numpy as np

from ._common import accuracy

NAME = "predict"
HELP = "predict with a saved model (and score it when the data has labels)"


def add_arguments(p) -> None:
    p.add_argument("--model", required=True, help="a model.npz written by deepgrad train")
    p.add_argument("--data", required=True, help="bundled dataset, .npz with X (and y), or .npy")
    p.add_argument("--out", help="write predictions to this .npy file")


def run(args) -> int:
    import deepgrad as dg

    from ..datasets import load_npy
    from ..io import atomic_write
    from .train import load_data

    net = dg.load(args.model)
    if args.data.endswith(".npy"):
        X, y = load_npy(args.data), None
    else:
        X, y, _ = load_data(args.data)
    pred = np.asarray(net.predict(X))
    if args.out:
        atomic_write(args.out, lambda f: np.save(f, pred))
    if y is not None and net.spec.output != "linear":
        print(f"accuracy: {accuracy(net, X, y):.4f} on {len(pred)} examples")
    else:
        print(f"predicted {len(pred)} examples")
    return 0
