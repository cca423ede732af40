"""Import/export: Minari round trips (exact), JSONL deployment logs, gymnasium transitions."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from dreamlab.cli import main
from dreamlab.data.formats import (
    FormatError,
    episode_to_transitions,
    episodes_from_transitions,
    read_jsonl,
    read_minari,
)
from dreamlab.data.store import EpisodeStore
from tests.data.helpers import CARTPOLE, assert_same_episode, cartpole_episode, make_store, snapshot


@pytest.fixture
def minari_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "minari"
    home.mkdir()
    monkeypatch.setenv("MINARI_DATASETS_PATH", str(home))
    return home


def test_minari_round_trip_through_the_cli_is_exact(tmp_path: Path, minari_home: Path) -> None:
    store = make_store(tmp_path / "a", n=4, feedback=True)
    # include a truncated episode (is_last, not terminal)
    store.add(cartpole_episode(50, max_steps=8, feedback=True))
    assert not store.episodes()[-1].terminated
    assert (
        main(["logs", "export", "--format", "minari", str(tmp_path / "a"), "--out", "dreamlab/cartpole/test-v0"]) == 0
    )
    assert (minari_home / "dreamlab" / "cartpole" / "test-v0" / "data").is_dir()
    assert (
        main(["logs", "import", "--format", "minari", "dreamlab/cartpole/test-v0", "--out", str(tmp_path / "b")]) == 0
    )
    a, b = EpisodeStore(tmp_path / "a"), EpisodeStore(tmp_path / "b")
    assert b.env_id == CARTPOLE and len(a) == len(b) == 5
    for ea, eb in zip(a, b):
        assert_same_episode(ea, eb)


def test_minari_dataset_to_store_and_back_is_exact(tmp_path: Path, minari_home: Path) -> None:
    import minari
    from minari.data_collector import EpisodeBuffer

    env = gym.make("Pendulum-v1")
    rng = np.random.default_rng(0)
    bufs = []
    for i, n in enumerate((5, 9, 3)):
        o, _ = env.reset(seed=i)
        obs, acts, rews = [o], [], []
        for _ in range(n):
            a = rng.uniform(-2, 2, (1,)).astype(np.float32)
            o, r, *_ = env.step(a)
            obs.append(o)
            acts.append(a)
            rews.append(r)
        term = np.zeros(n, bool)
        trunc = np.zeros(n, bool)
        trunc[-1] = True
        bufs.append(
            EpisodeBuffer(
                id=i,
                observations=np.stack(obs),
                actions=np.stack(acts),
                rewards=np.asarray(rews, np.float32),
                terminations=term,
                truncations=trunc,
            )
        )
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers("pend/src-v0", bufs, env="Pendulum-v1", algorithm_name="t")
    logs = read_minari("pend/src-v0")
    assert logs.env_id == "Pendulum-v1" and len(logs.episodes) == 3
    for buf, ep in zip(bufs, logs.episodes):
        assert np.array_equal(ep.obs, buf.observations) and ep.obs.dtype == buf.observations.dtype
        assert np.array_equal(ep.action[:-1], buf.actions)
        assert np.array_equal(ep.reward[1:], buf.rewards) and ep.reward[0] == 0
        assert ep.is_last[-1] and not ep.is_terminal[-1]
    # by directory as well, then store -> Minari -> store
    logs2 = read_minari(minari_home / "pend" / "src-v0")
    for x, y in zip(logs.episodes, logs2.episodes):
        assert_same_episode(x, y)
    store = EpisodeStore.create(tmp_path / "s", logs.env_id, logs.observation_space, logs.action_space)
    store.add_many(logs.episodes)
    assert main(["logs", "export", "--format", "minari", str(tmp_path / "s"), "--out", "pend/copy-v0"]) == 0
    for x, y in zip(logs.episodes, read_minari("pend/copy-v0").episodes):
        assert_same_episode(x, y)


def test_minari_import_is_lazy_and_missing_minari_is_a_clear_error(tmp_path: Path) -> None:
    code = "import sys, data.formats, data.collect, dreamlab.commands.logs; print('minari' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    code = (
        "import sys; sys.modules['minari'] = None\n"
        "from data.formats import read_minari, FormatError\n"
        "try:\n    read_minari('x/y-v0')\nexcept FormatError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert "dreamlab[offline]" in out.stdout


def _line(
    ep: object, obs: list[float], action: int, reward: float, term: bool = False, trunc: bool = False, **extra: object
) -> str:
    return json.dumps(
        {"episode": ep, "obs": obs, "action": action, "reward": reward, "terminated": term, "truncated": trunc, **extra}
    )


def test_jsonl_import_with_feedback_and_final_obs_rules(tmp_path: Path) -> None:
    src = tmp_path / "deploy.jsonl"
    lines = [
        _line("a", [0.0, 0.0, 0.0, 0.0], 1, 1.0, feedback=1, info={"user": "u1"}),
        _line("b", [0.01, 0.0, 0.0, 0.0], 0, 1.0),
        _line("a", [0.1, 0.0, 0.0, 0.0], 0, 1.0, feedback=-1),
        _line("a", [0.2, 0.0, 0.0, 0.0], 1, 1.0, term=True, feedback=0.5, next_obs=[0.3, 0.1, 0.2, 0.0]),
        _line("b", [0.02, 0.0, 0.0, 0.0], 1, 1.0, term=True),  # terminated, no next_obs: repeat
        _line("c", [0.5, 0.0, 0.0, 0.0], 1, 1.0),
        _line("c", [0.6, 0.0, 0.0, 0.0], 1, 1.0, trunc=True),  # truncated, no next_obs: drop line
    ]
    src.write_text("\n".join(lines) + "\n")
    assert main(["logs", "import", "--format", "jsonl", str(src), "--out", str(tmp_path / "s"), "--env", CARTPOLE]) == 0
    eps = EpisodeStore(tmp_path / "s").episodes()
    assert [e.num_steps for e in eps] == [3, 2, 1]
    a, b, c = eps
    assert np.array_equal(a.feedback, np.array([0, 1, -1, 0.5], np.float32))  # lands with the next obs
    assert np.array_equal(a.obs[-1], np.array([0.3, 0.1, 0.2, 0.0], np.float32))
    assert np.array_equal(a.action, [1, 0, 1, 0]) and a.terminated
    assert b.terminated and np.array_equal(b.obs[-1], b.obs[-2])
    assert not c.terminated and c.is_last[-1] and np.array_equal(c.obs[-1], np.array([0.6, 0, 0, 0], np.float32))
    notes = read_jsonl(src, CARTPOLE).notes
    assert notes["final_obs_given"] == 1 and notes["final_obs_repeated"] == 1 and notes["last_line_dropped"] == 1


def test_jsonl_round_trip_is_exact(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s", n=3, feedback=True)
    assert main(["logs", "export", "--format", "jsonl", str(tmp_path / "s"), "--out", str(tmp_path / "x.jsonl")]) == 0
    logs = read_jsonl(tmp_path / "x.jsonl")  # spaces and env id from the header line
    assert logs.env_id == CARTPOLE
    for a, b in zip(store, logs.episodes):
        assert_same_episode(a, b)


def test_malformed_jsonl_line_names_file_and_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_store(tmp_path / "s", n=2)
    snap = snapshot(store)
    src = tmp_path / "bad.jsonl"
    src.write_text(
        _line(0, [0, 0, 0, 0], 1, 1.0)
        + "\n"
        + _line(0, [0, 0, 0, 0], 1, 1.0)
        + "\n"
        + '{"episode": 0, "obs": [0, 0, 0, 0], "action": 1,\n'
    )
    with pytest.raises(FormatError, match=rf"{src}:3: not valid JSON"):
        read_jsonl(src)
    assert main(["logs", "import", "--format", "jsonl", str(src), "--out", str(tmp_path / "s")]) == 2
    assert f"{src}:3" in capsys.readouterr().err
    src.write_text(_line(0, [0, 0, 0, 0], 1, 1.0) + "\n" + json.dumps({"episode": 0, "obs": [0, 0, 0, 0]}) + "\n")
    with pytest.raises(FormatError, match=rf"{src}:2: missing field\(s\) \['action', 'reward'"):
        read_jsonl(src)
    src.write_text(_line(0, [0, 0, 0], 1, 1.0, term=True) + "\n")
    with pytest.raises(FormatError, match=rf"{src}:1: field 'obs' has shape \(3,\), expected \(4,\)"):
        read_jsonl(src, CARTPOLE)
    src.write_text(_line(0, [0, 0, 0, 0], 7, 1.0, term=True) + "\n")
    assert main(["logs", "import", "--format", "jsonl", str(src), "--out", str(tmp_path / "s"), "--env", CARTPOLE]) == 2
    assert "field 'action'" in capsys.readouterr().err
    assert snapshot(store) == snap


def test_gymnasium_transitions_both_ways() -> None:
    eps = [cartpole_episode(i, max_steps=12, feedback=True) for i in range(3)]
    transitions = [tr for ep in eps for tr in episode_to_transitions(ep)]
    back = episodes_from_transitions(transitions, gym.make(CARTPOLE).action_space)
    for a, b in zip(eps, back):
        assert_same_episode(a, b)
    tuples = [(t["obs"], t["action"], t["reward"], t["next_obs"], t["terminated"], t["truncated"]) for t in transitions]
    assert [e.num_steps for e in episodes_from_transitions(tuples)] == [e.num_steps for e in eps]
    # a phantom transition (final obs of one episode -> reset obs of the next, unflagged) is refused
    broken = list(transitions)
    broken[eps[0].num_steps - 1] = {**broken[eps[0].num_steps - 1], "terminated": False, "truncated": False}
    with pytest.raises(FormatError, match=rf"transition {eps[0].num_steps}: obs does not equal"):
        episodes_from_transitions(broken)


def test_episode_validation_of_imported_minari_catches_mid_episode_termination(
    tmp_path: Path, minari_home: Path
) -> None:
    import warnings

    import minari
    from minari.data_collector import EpisodeBuffer

    env = gym.make(CARTPOLE)
    term = np.array([False, True, False])
    buf = EpisodeBuffer(
        id=0,
        observations=np.zeros((4, 4), np.float32),
        actions=np.zeros(3, np.int64),
        rewards=np.ones(3, np.float32),
        terminations=term,
        truncations=np.zeros(3, bool),
    )
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        minari.create_dataset_from_buffers(
            "bad/mid-v0",
            [buf],
            env=None,
            observation_space=env.observation_space,
            action_space=env.action_space,
            algorithm_name="t",
        )
    with pytest.raises(FormatError, match=r"bad/mid-v0 \(episode 0\).*terminations"):
        read_minari("bad/mid-v0")
