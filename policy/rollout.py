"""Stepping any gymnasium vector env (a real one or a DreamEnv) with correct autoreset bookkeeping.

Gymnasium vector envs autoreset finished sub-envs. In the default ``NEXT_STEP`` mode the step
after a ``terminated``/``truncated`` one ignores the action and returns the first observation of
the next episode; in ``SAME_STEP`` mode the finishing step already returns it. The mode is read
from ``env.metadata["autoreset_mode"]`` (gymnasium's default, ``NEXT_STEP``, when absent).
:class:`VecRunner` hides the difference: each :meth:`VecRunner.step` reports, per row, whether the
observation the policy acted on was a real decision (``valid``) and whether it started an episode
(``is_first``), and returns the episodes that finished with their undiscounted returns.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

import gymnasium as gym
import numpy as np

from dreamlab.core.errors import DreamlabError


class RolloutError(DreamlabError):
    """An env that cannot be stepped as a vector env."""


def as_vector_env(env: gym.Env | gym.vector.VectorEnv) -> gym.vector.VectorEnv:
    """A VectorEnv as is; a single Env wrapped as a one-copy SyncVectorEnv."""
    if isinstance(env, gym.vector.VectorEnv):
        return env
    if isinstance(env, gym.Env):
        return gym.vector.SyncVectorEnv([lambda: env])
    raise RolloutError(f"expected a gymnasium Env or VectorEnv, got {type(env).__name__}")


def autoreset_mode(env: gym.vector.VectorEnv) -> str:
    mode = (getattr(env, "metadata", None) or {}).get("autoreset_mode", "next_step")
    name = str(getattr(mode, "value", mode)).lower()
    if "next" in name:
        return "next_step"
    if "same" in name:
        return "same_step"
    raise RolloutError(
        f"vector env {type(env).__name__}: autoreset mode {mode!r} is not supported (NEXT_STEP or SAME_STEP)"
    )


@dataclass
class StepResult:
    obs: np.ndarray  # (n, *obs) the observations the policy acted on
    is_first: np.ndarray  # (n,) bool
    valid: np.ndarray  # (n,) bool: the action was executed (not swallowed by an autoreset)
    actions: np.ndarray  # (n, *act)
    rewards: np.ndarray  # (n,) reward for the executed actions (0 where not valid)
    finished_returns: list[float] = field(default_factory=list)


class VecRunner:
    """Keeps a vector env running across calls: episodes continue from one rollout to the next."""

    def __init__(self, env: gym.Env | gym.vector.VectorEnv, seed: int | None = None):
        self.env = as_vector_env(env)
        self.mode = autoreset_mode(self.env)
        self.n = int(self.env.num_envs)
        obs, _ = self.env.reset(seed=seed)
        self.obs = np.asarray(obs)
        self.is_first = np.ones(self.n, bool)
        self.valid = np.ones(self.n, bool)
        self.ret = np.zeros(self.n, np.float64)
        self.episode_steps = np.zeros(self.n, np.int64)

    def step(self, act_fn: Callable[[np.ndarray, np.ndarray], np.ndarray]) -> StepResult:
        obs, first, valid = self.obs, self.is_first, self.valid
        actions = np.asarray(act_fn(obs, first))
        nxt, rew, term, trunc, _ = self.env.step(actions)
        rew = np.where(valid, np.asarray(rew, np.float64), 0.0)
        done = (np.asarray(term) | np.asarray(trunc)) & valid
        self.ret += rew
        self.episode_steps += valid
        finished = [float(r) for r in self.ret[done]]
        self.ret[done] = 0.0
        self.episode_steps[done] = 0
        if self.mode == "next_step":
            self.is_first = ~valid  # rows that were reset by this step now show a first observation
            self.valid = ~done
        else:
            self.is_first = done.copy()
            self.valid = np.ones(self.n, bool)
        self.obs = np.asarray(nxt)
        return StepResult(obs, first, valid, actions, rew.astype(np.float32), finished)
