"""EpisodeStore: a directory of episodes that people can trust with their only copy of experience.

Layout (format version 2)::

    DIR/metadata.json        format version, env id, spaces (JSON), counts, a per-episode index
    DIR/chunks/ck-*.npz      chunks: many episodes each, fields concatenated (dreamlab.data.chunks)
    DIR/episodes/*.npz       version 1: one compressed archive per episode (still read)
    DIR/.lock                advisory lock taken while the metadata is updated

The index maps each episode name to ``length``, ``steps``, ``return`` (and ``terminated``,
``feedback``); an entry of a chunked episode adds ``chunk`` (its file in ``chunks/``) and
``start`` (its first step there); an entry without ``chunk`` is a version-1 archive
``episodes/NAME``. Both kinds may sit in one index. New episodes are always written as chunks:
appending to a version-1 store keeps its archives where they are and sets its ``version`` to
2 (older dreamlab releases then refuse it by its version); a version-1 store that is only read,
checked, adopted or reindexed stays version 1.

Every chunk is written to a temporary file, flushed to disk and renamed in whole
(:meth:`EpisodeStore.write_chunk`); the index in ``metadata.json`` is rewritten the same way,
under an exclusive ``flock``, for a batch of chunks (:meth:`EpisodeStore.index_records`):
several processes may append at once, and a kill loses no chunk already renamed in. Only
indexed episodes are part of the store (iteration, counts, ``check``); a chunk (or version-1
archive) renamed in but never indexed (a kill between the two steps) is adopted by
:meth:`EpisodeStore.adopt_orphans` (which the collector runs before appending) or ``reindex``,
under the same names, and temporary files of a writer that is gone are removed by
:meth:`EpisodeStore.clean_stale`. Loading never unpickles and treats every file as hostile
(:mod:`dreamlab.data.archive`, :mod:`dreamlab.data.chunks`): index keys and chunk names must be
plain names inside the store, headers are checked before anything is allocated, each entry's
``start``/``length`` must match an episode of its chunk, and episodes are validated against the
convention and the stored spaces. Bulk reads (iteration, :meth:`EpisodeStore.episodes`,
``check``) read each chunk once.
"""

from __future__ import annotations

import fcntl
import json
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from dreamlab.core.errors import DreamlabError
from dreamlab.core.io import atomic_write_bytes
from dreamlab.data.archive import VERSIONS, check_index, read_archive, stale_temp_files, valid_name
from dreamlab.data.chunks import (
    Chunk,
    ChunkBuilder,
    chunk_entries,
    episode_names,
    fsync_dir,
    new_chunk_name,
    read_chunk,
    write_chunk_file,
)
from dreamlab.data.episodes import Episode, EpisodeError, validate_arrays
from dreamlab.data.spaces import SpaceError, space_from_json, space_to_json, spaces_equal

FORMAT = "dreamlab-episodes"
VERSION = 2  # written by this release; versions 1 and 2 are read

Record = tuple[str, dict[str, Any]]  # (episode name, index entry)


class StoreError(DreamlabError):
    """A store that cannot be opened or appended to; the message names the file."""


def load_episode_file(path: Path, obs_space: gym.Space | None = None, action_space: gym.Space | None = None) -> Episode:
    """Read and validate one version-1 ``.npz`` episode; never unpickles; errors name the file and field."""
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


def problem(exc: EpisodeError) -> str:
    """An EpisodeError without its file: ``field 'f': what`` (for ``check`` listings)."""
    return exc.problem if exc.field is None else f"field '{exc.field}': {exc.problem}"


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
        self._meta_bytes: bytes | None = None
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
        (root / "chunks").mkdir(parents=True, exist_ok=True)
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
        raw = path.read_bytes()
        if raw == self._meta_bytes:  # what this object last read or wrote: already checked
            return self.meta
        try:
            meta = json.loads(raw.decode("utf-8"))
        except (json.JSONDecodeError, UnicodeDecodeError, RecursionError) as exc:
            msg = " ".join(str(exc).split())[:200] or type(exc).__name__
            raise StoreError(f"{path}: not valid JSON: {msg}") from None
        if not isinstance(meta, dict) or meta.get("format") != FORMAT:
            raise StoreError(f"{path}: field 'format' must be '{FORMAT}'")
        if meta.get("version") not in VERSIONS:
            raise StoreError(
                f"{path}: field 'version' is {meta.get('version')!r}; this dreamlab reads versions "
                f"{', '.join(map(str, VERSIONS))}"
            )
        check_index(meta, path, StoreError)
        self._meta_bytes = raw
        return meta

    def _fresh_meta(self) -> dict[str, Any]:
        """The metadata on disk now (call under the lock), as a copy to change and write back."""
        meta = dict(self._read_meta())
        meta["index"] = dict(meta["index"])
        return meta

    def _write_meta(self, meta: dict[str, Any]) -> None:
        index = meta["index"]
        meta["episodes"] = len(index)
        meta["steps"] = int(sum(e["steps"] for e in index.values()))
        if meta.get("version") != VERSION and any("chunk" in e for e in index.values()):
            meta["version"] = VERSION  # a version-1 store that now holds chunks
        raw = json.dumps(meta).encode()  # compact: the C encoder, milliseconds for a large index
        atomic_write_bytes(self.root / "metadata.json", raw, fsync=True)
        fsync_dir(self.root)
        self.meta, self._meta_bytes = meta, raw

    @property
    def env_id(self) -> str | None:
        return self.meta.get("env_id")

    @property
    def version(self) -> int:
        return int(self.meta["version"])

    @property
    def episode_dir(self) -> Path:
        """Version-1 archives."""
        return self.root / "episodes"

    @property
    def chunk_dir(self) -> Path:
        return self.root / "chunks"

    # ----------------------------------------------------------------------------- writing
    def add(self, episode: Episode, source: str | Path = "<episode>") -> str:
        """Validate and append one episode atomically; returns its name."""
        return self.add_many([episode], [source])[0]

    def add_many(self, episodes: list[Episode], sources: list[str | Path] | None = None) -> list[str]:
        """Validate all, then write them as chunks and index them with one metadata update.

        Nothing is written unless every episode validates. A batch is one chunk (more when it is
        very large or its action dtypes differ); each is renamed into place when complete
        (:meth:`write_chunk`) and the batch is indexed once (:meth:`index_records`), so a kill in
        between leaves complete chunks that :meth:`adopt_orphans` picks up. Returns the names.
        """
        sources = list(sources) if sources is not None else ["<episode>"] * len(episodes)
        for ep, src in zip(episodes, sources):
            ep.validate(self.observation_space, self.action_space, source=src)
        records: list[Record] = []
        builder = ChunkBuilder(self.observation_space.dtype)
        for ep in episodes:
            if len(builder) and (builder.full() or not builder.accepts(ep.action)):
                records += self.write_chunk(builder.build())
                builder = ChunkBuilder(self.observation_space.dtype)
            builder.add_episode(ep)
        if len(builder):
            records += self.write_chunk(builder.build())
        self.index_records(records)
        return [name for name, _ in records]

    def write_chunk(self, arrs: dict[str, np.ndarray]) -> list[Record]:
        """Write validated chunk arrays (:meth:`ChunkBuilder.build`) as a new chunk file, flushed to
        disk and renamed in whole (not yet indexed). Returns its (episode name, index entry) records."""
        name = new_chunk_name()
        self.chunk_dir.mkdir(exist_ok=True)
        write_chunk_file(self.chunk_dir, name, arrs)
        entries = chunk_entries(arrs, name)
        return list(zip(episode_names(name, len(entries)), entries))

    def index_records(self, records: list[Record]) -> None:
        """Add records to the index: one locked rewrite of ``metadata.json``."""
        if not records:
            return
        with _locked(self.root):
            meta = self._fresh_meta()
            meta["index"].update(records)
            self._write_meta(meta)

    def extend(self, episodes: Iterator[Episode] | list[Episode]) -> list[str]:
        return self.add_many(list(episodes))

    # ------------------------------------------------------------------------ maintenance
    def orphans(self) -> list[Path]:
        """Files on disk that the index does not list (left by a kill before indexing): version-1
        archives in ``episodes/`` and chunks in ``chunks/`` that no entry points at."""
        index = self.meta["index"]
        used = {e["chunk"] for e in index.values() if "chunk" in e}
        archives = [p for p in _listing(self.episode_dir) if p.name not in index]
        return archives + [p for p in _listing(self.chunk_dir) if p.name not in used]

    def _orphan_records(self, path: Path, bad: list[tuple[str, str]] | None) -> list[Record]:
        """Index records for one orphan; its problems go to ``bad`` (or raise when ``bad`` is None)."""
        if path.parent == self.episode_dir:
            return [(path.name, _entry(load_episode_file(path, self.observation_space, self.action_space)))]
        chunk = read_chunk(path, self.observation_space, self.action_space)
        if chunk.bad and bad is None:
            raise next(iter(chunk.bad.values()))
        for r, exc in chunk.bad.items():
            assert bad is not None
            bad.append((f"{path} (episode {r})", problem(exc)))
        names = episode_names(path.name, len(chunk))
        return [(names[r], e) for r, e in enumerate(chunk.entries()) if r not in chunk.bad]

    def adopt_orphans(self) -> tuple[int, list[tuple[str, str]]]:
        """Index every valid episode of the orphans; returns (how many, [(file, problem)] of those left out)."""
        with _locked(self.root):
            self.meta = self._read_meta()
            meta = self._fresh_meta()
            bad: list[tuple[str, str]] = []
            added: list[Record] = []
            for path in self.orphans():
                try:
                    added += self._orphan_records(path, bad)
                except EpisodeError as exc:
                    bad.append((str(path), problem(exc)))
            if added:
                meta["index"].update(added)
                self._write_meta(meta)
        return len(added), bad

    def clean_stale(self) -> int:
        """Remove temporary files of writers that are gone (see :func:`dreamlab.data.archive.stale_temp_files`)."""
        stale = [p for d in (self.episode_dir, self.chunk_dir, self.root) for p in stale_temp_files(d)]
        for p in stale:
            p.unlink(missing_ok=True)
        return len(stale)

    def reindex(self) -> int:
        """Index files present on disk but missing from the metadata (after a crash; a bad one is
        an error), drop entries whose file is gone; returns how many episodes were added."""
        with _locked(self.root):
            self.meta = self._read_meta()
            meta = self._fresh_meta()
            added: list[Record] = []
            for path in self.orphans():
                added += self._orphan_records(path, None)
            index = meta["index"]
            for name in [n for n, e in index.items() if not self._file(n, e).exists()]:
                del index[name]
            index.update(added)
            self._write_meta(meta)
        return len(added)

    # ----------------------------------------------------------------------------- reading
    def refresh(self) -> None:
        self.meta = self._read_meta()

    def names(self) -> list[str]:
        """Episode names in the order they were written."""
        return sorted(self.meta["index"])

    def _file(self, name: str, entry: dict[str, Any]) -> Path:
        return self.chunk_dir / entry["chunk"] if "chunk" in entry else self.episode_dir / name

    def paths(self) -> list[Path]:
        """The file holding each episode, in :meth:`names` order (a chunk once per episode in it)."""
        index = self.meta["index"]
        return [self._file(n, index[n]) for n in self.names()]

    def files(self) -> list[Path]:
        """Every data file the index points at, once each."""
        return list(dict.fromkeys(self.paths()))

    def __len__(self) -> int:
        return len(self.meta["index"])

    @property
    def num_steps(self) -> int:
        return int(self.meta["steps"])

    def read_chunk(self, chunk: str) -> Chunk:
        """One chunk of this store, read and validated (see :func:`dreamlab.data.chunks.read_chunk`)."""
        if not valid_name(chunk):
            raise StoreError(f"{self.root}: {chunk!r} is not a plain chunk file name inside the store")
        return read_chunk(self.chunk_dir / chunk, self.observation_space, self.action_space)

    def _load(self, name: str, chunk: Chunk | None) -> tuple[Episode, Chunk | None]:
        """Episode ``name``, reusing ``chunk`` when it is the one that holds it; returns the chunk used."""
        entry = self.meta["index"].get(name)
        if entry is not None and "chunk" in entry:
            if chunk is None or chunk.path.name != entry["chunk"]:
                chunk = self.read_chunk(entry["chunk"])
            return chunk.episode(chunk.row(entry["start"], entry["length"], name)), chunk
        if not valid_name(name):
            raise StoreError(f"{self.root}: {name!r} is not a plain episode file name inside the store")
        return load_episode_file(self.episode_dir / name, self.observation_space, self.action_space), chunk

    def load(self, name: str) -> Episode:
        """One episode (indexed, or a version-1 archive by file name); reads its whole chunk."""
        return self._load(name, None)[0]

    def __iter__(self) -> Iterator[Episode]:
        """Lazy: one chunk (or version-1 archive) is read and validated at a time."""
        chunk: Chunk | None = None
        for name in self.names():
            ep, chunk = self._load(name, chunk)
            yield ep

    def episodes(self, names: list[str] | None = None) -> list[Episode]:
        """The episodes ``names`` (default: all) in that order, reading each chunk once."""
        names = self.names() if names is None else list(names)
        index = self.meta["index"]

        def chunk_of(i: int) -> str:
            entry = index.get(names[i])
            return entry["chunk"] if entry is not None and "chunk" in entry else ""

        out: list[Episode | None] = [None] * len(names)
        chunk: Chunk | None = None
        for i in sorted(range(len(names)), key=chunk_of):
            out[i], chunk = self._load(names[i], chunk)
        return [ep for ep in out if ep is not None]

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
        """Read and validate every indexed episode and compare it with its index entry; list files
        the index does not name and the index's totals. Returns (file, problem) for every
        disagreement; changes nothing (see :mod:`dreamlab.data.store_check`)."""
        from dreamlab.data.store_check import check_store

        return check_store(self)


def _listing(folder: Path) -> list[Path]:
    return sorted(p for p in folder.glob("*.npz") if valid_name(p.name)) if folder.is_dir() else []


@contextmanager
def _locked(root: Path):
    root.mkdir(parents=True, exist_ok=True)
    with open(root / ".lock", "a+") as fh:
        fcntl.flock(fh.fileno(), fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
