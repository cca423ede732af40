"""Store format version 2 (chunks) and version 1 side by side: exact round trips, version-1 stores
that load, sample and take appends, chunks as hostile input, and orphan chunks after a kill."""

from __future__ import annotations

import io
import json
import zipfile
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest

from dreamlab.data.chunks import ChunkBuilder, read_chunk, write_chunk_file
from dreamlab.data.collect import collect
from dreamlab.data.episodes import Episode, EpisodeError
from dreamlab.data.sampling import EpisodeDataModule, SequenceSampler
from dreamlab.data.spaces import ActionCodec
from dreamlab.data.store import EpisodeStore
from tests.data.helpers import (
    CARTPOLE,
    assert_same_episode,
    cartpole_episode,
    cartpole_spaces,
    data_files,
    make_store,
    make_v1_store,
)
from tests.hostile.helpers import assert_user_error, run_cli, tree_bytes


def test_v2_round_trips_exactly_and_reads_each_chunk_once(tmp_path: Path) -> None:
    obs_space, act_space = cartpole_spaces()
    store = EpisodeStore.create(tmp_path / "s", CARTPOLE, obs_space, act_space)
    eps = [cartpole_episode(i, feedback=True) for i in range(5)]
    narrow = cartpole_episode(9)
    narrow.action = narrow.action.astype(np.int32)  # another action dtype: its own chunk, kept exactly
    names = store.add_many([*eps[:3], narrow, *eps[3:]])
    assert len(store.files()) == 3 and store.version == 2 and not store.episode_dir.exists()
    again = EpisodeStore(tmp_path / "s")
    assert again.names() == names and names == sorted(names)
    want = [*eps[:3], narrow, *eps[3:]]
    for got in (again.episodes(), list(again), [again.load(n) for n in names]):
        for a, b in zip(want, got, strict=True):
            assert_same_episode(a, b)
    assert again.episodes(names[::-1])[0].action.dtype == np.int64  # any order of names
    for name, ep in zip(names, want):
        e = again.meta["index"][name]
        assert (e["length"], e["steps"], e["terminated"]) == (ep.length, ep.num_steps, ep.terminated)
        assert np.isclose(e["return"], ep.ret) and np.isclose(e["feedback"], np.abs(ep.feedback).sum())
    assert again.check() == [] and again.num_steps == sum(ep.num_steps for ep in want)
    # a Box action space (Pendulum: float32 actions, 3-d observations) round-trips exactly too
    collect("Pendulum-v1", "random", steps=400, num_envs=2, out=tmp_path / "p", progress=False, writer="inline")
    pend = EpisodeStore(tmp_path / "p")
    for name, ep in zip(pend.names(), pend.episodes()):
        assert ep.action.dtype == np.float32 and ep.obs.shape[1:] == (3,)
        assert_same_episode(pend.load(name), ep)


def test_v1_store_written_the_old_way_loads_samples_and_appends(tmp_path: Path) -> None:
    root = tmp_path / "v1"
    store = make_v1_store(root, n=6, feedback=True)
    archives = {p.name: p.read_bytes() for p in (root / "episodes").glob("*.npz")}
    assert store.version == 1 and len(store) == 6 and store.check() == []
    for i, ep in enumerate(store.episodes()):
        assert_same_episode(ep, cartpole_episode(i, feedback=True))
    codec = ActionCodec(store.action_space)
    assert SequenceSampler(store.episodes(), codec, length=16).sample(4)["obs"].shape == (4, 16, 4)
    assert store.adopt_orphans() == (0, []) and store.reindex() == 0
    assert EpisodeStore(root).version == 1  # read, checked, adopted, reindexed: still version 1
    old_names = store.names()
    s = collect(CARTPOLE, "random", steps=200, num_envs=2, out=root, progress=False)
    store.refresh()
    assert store.version == 2 and len(store) == 6 + s.episodes_stored
    assert store.names()[:6] == old_names  # written later, sorted later
    kinds = ["chunk" in store.meta["index"][n] for n in store.names()]
    assert kinds == [False] * 6 + [True] * s.episodes_stored
    assert {p.name: p.read_bytes() for p in (root / "episodes").glob("*.npz")} == archives  # left as they were
    assert store.check() == [] and store.num_steps == sum(e.num_steps for e in store)
    dm = EpisodeDataModule(root, batch_size=4, seq_len=16, val_fraction=0.25)
    dm.setup()
    batch = next(iter(dm.train_dataloader()))
    assert batch["obs"].shape == (4, 16, 4) and bool(batch["is_first"][:, 0].all())
    assert dm.val_sampler is not None


def _rewrite_member(path: Path, field: str, array: np.ndarray | None = None, header: dict | None = None) -> None:
    """Replace one .npy member of a chunk: by another array, or by a bare header over 64 bytes."""
    with zipfile.ZipFile(path) as zf:
        members = {n: zf.read(n) for n in zf.namelist()}
    buf = io.BytesIO()
    if header is not None:
        np.lib.format.write_array_header_1_0(buf, header)
        buf.write(b"\0" * 64)
    else:
        np.save(buf, array, allow_pickle=True)
    members[f"{field}.npy"] = buf.getvalue()
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as zf:
        for n, data in members.items():
            zf.writestr(n, data)


def _truncate(p: Path) -> None:
    p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])


def _offsets_past_end(p: Path) -> None:
    off = np.load(io.BytesIO(zipfile.ZipFile(p).read("offsets.npy")))
    off[-1] += 5
    _rewrite_member(p, "offsets", off)


def _bad_header(p: Path) -> None:
    _rewrite_member(p, "obs", header={"descr": "<f4", "fortran_order": False, "shape": (10**12, 4)})


def _entry_past_end(p: Path) -> None:
    meta_path = p.parents[1] / "metadata.json"
    meta = json.loads(meta_path.read_text())
    for e in meta["index"].values():
        if e["chunk"] == p.name:
            e["start"] = 10**9
    meta_path.write_text(json.dumps(meta))


@pytest.mark.parametrize(
    "corrupt, field, needle",
    [
        (_truncate, None, "not a valid chunk file"),
        (_offsets_past_end, "[field 'offsets']", "the last episode ends at step"),
        (_bad_header, "[field 'obs']", "header declares shape (1000000000000, 4)"),
        (_entry_past_end, "[field 'offsets']", "(start 1000000000, length"),
    ],
)
def test_a_corrupted_chunk_is_a_one_line_error_naming_file_and_field(
    corrupt, field: str | None, needle: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = make_store(tmp_path / "s", n=3, chunk_each=True)
    good, bad = store.files()[0], store.files()[1]
    keep = store.load(store.names()[0])
    corrupt(bad)
    store.refresh()
    with pytest.raises(EpisodeError) as ei:
        store.load(store.names()[1])
    msg = str(ei.value)
    assert str(bad) in msg and needle in msg and "\n" not in msg and (field is None or field in msg)
    assert_same_episode(store.load(store.names()[0]), keep)  # the other chunks still load
    assert [p for p, _ in store.check()] == [str(bad)] and store.files()[0] == good
    before = tree_bytes(tmp_path / "s")
    code, _, err = run_cli(["logs", "export", "--format", "jsonl", store.root, "--out", tmp_path / "o.jsonl"], capsys)
    assert_user_error(code, err, "logs", bad, needle, *([field] if field else []))
    assert tree_bytes(tmp_path / "s") == before and not (tmp_path / "o.jsonl").exists()


def test_one_bad_episode_in_a_chunk_is_named_and_the_others_load(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s", n=1)
    eps = [cartpole_episode(i) for i in range(3)]
    b = ChunkBuilder(np.float32)
    for ep in eps:
        b.add_episode(ep)
    arrs = b.build()
    arrs["obs"][int(arrs["offsets"][1]) + 2, 0] = np.nan  # episode 1 of the chunk
    write_chunk_file(store.chunk_dir, "ck-00000000000000000009-1-0000bad0.npz", arrs)
    assert store.adopt_orphans()[0] == 2  # the two valid episodes
    path = store.chunk_dir / "ck-00000000000000000009-1-0000bad0.npz"
    chunk = read_chunk(path, store.observation_space, store.action_space)
    assert list(chunk.bad) == [1] and "(episode 1) [field 'obs']: contains NaN" in str(chunk.bad[1])
    store.refresh()
    loaded = [store.load(n) for n in store.names() if store.meta["index"][n].get("chunk") == path.name]
    for a, want in zip(loaded, [eps[0], eps[2]], strict=True):
        assert_same_episode(a, want)
    assert store.check() == [(str(path), "holds 3 episodes but metadata.json lists 2 in it")]


def test_a_pickle_inside_a_chunk_is_never_loaded(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s", n=2)
    marker = tmp_path / "pwned"
    evil = np.empty(3, dtype=object)
    evil[:] = [_Evil(str(marker))] * 3
    _rewrite_member(store.files()[0], "reward", evil)
    with pytest.raises(EpisodeError, match=r"\[field 'reward'\]: holds object \(pickled\) data"):
        store.episodes()
    assert "field 'reward'" in store.check()[0][1] and not marker.exists()


class _Evil:
    def __init__(self, marker: str):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (Path(self.marker),))


def test_orphan_chunks_are_listed_adopted_under_their_names_and_reindexed(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s", n=2)
    records = store.write_chunk(_chunk_of([cartpole_episode(5), cartpole_episode(6)]))  # a kill before indexing
    orphan = store.chunk_dir / records[0][1]["chunk"]
    assert store.orphans() == [orphan] and len(EpisodeStore(store.root)) == 2
    assert [p for p, why in store.check() if "not listed in metadata.json" in why] == [str(orphan)]
    assert store.adopt_orphans() == (2, [])
    assert sorted(store.names())[-2:] == [n for n, _ in records] and store.check() == []
    store.files()[0].unlink()
    assert store.reindex() == 0 and len(store) == 2 and store.check() == []
    assert data_files(store.root) == store.files() == [orphan]


def test_a_store_of_another_env_still_refuses_chunks_of_the_wrong_space(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s", n=1)
    env = gym.make("Pendulum-v1")
    o, _ = env.reset(seed=0)
    pend = Episode.from_transitions(np.stack([o, o]), np.zeros((1, 1), np.float32), [0.0], False)
    write_chunk_file(store.chunk_dir, "ck-00000000000000000009-1-00000000.npz", _chunk_of([pend]))
    n, bad = store.adopt_orphans()
    assert n == 0 and len(bad) == 1 and "field 'obs': expected shape (T, 4)" in bad[0][1]


def _chunk_of(eps: list[Episode]) -> dict[str, np.ndarray]:
    b = ChunkBuilder()
    for ep in eps:
        b.add_episode(ep)
    return b.build()
