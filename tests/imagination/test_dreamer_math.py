"""The actor-critic's maths: lambda-returns, two-hot critic, percentile normaliser, actor heads."""

from __future__ import annotations

import gymnasium as gym
import numpy as np
import torch

from dreamlab.core.nn import symexp, symlog, twohot
from dreamlab.imagination.dreamer import DreamerConfig, PercentileNormaliser, lambda_returns
from dreamlab.policy.actor_critic import Actor, ActorCriticNetConfig, Critic


def test_lambda_returns_match_the_recursion_by_hand():
    gamma, lam = 0.9, 0.5
    reward = torch.tensor([[1.0], [2.0], [3.0]])  # (H=3, N=1): r_1..r_3
    cont = torch.tensor([[1.0], [0.5], [1.0]])
    value = torch.tensor([[10.0], [20.0], [30.0], [40.0]])  # v_0..v_3
    r3 = 40.0
    r2 = 3.0 + gamma * 1.0 * ((1 - lam) * 40.0 + lam * r3)
    r1 = 2.0 + gamma * 0.5 * ((1 - lam) * 30.0 + lam * r2)
    r0 = 1.0 + gamma * 1.0 * ((1 - lam) * 20.0 + lam * r1)
    out = lambda_returns(reward, cont, value, gamma, lam)
    assert torch.allclose(out[:, 0], torch.tensor([r0, r1, r2]))


def test_lambda_one_is_discounted_monte_carlo_and_zero_is_td():
    reward, cont = torch.ones(4, 2), torch.ones(4, 2)
    value = torch.zeros(5, 2)
    mc = lambda_returns(reward, cont, value, 0.5, 1.0)
    assert torch.allclose(mc[0], torch.full((2,), 1 + 0.5 + 0.25 + 0.125))
    td = lambda_returns(reward, cont, torch.full((5, 2), 7.0), 0.5, 0.0)
    assert torch.allclose(td, torch.full((4, 2), 1 + 0.5 * 7.0))


def test_default_discount_comes_from_an_effective_horizon():
    assert abs(DreamerConfig().gamma - (1 - 1 / 333)) < 1e-12
    assert abs(DreamerConfig(discount_horizon=100).gamma - 0.99) < 1e-12


def test_twohot_round_trips_and_puts_mass_on_two_neighbours():
    bins = torch.linspace(-20, 20, 255)
    x = torch.tensor([-3.3, 0.0, 0.01, 7.77, 19.9])
    enc = twohot(x, bins)
    assert torch.allclose(enc.sum(-1), torch.ones(5))
    assert ((enc > 0).sum(-1) <= 2).all()
    assert torch.allclose((enc * bins).sum(-1), x, atol=1e-5)
    assert torch.allclose(twohot(torch.tensor([99.0]), bins)[0, -1], torch.tensor(1.0))


def test_critic_learns_a_target_value_in_symexp_space():
    torch.manual_seed(0)
    critic = Critic(3, ActorCriticNetConfig(hidden=32))
    feat = torch.randn(64, 3)
    assert torch.allclose(critic.value(feat), torch.zeros(64), atol=1e-5)  # zero-initialised output
    target = torch.full((64,), 250.0)
    opt = torch.optim.Adam(critic.parameters(), lr=1e-2)
    for _ in range(200):
        loss = critic.loss(critic.logits(feat), target).mean()
        opt.zero_grad()
        loss.backward()
        opt.step()
    assert abs(float(critic.value(feat).mean()) - 250.0) < 10.0
    assert torch.allclose(symexp(symlog(torch.tensor([-5.0, 250.0]))), torch.tensor([-5.0, 250.0]))


def test_percentile_normaliser_tracks_the_5_95_range_with_a_floor_of_one():
    norm = PercentileNormaliser(5, 95, decay=0.0)
    x = torch.arange(0, 1001, dtype=torch.float32)
    norm.update(x)
    assert abs(float(norm.scale) - 900.0) < 1.0
    norm.update(torch.full((100,), 0.3))
    assert float(norm.scale) == 1.0  # tiny returns are not blown up
    ema = PercentileNormaliser(5, 95, decay=0.5)
    ema.update(x)
    ema.update(x * 0)
    assert abs(float(ema.high - ema.low) - 450.0) < 1.0


def test_discrete_actor_mixes_in_one_percent_uniform_and_scores_its_samples():
    torch.manual_seed(0)
    actor = Actor(4, gym.spaces.Discrete(3))
    with torch.no_grad():
        actor.net.head.bias.copy_(torch.tensor([100.0, 0.0, 0.0]))
    p = actor.probs(torch.zeros(2, 4))
    assert torch.all(p >= 0.01 / 3 - 1e-7) and torch.allclose(p.sum(-1), torch.ones(2))
    act, logp, _ = actor.sample(torch.zeros(5, 4))
    assert torch.allclose(logp, actor.log_prob(torch.zeros(5, 4), act))


def test_continuous_actor_is_bounded_and_reparameterised():
    torch.manual_seed(0)
    space = gym.spaces.Box(np.array([-2.0], np.float32), np.array([2.0], np.float32))
    actor = Actor(4, space)
    feat = torch.randn(256, 4, requires_grad=True)
    act, logp, ent = actor.sample(feat)
    assert act.shape == (256, 1) and float(act.min()) >= -2.0 and float(act.max()) <= 2.0
    act.sum().backward()
    assert feat.grad is not None and float(feat.grad.abs().sum()) > 0  # gradient flows through the sample
    assert torch.allclose(logp, actor.log_prob(feat.detach(), act.detach()), atol=1e-3)


def test_continuous_update_backpropagates_through_the_frozen_world_model():
    from dreamlab.imagination.dreamer import DreamerLearner
    from dreamlab.worldmodel.config import preset
    from dreamlab.worldmodel.model import WorldModel

    torch.manual_seed(0)
    env = gym.make("Pendulum-v1")
    wm = WorldModel(preset("tiny"), env.observation_space, env.action_space).eval()
    before = {k: v.clone() for k, v in wm.state_dict().items()}
    learner = DreamerLearner(wm.feature_dim, wm.action_space, DreamerConfig(hidden=32, horizon=5))
    actor_before = [p.clone() for p in learner.actor.parameters()]
    m = learner.train_step(wm, wm.initial(16), torch.ones(16))
    assert m["actor_grad"] > 0 and np.isfinite(m["actor_loss"])
    assert any(not torch.equal(a, b) for a, b in zip(actor_before, learner.actor.parameters()))
    assert all(torch.equal(before[k], v) for k, v in wm.state_dict().items())  # the model did not move
    assert all(p.requires_grad for p in wm.parameters())  # and is trainable again afterwards


def test_disagreement_penalty_lowers_the_imagined_reward_by_lambda_times_disagreement():
    from dreamlab.imagination.dreamer import DreamerLearner
    from dreamlab.worldmodel.config import preset
    from dreamlab.worldmodel.model import WorldModel

    env = gym.make("CartPole-v1")
    wm = WorldModel(preset("tiny"), env.observation_space, env.action_space).eval()
    start = wm.initial(8)
    start["stoch"] = torch.nn.functional.one_hot(torch.randint(0, 4, start["stoch"].shape[:-1]), 4).float()
    out = {}
    for lam in (0.0, 2.0):
        torch.manual_seed(0)
        learner = DreamerLearner(wm.feature_dim, wm.action_space, DreamerConfig(hidden=32, horizon=4, penalty=lam))
        torch.manual_seed(1)
        out[lam] = learner.imagine(wm, start, grad=False)
    assert "disagreement" not in out[0.0]
    dis = out[2.0]["disagreement"]
    assert dis.shape == (4, 8) and bool((dis > 0).any())  # untrained heads disagree
    torch.testing.assert_close(out[2.0]["reward"], out[0.0]["reward"])  # same rollout
    metrics = {}
    for lam in (0.0, 2.0):
        torch.manual_seed(0)
        learner = DreamerLearner(wm.feature_dim, wm.action_space, DreamerConfig(hidden=32, horizon=4, penalty=lam))
        torch.manual_seed(2)
        metrics[lam] = learner.train_step(wm, start, torch.ones(8))
    m = metrics[2.0]
    assert m["disagreement"] > 0 and np.isfinite(m["actor_loss"])
    assert abs(m["reward"] - (metrics[0.0]["reward"] - 2.0 * m["disagreement"])) < 1e-5  # what the critic sees


def test_intrinsic_bonus_is_scale_free_disagreement_and_resumes():
    """Plan2Explore-style bonus: intrinsic x disagreement / its running mean, so its mean over the
    first batch is exactly ``intrinsic``; the running mean is saved with the learner and reloaded."""
    from dreamlab.imagination.dreamer import DreamerLearner
    from dreamlab.worldmodel.config import preset
    from dreamlab.worldmodel.model import WorldModel

    env = gym.make("CartPole-v1")
    wm = WorldModel(preset("tiny"), env.observation_space, env.action_space).eval()
    start = wm.initial(8)
    start["stoch"] = torch.nn.functional.one_hot(torch.randint(0, 4, start["stoch"].shape[:-1]), 4).float()
    plain = DreamerLearner(wm.feature_dim, wm.action_space, DreamerConfig(hidden=32, horizon=4))
    assert "dis_mean" not in plain.state_dict()  # old checkpoints load unchanged
    torch.manual_seed(0)
    learner = DreamerLearner(wm.feature_dim, wm.action_space, DreamerConfig(hidden=32, horizon=4, intrinsic=0.5))
    m = learner.train_step(wm, start, torch.ones(8))
    assert abs(m["intrinsic"] - 0.5) < 1e-5 and m["disagreement"] > 0
    assert abs(float(learner.dis_mean) - m["disagreement"]) < 1e-6
    m2 = learner.train_step(wm, start, torch.ones(8))
    assert m2["intrinsic"] > 0 and float(learner.dis_mean) > 0
    again = DreamerLearner(wm.feature_dim, wm.action_space, DreamerConfig(hidden=32, horizon=4, intrinsic=0.5))
    again.load_full_state(learner.full_state())
    assert float(again.dis_mean) == float(learner.dis_mean)
