"""``dreamlab train``: online Dreamer training in a real env (collect, train WM, dream, act).

``--precision``, ``--accelerator``, ``--strategy`` and ``--devices`` mean what they mean in every
dreamlab command (Lightning's words); under ``--strategy ddp --devices N`` each process steps its
own env and the gradients of the world model, actor and critic are averaged.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path

from dreamlab.config import add_config_args, add_run_args, apply_threads, config_from_args
from dreamlab.core.io import check_output_dir
from dreamlab.data.pixels import add_obs_argument, with_obs
from dreamlab.imagination.dreamer import DreamerConfig
from dreamlab.imagination.loops import OnlineConfig


@dataclass
class TrainJob(OnlineConfig):
    """``dreamlab train``: the online loop (top level) and the actor-critic (``dreamer`` section)."""

    dreamer: DreamerConfig = field(default_factory=DreamerConfig)


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train",
        help="online Dreamer training in a real env",
        description="Collect with the current agent, train the world model on the replay, train "
        "the actor-critic in its dreams, act; repeat. Writes RUN/replay (EpisodeStore), "
        "RUN/agent (the agent directory), RUN/train_state.pt and RUN/metrics.jsonl; "
        "running again with the same RUN resumes.",
    )
    p.add_argument("--env", required=True, help="gymnasium env id (CartPole-v1) or your own module:Class")
    add_obs_argument(p)
    p.add_argument("--out", type=Path, required=True, help="run directory")
    add_run_args(p)
    add_config_args(p, TrainJob, "train")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dreamlab.commands.dream import base_part
    from dreamlab.data.collect import make_env
    from dreamlab.imagination.loops import train_online

    apply_threads(args.threads)
    args.env = with_obs(args.env, args.obs)
    make_env(args.env).close()  # a gymnasium id or module:Class (registered for gym.make); EnvSpecError names it
    job = config_from_args(TrainJob, args)
    check_output_dir(args.out)
    from dreamlab.policy.scale import fabric_for

    fabric = fabric_for(job)  # strategy ddp: starts the other ranks here (each runs this command)
    train_online(args.env, args.out, base_part(job, OnlineConfig), job.dreamer, progress=args.progress, fabric=fabric)
    if fabric.global_rank == 0:
        print(f"agent written to {args.out / 'agent'}")
    return 0
