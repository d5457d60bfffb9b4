"""The training engines, fastest first, and how ``fit`` picks one.

Each engine says, for a given plan, whether it can run it exactly (``why_not`` returns
None) or what it lacks. ``choose`` takes the first that can, or the one asked for by
name, raising ValueError with its reason when it cannot: a configuration is never
silently changed to fit an engine.
"""

from __future__ import annotations

from deepgrad.train.engines.base import Engine
from deepgrad.train.engines.compiled import Compiled
from deepgrad.train.engines.reference import Reference
from deepgrad.train.engines.shards import Shards
from deepgrad.train.engines.torch_flat import TorchFlat
from deepgrad.train.engines.torch_graphs import TorchGraphs

__all__ = ["Engine", "ENGINES", "choose", "names"]

# The compiled engine is asked for by name until its crossover is measured quietly.
ENGINES: dict[str, type[Engine]] = {
    e.name: e for e in (Shards, TorchGraphs, TorchFlat, Reference, Compiled)
}


def names() -> list[str]:
    return list(ENGINES)


def choose(plan, params: dict, opt_state, name: str | None = None) -> type[Engine]:
    """The engine class that runs ``plan``: ``name``'s, or the fastest that can."""
    if name is not None:
        if not isinstance(name, str) or name not in ENGINES:
            raise ValueError(f"engine must be one of {names()} or None, got {name!r}")
        reason = ENGINES[name].why_not(plan, params, opt_state)
        if reason is not None:
            raise ValueError(f"engine {name!r} cannot run this fit: {reason}")
        return ENGINES[name]
    for engine in ENGINES.values():
        if engine.why_not(plan, params, opt_state) is None:
            return engine
    raise AssertionError("the reference engine runs every plan")
