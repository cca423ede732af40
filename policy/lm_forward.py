"""Scoring forward passes for causal LMs: what every LLM decision, teacher label and loss runs.

A decision scores K action completions after one prompt. Done naively (``plain_completion_logits``)
that is one forward pass over ``K`` copies of ``prompt + completion`` with logits over the whole
vocabulary at every position. :func:`completion_logits` gives the same numbers with far less work:

1. **Shared prefix.** The longest token prefix common to all prompts of the batch (for a chat model:
   the system prompt and the chat template's head) runs once, as one row; its KV cache is expanded
   (a view, not a copy) to every prompt.
2. **One pass per prompt.** Each distinct prompt's remaining tokens run once on top of that cache;
   the resulting cache is shared by the prompt's K completions, which then run only their own
   tokens (all but the last, whose prediction is not needed).
3. **Logits only where needed.** The language-model head is applied to the hidden states that
   predict completion tokens (``Lc`` per row), not to every position: with a 49k-token vocabulary
   that head is a fifth of the model's matmul work and most of its activation memory.

Gradients flow through all three passes (the prefix's KV is part of the graph), so training uses the
same function. Rows are right-padded and positions are given explicitly, so padding never shifts a
token's position and no query attends to nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch

from dreamlab.core.errors import DreamlabError

MIN_SHARED = 4  # a shared prefix shorter than this runs with the prompts (an extra pass costs more)


class ScoringError(DreamlabError):
    """A prompt or completion the scoring passes cannot run."""


def _pad(seqs: Sequence[Sequence[int]], width: int, pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    ids = torch.full((len(seqs), width), pad_id, dtype=torch.long)
    mask = torch.zeros((len(seqs), width), dtype=torch.long)
    for i, s in enumerate(seqs):
        if s:
            ids[i, : len(s)] = torch.tensor(list(s))
            mask[i, : len(s)] = 1
    return ids, mask


def completion_targets(completions: Sequence[Sequence[int]], pad_id: int) -> tuple[torch.Tensor, torch.Tensor]:
    """(B, Lc) completion tokens (pad where absent) and their bool mask."""
    tokens, mask = _pad(completions, max(len(c) for c in completions), pad_id)
    return tokens, mask.bool()


def common_prefix_len(seqs: Sequence[Sequence[int]]) -> int:
    first, n = seqs[0], min(len(s) for s in seqs)
    for j in range(n):
        t = first[j]
        if any(s[j] != t for s in seqs):
            return j
    return n


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def _check(prompts: Sequence[Sequence[int]], completions: Sequence[Sequence[int]]) -> None:
    if len(prompts) != len(completions) or not prompts:
        raise ScoringError(
            f"need one completion per prompt, got {len(prompts)} prompts, {len(completions)} completions"
        )
    if any(len(p) == 0 for p in prompts):
        raise ScoringError("empty prompt: the renderer wrote nothing and no separator is set")
    if any(len(c) == 0 for c in completions):
        raise ScoringError("empty completion: an action string tokenised to nothing")


def plain_completion_logits(
    model: Any, prompts: list[list[int]], completions: list[list[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The reference path: one pass over every ``prompt + completion`` row, full logits, no cache.

    Returns ``logits (B, Lc, V)`` predicting each completion token, the completion ``tokens
    (B, Lc)`` and their bool ``mask``."""
    _check(prompts, completions)
    rows = [p + c for p, c in zip(prompts, completions)]
    device = _device(model)
    ids, attn = _pad(rows, max(len(r) for r in rows), pad_id)
    tokens, mask = completion_targets(completions, pad_id)
    Lc = tokens.shape[1]
    pos = torch.zeros_like(tokens)
    for b, (p, c) in enumerate(zip(prompts, completions)):
        pos[b, : len(c)] = torch.arange(len(p) - 1, len(p) - 1 + len(c))
    logits = model(input_ids=ids.to(device), attention_mask=attn.to(device)).logits  # (B, L, V)
    idx = pos.to(device)[..., None].expand(-1, Lc, logits.shape[-1])
    return logits.gather(1, idx), tokens.to(device), mask.to(device)


def _hidden(model: Any, **kw: Any) -> tuple[torch.Tensor, Any]:
    """Final (normalised) hidden states ``(B, L, H)`` and the KV cache of one forward pass,
    without applying the language-model head to every position."""
    out = model(**kw, use_cache=True, output_hidden_states=True, logits_to_keep=1)
    return out.hidden_states[-1], out.cache


def _cache(kv: list[tuple[torch.Tensor, torch.Tensor]]) -> Any:
    from transformers import DynamicCache

    return DynamicCache(ddp_cache_data=kv)


def _kv(cache: Any) -> list[tuple[torch.Tensor, torch.Tensor]]:
    return [(layer.keys, layer.values) for layer in cache.layers]


def _rows_hidden(
    model: Any, rows: list[list[int]], P: int, pad_id: int, prefix_cache: Any, keep_cache: bool = False
) -> Any:
    """Hidden states of right-padded ``rows`` placed after a shared prefix of ``P`` tokens (its cache);
    with ``keep_cache`` also the rows' cache and their attention mask (prefix + rows)."""
    n, device = len(rows), _device(model)
    ids, rmask = _pad(rows, max(len(r) for r in rows), pad_id)
    attn = torch.cat([torch.ones((n, P), dtype=torch.long), rmask], 1)
    pos = P + torch.arange(ids.shape[1]).expand(n, -1)
    h, cache = _hidden(
        model,
        input_ids=ids.to(device),
        attention_mask=attn.to(device),
        position_ids=pos.to(device),
        cache=prefix_cache,
    )
    return (h, cache, attn) if keep_cache else h


def prefix_kv(model: Any, prefix: list[int]) -> list[tuple[torch.Tensor, torch.Tensor]]:
    """The KV cache of one row ``prefix``. Without gradients it is kept on the model between calls,
    keyed by the tokens, the autocast state and every parameter's version counter (an optimiser
    step or a weight load changes them), so acting with unchanged weights skips the prefix."""
    grad = torch.is_grad_enabled()
    key = None
    if not grad:
        versions = tuple(p._version for p in model.parameters())
        key = (tuple(prefix), versions, torch.is_autocast_enabled(_device(model).type))
        held = getattr(model, "_dreamlab_prefix_kv", None)
        if held is not None and held[0] == key:
            return held[1]
    _, cache = _hidden(model, input_ids=torch.tensor([prefix], device=_device(model)))
    kv = _kv(cache)
    if key is not None:
        object.__setattr__(model, "_dreamlab_prefix_kv", (key, kv))
    return kv


def completion_logits(
    model: Any, prompts: list[list[int]], completions: list[list[int]], pad_id: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """The same result as :func:`plain_completion_logits` (to float tolerance), computed with a
    shared prefix, one pass per distinct prompt and logits only at completion positions."""
    _check(prompts, completions)
    device = _device(model)
    tokens, mask = completion_targets(completions, pad_id)
    B, Lc = tokens.shape
    # distinct prompts; row b is prompt u[b]
    index: dict[tuple[int, ...], int] = {}
    u = torch.tensor([index.setdefault(tuple(p), len(index)) for p in prompts], dtype=torch.long)
    uniq = [list(k) for k in index]
    n = len(uniq)
    shared = common_prefix_len(uniq) if n > 1 else len(uniq[0])
    P = min(shared, min(len(p) for p in uniq) - 1)  # every prompt keeps >= 1 token of its own
    P = P if P >= MIN_SHARED else 0

    kv: list[tuple[torch.Tensor, torch.Tensor]] | None = None
    if P > 0:
        kv = [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in prefix_kv(model, uniq[0][:P])]
    suffixes = [p[P:] for p in uniq]
    slen = torch.tensor([len(s) for s in suffixes], dtype=torch.long)
    prefix_cache = _cache(kv) if kv is not None else None
    if n == B:  # one completion per prompt (training, labels): prompt and completion in one pass
        rows = [s + list(c[:-1]) for s, c in zip(suffixes, completions)]
        h = _rows_hidden(model, rows, P, pad_id, prefix_cache)
        last_pos = (slen - 1)[:, None] + torch.arange(Lc)[None]  # (B, Lc) positions predicting each token
        last_pos = torch.minimum(last_pos, torch.tensor([len(r) - 1 for r in rows])[:, None])
        hidden = h.gather(1, last_pos.to(device)[..., None].expand(-1, -1, h.shape[-1]))
    else:  # K completions per prompt: each prompt once, its cache shared by its completions
        h, cache, attn = _rows_hidden(model, suffixes, P, pad_id, prefix_cache, keep_cache=True)
        last = h[torch.arange(n, device=device), (slen - 1).to(device)]  # (n, H): predicts completion token 0
        hidden = last[u.to(device)][:, None]  # (B, 1, H)
        if Lc > 1:
            heads = [c[:-1] for c in completions]
            cids, cmask = _pad(heads, Lc - 1, pad_id)
            ud = u.to(device)
            kv_rows = [(k[ud], v[ud]) for k, v in _kv(cache)]
            attn_c = torch.cat([attn[u], cmask], 1)
            pos_c = P + slen[u][:, None] + torch.arange(Lc - 1)[None]
            hc, _ = _hidden(
                model,
                input_ids=cids.to(device),
                attention_mask=attn_c.to(device),
                position_ids=pos_c.to(device),
                cache=_cache(kv_rows),
            )
            hidden = torch.cat([hidden, hc], 1)  # (B, Lc, H)
    logits = model.get_output_embeddings()(hidden)
    return logits, tokens.to(device), mask.to(device)
