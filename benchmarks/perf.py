"""All performance figures in one table: ours against the plain-PyTorch (or raw) ceiling timed in
the same run, the ratio, and the goal of the issue that asked for it.

    python -m dreamlab.benchmarks.perf                      # run every perf_* benchmark, then the table
    python -m dreamlab.benchmarks.perf --from-results       # only read benchmarks/results/perf_*.json
    python -m dreamlab.benchmarks.perf --run data llm       # re-run these, read the others
    python -m dreamlab.benchmarks.perf --quick --out-dir D  # tiny sizes (~15 s, for the test); JSONs in D

Sources (each script's own JSON; the ceilings are measured inside that script, in the same run):

==============================  ==================================================  =================
benchmark                       ours / ceiling                                      goal (issue)
==============================  ==================================================  =================
``perf_data`` collection        ``data.collect`` steps/s / raw SyncVectorEnv steps  ≥ 0.8× (2, 18)
``perf_data`` sampling          ``SequenceSampler`` 16×64 batches/s / numpy gather  none
``perf_worldmodel``             plain RSSM step time / ``WorldModel`` step time     ours ≤ 1.25× plain
                                (and through Lightning)                             time (3)
``perf_imagination``            imagined steps/s, ours / plain loop (rollout,       ≥ 0.8× (4)
                                actor-critic update), batch 1024, horizon 15, fp32
``perf_imagination``            ours at precision ``auto`` / plain fp32 loop        rollout ≥ 2.5×,
                                                                                    update ≥ 2× (18)
``perf_imagination``            ours bf16-mixed / plain loop under autocast(bf16)   rollout ≥ 0.9× (18)
``perf_llm`` actions/s          ``LLMPolicy.act`` / bare HF forward on the same     none (6)
                                pre-tokenised rows
``perf_llm`` distillation       labelled tokens/s / plain fwd+bwd+Adam on the       none (6)
                                same decision rows, each trained once
``perf_pipeline`` (whole jobs)  quickstart stages and online CartPole wall seconds  goal / measured
                                against the issue's seconds; open loop / 10×        ≥ 1 (18)
==============================  ==================================================  =================

Every ratio is written so that higher is better and 1.0 means "as fast as the ceiling" (for the
world model: plain time / our time, so the issue's "ours ≤ 1.25× plain" is ratio ≥ 0.8). Rows
whose source JSON holds no ceiling (an older run) keep ``ceiling``/``ratio`` empty. Writes
``OUT_DIR/perf.json`` (rows, the machine, each source's machine and date) and ``OUT_DIR/perf.md``.
"""

from __future__ import annotations

import argparse
import json
import math
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from dreamlab.core.io import atomic_write_json, atomic_write_text
from dreamlab.core.machine import run_manifest

RESULTS = Path(__file__).resolve().parent / "results"
SOURCES = ("data", "worldmodel", "imagination", "llm", "pipeline")
OPTIONAL = ("pipeline",)  # whole jobs (minutes each): not in --quick, and skipped when their JSON is missing


def _row(
    issue: int,
    source: str,
    measurement: str,
    unit: str,
    ours: float,
    ceiling: float | None,
    ceiling_what: str,
    goal: float | None,
    goal_text: str,
    ratio: float | None = None,
) -> dict[str, Any]:
    if ratio is None and ceiling:
        ratio = ours / ceiling
    ok = None if goal is None or ratio is None else bool(ratio >= goal)
    return {
        "issue": issue,
        "source": f"perf_{source}",
        "measurement": measurement,
        "unit": unit,
        "ours": float(ours),
        "ceiling": None if ceiling is None else float(ceiling),
        "ceiling_what": ceiling_what,
        "ratio": None if ratio is None else float(ratio),
        "goal": goal,
        "goal_text": goal_text,
        "goal_met": ok,
    }


# ------------------------------------------------------------------------- rows per source
def rows_data(d: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for c in d["collection"]:
        ours = c["collector_process_steps_per_s"]  # the default writer, with the full crash guarantee
        rows.append(
            _row(
                18,
                "data",
                f"collection, random policy, {c['env']} ({c['num_envs']} envs)",
                "steps/s",
                ours,
                c["raw_steps_per_s"],
                "raw gymnasium SyncVectorEnv stepping",
                0.8,
                "≥ 0.8×",
            )
        )
    s = d["sampling"]
    rows.append(
        _row(
            2,
            "data",
            f"sequence batches {s['batch_size']}×{s['seq_len']} (SequenceSampler)",
            "batches/s",
            s["batches_per_s"],
            s.get("raw_batches_per_s"),
            "numpy gather of random windows",
            None,
            "none",
        )
    )
    return rows


def rows_worldmodel(d: dict[str, Any]) -> list[dict[str, Any]]:
    rows = []
    for r in d["results"]:
        what = "plain-PyTorch RSSM step (time per step, ratio = plain / ours)"
        rows.append(
            _row(
                3,
                "worldmodel",
                f"WM train step, {r['preset']} (batch 16×64)",
                "ms/step",
                1e3 * r["ours_s"],
                1e3 * r["plain_s"],
                what,
                0.8,
                "ratio ≥ 0.8 (ours ≤ 1.25× plain time)",
                ratio=r["plain_s"] / r["ours_s"],
            )
        )
        if "ours_lightning_s" in r and r["ours_lightning_s"] == r["ours_lightning_s"]:
            rows.append(
                _row(
                    3,
                    "worldmodel",
                    f"WM train step via Lightning, {r['preset']}",
                    "ms/step",
                    1e3 * r["ours_lightning_s"],
                    1e3 * r["plain_s"],
                    what,
                    0.8,
                    "ratio ≥ 0.8 (ours ≤ 1.25× plain time)",
                    ratio=r["plain_s"] / r["ours_lightning_s"],
                )
            )
        if r["preset"] == "small" and "ours_auto_s" in r:
            rows.append(
                _row(
                    18,
                    "worldmodel",
                    f"WM train step, small, ours at auto precision ({r['auto_precision']})",
                    "ms/step",
                    1e3 * r["ours_auto_s"],
                    1e3 * r["plain_s"],
                    "plain-PyTorch RSSM step in fp32 (ratio = plain / ours)",
                    2.0,
                    "≥ 2× faster than plain fp32",
                    ratio=r["plain_s"] / r["ours_auto_s"],
                )
            )
        if "ours_bf16_s" in r:
            rows.append(
                _row(
                    18,
                    "worldmodel",
                    f"WM train step, {r['preset']}, ours in bf16-mixed",
                    "ms/step",
                    1e3 * r["ours_bf16_s"],
                    1e3 * r["plain_bf16_s"],
                    "plain-PyTorch RSSM step in bf16-mixed (ratio = plain / ours)",
                    None,
                    "none",
                    ratio=r["plain_bf16_s"] / r["ours_bf16_s"],
                )
            )
    return rows


def rows_imagination(d: dict[str, Any]) -> list[dict[str, Any]]:
    names = {"rollout": "imagination rollout, no gradients", "update": "imagination + actor-critic update"}
    goals = d.get("goals", {})
    auto = d.get("auto_precision", "32")
    rows = []
    for k, r in d["results"].items():
        what = f"{names.get(k, k)} (batch {d['batch']}, horizon {d['horizon']}, {d['preset']})"
        rows.append(
            _row(
                4,
                "imagination",
                f"{what}, fp32",
                "imagined steps/s",
                r["ours_steps_per_s"],
                r["plain_steps_per_s"],
                "plain-PyTorch loop, same sizes, fp32",
                d.get("goal_ratio", 0.8),
                f"≥ {d.get('goal_ratio', 0.8)}×",
            )
        )
        if "ours_bf16_steps_per_s" not in r:  # an older run: fp32 only
            continue
        g = goals.get(k, {})
        fp32_goal, bf16_goal = g.get("auto_vs_plain_fp32"), g.get("bf16_vs_plain_bf16")
        rows.append(
            _row(
                18,
                "imagination",
                f"{what}, ours at precision auto (= {auto} here)",
                "imagined steps/s",
                r["ours_auto_steps_per_s"],
                r["plain_steps_per_s"],
                "plain-PyTorch loop, same sizes, fp32",
                fp32_goal,
                f"≥ {fp32_goal}× plain fp32" if fp32_goal else "none",
            )
        )
        rows.append(
            _row(
                18,
                "imagination",
                f"{what}, bf16-mixed",
                "imagined steps/s",
                r["ours_bf16_steps_per_s"],
                r["plain_bf16_steps_per_s"],
                "plain-PyTorch loop, same sizes, under torch.autocast(bf16)",
                bf16_goal,
                f"≥ {bf16_goal}× plain bf16" if bf16_goal else "none",
            )
        )
    return rows


def rows_llm(d: dict[str, Any]) -> list[dict[str, Any]]:
    raw = d.get("raw_forward_actions_per_s", {})
    rows = [
        _row(
            6,
            "llm",
            f"LLMPolicy.act, batch {b}",
            "actions/s",
            v,
            raw.get(b),
            "bare HF forward on pre-tokenised rows",
            None,
            "none",
        )
        for b, v in d["actions_per_s"].items()
    ]
    ceiling = d.get("raw_train_labelled_tokens_per_s")
    rows += [
        _row(
            6,
            "llm",
            f"distillation {m.upper()} (CartPole, heuristic teacher)",
            "labelled tokens/s",
            v["labelled_tokens_per_s"],
            ceiling,
            "plain fwd+bwd+Adam on the decision rows, once each",
            None,
            "none",
        )
        for m, v in d["distillation"].items()
    ]
    return rows


def rows_pipeline(d: dict[str, Any]) -> list[dict[str, Any]]:
    from dreamlab.benchmarks.perf_pipeline import table_rows

    return table_rows(d, _row)


BUILDERS: dict[str, Callable[[dict[str, Any]], list[dict[str, Any]]]] = {
    "data": rows_data,
    "worldmodel": rows_worldmodel,
    "imagination": rows_imagination,
    "llm": rows_llm,
    "pipeline": rows_pipeline,
}


# ------------------------------------------------------------------------------- running
def run_full(name: str, results: Path) -> dict[str, Any]:
    """Run one benchmark at its own default sizes; it writes ``results/perf_<name>.json``."""
    out = ["--out", str(results / f"perf_{name}.json")]
    if name == "data":
        from dreamlab.benchmarks.perf_data import main

        return main(out)
    if name == "worldmodel":
        from dreamlab.benchmarks.perf_worldmodel import main as wm_main

        wm_main(out)
        return json.loads((results / "perf_worldmodel.json").read_text())
    if name == "imagination":
        from dreamlab.benchmarks.perf_imagination import main as im_main

        return im_main(out)
    if name == "pipeline":
        from dreamlab.benchmarks.perf_pipeline import main as pipe_main

        pipe_main(out)
        pipe_main([*out, "--jobs", "quickstart", "--beside"])
        return json.loads((results / "perf_pipeline.json").read_text())
    from dreamlab.benchmarks.perf_llm import main as llm_main

    return llm_main(out)


def run_quick(name: str, out_dir: Path) -> dict[str, Any]:
    """Tiny sizes of the same measurements (seconds, not minutes): checks the plumbing only."""
    if name == "data":
        from dreamlab.benchmarks.perf_data import bench_collection, bench_sampling

        tmp = Path(tempfile.mkdtemp(prefix="perf_quick-"))
        try:
            return {
                "collection": [bench_collection("CartPole-v1", 4, 1000, 1, tmp)],
                "sampling": bench_sampling(tmp, seconds=0.3, steps=1000),
            }
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    if name == "worldmodel":
        from dreamlab.benchmarks.perf_worldmodel import bench_preset

        return {"results": [bench_preset("tiny", 2, lightning=False)]}
    if name == "imagination":
        from dreamlab.benchmarks.perf_imagination import main as im_main

        return im_main(
            [
                "--batch",
                "64",
                "--horizon",
                "5",
                "--repeats",
                "1",
                "--preset",
                "tiny",
                "--out",
                str(out_dir / "perf_imagination.json"),
            ]
        )
    from dreamlab.benchmarks.perf_llm import (
        actions_per_s,
        make_student,
        raw_forward_actions_per_s,
        raw_train_tokens_per_s,
        tokens_per_s,
    )

    student = make_student(None)
    return {
        "actions_per_s": {"8": actions_per_s(student, 8, 0.3)},
        "raw_forward_actions_per_s": {"8": raw_forward_actions_per_s(student, 8, 0.3)},
        "distillation": {"opsd": tokens_per_s(None, "opsd", 1)},
        "raw_train_labelled_tokens_per_s": raw_train_tokens_per_s(make_student(None), 16, 0.3),
    }


def build(sources: dict[str, dict[str, Any]]) -> list[dict[str, Any]]:
    return [row for name in SOURCES if name in sources for row in BUILDERS[name](sources[name])]


def _fmt(x: float | None) -> str:
    if x is None:
        return "—"
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def write_table(
    rows: list[dict[str, Any]], sources: dict[str, dict[str, Any]], out_dir: Path, mode: str
) -> dict[str, Any]:
    out_dir.mkdir(parents=True, exist_ok=True)
    bad = [r["measurement"] for r in rows if r["ratio"] is not None and not math.isfinite(r["ratio"])]
    if bad:
        raise ValueError(f"non-finite ratio in rows {bad}")
    report = {
        "benchmark": "perf",
        "mode": mode,
        "rows": rows,
        **run_manifest(),
        "sources": {
            k: {"machine": v.get("machine"), "date": v.get("date") or v.get("when"), "read_from": v.get("_read_from")}
            for k, v in sources.items()
        },
        "note": "shared 2-core CPU: absolute figures are noisy; each ratio compares two timings taken in the same run",
        "date": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
    }
    atomic_write_json(out_dir / "perf.json", report, indent=1)
    lines = [
        "# Performance against plain-PyTorch / raw ceilings",
        "",
        f"`python -m dreamlab.benchmarks.perf` ({mode}); ratio = ours relative to the ceiling measured in the same run "
        "(higher is better, 1.0 = as fast as the ceiling).",
        "",
        "| issue | measurement | unit | ours | ceiling | ratio | goal | met |",
        "| ---: | --- | --- | ---: | ---: | ---: | --- | --- |",
    ]
    for r in rows:
        met = "—" if r["goal_met"] is None else ("yes" if r["goal_met"] else "**no**")
        ratio = "—" if r["ratio"] is None else f"{r['ratio']:.2f}×"
        lines.append(
            f"| {r['issue']} | {r['measurement']} | {r['unit']} | {_fmt(r['ours'])} | {_fmt(r['ceiling'])} | "
            f"{ratio} | {r['goal_text']} | {met} |"
        )
    lines += [
        "",
        "Ceilings: " + "; ".join(dict.fromkeys(f"{r['source']}: {r['ceiling_what']}" for r in rows)) + ".",
        "",
        f"Machine: {report['machine']['platform']}, {report['machine']['cpu_count']} CPUs, "
        f"{report['machine']['torch_threads']} torch thread(s), torch {report['machine']['torch']}; "
        "each source's own machine record and date are in perf.json. " + report["note"] + ".",
        "",
    ]
    atomic_write_text(out_dir / "perf.md", "\n".join(lines))
    return report


def main(argv: list[str] | None = None) -> dict[str, Any]:
    ap = argparse.ArgumentParser(
        description=__doc__.split("\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__
    )
    ap.add_argument("--from-results", action="store_true", help="run nothing: read results/perf_*.json")
    ap.add_argument(
        "--run",
        nargs="+",
        choices=SOURCES,
        default=None,
        help="run only these benchmarks (full sizes) and read the others from results/",
    )
    ap.add_argument("--quick", action="store_true", help="tiny sizes of every measurement (for tests)")
    ap.add_argument("--results", type=Path, default=RESULTS, help="where the perf_*.json files live")
    ap.add_argument("--out-dir", type=Path, default=RESULTS)
    ap.add_argument("--threads", type=int, default=1)
    args = ap.parse_args(argv)
    torch.set_num_threads(args.threads)
    to_run = [] if args.from_results else list(args.run or SOURCES)
    sources: dict[str, dict[str, Any]] = {}
    for name in SOURCES:
        if args.quick:
            if name not in OPTIONAL:
                sources[name] = run_quick(name, args.out_dir)
        elif name in to_run:
            print(f"[perf] running perf_{name}", flush=True)
            sources[name] = run_full(name, args.results)
        else:
            path = args.results / f"perf_{name}.json"
            if not path.exists() and name in OPTIONAL:
                print(f"[perf] {path} missing: no perf_{name} rows", flush=True)
                continue
            if not path.exists():
                raise FileNotFoundError(f"{path}: no results of perf_{name}; run it or drop --from-results")
            sources[name] = json.loads(path.read_text())
            sources[name]["_read_from"] = {
                "path": str(path),
                "modified": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(path.stat().st_mtime)),
            }
    mode = "quick" if args.quick else ("from results" if args.from_results else f"ran {', '.join(to_run)}")
    report = write_table(build(sources), sources, args.out_dir, mode)
    print((args.out_dir / "perf.md").read_text())
    return report


if __name__ == "__main__":
    main()
