"""``dreamlab quickstart``: the main job on the embedded default (CartPole-v1, no downloads)."""

from __future__ import annotations

import argparse

from dreamlab.config import add_config_args, run_with_config


def run(args: argparse.Namespace) -> int:
    from dreamlab.pipeline import QuickstartConfig, run_quickstart

    return run_with_config(QuickstartConfig, args, run_quickstart)


def register(sub: argparse._SubParsersAction) -> None:
    from dreamlab.pipeline import QuickstartConfig

    p = sub.add_parser(
        "quickstart",
        help="the main job: logs -> world model -> dream -> evaluate -> LLM -> report",
        description="Collect CartPole logs from a mediocre agent, train a world model, train an "
        "agent only in its dreams, compare dream and real returns, distil it into the base LLM "
        "(SmolLM2-135M-Instruct by default; --llm toy for a small GPT made from the logs) by OPSD "
        "inside the dream, and write OUT/report.md with plots. "
        "Resumes stage by stage when run again on the same --out.",
    )
    add_config_args(p, QuickstartConfig, "quickstart")
    p.add_argument(
        "--llm",
        dest="cfg:llm.model",
        default=None,
        help="the base LLM: smollm2-135m-instruct (default), an LLM folder, or toy (a small GPT made from the logs)",
    )
    p.set_defaults(func=run)
