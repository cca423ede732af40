"""Chunks: the version-2 episode files, each holding many episodes.

A chunk ``chunks/ck-<time ns>-<pid>-<hex>.npz`` is a zip archive of ``.npy`` members (deflate
level 1; float observations stored as they are, since deflate saves ~6% on them at most of the
writer's time): the fields of :mod:`dreamlab.data.episodes` for all its episodes concatenated along
time (``obs (N, *obs)``, ``action (N, *act)``, ``reward (N,)``, ...), plus ``offsets (n + 1,)``
int64, where episode ``r`` is steps ``offsets[r]:offsets[r + 1]`` (``offsets[0] = 0``,
``offsets[-1] = N``). Episode ``r`` of chunk ``ck-X.npz`` is named ``ep-X-<r:06d>``; names sort
in the order episodes were written. A chunk is written to a temporary file, flushed to disk and
renamed into place whole (:func:`write_chunk_file`), so it is complete or absent.

Reading (:func:`read_chunk`) treats the file as hostile: every member header is checked before
anything is allocated (no objects; the declared steps of every field agree with each other and
with ``offsets``), then the chunk is validated against the episode convention and the store's
spaces in a few vectorised passes. Problems of the whole file raise :class:`EpisodeError`
naming the file and field; problems of single episodes are kept per episode (``Chunk.bad``),
with the message :func:`dreamlab.data.episodes.validate_arrays` gives for that episode alone,
so the other episodes of the chunk still load.
"""

from __future__ import annotations

import os
import time
import uuid
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np

from dreamlab.data.archive import Headers, read_archive
from dreamlab.data.episodes import FIELDS, Episode, EpisodeError, check_actions, check_field_dtypes, validate_arrays

CHUNK_FIELDS = (*FIELDS, "offsets")
MAX_EPISODES = 999_999  # six digits of row in an episode name
MAX_BYTES = 64 << 20  # writers start a new chunk beyond this much raw data
COMPRESS_LEVEL = 1  # actions, rewards and flags compress as well as at level 6, in less time


def new_chunk_name() -> str:
    return f"ck-{time.time_ns():020d}-{os.getpid()}-{uuid.uuid4().hex[:8]}.npz"


def episode_names(chunk: str, n: int) -> list[str]:
    """The names of the ``n`` episodes of chunk file ``chunk`` (see the module docstring)."""
    base = chunk[:-4]
    base = ("ep-" + base[3:] if base.startswith("ck-") else base).replace(".", "_")[:240]
    return [f"{base}-{r:06d}" for r in range(n)]


def chunk_entries(arrs: dict[str, np.ndarray], chunk: str) -> list[dict[str, Any]]:
    """Index entries of every episode of a chunk (named ``chunk``), from its arrays."""
    off = arrs["offsets"]
    starts, lengths = off[:-1], np.diff(off)
    ret = np.add.reduceat(arrs["reward"].astype(np.float64), starts)
    fb = np.add.reduceat(np.abs(arrs["feedback"]).astype(np.float64), starts)
    term = arrs["is_terminal"][off[1:] - 1]
    return [
        {
            "length": int(n),
            "steps": int(n) - 1,
            "return": float(r),
            "terminated": bool(t),
            "feedback": float(f),
            "chunk": chunk,
            "start": int(s),
        }
        for s, n, r, t, f in zip(starts.tolist(), lengths.tolist(), ret.tolist(), term.tolist(), fb.tolist())
    ]


@dataclass
class Chunk:
    """One chunk in memory: its arrays, episode offsets and the episodes that failed validation."""

    path: Path
    arrays: dict[str, np.ndarray]
    bad: dict[int, EpisodeError] = field(default_factory=dict)

    @property
    def offsets(self) -> np.ndarray:
        return self.arrays["offsets"]

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def row(self, start: int, length: int, name: str) -> int:
        """The episode that the index entry ``name`` (first step ``start``, ``length`` steps) points at."""
        off = self.offsets
        r = int(np.searchsorted(off, start))
        if r >= len(self) or int(off[r]) != start or int(off[r + 1]) - start != length:
            raise EpisodeError(
                self.path,
                "offsets",
                f"metadata.json entry '{name}' (start {start}, length {length}) matches no episode of this "
                f"chunk ({len(self)} episodes, {int(off[-1])} steps)",
            )
        if r in self.bad:
            raise self.bad[r]
        return r

    def episode(self, r: int) -> Episode:
        s, e = int(self.offsets[r]), int(self.offsets[r + 1])
        return Episode(**{k: self.arrays[k][s:e].copy() for k in FIELDS})

    def entries(self) -> list[dict[str, Any]]:
        """Index entries for every episode (bad ones included; see ``bad``)."""
        return chunk_entries(self.arrays, self.path.name)


class ChunkBuilder:
    """Episodes gathered for one chunk, as pieces; :meth:`build` concatenates them once.

    ``add_steps`` takes one episode as gymnasium hands it over (N + 1 observations, N actions,
    N rewards); ``add_episode`` an :class:`Episode` that already follows the convention (its
    flags are rebuilt from the offsets). Observations are cast to the store's dtype, rewards and
    feedback to float32, as version 1 did; every episode of a chunk shares one action dtype
    (``accepts``), so actions round-trip exactly."""

    def __init__(self, obs_dtype: Any = None):
        self.obs_dtype = obs_dtype
        self.obs: list[np.ndarray] = []
        self.action: list[np.ndarray] = []
        self.reward: list[np.ndarray] = []
        self.feedback: list[np.ndarray | None] = []
        self.lengths: list[int] = []
        self.terminated: list[bool] = []
        self.nbytes = 0
        self.since = 0.0  # time.monotonic() of the first episode
        self.action_sig: tuple[np.dtype, tuple[int, ...]] | None = None
        self._zero_act: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.lengths)

    @property
    def steps(self) -> int:
        return sum(self.lengths) - len(self.lengths)

    def full(self) -> bool:
        return len(self.lengths) >= MAX_EPISODES or self.nbytes >= MAX_BYTES

    def accepts(self, action: np.ndarray) -> bool:
        return self.action_sig is None or self.action_sig == (action.dtype, action.shape[1:])

    def _start(self, action: np.ndarray) -> None:
        if not self.accepts(action):
            raise ValueError("ChunkBuilder: every episode of a chunk has the same action dtype and shape")
        if self.action_sig is None:
            self.action_sig = (action.dtype, action.shape[1:])
            self._zero_act = np.zeros((1,) + action.shape[1:], action.dtype)
            self.since = time.monotonic()

    def add_steps(self, obs: np.ndarray, action: np.ndarray, reward: np.ndarray, terminated: bool) -> None:
        """One episode: ``obs (N + 1, *obs)``, ``action (N, *act)``, ``reward (N,)`` (arrays it may keep)."""
        self._start(action)
        assert self._zero_act is not None
        self.obs.append(obs)
        self.action += (action, self._zero_act)
        self.reward += (_ZERO, reward)
        self.feedback.append(None)
        self.lengths.append(len(obs))
        self.terminated.append(bool(terminated))
        self.nbytes += obs.nbytes + action.nbytes + reward.nbytes

    def add_episode(self, ep: Episode) -> None:
        """One episode that follows the convention (validate it first)."""
        self._start(ep.action)
        self.obs.append(ep.obs)
        self.action.append(ep.action)
        self.reward.append(ep.reward)
        self.feedback.append(ep.feedback)
        self.lengths.append(ep.length)
        self.terminated.append(ep.terminated)
        self.nbytes += ep.obs.nbytes + ep.action.nbytes + ep.reward.nbytes

    def build(self) -> dict[str, np.ndarray]:
        """The chunk's arrays (see the module docstring)."""
        off = np.zeros(len(self.lengths) + 1, np.int64)
        np.cumsum(self.lengths, out=off[1:])
        n = int(off[-1])
        obs = np.concatenate(self.obs)
        if self.obs_dtype is not None:
            obs = obs.astype(self.obs_dtype, copy=False)
        fb = np.zeros(n, np.float32)
        if any(f is not None for f in self.feedback):
            fb = np.concatenate(
                [f if f is not None else np.zeros(t, np.float32) for f, t in zip(self.feedback, self.lengths)]
            ).astype(np.float32, copy=False)
        first, last, term = np.zeros(n, bool), np.zeros(n, bool), np.zeros(n, bool)
        first[off[:-1]] = True
        last[off[1:] - 1] = True
        term[off[1:][np.asarray(self.terminated, bool)] - 1] = True
        return {
            "obs": obs,
            "action": np.concatenate(self.action),
            "reward": np.concatenate(self.reward).astype(np.float32, copy=False),
            "is_first": first,
            "is_last": last,
            "is_terminal": term,
            "feedback": fb,
            "offsets": off,
        }


_ZERO = np.zeros(1, np.float64)


def select(arrs: dict[str, np.ndarray], rows: list[int]) -> dict[str, np.ndarray]:
    """The chunk arrays of only the episodes ``rows`` (to drop the bad ones before writing)."""
    off = arrs["offsets"]
    idx = np.concatenate([np.arange(off[r], off[r + 1]) for r in rows]) if rows else np.zeros(0, np.int64)
    lengths = np.diff(off)[rows] if rows else np.zeros(0, np.int64)
    new_off = np.zeros(len(rows) + 1, np.int64)
    np.cumsum(lengths, out=new_off[1:])
    return {**{k: arrs[k][idx] for k in FIELDS}, "offsets": new_off}


def validate_chunk(
    arrs: dict[str, np.ndarray], obs_space: gym.Space | None, action_space: gym.Space | None, path: str | Path
) -> dict[int, EpisodeError]:
    """Check a chunk's structure (raises :class:`EpisodeError` for the whole file) and every
    episode in it (returns ``{row: error}`` for those that break the convention or the spaces)."""
    off = arrs["offsets"]
    if off.ndim != 1 or off.dtype.kind not in "iu" or len(off) < 2:
        raise EpisodeError(path, "offsets", f"expected a 1-D integer array of n + 1 episode starts, got {off.shape}")
    if int(off[0]) != 0 or bool(np.any(np.diff(off) < 1)):
        raise EpisodeError(path, "offsets", "must start at 0 and increase (each episode has at least one step)")
    n = int(off[-1])
    if arrs["obs"].ndim == 0 or n != len(arrs["obs"]):
        steps = len(arrs["obs"]) if arrs["obs"].ndim else 0
        raise EpisodeError(path, "offsets", f"the last episode ends at step {n}, but the chunk holds {steps} steps")
    for k in FIELDS:
        a = arrs[k]
        if a.ndim == 0 or len(a) != n:
            raise EpisodeError(path, k, f"expected leading length {n} (offsets[-1]), got shape {a.shape}")
        if k not in ("obs", "action") and a.ndim != 1:
            raise EpisodeError(path, k, f"expected shape ({n},), got {a.shape}")
    check_field_dtypes(arrs, path)
    for k, space in (("obs", obs_space), ("action", action_space)):  # shapes and dtypes, once for all
        if space is None:
            continue
        shape, a = tuple(space.shape or ()), arrs[k]
        if a.shape[1:] != shape:
            raise EpisodeError(path, k, f"expected shape (T, {', '.join(map(str, shape))}) for {space}, got {a.shape}")
        if k == "obs" and space.dtype is not None and np.dtype(space.dtype).kind != a.dtype.kind:
            want = np.dtype(space.dtype)
            raise EpisodeError(path, k, f"expected dtype {want} (kind '{want.kind}'), got {a.dtype}")
    first, last = np.zeros(n, bool), np.zeros(n, bool)
    first[off[:-1]] = True
    last[off[1:] - 1] = True
    bad = (arrs["is_first"] != first) | (arrs["is_last"] != last) | (arrs["is_terminal"] & ~last)
    for k in ("obs", "action", "reward", "feedback"):
        a = arrs[k]
        if np.issubdtype(a.dtype, np.floating):
            bad |= ~np.isfinite(a.reshape(n, -1)).all(1)
    rows: set[int] = set()
    if bad.any():  # (np.unique would import numpy.ma: 40 ms on a writer's first chunk)
        rows = set((np.searchsorted(off, np.flatnonzero(bad), "right") - 1).tolist())
    if action_space is not None:
        try:
            check_actions(arrs["action"][~last], action_space, path)
        except EpisodeError:
            rows = set(range(len(off) - 1))  # find which: each episode alone below
    errors: dict[int, EpisodeError] = {}
    for r in sorted(rows):
        s, e = int(off[r]), int(off[r + 1])
        try:
            validate_arrays({k: arrs[k][s:e] for k in FIELDS}, obs_space, action_space, f"{path} (episode {r})")
        except EpisodeError as exc:
            errors[r] = exc
    return errors


def read_chunk(path: Path, obs_space: gym.Space | None, action_space: gym.Space | None) -> Chunk:
    """Read and validate one chunk file (see the module docstring)."""

    def check(headers: Headers) -> None:
        shape, dtype = headers["offsets"]
        if len(shape) != 1 or dtype.kind not in "iu":
            raise EpisodeError(path, "offsets", f"expected a 1-D integer array, the header declares {shape} {dtype}")
        steps = {k: headers[k][0][0] if headers[k][0] else -1 for k in FIELDS}
        n = steps["obs"]
        for k, m in steps.items():
            if m != n:
                raise EpisodeError(path, k, f"header declares {m} steps but field 'obs' declares {n}")
        if shape[0] > n + 1:
            raise EpisodeError(path, "offsets", f"header declares {shape[0] - 1} episodes in {n} steps")

    arrs = read_archive(path, CHUNK_FIELDS, check, what="chunk")
    return Chunk(path, arrs, validate_chunk(arrs, obs_space, action_space, path))


def write_chunk_file(directory: Path, name: str, arrs: dict[str, np.ndarray]) -> None:
    """Write ``arrs`` as chunk ``directory/name``: a temporary file, flushed to disk, renamed in whole."""
    tmp = directory / f".tmp-{name}"
    try:
        with open(tmp, "wb") as fh:
            with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED, compresslevel=COMPRESS_LEVEL) as zf:
                for k in CHUNK_FIELDS:
                    a = np.ascontiguousarray(arrs[k])
                    where: str | zipfile.ZipInfo = f"{k}.npy"
                    if k == "obs" and a.dtype.kind == "f":  # deflate saves ~6% on float observations
                        where = zipfile.ZipInfo(f"{k}.npy", date_time=(1980, 1, 1, 0, 0, 0))
                        where.compress_type = zipfile.ZIP_STORED
                    with zf.open(where, "w", force_zip64=True) as member:
                        np.lib.format.write_array(member, a, allow_pickle=False)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, directory / name)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(directory)


def fsync_dir(directory: Path) -> None:
    """Make a rename inside ``directory`` durable (no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
