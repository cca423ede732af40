"""``dreamlab results``: regenerate ``docs/results.md`` from ``benchmarks/results/`` (see :mod:`dreamlab.results_doc`)."""

from __future__ import annotations

import argparse
from pathlib import Path


def register(sub: argparse._SubParsersAction) -> None:
    from dreamlab.results_doc import DOC, RESULTS

    p = sub.add_parser(
        "results",
        help="regenerate docs/results.md from the result files in benchmarks/results",
        description="Read every result JSON (with its manifest: command, commit, machine) and "
        "write one Markdown page of what produced each figure.",
    )
    p.add_argument("--results", type=Path, default=RESULTS, help=f"results folder (default: {RESULTS})")
    p.add_argument("--out", type=Path, default=DOC, help=f"page to write (default: {DOC})")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dreamlab.results_doc import write

    if not args.results.is_dir():
        raise FileNotFoundError(f"{args.results}: no such results folder")
    print(write(args.results, args.out))
    return 0
