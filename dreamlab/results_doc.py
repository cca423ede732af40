"""``docs/results.md``, generated from the result files in ``benchmarks/results/``.

Every benchmark script writes its figures as JSON with a manifest (``command``, ``commit``,
``packages``, ``machine``, ``time``: :func:`dreamlab.core.machine.run_manifest`). This module reads
them all and writes one page: per file, what produced it (the command and commit, or "not
recorded" for files written before manifests existed), when, on what machine, and its headline
figures (the ``summary`` block, or the file's top-level scalars). Nothing is typed in by hand:
``dreamlab results`` rewrites the page, and a test fails when the page is out of date.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from dreamlab.core.io import atomic_write_text

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results"
DOC = ROOT / "docs" / "results.md"
MAX_ROWS = 24  # headline rows per file; the JSON holds the rest
NOT_RECORDED = "not recorded"


def _fmt(v: Any) -> str:
    if isinstance(v, bool) or v is None:
        return str(v).lower() if isinstance(v, bool) else "–"
    if isinstance(v, float):
        return f"{v:.4g}"
    if isinstance(v, (list, tuple)):
        if len(v) <= 6 and all(isinstance(x, (int, float, str, bool)) or x is None for x in v):
            return "[" + ", ".join(_fmt(x) for x in v) + "]"
        return f"({len(v)} values)"
    return str(v).replace("|", "\\|").replace("\n", " ")


def _flatten(d: Any, prefix: str = "", depth: int = 0) -> list[tuple[str, Any]]:
    """Scalar leaves of a nested dict as (dotted key, value), two levels deep at most."""
    if not isinstance(d, dict):
        return [(prefix.rstrip("."), d)]
    rows: list[tuple[str, Any]] = []
    for k, v in d.items():
        if isinstance(v, dict) and depth < 2:
            rows += _flatten(v, f"{prefix}{k}.", depth + 1)
        elif not isinstance(v, dict):
            rows.append((f"{prefix}{k}", v))
    return rows


def _headline(rec: dict[str, Any]) -> list[tuple[str, Any]]:
    if isinstance(rec.get("summary"), dict):
        return _flatten(rec["summary"])
    skip = {
        "machine",
        "packages",
        "config",
        "configs",
        "runs",
        "command",
        "commit",
        "time",
        "date",
        "when",
        "note",
        "sources",
        "invocations",
    }
    return [(k, v) for k, v in rec.items() if k not in skip and not isinstance(v, dict)]


def _describe(path: Path, rec: dict[str, Any], root: Path) -> list[str]:
    rel = path.relative_to(root)
    machine = rec.get("machine") or {}
    when = rec.get("time") or rec.get("date") or rec.get("when") or rec.get("finished") or NOT_RECORDED
    lines = [
        f"### `{rel}`",
        "",
        f"- benchmark: {rec.get('benchmark') or path.stem.split('_')[0]}",
        f"- command: `{rec['command']}`" if rec.get("command") else f"- command: {NOT_RECORDED}",
        f"- commit: `{rec['commit']}`" if rec.get("commit") else f"- commit: {NOT_RECORDED}",
        f"- when: {when}",
    ]
    if isinstance(machine, dict) and machine:
        facts = [str(machine[k]) for k in ("platform", "processor") if machine.get(k)]
        facts += [
            f"{machine[k]} {label}"
            for k, label in (("cpu_count", "CPUs"), ("torch_threads", "torch threads"))
            if machine.get(k) is not None
        ]
        lines.append(f"- machine: {', '.join(facts)}" + (f" ({machine['note']})" if machine.get("note") else ""))
    if rec.get("note"):
        lines.append(f"- note: {_fmt(rec['note'])}")
    siblings = sorted(p.name for p in path.parent.glob(path.stem + ".*") if p.suffix in (".png", ".md", ".csv"))
    if siblings:
        lines.append(
            "- beside it: " + ", ".join(f"[{n}](../benchmarks/results/{(rel.parent / n).as_posix()})" for n in siblings)
        )
    rows = _headline(rec)
    if rows:
        lines += ["", "| figure | value |", "| --- | --- |"]
        lines += [f"| {k} | {_fmt(v)} |" for k, v in rows[:MAX_ROWS]]
        if len(rows) > MAX_ROWS:
            lines.append(f"| … | {len(rows) - MAX_ROWS} more in the JSON |")
    return lines + [""]


def result_files(root: Path = RESULTS) -> list[Path]:
    """Top-level result JSONs plus each bench suite's summary (per-run files stay in their folders)."""
    files = sorted(root.glob("*.json"))
    files += sorted(p for p in root.glob("*/*.json") if p.name != "bench_config.json" and p.parent.name != "stages")
    return files


def render(root: Path = RESULTS) -> str:
    groups: dict[str, list[str]] = {}
    recorded = 0
    files = result_files(root)
    for path in files:
        try:
            rec = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            groups.setdefault("unreadable", []).append(f"- `{path.relative_to(root)}`: not valid JSON ({exc})\n")
            continue
        if not isinstance(rec, dict):
            continue
        recorded += bool(rec.get("command") and rec.get("commit"))
        family = str(rec.get("benchmark") or path.stem.split("_")[0])
        groups.setdefault(family, []).append("\n".join(_describe(path, rec, root)))
    suites = sorted(p.parent for p in root.glob("*/summary.md"))
    lines = [
        "# Results",
        "",
        "Generated by `dreamlab results` from the files in `benchmarks/results/`; do not edit by hand.",
        f"{len(files)} result files; {recorded} record both the command and the commit that produced them "
        f'(the others predate run manifests and say "{NOT_RECORDED}").',
        "",
    ]
    if suites:
        lines += ["## Benchmark suites (`dreamlab bench`)", ""]
        lines += [f"- [{p.name}](../benchmarks/results/{p.name}/summary.md)" for p in suites] + [""]
    for family in sorted(groups):
        lines += [f"## {family}", "", *groups[family]]
    return "\n".join(lines).rstrip() + "\n"


def write(root: Path = RESULTS, doc: Path = DOC) -> Path:
    atomic_write_text(doc, render(root))
    return doc
