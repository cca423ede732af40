"""SmolLM2-135M-Instruct as the base LLM: conversion from the wheel's GGUF, plain reload, chat
prompting, fast scoring against the reference pass, and a tiny distillation by name. These use the
real model (134.5M parameters) with a few dozen tokens each, so they are in the slow lane."""

from __future__ import annotations

import json
from pathlib import Path

import gymnasium as gym
import numpy as np
import pytest
import torch

from dreamlab.cli import main
from dreamlab.policy.llm import LLMPolicy
from dreamlab.policy.pretrained import DEFAULT_LLM, KNOWN, resolve_llm

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def smollm2() -> Path:
    return resolve_llm(DEFAULT_LLM, log=lambda m: None)


def test_converted_folder_reloads_with_plain_transformers_and_generates(smollm2: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    config = json.loads((smollm2 / "config.json").read_text())
    assert "quantization_config" not in config  # a plain folder, not tied to the GGUF file
    model = AutoModelForCausalLM.from_pretrained(smollm2)
    tok = AutoTokenizer.from_pretrained(smollm2)
    assert sum(p.numel() for p in model.parameters()) == KNOWN[DEFAULT_LLM].parameters
    assert len(tok) == KNOWN[DEFAULT_LLM].vocab and tok.chat_template
    msgs = [{"role": "user", "content": "What is the capital of France?"}]
    ids = tok.apply_chat_template(msgs, add_generation_prompt=True, return_tensors="pt", return_dict=True)
    out = model.generate(**ids, max_new_tokens=8, do_sample=False)
    text = tok.decode(out[0, ids["input_ids"].shape[1] :], skip_special_tokens=True)
    assert "Paris" in text, text  # a pretrained model, not random weights


@pytest.mark.parametrize("env_id", ["CartPole-v1", "Pendulum-v1"])
def test_chat_prompt_and_fast_scoring_match_the_reference(smollm2: Path, env_id: str) -> None:
    env = gym.make(env_id)
    pol = LLMPolicy.from_pretrained(smollm2, env_id=env_id)
    prompt = pol.prompt_texts(env.observation_space.sample()[None])[0]
    assert prompt.startswith("<|im_start|>system\n") and prompt.endswith("<|im_start|>assistant\n")
    assert ("pole angle" in prompt) == (env_id == "CartPole-v1")
    assert all(c[-1] == pol.tokenizer.eos_token_id for c in pol.completions)  # each answer ends the turn
    obs = np.stack([env.observation_space.sample() for _ in range(2)])
    fast = pol.action_logprobs(obs)
    pol.scoring = "plain"
    plain = pol.action_logprobs(obs)
    assert fast.shape == (2, pol.vocab.size)
    assert torch.allclose(fast, plain, atol=2e-3), (fast - plain).abs().max()


def test_distill_cli_takes_the_name_and_trains_lora(smollm2: Path, tmp_path: Path) -> None:
    out = tmp_path / "student"
    argv = ["distill", "--teacher", "heuristic", "--student", DEFAULT_LLM, "--env", "CartPole-v1"]
    argv += ["--out", str(out), "--num-envs", "2", "--steps-per-rollout", "2", "--max-updates", "1"]
    argv += ["--minibatch", "4", "--threads", "1", "--forgetting", "false"]  # measured in test_forgetting
    assert main(argv) == 0
    summary = json.loads((out / "distill.json").read_text())
    assert summary["run"]["finetune"] == "lora" and summary["labelled_tokens"] > 0
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(out)  # merged adapters: a plain folder again
    assert not any("lora" in k for k in model.state_dict())
    again = LLMPolicy.from_pretrained(out, env_id="CartPole-v1")
    assert again.chat and again.pretrained and again.vocab.strings == ["left", "right"]
