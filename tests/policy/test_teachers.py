from __future__ import annotations

import numpy as np
import pytest
import torch

from dreamlab.data.store import EpisodeStore
from dreamlab.policy.render import get_renderer
from dreamlab.policy.teachers import ActorTeacher, ContextTeacher, TeacherError, experience_text
from tests.policy.conftest import ConstantProbs, make_student


def test_prefix_marginalisation_is_exact_for_multi_token_actions() -> None:
    # shared prefixes: "ab"/"abd"/"ac" share "a", "ab"/"abd" share "ab"; with "\n" all 2-4 tokens
    st = make_student(strings=["ab", "ac"])
    strings = ["ab", "abd", "ac", "b"]
    import gymnasium as gym

    from dreamlab.policy.llm import ActionVocab, completion_ids

    vocab = ActionVocab.for_space(gym.spaces.Discrete(4), strings=strings)
    comps = completion_ids(st.tokenizer, vocab)
    assert [len(c) for c in comps] == [3, 4, 3, 2]
    V = int(st.model.get_output_embeddings().weight.shape[0])
    teacher = ActorTeacher(ConstantProbs([0.25, 0.25, 0.25, 0.25]), vocab, comps, V)
    probs = np.random.default_rng(0).dirichlet(np.ones(4), size=5)  # (5, 4)
    for a in range(4):
        t = teacher.token_probs(probs, np.full(5, a)).numpy()  # (5, Lc, V)
        chain = np.prod([t[:, j, comps[a][j]] for j in range(len(comps[a]))], axis=0)
        np.testing.assert_allclose(chain, probs[:, a], rtol=1e-12)  # product of targets == pi(a)
        assert np.allclose(t[:, : len(comps[a])].sum(-1), 1.0)
        assert np.all(t[:, len(comps[a]) :] == 0)  # padding carries no target
    # the first token of "ab"/"abd"/"ac" is "a" with mass p0 + p1 + p2
    t0 = teacher.token_probs(probs, np.zeros(5, np.int64)).numpy()
    np.testing.assert_allclose(t0[:, 0, comps[0][0]], probs[:, :3].sum(-1), rtol=1e-12)
    # a prefix the teacher gives no mass falls back to uniform over its continuations
    zero = np.array([[0.0, 0.0, 0.0, 1.0]])
    tz = teacher.token_probs(zero, np.array([0])).numpy()
    assert tz[0, 1, comps[0][1]] == pytest.approx(2 / 3)  # "b" (ab, abd) vs "c" (ac)
    smoothed = teacher.token_logprobs([], np.array([0]), zero).exp()
    assert torch.all(smoothed > 0) and torch.allclose(smoothed.sum(-1)[0, :3], torch.ones(3))


def test_actor_teacher_without_action_probs_uses_act(student) -> None:
    class Rule:
        def reset(self, n: int) -> None: ...

        def act(self, obs, is_first=None):
            return (obs[:, 2] > 0).astype(np.int64)

    t = ActorTeacher.for_student(Rule(), student)
    obs = np.array([[0, 0, 0.1, 0], [0, 0, -0.1, 0]], np.float32)
    assert t.probs(obs).tolist() == [[0.0, 1.0], [1.0, 0.0]]
    with pytest.raises(TeacherError, match="expected"):
        ActorTeacher.for_student(ConstantProbs([0.2, 0.3, 0.5]), student).probs(obs)


def test_context_teacher_modes_and_experience(cartpole_logs) -> None:
    st = make_student()
    store = EpisodeStore(cartpole_logs)
    text = experience_text(store, get_renderer("CartPole-v1"), st.vocab, best=2, max_chars=150)
    assert 0 < len(text) <= 150 and text.endswith("\n") and " > " in text
    obs = np.zeros((3, 4), np.float32)
    prompts = st.prompt_ids(obs)
    frozen = ContextTeacher(st, text, "frozen")
    bare = ContextTeacher(st, "", "frozen")
    p_ctx, p_bare = frozen.probs(prompts), bare.probs(prompts)
    assert p_ctx.shape == (3, 2) and np.allclose(p_ctx.sum(-1), 1)
    assert not np.allclose(p_ctx, p_bare)  # the context changes the teacher
    lt = frozen.token_logprobs(prompts, np.array([0, 1, 0]), None)
    assert lt.shape[0] == 3 and torch.allclose(lt.exp().sum(-1), torch.ones(lt.shape[:2]), atol=1e-4)
    ema = ContextTeacher(st, text, "ema", ema_decay=0.5)
    live = ContextTeacher(st, text, "live")
    assert live.model is st.model and ema.model is not st.model
    with torch.no_grad():
        for p in st.model.parameters():
            p.add_(0.1)
    before = ema.model.transformer.wte.weight.clone()
    ema.after_update(st)
    target = st.model.transformer.wte.weight
    assert torch.allclose(ema.model.transformer.wte.weight, 0.5 * before + 0.5 * target)
    with pytest.raises(TeacherError, match="positions"):
        ContextTeacher(st, "x" * 400, "frozen")
