"""Numerics every network shares: symlog/symexp, two-hot over symlog-spaced bins, the MLP.

DreamerV3's building blocks, written once: the world model's heads and the actor-critic both
use them, so a change to, say, the two-hot encoding changes both together.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import nn


def symlog(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.log1p(torch.abs(x))


def symexp(x: torch.Tensor) -> torch.Tensor:
    return torch.sign(x) * torch.expm1(torch.abs(x))


def twohot(x: torch.Tensor, bins: torch.Tensor) -> torch.Tensor:
    """Two-hot encoding of x (...) over sorted bins (K,) -> (..., K); mass split by distance.

    Values outside the bins go wholly to the nearest end bin. Encoding then averaging the bins
    recovers x exactly for x inside the range.
    """
    x = x.detach().clamp(bins[0], bins[-1])
    k = bins.shape[0]
    above = torch.searchsorted(bins, x.contiguous(), right=False).clamp(1, k - 1)  # index of upper bin
    below = above - 1
    lo, hi = bins[below], bins[above]
    w_hi = ((x - lo) / (hi - lo)).clamp(0, 1)
    out = torch.zeros(x.shape + (k,), dtype=x.dtype, device=x.device)
    out.scatter_(-1, below.unsqueeze(-1), (1 - w_hi).unsqueeze(-1))
    out.scatter_add_(-1, above.unsqueeze(-1), w_hi.unsqueeze(-1))
    return out


class TwoHot(nn.Module):
    """A scalar as a categorical over ``bins`` values, evenly spaced in symlog space.

    ``loss(logits, x)`` is the cross-entropy against the two-hot encoding of ``symlog(x)``;
    ``mean(logits)`` is ``symexp(sum(p * bins))``: the expectation is taken in symlog space, as in
    DreamerV3 (an expectation over ``symexp(bins)`` would let the tiny mass left on the outer
    bins, worth up to ``symexp(limit)``, swamp the prediction).
    """

    points: torch.Tensor

    def __init__(self, bins: int = 255, limit: float = 20.0):
        super().__init__()
        self.register_buffer("points", torch.linspace(-limit, limit, bins), persistent=False)  # symlog space

    @property
    def bins(self) -> int:
        return int(self.points.shape[0])

    def encode(self, x: torch.Tensor) -> torch.Tensor:
        """(...) values -> (..., bins) two-hot weights (in symlog space, sums to one)."""
        return twohot(symlog(x), self.points)

    def loss(self, logits: torch.Tensor, x: torch.Tensor) -> torch.Tensor:
        """(..., bins) logits, (...) targets -> (...) cross-entropy."""
        return -(self.encode(x) * F.log_softmax(logits, -1)).sum(-1)

    def mean(self, logits: torch.Tensor) -> torch.Tensor:
        """(..., bins) -> (...) prediction in env units."""
        return symexp((F.softmax(logits, -1) * self.points).sum(-1))


def dense(inp: int, out: int, bias: bool = False, norm_eps: float = 1e-3) -> nn.Sequential:
    """Linear -> LayerNorm -> SiLU (DreamerV3's layer: no bias, eps 1e-3)."""
    return nn.Sequential(nn.Linear(inp, out, bias=bias), nn.LayerNorm(out, eps=norm_eps), nn.SiLU())


class MLP(nn.Module):
    """``layers`` normalised hidden layers, then an optional linear output (``out=None``: none).

    ``bias``/``norm_eps`` pick the hidden layers' form: the world model uses DreamerV3's
    (no bias, eps 1e-3), the actor-critic a biased Linear with LayerNorm's default eps.
    ``zero_out`` starts the output layer at zero (value and reward heads predict 0 at first).
    """

    def __init__(
        self,
        inp: int,
        hidden: int,
        layers: int,
        out: int | None = None,
        zero_out: bool = False,
        bias: bool = False,
        norm_eps: float = 1e-3,
    ):
        super().__init__()
        mods: list[nn.Module] = []
        width = inp
        for _ in range(layers):
            mods.append(dense(width, hidden, bias, norm_eps))
            width = hidden
        self.body = nn.Sequential(*mods)
        self.layers = layers
        self.out_dim = width if out is None else out
        self.head: nn.Module = nn.Identity()
        if out is not None:
            lin = nn.Linear(width, out)
            if zero_out:
                nn.init.zeros_(lin.weight)
                nn.init.zeros_(lin.bias)
            self.head = lin

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))

    def _load_from_state_dict(self, state_dict: dict[str, Any], prefix: str, *args: Any, **kwargs: Any) -> None:
        # Weights saved before the MLP was shared: a flat nn.Sequential (Linear, LayerNorm, SiLU)*L,
        # Linear, keyed "<i>.weight". Rename them in place to body.<layer>.<j> / head.
        flat = [k for k in state_dict if k.startswith(prefix) and k[len(prefix) :].split(".")[0].isdigit()]
        for key in flat:
            idx, _, rest = key[len(prefix) :].partition(".")
            i = int(idx)
            new = f"head.{rest}" if i == 3 * self.layers else f"body.{i // 3}.{i % 3}.{rest}"
            state_dict[prefix + new] = state_dict.pop(key)
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
