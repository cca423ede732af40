"""``dreamlab make-base-llm``: build a small GPT-2 base LLM locally and pre-train it on logs."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dreamlab.config import add_config_args, add_run_args, apply_threads, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    from dreamlab.policy.base_llm import BaseLLMConfig

    p = subparsers.add_parser(
        "make-base-llm",
        help="build and pre-train a small base LLM on text-rendered logs",
        description="Build a character-level tokenizer and a small GPT-2 model, pre-train it as a "
        "causal LM on the episodes in LOGS written as 'observation > action' lines (so "
        "it writes valid actions, imitating the logged agent) and save it to OUT with "
        "save_pretrained (safetensors). AutoModelForCausalLM/AutoTokenizer load OUT; "
        "LLMPolicy.from_pretrained(OUT) acts with it.",
    )
    p.add_argument("--logs", required=True, type=Path, help="episode store to pre-train on")
    p.add_argument("--out", required=True, type=Path, help="model folder to write")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_run_args(p, progress=False)
    add_config_args(p, BaseLLMConfig, "base model")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from dreamlab.policy.base_llm import BaseLLMConfig, make_base_llm

    apply_threads(args.threads)
    cfg = config_from_args(BaseLLMConfig, args)
    summary = make_base_llm(args.logs, args.out, cfg)
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(
            f"saved a {summary['parameters']:,}-parameter base LLM to {args.out} (pre-trained on "
            f"{summary['decisions']} decisions in {summary['pretrain_seconds']:.0f}s; final loss "
            f"{summary['final_loss']:.3f}; writes a valid action {100 * summary['valid_rate']:.0f}% of the "
            f"time, the logged one {100 * summary.get('agreement', 0):.0f}%)"
        )
    return 0
