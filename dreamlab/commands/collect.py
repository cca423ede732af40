"""``dreamlab collect``: run a policy in a gymnasium env and store the episodes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dreamlab.config import add_config_args, add_run_args, apply_threads, config_from_args
from dreamlab.core.io import check_output_dir


def register(subparsers: argparse._SubParsersAction) -> None:
    from dreamlab.data.collect import CollectConfig
    from dreamlab.data.pixels import add_obs_argument

    p = subparsers.add_parser(
        "collect",
        help="collect episodes from a gymnasium env into an episode store",
        description="Step NUM_ENVS copies of ENV with a policy until at least STEPS transitions of "
        "finished episodes are stored in OUT (episodes still in flight at the end are "
        "dropped). A second run into OUT appends (and says so on stderr).",
    )
    p.add_argument("--env", required=True, help="gymnasium id (CartPole-v1, MinAtar/Breakout-v1) or module:Class")
    add_obs_argument(p)
    p.add_argument(
        "--policy",
        default="random",
        help="random | heuristic | module:attr (a Policy or a factory called with the env) | PATH",
    )
    p.add_argument("--out", required=True, type=Path, help="episode store directory (created or appended to)")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_run_args(p)
    add_config_args(p, CollectConfig, "collection")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dreamlab.data.collect import CollectConfig, collect
    from dreamlab.data.pixels import with_obs
    from dreamlab.imagination.registry import POLICY_LOADERS  # --policy AGENT_DIR (Dreamer or GRPO)

    apply_threads(args.threads)
    cfg = config_from_args(CollectConfig, args)
    check_output_dir(args.out)
    summary = collect(
        with_obs(args.env, args.obs),
        args.policy,
        steps=cfg.steps,
        num_envs=cfg.num_envs,
        seed=cfg.seed,
        out=args.out,
        epsilon=cfg.epsilon,
        max_episode_steps=cfg.max_episode_steps,
        progress=args.progress,
        writer=cfg.writer,
        loaders=POLICY_LOADERS,
    )
    d = summary.to_dict()
    if args.json:
        print(json.dumps(d, indent=1))
    else:
        mean = d["return_mean"]
        print(
            f"stored {summary.steps_stored} steps in {summary.episodes_stored} episodes to {summary.out} "
            f"(return mean {mean:.2f}; {summary.steps_taken} env steps at {summary.steps_per_second:.0f}/s, "
            f"{summary.steps_dropped} in unfinished episodes dropped); the store now holds "
            f"{summary.store_steps_total} steps"
            if mean is not None
            else f"stored 0 steps to {summary.out}"
        )
    return 0
