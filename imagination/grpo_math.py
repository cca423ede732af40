"""The arithmetic of GRPO, free of environments: advantages, the clipped surrogate, k3 KL.

Shapes: ``P`` groups (start states) of ``G`` members (forks), flattened to ``N = P * G``
trajectories of up to ``T`` steps; ``mask (N, T)`` marks the steps that were really taken.

* :func:`group_advantages` -- ``A_i = (r_i - mean(r_group)) / (std(r_group) + eps)``; with
  ``scale_std=False`` the std is dropped (Dr.GRPO). Groups whose scores have no variance carry
  no signal and are reported in ``keep`` so they can be dropped (DAPO's dynamic sampling).
* :func:`clipped_surrogate` -- PPO's clipped objective with a separate, larger upper clip
  ``eps_high`` (DAPO's clip-higher): ``min(rho A, clip(rho, 1 - eps_low, 1 + eps_high) A)``.
* :func:`k3_kl` -- Schulman's unbiased, always-positive estimator of KL(pi || pi_ref) from
  samples of pi: ``exp(ref - logp) - (ref - logp) - 1``.
* :func:`aggregate` -- ``token_mean`` (DAPO: every step weighs the same), ``seq_mean`` (the
  original GRPO: mean within a trajectory, then over trajectories) or ``constant`` (Dr.GRPO:
  the sum over steps divided by ``N * T``, no length bias).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from einops import rearrange

from dreamlab.core.errors import DreamlabError

AGGREGATIONS = ("token_mean", "seq_mean", "constant")


class GRPOConfigError(DreamlabError):
    """A GRPO setting outside its allowed values; the message names the field."""


def group_advantages(
    scores: torch.Tensor, scale_std: bool = True, eps: float = 1e-6, min_std: float = 1e-6
) -> tuple[torch.Tensor, torch.Tensor]:
    """(P, G) scores -> (advantages (P, G), keep (P,) bool where the group's scores vary).

    The std is the population std over the G members (``unbiased=False``).
    """
    if scores.ndim != 2:
        raise GRPOConfigError(
            f"group_advantages: expected scores of shape (groups, group_size), got {tuple(scores.shape)}"
        )
    if scores.shape[1] < 2:
        raise GRPOConfigError(f"group_size: a group needs at least 2 members, got {scores.shape[1]}")
    mean = scores.mean(-1, keepdim=True)
    std = scores.std(-1, unbiased=False, keepdim=True)
    adv = scores - mean
    if scale_std:
        adv = adv / (std + eps)
    keep = rearrange(std, "p 1 -> p") > min_std
    return adv, keep


def k3_kl(logp: torch.Tensor, ref_logp: torch.Tensor) -> torch.Tensor:
    """Per-sample k3 estimate of KL(pi || pi_ref), samples drawn from pi: (...) -> (...) >= 0."""
    log_ratio = (ref_logp - logp).clamp(-20.0, 20.0)
    return torch.exp(log_ratio) - log_ratio - 1.0


def aggregate(values: torch.Tensor, mask: torch.Tensor, how: str = "token_mean") -> torch.Tensor:
    """Reduce per-step values (N, T) over the real steps ``mask (N, T)`` to a scalar."""
    m = mask.to(values.dtype)
    if how == "token_mean":
        return (values * m).sum() / m.sum().clamp_min(1.0)
    if how == "seq_mean":
        per_seq = (values * m).sum(-1) / m.sum(-1).clamp_min(1.0)
        return per_seq.mean()
    if how == "constant":
        return (values * m).sum() / float(values.numel())
    raise GRPOConfigError(f"loss_agg: expected one of {AGGREGATIONS}, got {how!r}")


def clipped_surrogate(
    logp: torch.Tensor, old_logp: torch.Tensor, adv: torch.Tensor, eps_low: float = 0.2, eps_high: float = 0.28
) -> tuple[torch.Tensor, torch.Tensor]:
    """Per-step loss ``-min(rho A, clip(rho, 1-eps_low, 1+eps_high) A)`` and a clipped flag.

    ``logp, old_logp`` (N, T); ``adv`` (N,) broadcast over the steps of each trajectory, or (N, T).
    """
    if eps_low < 0 or eps_high < 0 or eps_low >= 1:
        raise GRPOConfigError(f"eps_low/eps_high: need 0 <= eps_low < 1 and eps_high >= 0, got {eps_low}, {eps_high}")
    if adv.ndim == 1:
        adv = rearrange(adv, "n -> n 1")
    ratio = torch.exp((logp - old_logp).clamp(-20.0, 20.0))
    unclipped = ratio * adv
    clipped = ratio.clamp(1.0 - eps_low, 1.0 + eps_high) * adv
    loss = -torch.minimum(unclipped, clipped)
    was_clipped = (clipped < unclipped).detach()
    return loss, was_clipped


@dataclass
class LossInfo:
    loss: float
    policy_loss: float
    kl: float
    clip_frac: float
    ratio_mean: float


def grpo_loss(
    logp: torch.Tensor,
    old_logp: torch.Tensor,
    adv: torch.Tensor,
    mask: torch.Tensor,
    ref_logp: torch.Tensor | None = None,
    kl_coef: float = 0.0,
    eps_low: float = 0.2,
    eps_high: float = 0.28,
    loss_agg: str = "token_mean",
    entropy: torch.Tensor | None = None,
    entropy_coef: float = 0.0,
) -> tuple[torch.Tensor, LossInfo]:
    """The full objective on (N, T) step log-probs; returns the scalar loss and diagnostics."""
    per_step, was_clipped = clipped_surrogate(logp, old_logp, adv, eps_low, eps_high)
    policy_loss = aggregate(per_step, mask, loss_agg)
    loss = policy_loss
    kl_value = torch.zeros(())
    if ref_logp is not None and kl_coef > 0:
        kl_value = aggregate(k3_kl(logp, ref_logp), mask, loss_agg)
        loss = loss + kl_coef * kl_value
    if entropy is not None and entropy_coef > 0:
        loss = loss - entropy_coef * aggregate(entropy, mask, loss_agg)
    with torch.no_grad():
        m = mask.to(logp.dtype)
        denom = m.sum().clamp_min(1.0)
        info = LossInfo(
            float(loss),
            float(policy_loss),
            float(kl_value),
            float((was_clipped.to(m.dtype) * m).sum() / denom),
            float((torch.exp(logp - old_logp) * m).sum() / denom),
        )
    return loss, info
