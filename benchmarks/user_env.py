"""A user's own low-dimensional env: is the default world model better than copy-last? (issue 16.5)

The point mass of ``tests/fixtures/point_mass.py`` (``point_mass:PointMass``: Box(6) observation
= position, velocity, goal; Box(2) action; 100-step episodes), ``--steps`` random-action steps
(the issue's user: 5k), then for each ``PRESET:STEPS`` in ``--runs`` a world model trained for
that many steps (a step budget, not wall time; 1 thread) and scored open-loop on the held-out
episodes (context 8, horizon 15, as ``dreamlab eval-wm``) against copy-last, with the error per
observation dimension at the horizon (where the model loses against copy-last).

    python -m dreamlab.benchmarks.user_env                                  # small:5000 tiny:5000
    python -m dreamlab.benchmarks.user_env --runs tiny:5000 small:1500 --out /tmp/u.json

Writes ``benchmarks/results/user_env.json`` (run_manifest: command, commit, machine).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from dreamlab.core.io import atomic_write_json
from dreamlab.core.machine import run_manifest
from dreamlab.data.collect import collect
from dreamlab.data.sampling import split_names
from dreamlab.data.store import EpisodeStore
from dreamlab.worldmodel.config import preset
from dreamlab.worldmodel.evaluate import evaluate
from dreamlab.worldmodel.model import WorldModel
from dreamlab.worldmodel.train import train

RESULTS = Path(__file__).resolve().parent / "results"
FIXTURES = Path(__file__).resolve().parent.parent / "tests" / "fixtures"
DIMS = ("pos_x", "pos_y", "vel_x", "vel_y", "goal_x", "goal_y")
CONTEXT, HORIZON = 8, 15


@torch.no_grad()
def error_per_dim(model: WorldModel, episodes: list[Any], windows: int, seed: int) -> list[float]:
    """Normalised squared error at the horizon per observation dimension (model, sampled latents)."""
    rng = np.random.default_rng(seed)
    span = CONTEXT + HORIZON
    var = np.maximum(np.concatenate([ep.obs for ep in episodes]).var(0), 1e-6)
    picks = [(i, int(rng.integers(0, ep.length - span + 1))) for i, ep in enumerate(episodes) if ep.length >= span]
    picks = [picks[j] for j in rng.permutation(len(picks))[:windows]]
    torch.manual_seed(seed)
    obs = torch.from_numpy(np.stack([episodes[i].obs[s : s + span] for i, s in picks]).astype(np.float32))
    act = torch.from_numpy(np.stack([model.codec.encode(episodes[i].action)[s : s + span] for i, s in picks]))
    first = torch.zeros(len(picks), CONTEXT, dtype=torch.bool)
    first[:, 0] = True
    post, _ = model.observe(obs[:, :CONTEXT], act[:, :CONTEXT], first)
    state = {k: v[:, -1] for k, v in post.items()}
    for h in range(HORIZON):
        state = model.img_step(state, act[:, CONTEXT - 1 + h], None)
    pred = model.decode(state).numpy()
    return (((pred - obs[:, -1].numpy()) ** 2) / var).mean(0).tolist()


def run_one(spec: str, logs: Path, work: Path, args: argparse.Namespace) -> dict[str, Any]:
    name, _, steps_s = spec.partition(":")
    steps = int(steps_s or 5000)
    cfg = preset(name)
    start = time.perf_counter()
    final = train(logs, work / f"wm_{name}_{steps}", cfg, max_steps=steps, progress=False, precision="32")
    wall = time.perf_counter() - start
    model = WorldModel.load(final)
    store = EpisodeStore(logs)
    _, held = split_names(store.names(), model.cfg.val_fraction, model.cfg.seed)
    episodes = store.episodes(held)
    res = evaluate(model, episodes, context=CONTEXT, horizon=HORIZON, max_windows=args.windows, seed=args.seed)
    s = res["summary"]
    row = {
        "preset": name,
        "train_steps": steps,
        "train_wall_s": wall,
        "held_out_episodes": len(episodes),
        "windows": res["windows"],
        "nmse_at_horizon": s["nmse_at_horizon"],
        "copy_last_at_horizon": s["nmse_copy_last_at_horizon"],
        "better_than_copy_last": s["nmse_at_horizon"] < s["nmse_copy_last_at_horizon"],
        "ratio_copy_last_over_model": s["ratio_copy_last_over_model_at_horizon"],
        "nmse_per_horizon": res["nmse"],
        "copy_last_per_horizon": res["nmse_copy_last"],
        "model_error_per_dim_at_horizon": dict(zip(DIMS, error_per_dim(model, episodes, args.windows, args.seed))),
    }
    print(
        f"{name} {steps} steps: h{HORIZON} nmse {row['nmse_at_horizon']:.4f} vs copy-last "
        f"{row['copy_last_at_horizon']:.4f} ({wall:.0f} s)",
        flush=True,
    )
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--runs", nargs="+", default=["small:5000", "tiny:5000"], help="PRESET:TRAIN_STEPS per run")
    p.add_argument("--steps", type=int, default=5000, help="random-action env steps logged (default: 5000)")
    p.add_argument("--windows", type=int, default=1024, help="evaluation windows at most")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--work", type=Path, default=None, help="keep logs/checkpoints here (default: temp dir)")
    p.add_argument("--out", type=Path, default=RESULTS / "user_env.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    sys.path.insert(0, str(FIXTURES))  # the user's module, as from their own folder
    work = args.work or Path(tempfile.mkdtemp(prefix="user_env_"))
    logs = work / "logs"
    if not (logs / "metadata.json").exists():
        collect("point_mass:PointMass", "random", args.steps, num_envs=4, seed=args.seed, out=logs, progress=False)
    command = "python -m dreamlab.benchmarks.user_env " + " ".join(sys.argv[1:] if argv is None else argv)
    report: dict[str, Any] = {
        "benchmark": "user_env",
        **run_manifest(config=vars(args) | {"work": str(work), "out": str(args.out)}, command=command),
        "env": "point_mass:PointMass (tests/fixtures/point_mass.py)",
        "logs": {"policy": "random", "steps": args.steps, "episodes": len(EpisodeStore(logs))},
        "eval": {"context": CONTEXT, "horizon": HORIZON, "split": "held-out", "latents": "sampled (eval-wm default)"},
        "threads": 1,
        "results": [],
        "complete": False,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for spec in args.runs:  # written after every run: an interrupted benchmark keeps the runs it finished
        report["results"].append(run_one(spec, logs, work, args))
        report["complete"] = len(report["results"]) == len(args.runs)
        atomic_write_json(args.out, report, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
