"""The ``deepgrad`` command: argparse front end; each command lives in deepgrad/cli/<command>.py.

Every command module defines NAME, HELP, ``add_arguments(parser)`` and ``run(args) -> int``.
Bad input becomes one line on stderr and exit code 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys

from deepgrad.train.types import DivergenceError

__all__ = ["main", "COMMANDS"]

# Module names under deepgrad.cli, in the order `deepgrad --help` lists them.
COMMANDS = ("demo", "train", "predict", "gradcheck", "probe", "compare_init")
COMMANDS += ("make_data", "compare_batch", "sweep_batch")  # data at scale


class _Parser(argparse.ArgumentParser):
    def error(self, message):  # usage errors: one line, exit 2 (argparse's own convention)
        self.exit(2, f"{self.prog}: error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    from deepgrad import __version__

    parser = _Parser(
        prog="deepgrad",
        description="Deep fully-connected networks with hand-written backprop: "
        "initializers, gradient checking, batch and mini-batch training.",
    )
    parser.add_argument("--version", action="version", version=f"deepgrad {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True
    for name in COMMANDS:
        module = importlib.import_module(f"deepgrad.cli.{name}")
        p = sub.add_parser(module.NAME, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run)
    return parser


def main(argv=None) -> int:
    """Run the command line; returns the exit code (0 ok, 1 a check failed, 2 bad input)."""
    args = build_parser().parse_args(argv)
    try:
        return int(args._run(args) or 0)
    except BrokenPipeError:  # output piped into e.g. `head`, which has stopped reading
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (ValueError, TypeError, OSError, DivergenceError, ImportError) as exc:
        # ImportError: an optional part missing (pandas for tables); its message says how
        if _caused_by_interrupt(exc):  # Ctrl-C inside an import reads as an ImportError
            print(f"deepgrad {args.command}: interrupted", file=sys.stderr)
            return 130
        message = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        print(f"deepgrad {args.command}: error: {message}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"deepgrad {args.command}: interrupted", file=sys.stderr)
        return 130


def _caused_by_interrupt(exc: BaseException) -> bool:
    """True when a KeyboardInterrupt lies underneath ``exc`` (its cause or context)."""
    seen = set()
    while exc is not None and id(exc) not in seen:
        if isinstance(exc, KeyboardInterrupt):
            return True
        seen.add(id(exc))
        exc = exc.__cause__ or exc.__context__
    return False


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
