"""``dreamlab eval-llm``: an LLM's general ability on the held-out suite (perplexity, instruction accuracy)."""

from __future__ import annotations

import argparse
import json
import sys

from dreamlab.config import add_run_args, apply_threads


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval-llm",
        help="perplexity on held-out prose and accuracy on short instructions of an LLM folder",
        description="Measure what distillation may make an LLM forget (policy.forgetting): perplexity on the "
        "general suite's prose (a few thousand tokens written for this repository) and exact-match accuracy "
        "on its 30 short instructions (arithmetic, capitals, unit conversion, copying), answered greedily "
        "through the chat template. The same figures as 'forgetting' in a distillation's distill.json.",
    )
    p.add_argument(
        "dir", help="LLM folder (Hugging Face causal LM) or a known name (smollm2-135m-instruct: prepared once)"
    )
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--answers", action="store_true", help="also show the model's answer to every instruction")
    p.add_argument("--precision", default="32", help="32 | bf16-mixed | auto (Lightning's words)")
    p.add_argument("--window", type=int, default=256, help="perplexity window (tokens)")
    p.add_argument("--device", default=None, help="torch device (default: cpu)")
    add_run_args(p, progress=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from dreamlab.policy.forgetting import evaluate_general, load_instructions, load_lm
    from dreamlab.policy.pretrained import resolve_llm

    apply_threads(args.threads)
    if args.window < 2:
        raise ValueError(f"--window: expected at least 2 tokens, got {args.window}")
    folder = resolve_llm(args.dir, log=lambda m: print(m, file=sys.stderr, flush=True))
    model, tokenizer = load_lm(folder, args.device)
    res = {"llm": str(folder), **evaluate_general(model, tokenizer, args.precision, args.window, answers=args.answers)}
    if args.json:
        print(json.dumps(res, indent=1))
        return 0
    print(f"{folder}: general suite v{res['suite']} ({res['seconds']:.1f} s, precision {res['precision']})")
    print(f"  perplexity    {res['perplexity']:.2f}  ({res['tokens']} prose tokens, {res['windows']} windows)")
    print(
        f"  instructions  {100 * res['instructions']:.1f}%  ({res['instructions_correct']}/{res['instructions_total']})"
    )
    for cat, acc in res["by_category"].items():
        print(f"    {cat:<12}{100 * acc:5.1f}%")
    if res["note"]:
        print(f"  note: {res['note']}")
    if args.answers:
        for item, answer in zip(load_instructions(), res["answers"]):
            print(f"  {item.prompt!r} -> {(item.prefix + answer)!r} (expected {item.answer!r})")
    return 0
