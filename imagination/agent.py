"""DreamerAgent: the deployable policy (world-model filter + actor), recurrent state inside.

It implements :class:`dreamlab.core.protocol.Policy` (and ``action_probs`` for discrete spaces): each
``act(obs, is_first)`` folds the new real observation into the posterior state
(``WorldModel.obs_step`` with the previous action; rows with ``is_first`` start afresh), then the
actor picks an action from the state's features (greedy by default, or sampled).

Saved as a directory (loading never unpickles)::

    AGENT/agent.json       format, version, env id, feature size, greedy flag, actor-critic config
    AGENT/actor.pt         the actor's state dict      (torch.load(weights_only=True))
    AGENT/worldmodel.ckpt  the world model              (WorldModel.load, weights_only=True)
"""

from __future__ import annotations

from dataclasses import asdict, fields
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamlab.core.errors import DreamlabError
from dreamlab.core.io import (
    atomic_copy,
    atomic_path,
    atomic_torch_save,
    atomic_write_json,
    read_manifest,
    safe_torch_load,
)
from dreamlab.imagination.dreamer import DreamerConfig
from dreamlab.policy.actor_critic import Actor

FORMAT = "dreamlab-dreamer-agent"
VERSION = 1


class AgentLoadError(DreamlabError):
    """A directory that is not a loadable DreamerAgent (names the file and what is wrong)."""


def save_world_model(wm: Any, path: Path) -> None:
    """Write ``wm`` so that ``WorldModel.load(path)`` restores it (atomically)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        wm.save(tmp)


def load_world_model(path: Path) -> Any:
    from dreamlab.worldmodel.model import WorldModel  # imported lazily: the world model is heavy

    return WorldModel.load(path)


class DreamerAgent:
    """World-model filter + actor as a batched Policy."""

    def __init__(
        self,
        world_model: Any,
        actor: Actor,
        greedy: bool = True,
        env_id: str | None = None,
        dreamer_config: DreamerConfig | None = None,
        seed: int | None = None,
    ):
        self.wm, self.actor = world_model, actor
        self.greedy, self.env_id = greedy, env_id
        self.dreamer_config = dreamer_config or DreamerConfig()
        self.codec = world_model.codec
        self.action_space = world_model.action_space
        self.observation_space = world_model.obs_space
        self.device = next(world_model.parameters()).device
        self._gen = torch.Generator().manual_seed(0 if seed is None else int(seed))
        self.reset(1)

    # ------------------------------------------------------------------ Policy protocol
    def reset(self, n: int) -> None:
        self.state = self.wm.initial(n)
        self.prev_action = torch.zeros(n, self.codec.dim, device=self.device)
        self._fresh = True

    def _filter(self, obs: np.ndarray, is_first: np.ndarray | None) -> torch.Tensor:
        n = obs.shape[0]
        if n != self.prev_action.shape[0]:
            self.reset(n)
        if is_first is None:
            is_first = np.full(n, self._fresh)
        self._fresh = False
        first = torch.as_tensor(np.asarray(is_first, bool), device=self.device)
        obs_t = torch.as_tensor(np.asarray(obs, np.float32), device=self.device)
        prev = torch.where(first[:, None], torch.zeros_like(self.prev_action), self.prev_action)
        self.state = self.wm.obs_step(self.state, prev, obs_t, first)
        return self.wm.features(self.state)

    @torch.no_grad()
    def act(self, obs: np.ndarray, is_first: np.ndarray | None = None) -> np.ndarray:
        """obs (n, *obs_shape) -> actions (n, *action_shape) in the env's action space."""
        feat = self._filter(obs, is_first)
        vec = self._choose(feat)
        return self.codec.decode(vec.cpu().numpy())

    @torch.no_grad()
    def action_probs(self, obs: np.ndarray, is_first: np.ndarray | None = None) -> np.ndarray:
        """(n, num_actions) probabilities (discrete); advances the filter like ``act`` and remembers
        the greedy/sampled action as the previous action (override with :meth:`set_last_action`)."""
        if not self.actor.discrete:
            raise TypeError("action_probs needs a Discrete action space")
        feat = self._filter(obs, is_first)
        probs = self.actor.probs(feat)
        self._choose_from_probs(probs)
        return probs.cpu().numpy().astype(np.float64)

    def set_last_action(self, actions: np.ndarray) -> None:
        """Tell the filter which env actions were actually taken (when someone else chose them)."""
        self.prev_action = torch.as_tensor(self.codec.encode(np.asarray(actions)), device=self.device)

    def _choose(self, feat: torch.Tensor) -> torch.Tensor:
        if self.actor.discrete:
            return self._choose_from_probs(self.actor.probs(feat))
        if self.greedy:
            vec = self.actor.sample(feat, greedy=True)[0]
        else:
            with torch.random.fork_rng(devices=[]):
                torch.manual_seed(int(torch.randint(0, 2**62, (1,), generator=self._gen)))
                vec = self.actor.sample(feat)[0]
        self.prev_action = vec
        return vec

    def _choose_from_probs(self, probs: torch.Tensor) -> torch.Tensor:
        if self.greedy:
            idx = probs.argmax(-1)
        else:
            idx = torch.multinomial(probs.cpu(), 1, generator=self._gen).squeeze(-1).to(probs.device)
        vec = torch.nn.functional.one_hot(idx, probs.shape[-1]).float()
        self.prev_action = vec
        return vec

    @torch.no_grad()
    def act_latent(self, feat: torch.Tensor) -> torch.Tensor:
        """Actions (codec form, (n, A)) straight from world-model features (acting inside a dream)."""
        return self.actor.sample(feat, greedy=self.greedy)[0]

    # ------------------------------------------------------------------ persistence
    def save(self, directory: str | Path, wm_path: str | Path | None = None) -> Path:
        """Write the agent directory; ``wm_path`` copies an existing world-model checkpoint instead
        of re-saving the model. Every file is written to a temporary name, then renamed."""
        d = Path(directory)
        d.mkdir(parents=True, exist_ok=True)
        meta = {
            "format": FORMAT,
            "version": VERSION,
            "env_id": self.env_id,
            "greedy": self.greedy,
            "feature_dim": int(self.wm.feature_dim),
            "dreamer": asdict(self.dreamer_config),
        }
        atomic_torch_save(self.actor.state_dict(), d / "actor.pt")
        if wm_path is not None and Path(wm_path).resolve() != (d / "worldmodel.ckpt").resolve():
            atomic_copy(wm_path, d / "worldmodel.ckpt")
        elif wm_path is None:
            save_world_model(self.wm, d / "worldmodel.ckpt")
        atomic_write_json(d / "agent.json", meta)
        return d

    @classmethod
    def load(cls, directory: str | Path, greedy: bool | None = None) -> DreamerAgent:
        d = Path(directory)
        meta = read_manifest(
            d / "agent.json",
            FORMAT,
            VERSION,
            AgentLoadError,
            "DreamerAgent directory (expected agent.json, actor.pt, worldmodel.ckpt)",
        )
        for name in ("actor.pt", "worldmodel.ckpt"):
            if not (d / name).exists():
                raise AgentLoadError(f"{d / name}: missing from the agent directory")
        wm = load_world_model(d / "worldmodel.ckpt")
        if int(meta["feature_dim"]) != int(wm.feature_dim):
            raise AgentLoadError(
                f"{d / 'agent.json'}: field 'feature_dim' is {meta['feature_dim']}, but "
                f"{d / 'worldmodel.ckpt'} has {wm.feature_dim}"
            )
        known = {f.name for f in fields(DreamerConfig)}
        cfg = DreamerConfig(**{k: v for k, v in meta.get("dreamer", {}).items() if k in known})
        actor = Actor(wm.feature_dim, wm.action_space, cfg.net_config())
        sd = safe_torch_load(d / "actor.pt", "file of actor weights", AgentLoadError)
        try:
            actor.load_state_dict(sd)
        except Exception as exc:  # noqa: BLE001 - any failure here means a bad file
            msg = " ".join(str(exc).split())[:300]
            raise AgentLoadError(f"{d / 'actor.pt'}: cannot load the actor weights: {msg}") from None
        wm.eval()
        actor.eval()
        return cls(
            wm,
            actor,
            greedy=bool(meta["greedy"]) if greedy is None else greedy,
            env_id=meta.get("env_id"),
            dreamer_config=cfg,
        )


def agent_loader(spec: str, env: Any) -> DreamerAgent | None:
    """A ``dreamlab.data.behaviour.PolicyLoader``: a path holding agent.json loads as a DreamerAgent."""
    if (Path(spec) / "agent.json").exists():
        return DreamerAgent.load(spec)
    return None
