"""``dreamlab quickstart``: the main job on the embedded default (CartPole-v1, no downloads)."""

from __future__ import annotations

import argparse

from dreamlab.config import add_config_args, config_from_args


def run(args: argparse.Namespace) -> int:
    import torch

    from dreamlab.pipeline import QuickstartConfig, run_quickstart

    cfg = config_from_args(QuickstartConfig, args)
    if cfg.threads > 0:
        torch.set_num_threads(cfg.threads)
    try:
        run_quickstart(cfg)
    except ValueError as exc:
        print(f"dreamlab quickstart: error: {exc}")
        return 1
    return 0


def register(sub: argparse._SubParsersAction) -> None:
    from dreamlab.pipeline import QuickstartConfig

    p = sub.add_parser("quickstart", help="the main job: logs -> world model -> dream -> evaluate -> LLM -> report",
                       description="Collect CartPole logs from a mediocre agent, train a world model, train an "
                                   "agent only in its dreams, compare dream and real returns, distil into a small "
                                   "base LLM by OPSD inside the dream, and write OUT/report.md with plots. "
                                   "Resumes stage by stage when run again on the same --out.")
    add_config_args(p, QuickstartConfig, "quickstart")
    p.set_defaults(func=run)
