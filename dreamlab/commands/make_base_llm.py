"""``dreamlab make-base-llm``: build a small GPT-2 base LLM locally and pre-train it on logs."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from dreamlab.config import add_config_args, config_from_args


def register(subparsers: argparse._SubParsersAction) -> None:
    from policy.base_llm import BaseLLMConfig

    p = subparsers.add_parser(
        "make-base-llm", help="build and pre-train a small base LLM on text-rendered logs",
        description="Build a character-level tokenizer and a small GPT-2 model, pre-train it as a "
                    "causal LM on the episodes in LOGS written as 'observation > action' lines (so "
                    "it writes valid actions, imitating the logged agent) and save it to OUT with "
                    "save_pretrained (safetensors). AutoModelForCausalLM/AutoTokenizer load OUT; "
                    "LLMPolicy.from_pretrained(OUT) acts with it.")
    p.add_argument("--logs", required=True, type=Path, help="episode store to pre-train on")
    p.add_argument("--out", required=True, type=Path, help="model folder to write")
    p.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_config_args(p, BaseLLMConfig, "base model", skip=("progress",))
    p.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import torch

    from policy.base_llm import BaseLLMConfig, make_base_llm

    torch.set_num_threads(max(1, torch.get_num_threads()))
    try:
        cfg = config_from_args(BaseLLMConfig, args)
        cfg.progress = not args.no_progress
        summary = make_base_llm(args.logs, args.out, cfg)
    except ValueError as exc:  # StoreError, EpisodeError, RendererError, BaseLLMError, ...
        print(f"dreamlab make-base-llm: error: {exc}", file=sys.stderr)
        return 1
    if args.json:
        print(json.dumps(summary, indent=1))
    else:
        print(f"saved a {summary['parameters']:,}-parameter base LLM to {args.out} (pre-trained on "
              f"{summary['decisions']} decisions in {summary['pretrain_seconds']:.0f}s; final loss "
              f"{summary['final_loss']:.3f}; writes a valid action {100 * summary['valid_rate']:.0f}% of the "
              f"time, the logged one {100 * summary.get('agreement', 0):.0f}%)")
    return 0
