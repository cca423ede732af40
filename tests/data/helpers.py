"""Shared helpers for the data tests: small real episodes and stores (version 2, and version 1
written file by file the way that layout says, without the store's code)."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np

from dreamlab.data.episodes import Episode
from dreamlab.data.spaces import space_to_json
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


def make_store(root: Path, n: int = 3, feedback: bool = False, chunk_each: bool = False) -> EpisodeStore:
    """A version-2 store of ``n`` CartPole episodes: one chunk, or one chunk per episode."""
    obs_space, act_space = cartpole_spaces()
    store = EpisodeStore.create(root, CARTPOLE, obs_space, act_space)
    eps = [cartpole_episode(i, feedback=feedback) for i in range(n)]
    if chunk_each:
        for ep in eps:
            store.add(ep)
    else:
        store.add_many(eps)
    return store


def make_v1_store(root: Path, n: int = 3, feedback: bool = False) -> EpisodeStore:
    """A version-1 store as that release wrote it: ``episodes/ep-<time>-<pid>-<hex>.npz``, one
    ``np.savez_compressed`` archive per episode, and ``metadata.json`` (indent 1) whose index
    maps each file name to its length, steps, return, terminated and feedback."""
    obs_space, act_space = cartpole_spaces()
    (root / "episodes").mkdir(parents=True)
    index = {}
    for i in range(n):
        ep = cartpole_episode(i, feedback=feedback)
        name = f"ep-{1700000000000000000 + i:020d}-4242-{i:08x}.npz"
        np.savez_compressed(root / "episodes" / name, **ep.arrays())
        index[name] = {
            "length": ep.length,
            "steps": ep.num_steps,
            "return": ep.ret,
            "terminated": ep.terminated,
            "feedback": float(np.abs(ep.feedback).sum()),
        }
    meta = {
        "format": "dreamlab-episodes",
        "version": 1,
        "env_id": CARTPOLE,
        "observation_space": space_to_json(obs_space),
        "action_space": space_to_json(act_space),
        "units": {},
        "episodes": n,
        "steps": sum(e["steps"] for e in index.values()),
        "index": index,
    }
    (root / "metadata.json").write_text(json.dumps(meta, indent=1))
    return EpisodeStore(root)


def assert_same_episode(a: Episode, b: Episode) -> None:
    for k, va in a.arrays().items():
        vb = b.arrays()[k]
        assert va.dtype == vb.dtype, (k, va.dtype, vb.dtype)
        assert va.shape == vb.shape, (k, va.shape, vb.shape)
        assert np.array_equal(va, vb), k


def snapshot(store: EpisodeStore) -> tuple[int, int, list[str], list[bytes]]:
    """Counts, names and raw bytes of every episode file: what 'intact' means."""
    store.refresh()
    return (len(store), store.num_steps, store.names(), [p.read_bytes() for p in store.paths()])


def data_files(root: Path) -> list[Path]:
    """Every chunk and version-1 archive on disk (temporary files excluded)."""
    return sorted(p for d in ("chunks", "episodes") for p in (root / d).glob("[!.]*.npz"))
