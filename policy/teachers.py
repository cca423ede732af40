"""Distillation teachers: per-token target distributions over the student's action tokens.

Both teachers answer the same question: at each token of the action completion the student
wrote (``prompt + action string + terminator``), what distribution over the *full* token
vocabulary should the next token follow? They return log-probabilities ``(B, Lc, V)``.

* :class:`ActorTeacher` wraps any :class:`~dreamlab.core.protocol.Policy` with ``action_probs`` (a
  Dreamer agent, an SB3 model, a heuristic). Its distribution ``pi(a)`` over the K action strings
  becomes an exact token-level factorisation by prefix marginalisation: at position j after the
  prefix ``s[:j]`` the target of token v is ``sum_{a: s_a[:j] = s[:j], s_a[j] = v} pi(a)`` divided by
  ``sum_{a: s_a[:j] = s[:j]} pi(a)``, so the product of the targets along any action's tokens is
  ``pi(a)``. A prefix that the teacher gives zero mass falls back to uniform over its valid
  continuations. Tokens outside the valid continuations get a floor ``smoothing / V`` (the mix is
  ``(1 - smoothing) * exact + smoothing * uniform``) so a full-vocabulary reverse KL stays finite.
  Policies without ``action_probs`` (continuous actors) give a one-hot on the nearest bin of
  ``act()``.
* :class:`ContextTeacher` is the student's own LLM with *experience* in its context (the best
  logged episodes rendered as text, or a lessons text) ahead of the student's prompt. Modes:
  ``frozen`` (a copy of the initial weights), ``live`` (the student's current weights, no
  gradient), ``ema`` (a copy that tracks the student by exponential moving average).
"""

from __future__ import annotations

import copy
from typing import Any, Protocol

import numpy as np
import torch
from einops import repeat

from dreamlab.core.errors import DreamlabError
from dreamlab.data.store import EpisodeStore
from dreamlab.policy.llm import ActionVocab, LLMPolicy, prefix_tables, tokenize
from dreamlab.policy.render import Renderer, render_batch


class TeacherError(DreamlabError):
    """A teacher that does not fit the student's action vocabulary or context window."""


class Teacher(Protocol):
    def reset(self, n: int) -> None: ...

    def observe(
        self, obs: np.ndarray, is_first: np.ndarray, prompts: list[list[int]], need_probs: bool
    ) -> np.ndarray | None:
        """Called at every env step of a rollout; returns (n, K) action probs when it has or is asked for them."""

    def token_logprobs(
        self, prompts: list[list[int]], actions: np.ndarray, probs: np.ndarray | None, temperature: float = 1.0
    ) -> torch.Tensor:
        """(B, Lc, V) target log-probs at each completion token of the taken ``actions`` (B,)."""

    def executed(self, actions: np.ndarray) -> None:
        """The env actions actually taken this step (the student's, during OPSD)."""

    def after_update(self, student: LLMPolicy) -> None: ...


def marginal_token_targets(
    probs: torch.Tensor, actions: torch.Tensor, consistent: torch.Tensor, next_tok: torch.Tensor, vocab_size: int
) -> torch.Tensor:
    """Exact per-token targets (B, Lc, V) (probabilities, zero at padded positions).

    probs (B, K) over action strings; actions (B,) the taken action indices.
    """
    B, K = probs.shape
    Lc = consistent.shape[1]
    mask = consistent[actions].to(probs.dtype)  # (B, Lc, K)
    w = repeat(probs, "b k -> b l k", l=Lc) * mask
    total = w.sum(-1, keepdim=True)  # (B, Lc, 1)
    w = torch.where(total > 0, w / total.clamp_min(1e-300), mask / mask.sum(-1, keepdim=True).clamp_min(1.0))
    idx = repeat(next_tok.T, "l k -> b l k", b=B)  # (B, Lc, K) token id of candidate k at position l
    return torch.zeros((B, Lc, vocab_size), dtype=probs.dtype).scatter_add_(-1, idx, w)


class ActorTeacher:
    """Any Policy's action distribution as exact per-token targets (see the module docstring)."""

    def __init__(
        self, policy: Any, vocab: ActionVocab, completions: list[list[int]], vocab_size: int, smoothing: float = 1e-3
    ):
        self.policy, self.vocab, self.vocab_size, self.smoothing = policy, vocab, vocab_size, smoothing
        self.completions = completions
        self.consistent, self.next_tok = prefix_tables(completions)

    @classmethod
    def for_student(cls, policy: Any, student: LLMPolicy, smoothing: float = 1e-3) -> ActorTeacher:
        return cls(policy, student.vocab, student.completions, _vocab_size(student), smoothing)

    def reset(self, n: int) -> None:
        self.policy.reset(n)

    def probs(self, obs: np.ndarray, is_first: np.ndarray | None = None) -> np.ndarray:
        """(n, K) teacher probabilities over the student's action strings (advances the policy's state)."""
        K = self.vocab.size
        if hasattr(self.policy, "action_probs") and self.vocab.values.dtype.kind in "iu":
            p = np.asarray(self.policy.action_probs(obs, is_first), np.float64)
            if p.ndim != 2 or p.shape[1] != K:
                raise TeacherError(
                    f"teacher {type(self.policy).__name__}.action_probs returned shape {p.shape}; "
                    f"expected (n, {K}) for the student's {K} actions {self.vocab.strings}"
                )
            return p / p.sum(-1, keepdims=True)
        idx = self.vocab.from_env(self.policy.act(obs, is_first))
        return np.eye(K)[idx]

    def observe(
        self, obs: np.ndarray, is_first: np.ndarray, prompts: list[list[int]], need_probs: bool = True
    ) -> np.ndarray:
        return self.probs(obs, is_first)

    def executed(self, actions: np.ndarray) -> None:
        # a recurrent teacher (DreamerAgent) must filter with the action that was really taken
        if hasattr(self.policy, "set_last_action"):
            self.policy.set_last_action(actions)

    def token_probs(self, probs: np.ndarray, actions: np.ndarray) -> torch.Tensor:
        """Exact (unsmoothed) per-token targets (B, Lc, V)."""
        return marginal_token_targets(
            torch.as_tensor(probs, dtype=torch.float64),
            torch.as_tensor(actions, dtype=torch.long),
            self.consistent,
            self.next_tok,
            self.vocab_size,
        )

    def token_logprobs(
        self, prompts: list[list[int]], actions: np.ndarray, probs: np.ndarray | None, temperature: float = 1.0
    ) -> torch.Tensor:
        if probs is None:
            raise TeacherError("ActorTeacher needs the action probabilities recorded during the rollout")
        t = self.token_probs(probs, actions)
        t = (1.0 - self.smoothing) * t + self.smoothing / self.vocab_size
        return t.log().float()

    def after_update(self, student: LLMPolicy) -> None:
        pass


def _vocab_size(student: LLMPolicy) -> int:
    emb = student.model.get_output_embeddings()
    return int(emb.weight.shape[0]) if emb is not None else int(len(student.tokenizer))


def experience_text(
    store: EpisodeStore, renderer: Renderer, vocab: ActionVocab, sep: str = " > ", best: int = 3, max_chars: int = 600
) -> str:
    """The ``best`` highest-return logged episodes rendered as decision lines, at most ``max_chars``.

    Lines are taken round-robin from the chosen episodes (their first decisions first), so a short
    budget still shows several episodes; each line is ``obs + sep + action + terminator``.
    """
    eps = sorted(store, key=lambda e: e.ret, reverse=True)[:best]
    if not eps:
        raise TeacherError(f"{store.root}: no episodes to build a context from")
    per_ep = [
        [
            t + sep + vocab.strings[i] + vocab.terminator
            for t, i in zip(render_batch(renderer, e.obs[:-1]), vocab.from_env(e.action[:-1]))
        ]
        for e in eps
    ]
    lines: list[str] = []
    total = 0
    for step in range(max(len(p) for p in per_ep)):
        for p in per_ep:
            if step < len(p):
                if total + len(p[step]) > max_chars:
                    return "".join(lines)
                lines.append(p[step])
                total += len(p[step])
    return "".join(lines)


class ContextTeacher:
    """The student's LLM with experience text ahead of its prompt (frozen, live or EMA)."""

    def __init__(self, student: LLMPolicy, context: str, mode: str = "frozen", ema_decay: float = 0.99):
        if mode not in ("frozen", "live", "ema"):
            raise TeacherError(f"context teacher mode {mode!r}: expected frozen, live or ema")
        self.student, self.mode, self.ema_decay = student, mode, ema_decay
        if mode == "live":
            self.model = student.model
        else:
            self.model = copy.deepcopy(student.model).eval()
            for p in self.model.parameters():
                p.requires_grad_(False)
        self.context_ids = tokenize(student.tokenizer, [context])[0] if context else []
        limit = getattr(getattr(student.model, "config", None), "n_positions", None) or getattr(
            getattr(student.model, "config", None), "max_position_embeddings", None
        )
        if limit is not None and len(self.context_ids) + 64 > int(limit):
            raise TeacherError(
                f"context of {len(self.context_ids)} tokens does not fit the model's "
                f"{limit} positions (config.json n_positions); shorten it (--context-chars)"
            )
        self.limit = limit

    def reset(self, n: int) -> None:
        pass

    def executed(self, actions: np.ndarray) -> None:
        pass

    def _rows(self, prompts: list[list[int]]) -> list[list[int]]:
        rows = [self.context_ids + p for p in prompts]
        if (
            self.limit is not None
            and max(len(r) for r in rows) + max(len(c) for c in self.student.completions) > self.limit
        ):
            raise TeacherError(f"context + prompt exceed the model's {self.limit} positions; shorten the context")
        return rows

    @torch.no_grad()
    def probs(self, prompts: list[list[int]]) -> np.ndarray:
        """(n, K) action probabilities of the teacher (context + prompt), one batched pass."""
        K = self.student.vocab.size
        rows = [r for r in self._rows(prompts) for _ in range(K)]
        comps = [c for _ in prompts for c in self.student.completions]
        logits, tokens, mask = self.student.lm_logits(self.model, rows, comps)
        seq = self.student.score(logits, tokens, mask).reshape(len(prompts), K)
        return torch.softmax(seq.double(), -1).cpu().numpy()

    def observe(
        self, obs: np.ndarray, is_first: np.ndarray, prompts: list[list[int]], need_probs: bool = False
    ) -> np.ndarray | None:
        return self.probs(prompts) if need_probs else None

    @torch.no_grad()
    def token_logprobs(
        self, prompts: list[list[int]], actions: np.ndarray, probs: np.ndarray | None, temperature: float = 1.0
    ) -> torch.Tensor:
        comps = [self.student.completions[int(a)] for a in actions]
        logits, _, _ = self.student.lm_logits(self.model, self._rows(prompts), comps)
        return torch.log_softmax(logits.float() / temperature, -1)

    @torch.no_grad()
    def after_update(self, student: LLMPolicy) -> None:
        if self.mode != "ema":
            return
        src = dict(student.model.named_parameters())
        for name, p in self.model.named_parameters():
            if name not in src:
                raise TeacherError(f"EMA teacher: student has no parameter {name!r} (EMA with LoRA is not supported)")
            p.mul_(self.ema_decay).add_(src[name].detach(), alpha=1.0 - self.ema_decay)
