"""Dreamer actor-critic trained purely in imagination (DreamerV3-style, CPU-sized).

One update (:meth:`DreamerLearner.train_step`):

1. **Starts.** Posterior states of replayed real sequences (``WorldModel.observe`` over a
   sampled batch, no gradient), flattened to ``N = B * L`` start states. ``start_cont`` =
   1 - is_terminal, so a start at a terminal step contributes nothing.
2. **Imagine** ``H`` steps with the actor: ``a_t ~ pi(. | s_t)``, ``s_{t+1} = img_step(s_t, a_t)``;
   rewards ``r_{t+1} = reward(s_{t+1})``, continue probabilities ``c_{t+1} = cont(s_{t+1})``.
3. **lambda-returns** with lambda = 0.95 and gamma = 1 - 1/``discount_horizon`` (333 by
   default), bootstrapped from the slow (EMA) critic:
   ``R_t = r_{t+1} + gamma c_{t+1} ((1 - lambda) v(s_{t+1}) + lambda R_{t+1})``, ``R_H = v(s_H)``.
   Steps are weighted by the cumulative discount ``prod_{i<=t} gamma c_i`` (stop-gradient).
4. **Critic**: two-hot cross-entropy to ``symlog(R_t)`` plus a regulariser towards the slow
   critic's prediction; the slow critic tracks the critic by an EMA.
5. **Return normalisation**: ``S`` = EMA of the 5th-95th percentile range of ``R``; advantages
   are divided by ``max(1, S)`` so that small returns are not blown up.
6. **Actor**, with entropy regularisation ``eta = 3e-4``:

   * *discrete* actions: REINFORCE (score-function) estimator with the normalised advantage
     ``(R_t - v(s_t)) / max(1, S)`` as a stop-gradient weight on ``log pi(a_t | s_t)``; the
     rollout itself runs without gradients. Categorical samples are not differentiable, and
     straight-through gradients through a learned model bias the estimate.
   * *continuous* actions: reparameterised gradients. The tanh-squashed normal's samples are
     differentiable, and ``R_t / max(1, S)`` is maximised by backpropagating through the
     world model's dynamics, reward and continue heads and the slow critic (whose weights are
     frozen during the update; only the actor's weights move).

**Precision** (``precision="bf16-mixed"``): the rollout (world-model ``img_step`` and the actor's
sampling) and the actor/critic forward passes run under :func:`imagination.mixed.mixed`: bf16
matmuls, fp32 outputs (GRU state, softmaxes, samples, log-probs, two-hot logits), so the
lambda-returns, the two-hot encoding, the return normaliser, the entropy and the losses are
fp32; weights and Adam states stay fp32. ``"32"`` (the default) is plain fp32.

**Several processes** (``fabric`` with ``world_size > 1``): every rank imagines from its own
start states; the actor's and critic's gradients are averaged over ranks (one all-reduce,
:func:`policy.scale.sync_grads`) before clipping, and the return normaliser's percentiles are
averaged too, so identical ranks stay identical.
"""

from __future__ import annotations

import contextlib
import copy
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import gymnasium as gym
import torch
from einops import rearrange
from torch import nn

from dreamlab.core.precision import resolve_precision
from dreamlab.imagination.mixed import mixed
from dreamlab.policy.actor_critic import Actor, ActorCriticNetConfig, Critic
from dreamlab.policy.scale import sync_grads

State = dict[str, torch.Tensor]


@dataclass
class DreamerConfig:
    horizon: int = 15
    discount_horizon: float = 333.0  # gamma = 1 - 1 / discount_horizon
    lam: float = 0.95
    actor_lr: float = 3e-4
    critic_lr: float = 3e-4
    adam_eps: float = 1e-5
    grad_clip: float = 100.0
    entropy: float = 3e-4
    slow_critic_decay: float = 0.98
    slow_reg: float = 1.0
    retnorm_decay: float = 0.99
    retnorm_low: float = 5.0
    retnorm_high: float = 95.0
    max_starts: int = 256  # start states per update (random subset of B * L; DreamerV3 uses all 1024)
    hidden: int = 256
    layers: int = 2
    unimix: float = 0.01
    # MOPO-style pessimism: imagined reward minus penalty x the world model's ensemble disagreement
    # on that step (0 = off). Keeps the actor out of states the logs never showed the model.
    penalty: float = 0.0
    # Plan2Explore-style exploration: imagined reward plus intrinsic x the step's disagreement over
    # its running mean (an EMA at retnorm_decay; 0 = off). The bonus is positive, so in envs that
    # end on failure it also rewards surviving; train with it to explore, then without to exploit.
    intrinsic: float = 0.0

    @property
    def gamma(self) -> float:
        return 1.0 - 1.0 / self.discount_horizon

    def net_config(self) -> ActorCriticNetConfig:
        return ActorCriticNetConfig(hidden=self.hidden, layers=self.layers, unimix=self.unimix)


def flatten_state(state: State) -> State:
    """``(B, T, ...)`` states -> ``(B*T, ...)``."""
    return {k: rearrange(v, "b t ... -> (b t) ...") for k, v in state.items()}


def index_state(state: State, idx: torch.Tensor) -> State:
    return {k: v[idx] for k, v in state.items()}


def lambda_returns(
    reward: torch.Tensor, cont: torch.Tensor, value: torch.Tensor, gamma: float, lam: float
) -> torch.Tensor:
    """reward, cont: (H, N) for steps 1..H; value: (H+1, N) for steps 0..H -> returns (H, N) for 0..H-1."""
    horizon = reward.shape[0]
    out = []
    last = value[-1]
    for t in reversed(range(horizon)):
        last = reward[t] + gamma * cont[t] * ((1 - lam) * value[t + 1] + lam * last)
        out.append(last)
    return torch.stack(out[::-1])


class PercentileNormaliser(nn.Module):
    """EMA of the low/high percentiles of the returns; ``scale = max(1, high - low)``."""

    low: torch.Tensor  # buffers
    high: torch.Tensor
    initialised: torch.Tensor

    def __init__(self, low: float = 5.0, high: float = 95.0, decay: float = 0.99):
        super().__init__()
        self.q = (low / 100.0, high / 100.0)
        self.decay = decay
        self.register_buffer("low", torch.zeros(()))
        self.register_buffer("high", torch.zeros(()))
        self.register_buffer("initialised", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def update(self, x: torch.Tensor, reduce: Callable[[torch.Tensor], torch.Tensor] | None = None) -> None:
        """Fold the percentiles of ``x`` into the EMA (in fp32); ``reduce`` maps the batch's
        ``(low, high)`` before that (e.g. the mean over ranks)."""
        flat = x.detach().reshape(-1).float()
        if flat.numel() > 100_000:  # quantile on a subsample is plenty and much cheaper
            flat = flat[torch.randint(0, flat.numel(), (100_000,), device=flat.device)]
        q = torch.quantile(flat, torch.tensor(self.q, device=flat.device))
        if reduce is not None:
            q = reduce(q)
        lo, hi = q[0], q[1]
        if not bool(self.initialised):
            self.low.copy_(lo)
            self.high.copy_(hi)
            self.initialised.fill_(True)
        else:
            self.low.mul_(self.decay).add_((1 - self.decay) * lo)
            self.high.mul_(self.decay).add_((1 - self.decay) * hi)

    @property
    def scale(self) -> torch.Tensor:
        return torch.clamp(self.high - self.low, min=1.0)


@contextlib.contextmanager
def frozen(module: nn.Module) -> Iterator[None]:
    """Temporarily turn off ``requires_grad`` on a module's parameters (restored afterwards)."""
    flags = [(p, p.requires_grad) for p in module.parameters()]
    for p, _ in flags:
        p.requires_grad_(False)
    try:
        yield
    finally:
        for p, f in flags:
            p.requires_grad_(f)


class DreamerLearner(nn.Module):
    """Actor, critic, slow critic, return normaliser and their optimisers.

    ``precision``: ``"32"`` or ``"bf16-mixed"`` (``"auto"`` resolves for the CPU); ``fabric``: a
    Lightning Fabric whose ranks average their gradients (None: one process)."""

    dis_mean: torch.Tensor  # buffer

    def __init__(
        self,
        feature_dim: int,
        action_space: gym.Space,
        cfg: DreamerConfig | None = None,
        precision: str = "32",
        fabric: Any = None,
    ):
        super().__init__()
        self.cfg = cfg or DreamerConfig()
        self.precision = resolve_precision(precision)
        self.fabric = fabric
        net = self.cfg.net_config()
        self.actor = Actor(feature_dim, action_space, net)
        self.critic = Critic(feature_dim, net)
        self.slow_critic = copy.deepcopy(self.critic).requires_grad_(False)
        self.retnorm = PercentileNormaliser(self.cfg.retnorm_low, self.cfg.retnorm_high, self.cfg.retnorm_decay)
        # running mean of the ensemble disagreement (the intrinsic bonus's unit); saved only when used
        self.register_buffer("dis_mean", torch.zeros(()), persistent=self.cfg.intrinsic > 0)
        self.actor_opt = torch.optim.Adam(self.actor.parameters(), lr=self.cfg.actor_lr, eps=self.cfg.adam_eps)
        self.critic_opt = torch.optim.Adam(self.critic.parameters(), lr=self.cfg.critic_lr, eps=self.cfg.adam_eps)
        self.updates = 0

    # ------------------------------------------------------------------ starts and rollouts
    @torch.no_grad()
    def starts_from_batch(self, wm: Any, batch: dict[str, torch.Tensor]) -> tuple[State, torch.Tensor]:
        """Posterior states of a replayed batch -> (flat start states (N, ...), start_cont (N,))."""
        post, _ = wm.observe(batch["obs"], batch["action"], batch["is_first"])
        return self.starts_from_post(post, batch["is_terminal"])

    @torch.no_grad()
    def starts_from_post(self, post: State, is_terminal: torch.Tensor) -> tuple[State, torch.Tensor]:
        """Posterior states (B, T, ...) already computed (e.g. by the world-model loss) and
        is_terminal (B, T) -> (flat start states (N, ...), start_cont (N,)), detached."""
        start = flatten_state(post)
        cont = 1.0 - rearrange(is_terminal.float(), "b t -> (b t)")
        n = cont.shape[0]
        if n > self.cfg.max_starts:
            idx = torch.randperm(n)[: self.cfg.max_starts].to(cont.device)
            start, cont = index_state(start, idx), cont[idx]
        return {k: v.detach() for k, v in start.items()}, cont

    # ------------------------------------------------------------------ one update
    def _mean_over_ranks(self, x: torch.Tensor) -> torch.Tensor:
        fabric = self.fabric
        if fabric is None or fabric.world_size <= 1:
            return x
        return fabric.all_reduce(x, reduce_op="mean")

    def train_step(self, wm: Any, start: State, start_cont: torch.Tensor) -> dict[str, float]:
        cfg = self.cfg
        grad = not self.actor.discrete
        dev = start_cont.device
        with frozen(wm):
            roll = self.imagine(wm, start, grad)
        feat, action = roll["feat"], roll["action"]  # (H+1, N, F), (H, N, A)
        reward, cont = roll["reward"].float(), roll["cont"].float()  # (H, N)
        if cfg.penalty > 0:
            reward = reward - cfg.penalty * roll["disagreement"].float()
        extrinsic = reward  # the metric keeps the task's (penalised) reward
        bonus = self._intrinsic(roll["disagreement"].float()) if cfg.intrinsic > 0 else None
        if bonus is not None:
            reward = reward + bonus
        with frozen(self.slow_critic), mixed(self.precision, dev, self.slow_critic):
            value = self.slow_critic.value(feat if grad else feat.detach()).float()  # (H+1, N)
        ret = lambda_returns(reward, cont, value, cfg.gamma, cfg.lam)  # (H, N), fp32
        weight = torch.cumprod(torch.cat([start_cont[None], cfg.gamma * cont[:-1]], 0), 0).detach()
        self.retnorm.update(ret, self._mean_over_ranks)
        scale = self.retnorm.scale

        # critic logits once: the actor's baseline and the critic's loss (forward passes mixed,
        # logits and probabilities fp32)
        feat_c = feat[:-1].detach()
        with mixed(self.precision, dev, self.critic, self.actor):
            logits = self.critic.logits(feat_c).float()  # (H, N, bins)
            probs = self.actor.probs(feat_c).float() if self.actor.discrete else None  # (H, N, A)
        if probs is not None:
            base = self.critic.value_from_logits(logits.detach())
            adv = ((ret - base) / scale).detach()
            logp = torch.log((probs * action).sum(-1))
            ent = -(probs * torch.log(probs)).sum(-1)
            actor_obj = logp * adv + cfg.entropy * ent
        else:
            ent = roll["entropy"]
            actor_obj = ret / scale + cfg.entropy * ent
        actor_loss = -(weight * actor_obj).mean()
        critic_loss = self.critic.loss(logits, ret.detach()) + cfg.slow_reg * self.critic.loss(
            logits, value[:-1].detach()
        )
        critic_loss = (weight * critic_loss).mean()
        self.actor_opt.zero_grad(set_to_none=True)
        self.critic_opt.zero_grad(set_to_none=True)
        (actor_loss + critic_loss).backward()  # disjoint graphs: actor and critic weights
        if self.fabric is not None:  # one all-reduce for both (a no-op on one process)
            sync_grads(self.fabric, [*self.actor.parameters(), *self.critic.parameters()])
        actor_gn = nn.utils.clip_grad_norm_(self.actor.parameters(), cfg.grad_clip)
        critic_gn = nn.utils.clip_grad_norm_(self.critic.parameters(), cfg.grad_clip)
        self.actor_opt.step()
        self.critic_opt.step()
        self._update_slow()
        self.updates += 1
        return {
            "actor_loss": float(actor_loss.detach()),
            "critic_loss": float(critic_loss.detach()),
            "return": float(ret.detach().mean()),
            "reward": float(extrinsic.detach().mean()),
            **({"intrinsic": float(bonus.mean())} if bonus is not None else {}),
            "cont": float(cont.detach().mean()),
            "value": float(value.detach().mean()),
            "entropy": float(ent.detach().mean()),
            "ret_scale": float(scale),
            "actor_grad": float(actor_gn),
            "critic_grad": float(critic_gn),
            **({"disagreement": float(roll["disagreement"].mean())} if "disagreement" in roll else {}),
        }

    def imagine(self, wm: Any, start: State, grad: bool) -> dict[str, torch.Tensor]:
        """Roll the actor ``horizon`` steps through the world model from ``start`` (N, ...):
        feat (H+1, N, F), action (H, N, A), reward / cont / entropy (H, N) for steps 1..H, and
        with ``penalty`` or ``intrinsic`` > 0 the ensemble ``disagreement`` (H, N) of each step (no gradient).
        With ``grad`` the graph is kept (continuous actions, reparameterised)."""
        ctx = contextlib.nullcontext() if grad else torch.no_grad()
        dev = next(iter(start.values())).device
        with ctx, mixed(self.precision, dev, wm, self.actor):
            state = start
            states, feats, actions, ents, dis = [], [wm.features(state)], [], [], []
            for _ in range(self.cfg.horizon):
                if self.actor.discrete:
                    act = self.actor.act(feats[-1] if grad else feats[-1].detach())
                else:
                    act, _, ent = self.actor.sample(feats[-1])
                    ents.append(ent)
                if self.cfg.penalty > 0 or self.cfg.intrinsic > 0:
                    with torch.no_grad():
                        dis.append(wm.disagreement({k: v.detach() for k, v in state.items()}, act.detach()))
                state = wm.img_step(state, act)
                states.append(state)
                actions.append(act)
                feats.append(wm.features(state))
            # heads once over all imagined steps: (H, N, ...) states -> (H, N)
            stacked = {k: torch.stack([s[k] for s in states]) for k in states[0]}
            reward, cont = wm.reward(stacked).float(), wm.cont(stacked).float()
        out = {"feat": torch.stack(feats), "action": torch.stack(actions), "reward": reward, "cont": cont}
        if ents:
            out["entropy"] = torch.stack(ents)
        if dis:
            out["disagreement"] = torch.stack(dis)
        return out

    @torch.no_grad()
    def _intrinsic(self, dis: torch.Tensor) -> torch.Tensor:
        """The exploration bonus (H, N): ``intrinsic * dis / EMA(mean dis)`` (no gradient; the EMA
        is averaged over ranks, so identical ranks stay identical)."""
        m = self._mean_over_ranks(dis.mean().reshape(1))[0]
        if bool(self.dis_mean == 0):
            self.dis_mean.copy_(m)
        else:
            self.dis_mean.mul_(self.cfg.retnorm_decay).add_((1 - self.cfg.retnorm_decay) * m)
        return self.cfg.intrinsic * dis / self.dis_mean.clamp(min=1e-8)

    @torch.no_grad()
    def _update_slow(self) -> None:
        mix = 1.0 - self.cfg.slow_critic_decay
        for s, p in zip(self.slow_critic.parameters(), self.critic.parameters()):
            s.mul_(1 - mix).add_(mix * p)

    # ------------------------------------------------------------------ checkpoints
    def full_state(self) -> dict[str, Any]:
        """Everything to resume: weights, optimiser states, counters (torch.load(weights_only=True)-safe)."""
        return {
            "model": self.state_dict(),
            "actor_opt": self.actor_opt.state_dict(),
            "critic_opt": self.critic_opt.state_dict(),
            "updates": self.updates,
            "config": asdict(self.cfg),
        }

    def load_full_state(self, blob: dict[str, Any]) -> None:
        self.load_state_dict(blob["model"])
        self.actor_opt.load_state_dict(blob["actor_opt"])
        self.critic_opt.load_state_dict(blob["critic_opt"])
        self.updates = int(blob["updates"])
