"""The generic checker: ``gradcheck(cost_fn, params, grads)`` for any cost function.

The seed's plain loop, 2 cost evaluations per element (or per random direction), in
float64, and the helpers the network methods share with it: float64 copies of the
arrays (``prepare``), the stratified sample of elements (``select``) and the rounding
noise of one central difference (``rounding_noise``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np

from deepgrad.core.backend import to_numpy
from deepgrad.core.checks import check_float, check_int
from deepgrad.core.flat import ordered_keys
from deepgrad.diagnostics.gradcheck.report import Checked, GradcheckReport, build_report

__all__ = [
    "gradcheck",
    "MODES",
    "as_float64",
    "prepare",
    "check_sample",
    "select",
    "rounding_noise",
]

MODES = ("elementwise", "directional")
_NOISE_ULPS = 4.0  # noise estimate: 4 ulp(J) / eps, twice the worst rounding we measured


# -- validation and the elements to check ---------------------------------------------------


def as_float64(name: str, value: Any) -> np.ndarray:
    """A float64 copy of ``value`` (any array or number), checked real and finite."""
    arr = to_numpy(value) if not isinstance(value, int | float | list | tuple) else value
    arr = np.asarray(arr)
    if arr.dtype.kind not in "biuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    arr = np.array(arr, dtype=np.float64, copy=True)
    if not np.all(np.isfinite(arr)):
        raise ValueError(f"{name} contains NaN or inf; all values must be finite")
    return arr


def prepare(params, grads) -> tuple[dict, dict, bool]:
    """float64 copies of params and grads as dicts in the seed's order; single-array flag."""
    single = not isinstance(params, Mapping)
    if single:
        if isinstance(grads, Mapping):
            raise ValueError("grads must be one array like params, got a dict")
        params, grads = {"theta": params}, {"theta": grads}
    if not params:
        raise ValueError("params must be a non-empty dict of arrays, got an empty dict")
    if not isinstance(grads, Mapping):
        raise ValueError(
            f"grads must be a dict with the keys of params, got {type(grads).__name__}"
        )
    if set(params) != set(grads):
        raise ValueError(
            f"grads has keys {sorted(map(str, grads))} but params has {sorted(map(str, params))}; "
            "they must be the same"
        )
    keys = ordered_keys(dict(params))
    P = {k: as_float64(f"params[{k!r}]", params[k]) for k in keys}
    G = {k: as_float64(f"grads[{k!r}]", grads[k]) for k in keys}
    for k in keys:
        if P[k].shape != G[k].shape:
            raise ValueError(
                f"grads[{k!r}] has shape {G[k].shape} but params[{k!r}] has shape {P[k].shape}"
            )
    return P, G, single


def check_sample(sample, total: int) -> int | None:
    """None (every element), or the number of elements to check, in [1, total]."""
    return None if sample is None else check_int("sample", sample, 1, total)


def _check_options(eps, threshold, sample, total: int, seed) -> tuple[float, float, int | None]:
    eps = check_float("eps", eps, 0.0, low_open=True)
    threshold = check_float("threshold", threshold, 0.0, low_open=True)
    check_int("seed", seed, 0)
    return eps, threshold, check_sample(sample, total)


def select(shapes: dict, sample: int | None, seed: int) -> dict[str, np.ndarray]:
    """Flat indices to check per array: all, or ``sample`` in total, stratified.

    Each array gets a share proportional to its size (at least one element), drawn
    without replacement from a Generator seeded with ``seed``.
    """
    sizes = {k: math.prod(s) for k, s in shapes.items()}
    if sample is None:
        return {k: np.arange(n) for k, n in sizes.items()}
    rng = np.random.default_rng(seed)
    total = sum(sizes.values())
    out = {}
    for k, n in sizes.items():
        share = min(n, max(1, round(sample * n / total)))
        out[k] = np.sort(rng.choice(n, size=share, replace=False))
    return out


def rounding_noise(J0: float, eps: float, scale: float = 0.0, dtype: str = "float64") -> float:
    """Rounding noise of one central difference: a few ulp(J) (in ``dtype``) over 2 eps.

    ``scale`` > |J| stands for intermediate values J is computed from by cancellation
    (confident logits: a loss of 1e-3 from logits of 20), whose rounding J inherits.
    """
    ulp = float(np.spacing(np.asarray(max(abs(J0), scale, 1e-30), dtype=dtype)))
    return _NOISE_ULPS * ulp / (2.0 * eps)


# -- the checker ---------------------------------------------------------------------------


def _evaluator(cost_fn: Callable, P: dict, single: bool) -> Callable[[str], float]:
    """``evaluate(where) -> float``: J at the current P; checks finiteness and precision."""
    if not callable(cost_fn):
        raise TypeError(f"cost_fn must be callable(params) -> float, got {type(cost_fn).__name__}")
    arg = P["theta"] if single else P
    warned = []

    def evaluate(where: str) -> float:
        J = cost_fn(arg)
        dtype = str(getattr(J, "dtype", "float64"))
        if not warned and dtype.endswith(("float32", "float16", "bfloat16")):
            warned.append(True)
            warnings.warn(
                f"cost_fn returned {dtype}: a central difference in that precision cannot "
                "reach the 1e-7 bar; compute the cost in float64",
                RuntimeWarning,
                stacklevel=4,
            )
        J = float(to_numpy(J)) if not isinstance(J, int | float) else float(J)
        if not math.isfinite(J):
            raise ValueError(f"cost_fn returned {J} at {where}; the cost must be finite")
        return J

    return evaluate


def _central(evaluate, arr: np.ndarray, name: str, flat: np.ndarray, eps: float) -> np.ndarray:
    """The seed's (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps) for each flat index."""
    view = arr.reshape(-1)
    out = np.empty(len(flat))
    for n, f in enumerate(flat):
        w = view[f]
        view[f] = w + eps
        plus = evaluate(f"{name}[{f}] + eps")
        view[f] = w - eps
        minus = evaluate(f"{name}[{f}] - eps")
        view[f] = w
        out[n] = (plus - minus) / (2.0 * eps)
    return out


def _directional(evaluate, arr: np.ndarray, grad: np.ndarray, name: str, eps, count, rng):
    """Numerical and analytic derivatives along ``count`` random +-1 directions of one array."""
    saved = arr.copy()
    num, ana = np.empty(count), np.empty(count)
    for d in range(count):
        u = rng.choice(np.array([-1.0, 1.0]), size=arr.shape)
        np.add(saved, eps * u, out=arr)
        plus = evaluate(f"{name} + eps u")
        np.subtract(saved, eps * u, out=arr)
        minus = evaluate(f"{name} - eps u")
        num[d], ana[d] = (plus - minus) / (2.0 * eps), float(np.sum(grad * u))
    arr[...] = saved
    return num, ana


def gradcheck(
    cost_fn: Callable,
    params,
    grads,
    eps: float = 1e-7,
    threshold: float = 1e-7,
    sample: int | None = None,
    mode: str = "elementwise",
    seed: int = 0,
    directions: int = 3,
) -> GradcheckReport:
    """Compare ``grads`` with central differences of ``cost_fn`` (the seed's gradient check).

    This is always the plain formula, (J(theta + eps e_i) - J(theta - eps e_i)) / (2 eps)
    in float64: an arbitrary cost function has no layer structure to carry differences
    through, so the rounding of J (about ulp(J) / (2 eps), 5.6e-10 at eps 1e-7 for J near
    0.7) stays in every element. For a deepgrad network, ``gradcheck_network`` computes the
    same central differences without that noise (``method="exact"``).

    Parameters
    ----------
    cost_fn : callable(params) -> float; params is the dict (or the one array) passed here,
        as float64 copies that the checker perturbs in place.
    params, grads : dicts with the same keys and shapes (e.g. {"W1": (n1, n0), "b1": (n1,)}),
        or one array each.
    eps : the step of the central difference (> 0).
    threshold : the bar for ``report.passed`` (the seed's 1e-7).
    sample : check ``sample`` elements in total, stratified over the arrays (seeded),
        instead of all P; must be in [1, P].
    mode : "elementwise" (2 evaluations per element) or "directional": ``directions``
        random +-1 directions per array (2 evaluations each, like PyTorch's fast mode);
        an array whose directions disagree is then checked element-wise, so the report
        still names elements.
    seed : seeds ``sample`` and the directions.

    Returns
    -------
    GradcheckReport

    Example
    -------
    >>> import numpy as np
    >>> A = np.array([[2.0, 1.0], [1.0, 3.0]])
    >>> report = gradcheck(lambda x: 0.5 * x @ A @ x, np.array([1.0, -2.0]),
    ...                    A @ np.array([1.0, -2.0]))
    >>> report.passed
    True
    """
    P, G, single = prepare(params, grads)
    total = sum(a.size for a in P.values())
    eps, threshold, sample = _check_options(eps, threshold, sample, total, seed)
    if mode not in MODES:
        raise ValueError(f"mode must be one of {list(MODES)}, got {mode!r}")
    evaluate = _evaluator(cost_fn, P, single)
    noise = rounding_noise(evaluate("theta"), eps)
    chosen = select({k: a.shape for k, a in P.items()}, sample, seed)
    if mode == "directional":
        directions = check_int("directions", directions, 1)
        return _directional_report(
            evaluate, P, G, chosen, eps, threshold, noise, directions, seed, total
        )
    checked = {}
    for k, flat in chosen.items():
        num = _central(evaluate, P[k], k, flat, eps)
        checked[k] = Checked(
            P[k].shape, flat, num, G[k].reshape(-1)[flat], np.zeros(len(flat), bool)
        )
    return build_report(checked, threshold, eps, noise, total, "elementwise")


def _directional_report(evaluate, P, G, chosen, eps, threshold, noise, count, seed, total):
    """Directions per array; arrays that disagree fall back to element-wise."""
    rng = np.random.default_rng(seed)
    checked = {}
    for k in P:
        num, ana = _directional(evaluate, P[k], G[k], k, eps, count, rng)
        diff = np.abs(num - ana)
        if np.any((diff > threshold * (np.abs(num) + np.abs(ana))) & (diff > noise)):
            flat = chosen[k]
            num = _central(evaluate, P[k], k, flat, eps)
            checked[k] = Checked(
                P[k].shape, flat, num, G[k].reshape(-1)[flat], np.zeros(len(flat), bool)
            )
        else:  # the directions stand in for the array's elements (index = direction)
            checked[k] = Checked((count,), np.arange(count), num, ana, np.zeros(count, bool))
    return build_report(checked, threshold, eps, noise, total, "directional")
