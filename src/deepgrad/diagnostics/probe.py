"""See vanishing and exploding signals: a per-layer probe of a deep network.

``probe(net, X)`` runs one forward and one backward pass on a batch (no training, nothing
mutated) and measures, for every layer l = 1..L:

- the mean, std and second moment q = E[(.)^2] of Z^[l] and A^[l];
- the fraction of dead units (ReLU family: Z^[l] <= 0 for every example of the batch) or of
  saturated activations (tanh: |A| > 0.97; sigmoid: A outside [0.03, 0.97]; counted over all
  (example, unit) pairs);
- the std of dJ/dA^[l] (hidden layers), ||dJ/dW^[l]||_F, ||W^[l]||_F and the
  update-to-parameter ratio  lr * ||dJ/dW^[l]||_F / ||W^[l]||_F  of one gradient step;
- what the initializer predicts, beside what was measured (the mean-field recursion below);
- a histogram of log10 |A^[l]| (the spread of magnitudes, layer by layer).

The prediction. With W^[l] drawn i.i.d. with mean 0 and variance v_l (the initializer's rule,
``initializers.predicted_variance``), b^[l] = 0 and n = n^[l-1] inputs:

    Var(Z^[l]) = n * v_l * q^[l-1],          q^[0] = E[X^2] (measured on the batch)
    q^[l]      = E[g(z)^2],  z ~ N(0, Var(Z^[l]))

because Z's terms are independent with mean 0, so their variances add, and what enters is
the *second moment* of the previous activations, not their variance. E[g(z)^2] is the
activation's gain: ReLU keeps half, q = Var(Z) / 2 (so He's v = 2/n keeps q constant);
leaky ReLU (1 + a^2) / 2; linear 1; tanh and sigmoid by numerical quadrature (tanh is
~ linear for small Var(Z), so q shrinks by n v per layer; it saturates for large Var(Z)).

The verdict compares the signal RMS sqrt(q^[l]) of each hidden layer with the first hidden
layer's, and the gradient std(dJ/dA^[l]) of each hidden layer with the last hidden layer's
(where backpropagation enters the hidden stack). A ratio beyond ``VERDICT_FACTOR`` = 1e3
either way is "exploding" or "vanishing", at the first layer where it crosses (signal checked
first); inf or NaN anywhere is "exploding" (overflow). Otherwise "stable".

Example
-------
>>> import numpy as np, deepgrad as dg
>>> X = np.random.default_rng(0).standard_normal((256, 64))
>>> net = dg.Network([64] + [64] * 10 + [10], "relu", "softmax", init="he_normal", seed=0)
>>> dg.probe(net, X).verdict
'stable'
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from deepgrad.core import activations, initializers, losses
from deepgrad.core import network as nw
from deepgrad.core.backend import namespace, to_numpy
from deepgrad.core.checks import check_float, check_int, encode_targets
from deepgrad.devices import torch_backend as tb
from deepgrad.model.net import Network
from deepgrad.train.api import fit

__all__ = [
    "LayerStats",
    "ProbeReport",
    "probe",
    "probe_params",
    "predicted_moments",
    "random_targets",
    "json_safe",
    "init_name",
    "ProbeRecorder",
    "TrainingProbe",
    "probe_training",
    "VERDICT_FACTOR",
    "HIST_EDGES",
]

VERDICT_FACTOR = 1e3
SATURATION = {"tanh": (-0.97, 0.97), "sigmoid": (0.03, 0.97)}
# Bins of log10 |A| wide enough for float32 (1e-45 .. 3e38); values outside go to the ends.
HIST_EDGES = np.arange(-45.0, 45.0 + 1e-9, 0.25)
# E over z ~ N(0, 1) on a fine grid: saturating activations of a wide Z are near-steps,
# which Gauss-Hermite nodes resolve poorly; the trapezoid rule on 24,001 points does not.
_QUAD_Z = np.linspace(-12.0, 12.0, 24001)
_QUAD_W = np.exp(-0.5 * _QUAD_Z**2) / math.sqrt(2.0 * math.pi) * (_QUAD_Z[1] - _QUAD_Z[0])


@dataclass(frozen=True)
class LayerStats:
    """Measured and predicted statistics of layer l (1-based) on the probe batch.

    ``dead_fraction`` is None unless the hidden activation is ReLU-like,
    ``saturated_fraction`` None unless tanh/sigmoid, ``grad_a_std`` None for the output
    layer; predictions are None when the initializer has no fixed variance rule. For the
    output layer, A^[L] is the output activation (softmax probabilities, ...).
    """

    layer: int
    width: int
    is_output: bool
    z_mean: float
    z_std: float
    z_second_moment: float
    a_mean: float
    a_std: float
    a_second_moment: float
    dead_fraction: float | None
    saturated_fraction: float | None
    grad_a_std: float | None
    grad_w_norm: float
    w_norm: float
    update_ratio: float
    w_second_moment: float
    predicted_w_var: float | None
    predicted_z_var: float | None
    predicted_a_second_moment: float | None
    predicted_a_std: float | None
    finite: bool
    a_zero_fraction: float
    a_log10_hist: tuple[int, ...] = field(repr=False)

    @property
    def a_rms(self) -> float:
        """sqrt(E[A^2]): the signal scale the verdict compares."""
        return math.sqrt(self.a_second_moment) if self.a_second_moment >= 0 else math.nan


@dataclass(frozen=True)
class ProbeReport:
    """What ``probe`` measured: one ``LayerStats`` per layer plus a one-line verdict.

    ``signal_ratio`` = RMS(A^[L-1]) / RMS(A^[1]) and ``gradient_ratio`` =
    std(dJ/dA^[1]) / std(dJ/dA^[L-1]) over the hidden layers (nan when undefined).
    """

    init: str
    hidden_activation: str
    output: str
    layer_sizes: tuple[int, ...]
    examples: int
    dtype: str
    learning_rate: float
    l2: float
    targets: str
    input_second_moment: float
    layers: tuple[LayerStats, ...]
    verdict: str
    verdict_layer: int | None
    verdict_reason: str
    signal_verdict: str
    gradient_verdict: str
    signal_ratio: float
    gradient_ratio: float

    @property
    def hidden(self) -> tuple[LayerStats, ...]:
        """The hidden layers' statistics (l = 1..L-1)."""
        return tuple(s for s in self.layers if not s.is_output)

    def column(self, name: str, hidden_only: bool = True) -> np.ndarray:
        """One statistic per layer as a float array (None becomes nan)."""
        rows = self.hidden if hidden_only else self.layers
        return np.array([_nan(getattr(s, name)) for s in rows], dtype=float)

    def summary(self) -> str:
        """One line: the verdict, where it happens and why."""
        at = "" if self.verdict_layer is None else f" at layer {self.verdict_layer}"
        return f"{self.init}: {self.verdict}{at} ({self.verdict_reason})"

    def to_dict(self) -> dict[str, Any]:
        """Everything as plain Python (JSON-ready after ``json_safe``)."""
        d = asdict(self)
        d["hist_edges_log10"] = HIST_EDGES.tolist()
        return d

    def table(self, layers=None) -> str:
        """A text table of the given layers (default: first and last hidden, and output)."""
        if layers is None:
            hidden = [s.layer for s in self.hidden]
            layers = sorted({*hidden[:1], *hidden[-1:], self.layers[-1].layer})
        head = (
            f"{'layer':>5} {'width':>5} {'mean A':>9} {'std A':>9} {'E[A^2]':>9} "
            f"{'predicted':>9} {'dead/sat':>8} {'std dJ/dA':>9} {'||dW||_F':>9} "
            f"{'lr|dW|/|W|':>10}"
        )
        lines = [head]
        for s in (self.layers[l - 1] for l in layers):
            frac = s.dead_fraction if s.dead_fraction is not None else s.saturated_fraction
            name = f"{s.layer}" + (" out" if s.is_output else "")
            lines.append(
                f"{name:>5} {s.width:>5} {_fmt(s.a_mean)} {_fmt(s.a_std)} "
                f"{_fmt(s.a_second_moment)} {_fmt(s.predicted_a_second_moment)} "
                f"{'-' if frac is None else f'{100 * frac:.1f}%':>8} {_fmt(s.grad_a_std)} "
                f"{_fmt(s.grad_w_norm)} {_fmt(s.update_ratio, 10)}"
            )
        return "\n".join(lines)


def _fmt(v, width: int = 9) -> str:
    return f"{'-':>{width}}" if v is None else f"{v:>{width}.3g}"


def json_safe(obj):
    """Recursively turn tuples into lists and non-finite floats into "inf"/"-inf"/"nan"
    strings, so that ``json.dumps`` writes strict JSON."""
    if isinstance(obj, dict):
        return {k: json_safe(v) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [json_safe(v) for v in obj]
    if isinstance(obj, float) and not math.isfinite(obj):
        return str(obj)
    return obj


def _nan(v) -> float:
    return math.nan if v is None else float(v)


# -- prediction ------------------------------------------------------------------------
def _gaussian_moments(activation: str, var_z: float) -> tuple[float, float]:
    """(E[g(z)], E[g(z)^2]) for z ~ N(0, var_z): closed forms for ReLU-like and linear."""
    if not math.isfinite(var_z):
        return math.nan, math.nan
    s = math.sqrt(max(var_z, 0.0))
    if activation == "relu":
        return s / math.sqrt(2 * math.pi), var_z / 2.0
    if activation == "leaky_relu":
        a = activations.LEAKY_SLOPE
        return (1 - a) * s / math.sqrt(2 * math.pi), (1 + a * a) * var_z / 2.0
    if activation == "linear":
        return 0.0, var_z
    g = np.asarray(activations.get(activation).forward(s * _QUAD_Z))
    return float(_QUAD_W @ g), float(_QUAD_W @ (g * g))


def _initializer_for(init, layer: int, spec: nw.Spec):
    if callable(init):
        return init
    if not isinstance(init, str) or init not in initializers.names():
        return None
    act = spec.hidden_activation if layer < spec.L else spec.output
    return initializers.get(init, activation=act)


def predicted_moments(spec: nw.Spec, init, input_second_moment: float) -> list[dict]:
    """The mean-field recursion of the module docstring, one dict per layer l = 1..L.

    Keys: ``w_var`` (Var(W^[l]) the initializer aims for), ``z_var`` (Var(Z^[l])),
    ``a_second_moment`` (E[A^[l]^2]) and ``a_std``; None from the first layer whose
    initializer has no fixed rule (e.g. a trained or LSUV-initialized network).
    """
    out, q = [], float(input_second_moment)
    for l in range(1, spec.L + 1):
        shape = (spec.layer_sizes[l], spec.layer_sizes[l - 1])
        fn = _initializer_for(init, l, spec)
        v = None if fn is None or q is None else initializers.predicted_variance(fn, shape)
        if v is None:
            q = None
            out.append(dict(w_var=None, z_var=None, a_second_moment=None, a_std=None))
            continue
        z_var = shape[1] * v * q
        if l == spec.L:
            out.append(dict(w_var=v, z_var=z_var, a_second_moment=None, a_std=None))
            break
        mean, q = _gaussian_moments(spec.hidden_activation, z_var)
        std = math.sqrt(max(q - mean * mean, 0.0)) if math.isfinite(q) else math.nan
        out.append(dict(w_var=v, z_var=z_var, a_second_moment=q, a_std=std))
    return out


# -- measurement -----------------------------------------------------------------------
def _f64(x) -> np.ndarray:
    return np.asarray(to_numpy(x), dtype=np.float64)


def _moments(x: np.ndarray) -> tuple[float, float, float]:
    """(mean, std, second moment) in float64; inf/NaN propagate (reported as overflow)."""
    if x.size == 0:
        return math.nan, math.nan, math.nan
    return float(np.mean(x)), float(np.std(x)), float(np.mean(x * x))


def _log10_hist(a: np.ndarray) -> tuple[tuple[int, ...], float]:
    """(counts of log10 |A| over HIST_EDGES for the finite non-zero entries, zero fraction)."""
    nz = a[(a != 0) & np.isfinite(a)]
    step, bins = HIST_EDGES[1] - HIST_EDGES[0], len(HIST_EDGES) - 1
    # Uniform bins: the index is arithmetic (np.histogram would sort the values).
    idx = np.clip(np.floor((np.log10(np.abs(nz)) - HIST_EDGES[0]) / step), 0, bins - 1)
    counts = np.bincount(idx.astype(np.int64), minlength=bins)
    return tuple(int(c) for c in counts), float(np.mean(a == 0))


def _unit_fractions(activation: str, z: np.ndarray, a: np.ndarray):
    """(dead fraction, saturated fraction), each None where it does not apply."""
    family = activations.get(activation).family
    if family == "relu":
        # A unit is dead on the batch when no example makes it positive.
        return float(np.mean(np.all(z <= 0, axis=0))), None
    if activation in SATURATION:
        lo, hi = SATURATION[activation]
        return None, float(np.mean((a < lo) | (a > hi)))
    return None, None


def _backward_signals(params: dict, cache: nw.Cache, Y, spec: nw.Spec, l2: float):
    """(grads, dA) from ``network.backward``, with dA[l-1] = dJ/dA^[l], l = 1..L-1."""
    dAs = [None] * (spec.L - 1)
    return nw.backward(params, cache, Y, spec, l2, dA_out=dAs), dAs


def _weight_stats(W, dW, learning_rate: float) -> tuple[float, float, float, float]:
    """(||dW||_F, ||W||_F, lr ||dW|| / ||W||, E[W^2]); the ratio is inf for W = 0, dW != 0."""
    w, g = _f64(W), _f64(dW)
    wn, gn = float(np.linalg.norm(w)), float(np.linalg.norm(g))
    if wn == 0:
        ratio = 0.0 if gn == 0 else math.inf
    else:
        ratio = learning_rate * gn / wn
    return gn, wn, ratio, float(np.mean(w * w))


def _layer_stats(l, spec, Z, A, dA, W, dW, learning_rate, pred) -> LayerStats:
    z, a = _f64(Z), _f64(A)
    is_output = l == spec.L
    dead, sat = (None, None) if is_output else _unit_fractions(spec.hidden_activation, z, a)
    da = None if dA is None else _f64(dA)
    gn, wn, ratio, w2 = _weight_stats(W, dW, learning_rate)
    hist, zero = _log10_hist(a)
    finite = bool(np.isfinite(z).all() and np.isfinite(a).all() and math.isfinite(gn))
    finite = finite and (da is None or bool(np.isfinite(da).all()))
    return LayerStats(
        l,
        spec.layer_sizes[l],
        is_output,
        *_moments(z),
        *_moments(a),
        dead,
        sat,
        None if da is None else float(np.std(da)),
        gn,
        wn,
        ratio,
        w2,
        pred["w_var"],
        pred["z_var"],
        pred["a_second_moment"],
        pred["a_std"],
        finite,
        zero,
        hist,
    )


# -- verdict ---------------------------------------------------------------------------
def _ratio(a: float, b: float) -> float:
    if not (math.isfinite(a) and math.isfinite(b)) or b == 0:
        return math.nan
    return a / b


def _crossing(values, layers, what: str, ref_name: str):
    """First layer (in the order given) where value / values[0] leaves [1/F, F].

    Returns (verdict, layer, reason); inf/NaN is an overflow: "exploding".
    """
    ref = values[0]
    for v, l in zip(values, layers, strict=True):
        if not math.isfinite(v):
            return "exploding", l, f"{what} of layer {l} overflows (inf/NaN)"
        if ref == 0:
            return "vanishing", l, f"{what} of layer {l} is exactly 0"
        r = v / ref
        if r > VERDICT_FACTOR or r < 1 / VERDICT_FACTOR:
            kind = "exploding" if r > 1 else "vanishing"
            return kind, l, f"{what} at layer {l} is {r:.3g} x {ref_name}'s"
    return "stable", None, ""


def _verdict(layers: tuple[LayerStats, ...]) -> dict[str, Any]:
    hidden = [s for s in layers if not s.is_output]
    if not hidden:
        return dict(
            verdict="stable",
            verdict_layer=None,
            verdict_reason="no hidden layers",
            signal_verdict="stable",
            gradient_verdict="stable",
            signal_ratio=math.nan,
            gradient_ratio=math.nan,
        )
    ls = [s.layer for s in hidden]
    sig = _crossing([s.a_rms for s in hidden], ls, "activation RMS", "layer 1")
    grads = [s.grad_a_std for s in hidden][::-1]
    grad = _crossing(grads, ls[::-1], "std(dJ/dA)", f"layer {ls[-1]}")
    s_ratio = _ratio(hidden[-1].a_rms, hidden[0].a_rms)
    g_ratio = _ratio(hidden[0].grad_a_std, hidden[-1].grad_a_std)
    if sig[0] != "stable":
        verdict, layer, reason = sig
        if grad[0] != "stable":
            reason += f"; gradient {grad[0]} from layer {grad[1]}"
    elif grad[0] != "stable":
        verdict, layer, reason = grad
    elif not layers[-1].finite:
        verdict, layer, reason = "exploding", layers[-1].layer, "the output overflows"
    else:
        verdict, layer = "stable", None
        reason = (
            f"activation RMS layer {ls[-1]} / layer 1 = {s_ratio:.3g}, gradient std "
            f"layer 1 / layer {ls[-1]} = {g_ratio:.3g}, both within 1e3"
        )
    overflow = [s.layer for s in layers if not s.finite]
    if overflow and "overflows" not in reason:
        reason += f"; inf/NaN from layer {overflow[0]} on"
    return dict(
        verdict=verdict,
        verdict_layer=layer,
        verdict_reason=reason,
        signal_verdict=sig[0],
        gradient_verdict=grad[0],
        signal_ratio=s_ratio,
        gradient_ratio=g_ratio,
    )


# -- the probe -------------------------------------------------------------------------
def init_name(init) -> str:
    """A readable name for an initializer given as a name or a callable."""
    return init if isinstance(init, str) else getattr(init, "__name__", "custom")


def probe_params(
    params: dict,
    spec: nw.Spec,
    X,
    Y,
    *,
    init=None,
    l2: float = 0.0,
    learning_rate: float = 0.1,
    targets: str = "given",
    dtype: str = "float64",
) -> ProbeReport:
    """The probe on raw parameters (no validation): X (m, n^[0]) and Y encoded (m, n^[L]),
    both in the namespace of ``params``. ``init`` (name or callable) gives the predictions.
    """
    with np.errstate(all="ignore"):  # overflow is a finding here, reported as "exploding"
        ZL, cache = nw.forward(params, X, spec)
        grads, dAs = _backward_signals(params, cache, Y, spec, l2)
        A_out = losses.get(spec.output).activation(ZL)
        q0 = _moments(_f64(X))[2]
        preds = predicted_moments(spec, init, q0)
        layers = tuple(
            _layer_stats(
                l,
                spec,
                cache.Z[l - 1],
                cache.A[l - 1] if l < spec.L else A_out,
                dAs[l - 1] if l < spec.L else None,
                params[f"W{l}"],
                grads[f"W{l}"],
                learning_rate,
                preds[l - 1],
            )
            for l in range(1, spec.L + 1)
        )
    return ProbeReport(
        init=init_name(init),
        hidden_activation=spec.hidden_activation,
        output=spec.output,
        layer_sizes=tuple(spec.layer_sizes),
        examples=int(X.shape[0]),
        dtype=dtype,
        learning_rate=learning_rate,
        l2=l2,
        targets=targets,
        input_second_moment=q0,
        layers=layers,
        **_verdict(layers),
    )


def random_targets(spec: nw.Spec, m: int, rng: np.random.Generator) -> np.ndarray:
    """A fixed backward signal when no labels are given: uniform class labels (softmax),
    fair 0/1 labels (sigmoid) or N(0, 1) targets (linear), drawn from ``rng``."""
    n_out = spec.layer_sizes[-1]
    if spec.output == "softmax":
        return rng.integers(0, n_out, m)
    if spec.output == "sigmoid":
        return rng.integers(0, 2, (m, n_out))
    return rng.standard_normal((m, n_out))


def _probe_inputs(net, X, Y, l2, learning_rate, seed):
    """Validate the public arguments, each once; return (X, encoded Y, l2, lr, targets
    description), which the probe then trusts."""
    if not isinstance(net, Network):
        raise TypeError(f"net must be a deepgrad Network, got {type(net).__name__}")
    l2 = check_float("l2", l2, 0.0)
    learning_rate = check_float("learning_rate", learning_rate, 0.0, low_open=True)
    seed = check_int("seed", seed, 0)
    if Y is not None:
        Xa, Ya = net.validate_data(X, Y)
        return Xa, Ya, l2, learning_rate, "given"
    Xa = net.validate_inputs(X)
    spec = net.spec
    Y = random_targets(spec, Xa.shape[0], np.random.default_rng(seed))
    Ya = encode_targets(
        Y, spec.output, spec.layer_sizes[-1], namespace(Xa), Xa.dtype, device=tb.device_of(Xa)
    )
    return Xa, Ya, l2, learning_rate, f"random (seed {seed})"


def probe(
    net, X, Y=None, l2: float = 0.0, learning_rate: float = 0.1, *, seed: int = 0
) -> ProbeReport:
    """Per-layer statistics of ``net`` on the batch X, from one forward and backward pass.

    Pure: ``net`` is not changed and nothing is trained.

    Parameters
    ----------
    net : Network
    X : (m, n^[0]) array, the probe batch (e.g. 1000 standardized examples).
    Y : (m,) labels or (m, n^[L]) targets; None draws random targets from
        ``numpy.random.default_rng(seed)`` (``random_targets``) so that the backward pass has
        a fixed, reasonable signal: the gradient's *scale* through depth is what is probed.
    l2 : lambda of the L2 term (adds lambda/m W^[l] to dJ/dW^[l]).
    learning_rate : alpha in the update-to-parameter ratio alpha ||dW||_F / ||W||_F.

    Returns
    -------
    ProbeReport : ``layers`` (one ``LayerStats`` per layer), ``verdict`` ("stable",
    "vanishing" or "exploding"), ``verdict_layer``, ``verdict_reason``; ``summary()``.
    """
    Xa, Ya, l2, learning_rate, targets = _probe_inputs(net, X, Y, l2, learning_rate, seed)
    return probe_params(
        net.params,
        net.spec,
        Xa,
        Ya,
        init=net.init,
        l2=l2,
        learning_rate=learning_rate,
        targets=targets,
        dtype=net.dtype,
    )


# -- while training --------------------------------------------------------------------
class ProbeRecorder:
    """A ``fit`` callback that probes the parameters every ``every`` steps on a fixed batch.

    ``records`` collects (steps done, ProbeReport). Use ``probe_training`` for the usual
    wiring, or pass ``ProbeRecorder(net, Xp, Yp, every=10)`` in ``fit(callbacks=...)``.
    """

    def __init__(
        self,
        net,
        X,
        Y=None,
        *,
        every: int = 10,
        l2: float = 0.0,
        learning_rate: float = 0.1,
        seed: int = 0,
    ):
        self.every = check_int("every", every, 1)
        self._X, self._Y, self._l2, self._lr, self._targets = _probe_inputs(
            net, X, Y, l2, learning_rate, seed
        )
        self._spec, self._init, self._dtype = net.spec, net.init, net.dtype
        self.records: list[tuple[int, ProbeReport]] = []

    def record(self, step: int, params: dict) -> None:
        """Probe ``params`` now and keep the report under ``step``."""
        report = probe_params(
            params,
            self._spec,
            self._X,
            self._Y,
            init=self._init,
            l2=self._l2,
            learning_rate=self._lr,
            targets=self._targets,
            dtype=self._dtype,
        )
        self.records.append((step, report))

    def __call__(self, info) -> None:
        step = info.iteration + 1
        if step % self.every == 0:
            self.record(step, info.params)


@dataclass(frozen=True)
class TrainingProbe:
    """``probe_training``'s result: the fit History and one ProbeReport per recorded step."""

    history: Any
    steps: tuple[int, ...]
    reports: tuple[ProbeReport, ...]

    def series(self, name: str) -> np.ndarray:
        """A LayerStats field over time: shape (recorded steps, hidden layers)."""
        return np.array([r.column(name) for r in self.reports])


def probe_training(
    net, X, Y, *, every: int = 10, probe_examples: int = 256, probe_seed: int = 0, **fit_kwargs
) -> TrainingProbe:
    """Train ``net`` with ``fit(net, X, Y, **fit_kwargs)`` and probe it every ``every`` steps.

    The probe batch is ``probe_examples`` rows of (X, Y) drawn once with ``probe_seed``, so
    every report sees the same examples; step 0 (before training) and the last step are
    always recorded. Watch e.g. ``series("dead_fraction")`` grow as ReLU units die.
    """
    X = np.asarray(X) if not hasattr(X, "shape") else X
    m = check_int("len(X)", int(X.shape[0]) if X.ndim else 0, 1)
    k = min(check_int("probe_examples", probe_examples, 1), m)
    idx = np.sort(np.random.default_rng(probe_seed).choice(m, k, replace=False))
    Yp = np.asarray(Y)[idx]
    recorder = ProbeRecorder(
        net,
        np.asarray(X[idx]),
        Yp,
        every=every,
        l2=fit_kwargs.get("l2", 0.0),
        learning_rate=fit_kwargs.get("learning_rate", 0.1),
    )
    recorder.record(0, net.params)
    callbacks = (*fit_kwargs.pop("callbacks", ()), recorder)
    history = fit(net, X, Y, callbacks=callbacks, **fit_kwargs)
    if recorder.records[-1][0] != history.iterations:
        recorder.record(history.iterations, net.params)
    steps, reports = zip(*recorder.records, strict=True)
    return TrainingProbe(history, tuple(steps), tuple(reports))
