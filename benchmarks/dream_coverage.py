"""Why a GRPO target fails in the dream: does the world model ever dream the goal?

For a task of :mod:`benchmarks.grpo_targets` (same logs, same world model, cached under
``--work``), run the env's clean heuristic (the logs' behaviour without its noise) in the real env
and in ``--envs`` dreams for the task's horizon, and report side by side:

* the verifier's success rate (real vs. dream);
* per observation dimension, quantiles of each episode's maximum and minimum (how far the
  heuristic gets, e.g. MountainCar's position against the goal at 0.45);
* the fraction of logged states that already pass the verifier (how often the world model was
  shown the goal region at all).

    python -m dreamlab.benchmarks.dream_coverage --task mcc --seeds 0 --work /tmp/dreamlab-grpo-bench

Writes ``benchmarks/results/dream_coverage_<task>.json``.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dreamlab.benchmarks.grpo_targets import TASKS, logs_for, world_model_for
from dreamlab.core.io import atomic_write_json
from dreamlab.core.machine import run_manifest
from dreamlab.data.behaviour import make_behaviour
from dreamlab.imagination.grpo import dream_env_factory
from dreamlab.imagination.verifiers import get_verifier

RESULTS = Path(__file__).parent / "results"
QUANTILES = (0.0, 0.25, 0.5, 0.75, 1.0)


def _extremes(traj: np.ndarray) -> dict[str, list[list[float]]]:
    """traj (T, n, d) -> per dimension, quantiles over episodes of the episode max / min."""
    q = np.asarray(QUANTILES)
    return {
        "max": np.quantile(traj.max(0), q, axis=0).T.round(4).tolist(),
        "min": np.quantile(traj.min(0), q, axis=0).T.round(4).tolist(),
    }


def real_heuristic(env_id: str, n: int, horizon: int, seed: int) -> dict[str, Any]:
    env = gym.make_vec(env_id, num_envs=n, vectorization_mode="sync")
    heur = make_behaviour(env_id, env.single_action_space, 0.0, seed=seed)
    verifier = get_verifier(env_id)
    obs, _ = env.reset(seed=seed)
    alive, hit, traj = np.ones(n, bool), np.zeros(n, bool), [obs.copy()]
    for _ in range(horizon):
        obs, _, term, trunc, _ = env.step(heur.act(obs))
        # next-step autoreset (gymnasium 1.x): the step that ends an episode returns its last obs
        hit |= alive & ((np.asarray(verifier(obs)) > 0.5) | term)
        traj.append(np.where(alive[:, None], obs, traj[-1]))
        alive &= ~(term | trunc)
        if not alive.any():
            break
    env.close()
    return {"success_rate": float(hit.mean()), "obs_extremes": _extremes(np.stack(traj))}


def dream_heuristic(task: dict[str, Any], store: Any, wm: Any, n: int, horizon: int, seed: int) -> dict[str, Any]:
    verifier = get_verifier(task["env_id"])
    env = dream_env_factory(wm, store.episodes(), verifier, horizon, seed=seed)(n)
    heur = make_behaviour(task["env_id"], store.action_space, 0.0, seed=seed)
    obs, _ = env.reset(seed=seed + 1)
    obs = np.asarray(obs)
    alive, hit, ended, traj = np.ones(n, bool), np.zeros(n, bool), np.zeros(n, bool), [obs]
    for _ in range(horizon):
        obs, _, term, trunc, _ = env.step(heur.act(obs))
        obs, term, trunc = np.asarray(obs), np.asarray(term), np.asarray(trunc)
        hit |= alive & (np.asarray(verifier(obs)) > 0.5)
        ended |= alive & term
        traj.append(np.where(alive[:, None], obs, traj[-1]))
        alive &= ~(term | trunc)
        if not alive.any():
            break
    return {
        "success_rate": float(hit.mean()),
        "ended_by_model_before_horizon": float(ended.mean()),
        "obs_extremes": _extremes(np.stack(traj)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--task", choices=sorted(TASKS), default="mcc")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0])
    ap.add_argument("--work", default="/tmp/dreamlab-grpo-bench", help="grpo_targets' cache of logs and world models")
    ap.add_argument("--envs", type=int, default=64)
    args = ap.parse_args(argv)
    torch.set_num_threads(1)
    task = TASKS[args.task]
    horizon = task["grpo"]["horizon"]
    verifier = get_verifier(task["env_id"])
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = {
        "benchmark": "dream_coverage",
        "task": args.task,
        "env_id": task["env_id"],
        "horizon": horizon,
        "envs": args.envs,
        "quantiles": list(QUANTILES),
        "seeds": {},
    }
    t0 = time.time()
    for seed in args.seeds:
        store = logs_for(task, seed, work)
        wm, info = world_model_for(task, store, seed, work)
        obs = np.concatenate([e.obs for e in store.episodes()])
        out["seeds"][str(seed)] = {
            "logs": {
                "states": int(len(obs)),
                "pass_verifier_fraction": float(np.mean(np.asarray(verifier(obs)) > 0.5)),
                "obs_quantiles_0_1_50_99_100": np.quantile(obs, [0, 0.01, 0.5, 0.99, 1], axis=0).T.round(4).tolist(),
            },
            "world_model_steps": info.get("steps"),
            "real": real_heuristic(task["env_id"], args.envs, horizon, seed),
            "dream": dream_heuristic(task, store, wm, args.envs, horizon, seed),
        }
        s = out["seeds"][str(seed)]
        print(
            f"[dream_coverage] {task['env_id']} seed {seed}: heuristic success real {s['real']['success_rate']:.2f}"
            f" dream {s['dream']['success_rate']:.2f}; logged states passing the verifier "
            f"{s['logs']['pass_verifier_fraction']:.5f}",
            flush=True,
        )
    out["wall_seconds"] = time.time() - t0
    out.update(run_manifest(note="CPU shared with other jobs while measured: timings are noisy"))
    path = RESULTS / f"dream_coverage_{args.task}.json"
    atomic_write_json(path, out, indent=1)
    print(f"wrote {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
