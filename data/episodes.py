"""The episode convention of dreamlab, documented once here and validated on every load.

An episode of ``N`` environment transitions is stored as ``T = N + 1`` *steps*. At step ``t``:

==============  ==========================  ===================================================
field           shape / dtype               meaning
==============  ==========================  ===================================================
``obs``         ``(T, *obs_shape)``         the observation at step t
``action``      ``(T, *action_shape)``      the action taken *at* obs t (the last step's action
                                            is never executed and is stored as zeros)
``reward``      ``(T,)`` float32            the reward that *arrived with* obs t (0 at t = 0)
``is_first``    ``(T,)`` bool               True only at t = 0
``is_last``     ``(T,)`` bool               True only at t = T - 1
``is_terminal`` ``(T,)`` bool               True only at t = T - 1 and only if the episode
                                            *terminated* (a truncated episode is last, not
                                            terminal: its value does not bootstrap to zero)
``feedback``    ``(T,)`` float32            user feedback that arrived with obs t (+1/-1 or a
                                            score; 0 where none was given)
==============  ==========================  ===================================================

This is Dreamer's convention. A gymnasium transition ``(o_t, a_t, r_{t+1}, o_{t+1},
terminated, truncated)`` contributes ``a_t`` to step t and ``r_{t+1}`` to step t + 1.
``Episode.num_steps`` counts transitions (``T - 1``): the environment steps that were taken.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np

from dreamlab.core.errors import DreamlabError

FIELDS = ("obs", "action", "reward", "is_first", "is_last", "is_terminal", "feedback")


class EpisodeError(DreamlabError):
    """A file or field that breaks the episode convention; the message names both."""

    def __init__(self, source: str | Path, field: str | None, problem: str):
        self.source, self.field, self.problem = str(source), field, problem
        where = f"{source}" + (f" [field '{field}']" if field else "")
        super().__init__(f"{where}: {problem}")


@dataclass
class Episode:
    obs: np.ndarray
    action: np.ndarray
    reward: np.ndarray
    is_first: np.ndarray
    is_last: np.ndarray
    is_terminal: np.ndarray
    feedback: np.ndarray = field(default=cast(np.ndarray, None))  # None: filled in by __post_init__

    def __post_init__(self) -> None:
        if self.feedback is None:
            self.feedback = np.zeros(len(self.reward), np.float32)

    @property
    def length(self) -> int:
        """Number of stored steps T (observations)."""
        return int(len(self.obs))

    @property
    def num_steps(self) -> int:
        """Environment transitions taken: T - 1."""
        return self.length - 1

    @property
    def ret(self) -> float:
        """Undiscounted return (sum of rewards)."""
        return float(np.sum(self.reward, dtype=np.float64))

    @property
    def terminated(self) -> bool:
        return bool(self.is_terminal[-1])

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: getattr(self, k) for k in FIELDS}

    @classmethod
    def from_transitions(
        cls,
        observations: list[Any] | np.ndarray,
        actions: list[Any] | np.ndarray,
        rewards: list[float] | np.ndarray,
        terminated: bool,
        feedback: list[float] | np.ndarray | None = None,
        action_space: gym.Space | None = None,
    ) -> Episode:
        """Build from N+1 observations, N actions and N rewards (gymnasium order).

        ``rewards[i]`` is the reward for ``actions[i]``; ``feedback`` (optional, length N) is
        given on the transition i, so it lands on step i + 1 like the reward.
        """
        obs = np.asarray(observations)
        n = len(actions)
        if len(obs) != n + 1:
            raise EpisodeError("<transitions>", "obs", f"expected {n + 1} observations for {n} actions, got {len(obs)}")
        if len(rewards) != n:
            raise EpisodeError("<transitions>", "reward", f"expected {n} rewards for {n} actions, got {len(rewards)}")
        act = np.asarray(actions)
        if n == 0:
            shape = action_space.shape if action_space is not None else ()
            dtype = action_space.dtype if action_space is not None else np.int64
            act = np.zeros((0,) + tuple(shape or ()), dtype=dtype)
        action = np.concatenate([act, np.zeros((1,) + act.shape[1:], act.dtype)], 0)
        reward = np.concatenate([[0.0], np.asarray(rewards, np.float64)]).astype(np.float32)
        fb = np.zeros(n + 1, np.float32)
        if feedback is not None:
            fb[1:] = np.asarray(feedback, np.float32)
        T = n + 1
        is_first = np.zeros(T, bool)
        is_first[0] = True
        is_last = np.zeros(T, bool)
        is_last[-1] = True
        is_terminal = np.zeros(T, bool)
        is_terminal[-1] = bool(terminated)
        return cls(obs, action, reward, is_first, is_last, is_terminal, fb)

    def validate(
        self,
        obs_space: gym.Space | None = None,
        action_space: gym.Space | None = None,
        source: str | Path = "<episode>",
    ) -> Episode:
        """Check the convention (and the spaces, when given); raise EpisodeError naming the field."""
        validate_arrays(self.arrays(), obs_space, action_space, source)
        return self


def _check_finite(name: str, arr: np.ndarray, source: str | Path) -> None:
    if np.issubdtype(arr.dtype, np.floating) and not np.all(np.isfinite(arr)):
        bad = np.argwhere(~np.isfinite(arr))[0]
        raise EpisodeError(source, name, f"contains NaN or inf (first at index {tuple(int(i) for i in bad)})")


def check_field_dtypes(arrs: dict[str, np.ndarray], source: str | Path) -> None:
    """The flags are bool and reward/feedback a float dtype (one-line ``EpisodeError`` otherwise)."""
    for k in ("is_first", "is_last", "is_terminal"):
        if arrs[k].dtype != np.bool_:
            raise EpisodeError(source, k, f"expected dtype bool, got {arrs[k].dtype}")
    for k in ("reward", "feedback"):
        if not np.issubdtype(arrs[k].dtype, np.floating):
            raise EpisodeError(source, k, f"expected a float dtype, got {arrs[k].dtype}")


def validate_arrays(
    arrs: dict[str, np.ndarray], obs_space: gym.Space | None, action_space: gym.Space | None, source: str | Path
) -> None:
    missing = [k for k in FIELDS if k not in arrs]
    if missing:
        raise EpisodeError(source, missing[0], f"missing field(s) {missing}; expected {list(FIELDS)}")
    for k in FIELDS:
        if arrs[k].dtype == object:
            raise EpisodeError(source, k, "object arrays are not allowed")
    T = len(arrs["obs"])
    if T < 1:
        raise EpisodeError(source, "obs", "episode has no steps")
    for k in FIELDS:
        if arrs[k].ndim == 0 or len(arrs[k]) != T:
            raise EpisodeError(source, k, f"expected leading length {T} (one per step), got shape {arrs[k].shape}")
    for k in ("reward", "is_first", "is_last", "is_terminal", "feedback"):
        if arrs[k].ndim != 1:
            raise EpisodeError(source, k, f"expected shape ({T},), got {arrs[k].shape}")
    check_field_dtypes(arrs, source)
    for k in ("obs", "action", "reward", "feedback"):
        _check_finite(k, arrs[k], source)
    first, last, term = arrs["is_first"], arrs["is_last"], arrs["is_terminal"]
    if not first[0] or first[1:].any():
        raise EpisodeError(source, "is_first", "must be True at step 0 and only there")
    if not last[-1] or last[:-1].any():
        raise EpisodeError(source, "is_last", "must be True at the final step and only there")
    if term[:-1].any():
        raise EpisodeError(source, "is_terminal", "may be True only at the final step")
    if obs_space is not None:
        shape = tuple(obs_space.shape or ())
        if arrs["obs"].shape[1:] != shape:
            raise EpisodeError(
                source,
                "obs",
                f"expected shape (T, {', '.join(map(str, shape))}) for {obs_space}, got {arrs['obs'].shape}",
            )
        if obs_space.dtype is not None and np.dtype(obs_space.dtype).kind != arrs["obs"].dtype.kind:
            raise EpisodeError(
                source,
                "obs",
                f"expected dtype {obs_space.dtype} (kind '{np.dtype(obs_space.dtype).kind}'), got {arrs['obs'].dtype}",
            )
    if action_space is not None:
        shape = tuple(action_space.shape or ())
        act = arrs["action"]
        if act.shape[1:] != shape:
            raise EpisodeError(
                source,
                "action",
                f"expected shape (T, {', '.join(map(str, shape))}) for {action_space}, got {act.shape}",
            )
        check_actions(act[:-1], action_space, source)


def check_actions(actions: np.ndarray, space: gym.Space, source: str | Path) -> None:
    """Every executed action must lie in the space; names the first offending step."""
    if len(actions) == 0:
        return
    if isinstance(space, gym.spaces.Discrete):
        if not np.issubdtype(actions.dtype, np.integer):
            if not np.all(np.equal(np.mod(actions, 1), 0)):
                raise EpisodeError(source, "action", f"expected integer actions for {space}, got dtype {actions.dtype}")
        bad = (actions < space.start) | (actions >= space.start + space.n)
    elif isinstance(space, gym.spaces.Box):
        low = np.broadcast_to(space.low, actions.shape[1:])
        high = np.broadcast_to(space.high, actions.shape[1:])
        tol = 1e-6
        bad = ((actions < low - tol) | (actions > high + tol)).reshape(len(actions), -1).any(-1)
    elif isinstance(space, gym.spaces.MultiDiscrete):
        bad = ((actions < 0) | (actions >= space.nvec)).reshape(len(actions), -1).any(-1)
    elif isinstance(space, gym.spaces.MultiBinary):
        bad = ((actions != 0) & (actions != 1)).reshape(len(actions), -1).any(-1)
    else:
        return
    bad = np.asarray(bad).reshape(len(actions), -1).any(-1)
    if bad.any():
        i = int(np.argmax(bad))
        raise EpisodeError(
            source, "action", f"step {i}: action {actions[i].tolist()} is outside the action space {space}"
        )
