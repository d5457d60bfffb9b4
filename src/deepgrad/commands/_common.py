"""Argument types and helpers shared by the commands."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np


def int_list(text: str) -> list[int]:
    """'128,64,64' -> [128, 64, 64]."""
    try:
        values = [int(t) for t in text.split(",") if t.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints, got {text!r}") from None
    if not values or min(values) < 1:
        raise argparse.ArgumentTypeError(f"expected comma-separated ints >= 1, got {text!r}")
    return values


def add_network_arguments(p: argparse.ArgumentParser, hidden="128,64,32") -> None:
    p.add_argument(
        "--hidden",
        type=int_list,
        default=int_list(hidden),
        help=f"hidden layer widths, comma-separated (default {hidden})",
    )
    p.add_argument("--activation", default="relu", help="hidden activation (default relu)")
    p.add_argument("--init", default="auto", help="initializer name (default auto)")
    p.add_argument("--dtype", default="float32", choices=["float32", "float64"])
    p.add_argument("--seed", type=int, default=0, help="seed for init and shuffling")


def add_training_arguments(p: argparse.ArgumentParser, batch_size=64, epochs=20, lr=0.1) -> None:
    p.add_argument(
        "--batch-size",
        type=int,
        default=batch_size,
        help=f"mini-batch size; 0 = batch gradient descent (default {batch_size})",
    )
    p.add_argument("--epochs", type=int, default=epochs)
    p.add_argument("--lr", "--learning-rate", dest="lr", type=float, default=lr)
    p.add_argument("--l2", type=float, default=0.0, help="lambda of the L2 term")
    p.add_argument("--keep-prob", type=float, default=1.0, help="dropout keep probability")
    p.add_argument("--quiet", action="store_true", help="no progress bar or summary")


def write_json(path, obj) -> None:
    from ..io import atomic_write

    text = json.dumps(obj, indent=1, default=float).encode()
    atomic_write(path, lambda f: f.write(text))


def out_dir(path) -> Path:
    out = Path(path)
    out.mkdir(parents=True, exist_ok=True)
    return out


def accuracy(net, X, y) -> float:
    return float(np.mean(np.asarray(net.predict(X)) == np.asarray(y)))
