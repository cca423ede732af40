"""Throughput from pixels (issue 16, part 2): collection and world-model training on 64x64 images.

* collection: ``--collect-steps`` random-policy steps of ``CartPole-v1-pixels`` (the 400x600
  render area-averaged to 64x64x3) and ``MinAtar/Breakout-v1-pixels`` (10x10x4 channels
  upsampled to 64x64x4), 4 envs, as ``dreamlab collect --obs pixels`` runs them;
* world model: one training step (loss, backward, Adam) of each preset in ``--presets`` on a
  batch of 64x64x3 frames (the preset's batch size and sequence length; the content of the frames
  does not change the cost), in fp32 and in the precision ``auto`` picks on this machine, timed
  over ``--wm-steps`` steps after two warm-up steps; 1 thread.

    python -m dreamlab.benchmarks.pixel_speed
    python -m dreamlab.benchmarks.pixel_speed --presets tiny --wm-steps 5 --out /tmp/p.json

Writes ``benchmarks/results/pixel_speed.json`` (run_manifest: command, commit, machine).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import torch

from dreamlab.core.io import atomic_write_json
from dreamlab.core.machine import run_manifest
from dreamlab.core.precision import autocast, resolve_precision
from dreamlab.data.collect import collect
from dreamlab.worldmodel.config import preset
from dreamlab.worldmodel.model import WorldModel

RESULTS = Path(__file__).resolve().parent / "results"
ENVS = ("CartPole-v1-pixels", "MinAtar/Breakout-v1-pixels")


def collect_speed(env_id: str, steps: int, work: Path) -> dict[str, Any]:
    out = work / env_id.replace("/", "_")
    s = collect(env_id, "random", steps, num_envs=4, seed=0, out=out, progress=False)
    return {"env": env_id, "steps_taken": s.steps_taken, "seconds": s.seconds, "steps_per_s": s.steps_per_second}


def wm_step_speed(name: str, precision: str, steps: int) -> dict[str, Any]:
    cfg = preset(name)
    model = WorldModel(cfg, gym.spaces.Box(0, 255, (64, 64, 3), np.uint8), gym.spaces.Discrete(2))
    opt = torch.optim.Adam(model.parameters(), lr=cfg.lr)
    B, T = cfg.batch_size, cfg.seq_len
    g = torch.Generator().manual_seed(0)
    batch = {
        "obs": torch.randint(0, 256, (B, T, 64, 64, 3), dtype=torch.uint8, generator=g),
        "action": torch.nn.functional.one_hot(torch.randint(0, 2, (B, T), generator=g), 2).float(),
        "reward": torch.ones(B, T),
        "is_first": torch.zeros(B, T, dtype=torch.bool),
        "is_terminal": torch.zeros(B, T, dtype=torch.bool),
    }
    batch["is_first"][:, 0] = True

    def step() -> None:
        with autocast(precision):
            loss, _ = model.loss(batch)
        opt.zero_grad()
        loss.backward()
        opt.step()

    step()
    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    ms = (time.perf_counter() - start) / steps * 1e3
    return {
        "preset": name,
        "precision": precision,
        "batch": [B, T],
        "ms_per_step": ms,
        "steps_per_s": 1e3 / ms,
        "frames_per_s": B * T * 1e3 / ms,
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--presets", nargs="+", default=["tiny", "small"])
    p.add_argument("--wm-steps", type=int, default=10, help="timed world-model steps per preset and precision")
    p.add_argument("--collect-steps", type=int, default=2000)
    p.add_argument("--out", type=Path, default=RESULTS / "pixel_speed.json")
    args = p.parse_args(argv)
    torch.set_num_threads(1)
    command = " ".join(["python -m dreamlab.benchmarks.pixel_speed", *(sys.argv[1:] if argv is None else argv)])
    auto = resolve_precision("auto")
    report: dict[str, Any] = {
        "benchmark": "pixel_speed",
        **run_manifest(config=vars(args) | {"out": str(args.out)}, command=command),
        "threads": 1,
        "auto_precision": auto,
        "collect": [],
        "world_model": [],
    }
    with tempfile.TemporaryDirectory(prefix="pixel_speed_") as work:
        for env_id in ENVS:
            report["collect"].append(collect_speed(env_id, args.collect_steps, Path(work)))
            print(report["collect"][-1], flush=True)
    for name in args.presets:
        for precision in dict.fromkeys(("32", auto)):
            report["world_model"].append(wm_step_speed(name, precision, args.wm_steps))
            print(report["world_model"][-1], flush=True)
    report["summary"] = {
        "collect_steps_per_s": {c["env"]: round(c["steps_per_s"], 1) for c in report["collect"]},
        "wm_steps_per_s": {
            f"{w['preset']} {w['precision']}": round(w["steps_per_s"], 2) for w in report["world_model"]
        },
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    atomic_write_json(args.out, report)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
