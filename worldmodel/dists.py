"""Distributions: two-hot over symexp-spaced bins, and unimix categoricals with straight-through."""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from worldmodel.nets import symexp, symlog


class TwoHot(nn.Module):
    """A scalar as a categorical over ``bins`` values, evenly spaced in symlog space.

    ``loss(logits, x)`` is the cross-entropy against the two-hot encoding of ``x``;
    ``mean(logits)`` is ``symexp(sum(p * bins))``: the expectation is taken in symlog space, as in
    DreamerV3 (an expectation over ``symexp(bins)`` would let the tiny mass left on the outer
    bins, worth up to ``symexp(limit)``, swamp the prediction).
    """

    def __init__(self, bins: int = 255, limit: float = 20.0):
        super().__init__()
        self.register_buffer("points", torch.linspace(-limit, limit, bins), persistent=False)  # symlog space

    @property
    def bins(self) -> int:
        return int(self.points.shape[0])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(...) values -> (..., bins) two-hot weights (in symlog space, sums to one)."""
        y = symlog(x).clamp(self.points[0], self.points[-1])
        hi = torch.searchsorted(self.points, y.contiguous().unsqueeze(-1)).squeeze(-1).clamp(1, self.bins - 1)
        lo = hi - 1
        p_lo, p_hi = self.points[lo], self.points[hi]
        w_hi = ((y - p_lo) / (p_hi - p_lo)).clamp(0, 1)
        out = torch.zeros(*x.shape, self.bins, dtype=x.dtype, device=x.device)
        out.scatter_(-1, lo.unsqueeze(-1), (1 - w_hi).unsqueeze(-1))
        out.scatter_add_(-1, hi.unsqueeze(-1), w_hi.unsqueeze(-1))
        return out

    def loss(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(..., bins) logits, (...) targets -> (...) cross-entropy."""
        return -(self.encode(x) * F.log_softmax(logits, -1)).sum(-1)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., bins) -> (...) prediction in env units."""
        return symexp((F.softmax(logits, -1) * self.points).sum(-1))


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
