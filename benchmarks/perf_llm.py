"""Performance of the LLM policy and of distillation (CPU; JSON into benchmarks/results/).

* ``actions_per_s``: LLMPolicy.act on batches of CartPole observations (one batched forward pass
  scoring every valid action string per call), for several batch sizes.
* ``labelled_tokens_per_s``: teacher-labelled action tokens per second of distillation (rollout +
  teacher + update) for OPSD (reverse KL) and SFT, with the CartPole heuristic teacher in the real
  env. The student is the default base-LLM architecture (``BaseLLMConfig``), or ``--student DIR``.

    python -m dreamlab.benchmarks.perf_llm [--student DIR] [--out benchmarks/results/perf_llm.json]

Timings on a shared machine are noisy; the JSON records the machine and torch threads.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import gymnasium as gym
import numpy as np
import torch

from dreamlab.core.io import atomic_write_json
from dreamlab.core.machine import run_manifest
from dreamlab.data.behaviour import make_behaviour
from dreamlab.policy.base_llm import BaseLLMConfig, build_model, char_tokenizer
from dreamlab.policy.distill import DistillConfig, Distiller
from dreamlab.policy.llm import ActionVocab, LLMPolicy
from dreamlab.policy.render import get_renderer
from dreamlab.policy.teachers import ActorTeacher

ENV = "CartPole-v1"


def make_student(path: Path | None) -> LLMPolicy:
    if path is not None:
        return LLMPolicy.from_pretrained(path)
    tok = char_tokenizer()
    model = build_model(BaseLLMConfig(), len(tok), tok.pad_token_id, tok.eos_token_id).eval()
    vocab = ActionVocab.for_space(gym.make(ENV).action_space, ENV)
    return LLMPolicy(model, tok, get_renderer(ENV), vocab, renderer_name="CartPole")


def actions_per_s(student: LLMPolicy, batch: int, seconds: float = 3.0) -> float:
    obs = np.random.default_rng(0).normal(0, 0.1, (batch, 4)).astype(np.float32)
    student.act(obs)  # warm-up
    n, t0 = 0, time.perf_counter()
    while time.perf_counter() - t0 < seconds:
        student.act(obs)
        n += batch
    return n / (time.perf_counter() - t0)


def _decision_rows(student: LLMPolicy, batch: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The padded (batch * K, L) ids and attention mask that scoring ``batch`` observations needs
    (every prompt with each of the K action completions), built once; and the completion length."""
    obs = np.random.default_rng(0).normal(0, 0.1, (batch, 4)).astype(np.float32)
    prompts = student.prompt_ids(obs)
    rows = [p + c for p in prompts for c in student.completions]
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), student.pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), L), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        attn[i, : len(r)] = 1
    return ids, attn, max(len(c) for c in student.completions)


def raw_forward_actions_per_s(student: LLMPolicy, batch: int, seconds: float = 3.0) -> float:
    """Ceiling for ``actions_per_s``: the bare HF forward pass over pre-tokenised decision rows
    (no rendering, tokenising, padding or scoring), in decisions per second."""
    ids, attn, _ = _decision_rows(student, batch)
    with torch.no_grad():
        student.model(input_ids=ids, attention_mask=attn)  # warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            student.model(input_ids=ids, attention_mask=attn)
            n += batch
    return n / (time.perf_counter() - t0)


def raw_train_tokens_per_s(student: LLMPolicy, batch: int = 64, seconds: float = 3.0) -> float:
    """Ceiling for ``labelled_tokens_per_s``: plain forward + backward + Adam steps of the same model
    over ``batch`` pre-tokenised decisions (all K completions), each decision trained on once,
    counting the taken completion's tokens as labelled; no rollout, teacher or replay."""
    ids, attn, lc = _decision_rows(student, batch)
    model = student.model
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    tokens_per_decision = float(np.mean([len(c) for c in student.completions]))
    model.train()

    def step() -> None:
        logits = model(input_ids=ids, attention_mask=attn).logits  # (rows, L, V)
        loss = torch.nn.functional.cross_entropy(
            logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1), reduction="mean"
        )
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()

    try:
        step()  # warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            step()
            n += batch
        return n * tokens_per_decision / (time.perf_counter() - t0)
    finally:
        model.eval()


def tokens_per_s(student_path: Path | None, method: str, updates: int) -> dict[str, float]:
    student = make_student(student_path)
    env = gym.make_vec(ENV, num_envs=8, vectorization_mode="sync")
    teacher = ActorTeacher.for_student(make_behaviour(ENV, env.single_action_space, 0.0), student)
    cfg = DistillConfig(method=method, max_updates=updates, max_labelled_tokens=10**9, progress=False)
    t0 = time.perf_counter()
    state = Distiller(student, teacher, env, cfg).run()
    wall = time.perf_counter() - t0
    return {
        "labelled_tokens": state.labelled_tokens,
        "updates": state.updates,
        "seconds": wall,
        "labelled_tokens_per_s": state.labelled_tokens / wall,
    }


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--student", type=Path, default=None)
    ap.add_argument("--updates", type=int, default=6)
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "perf_llm.json")
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    student = make_student(args.student)
    res = {
        **run_manifest(note="shared CPU: other jobs ran at the same time"),
        "student": str(args.student) if args.student else "untrained default BaseLLMConfig architecture",
        "parameters": int(sum(p.numel() for p in student.model.parameters())),
        "env": ENV,
        "actions_per_s": {str(b): actions_per_s(student, b) for b in (1, 8, 64)},
        "raw_forward_actions_per_s": {str(b): raw_forward_actions_per_s(student, b) for b in (1, 8, 64)},
        "distillation": {m: tokens_per_s(args.student, m, args.updates) for m in ("opsd", "sft")},
        "raw_train_labelled_tokens_per_s": raw_train_tokens_per_s(make_student(args.student)),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, res, indent=1)
    print(json.dumps(res, indent=1))
    return res


if __name__ == "__main__":
    main()
