"""The ``dreamlab`` command.

Subcommands live one per module in :mod:`dreamlab.commands`; each module defines
``register(subparsers)`` which adds its parser and sets ``func`` (``args -> exit code``).
They are discovered automatically, so adding a command never edits this file.

One error path: a user error anywhere (a :class:`~dreamlab.core.errors.DreamlabError`, any
``ValueError``, or an ``OSError`` such as a missing file) ends as one line on stderr naming the
file, field and expectation, with exit code 2; ``--debug`` shows the traceback instead.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from dreamlab import commands
from dreamlab.config import add_safety_args
from dreamlab.core.errors import DreamlabError

USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dreamlab",
        description="Learn a world model from logs, practise in its dreams, distil into an LLM.",
    )
    parser.add_argument("--debug", action="store_true", help="show the full traceback of an error")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"dreamlab.commands.{info.name}")
        module.register(sub)
    for command in list(sub.choices.values()):
        _add_safety_everywhere(command)
    return parser


def _add_safety_everywhere(parser: argparse.ArgumentParser) -> None:
    """Every command (and every action of a command with actions) takes ``--trust-code`` and
    ``--force``, whether or not its module called ``add_run_args``."""
    nested = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not nested:
        add_safety_args(parser)
    for action in nested:
        for child in dict.fromkeys(action.choices.values()):
            _add_safety_everywhere(child)


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return USER_ERROR
    from dreamlab.core.quiet import quiet_third_party

    quiet_third_party()
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted; everything finished so far is kept", file=sys.stderr)
        return 130
    except (DreamlabError, ValueError, OSError) as exc:
        if args.debug:
            raise
        msg = " ".join(str(exc).split()) or type(exc).__name__
        print(f"dreamlab {args.command}: error: {msg}", file=sys.stderr)
        return USER_ERROR


if __name__ == "__main__":
    sys.exit(main())
