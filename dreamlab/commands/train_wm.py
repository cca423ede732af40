"""``dreamlab train-wm``: train (or resume) a world model from an EpisodeStore."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dreamlab.config import add_config_args, add_run_args, apply_threads, config_from_args
from dreamlab.core.precision import PRECISIONS
from dreamlab.worldmodel.config import PRESETS, REWARD_SOURCES, WorldModelConfig, preset


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "train-wm",
        help="train a world model from logs",
        description="Train an RSSM world model on an EpisodeStore. Writes OUT/last.ckpt (resume "
        "point; a second run with the same OUT resumes), OUT/logs (CSV), OUT/tb "
        "(TensorBoard) and OUT/world_model.ckpt (final weights, for --wm).",
    )
    p.add_argument("--logs", type=Path, required=True, help="EpisodeStore directory")
    p.add_argument("--out", type=Path, required=True, help="output directory")
    p.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        default="small",
        help="size preset (default: small, the 2-core CPU default)",
    )
    p.add_argument("--max-steps", type=int, default=5000, help="training steps (default: 5000)")
    p.add_argument(
        "--max-minutes",
        type=float,
        default=None,
        help="wall-clock safety net: stop after this many minutes even if --max-steps is not reached "
        "(a warning says so and train_summary.json records cut_short)",
    )
    p.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="32 | bf16-mixed | auto: bf16-mixed where bf16 is fast (CUDA, or a CPU with AMX/AVX512-BF16), else 32",
    )
    p.add_argument(
        "--reward",
        choices=REWARD_SOURCES,
        default=None,
        help="reward source: env reward, logged feedback, or both (default: env)",
    )
    p.add_argument("--strategy", default="auto", help="Lightning strategy, e.g. ddp (default: auto)")
    p.add_argument("--devices", default="1", help="devices per node (default: 1)")
    p.add_argument("--accelerator", default="auto", help="cpu | gpu | auto (default: auto)")
    p.add_argument("--ckpt-every", type=int, default=500, help="steps between checkpoints (default: 500)")
    p.add_argument("--no-resume", action="store_true", help="start afresh even if OUT/last.ckpt exists")
    p.add_argument(
        "--check-horizon",
        type=int,
        default=15,
        help="after training, score the model open-loop this many steps on the held-out episodes against "
        "copy-last (a warning when it is not better; train_summary.json field 'openloop'); 0: skip (default: 15)",
    )
    add_run_args(p)
    add_config_args(p, WorldModelConfig, "world model config (overrides the preset)", skip=("reward_source",))
    p.set_defaults(func=run)


def build_config(args: argparse.Namespace) -> WorldModelConfig:
    cfg = config_from_args(WorldModelConfig, args, base=preset(args.preset))
    if args.reward is not None:
        cfg.reward_source = args.reward
    return cfg.validate()


def run(args: argparse.Namespace) -> int:

    from dreamlab.worldmodel.train import train

    apply_threads(args.threads)
    devices: int | str = int(args.devices) if str(args.devices).isdigit() else args.devices
    cfg = build_config(args)
    final = train(
        args.logs,
        args.out,
        cfg,
        max_steps=args.max_steps,
        max_minutes=args.max_minutes,
        precision=args.precision,
        strategy=args.strategy,
        devices=devices,
        accelerator=args.accelerator,
        ckpt_every=args.ckpt_every,
        progress=args.progress,
        resume=not args.no_resume,
    )
    from lightning.fabric.utilities.rank_zero import rank_zero_only

    if final.exists() and getattr(rank_zero_only, "rank", 0) == 0:  # rank 0 only under ddp
        print(f"world model written to {final}")
        if args.check_horizon > 0:
            check_against_copy_last(final, args, cfg)
    return 0


def check_against_copy_last(final: Path, args: argparse.Namespace, cfg: Any) -> dict[str, Any]:
    """Open-loop error at ``--check-horizon`` on the held-out split (256 windows) against copy-last;
    printed, added to OUT/train_summary.json as 'openloop', and a warning when it is not better."""
    from dreamlab.commands.eval_wm import copy_last_warning
    from dreamlab.core.io import atomic_write_json
    from dreamlab.data.sampling import split_names
    from dreamlab.worldmodel.evaluate import evaluate
    from dreamlab.worldmodel.model import WorldModel
    from dreamlab.worldmodel.train import open_logs

    model, store = WorldModel.load(final), open_logs(args.logs)
    train_names, held = split_names(store.names(), model.cfg.val_fraction, model.cfg.seed)
    episodes = store.episodes(held or train_names)
    context = 8
    horizon = min(args.check_horizon, max(ep.length for ep in episodes) - context)
    info: dict[str, Any] = {"horizon": horizon, "split": "held-out" if held else "train (no held-out split)"}
    if horizon < 1:
        info["warning"] = None
        info["note"] = f"episodes too short for context {context} + 1 step: not scored"
    else:
        result = evaluate(model, episodes, context=context, horizon=horizon, max_windows=256, seed=0)
        bigger = {"tiny": "small", "small": "medium", "medium": "large"}.get(args.preset)
        try_ = f"try --max-steps {2 * args.max_steps}, more logs (collect --steps)" + (
            f", or --preset {bigger}" if bigger else ""
        )
        info.update(
            nmse_at_horizon=result["summary"]["nmse_at_horizon"],
            copy_last_at_horizon=result["summary"]["nmse_copy_last_at_horizon"],
            windows=result["windows"],
            warning=copy_last_warning(result, try_),
        )
        print(
            f"open loop ({info['split']}): {horizon}-step error {info['nmse_at_horizon']:.4g}, "
            f"copy-last {info['copy_last_at_horizon']:.4g}"
        )
    if info["warning"]:
        print(info["warning"], file=sys.stderr)
    path = args.out / "train_summary.json"
    if path.exists():
        summary = json.loads(path.read_text())
        summary["openloop"] = info
        atomic_write_json(path, summary, indent=1)
    return info
