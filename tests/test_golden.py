"""Golden regression test: fits, gradient checks, probes and command-line runs recomputed
and compared bit for bit with tests/golden/<group>.npz and .json.

The cases live in tests/golden/golden_cases.py (one definition, shared with make_golden.py,
which wrote the files) and use only deepgrad's public API, so the test keeps its meaning
when modules move. The files hold the bits of the machine in machine.json (BLAS kernel, NumPy's
SIMD loops, NumPy and torch versions): there the comparison is bit for bit; on another
machine every case is held to a rounding tolerance (golden_cases.CROSS_MACHINE) and the
gradient-check reports, which are rounding noise, are skipped; regenerate the files there
first, from the code to be compared against, for a bit-for-bit comparison. A case whose
optional dependency (torch, mpi4py and mpiexec) is missing is skipped.
"""

from __future__ import annotations

import importlib.util
import sys
from functools import cache
from pathlib import Path

import pytest

GOLDEN = Path(__file__).resolve().parent / "golden"


def _load_cases():
    spec = importlib.util.spec_from_file_location("golden_cases", GOLDEN / "golden_cases.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("golden_cases", module)
    spec.loader.exec_module(module)
    return module


gc = _load_cases()
REGISTRY = gc.cases()
CASES = [(group, name) for group, cases in REGISTRY.items() for name in cases]


@cache
def _saved(group: str):
    return gc.read_group(group, GOLDEN)


@pytest.mark.parametrize("group, name", CASES, ids=[f"{g}/{n}" for g, n in CASES])
def test_golden(group, name, tmp_path):
    if not gc.comparable_here(group, name):
        pytest.skip(
            "the golden files come from another machine (tests/golden/machine.json) and "
            "this case's numbers are rounding noise: regenerate with make_golden.py"
        )
    try:
        result = REGISTRY[group][name](tmp_path)
    except gc.Unavailable as exc:
        pytest.skip(str(exc))
    arrays, values = _saved(group)
    assert name in values, f"{group}/{name} is not in the golden files: run make_golden.py"
    diff = gc.differences(result, arrays.get(name, {}), values[name], group, name)
    assert not diff, f"{group}/{name} differs from the golden files:\n" + "\n".join(diff)


def test_every_saved_case_is_still_computed():
    for group, cases in REGISTRY.items():
        arrays, values = _saved(group)
        assert set(values) <= set(cases), f"{group}: saved cases no longer defined"
        assert set(arrays) <= set(values)
