"""Actor and critic networks for Dreamer-style learning on latent features.

Both networks read a feature vector (the world model's ``features(state)``, or any vector) and
are plain ``nn.Module`` s with no dependency on the world model, so the policy package only
imports ``data``.

* :class:`Actor` -- discrete spaces: a categorical with a 1% uniform mix (``unimix``);
  continuous ``Box`` spaces: a tanh-squashed normal whose samples are reparameterised
  (``rsample``), scaled into the Box bounds. Actions are returned in *codec* form: one-hot
  vectors (discrete) or env-unit vectors (continuous), the form the world model consumes.
* :class:`Critic` -- a two-hot distributional value head over symexp-spaced bins
  (DreamerV3): the network predicts logits over ``bins`` points in symlog space; the value is
  ``symexp(sum_i p_i b_i)``; the loss is the cross-entropy to the two-hot encoding of
  ``symlog(target)``. The output layer starts at zero so that initial values are zero.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import cast

import gymnasium as gym
import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from dreamlab.core.nn import MLP, symexp, symlog, twohot
from dreamlab.data.spaces import ActionCodec


@dataclass
class ActorCriticNetConfig:
    hidden: int = 256
    layers: int = 2
    unimix: float = 0.01
    min_std: float = 0.1
    max_std: float = 1.0
    critic_bins: int = 255
    bin_range: float = 20.0


class Actor(nn.Module):
    """Feature -> action distribution; see the module docstring for the two action kinds."""

    low: torch.Tensor  # buffers, continuous spaces only
    high: torch.Tensor

    def __init__(self, feature_dim: int, action_space: gym.Space, cfg: ActorCriticNetConfig | None = None):
        super().__init__()
        self.cfg = cfg or ActorCriticNetConfig()
        self.codec = ActionCodec(action_space)
        self.discrete = self.codec.discrete
        if self.discrete and not isinstance(action_space, gym.spaces.Discrete):
            raise ValueError(f"Actor supports Discrete and Box action spaces, got {action_space}")
        self.dim = self.codec.dim
        out = self.dim if self.discrete else 2 * self.dim
        self.net = MLP(feature_dim, self.cfg.hidden, self.cfg.layers, out, bias=True, norm_eps=1e-5)
        if not self.discrete:
            box = cast(gym.spaces.Box, action_space)
            low = np.asarray(box.low, np.float32).reshape(-1)
            high = np.asarray(box.high, np.float32).reshape(-1)
            if not (np.all(np.isfinite(low)) and np.all(np.isfinite(high))):
                raise ValueError(f"continuous actor needs finite Box bounds, got low={low} high={high}")
            self.register_buffer("low", torch.as_tensor(low))
            self.register_buffer("high", torch.as_tensor(high))

    # ------------------------------------------------------------------------- discrete
    def probs(self, feat: torch.Tensor) -> torch.Tensor:
        """(..., F) -> (..., num_actions) probabilities with the uniform mix (discrete only)."""
        p = F.softmax(self.net(feat), -1)
        return (1 - self.cfg.unimix) * p + self.cfg.unimix / self.dim

    def act(self, feat: torch.Tensor, greedy: bool = False) -> torch.Tensor:
        """Just an action (codec form), without log-prob or entropy: the cheap path for rollouts."""
        if not self.discrete:
            return self.sample(feat, greedy)[0]
        p = self.probs(feat)
        idx = p.argmax(-1) if greedy else torch.multinomial(p.reshape(-1, self.dim), 1).reshape(p.shape[:-1])
        return F.one_hot(idx, self.dim).to(feat.dtype)

    # ------------------------------------------------------------------------- continuous
    def _normal(self, feat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        mean, std = self.net(feat).chunk(2, -1)
        std = (self.cfg.max_std - self.cfg.min_std) * torch.sigmoid(std + 2.0) + self.cfg.min_std
        return mean, std

    def _to_env(self, squashed: torch.Tensor) -> torch.Tensor:
        return self.low + (squashed + 1.0) * 0.5 * (self.high - self.low)

    # ------------------------------------------------------------------------- common
    def sample(self, feat: torch.Tensor, greedy: bool = False) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Returns ``(action (..., A) codec form, log_prob (...), entropy (...))``.

        Continuous samples are reparameterised (gradients flow from the action to ``feat`` and
        the actor's weights); the entropy of the squashed normal is estimated as ``-log_prob``.
        Discrete samples carry no gradient; use :meth:`log_prob` on them (REINFORCE).
        """
        if self.discrete:
            p = self.probs(feat)
            if greedy:
                idx = p.argmax(-1)
            else:
                idx = torch.multinomial(p.reshape(-1, self.dim), 1).reshape(p.shape[:-1])
            act = F.one_hot(idx, self.dim).to(feat.dtype)
            logp = torch.log(p.gather(-1, idx.unsqueeze(-1)).squeeze(-1))
            ent = -(p * torch.log(p)).sum(-1)
            return act, logp, ent
        mean, std = self._normal(feat)
        u = mean if greedy else mean + std * torch.randn_like(mean)
        squashed = torch.tanh(u)
        logp = self._squashed_log_prob(u, mean, std)
        return self._to_env(squashed), logp, -logp

    def _squashed_log_prob(self, u: torch.Tensor, mean: torch.Tensor, std: torch.Tensor) -> torch.Tensor:
        normal = -0.5 * ((u - mean) / std) ** 2 - torch.log(std) - 0.5 * math.log(2 * math.pi)
        jac = 2.0 * (math.log(2.0) - u - F.softplus(-2.0 * u))  # log(1 - tanh(u)^2), stable
        scale = torch.log((self.high - self.low) * 0.5)
        return (normal - jac - scale).sum(-1)

    def log_prob(self, feat: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
        """log pi(action | feat) for codec-form actions: (..., F), (..., A) -> (...)."""
        if self.discrete:
            return torch.log((self.probs(feat) * action).sum(-1))
        mean, std = self._normal(feat)
        squashed = (2.0 * (action - self.low) / (self.high - self.low) - 1.0).clamp(-0.999999, 0.999999)
        return self._squashed_log_prob(torch.atanh(squashed), mean, std)

    def entropy(self, feat: torch.Tensor) -> torch.Tensor:
        """Exact entropy (discrete) or a one-sample estimate (continuous): (..., F) -> (...)."""
        if self.discrete:
            p = self.probs(feat)
            return -(p * torch.log(p)).sum(-1)
        return self.sample(feat)[2]


class Critic(nn.Module):
    """Two-hot distributional value head over symexp-spaced bins."""

    bins: torch.Tensor

    def __init__(self, feature_dim: int, cfg: ActorCriticNetConfig | None = None):
        super().__init__()
        self.cfg = cfg or ActorCriticNetConfig()
        self.net = MLP(
            feature_dim, self.cfg.hidden, self.cfg.layers, self.cfg.critic_bins, zero_out=True, bias=True, norm_eps=1e-5
        )
        self.register_buffer("bins", torch.linspace(-self.cfg.bin_range, self.cfg.bin_range, self.cfg.critic_bins))

    def logits(self, feat: torch.Tensor) -> torch.Tensor:
        return self.net(feat)

    def value(self, feat: torch.Tensor) -> torch.Tensor:
        """(..., F) -> (...) expected value in reward units."""
        return self.value_from_logits(self.logits(feat))

    def value_from_logits(self, logits: torch.Tensor) -> torch.Tensor:
        return symexp((F.softmax(logits, -1) * self.bins).sum(-1))

    def loss(self, logits: torch.Tensor, target: torch.Tensor) -> torch.Tensor:
        """Cross-entropy of the logits to twohot(symlog(target)), per element: (...)."""
        return -(twohot(symlog(target), self.bins) * F.log_softmax(logits, -1)).sum(-1)
