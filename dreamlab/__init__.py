"""dreamlab: learn a world model from logs, practise in its dreams, distil into an LLM.

The packages install under one name: ``dreamlab.data``, ``dreamlab.worldmodel``, ``dreamlab.policy``,
``dreamlab.imagination`` (and ``dreamlab.core`` beneath them); the most used names are here too."""

from __future__ import annotations

from dreamlab.core.lazy import lazy_exports

__version__ = "0.1.0"

_EXPORTS: dict[str, str] = {
    "DreamEnv": "dreamlab.imagination.dream_env",
    "DreamerAgent": "dreamlab.imagination.agent",
    "WorldModel": "dreamlab.worldmodel.model",
    "WorldModelConfig": "dreamlab.worldmodel.config",
    "EpisodeStore": "dreamlab.data.store",
    "Episode": "dreamlab.data.episodes",
    "LLMPolicy": "dreamlab.policy.llm",
    "Policy": "dreamlab.core.protocol",
    "DreamlabError": "dreamlab.core.errors",
    "CycleConfig": "dreamlab.cycle",
    "QuickstartConfig": "dreamlab.pipeline",
    "run_cycle": "dreamlab.cycle",
    "run_quickstart": "dreamlab.pipeline",
}

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
