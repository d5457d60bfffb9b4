"""The golden cases: one definition, used by make_golden.py (which saves their results) and
by tests/test_golden.py (which recomputes them and asks for the same bits).

Only deepgrad's stable public API is used: ``import deepgrad as dg`` and its top-level
names, ``Network``'s methods and attributes, and the command line as a subprocess
(``python -m deepgrad ...``), so that the files keep checking the numbers when modules move.

Each case is a function ``case(tmp: Path) -> dict``. A value that is a NumPy array goes to
``<group>.npz`` under ``"<case>/<key>"``; anything else (floats, ints, strings, bools,
None, lists and dicts of them) goes to ``<group>.json`` under ``[case][key]``, floats
written by ``json`` with ``repr`` (exact round trip; non-finite ones as tagged strings).
A case raises ``Unavailable`` when an optional part (torch, mpi4py/mpiexec) is missing.

The bits are those of this machine's NumPy/BLAS (and torch, MPI): regenerate the files on
the machine that runs the test (``python tests/golden/make_golden.py``) before a refactor.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

import deepgrad as dg

HERE = Path(__file__).resolve().parent
MPI_SCRIPT = HERE / "mpi_fit.py"
LAUNCHER_VARIABLES = ("PMI_RANK", "PMI_SIZE", "PMIX_RANK", "OMPI_COMM_WORLD_SIZE")


class Unavailable(Exception):
    """An optional dependency of a case is missing (the test skips it)."""


# -- data and small helpers ------------------------------------------------------------------


def make_data(m: int, n: int, output: str, n_out: int = 1, seed: int = 0):
    """(X float64 (m, n), Y) from a fixed random rule: 0/1 labels for sigmoid, class indices
    for softmax, (m, n_out) real targets for linear."""
    rng = np.random.default_rng(seed)
    X = rng.normal(size=(m, n))
    s = X[:, 0] - 0.5 * X[:, 1] + 0.3 * X[:, 2] * X[:, min(3, n - 1)]
    if output == "sigmoid":
        return X, (s > 0).astype(np.int64)
    if output == "softmax":
        edges = np.quantile(s, np.linspace(0, 1, n_out + 1)[1:-1])
        return X, np.digitize(s, edges).astype(np.int64)
    T = np.stack([s, np.sin(X[:, 1]), X[:, 0] * X[:, 2]], axis=1)[:, :n_out]
    return X, T


def numpy_params(net) -> dict:
    """The parameters as NumPy arrays (torch ones are copied to the host)."""
    out = {}
    for k, v in net.params.items():
        if not isinstance(v, np.ndarray):
            v = v.detach().cpu().numpy()
        out[k] = np.array(v)
    return out


def params_out(net, prefix: str = "") -> dict:
    return {f"{prefix}{k}": v for k, v in numpy_params(net).items()}


def history_out(h, prefix: str = "") -> dict:
    """What a History holds that is not a time."""
    out = {
        f"{prefix}iteration_cost": np.array(h.iteration_cost, dtype=np.float64),
        f"{prefix}epoch_cost": np.array(h.epoch_cost, dtype=np.float64),
        f"{prefix}iteration_examples": np.array(h.iteration_examples, dtype=np.int64),
        f"{prefix}batch_size": int(h.batch_size),
        f"{prefix}seed": int(h.seed),
        f"{prefix}engine": h.engine,
        f"{prefix}stopped": h.stopped,
    }
    if h.val_cost:
        out[f"{prefix}val_cost"] = np.array(h.val_cost, dtype=np.float64)
        out[f"{prefix}val_accuracy"] = np.array(h.val_accuracy, dtype=np.float64)
    return out


def canonical(value):
    """``value`` as plain JSON types; non-finite floats as "__float__:nan" etc."""
    if isinstance(value, dict):
        return {str(k): canonical(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [canonical(v) for v in value]
    if isinstance(value, bool | np.bool_):
        return bool(value)
    if isinstance(value, int | np.integer):
        return int(value)
    if isinstance(value, float | np.floating):
        x = float(value)
        return x if math.isfinite(x) else f"__float__:{x!r}"
    if value is None or isinstance(value, str):
        return value
    raise TypeError(f"cannot store {type(value).__name__} in JSON: {value!r}")


def dumps(value) -> str:
    """The one text a JSON value is stored as (floats by repr: json uses float.__repr__)."""
    return json.dumps(canonical(value), sort_keys=True)


# -- fits -------------------------------------------------------------------------------------

SIZES = {"sigmoid": (1, [8, 6]), "softmax": (3, [8, 6]), "linear": (2, [7, 5])}


def _fit(
    dtype,
    output,
    act,
    *,
    m=90,
    n=5,
    epochs=3,
    engine=None,
    X=None,
    data_seed=0,
    net_seed=1,
    fit_seed=2,
    hidden=None,
    **kw,
):
    n_out, default_hidden = SIZES[output]
    Xd, Y = make_data(m, n, output, n_out, data_seed)
    net = dg.Network(
        [n, *(hidden or default_hidden), n_out], act, output, seed=net_seed, dtype=dtype
    )
    kw.setdefault("learning_rate", 0.1)
    h = net.fit(
        Xd if X is None else X,
        Y,
        epochs=epochs,
        seed=fit_seed,
        progress=False,
        engine=engine,
        **kw,
    )
    return {**params_out(net), **history_out(h)}


def _schedule(kind):
    o = dg.optimizers
    return {
        "inverse_time": lambda: o.inverse_time_decay(0.3, 0.1, 2),
        "exponential": lambda: o.exponential_decay(0.2, 0.9, 3),
        "step": lambda: o.step_decay(0.01, 0.5, 5),
    }[kind]()


# name -> (output, hidden activation, fit keywords); each runs in float64 and float32.
FIT_CONFIGS = {
    "gd_sigmoid_relu_partial": ("sigmoid", "relu", dict(batch_size=16, learning_rate=0.3)),
    "momentum_softmax_tanh_l2batch": (
        "softmax",
        "tanh",
        dict(batch_size=32, optimizer="momentum", l2=0.05, l2_normalization="batch"),
    ),
    "rmsprop_linear_sigmoid_fullbatch": (
        "linear",
        "sigmoid",
        dict(batch_size=None, optimizer="rmsprop", learning_rate=0.01, epochs=5),
    ),
    "adam_softmax_leaky_dropout_l2dataset": (
        "softmax",
        "leaky_relu",
        dict(
            batch_size=20,
            optimizer="adam",
            learning_rate=0.01,
            keep_prob=0.8,
            l2=0.1,
            l2_normalization="dataset",
        ),
    ),
    "gd_inverse_time_sigmoid_tanh": (
        "sigmoid",
        "tanh",
        dict(batch_size=25, learning_rate="inverse_time"),
    ),
    "momentum_exponential_linear_relu_l2dataset": (
        "linear",
        "relu",
        dict(
            batch_size=30,
            optimizer="momentum",
            learning_rate="exponential",
            l2=0.2,
            l2_normalization="dataset",
        ),
    ),
    "adam_step_sigmoid_leaky_dropout": (
        "sigmoid",
        "leaky_relu",
        dict(batch_size=16, optimizer="adam", learning_rate="step", keep_prob=0.7),
    ),
    "rmsprop_softmax_relu_batch_m_dropout_l2": (
        "softmax",
        "relu",
        dict(batch_size=90, optimizer="rmsprop", learning_rate=0.005, keep_prob=0.9, l2=0.3),
    ),
    "gd_linear_tanh_stochastic": (
        "linear",
        "tanh",
        dict(batch_size=1, learning_rate=0.01, epochs=2, m=40),
    ),
    "adam_object_sigmoid_sigmoid_auto_batch": (
        "sigmoid",
        "sigmoid",
        dict(optimizer="adam_object", m=150, epochs=2),
    ),
    "momentum_object_softmax_tanh_validation": (
        "softmax",
        "tanh",
        dict(batch_size=24, optimizer="momentum_object", validation=True),
    ),
}


def _fit_case(config, dtype, engine=None):
    output, act, kw = FIT_CONFIGS[config]
    kw = dict(kw)
    if isinstance(kw.get("learning_rate"), str):
        kw["learning_rate"] = _schedule(kw["learning_rate"])
    if kw.get("optimizer") == "adam_object":
        kw["optimizer"] = dg.optimizers.adam(0.02, b1=0.8, b2=0.99, eps=1e-7)
    if kw.get("optimizer") == "momentum_object":
        kw["optimizer"] = dg.optimizers.momentum(0.2, beta=0.7)
    if kw.pop("validation", False):
        n_out = SIZES[output][0]
        kw["validation_data"] = make_data(30, 5, output, n_out, seed=9)
    return lambda tmp: _fit(dtype, output, act, engine=engine, **kw)


def _custom_optimizer_case(dtype):
    """An optimizer with no flat rule: the default engine is then the reference engine."""

    def case(tmp):
        o = dg.optimizers
        opt = o.chain("custom_rms_momentum", 0.05, o.scale_by_rms(0.9), o.scale_by_momentum(0.5))
        return _fit(dtype, "softmax", "relu", batch_size=16, optimizer=opt)

    return case


def _memmap_case(dtype, m=120, n=5, batch_size=32, hidden=None, epochs=2):
    def case(tmp):
        Xd, _ = make_data(m, n, "sigmoid")
        path = tmp / "X.npy"
        np.save(path, Xd.astype(dtype))
        X = np.load(path, mmap_mode="r")
        try:
            return _fit(
                dtype, "sigmoid", "relu", m=m, n=n, X=X, batch_size=batch_size,
                epochs=epochs, hidden=hidden, learning_rate=0.2,
            )  # fmt: skip
        finally:
            del X

    return case


def _two_shard_case(dtype):
    """Batches big enough for the NumPy engine to cut them into two row shards."""
    return lambda tmp: _fit(
        dtype, "sigmoid", "relu", m=1024, n=40, hidden=[160, 160], batch_size=512, epochs=2,
        learning_rate=0.05,
    )  # fmt: skip


def _resume_epochs_case(dtype):
    """Train 2 epochs to a checkpoint, then fit again with epochs=4 on the same path."""

    def case(tmp):
        path = tmp / "run.ckpt.npz"
        kw = dict(batch_size=16, optimizer="adam", learning_rate=0.01, keep_prob=0.8, l2=0.05)
        first = _fit(dtype, "softmax", "relu", epochs=2, checkpoint=path, **kw)
        resumed = _fit(dtype, "softmax", "relu", epochs=4, checkpoint=path, **kw)
        straight = _fit(dtype, "softmax", "relu", epochs=4, **kw)
        assert all(np.array_equal(resumed[k], straight[k]) for k in straight)
        return {
            **{f"first/{k}": v for k, v in first.items()},
            **{f"resumed/{k}": v for k, v in resumed.items()},
        }

    return case


def _resume_interrupt_case(dtype, every):
    """A callback raises KeyboardInterrupt at iteration 7; a second fit resumes."""

    def stop_at(t):
        def callback(info):
            if info.iteration == t:
                raise KeyboardInterrupt

        return callback

    def case(tmp):
        path = tmp / "run.ckpt.npz"
        kw = dict(
            batch_size=16, optimizer="momentum", keep_prob=0.9, l2=0.1,
            l2_normalization="dataset", checkpoint=path, checkpoint_every=every,
        )  # fmt: skip
        try:
            _fit(dtype, "sigmoid", "tanh", epochs=3, callbacks=[stop_at(7)], **kw)
        except KeyboardInterrupt:
            pass
        else:
            raise AssertionError("the callback's KeyboardInterrupt did not propagate")
        resumed = _fit(dtype, "sigmoid", "tanh", epochs=3, **kw)
        kw.pop("checkpoint"), kw.pop("checkpoint_every")
        straight = _fit(dtype, "sigmoid", "tanh", epochs=3, **kw)
        assert all(np.array_equal(resumed[k], straight[k]) for k in straight)
        return resumed

    return case


# -- torch backend -----------------------------------------------------------------------


def _torch_case(dtype, engine=None, to=False):
    def case(tmp):
        try:
            import torch
        except ImportError as exc:
            raise Unavailable(f"torch: {exc}") from exc
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            output, act, kw = "softmax", "tanh", dict(batch_size=16, optimizer="adam")
            n_out, hidden = SIZES[output]
            X, Y = make_data(90, 5, output, n_out)
            if to:
                net = dg.Network([5, *hidden, n_out], act, output, seed=1, dtype=dtype)
                net.to("torch", "cpu")
            else:
                net = dg.Network(
                    [5, *hidden, n_out], act, output, seed=1, dtype=dtype, backend="torch",
                    device="cpu",
                )  # fmt: skip
            h = net.fit(
                X, Y, epochs=3, seed=2, learning_rate=0.01, progress=False, engine=engine,
                keep_prob=0.8, l2=0.05, **kw,
            )  # fmt: skip
            out = {**params_out(net), **history_out(h), "backend": net.backend}
            net.to("numpy")
            out["predict_after_to_numpy"] = np.asarray(net.predict(X[:20]))
            return out
        finally:
            torch.set_num_threads(threads)

    return case


# -- MPI ------------------------------------------------------------------------------------

MPI_FITS = {
    "f64_adam_dropout_softmax": dict(
        dtype="float64", output="softmax", act="tanh", batch_size=7, optimizer="adam",
        learning_rate=0.01, keep_prob=0.8, l2=0.05, m=50,
    ),
    "f32_gd_l2dataset_sigmoid": dict(
        dtype="float32", output="sigmoid", act="relu", batch_size=16, learning_rate=0.3,
        l2=0.1, l2_normalization="dataset", m=50,
    ),
    "f64_momentum_fullbatch_linear": dict(
        dtype="float64", output="linear", act="tanh", batch_size=None, optimizer="momentum",
        learning_rate=0.05, m=50,
    ),
}  # fmt: skip


def mpi_fits(distributed: bool) -> dict:
    """Every fit of MPI_FITS (under mpiexec with distributed=True: each rank runs this)."""
    out = {}
    for name, c in MPI_FITS.items():
        c = dict(c)
        res = _fit(c.pop("dtype"), c.pop("output"), c.pop("act"), distributed=distributed, **c)
        out.update({f"{name}/{k}": v for k, v in res.items()})
    return out


def _mpiexec(n: int, argv: list[str]) -> tuple[list[str], dict]:
    """(command, environment) that run ``argv`` as ``n`` local ranks (as the MPI tests do)."""
    try:
        import mpi4py  # noqa: F401
    except ImportError as exc:
        raise Unavailable(f"mpi4py: {exc}") from exc
    here = Path(sys.executable).parent / "mpiexec"
    exe = str(here) if here.is_file() else shutil.which("mpiexec")
    if exe is None:
        raise Unavailable("no mpiexec found beside Python or on PATH")
    env = dict(os.environ)
    for v in LAUNCHER_VARIABLES:
        env.pop(v, None)
    env.update(OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    env["UCX_TLS"] = "self,sm"
    env["PYTHONPATH"] = os.pathsep.join([_src(), str(HERE), env.get("PYTHONPATH", "")])
    return [exe, "-launcher", "fork", "-hosts", "localhost", "-n", str(n), *argv], env


def _mpi_case(P: int):
    def case(tmp):
        out = tmp / "mpi.npz"
        cmd, env = _mpiexec(P, [sys.executable, str(MPI_SCRIPT), str(out)])
        proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=180)
        if proc.returncode != 0:
            raise RuntimeError(f"mpiexec failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
        with np.load(out) as z:
            res = {k: z[k] for k in z.files}
        assert int(res.pop("size")) == P
        for k in list(res):
            if res[k].dtype.kind == "U":  # strings and None went through npz as text
                v = str(res[k])
                res[k] = None if v == "__none__" else v
            elif res[k].ndim == 0 and res[k].dtype.kind == "i":
                res[k] = int(res[k])
        return res

    return case


# -- gradient checks --------------------------------------------------------------------------


def _report_out(r, prefix: str = "") -> dict:
    out = {
        "relative_error": r.relative_error,
        "threshold": r.threshold,
        "bar": r.bar,
        "passed": r.passed,
        "verdict": r.verdict,
        "method": r.method,
        "dtype": r.dtype,
        "mode": r.mode,
        "checked": r.checked,
        "total": r.total,
        "eps": r.eps,
        "noise": r.noise,
        "noise_floor": r.noise_floor,
        "per_param": dict(r.per_param),
        "n_kinks": r.n_kinks,
        "kinks": [[e.name, list(e.index)] for e in r.kinks],
        "failures": [
            [e.name, list(e.index), e.numerical, e.analytic, e.error, e.units] for e in r.failures
        ],
        "summary": r.summary(),
    }
    # the worst element by relative error |num - ana| / (|num| + |ana|)
    worst = (-1.0, None, None)
    for k, num in r.numerical.items():
        num, ana = np.asarray(num, np.float64), np.asarray(r.analytic[k], np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            err = np.abs(num - ana) / (np.abs(num) + np.abs(ana))
        err = np.where(np.isfinite(err), err, -1.0)
        i = int(np.argmax(err))
        if err.flat[i] > worst[0]:
            worst = (float(err.flat[i]), k, [int(j) for j in np.unravel_index(i, err.shape)])
        out[f"numerical/{k}"] = np.array(num)
        out[f"analytic/{k}"] = np.array(ana)
        if k in r.floor:
            out[f"floor/{k}"] = np.array(r.floor[k])
            out[f"units/{k}"] = np.array(r.units[k])
    out["worst_error"], out["worst_name"], out["worst_index"] = worst
    return {f"{prefix}{k}": v for k, v in out.items()}


def _gradcheck_case(sizes, act, output, method, dtype="float64", check_dtype=None, m=24, **kw):
    def case(tmp):
        n_out = sizes[-1]
        X, Y = make_data(m, sizes[0], output, n_out, seed=3)
        net = dg.Network(sizes, act, output, seed=4, dtype=dtype)
        r = dg.gradcheck_network(net, X, Y, method=method, dtype=check_dtype, **kw)
        return _report_out(r)

    return case


def _generic_gradcheck_case(mode):
    """dg.gradcheck on a network's cost, with one gradient element planted off by 1e-3."""

    def case(tmp):
        X, Y = make_data(20, 4, "softmax", 3, seed=5)
        net = dg.Network([4, 6, 3], "tanh", "softmax", seed=6, dtype="float64")
        _, grads = net.cost_and_gradients(X, Y, l2=0.1)
        grads = {k: np.array(v) for k, v in grads.items()}
        grads["W2"][1, 2] += 1e-3
        params = numpy_params(net)

        def cost(p):
            net.params = p
            return net.cost(X, Y, l2=0.1)

        r = dg.gradcheck(cost, params, grads, mode=mode, seed=1)
        return _report_out(r)

    return case


# -- probes, LSUV and other API ------------------------------------------------------------


def _probe_out(report) -> dict:
    d = report.to_dict()
    d.pop("hist_edges_log10", None)  # a constant of the module
    d["summary"] = report.summary()
    d["table"] = report.table()
    return d


def _probe_case(sizes, act, output, init, dtype, with_targets, **kw):
    def case(tmp):
        X, Y = make_data(64, sizes[0], output, sizes[-1], seed=7)
        net = dg.Network(sizes, act, output, init=init, seed=8, dtype=dtype)
        r = dg.probe(net, X, Y if with_targets else None, **kw)
        return _probe_out(r)

    return case


def _probe_training_case(tmp):
    X, Y = make_data(120, 6, "softmax", 3, seed=10)
    net = dg.Network([6, 10, 10, 10, 3], "relu", "softmax", seed=11, dtype="float64")
    tp = dg.probe_training(
        net, X, Y, every=4, probe_examples=50, probe_seed=3, batch_size=20, epochs=3,
        learning_rate=0.2, seed=12, progress=False, l2=0.01,
    )  # fmt: skip
    out = {"steps": list(tp.steps), **params_out(net), **history_out(tp.history, "history/")}
    for name in ("a_std", "z_std", "dead_fraction", "grad_a_std", "grad_w_norm", "update_ratio"):
        out[f"series/{name}"] = tp.series(name)
    out["verdicts"] = [r.verdict for r in tp.reports]
    out["last_report"] = _probe_out(tp.reports[-1])
    return out


def _lsuv_case(act, dtype):
    def case(tmp):
        X, _ = make_data(80, 6, "softmax", 3, seed=13)
        net = dg.Network([6, 12, 12, 3], act, "softmax", seed=14, dtype=dtype)
        new, info = dg.lsuv(net, X, tol=0.05, max_iter=8, seed=15)
        fresh = dg.Network([6, 12, 12, 3], act, "softmax", seed=14, dtype=dtype)
        return {
            **params_out(new),
            "variances": list(info.variances),
            "iterations": list(info.iterations),
            "init": new.init,
            "net_unchanged": all(
                np.array_equal(net.params[k], fresh.params[k]) for k in net.params
            ),
        }

    return case


def _init_case(dtype):
    """The initial parameters of every initializer name (the seed's draws)."""

    def case(tmp):
        out = {"names": dg.initializers.names()}
        for name in dg.initializers.names():
            for act in ("relu", "tanh"):
                net = dg.Network([5, 7, 3], act, "softmax", init=name, seed=16, dtype=dtype)
                out.update(params_out(net, f"{name}/{act}/"))
        return out

    return case


def _network_methods_case(dtype):
    """cost, cost_and_gradients (with L2 and frozen dropout masks), predict,
    predict_proba, flatten, save/load on a net fitted with standardize=True, text labels."""

    def case(tmp):
        X, y = make_data(60, 5, "softmax", 3, seed=17)
        X = X * np.array([1.0, 10.0, 0.1, 5.0, 2.0]) + np.array([3.0, -20.0, 0.0, 1.0, 7.0])
        labels = np.array(["cat", "dog", "emu"])[y]
        net = dg.Network([5, 9, 7, 3], "relu", "softmax", seed=18, dtype=dtype)
        out = {}
        Xs = (X - X.mean(0)) / X.std(0)
        J, grads = net.cost_and_gradients(Xs, y, l2=0.2)
        out["J"] = J
        out.update({f"grads/{k}": np.asarray(v) for k, v in grads.items()})
        masks = net.draw_masks(60, 0.75, np.random.default_rng(19))
        Jm, gm = net.cost_and_gradients(Xs, y, l2=0.2, masks=masks, l2_normalization=100)
        out["J_masked"] = Jm
        out["cost_masked"] = net.cost(Xs, y, l2=0.2, masks=masks, l2_normalization=100)
        out.update({f"grads_masked/{k}": np.asarray(v) for k, v in gm.items()})
        out.update({f"masks/{i}": np.asarray(mk) for i, mk in enumerate(masks)})
        h = net.fit(X, labels, standardize=True, batch_size=16, epochs=3, seed=20,
                    learning_rate=0.2, progress=False)  # fmt: skip
        out.update(params_out(net))
        out.update(history_out(h))
        out["predict"] = [str(v) for v in net.predict(X)]
        out["predict_proba"] = np.asarray(net.predict_proba(X))
        theta, unflatten = dg.flatten(net.params)
        out["theta"] = np.asarray(theta)
        out["unflatten_ok"] = all(
            np.array_equal(unflatten(theta)[k], net.params[k]) for k in net.params
        )
        dg.save(net, tmp / "model.npz")
        loaded = dg.load(tmp / "model.npz")
        out.update(params_out(loaded, "loaded/"))
        out["loaded_predict"] = [str(v) for v in loaded.predict(X)]
        out["loaded_predict_proba"] = np.asarray(loaded.predict_proba(X))
        out["repr"] = repr(loaded)
        out["layer_sizes"] = list(loaded.layer_sizes)
        out["n_params"] = loaded.n_params
        return out

    return case


def _regression_standardize_case(tmp):
    """fit(standardize=True) on a linear output also scales the targets."""
    X, T = make_data(80, 4, "linear", 2, seed=21)
    T = T * np.array([100.0, 0.5]) + np.array([1000.0, -3.0])
    net = dg.Network([4, 8, 2], "tanh", "linear", seed=22, dtype="float64")
    h = net.fit(X, T, standardize=True, batch_size=20, epochs=4, seed=23, learning_rate=0.05,
                l2=0.5, l2_normalization="dataset", progress=False)  # fmt: skip
    return {**params_out(net), **history_out(h), "predict": np.asarray(net.predict(X[:10]))}


# -- the command line -----------------------------------------------------------------------


def _src() -> str:
    return str(Path(dg.__file__).resolve().parents[1])


def _cli(tmp: Path, *args: str) -> subprocess.CompletedProcess:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([_src(), env.get("PYTHONPATH", "")])
    for v in LAUNCHER_VARIABLES:
        env.pop(v, None)
    env["MPLBACKEND"] = "Agg"
    return subprocess.run(
        [sys.executable, "-m", "deepgrad", *args],
        cwd=tmp, env=env, capture_output=True, text=True, timeout=120,
    )  # fmt: skip


_SECONDS = re.compile(r" in \d+(\.\d+)? s\b")


def _stdout(proc) -> list[str]:
    """stdout's lines with the timings taken out."""
    return [_SECONDS.sub(" in <t> s", line) for line in proc.stdout.splitlines()]


def _trained(tmp: Path, out: str, proc) -> dict:
    if proc.returncode != 0:
        raise RuntimeError(f"deepgrad train failed ({proc.returncode}): {proc.stderr[-2000:]}")
    history = json.loads((tmp / out / "history.json").read_text())
    res = {"rc": proc.returncode, "stdout": _stdout(proc)}
    for k, v in history.items():
        if k.endswith("_time"):
            continue
        if isinstance(v, list) and v and all(isinstance(x, int | float) for x in v):
            res[f"history/{k}"] = np.array(v, dtype=np.float64)
        else:
            res[f"history/{k}"] = v
    net = dg.load(tmp / out / "model.npz")
    res.update(params_out(net, "model/"))
    res["model_repr"] = repr(net)
    return res


# the command-line cases freeze mini-batch gradient descent without dropout (train's
# defaults when they were written; adam with dropout since)
GD_FLAGS = ("--optimizer", "gd", "--keep-prob", "1")


def _cli_train_npz_case(output, extra):
    def case(tmp):
        n_out = {"sigmoid": 1, "softmax": 3, "linear": 1}[output]
        X, y = make_data(120, 5, output, n_out, seed=24)
        y = y[:, 0] if output == "linear" else y
        np.savez(tmp / "data.npz", X=X, y=y)
        proc = _cli(tmp, "train", "--data", "data.npz", "--out", "o", *extra)
        return _trained(tmp, "o", proc)

    return case


def _cli_train_memmap_dir_case(tmp):
    made = _cli(tmp, "make-data", "--examples", "300", "--features", "6", "--seed", "25",
                "--noise", "0.05", "--out", "dir", "--quiet")  # fmt: skip
    if made.returncode != 0:
        raise RuntimeError(f"deepgrad make-data failed: {made.stderr[-2000:]}")
    res = {
        "X": np.load(tmp / "dir" / "X.npy"),
        "y": np.load(tmp / "dir" / "y.npy"),
        "make_data_stdout": _stdout(made),
    }
    proc = _cli(tmp, "train", "--data", "dir", "--hidden", "8", "--epochs", "2",
                "--batch-size", "50", "--seed", "26", "--out", "o", *GD_FLAGS)  # fmt: skip
    return {**res, **_trained(tmp, "o", proc)}


def _cli_gradcheck_case(*args):
    def case(tmp):
        proc = _cli(tmp, "gradcheck", *args)
        return {"rc": proc.returncode, "stdout": _stdout(proc)}

    return case


def _cli_probe_case(tmp):
    proc = _cli(tmp, "probe", "--depth", "4", "--width", "8", "--examples", "40", "--classes",
                "3", "--init", "he_normal,xavier_normal,lsuv", "--seed", "27", "--json",
                "p.json")  # fmt: skip
    if proc.returncode != 0:
        raise RuntimeError(f"deepgrad probe failed ({proc.returncode}): {proc.stderr[-2000:]}")
    d = json.loads((tmp / "p.json").read_text())
    for r in d["results"]:
        r.pop("hist_edges_log10", None)
    return {"rc": proc.returncode, "stdout": _stdout(proc), "json": d}


# -- the registry ---------------------------------------------------------------------------


def cases() -> dict[str, dict]:
    """{group: {case name: case function}}; a group is one .npz and one .json file."""
    fits = {}
    for config in FIT_CONFIGS:
        for dtype in ("float64", "float32"):
            fits[f"{config}_{dtype}"] = _fit_case(config, dtype)
    for config in (
        "gd_sigmoid_relu_partial",
        "adam_softmax_leaky_dropout_l2dataset",
        "momentum_exponential_linear_relu_l2dataset",
    ):
        for dtype in ("float64", "float32"):
            fits[f"{config}_{dtype}_reference"] = _fit_case(config, dtype, "reference")
    for config in ("momentum_softmax_tanh_l2batch", "adam_step_sigmoid_leaky_dropout"):
        fits[f"{config}_float64_numpy_shards"] = _fit_case(config, "float64", "numpy-shards")
    for dtype in ("float64", "float32"):
        fits[f"custom_optimizer_{dtype}"] = _custom_optimizer_case(dtype)
        fits[f"memmap_{dtype}"] = _memmap_case(dtype)
        fits[f"two_shards_{dtype}"] = _two_shard_case(dtype)
    # 140,000 rows of 4 float32: more than one 1 MiB block, so the block shuffle runs
    fits["memmap_blocks_float32"] = _memmap_case(
        "float32", m=140_000, n=4, batch_size=20_000, hidden=[6], epochs=1
    )
    resume = {
        "epochs_2_then_4_float64": _resume_epochs_case("float64"),
        "epochs_2_then_4_float32": _resume_epochs_case("float32"),
        "interrupt_float64": _resume_interrupt_case("float64", None),
        "interrupt_every_3_float32": _resume_interrupt_case("float32", 3),
    }
    torch = {
        "default_engine_float64": _torch_case("float64"),
        "default_engine_float32": _torch_case("float32"),
        "reference_engine_float64": _torch_case("float64", engine="reference"),
        "net_to_torch_float32": _torch_case("float32", to=True),
    }
    mpi = {"p2": _mpi_case(2)}
    gradcheck = {
        "tanh_softmax_l2_exact": _gradcheck_case([4, 7, 3], "tanh", "softmax", "exact", l2=0.1),
        "tanh_softmax_l2_plain": _gradcheck_case([4, 7, 3], "tanh", "softmax", "plain", l2=0.1),
        "relu_sigmoid_dropout_exact": _gradcheck_case(
            [5, 8, 6, 1], "relu", "sigmoid", "exact", keep_prob=0.8, seed=2
        ),
        "relu_sigmoid_dropout_plain": _gradcheck_case(
            [5, 8, 6, 1], "relu", "sigmoid", "plain", keep_prob=0.8, seed=2
        ),
        # eps 1e-2 on 64 examples: ReLU kinks crossed (and truncation error)
        "relu_sigmoid_kinks_plain": _gradcheck_case(
            [5, 8, 6, 1], "relu", "sigmoid", "plain", m=64, eps=1e-2
        ),
        "relu_sigmoid_kinks_exact": _gradcheck_case(
            [5, 8, 6, 1], "relu", "sigmoid", "exact", m=64, eps=1e-2
        ),
        # eps 1e-3: the exact method sees the truncation error as failing elements
        "relu_sigmoid_truncation_exact": _gradcheck_case(
            [5, 8, 6, 1], "relu", "sigmoid", "exact", m=64, eps=1e-3
        ),
        "leaky_linear_exact": _gradcheck_case(
            [4, 6, 5, 2], "leaky_relu", "linear", "exact", l2=0.05, l2_normalization=50
        ),
        "sigmoid_softmax_sample_plain": _gradcheck_case(
            [5, 8, 6, 3], "sigmoid", "softmax", "plain", sample=30, seed=3
        ),
        "float32_net_exact": _gradcheck_case(
            [4, 7, 3], "tanh", "softmax", "exact", dtype="float32"
        ),
        "float32_net_checked_in_float64_exact": _gradcheck_case(
            [4, 7, 3], "tanh", "softmax", "exact", dtype="float32", check_dtype="float64"
        ),
        "generic_planted_error_elementwise": _generic_gradcheck_case("elementwise"),
        "generic_planted_error_directional": _generic_gradcheck_case("directional"),
    }
    probe = {
        "relu_he_random_targets_float64": _probe_case(
            [6, 10, 10, 10, 3], "relu", "softmax", "he_normal", "float64", False
        ),
        "tanh_xavier_targets_l2_float32": _probe_case(
            [6, 10, 10, 1],
            "tanh",
            "sigmoid",
            "xavier_normal",
            "float32",
            True,
            l2=0.1,
            learning_rate=0.05,
        ),  # fmt: skip
        "sigmoid_random_init_linear_float64": _probe_case(
            [6, 9, 9, 2], "sigmoid", "linear", "random", "float64", True, seed=4
        ),
        "probe_training": _probe_training_case,
        "lsuv_relu_float64": _lsuv_case("relu", "float64"),
        "lsuv_tanh_float32": _lsuv_case("tanh", "float32"),
    }
    api = {
        "initializers_float64": _init_case("float64"),
        "initializers_float32": _init_case("float32"),
        "network_methods_float64": _network_methods_case("float64"),
        "network_methods_float32": _network_methods_case("float32"),
        "regression_standardize": _regression_standardize_case,
    }
    cli = {
        "train_npz_sigmoid": _cli_train_npz_case(
            "sigmoid",
            ["--hidden", "8,6", "--epochs", "3", "--batch-size", "16", "--seed", "2", *GD_FLAGS],
        ),
        "train_npz_softmax_float64": _cli_train_npz_case(
            "softmax",
            [
                "--hidden",
                "7",
                "--activation",
                "tanh",
                "--dtype",
                "float64",
                "--epochs",
                "4",
                "--batch-size",
                "0",
                "--lr",
                "0.3",
                "--l2",
                "0.1",
                "--keep-prob",
                "0.8",
                "--l2-normalization",
                "dataset",
                "--seed",
                "3",
                "--test-fraction",
                "0.25",
                "--optimizer",
                "gd",
            ],
        ),  # fmt: skip
        "train_npz_regression": _cli_train_npz_case(
            "linear",
            [
                "--hidden",
                "6,4",
                "--epochs",
                "3",
                "--seed",
                "4",
                "--batch-size",
                "32",
                "--optimizer",
                "gd",
                "--l2",
                "30",
            ],  # fmt: skip
        ),
        "train_make_data_dir": _cli_train_memmap_dir_case,
        "gradcheck_exact": _cli_gradcheck_case(
            "--layers", "4,6,3", "--examples", "8", "--seed", "1"
        ),
        "gradcheck_plain_dropout_l2": _cli_gradcheck_case(
            "--layers",
            "5,7,1",
            "--output",
            "sigmoid",
            "--activation",
            "relu",
            "--examples",
            "10",
            "--seed",
            "2",
            "--method",
            "plain",
            "--keep-prob",
            "0.8",
            "--l2",
            "0.1",
        ),  # fmt: skip
        "gradcheck_float32_exact": _cli_gradcheck_case(
            "--layers", "4,6,3", "--examples", "8", "--seed", "3", "--dtype", "float32"
        ),
        "probe_json": _cli_probe_case,
    }
    return {
        "fit": fits,
        "resume": resume,
        "torch": torch,
        "mpi": mpi,
        "gradcheck": gradcheck,
        "probe": probe,
        "api": api,
        "cli": cli,
    }


def split(result: dict) -> tuple[dict, dict]:
    """(arrays for the .npz, values for the .json) of one case's result."""
    arrays, values = {}, {}
    for k, v in result.items():
        if isinstance(v, np.ndarray):
            arrays[k] = v
        else:
            values[k] = canonical(v)
    return arrays, values


# -- the files ------------------------------------------------------------------------------


def read_group(group: str, folder: Path = HERE) -> tuple[dict, dict]:
    """({case: {key: array}}, {case: {key: value}}) saved for ``group``."""
    arrays: dict = {}
    path = folder / f"{group}.npz"
    if path.is_file():
        with np.load(path, allow_pickle=False) as z:
            for full in z.files:
                case, key = full.split("/", 1)
                arrays.setdefault(case, {})[key] = z[full]
    values = json.loads((folder / f"{group}.json").read_text())
    return arrays, values


def write_group(group: str, results: dict, folder: Path = HERE) -> None:
    """Write {case: result} as ``group``.npz and ``group``.json."""
    arrays, values = {}, {}
    for case, result in results.items():
        a, v = split(result)
        arrays.update({f"{case}/{k}": x for k, x in a.items()})
        values[case] = v
        if json.loads(dumps(v)) != v:
            raise AssertionError(f"{group}/{case}: a value does not round-trip through JSON")
    if arrays:
        np.savez_compressed(folder / f"{group}.npz", **arrays)
    elif (folder / f"{group}.npz").exists():
        (folder / f"{group}.npz").unlink()
    text = json.dumps(canonical(values), indent=1, sort_keys=True) + "\n"
    (folder / f"{group}.json").write_text(text)


# Cases whose numbers changed on purpose, by rounding only, and the relative difference
# allowed (of each array's largest magnitude; of each float in the JSON values). Every
# other case stays bit for bit.
# - torch: the torch engine runs the one step of the fast engines (engines/step.py) since
#   issue 18: the bias is added inside the matrix product ([A | 1] [W | b]^T) instead of
#   by addmm, and the L2 sum is taken over the flat [W | b] blocks.
# - mpi: every rank runs that step on its rows (the bias inside the product, dZ divided
#   by the global batch before the Allreduce) instead of the reference formulas.
ROUNDING = {
    ("torch", "default_engine_float64"): 1e-12,
    ("torch", "default_engine_float32"): 1e-5,
    ("torch", "net_to_torch_float32"): 1e-5,
    ("mpi", "p2"): 1e-5,  # its float32 fit; the float64 fits are held to 1e-12 below
}
ROUNDING_BY_KEY = {("mpi", "p2", "f64"): 1e-12}
# - the compiled engine, which fit picks for small steps: its loops sum over the rows in
#   another order than BLAS (within 1e-12 of the reference in float64); these cases
#   were written by numpy-shards.
COMPILED_CASES = {
    *(
        ("api", c)
        for c in (
            "network_methods_float32",
            "network_methods_float64",
            "regression_standardize",
        )
    ),
    *(
        ("cli", c)
        for c in (
            "train_make_data_dir",
            "train_npz_regression",
            "train_npz_sigmoid",
            "train_npz_softmax_float64",
        )
    ),
    *(
        ("fit", c)
        for c in (
            "adam_object_sigmoid_sigmoid_auto_batch_float32",
            "adam_object_sigmoid_sigmoid_auto_batch_float64",
            "adam_softmax_leaky_dropout_l2dataset_float32",
            "adam_softmax_leaky_dropout_l2dataset_float64",
            "adam_step_sigmoid_leaky_dropout_float32",
            "adam_step_sigmoid_leaky_dropout_float64",
            "gd_inverse_time_sigmoid_tanh_float32",
            "gd_inverse_time_sigmoid_tanh_float64",
            "gd_linear_tanh_stochastic_float32",
            "gd_linear_tanh_stochastic_float64",
            "gd_sigmoid_relu_partial_float32",
            "gd_sigmoid_relu_partial_float64",
            "memmap_float32",
            "memmap_float64",
            "momentum_exponential_linear_relu_l2dataset_float32",
            "momentum_exponential_linear_relu_l2dataset_float64",
            "momentum_object_softmax_tanh_validation_float32",
            "momentum_object_softmax_tanh_validation_float64",
            "momentum_softmax_tanh_l2batch_float32",
            "momentum_softmax_tanh_l2batch_float64",
            "rmsprop_linear_sigmoid_fullbatch_float32",
            "rmsprop_linear_sigmoid_fullbatch_float64",
            "rmsprop_softmax_relu_batch_m_dropout_l2_float32",
            "rmsprop_softmax_relu_batch_m_dropout_l2_float64",
        )
    ),
    *(("probe", c) for c in ("probe_training",)),
    *(
        ("resume", c)
        for c in (
            "epochs_2_then_4_float32",
            "epochs_2_then_4_float64",
            "interrupt_every_3_float32",
            "interrupt_float64",
        )
    ),
}
COMPILED_RTOL = {"float64": 1e-12, "float32": 1e-4}


# On another machine than the one that wrote the files (another BLAS kernel, NumPy's SIMD
# loops, NumPy or torch version: ``machine()`` differs from machine.json) the bits differ
# by rounding: every case is then held to this relative difference instead (of each
# array's largest magnitude; of each JSON float, with an absolute floor for values that are
# rounding themselves, such as a gradient check's relative error of a correct net).
CROSS_MACHINE = {"float64": 1e-6, "float32": 1e-4}
CROSS_MACHINE_FLOOR = 1e-9


def machine() -> dict:
    """What decides the bits: the BLAS libraries and kernels, NumPy's version and the CPU
    features its loops use, torch's version."""
    import threadpoolctl

    blas = sorted(
        f"{i.get('internal_api')} {i.get('architecture')} {i.get('version')}"
        for i in threadpoolctl.threadpool_info()
        if i.get("user_api") == "blas"
    )
    from numpy._core._multiarray_umath import __cpu_features__

    try:
        import torch

        torch_version = torch.__version__
    except ImportError:
        torch_version = None
    return {
        "blas": blas,
        "numpy": np.__version__,
        "cpu": sorted(k for k, on in __cpu_features__.items() if on),
        "torch": torch_version,
    }


def same_machine(folder: Path = HERE) -> bool:
    path = folder / "machine.json"
    return path.is_file() and json.loads(path.read_text()) == machine()


def write_machine(folder: Path = HERE) -> None:
    (folder / "machine.json").write_text(json.dumps(machine(), indent=1) + "\n")


def tolerance(group: str, case: str, key: str, dtype: str = "float64") -> float:
    """The relative difference allowed for ``key`` of a case (0.0: bit for bit)."""
    rtol = ROUNDING.get((group, case), 0.0)
    if (group, case) in COMPILED_CASES:  # a JSON value: the case's own dtype
        own = dtype if dtype != "float64" or "float64" in case else "float32"
        rtol = max(rtol, COMPILED_RTOL.get(own, COMPILED_RTOL["float64"]))
    for (g, c, prefix), by_key in ROUNDING_BY_KEY.items():
        if (g, c) == (group, case) and key.startswith(prefix):
            rtol = by_key
    if not _SAME_MACHINE:
        rtol = max(rtol, CROSS_MACHINE.get(dtype, CROSS_MACHINE["float64"]))
    return rtol


_SAME_MACHINE = same_machine()

# Results that are rounding themselves: a gradient check of a correct net reports its
# relative errors in units of the float64 noise floor, which another machine's rounding
# changes by whole units. On another machine these cases are skipped (test_golden says so).
ROUNDING_NOISE_GROUPS = {"gradcheck"}
ROUNDING_NOISE_CASES = {("cli", "gradcheck_exact"), ("cli", "gradcheck_plain_dropout_l2")}


def comparable_here(group: str, case: str) -> bool:
    """False for a rounding-noise case when the files come from another machine."""
    noise = group in ROUNDING_NOISE_GROUPS or (group, case) in ROUNDING_NOISE_CASES
    return _SAME_MACHINE or not noise


def _close(now, then, rtol: float) -> bool:
    """JSON values equal, floats to ``rtol`` relative."""
    if isinstance(now, float) and isinstance(then, float):
        floor = 0.0 if _SAME_MACHINE else CROSS_MACHINE_FLOOR
        return now == then or abs(now - then) <= max(rtol * max(abs(now), abs(then)), floor)
    if isinstance(now, list) and isinstance(then, list):
        return len(now) == len(then) and all(
            _close(a, b, rtol) for a, b in zip(now, then, strict=True)
        )
    if isinstance(now, dict) and isinstance(then, dict):
        return now.keys() == then.keys() and all(_close(now[k], then[k], rtol) for k in now)
    return now == then


def _array_differs(k: str, a, b, rtol: float) -> str | None:
    if a.dtype != b.dtype or a.shape != b.shape:
        return f"{k}: {a.dtype}{a.shape} now, {b.dtype}{b.shape} saved"
    if np.array_equal(a, b, equal_nan=a.dtype.kind in "fc"):
        return None
    if rtol and a.dtype.kind == "f" and np.isfinite(a).all() and np.isfinite(b).all():
        scale = float(np.max(np.abs(b))) if b.size else 0.0
        worst = float(np.max(np.abs(a.astype(np.float64) - b)))
        if worst <= rtol * scale:
            return None
        return f"{k}: differs by {worst:.3g}, more than {rtol:g} x {scale:.3g}"
    bad = (a != b) & ~(np.isnan(a) & np.isnan(b)) if a.dtype.kind in "fc" else a != b
    return (
        f"{k}: {int(bad.sum())} of {a.size} elements differ "
        f"(first: {a[bad][:3]} now, {b[bad][:3]} saved)"
    )


def differences(
    result: dict, saved_arrays: dict, saved_values: dict, group: str = "", case: str = ""
) -> list[str]:
    """What differs between a recomputed result and the saved one: bit for bit, or to the
    case's ``tolerance`` (ROUNDING)."""
    arrays, values = split(result)
    out = []
    if set(arrays) != set(saved_arrays):
        out.append(
            f"array keys differ: new {sorted(set(arrays) - set(saved_arrays))}, "
            f"missing {sorted(set(saved_arrays) - set(arrays))}"
        )
    for k in sorted(set(arrays) & set(saved_arrays)):
        why = _array_differs(
            k, arrays[k], saved_arrays[k], tolerance(group, case, k, str(arrays[k].dtype))
        )
        if why:
            out.append(why)
    if set(values) != set(saved_values):
        out.append(
            f"value keys differ: new {sorted(set(values) - set(saved_values))}, "
            f"missing {sorted(set(saved_values) - set(values))}"
        )
    for k in sorted(set(values) & set(saved_values)):
        now, then = dumps(values[k]), dumps(saved_values[k])
        rtol = tolerance(group, case, k)
        if now != then and not (rtol and _close(values[k], saved_values[k], rtol)):
            out.append(f"{k}: {now[:300]} now, {then[:300]} saved")
    return out
