"""Learning inside the dream transfers to the real env: SB3 PPO, and the Dreamer actor-critic."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from stable_baselines3 import PPO
from stable_baselines3.common.logger import Logger

from dreamlab.data.sampling import SequenceSampler
from dreamlab.imagination.agent import DreamerAgent
from dreamlab.imagination.dream_env import DreamEnv
from dreamlab.imagination.dreamer import DreamerConfig, DreamerLearner
from dreamlab.imagination.evaluate import evaluate_real

ENV_ID = "CartPole-v1"


class _SB3Policy:
    def __init__(self, model: PPO):
        self.model = model

    def reset(self, n: int) -> None:
        pass

    def act(self, obs: np.ndarray, is_first: np.ndarray | None = None) -> np.ndarray:
        return self.model.predict(obs, deterministic=True)[0]


@pytest.mark.slow
def test_sb3_ppo_trained_in_the_dream_beats_random_in_the_real_env(cartpole_setup: dict, random_return) -> None:
    dream = DreamEnv(
        cartpole_setup["wm"], cartpole_setup["episodes"], num_envs=1, max_steps=200, seed=0, start_points="first"
    )
    model = PPO(
        "MlpPolicy",
        dream.single_env(),
        n_steps=512,
        batch_size=128,
        n_epochs=5,
        learning_rate=1e-3,
        seed=0,
        device="cpu",
        policy_kwargs={"net_arch": [32, 32]},
    )
    model.set_logger(Logger(folder=None, output_formats=[]))  # no /tmp/SB3-* folder
    model.learn(total_timesteps=4096)
    real = evaluate_real(_SB3Policy(model), ENV_ID, episodes=10, seed=100).mean()
    rand = random_return(ENV_ID, 10, seed=100)
    assert real > 2.5 * rand, (real, rand)


@pytest.mark.slow
def test_dreamer_actor_critic_learns_in_the_dream(cartpole_setup: dict, random_return) -> None:
    torch.manual_seed(0)
    wm = cartpole_setup["wm"]
    learner = DreamerLearner(
        wm.feature_dim, wm.action_space, DreamerConfig(max_starts=256, hidden=64, actor_lr=1e-3, critic_lr=1e-3)
    )
    agent = DreamerAgent(wm, learner.actor)
    before = evaluate_real(agent, ENV_ID, episodes=10, seed=200).mean()
    sampler = SequenceSampler(cartpole_setup["episodes"], wm.codec, 32, seed=0)
    entropy = []
    for _ in range(60):
        starts, cont = learner.starts_from_batch(wm, sampler.sample(8))
        m = learner.train_step(wm, starts, cont)
        entropy.append(m["entropy"])
    after = evaluate_real(agent, ENV_ID, episodes=10, seed=200).mean()
    rand = random_return(ENV_ID, 10, seed=200)
    assert after > max(2.5 * rand, 1.5 * before), (before, after, rand)
    assert entropy[-1] < entropy[0]  # the policy became more decisive
