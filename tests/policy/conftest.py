"""Fixtures for the policy tests: a tiny untrained GPT-2 student with the char tokenizer, small
logs of real CartPole episodes, and fixed-rule teacher policies (test fixtures, not mocks)."""

from __future__ import annotations

from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from dreamlab.data.episodes import Episode
from dreamlab.data.store import EpisodeStore
from dreamlab.policy.base_llm import BaseLLMConfig, build_model, char_tokenizer
from dreamlab.policy.llm import ActionVocab, LLMPolicy
from dreamlab.policy.render import get_renderer

torch.set_num_threads(1)

TINY = BaseLLMConfig(
    n_layer=1,
    n_embd=32,
    n_head=2,
    n_positions=256,
    block_size=64,
    batch_size=16,
    steps=120,
    lr=5e-3,
    warmup=5,
    progress=False,
)


class ConstantProbs:
    """A fixed-rule teacher: the same action distribution at every observation."""

    def __init__(self, probs: list[float]):
        self.p = np.asarray(probs, np.float64)

    def reset(self, n: int) -> None:
        pass

    def action_probs(self, obs: np.ndarray, is_first: np.ndarray | None = None) -> np.ndarray:
        return np.tile(self.p, (len(obs), 1))

    def act(self, obs: np.ndarray, is_first: np.ndarray | None = None) -> np.ndarray:
        return np.full(len(obs), int(self.p.argmax()), np.int64)


def make_student(
    env_id: str = "CartPole-v1", seed: int = 0, temperature: float = 0.0, strings: list[str] | None = None
) -> LLMPolicy:
    tok = char_tokenizer()
    cfg = BaseLLMConfig(**{**TINY.__dict__, "seed": seed})
    model = build_model(cfg, len(tok), tok.pad_token_id, tok.eos_token_id).eval()
    space = gym.make(env_id).action_space
    vocab = ActionVocab.for_space(space, env_id, strings)
    return LLMPolicy(model, tok, get_renderer(env_id), vocab, temperature=temperature, seed=seed, renderer_name=env_id)


@pytest.fixture
def student() -> LLMPolicy:
    return make_student()


@pytest.fixture(scope="session")
def cartpole_logs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """12 real CartPole episodes from a fixed rule (push toward the side the pole falls)."""
    root = tmp_path_factory.mktemp("logs") / "cartpole"
    env = gym.make("CartPole-v1")
    store = EpisodeStore.create(root, "CartPole-v1", env.observation_space, env.action_space)
    rng = np.random.default_rng(0)
    for e in range(12):
        o, _ = env.reset(seed=e)
        obs, acts, rews = [o], [], []
        while True:
            a = int(o[2] + 0.5 * o[3] > 0) if rng.random() > 0.2 else int(rng.integers(2))
            o, r, term, trunc, _ = env.step(a)
            obs.append(o), acts.append(a), rews.append(r)
            if term or trunc or len(acts) >= 120:
                break
        store.add(Episode.from_transitions(obs, acts, rews, term, action_space=env.action_space))
    return root


@pytest.fixture(scope="session")
def base_dir(cartpole_logs: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A tiny base LLM pre-trained (briefly) on the CartPole logs: it writes valid action strings."""
    from dreamlab.policy.base_llm import make_base_llm

    out = tmp_path_factory.mktemp("base") / "llm"
    make_base_llm(cartpole_logs, out, TINY)
    return out


def load_student(base: Path, temperature: float = 0.0, seed: int = 0) -> LLMPolicy:
    return LLMPolicy.from_pretrained(base, temperature=temperature, seed=seed)
