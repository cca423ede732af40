"""Policies: actor-critic networks, the LLM policy and its renderers, teachers, OPSD and SFT distillation."""

from __future__ import annotations

import importlib
from typing import Any

_EXPORTS: dict[str, str] = {
    "Actor": "dreamlab.policy.actor_critic",
    "Critic": "dreamlab.policy.actor_critic",
    "ActorCriticNetConfig": "dreamlab.policy.actor_critic",
    "LLMPolicy": "dreamlab.policy.llm",
    "LLMPolicyError": "dreamlab.policy.llm",
    "get_renderer": "dreamlab.policy.render",
    "RendererError": "dreamlab.policy.render",
    "ActorTeacher": "dreamlab.policy.teachers",
    "ContextTeacher": "dreamlab.policy.teachers",
    "TeacherError": "dreamlab.policy.teachers",
    "DistillConfig": "dreamlab.policy.distill",
    "Distiller": "dreamlab.policy.distill",
    "DistillError": "dreamlab.policy.distill",
    "BaseLLMConfig": "dreamlab.policy.base_llm",
    "make_base_llm": "dreamlab.policy.base_llm",
    "BaseLLMError": "dreamlab.policy.base_llm",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:  # PEP 562: import a submodule only when one of its names is used
    if name in _EXPORTS:
        return getattr(importlib.import_module(_EXPORTS[name]), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
