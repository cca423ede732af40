"""Practice in dreams: DreamEnv, verifiers, the Dreamer actor-critic, GRPO, the deployable agent."""

from __future__ import annotations

from dreamlab.core.lazy import lazy_exports

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

__all__, __getattr__, __dir__ = lazy_exports(__name__, _EXPORTS)
