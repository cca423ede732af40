"""Files written whole or not at all, and versioned JSON manifests read in one place.

Every file dreamlab writes goes through :func:`atomic_path`: the content is written to a
temporary name in the same folder (``.tmp-<random>-<name>``) and renamed over the target only
when complete, so a crash or a kill leaves either the old file or the new one, never half of
one; a failure removes the temporary file.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

TMP_PREFIX = ".tmp-"


def tmp_name(path: Path) -> Path:
    """A fresh temporary sibling of ``path`` (same folder, so the rename is atomic)."""
    return path.with_name(f"{TMP_PREFIX}{uuid.uuid4().hex[:12]}-{path.name}")


@contextmanager
def atomic_path(path: str | Path) -> Iterator[Path]:
    """``with atomic_path(p) as tmp: write tmp`` -> ``tmp`` replaces ``p`` when the block succeeds."""
    path = Path(path)
    tmp = tmp_name(path)
    try:
        yield tmp
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_bytes(path: str | Path, payload: bytes, fsync: bool = False) -> None:
    with atomic_path(path) as tmp, open(tmp, "wb") as fh:
        fh.write(payload)
        if fsync:
            fh.flush()
            os.fsync(fh.fileno())


def atomic_write_text(path: str | Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def atomic_write_json(path: str | Path, obj: Any, indent: int | None = 1, **dumps_kw: Any) -> None:
    atomic_write_text(path, json.dumps(obj, indent=indent, **dumps_kw))


def atomic_torch_save(obj: Any, path: str | Path) -> None:
    import torch

    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def atomic_copy(src: str | Path, dst: str | Path) -> None:
    with atomic_path(dst) as tmp:
        shutil.copyfile(src, tmp)


def write_csv(path: str | Path, rows: list[dict[str, Any]]) -> None:
    """Rows (dicts, keys in first-seen order) -> CSV, replaced atomically."""
    keys = list(dict.fromkeys(k for r in rows for k in r))
    with atomic_path(path) as tmp, open(tmp, "w", newline="") as fh:
        w = csv.DictWriter(fh, fieldnames=keys)
        w.writeheader()
        w.writerows(rows)


def read_manifest(
    path: Path, fmt: str, version: int, error: type[Exception] = ValueError, what: str = "directory"
) -> dict[str, Any]:
    """Load ``path`` (JSON) and check its ``format``/``version`` fields; errors name the file and field."""
    path = Path(path)
    if not path.exists():
        raise error(f"{path}: not found; {path.parent} is not a {what}")
    try:
        meta = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise error(f"{path}: not valid JSON: {exc}") from None
    if not isinstance(meta, dict) or meta.get("format") != fmt or meta.get("version") != version:
        got = (meta.get("format"), meta.get("version")) if isinstance(meta, dict) else (None, None)
        raise error(f"{path}: field 'format'/'version' is {got[0]!r}/{got[1]!r}; expected {fmt!r}/{version}")
    return meta
