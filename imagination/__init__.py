"""Practice in dreams: DreamEnv, verifiers, the Dreamer actor-critic, GRPO, the deployable agent."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "DreamEnv": "dreamlab.imagination.dream_env",
    "DreamEnvError": "dreamlab.imagination.dream_env",
    "DreamerAgent": "dreamlab.imagination.agent",
    "AgentLoadError": "dreamlab.imagination.agent",
    "load_world_model": "dreamlab.imagination.agent",
    "DreamerConfig": "dreamlab.imagination.dreamer",
    "DreamerLearner": "dreamlab.imagination.dreamer",
    "OfflineConfig": "dreamlab.imagination.loops",
    "OnlineConfig": "dreamlab.imagination.loops",
    "dream_offline": "dreamlab.imagination.loops",
    "train_online": "dreamlab.imagination.loops",
    "dream_vs_real": "dreamlab.imagination.evaluate",
    "evaluate_real": "dreamlab.imagination.evaluate",
    "evaluate_dream": "dreamlab.imagination.evaluate",
    "evaluate_dream_policy": "dreamlab.imagination.evaluate",
    "GRPOConfig": "dreamlab.imagination.grpo",
    "GRPOTrainer": "dreamlab.imagination.grpo",
    "get_verifier": "dreamlab.imagination.verifiers",
    "VerifierError": "dreamlab.imagination.verifiers",
    "POLICY_LOADERS": "dreamlab.imagination.registry",
    "load_any_policy": "dreamlab.imagination.registry",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:  # PEP 562: import a submodule only when one of its names is used
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
