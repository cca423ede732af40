"""Distil a teacher into an LLM policy: on-policy self-distillation (OPSD) and the SFT baseline.

**OPSD.** The student (an :class:`~policy.llm.LLMPolicy`) acts on-policy in the env it is handed
(any gymnasium ``Env`` or ``VectorEnv``: the real env or a DreamEnv; episodes run whole and
continue across rollouts), sampling its action strings with ``temperature``. The teacher scores
every token of every action the student wrote (:mod:`policy.teachers`), and the student is
trained on the chosen token-level loss (:mod:`policy.losses`) over the full vocabulary.

``teacher_mix`` (DAgger's beta, default 0 = purely on-policy) lets each row execute the teacher's
greedy action with that probability (decaying to 0 over ``teacher_mix_tokens``); the teacher still
labels the tokens the *student* sampled, so the loss stays on the student's own outputs while the
visited states are less dominated by the student's current bias.

**SFT.** The teacher acts (greedy on its action distribution by default) and the student is
trained by cross-entropy on the teacher's action tokens (off-policy).

Both count *labelled tokens*: the action-completion tokens (action string + terminator) the
teacher labelled and the student trained on; the budget ``max_labelled_tokens`` stops the run.
Every update: one rollout of ``steps_per_rollout`` vector steps, then ``epochs`` passes of
minibatches (``grad_accum`` minibatches per optimiser step) over the new decisions and those of the
``replay`` previous rollouts (DAgger-style aggregation: it damps the oscillation of on-policy
training, where the student's own bias decides which states get labelled; labels are counted once,
when the teacher gives them; ActorTeacher labels are stored, ContextTeacher re-scores).
``lr_schedule`` decays the learning rate with the labelled tokens spent (linear or cosine, to
``lr * lr_final`` at ``max_labelled_tokens``), so the last updates move the student less.

**Fine-tuning.** ``finetune="auto"`` trains LoRA adapters (peft, every linear layer) on a
pretrained model (``get-llm``) and all weights of the toy GPT; ``lora``/``full`` choose. The saved
result is merged, so it loads with plain ``AutoModelForCausalLM.from_pretrained``. ``lr=0`` picks
the learning rate for the mode (toy full: 1e-3, LoRA: 5e-4, pretrained full: 2e-5).

**Where it runs.** On Lightning Fabric (:mod:`policy.scale`): ``precision`` (``auto`` = bf16-mixed
where bf16 is fast, else 32), ``accelerator``, ``strategy`` (``ddp`` for several processes) and
``devices``. Every rank rolls out its own episodes; gradients are averaged before each step, token
budgets count all ranks, and rank 0 writes checkpoints and the result.

**Forgetting.** With ``forgetting`` (default on) rank 0 measures the general suite before and after
(:mod:`policy.forgetting`): ``OUT/distill.json`` gets ``forgetting`` (perplexity and instruction accuracy).

Checkpoints (``OUT/checkpoint/``: weights in safetensors, optimiser state, ``state.json`` with
the counters and curves) are written every ``checkpoint_every`` updates and at the end; a run
started again with the same ``OUT`` resumes from them (the env restarts with fresh episodes).
"""

from __future__ import annotations

import dataclasses
import functools
import json
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from safetensors.torch import load_model, save_model

from dreamlab.core.errors import DreamlabError
from dreamlab.core.io import atomic_path, atomic_torch_save, atomic_write_json, safe_torch_load
from dreamlab.core.precision import resolve_precision
from dreamlab.core.progress import Progress
from dreamlab.core.quiet import quiet_third_party
from dreamlab.policy.forgetting import measure_forgetting
from dreamlab.policy.llm import LLMPolicy, write_policy_meta
from dreamlab.policy.losses import LOSSES, cross_entropy, distill_loss, reverse_kl
from dreamlab.policy.rollout import VecRunner
from dreamlab.policy.scale import agree_min, make_fabric, sync_grads, total, weights_digest
from dreamlab.policy.teachers import Teacher

LR_SCHEDULES = ("constant", "linear", "cosine")

# Rollout and replay for a pretrained student where a decision costs ~1 s on a 2-core CPU (SmolLM2):
# short rollouts and little replay, so a few hundred labelled tokens take minutes, not hours.
PRETRAINED_ROLLOUT: dict[str, int] = {"steps_per_rollout": 8, "replay": 1, "minibatch": 32}


def _fixed_actions(actions: np.ndarray, obs: Any, is_first: Any) -> np.ndarray:
    """A rollout step's policy that plays ``actions`` whatever it is shown."""
    return actions


class DistillError(DreamlabError):
    """A distillation setting or checkpoint that cannot be used (names the field or file)."""


@dataclass
class DistillConfig:
    method: str = "opsd"  # opsd | sft
    loss: str = "reverse_kl"  # opsd: reverse_kl | forward_kl | jsd | sampled (sft: cross-entropy)
    beta: float = 0.5  # generalised JSD mixture weight
    temperature: float = 1.0  # student sampling temperature (OPSD rollouts) and loss temperature
    lr: float = 0.0  # 0 = the mode's default (toy full: 1e-3, LoRA: 5e-4, pretrained full: 2e-5)
    lr_schedule: str = "constant"  # constant | linear | cosine: decay over max_labelled_tokens ...
    lr_final: float = 0.1  # ... down to lr * lr_final (damps the late oscillation of on-policy training)
    steps_per_rollout: int = 32  # vector-env steps per update
    epochs: int = 1  # passes over each rollout
    minibatch: int = 64  # decisions per gradient
    micro_batch: int = (
        0  # decisions per backward pass (same gradient, less memory); 0 = 8 for a pretrained LLM, else minibatch
    )
    grad_accum: int = 1  # backward passes per optimiser step
    max_grad_norm: float = 1.0
    teacher_mix: float = 0.0  # OPSD: chance that a row executes the teacher's action instead (DAgger's beta)
    teacher_mix_tokens: int = 0  # ... decaying linearly to 0 over this many labelled tokens (0 = constant)
    replay: int = 8  # also train on the decisions of this many previous rollouts (DAgger-style aggregation)
    max_labelled_tokens: int = 20_000
    max_updates: int = 0  # 0 = no limit besides the token budget
    teacher_smoothing: float = 1e-3  # ActorTeacher: uniform floor mixed into the token targets
    sft_greedy_teacher: bool = True  # SFT: the teacher acts greedily (else samples)
    finetune: str = "auto"  # auto (LoRA for a pretrained model, full for the toy GPT) | lora | full
    lora_r: int = 8
    lora_alpha: int = 16
    checkpoint_every: int = 10  # updates (0 = only at the end)
    eval_every_tokens: int = 0  # call eval_fn every this many labelled tokens (0 = never)
    forgetting: bool = True  # general suite before and after (policy.forgetting; rank 0): distill.json 'forgetting'
    precision: str = "auto"  # auto | 32 | bf16-mixed (Lightning's words)
    accelerator: str = "auto"  # auto | cpu | cuda
    strategy: str = "auto"  # auto | ddp
    devices: int = 1
    seed: int = 0
    progress: bool = True

    def check(self) -> None:
        if self.finetune not in ("auto", "lora", "full"):
            raise DistillError(f"finetune: expected auto, lora or full, got {self.finetune!r}")
        if self.strategy not in ("auto", "ddp", "ddp_spawn") or self.devices < 1:
            raise DistillError(
                f"strategy/devices: expected auto|ddp and devices >= 1, got {self.strategy!r}/{self.devices}"
            )
        if self.lr < 0:
            raise DistillError(f"lr: expected >= 0 (0 = the fine-tuning mode's default), got {self.lr}")
        if self.method not in ("opsd", "sft"):
            raise DistillError(f"method: expected 'opsd' or 'sft', got {self.method!r}")
        if self.method == "opsd" and self.loss not in LOSSES:
            raise DistillError(f"loss: expected one of {LOSSES}, got {self.loss!r}")
        if self.lr_schedule not in LR_SCHEDULES:
            raise DistillError(f"lr_schedule: expected one of {LR_SCHEDULES}, got {self.lr_schedule!r}")
        if not 0.0 <= self.lr_final <= 1.0:
            raise DistillError(f"lr_final: a fraction of lr in [0, 1], got {self.lr_final}")
        if self.temperature <= 0:
            raise DistillError(f"temperature: must be > 0, got {self.temperature}")
        if min(self.steps_per_rollout, self.minibatch, self.grad_accum, self.epochs) < 1:
            raise DistillError("steps_per_rollout, minibatch, grad_accum and epochs must all be >= 1")


@dataclass
class Batch:
    prompts: list[list[int]]
    actions: np.ndarray  # (B,) action indices taken
    probs: np.ndarray | None  # (B, K) teacher action probs (ActorTeacher), else None

    def __len__(self) -> int:
        return len(self.prompts)

    @staticmethod
    def concat(batches: list[Batch]) -> Batch:
        probs = [b.probs for b in batches]
        return Batch(
            [p for b in batches for p in b.prompts],
            np.concatenate([b.actions for b in batches]),
            None if any(p is None for p in probs) else np.concatenate(cast(list[np.ndarray], probs)),
        )

    def take(self, idx: np.ndarray) -> Batch:
        return Batch([self.prompts[i] for i in idx], self.actions[idx], None if self.probs is None else self.probs[idx])


@dataclass
class DistillState:
    labelled_tokens: int = 0
    updates: int = 0
    episodes: int = 0
    seconds: float = 0.0
    returns: list[float] = field(default_factory=list)  # training-env episode returns, in order
    curve: list[dict[str, float]] = field(default_factory=list)  # eval points: tokens, return
    losses: list[float] = field(default_factory=list)
    next_eval: int = 0
    forgetting: dict[str, Any] = field(default_factory=dict)  # policy.forgetting: before, then the summary


def apply_lora(student: LLMPolicy, cfg: DistillConfig) -> None:
    from peft import LoraConfig, get_peft_model

    torch.manual_seed(cfg.seed)  # the same adapters on every rank
    lcfg = LoraConfig(r=cfg.lora_r, lora_alpha=cfg.lora_alpha, lora_dropout=0.0, target_modules="all-linear")
    student.model = get_peft_model(student.model, lcfg)


def finetune_mode(student: LLMPolicy, cfg: DistillConfig) -> str:
    """``lora`` or ``full`` for this student (``auto``: LoRA for a pretrained model)."""
    if cfg.finetune != "auto":
        return cfg.finetune
    return "lora" if student.pretrained else "full"


def default_lr(student: LLMPolicy, mode: str) -> float:
    if mode == "lora":
        return 5e-4
    return 2e-5 if student.pretrained else 1e-3


class Distiller:
    """Runs OPSD or SFT (see the module docstring); ``run()`` returns the final state."""

    def __init__(
        self,
        student: LLMPolicy,
        teacher: Teacher,
        env: gym.Env | gym.vector.VectorEnv,
        cfg: DistillConfig | None = None,
        out: str | Path | None = None,
        eval_fn: Callable[[LLMPolicy], float] | None = None,
        env_id: str | None = None,
        fabric: Any = None,
    ):
        self.cfg = cfg or DistillConfig()
        self.cfg.check()
        self.student, self.teacher, self.eval_fn, self.env_id = student, teacher, eval_fn, env_id
        self.out = Path(out) if out is not None else None
        quiet_third_party()  # peft's deprecation noise; transformers' bars when stderr is a log
        cfg = self.cfg
        self.fabric = fabric or make_fabric(cfg.accelerator, cfg.strategy, cfg.devices, cfg.precision)
        self.rank = int(self.fabric.global_rank)
        self.mode = finetune_mode(student, cfg)
        if self.mode == "lora":
            apply_lora(student, cfg)
        student.model = self.fabric.to_device(student.model)
        student.precision = resolve_precision(cfg.precision, self.fabric.device)
        self.model = student.model
        self.model.eval()  # no dropout: rollouts and updates see the same function
        self.params = [p for p in self.model.parameters() if p.requires_grad]
        self.lr = cfg.lr or default_lr(student, self.mode)
        self.opt = torch.optim.Adam(self.params, lr=self.lr)
        self.runner = VecRunner(env, seed=cfg.seed + 1000 * self.rank)
        self.rng = np.random.default_rng(cfg.seed + 1000 * self.rank)
        self.state = DistillState(next_eval=0)
        self.buffer: deque[Batch] = deque(maxlen=self.cfg.replay + 1)
        self.teacher.reset(self.runner.n)
        self.student.reset(self.runner.n)
        if self.out is not None:
            self._maybe_resume()

    # ------------------------------------------------------------------ rollout
    def rollout(self) -> Batch:
        cfg, student, vocab = self.cfg, self.student, self.student.vocab
        prompts_all: list[list[int]] = []
        actions_all, probs_all = [], []
        for _ in range(cfg.steps_per_rollout):
            obs, first = self.runner.obs, self.runner.is_first
            prompts = student.prompt_ids(obs)
            beta = self.mix_beta()
            probs = self.teacher.observe(obs, first, prompts, need_probs=cfg.method == "sft" or beta > 0)
            if cfg.method == "opsd":
                logp = student.action_logprobs(prompts=prompts).double().cpu().numpy()  # (n, K)
                idx = self._sample(logp / cfg.temperature)
                run_idx = idx
                if beta > 0:
                    assert probs is not None
                    run_idx = np.where(self.rng.random(len(idx)) < beta, probs.argmax(-1), idx)
            else:
                assert probs is not None
                idx = probs.argmax(-1) if cfg.sft_greedy_teacher else self._sample(np.log(probs + 1e-300))
                run_idx = idx
            actions = vocab.to_env(run_idx)
            self.teacher.executed(actions)
            step = self.runner.step(functools.partial(_fixed_actions, actions))
            for i in np.flatnonzero(step.valid):
                prompts_all.append(prompts[i])
                actions_all.append(int(idx[i]))
                if probs is not None:
                    probs_all.append(probs[i])
            self.state.returns.extend(step.finished_returns)
            self.state.episodes += len(step.finished_returns)
        return Batch(prompts_all, np.asarray(actions_all, np.int64), np.stack(probs_all) if probs_all else None)

    def mix_beta(self) -> float:
        """DAgger-style mixing: the chance a row executes the teacher's action during OPSD rollouts.
        The student's own sampled action is what the teacher labels and the student learns from."""
        cfg = self.cfg
        if cfg.teacher_mix <= 0 or cfg.method != "opsd":
            return 0.0
        if cfg.teacher_mix_tokens <= 0:
            return cfg.teacher_mix
        return cfg.teacher_mix * max(0.0, 1.0 - self.state.labelled_tokens / cfg.teacher_mix_tokens)

    def _sample(self, logits: np.ndarray) -> np.ndarray:
        p = np.exp(logits - logits.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        u = self.rng.random((p.shape[0], 1))
        return np.minimum((p.cumsum(-1) < u).sum(-1), p.shape[1] - 1)

    # ------------------------------------------------------------------ update
    def lr_now(self) -> float:
        """The learning rate for the next update: ``lr`` decayed by labelled-token progress."""
        cfg = self.cfg
        frac = min(1.0, self.state.labelled_tokens / max(cfg.max_labelled_tokens, 1))
        if cfg.lr_schedule == "linear":
            return self.lr * (1.0 - (1.0 - cfg.lr_final) * frac)
        if cfg.lr_schedule == "cosine":
            return self.lr * (cfg.lr_final + (1.0 - cfg.lr_final) * 0.5 * (1.0 + np.cos(np.pi * frac)))
        return self.lr

    def batch_loss(self, batch: Batch) -> tuple[torch.Tensor, float]:
        """Loss on a minibatch; also returns the reverse KL to the teacher (a divergence to report)."""
        comps = [self.student.completions[int(a)] for a in batch.actions]
        logits, tokens, mask = self.student.lm_logits(self.model, batch.prompts, comps)
        log_t = self.teacher.token_logprobs(batch.prompts, batch.actions, batch.probs, self.cfg.temperature)
        log_t = log_t.to(logits.device)[:, : logits.shape[1]]
        if self.cfg.method == "sft":
            loss = cross_entropy(logits, tokens, mask)
        else:
            loss = distill_loss(self.cfg.loss, logits, log_t, tokens, mask, self.cfg.beta, self.cfg.temperature)
        with torch.no_grad():
            div = float(reverse_kl(logits, log_t, mask))
        return loss, div

    def update(self, batch: Batch) -> float:
        cfg, losses, params = self.cfg, [], self.params
        for group in self.opt.param_groups:
            group["lr"] = self.lr_now()
        m = agree_min(self.fabric, len(batch))  # every rank runs the same minibatches
        for _ in range(cfg.epochs):
            order = self.rng.permutation(len(batch))[:m]
            chunks = [order[i : i + cfg.minibatch] for i in range(0, len(order), cfg.minibatch)]
            for c, idx in enumerate(chunks):
                losses.append(self._backward(batch.take(idx)))
                if (c + 1) % cfg.grad_accum == 0 or c == len(chunks) - 1:
                    sync_grads(self.fabric, params)
                    torch.nn.utils.clip_grad_norm_(params, cfg.max_grad_norm)
                    self.opt.step()
                    self.opt.zero_grad(set_to_none=True)
        self.teacher.after_update(self.student)
        return float(np.mean(losses)) if losses else float("nan")

    def _backward(self, mb: Batch) -> float:
        """Backward the minibatch's token-mean loss in micro-batches of ``micro_batch`` rows, each
        weighted by its share of the tokens: the same gradient as one pass, a fraction of the memory."""
        size = self.cfg.micro_batch or (8 if self.student.pretrained else len(mb))
        ntok = [len(self.student.completions[int(a)]) for a in mb.actions]
        total_tokens, loss_sum = float(sum(ntok)), 0.0
        for i in range(0, len(mb), size):
            idx = np.arange(i, min(i + size, len(mb)))
            share = sum(ntok[j] for j in idx) / total_tokens
            loss, _ = self.batch_loss(mb.take(idx))
            (loss * share / self.cfg.grad_accum).backward()
            loss_sum += float(loss.detach()) * share
        return loss_sum

    # ------------------------------------------------------------------ loop
    def done(self) -> bool:
        s, cfg = self.state, self.cfg
        return s.labelled_tokens >= cfg.max_labelled_tokens or (cfg.max_updates > 0 and s.updates >= cfg.max_updates)

    def _evaluate(self) -> None:
        s = self.state
        if self.eval_fn is None or self.cfg.eval_every_tokens <= 0 or self.rank != 0:
            return
        while s.labelled_tokens >= s.next_eval:
            ret = float(self.eval_fn(self.student))
            s.curve.append({"labelled_tokens": s.labelled_tokens, "return": ret, "updates": s.updates})
            s.next_eval += self.cfg.eval_every_tokens

    def _forgetting(self, stage: str) -> None:
        """The general suite on rank 0 before training (once, kept across resumes) and after it."""
        if self.cfg.forgetting and self.rank == 0 and not (stage == "before" and self.state.forgetting):
            tag = f"distill {self.cfg.method}" if self.cfg.progress else None  # the log line's prefix
            args = (self.model, self.student.tokenizer, self.student.precision, self.state.curve)
            self.state.forgetting = measure_forgetting(self.state.forgetting, stage, *args, log=tag)

    def run(self) -> DistillState:
        cfg, s = self.cfg, self.state
        self._forgetting("before")
        bar: Progress[Any] = Progress(
            total=cfg.max_labelled_tokens,
            initial=min(s.labelled_tokens, cfg.max_labelled_tokens),
            unit="tok",
            desc=f"distill {cfg.method}",
            enabled=cfg.progress and self.rank == 0,
        )
        self._evaluate()
        while not self.done():
            t0 = time.perf_counter()
            batch = self.rollout()
            if len(batch) == 0:
                raise DistillError("a rollout produced no decisions; raise steps_per_rollout")
            self.buffer.append(batch)
            loss = self.update(Batch.concat(list(self.buffer)))
            tokens = int(total(self.fabric, sum(len(self.student.completions[int(a)]) for a in batch.actions)))
            s.labelled_tokens += tokens
            s.updates += 1
            s.losses.append(loss)
            s.seconds += time.perf_counter() - t0
            recent = s.returns[-20:]
            bar.update(min(tokens, max(0, cfg.max_labelled_tokens - bar.n)))
            bar.set_postfix(
                loss=f"{loss:.4f}",
                ret=f"{np.mean(recent):.1f}" if recent else "-",
                tok_s=f"{s.labelled_tokens / max(s.seconds, 1e-9):.0f}",
            )
            self._evaluate()
            if self.out is not None and cfg.checkpoint_every > 0 and s.updates % cfg.checkpoint_every == 0:
                self.checkpoint()
        bar.close()
        self._forgetting("after")
        if self.out is not None:
            self.checkpoint()
            self.save_final()
        return s

    def writes(self) -> bool:
        return self.out is not None and self.rank == 0

    # ------------------------------------------------------------------ persistence
    def checkpoint(self) -> None:
        assert self.out is not None
        if not self.writes():
            return
        d = self.out / "checkpoint"
        d.mkdir(parents=True, exist_ok=True)
        with atomic_path(d / "model.safetensors") as tmp:
            save_model(self.model, str(tmp))
        atomic_torch_save(self.opt.state_dict(), d / "optim.pt")
        teacher_model = getattr(self.teacher, "model", None)
        if getattr(self.teacher, "mode", None) == "ema" and teacher_model is not None:
            with atomic_path(d / "teacher.safetensors") as tmp:
                save_model(teacher_model, str(tmp))
        state = {"state": dataclasses.asdict(self.state), "config": dataclasses.asdict(self.cfg)}
        atomic_write_json(d / "state.json", state, indent=None)

    def _maybe_resume(self) -> None:
        assert self.out is not None
        d = self.out / "checkpoint"
        if not (d / "state.json").exists():
            return
        try:
            blob = json.loads((d / "state.json").read_text())
            missing, unexpected = load_model(self.model, str(d / "model.safetensors"), strict=False)
            if unexpected:
                raise DistillError(
                    f"{d / 'model.safetensors'}: unexpected weights {unexpected[:3]}... "
                    "(was the checkpoint written with another --lora setting?)"
                )
            self.opt.load_state_dict(safe_torch_load(d / "optim.pt", "optimiser state", DistillError))
            if (d / "teacher.safetensors").exists() and getattr(self.teacher, "mode", None) == "ema":
                load_model(self.teacher.model, str(d / "teacher.safetensors"), strict=False)  # type: ignore[attr-defined]
        except (OSError, KeyError, json.JSONDecodeError, RuntimeError) as exc:
            raise DistillError(f"{d}: cannot resume from this checkpoint: {exc}") from exc
        known = {f.name for f in dataclasses.fields(DistillState)}
        self.state = DistillState(**{k: v for k, v in blob["state"].items() if k in known})

    def final_model(self) -> torch.nn.Module:
        m = self.model
        if hasattr(m, "merge_and_unload"):
            import copy

            m = copy.deepcopy(m).merge_and_unload()
        return m

    def save_final(self) -> Path:
        assert self.out is not None
        digest = weights_digest(self.model)
        run = {
            "finetune": self.mode,
            "lr": self.lr,
            "precision": self.student.precision,
            "world_size": int(self.fabric.world_size),
            "weights_digest": digest,
        }
        if not self.writes():  # other ranks leave only their digest (ranks in step agree)
            self.out.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self.out / f"rank{self.rank}.json", run, indent=1)
            return self.out
        self.out.mkdir(parents=True, exist_ok=True)
        cast(Any, self.final_model()).save_pretrained(self.out, safe_serialization=True)  # a transformers model
        self.student.tokenizer.save_pretrained(self.out)
        write_policy_meta(self.out, self.student.policy_meta(self.env_id))
        summary: dict[str, Any] = {"config": dataclasses.asdict(self.cfg), "run": run, **dataclasses.asdict(self.state)}
        atomic_write_json(self.out / "distill.json", summary, indent=1)
        return self.out


def distill(
    student: LLMPolicy,
    teacher: Teacher,
    env: gym.Env | gym.vector.VectorEnv,
    cfg: DistillConfig | None = None,
    out: str | Path | None = None,
    eval_fn: Callable[[LLMPolicy], float] | None = None,
    env_id: str | None = None,
) -> DistillState:
    """Convenience wrapper: ``Distiller(...).run()``."""
    return Distiller(student, teacher, env, cfg, out, eval_fn, env_id).run()
