"""The RSSM world model: config and presets, the Lightning module, training, open-loop evaluation."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "WorldModelConfig": "dreamlab.worldmodel.config",
    "preset": "dreamlab.worldmodel.config",
    "WorldModel": "dreamlab.worldmodel.model",
    "CheckpointError": "dreamlab.worldmodel.checkpoint",
    "SpaceMismatchError": "dreamlab.worldmodel.checkpoint",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:  # PEP 562: import a submodule only when one of its names is used
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
