"""What distillation forgets: the LLM's general ability on a small held-out suite, before and after.

The suite ships in :mod:`policy.general_suite` (written for this repository, held out from every
training set; see its README): ``prose.txt``, a few thousand tokens of plain English prose, and
``instructions.jsonl``, 30 short instructions with exact answers (arithmetic, capitals, unit
conversion, copying). :func:`evaluate_general` measures

* **perplexity** on the prose: the token stream is cut into fixed windows of ``window`` tokens
  (the model's context, if shorter), run in batches of ``batch`` windows under ``torch.no_grad``;
  every token after a window's first is predicted. Tokens the tokenizer cannot encode (its unknown
  token) are not scored and counted in ``unknown_tokens``;
* **instruction accuracy**: each instruction goes through the tokenizer's chat template as a user
  turn, the assistant turn opened and begun with the item's ``prefix`` (``"The capital of France
  is"``), so the exact answer is what the model writes next. Generation is greedy, batched (the
  prompts' shared head runs once, as in :mod:`policy.lm_forward`; rows are right-padded with
  explicit positions), at most ``max_new_tokens`` tokens, stopped at the end-of-turn token or a
  newline. The first line of the answer and the expected answer are both normalised (stripped,
  lower-cased, trailing punctuation and quotes removed) and must be equal. A tokenizer without a
  chat template (the toy GPT of ``make-base-llm``) gets ``Question: ...\\nAnswer: <prefix>`` and
  ``chat: false`` in the result.

:func:`forgetting_summary` turns a before and an after measurement into the ``forgetting`` block
of ``OUT/distill.json``; ``dreamlab eval-llm DIR`` prints :func:`evaluate_general` for any folder.
"""

from __future__ import annotations

import json
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from dreamlab.core.errors import DreamlabError
from dreamlab.core.precision import autocast, resolve_precision
from dreamlab.policy.lm_forward import MIN_SHARED, common_prefix_len, prefix_kv

SUITE_DIR = Path(__file__).resolve().parent / "general_suite"
SUITE_VERSION = 1
PUNCT = " \t.,!?;:\"'`"
CATEGORIES = ("arithmetic", "capital", "unit", "copy")


class ForgettingError(DreamlabError):
    """A general-suite file or an LLM that the forgetting measurement cannot use (names the file or field)."""


@dataclass(frozen=True)
class Instruction:
    prompt: str
    answer: str
    category: str
    prefix: str = ""


def normalise(text: str) -> str:
    """The first line of ``text``, stripped, lower-cased, without trailing punctuation or quotes."""
    line = text.strip().split("\n", 1)[0] if text.strip() else ""
    return line.strip().lower().rstrip(PUNCT).strip()


def load_prose(path: Path = SUITE_DIR / "prose.txt") -> str:
    """The prose, without its ``#`` header lines."""
    if not path.is_file():
        raise ForgettingError(f"{path}: general-suite prose not found (is the package installed with its data?)")
    lines = path.read_text(encoding="utf-8").splitlines()
    text = "\n".join(ln for ln in lines if not ln.startswith("#")).strip()
    if len(text.split()) < 100:
        raise ForgettingError(f"{path}: expected a few thousand tokens of prose, got {len(text.split())} words")
    return text


def load_instructions(path: Path = SUITE_DIR / "instructions.jsonl") -> list[Instruction]:
    """The instructions, checked: one JSON object a line with string ``prompt``, ``answer`` (not empty)
    and ``category`` (one of :data:`CATEGORIES`), and an optional string ``prefix``."""
    if not path.is_file():
        raise ForgettingError(f"{path}: general-suite instructions not found")
    items: list[Instruction] = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if not line.strip():
            continue
        try:
            rec = json.loads(line)
        except json.JSONDecodeError as exc:
            raise ForgettingError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
        if not isinstance(rec, dict):
            raise ForgettingError(f"{path}:{lineno}: expected a JSON object, got {type(rec).__name__}")
        for key in ("prompt", "answer", "category", "prefix"):
            if key == "prefix" and key not in rec:
                continue
            if not isinstance(rec.get(key), str) or (key != "prefix" and not rec[key].strip()):
                raise ForgettingError(
                    f"{path}:{lineno}: field '{key}' must be a non-empty string, got {rec.get(key)!r}"
                )
        if rec["category"] not in CATEGORIES:
            raise ForgettingError(
                f"{path}:{lineno}: field 'category' must be one of {CATEGORIES}, got {rec['category']!r}"
            )
        if not normalise(rec["answer"]):
            raise ForgettingError(f"{path}:{lineno}: field 'answer' is empty once normalised: {rec['answer']!r}")
        items.append(Instruction(rec["prompt"], rec["answer"], rec["category"], rec.get("prefix", "")))
    if not items:
        raise ForgettingError(f"{path}: no instructions")
    return items


def _device(model: Any) -> torch.device:
    return next(model.parameters()).device


def context_length(model: Any) -> int | None:
    cfg = getattr(model, "config", None)
    for key in ("n_positions", "max_position_embeddings"):
        n = getattr(cfg, key, None)
        if isinstance(n, int) and n > 0:
            return n
    return None


def perplexity(model: Any, tokenizer: Any, text: str, window: int = 256, batch: int = 4) -> dict[str, Any]:
    """Perplexity of ``text`` over non-overlapping windows (see the module docstring); call under no_grad."""
    ids: list[int] = list(tokenizer(text, add_special_tokens=False)["input_ids"])
    window = max(2, min(window, context_length(model) or window))
    rows = [ids[i : i + window] for i in range(0, len(ids), window)]
    rows = [r for r in rows if len(r) >= 2]
    if not rows:
        raise ForgettingError(f"the prose tokenises to {len(ids)} tokens; too few to measure perplexity")
    unk = getattr(tokenizer, "unk_token_id", None)
    device, nll, count, unknown = _device(model), 0.0, 0, 0
    for b in range(0, len(rows), batch):
        chunk = rows[b : b + batch]
        width = max(len(r) for r in chunk)
        ids_t = torch.zeros((len(chunk), width), dtype=torch.long)
        mask = torch.zeros((len(chunk), width), dtype=torch.long)
        for i, r in enumerate(chunk):
            ids_t[i, : len(r)] = torch.tensor(r)
            mask[i, : len(r)] = 1
        logits = model(input_ids=ids_t.to(device), attention_mask=mask.to(device)).logits.float()  # (B, W, V)
        targets, keep = ids_t[:, 1:].to(device), mask[:, 1:].bool().to(device)
        if unk is not None:
            is_unk = targets == int(unk)
            unknown += int((is_unk & keep).sum())
            keep &= ~is_unk
        lp = torch.nn.functional.cross_entropy(logits[:, :-1].transpose(1, 2), targets, reduction="none")  # (B, W-1)
        nll += float(lp[keep].double().sum())
        count += int(keep.sum())
    if count == 0:
        raise ForgettingError("no prose token is known to this tokenizer; perplexity cannot be measured")
    return {
        "perplexity": math.exp(nll / count),
        "tokens": count,
        "windows": len(rows),
        "window": window,
        "unknown_tokens": unknown,
    }


def instruction_prompts(tokenizer: Any, items: list[Instruction]) -> tuple[list[str], bool]:
    """Prompt texts (assistant turn opened and begun with each item's prefix) and whether they are chat."""
    if getattr(tokenizer, "chat_template", None):
        texts = []
        for it in items:
            msgs = [{"role": "user", "content": it.prompt}]
            head = tokenizer.apply_chat_template(msgs, tokenize=False, add_generation_prompt=True)
            texts.append(str(head) + it.prefix)
        return texts, True
    return [f"Question: {it.prompt}\nAnswer: {it.prefix}" for it in items], False


@dataclass
class PromptPass:
    """One batched pass over prompts: the next-token logits after each and the state to continue from."""

    logits: torch.Tensor  # (n, V) next-token logits after each prompt
    cache: Any  # the KV cache (shared head + right-padded rows)
    attn: torch.Tensor  # (n, P + width) attention mask of what the cache holds
    next_pos: torch.Tensor  # (n,) the position of each row's next token


def prompt_pass(model: Any, prompts: list[list[int]], pad_id: int) -> PromptPass:
    """Run ``prompts`` (token ids) in one batch: their shared head once (as one row, its KV cache
    expanded), then every row's own tokens right-padded with explicit positions, so padding never
    shifts a position; the language-model head only at each row's last token. Call under no_grad."""
    from transformers import DynamicCache

    if not prompts or any(not p for p in prompts):
        raise ForgettingError("a prompt tokenises to nothing")
    n, device = len(prompts), _device(model)
    P = min(common_prefix_len(prompts), min(len(p) for p in prompts) - 1) if n > 1 else len(prompts[0]) - 1
    P = P if P >= MIN_SHARED else 0
    cache = None
    if P > 0:
        kv = [(k.expand(n, -1, -1, -1), v.expand(n, -1, -1, -1)) for k, v in prefix_kv(model, prompts[0][:P])]
        cache = DynamicCache(ddp_cache_data=kv)
    slen = torch.tensor([len(p) - P for p in prompts])
    width = int(slen.max())
    ids = torch.full((n, width), pad_id, dtype=torch.long)
    attn = torch.ones((n, P + width), dtype=torch.long)
    for i, p in enumerate(prompts):
        ids[i, : len(p) - P] = torch.tensor(p[P:])
        attn[i, len(p) :] = 0
    out = model(
        input_ids=ids.to(device),
        attention_mask=attn.to(device),
        position_ids=(P + torch.arange(width).expand(n, -1)).to(device),
        cache=cache,
        use_cache=True,
        output_hidden_states=True,
        logits_to_keep=1,
    )
    h = out.hidden_states[-1][torch.arange(n, device=device), (slen - 1).to(device)]  # (n, H)
    return PromptPass(model.get_output_embeddings()(h), out.cache, attn, P + slen)


def greedy_generate(model: Any, tokenizer: Any, texts: list[str], max_new_tokens: int = 12) -> list[list[int]]:
    """Greedy continuations of ``texts`` in one batch (:func:`prompt_pass`, then one token per step on
    its cache); a row stops at an eos/pad token or a token holding a newline. Call under no_grad."""
    prompts = [list(p) for p in tokenizer(texts, add_special_tokens=False)["input_ids"]]
    limit = context_length(model)
    if limit is not None and max(len(p) for p in prompts) + max_new_tokens > limit:
        raise ForgettingError(
            f"instruction prompts of {max(len(p) for p in prompts)} tokens do not fit the context ({limit})"
        )
    n, device = len(prompts), _device(model)
    first = prompt_pass(model, prompts, int(tokenizer.pad_token_id or 0))
    logits, cache, attn = first.logits, first.cache, first.attn
    eos = {int(t) for t in (tokenizer.eos_token_id, tokenizer.pad_token_id) if t is not None}
    newline: dict[int, bool] = {}  # token id -> whether it writes a newline
    gen: list[list[int]] = [[] for _ in range(n)]
    live = torch.ones(n, dtype=torch.bool)
    for t in range(max_new_tokens):
        tok = logits.float().argmax(-1).cpu()  # (n,)
        for i in torch.nonzero(live).flatten().tolist():
            k = int(tok[i])
            if k not in newline:
                newline[k] = "\n" in tokenizer.decode([k])
            if k in eos:
                live[i] = False
                continue
            gen[i].append(k)
            if newline[k]:
                live[i] = False
        if not live.any() or t == max_new_tokens - 1:
            break
        attn = torch.cat([attn, torch.ones((n, 1), dtype=torch.long)], 1)
        out = model(
            input_ids=tok[:, None].to(device),
            attention_mask=attn.to(device),
            position_ids=(first.next_pos + t)[:, None].to(device),
            cache=cache,
            use_cache=True,
        )
        logits, cache = out.logits[:, -1], out.cache
    return gen


def instruction_accuracy(
    model: Any, tokenizer: Any, items: list[Instruction], max_new_tokens: int = 12, batch: int = 32
) -> dict[str, Any]:
    """Exact-match accuracy (in [0, 1]) of greedy answers to ``items``, overall and per category."""
    texts, chat = instruction_prompts(tokenizer, items)
    answers: list[str] = []
    for b in range(0, len(texts), batch):
        for g in greedy_generate(model, tokenizer, texts[b : b + batch], max_new_tokens):
            answers.append(tokenizer.decode(g, skip_special_tokens=True))
    right = [normalise(a) == normalise(it.answer) for a, it in zip(answers, items)]
    cats = {c: [r for r, it in zip(right, items) if it.category == c] for c in CATEGORIES}
    return {
        "instructions": sum(right) / len(items),
        "instructions_correct": int(sum(right)),
        "instructions_total": len(items),
        "by_category": {c: sum(v) / len(v) for c, v in cats.items() if v},
        "chat": chat,
        "answers": answers,
    }


def evaluate_general(
    model: Any,
    tokenizer: Any,
    precision: str = "32",
    window: int = 256,
    batch: int = 4,
    max_new_tokens: int = 12,
    answers: bool = False,
    suite: Path = SUITE_DIR,
) -> dict[str, Any]:
    """Perplexity on the suite's prose and accuracy on its instructions (module docstring).

    Returns ``perplexity``, ``instructions`` (accuracy in [0, 1]), ``tokens`` (prose tokens scored),
    ``windows``, ``window``, ``unknown_tokens``, ``instructions_correct``/``_total``, ``by_category``,
    ``chat``, ``seconds``, ``suite`` (version), ``note`` (what was measured differently, or "") and,
    with ``answers``, the model's answers."""
    prose, items = load_prose(suite / "prose.txt"), load_instructions(suite / "instructions.jsonl")
    t0 = time.perf_counter()
    prec = resolve_precision(precision, _device(model))
    with torch.no_grad(), autocast(prec, _device(model)):
        ppl = perplexity(model, tokenizer, prose, window, batch)
        acc = instruction_accuracy(model, tokenizer, items, max_new_tokens)
    notes = []
    if ppl["unknown_tokens"]:
        notes.append(f"{ppl['unknown_tokens']} prose tokens unknown to the tokenizer were not scored")
    if not acc["chat"]:
        notes.append("no chat template: plain 'Question: ... Answer:' prompts")
    res: dict[str, Any] = {**ppl, **acc, "precision": prec, "seconds": round(time.perf_counter() - t0, 2)}
    res.update(suite=SUITE_VERSION, note="; ".join(notes))
    if not answers:
        res.pop("answers")
    return res


def forgetting_summary(before: dict[str, Any], after: dict[str, Any]) -> dict[str, Any]:
    """The ``forgetting`` block of ``distill.json``: perplexity and instruction accuracy before and
    after, the relative perplexity change, the accuracy change in points and the seconds spent."""
    pb, pa = float(before["perplexity"]), float(after["perplexity"])
    ib, ia = float(before["instructions"]), float(after["instructions"])
    return {
        "perplexity_before": pb,
        "perplexity_after": pa,
        "perplexity_change": pa / pb - 1.0,
        "instructions_before": ib,
        "instructions_after": ia,
        "instructions_change_points": 100.0 * (ia - ib),
        "tokens": int(after["tokens"]),
        "instructions_total": int(after["instructions_total"]),
        "by_category_before": before.get("by_category", {}),
        "by_category_after": after.get("by_category", {}),
        "note": after.get("note", ""),
        "seconds": float(before.get("seconds", 0.0)) + float(after.get("seconds", 0.0)),
        "suite": SUITE_VERSION,
    }


def measure_forgetting(
    held: dict[str, Any],
    stage: str,
    model: Any,
    tokenizer: Any,
    precision: str = "32",
    curve: list[dict[str, float]] | None = None,
    log: str | None = None,
) -> dict[str, Any]:
    """One step of a distillation's forgetting record: ``stage="before"`` returns ``{"before": result}``;
    ``"after"`` returns :func:`forgetting_summary` of ``held``'s before and a new measurement, with the
    task return before and after from the run's eval ``curve`` (``None`` without one). With ``log``, one
    line on stderr that starts with it."""
    res = evaluate_general(model, tokenizer, precision)
    if stage == "before":
        if log is not None:
            _log(log, f"forgetting before: perplexity {res['perplexity']:.2f}, {_acc(res)} ({res['seconds']:.1f} s)")
        return {"before": res}
    if "before" in held:
        before = held["before"]
    elif "perplexity_before" in held:  # a finished run resumed with a larger budget: its summary
        before = _side(held, "before")
    else:
        raise ForgettingError("forgetting: no 'before' measurement recorded for this run")
    out = forgetting_summary(before, res)
    first, last = (curve[0], curve[-1]) if curve else (None, None)
    out["return_before"] = first["return"] if first is not None and first["labelled_tokens"] == 0 else None
    out["return_after"] = last["return"] if last is not None else None
    out["return_after_tokens"] = int(last["labelled_tokens"]) if last is not None else None
    if log is not None:
        _log(
            log,
            f"forgetting after: perplexity {out['perplexity_before']:.2f} -> {out['perplexity_after']:.2f} "
            f"({100 * out['perplexity_change']:+.1f}%), instructions {100 * out['instructions_before']:.1f}% -> "
            f"{_acc(res)} ({out['instructions_change_points']:+.1f} points; {res['seconds']:.1f} s)",
        )
    return out


def _side(block: dict[str, Any], side: str) -> dict[str, Any]:
    keys = ("perplexity", "instructions", "by_category")
    return {k: block[f"{k}_{side}"] for k in keys} | {"seconds": 0.0}


def chain_before(previous: dict[str, Any]) -> dict[str, Any]:
    """A ``forgetting`` record whose "before" is the "after" of ``previous`` (a summary of the same
    model's last distillation): set it as ``Distiller.state.forgetting`` before ``run()`` and the
    run measures only "after" (a cycle's round r starts from round r - 1's result)."""
    return {"before": _side(previous, "after")}


def _log(tag: str, msg: str) -> None:
    print(f"{tag}: {msg}", file=sys.stderr, flush=True)


def _acc(res: dict[str, Any]) -> str:
    return f"{100 * res['instructions']:.1f}% ({res['instructions_correct']}/{res['instructions_total']})"


def load_lm(path: str | Path, device: str | None = None) -> tuple[Any, Any]:
    """(model, tokenizer) of a Hugging Face causal-LM folder, in fp32 and eval mode; one-line errors."""
    from transformers import AutoModelForCausalLM, AutoTokenizer

    path = Path(path)
    if not (path / "config.json").is_file():
        raise ForgettingError(f"{path}: no config.json; expected a Hugging Face model folder (save_pretrained)")
    try:
        model: Any = AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as exc:  # noqa: BLE001 - any failure to load means a broken folder
        raise ForgettingError(f"{path}: not a loadable causal LM folder: {str(exc).splitlines()[0]}") from exc
    if device is not None:
        model = model.to(device)
    return model.eval(), tokenizer
