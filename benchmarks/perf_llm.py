"""LLM policy speed, today's path against the new one, side by side in one run (issue 17, item 4).

Rows (SmolLM2-135M-Instruct on chat-prompted CartPole-v1 by default):

* ``today``: ``scoring="plain"`` (K copies of prompt + completion, full logits), full fine-tune, fp32.
* ``new``: ``scoring="fast"`` (shared prefix, per-prompt KV shared by the K completions, logits only
  at completion positions), ``finetune="auto"`` (LoRA for a pretrained model), precision ``auto``.
* ``new_full`` (``--rows``): fast scoring with a full fine-tune, to split the scoring gain from LoRA's.
* ``new@bf16-mixed``: only when ``--precisions`` holds ``bf16-mixed`` and ``auto`` did not pick it.

Per row: ``LLMPolicy.act`` actions/s at batch 1 and 8 (normal(0, 0.1) observations; at least 3
calls and 5 s each, in this process), and one OPSD run (CartPole heuristic teacher in the real env,
8 sync envs, the same ``DistillConfig`` for every row but ``finetune``) in its own subprocess
(``--worker ROW``) so its peak RSS is the row's own: labelled tokens, seconds (split into rollout
and update), tokens/s, peak RSS. ``ratios`` and ``targets`` (pass/miss) come from the run.

    python -m dreamlab.benchmarks.perf_llm [--student smollm2-135m-instruct|DIR|toy] [--threads 1]
        [--updates 3] [--minibatch 64 --grad-accum 1] [--rows today new new_full]
        [--out benchmarks/results/perf_llm.json]

``--minibatch 16 --grad-accum 4`` takes the same optimiser steps as the default 64 x 1 with about a
quarter of the activation memory: today's path (full logits at every position) needs more than
16 GB at 64 decisions per backward pass. One update of today's path takes about a quarter of an
hour at one thread (SmolLM2), so ``--updates 1`` keeps a run near twenty minutes.

``benchmarks.perf --quick`` uses the toy-GPT helpers kept below (``make_student(None)``,
``actions_per_s``, ``raw_*``, ``tokens_per_s``). Timings on a shared machine are noisy.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dreamlab.core.io import atomic_write_json
from dreamlab.core.machine import run_manifest
from dreamlab.core.precision import bf16_fast, resolve_precision
from dreamlab.data.behaviour import make_behaviour
from dreamlab.policy.base_llm import BaseLLMConfig, build_model, char_tokenizer
from dreamlab.policy.distill import Batch, DistillConfig, Distiller
from dreamlab.policy.llm import ActionVocab, LLMPolicy
from dreamlab.policy.render import get_renderer
from dreamlab.policy.teachers import ActorTeacher

ENV = "CartPole-v1"
DEFAULT_STUDENT = "smollm2-135m-instruct"
RESULTS = Path(__file__).resolve().parent / "results"
# row -> (scoring, finetune, precision); "auto" precision resolves on this machine
ROWS: dict[str, tuple[str, str, str]] = {
    "today": ("plain", "full", "32"),
    "new": ("fast", "auto", "auto"),
    "new_full": ("fast", "full", "auto"),
}
TARGETS = {"opsd_ratio": 10.0, "opsd_tokens_per_s": 55.0, "act_batch8_ratio": 5.0, "peak_rss_gib": 3.0}


# ----------------------------------------------------------------------------- students
def make_student(path: str | Path | None, scoring: str = "fast", precision: str = "32") -> LLMPolicy:
    """The toy GPT (``None`` or ``"toy"``: untrained default ``BaseLLMConfig``) or an LLM folder /
    known name (``resolve_llm``), chat-prompted for CartPole."""
    if path is None or str(path) == "toy":
        tok = char_tokenizer()
        model = build_model(BaseLLMConfig(), len(tok), tok.pad_token_id, tok.eos_token_id).eval()
        vocab = ActionVocab.for_space(gym.make(ENV).action_space, ENV)
        return LLMPolicy(
            model, tok, get_renderer(ENV), vocab, renderer_name="CartPole", scoring=scoring, precision=precision
        )
    from dreamlab.policy.pretrained import resolve_llm

    return LLMPolicy.from_pretrained(resolve_llm(path), env_id=ENV, scoring=scoring, precision=precision)


def _obs(batch: int) -> np.ndarray:
    return np.random.default_rng(0).normal(0, 0.1, (batch, 4)).astype(np.float32)


def actions_per_s(student: LLMPolicy, batch: int, seconds: float = 3.0, min_calls: int = 1) -> float:
    """Actions/s of ``student.act`` on a fixed batch (one warm-up call, then >= ``min_calls`` calls
    and >= ``seconds``)."""
    obs = _obs(batch)
    student.act(obs)  # warm-up
    n, t0 = 0, time.perf_counter()
    while n < min_calls * batch or time.perf_counter() - t0 < seconds:
        student.act(obs)
        n += batch
    return n / (time.perf_counter() - t0)


# ---------------------------------------------------- toy-GPT ceilings (benchmarks.perf --quick)
def _decision_rows(student: LLMPolicy, batch: int) -> tuple[torch.Tensor, torch.Tensor, int]:
    """The padded (batch * K, L) ids and attention mask of every prompt with each completion."""
    prompts = student.prompt_ids(_obs(batch))
    rows = [p + c for p in prompts for c in student.completions]
    L = max(len(r) for r in rows)
    ids = torch.full((len(rows), L), student.pad_id, dtype=torch.long)
    attn = torch.zeros((len(rows), L), dtype=torch.long)
    for i, r in enumerate(rows):
        ids[i, : len(r)] = torch.tensor(r)
        attn[i, : len(r)] = 1
    return ids, attn, max(len(c) for c in student.completions)


def raw_forward_actions_per_s(student: LLMPolicy, batch: int, seconds: float = 3.0) -> float:
    """Ceiling for ``actions_per_s``: the bare HF forward pass over pre-tokenised decision rows."""
    ids, attn, _ = _decision_rows(student, batch)
    with torch.no_grad():
        student.model(input_ids=ids, attention_mask=attn)  # warm-up
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            student.model(input_ids=ids, attention_mask=attn)
            n += batch
    return n / (time.perf_counter() - t0)


def raw_train_tokens_per_s(student: LLMPolicy, batch: int = 64, seconds: float = 3.0) -> float:
    """Ceiling for labelled tokens/s: plain forward + backward + Adam over ``batch`` pre-tokenised
    decisions (all K completions), each once, counting the completion tokens as labelled."""
    ids, attn, _ = _decision_rows(student, batch)
    model = student.model
    opt = torch.optim.Adam([p for p in model.parameters() if p.requires_grad], lr=1e-5)
    tokens_per_decision = float(np.mean([len(c) for c in student.completions]))
    model.train()

    def step() -> None:
        logits = model(input_ids=ids, attention_mask=attn).logits
        loss = torch.nn.functional.cross_entropy(logits[:, :-1].reshape(-1, logits.shape[-1]), ids[:, 1:].reshape(-1))
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


# -------------------------------------------------------------------------- distillation
class TimedDistiller(Distiller):
    """A Distiller that adds up the seconds spent in ``rollout`` (student + teacher + env) and ``update``."""

    rollout_s = 0.0
    update_s = 0.0

    def rollout(self) -> Batch:
        t0 = time.perf_counter()
        try:
            return super().rollout()
        finally:
            self.rollout_s += time.perf_counter() - t0

    def update(self, batch: Batch) -> float:
        t0 = time.perf_counter()
        try:
            return super().update(batch)
        finally:
            self.update_s += time.perf_counter() - t0


def distill_config(
    updates: int, finetune: str, precision: str, method: str = "opsd", minibatch: int = 64, grad_accum: int = 1
) -> DistillConfig:
    """The one config every row runs (only ``finetune``/``precision`` differ). ``minibatch`` x
    ``grad_accum`` is the decisions per optimiser step; 16 x 4 takes the same steps as the default
    64 x 1 with a quarter of the activation memory."""
    return DistillConfig(
        method=method,
        max_updates=updates,
        max_labelled_tokens=10**9,
        progress=False,
        finetune=finetune,
        precision=precision,
        minibatch=minibatch,
        grad_accum=grad_accum,
    )


def _rss_mb() -> float:
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE") / 2**20


def distill_row(
    student_spec: str | Path | None,
    row: str,
    updates: int,
    method: str = "opsd",
    minibatch: int = 64,
    grad_accum: int = 1,
) -> dict[str, Any]:
    """One OPSD (or SFT) run of ``row``'s path; peak RSS is this process's (run it in its own)."""
    scoring, finetune, precision = ROWS[row.split("@")[0]]
    if "@" in row:
        precision = row.split("@", 1)[1]
    student = make_student(student_spec, scoring=scoring, precision=resolve_precision(precision))
    env = gym.make_vec(ENV, num_envs=8, vectorization_mode="sync")
    teacher = ActorTeacher.for_student(make_behaviour(ENV, env.single_action_space, 0.0), student)
    cfg = distill_config(updates, finetune, precision, method, minibatch, grad_accum)
    rss_loaded = _rss_mb()
    d = TimedDistiller(student, teacher, env, cfg)
    t0 = time.perf_counter()
    state = d.run()
    wall = time.perf_counter() - t0
    return {
        "row": row,
        "scoring": student.scoring,
        "finetune": d.mode,
        "precision": student.precision,
        "lr": d.lr,
        "trainable_parameters": int(sum(p.numel() for p in d.params)),
        "labelled_tokens": state.labelled_tokens,
        "updates": state.updates,
        "decisions_trained": "each update: its rollout plus up to cfg.replay earlier ones",
        "seconds": wall,
        "rollout_s": d.rollout_s,
        "update_s": d.update_s,
        "labelled_tokens_per_s": state.labelled_tokens / wall,
        "rss_after_load_mb": rss_loaded,
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,  # KB on Linux
        "config": dataclasses.asdict(cfg),
    }


def tokens_per_s(student_path: Path | None, method: str, updates: int) -> dict[str, float]:
    """In-process distillation speed of the toy path (``benchmarks.perf --quick``)."""
    return distill_row(student_path, "new", updates, method)


def _peak_rss_of(pid: int) -> float | None:
    """A live process's peak RSS so far (``VmHWM``), MB; None once it is gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return None


def run_worker(args: argparse.Namespace, row: str) -> dict[str, Any]:
    """``python -m dreamlab.benchmarks.perf_llm --worker ROW``: the row's distillation, fresh process.
    A worker that dies (the OOM killer: -9) leaves an error row with the peak RSS seen until then."""
    with tempfile.TemporaryDirectory(prefix="perf_llm-") as tmp:
        out = Path(tmp) / f"{row}.json"
        cmd = [sys.executable, "-m", "dreamlab.benchmarks.perf_llm", "--worker", row, "--student", str(args.student)]
        cmd += ["--threads", str(args.threads), "--updates", str(args.updates), "--worker-out", str(out)]
        cmd += ["--minibatch", str(args.minibatch), "--grad-accum", str(args.grad_accum)]
        t0, seen = time.perf_counter(), 0.0
        proc = subprocess.Popen(cmd)
        while proc.poll() is None:
            seen = max(seen, _peak_rss_of(proc.pid) or 0.0)
            time.sleep(0.5)
        rc = proc.returncode
        if rc != 0 or not out.exists():  # keep the other rows
            why = " (SIGKILL: most likely the kernel's OOM killer)" if rc == -9 else ""
            return {
                "row": row,
                "error": f"worker exited with {rc}{why}",
                "peak_rss_mb_seen": seen,
                "process_wall_s": time.perf_counter() - t0,
            }
        res = json.loads(out.read_text())
    res["process_wall_s"] = time.perf_counter() - t0
    return res


# ----------------------------------------------------------------------------------- main
def _row_names(rows: list[str], precisions: list[str]) -> list[str]:
    auto = resolve_precision("auto")
    names = list(rows)
    names += [f"new@{p}" for p in precisions if resolve_precision(p) != auto and "new" in rows]
    return names


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if a is None or not b else a / b


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--student", default=DEFAULT_STUDENT, help="known LLM name, LLM folder, or 'toy'")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument(
        "--updates", type=int, default=1, help="OPSD updates per distillation row (one of today's: ~15 min)"
    )
    ap.add_argument("--rows", nargs="+", default=["today", "new"], choices=sorted(ROWS))
    ap.add_argument("--precisions", nargs="+", default=None, help="default: 32, plus bf16-mixed where bf16 is fast")
    # 16 x 4 is the optimiser step of 64 x 1; today's path does not fit 64 rows at once in 24 GB
    ap.add_argument("--minibatch", type=int, default=16, help="DistillConfig.minibatch (every row)")
    ap.add_argument("--grad-accum", type=int, default=4, help="DistillConfig.grad_accum (every row)")
    ap.add_argument("--act-seconds", type=float, default=5.0, help="time box per act measurement (>= 3 calls)")
    ap.add_argument("--out", type=Path, default=RESULTS / "perf_llm.json")
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--worker-out", type=Path, default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    if args.worker:
        worker_row = distill_row(args.student, args.worker, args.updates, "opsd", args.minibatch, args.grad_accum)
        atomic_write_json(args.worker_out, worker_row, indent=1)
        return worker_row

    fast_bf16 = bf16_fast()
    precisions = args.precisions or (["32", "bf16-mixed"] if fast_bf16 else ["32"])
    skipped = (
        None
        if "bf16-mixed" in precisions
        else (
            "bf16-mixed not measured: dreamlab.core.precision.bf16_fast() is false (no AMX-BF16 or AVX512-BF16 "
            "on this CPU, so bf16 matmuls are slower than fp32 and precision auto resolves to 32)"
        )
    )
    rows: dict[str, dict[str, Any]] = {}
    t_all = time.perf_counter()
    for name in _row_names(args.rows, precisions):
        scoring, finetune, precision = ROWS[name.split("@")[0]]
        precision = name.split("@", 1)[1] if "@" in name else precision
        row: dict[str, Any] = {"scoring": scoring, "finetune": finetune, "precision": resolve_precision(precision)}
        if name != "new_full":  # acting does not depend on the fine-tuning mode: new_full acts as new
            student = make_student(args.student, scoring=scoring, precision=resolve_precision(precision))
            row["parameters"] = int(sum(p.numel() for p in student.model.parameters()))
            row["actions_per_s"] = {str(b): actions_per_s(student, b, args.act_seconds, 3) for b in (1, 8)}
            del student
            print(f"[perf_llm] {name}: act {row['actions_per_s']}", file=sys.stderr, flush=True)
        row["distillation"] = run_worker(args, name)
        dist = row["distillation"]
        msg = dist.get("error") or (
            f"{dist['labelled_tokens']} tokens in {dist['seconds']:.0f} s ({dist['labelled_tokens_per_s']:.2f}/s: "
            f"rollout {dist['rollout_s']:.0f} s, update {dist['update_s']:.0f} s), peak RSS {dist['peak_rss_mb']:.0f} MB"
        )
        print(f"[perf_llm] {name}: {msg}", file=sys.stderr, flush=True)
        rows[name] = row

    def get(row: str, *keys: str) -> Any:
        v: Any = rows.get(row)
        for k in keys:
            v = None if v is None else v.get(k)
        return v

    ratios = {
        "act_batch1": _ratio(get("new", "actions_per_s", "1"), get("today", "actions_per_s", "1")),
        "act_batch8": _ratio(get("new", "actions_per_s", "8"), get("today", "actions_per_s", "8")),
        "opsd_tokens_per_s": _ratio(
            get("new", "distillation", "labelled_tokens_per_s"), get("today", "distillation", "labelled_tokens_per_s")
        ),
    }
    if "new_full" in rows:
        ratios["opsd_scoring_only (new_full/today)"] = _ratio(
            get("new_full", "distillation", "labelled_tokens_per_s"),
            get("today", "distillation", "labelled_tokens_per_s"),
        )
        ratios["opsd_lora_only (new/new_full)"] = _ratio(
            get("new", "distillation", "labelled_tokens_per_s"),
            get("new_full", "distillation", "labelled_tokens_per_s"),
        )
    new_rss = get("new", "distillation", "peak_rss_mb")
    new_tps = get("new", "distillation", "labelled_tokens_per_s")

    def target(value: float | None, goal: float, higher: bool, what: str) -> dict[str, Any]:
        ok = None if value is None else bool(value >= goal if higher else value <= goal)
        return {"value": value, "goal": goal, "what": what, "result": {None: "n/a", True: "pass", False: "miss"}[ok]}

    targets = {
        "opsd_ratio": target(
            ratios["opsd_tokens_per_s"], TARGETS["opsd_ratio"], True, "OPSD labelled tokens/s, new / today, >= 10x"
        ),
        "opsd_tokens_per_s": target(
            new_tps,
            TARGETS["opsd_tokens_per_s"],
            True,
            f"OPSD labelled tokens/s of new >= 55 (goal stated for 2 cores; measured at {args.threads} thread(s))",
        ),
        "act_batch8_ratio": target(
            ratios["act_batch8"],
            TARGETS["act_batch8_ratio"],
            True,
            "LLMPolicy.act actions/s at batch 8, new / today, >= 5x",
        ),
        "peak_rss_gib": target(
            None if new_rss is None else new_rss / 1024,
            TARGETS["peak_rss_gib"],
            False,
            "peak RSS of new's distillation process <= 3 GiB",
        ),
    }
    cfg = dataclasses.asdict(
        distill_config(args.updates, "<per row>", "<per row>", "opsd", args.minibatch, args.grad_accum)
    )
    res: dict[str, Any] = {
        "benchmark": "perf_llm",
        **run_manifest(
            {
                "distill": cfg,
                "num_envs": 8,
                "teacher": "CartPole heuristic (make_behaviour, epsilon 0)",
                "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
            },
            note="shared CPU: other jobs may run at the same time",
        ),
        "student": str(args.student),
        "env": ENV,
        "threads": args.threads,
        "precisions": precisions,
        "bf16_fast": fast_bf16,
        "bf16_skipped": skipped,
        "rows": rows,
        "ratios": ratios,
        "targets": targets,
        "wall_s": time.perf_counter() - t_all,
        # read by benchmarks.perf (its perf_llm rows): the new path's figures
        "actions_per_s": get("new", "actions_per_s") or {},
        "distillation": {"opsd": get("new", "distillation")} if "new" in rows else {},
    }
    res["summary"] = {
        **{f"{k}.act_b{b}": get(k, "actions_per_s", str(b)) for k in rows if k != "new_full" for b in (1, 8)},
        **{f"{k}.opsd_tok_s": get(k, "distillation", "labelled_tokens_per_s") for k in rows},
        **{f"{k}.peak_rss_mb": get(k, "distillation", "peak_rss_mb") for k in rows},
        **{f"ratio.{k}": v for k, v in ratios.items()},
        **{f"target.{k}": t["result"] for k, t in targets.items()},
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, res, indent=1)
    print(json.dumps({k: res[k] for k in ("summary", "bf16_skipped", "wall_s")}, indent=1))
    return res


if __name__ == "__main__":
    main()
