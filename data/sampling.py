"""Fixed-length sequence windows over an EpisodeStore, and the Lightning DataModule.

**Packing rule.** The episodes of a split are concatenated, in order, into one stream of steps.
A window is ``length`` consecutive steps starting at a uniformly random position of the stream,
so a window may run across episode boundaries; ``is_first`` marks where each new episode begins
and learners reset their recurrent state there. The first step of every window is also marked
``is_first`` (a learner starts each window from a fresh state). Nothing is padded, so there is no
mask: every step in a batch is real data. A split needs at least ``length`` steps in total.

A batch is a dict of tensors (``B`` = batch size, ``L`` = length)::

    obs          float32 (B, L, *obs_shape); uint8 images stay uint8 (a quarter of the memory)
    action       float32 (B, L, action_dim)   the action taken at obs t, encoded by ActionCodec
    reward       float32 (B, L)               the reward that arrived with obs t
    feedback     float32 (B, L)               user feedback that arrived with obs t (0 = none)
    is_first / is_last / is_terminal   bool (B, L)
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from pathlib import Path

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, IterableDataset

from dreamlab.data.episodes import Episode
from dreamlab.data.spaces import ActionCodec
from dreamlab.data.store import EpisodeStore, StoreError

KEYS = ("obs", "action", "reward", "feedback", "is_first", "is_last", "is_terminal")


class SequenceSampler:
    """Random windows over a packed stream of episodes (see the module docstring)."""

    def __init__(
        self, episodes: list[Episode], codec: ActionCodec, length: int, seed: int = 0, source: str = "<episodes>"
    ):
        steps = sum(ep.length for ep in episodes)
        if not episodes:
            raise StoreError(f"{source}: no episodes to sample from")
        if steps < length:
            raise StoreError(f"{source}: {steps} steps in total, fewer than the sequence length {length}")
        self.length = length
        self.codec = codec
        self.rng = np.random.default_rng(seed)
        obs = np.concatenate([ep.obs for ep in episodes])
        self.stream = {
            "obs": obs if obs.dtype == np.uint8 else obs.astype(np.float32),  # the model scales images itself
            "action": np.concatenate([codec.encode(ep.action) for ep in episodes]).astype(np.float32),
            "reward": np.concatenate([ep.reward for ep in episodes]).astype(np.float32),
            "feedback": np.concatenate([ep.feedback for ep in episodes]).astype(np.float32),
            "is_first": np.concatenate([ep.is_first for ep in episodes]),
            "is_last": np.concatenate([ep.is_last for ep in episodes]),
            "is_terminal": np.concatenate([ep.is_terminal for ep in episodes]),
        }
        self.num_steps = steps
        self._offsets = np.arange(length)

    def sample(self, batch_size: int) -> dict[str, torch.Tensor]:
        starts = self.rng.integers(0, self.num_steps - self.length + 1, size=batch_size)
        idx = starts[:, None] + self._offsets[None, :]  # (B, L)
        out = {k: torch.from_numpy(v[idx]) for k, v in self.stream.items()}
        out["is_first"][:, 0] = True
        return out

    def windows(self, batch_size: int) -> Iterator[dict[str, torch.Tensor]]:
        """Deterministic, non-overlapping windows covering the stream (for validation)."""
        n = self.num_steps // self.length
        for b in range(0, n, batch_size):
            starts = np.arange(b, min(n, b + batch_size)) * self.length
            idx = starts[:, None] + self._offsets[None, :]
            out = {k: torch.from_numpy(v[idx]) for k, v in self.stream.items()}
            out["is_first"][:, 0] = True
            yield out


def split_names(names: list[str], val_fraction: float, seed: int = 0) -> tuple[list[str], list[str]]:
    """Split by episode, stably: an episode's side depends only on its name and the seed."""
    if val_fraction <= 0 or len(names) < 2:
        return list(names), []
    score = np.array([zlib.crc32(f"{seed}:{n}".encode()) / 2**32 for n in names])
    val = [n for n, s in zip(names, score) if s < val_fraction]
    if not val:  # keep at least one validation episode
        val = [names[int(np.argmin(score))]]
    train = [n for n in names if n not in set(val)]
    if not train:
        train, val = val[:1], val[1:]
    return train, val


class _BatchStream(IterableDataset):
    def __init__(self, sampler: SequenceSampler, batch_size: int, batches: int):
        self.sampler, self.batch_size, self.batches = sampler, batch_size, batches

    def __iter__(self):
        for _ in range(self.batches):
            yield self.sampler.sample(self.batch_size)

    def __len__(self) -> int:
        return self.batches


class _FixedBatches(IterableDataset):
    def __init__(self, batches: list[dict[str, torch.Tensor]]):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


class EpisodeDataModule(L.LightningDataModule):
    """Sequence batches from an EpisodeStore with a validation split by episode.

    ``batches_per_epoch`` random training windows make one "epoch" (the stream is sampled with
    replacement, so epochs are a logging unit, not a pass over the data).
    """

    def __init__(
        self,
        logs: str | Path,
        batch_size: int = 16,
        seq_len: int = 64,
        val_fraction: float = 0.1,
        batches_per_epoch: int = 200,
        seed: int = 0,
        max_val_batches: int = 8,
    ):
        super().__init__()
        self.logs = Path(logs)
        self.batch_size, self.seq_len = batch_size, seq_len
        self.val_fraction, self.batches_per_epoch = val_fraction, batches_per_epoch
        self.seed, self.max_val_batches = seed, max_val_batches
        self.store: EpisodeStore | None = None
        self.train_sampler: SequenceSampler | None = None
        self.val_sampler: SequenceSampler | None = None

    def setup(self, stage: str | None = None) -> None:
        if self.train_sampler is not None:
            return
        self.store = EpisodeStore(self.logs)
        if len(self.store) == 0:
            raise StoreError(f"{self.logs}: the store is empty (no episodes to train on)")
        codec = ActionCodec(self.store.action_space)
        names = self.store.names()
        train, val = split_names(names, self.val_fraction, self.seed)
        episodes = dict(zip(names, self.store.episodes(names)))  # one read of each chunk for both splits
        rank = self.trainer.global_rank if self.trainer is not None else 0
        self.train_sampler = SequenceSampler(
            [episodes[n] for n in train], codec, self.seq_len, seed=self.seed + 1000 * rank, source=str(self.logs)
        )
        val_eps = [episodes[n] for n in val]
        if val_eps and sum(e.length for e in val_eps) >= self.seq_len:
            self.val_sampler = SequenceSampler(val_eps, codec, self.seq_len, seed=self.seed, source=str(self.logs))

    def train_dataloader(self) -> DataLoader:
        assert self.train_sampler is not None
        return DataLoader(
            _BatchStream(self.train_sampler, self.batch_size, self.batches_per_epoch), batch_size=None, num_workers=0
        )

    def val_dataloader(self) -> DataLoader:
        if self.val_sampler is None:
            return DataLoader(_FixedBatches([]), batch_size=None)
        batches = list(self.val_sampler.windows(self.batch_size))[: self.max_val_batches]
        return DataLoader(_FixedBatches(batches), batch_size=None, num_workers=0)
