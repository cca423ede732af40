"""A base language model made here: a small GPT-2 pre-trained on text-rendered logs.

No model can be downloaded, so :func:`make_base_llm` builds one: a character-level tokenizer
(printable ASCII plus newline, and ``<pad>``/``<unk>``/``<eos>``; a ``tokenizers`` WordLevel model
behind a ``PreTrainedTokenizerFast``, so ``AutoTokenizer.from_pretrained(dir)`` loads it) and a
``GPT2LMHeadModel`` with a few layers. It is pre-trained as a causal LM on the logs written as
decision lines (:mod:`policy.llm`'s text protocol)::

    x=+0.02 v=-0.15 a=+0.03 w=+0.21 > right
    x=+0.02 v=+0.04 a=+0.03 w=-0.08 > left

Training windows start at a line boundary and run over consecutive lines of an episode, so the
model sees both a lone prompt at position 0 (as LLMPolicy asks) and multi-line context (as the
ContextTeacher gives it). Action tokens weigh 1 in the loss and observation text
``text_weight``: the model learns to write *valid* actions that imitate the logged agent,
while still reading the number format. The result is saved with ``save_pretrained`` in
safetensors, with ``dreamlab_policy.json`` (renderer, separator, action vocabulary) beside it.
"""

from __future__ import annotations

import math
import time
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamlab.core.errors import DreamlabError
from dreamlab.core.io import atomic_write_json
from dreamlab.data.episodes import Episode
from dreamlab.data.store import EpisodeStore
from dreamlab.policy.llm import ActionVocab, LLMPolicy, tokenize
from dreamlab.policy.render import builtin_name, get_renderer, render_batch

SPECIALS = ["<pad>", "<unk>", "<eos>"]
CHARS = [chr(i) for i in range(32, 127)] + ["\n"]


class BaseLLMError(DreamlabError):
    """Logs or settings from which no base model can be made (names the file or field)."""


@dataclass
class BaseLLMConfig:
    n_layer: int = 2
    n_embd: int = 64
    n_head: int = 4
    n_positions: int = 1024
    block_size: int = 192  # training window (characters)
    batch_size: int = 16
    steps: int = 600
    lr: float = 3e-3
    warmup: int = 30
    text_weight: float = 0.2  # loss weight of observation characters (action tokens weigh 1)
    renderer: str = ""  # "" = the built-in renderer of the store's env id
    sep: str = " > "
    bins: int = 9  # per dimension, for Box action spaces
    seed: int = 0
    progress: bool = True


def char_tokenizer() -> Any:
    """A character-level ``PreTrainedTokenizerFast`` over printable ASCII and newline."""
    from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
    from transformers import PreTrainedTokenizerFast

    vocab = {t: i for i, t in enumerate(SPECIALS + CHARS)}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, pad_token="<pad>", unk_token="<unk>", eos_token="<eos>", bos_token="<eos>"
    )


def build_model(cfg: BaseLLMConfig, vocab_size: int, pad_id: int, eos_id: int) -> torch.nn.Module:
    from transformers import GPT2Config, GPT2LMHeadModel

    if cfg.n_embd % cfg.n_head:
        raise BaseLLMError(f"n_embd ({cfg.n_embd}) must be divisible by n_head ({cfg.n_head})")
    conf = GPT2Config(
        vocab_size=vocab_size,
        n_positions=cfg.n_positions,
        n_embd=cfg.n_embd,
        n_layer=cfg.n_layer,
        n_head=cfg.n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=eos_id,
        eos_token_id=eos_id,
        pad_token_id=pad_id,
    )
    torch.manual_seed(cfg.seed)
    return GPT2LMHeadModel(conf)


def episode_lines(
    store: EpisodeStore | Iterable[Episode], renderer: Any, vocab: ActionVocab, sep: str
) -> list[list[tuple[str, str]]]:
    """Per episode (of a store or any iterable of episodes), its decisions as (prompt, completion) text pairs."""
    out = []
    for ep in store:
        if ep.num_steps < 1:
            continue
        idx = vocab.from_env(ep.action[:-1])
        out.append(
            [(t + sep, vocab.strings[i] + vocab.terminator) for t, i in zip(render_batch(renderer, ep.obs[:-1]), idx)]
        )
    if not out:
        raise BaseLLMError(
            f"{getattr(store, 'root', '<episodes>')}: no episode with at least one transition to train on"
        )
    return out


class LineCorpus:
    """All decision lines as one token stream with per-token loss weights and line starts."""

    def __init__(self, episodes: list[list[tuple[str, str]]], tokenizer: Any, text_weight: float):
        ids, weights, starts, prompts, actions = [], [], [], [], []
        flat = [pc for ep in episodes for pc in ep]
        p_ids = tokenize(tokenizer, [p for p, _ in flat])
        c_ids = tokenize(tokenizer, [c for _, c in flat])
        pos = 0
        for p, c in zip(p_ids, c_ids):
            starts.append(pos)
            ids.extend(p + c)
            weights.extend([text_weight] * len(p) + [1.0] * len(c))
            pos += len(p) + len(c)
            prompts.append(p)
            actions.append(c)
        self.ids = np.asarray(ids, np.int64)
        self.weights = np.asarray(weights, np.float32)
        self.starts = np.asarray(starts, np.int64)
        self.prompts, self.completions = prompts, actions

    def sample(self, rng: np.random.Generator, batch: int, block: int, pad_id: int) -> tuple[torch.Tensor, ...]:
        """(batch, block+1) token windows from line starts and their (batch, block) target weights."""
        s = self.starts[rng.integers(0, len(self.starts), batch)]
        idx = s[:, None] + np.arange(block + 1)[None]  # (batch, block+1)
        ok = idx < len(self.ids)
        idx = np.minimum(idx, len(self.ids) - 1)
        x = np.where(ok, self.ids[idx], pad_id)
        w = np.where(ok, self.weights[idx], 0.0)[:, 1:]
        return torch.from_numpy(x), torch.from_numpy(w.astype(np.float32))


def pretrain(model: torch.nn.Module, corpus: LineCorpus, cfg: BaseLLMConfig, pad_id: int) -> list[float]:
    from dreamlab.core.progress import Progress
    from dreamlab.core.quiet import quiet_third_party

    quiet_third_party()  # transformers' own bars (saving, loading) stay out of a log
    rng = np.random.default_rng(cfg.seed)
    opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=0.01)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt,
        lambda i: (
            min(1.0, (i + 1) / max(1, cfg.warmup)) * 0.5 * (1 + math.cos(math.pi * min(1.0, i / max(1, cfg.steps))))
        ),
    )
    model.train()
    losses: list[float] = []
    bar = Progress(range(cfg.steps), desc="pre-train base LLM", unit="step", enabled=cfg.progress)
    for _ in bar:
        x, w = corpus.sample(rng, cfg.batch_size, cfg.block_size, pad_id)  # (B, L+1), (B, L)
        logits = model(input_ids=x[:, :-1], attention_mask=(x[:, :-1] != pad_id).long()).logits  # (B, L, V)
        nll = torch.nn.functional.cross_entropy(logits.flatten(0, 1), x[:, 1:].flatten(), reduction="none")
        loss = (nll * w.flatten()).sum() / w.sum().clamp_min(1e-6)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        losses.append(float(loss.detach()))
        bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
    model.eval()
    return losses


@torch.no_grad()
def generation_check(
    model: torch.nn.Module,
    tokenizer: Any,
    prompts: list[list[int]],
    vocab: ActionVocab,
    targets: list[str] | None = None,
) -> dict[str, float]:
    """Free greedy generation after each prompt: the share of valid action strings, and (given the
    logged actions) the share equal to them."""
    longest = max(len(tokenize(tokenizer, [s + vocab.terminator])[0]) for s in vocab.strings)
    L = max(len(p) for p in prompts)
    pad = tokenizer.pad_token_id
    ids = torch.full((len(prompts), L), pad, dtype=torch.long)
    attn = torch.zeros_like(ids)
    for i, p in enumerate(prompts):  # left padding for generation
        ids[i, L - len(p) :] = torch.tensor(p)
        attn[i, L - len(p) :] = 1
    pos = (attn.cumsum(-1) - 1).clamp_min(0)
    out = ids
    mask = attn
    for _ in range(longest):
        logits = model(input_ids=out, attention_mask=mask, position_ids=pos).logits[:, -1]
        nxt = logits.argmax(-1, keepdim=True)
        out = torch.cat([out, nxt], 1)
        mask = torch.cat([mask, torch.ones_like(nxt)], 1)
        pos = torch.cat([pos, pos[:, -1:] + 1], 1)
    texts = tokenizer.batch_decode(out[:, L:], skip_special_tokens=False)
    written = [t.split(vocab.terminator)[0] if vocab.terminator in t else None for t in texts]
    valid = [w in vocab.strings for w in written]
    res = {"valid_rate": float(np.mean(valid))}
    if targets is not None:
        res["agreement"] = float(np.mean([w == t for w, t in zip(written, targets)]))
    return res


def make_base_llm(logs_dir: str | Path, out_dir: str | Path, cfg: BaseLLMConfig | None = None) -> dict[str, Any]:
    """Build, pre-train and save the base LLM; returns a summary (also written to ``base_llm.json``)."""
    cfg = cfg or BaseLLMConfig()
    torch.manual_seed(cfg.seed)
    store = EpisodeStore(logs_dir)
    env_id = store.env_id
    name = cfg.renderer or (builtin_name(env_id) if env_id else None)
    if not name:
        raise BaseLLMError(
            f"{Path(logs_dir) / 'metadata.json'}: env id {env_id!r} has no built-in renderer; "
            "pass --renderer module:function (or 'generic')"
        )
    renderer = get_renderer(name)
    vocab = ActionVocab.for_space(store.action_space, env_id, bins=cfg.bins)
    tokenizer = char_tokenizer()
    episodes = episode_lines(store, renderer, vocab, cfg.sep)
    corpus = LineCorpus(episodes, tokenizer, cfg.text_weight)
    longest_line = int(np.diff(np.append(corpus.starts, len(corpus.ids))).max())
    if longest_line + 8 > cfg.n_positions or cfg.block_size + 1 > cfg.n_positions:
        raise BaseLLMError(
            f"n_positions ({cfg.n_positions}) is too small for lines of {longest_line} "
            f"characters or block_size {cfg.block_size}"
        )
    model = build_model(cfg, len(tokenizer), tokenizer.pad_token_id, tokenizer.eos_token_id)
    t0 = time.perf_counter()
    losses = pretrain(model, corpus, cfg, tokenizer.pad_token_id)
    seconds = time.perf_counter() - t0
    rng = np.random.default_rng(cfg.seed + 1)
    pick = rng.choice(len(corpus.prompts), size=min(256, len(corpus.prompts)), replace=False)
    check = generation_check(
        model,
        tokenizer,
        [corpus.prompts[i] for i in pick],
        vocab,
        [tokenizer.decode(corpus.completions[i])[: -len(vocab.terminator)] for i in pick],
    )
    policy = LLMPolicy(model, tokenizer, renderer, vocab, sep=cfg.sep, renderer_name=name)
    out = Path(out_dir)
    policy.save_pretrained(out, env_id)
    summary = {
        "logs": str(logs_dir),
        "env_id": env_id,
        "renderer": name,
        "episodes": len(episodes),
        "decisions": len(corpus.prompts),
        "characters": int(len(corpus.ids)),
        "parameters": int(sum(p.numel() for p in model.parameters())),
        "final_loss": float(np.mean(losses[-20:])),
        "pretrain_seconds": seconds,
        **check,
        "config": asdict(cfg),
    }
    atomic_write_json(out / "base_llm.json", summary, indent=1)
    return summary


def finetune_on_episodes(policy: LLMPolicy, episodes: Iterable[Episode], cfg: BaseLLMConfig) -> list[float]:
    """Supervised fine-tuning of ``policy``'s model on logged episodes (the same objective as the
    pre-training: the action characters of every decision line, observation text weighted by
    ``cfg.text_weight``), in place. Used as the "no dreaming" baseline: SFT on the best episodes."""
    torch.manual_seed(cfg.seed)
    corpus = LineCorpus(
        episode_lines(episodes, policy.renderer, policy.vocab, policy.sep), policy.tokenizer, cfg.text_weight
    )
    return pretrain(policy.model, corpus, cfg, policy.pad_id)
