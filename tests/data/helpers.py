"""Shared helpers for the data tests: small real episodes and stores."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np

from dreamlab.data.episodes import Episode
from dreamlab.data.store import EpisodeStore

CARTPOLE = "CartPole-v1"


def cartpole_spaces() -> tuple[gym.Space, gym.Space]:
    env = gym.make(CARTPOLE)
    return env.observation_space, env.action_space


def cartpole_episode(seed: int, max_steps: int = 60, feedback: bool = False) -> Episode:
    """A real CartPole episode under random actions (truncated if it lasts max_steps)."""
    env = gym.make(CARTPOLE)
    rng = np.random.default_rng(seed)
    o, _ = env.reset(seed=seed)
    obs, acts, rews, fbs = [o], [], [], []
    term = False
    for _ in range(max_steps):
        a = int(rng.integers(0, 2))
        o, r, term, trunc, _ = env.step(a)
        obs.append(o)
        acts.append(a)
        rews.append(r)
        fbs.append(float(rng.choice([-1.0, 0.0, 1.0])) if feedback else 0.0)
        if term or trunc:
            break
    return Episode.from_transitions(np.stack(obs), np.asarray(acts, np.int64), rews, term, fbs)


def make_store(root: Path, n: int = 3, feedback: bool = False) -> EpisodeStore:
    obs_space, act_space = cartpole_spaces()
    store = EpisodeStore.create(root, CARTPOLE, obs_space, act_space)
    store.add_many([cartpole_episode(i, feedback=feedback) for i in range(n)])
    return store


def assert_same_episode(a: Episode, b: Episode) -> None:
    for k, va in a.arrays().items():
        vb = b.arrays()[k]
        assert va.dtype == vb.dtype, (k, va.dtype, vb.dtype)
        assert va.shape == vb.shape, (k, va.shape, vb.shape)
        assert np.array_equal(va, vb), k


def snapshot(store: EpisodeStore) -> tuple[int, int, list[str], list[bytes]]:
    """Counts, names and raw bytes of every archive: what 'intact' means."""
    store.refresh()
    return (len(store), store.num_steps, store.names(), [p.read_bytes() for p in store.paths()])
