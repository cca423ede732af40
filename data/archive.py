"""The files of an episode store, read as hostile input: archives, chunks and the index.

* :func:`read_archive` opens one ``.npz`` without trusting it: it must be a zip archive of
  ``.npy`` members; every member's header (shape, dtype) is read before any array is allocated
  and refused when it holds objects (pickles are never loaded), declares more bytes than the
  member holds, or more than deflate could expand the stored bytes to (a header claiming shape
  ``(10**12, 4)`` is an error naming the file, not an allocation). ``check`` sees every header
  first (a chunk compares the lengths they declare with each other before reading any data).
* :func:`check_index` checks the structure of ``metadata.json``: ``index`` is a mapping of
  episode names to entries with integer ``length`` / ``steps`` and a numeric ``return``; an
  entry without ``chunk`` is a version-1 archive whose name is a plain file name in
  ``episodes/`` (no separators, no ``..``, not hidden, ending in ``.npz``); an entry with
  ``chunk`` (version 2) names a plain chunk file in ``chunks/`` and its first step ``start``
  there, and its own name is plain letters, digits, ``_`` and ``-``. A version-1 store holds
  no chunk entries.
* :func:`stale_temp_files`: temporary archives and chunks (``.tmp-ep-…`` / ``.tmp-ck-<time>-<pid>-<hex>.npz``)
  whose writing process is gone, and other temporary files older than an hour.
"""

from __future__ import annotations

import math
import os
import re
import time
import zipfile
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from dreamlab.data.episodes import FIELDS, EpisodeError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,250}\.npz")
EPISODE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,250}")
TMP_PREFIX = ".tmp-"
STALE_AFTER_S = 3600.0
MAX_DEFLATE_RATIO = 1100  # deflate expands at most ~1032x; a member claiming more is lying
VERSIONS = (1, 2)


def valid_name(name: object) -> bool:
    """A plain archive (or chunk) file name inside the store's ``episodes/`` (``chunks/``) folder."""
    return isinstance(name, str) and NAME.fullmatch(name) is not None and ".." not in name


def valid_episode_name(name: object) -> bool:
    """A plain name for an episode held in a chunk (letters, digits, ``_``, ``-``)."""
    return isinstance(name, str) and EPISODE_NAME.fullmatch(name) is not None


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool) and math.isfinite(v)


def check_index(meta: dict[str, Any], path: Path, error: type[Exception]) -> None:
    """Structure of ``metadata.json`` (see the module docstring); ``error`` names the file and field."""
    index = meta.get("index")
    if "index" not in meta:
        raise error(f"{path}: field 'index' is missing (expected a mapping of episode file names to entries)")
    if not isinstance(index, dict):
        raise error(f"{path}: field 'index' must be a mapping of episode file names, got {type(index).__name__}")
    chunks_allowed = meta.get("version") != 1
    for name, entry in index.items():
        label = name if valid_name(name) or valid_episode_name(name) else repr(name)  # keep errors one line
        where = f"{path}: field 'index.{label}'"
        if not isinstance(entry, dict):
            raise error(f"{where}: expected an object with length, steps and return, got {type(entry).__name__}")
        chunked = "chunk" in entry
        if not (valid_episode_name(name) if chunked else valid_name(name)):
            raise error(
                f"{path}: field 'index': key {name!r} is not a plain episode file name inside the store "
                "(expected NAME.npz for an archive, or letters, digits, '_' or '-' for a chunk's episode; "
                "no separators)"
            )
        length: Any = entry.get("length")
        steps: Any = entry.get("steps")
        if not _is_int(length) or length < 1:
            raise error(f"{where}.length: expected a positive integer, got {length!r}")
        if not _is_int(steps) or steps < 0:
            raise error(f"{where}.steps: expected a non-negative integer, got {steps!r}")
        if not _is_number(entry.get("return")):
            raise error(f"{where}.return: expected a finite number, got {entry.get('return')!r}")
        if "terminated" in entry and not isinstance(entry["terminated"], bool):
            raise error(f"{where}.terminated: expected true or false, got {entry['terminated']!r}")
        if "feedback" in entry and not _is_number(entry["feedback"]):
            raise error(f"{where}.feedback: expected a finite number, got {entry['feedback']!r}")
        if chunked:
            if not chunks_allowed:
                raise error(f"{where}.chunk: a version-1 store holds no chunks (field 'version' must be 2)")
            if not valid_name(entry["chunk"]):
                raise error(
                    f"{where}.chunk: {entry['chunk']!r} is not a plain chunk file name inside the store "
                    "(expected NAME.npz in chunks/, no separators)"
                )
            if not _is_int(entry.get("start")) or entry["start"] < 0:
                raise error(f"{where}.start: expected a non-negative integer, got {entry.get('start')!r}")
    for key in ("steps", "episodes"):
        if key in meta and (not _is_int(meta[key]) or meta[key] < 0):
            raise error(f"{path}: field '{key}' must be a non-negative integer, got {meta[key]!r}")
    if "steps" not in meta:
        raise error(f"{path}: field 'steps' is missing (expected the number of stored transitions)")


def _header(fh: Any) -> tuple[tuple[int, ...], np.dtype]:
    version = np.lib.format.read_magic(fh)
    if version == (1, 0):
        shape, _, dtype = np.lib.format.read_array_header_1_0(fh)
    elif version == (2, 0):
        shape, _, dtype = np.lib.format.read_array_header_2_0(fh)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    return tuple(int(s) for s in shape), np.dtype(dtype)


Headers = dict[str, tuple[tuple[int, ...], np.dtype]]


def read_archive(
    path: Path,
    fields: Sequence[str] = FIELDS,
    check: Callable[[Headers], None] | None = None,
    what: str = "episode",
) -> dict[str, np.ndarray]:
    """The arrays ``fields`` of one archive (see the module docstring); errors name the file and field.

    ``check(headers)`` runs after every member's header was read and before any array is read
    (it raises :class:`EpisodeError` to refuse the file)."""
    if not path.exists():
        raise EpisodeError(path, None, "file not found")
    if path.is_dir() or not zipfile.is_zipfile(path):
        raise EpisodeError(
            path, None, f"not a valid {what} file: not a .npz zip archive of arrays (truncated or corrupt?)"
        )
    arrs: dict[str, np.ndarray] = {}
    field: str | None = None
    try:
        with zipfile.ZipFile(path) as zf:
            members = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
            headers: Headers = {}
            for field in fields:
                info = members.get(field)
                if info is None:
                    raise EpisodeError(
                        path, field, f"missing field; not a valid {what} file (it holds {sorted(members)})"
                    )
                with zf.open(info) as fh:
                    shape, dtype = _header(fh)
                if dtype.hasobject:
                    raise EpisodeError(path, field, "holds object (pickled) data, which is never loaded")
                declared = math.prod(shape) * dtype.itemsize
                limit = info.file_size
                if info.compress_type != zipfile.ZIP_STORED:
                    limit = min(limit, MAX_DEFLATE_RATIO * info.compress_size + 4096)
                if declared > limit:
                    raise EpisodeError(
                        path,
                        field,
                        f"header declares shape {shape} of {dtype} ({declared} bytes) but the archive member "
                        f"holds {limit} bytes: not a valid {what} file",
                    )
                headers[field] = (shape, dtype)
            field = None
            if check is not None:
                check(headers)
            for field in fields:
                with zf.open(members[field]) as fh:
                    arrs[field] = np.lib.format.read_array(fh, allow_pickle=False)
    except EpisodeError:
        raise
    except MemoryError:
        raise EpisodeError(path, field, f"declares an array too large to load: not a valid {what} file") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as exc:
        msg = " ".join(str(exc).split())[:200]
        raise EpisodeError(path, field, f"not a readable {what} archive (truncated or corrupt): {msg}") from None
    return arrs


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def stale_temp_files(folder: Path) -> list[Path]:
    """Temporary files in ``folder`` left by a writer that is gone (see the module docstring)."""
    stale = []
    now = time.time()
    for p in folder.glob(f"{TMP_PREFIX}*"):
        m = re.fullmatch(rf"{re.escape(TMP_PREFIX)}(?:ep|ck)-\d+-(\d+)-[0-9a-f]+\.npz", p.name)
        try:
            old = now - p.stat().st_mtime > STALE_AFTER_S
        except OSError:
            continue
        if (m is not None and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1)))) or old:
            stale.append(p)
    return stale
