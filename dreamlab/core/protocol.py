"""The Policy protocol: one interface for every actor dreamlab evaluates or distils from.

A policy acts on *batches* of observations from ``n`` parallel envs and keeps any recurrent
state inside itself. ``reset(n)`` starts ``n`` fresh episodes; ``act(obs, is_first)`` returns one
env action per row. ``is_first`` (bool, ``(n,)``) marks rows whose episode just (re)started, so a
recurrent policy can reset those rows under a vector env's autoreset.

Policies that can expose their action distribution (needed by distillation teachers) also
implement ``action_probs`` (discrete spaces: ``(n, num_actions)`` probabilities).
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

import gymnasium as gym
import numpy as np


@runtime_checkable
class Policy(Protocol):
    def reset(self, n: int) -> None:
        """Start n fresh episodes (drop any recurrent state)."""

    def act(self, obs: np.ndarray, is_first: np.ndarray | None = None) -> np.ndarray:
        """obs: (n, *obs_shape) -> actions: (n, *action_shape) valid in the env's action space."""


@runtime_checkable
class DistributionPolicy(Policy, Protocol):
    def action_probs(self, obs: np.ndarray, is_first: np.ndarray | None = None) -> np.ndarray:
        """obs: (n, *obs_shape) -> (n, num_actions) probabilities; advances recurrent state like act()."""


class RandomPolicy:
    """Uniform random actions from the action space (seeded)."""

    def __init__(self, action_space: gym.Space, seed: int | None = None):
        self.action_space = action_space
        self.rng = np.random.default_rng(seed)
        self.n = 1

    def reset(self, n: int) -> None:
        self.n = n

    def act(self, obs: np.ndarray, is_first: np.ndarray | None = None) -> np.ndarray:
        n = obs.shape[0]
        sp = self.action_space
        if isinstance(sp, gym.spaces.Discrete):
            return self.rng.integers(sp.start, sp.start + sp.n, size=n).astype(np.int64)
        if isinstance(sp, gym.spaces.Box):
            return self.rng.uniform(sp.low, sp.high, size=(n,) + sp.shape).astype(sp.dtype)
        return np.stack([sp.sample() for _ in range(n)])

    def action_probs(self, obs: np.ndarray, is_first: np.ndarray | None = None) -> np.ndarray:
        if not isinstance(self.action_space, gym.spaces.Discrete):
            raise TypeError("action_probs needs a Discrete action space")
        n = obs.shape[0]
        return np.full((n, int(self.action_space.n)), 1.0 / int(self.action_space.n))
