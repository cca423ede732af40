"""Heuristic behaviour policies for the classic-control tasks, with epsilon noise, and policy loading.

Every policy here follows :class:`dreamlab.core.protocol.Policy` on batches: ``act(obs (n, *obs))`` returns
``(n, *action_shape)`` actions. ``epsilon`` is the probability, drawn independently per row and
per step, that the heuristic's action is replaced by a uniformly random action from the action
space (for ``Box`` spaces: uniform between ``low`` and ``high``). Policies are seeded, so logs of a
chosen quality can be re-made exactly.

Measured quality (``python -m dreamlab.data.behaviour``; 20 episodes each, numbers vary with seeds):

=============================  =========  ==================================================
env                            epsilon    behaviour
=============================  =========  ==================================================
CartPole-v1                    0.0        500 (the time limit) in every episode
CartPole-v1                    0.75       ``CARTPOLE_MEDIOCRE_EPSILON``: mean return ~ 47; over
                                          20k steps the best episode returns 214-251 (< 300;
                                          4 seeds; tested); 0.7 is not enough (max 272-311)
Acrobot-v1                     0.0        ~ -85
Pendulum-v1                    0.0        ~ -140 (energy pumping, then PD at the top)
MountainCar-v0                 0.0        ~ -124
MountainCarContinuous-v0       0.0        goal reached in every episode (return ~ 92)
MountainCarContinuous-v0       0.93       ``MCC_MINORITY_EPSILON``: the goal is reached in ~37%
                                          of episodes (0.9: 63%, 0.94: 12-27%; tested)
=============================  =========  ==================================================

``load_policy(spec, env)`` resolves ``--policy``: ``random``, ``heuristic``, ``module:attr`` (a
Policy, or a class/function called with the env and returning one), or anything a loader
passed in ``loaders`` recognises (e.g. a saved agent directory).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from dreamlab.core.errors import DreamlabError
from dreamlab.core.protocol import Policy, RandomPolicy

CARTPOLE_MEDIOCRE_EPSILON = 0.75
MCC_MINORITY_EPSILON = 0.93


class PolicyLoadError(DreamlabError):
    """A ``--policy`` spec that cannot be turned into a Policy."""


# ----------------------------------------------------------------------------------- heuristics
def _cartpole(obs: np.ndarray) -> np.ndarray:
    # (n, 4): x, x_dot, theta, theta_dot. Push toward the side the pole falls, with a weak
    # centring term on the cart so it does not drift out of bounds over 500 steps.
    x, xd, th, thd = obs[:, 0], obs[:, 1], obs[:, 2], obs[:, 3]
    u = th + 0.5 * thd + 0.01 * x + 0.1 * xd
    return (u > 0).astype(np.int64)


def _acrobot(obs: np.ndarray) -> np.ndarray:
    # (n, 6): cos t1, sin t1, cos t2, sin t2, dt1, dt2. Pump energy: torque along dt2 (~ -85).
    return np.where(obs[:, 5] > 0, 2, 0).astype(np.int64)


def _pendulum(obs: np.ndarray) -> np.ndarray:
    # (n, 3): cos th, sin th, th_dot (th = 0 upright). th'' = 15 sin th + 3 u (g=10, m=l=1).
    c, s, thd = obs[:, 0], obs[:, 1], obs[:, 2]
    th = np.arctan2(s, c)
    energy = 0.5 * thd**2 + 15.0 * c  # 15 at rest upright
    pump = 2.0 * np.sign(thd * (15.0 - energy) + 1e-6)
    balance = -(10.0 * th + 2.0 * thd)
    u = np.where(c > 0.85, balance, pump)
    return np.clip(u, -2.0, 2.0).astype(np.float32)[:, None]


def _mountaincar(obs: np.ndarray) -> np.ndarray:
    # (n, 2): position, velocity. Push along the velocity (left when at rest) to build energy.
    return np.where(obs[:, 1] > 0, 2, 0).astype(np.int64)


def _mountaincar_continuous(obs: np.ndarray) -> np.ndarray:
    return np.where(obs[:, 1] > 0, 1.0, -1.0).astype(np.float32)[:, None]


HEURISTICS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "CartPole": _cartpole,
    "Acrobot": _acrobot,
    "Pendulum": _pendulum,
    "MountainCar": _mountaincar,
    "MountainCarContinuous": _mountaincar_continuous,
}


def _base_name(env_id: str) -> str:
    name = env_id.split("/")[-1].split(":")[-1]
    return name.rsplit("-v", 1)[0]


class HeuristicPolicy:
    """A stateless heuristic plus epsilon-random actions (see the module docstring)."""

    def __init__(
        self,
        fn: Callable[[np.ndarray], np.ndarray],
        action_space: gym.Space,
        epsilon: float = 0.0,
        seed: int | None = None,
    ):
        if not 0.0 <= epsilon <= 1.0:
            raise ValueError(f"epsilon must be in [0, 1], got {epsilon}")
        self.fn, self.action_space, self.epsilon = fn, action_space, float(epsilon)
        self.rng = np.random.default_rng(seed)
        self.random = RandomPolicy(action_space, seed=None)
        self.random.rng = self.rng
        self.n = 1

    def reset(self, n: int) -> None:
        self.n = n

    def act(self, obs: np.ndarray, is_first: np.ndarray | None = None) -> np.ndarray:
        obs = np.asarray(obs)
        actions = self.fn(obs)  # (n, *action_shape)
        if self.epsilon > 0.0:
            noisy = self.rng.random(int(obs.shape[0])) < self.epsilon  # (n,)
            if noisy.any():
                actions = actions.copy()
                actions[noisy] = self.random.act(obs[noisy])
        return actions


def make_behaviour(env_id: str, action_space: gym.Space, epsilon: float = 0.0, seed: int | None = None) -> Policy:
    """A heuristic behaviour policy for a classic-control env id (e.g. ``CartPole-v1``)."""
    name = _base_name(env_id)
    if name not in HEURISTICS:
        raise PolicyLoadError(
            f"no heuristic behaviour policy for env '{env_id}'; heuristics exist for "
            f"{sorted(HEURISTICS)} (use --policy random or --policy module:attr)"
        )
    return HeuristicPolicy(HEURISTICS[name], action_space, epsilon, seed)


# ------------------------------------------------------------------------------------ loading
PolicyLoader = Callable[[str, gym.Env], "Policy | None"]
"""``loader(spec, env)`` returns a Policy, or None when the spec is not its kind (e.g. a saved
agent directory). Loaders are passed explicitly: :data:`dreamlab.imagination.registry.POLICY_LOADERS`
lists those of the packages above this one."""


def _is_policy(obj: Any) -> bool:
    return callable(getattr(obj, "act", None)) and callable(getattr(obj, "reset", None))


def load_policy(
    spec: str,
    env: gym.Env,
    epsilon: float = 0.0,
    seed: int | None = None,
    env_id: str | None = None,
    loaders: Sequence[PolicyLoader] = (),
) -> Policy:
    """Resolve a ``--policy`` spec for ``env`` (a single gymnasium env, used for its spaces/id);
    ``loaders`` are tried in order before ``module:attr``."""
    if spec == "random":
        return RandomPolicy(env.action_space, seed=seed)
    if spec == "heuristic":
        eid = env_id or (env.spec.id if env.spec is not None else None)
        if eid is None:
            raise PolicyLoadError("--policy heuristic needs a registered env id (the env has no spec)")
        return make_behaviour(eid, env.action_space, epsilon, seed)
    for loader in loaders:
        pol = loader(spec, env)
        if pol is not None:
            return pol
    if Path(spec).exists():
        raise PolicyLoadError(
            f"{spec}: no policy loader recognises this path (a saved agent directory holds "
            "agent.json or grpo_agent.json; otherwise use random, heuristic or module:attr)"
        )
    if ":" not in spec:
        raise PolicyLoadError(
            f"--policy '{spec}': expected random, heuristic, a saved policy path or "
            "module:attr (a Policy or a factory called with the env)"
        )
    module_name, _, attr = spec.partition(":")
    try:
        obj: Any = importlib.import_module(module_name)
        for part in attr.split("."):
            obj = getattr(obj, part)
    except (ImportError, AttributeError) as exc:
        raise PolicyLoadError(f"--policy '{spec}': cannot import: {exc}") from None
    if not _is_policy(obj) or isinstance(obj, type):
        if not callable(obj):
            raise PolicyLoadError(f"--policy '{spec}': {obj!r} is neither a Policy nor callable")
        obj = obj(env)
    if not _is_policy(obj):
        raise PolicyLoadError(
            f"--policy '{spec}': produced {type(obj).__name__}, which lacks reset(n) and act(obs, is_first)"
        )
    return obj


# ------------------------------------------------------------------------------- evaluation
def evaluate(env_id: str, policy: Policy, episodes: int, seed: int = 0) -> np.ndarray:
    """Returns of ``episodes`` episodes run one env at a time (for documentation and tests)."""
    env = gym.make(env_id)
    returns = []
    for i in range(episodes):
        obs, _ = env.reset(seed=seed + i)
        policy.reset(1)
        total, done, first = 0.0, False, True
        while not done:
            a = policy.act(np.asarray(obs)[None], np.array([first]))[0]
            obs, r, term, trunc, _ = env.step(a)
            total += float(r)
            done, first = term or trunc, False
        returns.append(total)
    env.close()
    return np.asarray(returns)


if __name__ == "__main__":  # pragma: no cover - documentation helper
    for eid, eps in [
        ("CartPole-v1", 0.0),
        ("CartPole-v1", CARTPOLE_MEDIOCRE_EPSILON),
        ("Acrobot-v1", 0.0),
        ("Pendulum-v1", 0.0),
        ("MountainCar-v0", 0.0),
        ("MountainCarContinuous-v0", 0.0),
        ("MountainCarContinuous-v0", MCC_MINORITY_EPSILON),
    ]:
        sp = gym.make(eid).action_space
        r = evaluate(eid, make_behaviour(eid, sp, eps, seed=0), 20)
        print(f"{eid:28s} eps={eps:.2f} mean={r.mean():8.1f} min={r.min():8.1f} max={r.max():8.1f}")
