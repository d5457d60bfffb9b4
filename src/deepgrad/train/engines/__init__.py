"""The training engines, fastest first, and how ``fit`` picks one.

Each engine says, for a given plan, whether it can run it exactly (``why_not`` returns
None) or what it lacks, and whether it is fast for it (``fast_for``). ``choose`` takes
the first that is fast and can, or the one asked for by name, raising ValueError with
its reason when it cannot: a configuration is never silently changed to fit an engine.
"""

from __future__ import annotations

from deepgrad.train.engines.base import Engine
from deepgrad.train.engines.compiled import Compiled
from deepgrad.train.engines.reference import Reference
from deepgrad.train.engines.shards import Shards
from deepgrad.train.engines.torch_flat import TorchFlat
from deepgrad.train.engines.torch_graphs import TorchGraphs

__all__ = ["Engine", "ENGINES", "choose", "names"]

# Fastest first: the compiled engine where it is fast (``Compiled.fast_for``: small
# steps), then the NumPy engine for every other NumPy fit.
ENGINES: dict[str, type[Engine]] = {
    e.name: e for e in (Compiled, Shards, TorchGraphs, TorchFlat, Reference)
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
        if engine.fast_for(plan) and engine.why_not(plan, params, opt_state) is None:
            return engine
    raise AssertionError("the reference engine runs every plan")
