"""LLMPolicy: a Hugging Face causal LM acting in a gymnasium env by scoring valid action strings.

Text protocol (one decision = one line)::

    <rendered observation><sep><action string><terminator>
    x=+0.02 v=-0.15 a=+0.03 w=+0.21 > right\\n

The *prompt* is the rendered observation plus ``sep`` (default ``" > "``); each valid action is a
*completion*: its string plus the terminator (default ``"\\n"``), tokenised separately from the
prompt so every action has a fixed token sequence. Completions must be prefix-free (checked).

**History.** The prompt holds the current observation only (no earlier turns): the classic
control tasks are Markov in their observation, the prompt stays short (fast on CPU) and the same
prompt serves the student, the SFT data and the base-model pre-training. A policy that needs
memory can pass a renderer that writes it, or a ``prefix`` text placed ahead of every prompt.

**Acting.** For ``n`` observations and ``K`` actions the policy runs ONE batched forward pass
over the ``n*K`` sequences ``prompt + completion`` (right-padded) and scores each action; it then
takes the argmax (``temperature == 0``) or samples from ``softmax(logp / temperature)``. Scores
are *trie-constrained* by default: at each completion token the next-token distribution is
renormalised over the tokens that continue some valid action after that prefix, so the action
distribution is exactly what constrained token-by-token decoding would sample and exactly what
the distillation teachers target per token (``policy.teachers``); the mass the model puts on
invalid tokens is left to the full-vocabulary losses to remove. ``constrained=False`` instead
sums raw token log-probabilities and normalises over the K strings.

**Actions.** Discrete spaces map action ``i`` to a string (built-in words for the classic
control tasks, else ``"0"``, ``"1"``, ...). Box spaces are binned: ``bins`` values per dimension
from low to high (the product grid for several dimensions), each written with fixed precision.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, cast

import gymnasium as gym
import numpy as np
import torch
from einops import rearrange, repeat

from dreamlab.core.errors import DreamlabError
from dreamlab.core.io import atomic_write_json
from dreamlab.core.precision import autocast, resolve_precision
from dreamlab.data.spaces import space_from_json, space_to_json
from dreamlab.policy.lm_forward import completion_logits, plain_completion_logits
from dreamlab.policy.render import Renderer, builtin_name, get_renderer, render_batch

POLICY_FILE = "dreamlab_policy.json"

BUILTIN_WORDS: dict[str, list[str]] = {
    "CartPole": ["left", "right"],
    "MountainCar": ["left", "none", "right"],
    "Acrobot": ["-1", "0", "+1"],
}


class LLMPolicyError(DreamlabError):
    """A model folder, action vocabulary or prompt that the LLM policy cannot use."""


@dataclass
class ActionVocab:
    """Action index <-> string <-> env action."""

    strings: list[str]
    values: np.ndarray  # (K, *action_shape) env actions, one per string
    space: gym.Space
    terminator: str = "\n"

    @property
    def size(self) -> int:
        return len(self.strings)

    @classmethod
    def for_space(
        cls,
        space: gym.Space,
        env_id: str | None = None,
        strings: Sequence[str] | None = None,
        bins: int = 9,
        terminator: str = "\n",
    ) -> ActionVocab:
        values: np.ndarray
        if isinstance(space, gym.spaces.Discrete):
            n = int(space.n)
            values = np.arange(int(space.start), int(space.start) + n, dtype=np.int64)
            if strings is None:
                words = BUILTIN_WORDS.get(builtin_name(env_id) or "", None) if env_id else None
                strings = words if words is not None and len(words) == n else [str(i) for i in range(n)]
        elif isinstance(space, gym.spaces.Box):
            dim = int(np.prod(space.shape))
            if bins < 2 or bins**dim > 1024:
                raise LLMPolicyError(
                    f"Box action space {space}: {bins} bins per dimension gives {bins}**{dim} "
                    "action strings; need 2 <= bins and at most 1024 strings"
                )
            axes = [np.linspace(lo, hi, bins) for lo, hi in zip(space.low.reshape(-1), space.high.reshape(-1))]
            grid = np.stack(np.meshgrid(*axes, indexing="ij"), -1).reshape(-1, dim)  # (K, dim)
            values = grid.reshape((-1,) + space.shape).astype(space.dtype)
            if strings is None:
                strings = [" ".join(f"{v + 0.0:+.2f}" for v in row) for row in grid]
        else:
            raise LLMPolicyError(f"action space {space} is not supported (Discrete or Box)")
        strings = list(strings)
        if len(strings) != len(values) or len(set(strings)) != len(strings):
            raise LLMPolicyError(f"action strings {strings} must be {len(values)} distinct strings for {space}")
        return cls(strings, values, space, terminator)

    def to_env(self, index: np.ndarray) -> np.ndarray:
        """(n,) action indices -> (n, *action_shape) env actions."""
        return self.values[np.asarray(index, dtype=np.int64)]

    def from_env(self, actions: np.ndarray) -> np.ndarray:
        """(n, *action_shape) env actions -> (n,) indices (the nearest bin for Box spaces)."""
        a = np.asarray(actions)
        if isinstance(self.space, gym.spaces.Discrete):
            return a.reshape(-1).astype(np.int64) - int(self.space.start)
        flat = a.reshape(a.shape[0], -1).astype(np.float64)  # (n, dim)
        grid = self.values.reshape(self.size, -1).astype(np.float64)  # (K, dim)
        return np.argmin(((flat[:, None, :] - grid[None]) ** 2).sum(-1), axis=1)

    def to_json(self) -> dict[str, Any]:
        return {
            "strings": self.strings,
            "values": self.values.tolist(),
            "terminator": self.terminator,
            "action_space": space_to_json(self.space),
        }

    @classmethod
    def from_json(cls, d: dict[str, Any]) -> ActionVocab:
        space = space_from_json(d["action_space"])
        dtype = space.dtype if space.dtype is not None else np.int64
        values = np.asarray(d["values"], dtype=dtype).reshape((-1,) + tuple(space.shape or ()))
        return cls(list(d["strings"]), values, space, d.get("terminator", "\n"))


def tokenize(tokenizer: Any, texts: Sequence[str]) -> list[list[int]]:
    return [list(ids) for ids in tokenizer(list(texts), add_special_tokens=False)["input_ids"]]


def completion_ids(tokenizer: Any, vocab: ActionVocab) -> list[list[int]]:
    """Token ids of every action's completion (string + terminator); checks they are prefix-free."""
    seqs = tokenize(tokenizer, [s + vocab.terminator for s in vocab.strings])
    for i, a in enumerate(seqs):
        if not a:
            raise LLMPolicyError(f"action string {vocab.strings[i]!r} tokenises to nothing")
        for j, b in enumerate(seqs):
            if i != j and len(a) <= len(b) and b[: len(a)] == a:
                raise LLMPolicyError(
                    f"action completions {vocab.strings[i]!r} and {vocab.strings[j]!r} are "
                    "not prefix-free once tokenised; choose other action strings"
                )
    return seqs


def pad_id_of(tokenizer: Any) -> int:
    pid = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
    return int(pid if pid is not None else 0)


def prefix_tables(completions: Sequence[Sequence[int]]) -> tuple[torch.Tensor, torch.Tensor]:
    """For taken action a, position j and candidate action k:
    ``consistent[a, j, k]`` (k shares a's first j tokens and has a token j) and ``next_tok[k, j]``."""
    K, Lc = len(completions), max(len(c) for c in completions)
    consistent = torch.zeros((K, Lc, K), dtype=torch.bool)
    next_tok = torch.zeros((K, Lc), dtype=torch.long)
    for k, c in enumerate(completions):
        next_tok[k, : len(c)] = torch.tensor(list(c))
    for a, ca in enumerate(completions):
        for j in range(len(ca)):
            for k, ck in enumerate(completions):
                consistent[a, j, k] = len(ck) > j and list(ck[:j]) == list(ca[:j])
    return consistent, next_tok


def allowed_tokens(completions: Sequence[Sequence[int]], vocab_size: int) -> torch.Tensor:
    """``allowed[a, j, v]``: token v continues some valid action after action a's first j tokens
    (padded positions allow only token 0, so their masked softmax stays finite)."""
    consistent, next_tok = prefix_tables(completions)  # (K, Lc, K), (K, Lc)
    K, Lc, _ = consistent.shape
    allowed = torch.zeros((K, Lc, vocab_size), dtype=torch.bool)
    for a in range(K):
        for j in range(Lc):
            ks = consistent[a, j].nonzero().flatten()
            if len(ks) == 0:
                allowed[a, j, 0] = True
            else:
                allowed[a, j, next_tok[ks, j]] = True
    return allowed


def sequence_logprobs(logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """(B, Lc, V) logits, (B, Lc) tokens and mask -> (B,) summed log-probs of the completions."""
    lp = torch.log_softmax(logits.float(), -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, Lc)
    return (lp * mask).sum(-1)


class LLMPolicy:
    """Policy protocol over a causal LM (see the module docstring).

    ``chat`` wraps each observation in the tokenizer's chat template with ``system`` as the task
    description (:mod:`policy.prompting`); ``precision`` (``32`` or ``bf16-mixed``) is the forward
    pass's autocast; ``scoring`` is ``fast`` (shared prefix, KV cache shared by the K completions,
    logits only where needed: :mod:`policy.lm_forward`) or ``plain`` (the reference pass)."""

    def __init__(
        self,
        model: torch.nn.Module,
        tokenizer: Any,
        renderer: Renderer,
        vocab: ActionVocab,
        temperature: float = 0.0,
        seed: int | None = None,
        sep: str = " > ",
        prefix: str = "",
        renderer_name: str | None = None,
        constrained: bool = True,
        chat: bool = False,
        system: str | None = None,
        precision: str = "32",
        scoring: str = "fast",
        extra_meta: dict[str, Any] | None = None,
    ):
        # a transformers causal LM (or a PEFT wrapper of one): its methods are not nn.Module's
        self.model: Any = model
        self.tokenizer, self.renderer, self.vocab = tokenizer, renderer, vocab
        self.temperature, self.sep, self.prefix = float(temperature), sep, prefix
        self.renderer_name = renderer_name
        self.rng = np.random.default_rng(seed)
        self.pad_id = pad_id_of(tokenizer)
        self.completions = completion_ids(tokenizer, vocab)
        self.constrained = constrained
        self.chat, self.system = chat, system
        self.frame: tuple[str, str] | None = None
        if chat:
            from dreamlab.policy.prompting import chat_frame

            self.frame = chat_frame(tokenizer, system or "")
        if scoring not in ("fast", "plain"):
            raise LLMPolicyError(f"scoring: expected 'fast' or 'plain', got {scoring!r}")
        self.scoring = scoring
        self.precision = resolve_precision(precision, self.device)
        self.extra_meta = dict(extra_meta or {})
        emb = cast(Any, model).get_output_embeddings()
        vsize = int(emb.weight.shape[0]) if emb is not None else len(tokenizer)
        self.allowed = allowed_tokens(self.completions, vsize)  # (K, Lc, V)
        self.n = 1

    @property
    def device(self) -> torch.device:
        return next(self.model.parameters()).device

    # --- construction -------------------------------------------------------------------------
    @classmethod
    def from_pretrained(
        cls,
        path: str | Path,
        renderer: str | Renderer | None = None,
        action_space: gym.Space | None = None,
        env_id: str | None = None,
        strings: Sequence[str] | None = None,
        bins: int = 9,
        trust_code: bool = False,
        device: str | None = None,
        **kwargs: Any,
    ) -> LLMPolicy:
        """Load model + tokenizer from a local folder; prompting and actions from ``dreamlab_policy.json``
        there when present (written by ``make-base-llm``, ``get-llm`` and ``distill``), else from the
        arguments. A pretrained base folder records a task per env (``tasks``): ``env_id`` picks it.
        A renderer that the folder names by import path runs only with ``trust_code=True``."""
        from transformers import AutoModelForCausalLM, AutoTokenizer

        path = Path(path)
        if not (path / "config.json").exists():
            raise LLMPolicyError(f"{path}: no config.json; expected a Hugging Face model folder (save_pretrained)")
        tokenizer_files = ("tokenizer.json", "tokenizer_config.json", "vocab.json", "tokenizer.model")
        if not any((path / f).exists() for f in tokenizer_files):
            raise LLMPolicyError(f"{path}: no tokenizer files (expected one of {', '.join(tokenizer_files)})")
        meta = read_policy_meta(path)
        src = task_meta(meta, env_id)
        chat = bool(meta.get("chat", False))
        base = builtin_name(env_id or meta.get("env_id") or "") if (env_id or meta.get("env_id")) else None
        try:
            model = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
            tokenizer = AutoTokenizer.from_pretrained(path)
        except Exception as exc:  # noqa: BLE001 - any failure to load means a broken (or hostile) folder
            raise LLMPolicyError(
                f"{path}: not a loadable Hugging Face causal LM folder: {str(exc).splitlines()[0]}"
            ) from exc
        if device is not None:
            model = cast(Any, model).to(device)
        model.eval()
        name = renderer if isinstance(renderer, str) else None
        trusted = trust_code or name is not None  # a name given by the caller is the caller's choice
        if renderer is None:
            name = src.get("renderer") or (f"text:{base}" if chat and base else None) or env_id or meta.get("env_id")
            if name is None:
                raise LLMPolicyError(f"{path}/{POLICY_FILE}: no 'renderer' recorded; pass renderer= or env_id=")
        rend = (
            get_renderer(name, trusted=trusted, source=f"{path / POLICY_FILE}") if isinstance(name, str) else renderer
        )
        terminator = str(meta.get("terminator", "\n"))
        if action_space is None and "vocab" in src and strings is None:
            vocab = ActionVocab.from_json(src["vocab"])
        else:
            if action_space is None:
                raise LLMPolicyError(f"{path}/{POLICY_FILE}: no action vocabulary recorded; pass action_space=")
            vocab = ActionVocab.for_space(action_space, env_id or meta.get("env_id"), strings, bins, terminator)
        if chat:
            from dreamlab.policy.prompting import task_description

            kwargs.setdefault("system", src.get("system") or task_description(base, vocab.strings))
            kwargs.setdefault("sep", "")
        kwargs.setdefault("sep", meta.get("sep", " > "))
        extra = {k: meta[k] for k in ("tasks", "model", "pretrained") if k in meta}
        return cls(model, tokenizer, rend, vocab, renderer_name=name, chat=chat, extra_meta=extra, **kwargs)  # type: ignore[arg-type]

    @property
    def pretrained(self) -> bool:
        """A pretrained model (converted by ``get-llm``): LoRA is its default for fine-tuning."""
        return bool(self.extra_meta.get("pretrained"))

    def policy_meta(self, env_id: str | None = None) -> dict[str, Any]:
        meta: dict[str, Any] = {
            "renderer": self.renderer_name,
            "sep": self.sep,
            "env_id": env_id,
            "vocab": self.vocab.to_json(),
            **self.extra_meta,
        }
        if self.chat:
            meta.update(chat=True, system=self.system, terminator=self.vocab.terminator)
        return meta

    def save_pretrained(self, path: str | Path, env_id: str | None = None) -> None:
        """Save model (safetensors), tokenizer and the policy metadata into ``path``."""
        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        self.model.save_pretrained(path, safe_serialization=True)
        self.tokenizer.save_pretrained(path)
        write_policy_meta(path, self.policy_meta(env_id))

    # --- text --------------------------------------------------------------------------------
    def prompt_texts(self, obs: np.ndarray) -> list[str]:
        lines = render_batch(self.renderer, obs)
        if self.frame is not None:
            head, tail = self.frame
            return [head + self.prefix + t + tail for t in lines]
        return [self.prefix + t + self.sep for t in lines]

    def prompt_ids(self, obs: np.ndarray) -> list[list[int]]:
        return tokenize(self.tokenizer, self.prompt_texts(obs))

    def lm_logits(
        self, model: Any, prompts: list[list[int]], completions: list[list[int]]
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """(B, Lc, V) fp32 logits predicting each completion token of ``model`` (the student's or a
        teacher's), with this policy's scoring path and precision; and the tokens and mask."""
        fn = completion_logits if self.scoring == "fast" else plain_completion_logits
        with autocast(self.precision, self.device):
            logits, tokens, mask = fn(model, prompts, completions, self.pad_id)
        return logits.float(), tokens, mask

    # --- scoring -----------------------------------------------------------------------------
    def action_logprobs(
        self, obs: np.ndarray | None = None, prompts: list[list[int]] | None = None, grad: bool = False
    ) -> torch.Tensor:
        """(n, K) log-probabilities of the valid actions, normalised over the K actions."""
        if prompts is None:
            prompts = self.prompt_ids(np.asarray(obs))
        n, K = len(prompts), self.vocab.size
        rows = [p for p in prompts for _ in range(K)]
        comps = [c for _ in prompts for c in self.completions]
        with torch.set_grad_enabled(grad):
            logits, tokens, mask = self.lm_logits(self.model, rows, comps)
            seq = rearrange(self.score(logits, tokens, mask), "(n k) -> n k", n=n, k=K)
            return torch.log_softmax(seq, -1)

    def score(self, logits: torch.Tensor, tokens: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(n*K, Lc, V) logits of every action's completion (rows cycle through the K actions)
        -> (n*K,) log-scores; trie-constrained when ``self.constrained``."""
        if not self.constrained:
            return sequence_logprobs(logits, tokens, mask)
        K = self.vocab.size
        allowed = repeat(self.allowed.to(logits.device), "k l v -> (n k) l v", n=logits.shape[0] // K)
        masked = logits.float().masked_fill(~allowed[:, : logits.shape[1]], float("-inf"))
        lp = torch.log_softmax(masked, -1).gather(-1, tokens.unsqueeze(-1)).squeeze(-1)  # (B, Lc)
        return torch.where(mask, lp, torch.zeros_like(lp)).sum(-1)

    def choose(self, logp: torch.Tensor) -> np.ndarray:
        """(n, K) log-probs -> (n,) action indices (greedy or sampled with the temperature)."""
        lp = logp.detach().double().cpu().numpy()
        if self.temperature <= 0:
            return lp.argmax(-1)
        z = lp / self.temperature
        p = np.exp(z - z.max(-1, keepdims=True))
        p /= p.sum(-1, keepdims=True)
        u = self.rng.random((p.shape[0], 1))
        return np.minimum((p.cumsum(-1) < u).sum(-1), p.shape[1] - 1)

    # --- Policy protocol ---------------------------------------------------------------------
    def reset(self, n: int) -> None:
        self.n = n  # stateless: the prompt is the current observation only

    def act(self, obs: np.ndarray, is_first: np.ndarray | None = None) -> np.ndarray:
        return self.vocab.to_env(self.choose(self.action_logprobs(obs)))

    def action_probs(self, obs: np.ndarray, is_first: np.ndarray | None = None) -> np.ndarray:
        return self.action_logprobs(obs).exp().double().cpu().numpy()


def read_policy_meta(path: str | Path) -> dict[str, Any]:
    f = Path(path) / POLICY_FILE
    if not f.exists():
        return {}
    try:
        return json.loads(f.read_text())
    except json.JSONDecodeError as exc:
        raise LLMPolicyError(f"{f}: not valid JSON: {exc}") from exc


def task_meta(meta: dict[str, Any], env_id: str | None) -> dict[str, Any]:
    """The part of ``dreamlab_policy.json`` that describes ``env_id``: the top level when it is bound to
    that env (or to none given), else the matching entry of a pretrained base's ``tasks``."""
    tasks = meta.get("tasks") or {}
    bound = "vocab" in meta and (env_id is None or meta.get("env_id") in (None, env_id))
    if bound or not isinstance(tasks, dict):
        return meta if "vocab" in meta else {}
    if env_id in tasks:
        return dict(tasks[env_id])
    base = builtin_name(env_id) if env_id else None
    for key, task in tasks.items():
        if base is not None and builtin_name(key) == base:
            return dict(task)
    return {}


def write_policy_meta(path: str | Path, meta: dict[str, Any]) -> None:
    atomic_write_json((Path(path) / POLICY_FILE), meta, indent=2)


def evaluate(
    policy: Any, env: gym.vector.VectorEnv, episodes: int, seed: int | None = None, max_steps: int = 100_000
) -> list[float]:
    """Run ``policy`` in a vector env until ``episodes`` episodes finish; returns their returns."""
    from dreamlab.policy.rollout import VecRunner

    runner = VecRunner(env, seed=seed)
    policy.reset(runner.n)
    returns: list[float] = []
    for _ in range(max_steps):
        step = runner.step(lambda o, f: policy.act(o, f))
        returns.extend(step.finished_returns)
        if len(returns) >= episodes:
            break
    return returns[:episodes]
