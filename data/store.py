"""EpisodeStore: a directory of episodes that people can trust with their only copy of experience.

Layout::

    DIR/metadata.json        format version, env id, spaces (JSON), counts, a per-episode index
    DIR/episodes/*.npz       one compressed archive per episode (fields of data.episodes)
    DIR/.lock                advisory lock taken while the metadata is updated

Every episode is written to a temporary file and renamed into place, and ``metadata.json`` is
rewritten the same way under an exclusive ``flock``: several processes may append at once, and
a crash loses at most the episode in flight. Loading never unpickles (``allow_pickle=False``)
and validates every episode against the convention and the stored spaces. An archive that was
renamed in but never indexed (a crash between the two steps) is picked up by ``reindex``.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
import zipfile
import zlib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from dreamlab.core.errors import DreamlabError
from dreamlab.core.io import atomic_write_bytes
from dreamlab.data.episodes import FIELDS, Episode, EpisodeError, validate_arrays
from dreamlab.data.spaces import SpaceError, space_from_json, space_to_json, spaces_equal

FORMAT = "dreamlab-episodes"
VERSION = 1


class StoreError(DreamlabError):
    """A store that cannot be opened or appended to; the message names the file."""


def load_episode_file(path: Path, obs_space: gym.Space | None = None, action_space: gym.Space | None = None) -> Episode:
    """Read and validate one ``.npz`` episode; never unpickles; errors name the file and field."""
    path = Path(path)
    if not path.exists():
        raise EpisodeError(path, None, "file not found")
    try:
        with np.load(path, allow_pickle=False) as npz:
            arrs: dict[str, np.ndarray] = {}
            for k in FIELDS:
                if k not in npz.files:
                    raise EpisodeError(path, k, f"missing field; the archive holds {sorted(npz.files)}")
                try:
                    arrs[k] = np.asarray(npz[k])
                except ValueError as exc:  # object arrays refuse to load without pickle
                    raise EpisodeError(
                        path, k, f"refused to load (object/pickled data is never loaded): {exc}"
                    ) from None
    except EpisodeError:
        raise
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as exc:
        raise EpisodeError(path, None, f"not a readable .npz archive (truncated or corrupt): {exc}") from None
    validate_arrays(arrs, obs_space, action_space, path)
    return Episode(**arrs)


@dataclass
class StoreStats:
    episodes: int
    steps: int
    returns: np.ndarray
    lengths: np.ndarray

    def summary(self) -> dict[str, Any]:
        r = self.returns
        pct = {f"p{q}": float(np.percentile(r, q)) for q in (5, 25, 50, 75, 95)} if len(r) else {}
        return {
            "episodes": self.episodes,
            "steps": self.steps,
            "return_mean": float(r.mean()) if len(r) else None,
            "return_std": float(r.std()) if len(r) else None,
            "return_min": float(r.min()) if len(r) else None,
            "return_max": float(r.max()) if len(r) else None,
            "return_percentiles": pct,
            "length_mean": float(self.lengths.mean()) if len(r) else None,
        }


class EpisodeStore:
    """A directory of validated episodes for one env (see the module docstring)."""

    def __init__(self, root: str | Path):
        self.root = Path(root)
        meta_path = self.root / "metadata.json"
        if not meta_path.exists():
            raise StoreError(
                f"{meta_path}: not found; {self.root} is not an episode store "
                "(create one with EpisodeStore.create or `dreamlab collect`)"
            )
        self.meta = self._read_meta()
        try:
            self.observation_space = space_from_json(self.meta["observation_space"])
            self.action_space = space_from_json(self.meta["action_space"])
        except (KeyError, SpaceError) as exc:
            raise StoreError(f"{meta_path}: field 'observation_space'/'action_space' invalid: {exc}") from None

    # ----------------------------------------------------------------- creation / metadata
    @classmethod
    def create(
        cls,
        root: str | Path,
        env_id: str,
        observation_space: gym.Space,
        action_space: gym.Space,
        units: dict[str, str] | None = None,
        exist_ok: bool = True,
    ) -> EpisodeStore:
        """Create a store, or open an existing one after checking that it holds the same env."""
        root = Path(root)
        meta_path = root / "metadata.json"
        if meta_path.exists():
            if not exist_ok:
                raise StoreError(f"{meta_path}: a store already exists here")
            store = cls(root)
            store.check_compatible(env_id, observation_space, action_space, source=meta_path)
            return store
        (root / "episodes").mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "env_id": env_id,
            "observation_space": space_to_json(observation_space),
            "action_space": space_to_json(action_space),
            "units": units or {},
            "episodes": 0,
            "steps": 0,
            "index": {},
        }
        with _locked(root):
            if not meta_path.exists():
                atomic_write_bytes(meta_path, json.dumps(meta, indent=1).encode(), fsync=True)
        store = cls(root)
        store.check_compatible(env_id, observation_space, action_space, source=meta_path)
        return store

    def check_compatible(
        self, env_id: str | None, observation_space: gym.Space, action_space: gym.Space, source: str | Path = "<logs>"
    ) -> None:
        """Refuse logs of a different env (id or spaces) for this store."""
        mine = self.meta.get("env_id")
        if env_id is not None and mine is not None and env_id != mine:
            raise StoreError(f"{source}: env id '{env_id}' does not match the store {self.root} (env id '{mine}')")
        if not spaces_equal(observation_space, self.observation_space):
            raise StoreError(
                f"{source}: observation space {observation_space} does not match the store "
                f"{self.root} ({self.observation_space})"
            )
        if not spaces_equal(action_space, self.action_space):
            raise StoreError(
                f"{source}: action space {action_space} does not match the store {self.root} ({self.action_space})"
            )

    def _read_meta(self) -> dict[str, Any]:
        path = self.root / "metadata.json"
        try:
            meta = json.loads(path.read_text())
        except (json.JSONDecodeError, UnicodeDecodeError) as exc:
            raise StoreError(f"{path}: not valid JSON: {exc}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise StoreError(f"{path}: field 'format' must be '{FORMAT}'")
        if meta.get("version") != VERSION:
            raise StoreError(
                f"{path}: field 'version' is {meta.get('version')!r}; this dreamlab reads version {VERSION}"
            )
        return meta

    @property
    def env_id(self) -> str | None:
        return self.meta.get("env_id")

    @property
    def episode_dir(self) -> Path:
        return self.root / "episodes"

    # ----------------------------------------------------------------------------- writing
    def add(self, episode: Episode, source: str | Path = "<episode>") -> str:
        """Validate and append one episode atomically; returns its file name."""
        return self.add_many([episode], [source])[0]

    def add_many(self, episodes: list[Episode], sources: list[str | Path] | None = None) -> list[str]:
        """Validate all, then write each episode atomically and index them with one metadata update.

        Nothing is written unless every episode validates. The archives are written to temporary
        files and flushed to disk (one ``syncfs`` for a batch, else ``fsync`` each), then renamed
        into place before the (single) metadata rewrite, so a crash in between leaves archives
        that ``reindex`` picks up. Returns the file names in order.
        """
        sources = list(sources) if sources is not None else ["<episode>"] * len(episodes)
        for ep, src in zip(episodes, sources):
            ep.validate(self.observation_space, self.action_space, source=src)
        names, entries, tmps = [], [], []
        for episode in episodes:
            arrs = episode.arrays()
            arrs["obs"] = arrs["obs"].astype(self.observation_space.dtype or arrs["obs"].dtype, copy=False)
            arrs["reward"] = arrs["reward"].astype(np.float32, copy=False)
            arrs["feedback"] = arrs["feedback"].astype(np.float32, copy=False)
            name = f"ep-{_now_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
            tmp = self.episode_dir / f".tmp-{name}"
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrs)  # type: ignore[arg-type]  # numpy stubs type **kwds as allow_pickle
                if len(episodes) == 1 or _syncfs is None:
                    fh.flush()
                    os.fsync(fh.fileno())
            tmps.append(tmp)
            names.append(name)
            entries.append(
                {
                    "length": episode.length,
                    "steps": episode.num_steps,
                    "return": episode.ret,
                    "terminated": episode.terminated,
                    "feedback": float(np.abs(episode.feedback).sum()),
                }
            )
        if len(episodes) > 1 and _syncfs is not None:
            _syncfs(self.episode_dir)  # one flush to disk for the whole batch, before any rename
        for tmp, name in zip(tmps, names):
            os.replace(tmp, self.episode_dir / name)
        if not names:
            return names
        with _locked(self.root):
            meta = self._read_meta()
            meta["index"].update(zip(names, entries))
            meta["episodes"] = len(meta["index"])
            meta["steps"] = int(sum(e["steps"] for e in meta["index"].values()))
            atomic_write_bytes(self.root / "metadata.json", json.dumps(meta, indent=1).encode(), fsync=True)
            self.meta = meta
        return names

    def extend(self, episodes: Iterator[Episode] | list[Episode]) -> list[str]:
        return self.add_many(list(episodes))

    def reindex(self) -> int:
        """Index archives present on disk but missing from the metadata (after a crash); returns how many."""
        with _locked(self.root):
            meta = self._read_meta()
            added = 0
            on_disk = {p.name for p in self.episode_dir.glob("ep-*.npz")}
            for name in sorted(on_disk - set(meta["index"])):
                ep = load_episode_file(self.episode_dir / name, self.observation_space, self.action_space)
                meta["index"][name] = {
                    "length": ep.length,
                    "steps": ep.num_steps,
                    "return": ep.ret,
                    "terminated": ep.terminated,
                    "feedback": float(np.abs(ep.feedback).sum()),
                }
                added += 1
            for name in set(meta["index"]) - on_disk:
                del meta["index"][name]
            meta["episodes"] = len(meta["index"])
            meta["steps"] = int(sum(e["steps"] for e in meta["index"].values()))
            atomic_write_bytes(self.root / "metadata.json", json.dumps(meta, indent=1).encode(), fsync=True)
            self.meta = meta
        return added

    # ----------------------------------------------------------------------------- reading
    def refresh(self) -> None:
        self.meta = self._read_meta()

    def names(self) -> list[str]:
        """Episode file names in the order they were written."""
        return sorted(self.meta["index"])

    def paths(self) -> list[Path]:
        return [self.episode_dir / n for n in self.names()]

    def __len__(self) -> int:
        return len(self.meta["index"])

    @property
    def num_steps(self) -> int:
        return int(self.meta["steps"])

    def load(self, name: str) -> Episode:
        return load_episode_file(self.episode_dir / name, self.observation_space, self.action_space)

    def __iter__(self) -> Iterator[Episode]:
        """Lazy: one episode is read (and validated) at a time."""
        for name in self.names():
            yield self.load(name)

    def episodes(self, names: list[str] | None = None) -> list[Episode]:
        return [self.load(n) for n in (names if names is not None else self.names())]

    def stats(self) -> StoreStats:
        """From the index in metadata.json: no episode is read."""
        idx = self.meta["index"]
        names = self.names()
        return StoreStats(
            episodes=len(names),
            steps=int(self.meta["steps"]),
            returns=np.asarray([idx[n]["return"] for n in names], np.float64),
            lengths=np.asarray([idx[n]["length"] for n in names], np.int64),
        )

    def check(self) -> list[tuple[str, str]]:
        """Read and validate every archive on disk; returns (file, problem) for each bad one."""
        bad = []
        on_disk = sorted(p.name for p in self.episode_dir.glob("*.npz") if not p.name.startswith(".tmp-"))
        for name in on_disk:
            try:
                self.load(name)
            except EpisodeError as exc:
                bad.append(
                    (
                        str(self.episode_dir / name),
                        exc.problem if exc.field is None else f"field '{exc.field}': {exc.problem}",
                    )
                )
        for name in sorted(set(self.meta["index"]) - set(on_disk)):
            bad.append((str(self.episode_dir / name), "listed in metadata.json but missing on disk"))
        return bad


def _make_syncfs():
    """``syncfs(2)`` via libc on Linux (flush one filesystem: one call durably writes a batch of
    archives, where fsync per file costs milliseconds each); None elsewhere."""
    try:
        import ctypes

        libc = ctypes.CDLL(None, use_errno=True)
        fn = libc.syncfs
    except (OSError, AttributeError):
        return None

    def syncfs(directory: Path) -> None:
        fd = os.open(directory, os.O_RDONLY)
        try:
            if fn(fd) != 0:
                raise OSError(ctypes.get_errno(), f"syncfs failed on {directory}")
        finally:
            os.close(fd)

    return syncfs


_syncfs = _make_syncfs()


def _now_ns() -> int:
    import time

    return time.time_ns()


@contextmanager
def _locked(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
