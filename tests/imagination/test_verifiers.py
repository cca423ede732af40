"""Each built-in verifier agrees with the real env's own success signal on real logged episodes."""

from __future__ import annotations

import math
import sys
import types
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
import torch

from dreamlab.data.episodes import Episode
from dreamlab.imagination.verifiers import (
    BUILTINS,
    PENDULUM_TOLERANCE,
    Verifier,
    VerifierError,
    get_verifier,
    pendulum_angle,
    verifier_for_env,
)


def _log(
    env_id: str,
    policy: Callable[[np.ndarray, np.random.Generator], object],
    episodes: int,
    seed: int,
    max_steps: int | None = None,
) -> tuple[list[Episode], list[list[float]]]:
    """Roll real episodes into the episode convention; also returns the env's internal angle (Pendulum)."""
    env = gym.make(env_id, max_episode_steps=max_steps) if max_steps else gym.make(env_id)
    rng = np.random.default_rng(seed)
    eps, angles = [], []
    for i in range(episodes):
        o, _ = env.reset(seed=seed + i)
        obs, acts, rews, ang = [o], [], [], []
        while True:
            if env_id.startswith("Pendulum"):
                ang.append(float(env.unwrapped.state[0]))
            a = policy(o, rng)
            o, r, term, trunc, _ = env.step(a)
            obs.append(o)
            acts.append(a)
            rews.append(r)
            if term or trunc:
                break
        eps.append(
            Episode.from_transitions(obs, acts, rews, term, action_space=env.action_space).validate(
                env.observation_space, env.action_space
            )
        )
        angles.append(ang)
    return eps, angles


def _assert_terminal_agreement(eps: list[Episode], verifier: Verifier) -> None:
    """reach/stay verifiers: the dream-ending signal fires exactly at the real env's terminal step."""
    kinds = {True: 0, False: 0}
    for ep in eps:
        done = np.asarray(verifier.done(verifier(ep.obs, ep.action)))
        expected = ep.is_terminal  # True only at the final step of a terminated episode
        np.testing.assert_array_equal(done, expected)
        score = float(verifier.episode_score(verifier(ep.obs)[None])[0])
        assert score == (1.0 if (verifier.mode == "reach") == ep.terminated else 0.0)
        kinds[ep.terminated] += 1
    assert kinds[True] > 0 and kinds[False] > 0, f"logs must hold both outcomes, got {kinds}"


def test_cartpole_upright_exactly_until_termination() -> None:
    # mostly random (falls) and a balancing heuristic that survives to the 200-step cut (truncated)
    def pol(o: np.ndarray, rng: np.random.Generator) -> int:
        good = int(o[2] + 0.5 * o[3] > 0)
        return good if rng.random() > 0.05 else int(rng.integers(2))

    eps, _ = _log("CartPole-v1", lambda o, r: int(r.integers(2)), 15, 0)
    eps2, _ = _log("CartPole-v1", pol, 4, 100, max_steps=200)
    _assert_terminal_agreement(eps + eps2, get_verifier("cartpole"))


def test_acrobot_tip_above_line_exactly_at_termination() -> None:
    pump = lambda o, r: 0 if o[4] > 0 else 2  # energy pumping: reaches the line in ~100 steps
    eps, _ = _log("Acrobot-v1", pump, 4, 0)
    eps2, _ = _log("Acrobot-v1", lambda o, r: int(r.integers(3)), 2, 50, max_steps=150)
    _assert_terminal_agreement(eps + eps2, get_verifier("Acrobot-v1"))


@pytest.mark.parametrize(
    "env_id,name", [("MountainCar-v0", "mountaincar"), ("MountainCarContinuous-v0", "mountaincar_continuous")]
)
def test_mountaincar_goal_exactly_at_termination(env_id: str, name: str) -> None:
    if env_id == "MountainCar-v0":
        heur = lambda o, r: 2 if o[1] >= 0 else 0
        rand = lambda o, r: int(r.integers(3))
    else:
        heur = lambda o, r: np.array([1.0 if o[1] >= 0 else -1.0], np.float32)
        rand = lambda o, r: r.uniform(-1, 1, size=1).astype(np.float32)
    eps, _ = _log(env_id, heur, 4, 0)
    eps2, _ = _log(env_id, rand, 2, 10, max_steps=200)
    v = get_verifier(name)
    assert verifier_for_env(env_id) is v
    _assert_terminal_agreement(eps + eps2, v)


def test_pendulum_upright_matches_angle_and_reward() -> None:
    # a swing-up-ish energy controller with noise visits both upright and hanging states
    def pol(o: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        th = math.atan2(o[1], o[0])
        u = -10 * th - 2 * o[2] if abs(th) < 0.8 else 2.0 * np.sign(o[2] * o[0] + 1e-6)
        return np.clip([u + rng.normal(0, 0.3)], -2, 2).astype(np.float32)

    eps, angles = _log("Pendulum-v1", pol, 3, 0)
    v = get_verifier("pendulum")
    upright_steps = 0
    for ep, ang in zip(eps, angles):
        n = ep.num_steps
        obs = ep.obs[:n]
        # the angle read from (cos, sin) is the env's internal angle, normalised to (-pi, pi]
        true = (np.asarray(ang) + np.pi) % (2 * np.pi) - np.pi
        np.testing.assert_allclose(pendulum_angle(obs), true, atol=1e-5)
        # the reward that arrives with obs t+1 is -(angle_t^2 + 0.1 thdot_t^2 + 0.001 u_t^2)
        u = np.clip(ep.action[:n, 0].astype(np.float64), -2, 2)
        angle_sq = -ep.reward[1:].astype(np.float64) - 0.1 * obs[:, 2].astype(np.float64) ** 2 - 0.001 * u**2
        from_reward = angle_sq <= PENDULUM_TOLERANCE**2
        margin = np.abs(angle_sq - PENDULUM_TOLERANCE**2) > 1e-4  # ignore float32 ties at the edge
        score = v(obs, ep.action[:n])
        np.testing.assert_array_equal(score[margin] > 0.5, from_reward[margin])
        upright_steps += int(score.sum())
        assert float(v.episode_score(score[None])[0]) == pytest.approx(float(score.sum()))
    assert 0 < upright_steps < sum(e.num_steps for e in eps)


def test_numpy_and_torch_agree_and_keep_their_type() -> None:
    rng = np.random.default_rng(0)
    dims = {"cartpole": 4, "acrobot": 6, "pendulum": 3, "mountaincar": 2, "mountaincar_continuous": 2}
    for name, v in BUILTINS.items():
        x = rng.normal(0, 1, size=(64, dims[name])).astype(np.float32)
        if name == "acrobot":
            t = rng.uniform(-np.pi, np.pi, size=(64, 2))
            x[:, :4] = np.stack([np.cos(t[:, 0]), np.sin(t[:, 0]), np.cos(t[:, 1]), np.sin(t[:, 1])], -1)
        a = v(x)
        b = v(torch.from_numpy(x))
        assert isinstance(a, np.ndarray) and a.dtype == np.float32 and a.shape == (64,)
        assert isinstance(b, torch.Tensor) and b.dtype == torch.float32 and b.shape == (64,)
        np.testing.assert_array_equal(a, b.numpy())
        assert set(np.unique(a)) <= {0.0, 1.0}
        assert 0 < a.sum() < 64 or name in ("acrobot",), f"{name}: the check should split random obs"


def test_user_verifier_by_import_path_and_errors() -> None:
    mod = types.ModuleType("my_checks")

    def far_right(obs, action=None):
        return (np.asarray(obs)[:, 0] > 1.0).astype(np.float32)

    far_right.mode = "reach"
    mod.far_right = far_right
    sys.modules["my_checks"] = mod
    try:
        v = get_verifier("my_checks:far_right")
        assert v.mode == "reach"
        np.testing.assert_array_equal(v(np.array([[2.0, 0.0], [0.0, 0.0]])), [1.0, 0.0])
        with pytest.raises(VerifierError, match="no callable 'nope'"):
            get_verifier("my_checks:nope")
    finally:
        del sys.modules["my_checks"]
    with pytest.raises(VerifierError, match="cannot import"):
        get_verifier("no_such_module_xyz:f")
    with pytest.raises(VerifierError, match="unknown verifier"):
        get_verifier("HalfCheetah")
    with pytest.raises(VerifierError, match=r"expected obs of shape \(n, 4\)"):
        get_verifier("cartpole")(np.zeros((3, 5)))
