"""World-model targets (issue 3, item 7), measured end to end on this machine.

For each env: collect ``--steps`` transitions with the noisy heuristic behaviour policy
(``data.behaviour.make_behaviour``; CartPole at ``CARTPOLE_MEDIOCRE_EPSILON``), train a
``--preset`` world model for at most ``--minutes`` wall-clock minutes (Lightning ``max_time``),
then evaluate open-loop on the held-out episodes (context 8, horizon 15) next to copy-last.

Targets: CartPole-v1: horizon-15 normalised MSE >= 5x below copy-last; termination balanced
accuracy >= 95% one step ahead. Pendulum-v1: reward MAE reported.

    python -m dreamlab.benchmarks.wm_targets                       # full: 20k steps, 10 minutes per env
    python -m dreamlab.benchmarks.wm_targets --minutes 3 --envs CartPole-v1 --out /tmp/t.json   # tuning

Writes ``benchmarks/results/wm_targets.json`` (machine, threads, conditions, figures).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch

from dreamlab.core.io import atomic_write_json
from dreamlab.core.machine import run_manifest
from dreamlab.data.behaviour import CARTPOLE_MEDIOCRE_EPSILON
from dreamlab.data.collect import collect
from dreamlab.data.sampling import split_names
from dreamlab.data.store import EpisodeStore
from dreamlab.plots import plot_openloop_panels
from dreamlab.worldmodel.config import preset
from dreamlab.worldmodel.evaluate import evaluate
from dreamlab.worldmodel.model import WorldModel
from dreamlab.worldmodel.train import train

RESULTS = Path(__file__).resolve().parent / "results"
EPSILON = {"CartPole-v1": CARTPOLE_MEDIOCRE_EPSILON, "Pendulum-v1": 0.3}


def collect_logs(env_id: str, steps: int, epsilon: float, seed: int, out: Path) -> EpisodeStore:
    """The noisy heuristic behaviour through the data layer's collector."""
    collect(env_id, "heuristic", steps, num_envs=4, seed=seed, out=out, epsilon=epsilon, progress=False)
    return EpisodeStore(out)


class CpuBudget(L.Callback):
    """Stop training once this process has used ``minutes`` of CPU time (one thread: what a
    dedicated core gives in that many wall-clock minutes; robust to other jobs on a shared CPU)."""

    def __init__(self, minutes: float):
        self.limit = minutes * 60.0
        self.start = 0.0
        self.used = 0.0

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        self.start = time.process_time()

    def on_train_batch_end(self, trainer: L.Trainer, *args: Any) -> None:
        self.used = time.process_time() - self.start
        if self.used >= self.limit:
            trainer.should_stop = True


def run_env(env_id: str, args: argparse.Namespace, work: Path) -> dict[str, Any]:
    logs = work / f"{env_id}-logs"
    if not (logs / "metadata.json").exists():
        t0 = time.perf_counter()
        collect_logs(env_id, args.steps, EPSILON.get(env_id, 0.3), args.seed, logs)
        print(f"[{env_id}] collected {args.steps} steps in {time.perf_counter() - t0:.1f}s", flush=True)
    store = EpisodeStore(logs)
    overrides = dict(kv.split("=", 1) for kv in args.set)
    cfg = preset(args.preset)
    typed = {
        k: (v.lower() in ("1", "true", "yes")) if isinstance(getattr(cfg, k), bool) else type(getattr(cfg, k))(v)
        for k, v in overrides.items()
    }
    cfg = preset(args.preset, seed=args.seed, **typed)
    out = work / f"{env_id}-wm"
    shutil.rmtree(out, ignore_errors=True)
    t0 = time.perf_counter()
    budget = CpuBudget(args.minutes) if args.budget == "cpu" else None
    final = train(
        logs,
        out,
        cfg,
        max_steps=args.max_steps,
        max_minutes=args.minutes if args.budget == "wall" else args.wall_cap,
        accelerator="cpu",
        progress=False,
        ckpt_every=10**9,
        callbacks=[budget] if budget else None,
    )
    train_s = time.perf_counter() - t0
    summary = json.loads((out / "train_summary.json").read_text())
    model = WorldModel.load(final)
    _, held = split_names(store.names(), cfg.val_fraction, cfg.seed)
    t0 = time.perf_counter()
    res = evaluate(model, store.episodes(held), context=8, horizon=15, max_windows=args.windows, seed=args.seed)
    eval_s = time.perf_counter() - t0
    plot_path = args.out.parent / f"wm_targets_{env_id}.png"
    plot_path.parent.mkdir(parents=True, exist_ok=True)
    plot_openloop_panels(res, str(plot_path), title=f"{env_id}, {args.preset}")
    stats = store.stats()
    row: dict[str, Any] = {
        "env": env_id,
        "log_steps": stats.steps,
        "log_episodes": stats.episodes,
        "behaviour_epsilon": EPSILON.get(env_id, 0.3),
        "log_return_mean": float(stats.returns.mean()),
        "held_out_episodes": len(held),
        "preset": args.preset,
        "overrides": typed,
        "train_minutes_budget": args.minutes,
        "budget_kind": args.budget,
        "train_cpu_s": budget.used if budget else None,
        "train_wall_s": train_s,
        "train_steps": summary["global_step"],
        "steps_per_s": summary["global_step"] / max(summary["wall_s"], 1e-9),
        "eval_wall_s": eval_s,
        "eval": res,
        "plot": str(plot_path),
    }
    s, o = res["summary"], res["one_step"]
    if env_id.startswith("CartPole"):
        ratio = s["ratio_copy_last_over_model_at_horizon"]
        row["targets"] = {
            "nmse15_ratio_copy_last_over_model": ratio,
            "nmse15_ratio_goal": 5.0,
            "nmse15_met": ratio >= 5.0,
            "term_balanced_acc_one_step": o["term_balanced_acc"],
            "term_goal": 0.95,
            "term_met": o["term_balanced_acc"] is not None and o["term_balanced_acc"] >= 0.95,
        }
    row["reward_mae_one_step"] = o["reward_mae"]
    row["reward_mae_horizon_mean"] = s["reward_mae_mean"]
    print(
        f"[{env_id}] {summary['global_step']} steps in {train_s:.0f}s; nmse15 {s['nmse_at_horizon']:.4f} vs "
        f"copy-last {s['nmse_copy_last_at_horizon']:.4f} ({s['ratio_copy_last_over_model_at_horizon']:.1f}x); "
        f"term bal acc {o['term_balanced_acc']}; reward MAE {o['reward_mae']:.4f}",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--envs", nargs="+", default=["CartPole-v1", "Pendulum-v1"])
    p.add_argument("--steps", type=int, default=20000, help="logged transitions per env")
    p.add_argument("--minutes", type=float, default=10.0, help="training budget per env (wall clock)")
    p.add_argument("--max-steps", type=int, default=100000, help="training-step cap (time usually binds)")
    p.add_argument(
        "--budget",
        choices=("wall", "cpu"),
        default="wall",
        help="wall: Lightning max_time; cpu: this process's CPU time (for a shared CPU)",
    )
    p.add_argument("--wall-cap", type=float, default=45.0, help="with --budget cpu: wall-clock cap (minutes)")
    p.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        default=None,
        help="only combine result files of separate runs (e.g. one per env) into --out",
    )
    p.add_argument("--preset", default="small")
    p.add_argument("--set", nargs="*", default=[], metavar="KEY=VALUE", help="config overrides")
    p.add_argument("--windows", type=int, default=1024, help="evaluation windows at most")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--work", type=Path, default=None, help="keep logs/checkpoints here (default: temp dir)")
    p.add_argument("--out", type=Path, default=RESULTS / "wm_targets.json")
    args = p.parse_args(argv)
    if args.merge:
        parts = [json.loads(p.read_text()) for p in args.merge]
        merged = dict(
            parts[0],
            results=[r for part in parts for r in part["results"]],
            commands=[part["command"] for part in parts],
            merged_from=[str(p) for p in args.merge],
        )
        atomic_write_json(args.out, merged, indent=1)
        print(f"wrote {args.out}")
        return 0
    torch.set_num_threads(args.threads)
    work = args.work or Path(tempfile.mkdtemp(prefix="wm_targets_"))
    work.mkdir(parents=True, exist_ok=True)
    rows = [run_env(env_id, args, work) for env_id in args.envs]
    report = {
        "benchmark": "wm_targets",
        "command": "python -m dreamlab.benchmarks.wm_targets " + " ".join(sys.argv[1:] if argv is None else argv),
        **run_manifest(),
        "note": "the CPU is shared with other jobs; wall-clock budgets buy fewer steps under load",
        "results": rows,
        "date": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, report, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
