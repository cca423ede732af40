"""The Markdown report of a ``dreamlab cycle`` run (``RUN/report.md``): one row per round."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from dreamlab.core.io import atomic_write_text

if TYPE_CHECKING:
    from dreamlab.cycle import CycleConfig


def round_row(r: int, steps: int, info: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """One round's row of ``cycle.csv`` from its stages' results (``steps``: real steps so far)."""
    wm_info = info.get("worldmodel", {})
    om, horizon = wm_info.get("openloop_summary", {}), wm_info.get("openloop_horizon")
    teacher = info.get("practice", {}).get("teacher_real", {})
    ev = info.get("evaluate")
    forgot = info.get("distill", {}).get("forgetting") or {}
    return {
        "round": r,
        "real_steps": steps,
        "llm_real": ev["real"]["mean"] if ev else None,
        "llm_real_std": ev["real"]["std"] if ev else None,
        "llm_dream": ev["dream"]["mean"] if ev and ev["dream"] else None,
        "teacher_real": teacher.get("mean"),
        "deployed_return": info["deploy"]["finished_return_mean"],
        "openloop_nmse": om.get("nmse_at_horizon"),
        "openloop_copy_last": om.get("nmse_copy_last_at_horizon"),
        "openloop_horizon": horizon,
        "wm_steps": wm_info.get("global_step"),
        "wm_cut_short": bool(wm_info.get("cut_short")),
        **{k: forgot.get(k) for k in FORGETTING_KEYS},
    }


FORGETTING_KEYS = ("perplexity_before", "perplexity_after", "instructions_before", "instructions_after")


def _openloop_cell(row: dict[str, Any]) -> str:
    if row.get("round") == "base":
        return ""
    if row.get("wm_steps") in (None, ""):
        return "no world model (no dreaming)"
    if row.get("openloop_nmse") in (None, ""):
        return "n/a (held-out episodes too short)"
    return f"{float(row['openloop_nmse']):.4f} ({float(row['openloop_copy_last']):.4f}) at h{row['openloop_horizon']}"


def _forgetting_cell(row: dict[str, Any]) -> str:
    if row.get("perplexity_after") in (None, ""):
        return ""
    pb, pa = float(row["perplexity_before"]), float(row["perplexity_after"])
    ib, ia = 100 * float(row["instructions_before"]), 100 * float(row["instructions_after"])
    return f"{pb:.2f} → {pa:.2f} ({100 * (pa / pb - 1):+.1f}%), {ib:.0f}% → {ia:.0f}%"


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
        "deployed episodes' return | world model open-loop nMSE (copy-last) | "
        "LLM perplexity, instructions (before → after distillation) |",
        "| --- | --- | --- | --- | --- | --- | --- | --- |",
    ]
    for row in rows:
        lines.append(
            f"| {row['round']} | {row['real_steps']} | {fmt(row.get('llm_real'))} "
            f"{'± ' + fmt(row.get('llm_real_std')) if row.get('llm_real_std') is not None else ''} | "
            f"{fmt(row.get('llm_dream'))} | {fmt(row.get('teacher_real'))} | {fmt(row.get('deployed_return'))} | "
            f"{_openloop_cell(row)} | {_forgetting_cell(row)} |"
        )
    cut = [str(row["round"]) for row in rows if row.get("wm_cut_short")]
    if cut:
        lines += ["", f"**Warning: the world model's wall-clock safety net cut round(s) {', '.join(cut)} short.**"]
    lines += ["", *[f"![cycle]({p})" for p in plots if p.endswith(".png")], ""]
    path = out / "report.md"
    atomic_write_text(path, "\n".join(lines))
    print("\n".join(lines[: 6 + len(rows)]))
    return path
