"""Compute every golden case (golden_cases.py) and write tests/golden/<group>.npz/.json.

    python tests/golden/make_golden.py            # (re)write all files
    python tests/golden/make_golden.py fit cli    # only these groups
    python tests/golden/make_golden.py --check    # compare with the files, write nothing

Run it with the deepgrad to be frozen (e.g. PYTHONPATH=src) on the machine the test runs
on. A case whose optional dependency (torch, MPI) is missing stops it, unless
--allow-missing, which leaves that case out (the test then fails on it until regenerated
where it can run).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import golden_cases as gc  # noqa: E402


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("groups", nargs="*", help="groups to compute (default all)")
    parser.add_argument("--check", action="store_true", help="compare, do not write")
    parser.add_argument("--allow-missing", action="store_true")
    args = parser.parse_args(argv)
    warnings.simplefilter("error")  # as the test suite does (pyproject's filterwarnings)
    warnings.filterwarnings("ignore", category=DeprecationWarning, module="tqdm")
    registry = gc.cases()
    groups = args.groups or list(registry)
    unknown = set(groups) - set(registry)
    if unknown:
        parser.error(f"unknown groups {sorted(unknown)}; there are {list(registry)}")
    failed = 0
    for group in groups:
        results, t0 = {}, time.perf_counter()
        saved = gc.read_group(group) if args.check else None
        for name, case in registry[group].items():
            with tempfile.TemporaryDirectory() as tmp:
                try:
                    results[name] = case(Path(tmp))
                except gc.Unavailable as exc:
                    if not args.allow_missing:
                        print(f"{group}/{name}: unavailable ({exc}); --allow-missing to skip")
                        return 1
                    print(f"{group}/{name}: left out ({exc})")
                    continue
            if saved is not None:
                diff = gc.differences(
                    results[name], saved[0].get(name, {}), saved[1].get(name, {}), group, name
                )
                failed += bool(diff)
                for line in diff:
                    print(f"{group}/{name}: {line}")
        if not args.check:
            gc.write_group(group, results)
            gc.write_machine()
        print(f"{group}: {len(results)} cases in {time.perf_counter() - t0:.1f} s")
    if args.check:
        print("all identical" if not failed else f"{failed} cases differ")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
