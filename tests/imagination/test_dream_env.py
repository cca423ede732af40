"""DreamEnv semantics on a real (tiny, briefly trained) CartPole world model."""

from __future__ import annotations

import dataclasses

import gymnasium as gym
import numpy as np
import pytest
import torch
from gymnasium.utils.env_checker import check_env

from dreamlab.imagination.dream_env import DreamDynamics, DreamEnv, DreamEnvError, DreamState, dream_step


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
            assert np.all(dream.get_state().steps[term | trunc] == 0)  # restarted in the same step
    assert ended > 0
    assert np.array_equal(dream.render(), dream._decode(dream.latent))


def test_always_pushing_one_way_terminates_sooner_than_balancing(cartpole_setup: dict):
    """The dream has learned the physics: a constant push ends episodes; alternating lasts longer."""
    wm, eps = cartpole_setup["wm"], cartpole_setup["episodes"]
    lengths = {}
    for name, policy in {
        "push": lambda o, t: np.ones(len(o), np.int64),
        "balance": lambda o, t: (o[:, 2] + 0.5 * o[:, 3] > 0).astype(np.int64),
    }.items():
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
    assert torch.equal(dream.latent["deter"], snap.latent["deter"])


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
    det = DreamEnv(
        dream.wm, dream.start_episodes, num_envs=2, max_steps=30, seed=0, deterministic=True, autoreset=False
    )
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
    env = DreamEnv(
        wm,
        None,
        num_envs=4,
        obs_mode="latent",
        max_steps=5,
        seed=0,
        reward_fn=lambda obs, act: np.full(len(obs), 2.0),
        penalty=10.0,
        autoreset=False,
    )
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


def _same(a: DreamState, b: DreamState) -> bool:
    """Every field equal (latent tensors, counters, flags, last obs, generator state)."""
    return (
        a.latent.keys() == b.latent.keys()
        and all(torch.equal(a.latent[k], b.latent[k]) for k in a.latent)
        and all(np.array_equal(getattr(a, f), getattr(b, f)) for f in ("steps", "done", "term", "trunc", "obs"))
        and a.rng == b.rng
    )


def test_dream_state_repeat_and_index_give_the_branch_layout(dream: DreamEnv):
    dream.reset(seed=4)
    for a in np.random.default_rng(2).integers(0, 2, (3, 6)):
        dream.step(a)
    snap = dream.get_state()
    assert isinstance(snap, DreamState) and snap.num_branches == len(snap) == 6
    assert snap.latent.keys() == {"deter", "stoch", "logits"}
    assert all(v.shape[0] == 6 for v in snap.latent.values()) and snap.obs.shape == (6, 4)
    rep = snap.repeat(3)
    assert len(rep) == 18 and rep.rng == snap.rng
    for i in range(6):
        for j in range(3):  # rows i*3 .. i*3+2 are copies of branch i
            assert torch.equal(rep.latent["stoch"][i * 3 + j], snap.latent["stoch"][i])
            assert rep.steps[i * 3 + j] == snap.steps[i] and np.array_equal(rep.obs[i * 3 + j], snap.obs[i])
    assert _same(rep.index(slice(0, None, 3)), snap)
    assert _same(dream.fork(3).get_state(), rep)  # fork(k) = set_state(get_state().repeat(k))
    one = snap.index(2)
    assert len(one) == 1 and torch.equal(one.latent["deter"][0], snap.latent["deter"][2])
    assert _same(snap.index(-1), snap.index(5))
    picked = snap.index(torch.tensor([4, 0]))
    assert (
        torch.equal(picked.latent["deter"], snap.latent["deter"][[4, 0]])
        and picked.steps.tolist() == snap.steps[[4, 0]].tolist()
    )
    mask = np.array([True, False, True, False, False, True])
    assert _same(snap.index(mask), snap.index([0, 2, 5])) and _same(
        snap.index(torch.as_tensor(mask)), snap.index([0, 2, 5])
    )
    with pytest.raises(DreamEnvError, match="out of range for 6 branches"):
        snap.index(6)
    with pytest.raises(DreamEnvError, match="bool mask must have shape"):
        snap.index(np.ones(5, bool))
    with pytest.raises(DreamEnvError, match="k must be >= 1"):
        snap.repeat(0)
    moved = snap.to("cpu")
    assert _same(moved, snap) and moved.latent["deter"].data_ptr() != snap.latent["deter"].data_ptr()
    with pytest.raises(DreamEnvError, match="same batch size"):
        dataclasses.replace(snap, steps=snap.steps[:5])


def test_dream_state_is_frozen_and_never_aliases_the_env(dream: DreamEnv):
    dream.reset(seed=6)
    snap = dream.get_state()
    with pytest.raises(dataclasses.FrozenInstanceError):
        snap.steps = np.zeros(6, np.int64)  # type: ignore[misc]
    kept = snap.clone()
    for a in np.random.default_rng(3).integers(0, 2, (40, 6)):
        dream.step(a)  # 40 > max_steps: every branch autoresets at least once
    assert _same(snap, kept)  # stepping after get_state left the snapshot unchanged
    live = dream.get_state()
    snap.latent["deter"].add_(1.0)
    snap.obs[:] = 0.0
    assert _same(dream.get_state(), live)  # nor does writing into a snapshot reach the env
    dream.set_state(kept)
    kept.latent["deter"].add_(1.0)
    assert not torch.equal(dream.latent["deter"], kept.latent["deter"])  # set_state copies too
    with pytest.raises(DreamEnvError, match="set_state: snapshot holds 3 branches, this env has 6"):
        dream.set_state(live.index(slice(0, 3)))
    with pytest.raises(DreamEnvError, match="set_state: expected a DreamState, got dict"):
        dream.set_state({"latent": live.latent})  # type: ignore[arg-type]
    obs, _ = dream.reset(options={"states": live})  # a DreamState's latent is a start too
    assert np.array_equal(obs, dream._decode(live.latent)) and dream.get_state().steps.tolist() == [0] * 6


def test_pure_step_leaves_its_input_unchanged_and_matches_the_env(dream: DreamEnv):
    dream.reset(seed=8)
    # every branch one step from its limit: the step truncates and autoresets all rows
    state = dataclasses.replace(dream.get_state(), steps=np.full(6, 29, np.int64))
    kept = state.clone()
    actions = np.ones(6, np.int64)
    for dyn in (
        DreamDynamics(dream.wm, 30, dream.start_bank),
        DreamDynamics(dream.wm, 30, dream.start_bank, termination="sample", penalty=1.0, autoreset=False),
    ):
        nxt, obs, rew, term, trunc, info = dream_step(dyn, state, actions)
        assert _same(state, kept)  # the input (latent, counters, flags, obs, generator) is untouched
        assert nxt.rng != state.rng and nxt.latent["deter"].data_ptr() != state.latent["deter"].data_ptr()
        assert _same(dream_step(dyn, state, actions)[0], nxt)  # a function of its inputs
    nxt, obs, rew, term, trunc, info = dream_step(DreamDynamics(dream.wm, 30, dream.start_bank), state, actions)
    assert (term | trunc).all() and info["_final_obs"].all() and nxt.steps.tolist() == [0] * 6
    dream.set_state(state)
    env_out = dream.step(actions)
    for x, y in zip(env_out[:4], (obs, rew, term, trunc)):
        assert np.array_equal(x, y)
    assert _same(dream.get_state(), nxt) and np.array_equal(env_out[4]["final_obs"], info["final_obs"])
    with pytest.raises(DreamEnvError, match="expected 6 actions"):
        dream_step(DreamDynamics(dream.wm, 30, dream.start_bank), state, np.ones(5, np.int64))


def test_equal_seeds_give_equal_dreams_whatever_the_global_torch_rng(cartpole_setup: dict):
    """The start bank filters the logs with a sampling posterior: it is seeded by the env's seed, so two
    DreamEnvs built alike dream alike even when torch's global generator has moved between them."""
    runs = []
    for global_seed in (0, 1):
        torch.manual_seed(global_seed)
        env = DreamEnv(cartpole_setup["wm"], cartpole_setup["episodes"], num_envs=4, max_steps=30, seed=3)
        obs, _ = env.reset(seed=2)
        steps = [obs] + [env.step(np.ones(4, np.int64))[0] for _ in range(5)]
        runs.append(np.stack(steps))
    assert np.array_equal(runs[0], runs[1])
    other = DreamEnv(cartpole_setup["wm"], cartpole_setup["episodes"], num_envs=4, max_steps=30, seed=4)
    assert not np.array_equal(other.reset(seed=2)[0], runs[0][0])  # another env seed: another start bank
