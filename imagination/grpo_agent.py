"""GRPO agent directories: saving, safe loading, and the ``data.behaviour`` loader.

The agent directory OUT holds ``grpo_agent.json`` (format, env id, verifier, configs),
``actor.pt`` (the :class:`~imagination.grpo.ObsActor` weights, ``weights_only`` loadable) and
``train_state.pt`` (optimiser, history, RNG; running again with the same OUT resumes).
``data.behaviour.load_policy`` resolves such a directory to a greedy
:class:`~imagination.grpo.ObsActorPolicy`, so ``dreamlab evaluate --agent OUT`` runs it in the
real env (it acts on real observations directly; no world-model filter is needed).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dreamlab.core.errors import DreamlabError
from dreamlab.core.io import atomic_torch_save, atomic_write_json, read_manifest, safe_torch_load
from dreamlab.data.spaces import space_from_json, space_to_json
from dreamlab.imagination.grpo import GRPOTrainer, ObsActor, ObsActorPolicy

FORMAT = "dreamlab-grpo-agent"
VERSION = 1


class GRPOAgentError(DreamlabError):
    """A directory that is not a loadable GRPO agent (names the file and what is wrong)."""


@dataclass
class GRPODreamConfig:
    verifier: str = ""  # name, env id or module:function; "" = the logs' env id
    penalty: str = "auto"  # MOPO: reward - penalty x ensemble disagreement; auto | off | number
    halt_threshold: str = "auto"  # MOReL: end a dream when disagreement exceeds it; auto | off | number
    save_every: int = 10  # iterations between checkpoints
    # "auto" (the offline default) measures the disagreement on the logs: see
    # imagination.grpo_eval.resolve_uncertainty


def save_agent(
    out: Path,
    trainer: GRPOTrainer,
    env_id: str | None,
    dream_cfg: GRPODreamConfig,
    verifier: str,
    uncertainty: dict[str, Any] | None = None,
    run: dict[str, Any] | None = None,
) -> None:
    """Write OUT (rank 0's job under ddp); ``run``: where it ran (precision, world size, digest)."""
    out.mkdir(parents=True, exist_ok=True)
    agent = trainer.agent
    atomic_torch_save(agent.state_dict(), out / "actor.pt")
    atomic_torch_save(trainer.state_dict(), out / "train_state.pt")
    meta = {
        "format": FORMAT,
        "version": VERSION,
        "env_id": env_id,
        "verifier": verifier,
        "obs_space": space_to_json(agent.obs_space),
        "action_space": space_to_json(agent.action_space),
        "grpo": asdict(trainer.cfg),
        "dream": asdict(dream_cfg),
        "uncertainty": uncertainty or {},
        "run": run or {},
        "iterations_done": len(trainer.history),
        "imagined_steps": trainer.total_steps,
        "last": asdict(trainer.history[-1]) if trainer.history else None,
    }
    atomic_write_json(out / "grpo_agent.json", meta)


def load_agent(directory: str | Path) -> tuple[ObsActor, dict[str, Any]]:
    d = Path(directory)
    meta = read_manifest(d / "grpo_agent.json", FORMAT, VERSION, GRPOAgentError, "GRPO agent directory")
    obs_space, act_space = space_from_json(meta["obs_space"]), space_from_json(meta["action_space"])
    dim = int(torch.tensor(obs_space.shape).prod()) if obs_space.shape else 1
    g = meta["grpo"]
    agent = ObsActor(obs_space, act_space, np.zeros(dim), np.ones(dim), int(g["hidden"]), int(g["layers"]))
    sd = safe_torch_load(d / "actor.pt", "file of actor weights", GRPOAgentError)
    try:
        agent.load_state_dict(sd)
    except Exception as exc:  # noqa: BLE001 - any failure here means a bad file
        msg = " ".join(str(exc).split())[:300]
        raise GRPOAgentError(f"{d / 'actor.pt'}: cannot load the actor weights: {msg}") from None
    return agent.eval(), meta


def grpo_agent_loader(spec: str, env: gym.Env) -> ObsActorPolicy | None:
    """A ``dreamlab.data.behaviour.PolicyLoader``: a directory with grpo_agent.json loads as a greedy policy."""
    if (Path(spec) / "grpo_agent.json").exists():
        return ObsActorPolicy(load_agent(spec)[0], greedy=True)
    return None
