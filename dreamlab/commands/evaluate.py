"""``dreamlab evaluate``: an agent's real return, its return inside its own dream, and the gap."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dreamlab.config import add_run_args, apply_threads


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="real vs dream return of a dreamer agent",
        description="Run the agent for N episodes in the real env and, from the same real start "
        "states, inside its world model's dream; report mean/std of each and the gap.",
    )
    p.add_argument("--agent", type=Path, required=True, help="agent directory (or a train RUN directory)")
    p.add_argument("--env", default=None, help="gymnasium env id (default: the agent's own)")
    p.add_argument("--episodes", type=int, default=10, help="episodes (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="first env seed (default: 0)")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_run_args(p, progress=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from dreamlab.imagination.agent import DreamerAgent
    from dreamlab.imagination.evaluate import dream_vs_real

    apply_threads(args.threads)
    path = args.agent
    if not (path / "agent.json").exists() and (path / "agent" / "agent.json").exists():
        path = path / "agent"
    if (path / "grpo_agent.json").exists():
        return _run_policy_dir(args, path)
    agent = DreamerAgent.load(path)
    env_id = args.env or agent.env_id
    if env_id is None:
        raise ValueError(f"{path / 'agent.json'}: field 'env_id' is empty; pass --env")
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    res = dream_vs_real(agent, env_id, args.episodes, args.seed)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"{env_id}, {args.episodes} episodes, agent {path}")
        print(f"  real   return {res['real']['mean']:9.2f} +- {res['real']['std']:.2f}")
        print(f"  dream  return {res['dream']['mean']:9.2f} +- {res['dream']['std']:.2f}")
        print(f"  gap (dream - real) {res['gap']:+.2f}  ({100 * res['gap_relative']:.1f}% of real)")
    return 0


def _run_policy_dir(args: argparse.Namespace, path: Path) -> int:
    """A GRPO agent acts on real observations with no world-model filter: real return only."""
    import gymnasium as gym
    import numpy as np

    from dreamlab.imagination.evaluate import evaluate_real
    from dreamlab.imagination.grpo import ObsActorPolicy
    from dreamlab.imagination.grpo_agent import load_agent

    actor, meta = load_agent(path)
    env_id = args.env or meta.get("env_id")
    if not env_id or env_id not in gym.registry:
        raise ValueError(f"{path / 'grpo_agent.json'}: env id {env_id!r} is not a gymnasium id; pass --env")
    real = evaluate_real(ObsActorPolicy(actor, greedy=True), env_id, args.episodes, args.seed)
    res = {
        "env_id": env_id,
        "episodes": args.episodes,
        "seed": args.seed,
        "agent": "grpo",
        "real": {"mean": float(np.mean(real)), "std": float(np.std(real)), "returns": real.tolist()},
        "dream": None,
        "note": "a GRPO agent has no world-model filter of its own; use benchmarks/grpo_targets.py for dream success",
    }
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"{env_id}, {args.episodes} episodes, GRPO agent {path}")
        print(f"  real   return {res['real']['mean']:9.2f} +- {res['real']['std']:.2f}")
    return 0
