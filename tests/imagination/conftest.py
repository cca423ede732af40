"""Shared fixtures: a real tiny CartPole world model, trained briefly on heuristic logs.

The model is the project's own ``WorldModel`` (``tiny`` preset), trained here for a few hundred
steps by its own ``loss`` so that the dream resembles CartPole enough for policies to learn in it.
Built once per test session and cached under pytest's temporary directory.
"""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from dreamlab.data.behaviour import make_behaviour
from dreamlab.data.episodes import Episode
from dreamlab.data.sampling import SequenceSampler
from dreamlab.data.store import EpisodeStore

ENV_ID = "CartPole-v1"
torch.set_num_threads(1)


def collect_episodes(env_id: str, steps: int, epsilon: float, seed: int) -> list[Episode]:
    env = gym.make(env_id)
    policy = make_behaviour(env_id, env.action_space, epsilon=epsilon, seed=seed)
    episodes, taken, k = [], 0, 0
    while taken < steps:
        obs, _ = env.reset(seed=seed * 1000 + k)
        k += 1
        policy.reset(1)
        o, a, r = [obs], [], []
        while True:
            act = policy.act(obs[None])[0]
            obs, rew, term, trunc, _ = env.step(act)
            o.append(obs)
            a.append(act)
            r.append(rew)
            if term or trunc:
                break
        episodes.append(Episode.from_transitions(o, a, r, bool(term), action_space=env.action_space))
        taken += len(a)
    return episodes


@pytest.fixture(scope="session")
def cartpole_setup(tmp_path_factory: pytest.TempPathFactory) -> dict:
    from dreamlab.worldmodel.config import preset
    from dreamlab.worldmodel.model import WorldModel

    torch.set_num_threads(1)
    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("cartpole")
    env = gym.make(ENV_ID)
    episodes = collect_episodes(ENV_ID, 6000, epsilon=0.75, seed=0)
    store = EpisodeStore.create(root / "logs", ENV_ID, env.observation_space, env.action_space)
    store.extend(episodes)
    cfg = preset("tiny", deter=64, hidden=64, groups=8, classes=8, lr=3e-3, warmup_steps=20)
    wm = WorldModel(cfg, env.observation_space, env.action_space)
    wm.set_obs_stats(np.concatenate([ep.obs for ep in episodes]))
    sampler = SequenceSampler(episodes, wm.codec, 32, seed=0)
    opt = torch.optim.Adam(wm.parameters(), lr=cfg.lr)
    for _ in range(300):
        loss, _ = wm.loss(sampler.sample(16))
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(wm.parameters(), 100.0)
        opt.step()
    wm.eval()
    wm_path = wm.save(root / "wm.ckpt")
    return {"wm": wm, "wm_path": Path(wm_path), "logs": root / "logs", "episodes": episodes, "root": root}


@pytest.fixture(scope="session")
def cartpole_wm(cartpole_setup: dict):
    return cartpole_setup["wm"]


@pytest.fixture(scope="session")
def random_return():
    """``random_return(env_id, episodes, seed)``: mean return of a uniform random policy."""
    return _random_return


def _random_return(env_id: str, episodes: int, seed: int) -> float:
    env = gym.make(env_id)
    rng = np.random.default_rng(seed)
    total = 0.0
    for i in range(episodes):
        env.reset(seed=seed + i)
        while True:
            _, r, te, tr, _ = env.step(int(rng.integers(env.action_space.n)))
            total += r
            if te or tr:
                break
    return total / episodes


@pytest.fixture(scope="session")
def tiny_dream(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """A very small CartPole world model (seconds to build), briefly trained, saved with its logs:
    for tests of numerics and plumbing (precision, processes), not of learning."""
    from dreamlab.worldmodel.config import preset
    from dreamlab.worldmodel.model import WorldModel

    torch.manual_seed(0)
    root = tmp_path_factory.mktemp("tiny_dream")
    env = gym.make(ENV_ID)
    episodes = collect_episodes(ENV_ID, 600, epsilon=0.75, seed=0)
    store = EpisodeStore.create(root / "logs", ENV_ID, env.observation_space, env.action_space)
    store.extend(episodes)
    wm = WorldModel(preset("tiny", deter=32, hidden=32, groups=4, classes=4), env.observation_space, env.action_space)
    wm.set_obs_stats(np.concatenate([ep.obs for ep in episodes]))
    sampler = SequenceSampler(episodes, wm.codec, 16, seed=0)
    opt = torch.optim.Adam(wm.parameters(), lr=3e-3)
    for _ in range(30):
        loss, _ = wm.loss(sampler.sample(8))
        opt.zero_grad()
        loss.backward()
        opt.step()
    wm.eval()
    wm_path = wm.save(root / "wm.ckpt")
    return {"wm": wm, "wm_path": Path(wm_path), "logs": root / "logs", "episodes": episodes}
