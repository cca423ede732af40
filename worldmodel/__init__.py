"""The RSSM world model: config and presets, the Lightning module, training, open-loop evaluation."""

from __future__ import annotations

from dreamlab.core.lazy import lazy_exports

_EXPORTS: dict[str, str] = {
    "WorldModelConfig": "dreamlab.worldmodel.config",
    "preset": "dreamlab.worldmodel.config",
    "WorldModel": "dreamlab.worldmodel.model",
    "CheckpointError": "dreamlab.worldmodel.checkpoint",
    "SpaceMismatchError": "dreamlab.worldmodel.checkpoint",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
