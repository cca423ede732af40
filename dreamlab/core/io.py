"""Files written whole or not at all, and versioned JSON manifests read in one place.

Every file dreamlab writes goes through :func:`atomic_path`: the content is written to a
temporary name in the same folder (``.tmp-<random>-<name>``) and renamed over the target only
when complete, so a crash or a kill leaves either the old file or the new one, never half of
one; a failure removes the temporary file.

Outputs are checked before anything is written (:func:`check_output_file`, :func:`check_output_dir`):
no command writes into or over an input (an episode store it reads), and none replaces an
existing output file unless ``--force`` is given. Every checkpoint is read by
:func:`safe_torch_load` (``weights_only=True``; a bad file is one error naming it).
"""

from __future__ import annotations

import csv
import json
import os
import re
import shutil
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from dreamlab.core.errors import DreamlabError

TMP_PREFIX = ".tmp-"


class OutputError(DreamlabError):
    """An output path that would overwrite a file without ``--force``, or write into an input."""


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


def safe_torch_load(
    path: str | Path, what: str = "checkpoint", error: type[Exception] = DreamlabError, map_location: Any = "cpu"
) -> Any:
    """``torch.load(path, weights_only=True)``: nothing is unpickled; any failure is one ``error``
    naming the file (``what`` says what it should have been)."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise error(f"{path}: {what} not found" + (" (it is a directory)" if path.is_dir() else ""))
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except Exception as exc:  # noqa: BLE001 - any failure to read means a bad (or hostile) file
        text = " ".join(re.sub(r"\x1b\[[0-9;]*m", "", str(exc)).split())
        if text.startswith("Weights only load failed"):
            text = "it holds pickled Python objects, which are never loaded"
        first = text[:200] if text else type(exc).__name__
        raise error(f"{path}: not a {what} (torch.load with weights_only=True failed: {first})") from None


def _inside(path: Path, root: Path) -> bool:
    p, r = Path(os.path.realpath(path)), Path(os.path.realpath(root))
    return p == r or r in p.parents


def check_not_inside(out: str | Path, inputs: Sequence[str | Path], flag: str = "--out") -> None:
    """Refuse an output at or inside an input folder (an episode store a command reads)."""
    for root in inputs:
        if _inside(Path(out), Path(root)):
            raise OutputError(
                f"{flag} {out}: is inside the input {root}; refusing to write into an input (choose a path outside it)"
            )


def check_output_dir(out: str | Path, flag: str = "--out", inputs: Sequence[str | Path] = ()) -> Path:
    """An output *folder*: it, and every existing parent, must be a directory (not a file); not inside ``inputs``."""
    out = Path(out)
    for p in (out, *out.parents):
        if p.exists():
            if not p.is_dir():
                what = "is a file" if p == out else f"lies under {p}, which is a file"
                raise OutputError(f"{flag} {out}: {what}; expected a directory")
            break
    check_not_inside(out, inputs, flag)
    return out


def check_output_file(out: str | Path, force: bool, flag: str = "--out", inputs: Sequence[str | Path] = ()) -> Path:
    """An output *file*: never inside ``inputs``; an existing file is replaced only with ``force``."""
    out = Path(out)
    check_not_inside(out, inputs, flag)
    if out.is_dir():
        raise OutputError(f"{flag} {out}: is a directory; expected a file path")
    for p in out.parents:
        if p.exists():
            if not p.is_dir():
                raise OutputError(f"{flag} {out}: lies under {p}, which is a file; expected a folder there")
            break
    if out.exists() and not force:
        raise OutputError(f"{flag} {out}: exists; refusing to overwrite it (pass --force to replace it)")
    return out
