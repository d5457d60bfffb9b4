"""deepgrad sweep-batch: time per step/epoch and the gradient noise scale by batch size."""

from __future__ import annotations

import numpy as np

from deepgrad.cli.common import add_network_arguments, int_list, out_dir, write_json
from deepgrad.cli.compare_batch import add_data_arguments, build_net, load

NAME = "sweep-batch"
HELP = (
    "measure step time per batch size and the gradient noise scale; recommend a "
    "(batch size, learning rate) pair with a band, optionally checked by training"
)


def float_list(text: str) -> tuple[float, ...]:
    """'0.1,0.3' -> (0.1, 0.3)."""
    return tuple(float(v) for v in text.split(",") if v.strip())


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
    p.add_argument(
        "--range-rates",
        type=float_list,
        default=(0.01, 0.03, 0.1, 0.3, 1.0, 3.0),
        help="learning rates of the range test at --reference-batch (0.01,0.03,...,3)",
    )
    p.add_argument(
        "--reference-batch",
        type=int,
        help="batch size of the range test (64, or the data set's size if smaller)",
    )
    p.add_argument(
        "--range-examples",
        type=int,
        default=10_000,
        help="rows one range-test run trains on (one pass; default 10,000)",
    )
    p.add_argument(
        "--level", type=float, default=0.9, help="confidence level of the noise scale (0.9)"
    )
    p.add_argument(
        "--noise-scale",
        choices=["simple", "full"],
        default="simple",
        help="the noise scale of the learning rates and the band: simple = tr(Sigma)/|G|^2 "
        "(default), full = tr(H Sigma)/(G^T H G) from Hessian-vector products (about 3x "
        "the gradients of simple; docs/batchsize.md)",
    )
    p.add_argument(
        "--band-factor",
        type=float,
        default=1.25,
        help="the band: sizes predicted within this factor of the best (1.25)",
    )
    p.add_argument(
        "--track-epochs",
        type=int,
        default=0,
        help="also train the recommended pair this many epochs, estimating the noise scale "
        "after each (figure noise_track.png with --plot; default 0 = off)",
    )
    p.add_argument(
        "--validate",
        action="store_true",
        help="with --target-cost: train every size at its own recommended learning rate to "
        "the target and check the recommended pair is within 1.25x of the fastest",
    )
    p.add_argument(
        "--lr-factors",
        type=float_list,
        default=(1.0,),
        help="--validate: also try each size at these multiples of its rate (1)",
    )
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


def _check(args, m: int, sizes) -> None:
    """Every number of the command line, before any work is done."""
    from deepgrad.core.checks import check_float, check_int

    if max(sizes) > m:
        raise ValueError(f"--sizes: batch size {max(sizes)} is larger than the data set ({m})")
    if args.target_cost is not None:
        check_float("--target-cost", args.target_cost, 0.0, low_open=True)
        check_int("--max-epochs", args.max_epochs, 1)
        check_float("--window", args.window, 0.0, 1.0, low_open=True)
    elif args.validate:
        raise ValueError("--validate needs --target-cost: the cost every size trains to")
    if args.reference_batch is None:
        args.reference_batch = min(64, m)
    check_int("--reference-batch", args.reference_batch, 1, m)
    check_int("--range-examples", args.range_examples, 1)
    check_float("--level", args.level, 0.0, 1.0, low_open=True, high_open=True)
    check_float("--band-factor", args.band_factor, 1.0)
    check_int("--track-epochs", args.track_epochs, 0)
    for r in (*args.range_rates, *args.lr_factors):
        check_float("--range-rates/--lr-factors", r, 0.0, low_open=True)


def _check_target(net, X, Y, target: float) -> float:
    """The initial cost; a target it already meets is an error (nothing to measure)."""
    from deepgrad.core import network as nw

    rows = np.sort(np.random.default_rng(0).choice(X.shape[0], min(X.shape[0], 8192), False))
    J0 = float(nw.cost(net.params, np.asarray(X[rows], net.dtype), Y[rows], net.spec))
    if J0 <= target:
        raise ValueError(
            f"--target-cost {target:g}: the initial cost {J0:.4g} already meets it; "
            "nothing to recommend (choose a lower target)"
        )
    return J0


def run(args) -> int:
    from deepgrad.core.checks import encode_targets
    from deepgrad.diagnostics import batchsize

    X, y, output = load(args)
    net = build_net(args, X, y, output)
    m = X.shape[0]
    sizes = args.sizes or batchsize.candidate_sizes(m)
    _check(args, m, sizes)
    Y = encode_targets(np.asarray(y), output, net.layer_sizes[-1], np, net.dtype)
    J0 = None if args.target_cost is None else _check_target(net, X, Y, args.target_cost)
    initial = net.copy()  # the --target-cost runs start here, not from the warmed-up net
    _warm_up(net, X, y, args.warmup_epochs, args.lr, args.seed)
    ci = batchsize.noise_scale_interval(
        net.params,
        X,
        Y,
        net.spec,
        min(1024, m),
        level=args.level,
        rng=np.random.default_rng(args.seed),
    )
    noise = ci.estimate
    full = _full_noise_scale(args, net, X, Y, m)
    used = ci if full is None else full
    times = batchsize.step_times(net, X, y, sizes, steps=args.steps)
    rec = batchsize.recommend(times, used.estimate[0], m, _NAME[args.noise_scale])  # B
    pair = _pair(args, initial, X, y, sizes, used, times, m)
    pair["noise_scale_used"] = args.noise_scale
    pair["b_noise"] = None if full is None else _interval_json(full)
    pair["initial_cost"] = J0
    pair["cost_at_estimate"] = _cost(net, X, Y)
    track = None
    if args.track_epochs:
        track = batchsize.track_noise_scale(
            initial,
            X,
            y,
            Y,
            batch_size=rec.batch_size,
            learning_rate=pair["rates"][rec.batch_size],
            epochs=args.track_epochs,
            noise_batch=min(1024, m),
            seed=args.seed,
        )
    ttt = val = None
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
    if args.validate:
        val = batchsize.validate(
            initial,
            X,
            y,
            pair["rates"],
            args.target_cost,
            recommended=rec.batch_size,
            band_sizes=pair["band"],
            factors=args.lr_factors,
            epochs=args.max_epochs,
            l2=args.l2,
            window=args.window,
            seed=args.seed,
        )
    _write(args, net, m, noise, rec, ttt, pair, ci, track, val)
    if not args.quiet:
        _report(args, noise, rec, ttt, pair, ci, track, val)
    return 0


_NAME = {"simple": "B_simple", "full": "B_noise"}


def _full_noise_scale(args, net, X, Y, m):
    """B_noise's interval with --noise-scale full (the batches of B_simple), else None."""
    from deepgrad.diagnostics import batchsize

    if args.noise_scale != "full":
        return None
    try:
        return batchsize.b_noise_interval(
            net.params,
            X,
            Y,
            net.spec,
            min(1024, m),
            level=args.level,
            rng=np.random.default_rng(args.seed),
        )
    except ValueError as exc:
        raise ValueError(
            f"--noise-scale full cannot be computed here: {exc}; use --noise-scale simple"
        ) from None


def _interval_json(ci) -> dict:
    return {**ci.estimate._asdict(), "low": ci.low, "high": ci.high, "level": ci.level}


def _cost(net, X, Y) -> float:
    from deepgrad.core import network as nw

    rows = np.sort(np.random.default_rng(1).choice(X.shape[0], min(X.shape[0], 8192), False))
    return float(nw.cost(net.params, np.asarray(X[rows], net.dtype), Y[rows], net.spec))


def _pair(args, initial, X, y, sizes, used, times, m) -> dict:
    """The range test at --reference-batch, each size's rate from the model, the band.

    ``used``: the interval of the noise scale --noise-scale picks (B_simple or B_noise).
    """
    from deepgrad.diagnostics import batchsize

    rt = batchsize.lr_range_test(
        initial,
        X,
        y,
        args.reference_batch,
        args.range_rates,
        examples=args.range_examples,
        seed=args.seed,
    )
    b = used.estimate[0]  # b_simple or b_noise: the first field of either record
    rates = batchsize.scaled_rates(rt.best, args.reference_batch, b, sizes, rt.largest_stable)
    if args.noise_scale == "full":
        noise = f"B_noise = tr(H Sigma)/(G^T H G) = {b:.0f} (Hessian-vector products)"
    else:
        noise = f"B_noise ~ B_simple = {b:.0f} (a well-conditioned Hessian)"
    return {
        "range_test": rt._asdict(),
        "rates": rates,
        "assumption": (
            f"{noise}; eps(B) = eps_max / (1 + B_noise/B) with eps({args.reference_batch}) = "
            f"{rt.best:g} from the range test, capped at the largest stable rate "
            f"{rt.largest_stable:g}"
        ),
        "band": batchsize.band(times, used, m, args.band_factor),
    }


def _validation_json(val):
    if val is None:
        return None
    return {
        "runs": [{"batch_size": b, "learning_rate": lr, **r._asdict()} for b, lr, r in val.runs],
        "recommended": list(val.recommended),
        "fastest": None if val.fastest is None else list(val.fastest),
        "ratio": val.ratio,
        "passed": val.passed,
        "fastest_in_band": val.fastest_in_band,
        "message": val.message,
    }


def _recommended(rec, pair, val, ttt=None):
    """(size, rate), or None when the check saw the pair never reach the target, or (no
    check) no size reached it at --lr."""
    if val is not None and (val.fastest is None or val.ratio is None):
        return None
    if val is None and ttt is not None and not any(r.reached for r in ttt):
        return None
    return {"batch_size": rec.batch_size, "learning_rate": pair["rates"][rec.batch_size]}


def _write(args, net, m: int, noise, rec, ttt, pair, ci, track, val) -> None:
    """sweep_batch.json (and the figures with --plot) in --out."""
    out = out_dir(args.out)
    write_json(
        out / "sweep_batch.json",
        {
            "noise_scale": noise._asdict(),
            "interval": {"low": ci.low, "high": ci.high, "level": ci.level},
            "rows": rec.rows,
            "recommended": rec.batch_size,
            "recommended_pair": _recommended(rec, pair, val, ttt),
            "reason": rec.reason,
            **pair,
            "track": None
            if track is None
            else [
                {
                    "epochs": t.epochs,
                    "cost": t.cost,
                    "b_simple": t.interval.estimate.b_simple,
                    "low": t.interval.low,
                    "high": t.interval.high,
                }
                for t in track
            ],
            "validation": _validation_json(val),
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

        title = f"{net!r}, m = {m:,}"
        short = f"{list(net.layer_sizes)}, m = {m:,}"
        fig = batchplots.sweep_figure(rec, title=title, time_to_target=ttt, band=pair["band"])
        plotting.save_figure(fig, out / "sweep_batch.png")
        if track is not None:
            plotting.save_figure(
                batchplots.track_figure(track, title=short),
                out / "noise_track.png",
            )
        if val is not None:
            plotting.save_figure(
                batchplots.validation_figure(val, title=short), out / "validation.png"
            )


def _report(args, noise, rec, ttt, pair, ci, track, val) -> None:
    """The noise scale, the table of sizes and the recommendation, on stdout."""
    hi = "inf" if not np.isfinite(ci.high) else f"{ci.high:.1f}"
    print(
        f"gradient noise scale B_simple = {noise.b_simple:.1f}, {ci.level:.0%} interval "
        f"[{ci.low:.1f}, {hi}] (tr(Sigma) {noise.trace:.4g}, |G|^2 {noise.grad_sq:.4g}, "
        f"{noise.examples} examples, after {args.warmup_epochs:g} warm-up epochs at cost "
        f"{pair['cost_at_estimate']:.4g})"
    )
    full = pair["b_noise"]
    if full is not None:
        hi = "inf" if not np.isfinite(full["high"]) else f"{full['high']:.1f}"
        print(
            f"full noise scale B_noise = {full['b_noise']:.1f}, {full['level']:.0%} interval "
            f"[{full['low']:.1f}, {hi}] (tr(H Sigma) {full['trace_h_sigma']:.4g}, G^T H G "
            f"{full['g_h_g']:.4g}, the same batches, {full['hvps']} Hessian-vector products)"
        )
    name = _NAME[args.noise_scale]
    factor = "1+Bn/B" if args.noise_scale == "full" else "1+Bs/B"
    print(f"{'batch':>6} {'ms/step':>9} {'s/epoch':>9} {factor:>8} {'rel. time':>10} {'lr':>8}")
    for r in rec.rows:
        print(
            f"{r['batch_size']:>6} {r['step_s'] * 1e3:>9.3f} {r['epoch_s']:>9.2f} "
            f"{r['steps_factor']:>8.2f} {r['relative_time']:>10.2f} "
            f"{pair['rates'][r['batch_size']]:>8.3g}"
        )
    pick = _recommended(rec, pair, val, ttt)
    if pick is None and val is None:
        print(
            f"no recommendation: no batch size reached J <= {args.target_cost:g} at lr "
            f"{args.lr:g} within {args.max_epochs} epochs"
        )
    elif pick is None:
        print(f"no recommendation: {val.message}")
    else:
        print(
            f"recommended batch size: {pick['batch_size']} with learning rate "
            f"{pick['learning_rate']:.3g} (noise scale: {name}, --noise-scale "
            f"{args.noise_scale}); band (within {args.band_factor:g}x for {name} in "
            f"its interval): {', '.join(map(str, pair['band']))}. It holds near cost "
            f"{pair['cost_at_estimate']:.4g}; the noise scale grows as the cost falls. "
            f"Why: {rec.reason}. Learning rates: {pair['assumption']}"
        )
    if track is not None:
        print("noise scale during training (recommended pair):")
        for t in track:
            print(
                f"  epoch {t.epochs:>4g}  cost {t.cost:.4g}  "
                f"B_simple {t.interval.estimate.b_simple:.1f}"
            )
    if ttt is not None:
        _print_time_to_target(ttt, args)
    if val is not None:
        print(f"validation: {val.message}")
