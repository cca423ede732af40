"""Dreamer targets of the imagination issue, measured (median of seeds, 10 eval episodes each).

Targets:

* ``offline``: CartPole-v1, from 20k steps of noisy-heuristic logs (epsilon
  ``CARTPOLE_MEDIOCRE_EPSILON``) whose best episode returns < 300: a ``small`` world model
  (``worldmodel.train``, at most ``--wm-minutes``), then ``dream_offline`` only in dreams:
  real return >= 450;
* ``online-cartpole``: ``train_online`` on CartPole-v1 for 10k real steps: >= 475 in <= 20 min;
* ``online-pendulum``: ``train_online`` on Pendulum-v1 for 10k real steps: >= -200;
* transfer, for every final agent: ``|dream - real| <= 0.15 * |real|``.

Each finished seed is written to the JSON at once (``--out``; by default
``results/dreamer_targets.json`` for ``offline`` and ``results/dreamer_targets_online.json`` for
the online targets), and a rerun skips seeds already there (``--fresh`` to redo), so a long run
can be interrupted. Online runs also record process CPU time beside wall time (the CPU is
shared), the loop's time by phase, and the greedy evaluation curve (``--online-eval-every``).
Usage::

    python -m benchmarks.dreamer_targets --targets offline --seeds 0 1 2
    nice -n 5 python -m benchmarks.dreamer_targets --targets online-cartpole online-pendulum
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import torch

RESULTS = Path(__file__).resolve().parent / "results"
GOALS = {"offline": 450.0, "online-cartpole": 475.0, "online-pendulum": -200.0}
ENVS = {"offline": "CartPole-v1", "online-cartpole": "CartPole-v1", "online-pendulum": "Pendulum-v1"}


def run_offline(seed: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from data.behaviour import CARTPOLE_MEDIOCRE_EPSILON
    from data.collect import collect
    from data.store import EpisodeStore
    from imagination.agent import load_world_model
    from imagination.dreamer import DreamerConfig
    from imagination.evaluate import dream_vs_real
    from imagination.loops import OfflineConfig, dream_offline
    from worldmodel.config import preset
    from worldmodel.train import train

    logs, wm_dir, agent_dir = work / "logs", work / "wm", work / "agent"
    t0 = time.time()
    if not (logs / "metadata.json").exists():
        collect("CartPole-v1", "heuristic", args.log_steps, num_envs=4, seed=seed, out=logs,
                epsilon=CARTPOLE_MEDIOCRE_EPSILON, progress=False)
    stats = EpisodeStore(logs).stats()
    t1 = time.time()
    wm_path = wm_dir / "world_model.ckpt"
    if not wm_path.exists():
        train(logs, wm_dir, preset("small", seed=seed), max_steps=args.wm_steps, max_minutes=args.wm_minutes,
              progress=False)
    t2 = time.time()
    wm = load_world_model(wm_path)
    dcfg = DreamerConfig(**json.loads(args.dreamer)) if args.dreamer else DreamerConfig()
    dream_offline(wm, logs, agent_dir, OfflineConfig(steps=args.dream_steps, seed=seed), dcfg, wm_path=wm_path,
                  progress=False)
    t3 = time.time()
    from imagination.agent import DreamerAgent

    res = dream_vs_real(DreamerAgent.load(agent_dir), "CartPole-v1", args.episodes, seed=10_000 + seed)
    return {"logs": {"steps": int(stats.steps), "episodes": int(stats.episodes),
                     "best_return": float(stats.returns.max()), "mean_return": float(stats.returns.mean())},
            "minutes": {"collect": (t1 - t0) / 60, "world_model": (t2 - t1) / 60, "dream": (t3 - t2) / 60},
            "dreamer_config": asdict(dcfg), "dream_steps": args.dream_steps, **res}


def run_online(target: str, seed: int, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    from imagination.dreamer import DreamerConfig
    from imagination.evaluate import dream_vs_real
    from imagination.loops import OnlineConfig, train_online

    env_id = ENVS[target]
    dcfg = DreamerConfig(**json.loads(args.dreamer)) if args.dreamer else DreamerConfig()
    loop = json.loads(args.online) if args.online else {}
    ocfg = OnlineConfig(**{"steps": args.online_steps, "seed": seed, "eval_every": args.online_eval_every,
                           "eval_episodes": args.episodes, **loop})
    t0, c0 = time.time(), time.process_time()
    agent = train_online(env_id, work / "run", ocfg, dcfg, progress=False)
    minutes, cpu_minutes = (time.time() - t0) / 60, (time.process_time() - c0) / 60
    res = dream_vs_real(agent, env_id, args.episodes, seed=10_000 + seed)
    rows = [json.loads(line) for line in (work / "run" / "metrics.jsonl").read_text().splitlines() if line]
    curve = [{"env_steps": r["env_steps"], "eval_mean": r["eval_mean"], "minutes": r["minutes"]}
             for r in rows if "eval_mean" in r]
    final = [r for r in rows if r.get("final")]
    reached = [c["env_steps"] for c in curve if c["eval_mean"] >= GOALS[target]]
    return {"minutes": {"train": minutes, "train_cpu": cpu_minutes}, "env_steps": args.online_steps,
            "phases_s": {k: v for k, v in final[-1].items() if k.endswith("_s")} if final else {},
            "eval_curve": curve, "first_eval_at_goal": reached[0] if reached else None,
            "online_config": asdict(ocfg), "dreamer_config": asdict(dcfg), **res}


def summarise(runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    out = {}
    for target, seeds in runs.items():
        if not seeds:
            continue
        real = [s["real"]["mean"] for s in seeds.values()]
        gaps = [s["gap_relative"] for s in seeds.values()]
        row = {"seeds": sorted(seeds), "real_median": float(np.median(real)), "real_min": float(np.min(real)),
               "real_max": float(np.max(real)), "dream_median": float(np.median([s["dream"]["mean"] for s in seeds.values()])),
               "gap_relative_median": float(np.median(gaps)), "gap_relative_max": float(np.max(gaps)),
               "goal": GOALS[target], "met": bool(np.median(real) >= GOALS[target]),
               "transfer_met": bool(max(gaps) <= 0.15)}
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
    ap.add_argument("--online-eval-every", type=int, default=1000, help="env steps between greedy evaluations "
                    "(--episodes episodes) during online training; 0 = none")
    ap.add_argument("--dreamer", default="", help="JSON of DreamerConfig overrides")
    ap.add_argument("--online", default="", help="JSON of OnlineConfig overrides")
    ap.add_argument("--work", type=Path, default=Path("/tmp/dreamer_targets"))
    ap.add_argument("--out", type=Path, default=None,
                    help="results JSON (default: results/dreamer_targets.json with 'offline' among the "
                         "targets, else results/dreamer_targets_online.json)")
    ap.add_argument("--fresh", action="store_true", help="ignore finished seeds in --out and their work dirs")
    ap.add_argument("--merge", nargs="+", type=Path, default=[],
                    help="only merge the runs of these result JSONs (e.g. seeds run as parallel processes, "
                         "each with its own --out) into --out and summarise; trains nothing")
    args = ap.parse_args(argv)
    if args.out is None:
        args.out = RESULTS / ("dreamer_targets.json" if "offline" in args.targets else "dreamer_targets_online.json")
    torch.set_num_threads(1)
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
            row = run_offline(seed, work, args) if target == "offline" else run_online(target, seed, work, args)
            row["wall_minutes"] = (time.time() - t) / 60
            runs.setdefault(target, {})[str(seed)] = row
            print(f"{target} seed {seed}: real {row['real']['mean']:.1f} +- {row['real']['std']:.1f}, "
                  f"dream {row['dream']['mean']:.1f}, gap {100 * row['gap_relative']:.1f}%", flush=True)
            _write(args.out, runs)
    result = _write(args.out, runs)
    print(json.dumps(result["summary"], indent=1))
    return result


def _write(path: Path, runs: dict[str, dict[str, Any]]) -> dict[str, Any]:
    result = {"benchmark": "dreamer_targets", "summary": summarise(runs), "runs": runs,
              "machine": {"platform": platform.platform(), "cpu_count": os.cpu_count(),
                          "torch_threads": torch.get_num_threads(), "torch": torch.__version__,
                          "loadavg_at_write": list(os.getloadavg())},
              "note": "the 2-core CPU is shared with other jobs while this runs: wall times are inflated; "
                      "minutes.train_cpu is this process's CPU time"}
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    os.replace(tmp, path)
    return result


if __name__ == "__main__":
    main()
