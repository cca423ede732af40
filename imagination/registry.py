"""Explicit registries of this floor: the policy loaders for saved agent directories.

``--policy``/``--agent``/``--teacher`` specs resolve through
:func:`dreamlab.data.behaviour.load_policy`; the loaders listed here let it open the agent
directories written by this package (a Dreamer agent: ``agent.json``; a GRPO agent:
``grpo_agent.json``). Nothing registers itself on import: adding a loader means adding it here.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym

from dreamlab.core.protocol import Policy
from dreamlab.data.behaviour import PolicyLoader, load_policy
from dreamlab.imagination.agent import agent_loader
from dreamlab.imagination.grpo_agent import grpo_agent_loader

POLICY_LOADERS: tuple[PolicyLoader, ...] = (agent_loader, grpo_agent_loader)


def load_any_policy(spec: str, env: gym.Env, **kwargs: Any) -> Policy:
    """:func:`~dreamlab.data.behaviour.load_policy` with every agent-directory loader of this package."""
    return load_policy(spec, env, loaders=POLICY_LOADERS, **kwargs)
