"""The Markdown report of a ``dreamlab cycle`` run (``RUN/report.md``): one row per round."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dreamlab.core.io import atomic_write_text

if TYPE_CHECKING:
    from dreamlab.cycle import CycleConfig


def _openloop_cell(row: dict[str, Any]) -> str:
    if row.get("round") == "base":
        return ""
    if row.get("wm_steps") in (None, ""):
        return "no world model (no dreaming)"
    if row.get("openloop_nmse") in (None, ""):
        return "n/a (held-out episodes too short)"
    return f"{float(row['openloop_nmse']):.4f} ({float(row['openloop_copy_last']):.4f}) at h{row['openloop_horizon']}"


def write_cycle_report(out: Path, cfg: CycleConfig, rows: list[dict[str, Any]]) -> Path:
    from dreamlab.commands.plot import make_plot

    plots = [str(p.relative_to(out)) for p in make_plot("cycle", out)]
    fmt = lambda v, d=1: "" if v is None or v == "" else f"{float(v):.{d}f}"
    lines = [
        f"# dreamlab cycle: {cfg.env_id}",
        "",
        f"{cfg.rounds} rounds of {cfg.deploy.steps} real steps; practice `{cfg.practice}`, "
        f"distil `{cfg.distill.method}`, feedback `{cfg.deploy.feedback}`.",
        "",
        "| round | real steps so far | LLM real return | LLM dream return | teacher real return | "
        "deployed episodes' return | world model open-loop nMSE (copy-last) |",
        "| --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['round']} | {row['real_steps']} | {fmt(row.get('llm_real'))} "
            f"{'± ' + fmt(row.get('llm_real_std')) if row.get('llm_real_std') is not None else ''} | "
            f"{fmt(row.get('llm_dream'))} | {fmt(row.get('teacher_real'))} | {fmt(row.get('deployed_return'))} | "
            f"{_openloop_cell(row)} |"
        )
    lines += ["", *[f"![cycle]({p})" for p in plots if p.endswith(".png")], ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    print("\n".join(lines[: 6 + len(rows)]))
    return path
