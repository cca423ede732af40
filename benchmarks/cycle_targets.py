"""Learning-on-the-job targets (issue 8): ``dreamlab cycle`` rounds and its ablations.

Target (median of the seeds): on CartPole-v1, from a base LLM whose real return is below 50,
after at most 3 rounds of at most 2k real steps each, the LLM's real return is >= 450; each
round's gain is reported, with the no-dreaming ablation at the same real-step budget.

Variants (``--variants``; each is a ``dreamlab cycle`` run with the same seed and budget):

* ``full``:      Dreamer in the dream, OPSD inside the dream (the product's loop);
* ``no-dream``:  no world model practice: SFT of the LLM on the best logged episodes so far;
* ``no-opsd``:   Dreamer in the dream, no distillation: the dream-trained teacher is deployed
                 itself from round 1 on (its real return is the row's figure);
* ``grpo``:      GRPO with the env's verifier in the dream instead of Dreamer's learned reward,
                 then OPSD (the GRPO agent as teacher).

    python -m dreamlab.benchmarks.cycle_targets --seeds 0 1 2 --variants full no-dream
    python -m dreamlab.benchmarks.cycle_targets --env Acrobot-v1 --seeds 0 --variants full
    python -m dreamlab.benchmarks.cycle_targets --merge results/a.json results/b.json --tag ab

``--merge`` joins result files of this script (e.g. one per seed, run as parallel processes)
into one record, summary, CSV and plot, without running anything.

Every variant of a seed starts from the *same* base LLM: the first variant's ``llm_base`` (made from
that seed's random-action logs) is passed to the others as ``--llm``, so round 0 deploys the same
model with the same seed in every variant.

Runs go to ``--work`` (default runs/cycle_targets/<env>/<variant>/seed<k>) and resume when rerun.
Writes ``benchmarks/results/cycle_targets_<env>.json`` and ``.csv`` (one row per round) and the
plot ``cycle_targets_<env>.png``.
"""

from __future__ import annotations

import argparse
import csv
import json
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamlab.config import from_mapping, load_yaml
from dreamlab.core.io import atomic_write_json
from dreamlab.core.machine import run_manifest
from dreamlab.cycle import CycleConfig, run_cycle

RESULTS = Path(__file__).parent / "results"
VARIANTS: dict[str, dict[str, Any]] = {
    "full": {"practice": "dreamer", "distill": {"method": "opsd"}},
    "no-dream": {"practice": "none", "distill": {"method": "sft-logs"}},
    "no-opsd": {"practice": "dreamer", "distill": {"method": "none"}},
    "grpo": {"practice": "grpo", "distill": {"method": "opsd"}},
}


def final_return(rows: list[dict[str, Any]], variant: str) -> float:
    """The deployed policy's real return after the last round (the teacher for no-opsd)."""
    last = rows[-1]
    return float(last["teacher_real"] if variant == "no-opsd" else last["llm_real"])


def summarise(runs: dict[str, dict[str, list[dict[str, Any]]]], goal: float) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for variant, seeds in runs.items():
        finals = [final_return(rows, variant) for rows in seeds.values()]
        base = [float(rows[0]["llm_real"]) for rows in seeds.values()]
        per_round = []
        for rows in seeds.values():
            prev = float(rows[0]["llm_real"])
            gains = []
            for row in rows[1:]:
                cur = float(row["teacher_real"] if variant == "no-opsd" else row["llm_real"])
                gains.append(round(cur - prev, 1))
                prev = cur
            per_round.append(gains)
        out[variant] = {
            "seeds": list(seeds),
            "final_median": float(np.median(finals)),
            "final_min": float(np.min(finals)),
            "final_max": float(np.max(finals)),
            "finals": finals,
            "base_median": float(np.median(base)),
            "real_steps_median": float(np.median([rows[-1]["real_steps"] for rows in seeds.values()])),
            "gain_per_round": per_round,
            "goal": goal,
            "met": bool(np.median(finals) >= goal and np.median(base) < 50),
        }
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="CartPole-v1")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--variants", nargs="+", default=["full", "no-dream"], choices=sorted(VARIANTS))
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--deploy-steps", type=int, default=2000)
    ap.add_argument("--goal", type=float, default=450.0)
    ap.add_argument("--work", default="runs/cycle_targets")
    ap.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML of further CycleConfig settings for every run (the cycle's --config shape)",
    )
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--tag", default="", help="suffix of the result files (cycle_targets_<env>[_TAG].json)")
    ap.add_argument(
        "--merge",
        nargs="+",
        default=None,
        metavar="JSON",
        help="join these result files of this script into one (runs nothing)",
    )
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    if args.merge:
        write_outputs(merge_records([Path(p) for p in args.merge], args.goal), args.tag)
        return
    extra = load_yaml(args.config) if args.config else {}
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    configs: dict[str, Any] = {}
    walls: dict[str, dict[str, float]] = {}  # minutes of stage work per run (summed over resumptions)
    t0 = time.perf_counter()
    for variant in args.variants:
        runs[variant] = {}
        for seed in args.seeds:
            out = Path(args.work) / args.env / variant / f"seed{seed}"
            shared = {"llm": "toy"}  # these figures are for the toy GPT (SmolLM2 cycles: issue 20)
            if variant != args.variants[0]:
                base = Path(args.work) / args.env / args.variants[0] / f"seed{seed}" / "llm_base"
                if not (base / "config.json").exists():
                    raise SystemExit(f"{base}: the first variant's base LLM is missing; run it first")
                shared["llm"] = str(base)
            cfg = CycleConfig(out=str(out), env_id=args.env, seed=seed, rounds=args.rounds, progress=False)
            cfg = from_mapping(
                cfg, {"deploy": {"steps": args.deploy_steps}, **VARIANTS[variant], **shared}, f"variant {variant}"
            )
            if extra:
                cfg = from_mapping(cfg, extra, str(args.config))
            configs[variant] = asdict(cfg)
            print(f"[cycle_targets] {args.env} {variant} seed {seed} -> {out}", flush=True)
            res = run_cycle(cfg)
            runs[variant][str(seed)] = res["rounds"]
            walls.setdefault(variant, {})[str(seed)] = round(res["stages_wall_s"] / 60, 1)
    record = {
        "benchmark": "cycle_targets",
        "env_id": args.env,
        "summary": summarise(runs, args.goal),
        "runs": runs,
        "configs": configs,
        "run_stage_minutes": walls,
        "invocation_minutes": (time.perf_counter() - t0) / 60,
        **run_manifest(note="CPU shared with other jobs while measured: wall times are noisy"),
    }
    write_outputs(record, args.tag)


def merge_records(paths: list[Path], goal: float) -> dict[str, Any]:
    """One record from several of this script's result files (same env; a variant's seed may
    appear in one file only, and a variant's settings other than out/seed/llm must agree)."""
    records = []
    for p in paths:
        try:
            rec = json.loads(p.read_text())
        except (OSError, json.JSONDecodeError) as exc:
            raise SystemExit(f"{p}: cannot read a cycle_targets result ({exc})") from None
        if rec.get("benchmark") != "cycle_targets" or "runs" not in rec:
            raise SystemExit(f"{p}: field 'benchmark': expected 'cycle_targets' with 'runs'")
        records.append(rec)
    envs = {rec["env_id"] for rec in records}
    if len(envs) != 1:
        raise SystemExit(f"--merge: expected one env, got {sorted(envs)}")
    free = {"out", "seed", "llm"}
    runs: dict[str, dict[str, Any]] = {}
    configs: dict[str, Any] = {}
    walls: dict[str, dict[str, Any]] = {}
    for p, rec in zip(paths, records):
        for variant, seeds in rec["runs"].items():
            cfg = {k: v for k, v in rec["configs"][variant].items() if k not in free}
            if variant in configs and configs[variant] != cfg:
                diff = sorted(k for k in cfg if configs[variant].get(k) != cfg[k])
                raise SystemExit(f"{p}: variant {variant!r} ran with other settings ({', '.join(diff)})")
            configs[variant] = cfg
            for seed, rows in seeds.items():
                if seed in runs.setdefault(variant, {}):
                    raise SystemExit(f"{p}: variant {variant!r} seed {seed} is already in an earlier file")
                runs[variant][seed] = rows
                walls.setdefault(variant, {})[seed] = rec.get("run_stage_minutes", {}).get(variant, {}).get(seed)
    sources = [name for p, rec in zip(paths, records) for name in rec.get("merged_from", [p.name])]
    return {
        "benchmark": "cycle_targets",
        "env_id": envs.pop(),
        "summary": summarise(runs, goal),
        "runs": runs,
        "configs": configs,
        "run_stage_minutes": walls,
        "merged_from": sources,
        "machine": records[0]["machine"],
    }


def write_outputs(record: dict[str, Any], tag: str) -> None:
    """cycle_targets_<env>[_tag].json, .csv (one row per round) and the plot; prints the summary."""
    runs, summary, env_id = record["runs"], record["summary"], record["env_id"]
    name = env_id.split("-")[0].lower() + (f"_{tag}" if tag else "")
    RESULTS.mkdir(exist_ok=True)
    atomic_write_json(RESULTS / f"cycle_targets_{name}.json", record, indent=1)
    rows = [
        {"variant": v, "label": v, "seed": s, **row}
        for v, seeds in runs.items()
        for s, rs in seeds.items()
        for row in rs
    ]
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with open(RESULTS / f"cycle_targets_{name}.csv", "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)
    from dreamlab.plots import plot_cycle

    for r in rows:  # the no-opsd variant deploys its teacher: plot that as its line
        if r["variant"] == "no-opsd":
            r["label"] = "no-opsd (its teacher deployed)"
            if r["round"] != "base":
                r["llm_real"] = r.pop("teacher_real")  # one line for it, not a second teacher line
    plot_cycle(rows, RESULTS / f"cycle_targets_{name}", title=f"Learning on the job: {env_id}")
    print(json.dumps(summary, indent=1))


if __name__ == "__main__":
    main()
