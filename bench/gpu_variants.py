"""T1 on one GPU: the fast loop's variants (torch_fast.FEATURES) against JAX's lax.scan.

One run, to pick ``torch_fast.DEFAULT_FEATURES`` (and ``STEPS_PER_GRAPH``) from numbers:

- each deepgrad variant (a '+'-joined set of features, "base" for none, an optional
  "@k" for k steps per CUDA graph) at every batch size, in its own child process (a
  variant that breaks the CUDA context cannot take the others with it), after its
  agreement check against NumPy (50 steps: float64 ReLU to 1e-10, float32 tanh to 1e-4);
- the matrix-products floor (with the "base" child) and, first, JAX's lax.scan over the
  epoch (a child of bench/gpu_train.py; the slow rows of that script are left out here).

Workload, data and timing as in bench/gpu_train.py (T1, 5M examples, float32, no TF32;
median of ``--repeats`` epochs after a warm-up epoch). A variant whose features do not all
apply here (Triton missing, no CUDA) is reported as skipped. Rows are written to the JSON
as they come in; children run under a time budget (later variants are then skipped).

    python3 bench/gpu_variants.py                  # on the GPU (about 150 s)
    python3 bench/gpu_variants.py --device cpu --examples 20000 --batch-sizes 1000  # a check
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

_HERE = Path(__file__).resolve()
_spec = importlib.util.spec_from_file_location("gpu_train", _HERE.parent / "gpu_train.py")
gt = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(gt)  # also puts this checkout's src/ first on sys.path

VARIANTS = (
    "base",
    "gather+triton+streams",
    "gather+streams",
    "gather",
    "gather+triton",
    "streams",
    "triton",
    "gather+triton+streams@16",
)
FLOOR = "matmul floor (CUDA graphs)"
JAX_SCAN = "JAX lax.scan over the epoch"
AGREEMENT_CASES = (("float64", "relu"), ("float32", "tanh"))


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--examples", type=int, default=5_000_000)
    p.add_argument("--batch-sizes", default="1000,4096,8192")
    p.add_argument("--repeats", type=int, default=3, help="timed epochs (1..10)")
    p.add_argument("--device", default="cuda")
    p.add_argument("--variants", default=",".join(VARIANTS), help="comma-separated, in order")
    p.add_argument("--json", default=None, help="output path (default $OUT/gpu_variants.json)")
    p.add_argument("--total-s", type=float, default=220.0, help="all children end by this")
    p.add_argument("--child-timeout-s", type=float, default=40.0, help="per variant")
    p.add_argument("--jax-timeout-s", type=float, default=80.0)
    p.add_argument("--agree-batch", type=int, default=256)
    p.add_argument("--no-jax", action="store_true")
    p.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    try:
        args.batch_sizes = [int(b) for b in args.batch_sizes.split(",") if b.strip()]
    except ValueError:
        p.error(f"--batch-sizes must be comma-separated ints, got {args.batch_sizes!r}")
    if not args.batch_sizes or min(args.batch_sizes) < 1 or max(args.batch_sizes) > args.examples:
        p.error(f"--batch-sizes must be in [1, --examples], got {args.batch_sizes}")
    if not 1 <= args.repeats <= gt.MAX_REPEATS:
        p.error(f"--repeats must be in [1, {gt.MAX_REPEATS}], got {args.repeats}")
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    for v in args.variants:
        try:
            parse_variant(v)
        except ValueError as exc:
            p.error(str(exc))
    if args.json is None:
        args.json = str(Path(os.environ.get("OUT", ".")) / "gpu_variants.json")
    return args


def parse_variant(name: str) -> tuple[tuple, int | None]:
    """ "gather+streams@16" -> (("gather", "streams"), 16); "base" -> ((), None)."""
    from deepgrad.torch_fast import FEATURES

    spec, _, k = name.partition("@")
    feats = () if spec == "base" else tuple(spec.split("+"))
    bad = [f for f in feats if f not in FEATURES]
    if bad or (k and not k.isdigit()) or k == "0":
        raise ValueError(
            f"variant {name!r}: features must be 'base' or '+'-joined {list(FEATURES)}, "
            f"optionally '@<steps per graph>'"
        )
    return feats, int(k) if k else None


# -- child: one variant ------------------------------------------------------------------------
def _emit(kind: str, obj: dict) -> None:
    print(f"{kind} " + json.dumps(obj), flush=True)


def _with_variant(name: str, fn):
    from deepgrad import torch_fast

    feats, k = parse_variant(name)
    saved = torch_fast.DEFAULT_FEATURES, torch_fast.STEPS_PER_GRAPH
    torch_fast.DEFAULT_FEATURES, torch_fast.STEPS_PER_GRAPH = feats, k or saved[1]
    try:
        return fn()
    finally:
        torch_fast.DEFAULT_FEATURES, torch_fast.STEPS_PER_GRAPH = saved


def active_features(torch, dev, name: str) -> tuple[list, list]:
    """(features that apply on ``dev`` for T1 in float32, requested ones that do not)."""
    from deepgrad import torch_fast

    feats, _ = parse_variant(name)
    opt = torch_fast.Options.resolve(feats, dev, torch.float32, "sigmoid", 1)
    return opt.names(), [f for f in feats if f not in opt.names()]


def agreement(dev, name: str, dtype: str, hidden: str, b: int, steps: int = 50) -> dict:
    """The variant's fast path vs NumPy after ``steps`` steps on the same (unshuffled) batches."""
    import deepgrad as dg

    rng = np.random.default_rng(0)
    X = rng.normal(size=(b * steps, gt.LAYERS[0])).astype(dtype)
    Y = (X[:, 0] + 0.5 * X[:, 1] * X[:, 2] > 0).astype(dtype)
    kw = dict(batch_size=b, epochs=1, learning_rate=gt.LR, l2=gt.L2, seed=1, progress=False)
    kw["shuffle"] = False
    ref = dg.Network(gt.LAYERS, hidden_activation=hidden, seed=0, dtype=dtype)
    ref.fit(X, Y, **kw)
    net = dg.Network(
        gt.LAYERS, hidden_activation=hidden, seed=0, dtype=dtype, backend="torch", device=dev
    )
    _with_variant(name, lambda: net.fit(X, Y, fast_path=True, **kw))
    rel, worst = gt._rel_errors(ref.params, net.params)
    tol = gt.AGREE[dtype]
    import torch

    return {
        "variant": name,
        "active": active_features(torch, dev, name)[0],
        "dtype": dtype,
        "hidden": hidden,
        "max_rel_diff": rel,
        "max_rel_diff_per_param": worst,
        "tolerance": tol,
        "ok": bool(rel < tol),
    }


def bench_variant(torch, dev, X, Y, b: int, repeats: int, name: str) -> dict:
    _, inactive = active_features(torch, dev, name)
    if inactive:
        from deepgrad import torch_fast

        why = torch_fast._TRITON_CACHE.get("error") if "triton" in inactive else None
        raise gt.Skip(f"{'+'.join(inactive)} does not apply here" + (f" ({why})" if why else ""))
    if dev.type != "cuda" and parse_variant(name)[1] is not None:
        raise gt.Skip("no CUDA graphs off CUDA")
    import deepgrad as dg

    net = dg.Network(gt.LAYERS, seed=0, backend="torch", device=dev)
    h = _with_variant(name, lambda: gt._fit_timed(net, X, Y, b, repeats, True))
    ends = h.epoch_time
    times = [ends[i] - ends[i - 1] for i in range(1, len(ends))]
    return {"first_epoch_s": ends[0], "runs": times, "final_cost": h.epoch_cost[-1]}


def worker(args) -> int:
    torch, dev = gt.setup_torch(args.device)
    name = args.worker
    dev_name = torch.cuda.get_device_name(dev) if dev.type == "cuda" else "cpu"
    _emit("INFO", {"device": dev_name, "torch": torch.__version__, "variant": name})
    for dtype, hidden in AGREEMENT_CASES:
        try:
            _emit("AGREE", agreement(dev, name, dtype, hidden, args.agree_batch))
        except Exception as exc:  # noqa: BLE001 - report and go on
            err = f"{type(exc).__name__}: {exc}"[:300]
            _emit(
                "AGREE",
                {"variant": name, "dtype": dtype, "hidden": hidden, "ok": False, "error": err},
            )
    X, Y = gt.make_data(torch, dev, args.examples)
    rows = [(name, b) for b in args.batch_sizes]
    if name == "base":  # the floor rides with the base variant (one process fewer)
        rows += [(FLOOR, b) for b in args.batch_sizes]
    for method, b in rows:
        if method == FLOOR:
            fn = lambda b=b: gt.bench_floor(torch, dev, X, b, args.repeats)  # noqa: E731
        else:
            fn = lambda b=b: bench_variant(torch, dev, X, Y, b, args.repeats, name)  # noqa: E731
        res = gt._row(method, b, fn)
        if method != FLOOR:
            res["active"] = active_features(torch, dev, name)[0]
        _emit("ROW", res)
        if dev.type == "cuda":
            torch.cuda.empty_cache()
    return 0


# -- parent --------------------------------------------------------------------------------------
def run_child(cmd: list, timeout: float) -> tuple[list, str | None]:
    """[(kind, obj)] from a child's 'KIND {json}' lines, and an error (None if it ended well)."""
    error = None
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 1))
        out, err = proc.stdout, proc.stderr
        if proc.returncode != 0:
            error = f"child exited {proc.returncode}: {err.strip()[-300:]}"
    except subprocess.TimeoutExpired as exc:
        out = exc.stdout.decode() if isinstance(exc.stdout, bytes) else exc.stdout or ""
        err = exc.stderr.decode() if isinstance(exc.stderr, bytes) else exc.stderr or ""
        error = f"child timed out after {timeout:.0f} s"
    sys.stderr.write(err[-2000:])
    items = []
    for line in out.splitlines():
        kind, _, rest = line.partition(" ")
        if kind in ("INFO", "AGREE", "ROW") and rest.startswith("{"):
            items.append((kind, json.loads(rest)))
        elif line.startswith("{"):  # gpu_train's JAX worker: its last line (or its error)
            items.append(("FINAL", json.loads(line)))
    return items, error


def _child_cmd(args, extra: list) -> list:
    return [
        sys.executable,
        str(_HERE),
        "--device",
        args.device,
        "--examples",
        str(args.examples),
        "--batch-sizes",
        ",".join(map(str, args.batch_sizes)),
        "--repeats",
        str(args.repeats),
        "--agree-batch",
        str(args.agree_batch),
    ] + extra


def _missing_rows(report, name, error) -> None:
    have = {(r["method"], r["batch_size"]) for r in report["results"]}
    for b in report["batch_sizes"]:
        if (name, b) not in have:
            report["results"].append(
                {"method": name, "batch_size": b, "epoch_s": None, "runs": [], "error": error}
            )


def run_jax(args, report, timeout: float) -> None:
    """JAX's lax.scan rows from a child of gpu_train.py (rows kept if it times out)."""
    cmd = [
        sys.executable,
        str(_HERE.parent / "gpu_train.py"),
        "--jax-worker",
        "--jax-methods",
        "scan",
    ] + _child_cmd(args, [])[2:]
    items, error = run_child(cmd, timeout)
    rows = [obj for kind, obj in items if kind == "ROW"]
    final = [obj for kind, obj in items if kind == "FINAL"]
    if final and final[-1].get("error"):
        error = final[-1]["error"]
        error = "skipped: " + error if "No module named 'jax'" in error else error
    report["jax"] = final[-1].get("jax") if final else None
    for obj in rows:
        report["results"].append(obj)
        print(f"  {JAX_SCAN:34s} b={obj['batch_size']:5d}  {gt._fmt(obj)}", flush=True)
    if error or not rows:
        _missing_rows(report, JAX_SCAN, error or "no JAX rows (is jax installed?)")


def run_all(args) -> dict:
    """JAX first (the bar to beat), then the variants while time is left (``--total-s``)."""
    t0 = time.perf_counter()
    report = {
        "device": None,
        "torch": None,
        "examples": args.examples,
        "batch_sizes": args.batch_sizes,
        "repeats": args.repeats,
        "variants": args.variants,
        "workload": {
            "layers": gt.LAYERS,
            "lr": gt.LR,
            "l2": gt.L2,
            "dtype": "float32",
            "tf32": False,
        },
        "results": [],
        "agreement": [],
        "total_s": 0.0,
    }
    if not args.no_jax:
        run_jax(args, report, min(args.jax_timeout_s, args.total_s / 2))
        save(args, report, t0)
    for name in args.variants:
        left = args.total_s - (time.perf_counter() - t0)
        if left < min(args.child_timeout_s, 20):
            _missing_rows(report, name, "skipped: --total-s reached")
            continue
        items, error = run_child(
            _child_cmd(args, ["--worker", name]), min(args.child_timeout_s, left)
        )
        for kind, obj in items:
            if kind == "INFO":
                report["device"], report["torch"] = obj["device"], obj["torch"]
            elif kind == "AGREE":
                report["agreement"].append(obj)
            else:
                report["results"].append(obj)
                print(f"  {obj['method']:34s} b={obj['batch_size']:5d}  {gt._fmt(obj)}")
        if error:
            print(f"  {name}: {error}", flush=True)
            _missing_rows(report, name, error)
        save(args, report, t0)
    save(args, report, t0)
    return report


def save(args, report, t0) -> None:
    report["total_s"] = time.perf_counter() - t0
    Path(args.json).parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(args.json).with_suffix(".tmp")
    tmp.write_text(json.dumps(report, indent=1))
    tmp.replace(args.json)


def table(report) -> str:
    bss = report["batch_sizes"]
    cells = {(r["method"], r["batch_size"]): r for r in report["results"]}
    lines = [
        f"T1 seconds per epoch, {report['examples']:,} examples, {report['device']}",
        "| method | " + " | ".join(f"b={b}" for b in bss) + " | vs JAX scan |",
        "|---" * (len(bss) + 2) + "|",
    ]
    jax = {b: cells.get((JAX_SCAN, b), {}).get("epoch_s") for b in bss}
    for name in report["variants"] + [JAX_SCAN, FLOOR]:
        row = [gt._fmt(cells[(name, b)]) if (name, b) in cells else "-" for b in bss]
        ratios = []
        for b in bss:
            t = cells.get((name, b), {}).get("epoch_s")
            ratios.append(f"{jax[b] / t:.2f}x" if t and jax[b] else "-")
        lines.append(f"| {name} | " + " | ".join(row) + " | " + " ".join(ratios) + " |")
    for a in report["agreement"]:
        rel = a.get("max_rel_diff", float("nan"))
        lines.append(
            f"agreement {a['variant']} (active: {'+'.join(a.get('active', [])) or 'none'}) "
            f"{a['dtype']} {a['hidden']}: theta rel diff {rel:.2e} "
            f"{'ok' if a['ok'] else 'FAIL'}" + (f" {a['error']}" if a.get("error") else "")
        )
    lines += [
        f"{r['method']} b={r['batch_size']}: {r['error']}"
        for r in report["results"]
        if r.get("error")
    ]
    timed = [
        (r["epoch_s"], r["method"])
        for r in report["results"]
        if r["batch_size"] == bss[0] and r.get("epoch_s") and r["method"] in report["variants"]
    ]
    ok = {a["variant"] for a in report["agreement"] if a["ok"]}
    ok -= {a["variant"] for a in report["agreement"] if not a["ok"]}
    best = min((t, m) for t, m in timed if m in ok) if any(m in ok for _, m in timed) else None
    if best:
        lines.append(f"fastest agreeing variant at b={bss[0]}: {best[1]} ({best[0]:.3f} s)")
    return "\n".join(lines)


def main(argv=None) -> int:
    args = parse_args(argv)
    if args.worker:
        return worker(args)
    report = run_all(args)
    print(table(report))
    print(f"wrote {args.json} ({report['total_s']:.0f} s)")
    return 0 if all(a["ok"] for a in report["agreement"]) else 1


if __name__ == "__main__":
    sys.exit(main())
