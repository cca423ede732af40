"""Dream-vs-real evaluation of an agent.

* **real**: the agent's return in the real env over N episodes (N envs stepped as one batch,
  env i seeded ``seed + i``; each env's first episode counts).
* **dream**: the *same* agent inside its own world model's dream, from the *same* real start
  states: the N real initial observations are filtered into posterior states
  (``obs_step`` with ``is_first``) and a :class:`DreamEnv` (latent observations, no autoreset,
  ``max_steps`` = the real env's time limit) runs from there, the actor acting on the latent
  features. Dream returns use the reward head and the continue head (``cont < 0.5`` ends).
* **gap**: ``dream_mean - real_mean`` and ``|gap| / |real_mean|``.
"""

from __future__ import annotations

from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch

from dreamlab.imagination.dream_env import DreamEnv


def _time_limit(env_id: str, default: int = 1000) -> int:
    spec = gym.spec(env_id)
    return int(spec.max_episode_steps or default)


def _first_episode_returns(policy: Any, envs: Any, obs: np.ndarray, n: int) -> np.ndarray:
    """(n,) returns of each env's first episode, ``policy`` acting from ``obs`` on ``n`` batched envs."""
    policy.reset(n)
    returns = np.zeros(n)
    done = np.zeros(n, bool)
    first = np.ones(n, bool)
    while not done.all():
        action = policy.act(obs, first)
        first = np.zeros(n, bool)
        obs, rew, term, trunc, _ = envs.step(action)
        returns += np.where(done, 0.0, rew)
        done |= term | trunc
    return returns


def evaluate_real(policy: Any, env_id: str, episodes: int = 10, seed: int = 0) -> np.ndarray:
    """Returns (episodes,) of ``policy`` (Policy protocol) in the real env, all envs batched."""
    envs = cast(gym.vector.SyncVectorEnv, gym.make_vec(env_id, num_envs=episodes, vectorization_mode="sync"))
    try:
        obs, _ = envs.reset(seed=[seed + i for i in range(episodes)])
        return _first_episode_returns(policy, envs, obs, episodes)
    finally:
        envs.close()


def _dream_from_real_starts(
    wm: Any, env_id: str, episodes: int, seed: int, max_steps: int | None, obs_mode: str
) -> tuple[DreamEnv, np.ndarray]:
    """A DreamEnv started from the posterior states of the real env's first observations."""
    envs = cast(gym.vector.SyncVectorEnv, gym.make_vec(env_id, num_envs=episodes, vectorization_mode="sync"))
    try:
        obs0, _ = envs.reset(seed=[seed + i for i in range(episodes)])
    finally:
        envs.close()
    dev = next(wm.parameters()).device
    first = torch.ones(episodes, dtype=torch.bool, device=dev)
    start = wm.obs_step(
        wm.initial(episodes),
        torch.zeros(episodes, wm.codec.dim, device=dev),
        torch.as_tensor(np.asarray(obs0, np.float32), device=dev),
        first,
    )
    dream = DreamEnv(
        wm,
        None,
        num_envs=episodes,
        max_steps=max_steps or _time_limit(env_id),
        obs_mode=obs_mode,
        seed=seed,
        autoreset=False,
    )
    obs, _ = dream.reset(options={"states": start})
    return dream, obs


@torch.no_grad()
def evaluate_dream(
    agent: Any, env_id: str, episodes: int = 10, seed: int = 0, max_steps: int | None = None
) -> np.ndarray:
    """Returns (episodes,) of ``agent`` (a DreamerAgent) in its dream, from real start states."""
    wm = agent.wm
    dev = next(wm.parameters()).device
    dream, feat = _dream_from_real_starts(wm, env_id, episodes, seed, max_steps, "latent")
    returns = np.zeros(episodes)
    done = np.zeros(episodes, bool)
    while not done.all():
        vec = agent.act_latent(torch.as_tensor(feat, device=dev))
        feat, rew, term, trunc, _ = dream.step(wm.codec.decode(vec.cpu().numpy()))
        returns += np.where(done, 0.0, rew)
        done |= term | trunc
    return returns


@torch.no_grad()
def evaluate_dream_policy(
    policy: Any, wm: Any, env_id: str, episodes: int = 10, seed: int = 0, max_steps: int | None = None
) -> np.ndarray:
    """Returns (episodes,) of any Policy acting on *decoded* dream observations of ``wm``, from real
    start states (the same starts as :func:`evaluate_real` with the same seed)."""
    dream, obs = _dream_from_real_starts(wm, env_id, episodes, seed, max_steps, "decoded")
    return _first_episode_returns(policy, dream, obs, episodes)


def dream_vs_real(agent: Any, env_id: str, episodes: int = 10, seed: int = 0) -> dict[str, Any]:
    """Real and dream returns of the same agent from the same start states, and their gap."""
    real = evaluate_real(agent, env_id, episodes, seed)
    dream = evaluate_dream(agent, env_id, episodes, seed)
    gap = float(dream.mean() - real.mean())
    return {
        "env_id": env_id,
        "episodes": episodes,
        "seed": seed,
        "real": {"mean": float(real.mean()), "std": float(real.std()), "returns": real.tolist()},
        "dream": {"mean": float(dream.mean()), "std": float(dream.std()), "returns": dream.tolist()},
        "gap": gap,
        "gap_relative": abs(gap) / max(1e-8, abs(float(real.mean()))),
    }
