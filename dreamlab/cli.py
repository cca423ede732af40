"""The ``dreamlab`` command.

Subcommands live one per module in :mod:`dreamlab.commands`; each module defines
``register(subparsers)`` which adds its parser and sets ``func`` (``args -> exit code``).
They are discovered automatically, so adding a command never edits this file.
"""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import sys

from dreamlab import commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dreamlab",
        description="Learn a world model from logs, practise in its dreams, distil into an LLM.",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for info in sorted(pkgutil.iter_modules(commands.__path__), key=lambda m: m.name):
        if info.name.startswith("_"):
            continue
        module = importlib.import_module(f"dreamlab.commands.{info.name}")
        module.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        print("\ninterrupted; everything finished so far is kept", file=sys.stderr)
        return 130
    except (DreamlabError, ValueError, FileNotFoundError) as exc:
        # library errors are ValueError subclasses whose message names the file and field
        print(f"dreamlab {args.command}: error: {exc}", file=sys.stderr)
        return 1


class DreamlabError(Exception):
    """Base for user-facing errors; kept here only for the CLI's catch (libraries raise ValueError subclasses)."""


if __name__ == "__main__":
    sys.exit(main())
