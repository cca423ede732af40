"""Versioned JSON manifests of saved directories (agents, models): read and checked in one place."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any


def read_manifest(path: Path, fmt: str, version: int, error: type[Exception] = ValueError,
                  what: str = "directory") -> dict[str, Any]:
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
