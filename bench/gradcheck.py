"""Benchmark: gradient checking the reference net T2 (prints tables; not a test).

Part 1 (precision): the plain formula against the exact method (difference propagation),
in float64 and float32, on correct backprop, on T2's ReLU / softmax / linear-output
variants, and on planted bugs (one dW2 element x (1 + 1e-8) in float64 or x (1 + 1e-4) in
float32; A^[1] cached as float32 in a float64 net). Written to docs/gradcheck.json and the
tables of docs/gradcheck.md.

Part 2 (time), below: the exact method against today's batched plain formula and against
the tight element-wise plain loop.

T2: layers [20, 50, 50, 50, 50, 1], tanh hidden, sigmoid output, binary cross-entropy
+ L2 (lambda = 0.01), float64, m = 256 examples, P = 8751 parameters, eps = 1e-7.

Times: exact / plain (batched, ``gradcheck_network(method="plain")``), at 1 and 2
threads (``workers`` and threadpoolctl's limit), the medians of 5 rounds that alternate
the two in one process, wall and CPU seconds: a ratio taken this way holds on a machine
shared with other jobs, where absolute seconds do not. Then (not with --quick) the tight
element-wise loop once: ``deepgrad.gradcheck`` on theta -> network.cost (2P full cost
evaluations), CPU seconds.

Run: ``make bench-gradcheck`` or ``python bench/gradcheck.py``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import time

import numpy as np

import deepgrad as dg
from deepgrad.core import network as nw

LAYERS = [20, 50, 50, 50, 50, 1]
L2, M, EPS = 0.01, 256, 1e-7


def reference_problem(seed: int = 0):
    rng = np.random.default_rng(seed)
    net = dg.Network(LAYERS, "tanh", "sigmoid", init="auto", seed=seed, dtype="float64")
    X = rng.normal(size=(M, LAYERS[0]))
    y = (rng.random(M) < 0.5).astype(np.float64)
    return net, X, y


def timed(fn):
    """(wall seconds, CPU seconds of this process, result). CPU time is what the
    comparison uses: on a shared machine it does not count the time other jobs hold the
    cores (and for threaded runs it adds up all threads)."""
    t0, c0 = time.perf_counter(), time.process_time()
    out = fn()
    return time.perf_counter() - t0, time.process_time() - c0, out


def plain_loop(net, X, y, mode="elementwise"):
    """The plain loop (or its directional mode), with BLAS on one thread: faster for these
    small products (measured)."""
    from deepgrad.diagnostics.gradcheck.common import single_threaded_blas

    Y = y[:, None]
    J, grads = nw.cost_and_gradients(net.params, X, Y, net.spec, L2)
    with single_threaded_blas():
        cost = lambda p: nw.cost(p, X, Y, net.spec, L2)  # noqa: E731
        return dg.gradcheck(cost, net.params, grads, eps=EPS, mode=mode)


PRECISION_VARIANTS = [
    ("tanh", "sigmoid"),
    ("relu", "sigmoid"),
    ("tanh", "softmax"),
    ("relu", "softmax"),
    ("tanh", "linear"),
    ("relu", "linear"),
]


def variant(act, out, dtype, seed):
    """T2 with another hidden activation / output, in ``dtype``."""
    rng = np.random.default_rng(seed)
    n_out = 1 if out == "sigmoid" else 3
    net = dg.Network([*LAYERS[:-1], n_out], act, out, init="auto", seed=seed, dtype=dtype)
    X = rng.normal(size=(M, LAYERS[0]))
    if out == "sigmoid":
        y = (rng.random(M) < 0.5).astype(np.float64)
    elif out == "softmax":
        y = rng.integers(0, n_out, M)
    else:
        y = rng.normal(size=(M, n_out))
    return net, X, y


def scaled(name, index, factor):
    def backward(params, cache, Y, spec, l2=0.0, m_reg=None):
        grads = nw.backward(params, cache, Y, spec, l2, m_reg)
        grads[name] = grads[name].copy()
        grads[name][index] *= 1 + factor
        return grads

    return backward


def cached_float32(params, cache, Y, spec, l2=0.0, m_reg=None):
    inputs = list(cache.inputs)
    inputs[1] = inputs[1].astype(np.float32).astype(np.float64)
    return nw.backward(params, cache._replace(inputs=inputs), Y, spec, l2, m_reg)


def check(net, X, y, **kw):
    r = dg.gradcheck_network(net, X, y, l2=L2, workers=1, **kw)
    return {
        "relative_error": r.relative_error,
        "passed": r.passed,
        "kinks": r.n_kinks,
        "noise_floor": r.noise_floor,
        "first": (r.failures[0].name, list(r.failures[0].index)) if r.failures else None,
        "first_units": r.failures[0].units if r.failures else None,
        "eps": r.eps,
    }


PLAIN_F32_EPS = 3e-2  # the best plain eps in float32 (GRADCHECK-NOTES; re-measured below)


def correct_rows(seeds):
    """Correct backprop: worst relative error over seeds, per variant, method and dtype."""
    rows = []
    for dtype in ("float64", "float32"):
        for act, out in PRECISION_VARIANTS:
            res = {}
            for method, eps in (
                ("plain", 1e-7 if dtype == "float64" else PLAIN_F32_EPS),
                ("exact", None),
            ):
                runs = [check(*variant(act, out, dtype, s), method=method, eps=eps) for s in seeds]
                worst = max(runs, key=lambda r: r["relative_error"])
                res[method] = worst | {"kinks_max": max(r["kinks"] for r in runs)}
            rows.append({"dtype": dtype, "act": act, "out": out, **res})
            print(
                f"  {dtype} {act}/{out}: plain {res['plain']['relative_error']:.2e}, "
                f"exact {res['exact']['relative_error']:.2e}",
                flush=True,
            )
    return rows


def f32_eps_sweep():
    """float32 T2: relative error of each method against eps."""
    net, X, y = variant("tanh", "sigmoid", "float32", 0)
    out = []
    for eps in (1e-1, 3e-2, 1e-2, 1e-3, 1e-4, 1e-5, 1e-6):
        p = check(net, X, y, method="plain", eps=eps)["relative_error"]
        e = check(net, X, y, method="exact", eps=eps)["relative_error"]
        out.append({"eps": eps, "plain": p, "exact": e})
        print(f"  float32 eps {eps:g}: plain {p:.2e}, exact {e:.2e}", flush=True)
    return out


def bug_rows():
    """Planted bugs on T2 (seed 0): relative error with / without, and what is named."""
    rows = []
    for dtype, factor in (("float64", 1e-8), ("float32", 1e-4)):
        net, X, y = variant("tanh", "sigmoid", dtype, 0)
        g = dg.gradcheck_network(net, X, y, l2=L2, workers=1).analytic["W2"]
        index = tuple(int(i) for i in np.unravel_index(int(np.argmax(np.abs(g))), g.shape))
        cases = [(f"largest dW2 element x (1 + {factor:g})", scaled("W2", index, factor))]
        if dtype == "float64":
            cases.append(("A^[1] cached as float32", cached_float32))
        for label, backward in cases:
            row = {"dtype": dtype, "bug": label, "index": list(index)}
            for method, eps in (
                ("plain", 1e-7 if dtype == "float64" else PLAIN_F32_EPS),
                ("exact", None),
            ):
                ok = check(net, X, y, method=method, eps=eps)
                bad = check(net, X, y, method=method, eps=eps, backward=backward)
                row[method] = bad | {"ratio": bad["relative_error"] / ok["relative_error"]}
            rows.append(row)
            print(
                f"  {dtype} {label}: plain x{row['plain']['ratio']:.2g} "
                f"exact x{row['exact']['ratio']:.3g}, first {row['exact']['first']}",
                flush=True,
            )
    return rows


def planted_rows():
    """Every --plant-bug bug on a small net, float64 and float32: caught?"""
    from deepgrad.diagnostics import bugs

    rows = []
    for dtype in ("float64", "float32"):
        for name in bugs.names():
            bug = bugs.get(name)
            act = bug.needs if bug.needs in ("relu", "tanh", "sigmoid") else "tanh"
            net = dg.Network([6, 8, 8, 3], act, "softmax", seed=1, dtype=dtype)
            rng = np.random.default_rng(1)
            X, y = rng.normal(size=(16, 6)), rng.integers(0, 3, 16)
            l2 = 0.1 if bug.needs == "l2" else 0.0
            keep = 0.8 if bug.needs == "dropout" else 1.0
            r = dg.gradcheck_network(net, X, y, l2=l2, keep_prob=keep, backward=bug.backward)
            rows.append(
                {
                    "dtype": dtype,
                    "bug": name,
                    "caught": not r.passed,
                    "first": r.failures[0].name if r.failures else None,
                }
            )
    return rows


TIMING_ROUNDS = 5  # exact and plain alternate, so a neighbour's load falls on both


def ratio_rows(net, X, y, rounds=TIMING_ROUNDS):
    """exact / plain (batched) at 1 and 2 threads: medians of ``rounds`` alternating runs
    in this process (wall and CPU seconds), with threadpoolctl's limit at the threads."""
    from threadpoolctl import threadpool_limits

    rows = []
    for workers in (1, 2):
        runs = {"exact": [], "plain": []}
        with threadpool_limits(workers):
            dg.gradcheck_network(net, X, y, l2=L2, workers=workers)  # numba's load, if any
            for _ in range(rounds):
                for method in runs:
                    check = lambda m=method, w=workers: dg.gradcheck_network(  # noqa: E731
                        net, X, y, l2=L2, method=m, workers=w
                    )
                    runs[method].append(timed(check))
        med = {m: [float(np.median([r[i] for r in runs[m]])) for i in (0, 1)] for m in runs}
        row = {"threads": workers, "rounds": rounds}
        for m in runs:
            row |= {f"{m}_wall_s": med[m][0], f"{m}_cpu_s": med[m][1]}
            row[f"{m}_relative_error"] = runs[m][0][2].relative_error
        row["ratio_wall"] = med["exact"][0] / med["plain"][0]
        row["ratio_cpu"] = med["exact"][1] / med["plain"][1]
        print(
            f"  {workers} thread(s): exact {med['exact'][0]:.2f} s, plain {med['plain'][0]:.2f} "
            f"s (wall, median of {rounds}): exact / plain {row['ratio_wall']:.2f} "
            f"(CPU {row['ratio_cpu']:.2f})",
            flush=True,
        )
        rows.append(row)
    return rows


def timing_rows(quick=False):
    net, X, y = reference_problem()
    out = {"ratios": ratio_rows(net, X, y, 3 if quick else TIMING_ROUNDS)}
    one = out["ratios"][0]
    out |= {
        "plain_network_cpu_s": one["plain_cpu_s"],
        "exact_cpu_s": one["exact_cpu_s"],
        "exact_over_plain_network": one["ratio_cpu"],
        "exact_relative_error": one["exact_relative_error"],
        "plain_relative_error": one["plain_relative_error"],
    }
    if not quick:
        loop = timed(lambda: plain_loop(net, X, y))
        out |= {
            "elementwise_loop_cpu_s": loop[1],
            "loop_over_exact": loop[1] / one["exact_cpu_s"],
            "loop_relative_error": loop[2].relative_error,
        }
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seeds", type=int, default=2, help="seeds of the correct-backprop rows")
    p.add_argument("--out", default="docs/gradcheck.json", help="where the JSON goes")
    p.add_argument("--quick", action="store_true", help="1 seed, no element-wise loop timing")
    args = p.parse_args()
    seeds = range(1 if args.quick else args.seeds)
    print(
        f"T2: {LAYERS}, m = {M}, lambda = {L2}; machine: {platform.machine()}, "
        f"{os.cpu_count()} CPUs, numpy {np.__version__}; load {os.getloadavg()[0]:.1f}"
    )
    result = {"machine": f"{platform.machine()}, {os.cpu_count()} CPUs, numpy {np.__version__}"}
    print("timing (exact / plain, alternating, medians):", flush=True)
    result["timing"] = timing_rows(args.quick)
    print(json.dumps(result["timing"], indent=1), flush=True)
    print("correct backprop:", flush=True)
    result["correct"] = correct_rows(seeds)
    print("float32 eps sweep:", flush=True)
    result["float32_eps"] = f32_eps_sweep()
    print("planted element bugs:", flush=True)
    result["bugs"] = bug_rows()
    result["planted"] = planted_rows()
    result["load_after"] = os.getloadavg()[0]
    with open(args.out, "w") as f:
        json.dump(result, f, indent=1)
    print(markdown(result))
    print(f"wrote {args.out}")


def markdown(res) -> str:
    """The tables of docs/gradcheck.md from the JSON."""
    lines = [
        "| float64, correct backprop (worst seed) | plain, eps 1e-7 | exact, eps 1e-9 |",
        "|---|---:|---:|",
    ]
    for r in res["correct"]:
        if r["dtype"] == "float64":
            lines.append(
                f"| {r['act']} / {r['out']} | {r['plain']['relative_error']:.1e} | "
                f"{r['exact']['relative_error']:.1e} |"
            )
    lines += [
        "",
        "| float32, correct backprop (worst seed) | plain, eps 3e-2 | exact, eps 1e-6 "
        "| kinks crossed (exact) |",
        "|---|---:|---:|---:|",
    ]
    for r in res["correct"]:
        if r["dtype"] == "float32":
            lines.append(
                f"| {r['act']} / {r['out']} | {r['plain']['relative_error']:.1e} | "
                f"{r['exact']['relative_error']:.1e} | {r['exact']['kinks_max']} |"
            )
    lines += [
        "",
        "| float32 T2, eps | " + " | ".join(f"{r['eps']:g}" for r in res["float32_eps"]) + " |",
        "|---|" + "---:|" * len(res["float32_eps"]),
    ]
    for m in ("plain", "exact"):
        lines.append(f"| {m} | " + " | ".join(f"{r[m]:.1e}" for r in res["float32_eps"]) + " |")
    lines += [
        "",
        "| planted bug (T2, seed 0) | plain: error with / without | exact: with / "
        "without | exact: first failure (x floor) |",
        "|---|---:|---:|---|",
    ]
    for r in res["bugs"]:
        first = r["exact"]["first"]
        named = f"{first[0]}[{', '.join(map(str, first[1]))}] ({r['exact']['first_units']:.1e})"
        lines.append(
            f"| {r['dtype']}, {r['bug']} | {r['plain']['ratio']:.2g} | "
            f"{r['exact']['ratio']:.2g} | {named if first else '-'} |"
        )
    t = res["timing"]
    caught = {
        d: sum(r["caught"] for r in res["planted"] if r["dtype"] == d)
        for d in ("float64", "float32")
    }
    n = len(res["planted"]) // 2
    lines += [
        "",
        "| T2, threads | exact, s | plain (batched), s | exact / plain, wall | CPU |",
        "|---|---:|---:|---:|---:|",
    ]
    for r in t["ratios"]:
        lines.append(
            f"| {r['threads']} | {r['exact_wall_s']:.2f} | {r['plain_wall_s']:.2f} | "
            f"{r['ratio_wall']:.2f} | {r['ratio_cpu']:.2f} |"
        )
    lines += [
        "",
        f"Relative error: exact {t['exact_relative_error']:.1e}, plain "
        f"{t['plain_relative_error']:.1e}. Planted bugs caught: float64 "
        f"{caught['float64']}/{n}, float32 {caught['float32']}/{n}.",
    ]
    if "loop_over_exact" in t:
        lines.append(
            f"Element-wise loop (dg.gradcheck): {t['elementwise_loop_cpu_s']:.2f} CPU s, "
            f"{t['loop_over_exact']:.1f}x the exact method's."
        )
    return "\n".join(lines)


if __name__ == "__main__":
    main()
