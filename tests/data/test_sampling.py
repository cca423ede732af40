"""Sequence windows over stores and the EpisodeDataModule's split by episode."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from dreamlab.data.sampling import EpisodeDataModule, SequenceSampler, split_names
from dreamlab.data.spaces import ActionCodec
from dreamlab.data.store import EpisodeStore
from tests.data.helpers import cartpole_episode, make_store


def test_windows_mark_episode_starts_and_have_the_documented_shapes(tmp_path: Path) -> None:
    eps = [cartpole_episode(i, max_steps=30, feedback=True) for i in range(6)]
    codec = ActionCodec(EpisodeStore.create(tmp_path / "s", "CartPole-v1", *_spaces()).action_space)
    sampler = SequenceSampler(eps, codec, length=16, seed=0)
    b = sampler.sample(32)
    assert b["obs"].shape == (32, 16, 4) and b["obs"].dtype == torch.float32
    assert b["action"].shape == (32, 16, 2) and torch.all(b["action"].sum(-1) == 1)  # one-hot
    for k in ("reward", "feedback", "is_first", "is_last", "is_terminal"):
        assert b[k].shape == (32, 16)
    assert b["is_first"].dtype == torch.bool and bool(b["is_first"][:, 0].all())
    # inside a window, is_first marks exactly the steps right after an is_last (episode boundary)
    assert torch.equal(b["is_first"][:, 1:], b["is_last"][:, :-1])
    # every window is a contiguous slice of the packed stream
    stream = np.concatenate([e.obs for e in eps])
    for row in b["obs"].numpy()[:8]:
        starts = np.flatnonzero(np.all(stream == row[0], axis=1))
        assert any(np.array_equal(stream[s : s + 16], row) for s in starts)
    # rewards at is_first steps are zero (the reward arrives with the next obs)
    assert torch.all(b["reward"][b["is_first"] & ~_window_start(b)] == 0)


def _window_start(b: dict[str, torch.Tensor]) -> torch.Tensor:
    m = torch.zeros_like(b["is_first"])
    m[:, 0] = True
    return m


def _spaces():
    from tests.data.helpers import cartpole_spaces

    return cartpole_spaces()


def test_datamodule_splits_by_episode(tmp_path: Path) -> None:
    store = make_store(tmp_path / "s", n=20)
    train, val = split_names(store.names(), 0.25, seed=0)
    assert set(train).isdisjoint(val) and sorted(train + val) == store.names() and val
    assert split_names(store.names(), 0.25, seed=0) == (train, val)  # stable
    dm = EpisodeDataModule(tmp_path / "s", batch_size=4, seq_len=8, val_fraction=0.25, batches_per_epoch=3)
    dm.setup("fit")
    assert dm.train_sampler is not None and dm.val_sampler is not None
    batches = list(dm.train_dataloader())
    assert len(batches) == 3 and batches[0]["obs"].shape == (4, 8, 4)
    val_obs = np.concatenate([e.obs for e in store.episodes(val)])
    train_obs = np.concatenate([e.obs for e in store.episodes(train)])
    assert dm.val_sampler.num_steps == len(val_obs) and dm.train_sampler.num_steps == len(train_obs)
    for vb in dm.val_dataloader():
        for row in vb["obs"].numpy().reshape(-1, 4):  # validation windows come only from val episodes
            assert np.any(np.all(val_obs == row, axis=1))


def test_uint8_images_stay_uint8_in_the_stream_and_in_batches() -> None:
    """Frames are not widened to float32 (4× the memory); the world model scales them itself."""
    import gymnasium as gym

    from dreamlab.data.episodes import Episode

    rng = np.random.default_rng(0)
    frames = rng.integers(0, 256, (21, 64, 64, 3), dtype=np.uint8)
    ep = Episode.from_transitions(frames, rng.integers(0, 2, 20), np.ones(20), False, np.zeros(20))
    sampler = SequenceSampler([ep], ActionCodec(gym.spaces.Discrete(2)), length=8, seed=0)
    assert sampler.stream["obs"].dtype == np.uint8
    batch = sampler.sample(3)
    assert batch["obs"].dtype == torch.uint8 and batch["obs"].shape == (3, 8, 64, 64, 3)
    assert batch["action"].dtype == torch.float32  # everything else as before
    starts = [int(np.flatnonzero((frames == b[0].numpy()).all(axis=(1, 2, 3)))[0]) for b in batch["obs"]]
    assert all(torch.equal(batch["obs"][i], torch.from_numpy(frames[s : s + 8])) for i, s in enumerate(starts))
