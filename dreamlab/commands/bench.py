"""``dreamlab bench``: the benchmark suites (see :mod:`dreamlab.bench` for suites and budgets)."""

from __future__ import annotations

import argparse
from pathlib import Path

from dreamlab.config import add_config_args, run_with_config


def run(args: argparse.Namespace) -> int:
    from dreamlab.bench import BenchConfig, run_bench

    def job(cfg: BenchConfig) -> None:
        print(Path(run_bench(cfg)["summary"]).read_text())

    return run_with_config(BenchConfig, args, job)


def register(sub: argparse._SubParsersAction) -> None:
    from dreamlab.bench import BenchConfig

    p = sub.add_parser(
        "bench",
        help="benchmark suites: dreamlab offline and online beside SB3 baselines per env and seed, with a summary",
        description="Run the pipeline per env (quick: CartPole-v1, Pendulum-v1; classic: also "
        "Acrobot-v1, MountainCarContinuous-v0; LunarLander-v3 when named in --envs), "
        "offline (noisy-heuristic logs -> world model -> dream) and online, for --seeds "
        "seeds, and beside them SB3 baselines at the same real steps (sb3-ppo: PPO; sb3-dqn-sac: "
        "DQN for discrete actions, SAC for Box; RL Zoo hyperparameters; --modes offline,online "
        "leaves them out). Writes OUT/<env>/<mode>/seed<k>/result.json per run (SB3: "
        "OUT/<env>/<mode>-<steps>/seed<k>/), OUT/results.csv and OUT/summary.md (with a "
        "head-to-head line per env and cited RL Zoo reference rows). A rerun skips finished runs. "
        "Budget flags left unset take the suite's values.",
    )
    add_config_args(p, BenchConfig, "bench")
    p.set_defaults(func=run)
