"""``dreamlab cycle``: learning on the job, round after round (see :mod:`dreamlab.cycle`)."""

from __future__ import annotations

import argparse

from dreamlab.config import add_config_args, run_with_config


def run(args: argparse.Namespace) -> int:
    from dreamlab.cycle import CycleConfig, run_cycle

    def job(cfg: CycleConfig) -> None:
        from dreamlab.data.collect import register_env

        register_env(cfg.env_id)  # module:Class: imported (PYTHONPATH, then the current dir) for gym.make
        print(f"report: {run_cycle(cfg)['report']}")

    return run_with_config(CycleConfig, args, job)


def register(sub: argparse._SubParsersAction) -> None:
    from dreamlab.cycle import CycleConfig

    p = sub.add_parser(
        "cycle",
        help="learning on the job: deploy the LLM, log, dream, distil; N rounds",
        description="Round 0 deploys a base LLM (made with make-base-llm from prior logs, or "
        "--llm DIR). Each round: deploy the LLM in the real env and log with feedback; "
        "continue training the world model on all logs; practise in the dream "
        "(Dreamer or GRPO); distil into the LLM by OPSD inside the dream; evaluate real "
        "and dream returns. Writes RUN/cycle.csv, RUN/report.md and RUN/plots/cycle.png. "
        "Every stage is checkpointed: rerun with the same --out to resume.",
    )
    p.add_argument(
        "--env", dest="cfg:env_id", default=None, help="alias of --env-id (a gymnasium env id or module:Class)"
    )
    add_config_args(p, CycleConfig, "cycle")
    p.set_defaults(func=run)
