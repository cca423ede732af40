"""``dreamlab train-wm``: train (or resume) a world model from an EpisodeStore."""

from __future__ import annotations

import argparse
from pathlib import Path

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
    if final.exists():
        print(f"world model written to {final}")
    return 0
