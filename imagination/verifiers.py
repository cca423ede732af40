"""Verifiers: batched checks that score observations, dreamed or real, alike.

A verifier is a callable ``(obs (n, *obs_shape), action (n, ...) | None) -> (n,) float`` that
returns a per-step reward/success in ``[0, 1]`` for the built-ins. It takes numpy arrays or torch
tensors and answers in the same library (a torch input gives a float32 tensor on the same
device, a numpy input a float32 array), so a :class:`~imagination.dream_env.DreamEnv` can apply
it to decoded dream observations and a benchmark to real ones, unchanged.

Each built-in also says how per-step scores make an *episode* score (``mode``):

``"reach"``   success when the check holds at any step (the goal is reached); a dream may end
              there (MountainCar, MountainCarContinuous, Acrobot: the real env terminates there).
``"stay"``    success when the check holds at every step (never fell over); the dream ends at
              the first failure (CartPole: the real env terminates there).
``"dense"``   the episode score is the sum of per-step scores (Pendulum: steps spent upright).

User verifiers come by import path ``"package.module:function"``; a plain function is wrapped
as ``"dense"`` unless it carries a ``mode`` attribute (``fn.mode = "reach"``).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from dreamlab.core.errors import DreamlabError
from dreamlab.core.imports import import_attr

Array = Any  # np.ndarray | torch.Tensor
MODES = ("reach", "stay", "dense")

# Thresholds copied from gymnasium's classic-control sources (they decide `terminated` there).
CARTPOLE_THETA = 12 * 2 * math.pi / 360  # radians
CARTPOLE_X = 2.4
MOUNTAINCAR_GOAL = 0.5
MOUNTAINCAR_CONTINUOUS_GOAL = 0.45
ACROBOT_LINE = 1.0
PENDULUM_TOLERANCE = 0.3  # radians from upright


class VerifierError(DreamlabError):
    """An unknown verifier name, a bad import path, or observations of the wrong shape."""


def _as_obs(obs: Array, dim: int, name: str) -> tuple[Array, bool]:
    """Return ``(obs (n, dim), is_torch)``; raises VerifierError naming the verifier and shape."""
    is_torch = isinstance(obs, torch.Tensor)
    x: Array = obs if is_torch else np.asarray(obs)
    if x.ndim == 1 and x.shape[0] == dim:
        x = x[None]
    if x.ndim != 2 or x.shape[-1] != dim:
        raise VerifierError(f"verifier '{name}': expected obs of shape (n, {dim}), got {tuple(x.shape)}")
    if is_torch:
        x = x.to(torch.float64)
    else:
        x = x.astype(np.float64)
    return x, is_torch


def _out(mask: Array, is_torch: bool) -> Array:
    if is_torch:
        return mask.to(torch.float32)
    return np.asarray(mask, dtype=np.float32)


def _lib(is_torch: bool) -> Any:
    return torch if is_torch else np


# --- built-ins ------------------------------------------------------------------------------


def cartpole_upright(obs: Array, action: Array | None = None) -> Array:
    """1 where the pole is within +-12 degrees and the cart within +-2.4 (gymnasium's bounds)."""
    x, t = _as_obs(obs, 4, "cartpole")
    pos, theta = x[:, 0], x[:, 2]
    ok = (pos >= -CARTPOLE_X) & (pos <= CARTPOLE_X) & (theta >= -CARTPOLE_THETA) & (theta <= CARTPOLE_THETA)
    return _out(ok, t)


def acrobot_tip_above_line(obs: Array, action: Array | None = None) -> Array:
    """1 where the tip is above the line: -cos(t1) - cos(t1 + t2) > 1 (obs: cos/sin of t1, t2, velocities)."""
    x, t = _as_obs(obs, 6, "acrobot")
    c1, s1, c2, s2 = x[:, 0], x[:, 1], x[:, 2], x[:, 3]
    cos12 = c1 * c2 - s1 * s2  # cos(t1 + t2)
    return _out(-c1 - cos12 > ACROBOT_LINE, t)


def pendulum_angle(obs: Array) -> Array:
    """The pendulum angle in (-pi, pi] from its (cos, sin, velocity) observation; 0 is upright."""
    x, t = _as_obs(obs, 3, "pendulum")
    return _lib(t).arctan2(x[:, 1], x[:, 0])


def pendulum_upright(obs: Array, action: Array | None = None, tolerance: float = PENDULUM_TOLERANCE) -> Array:
    """1 where the pendulum is within ``tolerance`` radians of upright."""
    _, t = _as_obs(obs, 3, "pendulum")
    angle = pendulum_angle(obs)
    return _out(_lib(t).abs(angle) <= tolerance, t)


def mountaincar_goal(obs: Array, action: Array | None = None) -> Array:
    """1 where the car's position is at or past the flag (0.5)."""
    x, t = _as_obs(obs, 2, "mountaincar")
    return _out(x[:, 0] >= MOUNTAINCAR_GOAL, t)


def mountaincar_continuous_goal(obs: Array, action: Array | None = None) -> Array:
    """1 where the car's position is at or past the flag of the continuous task (0.45)."""
    x, t = _as_obs(obs, 2, "mountaincar_continuous")
    return _out(x[:, 0] >= MOUNTAINCAR_CONTINUOUS_GOAL, t)


# --- the wrapper and the registry ----------------------------------------------------------


@dataclass(frozen=True)
class Verifier:
    """A named per-step check plus how it makes an episode score (see the module docstring)."""

    name: str
    fn: Callable[..., Array]
    mode: str = "dense"

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise VerifierError(f"verifier '{self.name}': mode must be one of {MODES}, got {self.mode!r}")

    def __call__(self, obs: Array, action: Array | None = None) -> Array:
        """(n, *obs) -> (n,) float32 per-step score, numpy or torch like the input."""
        return self.fn(obs, action)

    def done(self, step_score: Array) -> Array:
        """Where a dream may stop: goal reached ("reach"), check failed ("stay"); never for "dense"."""
        if self.mode == "reach":
            return step_score > 0.5
        if self.mode == "stay":
            return step_score < 0.5
        return step_score != step_score  # all False, same library and shape

    def episode_score(self, step_scores: Array, valid: Array | None = None) -> Array:
        """(n, T) per-step scores (and optional (n, T) bool mask of steps taken) -> (n,) episode score.

        ``reach``: 1 if any valid step succeeded; ``stay``: 1 if every valid step succeeded;
        ``dense``: the sum over valid steps.
        """
        is_torch = isinstance(step_scores, torch.Tensor)
        s: Array = step_scores if is_torch else np.asarray(step_scores, dtype=np.float32)
        v: Array
        if valid is None:
            v = torch.ones_like(s, dtype=torch.bool) if is_torch else np.ones(s.shape, bool)
        else:
            v = valid.to(torch.bool) if is_torch else np.asarray(valid, bool)
        if self.mode == "reach":
            hit = (s > 0.5) & v
            return _out(hit.any(-1) if is_torch else hit.any(-1), is_torch)
        if self.mode == "stay":
            bad = (s < 0.5) & v
            return _out(~bad.any(-1), is_torch)
        zero: Array = torch.zeros_like(s) if is_torch else np.zeros_like(s)
        where: Callable[..., Array] = torch.where if is_torch else np.where
        return _out(where(v, s, zero).sum(-1), is_torch)


BUILTINS: dict[str, Verifier] = {
    "cartpole": Verifier("cartpole", cartpole_upright, "stay"),
    "acrobot": Verifier("acrobot", acrobot_tip_above_line, "reach"),
    "pendulum": Verifier("pendulum", pendulum_upright, "dense"),
    "mountaincar": Verifier("mountaincar", mountaincar_goal, "reach"),
    "mountaincar_continuous": Verifier("mountaincar_continuous", mountaincar_continuous_goal, "reach"),
}

# Registry keyed by gymnasium env id (any version suffix of these ids maps the same way).
ENV_VERIFIERS: dict[str, str] = {
    "CartPole": "cartpole",
    "Acrobot": "acrobot",
    "Pendulum": "pendulum",
    "MountainCar": "mountaincar",
    "MountainCarContinuous": "mountaincar_continuous",
}


def verifier_for_env(env_id: str) -> Verifier:
    """The built-in verifier for a gymnasium env id such as ``"CartPole-v1"``."""
    base = env_id.split("/")[-1].rsplit("-v", 1)[0]
    if base not in ENV_VERIFIERS:
        raise VerifierError(
            f"no built-in verifier for env id {env_id!r}; known: "
            f"{sorted(ENV_VERIFIERS)} (or pass --verifier module:function)"
        )
    return BUILTINS[ENV_VERIFIERS[base]]


def get_verifier(
    name: str | Callable[..., Array] | Verifier, source: str | None = None, trust_code: bool = False
) -> Verifier:
    """A built-in by name (``"cartpole"``), by env id (``"CartPole-v1"``), or ``"module:function"``.

    ``source`` says where a name read from a file came from (``"LOGS/metadata.json: field
    'env_id'"``): a ``module:function`` from a file is imported only with ``trust_code``
    (:func:`dreamlab.core.imports.check_code_name`); ``None`` = the command line or a config."""
    if isinstance(name, Verifier):
        return name
    if callable(name):
        fn = name
        return Verifier(getattr(fn, "__name__", "custom"), fn, getattr(fn, "mode", "dense"))
    if not isinstance(name, str) or not name:
        raise VerifierError(f"verifier: expected a name or 'module:function', got {name!r}")
    if name in BUILTINS:
        return BUILTINS[name]
    if ":" in name:
        fn = import_attr(name, "verifier", VerifierError, source=source, trust_code=trust_code)
        if isinstance(fn, Verifier):
            return fn
        return Verifier(name, fn, getattr(fn, "mode", "dense"))
    try:
        return verifier_for_env(name)
    except VerifierError:
        raise VerifierError(
            f"unknown verifier {name!r}; built-ins: {sorted(BUILTINS)}, env ids "
            f"{sorted(ENV_VERIFIERS)}, or 'module:function'"
        ) from None
