"""Small EpisodeStores for the world-model tests, made with a plain gymnasium loop."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from dreamlab.data.behaviour import make_behaviour
from dreamlab.data.episodes import Episode
from dreamlab.data.store import EpisodeStore


def make_store(
    root: Path,
    env_id: str = "CartPole-v1",
    steps: int = 2000,
    epsilon: float = 0.5,
    seed: int = 0,
    feedback: Callable[[np.ndarray], np.ndarray] | None = None,
    max_len: int | None = None,
) -> EpisodeStore:
    """Collect about ``steps`` transitions with the noisy heuristic; ``feedback(obs (T, *obs)) -> (T,)``
    sets each episode's feedback field from its observations."""
    env = gym.make(env_id, max_episode_steps=max_len) if max_len else gym.make(env_id)
    store = EpisodeStore.create(root, env_id, env.observation_space, env.action_space)
    pol = make_behaviour(env_id, env.action_space, epsilon, seed)
    done_steps, ep_i = 0, 0
    while done_steps < steps:
        obs, _ = env.reset(seed=seed + ep_i)
        pol.reset(1)
        observations, actions, rewards = [obs], [], []
        term = trunc = False
        while not (term or trunc):
            a = pol.act(obs[None])[0]
            obs, r, term, trunc, _ = env.step(a)
            observations.append(obs)
            actions.append(a)
            rewards.append(r)
        ep = Episode.from_transitions(
            np.asarray(observations), np.asarray(actions), rewards, term, action_space=env.action_space
        )
        if feedback is not None:
            ep.feedback = feedback(ep.obs).astype(np.float32)
            ep.feedback[0] = 0.0
        store.add(ep)
        done_steps += ep.num_steps
        ep_i += 1
    return store


@pytest.fixture(autouse=True)
def _one_thread():
    torch.set_num_threads(1)
    yield


@pytest.fixture(scope="session")
def cartpole_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("cartpole_logs")
    make_store(root, steps=3000, epsilon=0.5, seed=1)
    return root
