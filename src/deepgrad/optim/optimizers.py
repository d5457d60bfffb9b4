"""Optimizers as pure ``(init, update)`` pairs, in the style of optax.

``state = opt.init(params)``; ``new_params, new_state = opt.update(grads, state, params)``.
Nothing is mutated: the state is an immutable NamedTuple and a new params dict is
returned, so a training loop can keep, compare or checkpoint any of them.

Each optimizer is a chain of gradient transformations (``scale_by_momentum``,
``scale_by_rms``, ``scale_by_adam``) followed by the learning rate, the way optax builds
``adam = chain(scale_by_adam, scale_by_learning_rate)``. With g = dJ/dtheta, t = 1, 2, ...:

- gd:        theta := theta - alpha_t g                                  (the seed's rule)
- momentum:  v := beta v + (1 - beta) g;  theta := theta - alpha_t v        (EMA form)
- rmsprop:   s := beta s + (1 - beta) g^2;  theta := theta - alpha_t g / (sqrt(s) + eps)
- adam:      m := b1 m + (1 - b1) g;  v := b2 v + (1 - b2) g^2;
             theta := theta - alpha_t m_hat / (sqrt(v_hat) + eps),
             m_hat = m / (1 - b1^t), v_hat = v / (1 - b2^t)  (bias correction)

The learning rate may be a float or a schedule ``step -> float`` (step counts updates
from 0); see ``constant``, ``inverse_time_decay``, ``exponential_decay``, ``step_decay``.
Everything uses the array namespace of the parameters, so it runs on any array API
backend.

Example
-------
>>> import numpy as np
>>> opt = adam(0.1)
>>> params = {"W1": np.array([[1.0, -2.0]])}
>>> state = opt.init(params)
>>> params, state = opt.update({"W1": np.array([[0.5, -0.5]])}, state, params)
>>> params["W1"].round(6).tolist()  # first Adam step moves each weight by ~alpha
[[0.9, -1.9]]
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, NamedTuple

import numpy as np

from deepgrad.core.backend import namespace
from deepgrad.core.checks import check_float, check_int

__all__ = [
    "Optimizer",
    "Transform",
    "Direction",
    "from_direction",
    "GDState",
    "ChainState",
    "MomentumState",
    "RMSState",
    "AdamState",
    "gd",
    "momentum",
    "rmsprop",
    "adam",
    "chain",
    "scale_by_momentum",
    "scale_by_rms",
    "scale_by_adam",
    "Schedule",
    "PERS",
    "per_epoch",
    "constant",
    "inverse_time_decay",
    "exponential_decay",
    "step_decay",
    "get",
    "bind_epochs",
    "OPTIMIZERS",
    "FlatRule",
    "scalars_table",
    "sqrt_",
    "flat_state",
    "state_from_flat",
]


class FlatRule(NamedTuple):
    """An optimizer's update on one flat parameter vector, for the training engines.

    ``scalars(count)`` gives the numbers that change from step to step (the scheduled
    alpha_t first, then e.g. Adam's bias corrections), so an engine can pass them to a
    captured kernel instead of baking them in. ``step(theta, g, slots, scalars, work)``
    updates theta and the state vectors ``slots`` in place, using the two scratch vectors
    ``work``: no allocation per step (a fresh 0.3 MB temporary costs page faults, which
    made Adam's update ~1.4 ms instead of ~0.2 ms). It runs the transformation's
    ``Direction``, the same code the dict update runs on each array, so both give the
    same numbers; in-place operators only (and ``sqrt_``): NumPy, torch and any array API.
    """

    slots: int  # state vectors kept beside theta (0 for gd, 2 for adam)
    scalars: Callable[[int], tuple]
    step: Callable[[Any, Any, tuple, tuple, tuple], None]
    kind: tuple = ()  # Direction.kind (or ("gd", ())): what a compiled engine runs


def scalars_table(rule: FlatRule, first: int, n: int) -> np.ndarray:
    """``rule.scalars(count)`` for count = first, ..., first + n - 1: an (n, k) array.

    The built-in schedules and corrections take an array of counts at once (NumPy's
    power is within 2e-14 relative of Python's float power); a schedule written for one
    int at a time (it raises, or its ends disagree with it) is called per count."""
    counts = np.arange(first, first + n, dtype=np.int64)
    ends = [np.asarray(rule.scalars(c), np.float64) for c in (first, first + n - 1)]
    try:
        with np.errstate(all="ignore"):
            cols = [np.broadcast_to(np.asarray(c, np.float64), (n,)) for c in rule.scalars(counts)]
        table = np.stack(cols, axis=1) if cols else np.empty((n, 0))
        if np.allclose(table[[0, -1]], ends, rtol=1e-13, atol=0):
            return table
    except Exception:  # noqa: BLE001 - a schedule for ints only: called per count below
        pass
    table = np.array([rule.scalars(c) for c in range(first, first + n)], np.float64)
    return table.reshape(n, len(ends[0]))


def sqrt_(x) -> None:
    """x := sqrt(x) in place: a NumPy array, a torch tensor or any array API array."""
    if isinstance(x, np.ndarray):
        np.sqrt(x, out=x)
    elif hasattr(x, "sqrt_"):
        x.sqrt_()
    else:
        x[...] = namespace(x).sqrt(x)


def _scaled(work, g, factor):
    """work := g * factor, in place (no temporary)."""
    work[...] = g
    work *= factor
    return work


class Optimizer(NamedTuple):
    """A pure optimizer: ``init(params) -> state``, ``update(grads, state, params)``."""

    name: str
    init: Callable[[dict], Any]
    update: Callable[[dict, Any, dict], tuple[dict, Any]]
    flat: FlatRule | None = None  # the same rule on a flat vector (built-in optimizers)
    learning_rate: Any = None  # the float or Schedule it was built with
    with_learning_rate: Callable[[Any], Optimizer] | None = None  # the same, another rate


class Direction(NamedTuple):
    """A transformation's arithmetic, written once, in place on one vector.

    ``direction(g, slots, scalars, work)`` updates the state vectors ``slots`` (numbered
    as in the state's dict fields) and returns the update direction, written into one of
    the two scratch vectors ``work``; ``scalars(count)`` gives what changes per step (Adam's
    bias corrections). The engines run it on the whole flat theta (``FlatRule``); the dict
    form (``Transform.update``) runs it on each parameter array: one definition, the
    same numbers operation for operation.
    """

    slots: int
    scalars: Callable[[int], tuple]
    direction: Callable[[Any, tuple, tuple, tuple], Any]
    kind: tuple = ()  # (name, constants as ``direction`` uses them) for compiled engines


class Transform(NamedTuple):
    """A gradient transformation: ``init(params) -> state``,
    ``update(updates, state) -> (new_updates, new_state)``; ``flat`` is its in-place
    arithmetic when it has one (every built-in transformation)."""

    init: Callable[[dict], Any]
    update: Callable[[dict, Any], tuple[dict, Any]]
    flat: Direction | None = None


def _copy(a):
    return a.copy() if isinstance(a, np.ndarray) else namespace(a).asarray(a, copy=True)


def _empty_like(a):
    return np.empty_like(a) if isinstance(a, np.ndarray) else namespace(a).empty_like(a)


def from_direction(state_type: type, flat: Direction) -> Transform:
    """The dict-of-arrays Transform of an in-place ``Direction``: each parameter array
    is one vector. ``state_type`` holds ``count`` (if it has that field) and then one
    dict per slot."""
    counted = "count" in state_type._fields

    def init(params: dict):
        slots = [_zeros_like(params) for _ in range(flat.slots)]
        return state_type(0, *slots) if counted else state_type(*slots)

    def update(g: dict, state):
        count = state.count if counted else 0
        scalars = flat.scalars(count)
        dicts = [v for v in state if isinstance(v, dict)]
        out, new = {}, [{} for _ in dicts]
        for k, gk in g.items():
            vectors = tuple(_copy(d[k]) for d in dicts)
            out[k] = flat.direction(gk, vectors, scalars, (_empty_like(gk), _empty_like(gk)))
            for d, v in zip(new, vectors, strict=True):
                d[k] = v
        return out, (state_type(count + 1, *new) if counted else state_type(*new))

    return Transform(init, update, flat)


class GDState(NamedTuple):
    count: int  # updates done so far (the schedule's step)

    @property
    def t(self) -> int:
        """Updates done so far (the course's t after its last update)."""
        return self.count


PERS = ("step", "epoch")


class Schedule(NamedTuple):
    """A learning rate that changes with the count of updates or of epochs.

    ``schedule(k)`` is alpha after ``k`` units of ``per``: ``per="step"`` counts updates
    (k = 0 for the first update), ``per="epoch"`` counts epochs (every update of epoch k
    uses alpha(k)). ``fit`` turns a per-epoch schedule into a per-step one with
    ``per_step(steps_per_epoch)`` (every epoch of a fit has the same number of batches),
    so the optimizers and the engines only ever see a count of updates.
    """

    rate: Callable[[int], float]
    per: str = "step"

    def __call__(self, count: int) -> float:
        return self.rate(count)

    def per_step(self, steps_per_epoch: int) -> Schedule:
        """This schedule counted in updates, with ``steps_per_epoch`` updates an epoch."""
        if self.per == "step":
            return self
        n = check_int("steps_per_epoch", steps_per_epoch, 1)
        rate = self.rate
        return Schedule(lambda count: rate(count // n), "step")


def _check_per(per) -> str:
    if not isinstance(per, str) or per not in PERS:
        raise ValueError(f"per must be one of {list(PERS)}, got {per!r}")
    return per


def per_epoch(rate: Callable[[int], float]) -> Schedule:
    """A schedule ``epoch -> alpha`` written by hand (the course's ``update_lr`` style)."""
    if not callable(rate):
        raise TypeError(f"rate must be a callable epoch -> learning rate, got {rate!r}")
    return Schedule(rate, "epoch")


def _as_schedule(learning_rate: float | Schedule) -> Schedule:
    if callable(learning_rate):
        return learning_rate
    lr = check_float("learning_rate", learning_rate, 0.0, low_open=True)
    return constant(lr)


def constant(learning_rate: float) -> Schedule:
    """alpha_t = alpha."""
    lr = check_float("learning_rate", learning_rate, 0.0, low_open=True)
    return Schedule(lambda step: lr)


def inverse_time_decay(
    learning_rate: float,
    decay_rate: float,
    decay_steps: int = 1,
    *,
    staircase: bool = False,
    per: str = "step",
) -> Schedule:
    """alpha_k = alpha / (1 + decay_rate * k / decay_steps) (the course's 1/(1 + k t)).

    ``per``: k counts updates ("step") or epochs ("epoch"). ``staircase=True`` takes
    floor(k / decay_steps): the rate changes once every ``decay_steps`` (the course's
    ``schedule_lr_decay`` with ``time_interval=decay_steps``, ``per="epoch"``).
    """
    lr = check_float("learning_rate", learning_rate, 0.0, low_open=True)
    k = check_float("decay_rate", decay_rate, 0.0)
    s = check_int("decay_steps", decay_steps, 1)
    if not isinstance(staircase, bool):
        raise TypeError(f"staircase must be True or False, got {staircase!r}")
    per = _check_per(per)
    if staircase:
        return Schedule(lambda step: lr / (1.0 + k * (step // s)), per)
    return Schedule(lambda step: lr / (1.0 + k * step / s), per)


def exponential_decay(
    learning_rate: float, decay_rate: float, decay_steps: int = 1, *, per: str = "step"
) -> Schedule:
    """alpha_k = alpha * decay_rate ** (k / decay_steps), decay_rate in (0, 1]; k counts
    ``per`` ("step" or "epoch")."""
    lr = check_float("learning_rate", learning_rate, 0.0, low_open=True)
    r = check_float("decay_rate", decay_rate, 0.0, 1.0, low_open=True)
    s = check_int("decay_steps", decay_steps, 1)
    return Schedule(lambda step: lr * r ** (step / s), _check_per(per))


def step_decay(learning_rate: float, factor: float, every: int, *, per: str = "step") -> Schedule:
    """alpha_k = alpha * factor ** floor(k / every): drop by ``factor`` every ``every``
    steps or epochs (``per``)."""
    lr = check_float("learning_rate", learning_rate, 0.0, low_open=True)
    f = check_float("factor", factor, 0.0, 1.0, low_open=True)
    e = check_int("every", every, 1)
    return Schedule(lambda step: lr * f ** (step // e), _check_per(per))  # counts >= 0


def gd(learning_rate: float | Schedule = 0.1) -> Optimizer:
    """Plain gradient descent, the seed's update: theta := theta - alpha * d_theta."""
    schedule = _as_schedule(learning_rate)

    def init(params: dict) -> GDState:
        return GDState(0)

    def update(grads: dict, state: GDState, params: dict):
        lr = schedule(state.count)
        return {k: params[k] - lr * grads[k] for k in params}, GDState(state.count + 1)

    def flat_step(theta, g, slots, scalars, work):
        theta -= _scaled(work[0], g, scalars[0])

    rule = FlatRule(0, lambda count: (schedule(count),), flat_step, ("gd", ()))
    return Optimizer("gd", init, update, rule, learning_rate, gd)


class MomentumState(NamedTuple):
    velocity: dict  # v, same keys and shapes as params


class RMSState(NamedTuple):
    square_avg: dict  # s, running mean of g^2


class AdamState(NamedTuple):
    count: int  # t - 1: updates done so far
    mu: dict  # first moment m
    nu: dict  # second moment v


class ChainState(NamedTuple):
    """An optimizer's state, readable by name.

    ``state.t`` is the number of updates done (the course's t after its last update;
    the next update uses t + 1 in Adam's bias corrections); ``state["W1"]`` the slots of
    one parameter by name, e.g. ``{"velocity": v}`` (momentum) or ``{"mu": m, "nu": v}``
    (Adam); ``state.with_t(2)`` the same state with its counter set (every counter in
    it, kept in step). Integer indexing is a tuple's, as for any NamedTuple.
    """

    count: int  # updates done so far (the schedule's step)
    inner: tuple  # the state of each transformation in the chain

    @property
    def t(self) -> int:
        return self.count

    def __getitem__(self, key):
        if not isinstance(key, str):
            return tuple.__getitem__(self, key)
        out = {}
        for s in self.inner:
            for name, value in zip(s._fields, s, strict=True):
                if isinstance(value, dict):
                    if key not in value:
                        raise KeyError(f"no parameter {key!r}; the state has {sorted(value)}")
                    out[name] = value[key]
        return out

    def with_t(self, t: int) -> ChainState:
        """This state with t updates done (Adam's counter and the schedule's)."""
        t = check_int("t", t, 0)
        inner = tuple(s._replace(count=t) if "count" in s._fields else s for s in self.inner)
        return ChainState(t, inner)


def _zeros_like(params: dict) -> dict:
    return {k: namespace(v).zeros_like(v) for k, v in params.items()}


def _no_scalars(count: int) -> tuple:
    return ()


def scale_by_momentum(beta: float = 0.9) -> Transform:
    """v := beta v + (1 - beta) g; the update becomes v (an exponential moving average)."""
    beta = check_float("beta", beta, 0.0, 1.0, high_open=True)

    def direction(g, state, scalars, work):
        v = state[0]  # v := beta v + (1 - beta) g
        v *= beta
        v += _scaled(work[0], g, 1.0 - beta)
        work[0][...] = v
        return work[0]

    kind = ("momentum", (beta, 1.0 - beta))
    return from_direction(MomentumState, Direction(1, _no_scalars, direction, kind))


def scale_by_rms(beta: float = 0.9, eps: float = 1e-8) -> Transform:
    """s := beta s + (1 - beta) g^2; the update becomes g / (sqrt(s) + eps)."""
    beta = check_float("beta", beta, 0.0, 1.0, high_open=True)
    eps = check_float("eps", eps, 0.0, low_open=True)

    def direction(g, state, scalars, work):
        sq = state[0]  # s := beta s + (1 - beta) g^2
        sq *= beta
        g2 = _scaled(work[0], g, g)
        g2 *= 1.0 - beta
        sq += g2
        den = work[0]  # g / (sqrt(s) + eps)
        den[...] = sq
        sqrt_(den)
        den += eps
        u = work[1]
        u[...] = g
        u /= den
        return u

    kind = ("rmsprop", (beta, 1.0 - beta, eps))
    return from_direction(RMSState, Direction(1, _no_scalars, direction, kind))


def scale_by_adam(b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8) -> Transform:
    """Adam's direction m_hat / (sqrt(v_hat) + eps), with bias-corrected moments."""
    b1 = check_float("b1", b1, 0.0, 1.0, high_open=True)
    b2 = check_float("b2", b2, 0.0, 1.0, high_open=True)
    eps = check_float("eps", eps, 0.0, low_open=True)

    def corrections(count):  # count updates done: this step is t = count + 1
        # Both moments start at 0, so early averages are shrunk by (1 - b^t): undo that.
        return 1.0 - b1 ** (count + 1), 1.0 - b2 ** (count + 1)

    def direction(g, state, scalars, work):
        c1, c2 = scalars
        mu, nu = state
        mu *= b1  # m := b1 m + (1 - b1) g
        mu += _scaled(work[0], g, 1.0 - b1)
        nu *= b2  # v := b2 v + (1 - b2) g^2
        g2 = _scaled(work[0], g, g)
        g2 *= 1.0 - b2
        nu += g2
        den = work[0]  # (m / c1) / (sqrt(v / c2) + eps)
        den[...] = nu
        den /= c2
        sqrt_(den)
        den += eps
        u = work[1]
        u[...] = mu
        u /= c1
        u /= den
        return u

    kind = ("adam", (b1, 1.0 - b1, b2, 1.0 - b2, eps))
    return from_direction(AdamState, Direction(2, corrections, direction, kind))


def chain(name: str, learning_rate: float | Schedule, *transforms: Transform) -> Optimizer:
    """An optimizer: apply ``transforms`` in order to g, then theta := theta - alpha_t u.

    A chain of one built-in transformation also has the flat form (``Optimizer.flat``)
    that the fast engines run, from the same ``Direction``; longer chains run on the
    reference engine.
    """
    schedule = _as_schedule(learning_rate)

    def init(params: dict) -> ChainState:
        return ChainState(0, tuple(tr.init(params) for tr in transforms))

    def update(grads: dict, state: ChainState, params: dict):
        u, inner = grads, []
        for tr, s in zip(transforms, state.inner, strict=True):
            u, s = tr.update(u, s)
            inner.append(s)
        lr = schedule(state.count)
        new = {k: params[k] - lr * u[k] for k in params}
        return new, ChainState(state.count + 1, tuple(inner))

    rule = None
    if len(transforms) == 1 and transforms[0].flat is not None:
        flat = transforms[0].flat

        def flat_step(theta, g, state, scalars, work):
            u = flat.direction(g, state, scalars[1:], work)
            u *= scalars[0]
            theta -= u

        rule = FlatRule(
            flat.slots,
            lambda count: (schedule(count), *flat.scalars(count)),
            flat_step,
            flat.kind,
        )
    return Optimizer(
        name, init, update, rule, learning_rate, lambda lr: chain(name, lr, *transforms)
    )


def bind_epochs(optimizer: Optimizer, steps_per_epoch: int) -> Optimizer:
    """``optimizer`` with a per-epoch schedule turned into a per-step one (``fit`` does
    this once, knowing the batches of an epoch); any other optimizer as it is."""
    lr = optimizer.learning_rate
    if not (isinstance(lr, Schedule) and lr.per == "epoch"):
        return optimizer
    if optimizer.with_learning_rate is None:
        raise ValueError(
            f"optimizer {optimizer.name!r} has a per-epoch schedule but no way to rebuild it "
            f"(with_learning_rate is None); build it with optim.optimizers.chain"
        )
    return optimizer.with_learning_rate(lr.per_step(steps_per_epoch))


def momentum(learning_rate: float | Schedule = 0.1, beta: float = 0.9) -> Optimizer:
    """Gradient descent with momentum (the course's EMA form, so alpha keeps its scale)."""
    return chain("momentum", learning_rate, scale_by_momentum(beta))


def rmsprop(learning_rate: float | Schedule = 0.001, beta: float = 0.9, eps: float = 1e-8):
    """RMSprop: each parameter's step is divided by the RMS of its recent gradients."""
    return chain("rmsprop", learning_rate, scale_by_rms(beta, eps))


def adam(
    learning_rate: float | Schedule = 0.001, b1: float = 0.9, b2: float = 0.999, eps: float = 1e-8
) -> Optimizer:
    """Adam (Kingma & Ba 2015) with bias-corrected moments."""
    return chain("adam", learning_rate, scale_by_adam(b1, b2, eps))


OPTIMIZERS: dict[str, Callable[..., Optimizer]] = {
    "gd": gd,
    "sgd": gd,
    "momentum": momentum,
    "rmsprop": rmsprop,
    "adam": adam,
}


def get(name: str, learning_rate: float | Schedule, **kwargs) -> Optimizer:
    """Build an optimizer by name (``OPTIMIZERS`` lists them); kwargs go to its factory."""
    if not isinstance(name, str) or name not in OPTIMIZERS:
        raise ValueError(f"optimizer must be one of {sorted(OPTIMIZERS)}, got {name!r}")
    return OPTIMIZERS[name](learning_rate, **kwargs)


def _state_dicts(state) -> list[dict]:
    inner = state.inner if isinstance(state, ChainState) else ()
    return [v for s in inner for v in s if isinstance(v, dict)]


def flat_state(state, pack: Callable[[dict], Any]) -> tuple[int, tuple]:
    """(count, slots) of a built-in optimizer's state: each dict of moments as one flat
    vector made by ``pack``, in the order ``FlatRule.step`` takes them."""
    return int(state.count), tuple(pack(d) for d in _state_dicts(state))


def state_from_flat(template, count: int, slots: tuple, unpack: Callable[[Any], dict]):
    """The inverse of ``flat_state``: a state like ``template`` holding these values."""
    if not isinstance(template, ChainState):
        return template._replace(count=count)
    vectors = iter(slots)
    inner = []
    for s in template.inner:
        values = [unpack(next(vectors)) if isinstance(v, dict) else v for v in s]
        s = type(s)(*values)
        inner.append(s._replace(count=count) if "count" in s._fields else s)
    return ChainState(count, tuple(inner))
