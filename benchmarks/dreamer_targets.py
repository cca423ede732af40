"""Dreamer targets of the imagination issue, measured (median of seeds, 10 eval episodes each).

Targets:

* ``offline``: CartPole-v1, from 20k steps of noisy-heuristic logs (epsilon
  ``CARTPOLE_MEDIOCRE_EPSILON``) whose best episode returns < 300: a ``small`` world model
  (``worldmodel.train``, at most ``--wm-minutes``), then ``dream_offline`` only in dreams:
  real return >= 450;
* ``online-cartpole``: ``train_online`` on CartPole-v1 for 10k real steps: >= 475 in <= 20 min;
* ``online-pendulum``: ``train_online`` on Pendulum-v1 for 10k real steps: >= -200;
* transfer, for every final agent: ``|dream - real| <= 0.15 * |real|``.

Every seed is a :class:`dreamlab.stages.Run` in ``--work`` (manifest and stage markers: an
interrupted seed resumes at its stage), and each finished seed is written to the JSON at once (``--out``; by default
``results/dreamer_targets.json`` for ``offline`` and ``results/dreamer_targets_online.json`` for
the online targets), and a rerun skips seeds already there (``--fresh`` to redo), so a long run
can be interrupted. Online runs also record process CPU time beside wall time (the CPU is
shared), the loop's time by phase, and the greedy evaluation curve (``--online-eval-every``).
Usage::

    python -m dreamlab.benchmarks.dreamer_targets --targets offline --seeds 0 1 2
    nice -n 5 python -m dreamlab.benchmarks.dreamer_targets --targets online-cartpole online-pendulum
"""

from __future__ import annotations

import argparse
import json
import shutil
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamlab.config import from_mapping, load_yaml
from dreamlab.core.io import atomic_write_json
from dreamlab.core.machine import git_commit, run_manifest
from dreamlab.imagination.dreamer import DreamerConfig
from dreamlab.imagination.loops import OnlineConfig
from dreamlab.stages import Run, collect_logs, dream_agent, evaluate_agent, train_online_agent, train_world_model

RESULTS = Path(__file__).resolve().parent / "results"
GOALS = {"offline": 450.0, "online-cartpole": 475.0, "online-pendulum": -200.0}
ENVS = {"offline": "CartPole-v1", "online-cartpole": "CartPole-v1", "online-pendulum": "Pendulum-v1"}


@dataclass
class TargetSettings:
    """``--config FILE.yaml`` of this script: overrides of the actor-critic and of the online loop."""

    dreamer: DreamerConfig = field(default_factory=DreamerConfig)
    online: OnlineConfig = field(default_factory=OnlineConfig)


def run_offline(seed: int, work: Path, args: argparse.Namespace, settings: TargetSettings) -> dict[str, Any]:
    from dreamlab.data.behaviour import CARTPOLE_MEDIOCRE_EPSILON
    from dreamlab.worldmodel.config import preset

    run = Run(
        work,
        {
            "target": "offline",
            "seed": seed,
            "args": {k: str(v) for k, v in vars(args).items()},
            "settings": asdict(settings),
        },
    )
    logs, wm_dir, agent_dir = work / "logs", work / "wm", work / "agent"
    stats = run.stage(
        "collect",
        lambda: collect_logs(
            "CartPole-v1",
            "heuristic",
            args.log_steps,
            logs,
            num_envs=4,
            seed=seed,
            epsilon=CARTPOLE_MEDIOCRE_EPSILON,
            progress=False,
        ),
    )
    wm_path = Path(
        run.stage(
            "worldmodel",
            lambda: train_world_model(
                logs, wm_dir, preset("small", seed=seed), args.wm_steps, args.wm_minutes, progress=False
            ),
        )["checkpoint"]
    )
    run.stage(
        "dream",
        lambda: dream_agent(
            wm_path, logs, agent_dir, args.dream_steps, seed=seed, dreamer=settings.dreamer, progress=False
        ),
    )
    res = run.stage("evaluate", lambda: evaluate_agent(agent_dir, "CartPole-v1", args.episodes, seed=10_000 + seed))
    minutes = {k: v / 60 for k, v in run.seconds(("collect", "worldmodel", "dream")).items()}
    return {
        "logs": {
            "steps": int(stats["steps"]),
            "episodes": int(stats["episodes"]),
            "best_return": float(stats["return_max"]),
            "mean_return": float(stats["return_mean"]),
        },
        "minutes": {"collect": minutes["collect"], "world_model": minutes["worldmodel"], "dream": minutes["dream"]},
        "dreamer_config": asdict(settings.dreamer),
        "dream_steps": args.dream_steps,
        "commit": git_commit(),
        **{k: v for k, v in res.items() if k != "wall_s"},
    }


def run_online(
    target: str, seed: int, work: Path, args: argparse.Namespace, settings: TargetSettings
) -> dict[str, Any]:
    env_id = ENVS[target]
    ocfg = replace(
        settings.online,
        steps=args.online_steps,
        seed=seed,
        eval_every=args.online_eval_every,
        eval_episodes=args.episodes,
    )
    run = Run(work, {"target": target, "seed": seed, "online": asdict(ocfg), "dreamer": asdict(settings.dreamer)})
    c0 = time.process_time()
    run.stage(
        "train",
        lambda: {
            **train_online_agent(env_id, work / "run", ocfg, settings.dreamer, progress=False),
            "cpu_minutes": (time.process_time() - c0) / 60,
        },
    )
    res = run.stage(
        "evaluate", lambda: evaluate_agent(work / "run" / "agent", env_id, args.episodes, seed=10_000 + seed)
    )
    train = run.done("train") or {}
    rows = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines() if line]
    curve = [
        {"env_steps": r["env_steps"], "eval_mean": r["eval_mean"], "minutes": r["minutes"]}
        for r in rows
        if "eval_mean" in r
    ]
    final = [r for r in rows if r.get("final")]
    reached = [c["env_steps"] for c in curve if c["eval_mean"] >= GOALS[target]]
    return {
        "minutes": {"train": float(train.get("wall_s", 0.0)) / 60, "train_cpu": train.get("cpu_minutes")},
        "env_steps": args.online_steps,
        "phases_s": {k: v for k, v in final[-1].items() if k.endswith("_s")} if final else {},
        "eval_curve": curve,
        "first_eval_at_goal": reached[0] if reached else None,
        "online_config": asdict(ocfg),
        "dreamer_config": asdict(settings.dreamer),
        "commit": git_commit(),
        **{k: v for k, v in res.items() if k != "wall_s"},
    }


def summarise(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for target, seeds in runs.items():
        if not seeds:
            continue
        real = [s["real"]["mean"] for s in seeds.values()]
        gaps = [s["gap_relative"] for s in seeds.values()]
        row = {
            "seeds": sorted(seeds),
            "real_median": float(np.median(real)),
            "real_min": float(np.min(real)),
            "real_max": float(np.max(real)),
            "dream_median": float(np.median([s["dream"]["mean"] for s in seeds.values()])),
            "gap_relative_median": float(np.median(gaps)),
            "gap_relative_max": float(np.max(gaps)),
            "goal": GOALS[target],
            "met": bool(np.median(real) >= GOALS[target]),
            "transfer_met": bool(max(gaps) <= 0.15),
        }
        if target == "online-cartpole":
            mins = [s["minutes"]["train"] for s in seeds.values()]
            row["train_minutes_median"] = float(np.median(mins))
            cpu = [s["minutes"].get("train_cpu") for s in seeds.values() if "train_cpu" in s["minutes"]]
            if cpu:
                row["train_cpu_minutes_median"] = float(np.median(cpu))
            row["met"] = row["met"] and float(np.median(mins)) <= 20.0
        out[target] = row
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description="Dreamer targets (offline/online CartPole, online Pendulum)")
    ap.add_argument("--targets", nargs="+", default=["offline"], choices=sorted(GOALS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--episodes", type=int, default=10)
    ap.add_argument("--log-steps", type=int, default=20_000)
    ap.add_argument("--wm-steps", type=int, default=3000)
    ap.add_argument("--wm-minutes", type=float, default=10.0)
    ap.add_argument("--dream-steps", type=int, default=300)
    ap.add_argument("--online-steps", type=int, default=10_000)
    ap.add_argument(
        "--online-eval-every",
        type=int,
        default=1000,
        help="env steps between greedy evaluations (--episodes episodes) during online training; 0 = none",
    )
    ap.add_argument(
        "--config",
        type=Path,
        default=None,
        help="YAML with sections 'dreamer' (actor-critic) and 'online' (online loop) overrides",
    )
    ap.add_argument("--work", type=Path, default=Path("/tmp/dreamer_targets"))
    ap.add_argument(
        "--out",
        type=Path,
        default=None,
        help="results JSON (default: results/dreamer_targets.json with 'offline' among the "
        "targets, else results/dreamer_targets_online.json)",
    )
    ap.add_argument("--fresh", action="store_true", help="ignore finished seeds in --out and their work dirs")
    ap.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=[],
        help="only merge the runs of these result JSONs (e.g. seeds run as parallel processes, "
        "each with its own --out) into --out and summarise; trains nothing",
    )
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = RESULTS / ("dreamer_targets.json" if "offline" in args.targets else "dreamer_targets_online.json")
    torch.set_num_threads(1)
    settings = (
        from_mapping(TargetSettings(), load_yaml(args.config), str(args.config)) if args.config else TargetSettings()
    )
    prev = json.loads(args.out.read_text()) if args.out.exists() and not args.fresh else {}
    runs: dict[str, dict[str, Any]] = prev.get("runs", {})
    if args.merge:
        for path in args.merge:
            for target, seeds in json.loads(path.read_text()).get("runs", {}).items():
                runs.setdefault(target, {}).update(seeds)
        result = _write(args.out, runs)
        print(json.dumps(result["summary"], indent=1))
        return result
    for target in args.targets:
        for seed in args.seeds:
            if str(seed) in runs.get(target, {}):
                continue
            work = args.work / target / f"seed{seed}"
            if args.fresh and work.exists():
                shutil.rmtree(work)
            work.mkdir(parents=True, exist_ok=True)
            t = time.time()
            row = (
                run_offline(seed, work, args, settings)
                if target == "offline"
                else run_online(target, seed, work, args, settings)
            )
            row["wall_minutes"] = (time.time() - t) / 60
            runs.setdefault(target, {})[str(seed)] = row
            print(
                f"{target} seed {seed}: real {row['real']['mean']:.1f} +- {row['real']['std']:.1f}, "
                f"dream {row['dream']['mean']:.1f}, gap {100 * row['gap_relative']:.1f}%",
                flush=True,
            )
            _write(args.out, runs)
    result = _write(args.out, runs)
    print(json.dumps(result["summary"], indent=1))
    return result


def _write(path: Path, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    result = {
        "benchmark": "dreamer_targets",
        "summary": summarise(runs),
        "runs": runs,
        **run_manifest(),
        "note": "the 2-core CPU is shared with other jobs while this runs: wall times are inflated; "
        "minutes.train_cpu is this process's CPU time",
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(path, result)
    return result


if __name__ == "__main__":
    main()
