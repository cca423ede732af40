"""Token-level distillation losses over the full vocabulary, averaged over labelled tokens.

Shapes: student ``logits (B, L, V)``, teacher ``log_t (B, L, V)`` (log-probabilities), sampled
``tokens (B, L)`` and ``mask (B, L)`` bool. Each loss returns a scalar mean over masked tokens.

* ``reverse_kl``  KL(p_s || p_t) = sum_v p_s (log p_s - log p_t)   (mode seeking; OPSD default)
* ``forward_kl``  KL(p_t || p_s) = sum_v p_t (log p_t - log p_s)   (mean seeking)
* ``jsd``         generalised JSD(beta) = beta KL(p_t || m) + (1 - beta) KL(p_s || m) with
                  m = beta p_t + (1 - beta) p_s (GKD's form)
* ``sampled``     the single-sample reverse-KL estimator on the token the student sampled:
                  ``sg(log p_s(y) - log p_t(y)) * log p_s(y)``; its gradient is an unbiased
                  estimate of the reverse KL's gradient when y ~ p_s (on-policy)
* ``cross_entropy`` -log p_s(y) on the given tokens (the SFT baseline)
"""

from __future__ import annotations

import math

import torch

LOSSES = ("reverse_kl", "forward_kl", "jsd", "sampled")


def _masked_mean(per_tok: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    m = mask.to(per_tok.dtype)
    return (per_tok * m).sum() / m.sum().clamp_min(1.0)


def reverse_kl(logits: torch.Tensor, log_t: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    log_s = torch.log_softmax(logits.float() / temperature, -1)
    return _masked_mean((log_s.exp() * (log_s - log_t)).sum(-1), mask)


def forward_kl(logits: torch.Tensor, log_t: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0) -> torch.Tensor:
    log_s = torch.log_softmax(logits.float() / temperature, -1)
    return _masked_mean((log_t.exp() * (log_t - log_s)).sum(-1), mask)


def generalised_jsd(
    logits: torch.Tensor, log_t: torch.Tensor, mask: torch.Tensor, beta: float = 0.5, temperature: float = 1.0
) -> torch.Tensor:
    if not 0.0 < beta < 1.0:
        raise ValueError(f"jsd beta must lie strictly between 0 and 1, got {beta}")
    log_s = torch.log_softmax(logits.float() / temperature, -1)
    log_m = torch.logsumexp(torch.stack([log_t + math.log(beta), log_s + math.log(1 - beta)]), 0)
    kl_t = (log_t.exp() * (log_t - log_m)).sum(-1)
    kl_s = (log_s.exp() * (log_s - log_m)).sum(-1)
    return _masked_mean(beta * kl_t + (1 - beta) * kl_s, mask)


def sampled_token(
    logits: torch.Tensor, log_t: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor, temperature: float = 1.0
) -> torch.Tensor:
    log_s = torch.log_softmax(logits.float() / temperature, -1)
    ls = log_s.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, L)
    lt = log_t.gather(-1, tokens.unsqueeze(-1)).squeeze(-1)
    return _masked_mean((ls.detach() - lt) * ls, mask)


def cross_entropy(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    log_s = torch.log_softmax(logits.float(), -1)
    return _masked_mean(-log_s.gather(-1, tokens.unsqueeze(-1)).squeeze(-1), mask)


def distill_loss(
    name: str,
    logits: torch.Tensor,
    log_t: torch.Tensor,
    tokens: torch.Tensor,
    mask: torch.Tensor,
    beta: float = 0.5,
    temperature: float = 1.0,
) -> torch.Tensor:
    if name == "reverse_kl":
        return reverse_kl(logits, log_t, mask, temperature)
    if name == "forward_kl":
        return forward_kl(logits, log_t, mask, temperature)
    if name == "jsd":
        return generalised_jsd(logits, log_t, mask, beta, temperature)
    if name == "sampled":
        return sampled_token(logits, log_t, tokens, mask, temperature)
    raise ValueError(f"loss {name!r}: expected one of {LOSSES}")
