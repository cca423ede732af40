"""World-model learning-rate schedule against the step budget, on the quickstart's CartPole logs.

Trains the ``small`` world model on the quickstart's logs (20k steps of the CartPole heuristic
with epsilon 0.75, seed 0) and scores the open-loop error on the held-out episodes against
copy-last (context 8, horizon 15) after each budget:

* ``constant``: one run continued to 750, 1500, 2250, 3000, 4000 steps (``lr_decay none``);
* ``cosine``: a fresh run per budget with the rate decayed to 0.1x at that budget (``lr_decay cosine``).

    python -m dreamlab.benchmarks.wm_schedule --work /tmp/wm_schedule [--budgets 2000 3000]

Prints one JSON line per point and writes ``benchmarks/results/wm_schedule.json``. Each point
is one training run at 1 torch thread (minutes each); the result decided the quickstart's
default (3,000 steps, cosine).
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path
from typing import Any

import torch

from dreamlab.core.io import atomic_write_json
from dreamlab.core.machine import run_manifest
from dreamlab.stages import collect_logs, score_world_model, train_world_model
from dreamlab.worldmodel.config import preset

RESULTS = Path(__file__).resolve().parent / "results"


def point(logs: Path, work: Path, steps: int, decay: str) -> dict[str, Any]:
    t0 = time.perf_counter()
    tr = train_world_model(logs, work, preset("small", seed=0, lr_decay=decay), steps, None, False, log=lambda m: None)
    s = score_world_model(Path(tr["checkpoint"]), logs, seed=0)["openloop_summary"]
    row = {"lr_decay": decay, "steps": tr["global_step"], "wall_s": time.perf_counter() - t0}
    row.update({k: v for k, v in s.items() if not isinstance(v, list)})
    print(json.dumps(row), flush=True)
    return row


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--work", type=Path, required=True)
    p.add_argument("--budgets", type=int, nargs="+", default=[2000, 3000])
    p.add_argument("--constant", type=int, nargs="*", default=[750, 1500, 2250, 3000, 4000])
    p.add_argument("--threads", type=int, default=1)
    p.add_argument("--out", type=Path, default=RESULTS / "wm_schedule.json")
    args = p.parse_args(argv)
    torch.set_num_threads(args.threads)
    logs = args.work / "logs"
    collect_logs("CartPole-v1", "heuristic", 20_000, logs, num_envs=8, seed=0, epsilon=0.75, progress=False)
    rows = [point(logs, args.work / "constant", n, "none") for n in sorted(args.constant)]  # continued
    rows += [point(logs, args.work / f"cosine{n}", n, "cosine") for n in args.budgets]
    atomic_write_json(args.out, {"benchmark": "wm_schedule", "results": rows, **run_manifest()}, indent=1)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
