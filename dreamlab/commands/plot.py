"""``dreamlab plot transfer|curves|openloop|distill|cycle DIR``: figures from benchmark outputs.

DIR is a run or benchmark folder (or the file itself). Each kind reads one file:

* ``transfer``: ``transfer.csv`` with columns ``real_return, dream_return[, label]``
* ``curves``:   ``curves.csv`` with ``real_steps, real_return[, seed, label]``
* ``openloop``: ``openloop.json``, the output of ``dreamlab eval-wm --json``
* ``distill``:  ``distill.csv`` with ``method, labelled_tokens, real_return[, seed]``
  (and optional reference rows ``method = ref:NAME``)
* ``cycle``:    ``cycle.csv`` of ``dreamlab cycle`` with ``round, real_steps, llm_real[, teacher_real, seed, label]``
  (the row with ``round = base`` is the base LLM)

It writes ``DIR/plots/<kind>.png`` and ``.pdf`` (or ``--out STEM``).
"""

from __future__ import annotations

import argparse
import csv
import json
from pathlib import Path
from typing import Any

from dreamlab.core.errors import DreamlabError

FILES = {
    "transfer": "transfer.csv",
    "curves": "curves.csv",
    "openloop": "openloop.json",
    "distill": "distill.csv",
    "cycle": "cycle.csv",
}


class PlotInputError(DreamlabError):
    pass


def read_csv(path: Path, required: tuple[str, ...]) -> list[dict[str, Any]]:
    try:
        with open(path, newline="") as fh:
            rows = list(csv.DictReader(fh))
    except OSError as exc:
        raise PlotInputError(f"{path}: cannot read: {exc}") from None
    if not rows:
        raise PlotInputError(f"{path}: no rows")
    missing = [c for c in required if c not in rows[0]]
    if missing:
        raise PlotInputError(f"{path}: missing column(s) {missing}; has {list(rows[0])}")
    for i, r in enumerate(rows, start=2):
        for c in required:
            if c in ("label", "method", "seed", "round"):
                continue
            try:
                float(r[c])
            except (TypeError, ValueError):
                raise PlotInputError(f"{path}: line {i}, column '{c}': expected a number, got {r[c]!r}") from None
    return rows


def _resolve(target: Path, kind: str) -> Path:
    path = target / FILES[kind] if target.is_dir() else target
    if not path.exists():
        raise PlotInputError(f"{path}: not found (dreamlab plot {kind} reads {FILES[kind]})")
    return path


def make_plot(kind: str, target: Path, out: Path | None = None) -> list[Path]:
    from dreamlab import plots

    path = _resolve(target, kind)
    stem = out or (path.parent / "plots" / kind)
    if kind == "transfer":
        return plots.plot_transfer(read_csv(path, ("real_return", "dream_return")), stem)
    if kind == "curves":
        return plots.plot_curves(read_csv(path, ("real_steps", "real_return")), stem)
    if kind == "openloop":
        try:
            result = json.loads(path.read_text())
        except json.JSONDecodeError as exc:
            raise PlotInputError(f"{path}: not valid JSON: {exc}") from None
        for key in ("nmse", "nmse_copy_last"):
            if key not in result:
                raise PlotInputError(f"{path}: missing field '{key}' (expected `dreamlab eval-wm --json` output)")
        return plots.plot_openloop(result, stem)
    if kind == "cycle":
        return plots.plot_cycle(read_csv(path, ("round", "real_steps")), stem)
    rows = read_csv(path, ("method", "labelled_tokens", "real_return"))
    refs = {r["method"][4:]: float(r["real_return"]) for r in rows if r["method"].startswith("ref:")}
    return plots.plot_distill([r for r in rows if not r["method"].startswith("ref:")], stem, refs=refs)


def run(args: argparse.Namespace) -> int:
    if args.out:
        from dreamlab.core.io import check_output_file

        for suffix in (".png", ".pdf"):
            check_output_file(Path(args.out).with_suffix(suffix), getattr(args, "force", False))
    paths = make_plot(args.kind, Path(args.dir), Path(args.out) if args.out else None)
    for p in paths:
        print(p)
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "plot",
        help="figures from benchmark or run outputs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("kind", choices=sorted(FILES))
    p.add_argument("dir", help="run/benchmark folder, or the input file itself")
    p.add_argument(
        "--out", default=None, help="output stem (default DIR/plots/KIND); existing STEM.png/.pdf need --force"
    )
    p.set_defaults(func=run)
