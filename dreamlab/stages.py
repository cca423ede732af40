"""Resumable stages for the multi-stage commands (``quickstart``, ``bench``, ``cycle``).

A stage is a function returning a JSON-able dict. :func:`run_stage` runs it once: when it
finishes, ``OUT/stages/<name>.json`` records what it reported (plus ``wall_s``), written
atomically, and a later run with the same folder returns that record instead of redoing the
work. Stages that hold their own checkpoints (world model, dreamer, distiller) also resume
mid-stage; the others redo themselves whole when interrupted before their marker.
"""

from __future__ import annotations

import csv
import json
import sys
import time
from pathlib import Path
from typing import Any, Callable


def _stderr(msg: str) -> None:
    print(f"[dreamlab {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Stages:
    """Completion markers: ``OUT/stages/<name>.json`` holds what the stage reported."""

    def __init__(self, out: Path):
        self.dir = Path(out) / "stages"
        self.dir.mkdir(parents=True, exist_ok=True)

    def done(self, name: str) -> dict[str, Any] | None:
        p = self.dir / f"{name}.json"
        if not p.exists():
            return None
        try:
            return json.loads(p.read_text())
        except json.JSONDecodeError as exc:
            raise ValueError(f"{p}: stage marker is not valid JSON ({exc}); delete it to redo stage {name!r}") from None

    def mark(self, name: str, info: dict[str, Any]) -> dict[str, Any]:
        tmp = self.dir / f".{name}.json.tmp"
        tmp.write_text(json.dumps(info, indent=1))
        tmp.replace(self.dir / f"{name}.json")
        return info


def run_stage(stages: Stages, name: str, fn: Callable[[], dict[str, Any]],
              log: Callable[[str], None] = _stderr) -> dict[str, Any]:
    """Run ``fn`` unless stage ``name`` is already marked done; return its record."""
    prev = stages.done(name)
    if prev is not None:
        log(f"{name}: already done, skipping (delete {stages.dir / (name + '.json')} to redo)")
        return prev
    log(f"{name}: starting")
    t0 = time.perf_counter()
    info = fn()
    info["wall_s"] = round(time.perf_counter() - t0, 1)
    log(f"{name}: done in {info['wall_s']:.0f} s")
    return stages.mark(name, info)


def write_csv(path: Path, rows: list[dict[str, Any]]) -> None:
    """Rows (dicts, keys in first-seen order) -> CSV, replaced atomically."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    tmp.replace(path)
