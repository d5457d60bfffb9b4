"""deepgrad gradcheck: the seed's gradient check on a saved model or a fresh network."""

from __future__ import annotations

import numpy as np

from deepgrad.cli.common import int_list

NAME = "gradcheck"
HELP = "check backprop against central differences; exit 0 if it passes, 1 if not"


# The command's arguments, in the order `deepgrad gradcheck --help` lists them.
ARGUMENTS = (
    ("--model", dict(help="a model.npz written by deepgrad train (else a fresh network)")),
    ("--layers", dict(
        type=int_list, default=None,
        help="all layer sizes of a fresh network, inputs to outputs (default 10,16,16,3; "
        "with --data, its features,16,16,its outputs)",
    )),
    ("--activation", dict(
        default=None,
        help="hidden activation of a fresh network (default tanh, or what the bug needs)",
    )),
    ("--init", dict(default="auto", help="initializer of a fresh network")),
    ("--output", dict(default="softmax", choices=["sigmoid", "softmax", "linear"])),
    ("--data", dict(
        help="take the examples from this dataset (bundled name, .npz, or a CSV/TSV table "
        "with --target); default: random inputs and labels",
    )),
    ("--target", dict(metavar="COLUMN", help="the target column of a CSV/TSV --data")),
    ("--examples", dict(type=int, default=32, help="batch size m of the check")),
    ("--l2", dict(type=float, default=None, help="lambda of the L2 term (default 0)")),
    ("--keep-prob", dict(
        type=float, default=None,
        help="dropout keep probability; masks are frozen for the check (default 1)",
    )),
    ("--method", dict(
        choices=["exact", "plain"], default="exact",
        help="exact: central differences without cancellation (default); plain: the seed's "
        "formula, two costs subtracted",
    )),
    ("--dtype", dict(
        choices=["float64", "float32"], default=None,
        help="precision of the check (default: the model's dtype; float64 for a fresh network)",
    )),
    ("--eps", dict(
        type=float, default=None, help="step (default: per method and dtype, e.g. 1e-9)"
    )),
    ("--threshold", dict(
        type=float, default=None,
        help="bar of the relative error (default: per method and dtype, e.g. 1e-12)",
    )),
    ("--sample", dict(type=int, default=None, help="check this many elements, stratified")),
    ("--plant-bug", None),  # its choices are the bug catalogue's, read when the parser is built
    ("--plot", dict(help="write per-parameter errors against the bands to this PNG")),
    ("--seed", dict(type=int, default=0)),
)  # fmt: skip


def add_arguments(p) -> None:
    from deepgrad.diagnostics import bugs

    for flag, kwargs in ARGUMENTS:
        if flag == "--plant-bug":
            kwargs = dict(
                choices=bugs.names(), default=None, metavar="NAME",
                help="check a backward with this typical bug instead of deepgrad's: "
                + ", ".join(bugs.names()),
            )  # fmt: skip
        p.add_argument(flag, **kwargs)


def _settings(args, bug):
    """(activation, l2, keep_prob), filled in from what a planted bug needs."""
    needs = bug.needs if bug else ""
    activation = args.activation or (needs if needs in ("relu", "tanh", "sigmoid") else "tanh")
    if needs in ("relu", "tanh", "sigmoid") and activation != needs:
        raise ValueError(f"--plant-bug {bug.name} needs a {needs} network, got {activation!r}")
    l2 = args.l2 if args.l2 is not None else (0.1 if needs == "l2" else 0.0)
    keep = args.keep_prob if args.keep_prob is not None else (0.8 if needs == "dropout" else 1.0)
    if needs == "l2" and l2 == 0:
        raise ValueError(f"--plant-bug {bug.name} needs --l2 > 0 to show, got {l2}")
    if needs == "dropout" and keep == 1:
        raise ValueError(f"--plant-bug {bug.name} needs --keep-prob < 1 to show, got {keep}")
    return activation, l2, keep


def _examples(net, args, rng):
    """m examples from --data, or random inputs with labels that fit the output."""
    from deepgrad.cli.sources import load_data
    from deepgrad.core.checks import check_int

    m = check_int("--examples", args.examples, 1)
    if args.data:
        X, y, _ = load_data(args.data, args.target)
        idx = rng.permutation(len(X))[:m]
        return np.asarray(X[idx], dtype=np.float64), np.asarray(y[idx])
    n_in, n_out = net.layer_sizes[0], net.layer_sizes[-1]
    X = rng.normal(size=(m, n_in))
    if net.spec.output == "softmax":
        return X, rng.integers(0, n_out, m)
    if net.spec.output == "sigmoid":
        y = (rng.random((m, n_out)) < 0.5).astype(np.float64)
        return X, y[:, 0] if n_out == 1 else y
    return X, rng.normal(size=(m, n_out))


def _default_layers(args) -> list[int]:
    """10,16,16,3, or the --data's features and outputs around 16,16."""
    if not args.data:
        return [10, 16, 16, 3]
    from deepgrad.cli.sources import load_data, n_outputs

    X, y, _ = load_data(args.data, args.target)
    return [int(np.shape(X)[1]), 16, 16, n_outputs(np.asarray(y), args.output)]


def run(args) -> int:
    import deepgrad as dg
    from deepgrad.diagnostics import bugs
    from deepgrad.plotting import curves as plotting

    bug = bugs.get(args.plant_bug) if args.plant_bug else None
    if args.model:
        net = dg.load(args.model)
        if (
            bug
            and bug.needs in ("relu", "tanh", "sigmoid")
            and net.spec.hidden_activation != bug.needs
        ):
            raise ValueError(
                f"--plant-bug {bug.name} needs a {bug.needs} network; the model "
                f"is {net.spec.hidden_activation}"
            )
        args.activation = net.spec.hidden_activation
    _, l2, keep = _settings(args, bug)
    if not args.model:
        activation = _settings(args, bug)[0]
        if args.layers is None:
            args.layers = _default_layers(args)
        net = dg.Network(
            args.layers,
            activation,
            args.output,
            init=args.init,
            seed=args.seed,
            dtype=args.dtype or "float64",
        )
    X, y = _examples(net, args, np.random.default_rng(args.seed))
    print(
        f"{net!r}; checking on {len(X)} examples, l2 {l2:g}, keep_prob {keep:g}"
        + (f"; planted bug: {bug.name} ({bug.description})" if bug else "")
    )
    report = dg.gradcheck_network(
        net,
        X,
        y,
        l2=l2,
        eps=args.eps,
        threshold=args.threshold,
        keep_prob=keep,
        seed=args.seed,
        sample=args.sample,
        backward=bug.backward if bug else None,
        method=args.method,
        dtype=args.dtype,
    )
    print(report)
    if args.plot:
        from deepgrad.plotting.gradcheck import report_errors

        plotting.save_figure(report_errors(report), args.plot)
        print(f"wrote {args.plot}")
    return 0 if report.passed else 1


def demo_check(
    net, X, y, l2: float, l2_normalization, seed: int, examples=32, which="held-out"
) -> bool:
    """The demo's check: the trained net's backprop on ``examples`` examples of X.

    Runs on a float64 copy (``gradcheck_network`` makes one), with the L2 term as trained
    (``l2_normalization``: "batch", or the training-set size for a net trained with
    "dataset"); prints a one-line result and the first lines of the table. Returns
    ``report.passed``.
    """
    import deepgrad as dg

    idx = np.random.default_rng(seed).choice(len(X), size=min(examples, len(X)), replace=False)
    report = dg.gradcheck_network(
        net, X[idx], y[idx], l2=l2, l2_normalization=l2_normalization, seed=seed, dtype="float64"
    )
    print(
        f"gradient check of backprop on {len(idx)} {which} examples (float64 copy): "
        f"{report.summary()}"
    )
    rows = 1 + len(report.per_param)  # the header and every W and b, all layers
    print("\n".join("  " + line for line in report.table().splitlines()[:rows]))
    return report.passed
