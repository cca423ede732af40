"""Measuring GRPO policies: verifier success in dreams and in the real env; data disagreement."""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dreamlab.data.episodes import Episode
from dreamlab.data.spaces import ActionCodec
from dreamlab.imagination.grpo import ObsActor, ObsActorPolicy, rollout
from dreamlab.imagination.verifiers import Verifier


@torch.no_grad()
def data_disagreement(world_model: Any, episodes: list[Episode], max_episodes: int = 32) -> np.ndarray:
    """Ensemble disagreement at the logs' own steps (posterior states, logged actions): (M,).

    Its quantiles put ``penalty`` and ``halt_threshold`` on the model's own scale (MOReL sets its
    halt threshold from the data in the same spirit)."""
    out = []
    with torch.random.fork_rng(devices=[]):  # the posterior samples: same answer on every call
        torch.manual_seed(0)
        for ep in episodes[:max_episodes]:
            obs = torch.as_tensor(ep.obs[None], dtype=torch.float32)  # (1, T, *obs)
            act = torch.as_tensor(world_model.codec.encode(ep.action)[None])  # (1, T, A)
            post, _ = world_model.observe(obs, act, torch.as_tensor(ep.is_first[None]))
            flat = {k: v[0, :-1] for k, v in post.items()}  # (T-1, ...) states where an action was taken
            out.append(world_model.disagreement(flat, act[0, :-1]).reshape(-1).cpu().numpy())
    return np.concatenate(out)


@torch.no_grad()
def dream_success(
    make_env: Any, policy: Any, verifier: Verifier, num_envs: int, horizon: int, seed: int = 0
) -> dict[str, float]:
    """Verifier success of any :class:`~dreamlab.core.protocol.Policy` in ``num_envs`` dreams from fixed starts."""
    env = make_env(num_envs)
    obs, _ = env.reset(seed=seed)
    policy.reset(num_envs)
    actor = _PolicyAsSampler(policy, env.single_action_space)
    ro = rollout(env, actor, verifier, np.asarray(obs), horizon)  # type: ignore[arg-type]
    return {
        "success_rate": float(ro.success.mean()),
        "imagined_steps": float(ro.imagined_steps),
        "halted": float(ro.halted.float().mean()),
        "penalty": float(ro.penalty.mean()),
    }


class _PolicyAsSampler:
    """Adapts a Policy (``act`` on env actions) to the ``sample``/``env_actions`` pair :func:`rollout` uses."""

    def __init__(self, policy: Any, action_space: gym.Space):
        self.policy, self.codec = policy, ActionCodec(action_space)
        self.first = True

    def sample(self, obs: torch.Tensor) -> torch.Tensor:
        n = obs.shape[0]
        act = self.policy.act(obs.numpy(), np.full(n, self.first))
        self.first = False
        return torch.as_tensor(self.codec.encode(act))

    def env_actions(self, codec_actions: torch.Tensor) -> np.ndarray:
        return self.codec.decode(codec_actions.numpy())


def real_success(
    env_id: str,
    agent: ObsActor,
    verifier: Verifier,
    episodes: int = 20,
    seed: int = 0,
    greedy: bool = True,
    max_steps: int | None = None,
) -> dict[str, Any]:
    """Run the agent in the real env (``episodes`` envs in lockstep): returns, verifier success."""
    envs = [gym.make(env_id, max_episode_steps=max_steps) if max_steps else gym.make(env_id) for _ in range(episodes)]
    obs = np.stack([e.reset(seed=seed + i)[0] for i, e in enumerate(envs)])
    alive = np.ones(episodes, bool)
    returns = np.zeros(episodes)
    success = np.zeros(episodes)
    fails = np.zeros(episodes, bool)
    pol = ObsActorPolicy(agent, greedy)
    while alive.any():
        acts = pol.act(obs)
        for i in np.flatnonzero(alive):
            o, r, term, trunc, _ = envs[i].step(acts[i])
            obs[i] = o
            returns[i] += r
            v = float(verifier(o[None])[0])
            if verifier.mode == "reach" and v > 0.5:
                success[i] = 1.0
            if verifier.mode == "stay" and v < 0.5:
                fails[i] = True
            if verifier.mode == "dense":
                success[i] += v
            if term or trunc:
                alive[i] = False
    if verifier.mode == "stay":
        success = (~fails).astype(float)
    for e in envs:
        e.close()
    return {
        "episodes": episodes,
        "mean_return": float(returns.mean()),
        "returns": returns.tolist(),
        "success_rate": float(success.mean()) if verifier.mode != "dense" else None,
        "mean_score": float(success.mean()),
        "greedy": greedy,
    }


def resolve_uncertainty(
    world_model: Any, episodes: list[Episode], horizon: int, penalty: float | str, halt_threshold: float | str | None
) -> tuple[float, float | None, dict[str, float]]:
    """Turn ``"auto"`` / ``"off"`` / numbers into the DreamEnv's ``penalty`` and ``halt_threshold``.

    ``"auto"`` puts both on the model's own scale, measured by :func:`data_disagreement` on the
    logs: the penalty is ``0.25 / (horizon * median)``, so a dream that stays as certain as the
    data pays about 0.25 in total (a verifier success is worth 1); the halt threshold is the
    largest disagreement seen on the logs (MOReL ends dreams that leave the data's support; a
    quantile such as the 99th would halt most long in-distribution dreams, one step in 100 each)."""

    def parse(name: str, value: float | str | None) -> float | str | None:
        if value is None or (isinstance(value, str) and value.lower() in ("off", "none", "")):
            return None
        if isinstance(value, str) and value.lower() == "auto":
            return "auto"
        try:
            return float(value)
        except (TypeError, ValueError):
            raise ValueError(f"{name}: expected 'auto', 'off' or a number, got {value!r}") from None

    pen, halt = parse("penalty", penalty), parse("halt_threshold", halt_threshold)
    info: dict[str, float] = {}
    if pen == "auto" or halt == "auto":
        d = data_disagreement(world_model, episodes)
        info = {
            "data_disagreement_median": float(np.median(d)),
            "data_disagreement_q99": float(np.quantile(d, 0.99)),
            "data_disagreement_max": float(np.max(d)),
        }
        if pen == "auto":
            pen = 0.25 / (horizon * max(info["data_disagreement_median"], 1e-8))
        if halt == "auto":
            halt = info["data_disagreement_max"]
    if pen is not None and float(pen) < 0:
        raise ValueError(f"penalty: must be >= 0, got {pen}")
    return float(pen or 0.0), (None if halt is None else float(halt)), info
