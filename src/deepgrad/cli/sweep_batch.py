"""deepgrad sweep-batch: time per step/epoch and the gradient noise scale by batch size."""

from __future__ import annotations

import numpy as np

from deepgrad.cli.common import add_network_arguments, int_list, out_dir, write_json
from deepgrad.cli.compare_batch import add_data_arguments, build_net, load

NAME = "sweep-batch"
HELP = "measure step/epoch time per batch size and the gradient noise scale; recommend one"


def add_arguments(p) -> None:
    add_data_arguments(p, 100_000)
    add_network_arguments(p, hidden="256,128,64")
    p.add_argument(
        "--sizes",
        type=int_list,
        help="candidate batch sizes (default: powers of two 16..8192 and 1000)",
    )
    p.add_argument("--steps", type=int, default=20, help="timed steps per size (20)")
    p.add_argument(
        "--warmup-epochs",
        type=float,
        default=1.0,
        help="train this many epochs (batch 64) before estimating the noise "
        "scale, which is tiny at initialization (default 1; 0 = none)",
    )
    p.add_argument(
        "--lr",
        type=float,
        default=0.1,
        help="learning rate of the warm-up and of the --target-cost runs (0.1)",
    )
    p.add_argument(
        "--target-cost",
        type=float,
        help="also train each size from the initial parameters and report the time until "
        "the cost (averaged over the last --window of an epoch) first reaches this value",
    )
    p.add_argument(
        "--max-epochs", type=int, default=5, help="epochs per --target-cost run (default 5)"
    )
    p.add_argument(
        "--window",
        type=float,
        default=0.1,
        help="--target-cost: average the mini-batch cost over this fraction of an epoch (0.1)",
    )
    p.add_argument("--l2", type=float, default=0.0, help="--target-cost runs: lambda (0)")
    p.add_argument("--plot", action="store_true", help="also write sweep_batch.png")
    p.add_argument("--out", default="out", help="output directory (default out/)")
    p.add_argument("--quiet", action="store_true")


def _warm_up(net, X, y, epochs: float, lr: float, seed: int) -> None:
    if epochs <= 0:
        return
    n = max(64, min(X.shape[0], int(round(epochs * X.shape[0]))))
    net.fit(
        X[:n],
        y[:n],
        batch_size=64,
        epochs=max(1, int(epochs)),
        learning_rate=lr,
        seed=seed,
        progress=False,
    )


def _print_time_to_target(ttt, args) -> None:
    print(
        f"time to J <= {args.target_cost:g} (mini-batch cost averaged over the last "
        f"{args.window:g} of an epoch; lr {args.lr:g}, at most {args.max_epochs} epochs):"
    )
    print(f"{'batch':>6} {'seconds':>9} {'steps':>8} {'examples':>10} {'J at end':>9}")
    for r in ttt:
        if r.reached:
            print(
                f"{r.batch_size:>6} {r.seconds:>9.2f} {r.steps:>8,} {r.examples:>10,} "
                f"{r.final:>9.4f}"
            )
        else:
            print(f"{r.batch_size:>6} {'not reached':>29} {r.final:>9.4f}")
    reached = [r for r in ttt if r.reached]
    if reached:
        best = min(reached, key=lambda r: r.seconds)
        print(f"fastest to the target: batch size {best.batch_size} ({best.seconds:.2f} s)")


def run(args) -> int:
    from deepgrad.core.checks import check_float, check_int, encode_targets
    from deepgrad.diagnostics import batchsize

    X, y, output = load(args)
    net = build_net(args, X, y, output)
    m = X.shape[0]
    sizes = args.sizes or batchsize.candidate_sizes(m)
    if max(sizes) > m:
        raise ValueError(f"--sizes: batch size {max(sizes)} is larger than the data set ({m})")
    if args.target_cost is not None:  # validate before any work is done
        check_float("--target-cost", args.target_cost, 0.0, low_open=True)
        check_int("--max-epochs", args.max_epochs, 1)
        check_float("--window", args.window, 0.0, 1.0, low_open=True)
    initial = net.copy()  # the --target-cost runs start here, not from the warmed-up net
    _warm_up(net, X, y, args.warmup_epochs, args.lr, args.seed)
    Y = encode_targets(np.asarray(y), output, net.layer_sizes[-1], np, net.dtype)
    noise = batchsize.noise_scale(
        net.params, X, Y, net.spec, batch_size=min(1024, m), rng=np.random.default_rng(args.seed)
    )
    times = batchsize.step_times(net, X, y, sizes, steps=args.steps)
    rec = batchsize.recommend(times, noise.b_simple, m)
    ttt = None
    if args.target_cost is not None:
        ttt = batchsize.time_to_target(
            initial,
            X,
            y,
            sizes,
            args.target_cost,
            epochs=args.max_epochs,
            learning_rate=args.lr,
            l2=args.l2,
            window=args.window,
            seed=args.seed,
        )
    _write(args, net, m, noise, rec, ttt)
    if not args.quiet:
        _report(args, noise, rec, ttt)
    return 0


def _write(args, net, m: int, noise, rec, ttt) -> None:
    """sweep_batch.json (and the figure with --plot) in --out."""
    out = out_dir(args.out)
    write_json(
        out / "sweep_batch.json",
        {
            "noise_scale": noise._asdict(),
            "rows": rec.rows,
            "recommended": rec.batch_size,
            "reason": rec.reason,
            "time_to_target": None
            if ttt is None
            else {
                "target_cost": args.target_cost,
                "window": args.window,
                "runs": [r._asdict() for r in ttt],
            },
        },
    )
    if args.plot:
        from deepgrad.plotting import batch as batchplots
        from deepgrad.plotting import curves as plotting

        plotting.save_figure(
            batchplots.sweep_figure(rec, title=f"{net!r}, m = {m:,}", time_to_target=ttt),
            out / "sweep_batch.png",
        )


def _report(args, noise, rec, ttt) -> None:
    """The noise scale, the table of sizes and the recommendation, on stdout."""
    print(
        f"gradient noise scale B_simple = {noise.b_simple:.1f} "
        f"(tr(Sigma) {noise.trace:.4g}, |G|^2 {noise.grad_sq:.4g}, "
        f"{noise.examples} examples)"
    )
    print(f"{'batch':>6} {'ms/step':>9} {'s/epoch':>9} {'1+Bs/B':>8} {'rel. time':>10}")
    for r in rec.rows:
        print(
            f"{r['batch_size']:>6} {r['step_s'] * 1e3:>9.3f} {r['epoch_s']:>9.2f} "
            f"{r['steps_factor']:>8.2f} {r['relative_time']:>10.2f}"
        )
    print(f"recommended batch size: {rec.batch_size}. Why: {rec.reason}")
    if ttt is not None:
        _print_time_to_target(ttt, args)
