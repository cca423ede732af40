"""The base LLM's zero-shot real return: the starting point of every learning figure (issue 17, item 2).

For one env per invocation (``--env``), the pretrained chat-prompted policy
(``LLMPolicy.from_pretrained(folder, env_id=ENV, action_space=...)``) is evaluated in the real env
with :func:`dreamlab.policy.llm.evaluate` (``gym.make_vec(ENV, num_envs=EPISODES, "sync")``,
``EPISODES`` episodes per seed) for each seed, greedy (temperature 0) and, with
``--temperatures 0 1``, sampled at temperature 1. Beside it, on the same seeds and the same
evaluate function, the uniform random policy over the env's action space and, where the LLM's
action strings are a discretisation (Pendulum), the uniform random choice among those strings.

Seed ``s`` resets the envs with ``EVAL_OFFSET + 1000 * s`` (sub-env ``i`` adds ``i``), so seed 0
is the seed the distillation figures evaluate with (10 000). Each invocation merges its env's entry
into ``--out`` (read-modify-write; other envs' entries stay):

    python -m dreamlab.benchmarks.llm_zero_shot --env CartPole-v1 [--episodes 4] [--seeds 0 1 2]
        [--temperatures 0 1] [--threads 1] [--student smollm2-135m-instruct|DIR]

Note: ``evaluate`` keeps the first ``EPISODES`` episodes to finish across the vector env, as every
learning figure does; with one env per episode that is each env's first episode unless a short one
ends and restarts before a long one ends (then the short kind is over-represented).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dreamlab.core.io import atomic_write_json
from dreamlab.core.machine import run_manifest
from dreamlab.core.protocol import RandomPolicy
from dreamlab.core.seeding import EVAL_OFFSET
from dreamlab.policy.llm import LLMPolicy, evaluate

ENVS = ("CartPole-v1", "Acrobot-v1", "Pendulum-v1")
RESULTS = Path(__file__).resolve().parent / "results"


class RandomStrings:
    """Uniformly random choice among an LLM policy's action strings (its discretised action set)."""

    def __init__(self, policy: LLMPolicy, seed: int):
        self.vocab, self.rng = policy.vocab, np.random.default_rng(seed)

    def reset(self, n: int) -> None:
        pass

    def act(self, obs: np.ndarray, is_first: np.ndarray | None = None) -> np.ndarray:
        return self.vocab.to_env(self.rng.integers(0, self.vocab.size, size=len(obs)))


def env_seed(seed: int) -> int:
    return EVAL_OFFSET + 1000 * int(seed)


def run_seeds(name: str, make: Any, env_id: str, episodes: int, seeds: list[int]) -> dict[str, Any]:
    """Evaluate ``make(seed)`` once per seed; per-seed returns and means, their median and spread."""
    per_seed: list[dict[str, Any]] = []
    for s in seeds:
        t0 = time.perf_counter()
        env = gym.make_vec(env_id, num_envs=episodes, vectorization_mode="sync")
        try:
            returns = [float(r) for r in evaluate(make(s), env, episodes, seed=env_seed(s))]
        finally:
            env.close()
        wall = time.perf_counter() - t0
        per_seed.append(
            {"seed": s, "env_seed": env_seed(s), "returns": returns, "mean": float(np.mean(returns)), "seconds": wall}
        )
        print(
            f"[zero-shot] {env_id} {name} seed {s}: mean {np.mean(returns):.1f} over {len(returns)} episodes "
            f"({', '.join(f'{r:.0f}' for r in returns)}) in {wall:.0f} s",
            file=sys.stderr,
            flush=True,
        )
    means = [p["mean"] for p in per_seed]
    return {
        "per_seed": per_seed,
        "seed_means": means,
        "median": float(np.median(means)),
        "spread": float(max(means) - min(means)),  # max - min of the per-seed means
        "min": float(min(means)),
        "max": float(max(means)),
        "all_episodes_mean": float(np.mean([r for p in per_seed for r in p["returns"]])),
        "seconds": float(sum(p["seconds"] for p in per_seed)),
    }


def measure(args: argparse.Namespace) -> dict[str, Any]:
    from dreamlab.policy.pretrained import resolve_llm

    folder = resolve_llm(args.student)
    space = gym.make(args.env).action_space

    probe = LLMPolicy.from_pretrained(folder, env_id=args.env, action_space=space)  # loaded once

    def llm(temperature: float) -> Any:
        def make(seed: int) -> LLMPolicy:  # the same weights; this seed's sampler and temperature
            probe.temperature, probe.rng = float(temperature), np.random.default_rng(seed)
            return probe

        return make

    entry: dict[str, Any] = {
        "student": str(args.student),
        "folder": str(folder),
        "episodes_per_seed": args.episodes,
        "seeds": args.seeds,
        "env_seeds": [env_seed(s) for s in args.seeds],
        "action_strings": list(probe.vocab.strings),
        "scoring": probe.scoring,
        "precision": probe.precision,
        "policies": {},
    }
    for t in args.temperatures:
        key = "greedy" if t == 0 else f"sampled_t{t:g}"
        entry["policies"][key] = run_seeds(key, llm(t), args.env, args.episodes, args.seeds)
    entry["policies"]["random"] = run_seeds(
        "random", lambda s: RandomPolicy(space, seed=s), args.env, args.episodes, args.seeds
    )
    if not isinstance(space, gym.spaces.Discrete):
        entry["policies"]["random_strings"] = run_seeds(
            "random_strings", lambda s: RandomStrings(probe, s), args.env, args.episodes, args.seeds
        )
    return entry


def summary(envs: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for env_id in ENVS + tuple(sorted(set(envs) - set(ENVS))):
        if env_id not in envs:
            continue
        for key, p in envs[env_id]["policies"].items():
            out[f"{env_id}.{key}.median"] = p["median"]
            out[f"{env_id}.{key}.spread"] = p["spread"]
    return out


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--env", required=True, help=f"one of {', '.join(ENVS)} (or another gymnasium id)")
    ap.add_argument("--student", default="smollm2-135m-instruct", help="known LLM name or LLM folder")
    ap.add_argument("--episodes", type=int, default=4, help="episodes per seed (= parallel envs)")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    ap.add_argument("--temperatures", type=float, nargs="+", default=[0.0], help="0 = greedy; e.g. 0 1")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=RESULTS / "llm_zero_shot.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    entry = measure(args)
    config = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}
    manifest = run_manifest(config, note="shared CPU: other jobs may run at the same time")
    entry["run"] = {**manifest, "wall_s": time.perf_counter() - t0}
    old: dict[str, Any] = {}
    if args.out.exists():
        try:
            old = json.loads(args.out.read_text())
        except (OSError, ValueError):
            old = {}
    envs = dict(old.get("envs") or {})
    envs[args.env] = entry
    res = {
        "benchmark": "llm_zero_shot",
        **manifest,
        "command": "; ".join(e["run"]["command"] for e in envs.values()),  # one invocation per env
        "config": {k: e["run"]["config"] for k, e in envs.items()},
        "summary": summary(envs),
        "envs": envs,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, res, indent=1)
    print(json.dumps({k: v for k, v in res["summary"].items() if k.startswith(args.env)}, indent=1))
    return res


if __name__ == "__main__":
    main()
