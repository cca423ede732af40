"""The ``WorldModel`` LightningModule (the contract is in ``docs/CONTRACTS.md``, "World model").

Losses (per step, averaged over batch and time):

* decoder: symlog MSE summed over observation dims (vectors) or MSE over pixels (64x64 images);
* reward: two-hot cross-entropy over symexp-spaced bins; the target is the batch's ``reward``,
  ``feedback`` or their sum (``cfg.reward_source``), the value that *arrived with* obs t;
* continue: Bernoulli, target ``1 - is_terminal``, terminal steps weighted by
  ``cfg.cont_terminal_weight`` (terminals are rare: about 1 step in 200 once a CartPole policy is
  good, and an unweighted head learns to say "never ends"); both heads are trained on posterior states and
  (``cfg.heads_on_prior``) on samples of the prior at the same step, which is what they see in
  imagination;
* KL, split: ``dyn_scale * max(free_bits, KL(sg(post) || prior_k))`` +
  ``rep_scale * max(free_bits, KL(post || sg(prior_k)))``, averaged over the K prior heads.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import lightning as L
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dreamlab.core.nn import MLP, TwoHot, symexp, symlog
from dreamlab.data.spaces import ActionCodec, space_from_json, space_to_json
from dreamlab.worldmodel.checkpoint import check_spaces, load_model, save_model, stamp
from dreamlab.worldmodel.config import WorldModelConfig
from dreamlab.worldmodel.dists import categorical_entropy, categorical_kl, sample_onehot
from dreamlab.worldmodel.nets import ConvDecoder, ConvEncoder, is_image_shape
from dreamlab.worldmodel.rssm import RSSM, State


class WorldModel(L.LightningModule):
    """RSSM world model; see the module docstring for the losses."""

    obs_loc: torch.Tensor  # buffers, vector observations only
    obs_scale: torch.Tensor

    def __init__(
        self,
        cfg: dict[str, Any] | WorldModelConfig,
        obs_space: dict[str, Any] | gym.Space,
        action_space: dict[str, Any] | gym.Space,
    ):
        super().__init__()
        cfg_d = cfg.to_dict() if isinstance(cfg, WorldModelConfig) else dict(cfg)
        obs_d = obs_space if isinstance(obs_space, dict) else space_to_json(obs_space)
        act_d = action_space if isinstance(action_space, dict) else space_to_json(action_space)
        # plain dicts only, so checkpoints load with torch.load(weights_only=True)
        self.save_hyperparameters({"cfg": cfg_d, "obs_space": obs_d, "action_space": act_d})
        self.cfg = WorldModelConfig.from_dict(cfg_d)
        self.obs_space = space_from_json(obs_d)
        self.action_space = space_from_json(act_d)
        self.codec = ActionCodec(self.action_space)
        c = self.cfg
        self.obs_shape = tuple(self.obs_space.shape or ())
        self.image = is_image_shape(self.obs_shape)
        if self.image:
            self.encoder: nn.Module = ConvEncoder(self.obs_shape[-1], c.cnn_depth)
            embed = self.encoder.out_dim
        else:
            self.obs_dim = int(np.prod(self.obs_shape)) if self.obs_shape else 1
            # per-dimension standardisation (identity until set_obs_stats; saved with the weights)
            self.register_buffer("obs_loc", torch.zeros(self.obs_dim))
            self.register_buffer("obs_scale", torch.ones(self.obs_dim))
            self.encoder = MLP(self.obs_dim, c.hidden, max(1, c.mlp_layers))
            embed = self.encoder.out_dim
        self.rssm = RSSM(
            embed, self.codec.dim, c.deter, c.hidden, c.groups, c.classes, c.gru_blocks, c.ensemble, c.unimix
        )
        feat = self.feature_dim
        if self.image:
            self.decoder: nn.Module = ConvDecoder(feat, self.obs_shape[-1], c.cnn_depth)
        else:
            self.decoder = MLP(feat, c.hidden, c.mlp_layers, self.obs_dim)
        self.twohot = TwoHot(c.reward_bins, c.bin_range)
        self.reward_head = MLP(feat, c.hidden, c.mlp_layers, c.reward_bins, zero_out=True)
        self.cont_head = MLP(feat, c.hidden, c.mlp_layers, 1)

    # --------------------------------------------------------------------- properties
    @property
    def feature_dim(self) -> int:
        return self.cfg.deter + self.cfg.groups * self.cfg.classes

    @property
    def reward_source(self) -> str:
        return self.cfg.reward_source

    # --------------------------------------------------------------------- observations
    def set_obs_stats(self, obs: np.ndarray) -> None:
        """Standardise vector observations with the per-dimension mean/std of ``obs (N, *obs_shape)``
        (when ``cfg.obs_norm``); constant dimensions keep scale 1."""
        if self.image or not self.cfg.obs_norm or len(obs) == 0:
            return
        flat = np.asarray(obs, np.float64).reshape(len(obs), self.obs_dim)
        std = flat.std(0)
        self.obs_loc.copy_(torch.as_tensor(flat.mean(0), dtype=torch.float32))
        self.obs_scale.copy_(torch.as_tensor(np.where(std > 1e-6, std, 1.0), dtype=torch.float32))

    def _obs_vec(self, obs: torch.Tensor) -> torch.Tensor:
        """(..., *obs_shape) env units -> (..., obs_dim) symlog of the standardised vector."""
        flat = obs.float().reshape(*obs.shape[: obs.dim() - len(self.obs_shape)], self.obs_dim)
        z = (flat - self.obs_loc) / self.obs_scale
        return symlog(z) if self.cfg.symlog_obs else z

    def _obs_in(self, obs: torch.Tensor) -> torch.Tensor:
        """(..., *obs_shape) env units -> (..., E) embedding."""
        if self.image:
            return self.encoder(obs.float())
        return self.encoder(self._obs_vec(obs))

    def _obs_target(self, obs: torch.Tensor) -> torch.Tensor:
        """Decoder targets: symlog standardised vectors, or images scaled to [-0.5, 0.5]."""
        if self.image:
            return obs.float() / 255.0 - 0.5
        return self._obs_vec(obs)

    def reward_target(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        src = self.cfg.reward_source
        if src == "env":
            return batch["reward"].float()
        if src == "feedback":
            return batch["feedback"].float()
        return batch["reward"].float() + batch["feedback"].float()

    # --------------------------------------------------------------------- contract
    def initial(self, batch_size: int) -> State:
        return self.rssm.initial(batch_size, self.device)

    def observe(
        self,
        obs: torch.Tensor,
        action: torch.Tensor,
        is_first: torch.Tensor,
        state: State | None = None,
        mode: bool = False,
    ) -> tuple[State, State]:
        """obs (B,T,*obs), action (B,T,A) taken at t, is_first (B,T) -> (post, prior) states (B,T,...).

        ``state`` continues from a previous call (default: zeros); ``mode`` takes the latents'
        modes instead of samples. The prior state holds the *first* ensemble head's logits.
        """
        post, prior_all = self.rssm.observe(self._obs_in(obs), action.float(), is_first, state, mode)
        prior_logits = prior_all[:, :, 0]
        prior = {"deter": post["deter"], "stoch": sample_onehot(prior_logits.exp(), mode=mode), "logits": prior_logits}
        return post, prior

    def obs_step(
        self, state: State, prev_action: torch.Tensor, obs: torch.Tensor, is_first: torch.Tensor, mode: bool = False
    ) -> State:
        return self.rssm.obs_step(state, prev_action.float(), self._obs_in(obs), is_first, mode)

    def img_step(self, state: State, action: torch.Tensor, member: int | None = None, mode: bool = False) -> State:
        return self.rssm.img_step(state, action.float(), member, mode)

    def features(self, state: State) -> torch.Tensor:
        stoch = state["stoch"]
        return torch.cat([state["deter"], stoch.reshape(*stoch.shape[:-2], -1)], -1)

    def decode(self, state: State) -> torch.Tensor:
        """-> (..., *obs_shape) in env units."""
        out = self.decoder(self.features(state)).float()  # env units in fp32 (also under bf16 autocast)
        if self.image:
            return ((out + 0.5) * 255.0).clamp(0, 255)
        vec = (symexp(out) if self.cfg.symlog_obs else out) * self.obs_scale + self.obs_loc
        return vec.reshape(*out.shape[:-1], *self.obs_shape)

    def reward(self, state: State) -> torch.Tensor:
        return self.twohot.mean(self.reward_head(self.features(state)).float())

    def cont(self, state: State) -> torch.Tensor:
        return torch.sigmoid(self.cont_head(self.features(state)).float().squeeze(-1))

    def disagreement(self, state: State, action: torch.Tensor) -> torch.Tensor:
        return self.rssm.disagreement(state, action.float())

    # --------------------------------------------------------------------- training
    def loss(self, batch: dict[str, torch.Tensor], return_post: bool = False) -> Any:
        """-> (total, metrics), or (total, metrics, posterior states (B, T, ...)) with ``return_post``
        (an online learner reuses them as imagination starts instead of filtering the batch again)."""
        c = self.cfg
        embed = self._obs_in(batch["obs"])  # (B, T, E)
        post, prior_logits = self.rssm.observe(embed, batch["action"].float(), batch["is_first"])
        feat = self.features(post)  # (B, T, F)
        target = self._obs_target(batch["obs"])
        recon = self.decoder(feat).float()  # losses in fp32 (also under bf16 autocast)
        sq = (recon - target) ** 2
        dec = sq.flatten(2).sum(-1).mean()
        rew_target = self.reward_target(batch)
        cont_target = 1.0 - batch["is_terminal"].float()
        feats = [feat]
        if c.heads_on_prior:
            # the heads also see what imagination feeds them: a sample of a random prior head
            pick = torch.randint(0, c.ensemble, prior_logits.shape[:2], device=feat.device)
            idx = pick[:, :, None, None, None].expand(-1, -1, 1, c.groups, c.classes)
            prior_probs = prior_logits.gather(2, idx).squeeze(2).exp()  # (B, T, G, C)
            feats.append(self.features({"deter": post["deter"], "stoch": sample_onehot(prior_probs)}))
        rew = cast(
            torch.Tensor,
            sum(self.twohot.loss(self.reward_head(f).float(), rew_target).mean() for f in feats) / len(feats),
        )
        cont_w = (
            None
            if c.cont_terminal_weight == 1.0
            else 1.0 + (c.cont_terminal_weight - 1.0) * batch["is_terminal"].float()
        )  # (B, T)
        cont = cast(
            torch.Tensor,
            sum(
                F.binary_cross_entropy_with_logits(self.cont_head(f).float().squeeze(-1), cont_target, weight=cont_w)
                for f in feats
            )
            / len(feats),
        )
        post_l = post["logits"].unsqueeze(2)  # (B, T, 1, G, C) against (B, T, K, G, C)
        dyn_raw = categorical_kl(post_l.detach(), prior_logits)  # (B, T, K)
        rep_raw = categorical_kl(post_l, prior_logits.detach())
        dyn = dyn_raw.clamp(min=c.free_bits).mean()
        rep = rep_raw.clamp(min=c.free_bits).mean()
        total = c.dec_scale * dec + c.reward_scale * rew + c.cont_scale * cont + c.dyn_scale * dyn + c.rep_scale * rep
        metrics = {
            "loss": total.detach(),
            "dec": dec.detach(),
            "rew": rew.detach(),
            "cont": cont.detach(),
            "dyn": dyn.detach(),
            "rep": rep.detach(),
            "kl": dyn_raw.mean().detach(),
            "post_ent": categorical_entropy(post["logits"]).mean().detach(),
        }
        if return_post:
            return total, metrics, post
        return total, metrics

    def training_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> torch.Tensor:
        total, m = self.loss(batch)
        self.log_dict({f"train/{k}": v for k, v in m.items()}, prog_bar=False)
        self.log_dict({k: m[k] for k in ("loss", "dec", "rew", "cont", "kl")}, prog_bar=True, logger=False)
        return total

    def validation_step(self, batch: dict[str, torch.Tensor], batch_idx: int) -> None:
        _, m = self.loss(batch)
        self.log_dict({f"val/{k}": v for k, v in m.items()}, prog_bar=False)

    def configure_optimizers(self) -> Any:
        c = self.cfg
        cls = torch.optim.AdamW if c.optimizer == "adamw" else torch.optim.Adam
        opt = cls(self.parameters(), lr=c.lr, eps=c.eps, weight_decay=c.weight_decay)
        warm = max(1, c.warmup_steps)
        trainer = self._trainer  # None outside a Trainer (a hand-written loop): no decay then
        total = int(trainer.max_steps) if trainer is not None and trainer.max_steps and trainer.max_steps > 0 else 0

        def factor(step: int) -> float:
            f = min(1.0, (step + 1) / warm)
            if c.lr_decay == "cosine" and total > warm:
                t = min(1.0, max(0.0, (step - warm) / (total - warm)))
                f *= c.lr_min_ratio + (1 - c.lr_min_ratio) * 0.5 * (1 + math.cos(math.pi * t))
            return f

        sched = torch.optim.lr_scheduler.LambdaLR(opt, factor)
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    # --------------------------------------------------------------------- checkpoints
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        stamp(checkpoint)

    def save(self, path: str | Path) -> Path:
        """Write a compact checkpoint (weights + plain-dict hparams + version), atomically."""
        return save_model(self, path)

    @classmethod
    def load(cls, path: str | Path, map_location: str | torch.device = "cpu") -> WorldModel:
        """Load a compact or Lightning checkpoint with ``torch.load(weights_only=True)``."""
        return load_model(cls, path, map_location)

    def check_spaces(self, obs_space: gym.Space, action_space: gym.Space, source: str | Path) -> None:
        """Raise SpaceMismatchError when logs' spaces differ from the ones this model was trained on."""
        check_spaces(self, obs_space, action_space, source)
