"""EpisodeStore: a directory of episodes that people can trust with their only copy of experience.

Layout::

    DIR/metadata.json        format version, env id, spaces (JSON), counts, a per-episode index
    DIR/episodes/*.npz       one compressed archive per episode (fields of data.episodes)
    DIR/.lock                advisory lock taken while the metadata is updated

Every episode is written to a temporary file and renamed into place as soon as it is complete
(:meth:`EpisodeStore.write_archive`); the index in ``metadata.json`` is rewritten the same way,
under an exclusive ``flock``, for a batch of archives (:meth:`EpisodeStore.index_archives`, after
one flush to disk): several processes may append at once, and a kill loses no archive already
renamed in. Only indexed episodes are part of the store (iteration, counts, ``check``); an
archive renamed in but never indexed (a kill between the two steps) is adopted by
:meth:`EpisodeStore.adopt_orphans` (which the collector runs before appending) or ``reindex``,
and temporary files of a writer that is gone are removed by :meth:`EpisodeStore.clean_stale`.
Loading never unpickles and treats every file as hostile (:mod:`dreamlab.data.archive`): index
keys must be plain file names inside the store, and archives are validated against the
convention and the stored spaces.
"""

from __future__ import annotations

import fcntl
import json
import os
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from dreamlab.core.errors import DreamlabError
from dreamlab.core.io import atomic_write_bytes
from dreamlab.data.archive import check_index, read_archive, stale_temp_files, valid_name
from dreamlab.data.episodes import Episode, EpisodeError, validate_arrays
from dreamlab.data.spaces import SpaceError, space_from_json, space_to_json, spaces_equal

FORMAT = "dreamlab-episodes"
VERSION = 1


class StoreError(DreamlabError):
    """A store that cannot be opened or appended to; the message names the file."""


def load_episode_file(path: Path, obs_space: gym.Space | None = None, action_space: gym.Space | None = None) -> Episode:
    """Read and validate one ``.npz`` episode; never unpickles; errors name the file and field."""
    path = Path(path)
    arrs = read_archive(path)
    validate_arrays(arrs, obs_space, action_space, path)
    return Episode(**arrs)


def _entry(episode: Episode) -> dict[str, Any]:
    return {
        "length": episode.length,
        "steps": episode.num_steps,
        "return": episode.ret,
        "terminated": episode.terminated,
        "feedback": float(np.abs(episode.feedback).sum()),
    }


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
        except (KeyError, TypeError, ValueError, AttributeError, SpaceError) as exc:
            msg = " ".join(str(exc).split())[:200]
            raise StoreError(f"{meta_path}: field 'observation_space'/'action_space' invalid: {msg}") from None

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
        for p in (root, *root.parents):
            if p.exists():
                if not p.is_dir():
                    raise StoreError(
                        f"{root}: {'is' if p == root else f'lies under {p}, which is'} a file; "
                        "expected an episode store directory"
                    )
                break
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
        if path.is_dir():
            raise StoreError(f"{path}: is a directory; expected the store's JSON index file")
        try:
            meta = json.loads(path.read_text(encoding="utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            msg = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise StoreError(f"{path}: not valid JSON: {msg}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise StoreError(f"{path}: field 'format' must be '{FORMAT}'")
        if meta.get("version") != VERSION:
            raise StoreError(
                f"{path}: field 'version' is {meta.get('version')!r}; this dreamlab reads version {VERSION}"
            )
        check_index(meta, path, StoreError)
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

        Nothing is written unless every episode validates. Each archive is renamed into place as
        soon as it is written (:meth:`write_archive`); the batch is flushed to disk and indexed
        once (:meth:`index_archives`), so a kill in between leaves complete archives that
        :meth:`adopt_orphans` picks up. Returns the file names in order.
        """
        sources = list(sources) if sources is not None else ["<episode>"] * len(episodes)
        for ep, src in zip(episodes, sources):
            ep.validate(self.observation_space, self.action_space, source=src)
        written = [self.write_archive(ep, validate=False) for ep in episodes]
        self.index_archives(written)
        return [name for name, _ in written]

    def write_archive(
        self, episode: Episode, source: str | Path = "<episode>", validate: bool = True
    ) -> tuple[str, dict[str, Any]]:
        """Validate ``episode`` and write it as a new archive: a temporary file renamed into place
        when complete (not yet indexed, not yet flushed to disk). Returns (file name, index entry)."""
        if validate:
            episode.validate(self.observation_space, self.action_space, source=source)
        arrs = episode.arrays()
        arrs["obs"] = arrs["obs"].astype(self.observation_space.dtype or arrs["obs"].dtype, copy=False)
        arrs["reward"] = arrs["reward"].astype(np.float32, copy=False)
        arrs["feedback"] = arrs["feedback"].astype(np.float32, copy=False)
        name = f"ep-{_now_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"
        tmp = self.episode_dir / f".tmp-{name}"
        try:
            with open(tmp, "wb") as fh:
                np.savez_compressed(fh, **arrs)  # type: ignore[arg-type]  # numpy stubs type **kwds as allow_pickle
            os.replace(tmp, self.episode_dir / name)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        return name, _entry(episode)

    def index_archives(self, written: list[tuple[str, dict[str, Any]]]) -> None:
        """Flush the archives to disk (one ``syncfs``, else ``fsync`` each), then add them to the
        index with one locked rewrite of ``metadata.json``."""
        if not written:
            return
        if _syncfs is not None:
            _syncfs(self.episode_dir)
        else:
            for name, _ in written:
                with open(self.episode_dir / name, "rb") as fh:
                    os.fsync(fh.fileno())
        with _locked(self.root):
            meta = self._read_meta()
            meta["index"].update(written)
            self._write_meta(meta)

    def _write_meta(self, meta: dict[str, Any]) -> None:
        meta["episodes"] = len(meta["index"])
        meta["steps"] = int(sum(e["steps"] for e in meta["index"].values()))
        atomic_write_bytes(self.root / "metadata.json", json.dumps(meta, indent=1).encode(), fsync=True)
        self.meta = meta

    def extend(self, episodes: Iterator[Episode] | list[Episode]) -> list[str]:
        return self.add_many(list(episodes))

    def orphans(self) -> list[str]:
        """Archives on disk that the index does not list (left by a kill before indexing)."""
        return sorted(
            p.name for p in self.episode_dir.glob("*.npz") if p.name not in self.meta["index"] and valid_name(p.name)
        )

    def adopt_orphans(self) -> tuple[int, list[tuple[str, str]]]:
        """Index every valid orphan archive; returns (how many, [(file, problem)] of those left out)."""
        with _locked(self.root):
            meta = self._read_meta()
            self.meta = meta
            bad: list[tuple[str, str]] = []
            added = {}
            for name in self.orphans():
                try:
                    added[name] = _entry(self.load(name))
                except EpisodeError as exc:
                    bad.append((str(self.episode_dir / name), exc.problem))
            if added:
                meta["index"].update(added)
                self._write_meta(meta)
        return len(added), bad

    def clean_stale(self) -> int:
        """Remove temporary files of writers that are gone (see :func:`dreamlab.data.archive.stale_temp_files`)."""
        stale = stale_temp_files(self.episode_dir) + stale_temp_files(self.root)
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)

    def reindex(self) -> int:
        """Index archives present on disk but missing from the metadata (after a crash), drop
        entries whose file is gone; returns how many were added."""
        with _locked(self.root):
            meta = self._read_meta()
            self.meta = meta
            on_disk = {p.name for p in self.episode_dir.glob("*.npz") if valid_name(p.name)}
            added = 0
            for name in sorted(on_disk - set(meta["index"])):
                meta["index"][name] = _entry(self.load(name))
                added += 1
            for name in set(meta["index"]) - on_disk:
                del meta["index"][name]
            self._write_meta(meta)
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
        if not valid_name(name):
            raise StoreError(f"{self.root}: {name!r} is not a plain episode file name inside the store")
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
        """Read and validate every indexed archive and compare it with its index entry (length,
        steps, return); list archives the index does not name and the index's totals. Returns
        (file, problem) for every disagreement; changes nothing."""
        bad = []
        meta_path = str(self.root / "metadata.json")
        index = self.meta["index"]
        for name in self.names():
            path = self.episode_dir / name
            if not path.exists():
                bad.append((str(path), "listed in metadata.json but missing on disk"))
                continue
            try:
                ep = self.load(name)
            except EpisodeError as exc:
                bad.append((str(path), exc.problem if exc.field is None else f"field '{exc.field}': {exc.problem}"))
                continue
            entry, actual = index[name], _entry(ep)
            for key in ("length", "steps"):
                if entry[key] != actual[key]:
                    bad.append((str(path), f"metadata.json says {key} {entry[key]}, the file holds {actual[key]}"))
            if not np.isclose(entry["return"], actual["return"], rtol=1e-5, atol=1e-6):
                bad.append(
                    (str(path), f"metadata.json says return {entry['return']}, the file holds {actual['return']}")
                )
        for name in self.orphans():
            why = "on disk but not listed in metadata.json (an interrupted write; the next collection adopts it)"
            try:
                self.load(name)
            except EpisodeError as exc:
                what = exc.problem if exc.field is None else f"field '{exc.field}': {exc.problem}"
                why = f"not listed in metadata.json, and not a valid episode: {what}"
            bad.append((str(self.episode_dir / name), why))
        total = sum(e["steps"] for e in index.values())
        if self.meta["steps"] != total:
            bad.append((meta_path, f"field 'steps' is {self.meta['steps']}, but the index entries sum to {total}"))
        if "episodes" in self.meta and self.meta["episodes"] != len(index):
            bad.append((meta_path, f"field 'episodes' is {self.meta['episodes']}, but the index lists {len(index)}"))
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
