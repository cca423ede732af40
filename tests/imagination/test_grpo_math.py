"""GRPO arithmetic: group advantages, Dr.GRPO, DAPO clip-higher, k3 KL, aggregation."""

from __future__ import annotations

import math

import pytest
import torch

from dreamlab.imagination.grpo_math import (
    GRPOConfigError,
    aggregate,
    clipped_surrogate,
    group_advantages,
    grpo_loss,
    k3_kl,
)


def test_group_advantages_normalise_within_each_group_and_flag_flat_groups() -> None:
    scores = torch.tensor([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0], [0.0, 0.0, 0.0, 3.0]])
    adv, keep = group_advantages(scores)
    assert keep.tolist() == [True, False, True]
    torch.testing.assert_close(adv[0], torch.tensor([1.0, -1.0, -1.0, 1.0]), atol=1e-5, rtol=0)
    torch.testing.assert_close(adv[1], torch.zeros(4))
    # group 3: mean 0.75, population std sqrt(0.75^2*3/4 + 2.25^2/4) = 1.299
    torch.testing.assert_close(adv[2], (scores[2] - 0.75) / math.sqrt(1.6875), atol=1e-5, rtol=0)
    assert torch.allclose(adv.mean(-1), torch.zeros(3), atol=1e-6)
    # Dr.GRPO: no std, only the group mean is removed -> scale of the raw scores survives
    adv_dr, keep_dr = group_advantages(scores, scale_std=False)
    torch.testing.assert_close(adv_dr, scores - scores.mean(-1, keepdim=True))
    assert keep_dr.tolist() == keep.tolist()
    with pytest.raises(GRPOConfigError, match="group_size"):
        group_advantages(torch.zeros(3, 1))


def _grad_of(ratio: float, adv: float, eps_low: float, eps_high: float) -> tuple[float, float]:
    logp = torch.tensor([[math.log(ratio)]], requires_grad=True)
    loss, _ = clipped_surrogate(logp, torch.zeros(1, 1), torch.tensor([adv]), eps_low, eps_high)
    loss.sum().backward()
    return float(loss.detach()), float(logp.grad)


def test_clip_higher_is_asymmetric_like_dapo() -> None:
    # a ratio of 1.25 with a positive advantage is inside DAPO's upper clip (1.28) but outside PPO's (1.2)
    loss, grad = _grad_of(1.25, 1.0, 0.2, 0.28)
    assert loss == pytest.approx(-1.25) and grad == pytest.approx(-1.25)
    loss, grad = _grad_of(1.25, 1.0, 0.2, 0.2)
    assert loss == pytest.approx(-1.2) and grad == 0.0
    # beyond the upper clip the gradient vanishes for positive advantages
    assert _grad_of(1.4, 1.0, 0.2, 0.28)[1] == 0.0
    # below 1 - eps_low the gradient vanishes for negative advantages only
    assert _grad_of(0.7, -1.0, 0.2, 0.28)[1] == 0.0
    loss, grad = _grad_of(0.7, 1.0, 0.2, 0.28)
    assert loss == pytest.approx(-0.7) and grad == pytest.approx(-0.7)
    # the pessimistic bound: a large ratio with a negative advantage is never clipped
    loss, grad = _grad_of(2.0, -1.0, 0.2, 0.28)
    assert loss == pytest.approx(2.0) and grad == pytest.approx(2.0)


def test_k3_is_an_unbiased_positive_kl_estimate() -> None:
    torch.manual_seed(0)
    p = torch.tensor([0.6, 0.3, 0.1])
    q = torch.tensor([0.2, 0.5, 0.3])
    exact = float((p * (p / q).log()).sum())
    idx = torch.multinomial(p, 200_000, replacement=True)
    est = k3_kl(p.log()[idx], q.log()[idx])
    assert (est >= 0).all()
    assert float(est.mean()) == pytest.approx(exact, rel=0.03)
    assert float(k3_kl(torch.tensor([-1.0]), torch.tensor([-1.0]))) == 0.0


def test_aggregations_weigh_steps_differently() -> None:
    values = torch.tensor([[1.0, 1.0, 1.0, 1.0], [3.0, 0.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 0, 0]], dtype=torch.bool)
    assert float(aggregate(values, mask, "token_mean")) == pytest.approx(7 / 5)
    assert float(aggregate(values, mask, "seq_mean")) == pytest.approx((1 + 3) / 2)
    assert float(aggregate(values, mask, "constant")) == pytest.approx(7 / 8)
    with pytest.raises(GRPOConfigError, match="loss_agg"):
        aggregate(values, mask, "mean")


def test_one_gradient_step_raises_good_and_lowers_bad_actions_and_kl_pulls_to_reference() -> None:
    torch.manual_seed(0)
    logits = torch.zeros(1, 3, requires_grad=True)
    actions = torch.tensor([[0, 1, 2, 0]])  # four one-step trajectories as (N=4, T=1)
    adv = torch.tensor([1.0, -1.0, -1.0, 1.0])

    def logp_of(lg: torch.Tensor) -> torch.Tensor:
        return torch.log_softmax(lg, -1)[0, actions[0]].reshape(4, 1)

    old = logp_of(logits).detach()
    loss, info = grpo_loss(logp_of(logits), old, adv, torch.ones(4, 1, dtype=torch.bool))
    loss.backward()
    assert info.ratio_mean == pytest.approx(1.0) and info.clip_frac == 0.0
    assert logits.grad[0, 0] < 0 < logits.grad[0, 1]  # descent raises action 0, lowers 1 and 2
    # with zero advantages only the KL term acts: it pulls the policy towards the reference
    ref = torch.log_softmax(torch.tensor([[2.0, 0.0, 0.0]]), -1)[0, actions[0]].reshape(4, 1)
    lg = torch.zeros(1, 3, requires_grad=True)
    loss, info = grpo_loss(
        logp_of(lg), logp_of(lg).detach(), torch.zeros(4), torch.ones(4, 1, dtype=torch.bool), ref_logp=ref, kl_coef=1.0
    )
    loss.backward()
    assert info.kl > 0
    assert lg.grad[0, 0] < 0  # gradient descent increases the logit the reference prefers
