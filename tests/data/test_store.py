"""EpisodeStore: round trip, laziness, concurrent appends, and every bad input refused (the
archive-level cases on version-1 archives; chunks in test_chunks.py)."""

from __future__ import annotations

import multiprocessing as mp
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from dreamlab.cli import main
from dreamlab.data.episodes import Episode, EpisodeError
from dreamlab.data.store import EpisodeStore, StoreError, load_episode_file
from tests.data.helpers import (
    CARTPOLE,
    assert_same_episode,
    cartpole_episode,
    cartpole_spaces,
    data_files,
    make_store,
    make_v1_store,
    snapshot,
)


def test_round_trip_and_stats(tmp_path: Path) -> None:
    eps = [cartpole_episode(i, feedback=True) for i in range(4)]
    obs_space, act_space = cartpole_spaces()
    store = EpisodeStore.create(tmp_path / "s", CARTPOLE, obs_space, act_space)
    names = store.add_many(eps[:3])
    names.append(store.add(eps[3]))
    again = EpisodeStore(tmp_path / "s")
    assert again.names() == names and again.env_id == CARTPOLE
    for a, b in zip(eps, again.episodes()):
        assert_same_episode(a, b)
    st = again.stats()
    assert st.episodes == 4 and st.steps == sum(e.num_steps for e in eps)
    assert np.allclose(st.returns, [e.ret for e in eps])
    assert again.check() == []


@pytest.mark.parametrize("version", [1, 2])
def test_iteration_is_lazy(version: int, tmp_path: Path) -> None:
    store = make_v1_store(tmp_path / "s", n=3) if version == 1 else make_store(tmp_path / "s", n=3, chunk_each=True)
    # corrupt the last file: a lazy iterator yields the first episodes before touching it
    assert len(set(store.paths())) == 3
    store.paths()[-1].write_bytes(b"garbage")
    it = iter(store)
    first = next(it)
    assert first.length > 1
    next(it)
    with pytest.raises(EpisodeError, match=store.paths()[-1].name):
        next(it)


def _append_worker(root: str, seed: int, n: int) -> None:
    store = EpisodeStore(root)
    for i in range(n):
        store.add(cartpole_episode(seed * 100 + i, max_steps=15))


def test_two_processes_append_at_once(tmp_path: Path) -> None:
    root = tmp_path / "s"
    make_store(root, n=1)
    ctx = mp.get_context("fork")
    procs = [ctx.Process(target=_append_worker, args=(str(root), s, 12)) for s in (1, 2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
        assert p.exitcode == 0
    store = EpisodeStore(root)
    assert len(store) == 25 and store.files() == data_files(root)  # 25 chunks, each indexed
    assert store.orphans() == [] and store.names() == sorted(store.names())
    assert store.num_steps == sum(e.num_steps for e in store)
    assert store.check() == []


# ------------------------------------------------------------------------------ bad input
def _check_cli_names(root: Path, path: Path, capsys: pytest.CaptureFixture[str], why: str) -> None:
    before = sorted(p.read_bytes() for p in (root / "episodes").glob("*.npz"))
    assert main(["logs", "check", str(root)]) == 1
    out = capsys.readouterr().out
    assert str(path) in out and why in out
    assert sorted(p.read_bytes() for p in (root / "episodes").glob("*.npz")) == before  # changed nothing


def test_truncated_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_v1_store(tmp_path / "s", n=3)
    good = [store.load(n) for n in store.names()[:2]]
    bad = store.paths()[2]
    bad.write_bytes(bad.read_bytes()[: bad.stat().st_size // 2])
    with pytest.raises(EpisodeError) as ei:
        store.load(bad.name)
    assert str(bad) in str(ei.value) and "truncated or corrupt" in str(ei.value)
    assert [p for p, _ in store.check()] == [str(bad)]
    for name, ep in zip(store.names()[:2], good):
        assert_same_episode(store.load(name), ep)
    _check_cli_names(tmp_path / "s", bad, capsys, "truncated or corrupt")


def test_corrupt_npz(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_v1_store(tmp_path / "s", n=2)
    bad = store.paths()[1]
    raw = bytearray(bad.read_bytes())
    raw[40:80] = b"\xff" * 40  # inside the first member's compressed data
    bad.write_bytes(bytes(raw))
    with pytest.raises(EpisodeError) as ei:
        store.load(bad.name)
    assert str(bad) in str(ei.value)
    assert store.load(store.names()[0]).length > 1
    _check_cli_names(tmp_path / "s", bad, capsys, str(bad.name))


class Evil:
    """Unpickling this would create a marker file."""

    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_pickle_inside_npz_is_never_loaded(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    store = make_v1_store(tmp_path / "s", n=2)
    snap = snapshot(store)
    marker = tmp_path / "pwned"
    ep = cartpole_episode(7)
    arrs = ep.arrays()
    evil = np.empty(ep.length, dtype=object)
    evil[:] = [Evil(str(marker))] * ep.length
    arrs["reward"] = evil
    bad = store.episode_dir / "ep-99999999999999999999-1-evil.npz"
    np.savez(bad, allow_pickle=True, **arrs)
    with zipfile.ZipFile(bad) as zf:  # the archive really holds a pickle
        assert b"pwned" in zf.read("reward.npy")
    with pytest.raises(EpisodeError) as ei:
        load_episode_file(bad, store.observation_space, store.action_space)
    assert str(bad) in str(ei.value) and "reward" in str(ei.value)
    problems = dict(store.check())
    assert "reward" in problems[str(bad)]
    _check_cli_names(tmp_path / "s", bad, capsys, "field 'reward'")
    assert not marker.exists()
    assert snapshot(store)[:3] == snap[:3]


def test_nan_and_inf(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s", n=2)
    snap = snapshot(store)
    ep = cartpole_episode(9)
    ep.obs[3, 1] = np.nan
    with pytest.raises(EpisodeError, match=r"\[field 'obs'\].*NaN or inf") as ei:
        store.add(ep, source="incoming.npz")
    assert "incoming.npz" in str(ei.value)
    ep2 = cartpole_episode(10)
    ep2.reward[2] = np.inf
    with pytest.raises(EpisodeError, match=r"\[field 'reward'\]"):
        store.add_many([cartpole_episode(11), ep2])  # nothing of the batch is written
    assert snapshot(store) == snap
    # on disk too: an archive with inf is refused on load, naming file and field
    bad = tmp_path / "inf.npz"
    np.savez(bad, **ep2.arrays())
    with pytest.raises(EpisodeError, match=rf"{bad}.*\[field 'reward'\]"):
        load_episode_file(bad, store.observation_space, store.action_space)


def test_shape_and_dtype_disagree_with_metadata(tmp_path: Path) -> None:
    store = make_v1_store(tmp_path / "s", n=2)
    snap = snapshot(store)
    ep = cartpole_episode(3)
    wrong_shape = Episode(**{**ep.arrays(), "obs": ep.obs[:, :3]})
    with pytest.raises(EpisodeError, match=r"a.npz \[field 'obs'\]: expected shape \(T, 4\)"):
        store.add(wrong_shape, source="a.npz")
    wrong_dtype = Episode(**{**ep.arrays(), "obs": ep.obs.astype(np.int64)})
    with pytest.raises(EpisodeError, match=r"b.npz \[field 'obs'\]: expected dtype float32"):
        store.add(wrong_dtype, source="b.npz")
    bad_flags = Episode(**{**ep.arrays(), "is_first": ep.is_first.astype(np.int8)})
    with pytest.raises(EpisodeError, match=r"\[field 'is_first'\]"):
        store.add(bad_flags)
    assert snapshot(store) == snap
    # an archive on disk whose obs has the wrong shape is named by check()
    bad = store.episode_dir / "ep-99999999999999999999-1-shape.npz"
    np.savez_compressed(bad, **wrong_shape.arrays())
    assert any(p == str(bad) and "field 'obs'" in why for p, why in store.check())


def test_action_outside_action_space(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s", n=2)
    snap = snapshot(store)
    ep = cartpole_episode(4)
    ep.action[5] = 2  # Discrete(2) holds 0 and 1
    with pytest.raises(EpisodeError, match=r"x.npz \[field 'action'\]: step 5: action 2 is outside"):
        store.add(ep, source="x.npz")
    assert snapshot(store) == snap


def test_logs_of_a_different_env_are_refused(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s", n=2)
    snap = snapshot(store)
    env = gym.make("Pendulum-v1")
    with pytest.raises(StoreError, match=r"env id 'Pendulum-v1' does not match"):
        EpisodeStore.create(tmp_path / "s", "Pendulum-v1", env.observation_space, env.action_space)
    # same id claimed but other spaces: refused on the spaces
    with pytest.raises(StoreError, match="observation space"):
        EpisodeStore.create(tmp_path / "s", CARTPOLE, env.observation_space, env.action_space)
    # an episode of the other env cannot be added either
    o, _ = env.reset(seed=0)
    pend = Episode.from_transitions(np.stack([o, o]), np.zeros((1, 1), np.float32), [0.0], False)
    with pytest.raises(EpisodeError, match=r"\[field 'obs'\]"):
        store.add(pend)
    assert snapshot(store) == snap
    assert store.check() == []
