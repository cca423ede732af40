"""The files of an episode store, read as hostile input: episode archives and the index.

* :func:`read_archive` opens one ``.npz`` without trusting it: it must be a zip archive of
  ``.npy`` members; each member's header (shape, dtype) is read first and refused when it holds
  objects (pickles are never loaded) or declares more bytes than the member holds (a header
  claiming shape ``(10**12, 4)`` is an error naming the file, not an allocation).
* :func:`check_index` checks the structure of ``metadata.json``: ``index`` is a mapping of plain
  file names (no separators, no ``..``, not hidden, ending in ``.npz``) to entries with integer
  ``length`` / ``steps`` and a numeric ``return``; ``steps`` is an integer.
* :func:`stale_temp_files`: temporary archives (``.tmp-ep-<time>-<pid>-<hex>.npz``) whose
  writing process is gone, and other temporary files older than an hour.
"""

from __future__ import annotations

import math
import os
import re
import time
import zipfile
import zlib
from pathlib import Path
from typing import Any

import numpy as np

from dreamlab.data.episodes import FIELDS, EpisodeError

NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,250}\.npz")
TMP_PREFIX = ".tmp-"
STALE_AFTER_S = 3600.0


def valid_name(name: object) -> bool:
    """A plain archive file name inside the store's ``episodes/`` folder."""
    return isinstance(name, str) and NAME.fullmatch(name) is not None and ".." not in name


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
    for name, entry in index.items():
        if not valid_name(name):
            raise error(
                f"{path}: field 'index': key {name!r} is not a plain episode file name inside the store "
                "(expected NAME.npz: letters, digits, '.', '_' or '-', no separators)"
            )
        where = f"{path}: field 'index.{name}'"
        if not isinstance(entry, dict):
            raise error(f"{where}: expected an object with length, steps and return, got {type(entry).__name__}")
        for key in ("length", "steps"):
            if not _is_int(entry.get(key)) or entry[key] < (1 if key == "length" else 0):
                raise error(f"{where}.{key}: expected a non-negative integer, got {entry.get(key)!r}")
        if not _is_number(entry.get("return")):
            raise error(f"{where}.return: expected a finite number, got {entry.get('return')!r}")
        if "terminated" in entry and not isinstance(entry["terminated"], bool):
            raise error(f"{where}.terminated: expected true or false, got {entry['terminated']!r}")
        if "feedback" in entry and not _is_number(entry["feedback"]):
            raise error(f"{where}.feedback: expected a finite number, got {entry['feedback']!r}")
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


def read_archive(path: Path) -> dict[str, np.ndarray]:
    """The arrays of one episode archive (see the module docstring); errors name the file and field."""
    if not path.exists():
        raise EpisodeError(path, None, "file not found")
    if path.is_dir() or not zipfile.is_zipfile(path):
        raise EpisodeError(
            path, None, "not a valid episode file: not a .npz zip archive of arrays (truncated or corrupt?)"
        )
    arrs: dict[str, np.ndarray] = {}
    field: str | None = None
    try:
        with zipfile.ZipFile(path) as zf:
            members = {i.filename[:-4]: i for i in zf.infolist() if i.filename.endswith(".npy")}
            for field in FIELDS:
                info = members.get(field)
                if info is None:
                    raise EpisodeError(
                        path, field, f"missing field; not a valid episode file (it holds {sorted(members)})"
                    )
                with zf.open(info) as fh:
                    shape, dtype = _header(fh)
                    if dtype.hasobject:
                        raise EpisodeError(path, field, "holds object (pickled) data, which is never loaded")
                    declared = math.prod(shape) * dtype.itemsize
                    if declared > info.file_size:
                        raise EpisodeError(
                            path,
                            field,
                            f"header declares shape {shape} of {dtype} ({declared} bytes) but the archive member "
                            f"holds {info.file_size} bytes: not a valid episode file",
                        )
                    fh.seek(0)
                    arrs[field] = np.lib.format.read_array(fh, allow_pickle=False)
    except EpisodeError:
        raise
    except MemoryError:
        raise EpisodeError(path, field, "declares an array too large to load: not a valid episode file") from None
    except (zipfile.BadZipFile, zlib.error, EOFError, OSError, ValueError, KeyError) as exc:
        msg = " ".join(str(exc).split())[:200]
        raise EpisodeError(path, field, f"not a readable episode archive (truncated or corrupt): {msg}") from None
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
        m = re.fullmatch(rf"{re.escape(TMP_PREFIX)}ep-\d+-(\d+)-[0-9a-f]+\.npz", p.name)
        try:
            old = now - p.stat().st_mtime > STALE_AFTER_S
        except OSError:
            continue
        if (m is not None and int(m.group(1)) != os.getpid() and not _pid_alive(int(m.group(1)))) or old:
            stale.append(p)
    return stale
