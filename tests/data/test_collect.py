"""Collection: CLI counts, no phantom transitions, truncation, interruption, behaviour quality."""

from __future__ import annotations

import json
import re
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from dreamlab.cli import main
from dreamlab.core.protocol import RandomPolicy
from dreamlab.data.behaviour import (
    CARTPOLE_MEDIOCRE_EPSILON,
    MCC_MINORITY_EPSILON,
    PolicyLoadError,
    evaluate,
    load_policy,
    make_behaviour,
)
from dreamlab.data.collect import collect
from dreamlab.data.store import EpisodeStore, StoreError


def _stored(out: str) -> int:
    m = re.search(r"stored (\d+) steps", out)
    assert m, out
    return int(m.group(1))


def test_collect_cli_count_equals_logs_info_and_second_run_appends(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    out = str(tmp_path / "x")
    assert (
        main(
            ["collect", "--env", "CartPole-v1", "--policy", "random", "--steps", "5000", "--out", out, "--no-progress"]
        )
        == 0
    )
    first = _stored(capsys.readouterr().out)
    assert main(["logs", "info", out, "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["steps"] == first >= 5000
    store = EpisodeStore(out)
    on_disk = sum(len(store.read_chunk(p.name)) for p in (tmp_path / "x" / "chunks").glob("*.npz"))
    assert info["env_id"] == "CartPole-v1" and info["episodes"] == on_disk and store.version == 2
    assert (
        main(
            [
                "collect",
                "--env",
                "CartPole-v1",
                "--steps",
                "300",
                "--num-envs",
                "2",
                "--seed",
                "1",
                "--out",
                out,
                "--no-progress",
            ]
        )
        == 0
    )
    second = _stored(capsys.readouterr().out)
    assert main(["logs", "info", out, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["steps"] == first + second
    assert main(["logs", "check", out]) == 0
    # a different env into the same store is refused and nothing changes
    assert main(["collect", "--env", "Acrobot-v1", "--steps", "50", "--out", out, "--no-progress"]) == 2
    assert "does not match" in capsys.readouterr().err
    assert EpisodeStore(out).num_steps == first + second


def test_no_phantom_transitions(tmp_path: Path) -> None:
    """Every stored CartPole transition is reproduced exactly by the simulator from (obs, action)."""
    # 2 envs x >750 vector steps: the collector's 512-step buffers are compacted along the way
    summary = collect("CartPole-v1", "random", steps=1500, num_envs=2, seed=5, out=tmp_path / "s", progress=False)
    store = EpisodeStore(tmp_path / "s")
    assert summary.steps_stored == store.num_steps >= 1500
    sim = gym.make("CartPole-v1").unwrapped
    sim.reset(seed=0)
    for ep in store:
        assert np.all(np.abs(ep.obs[0]) <= 0.05)  # a reset observation
        for t in range(ep.num_steps):
            sim.state, sim.steps_beyond_terminated = ep.obs[t].astype(np.float64), None
            nxt, r, term, _, _ = sim.step(int(ep.action[t]))
            assert np.allclose(nxt, ep.obs[t + 1], atol=1e-5), (t, ep.obs[t], ep.obs[t + 1])
            assert term == bool(ep.is_terminal[t + 1])
        assert ep.terminated and ep.reward[0] == 0 and np.all(ep.reward[1:] == 1)


def test_long_episodes_survive_buffer_compaction_exactly(tmp_path: Path) -> None:
    """Pendulum (200-step episodes, truncated) across buffer compaction and growth."""
    collect(
        "Pendulum-v1",
        "random",
        steps=1200,
        num_envs=2,
        seed=3,
        out=tmp_path / "s",
        max_episode_steps=700,
        progress=False,
        writer="inline",
    )
    sim = gym.make("Pendulum-v1").unwrapped
    sim.reset(seed=0)
    eps = EpisodeStore(tmp_path / "s").episodes()
    assert [e.num_steps for e in eps] == [700, 700] and not any(e.terminated for e in eps)
    for ep in eps:
        for t in range(ep.num_steps):
            c, s, thd = ep.obs[t].astype(np.float64)
            sim.state = np.array([np.arctan2(s, c), thd])
            nxt, r, *_ = sim.step(ep.action[t])
            assert np.allclose(nxt, ep.obs[t + 1], atol=1e-4) and np.isclose(r, ep.reward[t + 1], atol=1e-3), t


def test_truncated_episodes_are_last_not_terminal(tmp_path: Path) -> None:
    summary = collect(
        "CartPole-v1",
        "heuristic",
        steps=200,
        num_envs=2,
        seed=0,
        out=tmp_path / "s",
        max_episode_steps=25,
        progress=False,
        writer="inline",
    )
    eps = EpisodeStore(tmp_path / "s").episodes()
    assert summary.steps_stored == sum(e.num_steps for e in eps) >= 200
    for ep in eps:
        assert ep.num_steps == 25 and ep.is_last[-1] and not ep.is_terminal.any()


class _StopAfter:
    """A policy whose operator presses Ctrl-C after some steps."""

    def __init__(self, env: gym.Env, calls: int = 120):
        self.inner = RandomPolicy(env.action_space, seed=0)
        self.calls = calls

    def reset(self, n: int) -> None:
        self.inner.reset(n)

    def act(self, obs: np.ndarray, is_first: np.ndarray | None = None) -> np.ndarray:
        self.calls -= 1
        if self.calls < 0:
            raise KeyboardInterrupt
        return self.inner.act(obs, is_first)


def test_interrupted_run_keeps_every_finished_episode(tmp_path: Path) -> None:
    policy = load_policy("tests.data.test_collect:_StopAfter", gym.make("CartPole-v1"))
    with pytest.raises(KeyboardInterrupt):
        collect("CartPole-v1", policy, steps=10_000, num_envs=4, seed=0, out=tmp_path / "s", progress=False)
    store = EpisodeStore(tmp_path / "s")
    # 120 vector steps x 4 envs; random CartPole episodes last ~22 steps, so ~15-20 finished
    assert 8 <= len(store) and store.num_steps <= 480 and store.check() == []
    assert store.orphans() == [] and not (tmp_path / "s" / "episodes").exists()  # every chunk indexed


def make_random(env: gym.Env) -> RandomPolicy:
    return RandomPolicy(env.action_space, seed=1)


def test_policy_specs() -> None:
    env = gym.make("CartPole-v1")
    assert isinstance(load_policy("random", env), RandomPolicy)
    pol = load_policy("heuristic", env)
    assert pol.act(np.zeros((3, 4), np.float32)).shape == (3,)
    pol = load_policy("tests.data.test_collect:make_random", env)  # module:function(env) -> Policy
    assert isinstance(pol, RandomPolicy) and pol.act(np.zeros((5, 4))).shape == (5,)
    with pytest.raises(PolicyLoadError, match="expected random, heuristic"):
        load_policy("nonsense", env)
    with pytest.raises(PolicyLoadError, match="cannot import"):
        load_policy("no_such_module_xyz:Thing", env)
    with pytest.raises(PolicyLoadError, match="lacks reset"):
        load_policy("numpy:zeros_like", env)
    with pytest.raises(PolicyLoadError, match="no heuristic"):
        make_behaviour("LunarLander-v3", env.action_space)


def test_heuristics_are_strong_and_epsilon_degrades_them(tmp_path: Path) -> None:
    cp = gym.make("CartPole-v1").action_space
    assert evaluate("CartPole-v1", make_behaviour("CartPole-v1", cp, 0.0, seed=0), 3).min() == 500
    # the offline benchmark's logs: 20k steps of noisy heuristic whose best episode is below 300
    s = collect(
        "CartPole-v1",
        "heuristic",
        steps=20_000,
        num_envs=8,
        seed=0,
        out=tmp_path / "cp",
        epsilon=CARTPOLE_MEDIOCRE_EPSILON,
        progress=False,
    )
    r = np.asarray(s.returns)
    assert s.steps_stored >= 20_000 and r.max() < 300 and 20 < r.mean() < 150
    rand = evaluate("CartPole-v1", RandomPolicy(cp, seed=0), 10).mean()
    assert r.mean() > rand
    for env_id, threshold in [("Acrobot-v1", -200), ("MountainCar-v0", -160), ("Pendulum-v1", -400)]:
        sp = gym.make(env_id).action_space
        assert evaluate(env_id, make_behaviour(env_id, sp, 0.0, seed=0), 3).mean() > threshold
        assert evaluate(env_id, RandomPolicy(sp, seed=0), 2).mean() < threshold
    mcc = gym.make("MountainCarContinuous-v0").action_space
    assert evaluate("MountainCarContinuous-v0", make_behaviour("MountainCarContinuous-v0", mcc, 0.0, 0), 2).min() > 80
    s = collect(
        "MountainCarContinuous-v0",
        "heuristic",
        steps=20_000,
        num_envs=8,
        seed=0,
        out=tmp_path / "mcc",
        epsilon=MCC_MINORITY_EPSILON,
        progress=False,
    )
    reached = np.mean([e.terminated for e in EpisodeStore(tmp_path / "mcc")])
    assert 0.0 < reached < 0.5, reached


def test_bad_env_spec_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no_such_mod"):
        collect("no_such_mod:Env", "random", steps=10, out=tmp_path / "s", progress=False)
    with pytest.raises(StoreError):
        EpisodeStore(tmp_path / "s")


class NanEnv(gym.Env):
    """Five-step episodes; the third episode's observations turn NaN."""

    observation_space = gym.spaces.Box(-10, 10, (2,), np.float32)
    action_space = gym.spaces.Discrete(2)

    def __init__(self) -> None:
        self.episode, self.t = -1, 0

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.episode, self.t = self.episode + 1, 0
        return np.zeros(2, np.float32), {}

    def step(self, action):
        self.t += 1
        val = np.nan if self.episode == 2 and self.t == 3 else float(self.t)
        return np.full(2, val, np.float32), 1.0, self.t >= 5, False, {}


def test_module_class_env_and_bad_env_data_is_refused_keeping_the_rest(tmp_path: Path) -> None:
    for writer in ("process", "inline"):
        out = tmp_path / writer
        with pytest.raises(ValueError, match=r"\[field 'obs'\].*NaN"):
            collect(
                "tests.data.test_collect:NanEnv",
                "random",
                steps=100,
                num_envs=1,
                out=out,
                progress=False,
                writer=writer,
            )
        store = EpisodeStore(out)
        assert store.env_id == "tests.data.test_collect:NanEnv"
        assert len(store) >= 2 and store.check() == []  # the episodes before the bad one are kept


def test_the_lockstep_loop_stores_what_a_same_step_vector_env_would(tmp_path: Path) -> None:
    """The collector steps its envs itself; the episodes equal those of SyncVectorEnv(SAME_STEP)."""
    from dreamlab.data.collect import make_vector_env

    k, seed = 3, 7
    collect("CartPole-v1", "random", steps=600, num_envs=k, seed=seed, out=tmp_path / "s", progress=False)
    ours = EpisodeStore(tmp_path / "s").episodes()
    envs = make_vector_env("CartPole-v1", k)
    policy = load_policy("random", gym.make("CartPole-v1"), seed=seed, env_id="CartPole-v1")
    obs, _ = envs.reset(seed=seed)
    policy.reset(k)
    first = np.ones(k, bool)
    current: list[list] = [[[o], []] for o in obs]
    theirs: list[tuple[np.ndarray, np.ndarray, bool]] = []
    while len(theirs) < len(ours):
        a = policy.act(obs, first)
        obs, _, term, trunc, info = envs.step(a)
        first = term | trunc
        for i in range(k):  # episodes that end at one step are stored in env order by both
            current[i][1].append(a[i])
            current[i][0].append(info["final_obs"][i] if first[i] else obs[i])
            if first[i]:
                theirs.append((np.stack(current[i][0]), np.stack(current[i][1]), bool(term[i])))
                current[i] = [[obs[i]], []]
    for ep, (o, a, terminated) in zip(ours, theirs, strict=True):
        assert np.array_equal(ep.obs, o) and np.array_equal(ep.action[:-1], a) and ep.terminated == terminated
