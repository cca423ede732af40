"""The WorldModel contract (docs/CONTRACTS.md, "World model") on vector and image spaces."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest
import torch
import torch.nn.functional as F

from dreamlab.worldmodel.config import preset
from dreamlab.worldmodel.model import WorldModel

CARTPOLE_OBS = gym.spaces.Box(
    np.array([-4.8, -np.inf, -0.42, -np.inf], np.float32),
    np.array([4.8, np.inf, 0.42, np.inf], np.float32),
    dtype=np.float32,
)


def _batch(B: int, T: int, obs_shape: tuple[int, ...], A: int, image: bool = False) -> dict[str, torch.Tensor]:
    obs = torch.randint(0, 256, (B, T, *obs_shape)).float() if image else torch.randn(B, T, *obs_shape)
    first = torch.zeros(B, T, dtype=torch.bool)
    first[:, 0] = True
    term = torch.zeros(B, T, dtype=torch.bool)
    term[0, -1] = True
    return {
        "obs": obs,
        "action": F.one_hot(torch.randint(0, A, (B, T)), A).float(),
        "reward": torch.randn(B, T),
        "feedback": torch.sign(torch.randn(B, T)),
        "is_first": first,
        "is_last": term.clone(),
        "is_terminal": term,
    }


@pytest.fixture(scope="module")
def model() -> WorldModel:
    torch.manual_seed(0)
    return WorldModel(preset("tiny", ensemble=3), CARTPOLE_OBS, gym.spaces.Discrete(2))


def test_state_shapes_and_heads(model: WorldModel):
    c = model.cfg
    B = 5
    s0 = model.initial(B)
    assert set(s0) == {"deter", "stoch", "logits"}
    assert s0["deter"].shape == (B, c.deter) and s0["stoch"].shape == (B, c.groups, c.classes)
    assert s0["deter"].abs().sum() == 0
    a = torch.eye(2)[torch.tensor([0, 1, 0, 1, 1])]
    s1 = model.img_step(s0, a)
    assert s1["stoch"].shape == (B, c.groups, c.classes)
    assert torch.all(s1["stoch"].detach().sum(-1) == 1)  # one-hot per group
    assert torch.allclose(s1["logits"].exp().sum(-1), torch.ones(B, c.groups), atol=1e-5)
    assert model.features(s1).shape == (B, model.feature_dim) and model.feature_dim == c.deter + c.groups * c.classes
    assert model.decode(s1).shape == (B, 4)
    assert model.reward(s1).shape == (B,)
    cont = model.cont(s1)
    assert cont.shape == (B,) and ((cont > 0) & (cont < 1)).all()
    d = model.disagreement(s1, a)
    assert d.shape == (B,) and (d >= 0).all() and (d > 0).any()
    # member picks a head: two heads give different prior logits from the same deter
    l0 = model.img_step(s1, a, member=0)["logits"]
    l1 = model.img_step(s1, a, member=1)["logits"]
    assert not torch.allclose(l0, l1)
    with pytest.raises(IndexError):
        model.img_step(s1, a, member=3)
    # states with extra leading dims (e.g. (B, T)) work too
    post, prior = model.observe(
        torch.randn(2, 6, 4), torch.eye(2)[torch.randint(0, 2, (2, 6))], torch.tensor([[True] + [False] * 5] * 2)
    )
    for st in (post, prior):
        assert st["deter"].shape == (2, 6, c.deter) and st["logits"].shape == (2, 6, c.groups, c.classes)
    assert model.decode(post).shape == (2, 6, 4) and model.reward(post).shape == (2, 6)
    assert model.img_step(post, torch.zeros(2, 6, 2))["deter"].shape == (2, 6, c.deter)
    assert model.reward_source == "env" and model.codec.dim == 2
    assert model.obs_space.shape == (4,) and model.action_space.n == 2


def test_observe_matches_obs_step_loop_and_resets_at_is_first(model: WorldModel):
    b = _batch(3, 10, (4,), 2)
    b["is_first"][1, 4] = True  # row 1 starts a new episode at t = 4
    with torch.no_grad():
        post, _ = model.observe(b["obs"], b["action"], b["is_first"], mode=True)
        state = model.initial(3)
        prev = torch.zeros(3, 2)
        for t in range(10):
            state = model.obs_step(state, prev, b["obs"][:, t], b["is_first"][:, t], mode=True)
            assert torch.allclose(state["deter"], post["deter"][:, t], atol=1e-5)
            assert torch.equal(state["stoch"], post["stoch"][:, t])
            prev = b["action"][:, t]
        # a reset row equals a fresh start from that step: the past before is_first is forgotten
        fresh, _ = model.observe(b["obs"][1:2, 4:], b["action"][1:2, 4:], b["is_first"][1:2, 4:], mode=True)
        assert torch.allclose(fresh["deter"], post["deter"][1:2, 4:], atol=1e-5)


def test_uses_previous_action_to_enter_step(model: WorldModel):
    b = _batch(1, 4, (4,), 2)
    with torch.no_grad():
        p1, _ = model.observe(b["obs"], b["action"], b["is_first"], mode=True)
        changed = b["action"].clone()
        changed[:, 2] = 1 - changed[:, 2]  # the action taken at t = 2 only affects t >= 3
        p2, _ = model.observe(b["obs"], changed, b["is_first"], mode=True)
    assert torch.allclose(p1["deter"][:, :3], p2["deter"][:, :3])
    assert not torch.allclose(p1["deter"][:, 3], p2["deter"][:, 3])


def test_loss_backward_and_reward_sources(model: WorldModel):
    b = _batch(2, 8, (4,), 2)
    total, m = model.loss(b)
    assert torch.isfinite(total)
    assert set(m) >= {"dec", "rew", "cont", "dyn", "rep"}
    assert m["dyn"] >= model.cfg.free_bits - 1e-6  # free bits clamp
    total.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert all(g is not None for g in grads[:5])
    assert model.rssm.prior.w1.grad.abs().sum() > 0  # prior heads trained by the KL
    model.zero_grad()
    for src, expected in (("env", b["reward"]), ("feedback", b["feedback"]), ("both", b["reward"] + b["feedback"])):
        model.cfg.reward_source = src
        assert torch.allclose(model.reward_target(b), expected)
    model.cfg.reward_source = "env"


def test_image_observations_use_the_cnn():
    space = gym.spaces.Box(0, 255, (64, 64, 3), np.uint8)
    m = WorldModel(preset("tiny"), space, gym.spaces.Discrete(3))
    b = _batch(2, 3, (64, 64, 3), 3, image=True)
    total, _ = m.loss(b)
    total.backward()
    assert torch.isfinite(total)
    post, _ = m.observe(b["obs"], b["action"], b["is_first"])
    img = m.decode(post)
    assert img.shape == (2, 3, 64, 64, 3) and img.min() >= 0 and img.max() <= 255
    assert m.encoder.net[0].weight.grad is not None  # the conv encoder is what learns


def test_block_diagonal_and_continuous_actions():
    space = gym.spaces.Box(-1, 1, (3,), np.float32)
    m = WorldModel(preset("tiny", gru_blocks=4), space, gym.spaces.Box(-2, 2, (1,), np.float32))
    b = _batch(2, 5, (3,), 1)
    b["action"] = torch.rand(2, 5, 1) * 4 - 2
    total, _ = m.loss(b)
    assert torch.isfinite(total)
    assert m.decode(m.img_step(m.initial(2), torch.zeros(2, 1))).shape == (2, 3)


def test_terminal_steps_weigh_more_in_the_continue_loss_and_loss_can_return_posteriors():
    from dreamlab.worldmodel.config import ConfigError

    torch.manual_seed(0)
    m = WorldModel(preset("tiny", heads_on_prior=False, cont_terminal_weight=5.0), CARTPOLE_OBS, gym.spaces.Discrete(2))
    b = _batch(2, 8, (4,), 2)
    _, metrics, post = m.loss(b, return_post=True)
    assert post["deter"].shape == (2, 8, m.cfg.deter)
    with torch.no_grad():
        logits = m.cont_head(m.features(post)).squeeze(-1)  # (B, T)
    bce = F.binary_cross_entropy_with_logits(logits, 1.0 - b["is_terminal"].float(), reduction="none")
    weight = 1.0 + 4.0 * b["is_terminal"].float()
    assert torch.allclose(metrics["cont"], (weight * bce).mean(), atol=1e-5)
    assert not torch.allclose(metrics["cont"], bce.mean(), atol=1e-5)  # the terminal step counts 5x
    with pytest.raises(ConfigError, match="cont_terminal_weight"):
        preset("tiny", cont_terminal_weight=0.0)
