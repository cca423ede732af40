"""``dreamlab evaluate``: an agent's real return, its return inside its own dream, and the gap."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from dreamlab.config import add_run_args, apply_threads
from dreamlab.core.errors import DreamlabError
from dreamlab.core.imports import check_code_name
from dreamlab.data.pixels import add_obs_argument, with_obs


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "evaluate",
        help="real vs dream return of a dreamer agent",
        description="Run the agent for N episodes in the real env and, from the same real start "
        "states, inside its world model's dream; report mean/std of each and the gap.",
    )
    p.add_argument("--agent", type=Path, required=True, help="agent directory (or a train RUN directory)")
    p.add_argument("--env", default=None, help="gymnasium env id or module:Class (default: the agent's own)")
    add_obs_argument(p, help="observations of --env: state | pixels (default: as the env id says)")
    p.add_argument("--episodes", type=int, default=10, help="episodes (default: 10)")
    p.add_argument("--seed", type=int, default=0, help="first env seed (default: 0)")
    p.add_argument("--json", action="store_true", help="print JSON")
    add_run_args(p, progress=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from dreamlab.imagination.agent import DreamerAgent
    from dreamlab.imagination.evaluate import dream_vs_real

    apply_threads(args.threads)
    if args.env is not None:
        args.env = with_obs(args.env, args.obs)
    path = args.agent
    if not (path / "agent.json").exists() and (path / "agent" / "agent.json").exists():
        path = path / "agent"
    if (path / "grpo_agent.json").exists():
        return _run_policy_dir(args, path)
    if args.episodes < 1:
        raise ValueError(f"--episodes must be >= 1, got {args.episodes}")
    agent = DreamerAgent.load(path)
    env_id = args.env or agent.env_id
    if env_id is None:
        raise ValueError(f"{path / 'agent.json'}: field 'env_id' is empty; pass --env")
    source = f"--env {env_id}" if args.env else f"{path / 'agent.json'}: field 'env_id'"
    if not args.env:
        check_code_name(env_id, source, args.trust_code)
    check_env_spaces(env_id, agent.observation_space, agent.action_space, source, path / "worldmodel.ckpt")
    res = dream_vs_real(agent, env_id, args.episodes, args.seed)
    if args.json:
        print(json.dumps(res, indent=1))
    else:
        print(f"{env_id}, {args.episodes} episodes, agent {path}")
        print(f"  real   return {res['real']['mean']:9.2f} +- {res['real']['std']:.2f}")
        print(f"  dream  return {res['dream']['mean']:9.2f} +- {res['dream']['std']:.2f}")
        print(f"  gap (dream - real) {res['gap']:+.2f}  ({100 * res['gap_relative']:.1f}% of real)")
    return 0


def check_env_spaces(env_id: str, obs_space: Any, action_space: Any, source: str, trained: Path) -> None:
    """Refuse an env whose spaces differ from the ones the agent was trained on (one line, both named)."""
    from dreamlab.data.collect import make_env
    from dreamlab.data.spaces import spaces_equal

    env = make_env(env_id)  # module:Class: imported (PYTHONPATH, then the current directory) and registered
    try:
        for what, mine, theirs in (
            ("observation", obs_space, env.observation_space),
            ("action", action_space, env.action_space),
        ):
            if not spaces_equal(theirs, mine):
                raise SpaceMismatch(
                    f"{source}: the env's {what} space is {theirs}, but the agent ({trained}) was trained on {mine}"
                )
    finally:
        env.close()


class SpaceMismatch(DreamlabError):
    """An agent evaluated in an env with other observation or action spaces."""


def _run_policy_dir(args: argparse.Namespace, path: Path) -> int:
    """A GRPO agent acts on real observations with no world-model filter: real return only."""
    import numpy as np

    from dreamlab.imagination.evaluate import evaluate_real
    from dreamlab.imagination.grpo import ObsActorPolicy
    from dreamlab.imagination.grpo_agent import load_agent

    actor, meta = load_agent(path)
    env_id = args.env or meta.get("env_id")
    source = f"--env {env_id}" if args.env else f"{path / 'grpo_agent.json'}: field 'env_id'"
    if not args.env and isinstance(env_id, str):
        check_code_name(env_id, source, args.trust_code)
    if not env_id or not isinstance(env_id, str):
        raise ValueError(f"{source}: env id {env_id!r} is empty or not a string; pass --env")
    check_env_spaces(env_id, actor.obs_space, actor.action_space, source, path / "grpo_agent.json")
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
