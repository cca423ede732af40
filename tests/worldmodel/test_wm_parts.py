"""Building blocks: symlog, two-hot, categorical sampling, block GRU, config presets."""

from __future__ import annotations

import pytest
import torch

from dreamlab.core.nn import TwoHot, symexp, symlog
from dreamlab.worldmodel.config import PRESETS, ConfigError, WorldModelConfig, preset
from dreamlab.worldmodel.dists import categorical_kl, sample_onehot, unimix
from dreamlab.worldmodel.rssm import BlockGRU


def test_symlog_symexp_inverse_and_compress():
    x = torch.tensor([-1e4, -3.0, -0.5, 0.0, 0.5, 3.0, 1e4])
    assert torch.allclose(symexp(symlog(x)), x, rtol=1e-5)
    assert symlog(torch.tensor(1e4)).item() < 10  # compresses large magnitudes
    assert torch.equal(torch.sign(symlog(x)), torch.sign(x))


def test_twohot_encodes_exactly_and_loss_minimum_is_the_value():
    th = TwoHot(bins=41, limit=5.0)
    x = torch.tensor([-7.3, -1.0, 0.0, 0.25, 2.0, 40.0])
    enc = th.encode(x)
    assert enc.shape == (6, 41)
    assert torch.allclose(enc.sum(-1), torch.ones(6))
    assert (enc > 0).sum(-1).le(2).all()  # at most two neighbouring bins
    # the encoding's expected value in symlog space is symlog(x): decoding the weights recovers x
    assert torch.allclose(symexp((enc * th.points).sum(-1)), x, rtol=1e-4, atol=1e-5)
    # training logits on the loss makes the mean prediction approach the target
    logits = torch.zeros(6, 41, requires_grad=True)
    opt = torch.optim.Adam([logits], lr=0.5)
    for _ in range(120):
        opt.zero_grad()
        th.loss(logits, x).mean().backward()
        opt.step()
    assert torch.allclose(th.mean(logits.detach()), x, rtol=0.05, atol=0.05)


def test_categorical_sampling_frequencies_unimix_and_straight_through():
    probs = unimix(torch.softmax(torch.tensor([[4.0, 0.0, -30.0]]), -1), 0.01).expand(20000, 3)
    assert probs.min() >= 0.01 / 3 - 1e-7  # unimix keeps every class possible
    torch.manual_seed(0)
    s = sample_onehot(probs)
    assert torch.all(s.detach().sum(-1) == 1)
    freq = s.detach().mean(0)
    assert torch.allclose(freq, probs[0], atol=0.015)
    # straight-through: gradient flows to the probabilities
    p = probs[:1].clone().requires_grad_(True)
    (sample_onehot(p) * torch.tensor([1.0, 2.0, 3.0])).sum().backward()
    assert torch.allclose(p.grad, torch.tensor([[1.0, 2.0, 3.0]]))
    assert torch.equal(sample_onehot(probs[:1], mode=True).detach(), torch.tensor([[1.0, 0.0, 0.0]]))


def test_kl_is_zero_for_equal_and_positive_otherwise():
    a = torch.log_softmax(torch.randn(5, 4, 3), -1)
    b = torch.log_softmax(torch.randn(5, 4, 3), -1)
    assert torch.allclose(categorical_kl(a, a), torch.zeros(5), atol=1e-6)
    assert (categorical_kl(a, b) > 0).all()


def test_block_gru_is_block_diagonal():
    gru = BlockGRU(inp=6, deter=8, blocks=2)
    x = torch.randn(3, 6)
    h = torch.randn(3, 8, requires_grad=True)
    out = gru(x, h)
    assert out.shape == (3, 8)
    grad = torch.autograd.grad(out[:, :4].sum(), h)[0]  # block 0 output
    assert grad[:, 4:].abs().max() == 0  # does not see block 1's state
    assert grad[:, :4].abs().max() > 0
    dense = BlockGRU(inp=6, deter=8, blocks=1)
    grad = torch.autograd.grad(dense(x, h)[:, :4].sum(), h)[0]
    assert grad[:, 4:].abs().max() > 0


def test_presets_and_config_errors():
    for name in PRESETS:
        cfg = preset(name)
        assert isinstance(cfg, WorldModelConfig)
    assert preset("small") == WorldModelConfig().validate()  # small is the default
    assert preset("tiny", deter=48).deter == 48
    with pytest.raises(ConfigError, match="gru_blocks"):
        preset("tiny", gru_blocks=5)
    with pytest.raises(ConfigError, match="reward_source"):
        preset("tiny", reward_source="thumbs")
    with pytest.raises(ConfigError, match="unknown preset"):
        preset("huge")
    with pytest.raises(ConfigError, match="unknown world-model config key"):
        WorldModelConfig.from_dict({"deter": 4, "depth": 3})
