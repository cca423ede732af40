"""Policies: actor-critic networks, the LLM policy and its renderers, teachers, OPSD and SFT distillation."""

from __future__ import annotations

from dreamlab.core.lazy import lazy_exports

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

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
