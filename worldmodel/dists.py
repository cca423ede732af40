"""Distributions: unimix categoricals with straight-through (two-hot lives in :mod:`dreamlab.core.nn`)."""

from __future__ import annotations

import torch
import torch.nn.functional as F


def unimix(probs: torch.Tensor, mix: float) -> torch.Tensor:
    """Mix ``mix`` of a uniform distribution into each (..., C) categorical (1% in DreamerV3)."""
    return probs * (1 - mix) + mix / probs.shape[-1] if mix > 0 else probs


def sample_onehot(probs: torch.Tensor, noise: torch.Tensor | None = None, mode: bool = False) -> torch.Tensor:
    """(..., C) probabilities -> (..., C) one-hot sample with straight-through gradients.

    ``argmax(p / E)`` with ``E ~ Exponential(1)`` draws from ``p`` (the Gumbel-max trick in
    probability space); ``noise`` lets a time loop draw every ``E`` at once. ``mode``: argmax.
    """
    if mode:
        idx = probs.argmax(-1)
    else:
        if noise is None:
            noise = torch.empty_like(probs).exponential_()
        idx = (probs.detach() / noise).argmax(-1)
    onehot = F.one_hot(idx, probs.shape[-1]).to(probs.dtype)
    return onehot + (probs - probs.detach())


def categorical_kl(lhs: torch.Tensor, rhs: torch.Tensor) -> torch.Tensor:
    """KL(lhs || rhs) of (..., G, C) log-prob tensors, summed over groups -> (...)."""
    return (lhs.exp() * (lhs - rhs)).sum((-1, -2))


def categorical_entropy(logits: torch.Tensor) -> torch.Tensor:
    """(..., G, C) log-probs -> (...) entropy summed over groups."""
    return -(logits.exp() * logits).sum((-1, -2))
