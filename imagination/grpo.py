"""GRPO in dreams: RLVR on a forkable DreamEnv, scored by a verifier.

Before the first iteration the policy may be behaviour-cloned on the logs (``bc_steps``; the
"SFT" start that RLVR usually fine-tunes, and the reference of the optional KL term). It uses
only the logs: nothing is learned from the real env.

One iteration (:meth:`GRPOTrainer.iteration`):

1. **Starts.** ``DreamEnv.reset`` draws ``P = groups`` start states from the real logs; with
   ``forked=True`` each is cloned ``G = group_size`` times by ``DreamEnv.fork(G)``, so a group's
   members share one start and differ only by the policy's (and the model's) sampling. With
   ``forked=False`` (the ablation) the env draws ``P * G`` independent starts and consecutive
   runs of ``G`` are grouped anyway.
2. **Roll out** up to ``horizon`` dream steps with the current policy, which acts on *decoded*
   observations (so the trained policy runs in the real env unchanged). A row stops when the
   verifier says so (goal reached / check failed), or the DreamEnv ends it (the continue head, or
   the MOReL halt when the ensemble disagreement passes ``halt_threshold``).
3. **Score** each trajectory: ``score="success"`` uses the verifier's episode score (any / all /
   sum of per-step checks, see :mod:`imagination.verifiers`); ``score="reward"`` sums the per-step
   verifier reward. Either way the DreamEnv's MOPO penalty, ``lambda * disagreement`` per step, is
   subtracted. A dream halted for uncertainty never counts as a "stay" success (pessimism).
4. **Advantages** normalised within each group (Dr.GRPO: no std); groups with no variance are
   dropped; then ``epochs`` passes of the clipped surrogate (``eps_low``, ``eps_high``) plus an
   optional k3 KL to the initial (reference) policy, see :mod:`imagination.grpo_math`.

Imagined steps (rows still running, summed over steps) are counted for the forking ablation.

**Where it runs** (``precision``, ``accelerator``, ``strategy``, ``devices``, on Lightning Fabric
as every dreamlab loop): under ``bf16-mixed`` the policy's forward passes and the DreamEnv's
world-model steps run under :func:`imagination.mixed.mixed` (bf16 matmuls; log-probs, losses,
advantages in fp32). Under ddp every rank draws its own starts (its own seed, ``seed + 1000 *
rank``), and the gradients are averaged over the ranks that kept a group (a weighted all-reduce)
before each optimiser step; the logged scores are the means over ranks, so every rank takes the
same early-stopping decision.
"""

from __future__ import annotations

import copy
import time
from dataclasses import asdict, dataclass
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from einops import rearrange
from torch import nn

from dreamlab.core.precision import resolve_precision
from dreamlab.core.seeding import derive_seed
from dreamlab.data.episodes import Episode
from dreamlab.data.spaces import ActionCodec
from dreamlab.imagination.grpo_math import AGGREGATIONS, GRPOConfigError, group_advantages, grpo_loss
from dreamlab.imagination.mixed import mixed, module_device
from dreamlab.imagination.verifiers import Verifier
from dreamlab.policy.actor_critic import Actor, ActorCriticNetConfig
from dreamlab.policy.scale import (
    agree_any,
    broadcast_modules,
    check_placement,
    fabric_for,
    mean_over_ranks,
    rank_seed,
    sync_grads,
)

SCORES = ("success", "reward")


@dataclass
class GRPOConfig:
    iterations: int = 40
    groups: int = 16  # P start states per iteration
    group_size: int = 8  # G forks per start state
    horizon: int = 200  # dream steps per rollout
    epochs: int = 4  # optimisation passes over each batch
    lr: float = 1e-3
    eps_low: float = 0.2
    eps_high: float = 0.28  # DAPO clip-higher
    kl_coef: float = 0.0  # k3 KL to the initial policy; 0 = off
    entropy_coef: float = 0.0
    scale_std: bool = True  # False = Dr.GRPO (no std in the advantage)
    drop_zero_variance: bool = True
    loss_agg: str = "token_mean"  # token_mean (DAPO) | seq_mean (GRPO) | constant (Dr.GRPO)
    score: str = "success"  # success (verifier episode score) | reward (sum of per-step reward)
    forked: bool = True  # False = ablation: group members start from different states
    hidden: int = 64
    layers: int = 2
    grad_clip: float = 1.0
    bc_steps: int = 300  # behaviour cloning on the logs before GRPO (the "SFT" start); 0 = off
    target_success: float = 0.0  # stop early once the last 3 iterations' dream success reach it; 0 = off
    seed: int = 0
    precision: str = "auto"  # auto | 32 | bf16-mixed (Lightning's words)
    accelerator: str = "auto"  # auto | cpu | cuda
    strategy: str = "auto"  # auto | ddp
    devices: int = 1

    def validate(self) -> GRPOConfig:
        check_placement(self.precision, self.accelerator, self.strategy, self.devices, "GRPOConfig")
        if self.bc_steps < 0:
            raise GRPOConfigError(f"GRPOConfig field 'bc_steps' must be >= 0, got {self.bc_steps}")
        for name in ("iterations", "groups", "horizon", "epochs", "hidden", "layers"):
            if int(getattr(self, name)) < 1:
                raise GRPOConfigError(f"GRPOConfig field '{name}' must be >= 1, got {getattr(self, name)}")
        if self.group_size < 2:
            raise GRPOConfigError(f"GRPOConfig field 'group_size' must be >= 2, got {self.group_size}")
        if self.score not in SCORES:
            raise GRPOConfigError(f"GRPOConfig field 'score' must be one of {SCORES}, got {self.score!r}")
        if self.loss_agg not in AGGREGATIONS:
            raise GRPOConfigError(f"GRPOConfig field 'loss_agg' must be one of {AGGREGATIONS}, got {self.loss_agg!r}")
        if not (0 <= self.eps_low < 1 and self.eps_high >= 0):
            raise GRPOConfigError("GRPOConfig fields 'eps_low'/'eps_high': need 0 <= eps_low < 1, eps_high >= 0")
        if self.kl_coef < 0:
            raise GRPOConfigError(f"GRPOConfig field 'kl_coef' must be >= 0, got {self.kl_coef}")
        return self


class ObsActor(nn.Module):
    """The policy GRPO trains: the shared :class:`~policy.actor_critic.Actor` on normalised observations."""

    obs_mean: torch.Tensor  # buffers
    obs_std: torch.Tensor

    def __init__(
        self,
        obs_space: gym.Space,
        action_space: gym.Space,
        obs_mean: np.ndarray,
        obs_std: np.ndarray,
        hidden: int = 64,
        layers: int = 2,
    ):
        super().__init__()
        self.obs_space, self.action_space = obs_space, action_space
        self.codec = ActionCodec(action_space)
        self.obs_dim = int(np.prod(cast(tuple[int, ...], obs_space.shape)))
        self.register_buffer("obs_mean", torch.as_tensor(np.asarray(obs_mean, np.float32).reshape(-1)))
        self.register_buffer("obs_std", torch.as_tensor(np.maximum(np.asarray(obs_std, np.float32).reshape(-1), 1e-3)))
        self.actor = Actor(self.obs_dim, action_space, ActorCriticNetConfig(hidden=hidden, layers=layers))

    @classmethod
    def from_episodes(
        cls, episodes: list[Episode], obs_space: gym.Space, action_space: gym.Space, hidden: int = 64, layers: int = 2
    ) -> ObsActor:
        """Observation normalisation statistics come from the real logs."""
        obs = np.concatenate([e.obs.reshape(len(e.obs), -1) for e in episodes]).astype(np.float64)
        return cls(obs_space, action_space, obs.mean(0), obs.std(0), hidden, layers)

    def features(self, obs: torch.Tensor) -> torch.Tensor:
        """(..., *obs_shape) -> (..., obs_dim) normalised and clipped."""
        flat = obs.reshape(
            *obs.shape[: obs.ndim - len(cast(tuple[int, ...], self.obs_space.shape))], self.obs_dim
        ).float()
        return ((flat - self.obs_mean) / self.obs_std).clamp(-10.0, 10.0)

    def sample(self, obs: torch.Tensor, greedy: bool = False) -> torch.Tensor:
        """(n, *obs) -> (n, A) codec-form actions (one-hot / env-unit vectors)."""
        action, _, _ = self.actor.sample(self.features(obs), greedy=greedy)
        return action.detach()

    def log_prob(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """(..., *obs), (..., A) -> (...)"""
        return self.actor.log_prob(self.features(obs), action)

    def entropy(self, obs: torch.Tensor) -> torch.Tensor:
        return self.actor.entropy(self.features(obs))

    def env_actions(self, codec_actions: torch.Tensor) -> np.ndarray:
        return self.codec.decode(codec_actions.cpu().numpy())


def behaviour_clone(
    agent: ObsActor, episodes: list[Episode], steps: int, lr: float = 1e-3, batch_size: int = 256, seed: int = 0
) -> float:
    """Maximise log pi(logged action | logged obs) over the logs' executed steps; returns the final NLL.

    Continuous targets are kept 1% inside the Box so the tanh-squashed density stays finite."""
    if steps <= 0:
        return float("nan")
    obs = np.concatenate([e.obs[:-1] for e in episodes]).astype(np.float32)  # (M, *obs)
    act = np.concatenate([agent.codec.encode(e.action[:-1]) for e in episodes]).astype(np.float32)  # (M, A)
    if not agent.codec.discrete:
        low, high = agent.actor.low.numpy(), agent.actor.high.numpy()
        act = np.clip(act, low + 0.01 * (high - low), high - 0.01 * (high - low))
    obs_t, act_t = torch.as_tensor(obs), torch.as_tensor(act)
    opt = torch.optim.Adam(agent.parameters(), lr=lr)
    gen = torch.Generator().manual_seed(seed)
    nll = torch.zeros(())
    for _ in range(steps):
        idx = torch.randint(0, len(obs_t), (min(batch_size, len(obs_t)),), generator=gen)
        nll = -agent.log_prob(obs_t[idx], act_t[idx]).mean()
        opt.zero_grad(set_to_none=True)
        nll.backward()
        nn.utils.clip_grad_norm_(agent.parameters(), 1.0)
        opt.step()
    return float(nll.detach())


class ObsActorPolicy:
    """:class:`dreamlab.core.protocol.Policy` view of an :class:`ObsActor` (greedy by default), for real envs."""

    def __init__(self, agent: ObsActor, greedy: bool = True):
        self.agent, self.greedy = agent, greedy

    def reset(self, n: int) -> None:  # stateless
        pass

    def act(self, obs: np.ndarray, is_first: np.ndarray | None = None) -> np.ndarray:
        with torch.no_grad():
            x = torch.as_tensor(np.asarray(obs), dtype=torch.float32, device=module_device(self.agent))
            a = self.agent.sample(x, self.greedy)
        return self.agent.env_actions(a)


@dataclass
class Rollout:
    obs: torch.Tensor  # (N, T, *obs) observations the policy acted on
    action: torch.Tensor  # (N, T, A) codec-form actions
    mask: torch.Tensor  # (N, T) bool: the step was taken
    scores: torch.Tensor  # (N,) trajectory score (penalty included)
    success: torch.Tensor  # (N,) verifier episode score, no penalty
    penalty: torch.Tensor  # (N,) summed lambda * disagreement
    halted: torch.Tensor  # (N,) bool: ended by the uncertainty halt
    imagined_steps: int


def rollout(
    env: Any,
    agent: ObsActor,
    verifier: Verifier,
    obs: np.ndarray,
    horizon: int,
    score: str = "success",
    precision: str = "32",
) -> Rollout:
    """Run ``agent`` from the env's current observations ``obs (N, *obs)`` for up to ``horizon`` steps.

    The env must have been built with ``reward_fn=verifier`` so that its reward is the verifier's
    step score minus the MOPO penalty; the penalty is recovered as ``verifier(obs) - reward``.
    ``precision`` (resolved): ``bf16-mixed`` runs the policy and the env's world model mixed.
    The returned tensors are on the CPU.
    """
    n = obs.shape[0]
    wm = getattr(env, "wm", None)
    dev, env_dev = module_device(agent), module_device(wm)
    alive = np.ones(n, bool)
    obs_l, act_l, mask_l, step_l, pen_l = [], [], [], [], []
    failed = np.zeros(n, bool)
    halted = np.zeros(n, bool)
    steps = 0
    cur = torch.as_tensor(np.asarray(obs), dtype=torch.float32)
    for _ in range(horizon):
        with torch.no_grad(), mixed(precision, dev, agent):
            action = agent.sample(cur.to(dev)).float().cpu()  # (N, A)
        with mixed(precision, env_dev, wm):
            nxt, reward, term, trunc, info = env.step(agent.env_actions(action))
        nxt = np.asarray(nxt)
        v = np.asarray(verifier(nxt, None), np.float32)  # (N,) step score of the arriving obs
        pen = np.maximum(v - np.asarray(reward, np.float32), 0.0)
        obs_l.append(cur)
        act_l.append(action)
        mask_l.append(torch.as_tensor(alive.copy()))
        step_l.append(np.where(alive, v, 0.0 if verifier.mode != "stay" else 1.0))
        pen_l.append(np.where(alive, pen, 0.0))
        steps += int(alive.sum())
        halt_now = (
            np.asarray(info.get("halted", np.zeros(n, bool)), bool) if isinstance(info, dict) else np.zeros(n, bool)
        )
        ended = np.asarray(verifier.done(v), bool) | np.asarray(term, bool) | np.asarray(trunc, bool) | halt_now
        halted |= alive & halt_now
        failed |= alive & (np.asarray(term, bool) | halt_now) & ~np.asarray(verifier.done(v), bool)
        alive = alive & ~ended
        cur = torch.as_tensor(nxt, dtype=torch.float32)
        if not alive.any():
            break
    step_scores = np.stack(step_l, 1)  # (N, T)
    mask = torch.stack(mask_l, 1)  # (N, T)
    success = torch.as_tensor(verifier.episode_score(step_scores, mask.numpy()), dtype=torch.float32)
    if verifier.mode == "stay":  # ended by the model's termination or the halt: not a success
        success = success * torch.as_tensor(~failed, dtype=torch.float32)
    penalty = torch.as_tensor(np.stack(pen_l, 1).sum(1), dtype=torch.float32)
    base = success if score == "success" else torch.as_tensor((step_scores * mask.numpy()).sum(1), dtype=torch.float32)
    return Rollout(
        torch.stack(obs_l, 1),
        torch.stack(act_l, 1),
        mask,
        base - penalty,
        success,
        penalty,
        torch.as_tensor(halted),
        steps,
    )


@dataclass
class IterationLog:
    iteration: int
    dream_success: float
    score: float
    kept_groups: float
    imagined_steps: int
    total_imagined_steps: int
    loss: float = 0.0
    kl: float = 0.0
    clip_frac: float = 0.0
    halted: float = 0.0
    penalty: float = 0.0
    seconds: float = 0.0


def dream_env_factory(
    world_model: Any,
    episodes: list[Episode],
    verifier: Verifier,
    horizon: int,
    penalty: float = 0.0,
    halt_threshold: float | None = None,
    seed: int = 0,
    **kwargs: Any,
) -> Any:
    """``num_envs -> DreamEnv`` scored by ``verifier``, without autoreset, ``max_steps = horizon``."""
    from dreamlab.imagination.dream_env import DreamEnv

    def make(num_envs: int) -> DreamEnv:
        return DreamEnv(
            world_model,
            episodes,
            num_envs=num_envs,
            max_steps=horizon,
            reward_fn=verifier,
            penalty=penalty,
            halt_threshold=halt_threshold,
            seed=seed,
            autoreset=False,
            **kwargs,
        )

    return make


class GRPOTrainer:
    """GRPO on a DreamEnv. ``make_env(num_envs)`` builds a DreamEnv with ``reward_fn=verifier`` and
    ``autoreset=False`` (see :func:`dream_env_factory`)."""

    def __init__(
        self, make_env: Any, agent: ObsActor, verifier: Verifier, cfg: GRPOConfig | None = None, fabric: Any = None
    ):
        self.cfg = (cfg or GRPOConfig()).validate()
        self.fabric = fabric if fabric is not None else fabric_for(self.cfg)
        self.rank, self.device = int(self.fabric.global_rank), self.fabric.device
        self.precision = resolve_precision(self.cfg.precision, self.device)
        self.seed = rank_seed(self.cfg.seed, self.rank)  # this rank's starts
        self.agent, self.verifier = self.fabric.to_device(agent), verifier
        self.ref = copy.deepcopy(agent).requires_grad_(False) if self.cfg.kl_coef > 0 else None
        broadcast_modules(self.fabric, *[m for m in (self.agent, self.ref) if m is not None])
        self.params = list(agent.parameters())
        self.opt = torch.optim.Adam(self.params, lr=self.cfg.lr)
        n0 = self.cfg.groups if self.cfg.forked else self.cfg.groups * self.cfg.group_size
        self.env = make_env(n0)
        self.total_steps = 0
        self.history: list[IterationLog] = []
        if self.rank > 0:
            torch.manual_seed(self.seed)  # its own action samples

    def _start(self) -> tuple[Any, np.ndarray]:
        """Fresh starts: ``(env, obs (P*G, *obs))``, groups contiguous (row p*G + g).

        Each iteration resets with its own seed (``seed``, iteration), so a resumed run draws
        the same starts it would have drawn without the interruption."""
        seed = derive_seed(self.seed, len(self.history))
        obs, _ = self.env.reset(seed=seed)
        if not self.cfg.forked:
            return self.env, np.asarray(obs)
        child = self.env.fork(self.cfg.group_size)  # copies i*G .. i*G+G-1 of branch i
        return child, np.repeat(np.asarray(obs), self.cfg.group_size, axis=0)

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume (plain tensors and lists: loads with ``weights_only=True``)."""
        return {
            "agent": self.agent.state_dict(),
            "opt": self.opt.state_dict(),
            "ref": self.ref.state_dict() if self.ref is not None else {},
            "total_steps": self.total_steps,
            "history": [asdict(h) for h in self.history],
            "torch_rng": torch.get_rng_state(),
        }

    def load_state_dict(self, blob: dict[str, Any]) -> None:
        self.agent.load_state_dict(blob["agent"])
        self.opt.load_state_dict(blob["opt"])
        if self.ref is not None and blob.get("ref"):
            self.ref.load_state_dict(blob["ref"])
        self.total_steps = int(blob["total_steps"])
        self.history = [IterationLog(**h) for h in blob["history"]]
        torch.set_rng_state(blob["torch_rng"])
        if self.rank > 0:  # rank 0's stream was saved; the others reseed from (seed, rank, iteration)
            torch.manual_seed(derive_seed(self.seed, len(self.history), 1))

    def iteration(self) -> IterationLog:
        cfg, t0 = self.cfg, time.perf_counter()
        env, obs = self._start()  # (P*G, *obs), groups contiguous: row p*G + g
        ro = rollout(env, self.agent, self.verifier, obs, cfg.horizon, cfg.score, self.precision)
        self.last_rollout = ro
        scores = rearrange(ro.scores, "(p g) -> p g", g=cfg.group_size)
        adv, keep = group_advantages(scores, scale_std=cfg.scale_std)
        if not cfg.drop_zero_variance:
            keep = torch.ones_like(keep)
        seen = mean_over_ranks(
            self.fabric,
            {
                "success": float(ro.success.mean()),
                "score": float(ro.scores.mean()),
                "kept": float(keep.float().mean()),
                "steps": float(ro.imagined_steps),
                "halted": float(ro.halted.float().mean()),
                "penalty": float(ro.penalty.mean()),
            },
        )
        steps = int(round(seen["steps"] * self.fabric.world_size))  # all ranks' imagined steps
        self.total_steps += steps
        log = IterationLog(
            len(self.history),
            seen["success"],
            seen["score"],
            seen["kept"],
            steps,
            self.total_steps,
            halted=seen["halted"],
            penalty=seen["penalty"],
        )
        has = bool(keep.any())
        if agree_any(self.fabric, has):  # every rank steps together; one without a kept group adds nothing
            self._update(ro, adv, keep, has, log)
        log.seconds = time.perf_counter() - t0
        self.history.append(log)
        return log

    def _update(self, ro: Rollout, adv: torch.Tensor, keep: torch.Tensor, has: bool, log: IterationLog) -> None:
        """``epochs`` clipped-surrogate steps on the kept groups (``has``: this rank kept some)."""
        cfg, dev = self.cfg, self.device
        if has:
            rows = rearrange(keep[:, None].expand(-1, cfg.group_size), "p g -> (p g)")
            obs_t, act_t, mask_t = ro.obs[rows].to(dev), ro.action[rows].to(dev), ro.mask[rows].to(dev)
            adv_t = rearrange(adv, "p g -> (p g)")[rows].to(dev)
            with torch.no_grad(), mixed(self.precision, dev, self.agent, self.ref):
                old = self.agent.log_prob(obs_t, act_t).float()  # (n, T)
                ref = self.ref.log_prob(obs_t, act_t).float() if self.ref is not None else None
        for _ in range(cfg.epochs):
            self.opt.zero_grad(set_to_none=True)
            if has:
                with mixed(self.precision, dev, self.agent):
                    logp = self.agent.log_prob(obs_t, act_t).float()
                    ent = self.agent.entropy(obs_t).float() if cfg.entropy_coef > 0 else None
                loss, info = grpo_loss(  # fp32
                    logp,
                    old,
                    adv_t,
                    mask_t,
                    ref,
                    cfg.kl_coef,
                    cfg.eps_low,
                    cfg.eps_high,
                    cfg.loss_agg,
                    ent,
                    cfg.entropy_coef,
                )
                loss.backward()
            sync_grads(self.fabric, self.params, weight=1.0 if has else 0.0)
            nn.utils.clip_grad_norm_(self.params, cfg.grad_clip)
            self.opt.step()
        if has:
            log.loss, log.kl, log.clip_frac = info.loss, info.kl, info.clip_frac

    def train(self, iterations: int | None = None, progress: bool = True, callback: Any = None) -> list[IterationLog]:
        """Run until ``iterations`` (default ``cfg.iterations``) in total, counting resumed ones;
        ``callback(trainer, log)`` after each iteration (e.g. to save)."""
        from dreamlab.core.progress import Progress

        n = iterations or self.cfg.iterations
        bar = Progress(
            range(len(self.history), n), initial=len(self.history), total=n, desc="grpo", enabled=progress, unit="it"
        )
        for _ in bar:
            log = self.iteration()
            if callback is not None:
                callback(self, log)
            recent = [h.dream_success for h in self.history[-3:]]
            if self.cfg.target_success > 0 and len(recent) == 3 and min(recent) >= self.cfg.target_success:
                break
            bar.set_postfix(
                success=f"{log.dream_success:.2f}",
                kept=f"{log.kept_groups:.2f}",
                loss=f"{log.loss:.3f}",
                steps_per_s=f"{log.imagined_steps / max(log.seconds, 1e-9):.0f}",
            )
        return self.history
