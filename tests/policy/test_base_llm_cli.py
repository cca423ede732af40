from __future__ import annotations

import json

import gymnasium as gym
import numpy as np
import pytest

from dreamlab.cli import main
from dreamlab.data.store import EpisodeStore
from dreamlab.policy.base_llm import BaseLLMError, char_tokenizer, make_base_llm
from dreamlab.policy.distill import DistillConfig, Distiller
from dreamlab.policy.llm import LLMPolicy, evaluate
from dreamlab.policy.teachers import ContextTeacher, experience_text
from tests.policy.conftest import TINY, load_student


def test_char_tokenizer_round_trips_and_reloads(tmp_path) -> None:
    from transformers import AutoTokenizer

    tok = char_tokenizer()
    tok.save_pretrained(tmp_path)
    again = AutoTokenizer.from_pretrained(tmp_path)
    text = "x=+0.02 v=-0.15 > right\n"
    ids = again(text, add_special_tokens=False)["input_ids"]
    assert len(ids) == len(text) and again.decode(ids) == text


def test_make_base_llm_writes_valid_actions(base_dir) -> None:
    summary = json.loads((base_dir / "base_llm.json").read_text())
    assert summary["valid_rate"] >= 0.95  # free greedy generation writes "left\n" or "right\n"
    assert (base_dir / "model.safetensors").exists()
    pol = LLMPolicy.from_pretrained(base_dir)
    # the untrained model puts ~1/99 on each next char; pre-training makes continuations near-certain
    logits_ok = pol.action_logprobs(np.zeros((1, 4), np.float32))
    assert logits_ok.shape == (1, 2)
    raw = LLMPolicy.from_pretrained(base_dir, constrained=False)
    assert np.exp(np.logaddexp.reduce(_raw_scores(raw))) > 0.5  # most mass on valid completions


def _raw_scores(pol: LLMPolicy) -> np.ndarray:
    from dreamlab.policy.llm import completion_logits, sequence_logprobs

    prompts = pol.prompt_ids(np.zeros((1, 4), np.float32)) * pol.vocab.size
    logits, tok, mask = completion_logits(pol.model, prompts, pol.completions, pol.pad_id)
    return sequence_logprobs(logits, tok, mask).detach().numpy()


def test_make_base_llm_errors(cartpole_logs, tmp_path) -> None:
    with pytest.raises(BaseLLMError, match="n_embd"):
        make_base_llm(cartpole_logs, tmp_path / "x", TINY.__class__(**{**TINY.__dict__, "n_embd": 33}))
    with pytest.raises(BaseLLMError, match="n_positions"):
        make_base_llm(cartpole_logs, tmp_path / "x", TINY.__class__(**{**TINY.__dict__, "n_positions": 32}))


def test_opsd_with_context_teacher_reduces_divergence(base_dir, cartpole_logs) -> None:
    st = load_student(base_dir)
    text = experience_text(EpisodeStore(cartpole_logs), st.renderer, st.vocab, st.sep, best=2, max_chars=120)
    teacher = ContextTeacher(st, text, "frozen")
    obs = np.random.default_rng(0).normal(0, 0.05, (16, 4)).astype(np.float32)
    target = teacher.probs(st.prompt_ids(obs))

    def kl() -> float:
        return float(np.mean(np.sum(target * (np.log(target) - np.log(st.action_probs(obs))), -1)))

    before = kl()
    cfg = DistillConfig(
        lr=1e-2, steps_per_rollout=8, minibatch=16, max_updates=6, max_labelled_tokens=10**9, progress=False
    )
    Distiller(st, teacher, gym.make_vec("CartPole-v1", num_envs=4), cfg).run()
    assert kl() < 0.5 * before, (before, kl())


def test_cli_make_base_llm_then_distill_round_trip(cartpole_logs, tmp_path, capsys) -> None:
    from transformers import AutoModelForCausalLM

    base = tmp_path / "base"
    rc = main(
        [
            "make-base-llm",
            "--logs",
            str(cartpole_logs),
            "--out",
            str(base),
            "--n-layer",
            "1",
            "--n-embd",
            "32",
            "--n-head",
            "2",
            "--steps",
            "40",
            "--block-size",
            "64",
            "--n-positions",
            "256",
            "--no-progress",
        ]
    )
    assert rc == 0 and (base / "model.safetensors").exists()
    out = tmp_path / "student"
    rc = main(
        [
            "distill",
            "--teacher",
            "heuristic",
            "--student",
            str(base),
            "--env",
            "CartPole-v1",
            "--method",
            "sft",
            "--out",
            str(out),
            "--num-envs",
            "2",
            "--steps-per-rollout",
            "8",
            "--max-labelled-tokens",
            "150",
            "--eval-every-tokens",
            "100",
            "--eval-episodes",
            "2",
            "--no-progress",
        ]
    )
    assert rc == 0
    printed = capsys.readouterr().out
    assert '"labelled_tokens"' in printed
    report = json.loads((out / "distill.json").read_text())
    assert report["labelled_tokens"] >= 150 and len(report["curve"]) >= 2
    AutoModelForCausalLM.from_pretrained(out)  # plain transformers loads the result
    rets = evaluate(LLMPolicy.from_pretrained(out), gym.make_vec("CartPole-v1", num_envs=2), 2, seed=0)
    assert len(rets) == 2
    assert (
        main(
            [
                "distill",
                "--teacher",
                "context",
                "--student",
                str(base),
                "--env",
                "CartPole-v1",
                "--out",
                str(tmp_path / "c"),
                "--no-progress",
            ]
        )
        == 2
    )  # context needs --logs or --lessons
    assert "needs --logs" in capsys.readouterr().err


def test_cli_distills_inside_a_dream_env(cartpole_logs, base_dir, tmp_path) -> None:
    """`--env dream:WM_CKPT`: OPSD runs in a DreamEnv (an untrained tiny world model: the point is the
    plumbing: policy/ never imports imagination, the DreamEnv is just a gymnasium VectorEnv)."""
    from dreamlab.worldmodel.config import PRESETS, WorldModelConfig
    from dreamlab.worldmodel.model import WorldModel

    store = EpisodeStore(cartpole_logs)
    wm = WorldModel(WorldModelConfig.from_dict(PRESETS["tiny"]), store.observation_space, store.action_space)
    wm.save(tmp_path / "wm.ckpt")
    out = tmp_path / "dream_student"
    rc = main(
        [
            "distill",
            "--teacher",
            "heuristic",
            "--student",
            str(base_dir),
            "--env",
            f"dream:{tmp_path / 'wm.ckpt'}",
            "--logs",
            str(cartpole_logs),
            "--num-envs",
            "2",
            "--max-steps",
            "20",
            "--steps-per-rollout",
            "8",
            "--max-labelled-tokens",
            "100",
            "--out",
            str(out),
            "--no-progress",
        ]
    )
    assert rc == 0
    report = json.loads((out / "distill.json").read_text())
    assert report["labelled_tokens"] >= 100 and report["config"]["method"] == "opsd"
    assert LLMPolicy.from_pretrained(out).vocab.strings == ["left", "right"]
