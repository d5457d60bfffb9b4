"""The package's layers hold: import-linter's contracts (pyproject.toml), no import cycle
between modules (function-local imports included), no private name imported across
modules, and ``import deepgrad`` stays light."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

SRC = Path(__file__).resolve().parents[1] / "src" / "deepgrad"
ROOT = SRC.parents[1]


def test_import_linter_contracts_are_kept():
    exe = Path(sys.executable).with_name("lint-imports")
    if not exe.exists():
        pytest.skip("import-linter is not installed (make install-test installs it)")
    proc = subprocess.run([str(exe)], cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-2000:]
    assert "BROKEN" not in proc.stdout and "KEPT" in proc.stdout


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on.add(root)
        while work:
            v, children = work[-1]
            for w in children:
                if w not in index:
                    index[w] = low[w] = counter[0]
                    counter[0] += 1
                    stack.append(w)
                    on.add(w)
                    work.append((w, iter(sorted(graph[w]))))
                    break
                if w in on:
                    low[v] = min(low[v], index[w])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[v])
                if low[v] == index[v]:
                    comp = []
                    while True:
                        w = stack.pop()
                        on.discard(w)
                        comp.append(w)
                        if w == v:
                            break
                    if len(comp) > 1:
                        out.append(sorted(comp))
    return out


def _module(path: Path) -> str:
    parts = list(path.relative_to(SRC.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path, modules: set[str]):
    """(imported deepgrad module, names imported from it) for every import in ``path``,
    at any depth (function-local imports count)."""
    me = _module(path)
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name in modules:
                    yield a.name, ()
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                pkg = me.split(".") if path.name == "__init__.py" else me.split(".")[:-1]
                pkg = pkg[: len(pkg) - node.level + 1]
                base = ".".join([*pkg, base] if base else pkg)
            for a in node.names:
                sub = f"{base}.{a.name}"
                if sub in modules:
                    yield sub, ()
                elif base in modules:
                    yield base, (a.name,)


def _graph():
    files = {_module(p): p for p in SRC.rglob("*.py")}
    modules = set(files)
    graph = {m: set() for m in modules}
    private = []
    for m, path in files.items():
        for target, names in _imports(path, modules):
            if target != m and not m.startswith(target + ".") and target != "deepgrad":
                graph[m].add(target)
            private += [f"{m} imports {target}.{n}" for n in names if n.startswith("_")]
    return graph, private


def test_no_import_cycles_between_modules():
    graph, _ = _graph()
    assert _cycles(graph) == []


def test_no_private_name_is_imported_across_modules():
    _, private = _graph()
    allowed = {"__version__"}
    assert [p for p in private if p.rsplit(".", 1)[1] not in allowed] == []


def test_cycle_finder_finds_a_cycle():
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_import_deepgrad_is_light():
    # Network.fit is defined with deepgrad.fit's keywords (train.api, light); the loop and
    # its engines load with the first fit, the checker and the probe on first use.
    code = (
        "import sys, numpy as np, deepgrad\n"
        "heavy = ['torch', 'matplotlib', 'pandas', 'sklearn', 'deepgrad.train.loop',"
        " 'deepgrad.train.engines', 'deepgrad.diagnostics.gradcheck', 'deepgrad.plotting']\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "deepgrad.fit, deepgrad.gradcheck_network, deepgrad.probe\n"
        "print([m for m in heavy if m in sys.modules])\n"
        "net = deepgrad.Network([2, 1], seed=0)\n"
        "net.fit(np.zeros((4, 2)), np.array([0, 1, 0, 1]), epochs=1, progress=False)\n"
        "print('deepgrad.train.loop' in sys.modules)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:3] == ["[]", "['deepgrad.diagnostics.gradcheck']", "True"]
