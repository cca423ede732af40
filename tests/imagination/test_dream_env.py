"""DreamEnv semantics on a real (tiny, briefly trained) CartPole world model."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from dreamlab.imagination.dream_env import DreamEnv, DreamEnvError


@pytest.fixture()
def dream(cartpole_setup: dict) -> DreamEnv:
    return DreamEnv(cartpole_setup["wm"], cartpole_setup["episodes"], num_envs=6, max_steps=30, seed=3)


def test_single_env_view_passes_check_env(dream: DreamEnv):
    single = dream.single_env()
    check_env(single, skip_render_check=True)
    obs, _ = single.reset(seed=1)
    assert single.observation_space.contains(obs)


def test_vector_api_spaces_bounds_and_autoreset(dream: DreamEnv):
    assert isinstance(dream, gym.vector.VectorEnv)
    obs, _ = dream.reset(seed=0)
    box = dream.single_observation_space
    assert obs.shape == (6, 4) and obs.dtype == np.float32
    ended = 0
    for _ in range(40):
        obs, rew, term, trunc, info = dream.step(np.ones(6, np.int64))  # always push right: falls soon
        assert obs.shape == (6, 4) and rew.shape == (6,) and rew.dtype == np.float32
        assert np.all(obs[:, 0] <= box.high[0]) and np.all(obs[:, 2] >= box.low[2])  # clipped into the Box
        assert not np.any(term & trunc)
        if (term | trunc).any():
            ended += int((term | trunc).sum())
            assert info["_final_obs"].tolist() == (term | trunc).tolist()
            assert np.all(dream._steps[term | trunc] == 0)  # restarted in the same step
    assert ended > 0
    assert np.array_equal(dream.render(), dream._decode(dream.latent))


def test_always_pushing_one_way_terminates_sooner_than_balancing(cartpole_setup: dict):
    """The dream has learned the physics: a constant push ends episodes; alternating lasts longer."""
    wm, eps = cartpole_setup["wm"], cartpole_setup["episodes"]
    lengths = {}
    for name, policy in {"push": lambda o, t: np.ones(len(o), np.int64),
                         "balance": lambda o, t: (o[:, 2] + 0.5 * o[:, 3] > 0).astype(np.int64)}.items():
        env = DreamEnv(wm, eps, num_envs=32, max_steps=200, seed=0, autoreset=False, start_points="first")
        obs, _ = env.reset(seed=0)
        done = np.zeros(32, bool)
        steps = np.zeros(32)
        t = 0
        while not done.all():
            obs, _, term, trunc, _ = env.step(policy(obs, t))
            steps += ~done
            done |= term | trunc
            t += 1
        lengths[name] = steps.mean()
    assert lengths["push"] < 20 and lengths["balance"] > 2 * lengths["push"], lengths


def test_set_state_restores_exactly(dream: DreamEnv):
    dream.reset(seed=5)
    rng = np.random.default_rng(0)
    for _ in range(3):
        dream.step(rng.integers(0, 2, 6))
    snap = dream.get_state()
    actions = [rng.integers(0, 2, 6) for _ in range(12)]
    first = [dream.step(a) for a in actions]
    dream.set_state(snap)
    second = [dream.step(a) for a in actions]
    for a, b in zip(first, second):
        for x, y in zip(a[:4], b[:4]):
            assert np.array_equal(x, y)
    # the snapshot is a deep copy: stepping did not change it
    dream.set_state(snap)
    assert torch.equal(dream.latent["deter"], snap["latent"]["deter"])


def test_forks_evolve_identically_under_identical_actions_and_seeds(dream: DreamEnv):
    dream.reset(seed=2)
    f1, f2 = dream.fork(3), dream.fork(3)
    assert f1.num_envs == 18
    assert torch.equal(f1.latent["deter"][0], f1.latent["deter"][2])  # copies of branch 0
    assert torch.equal(f1.latent["deter"][3], dream.latent["deter"][1])
    acts = np.random.default_rng(1).integers(0, 2, (10, 18))
    for a in acts:
        o1, r1, t1, u1, _ = f1.step(a)
        o2, r2, t2, u2, _ = f2.step(a)
        assert np.array_equal(o1, o2) and np.array_equal(r1, r2) and np.array_equal(t1, t2)
    # deterministic dreams: the k copies of one branch stay identical among themselves
    det = DreamEnv(dream.wm, dream.start_episodes, num_envs=2, max_steps=30, seed=0, deterministic=True,
                   autoreset=False)
    det.reset(seed=0)
    forked = det.fork(4)
    for _ in range(8):
        obs, rew, *_ = forked.step(np.zeros(8, np.int64))
    assert np.allclose(obs[:4], obs[0]) and np.allclose(obs[4:], obs[4])
    # stochastic forks of one branch do diverge (the point of forking)
    sto = dream.fork(8)
    for _ in range(10):
        obs, *_ = sto.step(np.zeros(48, np.int64))
    assert not np.allclose(sto.latent["deter"][0], sto.latent["deter"][1:8])


def test_reset_from_given_states_latent_mode_and_hooks(cartpole_setup: dict):
    wm = cartpole_setup["wm"]
    states = {k: v[:4] for k, v in wm.initial(4).items()}
    env = DreamEnv(wm, None, num_envs=4, obs_mode="latent", max_steps=5, seed=0,
                   reward_fn=lambda obs, act: np.full(len(obs), 2.0), penalty=10.0, autoreset=False)
    feat, _ = env.reset(options={"states": states})
    assert feat.shape == (4, wm.feature_dim)
    _, rew, _, _, info = env.step(np.zeros(4, np.int64))
    assert np.allclose(rew, 2.0 - 10.0 * info["disagreement"], atol=1e-5)
    halting = DreamEnv(wm, cartpole_setup["episodes"], num_envs=4, seed=0, halt_threshold=-1.0)
    halting.reset(seed=0)
    _, _, term, trunc, info = halting.step(np.zeros(4, np.int64))
    assert (trunc | term).all() and info["halted"].all()
    with pytest.raises(DreamEnvError, match="options\\['states'\\]"):
        env.reset(options={"states": wm.initial(3)})
    with pytest.raises(DreamEnvError, match="start_episodes"):
        DreamEnv(wm, None, num_envs=2).reset()
