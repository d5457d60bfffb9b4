"""deepgrad probe: per-layer statistics of a deep network under several initializers."""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np

from deepgrad.cli.common import write_json

NAME = "probe"
HELP = (
    "probe a deep network layer by layer for each initializer: do activations and "
    "gradients vanish, explode or stay stable?"
)


def add_arguments(p) -> None:
    p.add_argument("--depth", type=int, default=30, help="hidden layers (default 30)")
    p.add_argument(
        "--width",
        type=int,
        default=500,
        help="units per hidden layer and input features (default 500)",
    )
    p.add_argument("--activation", default="relu", help="hidden activation (default relu)")
    p.add_argument(
        "--init",
        default="he_normal,xavier_normal,random",
        help="comma-separated initializers (any deepgrad.initializers name, or "
        "lsuv); default he_normal,xavier_normal,random",
    )
    p.add_argument(
        "--examples",
        type=int,
        default=1000,
        help="examples in the probe batch, N(0, 1) inputs (default 1000)",
    )
    p.add_argument(
        "--classes",
        type=int,
        default=10,
        help="softmax outputs; labels are drawn at random (default 10)",
    )
    p.add_argument(
        "--dtype",
        default="float64",
        choices=["float32", "float64"],
        help="float64 (default) measures tiny and huge scales without underflow",
    )
    p.add_argument("--seed", type=int, default=0, help="seed of weights, inputs and labels")
    p.add_argument("--plot", default=None, metavar="FILE", help="write the figure (PNG)")
    p.add_argument("--json", default=None, metavar="FILE", help="write every number as JSON")


def parse_inits(text: str) -> list[str]:
    """'he_normal, random' -> ['he_normal', 'random']; unknown names raise ValueError."""
    from deepgrad.core import initializers

    allowed = [*initializers.names(), "lsuv"]
    names = [t.strip() for t in str(text).split(",") if t.strip()]
    if not names:
        raise ValueError(f"--init needs at least one initializer name, got {text!r}")
    for name in names:
        if name not in allowed:
            raise ValueError(f"--init: unknown initializer {name!r}; allowed: {allowed}")
    return names


def check_output_path(flag: str, path) -> None:
    """Fail before any work when a file could not be written (no half-done runs)."""
    if path is None:
        return
    parent = Path(path).parent
    if not parent.is_dir():
        raise OSError(f"{flag} {str(path)!r}: directory {str(parent)!r} does not exist")


def make_net(layers, activation: str, init: str, seed: int, dtype: str, X, output="softmax"):
    """A Network with ``init``; "lsuv" is LSUV on the batch X (orthonormal start)."""
    import deepgrad as dg

    if init != "lsuv":
        return dg.Network(layers, activation, output, init=init, seed=seed, dtype=dtype)
    net = dg.Network(layers, activation, output, init="zeros", dtype=dtype)
    return dg.lsuv(net, X, seed=seed)[0]


def validate(args) -> list[str]:
    from deepgrad.core import activations
    from deepgrad.core.checks import check_int

    check_int("--depth", args.depth, 1)
    check_int("--width", args.width, 1)
    check_int("--examples", args.examples, 1)
    check_int("--classes", args.classes, 2)
    check_int("--seed", args.seed, 0)
    activations.get(args.activation)
    inits = parse_inits(args.init)
    check_output_path("--plot", args.plot)
    check_output_path("--json", args.json)
    return inits


def run(args) -> int:
    import deepgrad as dg
    from deepgrad.diagnostics.probe import json_safe

    inits = validate(args)
    layers = [args.width] * (args.depth + 1) + [args.classes]
    # Inputs from their own stream ([seed, 1]): never the numbers the weights are drawn from.
    X = np.random.default_rng([args.seed, 1]).standard_normal((args.examples, args.width))
    reports, t0 = [], time.perf_counter()
    for init in inits:
        net = make_net(layers, args.activation, init, args.seed, args.dtype, X)
        report = dg.probe(net, X, seed=args.seed)
        reports.append(report)
        print(f"== {report.summary()}")
        print(report.table())
        print()
    print(
        f"{len(inits)} probes of {args.depth} hidden {args.activation} layers x {args.width} "
        f"on {args.examples} examples in {time.perf_counter() - t0:.1f} s"
    )
    if args.plot:
        from deepgrad.plotting import curves as plotting
        from deepgrad.plotting import probe as probe_plots

        plotting.save_figure(probe_plots.probe_figure(reports), args.plot)
        print(f"wrote {args.plot}")
    if args.json:
        config = {
            k: getattr(args, k)
            for k in ("depth", "width", "activation", "examples", "classes", "dtype", "seed")
        }
        write_json(
            args.json,
            json_safe(
                {"config": {**config, "init": inits}, "results": [r.to_dict() for r in reports]}
            ),
        )
        print(f"wrote {args.json}")
    return 0
