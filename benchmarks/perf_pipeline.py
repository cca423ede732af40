"""Wall time of whole jobs, run as a user runs them: the quickstart's stages and online CartPole.

Issue 18's end-to-end targets, on the 2 cores of this machine:

* ``quickstart``: ``dreamlab quickstart --llm toy`` with every other default; the collect,
  world-model, dream and evaluate stages (their ``OUT/stages/<name>.json`` wall seconds) take
  ≤ 3 minutes alone, with a world model as good as the README's run (open loop ≥ 10× better than
  copy-last at the horizon), and give the same result (within seed noise) with another CPU-bound
  process running beside it (``--beside``);
* ``online``: ``dreamlab train --env CartPole-v1 --steps 10000``: ≤ 2 minutes wall alone.

Each job runs in its own subprocess, with the machine's threads (``--threads``, default 2: the
job has the machine to itself). ``--beside`` starts a CPU-bound process (a 1-thread fp32 matmul
loop) for the duration of each job, so the step budgets can be seen to hold the result while the
wall time grows. Results merge into ``benchmarks/results/perf_pipeline.json`` keyed by job and
mode (``alone`` / ``beside``)::

    python -m dreamlab.benchmarks.perf_pipeline --jobs quickstart online
    python -m dreamlab.benchmarks.perf_pipeline --jobs quickstart --beside
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from dreamlab.core.io import atomic_write_json
from dreamlab.core.machine import run_manifest

RESULTS = Path(__file__).resolve().parent / "results"
QUICKSTART_STAGES = ("collect", "worldmodel", "dream", "evaluate")
GOALS = {"quickstart_stages_s": 180.0, "quickstart_openloop_ratio": 10.0, "online_s": 120.0}


def _busy(stop: Any) -> None:
    import torch

    torch.set_num_threads(1)
    a = torch.randn(512, 512)
    while not stop.is_set():
        a = torch.tanh(a @ a * 1e-3)


def _dreamlab(args: list[str], threads: int) -> tuple[float, str]:
    env = {**os.environ, "OMP_NUM_THREADS": str(threads), "MKL_NUM_THREADS": str(threads)}
    t0 = time.perf_counter()
    proc = subprocess.run(
        [sys.executable, "-m", "dreamlab", *args, "--threads", str(threads), "--progress", "false"],
        env=env,
        capture_output=True,
        text=True,
    )
    wall = time.perf_counter() - t0
    if proc.returncode:
        raise SystemExit(f"dreamlab {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return wall, proc.stderr


def job_quickstart(work: Path, threads: int, seed: int) -> dict[str, Any]:
    out = work / "quickstart"
    wall, err = _dreamlab(["quickstart", "--out", str(out), "--llm", "toy", "--seed", str(seed)], threads)
    stages = {n: json.loads((out / "stages" / f"{n}.json").read_text()) for n in QUICKSTART_STAGES}
    wm = stages["worldmodel"]
    om = wm.get("openloop_summary", {})
    return {
        "command": f"dreamlab quickstart --llm toy --seed {seed} --threads {threads}",
        "stage_seconds": {n: float(s["wall_s"]) for n, s in stages.items()},
        "stages_s": sum(float(s["wall_s"]) for s in stages.values()),
        "invocation_s": wall,
        "wm_steps": wm.get("global_step"),
        "wm_step_budget": wm.get("step_budget"),
        "wm_cut_short": wm.get("cut_short"),
        "wm_precision": wm.get("precision"),
        "openloop_ratio": om.get("ratio_copy_last_over_model_at_horizon"),
        "agent_real_return": stages["evaluate"]["real"]["mean"],
        "agent_dream_return": stages["evaluate"]["dream"]["mean"],
        "warnings": [line for line in err.splitlines() if "warning" in line.lower()][:5],
    }


def job_online(work: Path, threads: int, seed: int, steps: int = 10_000) -> dict[str, Any]:
    out = work / "online"
    args = ["train", "--env", "CartPole-v1", "--out", str(out), "--steps", str(steps), "--seed", str(seed)]
    wall, _ = _dreamlab(args, threads)
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines() if line.strip()]
    evals = [r for r in rows if "eval_mean" in r]
    final = rows[-1]
    return {
        "command": f"dreamlab train --env CartPole-v1 --steps {steps} --seed {seed} --threads {threads}",
        "wall_s": wall,
        "loop_wall_s": final.get("wall_s"),
        "phase_seconds": {k: final[k] for k in ("act_s", "update_s", "eval_s") if k in final},
        "real_env_steps": final.get("env_steps"),
        "updates": final.get("updates"),
        "precision": final.get("precision"),
        "last_eval_mean": evals[-1]["eval_mean"] if evals else None,
        "evals": [(r["env_steps"], r["eval_mean"]) for r in evals],
    }


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--jobs", nargs="+", choices=["quickstart", "online"], default=["quickstart", "online"])
    p.add_argument("--beside", action="store_true", help="run a CPU-bound process beside each job")
    p.add_argument("--threads", type=int, default=2, help="torch threads of the job (default: 2, the whole machine)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--online-steps", type=int, default=10_000)
    p.add_argument("--work", type=Path, default=None, help="scratch directory (default: a temporary one)")
    p.add_argument("--out", type=Path, default=RESULTS / "perf_pipeline.json")
    args = p.parse_args(argv)
    mode = "beside" if args.beside else "alone"
    report: dict[str, Any] = json.loads(args.out.read_text()) if args.out.exists() else {"results": {}}
    for name in args.jobs:
        work = args.work or Path(tempfile.mkdtemp(prefix=f"perf_pipeline_{name}-"))
        stop = mp.Event()
        busy = mp.Process(target=_busy, args=(stop,), daemon=True) if args.beside else None
        if busy:
            busy.start()
        try:
            if name == "quickstart":
                row = job_quickstart(work, args.threads, args.seed)
            else:
                row = job_online(work, args.threads, args.seed, args.online_steps)
        finally:
            if busy:
                stop.set()
                busy.join(5)
        row.update(mode=mode, threads=args.threads, seed=args.seed, job_command=row["command"], **run_manifest())
        report["results"][f"{name}/{mode}"] = row
        print(json.dumps({k: v for k, v in row.items() if k not in ("machine",)}, default=str)[:600], flush=True)
        report.update(
            benchmark="perf_pipeline", goals=GOALS, date=time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        atomic_write_json(args.out, report, indent=1)  # after every job: a long run keeps what it measured
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())


def table_rows(d: dict[str, Any], row: Any) -> list[dict[str, Any]]:
    """Rows for ``benchmarks.perf``'s table (``row`` is its row builder). A time target's ratio is
    goal / measured (≥ 1 = met); the open-loop one is measured / 10."""
    res = d.get("results", {})
    out = []
    for mode in ("alone", "beside"):
        q = res.get(f"quickstart/{mode}")
        if not q:
            continue
        note = f"{mode}, {q['threads']} threads; WM {q['wm_steps']}/{q['wm_step_budget']} steps"
        note += ", CUT SHORT" if q.get("wm_cut_short") else ""
        goal = GOALS["quickstart_stages_s"]
        out.append(
            row(
                18,
                "pipeline",
                f"quickstart collect+WM+dream+evaluate wall ({note})",
                "s",
                q["stages_s"],
                None,
                "the goal's seconds (ratio = goal / measured)",
                1.0 if mode == "alone" else None,
                f"≤ {goal:.0f} s alone" if mode == "alone" else "none (same result as alone)",
                ratio=goal / q["stages_s"],
            )
        )
        out.append(
            row(
                18,
                "pipeline",
                f"quickstart world model, open loop vs copy-last at the horizon ({mode}; "
                f"agent real {q['agent_real_return']:.1f})",
                "× better",
                q["openloop_ratio"],
                None,
                "10× (ratio = measured / 10)",
                1.0,
                "≥ 10×",
                ratio=q["openloop_ratio"] / GOALS["quickstart_openloop_ratio"],
            )
        )
    o = res.get("online/alone")
    if o:
        out.append(
            row(
                18,
                "pipeline",
                f"online CartPole-v1, {o['real_env_steps']} real steps, wall alone ({o['threads']} threads; "
                f"last eval {o['last_eval_mean']})",
                "s",
                o["wall_s"],
                None,
                "the goal's seconds (ratio = goal / measured)",
                1.0,
                f"≤ {GOALS['online_s']:.0f} s",
                ratio=GOALS["online_s"] / o["wall_s"],
            )
        )
    return out
