"""deepgrad demo: the main job on the bundled 8x8 digits, in one command."""

from __future__ import annotations

import time

from deepgrad.cli.common import accuracy, out_dir, write_json

NAME = "demo"
HELP = "train a deep ReLU network (He init, mini-batch GD) on the bundled digits"


def add_arguments(p) -> None:
    p.add_argument("--out", default="out", help="output directory (default out/)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--quiet", action="store_true")


def run(args) -> int:
    import deepgrad as dg
    from deepgrad.data import bundled as datasets
    from deepgrad.plotting import curves as plotting

    X, y, _ = datasets.load_bundled("digits")
    Xtr, Xte, ytr, yte = datasets.train_test_split(X, y, 0.25, args.seed)
    net = dg.Network(
        [64, 128, 64, 32, 10],
        hidden_activation="relu",
        output="softmax",
        init="he_normal",
        seed=args.seed,
    )
    print(
        f"digits: {len(ytr)} training and {len(yte)} held-out 8x8 images, 10 classes "
        f"(standardized with the training set's mean and std, kept in the model file)"
    )
    print(net)
    t0 = time.perf_counter()
    history = net.fit(
        Xtr,
        ytr,
        batch_size=32,
        epochs=args.epochs,
        learning_rate=0.05,
        l2=1.0,
        l2_normalization="dataset",
        seed=args.seed,
        standardize=True,
        validation_data=(Xte, yte),
        progress=False if args.quiet else None,
    )
    print(
        f"mini-batch GD: batch size 32, lr 0.05, L2 lambda 1.0 over the training-set size, "
        f"{history.iterations} iterations, "
        f"{time.perf_counter() - t0:.1f} s; cost {history.iteration_cost[0]:.3f} -> "
        f"{history.epoch_cost[-1]:.3f}"
    )
    acc = accuracy(net, Xte, yte)
    print(f"held-out accuracy: {acc:.4f}")
    out = out_dir(args.out)
    dg.save(net, out / "demo_model.npz")
    write_json(out / "demo_history.json", history.as_dict())
    plotting.save_figure(
        plotting.learning_curves(history, title="digits, [64,128,64,32,10] ReLU"),
        out / "demo_learning_curves.png",
    )
    print(f"wrote {out / 'demo_learning_curves.png'} and {out / 'demo_model.npz'}")
    from deepgrad.cli.gradcheck import demo_check

    # Held-out examples: on the training set the trained net sits near a minimum, its
    # gradient is small and float64 rounding of J (ulp(J) / 2 eps ~ 2e-8) dominates
    # the relative error (2e-7 measured); held-out examples give a larger gradient.
    # The check is of the math on the network's own inputs: the standardized rows.
    Zte = net.preprocessing.transform(Xte)
    checked = demo_check(net, Zte, yte, l2=1.0, l2_normalization=len(ytr), seed=args.seed)
    return 0 if acc >= 0.95 and checked else 1
