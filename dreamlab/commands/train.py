"""``dreamlab train``: online Dreamer training in a real env (collect, train WM, dream, act)."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dreamlab.config import add_config_args


def register(subparsers: argparse._SubParsersAction) -> None:
    from imagination.dreamer import DreamerConfig
    from imagination.loops import OnlineConfig

    p = subparsers.add_parser(
        "train", help="online Dreamer training in a real env",
        description="Collect with the current agent, train the world model on the replay, train "
                    "the actor-critic in its dreams, act; repeat. Writes RUN/replay (EpisodeStore), "
                    "RUN/agent (the agent directory), RUN/train_state.pt and RUN/metrics.jsonl; "
                    "running again with the same RUN resumes. YAML --config: flat keys, or "
                    "sections 'dreamer' and 'loop'.")
    p.add_argument("--env", required=True, help="gymnasium env id, e.g. CartPole-v1")
    p.add_argument("--out", type=Path, required=True, help="run directory")
    p.add_argument("--threads", type=int, default=1, help="torch CPU threads (default: 1)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    add_config_args(p, OnlineConfig, "loop")
    add_config_args(p, DreamerConfig, "actor-critic")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import gymnasium as gym
    import torch

    from dreamlab.commands.dream import split_configs
    from imagination.dreamer import DreamerConfig
    from imagination.loops import OnlineConfig, train_online

    torch.set_num_threads(max(1, args.threads))
    try:
        if args.env not in gym.registry:
            raise ValueError(f"--env {args.env!r}: not a registered gymnasium env id")
        loop_cfg, dcfg = split_configs(args, [OnlineConfig, DreamerConfig])
        train_online(args.env, args.out, loop_cfg, dcfg, progress=not args.no_progress)
    except (ValueError, FileNotFoundError) as exc:
        print(f"dreamlab train: error: {exc}", file=sys.stderr)
        return 1
    print(f"agent written to {args.out / 'agent'}")
    return 0
