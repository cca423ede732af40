"""The bench's report: ``OUT/results.csv`` (one row per finished run) and ``OUT/summary.md`` (per env:
dreamlab's modes, the logged behaviour, the SB3 rows, the cited RL Zoo rows and the head-to-head lines)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np

from dreamlab.baselines import SB3_MODES
from dreamlab.core.io import atomic_write_text, write_csv
from dreamlab.stages import stderr_log

_log = stderr_log("bench")


def _logged_by(eps: float) -> str:
    """The offline logs' behaviour: the bench logs with epsilon 1.0 exactly where an env has no heuristic."""
    return f"heuristic, ε {eps}" if eps < 1.0 else "uniformly random"


CSV_FIELDS = tuple(
    "env mode algo seed suite real_return_mean real_return_std dream_return_mean gap gap_relative real_env_steps "
    "budget_steps wall_seconds behaviour_return_mean log_epsilon".split()
)


def _settings(row: dict[str, Any]) -> str:
    """What a run changed from the suite: the replay ratio (online) and ``--dreamer.*``, e.g. ``, intrinsic 1.0``."""
    from dreamlab.bench import SUITES

    suite = SUITES.get(row.get("suite", ""))
    ratio = (row.get("config") or {}).get("replay_ratio")
    extra = f", replay ratio {ratio:g}" if suite and row["mode"] == "online" and ratio != suite.replay_ratio else ""
    return extra + "".join(f", {k.replace('_', ' ')} {v}" for k, v in (row.get("dreamer") or {}).items())


def load_results(out: Path) -> list[dict[str, Any]]:
    rows = [json.loads(p.read_text()) for p in sorted(out.glob("*/*/seed*/result.json"))]
    from dreamlab.bench import MODES

    order = {m: i for i, m in enumerate(MODES)}
    return sorted(rows, key=lambda r: (r["env"], order.get(r["mode"], 9), r.get("budget_steps") or 0, r["seed"]))


def _spread(values: list[float], fmt: str = ".1f") -> str:
    v = np.asarray(values, float)
    med = format(float(np.median(v)), fmt)
    return med if len(v) == 1 else f"{med} [{float(v.min()):{fmt}} – {float(v.max()):{fmt}}]"


def write_aggregate(out: Path) -> dict[str, Any]:
    """``OUT/results.csv`` (one row per finished run) and ``OUT/summary.md``."""
    from dreamlab.baselines import head_to_head, summary_rows
    from dreamlab.bench import BenchError
    from dreamlab.references import SOURCE, references_for

    rows = load_results(out)
    if not rows:
        raise BenchError(f"{out}: no finished runs (no */*/seed*/result.json) to summarise")
    write_csv(out / "results.csv", [{k: r.get(k) for k in CSV_FIELDS} for r in rows])
    lines = [
        "# dreamlab bench",
        "",
        "Per env × mode: median over seeds, [min – max] when there are several. Real = the agent's "
        "return in the real env; dream = the same agent in its world model's dream from the same start "
        "states; gap = dream − real. Real steps = real env steps used for training (offline: the logs). "
        "Wall = the run's own stages on this machine. SB3 rows: the same real steps, RL Zoo "
        "hyperparameters (dreamlab.baselines), greedy evaluation on the same episodes.",
        "",
    ]
    first, verdicts = rows[0]["machine"], []
    hosts = sorted({str(r["machine"].get("platform")) for r in rows})
    for env_id in dict.fromkeys(r["env"] for r in rows):
        lines += [
            f"## {env_id}",
            "",
            "| who | seeds | real return | dream return | gap | real steps | wall (s) |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
        ]
        for mode in dict.fromkeys(r["mode"] for r in rows if r["env"] == env_id and r["mode"] not in SB3_MODES):
            rs = [r for r in rows if r["env"] == env_id and r["mode"] == mode]
            lines.append(
                f"| dreamlab {mode} ({rs[0]['suite']}, {rs[0]['config']['preset']}{_settings(rs[0])}) | {len(rs)} | "
                f"{_spread([r['real_return_mean'] for r in rs])} | {_spread([r['dream_return_mean'] for r in rs])} | "
                f"{_spread([r['gap'] for r in rs], '+.1f')} | {_spread([r['real_env_steps'] for r in rs], '.0f')} | "
                f"{_spread([r['wall_seconds'] for r in rs], '.0f')} |"
            )
            if mode == "offline":
                beh = [r["behaviour_return_mean"] for r in rs if r.get("behaviour_return_mean") is not None]
                if beh:
                    lines.append(
                        f"| logged behaviour ({_logged_by(rs[0]['log_epsilon'])}) | {len(beh)} | "
                        f"{_spread(beh)} | | | | |"
                    )
        env_rows = [r for r in rows if r["env"] == env_id]
        lines += summary_rows(env_rows, _spread)
        refs = references_for(env_id)
        for ref in refs:
            name = ref.env_id if ref.env_id != env_id else ""
            lines.append(
                f"| RL Zoo {ref.algo.upper()}{' on ' + name if name else ''} [ref] | 1 | "
                f"{ref.mean_reward:.1f} ± {ref.std_reward:.1f} | | | {ref.n_timesteps} | |"
            )
        if not refs:
            lines.append("| (no RL Zoo reference found for this env) | | | | | | |")
        h2h, ahead = head_to_head(env_id, env_rows)
        verdicts += ahead
        lines += ["", *h2h, ""] if h2h else [""]
    if verdicts:
        lines += [
            f"**Head to head: dreamlab ahead in {sum(verdicts)} of {len(verdicts)} comparisons** (median real return, same real steps).",
            "",
        ]
    cut = [f"{r['env']} {r['mode']} seed {r['seed']}" for r in rows if r.get("wm_cut_short")]
    if cut:
        lines += [
            f"**Cut short by the world model's wall-clock safety net** (fewer steps than the budget): {', '.join(cut)}.",
            "",
        ]
    lines += [
        "[ref]: RL Baselines3 Zoo, final performance of one trained agent per algorithm "
        f"(deterministic policy), mean ± std over its evaluation episodes, after the real steps shown: {SOURCE}",
        "",
        f"Machine: {first['platform']}, {first['cpu_count']} CPUs, {first.get('torch_threads')} torch thread(s), "
        f"torch {first.get('torch')}, load average {first.get('load_avg')} when the first run ended "
        "(the machine may be shared: wall times depend on what else runs)."
        + (f" The runs ran on {len(hosts)} hosts: {', '.join(hosts)}." if len(hosts) > 1 else ""),
        "",
    ]
    atomic_write_text(out / "summary.md", "\n".join(lines))
    _log(f"wrote {out / 'results.csv'} ({len(rows)} runs) and {out / 'summary.md'}")
    return {"csv": str(out / "results.csv"), "summary": str(out / "summary.md"), "rows": len(rows)}
