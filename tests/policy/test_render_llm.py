from __future__ import annotations

import gymnasium as gym
import numpy as np
import pytest

from dreamlab.policy.llm import ActionVocab, LLMPolicy, LLMPolicyError, evaluate
from dreamlab.policy.render import RendererError, get_renderer, render_batch
from tests.policy.conftest import make_student


def shout(obs: np.ndarray) -> str:  # a user renderer, resolved by import path
    return "OBS " + " ".join(f"{v:.1f}" for v in obs)


@pytest.mark.parametrize(
    "env_id,dim",
    [("CartPole-v1", 4), ("Acrobot-v1", 6), ("Pendulum-v1", 3), ("MountainCar-v0", 2), ("MountainCarContinuous-v0", 2)],
)
def test_builtin_renderers_are_fixed_width(env_id: str, dim: int) -> None:
    r = get_renderer(env_id)
    obs = np.random.default_rng(0).uniform(-9, 9, size=(20, dim))  # |values| < 10
    lines = render_batch(r, obs)
    assert len({len(line) for line in lines}) == 1, lines[:3]  # constant width: signs always written
    assert len(lines[0].split()) == dim
    assert "-0.00" not in r(np.full(dim, -1e-9))


def test_user_renderer_and_errors() -> None:
    assert get_renderer("tests.policy.test_render_llm:shout")(np.array([1.0, 2.0])) == "OBS 1.0 2.0"
    with pytest.raises(RendererError, match="no callable"):
        get_renderer("tests.policy.test_render_llm:nothing")
    with pytest.raises(RendererError, match="built-in"):
        get_renderer("Humanoid-v4")
    with pytest.raises(RendererError, match="expected an observation of 4"):
        get_renderer("CartPole-v1")(np.zeros(3))


def test_box_vocab_bins_and_nearest() -> None:
    space = gym.spaces.Box(-2.0, 2.0, (1,), np.float32)
    v = ActionVocab.for_space(space, bins=9)
    assert v.strings[0] == "-2.00" and v.strings[4] == "+0.00" and v.size == 9
    assert np.allclose(v.to_env(np.array([0, 8])).ravel(), [-2.0, 2.0])
    assert v.from_env(np.array([[0.6], [-1.9]])).tolist() == [5, 0]
    with pytest.raises(LLMPolicyError, match="1024"):
        ActionVocab.for_space(gym.spaces.Box(-1, 1, (4,), np.float32), bins=9)


def test_prefix_free_check() -> None:
    with pytest.raises(LLMPolicyError, match="prefix-free"):
        make_student(strings=["a", "a\n"])  # "a\n" is a prefix of "a\n\n"


def test_one_batched_forward_per_step_and_valid_actions() -> None:
    st = make_student("Pendulum-v1", temperature=1.0)
    calls = []
    st.model.register_forward_hook(lambda m, i, o: calls.append(1))
    env = gym.make("Pendulum-v1")
    obs = np.stack([env.observation_space.sample() for _ in range(5)])
    acts = st.act(obs)
    # batched passes (shared prefix, the 5 prompts, the 45 completions), however many observations
    assert 1 <= len(calls) <= 3
    n = len(calls)
    st.act(np.stack([env.observation_space.sample() for _ in range(40)]))
    assert 1 <= len(calls) - n <= 3  # the shared prefix's cache is kept while the weights are unchanged
    assert acts.shape == (5, 1) and all(env.action_space.contains(a) for a in acts)
    p = st.action_probs(obs)
    assert p.shape == (5, 9) and np.allclose(p.sum(-1), 1.0)


def test_greedy_matches_argmax_and_sampling_follows_probs() -> None:
    st = make_student(temperature=0.0)
    obs = np.zeros((400, 4), np.float32)
    p = st.action_probs(obs[:1])[0]
    assert (st.act(obs[:3]) == p.argmax()).all()
    st.temperature = 1.0
    freq = np.mean(st.act(obs) == 1)
    assert abs(freq - p[1]) < 0.08


def test_round_trip_save_load_acts_in_real_env(tmp_path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    st = make_student()
    st.save_pretrained(tmp_path / "m", env_id="CartPole-v1")
    assert (tmp_path / "m" / "model.safetensors").exists()
    model = AutoModelForCausalLM.from_pretrained(tmp_path / "m")
    tok = AutoTokenizer.from_pretrained(tmp_path / "m")
    plain = LLMPolicy(model.eval(), tok, get_renderer("CartPole-v1"), st.vocab)
    obs = np.random.default_rng(0).normal(size=(6, 4)).astype(np.float32) * 0.1
    assert np.allclose(plain.action_probs(obs), st.action_probs(obs), atol=1e-5)
    loaded = LLMPolicy.from_pretrained(tmp_path / "m")  # renderer + vocab from dreamlab_policy.json
    assert loaded.vocab.strings == ["left", "right"]
    rets = evaluate(loaded, gym.make_vec("CartPole-v1", num_envs=2), episodes=2, seed=0)
    assert len(rets) == 2 and all(r >= 1 for r in rets)
