"""``dreamlab eval-wm``: open-loop evaluation of a world model on held-out real episodes."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from dreamlab.config import add_run_args, apply_threads
from dreamlab.core.io import check_output_file

TRY = (
    "try more training steps (train-wm --max-steps), more or more varied logs (collect --steps, a "
    "less random --policy), or a larger --preset (tiny < small < medium)"
)


def copy_last_warning(result: dict[str, Any], try_: str = TRY) -> str | None:
    """One line when the model's open-loop error at the horizon is not below copy-last's, else None."""
    s = result["summary"]
    model, copy = s["nmse_at_horizon"], s["nmse_copy_last_at_horizon"]
    if model < copy:
        return None
    return (
        f"warning: the world model is not better than copying the last observation: {result['horizon']}-step "
        f"error {model:.3g} against copy-last {copy:.3g}; a policy practising in its dreams learns little. {try_}"
    )


def register(subparsers: argparse._SubParsersAction) -> None:
    p = subparsers.add_parser(
        "eval-wm",
        help="evaluate a world model open-loop on held-out episodes",
        description="Filter CONTEXT real steps, then imagine HORIZON steps under the real actions; "
        "report per-horizon normalised MSE, reward MAE and termination accuracy beside "
        "a copy-last-observation baseline.",
    )
    p.add_argument("--wm", type=Path, required=True, help="world-model checkpoint (OUT/world_model.ckpt)")
    p.add_argument("--logs", type=Path, required=True, help="EpisodeStore directory")
    p.add_argument("--horizon", type=int, default=15, help="imagined steps (default: 15)")
    p.add_argument("--context", type=int, default=8, help="real steps filtered first (default: 8)")
    p.add_argument(
        "--episodes",
        choices=("held-out", "all"),
        default="held-out",
        help="held-out: the validation split the model's training used (by its seed and "
        "val_fraction); all: every episode (for fresh logs). Default: held-out",
    )
    p.add_argument("--max-windows", type=int, default=1024, help="windows evaluated at most (default: 1024)")
    p.add_argument("--mode", action="store_true", help="use the latents' modes instead of samples")
    p.add_argument("--seed", type=int, default=0)
    add_run_args(p, progress=False)
    p.add_argument("--json", action="store_true", help="print the full result as JSON")
    p.add_argument(
        "--plot", type=Path, default=None, help="write error-vs-horizon plot (PNG; an existing file only with --force)"
    )
    p.add_argument(
        "--frames",
        type=Path,
        default=None,
        help="pixel world models: write a PNG of real frames beside dreamed ones (filtered over --context "
        "real frames, then imagined open loop under the logged actions, up to --horizon) for "
        "--frames-episodes episodes of the split (an existing file only with --force)",
    )
    p.add_argument("--frames-episodes", type=int, default=2, help="episodes drawn in --frames (default: 2)")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:

    from dreamlab.data.sampling import split_names
    from dreamlab.plots import plot_openloop_panels
    from dreamlab.worldmodel.evaluate import evaluate
    from dreamlab.worldmodel.model import WorldModel
    from dreamlab.worldmodel.train import open_logs

    apply_threads(args.threads)
    if args.plot is not None:
        check_output_file(args.plot, args.force, "--plot", inputs=[args.logs])
    if args.frames is not None:
        check_output_file(args.frames, args.force, "--frames", inputs=[args.logs])
    model = WorldModel.load(args.wm)
    if args.frames is not None and not model.image:
        raise ValueError(f"--frames: {args.wm} models observations of shape {model.obs_shape}, not 64x64 images")
    store = open_logs(args.logs)
    model.check_spaces(store.observation_space, store.action_space, Path(args.logs) / "metadata.json")
    names = store.names()
    if args.episodes == "held-out":
        _, held = split_names(names, model.cfg.val_fraction, model.cfg.seed)
        if not held:
            print("note: no held-out split (val_fraction 0 or one episode); using all episodes", file=sys.stderr)
            held = names
        names = held
    result = evaluate(
        model,
        store.episodes(names),
        context=args.context,
        horizon=args.horizon,
        max_windows=args.max_windows,
        seed=args.seed,
        sample=not args.mode,
    )
    result.update({"wm": str(args.wm), "logs": str(args.logs), "split": args.episodes})
    result["warning"] = copy_last_warning(result)
    if args.plot is not None:
        args.plot.parent.mkdir(parents=True, exist_ok=True)
        plot_openloop_panels(result, str(args.plot), title=f"{store.env_id or args.logs}")
        result["plot"] = str(args.plot)
    if args.frames is not None:
        result["frames"] = str(_write_frames(args, model, store.episodes(names), store.env_id))
    if args.json:
        print(json.dumps(result, indent=1))
    else:
        _print_table(result)
    if result["warning"]:
        print(result["warning"], file=sys.stderr)
    return 0


def _print_table(r: dict) -> None:
    print(
        f"{r['episodes']} episodes, {r['windows']} windows, context {r['context']}, reward source {r['reward_source']}"
    )
    print(f"{'h':>3} {'nmse':>10} {'copy-last':>10} {'rew MAE':>9} {'copy MAE':>9} {'term acc':>9}")
    for h in range(r["horizon"]):
        print(
            f"{h + 1:>3} {r['nmse'][h]:>10.4f} {r['nmse_copy_last'][h]:>10.4f} {r['reward_mae'][h]:>9.4f} "
            f"{r['reward_mae_copy_last'][h]:>9.4f} {r['term_acc'][h]:>9.3f}"
        )
    s, o = r["summary"], r["one_step"]
    print(f"horizon {r['horizon']}: copy-last / model = {s['ratio_copy_last_over_model_at_horizon']:.2f}x")
    bal = o["term_balanced_acc"]
    print(
        f"one step ahead: termination balanced accuracy "
        f"{'n/a (no terminals)' if bal is None else f'{bal:.3f}'} over {o['steps']} steps "
        f"({o['terminals']} terminal), reward MAE {o['reward_mae']:.4f}"
    )


def _write_frames(args: argparse.Namespace, model: Any, episodes: list[Any], env_id: str | None) -> Path:
    """``--frames``: real vs dreamed frames of ``--frames-episodes`` episodes (:mod:`dreamlab.frames`)."""
    from dreamlab.frames import default_horizons, dream_frames, pick_episode, plot_frames

    if args.frames_episodes < 1:
        raise ValueError(f"--frames-episodes must be >= 1, got {args.frames_episodes}")
    horizons = default_horizons(args.horizon)
    span = args.context + args.horizon
    rest, drawn = list(episodes), []
    for i in range(min(args.frames_episodes, len(rest))):
        ep = pick_episode(rest, span, seed=args.seed + i)
        rest = [e for e in rest if e is not ep]
        drawn.append(dream_frames(model, ep, args.context, horizons, sample=not args.mode))
    title = f"{env_id or args.logs}: real (top) vs dreamed (below) under the logged actions"
    return plot_frames(drawn, args.frames, title=title)
